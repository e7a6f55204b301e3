"""UART PHY (8N1) with Amaranth ``lib.stream`` interfaces.

* :class:`UARTTx` -- byte stream in, ``tx`` pin out.  One byte takes exactly ``10 * clocks_per_bit``
  clocks; ``i.ready`` is high in the last clock of the stop bit (and when idle), so back-to-back
  bytes leave with no gap.
* :class:`UARTRx` -- ``rx`` pin in (two-flop synchroniser), byte stream out.  It resynchronises on
  every start bit, samples each bit in its middle, and re-arms in the middle of the stop bit, so a
  sender up to half a bit per byte faster than this receiver is tolerated.  A PHY cannot stall the
  wire: ``o.valid`` pulses for one clock whatever ``o.ready`` says (``valid`` never depends on
  ``ready``); a byte offered while ``o.ready`` is low is lost and counted by the consumer through
  ``overflow``.  A stop bit that reads 0 is a framing error (``error`` pulses, byte dropped).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx"]


def _check_cpb(clocks_per_bit: int) -> int:
    if not isinstance(clocks_per_bit, int) or clocks_per_bit < 4:
        raise ValueError(f"clocks_per_bit must be an integer >= 4, got {clocks_per_bit!r}")
    return clocks_per_bit


class UARTTx(wiring.Component):
    """8N1 transmitter.

    Ports: ``i`` (stream of bytes, sink), ``tx`` (pin, idles high), ``busy`` (a byte is on the wire).
    """

    def __init__(self, clocks_per_bit: int):
        self.clocks_per_bit = _check_cpb(clocks_per_bit)
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cpb = self.clocks_per_bit
        shreg = Signal(10, init=0x3FF)  # stop, data[7:0], start -- shifted out LSB first
        bits = Signal(range(11))  # bits left to send (incl. the current one)
        timer = Signal(range(cpb))

        last_clock = (bits == 1) & (timer == 0)
        idle = bits == 0
        m.d.comb += [
            self.i.ready.eq(idle | last_clock),
            self.tx.eq(shreg[0]),
            self.busy.eq(~idle),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                shreg.eq((1 << 9) | (self.i.payload << 1)),
                bits.eq(10),
                timer.eq(cpb - 1),
            ]
        with m.Elif(~idle):
            with m.If(timer == 0):
                m.d.sync += [
                    timer.eq(cpb - 1),
                    bits.eq(bits - 1),
                    shreg.eq((shreg >> 1) | (1 << 9)),
                ]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m


class UARTRx(wiring.Component):
    """8N1 receiver.

    Ports: ``rx`` (pin), ``o`` (stream of bytes, source; one-clock ``valid`` pulses),
    ``error`` (pulse: stop bit was 0), ``overflow`` (pulse: a byte was offered while ``o.ready``
    was low and is lost), ``busy`` (receiving a byte).
    """

    def __init__(self, clocks_per_bit: int):
        self.clocks_per_bit = _check_cpb(clocks_per_bit)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "error": Out(1),
            "overflow": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cpb = self.clocks_per_bit
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(cpb))
        shreg = Signal(8)
        nbit = Signal(range(9))
        data = Signal(8)
        valid = Signal()

        m.d.comb += [
            self.o.payload.eq(data),
            self.o.valid.eq(valid),
            self.overflow.eq(valid & ~self.o.ready),
        ]
        m.d.sync += [valid.eq(0), self.error.eq(0)]

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(cpb // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(rx):  # glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(cpb - 1), nbit.eq(0)]
                        m.next = "DATA"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [
                        shreg.eq((shreg >> 1) | (rx << 7)),
                        nbit.eq(nbit + 1),
                        timer.eq(cpb - 1),
                    ]
                    with m.If(nbit == 7):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(rx):
                        m.d.sync += [data.eq(shreg), valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.error.eq(1)
                        m.next = "BREAK"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("BREAK"):  # wait for the line to return high before re-arming
                with m.If(rx):
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
