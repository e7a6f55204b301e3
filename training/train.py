"""Training loop: two Adam optimisers, first-order bilevel updates, H carried across mini-batches.

* global parameters (W, b): Adam, ``lr_global`` (default 2e-3 with cosine annealing; the authors use 1e-3);
* meta-local parameters (α, β, η): Adam, ``lr_meta`` (5e-4);
* ``num_updates = k``: per mini-batch, W takes k inner steps (each from the same carried H) and the
  meta-local parameters one step on the gradient of the last inner step (first-order bilevel);
* ``h_mode = sample`` (default): the chip's per-sample H, every sample from H0, as the deployed network
  runs it; ``h_mode = shared`` (the authors', ``--authors``): one batch-mean H carried from mini-batch
  to mini-batch (its carried H becomes the exported H0).  A network trained with a shared H and run
  per sample meets a different H: each sample's own Hebbian term replaces the batch mean
  (docs/training.md, "H semantics");
* quantisation-aware training leaves H unrounded inside a sample (``round_h``, training/lowrank.py);
* evaluation uses the deploy semantics (per-sample H from the carried H0, quantisation-aware
  forward in float64, which equals the integer path), and the exported bundle is run through the
  integer deploy mode / golden model for ``deploy_test_accuracy``;
* under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in DistributedDataParallel (gloo),
  every rank takes a disjoint shard of each epoch, and the carried H is averaged over ranks.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from plasticore.bundle import InputCoding, per_sample_h_batch, ramp_for
from plasticore.coding import encode
from plasticore.errors import PlasticoreError

from .deploy import PER_SAMPLE_H_ELEMENTS
from .lowrank import Separable
from .model import HybridNet, NetConfig, mse_loss


@dataclass
class TrainConfig:
    dataset: str = "digits"
    epochs: int = 30
    variant: str = "HP"
    seed: int = 0
    hidden: list[int] | int = 128
    timesteps: int = 8
    batch_size: int = 32
    lr_global: float = 2e-3  #: authors: 1e-3 (we anneal from 2e-3, cosine)
    lr_meta: float = 5e-4
    num_updates: int = 1
    #: sample: the chip's per-sample H (every sample from H0), what the deployed network runs |
    #: shared: the authors' batch-mean H carried from mini-batch to mini-batch (``--authors``)
    h_mode: str = "sample"
    #: quantisation-aware training rounds H onto its 2^-12 grid every step as the chip does (the step
    #: path); False: H unrounded inside a sample, everything else rounded (the sequence form,
    #: ``training/lowrank.py``: no per-step H, what makes a per-sample H cheap on wide layers)
    round_h: bool = False
    coding: str = "direct"  #: direct | rate
    tau: float = 40.0
    qat: bool = True
    plastic_layers: str = "hidden"
    rule: dict = field(default_factory=dict)
    h_persist: str = "sample"  #: deployed H persistence (sample | never)
    data_root: str | None = None
    max_train: int | None = None
    max_test: int | None = None
    eval_every: int = 1
    onchip_eval: bool = False  #: also evaluate batch-1 with H carried from sample to sample
    threads: int | None = None
    progress: bool = True
    deploy_check: str = "golden"  #: golden | deploy | none: how deploy_test_accuracy is computed
    noise_std: float = 0.0  #: Gaussian input noise during training (fault-tolerance experiments)
    lr_schedule: str = "cosine"  #: cosine (anneal both learning rates to 0 over the run) | constant
    spike_ramp: bool = False  #: hidden spikes × exp(-t/tau) in the float forward (the authors'; qat=False)
    loss_clamp: str = "straight_through"  #: straight_through | hard (the authors' gradient; see mse_loss)

    def net_config(self, n_in: int, n_out: int) -> NetConfig:
        hidden = [self.hidden] if isinstance(self.hidden, int) else list(self.hidden)
        return NetConfig(sizes=[n_in, *hidden, n_out], variant=self.variant, timesteps=self.timesteps,
                         coding=self.coding, tau=self.tau, plastic_layers=self.plastic_layers,
                         rule=dict(self.rule), coding_seed=self.seed, spike_ramp=self.spike_ramp)


#: ``--authors``: the authors' Fashion-MNIST network and schedule (their ``shared_parameters.py``:
#: 784-512-10, T = 10, batch 100, constant Adam 1e-3 / 5e-4, λ = 0.4, decay = 0.95), both layers plastic,
#: hidden spikes × exp(−t/τ).  The ramp and the exact λ/decay exist only in the float forward, so the
#: preset trains without QAT; the exported bundle runs the contract (0/1 spikes, λ = 102/256,
#: decay = 243/256) and ``deploy_test_accuracy`` measures that gap.
AUTHORS_PRESET = {"hidden": 512, "timesteps": 10, "batch_size": 100, "lr_global": 1e-3, "lr_meta": 5e-4,
                  "lr_schedule": "constant", "plastic_layers": "all", "h_mode": "shared"}
AUTHORS_RULE = {"lam_exact": 0.4, "decay_exact": 0.95}


def authors_config(**kw) -> TrainConfig:
    """A :class:`TrainConfig` with the ``--authors`` preset (``kw`` overrides any field)."""
    rule = {**AUTHORS_RULE, **kw.pop("rule", {})}
    return TrainConfig(**{**AUTHORS_PRESET, "qat": False, "spike_ramp": True, "rule": rule, **kw})


# ------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------
def coding_of(cfg: NetConfig) -> InputCoding:
    return InputCoding(kind=cfg.coding, tau=cfg.tau,
                       ramp=ramp_for(cfg.tau, cfg.timesteps) if cfg.coding == "direct" else [],
                       seed=cfg.coding_seed)


def encode_int(features: np.ndarray, cfg: NetConfig, sample_offset: int = 0) -> np.ndarray:
    """Integer layer-0 inputs (S, T, A): exactly what the chip and the golden model get."""
    return encode(features, coding_of(cfg), cfg.timesteps, cfg.sizes[0], sample_offset)


def to_real(x_int: np.ndarray | torch.Tensor, cfg: NetConfig, dtype=torch.float32) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x_int) if not isinstance(x_int, torch.Tensor) else x_int).to(dtype)
    return x / 256.0 if cfg.coding == "direct" else x


def train_inputs(features: np.ndarray, cfg: NetConfig, gen: torch.Generator, dtype=torch.float32,
                 noise_std: float = 0.0, separable: bool = False) -> torch.Tensor | Separable:
    """Real-valued training inputs (B, T, A); rate coding draws fresh spikes from ``gen``.

    Direct coding gives the chip's input x_t = round(f·ramp_t / 256) / 256, or with ``separable`` (the
    float forward) the unrounded x_t = (f / 256)·(ramp_t / 256) as a :class:`Separable`, which lets a
    shared-H plastic layer skip its per-step H (``training/lowrank.py``)."""
    f = torch.as_tensor(features.astype(np.int64))
    if noise_std > 0:
        f = torch.clamp(torch.round(f + noise_std * 255.0 * torch.randn(f.shape, generator=gen)), 0, 255).long()
    T = cfg.timesteps
    if cfg.coding == "direct":
        ramp = torch.as_tensor(ramp_for(cfg.tau, T), dtype=torch.int64)
        if separable:
            return Separable(f.to(dtype) / 256.0, ramp.to(dtype) / 256.0)
        x = torch.bitwise_right_shift(f[:, None, :] * ramp[None, :, None] + 128, 8)
        return x.to(dtype) / 256.0
    thr = torch.randint(0, 256, (f.shape[0], T, f.shape[1]), generator=gen)
    return (thr < f[:, None, :]).to(dtype)


# ------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------
@torch.no_grad()
def predict(net: HybridNet, features: np.ndarray, h_mode: str = "sample", qat: bool = True,
            batch: int = 256, exact: bool = True, sample_offset: int = 0, round_h: bool = True) -> np.ndarray:
    """Class predictions of the float model with deploy semantics (per-sample H from H0).
    ``exact``: run a float64 copy (the quantisation-aware float64 forward equals the integer path);
    ``round_h=False``: a quantisation-aware forward leaves H unrounded inside a sample (the sequence form:
    fast on wide layers, within H's rounding of the integer path)."""
    model = copy.deepcopy(net).double() if exact else net
    dtype = torch.float64 if exact else torch.float32
    if h_mode == "sample":
        # a float v1 layer runs in the sequence form (training/lowrank.py): no per-sample H to hold
        held = [L.n_in * L.n_out for L in net.layers
                if L.opts.plastic and ((qat and round_h) or L.rule_terms is not None or L.use_mask)]
        batch = per_sample_h_batch(batch, held, PER_SAMPLE_H_ELEMENTS)
    preds = []
    for s0 in range(0, len(features), batch):
        xi = encode_int(features[s0:s0 + batch], net.cfg, sample_offset + s0)
        out = model(to_real(xi, net.cfg, dtype), h_mode=h_mode, qat=qat, keep_h=False, round_h=round_h)
        preds.append(out["u"].argmax(-1).numpy())
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


@torch.no_grad()
def predict_shared(net: HybridNet, features: np.ndarray, qat: bool = False, batch: int = 100,
                   seed: int = 0) -> np.ndarray:
    """The authors' evaluation: mini-batches of ``batch`` in order, one batch-mean H per mini-batch,
    carried from batch to batch (starting from the trained H), on the training forward's inputs (float
    direct coding unrounded). Not the chip's semantics: a model trained this way and run per sample
    meets a different H (docs/training.md, "Shared-H training, per-sample deployment")."""
    model = copy.deepcopy(net)
    gen = torch.Generator().manual_seed(seed)
    preds = []
    for s0 in range(0, len(features), batch):
        xb = train_inputs(features[s0:s0 + batch], net.cfg, gen, separable=not qat)
        preds.append(model(xb, h_mode="shared", qat=qat, carry=True)["u"].argmax(-1).numpy())
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


@torch.no_grad()
def predict_onchip(net: HybridNet, features: np.ndarray, qat: bool = True) -> np.ndarray:
    """Batch-1 "on-chip" semantics: samples one after another, every plastic layer's H carried from
    sample to sample and step to step (h_persist = never). The layers' H buffers are not changed."""
    model = copy.deepcopy(net).double()
    Hs = [L.H.double().clone() for L in model.layers]
    preds = np.zeros(len(features), np.int64)
    for i in range(len(features)):
        xi = encode_int(features[i:i + 1], net.cfg, i)
        out = model(to_real(xi, net.cfg, torch.float64), h_mode="shared", qat=qat, H=Hs)
        Hs = [h if L.opts.plastic else Hs[j] for j, (L, h) in enumerate(zip(model.layers, out["H"], strict=True))]
        preds[i] = int(out["u"].argmax(-1))
    return preds


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(pred == labels)) if len(labels) else 0.0


# ------------------------------------------------------------------------------------------
# distributed helpers
# ------------------------------------------------------------------------------------------
def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def maybe_init_distributed() -> tuple[int, int]:
    """Initialise gloo from torchrun's environment (WORLD_SIZE > 1); returns (rank, world)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


# ------------------------------------------------------------------------------------------
# the loop
# ------------------------------------------------------------------------------------------
def make_optimizers(net: HybridNet, cfg: TrainConfig):
    gp, mp = net.global_parameters(), net.meta_parameters()
    opt_g = torch.optim.Adam(gp, lr=cfg.lr_global) if gp else None
    opt_m = torch.optim.Adam(mp, lr=cfg.lr_meta) if mp else None
    return opt_g, opt_m


def train_step(model, net: HybridNet, opts, xb: torch.Tensor, yb: torch.Tensor, n_classes: int,
               cfg: TrainConfig) -> float:
    """One mini-batch: k inner global steps, one meta step on the last inner gradient."""
    opt_g, opt_m = opts
    H_start = [L.H.clone() for L in net.layers]
    loss_v = 0.0
    k = max(1, int(cfg.num_updates))
    for i in range(k):
        last = i == k - 1
        if i > 0:  # every inner step starts from the same carried H
            for L, h in zip(net.layers, H_start, strict=True):
                L.H.copy_(h)
        if opt_g:
            opt_g.zero_grad(set_to_none=True)
        if opt_m:
            opt_m.zero_grad(set_to_none=True)
        out = model(xb, h_mode=cfg.h_mode, qat=cfg.qat, carry=True, round_h=cfg.round_h,
                    keep_h=cfg.h_mode == "shared")
        loss = mse_loss(out["u"], net.theta_out, yb, n_classes, cfg.loss_clamp != "hard")
        loss.backward()
        if opt_g:
            opt_g.step()
        if last and opt_m:
            opt_m.step()
        loss_v = float(loss.detach())
    dist = _dist()
    if dist is not None and cfg.h_mode == "shared":
        for L in net.layers:
            if L.opts.plastic:
                dist.all_reduce(L.H, op=dist.ReduceOp.SUM)
                L.H /= dist.get_world_size()
    return loss_v


def train_model(cfg: TrainConfig, out: Path | None = None, data=None, log=print,
                on_epoch: Callable[[int, dict], None] | None = None):
    """Train a network; returns ``(net, history)``. ``data`` = ((xtr, ytr), (xte, yte)) uint8
    features, else loaded with :func:`plasticore.datasets.load_dataset`. ``on_epoch(epoch, history)``
    is called on rank 0 after every epoch (the sweep reports the held-out accuracy there and may
    raise to stop the run, e.g. ``optuna.TrialPruned``)."""
    from plasticore.datasets import load_dataset

    rank, world = maybe_init_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if data is None:
        data = (load_dataset(cfg.dataset, "train", cfg.data_root), load_dataset(cfg.dataset, "test", cfg.data_root))
    (xtr, ytr), (xte, yte) = data
    if cfg.max_train:
        xtr, ytr = xtr[:cfg.max_train], ytr[:cfg.max_train]
    if cfg.max_test:
        xte, yte = xte[:cfg.max_test], yte[:cfg.max_test]
    n_classes = int(max(ytr.max(), yte.max())) + 1
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    net = HybridNet(cfg.net_config(xtr.shape[1], n_classes), seed=cfg.seed)
    model = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(net, forward_sync_buffers=False)  # H is averaged explicitly after each step
    opts = make_optimizers(net, cfg)
    scheds = []
    if cfg.lr_schedule == "cosine":
        scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=max(1, cfg.epochs)) for o in opts if o]
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + 1)
    hist = {"epoch": [], "loss": [], "train_accuracy": [], "test_accuracy": [], "epoch_time_s": [],
            "samples_per_s": []}
    ckpt_dir = Path(out) / "checkpoints" if out is not None else None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    S = len(ytr)
    for ep in range(1, cfg.epochs + 1):
        net.train()
        perm = torch.randperm(S, generator=gen).numpy()
        shard = perm[rank::world]
        nb = math.ceil(len(shard) / cfg.batch_size)
        it = range(nb)
        bar = None
        if cfg.progress and tqdm is not None and rank == 0:
            bar = tqdm(it, desc=f"epoch {ep}/{cfg.epochs}", leave=False, dynamic_ncols=True)
            it = bar
        t0 = time.perf_counter()
        losses = []
        for bi in it:
            idx = shard[bi * cfg.batch_size:(bi + 1) * cfg.batch_size]
            xb = train_inputs(xtr[idx], net.cfg, gen, noise_std=cfg.noise_std, separable=not cfg.qat)
            yb = torch.as_tensor(ytr[idx])
            losses.append(train_step(model, net, opts, xb, yb, n_classes, cfg))
            if bar is not None:
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
        dt = time.perf_counter() - t0
        for sch in scheds:
            sch.step()
        if bar is not None:
            bar.close()
        hist["epoch"].append(ep)
        hist["loss"].append(float(np.mean(losses)) if losses else float("nan"))
        hist["epoch_time_s"].append(dt)
        hist["samples_per_s"].append(len(shard) * world / dt if dt > 0 else 0.0)
        if ep % cfg.eval_every == 0 or ep == cfg.epochs:
            ntr = min(len(ytr), 512)
            # (per epoch: H unrounded inside a sample, fast; the final metrics run the exact paths)
            tr_acc = accuracy(predict(net, xtr[:ntr], qat=cfg.qat, exact=False, round_h=False), ytr[:ntr])
            te_acc = accuracy(predict(net, xte, qat=cfg.qat, exact=False, round_h=False), yte)
        else:
            tr_acc = te_acc = float("nan")
        hist["train_accuracy"].append(tr_acc)
        hist["test_accuracy"].append(te_acc)
        if rank == 0:
            log(f"epoch {ep:3d}  loss {hist['loss'][-1]:.4f}  train {tr_acc:.4f}  test {te_acc:.4f}  "
                f"({hist['samples_per_s'][-1]:.0f} samples/s)")
            if ckpt_dir is not None:
                save_checkpoint(net, cfg, hist, ckpt_dir / "last.pt")
            if on_epoch is not None:
                on_epoch(ep, hist)
    return net, hist


def save_checkpoint(net: HybridNet, cfg: TrainConfig, hist: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"train_config": asdict(cfg), "net_config": net.cfg.to_dict(), "state_dict": net.state_dict(),
                "masks": [L.use_mask for L in net.layers], "history": hist}, tmp)
    os.replace(tmp, path)


class CheckpointError(PlasticoreError):
    """A checkpoint cannot be loaded (not a checkpoint, or it holds objects other than tensors and plain data)."""


def load_checkpoint(path: str | os.PathLike) -> tuple[HybridNet, dict]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    ``torch.load(weights_only=True)``: only tensors and plain containers/numbers/strings are unpickled
    (all a checkpoint holds), so a crafted file cannot run code; anything else raises
    :class:`CheckpointError`.
    """
    import pickle

    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a loadable plasticore checkpoint ({first})") from None
    if not isinstance(d, dict) or "net_config" not in d or "state_dict" not in d:
        raise CheckpointError(f"{path}: not a plasticore checkpoint (no net_config/state_dict)")
    net = HybridNet(NetConfig(**d["net_config"]))
    net.load_state_dict(d["state_dict"])
    for L, m in zip(net.layers, d.get("masks", []), strict=False):
        L.use_mask = bool(m)
    return net, d


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float) + "\n")
    os.replace(tmp, path)
