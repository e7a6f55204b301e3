"""The vectorised golden model equals an independent per-synapse Python loop, step by step."""

import numpy as np
import pytest

from plasticore import golden
from plasticore.sim.naive import naive_layer_step
from plasticore.sim.random_bundle import EDGES, random_bundle, random_inputs


def _naive_run(bundle, x):
    """Naive sample-by-sample network run; returns spikes (S,T,N) per layer, final u, final H."""
    params = [golden.layer_params(L) for L in bundle.layers]
    S, T = x.shape[:2]
    Hs = [L.H0.astype(int).tolist() for L in bundle.layers]
    spikes = [np.zeros((S, T, L.n_out), np.int64) for L in bundle.layers]
    uf = [np.zeros((S, L.n_out), np.int64) for L in bundle.layers]
    for si in range(S):
        st = []
        for li, L in enumerate(bundle.layers):
            H = L.H0.astype(int).tolist() if L.h_persist == 1 else Hs[li]
            st.append(([0] * L.n_out, [0] * L.n_out, H))
        for t in range(T):
            inp = [int(v) for v in x[si, t]]
            for li, p in enumerate(params):
                st[li] = naive_layer_step(p, *st[li], inp)
                spikes[li][si, t] = st[li][1]
                inp = st[li][1]
        for li, L in enumerate(bundle.layers):
            uf[li][si] = st[li][0]
            if L.plastic:
                Hs[li] = st[li][2]
    return spikes, uf, Hs


@pytest.mark.parametrize("seed", range(40))
def test_network_equals_naive_loop(seed):
    rng = np.random.default_rng(seed)
    b = random_bundle(rng, sizes=[int(rng.integers(1, 12)) for _ in range(int(rng.integers(2, 4)))],
                      timesteps=int(rng.integers(1, 6)), edges=None)
    mode = ["random", "random", "silent", "all"][seed % 4]
    x = random_inputs(rng, b, int(rng.integers(1, 4)), mode)
    res = golden.run(b, x)
    sp, uf, Hs = _naive_run(b, x)
    for li in range(len(b.layers)):
        assert np.array_equal(res.spikes[li], sp[li]), f"layer {li} spikes"
        assert np.array_equal(res.u_final[li], uf[li]), f"layer {li} u"
        assert np.array_equal(res.h_final[li], np.array(Hs[li])), f"layer {li} H"


@pytest.mark.parametrize("edge", EDGES)
def test_plasticity_vectorised_equals_loop_per_edge_class(edge):
    rng = np.random.default_rng(hash(edge) % 2**32)
    for _ in range(5):
        b = random_bundle(rng, sizes=[int(rng.integers(1, 20)), int(rng.integers(1, 20))], timesteps=1,
                          edges=[edge])
        L = b.layers[0]
        p = golden.layer_params(L)
        p["plastic"] = True
        x = random_inputs(rng, b, 1)[0, 0]
        u = rng.integers(-(1 << 23), 1 << 23, size=L.n_out)
        s = rng.integers(0, 2, size=L.n_out)
        H = rng.integers(-L.h_clamp, L.h_clamp + 1, size=(L.n_in, L.n_out))
        st, rec = golden.layer_step(p, golden.LayerState(u=u, s=s, H=H), x)
        nu, ns, nH = naive_layer_step(p, u.tolist(), s.tolist(), H.tolist(), x.tolist())
        assert np.array_equal(st.u, nu)
        assert np.array_equal(st.s, ns)
        assert np.array_equal(st.H, np.array(nH))


def test_saturation_is_reached():
    """The 'saturate' edge class really drives membranes to the rails (the test is not vacuous)."""
    rng = np.random.default_rng(7)
    hit = False
    for _ in range(20):
        b = random_bundle(rng, sizes=[16, 8], timesteps=4, edges=["saturate"], allow_ann=False)
        r = golden.run(b, random_inputs(rng, b, 2, "all"), record_membranes=True)
        hit |= bool(np.any(np.abs(r.u_trace[0]) >= (1 << 23) - 1))
    assert hit


def test_clamp_is_reached():
    rng = np.random.default_rng(8)
    hit = False
    for _ in range(20):
        b = random_bundle(rng, sizes=[8, 8], timesteps=3, edges=["clamp"], allow_ann=False)
        b.layers[0].plastic = True
        r = golden.run(b, random_inputs(rng, b, 1, "all"))
        c = b.layers[0].h_clamp
        hit |= bool(c > 0 and np.any(np.abs(r.h_final[0]) == c))
    assert hit
