"""A v1 plastic layer's whole sequence without materialising H at every step (float forward only).

Without the clamp, the plastic matrix after step t is a decayed sum of outer products::

    H_t = d^(t+1)·H0 + σ·Σ_{τ≤t} d^(t−τ)·D_τ,   D_τ = g_τᵀ f_τ / B (shared) or g_τ^(b) ⊗ f_τ^(b) (sample)

with g_τ = β⊙x_τ, f_τ = f(u_τ/θ − η), σ the Hebbian sign and d the plastic decay, so the α-term
x_t·H_{t−1} needs only inner products of inputs, never H itself::

    x_t·H_{t−1} = d^t·(x_t·H0) + σ·Σ_{τ<t} d^(t−1−τ)·⟨x_t, g_τ⟩·f_τ

* ``sample`` (the chip's per-sample H): ⟨x_t^(b), g_τ^(b)⟩ is a (B, T, T) tensor; a step costs O(B·t·N)
  instead of the B×A×N of a per-sample H.
* ``shared`` (the authors' batch-mean H) with a *separable* input x_t = r_t·x (direct coding in the
  float forward): ⟨x_t^(b), g_τ^(b')⟩ = r_t·r_τ·G[b, b'] with one Gram matrix G = x·(β⊙x)ᵀ, and
  Σ_τ d^(t−1−τ)·r_τ·f_τ is carried as one (B, N) state Q: a step costs a (B×B)·(B×N) product instead
  of two B×A×N products.

The result equals the step-by-step float forward (``model.hybrid_step``) whenever the clamp ±c
cannot act; :func:`layer_sequence` proves that from the sequence's own values
(|H_t| ≤ |d|·|H_{t−1}|max + max|g_t|·max|f_t|, starting at max|H0|) and returns None otherwise, so the
caller runs the step path.

A quantisation-aware forward (``q.sc``) runs the sequence form only when the caller lets H go
unrounded inside a sample (``round_h=False``, what training does by default): every other rounding of
the integer step is kept (g, the α-term, the leak, the clamps of u, f from the table), but H and g⊗f
are not put on the 2^-12 grid at every step, so the forward is within those roundings of the integer
path instead of equal to it.  Evaluation and the exactness tests keep ``round_h=True`` (the step path).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from plasticore import contract as C

from .quant import fq

__all__ = ["Separable", "layer_sequence", "eligible", "step_path", "STATS"]

#: how often the sequence form ran and how often it fell back to the step path (the clamp could act)
STATS = {"sequence": 0, "fallback": 0}
_ENABLED = [True]


@contextmanager
def step_path():
    """Within the block every layer runs step by step (the reference the benchmarks and tests compare with)."""
    _ENABLED.append(False)
    try:
        yield
    finally:
        _ENABLED.pop()


@dataclass
class Separable:
    """Inputs x_t = ramp[t] · base: ``base`` (B, A), ``ramp`` (T,) (direct coding in the float forward)."""

    base: torch.Tensor
    ramp: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.base.shape[0], self.ramp.shape[0], self.base.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    def dense(self) -> torch.Tensor:
        """(B, T, A)."""
        return self.base[:, None, :] * self.ramp[None, :, None]

    def to(self, dtype: torch.dtype) -> Separable:
        return Separable(self.base.to(dtype), self.ramp.to(dtype))


def eligible(q, h_mode: str, H0: torch.Tensor, x, m, round_h: bool = True) -> bool:
    """Whether :func:`layer_sequence` can run this layer: a float forward (or a quantisation-aware one
    that may leave H unrounded: not ``round_h``), v1 rule, no task mask, no third factor, one shared
    initial H, and a form that is cheaper than the step path."""
    o = q.opts
    if not _ENABLED[-1]:
        return False
    if not (o.plastic and (q.sc is None or not round_h) and q.rule is None and q.hmask is None and m is None
            and H0.dim() == 2):
        return False
    if isinstance(x, Separable) and q.sc is not None:  # (the separable form does not round g)
        return False
    return h_mode == "sample" or (h_mode == "shared" and isinstance(x, Separable))


def layer_sequence(q, x, H0: torch.Tensor, h_mode: str, soma_fn, f_fn, teach=None,
                   keep_h: bool = True):
    """Run all T steps of one plastic layer. ``x``: (B, T, A) tensor or :class:`Separable`; ``teach``
    None, (B, N) or (B, T, N). Returns ``(u, s, H)`` with u, s (B, T, N) and H the final plastic matrix
    ((A, N) shared, (B, A, N) sample, None when not ``keep_h`` in sample mode), or None when the clamp
    could act (the caller then runs the step path). ``soma_fn(q, u, s, I)`` -> (u, s): the neurons' step
    (``model.lif_soma``); ``f_fn(q, u)``: the post factor f (the table under quantisation)."""
    o, sc = q.opts, q.sc
    ulo, uhi = float(C.smin(C.U_BITS)), float(C.smax(C.U_BITS))
    d, sign, cl = float(q.decay), float(o.hebb_sign), o.h_clamp_real()
    sep = isinstance(x, Separable)
    B, T, A = x.shape
    H0 = H0.to(q.W.dtype)
    h0 = bool(H0.any())  # (a per-sample H trained from 0 stays 0: no x·H0 product)
    if sep:
        xb, r = x.base, x.ramp
        xW = xb @ q.W  # (B, N), scaled by r_t each step
        xH = xb @ H0 if h0 else None  # (H0 carries no gradient)
        gx = xb * q.beta
        if h_mode == "shared":
            G = xb @ gx.t()  # G[b, b'] = <x_b, β⊙x_b'>
        else:
            gam = (xb * gx).sum(1, keepdim=True)  # <x_b, β⊙x_b>
        gmax = gx.detach().abs().max() * r.detach().abs()  # max|g_t| per step
    else:
        X = x
        xW = X @ q.W  # (B, T, N)
        xH = X @ H0 if h0 else None
        GX = X * q.beta
        if sc is not None:  # g = sat16(rshift_round(β·x, x_frac)) on β's grid
            GX = fq(GX, sc.beta_step, C.smin(C.G_BITS), C.smax(C.G_BITS))
        Cm = torch.einsum("bta,bsa->bts", X, GX)  # <x_t, β⊙x_τ> per sample
        gmax = GX.detach().abs().amax(dim=(0, 2))
        F = []
    u = s = None
    Q = None
    us, ss = [], []
    hb = float(H0.detach().abs().max()) if H0.numel() else 0.0
    gm = gmax.tolist()
    for t in range(T):
        if sep:
            rt = r[t]
            xw, xh = xW * rt, (None if xH is None else xH * rt)
            if Q is None:
                acc = 0.0
            elif h_mode == "shared":
                acc = rt * (G @ Q) * (1.0 / B)
            else:
                acc = rt * gam * Q
        else:
            xw, xh = xW[:, t], (None if xH is None else xH[:, t])
            if t == 0:
                acc = 0.0
            else:
                w = torch.tensor([d ** (t - 1 - k) for k in range(t)], dtype=Cm.dtype)
                acc = torch.bmm((Cm[:, t, :t] * w).unsqueeze(1), torch.stack(F, 1)).squeeze(1)
        ih = q.alpha * (sign * acc if xh is None else (d ** t) * xh + sign * acc)
        if sc is not None:
            ih = fq(ih, sc.u_step, ulo, uhi)
        cur = xw + q.b + ih
        if teach is not None:
            cur = cur + (teach[:, t] if teach.dim() == 3 else teach)
        if u is None:
            u = s = torch.zeros_like(cur)
        u, s = soma_fn(q, u, s, cur)
        f = f_fn(q, u)
        hb = abs(d) * hb + gm[t] * float(f.detach().abs().max())
        if hb > cl:
            STATS["fallback"] += 1
            return None
        if sep:
            Q = r[t] * f if Q is None else d * Q + r[t] * f
        else:
            F.append(f)
        us.append(u)
        ss.append(s)
    STATS["sequence"] += 1
    H = None
    dT = d ** T
    if sep and h_mode == "shared":
        H = dT * H0 + (sign / B) * (gx.t() @ Q)
    elif keep_h:
        if sep:
            H = dT * H0 + sign * gx[:, :, None] * Q[:, None, :]
        else:
            w = torch.tensor([d ** (T - 1 - k) for k in range(T)], dtype=GX.dtype)
            H = dT * H0 + sign * torch.einsum("bta,btn->ban", GX * w[None, :, None], torch.stack(F, 1))
    return torch.stack(us, 1), torch.stack(ss, 1), H
