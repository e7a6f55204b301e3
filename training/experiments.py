"""The paper's three task families, sized for a CPU (minutes), each printing an HP / GP / LP table.

* :func:`fault_tolerance` -- train HP, GP, LP; evaluate the **exported integer bundles** (torch deploy
  mode == golden) under Gaussian input noise, occlusion, dead synapses (W = 0 and H masked) and dead
  hidden neurons (stuck-at-zero output).
* :func:`few_shot` -- N-way K-shot episodes on classes held out of meta-training; at test time the
  network learns only through H (batch-1 semantics: H carried from support sample to query sample,
  membranes reset per sample), with a label teaching current on the output layer during support.
* :func:`continual` -- a sequence of permuted-input tasks, each with its own task mask ``M`` on the
  hidden layer (``W⊙M + α·H⊙(1−M)``); after each task, the mean accuracy over the tasks seen so far.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch

from plasticore import contract as C
from plasticore.bundle import copy_layer

from .model import HybridNet, NetConfig
from .train import TrainConfig, accuracy, encode_int, predict, predict_shared, to_real, train_model, write_json

VARIANTS = ("HP", "GP", "LP")


def _table(rows: list[dict], cols: list[str], title: str) -> str:
    w = max(12, *(len(str(r[cols[0]])) + 2 for r in rows))
    cw = [max(8, len(c) + 2) for c in cols[1:]]
    lines = [title, f"{cols[0]:<{w}}" + "".join(f"{c:>{n}}" for c, n in zip(cols[1:], cw, strict=True))]
    for r in rows:
        lines.append(f"{str(r[cols[0]]):<{w}}" + "".join(
            f"{r[c]:>{n}.3f}" if isinstance(r[c], float) else f"{r[c]!s:>{n}}"
            for c, n in zip(cols[1:], cw, strict=True)))
    return "\n".join(lines)


def _data(dataset: str, data_root=None, quick: bool = False):
    from plasticore.datasets import load_dataset

    tr, te = load_dataset(dataset, "train", data_root), load_dataset(dataset, "test", data_root)
    if quick:
        tr, te = (tr[0][:400], tr[1][:400]), (te[0][:200], te[1][:200])
    return tr, te


# ------------------------------------------------------------------------------------------
# fault tolerance
# ------------------------------------------------------------------------------------------
def _faulty_bundle(bundle, kind: str, frac: float, rng: np.random.Generator):
    layers = [copy_layer(L) for L in bundle.layers]
    L0 = layers[0]
    if kind == "dead_synapses" and frac > 0:
        dead = rng.random(L0.W.shape) < frac
        L0.W[dead] = 0
        L0.H0[dead] = 0
        L0.hmask[dead] = 0
    elif kind == "dead_neurons" and frac > 0 and len(layers) > 1:
        dead = rng.random(L0.n_out) < frac  # hidden neurons whose output is stuck at zero
        L1 = layers[1]
        L1.W[dead, :] = 0
        L1.H0[dead, :] = 0
        L1.hmask[dead, :] = 0
    b = copy.copy(bundle)
    b.layers = layers
    return b


def _perturb_features(x: np.ndarray, kind: str, level: float, rng: np.random.Generator) -> np.ndarray:
    x = x.astype(np.float64)
    if kind == "noise" and level > 0:  # Gaussian noise of variance `level` on inputs scaled to [0, 1]
        x = x + np.sqrt(level) * 255.0 * rng.standard_normal(x.shape)
    elif kind == "occlusion" and level > 0:  # a random contiguous block of `level` of the features
        D = x.shape[1]
        n = int(round(level * D))
        for i in range(x.shape[0]):
            s = int(rng.integers(0, D - n + 1))
            x[i, s:s + n] = 0
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def fault_tolerance(out: Path, dataset: str = "digits", epochs: int | None = None, seed: int = 0,
                    quick: bool = False, hidden: int = 128, data_root=None, log=print) -> dict:
    from .deploy import deploy_run
    from .export import export_bundle

    epochs = epochs or (2 if quick else 20)
    (xtr, ytr), (xte, yte) = _data(dataset, data_root, quick)
    conds = [("clean", 0.0)] + [("noise", v) for v in (0.02, 0.06, 0.1)] + \
        [("occlusion", v) for v in (0.25, 0.5)] + [("dead_synapses", v) for v in (0.2, 0.5)] + \
        [("dead_neurons", v) for v in (0.2, 0.5)]
    res = {c: {} for c in conds}
    t0 = time.perf_counter()
    for var in VARIANTS:
        cfg = TrainConfig(dataset=dataset, epochs=epochs, variant=var, seed=seed, hidden=hidden, progress=False,
                          eval_every=max(1, epochs))
        net, _ = train_model(cfg, None, data=((xtr, ytr), (xte, yte)), log=lambda *_: None)
        bundle = export_bundle(net, name=f"fault-{var}")
        for kind, lvl in conds:
            rng = np.random.default_rng(seed + 17)
            if kind in ("dead_synapses", "dead_neurons"):
                b, xf = _faulty_bundle(bundle, kind, lvl, rng), xte
            else:
                b, xf = bundle, _perturb_features(xte, kind, lvl, rng)
            res[(kind, lvl)][var] = deploy_run(b, encode_int(xf, net.cfg), record=False).accuracy(yte)
    rows = [{"condition": f"{k} {v:g}" if k != "clean" else "clean", **{var: res[(k, v)][var] for var in VARIANTS}}
            for k, v in conds]
    log(_table(rows, ["condition", *VARIANTS], f"fault tolerance on {dataset} (integer deploy accuracy)"))
    out.mkdir(parents=True, exist_ok=True)
    from .plots import plot_table

    plot_table(rows, "condition", list(VARIANTS), out / "fault.png", "fault tolerance", "condition")
    r = {"experiment": "fault", "dataset": dataset, "epochs": epochs, "rows": rows,
         "time_s": time.perf_counter() - t0, "evaluated_on": "exported integer bundle (torch deploy mode)"}
    write_json(out / "results.json", r)
    return r


# ------------------------------------------------------------------------------------------
# few-shot
# ------------------------------------------------------------------------------------------
def _episode(rng, feats_by_class, classes, n_way, k_shot, n_query):
    """:func:`plasticore.training.fewshot.episode` over torch features (same draws), as tensors."""
    from .fewshot import episode

    sup, sl, qry, ql = episode(rng, feats_by_class, classes, n_way, k_shot, n_query)
    return torch.as_tensor(sup), sl, torch.as_tensor(qry), ql


def _run_episodes(net, eps, teach_amp: float, dtype=torch.float32, grad: bool = False):
    """eps: list of (support x, support y, query x, query y) with x real-valued (n, T, A) tensors,
    processed as a batch of episodes (episode b has its own H: batch-1 semantics per episode: H
    carried from sample to sample, membranes reset per sample). Returns (loss, n_correct)."""
    from .model import mse_loss

    B = len(eps)
    n_way = int(max(int(e[1].max()) for e in eps)) + 1
    Hs = [L.H.to(dtype).expand(B, *L.H.shape).clone() for L in net.layers]
    loss = torch.zeros((), dtype=dtype)
    correct = 0
    sx = torch.stack([e[0] for e in eps], 1).to(dtype)  # (n_sup, B, T, A)
    sy = torch.as_tensor(np.stack([e[1] for e in eps], 1))
    qx = torch.stack([e[2] for e in eps], 1).to(dtype)
    qy = torch.as_tensor(np.stack([e[3] for e in eps], 1))
    with torch.set_grad_enabled(grad):
        for i in range(sx.shape[0]):  # support: teaching current on the output layer
            teach = teach_amp * torch.nn.functional.one_hot(sy[i], n_way).to(dtype)
            o = net(sx[i], h_mode="sample", teach=teach, H=Hs)
            Hs = [h if L.opts.plastic else Hs[j] for j, (L, h) in enumerate(zip(net.layers, o["H"], strict=True))]
        for i in range(qx.shape[0]):  # queries: no teaching, H keeps evolving
            o = net(qx[i], h_mode="sample", H=Hs)
            Hs = [h if L.opts.plastic else Hs[j] for j, (L, h) in enumerate(zip(net.layers, o["H"], strict=True))]
            loss = loss + mse_loss(o["u"], o["theta"], qy[i], n_way)
            correct += int((o["u"].argmax(-1) == qy[i]).sum())
    return loss / max(1, qx.shape[0]), correct


def few_shot(out: Path, dataset: str = "digits", epochs: int | None = None, seed: int = 0, quick: bool = False,
             n_way: int = 3, k_shot: int = 2, n_query: int = 2, hidden: int = 64, teach_amp: float = 1.0,
             rule: dict | None = None,
             episodes_per_iter: int = 16, test_episodes: int = 200, data_root=None, log=print) -> dict:
    """``epochs`` = meta-training iterations / 10.  Train classes: the first half of the labels; test
    classes (never seen in meta-training): the second half."""
    from .train import make_optimizers

    iters = 10 * (epochs or (1 if quick else 10))
    test_episodes = 40 if quick else test_episodes
    (xtr, ytr), (xte, yte) = _data(dataset, data_root, quick=False)
    ncls = int(ytr.max()) + 1
    train_cls, test_cls = np.arange(ncls // 2), np.arange(ncls // 2, ncls)
    rule = {"decay": 256, **(rule or {})}  # no plastic decay: the support must survive until the queries
    enc_cfg = NetConfig(sizes=[xtr.shape[1], hidden, n_way], coding_seed=seed)

    def enc(f):
        return to_real(encode_int(f, enc_cfg), enc_cfg)

    by_tr = {c: enc(xtr[ytr == c]) for c in train_cls}
    by_te = {c: enc(np.concatenate([xtr[ytr == c], xte[yte == c]])) for c in test_cls}
    rows = []
    t0 = time.perf_counter()
    for var in VARIANTS:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        cfg = NetConfig(sizes=[xtr.shape[1], hidden, n_way], variant=var, plastic_layers="all", coding_seed=seed,
                        rule=rule)
        net = HybridNet(cfg, seed=seed)
        tc = TrainConfig(lr_global=1e-3, lr_meta=5e-3)
        opt_g, opt_m = make_optimizers(net, tc)
        for _ in range(iters):
            eps = [_episode(rng, by_tr, train_cls, n_way, k_shot, n_query) for _ in range(episodes_per_iter)]
            loss, _ = _run_episodes(net, eps, teach_amp, grad=True)
            for o in (opt_g, opt_m):
                if o:
                    o.zero_grad(set_to_none=True)
            loss.backward()
            for o in (opt_g, opt_m):
                if o:
                    o.step()
        erng = np.random.default_rng(seed + 999)
        correct = total = 0
        model64 = copy.deepcopy(net).double()
        for s0 in range(0, test_episodes, 50):
            eps = [_episode(erng, by_te, test_cls, n_way, k_shot, n_query)
                   for _ in range(min(50, test_episodes - s0))]
            _, c = _run_episodes(model64, eps, teach_amp, dtype=torch.float64)
            correct += c
            total += len(eps) * n_way * n_query
        rows.append({"variant": var, "accuracy": correct / total, "chance": 1.0 / n_way})
        log(f"few-shot {var}: {correct / total:.3f}")
    log(_table(rows, ["variant", "accuracy", "chance"],
               f"few-shot {n_way}-way {k_shot}-shot on held-out classes {[int(c) for c in test_cls]} ({dataset})"))
    out.mkdir(parents=True, exist_ok=True)
    from .plots import plot_table

    plot_table(rows, "variant", ["accuracy", "chance"], out / "fewshot.png", f"{n_way}-way {k_shot}-shot",
               "variant")
    r = {"experiment": "fewshot", "dataset": dataset, "n_way": n_way, "k_shot": k_shot, "n_query": n_query,
         "rule": rule, "teach_amp": teach_amp,
         "meta_iterations": iters, "test_episodes": test_episodes, "rows": rows,
         "time_s": time.perf_counter() - t0,
         "evaluated_on": "float64 quantisation-aware model (the integer path) with the teaching current"}
    write_json(out / "results.json", r)
    return r


# ------------------------------------------------------------------------------------------
# continual learning
# ------------------------------------------------------------------------------------------
def continual(out: Path, dataset: str = "digits", epochs: int | None = None, seed: int = 0, quick: bool = False,
              n_tasks: int = 4, keep: float = 0.5, hidden: int = 128, data_root=None, log=print) -> dict:
    """Permuted-input tasks; task t trains W⊙M_t (+ α·H⊙(1−M_t)) of the hidden layer."""
    from .train import make_optimizers, train_step

    epochs = epochs or (1 if quick else 8)
    (xtr, ytr), (xte, yte) = _data(dataset, data_root, quick)
    D = xtr.shape[1]
    rng = np.random.default_rng(seed)
    perms = [np.arange(D)] + [rng.permutation(D) for _ in range(n_tasks - 1)]
    masks = [torch.as_tensor((rng.random((D, hidden)) < keep).astype(np.float32)) for _ in range(n_tasks)]
    n_classes = int(ytr.max()) + 1
    rows = [{"tasks_seen": t + 1} for t in range(n_tasks)]
    t0 = time.perf_counter()
    for var in VARIANTS:
        cfg = TrainConfig(dataset=dataset, epochs=epochs, variant=var, seed=seed, hidden=hidden, progress=False)
        torch.manual_seed(seed)
        net = HybridNet(cfg.net_config(D, n_classes), seed=seed)
        opts = make_optimizers(net, cfg)
        gen = torch.Generator().manual_seed(seed)
        from .train import train_inputs

        for t in range(n_tasks):
            net.layers[0].set_task_mask(masks[t])
            for _ in range(epochs):
                perm = torch.randperm(len(ytr), generator=gen).numpy()
                for s0 in range(0, len(perm), cfg.batch_size):
                    idx = perm[s0:s0 + cfg.batch_size]
                    xb = train_inputs(xtr[idx][:, perms[t]], net.cfg, gen)
                    train_step(net, net, opts, xb, torch.as_tensor(ytr[idx]), n_classes, cfg)
            accs = []
            for s in range(t + 1):
                net.layers[0].set_task_mask(masks[s])
                accs.append(accuracy(predict(net, xte[:, perms[s]]), yte))
            rows[t][var] = float(np.mean(accs))
            rows[t][f"{var}_first_task"] = accs[0]
        net.layers[0].set_task_mask(None)
    log(_table(rows, ["tasks_seen", *VARIANTS, *(f"{v}_first_task" for v in VARIANTS)],
               f"continual: {n_tasks} permuted {dataset} tasks, task masks keep={keep} "
               "(mean accuracy over tasks seen)"))
    out.mkdir(parents=True, exist_ok=True)
    from .plots import plot_table

    plot_table(rows, "tasks_seen", list(VARIANTS), out / "continual.png", "continual learning", "tasks seen")
    r = {"experiment": "continual", "dataset": dataset, "n_tasks": n_tasks, "keep": keep, "epochs_per_task": epochs,
         "rows": rows, "time_s": time.perf_counter() - t0,
         "evaluated_on": "float64 quantisation-aware model (the integer path), per-task masks"}
    write_json(out / "results.json", r)
    return r


__all__ = ["fault_tolerance", "few_shot", "continual", "C"]


# ------------------------------------------------------------------------------------------
# the authors' table (LP / GP / HP x seeds, clean and Gaussian noise)
# ------------------------------------------------------------------------------------------
#: the authors' README, Fashion-MNIST 784-512-10, 30 epochs: (clean, noise variance 0.06)
AUTHORS_TABLE = {"LP": (0.758, 0.692), "GP": (0.879, 0.655), "HP": (0.883, 0.722)}


def _mean_sd(v: list[float]) -> tuple[float, float]:
    a = np.asarray(v, np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


#: the accuracies of a table run: authors' semantics (shared H), chip float, chip integer; clean and noisy
_TABLE_KEYS = ("shared_clean", "shared_noise", "float_clean", "float_noise", "deploy_clean", "deploy_noise")


def _config_defaults() -> dict:
    return {k: v for k, v in TrainConfig().__dict__.items() if k != "progress"}


def authors_table(out: Path, dataset: str = "fashion", epochs: int | None = None, seed: int = 0, seeds: int = 3,
                  quick: bool = False, data_root=None, noise_var: float = 0.06, preset: str = "authors",
                  hidden: int | None = None, threads: int | None = None,
                  variants: tuple[str, ...] = ("LP", "GP", "HP"), log=print) -> dict:
    """Train LP, GP, HP with ``seeds`` seeds (``seed`` … ``seed+seeds-1``) and evaluate each on the clean
    test set and with Gaussian noise of variance ``noise_var`` (pixels in [0, 1], fixed noise draw):
    the float model (chip semantics: per-sample H from the trained H0) and the exported integer bundle
    (the golden model).  ``preset``: ``authors`` (:func:`~.train.authors_config`) or
    ``default`` (the project's defaults).  Every finished run is written to ``out/runs/<variant>-s<seed>.json``
    and reused when the command is rerun, so an interrupted table resumes; ``out/table.md`` holds
    mean ± sd next to the authors' numbers.  ``variants`` limits the table to some of LP, GP, HP (runs split
    over processes; the full table reuses their run files)."""
    from plasticore import golden

    from .export import export_bundle
    from .train import authors_config

    epochs = epochs or (1 if quick else 30)
    (xtr, ytr), (xte, yte) = _data(dataset, data_root, quick)
    rng = np.random.default_rng(12345)
    x_noisy = _perturb_features(xte, "noise", noise_var, rng)
    runs_dir = Path(out) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    res: dict[str, list[dict]] = {v: [] for v in variants}
    for var in res:
        for s in range(seed, seed + seeds):
            path = runs_dir / f"{var}-s{s}.json"
            kw = {"dataset": dataset, "epochs": epochs, "variant": var, "seed": s, "progress": False,
                  "eval_every": epochs, "threads": threads}
            if hidden is not None:
                kw["hidden"] = hidden
            cfg = authors_config(**kw) if preset == "authors" else TrainConfig(**kw)
            if path.is_file():
                r = __import__("json").loads(path.read_text())
                # (a field added to TrainConfig after the run was stored takes its default)
                stored = {**_config_defaults(), **r.get("config", {})}
                if (stored == {k: v for k, v in cfg.__dict__.items() if k not in ("progress",)}
                        and all(k in r for k in _TABLE_KEYS)):
                    res[var].append(r)
                    log(f"{var} seed {s}: reusing {path}")
                    continue
            t0 = time.perf_counter()
            net, hist = train_model(cfg, None, data=((xtr, ytr), (xte, yte)), log=lambda *_: None)
            train_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            bundle = export_bundle(net, name=f"table-{var}-s{s}")
            r = {"variant": var, "seed": s, "train_time_s": train_s,
                 "epoch_time_s": float(np.median(hist["epoch_time_s"])),
                 "samples_per_s": float(np.median(hist["samples_per_s"])),
                 "config": {k: v for k, v in cfg.__dict__.items() if k not in ("progress",)}}
            ckpt = runs_dir / f"{var}-s{s}.pt"  # (later evaluations need no retraining)
            torch.save({"state_dict": net.state_dict(), "net_config": net.cfg.to_dict()}, ckpt.with_suffix(".tmp"))
            ckpt.with_suffix(".tmp").replace(ckpt)
            r["float_eval_s"] = r["integer_eval_s"] = 0.0
            for cond, xf in (("clean", xte), ("noise", x_noisy)):
                t2 = time.perf_counter()
                r[f"shared_{cond}"] = accuracy(predict_shared(net, xf, qat=cfg.qat), yte)
                r[f"float_{cond}"] = accuracy(predict(net, xf, qat=cfg.qat, exact=False), yte)
                t3 = time.perf_counter()
                r[f"deploy_{cond}"] = accuracy(golden.run(bundle, encode_int(xf, net.cfg)).predictions, yte)
                r["float_eval_s"] += t3 - t2
                r["integer_eval_s"] += time.perf_counter() - t3
            r["eval_time_s"] = time.perf_counter() - t1
            write_json(path, r)
            res[var].append(r)
            log(f"{var} seed {s}: authors' semantics {r['shared_clean']:.4f} / noise {r['shared_noise']:.4f}, "
                f"chip float {r['float_clean']:.4f} / noise {r['float_noise']:.4f}, integer "
                f"{r['deploy_clean']:.4f} / {r['deploy_noise']:.4f}, {r['epoch_time_s']:.0f} s/epoch, "
                f"eval {r['float_eval_s']:.0f} s float, {r['integer_eval_s']:.0f} s integer")
    rows = []
    for var, rs in res.items():
        row = {"variant": var, "n": len(rs), "authors_clean": AUTHORS_TABLE[var][0],
               "authors_noise": AUTHORS_TABLE[var][1],
               "epoch_time_s": float(np.median([r["epoch_time_s"] for r in rs]))}
        for k in _TABLE_KEYS:
            row[k], row[k + "_sd"] = _mean_sd([r[k] for r in rs])
        rows.append(row)

    def pm(r, k):
        return f"{100 * r[k]:.1f} ± {100 * r[k + '_sd']:.1f}"

    md = [f"{dataset}, preset {preset}, {epochs} epochs, {seeds} seeds, noise variance {noise_var:g}, "
          f"{len(yte)} test samples (mean ± sd, %). Authors' semantics: float, test mini-batches of 100 "
          "sharing one H carried from batch to batch (their evaluation); chip semantics: per-sample H "
          "from the trained H0, float and the exported integer bundle (golden model).", "",
          "| variant | authors clean | clean, authors' semantics | clean, chip float | clean, chip integer "
          "| authors noise | noise, authors' semantics | noise, chip float | noise, chip integer | s/epoch |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['variant']} | {100 * r['authors_clean']:.1f} | {pm(r, 'shared_clean')} | "
                  f"{pm(r, 'float_clean')} | {pm(r, 'deploy_clean')} | {100 * r['authors_noise']:.1f} | "
                  f"{pm(r, 'shared_noise')} | {pm(r, 'float_noise')} | {pm(r, 'deploy_noise')} | "
                  f"{r['epoch_time_s']:.0f} |")
    (Path(out) / "table.md").write_text("\n".join(md) + "\n")
    log("\n".join(md))
    result = {"experiment": "table", "dataset": dataset, "epochs": epochs, "seeds": seeds, "preset": preset,
              "noise_var": noise_var, "rows": rows, "authors": AUTHORS_TABLE}
    write_json(Path(out) / "results.json", result)
    return result
