"""PipelinedRam: a core memory whose ports are registered and which is split into banks.

A block RAM on the ECP5-85F can sit anywhere on the die; the 2 x 256 x 256 chip uses 205 of its 208
DP16KD, so a core's W and H memories (96 block RAMs) spread over half the die, and the nets to and
from them crossed it with logic on them (the host / engine port multiplexers in front, the bank
multiplexer behind the block RAM's slow clock-to-output).  This memory takes that logic off the long
routes:

* ``A``: the read and write requests (address, enable, data) are registered once, after whatever
  multiplexer drives the ports (the core's host / engine select).
* ``B``: one copy of the request per bank, loaded only when the request is for that bank (so the
  copies differ and the synthesiser keeps them; the placer puts each next to its block RAMs, and no
  net fans out from ``A`` to every block RAM of the memory).  Copies named ``*__dup`` (several
  columns or tiles) are kept by that name instead: their address and data load every clock, and
  only their enables are the bank's.
* the bank's memory (synchronous read, output held while the bank is not read).
* ``C``: each bank's read data registered next to it.  ``r_data`` is the word of the bank that was
  read (a multiplexer over the ``C`` registers, by the bank index carried along).

A block-RAM memory (``tile_bits`` given: the core's W, H and H mask) is split into *tiles* of one
block RAM each instead: as deep as the memory (up to ``tile_bits`` words) and as narrow as that
needs (a 16384-word memory in 1-bit columns, 4096 words in 4-bit columns, never across a lane's
write enable).  Each group of ``TILE_GROUP`` tiles shares a ``B`` copy of the request (address,
enable, its data bits; the copies are named ``*__dup`` and the ECP5 synthesis script marks them
``keep``), each tile has its own ``C`` register, and ``r_data`` is the ``C`` registers side by
side: no multiplexer behind the block RAMs and no write data fanned out to every bank.  (On the
16384 x 64 H memory of a 256 x 256 core: 64 DP16KD, 2 082 flip-flops and 5 LUTs, against 64
DP16KD, 2 557 flip-flops, 1 976 LUTs and 1 462 wide multiplexers with 16 banks; ``synth_ecp5``.)

So a read's data is on ``r_data`` ``1 + PIPE_LATENCY`` clocks after its address is on ``r_addr``
(one clock for a plain memory), and a write takes effect two clocks after it is presented; reads
and writes keep their order (both pass ``A`` and ``B``).  Banks hold ``bank_bits`` data bits of
each lane (one DP16KD holds 16 Kbit of a lane with its write enable).  (Measured place and route
with and without stage ``B``: ``docs/boards.md``.)
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .layouts import NO_RW_CHECK, no_rw_check_read

__all__ = ["BANK_BITS", "DUP", "LUTRAM_BANK", "LUTRAM_COL_BITS", "LUTRAM_WORDS", "PIPE_LATENCY", "PipelinedRam",
           "delayed", "local_params"]

#: suffix of the registers the ECP5 synthesis script marks ``keep`` (firmware.boards): copies of one
#: request register (one per group of TILE_GROUP block RAMs, one per lane of the soma's lane buffer), which
#: Yosys would otherwise merge into one far from most of their loads
DUP = "__dup"
#: columns of a tiled memory that share one copy of the request (stage B); measured on the 2 x 1
#: 256 x 256 chip at 100 MHz (docs/boards.md): 1 (a copy per block RAM) 57.41 MHz, 8 80.79, 4 83.25,
#: 2 85.43 (with the soma's per-lane copies; 4 on the same tree: 91.64)
TILE_GROUP = 4
#: extra read latency of a pipelined memory: stages A, B and C
PIPE_LATENCY = 3
#: data bits of one lane per bank: one DP16KD (16 Kbit with per-lane write enables)
BANK_BITS = 16384
#: memories of at most this many words become LUT RAM on the ECP5 (``firmware.boards``, memory hints) ...
LUTRAM_WORDS = 256
#: ... and are banked by this many words (a 4:1 multiplexer of 16-word LUT RAMs per bank), in
#: columns of at most this many bits, each with its own copy of the request (stage B): the read
#: address of a wide LUT RAM (the 64-bit F of a P = 4 core: 64 DPR16X4 a bank) fans out to two
#: DPR16X4 columns per copy
LUTRAM_BANK = 64
LUTRAM_COL_BITS = 8


class PipelinedRam(wiring.Component):
    """A ``depth`` x ``lanes * lane_bits`` memory with per-lane write enables (``lanes=None``: one
    write enable for the word), with the registered, banked ports of the module docstring: the read
    data comes ``PIPE_LATENCY`` clocks later than from a plain memory (``latency`` clocks after the
    address).
    """

    def __init__(self, *, lane_bits: int, lanes: int | None, depth: int, bank_bits: int = BANK_BITS,
                 tile_bits: int | None = None, col_bits: int | None = None, col_group: int = TILE_GROUP):
        self.lane_bits, self.lanes, self.depth = lane_bits, lanes, depth
        self.width = lane_bits * (lanes or 1)
        full = 1 << max(0, (depth - 1).bit_length())  # depth rounded up to 2**k
        if tile_bits is None:
            per_bank = max(1, bank_bits // lane_bits)  # words of a lane in one bank, rounded down to 2**k
            self.bank_depth = min(1 << (per_bank.bit_length() - 1), full)
            # one column (the word), or columns of at most ``col_bits`` (a divisor of the lane: one
            # write enable each)
            unit = lane_bits if lanes else self.width
            self.col_bits = self.width if col_bits is None else max(d for d in range(1, unit + 1)
                                                                     if unit % d == 0 and d <= col_bits)
        else:
            # tiles of ``tile_bits`` bits (one DP16KD): as deep as the memory (up to a tile) and as
            # narrow as that needs, a divisor of the lane so that a tile has one write enable
            self.bank_depth = min(1 << (max(1, tile_bits).bit_length() - 1), full)
            unit = lane_bits if lanes else self.width
            self.col_bits = max([d for d in range(1, unit + 1) if unit % d == 0 and d * self.bank_depth <= tile_bits],
                                default=1)
        self.banks = -(-depth // self.bank_depth)
        self.cols = self.width // self.col_bits
        self.col_group = col_group  # columns per copy of the request (stage B)
        self.latency = 1 + PIPE_LATENCY
        super().__init__({
            "r_addr": In(range(depth)),
            "r_en": In(1),
            "r_data": Out(unsigned(self.width)),
            "w_addr": In(range(depth)),
            "w_data": In(unsigned(self.width)),
            "w_en": In(lanes or 1),
        })

    def elaborate(self, platform):
        m = Module()
        gran = self.lane_bits if self.lanes else None
        bd, nb = self.bank_depth, self.banks
        lo = max(1, (bd - 1).bit_length())  # bank word address bits
        # A: the requests, registered after the caller's multiplexers (one copy)
        a_raddr = Signal.like(self.r_addr, reset_less=True)
        a_ren = Signal()
        a_waddr = Signal.like(self.w_addr, reset_less=True)
        a_wdata = Signal.like(self.w_data, reset_less=True)
        a_wen = Signal.like(self.w_en)
        m.d.sync += [a_raddr.eq(self.r_addr), a_ren.eq(self.r_en), a_waddr.eq(self.w_addr),
                     a_wdata.eq(self.w_data), a_wen.eq(self.w_en)]
        r_bank = a_raddr[lo:] if nb > 1 else 0
        w_bank = a_waddr[lo:] if nb > 1 else 0
        # the bank index of a read, carried to the output multiplexer (B, RAM, C)
        sel, _ = delayed(m, Value.cast(r_bank).as_unsigned(), PIPE_LATENCY, "sel")
        cb = self.col_bits
        # which write enable a column's bits belong to (one per lane, or the word's)
        lane_of = (lambda c: c * cb // self.lane_bits) if self.lanes else (lambda c: 0)
        c_data = [[None] * self.cols for _ in range(nb)]
        for b in range(nb):
            depth = min(bd, self.depth - b * bd)
            rhit = (r_bank == b) if nb > 1 else 1
            whit = (w_bank == b) if nb > 1 else 1
            hit_r = Signal(name=f"b{b}_hit_r")
            hit_w = Signal(name=f"b{b}_hit_w")
            m.d.comb += [hit_r.eq(a_ren & rhit), hit_w.eq(a_wen.any() & whit)]
            dup = DUP if self.cols > 1 else ""
            cg = self.col_group
            for g0 in range(0, self.cols, cg):
                gcols = range(g0, min(g0 + cg, self.cols))
                t = f"b{b}" if self.cols == 1 else f"b{b}g{g0 // cg}"
                ab = max(1, (depth - 1).bit_length())
                # B: this group's copy of the request, loaded only when the request is for its bank (so
                # that the copies of different banks differ); the copies of one bank's groups of tiles
                # are kept apart by their ``__dup`` names (firmware.boards: the ECP5 synthesis script
                # marks them ``keep``), so that the placer puts each next to its block RAMs
                b_raddr = Signal(ab, name=f"{t}_raddr{dup}", reset_less=True)
                b_ren = Signal(name=f"{t}_ren{dup}")
                b_waddr = Signal(ab, name=f"{t}_waddr{dup}", reset_less=True)
                b_wdata = Signal(cb * len(gcols), name=f"{t}_wdata{dup}", reset_less=True)
                b_wen = Signal(len(a_wen), name=f"{t}_wen{dup}")
                m.d.sync += [b_ren.eq(hit_r), b_wen.eq(Mux(whit, a_wen, 0))]
                if dup:
                    # (kept apart by their names) the address and data copies load every clock: only
                    # the enables say whether the request is this bank's, and no enable net reaches
                    # the copies' flops
                    m.d.sync += [b_raddr.eq(a_raddr[:ab]), b_waddr.eq(a_waddr[:ab]),
                                 b_wdata.eq(a_wdata[g0 * cb:gcols.stop * cb])]
                else:
                    with m.If(hit_r):
                        m.d.sync += b_raddr.eq(a_raddr[:ab])
                    with m.If(hit_w):
                        m.d.sync += [b_waddr.eq(a_waddr[:ab]), b_wdata.eq(a_wdata[g0 * cb:gcols.stop * cb])]
                for c in gcols:
                    mem = memory.Memory(shape=unsigned(cb), depth=depth, init=[], attrs=NO_RW_CHECK)
                    m.submodules[f"bank{b}" if self.cols == 1 else f"bank{b}_col{c}"] = mem
                    wp = mem.write_port(granularity=gran if self.cols == 1 else None)
                    rp = no_rw_check_read(m, mem, wp, f"{t}_rp" if self.cols == 1 else f"b{b}c{c}_rp")
                    k = c - g0
                    m.d.comb += [rp.addr.eq(b_raddr), rp.en.eq(b_ren), wp.addr.eq(b_waddr),
                                 wp.data.eq(b_wdata[k * cb:(k + 1) * cb]),
                                 wp.en.eq(b_wen if self.cols == 1 else b_wen[lane_of(c)])]
                    # C: the tile's output registered next to it
                    cr = Signal(cb, name=f"c{b}_data" if self.cols == 1 else f"c{b}_{c}_data", reset_less=True)
                    m.d.sync += cr.eq(rp.data)
                    c_data[b][c] = cr
        # the word of the bank that was read: each column a multiplexer over the banks (none for one bank)
        m.d.comb += self.r_data.eq(Cat(*[Array(c_data[b][c] for b in range(nb))[sel] if nb > 1 else c_data[0][c]
                                         for c in range(self.cols)]))
        return m


def delayed(m: Module, value, n: int, name: str, *, reset_less: bool = True) -> tuple[Value, list[Signal]]:
    """``value`` ``n`` clocks later (a chain of ``n`` registers) and the chain's registers: the engines
    use it to bring a value from a plain source (the axon buffer's ``x``) in step with the read data of
    pipelined memories."""
    chain, cur = [], Value.cast(value)
    for i in range(n):
        r = Signal(cur.shape(), name=f"{name}_d{i + 1}", reset_less=reset_less)
        m.d.sync += r.eq(cur)
        chain.append(r)
        cur = r
    return cur, chain


def local_params(m: Module, params, depth: int = 1):
    """A registered copy of an engine's (static) parameter registers, for the engines of a core with
    pipelined memories (a large core on a large FPGA): the copy sits next to the engine, so no route
    from the register file carries logic.  The host writes the parameters while the core is idle,
    several clocks before a step starts, so the ``depth`` clocks of lag are never seen.  Engines that
    read the same registers take copies of different ``depth`` (a chain), which the synthesiser does
    not merge into one register far from one of them."""
    cur = params
    for i in range(depth):
        copy = Signal(params.shape(), name=f"params_r{i}" if depth > 1 else "params_r", reset_less=True)
        m.d.sync += copy.eq(cur)
        cur = copy
    return cur
