"""Fault soak: whole runs on the simulated board through a line that flips, drops and duplicates bytes.

Every run deploys a plastic two-layer network and runs its samples through
:class:`~plasticore.host.transport.FaultInjectingTransport` (faults in both directions), then compares
the result with the golden model bit for bit.  ``make bench`` reports it (``fault_soak``); the tests
run a small sample (``tests/test_fault_soak.py``).

    python -m plasticore.sim.fault_soak [--rates 0.01,0.02] [--runs 1] [--samples 100] [--sizes 24,20,12]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from plasticore import contract as C
from plasticore.errors import PlasticoreError

#: the soak's board: a 2 x 2 chip of 32 x 16 cores, P = 4, with the ULX3S build's bus slice (the chip
#: of ``tests/test_board_e2e.py``, so one Verilator build serves both)
SOAK_BOARD = {"mesh_x": 2, "mesh_y": 2, "a_max": 32, "n_max": 16, "lanes": 4, "bus_slice": 1}
SOAK_CPB = 8
#: link settings on the faulty line: a short resend timeout (the pty answers in milliseconds); the
#: frame size is the link's default (the board's 256 words, shrinking on resends: ``Link.frame_words``)
SOAK_LINK = {"timeout": 0.3}


def soak_network(seed: int = 0, samples: int = 100, sizes=(24, 20, 12), timesteps: int = 4,
                 features: bool = False):
    """The soak's bundle (by default 24 -> 20 -> 12 on three cores, every layer plastic, T = 4) and
    ``samples`` inputs (``features``: uint8 features, for a streamed run, instead of coded inputs)."""
    from plasticore.sim.random_bundle import random_bundle, random_inputs

    rng = np.random.default_rng(seed)
    b = random_bundle(rng, sizes=list(sizes), timesteps=timesteps, coding="direct", allow_ann=False,
                      edges=["none"] * (len(sizes) - 1))
    for L in b.layers:
        L.plastic, L.h_persist = True, C.HPersist.NEVER
    if features:
        return b, rng.integers(0, 256, (samples, b.n_in))
    return b, random_inputs(rng, b, samples)


def soak_run(port: str, bundle, x, rate: float, seed: int, golden_result=None, stream: bool = False,
             **link_kw) -> dict:
    """Deploy ``bundle`` and run ``x`` on the board at ``port`` through a line with byte fault rate
    ``rate`` in both directions (seeded); returns what happened (``bit_exact``, the link's retries...).
    ``stream``: ``x`` are uint8 features, streamed through the chip's sample engine (compact records)."""
    from plasticore import golden, runs
    from plasticore.coding import encode_for
    from plasticore.host.link import Link
    from plasticore.host.linkbus import open_link
    from plasticore.host.transport import FaultInjectingTransport, SerialTransport

    faulty = FaultInjectingTransport(SerialTransport(port), rate=rate, seed=seed)
    link = Link(faulty, **{**SOAK_LINK, **link_kw})
    t0 = time.perf_counter()
    out: dict = {"rate": rate, "seed": seed, "samples": len(x), "completed": False, "bit_exact": False}
    try:
        with open_link(link, port) as dev:
            dev.deploy(bundle)
            res = dev.stream(x) if stream else dev.run(x)
        out["completed"] = True
        ref = golden_result if golden_result is not None else golden.run(bundle, encode_for(bundle, x) if stream else x)
        if stream:
            msg = runs.compare_compact(res, runs.CompactResult.of(ref))
        else:
            msg = runs.compare_results(runs.result_to_npz_dict(res, "board"), runs.result_to_npz_dict(ref, "golden"))
        out["bit_exact"] = msg is None
        if msg:
            out["mismatch"] = msg
    except PlasticoreError as e:
        out["error"] = str(e)
    finally:
        link.close()
    st = link.stats
    out.update(seconds=time.perf_counter() - t0, faults=sum(faulty.counts.values()),
               frames_sent=st["frames_sent"], retries=st["rewinds"], timeouts=st["timeouts"],
               bad_replies=st["bad_replies"], nacks=sum(v for k, v in st.items() if k.startswith("nack_")))
    return out


def soak(rates=(0.01,), runs: int = 1, samples: int = 100, seed: int = 0, port: str | None = None,
         network: dict | None = None, stream: bool = False, **link_kw) -> list[dict]:
    """``runs`` soak runs per fault rate (seeds ``seed``, ``seed + 1``...) on one simulated board (started
    here unless ``port`` is given); ``network``: keyword arguments of :func:`soak_network`; ``stream``:
    the runs go through the chip's sample engine (compact records)."""
    from plasticore import golden
    from plasticore.coding import encode_for
    from plasticore.sim.chipboard import chip_board_top
    from plasticore.sim.simboard import SimBoard

    b, x = soak_network(seed, samples, **(network or {}), features=stream)
    ref = golden.run(b, encode_for(b, x) if stream else x)
    board = None
    if port is None:
        board = SimBoard.start(chip_board_top, clocks_per_bit=SOAK_CPB, **SOAK_BOARD)
        port = board.port
    try:
        return [soak_run(port, b, x, rate, seed + r, golden_result=ref, stream=stream, **link_kw) for rate in rates
                for r in range(runs)]
    finally:
        if board is not None:
            board.stop()


def summarise(results: list[dict]) -> dict:
    """Per fault rate: runs, how many completed bit-exact, retries and timeouts (totals)."""
    out: dict = {}
    for r in results:
        s = out.setdefault(f"{r['rate']:g}", {"runs": 0, "bit_exact": 0, "retries": 0, "timeouts": 0,
                                              "faults": 0, "seconds": 0.0, "errors": []})
        s["runs"] += 1
        s["bit_exact"] += int(r["bit_exact"])
        for k in ("retries", "timeouts", "faults", "seconds"):
            s[k] += r[k]
        if "error" in r or "mismatch" in r:
            s["errors"].append(r.get("error") or r["mismatch"])
    return out


def bench(samples: int = 100, sweep=(0.02, 0.03, 0.05, 0.08), sweep_samples: int = 10) -> dict:
    """`make bench`: 1 % byte faults both ways on a ``samples``-sample run (goal: bit-exact), then the
    rates of ``sweep`` on shorter runs: the highest at which the run still completes bit-exact."""
    from plasticore.sim.chipboard import chip_board_top
    from plasticore.sim.simboard import SimBoard

    with SimBoard.start(chip_board_top, clocks_per_bit=SOAK_CPB, **SOAK_BOARD) as board:
        main = soak((0.01,), samples=samples, port=board.port)[0]
        swept = soak(sweep, samples=sweep_samples, port=board.port)
    ok = [r["rate"] for r in swept if r["bit_exact"]]
    highest = 0.01 if main["bit_exact"] else 0.0
    for r in swept:  # the highest rate below which every rate completed
        if not r["bit_exact"]:
            break
        highest = r["rate"]
    return {
        "board": f"sim chip 2x2 of 32x16, P=4, cpb {SOAK_CPB}; link {SOAK_LINK}",
        "run_1pct_samples": samples, "run_1pct_bit_exact": main["bit_exact"], "run_1pct_retries": main["retries"],
        "run_1pct_timeouts": main["timeouts"], "run_1pct_faults_injected": main["faults"],
        "run_1pct_seconds": main["seconds"], "run_1pct_error": main.get("error", ""),
        "sweep_samples": sweep_samples, "sweep_bit_exact_rates": ",".join(f"{r:g}" for r in ok),
        "sweep_retries": ",".join(str(r["retries"]) for r in swept),
        "highest_rate_completed": highest, "goal": "1 % both ways: 100 % of runs bit-exact",
        "meets_goal": bool(main["bit_exact"]),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plasticore.sim.fault_soak", description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="0.01", help="comma separated byte fault rates (both directions)")
    ap.add_argument("--runs", type=int, default=1, help="runs per rate (seeds 0, 1, ...)")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="24,20,12", help="layer sizes of the network (at most 4 cores of 32x16)")
    ap.add_argument("--timesteps", type=int, default=4)
    a = ap.parse_args(argv)
    net = {"sizes": tuple(int(v) for v in a.sizes.split(",")), "timesteps": a.timesteps}
    res = soak(tuple(float(r) for r in a.rates.split(",")), runs=a.runs, samples=a.samples, seed=a.seed, network=net)
    for r in res:
        print(json.dumps(r))
    summary = summarise(res)
    print(json.dumps(summary, indent=1))
    return 0 if all(s["bit_exact"] == s["runs"] for s in summary.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
