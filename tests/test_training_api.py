"""train() end to end, CLI registration, experiments (quick), bench, DDP under torchrun."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from plasticore import golden
from plasticore.app import training_cli
from plasticore.bundle import load_bundle
from plasticore.datasets import load_dataset
from plasticore.training import api
from plasticore.training.train import encode_int, load_checkpoint, predict

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small_digits():
    (xtr, ytr), (xte, yte) = load_dataset("digits", "train"), load_dataset("digits", "test")
    return (xtr[:240], ytr[:240]), (xte[:90], yte[:90])


def test_train_writes_bundle_metrics_plots_checkpoint(tmp_path, small_digits):
    m = api.train("digits", 2, tmp_path, progress=False, data=small_digits, num_updates=2, onchip_eval=True)
    mj = json.loads((tmp_path / "metrics.json").read_text())
    for k in ("test_accuracy", "deploy_test_accuracy", "float_noquant_test_accuracy", "history"):
        assert k in mj
    assert mj["deploy_matches_golden"] is True
    assert mj["float_deploy_prediction_agreement"] == 1.0
    assert m["deploy_test_accuracy"] == m["test_accuracy"]
    for p in ("curves.png", "raster.png", "membranes.png", "h_heatmap.png", "checkpoint.pt", "checkpoints/last.pt"):
        assert (tmp_path / p).is_file(), p
    b = load_bundle(tmp_path / "bundle")
    xte, yte = small_digits[1]
    g = golden.run(b, encode_int(xte, b_cfg := load_checkpoint(tmp_path / "checkpoint.pt")[0].cfg), labels=yte)
    assert float(np.mean(g.predictions == yte)) == mj["deploy_test_accuracy"]
    net, _ = load_checkpoint(tmp_path / "checkpoint.pt")
    assert net.cfg == b_cfg
    assert float(np.mean(predict(net, xte) == yte)) == mj["test_accuracy"]
    assert "onchip_deploy_test_accuracy" in mj and (tmp_path / "bundle_onchip").is_dir()


@pytest.mark.parametrize("kw", [{"variant": "GP"}, {"variant": "LP", "h_mode": "sample"},
                                {"coding": "rate", "rule": {"post_fn": "sign", "hebb_sign": -1, "clamp": 2.0,
                                                            "reset": "hard"}}])
def test_train_variants_and_rule_options(tmp_path, small_digits, kw):
    m = api.train("digits", 1, tmp_path, progress=False, data=small_digits, plots=False, hidden=32, **kw)
    assert m["deploy_matches_golden"] and m["float_deploy_prediction_agreement"] == 1.0


def test_wide_layers_check_exactness_on_a_subset(tmp_path, small_digits, monkeypatch):
    """A plastic layer wider than EXACT_ALL_MAX_H: the exact float64 forward and the torch deploy mode run
    on the first EXACT_CHECK_SAMPLES (and match the golden model there), the accuracies on every sample."""
    monkeypatch.setattr(api, "EXACT_ALL_MAX_H", 100)
    monkeypatch.setattr(api, "EXACT_CHECK_SAMPLES", 25)
    m = api.train("digits", 1, tmp_path, progress=False, data=small_digits, plots=False, hidden=32)
    assert m["exact_check_samples"] == 25 and m["test_samples"] == 90
    assert m["test_accuracy_form"] == "H unrounded inside a sample"
    assert m["deploy_matches_golden"] is True
    b = load_bundle(tmp_path / "bundle")
    g = golden.run(b, encode_int(small_digits[1][0], load_checkpoint(tmp_path / "checkpoint.pt")[0].cfg))
    assert float(np.mean(g.predictions == small_digits[1][1])) == m["deploy_test_accuracy"]
    assert m["float_deploy_prediction_agreement"] > 0.9


def test_add_cli_registers_train_and_experiment(tmp_path, monkeypatch):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    training_cli.add_cli(sub)
    a = ap.parse_args(["train", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path), "--hidden", "16",
                       "--max-train", "64", "--max-test", "32", "--no-progress", "--clamp", "none"])
    assert a.func(a) == 0
    assert "deploy_test_accuracy" in json.loads((tmp_path / "metrics.json").read_text())
    e = ap.parse_args(["experiment", "fewshot", "--out", str(tmp_path / "e"), "--quick"])
    assert e.kind == "fewshot" and e.quick and callable(e.func)


def test_fault_experiment_quick(tmp_path):
    r = api.run_experiment("fault", tmp_path, quick=True, epochs=1, hidden=32, log=lambda *_: None)
    assert {"HP", "GP", "LP"} <= set(r["rows"][0]) and (tmp_path / "results.json").is_file()
    assert (tmp_path / "fault.png").is_file()


def test_fewshot_and_continual_quick(tmp_path):
    r = api.run_experiment("fewshot-teach", tmp_path / "f", epochs=1, hidden=16, test_episodes=10,
                           episodes_per_iter=4, log=lambda *_: None)
    assert len(r["rows"]) == 3 and all(0 <= row["accuracy"] <= 1 for row in r["rows"])
    r = api.run_experiment("continual", tmp_path / "c", quick=True, n_tasks=2, hidden=16, log=lambda *_: None)
    assert len(r["rows"]) == 2 and all(v in r["rows"][1] for v in ("HP", "GP", "LP"))


def test_bench_small():
    r = api.bench(sizes=(64, 32, 10), batch=16, timesteps=3, steps=1, repeats=1, small=False)
    assert r["ours_samples_per_s"] > 0 and r["authors_loop_samples_per_s"] > 0 and "speedup" in r


def test_ddp_two_processes_gloo(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    assert Path(torchrun).exists(), "torchrun (from torch) not found next to the interpreter: run `make setup`"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000),
           "-m", "plasticore.app.training_cli", "train", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path),
           "--hidden", "16", "--max-train", "64", "--max-test", "32", "--no-progress", "--threads", "1"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["deploy_matches_golden"]


def test_authors_fashion_784_512_10_runs_on_user_idx_files(tmp_path):
    """The authors' Fashion-MNIST configuration (784-512-10, batch 100) through the CLI on user IDX files.

    Real Fashion-MNIST cannot ship offline; the same loader, network and export run on small IDX files
    written here in the standard layout, and the exported 784-512-10 bundle must equal its golden model."""
    import gzip
    import struct

    def write_idx(path, arr):
        hdr = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
        with gzip.open(path, "wb") as f:
            f.write(hdr + arr.astype(np.uint8).tobytes())

    rng = np.random.default_rng(7)
    root = tmp_path / "fashion"
    root.mkdir()
    for prefix, n in (("train", 100), ("t10k", 20)):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 40, (n, 28, 28)) + (y[:, None, None] * 20)  # class-dependent brightness
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", y)
    ap = argparse.ArgumentParser()
    training_cli.add_cli(ap.add_subparsers(dest="command", required=True))
    out = tmp_path / "run"
    a = ap.parse_args(["train", "--dataset", "fashion", "--data-root", str(root), "--hidden", "512",
                       "--batch-size", "100", "--epochs", "1", "--out", str(out), "--no-progress", "--threads", "1"])
    assert a.func(a) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["deploy_matches_golden"] is True
    b = load_bundle(out / "bundle")
    assert [(L.n_in, L.n_out) for L in b.layers] == [(784, 512), (512, 10)]
    assert b.layers[0].plastic


def test_authors_preset_options_and_explicit_override(tmp_path):
    ap = argparse.ArgumentParser()
    training_cli.add_cli(ap.add_subparsers(dest="command", required=True))
    base = ["train", "--out", str(tmp_path)]
    kw = api.train_kwargs(ap.parse_args([*base, "--authors"]))
    preset = {"hidden": 512, "timesteps": 10, "batch_size": 100, "lr_global": 1e-3, "lr_meta": 5e-4,
                  "lr_schedule": "constant", "plastic_layers": "all", "qat": False, "spike_ramp": True,
                  "rule": {"lam_exact": 0.4, "decay_exact": 0.95}, "loss_clamp": "straight_through"}
    assert {k: kw[k] for k in preset} == preset
    kw = api.train_kwargs(ap.parse_args([*base, "--authors", "--hidden", "16", "--timesteps", "4"]))
    assert kw["hidden"] == 16 and kw["timesteps"] == 4 and kw["batch_size"] == 100
    kw = api.train_kwargs(ap.parse_args(base))
    assert kw["hidden"] == 128 and kw["qat"] and not kw["spike_ramp"] and kw["lr_schedule"] == "cosine"
    a = ap.parse_args([*base, "--dataset", "digits", "--authors", "--hidden", "16", "--timesteps", "4",
                       "--epochs", "1", "--max-train", "50", "--max-test", "16", "--no-progress", "--threads", "1"])
    assert a.func(a) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["deploy_matches_golden"] is True  # the contract's part of the float-only preset stays exact
    assert load_bundle(tmp_path / "bundle").layers[1].plastic  # both layers plastic


def test_table_experiment_quick(tmp_path, monkeypatch):
    """The table command end to end on a tiny digits run (2 seeds x 3 variants), and its resume."""
    from plasticore.training import experiments

    r = api.run_experiment("table", tmp_path, dataset="digits", quick=True, seeds=2, hidden=16, log=lambda *_: None)
    assert [row["variant"] for row in r["rows"]] == ["LP", "GP", "HP"] and all(row["n"] == 2 for row in r["rows"])
    assert "| HP |" in (tmp_path / "table.md").read_text()
    assert len(list((tmp_path / "runs").glob("*.json"))) == 6
    monkeypatch.setattr(experiments, "train_model", lambda *a, **k: pytest.fail("finished runs are reused"))
    r2 = api.run_experiment("table", tmp_path, dataset="digits", quick=True, seeds=2, hidden=16, log=lambda *_: None)
    assert r2["rows"] == r["rows"]
