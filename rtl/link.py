"""Host-link command decoder/executor.

:class:`Link` takes raw received bytes (from :class:`~plasticore.rtl.uart.UARTRx`), buffers them
in a receive FIFO whose size it advertises as flow-control credit, decodes frames
(COBS + CRC, :mod:`plasticore.rtl.framing`), checks lengths and sequence numbers, executes the
command on a :class:`~plasticore.rtl.bus.BusSignature` port and sends one reply per frame.

Everything about the wire format comes from :mod:`plasticore.protocol`.

Frame handling (see ``docs/protocol.md``):

1. RECV  -- decoded bytes are assembled into little-endian words: word 0 = header, word 1 =
   address/argument, words 2.. go to the frame buffer (``max_words`` data words + the CRC word).
   A frame longer than that is consumed to its end and answered TOO_LONG: the decoder never stalls
   on garbage.  Empty frames (two delimiters in a row) are ignored.
2. CHECK -- frame-level errors by priority FRAMING, CRC, TOO_LONG, LENGTH (alignment); then the
   sequence number: IDENTIFY always executes and resynchronises (expect := seq + 1); the
   expected seq is consumed and the frame executed, or answered OPCODE / LENGTH (per op); a seq
   ahead -> SEQUENCE; behind -> re-execute idempotent ops, else DUPLICATE.
3. EXEC  -- bus transactions (WRITE reads the frame buffer; READ and RUN fill it).
4. REPLY -- header word, then payload words, through the CRC appender and COBS encoder.

Timing (ECP5 at 100 MHz): block RAM read data (the RX FIFO, the frame buffer) goes into a register
before any logic, the bus request (address, write data) comes straight from registers, and a
:class:`~plasticore.rtl.framing.Pipe` register slice separates the RX FIFO,
the decoder, the CRC check, the frame assembly, the reply byte source, the CRC appender, the COBS
encoder and the transmitter, so no combinational path spans two stages; the frame-buffer writes come
from registers and the encoder keeps its block in a block RAM.  This adds a few clocks of latency,
not a byte of difference.

Receiving pauses (the FIFO absorbs the line) while a frame executes and its reply is sent.
"""

from dataclasses import dataclass, field
from itertools import pairwise

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect

from plasticore import protocol as P
from plasticore.protocol import Op, Status

from .bus import BusOp, BusSignature
from .framing import RX_BEAT, TX_BEAT, CobsDecoder, CobsEncoder, CrcAppender, CrcChecker, Pipe, StreamWire
from .stream_slice import stage

__all__ = ["FrameVerdict", "Link"]

assert P.CRC_BYTES % 4 == 0, "the link assembles the CRC as whole words"

# Reply payload sources.
_K_NONE, _K_IDENTIFY, _K_STATUS, _K_BUF, _K_DETAIL = range(5)


@dataclass(frozen=True)
class _Action:
    """What the link does with one opcode; opcodes with equal actions form one opcode class.

    ``length``: the request's words -- ``"bare"`` (the header), ``"arg"`` (header + argument),
    ``"count"`` (header with ``arg`` = n in 1..max_words, + address) or ``"data"`` (header + address +
    1..max_words words).  ``words``: the reply's payload words (``None``: the header's ``arg``;
    ``"data"``: as many as the request's data words).
    ``state``: the FSM state that executes it; ``bus_op``: the bus request it starts on leaving CHECK;
    ``fixed``: every word goes to (comes from) one address (no part of the class).
    """

    length: str
    kind: int
    words: int | str | None
    state: str
    bus_op: BusOp | None = None
    fixed: bool = field(default=False, compare=False)


#: The link's decode table.  A new opcode is its value in :class:`plasticore.protocol.Op`, a row
#: here (a new kind of execution: its states below) and its call in ``host/link.py``.
_ACTIONS: dict[Op, _Action] = {
    Op.IDENTIFY: _Action("bare", _K_IDENTIFY, P.IDENTIFY_WORDS, "REPLY"),
    Op.STATUS: _Action("bare", _K_STATUS, P.STATUS_WORDS, "REPLY"),
    Op.PING: _Action("bare", _K_NONE, 0, "REPLY"),
    Op.ECHO: _Action("data", _K_BUF, "data", "REPLY"),
    Op.WRITE: _Action("data", _K_NONE, 0, "WRITE"),
    Op.WRITE_FIX: _Action("data", _K_NONE, 0, "WRITE", fixed=True),
    Op.READ: _Action("count", _K_BUF, None, "READ_LOAD"),
    Op.READ_FIX: _Action("count", _K_BUF, None, "READ_LOAD", fixed=True),
    Op.RUN: _Action("arg", _K_BUF, 1, "RUN", BusOp.RUN),
    Op.RESET: _Action("bare", _K_NONE, 0, "RESET", BusOp.RESET),
}
assert set(_ACTIONS) == set(Op), "every protocol opcode has a row in the link's decode table"


def _op_classes(ops) -> list[tuple[_Action, tuple[Op, ...]]]:
    """``ops`` grouped by action, in table order."""
    groups: dict[_Action, list[Op]] = {}
    for op in ops:
        groups.setdefault(_ACTIONS[op], []).append(op)
    return [(act, tuple(g)) for act, g in groups.items()]


#: A frame's checks, registered by RECV and PRECHECK: the frame verdict's inputs.
FRAME_CHECKS = data.StructLayout({
    "cobs_err": 1, "crc_err": 1, "too_long": 1,
    "short": 1,  # not whole words, or fewer than header + argument
    "known": 1,  # the opcode exists
    "len_ok": 1,  # its length (and READ count) is valid
    "idempotent": 1,
    "seq_now": 1,  # seq == expected
    "seq_ahead": 1,  # seq ahead of expected (else behind: a repeat)
})


def _verdict_layout(n_classes: int) -> data.StructLayout:
    return data.StructLayout({
        "framing": 1, "crc": 1, "seq": 1, "dup": 1,  # the error counter to bump
        "expect_set": 1, "expect_inc": 1,  # expected seq := seq + 1 / expected + 1
        "nack": 1, "nack_op": 1, "status": 8,  # nack (``nack_op``: with NACK_OP) with ``status``
        "cls": n_classes,  # else execute: the opcode's class (one-hot)
    })


class FrameVerdict(wiring.Component):
    """What CHECK does with a frame: the error counter to bump, the expected sequence number's update,
    nack (with its status) or execute (the opcode's class).

    Priority: FRAMING, CRC, TOO_LONG, LENGTH (alignment); then IDENTIFY executes and resynchronises;
    the expected seq is consumed and executed, or answered OPCODE / LENGTH; a seq ahead -> SEQUENCE;
    behind -> re-execute idempotent ops, else DUPLICATE.  A CRC-valid frame with the expected seq
    consumes it even when rejected: the host then fails that request and moves on.

    ``registered``: the verdict comes from flip-flops one clock after its inputs (``latency`` 1; the
    checks' priority chain and the opcode decode then end in flops, not in the link's state register
    and counter enables); else it is combinational.
    """

    def __init__(self, classes, *, registered: bool):
        self.classes = [tuple(c) for c in classes]
        self.latency = int(registered)
        super().__init__({"checks": In(FRAME_CHECKS), "op": In(8),
                          "verdict": Out(_verdict_layout(len(self.classes)))})

    def elaborate(self, platform):
        m = Module()
        c = self.checks
        v = Signal.like(self.verdict)
        m.d.comb += [v.nack.eq(1), v.cls.eq(Cat(self.op.matches(*ops) for ops in self.classes))]

        def nack(counter, st, frame_level=False):
            m.d.comb += [v.status.eq(st), v.nack_op.eq(frame_level)]
            if counter is not None:
                m.d.comb += counter.eq(1)

        with m.If(c.cobs_err):
            nack(v.framing, Status.FRAMING, True)
        with m.Elif(c.crc_err):
            nack(v.crc, Status.CRC, True)
        with m.Elif(c.too_long):
            nack(v.framing, Status.TOO_LONG, True)
        with m.Elif(c.short):
            nack(v.framing, Status.LENGTH, True)
        with m.Elif((self.op == Op.IDENTIFY) & c.len_ok):
            m.d.comb += [v.expect_set.eq(1), v.nack.eq(0)]
        with m.Elif(c.seq_now):
            m.d.comb += v.expect_inc.eq(1)
            with m.If(~c.known):
                nack(None, Status.OPCODE)
            with m.Elif(~c.len_ok):
                nack(v.framing, Status.LENGTH)
            with m.Else():
                m.d.comb += v.nack.eq(0)
        with m.Elif(c.seq_ahead):
            nack(v.seq, Status.SEQUENCE)
        with m.Elif(c.idempotent & c.len_ok):
            m.d.comb += [v.dup.eq(1), v.nack.eq(0)]
        with m.Else():
            nack(v.dup, Status.DUPLICATE)
        domain = m.d.sync if self.latency else m.d.comb
        domain += self.verdict.eq(v)
        return m


class _BufferRead:
    """The frame buffer's read address.  ``registered``: a flop loaded a clock ahead (:meth:`ahead`), so
    that no decode or adder sits in front of the buffer's read; else ``default`` or the address given
    in the clock of the read (:meth:`now`)."""

    def __init__(self, m: Module, rd, default, registered: bool):
        self.m, self.rd, self.registered = m, rd, registered
        self.raddr = Signal.like(rd.addr, name="raddr") if registered else None
        m.d.comb += rd.addr.eq(self.raddr if registered else default)

    def ahead(self, addr) -> None:
        """(registered) the address of the next clock's read."""
        if self.registered:
            self.m.d.sync += self.raddr.eq(addr)

    def now(self, addr) -> None:
        """(combinational) the address of this clock's read."""
        if not self.registered:
            self.m.d.comb += self.rd.addr.eq(addr)

    def current(self, addr):
        """The address being read: ``raddr``, or ``addr``."""
        return self.raddr if self.registered else addr


class _WordIndex:
    """RECV's tests of the word index ``widx`` (first word, argument word, fits the buffer, one too
    many) and the word's buffer position.  ``registered``: flops updated with ``widx`` (:meth:`step`,
    :meth:`restart`), so that RECV decodes flops only; else decoded from ``widx``."""

    def __init__(self, m: Module, widx, maxw: int, pos_like, registered: bool):
        self.m, self.widx, self.maxw, self.registered = m, widx, maxw, registered
        if registered:
            self.first, self.arg, self.fits, self.full = (
                Signal(init=v, name=n) for v, n in ((1, "w_first"), (0, "w_arg"), (1, "w_fits"), (0, "w_full")))
            self.pos = Signal.like(pos_like, name="w_pos")
        else:
            self.first, self.arg, self.fits, self.full = widx == 0, widx == 1, widx < maxw + 3, widx == maxw + 3
            self.pos = widx - 2

    def step(self) -> None:
        """``widx`` becomes ``widx + 1``."""
        if self.registered:
            w = self.widx
            self.m.d.sync += [self.first.eq(0), self.arg.eq(self.first), self.fits.eq(w + 1 < self.maxw + 3),
                              self.full.eq(w + 1 == self.maxw + 3), self.pos.eq(w - 1)]

    def restart(self) -> None:
        """``widx`` becomes 0."""
        if self.registered:
            self.m.d.sync += [self.first.eq(1), self.arg.eq(0), self.fits.eq(1), self.full.eq(0)]


class Link(wiring.Component):
    """Command decoder/executor of the host link.

    Ports:

    * ``rx`` -- sink of received bytes.  ``rx.ready`` is the FIFO's writable flag; a byte offered
      while it is low is lost and counted in ``rx_overflows`` (flow control prevents it).
    * ``rx_error`` -- pulse from the UART: stop-bit error (counted).
    * ``tx`` -- source of bytes to transmit.
    * ``bus`` -- :class:`~plasticore.rtl.bus.BusSignature` initiator.
    * ``busy`` -- work pending (FIFO not empty, a frame executing or a reply leaving).

    Parameters are advertised in the identify reply (:data:`plasticore.protocol.IDENTIFY`).
    ``pipes``: register slices and registered decodes for a fast clock (see the module docstring);
    without, the same frames and replies with less logic (small, slow FPGAs).
    """

    def __init__(self, *, clocks_per_bit: int = 0, rx_fifo_depth: int = P.DEFAULT_RX_CREDIT,
                 max_words: int = P.DEFAULT_MAX_WORDS, addr_width: int = 32, design_id: int = 0,
                 clk_hz: int = 0, geometry: dict | None = None, caps: int | None = None,
                 status_counters: bool = True, pipes: bool = True, serial_crc: bool = False):
        if not 1 <= max_words <= P.MAX_WORDS_LIMIT:
            raise ValueError(f"max_words must be 1..{P.MAX_WORDS_LIMIT}, got {max_words}")
        max_frame = P.frame_wire_bytes(max_words + 2)
        if not max_frame <= rx_fifo_depth < (1 << 16):
            raise ValueError(
                f"rx_fifo_depth must hold one maximal frame ({max_frame} bytes) and fit 16 bits, "
                f"got {rx_fifo_depth}")
        self.rx_fifo_depth = rx_fifo_depth
        self.max_words = max_words
        self.addr_width = addr_width
        self.status_counters = bool(status_counters)
        self.pipes = bool(pipes)
        self.serial_crc = bool(serial_crc)
        if caps is None:
            caps = P.Cap.RUN | P.Cap.RESET | P.Cap.FIXED | P.Cap.ECHO | (P.Cap.STATUS if status_counters else 0)
        self.identify_value = P.pack(
            P.IDENTIFY, magic=P.MAGIC, version_major=P.PROTOCOL_VERSION[0],
            version_minor=P.PROTOCOL_VERSION[1], caps=int(caps), design_id=design_id,
            rx_credit=rx_fifo_depth, max_words=max_words, clocks_per_bit=clocks_per_bit,
            addr_bits=addr_width, data_bits=P.BUS_DATA_BITS, clk_hz=clk_hz,
            geometry=dict(geometry or {}))
        #: the opcodes this link executes (STATUS only with its counters; else an unknown opcode)
        self.ops = [op for op in _ACTIONS if op != Op.STATUS or self.status_counters]
        super().__init__({
            "rx": In(stream.Signature(8)),
            "rx_error": In(1),
            "tx": Out(stream.Signature(8)),
            "bus": Out(BusSignature(addr_width)),
            "busy": Out(1),
        })

    def _slice(self, shape):
        """A :class:`Pipe` register slice, or a plain connection without ``pipes`` (small, slow FPGAs)."""
        return Pipe(shape) if self.pipes else StreamWire(shape)

    @staticmethod
    def _chain(m: Module, **stages) -> list:
        """Add ``stages`` (stream components with ``i`` / ``o``) as submodules and connect them in a row."""
        for name, st_ in stages.items():
            m.submodules[name] = st_
        st = list(stages.values())
        for a, b in pairwise(st):
            connect(m, a.o, b.i)
        return st

    def _receive_path(self, m: Module):
        """RX FIFO -> slice -> COBS decoder -> slice -> CRC check -> slice; returns the FIFO and the stages.

        (the FIFO's block RAM output goes into a register; the decoder's ``ready`` depends on the byte;
        the decoder and the CRC check are logic enough for one clock)"""
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=self.rx_fifo_depth)
        stages = self._chain(m, rx_pipe=self._slice(8), dec=CobsDecoder(), dec_pipe=self._slice(RX_BEAT),
                             chk=CrcChecker(serial=self.serial_crc), chk_pipe=self._slice(RX_BEAT))
        m.d.comb += [
            fifo.w_data.eq(self.rx.payload),
            fifo.w_en.eq(self.rx.valid),
            self.rx.ready.eq(fifo.w_rdy),
            stages[0].i.payload.eq(fifo.r_data),
            stages[0].i.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(stages[0].i.ready),
        ]
        return fifo, stages

    def _transmit_path(self, m: Module) -> list:
        """slice -> CRC appender -> slice -> COBS encoder (fast FPGAs: its block in a block RAM) -> slice -> tx."""
        stages = self._chain(m, out_pipe=self._slice(TX_BEAT), app=CrcAppender(serial=self.serial_crc),
                             app_pipe=self._slice(TX_BEAT), enc=CobsEncoder(block_ram=self.pipes),
                             tx_pipe=self._slice(8))
        connect(m, stages[-1].o, wiring.flipped(self.tx))
        return stages

    def elaborate(self, platform):
        m = Module()
        fifo, rx = self._receive_path(m)
        tx = self._transmit_path(m)
        m.submodules.buf = buf = Memory(shape=32, depth=self.max_words + 1, init=[])
        m.submodules.verdict = verdict = FrameVerdict([ops for _, ops in _op_classes(self.ops)],
                                                      registered=self.pipes)
        eng = _Engine(self, m, buf, verdict)
        with m.If(self.rx.valid & ~fifo.w_rdy):
            eng.count("rx_overflows")
        with m.If(self.rx_error):
            eng.count("uart_errors")
        with m.FSM() as fsm:
            eng.receive(rx[-1].o)
            eng.check()
            eng.execute()
            eng.reply(tx[0].i)
        m.d.comb += self.busy.eq(~fsm.ongoing("RECV") | fifo.r_rdy
                                 | Cat(st.o.valid for st in [rx[0], rx[-1], *tx]).any())
        return m


class _Engine:
    """The link's frame FSM: its registers, and its states in four groups (receive, check, execute,
    reply) that :meth:`Link.elaborate` puts into one ``m.FSM()``."""

    def __init__(self, link: Link, m: Module, buf, verdict: FrameVerdict):
        self.link, self.m, self.verdict = link, m, verdict
        maxw = self.maxw = link.max_words
        self.acc = Signal(32)
        self.bidx = Signal(2)
        self.widx = Signal(range(maxw + 4))
        self.hdr = Signal(P.REQ_HEADER)
        self.arg1 = Signal(32)
        self.base = self.arg1[:link.addr_width]
        self.checks = Signal(FRAME_CHECKS)
        self.expect = Signal(8)
        self.status = Signal(8)
        self.rop = Signal(8)  # reply opcode
        self.kind = Signal(range(5))
        self.nout = Signal(range(maxw + 2))  # payload words of the reply
        self.i = Signal(range(maxw + 2))
        self.err = Signal()
        self.detail = Signal(32)
        self.wdata = Signal(32)  # frame-buffer word registered for the bus (WRITE)
        self.baddr = Signal(link.addr_width)  # bus address (base + i) registered for READ / WRITE
        # the bus request comes straight from flip-flops: set on entering a request state, cleared
        # when it is accepted (WRITE_REQ, READ, RUN, RESET)
        self.bus_v = Signal()
        self.bus_op = Signal(BusOp)
        bus = link.bus
        m.d.comb += [bus.valid.eq(self.bus_v), bus.op.eq(self.bus_op), bus.addr.eq(self.baddr),
                     bus.w_data.eq(self.wdata)]
        m.d.comb += [verdict.checks.eq(self.checks), verdict.op.eq(self.hdr.op)]
        self._counters()

        # the frame-buffer write request; with ``pipes`` it reaches the block RAM a clock later from
        # registers (no address arithmetic or decode on the route to the RAM). Nothing reads a word
        # within two clocks of its write (RECV -> PRECHECK -> CHECK; READ_WAIT / RUN_WAIT -> REPLY)
        wr = buf.write_port()
        self.wr_addr, self.wr_en, self.wr_data = Signal.like(wr.addr), Signal(), Signal.like(wr.data)
        m.d.comb += [wr.addr.eq(stage(m, self.wr_addr, link.pipes, "wr_addr_q", reset_less=True)),
                     wr.data.eq(stage(m, self.wr_data, link.pipes, "wr_data_q", reset_less=True)),
                     wr.en.eq(stage(m, self.wr_en, link.pipes, "wr_en_q"))]
        self.rd = buf.read_port()
        self.rdaddr = _BufferRead(m, self.rd, self.i, link.pipes)
        self.w = _WordIndex(m, self.widx, maxw, self.wr_addr, link.pipes)
        # the frame's data words (WRITE): a flop with ``pipes`` (``widx`` holds from RECV's end until the
        # next frame; the WRITE loop's compare then starts at flops)
        self.ndata = stage(m, ((self.widx - 1) - 2)[:len(self.i)], link.pipes, "ndata_q")
        # the reply's words: header, then the payload word (of the buffer, ``bword``, or not, ``pword``)
        self.ob = Signal(2)  # byte of the word being sent
        self.pidx = (self.i - 1)[:len(self.i)]
        self.rsp = Signal(P.RSP_HEADER)
        m.d.comb += [self.rsp.op.eq(self.rop), self.rsp.seq.eq(self.hdr.seq), self.rsp.status.eq(self.status),
                     self.rsp.expect.eq(self.expect)]
        self.pword = stage(m, self._payload_word(self.rdaddr.current(self.pidx)), link.pipes, "pword")
        self.bword = stage(m, self.rd.data, link.pipes, "rdata")  # (without ``pipes``: still buf[i - 1])

    def _counters(self) -> None:
        """The STATUS counters (without ``status_counters`` they have no bits: STATUS is then unknown)."""
        widths = {"cycles": 64, "frames_ok": 32, "crc_errors": 16, "framing_errors": 16, "seq_errors": 16,
                  "duplicates": 16, "uart_errors": 16, "rx_overflows": 16}
        self.ctr = {n: Signal(w if self.link.status_counters else 0, name=n) for n, w in widths.items()}
        self.status_value = Signal(P.STATUS)
        self.m.d.comb += [getattr(self.status_value, n).eq(c) for n, c in self.ctr.items()]
        self.count("cycles")

    def count(self, name: str) -> None:
        """Bump counter ``name`` (under the enclosing conditions)."""
        self.m.d.sync += self.ctr[name].eq(self.ctr[name] + 1)

    def set_reply(self, st, kind, n, op=None) -> None:
        """The reply's status, payload source and payload words (opcode: the request's | RSP_FLAG)."""
        self.m.d.sync += [self.status.eq(st), self.kind.eq(kind), self.nout.eq(n),
                          self.rop.eq(self.hdr.op | P.RSP_FLAG if op is None else op)]

    def receive(self, chk_o) -> None:
        """RECV assembles the frame's words; PRECHECK registers its length / opcode / sequence checks
        (timing: the verdict then only combines flip-flops)."""
        m, c, w, hdr, widx, bidx, maxw = self.m, self.checks, self.w, self.hdr, self.widx, self.bidx, self.maxw
        beat = chk_o.payload
        with m.State("RECV"):
            m.d.comb += chk_o.ready.eq(1)
            new_word = Cat(self.acc[8:], beat.data)
            with m.If(chk_o.valid):
                with m.If(beat.end):
                    with m.If(w.first & (bidx == 0)):
                        pass  # empty frame: ignore
                    with m.Else():
                        m.d.sync += [c.cobs_err.eq(beat.cobs_err), c.crc_err.eq(beat.crc_err)]
                        m.next = "PRECHECK"
                with m.Else():
                    m.d.sync += [self.acc.eq(new_word), bidx.eq(bidx + 1)]
                    with m.If(bidx == 3):
                        with m.If(w.first):
                            m.d.sync += hdr.eq(new_word)
                        with m.Elif(w.arg):
                            m.d.sync += self.arg1.eq(new_word)
                        with m.Elif(w.fits):
                            m.d.comb += [self.wr_en.eq(1), self.wr_data.eq(new_word), self.wr_addr.eq(w.pos)]
                        with m.If(w.full):
                            m.d.sync += c.too_long.eq(1)
                        with m.Else():
                            m.d.sync += widx.eq(widx + 1)
                            w.step()

        # nwords = widx - 1 (the CRC word); compared through widx (no subtractor)
        length_ok = {"bare": widx == 2, "arg": widx == 3,
                     "count": (widx == 3) & (hdr.arg != 0) & (hdr.arg <= maxw),
                     "data": (widx >= 4) & (widx <= maxw + 3)}
        diff = (hdr.seq - self.expect)[:8]
        with m.State("PRECHECK"):
            with m.Switch(hdr.op):
                for rule, check in length_ok.items():
                    ops = [op for op in self.link.ops if _ACTIONS[op].length == rule]
                    if ops:
                        with m.Case(*ops):
                            m.d.sync += [c.known.eq(1), c.len_ok.eq(check)]
                with m.Default():
                    m.d.sync += [c.known.eq(0), c.len_ok.eq(0)]
            m.d.sync += [c.idempotent.eq(hdr.op.matches(*P.IDEMPOTENT_OPS)),
                         c.short.eq((bidx != 0) | (widx < 2)), c.seq_now.eq(diff == 0), c.seq_ahead.eq(~diff[7])]
            m.next = "VERDICT" if self.verdict.latency else "CHECK"
        if self.verdict.latency:
            with m.State("VERDICT"):  # the registered verdict is computed
                m.next = "CHECK"

    def check(self) -> None:
        """CHECK acts on the frame verdict: counters, expected seq, then nack or execute."""
        m, v, hdr = self.m, self.verdict.verdict, self.hdr
        with m.State("CHECK"):
            # a RUN's bus address and step count, loaded in every CHECK (only a RUN presents them now;
            # the other requests load their own first): their enables are a state decode
            m.d.sync += [self.err.eq(0), self.detail.eq(0), self.i.eq(0), self.baddr.eq(self.base),
                         self.wdata.eq(self.arg1)]
            self.rdaddr.ahead(0)
            for flag, name in ((v.framing, "framing_errors"), (v.crc, "crc_errors"), (v.seq, "seq_errors"),
                               (v.dup, "duplicates")):
                with m.If(flag):
                    self.count(name)
            with m.If(v.expect_set):
                m.d.sync += self.expect.eq(hdr.seq + 1)
            with m.Elif(v.expect_inc):
                m.d.sync += self.expect.eq(self.expect + 1)
            with m.If(v.nack):
                self.set_reply(v.status, _K_DETAIL, 1, Mux(v.nack_op, P.NACK_OP, hdr.op | P.RSP_FLAG))
                m.next = "REPLY"
            with m.Else():  # execute
                self.count("frames_ok")
                for k, (act, _) in enumerate(_op_classes(self.link.ops)):
                    with (m.If if k == 0 else m.Elif)(v.cls[k]):
                        words = {None: hdr.arg, "data": self.ndata}.get(act.words, act.words)
                        self.set_reply(Status.OK, act.kind, words)
                        if act.bus_op is not None:
                            m.d.sync += [self.bus_v.eq(1), self.bus_op.eq(act.bus_op)]
                        m.next = act.state

    def _bus_error(self, addr) -> None:
        """The first failing address of the request becomes the reply's detail (an ADDRESS nack)."""
        with self.m.If(~self.err):
            self.m.d.sync += [self.err.eq(1), self.detail.eq(addr)]

    def _finish(self) -> None:
        self.m.d.sync += self.i.eq(0)
        self.m.next = "REPLY"

    def execute(self) -> None:
        """The bus transactions: WRITE reads the frame buffer, READ and RUN fill it."""
        m, link, bus, i, rd = self.m, self.link, self.link.bus, self.i, self.rd
        fixed = [op for op in link.ops if _ACTIONS[op].fixed]
        addr_i = Mux(self.hdr.op.matches(*fixed), self.base, (self.base + i)[:link.addr_width])
        ndata = self.ndata
        # whether word i is the last one, registered a state ahead (``i`` holds meanwhile): the
        # next-state decode of WRITE_REQ / READ_WAIT then starts at a flop, not at an adder
        last_i = Signal()

        def request(op, addr):
            m.d.sync += [self.baddr.eq(addr), self.bus_v.eq(1), self.bus_op.eq(op)]

        with m.State("WRITE"):
            m.next = "WRITE_LOAD"  # word i (= 0) of the buffer is read
        with m.State("WRITE_LOAD"):
            # the buffer word i is registered in ``wdata`` before it drives the bus
            request(BusOp.WRITE, addr_i)
            m.d.sync += [self.wdata.eq(rd.data), last_i.eq(i + 1 == ndata)]
            self.rdaddr.ahead(i + 1)  # for WRITE_REQ: the next word
            m.next = "WRITE_REQ"
        with m.State("WRITE_REQ"):
            with m.If(bus.ready):
                m.d.sync += [self.bus_v.eq(0), i.eq(i + 1)]
                with m.If(bus.error):
                    self._bus_error(self.baddr)
                self.rdaddr.now(i + 1)
                with m.If(last_i):
                    self._finish()
                with m.Else():
                    m.next = "WRITE_LOAD"  # word i + 1 is read now

        with m.State("READ_LOAD"):
            request(BusOp.READ, addr_i)
            m.d.sync += last_i.eq(i + 1 == self.hdr.arg)
            m.next = "READ"
        def accepted(state, then):
            with m.State(state):
                with m.If(bus.ready):
                    m.d.sync += self.bus_v.eq(0)
                    m.next = then

        def store(addr, err_addr):  # the read data into the frame buffer (under ``bus.r_valid``)
            m.d.comb += [self.wr_en.eq(1), self.wr_data.eq(bus.r_data), self.wr_addr.eq(addr)]
            with m.If(bus.error):
                self._bus_error(err_addr)

        accepted("READ", "READ_WAIT")
        with m.State("READ_WAIT"):
            with m.If(bus.r_valid):
                store(i, self.baddr)
                m.d.sync += i.eq(i + 1)
                with m.If(last_i):
                    self._finish()
                with m.Else():
                    m.next = "READ_LOAD"

        accepted("RUN", "RUN_WAIT")
        with m.State("RUN_WAIT"):
            with m.If(bus.r_valid):
                store(0, 0)
                self._finish()

        with m.State("RESET"):
            with m.If(bus.ready):
                m.d.sync += self.bus_v.eq(0)
                with m.If(bus.error):
                    self._bus_error(0)
                self._finish()

    def _payload_word(self, index) -> Signal:
        """The reply's payload word ``index`` when it is not the frame buffer's (the reply mux)."""
        m, word = self.m, Signal(32, name="payload_word")
        identify_value = Const(self.link.identify_value, P.IDENTIFY.size)
        with m.Switch(self.kind):
            with m.Case(_K_IDENTIFY):
                m.d.comb += word.eq(identify_value.word_select(index, 32))
            with m.Case(_K_STATUS):
                m.d.comb += word.eq(self.status_value.as_value().word_select(index, 32))
            with m.Case(_K_DETAIL):
                m.d.comb += word.eq(self.detail)
        return word

    def reply(self, out) -> None:
        """Word 0 = header, words 1..nout = payload.  ``i`` is the word being sent; the buffer's read
        address is i - 1 from REPLY_LOAD on; REPLY_WORD registers the word to send in ``word`` (timing:
        REPLY_SEND only picks bytes).  With ``pipes`` the payload word (buffer's or not) is registered in
        REPLY_FETCH, so that the word selects start at flops."""
        m, i = self.m, self.i
        ob, pidx, rsp, pword, bword = self.ob, self.pidx, self.rsp, self.pword, self.bword
        with m.State("REPLY"):
            with m.If(self.err):  # a bus error turns the reply into an ADDRESS nack
                m.d.sync += [self.err.eq(0), self.status.eq(Status.ADDRESS), self.kind.eq(_K_DETAIL),
                             self.nout.eq(1)]
            m.d.sync += [i.eq(0), ob.eq(0)]
            m.next = "REPLY_WORD"
        with m.State("REPLY_LOAD"):
            self.rdaddr.now(pidx)
            m.next = "REPLY_FETCH"
        with m.State("REPLY_FETCH"):
            self.rdaddr.now(pidx)
            m.next = "REPLY_WORD"
        word = Signal(32)
        last_word = Signal()
        with m.State("REPLY_WORD"):
            m.d.sync += [last_word.eq(i == self.nout),
                         word.eq(Mux(i == 0, rsp.as_value(), Mux(self.kind == _K_BUF, bword, pword)))]
            m.next = "REPLY_SEND"
        with m.State("REPLY_SEND"):
            last = last_word & (ob == 3)
            m.d.comb += [out.valid.eq(1), out.payload.data.eq(word.word_select(ob, 8)), out.payload.last.eq(last)]
            with m.If(out.ready):
                m.d.sync += ob.eq(ob + 1)
                with m.If(last):
                    m.d.sync += [self.widx.eq(0), self.bidx.eq(0), self.checks.too_long.eq(0)]
                    self.w.restart()
                    m.next = "RECV"
                with m.Elif(ob == 3):
                    m.d.sync += i.eq(i + 1)
                    self.rdaddr.ahead(i)  # the payload word i (of the new i + 1)
                    m.next = "REPLY_LOAD"
