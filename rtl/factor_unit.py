"""Factor unit of the program core: the traces and the per-group post word of a rule program's step.

Runs after the soma, before the programmable LPU (``rtl/program_lpu.py``), in two pipelines that
start together (contract v2, ``plasticore/golden.py``)::

    axons    i < n_axons:  xtr_i = sat16(rshift_round(xtr_i * pre_decay, 8) + (x_i << (8 - x_frac)))
    neurons  j < G * P:    ytr_j = sat16(rshift_round(ytr_j * post_decay, 8) + (s_j << (8 - s_frac)))
                           m_j   = t_j (direct) | sat16(t_j - f_j) (error)
                           post word lane j: f_j, s_j, ytr_j, m_j, sat16(rshift_round(m_j f_j, 12)),
                                             sat16(m_j s_j), sat16(rshift_round(m_j ytr_j, 8))

``fresh`` (the first plastic step of a sample) reads both traces as 0: a sample starts with zero
traces without a pass that clears them.  One axon and one neuron a clock; the step spends
:func:`factor_cycles` clocks here.  Memories are plain synchronous reads (data the clock after the
address).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from plasticore import contract as C
from plasticore import rules as R
from plasticore.core_map import CoreGeometry

from .arith import sat
from .layouts import param_layout
from .program_lpu import FACTOR_BITS, POST_FIELDS

__all__ = ["FACTOR_LATENCY", "FactorUnit", "factor_cycles", "post_lane_layout"]

#: clocks from a pipeline's last read issue to its write (both pipelines)
FACTOR_LATENCY = 6


def factor_cycles(n_axons: int, n_groups: int, lanes: int) -> int:
    """Clocks from ``start`` to ``busy`` falling: the longer of the two pipelines."""
    return max(n_axons, n_groups * lanes) + FACTOR_LATENCY


def post_lane_layout() -> data.StructLayout:
    """One neuron's post factors (a lane of the post-word memory, written one neuron at a time)."""
    return data.StructLayout({f: signed(FACTOR_BITS) for f in POST_FIELDS})


class FactorUnit(wiring.Component):
    """The traces and post words of one plastic step (module docstring)."""

    def __init__(self, geom: CoreGeometry):
        self.geom = geom
        P = geom.lanes
        super().__init__({
            "params": In(param_layout()),
            "pre_decay": In(C.FRAC8_BITS), "post_decay": In(C.FRAC8_BITS), "m_error": In(1),
            "fresh": In(1),
            "start": In(1),
            "n_groups": In(range(geom.groups + 1)),
            "busy": Out(1),
            # axons: x and the presynaptic trace
            "x_addr": Out(geom.axon_bits), "x_data": In(signed(C.X_BITS)),
            "xtr_raddr": Out(geom.axon_bits), "xtr_rdata": In(signed(R.TRACE_BITS)),
            "xtr_waddr": Out(geom.axon_bits), "xtr_wdata": Out(signed(R.TRACE_BITS)), "xtr_we": Out(1),
            # neurons: s, the postsynaptic trace, the host's t; f by group
            "n_addr": Out(geom.neuron_bits),
            "s_data": In(signed(C.X_BITS)), "ytr_rdata": In(signed(R.TRACE_BITS)), "mt_data": In(signed(R.M_BITS)),
            "f_addr": Out(range(max(2, geom.groups))), "f_data": In(data.ArrayLayout(signed(C.F_BITS), P)),
            "ytr_waddr": Out(geom.neuron_bits), "ytr_wdata": Out(signed(R.TRACE_BITS)), "ytr_we": Out(1),
            "post_waddr": Out(range(max(2, geom.groups))), "post_wdata": Out(post_lane_layout()),
            "post_we": Out(P),
        })

    def elaborate(self, platform):
        m = Module()
        geom, p = self.geom, self.params
        P = geom.lanes
        logp = P.bit_length() - 1
        L = FACTOR_LATENCY
        x_sh = Signal(4)  # 8 - x_frac: spikes 8, graded 0
        s_sh = Signal(4)  # 8 - s_frac: LIF 8, ANN 0
        m.d.comb += [x_sh.eq(Mux(p.input_kind == int(C.InputKind.GRADED), 0, 8)),
                     s_sh.eq(Mux(p.soma == int(C.SomaMode.LIF), 8, 0))]

        def chain(v, n, name) -> list:  # ``v`` 1..n clocks later
            regs, cur = [], v
            for d in range(n):
                r = Signal.like(cur, name=f"{name}_d{d + 1}")
                m.d.sync += r.eq(cur)
                regs.append(r)
                cur = r
            return regs

        def delayed(v, n, name):
            return chain(v, n, name)[-1]

        # ---- the axon pipeline ------------------------------------------------------------------
        a_run, i = Signal(), Signal(range(geom.a_max + 1))
        n_run, j = Signal(), Signal(range(geom.n_pad + 1))
        n_pad = Signal(range(geom.n_pad + 1))
        m.d.comb += n_pad.eq(self.n_groups << logp)
        with m.If(self.start):
            m.d.sync += [a_run.eq(p.n_axons != 0), i.eq(0), n_run.eq(self.n_groups != 0), j.eq(0)]
        with m.Else():
            with m.If(a_run):
                m.d.sync += i.eq(i + 1)
                with m.If(i == p.n_axons - 1):
                    m.d.sync += a_run.eq(0)
            with m.If(n_run):
                m.d.sync += j.eq(j + 1)
                with m.If(j == n_pad - 1):
                    m.d.sync += n_run.eq(0)
        m.d.comb += [self.x_addr.eq(i), self.xtr_raddr.eq(i), self.n_addr.eq(j), self.f_addr.eq(j >> logp)]
        # +1: read data
        av1, ai1 = Signal(), Signal.like(i)
        m.d.sync += [av1.eq(a_run & ~self.start), ai1.eq(i)]
        x2, xt2 = Signal(signed(C.X_BITS)), Signal(signed(R.TRACE_BITS))
        m.d.sync += [x2.eq(self.x_data), xt2.eq(Mux(self.fresh, 0, self.xtr_rdata))]
        # +2: xtr * pre_decay;  +3: rounded, plus the input;  +4: sat16
        xp3 = Signal(signed(R.TRACE_BITS + C.FRAC8_BITS + 1))
        xin3 = Signal(signed(C.X_BITS + 8))
        m.d.sync += [xp3.eq(xt2 * self.pre_decay), xin3.eq(x2 << x_sh)]
        xs4 = Signal(signed(R.TRACE_BITS + C.FRAC8_BITS + 2))
        m.d.sync += xs4.eq(((xp3 + 128) >> 8) + xin3)
        xw5 = Signal(signed(R.TRACE_BITS))
        m.d.sync += xw5.eq(sat(xs4, R.TRACE_BITS))
        # +5: the write waits a clock (both pipelines write at +L)
        avs = chain(av1, L - 1, "av")
        avL, aiL = avs[-1], delayed(ai1, L - 1, "ai")
        m.d.comb += [self.xtr_waddr.eq(aiL), self.xtr_wdata.eq(delayed(xw5, L - 5, "xw")), self.xtr_we.eq(avL)]

        # ---- the neuron pipeline ----------------------------------------------------------------
        nv1, nj1 = Signal(), Signal.like(j)
        m.d.sync += [nv1.eq(n_run & ~self.start), nj1.eq(j)]
        s2, yt2, t2, f2 = (Signal(signed(C.X_BITS)), Signal(signed(R.TRACE_BITS)), Signal(signed(R.M_BITS)),
                           Signal(signed(C.F_BITS)))
        m.d.sync += [s2.eq(self.s_data), yt2.eq(Mux(self.fresh, 0, self.ytr_rdata)), t2.eq(self.mt_data),
                     f2.eq(self.f_data[nj1[:logp] if logp else 0])]
        # +2: ytr * post_decay, the error, s shifted
        yp3 = Signal(signed(R.TRACE_BITS + C.FRAC8_BITS + 1))
        m3 = Signal(signed(R.M_BITS))
        sin3 = Signal(signed(C.X_BITS + 8))
        m.d.sync += [yp3.eq(yt2 * self.post_decay), m3.eq(Mux(self.m_error, sat(t2 - f2, R.M_BITS), t2)),
                     sin3.eq(s2 << s_sh)]
        s3, f3 = delayed(s2, 1, "s"), delayed(f2, 1, "f")
        # +3: the new ytr (unsaturated), m*f, m*s
        ys4 = Signal(signed(R.TRACE_BITS + C.FRAC8_BITS + 2))
        mf4 = Signal(signed(R.M_BITS + C.F_BITS))
        ms4 = Signal(signed(R.M_BITS + C.X_BITS))
        m.d.sync += [ys4.eq(((yp3 + 128) >> 8) + sin3), mf4.eq(m3 * f3), ms4.eq(m3 * s3)]
        m4, s4, f4 = delayed(m3, 1, "m"), delayed(s3, 1, "s4"), delayed(f3, 1, "f4")
        # +4: ytr = sat16;  m*f rounded, m*s saturated
        y5 = Signal(signed(R.TRACE_BITS))
        mf5, ms5 = Signal(signed(R.M_BITS)), Signal(signed(R.M_BITS))
        m.d.sync += [y5.eq(sat(ys4, R.TRACE_BITS)), mf5.eq(sat((mf4 + (1 << (C.F_FRAC - 1))) >> C.F_FRAC, R.M_BITS)),
                     ms5.eq(sat(ms4, R.M_BITS))]
        m5, s5, f5 = delayed(m4, 1, "m5"), delayed(s4, 1, "s5"), delayed(f4, 1, "f5")
        # +5: m*ytr (registered: the product is not on the path into the post-word memory);
        # +6: it is rounded and saturated into the write
        my6 = Signal(signed(R.M_BITS + R.TRACE_BITS))
        m.d.sync += my6.eq(m5 * y5)
        f6, s6, y6, m6, mf6, ms6 = (delayed(v, 1, f"{n}6") for v, n in ((f5, "f"), (s5, "s"), (y5, "y"), (m5, "m"),
                                                                         (mf5, "mf"), (ms5, "ms")))
        nvs = chain(nv1, L - 1, "nv")
        nvL, njL = nvs[-1], delayed(nj1, L - 1, "nj")
        w = self.post_wdata
        m.d.comb += [
            w.f.eq(f6), w.s.eq(s6), w.ytr.eq(y6), w.m.eq(m6), w.mf.eq(mf6), w.ms.eq(ms6),
            w.my.eq(sat((my6 + (1 << (R.TRACE_FRAC - 1))) >> R.TRACE_FRAC, R.M_BITS)),
            self.post_waddr.eq(njL >> logp),
            self.post_we.eq(Mux(nvL, 1 << (njL[:logp] if logp else 0), 0)),
            self.ytr_waddr.eq(njL), self.ytr_wdata.eq(y6), self.ytr_we.eq(nvL),
        ]
        m.d.comb += self.busy.eq(Cat(a_run, n_run, av1, nv1, *avs, *nvs).any())
        return m
