"""The multi-core chip: K hybrid cores on a 2D mesh, a step sequencer and the host bus target.

Address map of the bus (32-bit word addresses, ``plasticore.host.compiler`` builds them):

* bit 31 = 1: core access ``core = addr[25:31]``, ``mem = addr[21:25]`` (:class:`core_map.Mem`),
  ``idx = addr[0:21]``.  Lane memories carry ``epw = min(P, 32 // bits)`` elements per bus word:
  core word ``idx >> log2(P/epw)``, lanes ``(idx & (P/epw - 1)) * epw ..``; other memories one
  element per word at ``idx``.  Reads return the raw element bits (the host sign-extends).
* bit 31 = 0: chip registers :class:`chip_map.ChipReg` (routing tables, core phases, output ring).

A time step (bus ``RUN n`` runs n of them; the RUN result is the number of entries waiting in the
output ring, so the host knows how many to read; ``RUN 0`` returns the step counter) executes
phase 0 .. N_PHASES-1: every core whose phase
register equals the phase is started, and the phase ends when those cores are done, their network
interfaces idle and no packet is in flight.  Layer l+1 therefore sees exactly layer l's outputs of
the same step, as in the golden model.  Packets for the host land in the output ring, a memory of
``out_fifo`` entries (a power of two, at most ``chip_map.OUT_WIN_SIZE``): ``OUT_WIN + i`` reads entry i
from the oldest unacknowledged one without changing anything, ``OUT_ACK`` (write n) drops the n oldest;
if the ring is full a packet is counted in ``OUT_DROPS`` (the compiler keeps one step's outputs within
the ring and the host acknowledges them every step).  A read whose reply was lost can be repeated.
"""

from __future__ import annotations

import functools
import operator
from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from plasticore import chip_map as M
from plasticore import core_map as CM
from plasticore.chip_map import CORE_SHIFT, IDX_BITS, MEM_SHIFT, elems_per_word

from .bus import BusOp, BusSignature
from .chip_seq import StepSequencer
from .compact_core import CompactCore
from .core import HybridCore
from .mesh import Mesh
from .netif import NetIf, route_entry_layout
from .program_core import ProgramCore
from .stream_slice import StreamSlice, stage

__all__ = ["CORE_KINDS", "Chip"]

#: the core implementations a chip can be built from (same ports, map and results)
CORE_KINDS = {"hybrid": HybridCore, "compact": CompactCore, "program": ProgramCore}

#: with ``mem_pipe``: chip registers per first-level flop of the register read multiplexer
RD_GROUP = 4
#: bits of a routing entry's index in its core's table (the low bits of a ROUTE register address)
ROUTE_INDEX_BITS = (M.MAX_DESTS - 1).bit_length()


class Chip(wiring.Component):
    """``mesh_x * mesh_y`` cores of ``a_max x n_max`` with ``lanes`` lanes; a bus target for the link.

    ``core``: ``"hybrid"`` (:class:`~plasticore.rtl.core.HybridCore`, P lanes) or ``"compact"``
    (:class:`~plasticore.rtl.compact_core.CompactCore`, one lane, sized for the iCE40UP5K); both have
    the same ports, memory map and results.  ``mem_pipe``: the hybrid cores' memories are pipelined
    and banked (``HybridCore(mem_pipe=True)``), the mesh routers pipelined (``MeshRouter(pipe=True)``) and a
    :class:`~plasticore.rtl.stream_slice.StreamSlice` put on each core's host request and response streams
    and between each network interface and its router: Fmax on a large FPGA, a few more clocks per step
    and per host access.
    """

    def __init__(self, mesh_x: int = 2, mesh_y: int = 1, a_max: int = 256, n_max: int = 256, lanes: int = 16,
                 design_id: int = 0, out_fifo: int = 2048, core: str = "hybrid", route_dests: int = M.MAX_DESTS,
                 mem_pipe: bool = False):
        if core not in CORE_KINDS:
            raise ValueError(f"core {core!r} is not one of {sorted(CORE_KINDS)}")
        if core == "compact" and lanes != 1:
            raise ValueError(f"the compact core has one lane, got lanes={lanes}")
        if core != "hybrid" and mem_pipe:
            raise ValueError(f"mem_pipe is an option of the hybrid core; the {core} core has no pipelined memories")
        if out_fifo < 2 or out_fifo & (out_fifo - 1) or out_fifo > M.OUT_WIN_SIZE:
            raise ValueError(f"out_fifo must be a power of two in 2..{M.OUT_WIN_SIZE}, got {out_fifo}")
        self.core = core
        self.mem_pipe = bool(mem_pipe)
        self.route_dests = route_dests
        self.mesh_x, self.mesh_y = mesh_x, mesh_y
        self.k = mesh_x * mesh_y
        self.geom = CM.CoreGeometry(a_max, n_max, lanes)
        self.design_id = design_id & 0xFFFFFFFF
        self.out_fifo = out_fifo
        super().__init__({"bus": In(BusSignature(32)), "busy": Out(1)})

    def geometry(self) -> dict:
        """Fields of ``protocol.GEOMETRY`` for the identify reply."""
        return {"cores": self.k, "mesh_x": self.mesh_x, "mesh_y": self.mesh_y, "axons": self.geom.a_max,
                "neurons": self.geom.n_max, "lanes": self.geom.lanes, "layers": M.MAX_PHASES}

    def elaborate(self, platform):
        m = Module()
        K, g = self.k, self.geom
        P = g.lanes
        bus = self.bus

        kw = {"mem_pipe": True} if self.mem_pipe else {}
        cores = [CORE_KINDS[self.core](g.a_max, g.n_max, P, **kw) for _ in range(K)]
        nifs = [NetIf(g, self.route_dests, registered=self.mem_pipe) for _ in range(K)]
        for k in range(K):
            m.submodules[f"core{k}"] = cores[k]
            m.submodules[f"nif{k}"] = nifs[k]
        m.submodules.mesh = mesh = Mesh(self.mesh_x, self.mesh_y, pipe=self.mem_pipe)

        # ---- chip registers -----------------------------------------------------------------
        n_phases = Signal(4)
        phase_of = [Signal(4, name=f"phase{k}", init=M.UNUSED_PHASE) for k in range(K)]
        drops = Signal(32)

        # ---- datapath: cores <-> network interfaces <-> mesh ----------------------------------
        injects, delivers = [], []
        for k in range(K):
            wiring.connect(m, cores[k].spike_out, nifs[k].spikes)
            if self.mem_pipe:
                # a packet reaches the router from a register slice: the network interface's table
                # lookup and index adder do not run into the router's route decode and FIFO (a packet in
                # the slice is in flight: counted injected, not yet delivered)
                m.submodules[f"nif_slice{k}"] = ns = StreamSlice(nifs[k].packets.payload.shape())
                wiring.connect(m, nifs[k].packets, ns.i)
                wiring.connect(m, ns.o, mesh.inject[k])
            else:
                wiring.connect(m, nifs[k].packets, mesh.inject[k])
            d = mesh.deliver[k]
            ai = cores[k].axon_in
            m.d.comb += [ai.valid.eq(d.valid), ai.payload.axon.eq(d.payload.index[:g.axon_bits]),
                         ai.payload.value.eq(d.payload.value), d.ready.eq(ai.ready)]
            injects.append(nifs[k].packets.valid & nifs[k].packets.ready)
            delivers.append(d.valid & d.ready)
        host = mesh.host
        m.d.comb += host.ready.eq(1)
        out_v, out_w = host.valid, Cat(host.payload.index, host.payload.value)
        if self.mem_pipe:
            # a packet for the host enters the output ring (and the drop counter) from a register: the
            # mesh's host port and the ring sit apart. It is counted as delivered a clock earlier,
            # which is safe: the sequencer finishes a step several clocks after the network is quiet
            out_vq, out_wq = Signal(), Signal.like(out_w)
            m.d.sync += [out_vq.eq(out_v), out_wq.eq(out_w)]
            out_v, out_w = out_vq, out_wq
        # the output ring: entries [tail, head) of ``outmem`` are waiting; ``level`` (head - tail) is a
        # register of its own, so the full test and the OUT_COUNT / RUN answers come from flops. ``ack_n``
        # (the entries an OUT_ACK drops this clock, from the bus target below) moves the tail; the RESET
        # flush in the sequencer (stated later) takes precedence
        W = (self.out_fifo - 1).bit_length()
        m.submodules.outmem = outmem = memory.Memory(shape=unsigned(len(out_w)), depth=self.out_fifo, init=[])
        head, tail, level = Signal(W), Signal(W), Signal(W + 1)
        ack_n = Signal(W + 1)
        wr = Signal()
        wp = outmem.write_port()
        m.d.comb += [wr.eq(out_v & ~level[W]), wp.addr.eq(head), wp.data.eq(out_w), wp.en.eq(wr)]
        m.d.sync += [head.eq(head + wr), tail.eq(tail + ack_n), level.eq(level + wr - ack_n)]
        with m.If(out_v & level[W]):
            m.d.sync += drops.eq(drops + 1)
        delivers.append(host.valid)

        # packets in flight: + injected - delivered (several per clock)
        in_flight = Signal(16)
        # with mem_pipe the handshakes (from every router) are counted from flops, a clock late: then
        # ``in_flight`` plus the registered injections is the count of the clock before
        inj, dlv = Cat(*injects), Cat(*delivers)
        if self.mem_pipe:
            inj_q, dlv_q = Signal(K), Signal(K + 1)
            m.d.sync += [inj_q.eq(inj), dlv_q.eq(dlv)]
            inj, dlv = inj_q, dlv_q
        n_inj = Signal(range(K + 1))
        n_del = Signal(range(K + 2))
        m.d.comb += [n_inj.eq(sum(inj[i] for i in range(K))), n_del.eq(sum(dlv[i] for i in range(K + 1)))]
        m.d.sync += in_flight.eq(in_flight + n_inj - n_del)

        # ---- step sequencer ---------------------------------------------------------------
        m.submodules.seq = seq = StepSequencer(K, registered=self.mem_pipe)
        go_run = Signal()  # from the bus: RUN n (n > 0) accepted
        go_clear = Signal()  # from the bus: CLEAR written or RESET
        flush = Signal()  # from the bus: RESET (also empty the output ring and zero the drop counter)
        m.d.comb += [seq.go_run.eq(go_run), seq.run_arg.eq(bus.w_data), seq.go_clear.eq(go_clear),
                     seq.flush.eq(flush),
                     seq.dones.eq(Cat(*[c.done for c in cores])), seq.n_phases.eq(n_phases),
                     seq.quiet.eq((in_flight == 0) & ~Cat(*[n.busy for n in nifs]).any()
                                  & ~Cat(*[c.spike_out.valid for c in cores]).any() & (n_inj == 0))]
        m.d.comb += [seq.phase_of[k].eq(phase_of[k]) for k in range(K)]
        m.d.comb += [cores[k].start.eq(seq.start[k]) for k in range(K)] + [c.clear.eq(seq.clear) for c in cores]
        ctrl_idle, steps, cycles = seq.idle, seq.steps, seq.cycles
        with m.If(seq.flushing):  # (after the ring's own updates: takes precedence)
            m.d.sync += [tail.eq(head), level.eq(0), drops.eq(0)]
        # the bus response registers (a chip register read, or RUN's answer from the sequencer, the output
        # ring's level); their clear comes first so that the sequencer and the bus target below can set them
        reg_valid = Signal()
        reg_data = Signal(32)
        reg_err = Signal()
        m.d.sync += [reg_valid.eq(0), reg_err.eq(0)]
        with m.If(seq.answer):
            m.d.sync += [reg_valid.eq(1), reg_data.eq(level)]
        m.d.comb += self.busy.eq(~ctrl_idle)

        self._bus_target(m, SimpleNamespace(cores=cores, nifs=nifs, n_phases=n_phases, phase_of=phase_of,
            drops=drops, level=level, tail=tail, W=W, ack_n=ack_n, outmem=outmem, ctrl_idle=ctrl_idle,
            steps=steps, cycles=cycles, reg_valid=reg_valid, reg_data=reg_data, reg_err=reg_err,
            go_run=go_run, go_clear=go_clear, flush=flush))
        return m

    def _bus_target(self, m: Module, sh: SimpleNamespace) -> None:
        """The bus target: address decode, the cores' host streams, the chip registers, the output
        window and the bus handshake.  ``sh``: what it shares with the rest of the chip."""
        K, bus = self.k, self.bus
        assert M.MAX_DESTS & (M.MAX_DESTS - 1) == 0 and M.ChipReg.ROUTE_BASE % M.MAX_DESTS == 0
        if not self.mem_pipe:
            for k in range(K):
                m.d.comb += [sh.nifs[k].table_addr.eq(bus.addr[:ROUTE_INDEX_BITS]),
                             sh.nifs[k].table_data.eq(bus.w_data[:route_entry_layout().size])]
        ca = self._core_access(m, sh)
        cw = self._chip_reg_write_regs(m, sh)
        if self.mem_pipe:
            self._chip_reg_write_late(m, sh, cw)
        win_sel, win_start, win_s = self._out_window(m, sh.outmem, sh.tail, sh.level, sh.reg_valid, sh.reg_data)
        rd = self._chip_reg_read_late(m, sh, ca, win_sel) if self.mem_pipe else None
        if rd is not None:
            win_sel = rd.win_sel
        self._handshake(m, sh, ca, cw, rd, win_sel, win_start, win_s)

    def _core_access(self, m: Module, sh: SimpleNamespace) -> SimpleNamespace:
        """The cores' host streams: the decoded request to every core, the read in progress
        (``rd_pending``, ``rd_core``, ``rd_mem``, ``rd_chunk``) and its response (``rsp_valid``,
        ``rsp_sel``); with ``mem_pipe`` the decode registered (``dec_valid``)."""
        K, bus, cores, ctrl_idle = self.k, self.bus, sh.cores, sh.ctrl_idle
        is_core, core_sel, mem_sel, core_ok, word, chunk, lane_mask, wide = self._decode(m)

        # the cores' host streams, through a register slice each way with mem_pipe (no path then runs from
        # the bus decode into a core and back); nothing but a core access is accepted while a request
        # still waits in a slice, so every core access lands before a RUN, CLEAR or chip register access
        rd_pending = Signal()
        core_bus = [c.bus for c in cores]
        core_rsp = [c.bus_rsp for c in cores]
        slice_busy = None
        if self.mem_pipe:
            for k in range(K):
                m.submodules[f"bus_req{k}"] = rq = StreamSlice(cores[k].bus.payload.shape())
                m.submodules[f"bus_rsp{k}"] = rs = StreamSlice(cores[k].bus_rsp.payload.shape())
                wiring.connect(m, rq.o, cores[k].bus)
                wiring.connect(m, cores[k].bus_rsp, rs.i)
                core_bus[k], core_rsp[k] = rq.i, rs.o
            slice_busy = Cat(*[m.submodules[f"bus_req{k}"].o.valid for k in range(K)]).any()

        # with mem_pipe the bus decode is registered: a request's decode is taken the clock it is first
        # seen (the bus holds the request until ``ready``) and the target answers it from the next clock
        # on (``dec_valid``), so the decode's logic ends at flops and the handshake starts at them
        rw_op = (bus.op == BusOp.WRITE) | (bus.op == BusOp.READ)
        core_hit = [is_core & core_ok & (core_sel == k) & rw_op for k in range(K)]
        cb_valid = [bus.valid & ctrl_idle & ~rd_pending & h for h in core_hit]
        bus_valid = bus.valid
        dec_valid = None
        if self.mem_pipe:
            dec_valid = Signal()
            m.d.sync += dec_valid.eq(bus.valid & ~bus.ready)
            bus_valid = bus.valid & dec_valid
            core_ok = stage(m, core_ok, True, "core_ok_q")
            word, lane_mask = stage(m, word, True, "word_q"), stage(m, lane_mask, True, "lane_mask_q")
            wide = stage(m, wide, True, "wide_q")
            cb_valid = [bus_valid & ctrl_idle & ~rd_pending & stage(m, h, True, f"core_hit{k}_q")
                        for k, h in enumerate(core_hit)]

        rd_core = Signal(range(max(K, 2)))
        rd_chunk = Signal(5)
        rd_mem = Signal(4)

        for k in range(K):
            cb = core_bus[k]
            m.d.comb += [
                cb.payload.we.eq(bus.op == BusOp.WRITE),
                cb.payload.mem.eq(mem_sel),
                cb.payload.addr.eq(word),
                cb.payload.mask.eq(lane_mask),
                cb.payload.data.eq(wide),
                cb.valid.eq(cb_valid[k]),
                core_rsp[k].ready.eq(1),
            ]

        rsp_valid, rsp_sel = self._read_response(m, core_rsp, rd_core, rd_mem, rd_chunk)
        with m.If(rd_pending & rsp_valid):
            m.d.sync += rd_pending.eq(0)
        return SimpleNamespace(is_core=is_core, core_sel=core_sel, mem_sel=mem_sel, core_ok=core_ok, chunk=chunk,
                               core_bus=core_bus, rd_pending=rd_pending, slice_busy=slice_busy, bus_valid=bus_valid,
                               dec_valid=dec_valid, rd_core=rd_core, rd_chunk=rd_chunk, rd_mem=rd_mem,
                               rsp_valid=rsp_valid, rsp_sel=rsp_sel)

    def _chip_reg_write_regs(self, m: Module, sh: SimpleNamespace) -> SimpleNamespace:
        """The state of the chip register writes: the OUT_ACK test ``ack_over`` and, with ``mem_pipe``,
        the registers the writes are made from (``we_*``, ``cw_reg``, ``cw_data``); drives ``ack_n``."""
        K, bus, W = self.k, self.bus, sh.W
        # with mem_pipe a chip register write is made a clock after it is accepted, from registers: the
        # write enables decoded when it is accepted (``we_*``, one clock each), its data and entry
        # (the phase and routing registers' enables and data fan out to every core)
        # OUT_ACK n: refused (an error, nothing dropped) when n exceeds the level. With mem_pipe the test
        # is a flop made every clock from the request on the bus (accepted only after a clock, see
        # ``dec_valid``), and nothing is accepted for two clocks after an OUT_ACK, so that the test sees
        # the level the OUT_ACK left (it is made a clock after acceptance, from ``we_ack``)
        ack_over = (bus.w_data[W + 1:] != 0) | (bus.w_data[:W + 1] > sh.level)
        ack_now = Signal()  # without mem_pipe: an OUT_ACK accepted this clock
        cw = SimpleNamespace(ack_now=ack_now)
        if self.mem_pipe:
            we_nph, we_phase, we_route, we_ack, ack_d = Signal(), Signal(K), Signal(K), Signal(), Signal()
            cw_reg = Signal(12)
            cw_data = Signal(32)
            m.d.sync += [we_nph.eq(0), we_phase.eq(0), we_route.eq(0), we_ack.eq(0), ack_d.eq(we_ack)]
            ack_over_q = Signal()
            m.d.sync += ack_over_q.eq(ack_over)
            ack_over = ack_over_q
            cw = SimpleNamespace(ack_now=ack_now, we_nph=we_nph, we_phase=we_phase, we_route=we_route,
                                 we_ack=we_ack, reg=cw_reg, data=cw_data, ack_busy=we_ack | ack_d)
            m.d.comb += sh.ack_n.eq(Mux(we_ack, cw_data[:W + 1], 0))
        else:
            m.d.comb += sh.ack_n.eq(Mux(ack_now, bus.w_data[:W + 1], 0))
        cw.ack_over = ack_over
        return cw

    def _chip_reg_write(self, m: Module, sh: SimpleNamespace, cw: SimpleNamespace, reg, data) -> None:
        """A chip register write (accepted this clock): answer it (CLEAR, the errors) and make it,
        now or (with ``mem_pipe``) through the ``we_*`` registers."""
        K, bus, nifs, phase_of = self.k, self.bus, sh.nifs, sh.phase_of
        ebits_r = ROUTE_INDEX_BITS
        with m.If(reg == M.ChipReg.N_PHASES):
            m.d.sync += cw.we_nph.eq(1) if self.mem_pipe else sh.n_phases.eq(data)
        with m.Elif(reg == M.ChipReg.CLEAR):
            m.d.comb += sh.go_clear.eq(data[0])
        with m.Elif(reg == M.ChipReg.OUT_ACK):
            with m.If(cw.ack_over | (bus.addr[12:] != 0)):
                m.d.comb += bus.error.eq(1)
            with m.Else():
                if self.mem_pipe:
                    m.d.sync += cw.we_ack.eq(1)
                else:
                    m.d.comb += cw.ack_now.eq(1)
        with m.Elif((reg >= M.ChipReg.CORE_PHASE_BASE) & (reg < M.ChipReg.CORE_PHASE_BASE + K)):
            for k in range(K):
                with m.If(reg == M.ChipReg.CORE_PHASE_BASE + k):
                    m.d.sync += cw.we_phase[k].eq(1) if self.mem_pipe else phase_of[k].eq(data)
        with m.Elif((reg >= M.ChipReg.ROUTE_BASE) & (reg < M.ChipReg.ROUTE_BASE + K * M.MAX_DESTS)):
            # routing entry e of core k: the register lives in NetIf k
            for k in range(K):
                with m.If(reg[ebits_r:] == M.ChipReg.ROUTE_BASE // M.MAX_DESTS + k):
                    if self.mem_pipe:
                        m.d.sync += cw.we_route[k].eq(1)
                    else:
                        m.d.comb += nifs[k].table_we.eq(1)
            if self.route_dests < M.MAX_DESTS:  # a valid entry the network interfaces do not have
                with m.If((reg[:ebits_r] >= self.route_dests) & data[0]):
                    m.d.comb += bus.error.eq(1)
        with m.Else():
            m.d.comb += bus.error.eq(1)

    def _chip_reg_write_late(self, m: Module, sh: SimpleNamespace, cw: SimpleNamespace) -> None:
        """With ``mem_pipe``: the chip register writes made a clock after acceptance, from ``cw``."""
        with m.If(cw.we_nph):
            m.d.sync += sh.n_phases.eq(cw.data)
        for k in range(self.k):
            m.d.comb += [sh.nifs[k].table_addr.eq(cw.reg[:ROUTE_INDEX_BITS]),
                         sh.nifs[k].table_data.eq(cw.data[:route_entry_layout().size]),
                         sh.nifs[k].table_we.eq(cw.we_route[k])]
            with m.If(cw.we_phase[k]):
                m.d.sync += sh.phase_of[k].eq(cw.data)

    def _chip_reg_values(self, sh: SimpleNamespace) -> list:
        """``(address, value)`` of every readable chip register (what :meth:`_chip_reg_read` returns;
        a CORE_PHASE / ROUTE address of no core: 0, no error). Every value is a flop or a constant."""
        R, K = M.ChipReg, self.k
        return [(R.CHIP_ID, Const(M.CHIP_ID_VALUE, 32)), (R.MESH, Const(self.mesh_x | self.mesh_y << 8, 32)),
                (R.N_CORES, Const(K, 32)), (R.N_PHASES, sh.n_phases), (R.STATUS, ~sh.ctrl_idle),
                (R.OUT_COUNT, sh.level),
                (R.STEPS, sh.steps), (R.CYCLES, sh.cycles), (R.DESIGN_ID, Const(self.design_id, 32)),
                (R.OUT_DROPS, sh.drops)] + [(R.CORE_PHASE_BASE + k, sh.phase_of[k]) for k in range(K)]

    def _chip_reg_read(self, m: Module, sh: SimpleNamespace, reg, data, err) -> None:
        """The value of chip register ``reg`` into ``data`` (next clock, from
        :meth:`_chip_reg_values`); ``err`` set when there is none."""
        with m.Switch(reg):
            for a, v in self._chip_reg_values(sh):
                with m.Case(a):
                    m.d.sync += data.eq(v)
            with m.Default():
                # 0 for a CORE_PHASE address of no core (no error)
                m.d.sync += [data.eq(0), err.eq(reg < M.ChipReg.CORE_PHASE_BASE)]

    def _chip_reg_read_late(self, m: Module, sh: SimpleNamespace, ca: SimpleNamespace, win_sel) -> SimpleNamespace:
        """With ``mem_pipe``: the chip register read answered from flops (below); returns its
        ``dec2``, ``rd_acc`` and the window decode from a flop (``win_sel``)."""
        bus, reg_valid, reg_data, reg_err = self.bus, sh.reg_valid, sh.reg_data, sh.reg_err
        # with mem_pipe a chip register read is answered from ``rd_val``: the register named by the
        # request, read every clock (its multiplexer ends at flops). Accepted only once ``dec2``
        # (decoded two clocks, the chip idle the clock before), it sees every earlier write (made
        # two clocks after it was accepted).
        # The answer is made the clock after (``rd_acc``) from the copies ``rd_*2``, so that the
        # bus handshake does not reach the 32 answer flops.
        # The read multiplexer is two levels of flops: ``rd_grp`` (each the register of a group of
        # RD_GROUP chip registers that ``rd_addr`` names, or 0) and ``rd_val2`` (their OR).
        rd_bad, dec2 = Signal(), Signal()
        rd_val2, rd_bad2, rd_acc = Signal(32), Signal(), Signal()
        m.d.sync += [dec2.eq(ca.dec_valid & bus.valid & ~bus.ready & sh.ctrl_idle),
                     rd_bad2.eq(rd_bad), rd_acc.eq(0)]
        with m.If(rd_acc):
            m.d.sync += [reg_valid.eq(1), reg_data.eq(rd_val2), reg_err.eq(rd_bad2)]
        # the window decode from a flop too (the request has been on the bus since the clock before)
        win_sel_q = Signal()
        m.d.sync += win_sel_q.eq(win_sel)

        # the register is chosen by a copy of the address: the request has been on the bus since
        # the clock before ``dec2``'s decode, so the copy already holds its address then
        rd_addr = Signal(12)
        m.d.sync += rd_addr.eq(bus.addr[:12])
        cases = self._chip_reg_values(sh)
        groups = [cases[i:i + RD_GROUP] for i in range(0, len(cases), RD_GROUP)]
        rd_grp = [Signal(32, name=f"rd_grp{i}") for i in range(len(groups))]
        for sig, grp in zip(rd_grp, groups, strict=True):
            m.d.sync += sig.eq(functools.reduce(operator.or_, [Mux(rd_addr == a, v, 0) for a, v in grp]))
        m.d.sync += rd_val2.eq(functools.reduce(operator.or_, rd_grp))
        named = functools.reduce(operator.or_, [rd_addr == a for a, _ in cases])
        m.d.sync += rd_bad.eq(~named & (rd_addr < M.ChipReg.CORE_PHASE_BASE))
        return SimpleNamespace(dec2=dec2, rd_acc=rd_acc, win_sel=win_sel_q)

    def _handshake(self, m: Module, sh: SimpleNamespace, ca: SimpleNamespace, cw: SimpleNamespace,
                   rd: SimpleNamespace | None, win_sel, win_start, win_s) -> None:
        """The bus handshake: which request is accepted and what it starts; the read answers."""
        bus, reg_valid, reg_data, reg_err = self.bus, sh.reg_valid, sh.reg_data, sh.reg_err
        core_acc = Signal()
        m.d.comb += core_acc.eq(Cat(*[c.valid & c.ready for c in ca.core_bus]).any())
        chip_reg = bus.addr[:12]
        accepting = ca.bus_valid & sh.ctrl_idle & ~ca.rd_pending & ~reg_valid & ~win_s.any()
        if self.mem_pipe:
            accepting = accepting & ~(ca.slice_busy & ~ca.is_core) & ~cw.ack_busy
        with m.If(accepting):
            with m.If(ca.is_core & ((bus.op == BusOp.WRITE) | (bus.op == BusOp.READ))):
                with m.If(~ca.core_ok):
                    m.d.comb += bus.ready.eq(1)
                    with m.If(bus.op == BusOp.WRITE):
                        m.d.comb += bus.error.eq(1)
                    with m.Else():
                        m.d.sync += [reg_valid.eq(1), reg_err.eq(1)]
                with m.Elif(core_acc):
                    m.d.comb += bus.ready.eq(1)
                    with m.If(bus.op == BusOp.READ):
                        m.d.sync += [ca.rd_pending.eq(1), ca.rd_core.eq(ca.core_sel), ca.rd_chunk.eq(ca.chunk),
                                     ca.rd_mem.eq(ca.mem_sel)]
            with m.Elif(bus.op == BusOp.RUN):
                m.d.comb += bus.ready.eq(1)
                with m.If(bus.w_data == 0):
                    m.d.sync += [reg_valid.eq(1), reg_data.eq(sh.steps)]
                with m.Else():
                    m.d.comb += sh.go_run.eq(1)
            with m.Elif(bus.op == BusOp.RESET):
                m.d.comb += [bus.ready.eq(1), sh.go_clear.eq(1)]
                m.d.comb += sh.flush.eq(1)
            with m.Elif(bus.op == BusOp.WRITE):  # chip register write
                m.d.comb += bus.ready.eq(1)
                if self.mem_pipe:  # made from the registers above
                    m.d.sync += [cw.reg.eq(chip_reg), cw.data.eq(bus.w_data)]
                self._chip_reg_write(m, sh, cw, chip_reg, bus.w_data)
                with m.If(bus.addr[12:] != 0):
                    m.d.comb += bus.error.eq(1)
            with m.Else():  # chip register read
                if self.mem_pipe:
                    # answered from the value read a clock earlier (``rd_val`` above): the request
                    # has been decoded for two clocks, the chip idle for one
                    with m.If(rd.dec2):
                        m.d.comb += bus.ready.eq(1)
                        with m.If(win_sel):
                            m.d.comb += win_start.eq(1)
                        with m.Else():
                            m.d.sync += rd.rd_acc.eq(1)
                else:
                    m.d.comb += bus.ready.eq(1)
                    with m.If(win_sel):
                        m.d.comb += win_start.eq(1)
                    with m.Else():
                        m.d.sync += reg_valid.eq(1)
                        self._chip_reg_read(m, sh, chip_reg, reg_data, reg_err)

        m.d.comb += [bus.r_valid.eq(reg_valid | (ca.rd_pending & ca.rsp_valid)),
                     bus.r_data.eq(Mux(ca.rd_pending, ca.rsp_sel, reg_data))]
        with m.If(reg_valid & reg_err):
            m.d.comb += bus.error.eq(1)

    def _decode(self, m: Module):
        """The bus address of a core access: core, memory, the core word and the lane chunk, the lane
        mask and the write data replicated over the lanes; ``core_ok``: a core and memory that exist."""
        K, g, P, bus = self.k, self.geom, self.geom.lanes, self.bus
        is_core = bus.addr[31]
        core_sel = bus.addr[CORE_SHIFT:31]
        mem_sel = bus.addr[MEM_SHIFT:MEM_SHIFT + 4]
        idx = bus.addr[:IDX_BITS]
        known_mem = Signal()
        cshift = Signal(range(6))  # log2(P / epw)
        ebits = Signal(range(33))  # bits per element
        mems = CORE_KINDS[self.core].mem_infos
        for mid in CM.Mem:
            if mid not in mems and mid != CM.Mem.REG:
                continue
            with m.If(mem_sel == int(mid)):
                m.d.comb += known_mem.eq(1)
                if mid != CM.Mem.REG and mems[mid].lanes:
                    epw = elems_per_word(mid, P)
                    m.d.comb += [cshift.eq((P // epw).bit_length() - 1), ebits.eq(mems[mid].bits)]
        core_ok = Signal()
        # core_sel < K as an OR of equalities (LUTs; a comparator would be a carry chain on the bus decode)
        m.d.comb += core_ok.eq(known_mem & Cat(*[core_sel == k for k in range(K)]).any())
        word = Signal(IDX_BITS)
        chunk = Signal(5)
        m.d.comb += [word.eq(idx >> cshift), chunk.eq(idx & ((Const(1, 6) << cshift) - 1))]

        # element mask and replicated data per lane memory (constant shapes per mem id)
        lane_mask = Signal(P)
        wide = Signal(g.data_bits)
        m.d.comb += [lane_mask.eq((1 << P) - 1), wide.eq(bus.w_data)]
        self._lane_switch(m, mem_sel, chunk, lambda epw, nb, c: lane_mask.eq(((1 << epw) - 1) << (c * epw)),
                          lambda epw, nb: wide.eq(Cat(*([bus.w_data[:nb]] * (P // epw)))))
        return is_core, core_sel, mem_sel, core_ok, word, chunk, lane_mask, wide

    def _read_response(self, m: Module, core_rsp, rd_core, rd_mem, rd_chunk):
        """The response of core ``rd_core`` (``rsp_valid``) and the chunk of its word that the read
        asked for (``rsp_sel``)."""
        K, g = self.k, self.geom
        rsp_valid = Signal()
        rsp_word = Signal(g.data_bits)
        for k in range(K):
            with m.If(rd_core == k):
                m.d.comb += [rsp_valid.eq(core_rsp[k].valid), rsp_word.eq(core_rsp[k].payload)]
        rsp_sel = Signal(32)
        m.d.comb += rsp_sel.eq(rsp_word[:32])
        self._lane_switch(m, rd_mem, rd_chunk, lambda epw, nb, c: rsp_sel.eq(rsp_word[c * nb:(c + 1) * nb]))
        return rsp_valid, rsp_sel

    def _lane_switch(self, m: Module, mem, chunk, per_chunk, per_mem=None) -> None:
        """For lane memory ``mem`` (``epw`` elements of ``nb`` bits a bus word) and its chunk ``chunk``
        (``c``): the statements ``per_chunk(epw, nb, c)`` and ``per_mem(epw, nb)`` (combinational)."""
        P = self.geom.lanes
        for mid, info in CM.MEMS.items():
            if not info.lanes:
                continue
            epw = elems_per_word(mid, P)
            nb = epw * info.bits
            with m.If(mem == int(mid)):
                with m.Switch(chunk):
                    for c in range(P // epw):
                        with m.Case(c):
                            m.d.comb += per_chunk(epw, nb, c)
                if per_mem is not None:
                    m.d.comb += per_mem(epw, nb)

    def _out_window(self, m: Module, outmem, tail, level, reg_valid, reg_data):
        """The output window: a READ of OUT_WIN + i answers entry tail + i of the ring (OUT_EMPTY at or
        beyond the level) five clocks after it is accepted, through flops only: the offset, then the
        ring address (tail + i) and the level test, then the memory's registered read, then the answer;
        nothing is accepted meanwhile.  Reading changes nothing: a repeated READ answers the same.
        Returns the window decode, the accept strobe to drive and the stages in flight."""
        bus, W = self.bus, (self.out_fifo - 1).bit_length()
        win_sel = bus.addr[12:31] == M.ChipReg.OUT_WIN >> 12
        win_start = Signal()  # a window READ accepted this clock
        win_s = Signal(4)  # the stages in flight
        win_off = Signal(12)
        win_raddr, win_in, win_in2, win_q = Signal(W), Signal(), Signal(), Signal(32)
        rp = outmem.read_port(transparent_for=())
        m.d.sync += [win_s.eq(Cat(win_start, win_s[:3])), win_raddr.eq(tail + win_off),
                     win_in.eq(win_off < level), win_in2.eq(win_in),
                     win_q.eq(Mux(win_in2, rp.data, M.OUT_EMPTY))]
        m.d.comb += rp.addr.eq(win_raddr)
        with m.If(win_start):
            m.d.sync += win_off.eq(bus.addr[:12])
        with m.If(win_s[3]):
            m.d.sync += [reg_valid.eq(1), reg_data.eq(win_q)]
        return win_sel, win_start, win_s
