"""cocotb 2.x testbench for ``plasticore.rtl.smoke.SmokeAdder`` (run by tests/test_toolchain_smoke.py).

Not collected by pytest (no ``test_`` prefix): it only runs inside the simulator.
"""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge


async def _reset(dut) -> None:
    Clock(dut.clk, 10, unit="ns").start()
    dut.a.value = 0
    dut.b.value = 0
    dut.en.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def adder_registers_sum_mod_256(dut) -> None:
    """sum/carry follow a+b one clock later, wrapping modulo 256."""
    await _reset(dut)
    rng = random  # the global generator, which cocotb seeds from COCOTB_RANDOM_SEED
    cases = [(0, 0), (1, 2), (255, 1), (200, 100), (255, 255)]
    cases += [(rng.randrange(256), rng.randrange(256)) for _ in range(50)]
    for a, b in cases:
        await FallingEdge(dut.clk)
        dut.a.value = a
        dut.b.value = b
        await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        got_sum = int(dut.sum.value)
        got_carry = int(dut.carry.value)
        assert got_sum == (a + b) % 256, f"sum({a}, {b}) = {got_sum}, want {(a + b) % 256}"
        assert got_carry == (a + b) >> 8, f"carry({a}, {b}) = {got_carry}, want {(a + b) >> 8}"


@cocotb.test()
async def counter_counts_only_when_enabled(dut) -> None:
    """count is 0 after reset, holds when en=0, increments per enabled clock and wraps at 256."""
    await _reset(dut)
    await FallingEdge(dut.clk)
    assert int(dut.count.value) == 0, "count must be 0 after reset"
    await ClockCycles(dut.clk, 5)
    await FallingEdge(dut.clk)
    assert int(dut.count.value) == 0, "count must hold while en=0"
    dut.en.value = 1
    await ClockCycles(dut.clk, 300)
    await FallingEdge(dut.clk)
    dut.en.value = 0
    assert int(dut.count.value) == 300 % 256, f"count = {int(dut.count.value)}, want {300 % 256}"


@cocotb.test(skip=os.environ.get("PLASTICORE_SMOKE_EXPECT_FAIL") != "1")
async def deliberately_failing(dut) -> None:
    """Only enabled by the runner's self-test: proves failures propagate to pytest."""
    await _reset(dut)
    await FallingEdge(dut.clk)
    assert int(dut.count.value) == 1, "deliberate failure"
