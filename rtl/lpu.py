"""Local plasticity unit: H <- clip(decay*H + sign*(g_i f_j), +-h_clamp), P synapses per clock."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from plasticore import contract as C
from plasticore.core_map import CoreGeometry

from .arith import round_half, rshift_round, sat
from .layouts import param_layout

__all__ = ["PlasticityUnit", "LPU_LATENCY"]

#: clocks from the last word's read issue to its H write (L1..L6)
LPU_LATENCY = 6


class PlasticityUnit(wiring.Component):
    """Sweeps every H word of the active layer once: word ``g*n_axons + i`` holds the P synapses
    (i, g*P .. g*P+P-1).  One word (P synapses) per clock, fully pipelined::

        L0  read H[g*A+i], x[i], beta[i], f[g]
        L1  gp = beta_i * x_i
        L2  g_i = sat16(rshift_round(gp, x_frac))
        L3  gf_k = g_i * f_k;  hd_k = H_k * decay
        L4  gf_k + 2**(dh_shift-1);  hd_k = rshift_round(hd_k, 8)
        L5  dh_k = sign * (.. >> dh_shift)      (= sign * rshift_round(gf_k, dh_shift))
        L6  H_k = clip(hd_k + dh_k, -h_clamp, h_clamp); write back

    ``start`` (pulse) begins the sweep over ``n_groups`` x ``params.n_axons`` words; ``busy`` falls
    ``n_groups * n_axons + LPU_LATENCY`` clocks after it.  f_j comes from the soma (once per neuron).
    """

    def __init__(self, geom: CoreGeometry):
        self.geom = geom
        P = geom.lanes
        super().__init__({
            "params": In(param_layout()),
            "start": In(1),
            "n_groups": In(range(geom.groups + 1)),
            "busy": Out(1),
            "h_raddr": Out(geom.addr_bits),
            "h_rdata": In(data.ArrayLayout(signed(C.H_BITS), P)),
            "h_waddr": Out(geom.addr_bits),
            "h_wdata": Out(data.ArrayLayout(signed(C.H_BITS), P)),
            "h_we": Out(1),
            "x_addr": Out(geom.axon_bits),
            "x_data": In(signed(C.X_BITS)),
            "beta_addr": Out(geom.axon_bits),
            "beta_data": In(signed(C.BETA_BITS)),
            "f_addr": Out(range(max(2, geom.groups))),
            "f_data": In(data.ArrayLayout(signed(C.F_BITS), P)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        geom = self.geom
        P, AB = geom.lanes, geom.addr_bits
        running = Signal()
        addr = Signal(AB)
        i = Signal(range(geom.a_max + 1))
        g = Signal(range(geom.groups + 1))
        last = Signal()
        m.d.comb += last.eq((i + 1 == p.n_axons) & (g + 1 == self.n_groups))
        with m.If(self.start):
            m.d.sync += [running.eq(self.n_groups != 0), addr.eq(0), i.eq(0), g.eq(0)]
        with m.Elif(running):
            m.d.sync += addr.eq(addr + 1)
            with m.If(i + 1 == p.n_axons):
                m.d.sync += [i.eq(0), g.eq(g + 1)]
            with m.Else():
                m.d.sync += i.eq(i + 1)
            with m.If(last):
                m.d.sync += running.eq(0)
        m.d.comb += [self.h_raddr.eq(addr), self.x_addr.eq(i), self.beta_addr.eq(i), self.f_addr.eq(g)]

        def stage(name, fields):
            return Signal(data.StructLayout({"v": 1, "a": AB, **fields}), name=name)

        hl = data.ArrayLayout(signed(C.H_BITS), P)
        l1 = stage("l1", {})
        l2 = stage("l2", {"gp": signed(C.BETA_BITS + C.X_BITS), "h": hl, "f": data.ArrayLayout(signed(C.F_BITS), P)})
        l3 = stage("l3", {"g": signed(C.G_BITS), "h": hl, "f": data.ArrayLayout(signed(C.F_BITS), P)})
        l4 = stage("l4", {"gf": data.ArrayLayout(signed(C.G_BITS + C.F_BITS), P),
                          "hd": data.ArrayLayout(signed(C.H_BITS + C.FRAC8_BITS + 1), P)})
        SW = C.SHIFT_MAX + 2
        GF = C.G_BITS + C.F_BITS
        l5 = stage("l5", {"gfa": data.ArrayLayout(signed(max(GF, SW) + 1), P),
                          "hd": data.ArrayLayout(signed(C.H_BITS + 2), P)})
        l6 = stage("l6", {"dh": data.ArrayLayout(signed(GF + 1), P),
                          "hd": data.ArrayLayout(signed(C.H_BITS + 2), P)})
        half_dh = Signal(SW)
        m.d.sync += half_dh.eq(round_half(p.dh_shift, SW))  # static register: off the datapath
        # L0 -> l1: reads in flight
        m.d.sync += [l1.v.eq(running & ~self.start), l1.a.eq(addr)]
        # L1: data of l1.a present
        m.d.sync += [l2.v.eq(l1.v), l2.a.eq(l1.a), l2.gp.eq(self.beta_data * self.x_data),
                     l2.h.eq(self.h_rdata), l2.f.eq(self.f_data)]
        # L2
        x_frac = Mux(p.input_kind == int(C.InputKind.GRADED), C.X_FRAC[C.InputKind.GRADED], 0)
        m.d.sync += [l3.v.eq(l2.v), l3.a.eq(l2.a), l3.g.eq(sat(rshift_round(l2.gp, x_frac, 8), C.G_BITS)),
                     l3.h.eq(l2.h), l3.f.eq(l2.f)]
        # L3
        m.d.sync += [l4.v.eq(l3.v), l4.a.eq(l3.a)]
        for k in range(P):
            m.d.sync += [l4.gf[k].eq(l3.g * l3.f[k]), l4.hd[k].eq(l3.h[k] * p.decay)]
        # L4: rounding add of g*f, rounded decay
        m.d.sync += [l5.v.eq(l4.v), l5.a.eq(l4.a)]
        for k in range(P):
            m.d.sync += [l5.gfa[k].eq(l4.gf[k] + half_dh), l5.hd[k].eq((l4.hd[k] + 128) >> 8)]
        # L5: shift, Hebbian sign (applied after rounding)
        m.d.sync += [l6.v.eq(l5.v), l6.a.eq(l5.a)]
        for k in range(P):
            dh = l5.gfa[k] >> p.dh_shift
            m.d.sync += [l6.dh[k].eq(Mux(p.hebb_neg, -dh, dh)), l6.hd[k].eq(l5.hd[k])]
        # L6: clamp and write back
        hc = p.h_clamp
        for k in range(P):
            s = l6.hd[k] + l6.dh[k]
            m.d.comb += self.h_wdata[k].eq(Mux(s > hc, hc, Mux(s < -hc, -hc, s)))
        m.d.comb += [self.h_waddr.eq(l6.a), self.h_we.eq(l6.v)]
        m.d.comb += self.busy.eq(running | l1.v | l2.v | l3.v | l4.v | l5.v | l6.v)
        return m
