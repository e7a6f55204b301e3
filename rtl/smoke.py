"""A tiny component that exercises the whole HDL toolchain (Amaranth -> Verilog -> Verilator -> cocotb).

It is not part of the core; ``tests/test_toolchain_smoke.py`` uses it to prove the toolchain works.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SmokeAdder"]


class SmokeAdder(wiring.Component):
    """Registered 8-bit adder plus an enable-gated 8-bit counter, both wrapping modulo 256.

    Ports (plus the implicit ``clk`` / ``rst`` of the ``sync`` domain):

    * ``a``, ``b``: 8-bit operands.
    * ``sum``: ``(a + b) mod 256``, registered (valid one clock after the operands).
    * ``carry``: carry-out of that addition, registered alongside ``sum``.
    * ``en``: when high at a rising edge, ``count`` increments (mod 256).
    * ``count``: the counter; 0 after reset.
    """

    a: In(8)
    b: In(8)
    en: In(1)
    sum: Out(8)
    carry: Out(1)
    count: Out(8)

    def elaborate(self, platform):
        m = Module()
        full = Signal(9)
        m.d.comb += full.eq(self.a + self.b)
        m.d.sync += [
            self.sum.eq(full[:8]),
            self.carry.eq(full[8]),
        ]
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + 1)
        return m
