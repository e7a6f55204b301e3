"""Five-port mesh router with dimension-order (X then Y) routing.

Every input port has a small FIFO; every output port has a round-robin arbiter over the inputs
whose head packet routes to it.  An output that is stalled keeps its grant (valid never drops and
the payload never changes before the transfer), so the streams follow Amaranth's rules.  One
packet per clock per output port.  The routing function is ``plasticore.chip_map.route``.

``pipe`` (for Fmax on a large FPGA): each packet's route is decided as it enters an input FIFO and
stored with it, and every output port goes through a :class:`~plasticore.rtl.stream_slice.StreamSlice`,
so the arbiter starts from FIFO registers and ends at the slices' registers (no path runs through
two routers).  Two clocks more per hop; the packets, their order per port pair and the routes are
the same.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from plasticore import chip_map as M

from .stream_slice import StreamSlice

__all__ = ["MeshRouter", "packet_layout"]

N_PORTS = len(M.Port)


def packet_layout() -> data.StructLayout:
    f = M.packet_fields()
    return data.StructLayout({k: (signed(w) if k == "value" else w) for k, w in f.items()})


class MeshRouter(wiring.Component):
    """Router of the core at mesh position ``(x, y)``; ports indexed by :class:`chip_map.Port`."""

    def __init__(self, x: int, y: int, fifo_depth: int = 2, pipe: bool = False):
        self.x, self.y, self.fifo_depth, self.pipe = x, y, fifo_depth, bool(pipe)
        sig = stream.Signature(packet_layout())
        super().__init__({"inp": In(sig).array(N_PORTS), "out": Out(sig).array(N_PORTS)})

    def _route(self, m: Module, pkt: data.View, name: str) -> Signal:
        """The output port of ``pkt`` at this router, one-hot (``chip_map.route``)."""
        dirs = Signal(N_PORTS, name=name)
        east, west = pkt.x > self.x, pkt.x < self.x
        south, north = pkt.y > self.y, pkt.y < self.y
        with m.If(pkt.to_host | west):
            m.d.comb += dirs.eq(1 << M.Port.WEST)
        with m.Elif(east):
            m.d.comb += dirs.eq(1 << M.Port.EAST)
        with m.Elif(south):
            m.d.comb += dirs.eq(1 << M.Port.SOUTH)
        with m.Elif(north):
            m.d.comb += dirs.eq(1 << M.Port.NORTH)
        with m.Else():
            m.d.comb += dirs.eq(1 << M.Port.LOCAL)
        return dirs

    def elaborate(self, platform):
        m = Module()
        lay = packet_layout()
        width = lay.size
        heads, head_valid, want = [], [], []
        for i in range(N_PORTS):
            inp = self.inp[i]
            if self.pipe:  # the route travels with the packet, above its bits
                q = fifo.SyncFIFOBuffered(width=width + N_PORTS, depth=self.fifo_depth)
                m.d.comb += q.w_data.eq(Cat(inp.payload.as_value(), self._route(m, inp.payload, f"route_in{i}")))
            else:
                q = fifo.SyncFIFOBuffered(width=width, depth=self.fifo_depth)
                m.d.comb += q.w_data.eq(inp.payload.as_value())
            m.submodules[f"q{i}"] = q
            m.d.comb += [q.w_en.eq(inp.valid), inp.ready.eq(q.w_rdy)]
            head = data.View(lay, q.r_data[:width] if self.pipe else q.r_data)
            heads.append((q, head))
            head_valid.append(q.r_rdy)
            want.append(q.r_data[width:] if self.pipe else self._route(m, head, f"route{i}"))

        pops = [Signal(name=f"pop{i}") for i in range(N_PORTS)]
        pop_terms = [[] for _ in range(N_PORTS)]
        for o in range(N_PORTS):
            if self.pipe:
                m.submodules[f"slice{o}"] = sl = StreamSlice(lay)
                wiring.connect(m, sl.o, wiring.flipped(self.out[o]))
                out = sl.i
            else:
                out = self.out[o]
            req = Signal(N_PORTS, name=f"req{o}")
            m.d.comb += req.eq(Cat(*[head_valid[i] & want[i][o] for i in range(N_PORTS)]))
            last = Signal(range(N_PORTS), name=f"last{o}", init=N_PORTS - 1)
            locked = Signal(name=f"locked{o}")
            lock_idx = Signal(range(N_PORTS), name=f"lock_idx{o}")
            pick = Signal(range(N_PORTS), name=f"pick{o}")
            any_req = req.any()
            # round robin: first requester after `last` (priority chain built for every value of last)
            for lv in range(N_PORTS):
                order = [(lv + 1 + k) % N_PORTS for k in range(N_PORTS)]
                with m.If(last == lv):
                    for cand in reversed(order):
                        with m.If(req[cand]):
                            m.d.comb += pick.eq(cand)
            grant = Signal(range(N_PORTS), name=f"grant{o}")
            m.d.comb += grant.eq(Mux(locked, lock_idx, pick))
            valid = locked | any_req
            m.d.comb += out.valid.eq(valid)
            with m.Switch(grant):
                for i in range(N_PORTS):
                    with m.Case(i):
                        m.d.comb += out.payload.eq(heads[i][1])
            xfer = out.valid & out.ready
            with m.If(xfer):
                m.d.sync += [locked.eq(0), last.eq(grant)]
            with m.Elif(out.valid & ~locked):
                m.d.sync += [locked.eq(1), lock_idx.eq(grant)]
            for i in range(N_PORTS):
                pop_terms[i].append(xfer & (grant == i))
        for i in range(N_PORTS):
            m.d.comb += [pops[i].eq(Cat(*pop_terms[i]).any()), heads[i][0].r_en.eq(pops[i])]
        return m
