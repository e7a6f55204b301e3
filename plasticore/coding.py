"""Input coding: uint8 feature vectors -> per-step integer inputs of layer 0.

The host runs this before streaming inputs to a board, and the golden model runs the very same
function, so the chip and the model always see identical per-step inputs.
"""

from __future__ import annotations

import numpy as np

from . import contract as C
from .bundle import Bundle, InputCoding
from .errors import PlasticoreError


class InputError(PlasticoreError, ValueError):
    """Inputs with the wrong shape, dtype or range."""


def check_features(features: np.ndarray, n_in: int) -> np.ndarray:
    """Validate a (S, n_in) array of uint8-range features; return it as int64."""
    f = np.asarray(features)
    if f.ndim != 2 or f.shape[1] != n_in:
        raise InputError(f"features have shape {f.shape}, expected (samples, {n_in})")
    if not np.issubdtype(f.dtype, np.integer):
        raise InputError(f"features have dtype {f.dtype}, expected integers in 0..255")
    if f.size and (f.min() < 0 or f.max() > 255):
        raise InputError(f"features have values in [{f.min()}, {f.max()}], expected 0..255")
    return f.astype(np.int64)


def encode(features: np.ndarray, coding: InputCoding, timesteps: int, n_in: int,
           sample_offset: int = 0) -> np.ndarray:
    """Encode features (S, n_in) into layer-0 inputs (S, T, n_in), int64.

    ``direct``: x[s, t, i] = rshift_round(features[s, i] * ramp[t], 8)   (graded, 0..255)
    ``rate``:   x[s, t, i] = [u < features[s, i] / 256], u ~ U[0,1) from
                PCG64(seed, sample_offset + s) -- reproducible per sample index.
    """
    f = check_features(features, n_in)
    S = f.shape[0]
    if coding.kind == "direct":
        ramp = np.asarray(coding.ramp, dtype=np.int64)
        if ramp.shape != (timesteps,):
            raise InputError(f"coding.ramp has {ramp.shape[0]} entries for {timesteps} steps")
        return C.rshift_round(f[:, None, :] * ramp[None, :, None], 8)
    if coding.kind == "rate":
        out = np.empty((S, timesteps, n_in), dtype=np.int64)
        for s in range(S):
            rng = np.random.Generator(np.random.PCG64([coding.seed, sample_offset + s]))
            thr = rng.integers(0, 256, size=(timesteps, n_in))
            out[s] = (thr < f[s][None, :]).astype(np.int64)
        return out
    raise InputError(f"unknown input coding {coding.kind!r}")


def encode_for(bundle: Bundle, features: np.ndarray, sample_offset: int = 0) -> np.ndarray:
    return encode(features, bundle.coding, bundle.timesteps, bundle.n_in, sample_offset)


def layer0_range(bundle: Bundle) -> tuple[int, int]:
    """The values layer 0 accepts per step: 0..1 (spike inputs) or X_MIN..X_GRADED_MAX (graded, the
    9-bit signed input word: -256..255)."""
    if bundle.layers[0].input_kind == C.InputKind.SPIKE:
        return 0, 1
    return C.X_MIN, C.X_GRADED_MAX
