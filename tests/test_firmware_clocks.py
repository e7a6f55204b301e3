"""PLL parameter searches against the reference tools (values captured from yowasp-ecppll / yowasp-icepll)."""

import pytest

from plasticore.firmware.clocks import ecp5_pll_params, ice40_pll_params
from plasticore.firmware.errors import FirmwareError

# yowasp-ecppll -i 25 -o F: (CLKI_DIV, CLKFB_DIV, CLKOP_DIV)
ECPPLL_25 = {50: (1, 2, 12), 75: (1, 3, 8), 100: (1, 4, 6), 125: (1, 5, 5), 60: (5, 12, 10), 90: (5, 18, 7)}
# yowasp-icepll -i 12 -o F: (DIVR, DIVF, DIVQ, FILTER_RANGE)
ICEPLL_12 = {24: (0, 63, 5, 1), 30: (0, 79, 5, 1), 36: (0, 47, 4, 1), 48: (0, 63, 4, 1)}


@pytest.mark.parametrize("mhz", sorted(ECPPLL_25))
def test_ecp5_pll_matches_ecppll(mhz):
    p = ecp5_pll_params(25e6, mhz * 1e6)
    assert (p.clki_div, p.clkfb_div, p.clkop_div) == ECPPLL_25[mhz]
    assert p.f_out_hz == pytest.approx(mhz * 1e6)
    assert 400e6 <= p.f_vco_hz <= 800e6 and 3.125e6 <= p.f_pfd_hz <= 400e6


@pytest.mark.parametrize("mhz", sorted(ICEPLL_12))
def test_ice40_pll_matches_icepll(mhz):
    p = ice40_pll_params(12e6, mhz * 1e6)
    assert (p.divr, p.divf, p.divq, p.filter_range) == ICEPLL_12[mhz]
    assert p.f_out_hz == pytest.approx(mhz * 1e6)


def test_unreachable_frequencies_raise():
    with pytest.raises(FirmwareError, match="not reachable"):
        ecp5_pll_params(25e6, 99.99e6)
    with pytest.raises(FirmwareError, match="outside"):
        ice40_pll_params(12e6, 300e6)
    assert ecp5_pll_params(25e6, 99.99e6, tolerance=0.01).f_out_hz == pytest.approx(100e6)
