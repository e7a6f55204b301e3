"""Dendrite: event-driven integration of one neuron group (P lanes) per pass."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from plasticore import contract as C
from plasticore.core_map import CoreGeometry

from .multiplier import MULTIPLIER_LATENCY, PipelinedMultiplier
from .pipelined_ram import delayed

__all__ = ["Dendrite", "DENDRITE_LATENCY"]

#: clocks from the last event issue to ``acc_valid`` (evt read, evt data register, axon + synapse
#: address register, synapse read, read-data register, operand register, product register (both in a
#: PipelinedMultiplier: inside the DSP block on the ECP5), product relay, accumulate)
DENDRITE_LATENCY = 9


class Dendrite(wiring.Component):
    """Accumulates ``accW_j = sum_i x_i W_ij`` and ``accH_j = sum_i x_i H_ij m_ij`` for the P neurons
    of one group, visiting only the axons of the event list (zero inputs cost no clocks).

    ``start`` (pulse, with ``gbase`` = word address of the group's first row and ``n_events``)
    clears the accumulators and issues one event per clock: ``evt_addr = e`` -> (next clock) axon
    ``a`` registered -> registered ``x_addr = a``, ``syn_addr = gbase + a`` -> (next clock) read data registered
    (memory outputs drive no logic) -> (next clock) products of the P lanes -> (next clock) accumulate.
    ``gbase`` must be stable from the clock after ``start`` to the end of the pass.  ``acc_valid``
    rises ``n_events + DENDRITE_LATENCY`` clocks after ``start`` and stays high (accumulators held)
    until the next ``start``.  Graded inputs use the
    same path: the lane products are full 9 x 8 and 9 x 16 bit multiplies (MAC), exact widths.

    ``mem_delay``: the synapse memories return their data that many clocks later than a plain
    memory (pipelined memories); the pass waits for it (``acc_valid`` ``mem_delay`` clocks later) and
    the axon value ``x`` (from the axon buffer, a plain memory) is delayed to match.

    ``reset_less``: the data registers of the pipeline (not its valid bits, not the accumulators) are
    built without reset (what they hold is only used under a valid bit, so a reset cannot tell).
    """

    def __init__(self, geom: CoreGeometry, mem_delay: int = 0, reset_less: bool = False, x_delay: int = 0):
        self.geom = geom
        self.mem_delay = mem_delay
        #: clocks ``x_data`` comes later than from a plain memory (the core registers its address with
        #: pipelined memories); x is delayed by the rest of ``mem_delay``
        self.x_delay = x_delay
        self.reset_less = reset_less
        self.latency = DENDRITE_LATENCY + mem_delay
        P = geom.lanes
        self.aw_bits = C.acc_w_bits(geom.a_max)
        self.ah_bits = C.acc_h_bits(geom.a_max)
        super().__init__({
            "start": In(1),
            "gbase": In(geom.addr_bits),
            "n_events": In(range(geom.a_max + 1)),
            "busy": Out(1),
            "acc_valid": Out(1),
            "evt_addr": Out(geom.axon_bits),
            "evt_data": In(geom.axon_bits),
            "x_addr": Out(geom.axon_bits),
            "x_data": In(signed(C.X_BITS)),
            "syn_addr": Out(geom.addr_bits),
            "w_data": In(data.ArrayLayout(signed(C.W_BITS), P)),
            "h_data": In(data.ArrayLayout(signed(C.H_BITS), P)),
            "m_data": In(unsigned(P)),
            "acc_w": Out(data.ArrayLayout(signed(self.aw_bits), P)),
            "acc_h": Out(data.ArrayLayout(signed(self.ah_bits), P)),
        })

    def elaborate(self, platform):
        m = Module()
        P = self.geom.lanes
        e = Signal(range(self.geom.a_max + 1))
        issuing = Signal()
        v1 = Signal()
        v1a = Signal()
        rl = self.reset_less
        ev = Signal(self.geom.axon_bits, reset_less=rl)
        v1b = Signal()
        ax = Signal(self.geom.axon_bits, reset_less=rl)
        syn = Signal(self.geom.addr_bits, reset_less=rl)
        v1c = Signal()
        xd = Signal(signed(C.X_BITS), reset_less=rl)
        wd = Signal(data.ArrayLayout(signed(C.W_BITS), P), reset_less=rl)
        hd = Signal(data.ArrayLayout(signed(C.H_BITS), P), reset_less=rl)
        v2 = Signal()
        v2x = Signal()
        v3 = Signal()
        v3x = Signal()
        pw2 = Signal(data.ArrayLayout(signed(C.X_BITS + C.W_BITS), P), reset_less=rl)
        ph2 = Signal(data.ArrayLayout(signed(C.X_BITS + C.H_BITS), P), reset_less=rl)

        # the reads in flight in a pipelined memory (``mem_delay`` clocks after 1b)
        v1b_k, vwait = delayed(m, v1b, self.mem_delay, "v1b", reset_less=False)
        busy = issuing | v1 | v1a | v1b | v1c | v2 | v2x | v3 | v3x
        for v in vwait:
            busy = busy | v
        m.d.comb += self.busy.eq(busy)
        # stage 0: issue event reads
        m.d.comb += self.evt_addr.eq(e)
        # the accumulators clear one clock after ``start`` (from a register: the clear fans out to
        # every accumulator bit, and ``start`` is combinational in the sequencer); they still hold
        # the last pass in the ``start`` clock, when the soma loads them, and the first product of
        # the new pass arrives clocks later
        clr = Signal()
        m.d.sync += clr.eq(self.start)
        with m.If(self.start):
            m.d.sync += [e.eq(0), issuing.eq(self.n_events != 0), self.acc_valid.eq(0)]
        with m.Elif(issuing):
            m.d.sync += e.eq(e + 1)
            with m.If(e + 1 == self.n_events):
                m.d.sync += issuing.eq(0)
        m.d.sync += [v1.eq(issuing & ~self.start), v1a.eq(v1), v1b.eq(v1a), v1c.eq(v1b_k), v2.eq(v1c), v2x.eq(v2),
                     v3.eq(v2x), v3x.eq(v3)]
        # stage 1: event data (the axon index) registered; stage 1a: the x and synapse addresses are
        # registered, so the memory address inputs are driven from flops
        m.d.sync += [ev.eq(self.evt_data), ax.eq(ev), syn.eq(self.gbase + ev)]
        # stage 1b: read x and the synapse word of this group
        m.d.comb += [self.x_addr.eq(ax), self.syn_addr.eq(syn)]
        # stage 1c: register the read data next to the memories (routing from the BRAMs gets a clock)
        x_k, _ = delayed(m, self.x_data, self.mem_delay - self.x_delay, "x")
        # (the mask applies here: x * (m ? H : 0) = (m ? x * H : 0))
        capture = [xd.eq(x_k), wd.eq(self.w_data)]
        capture += [hd[k].eq(Mux(self.m_data[k], self.h_data[k], 0)) for k in range(P)]
        if self.mem_delay:
            # pipelined memories register their data next to the block RAMs already; these copies
            # then only feed the dendrite's multipliers, and are taken under the stage's valid bit so
            # that Yosys does not merge them with the LPU's identical copies of x and H (one register
            # feeding both engines' DSPs, placed far apart)
            with m.If(v1c):  # (the data cycle of stage 1c)
                m.d.sync += capture
        else:
            m.d.sync += capture
        # stage 2x: the multiplier operands registered; stage 2: the lane products registered (both
        # inside the DSP blocks on the ECP5, rtl/multiplier.py); every clock, qualified by v3x below
        assert MULTIPLIER_LATENCY == 2
        for k in range(P):
            mw = m.submodules[f"mul_w{k}"] = PipelinedMultiplier(C.X_BITS, C.W_BITS)
            mh = m.submodules[f"mul_h{k}"] = PipelinedMultiplier(C.X_BITS, C.H_BITS)
            m.d.comb += [mw.a.eq(xd), mw.b.eq(wd[k]), mh.a.eq(xd), mh.b.eq(hd[k])]
            # stage 3x: the products relayed (a register out of the DSP block)
            m.d.sync += [pw2[k].eq(mw.p), ph2[k].eq(mh.p)]
        # stage 3: accumulate
        with m.If(clr):
            m.d.sync += [self.acc_w[k].eq(0) for k in range(P)] + [self.acc_h[k].eq(0) for k in range(P)]
        with m.Elif(v3x):  # (``start`` only comes after a finished pass, never with v3x: no ``start`` term)
            for k in range(P):
                m.d.sync += [self.acc_w[k].eq(self.acc_w[k] + pw2[k]), self.acc_h[k].eq(self.acc_h[k] + ph2[k])]
        done = ~self.start & ~issuing & ~v1 & ~v1a & ~v1b & ~v1c & ~v2 & ~v2x & ~v3 & ~v3x & ~self.acc_valid
        for v in vwait:
            done = done & ~v
        with m.If(done & self._armed(m)):
            m.d.sync += self.acc_valid.eq(1)
        return m

    def _armed(self, m):
        """High between a ``start`` and the following ``acc_valid``."""
        armed = Signal()
        with m.If(self.start):
            m.d.sync += armed.eq(1)
        with m.Elif(self.acc_valid):
            m.d.sync += armed.eq(0)
        return armed
