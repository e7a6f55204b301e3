"""A ``mesh_x`` x ``mesh_y`` mesh of :class:`MeshRouter` with a host exit.

Local ports: ``inject[k]`` (packets from core k's network interface) and ``deliver[k]`` (packets
for core k's axon buffer).  Host packets leave through the west ports of column 0; a round-robin
merge (with the same lock-until-transfer rule as the routers) puts them on ``host``.
Unused edge ports are tied off (no valid, never ready): dimension-order routing never uses them.
``pipe``: pipelined routers (:class:`~plasticore.rtl.router.MeshRouter` ``pipe``).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from plasticore import chip_map as M

from .router import MeshRouter, packet_layout

__all__ = ["Mesh"]


class Mesh(wiring.Component):
    def __init__(self, mesh_x: int, mesh_y: int, fifo_depth: int = 2, pipe: bool = False):
        if not (1 <= mesh_x <= M.MAX_MESH and 1 <= mesh_y <= M.MAX_MESH):
            raise ValueError(f"mesh {mesh_x}x{mesh_y} exceeds {M.MAX_MESH}x{M.MAX_MESH}")
        self.mesh_x, self.mesh_y, self.fifo_depth, self.pipe = mesh_x, mesh_y, fifo_depth, bool(pipe)
        k = mesh_x * mesh_y
        sig = stream.Signature(packet_layout())
        super().__init__({"inject": In(sig).array(k), "deliver": Out(sig).array(k), "host": Out(sig)})

    def elaborate(self, platform):
        X, Y = self.mesh_x, self.mesh_y
        if X == Y == 1:
            return self._single()
        m = Module()
        r = {}
        for y in range(Y):
            for x in range(X):
                r[x, y] = m.submodules[f"r{x}_{y}"] = MeshRouter(x, y, self.fifo_depth, self.pipe)
        P = M.Port
        for y in range(Y):
            for x in range(X):
                k = y * X + x
                me = r[x, y]
                wiring.connect(m, wiring.flipped(self.inject[k]), me.inp[P.LOCAL])
                wiring.connect(m, me.out[P.LOCAL], wiring.flipped(self.deliver[k]))
                if x + 1 < X:
                    wiring.connect(m, me.out[P.EAST], r[x + 1, y].inp[P.WEST])
                    wiring.connect(m, r[x + 1, y].out[P.WEST], me.inp[P.EAST])
                else:
                    m.d.comb += [me.inp[P.EAST].valid.eq(0), me.out[P.EAST].ready.eq(0)]
                if y + 1 < Y:
                    wiring.connect(m, me.out[P.SOUTH], r[x, y + 1].inp[P.NORTH])
                    wiring.connect(m, r[x, y + 1].out[P.NORTH], me.inp[P.SOUTH])
                else:
                    m.d.comb += [me.inp[P.SOUTH].valid.eq(0), me.out[P.SOUTH].ready.eq(0)]
                if y == 0:
                    m.d.comb += [me.inp[P.NORTH].valid.eq(0), me.out[P.NORTH].ready.eq(0)]
                if x == 0:
                    m.d.comb += me.inp[P.WEST].valid.eq(0)
        # host merge over the west ports of column 0
        srcs = [r[0, y].out[P.WEST] for y in range(Y)]
        last = Signal(range(max(Y, 2)), init=Y - 1)
        locked = Signal()
        lock_idx = Signal(range(max(Y, 2)))
        pick = Signal(range(max(Y, 2)))
        for lv in range(Y):
            with m.If(last == lv):
                for cand in reversed([(lv + 1 + k) % Y for k in range(Y)]):
                    with m.If(srcs[cand].valid):
                        m.d.comb += pick.eq(cand)
        grant = Signal(range(max(Y, 2)))
        m.d.comb += grant.eq(Mux(locked, lock_idx, pick))
        anyv = Signal()
        for s_ in srcs:
            anyv = anyv | s_.valid
        m.d.comb += self.host.valid.eq(locked | anyv)
        with m.Switch(grant):
            for i in range(Y):
                with m.Case(i):
                    m.d.comb += self.host.payload.eq(srcs[i].payload)
        xfer = self.host.valid & self.host.ready
        for i in range(Y):
            m.d.comb += srcs[i].ready.eq(self.host.ready & (grant == i))
        with m.If(xfer):
            m.d.sync += [locked.eq(0), last.eq(grant)]
        with m.Elif(self.host.valid & ~locked):
            m.d.sync += [locked.eq(1), lock_idx.eq(grant)]
        return m

    def _single(self) -> Module:
        """1 x 1 mesh: no router.  A packet of the core goes to the host if ``to_host``, else back to the
        core (the only one); the same destinations the router's dimension-order routing gives a valid
        packet in a 1 x 1 mesh.  Pass-through: ``valid`` and ``payload`` follow ``inject`` (never ``ready``)."""
        m = Module()
        inj, dl, host = self.inject[0], self.deliver[0], self.host
        m.d.comb += [host.payload.eq(inj.payload), dl.payload.eq(inj.payload),
                     host.valid.eq(inj.valid & inj.payload.to_host), dl.valid.eq(inj.valid & ~inj.payload.to_host),
                     inj.ready.eq(Mux(inj.payload.to_host, host.ready, dl.ready))]
        return m
