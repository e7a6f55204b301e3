"""Runs: the result of running samples through a network, the checks on its inputs, the class
prediction, the documented ``.npz`` run format (``docs/run-format.md``) and the bit-exact comparison.

Every producer of a run -- the golden model, the Verilated chip, a board behind the host library --
builds the same :class:`RunResult` and writes the same file, so their outputs compare with
``numpy.array_equal``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import contract as C
from .bundle import Bundle
from .coding import InputError, layer0_range


# ------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------
def check_inputs(bundle: Bundle, x: np.ndarray) -> np.ndarray:
    """Validate per-step layer-0 inputs (S, T, A) for ``bundle``; return them as int64."""
    x = np.asarray(x)
    T, A = bundle.timesteps, bundle.n_in
    if x.ndim != 3 or x.shape[1:] != (T, A):
        raise InputError(f"inputs have shape {x.shape}, expected (samples, {T}, {A})")
    if not np.issubdtype(x.dtype, np.integer):
        raise InputError(f"inputs have dtype {x.dtype}, expected integers")
    lo, hi = layer0_range(bundle)
    if x.size and (x.min() < lo or x.max() > hi):
        raise InputError(f"inputs have values in [{x.min()}, {x.max()}], layer 0 accepts {lo}..{hi}")
    return x.astype(np.int64)


def check_labels(labels: np.ndarray, n_samples: int, n_classes: int) -> np.ndarray:
    """Validate class labels: shape (n_samples,), integers in 0..n_classes-1; return them as int64."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n_samples:
        raise InputError(f"labels have shape {y.shape}, expected ({n_samples},) for {n_samples} samples")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"labels have dtype {y.dtype}, expected integers in 0..{n_classes - 1}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise InputError(f"labels have values in [{y.min()}, {y.max()}], expected 0..{n_classes - 1} "
                         f"(the network has {n_classes} outputs)")
    return y.astype(np.int64)


# ------------------------------------------------------------------------------------------
# result and prediction
# ------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    """Outputs of running S samples for T steps (the documented ``.npz`` run format)."""

    spikes: list[np.ndarray]  #: per layer (S, T, N) int16: spikes, or ANN activations
    u_final: list[np.ndarray]  #: per layer (S, N) int32: membrane after the last step of each sample
    h_final: list[np.ndarray]  #: per layer (A, N) int16: H at the end of the run
    predictions: np.ndarray  #: (S,) argmax of the last layer's final membrane (LIF) / last output (ANN)
    labels: np.ndarray | None = None
    u_trace: list[np.ndarray] | None = None  #: per layer (S, T, N) int32 when recorded
    meta: dict = field(default_factory=dict)


def predict(bundle: Bundle, u_final_last: np.ndarray, out_last_step: np.ndarray) -> np.ndarray:
    """Class prediction: first index of the maximum final membrane (LIF) or last-step output (ANN)."""
    v = u_final_last if bundle.layers[-1].soma == C.SomaMode.LIF else out_last_step
    return np.argmax(v, axis=-1).astype(np.int64)


# ------------------------------------------------------------------------------------------
# the documented .npz run format
# ------------------------------------------------------------------------------------------
RUN_FORMAT = "plasticore-run/1"
COMPACT_FORMAT = "plasticore-run-compact/1"  #: a streamed run's compact records (:class:`CompactResult`)


def result_to_npz_dict(res: RunResult, source: str) -> dict[str, np.ndarray]:
    """Arrays of the run format (``docs/run-format.md``)."""
    d: dict[str, np.ndarray] = {"format": np.array(RUN_FORMAT), "source": np.array(source),
                                "n_layers": np.array(len(res.spikes), np.int64),
                                "predictions": res.predictions.astype(np.int64)}
    for li in range(len(res.spikes)):
        d[f"layer{li}_spikes"] = res.spikes[li].astype(np.int16)
        d[f"layer{li}_u_final"] = res.u_final[li].astype(np.int32)
        d[f"layer{li}_h_final"] = res.h_final[li].astype(np.int16)
        if res.u_trace is not None:
            d[f"layer{li}_u_trace"] = res.u_trace[li].astype(np.int32)
    if res.labels is not None:
        d["labels"] = res.labels.astype(np.int64)
        d["accuracy"] = np.array(float(np.mean(res.predictions == res.labels)) if res.labels.size else 0.0)
    return d


def save_result(res: RunResult | CompactResult, path, source: str = "golden") -> None:
    """Write the run format (a :class:`CompactResult`: the compact one) atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".run-", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        d = compact_to_npz_dict(res, source) if isinstance(res, CompactResult) else result_to_npz_dict(res, source)
        np.savez_compressed(tmp, **d)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def is_run_npz(path) -> bool:
    """True if ``path`` is a run .npz (docs/run-format.md), i.e. a previous output of a run command."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return str(z["format"]) in (RUN_FORMAT, COMPACT_FORMAT)
    except Exception:  # noqa: BLE001 - anything unreadable is not a run file
        return False


def first_difference(what: str, x: np.ndarray, y: np.ndarray, dims: tuple[str, ...]) -> str | None:
    """None if ``x`` and ``y`` (same shape) are equal, else ``what``, the first differing index named by
    ``dims`` and both values."""
    if np.array_equal(x, y):
        return None
    idx = tuple(int(i) for i in np.argwhere(x != y)[0])
    where = ", ".join(f"{d} {i}" for d, i in zip(dims, idx, strict=True))
    return f"{what}: first difference at {where}: {x[idx]} vs {y[idx]}"


def compare_results(a: dict, b: dict) -> str | None:
    """Compare two run-format dicts; None if bit-exact, else a message naming the first difference
    (layer, sample, step, neuron/synapse and both values)."""
    n = int(a["n_layers"])
    if int(b["n_layers"]) != n:
        return f"layer count differs: {n} vs {int(b['n_layers'])}"
    for li in range(n):
        for key, dims in (("spikes", ("sample", "step", "neuron")), ("u_final", ("sample", "neuron")),
                          ("h_final", ("axon", "neuron"))):
            k = f"layer{li}_{key}"
            x, y = np.asarray(a[k]), np.asarray(b[k])
            if x.shape != y.shape:
                return f"{k}: shape {x.shape} vs {y.shape}"
            if (msg := first_difference(f"layer {li} {key}", x, y, dims)) is not None:
                return msg
    if not np.array_equal(a["predictions"], b["predictions"]):
        return "predictions differ"
    return None


# ------------------------------------------------------------------------------------------
# compact results (the sample engine's records)
# ------------------------------------------------------------------------------------------
@dataclass
class CompactResult:
    """What a streamed run returns per sample (the sample engine's record): the output layer's final
    membranes and the prediction; and the plastic weights at the end of the run."""

    u_out: np.ndarray  #: (S, N) int32: the last layer's membranes after each sample's last step
    h_final: list[np.ndarray]  #: per layer (A, N) int16: H at the end of the run
    predictions: np.ndarray  #: (S,)
    labels: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @classmethod
    def of(cls, res: RunResult) -> CompactResult:
        """The compact part of a full result (to compare a streamed run with the golden model)."""
        return cls(res.u_final[-1].astype(np.int32), res.h_final, res.predictions, res.labels)


def compare_compact(a: CompactResult, b: CompactResult) -> str | None:
    """None if bit-exact, else the first difference (sample and neuron, or layer, axon and neuron, and
    both values)."""
    n = len(a.h_final) - 1
    if a.u_out.shape != b.u_out.shape:
        return f"layer {n} u_final: shape {a.u_out.shape} vs {b.u_out.shape}"
    if (msg := first_difference(f"layer {n} u_final", a.u_out, b.u_out, ("sample", "neuron"))) is not None:
        return msg
    for li, (x, y) in enumerate(zip(a.h_final, b.h_final, strict=True)):
        if (msg := first_difference(f"layer {li} h_final", x, y, ("axon", "neuron"))) is not None:
            return msg
    if not np.array_equal(a.predictions, b.predictions):
        return "predictions differ"
    return None


def compact_to_npz_dict(res: CompactResult, source: str) -> dict[str, np.ndarray]:
    """Arrays of the compact run format (``docs/run-format.md``)."""
    n = len(res.h_final)
    d: dict[str, np.ndarray] = {"format": np.array(COMPACT_FORMAT), "source": np.array(source),
                                "n_layers": np.array(n, np.int64), "predictions": res.predictions.astype(np.int64),
                                f"layer{n - 1}_u_final": res.u_out.astype(np.int32)}
    for li, h in enumerate(res.h_final):
        d[f"layer{li}_h_final"] = h.astype(np.int16)
    if res.labels is not None:
        d["labels"] = res.labels.astype(np.int64)
        d["accuracy"] = np.array(float(np.mean(res.predictions == res.labels)) if res.labels.size else 0.0)
    return d
