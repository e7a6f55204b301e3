"""Training throughput: our loop vs a plain re-implementation of the authors' loop.

The reference (:class:`AuthorsNet`, :func:`authors_train_step`) is written the way the authors'
released scripts compute the hybrid step (docs/training.md, "The model"): ``nn.Linear`` layers, a
Python loop over time steps, the input and the hidden spikes scaled by exp(−t/τ), ``state = fc(x) +
α·x.mm(hebb)``, soft-reset LIF, the Hebbian update as ``torch.bmm`` of per-sample outer products
followed by ``.mean(0)`` (a B×A×N tensor per step), clamp ±4, MSE on clamp(u/θ, max 1.1), two Adam
optimisers stepped every mini-batch. Ours is :func:`plasticore.training.train.train_step` with the
default configuration (quantisation-aware, shared H carried across mini-batches, batch-mean update
as one matmul).

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


def bench(sizes=(784, 512, 10), batch: int = 100, timesteps: int = 8, steps: int = 2, repeats: int = 3,
          threads: int = 1, qat: bool = True, seed: int = 0, small: bool = True) -> dict:
    """Samples/s of our training step and of the authors'-style step (median of ``repeats``) on the
    authors' Fashion-MNIST network (784-512-10, batch 100); with ``small`` also on the digits
    network (64-128-10, batch 32, keys ``small_*``)."""
    r = bench_one(sizes, batch, timesteps, steps, repeats, threads, qat, seed)
    if small:
        s = bench_one((64, 128, 10), 32, timesteps, 10, repeats, threads, qat, seed)
        r.update({f"small_{k}": v for k, v in s.items() if k in (
            "network", "batch", "ours_samples_per_s", "authors_loop_samples_per_s", "speedup")})
    return r


def bench_one(sizes=(784, 512, 10), batch: int = 100, timesteps: int = 8, steps: int = 2, repeats: int = 3,
              threads: int = 1, qat: bool = True, seed: int = 0, ref_hebb: str = "bmm") -> dict:
    """One network: samples/s of both loops, median of ``repeats`` interleaved timings."""
    from .model import HybridNet

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        feats = rng.integers(0, 256, size=(batch, sizes[0])).astype(np.uint8)
        labels = torch.as_tensor(rng.integers(0, sizes[-1], size=batch))
        cfg = TrainConfig(hidden=sizes[1], timesteps=timesteps, batch_size=batch, qat=qat, progress=False)
        net = HybridNet(cfg.net_config(sizes[0], sizes[-1]), seed=seed)
        opts = make_optimizers(net, cfg)
        gen = torch.Generator().manual_seed(seed)
        xb = train_inputs(feats, net.cfg, gen)
        ref = AuthorsNet(list(sizes), T=timesteps, hebb=ref_hebb)
        ref_opts = (torch.optim.Adam([ref.fc1.weight, ref.fc1.bias, ref.fc2.weight, ref.fc2.bias], lr=1e-3),
                    torch.optim.Adam([ref.alpha1, ref.beta1, ref.eta1], lr=5e-4))
        images = torch.as_tensor(feats, dtype=torch.float32) / 255.0

        def ours():
            train_step(net, net, opts, xb, labels, sizes[-1], cfg)

        def theirs():
            authors_train_step(ref, ref_opts, images, labels)

        ours()
        theirs()
        t_ours, t_ref = [], []
        for _ in range(repeats):
            t_ours.append(_time(ours, steps))
            t_ref.append(_time(theirs, steps))
        ours_sps = batch * steps / statistics.median(t_ours)
        ref_sps = batch * steps / statistics.median(t_ref)
    finally:
        torch.set_num_threads(old)
    return {
        "network": "-".join(str(s) for s in sizes), "batch": batch, "timesteps": timesteps, "threads": threads,
        "qat": qat, "ref_hebb": ref_hebb, "repeats": repeats, "steps_per_repeat": steps,
        "ours_samples_per_s": ours_sps, "authors_loop_samples_per_s": ref_sps,
        "speedup": ours_sps / ref_sps, "goal_speedup": 2.0, "meets_goal": bool(ours_sps / ref_sps >= 2.0),
    }


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    kw = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    print(json.dumps(bench(**kw), indent=1))
