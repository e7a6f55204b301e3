"""Real bitstream build (slow: `make bitstream-test`, i.e. `pytest -m slow -k bitstream`).

Builds the iCEBreaker's default design with the pip-only YoWASP toolchain into a fresh cache and
checks the parsed report.  Takes a few minutes (the first YoWASP run also compiles the WebAssembly
tools, cached afterwards in ~/.cache/yowasp).
"""

import json

import pytest

from plasticore.firmware.build import build, cached_build
from plasticore.firmware.design_id import design_id, expected_design_id, resolve_config
from plasticore.firmware.report import format_report

#: size of an iCE40UP5K bitstream (icepack output)
UP5K_BIN_BYTES = 104090


@pytest.mark.slow
def test_bitstream_icebreaker(tmp_path):
    res = build("icebreaker", root=tmp_path, progress=False)
    print(format_report(res.report))
    # the ID hashes the config and the RTL sources the build saw (sources may change while it runs)
    assert not res.cached and res.design_id == design_id(res.config, rtl_hash=res.manifest["config"]["rtl"])
    assert res.config == resolve_config("icebreaker")
    assert res.bitstream.name == "top.bin" and res.bitstream.stat().st_size == UP5K_BIN_BYTES
    rep = json.loads((res.dir / "report.json").read_text())
    assert rep == json.loads(json.dumps(res.report))
    assert rep["family"] == "ice40" and rep["timing_met"] is True
    assert set(rep["fmax"]) == {"clk"}
    assert rep["fmax"]["clk"]["constraint_mhz"] == 12.0 and rep["fmax"]["clk"]["achieved_mhz"] >= 12.0
    for key in ("luts", "ffs", "logic_cells", "bram"):
        assert 0 < rep[key]["used"] <= rep[key]["available"], key
    assert rep["logic_cells"]["available"] == 5280 and rep["bram"]["available"] == 30
    assert rep["cells"]["SB_LUT4"] == rep["luts"]["used"]
    # second call: served from the cache by design ID
    if expected_design_id("icebreaker") == res.design_id:
        again = cached_build("icebreaker", root=tmp_path)
        assert again is not None and again.cached and again.bitstream == res.bitstream
