"""Network interface of a core: its non-zero outputs -> multicast spike packets.

Each output event ``(neuron j, value)`` of the core becomes one packet per routing entry, in entry
order, ``(e.x, e.y, e.to_host, index = e.base + j, value)`` (``plasticore.chip_map``).  Entries are
packed from 0; the first invalid entry ends the list.  One packet per clock.

The routing table lives here, one register per entry, written through ``table_we`` /
``table_addr`` / ``table_data`` (the chip's ``ROUTE_BASE`` registers).  Keeping each entry a
separate register (instead of slices of one wide register driven from outside) also avoids a
multiply-driven net that Yosys 0.70 ``synth_ecp5`` produced for the 128x128 P=8 chip.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from plasticore import chip_map as M
from plasticore import contract as C
from plasticore.core_map import CoreGeometry

from .layouts import spike_event_layout
from .router import packet_layout

__all__ = ["NetIf", "route_entry_layout"]


def route_entry_layout() -> data.StructLayout:
    """Bit layout of :meth:`chip_map.RouteEntry.pack`."""
    return data.StructLayout({"valid": 1, "to_host": 1, "x": M.COORD_BITS, "y": M.COORD_BITS,
                              "base": M.INDEX_BITS})


class NetIf(wiring.Component):
    """``dests`` (1 .. MAX_DESTS) table entries are built; a chip with few cores needs fewer than
    MAX_DESTS (the chip refuses a valid entry beyond them, invalid ones are ignored).

    ``registered`` (a large chip at a high clock): the entry the next packet uses is looked up a clock
    ahead into flops (the same packets, in the same clocks), so no table multiplexer sits between the
    entry counter and the packet.  The table is written only while the chip is idle, clocks before
    a core emits."""

    def __init__(self, geom: CoreGeometry, dests: int = M.MAX_DESTS, *, registered: bool = False):
        if not 1 <= dests <= M.MAX_DESTS:
            raise ValueError(f"dests must be 1..{M.MAX_DESTS}, got {dests}")
        self.geom = geom
        self.dests = dests
        self.registered = bool(registered)
        super().__init__({
            "spikes": In(stream.Signature(spike_event_layout(geom))),
            "packets": Out(stream.Signature(packet_layout())),
            "table_we": In(1),
            "table_addr": In(range(M.MAX_DESTS)),
            "table_data": In(route_entry_layout()),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        neuron = Signal(M.INDEX_BITS)
        value = Signal(signed(C.X_BITS))
        D = self.dests
        e = Signal(range(max(D, 2)))
        table = Array(Signal(route_entry_layout(), name=f"entry{k}") for k in range(D))
        with m.If(self.table_we & (self.table_addr < D)):
            m.d.sync += table[self.table_addr].eq(self.table_data)
        entry = Signal(route_entry_layout())
        pk = self.packets.payload
        m.d.comb += [pk.x.eq(entry.x), pk.y.eq(entry.y), pk.to_host.eq(entry.to_host),
                     pk.index.eq(entry.base + neuron), pk.value.eq(value)]
        accept = Signal()  # a spike taken (entry 0 next)
        advance = Signal()  # a packet sent (entry e + 1 next)
        if self.registered:
            # the entry is a flop: entry 0 on a spike, entry e + 1 (from a flop of its own) after a
            # packet; the table is static while the chip runs, so only the final choice depends on
            # the handshakes
            e1 = Signal.like(e, name="e_plus1")
            with m.If(accept):
                m.d.sync += [entry.eq(table[0]), e1.eq(1)]
            with m.Elif(advance):
                m.d.sync += [entry.eq(table[e1]), e1.eq(e1 + 1)]
        else:
            m.d.comb += entry.eq(table[e])
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.spikes.ready.eq(1)
                with m.If(self.spikes.valid):
                    m.d.comb += accept.eq(1)
                    m.d.sync += [neuron.eq(self.spikes.payload.neuron), value.eq(self.spikes.payload.value),
                                 e.eq(0)]
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += self.busy.eq(1)
                with m.If(~entry.valid):
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.packets.valid.eq(1)
                    with m.If(self.packets.ready):
                        m.d.comb += advance.eq(1)
                        m.d.sync += e.eq(e + 1)
                        if D > 1:
                            with m.If(e == D - 1):
                                m.next = "IDLE"
                        else:
                            m.next = "IDLE"
        return m
