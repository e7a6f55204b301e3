"""Board top: UART pins + host link + a bus target.

:func:`board_top` wraps any component with a ``bus`` port (``In(BusSignature(w))``) -- the link
test target today, the multi-core chip later -- into a top level with two pins, ``uart_rx`` and
``uart_tx``, plus ``busy`` (used by the simulated-board harness to sleep while nothing happens;
leave it unconnected on a real board).
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect

from plasticore import protocol as P

from .bus import TestTarget
from .bus_slice import BusSlice
from .link import Link
from .uart import UARTRx, UARTTx

__all__ = ["BoardTop", "board_top", "link_test_top"]


class BoardTop(wiring.Component):
    """UART (8N1, ``clocks_per_bit``) + :class:`~plasticore.rtl.link.Link` + ``target``.

    ``target`` must have a ``bus`` member of flipped :class:`~plasticore.rtl.bus.BusSignature`
    and may have a ``busy`` output.  ``bus_slice``: a :class:`~plasticore.rtl.bus_slice.BusSlice`
    between the link and the target (every bus path starts and ends at a flop; for Fmax).  The other
    keyword arguments go to :class:`Link` (``design_id``, ``geometry``, ``caps``, ``rx_fifo_depth``,
    ``max_words``, ``clk_hz``, ...).
    """

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    busy: Out(1)

    def __init__(self, target: wiring.Component, *, clocks_per_bit: int = 8, bus_slice: bool = False,
                 **link_kwargs):
        self.target = target
        self.clocks_per_bit = clocks_per_bit
        addr_width = target.bus.addr.shape().width
        self.bus_slice = BusSlice(addr_width) if bus_slice else None
        self.link = Link(clocks_per_bit=clocks_per_bit, addr_width=addr_width, **link_kwargs)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.urx = urx = UARTRx(self.clocks_per_bit)
        m.submodules.utx = utx = UARTTx(self.clocks_per_bit)
        m.submodules.link = link = self.link
        m.submodules.target = target = self.target
        m.d.comb += [
            urx.rx.eq(self.uart_rx),
            self.uart_tx.eq(utx.tx),
            link.rx_error.eq(urx.error),
        ]
        connect(m, urx.o, link.rx)
        connect(m, link.tx, utx.i)
        if self.bus_slice is None:
            connect(m, link.bus, target.bus)
        else:
            m.submodules.bus_slice = self.bus_slice
            connect(m, link.bus, self.bus_slice.i)
            connect(m, self.bus_slice.o, target.bus)
        target_busy = getattr(target, "busy", 0)
        m.d.comb += self.busy.eq(link.busy | urx.busy | utx.busy | target_busy)
        return m


def board_top(target: wiring.Component, **kwargs) -> BoardTop:
    """The board top for ``target`` (see :class:`BoardTop`)."""
    return BoardTop(target, **kwargs)


def link_test_top(clocks_per_bit: int = 8, ram_words: int = 16384, **kwargs) -> BoardTop:
    """The link test board: :class:`~plasticore.rtl.bus.TestTarget` behind the link."""
    kwargs.setdefault("design_id", P.crc(b"plasticore-link-test-top"))
    return BoardTop(TestTarget(ram_words=ram_words), clocks_per_bit=clocks_per_bit, **kwargs)
