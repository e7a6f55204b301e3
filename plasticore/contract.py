"""The integer contract of the plasticore hybrid core.

Every width, scale, rounding and saturation rule of the hardware is defined here, once.  The golden
model (``plasticore.golden``), the torch deploy mode (``plasticore.training``), the RTL
(``plasticore.rtl``) and the host (``plasticore.host``) import these names; ``docs/spec.md`` is the
prose form of the same rules.

Conventions
-----------
* ``sat(v, bits)`` clamps a signed value to ``[-2**(bits-1), 2**(bits-1) - 1]``.
* ``rshift_round(v, s)`` is ``floor((v + 2**(s-1)) / 2**s)`` for ``s > 0`` and ``v`` for ``s == 0``:
  round half up, computed in hardware as "add half, arithmetic shift right".
* Fractions such as the leak ``lam`` are ``k/256`` with ``k`` in ``[0, 256]`` (9-bit unsigned, so
  256 is exactly 1.0, "no leak").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------------------------
# Widths (bits, two's complement unless stated)
# --------------------------------------------------------------------------------------------
X_BITS = 9  #: layer input x: signed 9 bit; spikes are 0/1, graded inputs 0..255 (ANN identity: -128..127)
X_GRADED_MAX = 255
X_MIN = -(1 << (X_BITS - 1))
W_BITS = 8  #: global weight W, int8
B_BITS = 24  #: bias b, membrane units
U_BITS = 24  #: membrane u, saturating
THETA_BITS = 24  #: threshold theta, positive, membrane units (1 .. 2**23-1)
ACC_SHIFT_MAX = 8  #: dendrite W-accumulator left shift into membrane units (0..8)
H_BITS = 16  #: plastic weight H, int16
H_FRAC = 12  #: H real value = H / 2**12  (so +-4.0 == +-16384)
ALPHA_BITS = 16  #: alpha, signed, per core/layer
SHIFT_MAX = 40  #: maximum right shift of alpha*accH, u*recip, g*f, ANN pre-activation
FRAC8_BITS = 9  #: lam, decay: k/256 with k in [0, 256]
FRAC8_ONE = 256
BETA_BITS = 16  #: beta per axon, signed
G_BITS = 16  #: presynaptic term g = sat16(rshift_round(beta * x, x_frac))
ETA_BITS = 16  #: eta per neuron, signed, in Z units
RECIP_BITS = 16  #: theta reciprocal multiplier, unsigned
Z_FRAC = 6  #: z = u/theta - eta is held with 6 fractional bits
LUT_INDEX_BITS = 9  #: post-function table: 512 entries indexed by clamp(z, -256, 255) + 256
LUT_SIZE = 1 << LUT_INDEX_BITS
LUT_HALF = LUT_SIZE // 2
F_BITS = 16  #: table entries f, signed, real value f / 2**F_FRAC
F_FRAC = 12
ANN_OUT_BITS = 8  #: ANN soma output: ReLU -> 0..255, identity -> -128..127

# Accumulator widths that can never overflow for the geometry limits below (no saturation in
# the dendrite, so the accumulation order is irrelevant):
#   |x*W| <= 256*128  -> |accW| <= 2**15 * MAX_AXONS
#   |x*H| <= 256*2**15 -> |accH| <= 2**23 * MAX_AXONS


# --------------------------------------------------------------------------------------------
# Core geometry limits
# --------------------------------------------------------------------------------------------
MAX_AXONS = 1024  #: inputs of one layer/core
MAX_NEURONS = 1024  #: neurons of one core (a wider layer is split over cores by neuron)
MAX_LAYERS = 16
MAX_TIMESTEPS = 1024
LANES_ALLOWED = (1, 2, 4, 8, 16, 32)  #: P: neurons/synapses processed per clock


def acc_w_bits(axons: int = MAX_AXONS) -> int:
    """Width of the W accumulator that cannot overflow for ``axons`` inputs."""
    return 16 + int(np.ceil(np.log2(max(axons, 1)))) + 1


def acc_h_bits(axons: int = MAX_AXONS) -> int:
    """Width of the H accumulator that cannot overflow for ``axons`` inputs."""
    return 24 + int(np.ceil(np.log2(max(axons, 1)))) + 1


ACC_W_BITS = acc_w_bits()
ACC_H_BITS = acc_h_bits()


class SomaMode(enum.IntEnum):
    """Per-core soma mode."""

    LIF = 0  #: spiking: leaky integrate and fire
    ANN = 1  #: graded: shift, ReLU or identity, saturate to 8 bits


class ResetMode(enum.IntEnum):
    SOFT = 0  #: subtract theta after a spike
    HARD = 1  #: set u to ``u_reset`` (default 0) after a spike


class AnnAct(enum.IntEnum):
    RELU = 0
    IDENTITY = 1


class HPersist(enum.IntEnum):
    """When H returns to its initial value H0."""

    NEVER = 0  #: H carries over from sample to sample (learning accumulates on chip)
    SAMPLE = 1  #: H := H0 at the start of every sample


class InputKind(enum.IntEnum):
    """What a layer receives on its axons."""

    SPIKE = 0  #: 0/1 (x_frac = 0)
    GRADED = 1  #: integers in [-128, 255], real value x / 256 (x_frac = 8)


X_FRAC = {InputKind.SPIKE: 0, InputKind.GRADED: 8}


class PostFn(enum.StrEnum):
    """Named post-synaptic functions for the programmable table (any 512 int16 table is legal)."""

    TANH = "tanh"
    IDENTITY = "identity"
    SIGN = "sign"


# --------------------------------------------------------------------------------------------
# Arithmetic primitives (vectorised, int64)
# --------------------------------------------------------------------------------------------
def smin(bits: int) -> int:
    return -(1 << (bits - 1))


def smax(bits: int) -> int:
    return (1 << (bits - 1)) - 1


def ann_range(act) -> tuple[int, int]:
    """The ANN soma's output range ``(lo, hi)`` for activation ``act`` (:class:`AnnAct`), from
    :data:`ANN_OUT_BITS`: ReLU 0..255, identity -128..127."""
    if AnnAct(int(act)) is AnnAct.RELU:
        return 0, (1 << ANN_OUT_BITS) - 1
    return smin(ANN_OUT_BITS), smax(ANN_OUT_BITS)


def sat(v, bits: int):
    """Saturate ``v`` (int, numpy array or torch tensor) to a signed ``bits``-bit range."""
    lo, hi = smin(bits), smax(bits)
    return v.clip(lo, hi) if hasattr(v, "clip") else min(max(v, lo), hi)


def rshift_round(v, s: int):
    """Round-half-up arithmetic right shift: ``floor((v + 2**(s-1)) / 2**s)``; identity for s == 0."""
    if s == 0:
        return v
    return (v + (1 << (s - 1))) >> s


def mul_frac8(v, k):
    """``rshift_round(v * k, 8)``: multiply by the fraction k/256 (k in 0..256)."""
    return rshift_round(v * k, 8)


# --------------------------------------------------------------------------------------------
# Post-function tables
# --------------------------------------------------------------------------------------------
def lut_z_values() -> np.ndarray:
    """Real z value of every table entry: (index - 256) / 64, i.e. [-4, 4) in steps of 1/64."""
    return (np.arange(LUT_SIZE) - LUT_HALF) / float(1 << Z_FRAC)


def make_lut(fn: PostFn | str) -> np.ndarray:
    """Build the 512-entry int16 table for a named post function (entry = round(f(z) * 2**12))."""
    fn = PostFn(fn)
    z = lut_z_values()
    if fn is PostFn.TANH:
        f = np.tanh(z)
    elif fn is PostFn.IDENTITY:
        f = z
    else:
        f = np.sign(z)
    return sat(np.round(f * (1 << F_FRAC)).astype(np.int64), F_BITS).astype(np.int16)


def recip_for_theta(theta: int, shift: int | None = None) -> tuple[int, int]:
    """Choose ``(recip, recip_shift)`` so that ``rshift_round(u*recip, recip_shift) ~= u/theta * 64``.

    ``recip`` is the largest-precision unsigned 16-bit multiplier: recip = round(2**(shift+6)/theta).
    """
    if theta <= 0:
        raise ValueError(f"theta must be positive, got {theta}")
    if shift is None:
        shift = 0
        while shift < SHIFT_MAX and round((1 << (shift + 1 + Z_FRAC)) / theta) < (1 << RECIP_BITS):
            shift += 1
    recip = int(round((1 << (shift + Z_FRAC)) / theta))
    if not 0 < recip < (1 << RECIP_BITS):
        raise ValueError(f"theta {theta}: reciprocal {recip} does not fit {RECIP_BITS} bits (shift {shift})")
    return recip, shift


@dataclass(frozen=True)
class FieldRange:
    """Inclusive integer range of a bundle parameter or tensor."""

    lo: int
    hi: int

    def check(self, a) -> bool:
        a = np.asarray(a)
        return bool(a.size == 0 or (a.min() >= self.lo and a.max() <= self.hi))


@dataclass(frozen=True)
class LayerParam:
    """A scalar integer parameter of a layer, defined once: its name (the bundle field, the
    ``plasticore.bundle.Layer`` attribute and, upper-cased, the core register), legal range and default
    (None: required), and the core register it is loaded into (``reg``: register id in
    ``plasticore.core_map.Reg``, ``reg_bits`` wide, signed when the range is; None: not a register).
    ``since``: the bundle version that added it (an older bundle lacks it and gets the default)."""

    name: str
    range: FieldRange
    default: int | None
    reg: int | None = None
    reg_bits: int = 0
    doc: str = ""
    since: int = 1

    @property
    def signed(self) -> bool:
        return self.range.lo < 0


_SHIFT = FieldRange(0, SHIFT_MAX)

#: The scalar layer parameters, in bundle order.  A new parameter is a row here (bundle field, range,
#: default, validation, core register and its width follow) plus its use in the equations
#: (``plasticore/golden.py``, which the torch deploy step shares) and the RTL datapath.
LAYER_PARAMS: tuple[LayerParam, ...] = (
    LayerParam("theta", FieldRange(1, smax(THETA_BITS)), None, 0, THETA_BITS, "firing threshold (membrane units)"),
    LayerParam("lam", FieldRange(0, FRAC8_ONE), FRAC8_ONE, 1, FRAC8_BITS, "membrane leak, k/256"),
    LayerParam("decay", FieldRange(0, FRAC8_ONE), FRAC8_ONE, 2, FRAC8_BITS, "H decay per step, k/256"),
    LayerParam("alpha", FieldRange(smin(ALPHA_BITS), smax(ALPHA_BITS)), 0, 3, ALPHA_BITS,
               "gain of the plastic current alpha * accH"),
    LayerParam("alpha_shift", _SHIFT, 0, 4, 6, "right shift of alpha * accH"),
    LayerParam("acc_shift", FieldRange(0, ACC_SHIFT_MAX), 0, 5, 4, "left shift of accW into membrane units"),
    LayerParam("recip", FieldRange(0, (1 << RECIP_BITS) - 1), 1, 6, RECIP_BITS, "1/theta multiplier of z"),
    LayerParam("recip_shift", _SHIFT, 0, 7, 6, "right shift of u * recip"),
    LayerParam("dh_shift", _SHIFT, 0, 8, 6, "right shift of g * f (the v1 rule)"),
    LayerParam("h_clamp", FieldRange(0, smax(H_BITS)), smax(H_BITS), 9, H_BITS - 1, "|H| limit"),
    LayerParam("ann_shift", _SHIFT, 0, 10, 6, "right shift of the ANN pre-activation"),
    LayerParam("hebb_sign", FieldRange(-1, 1), 1, None, 0, "sign of the v1 rule (register HEBB_NEG)"),
    LayerParam("u_frac", FieldRange(0, SHIFT_MAX), 0, None, 0, "fractional bits of u (metadata: float views)"),
    LayerParam("u_reset", FieldRange(smin(U_BITS), smax(U_BITS)), 0, 20, U_BITS,
               "membrane value after a spike when reset = hard", since=3),
)
PARAMS_BY_NAME: dict[str, LayerParam] = {p.name: p for p in LAYER_PARAMS}

#: Legal ranges of every integer parameter and tensor of a layer (used by bundle validation,
#: the torch exporter, the host and the RTL register map).
RANGES: dict[str, FieldRange] = {
    "W": FieldRange(smin(W_BITS), smax(W_BITS)),
    "b": FieldRange(smin(B_BITS), smax(B_BITS)),
    "H0": FieldRange(smin(H_BITS), smax(H_BITS)),
    "hmask": FieldRange(0, 1),
    "beta": FieldRange(smin(BETA_BITS), smax(BETA_BITS)),
    "eta": FieldRange(smin(ETA_BITS), smax(ETA_BITS)),
    "lut": FieldRange(smin(F_BITS), smax(F_BITS)),
    **{p.name: p.range for p in LAYER_PARAMS},
}
