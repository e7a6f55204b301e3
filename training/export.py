"""Export a trained :class:`~plasticore.training.model.HybridNet` to the integer bundle format.

The integer scales come from :func:`plasticore.training.quant.layer_scales` -- the very function the
quantisation-aware forward uses -- so the bundle holds exactly the grid values the model trained on
(``docs/spec.md`` §4):

* ``W_int = round(W·2^w_exp)`` (int8), ``acc_shift``, ``u_frac = w_exp + x_frac + acc_shift``;
* ``b = round(b·2^u_frac)``, ``theta = round(θ·2^u_frac)``, ``recip, recip_shift = recip_for_theta``;
* ``alpha = round(α·2^(alpha_shift + u_frac − x_frac − 12))`` (0 for non-plastic layers);
* ``beta = round(β·2^dh_shift)``, ``eta = round(η·64)``, ``lut = make_lut(post_fn)``;
* ``H0 = round(H·4096)`` (the carried H), ``h_clamp`` from the clamp option;
* task masks ``W⊙M + α·H⊙(1−M)`` are exported as ``W := W⊙M``, ``hmask := 1 − M``.
"""

from __future__ import annotations

import numpy as np
import torch

from plasticore import contract as C
from plasticore.bundle import Bundle, InputCoding, Layer, ramp_for, validate

from .model import HybridNet


def _rnd(v: torch.Tensor | np.ndarray, scale: float) -> np.ndarray:
    v = np.asarray(v.detach().double().cpu().numpy() if isinstance(v, torch.Tensor) else v, np.float64)
    return np.floor(v * scale + 0.5).astype(np.int64)


def export_layer(layer, input_kind: C.InputKind, h_persist: str | None = None) -> Layer:
    o = layer.opts
    sc = layer.scales()
    W = layer.W.detach() * (layer.mask if layer.use_mask else 1.0)
    W_int = np.clip(_rnd(W, 2.0 ** sc.w_exp), -128, 127)
    b = C.sat(_rnd(layer.b, 2.0 ** sc.u_frac), C.B_BITS)
    h_clamp = o.h_clamp_int()
    H0 = np.clip(_rnd(layer.H, float(1 << C.H_FRAC)), -h_clamp, h_clamp)
    hmask = (1 - np.round(layer.mask.detach().cpu().numpy())) if layer.use_mask else np.ones(H0.shape)
    plastic = bool(o.plastic)
    beta_t = torch.clamp(layer.beta, min=0.0) if o.beta_nonneg else layer.beta
    beta = C.sat(_rnd(beta_t, 2.0 ** sc.dh_shift), C.BETA_BITS) if plastic else np.zeros(layer.n_in, np.int64)
    eta = C.sat(_rnd(layer.eta, 2.0 ** C.Z_FRAC), C.ETA_BITS) if plastic else np.zeros(layer.n_out, np.int64)
    persist = h_persist or o.h_persist
    return Layer(
        W=W_int.astype(np.int8), b=b.astype(np.int32), H0=H0.astype(np.int16), hmask=hmask.astype(np.uint8),
        beta=beta.astype(np.int16), eta=eta.astype(np.int16), lut=C.make_lut(o.post_fn), post_fn=o.post_fn,
        theta=sc.theta_int, lam=int(o.lam), decay=int(o.decay),
        alpha=sc.alpha_int if plastic else 0, alpha_shift=sc.alpha_shift if plastic else 0,
        acc_shift=sc.acc_shift, recip=sc.recip, recip_shift=sc.recip_shift,
        dh_shift=sc.dh_shift if plastic else 0, h_clamp=h_clamp, ann_shift=0, hebb_sign=int(o.hebb_sign),
        u_frac=sc.u_frac, soma=C.SomaMode.LIF,
        reset=C.ResetMode.SOFT if o.reset == "soft" else C.ResetMode.HARD,
        ann_act=C.AnnAct.RELU,
        h_persist=C.HPersist.NEVER if persist == "never" else C.HPersist.SAMPLE,
        input_kind=input_kind, plastic=plastic, rule=layer.rule_program() if plastic else None,
    )


def export_bundle(net: HybridNet, name: str = "network", h_persist: str | None = None,
                  meta: dict | None = None) -> Bundle:
    """Quantise ``net`` into a validated :class:`Bundle` (``h_persist`` overrides every layer's)."""
    cfg = net.cfg
    layers = []
    kind = C.InputKind.GRADED if cfg.coding == "direct" else C.InputKind.SPIKE
    for L in net.layers:
        layers.append(export_layer(L, kind, h_persist))
        kind = C.InputKind.SPIKE
    coding = InputCoding(kind=cfg.coding, tau=float(cfg.tau),
                         ramp=ramp_for(cfg.tau, cfg.timesteps) if cfg.coding == "direct" else [],
                         seed=int(cfg.coding_seed))
    b = Bundle(layers=layers, timesteps=int(cfg.timesteps), coding=coding, name=name,
               meta=dict(meta or {}, variant=cfg.variant, sizes=list(cfg.sizes), exporter="plasticore.training"))
    validate(b)
    return b
