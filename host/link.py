"""Host side of the plasticore link: framing, CRC, sequencing, ack/nack, retries, pipelining.

Usage::

    from plasticore.host.link import Link
    from plasticore.host.transport import SerialTransport

    with Link(SerialTransport("sim://?top=link_test")) as link:  # a RAM behind the link; or "/dev/ttyUSB0"
        ident = link.connect()                         # identify + resync + version check
        link.write(0x100, words)                       # pipelined; returns once queued on the wire
        data = link.read(0x100, len(words))            # a barrier: waits for everything before it
        link.flush()                                   # wait for all acks, raise the first error

Reliability (go-back-N): every request carries an 8-bit sequence number; the board executes
frames only in sequence order and answers each frame it sees.  On a SEQUENCE nack, a corrupted
reply or a timeout the host resends every unacknowledged frame from the oldest one; writes the
board already executed are answered DUPLICATE (= done), reads are simply re-executed.

Flow control: the bytes of frames for which no reply (to them or to a later frame) has arrived
never exceed the window, which is at most the board's advertised receive-FIFO size (``rx_credit``)
and at most what the line carries in ``latency_target`` seconds at the transport's baud rate.  So
the board's FIFO cannot overflow and an acknowledged byte is never dropped.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Sequence
from typing import NoReturn

from plasticore import protocol as P
from plasticore.protocol import Op, Status

from .transport import NoPortError, Transport, TransportError

__all__ = [
    "BoardIdentity",
    "CrcError",
    "Link",
    "LinkDown",
    "LinkError",
    "LinkTimeout",
    "NackError",
    "NoPortError",
    "NoProgressError",
    "ProtocolError",
    "VersionMismatch",
]


#: the most the timeout grows (doubling per timeout) while the board answers without progress
MAX_BACKOFF = 16
#: data words per frame on a new connection (:attr:`Link.frame_words` grows from there to ``max_words``)
FRAME_WORDS_START = 16
#: the smallest frame size the link shrinks to
FRAME_WORDS_MIN = 4
#: acknowledged frames in a row after which :attr:`Link.frame_words` doubles (towards ``max_words``)
FRAME_GROW_AFTER = 8
#: requests built ahead of the window (a new frame size applies to everything built after it changes)
QUEUE_AHEAD = 2


class LinkError(Exception):
    """Base class of host-link errors."""


class LinkTimeout(LinkError):
    """No (valid) reply within the timeout after all retries."""


class CrcError(LinkTimeout):
    """Retries exhausted and the replies that did arrive were corrupted (CRC/COBS errors)."""


class NoProgressError(LinkError):
    """Retries exhausted while the board kept answering (nacks, stale replies) without any request
    completing; the message says what it answered (op, status, counts)."""


class ReplyLost(LinkError):
    """A request that returns data was executed, but its reply was lost and a later reply arrived
    first (read it again: :meth:`Link.read_many` does, for memory that nothing in between changes)."""


class LinkDown(LinkError):
    """The transport failed (the port closed or vanished, e.g. the board's process died)."""


class NackError(LinkError):
    """The board rejected a request; ``status`` is the :class:`~plasticore.protocol.Status`."""

    def __init__(self, msg: str, status: Status, op: Op, seq: int, detail: int | None = None):
        super().__init__(msg)
        self.status, self.op, self.seq, self.detail = status, op, seq, detail


class ProtocolError(LinkError):
    """The board answered something this host does not understand (wrong magic, bad reply)."""


class VersionMismatch(ProtocolError):
    """The board speaks another major protocol version."""


@dataclasses.dataclass(frozen=True)
class BoardIdentity:
    """Decoded identify reply (:data:`plasticore.protocol.IDENTIFY`)."""

    version: tuple[int, int]
    caps: P.Cap
    design_id: int
    rx_credit: int
    max_words: int
    clocks_per_bit: int
    addr_bits: int
    data_bits: int
    clk_hz: int
    geometry: dict

    @classmethod
    def from_words(cls, words: Sequence[int]) -> BoardIdentity:
        if len(words) != P.IDENTIFY_WORDS:
            raise ProtocolError(f"identify reply has {len(words)} words, expected {P.IDENTIFY_WORDS}")
        f = P.unpack(P.IDENTIFY, P.words_value(words))
        if f["magic"] != P.MAGIC:
            raise ProtocolError(f"not a plasticore board: identify magic {f['magic']:#010x}")
        return cls(version=(f["version_major"], f["version_minor"]), caps=P.Cap(f["caps"]),
                   design_id=f["design_id"], rx_credit=f["rx_credit"], max_words=f["max_words"],
                   clocks_per_bit=f["clocks_per_bit"], addr_bits=f["addr_bits"],
                   data_bits=f["data_bits"], clk_hz=f["clk_hz"], geometry=f["geometry"])


@dataclasses.dataclass(eq=False)
class _Req:
    op: Op
    seq: int
    frame: bytes  # encoded, on-wire
    arg: int = 0
    timeout: float | None = None
    sent: bool = False  # transmitted at least once (only such a request can be answered)
    done: bool = False
    result: list[int] | None = None
    error: LinkError | None = None


@dataclasses.dataclass
class _Tx:
    req: _Req
    end: int  # transmitted-byte count after this frame
    gen: int  # rewind generation when sent


class Link:
    """A connection to one board over a :class:`~plasticore.host.transport.Transport`.

    Args:
        transport: the byte pipe (closed by :meth:`close`).
        timeout: seconds without progress before unacknowledged frames are resent (default:
            from the window and the baud rate, at least 0.5 s; env ``PLASTICORE_LINK_TIMEOUT``).
        retries: consecutive timeouts with nothing at all received before :class:`LinkTimeout`
            (a noisy but live line -- corrupted replies, nacks -- is allowed ``4 * retries``
            consecutive resends without progress).
        latency_target: the window holds at most this many seconds of line time.
        window_bytes: force the window size (bytes, capped by the board's ``rx_credit``).
        max_words: cap the data words per frame (default: the board's ``max_words``).

    The window in frames adapts (halved on every resend, grown by one per acknowledged frame), so
    a lossy line does not resend a whole window for every lost frame.  So does the frame size
    (:attr:`frame_words`, the data words of the READ/WRITE frames built next): it starts at
    :data:`FRAME_WORDS_START`, doubles after :data:`FRAME_GROW_AFTER` acknowledged frames in a row up
    to ``max_words``, and halves on every resend (down to :data:`FRAME_WORDS_MIN`).  At 1 % byte faults a 256-word frame
    almost never arrives whole, an 8-word one does 2 times in 3.  Frames are built when the window
    has room for them, so a new frame size applies within a few frames.
    """

    def __init__(self, transport: Transport, *, timeout: float | None = None, retries: int = 8,
                 latency_target: float = 0.1, window_bytes: int | None = None,
                 max_words: int | None = None):
        self.transport = transport
        self.retries = retries
        self._timeout_arg = timeout
        self.latency_target = latency_target
        self._window_arg = window_bytes
        self._max_words_arg = max_words
        self._cwnd = float(P.MAX_WINDOW_FRAMES)
        self._dead_timeouts = 0
        self._fails = 0
        self._got_bytes = False
        self._backoff = 1  # timeout multiplier: doubles per timeout of a board that still answers
        self.identity: BoardIdentity | None = None
        self.window_bytes = 2048
        self.timeout = timeout or 1.0
        self.max_words = P.DEFAULT_MAX_WORDS
        self.frame_words = self.max_words  #: data words per READ/WRITE frame now (adapts, <= max_words)
        self._clean_frames = 0  # frames acknowledged since the last resend
        self.stats: Counter = Counter()
        self._seq = 0
        self._reqs: list[_Req] = []  # unacknowledged, in seq order
        self._nsent = 0  # how many of _reqs have been sent in the current generation
        self._txlog: list[_Tx] = []
        self._tx_total = 0
        self._credit_mark = 0
        self._gen = 0
        self._deadline = 0.0
        self._rxbuf = bytearray()
        self._errors: list[LinkError] = []
        self._since: Counter = Counter()  # replies since the last progress that made none, by kind
        self._last_reply = ""
        self._progress_t = time.monotonic()

    # ------------------------------------------------------------------------------- public API
    def connect(self) -> BoardIdentity:
        """Identify the board, resynchronise sequence numbers, check the protocol version and
        size the window.  Raises :class:`VersionMismatch`, :class:`ProtocolError`,
        :class:`LinkTimeout`, :class:`LinkDown`."""
        try:
            self.transport.reset_input()
        except OSError as e:  # TransportError, or pyserial's own
            self._down(e)
        self._reqs.clear()
        self._txlog.clear()
        self._nsent = 0
        self._credit_mark = self._tx_total
        self._seq = int.from_bytes(os.urandom(1), "little")
        self.stats["connects"] += 1
        words = self._wait(self._submit(Op.IDENTIFY))
        ident = BoardIdentity.from_words(words)
        if ident.version[0] != P.PROTOCOL_VERSION[0]:
            raise VersionMismatch(
                f"board on {self.transport.name} speaks protocol {ident.version[0]}.{ident.version[1]}, "
                f"this host speaks {P.PROTOCOL_VERSION[0]}.{P.PROTOCOL_VERSION[1]}")
        self.identity = ident
        self.max_words = min(ident.max_words, self._max_words_arg or ident.max_words)
        max_frame = P.frame_wire_bytes(ident.max_words + 2)
        window = ident.rx_credit - max(16, ident.rx_credit // 32)  # margin for line noise
        if self.transport.baudrate:
            window = min(window, max(max_frame, int(self.transport.baudrate / 10 * self.latency_target)))
        if self._window_arg is not None:
            window = min(window, self._window_arg)
        if window < max_frame:
            max_words = (window - P.frame_wire_bytes(2)) // 4
            if max_words < 1:
                raise ProtocolError(f"window of {window} bytes cannot hold a frame")
            self.max_words = min(self.max_words, max_words)
        self.window_bytes = window
        self.frame_words = min(self.max_words, FRAME_WORDS_START)
        self._clean_frames = 0
        if self._timeout_arg is not None:
            self.timeout = self._timeout_arg
        elif os.environ.get("PLASTICORE_LINK_TIMEOUT"):
            self.timeout = float(os.environ["PLASTICORE_LINK_TIMEOUT"])
        else:
            line = 10 * 2 * window / self.transport.baudrate if self.transport.baudrate else 0.0
            self.timeout = max(0.5, 4 * line)
        return ident

    def identify(self) -> BoardIdentity:
        return self.connect()

    def status(self) -> dict:
        """The board's STATUS counters (:data:`plasticore.protocol.STATUS`)."""
        return P.unpack(P.STATUS, P.words_value(self._wait(self._submit(Op.STATUS))))

    def ping(self) -> None:
        self._wait(self._submit(Op.PING))

    def echo(self, words: Sequence[int]) -> list[int]:
        """Send ``words`` to the board and back (ECHO frames of at most :attr:`frame_words` words: the
        framing, CRC and COBS of both directions, no bus access); returns what came back (a barrier).
        Raises :class:`ProtocolError` if the board lacks ECHO (``Cap.ECHO``) or answers other words."""
        if self.identity is not None and not self.identity.caps & P.Cap.ECHO:
            raise ProtocolError("the board does not implement ECHO (its bitstream predates protocol 1.1)")
        words = [w & 0xFFFFFFFF for w in words]
        out: list[int] = []
        while len(out) < len(words):
            chunk = words[len(out):len(out) + self.frame_words]
            got = self._wait(self._submit(Op.ECHO, words=[0, *chunk]))
            if got != chunk:
                raise ProtocolError(f"ECHO of {len(chunk)} words came back as {len(got)} other words")
            out += got
        return out

    def write(self, addr: int, words: Sequence[int], fixed: bool = False) -> None:
        """Write ``words`` to ``addr, addr+1, ...`` (or all to ``addr`` if ``fixed``).

        Pipelined: returns once the frames are on the wire (or queued behind the window); errors
        surface at the next :meth:`flush`, :meth:`read` or other waiting call.
        """
        op = Op.WRITE_FIX if fixed else Op.WRITE
        words = list(words)
        k = 0
        while k < len(words):
            while len(self._reqs) - self._nsent >= QUEUE_AHEAD:
                self._pump(block=True)
            chunk = words[k:k + self.frame_words]
            self._submit(op, words=[addr if fixed else addr + k, *chunk])
            k += len(chunk)
            self._pump(block=False)

    def read(self, addr: int, n: int, fixed: bool = False) -> list[int]:
        """Read ``n`` words (a barrier: all earlier requests complete first)."""
        return self.read_many([(addr, n)], fixed=fixed)[0]

    def read_many(self, spans: Sequence[tuple[int, int]], fixed: bool = False) -> list[list[int]]:
        """Read ``n`` words at ``addr`` for every ``(addr, n)`` of ``spans``, with every READ frame on the
        wire before the first reply is awaited (one round trip, not one per span); a barrier.  Only for
        memory that nothing queued with the reads changes: a READ whose reply is lost is executed again."""
        op = Op.READ_FIX if fixed else Op.READ
        parts: list[tuple[_Req, int, int]] = []  # (request, its first word's address, words)
        for addr, n in spans:
            k = 0
            while k < n:
                while len(self._reqs) - self._nsent >= QUEUE_AHEAD:
                    self._pump(block=True)
                cnt = min(self.frame_words, n - k)
                a = addr if fixed else addr + k
                parts.append((self._submit(op, arg=cnt, words=[a]), a, cnt))
                k += cnt
                self._pump(block=False)
        got = [(self._fetch(req, op, a, cnt), a, cnt) for req, a, cnt in parts]
        out: list[list[int]] = []
        i = 0
        for _, n in spans:
            words: list[int] = []
            while len(words) < n:
                w, a, cnt = got[i]
                if len(w) != cnt:
                    raise ProtocolError(f"READ of {cnt} words at {a:#x} returned {len(w)}")
                words += w
                i += 1
            out.append(words)
        return out

    def _fetch(self, req: _Req, op: Op, addr: int, cnt: int) -> list[int]:
        """The words of READ ``req``; a reply lost behind a later one is read again (new requests)."""
        for _ in range(self.retries):
            try:
                return self._wait(req)
            except ReplyLost:
                self.stats["rereads"] += 1
                req = self._submit(op, arg=cnt, words=[addr])
        return self._wait(req)

    def run(self, arg: int, timeout: float | None = None) -> int | None:
        """RUN with ``arg`` (e.g. steps); returns the target's result word once the run is done
        (``None`` if the run executed but its reply was lost).  ``timeout`` bounds the run itself
        (default: the link timeout)."""
        req = self._submit(Op.RUN, words=[arg & 0xFFFFFFFF])
        if timeout is not None:
            req.timeout = self.timeout + timeout
        res = self._wait(req)
        return res[0] if res else None

    def reset(self) -> None:
        self._wait(self._submit(Op.RESET))

    def flush(self) -> None:
        """Wait until every request is acknowledged; raise the first error seen."""
        while self._reqs:
            self._pump(block=True)
        self._raise_pending()

    def close(self) -> None:
        try:
            self.transport.close()
        except TransportError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------------------- engine
    def _submit(self, op: Op, arg: int = 0, words: Sequence[int] = ()) -> _Req:
        if not self._reqs:
            self._progress_t = time.monotonic()
        seq = self._seq
        self._seq = (self._seq + 1) % P.SEQ_MODULO
        frame = P.encode_frame(P.request(op, seq, arg, words))
        req = _Req(op=op, seq=seq, frame=frame, arg=arg)
        self._reqs.append(req)
        return req

    def _wait(self, req: _Req) -> list[int]:
        while not req.done:
            self._pump(block=True)
        self._raise_pending()
        if req.error:
            raise req.error
        return req.result or []

    def _raise_pending(self):
        if self._errors:
            err = self._errors.pop(0)
            self._errors.clear()
            raise err

    def _in_flight(self) -> int:
        return self._tx_total - self._credit_mark

    def _arm(self) -> None:
        if self._reqs:
            self._deadline = time.monotonic() + (self._reqs[0].timeout or self.timeout) * self._backoff

    def _send_some(self) -> None:
        limit = min(P.MAX_WINDOW_FRAMES, max(1, int(self._cwnd)))
        while self._nsent < len(self._reqs) and self._nsent < limit:
            req = self._reqs[self._nsent]
            if self._in_flight() + len(req.frame) > self.window_bytes and self._in_flight() > 0:
                break
            if self._nsent == 0:
                self._arm()
            try:
                self.transport.write(req.frame)
            except OSError as e:
                self._down(e)
            req.sent = True
            self._tx_total += len(req.frame)
            self._txlog.append(_Tx(req, self._tx_total, self._gen))
            self._nsent += 1
            self.stats["frames_sent"] += 1
            self.stats["bytes_sent"] += len(req.frame)

    def _pump(self, block: bool) -> None:
        """Send what the window allows, then process replies (waiting for one if ``block``)."""
        self._send_some()
        if not self._reqs:
            return
        window_full = self._nsent < len(self._reqs)
        wait = max(0.0, self._deadline - time.monotonic()) if (block or window_full) else 0.0
        try:
            data = self.transport.read(1 << 16, wait)
        except OSError as e:
            self._down(e)
        if data:
            self._got_bytes = True
            self.stats["bytes_received"] += len(data)
            self._rxbuf += data
            self._parse()
        elif (block or window_full) and time.monotonic() >= self._deadline:
            self._on_timeout()

    def _parse(self) -> None:
        while True:
            k = self._rxbuf.find(0)
            if k < 0:
                return
            enc = bytes(self._rxbuf[:k])
            del self._rxbuf[:k + 1]
            if not enc:
                continue
            try:
                words = P.decode_frame(enc)
            except P.FrameError as e:
                self.stats["bad_replies"] += 1
                self._note("corrupted reply", f"a corrupted reply ({e})")
                self._maybe_fast_rewind("bad_reply")
                continue
            self._on_reply(words)

    def _maybe_fast_rewind(self, reason: str) -> None:
        """A reply we cannot attribute (corrupted, or a nack of an unreadable frame): if at most
        one frame of the current generation is unanswered, it must be that one -- resend now
        instead of waiting for the timeout; otherwise later replies will tell."""
        cur = [t for t in self._txlog if t.gen == self._gen]
        if len(cur) <= 1 and self._reqs:
            self._rewind(reason)

    def _rewind(self, reason: str) -> None:
        """Go back N: resend every unacknowledged frame, oldest first."""
        self.stats["rewinds"] += 1
        self.stats[f"rewind_{reason}"] += 1
        self._gen += 1
        self._nsent = 0
        self._cwnd = max(1.0, self._cwnd / 2)
        self.frame_words = max(min(FRAME_WORDS_MIN, self.max_words), self.frame_words // 2)
        self._clean_frames = 0
        self.stats["frame_words_min"] = min(self.stats.get("frame_words_min", self.max_words), self.frame_words)
        self._fails += 1
        if self._reqs and (self._fails > 4 * self.retries or self._dead_timeouts > self.retries):
            self._fail_timeout(self._reqs[0], reason)
            return
        self._send_some()

    def _note(self, kind: str, last: str) -> None:
        """Count a reply that made no progress (for the error message if retries run out)."""
        self._since[kind] += 1
        self._last_reply = last

    def _fail_timeout(self, req: _Req, reason: str) -> None:
        what = f"{req.op.name} seq {req.seq}"
        dead = self._dead_timeouts > self.retries
        fails, answers = self._fails, sum(self._since.values())
        elapsed = time.monotonic() - self._progress_t
        name = self.transport.name
        if dead or not answers:
            err: LinkError = LinkTimeout(
                f"no reply from {name} to {what} for {elapsed:.1f} s ({self.stats['timeouts']} timeouts of "
                f"{self.timeout:.2f} s so far, last cause: {reason}); is the board running and the port right?")
        elif set(self._since) == {"corrupted reply"}:
            err = CrcError(
                f"no valid reply from {name} to {what} in {elapsed:.1f} s and {fails} resends: {answers} "
                f"corrupted replies (CRC/COBS errors)")
        else:
            kinds = ", ".join(f"{k} x{n}" for k, n in self._since.most_common())
            err = NoProgressError(
                f"board on {name} kept answering without accepting {what}: {answers} replies in {elapsed:.1f} s "
                f"and {fails} resends ({kinds}); last: {self._last_reply}")
        self._fails = self._dead_timeouts = 0
        self._since.clear()
        self._fail_all(err)

    def _fail_all(self, err: LinkError) -> None:
        # Everything outstanding fails; the link stays usable after connect().
        for r in self._reqs:
            r.done, r.error = True, err
        self._reqs.clear()
        self._txlog.clear()
        self._nsent = 0
        self._credit_mark = self._tx_total
        self._errors.append(err)

    def _down(self, e: Exception) -> NoReturn:
        """The transport failed: fail everything outstanding and raise :class:`LinkDown`."""
        err = LinkDown(f"the port failed ({e})")
        self._fail_all(err)
        self._errors.clear()
        raise err from None

    def _on_timeout(self) -> None:
        self.stats["timeouts"] += 1
        self._dead_timeouts = 0 if self._got_bytes else self._dead_timeouts + 1
        # a board that answered since the last timeout is alive but slower than the timeout (a loaded
        # simulator, a backlog of resent frames): wait longer next time, or resends only add backlog.
        # A silent one keeps the plain timeout, so a dead board is still found in ``retries`` timeouts
        self._backoff = min(MAX_BACKOFF, 2 * self._backoff) if self._got_bytes else 1
        self._got_bytes = False
        self._credit_mark = self._tx_total  # after a timeout the board's FIFO has drained
        self._txlog.clear()
        self._rewind("timeout")

    def _find_sent(self, seq: int, also_next: bool = False) -> int | None:
        """Index in ``_reqs`` of the request with ``seq`` among those sent (a prefix of ``_reqs``), or
        with ``also_next`` the first unsent one.  More requests may be queued than there are sequence
        numbers: a reply (a late one to a frame already acknowledged, say) must never match a queued
        request that was never sent, or every request before it would be taken as executed."""
        for k, r in enumerate(self._reqs):
            if r.seq == seq and (r.sent or also_next):
                return k
            if not r.sent:
                return None
        return None

    def _match_tx(self, seq: int) -> _Tx | None:
        for tx in self._txlog:
            if tx.req.seq == seq and tx.end > self._credit_mark:
                return tx
        return None

    def _free_credit(self, tx: _Tx) -> None:
        self._credit_mark = max(self._credit_mark, tx.end)
        self._txlog = [t for t in self._txlog if t.end > self._credit_mark]

    def _complete_through(self, idx: int, result=None, error: LinkError | None = None) -> None:
        """Complete _reqs[0..idx] (``_reqs[idx]`` with ``result`` / ``error``); the earlier ones were
        executed (their replies were lost), and so was ``_reqs[idx]`` when neither is given."""
        for k in range(idx + 1):
            r = self._reqs[k]
            r.done = True
            if k == idx and (result is not None or error is not None):
                r.result, r.error = result, error
            elif r.op in (Op.READ, Op.STATUS, Op.IDENTIFY, Op.ECHO):
                # executed but the data is lost (only where requests follow it: a batch of reads)
                r.error = ReplyLost(f"reply to {r.op.name} seq {r.seq} lost")
        del self._reqs[:idx + 1]
        self._nsent = max(0, self._nsent - (idx + 1))
        self._cwnd = min(float(P.MAX_WINDOW_FRAMES), self._cwnd + idx + 1)
        self._clean_frames += idx + 1
        if self._clean_frames >= FRAME_GROW_AFTER and self.frame_words < self.max_words:
            self.frame_words = min(self.max_words, 2 * self.frame_words)
            self._clean_frames = 0
        self._fails = self._dead_timeouts = 0
        self._since.clear()
        self._progress_t = time.monotonic()
        self._backoff = 1
        self._arm()
        if error is not None:
            self._errors.append(error)

    def _on_reply(self, words: list[int]) -> None:
        self.stats["replies"] += 1
        h = P.unpack(P.RSP_HEADER, words[0])
        try:
            status = Status(h["status"])
        except ValueError:
            self.stats["bad_replies"] += 1
            self._note("reply with unknown status", f"a reply with status {h['status']}")
            return
        seq, payload = h["seq"], words[1:]
        desc = f"op {h['op']:#04x} seq {seq} status {status.name} expect {h['expect']}"
        if h["op"] == P.NACK_OP:  # the board could not read one of our frames
            self.stats[f"nack_{status.name}"] += 1
            self._note(f"NACK {status.name}", desc)
            self._maybe_fast_rewind(status.name.lower())
            return
        tx = self._match_tx(seq)
        if tx is not None:
            self._free_credit(tx)
        idx = self._find_sent(seq)
        if idx is None or h["op"] != (self._reqs[idx].op | P.RSP_FLAG):
            self.stats["stale_replies"] += 1
            self._note(f"stale {status.name}", desc)
            return
        req = self._reqs[idx]
        if status == Status.OK:
            self._complete_through(idx, result=payload)
        elif status == Status.DUPLICATE:
            self.stats["duplicates"] += 1
            if req.op in P.IDEMPOTENT_OPS or req.op == Op.READ_FIX:
                err = LinkError(f"{req.op.name} seq {seq} executed but its reply was lost")
                self._complete_through(idx, error=err)
            else:
                self._complete_through(idx, result=None)
        elif status == Status.SEQUENCE:
            self.stats["nack_SEQUENCE"] += 1
            self._note(f"{req.op.name} SEQUENCE", desc)
            expect = h["expect"]
            if tx is not None and tx.gen == self._gen:
                # frames before `expect` were executed: their replies were lost
                k = self._find_sent(expect, also_next=True)
                if k:
                    self._complete_through(k - 1, result=None)
                self._rewind("sequence")
        else:
            detail = payload[0] if payload else None
            where = f" (address {detail:#x})" if status == Status.ADDRESS and detail is not None else ""
            err = NackError(f"board rejected {req.op.name} seq {seq}: {status.name}{where}",
                            status, req.op, seq, detail)
            self._complete_through(idx, error=err)
