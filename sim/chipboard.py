"""The simulated board that carries the multi-core chip: UART + link + :class:`plasticore.rtl.chip.Chip`.

``sim://?top=chip&mesh_x=2&a_max=128...`` (or the default ``sim://``) spawns it; its design ID is a
hash of the chip configuration and the RTL sources, so a host can tell a stale simulator apart.
"""

from __future__ import annotations

import zlib

from plasticore.sim.chipsim import ChipConfig, rtl_hash

#: the chip the default simulated board carries: 2 cores of 128 x 128, P = 16 (fits 64-128-10)
DEFAULT_CHIP = ChipConfig(2, 1, 128, 128, 16)


def _split(mesh_x: int = DEFAULT_CHIP.mesh_x, mesh_y: int = DEFAULT_CHIP.mesh_y, a_max: int = DEFAULT_CHIP.a_max,
           n_max: int = DEFAULT_CHIP.n_max, lanes: int = DEFAULT_CHIP.lanes, out_fifo: int = DEFAULT_CHIP.out_fifo,
           core: str = "hybrid", route_dests: int | None = None, mem_pipe: bool = False, **link_kwargs):
    from plasticore import chip_map as M

    cfg = ChipConfig(mesh_x, mesh_y, a_max, n_max, lanes, out_fifo, bool(mem_pipe))
    extra = {"core": core, "route_dests": route_dests or M.MAX_DESTS, **link_kwargs}
    return cfg, extra, link_kwargs


def board_design_id(clocks_per_bit: int = 8, **kw) -> int:
    """The design ID :func:`chip_board_top` ``(clocks_per_bit, **kw)`` reports on identify: a hash of
    the whole configuration (chip, core kind, link options) and of the RTL sources."""
    cfg, extra, _ = _split(**kw)
    return zlib.crc32(f"simboard:{cfg!r}:{sorted(extra.items())!r}:{clocks_per_bit}:{rtl_hash()}".encode())


def chip_board_top(clocks_per_bit: int = 8, **kw):
    """The board top of a chip: ``mesh_x, mesh_y, a_max, n_max, lanes, out_fifo``, ``core`` /
    ``route_dests`` / ``mem_pipe`` as in :class:`~plasticore.rtl.chip.Chip`; the other keyword arguments go to the
    link (``max_words``, ``rx_fifo_depth``, ``status_counters``, ``pipes``, ``serial_crc``).
    ``firmware.designs.CHIP_DEFAULTS[board]`` is a valid ``kw``: the chip that board builds."""
    from plasticore.rtl.board import board_top
    from plasticore.rtl.chip import Chip

    cfg, extra, link_kwargs = _split(**kw)
    did = board_design_id(clocks_per_bit, **kw)
    chip = Chip(cfg.mesh_x, cfg.mesh_y, cfg.a_max, cfg.n_max, cfg.lanes, design_id=did, out_fifo=cfg.out_fifo,
                core=extra["core"], route_dests=extra["route_dests"], mem_pipe=cfg.mem_pipe)
    return board_top(chip, clocks_per_bit=clocks_per_bit, design_id=did, geometry=chip.geometry(), **link_kwargs)
