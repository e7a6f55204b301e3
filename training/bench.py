"""Training throughput: our loop vs a plain re-implementation of the authors' loop.

The reference (:class:`AuthorsNet`, :func:`authors_train_step`) is written the way the authors'
released scripts compute the hybrid step (docs/training.md, "The model"): ``nn.Linear`` layers, a
Python loop over time steps, the input and the hidden spikes scaled by exp(−t/τ), ``state = fc(x) +
α·x.mm(hebb)``, soft-reset LIF, clamp ±4, MSE on clamp(u/θ, max 1.1), two Adam optimisers stepped
every mini-batch, and the batch-mean Hebbian update written as one matmul (``hebb="matmul"``, the
baseline; their scripts' ``torch.bmm`` of per-sample outer products then ``.mean(0)`` is ``"bmm"``).
Ours is :func:`plasticore.training.train.train_step` with the ``--authors`` preset (the same
network, time steps and optimisers) and, beside it, with the project's quantisation-aware defaults.

Same network, batch, time steps, thread count and synthetic uint8 inputs; each loop is timed for
``steps`` mini-batches after a warm-up, ``repeats`` times, interleaved; the median is reported.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np
import torch
from torch import nn

from . import lowrank
from .train import TrainConfig, make_optimizers, train_inputs, train_step


class _ActFun(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v):
        ctx.save_for_backward(v)
        return v.gt(0.0).float()

    @staticmethod
    def backward(ctx, g):
        (v,) = ctx.saved_tensors
        return g * (v.abs() < 0.5).float()


class AuthorsNet(nn.Module):
    """Hidden hybrid layer + output LIF layer, as in the authors' MLP scripts."""

    def __init__(self, sizes, thresh=0.35, decay=0.4, w_decay=0.95, T=8, tau=40.0, hebb: str = "bmm"):
        super().__init__()
        self.hebb = hebb  #: bmm (B×A×N outer products, then .mean(0)) | matmul (the same mean as one matmul)
        a, h, o = sizes
        self.fc1, self.fc2 = nn.Linear(a, h), nn.Linear(h, o)
        self.alpha1 = nn.Parameter(1e-2 * torch.rand(1))
        self.beta1 = nn.Parameter(1e-2 * torch.rand(a))
        self.eta1 = nn.Parameter(1e-2 * torch.rand(h))
        self.hebb1 = torch.zeros(a, h)
        self.thresh, self.decay, self.w_decay, self.T, self.tau = thresh, decay, w_decay, T, tau
        self.h, self.o = h, o

    def mem_update_hebb(self, x, mem, spike, hebb):
        state = self.fc1(x) + self.alpha1 * x.mm(hebb)
        mem = (mem - spike * self.thresh) * self.decay + state
        now = _ActFun.apply(mem - self.thresh)
        post = ((mem / self.thresh) - self.eta1).tanh()
        if self.hebb == "matmul":
            dh = (x * self.beta1).t().mm(post) / x.shape[0]
        else:
            dh = torch.bmm((x * self.beta1).unsqueeze(2), post.unsqueeze(1)).mean(dim=0)
        hebb = self.w_decay * hebb + dh
        hebb = hebb.clamp(min=-4, max=4)
        return mem, now, hebb

    def mem_update(self, x, mem, spike):
        mem = (mem - spike * self.thresh) * self.decay + self.fc2(x)
        return mem, _ActFun.apply(mem - self.thresh)

    def forward(self, inp):
        B = inp.shape[0]
        h1_mem = h1_spike = torch.zeros(B, self.h)
        h2_mem = h2_spike = torch.zeros(B, self.o)
        hebb = self.hebb1
        for step in range(self.T):
            decay_factor = math.exp(-step / self.tau)
            x = inp * decay_factor
            h1_mem, h1_spike, hebb = self.mem_update_hebb(x, h1_mem, h1_spike, hebb)
            h2_mem, h2_spike = self.mem_update(h1_spike * decay_factor, h2_mem, h2_spike)
        self.hebb1 = hebb.data
        return torch.clamp(h2_mem / self.thresh, max=1.1)


def authors_train_step(net: AuthorsNet, opts, images: torch.Tensor, labels: torch.Tensor) -> float:
    opt_g, opt_m = opts
    opt_g.zero_grad()
    opt_m.zero_grad()
    outputs = net(images)
    target = torch.zeros(labels.shape[0], net.o).scatter_(1, labels.view(-1, 1), 1)
    loss = nn.functional.mse_loss(outputs, target)
    loss.backward()
    opt_g.step()
    opt_m.step()
    return float(loss.detach())


def _time(fn, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return time.perf_counter() - t0


def bench(sizes=(784, 512, 10), batch: int = 100, timesteps: int = 10, steps: int = 3, repeats: int = 3,
          threads: int = 1, seed: int = 0, small: bool = True) -> dict:
    """Samples/s of our training step and of the authors'-style step (median of ``repeats``) on the
    authors' Fashion-MNIST network (784-512-10, batch 100, T = 10), and the chip-semantics evaluation
    rate; with ``small`` also the digits network (64-128-10, batch 32, T = 8, keys ``small_*``)."""
    r = bench_one(sizes, batch, timesteps, steps, repeats, threads, seed)
    if small:
        s = bench_one((64, 128, 10), 32, 8, 10, repeats, threads, seed, eval_samples=256)
        r.update({f"small_{k}": v for k, v in s.items() if k in (
            "network", "batch", "timesteps", "ours_samples_per_s", "ours_qat_samples_per_s",
            "authors_loop_samples_per_s", "speedup", "qat_speedup", "eval_samples_per_s")})
    return r


def bench_one(sizes=(784, 512, 10), batch: int = 100, timesteps: int = 10, steps: int = 3, repeats: int = 3,
              threads: int = 1, seed: int = 0, eval_samples: int = 1000, stepwise_eval_samples: int = 20) -> dict:
    """One network, side by side on the same inputs:

    * ``authors_loop``: :class:`AuthorsNet` with the batch-mean Hebbian update as one matmul (the plain
      form of the authors' loop; their released ``bmm`` of per-sample outer products is ~15× slower);
    * ``ours``: :func:`~.train.train_step` with the ``--authors`` preset (float, both layers plastic,
      the same network, T and optimisers: layer 0 in the sequence form of ``training/lowrank.py``);
    * ``ours_qat``: the project's defaults (quantisation-aware, which rounds H every step).

    ``eval_*``: chip-semantics evaluation (per-sample H from H0, ``train.predict``) of the ``--authors``
    model in the sequence form, and (``stepwise``) with one materialised H per sample (the step path);
    ``test_eval_over_epoch`` is the time of a 10 000-sample test set over a 60 000-sample epoch."""
    from .model import HybridNet
    from .train import authors_config, predict

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        feats = rng.integers(0, 256, size=(batch, sizes[0])).astype(np.uint8)
        labels = torch.as_tensor(rng.integers(0, sizes[-1], size=batch))
        loops = {}
        for name, cfg in (("ours", authors_config(hidden=sizes[1], timesteps=timesteps, batch_size=batch)),
                          ("ours_qat", TrainConfig(hidden=sizes[1], timesteps=timesteps, batch_size=batch))):
            cfg.progress = False
            net = HybridNet(cfg.net_config(sizes[0], sizes[-1]), seed=seed)
            opts = make_optimizers(net, cfg)
            xb = train_inputs(feats, net.cfg, torch.Generator().manual_seed(seed), separable=not cfg.qat)
            loops[name] = (lambda net=net, opts=opts, xb=xb, cfg=cfg:
                           train_step(net, net, opts, xb, labels, sizes[-1], cfg))
            if name == "ours":
                eval_net = net
        ref = AuthorsNet(list(sizes), T=timesteps, hebb="matmul")
        ref_opts = (torch.optim.Adam([ref.fc1.weight, ref.fc1.bias, ref.fc2.weight, ref.fc2.bias], lr=1e-3),
                    torch.optim.Adam([ref.alpha1, ref.beta1, ref.eta1], lr=5e-4))
        images = torch.as_tensor(feats, dtype=torch.float32) / 255.0
        loops["authors_loop"] = lambda: authors_train_step(ref, ref_opts, images, labels)
        times = {k: [] for k in loops}
        for fn in loops.values():
            fn()  # warm-up
        for _ in range(repeats):
            for k, fn in loops.items():
                times[k].append(_time(fn, steps))
        sps = {k: batch * steps / statistics.median(v) for k, v in times.items()}
        ef = rng.integers(0, 256, size=(eval_samples, sizes[0])).astype(np.uint8)
        t0 = time.perf_counter()
        predict(eval_net, ef, qat=False, exact=False)
        eval_sps = eval_samples / (time.perf_counter() - t0)
        with lowrank.step_path():
            t0 = time.perf_counter()
            predict(eval_net, ef[:stepwise_eval_samples], qat=False, exact=False)
            step_sps = stepwise_eval_samples / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    speedup = sps["ours"] / sps["authors_loop"]
    return {
        "network": "-".join(str(s) for s in sizes), "batch": batch, "timesteps": timesteps, "threads": threads,
        "repeats": repeats, "steps_per_repeat": steps,
        "ours_samples_per_s": sps["ours"], "ours_qat_samples_per_s": sps["ours_qat"],
        "authors_loop_samples_per_s": sps["authors_loop"],
        "speedup": speedup, "qat_speedup": sps["ours_qat"] / sps["authors_loop"],
        "goal_speedup": 2.0, "meets_goal": bool(speedup >= 2.0),
        "eval_samples_per_s": eval_sps, "eval_stepwise_samples_per_s": step_sps,
        "eval_speedup": eval_sps / step_sps,
        "test_eval_over_epoch": (10000 / eval_sps) / (60000 / sps["ours"]),
    }


def real_epoch(dataset: str = "fashion", threads: int = 1, seed: int = 0, data_root=None, max_train=None) -> dict:
    """One training epoch of the authors' network on a real dataset, both loops side by side: our
    ``--authors`` preset (:func:`~.train.train_model`) and :class:`AuthorsNet` with the matmul update,
    the same shuffled mini-batches of 100 (``python -m plasticore.training.bench real``)."""
    from plasticore.datasets import load_dataset

    from .train import authors_config, train_model

    (xtr, ytr), (xte, yte) = load_dataset(dataset, "train", data_root), load_dataset(dataset, "test", data_root)
    if max_train:
        xtr, ytr = xtr[:max_train], ytr[:max_train]
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg = authors_config(dataset=dataset, epochs=1, seed=seed, threads=threads, progress=False)
        t0 = time.perf_counter()
        _, hist = train_model(cfg, None, data=((xtr, ytr), (xte, yte)), log=lambda *_: None)
        ours_s = time.perf_counter() - t0
        torch.manual_seed(seed)
        ref = AuthorsNet([xtr.shape[1], 512, 10], T=cfg.timesteps, hebb="matmul")
        ref_opts = (torch.optim.Adam([ref.fc1.weight, ref.fc1.bias, ref.fc2.weight, ref.fc2.bias], lr=1e-3),
                    torch.optim.Adam([ref.alpha1, ref.beta1, ref.eta1], lr=5e-4))
        perm = np.random.default_rng(seed).permutation(len(ytr))
        t0 = time.perf_counter()
        for b0 in range(0, len(perm), 100):
            idx = perm[b0:b0 + 100]
            authors_train_step(ref, ref_opts, torch.as_tensor(xtr[idx], dtype=torch.float32) / 255.0,
                               torch.as_tensor(ytr[idx]))
        ref_s = time.perf_counter() - t0
        with torch.no_grad():
            pred = np.concatenate([ref(torch.as_tensor(xte[i:i + 100], dtype=torch.float32) / 255.0).argmax(1).numpy()
                                   for i in range(0, len(yte), 100)])
    finally:
        torch.set_num_threads(old)
    return {"dataset": dataset, "train_samples": int(len(ytr)), "threads": threads,
            "ours_epoch_s": hist["epoch_time_s"][0], "ours_run_s_with_eval": ours_s,
            "ours_test_accuracy_per_sample_h": hist["test_accuracy"][0],
            "authors_loop_epoch_s": ref_s, "authors_loop_test_accuracy_shared_h": float(np.mean(pred == yte)),
            "speedup": ref_s / hist["epoch_time_s"][0]}


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    if sys.argv[1:2] == ["real"]:
        print(json.dumps(real_epoch(**(json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})), indent=1))
    else:
        print(json.dumps(bench(**(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})), indent=1))
