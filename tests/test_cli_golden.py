"""`plasticore golden run` writes the documented run format, equal to the in-process golden model."""

import numpy as np

from plasticore import golden, runs
from plasticore.app.cli import main
from plasticore.bundle import load_bundle
from plasticore.coding import encode_for


def test_golden_run_with_features(tmp_path, capsys):
    assert main(["bundle", "random", "--out", str(tmp_path / "b"), "--seed", "3", "--sizes", "12,9,4",
                 "--timesteps", "5", "--coding", "direct"]) == 0
    b = load_bundle(tmp_path / "b")
    rng = np.random.default_rng(0)
    feats = rng.integers(0, 256, (6, 12)).astype(np.uint8)
    labels = rng.integers(0, 4, 6)
    np.savez(tmp_path / "in.npz", features=feats, labels=labels)
    assert main(["golden", "run", "--bundle", str(tmp_path / "b"), "--inputs", str(tmp_path / "in.npz"),
                 "--out", str(tmp_path / "y.npz"), "--record-membranes"]) == 0
    y = dict(np.load(tmp_path / "y.npz"))
    assert str(y["format"]) == runs.RUN_FORMAT and int(y["n_layers"]) == 2
    assert y["layer0_spikes"].shape == (6, 5, 9) and y["layer1_spikes"].shape == (6, 5, 4)
    assert y["layer0_u_final"].shape == (6, 9) and y["layer0_h_final"].shape == (12, 9)
    assert y["layer1_u_trace"].shape == (6, 5, 4)
    assert np.array_equal(y["labels"], labels)
    ref = runs.result_to_npz_dict(golden.run(b, encode_for(b, feats), labels=labels), "golden")
    assert runs.compare_results(y, ref) is None
    assert "accuracy" in capsys.readouterr().out


def test_golden_run_with_per_step_inputs_and_count(tmp_path):
    main(["bundle", "random", "--out", str(tmp_path / "b"), "--seed", "4", "--sizes", "5,3",
          "--timesteps", "3", "--coding", "rate"])
    x = np.random.default_rng(1).integers(0, 2, (7, 3, 5))
    np.savez(tmp_path / "in.npz", x=x)
    assert main(["golden", "run", "--bundle", str(tmp_path / "b"), "--inputs", str(tmp_path / "in.npz"),
                 "--count", "4", "--out", str(tmp_path / "y.npz")]) == 0
    y = np.load(tmp_path / "y.npz")
    assert y["layer0_spikes"].shape == (4, 3, 3) and "labels" not in y.files


def test_compare_names_first_difference(tmp_path):
    main(["bundle", "random", "--out", str(tmp_path / "b"), "--seed", "5", "--sizes", "5,4", "--timesteps", "3"])
    b = load_bundle(tmp_path / "b")
    x = np.ones((2, 3, 5), np.int64)
    a = runs.result_to_npz_dict(golden.run(b, x), "golden")
    c = {k: np.array(v) for k, v in a.items()}
    c["layer0_spikes"][1, 2, 3] += 1
    msg = runs.compare_results(a, c)
    assert msg.startswith("layer 0 spikes: first difference at sample 1, step 2, neuron 3")


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    main(["bundle", "random", "--out", str(tmp_path / "b"), "--seed", "6", "--sizes", "5,4", "--timesteps", "3",
          "--coding", "direct"])
    np.savez(tmp_path / "bad.npz", features=np.full((2, 6), 3))
    assert main(["golden", "run", "--bundle", str(tmp_path / "b"), "--inputs", str(tmp_path / "bad.npz"),
                 "--out", str(tmp_path / "y.npz")]) == 2
    assert "features have shape (2, 6), expected (samples, 5)" in capsys.readouterr().err
    np.savez(tmp_path / "bad2.npz", features=np.full((2, 5), 300))
    assert main(["golden", "run", "--bundle", str(tmp_path / "b"), "--inputs", str(tmp_path / "bad2.npz"),
                 "--out", str(tmp_path / "y.npz")]) == 2
    assert "values in [300, 300], expected 0..255" in capsys.readouterr().err
    assert main(["golden", "run", "--bundle", str(tmp_path / "nope"), "--inputs", str(tmp_path / "bad.npz"),
                 "--out", str(tmp_path / "y.npz")]) == 2
    assert "bundle directory does not exist" in capsys.readouterr().err
    assert not (tmp_path / "y.npz").exists()
