"""Design IDs of bitstream builds: the 32-bit ID of what a bitstream computes.

The ID is :func:`plasticore.rtl.design_id.design_id` (the one definition) of the board top around
the design, elaborated for the board's FPGA with the ID set to 0, salted with the board (and its
FPGA), the design name and its parameters, the design clock and baud rate and the plasticore
version.  Comments and whitespace in the sources do not change it; a logic change does.  It is
passed to the design factory as ``design_id`` so the identify reply carries it; the host compares it
with :func:`expected_design_id` on connect.  Bitstreams are cached by it
(``build/bitstreams/<board>/<id>/``).

Elaborating the ULX3S chip takes seconds, so the ID is memoised under ``<root>/.design-ids/`` by a
hash of the sources the board logic is generated from (:func:`rtl_source_files`): the memo only
saves time.  Tool versions are *not* part of the ID (they change the bitstream's bits, not what it
computes); the build manifest records them.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from .boards import get_board
from .designs import get_design

__all__ = ["BuildConfig", "default_root", "design_id", "expected_design_id", "make_top", "resolve_config",
           "rtl_source_files", "rtl_source_hash"]

#: packages whose sources key the design-ID memo wholesale, and single modules
_HASHED_PACKAGES = ("plasticore.rtl",)
#: tools inside those packages that generate no board logic (the toolchain smoke test): editing them must
#: not change the design ID, and with it the netlist and its placement
_UNHASHED = ("plasticore.rtl/smoke.py",)
_HASHED_MODULES = (
    "plasticore.contract",
    "plasticore.bus_ops",
    "plasticore.chip_map",
    "plasticore.coding",
    "plasticore.core_map",
    "plasticore.protocol",
    "plasticore.rules",
    "plasticore.firmware.top",
    "plasticore.firmware.clocks",
    "plasticore.firmware.designs",
)


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin)


def default_root() -> Path:
    """``$PLASTICORE_BITSTREAMS`` or ``build/bitstreams`` under the current directory."""
    return Path(os.environ.get("PLASTICORE_BITSTREAMS", "build/bitstreams"))


def rtl_source_files() -> dict[str, Path]:
    """The source files the board logic is generated from (the design-ID memo's key), by key
    (package + path inside it, or module name)."""
    files: dict[str, Path] = {}
    for pkg in _HASHED_PACKAGES:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            root = Path(root)
            for p in sorted(root.rglob("*")):
                key = f"{pkg}/{p.relative_to(root).as_posix()}"
                if (p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".v", ".sv", ".il")
                        and key not in _UNHASHED):
                    files[key] = p
    for mod in _HASHED_MODULES:
        p = _module_file(mod)
        if p is not None and p.is_file():
            files[mod] = p
    return files


def rtl_source_hash() -> str:
    """SHA-256 (hex) over the RTL-relevant source files (paths relative to their package + contents): a
    cache key (it changes with every comment), recorded in the manifest; not the design ID."""
    from plasticore.rtl.design_id import source_digest

    files = rtl_source_files()
    return source_digest([files[k] for k in sorted(files)], extra="\0".join(sorted(files)))


@dataclass(frozen=True)
class BuildConfig:
    """The fully resolved configuration of one build (the design ID's salt)."""

    board: str
    design: str
    clk_hz: int
    baud: int
    params: dict = field(default_factory=dict)

    def salt(self) -> dict:
        """What the ID hashes besides the netlist."""
        from plasticore import __version__

        b = get_board(self.board)
        return {
            "board": b.name,
            "device": f"{b.family}:{b.description}",
            "design": self.design,
            "params": {k: self.params[k] for k in sorted(self.params)},
            "clk_hz": int(self.clk_hz),
            "baud": int(self.baud),
            "plasticore": __version__,
        }

    def canonical(self, *, rtl_hash: str | None = None) -> dict:
        """:meth:`salt` and the sources' hash (for the manifest)."""
        return {**self.salt(), "rtl": rtl_hash if rtl_hash is not None else rtl_source_hash()}


def resolve_config(board: str, config: dict | None = None) -> BuildConfig:
    """Fill in defaults. ``config`` keys: ``design`` (name or "auto"), ``clk_hz``, ``baud``, and design
    parameters (anything else; they override the board's defaults for that design)."""
    b = get_board(board)
    cfg = dict(config or {})
    design = get_design(cfg.pop("design", None), b)
    clk_hz = int(cfg.pop("clk_hz", None) or design.default_clk_hz(b))
    baud = int(cfg.pop("baud", None) or b.baud)
    params = design.default_config(b)
    params.update(cfg)
    return BuildConfig(board=b.name, design=design.name, clk_hz=clk_hz, baud=baud, params=params)


def make_top(cfg: BuildConfig, ident: int):
    """The :class:`~.top.BoardTop` for a resolved configuration (not elaborated)."""
    from .top import BoardTop

    design = get_design(cfg.design)
    return BoardTop(cfg.board, design.factory(), design_id=ident, clk_hz=cfg.clk_hz, baud=cfg.baud,
                    config=cfg.params)


def design_id(cfg: BuildConfig, *, root: Path | None = None, rtl_hash: str | None = None) -> int:
    """32-bit design ID of a resolved build configuration (never 0: 0 means "unknown" on the wire).

    ``root``: the bitstream cache whose ``.design-ids/`` memoises it (default :func:`default_root`);
    ``rtl_hash``: :func:`rtl_source_hash`, when the caller has it already.
    """
    from plasticore.rtl.design_id import design_id as netlist_design_id

    b = get_board(cfg.board)
    return netlist_design_id(lambda ident: make_top(cfg, ident), cfg.salt(), platform=b.platform,
                             memo_dir=Path(root or default_root()) / ".design-ids",
                             memo_key=rtl_hash if rtl_hash is not None else rtl_source_hash())


def expected_design_id(board: str, config: dict | None = None, *, root: Path | None = None) -> int:
    """The design ID a board built by ``plasticore build --board board`` with ``config`` reports.

    For the host: compare with the identify reply's ``design_id`` on connect.
    """
    return design_id(resolve_config(board, config), root=root)
