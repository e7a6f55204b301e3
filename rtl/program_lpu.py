"""Programmable local plasticity unit (contract v2): runs a layer's rule program over its H words.

The program (``plasticore/rules.py``, ``docs/plasticity.md``) is up to ``K_MAX`` terms; per synapse::

    p_k = sat18(rshift_round(pre_k(i) * post_k(j), shift_k))
    q_k = rshift_round(c_k * p_k, c_shift_k)
    H   = clip(rshift_round(H * decay, 8) + sat18(sum_k q_k), -h_clamp, +h_clamp)

The terms run **in time**: every H word (P synapses) is read once per term, ``n_terms`` clocks in a
row, each clock one term flows through one pre x post multiplier and one coefficient multiplier per lane
into an accumulator; the word's last term closes the sum, which joins the decayed H, the clamp and the
write-back.  A sweep over ``n_groups`` x ``n_axons`` words takes ``n_terms * n_groups * n_axons +
PROGRAM_LPU_LATENCY`` clocks (:func:`program_lpu_cycles`); a one-term program keeps one word a clock.

Factors (the codes are the order of :class:`~plasticore.rules.Pre` / :class:`~plasticore.rules.Post`):
pre from the axon memories (x, the presynaptic trace, β, and g = sat16(rshift_round(β·x, x_frac))
formed here), post from one word per neuron group holding f, s, the postsynaptic trace, m and the
three m-products for every lane (the soma forms them once per neuron, as it forms f).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from plasticore import contract as C
from plasticore import core_map as CM
from plasticore import rules as R
from plasticore.core_map import CoreGeometry

from .arith import round_half, sat
from .layouts import h_sweep_ports
from .lpu import next_word
from .multiplier import MULTIPLIER_LATENCY, PipelinedMultiplier

__all__ = ["ProgramPlasticityUnit", "PROGRAM_LPU_LATENCY", "program_layout", "post_word_layout",
           "program_lpu_cycles", "POST_FIELDS"]

#: the post factors held per neuron, in :class:`~plasticore.rules.Post` order after ``1``
POST_FIELDS = ("f", "s", "ytr", "m", "mf", "ms", "my")
assert len(POST_FIELDS) == len(R.Post) - 1
FACTOR_BITS = 16  #: every pre and post factor is a signed 16-bit value (x: 9 bits, sign-extended)
assert max(C.X_BITS, C.BETA_BITS, C.G_BITS, R.TRACE_BITS) <= FACTOR_BITS
assert max(C.F_BITS, R.M_BITS, R.TRACE_BITS) <= FACTOR_BITS


def program_layout() -> data.StructLayout:
    """A layer's rule program as registers: ``n_terms`` and ``K_MAX`` terms (codes, c, shifts), the
    widths of :data:`plasticore.core_map.TERM_FIELDS` / ``PROG_REGS``."""
    term = data.StructLayout({f: signed(w) if sgn else unsigned(w) for f, (w, sgn) in CM.TERM_FIELDS.items()})
    return data.StructLayout({"n_terms": unsigned(CM.PROG_REGS[CM.ProgReg.N_TERMS][0]),
                              "terms": data.ArrayLayout(term, R.K_MAX)})


def post_word_layout(lanes: int) -> data.StructLayout:
    """One neuron group's post factors: each field P lanes of signed 16 bits."""
    return data.StructLayout({f: data.ArrayLayout(signed(FACTOR_BITS), lanes) for f in POST_FIELDS})


def program_registers(prog: R.RuleProgram) -> dict:
    """The :func:`program_layout` register values of ``prog`` (a dict for ``.eq`` of a view's ``const``),
    from :func:`plasticore.core_map.program_reg_values`."""
    v = CM.program_reg_values(prog)
    return {"n_terms": v[CM.ProgReg.N_TERMS],
            "terms": [{f: v[CM.term_reg(k, f)] for f in CM.TERM_FIELDS} for k in range(R.K_MAX)]}


#: clocks from the last word's last read issue to its H write
PROGRAM_LPU_LATENCY = 22


def program_lpu_cycles(n_terms: int, n_groups: int, n_axons: int) -> int:
    """Clocks of one sweep, ``start`` to ``busy`` falling."""
    return n_terms * n_groups * n_axons + PROGRAM_LPU_LATENCY


class ProgramPlasticityUnit(wiring.Component):
    """Sweeps every H word of the active layer once, running the rule program (module docstring).

    Memories are plain synchronous reads (data the clock after the address).  Stage times are counted
    from ``l2``, the registered read data of one (word, term) slot::

        l1       slot issued: word address, term index k, first / last term of the word
        l2 (+0)  read data registered (H, x, β, xtr, the group's post word) and term k's fields
        +2       β·x (a multiplier: operand and product registers);  +3 rounding add;  +4 g = sat16(>> x_frac)
        +1       the post factors selected by the term's code (P lanes)
        +5       the pre factor selected by the term's code
        +7       pre·post (P multipliers);  +8 rounding add;  +9 >> shift;  +10 p = sat18
        +12      c·p (P multipliers);  +13 rounding add;  +14 q = >> c_shift
        +15      acc = q (first term) or acc + q;  H·decay (its multiplier takes H at +13)
        +16      dh = sat18(acc), hd = rshift_round(H·decay, 8);  +17 hd + dh;  +18 the clamp's compares
        +19      the clamped H, written on the word's last term

    The rounding constants of the two variable shifts are registers computed a clock ahead, so each
    stage is one add or one shift.  ``program_lpu_cycles`` is checked against the simulated sweep in
    ``tests/test_program_lpu.py``.
    """

    def __init__(self, geom: CoreGeometry):
        self.geom = geom
        P = geom.lanes
        super().__init__({
            **h_sweep_ports(geom),
            "program": In(program_layout()),
            "xtr_addr": Out(geom.axon_bits),
            "xtr_data": In(signed(R.TRACE_BITS)),
            "post_addr": Out(range(max(2, geom.groups))),
            "post_data": In(post_word_layout(P)),
        })

    def elaborate(self, platform):
        m = Module()
        geom, p, prog = self.geom, self.params, self.program
        P = geom.lanes
        # ---- slot generator: every word n_terms times in a row --------------------------------------
        running = Signal()
        addr = Signal(geom.addr_bits)
        i = Signal(range(geom.a_max + 1))
        g = Signal(range(geom.groups + 1))
        k = Signal(range(R.K_MAX + 1))
        last_k = Signal()
        end_row, last_word = Signal(), Signal()
        m.d.comb += [last_k.eq(k == prog.n_terms - 1), end_row.eq(i == p.n_axons - 1),
                     last_word.eq(end_row & (g == self.n_groups - 1))]
        with m.If(self.start):
            m.d.sync += [running.eq((self.n_groups != 0) & (prog.n_terms != 0)), addr.eq(0), i.eq(0), g.eq(0),
                         k.eq(0)]
        with m.Elif(running):
            with m.If(~last_k):
                m.d.sync += k.eq(k + 1)
            with m.Else():
                m.d.sync += k.eq(0)
                next_word(m, addr, i, g, end_row, last_word, running)
        m.d.comb += [self.h_raddr.eq(addr), self.x_addr.eq(i), self.beta_addr.eq(i), self.xtr_addr.eq(i),
                     self.post_addr.eq(g)]
        slot = data.StructLayout({"v": 1, "a": geom.addr_bits, "k": range(R.K_MAX), "first": 1, "last": 1})
        l1 = Signal(slot)
        m.d.sync += [l1.v.eq(running & ~self.start), l1.a.eq(addr), l1.k.eq(k), l1.first.eq(k == 0),
                     l1.last.eq(last_k)]
        # ---- l2: read data and the term's fields -------------------------------------------------------
        term_l = program_layout()["terms"].shape.elem_shape
        l2 = Signal(slot)
        term = Signal(term_l)
        h2 = Signal(data.ArrayLayout(signed(C.H_BITS), P))
        x2, b2, xt2 = Signal(signed(C.X_BITS)), Signal(signed(C.BETA_BITS)), Signal(signed(R.TRACE_BITS))
        post2 = Signal(post_word_layout(P))
        m.d.sync += [l2.eq(l1), term.eq(prog.terms[l1.k]), h2.eq(self.h_rdata), x2.eq(self.x_data),
                     b2.eq(self.beta_data), xt2.eq(self.xtr_data), post2.eq(self.post_data)]

        def chain(value, n, name, reset_less=True):  # ``value`` 1..n clocks later (views keep their layout)
            regs, cur = [], value
            for d in range(n):
                r = Signal(value.shape(), name=f"{name}_d{d + 1}", reset_less=reset_less)
                m.d.sync += r.eq(cur)
                regs.append(r)
                cur = r
            return regs

        def at(value, n, name):  # ``value`` n clocks later
            return chain(value, n, name)[-1]

        # ---- +0..+4: g = sat16(rshift_round(β·x, x_frac)) -------------------------------------------
        mul_g = m.submodules.mul_g = PipelinedMultiplier(C.BETA_BITS, C.X_BITS)
        m.d.comb += [mul_g.a.eq(b2), mul_g.b.eq(x2)]
        assert MULTIPLIER_LATENCY == 2
        xf = C.X_FRAC[C.InputKind.GRADED]
        gp3, gpr3 = Signal(signed(C.BETA_BITS + C.X_BITS)), Signal(signed(C.BETA_BITS + C.X_BITS + 1))
        m.d.sync += [gp3.eq(mul_g.p), gpr3.eq(mul_g.p + (1 << (xf - 1)))]
        graded4 = at(p.input_kind == int(C.InputKind.GRADED), 4, "graded")
        g4 = Signal(signed(C.G_BITS))
        m.d.sync += g4.eq(Mux(graded4, sat(gpr3 >> xf, C.G_BITS), sat(gp3, C.G_BITS)))
        # ---- +5: factors by code --------------------------------------------------------------------
        term4 = at(term, 4, "term")
        x4, b4, xt4 = at(x2, 4, "x"), at(b2, 4, "beta"), at(xt2, 4, "xtr")
        pre_by_code = {R.Pre.ONE: Const(1, signed(FACTOR_BITS)), R.Pre.X: x4, R.Pre.XTR: xt4, R.Pre.BETA: b4,
                       R.Pre.G: g4}
        a5 = Signal(signed(FACTOR_BITS))
        with m.Switch(term4.pre):
            for code, f in enumerate(R.Pre):
                with m.Case(code):
                    m.d.sync += a5.eq(pre_by_code[f])
        # (the post factor is selected as soon as the read data is registered: the P chosen lanes wait
        # for g, not the whole post word)
        b3 = Signal(data.ArrayLayout(signed(FACTOR_BITS), P))
        with m.Switch(term.post):
            for code in range(len(R.Post)):
                with m.Case(code):
                    for j in range(P):
                        v = Const(1, signed(FACTOR_BITS)) if code == 0 else post2[POST_FIELDS[code - 1]][j]
                        m.d.sync += b3[j].eq(v)
        b5 = at(b3, 4, "b")
        term5 = at(term4, 1, "term5")
        # ---- +5..+14: p_k, q_k per lane ---------------------------------------------------------------
        PW = 2 * FACTOR_BITS  # pre*post
        SW = max(PW, C.SHIFT_MAX) + 2
        QW = R.COEF_BITS + R.TERM_BITS
        QSW = max(QW, C.SHIFT_MAX) + 2
        # (the rounding constants are registers: in step with the products they are added to)
        half_sh7 = Signal(unsigned(SW))
        m.d.sync += half_sh7.eq(round_half(at(term5.shift, 1, "shift6"), SW))
        sh8 = at(term5.shift, 3, "shift8")
        c9 = at(term5.c, 4, "c")  # registered once more per lane: the c multiplier's operand at +10
        half_csh12 = Signal(unsigned(QSW))
        m.d.sync += half_csh12.eq(round_half(at(term5.c_shift, 6, "c_shift11"), QSW))
        csh13 = at(term5.c_shift, 8, "c_shift13")
        q14 = []
        for j in range(P):
            mul_ab = m.submodules[f"mul_ab{j}"] = PipelinedMultiplier(FACTOR_BITS, FACTOR_BITS)
            m.d.comb += [mul_ab.a.eq(a5), mul_ab.b.eq(b5[j])]
            pr8 = Signal(signed(SW + 1), name=f"pr8_{j}")
            m.d.sync += pr8.eq(mul_ab.p + half_sh7)
            ps9 = Signal(signed(SW + 1), name=f"ps9_{j}")
            m.d.sync += ps9.eq(pr8 >> sh8)
            p10 = Signal(signed(R.TERM_BITS), name=f"p10_{j}")
            m.d.sync += p10.eq(sat(ps9, R.TERM_BITS))
            mul_c = m.submodules[f"mul_c{j}"] = PipelinedMultiplier(R.COEF_BITS, R.TERM_BITS)
            c10 = Signal(signed(R.COEF_BITS), name=f"c10_{j}")
            m.d.sync += c10.eq(c9)
            m.d.comb += [mul_c.a.eq(c10), mul_c.b.eq(p10)]
            qr13 = Signal(signed(QSW + 1), name=f"qr13_{j}")
            m.d.sync += qr13.eq(mul_c.p + half_csh12)
            q = Signal(signed(QSW + 1), name=f"q14_{j}")
            m.d.sync += q.eq(qr13 >> csh13)
            q14.append(q)
        # ---- +15..+20: accumulate, decayed H, clamp, write --------------------------------------------
        # the slot's own chain: slots[n - 1] is the slot of the values at +n
        slots = chain(l2, 19, "slot", reset_less=False)
        s14, s19 = slots[13], slots[18]
        AW = QSW + 1 + (R.K_MAX - 1).bit_length()
        acc = [Signal(signed(AW), name=f"acc{j}") for j in range(P)]
        h13 = at(h2, 13, "h")
        decay13 = at(p.decay, 13, "decay")
        HD = C.H_BITS + C.FRAC8_BITS + 1
        dh16 = Signal(data.ArrayLayout(signed(R.DH_BITS), P))
        hd16 = Signal(data.ArrayLayout(signed(C.H_BITS + 2), P))
        sum17 = Signal(data.ArrayLayout(signed(C.H_BITS + R.DH_BITS), P))
        hc, neg_hc = Signal(signed(C.H_BITS)), Signal(signed(C.H_BITS))
        m.d.sync += [hc.eq(p.h_clamp), neg_hc.eq(-p.h_clamp)]
        gt18, lt18 = Signal(P), Signal(P)
        s18 = Signal(data.ArrayLayout(signed(C.H_BITS), P))
        w19 = Signal(data.ArrayLayout(signed(C.H_BITS), P))
        for j in range(P):
            with m.If(s14.v):
                m.d.sync += acc[j].eq(Mux(s14.first, q14[j], acc[j] + q14[j]))
            mul_hd = m.submodules[f"mul_hd{j}"] = PipelinedMultiplier(C.H_BITS, C.FRAC8_BITS + 1)
            m.d.comb += [mul_hd.a.eq(h13[j]), mul_hd.b.eq(decay13)]
            hdp = Signal(signed(HD), name=f"hdp16_{j}")  # (the product at +15)
            m.d.comb += hdp.eq(mul_hd.p)
            m.d.sync += [dh16[j].eq(sat(acc[j], R.DH_BITS)), hd16[j].eq((hdp + 128) >> 8)]
            m.d.sync += sum17[j].eq(hd16[j] + dh16[j])
            m.d.sync += [gt18[j].eq(sum17[j] > hc), lt18[j].eq(sum17[j] < neg_hc), s18[j].eq(sum17[j][:C.H_BITS])]
            m.d.sync += w19[j].eq(Mux(gt18[j], hc, Mux(lt18[j], neg_hc, s18[j])))
        m.d.comb += [self.h_wdata.eq(w19), self.h_waddr.eq(s19.a), self.h_we.eq(s19.v & s19.last)]
        m.d.comb += self.busy.eq(running | l1.v | l2.v | Cat(*(sl.v for sl in slots)).any())
        return m
