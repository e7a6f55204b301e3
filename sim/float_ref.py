"""Float reference: the hybrid layer (docs/training.md, "The model") evaluated literally in float64.

Parameters are the bundle's integers mapped back to real values by the scales of the contract
(``docs/spec.md`` §Scales), so the integer golden model can be checked against the equations::

    I_t = x_t W + b + alpha * (x_t (H_{t-1} * m))
    u_t = (u_{t-1} - theta s_{t-1}) * lam + I_t          (soft reset; hard: s_{t-1} ? u_reset : u_{t-1})
    s_t = [u_t > theta]
    H_t = clamp(decay * H_{t-1} + sign * (beta * x_t)^T f(u_t/theta - eta), -c, c)

with the named post function f (tanh, identity, sign) evaluated exactly, not from the table.
"""

from __future__ import annotations

import numpy as np

from plasticore import contract as C
from plasticore.bundle import Bundle, HRole, Layer


def real_params(L: Layer) -> dict:
    """Real-valued parameters of a bundle layer (see docs/spec.md, 'Scales')."""
    xf = L.x_frac
    w_frac = L.u_frac - L.acc_shift - xf
    a_frac = L.alpha_shift + L.u_frac - xf - C.H_FRAC
    return {
        "x_scale": 2.0 ** -xf,
        "W": L.W.astype(np.float64) * 2.0 ** -w_frac,
        "b": L.b.astype(np.float64) * 2.0 ** -L.u_frac,
        "H0": L.H0.astype(np.float64) * 2.0 ** -C.H_FRAC,
        "hmask": L.hmask.astype(np.float64),
        "alpha": L.alpha * 2.0 ** -a_frac,
        "beta": L.beta.astype(np.float64) * 2.0 ** -L.dh_shift,
        "eta": L.eta.astype(np.float64) * 2.0 ** -C.Z_FRAC,
        "theta": L.theta * 2.0 ** -L.u_frac,
        "u_reset": L.u_reset * 2.0 ** -L.u_frac,
        "lam": L.lam / 256.0,
        "decay": L.decay / 256.0,
        "clamp": L.h_clamp * 2.0 ** -C.H_FRAC,
        "sign": float(L.hebb_sign),
        "post_fn": L.post_fn,
        "lut": L.lut.astype(np.float64) * 2.0 ** -C.F_FRAC,
        "u_scale": 2.0 ** -L.u_frac,
    }


def post(z: np.ndarray, rp: dict) -> np.ndarray:
    name = rp["post_fn"]
    if name == "tanh":
        return np.tanh(z)
    if name == "identity":
        return z
    if name == "sign":
        return np.sign(z)
    # custom table: piecewise constant exactly like the table, over its domain
    idx = np.clip(np.floor(z * (1 << C.Z_FRAC) + 0.5), -C.LUT_HALF, C.LUT_HALF - 1).astype(int) + C.LUT_HALF
    return rp["lut"][idx]


def layer_step(rp: dict, L: Layer, u, s, H, x):
    """One literal float step; x real-valued (..., A). Returns (u, s, H)."""
    cur = x @ rp["W"] + rp["b"] + rp["alpha"] * np.einsum("...a,...an->...n", x, H * rp["hmask"])
    if L.soma == C.SomaMode.LIF:
        v = u - rp["theta"] * s if L.reset == C.ResetMode.SOFT else u * (1 - s) + rp["u_reset"] * s
        u = v * rp["lam"] + cur
        s = (u > rp["theta"]).astype(np.float64)
    else:
        u = cur
        y = cur / 2.0 ** L.ann_shift / rp["u_scale"]  # activation in output integer units
        s = np.clip(y, *C.ann_range(L.ann_act))
    if L.plastic:
        f = post(u / rp["theta"] - rp["eta"], rp)
        dh = rp["sign"] * (rp["beta"] * x)[..., :, None] * f[..., None, :]
        H = np.clip(rp["decay"] * H + dh, -rp["clamp"], rp["clamp"])
    return u, s, H


def run(bundle: Bundle, x_int: np.ndarray):
    """Run integer layer-0 inputs (S, T, A) through the float network, sample after sample
    (H carried or reset exactly like the golden model). Returns per-layer (spikes, u_trace, H_final)
    with u in real units and H in real units."""
    S, T = x_int.shape[:2]
    rps = [real_params(L) for L in bundle.layers]
    Hs = [rp["H0"].copy() for rp in rps]
    spikes = [np.zeros((S, T, L.n_out)) for L in bundle.layers]
    u_tr = [np.zeros((S, T, L.n_out)) for L in bundle.layers]
    for si in range(S):
        state = []
        for li, L in enumerate(bundle.layers):
            H = rps[li]["H0"].copy() if L.h_role == HRole.PER_SAMPLE else Hs[li]
            state.append([np.zeros(L.n_out), np.zeros(L.n_out), H])
        for t in range(T):
            inp = x_int[si, t].astype(np.float64) * rps[0]["x_scale"]
            for li, L in enumerate(bundle.layers):
                u, s, H = layer_step(rps[li], L, *state[li], inp)
                state[li] = [u, s, H]
                spikes[li][si, t] = s
                u_tr[li][si, t] = u
                inp = s if L.soma == C.SomaMode.LIF else s / 256.0
        for li in range(len(bundle.layers)):
            Hs[li] = state[li][2]
    return spikes, u_tr, Hs
