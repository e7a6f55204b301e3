"""Board tops elaborate for every board; the built-in echo design works in simulation."""

import pytest
from amaranth.hdl import Signal
from amaranth.sim import Simulator

from plasticore.firmware.boards import BOARDS, get_board
from plasticore.firmware.designs import AUTO_ORDER, DESIGNS, UartEcho, clocks_per_bit, get_design
from plasticore.firmware.errors import FirmwareError
from plasticore.firmware.top import BoardTop, design_uart_ports


def _prepare(board, clk_hz=None):
    top = BoardTop(board, get_design("echo").factory(), design_id=0x12345678, clk_hz=clk_hz)
    plan = get_board(board).platform().prepare(top, "top")
    return top, plan.files


def test_ulx3s_top_has_pll_pins_and_leds():
    top, files = _prepare("ulx3s")
    il, lpf = files["top.il"], files["top.lpf"]
    assert "EHXPLLL" in il and "CLKFB_DIV" in il
    for pin in ("G2", "M1", "L4", "B2", "C2", "T1"):  # clk25, uart rx/tx, led0/1, button_fire 1
        assert f'SITE "{pin}"' in lpf
    assert "FREQUENCY NET" in lpf and "100000000" in lpf  # the PLL output is constrained
    assert top.design.clocks_per_bit == 33


def test_icebreaker_top_without_and_with_pll():
    _, files = _prepare("icebreaker")
    assert "SB_PLL40" not in files["top.il"]
    for pin in ("35", "6", "9", "37", "11", "10"):
        assert any(line.split()[-1] == pin for line in files["top.pcf"].splitlines() if line.startswith("set_io"))
    _, files = _prepare("icebreaker", clk_hz=24_000_000)
    assert "SB_PLL40_PAD" in files["top.il"]
    assert "set_frequency" in files["top.pcf"] and " 24.0" in files["top.pcf"]


def test_every_board_entry_is_complete():
    for b in BOARDS.values():
        assert b.family in ("ecp5", "ice40") and b.bitstream_ext in (".bit", ".bin") and b.ofl_boards
        p = b.platform()
        assert p.default_clk == b.clk_resource
        assert "openFPGALoader" not in p.required_tools  # a build-only machine needs no programmer
        clocks_per_bit(b.clk_hz, b.baud)  # the default baud rate is reachable


def test_design_registry():
    assert AUTO_ORDER[-1] == "echo" and DESIGNS["echo"].available()
    assert set(AUTO_ORDER) <= set(DESIGNS)
    with pytest.raises(FirmwareError, match="unknown design"):
        get_design("nope")
    with pytest.raises(FirmwareError, match="takes no parameters"):
        get_design("echo").factory()(design_id=1, clk_hz=12_000_000, baud=1_000_000, cores=2)


def test_clocks_per_bit_errors():
    assert clocks_per_bit(100_000_000, 3_000_000) == 33
    assert clocks_per_bit(12_000_000, 1_000_000) == 12
    with pytest.raises(FirmwareError, match="rate error"):
        clocks_per_bit(12_000_000, 2_500_000)  # 5 clocks -> 2.4 Mbaud, -4%
    with pytest.raises(FirmwareError, match="clocks per bit"):
        clocks_per_bit(12_000_000, 5_000_000)


def test_design_without_uart_is_rejected():
    class NoUart:
        status = Signal()

    with pytest.raises(FirmwareError, match="no UART ports"):
        design_uart_ports(NoUart())

    class Nested:
        class uart:  # noqa: N801
            rx, tx = Signal(), Signal()

    assert design_uart_ports(Nested()) == (Nested.uart.rx, Nested.uart.tx)


def test_uart_echo_simulation():
    dut = UartEcho(clk_hz=4_000_000, baud=1_000_000)  # 4 clocks per bit
    cpb = dut.clocks_per_bit
    sent = [0x55, 0x00, 0xFF, 0xA7]
    got = []

    async def sender(ctx):
        ctx.set(dut.uart_rx, 1)
        await ctx.tick().repeat(10)
        for byte in sent:
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                ctx.set(dut.uart_rx, bit)
                await ctx.tick().repeat(cpb)

    async def receiver(ctx):
        while len(got) < len(sent):
            await ctx.tick()
            if ctx.get(dut.uart_tx) == 0:  # start bit
                await ctx.tick().repeat(cpb // 2 + cpb)
                value = 0
                for i in range(8):
                    value |= ctx.get(dut.uart_tx) << i
                    await ctx.tick().repeat(cpb)
                assert ctx.get(dut.uart_tx) == 1  # stop bit
                got.append(value)

    sim = Simulator(dut)
    sim.add_clock(1 / 4e6)
    sim.add_testbench(sender)
    sim.add_testbench(receiver)
    sim.run_until(200e-6)
    assert got == sent
