"""Board integrations on amaranth-boards platforms.

A :class:`Board` names everything board-specific that the rest of ``plasticore.firmware`` needs:
the amaranth-boards platform, the clock (input, PLL, design clock), the UART, the reset button, the
status LEDs, the bitstream file, the openFPGALoader arguments and the default design size.

Adding a board (see ``docs/boards.md``): write one more :class:`Board` entry in :data:`BOARDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from plasticore.rtl.pipelined_ram import DUP, LUTRAM_WORDS

from .errors import UnknownBoardError

__all__ = ["BOARDS", "Board", "get_board"]


def _ulx3s_85f():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    class ULX3S85FBuildPlatform(ULX3S_85F_Platform):
        # amaranth-boards lists openFPGALoader among the *build* tools of the ULX3S; a build does not
        # run it, so a build-only machine does not need it. Flashing checks for it separately.
        @property
        def required_tools(self):
            return [t for t in super().required_tools if t != "openFPGALoader"]

    return ULX3S85FBuildPlatform()


#: ECP5: memories of 32..256 words (the cores' per-neuron and per-axon memories, the COBS block
#: buffer) go to LUT RAM (TRELLIS_DPR16X4) instead of one DP16KD each, which Yosys would otherwise
#: pick for most of them.  The 208 DP16KD of the LFE5U-85F are then left to the weight matrices
#: (W, H, H mask), the post-function tables and the link's FIFOs; see docs/boards.md "Sizing".
ECP5_MEMORY_HINTS = "\n".join([
    "proc",
    # the per-block-RAM copies of a pipelined memory's request registers (rtl/pipelined_ram.py, ``DUP``)
    # are kept apart: Yosys would merge identical flip-flops into one driving every block RAM
    f"setattr -set keep 1 w:*{DUP} %ci1:+$dff[Q] t:$dff %i",
    "memory_collect",
    # (not over a memory's own ``ram_style``: the COBS encoder's block asks for a block RAM)
    f'setattr -set ram_style "distributed" t:$mem_v2 r:SIZE>=32 %i r:SIZE<={LUTRAM_WORDS} %i a:ram_style %d',
])


#: iCE40 UltraPlus: memories whose name contains "spram" (the compact core's synapse memories,
#: ``plasticore.rtl.compact_core.SPRAM_TAG``) go to the SB_SPRAM256KA blocks.  Yosys maps a memory to
#: SPRAM only when asked (``ram_style = "huge"``) and only without initial contents, which the SPRAM
#: cannot have: their all-zero initialisation is dropped (the host writes W, H and the mask on deploy).
ICE40_MEMORY_HINTS = "\n".join([
    "proc",
    "delete t:$meminit_v2 r:MEMID=*spram* %i",
    "memory_collect",
    'setattr -set ram_style "huge" t:$mem_v2 r:MEMID=*spram* %i',
])


def _icebreaker():
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    return ICEBreakerPlatform()


@dataclass(frozen=True)
class Board:
    """Everything the firmware layer knows about one board."""

    name: str
    description: str
    make_platform: Callable[[], object]
    family: str  #: "ecp5" or "ice40" (PLL primitive, toolchain)
    clk_resource: str  #: input clock resource (platform.default_clk)
    clk_in_hz: int  #: its frequency
    clk_hz: int  #: default design clock (via the PLL when it differs from clk_in_hz)
    baud: int  #: default UART baud rate (the host opens the port at this rate)
    reset: tuple[str, int] | None  #: active-high reset button resource (after amaranth's inversion)
    leds: tuple[tuple[str, int], ...]  #: status LEDs, in the order of BoardTop's LED map
    bitstream_ext: str  #: ".bit" (ECP5) or ".bin" (iCE40)
    #: openFPGALoader board names, first one that this openFPGALoader lists is used
    ofl_boards: tuple[str, ...]
    ofl_sram: bool  #: True: load into SRAM by default (-m); False: the board can only write flash
    #: design parameters the default design is built with on this board (its size)
    design_config: dict = field(default_factory=dict)
    pll_input_pad: bool = False  #: iCE40: the clock pin feeds SB_PLL40_PAD directly
    #: extra Yosys synth_<family> options (resource inference; they do not change what the design computes)
    synth_opts: tuple[str, ...] = ()
    #: Yosys commands run right after reading the design (before ``synth_<family>``): resource
    #: mapping hints only, they do not change what the design computes
    synth_script: str = ""
    #: extra nextpnr options (placement / routing algorithms; they do not change what the design computes)
    pnr_opts: tuple[str, ...] = ()
    #: more nextpnr options for designs built with a parameter set: ``{param: options}`` or
    #: ``{"param=value": options}`` (like ``pnr_opts`` they do not change what the design computes)
    pnr_opts_with: dict = field(default_factory=dict)

    def platform(self):
        return self.make_platform()

    @property
    def bitstream_name(self) -> str:
        return "top" + self.bitstream_ext


BOARDS: dict[str, Board] = {
    "ulx3s": Board(
        name="ulx3s",
        description="Radiona ULX3S with Lattice ECP5 LFE5U-85F (CABGA381, speed 6)",
        make_platform=_ulx3s_85f,
        family="ecp5",
        clk_resource="clk25",
        clk_in_hz=25_000_000,
        clk_hz=100_000_000,
        baud=3_000_000,
        reset=("button_fire", 1),
        leds=tuple(("led", i) for i in range(8)),
        bitstream_ext=".bit",
        ofl_boards=("ulx3s",),
        ofl_sram=True,
        design_config={},
        synth_script=ECP5_MEMORY_HINTS,
        # router1 stalls on the 2x256x256 chip (98% of the DP16KD, congested around the RAM columns);
        # router2 routes it
        pnr_opts=("--router", "router2"),
        # the chip with pipelined memories: the heap placer's placement leaves router2 diverging (the
        # registers next to the block RAMs congest the RAM rows); the electrostatic placer's routes.
        # A chip of program cores (plain memories) diverges the same way after the heap placer.
        pnr_opts_with={"mem_pipe": ("--placer", "static"), "core=program": ("--placer", "static")},
    ),
    "icebreaker": Board(
        name="icebreaker",
        description="1BitSquared iCEBreaker with Lattice iCE40UP5K (SG48)",
        make_platform=_icebreaker,
        family="ice40",
        clk_resource="clk12",
        clk_in_hz=12_000_000,
        clk_hz=12_000_000,
        baud=1_000_000,
        reset=("button", 0),
        leds=(("led_g", 0), ("led_r", 0)),
        bitstream_ext=".bin",
        # Debian's openFPGALoader 0.10 has no "icebreaker" entry; its ice40_generic (FT2232 + SPI flash)
        # is the same wiring. Newer releases list "icebreaker".
        ofl_boards=("icebreaker", "ice40_generic"),
        ofl_sram=False,
        design_config={},
        pll_input_pad=True,
        # UltraPlus: map wide multipliers to SB_MAC16 and big single-port memories to the 4 SPRAMs
        synth_opts=("-dsp", "-spram", "-device", "u"),
        synth_script=ICE40_MEMORY_HINTS,
    ),
}


def get_board(name: str | Board) -> Board:
    if isinstance(name, Board):
        return name
    try:
        return BOARDS[name]
    except KeyError:
        raise UnknownBoardError(f"unknown board {name!r}; known boards: {', '.join(sorted(BOARDS))}") from None
