"""Benchmark of the host link on the simulated board.

:func:`bench` returns a dict:

* ``goodput_fraction`` -- payload bytes written / bytes the UART line could carry in the same
  number of board clock cycles (``cycles / (10 * clocks_per_bit)``); goal >= 0.90.  Measured in
  board cycles (from the STATUS counter), so it does not depend on how fast the host machine is.
* ``read_goodput_fraction`` -- the same for reads (payload bytes returned).
* ``simboard_hz`` / ``native_hz`` -- board clock cycles per CPU second of the harness process
  while streaming through the pty, and of a plain Verilator loop of the same model (no pty);
  ``clock_fraction = simboard_hz / native_hz`` (goal >= 0.5).  CPU seconds, not wall seconds, so
  other processes on a shared machine do not distort the ratio; wall-clock rates are included too.
* ``wall_kbytes_per_s`` -- host-observed write throughput.

Run: ``python -m plasticore.sim.bench_link``.
"""

from __future__ import annotations

import json
import random
import time

from plasticore.host.link import Link
from plasticore.host.transport import SerialTransport
from plasticore.rtl.bus import TestTarget
from plasticore.sim.simboard import SimBoard, build_board

__all__ = ["bench"]


def bench(nbytes: int = 256 * 1024, clocks_per_bit: int = 4, native_cycles: int = 5_000_000) -> dict:
    import subprocess

    exe = build_board(clocks_per_bit=clocks_per_bit)
    out = subprocess.run([str(exe), "--cpb", str(clocks_per_bit), "--bench-cycles", str(native_cycles)],
                         capture_output=True, text=True, check=True).stdout.split()
    native = dict(zip(out[::2], map(float, out[1::2]), strict=True))

    rng = random.Random(1)
    nwords = nbytes // 4
    data = [rng.getrandbits(32) for _ in range(nwords)]
    with SimBoard.start("link_test", clocks_per_bit=clocks_per_bit) as board:
        with Link(SerialTransport(board.port)) as link:
            link.connect()
            link.reset()
            s0 = link.status()
            t0 = time.perf_counter()
            link.write(TestTarget.HASH, data, fixed=True)
            link.flush()
            t1 = time.perf_counter()
            s1 = link.status()
            back = link.read(0, min(nwords, 16384))
            s2 = link.status()
            assert len(back) == min(nwords, 16384)
            count = link.read(TestTarget.COUNT, 1)[0]
        stats = board.stop()
    if count != nwords:
        raise RuntimeError(f"board counted {count} words, host sent {nwords}")
    line_bytes_per_cycle = 1 / (10 * clocks_per_bit)
    wcycles = s1["cycles"] - s0["cycles"]
    rcycles = s2["cycles"] - s1["cycles"]
    sim_hz_cpu = stats["cycles"] / stats["cpu"]
    return {
        "payload_bytes": nwords * 4,
        "clocks_per_bit": clocks_per_bit,
        "goodput_fraction": nwords * 4 / (wcycles * line_bytes_per_cycle),
        "read_goodput_fraction": len(back) * 4 / (rcycles * line_bytes_per_cycle),
        "rx_overflows": s2["rx_overflows"],
        "wall_kbytes_per_s": nwords * 4 / (t1 - t0) / 1e3,
        "simboard_hz": sim_hz_cpu,
        "native_hz": native["cpu_rate"],
        "clock_fraction": sim_hz_cpu / native["cpu_rate"],
        "simboard_wall_hz": wcycles / (t1 - t0),
        "native_wall_hz": native["rate"],
    }


if __name__ == "__main__":
    print(json.dumps(bench(), indent=2))
