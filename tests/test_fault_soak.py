"""Whole runs on the simulated board through a faulty line: nothing lost, nothing corrupted.

The board is the chip of ``tests/test_board_e2e.py`` (one Verilator build serves both). The 100-sample
soak at 1 % byte faults both ways is ``slow`` (about 10 min here); a few samples run always.
"""

import pytest

from plasticore import chip_map as M
from plasticore import golden, runs
from plasticore import protocol as P
from plasticore.host.link import Link
from plasticore.host.linkbus import open_link
from plasticore.host.transport import SerialTransport, Transport
from plasticore.sim.chipboard import chip_board_top
from plasticore.sim.fault_soak import SOAK_BOARD, SOAK_CPB, soak, soak_network, summarise
from plasticore.sim.simboard import SimBoard


@pytest.fixture(scope="module")
def board():
    with SimBoard.start(chip_board_top, clocks_per_bit=SOAK_CPB, **SOAK_BOARD) as b:
        yield b


class DropFirstWindowReply(Transport):
    """Pass bytes through, but drop the board's reply to the first READ of the output window (the
    READ executed, its reply lost on the line)."""

    def __init__(self, inner: Transport):
        self.inner, self.name, self.baudrate = inner, inner.name, inner.baudrate
        self.seq: int | None = None
        self.dropped = 0
        self._rx = bytearray()

    def write(self, data: bytes) -> None:
        for enc in bytes(data).split(b"\0"):
            if enc and self.seq is None and not self.dropped:
                w = P.decode_frame(enc)
                h = P.unpack(P.REQ_HEADER, w[0])
                if h["op"] == P.Op.READ and w[1] == M.chip_addr(M.ChipReg.OUT_WIN):
                    self.seq = h["seq"]
        self.inner.write(data)

    def read(self, max_bytes: int, timeout: float) -> bytes:
        self._rx += self.inner.read(max_bytes, timeout)
        out = bytearray()
        while (k := self._rx.find(0)) >= 0:
            enc, self._rx = bytes(self._rx[:k]), self._rx[k + 1:]
            if enc and self.seq is not None:
                h = P.unpack(P.RSP_HEADER, P.decode_frame(enc)[0])
                if h["op"] == P.Op.READ | P.RSP_FLAG and h["seq"] == self.seq:
                    self.seq, self.dropped = None, self.dropped + 1
                    continue
            out += enc + b"\0"
        return bytes(out)

    def close(self) -> None:
        self.inner.close()


def test_lost_window_reply_is_read_again(board):
    """The reply to an output-window READ is lost: the host resends the READ, the board executes it
    again and returns the same outputs (a destructive FIFO pop would have lost them: the run would end
    with an error or differ from the golden model)."""
    b, x = soak_network(3, 2, sizes=(12, 10), timesteps=3)
    tr = DropFirstWindowReply(SerialTransport(board.port))
    with open_link(Link(tr, timeout=1.0), board.port) as dev:
        dev.deploy(b)
        r = dev.run(x)
        stats = dev.bus.link.stats
    assert tr.dropped == 1 and stats["timeouts"] >= 1, (tr.dropped, dict(stats))
    ref = runs.result_to_npz_dict(golden.run(b, x), "golden")
    msg = runs.compare_results(runs.result_to_npz_dict(r, "board"), ref)
    assert msg is None, msg


def test_fault_soak_sample(board):
    """1 % byte faults (flip, drop, duplicate) in both directions, a one-core network, 3 samples:
    the run completes and is bit-exact, after retries."""
    (r,) = soak((0.01,), samples=3, seed=5, port=board.port, network={"sizes": (16, 12), "timesteps": 3})
    assert r["bit_exact"], r
    assert r["faults"] > 20 and r["retries"] > 0, r


@pytest.mark.slow
def test_fault_soak_100_samples(board):
    """The soak of issue 26: a 100-sample run of a three-core plastic network at 1 % byte faults both
    ways completes bit-exact (``make bench`` reports the same figure, ``fault_soak``)."""
    res = soak((0.01,), samples=100, seed=0, port=board.port)
    print(summarise(res))
    assert all(r["bit_exact"] for r in res), res


def test_fault_soak_streamed(board):
    """The same faults on a streamed run (the sample engine: features in, compact records out): queue
    writes are executed once, record reads repeated until acknowledged; the run completes bit-exact."""
    (r,) = soak((0.01,), samples=12, seed=6, port=board.port, stream=True,
                network={"sizes": (16, 12), "timesteps": 3})
    assert r["bit_exact"], r
    assert r["faults"] > 5 and r["retries"] > 0, r
