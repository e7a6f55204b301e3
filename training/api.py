"""Entry points of ``plasticore.training`` for the applications, the benches and other layers.

* :func:`train` -- train, export, check the integer path, write ``out/``:
  ``bundle/`` (the integer bundle), ``metrics.json``, ``checkpoint.pt``, ``checkpoints/last.pt`` and
  PNG plots (``curves.png``, ``raster.png``, ``membranes.png``, ``h_heatmap.png``);
* :func:`run_experiment` -- the fault-tolerance, few-shot and continual-learning experiments;
* :func:`add_train_args`, :func:`train_kwargs` -- the options of ``plasticore train`` and the
  :func:`train` keywords they mean (also the search space of ``plasticore sweep``);
* :func:`bench` -- training throughput of our loop vs a plain re-implementation of the authors' loop.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from .train import (
    AUTHORS_PRESET,
    AUTHORS_RULE,
    TrainConfig,
    accuracy,
    encode_int,
    predict,
    predict_onchip,
    train_model,
    write_json,
)

#: plastic layers up to this many synapses get the exact float64 forward and the torch deploy mode on
#: every test sample; wider ones on the first EXACT_CHECK_SAMPLES (one H per sample each)
EXACT_ALL_MAX_H = 1 << 16
EXACT_CHECK_SAMPLES = 500


def _metrics_after_training(net, cfg: TrainConfig, hist: dict, xte, yte, out: Path | None, log=print,
                            onchip: bool = False, deploy_check: str = "golden", plots: bool = True) -> dict:
    from plasticore.bundle import save_bundle

    from .deploy import deploy_run
    from .export import export_bundle

    t0 = time.perf_counter()
    S = len(yte)
    # the exact float64 forward and the torch deploy mode walk one H per sample: on wide plastic layers
    # they check the first EXACT_CHECK_SAMPLES; the float accuracy then comes from the sequence form
    # (H unrounded inside a sample) and the integer one from the golden model, both on every sample
    widest = max((L.n_in * L.n_out for L in net.layers if L.opts.plastic), default=0)
    n_exact = S if widest <= EXACT_ALL_MAX_H or deploy_check != "golden" else min(S, EXACT_CHECK_SAMPLES)
    p_exact = predict(net, xte[:n_exact], exact=True)
    p_float = p_exact if n_exact == S else predict(net, xte, exact=False, round_h=False)
    p_noq = predict(net, xte, qat=False, exact=False)
    bundle = export_bundle(net, name=f"{cfg.dataset}-{cfg.variant}",
                           meta={"dataset": cfg.dataset, "seed": cfg.seed, "h_mode_train": cfg.h_mode})
    x_int = encode_int(xte, net.cfg)
    d = deploy_run(bundle, x_int[:n_exact], record=False)
    m = {
        "dataset": cfg.dataset, "variant": cfg.variant, "sizes": list(net.cfg.sizes), "epochs": cfg.epochs,
        "seed": cfg.seed, "timesteps": cfg.timesteps, "coding": cfg.coding, "h_mode_train": cfg.h_mode,
        "test_samples": int(S),
        "test_accuracy": accuracy(p_float, yte),
        "test_accuracy_form": "exact" if n_exact == S else "H unrounded inside a sample",
        "exact_check_samples": int(n_exact),
        "float_noquant_test_accuracy": accuracy(p_noq, yte),
        "torch_deploy_test_accuracy": d.accuracy(yte[:n_exact]),
        "float_deploy_prediction_agreement": float(np.mean(p_exact == d.predictions)) if n_exact else 1.0,
    }
    if deploy_check == "golden":
        from plasticore import golden

        g = golden.run(bundle, x_int, labels=yte)
        same = (np.array_equal(g.predictions[:n_exact], d.predictions)
                and all(np.array_equal(a[:n_exact], b) for a, b in zip(g.u_final, d.u_final, strict=True))
                and all(np.array_equal(a[:n_exact], b) for a, b in zip(g.spikes, d.spikes, strict=True)))
        m["deploy_test_accuracy"] = accuracy(g.predictions, yte)
        m["deploy_source"] = "plasticore.golden"
        m["deploy_matches_golden"] = bool(same)
        m["float_deploy_prediction_agreement"] = float(np.mean(p_float == g.predictions)) if S else 1.0
    else:
        m["deploy_test_accuracy"] = m["torch_deploy_test_accuracy"]
        m["deploy_source"] = "plasticore.training.deploy"
    m["deploy_minus_float"] = m["deploy_test_accuracy"] - m["test_accuracy"]
    if onchip:
        from plasticore import golden

        b_on = export_bundle(net, name=f"{cfg.dataset}-{cfg.variant}-onchip", h_persist="never")
        m["onchip_float_test_accuracy"] = accuracy(predict_onchip(net, xte), yte)
        m["onchip_deploy_test_accuracy"] = accuracy(golden.run(b_on, x_int).predictions, yte)
        if out is not None:
            save_bundle(b_on, Path(out) / "bundle_onchip", replace=True)  # only a previous bundle
    m["history"] = hist
    m["train_samples_per_s"] = float(np.median(hist["samples_per_s"])) if hist["samples_per_s"] else 0.0
    m["eval_time_s"] = time.perf_counter() - t0
    if out is not None:
        out = Path(out)
        save_bundle(bundle, out / "bundle", replace=True)  # replaces only a previous bundle
        if plots:
            m["plots"] = make_plots(net, hist, xte, yte, out, title=f"{cfg.dataset} {cfg.variant}")
        write_json(out / "metrics.json", m)
    log(f"test accuracy: float {m['test_accuracy']:.4f}  deploy (integer) {m['deploy_test_accuracy']:.4f}  "
        f"float w/o quantisation {m['float_noquant_test_accuracy']:.4f}")
    return m


def make_plots(net, hist, xte, yte, out: Path, title: str = "") -> list[str]:
    from . import plots

    out.mkdir(parents=True, exist_ok=True)
    paths = [plots.plot_curves(hist, out / "curves.png", title)]
    with torch.no_grad():
        from .train import to_real

        xi = encode_int(xte[:1], net.cfg)
        o = net(to_real(xi, net.cfg), h_mode="sample", record=True)
    paths.append(plots.plot_raster([s[0].numpy() for s in o["spikes"]], out / "raster.png"))
    paths.append(plots.plot_membranes(o["mem"][-1][0].numpy(), o["theta"], out / "membranes.png",
                                      int(yte[0]) if len(yte) else None))
    paths.append(plots.plot_h(net.layers[0].H.numpy(), out / "h_heatmap.png"))
    return [str(p) for p in paths]


def train(dataset: str, epochs: int, out: Path | str | None, variant: str = "HP", seed: int = 0,
          hidden: int | list[int] = 128, timesteps: int = 8, batch_size: int = 32, lr_global: float = 2e-3,
          lr_meta: float = 5e-4, num_updates: int = 1, h_mode: str = "sample", coding: str = "direct",
          qat: bool = True, rule: dict | None = None, plastic_layers: str = "hidden", data_root=None,
          max_train: int | None = None, max_test: int | None = None, onchip_eval: bool = False,
          threads: int | None = None, progress: bool = True, deploy_check: str = "golden",
          plots: bool = True, data=None, log=print, tau: float = 40.0, eval_every: int = 1,
          on_epoch=None, lr_schedule: str = "cosine", spike_ramp: bool = False,
          loss_clamp: str = "straight_through", noise_std: float = 0.0) -> dict:
    """Train a hybrid network on ``dataset`` and export it; returns the metrics dict (also written to
    ``out/metrics.json``).  ``deploy_test_accuracy`` is computed on the exported bundle by the golden
    model (``deploy_check='golden'``) or the torch deploy mode (``'deploy'``).  ``data`` =
    ((x_train, y_train), (x_test, y_test)) replaces the dataset's own splits (the sweep passes a
    validation split of the training set as the test pair); ``on_epoch(epoch, history)`` is called
    after every epoch."""
    from .train import save_checkpoint

    cfg = TrainConfig(dataset=dataset, epochs=epochs, variant=variant, seed=seed, hidden=hidden,
                      timesteps=timesteps, batch_size=batch_size, lr_global=lr_global, lr_meta=lr_meta,
                      num_updates=num_updates, h_mode=h_mode, coding=coding, qat=qat, rule=dict(rule or {}),
                      plastic_layers=plastic_layers, data_root=None if data_root is None else str(data_root),
                      max_train=max_train, max_test=max_test, onchip_eval=onchip_eval, threads=threads,
                      progress=progress, deploy_check=deploy_check, tau=tau, eval_every=eval_every,
                      lr_schedule=lr_schedule, spike_ramp=spike_ramp, loss_clamp=loss_clamp, noise_std=noise_std)
    out = None if out is None else Path(out)
    if data is None:
        from plasticore.datasets import load_dataset

        data = (load_dataset(dataset, "train", data_root), load_dataset(dataset, "test", data_root))
    t0 = time.perf_counter()
    net, hist = train_model(cfg, out, data=data, log=log, on_epoch=on_epoch)
    train_time = time.perf_counter() - t0
    from .train import _dist

    dist = _dist()
    if dist is not None and dist.get_rank() != 0:
        return {"rank": dist.get_rank()}
    xte, yte = data[1]
    if max_test:
        xte, yte = xte[:max_test], yte[:max_test]
    m = _metrics_after_training(net, cfg, hist, xte, yte, out, log, onchip=onchip_eval,
                                deploy_check=deploy_check, plots=plots)
    m["train_time_s"] = train_time
    if dist is not None:
        m["world_size"] = dist.get_world_size()
    if out is not None:
        save_checkpoint(net, cfg, hist, out / "checkpoint.pt")
        write_json(out / "metrics.json", m)
    return m


def run_experiment(kind: str, out: Path | str, **kw) -> dict:
    """Run ``fault``, ``fewshot`` or ``continual``; prints an HP/GP/LP table, writes
    ``out/results.json`` and plots."""
    from . import experiments, fewshot

    fns = {"fault": experiments.fault_tolerance, "fewshot": fewshot.few_shot,
           "fewshot-teach": experiments.few_shot, "continual": experiments.continual,
           "table": experiments.authors_table}
    if kind not in fns:
        raise ValueError(f"unknown experiment {kind!r}, expected one of {sorted(fns)}")
    return fns[kind](Path(out), **kw)


def bench(**kw) -> dict:
    from .bench import bench as _bench

    return _bench(**kw)


# ------------------------------------------------------------------------------------------
# the options of `plasticore train` (its command: plasticore.app.training_cli)
# ------------------------------------------------------------------------------------------
def _rule_from_args(a) -> dict:
    rule = {}
    if a.post_fn:
        rule["post_fn"] = a.post_fn
    if a.hebb_sign is not None:
        rule["hebb_sign"] = a.hebb_sign
    if a.clamp is not None:
        rule["clamp"] = None if a.clamp == "none" else float(a.clamp)
    if a.reset:
        rule["reset"] = a.reset
    if a.h_persist:
        rule["h_persist"] = a.h_persist
    if a.theta is not None:
        rule["theta"] = a.theta
    if a.leak is not None:
        rule["lam"] = a.leak
    if a.decay is not None:
        rule["decay"] = a.decay
    return rule


#: the defaults of the options that ``--authors`` presets (an explicit option always wins)
TRAIN_DEFAULTS = {"hidden": [128], "timesteps": 8, "batch_size": 32, "lr_global": 2e-3, "lr_meta": 5e-4,
                  "lr_schedule": "cosine", "plastic_layers": "hidden", "h_mode": "sample"}


def train_kwargs(a: argparse.Namespace) -> dict:
    """Keyword arguments of :func:`train` from parsed ``plasticore train`` arguments (``--authors`` fills
    unset options); also used by ``plasticore sweep``, so a trial runs exactly what its printed command runs."""
    preset = AUTHORS_PRESET if a.authors else {}
    v = {k: getattr(a, k) if getattr(a, k) is not None else preset.get(k, d) for k, d in TRAIN_DEFAULTS.items()}
    hidden = v.pop("hidden")
    hidden = [hidden] if isinstance(hidden, int) else list(hidden)
    rule = _rule_from_args(a)
    if a.authors:
        rule = {**AUTHORS_RULE, **rule}
    return dict(v, dataset=a.dataset, epochs=a.epochs, out=a.out, variant=a.variant, seed=a.seed,
                hidden=hidden[0] if len(hidden) == 1 else hidden, num_updates=a.num_updates,
                coding=a.coding, qat=not (a.no_qat or a.authors), rule=rule, spike_ramp=bool(a.authors),
                loss_clamp="hard" if a.hard_clamp_loss else "straight_through", data_root=a.data_root,
                max_train=a.max_train, max_test=a.max_test, onchip_eval=a.onchip_eval, threads=a.threads,
                progress=not a.no_progress, deploy_check=a.deploy_check)


def add_train_args(p: argparse.ArgumentParser) -> None:
    from plasticore import contract as C
    from plasticore.argtypes import int_list, int_range, nonneg_int, positive_float, positive_int

    p.add_argument("--dataset", default="digits",
                   help="digits | mnist1d | mnist | fashion | mnist14 | fashion14 | omniglot")
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--force", action="store_true", help="replace a previous training output directory at --out")
    p.add_argument("--variant", default="HP", choices=["HP", "GP", "LP"])
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--authors", action="store_true",
                   help="the authors' network: 784-512-10 sizes unless --hidden, T 10, batch 100, constant lr "
                        "1e-3/5e-4, both layers plastic, hidden-spike ramp, exact λ 0.4 / decay 0.95 (float, no QAT)")
    p.add_argument("--hidden", type=int_list(1, C.MAX_AXONS),
                   help="hidden sizes, comma separated (e.g. 512 or 256,128); default 128")
    p.add_argument("--timesteps", type=positive_int, help="default 8")
    p.add_argument("--batch-size", type=positive_int, help="default 32")
    p.add_argument("--lr-global", type=positive_float, help="default 2e-3")
    p.add_argument("--lr-meta", type=positive_float, help="default 5e-4")
    p.add_argument("--lr-schedule", choices=["cosine", "constant"], help="default cosine")
    p.add_argument("--hard-clamp-loss", action="store_true",
                   help="the authors' loss gradient (zero above the 1.1 clamp) instead of straight-through")
    p.add_argument("--num-updates", type=positive_int, default=1, help="inner global steps per meta step (k)")
    p.add_argument("--h-mode", default=None, choices=["shared", "sample"],
                   help="sample (default): per-sample H from H0, as deployed; shared: batch-mean H carried "
                        "across mini-batches (the authors', --authors)")
    p.add_argument("--coding", default="direct", choices=["direct", "rate"])
    p.add_argument("--post-fn", choices=["tanh", "identity", "sign"])
    p.add_argument("--hebb-sign", type=int, choices=[-1, 1])
    p.add_argument("--clamp", choices=["4", "2", "none"])
    p.add_argument("--reset", choices=["soft", "hard"])
    p.add_argument("--h-persist", choices=["sample", "never"], help="deployed H persistence")
    p.add_argument("--theta", type=positive_float, help="firing threshold θ (default 0.35)")
    p.add_argument("--leak", type=int_range(0, C.FRAC8_ONE), help="membrane leak λ = k/256 (default 102 ≈ 0.4)")
    p.add_argument("--decay", type=int_range(0, C.FRAC8_ONE), help="plastic decay of H = k/256 (default 243 ≈ 0.95)")
    p.add_argument("--plastic-layers", choices=["hidden", "all", "first"], help="default hidden")
    p.add_argument("--data-root", type=Path, help="folder with user-supplied dataset files")
    p.add_argument("--max-train", type=positive_int)
    p.add_argument("--max-test", type=positive_int)
    p.add_argument("--onchip-eval", action="store_true", help="also evaluate batch-1 with H carried")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--no-qat", action="store_true", help="train without fake quantisation")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--deploy-check", default="golden", choices=["golden", "deploy"])
