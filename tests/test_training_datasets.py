"""Offline datasets: shapes, dtypes, deterministic splits, IDX/Omniglot loaders, clear errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from plasticore.datasets import DatasetError, load_dataset, read_idx
from plasticore.errors import PlasticoreError


def test_digits_split_deterministic_and_disjoint():
    xtr, ytr = load_dataset("digits", "train")
    xte, yte = load_dataset("digits", "test")
    xa, ya = load_dataset("digits", "all")
    assert xtr.dtype == np.uint8 and ytr.dtype == np.int64 and xtr.shape[1] == 64
    assert len(ytr) + len(yte) == len(ya) == 1797
    assert len(yte) == 450 and xtr.max() == 255
    x2, y2 = load_dataset("digits", "train")
    assert np.array_equal(xtr, x2) and np.array_equal(ytr, y2)
    assert set(np.unique(yte)) == set(range(10))


def test_mnist1d_offline_and_restores_global_rng():
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    xtr, ytr = load_dataset("mnist1d", "train")
    after = np.random.random()
    xte, yte = load_dataset("mnist1d", "test")
    assert xtr.shape == (4000, 40) and xte.shape == (1000, 40) and xtr.dtype == np.uint8
    assert before == after  # make_dataset reseeds numpy; the loader restores the caller's state
    assert 0 < xtr.mean() < 255 and set(np.unique(ytr)) == set(range(10))


def _write_idx(path, arr: np.ndarray, gz: bool = False):
    hdr = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = hdr + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def test_idx_loader(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "fashion"
    root.mkdir()
    _write_idx(root / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (5, 28, 28)), gz=True)
    _write_idx(root / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, (5,)), gz=True)
    _write_idx(root / "t10k-images-idx3-ubyte", rng.integers(0, 256, (3, 28, 28)))
    _write_idx(root / "t10k-labels-idx1-ubyte", rng.integers(0, 10, (3,)))
    x, y = load_dataset("fashion", "train", root)
    assert x.shape == (5, 784) and x.dtype == np.uint8 and y.shape == (5,)
    assert load_dataset("fashion", "all", root)[0].shape == (8, 784)
    assert read_idx(root / "t10k-labels-idx1-ubyte").shape == (3,)
    # the 14x14 variant: 2x2 means, rounded half up, same labels
    x14, y14 = load_dataset("fashion14", "train", root)
    assert x14.shape == (5, 196) and x14.dtype == np.uint8 and np.array_equal(y14, y)
    img = x.reshape(5, 28, 28).astype(np.int64)
    for s, r, c in [(0, 0, 0), (4, 13, 13), (2, 6, 9)]:
        want = (img[s, 2 * r, 2 * c] + img[s, 2 * r, 2 * c + 1] + img[s, 2 * r + 1, 2 * c]
                + img[s, 2 * r + 1, 2 * c + 1] + 2) // 4
        assert x14[s, r * 14 + c] == want


def test_missing_files_raise_clear_errors(tmp_path, monkeypatch):
    import plasticore.datasets as D

    monkeypatch.delenv("PLASTICORE_DATA", raising=False)
    monkeypatch.setattr(D, "debian_dataset_dir", lambda name: None)  # as if the package were not installed
    with pytest.raises(DatasetError, match="needs local files: install it with `make fashion-mnist`"):
        load_dataset("fashion", "train")
    with pytest.raises(DatasetError, match="needs local files: pass root"):
        load_dataset("mnist", "train")
    with pytest.raises(DatasetError, match="folder not found"):
        load_dataset("mnist", "train", tmp_path / "nope")
    (tmp_path / "m").mkdir()
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", "train", tmp_path / "m")
    with pytest.raises(PlasticoreError, match="Omniglot"):
        load_dataset("omniglot", "train", tmp_path / "omni")
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("cifar", "train")


def test_omniglot_folder(tmp_path):
    from PIL import Image

    for a, c in [("alpha", "character01"), ("alpha", "character02"), ("beta", "character01")]:
        d = tmp_path / "images_background" / a / c
        d.mkdir(parents=True)
        for k in range(2):
            Image.fromarray(np.full((105, 105), 255 * (k % 2), np.uint8)).save(d / f"{k}.png")
    x, y = load_dataset("omniglot", "train", tmp_path)
    assert x.shape == (6, 784) and list(np.bincount(y)) == [2, 2, 2]


def test_fashion_found_through_dpkg_listing(tmp_path, monkeypatch):
    """Without --data-root, ``fashion`` reads the folder that ``dpkg -L dataset-fashion-mnist`` lists."""
    rng = np.random.default_rng(1)
    pkg = tmp_path / "usr/share/datasets/fashion-mnist"
    pkg.mkdir(parents=True)
    for prefix, n in (("train", 4), ("t10k", 2)):
        _write_idx(pkg / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), gz=True)
        _write_idx(pkg / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)), gz=True)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    dpkg = bindir / "dpkg"
    listing = "\n".join(["/.", str(pkg), *(str(p) for p in sorted(pkg.iterdir()))])
    dpkg.write_text(f'#!/bin/sh\n[ "$1 $2" = "-L dataset-fashion-mnist" ] || exit 1\nprintf "{listing}\\n"\n')
    dpkg.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    monkeypatch.delenv("PLASTICORE_DATA", raising=False)
    x, y = load_dataset("fashion", "test")
    assert x.shape == (2, 784) and y.shape == (2,)
    assert load_dataset("fashion", "train")[0].shape == (4, 784)
