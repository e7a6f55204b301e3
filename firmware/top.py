"""``BoardTop``: the board-level wrapper around whatever design the firmware builds.

The board top owns everything that is board-specific (clock input, PLL, power-on and button reset,
UART pins, status LEDs) and instantiates the design returned by a *design factory*::

    design = design_factory(design_id=..., clk_hz=..., baud=..., **config)

Design contract (what a factory must return): an ``Elaboratable`` in the ``sync`` domain with

* ``uart_rx`` (input, 1 bit, idle high; already synchronised to ``sync`` by the board top) and
  ``uart_tx`` (output, 1 bit, idle high) -- or ``rx``/``tx``, or a ``uart`` member with ``rx``/``tx``;
* optionally ``status`` (output, any width): its low bits drive the LEDs after the two board LEDs
  (heartbeat, UART activity).

``design_id`` is the 32-bit ID of the build configuration (:mod:`plasticore.firmware.design_id`); the
design returns it in the protocol's identify reply.  ``clk_hz`` is the frequency of ``sync``, ``baud``
the UART rate (``clocks_per_bit = round(clk_hz / baud)``).
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer, ResetSynchronizer

from .boards import Board, get_board
from .clocks import ECP5PLL, ICE40PLL, ecp5_pll_params, ice40_pll_params
from .errors import FirmwareError

__all__ = ["BoardTop", "design_uart_ports"]

#: iCE40 block RAM reads garbage for ~3 us after configuration: hold reset this long (and on ECP5 too).
POR_SECONDS = 20e-6


def design_uart_ports(design):
    """``(rx, tx)`` signals of a design (see the module docstring for the accepted names)."""
    for rx_name, tx_name in (("uart_rx", "uart_tx"), ("rx", "tx")):
        rx, tx = getattr(design, rx_name, None), getattr(design, tx_name, None)
        if rx is not None and tx is not None:
            return rx, tx
    uart = getattr(design, "uart", None)
    if uart is not None and getattr(uart, "rx", None) is not None and getattr(uart, "tx", None) is not None:
        return uart.rx, uart.tx
    raise FirmwareError(f"design {type(design).__name__} has no UART ports: it must expose uart_rx/uart_tx "
                        "(or rx/tx, or uart.rx/uart.tx) -- see plasticore.firmware.top")


class BoardTop(Elaboratable):
    """Board wrapper: clock/PLL, reset, UART pins, LEDs around ``design_factory(...)``.

    LEDs: ``leds[0]`` heartbeat (~1 Hz: the design clock runs and reset is released),
    ``leds[1]`` UART activity (rx or tx, stretched), ``leds[2:]`` the design's ``status`` bits.
    """

    def __init__(self, board: Board | str, design_factory, *, design_id: int, clk_hz: int | None = None,
                 baud: int | None = None, config: dict | None = None):
        self.board = get_board(board)
        self.design_factory = design_factory
        self.design_id = int(design_id) & 0xFFFF_FFFF
        self.clk_hz = int(clk_hz or self.board.clk_hz)
        self.baud = int(baud or self.board.baud)
        self.config = dict(config or {})
        self.design = None  #: the design instance (after elaboration)

    # -- clock and reset ------------------------------------------------------------------------
    def _clocks(self, m: Module, platform):
        b = self.board
        m.domains.sync = cd_sync = ClockDomain("sync", async_reset=False)
        m.domains.por = cd_por = ClockDomain("por", reset_less=True, local=True)
        locked = Signal(init=1)
        if self.clk_hz == b.clk_in_hz:
            clk_buf = io.Buffer("i", platform.request(b.clk_resource, dir="-"))
            m.submodules.clk_buf = clk_buf
            m.d.comb += [cd_sync.clk.eq(clk_buf.i), cd_por.clk.eq(clk_buf.i)]
        elif b.family == "ecp5":
            pll = ECP5PLL(ecp5_pll_params(b.clk_in_hz, self.clk_hz))
            clk_buf = io.Buffer("i", platform.request(b.clk_resource, dir="-"))
            m.submodules.clk_buf = clk_buf
            m.submodules.pll = pll
            m.d.comb += [pll.clk_in.eq(clk_buf.i), cd_sync.clk.eq(pll.clk_out), cd_por.clk.eq(clk_buf.i),
                         locked.eq(pll.locked)]
            platform.add_clock_constraint(cd_sync.clk, self.clk_hz)
        elif b.family == "ice40":
            params = ice40_pll_params(b.clk_in_hz, self.clk_hz)
            if b.pll_input_pad:
                pad = platform.request(b.clk_resource, dir="-")
                pll = ICE40PLL(params, pad=pad.io)
            else:
                clk_buf = io.Buffer("i", platform.request(b.clk_resource, dir="-"))
                m.submodules.clk_buf = clk_buf
                pll = ICE40PLL(params)
                m.d.comb += pll.clk_in.eq(clk_buf.i)
            m.submodules.pll = pll
            m.d.comb += [cd_sync.clk.eq(pll.clk_out), cd_por.clk.eq(pll.clk_out), locked.eq(pll.locked)]
            platform.add_clock_constraint(cd_sync.clk, self.clk_hz)
        else:  # pragma: no cover - Board entries are checked by tests
            raise FirmwareError(f"board {b.name}: no PLL support for family {b.family!r}")

        # power-on delay in the por domain (no reset; FFs start at 0), then button/PLL-lock reset
        delay = max(1, int(POR_SECONDS * b.clk_in_hz))
        timer = Signal(range(delay + 1))
        por_done = Signal()
        with m.If(timer == delay):
            m.d.por += por_done.eq(1)
        with m.Else():
            m.d.por += timer.eq(timer + 1)
        button = Signal()
        if b.reset is not None:
            m.submodules.btn_buf = btn = io.Buffer("i", platform.request(*b.reset, dir="-"))
            m.submodules.btn_sync = FFSynchronizer(btn.i, button, o_domain="por")
        arst = ~por_done | ~locked | button
        if b.family == "ecp5":
            # The sync reset reaches nearly every flip-flop. On fabric routing it was the slowest net of
            # the 2x1 chip at 100 MHz (12.7 ns, POR -> link counters); a DCCA puts it on a global
            # network, which reaches every LSR pin of the die directly. The synchroniser runs in a
            # local domain on the same clock, so the reset is still released synchronously to sync.
            m.domains.rst_gen = ClockDomain("rst_gen", local=True)
            m.d.comb += ClockSignal("rst_gen").eq(cd_sync.clk)
            m.submodules.rst_sync = ResetSynchronizer(arst, domain="rst_gen")
            m.submodules.rst_buf = Instance("DCCA", i_CLKI=ResetSignal("rst_gen"), i_CE=1, o_CLKO=cd_sync.rst)
        else:
            m.submodules.rst_sync = ResetSynchronizer(arst, domain="sync")

    # -- elaboration ----------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        b = self.board
        self._clocks(m, platform)

        design = self.design_factory(design_id=self.design_id, clk_hz=self.clk_hz, baud=self.baud, **self.config)
        self.design = design
        m.submodules.design = design
        d_rx, d_tx = design_uart_ports(design)

        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_buf = tx_buf = io.Buffer("o", uart.tx)
        rx = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(rx_buf.i, rx, init=1)
        m.d.comb += [d_rx.eq(rx), tx_buf.o.eq(d_tx)]

        # LEDs: heartbeat, UART activity (stretched ~50 ms), status bits
        hb_bits = max(1, (self.clk_hz - 1).bit_length())  # MSB of a counter toggles at ~1 Hz or less
        heartbeat = Signal(hb_bits)
        m.d.sync += heartbeat.eq(heartbeat + 1)
        stretch = max(1, self.clk_hz // 20)
        act = Signal(range(stretch + 1))
        with m.If(~rx | ~d_tx):
            m.d.sync += act.eq(stretch)
        with m.Elif(act != 0):
            m.d.sync += act.eq(act - 1)
        status = getattr(design, "status", None)
        values = [heartbeat[-1], act != 0]
        if status is not None:
            values += [status[i] for i in range(len(status))]
        for i, res in enumerate(b.leds):
            if i >= len(values):
                break
            led = io.Buffer("o", platform.request(*res, dir="-"))
            m.submodules[f"led_buf_{i}"] = led
            m.d.comb += led.o.eq(values[i])
        return m
