"""Local plasticity unit: H <- clip(decay*H + sign*(g_i f_j), +-h_clamp), P synapses per clock."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from plasticore import contract as C
from plasticore.core_map import CoreGeometry

from .arith import round_half, sat_fast
from .layouts import h_sweep_ports
from .multiplier import MULTIPLIER_LATENCY, PipelinedMultiplier
from .pipelined_ram import delayed, local_params

__all__ = ["PlasticityUnit", "LPU_LATENCY", "next_word"]

#: clocks from the last word's read issue to its H write (L1..L9, four relays around L2 and L4, and
#: the clamp's compare stage L8c)
LPU_LATENCY = 14


def next_word(m: Module, addr, i, g, end_row, last, running) -> None:
    """The H sweep's word counter one word further: ``addr`` + 1, axon ``i`` within group ``g`` (the row
    ends at ``end_row``), ``running`` cleared after the ``last`` word."""
    m.d.sync += addr.eq(addr + 1)
    with m.If(end_row):
        m.d.sync += [i.eq(0), g.eq(g + 1)]
    with m.Else():
        m.d.sync += i.eq(i + 1)
    with m.If(last):
        m.d.sync += running.eq(0)


class PlasticityUnit(wiring.Component):
    """Sweeps every H word of the active layer once: word ``g*n_axons + i`` holds the P synapses
    (i, g*P .. g*P+P-1).  One word (P synapses) per clock, fully pipelined (every stage starts and ends at a register)::

        L0  read H[g*A+i], x[i], beta[i], f[g]
        L1  register the read data (memory outputs drive no logic)
        L2  gp = beta_i * x_i
        L3  g_i = sat16(rshift_round(gp, x_frac))     (the rounding add in the relay before it)
        L4  gf_k = g_i * f_k;  hd_k = H_k * decay
        L5  gf_k + 2**(dh_shift-1);  hd_k = rshift_round(hd_k, 8)
        L6  dh_k = .. >> dh_shift                     (= rshift_round(gf_k, dh_shift))
        L7  s_k = hd_k + sign * dh_k
        L8  s_k > h_clamp, s_k < -h_clamp (compared; registered in L8c with the low bits of s_k)
        L8c H_k = clip(s_k, -h_clamp, h_clamp)    (a mux of the compare results)
        L9  write back (from a register: the write data, address and enable drive the BRAMs directly)

    The multiplies L2 and L4 take two clocks each (operand and product registers of a
    :class:`~plasticore.rtl.multiplier.PipelinedMultiplier`: the DSP block's own on the ECP5) and
    their products are relayed once more out of the DSP block, and the clamp takes two stages, so
    ``LPU_LATENCY`` is 14.

    ``start`` (pulse) begins the sweep over ``n_groups`` x ``params.n_axons`` words; ``busy`` falls
    ``n_groups * n_axons + LPU_LATENCY`` clocks after it.  f_j comes from the soma (once per neuron).

    ``mem_delay``: the memories return their data that many clocks later than a plain memory
    (pipelined memories); that many stages wait between L0 and L1, and ``x`` (from the axon buffer,
    a plain memory) is delayed to match.

    ``reset_less``: the stages L1..L9 (valid bits included) are built without reset.  Each stage's
    valid is copied from the one before it in every clock and L0's comes from ``running`` (which keeps
    its reset), so a reset longer than the pipeline flushes it; a pass cut by a reset may still write
    back the rows in flight, as the soma's pipeline does (``rtl/layouts.py``, ``PIPELINE_RESET_LESS``).
    """

    def __init__(self, geom: CoreGeometry, mem_delay: int = 0, reset_less: bool = False, x_delay: int = 0):
        self.geom = geom
        self.mem_delay = mem_delay
        #: clocks ``x_data`` comes later than from a plain memory (the core registers its address with
        #: pipelined memories); x is delayed by the rest of ``mem_delay``
        self.x_delay = x_delay
        self.reset_less = reset_less
        self.latency = LPU_LATENCY + mem_delay
        P = geom.lanes
        super().__init__({
            **h_sweep_ports(geom),
            "f_addr": Out(range(max(2, geom.groups))),
            "f_data": In(data.ArrayLayout(signed(C.F_BITS), P)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        if self.mem_delay:
            # (two clocks: the soma's copy of the same registers is one, and Yosys would merge them)
            p = local_params(m, p, depth=2)
        geom = self.geom
        P, AB = geom.lanes, geom.addr_bits
        running = Signal()
        addr = Signal(AB)
        i = Signal(range(geom.a_max + 1))
        g = Signal(range(geom.groups + 1))
        last = Signal()
        # static registers: n_axons - 1, n_groups - 1 (an equality test, no adder, on the control path)
        na_m1 = Signal(signed(len(p.n_axons) + 1))
        ng_m1 = Signal(signed(len(self.n_groups) + 1))
        m.d.sync += [na_m1.eq(p.n_axons - 1), ng_m1.eq(self.n_groups - 1)]
        end_row = Signal()
        m.d.comb += [end_row.eq(i == na_m1), last.eq(end_row & (g == ng_m1))]
        with m.If(self.start):
            m.d.sync += [running.eq(self.n_groups != 0), addr.eq(0), i.eq(0), g.eq(0)]
        with m.Elif(running):
            next_word(m, addr, i, g, end_row, last, running)
        m.d.comb += [self.h_raddr.eq(addr), self.x_addr.eq(i), self.beta_addr.eq(i), self.f_addr.eq(g)]

        def stage(name, fields):
            return Signal(data.StructLayout({"v": 1, "a": AB, **fields}), name=name, reset_less=self.reset_less)

        SW = C.SHIFT_MAX + 2
        GF = C.G_BITS + C.F_BITS
        hl = data.ArrayLayout(signed(C.H_BITS), P)
        fl = data.ArrayLayout(signed(C.F_BITS), P)
        l1 = stage("l1", {})
        l2 = stage("l2", {"beta": signed(C.BETA_BITS), "x": signed(C.X_BITS), "h": hl, "f": fl})
        # (the multiplies L2 and L4 are PipelinedMultipliers: their operand and product registers are
        # the data of l2x / l3 and l4x / l5, which carry the rest of the stage)
        l2x = stage("l2x", {"h": hl, "f": fl})
        l3 = stage("l3", {"h": hl, "f": fl})
        GP = C.BETA_BITS + C.X_BITS
        l3x = stage("l3x", {"gp": signed(GP), "gpr": signed(GP + 1), "h": hl, "f": fl})
        l4 = stage("l4", {"g": signed(C.G_BITS), "h": hl, "f": fl})
        l4x = stage("l4x", {})
        l5 = stage("l5", {})
        l5x = stage("l5x", {"gf": data.ArrayLayout(signed(GF), P),
                            "hd": data.ArrayLayout(signed(C.H_BITS + C.FRAC8_BITS + 1), P)})
        l6 = stage("l6", {"gfa": data.ArrayLayout(signed(max(GF, SW) + 1), P),
                          "hd": data.ArrayLayout(signed(C.H_BITS + 2), P)})
        l7 = stage("l7", {"dh": data.ArrayLayout(signed(max(GF, SW) + 1), P),
                          "hd": data.ArrayLayout(signed(C.H_BITS + 2), P)})
        l8 = stage("l8", {"s": data.ArrayLayout(signed(max(GF, SW) + 3), P)})
        l8c = stage("l8c", {"s": hl, "gt": P, "lt": P})
        l9 = stage("l9", {"h": hl})
        # the multiply stages L2 and L4 sit between relays: the DSP operands and products are
        # registered (inside the DSP blocks on the ECP5, rtl/multiplier.py), and the product is copied
        # once more out of the block (l3x, l5x) before any logic uses it
        stages = (l1, l2, l2x, l3, l3x, l4, l4x, l5, l5x, l6, l7, l8, l8c, l9)
        assert MULTIPLIER_LATENCY == 2
        mul_g = m.submodules.mul_g = PipelinedMultiplier(C.BETA_BITS, C.X_BITS)
        m.d.comb += [mul_g.a.eq(l2.beta), mul_g.b.eq(l2.x)]
        m.d.sync += [l2x.h.eq(l2.h), l2x.f.eq(l2.f), l3.h.eq(l2x.h), l3.f.eq(l2x.f),
                     l3x.gp.eq(mul_g.p), l3x.h.eq(l3.h), l3x.f.eq(l3.f)]
        # (the graded input's rounding add is made on the way out of the DSP block, in the relay)
        xf = C.X_FRAC[C.InputKind.GRADED]
        assert xf > 0 and C.X_FRAC[C.InputKind.SPIKE] == 0
        m.d.sync += l3x.gpr.eq(mul_g.p + (1 << (xf - 1)))
        assert len(stages) == LPU_LATENCY
        # static registers, off the datapath: rounding constant, -h_clamp
        half_dh = Signal(SW)
        hc = Signal(signed(C.H_BITS))
        neg_hc = Signal(signed(C.H_BITS))
        decay = Signal.like(p.decay, name="decay_r")  # copy next to the multipliers
        m.d.sync += [half_dh.eq(round_half(p.dh_shift, SW)), hc.eq(p.h_clamp), neg_hc.eq(-p.h_clamp),
                     decay.eq(p.decay)]
        for dst, src in zip(stages[1:], stages[:-1], strict=True):
            m.d.sync += [dst.v.eq(src.v), dst.a.eq(src.a)]
        # L0 -> l1: reads in flight (and ``mem_delay`` more stages with pipelined memories)
        waits = []
        if self.mem_delay:
            l0 = stage("l0", {})
            m.d.comb += [l0.v.eq(running & ~self.start), l0.a.eq(addr)]
            l1_k, waits = delayed(m, l0, self.mem_delay, "l1_wait", reset_less=False)
            m.d.sync += l1.eq(l1_k)  # (the same layout)
        else:
            m.d.sync += [l1.v.eq(running & ~self.start), l1.a.eq(addr)]
        # L1: data of l1.a present, registered
        x_k, _ = delayed(m, self.x_data, self.mem_delay - self.x_delay, "x")
        m.d.sync += [l2.beta.eq(self.beta_data), l2.x.eq(x_k), l2.h.eq(self.h_rdata), l2.f.eq(self.f_data)]
        # L2: mul_g (above)
        # L3
        # x_frac is 0 (spikes) or a constant (graded): two constant-shift roundings (the add made in
        # l3x) each saturated by a top-bit test, and a mux instead of a variable shifter (no carry
        # chain on the stage, Fmax)
        g_graded = sat_fast(l3x.gpr >> xf, C.G_BITS)
        g_spike = sat_fast(l3x.gp, C.G_BITS)
        g_sel = Mux(p.input_kind == int(C.InputKind.GRADED), g_graded, g_spike)
        m.d.sync += [l4.g.eq(g_sel), l4.h.eq(l3x.h), l4.f.eq(l3x.f)]
        hc_k, neg_hc_k = [hc] * P, [neg_hc] * P
        if self.mem_delay:
            # with pipelined memories each lane's clamp has its own copy of +-h_clamp, next to its
            # comparators: copy k is copy k-1 a clock later (a chain, which Yosys does not merge back
            # into one register); a parameter written while idle reaches the last copy P clocks later,
            # long before a step's LPU phase
            for k in range(1, P):
                hc_k[k], neg_hc_k[k] = Signal.like(hc, name=f"hc{k}"), Signal.like(neg_hc, name=f"neg_hc{k}")
                m.d.sync += [hc_k[k].eq(hc_k[k - 1]), neg_hc_k[k].eq(neg_hc_k[k - 1])]
        # the shift amount of L6, the same way: one copy per lane's shifter (a chain; the shifter's
        # select bits otherwise fan out to every lane)
        sh_k = [p.dh_shift] * P
        if self.mem_delay:
            for k in range(P):
                sh_k[k] = Signal.like(p.dh_shift, name=f"dh_shift{k}")
                m.d.sync += sh_k[k].eq(p.dh_shift if k == 0 else sh_k[k - 1])
        for k in range(P):
            # L4 (l4 -> operand registers (l4x) -> product registers (l5) -> relay l5x)
            mul_gf = m.submodules[f"mul_gf{k}"] = PipelinedMultiplier(C.G_BITS, C.F_BITS)
            mul_hd = m.submodules[f"mul_hd{k}"] = PipelinedMultiplier(C.H_BITS, C.FRAC8_BITS + 1)
            m.d.comb += [mul_gf.a.eq(l4.g), mul_gf.b.eq(l4.f[k]), mul_hd.a.eq(l4.h[k]), mul_hd.b.eq(decay)]
            m.d.sync += [l5x.gf[k].eq(mul_gf.p), l5x.hd[k].eq(mul_hd.p)]
            # L5: rounding add of g*f, rounded decay
            m.d.sync += [l6.gfa[k].eq(l5x.gf[k] + half_dh), l6.hd[k].eq((l5x.hd[k] + 128) >> 8)]
            # L6: shift
            m.d.sync += [l7.dh[k].eq(l6.gfa[k] >> sh_k[k]), l7.hd[k].eq(l6.hd[k])]
            # L7: Hebbian sign (applied after rounding) and the decayed H
            m.d.sync += l8.s[k].eq(Mux(p.hebb_neg, l7.hd[k] - l7.dh[k], l7.hd[k] + l7.dh[k]))
            # L8: the clamp's comparisons (two carry chains side by side, each ending at a flop);
            # L8c: the clamp (s itself only matters inside +-h_clamp, i.e. in its low H_BITS bits)
            sk = l8.s[k]
            m.d.sync += [l8c.gt[k].eq(sk > hc_k[k]), l8c.lt[k].eq(sk < neg_hc_k[k]), l8c.s[k].eq(sk[:C.H_BITS])]
            m.d.sync += l9.h[k].eq(Mux(l8c.gt[k], hc_k[k], Mux(l8c.lt[k], neg_hc_k[k], l8c.s[k])))
        # write back from the register
        m.d.comb += [self.h_wdata.eq(l9.h), self.h_waddr.eq(l9.a), self.h_we.eq(l9.v)]
        busy = running
        for st in stages:
            busy = busy | st.v
        for w in waits:
            busy = busy | w[0]  # the valid bit of a waiting stage
        m.d.comb += self.busy.eq(busy)
        return m
