"""The memory-mapped bus between the host link and whatever sits behind it.

:class:`BusSignature` is the one interface the link (``plasticore.rtl.link.Link``) drives and a
target (the multi-core chip top, or the :class:`TestTarget` used to test the link) implements.
Seen from the initiator (the link)::

    valid   Out(1)            request valid; held with op/addr/w_data until accepted
    op      Out(BusOp)        READ, WRITE, RUN or RESET
    addr    Out(addr_width)   word address (READ/WRITE; ignored by RUN/RESET unless the target
                              defines a meaning)
    w_data  Out(32)           WRITE data; RUN argument (e.g. number of steps)
    ready   In(1)             the request is accepted in this cycle (valid & ready)
    r_valid In(1)             completion of an accepted READ or RUN: exactly one pulse per such
                              request, in order, any number of cycles later
    r_data  In(32)            READ data / RUN result, with r_valid
    error   In(1)             with ready (WRITE, RESET) or with r_valid (READ, RUN): the address or
                              request was rejected (the link nacks with Status.ADDRESS)

Rules: the initiator keeps at most one READ/RUN outstanding (it waits for ``r_valid`` before the
next request); ``valid`` never depends on ``ready``; WRITE and RESET complete on acceptance.
A RUN completes (``r_valid``) when the target has finished the run: the link replies to the host
only then.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from plasticore import protocol as P
from plasticore.bus_ops import BusOp  # the opcodes are the contract's (re-exported here)

__all__ = ["BusOp", "BusSignature", "TestTarget"]


class BusSignature(wiring.Signature):
    """Bus interface, initiator view (flip it for a target: ``BusSignature(w).flip()``)."""

    def __init__(self, addr_width: int = 32):
        if not 1 <= addr_width <= 32:
            raise ValueError(f"addr_width must be 1..32, got {addr_width}")
        self.addr_width = addr_width
        super().__init__({
            "valid": Out(1),
            "op": Out(BusOp),
            "addr": Out(addr_width),
            "w_data": Out(P.BUS_DATA_BITS),
            "ready": In(1),
            "r_valid": In(1),
            "r_data": In(P.BUS_DATA_BITS),
            "error": In(1),
        })

    def __eq__(self, other):
        return isinstance(other, BusSignature) and other.addr_width == self.addr_width

    def __repr__(self):
        return f"BusSignature({self.addr_width})"


class TestTarget(wiring.Component):
    """A bus target for testing the link: RAM plus a few registers.

    Address map (word addresses):

    * ``0 .. ram_words-1`` -- RAM (read/write).
    * ``HASH = 0x0100_0000`` -- write: ``hash = (hash * 31 + data) mod 2**32`` and ``count += 1``
      (an order-sensitive checksum of a stream written with WRITE_FIX); read: ``hash``.
    * ``COUNT = 0x0100_0001`` -- read: words written to HASH.
    * ``STEPS = 0x0100_0002`` -- read: total RUN steps so far.
    * anything else -- ``error``.

    RUN with argument n is busy for n cycles, then returns the new total of steps. RESET clears
    HASH, COUNT and STEPS (the RAM keeps its contents).  ``busy`` is high during a RUN.
    """

    __test__ = False  # not a pytest class

    HASH = 0x0100_0000
    COUNT = 0x0100_0001
    STEPS = 0x0100_0002

    def __init__(self, ram_words: int = 16384, addr_width: int = 32):
        self.ram_words = ram_words
        super().__init__({"bus": In(BusSignature(addr_width)), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        m.submodules.ram = ram = Memory(shape=32, depth=self.ram_words, init=[])
        wr = ram.write_port()
        rd = ram.read_port()

        hash_ = Signal(32)
        count = Signal(32)
        steps = Signal(32)
        run_left = Signal(32)
        running = Signal()
        pending = Signal()  # a READ from RAM is in flight (data next cycle)
        pending2 = Signal()  # ... and its data registered (timing: the RAM's output mux is deep)
        rdq = Signal(32)
        reg_valid = Signal()
        reg_data = Signal(32)
        reg_err = Signal()

        in_ram = bus.addr < self.ram_words
        m.d.comb += [
            wr.addr.eq(bus.addr),
            wr.data.eq(bus.w_data),
            rd.addr.eq(bus.addr),
            self.busy.eq(running),
            bus.ready.eq(~running),
        ]
        m.d.sync += [pending.eq(0), reg_valid.eq(0), reg_err.eq(0), pending2.eq(pending), rdq.eq(rd.data)]
        m.d.comb += bus.r_valid.eq(pending2 | reg_valid)
        with m.If(pending2):
            m.d.comb += bus.r_data.eq(rdq)
        with m.Else():
            m.d.comb += [bus.r_data.eq(reg_data), bus.error.eq(reg_err)]

        fire = bus.valid & bus.ready
        with m.If(fire):
            with m.Switch(bus.op):
                with m.Case(BusOp.WRITE):
                    with m.If(in_ram):
                        m.d.comb += wr.en.eq(1)
                    with m.Elif(bus.addr == self.HASH):
                        # hash * 31 as a shift and a subtraction: carry chains, no multiplier on the path (timing)
                        m.d.sync += [hash_.eq((hash_ << 5) - hash_ + bus.w_data), count.eq(count + 1)]
                    with m.Else():
                        m.d.comb += bus.error.eq(1)
                with m.Case(BusOp.READ):
                    with m.If(in_ram):
                        m.d.sync += pending.eq(1)
                    with m.Else():
                        m.d.sync += reg_valid.eq(1)
                        with m.Switch(bus.addr):
                            with m.Case(self.HASH):
                                m.d.sync += reg_data.eq(hash_)
                            with m.Case(self.COUNT):
                                m.d.sync += reg_data.eq(count)
                            with m.Case(self.STEPS):
                                m.d.sync += reg_data.eq(steps)
                            with m.Default():
                                m.d.sync += [reg_data.eq(0), reg_err.eq(1)]
                with m.Case(BusOp.RUN):
                    m.d.sync += [running.eq(1), run_left.eq(bus.w_data)]
                with m.Case(BusOp.RESET):
                    m.d.sync += [hash_.eq(0), count.eq(0), steps.eq(0)]
        with m.If(running):
            with m.If(run_left == 0):
                m.d.sync += [running.eq(0), reg_valid.eq(1), reg_data.eq(steps)]
            with m.Else():
                m.d.sync += [run_left.eq(run_left - 1), steps.eq(steps + 1)]
        return m
