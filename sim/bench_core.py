"""Benchmark of the hybrid core on Verilator: cycles per step (measured vs formula), synaptic
operations per clock, plastic updates per clock and simulation speed.

``bench()`` is what ``plasticore.app.bench`` calls.  It builds one core (default 256 x 256, P = 16),
runs the ``bench_steps`` cocotb test of :mod:`plasticore.sim.core_tb` (every step is also checked
bit-exact against the golden model) and returns a dict::

    python -m plasticore.sim.bench_core            # prints the JSON
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from plasticore.core_map import DEFAULT_GEOMETRY, CoreGeometry

__all__ = ["bench", "bench_compact"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def bench(a_max: int = DEFAULT_GEOMETRY.a_max, n_max: int = DEFAULT_GEOMETRY.n_max,
          lanes: int = DEFAULT_GEOMETRY.lanes, steps: int = 3, build_dir: str | os.PathLike | None = None,
          seed: int = 1, kind: str = "hybrid") -> dict:
    """Run the core benchmark (``kind``: ``hybrid`` or ``compact``, :data:`plasticore.rtl.chip.CORE_KINDS`);
    returns ``{"core", "geometry", "workloads": {name: {...}}, "summary": {...}}``.

    Per workload (full A_max x N_max layer, one sample of ``steps`` steps, plastic):
    ``events`` (mean non-zero inputs per step), ``cycles_per_step`` (measured, register
    ``CYCLES``), ``formula_per_step`` (:func:`plasticore.rtl.core.step_cycles`), ``formula_exact``
    (every step equal), ``sop_per_clock`` (E*N synaptic ops / integrate clocks),
    ``lpu_syn_per_clock`` (A*N plastic updates / LPU clocks), ``sim_cycles_per_s`` (Verilator
    speed while the step runs, cocotb idle).  ``summary`` aggregates them; ``build_s`` is the
    Verilator build time.
    """
    from plasticore.rtl.chip import CORE_KINDS
    from plasticore.sim.cocotb_runner import run_cocotb
    from plasticore.sim.toolchain import verilog_from_component

    CoreGeometry(a_max, n_max, lanes)  # validates the geometry
    bdir = Path(build_dir or REPO_ROOT / "sim_build" / f"bench_{kind}_core_{a_max}x{n_max}_p{lanes}")
    vfile = verilog_from_component(CORE_KINDS[kind](a_max, n_max, lanes), "hybrid_core", bdir)
    summary = bdir / "bench.json"
    summary.unlink(missing_ok=True)
    t0 = time.perf_counter()
    run_cocotb([vfile], "hybrid_core", "plasticore.sim.core_tb", bdir, testcase="bench_steps", seed=seed,
               waves=False, extra_env={
                   "CORE_KIND": kind, "CORE_A": str(a_max), "CORE_N": str(n_max), "CORE_P": str(lanes),
                   "CORE_STEPS": str(steps),
                   "CORE_SEED": str(seed), "CORE_BENCH": "1", "CORE_SUMMARY": str(summary),
                   "MAKEFLAGS": "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O2 OPT_SLOW=-O1",
               }, build_args=["-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert"])
    total_s = time.perf_counter() - t0
    raw = json.loads(summary.read_text())
    work = {}
    for name, st in raw.items():
        recs = st["records"]
        n = len(recs)
        integ = sum(r.get("integrate", r.get("dendrite", 0)) for r in recs)
        lpu = sum(r["lpu"] for r in recs)
        cyc = sum(r["cycles"] for r in recs)
        wall = sum(r["wall_s"] for r in recs)
        work[name] = {
            "steps": n,
            "events": sum(r["events"] for r in recs) / n,
            "cycles_per_step": cyc / n,
            "formula_per_step": sum(r["formula"] for r in recs) / n,
            "formula_exact": all(r["cycles"] == r["formula"] for r in recs),
            "sop_per_clock": round(st["sops"] / integ, 3) if integ else 0.0,
            "lpu_syn_per_clock": round(st["syn_updates"] / lpu, 3) if lpu else 0.0,
            "sim_cycles_per_s": round(cyc / wall) if wall else None,
            "bit_exact": True,  # run_cocotb raised otherwise
        }
    allw = list(work.values())
    return {
        "core": kind,
        "geometry": {"a_max": a_max, "n_max": n_max, "lanes": lanes},
        "workloads": work,
        "summary": {
            "formula_exact": all(w["formula_exact"] for w in allw),
            "peak_sop_per_clock": max(w["sop_per_clock"] for w in allw),
            "lpu_syn_per_clock": max(w["lpu_syn_per_clock"] for w in allw),
            "sim_cycles_per_s": round(sum(w["cycles_per_step"] * w["steps"] for w in allw)
                                      / sum(w["cycles_per_step"] * w["steps"] / w["sim_cycles_per_s"]
                                            for w in allw if w["sim_cycles_per_s"])),
            "build_and_run_s": round(total_s, 1),
        },
    }


def bench_compact(steps: int = 2, seed: int = 1) -> dict:
    """The compact core at the iCEBreaker's geometry (128 x 128, one lane), same workloads."""
    return bench(128, 128, 1, steps=steps, seed=seed, kind="compact")


if __name__ == "__main__":
    json.dump(bench(), sys.stdout, indent=1)
    print()
