"""Deploy mode: the integer contract (``docs/spec.md`` §3) executed in torch on int64 tensors.

``deploy_run(bundle, x)`` runs layer-0 integer inputs through a :class:`~plasticore.bundle.Bundle`
exactly like :func:`plasticore.golden.run` (same sample/batch semantics, same H carrying), and
records spikes, membranes and optionally H at every step, so it can be compared bit for bit with
the golden model.  Every operation is an integer operation on int64 tensors (the dendrite sums
are int64 matrix products), with the contract's rounding (add half, arithmetic shift right) and
explicit saturation.

An optional ``teach`` current (integer membrane units, added to the last layer's soma current
inside its saturation) and third-factor inputs ``m`` (per layer) are the contract v2 host inputs;
the golden model takes the same (``plasticore.golden.run(..., m=, teach=)``).  Rule programs
(``plasticore.rules``) run exactly as in the golden model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from plasticore import contract as C
from plasticore import rules as R
from plasticore.bundle import Bundle, Layer

I64 = torch.int64
U_LO, U_HI = C.smin(C.U_BITS), C.smax(C.U_BITS)


def rshift_round(v: torch.Tensor, s: int) -> torch.Tensor:
    if s == 0:
        return v
    return torch.bitwise_right_shift(v + (1 << (s - 1)), s)


@dataclass
class DeployLayer:
    """A bundle layer as int64 torch tensors plus python-int scalars."""

    L: Layer
    W: torch.Tensor
    b: torch.Tensor
    H0: torch.Tensor
    hmask: torch.Tensor
    beta: torch.Tensor
    eta: torch.Tensor
    lut: torch.Tensor
    hmask_all: bool

    @classmethod
    def from_layer(cls, L: Layer) -> DeployLayer:
        t = {k: torch.as_tensor(np.asarray(getattr(L, k), np.int64)) for k in
             ("W", "b", "H0", "hmask", "beta", "eta", "lut")}
        return cls(L=L, hmask_all=bool(torch.all(t["hmask"] == 1)), **t)


def _sat(v: torch.Tensor, bits: int) -> torch.Tensor:
    return torch.clamp(v, C.smin(bits), C.smax(bits))


def _pre(pre: R.Pre, x, beta, xtr, x_frac: int):
    if pre == R.Pre.ONE:
        return torch.ones_like(x)
    if pre == R.Pre.X:
        return x
    if pre == R.Pre.XTR:
        return xtr
    if pre == R.Pre.BETA:
        return beta.expand_as(x)
    return _sat(rshift_round(beta * x, x_frac), C.G_BITS)


def _post(post: R.Post, f, s, ytr, m):
    P = R.Post
    return {P.ONE: lambda: torch.ones_like(f), P.LUT: lambda: f, P.S: lambda: s, P.YTR: lambda: ytr,
            P.M: lambda: m, P.M_LUT: lambda: _sat(rshift_round(m * f, C.F_FRAC), R.M_BITS),
            P.M_S: lambda: _sat(m * s, R.M_BITS),
            P.M_YTR: lambda: _sat(rshift_round(m * ytr, R.TRACE_FRAC), R.M_BITS)}[post]()


def program_update(p: DeployLayer, H, x, s, f, t, xtr, ytr):
    """The rule program on int64 tensors (``plasticore.rules.program_dh``), then decay and clamp."""
    L, prog = p.L, p.L.program
    m = t if t is not None else torch.zeros_like(f)
    if prog.m_kind == R.MKind.ERROR:
        m = _sat(m - f, R.M_BITS)
    dh = None
    for term in prog.terms:
        a = _pre(term.pre, x, p.beta, xtr, L.x_frac)
        b = _post(term.post, f, s, ytr, m)
        pk = _sat(rshift_round(a.unsqueeze(-1) * b.unsqueeze(-2), term.shift), R.TERM_BITS)
        q = rshift_round(term.c * pk, term.c_shift)
        dh = q if dh is None else dh + q
    dh = _sat(dh, R.DH_BITS)
    return torch.clamp(rshift_round(H * L.decay, 8) + dh, -L.h_clamp, L.h_clamp)


def layer_step(p: DeployLayer, u, s, H, x, teach=None, t=None, tr=None):
    """One integer time step of one layer (x, u, s: (B, ·) int64; H: (A, N) or (B, A, N)).
    ``t``: third-factor input (B, N); ``tr``: [xtr, ytr] traces, updated in place (rule programs)."""
    L = p.L
    accW = x @ p.W
    cur = torch.bitwise_left_shift(accW, L.acc_shift) + p.b
    if L.plastic or L.alpha != 0:
        Hm = H if p.hmask_all else H * p.hmask
        accH = x @ Hm if Hm.dim() == 2 else torch.bmm(x.unsqueeze(1), Hm).squeeze(1)
        ih = torch.clamp(rshift_round(L.alpha * accH, L.alpha_shift), U_LO, U_HI)
        cur = cur + ih
    if teach is not None:
        cur = cur + teach
    cur = torch.clamp(cur, U_LO, U_HI)
    if L.soma == C.SomaMode.LIF:
        if L.reset == C.ResetMode.SOFT:
            v = u - L.theta * s
        else:
            v = torch.where(s != 0, torch.zeros_like(u), u)
        u = torch.clamp(rshift_round(v * L.lam, 8) + cur, U_LO, U_HI)
        s = (u > L.theta).to(I64)
    else:
        u = cur
        y = rshift_round(cur, L.ann_shift)
        s = torch.clamp(y, *C.ann_range(L.ann_act))
    if L.plastic:
        z = rshift_round(u * L.recip, L.recip_shift) - p.eta
        f = p.lut[torch.clamp(z, -C.LUT_HALF, C.LUT_HALF - 1) + C.LUT_HALF]
        prog = L.program
        if R.v1_form(prog) is None:
            xtr = ytr = None
            if prog.uses_traces:
                sf = 0 if L.soma == C.SomaMode.LIF else 8
                tr[0] = _sat(rshift_round(tr[0] * prog.pre_decay, 8) + torch.bitwise_left_shift(x, 8 - L.x_frac),
                             R.TRACE_BITS)
                tr[1] = _sat(rshift_round(tr[1] * prog.post_decay, 8) + torch.bitwise_left_shift(s, 8 - sf),
                             R.TRACE_BITS)
                xtr, ytr = tr
            return u, s, program_update(p, H, x, s, f, t, xtr, ytr)
        g = torch.clamp(rshift_round(p.beta * x, L.x_frac), C.smin(C.G_BITS), C.smax(C.G_BITS))
        sign, shift = R.v1_form(prog)
        dh = rshift_round(g.unsqueeze(-1) * f.unsqueeze(-2), shift)
        if sign < 0:
            dh = -dh
        H = torch.clamp(rshift_round(H * L.decay, 8) + dh, -L.h_clamp, L.h_clamp)
    return u, s, H


@dataclass
class DeployResult:
    spikes: list[np.ndarray]  #: per layer (S, T, N) int16
    u_final: list[np.ndarray]  #: per layer (S, N) int32
    h_final: list[np.ndarray]  #: per layer (A, N) int16
    predictions: np.ndarray
    u_trace: list[np.ndarray] | None = None  #: per layer (S, T, N) int32
    h_trace: list[np.ndarray] | None = None  #: per layer (S, T, A, N) int16 (record_h)

    def accuracy(self, labels) -> float:
        labels = np.asarray(labels)
        return float(np.mean(self.predictions == labels)) if labels.size else 0.0


#: per-sample H is a (B, A, N) tensor: batches are cut so that it stays near this many elements
PER_SAMPLE_H_ELEMENTS = 1 << 22


def per_sample_h_batch(batch: int, plastic_sizes: list[int]) -> int:
    """Largest batch <= ``batch`` whose per-sample H (``plastic_sizes`` = A*N of each plastic layer)
    stays near :data:`PER_SAMPLE_H_ELEMENTS` elements (at least 1)."""
    if not plastic_sizes:
        return max(1, batch)
    return max(1, min(batch, PER_SAMPLE_H_ELEMENTS // max(plastic_sizes)))


def deploy_run(bundle: Bundle, x, record: bool = True, record_h: bool = False,
               H_start: list | None = None, batch: int = 256, teach=None, m: dict | None = None) -> DeployResult:
    """Run integer inputs ``x`` (S, T, A0) through ``bundle`` with the semantics of
    :func:`plasticore.golden.run`.  ``teach`` (the last layer's integer current) and ``m``
    ({layer: third-factor input}) take the shapes of ``golden.run``."""
    from plasticore.golden import run_inputs

    x = torch.as_tensor(np.asarray(x), dtype=I64)
    S, T = x.shape[0], bundle.timesteps
    if x.dim() != 3 or x.shape[1:] != (T, bundle.n_in):
        raise ValueError(f"inputs have shape {tuple(x.shape)}, expected (samples, {T}, {bundle.n_in})")
    ms, tc = run_inputs(bundle, S, m, teach)
    teach_t = None if tc is None else torch.as_tensor(tc)
    ms_t = [None if a is None else torch.as_tensor(a) for a in ms]
    ps = [DeployLayer.from_layer(L) for L in bundle.layers]
    carry = any(L.plastic and L.h_persist == C.HPersist.NEVER for L in bundle.layers)
    chunk = 1 if carry else per_sample_h_batch(batch, [L.n_in * L.n_out for L in bundle.layers if L.plastic])
    Hs = [torch.as_tensor(np.asarray(H_start[i] if H_start is not None else L.H0, np.int64))
          for i, L in enumerate(bundle.layers)]
    spikes = [np.zeros((S, T, L.n_out), np.int16) for L in bundle.layers]
    u_final = [np.zeros((S, L.n_out), np.int32) for L in bundle.layers]
    u_trace = [np.zeros((S, T, L.n_out), np.int32) for L in bundle.layers] if record else None
    h_trace = ([np.zeros((S, T, L.n_in, L.n_out), np.int16) for L in bundle.layers] if record_h else None)
    for s0 in range(0, S, chunk):
        s1 = min(S, s0 + chunk)
        B = s1 - s0
        st = []
        for li, L in enumerate(bundle.layers):
            if L.plastic and L.h_persist == C.HPersist.NEVER:
                H = Hs[li].unsqueeze(0).clone()
            elif L.plastic:
                H = ps[li].H0.expand(B, *ps[li].H0.shape).clone()
            else:
                H = Hs[li]
            st.append([torch.zeros(B, L.n_out, dtype=I64), torch.zeros(B, L.n_out, dtype=I64), H,
                       [torch.zeros(B, L.n_in, dtype=I64), torch.zeros(B, L.n_out, dtype=I64)]])
        for t in range(T):
            inp = x[s0:s1, t]
            for li, p in enumerate(ps):
                tc = teach_t[s0:s1, t] if (teach_t is not None and li == len(ps) - 1) else None
                tl = None if ms_t[li] is None else ms_t[li][s0:s1, t]
                u, s, H = layer_step(p, *st[li][:3], inp, tc, tl, st[li][3])
                st[li][:3] = [u, s, H]
                spikes[li][s0:s1, t] = s.numpy()
                if u_trace is not None:
                    u_trace[li][s0:s1, t] = u.numpy()
                if h_trace is not None:
                    h_trace[li][s0:s1, t] = (H if H.dim() == 3 else H.expand(B, *H.shape)).numpy()
                inp = s
        for li, L in enumerate(bundle.layers):
            u_final[li][s0:s1] = st[li][0].numpy()
            if L.plastic:
                Hs[li] = st[li][2][-1]
    last = bundle.layers[-1]
    v = u_final[-1] if last.soma == C.SomaMode.LIF else spikes[-1][:, -1]
    preds = np.argmax(v.astype(np.int64), axis=-1).astype(np.int64)
    return DeployResult(spikes=spikes, u_final=u_final, h_final=[h.numpy().astype(np.int16) for h in Hs],
                        predictions=preds, u_trace=u_trace, h_trace=h_trace)


def compare_with_golden(bundle: Bundle, x, H_start=None, m=None, teach=None) -> str | None:
    """Run ``x`` through deploy mode and the golden model; None if bit-exact, else the first
    difference (layer, key, index, both values).  H is compared at every step via the golden step
    functions when every plastic layer resets per sample; the final H always."""
    from plasticore import golden

    d = deploy_run(bundle, x, record=True, H_start=H_start, m=m, teach=teach)
    g = golden.run(bundle, np.asarray(x), record_membranes=True, H_start=H_start, m=m, teach=teach)
    for li in range(len(bundle.layers)):
        for key in ("spikes", "u_trace", "u_final", "h_final"):
            a, b = getattr(d, key)[li], getattr(g, key)[li]
            if a.shape != b.shape or not np.array_equal(a, b):
                if a.shape != b.shape:
                    return f"layer {li} {key}: shape {a.shape} vs {b.shape}"
                idx = tuple(int(i) for i in np.argwhere(a != b)[0])
                return f"layer {li} {key}: first difference at {idx}: deploy {a[idx]} vs golden {b[idx]}"
    if not np.array_equal(d.predictions, g.predictions):
        return "predictions differ"
    return None


def golden_h_trace(bundle: Bundle, x, m=None, teach=None) -> list[np.ndarray]:
    """H at every step, per layer (S, T, A, N), from the golden model's step functions (samples run
    one after another, H carried or reset exactly as ``golden.run`` does)."""
    from plasticore import golden

    x = np.asarray(x, np.int64)
    S, T = x.shape[:2]
    ms, tc = golden.run_inputs(bundle, S, m, teach)
    params = [golden.layer_params(L) for L in bundle.layers]
    Hs = [np.asarray(L.H0, np.int64) for L in bundle.layers]
    out = [np.zeros((S, T, L.n_in, L.n_out), np.int16) for L in bundle.layers]
    for si in range(S):
        states = []
        for li, L in enumerate(bundle.layers):
            H = (Hs[li] if (L.h_persist == C.HPersist.NEVER or not L.plastic) else np.asarray(L.H0, np.int64))
            states.append(golden.init_state(L, (1,), H=H[None].copy()))
        for t in range(T):
            inp = x[si:si + 1, t]
            for li, p in enumerate(params):
                tl = None if ms[li] is None else ms[li][si:si + 1, t]
                te = tc[si:si + 1, t] if (tc is not None and li == len(params) - 1) else None
                states[li], _ = golden.layer_step(p, states[li], inp, tl, te)
                out[li][si, t] = states[li].H[0]
                inp = states[li].s
        for li, L in enumerate(bundle.layers):
            if L.plastic:
                Hs[li] = states[li].H[0]
    return out
