"""`make demo`: the main job end to end on the simulated board.

1. data      the bundled scikit-learn digits (offline), quantised to uint8;
2. train     a 64-128-10 hybrid (HP) SNN: BPTT on W, meta-learned local plasticity (alpha, beta, eta),
             quantisation-aware;
3. export    the integer bundle (on-chip semantics: H keeps learning from sample to sample);
4. deploy    over a real serial port (a pty) to the simulated board: the chip RTL + UART link in
             Verilator, exactly as to a USB-serial FPGA board;
             The first samples run with full records (every layer's spikes and membranes), the rest
             stream through the chip's sample engine (uint8 features in, compact records out);
5. report    accuracy (float, integer golden, board), throughput, bytes on the wire, and bit-exact
             agreement of the board with the golden model (spikes, membranes, final plastic weights).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

#: what the demo writes into ``--out`` (a directory holding only these may be replaced with ``--force``)
DEMO_OUTPUTS = frozenset({"train", "board.npz", "board_stream.npz", "golden.npz", "report.json"})
#: samples the demo runs with full records before it streams the rest
FULL_SAMPLES = 10


def _is_demo_out(path: Path) -> bool:
    names = {p.name for p in path.iterdir()}
    return "report.json" in names and names <= DEMO_OUTPUTS


def main(args) -> int:
    """Check ``--out`` first, run the demo into a temporary directory next to it, rename it into place."""
    import shutil

    from plasticore.outputs import check_output_dir, replace_dir, temp_dir_for

    out = check_output_dir(args.out, "--out", force=args.force, same_kind=_is_demo_out,
                           kind="demo output (report.json)")
    tmp = temp_dir_for(out, ".demo-")
    try:
        rc = _demo(tmp, out, args)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return rc


def _demo(out: Path, final: Path, args) -> int:
    from tqdm import tqdm

    from plasticore import golden, runs
    from plasticore.bundle import load_bundle
    from plasticore.coding import encode_for
    from plasticore.datasets import load_dataset
    from plasticore.host import connect
    from plasticore.sim.chipboard import DEFAULT_CHIP, board_design_id, chip_board_top
    from plasticore.sim.simboard import SimBoard
    from plasticore.training.api import train

    epochs = 4 if args.fast else 20
    n_test = 90 if args.fast else None
    report: dict = {}

    print("[1/5] data: scikit-learn digits (bundled, offline)", flush=True)
    xte, yte = load_dataset("digits", "test")
    if n_test:
        xte, yte = xte[:n_test], yte[:n_test]
    print(f"      {len(xte)} test samples x {xte.shape[1]} features (uint8)")

    print(f"[2/5] train: 64-128-10 hybrid SNN (HP), {epochs} epochs, QAT", flush=True)
    t0 = time.perf_counter()
    m = train("digits", epochs=epochs, out=out / "train", variant="HP", hidden=128, timesteps=8,
              onchip_eval=True, max_test=n_test, plots=True, progress=sys.stderr.isatty(),
              log=lambda *a, **k: None)
    report["train_seconds"] = time.perf_counter() - t0
    report["float_test_accuracy"] = m["test_accuracy"]
    print(f"      float test accuracy {m['test_accuracy']:.4f}  ({report['train_seconds']:.0f} s)")

    print("[3/5] export: integer bundle with on-chip learning (H persists across samples)", flush=True)
    bdir = out / "train" / "bundle_onchip"
    bundle = load_bundle(bdir)
    x = encode_for(bundle, xte)
    g = golden.run(bundle, x, labels=yte)
    report["golden_test_accuracy"] = float(np.mean(g.predictions == yte))
    print(f"      {final / bdir.relative_to(out)}: golden-model accuracy {report['golden_test_accuracy']:.4f}")

    cpb = 4  # UART clocks per bit of the simulated board (the protocol does not depend on it)
    print(f"[4/5] deploy over a serial port to the simulated board ({DEFAULT_CHIP.mesh_x} cores of "
          f"{DEFAULT_CHIP.a_max}x{DEFAULT_CHIP.n_max}, P={DEFAULT_CHIP.lanes}; first run builds it with Verilator)",
          flush=True)
    n_full = min(FULL_SAMPLES, len(x))
    with SimBoard.start(chip_board_top, clocks_per_bit=cpb) as board:
        print(f"      board on {board.port}")
        with connect(board.port, expected_design_id=board_design_id(cpb)) as dev:
            t0 = time.perf_counter()
            dev.deploy(bundle)
            report["deploy_seconds"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            r = dev.run(x[:n_full], labels=yte[:n_full])  # full records: every spike of every layer
            report["full_run_samples"] = n_full
            report["full_run_seconds"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            with tqdm(total=len(x) - n_full, unit="sample", desc="      board (streamed)") as bar:
                rs = dev.stream(xte[n_full:], labels=yte[n_full:], progress=bar.update)
            report["stream_seconds"] = time.perf_counter() - t0
            tx, rx = dev.stats["stream_wire_bytes"]
        stats = board.stop()
    report["run_seconds"] = report["full_run_seconds"] + report["stream_seconds"]
    report["stream_wire_bytes_per_sample"] = (tx + rx) / (len(x) - n_full)
    runs.save_result(r, out / "board.npz", source=f"board:{board.port}")
    runs.save_result(rs, out / "board_stream.npz", source=f"board:{board.port}")
    runs.save_result(g, out / "golden.npz", source="golden")

    print("[5/5] report", flush=True)
    preds = np.concatenate([r.predictions, rs.predictions])
    report["board_test_accuracy"] = float(np.mean(preds == yte))
    report["inferences_per_s"] = len(x) / report["run_seconds"]
    report["stream_inferences_per_s"] = (len(x) - n_full) / report["stream_seconds"]
    report["board_clock_cycles"] = stats.get("cycles")
    g_full = golden.run(bundle, x[:n_full], labels=yte[:n_full])
    diff = runs.compare_results(runs.result_to_npz_dict(r, "board"), runs.result_to_npz_dict(g_full, "golden"))
    if diff is None:  # the streamed samples continue from the H the full run left
        g_rest = runs.CompactResult(g.u_final[-1][n_full:], g.h_final, g.predictions[n_full:])
        diff = runs.compare_compact(rs, g_rest)
    report["bit_exact_with_golden"] = diff is None
    report["first_difference"] = diff
    dh = int(np.abs(rs.h_final[0].astype(np.int64) - bundle.layers[0].H0).sum())
    report["on_chip_h_change_l1"] = dh
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"      float model          {report['float_test_accuracy']:.4f}")
    print(f"      integer golden model {report['golden_test_accuracy']:.4f}")
    print(f"      simulated board      {report['board_test_accuracy']:.4f}   ({report['stream_inferences_per_s']:.1f} "
          f"inferences/s streamed, {report['stream_wire_bytes_per_sample']:.0f} B a sample on the wire)")
    print(f"      on-chip learning     |H_end - H0|_1 = {dh} (H units of 2^-12)")
    if diff is None:
        print(f"      bit-exact: board == golden model (first {n_full} samples: every spike of every layer and step "
              f"and final membranes; all {len(x)}: output membranes and predictions; final plastic weights)")
    else:
        print(f"      MISMATCH board vs golden: {diff}")
    print(f"done: {final}/report.json, plots in {final}/train/")
    return 0 if diff is None else 1
