"""`make bench`: every benchmark of the project, side by side, as JSON and a short table.

Speed targets are ratios measured in one run on this machine (ours vs a baseline, ours vs a
physical limit), medians of several repetitions, because the machines are shared and noisy.

    python -m plasticore.app.bench [--only golden,core,link,training] [--out bench/results/bench.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def _median_time(fn, repeats: int, clock=time.process_time) -> float:
    """Median over ``repeats`` of ``fn``'s duration on ``clock``.

    The default is this process's CPU time (all its threads), so other jobs on a shared machine do
    not inflate it; both sides of a ratio are measured the same way in the same run."""
    ts = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        ts.append(clock() - t0)
    return statistics.median(ts)


def bench_golden(A: int = 256, N: int = 256, steps: int = 50, repeats: int = 5) -> dict:
    """Golden-model throughput with plasticity on vs the naive per-synapse loop, same layer and inputs.

    One synaptic operation (SOP) = one synapse visited in one step: its share of the dendrite
    integration and its plastic update (A*N per layer step, counted for every synapse).
    """
    from plasticore import contract as C
    from plasticore import golden
    from plasticore.sim.naive import naive_layer_step
    from plasticore.sim.random_bundle import random_layer

    rng = np.random.default_rng(1234)
    L = random_layer(rng, A, N, C.InputKind.SPIKE, plastic=True, edge="none")
    p = golden.layer_params(L)
    xs = (rng.random((steps, 1, A)) < 0.5).astype(np.int64)

    def run_golden():
        st = golden.init_state(L, (1,))
        for t in range(steps):
            st, _ = golden.layer_step(p, st, xs[t])

    t_golden = _median_time(run_golden, repeats) / steps
    naive_steps = 2
    u, s, H = [0] * N, [0] * N, L.H0.astype(int).tolist()

    def run_naive():
        nonlocal u, s, H
        for t in range(naive_steps):
            u, s, H = naive_layer_step(p, u, s, H, xs[t, 0].tolist())

    t_naive = _median_time(run_naive, 3) / naive_steps
    # batched: independent samples (H reset per sample) evaluated together
    B = 64
    Lb = L
    Lb.h_persist = C.HPersist.SAMPLE
    xb = (rng.random((B, A)) < 0.5).astype(np.int64)

    def run_batched():
        st = golden.init_state(Lb, (B,))
        for _ in range(5):
            st, _ = golden.layer_step(p, st, xb)

    t_batched = _median_time(run_batched, repeats) / (5 * B)
    sop = A * N
    return {
        "layer": f"{A}x{N}", "plasticity": True, "clock": "process CPU time, median of repeats",
        "golden_sop_per_s": sop / t_golden,
        "naive_loop_sop_per_s": sop / t_naive,
        "speedup_vs_naive": t_naive / t_golden,
        "golden_batched_sop_per_s": sop / t_batched,
        "goal_sop_per_s": 1e8, "goal_speedup": 50,
        "meets_goal": bool(sop / t_golden >= 1e8 and t_naive / t_golden >= 50),
    }


def bench_chip() -> dict:
    """The chip benchmark (``plasticore.sim.bench_chip``), its modelled real-board rates with the clocks of
    the ULX3S build's chip (``CHIP_DEFAULTS["ulx3s"]``, with its sample engine; Verilated)."""
    from plasticore.firmware.designs import CHIP_DEFAULTS
    from plasticore.sim.bench_chip import bench
    from plasticore.sim.chipsim import ChipConfig

    kw = CHIP_DEFAULTS["ulx3s"]
    cfg = ChipConfig(kw["mesh_x"], kw["mesh_y"], kw["a_max"], kw["n_max"], kw["lanes"], kw["out_fifo"],
                     bool(kw.get("mem_pipe")), bool(kw.get("engine")))
    return {**bench(model_chip=cfg), "model_chip": f"the ULX3S build's chip: {cfg}"}


#: name -> (module, function) of every benchmark; modules that are not installed are reported as such.
BENCHES = {
    "golden": ("plasticore.app.bench", "bench_golden"),
    "core": ("plasticore.sim.bench_core", "bench"),
    "compact_core": ("plasticore.sim.bench_core", "bench_compact"),
    "link": ("plasticore.sim.bench_link", "bench"),
    "chip": ("plasticore.app.bench", "bench_chip"),
    "fault_soak": ("plasticore.sim.fault_soak", "bench"),
    "training": ("plasticore.training.api", "bench"),
}


def _table(results: dict) -> str:
    rows = []
    for name, r in results.items():
        if "error" in r:
            rows.append(f"{name:10s} ERROR {r['error']}")
            continue
        for k, v in r.items():
            if isinstance(v, float):
                v = f"{v:.4g}"
            rows.append(f"{name:10s} {k:32s} {v}")
    return "\n".join(rows)


def _is_results(path: Path) -> bool:
    """A results file this command wrote (JSON with ``machine`` and ``results``)."""
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(d, dict) and {"machine", "results"} <= d.keys()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="plasticore.app.bench")
    ap.add_argument("--only", default=",".join(BENCHES), help="comma separated: " + ",".join(BENCHES))
    ap.add_argument("--out", type=Path, default=Path("bench/results/bench.json"))
    ap.add_argument("--force", action="store_true", help="replace a previous results file at --out")
    args = ap.parse_args(argv)
    from plasticore.outputs import OutputError, check_output_file

    unknown = [n for n in args.only.split(",") if n not in BENCHES]
    try:
        if unknown:
            raise OutputError(f"--only: unknown benchmark(s) {','.join(unknown)}; choose from {','.join(BENCHES)}")
        check_output_file(args.out, "--out", force=args.force, same_kind=_is_results, kind="benchmark results file")
    except OutputError as e:  # one line, exit status 2, before any benchmark runs
        print(f"{ap.prog}: {e}", file=sys.stderr)
        return 2
    results: dict[str, dict] = {}
    failed = False
    for name in args.only.split(","):
        mod_name, fn_name = BENCHES[name]
        try:
            mod = sys.modules[__name__] if mod_name == __name__ else importlib.import_module(mod_name)
            fn = getattr(mod, fn_name)
        except (ModuleNotFoundError, AttributeError) as e:
            results[name] = {"error": f"not available: {e}"}
            continue
        print(f"running benchmark '{name}' ...", flush=True)
        try:
            results[name] = fn()
        except Exception as e:  # noqa: BLE001 - report and continue with the other benchmarks
            results[name] = {"error": f"{type(e).__name__}: {e}"}
            failed = True
    doc = {"machine": platform.platform(), "python": platform.python_version(),
           "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    os.replace(tmp, args.out)
    print(_table(results))
    print(f"results: {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
