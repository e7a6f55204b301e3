"""The hybrid core's host port: the bus requests (memory and register access), the register file and
the read-back path, as one component of :class:`~plasticore.rtl.core.HybridCore`."""

from __future__ import annotations

import functools
import operator

from amaranth.hdl import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from plasticore import contract as C
from plasticore.core_map import ALL_MEMS, CORE_VERSION, CoreGeometry, Mem

from .core_regs import read_regs, read_regs_split, readonly_regs, write_regs, write_regs_registered
from .layouts import bus_req_layout, param_layout
from .pipelined_ram import DUP, PIPE_LATENCY, delayed

__all__ = ["PARAM_DEFAULTS", "RD_SEL_BITS", "RSP_DEPTH", "HostPort"]

#: (pipelined memories) data bits of a memory's host read copy per copy of its select flop
RD_SEL_BITS = 16

#: response FIFO of the access port: deep enough for the read pipeline's round trip at one read per clock
RSP_DEPTH = 8

#: the parameter registers' reset values: each register-backed LAYER_PARAMS row's default (a required one:
#: the lowest legal value), and EMIT on
PARAM_DEFAULTS = {**{p.name: p.range.lo if p.default is None else p.default
                     for p in C.LAYER_PARAMS if p.reg is not None}, "emit": 1}


class HostPort(wiring.Component):
    """Bus requests to the core's memories and registers, while the core is idle.

    A memory request is registered (``req``, ``wen``) before it drives the memory ports, so no port
    address / enable / data comes from the bus handshake logic.  Reads: accept -> request register
    (read issued) -> data present (``rd_data``, ``x_data``; ``K`` clocks later with pipelined memories)
    -> data registered (``e``) -> selected word registered (``f``) -> response FIFO.  ``credits`` = free
    response slots minus reads in flight; a request is accepted only while a slot is free, so the
    pipeline never stalls (one request per clock while ``bus_rsp.ready``).

    The register file: ``params``, the step / clear requests (``start_req``, ``clear_req``: set by
    ``start`` / ``clear`` or ``CMD``, cleared by the sequencer's ``start_taken`` / ``clear_taken``) and
    the read-only registers (``cycles``, ``steps``, ``events``, ``out_count``, busy = not ``idle``).
    ``can_leave``: the sequencer may leave IDLE (no request in the request registers, the axon buffer
    not busy).  ``mem_pipe``: the pipelined memories' timing (``PIPE_LATENCY`` more clocks of read
    latency, registered decisions); ``x_lag``: x's read latency beyond the plain one (of those).
    """

    def __init__(self, geom: CoreGeometry, rd_widths: dict[Mem, int], *, mem_pipe: bool, x_lag: int = 0,
                 version: int = CORE_VERSION, extra_regs: dict | None = None):
        self.geom, self.mem_pipe, self.x_lag, self.version = geom, bool(mem_pipe), x_lag, version
        #: address -> signal: a core kind's own registers, written and read like the parameters
        self.extra_regs = extra_regs or {}
        self.K = PIPE_LATENCY if mem_pipe else 0
        assert x_lag <= self.K
        self.mems = list(rd_widths)
        super().__init__({
            "bus": In(stream.Signature(bus_req_layout(geom))),
            "bus_rsp": Out(stream.Signature(unsigned(geom.data_bits))),
            "idle": In(1), "axb_busy": In(1), "axon_taken": In(1),
            "start": In(1), "clear": In(1), "start_taken": In(1), "clear_taken": In(1),
            "cycles": In(32), "steps": In(32), "events": In(range(geom.a_max + 1)),
            "out_count": In(range(geom.n_pad + 1)),
            "rd_data": In(data.StructLayout({mid.name.lower(): w for mid, w in rd_widths.items()})),
            "x_data": In(C.X_BITS),
            "params": Out(param_layout(), init={**PARAM_DEFAULTS, "n_axons": geom.a_max, "n_neurons": geom.n_max}),
            "start_req": Out(1), "clear_req": Out(1), "can_leave": Out(1),
            "req": Out(data.StructLayout({"rd": 1, "addr": geom.addr_bits, "data": geom.data_bits})),
            "wen": Out(data.StructLayout({mid.name.lower(): geom.lanes if ALL_MEMS[mid].lanes else 1
                                          for mid in rd_widths})),
        })

    def _rd(self, mid: Mem):
        return getattr(self.rd_data, mid.name.lower())

    def elaborate(self, platform):
        m = Module()
        geom, K, req = self.geom, self.K, self.bus.payload
        m.submodules.rsp_fifo = rsp_fifo = fifo.SyncFIFOBuffered(width=geom.data_bits, depth=RSP_DEPTH)
        m.d.comb += [self.bus_rsp.valid.eq(rsp_fifo.r_rdy), self.bus_rsp.payload.eq(rsp_fifo.r_data),
                     rsp_fifo.r_en.eq(self.bus_rsp.ready)]
        credits = Signal(range(RSP_DEPTH + 1), init=RSP_DEPTH)
        reg_wait = Signal(name="reg_we_wait")  # (pipelined memories) a register write waits
        # nothing is accepted once a step or clear is requested: the sequencer leaves IDLE only with
        # the request register empty, and a request accepted in that clock would reach the ports late
        # (with pipelined memories nor while a register write waits: a CMD there sets its request a clock later)
        bus_open = self.idle & ~self.axb_busy & (credits != 0) & ~self.start_req & ~self.clear_req
        if K:
            bus_open = bus_open & ~reg_wait
        accept = Signal()
        m.d.comb += accept.eq(self.bus.valid & self.bus.ready)
        acc_r = accept & ~req.we
        acc_w = accept & req.we
        rsp_out = rsp_fifo.r_rdy & self.bus_rsp.ready
        with m.If(acc_r & ~rsp_out):
            m.d.sync += credits.eq(credits - 1)
        with m.Elif(~acc_r & rsp_out):
            m.d.sync += credits.eq(credits + 1)
        hq, hq_mem = self.req, Signal(4)
        m.d.sync += [hq.rd.eq(acc_r), hq_mem.eq(req.mem), hq.addr.eq(req.addr), hq.data.eq(req.data)]
        for mid in self.mems:
            sel = acc_w & (req.mem == mid)
            m.d.sync += getattr(self.wen, mid.name.lower()).eq(Mux(sel, req.mask, 0) if ALL_MEMS[mid].lanes else sel)
        # a request sits in the request register: one flop (not the OR of every write enable, which
        # would sit in front of the sequencer's start decision)
        hq_busy = Signal()
        m.d.sync += hq_busy.eq(accept)
        # register writes: from the request register like the memory writes (the decode and the write
        # enables of the parameter registers, which fan out over the whole core, start at flops)
        hq_reg_we = Signal()
        m.d.sync += hq_reg_we.eq(acc_w & (req.mem == Mem.REG))
        if K:
            # ``ready`` is a flop (it gates the register slice in front of the core, whose loads fan out
            # over the whole request): ``bus_open`` a clock earlier, and low the clock after anything
            # that could close it (an accepted request or axon input, a register write, start / clear),
            # so that it is never high while ``bus_open`` is low. One request per two clocks.
            bus_ready = Signal()
            m.d.comb += self.bus.ready.eq(bus_ready)
            m.d.sync += bus_ready.eq(bus_open & ~accept & ~hq_reg_we & ~self.axon_taken & ~self.start & ~self.clear)
            # a register write takes a clock more (the decode ends at flops); the sequencer waits for it
            # like for the request register (decoded from a copy of the address of its own, loaded only
            # for a register write: the request register's address drives every memory port of the core)
            hq_reg_addr = Signal.like(hq.addr, name="hq_reg_addr")
            with m.If(acc_w & (req.mem == Mem.REG)):
                m.d.sync += hq_reg_addr.eq(req.addr)
            m.d.comb += reg_wait.eq(write_regs_registered(m, hq_reg_we, hq_reg_addr, hq.data, self.params,
                                                          self.start_req, self.clear_req, self.extra_regs))
            # the sequencer leaves IDLE on a decision made a clock earlier (a request pending, nothing in
            # the request registers or the axon buffer); the axon buffer takes no input once a request
            # is pending, so the decision still holds a clock later
            seq_ok = Signal()
            m.d.sync += seq_ok.eq((self.start_req | self.clear_req) & ~(hq_busy | reg_wait) & ~self.axb_busy)
            m.d.comb += self.can_leave.eq(seq_ok)
        else:
            m.d.comb += self.bus.ready.eq(bus_open)
            write_regs(m, hq_reg_we, hq.addr, hq.data, self.params, self.start_req, self.clear_req, self.extra_regs)
            m.d.comb += self.can_leave.eq(~hq_busy & ~self.axb_busy)
        with m.If(self.start):
            m.d.sync += self.start_req.eq(1)
        with m.If(self.clear):
            m.d.sync += self.clear_req.eq(1)
        with m.If(self.start_taken):
            m.d.sync += self.start_req.eq(0)
        with m.If(self.clear_taken):
            m.d.sync += self.clear_req.eq(0)

        f_rd, f_data = Signal(), Signal(geom.data_bits)
        m.d.comb += [rsp_fifo.w_en.eq(f_rd), rsp_fifo.w_data.eq(f_data)]
        (self._read_back_pipelined if K else self._read_back)(m, hq_mem, f_rd, f_data)
        return m

    def _reg_read(self, m: Module, d_addr):
        """The register ``d_addr`` names, ``K + 1`` clocks later (with pipelined memories in two stages).

        A register write accepted after the read reaches the registers a clock later still, so the read
        sees every earlier write only."""
        ro = readonly_regs(self.geom, busy=~self.idle, cycles=self.cycles, events=self.events,
                           out_count=self.out_count, steps=self.steps, version=self.version)
        ro.update({a: Value.cast(sig).as_unsigned() for a, sig in self.extra_regs.items()})
        if self.K:
            return read_regs_split(m, d_addr, self.params, ro, self.geom.data_bits, self.K + 1)
        reg_rdata = Signal(self.geom.data_bits)
        m.d.sync += reg_rdata.eq(0)
        read_regs(m, "sync", reg_rdata, d_addr, self.params, ro)
        return reg_rdata

    def _read_back(self, m: Module, hq_mem, f_rd, f_data) -> None:
        """Plain memories: every memory output is first captured by a register with no logic in front of
        it (a block RAM's clock-to-output time leaves no room for a multiplexer; the engines capture the
        same outputs, and the synthesiser merges the identical registers), then selected."""
        d_rd, d_mem, d_addr, e_rd, e_mem = Signal(), Signal(4), Signal(self.geom.addr_bits), Signal(), Signal(4)
        m.d.sync += [d_rd.eq(self.req.rd), d_mem.eq(hq_mem), d_addr.eq(self.req.addr)]
        reg_rdata = self._reg_read(m, d_addr)
        rd_reg = {mid: Signal(len(self._rd(mid)), name=f"rd_{mid.name.lower()}") for mid in self.mems}
        rd_x = Signal(C.X_BITS)
        m.d.sync += [rd_reg[mid].eq(self._rd(mid)) for mid in self.mems] + [rd_x.eq(self.x_data)]
        m.d.sync += [e_mem.eq(d_mem), e_rd.eq(d_rd), f_rd.eq(e_rd)]
        with m.Switch(e_mem):
            for mid in self.mems:
                with m.Case(int(mid)):
                    m.d.sync += f_data.eq(rd_reg[mid])
            with m.Case(int(Mem.X)):
                m.d.sync += f_data.eq(rd_x)
            with m.Case(int(Mem.REG)):
                m.d.sync += f_data.eq(reg_rdata)
            with m.Default():
                m.d.sync += f_data.eq(0)

    def _read_back_pipelined(self, m: Module, hq_mem, f_rd, f_data) -> None:
        """Pipelined memories: the memory data comes K clocks later; the register and X values (read at
        the plain time, so a read sees exactly the writes before it) wait for it.

        The memories register their data next to the block RAMs: the host's copies are taken only for a
        read of their memory and are zero otherwise, so that Yosys does not merge them with the engines'
        copies; the selection is a flop's synchronous reset, not a multiplexer.  The answer is then an OR
        in two registered stages, one level of logic and one long route each (the copies sit next to
        their memories, all over the die): a read answers a clock later than without pipelined memories,
        which only the response FIFO sees."""
        geom, K, hq = self.geom, self.K, self.req
        d_rd, d_addr, e_rd = Signal(), Signal(geom.addr_bits), Signal()
        m.d.sync += [d_rd.eq(hq.rd), d_addr.eq(hq.addr)]
        reg_rdata_k = self._reg_read(m, d_addr)
        rd_reg = {mid: Signal(len(self._rd(mid)), name=f"rd_{mid.name.lower()}") for mid in self.mems}
        rd_x = Signal(C.X_BITS)
        d_rd_k, _ = delayed(m, d_rd, K, "d_rd", reset_less=False)
        rd_x_k, _ = delayed(m, rd_x, K - self.x_lag, "rd_x")
        d_sel = Signal(len(self.mems) + 2, name="d_sel")
        sels = [hq_mem == int(mid) for mid in self.mems] + [hq_mem == int(Mem.X), hq_mem == int(Mem.REG)]
        m.d.sync += d_sel.eq(Mux(hq.rd, Cat(*sels), 0))
        # (the last of the K stages of ``d_sel`` is per memory and per 16 data bits: a copy's reset
        # net reaches 16 flops, next to their column of the memory, not the whole word)
        d_sel_k1, _ = delayed(m, d_sel, K - 1, "d_sel")
        d_sel_k = Signal(2, name=f"d_sel_d{K}")  # (only the X and REG selects go on to stage K)
        m.d.sync += d_sel_k.eq(d_sel_k1[len(self.mems):])
        m.d.sync += rd_x.eq(self.x_data)
        for i, mid in enumerate(self.mems):
            rdata, width = self._rd(mid), len(self._rd(mid))
            for c0 in range(0, width, RD_SEL_BITS):
                bits = slice(c0, min(c0 + RD_SEL_BITS, width))
                sel = Signal(name=f"rd_{mid.name.lower()}_sel{c0 // RD_SEL_BITS}{DUP}")
                m.d.sync += sel.eq(d_sel_k1[i])
                with m.If(sel):
                    m.d.sync += rd_reg[mid][bits].eq(rdata[bits])
                with m.Else():
                    m.d.sync += rd_reg[mid][bits].eq(0)
        e_sel_x, e_sel_reg = Signal(), Signal()
        m.d.sync += [e_sel_x.eq(d_sel_k[0]), e_sel_reg.eq(d_sel_k[1])]
        terms = [rd_reg[mid] for mid in self.mems]
        parts = [Signal(geom.data_bits, name=f"rd_part{j}") for j in range((len(terms) + 3) // 4 + 1)]
        for j, part in enumerate(parts[:-1]):
            m.d.sync += part.eq(functools.reduce(operator.or_, terms[4 * j:4 * j + 4]))
        m.d.sync += parts[-1].eq(Mux(e_sel_x, rd_x_k, 0) | Mux(e_sel_reg, reg_rdata_k, 0))
        m.d.sync += f_data.eq(functools.reduce(operator.or_, parts))
        e2_rd = Signal()
        m.d.sync += [e_rd.eq(d_rd_k), e2_rd.eq(e_rd), f_rd.eq(e2_rd)]
