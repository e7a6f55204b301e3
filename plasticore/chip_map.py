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
