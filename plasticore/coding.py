"""Input coding: uint8 feature vectors -> per-step integer inputs of layer 0.

The host runs this before streaming inputs to a board, and the golden model runs the very same
function, so the chip and the model always see identical per-step inputs.
"""

from __future__ import annotations

import numpy as np

from . import contract as C
from .bundle import RATE_RNGS, Bundle, InputCoding  # noqa: F401 (RATE_RNGS: the generators)
from .errors import PlasticoreError


class InputError(PlasticoreError, ValueError):
    """Inputs with the wrong shape, dtype or range."""


RATE_WEYL = 0x9E3779B9  #: the Weyl step between the generator states of consecutive samples
_M32 = 0xFFFFFFFF


def rate_weyl(seed: int, n: np.ndarray | int) -> np.ndarray:
    """w(n) = (fold32(seed) + (n + 1) * RATE_WEYL) mod 2**32, fold32(seed) = (seed ^ seed >> 32) mod 2**32:
    the Weyl value of sample ``n`` (the chip's engine holds w and adds RATE_WEYL at every sample start)."""
    fold = (int(seed) ^ int(seed) >> 32) & _M32
    n = np.asarray(n, dtype=np.uint64)
    return ((fold + (n + np.uint64(1)) * np.uint64(RATE_WEYL)) & np.uint64(_M32)).astype(np.uint32)


def xorshift32(s: np.ndarray) -> np.ndarray:
    """Marsaglia's xorshift32 (13, 17, 5) on uint32 states."""
    s = s ^ (s << np.uint32(13))
    s = s ^ (s >> np.uint32(17))
    return s ^ (s << np.uint32(5))


def rate_spikes(f: np.ndarray, seed: int, timesteps: int, sample_offset: int = 0) -> np.ndarray:
    """Rate coding with ``xorshift32`` (bit-exact with the sample engine), f (S, A) int -> x (S, T, A).

    Sample n = sample_offset + s starts from state0 = w(n) | 1 (:func:`rate_weyl`); every step t, every
    input i in order (zero features included) advances the state once, s := xorshift32(s), and
    x[s, t, i] = [s >> 24 < f[s, i]]: a spike with probability f/256.
    """
    S, A = f.shape
    st = rate_weyl(seed, sample_offset + np.arange(S)) | np.uint32(1)
    out = np.empty((S, timesteps, A), dtype=np.int64)
    for t in range(timesteps):
        for i in range(A):
            st = xorshift32(st)
            out[:, t, i] = (st >> np.uint32(24)) < f[:, i]
    return out


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
    ``rate``:   x[s, t, i] = 1 with probability features[s, i] / 256, from ``coding.rng``:
                :func:`rate_spikes` (xorshift32, what the chip's engine draws), or the thresholds
                ``PCG64([seed, sample_offset + s]).integers(0, 256, (T, n_in))`` (pcg64, bundles before
                version 4) -- reproducible per sample index either way.
    """
    f = check_features(features, n_in)
    S = f.shape[0]
    if coding.kind == "direct":
        ramp = np.asarray(coding.ramp, dtype=np.int64)
        if ramp.shape != (timesteps,):
            raise InputError(f"coding.ramp has {ramp.shape[0]} entries for {timesteps} steps")
        return C.rshift_round(f[:, None, :] * ramp[None, :, None], 8)
    if coding.kind == "rate" and coding.rng == "xorshift32":
        return rate_spikes(f, coding.seed, timesteps, sample_offset)
    if coding.kind == "rate" and coding.rng == "pcg64":
        out = np.empty((S, timesteps, n_in), dtype=np.int64)
        for s in range(S):
            rng = np.random.Generator(np.random.PCG64([coding.seed, sample_offset + s]))
            thr = rng.integers(0, 256, size=(timesteps, n_in))
            out[s] = (thr < f[s][None, :]).astype(np.int64)
        return out
    raise InputError(f"unknown input coding {coding.kind!r} (rng {coding.rng!r})")


def encode_for(bundle: Bundle, features: np.ndarray, sample_offset: int = 0) -> np.ndarray:
    return encode(features, bundle.coding, bundle.timesteps, bundle.n_in, sample_offset)


def layer0_range(bundle: Bundle) -> tuple[int, int]:
    """The values layer 0 accepts per step: 0..1 (spike inputs) or X_MIN..X_GRADED_MAX (graded, the
    9-bit signed input word: -256..255)."""
    if bundle.layers[0].input_kind == C.InputKind.SPIKE:
        return 0, 1
    return C.X_MIN, C.X_GRADED_MAX
