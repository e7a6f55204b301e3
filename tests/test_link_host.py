"""Host link logic against an in-process fake board (no RTL): errors, retries, fault recovery."""

import random

import pytest

from plasticore import protocol as P
from plasticore.host.link import Link, LinkTimeout, NackError, NoPortError, VersionMismatch
from plasticore.host.transport import FaultInjectingTransport, SerialTransport, Transport
from plasticore.protocol import Op, Status


class FakeBoard(Transport):
    """Protocol-level model of the board (sequencing as in rtl/link.py), RAM of ``ram`` words."""

    name = "fake"

    def __init__(self, version=P.PROTOCOL_VERSION, ram=4096, max_words=32, credit=1024, mute=False):
        self.version, self.mem, self.max_words, self.credit, self.mute = version, [0] * ram, max_words, credit, mute
        self.expect = 0
        self.rx = bytearray()
        self.out = bytearray()
        self.executed = 0

    def write(self, data):
        self.rx += data
        while (k := self.rx.find(0)) >= 0:
            enc, self.rx = bytes(self.rx[:k]), self.rx[k + 1:]
            if enc and not self.mute:
                self._frame(enc)

    def _send(self, op, seq, status, words=()):
        self.out += P.encode_frame(P.reply(op, seq, status, self.expect, words), lead=False)

    def _frame(self, enc):
        try:
            w = P.decode_frame(enc)
        except P.FrameError:
            return self._send(P.NACK_OP, 0, Status.CRC, [0])
        h = P.unpack(P.REQ_HEADER, w[0])
        op, seq, rop = h["op"], h["seq"], h["op"] | P.RSP_FLAG
        d = P.seq_diff(seq, self.expect)
        if op == Op.IDENTIFY:
            self.expect = (seq + 1) % 256
        elif d == 0:
            self.expect = (self.expect + 1) % 256
        elif d < 128:
            return self._send(rop, seq, Status.SEQUENCE, [0])
        elif op not in P.IDEMPOTENT_OPS:
            return self._send(rop, seq, Status.DUPLICATE, [0])
        self.executed += 1
        if op == Op.IDENTIFY:
            v = P.pack(P.IDENTIFY, magic=P.MAGIC, version_major=self.version[0], version_minor=self.version[1],
                       rx_credit=self.credit, max_words=self.max_words, addr_bits=32, data_bits=32)
            return self._send(rop, seq, Status.OK, P.value_words(P.IDENTIFY, v))
        if op == Op.WRITE:
            a = w[1]
            if a + len(w) - 2 > len(self.mem):
                return self._send(rop, seq, Status.ADDRESS, [len(self.mem)])
            self.mem[a:a + len(w) - 2] = w[2:]
            return self._send(rop, seq, Status.OK)
        if op == Op.READ:
            return self._send(rop, seq, Status.OK, self.mem[w[1]:w[1] + h["arg"]])
        return self._send(rop, seq, Status.OPCODE, [0])

    def read(self, max_bytes, timeout):
        data, self.out = bytes(self.out[:max_bytes]), self.out[max_bytes:]
        return data

    def close(self):
        pass


def test_write_read_roundtrip_and_window():
    board = FakeBoard()
    link = Link(board)
    ident = link.connect()
    assert ident.rx_credit == 1024 and ident.max_words == 32
    assert link.window_bytes < 1024
    data = list(range(1000))
    link.write(10, data)
    assert link.read(10, 1000) == data
    link.flush()


def test_nack_error_names_status_and_address():
    link = Link(FakeBoard(ram=64))
    link.connect()
    link.write(60, [1, 2, 3, 4, 5])
    with pytest.raises(NackError, match=r"WRITE seq \d+: ADDRESS \(address 0x40\)") as e:
        link.flush()
    assert e.value.status == Status.ADDRESS
    link.write(0, [7])  # the link is still usable
    assert link.read(0, 1) == [7]


def test_version_mismatch():
    with pytest.raises(VersionMismatch, match="protocol 2.0"):
        Link(FakeBoard(version=(2, 0))).connect()


def test_timeout_when_board_is_silent():
    link = Link(FakeBoard(mute=True), timeout=0.02, retries=2)
    with pytest.raises(LinkTimeout, match="no reply from fake to IDENTIFY"):
        link.connect()


def test_no_port():
    with pytest.raises(NoPortError, match="/dev/does-not-exist"):
        SerialTransport("/dev/does-not-exist")


@pytest.mark.parametrize("seed", [1, 2])
def test_recovers_from_faults_without_silent_corruption(seed):
    board = FakeBoard(ram=8192, max_words=16, credit=512)
    faulty = FaultInjectingTransport(board, rate=0.01, seed=seed)
    link = Link(faulty, timeout=0.01, retries=8)
    link.connect()
    rng = random.Random(seed)
    data = [rng.getrandbits(32) for _ in range(2048)]
    link.write(0, data)
    link.flush()
    assert board.mem[:2048] == data  # what the board holds
    assert link.read(0, 2048) == data  # what comes back
    assert sum(faulty.counts.values()) > 50
    assert link.stats["rewinds"] > 0


class LaggingFakeBoard(FakeBoard):
    """Replies trickle back (at most 24 bytes per read), so replies to an earlier transmission are
    still on their way after the host has resent: they arrive after their frames completed."""

    def read(self, max_bytes, timeout):
        return super().read(min(max_bytes, 24), timeout)


@pytest.mark.parametrize("seed", [3, 5, 7])
def test_many_queued_frames_under_faults_lose_no_write(seed):
    """More frames queued than there are sequence numbers (1024 writes of 4 words): a stale reply (to a
    frame already acknowledged) must not complete a queued frame that shares its seq mod 256 and was
    never sent (that lost whole runs of writes silently)."""
    board = LaggingFakeBoard(ram=8192, max_words=4, credit=512)
    faulty = FaultInjectingTransport(board, rate=0.01, seed=seed)
    link = Link(faulty, timeout=0.01, retries=8)
    link.connect()
    rng = random.Random(seed)
    data = [rng.getrandbits(32) for _ in range(4096)]
    link.write(0, data)
    link.flush()
    assert link.stats["stale_replies"] > 0  # the case arises
    assert board.mem[:4096] == data


@pytest.mark.parametrize("seed", [4, 9])
def test_frames_shrink_on_a_noisy_line_and_grow_back(seed):
    """The board takes 256-word frames: at 1 % byte faults both ways such a frame (~1 KB) almost never
    arrives whole, so frames of the board's size fail the transfer; the link starts at 16 words, resends
    halve ``frame_words``, clean acknowledgements double it up to the board's limit."""
    board = FakeBoard(ram=8192, max_words=256, credit=4096)
    faulty = FaultInjectingTransport(board, rate=0.01, seed=seed)
    link = Link(faulty, timeout=0.01, retries=8)
    link.connect()
    assert link.frame_words == 16  # FRAME_WORDS_START
    rng = random.Random(seed)
    data = [rng.getrandbits(32) for _ in range(4096)]
    link.write(0, data)
    link.flush()
    assert board.mem[:4096] == data
    assert link.read(0, 4096) == data
    assert link.stats["frame_words_min"] <= 16
    faulty.rate = 0.0  # a clean line: the frame size climbs back to the board's limit
    for _ in range(8):
        assert link.read(0, 4096) == data
    assert link.frame_words == 256


class DropOneReadReply(FakeBoard):
    """Loses the reply to the READ of address ``addr`` once (the board executed it)."""

    def __init__(self, addr, **kw):
        super().__init__(**kw)
        self.addr, self.dropped = addr, 0

    def _send(self, op, seq, status, words=()):
        if op == Op.READ | P.RSP_FLAG and self.last_addr == self.addr and not self.dropped:
            self.dropped += 1
            return None
        return super()._send(op, seq, status, words)

    def _frame(self, enc):
        w = P.decode_frame(enc)
        self.last_addr = w[1] if len(w) > 1 else None
        return super()._frame(enc)


def test_read_many_reads_again_a_reply_lost_behind_a_later_one():
    """A batch of reads (one round trip): the first READ's reply is lost while the later ones arrive; the
    first span is read again (``ReplyLost`` inside, ``rereads`` counted), the data is right; a lone read
    that loses its reply is resent after the timeout (go-back-N)."""
    board = DropOneReadReply(addr=100, ram=512, max_words=16)
    link = Link(board, timeout=0.05)
    link.connect()
    board.mem[:512] = list(range(1000, 1512))
    spans = [(100, 20), (300, 5), (7, 3)]
    assert link.read_many(spans) == [board.mem[a:a + n] for a, n in spans]
    assert board.dropped == 1 and link.stats["rereads"] == 1
    board.dropped = 0
    assert link.read(100, 4) == board.mem[100:104] and board.dropped == 1
