"""cocotb 2.x testbench of ``plasticore.rtl.core.HybridCore`` against the golden model.

Runs inside the simulator (started by ``tests/test_core_rtl.py`` or :mod:`plasticore.sim.bench_core`
through :func:`plasticore.sim.cocotb_runner.run_cocotb`).  One Verilator build of one core geometry
serves many random cases: the layer geometry (``N_AXONS``/``N_NEURONS`` registers), parameters,
rule options and inputs are loaded at run time over the access port.

Structure (:class:`CoreTB`): a *driver* of the ``bus`` stream (one request per clock, FallingEdge
based), a *monitor* of ``bus_rsp`` (and optionally ``spike_out``), the *model*
(:func:`plasticore.golden.layer_step`) and a *checker* that compares U, S and H after every
step and raises with the first differing case/sample/step/neuron/synapse and both values.

Configuration (environment, set by the pytest driver):

* ``CORE_A``, ``CORE_N``, ``CORE_P``: the build geometry (must match the Verilog).
* ``CORE_CASES``: number of random cases; ``CORE_STEPS``: max steps per sample (default 4).
* ``CORE_SUMMARY``: path of a JSON summary (cases, steps, cycles, wall time) to write.
* the cocotb seed (``SEED=`` via the runner) seeds the case generator.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from plasticore import contract as C
from plasticore import golden
from plasticore import rules as R
from plasticore.bundle import HRole
from plasticore.core_map import (
    ALL_MEMS,
    REGS,
    Cmd,
    CoreGeometry,
    Mem,
    Reg,
    from_bits,
    layer_writes,
    matrix_read_addrs,
    program_writes,
    reg_write,
    unpack_matrix,
    vector_words,
)
from plasticore.rtl.compact_core import compact_step_cycle_parts
from plasticore.rtl.core import step_cycle_parts
from plasticore.rtl.layouts import bus_req_layout
from plasticore.rtl.program_core import program_step_cycle_parts
from plasticore.sim.random_bundle import EDGES, random_inputs, random_layer, random_program

INPUT_MODES = ("random", "silent", "all")


# ------------------------------------------------------------------------------------------
# random cases (pure Python; also used by the pytest side to describe a run)
# ------------------------------------------------------------------------------------------
def _pick_dim(rng: np.random.Generator, hi: int, lanes: int, idx: int) -> int:
    choices = [1, hi, min(hi, lanes), min(hi, lanes + 1), int(rng.integers(1, hi + 1)), int(rng.integers(1, hi + 1))]
    return int(choices[idx % len(choices)] if idx < 2 * len(choices) else rng.choice(choices))


def make_case(rng: np.random.Generator, geom: CoreGeometry, idx: int, max_steps: int = 4,
              programs: bool = False) -> dict:
    """Case ``idx``: a random layer fitting ``geom`` and its inputs (samples, T, A); with ``programs`` (a
    program core) a random rule program on a plastic layer and the host's t and teaching current of
    every step (``t``, ``teach``: (samples, T, N)).

    Edge classes, soma modes, input kinds and input modes rotate with ``idx`` so that any run of
    >= 24 cases covers every combination class; geometry picks 1, the maximum, P, P+1 and random
    sizes.
    """
    A = _pick_dim(rng, geom.a_max, geom.lanes, idx)
    N = _pick_dim(rng, geom.n_max, geom.lanes, idx // 3 + 1)
    edge = EDGES[idx % len(EDGES)]
    soma = C.SomaMode.ANN if idx % 3 == 2 else C.SomaMode.LIF
    kind = C.InputKind.GRADED if (idx // 2) % 2 else C.InputKind.SPIKE
    layer = random_layer(rng, A, N, kind, soma, edge)
    mode = INPUT_MODES[0] if idx % 5 not in (2, 4) else INPUT_MODES[1 + (idx % 5 == 4)]
    T = int(rng.integers(2, max_steps + 1))
    S = 2
    fake = type("B", (), {"timesteps": T, "n_in": A, "layers": [layer]})()
    x = random_inputs(rng, fake, S, mode)
    if kind == C.InputKind.GRADED and mode == "random" and rng.random() < 0.5:
        x = x - rng.integers(0, 2, size=x.shape) * 256 // 2  # negative graded inputs too
        x = np.clip(x, C.X_MIN, C.X_GRADED_MAX)
    desc = (f"case {idx}: A={A} N={N} {soma.name} {kind.name} edge={edge} input={mode} "
            f"plastic={layer.plastic} reset={layer.reset.name} act={layer.ann_act.name} "
            f"persist={layer.h_persist.name} T={T}")
    case = {"layer": layer, "x": x, "desc": desc}
    if programs:
        if layer.plastic and idx % 4:  # (every fourth plastic case keeps the v1 rule)
            layer.rule = random_program(rng, layer)
            desc += f" rule={layer.program.to_json()['terms']} m_kind={layer.program.m_kind.value}"
        case.update(desc=desc, t=rng.integers(C.smin(R.M_BITS), C.smax(R.M_BITS) + 1, (S, T, N)),
                    teach=rng.integers(-(1 << 14), 1 << 14, (S, T, N)) * (idx % 3 != 1))
    return case


# ------------------------------------------------------------------------------------------
# the testbench
# ------------------------------------------------------------------------------------------
class CoreTB:
    def __init__(self, dut, geom: CoreGeometry):
        self.dut = dut
        self.geom = geom
        self.kind = os.environ.get("CORE_KIND", "hybrid")  # which core this build is: its cycle formula
        self.mem_pipe = os.environ.get("CORE_MEM_PIPE", "0") == "1"  # HybridCore(mem_pipe=True)
        lay = bus_req_layout(geom)
        self._f = {name: (lay[name].offset, lay[name].width) for name in ("we", "mem", "addr", "mask", "data")}
        self.spikes: list[tuple[int, int]] = []
        self.monitor_spikes = False
        self.sim_cycles = 0
        self.sim_wall = 0.0
        self.last_step_wall = 0.0

    def pack(self, we, mem, addr, mask, data) -> int:
        v = 0
        for name, val in (("we", we), ("mem", int(mem)), ("addr", addr), ("mask", mask), ("data", data)):
            off, w = self._f[name]
            v |= (int(val) & ((1 << w) - 1)) << off
        return v

    async def reset(self):
        dut = self.dut
        Clock(dut.clk, 10, unit="ns").start()
        for name in ("bus__valid", "axon_in__valid", "start", "clear"):
            getattr(dut, name).value = 0
        dut.bus_rsp__ready.value = 1
        dut.spike_out__ready.value = 1
        dut.rst.value = 1
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0

    async def _spike_monitor(self):
        """Collect every spike_out transfer (ready is held at 1): one callback per clock."""
        dut = self.dut
        nb = self.geom.neuron_bits
        while True:
            await FallingEdge(dut.clk)
            if int(dut.spike_out__valid.value):
                p = int(dut.spike_out__payload.value)
                self.spikes.append((p & ((1 << nb) - 1), from_bits(p >> nb, C.X_BITS, True)))

    # -- driver / monitor of the access port --------------------------------------------------
    async def bus_run(self, reqs) -> list[int]:
        """Issue requests ``(we, mem, addr, mask, data)`` back to back; return read data in order."""
        dut = self.dut
        out: list[int] = []
        n_reads = sum(1 for r in reqs if not r[0])
        i = 0
        driving = False
        while i < len(reqs) or len(out) < n_reads or driving:
            await FallingEdge(dut.clk)
            if int(dut.bus_rsp__valid.value):
                out.append(int(dut.bus_rsp__payload.value))
            # ready depends only on state (and bus_rsp.ready, held at 1), never on bus.valid
            if i < len(reqs) and int(dut.bus__ready.value):
                dut.bus__payload.value = self.pack(*reqs[i])
                dut.bus__valid.value = 1
                driving = True
                i += 1
            else:
                dut.bus__valid.value = 0
                driving = False
        return out

    async def write(self, writes):
        await self.bus_run([(1, w.mem, w.addr, w.mask, w.data) for w in writes])

    async def read(self, mem: Mem, addrs) -> list[int]:
        return await self.bus_run([(0, mem, a, 0, 0) for a in addrs])

    async def read_reg(self, reg: Reg) -> int:
        (v,) = await self.read(Mem.REG, [int(reg)])
        w, sgn = REGS[reg]
        return from_bits(v, w, sgn)

    async def command(self, cmd: Cmd):
        t0 = time.perf_counter()
        await self.write([reg_write(Reg.CMD, int(cmd))])
        await RisingEdge(self.dut.done)
        await FallingEdge(self.dut.clk)
        self.last_step_wall = time.perf_counter() - t0
        self.sim_wall += self.last_step_wall

    async def read_vector(self, mem: Mem, n: int) -> np.ndarray:
        info = ALL_MEMS[mem]
        return np.array([from_bits(v, info.bits, info.signed) for v in await self.read(mem, range(n))], np.int64)

    async def read_matrix(self, mem: Mem, A: int, N: int) -> np.ndarray:
        words = await self.read(mem, matrix_read_addrs(A, N, self.geom))
        return unpack_matrix(words, A, N, self.geom, mem)

    # -- one case: load, run samples x steps, check every step -------------------------------
    async def run_case(self, case: dict, stats: dict) -> None:
        L, x, desc = case["layer"], case["x"], case["desc"]
        A, N = L.n_in, L.n_out
        p = golden.layer_params(L)
        await self.write(layer_writes(L, self.geom) + (program_writes(L.program) if self.kind == "program" else []))
        regs = {r: await self.read_reg(r) for r in (Reg.N_AXONS, Reg.N_NEURONS, Reg.THETA, Reg.ALPHA)}
        assert regs[Reg.N_AXONS] == A and regs[Reg.N_NEURONS] == N and regs[Reg.THETA] == L.theta \
            and regs[Reg.ALPHA] == L.alpha, f"{desc}: register readback {regs}"
        H = np.asarray(L.H0, np.int64)
        mon = cocotb.start_soon(self._spike_monitor()) if self.monitor_spikes else None
        try:
            await self._run_samples(L, x, desc, p, H, stats, case.get("t"), case.get("teach"))
        finally:
            if mon is not None:
                mon.cancel()
        stats["cases"] += 1

    async def _run_samples(self, L, x, desc, p, H, stats, t_in=None, teach_in=None):
        A, N, P = L.n_in, L.n_out, self.geom.lanes
        for s in range(x.shape[0]):
            if s > 0 and L.h_role == HRole.PER_SAMPLE:
                from plasticore.core_map import matrix_words
                await self.write(matrix_words(L.H0, self.geom, Mem.H))
                H = np.asarray(L.H0, np.int64)
            await self.command(Cmd.CLEAR)
            st = golden.init_state(L, H=H)
            for t in range(x.shape[1]):
                xt = np.asarray(x[s, t], np.int64)
                nz = np.flatnonzero(xt)
                host = (None, None)
                if t_in is not None:  # (program core) the host's t and teaching current of this step
                    host = (np.asarray(t_in[s, t], np.int64), np.asarray(teach_in[s, t], np.int64))
                    await self.write(vector_words(host[0], Mem.MT) + vector_words(host[1], Mem.TEACH))
                await self.write([_x_write(int(i), int(xt[i])) for i in nz])
                ev = await self.read_reg(Reg.EVENTS)
                assert ev == len(nz), f"{desc} sample {s} step {t}: EVENTS {ev}, expected {len(nz)}"
                self.spikes.clear()
                await self.command(Cmd.STEP)
                st, rec = golden.layer_step(p, st, xt, *host)
                where = f"{desc}: sample {s} step {t}"
                u = await self.read_vector(Mem.U, N)
                _check(u, st.u, f"{where}: membrane u", "neuron")
                sv = await self.read_vector(Mem.S, N)
                _check(sv, st.s, f"{where}: output s", "neuron")
                h = await self.read_matrix(Mem.H, A, N)
                _check(h, st.H, f"{where}: plastic weight H", "synapse (axon, neuron)")
                if t_in is not None and L.plastic and p["traces"]:
                    _check(await self.read_vector(Mem.XTR, A), st.xtr, f"{where}: presynaptic trace", "axon")
                    _check(await self.read_vector(Mem.YTR, N), st.ytr, f"{where}: postsynaptic trace", "neuron")
                cyc = await self.read_reg(Reg.CYCLES)
                parts = cycle_parts(self.kind, L, len(nz), P, mem_pipe=self.mem_pipe)
                want = sum(parts.values())
                assert cyc == want, f"{where}: step took {cyc} cycles, formula says {want}"
                oc = await self.read_reg(Reg.OUT_COUNT)
                assert oc == int(np.count_nonzero(st.s)), f"{where}: OUT_COUNT {oc} != {np.count_nonzero(st.s)}"
                if self.monitor_spikes:
                    await ClockCycles(self.dut.clk, 4)
                    got = sorted(self.spikes)
                    exp = [(int(j), int(st.s[j])) for j in np.flatnonzero(st.s)]
                    assert got == exp, f"{where}: spike_out stream {got[:8]}... != golden {exp[:8]}..."
                if "records" in stats:
                    stats["records"].append(dict(events=len(nz), cycles=cyc, formula=want, A=A, N=N,
                                                 plastic=bool(L.plastic), wall_s=self.last_step_wall,
                                                 **parts))
                stats["steps"] += 1
                stats["cycles"] += cyc
                stats["events"] += len(nz)
                stats["sops"] += len(nz) * N
                stats["syn_updates"] += A * N if L.plastic else 0
                stats["integ_cycles"] += parts.get("integrate", parts.get("dendrite", 0))
                stats["lpu_cycles"] += parts["lpu"]
            H = st.H


def cycle_parts(kind: str, L, events: int, lanes: int, *, mem_pipe: bool = False) -> dict[str, int]:
    """The cycle-count formula of the core ``kind`` (``hybrid`` / ``compact`` / ``program``; ``mem_pipe``:
    the hybrid core with pipelined memories) for one step of layer ``L``."""
    if kind == "program":
        return program_step_cycle_parts(events, L.n_in, L.n_out, lanes, bool(L.plastic), len(L.program.terms))
    if kind == "compact":
        return compact_step_cycle_parts(events, L.n_in, L.n_out, bool(L.plastic), lif=L.soma == C.SomaMode.LIF,
                                        alpha_shift=int(L.alpha_shift), ann_shift=int(L.ann_shift),
                                        recip_shift=int(L.recip_shift))
    return step_cycle_parts(events, L.n_in, L.n_out, lanes, bool(L.plastic), mem_pipe=mem_pipe)


def _x_write(i: int, v: int):
    from plasticore.core_map import Write, to_bits

    return Write(Mem.X, i, to_bits(v, C.X_BITS), 1)


def _check(got: np.ndarray, want: np.ndarray, what: str, unit: str) -> None:
    want = np.asarray(want, np.int64)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape} != golden {want.shape}")
    if not np.array_equal(got, want):
        idx = tuple(int(i) for i in np.argwhere(got != want)[0])
        n_bad = int(np.count_nonzero(got != want))
        raise AssertionError(f"{what}: first mismatch at {unit} {idx[0] if len(idx) == 1 else idx}: "
                             f"rtl {got[idx]} != golden {want[idx]} ({n_bad} differ)")


def _geom_from_env() -> CoreGeometry:
    return CoreGeometry(int(os.environ["CORE_A"]), int(os.environ["CORE_N"]), int(os.environ["CORE_P"]))


@cocotb.test()
async def random_cases(dut):
    """Random layers/parameters/inputs on this build's geometry, bit-exact every step."""
    geom = _geom_from_env()
    n_cases = int(os.environ.get("CORE_CASES", "8"))
    max_steps = int(os.environ.get("CORE_STEPS", "4"))
    seed = int(os.environ.get("CORE_SEED", "0"), 0) or int(cocotb.RANDOM_SEED) % (1 << 31)
    rng = np.random.default_rng(seed)
    tb = CoreTB(dut, geom)
    await tb.reset()
    assert await tb.read_reg(Reg.GEOM_A) == geom.a_max and await tb.read_reg(Reg.GEOM_P) == geom.lanes
    stats = dict(cases=0, steps=0, cycles=0, events=0, sops=0, syn_updates=0, integ_cycles=0, lpu_cycles=0)
    t0 = time.perf_counter()
    first = int(os.environ.get("CORE_FIRST_CASE", "0"))
    for idx in range(first, first + n_cases):
        case = make_case(rng, geom, idx, max_steps, programs=tb.kind == "program")
        tb.monitor_spikes = idx == first and os.environ.get("CORE_MONITOR_SPIKES", "1") == "1"
        dut._log.info("seed %d %s", seed, case["desc"])
        try:
            await tb.run_case(case, stats)
        except AssertionError as e:
            raise AssertionError(f"seed {seed} (rerun with SEED={seed}) {e}") from None
    stats.update(seed=seed, wall_s=time.perf_counter() - t0, step_wall_s=tb.sim_wall,
                 a_max=geom.a_max, n_max=geom.n_max, lanes=geom.lanes)
    path = os.environ.get("CORE_SUMMARY")
    if path:
        with open(path, "w") as f:
            json.dump(stats, f)
    dut._log.info("summary %s", stats)


#: workloads of :func:`bench_steps`: name -> (soma, input kind, input density)
BENCH_WORKLOADS = {
    "lif_spikes_10pct": (C.SomaMode.LIF, C.InputKind.SPIKE, 0.10),
    "lif_spikes_50pct": (C.SomaMode.LIF, C.InputKind.SPIKE, 0.50),
    "lif_spikes_all": (C.SomaMode.LIF, C.InputKind.SPIKE, 1.0),
    "lif_silent": (C.SomaMode.LIF, C.InputKind.SPIKE, 0.0),
    "ann_graded_dense": (C.SomaMode.ANN, C.InputKind.GRADED, 1.0),
}


@cocotb.test(skip=os.environ.get("CORE_BENCH", "0") != "1")
async def bench_steps(dut):
    """Full-size layers (A_max x N_max) at several input densities: cycles per step vs the formula
    (checked bit-exact too), SOP/clock, LPU synapses/clock and wall time of the step itself."""
    geom = _geom_from_env()
    steps = int(os.environ.get("CORE_STEPS", "3"))
    rng = np.random.default_rng(int(os.environ.get("CORE_SEED", "1"), 0))
    tb = CoreTB(dut, geom)
    await tb.reset()
    out = {}
    for name, (soma, kind, dens) in BENCH_WORKLOADS.items():
        layer = random_layer(rng, geom.a_max, geom.n_max, kind, soma, "none", plastic=True)
        A = geom.a_max
        if kind == C.InputKind.SPIKE:
            x = (rng.random((1, steps, A)) < dens).astype(np.int64)
        else:
            x = rng.integers(1, 256, size=(1, steps, A)).astype(np.int64)
        stats = dict(cases=0, steps=0, cycles=0, events=0, sops=0, syn_updates=0, integ_cycles=0, lpu_cycles=0,
                     records=[])
        await tb.run_case({"layer": layer, "x": x, "desc": f"bench {name}"}, stats)
        out[name] = stats
    path = os.environ.get("CORE_SUMMARY")
    if path:
        with open(path, "w") as f:
            json.dump(out, f)
