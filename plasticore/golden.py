"""The bit-exact golden model of the plasticore hybrid core.

Pure step functions over explicit state and parameters (int64 numpy, explicit saturation).  This
module *is* the specification of the hardware (prose: ``docs/spec.md``); the RTL testbenches, the
torch deploy mode and the boards are compared against it with ``numpy.array_equal``.

One time step of one layer, in order (all names from :mod:`plasticore.contract`)::

    dendrite   accW_j = sum_i x_i * W_ij                      (exact, no saturation)
               accH_j = sum_i x_i * H_ij * m_ij               (H of the previous step, m = hmask)
    soma       I_j    = sat_U((accW_j << acc_shift) + b_j + sat_U(rshift_round(alpha * accH_j, alpha_shift)))
      LIF      v_j    = u_j - theta * s_j       (soft)  |  v_j = 0 if s_j else u_j   (hard)
               u_j    = sat_U(rshift_round(v_j * lam, 8) + I_j)
               s_j    = [u_j > theta]
      ANN      u_j    = I_j
               s_j    = clip(rshift_round(I_j, ann_shift), 0, 255)  (ReLU) | clip(.., -128, 127) (identity)
    plasticity (only if the layer is plastic; the rule program of plasticore.rules, contract v2)
               z_j    = rshift_round(u_j * recip, recip_shift) - eta_j
               f_j    = lut[clip(z_j, -256, 255) + 256]
               xtr_i  = sat16(rshift_round(xtr_i * pre_decay, 8) + (x_i << (8 - x_frac)))   (traces first)
               ytr_j  = sat16(rshift_round(ytr_j * post_decay, 8) + (s_j << (8 - s_frac)))
               m_j    = t_j (direct) | sat16(t_j - f_j) (error); t_j from the host, 0 if none
               p_kij  = sat18(rshift_round(pre_k(i) * post_k(j), shift_k))
               dH_ij  = sat18(sum_k rshift_round(c_k * p_kij, c_shift_k))
               H_ij   = clip(rshift_round(H_ij * decay, 8) + dH_ij, -h_clamp, +h_clamp)
    The v1 rule is the one-term program pre = g_i = sat16(rshift_round(beta_i x_i, x_frac)),
    post = f_j, c = hebb_sign, shift = dh_shift, c_shift = 0.

A teaching current (integer membrane units, host-supplied) is added inside the soma current's
saturation: I_j = sat_U((accW_j << acc_shift) + b_j + I_H_j + teach_j).

Layers run in order within a step; layer l+1 consumes layer l's output s of the *same* step.
At the start of every sample u := 0, s := 0 and, for ``h_persist == SAMPLE`` layers, H := H0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plasticore import contract as C
from plasticore import rules as R
from plasticore.bundle import Bundle, HRole, Layer
from plasticore.runs import RunResult, check_inputs, predict

I64 = np.int64


# ------------------------------------------------------------------------------------------
# state and step functions (the soma, post-function and rule-program functions take int64 numpy
# arrays or int64 torch tensors alike: ``training/deploy.py`` runs them on tensors)
# ------------------------------------------------------------------------------------------
@dataclass
class LayerState:
    """Dynamic state of one layer. Leading batch dims (B,) are allowed on every array."""

    u: np.ndarray  #: membrane (.., N)
    s: np.ndarray  #: last output (.., N): spikes 0/1 (LIF) or 8-bit activations (ANN)
    H: np.ndarray  #: plastic weights (.., A, N) or (A, N) when shared by the batch
    xtr: np.ndarray | None = None  #: presynaptic traces (.., A) (rule programs with traces)
    ytr: np.ndarray | None = None  #: postsynaptic traces (.., N)


def init_state(layer: Layer, batch: tuple[int, ...] = (), H: np.ndarray | None = None) -> LayerState:
    """Zero membranes and outputs; H := H0 (broadcast to ``batch``) unless given."""
    N = layer.n_out
    if H is None:
        H = np.broadcast_to(np.asarray(layer.H0, np.int16), batch + layer.H0.shape).copy()
    return LayerState(u=np.zeros(batch + (N,), I64), s=np.zeros(batch + (N,), I64), H=H,
                      xtr=np.zeros(batch + (layer.n_in,), I64), ytr=np.zeros(batch + (N,), I64))


def dendrite(x: np.ndarray, W: np.ndarray, H: np.ndarray, hmask: np.ndarray | None = None):
    """Integrate inputs: ``accW = x @ W`` and ``accH = x @ (H * hmask)`` (exact integers).

    The products are evaluated with float64 BLAS: every partial sum is an integer below 2**53
    for the contract's geometry limits (|accW| < 2**26, |accH| < 2**34), so the result is exact
    whatever the summation order.
    """
    xf = x.astype(np.float64)
    accW = np.rint(xf @ (W if W.dtype == np.float64 else W.astype(np.float64))).astype(I64)
    Hm = H if hmask is None else H * hmask
    Hf = Hm.astype(np.float64)
    if Hf.ndim == 2 or (Hf.shape[0] == 1 and xf.shape[0] == 1):
        accH = xf @ Hf.reshape(Hf.shape[-2:])
    else:
        accH = np.matmul(xf[..., None, :], Hf)[..., 0, :]
    return accW, np.rint(accH).astype(I64)


def soma_current(accW, accH, p: dict, teach=None):
    """I = sat_U((accW << acc_shift) + b + sat_U(rshift_round(alpha * accH, alpha_shift)) [+ teach])."""
    ih = C.sat(C.rshift_round(p["alpha"] * accH, p["alpha_shift"]), C.U_BITS)
    cur = (accW << p["acc_shift"]) + p["b"] + ih
    if teach is not None:
        cur = cur + teach
    return C.sat(cur, C.U_BITS)


def soma_lif(u, s_prev, current, p: dict):
    """LIF soma. Soft reset: v = u - theta*s; hard: v = s ? u_reset : u. u' = sat_U(rshift_round(v*lam, 8) + I);
    s' = [u' > theta]."""
    if p["reset"] == C.ResetMode.SOFT:
        v = u - p["theta"] * s_prev
    else:
        v = u * (s_prev == 0) + p["u_reset"] * (s_prev != 0)
    u_new = C.sat(C.mul_frac8(v, p["lam"]) + current, C.U_BITS)
    return u_new, 1 * (u_new > p["theta"])


def soma_ann(current, p: dict):
    """ANN soma: u' = I; y = clip(rshift_round(I, ann_shift), 0, 255) (ReLU) or (-128, 127) (identity)."""
    return current + 0, C.rshift_round(current, p["ann_shift"]).clip(*C.ann_range(p["ann_act"]))


def post_fn(u, p: dict):
    """f = lut[clip(rshift_round(u*recip, recip_shift) - eta, -256, 255) + 256]."""
    z = C.rshift_round(u * p["recip"], p["recip_shift"]) - p["eta"]
    return p["lut"][z.clip(-C.LUT_HALF, C.LUT_HALF - 1) + C.LUT_HALF]


def plasticity_program(H, x, u, s, p: dict, t=None, xtr=None, ytr=None) -> np.ndarray:
    """The rule program (contract v2): H' = clip(rshift_round(H*decay, 8) + dH, +-h_clamp) with dH
    from :func:`plasticore.rules.program_dh` (traces already updated for this step; ``t`` the host's
    third-factor input, 0 when None).  Returns int16."""
    prog = p["program"]
    f = post_fn(u, p)
    if t is None:
        t = np.zeros_like(f)
    m = R.third_factor(t, f, prog)
    if xtr is None:
        xtr = np.zeros_like(x)
    if ytr is None:
        ytr = np.zeros_like(f)
    dh = R.program_dh(prog, x, p["beta"], xtr, f, s, ytr, m, p["x_frac"])
    hd = C.rshift_round(H.astype(I64) * p["decay"], 8) + dh
    c = p["h_clamp"]
    return np.clip(hd, -c, c).astype(np.int16)


def plasticity(H, x, u, p: dict) -> np.ndarray:
    """Local plasticity unit: H' = clip(rshift_round(H*decay, 8) + sign*rshift_round(g_i f_j, dh_shift), +-h_clamp)
    with g = sat_16(rshift_round(beta*x, x_frac)) and f = :func:`post_fn` (u of this step).

    Returns int16. The A x N part runs in int32, which holds every intermediate exactly:
    |H*decay + 128| < 2**24, |g*f| <= 2**30 and, for dh_shift <= 30, |g*f + 2**(dh_shift-1)| < 2**31;
    for dh_shift > 30 the rounded product is provably 0 (|g*f| <= 2**30 < 2**(dh_shift-1)).
    Every A x N operation is an in-place int32 vector operation (no temporaries beyond g x f).
    """
    f = post_fn(u, p)
    g = C.sat(C.rshift_round(p["beta"] * x, p["x_frac"]), C.G_BITS)
    if H.ndim < g.ndim + 1:  # H shared by a batch cannot take per-sample updates
        raise ValueError("plasticity: H must carry the batch dimension of x")
    hd = H.astype(np.int32)  # new int32 array; the caller's H is untouched
    decay = p["decay"]
    if decay != C.FRAC8_ONE:  # rshift_round(H * decay, 8), in place (identity for decay = 256)
        hd *= np.int32(decay)
        hd += np.int32(128)
        hd >>= np.int32(8)
    sh = p["dh_shift"]
    if sh <= 30:
        dh = g.astype(np.int32)[..., :, None] * f.astype(np.int32)[..., None, :]
        if sh:
            dh += np.int32(1 << (sh - 1))
            dh >>= np.int32(sh)
        if p["hebb_sign"] < 0:
            hd -= dh
        else:
            hd += dh
    c = p["h_clamp"]
    np.clip(hd, -c, c, out=hd)
    return hd.astype(np.int16)


def layer_params(layer: Layer) -> dict:
    """Flatten a bundle layer into the dict the step functions take (int64 arrays, python ints)."""
    p = layer.as64()
    for q in C.LAYER_PARAMS:
        p[q.name] = int(getattr(layer, q.name))
    p.update(soma=layer.soma, reset=layer.reset, ann_act=layer.ann_act, plastic=layer.plastic,
             x_frac=layer.x_frac, hmask_all=bool(np.all(layer.hmask == 1)), Wf=p["W"].astype(np.float64))
    prog = layer.program
    v1 = R.v1_form(prog)
    p.update(program=prog, v1=v1 is not None, traces=prog.uses_traces,
             s_frac=0 if layer.soma == C.SomaMode.LIF else 8)
    if v1 is not None:  # the fast int32 path runs the v1 form
        p["hebb_sign"], p["dh_shift"] = v1
    return p


@dataclass
class StepRecord:
    """Everything one layer step produced (for step-by-step comparison with the RTL)."""

    accW: np.ndarray
    accH: np.ndarray
    current: np.ndarray
    u: np.ndarray
    s: np.ndarray
    H: np.ndarray


def layer_step(p: dict, state: LayerState, x: np.ndarray, t=None, teach=None) -> tuple[LayerState, StepRecord]:
    """One time step of one layer: dendrite -> soma -> (traces) -> plasticity. Pure: returns a new
    state.  ``t``: the host's third-factor input (.., N); ``teach``: teaching current (.., N)."""
    accW, accH = dendrite(x, p["Wf"], state.H, None if p["hmask_all"] else p["hmask"])
    cur = soma_current(accW, accH, p, teach)
    if p["soma"] == C.SomaMode.LIF:
        u, s = soma_lif(state.u, state.s, cur, p)
    else:
        u, s = soma_ann(cur, p)
    xtr, ytr = state.xtr, state.ytr
    if p["plastic"] and p["traces"]:
        if xtr is None:  # a state built without traces starts them at 0
            xtr, ytr = np.zeros(x.shape, I64), np.zeros(u.shape, I64)
        xtr, ytr = R.update_traces(xtr, ytr, x, s, p["program"], p["x_frac"], p["s_frac"])
    if not p["plastic"]:
        H = state.H
    elif p["v1"]:
        H = plasticity(state.H, x, u, p)
    else:
        H = plasticity_program(state.H, x, u, s, p, t, xtr, ytr)
    return LayerState(u=u, s=s, H=H, xtr=xtr, ytr=ytr), StepRecord(accW, accH, cur, u, s, H)


# ------------------------------------------------------------------------------------------
# network runner
# ------------------------------------------------------------------------------------------
#: per-sample H is a (B, A, N) int16 array: batches are cut so that it stays near this many elements
GOLDEN_H_ELEMENTS = 1 << 24


def _start_h(L: Layer, H: np.ndarray, B: int) -> np.ndarray:
    """A batch of ``B`` samples' starting H (:class:`plasticore.bundle.HRole`): the carried H (B = 1),
    H0 per sample, or the frozen H shared."""
    if L.h_role == HRole.CARRIED:
        return H[None].copy()
    if L.h_role == HRole.PER_SAMPLE:
        return np.broadcast_to(np.asarray(L.H0, np.int16), (B,) + L.H0.shape).copy()
    return H
def run_inputs(bundle: Bundle, S: int, m: dict | None = None, teach=None):
    """Expand the host's third-factor inputs ``m`` ({layer: array}) and the last layer's teaching
    current ``teach`` to (S, T, N) int64 (``plasticore.rules.expand_per_step``; errors name the key)."""
    T = bundle.timesteps
    ms: list = [None] * len(bundle.layers)
    for li, a in (m or {}).items():
        li = int(li)
        if not 0 <= li < len(bundle.layers):
            raise R.RuleError(f"m{li}: the bundle has {len(bundle.layers)} layers")
        ms[li] = R.expand_per_step(a, S, T, bundle.layers[li].n_out, f"m{li}")
    tc = None if teach is None else R.expand_per_step(teach, S, T, bundle.n_out, "teach", bits=C.U_BITS)
    return ms, tc


def step_inputs(ms: list, tc, li: int, samples: slice, t: int) -> tuple:
    """Layer ``li``'s host inputs at step ``t`` for ``samples`` from :func:`run_inputs`' arrays (numpy or
    torch): its third-factor input t (or None) and, for the last layer, the teaching current (or None)."""
    tl = None if ms[li] is None else ms[li][samples, t]
    te = tc[samples, t] if (tc is not None and li == len(ms) - 1) else None
    return tl, te


def run(bundle: Bundle, x: np.ndarray, labels: np.ndarray | None = None, record_membranes: bool = False,
        H_start: list[np.ndarray] | None = None, batch: int = 256, m: dict | None = None,
        teach=None) -> RunResult:
    """Run layer-0 inputs ``x`` (S, T, A0) through the network sample after sample.

    Samples are independent (and evaluated as a batch of up to ``batch``) when every plastic layer
    resets H per sample; otherwise they run one after another so that H carries over exactly as
    on chip.  ``H_start`` overrides the initial H of a persistent layer (continuing a run).
    ``m`` ({layer: (S,), (S, N), (S, T, 1) or (S, T, N)}) is the third-factor input t of the rule
    programs; ``teach`` the same shapes for the last layer's teaching current (membrane units).
    """
    x = check_inputs(bundle, x)
    S, T = x.shape[0], bundle.timesteps
    ms, tc = run_inputs(bundle, S, m, teach)
    params = [layer_params(L) for L in bundle.layers]
    chunk = bundle.sample_batch(batch, GOLDEN_H_ELEMENTS)
    Hs = [np.asarray(H_start[i] if H_start is not None else L.H0, np.int16) for i, L in enumerate(bundle.layers)]
    spikes = [np.zeros((S, T, L.n_out), np.int16) for L in bundle.layers]
    u_final = [np.zeros((S, L.n_out), np.int32) for L in bundle.layers]
    u_trace = [np.zeros((S, T, L.n_out), np.int32) for L in bundle.layers] if record_membranes else None
    for s0 in range(0, S, chunk):
        s1 = min(S, s0 + chunk)
        states = [init_state(L, (s1 - s0,), H=_start_h(L, Hs[li], s1 - s0)) for li, L in enumerate(bundle.layers)]
        for t in range(T):
            inp = x[s0:s1, t]
            for li, p in enumerate(params):
                states[li], rec = layer_step(p, states[li], inp, *step_inputs(ms, tc, li, slice(s0, s1), t))
                spikes[li][s0:s1, t] = states[li].s
                if u_trace is not None:
                    u_trace[li][s0:s1, t] = states[li].u
                inp = states[li].s
        for li, L in enumerate(bundle.layers):
            u_final[li][s0:s1] = states[li].u
            if L.plastic:
                Hs[li] = states[li].H[-1]
    preds = predict(bundle, u_final[-1].astype(I64), spikes[-1][:, -1].astype(I64))
    return RunResult(spikes=spikes, u_final=u_final, h_final=[h.astype(np.int16) for h in Hs],
                     predictions=preds, labels=None if labels is None else np.asarray(labels, np.int64),
                     u_trace=u_trace)
