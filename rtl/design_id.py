"""Design IDs from the elaborated design: the one definition every user (firmware builds, the simulated
boards, the host's expected IDs) calls.

A design ID is a 32-bit hash of the netlist Amaranth generates for the design (RTLIL without source
locations, elaborated with the ID itself set to 0) and of a configuration ``salt`` (board, clock,
baud, ...).  Comments, docstrings and whitespace in the sources do not reach the netlist, so they do
not change the ID (nor, with it, the constant in the design and the placement); a logic change does.

Elaborating a large chip takes seconds, so :func:`design_id` can memoise the result on disk under a
key of the caller's choosing (a hash of the sources, :func:`source_digest`): the memo only saves
time, the ID is always the netlist's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from amaranth import __version__ as amaranth_version
from amaranth.back import rtlil
from amaranth.hdl import Elaboratable

__all__ = ["design_id", "netlist_digest", "source_digest"]


def netlist_digest(design: Elaboratable, platform=None) -> str:
    """SHA-256 (hex) of the RTLIL of ``design`` without source locations.

    With a ``platform`` (an unused Amaranth platform instance) the design is prepared for it, pins
    and clock constraints included, as a bitstream build does.
    """
    if platform is None:
        text = rtlil.convert(design, emit_src=False)
    else:
        plan = platform.prepare(design, "top", emit_src=False, debug_verilog=False)
        text = plan.files["top.il"]
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def source_digest(files: Iterable[Path], extra: str = "") -> str:
    """SHA-256 (hex) over source files (names and bytes) and ``extra``: a cache key, not an ID."""
    h = hashlib.sha256(extra.encode())
    for p in sorted(Path(f) for f in files):
        data = p.read_bytes()
        h.update(p.name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def _from_digest(salt: Mapping, digest: str) -> int:
    blob = json.dumps({"salt": salt, "netlist": digest}, sort_keys=True, separators=(",", ":")).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little") or 1  # 0 means "unknown" on the wire


def design_id(make: Callable[[int], Elaboratable], salt: Mapping, *, platform: Callable[[], object] | None = None,
              memo_dir: Path | None = None, memo_key: str | None = None) -> int:
    """The 32-bit design ID (never 0) of ``make(design_id)`` with ``salt`` (JSON-serialisable).

    ``make(0)`` is elaborated (for ``platform()`` when given) and its netlist hashed with ``salt``.
    With ``memo_dir`` and ``memo_key`` (e.g. :func:`source_digest` of the sources the design is
    generated from) the ID is looked up / stored in ``memo_dir`` first.
    """
    path = None
    if memo_dir is not None and memo_key is not None:
        key = hashlib.sha256(json.dumps([memo_key, salt, amaranth_version], sort_keys=True).encode()).hexdigest()
        path = Path(memo_dir) / key[:32]
        try:
            return int(path.read_text().strip(), 16)
        except (OSError, ValueError):
            pass
    ident = _from_digest(salt, netlist_digest(make(0), platform() if platform is not None else None))
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(f"{ident:08x}\n")
            os.replace(tmp, path)  # whole or nothing
        except OSError:
            pass  # a read-only tree: the ID is the same, only not remembered
    return ident
