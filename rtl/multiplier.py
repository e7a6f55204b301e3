"""PipelinedMultiplier: p = a * b (signed), operands and product registered (two clocks).

On the ECP5 the registers are the MULT18X18D's own input and output registers: the multiplier
then sits between registers inside the DSP block, and the fabric sees a register-to-register path
on each side (the block's combinational A/B -> P delay no longer adds to fabric routing).  Yosys
does not pack flip-flops into ECP5 DSP blocks by itself, hence the primitive.  Anywhere else (the
Amaranth simulator, Verilator, iCE40) the same two registers are plain flip-flops around a ``*``.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PipelinedMultiplier", "MULTIPLIER_LATENCY", "MULT18X18D_PARAMS", "mult18x18d_ports"]

#: clocks from ``a``/``b`` to ``p``: operand registers, product register
MULTIPLIER_LATENCY = 2

#: the ECP5 DSP's operand width (signed 18 x 18 -> 36)
MULT18_BITS = 18

#: MULT18X18D configuration: A and B registered, no pipeline register, P registered, all on CLK0
#: (CE0 held high, RST0 low; the global set/reset does not touch them)
MULT18X18D_PARAMS = {
    "REG_INPUTA_CLK": "CLK0", "REG_INPUTA_CE": "CE0", "REG_INPUTA_RST": "RST0",
    "REG_INPUTB_CLK": "CLK0", "REG_INPUTB_CE": "CE0", "REG_INPUTB_RST": "RST0",
    "REG_PIPELINE_CLK": "NONE",
    "REG_OUTPUT_CLK": "CLK0", "REG_OUTPUT_CE": "CE0", "REG_OUTPUT_RST": "RST0",
    "GSR": "DISABLED", "RESETMODE": "SYNC",
}


def mult18x18d_ports(a, b, p36, clk) -> dict:
    """Instance ports (``i_A0`` .., ``o_P0`` ..) of a signed MULT18X18D: ``a``, ``b`` sign-extended to
    18 bits, ``p36`` (a 36-bit signal) takes P."""
    a18, b18 = a.as_signed(), b.as_signed()
    aw, bw = len(a18), len(b18)
    if max(aw, bw) > MULT18_BITS:
        raise ValueError(f"MULT18X18D operands are at most {MULT18_BITS} bits, not {aw} x {bw}")
    ports = {"i_CLK0": clk, "i_CE0": Const(1), "i_RST0": Const(0), "i_SIGNEDA": Const(1), "i_SIGNEDB": Const(1),
             "i_SOURCEA": Const(0), "i_SOURCEB": Const(0)}
    for k in range(MULT18_BITS):
        ports[f"i_A{k}"] = a18[min(k, aw - 1)]
        ports[f"i_B{k}"] = b18[min(k, bw - 1)]
        ports[f"i_C{k}"] = Const(0)
    for k in range(2 * MULT18_BITS):
        ports[f"o_P{k}"] = p36[k]
    return ports


def _is_ecp5(platform) -> bool:
    return getattr(platform, "family", None) == "ecp5"


class PipelinedMultiplier(wiring.Component):
    """``p`` = ``a`` x ``b`` of the operands given :data:`MULTIPLIER_LATENCY` clocks earlier; a new
    product every clock (no enable: the pipelines using it qualify the product by their own valid bits).

    The registers hold data only (no reset): what they hold is used under a valid bit.
    """

    def __init__(self, a_width: int, b_width: int):
        self.a_width, self.b_width = a_width, b_width
        super().__init__({
            "a": In(signed(a_width)),
            "b": In(signed(b_width)),
            "p": Out(signed(a_width + b_width)),
        })

    def elaborate(self, platform):
        m = Module()
        fits = max(self.a_width, self.b_width) <= MULT18_BITS
        if _is_ecp5(platform) and fits:
            p36 = Signal(2 * MULT18_BITS)
            ports = mult18x18d_ports(self.a, self.b, p36, ClockSignal())
            m.submodules.dsp = Instance("MULT18X18D", **{f"p_{k}": v for k, v in MULT18X18D_PARAMS.items()},
                                        **ports)
            m.d.comb += self.p.eq(p36[:len(self.p)])
        else:
            ar = Signal.like(self.a, reset_less=True)
            br = Signal.like(self.b, reset_less=True)
            m.d.sync += [ar.eq(self.a), br.eq(self.b), self.p.eq(ar * br)]
        return m
