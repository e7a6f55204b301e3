"""PNG plots of a training run: accuracy curves, spike raster, membrane traces, H heatmap."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("MPLBACKEND", "Agg")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_curves(hist: dict, path: Path, title: str = "") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ep = hist["epoch"]
    ax[0].plot(ep, hist["loss"], "k-")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("loss (MSE)")
    ax[1].plot(ep, hist["train_accuracy"], label="train")
    ax[1].plot(ep, hist["test_accuracy"], label="test")
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel("accuracy")
    ax[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_raster(spikes: list[np.ndarray], path: Path, title: str = "spike raster (one sample)") -> Path:
    """spikes: per layer (T, N) of one sample."""
    plt = _plt()
    fig, axes = plt.subplots(len(spikes), 1, figsize=(7, 1.6 + 1.4 * len(spikes)), squeeze=False)
    for li, s in enumerate(spikes):
        t, n = np.nonzero(np.asarray(s))
        axes[li, 0].scatter(t, n, s=4, marker="|", color="k")
        axes[li, 0].set_ylabel(f"layer {li}\nneuron")
        axes[li, 0].set_xlim(-0.5, s.shape[0] - 0.5)
        axes[li, 0].set_ylim(-0.5, s.shape[1] - 0.5)
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_membranes(u: np.ndarray, theta: float, path: Path, label: int | None = None) -> Path:
    """u: (T, N) output-layer membranes of one sample, real units."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for j in range(u.shape[1]):
        ax.plot(u[:, j], lw=2.2 if j == label else 0.9, label=str(j))
    ax.axhline(theta, color="k", ls="--", lw=0.8)
    ax.set_xlabel("time step")
    ax.set_ylabel("membrane u")
    ax.set_title(f"output membranes (label {label})")
    ax.legend(ncol=5, fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_h(H: np.ndarray, path: Path, title: str = "plastic matrix H (layer 0)") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    v = float(np.abs(H).max()) or 1.0
    im = ax.imshow(np.asarray(H), aspect="auto", cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
    ax.set_xlabel("postsynaptic neuron")
    ax.set_ylabel("presynaptic input")
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_table(rows: list[dict], xkey: str, ykeys: list[str], path: Path, title: str, xlabel: str) -> Path:
    """Line plot of an experiment table (one line per model variant)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = [r[xkey] for r in rows]
    for k in ykeys:
        ax.plot(range(len(xs)), [r[k] for r in rows], marker="o", label=k)
    ax.set_xticks(range(len(xs)))
    ax.set_xticklabels([str(x) for x in xs], rotation=30, fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
