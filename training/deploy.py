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
from plasticore import golden
from plasticore import rules as R
from plasticore.bundle import Bundle, HRole, Layer

I64 = torch.int64


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
    params: dict  #: ``plasticore.golden.layer_params`` with tensors for arrays (the soma functions' ``p``)

    @classmethod
    def from_layer(cls, L: Layer) -> DeployLayer:
        t = {k: torch.as_tensor(np.asarray(getattr(L, k), np.int64)) for k in
             ("W", "b", "H0", "hmask", "beta", "eta", "lut")}
        params = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v
                  for k, v in golden.layer_params(L).items() if k != "Wf"}
        return cls(L=L, hmask_all=bool(torch.all(t["hmask"] == 1)), params=params, **t)


def program_update(p: DeployLayer, H, x, s, f, t, xtr, ytr):
    """The rule program on int64 tensors (:func:`plasticore.rules.program_dh`, the golden model's own
    function), then decay and clamp."""
    L, prog = p.L, p.L.program
    m = R.third_factor(t if t is not None else torch.zeros_like(f), f, prog)
    dh = R.program_dh(prog, x, p.beta, xtr, f, s, ytr, m, L.x_frac)
    return torch.clamp(rshift_round(H * L.decay, 8) + dh, -L.h_clamp, L.h_clamp)


def layer_step(p: DeployLayer, u, s, H, x, teach=None, t=None, tr=None):
    """One integer time step of one layer (x, u, s: (B, ·) int64; H: (A, N) or (B, A, N)): the golden
    model's soma, post-function and rule-program functions on tensors, with torch matrix products.
    ``t``: third-factor input (B, N); ``tr``: [xtr, ytr] traces, updated in place (rule programs)."""
    L, gp = p.L, p.params
    accW = x @ p.W
    accH = 0
    if L.plastic or L.alpha != 0:
        Hm = H if p.hmask_all else H * p.hmask
        accH = x @ Hm if Hm.dim() == 2 else torch.bmm(x.unsqueeze(1), Hm).squeeze(1)
    cur = golden.soma_current(accW, accH, gp, teach)
    u, s = golden.soma_lif(u, s, cur, gp) if L.soma == C.SomaMode.LIF else golden.soma_ann(cur, gp)
    if L.plastic:
        f = golden.post_fn(u, gp)
        prog = L.program
        if R.v1_form(prog) is None:
            xtr = ytr = None
            if prog.uses_traces:
                tr[0], tr[1] = R.update_traces(tr[0], tr[1], x, s, prog, L.x_frac, gp["s_frac"])
                xtr, ytr = tr
            return u, s, program_update(p, H, x, s, f, t, xtr, ytr)
        g = C.sat(rshift_round(p.beta * x, L.x_frac), C.G_BITS)
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


def _start_h(p: DeployLayer, H: torch.Tensor, B: int) -> torch.Tensor:
    """A batch of ``B`` samples' starting H (:class:`plasticore.bundle.HRole`): the carried H (B = 1),
    H0 per sample, or the frozen H shared."""
    if p.L.h_role == HRole.CARRIED:
        return H.unsqueeze(0).clone()
    if p.L.h_role == HRole.PER_SAMPLE:
        return p.H0.expand(B, *p.H0.shape).clone()
    return H


def deploy_run(bundle: Bundle, x, record: bool = True, record_h: bool = False,
               H_start: list | None = None, batch: int = 256, teach=None, m: dict | None = None) -> DeployResult:
    """Run integer inputs ``x`` (S, T, A0) through ``bundle`` with the semantics of
    :func:`plasticore.golden.run`.  ``teach`` (the last layer's integer current) and ``m``
    ({layer: third-factor input}) take the shapes of ``golden.run``."""
    from plasticore.golden import run_inputs, step_inputs

    x = torch.as_tensor(np.asarray(x), dtype=I64)
    S, T = x.shape[0], bundle.timesteps
    if x.dim() != 3 or x.shape[1:] != (T, bundle.n_in):
        raise ValueError(f"inputs have shape {tuple(x.shape)}, expected (samples, {T}, {bundle.n_in})")
    ms, tc = run_inputs(bundle, S, m, teach)
    teach_t = None if tc is None else torch.as_tensor(tc)
    ms_t = [None if a is None else torch.as_tensor(a) for a in ms]
    ps = [DeployLayer.from_layer(L) for L in bundle.layers]
    chunk = bundle.sample_batch(batch, PER_SAMPLE_H_ELEMENTS)
    Hs = [torch.as_tensor(np.asarray(H_start[i] if H_start is not None else L.H0, np.int64))
          for i, L in enumerate(bundle.layers)]
    spikes = [np.zeros((S, T, L.n_out), np.int16) for L in bundle.layers]
    u_final = [np.zeros((S, L.n_out), np.int32) for L in bundle.layers]
    u_trace = [np.zeros((S, T, L.n_out), np.int32) for L in bundle.layers] if record else None
    h_trace = ([np.zeros((S, T, L.n_in, L.n_out), np.int16) for L in bundle.layers] if record_h else None)
    for s0 in range(0, S, chunk):
        s1 = min(S, s0 + chunk)
        B = s1 - s0
        st = [[torch.zeros(B, L.n_out, dtype=I64), torch.zeros(B, L.n_out, dtype=I64), _start_h(p, Hs[li], B),
               [torch.zeros(B, L.n_in, dtype=I64), torch.zeros(B, L.n_out, dtype=I64)]]
              for li, (L, p) in enumerate(zip(bundle.layers, ps, strict=True))]
        for t in range(T):
            inp = x[s0:s1, t]
            for li, p in enumerate(ps):
                tl, tc = step_inputs(ms_t, teach_t, li, slice(s0, s1), t)
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
    x = np.asarray(x, np.int64)
    S, T = x.shape[:2]
    ms, tc = golden.run_inputs(bundle, S, m, teach)
    params = [golden.layer_params(L) for L in bundle.layers]
    Hs = [np.asarray(L.H0, np.int64) for L in bundle.layers]
    out = [np.zeros((S, T, L.n_in, L.n_out), np.int16) for L in bundle.layers]
    for si in range(S):
        states = []
        for li, L in enumerate(bundle.layers):
            H = np.asarray(L.H0, np.int64) if L.h_role == HRole.PER_SAMPLE else Hs[li]
            states.append(golden.init_state(L, (1,), H=H[None].copy()))
        for t in range(T):
            inp = x[si:si + 1, t]
            for li, p in enumerate(params):
                host = golden.step_inputs(ms, tc, li, slice(si, si + 1), t)
                states[li], _ = golden.layer_step(p, states[li], inp, *host)
                out[li][si, t] = states[li].H[0]
                inp = states[li].s
        for li, L in enumerate(bundle.layers):
            if L.plastic:
                Hs[li] = states[li].H[0]
    return out
