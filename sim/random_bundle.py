"""Generator of random *valid* bundles and inputs, with the edge classes the verification needs.

Used by the golden-model tests, the cocotb regression and the end-to-end tests::

    rng = np.random.default_rng(seed)
    b = random_bundle(rng, sizes=[20, 13, 5], timesteps=6)
    x = random_inputs(rng, b, samples=4)
"""

from __future__ import annotations

import numpy as np

from plasticore import contract as C
from plasticore.bundle import Bundle, InputCoding, Layer, ramp_for, validate

#: Edge classes a random layer can be forced into.
EDGES = ("none", "saturate", "clamp", "zero_leak", "full_leak", "negative", "big_alpha", "hard_reset")


def random_layer(rng: np.random.Generator, n_in: int, n_out: int, input_kind: C.InputKind,
                 soma: C.SomaMode = C.SomaMode.LIF, edge: str = "none", plastic: bool | None = None) -> Layer:
    """A random legal layer; ``edge`` pushes it into one edge class (see :data:`EDGES`)."""
    xf = C.X_FRAC[input_kind]
    xmean = 0.5 if input_kind == C.InputKind.SPIKE else 100.0
    W = rng.integers(-128, 128, size=(n_in, n_out))
    if edge == "negative":
        W = -np.abs(W)
    if rng.random() < 0.3:
        W[rng.random(W.shape) < 0.5] = 0
    acc_shift = int(rng.integers(0, 5))
    w_frac = int(rng.integers(4, 9))
    u_frac = w_frac + acc_shift + xf
    # threshold around the typical input current magnitude
    scale = max(1.0, 40.0 * np.sqrt(n_in) * xmean * (1 << acc_shift))
    theta = int(np.clip(rng.uniform(0.1, 1.2) * scale, 1, C.smax(C.THETA_BITS)))
    b = rng.integers(-theta // 2 - 1, theta // 2 + 1, size=n_out)
    if edge == "saturate":
        b = rng.choice([C.smin(C.B_BITS), C.smax(C.B_BITS)], size=n_out) // rng.integers(1, 3)
        W = rng.choice([-128, 127], size=(n_in, n_out))
    lam = int(rng.choice([0, 256, int(rng.integers(1, 256))]))
    if edge == "zero_leak":
        lam = 0
    if edge == "full_leak":
        lam = 256
    decay = int(rng.choice([256, 243, int(rng.integers(0, 257))]))
    recip, recip_shift = C.recip_for_theta(theta)
    alpha = int(rng.integers(-3000, 3001))
    alpha_shift = int(rng.integers(6, 20))
    if edge == "big_alpha":
        alpha, alpha_shift = int(rng.choice([C.smin(16), C.smax(16)])), 0
    beta = rng.integers(-4000, 4001, size=n_in)
    dh_shift = int(rng.integers(6 if xf == 0 else 10, 14 if xf == 0 else 18))
    h_clamp = int(rng.choice([16384, 8192, C.smax(C.H_BITS), int(rng.integers(0, 32768))]))
    if edge == "clamp":
        h_clamp = int(rng.integers(0, 600))
        beta = rng.choice([C.smin(16), C.smax(16)], size=n_in)
        dh_shift = 4
    H0 = rng.integers(-h_clamp, h_clamp + 1, size=(n_in, n_out)) // int(rng.choice([1, 8, 1 << 16]))
    hmask = np.ones((n_in, n_out), np.int64) if rng.random() < 0.7 else rng.integers(0, 2, (n_in, n_out))
    post = str(rng.choice(["tanh", "tanh", "identity", "sign"]))
    return Layer(
        W=W.astype(np.int8), b=b.astype(np.int32), H0=H0.astype(np.int16), hmask=hmask.astype(np.uint8),
        beta=beta.astype(np.int16), eta=rng.integers(-200, 201, size=n_out).astype(np.int16),
        lut=C.make_lut(post), post_fn=post,
        theta=theta, lam=lam, decay=decay, alpha=alpha, alpha_shift=alpha_shift, acc_shift=acc_shift,
        recip=recip, recip_shift=recip_shift, dh_shift=dh_shift, h_clamp=h_clamp,
        ann_shift=int(rng.integers(0, 8)) + xf + acc_shift, hebb_sign=int(rng.choice([-1, 1])), u_frac=u_frac,
        soma=soma,
        reset=C.ResetMode.HARD if edge == "hard_reset" else C.ResetMode(int(rng.integers(0, 2))),
        ann_act=C.AnnAct(int(rng.integers(0, 2))) if soma == C.SomaMode.ANN else C.AnnAct.RELU,
        h_persist=C.HPersist(int(rng.integers(0, 2))),
        input_kind=input_kind, plastic=bool(rng.random() < 0.8) if plastic is None else plastic,
        u_reset=_u_reset(rng, theta),
    )


def _u_reset(rng: np.random.Generator, theta: int) -> int:
    """0 (the common case), a value within +-theta, or a limit of the membrane range."""
    k = rng.random()
    if k < 0.4:
        return 0
    if k < 0.9:
        return int(rng.integers(-theta, theta + 1))
    return int(rng.choice([C.smin(C.U_BITS), C.smax(C.U_BITS)]))


def random_bundle(rng: np.random.Generator, sizes: list[int] | None = None, timesteps: int | None = None,
                  coding: str | None = None, edges: list[str] | None = None, allow_ann: bool = True) -> Bundle:
    """A random valid multi-layer bundle. ``sizes`` = [n_in, n_1, ..., n_L]."""
    if sizes is None:
        n_layers = int(rng.integers(1, 4))
        sizes = [int(rng.integers(1, 40)) for _ in range(n_layers + 1)]
    T = int(timesteps if timesteps is not None else rng.integers(1, 9))
    coding = coding or str(rng.choice(["direct", "rate"]))
    kind = C.InputKind.GRADED if coding == "direct" else C.InputKind.SPIKE
    layers = []
    for li in range(len(sizes) - 1):
        soma = C.SomaMode.ANN if allow_ann and rng.random() < 0.2 else C.SomaMode.LIF
        if soma == C.SomaMode.ANN and li < len(sizes) - 2:
            # an ANN layer feeding another needs non-negative-safe graded outputs: either act is legal
            pass
        edge = edges[li] if edges else str(rng.choice(EDGES))
        layers.append(random_layer(rng, sizes[li], sizes[li + 1], kind, soma, edge))
        kind = C.InputKind.SPIKE if soma == C.SomaMode.LIF else C.InputKind.GRADED
    b = Bundle(layers=layers, timesteps=T,
               coding=InputCoding(kind=coding, tau=40.0, ramp=ramp_for(40.0, T) if coding == "direct" else [],
                                  seed=int(rng.integers(0, 2**31))),
               name="random")
    validate(b)
    return b


def random_inputs(rng: np.random.Generator, bundle: Bundle, samples: int, mode: str = "random") -> np.ndarray:
    """Layer-0 inputs (S, T, A). ``mode``: random | silent | all (all-spike / full-scale graded)."""
    T, A = bundle.timesteps, bundle.n_in
    spike = bundle.layers[0].input_kind == C.InputKind.SPIKE
    hi = 1 if spike else 255
    if mode == "silent":
        return np.zeros((samples, T, A), np.int64)
    if mode == "all":
        return np.full((samples, T, A), hi, np.int64)
    if spike:
        return (rng.random((samples, T, A)) < rng.uniform(0.05, 0.7)).astype(np.int64)
    return rng.integers(0, 256, size=(samples, T, A)).astype(np.int64)


def random_program(rng: np.random.Generator, layer: Layer):
    """A random legal rule program (1..K_MAX terms, any factors, coefficients, shifts, trace decays,
    third-factor kind) for ``layer``: half compiled from a random rule string, half raw integers."""
    from plasticore import rules as R

    K = int(rng.integers(1, R.K_MAX + 1))
    pres, posts = list(R.Pre), list(R.Post)
    if rng.random() < 0.5:
        terms = []
        for _ in range(K):
            pre, post = pres[int(rng.integers(len(pres)))], posts[int(rng.integers(len(posts)))]
            terms.append(R.Term(pre, post, c=int(rng.integers(C.smin(R.COEF_BITS), C.smax(R.COEF_BITS) + 1)),
                                shift=int(rng.integers(0, 24)), c_shift=int(rng.integers(0, 24))))
        return R.RuleProgram(terms=tuple(terms), pre_decay=int(rng.integers(0, 257)),
                             post_decay=int(rng.integers(0, 257)), m_kind=R.MKind(str(rng.choice(list(R.MKind)))))
    atoms_pre = ["", "x", "xtr", "beta", "beta*x"]
    atoms_post = ["", "lut(u)", "s", "ytr", "m", "m*lut(u)", "m*s", "m*ytr"]
    parts, coefs = [], {}
    for k in range(K):
        c = f"c{k}"
        coefs[c] = float(rng.choice([-1, 1]) * 2.0 ** rng.uniform(-10, 2))
        fs = [c] + [a for a in (str(rng.choice(atoms_pre)), str(rng.choice(atoms_post))) if a]
        parts.append("*".join(fs))
    return R.compile_rule(" + ".join(parts), coefs, x_frac=layer.x_frac, beta_frac=layer.dh_shift,
                          s_frac=0 if layer.soma == C.SomaMode.LIF else 8, pre_decay=int(rng.integers(0, 257)),
                          post_decay=int(rng.integers(0, 257)), m_kind=str(rng.choice(["direct", "error"])))


def random_program_bundle(rng: np.random.Generator, **kw) -> Bundle:
    """:func:`random_bundle` with a random rule program on every plastic layer."""
    b = random_bundle(rng, **kw)
    for L in b.layers:
        L.rule = random_program(rng, L)
    validate(b)
    return b
