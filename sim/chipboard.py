"""The simulated board that carries the multi-core chip: UART + link + :class:`plasticore.rtl.chip.Chip`.

A bare ``sim://`` spawns it with :data:`DEFAULT_CHIP`; ``sim://?mesh_x=3&a_max=256...`` (or
``sim://?top=chip&...``) changes the geometry (``sim://?top=link_test`` is the link-test RAM instead).
Its design ID is :func:`plasticore.rtl.design_id.design_id` of the elaborated board top and its
configuration, so a host can tell a stale simulator apart while comments in the sources change nothing.
"""

from __future__ import annotations

from plasticore.sim.chipsim import ChipConfig, cache_root, rtl_hash

#: the chip the default simulated board carries: 2 cores of 128 x 128, P = 16 (fits 64-128-10), with a sample
#: engine (``plasticore run --stream``) whose H0 store (64 Ki words, 256 KiB) holds a 1024 x 128 layer's H0
DEFAULT_CHIP = ChipConfig(2, 1, 128, 128, 16, engine=True, h0_words=1 << 16)


def _split(mesh_x: int = DEFAULT_CHIP.mesh_x, mesh_y: int = DEFAULT_CHIP.mesh_y, a_max: int = DEFAULT_CHIP.a_max,
           n_max: int = DEFAULT_CHIP.n_max, lanes: int = DEFAULT_CHIP.lanes, out_fifo: int = DEFAULT_CHIP.out_fifo,
           core: str = "hybrid", route_dests: int | None = None, mem_pipe: bool = False,
           engine: bool | None = None, h0_words: int | None = None, **link_kwargs):
    """``engine`` None: a sample engine with the hybrid core (as :data:`DEFAULT_CHIP`), none with the compact
    core (the iCEBreaker's chip, which has no room for one); ``h0_words`` None: the default chip's H0 store
    with the default engine, none with an engine asked for (as a board's build: ``CHIP_DEFAULTS``)."""
    from plasticore import chip_map as M

    if h0_words is None:  # the default chip's store with the default chip's engine; none where engine is set
        h0_words = DEFAULT_CHIP.h0_words if engine is None and DEFAULT_CHIP.engine and core == "hybrid" else 0
    if engine is None:
        engine = DEFAULT_CHIP.engine and core == "hybrid"
    cfg = ChipConfig(mesh_x, mesh_y, a_max, n_max, lanes, out_fifo, bool(mem_pipe), bool(engine), int(h0_words), core)
    extra = {"core": core, "route_dests": route_dests or M.MAX_DESTS, **link_kwargs}
    return cfg, extra, link_kwargs


def fitting_chip(bundle, a_max: int = DEFAULT_CHIP.a_max, n_max: int = DEFAULT_CHIP.n_max,
                 lanes: int = DEFAULT_CHIP.lanes) -> ChipConfig:
    """The smallest mesh of ``a_max x n_max`` cores that holds ``bundle``: one core per ``n_max`` neurons of
    every layer (``a_max`` grows to the next power of two above the widest layer's inputs, ``n_max`` doubles
    until no layer needs more than ``MAX_DESTS`` cores); the engine's H0 store holds the H0 of every layer
    that resets H at each sample."""
    from plasticore import chip_map as M
    from plasticore import contract as C
    from plasticore import core_map as CM

    widest = max(L.n_in for L in bundle.layers)
    if widest > a_max:
        a_max = 1 << (widest - 1).bit_length()
    while any(-(-L.n_out // n_max) > M.MAX_DESTS for L in bundle.layers):  # a layer spans <= MAX_DESTS cores
        n_max *= 2
    need = sum(-(-L.n_out // n_max) for L in bundle.layers)
    mx, my = (need, 1) if need <= M.MAX_MESH else (M.MAX_MESH, -(-need // M.MAX_MESH))
    h0 = sum(L.n_in * -(-L.n_out // lanes) * lanes for L in bundle.layers
             if L.plastic and L.h_persist == C.HPersist.SAMPLE)
    h0_words = max(DEFAULT_CHIP.h0_words, 1 << (max(1, h0 // M.elems_per_word(CM.Mem.H, lanes)) - 1).bit_length())
    return ChipConfig(mx, my, a_max, n_max, lanes, engine=DEFAULT_CHIP.engine, h0_words=h0_words)


def url_chip(url: str) -> ChipConfig | None:
    """The chip a ``sim://`` URL spawns (None if it names another top, e.g. ``link_test``)."""
    from plasticore.sim.simboard import TOPS, parse_sim_url

    kw = parse_sim_url(url)
    top = kw.pop("top", None) or "default"
    if TOPS.get(top) is not TOPS["chip"]:
        return None
    for k in ("clocks_per_bit", "link", "poll"):
        kw.pop(k, None)
    cfg, _, _ = _split(**kw)
    return cfg


def chip_url(cfg: ChipConfig) -> str:
    """The ``sim://`` URL of a chip board of geometry ``cfg``."""
    return (f"sim://?mesh_x={cfg.mesh_x}&mesh_y={cfg.mesh_y}&a_max={cfg.a_max}&n_max={cfg.n_max}&lanes={cfg.lanes}"
            + ("" if cfg.engine == DEFAULT_CHIP.engine else f"&engine={int(cfg.engine)}")
            + ("" if cfg.h0_words == (DEFAULT_CHIP.h0_words if cfg.engine else 0) else f"&h0_words={cfg.h0_words}")
            + ("" if cfg.core == "hybrid" else f"&core={cfg.core}"))


def board_design_id(clocks_per_bit: int = 8, **kw) -> int:
    """The design ID :func:`chip_board_top` ``(clocks_per_bit, **kw)`` reports on identify: the
    elaborated board top's netlist and the whole configuration (chip, core kind, link options);
    memoised under ``build/design-ids/`` by a hash of the RTL sources."""
    from plasticore.rtl.design_id import design_id

    cfg, extra, _ = _split(**kw)
    salt = {"board": "simboard", "chip": repr(cfg), "extra": repr(sorted(extra.items())),
            "clocks_per_bit": clocks_per_bit}
    return design_id(lambda ident: _top(clocks_per_bit, ident, **kw), salt, memo_dir=cache_root() / "design-ids",
                     memo_key=rtl_hash())


def chip_board_top(clocks_per_bit: int = 8, **kw):
    """The board top of a chip: ``mesh_x, mesh_y, a_max, n_max, lanes, out_fifo``, ``core`` /
    ``route_dests`` / ``mem_pipe`` as in :class:`~plasticore.rtl.chip.Chip`; the other keyword arguments go to the
    link (``max_words``, ``rx_fifo_depth``, ``status_counters``, ``pipes``, ``serial_crc``).
    ``firmware.designs.CHIP_DEFAULTS[board]`` is a valid ``kw``: the chip that board builds."""
    return _top(clocks_per_bit, board_design_id(clocks_per_bit, **kw), **kw)


def _top(clocks_per_bit: int, did: int, **kw):
    from plasticore.rtl.board import board_top
    from plasticore.rtl.chip import Chip
    from plasticore.rtl.engine import EngineChip

    cfg, extra, link_kwargs = _split(**kw)
    chip = Chip(cfg.mesh_x, cfg.mesh_y, cfg.a_max, cfg.n_max, cfg.lanes, design_id=did, out_fifo=cfg.out_fifo,
                core=extra["core"], route_dests=extra["route_dests"], mem_pipe=cfg.mem_pipe)
    if cfg.engine:
        chip = EngineChip(chip, h0_words=cfg.h0_words)
    return board_top(chip, clocks_per_bit=clocks_per_bit, design_id=did, geometry=chip.geometry(), **link_kwargs)
