"""Clock generation for the board tops: PLL parameter search and the PLL primitives.

* ECP5 ``EHXPLLL`` (ULX3S): :func:`ecp5_pll_params` searches the divisors like Project Trellis'
  ``ecppll`` (reference clock divider, feedback divider, output divider; PFD 3.125-400 MHz, VCO
  400-800 MHz, feedback from CLKOP).
* iCE40 ``SB_PLL40_PAD`` / ``SB_PLL40_CORE`` (iCEBreaker): :func:`ice40_pll_params` searches like
  icestorm's ``icepll`` (SIMPLE feedback; PFD 10-133 MHz, VCO 533-1066 MHz, output 16-275 MHz).

``tests/test_firmware_clocks.py`` checks both searches against the YoWASP ``ecppll``/``icepll``
binaries when they are installed.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Const, Elaboratable, Instance, Module, Signal

from .errors import FirmwareError

__all__ = ["ECP5PLLParams", "ICE40PLLParams", "ECP5PLL", "ICE40PLL", "ecp5_pll_params", "ice40_pll_params"]


@dataclass(frozen=True)
class ECP5PLLParams:
    f_in_hz: float
    clki_div: int
    clkfb_div: int
    clkop_div: int

    @property
    def f_pfd_hz(self) -> float:
        return self.f_in_hz / self.clki_div

    @property
    def f_out_hz(self) -> float:
        return self.f_pfd_hz * self.clkfb_div

    @property
    def f_vco_hz(self) -> float:
        return self.f_out_hz * self.clkop_div


def ecp5_pll_params(f_in_hz: float, f_out_hz: float, *, tolerance: float = 0.0) -> ECP5PLLParams:
    """Divisors of an ECP5 EHXPLLL (CLKOP feedback) for ``f_out_hz`` from ``f_in_hz``.

    Picks the smallest frequency error; among equal errors the VCO closest to 600 MHz (as ``ecppll``).
    Raises :class:`FirmwareError` when the best error exceeds ``tolerance`` (relative; 0 = exact
    within 1e-9).
    """
    best = None
    for clki_div in range(1, 129):
        f_pfd = f_in_hz / clki_div
        if not 3.125e6 <= f_pfd <= 400e6:
            continue
        for clkfb_div in range(1, 81):
            f_out = f_pfd * clkfb_div
            err = abs(f_out - f_out_hz)
            for clkop_div in range(1, 129):
                f_vco = f_out * clkop_div
                if not 400e6 <= f_vco <= 800e6:
                    continue
                key = (round(err, 3), abs(f_vco - 600e6))
                if best is None or key < best[0]:
                    best = (key, ECP5PLLParams(f_in_hz, clki_div, clkfb_div, clkop_div))
    return _checked("ECP5", best and best[1], f_out_hz, f_in_hz, tolerance)


@dataclass(frozen=True)
class ICE40PLLParams:
    f_in_hz: float
    divr: int
    divf: int
    divq: int

    @property
    def f_pfd_hz(self) -> float:
        return self.f_in_hz / (self.divr + 1)

    @property
    def f_vco_hz(self) -> float:
        return self.f_pfd_hz * (self.divf + 1)

    @property
    def f_out_hz(self) -> float:
        return self.f_vco_hz / (1 << self.divq)

    @property
    def filter_range(self) -> int:
        f = self.f_pfd_hz
        for i, lim in enumerate((17e6, 26e6, 44e6, 66e6, 101e6)):
            if f < lim:
                return i + 1
        return 6


def ice40_pll_params(f_in_hz: float, f_out_hz: float, *, tolerance: float = 0.0) -> ICE40PLLParams:
    """DIVR/DIVF/DIVQ of an iCE40 SB_PLL40 (SIMPLE feedback) for ``f_out_hz`` (as ``icepll``)."""
    if not 16e6 <= f_out_hz <= 275e6:
        raise FirmwareError(f"iCE40 PLL: output {f_out_hz / 1e6:g} MHz outside 16-275 MHz")
    best = None
    for divr in range(16):
        f_pfd = f_in_hz / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                f_out = f_vco / (1 << divq)
                err = abs(f_out - f_out_hz)
                if best is None or err < best[0] - 1e-3:
                    best = (err, ICE40PLLParams(f_in_hz, divr, divf, divq))
    return _checked("iCE40", best and best[1], f_out_hz, f_in_hz, tolerance)


def _checked(family: str, p, f_out_hz: float, f_in_hz: float, tolerance: float):
    """The PLL setting ``p`` found (None: none), if its output is within ``tolerance`` of ``f_out_hz``."""
    if p is None:
        raise FirmwareError(f"{family} PLL: no divisors for {f_out_hz / 1e6:g} MHz from {f_in_hz / 1e6:g} MHz")
    if abs(p.f_out_hz - f_out_hz) > max(tolerance * f_out_hz, 1e-9 * f_out_hz):
        raise FirmwareError(f"{family} PLL: {f_out_hz / 1e6:g} MHz is not reachable from {f_in_hz / 1e6:g} MHz "
                            f"(closest {p.f_out_hz / 1e6:.4f} MHz); pick another --clock-mhz")
    return p


def _mhz(f: float) -> str:
    return f"{f / 1e6:.6f}".rstrip("0").rstrip(".")


class ECP5PLL(Elaboratable):
    """EHXPLLL with CLKOP feedback: ``clk_in`` → ``clk_out``; ``locked`` goes high when locked."""

    def __init__(self, params: ECP5PLLParams):
        self.params = params
        self.clk_in = Signal()
        self.clk_out = Signal()
        self.locked = Signal()

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=_mhz(p.f_in_hz),
            a_FREQUENCY_PIN_CLKOP=_mhz(p.f_out_hz),
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB", p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p.clkop_div,
            p_CLKOP_CPHASE=p.clkop_div - 1, p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p.clkfb_div,
            i_RST=0, i_STDBY=0, i_CLKI=self.clk_in, o_CLKOP=self.clk_out, i_CLKFB=self.clk_out,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=self.locked,
        )
        return m


class ICE40PLL(Elaboratable):
    """SB_PLL40_PAD (``pad`` = the clock pin's io port) or SB_PLL40_CORE (``pad`` None, ``clk_in``)."""

    def __init__(self, params: ICE40PLLParams, pad=None):
        self.params = params
        self.pad = pad
        self.clk_in = Signal()
        self.clk_out = Signal()
        self.locked = Signal()

    def elaborate(self, platform):
        m = Module()
        p = self.params
        common = dict(
            p_FEEDBACK_PATH="SIMPLE",
            p_DIVR=Const(p.divr, 4), p_DIVF=Const(p.divf, 7), p_DIVQ=Const(p.divq, 3),
            p_FILTER_RANGE=Const(p.filter_range, 3),
            i_RESETB=1, i_BYPASS=0, o_PLLOUTGLOBAL=self.clk_out, o_LOCK=self.locked,
        )
        if self.pad is not None:
            m.submodules.pll = Instance("SB_PLL40_PAD", i_PACKAGEPIN=self.pad, **common)
        else:
            m.submodules.pll = Instance("SB_PLL40_CORE", i_REFERENCECLK=self.clk_in, **common)
        return m
