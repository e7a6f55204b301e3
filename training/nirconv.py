"""NIR (Neuromorphic Intermediate Representation) import and export.

``import_graph`` turns a feed-forward NIR graph (Input, Affine/Linear, LIF/CubaLIF/IF/LI, Flatten, Scale,
Output) into an integer bundle; ``export_run`` writes a bundle's global network as a standard NIR graph
with the plastic part in a documented metadata extension.  The semantics chosen where NIR leaves room
(dt, reset, where the spike is taken, input current) are in ``docs/nir.md``; in short, every neuron
node is discretised with forward Euler at step ``dt``:

    v_t = λ · (z_{t−1} ? v_reset : v_{t−1}) + g · (W x_t + b) + c,   z_t = [v_t > v_threshold]

with λ = 1 − dt/τ, g = dt·r/τ and c = dt·v_leak/τ (LIF); λ = 1, g = dt·r, c = 0 (IF).  That is the
core's hard-reset LIF (docs/spec.md §3, ``u_reset`` = v_reset) with the membrane scaled by an arbitrary factor.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from plasticore import contract as C
from plasticore.bundle import Bundle, InputCoding, Layer, load_bundle
from plasticore.errors import PlasticoreError

#: NIR has no time step: snnTorch's exporter and importer assume 1e-4 s, Norse's default is 1e-3 s.
DEFAULT_DT = 1e-4
#: Name of the metadata key (on the graph and on every neuron node) that carries the plasticore extension.
EXT_KEY = "plasticore"
EXT_FORMAT = "plasticore-nir-ext"
EXT_VERSION = 1
#: relative tolerance when parameters of one layer must be equal across neurons
RTOL = 1e-6
#: weight clipping quantiles tried per layer when a calibration set is given (1.0 = max |W|)
CLIP_QUANTILES = (1.0, 0.9999, 0.999, 0.995, 0.99)
U_MAX = C.smax(C.U_BITS)
THETA_MAX = C.smax(C.THETA_BITS)


class NirError(PlasticoreError, ValueError):
    """A NIR graph or run directory that cannot be converted; the message names the node/field."""


def _need_nir():
    try:
        import nir
    except ModuleNotFoundError:
        raise NirError("the 'nir' package is not installed: pip install 'plasticore[nir]' (see docs/nir.md)") from None
    return nir


# ------------------------------------------------------------------------------------------
# graph -> real-valued discrete layers
# ------------------------------------------------------------------------------------------
@dataclass
class RealLayer:
    """One fully connected layer in real units, in the discrete form of the module docstring."""

    name: str  #: the NIR neuron node
    W: np.ndarray  #: (A, N) effective input weights g·W (plasticore orientation)
    b: np.ndarray  #: (N,) effective constant current g·b + c
    lam: float  #: λ
    theta: float  #: threshold (inf: never fires, e.g. an LI readout)
    kind: str  #: NIR node type
    v_reset: float = 0.0  #: membrane after a spike


@dataclass
class RealNet:
    layers: list[RealLayer]
    n_in: int
    dt: float
    notes: list[str] = field(default_factory=list)


def _arr(node, attr: str, n: int, name: str) -> np.ndarray:
    v = np.asarray(getattr(node, attr), dtype=np.float64).reshape(-1)
    if v.size == 1:
        v = np.full(n, float(v[0]))
    if v.size != n:
        raise NirError(f"node '{name}' ({type(node).__name__}): {attr} has {v.size} entries for {n} neurons")
    if not np.all(np.isfinite(v)) and attr != "v_threshold":
        raise NirError(f"node '{name}' ({type(node).__name__}): {attr} has non-finite values")
    return v


def _uniform(v: np.ndarray, attr: str, name: str, kind: str) -> float:
    lo, hi = float(np.min(v)), float(np.max(v))
    if not math.isclose(lo, hi, rel_tol=RTOL, abs_tol=1e-12):
        raise NirError(f"node '{name}' ({kind}): {attr} differs across neurons ({lo:g}..{hi:g}); "
                       f"the core has one value per layer")
    return float(np.mean(v)) if math.isfinite(lo) else lo


def _chain(graph) -> list[tuple[str, object]]:
    """The graph's nodes from Input to Output as a list; NirError unless it is a simple chain."""
    nir = _need_nir()
    nodes = graph.nodes
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in graph.edges:
        if a not in nodes or b not in nodes:
            raise NirError(f"edge ({a!r}, {b!r}) names a node the graph does not have")
        succ[a].append(b)
        pred[b].append(a)
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise NirError(f"graph has {len(inputs)} Input nodes; import needs exactly one")
    order, cur, seen = [], inputs[0], set()
    while True:
        if cur in seen:
            raise NirError(f"node '{cur}': recurrent edge (cycle); the core is feed-forward")
        seen.add(cur)
        node = nodes[cur]
        if isinstance(node, nir.NIRGraph):
            raise NirError(f"node '{cur}' (NIRGraph): nested/recurrent subgraphs are not supported")
        if len(pred[cur]) > (0 if isinstance(node, nir.Input) else 1):
            raise NirError(f"node '{cur}' ({type(node).__name__}): {len(pred[cur])} incoming edges (recurrent or "
                           f"merging); import needs a feed-forward chain")
        order.append((cur, node))
        if isinstance(node, nir.Output):
            if succ[cur]:
                raise NirError(f"node '{cur}' (Output): has outgoing edges (recurrent); import needs a chain")
            break
        if len(succ[cur]) != 1:
            raise NirError(f"node '{cur}' ({type(node).__name__}): {len(succ[cur])} successors; "
                           f"import needs a chain from Input to Output")
        cur = succ[cur][0]
    extra = set(nodes) - seen
    if extra:
        raise NirError(f"nodes {sorted(extra)} are not on the Input→Output chain")
    return order


def graph_to_real(graph, dt: float = DEFAULT_DT, input_scale: float = 1.0) -> RealNet:
    """Fold a NIR chain into :class:`RealLayer` s (forward Euler at ``dt``); ``input_scale`` multiplies
    the network input (folded into the first layer's weights)."""
    nir = _need_nir()
    if not (dt > 0 and math.isfinite(dt)):
        raise NirError(f"--dt {dt}: must be a positive number of seconds")
    order = _chain(graph)
    n_in = int(np.prod(np.asarray(order[0][1].input_type["input"]).reshape(-1)))
    notes: list[str] = []
    layers: list[RealLayer] = []
    # pending affine map x -> M x + c acting on the current signal (plasticore orientation: x @ M)
    width = n_in
    M = np.eye(n_in) * input_scale
    c = np.zeros(n_in)
    have_affine = False
    for name, node in order[1:]:
        kind = type(node).__name__
        if isinstance(node, nir.Output):
            break
        if isinstance(node, nir.Flatten):
            continue  # a chain of vectors: flattening is the identity on the feature order
        if isinstance(node, nir.Affine | nir.Linear):
            Wn = np.asarray(node.weight, dtype=np.float64)
            if Wn.ndim != 2 or Wn.shape[1] != width:
                raise NirError(f"node '{name}' ({kind}): weight shape {Wn.shape}, expected (out, {width})")
            bn = np.asarray(node.bias, dtype=np.float64).reshape(-1) if isinstance(node, nir.Affine) \
                else np.zeros(Wn.shape[0])
            M, c = M @ Wn.T, c @ Wn.T + bn
            width, have_affine = Wn.shape[0], True
            continue
        if isinstance(node, nir.Scale):
            s = _arr(node, "scale", width, name)
            M, c = M * s, c * s
            continue
        if isinstance(node, nir.LIF | nir.CubaLIF | nir.IF | nir.LI):
            if not have_affine:
                raise NirError(f"node '{name}' ({kind}): no Affine/Linear before it; every neuron layer needs "
                               f"its synapses (an Affine or Linear node)")
            n = width
            if isinstance(node, nir.IF):
                r = _uniform(_arr(node, "r", n, name), "r", name, kind)
                lam, g, cur0 = 1.0, dt * r, 0.0
            else:
                tau_attr = "tau_mem" if isinstance(node, nir.CubaLIF) else "tau"
                tau = _uniform(_arr(node, tau_attr, n, name), tau_attr, name, kind)
                if not tau >= dt:
                    raise NirError(f"node '{name}' ({kind}): {tau_attr} = {tau:g} s < dt = {dt:g} s gives a leak "
                                   f"factor 1 − dt/τ < 0; pass the --dt the source simulated with")
                r = _arr(node, "r", n, name)
                lam = 1.0 - dt / tau
                g = _uniform(r, "r", name, kind) * dt / tau
                cur0 = _arr(node, "v_leak", n, name) * dt / tau
                if isinstance(node, nir.CubaLIF):
                    tau_syn = _uniform(_arr(node, "tau_syn", n, name), "tau_syn", name, kind)
                    if not math.isclose(tau_syn, dt, rel_tol=1e-3):
                        raise NirError(f"node '{name}' (CubaLIF): tau_syn = {tau_syn:g} s ≠ dt = {dt:g} s gives a "
                                       f"synaptic current state (decay {1 - dt / tau_syn:.4g}); the core has none")
                    w_in = _uniform(_arr(node, "w_in", n, name), "w_in", name, kind)
                    g *= w_in
                    notes.append(f"{name}: CubaLIF with tau_syn = dt taken as a same-step synapse (×w_in)")
            if isinstance(node, nir.LI):
                theta = math.inf
            else:
                theta = _uniform(_arr(node, "v_threshold", n, name), "v_threshold", name, kind)
                v_reset = _uniform(_arr(node, "v_reset", n, name), "v_reset", name, kind)
                if not theta > 0:
                    raise NirError(f"node '{name}' ({kind}): v_threshold = {theta:g}; the core needs θ > 0")
            layers.append(RealLayer(name=name, W=M * g, b=c * g + cur0, lam=lam, theta=theta, kind=kind,
                                    v_reset=0.0 if isinstance(node, nir.LI) else v_reset))
            M, c = np.eye(n), np.zeros(n)
            have_affine = False
            continue
        missing = "supported: Input, Output, Affine, Linear, LIF, CubaLIF, IF, LI, Flatten, Scale"
        raise NirError(f"node '{name}' ({kind}): unsupported node type ({missing})")
    if have_affine:
        raise NirError("the graph ends with an Affine/Linear after the last neuron layer; the core's outputs are "
                       "neuron membranes (end the graph with LIF/LI)")
    if not layers:
        raise NirError("the graph has no neuron layer (LIF, CubaLIF, IF or LI)")
    return RealNet(layers=layers, n_in=n_in, dt=dt, notes=notes)


# ------------------------------------------------------------------------------------------
# float simulation of the discrete semantics (the reference the integer bundle is compared with)
# ------------------------------------------------------------------------------------------
def simulate_real(net: RealNet, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run real inputs ``x`` (S, T, A) through ``net``; returns (final membrane of the last layer (S, N),
    spikes per layer (S, T, N))."""
    v, spikes, _ = _simulate(net, x)
    return v, spikes


def _simulate(net: RealNet, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], list[float]]:
    """:func:`simulate_real` plus the largest |v| of every layer."""
    xt = torch.as_tensor(np.asarray(x, np.float64))
    S, T = xt.shape[:2]
    Ws = [torch.as_tensor(L.W) for L in net.layers]
    bs = [torch.as_tensor(L.b) for L in net.layers]
    v = [torch.zeros(S, L.W.shape[1], dtype=torch.float64) for L in net.layers]
    z = [torch.zeros_like(vv) for vv in v]
    spikes = [np.zeros((S, T, L.W.shape[1]), np.int8) for L in net.layers]
    top = [0.0] * len(net.layers)
    for t in range(T):
        inp = xt[:, t]
        for li, L in enumerate(net.layers):
            v[li] = L.lam * torch.where(z[li] > 0, torch.full_like(v[li], L.v_reset), v[li]) + inp @ Ws[li] + bs[li]
            z[li] = (v[li] > L.theta).double()
            spikes[li][:, t] = z[li].numpy()
            top[li] = max(top[li], float(v[li].abs().max()))
            inp = z[li]
    return v[-1].numpy(), spikes, top


# ------------------------------------------------------------------------------------------
# quantisation
# ------------------------------------------------------------------------------------------
def _quant_layer(L: RealLayer, wscale: float, acc_shift: int, x_frac: int, kind: C.InputKind) -> tuple[Layer, float]:
    """Quantise with ``W_int = round(W·wscale)``; membrane scale s = wscale·2^(acc_shift + x_frac)."""
    s = wscale * 2.0 ** (acc_shift + x_frac)
    W = np.clip(np.floor(L.W * wscale + 0.5), -128, 127).astype(np.int64)
    b = C.sat(np.floor(L.b * s + 0.5).astype(np.int64), C.B_BITS)
    theta = THETA_MAX if not math.isfinite(L.theta * s) else int(min(max(round(L.theta * s), 1), THETA_MAX))
    recip, recip_shift = C.recip_for_theta(theta)
    A, N = W.shape
    layer = Layer(
        W=W.astype(np.int8), b=b.astype(np.int32), H0=np.zeros((A, N), np.int16), hmask=np.ones((A, N), np.uint8),
        beta=np.zeros(A, np.int16), eta=np.zeros(N, np.int16), lut=C.make_lut("tanh"), post_fn="tanh",
        theta=theta, lam=int(round(L.lam * C.FRAC8_ONE)), decay=C.FRAC8_ONE, alpha=0, alpha_shift=0,
        acc_shift=acc_shift, recip=recip, recip_shift=recip_shift, dh_shift=0, h_clamp=C.smax(C.H_BITS),
        ann_shift=0, hebb_sign=1, u_frac=int(min(max(round(math.log2(s)), 0), 40)),
        u_reset=int(C.sat(round(L.v_reset * s), C.U_BITS)), soma=C.SomaMode.LIF,
        reset=C.ResetMode.HARD, ann_act=C.AnnAct.RELU, h_persist=C.HPersist.SAMPLE, input_kind=kind,
        plastic=False)
    return layer, s


def _wscale(L: RealLayer, q: float) -> float:
    a = np.abs(L.W).reshape(-1)
    m = float(np.quantile(a, q)) if a.size else 0.0
    return 127.0 / m if m > 0 else 1.0


def _acc_shift(wscale: float, x_frac: int, vmax: float, theta: float) -> int:
    """Largest acc_shift (≤ 8) that keeps ``vmax`` under half the membrane range.  θ does not count: a θ
    beyond the range is clipped to θ_max, which u (saturating at θ_max, spike on u > θ) never passes."""
    top = max(vmax, 1e-12)
    for sh in range(C.ACC_SHIFT_MAX, -1, -1):
        if top * wscale * 2.0 ** (sh + x_frac) < U_MAX / 2:
            return sh
    return 0


@dataclass
class ImportReport:
    bundle: Bundle
    real: RealNet
    float_accuracy: float | None = None
    int_accuracy: float | None = None
    agreement: float | None = None
    n_eval: int = 0
    choices: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"  layers {[self.real.n_in] + [L.n_out for L in self.bundle.layers]}, T={self.bundle.timesteps}, "
                 f"dt={self.real.dt:g} s"]
        for c, L in zip(self.choices, self.bundle.layers, strict=True):
            lines.append(f"  {c['node']}: λ={c['lambda']:.6f} → lam={L.lam}/256 (err {c['lambda_err']:+.2e}), "
                         f"θ={c['theta']:g} → {L.theta}, W clip q={c['clip_q']}, acc_shift={L.acc_shift}")
        lines += [f"  note: {n}" for n in self.real.notes]
        if self.float_accuracy is not None:
            lines.append(f"  accuracy on {self.n_eval} test samples: float (NIR semantics) {self.float_accuracy:.4f}, "
                         f"integer {self.int_accuracy:.4f} ({100 * (self.int_accuracy - self.float_accuracy):+.2f} "
                         f"points), prediction agreement {self.agreement:.4f}")
        return "\n".join(lines)


def _int_predict(bundle: Bundle, x_int: np.ndarray) -> np.ndarray:
    from .deploy import deploy_run

    return deploy_run(bundle, x_int, record=False).predictions


def import_graph(graph, timesteps: int, dt: float = DEFAULT_DT, input_scale: float = 1.0 / 256,
                 coding: str = "direct", calib: np.ndarray | None = None, name: str = "nir-import",
                 seed: int = 0) -> ImportReport:
    """Convert a NIR graph to a validated integer :class:`Bundle`.

    The input is the uint8 feature vector times ``input_scale`` at every step (``coding=direct``, graded
    inputs; the default 1/256 is the core's own graded scale) or Bernoulli spikes with P = feature/256
    (``coding=rate``, ``input_scale`` must then be 1).  ``calib`` (S, A) uint8 features choose each layer's
    weight clip and membrane range by agreement with the float simulation; without it the weights use
    max |W| and the membrane range a worst-case bound.
    """
    if not 1 <= timesteps <= C.MAX_TIMESTEPS:
        raise NirError(f"--timesteps {timesteps}: not in 1..{C.MAX_TIMESTEPS}")
    if coding not in ("direct", "rate"):
        raise NirError(f"--coding {coding!r}: expected direct or rate")
    kind0 = C.InputKind.GRADED if coding == "direct" else C.InputKind.SPIKE
    x_frac0 = C.X_FRAC[kind0]
    # the real input seen by the graph is input_scale * feature; the core's graded input is feature/256
    # (x_frac 8) or a spike (x_frac 0), so the first layer absorbs input_scale / real-LSB
    real = graph_to_real(graph, dt=dt, input_scale=input_scale * 2.0 ** x_frac0)
    if real.n_in > C.MAX_AXONS:
        raise NirError(f"Input: {real.n_in} features > {C.MAX_AXONS} axons per layer")
    cod = InputCoding(kind=coding, tau=0.0, ramp=[C.FRAC8_ONE] * timesteps if coding == "direct" else [], seed=seed)
    meta = {"source": "nir", "dt": dt, "input_scale": input_scale, "nir_nodes": [L.name for L in real.layers]}

    def build(qs, shifts):
        layers, scales, kind = [], [], kind0
        for L, q, sh in zip(real.layers, qs, shifts, strict=True):
            lay, s = _quant_layer(L, _wscale(L, q), sh, C.X_FRAC[kind], kind)
            layers.append(lay)
            scales.append(s)
            kind = C.InputKind.SPIKE
        b = Bundle(layers=layers, timesteps=timesteps, coding=cod, name=name, meta=dict(meta, membrane_scale=scales))
        return b

    n = len(real.layers)
    qs = [1.0] * n
    if calib is not None and np.ndim(calib) == 2 and calib.shape[1] != real.n_in:
        raise NirError(f"--calib: the dataset has {calib.shape[1]} features, the graph's Input takes {real.n_in}")
    if calib is not None and len(calib):
        from plasticore.coding import encode

        x_int = encode(calib, cod, timesteps, real.n_in)
        xr = x_int.astype(np.float64) * 2.0 ** -x_frac0
        ref, _, vmax = _simulate(real, xr)
        ref_pred = np.argmax(ref, axis=-1)
        for li in range(n):  # greedy: best clip per layer given the layers before it
            best = None
            for q in CLIP_QUANTILES:
                trial = qs[:li] + [q] + qs[li + 1:]
                sh = [_acc_shift(_wscale(L, trial[i]), x_frac0 if i == 0 else 0, vmax[i], L.theta)
                      for i, L in enumerate(real.layers)]
                agree = float(np.mean(_int_predict(build(trial, sh), x_int) == ref_pred))
                if best is None or agree > best[0] + 1e-12:
                    best = (agree, q)
            qs[li] = best[1]
        shifts = [_acc_shift(_wscale(L, qs[i]), x_frac0 if i == 0 else 0, vmax[i], L.theta)
                  for i, L in enumerate(real.layers)]
    else:
        shifts = []
        for i, L in enumerate(real.layers):
            xmax = (255 / 256 if coding == "direct" else 1.0) if i == 0 else 1.0
            bound = float(np.max(np.abs(L.W).sum(axis=0) * xmax + np.abs(L.b)))
            bound /= max(1.0 - L.lam, 1.0 / timesteps)
            shifts.append(_acc_shift(_wscale(L, 1.0), x_frac0 if i == 0 else 0, bound, L.theta))
    bundle = build(qs, shifts)
    choices = []
    for L, q, lay in zip(real.layers, qs, bundle.layers, strict=True):
        choices.append({"node": L.name, "kind": L.kind, "lambda": L.lam, "lambda_err": lay.lam / 256 - L.lam,
                        "theta": L.theta, "clip_q": q})
    bundle.meta["choices"] = [{k: (v if not isinstance(v, float) or math.isfinite(v) else "inf") for k, v in c.items()}
                              for c in choices]
    bundle.meta["membrane_scale"] = [float(s) for s in bundle.meta["membrane_scale"]]
    return ImportReport(bundle=bundle, real=real, choices=choices)


def evaluate(report: ImportReport, features: np.ndarray, labels: np.ndarray) -> ImportReport:
    """Fill in the float vs integer accuracy and agreement of ``report`` on (features, labels)."""
    from plasticore.coding import encode_for

    b = report.bundle
    x_int = encode_for(b, features)
    xr = x_int.astype(np.float64) * 2.0 ** -b.layers[0].x_frac
    vf, _ = simulate_real(report.real, xr)
    pf = np.argmax(vf, axis=-1)
    pi = _int_predict(b, x_int)
    report.float_accuracy = float(np.mean(pf == labels))
    report.int_accuracy = float(np.mean(pi == labels))
    report.agreement = float(np.mean(pf == pi))
    report.n_eval = len(labels)
    b.meta.update(float_test_accuracy=report.float_accuracy, int_test_accuracy=report.int_accuracy,
                  prediction_agreement=report.agreement, n_test=report.n_eval)
    return report


def read_graph(path: str | os.PathLike):
    nir = _need_nir()
    path = Path(path)
    if not path.is_file():
        raise NirError(f"{path}: no such file")
    try:
        return nir.read(path)
    except Exception as e:  # noqa: BLE001 - any decode failure, reported with the file name
        raise NirError(f"{path}: not a readable NIR graph ({type(e).__name__}: {e})") from None


# ------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------
def _layer_ext(L: Layer) -> dict:
    """The plasticore extension of one layer: everything the standard node cannot say."""
    d = {"format": EXT_FORMAT, "version": EXT_VERSION, "reset": L.reset.name.lower(), "lam": int(L.lam),
         "theta": int(L.theta), "u_frac": int(L.u_frac), "u_reset": int(L.u_reset), "acc_shift": int(L.acc_shift),
         "W_int": np.asarray(L.W, np.int8), "b_int": np.asarray(L.b, np.int32), "plastic": bool(L.plastic)}
    if L.plastic or L.alpha != 0:
        d.update(H0=np.asarray(L.H0, np.int16), hmask=np.asarray(L.hmask, np.uint8), beta=np.asarray(L.beta, np.int16),
                 eta=np.asarray(L.eta, np.int16), lut=np.asarray(L.lut, np.int16), post_fn=L.post_fn,
                 alpha=int(L.alpha), alpha_shift=int(L.alpha_shift), decay=int(L.decay), dh_shift=int(L.dh_shift),
                 h_clamp=int(L.h_clamp), hebb_sign=int(L.hebb_sign), recip=int(L.recip),
                 recip_shift=int(L.recip_shift), h_persist=L.h_persist.name.lower())
    return d


def bundle_to_graph(bundle: Bundle, dt: float = DEFAULT_DT):
    """The bundle's global network as a standard NIR graph (Input → [Affine → LIF]* → Output) with the
    plasticore extension in node and graph metadata (``docs/nir.md``)."""
    nir = _need_nir()
    nodes: dict = {"input": nir.Input(input_type={"input": np.array([bundle.n_in])})}
    edges = []
    prev = "input"
    for li, L in enumerate(bundle.layers):
        if L.soma != C.SomaMode.LIF:
            raise NirError(f"bundle.json: layers[{li}].soma = {L.soma.name.lower()}; NIR export supports LIF layers")
        x_frac = L.x_frac
        W = np.asarray(L.W, np.float64) * 2.0 ** -(L.u_frac - L.acc_shift - x_frac)
        b = np.asarray(L.b, np.float64) * 2.0 ** -L.u_frac
        theta = L.theta * 2.0 ** -L.u_frac
        v_reset = np.full(L.n_out, L.u_reset * 2.0 ** -L.u_frac)
        lam = L.lam / C.FRAC8_ONE
        N = L.n_out
        ext = _layer_ext(L)
        if L.lam == C.FRAC8_ONE:  # no leak: IF, dv/dt = R·I with R = 1/dt, so v += W x per step
            gain = 1.0
            neuron = nir.IF(r=np.full(N, 1.0 / dt), v_threshold=np.full(N, theta), v_reset=v_reset,
                            metadata={EXT_KEY: ext})
        else:  # tau = dt/(1 − λ), r = 1: dt·r/τ = 1 − λ, so the Affine carries 1/(1 − λ)
            gain = 1.0 / (1.0 - lam)
            neuron = nir.LIF(tau=np.full(N, dt / (1.0 - lam)), r=np.ones(N), v_leak=np.zeros(N),
                             v_threshold=np.full(N, theta), v_reset=v_reset, metadata={EXT_KEY: ext})
        nodes[f"fc{li}"] = nir.Affine(weight=(W * gain).T.copy(), bias=b * gain)
        nodes[f"lif{li}"] = neuron
        edges += [(prev, f"fc{li}"), (f"fc{li}", f"lif{li}")]
        prev = f"lif{li}"
    nodes["output"] = nir.Output(output_type={"output": np.array([bundle.n_out])})
    edges.append((prev, "output"))
    g = nir.NIRGraph(nodes=nodes, edges=edges)
    g.metadata = {EXT_KEY: {"format": EXT_FORMAT, "version": EXT_VERSION, "dt": float(dt),
                            "timesteps": int(bundle.timesteps), "coding": bundle.coding.kind,
                            "ramp": np.asarray(bundle.coding.ramp or [0], np.int64),
                            "coding_tau": float(bundle.coding.tau),
                            "coding_seed": int(bundle.coding.seed), "name": bundle.name}}
    return g


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike, dt: float = DEFAULT_DT) -> list[str]:
    """Write ``run_dir``'s bundle (``run_dir/bundle`` or ``run_dir`` itself) as NIR to ``out``; returns
    warnings (soft reset, plasticity that standard NIR tools will not run)."""
    nir = _need_nir()
    run_dir = Path(run_dir)
    bdir = run_dir / "bundle" if (run_dir / "bundle" / "bundle.json").is_file() else run_dir
    if not (bdir / "bundle.json").is_file():
        raise NirError(f"{run_dir}: no bundle/ (a `plasticore train` run directory) and no bundle.json")
    if not (dt > 0 and math.isfinite(dt)):
        raise NirError(f"--dt {dt}: must be a positive number of seconds")
    bundle = load_bundle(bdir)
    g = bundle_to_graph(bundle, dt)
    warnings = []
    for li, L in enumerate(bundle.layers):
        if L.reset == C.ResetMode.SOFT:
            warnings.append(f"layer {li}: soft reset (subtract θ) has no NIR form; the standard node resets to "
                            f"v_reset = 0 (the extension records reset=soft)")
        if L.plastic or L.alpha != 0:
            warnings.append(f"layer {li}: plastic part (H0, rule, β, η, α) is only in the '{EXT_KEY}' metadata; "
                            f"other tools run W alone")
    out = Path(out)
    if out.is_dir():
        raise NirError(f"--out {out}: is a directory; give the .nir file to write")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        nir.write(tmp, g)
        nir.read(tmp)  # must load back
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return warnings
