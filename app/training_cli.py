"""The training commands of ``plasticore``: ``train``, ``experiment``, ``sweep``, ``import-nir`` and
``export-nir`` (registered by :mod:`plasticore.app.cli` through :func:`add_cli`).

``python -m plasticore.app.training_cli train ...`` runs one without the rest of the command line (e.g.
under ``torchrun`` for data-parallel training).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from plasticore.bundle import save_bundle
from plasticore.training import api
from plasticore.training.fewshot import FEATURES as FEWSHOT_FEATURES
from plasticore.training.nirconv import DEFAULT_DT, NirError, evaluate, export_run, import_graph, read_graph
from plasticore.training.sweep import (
    JOURNAL_NAME,
    SweepConfig,
    SweepConfigError,
    load_config,
    make_storage,
    open_study,
    quiet_optuna,
    run_worker,
    split_train_val,
    write_report,
)

# ------------------------------------------------------------------------------------------
# train, experiment
# ------------------------------------------------------------------------------------------
#: what ``train --out DIR`` writes (a directory holding only these may be replaced with --force)
TRAIN_OUTPUTS = frozenset({"bundle", "bundle_onchip", "metrics.json", "checkpoint.pt", "checkpoints", "curves.png",
                           "raster.png", "membranes.png", "h_heatmap.png"})


def _holds_only(names: frozenset[str] | None, marker: str, suffixes: tuple[str, ...] = ()):
    """``same_kind`` test for :func:`plasticore.outputs.check_output_dir`: ``marker`` is there and every
    entry is a known output (by name, or by suffix)."""

    def test(path: Path) -> bool:
        entries = [p.name for p in path.iterdir()]
        return marker in entries and all((names is not None and n in names) or n.endswith(suffixes) for n in entries)

    return test


def _write_out_dir(out: Path, force: bool, same_kind, kind: str, work):
    """Check ``out`` first, run ``work(tmp)`` into a fresh directory next to it, then rename it into place
    (under ``torchrun`` every rank writes straight to ``out``, rank 0 only)."""
    from plasticore.outputs import check_output_dir, replace_dir, temp_dir_for

    check_output_dir(out, "--out", force=force, same_kind=same_kind, kind=kind)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return work(out)
    tmp = temp_dir_for(out, ".out-")
    try:
        result = work(tmp)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _is_table_dir(path: Path) -> bool:
    """A (possibly unfinished) ``experiment table`` output: ``runs/`` of run files, table.md, results.json."""
    names = {p.name for p in path.iterdir()}
    runs = path / "runs"
    return ("runs" in names and runs.is_dir() and names <= {"runs", "table.md", "results.json"}
            and all(q.suffix in (".json", ".pt", ".tmp") for q in runs.iterdir()))


def cmd_train(a) -> int:
    from plasticore import contract as C
    from plasticore.app.cli import CliError

    kw = api.train_kwargs(a)  # the options --authors and the defaults fill in
    hidden = kw["hidden"] if isinstance(kw["hidden"], list) else [kw["hidden"]]
    if kw["timesteps"] > C.MAX_TIMESTEPS:
        raise CliError(f"--timesteps {kw['timesteps']}: at most MAX_TIMESTEPS={C.MAX_TIMESTEPS}")
    if len(hidden) + 1 > C.MAX_LAYERS:
        raise CliError(f"--hidden {','.join(map(str, hidden))}: at most {C.MAX_LAYERS - 1} hidden layers")

    def work(out: Path) -> dict:
        return api.train(**{**kw, "out": out})

    m = _write_out_dir(a.out, a.force, _holds_only(TRAIN_OUTPUTS, "metrics.json"), "training output (metrics.json)",
                       work)
    if "test_accuracy" in m:
        print(f"wrote {a.out}/metrics.json, {a.out}/bundle")
    return 0


def _variant_list(text: str) -> tuple[str, ...]:
    """``--variants``: a comma-separated, non-empty subset of LP, GP, HP (in that order)."""
    got = [v.strip().upper() for v in text.split(",") if v.strip()]
    bad = [v for v in got if v not in ("LP", "GP", "HP")]
    if bad or not got:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of LP,GP,HP, got {text!r}")
    return tuple(v for v in ("LP", "GP", "HP") if v in got)


def cmd_experiment(a) -> int:
    kw = {"seed": a.seed, "quick": a.quick}
    if a.epochs is not None:
        kw["epochs"] = a.epochs
    if a.dataset:
        kw["dataset"] = a.dataset
    if a.data_root:
        kw["data_root"] = a.data_root
    if a.port is not None or a.episodes is not None or a.features is not None:
        if a.kind != "fewshot":
            from plasticore.app.cli import CliError

            raise CliError(f"--port / --episodes / --features: options of 'experiment fewshot', not {a.kind!r}")
        kw.update({k: v for k, v in (("port", a.port), ("test_episodes", a.episodes), ("features", a.features))
                   if v is not None})
    if a.kind == "table":
        kw.update(seeds=a.seeds, preset=a.preset, threads=a.threads, variants=a.variants)
        kw.setdefault("dataset", "fashion")
        # hours of runs: each finished run is written into --out at once (runs/<variant>-s<seed>.json),
        # so the table is built in place and a rerun resumes it; a directory that is not a table is
        # refused, nothing in one is deleted
        from plasticore.outputs import check_output_dir

        check_output_dir(a.out, "--out", force=True, same_kind=_is_table_dir, kind="table (runs/, results.json)")
        api.run_experiment(a.kind, a.out, **kw)
        print(f"wrote {a.out}/results.json, {a.out}/table.md")
        return 0
    _write_out_dir(a.out, a.force, _holds_only(None, "results.json", (".json", ".png")),
                   "experiment output (results.json)", lambda out: api.run_experiment(a.kind, out, **kw))
    print(f"wrote {a.out}/results.json")
    return 0


# ------------------------------------------------------------------------------------------
# import-nir, export-nir
# ------------------------------------------------------------------------------------------
def cmd_import_nir(a) -> int:
    from plasticore.datasets import DATASETS, load_dataset

    if a.calib_count < 1:
        raise NirError(f"--calib-count {a.calib_count}: must be at least 1")
    if a.calib is not None and a.calib not in DATASETS:
        raise NirError(f"--calib {a.calib!r}: unknown dataset (one of {', '.join(DATASETS)})")
    if a.out.exists() and not (a.out / "bundle.json").is_file():
        raise NirError(f"--out {a.out}: exists and is not a bundle directory (refusing to overwrite)")
    graph = read_graph(a.graph)
    calib = None
    if a.calib is not None:
        feats, _ = load_dataset(a.calib, "train", root=a.data_root)
        calib = feats[: a.calib_count]
    scale = a.input_scale if a.input_scale is not None else (1.0 / 256 if a.coding == "direct" else 1.0)
    rep = import_graph(graph, timesteps=a.timesteps, dt=a.dt, input_scale=scale, coding=a.coding,
                       calib=calib, name=a.graph.stem)
    if a.calib is not None:
        fte, yte = load_dataset(a.calib, "test", root=a.data_root)
        if fte.shape[1] != rep.bundle.n_in:
            raise NirError(f"--calib {a.calib}: {fte.shape[1]} features, the graph takes {rep.bundle.n_in}")
        evaluate(rep, fte, yte)
    save_bundle(rep.bundle, a.out)
    print(f"imported {a.graph} -> {a.out}")
    print(rep.summary())
    return 0


def cmd_export_nir(a) -> int:
    warnings = export_run(a.run_dir, a.out, dt=a.dt)
    for w in warnings:
        print(f"warning: {w}")
    print(f"wrote {a.out} (NIR, dt = {a.dt:g} s)")
    return 0


def add_nir_cli(subparsers) -> None:
    """Register ``import-nir`` and ``export-nir``."""
    p = subparsers.add_parser("import-nir", help="NIR graph (snnTorch, Norse, ...) -> integer bundle")
    p.add_argument("graph", type=Path, help="the .nir file")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    p.add_argument("--calib", help="dataset (train split) to calibrate the quantisation; its test split is then "
                                   "used to report float vs integer accuracy")
    p.add_argument("--calib-count", type=int, default=512, help="calibration samples (default 512)")
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--timesteps", type=int, default=16, help="T, steps per sample (NIR has none; default 16)")
    p.add_argument("--dt", type=float, default=DEFAULT_DT,
                   help=f"seconds per step the source simulated with (default {DEFAULT_DT:g}, snnTorch's; Norse: 1e-3)")
    p.add_argument("--input-scale", type=float, default=None,
                   help="the graph's input = uint8 feature x this, every step (default 1/256; rate coding: the "
                        "graph's input is the spike times this, default 1)")
    p.add_argument("--coding", choices=["direct", "rate"], default="direct")
    p.set_defaults(func=cmd_import_nir)
    e = subparsers.add_parser("export-nir", help="a run's bundle -> NIR graph (plastic part as an extension)")
    e.add_argument("run_dir", type=Path, help="a `plasticore train` output directory (or a bundle directory)")
    e.add_argument("--out", type=Path, required=True, help="the .nir file to write")
    e.add_argument("--dt", type=float, default=DEFAULT_DT, help=f"seconds per step to declare (default {DEFAULT_DT:g})")
    e.set_defaults(func=cmd_export_nir)


# ------------------------------------------------------------------------------------------
# sweep
# ------------------------------------------------------------------------------------------
def cmd_sweep(a) -> int:
    cfg = load_config(a.config)
    if a.trials < 1:
        raise SweepConfigError(f"--trials: must be >= 1, got {a.trials}")
    if a.workers < 1:
        raise SweepConfigError(f"--workers: must be >= 1, got {a.workers}")
    run_dir = a.out if a.out is not None else Path("runs") / "sweep" / cfg.name
    storage = a.storage
    if storage is not None and "://" not in storage:
        storage = str(Path(storage).resolve())
    # open (and create) the study once here: bad storage URLs and config mismatches fail before any work
    split_train_val(cfg)  # a missing dataset fails here, before anything is written
    quiet_optuna()
    open_study(cfg, make_storage(storage, run_dir, cfg), cfg.seed)
    if a.worker_index is not None or a.workers == 1:
        run_worker(cfg, a.trials, storage, run_dir, a.worker_index, a.threads)
        rc = 0
    else:
        threads = max(1, (os.cpu_count() or 1) // a.workers)
        rc = _spawn_workers(a, cfg, storage if storage is not None else str((run_dir / JOURNAL_NAME).resolve()),
                            run_dir, threads)
    if a.no_report:
        return rc
    import optuna

    study = optuna.load_study(study_name=cfg.name, storage=make_storage(storage, run_dir, cfg))
    best = write_report(study, cfg, run_dir)
    print(f"study {cfg.name!r}: {best['counts']}; wrote {', '.join(str(run_dir / f) for f in best['files'])}")
    for n in best["notes"]:
        print(f"note: {n}")
    if "command" in best:
        print(f"best trial {best['trial']}: validation accuracy {best['val_accuracy']:.4f} "
              f"{json.dumps(best['params'])}")
        print("best command (whole training set, test set):")
        print(best["command"])
    return rc


def _spawn_workers(a, cfg: SweepConfig, storage: str, run_dir: Path, threads: int) -> int:
    procs = []
    for i in range(a.workers):
        argv = [sys.executable, "-m", "plasticore.app.cli", "sweep", str(cfg.path), "--trials", str(a.trials),
                "--storage", storage, "--out", str(run_dir), "--worker-index", str(i), "--no-report",
                "--threads", str(threads)]
        procs.append(subprocess.Popen(argv))
        time.sleep(0.2)
    rc = 0
    try:
        for p in procs:
            rc = rc or p.wait()
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    return rc


def add_sweep_cli(subparsers) -> None:
    """Register ``plasticore sweep``."""
    p = subparsers.add_parser("sweep", help="search training/meta parameters with Optuna (docs/sweeps.md)")
    p.add_argument("config", type=Path, help="sweep config (TOML): [study], [data], [train], [space]")
    p.add_argument("--trials", type=int, required=True,
                   help="finished (complete or pruned) trials the study should hold")
    p.add_argument("--storage", help="postgresql://user@host:port/db (shared study) or a journal file path "
                                     f"(default: RUN_DIR/{JOURNAL_NAME})")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    p.add_argument("--out", type=Path, help="run directory (default: runs/sweep/<study name>)")
    p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    p.add_argument("--no-report", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_sweep)


def add_cli(subparsers) -> None:
    """Register ``train``, ``experiment``, ``sweep``, ``import-nir`` and ``export-nir`` on an argparse
    subparsers object (``args.func(args)``)."""
    p = subparsers.add_parser("train", help="train a hybrid SNN, export the integer bundle, write metrics")
    api.add_train_args(p)
    p.set_defaults(func=cmd_train)
    from plasticore.argtypes import nonneg_int, positive_int

    e = subparsers.add_parser("experiment", help="fault tolerance / few-shot / continual (HP vs GP vs LP)")
    e.add_argument("kind", choices=["fault", "fewshot", "fewshot-teach", "continual", "table"],
                   help="fewshot: prototype rule (contract v2) on the golden model vs GP and raw-pixel NCM; "
                        "fewshot-teach: the v1 teaching-current variant (HP/GP/LP in torch); "
                        "table: LP/GP/HP x --seeds, clean and noise 0.06, vs the authors' numbers (fashion)")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--force", action="store_true", help="replace a previous experiment output directory at --out")
    e.add_argument("--epochs", type=positive_int)
    e.add_argument("--seed", type=nonneg_int, default=0)
    e.add_argument("--dataset")
    e.add_argument("--data-root", type=Path)
    e.add_argument("--quick", action="store_true", help="smaller runs (tests, smoke)")
    e.add_argument("--seeds", type=positive_int, default=3, help="table: seeds per variant")
    e.add_argument("--preset", default="authors", choices=["authors", "default"], help="table: training preset")
    e.add_argument("--threads", type=positive_int, help="table: torch threads")
    e.add_argument("--port", help="fewshot: also run every episode on this board (a board of program cores; "
                                  "sim:// spawns a simulated one) and check it bit for bit against the golden model")
    e.add_argument("--episodes", type=positive_int, help="fewshot: test episodes per setting (default 200)")
    e.add_argument("--features", choices=FEWSHOT_FEATURES,
                   help="fewshot: what the plastic layer reads: input (each sample scaled to a unit norm; the "
                        "default) or hidden (a meta-trained LIF hidden layer of 128)")
    e.add_argument("--variants", type=_variant_list, default=("LP", "GP", "HP"),
                   help="table: comma-separated subset of LP,GP,HP to train and tabulate (default all)")
    e.set_defaults(func=cmd_experiment)
    add_sweep_cli(subparsers)
    add_nir_cli(subparsers)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plasticore.app.training_cli")
    add_cli(ap.add_subparsers(dest="command", required=True))
    a = ap.parse_args(argv)
    return int(a.func(a) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
