"""The programmable plasticity unit (rtl/program_lpu.py) against the contract's rule programs
(plasticore/rules.py, the golden model's arithmetic): random programs and random factors over their full
ranges, every synapse of every word equal, and the sweep's clock count equal to ``program_lpu_cycles``."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from plasticore import contract as C
from plasticore import rules as R
from plasticore.core_map import CoreGeometry
from plasticore.rtl.program_lpu import (
    FACTOR_BITS,
    POST_FIELDS,
    ProgramPlasticityUnit,
    program_lpu_cycles,
    program_registers,
)

A, NG, P = 5, 2, 4  # axons, neuron groups, lanes
N = NG * P


class Harness(Elaboratable):
    """The unit with plain synchronous memories for H, x, β, the presynaptic trace and the post words."""

    def __init__(self):
        self.geom = CoreGeometry(a_max=8, n_max=N, lanes=P)
        self.dut = ProgramPlasticityUnit(self.geom)
        self.hmem = Memory(shape=unsigned(C.H_BITS * P), depth=A * NG, init=[])
        self.xmem = Memory(shape=unsigned(C.X_BITS), depth=A, init=[])
        self.bmem = Memory(shape=unsigned(C.BETA_BITS), depth=A, init=[])
        self.tmem = Memory(shape=unsigned(R.TRACE_BITS), depth=A, init=[])
        self.pmem = Memory(shape=unsigned(FACTOR_BITS * P * len(POST_FIELDS)), depth=NG, init=[])

    def elaborate(self, platform):
        m = Module()
        d = m.submodules.dut = self.dut
        for name in ("hmem", "xmem", "bmem", "tmem", "pmem"):
            m.submodules[name] = getattr(self, name)
        hr, hw = self.hmem.read_port(), self.hmem.write_port()
        m.d.comb += [hr.addr.eq(d.h_raddr), d.h_rdata.eq(hr.data), hw.addr.eq(d.h_waddr), hw.data.eq(d.h_wdata),
                     hw.en.eq(d.h_we)]
        for mem, a, dat in ((self.xmem, d.x_addr, d.x_data), (self.bmem, d.beta_addr, d.beta_data),
                            (self.tmem, d.xtr_addr, d.xtr_data), (self.pmem, d.post_addr, d.post_data)):
            rp = mem.read_port()
            m.d.comb += [rp.addr.eq(a), dat.eq(rp.data)]
        return m


def _pack(vals, bits):
    return sum((int(v) & ((1 << bits) - 1)) << (bits * k) for k, v in enumerate(vals))


def _unpack(word, bits, n):
    out = []
    for k in range(n):
        v = (word >> (bits * k)) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if v >> (bits - 1) else v)
    return out


def _random_case(rng: np.random.Generator, n_terms: int):
    def r16(size, bits=16):
        # full range, with a share of small values so that products and sums stay informative
        big = rng.integers(C.smin(bits), C.smax(bits) + 1, size=size)
        small = rng.integers(-300, 301, size=size)
        return np.where(rng.random(size) < 0.5, big, small).astype(np.int64)

    terms = []
    for _ in range(n_terms):
        terms.append(R.Term(pre=rng.choice(list(R.Pre)), post=rng.choice(list(R.Post)),
                            c=int(rng.integers(C.smin(R.COEF_BITS), C.smax(R.COEF_BITS) + 1)),
                            shift=int(rng.choice([0, 1, 4, 8, 12, 15, 20, 31, 40])),
                            c_shift=int(rng.choice([0, 1, 3, 7, 12, 16, 24, 40]))))
    prog = R.RuleProgram(terms=tuple(terms))
    graded = bool(rng.integers(2))
    x = rng.integers(-256, 256, size=A) if graded else rng.integers(0, 2, size=A)
    f, s, ytr, mm = r16(N), rng.integers(0, 2, size=N), r16(N), r16(N)
    case = {
        "prog": prog, "graded": graded, "x": x.astype(np.int64), "beta": r16(A), "xtr": r16(A),
        "f": f, "s": s.astype(np.int64), "ytr": ytr, "m": mm, "H": r16((A, N)),
        "decay": int(rng.integers(0, 257)), "h_clamp": int(rng.integers(1, C.smax(C.H_BITS) + 1)),
    }
    case["post"] = {"f": f, "s": case["s"], "ytr": ytr, "m": mm,
                    "mf": R.post_value(R.Post.M_LUT, f, case["s"], ytr, mm),
                    "ms": R.post_value(R.Post.M_S, f, case["s"], ytr, mm),
                    "my": R.post_value(R.Post.M_YTR, f, case["s"], ytr, mm)}
    return case


def _expected(c) -> np.ndarray:
    xf = C.X_FRAC[C.InputKind.GRADED] if c["graded"] else 0
    dh = R.program_dh(c["prog"], c["x"], c["beta"], c["xtr"], c["f"], c["s"], c["ytr"], c["m"], xf)
    hd = C.rshift_round(c["H"] * c["decay"], 8) + dh
    return np.clip(hd, -c["h_clamp"], c["h_clamp"])


def _run(cases):
    """Run every case through one simulation; returns [(H after the sweep (A, N), clocks)]."""
    h = Harness()
    dut = h.dut
    results = []

    async def tb(ctx):
        for c in cases:
            for i in range(A):
                ctx.set(h.xmem.data[i], int(c["x"][i]) & 0x1FF)
                ctx.set(h.bmem.data[i], int(c["beta"][i]) & 0xFFFF)
                ctx.set(h.tmem.data[i], int(c["xtr"][i]) & 0xFFFF)
                for g in range(NG):
                    ctx.set(h.hmem.data[g * A + i], _pack(c["H"][i, g * P:(g + 1) * P], C.H_BITS))
            for g in range(NG):
                word = 0
                for fi, name in enumerate(POST_FIELDS):
                    word |= _pack(c["post"][name][g * P:(g + 1) * P], FACTOR_BITS) << (FACTOR_BITS * P * fi)
                ctx.set(h.pmem.data[g], word)
            regs = program_registers(c["prog"])
            ctx.set(dut.program.n_terms, regs["n_terms"])
            for k, t in enumerate(regs["terms"]):
                for f, v in t.items():
                    ctx.set(getattr(dut.program.terms[k], f), v)
            ctx.set(dut.params.n_axons, A)
            ctx.set(dut.params.decay, c["decay"])
            ctx.set(dut.params.h_clamp, c["h_clamp"])
            ctx.set(dut.params.input_kind, int(C.InputKind.GRADED if c["graded"] else C.InputKind.SPIKE))
            ctx.set(dut.n_groups, NG)
            await ctx.tick()
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            clocks = 1
            while ctx.get(dut.busy):
                await ctx.tick()
                clocks += 1
            Hout = np.zeros((A, N), np.int64)
            for i in range(A):
                for g in range(NG):
                    Hout[i, g * P:(g + 1) * P] = _unpack(ctx.get(h.hmem.data[g * A + i]), C.H_BITS, P)
            results.append((Hout, clocks))

    sim = Simulator(h)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return results


def _first_difference(got, want) -> str:
    i, j = map(int, np.argwhere(got != want)[0])
    return f"first difference at axon {i}, neuron {j}: RTL {got[i, j]}, rule {want[i, j]}"


def test_random_programs_bit_exact_and_cycles():
    rng = np.random.default_rng(2026)
    cases = [_random_case(rng, n) for n in (1, 2, 3, 4, 4, 3, 2, 1, 4, 4)]
    for c, (Hout, clocks) in zip(cases, _run(cases), strict=True):
        want = _expected(c)
        assert np.array_equal(Hout, want), f"{c['prog'].to_json()['terms']}: {_first_difference(Hout, want)}"
        assert clocks == program_lpu_cycles(len(c["prog"].terms), NG, A)


@pytest.mark.parametrize("name", ["simple", "stdp", "fireflyp", "reward_hebb", "prototype", "delta"])
def test_presets_bit_exact(name):
    """Every preset as it compiles for a spiking layer (its own decays and m-kind aside: the factors
    are given), and the v1 program of a plain layer."""
    rng = np.random.default_rng(sorted(R.PRESETS).index(name))
    pre = R.PRESETS[name]
    prog = R.compile_rule(pre.text, pre.coefs, x_frac=0, beta_frac=14, pre_decay=pre.pre_decay,
                          post_decay=pre.post_decay, m_kind=pre.m_kind)
    c = _random_case(rng, len(prog.terms))
    c["prog"], c["graded"] = prog, False
    c["x"] = rng.integers(0, 2, size=A).astype(np.int64)
    ((Hout, clocks),) = _run([c])
    want = _expected(c)
    assert np.array_equal(Hout, want), _first_difference(Hout, want)
    assert clocks == program_lpu_cycles(len(prog.terms), NG, A)
