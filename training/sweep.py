"""``plasticore sweep``: search training and meta parameters of ``plasticore train`` with Optuna.

A TOML file fixes the dataset and the ``train`` arguments and names the search space::

    [study]                      # all optional
    name = "digits-hp"           # study name (default: the file's stem); workers of one study share it
    seed = 0                     # TPE sampler seed
    pruner = "median"            # median | none: stop trials whose validation curve is below the median
    startup_trials = 3           # pruner: complete trials before any pruning
    warmup_epochs = 1            # pruner: epochs of every trial before it may be pruned
    heartbeat_interval = 30      # database storages: seconds between a running trial's heartbeats
    grace_period = 90            # a trial without heartbeat this long is failed and re-queued
    max_retry = 3                # re-queues of one configuration

    [data]
    val_fraction = 0.2           # stratified validation split of the TRAINING set (never the test set)
    val_seed = 0

    [train]                      # fixed arguments: any `plasticore train` option, by its Python name
    dataset = "digits"
    epochs = 5
    hidden = 32

    [space]                      # one table per searched parameter (also a `plasticore train` option)
    lr_global = { type = "float", low = 1e-4, high = 1e-2, log = true }
    leak = { type = "int", low = 64, high = 230 }
    post_fn = { type = "categorical", choices = ["tanh", "identity"] }

Every trial trains on the training part and returns the validation accuracy of the exported integer
network (``deploy_test_accuracy`` on the validation split); the float validation accuracy of every
epoch is reported to the pruner. The best trial's parameters are printed as the ``plasticore train``
command that trains the final network on the whole training set and evaluates it on the test set.

Storage: a journal file ``RUN_DIR/study.journal`` by default (one machine, any number of processes);
``--storage postgresql://user@host:port/db`` shares one study between processes and machines, with
heartbeats so that a trial of a killed worker is failed and re-queued (``RetryHeartbeatStaleTrialCallback``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import shlex
import socket
import time
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plasticore.errors import PlasticoreError

#: ``plasticore train`` options a sweep config may not set: the sweep owns the output, the test set
#: is never used, and progress bars are off.
_NOT_CONFIGURABLE = {"out", "force", "max_test", "no_progress"}
#: options that are fixed per run, not searched.
_NOT_SEARCHABLE = {"dataset", "data_root", "threads", "deploy_check", "onchip_eval"}
_STUDY_KEYS = {"name": str, "seed": int, "pruner": str, "startup_trials": int, "warmup_epochs": int,
               "heartbeat_interval": int, "grace_period": int, "max_retry": int}
_DATA_KEYS = {"val_fraction": float, "val_seed": int}
_SPACE_TYPES = ("int", "float", "log", "categorical")
JOURNAL_NAME = "study.journal"


class SweepConfigError(PlasticoreError):
    """The sweep config (or a sweep argument) is invalid."""


# ------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------
@dataclass
class Param:
    """One searched parameter."""

    name: str
    kind: str  #: int | float | categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: list = field(default_factory=list)


@dataclass
class SweepConfig:
    path: Path
    name: str
    train: dict[str, Any]
    space: list[Param]
    seed: int = 0
    pruner: str = "median"
    startup_trials: int = 3
    warmup_epochs: int = 1
    heartbeat_interval: int = 30
    grace_period: int = 90
    max_retry: int = 3
    val_fraction: float = 0.2
    val_seed: int = 0

    def fingerprint(self) -> str:
        """Hash of what defines the objective (fixed args, space, split): workers must agree on it."""
        d = {"train": self.train, "val": [self.val_fraction, self.val_seed],
             "space": [vars(p) for p in self.space]}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_parser() -> argparse.ArgumentParser:
    """The ``plasticore train`` option parser: the one definition of the trainable arguments."""
    from .api import add_train_args

    p = argparse.ArgumentParser(prog="plasticore train", add_help=False, exit_on_error=False)
    add_train_args(p)
    return p


def _train_actions() -> dict[str, argparse.Action]:
    return {a.dest: a for a in train_parser()._actions if a.option_strings and a.dest not in _NOT_CONFIGURABLE}


def _is_flag(a: argparse.Action) -> bool:
    return isinstance(a, argparse._StoreTrueAction)


def _check_value(where: str, a: argparse.Action, v) -> None:
    """Raise SweepConfigError unless ``v`` is a value ``plasticore train`` accepts for option ``a``."""
    opt = a.option_strings[0]
    if _is_flag(a):
        if not isinstance(v, bool):
            raise SweepConfigError(f"{where}: {opt} is a flag, expected true or false, got {v!r}")
        return
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise SweepConfigError(f"{where}: expected a value of {opt}, got {v!r}")
    try:
        conv = a.type(_arg_str(v)) if a.type else _arg_str(v)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
        raise SweepConfigError(f"{where}: {v!r} is not valid for {opt} ({e})") from None
    if a.choices is not None and conv not in a.choices:
        raise SweepConfigError(f"{where}: {v!r} is not one of {opt}'s choices {list(a.choices)}")


def _arg_str(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def _num(where: str, d: dict, key: str, integer: bool):
    if key not in d:
        raise SweepConfigError(f"{where}: missing '{key}'")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
        raise SweepConfigError(f"{where}.{key}: expected {'an integer' if integer else 'a number'}, got {v!r}")
    if not integer and not math.isfinite(v):
        raise SweepConfigError(f"{where}.{key}: expected a finite number, got {v!r}")
    return v


def _parse_param(src: str, name: str, d, actions: dict[str, argparse.Action]) -> Param:
    where = f"{src}: space.{name}"
    if name not in actions or name in _NOT_SEARCHABLE:
        known = sorted(k for k in actions if k not in _NOT_SEARCHABLE)
        raise SweepConfigError(f"{where}: unknown or unsearchable parameter (searchable: {', '.join(known)})")
    a = actions[name]
    if not isinstance(d, dict):
        raise SweepConfigError(f"{where}: expected a table like {{ type = \"float\", low = 0.1, high = 1.0 }}")
    kind = d.get("type")
    if kind not in _SPACE_TYPES:
        raise SweepConfigError(f"{where}.type: expected one of {', '.join(_SPACE_TYPES)}, got {kind!r}")
    allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "log", "step"}
    extra = sorted(set(d) - allowed)
    if extra:
        raise SweepConfigError(f"{where}.{extra[0]}: unknown key for type = \"{kind}\" (allowed: {sorted(allowed)})")
    if kind == "categorical":
        ch = d.get("choices")
        if not isinstance(ch, list) or not ch:
            raise SweepConfigError(f"{where}.choices: expected a non-empty list")
        for i, c in enumerate(ch):
            _check_value(f"{where}.choices[{i}]", a, c)
        return Param(name, "categorical", choices=list(ch))
    if _is_flag(a):
        raise SweepConfigError(f"{where}.type: {a.option_strings[0]} is a flag, use type = \"categorical\"")
    integer = kind == "int"
    low, high = _num(where, d, "low", integer), _num(where, d, "high", integer)
    log = kind == "log" or bool(d.get("log", False))
    if not isinstance(d.get("log", False), bool):
        raise SweepConfigError(f"{where}.log: expected true or false")
    if not low < high:
        raise SweepConfigError(f"{where}: needs low < high, got low={low!r} high={high!r}")
    if log and low <= 0:
        raise SweepConfigError(f"{where}.low: a log range needs low > 0, got {low!r}")
    step = d.get("step")
    if step is not None:
        step = _num(where, d, "step", integer)
        if step <= 0 or log:
            raise SweepConfigError(f"{where}.step: needs step > 0 and no log scale")
    for k, v in (("low", low), ("high", high)):
        _check_value(f"{where}.{k}", a, v)
    if not integer:  # a float range must be accepted by the option as a float, e.g. not --leak
        _check_value(f"{where}.low", a, low + (high - low) / 3.0)
    return Param(name, "float" if kind in ("float", "log") else "int", low, high, log, step)


def load_config(path: Path) -> SweepConfig:
    """Read and validate a sweep config; raises :class:`SweepConfigError` naming the file and key."""
    src = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SweepConfigError(f"{src}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepConfigError(f"{src}: cannot be read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise SweepConfigError(f"{src}: not valid TOML ({e})") from None
    extra = sorted(set(raw) - {"study", "data", "train", "space"})
    if extra:
        raise SweepConfigError(f"{src}: {extra[0]}: unknown table (expected study, data, train, space)")
    for t in ("study", "data", "train", "space"):
        if not isinstance(raw.get(t, {}), dict):
            raise SweepConfigError(f"{src}: {t}: expected a table")
    kw: dict[str, Any] = {}
    for table, keys in (("study", _STUDY_KEYS), ("data", _DATA_KEYS)):
        for k, v in raw.get(table, {}).items():
            if k not in keys:
                raise SweepConfigError(f"{src}: {table}.{k}: unknown key (expected one of {', '.join(keys)})")
            typ = keys[k]
            ok = isinstance(v, typ) and not isinstance(v, bool) or (typ is float and isinstance(v, int)
                                                                      and not isinstance(v, bool))
            if not ok:
                raise SweepConfigError(f"{src}: {table}.{k}: expected {typ.__name__}, got {v!r}")
            kw[k] = v
    if kw.get("pruner", "median") not in ("median", "none"):
        raise SweepConfigError(f"{src}: study.pruner: expected \"median\" or \"none\", got {kw['pruner']!r}")
    for k in ("startup_trials", "warmup_epochs", "max_retry"):
        if kw.get(k, 0) < 0:
            raise SweepConfigError(f"{src}: study.{k}: must be >= 0")
    for k in ("heartbeat_interval", "grace_period"):
        if kw.get(k, 1) < 1:
            raise SweepConfigError(f"{src}: study.{k}: must be >= 1 (seconds)")
    if kw.get("heartbeat_interval", 30) >= kw.get("grace_period", 90):
        raise SweepConfigError(f"{src}: study.grace_period: must be longer than study.heartbeat_interval")
    if not 0.0 < kw.get("val_fraction", 0.2) < 1.0:
        raise SweepConfigError(f"{src}: data.val_fraction: must be in (0, 1), got {kw['val_fraction']!r}")
    actions = _train_actions()
    train: dict[str, Any] = {}
    for k, v in raw.get("train", {}).items():
        if k not in actions:
            why = "set by the sweep" if k in _NOT_CONFIGURABLE else "unknown `plasticore train` option"
            raise SweepConfigError(f"{src}: train.{k}: {why} (known: {', '.join(sorted(actions))})")
        _check_value(f"{src}: train.{k}", actions[k], v)
        train[k] = v
    space = [_parse_param(src, k, v, actions) for k, v in raw.get("space", {}).items()]
    if not space:
        raise SweepConfigError(f"{src}: space: no parameter to search (add e.g. [space.lr_global])")
    both = sorted(set(train) & {p.name for p in space})
    if both:
        raise SweepConfigError(f"{src}: space.{both[0]}: also fixed in [train]; keep one")
    name = kw.pop("name", Path(path).stem)
    if not name:
        raise SweepConfigError(f"{src}: study.name: must not be empty")
    return SweepConfig(path=Path(path), name=name, train=train, space=space, **kw)


def train_argv(values: dict[str, Any]) -> list[str]:
    """``plasticore train`` arguments for option values keyed by their Python names."""
    actions = _train_actions()
    argv: list[str] = []
    for k, v in values.items():
        a = actions[k]
        if _is_flag(a):
            if v:
                argv.append(a.option_strings[0])
        else:
            argv += [a.option_strings[0], _arg_str(v)]
    return argv


def best_command(cfg: SweepConfig, params: dict[str, Any], out: Path) -> str:
    """The ``plasticore train`` command of a trial (trains on the whole training set, tests on the test set)."""
    return shlex.join(["plasticore", "train", *train_argv({**cfg.train, **params}), "--out", str(out)])


# ------------------------------------------------------------------------------------------
# storage and study
# ------------------------------------------------------------------------------------------
def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _redact(url: str) -> str:
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}@{host}"
    return url


def make_storage(storage: str | None, run_dir: Path, cfg: SweepConfig):
    """A journal file (default, ``RUN_DIR/study.journal`` or a given path) or an RDB URL (with heartbeats)."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if storage is None or "://" not in storage:
        path = run_dir / JOURNAL_NAME if storage is None else Path(storage)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    for attempt in range(3):  # two workers creating the schema of a fresh database at once may collide
        try:
            return RDBStorage(storage, heartbeat_interval=cfg.heartbeat_interval, grace_period=cfg.grace_period,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                  max_retry=cfg.max_retry))
        except (ImportError, ValueError, optuna.exceptions.OptunaError) as e:
            raise SweepConfigError(f"--storage {_redact(storage)}: {str(e).splitlines()[0]}") from None
        except Exception as e:  # sqlalchemy.exc.OperationalError and friends
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if "could not connect" in msg or "Connection refused" in msg or attempt == 2:
                raise SweepConfigError(f"--storage {_redact(storage)}: cannot open the database ({msg})") from None
            time.sleep(1.0)


def open_study(cfg: SweepConfig, storage_obj, sampler_seed: int | None):
    import optuna

    pruner = (optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials, n_warmup_steps=cfg.warmup_epochs)
              if cfg.pruner == "median" else optuna.pruners.NopPruner())
    study = optuna.create_study(study_name=cfg.name, storage=storage_obj, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=sampler_seed), pruner=pruner,
                                load_if_exists=True)
    fp = study.user_attrs.get("config_fingerprint")
    if fp is None:
        study.set_user_attr("config_fingerprint", cfg.fingerprint())
        study.set_user_attr("config", cfg.path.read_text())
    elif fp != cfg.fingerprint():
        raise SweepConfigError(f"{cfg.path}: study {cfg.name!r} in this storage was created from a different "
                               "[train]/[data]/[space]; use another study.name or the original config")
    return study


def _counts(study) -> dict[str, int]:
    from optuna.trial import TrialState

    n = {s.name: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        n[t.state.name] += 1
    return n


def _finished(n: dict[str, int]) -> int:
    return n["COMPLETE"] + n["PRUNED"]


# ------------------------------------------------------------------------------------------
# the objective
# ------------------------------------------------------------------------------------------
def split_train_val(cfg: SweepConfig):
    """(train part, validation part) of the dataset's TRAINING split (stratified, ``val_seed``)."""
    from sklearn.model_selection import train_test_split

    from plasticore.datasets import load_dataset

    x, y = load_dataset(cfg.train.get("dataset", "digits"), "train", cfg.train.get("data_root"))
    try:
        xtr, xva, ytr, yva = train_test_split(x, y, test_size=cfg.val_fraction, random_state=cfg.val_seed,
                                              stratify=y)
    except ValueError as e:  # e.g. a class with one sample, or a split leaving no sample of a class
        raise SweepConfigError(f"{cfg.path}: data.val_fraction: cannot split the training set ({e})") from None
    return (xtr, ytr), (xva, yva)


def suggest(trial, space: list[Param]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in space:
        if p.kind == "categorical":
            out[p.name] = trial.suggest_categorical(p.name, p.choices)
        elif p.kind == "int":
            out[p.name] = trial.suggest_int(p.name, p.low, p.high, step=p.step or 1, log=p.log)
        else:
            out[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
    return out


def make_objective(cfg: SweepConfig, data, worker: str, threads: int | None):
    import optuna

    from .api import train, train_kwargs

    parser = train_parser()

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, cfg.space)
        trial.set_user_attr("worker", worker)
        ns = parser.parse_args([*train_argv({**cfg.train, **params}), "--out", "-", "--no-progress"])
        kw = train_kwargs(ns)
        if threads and not ns.threads:
            kw["threads"] = threads
        tag = f"[{worker} trial {trial.number}]"

        def on_epoch(ep: int, hist: dict) -> None:
            v = hist["test_accuracy"][-1]
            if math.isfinite(v):
                trial.report(v, ep)
                if trial.should_prune():
                    print(f"{tag} pruned after epoch {ep} (validation {v:.4f})", flush=True)
                    raise optuna.TrialPruned()

        kw.update(out=None, data=data, plots=False, on_epoch=on_epoch, max_test=None,
                  log=lambda s: print(f"{tag} {s.replace('test', 'val')}", flush=True))
        print(f"{tag} {json.dumps(params)}", flush=True)
        m = train(**kw)
        trial.set_user_attr("val_float_accuracy", m["test_accuracy"])
        trial.set_user_attr("train_time_s", m["train_time_s"])
        return float(m["deploy_test_accuracy"])

    return objective


class StopWhenDone:
    """Stop the worker once the study holds ``n`` finished (complete or pruned) trials and no queued ones
    (re-queued trials of killed workers are always run), or once ``n`` trials have failed."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, study, trial) -> None:
        c = _counts(study)
        if _finished(c) >= self.n and c["WAITING"] == 0:
            study.stop()
        elif c["FAIL"] >= self.n:
            print(f"stopping: {c['FAIL']} trials of study {study.study_name!r} failed", flush=True)
            study.stop()


def run_worker(cfg: SweepConfig, n_trials: int, storage: str | None, run_dir: Path, worker_index: int | None,
               threads: int | None = None) -> None:
    """Optimise until the study holds ``n_trials`` finished trials (this process's share); with a database,
    then wait for the other workers' running trials and run what a dead worker left re-queued."""
    quiet_optuna()
    # one in-process worker on its own journal is reproducible; concurrent workers get distinct seeds
    if worker_index is not None:
        seed = cfg.seed + worker_index
    else:
        seed = cfg.seed if storage is None else cfg.seed + os.getpid()
    st = make_storage(storage, run_dir, cfg)
    study = open_study(cfg, st, seed)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    c = _counts(study)
    if _finished(c) >= n_trials and c["WAITING"] == 0:
        print(f"[{worker}] study {cfg.name!r} already has {_finished(c)} finished trials", flush=True)
        return
    data = split_train_val(cfg)
    objective = make_objective(cfg, data, worker, threads)
    while True:
        # a parameter combination the contract rejects (PlasticoreError) fails its trial, not the sweep
        study.optimize(objective, n_trials=None, callbacks=[StopWhenDone(n_trials)], catch=(PlasticoreError,))
        heartbeats = storage is not None and "://" in storage  # database storages (make_storage)
        if not heartbeats or not _wait_for_running(study, cfg, worker):
            return


def _wait_for_running(study, cfg: SweepConfig, worker: str) -> bool:
    """With heartbeats: wait until no trial is RUNNING, failing (and so re-queueing) those of dead workers.
    Returns True when a re-queued trial is waiting to be run (by this worker, if no other takes it)."""
    import optuna

    said = False
    while True:
        optuna.storages.fail_stale_trials(study)
        c = _counts(study)
        if c["WAITING"]:
            return True
        if not c["RUNNING"]:
            return False
        if not said:
            print(f"[{worker}] waiting for {c['RUNNING']} running trial(s) of other workers (a dead worker's "
                  f"trial is re-queued {cfg.grace_period} s after its last heartbeat)", flush=True)
            said = True
        time.sleep(cfg.heartbeat_interval)


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------
def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def trials_table(study, cfg: SweepConfig) -> tuple[list[str], list[list]]:
    from optuna.trial import TrialState

    names = [p.name for p in cfg.space]
    head = ["trial", "state", "val_accuracy", "val_float_accuracy", "epochs", "duration_s", "worker", "retry_of",
            *names]
    rows = []
    for t in study.get_trials(deepcopy=False):
        dur = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start \
            else None
        value = t.value if t.state == TrialState.COMPLETE else None  # pruned: optuna keeps the last float value
        rows.append([t.number, t.state.name, value, t.user_attrs.get("val_float_accuracy"),
                     max(t.intermediate_values) if t.intermediate_values else None, dur, t.user_attrs.get("worker"),
                     t.system_attrs.get("failed_trial"), *[t.params.get(n) for n in names]])
    return head, rows


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_report(study, cfg: SweepConfig, run_dir: Path) -> dict:
    """``trials.csv``, ``trials.md``, ``history.png``, ``importance.png``, ``best.json``; returns best.json's dict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    quiet_optuna()
    run_dir.mkdir(parents=True, exist_ok=True)
    head, rows = trials_table(study, cfg)
    tmp = run_dir / "trials.csv.tmp"
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows([["" if v is None else v for v in r] for r in rows])
    os.replace(tmp, run_dir / "trials.csv")
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]
    _atomic_write(run_dir / "trials.md", "\n".join(md) + "\n")
    written = ["trials.csv", "trials.md"]
    notes = []
    plots = [("history.png", lambda: ovm.plot_optimization_history(study, target_name="validation accuracy"))]
    plots.append(("importance.png", lambda: ovm.plot_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))))
    for fname, fn in plots:
        try:
            ax = fn()
            fig = (ax if not hasattr(ax, "figure") else ax.figure) if not isinstance(ax, list) else ax[0].figure
            fig.tight_layout()
            fig.savefig(run_dir / (fname + ".tmp.png"), dpi=120)
            plt.close(fig)
            os.replace(run_dir / (fname + ".tmp.png"), run_dir / fname)
            written.append(fname)
        except (ValueError, RuntimeError, ZeroDivisionError) as e:
            notes.append(f"{fname} not written: {e}")
    c = _counts(study)
    best = {"study": cfg.name, "counts": {k: v for k, v in c.items() if v}, "files": written, "notes": notes}
    try:
        bt = study.best_trial
    except ValueError:
        bt = None
    if bt is not None:
        best.update(trial=bt.number, val_accuracy=bt.value, params=bt.params,
                    command=best_command(cfg, bt.params, run_dir / "best"))
    _atomic_write(run_dir / "best.json", json.dumps(best, indent=1) + "\n")
    return best
