"""The program core (rule programs on chip, contract v2) in the Amaranth simulator against the golden model.

A tiny :class:`~plasticore.rtl.program_core.ProgramCore` (6 axons x 5 neurons, P = 4) runs random rule
programs (1..4 terms, every factor, traces, both third-factor kinds) with the host's third factor t
and a teaching current written before every step, over two samples (the clear in between zeroes the
traces, H carries): u, s, H, both traces and the cycle count equal the golden model after every step.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from plasticore import contract as C
from plasticore import golden
from plasticore import rules as R
from plasticore.core_map import (
    PROG_REGS,
    Cmd,
    CoreGeometry,
    Mem,
    Reg,
    from_bits,
    layer_writes,
    matrix_read_addrs,
    program_reg_values,
    program_writes,
    to_bits,
    unpack_matrix,
    vector_words,
)
from plasticore.rtl.program_core import ProgramCore, program_step_cycles
from plasticore.sim.amaranth_bus import CoreBus
from plasticore.sim.random_bundle import random_layer, random_program

GEOM = CoreGeometry(6, 5, 4)


def _run(layer, samples):
    """``samples``: lists of steps (x, t, teach); returns per step (u, s, H, xtr, ytr, cycles)."""
    dut = ProgramCore(GEOM.a_max, GEOM.n_max, GEOM.lanes)
    A, N = layer.n_in, layer.n_out
    results = []

    async def tb(ctx):
        bus = CoreBus(ctx, dut)
        await bus.write(layer_writes(layer, GEOM) + program_writes(layer.program))
        want = program_reg_values(layer.program)  # the program registers read back as written
        got = await bus.read(Mem.REG, list(want))
        back = {a: from_bits(v, *PROG_REGS[a]) for a, v in zip(want, got, strict=True)}
        assert back == want, f"program registers read {back}, wrote {want}"
        for steps in samples:
            await bus.command(Cmd.CLEAR)
            for x, t, teach in steps:
                await bus.write(vector_words(t, Mem.MT) + vector_words(teach, Mem.TEACH))
                await bus.run([(1, Mem.X, i, 1, to_bits(x[i], C.X_BITS)) for i in np.flatnonzero(x)])
                await bus.command(Cmd.STEP)
                u = [from_bits(w, C.U_BITS, True) for w in await bus.read(Mem.U, range(N))]
                s = [from_bits(w, C.X_BITS, True) for w in await bus.read(Mem.S, range(N))]
                hw = await bus.read(Mem.H, matrix_read_addrs(A, N, GEOM))
                xtr = [from_bits(w, R.TRACE_BITS, True) for w in await bus.read(Mem.XTR, range(A))]
                ytr = [from_bits(w, R.TRACE_BITS, True) for w in await bus.read(Mem.YTR, range(N))]
                (cyc,) = await bus.read(Mem.REG, [Reg.CYCLES])
                results.append((np.array(u), np.array(s), unpack_matrix(hw, A, N, GEOM, Mem.H), np.array(xtr),
                                np.array(ytr), cyc))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return results


def _check(layer, rng, steps=(3, 2)):
    A, N = layer.n_in, layer.n_out
    graded = layer.input_kind == C.InputKind.GRADED
    samples = []
    for n in steps:
        sample = []
        for _ in range(n):
            x = rng.integers(-128 if graded else 0, (255 if graded else 1) + 1, A)
            x[rng.random(A) < 0.3] = 0
            t = rng.integers(C.smin(R.M_BITS), C.smax(R.M_BITS) + 1, N)
            teach = rng.integers(-(1 << 14), 1 << 14, N)
            sample.append((x, t, teach))
        samples.append(sample)
    got = iter(_run(layer, samples))
    p = golden.layer_params(layer)
    H = layer.H0
    for si, sample in enumerate(samples):
        st = golden.init_state(layer, H=H)
        for ti, (x, t, teach) in enumerate(sample):
            st, _ = golden.layer_step(p, st, np.asarray(x, np.int64), np.asarray(t, np.int64),
                                      np.asarray(teach, np.int64))
            u, s, Hr, xtr, ytr, cyc = next(got)
            where = f"sample {si} step {ti}"
            for name, a, b in (("u", u, st.u), ("s", s, st.s), ("H", Hr, st.H)):
                bad = np.argwhere(a != b)
                assert not len(bad), f"{where}: {name}{tuple(bad[0])} rtl {a[tuple(bad[0])]} golden {b[tuple(bad[0])]}"
            if p["traces"]:
                assert np.array_equal(xtr, st.xtr), f"{where}: xtr rtl {xtr} golden {st.xtr}"
                assert np.array_equal(ytr, st.ytr), f"{where}: ytr rtl {ytr} golden {st.ytr}"
            want = program_step_cycles(int(np.count_nonzero(x)), A, N, GEOM.lanes, layer.plastic,
                                       len(layer.program.terms))
            assert cyc == want, f"{where}: CYCLES {cyc}, formula {want}"
        H = st.H


@pytest.mark.parametrize("seed", range(6))
def test_program_core_runs_random_programs(seed):
    """Random programs on random layers (spikes / graded inputs, LIF / ANN somas, edge cases)."""
    rng = np.random.default_rng(1000 + seed)
    kind = [C.InputKind.SPIKE, C.InputKind.GRADED][seed % 2]
    soma = [C.SomaMode.LIF, C.SomaMode.LIF, C.SomaMode.ANN][seed % 3]
    edge = ["none", "hard_reset", "clamp"][seed % 3] if soma == C.SomaMode.LIF else "clamp"
    layer = random_layer(rng, 5, 5, kind, soma, edge, plastic=True)
    layer.rule = random_program(rng, layer)
    _check(layer, rng)


@pytest.mark.parametrize("preset", ["stdp", "delta", "reward_hebb"])
def test_program_core_runs_presets(preset):
    rng = np.random.default_rng(7)
    layer = random_layer(rng, 6, 5, C.InputKind.SPIKE, C.SomaMode.LIF, "none", plastic=True)
    layer = R.apply_preset(layer, preset)
    _check(layer, rng)


def test_program_core_runs_v1_layers():
    """A v1 layer (no rule: the one-term v1 program) gives the v1 integers on the program core."""
    rng = np.random.default_rng(3)
    layer = random_layer(rng, 6, 5, C.InputKind.GRADED, C.SomaMode.LIF, "none", plastic=True)
    assert layer.rule is None
    _check(layer, rng)
