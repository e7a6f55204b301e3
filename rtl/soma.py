"""Soma: LIF / ANN neuron update and the per-neuron post-function value f_j, one neuron per clock."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from plasticore import contract as C
from plasticore.core_map import CoreGeometry

from .arith import round_half, sat
from .layouts import param_layout, spike_event_layout

__all__ = ["Soma", "SOMA_LATENCY"]

#: pipeline stages from a neuron's issue to its f write (u/s are written in S6)
SOMA_LATENCY = 11
OUT_FIFO_DEPTH = 32


class Soma(wiring.Component):
    """Serial soma for one group of P accumulators at a time.

    ``load`` (pulse, when ``ready``) captures the P lane accumulators ``acc_w``/``acc_h`` of group
    ``group`` (first neuron ``jbase``); the soma then issues one neuron per clock (P clocks per
    group, lanes beyond ``params.n_neurons`` are computed but not written) through the pipeline::

        S1   prodH = alpha * accH;  aw = accW << acc_shift;  v = u - theta*s (soft) | s ? 0 : u (hard)
        S2   prodH + 2**(alpha_shift-1);  vl = v * lam;  awb = aw + b
        S3   ih = sat_U(.. >> alpha_shift);  vlr = rshift_round(vl, 8)
        S4   I = sat_U(awb + ih)
        S5   u' = sat_U(vlr + I) (LIF) | I (ANN);  I + 2**(ann_shift-1)
        S6   s' = [u' > theta] (LIF) | clip(.. >> ann_shift) (ANN); write u, s; emit {j, s'} if s' != 0
        S7   pz = u' * recip;  S8  pz + 2**(recip_shift-1);  S9  >> recip_shift
        S10  idx = clip(z - eta, -256, 255) + 256, read lut[idx];  S11  write f[group] lane k

    Every ``rshift_round`` is split into a rounding add and a shift stage (Fmax).
    ``ready`` is high when the lane buffer is empty (or its last lane issues this clock); ``idle``
    when the buffer and the pipeline are empty.  Non-zero outputs go to ``out`` through a FIFO; a
    neuron issues only while the FIFO has room for everything in flight, so nothing is dropped.
    """

    def __init__(self, geom: CoreGeometry, aw_bits: int, ah_bits: int):
        self.geom = geom
        self.aw_bits, self.ah_bits = aw_bits, ah_bits
        P, nb = geom.lanes, geom.neuron_bits
        super().__init__({
            "params": In(param_layout()),
            "load": In(1),
            "jbase": In(nb),
            "group": In(range(max(2, geom.groups))),
            "acc_w": In(data.ArrayLayout(signed(aw_bits), P)),
            "acc_h": In(data.ArrayLayout(signed(ah_bits), P)),
            "ready": Out(1),
            "idle": Out(1),
            "clear_count": In(1),
            "out_count": Out(range(geom.n_pad + 1)),
            # memory interface (synchronous reads, one clock)
            "n_addr": Out(nb),  # read address of b, u, s, eta
            "b_data": In(signed(C.B_BITS)),
            "u_data": In(signed(C.U_BITS)),
            "s_data": In(signed(C.X_BITS)),
            "eta_data": In(signed(C.ETA_BITS)),
            "w_addr": Out(nb),  # write address of u, s
            "w_en": Out(1),
            "u_wdata": Out(signed(C.U_BITS)),
            "s_wdata": Out(signed(C.X_BITS)),
            "lut_addr": Out(C.LUT_INDEX_BITS),
            "lut_data": In(signed(C.F_BITS)),
            "f_addr": Out(range(max(2, geom.groups))),
            "f_en": Out(P),
            "f_wdata": Out(data.ArrayLayout(signed(C.F_BITS), P)),
            "out": Out(stream.Signature(spike_event_layout(geom))),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        geom = self.geom
        P, nb = geom.lanes, geom.neuron_bits
        lif = p.soma == int(C.SomaMode.LIF)
        U = C.U_BITS
        theta = p.theta.as_signed()  # 1 .. 2**23-1, so the sign bit is 0

        m.submodules.fifo = ofifo = fifo.SyncFIFOBuffered(width=len(self.out.payload.as_value()),
                                                           depth=OUT_FIFO_DEPTH)
        m.d.comb += [self.out.valid.eq(ofifo.r_rdy), self.out.payload.eq(ofifo.r_data),
                     ofifo.r_en.eq(self.out.ready)]

        # ---- lane buffer ------------------------------------------------------------------
        bw = Signal(data.ArrayLayout(signed(self.aw_bits), P))
        bh = Signal(data.ArrayLayout(signed(self.ah_bits), P))
        rem = Signal(range(P + 1))
        j = Signal(nb + 1)
        k = Signal(range(P))
        grp = Signal.like(self.group)
        room = Signal()
        m.d.comb += room.eq(ofifo.level <= OUT_FIFO_DEPTH - SOMA_LATENCY - 2)
        issue = Signal()
        m.d.comb += issue.eq((rem != 0) & room)
        m.d.comb += self.ready.eq((rem == 0) | ((rem == 1) & issue))
        with m.If(issue):
            m.d.sync += [rem.eq(rem - 1), j.eq(j + 1), k.eq(k + 1)]
            for q in range(P - 1):
                m.d.sync += [bw[q].eq(bw[q + 1]), bh[q].eq(bh[q + 1])]
        with m.If(self.load):
            m.d.sync += [bw.eq(self.acc_w), bh.eq(self.acc_h), rem.eq(P), j.eq(self.jbase), k.eq(0),
                         grp.eq(self.group)]
        m.d.comb += self.n_addr.eq(j)

        def stage(name, fields):
            assert not {"v", "j", "k", "g"} & set(fields)
            return Signal(data.StructLayout({"v": 1, "j": nb, "k": range(P), "g": len(grp), **fields}),
                          name=name)

        AWS = self.aw_bits + C.ACC_SHIFT_MAX
        PH = self.ah_bits + C.ALPHA_BITS  # alpha * accH
        PZ = U + C.RECIP_BITS + 1  # u * recip
        SW = C.SHIFT_MAX + 2
        # rounding constants 2**(s-1) of the (static) shift registers, registered off the datapath
        half_a, half_n, half_z = (Signal(SW, name=n) for n in ("half_a", "half_n", "half_z"))
        m.d.sync += [half_a.eq(round_half(p.alpha_shift, SW)), half_n.eq(round_half(p.ann_shift, SW)),
                     half_z.eq(round_half(p.recip_shift, SW))]

        r1 = stage("r1", {"aw": signed(self.aw_bits), "ah": signed(self.ah_bits)})
        r2 = stage("r2", {"prodh": signed(PH), "aw": signed(AWS), "b": signed(C.B_BITS),
                          "vm": signed(U + 1), "eta": signed(C.ETA_BITS)})
        r3 = stage("r3", {"pha": signed(max(PH, SW) + 1), "vl": signed(U + 1 + C.FRAC8_BITS + 1),
                          "awb": signed(AWS + 1), "eta": signed(C.ETA_BITS)})
        r4 = stage("r4", {"ih": signed(U), "vlr": signed(U + 2 + C.FRAC8_BITS), "awb": signed(AWS + 1),
                          "eta": signed(C.ETA_BITS)})
        r5 = stage("r5", {"i": signed(U), "vlr": signed(U + 2 + C.FRAC8_BITS), "eta": signed(C.ETA_BITS)})
        r6 = stage("r6", {"u": signed(U), "ya": signed(SW + 1), "eta": signed(C.ETA_BITS)})
        r7 = stage("r7", {"pz": signed(PZ), "eta": signed(C.ETA_BITS)})
        r8 = stage("r8", {"pza": signed(max(PZ, SW) + 1), "eta": signed(C.ETA_BITS)})
        r9 = stage("r9", {"zs": signed(PZ), "eta": signed(C.ETA_BITS)})
        r10 = stage("r10", {"idx": unsigned(C.LUT_INDEX_BITS)})
        r11 = stage("r11", {})
        stages = (r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11)
        assert len(stages) == SOMA_LATENCY

        def carry(dst, src):
            return [dst.v.eq(src.v), dst.j.eq(src.j), dst.k.eq(src.k), dst.g.eq(src.g)]

        # S0 -> r1
        m.d.sync += [r1.v.eq(issue), r1.j.eq(j), r1.k.eq(k), r1.g.eq(grp),
                     r1.aw.eq(bw[0]), r1.ah.eq(bh[0])]
        # S1 -> r2 (memory data of r1.j is on *_data now): alpha * accH, reset
        s_prev = self.s_data != 0
        v_soft = self.u_data - Mux(s_prev, theta, 0)
        v_hard = Mux(s_prev, 0, self.u_data)
        m.d.sync += carry(r2, r1) + [
            r2.prodh.eq(r1.ah * p.alpha),
            r2.aw.eq(r1.aw << p.acc_shift),
            r2.b.eq(self.b_data),
            r2.vm.eq(Mux(p.reset == int(C.ResetMode.SOFT), v_soft, v_hard)),
            r2.eta.eq(self.eta_data),
        ]
        # S2 -> r3: rounding add of alpha*accH, leak multiply, W current + bias
        m.d.sync += carry(r3, r2) + [
            r3.pha.eq(r2.prodh + half_a),
            r3.vl.eq(r2.vm * p.lam),
            r3.awb.eq(r2.aw + r2.b),
            r3.eta.eq(r2.eta),
        ]
        # S3 -> r4: shift + saturate the H current, round the leak
        m.d.sync += carry(r4, r3) + [
            r4.ih.eq(sat(r3.pha >> p.alpha_shift, U)),
            r4.vlr.eq((r3.vl + 128) >> 8),
            r4.awb.eq(r3.awb),
            r4.eta.eq(r3.eta),
        ]
        # S4 -> r5: current I
        m.d.sync += carry(r5, r4) + [
            r5.i.eq(sat(r4.awb + r4.ih, U)),
            r5.vlr.eq(r4.vlr),
            r5.eta.eq(r4.eta),
        ]
        # S5 -> r6: membrane; rounding add of the ANN shift
        m.d.sync += carry(r6, r5) + [
            r6.u.eq(Mux(lif, sat(r5.vlr + r5.i, U), r5.i)),
            r6.ya.eq(r5.i + half_n),
            r6.eta.eq(r5.eta),
        ]
        # S6: spike / activation, write back, emit; -> r7: u * recip
        s_new = Signal(signed(C.X_BITS))
        y = Signal(signed(SW + 1))
        m.d.comb += y.eq(r6.ya >> p.ann_shift)
        relu = p.ann_act == int(C.AnnAct.RELU)
        y_relu = Mux(y > 255, 255, Mux(y < 0, 0, y))
        y_id = Mux(y > 127, 127, Mux(y < -128, -128, y))
        m.d.comb += s_new.eq(Mux(lif, r6.u > theta, Mux(relu, y_relu, y_id)))
        live = r6.v & (r6.j < p.n_neurons)  # lanes past the last neuron are computed but not written
        m.d.comb += [self.w_addr.eq(r6.j), self.w_en.eq(live), self.u_wdata.eq(r6.u), self.s_wdata.eq(s_new)]
        push = live & (s_new != 0)
        m.d.comb += [ofifo.w_en.eq(push & p.emit),
                     ofifo.w_data.eq(Cat(r6.j[:nb], s_new))]
        with m.If(self.clear_count):
            m.d.sync += self.out_count.eq(0)
        with m.Elif(push):
            m.d.sync += self.out_count.eq(self.out_count + 1)
        m.d.sync += carry(r7, r6) + [r7.pz.eq(r6.u * p.recip), r7.eta.eq(r6.eta)]
        # S7 -> r8: rounding add of u*recip
        m.d.sync += carry(r8, r7) + [r8.pza.eq(r7.pz + half_z), r8.eta.eq(r7.eta)]
        # S8 -> r9: shift
        m.d.sync += carry(r9, r8) + [r9.zs.eq(r8.pza >> p.recip_shift), r9.eta.eq(r8.eta)]
        # S9 -> r10: z = u/theta - eta, table index
        z = Signal(signed(PZ + 1))
        m.d.comb += z.eq(r9.zs - r9.eta)
        zc = Mux(z > C.LUT_HALF - 1, C.LUT_HALF - 1, Mux(z < -C.LUT_HALF, -C.LUT_HALF, z))
        m.d.sync += carry(r10, r9) + [r10.idx.eq((zc + C.LUT_HALF)[:C.LUT_INDEX_BITS])]
        # S10: lut read -> r11
        m.d.comb += self.lut_addr.eq(r10.idx)
        m.d.sync += carry(r11, r10)
        # S11: write f
        m.d.comb += [self.f_addr.eq(r11.g),
                     self.f_en.eq(Mux(r11.v & (r11.j < p.n_neurons), (Const(1, P) << r11.k)[:P], 0))]
        m.d.comb += [self.f_wdata[q].eq(self.lut_data) for q in range(P)]

        self._probe = {"rem": rem, "issue": issue, "r6": r6, "r1": r1, "j": j}
        busy = rem != 0
        for r in stages:
            busy = busy | r.v
        m.d.comb += self.idle.eq(~busy)
        return m
