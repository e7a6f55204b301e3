"""HybridCore: the Tianjic-style hybrid core (axon buffer -> dendrite -> soma -> LPU) with its memories."""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, wiring

from plasticore.core_map import (
    CORE_VERSION,
    MEMS,
    CoreGeometry,
    Mem,
    MemInfo,
)

from .axon import X_BANKS, AxonBuffer
from .core_host import PARAM_DEFAULTS, HostPort
from .core_regs import axon_input, core_ports, zero_state
from .dendrite import Dendrite
from .layouts import NO_RW_CHECK, no_rw_check_read
from .lpu import PlasticityUnit
from .pipelined_ram import (
    BANK_BITS,
    DUP,
    LUTRAM_BANK,
    LUTRAM_COL_BITS,
    LUTRAM_WORDS,
    PIPE_LATENCY,
    PipelinedRam,
)
from .soma import Soma

__all__ = ["PARAM_DEFAULTS", "HybridCore"]


class HybridCore(wiring.Component):
    """One hybrid core of ``a_max`` axons x ``n_max`` neurons with ``lanes`` (P) lanes.

    Ports (plus ``clk``/``rst`` of the ``sync`` domain):

    * ``bus`` (stream of ``{we, mem, addr, mask, data}``) / ``bus_rsp`` (stream of data words):
      write and read every memory and register (map: :mod:`plasticore.core_map`); accepted only
      while the core is idle.
    * ``axon_in`` (stream of ``{axon, value}``): inputs of the next step (same as writing ``X``).
    * ``spike_out`` (stream of ``{neuron, value}``): every non-zero output of a step (if ``EMIT``).
    * ``start`` (pulse): run one step; ``clear`` (pulse): sample start (u, s := 0, inputs dropped).
      The same commands are bits of register ``CMD``.
    * ``busy``: a step or clear is running; ``done``: one-clock pulse when a step (or clear) has finished.

    A step: integrate + soma per neuron group (overlapped), then the LPU sweep (if ``PLASTIC``),
    then the input buffer is cleared.  Cycle count: ``docs/core.md``.

    ``mem_pipe``: every memory is a pipelined, banked :class:`~plasticore.rtl.pipelined_ram.PipelinedRam`
    (its reads ``PIPE_LATENCY`` clocks later, for Fmax on a large FPGA); the integers are the same, the
    cycle count grows (:func:`step_cycles`).  ``mem_bank_bits``: lane bits per bank (tests use small
    banks to exercise the bank logic on tiny cores).  ``evt_banks``: the axon buffer's event list in
    that many interleaved memories (:class:`~plasticore.rtl.axon.AxonBuffer`; default 4 with
    ``mem_pipe`` from 64 axons, else 1); with ``mem_pipe`` its x is in ``X_BANKS`` (fewer for a core of
    fewer axons).
    """

    #: the memories of this core kind (the access port's ids, X apart: it lives in the axon buffer)
    mem_infos: dict[Mem, MemInfo] = MEMS
    version: int = CORE_VERSION  #: register ``VERSION``

    def __init__(self, a_max: int = 256, n_max: int = 256, lanes: int = 16, *, mem_pipe: bool = False,
                 mem_bank_bits: int = BANK_BITS, mem_tile_words: int = LUTRAM_WORDS, evt_banks: int | None = None):
        self.geom = geom = CoreGeometry(a_max, n_max, lanes)
        self.mem_pipe = bool(mem_pipe)
        if evt_banks is None:  # with pipelined memories a list of at least 64 events is 4 banks (Fmax)
            evt_banks = 4 if self.mem_pipe and geom.a_max >= 64 else 1
        self.evt_banks = evt_banks
        #: with pipelined memories x is in X_BANKS interleaved LUT-RAM banks (AxonBuffer ``x_banks``)
        self.x_banks = min(X_BANKS, 1 << (geom.a_max.bit_length() - 1)) if self.mem_pipe else 1
        self.mem_bank_bits = mem_bank_bits
        self.mem_tile_words = mem_tile_words
        super().__init__(core_ports(geom))

    def _memories(self, m: Module) -> tuple[dict, dict]:
        """The read and write ports (``addr``, ``en``, ``data``) of each memory but X."""
        geom, rps, wps = self.geom, {}, {}
        for mid, info in self.mem_infos.items():
            if mid == Mem.X:
                continue
            if not self.mem_pipe:
                # a plain memory here, not in a PipelinedRam: the same netlist as before mem_pipe existed
                # (Yosys 0.70's ABC9 fails an assertion on the ULX3S chip with the extra hierarchy level)
                mem = memory.Memory(shape=unsigned(geom.word_bits(mid)), depth=geom.depth(mid), init=[],
                                    attrs=NO_RW_CHECK)
                m.submodules[f"mem_{mid.name.lower()}"] = mem
                wps[mid] = mem.write_port(granularity=info.bits if info.lanes else None)
                rps[mid] = no_rw_check_read(m, mem, wps[mid], f"mem_{mid.name.lower()}_rp")
                continue
            # a memory of at most LUTRAM_WORDS words is a LUT RAM on the ECP5 (firmware.boards): its banks
            # are LUTRAM_BANK words deep, so that each read is a 4:1 multiplexer next to its bank's copy
            # of the address (not one address register fanned out to the whole memory), in columns of
            # LUTRAM_COL_BITS with a copy each
            # a deeper memory (block RAM) is split into tiles of ``mem_bank_bits`` bits, each as deep as
            # the memory (up to a tile) and as narrow as that needs: one DP16KD each, no bank multiplexer
            # behind them when the memory fits one tile deep
            bank_bits = self.mem_bank_bits
            tile_bits = None
            cols = {}
            if geom.depth(mid) <= LUTRAM_WORDS:
                bank_bits = min(bank_bits, LUTRAM_BANK * info.bits)
                cols = {"col_bits": LUTRAM_COL_BITS, "col_group": 1}
            if geom.depth(mid) > self.mem_tile_words:
                tile_bits = self.mem_bank_bits
            ram = PipelinedRam(lane_bits=info.bits, lanes=geom.lanes if info.lanes else None, depth=geom.depth(mid),
                               bank_bits=bank_bits, tile_bits=tile_bits, **cols)
            m.submodules[f"mem_{mid.name.lower()}"] = ram
            rps[mid] = SimpleNamespace(addr=ram.r_addr, en=ram.r_en, data=ram.r_data)
            wps[mid] = SimpleNamespace(addr=ram.w_addr, data=ram.w_data, en=ram.w_en)
        return rps, wps

    def _engines(self, m: Module, K: int):
        """The axon buffer, dendrite, soma and LPU; returns them and x's extra read latency.

        With pipelined memories x is banked, its read in two stages per bank; the dendrite's data
        registers and the LPU's stages are reset-less too (rtl/layouts.py, PIPELINE_RESET_LESS: the plain
        chip keeps their reset for Yosys 0.70's sake); the axon buffer's x read address is registered
        after its multiplexer (host / dendrite / LPU), like the other memories' requests: x comes one
        clock later, and the banked read a clock later still (``axb.x_latency``)."""
        geom = self.geom
        m.submodules.axb = axb = AxonBuffer(geom, registered_writes=self.mem_pipe, evt_banks=self.evt_banks,
                                            x_banks=self.x_banks)
        x_lag = axb.x_latency if K else 0
        assert x_lag <= K
        m.submodules.den = den = Dendrite(geom, mem_delay=K, reset_less=self.mem_pipe, x_delay=x_lag)
        m.submodules.soma = soma = Soma(geom, den.aw_bits, den.ah_bits, mem_delay=K)
        m.submodules.lpu = lpu = PlasticityUnit(geom, mem_delay=K, reset_less=self.mem_pipe, x_delay=x_lag)
        self._blocks = {"axb": axb, "den": den, "soma": soma, "lpu": lpu}  # for simulation probes
        return axb, den, soma, lpu, x_lag

    def elaborate(self, platform):
        m = Module()
        geom = self.geom
        P, G = geom.lanes, geom.groups
        logp = P.bit_length() - 1
        K = PIPE_LATENCY if self.mem_pipe else 0  # extra read latency of every memory
        rps, wps = self._memories(m)
        axb, den, soma, lpu, x_lag = self._engines(m, K)

        # ---- host port and status registers ------------------------------------------------
        m.submodules.host = host = HostPort(geom, {mid: len(rp.data) for mid, rp in rps.items()},
                                            mem_pipe=self.mem_pipe, x_lag=x_lag, version=self.version,
                                            extra_regs=self._extra_regs())
        wiring.connect(m, wiring.flipped(self.bus), host.bus)
        wiring.connect(m, host.bus_rsp, wiring.flipped(self.bus_rsp))
        params = host.params
        s = SimpleNamespace(
            idle=Signal(init=1),  # register, = state IDLE of the sequencer (kept in step with its transitions)
            cycles=Signal(32), cyc=Signal(32), steps=Signal(32),
            zc=Signal(range(geom.n_pad + 1)),
            zeroing=Signal(),  # (with pipelined memories) high in ZERO and the clock after
            g=Signal(range(G + 1)), gbase=Signal(geom.addr_bits), jbase=Signal(geom.neuron_bits + 1),
            in_lpu=Signal(),
            # static registers (they follow the parameter registers one clock later, long before a step
            # uses them): groups, groups - 1 (signed, so that N = 0 compares like ``g + 1 < 0``)
            n_groups=Signal(range(G + 1)))
        s.ng_m1 = Signal(signed(len(s.n_groups) + 1))
        m.d.sync += [s.n_groups.eq((params.n_neurons + (P - 1)) >> logp),
                     s.ng_m1.eq(((params.n_neurons + (P - 1)) >> logp) - 1)]
        m.d.comb += [host.idle.eq(s.idle), host.axb_busy.eq(axb.busy),
                     host.axon_taken.eq(axb.inp.valid & axb.inp.ready),
                     host.start.eq(self.start), host.clear.eq(self.clear), host.cycles.eq(s.cycles),
                     host.steps.eq(s.steps), host.events.eq(axb.count), host.out_count.eq(soma.out_count),
                     host.x_data.eq(axb.x_data.as_unsigned())]
        m.d.comb += [getattr(host.rd_data, mid.name.lower()).eq(rp.data) for mid, rp in rps.items()]
        # with pipelined memories the sequencer leaves IDLE on a decision made a clock earlier; the axon
        # buffer takes no input once a request is pending, so the decision still holds a clock later
        axon_input(m, self, axb, s.idle & ~host.start_req & ~host.clear_req if K else s.idle)

        # ---- engine wiring -----------------------------------------------------------------
        m.d.comb += [
            soma.params.eq(params), lpu.params.eq(params),
            axb.evt_addr.eq(den.evt_addr), den.evt_data.eq(axb.evt_data), den.n_events.eq(axb.count),
            den.x_data.eq(axb.x_data), lpu.x_data.eq(axb.x_data),
            den.w_data.eq(rps[Mem.W].data), den.h_data.eq(rps[Mem.H].data), den.m_data.eq(rps[Mem.HMASK].data),
            soma.acc_w.eq(den.acc_w), soma.acc_h.eq(den.acc_h),
            soma.b_data.eq(self._soma_bias(rps)), soma.u_data.eq(rps[Mem.U].data), soma.s_data.eq(rps[Mem.S].data),
            soma.eta_data.eq(rps[Mem.ETA].data), soma.lut_data.eq(rps[Mem.LUT].data),
            lpu.h_rdata.eq(rps[Mem.H].data), lpu.beta_data.eq(rps[Mem.BETA].data), *self._lpu_post_inputs(rps, lpu),
            lpu.n_groups.eq(s.n_groups),
            self.spike_out.valid.eq(soma.out.valid), self.spike_out.payload.eq(soma.out.payload),
            soma.out.ready.eq(self.spike_out.ready),
            den.gbase.eq(s.gbase), soma.jbase.eq(s.jbase), soma.group.eq(s.g),
        ]
        with m.If(s.idle):
            m.d.sync += s.zeroing.eq(0)
        x_addr, x_en = axb.x_addr, axb.x_en
        if x_lag:
            x_addr, x_en = Signal.like(axb.x_addr, name="x_raddr_mux"), Signal(name="x_ren_mux")
            m.d.sync += [axb.x_addr.eq(x_addr), axb.x_en.eq(x_en)]
        engines = (axb, den, soma, lpu)
        (self._port_muxes_pipelined if K else self._port_muxes)(m, s, host, rps, wps, x_addr, x_en, engines)
        self._sequencer(m, s, host, wps, engines, params)
        with m.If(~s.idle):
            m.d.sync += s.cyc.eq(s.cyc + 1)
        m.d.comb += self.busy.eq(~s.idle)
        return m

    # ---- what a core kind changes (rtl/program_core.py): the plastic phase's inputs and addresses ----
    def _soma_bias(self, rps):
        """The soma's bias input."""
        return rps[Mem.B].data

    def _lpu_post_inputs(self, rps, lpu) -> list:
        """The LPU's postsynaptic input(s)."""
        return [lpu.f_data.eq(rps[Mem.F].data)]

    def _x_raddr(self, s, engines):
        """x's read address outside the host's turns."""
        axb, den, soma, lpu = engines
        return Mux(s.in_lpu, lpu.x_addr, den.x_addr)

    def _s_raddr(self, s, engines):
        return engines[2].n_addr

    def _f_raddr(self, s, engines):
        return engines[3].f_addr

    def _extra_ports(self, m: Module, s, er, ew, engines) -> None:
        """The ports of memories only this core kind has."""

    def _extra_regs(self) -> dict:
        """Registers of this core kind's own that the host reads (address -> value)."""
        return {}

    def _on_clear(self, m: Module) -> None:
        """(The sequencer takes a sample-start clear.)"""

    def _start_plastic(self, m: Module, s, engines) -> None:
        """DRAIN of a plastic step: start the first plastic state."""
        m.d.comb += engines[3].start.eq(1)
        m.next = "LPU"

    def _plastic_states(self, m: Module, s, engines) -> None:
        """States of the plastic phase before LPU (none here)."""

    def _engine_ports(self, m: Module, s, er, ew, xa, xe, engines) -> None:
        """The engines' side of the port multiplexers: their read / write ports ``er`` / ``ew``, x's ``xa``, ``xe``."""
        axb, den, soma, lpu = engines
        m.d.comb += xe.eq(1)
        for rp in er.values():
            m.d.comb += rp.en.eq(1)
        m.d.comb += [
            er[Mem.W].addr.eq(den.syn_addr), er[Mem.HMASK].addr.eq(den.syn_addr),
            er[Mem.H].addr.eq(Mux(s.in_lpu, lpu.h_raddr, den.syn_addr)),
            xa.eq(self._x_raddr(s, engines)),
            er[Mem.B].addr.eq(soma.n_addr), er[Mem.U].addr.eq(soma.n_addr),
            er[Mem.S].addr.eq(self._s_raddr(s, engines)),
            er[Mem.ETA].addr.eq(soma.n_addr), er[Mem.LUT].addr.eq(soma.lut_addr),
            er[Mem.BETA].addr.eq(lpu.beta_addr), er[Mem.F].addr.eq(self._f_raddr(s, engines)),
            ew[Mem.H].addr.eq(lpu.h_waddr), ew[Mem.H].data.eq(lpu.h_wdata),
            ew[Mem.H].en.eq(Mux(lpu.h_we, (1 << self.geom.lanes) - 1, 0)),
            ew[Mem.F].addr.eq(soma.f_addr), ew[Mem.F].data.eq(soma.f_wdata), ew[Mem.F].en.eq(soma.f_en),
        ]
        self._extra_ports(m, s, er, ew, engines)
        if not self.mem_pipe:
            m.d.comb += [
                ew[Mem.U].addr.eq(soma.w_addr), ew[Mem.U].data.eq(soma.u_wdata), ew[Mem.U].en.eq(soma.w_en),
                ew[Mem.S].addr.eq(soma.w_addr), ew[Mem.S].data.eq(soma.s_wdata), ew[Mem.S].en.eq(soma.w_en),
            ]
            return
        # the ZERO state's writes are selected by a flop of their own (``zeroing``), not by the
        # sequencer's state decode
        zw = s.zc != self.geom.n_pad
        for mid, wdata in ((Mem.U, soma.u_wdata), (Mem.S, soma.s_wdata)):
            m.d.comb += [ew[mid].addr.eq(Mux(s.zeroing, s.zc, soma.w_addr)),
                         ew[mid].data.eq(Mux(s.zeroing, 0, wdata)),
                         ew[mid].en.eq(Mux(s.zeroing, zw, soma.w_en))]

    def _port_muxes(self, m: Module, s, host, rps, wps, x_addr, x_en, engines) -> None:
        """The host owns every port while idle (driven from its request register), the engines otherwise."""
        hq = host.req
        s.idle_all = s.idle  # ``idle`` (and its copies): set and cleared together (``.eq(-1)`` / ``.eq(0)``)
        with m.If(s.idle):
            for rp in rps.values():
                m.d.comb += [rp.addr.eq(hq.addr), rp.en.eq(hq.rd)]
            m.d.comb += [x_addr.eq(hq.addr), x_en.eq(hq.rd)]
            for mid, wp in wps.items():
                m.d.comb += [wp.addr.eq(hq.addr), wp.data.eq(hq.data), wp.en.eq(getattr(host.wen, mid.name.lower()))]
        with m.Else():
            self._engine_ports(m, s, rps, wps, x_addr, x_en, engines)

    def _port_muxes_pipelined(self, m: Module, s, host, rps, wps, x_addr, x_en, engines) -> None:
        """:meth:`_port_muxes` with each memory's multiplexer selected by a copy of ``idle`` of its own
        (``idle_<mem>__dup``, kept apart on the ECP5, so that no one flop selects every port of the core),
        set and cleared with ``idle`` itself."""
        hq = host.req
        idle_of = {mid: Signal(init=1, name=f"idle_{mid.name.lower()}{DUP}") for mid in sorted({*rps, *wps})}
        idle_x = Signal(init=1, name=f"idle_x{DUP}")
        s.idle_all = Cat(s.idle, idle_x, *idle_of.values())
        er = {mid: SimpleNamespace(addr=Signal.like(rp.addr, name=f"eng_{mid.name.lower()}_raddr"),
                                   en=Signal(name=f"eng_{mid.name.lower()}_ren")) for mid, rp in rps.items()}
        ew = {mid: SimpleNamespace(addr=Signal.like(wp.addr, name=f"eng_{mid.name.lower()}_waddr"),
                                   data=Signal.like(wp.data, name=f"eng_{mid.name.lower()}_wdata"),
                                   en=Signal.like(wp.en, name=f"eng_{mid.name.lower()}_wen"))
              for mid, wp in wps.items()}
        ex_addr, ex_en = Signal.like(x_addr, name="eng_x_raddr"), Signal(name="eng_x_ren")
        self._engine_ports(m, s, er, ew, ex_addr, ex_en, engines)
        for mid, rp in rps.items():
            m.d.comb += [rp.addr.eq(Mux(idle_of[mid], hq.addr, er[mid].addr)),
                         rp.en.eq(Mux(idle_of[mid], hq.rd, er[mid].en))]
        for mid, wp in wps.items():
            m.d.comb += [wp.addr.eq(Mux(idle_of[mid], hq.addr, ew[mid].addr)),
                         wp.data.eq(Mux(idle_of[mid], hq.data, ew[mid].data)),
                         wp.en.eq(Mux(idle_of[mid], getattr(host.wen, mid.name.lower()), ew[mid].en))]
        m.d.comb += [x_addr.eq(Mux(idle_x, hq.addr, ex_addr)), x_en.eq(Mux(idle_x, hq.rd, ex_en))]

    def _sequencer(self, m: Module, s, host, wps, engines, params) -> None:
        """The step sequencer: IDLE -> INTEG (groups) -> DRAIN -> LPU (if PLASTIC) -> CLRWAIT -> IDLE, or
        IDLE -> ZERO (clear) -> IDLE."""
        axb, den, soma, lpu = engines
        K, P = self.mem_pipe, self.geom.lanes
        with m.FSM(name="seq"):
            with m.State("IDLE"):
                with m.If(host.clear_req & host.can_leave):
                    m.d.comb += host.clear_taken.eq(1)
                    m.d.sync += [s.zc.eq(0), s.idle_all.eq(0)]
                    if K:
                        m.d.sync += s.zeroing.eq(1)
                    m.d.comb += axb.clear.eq(1)
                    self._on_clear(m)
                    m.next = "ZERO"
                with m.Elif(host.start_req & host.can_leave):
                    m.d.comb += host.start_taken.eq(1)
                    m.d.sync += [s.cyc.eq(0), s.g.eq(0), s.gbase.eq(0), s.jbase.eq(0), s.idle_all.eq(0)]
                    m.d.comb += [den.start.eq(1), soma.clear_count.eq(1)]
                    m.next = "INTEG"
            with m.State("ZERO"):
                # (with pipelined memories the port multiplexers drive the zero writes from ``zeroing``)
                zero_state(m, self, s.zc, self.geom.n_pad, *((None, None) if K else (wps[Mem.U], wps[Mem.S])),
                           axb, s.idle_all)
            with m.State("INTEG"):
                with m.If(den.acc_valid & soma.ready):
                    m.d.comb += soma.load.eq(1)
                    m.d.sync += [s.jbase.eq(s.jbase + P), s.g.eq(s.g + 1)]
                    with m.If(s.g < s.ng_m1):  # g + 1 < n_groups
                        m.d.sync += s.gbase.eq(s.gbase + params.n_axons)  # the dendrite reads it from the next clock
                        m.d.comb += den.start.eq(1)
                    with m.Else():
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(soma.idle & ~soma.load):
                    with m.If(params.plastic):
                        self._start_plastic(m, s, engines)
                    with m.Else():
                        m.d.comb += axb.clear.eq(1)
                        m.next = "CLRWAIT"
            with m.State("LPU"):
                m.d.comb += s.in_lpu.eq(1)
                with m.If(~lpu.busy):
                    m.d.comb += axb.clear.eq(1)
                    m.next = "CLRWAIT"
            self._plastic_states(m, s, engines)
            with m.State("CLRWAIT"):
                with m.If(~axb.busy):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += s.idle_all.eq(-1)
                    if not K:
                        m.d.sync += [s.cycles.eq(s.cyc + 1), s.steps.eq(s.steps + 1)]
                    m.next = "IDLE"
        if K:
            # (pipelined memories) the step and cycle counters are updated the clock after ``done``,
            # from a flop (their 64 enables otherwise hang on the axon buffer's ``busy``); ``cyc``
            # has counted that last clock by then.  No host request is taken before: the bus ``ready``
            # is ``bus_open`` (``idle``) a clock late
            done_q = Signal()
            m.d.sync += done_q.eq(self.done)
            with m.If(done_q):
                m.d.sync += [s.cycles.eq(s.cyc), s.steps.eq(s.steps + 1)]


def step_cycle_parts(events: int, n_axons: int, n_neurons: int, lanes: int, plastic: bool, *,
                     mem_pipe: bool = False) -> dict[str, int]:
    """The phases of :func:`step_cycles` (derivation in ``docs/core.md``)."""
    from .dendrite import DENDRITE_LATENCY
    from .lpu import LPU_LATENCY
    from .soma import SOMA_LATENCY, SOMA_LOAD_DELAY, SOMA_SHIFT_SPLIT

    E, P = events, lanes
    K = PIPE_LATENCY if mem_pipe else 0  # each engine waits K more clocks per read (the soma reads twice)
    L = SOMA_LOAD_DELAY if mem_pipe else 0  # the soma's lane buffer loads L clocks after the request
    S = SOMA_SHIFT_SPLIT if mem_pipe else 0  # stages of the soma's split shift
    G = -(-n_neurons // P)
    d = E + DENDRITE_LATENCY + K + 1 if E else 2  # one dendrite pass, start -> acc_valid
    return {
        "integrate": d + (G - 1) * max(d, P + L),  # groups overlap with the soma of the previous group
        "soma_drain": P + SOMA_LATENCY + 2 * K + L + S + 1,  # last group: P issues + pipeline
        "lpu": G * n_axons + LPU_LATENCY + K + 1 if plastic else 0,  # one H word (P synapses) per clock
        "clear": E + 4 if E else 2,  # zero the listed inputs
    }


def step_cycles(events: int, n_axons: int, n_neurons: int, lanes: int, plastic: bool, *,
                mem_pipe: bool = False) -> int:
    """Clock cycles of one step (register ``CYCLES``: clocks with ``busy`` high), see ``docs/core.md``.

    ``E`` = input events (non-zero axons), ``G = ceil(N / P)``, ``K = L = S = 0`` (``K = PIPE_LATENCY = 3``,
    ``L = SOMA_LOAD_DELAY = 1``, ``S = SOMA_SHIFT_SPLIT = 1`` with ``mem_pipe``), ``D = E + 10 + K`` (2 if
    ``E == 0``)::

        cycles = D + (G - 1) * max(D, P + L)  +  (P + 20 + 2K + L + S)  +  plastic * (G * A + 15 + K)  +  (E + 4 | 2)
    """
    return sum(step_cycle_parts(events, n_axons, n_neurons, lanes, plastic, mem_pipe=mem_pipe).values())
