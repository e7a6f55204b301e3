"""Integer golden model vs the literal float equations (docs/training.md, "The model"), within the bound
of docs/spec.md §5."""

import numpy as np
import pytest

from plasticore import contract as C
from plasticore import golden
from plasticore.sim import float_ref
from plasticore.sim.random_bundle import random_bundle, random_inputs


def _one_step(seed):
    rng = np.random.default_rng(seed)
    b = random_bundle(rng, sizes=[int(rng.integers(1, 30)), int(rng.integers(1, 30))], timesteps=1,
                      allow_ann=False, edges=["none"])
    L = b.layers[0]
    L.plastic = True
    L.post_fn, L.lut = "tanh", C.make_lut("tanh")
    p = golden.layer_params(L)
    rp = float_ref.real_params(L)
    x = random_inputs(rng, b, 1)[0, 0]
    u = rng.integers(-L.theta * 2, L.theta * 2 + 1, size=L.n_out)
    s = rng.integers(0, 2, size=L.n_out)
    H = rng.integers(-L.h_clamp, L.h_clamp + 1, size=(L.n_in, L.n_out))
    st, rec = golden.layer_step(p, golden.LayerState(u=u, s=s, H=H), x)
    us = 2.0 ** L.u_frac
    fu, fs, fH = float_ref.layer_step(rp, L, u / us, s.astype(float), H / 4096.0, x * rp["x_scale"])
    return L, p, x, u, rec, st, fu, fH


@pytest.mark.parametrize("seed", range(60))
def test_one_step_within_documented_bound(seed):
    L, p, x, u0, rec, st, fu, fH = _one_step(seed)
    us = 2.0 ** L.u_frac
    lim = (1 << 23) - 2
    ok = (np.abs(rec.current) < lim) & (np.abs(st.u) < lim) & (np.abs(fu * us) < lim)
    # membrane: 0.5 LSB from the alpha rounding + 0.5 LSB from the leak rounding (+ float slack)
    err_u = np.abs(st.u - fu * us)
    assert np.all(err_u[ok] <= 1.0 + 1e-6), f"u error {err_u[ok].max()} LSB"
    # plastic weights: decay rounding + dH rounding + table error scaled by |g|
    theta = L.theta
    rel = abs(L.recip * theta / 2 ** (L.recip_shift + C.Z_FRAC) - 1)
    z_real = fu * us / theta - L.eta / 64.0
    # z: rounding of u*recip, reciprocal error, and the (bounded) membrane difference carried into z
    zerr = (0.5 + np.abs(st.u) * 64.0 / theta * rel + np.abs(st.u - fu * us) * 64.0 / theta) / 64.0
    clip_err = np.where(np.abs(z_real) > 255 / 64, 1 - np.tanh(255 / 64) + 1 / 64, 0.0)
    ferr = (zerr + 2.0 ** -13 + clip_err) * 4096  # in f LSB
    g_exact = L.beta.astype(float) * x / 2 ** L.x_frac
    g = np.clip(C.rshift_round(L.beta.astype(np.int64) * x, L.x_frac), -32768, 32767)
    f_real = np.tanh(z_real)
    bound = 1.0 + (np.abs(g)[:, None] * ferr[None, :] + np.abs(g - g_exact)[:, None] * 4096 * np.abs(f_real)) \
        / 2 ** L.dh_shift + 1e-6
    err_h = np.abs(st.H - fH * 4096)
    unclamped = (np.abs(fH * 4096) < L.h_clamp - bound) & ok[None, :]
    assert np.all(err_h[unclamped] <= bound[unclamped]), f"H error {(err_h - bound)[unclamped].max()} over bound"


def test_bound_is_not_vacuous():
    """Across the cases the errors are nonzero (rounding really happens) but small."""
    errs = []
    for seed in range(20):
        L, p, x, u0, rec, st, fu, fH = _one_step(seed)
        errs.append(np.max(np.abs(st.H - fH * 4096)) if st.H.size else 0)
    assert max(errs) > 0
    assert np.median(errs) < 64


def test_multi_step_run_tracks_float():
    """Over a whole run the integer and float networks mostly agree on spikes."""
    rng = np.random.default_rng(3)
    agree = []
    for _ in range(8):
        b = random_bundle(rng, sizes=[20, 16, 6], timesteps=6, allow_ann=False, edges=["none", "none"])
        for L in b.layers:
            L.post_fn, L.lut = "tanh", C.make_lut("tanh")
        x = random_inputs(rng, b, 3)
        r = golden.run(b, x)
        fs, fu, fH = float_ref.run(b, x)
        agree.append(np.mean(r.spikes[0] == fs[0]))
    assert np.median(agree) > 0.95
