"""``plasticore sweep``: journal-file sweep end to end (fast), config validation, and (slow) two workers
sharing one study on a real PostgreSQL server with one worker killed mid-trial."""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from plasticore.app.cli import main

TINY = """
[study]
name = "tiny"
seed = 0
startup_trials = 1
warmup_epochs = 0

[data]
val_fraction = 0.25

[train]
dataset = "digits"
epochs = 1
hidden = 16
timesteps = 4
deploy_check = "deploy"

[space]
lr_global = { type = "float", low = 1e-3, high = 1e-2, log = true }
theta = { type = "float", low = 0.2, high = 0.6 }
leak = { type = "int", low = 64, high = 200 }
post_fn = { type = "categorical", choices = ["tanh", "identity"] }
"""


def _cfg(tmp_path: Path, text: str = TINY, name: str = "sweep.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_sweep_journal_outputs_and_best_command(tmp_path, capsys):
    from plasticore.training.sweep import load_config, split_train_val, train_parser

    cfg_path = _cfg(tmp_path)
    run = tmp_path / "run"
    assert main(["sweep", str(cfg_path), "--trials", "2", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    for f in ("study.journal", "trials.csv", "trials.md", "history.png", "importance.png", "best.json"):
        assert (run / f).is_file() and (run / f).stat().st_size > 0, f
    rows = list(csv.DictReader((run / "trials.csv").open()))
    assert len(rows) == 2 and rows[0]["state"] == "COMPLETE" and rows[1]["state"] in ("COMPLETE", "PRUNED")
    for r in rows:  # complete: integer-network accuracy; pruned (after epoch 1 here): none
        assert (0.0 <= float(r["val_accuracy"]) <= 1.0) if r["state"] == "COMPLETE" else r["val_accuracy"] == ""
        assert r["epochs"] == "1"
    assert len((run / "trials.md").read_text().splitlines()) == 2 + 2
    best = json.loads((run / "best.json").read_text())
    vals = [float(r["val_accuracy"]) if r["val_accuracy"] else -1.0 for r in rows]
    assert best["val_accuracy"] == max(vals) and best["trial"] == int(np.argmax(vals))
    # the printed command is the best trial's exact `plasticore train` invocation
    lines = out.splitlines()
    cmd = lines[lines.index("best command (whole training set, test set):") + 1]
    assert cmd == best["command"]
    argv = shlex.split(cmd)
    assert argv[:2] == ["plasticore", "train"]
    ns = train_parser().parse_args(argv[2:])
    for k, v in best["params"].items():
        assert getattr(ns, k) == v, k
    assert (ns.dataset, ns.epochs, ns.hidden, ns.timesteps, ns.out) == ("digits", 1, [16], 4, run / "best")
    # validation comes from the training split, stratified, disjoint from the train part
    (xtr, ytr), (xva, yva) = split_train_val(load_config(cfg_path))
    from plasticore.datasets import load_dataset

    x_all, _ = load_dataset("digits", "train")
    assert len(ytr) + len(yva) == len(x_all) and len(yva) == round(0.25 * len(x_all))
    assert set(np.unique(yva)) == set(np.unique(ytr))
    # resuming the same run dir: nothing to do at 2, exactly one more trial at 3
    assert main(["sweep", str(cfg_path), "--trials", "2", "--out", str(run)]) == 0
    assert "already has 2 finished trials" in capsys.readouterr().out
    assert main(["sweep", str(cfg_path), "--trials", "3", "--out", str(run)]) == 0
    capsys.readouterr()
    assert len(list(csv.DictReader((run / "trials.csv").open()))) == 3
    # the best command runs as printed (argv, as the shell would pass it)
    assert main(argv[1:]) == 0
    m = json.loads((run / "best" / "metrics.json").read_text())
    assert m["dataset"] == "digits" and m["sizes"] == [64, 16, 10] and m["timesteps"] == 4


BAD = [
    ("[space]\nfoo = { type = \"float\", low = 0.1, high = 1.0 }\n", "space.foo"),
    ("[space]\nleak = { type = \"int\", low = 64, high = 300 }\n", "space.leak.high"),
    ("[space]\nleak = { type = \"float\", low = 64.0, high = 200.0 }\n", "space.leak.low"),
    ("[space]\nlr_global = { type = \"float\", low = 0.0, high = 1e-2, log = true }\n", "space.lr_global.low"),
    ("[space]\ntheta = { type = \"float\", low = 0.6, high = 0.2 }\n", "space.theta"),
    ("[space]\npost_fn = { type = \"categorical\", choices = [\"tanh\", \"relu\"] }\n", "space.post_fn.choices[1]"),
    ("[space]\ntheta = { type = \"normal\", low = 0.2, high = 0.6 }\n", "space.theta.type"),
    ("[train]\nout = \"x\"\n[space]\ntheta = { type = \"float\", low = 0.2, high = 0.6 }\n", "train.out"),
    ("[train]\nepochs = 0\n[space]\ntheta = { type = \"float\", low = 0.2, high = 0.6 }\n", "train.epochs"),
    ("[study]\npruner = \"hyperband\"\n[space]\ntheta = { type = \"float\", low = 0.2, high = 0.6 }\n",
     "study.pruner"),
    ("[data]\nval_fraction = 1.5\n[space]\ntheta = { type = \"float\", low = 0.2, high = 0.6 }\n",
     "data.val_fraction"),
    ("[trian]\nepochs = 1\n", "trian"),
    ("[space\n", "not valid TOML"),
]


@pytest.mark.parametrize("text,key", BAD)
def test_sweep_bad_config(tmp_path, capsys, text, key):
    cfg = _cfg(tmp_path, text, "bad.toml")
    run = tmp_path / "run"
    assert main(["sweep", str(cfg), "--trials", "2", "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"plasticore: error: {cfg}: ") and key in err[0], err
    assert not run.exists()  # nothing written before the config is valid


def test_sweep_bad_arguments(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    assert main(["sweep", str(tmp_path / "missing.toml"), "--trials", "2"]) == 2
    assert "missing.toml: no such file" in capsys.readouterr().err
    assert main(["sweep", str(cfg), "--trials", "0", "--out", str(tmp_path / "r")]) == 2
    assert "--trials" in capsys.readouterr().err
    # an unreachable database: one line naming --storage, password not echoed
    assert main(["sweep", str(cfg), "--trials", "1", "--out", str(tmp_path / "r"),
                 "--storage", "postgresql://u:secret@127.0.0.1:1/db"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("plasticore: error: --storage postgresql://u@127.0.0.1:1/db") and "secret" not in err
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------
# slow: a real PostgreSQL server, two workers, one killed mid-trial
# ------------------------------------------------------------------------------------------
PG_CFG = """
[study]
name = "pg-shared"
pruner = "none"
heartbeat_interval = 1
grace_period = 3
max_retry = 3

[train]
dataset = "digits"
epochs = 3
hidden = 16
timesteps = 6
deploy_check = "deploy"
threads = 1

[space]
lr_global = { type = "float", low = 1e-3, high = 1e-2, log = true }
theta = { type = "float", low = 0.2, high = 0.6 }
"""


def _worker(cfg: Path, url: str, n: int, out: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "plasticore.app.cli", "sweep", str(cfg), "--trials", str(n),
                             "--storage", url, "--out", str(out)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture(scope="module")
def pg_url():
    from pg_server import postgres_server

    with postgres_server() as url:
        yield url


def _kill_mid_trial(a: subprocess.Popen, url: str, study_name: str, log: Path, deadline_s: float = 300,
                    start_b=None) -> int:
    """SIGKILL worker ``a`` once it completed a trial and is one epoch into the next; returns that trial's
    number. ``start_b()`` is called as soon as the study has a trial."""
    import optuna
    from optuna.trial import TrialState

    deadline = time.monotonic() + deadline_s
    study = None
    while time.monotonic() < deadline:
        time.sleep(0.2)
        assert a.poll() is None, log.read_text()
        try:
            study = study or optuna.load_study(study_name=study_name, storage=url)
        except Exception:  # noqa: BLE001 -- not created yet
            continue
        trials = study.get_trials(deepcopy=False)
        if start_b is not None and trials:
            start_b()
            start_b = None
        mine = [t for t in trials if t.user_attrs.get("worker", "").endswith(f":{a.pid}")]
        done = [t for t in mine if t.state == TrialState.COMPLETE]
        running = [t for t in mine if t.state == TrialState.RUNNING]
        if done and running and running[0].intermediate_values:  # mid-trial: after epoch 1
            a.send_signal(signal.SIGKILL)
            a.wait()
            return running[0].number
    raise AssertionError("worker A never got mid-trial")


@pytest.mark.slow
def test_sweep_postgres_shared_and_killed_worker(tmp_path, pg_url):
    import optuna
    from optuna.trial import TrialState

    n = 8
    url = pg_url
    cfg = _cfg(tmp_path, PG_CFG)
    a = _worker(cfg, url, n, tmp_path / "a", tmp_path / "a.log")
    b = None

    def start_b():  # the second "machine"
        nonlocal b
        b = _worker(cfg, url, n, tmp_path / "b", tmp_path / "b.log")

    try:
        killed = _kill_mid_trial(a, url, "pg-shared", tmp_path / "a.log", start_b=start_b)
        assert b is not None and b.wait(timeout=600) == 0, (tmp_path / "b.log").read_text()
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    study = optuna.load_study(study_name="pg-shared", storage=url)
    trials = study.get_trials(deepcopy=False)
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    complete = by_state[TrialState.COMPLETE]
    assert len(complete) >= n
    assert not by_state[TrialState.RUNNING] and not by_state[TrialState.WAITING]
    # shared: both workers' trials are in the one study
    workers = {t.user_attrs["worker"].rsplit(":", 1)[1] for t in complete}
    assert str(a.pid) in workers and str(b.pid) in workers
    # the killed trial was failed by the heartbeat and re-run to completion with the same parameters
    k = trials[killed]
    assert k.state == TrialState.FAIL
    retried = [t for t in complete if t.system_attrs.get("failed_trial") == killed]
    assert len(retried) == 1 and retried[0].params == k.params
    blog = (tmp_path / "b.log").read_text()
    assert "best command (whole training set, test set):" in blog
    rows = list(csv.DictReader((tmp_path / "b" / "trials.csv").open()))
    assert sum(r["state"] == "COMPLETE" for r in rows) == len(complete)


def test_sweep_local_workers_share_the_journal(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    run = tmp_path / "run"
    assert main(["sweep", str(cfg), "--trials", "2", "--workers", "2", "--out", str(run)]) == 0
    rows = list(csv.DictReader((run / "trials.csv").open()))
    finished = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]
    assert 2 <= len(finished) <= 3 and len(rows) == len(finished)  # at most K-1 over N
    assert all(r["worker"] and not r["worker"].endswith(f":{os.getpid()}") for r in rows)  # run by the workers
    assert "best command (whole training set, test set):" in capsys.readouterr().out


def test_train_leak_decay_options(capsys):
    from plasticore.training.api import train_kwargs
    from plasticore.training.sweep import train_parser

    kw = train_kwargs(train_parser().parse_args(["--out", "x", "--leak", "100", "--decay", "256", "--theta", "0.5"]))
    assert kw["rule"] == {"lam": 100, "decay": 256, "theta": 0.5}
    for bad in (["--leak", "257"], ["--decay", "-1"], ["--theta", "0"], ["--epochs", "0"]):
        assert main(["train", "--out", "x", *bad]) == 2
        assert bad[0] in capsys.readouterr().err


@pytest.mark.slow
def test_sweep_postgres_last_worker_waits_for_a_dead_workers_trial(tmp_path, pg_url):
    """B alone reaches N while A's killed trial is still RUNNING (grace period not over): B waits, fails it
    by heartbeat, and runs the re-queued trial before it stops."""
    import optuna
    from optuna.trial import TrialState

    n = 2
    cfg = _cfg(tmp_path, PG_CFG.replace('"pg-shared"', '"pg-wait"').replace("grace_period = 3", "grace_period = 30"))
    a = _worker(cfg, pg_url, n, tmp_path / "a", tmp_path / "a.log")
    b = None
    try:
        killed = _kill_mid_trial(a, pg_url, "pg-wait", tmp_path / "a.log")
        b = _worker(cfg, pg_url, n, tmp_path / "b", tmp_path / "b.log")
        assert b.wait(timeout=600) == 0, (tmp_path / "b.log").read_text()
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    trials = optuna.load_study(study_name="pg-wait", storage=pg_url).get_trials(deepcopy=False)
    states = [t.state for t in trials]
    assert trials[killed].state == TrialState.FAIL and TrialState.RUNNING not in states
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert states.count(TrialState.COMPLETE) >= n + 1  # A's complete one, B's, and the re-run
    own = [t for t in trials if t.user_attrs["worker"].endswith(f":{b.pid}") and t.number != retried[0].number]
    assert len(own) == 1 and own[0].state == TrialState.COMPLETE
    if trials[killed].datetime_complete > own[0].datetime_complete:  # B reached N inside the grace period:
        assert "waiting for 1 running trial(s) of other workers" in (tmp_path / "b.log").read_text()  # it waited
