"""CompactCore: the area-optimised hybrid core (one synapse per clock, serial soma) for small FPGAs."""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import memory, wiring

from plasticore import contract as C
from plasticore.core_map import MEMS, CoreGeometry, Mem

from .arith import rshift_round, sat_fast
from .axon import AxonBuffer
from .core import PARAM_DEFAULTS
from .core_regs import axon_input, core_ports, read_regs, readonly_regs, write_regs, zero_state
from .layouts import NO_RW_CHECK, param_layout
from .serial_soma import SerialSoma, serial_soma_cycles

__all__ = ["SPRAM_TAG", "CompactCore", "compact_step_cycle_parts", "compact_step_cycles"]

#: substring of the names of the synapse memories; an iCE40 build maps memories with it in their name
#: to SB_SPRAM256KA (``firmware.boards``: attribute ``ram_style = "huge"``, zero-init dropped)
SPRAM_TAG = "spram"
#: bit of the synapse word that holds the H mask (W in bits 0..7)
MASK_BIT = 8
#: the LPU's g*f products need no shift beyond this (|g*f| <= 2**30, so larger shifts round to 0)
DH_SHIFT_EFFECTIVE = 30


class CompactCore(wiring.Component):
    """One hybrid core of ``a_max`` axons x ``n_max`` neurons that fits an iCE40UP5K.

    Same ports, memory map and registers as :class:`~plasticore.rtl.core.HybridCore` (``GEOM_P`` = 1;
    matrix word of axon ``i``, neuron ``j`` = ``j * n_axons + i``), same integer results; a different
    schedule, neuron by neuron (``docs/core.md``, compact core)::

        for j in 0 .. N-1:
            dendrite: one listed axon per clock, accW += x*W[i,j], accH += x*H[i,j]*m[i,j]
            soma:     SerialSoma (shift-and-add datapath), f_j
            LPU:      H[i,j] for i in 0 .. A-1, read in one clock, written in the next (single-port RAM)
        clear the inputs

    Column j of H is updated right after neuron j's soma: the dendrite of neuron j has read it and no
    later neuron reads it, so the results equal the golden model's integrate -> soma -> LPU order.
    W (+ mask in bit 8) and H are single-port memories (iCE40 SPRAM: their names contain
    :data:`SPRAM_TAG`), the small memories are block RAM.
    """

    mem_infos = MEMS  #: its memories (the v1 set)

    def __init__(self, a_max: int = 128, n_max: int = 128, lanes: int = 1):
        if lanes != 1:
            raise ValueError(f"CompactCore has one lane, got lanes={lanes}")
        self.geom = geom = CoreGeometry(a_max, n_max, 1)
        super().__init__(core_ports(geom))

    def elaborate(self, platform):
        m = Module()
        geom = self.geom
        aw_bits, ah_bits = C.acc_w_bits(geom.a_max), C.acc_h_bits(geom.a_max)
        params = Signal(param_layout(), init={**PARAM_DEFAULTS, "n_axons": geom.a_max, "n_neurons": geom.n_max})
        mems = self._memories(m)

        m.submodules.axb = axb = AxonBuffer(geom)
        m.submodules.soma = soma = SerialSoma(geom, aw_bits, ah_bits)
        m.d.comb += soma.params.eq(params)
        self._blocks = {"axb": axb, "soma": soma}

        cycles, steps = Signal(32), Signal(32)
        in_step = Signal()  # a step (not a clear) is running: CYCLES counts it (read only when idle)
        start_req, clear_req = Signal(), Signal()
        idle = Signal(init=1)
        ctl = SimpleNamespace(params=params, axb=axb, soma=soma, cycles=cycles, steps=steps, in_step=in_step,
                              start_req=start_req, clear_req=clear_req, idle=idle)
        hq = self._host_access(m, mems, ctl)
        eng = self._engines(m, mems, ctl, aw_bits, ah_bits)
        self._memory_ports(m, mems, ctl, hq, eng)
        self._sequencer(m, mems, ctl, hq, eng)
        with m.If(in_step):
            m.d.sync += cycles.eq(cycles + 1)
        m.d.comb += self.busy.eq(~idle)
        return m

    def _memories(self, m: Module) -> SimpleNamespace:
        """The synapse memories (W + mask, H: single-port, one address ``syn_addr``) and the small
        memories' read and write ports (``rp``, ``wp`` by :class:`Mem`)."""
        geom = self.geom
        AB = geom.addr_bits
        syn_depth = geom.depth(Mem.W)
        m.submodules[f"{SPRAM_TAG}_w"] = wm_mem = memory.Memory(shape=unsigned(16), depth=syn_depth, init=[])
        m.submodules[f"{SPRAM_TAG}_h"] = h_mem = memory.Memory(shape=unsigned(16), depth=syn_depth, init=[])
        wm_r, wm_w = wm_mem.read_port(transparent_for=()), wm_mem.write_port(granularity=8)
        h_r, h_w = h_mem.read_port(transparent_for=()), h_mem.write_port()
        syn_addr = Signal(AB)  # one address per single-port memory: reads and writes share it
        m.d.comb += [wm_r.addr.eq(syn_addr), wm_w.addr.eq(syn_addr), h_r.addr.eq(syn_addr), h_w.addr.eq(syn_addr),
                     wm_r.en.eq(~wm_w.en.any()), h_r.en.eq(~h_w.en)]
        small = {}
        for mid in (Mem.B, Mem.U, Mem.S, Mem.ETA, Mem.F, Mem.BETA, Mem.LUT):
            mem = memory.Memory(shape=unsigned(MEMS[mid].bits), depth=geom.depth(mid), init=[], attrs=NO_RW_CHECK)
            m.submodules[f"mem_{mid.name.lower()}"] = mem
            small[mid] = (mem.read_port(transparent_for=()), mem.write_port())
        rp = {mid: v[0] for mid, v in small.items()}
        wp = {mid: v[1] for mid, v in small.items()}
        return SimpleNamespace(wm_r=wm_r, wm_w=wm_w, h_r=h_r, h_w=h_w, syn_addr=syn_addr, rp=rp, wp=wp)

    def _host_access(self, m: Module, mems: SimpleNamespace, ctl: SimpleNamespace) -> SimpleNamespace:
        """Host access, one request at a time: the request registers (``hq_*``), the register writes
        and the response word; returns the request registers and ``hw`` (a host write this clock)."""
        geom, axb, params = self.geom, ctl.axb, ctl.params
        AB = geom.addr_bits
        req = self.bus.payload
        rsp = self.bus_rsp
        hq_v, hq_we = Signal(), Signal()
        hq_mem = Signal(4)
        hq_addr = Signal(AB)
        hq_data = Signal(geom.data_bits)
        hq_mask = Signal()
        m.d.comb += self.bus.ready.eq(ctl.idle & ~axb.busy & ~hq_v & ~rsp.valid & ~ctl.start_req & ~ctl.clear_req)
        accept = self.bus.valid & self.bus.ready
        m.d.sync += [hq_v.eq(accept & ~(req.we & (req.mem == Mem.X))), hq_we.eq(req.we), hq_mem.eq(req.mem),
                     hq_addr.eq(req.addr), hq_data.eq(req.data), hq_mask.eq(req.mask[0])]
        # a read: memories addressed from hq_* -> data present the next clock and held (no new request
        # is accepted while the response waits), so the response word is selected combinationally
        with m.If(hq_v & ~hq_we):
            m.d.sync += rsp.valid.eq(1)
        with m.Elif(rsp.valid & rsp.ready):
            m.d.sync += rsp.valid.eq(0)
        # X writes go through the axon buffer (as do axon_in events); X reads through its port
        axon_input(m, self, axb, ctl.idle)
        hw = hq_v & hq_we  # host write in this clock
        write_regs(m, hw & (hq_mem == Mem.REG), hq_addr, hq_data, params, ctl.start_req, ctl.clear_req)
        with m.If(self.start):
            m.d.sync += ctl.start_req.eq(1)
        with m.If(self.clear):
            m.d.sync += ctl.clear_req.eq(1)

        ro = readonly_regs(geom, busy=~ctl.idle, cycles=ctl.cycles, events=axb.count, out_count=ctl.soma.out_count,
                           steps=ctl.steps)
        with m.Switch(hq_mem):
            with m.Case(int(Mem.W)):
                m.d.comb += rsp.payload.eq(mems.wm_r.data[:C.W_BITS])
            with m.Case(int(Mem.HMASK)):
                m.d.comb += rsp.payload.eq(mems.wm_r.data[MASK_BIT])
            with m.Case(int(Mem.H)):
                m.d.comb += rsp.payload.eq(mems.h_r.data)
            for mid in mems.rp:
                with m.Case(int(mid)):
                    m.d.comb += rsp.payload.eq(mems.rp[mid].data)
            with m.Case(int(Mem.X)):
                m.d.comb += rsp.payload.eq(axb.x_data.as_unsigned())
            with m.Case(int(Mem.REG)):
                read_regs(m, "comb", rsp.payload, hq_addr, params, ro)
            with m.Default():
                m.d.comb += rsp.payload.eq(0)
        return SimpleNamespace(v=hq_v, we=hq_we, mem=hq_mem, addr=hq_addr, data=hq_data, mask=hq_mask, hw=hw)

    def _engines(self, m: Module, mems: SimpleNamespace, ctl: SimpleNamespace, aw_bits: int,
                 ah_bits: int) -> SimpleNamespace:
        """The engines' state (neuron ``j``, synapse base, event ``e``, axon ``i``, LPU phase ``ph``),
        the soma's ports and the dendrite; returns the state."""
        geom, axb, soma, rp = self.geom, ctl.axb, ctl.soma, mems.rp
        AB, NB = geom.addr_bits, geom.neuron_bits
        j = Signal(NB + 1)
        base = Signal(AB + 1)
        e = Signal(range(geom.a_max + 1))
        v1, v2 = Signal(), Signal()
        acc_w, acc_h = Signal(signed(aw_bits)), Signal(signed(ah_bits))
        i = Signal(range(geom.a_max + 1))
        ph = Signal()
        zc = Signal(range(geom.n_pad + 1))
        in_den, in_lpu = Signal(), Signal()
        m.d.comb += [soma.j.eq(j), soma.acc_w.eq(acc_w), soma.acc_h.eq(acc_h),
                     soma.u_data.eq(rp[Mem.U].data), soma.s_data.eq(rp[Mem.S].data),
                     soma.b_data.eq(rp[Mem.B].data), soma.eta_data.eq(rp[Mem.ETA].data),
                     soma.lut_data.eq(rp[Mem.LUT].data),
                     self.spike_out.valid.eq(soma.out.valid), self.spike_out.payload.eq(soma.out.payload),
                     soma.out.ready.eq(self.spike_out.ready)]

        # dendrite: issue e -> (v1) axon from the event list, synapse / x read -> (v2) accumulate
        x = axb.x_data
        w = mems.wm_r.data[:C.W_BITS].as_signed()
        hm = Mux(mems.wm_r.data[MASK_BIT], mems.h_r.data.as_signed(), 0)
        with m.If(v2):
            m.d.sync += [acc_w.eq(acc_w + x * w), acc_h.eq(acc_h + x * hm)]
        m.d.sync += [v1.eq(in_den & (e < axb.count)), v2.eq(v1)]
        m.d.comb += axb.evt_addr.eq(e)
        return SimpleNamespace(j=j, base=base, e=e, v1=v1, v2=v2, acc_w=acc_w, acc_h=acc_h, i=i, ph=ph, zc=zc,
                               in_den=in_den, in_lpu=in_lpu)

    @staticmethod
    def _lpu_update(p, beta: Value, h: Value, x: Value, f: Value) -> Value:
        """The LPU's new H[i, j] from the old one ``h``, ``beta[i]``, input ``x[i]`` and the soma's ``f``."""
        assert C.X_FRAC[C.InputKind.GRADED] == 8
        gp = beta * x
        # g = sat16(rshift_round(beta * x, x_frac)), x_frac = 8 (graded) or 0
        g = sat_fast(Mux(p.input_kind == int(C.InputKind.GRADED), (gp + 128) >> 8, gp), C.G_BITS)
        hd = (h * p.decay + 128) >> 8
        gf = g * f
        dh = Mux(p.dh_shift > DH_SHIFT_EFFECTIVE, 0, rshift_round(gf, p.dh_shift[:5], DH_SHIFT_EFFECTIVE))
        # |hd| <= 2**15 and h_clamp < 2**15: saturating dh to 18 bits leaves the clamped sum unchanged
        dh = sat_fast(dh, C.H_BITS + 2)
        hs = Mux(p.hebb_neg, hd - dh, hd + dh)
        hc = Value.cast(p.h_clamp)
        return Mux(hs > hc, hc, Mux(hs < -hc, -hc, hs))

    def _memory_ports(self, m: Module, mems: SimpleNamespace, ctl: SimpleNamespace, hq: SimpleNamespace,
                      eng: SimpleNamespace) -> None:
        """The memories' addresses and writes: the host's while idle, the engines' in a step (the LPU,
        synapse (i, j): read (ph 0), compute and write back (ph 1))."""
        axb, soma, rp, wp = ctl.axb, ctl.soma, mems.rp, mems.wp
        wm_w, h_w, syn_addr = mems.wm_w, mems.h_w, mems.syn_addr
        h_new = self._lpu_update(ctl.params, rp[Mem.BETA].data.as_signed(), mems.h_r.data.as_signed(), axb.x_data,
                                 soma.f)
        with m.If(ctl.idle):
            m.d.comb += [syn_addr.eq(hq.addr), axb.x_addr.eq(hq.addr), axb.x_en.eq(hq.v)]
            for mid in rp:
                m.d.comb += [rp[mid].addr.eq(hq.addr), wp[mid].addr.eq(hq.addr), wp[mid].data.eq(hq.data),
                             wp[mid].en.eq(hq.hw & (hq.mem == mid))]
            m.d.comb += [
                wm_w.data.eq(Mux(hq.mem == Mem.W, hq.data[:C.W_BITS], hq.data[0] << MASK_BIT)),
                wm_w.en.eq(Mux(hq.hw & hq.mask, Mux(hq.mem == Mem.W, 0b01, Mux(hq.mem == Mem.HMASK, 0b10, 0)), 0)),
                h_w.data.eq(hq.data), h_w.en.eq(hq.hw & hq.mask & (hq.mem == Mem.H)),
            ]
        with m.Else():
            m.d.comb += [
                axb.x_en.eq(1),
                syn_addr.eq(eng.base + Mux(eng.in_lpu, eng.i, axb.evt_data)),
                axb.x_addr.eq(Mux(eng.in_lpu, eng.i, axb.evt_data)),
                rp[Mem.BETA].addr.eq(eng.i),
                rp[Mem.LUT].addr.eq(soma.lut_addr),
                h_w.data.eq(h_new), h_w.en.eq(eng.in_lpu & eng.ph),
            ]
            for mid in (Mem.B, Mem.U, Mem.S, Mem.ETA, Mem.F):
                m.d.comb += [rp[mid].addr.eq(eng.j), wp[mid].addr.eq(eng.j)]
            m.d.comb += [wp[Mem.U].data.eq(soma.u_wdata), wp[Mem.U].en.eq(soma.w_en),
                         wp[Mem.S].data.eq(soma.s_wdata), wp[Mem.S].en.eq(soma.w_en),
                         wp[Mem.F].data.eq(rp[Mem.LUT].data), wp[Mem.F].en.eq(soma.f_en)]

    def _sequencer(self, m: Module, mems: SimpleNamespace, ctl: SimpleNamespace, hq: SimpleNamespace,
                   eng: SimpleNamespace) -> None:
        """The step sequencer (``seq``): a clear (ZERO), or per neuron DEN, SOMA, LPU (if plastic), NEXT,
        then the input clear."""
        p, axb, soma, idle = ctl.params, ctl.axb, ctl.soma, ctl.idle
        j, e, v1, v2, i, ph = eng.j, eng.e, eng.v1, eng.v2, eng.i, eng.ph
        last_j = j + 1 >= p.n_neurons
        with m.FSM(name="seq"):
            with m.State("IDLE"):
                with m.If(ctl.clear_req & ~hq.v & ~axb.busy):
                    m.d.sync += [ctl.clear_req.eq(0), eng.zc.eq(0), idle.eq(0)]
                    m.d.comb += axb.clear.eq(1)
                    m.next = "ZERO"
                with m.Elif(ctl.start_req & ~hq.v & ~axb.busy):
                    m.d.sync += [ctl.start_req.eq(0), ctl.cycles.eq(0), ctl.in_step.eq(1), j.eq(0), eng.base.eq(0),
                                 e.eq(0), idle.eq(0), eng.acc_w.eq(0), eng.acc_h.eq(0)]
                    m.d.comb += soma.clear_count.eq(1)
                    with m.If(p.n_neurons == 0):
                        m.next = "CLEAR"
                    with m.Else():
                        m.next = "DEN"
            with m.State("ZERO"):
                zero_state(m, self, eng.zc, self.geom.n_pad, mems.wp[Mem.U], mems.wp[Mem.S], axb, idle)
            with m.State("DEN"):
                m.d.comb += eng.in_den.eq(1)
                with m.If(e < axb.count):
                    m.d.sync += e.eq(e + 1)
                with m.Elif(~v1 & ~v2):
                    m.d.comb += soma.start.eq(1)
                    m.next = "SOMA"
            with m.State("SOMA"):
                with m.If(soma.done):
                    m.d.sync += [i.eq(0), ph.eq(0)]
                    with m.If(p.plastic):
                        m.next = "LPU"
                    with m.Else():
                        m.next = "NEXT"
            with m.State("LPU"):
                m.d.comb += eng.in_lpu.eq(1)
                m.d.sync += ph.eq(~ph)
                with m.If(ph):
                    m.d.sync += i.eq(i + 1)
                    with m.If(i + 1 >= p.n_axons):
                        m.next = "NEXT"
            with m.State("NEXT"):
                m.d.sync += [j.eq(j + 1), eng.base.eq(eng.base + p.n_axons), e.eq(0), eng.acc_w.eq(0),
                             eng.acc_h.eq(0)]
                with m.If(last_j):
                    m.next = "CLEAR"
                with m.Else():
                    m.next = "DEN"
            with m.State("CLEAR"):
                m.d.comb += axb.clear.eq(1)
                m.next = "CLRWAIT"
            with m.State("CLRWAIT"):
                with m.If(~axb.busy):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += [ctl.steps.eq(ctl.steps + 1), idle.eq(1), ctl.in_step.eq(0)]
                    m.next = "IDLE"


def compact_step_cycle_parts(events: int, n_axons: int, n_neurons: int, plastic: bool, *, lif: bool,
                             alpha_shift: int, ann_shift: int, recip_shift: int) -> dict[str, int]:
    """The phases of :func:`compact_step_cycles` (derivation in ``docs/core.md``, compact core)."""
    E, N = events, n_neurons
    den = E + 3 if E else 1  # E issues + 2 pipeline clocks + the hand-off to the soma
    soma = serial_soma_cycles(lif, alpha_shift, ann_shift, recip_shift) - 1  # its start clock is den's last
    return {
        "dendrite": N * den,
        "soma": N * soma,
        "lpu": N * 2 * n_axons if plastic else 0,
        "next": N,
        "clear": E + 5 if E else 3,
    }


def compact_step_cycles(events: int, n_axons: int, n_neurons: int, plastic: bool, **soma) -> int:
    """Clock cycles of one step of :class:`CompactCore` (register ``CYCLES``)::

        N * (D + S + 1 + plastic * 2 * A) + (E + 5 | 3),   D = E + 3 (1 if E == 0),
        S = serial_soma_cycles(...) - 1
    """
    return sum(compact_step_cycle_parts(events, n_axons, n_neurons, plastic, **soma).values())
