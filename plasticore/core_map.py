"""Register and memory map of one plasticore hybrid core (``plasticore.rtl.core.HybridCore``).

The RTL, the testbenches, the host protocol and the compiler import these names; nothing defines
them twice.  Prose: ``docs/core.md``.

Access port
-----------
The core has one memory-access stream (``bus``): a request carries ``we`` (1 = write), ``mem`` (a
:class:`Mem`), ``addr`` (word address inside that memory), ``mask`` (one write-enable bit per lane)
and ``data`` (one memory word).  Reads answer on ``bus_rsp`` with the word, in request order.
Requests are accepted only while the core is idle (not running a step).

Word layout
-----------
*Lane memories* (``W``, ``H``, ``HMASK``, ``F``) hold ``P`` elements (one per lane = neuron) per
word; lane ``k`` occupies bits ``[k*w, (k+1)*w)`` (``w`` = element width), two's complement.
Neuron ``j`` lives in group ``g = j // P``, lane ``k = j % P``.  Matrix memories (A x N) store
the row of axon ``i`` for group ``g`` at word ``g * n_axons + i`` where ``n_axons`` is the
*active* axon count (register ``N_AXONS``), so a layer smaller than the core is packed densely.
Scalar memories hold one element per word: per-neuron ``B``, ``ETA``, ``U``, ``S`` at address
``j``; per-axon ``BETA``, ``X`` at ``i``; ``LUT`` at ``k`` (0..511).  ``REG`` words are the scalar
registers of :class:`Reg` at address = register id.

Writing ``X`` (or sending an event on the ``axon_in`` stream) sets the input of one axon for the
next step; the core keeps a list of the non-zero axons (event-driven dendrite).  Inputs are
consumed (cleared) by the step.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from . import contract as C
from . import rules as R

CORE_ID = 0x504C4331  #: "PLC1": value of register ``ID``
CORE_VERSION = 1  #: value of register ``VERSION`` (HybridCore, CompactCore: the v1 rule)
PROGRAM_CORE_VERSION = 2  #: ``VERSION`` of a program core (rule programs: PROGRAM_MEMS, ProgReg)

MEM_BITS = 4  #: width of the ``mem`` field of a bus request


class Mem(enum.IntEnum):
    """Memory ids of the access port."""

    W = 0  #: global weights, lane memory, A x N, int8
    H = 1  #: plastic weights, lane memory, A x N, int16 (observable, evolves every plastic step)
    HMASK = 2  #: H mask m, lane memory, A x N, 1 bit
    B = 3  #: bias, N, int24
    BETA = 4  #: presynaptic gain, A, int16
    ETA = 5  #: postsynaptic offset, N, int16
    LUT = 6  #: post-function table, 512, int16
    U = 7  #: membrane, N, int24 (state)
    S = 8  #: last output, N, 9-bit signed (state: spikes 0/1 or ANN output)
    X = 9  #: inputs of the next step, A, 9-bit signed (writes go through the axon buffer)
    F = 10  #: post-function value f_j of the last plastic step, lane memory, N, int16 (debug)
    # the program core's (rtl/program_core.py) memories for rule programs (contract v2)
    XTR = 11  #: presynaptic trace per axon, A, int16 (state: zero at a sample start)
    YTR = 12  #: postsynaptic trace per neuron, N, int16 (state: zero at a sample start)
    MT = 13  #: the host's third-factor input t_j, N, int16 (kept until rewritten)
    TEACH = 14  #: teaching current into the soma, N, int24 membrane units (kept until rewritten)
    REG = 15  #: scalar registers, address = :class:`Reg`


@dataclass(frozen=True)
class MemInfo:
    bits: int  #: element width
    signed: bool
    lanes: bool  #: True: P elements per word (lane memory)
    kind: str  #: "matrix" (A x N), "neuron" (N), "axon" (A), "lut" (512), "group" (N, lane words)


MEMS: dict[Mem, MemInfo] = {
    Mem.W: MemInfo(C.W_BITS, True, True, "matrix"),
    Mem.H: MemInfo(C.H_BITS, True, True, "matrix"),
    Mem.HMASK: MemInfo(1, False, True, "matrix"),
    Mem.B: MemInfo(C.B_BITS, True, False, "neuron"),
    Mem.BETA: MemInfo(C.BETA_BITS, True, False, "axon"),
    Mem.ETA: MemInfo(C.ETA_BITS, True, False, "neuron"),
    Mem.LUT: MemInfo(C.F_BITS, True, False, "lut"),
    Mem.U: MemInfo(C.U_BITS, True, False, "neuron"),
    Mem.S: MemInfo(C.X_BITS, True, False, "neuron"),
    Mem.X: MemInfo(C.X_BITS, True, False, "axon"),
    Mem.F: MemInfo(C.F_BITS, True, True, "group"),
}

#: the memories only the program core has (rule programs, contract v2)
PROGRAM_MEMS: dict[Mem, MemInfo] = {
    Mem.XTR: MemInfo(R.TRACE_BITS, True, False, "axon"),
    Mem.YTR: MemInfo(R.TRACE_BITS, True, False, "neuron"),
    Mem.MT: MemInfo(R.M_BITS, True, False, "neuron"),
    Mem.TEACH: MemInfo(C.U_BITS, True, False, "neuron"),
}
#: every memory of either core kind
ALL_MEMS: dict[Mem, MemInfo] = {**MEMS, **PROGRAM_MEMS}


#: Registers that are not a plain :data:`plasticore.contract.LAYER_PARAMS` row: name -> (id, width, signed).
#: Parameters (read/write) below ``CMD``; status registers read-only.
_OTHER_REGS: dict[str, tuple[int, int, bool]] = {
    "HEBB_NEG": (11, 1, False),  # 1: hebb_sign = -1
    "SOMA": (12, 1, False),  # contract.SomaMode
    "RESET": (13, 1, False),  # contract.ResetMode
    "ANN_ACT": (14, 1, False),  # contract.AnnAct
    "INPUT_KIND": (15, 1, False),  # contract.InputKind (x_frac 0 / 8)
    "PLASTIC": (16, 1, False),  # 1: LPU runs after the soma
    "EMIT": (17, 1, False),  # 1: non-zero outputs leave on the ``spike_out`` stream
    "N_AXONS": (18, 11, False),  # active axons (1..A_max); also the row stride of matrix memories
    "N_NEURONS": (19, 11, False),  # active neurons (1..N_max)
    "CMD": (24, 2, False),  # write-only: bit values of :class:`Cmd`
    "STATUS": (25, 1, False),  # read-only: bit0 busy
    "CYCLES": (26, 32, False),  # read-only: clock cycles of the last step (start .. done)
    "EVENTS": (27, 11, False),  # read-only: entries in the input event list (non-zero axons written)
    "OUT_COUNT": (28, 11, False),  # read-only: non-zero outputs produced by the last step
    "STEPS": (29, 32, False),  # read-only: steps run since reset
    "GEOM_A": (30, 11, False),  # read-only: A_max
    "GEOM_N": (31, 11, False),  # read-only: N_max
    "GEOM_P": (32, 6, False),  # read-only: lanes P
    "ID": (33, 32, False),  # read-only: CORE_ID
    "VERSION": (34, 8, False),  # read-only: CORE_VERSION
}
_PARAM_ROWS = {p.name.upper(): p for p in C.LAYER_PARAMS if p.reg is not None}
_REG_IDS = {**{n: p.reg for n, p in _PARAM_ROWS.items()}, **{n: v[0] for n, v in _OTHER_REGS.items()}}
assert len(set(_REG_IDS.values())) == len(_REG_IDS), "two registers share an id"

#: Scalar registers (``Mem.REG``, address = id): one per register-backed row of
#: :data:`plasticore.contract.LAYER_PARAMS` (same name, upper case) and those of ``_OTHER_REGS``.
Reg = enum.IntEnum("Reg", sorted(_REG_IDS.items(), key=lambda kv: kv[1]), module=__name__)


class Cmd(enum.IntFlag):
    STEP = 1  #: run one time step
    CLEAR = 2  #: sample start: u := 0, s := 0 for all neurons, input events dropped


REG_BITS = 6  #: the register id space (0..63)

#: (width, signed) of every register
REGS: dict[Reg, tuple[int, bool]] = {
    r: ((_PARAM_ROWS[r.name].reg_bits, _PARAM_ROWS[r.name].signed) if r.name in _PARAM_ROWS
        else _OTHER_REGS[r.name][1:]) for r in Reg}
#: the parameter registers (read/write, loaded from a bundle layer)
PARAM_REGS = tuple(r for r in Reg if r < Reg.CMD)
READONLY_REGS = (Reg.STATUS, Reg.CYCLES, Reg.EVENTS, Reg.OUT_COUNT, Reg.STEPS, Reg.GEOM_A, Reg.GEOM_N,
                 Reg.GEOM_P, Reg.ID, Reg.VERSION)


class ProgReg(enum.IntEnum):
    """The program core's rule-program registers (``Mem.REG`` addresses above :class:`Reg`'s); the
    terms follow at :func:`term_reg`."""

    N_TERMS = 40  #: terms of the program (0..K_MAX)
    PRE_DECAY = 41  #: presynaptic trace decay k/256
    POST_DECAY = 42  #: postsynaptic trace decay k/256
    M_KIND = 43  #: plasticore.rules.MKind: 0 direct, 1 error


#: the fields of one term's registers, in address order, and their (width, signed)
TERM_FIELDS: dict[str, tuple[int, bool]] = {
    "pre": ((len(R.Pre) - 1).bit_length(), False),  # index in plasticore.rules.Pre
    "post": ((len(R.Post) - 1).bit_length(), False),  # index in plasticore.rules.Post
    "c": (R.COEF_BITS, True),
    "shift": (C.SHIFT_MAX.bit_length(), False),
    "c_shift": (C.SHIFT_MAX.bit_length(), False),
}
PROG_REGS: dict[int, tuple[int, bool]] = {
    ProgReg.N_TERMS: ((R.K_MAX).bit_length(), False), ProgReg.PRE_DECAY: (C.FRAC8_BITS, False),
    ProgReg.POST_DECAY: (C.FRAC8_BITS, False), ProgReg.M_KIND: (1, False)}


def term_reg(k: int, name: str) -> int:
    """The register address of field ``name`` of term ``k``."""
    return max(ProgReg) + 1 + len(TERM_FIELDS) * k + list(TERM_FIELDS).index(name)


PROG_REGS.update({term_reg(k, f): wf for k in range(R.K_MAX) for f, wf in TERM_FIELDS.items()})
assert min(PROG_REGS) > max(_REG_IDS.values()) and max(PROG_REGS) < 1 << REG_BITS


def program_reg_values(prog: R.RuleProgram) -> dict[int, int]:
    """The register values (address -> signed value) of a rule program; unused terms are zero."""
    vals = {ProgReg.N_TERMS: len(prog.terms), ProgReg.PRE_DECAY: prog.pre_decay,
            ProgReg.POST_DECAY: prog.post_decay, ProgReg.M_KIND: list(R.MKind).index(prog.m_kind)}
    for k in range(R.K_MAX):
        t = prog.terms[k] if k < len(prog.terms) else None
        vals.update({term_reg(k, "pre"): list(R.Pre).index(t.pre) if t else 0,
                     term_reg(k, "post"): list(R.Post).index(t.post) if t else 0,
                     term_reg(k, "c"): t.c if t else 0, term_reg(k, "shift"): t.shift if t else 0,
                     term_reg(k, "c_shift"): t.c_shift if t else 0})
    return {int(a): int(v) for a, v in vals.items()}


def program_writes(prog: R.RuleProgram) -> list[Write]:
    """Bus writes loading a rule program into a program core's registers."""
    return [Write(Mem.REG, a, to_bits(v, PROG_REGS[a][0]), 1) for a, v in program_reg_values(prog).items()]


@dataclass(frozen=True)
class CoreGeometry:
    """Build-time geometry of a core: ``a_max`` axons, ``n_max`` neurons, ``lanes`` P."""

    a_max: int = 256
    n_max: int = 256
    lanes: int = 16

    def __post_init__(self):
        if self.lanes not in C.LANES_ALLOWED:
            raise ValueError(f"lanes P={self.lanes} not in {C.LANES_ALLOWED}")
        if not 1 <= self.a_max <= C.MAX_AXONS:
            raise ValueError(f"a_max={self.a_max} not in 1..{C.MAX_AXONS}")
        if not 1 <= self.n_max <= C.MAX_NEURONS:
            raise ValueError(f"n_max={self.n_max} not in 1..{C.MAX_NEURONS}")

    @property
    def groups(self) -> int:
        """G_max = ceil(n_max / P): neuron groups (lane words per axon row)."""
        return -(-self.n_max // self.lanes)

    @property
    def n_pad(self) -> int:
        return self.groups * self.lanes

    def depth(self, mem: Mem) -> int:
        kind = ALL_MEMS[mem].kind
        return {"matrix": self.a_max * self.groups, "neuron": self.n_pad, "axon": self.a_max,
                "lut": C.LUT_SIZE, "group": self.groups}[kind]

    def word_bits(self, mem: Mem) -> int:
        info = ALL_MEMS[mem]
        return info.bits * (self.lanes if info.lanes else 1)

    @property
    def data_bits(self) -> int:
        """Width of the bus data field: the widest memory word or register."""
        return max(max(self.word_bits(m) for m in ALL_MEMS), max(w for w, _ in REGS.values()))

    @property
    def addr_bits(self) -> int:
        deepest = max(max(self.depth(m) for m in ALL_MEMS), 1 << REG_BITS)
        return max(1, int(deepest - 1).bit_length())

    @property
    def axon_bits(self) -> int:
        return max(1, int(self.a_max - 1).bit_length())

    @property
    def neuron_bits(self) -> int:
        return max(1, int(self.n_pad - 1).bit_length())


DEFAULT_GEOMETRY = CoreGeometry(256, 256, 16)


# ------------------------------------------------------------------------------------------
# packing helpers (host side and testbenches)
# ------------------------------------------------------------------------------------------
def to_bits(v: int, bits: int) -> int:
    return int(v) & ((1 << bits) - 1)


def from_bits(v: int, bits: int, signed: bool) -> int:
    v = int(v) & ((1 << bits) - 1)
    if signed and v >> (bits - 1):
        v -= 1 << bits
    return v


def pack_lanes(values, bits: int) -> int:
    """Pack a sequence of ints into one word, element k at bits [k*bits, (k+1)*bits)."""
    w = 0
    for k, v in enumerate(values):
        w |= to_bits(v, bits) << (k * bits)
    return w


def unpack_lanes(word: int, bits: int, lanes: int, signed: bool) -> list[int]:
    return [from_bits(int(word) >> (k * bits), bits, signed) for k in range(lanes)]


@dataclass(frozen=True)
class Write:
    """One bus write: memory, word address, data word, lane mask."""

    mem: Mem
    addr: int
    data: int
    mask: int


def matrix_words(arr: np.ndarray, geom: CoreGeometry, mem: Mem) -> list[Write]:
    """Bus writes loading an (A, N) matrix into lane memory ``mem`` (A = active axon stride)."""
    arr = np.asarray(arr, np.int64)
    A, N = arr.shape
    P, bits = geom.lanes, ALL_MEMS[mem].bits
    out = []
    for g in range(-(-N // P)):
        j0, j1 = g * P, min(N, g * P + P)
        mask = (1 << (j1 - j0)) - 1
        for i in range(A):
            out.append(Write(mem, g * A + i, pack_lanes(arr[i, j0:j1], bits), mask))
    return out


def vector_words(vec, mem: Mem) -> list[Write]:
    """Bus writes loading a per-neuron/per-axon/LUT vector into a scalar memory."""
    bits = ALL_MEMS[mem].bits
    return [Write(mem, k, to_bits(v, bits), 1) for k, v in enumerate(np.asarray(vec, np.int64))]


def reg_write(reg: Reg, value: int) -> Write:
    return Write(Mem.REG, int(reg), to_bits(value, REGS[reg][0]), 1)


def layer_registers(layer) -> dict[Reg, int]:
    """Register values of a bundle layer (``plasticore.bundle.Layer``)."""
    regs = {Reg[n]: int(getattr(layer, p.name)) for n, p in _PARAM_ROWS.items()}
    regs.update({
        Reg.HEBB_NEG: int(layer.hebb_sign < 0), Reg.SOMA: int(layer.soma), Reg.RESET: int(layer.reset),
        Reg.ANN_ACT: int(layer.ann_act), Reg.INPUT_KIND: int(layer.input_kind),
        Reg.PLASTIC: int(bool(layer.plastic)), Reg.N_AXONS: layer.n_in, Reg.N_NEURONS: layer.n_out,
    })
    return regs


def layer_writes(layer, geom: CoreGeometry, H: np.ndarray | None = None, emit: bool = True) -> list[Write]:
    """Every bus write that deploys ``layer`` (tensors, registers) into a core of geometry ``geom``.

    ``H`` overrides the plastic matrix (default ``layer.H0``).  State (U, S) is not written: issue
    :attr:`Cmd.CLEAR` at a sample start.
    """
    if layer.n_in > geom.a_max or layer.n_out > geom.n_max:
        raise ValueError(f"layer {layer.n_in}x{layer.n_out} does not fit core {geom.a_max}x{geom.n_max}")
    ws = [reg_write(r, v) for r, v in layer_registers(layer).items()]
    ws.append(reg_write(Reg.EMIT, int(emit)))
    ws += matrix_words(layer.W, geom, Mem.W)
    ws += matrix_words(layer.H0 if H is None else H, geom, Mem.H)
    ws += matrix_words(layer.hmask, geom, Mem.HMASK)
    ws += vector_words(layer.b, Mem.B)
    ws += vector_words(layer.eta, Mem.ETA)
    ws += vector_words(layer.beta, Mem.BETA)
    ws += vector_words(layer.lut, Mem.LUT)
    return ws


def matrix_read_addrs(A: int, N: int, geom: CoreGeometry) -> list[int]:
    """Word addresses to read back an (A, N) matrix, in the order :func:`unpack_matrix` expects."""
    return [g * A + i for g in range(-(-N // geom.lanes)) for i in range(A)]


def unpack_matrix(words, A: int, N: int, geom: CoreGeometry, mem: Mem) -> np.ndarray:
    """Inverse of :func:`matrix_words` for words read at :func:`matrix_read_addrs`."""
    info, P = ALL_MEMS[mem], geom.lanes
    out = np.zeros((A, N), np.int64)
    it = iter(words)
    for g in range(-(-N // P)):
        j0, j1 = g * P, min(N, g * P + P)
        for i in range(A):
            out[i, j0:j1] = unpack_lanes(next(it), info.bits, P, info.signed)[: j1 - j0]
    return out
