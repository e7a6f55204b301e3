"""How far classifiers of the support set get on the few-shot episodes of ``experiment fewshot``.

The reference the few-shot table is read against: on the same kind of episodes (N-way K-shot, the
held-out classes, ``n_query`` queries a class, :func:`plasticore.training.fewshot.episode`), the
accuracy of

* classifiers of the raw pixels: nearest class mean (Euclidean and cosine), 1-nearest neighbour,
  ridge regression onto the one-hot labels, and the dot product with the class sums that the
  ``prototype`` rule computes, on the raw and on the unit-norm input (``fewshot --features input``);
* 1-nearest neighbour and nearest class mean over the support *and* ``n_aug`` random affine copies
  of each support image (rotation, scale, shift: a prior on digits that the classifiers above lack);
* nearest class mean on features learned on the training classes, with augmentation: an MLP trained
  episodically as a prototypical network, and the same MLP trained self-supervised (SimCLR).

``python -m plasticore.training.fewshot_bounds [--episodes 300] [--iters 2000] [--json FILE]`` prints
the table (``docs/plasticity.md`` quotes it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .fewshot import SETTINGS, episode, ncm, unit_norm, unit_scale

__all__ = ["bounds", "main"]


def _ncm_cosine(sx, sy, qx, n):
    mu = np.stack([sx[sy == k].mean(0) for k in range(n)])
    mu = mu / np.maximum(np.linalg.norm(mu, axis=1, keepdims=True), 1e-12)
    return (qx @ mu.T).argmax(1)


def _nn(sx, sy, qx, n):
    return sy[((qx[:, None] - sx[None]) ** 2).sum(-1).argmin(1)]


def _ridge(sx, sy, qx, n, lam=1.0):
    T = np.eye(n)[sy]
    W = sx.T @ np.linalg.solve(sx @ sx.T + lam * np.eye(len(sx)), T)
    return (qx @ W).argmax(1)


def _dot(sx, sy, qx, n):
    return (qx @ np.stack([sx[sy == k].sum(0) for k in range(n)]).T).argmax(1)


def _affine(x: torch.Tensor, gen: torch.Generator, side: int, strength: float = 1.0) -> torch.Tensor:
    """Random rotations (±0.2 rad), scales (±10 %) and shifts (±1/8 of the side) of images (B, side²)."""
    B = x.shape[0]
    r = lambda: torch.rand(B, generator=gen) - 0.5  # noqa: E731
    ang, sc = r() * 0.4 * strength, 1 + r() * 0.2 * strength
    th = torch.zeros(B, 2, 3)
    th[:, 0, 0], th[:, 0, 1] = sc * torch.cos(ang), -sc * torch.sin(ang)
    th[:, 1, 0], th[:, 1, 1] = sc * torch.sin(ang), sc * torch.cos(ang)
    th[:, 0, 2], th[:, 1, 2] = r() * 0.5 * strength, r() * 0.5 * strength
    grid = F.affine_grid(th, (B, 1, side, side), align_corners=False)
    return F.grid_sample(x.view(B, 1, side, side), grid, align_corners=False).view(B, -1)


def _learned(by_class: dict, train_cls, side: int, mode: str, iters: int, seed: int, hidden: int = 256):
    """An MLP (A → hidden → ReLU → hidden) trained on the training classes with augmentation:
    ``proto`` episodically (5-way, 1–5 shots, squared-distance prototypes), ``simclr`` self-supervised;
    returns its hidden ReLU layer as a function of (S, A) features in [0, 1]."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    A = side * side
    net = torch.nn.Sequential(torch.nn.Linear(A, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    X = torch.as_tensor(np.concatenate([by_class[c] for c in train_cls]), dtype=torch.float32) / 255.0
    rng = np.random.default_rng(seed)
    byc = {c: torch.as_tensor(by_class[c], dtype=torch.float32) / 255.0 for c in train_cls}
    for _ in range(iters):
        if mode == "simclr":
            x = X[torch.randint(0, len(X), (128,), generator=gen)]
            a = F.normalize(net(_affine(x, gen, side)), dim=1)
            b = F.normalize(net(_affine(x, gen, side)), dim=1)
            loss = F.cross_entropy(a @ b.T / 0.2, torch.arange(len(x)))
        else:
            n, k = min(5, len(train_cls)), int(rng.integers(1, 6))
            sx, sy, qx, qy = episode(rng, byc, train_cls, n, k, 5)
            sx, qx = _affine(torch.as_tensor(sx), gen, side), _affine(torch.as_tensor(qx), gen, side)
            fs, fq = net(sx), net(qx)
            protos = torch.stack([fs[torch.as_tensor(sy) == j].mean(0) for j in range(n)])
            loss = F.cross_entropy(-torch.cdist(fq, protos) ** 2, torch.as_tensor(qy))
        opt.zero_grad()
        loss.backward()
        opt.step()

    def features(f: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net[:2](torch.as_tensor(f, dtype=torch.float32) / 255.0).numpy().astype(np.float64)

    return features


def bounds(dataset: str = "digits", episodes: int = 300, n_query: int = 5, iters: int = 2000, seed: int = 0,
           settings=SETTINGS, n_aug: tuple[int, ...] = (16, 64), log=print) -> list[dict]:
    """The table of the module docstring: a row per classifier, a column per setting (accuracy)."""
    from plasticore.datasets import load_dataset

    torch.set_num_threads(1)
    feats, labels = load_dataset(dataset, "all")
    side = int(round(np.sqrt(feats.shape[1])))
    if side * side != feats.shape[1]:
        raise ValueError(f"dataset {dataset!r}: the augmentation needs square images, got {feats.shape[1]} features")
    ncls = int(labels.max()) + 1
    train_cls, test_cls = np.arange(ncls // 2), np.arange(ncls // 2, ncls)
    by_class = {c: feats[labels == c] for c in range(ncls)}
    scale = unit_scale(np.concatenate([by_class[c] for c in train_cls]))
    t0 = time.perf_counter()
    feat_fns = {"NCM on an MLP's features, prototypical training with augmentation":
                _learned(by_class, train_cls, side, "proto", iters, seed),
                "NCM on an MLP's features, self-supervised (SimCLR) with augmentation":
                _learned(by_class, train_cls, side, "simclr", iters, seed)}
    log(f"features learned on classes {train_cls.tolist()} in {time.perf_counter() - t0:.0f} s")
    gen = torch.Generator().manual_seed(seed)
    rows: dict[str, dict] = {}

    def add(name, setting, correct):
        r = rows.setdefault(name, {"classifier": name})
        r[setting] = r.get(setting, 0) + int(correct)

    for n_way, k_shot in settings:
        key = f"{n_way}-way {k_shot}-shot"
        rng = np.random.default_rng(seed + 1000 * n_way + k_shot)  # the draws of experiment fewshot
        for _ in range(episodes):
            sx, sy, qx, qy = episode(rng, by_class, test_cls, n_way, k_shot, n_query)
            s, q = sx.astype(np.float64), qx.astype(np.float64)
            us, uq = unit_norm(sx, scale).astype(np.float64), unit_norm(qx, scale).astype(np.float64)
            add("NCM, raw pixels (Euclidean)", key, (ncm(s, sy, q, n_way) == qy).sum())
            add("NCM, raw pixels (cosine)", key, (_ncm_cosine(s, sy, q, n_way) == qy).sum())
            add("1-nearest neighbour, raw pixels", key, (_nn(s, sy, q, n_way) == qy).sum())
            add("ridge regression onto one-hot labels (λ = 1, pixels / 255)", key,
                (_ridge(s / 255, sy, q / 255, n_way) == qy).sum())
            add("dot product with the class sums, raw pixels", key, (_dot(s, sy, q, n_way) == qy).sum())
            add("dot product with the class sums, unit-norm input (float)", key,
                (_dot(us, sy, uq, n_way) == qy).sum())
            for n_a in n_aug:
                xs = torch.as_tensor(sx, dtype=torch.float32).repeat_interleave(n_a, 0)
                aug = np.concatenate([s, _affine(xs, gen, side).numpy().astype(np.float64)])
                ay = np.concatenate([sy, np.repeat(sy, n_a)])
                add(f"1-nearest neighbour, support + {n_a} affine copies of each", key,
                    (_nn(aug, ay, q, n_way) == qy).sum())
                add(f"NCM, support + {n_a} affine copies of each", key, (ncm(aug, ay, q, n_way) == qy).sum())
            for name, fn in feat_fns.items():
                add(name, key, (ncm(fn(sx), sy, fn(qx), n_way) == qy).sum())
        for r in rows.values():
            r[key] = r[key] / (episodes * n_way * n_query)
    return list(rows.values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plasticore.training.fewshot_bounds",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--episodes", type=int, default=300, help="episodes per setting (default 300)")
    ap.add_argument("--iters", type=int, default=2000, help="training iterations of each learned feature")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    a = ap.parse_args(argv)
    if a.episodes < 1 or a.iters < 1:
        ap.error("--episodes and --iters must be positive")
    from plasticore.datasets import DatasetError

    try:  # (the dataset is loaded and checked before any training)
        rows = bounds(a.dataset, a.episodes, iters=a.iters, seed=a.seed)
    except (DatasetError, ValueError) as e:
        print(f"error: --dataset {a.dataset}: {e}", file=sys.stderr)
        return 2
    keys = [f"{n}-way {k}-shot" for n, k in SETTINGS]
    print(f"| classifier ({a.dataset}, held-out classes, {a.episodes} episodes a setting) | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for r in rows:
        print(f"| {r['classifier']} | " + " | ".join(f"{100 * r[k]:.1f} %" for k in keys) + " |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
