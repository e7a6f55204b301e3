"""Bad input, table by table: every case gets exit status 2, exactly one line on stderr naming the field,
file or argument, and leaves the file system as it was (nothing written, nothing deleted).

Most cases call ``plasticore.app.cli.main`` in-process (the same code path as the console script, minus
the interpreter start); the exit status path itself is checked once through a subprocess.  The cases
that need a board share one small simulated chip (the build of ``tests/test_board_e2e.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from plasticore import contract as C
from plasticore import golden, runs
from plasticore.app.cli import main
from plasticore.bundle import BUNDLE_VERSION, load_bundle, save_bundle
from plasticore.sim.random_bundle import random_bundle, random_inputs

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` (dotfiles included) with a hash of its content (or its link target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_refused(rc: int, err: str, *names: str) -> str:
    """Exit status 2 and exactly one stderr line, starting with the program name, naming ``names``."""
    lines = err.strip("\n").splitlines()
    assert rc == 2, err
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("plasticore"), line
    assert "Traceback" not in line
    for n in names:
        assert n in line, f"{n!r} not in {line!r}"
    return line


@pytest.fixture
def no_work(monkeypatch) -> list[str]:
    """Fail if a command starts long work (a Verilator build, a board, training, a bitstream build):
    every refusal must come before it.  Returns the names of what was started."""
    import plasticore.firmware.build as fw_build
    import plasticore.sim.chipsim as chipsim
    import plasticore.sim.simboard as simboard
    import plasticore.training.api as tapi

    started: list[str] = []

    def guard(name):
        def fn(*a, **k):
            started.append(name)
            raise AssertionError(f"{name} started before the bad input was refused")

        return fn

    monkeypatch.setattr(simboard, "build_board", guard("simboard build"))
    monkeypatch.setattr(chipsim, "build_chip_sim", guard("chip simulator build"))
    monkeypatch.setattr(tapi, "train", guard("training"))
    monkeypatch.setattr(tapi, "run_experiment", guard("experiment"))
    monkeypatch.setattr(fw_build, "build", guard("bitstream build"))
    return started


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A valid small bundle directory (8 inputs, 6 hidden, 4 outputs, 3 steps, direct coding)."""
    root = tmp_path_factory.mktemp("template")
    b = random_bundle(np.random.default_rng(3), sizes=[8, 6, 4], timesteps=3, coding="direct", allow_ann=False)
    save_bundle(b, root / "bundle")
    x = random_inputs(np.random.default_rng(4), b, 5)
    np.savez(root / "inputs.npz", x=x, labels=np.arange(5) % 4)
    return root


@pytest.fixture
def work(tmp_path, template) -> Path:
    """A fresh working directory holding ``bundle/`` and ``inputs.npz``."""
    shutil.copytree(template / "bundle", tmp_path / "bundle")
    shutil.copy(template / "inputs.npz", tmp_path / "inputs.npz")
    return tmp_path


# ------------------------------------------------------------------------------------------
# the broken-bundle corpus, class by class
# ------------------------------------------------------------------------------------------
def _json(fn):
    def mutate(d: Path):
        jf = d / "bundle.json"
        obj = json.loads(jf.read_text())
        new = fn(obj)
        jf.write_text(json.dumps(obj if new is None else new))

    return mutate


def _npz(fn):
    def mutate(d: Path):
        tf = d / "tensors.npz"
        with np.load(tf) as z:
            arrays = {k: z[k] for k in z.files}
        fn(arrays)
        tf.unlink()
        np.savez(tf, **arrays)

    return mutate


def _bytes(name: str, fn):
    def mutate(d: Path):
        p = d / name
        p.write_bytes(fn(p.read_bytes()))

    return mutate


def _set(path: str, value):
    """bundle.json: set a dotted path (``layers.0.theta``) to ``value``."""
    keys = path.split(".")

    def fn(obj):
        o = obj
        for k in keys[:-1]:
            o = o[int(k)] if isinstance(o, list) else o[k]
        last = int(keys[-1]) if isinstance(o, list) else keys[-1]
        if value is _DELETE:
            del o[last]
        else:
            o[last] = value

    return _json(fn)


_DELETE = object()


class _Evil:
    """Unpickling this would create the file named by MARKER (it must never happen)."""

    MARKER = ""

    def __reduce__(self):
        return (open, (self.MARKER, "w"))


def _pickled_npz(d: Path):
    _Evil.MARKER = str(d.parent / "PWNED")
    (d / "tensors.npz").write_bytes(pickle.dumps({"L0.W": _Evil()}))


def _object_array(d: Path):
    with np.load(d / "tensors.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["L0.W"] = np.array([[1, "a"]] * 8, dtype=object)
    (d / "tensors.npz").unlink()
    np.savez(d / "tensors.npz", **arrays)  # pickles the object member


def _npy_renamed(d: Path):
    (d / "tensors.npz").unlink()
    with open(d / "tensors.npz", "wb") as f:
        np.save(f, np.zeros((8, 6), np.int8))


def _corrupt_member(d: Path):
    """Damage the compressed data of one member (the zip directory stays intact)."""
    tf = d / "tensors.npz"
    with zipfile.ZipFile(tf) as z:
        info = z.getinfo("L0.W.npy")
    raw = bytearray(tf.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 20
    for i in range(start, start + 40):
        raw[i] ^= 0xA5
    tf.write_bytes(bytes(raw))


def _too_many_layers(obj):
    obj["layers"] = obj["layers"] * 9  # 18 > MAX_LAYERS


#: (class, case id, mutation, substrings the one-line error must contain)
CORPUS = [
    # truncated
    ("truncated", "json-half", _bytes("bundle.json", lambda b: b[: len(b) // 2]), ["bundle.json", "JSON"]),
    ("truncated", "json-empty", _bytes("bundle.json", lambda b: b""), ["bundle.json"]),
    ("truncated", "npz-half", _bytes("tensors.npz", lambda b: b[: len(b) // 2]), ["tensors.npz"]),
    ("truncated", "npz-10-bytes", _bytes("tensors.npz", lambda b: b[:10]), ["tensors.npz"]),
    ("truncated", "npz-empty", _bytes("tensors.npz", lambda b: b""), ["tensors.npz"]),
    ("truncated", "npz-no-bundle-json", lambda d: (d / "bundle.json").unlink(), ["bundle.json", "missing"]),
    ("truncated", "npz-missing", lambda d: (d / "tensors.npz").unlink(), ["tensors.npz", "missing"]),
    ("truncated", "npz-missing-array", _npz(lambda a: a.pop("L1.lut")), ["L1.lut"]),
    # wrong type
    ("type", "top-list", _json(lambda o: [o]), ["bundle.json", "list"]),
    ("type", "top-null", _bytes("bundle.json", lambda b: b"null"), ["bundle.json", "NoneType"]),
    ("type", "top-number", _json(lambda o: 5), ["bundle.json", "int"]),
    ("type", "layers-object", _set("layers", {"a": 1}), ["layers"]),
    ("type", "layer-list", _set("layers.0", [1, 2]), ["layers[0]"]),
    ("type", "layer-null", _set("layers.1", None), ["layers[1]"]),
    ("type", "meta-list", _set("meta", [1, 2]), ["meta"]),
    ("type", "meta-string", _set("meta", "x"), ["meta"]),
    ("type", "coding-list", _set("coding", ["direct"]), ["coding"]),
    ("type", "coding-kind-int", _set("coding.kind", 3), ["kind"]),
    ("type", "coding-tau-string", _set("coding.tau", "forty"), ["coding.tau"]),
    ("type", "coding-ramp-string", _set("coding.ramp", "256,200"), ["coding.ramp"]),
    ("type", "coding-ramp-floats", _set("coding.ramp", [256.0, 200.5, 100.0]), ["coding.ramp"]),
    ("type", "coding-seed-string", _set("coding.seed", "0"), ["coding.seed"]),
    ("type", "name-int", _set("name", 7), ["name"]),
    ("type", "theta-float", _set("layers.0.theta", 1.5), ["layers[0]", "theta"]),
    ("type", "theta-bool", _set("layers.0.theta", True), ["layers[0]", "theta"]),
    ("type", "soma-int", _set("layers.0.soma", 1), ["layers[0]", "soma"]),
    ("type", "soma-unknown", _set("layers.0.soma", "izhikevich"), ["layers[0]", "soma"]),
    ("type", "plastic-int", _set("layers.0.plastic", 1), ["layers[0]", "plastic"]),
    ("type", "n_in-string", _set("layers.0.n_in", "8"), ["layers[0]", "n_in"]),
    ("type", "timesteps-float", _set("timesteps", 3.0), ["timesteps"]),
    ("type", "post_fn-list", _set("layers.0.post_fn", ["tanh"]), ["layers[0]", "post_fn"]),
    ("type", "W-float", _npz(lambda a: a.update({"L0.W": a["L0.W"].astype(np.float32)})), ["L0.W", "dtype"]),
    ("type", "hmask-bool", _npz(lambda a: a.update({"L0.hmask": a["L0.hmask"].astype(bool)})), ["L0.hmask"]),
    ("type", "missing-theta", _set("layers.0.theta", _DELETE), ["layers[0]", "theta"]),
    # wrong shape
    ("shape", "W-transposed", _npz(lambda a: a.update({"L0.W": a["L0.W"].T.copy()})), ["L0.W", "shape"]),
    ("shape", "b-long", _npz(lambda a: a.update({"L1.b": np.zeros(9, np.int32)})), ["L1.b", "shape"]),
    ("shape", "lut-short", _npz(lambda a: a.update({"L0.lut": a["L0.lut"][:100]})), ["L0.lut", "shape"]),
    ("shape", "H0-scalar", _npz(lambda a: a.update({"L0.H0": np.int16(0)})), ["L0.H0", "shape"]),
    ("shape", "n_in-mismatch", _set("layers.1.n_in", 5), ["n_in"]),
    ("shape", "extra-layer", _json(lambda o: o["layers"].append(dict(o["layers"][1]))), ["L2."]),
    # out of range
    ("range", "theta-huge", _set("layers.0.theta", 10**30), ["layers[0].theta"]),
    ("range", "theta-negative", _set("layers.0.theta", -1), ["layers[0].theta"]),
    ("range", "hebb_sign-0", _set("layers.0.hebb_sign", 0), ["layers[0].hebb_sign"]),
    ("range", "u_frac-99", _set("layers.0.u_frac", 99), ["layers[0].u_frac"]),
    ("range", "timesteps-0", _set("timesteps", 0), ["timesteps"]),
    ("range", "timesteps-huge", _set("timesteps", 10**6), ["timesteps"]),
    ("range", "ramp-300", _set("coding.ramp", [300, 200, 100]), ["coding.ramp"]),
    ("range", "seed-negative", _set("coding.seed", -1), ["coding.seed"]),
    ("range", "too-many-layers", _json(_too_many_layers), ["layers", "MAX_LAYERS"]),
    ("range", "W-300", _npz(lambda a: a.update({"L0.W": np.full((8, 6), 300, np.int16)})), ["L0.W", "allowed"]),
    ("range", "hmask-2", _npz(lambda a: a.update({"L0.hmask": np.full((8, 6), 2, np.uint8)})), ["L0.hmask"]),
    ("range", "coding-kind", _set("coding.kind", "latency"), ["coding.kind"]),
    # wrong version / format
    ("version", "version-next", _set("version", BUNDLE_VERSION + 1), ["version"]),
    ("version", "version-string", _set("version", "1"), ["version"]),
    ("version", "version-true", _set("version", True), ["version"]),
    ("version", "version-missing", _set("version", _DELETE), ["version"]),
    ("version", "format-other", _set("format", "onnx"), ["format"]),
    ("version", "format-missing", _set("format", _DELETE), ["format"]),
    # pickled
    ("pickled", "npz-is-pickle", _pickled_npz, ["tensors.npz"]),
    ("pickled", "npz-object-member", _object_array, ["L0.W"]),
    ("pickled", "json-is-pickle", lambda d: (d / "bundle.json").write_bytes(pickle.dumps({"format": 1})),
     ["bundle.json"]),
    ("pickled", "npz-is-npy", _npy_renamed, ["tensors.npz", "single array"]),
    ("pickled", "npz-corrupt-member", _corrupt_member, ["L0.W"]),
    # not UTF-8
    ("utf8", "latin-1", _bytes("bundle.json", lambda b: b.replace(b'"name": "', b'"name": "caf\xe9 ')),
     ["bundle.json", "UTF-8"]),
    ("utf8", "utf-16", _bytes("bundle.json", lambda b: b.decode().encode("utf-16")), ["bundle.json", "UTF-8"]),
    ("utf8", "random-bytes", _bytes("bundle.json", lambda b: bytes(range(128, 256))), ["bundle.json", "UTF-8"]),
]


def test_corpus_covers_every_class():
    classes = {c for c, *_ in CORPUS}
    assert classes == {"truncated", "type", "shape", "range", "version", "pickled", "utf8"}
    assert len(CORPUS) >= 59
    assert len({cid for _, cid, *_ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("cls,cid,mutate,names", CORPUS, ids=[f"{c}-{i}" for c, i, *_ in CORPUS])
def test_broken_bundle(work, capsys, cls, cid, mutate, names):
    mutate(work / "bundle")
    before = snapshot(work)
    rc, out, err = run_cli(["bundle", "check", work / "bundle"], capsys)
    assert_refused(rc, err, *names)
    rc, out, err = run_cli(["golden", "run", "--bundle", work / "bundle", "--inputs", work / "inputs.npz",
                            "--out", work / "run.npz"], capsys)
    assert_refused(rc, err, *names)
    assert snapshot(work) == before  # nothing written (no run.npz, no temp file), nothing deleted
    assert not (work / "PWNED").exists()


# ------------------------------------------------------------------------------------------
# inputs and labels
# ------------------------------------------------------------------------------------------
def _inputs(**arrays):
    def make(d: Path):
        np.savez(d / "bad.npz", **arrays)

    return make


def _raw(data: bytes):
    def make(d: Path):
        (d / "bad.npz").write_bytes(data)

    return make


def _from_good(fn):
    def make(d: Path):
        (d / "bad.npz").write_bytes(fn((d / "inputs.npz").read_bytes()))

    return make


def _x(lo=0, hi=255, shape=(5, 3, 8)):
    return np.random.default_rng(0).integers(lo, hi + 1, size=shape)


def _npy_input(d: Path):
    with open(d / "bad.npz", "wb") as f:
        np.save(f, _x())


def _pickle_input(d: Path):
    _Evil.MARKER = str(d / "PWNED")
    (d / "bad.npz").write_bytes(pickle.dumps(_Evil()))


INPUT_CASES = [
    ("truncated", _from_good(lambda b: b[: len(b) // 2]), ["--inputs"]),
    ("empty-file", _raw(b""), ["--inputs"]),
    ("npy-renamed", _npy_input, ["--inputs", "single array"]),
    ("pickled", _pickle_input, ["--inputs"]),
    ("object-array", _inputs(x=np.array([[["a"] * 8] * 3] * 5, dtype=object)), ["--inputs", "'x'"]),
    ("no-arrays", _inputs(y=np.zeros(3)), ["--inputs", "features"]),
    ("x-wrong-shape", _inputs(x=_x(shape=(5, 4, 8))), ["--inputs", "shape"]),
    ("x-float", _inputs(x=_x().astype(np.float64)), ["--inputs", "dtype"]),
    ("x-below-range", _inputs(x=_x(lo=-257, hi=-257)), ["--inputs", "-256..255"]),
    ("x-above-range", _inputs(x=_x(lo=256, hi=256)), ["--inputs", "-256..255"]),
    ("x-empty", _inputs(x=np.zeros((0, 3, 8), np.int64)), ["--inputs", "no samples"]),
    ("features-range", _inputs(features=np.full((5, 8), 256)), ["--inputs", "features"]),
    ("features-shape", _inputs(features=np.zeros((5, 7), np.int64)), ["--inputs", "features"]),
    ("labels-nan", _inputs(x=_x(), labels=np.array([0, 1, np.nan, 2, 3])), ["--inputs", "labels"]),
    ("labels-negative", _inputs(x=_x(), labels=np.array([0, 1, -1, 2, 3])), ["--inputs", "labels"]),
    ("labels-2**40", _inputs(x=_x(), labels=np.array([0, 1, 2**40, 2, 3])), ["--inputs", "labels"]),
    ("labels-4-classes", _inputs(x=_x(), labels=np.array([0, 1, 4, 2, 3])), ["--inputs", "labels", "0..3"]),
    ("labels-2d", _inputs(x=_x(), labels=np.zeros((5, 2), np.int64)), ["--inputs", "labels", "shape"]),
    ("labels-strings", _inputs(x=_x(), labels=np.array(["a", "b", "c", "d", "e"])), ["--inputs", "labels"]),
    ("labels-short", _inputs(x=_x(), labels=np.arange(3)), ["--inputs", "labels"]),
]


@pytest.mark.parametrize("cid,make,names", INPUT_CASES, ids=[c for c, *_ in INPUT_CASES])
def test_bad_inputs(work, capsys, cid, make, names):
    make(work)
    before = snapshot(work)
    rc, out, err = run_cli(["golden", "run", "--bundle", work / "bundle", "--inputs", work / "bad.npz",
                            "--out", work / "run.npz"], capsys)
    assert_refused(rc, err, *names)
    assert snapshot(work) == before
    assert not (work / "PWNED").exists()


def test_graded_input_range_is_the_documented_one(work, capsys):
    """Graded layer-0 inputs: X_MIN..X_GRADED_MAX = -256..255 in the code, in docs/spec.md and in
    docs/run-format.md; both ends run, one past either end is refused."""
    assert (C.X_MIN, C.X_GRADED_MAX) == (-256, 255)
    for doc in ("docs/spec.md", "docs/run-format.md"):
        text = (REPO / doc).read_text()
        assert "−256..255" in text and "−128..255" not in text, doc
    b = load_bundle(work / "bundle")
    assert b.layers[0].input_kind == C.InputKind.GRADED
    ends = np.zeros((2, 3, 8), np.int64)
    ends[0], ends[1] = C.X_MIN, C.X_GRADED_MAX
    np.savez(work / "ends.npz", x=ends)
    rc, out, err = run_cli(["golden", "run", "--bundle", work / "bundle", "--inputs", work / "ends.npz",
                            "--out", work / "ends_run.npz"], capsys)
    assert rc == 0, err
    assert runs.compare_results(dict(np.load(work / "ends_run.npz")),
                                  runs.result_to_npz_dict(golden.run(b, ends), "golden")) is None
    for v in (C.X_MIN - 1, C.X_GRADED_MAX + 1):
        np.savez(work / "past.npz", x=np.full((1, 3, 8), v))
        rc, out, err = run_cli(["golden", "run", "--bundle", work / "bundle", "--inputs", work / "past.npz",
                                "--out", work / "past_run.npz"], capsys)
        assert_refused(rc, err, "--inputs", "-256..255")


# ------------------------------------------------------------------------------------------
# arguments: wrong numbers and malformed values, refused before any work
# ------------------------------------------------------------------------------------------
ARG_CASES = [
    ("count-0", ["golden", "run", "--bundle", "{b}", "--dataset", "digits", "--count", "0", "--out", "{d}/r.npz"],
     ["--count"]),
    ("count-negative", ["golden", "run", "--bundle", "{b}", "--dataset", "digits", "--count", "-5", "--out",
                        "{d}/r.npz"], ["--count"]),
    ("count-text", ["golden", "run", "--bundle", "{b}", "--inputs", "{i}", "--count", "ten", "--out", "{d}/r.npz"],
     ["--count"]),
    ("epochs-negative", ["train", "--epochs", "-1", "--out", "{d}/t"], ["--epochs"]),
    ("epochs-0", ["train", "--epochs", "0", "--out", "{d}/t"], ["--epochs"]),
    ("hidden-x", ["train", "--hidden", "8,x", "--out", "{d}/t"], ["--hidden"]),
    ("hidden-empty-item", ["train", "--hidden", "8,,4", "--out", "{d}/t"], ["--hidden"]),
    ("batch-size-0", ["train", "--batch-size", "0", "--out", "{d}/t"], ["--batch-size"]),
    ("lr-negative", ["train", "--lr-global", "-1e-3", "--out", "{d}/t"], ["--lr-global"]),
    ("sizes-abc", ["bundle", "random", "--sizes", "64,abc", "--out", "{d}/nb"], ["--sizes"]),
    ("sizes-one", ["bundle", "random", "--sizes", "64", "--out", "{d}/nb"], ["--sizes"]),
    ("sizes-huge", ["bundle", "random", "--sizes", "100000,10", "--out", "{d}/nb"], ["--sizes"]),
    ("timesteps-0", ["bundle", "random", "--timesteps", "0", "--out", "{d}/nb"], ["--timesteps"]),
    ("seed-negative", ["bundle", "random", "--seed", "-1", "--out", "{d}/nb"], ["--seed"]),
    ("mesh-0x0", ["sim", "run", "--bundle", "{b}", "--inputs", "{i}", "--mesh", "0x0", "--out", "{d}/r.npz"],
     ["--mesh"]),
    ("mesh-text", ["sim", "run", "--bundle", "{b}", "--inputs", "{i}", "--mesh", "big", "--out", "{d}/r.npz"],
     ["--mesh"]),
    ("axons-0", ["sim", "run", "--bundle", "{b}", "--inputs", "{i}", "--axons", "0", "--out", "{d}/r.npz"],
     ["--axons"]),
    ("cpb-0", ["simboard", "--cpb", "0"], ["--cpb"]),
    ("cpb-3", ["simboard", "--cpb", "3"], ["--cpb"]),
    ("design-id-zzz", ["run", "--bundle", "{b}", "--port", "/dev/null", "--inputs", "{i}", "--design-id", "zzz",
                       "--out", "{d}/r.npz"], ["--design-id"]),
    ("design-id-33-bits", ["run", "--bundle", "{b}", "--port", "/dev/null", "--inputs", "{i}", "--design-id",
                           "0x1ffffffff", "--out", "{d}/r.npz"], ["--design-id"]),
    ("param-banana", ["build", "--board", "icebreaker", "--param", "mesh_x=banana"], ["--param", "mesh_x"]),
    ("param-no-value", ["build", "--board", "icebreaker", "--param", "mesh_x"], ["--param"]),
    ("param-negative", ["flash", "--board", "icebreaker", "--param", "lanes=-1", "--dry-run"], ["--param", "lanes"]),
    ("board-unknown", ["build", "--board", "arty"], ["--board"]),
    ("missing-required", ["golden", "run", "--bundle", "{b}", "--inputs", "{i}"], ["--out"]),
    ("no-such-bundle", ["golden", "run", "--bundle", "{d}/nope", "--inputs", "{i}", "--out", "{d}/r.npz"],
     ["nope"]),
    ("no-such-inputs", ["golden", "run", "--bundle", "{b}", "--inputs", "{d}/nope.npz", "--out", "{d}/r.npz"],
     ["--inputs", "nope.npz"]),
    ("unknown-dataset", ["golden", "run", "--bundle", "{b}", "--dataset", "imagenet", "--out", "{d}/r.npz"],
     ["imagenet"]),
    ("simboard-board-unknown", ["simboard", "--board", "arty"], ["--board", "arty"]),
]


@pytest.mark.parametrize("cid,argv,names", ARG_CASES, ids=[c for c, *_ in ARG_CASES])
def test_bad_arguments(work, capsys, no_work, cid, argv, names):
    before = snapshot(work)
    argv = [a.format(b=work / "bundle", i=work / "inputs.npz", d=work) for a in argv]
    rc, out, err = run_cli(argv, capsys)
    assert_refused(rc, err, *names)
    assert no_work == []  # refused before any training, build or run
    assert snapshot(work) == before


# ------------------------------------------------------------------------------------------
# outputs: nothing lost, nothing half-written
# ------------------------------------------------------------------------------------------
def test_bundle_random_keeps_a_user_directory(tmp_path, capsys):
    """Issue 26 item 1: `bundle random --out d` deleted d and everything in it."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("x")
    before = snapshot(tmp_path)
    for extra in ([], ["--force"]):
        rc, out, err = run_cli(["bundle", "random", "--out", d, *extra], capsys)
        assert_refused(rc, err, "--out", str(d))
        assert snapshot(tmp_path) == before


def test_bundle_random_replaces_only_a_bundle_with_force(tmp_path, capsys):
    d = tmp_path / "b"
    assert run_cli(["bundle", "random", "--out", d, "--seed", "1"], capsys)[0] == 0
    first = snapshot(tmp_path)
    rc, out, err = run_cli(["bundle", "random", "--out", d, "--seed", "2"], capsys)
    assert_refused(rc, err, "--out", "--force")
    assert snapshot(tmp_path) == first
    assert run_cli(["bundle", "random", "--out", d, "--seed", "2", "--force"], capsys)[0] == 0
    after = snapshot(tmp_path)
    assert set(after) == set(first) and after != first  # replaced in place, no temp left behind
    (tmp_path / "empty").mkdir()
    assert run_cli(["bundle", "random", "--out", tmp_path / "empty"], capsys)[0] == 0  # an empty dir is fine


def test_save_bundle_never_deletes_foreign_files(tmp_path, template):
    from plasticore.bundle import BundleError

    b = load_bundle(template / "bundle")
    d = tmp_path / "d"
    d.mkdir()
    (d / "bundle.json").write_text("{}")
    (d / "keep.txt").write_text("mine")
    for replace in (False, True):
        with pytest.raises(BundleError, match="keep|not empty|does not hold"):
            save_bundle(b, d, replace=replace)
    assert sorted(p.name for p in d.iterdir()) == ["bundle.json", "keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_run_output_refused_before_work(work, capsys):
    """An existing --out is refused without --force, a non-run file even with it; an unusable directory
    is found before the run (issue 26 item 4: found only after a 71.6 s run)."""
    argv = ["golden", "run", "--bundle", work / "bundle", "--inputs", work / "inputs.npz", "--out"]
    (work / "mine.npz").write_bytes(b"my data")
    (work / "afile").write_text("x")
    before = snapshot(work)
    for out, extra, names in ((work / "mine.npz", [], ["--force"]), (work / "mine.npz", ["--force"], ["not a run"]),
                              (work / "afile" / "r.npz", [], ["not a directory"]),
                              (work / "bundle", [], ["is a directory"])):
        rc, _, err = run_cli([*argv, out, *extra], capsys)
        assert_refused(rc, err, "--out", *names)
        assert snapshot(work) == before
    assert run_cli([*argv, work / "r.npz"], capsys)[0] == 0
    rc, _, err = run_cli([*argv, work / "r.npz"], capsys)
    assert_refused(rc, err, "--force")
    assert run_cli([*argv, work / "r.npz", "--force"], capsys)[0] == 0
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_train_output_checked_before_training(tmp_path, capsys, no_work):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "metrics.json").write_text("{}")
    (tmp_path / "t" / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    for cmd in (["train", "--epochs", "50"], ["experiment", "fewshot"]):
        for extra in ([], ["--force"]):
            rc, _, err = run_cli([*cmd, "--out", tmp_path / "t", *extra], capsys)
            assert_refused(rc, err, "--out")
    assert no_work == []
    assert snapshot(tmp_path) == before


def test_demo_output_checked_first(tmp_path, capsys, no_work):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "report.json").write_text("{}")
    (tmp_path / "d" / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    for extra in ([], ["--force"]):
        rc, _, err = run_cli(["demo", "--out", tmp_path / "d", *extra], capsys)
        assert_refused(rc, err, "--out", str(tmp_path / "d"))
    assert snapshot(tmp_path) == before


def test_demo_writes_next_to_out_and_renames(tmp_path, capsys, monkeypatch):
    from plasticore.app import demo

    seen = []

    def fake_demo(work: Path, final: Path, args) -> int:
        seen.append((work, final))
        assert work.parent == final.parent and work != final
        (work / "report.json").write_text("{}")
        (work / "train").mkdir()
        return 0

    monkeypatch.setattr(demo, "_demo", fake_demo)
    out = tmp_path / "demo"
    assert run_cli(["demo", "--out", out], capsys)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"] and (out / "report.json").is_file()
    rc, _, err = run_cli(["demo", "--out", out], capsys)
    assert_refused(rc, err, "--force")
    assert run_cli(["demo", "--out", out, "--force"], capsys)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"] and len(seen) == 2


def test_capacity_checked_before_any_build(work, capsys, tmp_path, monkeypatch, no_work):
    """`sim run` and `deploy` refuse a bundle that does not fit before building anything
    (issue 26 item 4: after a 51 s Verilator build)."""
    monkeypatch.setenv("PLASTICORE_BUILD", str(tmp_path / "build"))
    big = random_bundle(np.random.default_rng(1), sizes=[300, 40, 4], timesteps=2, coding="direct")
    save_bundle(big, work / "big")
    np.savez(work / "big_in.npz", x=random_inputs(np.random.default_rng(2), big, 1))
    before = snapshot(work)
    rc, _, err = run_cli(["sim", "run", "--bundle", work / "big", "--inputs", work / "big_in.npz", "--mesh", "1x1",
                          "--axons", "128", "--out", work / "r.npz"], capsys)
    assert_refused(rc, err, "--bundle", "300 inputs", "128 axons")
    rc, _, err = run_cli(["deploy", "--board", "icebreaker", "--bundle", work / "big", "--port", "/dev/null",
                          "--skip-flash", "--out-dir", tmp_path / "bits"], capsys)
    assert_refused(rc, err, "--bundle", "icebreaker")
    assert no_work == []
    assert snapshot(work) == before
    assert not (tmp_path / "build").exists() and not (tmp_path / "bits").exists()


def test_simboard_link_refuses_existing_file(tmp_path, capsys, no_work):
    """Issue 26 item 1: `simboard --link PATH` deleted whatever was at PATH."""
    (tmp_path / "tty").write_text("precious")
    os.symlink("/etc/hostname", tmp_path / "other")
    before = snapshot(tmp_path)
    for name in ("tty", "other"):
        rc, _, err = run_cli(["simboard", "--link", tmp_path / name], capsys)
        assert_refused(rc, err, "--link", name)
    assert snapshot(tmp_path) == before


def test_simboard_stop_removes_only_its_own_symlink(tmp_path):
    from plasticore.sim.simboard import SimBoard

    for replaced in (False, True):
        link = tmp_path / f"tty{int(replaced)}"
        os.symlink("/dev/pts/999", link)  # a stale link of an earlier board may be replaced
        proc = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        board = SimBoard(Path("sleep"), proc, "/dev/pts/998", 8, link=link)
        link.unlink()
        os.symlink("/dev/pts/998", link)
        if replaced:  # someone put their own file there meanwhile: it stays
            link.unlink()
            link.write_text("mine")
        board.stop()
        assert link.exists() == replaced
        assert not replaced or link.read_text() == "mine"


def test_simboard_exits_nonzero_when_the_harness_dies(tmp_path, capsys, monkeypatch):
    """Issue 26 item 6: `plasticore simboard` exited 0 when its harness died."""
    from plasticore.sim import simboard

    def fake_start(*a, **kw):
        proc = subprocess.Popen(["sh", "-c", "kill -9 $$"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return simboard.SimBoard(Path("sh"), proc, "/dev/pts/997", 8)

    monkeypatch.setattr(simboard.SimBoard, "start", staticmethod(fake_start))
    rc, out, err = run_cli(["simboard", "--mesh", "1x1"], capsys)
    assert_refused(rc, err, "/dev/pts/997", "signal 9")


# ------------------------------------------------------------------------------------------
# ports: no code from a URL, one owner per port, one message per failure
# ------------------------------------------------------------------------------------------
def test_sim_url_cannot_run_code(work, capsys, monkeypatch, no_work):
    """Issue 26 item 7: `--port 'sim://?top=os:system'` called os.system."""
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    before = snapshot(work)
    for top in ("os:system", "subprocess:getoutput", "builtins:exec"):
        rc, _, err = run_cli(["run", "--bundle", work / "bundle", "--inputs", work / "inputs.npz", "--port",
                              f"sim://?top={top}", "--out", work / "r.npz", "--quiet"], capsys)
        assert_refused(rc, err, top, "unknown simulated board top", "plasticore.sim_tops")
    assert calls == []
    assert snapshot(work) == before


def test_sim_url_tops_registered_or_entry_points(monkeypatch):
    from plasticore.sim import simboard

    assert simboard._resolve_top(None) is simboard.TOPS["chip"]  # a bare sim:// carries the chip
    assert simboard._resolve_top("link_test") is simboard.TOPS["link_test"]

    class EP:
        name = "mytop"

        def load(self):
            return factory

    def factory(**kw):
        return kw

    monkeypatch.setattr(simboard, "_entry_point_tops", lambda: {"mytop": EP()})
    monkeypatch.delitem(simboard.TOPS, "mytop", raising=False)
    assert simboard._resolve_top("mytop") is factory
    assert "mytop" in simboard.known_tops()
    with pytest.raises(ValueError, match="unknown simulated board top"):
        simboard._resolve_top("os:system")


def test_bare_sim_url_is_the_default_chip_and_names_a_fitting_one(work, capsys, tmp_path, monkeypatch, no_work):
    """Issue 24 item 4: a bare sim:// carries the chip; a bundle that does not fit is refused before the
    board is built, with the URL of a chip it fits."""
    from plasticore.sim.chipboard import DEFAULT_CHIP, chip_url, fitting_chip, url_chip

    assert url_chip("sim://") == DEFAULT_CHIP
    assert url_chip("sim://?mesh_x=3&a_max=256") == dataclasses.replace(DEFAULT_CHIP, mesh_x=3, a_max=256)
    assert url_chip("sim://?top=link_test") is None
    big = random_bundle(np.random.default_rng(1), sizes=[300, 200, 150, 4], timesteps=2, coding="direct")
    save_bundle(big, work / "big")
    np.savez(work / "big_in.npz", x=random_inputs(np.random.default_rng(2), big, 1))
    fit = fitting_chip(big)
    assert (fit.mesh_x, fit.mesh_y, fit.a_max, fit.n_max) == (5, 1, 512, 128)
    monkeypatch.setenv("PLASTICORE_BUILD", str(tmp_path / "build"))
    before = snapshot(work)
    rc, _, err = run_cli(["run", "--bundle", work / "big", "--inputs", work / "big_in.npz", "--port", "sim://",
                          "--out", work / "r.npz", "--quiet"], capsys)
    line = assert_refused(rc, err, "--port sim://", "does not fit", chip_url(fit))
    assert "2x1 cores of 128x128" in line
    assert no_work == []
    assert snapshot(work) == before


def test_missing_port_said_once(work, capsys):
    """Issue 26 item 6: "cannot open serial port 'X':" was printed twice."""
    rc, _, err = run_cli(["run", "--bundle", work / "bundle", "--inputs", work / "inputs.npz", "--port",
                          work / "ttyNONE", "--out", work / "r.npz", "--quiet"], capsys)
    line = assert_refused(rc, err, "ttyNONE", "No such file")
    assert line.count("cannot open serial port") == 1 and line.count("ttyNONE") == 1


def test_pty_is_exclusive():
    """Issue 26 item 2: two hosts could open one port."""
    from plasticore.host.transport import NoPortError, PortBusyError, SerialTransport

    master, slave = os.openpty()
    try:
        port = os.ttyname(slave)
        with SerialTransport(port):
            with pytest.raises(PortBusyError, match=f"port {port} is in use by PID {os.getpid()}"):
                SerialTransport(port)
            # a second *process* is refused too (the lock is per open, not per process)
            code = ("import sys\nfrom plasticore.host.transport import SerialTransport, PortBusyError\n"
                    f"try:\n    SerialTransport({port!r})\nexcept PortBusyError as e:\n    print(e); sys.exit(3)\n")
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
            assert r.returncode == 3 and f"in use by PID {os.getpid()}" in r.stdout, r
        with SerialTransport(port):  # released on close
            pass
        assert issubclass(PortBusyError, NoPortError)
    finally:
        os.close(master)
        os.close(slave)


def test_checkpoint_load_runs_no_code(tmp_path):
    """Issue 26 item 8: load_checkpoint loads with ``weights_only=True``: a pickled object that would
    run code is refused (one error naming the file) and never executed."""
    import torch

    from plasticore.training.train import CheckpointError, load_checkpoint

    _Evil.MARKER = str(tmp_path / "PWNED")
    torch.save({"net_config": {}, "state_dict": {}, "payload": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "PWNED").exists()


# ------------------------------------------------------------------------------------------
# the exit path itself, and --debug
# ------------------------------------------------------------------------------------------
def test_console_exit_status_and_debug(tmp_path):
    exe = [sys.executable, "-m", "plasticore.app.cli"]
    r = subprocess.run([*exe, "bundle", "check", tmp_path / "nope"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nope" in r.stderr, r
    r = subprocess.run([*exe, "golden", "run", "--count", "0"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--count" in r.stderr, r
    r = subprocess.run([*exe, "--debug", "bundle", "check", tmp_path / "nope"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "Traceback" in r.stderr and r.stderr.strip().splitlines()[-1].startswith(
        "plasticore: error:"), r


# ------------------------------------------------------------------------------------------
# on a simulated board (the small chip of tests/test_board_e2e.py: one shared build)
# ------------------------------------------------------------------------------------------
SMALL = {"mesh_x": 2, "mesh_y": 2, "a_max": 32, "n_max": 16, "lanes": 4, "bus_slice": 1}
SMALL_URL = "sim://?cpb=8&" + "&".join(f"{k}={v}" for k, v in SMALL.items())


@pytest.fixture(scope="module")
def small_board(tmp_path_factory):
    from plasticore.sim.chipboard import chip_board_top
    from plasticore.sim.simboard import SimBoard

    link = tmp_path_factory.mktemp("link") / "ttyPLC"
    with SimBoard.start(chip_board_top, clocks_per_bit=8, link=link, **SMALL) as b:
        assert os.readlink(link) == b.port
        yield b
    assert not link.exists() and not link.is_symlink()  # stop() removed the symlink it created


def test_two_hosts_on_one_board(small_board, work, capsys):
    """Issue 26 item 2: seven overlapping pairs on one pty gave tracebacks and one wrong output."""
    from plasticore.host import connect
    from plasticore.host.linkbus import BoardError

    with connect(small_board.port) as dev:
        dev.identify()
        with pytest.raises(BoardError, match=f"in use by PID {os.getpid()}"):
            connect(small_board.port)
        before = snapshot(work)
        rc, _, err = run_cli(["run", "--bundle", work / "bundle", "--inputs", work / "inputs.npz", "--port",
                              small_board.port, "--out", work / "r.npz", "--quiet"], capsys)
        assert_refused(rc, err, small_board.port, f"in use by PID {os.getpid()}")
        assert snapshot(work) == before


def test_port_failure_mid_run_is_one_line(small_board, work, capsys, monkeypatch):
    """Issue 26 item 3: a port failure mid-run (TransportError) gave a traceback; no output is written."""
    from plasticore.host import transport

    real_read, calls = transport.SerialTransport.read, {"n": 0}

    def failing_read(self, max_bytes, timeout):
        calls["n"] += 1
        if calls["n"] > 40:
            raise transport.TransportError(f"read from {self.name} failed: [Errno 5] Input/output error")
        return real_read(self, max_bytes, timeout)

    monkeypatch.setattr(transport.SerialTransport, "read", failing_read)
    before = snapshot(work)
    rc, _, err = run_cli(["run", "--bundle", work / "bundle", "--inputs", work / "inputs.npz", "--port",
                          small_board.port, "--out", work / "r.npz", "--quiet"], capsys)
    assert_refused(rc, err, small_board.port, "Input/output error")
    assert calls["n"] > 40
    assert snapshot(work) == before


def test_sim_url_runs_a_fitting_bundle_bit_exact(work, capsys):
    """Issue 24 item 4: `plasticore run --port sim://...` spawns the chip board (here with the small
    chip's geometry in the URL) and runs a bundle that fits it, bit-exact."""
    rc, out, err = run_cli(["run", "--bundle", work / "bundle", "--inputs", work / "inputs.npz", "--port", SMALL_URL,
                            "--out", work / "r.npz", "--quiet", "--check"], capsys)
    assert rc == 0, err
    assert "bit-exact with the golden model" in out
    assert "4 cores (2x2)" in out


@pytest.mark.slow
def test_bare_sim_url_runs_a_bundle(work, capsys):
    """The bare `sim://` (the default chip, 2 cores of 128x128: a larger build) runs a bundle."""
    rc, out, err = run_cli(["run", "--bundle", work / "bundle", "--inputs", work / "inputs.npz", "--port", "sim://",
                            "--out", work / "r.npz", "--quiet", "--check"], capsys)
    assert rc == 0, err
    assert "bit-exact with the golden model" in out and "2 cores (2x1)" in out


def test_bench_out_and_only_checked_before_running(tmp_path, capsys):
    """``python -m plasticore.app.bench``: an unknown benchmark or an --out that is not a previous results
    file is refused (exit 2, one line) before any benchmark runs; the file is left as it was."""
    from plasticore.app import bench

    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}\n')
    for argv, name in ((["--only", "golden,nope", "--out", str(tmp_path / "r.json")], "--only"),
                       (["--only", "golden", "--out", str(notes)], "--out"),
                       (["--only", "golden", "--out", str(notes), "--force"], "--out")):
        rc = bench.main(argv)
        cap = capsys.readouterr()
        err = cap.err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and name in err[0], err
        assert "running benchmark" not in cap.out
    assert notes.read_text() == '{"mine": 1}\n' and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("cmd", [["sim", "run", "--core", "hybrid"], ["run", "--port", "sim://?top=chip"]])
def test_v2_host_inputs_refused_on_the_rtl(work, capsys, cmd, no_work):
    """``m<l>`` / ``teach`` in ``--inputs`` need program cores: a chip of v1 cores refuses them (one line
    naming the keys) instead of running without them."""
    x = np.load(work / "inputs.npz")["x"]
    np.savez(work / "v2.npz", x=x, m1=np.zeros((len(x), 4), np.int16), teach=np.zeros(len(x), np.int32))
    before = snapshot(work)
    rc, out, err = run_cli([*cmd, "--bundle", work / "bundle", "--inputs", work / "v2.npz", "--out",
                            work / "r.npz"], capsys)
    assert_refused(rc, err, "m1", "teach", "golden run")
    assert snapshot(work) == before


def test_stream_refusals_come_before_the_board(work, capsys, no_work):
    """``plasticore run --stream``: ``--record-membranes`` (compact records) and a bundle no sample engine
    runs are refused in one line, exit 2, before a board is opened or spawned."""
    base = ["run", "--bundle", work / "bundle", "--port", "sim://", "--out", work / "r.npz", "--stream"]
    np.savez(work / "f.npz", features=np.arange(40).reshape(5, 8))
    rc, _, err = run_cli([*base, "--inputs", work / "f.npz", "--record-membranes"], capsys)
    assert_refused(rc, err, "--stream", "--record-membranes")
    b = load_bundle(work / "bundle")
    b.layers[-1].soma = C.SomaMode.ANN
    save_bundle(b, work / "b2")
    rc, _, err = run_cli([*base[:2], work / "b2", *base[3:], "--inputs", work / "f.npz"], capsys)
    assert_refused(rc, err, "--stream", "ANN output layer")
    assert not (work / "r.npz").exists() and no_work == []


def test_table_out_is_built_in_place_and_never_replaces_other_dirs(tmp_path, capsys):
    """``experiment table`` writes each finished run into --out (a rerun resumes it): a directory that is
    not a table is refused before any training, untouched; an unfinished table is accepted."""
    from plasticore.app.training_cli import _is_table_dir

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    before = snapshot(other)
    rc, _, err = run_cli(["experiment", "table", "--quick", "--dataset", "digits", "--out", other], capsys)
    assert_refused(rc, err, "--out", str(other), "table")
    assert snapshot(other) == before
    part = tmp_path / "part"
    (part / "runs").mkdir(parents=True)
    (part / "runs" / "LP-s0.json").write_text("{}")
    (part / "runs" / "LP-s0.pt").write_bytes(b"")
    assert _is_table_dir(part)
    (part / "runs" / "x.txt").write_text("")
    assert not _is_table_dir(part)


def test_board_options_of_fewshot_only(tmp_path, capsys):
    """``--port`` / ``--episodes`` / ``--features`` belong to ``experiment fewshot``: another experiment
    refuses them in one line before any training; a ``sim://`` URL naming an unknown core kind is refused by name."""
    rc, _, err = run_cli(["experiment", "fault", "--out", tmp_path / "o", "--port", "sim://", "--quick"], capsys)
    assert_refused(rc, err, "--port", "fault")
    assert not (tmp_path / "o").exists()
    rc, _, err = run_cli(["experiment", "continual", "--out", tmp_path / "o", "--features", "input", "--quick"],
                         capsys)
    assert_refused(rc, err, "--features", "continual")
    assert not (tmp_path / "o").exists()
    from plasticore.sim.chipboard import url_chip

    with pytest.raises(ValueError, match="core='nope'"):
        url_chip("sim://?core=nope")
