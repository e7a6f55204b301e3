"""The global-local hybrid spiking network in torch (docs/training.md, "The model"; integers: docs/spec.md §3).

Shape of the API (as in snnTorch / Norse): a **functional step** (:func:`hybrid_step`) over explicit
state, wrapped by a **stateful module** (:class:`HybridLayer`) and a network (:class:`HybridNet`).

Per layer and time step (x_t the input, H the local plastic matrix, ``m`` the H mask)::

    I_t = x_t·(W⊙M) + b + α·(x_t·(H_{t-1}⊙m))  [+ teaching current on the output layer]
    u_t = (u_{t-1} − θ·s_{t-1})·λ + I_t          (soft reset; hard: u_{t-1}·(1 − s_{t-1}))
    s_t = [u_t > θ]                               rectangular surrogate: ∂s/∂u = 1 for |u − θ| < 0.5
    H_t = clamp(decay·H_{t-1} + sign·(β⊙x_t)ᵀ ⊗ f(u_t/θ − η), ±c)

A layer may run a rule program instead (``RuleOptions.rule``, contract v2, ``plasticore.rules``):
``ΔH = Σ_k c_k·pre_k ⊗ post_k`` with the third factor ``m`` from the host; the per-term coefficients
are meta-parameters (``HybridLayer.rule_c``), quantised with straight-through gradients exactly as
the integer program rounds (:func:`program_update`).

With ``qat=True`` (the default) every quantity is fake-quantised to the integer grid of the
contract (``docs/spec.md``) with straight-through gradients, in the order the integer core rounds:
the α-term, the leak product, z = u/θ − η through the reciprocal, f from the 512-entry table, g = β·x,
g⊗f and the H decay.  In float64 this forward equals the integer deploy mode exactly; in float32 it
differs only by rare last-bit effects.

H semantics (``h_mode``):

* ``shared`` -- the authors' code: one H for the whole mini-batch, batch-mean update, carried across
  mini-batches (the carried H is the H0 of the exported bundle);
* ``sample`` -- the chip's semantics vectorised: every sample starts from H0 and evolves its own H.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from plasticore import contract as C
from plasticore import rules as R

from . import lowrank
from .quant import LayerScales, fq, layer_scales

U_MAX = float(C.smax(C.U_BITS))
U_MIN = float(C.smin(C.U_BITS))


class SpikeFn(torch.autograd.Function):
    """Heaviside forward, rectangular surrogate backward (|u − θ| < width)."""

    @staticmethod
    def forward(ctx, v, width):
        ctx.save_for_backward(v)
        ctx.width = width
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, g):
        (v,) = ctx.saved_tensors
        return g * (v.abs() < ctx.width).to(g.dtype), None


def spike(v: torch.Tensor, width: float = 0.5) -> torch.Tensor:
    return SpikeFn.apply(v, width)


def post_function(name: str, z: torch.Tensor) -> torch.Tensor:
    if name == "tanh":
        return torch.tanh(z)
    if name == "identity":
        return z
    if name == "sign":
        return torch.sign(z)
    raise ValueError(f"unknown post function {name!r}")


@dataclass
class RuleOptions:
    """Neuron and plasticity-rule options of one layer (every option of the contract)."""

    theta: float = 0.35
    lam: int = 102  #: leak λ = lam/256 (0.4 -> 102)
    decay: int = 243  #: plastic decay = decay/256 (0.95 -> 243)
    post_fn: str = "tanh"  #: tanh | identity | sign (deployed as a 512-entry table)
    hebb_sign: int = 1
    clamp: float | None = 4.0  #: H clamp: 4.0, 2.0 or None (int16 range, ≈ ±8)
    reset: str = "soft"  #: soft | hard
    h_persist: str = "sample"  #: deployed H persistence: sample (H := H0 per sample) | never
    plastic: bool = True
    surrogate_width: float = 0.5
    #: the float (``qat=False``) forward's leak / plastic decay when set (the authors' exact 0.4 / 0.95);
    #: the QAT forward and the export keep ``lam/256`` and ``decay/256`` (the contract's grid)
    lam_exact: float | None = None
    decay_exact: float | None = None
    rule: str | None = None  #: a rule program string (contract v2); None: the v1 rule above
    coefs: dict = field(default_factory=dict)  #: initial values of the rule's named coefficients
    m_kind: str = "direct"  #: direct | error (m = t − f(u) formed on chip)
    pre_decay: int = 256  #: trace decays k/256
    post_decay: int = 256
    beta_nonneg: bool = False  #: β >= 0 (the authors' fmnist rule)

    def h_clamp_int(self) -> int:
        if self.clamp is None:
            return C.smax(C.H_BITS)
        return int(min(round(self.clamp * (1 << C.H_FRAC)), C.smax(C.H_BITS)))

    def h_clamp_real(self) -> float:
        return self.h_clamp_int() / float(1 << C.H_FRAC)


@dataclass
class LayerState:
    u: torch.Tensor
    s: torch.Tensor
    H: torch.Tensor  #: (A, N) shared or (B, A, N) per sample
    xtr: torch.Tensor | None = None  #: presynaptic traces (B, A) (rule programs)
    ytr: torch.Tensor | None = None  #: postsynaptic traces (B, N)


@dataclass
class QParams:
    """The (fake-)quantised parameters of a layer for one forward pass."""

    W: torch.Tensor
    b: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    eta: torch.Tensor
    hmask: torch.Tensor | None
    theta: float
    lam: float
    decay: float
    sc: LayerScales | None
    lut: torch.Tensor | None  #: real table values f/4096 (qat)
    opts: RuleOptions = field(default_factory=RuleOptions)
    x_scale: float = 1.0  #: real value of one LSB of x (1/256 graded, 1 spike)
    rule: list | None = None  #: parsed rule terms (plasticore.rules.ParsedTerm)
    rule_c: torch.Tensor | None = None  #: per-term coefficients (quantised with STE under qat)
    rule_scales: list | None = None  #: per-term (shift, p_frac)


class HybridLayer(nn.Module):
    """A fully connected hybrid layer: global (W, b), local H, meta-local (α, β, η)."""

    def __init__(self, n_in: int, n_out: int, opts: RuleOptions | None = None, input_kind: str = "spike",
                 train_global: bool = True, generator: torch.Generator | None = None):
        super().__init__()
        self.n_in, self.n_out = n_in, n_out
        self.opts = opts or RuleOptions()
        self.input_kind = input_kind
        bound = 1.0 / np.sqrt(n_in)
        self.W = nn.Parameter(torch.empty(n_in, n_out).uniform_(-bound, bound, generator=generator),
                              requires_grad=train_global)
        self.b = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound, generator=generator),
                              requires_grad=train_global)
        plastic = self.opts.plastic
        self.alpha = nn.Parameter(1e-2 * torch.rand((), generator=generator), requires_grad=plastic)
        self.beta = nn.Parameter(1e-2 * torch.rand(n_in, generator=generator), requires_grad=plastic)
        self.eta = nn.Parameter(1e-2 * torch.rand(n_out, generator=generator), requires_grad=plastic)
        if not plastic:
            with torch.no_grad():
                self.alpha.zero_()
                self.beta.zero_()
                self.eta.zero_()
        self.rule_terms = R.parse_rule(self.opts.rule, self.opts.coefs) if self.opts.rule else None
        self.rule_c = (nn.Parameter(torch.tensor([t.coef for t in self.rule_terms]), requires_grad=plastic)
                       if self.rule_terms else None)
        self.register_buffer("H", torch.zeros(n_in, n_out))  #: carried H (= exported H0)
        self.register_buffer("mask", torch.ones(n_in, n_out))  #: task mask M (W⊙M + α·H⊙(1−M))
        self.use_mask = False

    @property
    def x_frac(self) -> int:
        return 8 if self.input_kind == "graded" else 0

    def global_parameters(self):
        return [p for p in (self.W, self.b) if p.requires_grad]

    def meta_parameters(self):
        return [p for p in (self.alpha, self.beta, self.eta, self.rule_c) if p is not None and p.requires_grad]

    def rule_program(self) -> R.RuleProgram | None:
        """The integer program of this layer's rule with the current coefficients (None: v1 rule)."""
        if self.rule_terms is None:
            return None
        o = self.opts
        return R.compile_terms(self.rule_terms, self.rule_c.detach().double().tolist(), x_frac=self.x_frac,
                               beta_frac=self.scales().dh_shift, s_frac=0, pre_decay=o.pre_decay,
                               post_decay=o.post_decay, m_kind=o.m_kind)

    def scales(self) -> LayerScales:
        return layer_scales(self.W, self.opts.theta, float(self.alpha.detach()), self.beta, self.x_frac)

    def set_task_mask(self, M: torch.Tensor | None) -> None:
        if M is None:
            self.use_mask = False
            self.mask.fill_(1.0)
        else:
            self.use_mask = True
            self.mask.copy_(M.to(self.mask.dtype))

    def qparams(self, qat: bool = True) -> QParams:
        o = self.opts
        W, b, alpha, beta, eta = self.W, self.b, self.alpha, self.beta, self.eta
        lam, decay = o.lam / 256.0, o.decay / 256.0
        x_scale = 2.0 ** -self.x_frac
        hmask = (1.0 - self.mask) if self.use_mask else None
        if self.use_mask:
            W = W * self.mask
        if o.beta_nonneg:
            beta = torch.clamp(beta, min=0.0)
        if not qat:
            lam = o.lam_exact if o.lam_exact is not None else lam
            decay = o.decay_exact if o.decay_exact is not None else decay
            return QParams(W, b, alpha, beta, eta, hmask, o.theta, lam, decay, None, None, o, x_scale,
                           self.rule_terms, self.rule_c)
        sc = self.scales()
        Wq = fq(W, sc.w_step, -128, 127)
        bq = fq(b, sc.u_step, C.smin(C.B_BITS), C.smax(C.B_BITS))
        aq = alpha + (sc.alpha_q - alpha).detach() if o.plastic else alpha * 0
        betaq = fq(beta, sc.beta_step, C.smin(C.BETA_BITS), C.smax(C.BETA_BITS))
        etaq = fq(eta, 2.0 ** -C.Z_FRAC, C.smin(C.ETA_BITS), C.smax(C.ETA_BITS))
        lut = torch.as_tensor(C.make_lut(o.post_fn).astype(np.float64) / (1 << C.F_FRAC),
                              dtype=W.dtype, device=W.device)
        rule_c, rscales = self.rule_c, None
        if self.rule_terms is not None:
            rscales = [R.term_scales(t.pre, t.post, self.x_frac, sc.dh_shift, 0) for t in self.rule_terms]
            cq = []
            for k, (_, pf) in enumerate(rscales):
                c = float(self.rule_c[k].detach())
                ci, cs = R.quantise_coef(c, pf)
                cq.append(ci * 2.0 ** (pf - C.H_FRAC - cs))
            cq = torch.tensor(cq, dtype=self.rule_c.dtype)
            rule_c = self.rule_c + (cq - self.rule_c).detach()
        return QParams(Wq, bq, aq, betaq, etaq, hmask, sc.theta_q, lam, decay, sc, lut, o, x_scale,
                       self.rule_terms, rule_c, rscales)


def _start_h0(layer: HybridLayer, qat: bool, dtype=None) -> torch.Tensor:
    """The layer's starting H: its carried H, under qat on the exported H0's 2^-12 grid and clamp."""
    H = layer.H.to(dtype or layer.W.dtype)
    if qat:
        cl = layer.opts.h_clamp_real()
        H = torch.clamp(torch.floor(H * (1 << C.H_FRAC) + 0.5) / (1 << C.H_FRAC), -cl, cl)
    return H


def init_state(layer: HybridLayer, batch: int, h_mode: str, dtype=None, H: torch.Tensor | None = None,
               qat: bool = True):
    dtype = dtype or layer.W.dtype
    N = layer.n_out
    if H is None:
        H = _start_h0(layer, qat, dtype)
        if h_mode == "sample":
            H = H.expand(batch, *H.shape).clone()
        elif H is layer.H:  # never the buffer itself: carry=True overwrites it after the forward
            H = H.clone()
    tr = layer.rule_terms is not None
    return LayerState(u=torch.zeros(batch, N, dtype=dtype), s=torch.zeros(batch, N, dtype=dtype), H=H,
                      xtr=torch.zeros(batch, layer.n_in, dtype=dtype) if tr else None,
                      ytr=torch.zeros(batch, N, dtype=dtype) if tr else None)


def hybrid_step(q: QParams, st: LayerState, x: torch.Tensor, h_mode: str = "sample",
                teach: torch.Tensor | None = None, m: torch.Tensor | None = None) -> tuple[LayerState, torch.Tensor]:
    """One time step of one layer (functional). ``x`` (B, A) in real units; ``m`` (B, N) the host's
    third-factor input t in real units (m_int / 4096). Returns (state, I)."""
    o, sc = q.opts, q.sc
    H = st.H
    cur = x @ q.W + q.b
    if o.plastic:
        Hm = H if q.hmask is None else H * q.hmask
        accH = x @ Hm if Hm.dim() == 2 else torch.bmm(x.unsqueeze(1), Hm).squeeze(1)
        ih = q.alpha * accH
        if sc is not None:
            ih = fq(ih, sc.u_step, U_MIN, U_MAX)
        cur = cur + ih
    if teach is not None:
        cur = cur + teach
    u, s = lif_soma(q, st.u, st.s, cur)
    xtr, ytr = st.xtr, st.ytr
    if o.plastic and q.rule is not None:
        if xtr is not None:
            xtr, ytr = _trace(xtr, o.pre_decay, x, sc), _trace(ytr, o.post_decay, s, sc)
        H = program_update(q, H, x, u, s, m, xtr, ytr, h_mode)
    elif o.plastic:
        H = plastic_update(q, H, x, u, h_mode)
    return LayerState(u=u, s=s, H=H, xtr=xtr, ytr=ytr), cur


def lif_soma(q: QParams, u: torch.Tensor, s: torch.Tensor, cur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """u_t = (u − θ·s)·λ + I (soft; hard: u·(1 − s)·λ), s_t = [u_t > θ]; under qat I and u saturate to
    U_BITS and the leak product is rounded to the membrane's grid. Returns (u_t, s_t)."""
    o, sc = q.opts, q.sc
    if sc is not None:
        cur = torch.clamp(cur, U_MIN * sc.u_step, U_MAX * sc.u_step)
    v = u - q.theta * s if o.reset == "soft" else u * (1.0 - s)
    vl = v * q.lam
    if sc is not None:
        vl = fq(vl, sc.u_step)
    u = vl + cur
    if sc is not None:
        u = torch.clamp(u, U_MIN * sc.u_step, U_MAX * sc.u_step)
    return u, spike(u - q.theta, o.surrogate_width)


def _trace(tr: torch.Tensor, decay: int, inc: torch.Tensor, sc) -> torch.Tensor:
    """tr' = sat16(round(tr·decay/256) + inc) on the 2^-8 trace grid (inc: x or s in real units)."""
    v = tr * (decay / 256.0)
    if sc is None:
        return v + inc
    lim = C.smax(R.TRACE_BITS) / 2.0 ** R.TRACE_FRAC
    return torch.clamp(fq(v, 2.0 ** -R.TRACE_FRAC) + inc, -lim - 2.0 ** -R.TRACE_FRAC, lim)


def _lut_f(q: QParams, u: torch.Tensor) -> torch.Tensor:
    """f(u/θ − η): the table value under qat (straight-through to the continuous function)."""
    o, sc = q.opts, q.sc
    zc = u / q.theta - q.eta
    fcont = post_function(o.post_fn, zc)
    if sc is None:
        return fcont
    with torch.no_grad():
        ui = torch.round(u.double() / sc.u_step)
        zi = torch.floor(ui * sc.recip / 2.0 ** sc.recip_shift + 0.5) - torch.round(q.eta.double() * 64)
        idx = (torch.clamp(zi, -C.LUT_HALF, C.LUT_HALF - 1) + C.LUT_HALF).long()
        fval = q.lut[idx]
    return fcont + (fval - fcont).detach()


def program_update(q: QParams, H, x, u, s, m, xtr, ytr, h_mode: str) -> torch.Tensor:
    """The rule program in real units, rounded where the integer program rounds (qat)::

        p_k = q18(pre_k ⊗ post_k, 2^-p_frac_k);  dH = sat18(Σ_k q(c_k·p_k, 2^-12));  H' = clip(q(H·decay) + dH)

    ``shared`` mode uses the batch mean of the outer products (not the chip's semantics)."""
    o, sc = q.opts, q.sc
    f = _lut_f(q, u)
    m = torch.zeros_like(f) if m is None else m.to(f.dtype)
    mlim_hi, mlim_lo = C.smax(R.M_BITS) / 4096.0, C.smin(R.M_BITS) / 4096.0
    if o.m_kind == "error":
        m = m - f
        if sc is not None:
            m = torch.clamp(m, mlim_lo, mlim_hi)

    def q16(v):
        return v if sc is None else fq(v, 2.0 ** -R.M_FRAC, C.smin(R.M_BITS), C.smax(R.M_BITS))

    P = R.Post
    dh = None
    for k, t in enumerate(q.rule):
        if t.pre == R.Pre.ONE:
            a = torch.ones_like(x)
        elif t.pre == R.Pre.X:
            a = x
        elif t.pre == R.Pre.XTR:
            a = xtr
        elif t.pre == R.Pre.BETA:
            a = q.beta.expand_as(x)
        else:
            a = q.beta * x
            if sc is not None:
                a = fq(a, sc.beta_step, C.smin(C.G_BITS), C.smax(C.G_BITS))
        b = {P.ONE: lambda: torch.ones_like(f), P.LUT: lambda: f, P.S: lambda: s, P.YTR: lambda: ytr,
             P.M: lambda: m, P.M_LUT: lambda: q16(m * f), P.M_S: lambda: q16(m * s),
             P.M_YTR: lambda: q16(m * ytr)}[t.post]()
        if h_mode == "shared":
            p = (a * (1.0 / x.shape[0])).t() @ b
            term = q.rule_c[k] * p
        else:
            p = a.unsqueeze(2) * b.unsqueeze(1)
            if sc is not None:
                p = fq(p, 2.0 ** -q.rule_scales[k][1], C.smin(R.TERM_BITS), C.smax(R.TERM_BITS))
            term = q.rule_c[k] * p
            if sc is not None:
                term = fq(term, 2.0 ** -C.H_FRAC)
        dh = term if dh is None else dh + term
    if sc is not None:
        dh = fq(dh, 2.0 ** -C.H_FRAC, C.smin(R.DH_BITS), C.smax(R.DH_BITS))
        return HUpdate.apply(H, dh, q.decay, 1.0, o.h_clamp_real())
    cl = o.h_clamp_real()
    return torch.clamp(q.decay * H + dh, -cl, cl)


def plastic_update(q: QParams, H: torch.Tensor, x: torch.Tensor, u: torch.Tensor, h_mode: str) -> torch.Tensor:
    o, sc = q.opts, q.sc
    cl = o.h_clamp_real()
    if sc is None:
        f = post_function(o.post_fn, u / q.theta - q.eta)
        g = q.beta * x
        if h_mode == "shared":
            dh = g.t() @ f / x.shape[0]
        else:
            dh = g.unsqueeze(2) * f.unsqueeze(1)
        return torch.clamp(q.decay * H + o.hebb_sign * dh, -cl, cl)
    # the integer LPU, step by step: z through the reciprocal, the table, g, g⊗f, decay
    zc = u / q.theta - q.eta  # continuous z (gradient path)
    with torch.no_grad():
        ui = torch.round(u.double() / sc.u_step)
        zi = torch.floor(ui * sc.recip / 2.0 ** sc.recip_shift + 0.5) - torch.round(q.eta.double() * 64)
        idx = (torch.clamp(zi, -C.LUT_HALF, C.LUT_HALF - 1) + C.LUT_HALF).long()
        fval = q.lut[idx]
    fcont = post_function(o.post_fn, zc)
    f = fcont + (fval - fcont).detach()
    g = fq(q.beta * x, sc.beta_step, C.smin(C.G_BITS), C.smax(C.G_BITS))
    if h_mode == "shared":
        dh = (g * (1.0 / x.shape[0])).t() @ f
    else:
        dh = g.unsqueeze(2) * f.unsqueeze(1)
    return HUpdate.apply(H, dh, q.decay, float(o.hebb_sign), cl)


class HUpdate(torch.autograd.Function):
    """``clip(round(H·decay) + sign·round(dh), ±c)`` on the 2^-12 grid in one autograd node:
    straight-through rounding, zero gradient where the clip is active."""

    @staticmethod
    def forward(ctx, H, dh, decay, sign, cl):
        k = float(1 << C.H_FRAC)
        v = torch.floor(H * (decay * k) + 0.5)
        v += torch.floor(dh * k + 0.5).mul_(sign)
        v.mul_(1.0 / k)
        inside = v.abs() <= cl
        ctx.save_for_backward(inside)
        ctx.decay, ctx.sign = decay, sign
        return v.clamp_(-cl, cl)

    @staticmethod
    def backward(ctx, g):
        (inside,) = ctx.saved_tensors
        gi = g * inside
        return gi * ctx.decay, gi * ctx.sign, None, None, None


@dataclass
class NetConfig:
    sizes: list[int]
    variant: str = "HP"  #: HP | GP | LP
    timesteps: int = 8
    coding: str = "direct"  #: direct (graded input with exp(-t/tau) ramp) | rate (spikes)
    tau: float = 40.0
    plastic_layers: str = "hidden"  #: hidden | all | first
    rule: dict = field(default_factory=dict)  #: RuleOptions overrides for all layers
    coding_seed: int = 0
    #: scale hidden spikes by exp(-t/tau) before the next layer (the authors' code). Float forward
    #: (qat=False) only: the integer contract passes spikes as 0/1, so QAT/deploy run without it.
    spike_ramp: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class HybridNet(nn.Module):
    """A stack of hybrid layers; output = last layer's membranes (prediction = argmax of u_T)."""

    def __init__(self, cfg: NetConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        gen = torch.Generator().manual_seed(seed)
        variant = cfg.variant.upper()
        if variant not in ("HP", "GP", "LP"):
            raise ValueError(f"unknown variant {cfg.variant!r}, expected HP, GP or LP")
        n = len(cfg.sizes) - 1
        layers = []
        for li in range(n):
            if variant == "GP":
                plastic = False
            elif variant == "LP" or cfg.plastic_layers == "all":
                plastic = True
            elif cfg.plastic_layers == "first":
                plastic = li == 0
            else:
                plastic = li < n - 1 or n == 1
            opts = RuleOptions(**{**cfg.rule, "plastic": plastic})
            kind = ("graded" if cfg.coding == "direct" else "spike") if li == 0 else "spike"
            train_global = not (variant == "LP" and li == 0)
            layers.append(HybridLayer(cfg.sizes[li], cfg.sizes[li + 1], opts, kind, train_global, gen))
        if variant == "LP":  # the authors' LP: layer 0 entirely frozen (W, b, α, β, η), only its H learns
            for p in layers[0].parameters():
                p.requires_grad_(False)
        self.layers = nn.ModuleList(layers)

    def global_parameters(self):
        return [p for L in self.layers for p in L.global_parameters()]

    def meta_parameters(self):
        return [p for L in self.layers for p in L.meta_parameters()]

    @property
    def theta_out(self) -> float:
        return self.layers[-1].opts.theta

    def forward(self, x, h_mode: str = "sample", qat: bool = True, carry: bool = False,
                teach: torch.Tensor | None = None, record: bool = False, H: list | None = None,
                m: dict | None = None, keep_h: bool = True, round_h: bool = True):
        """Run inputs ``x`` (B, T, A) in real units (or a :class:`~plasticore.training.lowrank.Separable`
        x_t = r_t·x). Returns a dict with ``u`` (B, N_out, the final membrane of the last layer), ``theta``
        (its quantised threshold), ``H`` (final per layer; None for a sequence-form layer in ``sample``
        mode when not ``keep_h``) and, with ``record``, per-layer ``spikes``/``mem`` (B, T, N).

        ``carry`` (shared mode) stores the final H back into the layers (detached).
        ``teach`` (B, T, N_out) or (B, N_out): current added to the output layer (few-shot support).
        ``m`` {layer: (B, N) or (B, T, N)}: the third-factor input of rule programs, real (m_int / 4096).

        Layers run one after another over all T steps (the network is feed-forward, so this is the
        step-by-step order's result); a float v1 plastic layer runs in the sequence form of
        :mod:`~plasticore.training.lowrank` when it can (same result, no per-step H), and so does a
        quantisation-aware one when ``round_h`` is False (H unrounded inside a sample: training).
        """
        B, T, _ = x.shape
        qs = [L.qparams(qat) for L in self.layers]
        nl = len(self.layers)
        # layers with nothing to train on an input without gradient run under no_grad (the authors' LP)
        frozen = [not any(p.requires_grad for p in L.parameters()) for L in self.layers]
        ramp = self.cfg.spike_ramp and not qat
        rvec = torch.tensor([float(np.exp(-t / self.cfg.tau)) for t in range(T)], dtype=x.dtype)
        rec_s, rec_u, H_out = [], [], []
        inp = x
        for li, L in enumerate(self.layers):
            q = qs[li]
            if li > 0 and ramp:
                inp = inp * rvec[None, :, None]
            tc = teach if li == nl - 1 else None
            ml = m.get(li) if m is not None else None
            H0 = None if H is None else H[li]
            grad = torch.is_grad_enabled() and not (frozen[li] and not getattr(inp, "requires_grad", False))
            with torch.set_grad_enabled(grad):
                res = None
                if H0 is None and lowrank.eligible(q, h_mode, L.H, inp, ml, round_h):
                    res = lowrank.layer_sequence(q, inp, _start_h0(L, qat), h_mode, lif_soma, _lut_f, tc, keep_h)
                if res is None:
                    res = self._layer_steps(L, q, inp, h_mode, qat, tc, ml, H0)
            u_seq, s_seq, Hf = res
            if carry and h_mode == "shared" and L.opts.plastic:
                L.H.copy_(Hf.detach())
            H_out.append(Hf)
            if record:
                rec_s.append(s_seq.detach())
                rec_u.append(u_seq.detach())
            inp = s_seq
        out = {"u": u_seq[:, -1], "theta": qs[-1].theta, "H": H_out}
        if record:
            out["spikes"], out["mem"] = rec_s, rec_u
        return out

    @staticmethod
    def _layer_steps(L, q, x, h_mode, qat, teach, m, H0):
        """One layer over all T steps with :func:`hybrid_step`: (u, s) (B, T, N) and the final H."""
        if isinstance(x, lowrank.Separable):
            x = x.dense()
        B, T, _ = x.shape
        st = init_state(L, B, h_mode, x.dtype, H0, qat)
        us, ss = [], []
        for t in range(T):
            tc = None if teach is None else (teach[:, t] if teach.dim() == 3 else teach)
            mt = None if m is None else (m[:, t] if m.dim() == 3 else m)
            st, _ = hybrid_step(q, st, x[:, t], h_mode, tc, mt)
            us.append(st.u)
            ss.append(st.s)
        return torch.stack(us, 1), torch.stack(ss, 1), st.H


class _ClampMaxST(torch.autograd.Function):
    """``clamp(v, max=hi)`` forward, identity backward (straight-through)."""

    @staticmethod
    def forward(ctx, v, hi):
        return v.clamp(max=hi)

    @staticmethod
    def backward(ctx, g):
        return g, None


def mse_loss(u: torch.Tensor, theta: float, labels: torch.Tensor, n_classes: int,
             straight_through: bool = True) -> torch.Tensor:
    """The authors' loss: MSE between clamp(u_T/θ, max 1.1) and one-hot labels.

    The value is theirs.  With ``straight_through`` (default) the gradient passes the clamp: with the
    authors' hard clamp an output above 1.1 gets zero gradient, so a neuron pushed there for every input
    (one overshooting Adam step moves u/θ by ≈ lr·(active inputs)/((1−λ)·θ)) can never come back and
    its class wins every sample (``docs/training.md``, "the output clamp trap")."""
    z = u / theta
    out = _ClampMaxST.apply(z, 1.1) if straight_through else torch.clamp(z, max=1.1)
    target = torch.nn.functional.one_hot(labels, n_classes).to(out.dtype)
    return torch.nn.functional.mse_loss(out, target)
