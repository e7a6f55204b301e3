"""The simulated board (Verilated board top behind a pty) driven by the host link.

Builds the board once (cached under build/simboard/, ~1-2 min the first time).
"""

import random

import pytest
import serial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plasticore import protocol as P
from plasticore.host.link import Link, NackError
from plasticore.host.transport import FaultInjectingTransport, SerialTransport
from plasticore.rtl.bus import TestTarget
from plasticore.sim.simboard import SimBoard

CPB = 4


@pytest.fixture(scope="module")
def board():
    with SimBoard.start("link_test", clocks_per_bit=CPB) as b:
        yield b


@pytest.fixture
def link(board):
    with Link(SerialTransport(board.port)) as lk:
        lk.connect()
        yield lk


def test_pty_opens_like_a_serial_device(board):
    with serial.Serial(board.port, 115200, timeout=2) as ser:
        ser.write(P.encode_frame(P.request(P.Op.IDENTIFY, 9)))
        raw = ser.read_until(b"\x00")
        while raw == b"\x00":  # the leading delimiter of nothing
            raw = ser.read_until(b"\x00")
    words = P.decode_frame(raw[:-1])
    assert P.unpack(P.RSP_HEADER, words[0])["status"] == 0
    assert P.unpack(P.IDENTIFY, P.words_value(words[1:]))["magic"] == P.MAGIC


def test_identify_over_sim_url():
    with Link(SerialTransport(f"sim://?top=link_test&cpb={CPB}")) as lk:
        ident = lk.connect()
        assert ident.version == P.PROTOCOL_VERSION
        assert ident.clocks_per_bit == CPB and ident.rx_credit >= P.frame_wire_bytes(ident.max_words + 2)
        port = lk.transport.serial
        assert port.board.running
        board = port.board
    assert not board.running  # closing the port stopped the board


def test_long_stream_no_loss(link):
    """256 KB streamed into one port register + 64 KB RAM round trip; nothing lost or reordered."""
    rng = random.Random(5)
    link.reset()
    n = 65536  # words = 256 KB
    data = [rng.getrandbits(32) for _ in range(n)]
    link.write(TestTarget.HASH, data, fixed=True)
    h = 0
    for w in data:
        h = (h * 31 + w) & 0xFFFFFFFF
    assert link.read(TestTarget.HASH, 2) == [h, n]
    ram = [rng.getrandbits(32) for _ in range(16384)]
    link.write(0, ram)
    assert link.read(0, 16384) == ram
    st_ = link.status()
    assert st_["rx_overflows"] == 0 and st_["uart_errors"] == 0
    assert st_["crc_errors"] == 0 and st_["seq_errors"] == 0
    assert link.stats["rewinds"] == 0


def test_run_and_nack(link):
    link.reset()
    assert link.run(100) == 100
    assert link.run(5) == 105
    with pytest.raises(NackError, match="ADDRESS"):
        link.read(0x0200_0000, 1)
    assert link.read(TestTarget.STEPS, 1) == [105]


def test_echo_loops_words_back_without_touching_the_bus(link):
    """ECHO returns its data words (zero bytes, all-ones, frames up to max_words) and reads or writes
    nothing: the RAM and the bus target's step counter are unchanged; a frame without data is a LENGTH nack."""
    assert link.identity.caps & P.Cap.ECHO
    link.reset()
    rng = random.Random(7)
    ram = [rng.getrandbits(32) for _ in range(64)]
    link.write(0, ram)
    steps = link.read(TestTarget.STEPS, 1)
    for n in (1, 2, 7, link.max_words, 3 * link.max_words + 5):
        words = [rng.choice([0, 0xFFFFFFFF, rng.getrandbits(32), rng.getrandbits(8)]) for _ in range(n)]
        assert link.echo(words) == words
    assert link.read(0, 64) == ram and link.read(TestTarget.STEPS, 1) == steps
    with pytest.raises(NackError, match="LENGTH"):
        link._wait(link._submit(P.Op.ECHO, words=[0]))


@pytest.mark.parametrize("seed", [11])
def test_faults_one_percent_recover_without_silent_corruption(board, seed):
    faulty = FaultInjectingTransport(SerialTransport(board.port), rate=0.01, seed=seed)
    with Link(faulty, timeout=0.3, max_words=8) as lk:
        lk.connect()
        rng = random.Random(seed)
        data = [rng.getrandbits(32) for _ in range(1024)]  # 4 KB each way
        lk.write(0x100, data)
        lk.flush()
        assert lk.read(0x100, len(data)) == data
        assert lk.echo(data[:256]) == data[:256]  # idempotent: a duplicate is executed again
        st_ = lk.status()
    assert sum(faulty.counts.values()) > 100
    assert st_["crc_errors"] + st_["framing_errors"] > 0  # the board saw the damage...
    assert lk.stats["rewinds"] > 0  # ...and the host recovered by resending
    with Link(SerialTransport(board.port)) as clean:  # board state is consistent afterwards
        clean.connect()
        assert clean.read(0x100, len(data)) == data


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.one_of(
    st.binary(max_size=2000),
    st.lists(st.integers(0, 0xFFFFFFFF), max_size=300).map(lambda w: P.encode_frame(w)[:-1]),
    st.binary(min_size=1, max_size=64).map(lambda b: b.replace(b"\x00", b"\x01") * 40),
))
def test_garbage_never_wedges_the_board(board, garbage):
    with Link(SerialTransport(board.port), timeout=1.0) as lk:
        lk.transport.write(garbage)
        lk.connect()  # the next valid frame is answered
        lk.ping()
