"""The designs a board top can carry, and the one place that chooses between them.

A *design* is a factory ``f(*, design_id, clk_hz, baud, **params) -> Elaboratable`` (contract in
:mod:`plasticore.firmware.top`) plus default ``params`` per board.  :data:`AUTO_ORDER` is the
single place that decides which design ``plasticore build`` uses by default: the first one that the
installed tree provides.

* ``chip``: the multi-core chip (``plasticore.rtl.chip.Chip``) behind the UART command link
  (``plasticore.rtl.board.board_top``); params ``mesh_x, mesh_y, a_max, n_max, lanes`` sized per
  board in :data:`CHIP_DEFAULTS`.
* ``link``: the link test top (``plasticore.rtl.board.link_test_top``: UART + framing + command
  link + a RAM/register test target); param ``ram_words``.
* ``echo``: a UART echo (built in, always available): clock, reset, pins and the serial path.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from amaranth.hdl import Module, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from .boards import Board, get_board
from .errors import FirmwareError

__all__ = ["AUTO_ORDER", "CHIP_DEFAULTS", "DESIGNS", "Design", "UartEcho", "clocks_per_bit", "default_design",
           "get_design"]


@dataclass(frozen=True)
class Design:
    name: str
    description: str
    #: modules (and the attribute in each) the design needs; empty: built into the firmware layer
    requires: tuple[tuple[str, str], ...]
    #: the factory ``f(*, design_id, clk_hz, baud, **params)``
    make: Callable
    #: board name -> default params; boards not listed use {}
    defaults: dict | None = None
    #: board name -> default design clock in Hz when it differs from the board's (``Board.clk_hz``)
    clocks: dict | None = None

    def available(self) -> bool:
        for module, attr in self.requires:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as e:
                if e.name and module.startswith(e.name):
                    return False
                raise
            if not hasattr(mod, attr):
                return False
        return True

    def sized_for(self, board: Board | str) -> bool:
        """True when this design has a size for ``board`` (designs without per-board sizes fit every board)."""
        return self.defaults is None or get_board(board).name in self.defaults

    def factory(self) -> Callable:
        if not self.available():
            need = ", ".join(f"{m}.{a}" for m, a in self.requires)
            raise FirmwareError(f"design {self.name!r} is not available in this tree (needs {need})")
        return self.make

    def default_config(self, board: Board | str) -> dict:
        return dict((self.defaults or {}).get(get_board(board).name, {}))

    def default_clk_hz(self, board: Board | str) -> int:
        """The design clock this design is built with on ``board`` unless ``clk_hz`` is given."""
        b = get_board(board)
        return int((self.clocks or {}).get(b.name, b.clk_hz))


# ----------------------------------------------------------------------------------------------
# built-in UART echo
# ----------------------------------------------------------------------------------------------
class UartEcho(wiring.Component):
    """8N1 UART that sends back every byte it receives (through a small FIFO).

    ``status[0]``: a received byte had a bad stop bit (sticky until reset); ``status[1]``: the FIFO
    overflowed (sticky).  ``design_id`` is kept as an attribute only (the echo has no protocol).
    """

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    status: Out(2)

    def __init__(self, *, design_id: int = 0, clk_hz: int, baud: int, depth: int = 16):
        super().__init__()
        self.design_id = design_id
        self.clocks_per_bit = clocks_per_bit(clk_hz, baud)
        self.depth = depth

    def elaborate(self, platform):
        m = Module()
        cpb = self.clocks_per_bit
        m.submodules.fifo = q = fifo.SyncFIFOBuffered(width=8, depth=self.depth)

        # receiver: wait for the start bit, sample mid-bit
        rx_timer = Signal(range(cpb * 3 // 2 + 1))
        rx_bits = Signal(range(9))
        rx_shift = Signal(8)
        with m.FSM(name="rx"):
            with m.State("IDLE"):
                with m.If(~self.uart_rx):
                    m.d.sync += [rx_timer.eq(cpb + cpb // 2 - 1), rx_bits.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(rx_timer != 0):
                    m.d.sync += rx_timer.eq(rx_timer - 1)
                with m.Else():
                    m.d.sync += [rx_shift.eq((rx_shift >> 1) | (self.uart_rx << 7)), rx_timer.eq(cpb - 1),
                                 rx_bits.eq(rx_bits + 1)]
                    with m.If(rx_bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(rx_timer != 0):
                    m.d.sync += rx_timer.eq(rx_timer - 1)
                with m.Else():
                    with m.If(self.uart_rx):
                        m.d.comb += [q.w_data.eq(rx_shift), q.w_en.eq(1)]
                        with m.If(~q.w_rdy):
                            m.d.sync += self.status[1].eq(1)
                    with m.Else():
                        m.d.sync += self.status[0].eq(1)
                    m.next = "IDLE"

        # transmitter: start bit, 8 data bits LSB first, stop bit
        tx_timer = Signal(range(cpb))
        tx_shift = Signal(10, init=0x3FF)
        tx_bits = Signal(range(11))
        m.d.comb += self.uart_tx.eq(tx_shift[0])
        with m.If(tx_bits == 0):
            with m.If(q.r_rdy):
                m.d.comb += q.r_en.eq(1)
                m.d.sync += [tx_shift.eq((1 << 9) | (q.r_data << 1)), tx_bits.eq(10), tx_timer.eq(cpb - 1)]
        with m.Elif(tx_timer != 0):
            m.d.sync += tx_timer.eq(tx_timer - 1)
        with m.Else():
            m.d.sync += [tx_shift.eq((tx_shift >> 1) | (1 << 9)), tx_bits.eq(tx_bits - 1), tx_timer.eq(cpb - 1)]
        return m


def _echo_factory(*, design_id: int, clk_hz: int, baud: int, **config):
    if config:
        raise FirmwareError(f"design 'echo' takes no parameters, got {sorted(config)}")
    return UartEcho(design_id=design_id, clk_hz=clk_hz, baud=baud)


def clocks_per_bit(clk_hz: int, baud: int) -> int:
    """UART clocks per bit; the rate error must stay within 2% (8N1 tolerates ~4% end to end)."""
    cpb = round(clk_hz / baud)
    if cpb < 4 or abs(clk_hz / cpb - baud) > 0.02 * baud:
        raise FirmwareError(f"baud {baud} from a {clk_hz / 1e6:g} MHz clock: {clk_hz / max(cpb, 1) / baud - 1:+.1%} "
                            "rate error (need >= 4 clocks per bit and <= 2% error); pick another --baud")
    return cpb


def _link_factory(*, design_id: int, clk_hz: int, baud: int, ram_words: int = 1024, **params):
    from plasticore.rtl.board import link_test_top

    if params:
        raise FirmwareError(f"design 'link' takes only ram_words, got {sorted(params)}")
    return link_test_top(clocks_per_bit(clk_hz, baud), ram_words=ram_words, design_id=design_id, clk_hz=clk_hz)


_CHIP_KEYS = ("mesh_x", "mesh_y", "a_max", "n_max", "lanes", "out_fifo", "core", "route_dests", "mem_pipe")
#: engine 1: a sample engine in front of the chip (``rtl.engine.EngineChip``; default 0), h0_words: its H0 store
_ENGINE_KEYS = ("engine", "h0_words")
_LINK_KEYS = ("rx_fifo_depth", "max_words", "status_counters", "pipes", "serial_crc", "bus_slice")


def _chip_factory(*, design_id: int, clk_hz: int, baud: int, **params):
    from plasticore.rtl.board import board_top
    from plasticore.rtl.chip import Chip
    from plasticore.rtl.engine import EngineChip

    unknown = set(params) - set(_CHIP_KEYS) - set(_LINK_KEYS) - set(_ENGINE_KEYS)
    if unknown:
        raise FirmwareError(f"design 'chip' has no parameters {sorted(unknown)}; it takes "
                            f"{', '.join(_CHIP_KEYS + _ENGINE_KEYS + _LINK_KEYS)}")
    chip = Chip(design_id=design_id, **{k: v for k, v in params.items() if k in _CHIP_KEYS})
    if params.get("engine"):
        chip = EngineChip(chip, h0_words=params.get("h0_words", 0))
    return board_top(chip, clocks_per_bit=clocks_per_bit(clk_hz, baud), design_id=design_id, clk_hz=clk_hz,
                     geometry=chip.geometry(), **{k: v for k, v in params.items() if k in _LINK_KEYS})


#: Chip size per board (docs/boards.md "Sizing" has the measured resource use behind these numbers). ULX3S-85F: 2 cores
#: of 256x256, 4 lanes: 205 / 208 DP16KD (W 32 + H 64 + H mask 4 + LUT 1 per core, with the ECP5 LUT-RAM hint for the
#: small memories), 46 / 156 DSPs; the output FIFO holds one step of both cores (512), the RX FIFO one maximal frame
#: and more (2048); a BusSlice between link and chip; the sample engine (its input queue: 2 DP16KD, 208 / 208; no H0
#: store: no block RAM left), ``--param engine=0`` leaves it out.
#: 8 cores of 128x128 need 8 x 26 DP16KD for W/H/mask/LUT alone and do not fit. iCE40UP5K (iCEBreaker): one
#: CompactCore of 128x128 with plasticity (W + mask and H in two SPRAMs) and the lean link (no STATUS counters, no
#: register slices, bit-serial CRC, frames of 64 words, 2 routing entries), no sample engine: about 99% of the 5 280
#: logic cells at 12 MHz (measured numbers: docs/boards.md, sizing; the HybridCore needs 208% of the logic cells).
#: A board without an entry gets the next design of AUTO_ORDER.
CHIP_DEFAULTS = {
    "ulx3s": {"mesh_x": 2, "mesh_y": 1, "a_max": 256, "n_max": 256, "lanes": 4, "out_fifo": 512,
              "rx_fifo_depth": 2048, "bus_slice": 1, "mem_pipe": 1, "engine": 1},
    "icebreaker": {"mesh_x": 1, "mesh_y": 1, "a_max": 128, "n_max": 128, "lanes": 1, "core": "compact",
                   "out_fifo": 256, "max_words": 64, "rx_fifo_depth": 512, "status_counters": 0, "pipes": 0,
                   "serial_crc": 1, "route_dests": 2},
}
#: Design clock of the chip per board, where it is set apart from the board's clock: the ULX3S chip
#: (2 x 256 x 256 with pipelined, tiled core memories) runs at 75 MHz (PLL 25 -> 75 MHz, 3 Mbaud = 25
#: clocks per bit, exact): at 90 MHz none of the first four nextpnr seeds met timing (73.5-88.9 MHz;
#: docs/boards.md, sizing).
CHIP_CLOCKS = {"ulx3s": 75_000_000}
LINK_DEFAULTS = {"ulx3s": {"ram_words": 16384}, "icebreaker": {"ram_words": 1024}}

DESIGNS: dict[str, Design] = {
    "chip": Design("chip", "multi-core hybrid chip behind the UART command link",
                   (("plasticore.rtl.chip", "Chip"), ("plasticore.rtl.board", "board_top")), _chip_factory,
                   CHIP_DEFAULTS, CHIP_CLOCKS),
    "link": Design("link", "UART command link + RAM/register test target",
                   (("plasticore.rtl.board", "link_test_top"),), _link_factory, LINK_DEFAULTS),
    "echo": Design("echo", "UART echo (clock, reset, pins and serial path only)", (), _echo_factory),
}

#: THE choice: the default design of a board is the first one in this order that is available and sized
#: for the board (has an entry in its ``defaults``).
AUTO_ORDER: tuple[str, ...] = ("chip", "link", "echo")


def get_design(name: str | None = None, board: Board | str | None = None) -> Design:
    """The design called ``name``; ``None`` or ``"auto"`` -> :func:`default_design` for ``board``."""
    if name in (None, "auto"):
        return default_design(board)
    try:
        return DESIGNS[name]
    except KeyError:
        raise FirmwareError(f"unknown design {name!r}; known designs: {', '.join(DESIGNS)}") from None


def default_design(board: Board | str | None = None) -> Design:
    """The first design of :data:`AUTO_ORDER` that this tree provides and that has a size for ``board``."""
    for name in AUTO_ORDER:
        d = DESIGNS[name]
        if d.available() and (board is None or d.sized_for(board)):
            return d
    raise FirmwareError("no design available")  # pragma: no cover - echo is built in
