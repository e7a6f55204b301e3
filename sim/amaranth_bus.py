"""Driving a core's access port in the Amaranth simulator (``amaranth.sim`` testbenches).

The fast rung below the Verilated benches: ``tests/test_core_amaranth.py`` and
``tests/test_program_core.py`` load layers, run steps and read state through these coroutines, one
request a clock as the core accepts them (``plasticore.core_map``: memory and register map).
"""

from __future__ import annotations

from plasticore.core_map import Cmd, Reg, Write, reg_write

__all__ = ["CoreBus"]


class CoreBus:
    """The ``bus`` / ``bus_rsp`` streams of core ``dut`` in testbench context ``ctx``."""

    #: clocks a read answer may take after its request (the read pipeline's latency is not contract)
    READ_WAIT = 20

    def __init__(self, ctx, dut):
        self.ctx, self.dut = ctx, dut
        self.lay = dut.bus.payload.shape()
        ctx.set(dut.bus_rsp.ready, 1)
        ctx.set(dut.spike_out.ready, 1)

    def _pack(self, we, mem, addr, mask, data) -> int:
        word = 0
        for name, val in (("we", we), ("mem", int(mem)), ("addr", addr), ("mask", mask), ("data", data)):
            f = self.lay[name]
            word |= (int(val) & ((1 << f.width) - 1)) << f.offset
        return word

    async def run(self, reqs) -> list[int]:
        """Issue requests ``(we, mem, addr, mask, data)``; returns the read answers in order."""
        ctx, dut, out = self.ctx, self.dut, []
        for r in reqs:
            ctx.set(dut.bus.valid, 1)
            ctx.set(dut.bus.payload.as_value(), self._pack(*r))
            while not ctx.get(dut.bus.ready):
                await ctx.tick()
                if ctx.get(dut.bus_rsp.valid):
                    out.append(ctx.get(dut.bus_rsp.payload))
            await ctx.tick()
            if ctx.get(dut.bus_rsp.valid):
                out.append(ctx.get(dut.bus_rsp.payload))
        ctx.set(dut.bus.valid, 0)
        n_reads = sum(1 for r in reqs if not r[0])
        for _ in range(self.READ_WAIT):
            if len(out) >= n_reads:
                break
            await ctx.tick()
            if ctx.get(dut.bus_rsp.valid):
                out.append(ctx.get(dut.bus_rsp.payload))
        assert len(out) == n_reads, f"{len(out)} read responses, {n_reads} reads"
        return out

    async def write(self, writes: list[Write]) -> None:
        await self.run([(1, w.mem, w.addr, w.mask, w.data) for w in writes])

    async def read(self, mem, addrs) -> list[int]:
        return await self.run([(0, mem, a, 0, 0) for a in addrs])

    async def command(self, cmd: Cmd) -> None:
        """Write ``CMD`` and wait until the core is idle again."""
        await self.write([reg_write(Reg.CMD, int(cmd))])
        await self.ctx.tick().until(~self.dut.busy)
