"""Report parsing on captured Yosys/nextpnr output (tests/firmware_samples/, from real YoWASP builds)."""

import json
import shutil
from pathlib import Path

import pytest

from plasticore.firmware.errors import BuildError, TimingError
from plasticore.firmware.report import (
    check_timing,
    format_report,
    parse_build_reports,
    parse_nextpnr_log,
    parse_nextpnr_report,
    parse_yosys_stats,
)

SAMPLES = Path(__file__).parent / "firmware_samples"


def test_icebreaker_sample():
    r = parse_build_reports(SAMPLES / "icebreaker_echo", family="ice40")
    assert r["luts"] == {"used": 165, "available": 5280}
    assert r["ffs"] == {"used": 130, "available": 5280}
    assert r["logic_cells"] == {"used": 215, "available": 5280}
    assert r["bram"] == {"used": 1, "available": 30}
    assert r["spram"] == {"used": 0, "available": 4}
    assert r["dsp"] == {"used": 0, "available": 8}
    assert r["fmax"] == {"clk": {"achieved_mhz": 58.62, "constraint_mhz": 12.0, "met": True}}
    assert r["timing_met"] is True
    assert r["cells"]["SB_LUT4"] == 165 and r["cells"]["SB_CARRY"] == 63
    json.dumps(r)  # JSON-able
    assert "fmax clk: 58.62 MHz" in format_report(r)


def test_ulx3s_sample():
    r = parse_build_reports(SAMPLES / "ulx3s_echo", family="ecp5")
    assert r["luts"] == {"used": 246, "available": 83640}
    assert r["ffs"] == {"used": 128, "available": 83640}
    assert r["bram"] == {"used": 0, "available": 208}
    assert r["dsp"] == {"used": 0, "available": 156}
    assert r["pll"] == {"used": 1, "available": 4}
    assert r["fmax"]["clk"] == {"achieved_mhz": 207.99, "constraint_mhz": 100.0, "met": True}
    assert r["fmax"]["btn_sync.por_clk"]["constraint_mhz"] == 25.0
    assert r["cells"]["LUT4"] == 138 and r["cells"]["TRELLIS_FF"] == 128 and r["cells"]["EHXPLLL"] == 1
    # the worst path of each clock: its delay is the clock's achieved period
    cp = r["critical_paths"]["clk"]
    assert cp["total_ns"] == pytest.approx(1000 / 207.99, abs=0.01)
    assert cp["logic_ns"] + cp["routing_ns"] == pytest.approx(cp["total_ns"], abs=0.02)
    assert cp["from"] == "design.rx_timer_TRELLIS_FF_Q_3" and cp["nets"][0] == "design.rx_timer[4]"
    assert set(r["critical_paths"]) == set(r["fmax"])
    assert "worst path 4.81 ns (3.56 ns routing)" in format_report(r)


@pytest.mark.parametrize("sample", ["icebreaker_echo", "ulx3s_echo"])
def test_log_fallback_agrees_with_json_report(sample):
    util_j, fmax_j = parse_nextpnr_report(json.loads((SAMPLES / sample / "top.report.json").read_text()))
    util_l, fmax_l = parse_nextpnr_log((SAMPLES / sample / "top.tim").read_text())
    for k, v in util_l.items():
        assert util_j[k] == v
    assert fmax_l.keys() == fmax_j.keys()
    for k in fmax_l:
        assert fmax_l[k]["achieved_mhz"] == pytest.approx(fmax_j[k]["achieved_mhz"], abs=0.01)


def test_log_fallback_when_json_missing(tmp_path):
    for f in ("top.rpt", "top.tim"):
        shutil.copy(SAMPLES / "icebreaker_echo" / f, tmp_path / f)
    r = parse_build_reports(tmp_path, family="ice40")
    assert r["source"] == "top.tim" and r["fmax"]["clk"]["achieved_mhz"] == 58.62
    (tmp_path / "top.tim").unlink()
    with pytest.raises(BuildError, match="no nextpnr report"):
        parse_build_reports(tmp_path, family="ice40")


def test_old_yosys_stat_layout():
    text = """
2.48. Printing statistics.

=== top ===

   Number of wires:                 52
   Number of cells:                403
     CCU2C                          31
     LUT4                          200
     TRELLIS_FF                    120
     DP16KD                          4

2.49. Executing CHECK pass (checking for obvious problems).
"""
    assert parse_yosys_stats(text) == {"CCU2C": 31, "LUT4": 200, "TRELLIS_FF": 120, "DP16KD": 4}


def test_timing_failure_is_loud():
    data = json.loads((SAMPLES / "ulx3s_echo" / "top.report.json").read_text())
    data["fmax"]["$glbnet$clk"]["achieved"] = 87.5
    util, fmax = parse_nextpnr_report(data)
    from plasticore.firmware.report import summarize

    r = summarize("ecp5", {}, util, fmax)
    assert r["timing_met"] is False and r["fmax"]["clk"]["met"] is False
    with pytest.raises(TimingError, match=r"clk: 87\.50 MHz < 100\.00 MHz") as e:
        check_timing(r)
    assert e.value.report is r
    assert "FAIL" in format_report(r)


def test_overfull_design_is_named():
    """Captured: the 1-core 128x128 chip on the iCE40UP5K (nextpnr stops at placement)."""
    from plasticore.firmware.report import overfull_resources

    util, fmax = parse_nextpnr_log((SAMPLES / "icebreaker_chip_overflow" / "top.tim").read_text())
    assert fmax == {}
    assert overfull_resources(util) == ("ICESTORM_LC 10991/5280 (208%), ICESTORM_RAM 144/30 (480%), "
                                        "ICESTORM_DSP 23/8 (287%)")


def test_real_timing_failure_sample():
    """Captured: 1x1 chip of 8x8 cores (lanes 1) on the ULX3S at 100 MHz -- misses timing in the link."""
    r = parse_build_reports(SAMPLES / "ulx3s_chip_tiny", family="ecp5")
    assert r["timing_met"] is False
    assert r["fmax"]["clk"] == {"achieved_mhz": 52.07, "constraint_mhz": 100.0, "met": False}
    assert r["dsp"]["used"] == 11 and r["bram"]["used"] == 8 and r["luts"]["used"] == 7603
    with pytest.raises(TimingError, match=r"timing not met: clk: 52\.07 MHz < 100\.00 MHz.*--clock-mhz"):
        check_timing(r, where="x/report.json")
