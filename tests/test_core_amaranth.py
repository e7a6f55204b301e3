"""Amaranth-simulator tests of the core's arithmetic blocks and of tiny cores vs the golden model.

Fast checks that need no Verilator build: the contract primitives (``rshift_round``, ``sat``) as
hardware, the soma (LIF soft/hard, ANN ReLU/identity) and the LPU through a 6-axon x 5-neuron core of
each implementation (HybridCore with P = 4, with plain and with pipelined memories; CompactCore),
bit-exact against ``plasticore.golden`` after every step, cycle count included.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import memory
from amaranth.sim import Simulator

from plasticore import contract as C
from plasticore import golden
from plasticore.core_map import (
    Cmd,
    CoreGeometry,
    Mem,
    Reg,
    from_bits,
    layer_writes,
    matrix_read_addrs,
    to_bits,
    unpack_matrix,
)
from plasticore.rtl.arith import clip_sub_fast, rshift_round, sat, sat_fast
from plasticore.rtl.chip import CORE_KINDS
from plasticore.rtl.core import HybridCore
from plasticore.rtl.layouts import NO_RW_CHECK, RW_POISON_ENV, no_rw_check_read
from plasticore.rtl.pipelined_ram import PipelinedRam
from plasticore.sim.amaranth_bus import CoreBus
from plasticore.sim.core_tb import cycle_parts
from plasticore.sim.random_bundle import random_layer


def test_arith_primitives_match_contract():
    m = Module()
    v = Signal(signed(44))
    s = Signal(6)
    rs = Signal(signed(46))
    st = Signal(signed(24))
    m.d.comb += [rs.eq(rshift_round(v, s, C.SHIFT_MAX)), st.eq(sat(v, 24))]
    rng = np.random.default_rng(7)
    lo, hi = -(1 << 43), (1 << 43) - 1
    vals = [lo, hi, 0, 1, -1, (1 << 23), -(1 << 23) - 1, (1 << 23) - 1, -(1 << 23)]
    vals += [int(x) for x in rng.integers(lo, hi, 300)] + [int(x) for x in rng.integers(-5000, 5000, 200)]
    shifts = [0, 1, 2, 7, 8, 39, 40] + [int(x) for x in rng.integers(0, 41, 40)]
    bad = []

    async def tb(ctx):
        for i, x in enumerate(vals):
            for sh in (shifts if i < 40 else shifts[i % len(shifts):][:3]):
                ctx.set(v, x)
                ctx.set(s, sh)
                got_r, got_s = ctx.get(rs), ctx.get(st)
                if got_r != C.rshift_round(x, sh) or got_s != int(C.sat(x, 24)):
                    bad.append((x, sh, got_r, C.rshift_round(x, sh), got_s))

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    assert not bad, f"first mismatches (v, s, rtl rshift, golden rshift, rtl sat): {bad[:5]}"


def test_soma_short_saturations_are_exact():
    """The soma's short forms give the integers of the long ones: the table index
    ``clip_sub_fast(zs, eta, 9) == sat(zs - eta, 9)`` (zs 42 bits, eta 16), and the membrane
    ``sat_U(sat(vlr, U + 1) + I) == sat_U(vlr + I)`` (vlr 35 bits, I a U-bit value)."""
    U = C.U_BITS
    m = Module()
    zs, eta, z = Signal(signed(42)), Signal(signed(C.ETA_BITS)), Signal(signed(9))
    vlr, cur, u = Signal(signed(U + 2 + C.FRAC8_BITS)), Signal(signed(U)), Signal(signed(U))
    m.d.comb += [z.eq(clip_sub_fast(zs, eta, 9)), u.eq(sat_fast(sat_fast(vlr, U + 1) + cur, U))]
    rng = np.random.default_rng(11)
    edges = [0, 1, -1, 255, 256, -256, -257, (1 << 17) - 1, 1 << 17, -(1 << 17), -(1 << 17) - 1, (1 << 15) + 300]
    zss = edges + [-e for e in edges] + [int(x) for x in rng.integers(-(1 << 41), 1 << 41, 150)]
    zss += [int(x) for x in rng.integers(-(1 << 18), 1 << 18, 150)]
    etas = [0, 1, -1, (1 << 15) - 1, -(1 << 15), 300, -300] + [int(x) for x in rng.integers(-(1 << 15), 1 << 15, 8)]
    big = 1 << (U + 1 + C.FRAC8_BITS)
    vlrs = [0, (1 << 24) - 1, 1 << 24, -(1 << 24), -(1 << 24) - 1, (1 << 23), -(1 << 23) - 1, big - 1, -big]
    vlrs += [int(x) for x in rng.integers(-big, big, 150)] + [int(x) for x in rng.integers(-(1 << 25), 1 << 25, 150)]
    curs = [0, (1 << 23) - 1, -(1 << 23), 1, -1] + [int(x) for x in rng.integers(-(1 << 23), 1 << 23, 5)]
    bad = []

    async def tb(ctx):
        for i, a in enumerate(zss):
            for b in etas if i < len(edges) * 2 else etas[i % len(etas):][:2]:
                ctx.set(zs, a)
                ctx.set(eta, b)
                if ctx.get(z) != int(C.sat(a - b, 9)):
                    bad.append(("z", a, b, ctx.get(z), int(C.sat(a - b, 9))))
        for i, a in enumerate(vlrs):
            for b in curs if i < 9 else curs[i % len(curs):][:2]:
                ctx.set(vlr, a)
                ctx.set(cur, b)
                if ctx.get(u) != int(C.sat(a + b, U)):
                    bad.append(("u", a, b, ctx.get(u), int(C.sat(a + b, U))))

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    assert not bad, f"first mismatches (which, a, b, rtl, golden): {bad[:5]}"


# ------------------------------------------------------------------------------------------
# tiny core in the Amaranth simulator
# ------------------------------------------------------------------------------------------
#: the tiny build of each core implementation (the hybrid one with P = 4 lanes)
CORES = {"hybrid": CoreGeometry(6, 5, 4), "hybrid_pipe": CoreGeometry(6, 5, 4), "hybrid_tiled": CoreGeometry(6, 5, 4),
         "compact": CoreGeometry(6, 5, 1)}
#: ``hybrid_pipe``: pipelined, banked memories with small banks (W: 8-word banks, the last one
#: partial; H: 4 words; LUT: 8 words), so the bank select and the bank order are exercised
PIPE_KW = {"mem_pipe": True, "mem_bank_bits": 64}
#: ``hybrid_tiled``: pipelined memories of more than 4 words split into 32-bit tiles (the block-RAM
#: layout of a large core, rtl/pipelined_ram.py): W and H one bank deep in 2-bit columns, the LUT 8
#: banks of 1-bit columns, BETA 4-bit columns
#: (and the event list in 2 interleaved banks, rtl/axon.py)
TILED_KW = {"mem_pipe": True, "mem_bank_bits": 32, "mem_tile_words": 4, "evt_banks": 2}
PIPE_KINDS = {"hybrid_pipe": PIPE_KW, "hybrid_tiled": TILED_KW}


def _run_core(layer, xs, kind: str = "hybrid"):
    geom = CORES[kind]
    if kind in PIPE_KINDS:
        dut = HybridCore(geom.a_max, geom.n_max, geom.lanes, **PIPE_KINDS[kind])
    else:
        dut = CORE_KINDS[kind](geom.a_max, geom.n_max, geom.lanes)
    results = []

    async def tb(ctx):
        bus = CoreBus(ctx, dut)
        A, N = layer.n_in, layer.n_out
        await bus.write(layer_writes(layer, geom))
        await bus.command(Cmd.CLEAR)
        for x in xs:
            await bus.run([(1, Mem.X, i, 1, to_bits(x[i], C.X_BITS)) for i in np.flatnonzero(x)])
            await bus.command(Cmd.STEP)
            u = [from_bits(w, C.U_BITS, True) for w in await bus.read(Mem.U, range(N))]
            s = [from_bits(w, C.X_BITS, True) for w in await bus.read(Mem.S, range(N))]
            hw = await bus.read(Mem.H, matrix_read_addrs(A, N, geom))
            (cyc,) = await bus.read(Mem.REG, [Reg.CYCLES])
            results.append((np.array(u), np.array(s), unpack_matrix(hw, A, N, geom, Mem.H), cyc))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return results


@pytest.mark.parametrize("core", list(CORES))
@pytest.mark.parametrize("soma,kind,edge", [
    (C.SomaMode.LIF, C.InputKind.SPIKE, "none"),
    (C.SomaMode.LIF, C.InputKind.GRADED, "hard_reset"),
    (C.SomaMode.ANN, C.InputKind.GRADED, "clamp"),
    (C.SomaMode.ANN, C.InputKind.SPIKE, "saturate"),
])
def test_tiny_core_matches_golden(soma, kind, edge, core):
    """Both core implementations (HybridCore P = 4; CompactCore: serial soma, column-wise LPU) give the
    golden model's integers after every step, in the cycles of their formula."""
    _check_tiny_core(soma, kind, edge, core)


@pytest.mark.parametrize("core", ["hybrid", "hybrid_pipe", "hybrid_tiled"])
@pytest.mark.parametrize("soma,kind,edge", [
    (C.SomaMode.LIF, C.InputKind.SPIKE, "none"),
    (C.SomaMode.ANN, C.InputKind.GRADED, "clamp"),
])
def test_no_used_read_meets_a_write(soma, kind, edge, core, monkeypatch):
    """The core's block-RAM memories are ``no_rw_check`` (a read in the clock of a write to its word
    may return anything on the FPGA): with every such read inverted in simulation
    (``PLASTICORE_RW_POISON``), the core still gives the golden integers, so no read whose data is
    used meets a write."""
    monkeypatch.setenv(RW_POISON_ENV, "1")
    _check_tiny_core(soma, kind, edge, core)


def test_rw_poison_inverts_a_colliding_read(monkeypatch):
    """The poison itself: a read meeting a write of its word returns the old word inverted; a read of
    another word, and any read without the poison, returns the old word (read before write)."""
    def run(poison: bool):
        monkeypatch.setenv(RW_POISON_ENV, "1" if poison else "0")
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=8, depth=4, init=[0x11, 0x22, 0x33, 0x44], attrs=NO_RW_CHECK)
        wp = mem.write_port()
        rp = no_rw_check_read(m, mem, wp, "rp")
        got = []

        async def tb(ctx):
            for raddr in (1, 2):
                ctx.set(rp.addr, raddr)
                ctx.set(rp.en, 1)
                ctx.set(wp.addr, 1)
                ctx.set(wp.data, 0x5A)
                ctx.set(wp.en, 1)
                await ctx.tick()
                got.append(ctx.get(rp.data))
        sim = Simulator(m)
        sim.add_clock(1e-6)
        sim.add_testbench(tb)
        sim.run()
        return got

    assert run(False) == [0x22, 0x33]
    assert run(True) == [0x22 ^ 0xFF, 0x33]


def _check_tiny_core(soma, kind, edge, core):
    key = (soma, kind, edge) if core == "hybrid" else (soma, kind, edge, core)
    rng = np.random.default_rng(hash(key) % 2**32)
    A, N = (6, 5) if core == "compact" else (5, 5)
    layer = random_layer(rng, A, N, kind, soma, edge, plastic=True)
    hi = 1 if kind == C.InputKind.SPIKE else 255
    xs = [rng.integers(-128 if kind == C.InputKind.GRADED else 0, hi + 1, A) for _ in range(3)]
    xs[1][:] = 0  # a silent step
    got = _run_core(layer, xs, core)
    p = golden.layer_params(layer)
    st = golden.init_state(layer)
    for t, (x, (u, s, H, cyc)) in enumerate(zip(xs, got, strict=True)):
        st, _ = golden.layer_step(p, st, np.asarray(x, np.int64))
        assert np.array_equal(u, st.u), f"step {t}: u rtl {u} golden {st.u}"
        assert np.array_equal(s, st.s), f"step {t}: s rtl {s} golden {st.s}"
        assert np.array_equal(H, st.H), f"step {t}: H rtl {H} golden {st.H}"
        want = sum(cycle_parts("compact" if core == "compact" else "hybrid", layer, int(np.count_nonzero(x)),
                               CORES[core].lanes, mem_pipe=core in PIPE_KINDS).values())
        assert cyc == want, f"step {t}: CYCLES {cyc}, formula {want}"


@pytest.mark.parametrize("tile_bits,lanes,depth,cols", [
    (None, 4, 40, {}), (32, 4, 40, {}), (16, 2, 13, {}), (64, None, 24, {}),
    # LUT-RAM style: banks of columns with a request copy each (lanes split in two; a word in four)
    (None, 4, 40, {"col_bits": 4, "col_group": 1}), (None, None, 24, {"col_bits": 3, "col_group": 1}),
])
def test_pipelined_ram_matches_a_model(tile_bits, lanes, depth, cols):
    """A PipelinedRam (banks, or tiles of ``tile_bits`` bits, or banks of columns) under random reads
    and writes with random lane enables, one of each per clock, returns what a list model holds,
    ``latency`` clocks after the address (a write is seen by the reads presented after it)."""
    lane_bits = 8
    ram = PipelinedRam(lane_bits=lane_bits, lanes=lanes, depth=depth, bank_bits=64, tile_bits=tile_bits, **cols)
    assert ram.banks * ram.cols > 1  # the configuration exercises the banks or columns
    if cols:
        assert ram.banks > 1 and ram.cols > 1 and ram.col_bits <= cols["col_bits"]
    nl = lanes or 1
    rng = np.random.default_rng(depth + (tile_bits or 0))
    ops = [(int(rng.integers(depth)), bool(rng.integers(2)), int(rng.integers(depth)),
            int(rng.integers(1 << ram.width)), int(rng.integers(1 << nl))) for _ in range(300)]

    def lane_mask(en):
        return sum(((1 << lane_bits) - 1) << (k * lane_bits) for k in range(nl) if en >> k & 1) if lanes \
            else (((1 << ram.width) - 1) if en else 0)

    # the model: a read sees the writes presented before it; one meeting a write of its word in the
    # same clock is undefined on the FPGA (no_rw_check) and not compared
    mem, want = [0] * depth, []
    for ra, ren, wa, wd, wen in ops:
        want.append(mem[ra] if ren and not (wen and wa == ra) else None)
        msk = lane_mask(wen)
        mem[wa] = mem[wa] & ~msk | wd & msk
    got = []

    async def tb(ctx):
        for i in range(len(ops) + ram.latency):
            if i < len(ops):
                ra, ren, wa, wd, wen = ops[i]
                ctx.set(ram.r_addr, ra)
                ctx.set(ram.r_en, ren)
                ctx.set(ram.w_addr, wa)
                ctx.set(ram.w_data, wd)
                ctx.set(ram.w_en, wen)
            else:
                ctx.set(ram.r_en, 0)
                ctx.set(ram.w_en, 0)
            await ctx.tick()
            if i >= ram.latency - 1:
                got.append(ctx.get(ram.r_data))

    sim = Simulator(ram)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    for i, w in enumerate(want):
        if w is not None:
            assert got[i] == w, f"read {i} (address {ops[i][0]}): got {got[i]:#x}, model {w:#x}"
