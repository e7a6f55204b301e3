"""NIR against other tools: train small LIF networks in snnTorch and Norse, export them with *their* NIR
exporters, import here, and compare; export our runs and run them in *their* NIR importers.

``python -m plasticore.app.nir_bench --out out/nir`` measures everything ``docs/nir.md`` reports
(``--chip`` adds the Verilated chip, ``--board`` the simulated board).  Needs the ``nir`` extra
(snntorch, norse, nir; ``make setup`` installs them).

Input convention (both tools and the core): a sample's uint8 features f are fed as the constant current
x_t = f/256 at every step t (the core: direct coding with a flat ramp of 256).  Prediction: first argmax of
the output layer's membrane after the last step (before that step's reset: the core's rule).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from plasticore.datasets import load_dataset
from plasticore.training.nirconv import evaluate, import_graph

HIDDEN = 32
T = 8
#: output layers never fire (a leaky-integrator readout expressed as LIF, which every tool exports)
READOUT_THRESHOLD = 1000.0


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    xtr, ytr = load_dataset("digits", "train")
    xte, yte = load_dataset("digits", "test")
    return xtr, ytr, xte, yte


def _train(forward, params, xtr, ytr, epochs: int, lr: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(params, lr=lr)
    X = torch.as_tensor(xtr, dtype=torch.float32) / 256
    Y = torch.as_tensor(ytr)
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(forward(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


# ------------------------------------------------------------------------------------------
# snnTorch
# ------------------------------------------------------------------------------------------
def snntorch_net(beta: float = 0.9, n_in: int = 64, hidden: int = HIDDEN):
    import snntorch as snn

    # per-neuron beta/threshold tensors: with scalars snnTorch 1.0.0's exporter writes shape-() nodes that
    # fail NIR's type inference
    def full(n, v):
        return torch.full((n,), float(v))

    return torch.nn.Sequential(
        torch.nn.Linear(n_in, hidden),
        snn.Leaky(beta=full(hidden, beta), threshold=full(hidden, 1.0), reset_mechanism="zero", init_hidden=True),
        torch.nn.Linear(hidden, 10),
        snn.Leaky(beta=full(10, beta), threshold=full(10, READOUT_THRESHOLD), reset_mechanism="zero",
                  init_hidden=True, output=True),
    )


def snntorch_forward(net, x: torch.Tensor, steps: int = T) -> torch.Tensor:
    """Final output membrane (S, 10) for constant input x (S, 64), snnTorch's own simulation."""
    from snntorch import utils

    utils.reset(net)
    mem = None
    for _ in range(steps):
        _, mem = net(x)
    return mem


def _train_tool(make_net, forward, epochs, seed, xtr, ytr, hidden, lr):
    """Build a tool's net for (xtr, ytr) (default: digits' train split) and train it on its readout membrane."""
    torch.manual_seed(seed)
    if xtr is None:
        xtr, ytr, _, _ = digits()
    net = make_net(n_in=xtr.shape[1], hidden=hidden)
    _train(lambda x: forward(net, x) * 4, net.parameters(), xtr, ytr, epochs, lr, seed)
    return net


def train_snntorch(epochs: int = 25, seed: int = 0, xtr=None, ytr=None, hidden: int = HIDDEN, lr: float = 5e-3):
    """An snnTorch net trained on (xtr, ytr) uint8 features (default: digits' train split)."""
    return _train_tool(snntorch_net, snntorch_forward, epochs, seed, xtr, ytr, hidden, lr)


def snntorch_export(net, path: Path) -> None:
    import nir
    from snntorch.export_nir import export_to_nir

    n_in = net[0].in_features
    nir.write(path, export_to_nir(net, torch.zeros(1, n_in), ignore_dims=[0]))


# ------------------------------------------------------------------------------------------
# Norse
# ------------------------------------------------------------------------------------------
NORSE_DT = 1e-3


def norse_net(tau_mem_inv: float = 100.0, n_in: int = 64, hidden: int = HIDDEN):
    import norse.torch as nt

    def params(n, v_th):  # per-neuron tensors: Norse 1.1.0 exports scalars as shape () that nir.write rejects
        return nt.LIFBoxParameters(tau_mem_inv=torch.full((n,), tau_mem_inv), v_leak=torch.zeros(n),
                                   v_th=torch.full((n,), v_th))

    p, po = params(hidden, 1.0), params(10, READOUT_THRESHOLD)
    return nt.SequentialState(torch.nn.Linear(n_in, hidden), nt.LIFBoxCell(p, dt=NORSE_DT),
                              torch.nn.Linear(hidden, 10), nt.LIFBoxCell(po, dt=NORSE_DT))


def norse_forward(net, x: torch.Tensor, steps: int = T) -> torch.Tensor:
    state = None
    for _ in range(steps):
        _, state = net(x, state)
    return state[-1].v


def train_norse(epochs: int = 25, seed: int = 0, xtr=None, ytr=None, hidden: int = HIDDEN, lr: float = 5e-3):
    """A Norse net trained on (xtr, ytr) uint8 features (default: digits' train split)."""
    return _train_tool(norse_net, norse_forward, epochs, seed, xtr, ytr, hidden, lr)


def norse_export(net, path: Path) -> None:
    """Norse 1.1.0's ``to_nir`` writes tau = dt / tau_mem_inv (norse/norse#411); with ``dt=1`` it writes the
    time constant 1/tau_mem_inv in seconds, which is NIR's meaning.  Import with ``--dt 1e-3``."""
    import nir
    from norse.torch.utils.export_nir import to_nir

    nir.write(path, to_nir(net, torch.zeros(net[0].in_features), dt=1.0))  # unbatched sample: Input of shape (64,)


# ------------------------------------------------------------------------------------------
# their NIR importers running a graph (round trip)
# ------------------------------------------------------------------------------------------
def run_in_snntorch(graph, x: np.ndarray) -> np.ndarray:
    """Predictions of snnTorch's ``import_from_nir`` module for real per-step inputs x (S, T, A)."""
    import snntorch as snn
    from snntorch import utils
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(graph)
    leaky = [m for m in net.modules() if isinstance(m, snn.Leaky)]
    utils.reset(net)
    xt = torch.as_tensor(x, dtype=torch.float32)
    steps = xt.shape[1]
    with torch.no_grad():
        for t in range(steps):
            if t == steps - 1:  # read the membrane before the last step's reset (the core's prediction rule)
                leaky[-1].threshold = torch.tensor(math.inf)
            net(xt[:, t])
    return np.argmax(leaky[-1].mem.numpy(), axis=-1)


def run_in_norse(graph, x: np.ndarray, dt: float) -> np.ndarray:
    """Predictions of Norse's ``from_nir`` module for x (S, T, A) (``dt`` = the graph's declared dt)."""
    import norse.torch as nt

    net = nt.from_nir(graph, dt=dt)
    cells = [m for m in net.modules() if isinstance(m, nt.LIFBoxCell | nt.IAFCell)]
    last = cells[-1]
    xt = torch.as_tensor(x, dtype=torch.float32)
    captured = {}
    last.register_forward_hook(lambda m, i, o: captured.__setitem__("v", o[1].v))
    state = None
    steps = xt.shape[1]
    with torch.no_grad():
        for t in range(steps):
            if t == steps - 1:
                last.p = last.p._replace(v_th=torch.full_like(torch.as_tensor(last.p.v_th), math.inf))
            _, state = net(xt[:, t], state)
    return np.argmax(captured["v"].numpy(), axis=-1)


# ------------------------------------------------------------------------------------------
# the measurement
# ------------------------------------------------------------------------------------------
def measure_import(tool: str, net, path: Path, chip: bool = False, board: bool = False, epochs: int = 25) -> dict:
    from plasticore import golden

    xtr, _, xte, yte = digits()
    X = torch.as_tensor(xte, dtype=torch.float32) / 256
    with torch.no_grad():
        src = (snntorch_forward(net, X) if tool == "snntorch" else norse_forward(net, X)).numpy()
    src_pred = np.argmax(src, axis=-1)
    import nir

    graph = nir.read(path)
    dt = 1e-4 if tool == "snntorch" else NORSE_DT
    rep = import_graph(graph, timesteps=T, dt=dt, calib=xtr[:512], name=f"{tool}-digits")
    evaluate(rep, xte, yte)
    b = rep.bundle
    from plasticore.coding import encode_for

    x_int = encode_for(b, xte)
    g = golden.run(b, x_int, labels=yte)
    row = {"tool": tool, "source_accuracy": float(np.mean(src_pred == yte)),
           "nir_float_accuracy": rep.float_accuracy, "float_source_agreement": None,
           "golden_accuracy": float(np.mean(g.predictions == yte)),
           "golden_source_agreement": float(np.mean(g.predictions == src_pred)), "n_test": len(yte)}
    from plasticore.training.nirconv import simulate_real

    vf, _ = simulate_real(rep.real, x_int * 2.0 ** -b.layers[0].x_frac)
    row["float_source_agreement"] = float(np.mean(np.argmax(vf, -1) == src_pred))
    if chip:
        row["chip_equals_golden"] = run_on_chip(b, x_int, g)
    if board:
        row["board_equals_golden"] = run_on_board(b, x_int[:50], golden.run(b, x_int[:50]))
    row["bundle"] = b
    return row


def run_on_chip(b, x_int, g) -> bool:
    """Run on the Verilated chip (2×2 cores of 64 axons × 32 neurons) and compare with golden."""
    from plasticore import runs
    from plasticore.host.device import Device
    from plasticore.sim.chipsim import ChipConfig, ChipSimBus

    cfg = ChipConfig(2, 2, 64, 32, 8)
    with ChipSimBus(cfg) as bus:
        d = Device(bus, cfg.geometry())
        d.identify()
        d.deploy(b)
        r = d.run(x_int)
    return runs.compare_results(runs.result_to_npz_dict(r, "rtl"), runs.result_to_npz_dict(g, "golden")) is None


def run_on_board(b, x_int, g) -> bool:
    """Run over serial on the simulated board (the chip board top, 2×2 cores of 64 × 32)."""
    from plasticore import runs
    from plasticore.host import connect
    from plasticore.sim.chipboard import board_design_id, chip_board_top
    from plasticore.sim.simboard import SimBoard

    kw = {"mesh_x": 2, "mesh_y": 2, "a_max": 64, "n_max": 32, "lanes": 8}
    with SimBoard.start(chip_board_top, clocks_per_bit=8, **kw) as brd, \
            connect(brd.port, expected_design_id=board_design_id(8, **kw)) as dev:
        dev.deploy(b)
        r = dev.run(x_int)
    return runs.compare_results(runs.result_to_npz_dict(r, "board"), runs.result_to_npz_dict(g, "golden")) is None


def measure_export(bundle, tmp: Path, dt: float = 1e-4, xte=None, yte=None) -> dict:
    """Export a bundle as NIR and run it in snnTorch's and Norse's importers on (xte, yte) (default: the
    digits test split)."""
    import nir

    from plasticore import golden
    from plasticore.bundle import save_bundle
    from plasticore.coding import encode_for
    from plasticore.training.nirconv import export_run

    if xte is None:
        _, _, xte, yte = digits()
    save_bundle(bundle, tmp / "bundle")
    export_run(tmp, tmp / "graph.nir", dt=dt)
    graph = nir.read(tmp / "graph.nir")
    x_int = encode_for(bundle, xte)
    g = golden.run(bundle, x_int, labels=yte)
    x = x_int * 2.0 ** -bundle.layers[0].x_frac  # the real input the graph takes: x/256 (graded) or spikes
    ps = run_in_snntorch(graph, x)
    pn = run_in_norse(graph, x, dt=dt)
    return {"golden_accuracy": float(np.mean(g.predictions == yte)),
            "snntorch_accuracy": float(np.mean(ps == yte)), "norse_accuracy": float(np.mean(pn == yte)),
            "snntorch_golden_agreement": float(np.mean(ps == g.predictions)),
            "norse_golden_agreement": float(np.mean(pn == g.predictions))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plasticore.app.nir_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/nir"))
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chip", action="store_true", help="also run the imported bundles on the Verilated chip")
    ap.add_argument("--board", action="store_true", help="also run 50 samples on the simulated board")
    ap.add_argument("--tools", default="snntorch,norse", help="tools to train in and import from ('' for none)")
    ap.add_argument("--run", type=Path, action="append", default=[],
                    help="a `plasticore train` run directory to export and run in both tools (repeatable)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    a.out.mkdir(parents=True, exist_ok=True)
    rows, trips = [], []
    tools = [t for t in a.tools.split(",") if t]
    if set(tools) - {"snntorch", "norse"}:
        ap.error(f"--tools {a.tools!r}: only snntorch and norse")
    for tool in tools:
        t0 = time.perf_counter()
        net = train_snntorch(a.epochs, a.seed) if tool == "snntorch" else train_norse(a.epochs, a.seed)
        path = a.out / f"{tool}.nir"
        (snntorch_export if tool == "snntorch" else norse_export)(net, path)
        row = measure_import(tool, net, path, chip=a.chip, board=a.board)
        b = row.pop("bundle")
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        trip = measure_export(b, a.out / f"{tool}-roundtrip")
        trip["tool"] = tool
        trips.append(trip)
        print(json.dumps(row), flush=True)
        print(json.dumps(trip), flush=True)
    from plasticore.bundle import load_bundle

    for run in a.run:
        trip = measure_export(load_bundle(run / "bundle"), a.out / f"run-{run.name}")
        trip["tool"] = f"run {run}"
        trips.append(trip)
        print(json.dumps(trip), flush=True)
    (a.out / "results.json").write_text(json.dumps({"import": rows, "roundtrip": trips}, indent=1) + "\n")
    print(f"wrote {a.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
