"""Frame layer of the host link: COBS decode/encode and CRC check/append as stream components.

Receive path (raw bytes from the UART FIFO -> :class:`CobsDecoder` -> :class:`CrcChecker`)
produces :data:`RX_BEAT` beats: one beat per decoded byte (the CRC bytes included) and one
``end`` beat per ``0x00`` delimiter that carries the frame's COBS and CRC error flags.

Transmit path (:data:`TX_BEAT` beats with ``last`` on the frame's final byte ->
:class:`CrcAppender` -> :class:`CobsEncoder`) produces raw bytes ending with the ``0x00``
delimiter.

The CRC parameters come from :mod:`plasticore.protocol` (defined once there).  All components
obey the stream rule that ``valid`` never depends on ``ready``.  :class:`Pipe` is a register slice
that the link puts between these stages (and after block RAM outputs) so that no combinational
path runs through more than one of them (timing: ``docs/boards.md``).
"""

from amaranth.hdl import Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import crc, data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from plasticore import protocol as P

from .stream_slice import StreamSlice

__all__ = ["RX_BEAT", "TX_BEAT", "CobsDecoder", "CobsEncoder", "CrcAppender", "CrcChecker", "Pipe", "StreamWire"]

#: Receive-side beat: a decoded byte, or (``end``) the end of a frame with its error flags.
RX_BEAT = data.StructLayout({"data": 8, "end": 1, "cobs_err": 1, "crc_err": 1})
#: Transmit-side beat: a frame byte; ``last`` marks the final byte of the frame.
TX_BEAT = data.StructLayout({"data": 8, "last": 1})


def _crc_parameters(data_width: int) -> crc.Parameters:
    """The protocol's CRC (:mod:`plasticore.protocol`) as :mod:`amaranth.lib.crc` parameters."""
    poly = int(f"{P.CRC_POLY_REFLECTED:0{P.CRC_BITS}b}"[::-1], 2)
    return crc.Algorithm(crc_width=P.CRC_BITS, polynomial=poly, initial_crc=P.CRC_INIT, reflect_input=True,
                         reflect_output=True, xor_output=P.CRC_XOROUT)(data_width=data_width)


assert _crc_parameters(8).compute(b"123456789") == P.crc(b"123456789"), "lib.crc disagrees with the protocol"
assert _crc_parameters(8).residue() == P.crc_residue(), "lib.crc's residue disagrees with the protocol"


class _Crc:
    """The CRC register of a frame (an :class:`amaranth.lib.crc.Processor`), fed ``byte`` when told to.

    Parallel: a byte per clock.  ``serial``: a byte is shifted in one bit per clock (8 clocks,
    ``busy``), for the small-FPGA link.  ``crc`` is the value to append, ``match`` says that the
    bytes so far end with their own CRC.
    """

    def __init__(self, m: Module, serial: bool, byte):
        self.proc = proc = crc.Processor(_crc_parameters(1 if serial else 8))
        # a new frame resets the register (a flop's synchronous reset) rather than through ``start``,
        # which would put a multiplexer in front of every XOR tree
        self._restart = Signal(name="crc_restart")
        m.submodules += ResetInserter(self._restart)(proc)
        self.crc, self.match = proc.crc, proc.match_detected
        self.serial = serial
        self.m = m
        if serial:
            self._bits = Signal(8, name="crc_bits")
            self._left = Signal(range(9), name="crc_bits_left")
            self.busy = self._left != 0
            m.d.comb += [proc.data.eq(self._bits[0]), proc.valid.eq(self.busy)]
            with m.If(self.busy):
                m.d.sync += [self._bits.eq(self._bits >> 1), self._left.eq(self._left - 1)]
        else:
            self.busy = Const(0)
            m.d.comb += proc.data.eq(byte)
        self.byte = byte

    def absorb(self) -> None:
        """Take ``byte`` this clock (only while not ``busy``; call inside the enabling ``If``)."""
        if self.serial:
            self.m.d.sync += [self._bits.eq(self.byte), self._left.eq(8)]
        else:
            self.m.d.comb += self.proc.valid.eq(1)

    def restart(self) -> None:
        """Start a new frame (call inside the enabling ``If``)."""
        self.m.d.comb += self._restart.eq(1)


#: Stream register slice (two-entry skid buffer, every output a flop, one beat per clock, one clock
#: of latency): the link's slices are the chip's :class:`~plasticore.rtl.stream_slice.StreamSlice`.
Pipe = StreamSlice


class StreamWire(wiring.Component):
    """A plain stream connection with :class:`Pipe`'s ports (no register, no latency): the link's
    register slices become wires on FPGAs whose clock needs no timing help."""

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        wiring.connect(m, wiring.flipped(self.i), wiring.flipped(self.o))
        return m


class CobsDecoder(wiring.Component):
    """Raw bytes in, :data:`RX_BEAT` out.  Never stalls on malformed input: every byte is consumed,
    and every ``0x00`` ends a frame (``cobs_err`` if a code byte promised more bytes)."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(RX_BEAT))

    def elaborate(self, platform):
        m = Module()
        count = Signal(8)  # bytes left in the current block; 0: next byte is a code byte
        code_ff = Signal()  # the previous block's code was 0xFF (no implicit zero after it)
        first = Signal(init=1)  # no block seen yet in this frame

        b = self.i.payload
        is_delim = b == 0
        is_code = count == 0
        produces = is_delim | ~is_code | (~first & ~code_ff)

        m.d.comb += [
            self.o.valid.eq(self.i.valid & produces),
            self.i.ready.eq(~produces | self.o.ready),
            self.o.payload.end.eq(is_delim),
            self.o.payload.cobs_err.eq(is_delim & (count != 0)),
            self.o.payload.data.eq(Mux(is_delim | is_code, 0, b)),
        ]
        with m.If(self.i.valid & self.i.ready):
            with m.If(is_delim):
                m.d.sync += [count.eq(0), first.eq(1), code_ff.eq(0)]
            with m.Elif(is_code):
                m.d.sync += [count.eq(b - 1), code_ff.eq(b == 0xFF), first.eq(0)]
            with m.Else():
                m.d.sync += count.eq(count - 1)
        return m


class CrcChecker(wiring.Component):
    """Pass-through of :data:`RX_BEAT`; sets ``crc_err`` on each ``end`` beat whose frame (its last
    :data:`~plasticore.protocol.CRC_BYTES` bytes being the CRC) does not check."""

    def __init__(self, serial: bool = False):
        """``serial``: fold each byte in one bit per clock (8 clocks per byte, less logic)."""
        self.serial = serial
        super().__init__({"i": In(stream.Signature(RX_BEAT)), "o": Out(stream.Signature(RX_BEAT))})

    def elaborate(self, platform):
        m = Module()
        crc_ = _Crc(m, self.serial, self.i.payload.data)
        free = ~crc_.busy  # a beat passes only once the previous byte is folded in
        m.d.comb += [
            self.o.valid.eq(self.i.valid & free),
            self.i.ready.eq(self.o.ready & free),
            self.o.payload.eq(self.i.payload),
            self.o.payload.crc_err.eq(self.i.payload.end & ~crc_.match),
        ]
        with m.If(self.i.valid & self.i.ready):
            with m.If(self.i.payload.end):
                crc_.restart()
            with m.Else():
                crc_.absorb()
        return m


class CrcAppender(wiring.Component):
    """Pass-through of :data:`TX_BEAT` that appends the CRC (LSB first) after each frame's last
    byte and moves ``last`` onto the final CRC byte."""

    def __init__(self, serial: bool = False):
        """``serial``: fold each byte in one bit per clock (8 clocks per byte, less logic)."""
        self.serial = serial
        super().__init__({"i": In(stream.Signature(TX_BEAT)), "o": Out(stream.Signature(TX_BEAT))})

    def elaborate(self, platform):
        m = Module()
        pos = Signal(range(P.CRC_BYTES + 1))  # 0: passing data; k: emitting CRC byte k-1
        crc_ = _Crc(m, self.serial, self.i.payload.data)
        free = ~crc_.busy
        with m.If(pos == 0):
            m.d.comb += [
                self.o.valid.eq(self.i.valid & free),
                self.i.ready.eq(self.o.ready & free),
                self.o.payload.data.eq(self.i.payload.data),
                self.o.payload.last.eq(0),
            ]
            with m.If(self.i.valid & self.i.ready):
                crc_.absorb()
                with m.If(self.i.payload.last):
                    m.d.sync += pos.eq(1)
        with m.Else():
            m.d.comb += [
                self.o.valid.eq(free),
                self.o.payload.data.eq(crc_.crc.word_select((pos - 1)[:2], 8)),
                self.o.payload.last.eq(pos == P.CRC_BYTES),
            ]
            with m.If(self.o.ready & free):
                with m.If(pos == P.CRC_BYTES):
                    m.d.sync += pos.eq(0)
                    crc_.restart()
                with m.Else():
                    m.d.sync += pos.eq(pos + 1)
        return m


class CobsEncoder(wiring.Component):
    """:data:`TX_BEAT` in, raw COBS bytes out, each frame followed by a ``0x00`` delimiter.

    Buffers one COBS block (up to 254 bytes) in a small memory; the input stalls while a block is
    emitted.

    ``block_ram``: keep the block in a block RAM (a large FPGA at a high clock: the 254-byte
    distributed RAM's read multiplexer is a long path); otherwise the synthesiser chooses.
    """

    i: In(stream.Signature(TX_BEAT))
    o: Out(stream.Signature(8))

    def __init__(self, *, block_ram: bool = False):
        self.block_ram = bool(block_ram)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        attrs = {"ram_style": "block"} if self.block_ram else None
        m.submodules.buf = buf = Memory(shape=8, depth=254, init=[], attrs=attrs)
        wr = buf.write_port()
        rd = buf.read_port()

        n = Signal(range(255))  # bytes buffered in the current block
        code = Signal(8)
        idx = Signal(range(255))
        idx1 = Signal(range(256))  # idx + 1, kept in a register (timing: no adder on the read address)
        extra01 = Signal()  # frame ended with a zero: emit a final empty block (code 1)
        end = Signal()  # emit the delimiter after this block

        beat = self.i.payload
        m.d.comb += [wr.addr.eq(n), wr.data.eq(beat.data), rd.addr.eq(idx)]

        with m.FSM():
            with m.State("COLLECT"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    with m.If(beat.data == 0):
                        m.d.sync += [code.eq(n + 1), extra01.eq(beat.last), end.eq(beat.last)]
                        m.next = "CODE"
                    with m.Else():
                        m.d.comb += wr.en.eq(1)
                        m.d.sync += n.eq(n + 1)
                        with m.If(beat.last):
                            m.d.sync += [code.eq(n + 2), extra01.eq(0), end.eq(1)]
                            m.next = "CODE"
                        with m.Elif(n == 253):
                            m.d.sync += [code.eq(0xFF), extra01.eq(0), end.eq(0)]
                            m.next = "CODE"
            # with ``block_ram`` each data byte is registered (``LATCH``) before it is presented: the
            # block RAM's slow clock-to-output then ends at a flop, and the output stream's payload
            # comes from flops only (two clocks per byte, far above any baud rate)
            data_state = "LATCH" if self.block_ram else "DATA"
            byte = Signal(8)
            with m.State("CODE"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(code), rd.addr.eq(0)]
                with m.If(self.o.ready):
                    m.d.sync += [idx.eq(0), idx1.eq(1)]
                    with m.If(code == 1):
                        m.next = "TAIL"
                    with m.Else():
                        m.next = data_state
            if self.block_ram:
                with m.State("LATCH"):
                    m.d.sync += byte.eq(rd.data)  # (the byte of the address presented last clock)
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(byte if self.block_ram else rd.data)]
                with m.If(self.o.ready):
                    m.d.comb += rd.addr.eq(idx1)
                    m.d.sync += [idx.eq(idx1), idx1.eq(idx1 + 1)]
                    with m.If(idx1 + 1 == code):
                        m.next = "TAIL"
                    if self.block_ram:
                        with m.Else():
                            m.next = "LATCH"
            with m.State("TAIL"):
                with m.If(extra01):
                    m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(1)]
                    with m.If(self.o.ready):
                        m.d.sync += extra01.eq(0)
                with m.Elif(end):
                    m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(0)]
                    with m.If(self.o.ready):
                        m.d.sync += [end.eq(0), n.eq(0)]
                        m.next = "COLLECT"
                with m.Else():
                    m.d.sync += n.eq(0)
                    m.next = "COLLECT"
        return m
