"""Offline datasets, quantised to uint8 features (shared by training, the CLI and the benches).

Every loader returns ``(features, labels)`` with ``features`` a ``(S, D)`` uint8 array (the input the
integer path and :func:`plasticore.coding.encode` consume) and ``labels`` a ``(S,)`` int64 array.
Nothing is ever downloaded:

* ``digits``  -- scikit-learn's bundled 8x8 digits (1797 samples, 64 features, values 0..16 scaled
  to 0..255).  Deterministic stratified split: 25 % test (``random_state=0``).
* ``mnist1d`` -- MNIST-1D generated procedurally with ``mnist1d.data.make_dataset`` and its default
  arguments (5000 samples, 40 features, the package's own 80/20 split).  ``make_dataset`` never
  touches the network (only ``get_dataset`` downloads); the global numpy/random state it reseeds is
  restored afterwards.  Features are quantised by ``round((x + 4) / 8 * 255)`` clipped to 0..255.
* ``mnist`` / ``fashion`` -- the standard IDX files (``train-images-idx3-ubyte[.gz]`` ...) from a
  user-supplied folder (``root`` or ``$PLASTICORE_DATA/<name>``); 784 features.  ``fashion`` without
  either falls back to the files of the Debian package ``dataset-fashion-mnist`` (found with
  ``dpkg -L``; ``make fashion-mnist`` installs it).
* ``fashion14`` / ``mnist14`` -- the same images average-pooled 2x2 to 14x14 (196 features,
  ``(a + b + c + d + 2) // 4``): a layer-0 input that fits a 256-axon core (the ULX3S chip).
* ``omniglot`` -- a user-supplied folder of ``<alphabet>/<character>/*.png`` images (the layout of
  the official ``images_background``/``images_evaluation`` archives), resized to 28x28 and inverted
  so ink is bright; labels index the characters in sorted order.  ``split`` ``train`` reads
  ``images_background``, ``test`` reads ``images_evaluation`` when present.

A missing local file raises :class:`DatasetError` naming what was expected where.
"""

from __future__ import annotations

import functools
import gzip
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np

from .errors import PlasticoreError

DATASETS = ("digits", "mnist1d", "mnist", "fashion", "mnist14", "fashion14", "omniglot")
SPLITS = ("train", "test", "all")


class DatasetError(PlasticoreError, FileNotFoundError):
    """A dataset is unknown or its local files are missing/corrupt."""


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}, expected one of {SPLITS}")


# ------------------------------------------------------------------------------------------
# digits
# ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.clip(np.round(d.data * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=0.25, random_state=0, stratify=y)
    return x, y, np.stack([np.isin(idx, tr), np.isin(idx, te)])


def _load_digits(split: str):
    x, y, masks = _digits()
    if split == "all":
        return x.copy(), y.copy()
    m = masks[0] if split == "train" else masks[1]
    return x[m], y[m]


# ------------------------------------------------------------------------------------------
# mnist1d
# ------------------------------------------------------------------------------------------
MNIST1D_RANGE = (-4.0, 4.0)


def quantise_mnist1d(x: np.ndarray) -> np.ndarray:
    lo, hi = MNIST1D_RANGE
    return np.clip(np.round((np.asarray(x, np.float64) - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _mnist1d() -> dict:
    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())  # procedural: no download (get_dataset would download)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {"train": (quantise_mnist1d(d["x"]), np.asarray(d["y"], np.int64)),
            "test": (quantise_mnist1d(d["x_test"]), np.asarray(d["y_test"], np.int64))}


def _load_mnist1d(split: str):
    d = _mnist1d()
    if split == "all":
        return (np.concatenate([d["train"][0], d["test"][0]]), np.concatenate([d["train"][1], d["test"][1]]))
    x, y = d[split]
    return x.copy(), y.copy()


# ------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)
# ------------------------------------------------------------------------------------------
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DatasetError(f"{path}: cannot be read ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (bad magic)")
    dtype_code, ndim = data[2], data[3]
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if dtype_code not in dtypes:
        raise DatasetError(f"{path}: unknown IDX element type 0x{dtype_code:02x}")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=dtypes[dtype_code], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise DatasetError(f"{path}: header says {shape} but holds {arr.size} elements")
    return arr.reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for cand in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (root / cand).is_file():
            return root / cand
    raise DatasetError(f"{root}: missing {stem}[.gz] (supply the IDX files locally; nothing is downloaded)")


#: Debian packages that ship an IDX dataset (name -> package); ``make fashion-mnist`` installs it.
DEBIAN_PACKAGES = {"fashion": "dataset-fashion-mnist"}
_DEBIAN_FALLBACK = {"fashion": Path("/usr/share/datasets/fashion-mnist")}


def debian_dataset_dir(name: str) -> Path | None:
    """The folder holding the IDX files of ``name``'s Debian package (``dpkg -L``), or None."""
    pkg = DEBIAN_PACKAGES.get(name)
    if pkg is None:
        return None
    stem = IDX_FILES["train"][0]
    if shutil.which("dpkg"):
        try:
            r = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            r = None
        if r is not None and r.returncode == 0:
            for line in r.stdout.splitlines():
                p = Path(line.strip())
                if p.name.startswith(stem) and p.is_file():
                    return p.parent
    fb = _DEBIAN_FALLBACK.get(name)
    return fb if fb is not None and any(fb.glob(stem + "*")) else None


def _default_root(name: str, root) -> Path:
    if root is not None:
        return Path(root)
    base = os.environ.get("PLASTICORE_DATA")
    if base is not None and (Path(base) / name).is_dir():
        return Path(base) / name
    deb = debian_dataset_dir(name)
    if deb is not None:
        return deb
    if base is not None:
        return Path(base) / name
    hint = ""
    if name in DEBIAN_PACKAGES:
        hint = (f"install it with `make fashion-mnist` (apt-get install {DEBIAN_PACKAGES[name]}) or ")
    raise DatasetError(
        f"dataset {name!r} needs local files: {hint}pass root=... (--data-root DIR) or set PLASTICORE_DATA "
        f"to a folder holding {name}/")


def _load_idx(name: str, split: str, root):
    root = _default_root(name, root)
    if not root.is_dir():
        raise DatasetError(f"{root}: folder not found (expected the {name} IDX files there)")
    parts = ("train", "test") if split == "all" else (split,)
    xs, ys = [], []
    for p in parts:
        img, lab = IDX_FILES[p]
        x = read_idx(_find(root, img))
        y = read_idx(_find(root, lab))
        if x.shape[0] != y.shape[0]:
            raise DatasetError(f"{root}: {img} has {x.shape[0]} images but {lab} has {y.shape[0]} labels")
        xs.append(x.reshape(x.shape[0], -1).astype(np.uint8))
        ys.append(y.astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


# ------------------------------------------------------------------------------------------
# Omniglot
# ------------------------------------------------------------------------------------------
def _load_omniglot(split: str, root, size: int = 28):
    root = _default_root("omniglot", root)
    if not root.is_dir():
        raise DatasetError(f"{root}: Omniglot folder not found (expected <alphabet>/<character>/*.png)")
    subs = {"train": "images_background", "test": "images_evaluation"}
    if split == "all" or not (root / subs.get(split, "")).is_dir():
        base = root
    else:
        base = root / subs[split]
    chars = sorted(p for p in base.glob("**/*") if p.is_dir() and any(p.glob("*.png")))
    if not chars:
        raise DatasetError(f"{base}: no character folders with .png images found")
    from PIL import Image

    xs, ys = [], []
    for ci, cdir in enumerate(chars):
        for f in sorted(cdir.glob("*.png")):
            im = Image.open(f).convert("L").resize((size, size), Image.BILINEAR)
            xs.append(255 - np.asarray(im, np.uint8).reshape(-1))
            ys.append(ci)
    return np.stack(xs).astype(np.uint8), np.asarray(ys, np.int64)


# ------------------------------------------------------------------------------------------
def load_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None):
    """``(features uint8 (S, D), labels int64 (S,))`` of dataset ``name``, split train/test/all."""
    _check_split(split)
    if name == "digits":
        return _load_digits(split)
    if name == "mnist1d":
        return _load_mnist1d(split)
    if name in ("mnist", "fashion", "fashion-mnist", "fashion_mnist"):
        return _load_idx("fashion" if name.startswith("fashion") else "mnist", split, root)
    if name in ("mnist14", "fashion14"):
        x, y = _load_idx(name[:-2], split, root)
        return pool2(x, 28), y
    if name == "omniglot":
        return _load_omniglot(split, root)
    raise DatasetError(f"unknown dataset {name!r}, expected one of {DATASETS}")


def pool2(features: np.ndarray, side: int) -> np.ndarray:
    """Average-pool (S, side*side) square images 2x2, rounding half up: (S, (side//2)**2) uint8."""
    h = side // 2
    x = np.asarray(features, np.uint16).reshape(-1, h, 2, h, 2)
    return ((x.sum(axis=(2, 4)) + 2) // 4).astype(np.uint8).reshape(len(features), h * h)


def num_classes(labels: np.ndarray) -> int:
    return int(np.max(labels)) + 1 if len(labels) else 0
