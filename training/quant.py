"""Integer scales of a trained layer and fake-quantisation with straight-through gradients.

The exporter and the quantisation-aware forward use the same :func:`layer_scales`, so the float
model trains on exactly the integer grid the bundle will hold (``docs/spec.md`` §4):

=============  =========================================================================
quantity       integer grid (real value of one LSB)
=============  =========================================================================
W              ``2^-w_exp``, int8; ``w_exp`` the largest with ``max|W|·2^w_exp <= 127.5``
u, b, θ        ``2^-u_frac`` with ``u_frac = w_exp + x_frac + acc_shift``;
               ``acc_shift = clip(U_FRAC_TARGET - w_exp - x_frac, 0, 8)``
α              ``2^-(alpha_shift + u_frac - x_frac - 12)``, int16 with |α_int| <= 2^14
β              ``2^-dh_shift``, int16, ``dh_shift`` the largest with ``max|β|·2^dh_shift <= 32767``
η              ``2^-6``
H              ``2^-12``, clipped at ``h_clamp``
λ, decay       ``k/256``
=============  =========================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from plasticore import contract as C

#: Target fractional bits of the membrane (real range ±2^(23-16) = ±128).
U_FRAC_TARGET = 16
#: |alpha_int| is kept at or below this (headroom in the 16-bit register).
ALPHA_INT_MAX = 1 << 14


def round_half_up(v: torch.Tensor) -> torch.Tensor:
    """floor(v + 0.5): the contract's rounding of a value already divided by its step."""
    return torch.floor(v + 0.5)


class _FakeQuant(torch.autograd.Function):
    """Round half up to a power-of-two ``step`` (optional clip in LSB units); identity gradient.
    One autograd node instead of the five of ``v + (q - v).detach()``."""

    @staticmethod
    def forward(ctx, v, step, lo, hi):
        q = torch.floor(v * (1.0 / step) + 0.5)
        if lo is not None or hi is not None:
            q = torch.clamp(q, lo, hi)
        return q * step

    @staticmethod
    def backward(ctx, g):
        return g, None, None, None


def fq(v: torch.Tensor, step: float, lo: float | None = None, hi: float | None = None) -> torch.Tensor:
    """Fake-quantise ``v`` to multiples of ``step`` (a power of two; round half up, optional clip in
    LSB units); straight-through gradient."""
    return _FakeQuant.apply(v, float(step), lo, hi)


@dataclass(frozen=True)
class LayerScales:
    x_frac: int
    w_exp: int
    acc_shift: int
    u_frac: int
    theta_int: int
    recip: int
    recip_shift: int
    alpha_shift: int
    alpha_int: int
    a_frac: int
    dh_shift: int

    @property
    def u_step(self) -> float:
        return 2.0 ** -self.u_frac

    @property
    def w_step(self) -> float:
        return 2.0 ** -self.w_exp

    @property
    def theta_q(self) -> float:
        return self.theta_int * self.u_step

    @property
    def alpha_q(self) -> float:
        return self.alpha_int * 2.0 ** -self.a_frac

    @property
    def beta_step(self) -> float:
        return 2.0 ** -self.dh_shift

    @property
    def kappa(self) -> float:
        """z_int = round(u * kappa): u (real) -> u/θ in 1/64 units through the reciprocal."""
        return 2.0 ** self.u_frac * self.recip / 2.0 ** self.recip_shift


def _floor_log2_ratio(limit: float, m: float, default: int, lo: int, hi: int) -> int:
    if not m > 0 or not math.isfinite(m):
        return default
    e = math.floor(math.log2(limit / m))
    while e > lo and round(m * 2.0 ** e) > limit:  # guard against log2 rounding
        e -= 1
    return int(min(max(e, lo), hi))


def layer_scales(W: torch.Tensor, theta: float, alpha: float, beta: torch.Tensor, x_frac: int,
                 u_frac_target: int = U_FRAC_TARGET) -> LayerScales:
    """Integer scales of a layer with float weights ``W`` and meta parameters (α, β)."""
    wmax = float(W.detach().abs().max()) if W.numel() else 0.0
    w_exp = _floor_log2_ratio(127.5, wmax, default=u_frac_target - x_frac, lo=-16,
                              hi=u_frac_target + 2 - x_frac)
    acc_shift = int(min(max(u_frac_target - w_exp - x_frac, 0), C.ACC_SHIFT_MAX))
    u_frac = w_exp + x_frac + acc_shift
    if not 0 <= u_frac <= 40:
        raise ValueError(f"weights out of range for the integer contract (max|W| = {wmax})")
    theta_int = int(min(max(round(theta * 2.0 ** u_frac), 1), C.smax(C.THETA_BITS)))
    recip, recip_shift = C.recip_for_theta(theta_int)
    base = u_frac - x_frac - C.H_FRAC  # a_frac = alpha_shift + base
    alpha = float(alpha)
    if alpha == 0.0 or not math.isfinite(alpha):
        alpha_shift, alpha_int = 0, 0
    else:
        a_frac = _floor_log2_ratio(ALPHA_INT_MAX, abs(alpha), default=0, lo=-64, hi=64)
        alpha_shift = int(min(max(a_frac - base, 0), C.SHIFT_MAX))
        alpha_int = int(C.sat(round(alpha * 2.0 ** (alpha_shift + base)), C.ALPHA_BITS))
    bmax = float(beta.detach().abs().max()) if beta.numel() else 0.0
    dh_shift = _floor_log2_ratio(32767.0, bmax, default=C.SHIFT_MAX, lo=0, hi=C.SHIFT_MAX)
    return LayerScales(x_frac=x_frac, w_exp=w_exp, acc_shift=acc_shift, u_frac=u_frac, theta_int=theta_int,
                       recip=recip, recip_shift=recip_shift, alpha_shift=alpha_shift, alpha_int=alpha_int,
                       a_frac=alpha_shift + base, dh_shift=dh_shift)
