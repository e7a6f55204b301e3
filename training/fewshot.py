"""Few-shot learning through H alone, with the prototype rule (contract v2), evaluated on the golden model.

The network: a plastic layer whose only input path is H (W = 0, b = 0, H0 = 0, no leak, a threshold it
never reaches) running the preset ``prototype`` rule ``c*x*m``, reading either the input itself, each
sample scaled by the host to the same Euclidean norm (``features="input"``, the default: :func:`unit_norm`),
or the spikes of a LIF hidden layer (global weights, not plastic; ``features="hidden"``).  During a
support sample the host supplies the third factor ``m = one-hot(label)`` (1.0 = 4096), so ``H[:, k]``
accumulates ``c·Σ_t x_t`` over the support of class k (a class prototype); during a query ``m = 0`` and
H does not move.  The query's output membrane ``u_k = α·Σ_t x_t·H[:, k]`` is a similarity to prototype
k; the class is the first argmax.  On unit-norm inputs that ranks the classes by the cosine between the
query and the class sums.  No host gradient at test time: the host streams support samples with their
labels.

Meta-training (torch, quantisation-aware, first-order): episodes drawn from the training classes
(the first half of the labels) run exactly this procedure (H per episode, carried from sample to
sample); a cross-entropy loss on the queries' output membranes trains the meta-parameters α, β, η
and the rule coefficient c (and W, b of the hidden layer).  Evaluation: the exported integer bundle on
the golden model, on N-way K-shot episodes of the held-out classes, next to GP (the same network
without plasticity) and nearest-class-mean on raw pixels over the same episodes.  With ``port`` a board
of program cores runs every episode too (its H reset to H0, the support with m = one-hot labels
streamed over serial, then the queries), checked bit for bit against the golden model.
"""

from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path

import numpy as np
import torch

from plasticore import rules as R
from plasticore.bundle import Bundle, copy_layer

from .model import HybridLayer, HybridNet, NetConfig, RuleOptions

#: (n_way, k_shot) settings measured by default, with the targets of issue 21
SETTINGS = ((5, 1), (5, 5), (3, 2))
TARGETS = {(5, 1): 0.80, (5, 5): 0.95, (3, 2): 0.93}
M_ONE = 1 << R.M_FRAC  #: the one-hot teaching factor 1.0
#: what the plastic layer reads: the unit-norm input, or a meta-trained LIF hidden layer
FEATURES = ("input", "hidden")


def build_net(n_in: int, hidden: int, n_out: int, timesteps: int = 8, seed: int = 0, c: float = 0.05,
              theta_out: float = 64.0) -> HybridNet:
    """Hidden LIF layer (GP) + plastic prototype output layer (W = b = 0 frozen, no leak); with
    ``hidden = 0`` the plastic layer alone, reading the (graded) inputs."""
    sizes = [n_in, hidden, n_out] if hidden else [n_in, n_out]
    cfg = NetConfig(sizes=sizes, variant="GP", timesteps=timesteps, coding="direct", coding_seed=seed)
    net = HybridNet(cfg, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    opts = RuleOptions(theta=theta_out, lam=256, decay=256, post_fn="identity", clamp=None, h_persist="never",
                       plastic=True, rule=R.PRESETS["prototype"].text, coefs={"c": c})
    out = HybridLayer(hidden or n_in, n_out, opts, "spike" if hidden else "graded", train_global=False,
                      generator=gen)
    with torch.no_grad():
        out.W.zero_()
        out.b.zero_()
        # u = alpha*<x, prototype> stays inside the int24 membrane (spike counts of the hidden layer
        # reach T per neuron; a unit-norm input is far smaller)
        out.alpha.fill_(0.01 if hidden else 0.2)
        out.beta.zero_()
        out.eta.zero_()
    net.layers[-1] = out
    return net


def unit_scale(feats: np.ndarray) -> float:
    """The scale of :func:`unit_norm`: the largest that keeps every component of ``feats`` within 255."""
    f = feats.reshape(len(feats), -1).astype(np.float64)
    n = np.linalg.norm(f, axis=1)
    return float(255.0 / (f[n > 0].max(1) / n[n > 0]).max())


def unit_norm(feats: np.ndarray, scale: float) -> np.ndarray:
    """Each sample scaled to Euclidean norm ``scale`` (rounded, uint8): the host's input encoding of the
    ``input`` few-shot network, under which the prototype rule's dot product ranks classes as the
    cosine to the class sums."""
    f = feats.astype(np.float64)
    n = np.linalg.norm(f, axis=-1, keepdims=True)
    return np.clip(np.rint(f * scale / np.where(n > 0, n, 1.0)), 0, 255).astype(np.uint8)


def _onehot(y: np.ndarray, n: int) -> np.ndarray:
    return R.label_m(y, n)


def episode(rng: np.random.Generator, by_class: dict, classes, n_way: int, k_shot: int, n_query: int):
    """Support features (n_way·k_shot, A) shuffled, labels; query features (n_way·n_query, A), labels."""
    cls = rng.choice(classes, size=n_way, replace=False)
    sx, sy, qx, qy = [], [], [], []
    for j, c in enumerate(cls):
        idx = rng.choice(len(by_class[c]), size=k_shot + n_query, replace=False)
        sx.append(by_class[c][idx[:k_shot]])
        sy += [j] * k_shot
        qx.append(by_class[c][idx[k_shot:]])
        qy += [j] * n_query
    sx, sy = np.concatenate(sx), np.asarray(sy)
    p = rng.permutation(len(sy))
    return sx[p], sy[p], np.concatenate(qx), np.asarray(qy)


def _real(feats: np.ndarray, cfg: NetConfig, dtype=torch.float32) -> torch.Tensor:
    from .train import encode_int, to_real

    return to_real(encode_int(feats, cfg), cfg, dtype)


def episode_loss(net: HybridNet, eps: list, n_way: int, dtype=torch.float32):
    """Run a batch of episodes (support with m = one-hot, H carried; queries with m = 0) in torch;
    returns (cross-entropy on the queries, number correct, number of queries)."""
    cfg = net.cfg
    B = len(eps)
    out = net.layers[-1]
    last = len(net.layers) - 1
    Hs = [*(L.H.to(dtype) for L in net.layers[:-1]), out.H.to(dtype).expand(B, *out.H.shape).clone()]
    sx = torch.stack([_real(e[0], cfg, dtype) for e in eps], 1)  # (n_sup, B, T, A)
    sy = np.stack([e[1] for e in eps], 1)
    for i in range(sx.shape[0]):
        m = torch.as_tensor(_onehot(sy[i], out.n_out) / M_ONE, dtype=dtype)
        o = net(sx[i], h_mode="sample", H=Hs, m={last: m})
        Hs = [*Hs[:-1], o["H"][-1]]
    nq = len(eps[0][3])
    qx = torch.cat([_real(e[2], cfg, dtype) for e in eps])  # (B*nq, T, A)
    qy = torch.as_tensor(np.concatenate([e[3] for e in eps]))
    o = net(qx, h_mode="sample", H=[*Hs[:-1], Hs[-1].repeat_interleave(nq, 0)])
    logits = o["u"][:, :n_way] / o["theta"] * 8.0
    loss = torch.nn.functional.cross_entropy(logits, qy)
    return loss, int((logits.argmax(-1) == qy).sum()), len(qy)


def meta_train(net: HybridNet, by_class: dict, classes, iters: int, episodes_per_iter: int = 8,
               n_query: int = 3, seed: int = 0, lr_global: float = 2e-3, lr_meta: float = 2e-3, log=print) -> list:
    """First-order meta-training on random N-way K-shot episodes of ``classes``."""
    rng = np.random.default_rng(seed)
    gp, mp = net.global_parameters(), net.meta_parameters()
    opt = torch.optim.Adam([{"params": gp, "lr": lr_global}, {"params": mp, "lr": lr_meta}])
    hist = []
    n_out = net.layers[-1].n_out
    for it in range(iters):
        n_way = int(rng.choice([w for w in (3, 5) if w <= min(n_out, len(classes))] or [min(n_out, len(classes))]))
        k = int(rng.integers(1, 6))
        eps = [episode(rng, by_class, classes, n_way, k, n_query) for _ in range(episodes_per_iter)]
        loss, corr, tot = episode_loss(net, eps, n_way)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # the prototype rule wants c > 0 and alpha > 0 (similarity, not distance)
            out = net.layers[-1]
            out.rule_c.clamp_(min=1e-3)
            out.alpha.clamp_(min=1e-3)
        hist.append((float(loss.detach()), corr / tot))
        if log and (it + 1) % max(1, iters // 10) == 0:
            lo = np.mean([h[0] for h in hist[-max(1, iters // 10):]])
            ac = np.mean([h[1] for h in hist[-max(1, iters // 10):]])
            log(f"  meta-train {it + 1}/{iters}: loss {lo:.3f}, query accuracy {ac:.3f}")
    return hist


def sized_bundle(bundle: Bundle, n_way: int) -> Bundle:
    """The exported bundle with the output layer cut to ``n_way`` neurons (all alike but η)."""
    L = bundle.layers[-1]
    out = copy_layer(L, W=L.W[:, :n_way].copy(), b=L.b[:n_way].copy(), H0=L.H0[:, :n_way].copy(),
                     hmask=L.hmask[:, :n_way].copy(), eta=L.eta[:n_way].copy())
    b = copy.copy(bundle)
    b.layers = [*bundle.layers[:-1], out]
    return b


def golden_episode(bundle: Bundle, ep, cfg: NetConfig):
    """Support then queries through the golden model (one run: H carried, m = one-hot on the support,
    0 on the queries). Returns (query predictions, hidden spike counts of support and queries)."""
    from plasticore import golden

    from .train import encode_int

    sx, sy, qx, qy = ep
    n_way = bundle.n_out
    x = encode_int(np.concatenate([sx, qx]), cfg)
    m = np.zeros((len(x), n_way), np.int64)
    m[: len(sy)] = _onehot(sy, n_way)
    res = golden.run(bundle, x, m={len(bundle.layers) - 1: m})
    counts = res.spikes[0].sum(1).astype(np.float64)
    return res.predictions[len(sy):], counts[: len(sy)], counts[len(sy):], res


def board_port(port: str) -> str:
    """``port`` for the board run: a ``sim://`` URL that names no core kind carries program cores."""
    if port.startswith("sim://") and "core=" not in port:
        return port + ("&" if "?" in port else "?") + "core=program"
    return port


def board_episode(dev, bundle: Bundle, ep, golden_res, cfg: NetConfig):
    """The episode of :func:`golden_episode` on board ``dev`` (``bundle`` deployed): H := H0, then support
    and queries in one run.  Returns (query predictions, bit-exact with ``golden_res``)."""
    from plasticore import runs

    from .train import encode_int

    sx, sy, qx, qy = ep
    for li, L in enumerate(bundle.layers):
        if L.plastic:
            dev.write_h(li, L.H0)
    x = encode_int(np.concatenate([sx, qx]), cfg)
    m = np.zeros((len(x), bundle.n_out), np.int64)
    m[: len(sy)] = _onehot(sy, bundle.n_out)
    r = dev.run(x, m={len(bundle.layers) - 1: m})
    exact = runs.compare_results(runs.result_to_npz_dict(r, "board"),
                                 runs.result_to_npz_dict(golden_res, "golden")) is None
    return r.predictions[len(sy):], exact


def ncm(sx: np.ndarray, sy: np.ndarray, qx: np.ndarray, n_way: int) -> np.ndarray:
    """Nearest class mean (Euclidean) predictions."""
    means = np.stack([sx[sy == k].mean(0) for k in range(n_way)])
    d = ((qx[:, None, :].astype(np.float64) - means[None]) ** 2).sum(-1)
    return d.argmin(1)


def few_shot(out: Path, dataset: str = "digits", epochs: int | None = None, seed: int = 0, quick: bool = False,
             features: str = "input", hidden: int = 128, timesteps: int | None = None, test_episodes: int = 200,
             n_query: int = 5, episodes_per_iter: int = 8, settings=SETTINGS, data_root=None,
             port: str | None = None, log=print, **_ignored) -> dict:
    """Meta-train on the first half of the classes, evaluate N-way K-shot on the held-out half on the
    golden model; prints plastic (golden) / GP / NCM raw pixels / NCM on the plastic layer's input
    side by side, and with ``port`` the board's accuracy and how many episodes were bit-exact
    (:func:`board_episode`).  ``features``: ``input`` (the plastic layer reads the inputs, each scaled
    to a unit norm, :func:`unit_norm`) or ``hidden`` (a meta-trained LIF hidden layer of ``hidden``
    neurons feeds it).  ``timesteps``: 2 for ``input`` (the prototype readout of a constant graded
    input: 1, 2, 4 and 8 steps measured equal within 0.2 points), 8 for ``hidden``.  ``epochs`` =
    meta-training iterations / 10."""
    if features not in FEATURES:
        raise ValueError(f"features {features!r}: expected one of {FEATURES}")
    from plasticore.datasets import load_dataset

    from .export import export_bundle
    from .plots import plot_table
    from .train import write_json

    t0 = time.perf_counter()
    iters = 10 * (epochs or (1 if quick else 3))
    test_episodes = min(test_episodes, 20) if quick else test_episodes
    (xtr, ytr), (xte, yte) = load_dataset(dataset, "train", data_root), load_dataset(dataset, "test", data_root)
    feats, labels = np.concatenate([xtr, xte]), np.concatenate([ytr, yte])
    ncls = int(labels.max()) + 1
    train_cls, test_cls = np.arange(ncls // 2), np.arange(ncls // 2, ncls)
    by_class = {c: feats[labels == c] for c in range(ncls)}
    n_out = max(w for w, _ in settings)
    torch.manual_seed(seed)
    hidden = hidden if features == "hidden" else 0
    timesteps = timesteps or (8 if hidden else 2)
    # the input variant's scale comes from the training classes alone
    scale = unit_scale(np.concatenate([by_class[c] for c in train_cls])) if features == "input" else None
    net_class = by_class if scale is None else {c: unit_norm(v, scale) for c, v in by_class.items()}
    net = build_net(feats.shape[1], hidden, n_out, timesteps, seed)
    log(f"few-shot: meta-training {iters} iterations on classes {train_cls.tolist()} ({dataset}, "
        + (f"hidden {hidden})" if hidden else f"the plastic layer on the unit-norm input, scale {scale:.1f})"))
    hist = meta_train(net, net_class, train_cls, iters, episodes_per_iter, seed=seed, log=log)
    bundle = export_bundle(net, name="fewshot-prototype", h_persist="never")
    rows = []
    board = contextlib.nullcontext()
    if port is not None:
        from plasticore.host import connect

        board = connect(board_port(port))
    with board as dev:
        if dev is not None and not dev.geom.programs:
            raise R.RuleError(f"--port {port}: the board's cores run the v1 rule; the prototype rule needs a "
                              "build of program cores")
        for n_way, k_shot in settings:
            rows.append(_setting(sized_bundle(bundle, n_way), net.cfg, by_class, test_cls, n_way, k_shot, n_query,
                                 test_episodes, seed, dev, log, scale))
    from .experiments import _table

    cols = ["setting", "plastic", *(["board", "board_exact"] if port else []), "gp", "ncm_raw", "ncm_features",
            "target"]
    log(_table(rows, cols,
               f"few-shot on held-out classes {test_cls.tolist()} ({dataset}), {test_episodes} episodes, "
               f"{n_query} queries/class; plastic = golden model, H learned through the prototype rule"
               + (f"; board = {board_port(port)} (board_exact: episodes bit-exact with the golden model)"
                  if port else "")))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_table(rows, "setting", ["plastic", "gp", "ncm_raw"], out / "fewshot.png", "few-shot (held-out classes)",
               "setting")
    from plasticore.bundle import save_bundle

    save_bundle(bundle, out / "bundle")
    r = {"experiment": "fewshot", "dataset": dataset, "rule": bundle.layers[-1].program.to_json(),
         "meta_iterations": iters, "features": features, "hidden": hidden, "input_scale": scale,
         "timesteps": timesteps, "test_episodes": test_episodes,
         "n_query": n_query, "rows": rows, "final_train_query_accuracy": float(np.mean([h[1] for h in hist[-20:]])),
         "time_s": time.perf_counter() - t0, "port": port,
         "evaluated_on": "exported integer bundle on the golden model (m = one-hot labels on the support)"
                         + (" and on the board" if port else "")}
    write_json(out / "results.json", r)
    return r


def _setting(b: Bundle, cfg: NetConfig, by_class, test_cls, n_way: int, k_shot: int, n_query: int,
             test_episodes: int, seed: int, dev, log, scale: float | None = None) -> dict:
    """One N-way K-shot row of :func:`few_shot` (``dev``: the board, or None; ``scale``: the network
    reads :func:`unit_norm` of the inputs)."""
    if dev is not None:
        dev.deploy(b)
    rng = np.random.default_rng(seed + 1000 * n_way + k_shot)
    acc = {"plastic": 0, "gp": 0, "ncm_raw": 0, "ncm_features": 0, "board": 0}
    total = exact = 0
    t_board = 0.0
    for _ in range(test_episodes):
        ep = episode(rng, by_class, test_cls, n_way, k_shot, n_query)
        raw = ep
        if scale is not None:
            ep = (unit_norm(ep[0], scale), ep[1], unit_norm(ep[2], scale), ep[3])
        pred, cs, cq, res = golden_episode(b, ep, cfg)
        if len(b.layers) == 1:  # NCM on what the plastic layer reads: the input, or the hidden counts
            cs, cq = ep[0].astype(np.float64), ep[2].astype(np.float64)
        qy = ep[3]
        acc["plastic"] += int((pred == qy).sum())
        if dev is not None:
            t1 = time.perf_counter()
            bpred, ok = board_episode(dev, b, ep, res, cfg)
            t_board += time.perf_counter() - t1
            acc["board"] += int((bpred == qy).sum())
            exact += ok
        # GP: the same network without plasticity (H stays H0 = 0, every output membrane is 0)
        gp_pred = np.argmax(res.u_final[-1][len(ep[1]):] * 0, axis=-1)
        acc["gp"] += int((gp_pred == qy).sum())
        acc["ncm_raw"] += int((ncm(raw[0], raw[1], raw[2], n_way) == qy).sum())
        acc["ncm_features"] += int((ncm(cs, ep[1], cq, n_way) == qy).sum())
        total += len(qy)
    row = {"setting": f"{n_way}-way {k_shot}-shot", **{k: v / total for k, v in acc.items()},
           "target": TARGETS.get((n_way, k_shot), float("nan")), "episodes": test_episodes}
    if dev is None:
        del row["board"]
    else:
        row.update(board_exact=exact / test_episodes, board_s=t_board)
    log(f"  {row['setting']}: plastic (golden) {row['plastic']:.3f}  "
        + (f"board {row['board']:.3f} (bit-exact {exact}/{test_episodes} episodes, {t_board:.0f} s)  "
           if dev is not None else "")
        + f"GP {row['gp']:.3f}  NCM raw pixels {row['ncm_raw']:.3f}  NCM features {row['ncm_features']:.3f}")
    return row
