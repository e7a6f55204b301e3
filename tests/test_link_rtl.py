"""Amaranth-simulation unit tests of the link RTL: UART, COBS, CRC, command decoder/executor."""

from collections import deque

import pytest
from amaranth.hdl import Module
from amaranth.lib.wiring import connect
from amaranth.sim import Simulator
from cobs import cobs
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from plasticore import protocol as P
from plasticore.protocol import Op, Status
from plasticore.rtl.board import link_test_top
from plasticore.rtl.bus import TestTarget
from plasticore.rtl.bus_slice import BusSlice
from plasticore.rtl.framing import CobsDecoder, CobsEncoder, CrcAppender, CrcChecker, Pipe
from plasticore.rtl.link import Link
from plasticore.rtl.uart import UARTRx, UARTTx


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


# ------------------------------------------------------------------------------------------------
# UART
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cpb", [4, 5, 16])
def test_uart_loopback_back_to_back(cpb):
    data = [0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80, 0x3C, 0xC3]
    m = Module()
    m.submodules.tx = tx = UARTTx(cpb)
    m.submodules.rx = rx = UARTRx(cpb)
    m.d.comb += rx.rx.eq(tx.tx)
    got, starts = [], []

    async def bench(ctx):
        q = deque(data)
        ctx.set(rx.o.ready, 1)
        for cycle in range(12 * cpb * len(data)):
            ctx.set(tx.i.valid, bool(q))
            if q:
                ctx.set(tx.i.payload, q[0])
            fire = q and ctx.get(tx.i.ready)
            if ctx.get(rx.o.valid):
                got.append(ctx.get(rx.o.payload))
            assert not ctx.get(rx.error)
            await ctx.tick()
            if fire:
                q.popleft()
                starts.append(cycle)
        ctx.set(tx.i.valid, 0)

    run(m, bench)
    assert got == data
    # back to back: exactly 10 bit times per byte
    assert [b - a for a, b in zip(starts[:-1], starts[1:], strict=True)] == [10 * cpb] * (len(data) - 1)


def _drive_uart_bits(ctx, pin, byte_periods):
    """Drive bytes onto ``pin``; byte_periods: list of (byte, clocks per bit, stop clocks)."""

    async def go():
        for byte, cpb, stop in byte_periods:
            bits = [0] + [(byte >> k) & 1 for k in range(8)]
            for b in bits:
                ctx.set(pin, b)
                await ctx.tick().repeat(cpb)
            if stop:
                ctx.set(pin, 1)
                await ctx.tick().repeat(stop)

    return go()


@pytest.mark.parametrize("cpb", [4, 8])
def test_uart_rx_tolerates_short_stop_bit_and_flags_framing_error(cpb):
    """A sender one clock per byte faster than the receiver (short stop bit) loses nothing."""
    dut = UARTRx(cpb)
    data = list(range(0, 256, 7))
    got, errors = [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        await ctx.tick().repeat(5)
        seq = [(b, cpb, cpb - 1) for b in data]  # 10*cpb - 1 clocks per byte, back to back
        seq.append((0x00, cpb, 0))  # break: stop bit 0 follows immediately
        await _drive_uart_bits(ctx, dut.rx, seq)
        ctx.set(dut.rx, 0)
        await ctx.tick().repeat(3 * cpb)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * cpb)
        await _drive_uart_bits(ctx, dut.rx, [(0x5A, cpb, cpb)])
        await ctx.tick().repeat(2 * cpb)

    async def monitor(ctx):
        async for _, _, valid, payload, err in ctx.tick().sample(dut.o.valid, dut.o.payload, dut.error):
            if valid:
                got.append(payload)
            if err:
                errors.append(1)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_process(monitor)
    sim.run()
    assert got == data + [0x5A]
    assert len(errors) == 1


# ------------------------------------------------------------------------------------------------
# COBS and CRC
# ------------------------------------------------------------------------------------------------
def _stream_through(dut, i, o, beats, out_fields, *, expect, ready_pattern=(1,), clocks_per_beat=1):
    """Push ``beats`` (dicts or ints) into stream ``i``; collect ``o`` payloads (as dicts).

    Runs until all ``beats`` are taken and ``expect`` output beats came out, then as long again as
    one beat may take, so a beat too many is seen too.  The bound is derived from the traffic: every
    beat in or out may take ``clocks_per_beat`` clocks (the bit-serial CRC: 9) times the length of
    ``ready_pattern``; running past it fails, saying what was missing.
    """
    got = []
    per_beat = clocks_per_beat * len(ready_pattern)
    bound = (len(beats) + expect + 4) * per_beat + 64
    state = {"left": len(beats), "cycles": 0}

    async def bench(ctx):
        q = deque(beats)
        done_at = None
        for cycle in range(bound):
            if q:
                ctx.set(i.valid, 1)
                ctx.set(i.payload, q[0])
            else:
                ctx.set(i.valid, 0)
            ready = ready_pattern[cycle % len(ready_pattern)]
            ctx.set(o.ready, ready)
            fire_i = bool(q) and ctx.get(i.ready)
            if ready and ctx.get(o.valid):
                p = ctx.get(o.payload)
                got.append({f: getattr(p, f) for f in out_fields} if out_fields else p)
            await ctx.tick()
            if fire_i:
                q.popleft()
            state["left"], state["cycles"] = len(q), cycle + 1
            if done_at is None and not q and len(got) >= expect:
                done_at = cycle
            if done_at is not None and cycle - done_at >= per_beat + 2:
                break

    run(dut, bench)
    assert state["left"] == 0 and len(got) >= expect, (
        f"stream stalled: after {state['cycles']} clocks (bound {bound}), {state['left']} of {len(beats)} "
        f"input beats were not taken and {len(got)} of {expect} output beats came out; last out: {got[-3:]}")
    assert len(got) == expect, f"{len(got) - expect} output beats more than the {expect} expected: {got[expect:]}"
    return got


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(st.binary(min_size=0, max_size=600), min_size=1, max_size=3))
def test_cobs_decoder_matches_python(frames):
    raw = b"".join(cobs.encode(f) + b"\x00" for f in frames)
    dut = CobsDecoder()
    got = _stream_through(dut, dut.i, dut.o, list(raw), ("data", "end", "cobs_err"),
                          expect=sum(len(f) + 1 for f in frames), ready_pattern=(1, 1, 0))
    out, cur = [], bytearray()
    for beat in got:
        if beat["end"]:
            assert not beat["cobs_err"]
            out.append(bytes(cur))
            cur = bytearray()
        else:
            cur.append(beat["data"])
    assert out == frames


def test_cobs_decoder_flags_truncated_block_and_recovers():
    dut = CobsDecoder()
    raw = b"\x05\x01\x02\x00" + cobs.encode(b"\x07\x00\x08") + b"\x00"
    # out: 01 02 end(cobs_err), then 07 00 08 end
    got = _stream_through(dut, dut.i, dut.o, list(raw), ("data", "end", "cobs_err"), expect=7)
    ends = [b for b in got if b["end"]]
    assert [e["cobs_err"] for e in ends] == [1, 0]
    last = [b["data"] for b in got[got.index(ends[0]) + 1:] if not b["end"]]
    assert bytes(last) == b"\x07\x00\x08"


@pytest.mark.parametrize("block_ram", [False, True])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(st.binary(min_size=1, max_size=600), min_size=1, max_size=3))
def test_cobs_encoder_matches_python(frames, block_ram):
    """Both encoder forms (``block_ram``: each byte registered before it goes out) give Python's COBS."""
    beats = [{"data": b, "last": int(k == len(f) - 1)} for f in frames for k, b in enumerate(f)]
    dut = CobsEncoder(block_ram=block_ram)
    expect = sum(len(cobs.encode(f)) + 1 for f in frames)
    got = _stream_through(dut, dut.i, dut.o, beats, None, expect=expect, ready_pattern=(1, 0, 1))
    raw = bytes(got)
    parts = raw.split(b"\x00")
    assert parts[-1] == b""
    assert [cobs.decode(p) for p in parts[:-1]] == frames


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(min_size=1, max_size=200),
       pattern=st.lists(st.booleans(), min_size=1, max_size=7).filter(any))
def test_pipe_passes_every_beat_in_order(data, pattern):
    dut = Pipe(8)
    got = _stream_through(dut, dut.i, dut.o, list(data), None, expect=len(data),
                          ready_pattern=tuple(int(p) for p in pattern))
    assert bytes(got) == data


def test_pipe_full_throughput():
    """With the output always ready, one beat per clock goes through (one clock of latency)."""
    dut = Pipe(8)
    seen = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        for cycle in range(40):
            ctx.set(dut.i.payload, cycle & 0xFF)
            assert ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid):
                seen.append(ctx.get(dut.o.payload))
            await ctx.tick()

    run(dut, bench)
    assert seen == list(range(39))


#: Clocks the bit-serial CRC takes per byte: one to take it, eight to fold it in.
SERIAL_CRC_CLOCKS = 9


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=3), serial=st.booleans())
@example(frames=[bytes(25)] * 3, serial=True)  # once cut short by a fixed 600-clock bound (issue 24)
def test_crc_appender_and_checker(frames, serial):
    """One-clock XOR trees and the bit-serial CRC (small-FPGA link) give the protocol's CRC."""
    app = CrcAppender(serial=serial)
    cpb = SERIAL_CRC_CLOCKS if serial else 1
    beats = [{"data": b, "last": int(k == len(f) - 1)} for f in frames for k, b in enumerate(f)]
    got = _stream_through(app, app.i, app.o, beats, ("data", "last"),
                          expect=sum(len(f) + P.CRC_BYTES for f in frames), clocks_per_beat=cpb)
    out, cur = [], bytearray()
    for b in got:
        cur.append(b["data"])
        if b["last"]:
            out.append(bytes(cur))
            cur = bytearray()
    assert out == [f + P.crc(f).to_bytes(4, "little") for f in frames]

    # checker: good frames pass, a corrupted one is flagged
    chk = CrcChecker(serial=serial)
    bad = bytearray(out[0])
    bad[0] ^= 0x10
    stream = []
    for f in [*out, bytes(bad)]:
        stream += [{"data": b, "end": 0} for b in f] + [{"data": 0, "end": 1}]
    res = _stream_through(chk, chk.i, chk.o, stream, ("end", "crc_err"), expect=len(stream), clocks_per_beat=cpb)
    assert [b["crc_err"] for b in res if b["end"]] == [0] * len(out) + [1]


# ------------------------------------------------------------------------------------------------
# Link executor (byte streams, no UART)
# ------------------------------------------------------------------------------------------------
class LinkBench:
    """Link + TestTarget in Amaranth simulation, driven at the byte-stream level."""

    def __init__(self, bus_slice: bool = False, **kw):
        kw.setdefault("rx_fifo_depth", 2048)
        self.link = Link(**kw)
        self.target = TestTarget(ram_words=64)
        m = Module()
        m.submodules.link = self.link
        m.submodules.target = self.target
        if bus_slice:  # the register slice the fast chip builds put between the link and the chip
            m.submodules.slice = bs = BusSlice(32)
            connect(m, self.link.bus, bs.i)
            connect(m, bs.o, self.target.bus)
        else:
            connect(m, self.link.bus, self.target.bus)
        self.m = m

    def exchange(self, raw: bytes, n_replies: int, max_cycles: int = 60000):
        """Send ``raw`` and return the decoded reply frames (list of word lists or FrameError)."""
        link = self.link
        out = bytearray()

        async def bench(ctx):
            q = deque(raw)
            ctx.set(link.tx.ready, 1)
            for _ in range(max_cycles):
                ctx.set(link.rx.valid, bool(q))
                if q:
                    ctx.set(link.rx.payload, q[0])
                fire = bool(q) and ctx.get(link.rx.ready)
                if ctx.get(link.tx.valid):
                    out.append(ctx.get(link.tx.payload))
                await ctx.tick()
                if fire:
                    q.popleft()
                if out.count(0) >= n_replies and not q:
                    break

        run(self.m, bench)
        frames = bytes(out).split(b"\x00")[:-1]
        res = []
        for f in frames:
            try:
                res.append(P.decode_frame(f))
            except P.FrameError as e:
                res.append(e)
        return res


def hdr(words):
    return P.unpack(P.RSP_HEADER, words[0])


def test_link_identify_write_read_run():
    lb = LinkBench(clocks_per_bit=7, design_id=0x1234ABCD, max_words=16)
    raw = b"".join([
        P.encode_frame(P.request(Op.IDENTIFY, 10)),
        P.encode_frame(P.request(Op.WRITE, 11, words=[3, 0xDEADBEEF, 0x01020304, 0])),
        P.encode_frame(P.request(Op.READ, 12, arg=4, words=[2])),
        P.encode_frame(P.request(Op.RUN, 13, words=[5])),
        P.encode_frame(P.request(Op.READ_FIX, 14, arg=2, words=[TestTarget.STEPS])),
        P.encode_frame(P.request(Op.STATUS, 15)),
    ])
    r = lb.exchange(raw, 6)
    assert len(r) == 6
    h = [hdr(w) for w in r]
    assert [x["status"] for x in h] == [0] * 6
    assert [x["seq"] for x in h] == [10, 11, 12, 13, 14, 15]
    assert [x["expect"] for x in h] == [11, 12, 13, 14, 15, 16]
    assert h[0]["op"] == Op.IDENTIFY | P.RSP_FLAG
    ident = P.unpack(P.IDENTIFY, P.words_value(r[0][1:]))
    assert ident["magic"] == P.MAGIC
    assert (ident["version_major"], ident["version_minor"]) == P.PROTOCOL_VERSION
    assert ident["design_id"] == 0x1234ABCD
    assert ident["max_words"] == 16 and ident["rx_credit"] == 2048 and ident["clocks_per_bit"] == 7
    assert r[1] == [r[1][0]]
    assert r[2][1:] == [0, 0xDEADBEEF, 0x01020304, 0]
    assert r[3][1:] == [5]
    assert r[4][1:] == [5, 5]
    st_ = P.unpack(P.STATUS, P.words_value(r[5][1:]))
    assert st_["frames_ok"] == 6 and st_["crc_errors"] == 0 and st_["cycles"] > 0


def test_lean_link_without_status_counters_or_slices():
    """The small-FPGA link (iCEBreaker chip): no register slices, no STATUS counters, bit-serial CRC.  The other
    commands behave as in the full link; STATUS is an unknown opcode and the capability is not advertised."""
    lb = LinkBench(max_words=16, status_counters=False, pipes=False, serial_crc=True)
    raw = b"".join([
        P.encode_frame(P.request(Op.IDENTIFY, 1)),
        P.encode_frame(P.request(Op.WRITE, 2, words=[3, 0xDEADBEEF, 0x01020304])),
        P.encode_frame(P.request(Op.READ, 3, arg=2, words=[3])),
        P.encode_frame(P.request(Op.STATUS, 4)),
        P.encode_frame(P.request(Op.PING, 5)),
    ])
    r = lb.exchange(raw, 5)
    h = [hdr(w) for w in r]
    assert [x["status"] for x in h] == [0, 0, 0, int(Status.OPCODE), 0]
    ident = P.unpack(P.IDENTIFY, P.words_value(r[0][1:]))
    assert not ident["caps"] & P.Cap.STATUS and ident["caps"] & P.Cap.RUN
    assert r[2][1:] == [0xDEADBEEF, 0x01020304]


@pytest.mark.parametrize("bus_slice", [False, True], ids=["direct", "bus_slice"])
def test_link_errors_and_sequencing(bus_slice):
    lb = LinkBench(bus_slice, max_words=8)
    bad_crc = bytearray(P.encode_frame(P.request(Op.WRITE, 1, words=[0, 7])))
    bad_crc[3] ^= 0x02  # corrupt a byte (not into a delimiter)
    too_long = P.encode_frame(P.request(Op.WRITE, 1, words=[0] + [1] * 9))
    raw = b"".join([
        P.encode_frame(P.request(Op.IDENTIFY, 0)),  # expect := 1
        bytes(bad_crc),  # CRC
        P.encode_frame(P.request(Op.PING, 2)),  # SEQUENCE (ahead)
        too_long,  # TOO_LONG
        P.encode_frame(P.request(0x7E, 1)),  # OPCODE, consumes seq 1
        P.encode_frame(P.request(Op.READ, 2, arg=0, words=[0])),  # LENGTH (count 0), consumes 2
        b"\x00\x03\x01\x02\x05\x00",  # COBS error (code runs past the delimiter)
        P.encode_frame([]),  # empty body -> LENGTH
        P.encode_frame(P.request(Op.PING, 3)),  # OK, expect := 4
        P.encode_frame(P.request(Op.PING, 3)),  # duplicate PING: re-executed (idempotent)
        P.encode_frame(P.request(Op.WRITE, 4, words=[70, 1])),  # ADDRESS (RAM is 64 words)
        P.encode_frame(P.request(Op.WRITE, 4, words=[5, 1])),  # dup of an executed WRITE
        P.encode_frame(P.request(Op.STATUS, 5)),  # the counters of all the above
    ])
    r = lb.exchange(raw, 13)
    assert not [x for x in r if isinstance(x, Exception)]
    st_ = [Status(hdr(w)["status"]) for w in r]
    assert st_ == [Status.OK, Status.CRC, Status.SEQUENCE, Status.TOO_LONG, Status.OPCODE,
                   Status.LENGTH, Status.FRAMING, Status.LENGTH, Status.OK, Status.OK,
                   Status.ADDRESS, Status.DUPLICATE, Status.OK]
    # executed: IDENTIFY, 2 PINGs, the WRITE to 70, STATUS; framing: TOO_LONG, the READ's LENGTH, COBS, empty
    counters = P.unpack(P.STATUS, P.words_value(r[12][1:]))
    assert {k: counters[k] for k in ("frames_ok", "crc_errors", "framing_errors", "seq_errors", "duplicates")} == {
        "frames_ok": 5, "crc_errors": 1, "framing_errors": 4, "seq_errors": 1, "duplicates": 2}
    assert hdr(r[1])["op"] == P.NACK_OP
    assert hdr(r[2])["expect"] == 1
    assert [hdr(r[k])["expect"] for k in (4, 5)] == [2, 3]
    assert r[10][1] == 70  # failing address in the detail word
    assert hdr(r[10])["expect"] == 5  # executed (and consumed its seq) though rejected


@pytest.mark.parametrize("bus_slice", [False, True], ids=["direct", "bus_slice"])
def test_link_max_frame_and_fix_ops(bus_slice):
    lb = LinkBench(bus_slice, max_words=16)
    data = list(range(100, 116))
    raw = b"".join([
        P.encode_frame(P.request(Op.IDENTIFY, 0)),
        P.encode_frame(P.request(Op.WRITE, 1, words=[40, *data])),
        P.encode_frame(P.request(Op.READ, 2, arg=16, words=[40])),
        P.encode_frame(P.request(Op.WRITE_FIX, 3, words=[TestTarget.HASH, 1, 2, 3])),
        P.encode_frame(P.request(Op.READ, 4, arg=2, words=[TestTarget.HASH])),
        P.encode_frame(P.request(Op.RESET, 5)),
        P.encode_frame(P.request(Op.READ, 6, arg=1, words=[TestTarget.COUNT])),
    ])
    r = lb.exchange(raw, 7)
    assert [hdr(w)["status"] for w in r] == [0] * 7
    assert r[2][1:] == data
    h = 0
    for v in (1, 2, 3):
        h = (h * 31 + v) & 0xFFFFFFFF
    assert r[4][1:] == [h, 3]
    assert r[6][1:] == [0]


def test_board_top_through_uart_pins():
    """One identify + write/read round trip through the UART pins at 4 clocks per bit."""
    cpb = 4
    top = link_test_top(clocks_per_bit=cpb, ram_words=64)
    raw = P.encode_frame(P.request(Op.IDENTIFY, 200)) + P.encode_frame(
        P.request(Op.WRITE, 201, words=[1, 0xCAFEF00D])) + P.encode_frame(
        P.request(Op.READ, 202, arg=1, words=[1]))
    out = bytearray()

    async def bench(ctx):
        await ctx.tick().repeat(4)
        for byte in raw:
            for b in [0] + [(byte >> k) & 1 for k in range(8)] + [1]:
                ctx.set(top.uart_rx, b)
                await ctx.tick().repeat(cpb)

    async def monitor(ctx):
        # sample the tx pin in mid-bit
        state, cnt, bits = "idle", 0, []
        async for _, _, tx in ctx.tick().sample(top.uart_tx):
            if state == "idle":
                if not tx:
                    state, cnt, bits = "bits", cpb + cpb // 2 - 1, []
            else:
                cnt -= 1
                if cnt == 0:
                    if len(bits) < 8:
                        bits.append(tx)
                        cnt = cpb
                    else:
                        assert tx == 1
                        out.append(sum(b << k for k, b in enumerate(bits)))
                        state = "idle"

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_process(monitor)
    sim.run_until((len(raw) + 120) * 10 * cpb * 1e-6)  # the monitor never ends
    frames = [P.decode_frame(f) for f in bytes(out).split(b"\x00")[:-1]]
    assert len(frames) == 3
    assert [hdr(f)["status"] for f in frames] == [0, 0, 0]
    assert frames[2][1:] == [0xCAFEF00D]
