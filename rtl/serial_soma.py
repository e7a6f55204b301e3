"""Serial soma of the compact core: one neuron at a time on one shift-and-add datapath."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from plasticore import contract as C
from plasticore.core_map import CoreGeometry

from .arith import sat_fast
from .layouts import param_layout, spike_event_layout

__all__ = ["SerialSoma", "serial_soma_cycles"]

#: multiplier (coefficient) width: every coefficient is a 17-bit two's complement number (alpha
#: sign-extended, lam / recip / 2**acc_shift zero-extended), one bit per clock
K_BITS = 17


def serial_soma_cycles(lif: bool, alpha_shift: int, ann_shift: int, recip_shift: int) -> int:
    """Clocks of one neuron, from the ``start`` clock to the ``done`` clock inclusive.

    Four 17-clock multiplies (alpha*accH, accW*2**acc_shift, v*lam (LIF), u*recip), one clock per
    bit of every rounding shift (``max(s, 1)``), one clock per add / saturate / memory step.
    """
    sh = max(alpha_shift, 1) + max(recip_shift, 1)
    return 62 + sh + (31 if lif else 1 + max(ann_shift, 1))


class SerialSoma(wiring.Component):
    """LIF / ANN update and post-function value of one neuron per ``start``.

    One accumulator ``R`` with one adder (``R + (src ^ inv) + cin``) and a one-bit arithmetic right
    shift does everything: the multiplies (shift-and-add, ``R := (R + K[0]·X·2**17) >> 1``, the last
    of 17 bits subtracting), the rounding shifts (``rshift_round(R, s)`` = ``s - 1`` shifts, then
    ``R := (R + 1) >> 1``), the adds and the saturations.  The sequence (``docs/core.md``, compact
    core) computes exactly ``plasticore.golden.soma_*`` and ``post_fn``::

        R = alpha*accH; R = rshift_round(R, alpha_shift); T = sat_U(R)
        R = accW*2**acc_shift; R += b; R += T; T = I = sat_U(R)
        LIF: R = u_prev; R -= theta (soft, s_prev != 0) | R = u_reset (hard, s_prev != 0); X = v
             R = v*lam; R = rshift_round(R, 8); R += T; X = u = sat_U(R); R = u - theta - 1; s = R >= 0
        ANN: X = u = I; R = rshift_round(I, ann_shift); s = clip(R)
        write u, s (emit {j, s} if s != 0); R = u*recip; R = rshift_round(R, recip_shift); R -= eta
        read lut[clip(R, -256, 255) + 256] -> f (written to F[j]; ``f`` = the table output, held for the LPU)

    The memories are read at ``n_addr`` (set by the core, constant while ``busy``) with one clock
    latency; ``u``, ``s``, ``f`` are written at ``n_addr``.  An output waits on ``out`` until taken.
    """

    def __init__(self, geom: CoreGeometry, aw_bits: int, ah_bits: int):
        self.geom = geom
        self.aw_bits, self.ah_bits = aw_bits, ah_bits
        nb = geom.neuron_bits
        super().__init__({
            "params": In(param_layout()),
            "start": In(1),
            "j": In(nb),
            "acc_w": In(signed(aw_bits)),
            "acc_h": In(signed(ah_bits)),
            "busy": Out(1),
            "done": Out(1),
            "clear_count": In(1),
            "out_count": Out(range(geom.n_pad + 1)),
            "u_data": In(signed(C.U_BITS)),
            "s_data": In(signed(C.X_BITS)),
            "b_data": In(signed(C.B_BITS)),
            "eta_data": In(signed(C.ETA_BITS)),
            "w_en": Out(1),
            "u_wdata": Out(signed(C.U_BITS)),
            "s_wdata": Out(signed(C.X_BITS)),
            "lut_addr": Out(C.LUT_INDEX_BITS),
            "lut_data": In(signed(C.F_BITS)),
            "f_en": Out(1),
            "f": Out(signed(C.F_BITS)),
            "out": Out(stream.Signature(spike_event_layout(geom))),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        U = C.U_BITS
        XW = max(self.ah_bits, self.aw_bits, U + 1)
        RW = XW + K_BITS + 1
        lif = p.soma == int(C.SomaMode.LIF)

        R = Signal(signed(RW))
        X = Signal(signed(XW))
        K = Signal(K_BITS)
        T = Signal(signed(U))
        cnt = Signal(6)
        s_new = Signal(signed(C.X_BITS))

        src = Signal(signed(RW))
        inv = Signal()
        cin = Signal()
        total = Signal(signed(RW + 1))
        m.d.comb += total.eq(R + (src ^ Mux(inv, -1, 0)) + cin)
        half = total[1:RW + 1].as_signed()  # (R + addend) >> 1, exact floor
        add = total[:RW].as_signed()
        satR = sat_fast(R, U)

        ov = self.out
        with m.If(ov.valid & ov.ready):
            m.d.sync += ov.valid.eq(0)
        with m.If(self.clear_count):
            m.d.sync += self.out_count.eq(0)

        def mul_state(name, nxt, shift_amount):
            """17 shift-and-add clocks; the last loads ``cnt`` with the rounding shift that follows."""
            with m.State(name):
                last = cnt == K_BITS - 1
                m.d.comb += [src.eq(Mux(K[0], X << K_BITS, 0)), inv.eq(K[0] & last), cin.eq(K[0] & last)]
                m.d.sync += [R.eq(half), K.eq(K >> 1), cnt.eq(cnt + 1)]
                with m.If(last):
                    m.d.sync += cnt.eq(shift_amount)
                    m.next = nxt

        def shift_state(name, nxt):
            """``R := rshift_round(R, cnt)`` in ``max(cnt, 1)`` clocks."""
            with m.State(name):
                with m.If(cnt > 1):
                    m.d.sync += [R.eq(half), cnt.eq(cnt - 1)]
                with m.Elif(cnt == 1):
                    m.d.comb += cin.eq(1)
                    m.d.sync += R.eq(half)
                    m.next = nxt
                with m.Else():
                    m.next = nxt

        def load_mul(x, k):
            return [R.eq(0), X.eq(x), K.eq(k), cnt.eq(0)]

        alpha_k = Cat(p.alpha, p.alpha[-1])  # sign-extended to 17 bits
        with m.FSM(name="soma") as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.sync += load_mul(self.acc_h, alpha_k)
                m.next = "MUL_A"
            mul_state("MUL_A", "SH_A", p.alpha_shift)
            shift_state("SH_A", "SAT_A")
            with m.State("SAT_A"):
                m.d.sync += [T.eq(satR)] + load_mul(self.acc_w, (Const(1, K_BITS) << p.acc_shift)[:K_BITS])
                m.next = "MUL_W"
            mul_state("MUL_W", "ADD_B", 0)
            with m.State("ADD_B"):
                m.d.comb += src.eq(self.b_data)
                m.d.sync += R.eq(add)
                m.next = "ADD_T"
            with m.State("ADD_T"):
                m.d.comb += src.eq(T)
                m.d.sync += R.eq(add)
                m.next = "SAT_I"
            with m.State("SAT_I"):
                m.d.sync += T.eq(satR)
                with m.If(lif):
                    m.d.sync += R.eq(self.u_data)
                    m.next = "RESET"
                with m.Else():
                    m.d.sync += [R.eq(satR), X.eq(satR), cnt.eq(p.ann_shift)]
                    m.next = "SH_N"
            # ---- LIF
            with m.State("RESET"):
                with m.If(self.s_data != 0):
                    with m.If(p.reset == int(C.ResetMode.SOFT)):
                        m.d.comb += [src.eq(p.theta), inv.eq(1), cin.eq(1)]
                        m.d.sync += R.eq(add)
                    with m.Else():
                        m.d.sync += R.eq(p.u_reset)
                m.next = "V"
            with m.State("V"):
                m.d.sync += load_mul(R, p.lam)
                m.next = "MUL_L"
            mul_state("MUL_L", "SH_L", 8)
            shift_state("SH_L", "ADD_I")
            with m.State("ADD_I"):
                m.d.comb += src.eq(T)
                m.d.sync += R.eq(add)
                m.next = "SAT_U"
            with m.State("SAT_U"):
                m.d.sync += [R.eq(satR), X.eq(satR)]
                m.next = "CMP"
            with m.State("CMP"):
                m.d.comb += [src.eq(p.theta), inv.eq(1)]  # R - theta - 1
                m.d.sync += R.eq(add)
                m.next = "SPIKE"
            with m.State("SPIKE"):
                m.d.sync += s_new.eq(~R[-1])
                m.next = "WRITE"
            # ---- ANN
            shift_state("SH_N", "CLIP")
            with m.State("CLIP"):
                relu = Mux(R[-1], 0, Mux(R[8:] != 0, 255, R[:8]))
                m.d.sync += s_new.eq(Mux(p.ann_act == int(C.AnnAct.RELU), relu, sat_fast(R, 8)))
                m.next = "WRITE"
            # ---- write back, post function
            with m.State("WRITE"):
                m.d.comb += self.w_en.eq(1)
                with m.If(s_new != 0):
                    m.d.sync += [self.out_count.eq(self.out_count + 1), ov.valid.eq(p.emit)]
                m.d.sync += load_mul(X, p.recip)
                m.next = "MUL_Z"
            mul_state("MUL_Z", "SH_Z", p.recip_shift)
            shift_state("SH_Z", "ETA")
            with m.State("ETA"):
                m.d.comb += [src.eq(self.eta_data), inv.eq(1), cin.eq(1)]
                m.d.sync += R.eq(add)
                m.next = "INDEX"
            with m.State("INDEX"):
                m.d.sync += self.lut_addr.eq(sat_fast(R, C.LUT_INDEX_BITS).as_unsigned() ^ C.LUT_HALF)
                m.next = "LUT"
            with m.State("LUT"):  # read issued from the registered index
                m.next = "F"
            with m.State("F"):
                m.d.comb += self.f_en.eq(1)
                with m.If(~ov.valid | ov.ready):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        # f_j: the table output, held until the next neuron's INDEX (the read address is a register)
        m.d.comb += [self.busy.eq(~fsm.ongoing("IDLE")), self.u_wdata.eq(X[:U]), self.s_wdata.eq(s_new),
                     self.f.eq(self.lut_data),
                     # the output: j and s_new hold until ``done``, which waits for the transfer
                     ov.payload.neuron.eq(self.j), ov.payload.value.eq(s_new)]
        return m
