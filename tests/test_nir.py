"""NIR import/export against snnTorch and Norse (their exporters and importers, not ours).

Always-on: small nets trained for a few seconds on digits; the full measurement (docs/nir.md) is
``python -m plasticore.app.nir_bench`` and the slow test at the end.
"""

from __future__ import annotations

import logging

import nir  # the `nir` extra and Norse: `make setup` installs them (docs/nir.md)
import numpy as np
import pytest
import torch

from plasticore import contract as C
from plasticore import golden, runs
from plasticore.app import nir_bench as nb
from plasticore.app.cli import main
from plasticore.bundle import load_bundle, save_bundle
from plasticore.coding import encode_for
from plasticore.training.nirconv import (
    NirError,
    evaluate,
    graph_to_real,
    import_graph,
    simulate_real,
)

N_TEST = 200


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    xtr, ytr, xte, yte = nb.digits()
    return xtr, ytr, xte[:N_TEST], yte[:N_TEST]


def _source_pred(tool, net, x):
    X = torch.as_tensor(x, dtype=torch.float32) / 256
    with torch.no_grad():
        v = nb.snntorch_forward(net, X) if tool == "snntorch" else nb.norse_forward(net, X)
    return np.argmax(v.numpy(), axis=-1)


@pytest.fixture(scope="module", params=["snntorch", "norse"])
def imported(request, data, tmp_path_factory):
    """(tool, their net, bundle, report) for a net trained in ``tool`` and exported by ``tool``."""
    xtr, ytr, xte, yte = data
    tool = request.param
    if tool == "snntorch":
        net = nb.train_snntorch(epochs=3, xtr=xtr, ytr=ytr)
    else:
        net = nb.train_norse(epochs=2, xtr=xtr, ytr=ytr, lr=2e-2)
    path = tmp_path_factory.mktemp(tool) / f"{tool}.nir"
    (nb.snntorch_export if tool == "snntorch" else nb.norse_export)(net, path)
    rep = import_graph(nir.read(path), timesteps=nb.T, dt=1e-4 if tool == "snntorch" else nb.NORSE_DT,
                       calib=xtr[:256])
    evaluate(rep, xte, yte)
    return tool, net, path, rep


def test_their_export_imports_and_agrees(imported, data):
    tool, net, _, rep = imported
    _, _, xte, yte = data
    src = _source_pred(tool, net, xte)
    assert np.mean(src == yte) > 0.6, "the source net did not learn: the comparison would say nothing"
    x_int = encode_for(rep.bundle, xte)
    vf, _ = simulate_real(rep.real, x_int / 256.0)
    # our reading of their graph reproduces their own simulation
    assert np.mean(np.argmax(vf, -1) == src) >= 0.995
    g = golden.run(rep.bundle, x_int, labels=yte)
    agree = np.mean(g.predictions == src)
    assert agree >= 0.97, f"{tool}: golden vs {tool} agreement {agree:.3f}"
    assert np.mean(g.predictions == yte) >= np.mean(src == yte) - 0.01 - 1e-9
    L0 = rep.bundle.layers[0]
    assert L0.reset == C.ResetMode.HARD and L0.lam == 230  # λ = 1 − dt/τ = 0.9 → 230/256
    assert rep.bundle.layers[-1].theta == C.smax(C.THETA_BITS)  # the readout's θ = 1000 is beyond u's range


def test_round_trip_runs_in_their_importers(imported, data, tmp_path):
    tool, _, _, rep = imported
    _, _, xte, yte = data
    logging.disable(logging.WARNING)  # Norse warns about r != 1 only when it differs; keep the log quiet
    try:
        res = nb.measure_export(rep.bundle, tmp_path, xte=xte, yte=yte)
    finally:
        logging.disable(logging.NOTSET)
    for other in ("snntorch", "norse"):
        assert res[f"{other}_golden_agreement"] >= 0.97, res
        assert abs(res[f"{other}_accuracy"] - res["golden_accuracy"]) <= 0.01 + 1e-9, res


def test_imported_bundle_bit_exact_on_the_verilated_chip(data, tmp_path):
    """A 32-input snnTorch net (digits' horizontal pixel pairs averaged) on the test-suite chip (2×2 cores
    of 32 axons × 16 neurons): chip == golden for every spike and final membrane."""
    from plasticore.host.device import Device
    from plasticore.sim.chipsim import ChipConfig, ChipSimBus

    xtr, ytr, xte, _ = data

    def half(x):
        return ((x[:, 0::2].astype(np.int64) + x[:, 1::2]) // 2).astype(np.uint8)

    net = nb.train_snntorch(epochs=2, xtr=half(xtr), ytr=ytr, hidden=16)
    nb.snntorch_export(net, tmp_path / "g.nir")
    rep = import_graph(nir.read(tmp_path / "g.nir"), timesteps=nb.T, calib=half(xtr[:128]))
    x = encode_for(rep.bundle, half(xte[:12]))
    cfg = ChipConfig(2, 2, 32, 16, 4)
    with ChipSimBus(cfg) as bus:
        dev = Device(bus, cfg.geometry())
        dev.identify()
        dev.deploy(rep.bundle)
        r = dev.run(x)
    g = golden.run(rep.bundle, x)
    msg = runs.compare_results(runs.result_to_npz_dict(r, "rtl"), runs.result_to_npz_dict(g, "golden"))
    assert msg is None, msg


# ------------------------------------------------------------------------------------------
# semantics of single nodes, errors, CLI
# ------------------------------------------------------------------------------------------
def _graph(*nodes):
    return nir.NIRGraph.from_list(*nodes)


def _lif(n, **kw):
    p = {"tau": np.full(n, 1e-3), "r": np.full(n, 10.0), "v_leak": np.zeros(n), "v_threshold": np.ones(n),
         "v_reset": np.zeros(n)}
    p.update(kw)
    return nir.LIF(**p)


def _inp(n):
    return nir.Input(input_type={"input": np.array([n])})


def _out(n):
    return nir.Output(output_type={"output": np.array([n])})


def test_mapping_of_lif_if_cubalif_scale_and_leak():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 4))
    b = rng.normal(size=3)
    dt = 1e-4
    g = _graph(nir.Input(input_type={"input": np.array([2, 2])}),
               nir.Flatten(input_type={"input": np.array([2, 2])}, start_dim=0), nir.Scale(scale=np.full(4, 2.0)),
               nir.Affine(weight=W, bias=b), _lif(3, v_leak=np.full(3, 0.5)), _out(3))
    (L,) = graph_to_real(g, dt=dt).layers
    assert L.lam == pytest.approx(0.9)  # 1 − dt/τ
    assert np.allclose(L.W, 2.0 * W.T * (dt * 10 / 1e-3))  # Scale folded, gain dt·r/τ = 1
    assert np.allclose(L.b, b + 0.5 * dt / 1e-3)  # v_leak enters as the constant current dt·v_leak/τ
    g = _graph(_inp(4), nir.Linear(weight=W), nir.IF(r=np.full(3, 2.0), v_threshold=np.ones(3)), _out(3))
    (L,) = graph_to_real(g, dt=dt).layers
    assert L.lam == 1.0 and np.allclose(L.W, W.T * 2 * dt)
    cuba = nir.CubaLIF(tau_syn=np.full(3, dt), tau_mem=np.full(3, 1e-3), r=np.full(3, 10.0), v_leak=np.zeros(3),
                       v_threshold=np.ones(3), w_in=np.full(3, 3.0))
    (L,) = graph_to_real(_graph(_inp(4), nir.Linear(weight=W), cuba, _out(3)), dt=dt).layers
    assert np.allclose(L.W, W.T * 3.0)


@pytest.mark.parametrize("bad, match", [
    (lambda: nir.Threshold(threshold=np.ones(3)), r"node '.*' \(Threshold\): unsupported node type"),
    (lambda: _lif(3, v_reset=np.array([-0.5, 0.0, -0.5])), r"v_reset differs across neurons"),
    (lambda: _lif(3, tau=np.array([1e-3, 2e-3, 1e-3])), r"tau differs across neurons"),
    (lambda: _lif(3, tau=np.full(3, 1e-5)), r"tau = 1e-05 s < dt"),
    (lambda: nir.CubaLIF(tau_syn=np.full(3, 5e-3), tau_mem=np.full(3, 1e-3), r=np.ones(3), v_leak=np.zeros(3),
                         v_threshold=np.ones(3)), r"tau_syn = 0.005 s ≠ dt .* synaptic current state"),
])
def test_unsupported_nodes_and_params_are_named(bad, match):
    g = _graph(_inp(4), nir.Linear(weight=np.ones((3, 4))), bad(), _out(3))
    with pytest.raises(NirError, match=match):
        graph_to_real(g)


@pytest.mark.parametrize("v_reset", [-0.4, 0.3])
def test_v_reset_imports_as_u_reset_and_exports_back(v_reset):
    """A LIF with v_reset != 0 imports with u_reset = v_reset in membrane units: the golden model follows the
    graph's own simulation (spikes of the hidden layer, predictions), better than resetting to 0 would; the
    export writes v_reset back (same ratio to the threshold)."""
    import copy

    from plasticore.training.nirconv import bundle_to_graph

    rng = np.random.default_rng(1)
    A, H, O = 16, 12, 4
    g = _graph(_inp(A), nir.Affine(weight=rng.normal(0, 1.0, (H, A)), bias=rng.normal(0, 0.1, H)),
               _lif(H, v_reset=np.full(H, v_reset)), nir.Affine(weight=rng.normal(0, 1, (O, H)), bias=np.zeros(O)),
               nir.LI(tau=np.full(O, 1e-3), r=np.full(O, 10.0), v_leak=np.zeros(O)), _out(O))
    x = rng.integers(0, 256, (300, A)).astype(np.uint8)
    rep = import_graph(g, timesteps=12, dt=1e-4, calib=x[:100])
    L0 = rep.bundle.layers[0]
    assert L0.reset == C.ResetMode.HARD and L0.u_reset / L0.theta == pytest.approx(v_reset, abs=1e-3)
    xi = encode_for(rep.bundle, x[100:])
    vf, spikes = simulate_real(rep.real, xi / 256.0)
    gr = golden.run(rep.bundle, xi)
    zero = copy.deepcopy(rep.bundle)
    zero.layers[0].u_reset = 0
    g0 = golden.run(zero, xi)
    agree, agree0 = np.mean(gr.spikes[0] == spikes[0]), np.mean(g0.spikes[0] == spikes[0])
    assert agree >= 0.98 and agree > agree0 + 0.02, (agree, agree0)
    assert np.mean(gr.predictions == np.argmax(vf, -1)) >= 0.97
    back = graph_to_real(bundle_to_graph(rep.bundle), dt=1e-4).layers[0]
    assert back.v_reset / back.theta == pytest.approx(v_reset, abs=1e-3)


def test_structure_errors():
    with pytest.raises(NirError, match="no Affine/Linear before it"):
        graph_to_real(_graph(_inp(3), _lif(3), _out(3)))
    with pytest.raises(NirError, match="ends with an Affine"):
        graph_to_real(_graph(_inp(4), nir.Linear(weight=np.ones((3, 4))), _lif(3),
                             nir.Linear(weight=np.ones((2, 3))), _out(2)))
    g = _graph(_inp(4), nir.Linear(weight=np.ones((3, 4))), _lif(3), _out(3))
    g.edges.append(("output", "input"))
    with pytest.raises(NirError, match="recurrent"):
        graph_to_real(g)
    g = _graph(_inp(3), nir.Linear(weight=np.ones((3, 3))), _lif(3), _out(3))
    lin = next(k for k, n in g.nodes.items() if isinstance(n, nir.Linear))
    lif = next(k for k, n in g.nodes.items() if isinstance(n, nir.LIF))
    g.edges.append((lif, lin))
    with pytest.raises(NirError, match=rf"node '{lin}' \(Linear\): 2 incoming edges \(recurrent"):
        graph_to_real(g)


def test_cli_import_errors_exit_2(tmp_path, capsys):
    g = _graph(_inp(4), nir.Linear(weight=np.ones((3, 4))), nir.Threshold(threshold=np.ones(3)), _out(3))
    nir.write(tmp_path / "bad.nir", g)
    assert main(["import-nir", str(tmp_path / "bad.nir"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "(Threshold): unsupported node type" in err
    assert not (tmp_path / "b").exists()
    assert main(["import-nir", str(tmp_path / "missing.nir"), "--out", str(tmp_path / "b")]) == 2
    assert "no such file" in capsys.readouterr().err
    nir.write(tmp_path / "ten.nir", _graph(_inp(10), nir.Linear(weight=np.ones((3, 10))), _lif(3), _out(3)))
    assert main(["import-nir", str(tmp_path / "ten.nir"), "--out", str(tmp_path / "b"), "--calib", "digits"]) == 2
    assert "the dataset has 64 features, the graph's Input takes 10" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    (tmp_path / "junk.nir").write_text("not hdf5")
    assert main(["import-nir", str(tmp_path / "junk.nir"), "--out", str(tmp_path / "b")]) == 2
    assert "not a readable NIR graph" in capsys.readouterr().err


def test_cli_import_with_calibration_reports_accuracy(tmp_path, capsys):
    """A hand-made 64-20-10 graph with an LI readout: imported with --calib digits."""
    rng = np.random.default_rng(3)
    g = _graph(_inp(64), nir.Affine(weight=rng.normal(0, 0.3, (20, 64)), bias=np.zeros(20)), _lif(20),
               nir.Linear(weight=rng.normal(0, 0.3, (10, 20))),
               nir.LI(tau=np.full(10, 1e-3), r=np.full(10, 10.0), v_leak=np.zeros(10)), _out(10))
    nir.write(tmp_path / "g.nir", g)
    rc = main(["import-nir", str(tmp_path / "g.nir"), "--out", str(tmp_path / "b"), "--calib", "digits",
               "--calib-count", "64", "--timesteps", "6"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "float (NIR semantics)" in out and "prediction agreement" in out
    b = load_bundle(tmp_path / "b")
    assert b.timesteps == 6 and b.layers[-1].theta == C.smax(C.THETA_BITS)
    assert b.meta["source"] == "nir" and 0 <= b.meta["prediction_agreement"] <= 1


def test_cli_export_carries_the_plastic_extension(tmp_path, capsys):
    """A random plastic bundle exported: loads in nir.read, the extension holds H0 and the rule, and the
    standard part equals the bundle's real-valued global weights."""
    from plasticore.sim.random_bundle import random_bundle

    b = random_bundle(np.random.default_rng(2), sizes=[12, 8, 4], timesteps=4, coding="direct", allow_ann=False)
    for L in b.layers:
        L.plastic = True
    save_bundle(b, tmp_path / "run" / "bundle")
    rc = main(["export-nir", str(tmp_path / "run"), "--out", str(tmp_path / "g.nir")])
    out = capsys.readouterr().out
    assert rc == 0 and "plastic part" in out
    g = nir.read(tmp_path / "g.nir")
    assert g.metadata["plasticore"]["timesteps"] == 4
    neurons = [n for n in g.nodes.values() if isinstance(n, nir.LIF | nir.IF)]
    assert len(neurons) == 2
    for L, n in zip(b.layers, neurons, strict=True):
        ext = n.metadata["plasticore"]
        assert np.array_equal(ext["H0"], L.H0) and np.array_equal(ext["beta"], L.beta)
        assert int(ext["alpha"]) == L.alpha and ext["post_fn"] == L.post_fn and int(ext["lam"]) == L.lam
    assert main(["export-nir", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.nir")]) == 2
    assert "no bundle" in capsys.readouterr().err


@pytest.mark.slow
def test_full_measurement(tmp_path):
    """The docs/nir.md table: 25 epochs, the whole digits test split, both tools, round trips."""
    rc = nb.main(["--out", str(tmp_path), "--epochs", "25"])
    assert rc == 0
    import json

    res = json.loads((tmp_path / "results.json").read_text())
    for row in res["import"]:
        assert row["golden_source_agreement"] >= 0.97, row
        assert row["golden_accuracy"] >= row["source_accuracy"] - 0.01 - 1e-9, row
    for trip in res["roundtrip"]:
        for other in ("snntorch", "norse"):
            assert abs(trip[f"{other}_accuracy"] - trip["golden_accuracy"]) <= 0.01 + 1e-9, trip


def test_import_without_calibration_uses_a_safe_membrane_range(data):
    """No --calib: max |W| and the worst-case membrane bound; the integer net still follows the float one."""
    _, _, xte, yte = data
    rng = np.random.default_rng(4)
    g = _graph(_inp(64), nir.Affine(weight=rng.normal(0, 0.3, (20, 64)), bias=np.zeros(20)), _lif(20),
               nir.Linear(weight=rng.normal(0, 0.3, (10, 20))), _lif(10, v_threshold=np.full(10, 50.0)), _out(10))
    rep = evaluate(import_graph(g, timesteps=6), xte, yte)
    assert all(c["clip_q"] == 1.0 for c in rep.choices)
    x = encode_for(rep.bundle, xte)
    r = golden.run(rep.bundle, x, record_membranes=True)
    assert max(np.abs(u).max() for u in r.u_trace) < C.smax(C.U_BITS) // 2  # never near saturation
    assert rep.agreement >= 0.95, rep.summary()
