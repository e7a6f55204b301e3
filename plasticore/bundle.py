"""The network bundle: a versioned on-disk format for a deployable hybrid network.

A bundle is a directory holding

* ``bundle.json`` -- format tag, network metadata, per-layer scalar parameters and rule options,
  input coding and number of time steps;
* ``tensors.npz`` -- per-layer integer tensors ``L{l}.W`` (A x N, int8), ``L{l}.b`` (N),
  ``L{l}.H0`` (A x N, int16), ``L{l}.hmask`` (A x N, 0/1), ``L{l}.beta`` (A), ``L{l}.eta`` (N),
  ``L{l}.lut`` (512, int16).

Version 2 adds the per-layer rule program (``layers[l].rule``, :mod:`plasticore.rules`); a version 1
bundle loads as the equivalent one-term program (``hebb_sign``, ``dh_shift``).  Version 3 adds the scalar
``u_reset``; an older bundle gets its default (0): the hard reset to 0 it was written for.  Version 4
adds ``coding.rng``, rate coding's generator; an older bundle draws from ``pcg64`` as it was written for.

``load_bundle`` validates everything and raises :class:`BundleError` naming the offending field;
``save_bundle`` writes to a temporary directory and renames, so a failed save leaves nothing
half-written.  The schema is documented in ``docs/bundle.md``.
"""

from __future__ import annotations

import enum
import json
import os
import shutil
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from . import contract as C
from .errors import PlasticoreError
from .rules import RuleError, RuleProgram, program_from_json, v1_program, validate_program

BUNDLE_FORMAT = "plasticore-bundle"
#: Rate coding's generators (``coding.rng``, :func:`plasticore.coding.encode`): ``xorshift32``, the one
#: the chip's sample engine runs; ``pcg64``, numpy's PCG64 of bundles before version 4 (host-driven only).
RATE_RNGS = ("xorshift32", "pcg64")
RATE_RNG_SINCE = 4  #: the bundle version that names ``coding.rng`` (older ones: ``pcg64``)
#: the version this plasticore writes: that of ``coding.rng``, or of the newest scalar parameter
BUNDLE_VERSION = max(RATE_RNG_SINCE, *(p.since for p in C.LAYER_PARAMS))
#: versions this plasticore reads (1: the fixed rule; 2: rule programs; 3: ``u_reset``; 4: ``coding.rng``)
BUNDLE_VERSIONS = tuple(range(1, BUNDLE_VERSION + 1))

#: Scalar integer parameters of a layer, in bundle.json (:data:`plasticore.contract.LAYER_PARAMS`).
SCALAR_FIELDS = tuple(p.name for p in C.LAYER_PARAMS)
#: Enumerated options of a layer, in bundle.json (stored by name).
ENUM_FIELDS = {
    "soma": C.SomaMode, "reset": C.ResetMode, "ann_act": C.AnnAct, "h_persist": C.HPersist,
    "input_kind": C.InputKind,
}
#: Per-layer tensors, in tensors.npz, with their shape in terms of (A, N).
TENSOR_SHAPES = {
    "W": ("A", "N"), "b": ("N",), "H0": ("A", "N"), "hmask": ("A", "N"), "beta": ("A",),
    "eta": ("N",), "lut": ("LUT",),
}
TENSOR_DTYPES = {
    "W": np.int8, "b": np.int32, "H0": np.int16, "hmask": np.uint8, "beta": np.int16,
    "eta": np.int16, "lut": np.int16,
}


class HRole(enum.Enum):
    """The per-sample H schedule of a layer, the one definition every runner (golden model, torch,
    host device, testbenches) follows."""

    FROZEN = "frozen"  #: not plastic: H0 is used by every sample and never written
    CARRIED = "carried"  #: plastic, ``h_persist = never``: H carries over; samples run one after another
    PER_SAMPLE = "per_sample"  #: plastic, ``h_persist = sample``: H := H0 at every sample start


class BundleError(PlasticoreError, ValueError):
    """A bundle is malformed; the message names the file and field."""


def _with_layer_params(cls):
    """Give the class an ``int`` field per :data:`plasticore.contract.LAYER_PARAMS` row (with its
    default; a required one first), after the tensors; for :func:`dataclasses.dataclass`."""
    ann = cls.__dict__["__annotations__"]
    tensors = {k: ann.pop(k) for k in TENSOR_SHAPES}
    rows = sorted(C.LAYER_PARAMS, key=lambda p: p.default is not None)
    cls.__annotations__ = {**tensors, **{p.name: int for p in rows}, **ann}
    for p in rows:
        if p.default is not None:
            setattr(cls, p.name, p.default)
    return cls


@dataclass
@_with_layer_params
class Layer:
    """One fully connected hybrid layer: integer tensors, scalar parameters (an ``int`` attribute per
    :data:`plasticore.contract.LAYER_PARAMS` row: ``theta``, ``lam``, ``decay``, ...) and rule options."""

    W: np.ndarray
    b: np.ndarray
    H0: np.ndarray
    hmask: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    lut: np.ndarray
    soma: C.SomaMode = C.SomaMode.LIF
    reset: C.ResetMode = C.ResetMode.SOFT
    ann_act: C.AnnAct = C.AnnAct.RELU
    h_persist: C.HPersist = C.HPersist.NEVER
    input_kind: C.InputKind = C.InputKind.SPIKE
    plastic: bool = True
    post_fn: str = "tanh"
    #: the rule program (contract v2); None: the v1 rule ``hebb_sign * rshift_round(g f, dh_shift)``
    rule: RuleProgram | None = None

    @property
    def program(self) -> RuleProgram:
        """The program the LPU runs (the v1 one-term program when ``rule`` is None)."""
        return self.rule if self.rule is not None else v1_program(self.hebb_sign, self.dh_shift)

    @property
    def h_role(self) -> HRole:
        """What a run does with this layer's H between samples (:class:`HRole`)."""
        if not self.plastic:
            return HRole.FROZEN
        return HRole.CARRIED if self.h_persist == C.HPersist.NEVER else HRole.PER_SAMPLE

    @property
    def n_in(self) -> int:
        return int(self.W.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.W.shape[1])

    @property
    def x_frac(self) -> int:
        return C.X_FRAC[self.input_kind]

    def as64(self) -> dict[str, np.ndarray]:
        """The tensors as int64 arrays (the golden model's working type)."""
        return {k: np.asarray(getattr(self, k), dtype=np.int64) for k in TENSOR_SHAPES}


@dataclass
class InputCoding:
    """How a sample (uint8 features) becomes per-step inputs of layer 0.

    ``direct``: x_t = rshift_round(pixel * ramp[t], 8) (graded, the authors' exp(-t/tau) ramp
    quantised to ramp[t] = round(256 * exp(-t / tau))).  ``rate``: x_t = 1 with probability
    pixel/256 from the generator ``rng`` (:data:`RATE_RNGS`) seeded by ``seed`` and the sample index (spikes).
    """

    kind: str = "direct"
    tau: float = 40.0
    ramp: list[int] = field(default_factory=list)
    seed: int = 0
    rng: str = "xorshift32"


@dataclass
class Bundle:
    layers: list[Layer]
    timesteps: int
    coding: InputCoding
    name: str = "network"
    meta: dict = field(default_factory=dict)

    @property
    def n_in(self) -> int:
        return self.layers[0].n_in

    @property
    def n_out(self) -> int:
        return self.layers[-1].n_out

    def sample_batch(self, batch: int, max_h_elements: int) -> int:
        """How many samples a runner may evaluate at once: 1 when a layer carries H from sample to
        sample (:attr:`HRole.CARRIED`), else at most ``batch`` and small enough that the per-sample H
        of the largest plastic layer, (batch, A, N), stays near ``max_h_elements`` (at least 1)."""
        if any(L.h_role == HRole.CARRIED for L in self.layers):
            return 1
        return per_sample_h_batch(batch, [L.n_in * L.n_out for L in self.layers if L.plastic], max_h_elements)

    def reset_h_layers(self) -> list[int]:
        """The layers whose H returns to H0 at every sample start (:attr:`HRole.PER_SAMPLE`)."""
        return [li for li, L in enumerate(self.layers) if L.h_role == HRole.PER_SAMPLE]


def per_sample_h_batch(batch: int, plastic_sizes: list[int], max_h_elements: int) -> int:
    """Largest batch <= ``batch`` whose per-sample H (``plastic_sizes`` = A*N of each plastic layer)
    stays near ``max_h_elements`` elements (at least 1)."""
    return max(1, min(batch, max_h_elements // max(plastic_sizes, default=1)))


def ramp_for(tau: float, timesteps: int) -> list[int]:
    """Quantised exp(-t/tau) ramp, 256 == 1.0."""
    return [int(round(256 * np.exp(-t / tau))) for t in range(timesteps)]


# ------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------
def validate(bundle: Bundle) -> None:
    """Raise :class:`BundleError` naming the first problem found in ``bundle``."""
    if not bundle.layers:
        raise BundleError("bundle.json: 'layers' is empty")
    if len(bundle.layers) > C.MAX_LAYERS:
        raise BundleError(f"bundle.json: {len(bundle.layers)} layers > MAX_LAYERS {C.MAX_LAYERS}")
    if not (1 <= bundle.timesteps <= C.MAX_TIMESTEPS):
        raise BundleError(f"bundle.json: 'timesteps' = {bundle.timesteps} not in 1..{C.MAX_TIMESTEPS}")
    cod = bundle.coding
    if cod.kind not in ("direct", "rate"):
        raise BundleError(f"bundle.json: 'coding.kind' = {cod.kind!r}, expected 'direct' or 'rate'")
    if cod.kind == "direct":
        if len(cod.ramp) != bundle.timesteps:
            raise BundleError(
                f"bundle.json: 'coding.ramp' has {len(cod.ramp)} entries, expected timesteps={bundle.timesteps}")
        if not all(0 <= int(r) <= 256 for r in cod.ramp):
            raise BundleError("bundle.json: 'coding.ramp' entries must be in 0..256")
    if cod.rng not in RATE_RNGS:
        raise BundleError(f"bundle.json: 'coding.rng' = {cod.rng!r}, expected one of {', '.join(RATE_RNGS)}")
    want_kind = C.InputKind.GRADED if cod.kind == "direct" else C.InputKind.SPIKE
    prev_out = None
    for li, L in enumerate(bundle.layers):
        where = f"layer {li}"
        for name, shape in TENSOR_SHAPES.items():
            arr = getattr(L, name)
            if not isinstance(arr, np.ndarray):
                raise BundleError(f"tensors.npz: L{li}.{name} is missing or not an array")
            if not np.issubdtype(arr.dtype, np.integer):
                raise BundleError(f"tensors.npz: L{li}.{name} has dtype {arr.dtype}, expected integers")
            dims = {"A": L.W.shape[0] if L.W.ndim == 2 else -1, "N": L.W.shape[1] if L.W.ndim == 2 else -1,
                    "LUT": C.LUT_SIZE}
            want = tuple(dims[d] for d in shape)
            if arr.shape != want:
                raise BundleError(f"tensors.npz: L{li}.{name} has shape {arr.shape}, expected {want}")
            rng = C.RANGES[name]
            if not rng.check(arr):
                raise BundleError(
                    f"tensors.npz: L{li}.{name} has values in [{arr.min()}, {arr.max()}], "
                    f"allowed [{rng.lo}, {rng.hi}]")
        if not (1 <= L.n_in <= C.MAX_AXONS):
            raise BundleError(f"{where}: {L.n_in} inputs not in 1..MAX_AXONS={C.MAX_AXONS}")
        if not (1 <= L.n_out <= C.MAX_NEURONS * 64):
            raise BundleError(f"{where}: {L.n_out} neurons out of range")
        for name in SCALAR_FIELDS:
            v = getattr(L, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise BundleError(f"bundle.json: layers[{li}].{name} = {v!r} is not an integer")
            rng = C.RANGES[name]
            if not rng.lo <= v <= rng.hi:
                raise BundleError(f"bundle.json: layers[{li}].{name} = {v} not in {rng.lo}..{rng.hi}")
        if L.hebb_sign not in (-1, 1):
            raise BundleError(f"bundle.json: layers[{li}].hebb_sign = {L.hebb_sign}, expected -1 or +1")
        for name, enum_t in ENUM_FIELDS.items():
            if not isinstance(getattr(L, name), enum_t):
                raise BundleError(f"bundle.json: layers[{li}].{name} = {getattr(L, name)!r} is not a {enum_t.__name__}")
        if li == 0 and L.input_kind != want_kind:
            raise BundleError(
                f"bundle.json: layers[0].input_kind = {L.input_kind.name} but coding '{cod.kind}' "
                f"produces {want_kind.name} inputs")
        if li > 0:
            if L.n_in != prev_out:
                raise BundleError(
                    f"bundle.json: layers[{li}] has {L.n_in} inputs but layers[{li - 1}] has {prev_out} outputs")
            prev = bundle.layers[li - 1]
            want = C.InputKind.SPIKE if prev.soma == C.SomaMode.LIF else C.InputKind.GRADED
            if L.input_kind != want:
                raise BundleError(
                    f"bundle.json: layers[{li}].input_kind = {L.input_kind.name}, but layer {li - 1} "
                    f"({prev.soma.name}) produces {want.name}")
        if L.rule is not None:
            if not isinstance(L.rule, RuleProgram):
                raise BundleError(f"bundle.json: layers[{li}].rule is not a rule program")
            try:
                validate_program(L.rule, f"bundle.json: layers[{li}].rule")
            except RuleError as e:
                raise BundleError(str(e)) from None
        prev_out = L.n_out


# ------------------------------------------------------------------------------------------
# (de)serialisation
# ------------------------------------------------------------------------------------------
def _layer_json(L: Layer) -> dict:
    d = {k: int(getattr(L, k)) for k in SCALAR_FIELDS}
    d.update({k: getattr(L, k).name.lower() for k in ENUM_FIELDS})
    d.update(n_in=L.n_in, n_out=L.n_out, plastic=bool(L.plastic), post_fn=L.post_fn)
    d["rule"] = L.program.to_json()
    return d


def to_json(bundle: Bundle) -> dict:
    return {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "name": bundle.name,
        "timesteps": int(bundle.timesteps),
        "coding": {"kind": bundle.coding.kind, "tau": float(bundle.coding.tau),
                   "ramp": [int(r) for r in bundle.coding.ramp], "seed": int(bundle.coding.seed),
                   "rng": bundle.coding.rng},
        "layers": [_layer_json(L) for L in bundle.layers],
        "meta": bundle.meta,
    }


#: The files of a bundle directory (a directory holding only these may be replaced by a new bundle).
BUNDLE_FILES = frozenset({"bundle.json", "tensors.npz"})


def is_bundle_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a directory holding a previous bundle and nothing else."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return False
    names = {p.name for p in path.iterdir()}
    return names == BUNDLE_FILES


def save_bundle(bundle: Bundle, path: str | os.PathLike, replace: bool = False) -> Path:
    """Validate and write ``bundle`` to directory ``path`` atomically (temp dir + rename).

    An existing non-empty ``path`` is refused unless ``replace`` is true, and then only if it holds a
    previous bundle and nothing else (:func:`is_bundle_dir`): nothing else is ever deleted.
    """
    from .outputs import OutputError, check_output_dir, replace_dir, temp_dir_for

    validate(bundle)
    path = Path(path)
    try:
        check_output_dir(path, "bundle", force=replace, same_kind=is_bundle_dir, kind="bundle")
    except OutputError as e:
        raise BundleError(str(e)) from None
    tmp = temp_dir_for(path, ".bundle-")
    try:
        (tmp / "bundle.json").write_text(json.dumps(to_json(bundle), indent=1) + "\n")
        tensors = {f"L{li}.{k}": np.asarray(getattr(L, k)).astype(TENSOR_DTYPES[k])
                   for li, L in enumerate(bundle.layers) for k in TENSOR_SHAPES}
        np.savez_compressed(tmp / "tensors.npz", **tensors)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _get(d: dict, key: str, where: str, typ=None):
    if not isinstance(d, dict):
        raise BundleError(f"{where} is {type(d).__name__}, expected an object")
    if key not in d:
        raise BundleError(f"{where}: missing field '{key}'")
    v = d[key]
    if typ is not None and (not isinstance(v, typ) or isinstance(v, bool) and typ is not bool):
        raise BundleError(f"{where}: field '{key}' = {v!r:.60} has type {type(v).__name__}, "
                          f"expected {getattr(typ, '__name__', typ)}")
    return v


def _read_json(jf: Path) -> dict:
    try:
        text = jf.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"{jf}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise BundleError(f"{jf}: cannot be read ({e.strerror or e})") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise BundleError(f"{jf}: not valid JSON ({e})") from None
    except RecursionError:
        raise BundleError(f"{jf}: JSON nested too deeply") from None
    if not isinstance(d, dict):
        raise BundleError(f"bundle.json: top level is {type(d).__name__}, expected an object")
    return d


def _read_tensor(npz, key: str, tf: Path) -> np.ndarray:
    try:
        return np.asarray(npz[key])
    except Exception as e:  # noqa: BLE001 - zip/zlib/format/pickle errors of one member: name the array
        raise BundleError(f"tensors.npz: array '{key}' cannot be read ({type(e).__name__}: {e})".replace(
            "\n", " ")) from None


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read and validate a bundle directory; raises :class:`BundleError` naming the bad field."""
    path = Path(path)
    jf = path / "bundle.json"
    tf = path / "tensors.npz"
    if not path.is_dir():
        raise BundleError(f"{path}: bundle directory does not exist")
    if not jf.is_file():
        raise BundleError(f"{jf}: missing (not a plasticore bundle?)")
    if not tf.is_file():
        raise BundleError(f"{tf}: missing")
    d = _read_json(jf)
    if d.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"bundle.json: 'format' = {d.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    version = d.get("version")
    if isinstance(version, bool) or version not in BUNDLE_VERSIONS:
        raise BundleError(
            f"bundle.json: 'version' = {version!r}, this plasticore reads versions "
            f"{', '.join(map(str, BUNDLE_VERSIONS))}")
    cod_d = _get(d, "coding", "bundle.json", dict)
    ramp = cod_d.get("ramp", [])
    if not isinstance(ramp, list) or not all(isinstance(r, int) and not isinstance(r, bool) for r in ramp):
        raise BundleError(f"bundle.json: field 'coding.ramp' = {ramp!r:.60} is not a list of integers")
    tau = cod_d.get("tau", 40.0)
    if isinstance(tau, bool) or not isinstance(tau, int | float):
        raise BundleError(f"bundle.json: field 'coding.tau' = {tau!r:.60} is not a number")
    seed = cod_d.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 1 << 64:
        raise BundleError(f"bundle.json: field 'coding.seed' = {seed!r:.60} is not an integer in 0..2**64-1")
    rng = cod_d.get("rng", "pcg64" if version < RATE_RNG_SINCE else "xorshift32")
    if not isinstance(rng, str):
        raise BundleError(f"bundle.json: field 'coding.rng' = {rng!r:.60} is not a string")
    coding = InputCoding(kind=_get(cod_d, "kind", "bundle.json: coding", str), tau=float(tau), ramp=list(ramp),
                         seed=seed, rng=rng)
    name = d.get("name", "network")
    if not isinstance(name, str):
        raise BundleError(f"bundle.json: field 'name' = {name!r:.60} is not a string")
    meta = d.get("meta", {})
    if not isinstance(meta, dict):
        raise BundleError(f"bundle.json: field 'meta' = {meta!r:.60} is not an object")
    timesteps = _get(d, "timesteps", "bundle.json", int)
    layer_list = _get(d, "layers", "bundle.json", list)
    if not 1 <= len(layer_list) <= C.MAX_LAYERS:
        raise BundleError(f"bundle.json: 'layers' has {len(layer_list)} entries, expected 1..MAX_LAYERS={C.MAX_LAYERS}")
    try:
        npz = np.load(tf, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - report any decode failure with the file name
        raise BundleError(f"{tf}: cannot be read ({type(e).__name__}: {e})".replace("\n", " ")) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise BundleError(f"{tf}: holds a single array, not an .npz archive of named arrays")
    with npz:
        layers = []
        for li, ld in enumerate(layer_list):
            where = f"bundle.json: layers[{li}]"
            if not isinstance(ld, dict):
                raise BundleError(f"{where} is {type(ld).__name__}, expected an object")
            kw = {}
            for q in C.LAYER_PARAMS:  # a parameter newer than the bundle takes its default
                kw[q.name] = q.default if version < q.since and q.name not in ld else _get(ld, q.name, where, int)
            for k, enum_t in ENUM_FIELDS.items():
                v = _get(ld, k, where, str)
                try:
                    kw[k] = enum_t[v.upper()]
                except KeyError:
                    raise BundleError(
                        f"{where}.{k} = {v!r}, expected one of {[e.name.lower() for e in enum_t]}") from None
            kw["plastic"] = bool(_get(ld, "plastic", where, bool))
            post_fn = ld.get("post_fn", "custom")
            if not isinstance(post_fn, str):
                raise BundleError(f"{where}: field 'post_fn' = {post_fn!r:.60} is not a string")
            kw["post_fn"] = post_fn
            if version >= 2:
                try:
                    kw["rule"] = program_from_json(_get(ld, "rule", where, dict), f"{where}.rule")
                except RuleError as e:
                    raise BundleError(str(e)) from None
            dims = {"A": _get(ld, "n_in", where, int), "N": _get(ld, "n_out", where, int), "LUT": C.LUT_SIZE}
            for k, shape in TENSOR_SHAPES.items():
                key = f"L{li}.{k}"
                if key not in npz.files:
                    raise BundleError(f"tensors.npz: missing array '{key}'")
                kw[k] = _read_tensor(npz, key, tf)
                want = tuple(dims[d] for d in shape)
                if kw[k].shape != want:
                    raise BundleError(f"tensors.npz: {key} has shape {kw[k].shape}, expected {want} "
                                      f"(n_in={dims['A']}, n_out={dims['N']} in bundle.json)")
            layers.append(Layer(**kw))
    b = Bundle(layers=layers, timesteps=timesteps, coding=coding, name=name, meta=dict(meta))
    validate(b)
    return b


def copy_layer(L: Layer, **changes) -> Layer:
    """A deep copy of ``L`` with ``changes`` applied."""
    arrays = {f.name: np.array(getattr(L, f.name)) for f in fields(L) if isinstance(getattr(L, f.name), np.ndarray)}
    arrays.update(changes)
    return replace(L, **arrays)
