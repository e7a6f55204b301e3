"""CompactCore: the area-optimised hybrid core (one synapse per clock, serial soma) for small FPGAs."""

from __future__ import annotations

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

    def __init__(self, a_max: int = 128, n_max: int = 128, lanes: int = 1):
        if lanes != 1:
            raise ValueError(f"CompactCore has one lane, got lanes={lanes}")
        self.geom = geom = CoreGeometry(a_max, n_max, 1)
        super().__init__(core_ports(geom))

    def elaborate(self, platform):
        m = Module()
        geom = self.geom
        AB, NB = geom.addr_bits, geom.neuron_bits
        aw_bits, ah_bits = C.acc_w_bits(geom.a_max), C.acc_h_bits(geom.a_max)
        params = Signal(param_layout(), init={**PARAM_DEFAULTS, "n_axons": geom.a_max, "n_neurons": geom.n_max})
        p = params

        # ---- memories ----------------------------------------------------------------------
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

        m.submodules.axb = axb = AxonBuffer(geom)
        m.submodules.soma = soma = SerialSoma(geom, aw_bits, ah_bits)
        m.d.comb += soma.params.eq(params)
        self._blocks = {"axb": axb, "soma": soma}

        cycles, steps = Signal(32), Signal(32)
        in_step = Signal()  # a step (not a clear) is running: CYCLES counts it (read only when idle)
        start_req, clear_req = Signal(), Signal()
        idle = Signal(init=1)

        # ---- host access: one request at a time --------------------------------------------
        req = self.bus.payload
        rsp = self.bus_rsp
        hq_v, hq_we = Signal(), Signal()
        hq_mem = Signal(4)
        hq_addr = Signal(AB)
        hq_data = Signal(geom.data_bits)
        hq_mask = Signal()
        m.d.comb += self.bus.ready.eq(idle & ~axb.busy & ~hq_v & ~rsp.valid & ~start_req & ~clear_req)
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
        axon_input(m, self, axb, idle)
        hw = hq_v & hq_we  # host write in this clock
        write_regs(m, hw & (hq_mem == Mem.REG), hq_addr, hq_data, params, start_req, clear_req)
        with m.If(self.start):
            m.d.sync += start_req.eq(1)
        with m.If(self.clear):
            m.d.sync += clear_req.eq(1)

        ro = readonly_regs(geom, busy=~idle, cycles=cycles, events=axb.count, out_count=soma.out_count, steps=steps)
        with m.Switch(hq_mem):
            with m.Case(int(Mem.W)):
                m.d.comb += rsp.payload.eq(wm_r.data[:C.W_BITS])
            with m.Case(int(Mem.HMASK)):
                m.d.comb += rsp.payload.eq(wm_r.data[MASK_BIT])
            with m.Case(int(Mem.H)):
                m.d.comb += rsp.payload.eq(h_r.data)
            for mid in rp:
                with m.Case(int(mid)):
                    m.d.comb += rsp.payload.eq(rp[mid].data)
            with m.Case(int(Mem.X)):
                m.d.comb += rsp.payload.eq(axb.x_data.as_unsigned())
            with m.Case(int(Mem.REG)):
                read_regs(m, "comb", rsp.payload, hq_addr, params, ro)
            with m.Default():
                m.d.comb += rsp.payload.eq(0)

        # ---- engines -----------------------------------------------------------------------
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
        w = wm_r.data[:C.W_BITS].as_signed()
        hm = Mux(wm_r.data[MASK_BIT], h_r.data.as_signed(), 0)
        with m.If(v2):
            m.d.sync += [acc_w.eq(acc_w + x * w), acc_h.eq(acc_h + x * hm)]
        m.d.sync += [v1.eq(in_den & (e < axb.count)), v2.eq(v1)]
        m.d.comb += axb.evt_addr.eq(e)

        # LPU, synapse (i, j): read (ph 0), compute and write back (ph 1)
        assert C.X_FRAC[C.InputKind.GRADED] == 8
        gp = rp[Mem.BETA].data.as_signed() * x
        # g = sat16(rshift_round(beta * x, x_frac)), x_frac = 8 (graded) or 0
        g = sat_fast(Mux(p.input_kind == int(C.InputKind.GRADED), (gp + 128) >> 8, gp), C.G_BITS)
        hd = (h_r.data.as_signed() * p.decay + 128) >> 8
        gf = g * soma.f
        dh = Mux(p.dh_shift > DH_SHIFT_EFFECTIVE, 0, rshift_round(gf, p.dh_shift[:5], DH_SHIFT_EFFECTIVE))
        # |hd| <= 2**15 and h_clamp < 2**15: saturating dh to 18 bits leaves the clamped sum unchanged
        dh = sat_fast(dh, C.H_BITS + 2)
        hs = Mux(p.hebb_neg, hd - dh, hd + dh)
        hc = Value.cast(p.h_clamp)
        h_new = Mux(hs > hc, hc, Mux(hs < -hc, -hc, hs))

        with m.If(idle):
            m.d.comb += [syn_addr.eq(hq_addr), axb.x_addr.eq(hq_addr), axb.x_en.eq(hq_v)]
            for mid in rp:
                m.d.comb += [rp[mid].addr.eq(hq_addr), wp[mid].addr.eq(hq_addr), wp[mid].data.eq(hq_data),
                             wp[mid].en.eq(hw & (hq_mem == mid))]
            m.d.comb += [
                wm_w.data.eq(Mux(hq_mem == Mem.W, hq_data[:C.W_BITS], hq_data[0] << MASK_BIT)),
                wm_w.en.eq(Mux(hw & hq_mask, Mux(hq_mem == Mem.W, 0b01, Mux(hq_mem == Mem.HMASK, 0b10, 0)), 0)),
                h_w.data.eq(hq_data), h_w.en.eq(hw & hq_mask & (hq_mem == Mem.H)),
            ]
        with m.Else():
            m.d.comb += [
                axb.x_en.eq(1),
                syn_addr.eq(base + Mux(in_lpu, i, axb.evt_data)),
                axb.x_addr.eq(Mux(in_lpu, i, axb.evt_data)),
                rp[Mem.BETA].addr.eq(i),
                rp[Mem.LUT].addr.eq(soma.lut_addr),
                h_w.data.eq(h_new), h_w.en.eq(in_lpu & ph),
            ]
            for mid in (Mem.B, Mem.U, Mem.S, Mem.ETA, Mem.F):
                m.d.comb += [rp[mid].addr.eq(j), wp[mid].addr.eq(j)]
            m.d.comb += [wp[Mem.U].data.eq(soma.u_wdata), wp[Mem.U].en.eq(soma.w_en),
                         wp[Mem.S].data.eq(soma.s_wdata), wp[Mem.S].en.eq(soma.w_en),
                         wp[Mem.F].data.eq(rp[Mem.LUT].data), wp[Mem.F].en.eq(soma.f_en)]

        last_j = j + 1 >= p.n_neurons
        with m.FSM(name="seq"):
            with m.State("IDLE"):
                with m.If(clear_req & ~hq_v & ~axb.busy):
                    m.d.sync += [clear_req.eq(0), zc.eq(0), idle.eq(0)]
                    m.d.comb += axb.clear.eq(1)
                    m.next = "ZERO"
                with m.Elif(start_req & ~hq_v & ~axb.busy):
                    m.d.sync += [start_req.eq(0), cycles.eq(0), in_step.eq(1), j.eq(0), base.eq(0), e.eq(0), idle.eq(0),
                                 acc_w.eq(0), acc_h.eq(0)]
                    m.d.comb += soma.clear_count.eq(1)
                    with m.If(p.n_neurons == 0):
                        m.next = "CLEAR"
                    with m.Else():
                        m.next = "DEN"
            with m.State("ZERO"):
                zero_state(m, self, zc, geom.n_pad, wp[Mem.U], wp[Mem.S], axb, idle)
            with m.State("DEN"):
                m.d.comb += in_den.eq(1)
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
                m.d.comb += in_lpu.eq(1)
                m.d.sync += ph.eq(~ph)
                with m.If(ph):
                    m.d.sync += i.eq(i + 1)
                    with m.If(i + 1 >= p.n_axons):
                        m.next = "NEXT"
            with m.State("NEXT"):
                m.d.sync += [j.eq(j + 1), base.eq(base + p.n_axons), e.eq(0), acc_w.eq(0), acc_h.eq(0)]
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
                    m.d.sync += [steps.eq(steps + 1), idle.eq(1), in_step.eq(0)]
                    m.next = "IDLE"
        with m.If(in_step):
            m.d.sync += cycles.eq(cycles + 1)
        m.d.comb += self.busy.eq(~idle)
        return m


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
