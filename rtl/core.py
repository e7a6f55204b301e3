"""HybridCore: the Tianjic-style hybrid core (axon buffer -> dendrite -> soma -> LPU) with its memories."""

from __future__ import annotations

import functools
import operator
from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import fifo, memory, wiring

from plasticore import contract as C
from plasticore.core_map import (
    MEMS,
    CoreGeometry,
    Mem,
)

from .axon import X_BANKS, AxonBuffer
from .core_regs import (
    axon_input,
    core_ports,
    read_regs,
    read_regs_split,
    readonly_regs,
    write_regs,
    write_regs_registered,
    zero_state,
)
from .dendrite import Dendrite
from .layouts import NO_RW_CHECK, no_rw_check_read, param_layout
from .lpu import PlasticityUnit
from .pipelined_ram import (
    BANK_BITS,
    DUP,
    LUTRAM_BANK,
    LUTRAM_COL_BITS,
    LUTRAM_WORDS,
    PIPE_LATENCY,
    PipelinedRam,
    delayed,
)
from .soma import Soma

__all__ = ["HybridCore"]

#: (pipelined memories) data bits of a memory's host read copy per copy of its select flop
RD_SEL_BITS = 16

#: response FIFO of the access port: deep enough for the read pipeline's round trip at one read per clock
RSP_DEPTH = 8

PARAM_DEFAULTS = {"theta": 1, "lam": C.FRAC8_ONE, "decay": C.FRAC8_ONE, "h_clamp": C.smax(C.H_BITS), "emit": 1}


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

    def elaborate(self, platform):
        m = Module()
        geom = self.geom
        P, G = geom.lanes, geom.groups
        logp = P.bit_length() - 1

        params = Signal(param_layout(), init={**PARAM_DEFAULTS, "n_axons": geom.a_max, "n_neurons": geom.n_max})

        # ---- memories ----------------------------------------------------------------------
        # ``rps`` / ``wps``: the read and write ports of each memory (``addr``, ``en``, ``data``)
        K = PIPE_LATENCY if self.mem_pipe else 0  # extra read latency of every memory
        rps, wps = {}, {}
        for mid in MEMS:
            if mid == Mem.X:
                continue
            info = MEMS[mid]
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
            ram = PipelinedRam(lane_bits=info.bits, lanes=P if info.lanes else None, depth=geom.depth(mid),
                               bank_bits=bank_bits, tile_bits=tile_bits, **cols)
            m.submodules[f"mem_{mid.name.lower()}"] = ram
            rps[mid] = SimpleNamespace(addr=ram.r_addr, en=ram.r_en, data=ram.r_data)
            wps[mid] = SimpleNamespace(addr=ram.w_addr, data=ram.w_data, en=ram.w_en)

        # with pipelined memories x is banked, its read in two stages per bank
        m.submodules.axb = axb = AxonBuffer(geom, registered_writes=self.mem_pipe, evt_banks=self.evt_banks,
                                            x_banks=self.x_banks)
        # with pipelined memories the dendrite's data registers and the LPU's stages are reset-less too
        # (rtl/layouts.py, PIPELINE_RESET_LESS: the plain chip keeps their reset for Yosys 0.70's sake)
        # with pipelined memories the axon buffer's x read address is registered after its multiplexer
        # (host / dendrite / LPU), like the other memories' requests: x comes one clock later, and
        # the banked read a clock later still (``axb.x_latency``)
        x_lag = axb.x_latency if K else 0
        assert x_lag <= K
        m.submodules.den = den = Dendrite(geom, mem_delay=K, reset_less=self.mem_pipe, x_delay=x_lag)
        m.submodules.soma = soma = Soma(geom, den.aw_bits, den.ah_bits, mem_delay=K)
        m.submodules.lpu = lpu = PlasticityUnit(geom, mem_delay=K, reset_less=self.mem_pipe, x_delay=x_lag)
        m.d.comb += [soma.params.eq(params), lpu.params.eq(params)]
        self._blocks = {"axb": axb, "den": den, "soma": soma, "lpu": lpu}  # for simulation probes

        # ---- status registers --------------------------------------------------------------
        cycles = Signal(32)
        cyc = Signal(32)
        steps = Signal(32)
        start_req = Signal()
        clear_req = Signal()
        # static registers (they follow the parameter registers one clock later, long before a step
        # uses them): groups, groups - 1 (signed, so that N = 0 compares like ``g + 1 < 0``)
        n_groups = Signal(range(G + 1))
        ng_m1 = Signal(signed(len(n_groups) + 1))
        m.d.sync += [n_groups.eq((params.n_neurons + (P - 1)) >> logp),
                     ng_m1.eq(((params.n_neurons + (P - 1)) >> logp) - 1)]

        # ---- host access -------------------------------------------------------------------
        # A memory request is registered (``hq_*``) before it drives the memory ports, so no port
        # address / enable / data comes from the bus handshake logic.  Reads: accept -> request register
        # (read issued) -> data present (``d``; ``K`` clocks later with pipelined memories) -> data
        # registered (``e``) -> selected word registered (``f``) -> response FIFO.
        # ``credits`` = free response slots minus reads in flight; a request is accepted only while a
        # slot is free, so the pipeline never stalls (one request per clock while ``bus_rsp.ready``).
        req = self.bus.payload
        idle = Signal(init=1)  # register, = state IDLE of the sequencer (kept in step with its transitions)
        m.submodules.rsp_fifo = rsp_fifo = fifo.SyncFIFOBuffered(width=geom.data_bits, depth=RSP_DEPTH)
        m.d.comb += [self.bus_rsp.valid.eq(rsp_fifo.r_rdy), self.bus_rsp.payload.eq(rsp_fifo.r_data),
                     rsp_fifo.r_en.eq(self.bus_rsp.ready)]
        credits = Signal(range(RSP_DEPTH + 1), init=RSP_DEPTH)
        # nothing is accepted once a step or clear is requested: the sequencer leaves IDLE only with
        # the request register empty, and a request accepted in that clock would reach the ports late
        bus_open = idle & ~axb.busy & (credits != 0) & ~start_req & ~clear_req
        if K:  # nor while a register write waits (a CMD there sets its request a clock later)
            reg_wait = Signal(name="reg_we_wait")
            bus_open = bus_open & ~reg_wait
        if K:
            # ``ready`` is a flop (it gates the register slice in front of the core, whose loads fan out
            # over the whole request): ``bus_open`` a clock earlier, and low the clock after anything
            # that could close it (an accepted request or axon input, a register write, start / clear),
            # so that it is never high while ``bus_open`` is low. One request per two clocks.
            bus_ready = Signal()
            m.d.comb += self.bus.ready.eq(bus_ready)
        else:
            m.d.comb += self.bus.ready.eq(bus_open)
        accept = Signal()
        m.d.comb += accept.eq(self.bus.valid & self.bus.ready)
        acc_r = accept & ~req.we
        acc_w = accept & req.we
        rsp_out = rsp_fifo.r_rdy & self.bus_rsp.ready
        with m.If(acc_r & ~rsp_out):
            m.d.sync += credits.eq(credits - 1)
        with m.Elif(~acc_r & rsp_out):
            m.d.sync += credits.eq(credits + 1)
        hq_rd = Signal()
        hq_mem = Signal(4)
        hq_addr = Signal(geom.addr_bits)
        hq_data = Signal(geom.data_bits)
        hq_wen = {mid: Signal(P if MEMS[mid].lanes else 1, name=f"hq_wen_{mid.name.lower()}") for mid in wps}
        m.d.sync += [hq_rd.eq(acc_r), hq_mem.eq(req.mem), hq_addr.eq(req.addr), hq_data.eq(req.data)]
        for mid, en in hq_wen.items():
            sel = acc_w & (req.mem == mid)
            m.d.sync += en.eq(Mux(sel, req.mask, 0) if MEMS[mid].lanes else sel)
        # a request sits in the request register: one flop (not the OR of every write enable, which
        # would sit in front of the sequencer's start decision)
        hq_busy = Signal()
        m.d.sync += hq_busy.eq(accept)
        d_rd = Signal()
        d_mem = Signal(4)
        reg_rdata = Signal(geom.data_bits)
        e_rd = Signal()
        e_mem = Signal(4)
        f_rd = Signal()
        f_data = Signal(geom.data_bits)
        m.d.sync += [d_rd.eq(hq_rd), d_mem.eq(hq_mem)]
        m.d.comb += [rsp_fifo.w_en.eq(f_rd), rsp_fifo.w_data.eq(f_data)]

        # with pipelined memories the sequencer leaves IDLE on a decision made a clock earlier
        # (``seq_ok``: a request pending, nothing in the request registers or the axon buffer); the
        # axon buffer takes no input once a request is pending, so the decision still holds a clock later
        if K:
            axon_input(m, self, axb, idle & ~start_req & ~clear_req)
        else:
            axon_input(m, self, axb, idle)

        # register writes: from the request register like the memory writes (the decode and the write
        # enables of the parameter registers, which fan out over the whole core, start at flops)
        hq_reg_we = Signal()
        m.d.sync += hq_reg_we.eq(acc_w & (req.mem == Mem.REG))
        if K:
            m.d.sync += bus_ready.eq(bus_open & ~accept & ~hq_reg_we & ~(axb.inp.valid & axb.inp.ready)
                                     & ~self.start & ~self.clear)
        if K:
            # with pipelined memories a register write takes a clock more (the decode ends at flops);
            # the sequencer waits for it like for the request register
            # (decoded from a copy of the address of its own, loaded only for a register write: the
            # request register's address drives every memory port of the core)
            hq_reg_addr = Signal.like(hq_addr, name="hq_reg_addr")
            with m.If(acc_w & (req.mem == Mem.REG)):
                m.d.sync += hq_reg_addr.eq(req.addr)
            m.d.comb += reg_wait.eq(write_regs_registered(m, hq_reg_we, hq_reg_addr, hq_data, params, start_req,
                                                          clear_req))
            req_busy = hq_busy | reg_wait
        else:
            write_regs(m, hq_reg_we, hq_addr, hq_data, params, start_req, clear_req)
            req_busy = hq_busy
        if K:
            seq_ok = Signal()
            m.d.sync += seq_ok.eq((start_req | clear_req) & ~req_busy & ~axb.busy)
            can_leave = seq_ok
        else:
            can_leave = ~req_busy & ~axb.busy
        with m.If(self.start):
            m.d.sync += start_req.eq(1)
        with m.If(self.clear):
            m.d.sync += clear_req.eq(1)
        ro = readonly_regs(geom, busy=~idle, cycles=cycles, events=axb.count, out_count=soma.out_count, steps=steps)
        # register read: the value one clock after the read is issued, from a copy of the address made
        # for it (the request register also drives every memory port); a register write accepted after
        # the read reaches the registers a clock later still, so the read sees every earlier write only
        d_addr = Signal(geom.addr_bits)
        m.d.sync += d_addr.eq(hq_addr)
        if K:
            # pipelined memories leave K clocks for the register value too: read it in two stages
            reg_rdata_k = read_regs_split(m, d_addr, params, ro, geom.data_bits, K + 1)
        else:
            m.d.sync += reg_rdata.eq(0)
            read_regs(m, "sync", reg_rdata, d_addr, params, ro)
            reg_rdata_k = reg_rdata
        # every memory output is first captured by a register with no logic in front of it (a block
        # RAM's clock-to-output time leaves no room for a multiplexer; the engines capture the same
        # outputs, and the synthesiser merges the identical registers), then selected
        rd_reg = {mid: Signal(len(rp.data), name=f"rd_{mid.name.lower()}") for mid, rp in rps.items()}
        rd_x = Signal(C.X_BITS)
        if not K:
            m.d.sync += [rd_reg[mid].eq(rp.data) for mid, rp in rps.items()] + [rd_x.eq(axb.x_data.as_unsigned())]
        # with pipelined memories the memory data comes K clocks later; the register and X values
        # (read at the plain time, so a read sees exactly the writes before it) wait for it
        d_rd_k, _ = delayed(m, d_rd, K, "d_rd", reset_less=False)
        d_mem_k, _ = delayed(m, d_mem, K, "d_mem")
        rd_x_k, _ = delayed(m, rd_x, K - x_lag, "rd_x")
        if K:
            # (the memories register their data next to the block RAMs: the host's copies are taken
            # only for a read of their memory and are zero otherwise, so that Yosys does not merge them
            # with the engines' copies; the selection is a flop's synchronous reset, not a multiplexer)
            # the answer is then an OR in two registered stages, one level of logic and one long route
            # each (the copies sit next to their memories, all over the die): a read answers a clock
            # later than without pipelined memories, which only the response FIFO sees
            d_sel = Signal(len(rps) + 2, name="d_sel")
            sels = [hq_mem == int(mid) for mid in rps] + [hq_mem == int(Mem.X), hq_mem == int(Mem.REG)]
            m.d.sync += d_sel.eq(Mux(hq_rd, Cat(*sels), 0))
            # (the last of the K stages of ``d_sel`` is per memory and per 16 data bits: a copy's reset
            # net reaches 16 flops, next to their column of the memory, not the whole word)
            d_sel_k1, _ = delayed(m, d_sel, K - 1, "d_sel")
            d_sel_k = Signal(2, name=f"d_sel_d{K}")  # (only the X and REG selects go on to stage K)
            m.d.sync += d_sel_k.eq(d_sel_k1[len(rps):])
            m.d.sync += rd_x.eq(axb.x_data.as_unsigned())
            for i, (mid, rp) in enumerate(rps.items()):
                width = len(rp.data)
                for c0 in range(0, width, RD_SEL_BITS):
                    bits = slice(c0, min(c0 + RD_SEL_BITS, width))
                    sel = Signal(name=f"rd_{mid.name.lower()}_sel{c0 // RD_SEL_BITS}{DUP}")
                    m.d.sync += sel.eq(d_sel_k1[i])
                    with m.If(sel):
                        m.d.sync += rd_reg[mid][bits].eq(rp.data[bits])
                    with m.Else():
                        m.d.sync += rd_reg[mid][bits].eq(0)
            e_sel_x, e_sel_reg = Signal(), Signal()
            m.d.sync += [e_sel_x.eq(d_sel_k[0]), e_sel_reg.eq(d_sel_k[1])]
            terms = [rd_reg[mid] for mid in rps]
            parts = [Signal(geom.data_bits, name=f"rd_part{j}") for j in range((len(terms) + 3) // 4 + 1)]
            for j, part in enumerate(parts[:-1]):
                m.d.sync += part.eq(functools.reduce(operator.or_, terms[4 * j:4 * j + 4]))
            m.d.sync += parts[-1].eq(Mux(e_sel_x, rd_x_k, 0) | Mux(e_sel_reg, reg_rdata_k, 0))
            m.d.sync += f_data.eq(functools.reduce(operator.or_, parts))
            e2_rd = Signal()
            m.d.sync += [e_rd.eq(d_rd_k), e2_rd.eq(e_rd), f_rd.eq(e2_rd)]
        else:
            m.d.sync += [e_mem.eq(d_mem_k), e_rd.eq(d_rd_k), f_rd.eq(e_rd)]
            with m.Switch(e_mem):
                for mid in rps:
                    with m.Case(int(mid)):
                        m.d.sync += f_data.eq(rd_reg[mid])
                with m.Case(int(Mem.X)):
                    m.d.sync += f_data.eq(rd_x_k)
                with m.Case(int(Mem.REG)):
                    m.d.sync += f_data.eq(reg_rdata_k)
                with m.Default():
                    m.d.sync += f_data.eq(0)

        # ---- engine wiring -----------------------------------------------------------------
        m.d.comb += [
            axb.evt_addr.eq(den.evt_addr), den.evt_data.eq(axb.evt_data), den.n_events.eq(axb.count),
            den.x_data.eq(axb.x_data), lpu.x_data.eq(axb.x_data),
            den.w_data.eq(rps[Mem.W].data), den.h_data.eq(rps[Mem.H].data), den.m_data.eq(rps[Mem.HMASK].data),
            soma.acc_w.eq(den.acc_w), soma.acc_h.eq(den.acc_h),
            soma.b_data.eq(rps[Mem.B].data), soma.u_data.eq(rps[Mem.U].data), soma.s_data.eq(rps[Mem.S].data),
            soma.eta_data.eq(rps[Mem.ETA].data), soma.lut_data.eq(rps[Mem.LUT].data),
            lpu.h_rdata.eq(rps[Mem.H].data), lpu.beta_data.eq(rps[Mem.BETA].data), lpu.f_data.eq(rps[Mem.F].data),
            lpu.n_groups.eq(n_groups),
            self.spike_out.valid.eq(soma.out.valid), self.spike_out.payload.eq(soma.out.payload),
            soma.out.ready.eq(self.spike_out.ready),
        ]

        zc = Signal(range(geom.n_pad + 1))
        zeroing = Signal()  # (with pipelined memories) high in ZERO and the clock after
        with m.If(idle):
            m.d.sync += zeroing.eq(0)
        g = Signal(range(G + 1))
        gbase = Signal(geom.addr_bits)
        jbase = Signal(geom.neuron_bits + 1)
        m.d.comb += [den.gbase.eq(gbase), soma.jbase.eq(jbase), soma.group.eq(g)]
        in_lpu = Signal()

        x_addr, x_en = axb.x_addr, axb.x_en
        if x_lag:
            x_addr, x_en = Signal.like(axb.x_addr, name="x_raddr_mux"), Signal(name="x_ren_mux")
            m.d.sync += [axb.x_addr.eq(x_addr), axb.x_en.eq(x_en)]
        # the port multiplexers: the host owns every port while idle (driven from the request
        # register), the engines otherwise.  With pipelined memories each memory's multiplexer is
        # selected by a copy of ``idle`` of its own (``idle_<mem>__dup``, kept apart on the ECP5: one
        # flop no longer selects every port of the core), set and cleared with ``idle`` itself
        def engine_ports(er, ew, xa, xe):
            m.d.comb += xe.eq(1)
            for rp in er.values():
                m.d.comb += rp.en.eq(1)
            m.d.comb += [
                er[Mem.W].addr.eq(den.syn_addr), er[Mem.HMASK].addr.eq(den.syn_addr),
                er[Mem.H].addr.eq(Mux(in_lpu, lpu.h_raddr, den.syn_addr)),
                xa.eq(Mux(in_lpu, lpu.x_addr, den.x_addr)),
                er[Mem.B].addr.eq(soma.n_addr), er[Mem.U].addr.eq(soma.n_addr), er[Mem.S].addr.eq(soma.n_addr),
                er[Mem.ETA].addr.eq(soma.n_addr), er[Mem.LUT].addr.eq(soma.lut_addr),
                er[Mem.BETA].addr.eq(lpu.beta_addr), er[Mem.F].addr.eq(lpu.f_addr),
                ew[Mem.H].addr.eq(lpu.h_waddr), ew[Mem.H].data.eq(lpu.h_wdata),
                ew[Mem.H].en.eq(Mux(lpu.h_we, (1 << P) - 1, 0)),
                ew[Mem.F].addr.eq(soma.f_addr), ew[Mem.F].data.eq(soma.f_wdata), ew[Mem.F].en.eq(soma.f_en),
            ]
            if K:
                # the ZERO state's writes are selected by a flop of their own (``zeroing``), not by the
                # sequencer's state decode
                zw = zc != geom.n_pad
                for mid, wdata in ((Mem.U, soma.u_wdata), (Mem.S, soma.s_wdata)):
                    m.d.comb += [ew[mid].addr.eq(Mux(zeroing, zc, soma.w_addr)),
                                 ew[mid].data.eq(Mux(zeroing, 0, wdata)),
                                 ew[mid].en.eq(Mux(zeroing, zw, soma.w_en))]
            else:
                m.d.comb += [
                    ew[Mem.U].addr.eq(soma.w_addr), ew[Mem.U].data.eq(soma.u_wdata), ew[Mem.U].en.eq(soma.w_en),
                    ew[Mem.S].addr.eq(soma.w_addr), ew[Mem.S].data.eq(soma.s_wdata), ew[Mem.S].en.eq(soma.w_en),
                ]

        idle_all = idle  # ``idle`` and its copies: set and cleared together (``.eq(-1)`` / ``.eq(0)``)
        if K:
            idle_of = {mid: Signal(init=1, name=f"idle_{mid.name.lower()}{DUP}") for mid in sorted({*rps, *wps})}
            idle_x = Signal(init=1, name=f"idle_x{DUP}")
            idle_all = Cat(idle, idle_x, *idle_of.values())
            er = {mid: SimpleNamespace(addr=Signal.like(rp.addr, name=f"eng_{mid.name.lower()}_raddr"),
                                       en=Signal(name=f"eng_{mid.name.lower()}_ren")) for mid, rp in rps.items()}
            ew = {mid: SimpleNamespace(addr=Signal.like(wp.addr, name=f"eng_{mid.name.lower()}_waddr"),
                                       data=Signal.like(wp.data, name=f"eng_{mid.name.lower()}_wdata"),
                                       en=Signal.like(wp.en, name=f"eng_{mid.name.lower()}_wen"))
                  for mid, wp in wps.items()}
            ex_addr, ex_en = Signal.like(x_addr, name="eng_x_raddr"), Signal(name="eng_x_ren")
            engine_ports(er, ew, ex_addr, ex_en)
            for mid, rp in rps.items():
                m.d.comb += [rp.addr.eq(Mux(idle_of[mid], hq_addr, er[mid].addr)),
                             rp.en.eq(Mux(idle_of[mid], hq_rd, er[mid].en))]
            for mid, wp in wps.items():
                m.d.comb += [wp.addr.eq(Mux(idle_of[mid], hq_addr, ew[mid].addr)),
                             wp.data.eq(Mux(idle_of[mid], hq_data, ew[mid].data)),
                             wp.en.eq(Mux(idle_of[mid], hq_wen[mid], ew[mid].en))]
            m.d.comb += [x_addr.eq(Mux(idle_x, hq_addr, ex_addr)), x_en.eq(Mux(idle_x, hq_rd, ex_en))]
        else:
            with m.If(idle):
                for rp in rps.values():
                    m.d.comb += [rp.addr.eq(hq_addr), rp.en.eq(hq_rd)]
                m.d.comb += [x_addr.eq(hq_addr), x_en.eq(hq_rd)]
                for mid, wp in wps.items():
                    m.d.comb += [wp.addr.eq(hq_addr), wp.data.eq(hq_data), wp.en.eq(hq_wen[mid])]
            with m.Else():
                engine_ports(rps, wps, x_addr, x_en)

        # ---- step sequencer ----------------------------------------------------------------
        with m.FSM(name="seq"):
            with m.State("IDLE"):
                with m.If(clear_req & can_leave):
                    m.d.sync += [clear_req.eq(0), zc.eq(0), idle_all.eq(0)]
                    if K:
                        m.d.sync += zeroing.eq(1)
                    m.d.comb += axb.clear.eq(1)
                    m.next = "ZERO"
                with m.Elif(start_req & can_leave):
                    m.d.sync += [start_req.eq(0), cyc.eq(0), g.eq(0), gbase.eq(0), jbase.eq(0), idle_all.eq(0)]
                    m.d.comb += [den.start.eq(1), soma.clear_count.eq(1)]
                    m.next = "INTEG"
            with m.State("ZERO"):
                if K:
                    zero_state(m, self, zc, geom.n_pad, None, None, axb, idle_all)
                else:
                    zero_state(m, self, zc, geom.n_pad, wps[Mem.U], wps[Mem.S], axb, idle_all)
            with m.State("INTEG"):
                with m.If(den.acc_valid & soma.ready):
                    m.d.comb += soma.load.eq(1)
                    m.d.sync += [jbase.eq(jbase + P), g.eq(g + 1)]
                    with m.If(g < ng_m1):  # g + 1 < n_groups
                        m.d.sync += gbase.eq(gbase + params.n_axons)  # the dendrite reads it from the next clock
                        m.d.comb += den.start.eq(1)
                    with m.Else():
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(soma.idle & ~soma.load):
                    with m.If(params.plastic):
                        m.d.comb += lpu.start.eq(1)
                        m.next = "LPU"
                    with m.Else():
                        m.d.comb += axb.clear.eq(1)
                        m.next = "CLRWAIT"
            with m.State("LPU"):
                m.d.comb += in_lpu.eq(1)
                with m.If(~lpu.busy):
                    m.d.comb += axb.clear.eq(1)
                    m.next = "CLRWAIT"
            with m.State("CLRWAIT"):
                with m.If(~axb.busy):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += idle_all.eq(-1)
                    if not K:
                        m.d.sync += [cycles.eq(cyc + 1), steps.eq(steps + 1)]
                    m.next = "IDLE"
        if K:
            # (pipelined memories) the step and cycle counters are updated the clock after ``done``,
            # from a flop (their 64 enables otherwise hang on the axon buffer's ``busy``); ``cyc``
            # has counted that last clock by then.  No host request is taken before: the bus ``ready``
            # is ``bus_open`` (``idle``) a clock late
            done_q = Signal()
            m.d.sync += done_q.eq(self.done)
            with m.If(done_q):
                m.d.sync += [cycles.eq(cyc), steps.eq(steps + 1)]
        with m.If(~idle):
            m.d.sync += cyc.eq(cyc + 1)
        m.d.comb += self.busy.eq(~idle)
        return m


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
