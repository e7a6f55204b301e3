"""What every core implementation shares: its ports, its register file semantics and its input path.

:class:`~plasticore.rtl.core.HybridCore` and :class:`~plasticore.rtl.compact_core.CompactCore` differ
in their datapaths, not in what the host sees; the pieces here are that common face, written once.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out

from plasticore import contract as C
from plasticore.core_map import CORE_ID, CORE_VERSION, PARAM_REGS, REGS, CoreGeometry, Mem, Reg

from .layouts import axon_event_layout, bus_req_layout, spike_event_layout
from .pipelined_ram import delayed

__all__ = ["axon_input", "core_ports", "read_regs", "read_regs_split", "readonly_regs", "write_regs",
           "write_regs_registered", "zero_state"]


def core_ports(geom: CoreGeometry) -> dict:
    """The signature members of a core (``docs/core.md``, ports)."""
    return {
        "bus": In(stream.Signature(bus_req_layout(geom))),
        "bus_rsp": Out(stream.Signature(unsigned(geom.data_bits))),
        "axon_in": In(stream.Signature(axon_event_layout(geom))),
        "spike_out": Out(stream.Signature(spike_event_layout(geom))),
        "start": In(1),
        "clear": In(1),
        "busy": Out(1),
        "done": Out(1),
    }


def axon_input(m: Module, core, axb, idle) -> None:
    """The axon buffer takes bus writes of ``X`` (priority) or ``axon_in`` events, only while ``idle``."""
    req = core.bus.payload
    bus_x = core.bus.valid & req.we & (req.mem == Mem.X)
    m.d.comb += [
        axb.enable.eq(idle),
        axb.inp.valid.eq(Mux(core.bus.valid, bus_x & core.bus.ready, core.axon_in.valid)),
        axb.inp.payload.axon.eq(Mux(core.bus.valid, req.addr, core.axon_in.payload.axon)),
        axb.inp.payload.value.eq(Mux(core.bus.valid, req.data[:C.X_BITS], core.axon_in.payload.value)),
        core.axon_in.ready.eq(axb.inp.ready & ~core.bus.valid),
    ]


def write_regs(m: Module, we, addr, data, params, start_req, clear_req, extra: dict | None = None) -> None:
    """A ``REG`` write (``we``): a parameter register takes ``data`` cut to its width; ``CMD`` sets the
    step / clear requests.  ``extra`` (address -> signal): a core kind's own registers, written the same way."""
    with m.If(we):
        with m.Switch(addr):
            for r in PARAM_REGS:
                with m.Case(int(r)):
                    m.d.sync += getattr(params, r.name.lower()).eq(data[:REGS[r][0]])
            for a, sig in (extra or {}).items():
                with m.Case(a):
                    m.d.sync += sig.eq(data[:len(Value.cast(sig))])
            with m.Case(int(Reg.CMD)):
                with m.If(data[0]):
                    m.d.sync += start_req.eq(1)
                with m.If(data[1]):
                    m.d.sync += clear_req.eq(1)


def write_regs_registered(m: Module, we, addr, data, params, start_req, clear_req, extra: dict | None = None) -> Signal:
    """:func:`write_regs` a clock later, from registers: each register's write enable is decoded into
    a flop of its own (``we_<reg>``) with a copy of the data, so that the enables, which fan out
    over the whole core, carry no decode.  Returns a flop that is high while a write waits there."""
    extra = extra or {}
    sel_x = {a: Signal(name=f"we_reg{a}") for a in extra}
    sel = {r: Signal(name=f"we_{r.name.lower()}") for r in PARAM_REGS}
    cmd = Signal(name="we_cmd")
    data_q = Signal.like(data, name="reg_wdata")
    waiting = Signal(name="reg_we_wait")
    m.d.sync += [s.eq(we & (addr == int(r))) for r, s in sel.items()]
    m.d.sync += [cmd.eq(we & (addr == int(Reg.CMD))), data_q.eq(data), waiting.eq(we)]
    for r, s in sel.items():
        with m.If(s):
            m.d.sync += getattr(params, r.name.lower()).eq(data_q[:REGS[r][0]])
    m.d.sync += [s.eq(we & (addr == a)) for a, s in sel_x.items()]
    for a, s in sel_x.items():
        with m.If(s):
            m.d.sync += extra[a].eq(data_q[:len(Value.cast(extra[a]))])
    with m.If(cmd):
        with m.If(data_q[0]):
            m.d.sync += start_req.eq(1)
        with m.If(data_q[1]):
            m.d.sync += clear_req.eq(1)
    return waiting


def readonly_regs(geom: CoreGeometry, *, busy, cycles, events, out_count, steps,
                  version: int = CORE_VERSION) -> dict[Reg, Value]:
    """Values of the read-only registers."""
    return {Reg.STATUS: busy, Reg.CYCLES: cycles, Reg.EVENTS: events, Reg.OUT_COUNT: out_count,
            Reg.STEPS: steps, Reg.GEOM_A: Const(geom.a_max, 11), Reg.GEOM_N: Const(geom.n_max, 11),
            Reg.GEOM_P: Const(geom.lanes, 6), Reg.ID: Const(CORE_ID, 32), Reg.VERSION: Const(version, 8)}


def reg_values(params, ro: dict) -> dict[int, Value]:
    """What a register read returns, by address: the parameters (unsigned, at their width), then the
    read-only registers ``ro``."""
    values = {int(r): Value.cast(getattr(params, r.name.lower())).as_unsigned() for r in PARAM_REGS}
    values.update({int(r): Value.cast(v) for r, v in ro.items()})
    return values


def read_regs(m: Module, domain: str, target, addr, params, ro: dict) -> None:
    """``target`` := register ``addr`` (:func:`reg_values`); other addresses leave ``target`` at
    whatever the caller set first."""
    with m.Switch(addr):
        for a, v in reg_values(params, ro).items():
            with m.Case(a):
                m.d[domain] += target.eq(v)


#: registers per first-stage group of :func:`read_regs_split` (as a power of two: address bits)
READ_GROUP_BITS = 3


def read_regs_split(m: Module, addr, params, ro: dict, width: int, delay: int) -> Signal:
    """The register ``addr`` names, ``delay`` (>= 2) clocks later: what :func:`read_regs` into a
    register gives one clock later, delayed ``delay - 1`` clocks more, but read in two stages.

    The first stage reads every group of ``2**READ_GROUP_BITS`` registers by the address's low bits
    (one small multiplexer per group, next to its registers) and keeps the high bits; the second picks
    the group by them (an address outside every register reads 0).  The registers are sampled in the
    same clock as by :func:`read_regs`, so a read still sees exactly the writes before it.
    """
    assert delay >= 2
    lo, hi = addr[:READ_GROUP_BITS], addr[READ_GROUP_BITS:]
    groups: dict[int, dict[int, Value]] = {}
    for a, v in sorted(reg_values(params, ro).items()):
        groups.setdefault(a >> READ_GROUP_BITS, {})[a & ((1 << READ_GROUP_BITS) - 1)] = v
    grp = {g: Signal(width, name=f"reg_grp{g}") for g in groups}
    d_hi = Signal(len(hi), name="reg_hi")
    m.d.sync += d_hi.eq(hi)
    for g, members in groups.items():
        m.d.sync += grp[g].eq(0)
        with m.Switch(lo):
            for low, v in members.items():
                with m.Case(low):
                    m.d.sync += grp[g].eq(v)
    out = Signal(width, name="reg_rdata")
    m.d.sync += out.eq(0)
    with m.Switch(d_hi):
        for g in groups:
            with m.Case(g):
                m.d.sync += out.eq(grp[g])
    return delayed(m, out, delay - 2, "reg_rdata")[0]


def zero_state(m: Module, core, zc, n_pad: int, wp_u, wp_s, axb, idle) -> None:
    """The body of the sequencer's ``ZERO`` state (sample start): write u := 0 and s := 0 at ``zc``,
    one neuron per clock up to ``n_pad``, then (inputs cleared) pulse ``done`` and return to ``IDLE``.
    ``wp_u = wp_s = None``: the caller drives the writes (from ``zc`` while ``zc != n_pad``).
    ``idle``: the idle flag, or a ``Cat`` of it and its copies (every bit is set)."""
    with m.If(zc != n_pad):
        if wp_u is not None:
            m.d.comb += [wp_u.addr.eq(zc), wp_u.data.eq(0), wp_u.en.eq(1),
                         wp_s.addr.eq(zc), wp_s.data.eq(0), wp_s.en.eq(1)]
        m.d.sync += zc.eq(zc + 1)
    with m.Elif(~axb.busy):
        m.d.comb += core.done.eq(1)
        m.d.sync += idle.eq(-1)
        m.next = "IDLE"
