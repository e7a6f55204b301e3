"""Rounding and saturation primitives of the integer contract at their edges."""

from fractions import Fraction

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from plasticore import contract as C

big = st.integers(min_value=-(1 << 50), max_value=1 << 50)


@given(v=big, s=st.integers(0, 40))
def test_rshift_round_is_round_half_up(v, s):
    got = C.rshift_round(v, s)
    exact = Fraction(v, 1 << s)
    # round half up: floor(exact + 1/2)
    want = (exact + Fraction(1, 2)).__floor__()
    assert got == want
    assert abs(Fraction(got) - exact) <= Fraction(1, 2)


@given(v=big, s=st.integers(0, 40))
def test_rshift_round_vectorised_equals_scalar(v, s):
    arr = np.array([v, -v, v // 3], dtype=np.int64)
    got = C.rshift_round(arr, s)
    assert [int(g) for g in got] == [C.rshift_round(int(a), s) for a in arr]


@given(v=big, bits=st.integers(2, 48))
def test_sat_bounds(v, bits):
    r = C.sat(v, bits)
    assert C.smin(bits) <= r <= C.smax(bits)
    if C.smin(bits) <= v <= C.smax(bits):
        assert r == v
    elif v > C.smax(bits):
        assert r == C.smax(bits)
    else:
        assert r == C.smin(bits)


@given(v=st.integers(-(1 << 24), 1 << 24))
def test_frac8_edges(v):
    assert C.mul_frac8(v, 256) == v  # 256/256 is exactly one
    assert C.mul_frac8(v, 0) == 0
    assert C.mul_frac8(v, 128) == C.rshift_round(v, 1)


def test_rshift_round_half_cases():
    assert C.rshift_round(1, 1) == 1  # 0.5 -> 1
    assert C.rshift_round(-1, 1) == 0  # -0.5 -> 0 (half up)
    assert C.rshift_round(-3, 1) == -1  # -1.5 -> -1
    assert C.rshift_round(3, 1) == 2


def test_lut_shapes_and_values():
    for fn in C.PostFn:
        lut = C.make_lut(fn)
        assert lut.shape == (C.LUT_SIZE,) and lut.dtype == np.int16
    t = C.make_lut("tanh")
    assert t[C.LUT_HALF] == 0 and t[-1] == round(np.tanh(255 / 64) * 4096)
    i = C.make_lut("identity")
    assert i[C.LUT_HALF + 64] == 4096  # z = 1.0
    s = C.make_lut("sign")
    assert set(np.unique(s)) == {-4096, 0, 4096}


@given(theta=st.integers(1, C.smax(C.THETA_BITS)))
def test_recip_approximates_division(theta):
    recip, sh = C.recip_for_theta(theta)
    assert 0 < recip < 1 << C.RECIP_BITS
    # z for u = theta must be 64 (1.0) within one LSB, and the relative error of recip is tiny
    z = C.rshift_round(theta * recip, sh)
    assert abs(z - 64) <= 1
    rel = abs(recip * theta / 2 ** (sh + C.Z_FRAC) - 1)
    assert rel <= 2.0 ** -14 or theta > 1 << 20 or recip < 1 << 15


def test_accumulator_widths_cover_the_geometry():
    A = C.MAX_AXONS
    assert A * 255 * 128 < 1 << (C.ACC_W_BITS - 1)
    assert A * 256 * (1 << 15) <= 1 << (C.ACC_H_BITS - 1)


def test_ann_range_is_the_8_bit_output():
    assert C.ann_range(C.AnnAct.RELU) == (0, 255) and C.ann_range(int(C.AnnAct.IDENTITY)) == (-128, 127)
    assert C.ann_range(C.AnnAct.IDENTITY) == (C.smin(C.ANN_OUT_BITS), C.smax(C.ANN_OUT_BITS))


def test_layer_params_are_defined_once():
    """Every LAYER_PARAMS row is a Layer field with its default, a bundle scalar with its range, and (when
    it has a register) a core register of that name whose width holds the whole range."""
    import dataclasses
    import re
    from pathlib import Path

    from plasticore import bundle as B
    from plasticore import core_map as M

    fields = {f.name: f for f in dataclasses.fields(B.Layer)}
    for p in C.LAYER_PARAMS:
        f = fields[p.name]
        assert (f.default is dataclasses.MISSING) == (p.default is None), p.name
        if p.default is not None:
            assert f.default == p.default and p.range.lo <= p.default <= p.range.hi, p.name
        assert C.RANGES[p.name] == p.range
        if p.reg is None:
            continue
        r = M.Reg[p.name.upper()]
        assert int(r) == p.reg and r in M.PARAM_REGS
        w, signed = M.REGS[r]
        lo, hi = (C.smin(w), C.smax(w)) if signed else (0, (1 << w) - 1)
        assert lo <= p.range.lo and p.range.hi <= hi, f"{p.name}: range {p.range} does not fit {w} bits"
    assert B.SCALAR_FIELDS == tuple(p.name for p in C.LAYER_PARAMS)
    # the bundle format's prose lists the same scalars in the same order
    doc = (Path(__file__).parents[1] / "docs" / "bundle.md").read_text()
    listed = re.search(r"the scalars `([^`]*)`", doc).group(1).split()
    assert tuple(listed) == B.SCALAR_FIELDS


def test_layer_registers_fit_their_registers():
    """layer_registers gives every parameter register a value inside its width (random legal layers)."""
    from plasticore import core_map as M
    from plasticore.sim.random_bundle import random_bundle

    rng = np.random.default_rng(3)
    for _ in range(20):
        b = random_bundle(rng)
        for L in b.layers:
            regs = M.layer_registers(L)
            assert set(regs) <= set(M.PARAM_REGS)
            for r, v in regs.items():
                w, signed = M.REGS[r]
                lo, hi = (C.smin(w), C.smax(w)) if signed else (0, (1 << w) - 1)
                assert lo <= v <= hi, (r, v)
