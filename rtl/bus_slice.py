"""BusSlice: a register slice on the memory-mapped bus, so no path crosses from the link into the target."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .bus import BusOp, BusSignature

__all__ = ["BusSlice"]


class BusSlice(wiring.Component):
    """Registers every signal of a :class:`~plasticore.rtl.bus.BusSignature` in both directions.

    ``i`` faces the initiator (the link), ``o`` the target (the chip).  A request is captured into
    a register, presented to the target from that register, and the target's ``ready`` / ``error``
    are registered before they reach the initiator; ``r_valid`` / ``r_data`` / ``error`` of a READ or
    RUN completion are registered as well.  Every path between the two sides therefore starts and
    ends at a flop of this block (the link's frame buffer never waits on the chip's address decode).

    The initiator holds ``valid`` until ``ready`` (the bus rule), so ``i.ready`` comes two clocks
    after the target accepted the registered copy; one request per three clocks at most, far above
    any serial line's rate.  The bus rules hold on both sides: one READ/RUN outstanding, ``valid``
    never depends on ``ready``, every completion in order.
    """

    def __init__(self, addr_width: int = 32):
        super().__init__({"i": In(BusSignature(addr_width)), "o": Out(BusSignature(addr_width))})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        held = Signal()  # the request register holds a request the target has not accepted yet
        acked = Signal()  # the target accepted it: i.ready (with i.error) this clock
        ack_err = Signal()
        m.d.comb += o.valid.eq(held)
        with m.If(~held & ~acked & i.valid):
            m.d.sync += [held.eq(1), o.op.eq(i.op), o.addr.eq(i.addr), o.w_data.eq(i.w_data)]
        with m.If(held & o.ready):
            writes = (o.op == BusOp.WRITE) | (o.op == BusOp.RESET)  # their error comes with ready
            m.d.sync += [held.eq(0), acked.eq(1), ack_err.eq(o.error & writes)]
        with m.If(acked):
            m.d.sync += acked.eq(0)
        # completions of READ / RUN (their error comes with r_valid)
        r_valid = Signal()
        r_err = Signal()
        m.d.sync += [r_valid.eq(o.r_valid), r_err.eq(o.r_valid & o.error)]
        with m.If(o.r_valid):
            m.d.sync += i.r_data.eq(o.r_data)
        m.d.comb += [i.ready.eq(acked), i.r_valid.eq(r_valid), i.error.eq((acked & ack_err) | (r_valid & r_err))]
        return m
