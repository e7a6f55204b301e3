"""Axon input buffer: the inputs ``x`` of the next step and the list of non-zero axons."""

from __future__ import annotations

import functools
import operator
from types import SimpleNamespace

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from plasticore import contract as C
from plasticore.core_map import CoreGeometry

from .layouts import NO_RW_CHECK, axon_event_layout

__all__ = ["X_BANKS", "AxonBuffer"]

#: x banks of a core with pipelined memories (``HybridCore(mem_pipe=True)``; fewer below 4 axons)
X_BANKS = 4


class AxonBuffer(wiring.Component):
    """Holds ``x`` (one 9-bit signed value per axon) and the event list of non-zero axons.

    * ``inp`` (stream of ``{axon, value}``): sets ``x[axon] := value``.  Each write takes four clocks
      (read-modify-write from a registered address, the read data registered).  The first time an
      axon becomes non-zero it is appended to the event list (a per-axon ``listed`` bit prevents
      duplicates), so the dendrite spends cycles only on non-zero inputs.  Accepted only while ``enable`` is high.
    * ``clear`` (pulse): walk the event list and zero every listed ``x`` (``count + 2`` clocks,
      ``busy`` high meanwhile), then empty the list.  Afterwards ``x`` is all zero.
    * ``count``: entries in the event list.
    * Read ports for the dendrite / LPU / host: ``x_addr``/``x_en`` -> ``x_data`` and
      ``evt_addr`` -> ``evt_data`` (synchronous, one clock latency; ``x_en`` low holds ``x_data``).

    ``x_banks`` (> 1, a power of two, at most ``a_max``): x is held in that many interleaved
    memories (axon a in word a // x_banks of bank a % x_banks; the last banks one word shorter where
    ``x_banks`` does not divide ``a_max``) and the external read takes two clocks (:attr:`x_latency`):
    each bank registers its own copy of the address (``*__dup``, kept apart on the ECP5, so no net
    fans out from one flop to every distributed RAM of x), reads, and registers its word next to it;
    ``x_data`` is the registered word of the bank that was read.  (A large core at a high clock: the
    read of a 256-word distributed RAM behind a 16:1 multiplexer was a long path.)

    ``registered_writes``: the memories' write ports are driven from registers loaded the clock
    before (a large core at a high clock: the distributed RAMs' write addresses carry no logic and
    come from flops of their own).  Every write lands a clock later; ``busy`` covers it, and the
    read-modify-write of the next input reads two clocks after it.
    """

    def __init__(self, geom: CoreGeometry, *, registered_writes: bool = False, evt_banks: int = 1,
                 x_banks: int = 1):
        self.geom = geom
        self.registered_writes = bool(registered_writes)
        if evt_banks < 1 or evt_banks & (evt_banks - 1) or geom.a_max % evt_banks:
            raise ValueError(f"evt_banks must be a power of two dividing a_max = {geom.a_max}, not {evt_banks}")
        #: the event list in this many interleaved memories (entry e in bank e % evt_banks), each
        #: read port's word registered per bank and the bank chosen after the registers: a large
        #: distributed RAM's read multiplexer is then split by a flop (Fmax)
        self.evt_banks = evt_banks
        if x_banks < 1 or x_banks & (x_banks - 1) or x_banks > geom.a_max:
            raise ValueError(f"x_banks must be a power of two of at most a_max = {geom.a_max}, not {x_banks}")
        self.x_banks = x_banks
        #: clocks from ``x_addr`` to ``x_data``
        self.x_latency = 2 if x_banks > 1 else 1
        ab = geom.axon_bits
        super().__init__({
            "inp": In(stream.Signature(axon_event_layout(geom))),
            "enable": In(1),
            "clear": In(1),
            "busy": Out(1),
            "count": Out(range(geom.a_max + 1)),
            "x_addr": In(ab),
            "x_en": In(1),
            "x_data": Out(signed(C.X_BITS)),
            "evt_addr": In(ab),
            "evt_data": Out(unsigned(ab)),
        })

    def elaborate(self, platform):
        m = Module()
        g = self.geom
        # x word: value (9 bits) + listed flag (bit 9)
        # NO_RW_CHECK: no used read meets a write of the same word: the read-modify-write reads in
        # phase1 and writes two clocks later, when no input is accepted; the clear walk and
        # the event appends never overlap; the engines read during a step, when nothing is written
        x_rmw, x_ext, x_wp = self._x_memory(m)
        e_int, e_ext, e_wp = self._event_list(m)
        # the write requests made below (``x_w`` / ``e_w``); with ``registered_writes`` they reach the
        # ports a clock later, from registers loaded only for a write (so the address copies differ
        # from ``count`` and the axon registers, and the synthesiser keeps them)
        x_w = SimpleNamespace(addr=Signal.like(x_wp.addr, name="x_waddr"), data=Signal.like(x_wp.data, name="x_wdata"),
                              en=Signal(name="x_wen"))
        e_w = SimpleNamespace(addr=Signal.like(e_wp.addr, name="e_waddr"), data=Signal.like(e_wp.data, name="e_wdata"),
                              en=Signal(name="e_wen"))
        w_pending = Signal()
        if self.registered_writes:
            for req, port in ((x_w, x_wp), (e_w, e_wp)):
                q_addr = Signal.like(port.addr, name=f"{req.addr.name}_q", reset_less=True)
                q_data = Signal.like(port.data, name=f"{req.data.name}_q", reset_less=True)
                q_en = Signal(name=f"{req.en.name}_q")
                m.d.sync += q_en.eq(req.en)
                with m.If(req.en):
                    m.d.sync += [q_addr.eq(req.addr), q_data.eq(req.data)]
                m.d.comb += [port.addr.eq(q_addr), port.data.eq(q_data), port.en.eq(q_en)]
            m.d.sync += w_pending.eq(x_w.en | e_w.en)
        else:
            for req, port in ((x_w, x_wp), (e_w, e_wp)):
                m.d.comb += [port.addr.eq(req.addr), port.data.eq(req.data), port.en.eq(req.en)]

        m.d.comb += [
            x_ext.addr.eq(self.x_addr), x_ext.en.eq(self.x_en), self.x_data.eq(x_ext.data[:C.X_BITS].as_signed()),
            e_ext.addr.eq(self.evt_addr), self.evt_data.eq(e_ext.data),
        ]

        # read-modify-write in four clocks: accept (axon and value registered) -> phase1 (read issued
        # from the registered axon: the read address never comes from the bus decode) -> phase1b (read
        # data registered: a memory output drives no logic) -> phase2 (write x, append to the event list)
        phase1 = Signal()
        phase1b = Signal()
        phase2 = Signal()
        listed = Signal()
        w_axon = Signal(g.axon_bits)
        w_value = Signal(signed(C.X_BITS))
        clearing = Signal()
        c_idx = Signal(range(g.a_max + 1))
        c_valid = Signal()  # an evt read was issued last clock
        c_valid2 = Signal()  # its data is in c_axon
        c_axon = Signal(g.axon_bits)

        m.d.comb += [
            self.inp.ready.eq(self.enable & ~phase1 & ~phase1b & ~phase2 & ~clearing),
            x_rmw.addr.eq(w_axon),
            self.busy.eq(clearing | phase1 | phase1b | phase2 | w_pending),
        ]
        # the payload is captured in every clock the buffer could accept (a valid payload is held, so
        # the accept clock captures it), not on the handshake: no enable depends on ``valid`` (Fmax)
        with m.If(~phase1 & ~phase1b & ~phase2 & ~clearing):
            m.d.sync += [w_axon.eq(self.inp.payload.axon), w_value.eq(self.inp.payload.value)]
        with m.If(self.inp.valid & self.inp.ready):
            m.d.sync += phase1.eq(1)
        with m.If(phase1):
            m.d.sync += [phase1.eq(0), phase1b.eq(1)]
        with m.If(phase1b):
            m.d.sync += [listed.eq(x_rmw.data[C.X_BITS]), phase1b.eq(0), phase2.eq(1)]
        with m.If(phase2):
            add = ~listed & (w_value != 0)
            m.d.comb += [x_w.addr.eq(w_axon), x_w.data.eq(w_value.as_unsigned() | ((listed | add) << C.X_BITS)),
                         x_w.en.eq(1)]
            with m.If(add):
                m.d.comb += [e_w.addr.eq(self.count), e_w.data.eq(w_axon), e_w.en.eq(1)]
                m.d.sync += self.count.eq(self.count + 1)
            m.d.sync += phase2.eq(0)

        # clear walk: read evt[c_idx], register the axon next clock, zero x[axon] the clock after
        with m.If(self.clear & ~clearing & ~phase1 & ~phase1b & ~phase2 & ~w_pending):
            m.d.sync += [clearing.eq(1), c_idx.eq(0), c_valid.eq(0), c_valid2.eq(0)]
        m.d.comb += e_int.addr.eq(c_idx)  # (its data is only used while clearing)
        count = self.count
        if self.registered_writes:
            # (a large core at a high clock) the walk compares against a copy of the count of its own,
            # next to it (the count itself feeds the dendrite and the register file): the count holds
            # through a step, so the copy, a clock old, is the count when a clear starts
            count = Signal.like(self.count, name="clear_count")
            m.d.sync += count.eq(self.count)
        with m.If(clearing):
            m.d.sync += [c_valid.eq(c_idx < count), c_valid2.eq(c_valid), c_axon.eq(e_int.data)]
            with m.If(c_idx < count):
                m.d.sync += c_idx.eq(c_idx + 1)
            with m.If(c_valid2):
                m.d.comb += [x_w.addr.eq(c_axon), x_w.data.eq(0), x_w.en.eq(1)]
            with m.Elif(~c_valid & (c_idx == count)):
                m.d.sync += [clearing.eq(0), self.count.eq(0)]
        return m

    def _x_memory(self, m):
        """The x memory's read ports (read-modify-write; external, with its enable) and write port: one
        memory, or ``x_banks`` interleaved ones (the module docstring: the external read in two
        registered stages per bank, the read-modify-write read's word chosen behind the banks)."""
        g, nb = self.geom, self.x_banks
        xw = C.X_BITS + 1
        if nb == 1:
            m.submodules.xmem = xmem = memory.Memory(shape=unsigned(xw), depth=g.a_max, init=[], attrs=NO_RW_CHECK)
            return xmem.read_port(transparent_for=()), xmem.read_port(transparent_for=()), xmem.write_port()
        ab, bb = g.axon_bits, nb.bit_length() - 1
        rd_rmw = SimpleNamespace(addr=Signal(ab, name="x_rmw_addr"), data=Signal(xw, name="x_rmw_data"))
        rd_ext = SimpleNamespace(addr=Signal(ab, name="x_ext_addr"), en=Signal(name="x_ext_en"),
                                 data=Signal(xw, name="x_ext_data"))
        wr = SimpleNamespace(addr=Signal(ab, name="x_wp_addr"), data=Signal(xw, name="x_wp_data"),
                             en=Signal(name="x_wp_en"))
        rmw_sel = Signal(bb, name="x_rmw_bank")
        m.d.sync += rmw_sel.eq(rd_rmw.addr[:bb])  # the bank of the word the port returns next clock
        # the external read: its bank index follows the words through both stages (held with them)
        ext_sel1, ext_sel2 = Signal(bb, name="x_ext_bank1"), Signal(bb, name="x_ext_bank2")
        en1 = Signal(name="x_ext_en1")
        m.d.sync += en1.eq(rd_ext.en)
        with m.If(rd_ext.en):
            m.d.sync += ext_sel1.eq(rd_ext.addr[:bb])
        with m.If(en1):
            m.d.sync += ext_sel2.eq(ext_sel1)
        rmw_words, ext_words = [], []
        for b in range(nb):
            depth = len(range(b, g.a_max, nb))  # axons b, b + nb, ...
            mem = m.submodules[f"xmem{b}"] = memory.Memory(shape=unsigned(xw), depth=depth, init=[],
                                                           attrs=NO_RW_CHECK)
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(wr.addr[bb:]), wp.data.eq(wr.data), wp.en.eq(wr.en & (wr.addr[:bb] == b))]
            rp = mem.read_port(transparent_for=())
            m.d.comb += rp.addr.eq(rd_rmw.addr[bb:])
            rmw_words.append(Mux(rmw_sel == b, rp.data, 0))
            # external: the bank's copy of the address (loaded every clock; ``__dup``: kept apart from
            # the other banks' copies), an asynchronous read, the word registered next to the bank
            b_addr = Signal.like(rp.addr, name=f"x_b{b}_addr__dup", reset_less=True)
            m.d.sync += b_addr.eq(rd_ext.addr[bb:])
            ep = mem.read_port(domain="comb")
            m.d.comb += ep.addr.eq(b_addr)
            c_word = Signal(xw, name=f"x_c{b}_data", reset_less=True)
            with m.If(en1):
                m.d.sync += c_word.eq(ep.data)
            ext_words.append(Mux(ext_sel2 == b, c_word, 0))
        m.d.comb += [rd_rmw.data.eq(functools.reduce(operator.or_, rmw_words)),
                     rd_ext.data.eq(functools.reduce(operator.or_, ext_words))]
        return rd_rmw, rd_ext, wr

    def _event_list(self, m):
        """The event list's read ports (internal, external) and write port: one memory, or
        ``evt_banks`` interleaved ones behind ports of the same behaviour (synchronous reads)."""
        g, nb = self.geom, self.evt_banks
        ab = g.axon_bits
        if nb == 1:
            m.submodules.evt = evt = memory.Memory(shape=unsigned(ab), depth=g.a_max, init=[], attrs=NO_RW_CHECK)
            return evt.read_port(transparent_for=()), evt.read_port(transparent_for=()), evt.write_port()
        bb = nb.bit_length() - 1
        rd_int = SimpleNamespace(addr=Signal(ab, name="e_int_addr"), data=Signal(ab, name="e_int_data"))
        rd_ext = SimpleNamespace(addr=Signal(ab, name="e_ext_addr"), data=Signal(ab, name="e_ext_data"))
        wr = SimpleNamespace(addr=Signal(ab, name="e_wp_addr"), data=Signal(ab, name="e_wp_data"),
                             en=Signal(name="e_wp_en"))
        for rd in (rd_int, rd_ext):
            sel = Signal(bb, name=f"{rd.addr.name}_bank")
            m.d.sync += sel.eq(rd.addr[:bb])  # the bank of the word the ports return next clock
            rd.sel, rd.words = sel, []
        for b in range(nb):
            mem = m.submodules[f"evt{b}"] = memory.Memory(shape=unsigned(ab), depth=g.a_max // nb, init=[],
                                                          attrs=NO_RW_CHECK)
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(wr.addr[bb:]), wp.data.eq(wr.data), wp.en.eq(wr.en & (wr.addr[:bb] == b))]
            for rd in (rd_int, rd_ext):
                rp = mem.read_port(transparent_for=())
                m.d.comb += rp.addr.eq(rd.addr[bb:])
                rd.words.append(Mux(rd.sel == b, rp.data, 0))
        for rd in (rd_int, rd_ext):
            m.d.comb += rd.data.eq(functools.reduce(operator.or_, rd.words))
        return rd_int, rd_ext, wr
