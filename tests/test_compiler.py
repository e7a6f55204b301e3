"""Bundle -> chip images: placement limits and images that decode back to the bundle exactly."""

import numpy as np
import pytest

from plasticore import chip_map as M
from plasticore import core_map as CM
from plasticore.chip_map import ChipGeometry
from plasticore.host.compiler import (
    CORE_SHIFT,
    IDX_BITS,
    MEM_SHIFT,
    CompileError,
    compile_bundle,
    decode_lane_words,
    decode_outputs,
    elems_per_word,
)
from plasticore.sim.random_bundle import random_bundle


def _decode_matrix(words, mem, geom, A, N):
    P = geom.lanes
    epw = elems_per_word(mem, P)
    bits = CM.MEMS[mem].bits
    G = -(-N // P)
    out = np.zeros((G, A, P), np.int64)
    for n, w in enumerate(words):
        word, chunk = divmod(n, P // epw)
        g, i = divmod(word, A)
        for e in range(epw):
            out[g, i, chunk * epw + e] = CM.from_bits(w >> (e * bits), bits, CM.MEMS[mem].signed)
    return out.transpose(1, 0, 2).reshape(A, G * P)[:, :N]


@pytest.mark.parametrize("seed,lanes,n_max", [(0, 16, 16), (1, 4, 8), (2, 1, 5), (3, 32, 64), (4, 2, 3)])
def test_images_decode_to_the_bundle(seed, lanes, n_max):
    rng = np.random.default_rng(seed)
    b = random_bundle(rng, sizes=[int(rng.integers(1, 20)) for _ in range(3)], timesteps=3)
    geom = ChipGeometry(4, 4, CM.CoreGeometry(32, n_max, lanes))
    img = compile_bundle(b, geom)
    for ci in img.cores:
        sl = img.placement.core_slice(ci.core)
        L = b.layers[sl.layer]
        assert ci.regs[CM.Reg.N_AXONS] == L.n_in and ci.regs[CM.Reg.N_NEURONS] == sl.j1 - sl.j0
        runs = {(a >> MEM_SHIFT) & 0xF: (a, w) for a, w in ci.runs}
        for mem, full in ((CM.Mem.W, L.W), (CM.Mem.H, L.H0), (CM.Mem.HMASK, L.hmask)):
            a, words = runs[mem]
            assert a >> CORE_SHIFT & 0x3F == ci.core and a & ((1 << IDX_BITS) - 1) == 0
            got = _decode_matrix(words, mem, geom.core, L.n_in, sl.j1 - sl.j0)
            assert np.array_equal(got, full[:, sl.j0:sl.j1]), mem
            assert np.array_equal(decode_lane_words(words, mem, geom.core, L.n_in, sl.j1 - sl.j0), got)
        _, bw = runs[CM.Mem.B]
        assert [CM.from_bits(w, 24, True) for w in bw] == list(L.b[sl.j0:sl.j1])
    # routing: every core of layer l points at every core of layer l+1 and (recorded) at the host
    tables = {}
    for a, w in img.chip_writes:
        if a >= M.ChipReg.ROUTE_BASE:
            k, e = divmod(a - M.ChipReg.ROUTE_BASE, M.MAX_DESTS)
            if w:
                tables.setdefault(k, []).append(M.RouteEntry.unpack(w))
    for sl in img.placement.slices:
        ents = tables[sl.core]
        nxt = img.placement.layer_cores[sl.layer + 1] if sl.layer + 1 < len(b.layers) else []
        assert sorted(e.x + 4 * e.y for e in ents if not e.to_host) == sorted(nxt)
        assert all(e.base == sl.j0 for e in ents if not e.to_host)
        host = [e for e in ents if e.to_host]
        assert len(host) == 1 and host[0].base == img.placement.out_offset[sl.layer] + sl.j0


def test_decode_outputs():
    b = random_bundle(np.random.default_rng(9), sizes=[5, 7, 3], timesteps=2)
    img = compile_bundle(b, ChipGeometry(2, 2, CM.CoreGeometry(8, 8, 4)))
    entries = [6 | (1 << 16), 7 | (((-5) & 0x1FF) << 16)]
    assert decode_outputs(entries, b, img.placement) == [(0, 6, 1), (1, 0, -5)]


def test_does_not_fit_errors():
    rng = np.random.default_rng(1)
    b = random_bundle(rng, sizes=[40, 30, 5], timesteps=2)
    with pytest.raises(CompileError, match="layer 0 has 40 inputs but a core has 32 axons"):
        compile_bundle(b, ChipGeometry(2, 2, CM.CoreGeometry(32, 32, 4)))
    b = random_bundle(rng, sizes=[10, 30, 5], timesteps=2)
    with pytest.raises(CompileError, match="more than the chip's 2 cores"):
        compile_bundle(b, ChipGeometry(2, 1, CM.CoreGeometry(32, 16, 4)))


def test_layer_limit_is_the_chip_map_phases():
    """A chip runs at most ``chip_map.MAX_PHASES`` layers (0xF marks an unused core); the compiler and
    the identify reply's ``layers`` take it from there."""
    from plasticore import contract as C
    from plasticore.rtl.chip import Chip

    assert M.MAX_PHASES == M.UNUSED_PHASE == 15 < C.MAX_LAYERS
    chip = Chip(1, 1, 8, 8, 1)
    chip._MustUse__silence = True  # only its identify fields are read here
    assert chip.geometry()["layers"] == M.MAX_PHASES
    geom = ChipGeometry(4, 4, CM.CoreGeometry(8, 8, 1))
    rng = np.random.default_rng(0)
    compile_bundle(random_bundle(rng, sizes=[2] * (M.MAX_PHASES + 1), timesteps=2), geom)
    with pytest.raises(CompileError, match="16 layers > the chip's 15 phases"):
        compile_bundle(random_bundle(rng, sizes=[2] * (M.MAX_PHASES + 2), timesteps=2), geom)


def test_input_runs_write_exactly_the_non_zero_inputs():
    """Layer-0 inputs go to the chip as runs of non-zero axons (events when sparse): written over a
    zero vector they give back the step's inputs; short zero gaps are joined, an all-zero step writes
    nothing."""
    from plasticore.host.device import MAX_ZERO_GAP, input_runs

    rng = np.random.default_rng(0)
    for density in (0.0, 0.05, 0.3, 1.0):
        x = np.where(rng.random(200) < density, rng.integers(-256, 256, 200), 0)
        got = np.zeros(200, np.int64)
        runs = input_runs(x)
        for start, words in runs:
            w = np.asarray(words)
            got[start:start + len(w)] = np.where(w >= 256, w - 512, w)
            assert w[0] != 0 and w[-1] != 0
        assert np.array_equal(got, x)
        starts = [s for s, _ in runs] + [10**9]
        ends = [s + len(w) for s, w in runs]
        assert all(starts[i + 1] - ends[i] > MAX_ZERO_GAP for i in range(len(runs)))
    assert input_runs(np.zeros(8, np.int64)) == []
