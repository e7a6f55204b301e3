"""The simulated board dies mid-deploy or mid-run: the host stops within seconds with one line that
names the port and the step, writes nothing, and a fresh board reruns the same command bit-exactly.
Also: a board that keeps rejecting frames is reported as such (what it answered), not as silent.

The board is the chip of ``tests/test_board_e2e.py`` (one Verilator build serves both).
"""

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from plasticore.app.cli import main
from plasticore.bundle import save_bundle
from plasticore.host.link import Link
from plasticore.host.linkbus import BoardError, LinkBus, open_link
from plasticore.host.transport import SerialTransport, Transport
from plasticore.sim.chipboard import chip_board_top
from plasticore.sim.fault_soak import SOAK_BOARD, SOAK_CPB, soak_network
from plasticore.sim.simboard import SimBoard


def _start():
    return SimBoard.start(chip_board_top, clocks_per_bit=SOAK_CPB, **SOAK_BOARD)


@pytest.fixture
def files(tmp_path):
    """A three-core plastic bundle and 4 samples of inputs on disk."""
    b, x = soak_network(7, 4, sizes=(24, 20, 12), timesteps=3)
    save_bundle(b, tmp_path / "b")
    np.savez(tmp_path / "in.npz", x=x)
    return tmp_path


def _kill_on_call(monkeypatch, board, method: str, n: int) -> dict:
    """Kill ``board`` (SIGKILL) just before the ``n``-th call of ``LinkBus.method``."""
    orig = getattr(LinkBus, method)
    seen = {"calls": 0, "killed_at": None}

    def wrapped(self, *a, **kw):
        seen["calls"] += 1
        if seen["calls"] == n:
            board.proc.kill()
            board.proc.wait()
            seen["killed_at"] = time.monotonic()
        return orig(self, *a, **kw)

    monkeypatch.setattr(LinkBus, method, wrapped)
    return seen


def _run_args(d, port, out):
    return ["run", "--bundle", str(d / "b"), "--port", port, "--inputs", str(d / "in.npz"), "--out", str(out),
            "--quiet"]


@pytest.mark.parametrize(("method", "n", "step"), [("write", 40, "deploy"), ("run", 6, "run (sample 2/4)")])
def test_board_killed_then_rerun_on_a_fresh_board(files, monkeypatch, capsys, method, n, step):
    """Killed at the 40th write of the deploy, or before the 6th RUN (sample 2, step 3 of 3): the command
    fails within 5 s with "board on PORT stopped answering during STEP", exit status 2, no output file.
    A fresh board then runs the same command bit-exactly."""
    out = files / "out.npz"
    board = _start()
    try:
        seen = _kill_on_call(monkeypatch, board, method, n)
        rc = main(_run_args(files, board.port, out))
        t = time.monotonic() - seen["killed_at"]
    finally:
        board.stop()
    err = capsys.readouterr().err
    assert rc == 2, err
    assert t < 5, f"the host took {t:.1f} s to give up"
    assert f"board on {board.port} stopped answering during {step}" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists(), "no partial output"
    monkeypatch.undo()
    with _start() as fresh:
        rc = main([*_run_args(files, fresh.port, out), "--check"])
    assert rc == 0 and out.exists()
    assert "bit-exact with the golden model" in capsys.readouterr().out


def test_board_process_killed_under_a_running_command(files):
    """The real thing: ``plasticore run`` in its own process, the board killed from outside while it
    works: a nonzero exit within 5 s, one line naming the port and the step, no output file."""
    out = files / "out.npz"
    with _start() as board:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen([sys.executable, "-m", "plasticore.app.cli", *_run_args(files, board.port, out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            line = proc.stdout.readline()  # "board on PORT: ..." printed before the deploy
            assert line.startswith(f"board on {board.port}"), (line, proc.stderr.read())
            time.sleep(1.0)
            board.proc.kill()
            t0 = time.monotonic()
            rc = proc.wait(timeout=30)
            t = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert rc != 0 and t < 5, (rc, t, err)
    step = r"(deploy|run \(sample \d/4\))"
    assert re.search(rf"board on {re.escape(board.port)} stopped answering during {step}", err), err
    assert not out.exists()


class CorruptEveryFrame(Transport):
    """Flip a byte in the middle of every frame the host sends: the board answers each with a CRC nack."""

    def __init__(self, inner: Transport):
        self.inner, self.name, self.baudrate = inner, inner.name, inner.baudrate

    def write(self, data: bytes) -> None:
        b = bytearray(data)
        b[len(b) // 2] ^= 0x5A if b[len(b) // 2] not in (0, 0x5A) else 0x01
        self.inner.write(bytes(b))

    def read(self, max_bytes: int, timeout: float) -> bytes:
        return self.inner.read(max_bytes, timeout)

    def close(self) -> None:
        self.inner.close()


def test_board_that_keeps_rejecting_is_not_called_silent():
    """Every frame arrives corrupted, the board answers every one (a CRC nack): the error says what the
    board answered (op, status, counts), not "no reply ... is the board running?"."""
    with _start() as board:
        link = Link(SerialTransport(board.port), timeout=1.0)
        dev = open_link(link, board.port)
        link.transport = CorruptEveryFrame(link.transport)
        t0 = time.monotonic()
        with pytest.raises(BoardError) as e:
            dev.bus.write(0x8000_0000, [1, 2, 3])
            dev.bus.sync()
        dt = time.monotonic() - t0
        link.close()
    msg = str(e.value)
    assert re.search(r"kept answering without accepting WRITE seq \d+: \d+ replies", msg), msg
    assert re.search(r"NACK (CRC|FRAMING) x\d+.*last: op 0xff seq \d+ status (CRC|FRAMING) expect \d+", msg), msg
    assert "is the board running" not in msg and "no reply" not in msg, msg
    assert dt < 30, dt
