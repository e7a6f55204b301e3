"""StreamSlice: a two-entry register slice (skid buffer) on a ``lib.stream``."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamSlice", "stage"]


class StreamSlice(wiring.Component):
    """``i`` -> ``o`` with every output a flop: ``o.valid`` / ``o.payload`` and ``i.ready`` (the empty
    skid entry) are registers, so no combinational path crosses the slice in either direction.

    One transfer per clock in steady state; a packet taken while ``o`` is stalled waits in the skid
    entry and goes out next (order kept).  ``o.valid`` never depends on ``o.ready``, and a presented
    packet holds until it is transferred (the stream rules).
    """

    def __init__(self, shape):
        self.shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal()
        skid = Signal(self.shape, name="skid")
        out_valid = Signal()
        out = Signal(self.shape, name="out")
        m.d.comb += [self.i.ready.eq(~skid_valid), self.o.valid.eq(out_valid), self.o.payload.eq(out)]
        take = self.i.valid & ~skid_valid
        # the payload registers load whenever their entry may (their enables come from the slice's own
        # flops and ``o.ready``, not from ``i.valid``: wide payloads fan the enable out); what they take
        # without a transfer is never presented, since the valid bits only follow transfers
        free = ~out_valid | self.o.ready  # the output entry is free next clock
        with m.If(free):
            m.d.sync += [out.eq(Mux(skid_valid, skid, self.i.payload)), out_valid.eq(skid_valid | take),
                         skid_valid.eq(0)]
        with m.Elif(take):
            m.d.sync += skid_valid.eq(1)
        with m.If(~skid_valid):
            m.d.sync += skid.eq(self.i.payload)
        return m


def stage(m: Module, value, registered: bool, name: str, reset_less: bool = False):
    """``value`` through a flip-flop (``registered``: one clock later), or ``value`` itself: the
    registered / combinational variants of a fast and a small build, as one call."""
    if not registered:
        return value
    q = Signal(Value.cast(value).shape(), name=name, reset_less=reset_less)
    m.d.sync += q.eq(value)
    return q
