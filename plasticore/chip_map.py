"""The multi-core chip: mesh geometry, spike packets, routing tables and chip registers.

Imported by the RTL (``rtl/router.py``, ``rtl/netif.py``, ``rtl/chip.py``), the bundle compiler
(``host/compiler.py``) and the host; nothing defines these twice. Prose: ``docs/chip.md``.

Mesh
----
``K = mesh_x * mesh_y`` cores; core ``k`` sits at ``(x, y) = (k % mesh_x, k // mesh_x)``.  Every core has
a router with five ports; packets travel by dimension-order routing (X first, then Y), which is
deadlock free on a mesh.  Packets for the host (``to_host``) travel west along their row and leave
the mesh through the west port of column 0, where an arbiter merges the rows into the output ring.

Output ring
-----------
Host packets are appended to a ring buffer of ``out_fifo`` entries (a power of two, at most
``OUT_WIN_SIZE``).  ``OUT_COUNT`` is the number of entries not yet acknowledged.  Reading
``OUT_WIN + i`` returns entry ``i`` counted from the oldest unacknowledged one, and changes nothing,
so a read whose reply was lost can simply be executed again; writing ``n`` to ``OUT_ACK`` drops the
``n`` oldest entries (a write executes once: the link answers a repeated one DUPLICATE).

Routing tables
--------------
Each core has ``MAX_DESTS`` table entries.  A non-zero output of local neuron ``j`` is sent once per
valid entry ``e`` as a packet ``(e.x, e.y, e.to_host, index = e.base + j, value)``: multicast to every
core of the next layer (``index`` = axon there), or to the host (``index`` = neuron of the layer).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from . import contract as C
from .core_map import CoreGeometry

MAX_MESH = 8  #: mesh_x, mesh_y <= 8
COORD_BITS = 3
INDEX_BITS = 16  #: axon (next layer) or neuron (host) index carried by a packet
MAX_DESTS = 8  #: routing-table entries per core (a layer may span up to 8 cores)


@dataclass(frozen=True)
class ChipGeometry:
    """What a chip build offers (read from the identify reply or given for the simulated board)."""

    mesh_x: int
    mesh_y: int
    core: CoreGeometry
    out_fifo: int = 2048
    #: the cores run rule programs (``rtl/program_core.py``: core register ``VERSION`` =
    #: ``core_map.PROGRAM_CORE_VERSION``); otherwise the v1 rule only
    programs: bool = False

    @property
    def cores(self) -> int:
        return self.mesh_x * self.mesh_y


def packet_fields() -> dict[str, int]:
    """Packet fields and widths (the value is signed, the rest unsigned)."""
    return {"x": COORD_BITS, "y": COORD_BITS, "to_host": 1, "index": INDEX_BITS, "value": C.X_BITS}


class Port(enum.IntEnum):
    """Router ports."""

    LOCAL = 0
    NORTH = 1  #: towards y - 1
    EAST = 2  #: towards x + 1
    SOUTH = 3  #: towards y + 1
    WEST = 4  #: towards x - 1 (column 0: the host)


def route(x: int, y: int, dx: int, dy: int, to_host: bool) -> Port:
    """Dimension-order routing decision of the router at (x, y) (the RTL implements the same)."""
    if to_host:
        return Port.WEST
    if dx > x:
        return Port.EAST
    if dx < x:
        return Port.WEST
    if dy > y:
        return Port.SOUTH
    if dy < y:
        return Port.NORTH
    return Port.LOCAL


@dataclass(frozen=True)
class RouteEntry:
    """One routing-table entry of a core."""

    x: int = 0
    y: int = 0
    to_host: bool = False
    base: int = 0
    valid: bool = True

    def pack(self) -> int:
        """Entry word: valid | to_host << 1 | x << 2 | y << 5 | base << 8 (24 bits)."""
        return (int(self.valid) | int(self.to_host) << 1 | self.x << 2 | self.y << (2 + COORD_BITS)
                | self.base << (2 + 2 * COORD_BITS))

    @classmethod
    def unpack(cls, w: int) -> RouteEntry:
        m = (1 << COORD_BITS) - 1
        return cls(valid=bool(w & 1), to_host=bool(w >> 1 & 1), x=w >> 2 & m, y=w >> (2 + COORD_BITS) & m,
                   base=w >> (2 + 2 * COORD_BITS) & ((1 << INDEX_BITS) - 1))


ROUTE_ENTRY_BITS = 2 + 2 * COORD_BITS + INDEX_BITS


class ChipReg(enum.IntEnum):
    """Chip-level registers (target ``CHIP`` of the chip bus)."""

    CHIP_ID = 0  #: read-only: CHIP_ID_VALUE
    MESH = 1  #: read-only: mesh_x | mesh_y << 8
    N_CORES = 2  #: read-only
    N_PHASES = 3  #: layers in use: a step runs phases 0 .. N_PHASES-1
    RUN = 4  #: reserved (no register): steps run by the bus operation RUN n; a read or write here is an error
    CLEAR = 5  #: write 1: sample start on every core (u := 0, s := 0, pending inputs dropped)
    STATUS = 6  #: read-only: bit0 busy
    OUT_COUNT = 7  #: read-only: entries waiting (not acknowledged) in the output ring
    OUT_ACK = 8  #: write-only: n drops the n oldest output entries (n > OUT_COUNT: an error, nothing dropped)
    STEPS = 9  #: read-only: steps run since reset
    CYCLES = 10  #: read-only: clock cycles of the last step
    DESIGN_ID = 11  #: read-only: hash of the build configuration (checked by the host)
    OUT_DROPS = 12  #: read-only: outputs lost because the output ring was full (must stay 0)
    CORE_PHASE_BASE = 32  #: + k: phase (layer) of core k; 0xF = unused core
    ROUTE_BASE = 64  #: + k * MAX_DESTS + e: routing entry e of core k (RouteEntry.pack())
    #: read-only window, + i (i < OUT_WIN_SIZE): output entry i from the oldest unacknowledged one,
    #: ``index | value << 16`` (value 9-bit signed), OUT_EMPTY for i >= OUT_COUNT; reading changes nothing
    OUT_WIN = 0x1000


OUT_WIN_SIZE = 0x1000  #: addresses of the output window, and the largest output ring (entries)
OUT_EMPTY = 0xFFFFFFFF  #: what the window reads beyond OUT_COUNT (no entry has bits above 24 set)


CHIP_ID_VALUE = 0x504C4D31  #: "PLM1"

# --------------------------------------------------------------------------------------------
# bus address map (32-bit word addresses)
# --------------------------------------------------------------------------------------------
CORE_REGION = 1 << 31  #: bit 31 set: core access; clear: chip register (ChipReg)
CORE_SHIFT = 25  #: core index at bits [25, 31)
MEM_SHIFT = 21  #: core_map.Mem at bits [21, 25)
IDX_BITS = 21  #: element-group index at bits [0, 21)


def elems_per_word(mem, lanes: int) -> int:
    """Elements of a lane memory carried by one 32-bit bus word (1 for scalar memories and REG)."""
    from .core_map import MEMS

    info = MEMS.get(mem)
    if info is None or not info.lanes:
        return 1
    return min(lanes, max(1, 32 // info.bits))


def core_addr(core: int, mem, idx: int) -> int:
    """Bus address of element group ``idx`` of memory ``mem`` (a core_map.Mem) of core ``core``."""
    return CORE_REGION | core << CORE_SHIFT | int(mem) << MEM_SHIFT | idx


def chip_addr(reg, offset: int = 0) -> int:
    """Bus address of chip register ``reg`` (+ offset for the per-core tables)."""
    return int(reg) + offset


#: ``CORE_PHASE_BASE + k`` value of an unused core (the phase field is 4 bits)
UNUSED_PHASE = 0xF
#: layers one chip runs: phases 0 .. MAX_PHASES - 1 (the identify reply's ``layers``); a bundle may
#: have up to ``contract.MAX_LAYERS``, the compiler refuses more than this
MAX_PHASES = UNUSED_PHASE

# --------------------------------------------------------------------------------------------
# the sample engine (``rtl/engine.py``): samples queued on the chip, coded there, compact results
# --------------------------------------------------------------------------------------------
ENGINE_BASE = 0x2000  #: chip register addresses ENGINE_BASE .. ENGINE_BASE + ENGINE_SPAN - 1
ENGINE_SPAN = 0x2000
FEATURES_PER_WORD = 4  #: input queue words carry 4 uint8 features, feature 4w + b in byte b
RECORD_VALUE_BITS = C.U_BITS  #: a result record packs the output layer's membranes end to end, this wide


class EngineReg(enum.IntEnum):
    """Registers of the sample engine, at ``ENGINE_BASE +`` these offsets (chip bus, bit 31 clear).

    The host queues samples as uint8 features (``IN``), or as event words; for every complete sample the
    engine clears the chip (CLEAR), writes each step's inputs to every layer-0 core -- ``x_t =
    rshift_round(feature * ramp[t], 8)`` (``CODING`` = ``EngineCoding.DIRECT``), the spikes of
    ``plasticore.coding.rate_spikes`` (``EngineCoding.RATE``: xorshift32 from the Weyl value ``RNG``, which
    steps by ``RATE_WEYL`` at every sample start), or the step's events (``EngineCoding.EVENTS``, an event
    of another step than its place in the sorted order allows is skipped and counted in ``ERRORS``); zeros
    are not written: an axon not written in a step reads 0 -- runs the step (RUN 1,
    then acknowledges whatever reached the output ring), and after the last step reads the output
    layer's membranes into a result record (:func:`pack_record`).  H carries over (``h_persist =
    never``) or stays (not plastic), or, with an H0 store, is rewritten from it after CLEAR (``h_persist =
    sample``: the host loads the store once a run).
    A chip without an engine does not decode these addresses as engine registers: the host checks ``ID``.
    """

    ID = 0  #: read-only: ENGINE_ID_VALUE (a chip without an engine answers another value or a bus error)
    INFO = 1  #: read-only: log2(input queue words) | log2(result ring words) << 8 | max steps << 16
    STEPS = 2  #: steps per sample, 1 .. max steps (0: the engine runs nothing)
    INPUTS = 3  #: features per sample (layer-0 inputs)
    X_CORES = 4  #: layer-0 cores, 0 .. MAX_DESTS (their core ids at X_CORE_BASE)
    U_SLICES = 5  #: output-layer slices, 1 .. MAX_DESTS (at U_SLICE_BASE), in neuron order
    RECORD_WORDS = 6  #: words of a result record: record_words(output neurons)
    IN = 7  #: write-only port: the input queue (a write to a full queue is an error, nothing queued)
    IN_FREE = 8  #: read-only: free words in the input queue
    RES_COUNT = 9  #: read-only: result records waiting (not acknowledged)
    RES_ACK = 10  #: write-only: n drops the n oldest records (n > RES_COUNT: an error, nothing dropped)
    DONE = 11  #: read-only: samples finished since reset
    ERRORS = 12  #: read-only: chip bus requests of the engine that were rejected (must stay 0)
    CODING = 13  #: :class:`EngineCoding`
    RNG = 14  #: the Weyl value w of the next sample to start (rate coding: ``plasticore.coding.rate_weyl``)
    H0_WORDS = 15  #: read-only: words of the engine's H0 store (0: it has none)
    X_CORE_BASE = 16  #: + e: core id of layer-0 core e
    U_SLICE_BASE = 24  #: + e: output slice e, :func:`u_slice_word`
    #: runs of the H0 store written to the chip at every sample start, after CLEAR (0 .. ENGINE_MAX_H0_RUNS):
    #: H := H0 of ``h_persist = sample`` layers; writing it also rewinds the store's write pointer
    H0_RUNS = 32
    H0_IN = 33  #: write-only port: the next word of the H0 store (run after run)
    H0_RUN_BASE = 40  #: + 2r: bus address of run r's first word; + 2r + 1: its words (consecutive addresses)
    RAMP_BASE = 0x100  #: + t (t < max steps): ramp[t] (0 .. 256)
    #: read-only window, + i: RES_WIN + i once that word exists: a read that waits on the chip (so the host
    #: need not poll); OUT_EMPTY if the engine can run nothing more first (no complete sample queued, or
    #: no room in the result ring) and the word does not exist; it changes nothing
    RES_NEXT = 0x800
    #: read-only window, + i: word i of the result records from the oldest unacknowledged one;
    #: OUT_EMPTY beyond the records waiting; reading changes nothing
    RES_WIN = 0x1000


class EngineCoding(enum.IntEnum):
    """The engine's input codings (``EngineReg.CODING``): the bundle's ``coding.kind``."""

    DIRECT = 0  #: graded x_t = rshift_round(feature * ramp[t], 8)
    RATE = 1  #: spikes from xorshift32 (``coding.rng = xorshift32``)
    EVENTS = 2  #: coded inputs, queued as event words (:func:`pack_events`): the chip writes them as they are


ENGINE_MAX_H0_RUNS = 8  #: runs of the H0 store (one per core slice of a layer that resets H)
assert EngineReg.H0_RUN_BASE + 2 * ENGINE_MAX_H0_RUNS <= EngineReg.RAMP_BASE

#: the most steps per sample an engine build may offer (its ramp table sits at RAMP_BASE .. RES_WIN)
ENGINE_MAX_STEPS = C.MAX_TIMESTEPS
ENGINE_ID_VALUE = 0x31454C50  #: "PLE1"
assert EngineReg.RAMP_BASE + ENGINE_MAX_STEPS <= EngineReg.RES_NEXT
#: the most result-ring words an engine build may have (the RES_NEXT window's span)
ENGINE_MAX_RES_WORDS = EngineReg.RES_WIN - EngineReg.RES_NEXT


#: the registers the host writes in one run (consecutive addresses, in this order)
assert (EngineReg.INPUTS, EngineReg.X_CORES, EngineReg.U_SLICES, EngineReg.RECORD_WORDS) == tuple(
    EngineReg.INPUTS + k for k in range(4))
SLICE_NEURONS_SHIFT = 8  #: U_SLICE_BASE words: core id in the bits below, neurons from here up


def u_slice_word(core: int, neurons: int) -> int:
    """The U_SLICE_BASE + e word of an output slice: ``core | neurons << SLICE_NEURONS_SHIFT``."""
    return core | neurons << SLICE_NEURONS_SHIFT


@dataclass(frozen=True)
class EngineInfo:
    """What a sample engine offers (its INFO register): queue sizes in 32-bit words, ramp entries; and
    its H0 store's words."""

    in_words: int
    res_words: int
    max_steps: int
    h0_words: int = 0  #: the H0 store (register H0_WORDS, not INFO)

    def pack(self) -> int:
        """``log2(in_words) | log2(res_words) << 8 | max_steps << 16``."""
        return (self.in_words.bit_length() - 1) | (self.res_words.bit_length() - 1) << 8 | self.max_steps << 16

    @classmethod
    def decode(cls, info: int) -> EngineInfo:
        return cls(1 << (info & 0xFF), 1 << (info >> 8 & 0xFF), info >> 16 & 0xFFFF)


def engine_addr(reg: EngineReg, offset: int = 0) -> int:
    """Bus address of sample-engine register ``reg`` (+ offset for the tables and the window)."""
    return ENGINE_BASE + int(reg) + offset


def feature_words(n_features: int) -> int:
    """Input queue words of one sample."""
    return -(-n_features // FEATURES_PER_WORD)


def pack_features(features) -> list[int]:
    """One sample's uint8 features as input queue words (zero-padded to whole words)."""
    import numpy as np

    f = np.zeros(feature_words(len(features)) * FEATURES_PER_WORD, np.uint32)
    f[:len(features)] = np.asarray(features, np.uint32)
    w = f.reshape(-1, FEATURES_PER_WORD) << (np.arange(FEATURES_PER_WORD, dtype=np.uint32) * 8)
    return [int(v) for v in w.sum(axis=1, dtype=np.uint32)]


#: Event words (``EngineCoding.EVENTS``): a sample is its non-zero inputs, one word each -- axon, value
#: (the X word, two's complement) and step, in these fields -- sorted by step, then ``EVENT_END``
EVENT_AXON_BITS = (C.MAX_AXONS - 1).bit_length()
EVENT_VALUE_SHIFT, EVENT_VALUE_BITS = EVENT_AXON_BITS, C.X_BITS
EVENT_STEP_SHIFT = EVENT_VALUE_SHIFT + EVENT_VALUE_BITS
EVENT_STEP_BITS = (C.MAX_TIMESTEPS - 1).bit_length()
EVENT_END = 1 << 31  #: the end of a sample's events (bit 31: no event word has it)
assert EVENT_STEP_SHIFT + EVENT_STEP_BITS <= 31


def pack_events(x) -> list[int]:
    """One sample's coded inputs x (T, A) as event words: every non-zero x[t, i], step by step, axon by
    axon, then EVENT_END."""
    import numpy as np

    x = np.asarray(x, np.int64)
    t, i = np.nonzero(x)  # row-major: sorted by step, then axon
    v = x[t, i] & ((1 << EVENT_VALUE_BITS) - 1)
    w = i | v << EVENT_VALUE_SHIFT | t << EVENT_STEP_SHIFT
    return [int(e) for e in w] + [EVENT_END]


def record_words(n_out: int) -> int:
    """Words of a result record of ``n_out`` membranes (RECORD_VALUE_BITS each, packed end to end)."""
    return -(-n_out * RECORD_VALUE_BITS // 32)


def pack_record(values) -> list[int]:
    """A result record: value j (two's complement) at bits [24 j, 24 j + 24) of the record, word i = bits
    [32 i, 32 i + 32) (what the engine builds; the host decodes with :func:`unpack_record`)."""
    bits = 0
    mask = (1 << RECORD_VALUE_BITS) - 1
    for j, v in enumerate(values):
        bits |= (int(v) & mask) << (RECORD_VALUE_BITS * j)
    return [bits >> (32 * i) & 0xFFFFFFFF for i in range(record_words(len(values)))]


def unpack_record(words, n_out: int) -> list[int]:
    """The ``n_out`` signed membranes of a result record."""
    from .core_map import from_bits

    bits = sum(int(w) << (32 * i) for i, w in enumerate(words))
    return [from_bits(bits >> (RECORD_VALUE_BITS * j), RECORD_VALUE_BITS, True) for j in range(n_out)]
