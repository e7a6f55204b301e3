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

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect

from plasticore import protocol as P
from plasticore.protocol import Op, Status

from .bus import BusOp, BusSignature
from .framing import RX_BEAT, TX_BEAT, CobsDecoder, CobsEncoder, CrcAppender, CrcChecker, Pipe, StreamWire

__all__ = ["Link"]

assert P.CRC_BYTES % 4 == 0, "the link assembles the CRC as whole words"

# Reply payload sources.
_K_NONE, _K_IDENTIFY, _K_STATUS, _K_BUF, _K_DETAIL = range(5)


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
            caps = P.Cap.RUN | P.Cap.RESET | P.Cap.FIXED | (P.Cap.STATUS if status_counters else 0)
        self.identify_value = P.pack(
            P.IDENTIFY, magic=P.MAGIC, version_major=P.PROTOCOL_VERSION[0],
            version_minor=P.PROTOCOL_VERSION[1], caps=int(caps), design_id=design_id,
            rx_credit=rx_fifo_depth, max_words=max_words, clocks_per_bit=clocks_per_bit,
            addr_bits=addr_width, data_bits=P.BUS_DATA_BITS, clk_hz=clk_hz,
            geometry=dict(geometry or {}))
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

    def elaborate(self, platform):
        m = Module()
        maxw = self.max_words
        bus = self.bus

        # ---------------- receive path: FIFO -> COBS -> CRC -------------------------------------
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=self.rx_fifo_depth)
        m.submodules.rx_pipe = rx_pipe = self._slice(8)  # the FIFO's block RAM output goes into a register
        m.submodules.dec = dec = CobsDecoder()
        m.submodules.chk = chk = CrcChecker(serial=self.serial_crc)
        m.d.comb += [
            fifo.w_data.eq(self.rx.payload),
            fifo.w_en.eq(self.rx.valid),
            self.rx.ready.eq(fifo.w_rdy),
            rx_pipe.i.payload.eq(fifo.r_data),
            rx_pipe.i.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(rx_pipe.i.ready),
        ]
        connect(m, rx_pipe.o, dec.i)
        # and a slice between the decoder and the CRC check (the decoder's ``ready`` depends on the byte)
        m.submodules.dec_pipe = dec_pipe = self._slice(RX_BEAT)
        connect(m, dec.o, dec_pipe.i)
        connect(m, dec_pipe.o, chk.i)
        # the checked beats reach the frame assembly from a register slice (the decoder and the CRC
        # check are logic enough for one clock)
        m.submodules.chk_pipe = chk_pipe = self._slice(RX_BEAT)
        connect(m, chk.o, chk_pipe.i)
        chk_o = chk_pipe.o
        beat = chk_o.payload

        # ---------------- transmit path: bytes -> CRC -> COBS -> tx, a register slice between -----
        m.submodules.out_pipe = out_pipe = self._slice(TX_BEAT)
        m.submodules.app = app = CrcAppender(serial=self.serial_crc)
        m.submodules.app_pipe = app_pipe = self._slice(TX_BEAT)
        m.submodules.enc = enc = CobsEncoder(block_ram=self.pipes)  # (fast FPGAs: a block RAM)
        m.submodules.tx_pipe = tx_pipe = self._slice(8)
        connect(m, out_pipe.o, app.i)
        connect(m, app.o, app_pipe.i)
        connect(m, app_pipe.o, enc.i)
        connect(m, enc.o, tx_pipe.i)
        connect(m, tx_pipe.o, wiring.flipped(self.tx))
        out = out_pipe.i

        # ---------------- frame buffer -----------------------------------------------------------
        m.submodules.buf = buf = Memory(shape=32, depth=maxw + 1, init=[])
        wr = buf.write_port()
        rd = buf.read_port()

        # ---------------- state ------------------------------------------------------------------
        acc = Signal(32)
        bidx = Signal(2)
        widx = Signal(range(maxw + 4))
        hdr = Signal(P.REQ_HEADER)
        arg1 = Signal(32)
        cobs_err = Signal()
        crc_err = Signal()
        too_long = Signal()

        expect = Signal(8)
        status = Signal(8)
        rop = Signal(8)  # reply opcode
        kind = Signal(range(5))
        nout = Signal(range(maxw + 2))  # payload words of the reply
        i = Signal(range(maxw + 2))
        err = Signal()
        detail = Signal(32)
        wdata = Signal(32)  # frame-buffer word registered for the bus (WRITE)
        rdata = Signal(32)  # frame-buffer word registered for the reply (READ, RUN)
        baddr = Signal(self.addr_width)  # bus address (base + i) registered for READ / WRITE
        # the bus request comes straight from flip-flops: set on entering a request state,
        # cleared when it is accepted (WRITE_REQ, READ, RUN, RESET)
        bus_v = Signal()
        bus_op = Signal(BusOp)
        m.d.comb += [bus.valid.eq(bus_v), bus.op.eq(bus_op), bus.addr.eq(baddr), bus.w_data.eq(wdata)]
        # frame classification, registered in PRECHECK
        known = Signal()  # the opcode exists
        len_ok = Signal()  # its length (and READ count) is valid
        idempotent = Signal()
        short = Signal()  # not whole words, or fewer than header + argument
        seq_now = Signal()  # seq == expected
        seq_ahead = Signal()  # seq ahead of expected (else behind: a repeat)

        # counters (STATUS)
        # (without ``status_counters`` they have no bits: STATUS is then an unknown opcode)
        def counter(width, name):
            return Signal(width if self.status_counters else 0, name=name)

        cycles = counter(64, "cycles")
        frames_ok = counter(32, "frames_ok")
        crc_errors = counter(16, "crc_errors")
        framing_errors = counter(16, "framing_errors")
        seq_errors = counter(16, "seq_errors")
        duplicates = counter(16, "duplicates")
        uart_errors = counter(16, "uart_errors")
        rx_overflows = counter(16, "rx_overflows")
        m.d.sync += cycles.eq(cycles + 1)
        with m.If(self.rx_error):
            m.d.sync += uart_errors.eq(uart_errors + 1)
        with m.If(self.rx.valid & ~fifo.w_rdy):
            m.d.sync += rx_overflows.eq(rx_overflows + 1)

        status_value = Signal(P.STATUS)
        m.d.comb += [
            status_value.cycles.eq(cycles),
            status_value.frames_ok.eq(frames_ok),
            status_value.crc_errors.eq(crc_errors),
            status_value.framing_errors.eq(framing_errors),
            status_value.seq_errors.eq(seq_errors),
            status_value.duplicates.eq(duplicates),
            status_value.uart_errors.eq(uart_errors),
            status_value.rx_overflows.eq(rx_overflows),
        ]
        identify_value = Const(self.identify_value, P.IDENTIFY.size)

        op = hdr.op
        seq = hdr.seq
        nwords = widx - 1  # frame words without the CRC word
        ndata = (nwords - 2)[:len(i)]
        if self.pipes:
            # (a flop: ``widx`` holds from RECV's end until the next frame, and the WRITE loop, which
            # compares against it, starts states later; the compare then starts at flops)
            ndata_q = Signal(len(i), name="ndata_q")
            m.d.sync += ndata_q.eq(ndata)
            ndata_loop = ndata_q
        else:
            ndata_loop = ndata
        diff = (seq - expect)[:8]
        base = arg1[:self.addr_width]
        addr_i = Mux((op == Op.WRITE_FIX) | (op == Op.READ_FIX), base, (base + i)[:self.addr_width])

        # the frame-buffer write request (made below); with ``pipes`` it reaches the block RAM a clock
        # later from registers (no address arithmetic or decode on the route to the RAM). Nothing reads
        # a word within two clocks of its write (RECV -> PRECHECK -> CHECK; READ_WAIT / RUN_WAIT -> REPLY)
        wr_addr = Signal.like(wr.addr)
        wr_en = Signal()
        wr_data = Signal.like(wr.data)
        if self.pipes:
            wr_addr_q = Signal.like(wr.addr, reset_less=True)
            wr_data_q = Signal.like(wr.data, reset_less=True)
            wr_en_q = Signal()
            m.d.sync += [wr_addr_q.eq(wr_addr), wr_data_q.eq(wr_data), wr_en_q.eq(wr_en)]
            m.d.comb += [wr.addr.eq(wr_addr_q), wr.data.eq(wr_data_q), wr.en.eq(wr_en_q)]
        else:
            m.d.comb += [wr.addr.eq(wr_addr), wr.data.eq(wr_data), wr.en.eq(wr_en)]
        # the frame buffer's read address: ``i`` (and ``i + 1``, ``i - 1`` in some states, below); with
        # ``pipes`` a flop (``raddr``) loaded with that address a clock ahead, so that no decode or
        # adder sits in front of the buffer's (LUT RAM) read
        if self.pipes:
            raddr = Signal.like(rd.addr, name="raddr")
            m.d.comb += rd.addr.eq(raddr)
        else:
            m.d.comb += rd.addr.eq(i)

        def reply(st, kind_, n, op_=None):
            m.d.sync += [status.eq(st), kind.eq(kind_), nout.eq(n),
                         rop.eq(op | P.RSP_FLAG if op_ is None else op_)]

        def nack(st, op_=None, detail_=0):
            reply(st, _K_DETAIL, 1, op_)
            m.d.sync += detail.eq(detail_)
            m.next = "REPLY"

        # the word index's tests in RECV (first word, argument word, fits the buffer, one too many) and
        # its buffer position; with ``pipes`` flops updated with ``widx``, so RECV decodes flops only
        if self.pipes:
            w_first, w_arg, w_fits, w_full = (Signal(init=v, name=n) for v, n in
                                              ((1, "w_first"), (0, "w_arg"), (1, "w_fits"), (0, "w_full")))
            w_pos = Signal.like(wr_addr, name="w_pos")

            def step_widx():
                m.d.sync += [w_first.eq(0), w_arg.eq(w_first), w_fits.eq(widx + 1 < maxw + 3),
                             w_full.eq(widx + 1 == maxw + 3), w_pos.eq(widx - 1)]

            def reset_widx():
                m.d.sync += [w_first.eq(1), w_arg.eq(0), w_fits.eq(1), w_full.eq(0)]
        else:
            w_first, w_arg, w_fits, w_full, w_pos = widx == 0, widx == 1, widx < maxw + 3, widx == maxw + 3, widx - 2

            def step_widx():
                pass

            def reset_widx():
                pass

        with m.FSM() as fsm:
            # ------------------------------------------------------------------------------------
            with m.State("RECV"):
                m.d.comb += chk_o.ready.eq(1)
                new_word = Cat(acc[8:], beat.data)
                with m.If(chk_o.valid):
                    with m.If(beat.end):
                        with m.If(w_first & (bidx == 0)):
                            pass  # empty frame: ignore
                        with m.Else():
                            m.d.sync += [cobs_err.eq(beat.cobs_err), crc_err.eq(beat.crc_err)]
                            m.next = "PRECHECK"
                    with m.Else():
                        m.d.sync += [acc.eq(new_word), bidx.eq(bidx + 1)]
                        with m.If(bidx == 3):
                            with m.If(w_first):
                                m.d.sync += hdr.eq(new_word)
                            with m.Elif(w_arg):
                                m.d.sync += arg1.eq(new_word)
                            with m.Elif(w_fits):
                                m.d.comb += [wr_en.eq(1), wr_data.eq(new_word),
                                             wr_addr.eq(w_pos)]
                            with m.If(w_full):
                                m.d.sync += too_long.eq(1)
                            with m.Else():
                                m.d.sync += widx.eq(widx + 1)
                                step_widx()

            # ------------------------------------------------------------------------------------
            # PRECHECK registers the frame's length / opcode / sequence classification (timing:
            # CHECK then only combines flip-flops).
            with m.State("PRECHECK"):
                # nwords = widx - 1 (the CRC word); compared through widx (no subtractor)
                with m.Switch(op):
                    with m.Case(*((Op.IDENTIFY, Op.PING, Op.RESET) + ((Op.STATUS,) if self.status_counters else ()))):
                        m.d.sync += [known.eq(1), len_ok.eq(widx == 2)]
                    with m.Case(Op.RUN):
                        m.d.sync += [known.eq(1), len_ok.eq(widx == 3)]
                    with m.Case(Op.READ, Op.READ_FIX):
                        m.d.sync += [known.eq(1), len_ok.eq((widx == 3) & (hdr.arg != 0) & (hdr.arg <= maxw))]
                    with m.Case(Op.WRITE, Op.WRITE_FIX):
                        m.d.sync += [known.eq(1), len_ok.eq((widx >= 4) & (widx <= maxw + 3))]
                    with m.Default():
                        m.d.sync += [known.eq(0), len_ok.eq(0)]
                with m.Switch(op):
                    with m.Case(*P.IDEMPOTENT_OPS):
                        m.d.sync += idempotent.eq(1)
                    with m.Default():
                        m.d.sync += idempotent.eq(0)
                m.d.sync += [short.eq((bidx != 0) | (widx < 2)), seq_now.eq(diff == 0), seq_ahead.eq(~diff[7])]
                m.next = "VERDICT" if self.pipes else "CHECK"

            if self.pipes:
                # (pipes) VERDICT decides what CHECK does, into flops: the counters to bump, the expected
                # sequence number's update, nack (with its status) or execute, and the opcode's class;
                # CHECK then acts on single flops (the frame checks' priority chain and the opcode
                # decode no longer end in the state register, the counters' enables, the reply's fields)
                v_framing, v_crc, v_seq, v_dup = (Signal(name=f"v_{n}") for n in ("framing", "crc", "seq", "dup"))
                v_expect_set, v_expect_inc = Signal(name="v_expect_set"), Signal(name="v_expect_inc")
                v_nack, v_nack_op = Signal(name="v_nack"), Signal(name="v_nack_op")
                v_status = Signal.like(status, name="v_status")
                v_ops = ((Op.IDENTIFY,), (Op.STATUS,), (Op.PING,), (Op.WRITE, Op.WRITE_FIX), (Op.READ, Op.READ_FIX),
                         (Op.RUN,), (Op.RESET,))
                v_is = [Signal(name=f"v_is_{o[0].name.lower()}") for o in v_ops]
                is_identify, is_status, is_ping, is_write, is_read, is_run, is_reset = v_is
                with m.State("VERDICT"):
                    m.d.sync += [v_framing.eq(0), v_crc.eq(0), v_seq.eq(0), v_dup.eq(0), v_expect_set.eq(0),
                                 v_expect_inc.eq(0), v_nack.eq(1), v_nack_op.eq(0)]
                    m.d.sync += [flag.eq(op.matches(*o)) for flag, o in zip(v_is, v_ops, strict=True)]

                    def v_nack_with(st, frame_level=False):
                        m.d.sync += [v_status.eq(st), v_nack_op.eq(frame_level)]

                    with m.If(cobs_err):
                        m.d.sync += v_framing.eq(1)
                        v_nack_with(Status.FRAMING, True)
                    with m.Elif(crc_err):
                        m.d.sync += v_crc.eq(1)
                        v_nack_with(Status.CRC, True)
                    with m.Elif(too_long):
                        m.d.sync += v_framing.eq(1)
                        v_nack_with(Status.TOO_LONG, True)
                    with m.Elif(short):
                        m.d.sync += v_framing.eq(1)
                        v_nack_with(Status.LENGTH, True)
                    with m.Elif((op == Op.IDENTIFY) & len_ok):
                        m.d.sync += [v_expect_set.eq(1), v_nack.eq(0)]
                    with m.Elif(seq_now):
                        m.d.sync += v_expect_inc.eq(1)
                        with m.If(~known):
                            v_nack_with(Status.OPCODE)
                        with m.Elif(~len_ok):
                            m.d.sync += v_framing.eq(1)
                            v_nack_with(Status.LENGTH)
                        with m.Else():
                            m.d.sync += v_nack.eq(0)
                    with m.Elif(seq_ahead):
                        m.d.sync += v_seq.eq(1)
                        v_nack_with(Status.SEQUENCE)
                    with m.Elif(idempotent & len_ok):
                        m.d.sync += [v_dup.eq(1), v_nack.eq(0)]
                    with m.Else():
                        m.d.sync += v_dup.eq(1)
                        v_nack_with(Status.DUPLICATE)
                    m.next = "CHECK"

                with m.State("CHECK"):
                    m.d.sync += [err.eq(0), detail.eq(0), i.eq(0)]
                    # a RUN's bus address and step count, loaded in every CHECK (only a RUN presents them
                    # now; the other requests load their own first): their enables are a state decode
                    m.d.sync += [baddr.eq(base), wdata.eq(arg1), raddr.eq(0)]
                    for flag, ctr in ((v_framing, framing_errors), (v_crc, crc_errors), (v_seq, seq_errors),
                                      (v_dup, duplicates)):
                        with m.If(flag):
                            m.d.sync += ctr.eq(ctr + 1)
                    with m.If(v_expect_set):
                        m.d.sync += expect.eq(seq + 1)
                    with m.Elif(v_expect_inc):
                        m.d.sync += expect.eq(expect + 1)
                    with m.If(v_nack):
                        nack(v_status, Mux(v_nack_op, P.NACK_OP, op | P.RSP_FLAG))
                    with m.Else():  # execute
                        m.d.sync += frames_ok.eq(frames_ok + 1)
                        with m.If(is_identify):
                            reply(Status.OK, _K_IDENTIFY, P.IDENTIFY_WORDS)
                            m.next = "REPLY"
                        with m.Elif(is_status):
                            reply(Status.OK, _K_STATUS, P.STATUS_WORDS)
                            m.next = "REPLY"
                        with m.Elif(is_ping):
                            reply(Status.OK, _K_NONE, 0)
                            m.next = "REPLY"
                        with m.Elif(is_write):
                            reply(Status.OK, _K_NONE, 0)
                            m.next = "WRITE"
                        with m.Elif(is_read):
                            reply(Status.OK, _K_BUF, hdr.arg)
                            m.next = "READ_LOAD"
                        with m.Elif(is_run):
                            reply(Status.OK, _K_BUF, 1)
                            m.d.sync += [bus_v.eq(1), bus_op.eq(BusOp.RUN)]
                            m.next = "RUN"
                        with m.Elif(is_reset):
                            reply(Status.OK, _K_NONE, 0)
                            m.d.sync += [bus_v.eq(1), bus_op.eq(BusOp.RESET)]
                            m.next = "RESET"
            else:
                with m.State("CHECK"):
                    m.d.sync += [err.eq(0), detail.eq(0), i.eq(0)]
                    with m.If(cobs_err):
                        m.d.sync += framing_errors.eq(framing_errors + 1)
                        nack(Status.FRAMING, P.NACK_OP)
                    with m.Elif(crc_err):
                        m.d.sync += crc_errors.eq(crc_errors + 1)
                        nack(Status.CRC, P.NACK_OP)
                    with m.Elif(too_long):
                        m.d.sync += framing_errors.eq(framing_errors + 1)
                        nack(Status.TOO_LONG, P.NACK_OP)
                    with m.Elif(short):
                        m.d.sync += framing_errors.eq(framing_errors + 1)
                        nack(Status.LENGTH, P.NACK_OP)
                    with m.Else():
                        # A CRC-valid frame with the expected seq consumes it, even when rejected
                        # (OPCODE, LENGTH): the host then fails that request and moves on.
                        execute = Signal()
                        with m.If((op == Op.IDENTIFY) & len_ok):
                            m.d.sync += expect.eq(seq + 1)
                            m.d.comb += execute.eq(1)
                        with m.Elif(seq_now):
                            m.d.sync += expect.eq(expect + 1)
                            with m.If(~known):
                                nack(Status.OPCODE)
                            with m.Elif(~len_ok):
                                m.d.sync += framing_errors.eq(framing_errors + 1)
                                nack(Status.LENGTH)
                            with m.Else():
                                m.d.comb += execute.eq(1)
                        with m.Elif(seq_ahead):
                            m.d.sync += seq_errors.eq(seq_errors + 1)
                            nack(Status.SEQUENCE)
                        with m.Elif(idempotent & len_ok):
                            m.d.sync += duplicates.eq(duplicates + 1)
                            m.d.comb += execute.eq(1)
                        with m.Else():
                            m.d.sync += duplicates.eq(duplicates + 1)
                            nack(Status.DUPLICATE)

                        with m.If(execute):
                            m.d.sync += frames_ok.eq(frames_ok + 1)
                            with m.Switch(op):
                                with m.Case(Op.IDENTIFY):
                                    reply(Status.OK, _K_IDENTIFY, P.IDENTIFY_WORDS)
                                    m.next = "REPLY"
                                with m.Case(Op.STATUS):
                                    reply(Status.OK, _K_STATUS, P.STATUS_WORDS)
                                    m.next = "REPLY"
                                with m.Case(Op.PING):
                                    reply(Status.OK, _K_NONE, 0)
                                    m.next = "REPLY"
                                with m.Case(Op.WRITE, Op.WRITE_FIX):
                                    reply(Status.OK, _K_NONE, 0)
                                    m.next = "WRITE"
                                with m.Case(Op.READ, Op.READ_FIX):
                                    reply(Status.OK, _K_BUF, hdr.arg)
                                    m.next = "READ_LOAD"
                                with m.Case(Op.RUN):
                                    reply(Status.OK, _K_BUF, 1)
                                    m.d.sync += [bus_v.eq(1), bus_op.eq(BusOp.RUN), baddr.eq(base), wdata.eq(arg1)]
                                    m.next = "RUN"
                                with m.Case(Op.RESET):
                                    reply(Status.OK, _K_NONE, 0)
                                    m.d.sync += [bus_v.eq(1), bus_op.eq(BusOp.RESET)]
                                    m.next = "RESET"

            # ------------------------------------------------------------------------------------
            def bus_error(addr):
                with m.If(~err):
                    m.d.sync += [err.eq(1), detail.eq(addr)]

            def finish():
                m.d.sync += i.eq(0)
                m.next = "REPLY"

            with m.State("WRITE"):
                # rd.addr = i (the CHECK state set i = 0); word i is on rd.data in the next cycle.
                m.next = "WRITE_LOAD"
            # whether word i is the last one, registered a state ahead (``i`` holds meanwhile): the
            # next-state decode of WRITE_REQ / READ_WAIT then starts at a flop, not at an adder
            last_i = Signal()
            with m.State("WRITE_LOAD"):
                # the buffer word i is registered in ``wdata`` before it drives the bus
                m.d.sync += [wdata.eq(rd.data), baddr.eq(addr_i), bus_v.eq(1), bus_op.eq(BusOp.WRITE),
                             last_i.eq(i + 1 == ndata_loop)]
                if self.pipes:
                    m.d.sync += raddr.eq(i + 1)  # for WRITE_REQ: the next word
                m.next = "WRITE_REQ"
            with m.State("WRITE_REQ"):
                with m.If(bus.ready):
                    m.d.sync += bus_v.eq(0)
                    with m.If(bus.error):
                        bus_error(baddr)
                    if not self.pipes:
                        m.d.comb += rd.addr.eq(i + 1)
                    m.d.sync += i.eq(i + 1)
                    with m.If(last_i):
                        finish()
                    with m.Else():
                        m.next = "WRITE_LOAD"  # rd.addr = i + 1 now: its word next cycle

            with m.State("READ_LOAD"):
                m.d.sync += [baddr.eq(addr_i), bus_v.eq(1), bus_op.eq(BusOp.READ), last_i.eq(i + 1 == hdr.arg)]
                m.next = "READ"
            with m.State("READ"):
                with m.If(bus.ready):
                    m.d.sync += bus_v.eq(0)
                    m.next = "READ_WAIT"
            with m.State("READ_WAIT"):
                with m.If(bus.r_valid):
                    m.d.comb += [wr_en.eq(1), wr_data.eq(bus.r_data), wr_addr.eq(i)]
                    with m.If(bus.error):
                        bus_error(baddr)
                    m.d.sync += i.eq(i + 1)
                    with m.If(last_i):
                        finish()
                    with m.Else():
                        m.next = "READ_LOAD"

            with m.State("RUN"):
                with m.If(bus.ready):
                    m.d.sync += bus_v.eq(0)
                    m.next = "RUN_WAIT"
            with m.State("RUN_WAIT"):
                with m.If(bus.r_valid):
                    m.d.comb += [wr_en.eq(1), wr_data.eq(bus.r_data), wr_addr.eq(0)]
                    with m.If(bus.error):
                        bus_error(0)
                    finish()

            with m.State("RESET"):
                with m.If(bus.ready):
                    m.d.sync += bus_v.eq(0)
                    with m.If(bus.error):
                        bus_error(0)
                    finish()

            # ------------------------------------------------------------------------------------
            # Reply: word 0 = header, words 1..nout = payload.  ``i`` is the word being sent;
            # rd.addr = i - 1 from REPLY_LOAD on, REPLY_FETCH registers the buffer word in ``rdata``,
            # REPLY_WORD registers the word to send in ``word`` (timing: REPLY_SEND only picks bytes).
            ob = Signal(2)
            pidx = (i - 1)[:len(i)]
            rsp = Signal(P.RSP_HEADER)
            m.d.comb += [rsp.op.eq(rop), rsp.seq.eq(seq), rsp.status.eq(status), rsp.expect.eq(expect)]
            with m.State("REPLY"):
                with m.If(err):  # a bus error turns the reply into an ADDRESS nack
                    m.d.sync += [err.eq(0), status.eq(Status.ADDRESS), kind.eq(_K_DETAIL),
                                 nout.eq(1)]
                m.d.sync += [i.eq(0), ob.eq(0)]
                m.next = "REPLY_WORD"
            # (with ``pipes`` ``raddr`` holds i - 1 from REPLY_LOAD on: the word selects below start at a flop)
            with m.State("REPLY_LOAD"):
                if not self.pipes:
                    m.d.comb += rd.addr.eq(pidx)
                m.next = "REPLY_FETCH"
            pword = Signal(32)  # with ``pipes``: a payload word that is not the buffer's, chosen a clock early
            with m.State("REPLY_FETCH"):
                if self.pipes:
                    m.d.sync += rdata.eq(rd.data)
                    with m.Switch(kind):
                        with m.Case(_K_IDENTIFY):
                            m.d.sync += pword.eq(identify_value.word_select(raddr, 32))
                        with m.Case(_K_STATUS):
                            m.d.sync += pword.eq(status_value.as_value().word_select(raddr, 32))
                        with m.Case(_K_DETAIL):
                            m.d.sync += pword.eq(detail)
                        with m.Default():
                            m.d.sync += pword.eq(0)
                else:
                    m.d.comb += rd.addr.eq(pidx)
                m.next = "REPLY_WORD"
            word = Signal(32)
            last_word = Signal()
            with m.State("REPLY_WORD"):
                m.d.sync += last_word.eq(i == nout)
                with m.If(i == 0):
                    m.d.sync += word.eq(rsp)
                if self.pipes:
                    with m.Elif(kind == _K_BUF):
                        m.d.sync += word.eq(rdata)
                    with m.Else():
                        m.d.sync += word.eq(pword)
                else:
                    with m.Else():
                        with m.Switch(kind):
                            with m.Case(_K_IDENTIFY):
                                m.d.sync += word.eq(identify_value.word_select(pidx, 32))
                            with m.Case(_K_STATUS):
                                m.d.sync += word.eq(status_value.as_value().word_select(pidx, 32))
                            with m.Case(_K_BUF):
                                # without ``pipes`` the block RAM output itself (still buf[i - 1]: read
                                # port data follows the address of the previous clock, REPLY_FETCH's)
                                m.d.sync += word.eq(rd.data)
                            with m.Case(_K_DETAIL):
                                m.d.sync += word.eq(detail)
                            with m.Default():
                                m.d.sync += word.eq(0)
                m.next = "REPLY_SEND"
            with m.State("REPLY_SEND"):
                last = last_word & (ob == 3)
                m.d.comb += [
                    out.valid.eq(1),
                    out.payload.data.eq(word.word_select(ob, 8)),
                    out.payload.last.eq(last),
                ]
                with m.If(out.ready):
                    m.d.sync += ob.eq(ob + 1)
                    with m.If(last):
                        m.d.sync += [widx.eq(0), bidx.eq(0), too_long.eq(0)]
                        reset_widx()
                        m.next = "RECV"
                    with m.Elif(ob == 3):
                        m.d.sync += i.eq(i + 1)
                        if self.pipes:
                            m.d.sync += raddr.eq(i)  # the payload word i (of the new i + 1)
                        m.next = "REPLY_LOAD"

        m.d.comb += self.busy.eq(~fsm.ongoing("RECV") | fifo.r_rdy | rx_pipe.o.valid | chk_o.valid
                                 | out_pipe.o.valid | app.o.valid | app_pipe.o.valid | enc.o.valid
                                 | tx_pipe.o.valid)
        return m
