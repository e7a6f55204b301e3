"""Bundle round trip and validation errors that name the bad field."""

import json
import shutil

import numpy as np
import pytest

from plasticore import contract as C
from plasticore.bundle import RATE_RNG_SINCE, BundleError, load_bundle, save_bundle
from plasticore.coding import encode_for
from plasticore.sim.random_bundle import random_bundle


@pytest.fixture
def bundle_dir(tmp_path):
    b = random_bundle(np.random.default_rng(0), sizes=[7, 5, 3], timesteps=4, coding="direct")
    return save_bundle(b, tmp_path / "b"), b


def test_round_trip_is_exact(bundle_dir):
    path, b = bundle_dir
    b2 = load_bundle(path)
    assert len(b2.layers) == len(b.layers) and b2.timesteps == b.timesteps
    for L, L2 in zip(b.layers, b2.layers, strict=True):
        for k in ("W", "b", "H0", "hmask", "beta", "eta", "lut"):
            assert np.array_equal(getattr(L, k), getattr(L2, k)), k
        for k in ("theta", "lam", "decay", "alpha", "soma", "reset", "h_persist", "plastic", "post_fn"):
            assert getattr(L, k) == getattr(L2, k), k


def _edit_json(path, fn):
    d = json.loads((path / "bundle.json").read_text())
    fn(d)
    (path / "bundle.json").write_text(json.dumps(d))


def _edit_tensor(path, key, value):
    npz = dict(np.load(path / "tensors.npz"))
    if value is None:
        del npz[key]
    else:
        npz[key] = value
    np.savez(path / "tensors.npz", **npz)


@pytest.mark.parametrize("edit,needle", [
    (lambda d: d.update(version=99), "'version' = 99"),
    (lambda d: d.update(format="other"), "'format'"),
    (lambda d: d["layers"][0].update(theta=0), "layers[0].theta = 0"),
    (lambda d: d["layers"][1].update(lam=300), "layers[1].lam = 300"),
    (lambda d: d["layers"][0].update(soma="quantum"), "layers[0].soma = 'quantum'"),
    (lambda d: d["layers"][0].pop("decay"), "missing field 'decay'"),
    (lambda d: d["layers"][0].update(hebb_sign=0), "hebb_sign = 0"),
    (lambda d: d["layers"][0].update(alpha="1"), "'alpha'"),
    (lambda d: d.update(timesteps=0), "'timesteps' = 0"),
    (lambda d: d["coding"].update(ramp=[1, 2]), "'coding.ramp' has 2 entries"),
    (lambda d: d["coding"].update(rng="mt19937"), "'coding.rng' = 'mt19937'"),
    (lambda d: d["layers"][1].update(input_kind="graded"), "layers[1].input_kind"),
])
def test_json_errors_name_the_field(bundle_dir, edit, needle):
    path, _ = bundle_dir
    _edit_json(path, edit)
    with pytest.raises(BundleError, match=None) as e:
        load_bundle(path)
    assert needle in str(e.value), str(e.value)


@pytest.mark.parametrize("key,value,needle", [
    ("L0.W", np.zeros((7, 4), np.int8), "L0.W has shape (7, 4)"),
    ("L1.b", np.zeros(3, np.float32), "L1.b has dtype float32"),
    ("L0.hmask", np.full((7, 5), 2, np.uint8), "L0.hmask has values in [2, 2]"),
    ("L0.lut", np.zeros(100, np.int16), "L0.lut has shape (100,)"),
    ("L1.eta", None, "missing array 'L1.eta'"),
    ("L1.W", np.zeros((4, 3), np.int8), "L1.W has shape (4, 3), expected (5, 3)"),
])
def test_tensor_errors_name_the_field(bundle_dir, key, value, needle):
    path, _ = bundle_dir
    if key == "L1.W":  # a consistent-but-wrong-width layer: fix the other tensors too
        npz = dict(np.load(path / "tensors.npz"))
        for k in ("W", "H0", "hmask"):
            npz[f"L1.{k}"] = np.zeros((4, 3), npz[f"L1.{k}"].dtype)
        npz["L1.beta"] = np.zeros(4, np.int16)
        np.savez(path / "tensors.npz", **npz)
    else:
        _edit_tensor(path, key, value)
    with pytest.raises(BundleError) as e:
        load_bundle(path)
    assert needle in str(e.value), str(e.value)


def test_missing_and_corrupt_files(tmp_path, bundle_dir):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    path, _ = bundle_dir
    (path / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(path)
    shutil.rmtree(path)
    path.mkdir()
    with pytest.raises(BundleError, match="bundle.json: missing"):
        load_bundle(path)


def test_save_invalid_bundle_leaves_nothing(tmp_path):
    b = random_bundle(np.random.default_rng(1), sizes=[4, 3], timesteps=2)
    b.layers[0].W = np.full((4, 3), 1000)  # out of int8 range
    with pytest.raises(BundleError, match="L0.W has values"):
        save_bundle(b, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_random_bundles_are_valid_and_cover_options():
    rng = np.random.default_rng(5)
    seen = set()
    for _ in range(60):
        b = random_bundle(rng)
        for L in b.layers:
            seen.add((L.soma, L.reset, L.h_persist, L.hebb_sign))
            assert C.RANGES["theta"].check(L.theta)
    somas = {s[0] for s in seen}
    assert somas == {C.SomaMode.LIF, C.SomaMode.ANN}
    assert {s[2] for s in seen} == {C.HPersist.NEVER, C.HPersist.SAMPLE}


def _xorshift_reference(f, seed, T, n):
    """Rate coding's xorshift32 for one sample, written out plainly (the contract, docs/bundle.md)."""
    w = ((seed ^ seed >> 32) + (n + 1) * 0x9E3779B9) % 2**32
    s, x = w | 1, np.zeros((T, len(f)), np.int64)
    for t in range(T):
        for i, v in enumerate(f):
            s ^= s << 13 & 0xFFFFFFFF
            s ^= s >> 17
            s ^= s << 5 & 0xFFFFFFFF
            x[t, i] = (s >> 24) < v
    return x


def test_rate_coding_generators(tmp_path):
    """``xorshift32`` (what the chip's engine draws) equals its plain definition, per sample index, with
    spike rates f/256; a rate-coded bundle written before version 4 (no ``coding.rng``) loads as ``pcg64``
    and codes exactly as it did: thresholds from PCG64([seed, sample index])."""
    rng = np.random.default_rng(9)
    b = random_bundle(rng, sizes=[12, 4], timesteps=5, coding="rate")
    b.coding.seed = 0xDEADBEEF_12345678
    f = rng.integers(0, 256, (6, 12))
    x = encode_for(b, f, sample_offset=3)
    for s in range(6):
        assert np.array_equal(x[s], _xorshift_reference([int(v) for v in f[s]], b.coding.seed, 5, 3 + s)), s
    big = encode_for(b, np.full((400, 12), 64))
    assert abs(big.mean() - 0.25) < 0.01
    path = save_bundle(b, tmp_path / "b")
    assert load_bundle(path).coding.rng == "xorshift32"
    d = json.loads((path / "bundle.json").read_text())
    d["version"] = RATE_RNG_SINCE - 1
    del d["coding"]["rng"]
    (path / "bundle.json").write_text(json.dumps(d))
    old = load_bundle(path)
    assert old.coding.rng == "pcg64"
    want = np.stack([(np.random.Generator(np.random.PCG64([b.coding.seed, s])).integers(0, 256, (5, 12))
                      < f[s]).astype(np.int64) for s in range(6)])
    assert np.array_equal(encode_for(old, f), want)
