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
    # the ID is the elaborated netlist's and the config's
    assert not res.cached and res.design_id == design_id(res.config, root=tmp_path / "ids")
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
    # the seed sweep: the winner met the clock, its Fmax is the report's, every tried seed is listed
    won = [t for t in rep["seeds_tried"] if t["seed"] == rep["pnr_seed"]]
    assert len(won) == 1 and won[0]["met"] and won[0]["fmax_mhz"]["clk"] == round(rep["fmax"]["clk"]["achieved_mhz"], 2)
    assert res.manifest["pnr_seed"] == rep["pnr_seed"] and (res.dir / "work" / f"seed-{rep['pnr_seed']}").is_dir()
    # second call: served from the cache by design ID
    if expected_design_id("icebreaker") == res.design_id:
        again = cached_build("icebreaker", root=tmp_path)
        assert again is not None and again.cached and again.bitstream == res.bitstream


@pytest.mark.slow
def test_bitstream_icebreaker_echo_seed_sweep(tmp_path):
    """A small real build through the seed sweep: two seeds placed at once, the first to meet 12 MHz wins."""
    res = build("icebreaker", {"design": "echo"}, root=tmp_path, progress=False, seeds=2, jobs=2)
    rep = res.report
    print(format_report(rep))
    assert rep["timing_met"] and rep["pnr_seed"] in (1, 2) and res.bitstream.stat().st_size == UP5K_BIN_BYTES
    assert {t["seed"] for t in rep["seeds_tried"]} | set(rep["seeds_stopped"]) == {1, 2}
