"""Bundle -> chip compiler: placement of layers on cores, per-core memory images, routing tables.

Placement: layer ``l`` is split by neuron into ``ceil(N_l / n_max)`` slices; slices are given cores
in order (core ``k`` at mesh ``(k % mesh_x, k // mesh_x)``).  Every slice of layer ``l`` sees all
``A_l <= a_max`` inputs.  Core ``k`` holding neurons ``[j0, j1)`` of layer ``l`` gets routing entries
to every slice of layer ``l+1`` (``base = j0``: its neurons are axons ``j0..`` there) and, when the
layer is recorded, one to the host (``base = global neuron offset of the layer + j0``).

The images are expressed in *bus words* of the chip address map (``plasticore.chip_map``), so the
same image feeds the serial link, the Verilator harness and the testbenches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from plasticore import chip_map as M
from plasticore import contract as C
from plasticore import core_map as CM
from plasticore.bundle import Bundle, Layer
from plasticore.chip_map import (  # noqa: F401 - re-exported for the host
    CORE_REGION,
    CORE_SHIFT,
    IDX_BITS,
    MEM_SHIFT,
    ChipGeometry,
    chip_addr,
    core_addr,
    elems_per_word,
)
from plasticore.errors import PlasticoreError


class CompileError(PlasticoreError):
    """The bundle does not fit the chip (names the layer and the limit)."""


@dataclass
class Slice:
    layer: int
    core: int
    j0: int
    j1: int


@dataclass
class Placement:
    slices: list[Slice]
    layer_cores: list[list[int]]  #: cores of every layer, in neuron order
    out_offset: list[int]  #: global output index of neuron 0 of every layer (host packets)
    record: list[bool]  #: layers whose outputs go to the host

    def core_slice(self, core: int) -> Slice | None:
        return next((s for s in self.slices if s.core == core), None)


def place(bundle: Bundle, geom: ChipGeometry, record_all: bool = True) -> Placement:
    """Assign every layer's neuron slices to cores; raise :class:`CompileError` if it does not fit."""
    g = geom.core
    slices: list[Slice] = []
    layer_cores: list[list[int]] = []
    k = 0
    for li, L in enumerate(bundle.layers):
        if L.n_in > g.a_max:
            raise CompileError(f"layer {li} has {L.n_in} inputs but a core has {g.a_max} axons")
        n_sl = -(-L.n_out // g.n_max)
        if n_sl > M.MAX_DESTS:
            raise CompileError(f"layer {li} needs {n_sl} cores, more than the {M.MAX_DESTS} routing entries allow")
        cores = []
        for s in range(n_sl):
            if k >= geom.cores:
                raise CompileError(f"the network needs more than the chip's {geom.cores} cores "
                                   f"(layer {li}, slice {s})")
            j0 = s * g.n_max
            slices.append(Slice(li, k, j0, min(L.n_out, j0 + g.n_max)))
            cores.append(k)
            k += 1
        layer_cores.append(cores)
    if len(bundle.layers) > M.MAX_PHASES:
        raise CompileError(f"{len(bundle.layers)} layers > the chip's {M.MAX_PHASES} phases")
    record = [record_all or li == len(bundle.layers) - 1 for li in range(len(bundle.layers))]
    offs, o = [], 0
    for L in bundle.layers:
        offs.append(o)
        o += L.n_out
    if o >= 1 << M.INDEX_BITS:
        raise CompileError(f"{o} neurons in total exceed the {1 << M.INDEX_BITS} host indices")
    per_step = sum(L.n_out for li, L in enumerate(bundle.layers) if record[li])
    if per_step > geom.out_fifo:
        raise CompileError(f"up to {per_step} outputs per step exceed the output ring ({geom.out_fifo} entries)")
    return Placement(slices, layer_cores, offs, record)


@dataclass
class CoreImage:
    """Everything to load into one core, as (address, word) runs of consecutive bus words."""

    core: int
    regs: dict[int, int]  #: register address (a core_map.Reg or ProgReg / term_reg) -> value
    runs: list[tuple[int, list[int]]] = field(default_factory=list)  #: (start address, words)


def lane_words(mat: np.ndarray, mem: CM.Mem, geom: CM.CoreGeometry) -> list[int]:
    """Bus words of a matrix (rows = axons, cols = neurons of the slice) in core word order.

    Core word ``g * n_axons + i`` holds neurons ``g*P .. g*P+P-1`` of axon row ``i``; each core word
    is ``P / epw`` bus words of ``epw`` elements (element ``e`` of a bus word at bits ``[e*b, (e+1)*b)``).
    """
    info = CM.MEMS[mem]
    P = geom.lanes
    epw = elems_per_word(mem, P)
    A, N = mat.shape
    G = -(-N // P)
    pad = np.zeros((A, G * P), np.int64)
    pad[:, :N] = mat
    bits = info.bits
    vals = (pad & ((1 << bits) - 1)).reshape(A, G, P // epw, epw).transpose(1, 0, 2, 3)  # (G, A, chunks, epw)
    shifts = np.arange(epw, dtype=np.int64) * bits
    words = (vals << shifts).sum(axis=-1)  # (G, A, chunks)
    return [int(w) for w in words.reshape(-1)]


def decode_lane_words(words, mem: CM.Mem, geom: CM.CoreGeometry, A: int, N: int) -> np.ndarray:
    """Inverse of :func:`lane_words`: bus words -> (A, N) int64 matrix (sign-extended)."""
    info = CM.MEMS[mem]
    P = geom.lanes
    epw = elems_per_word(mem, P)
    bits = info.bits
    G = -(-N // P)
    w = np.asarray(words, np.int64).reshape(G, A, P // epw, 1)
    vals = (w >> (np.arange(epw, dtype=np.int64) * bits)) & ((1 << bits) - 1)
    if info.signed:
        vals = np.where(vals >> (bits - 1) != 0, vals - (1 << bits), vals)
    return vals.reshape(G, A, P).transpose(1, 0, 2).reshape(A, G * P)[:, :N]


def decode_scalars(words, bits: int, signed: bool = True) -> np.ndarray:
    v = np.asarray(words, np.int64) & ((1 << bits) - 1)
    if signed:
        v = np.where(v >> (bits - 1) != 0, v - (1 << bits), v)
    return v


def matrix_words(A: int, N: int, mem: CM.Mem, geom: CM.CoreGeometry) -> int:
    """Number of bus words of an (A, N) lane-memory matrix."""
    G = -(-N // geom.lanes)
    return G * A * (geom.lanes // elems_per_word(mem, geom.lanes))


def scalar_words(vec: np.ndarray, bits: int) -> list[int]:
    return [int(v) & ((1 << bits) - 1) for v in np.asarray(vec, np.int64)]


def layer_regs(L: Layer, n_axons: int, n_neurons: int, emit: bool, programs: bool = False) -> dict[int, int]:
    """The registers of a core that runs (a slice of) layer ``L``: :func:`plasticore.core_map.layer_registers`
    with the slice's neuron count and ``EMIT``; on a program core (``programs``) the layer's rule
    program (:func:`plasticore.core_map.program_reg_values`), else the v1 LPU's form of the rule (a
    :class:`~plasticore.rules.RuleError` when it has none)."""
    from plasticore.rules import lpu_v1_registers

    R = CM.Reg
    regs = {**CM.layer_registers(L), R.EMIT: int(emit), R.N_AXONS: n_axons, R.N_NEURONS: n_neurons}
    if programs:
        return {**regs, **CM.program_reg_values(L.program)}
    hebb_sign, dh_shift = lpu_v1_registers(L)
    return {**regs, R.DH_SHIFT: dh_shift, R.HEBB_NEG: int(hebb_sign < 0)}


def core_image(bundle: Bundle, pl: Placement, sl: Slice, geom: ChipGeometry, h: np.ndarray | None = None) -> CoreImage:
    """Memory image of one core (registers first, then W, H, HMASK, B, BETA, ETA, LUT)."""
    L = bundle.layers[sl.layer]
    g = geom.core
    cols = slice(sl.j0, sl.j1)
    n = sl.j1 - sl.j0
    emit = sl.layer + 1 < len(bundle.layers) or pl.record[sl.layer]
    img = CoreImage(sl.core, layer_regs(L, L.n_in, n, emit, geom.programs))
    H = L.H0 if h is None else h
    for mem, mat in ((CM.Mem.W, L.W), (CM.Mem.H, H), (CM.Mem.HMASK, L.hmask)):
        img.runs.append((core_addr(sl.core, mem, 0), lane_words(np.asarray(mat)[:, cols].astype(np.int64), mem, g)))
    img.runs.append((core_addr(sl.core, CM.Mem.B, 0), scalar_words(L.b[cols], C.B_BITS)))
    img.runs.append((core_addr(sl.core, CM.Mem.BETA, 0), scalar_words(L.beta, C.BETA_BITS)))
    img.runs.append((core_addr(sl.core, CM.Mem.ETA, 0), scalar_words(L.eta[cols], C.ETA_BITS)))
    img.runs.append((core_addr(sl.core, CM.Mem.LUT, 0), scalar_words(L.lut, C.F_BITS)))
    if geom.programs:  # no third factor, no teaching current until a run gives them
        img.runs += [(core_addr(sl.core, mem, 0), [0] * n) for mem in (CM.Mem.MT, CM.Mem.TEACH)]
    return img


def route_table(bundle: Bundle, pl: Placement, geom: ChipGeometry, sl: Slice) -> list[M.RouteEntry]:
    """Routing entries of the core holding slice ``sl``."""
    entries = []
    if sl.layer + 1 < len(bundle.layers):
        for k in pl.layer_cores[sl.layer + 1]:
            entries.append(M.RouteEntry(x=k % geom.mesh_x, y=k // geom.mesh_x, base=sl.j0))
    if pl.record[sl.layer]:
        entries.append(M.RouteEntry(to_host=True, base=pl.out_offset[sl.layer] + sl.j0))
    if len(entries) > M.MAX_DESTS:
        raise CompileError(f"core {sl.core} needs {len(entries)} routing entries > {M.MAX_DESTS}")
    return entries


@dataclass
class ChipImage:
    """A compiled network: per-core images, routing, chip registers."""

    placement: Placement
    cores: list[CoreImage]
    chip_writes: list[tuple[int, int]]  #: (chip address, word): phases and routing tables


def compile_bundle(bundle: Bundle, geom: ChipGeometry, record_all: bool = True) -> ChipImage:
    pl = place(bundle, geom, record_all)
    cores = [core_image(bundle, pl, sl, geom) for sl in pl.slices]
    writes = [(chip_addr(M.ChipReg.N_PHASES), len(bundle.layers))]
    used = {sl.core: sl for sl in pl.slices}
    for k in range(geom.cores):
        sl = used.get(k)
        writes.append((chip_addr(M.ChipReg.CORE_PHASE_BASE, k), M.UNUSED_PHASE if sl is None else sl.layer))
        table = route_table(bundle, pl, geom, sl) if sl is not None else []
        for e in range(M.MAX_DESTS):
            word = table[e].pack() if e < len(table) else 0
            writes.append((chip_addr(M.ChipReg.ROUTE_BASE, k * M.MAX_DESTS + e), word))
    return ChipImage(pl, cores, writes)


def decode_outputs(entries: list[int], bundle: Bundle, pl: Placement) -> list[tuple[int, int, int]]:
    """Output ring entries (index | value << 16) -> (layer, neuron, value)."""
    out = []
    bounds = np.array(pl.out_offset + [1 << M.INDEX_BITS])
    for w in entries:
        idx = w & ((1 << M.INDEX_BITS) - 1)
        val = CM.from_bits(w >> M.INDEX_BITS, C.X_BITS, True)
        li = int(np.searchsorted(bounds, idx, side="right") - 1)
        out.append((li, idx - pl.out_offset[li], val))
    return out
