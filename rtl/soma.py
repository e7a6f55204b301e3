"""Soma: LIF / ANN neuron update and the per-neuron post-function value f_j, one neuron per clock."""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from plasticore import contract as C
from plasticore.core_map import CoreGeometry

from .arith import clip_sub_fast, round_half, sat_fast, to_signed
from .layouts import PIPELINE_RESET_LESS, param_layout, spike_event_layout
from .multiplier import MULTIPLIER_LATENCY, PipelinedMultiplier
from .pipelined_ram import DUP, delayed, local_params

__all__ = ["Soma", "SOMA_LATENCY", "SOMA_LOAD_DELAY"]

#: pipeline stages from a neuron's issue to its f write (13 compute stages + 6 relays around the multiplies)
SOMA_LATENCY = 19
#: multiplier operands wider than a MULT18X18D are split at this bit; the partial products are
#: registered and added in the next stage (with the rounding constant that follows them anyway)
MUL_SPLIT = 17
OUT_FIFO_DEPTH = 64
#: with ``mem_delay``: the clocks from a ``load`` request to the lane buffer's load
SOMA_LOAD_DELAY = 1
#: with ``mem_delay``: stages added by the recip shift's split (S9a: by a multiple of 8, S9: the rest)
SOMA_SHIFT_SPLIT = 1


class Soma(wiring.Component):
    """Serial soma for one group of P accumulators at a time.

    ``load`` (pulse, when ``ready``) captures the P lane accumulators ``acc_w``/``acc_h`` of group
    ``group`` (first neuron ``jbase``); the soma then issues one neuron per clock (P clocks per
    group, lanes beyond ``params.n_neurons`` are computed but not written) through the pipeline::

        S1   register the memory data (u, s, b, eta); alpha * accH as two partial products;
             aw = accW << acc_shift
        S2   prodH + 2**(alpha_shift-1) (partial products joined);  v = u - theta*s (soft) | s ? u_reset : u (hard);
             awb = aw + b
        S3   v * lam as two partial products;  prodH >> alpha_shift
        S4   vlr = rshift_round(v * lam, 8) (joined);  ih = sat_U(..)
        S5   I = sat_U(awb + ih)
        S6   u' = sat_U(vlr + I) (LIF) | I (ANN);  I + 2**(ann_shift-1)
        S7   y = .. >> ann_shift;  u' * recip as two partial products;  [u' > theta]
        S8   s' = spike (LIF) | clip(y) (ANN);  u' * recip + 2**(recip_shift-1) (joined)
        S9   write u, s; emit {j, s'} if s' != 0 (from registers);  >> recip_shift
        S10  idx = clip(z - eta, -256, 255) + 256, read lut[idx]
        S11  (read in flight)  S12  register lut data  S13  write f[group] lane k

    Every ``rshift_round`` is split into a rounding add and a shift stage, every multiply starts and
    ends at a register, and the memory outputs drive only registers (Fmax).  The three multiply
    stages (S1, S3, S7) are :class:`PipelinedMultiplier` s (in the DSP blocks' own operand and
    product registers on the ECP5), fed from the stage before the relay that the rest of the stage
    goes through, and their products are relayed once more (a register out of the DSP block) before
    any logic uses them, so the pipeline is
    ``SOMA_LATENCY`` = 13 + 6 = 19 stages; u, s are written from the stage after S8.
    ``ready`` is high when the lane buffer is empty (or its last lane issues this clock); ``idle``
    when the buffer and the pipeline are empty.  Non-zero outputs go to ``out`` through a FIFO; a
    neuron issues only while the FIFO has room for everything in flight, so nothing is dropped.

    ``mem_delay``: the memories return their data that many clocks later than a plain memory
    (pipelined memories); that many stages wait after S0 and after S11, so the pipeline is
    ``SOMA_LATENCY + 2 * mem_delay`` stages (:attr:`latency`), and the buffer takes ``load`` a clock
    late (from flops: ``load`` fans out to every bit of the buffer), so ``ready`` is high only when
    the buffer will be empty at the next clock (:data:`SOMA_LOAD_DELAY`: one clock more per group
    when the soma is the bottleneck, and one more in the drain), and the shift of S9 is two stages,
    by the multiple of 8 of ``recip_shift`` and then by the rest (:data:`SOMA_SHIFT_SPLIT`: one more
    stage, one more clock in the drain).
    """

    def __init__(self, geom: CoreGeometry, aw_bits: int, ah_bits: int, mem_delay: int = 0, b_bits: int = C.B_BITS):
        self.geom = geom
        self.b_bits = b_bits  # the bias input (the program core's: b + the teaching current)
        self.mem_delay = mem_delay
        self.latency = SOMA_LATENCY + 2 * mem_delay + (SOMA_SHIFT_SPLIT if mem_delay else 0)
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
            "b_data": In(signed(b_bits)),
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
        if self.mem_delay:
            p = local_params(m, p)
        theta = p.theta.as_signed()  # 1 .. 2**23-1, so the sign bit is 0

        m.submodules.fifo = ofifo = fifo.SyncFIFOBuffered(width=len(self.out.payload.as_value()),
                                                           depth=OUT_FIFO_DEPTH)
        m.d.comb += [self.out.valid.eq(ofifo.r_rdy), self.out.payload.eq(ofifo.r_data),
                     ofifo.r_en.eq(self.out.ready)]

        buf = self._lane_buffer(m, ofifo)
        pipe = _Pipe(m, self.geom, len(buf.grp), self.mem_delay)
        sc = self._static_copies(m, p)
        front = self._s1_to_s5(pipe, p, buf, sc, theta)
        back = self._s6_to_s9(pipe, p, front[-1], sc, theta)
        r9 = back[-1]
        fifo_busy = self._write_back(m, p, ofifo, r9)
        lut, split_stages = self._lut_stages(pipe, p, r9)
        stages = (*front, *back, *lut, *pipe.waits, *split_stages)
        assert len(stages) == self.latency

        self._probe = {"rem": buf.rem, "issue": buf.issue, "r9": r9, "r1": front[0], "j": buf.j}
        busy = (buf.rem != 0) | buf.load | fifo_busy
        for r in stages:
            busy = busy | r.v
        m.d.comb += self.idle.eq(~busy)
        return m

    def _lane_buffer(self, m: Module, ofifo: fifo.SyncFIFOBuffered) -> SimpleNamespace:
        """The lane buffer: loads the P accumulators of a group and shifts them out one lane per
        ``issue``; ``j``, ``k``, ``grp`` name the neuron issued (and address its memory reads)."""
        P, nb = self.geom.lanes, self.geom.neuron_bits
        bw = Signal(data.ArrayLayout(signed(self.aw_bits), P), reset_less=PIPELINE_RESET_LESS)
        bh = Signal(data.ArrayLayout(signed(self.ah_bits), P), reset_less=PIPELINE_RESET_LESS)
        rem = Signal(range(P + 1))
        j = Signal(nb + 1)
        k = Signal(range(P))
        grp = Signal.like(self.group)
        issue = Signal()
        control = self._issue_delayed if self.mem_delay else self._issue_direct
        load, lane_load, jbase, group, shift = control(m, ofifo, rem, issue)
        with m.If(issue):
            m.d.sync += [rem.eq(rem - 1), j.eq(j + 1), k.eq(k + 1)]
        for q in range(P - 1):
            with m.If(shift[q]):
                m.d.sync += [bw[q].eq(bw[q + 1]), bh[q].eq(bh[q + 1])]
        for q in range(P):
            with m.If(lane_load[q]):
                m.d.sync += [bw[q].eq(self.acc_w[q]), bh[q].eq(self.acc_h[q])]
        with m.If(load):
            m.d.sync += [rem.eq(P), j.eq(jbase), k.eq(0), grp.eq(group)]
        m.d.comb += self.n_addr.eq(j)
        return SimpleNamespace(bw=bw, bh=bh, rem=rem, j=j, k=k, grp=grp, issue=issue, load=load)

    def _issue_direct(self, m: Module, ofifo: fifo.SyncFIFOBuffered, rem: Signal, issue: Signal):
        """The lane buffer's control with plain memories: ``load`` taken as it comes, ``issue`` and
        ``ready`` combinational.  Returns the load strobe, each lane's load strobe, ``jbase``,
        ``group`` and each lane's shift enable."""
        P = self.geom.lanes
        load, lane_load, jbase, group = self.load, [self.load] * P, self.jbase, self.group
        # registered (off the issue path): the level grows by at most 1 per clock, so one more
        # entry of margin than the in-flight bound keeps the FIFO from overflowing
        room = Signal()
        m.d.sync += room.eq(ofifo.level <= OUT_FIFO_DEPTH - self.latency - 3)
        m.d.comb += issue.eq((rem != 0) & room)
        m.d.comb += self.ready.eq((rem == 0) | ((rem == 1) & issue))
        shift = [issue] * (P - 1)
        return load, lane_load, jbase, group, shift

    def _issue_delayed(self, m: Module, ofifo: fifo.SyncFIFOBuffered, rem: Signal, issue: Signal):
        """The lane buffer's control with ``mem_delay`` (a large core at a high clock): the buffer
        takes a load request a clock late, from flops (``load`` is combinational in the sequencer and
        would fan out to every bit of the buffer): ``load_q`` loads the counters, and each lane loads
        on a copy of its own (kept apart on the ECP5, ``pipelined_ram.DUP``).  The accumulators still
        hold the group then (they clear a clock after the dendrite's ``start``, which comes with the
        request), and ``jbase`` / ``group`` are taken from copies a clock old.  ``ready`` is then high
        only when the buffer is empty at the next clock (the ``ready`` flop below).  Returns what
        :meth:`_issue_direct` does."""
        P = self.geom.lanes
        assert SOMA_LOAD_DELAY == 1
        load = Signal(name="load_q")
        lane_load = [Signal(name=f"load_lane{q}{DUP}") for q in range(P)]
        jbase = Signal.like(self.jbase, name="jbase_q", reset_less=PIPELINE_RESET_LESS)
        group = Signal.like(self.group, name="group_q", reset_less=PIPELINE_RESET_LESS)
        m.d.sync += [load.eq(self.load), jbase.eq(self.jbase), group.eq(self.group)]
        m.d.sync += [c.eq(self.load) for c in lane_load]
        # ``issue`` (the enable of the whole lane buffer) is itself a flop, computed a clock ahead
        # from the next ``rem`` and the registered room test's input; so is ``ready`` (the load
        # handshake then starts at flops)
        # the room test itself from a flop (a clock stale, so one more entry of margin): the FIFO
        # level's adder and compare are then off the path into the issue flops
        room_q = Signal(name="room_q")
        m.d.sync += room_q.eq(ofifo.level <= OUT_FIFO_DEPTH - self.latency - 4)
        rem_next = Signal.like(rem)
        m.d.comb += rem_next.eq(Mux(load, P, Mux(issue, rem - 1, rem)))
        ready = Signal(init=1)
        # (rem_next == 1 with room: the last lane issues at the next clock, the buffer is empty
        # the clock after, when a request taken at the next clock loads; never right after a
        # request, which loads at the next clock)
        m.d.sync += [issue.eq((rem_next != 0) & room_q),
                     ready.eq(((rem_next == 0) | ((rem_next == 1) & room_q)) & ~self.load)]
        m.d.comb += self.ready.eq(ready)
        # and each lane of the buffer shifts on a copy of its own: one enable net per lane
        shift = [Signal(name=f"issue_lane{q}{DUP}") for q in range(P - 1)]
        m.d.sync += [c.eq((rem_next != 0) & room_q) for c in shift]
        return load, lane_load, jbase, group, shift

    def _static_copies(self, m: Module, p) -> SimpleNamespace:
        """Registered copies of static parameters, off the datapath: the rounding constants
        2**(s-1) of the shifts (``half_*``) and the multiplier parameters (``*_r``, next to the
        multipliers)."""
        SW = C.SHIFT_MAX + 2
        # rounding constants 2**(s-1) of the (static) shift registers, registered off the datapath
        half_a, half_n, half_z = (Signal(SW, name=n) for n in ("half_a", "half_n", "half_z"))
        m.d.sync += [half_a.eq(round_half(p.alpha_shift, SW)), half_n.eq(round_half(p.ann_shift, SW)),
                     half_z.eq(round_half(p.recip_shift, SW))]
        # static copies of the multiplier parameters, registered next to the multipliers
        alpha, lam, recip = (Signal.like(getattr(p, n), name=f"{n}_r") for n in ("alpha", "lam", "recip"))
        m.d.sync += [alpha.eq(p.alpha), lam.eq(p.lam), recip.eq(p.recip)]
        return SimpleNamespace(half_a=half_a, half_n=half_n, half_z=half_z, alpha=alpha, lam=lam, recip=recip)

    def _s1_to_s5(self, pipe: _Pipe, p, buf: SimpleNamespace, sc: SimpleNamespace, theta) -> list:
        """S0 .. S5: the issued lane and its memory data to the current I (:class:`Soma`); returns
        the stages in order, the last one (``r5``) feeding :meth:`_s6_to_s9`."""
        m, stage, carry, relay, relay_with, multiply = (pipe.m, pipe.stage, pipe.carry, pipe.relay, pipe.relay_with,
                                                       pipe.multiply)
        U = C.U_BITS
        AWS = self.aw_bits + C.ACC_SHIFT_MAX
        PH = self.ah_bits + C.ALPHA_BITS  # alpha * accH
        SW = C.SHIFT_MAX + 2
        # S0 -> r1: memory reads of j in flight
        r1 = stage("r1", {"aw": signed(self.aw_bits), "ah": signed(self.ah_bits)})
        m.d.sync += [r1.v.eq(buf.issue), r1.j.eq(buf.j), r1.k.eq(buf.k), r1.g.eq(buf.grp),
                     r1.aw.eq(buf.bw[0]), r1.ah.eq(buf.bh[0])]
        r1_issue, r1 = r1, pipe.wait("r1w", r1)
        # S1 -> r1x: memory data registered; the multiply operand relayed (DSP isolation, see relay())
        r1x = stage("r1x", {"aw": signed(self.aw_bits), "u": signed(U),
                            "s": signed(C.X_BITS), "b": signed(self.b_bits), "eta": signed(C.ETA_BITS)})
        m.d.sync += carry(r1x, r1) + [
            r1x.u.eq(self.u_data), r1x.s.eq(self.s_data), r1x.b.eq(self.b_data), r1x.eta.eq(self.eta_data),
            r1x.aw.eq(r1.aw),
        ]
        # S1x -> r2: alpha * accH (partial products; the multipliers take their operands from r1, the
        # stage r1x copies, and their products are r2's: the relay r2x registers them once more)
        assert MULTIPLIER_LATENCY == 2
        ah_lo, ah_hi = split(r1.ah)
        pa_lo, pa_hi = multiply("mul_pa_lo", ah_lo, sc.alpha), multiply("mul_pa_hi", ah_hi, sc.alpha)
        # with pipelined memories (a large core at a high clock) the spike test of the reset and the
        # subtrahend of the soft reset are made a stage early (``sp`` / ``th``), so that the reset's
        # subtractor starts at flops
        early = {"sp": 1, "th": signed(len(theta) + 1)} if self.mem_delay else {}
        r2 = stage("r2", {"u": signed(U), "s": signed(C.X_BITS), "b": signed(self.b_bits), "eta": signed(C.ETA_BITS),
                          "aw": signed(AWS), **early})
        m.d.sync += carry(r2, r1x) + [
            r2.u.eq(r1x.u), r2.s.eq(r1x.s), r2.b.eq(r1x.b), r2.eta.eq(r1x.eta),
            r2.aw.eq(r1x.aw << p.acc_shift),
        ]
        if early:
            m.d.sync += [r2.sp.eq(r1x.s != 0), r2.th.eq(Mux(r1x.s != 0, theta, 0))]
        r2x = relay_with("r2x", r2, pa_lo=pa_lo, pa_hi=pa_hi)
        # S2 -> r3: rounding add of alpha*accH, reset, W current + bias
        r3 = stage("r3", {"pha": signed(max(PH, SW) + 1), "vm": signed(U + 1), "awb": signed(AWS + 1),
                          "eta": signed(C.ETA_BITS)})
        if early:
            s_prev = r2x.sp
            v_soft = r2x.u - r2x.th
        else:
            s_prev = r2x.s != 0
            v_soft = r2x.u - Mux(s_prev, theta, 0)
        v_hard = Mux(s_prev, p.u_reset, r2x.u)
        m.d.sync += carry(r3, r2x) + [
            r3.pha.eq(join(r2x.pa_lo, r2x.pa_hi) + sc.half_a),
            r3.vm.eq(Mux(p.reset == int(C.ResetMode.SOFT), v_soft, v_hard)),
            r3.awb.eq(r2x.aw + r2x.b),
            r3.eta.eq(r2x.eta),
        ]
        r3x = relay("r3x", r3)
        # S3 -> r4: leak multiply (partial products, from r3 as above), shift of the H current
        vm_lo, vm_hi = split(r3.vm)
        pl_lo, pl_hi = multiply("mul_pl_lo", vm_lo, sc.lam), multiply("mul_pl_hi", vm_hi, sc.lam)
        r4 = stage("r4", {"ihs": signed(max(PH, SW) + 1), "awb": signed(AWS + 1), "eta": signed(C.ETA_BITS)})
        m.d.sync += carry(r4, r3x) + [
            r4.ihs.eq(r3x.pha >> p.alpha_shift),
            r4.awb.eq(r3x.awb),
            r4.eta.eq(r3x.eta),
        ]
        r4x = relay_with("r4x", r4, pl_lo=pl_lo, pl_hi=pl_hi)
        # S4 -> r5: rounded leak, saturated H current
        r5 = stage("r5", {"ih": signed(U), "vlr": signed(U + 2 + C.FRAC8_BITS), "awb": signed(U + 1),
                          "eta": signed(C.ETA_BITS)})
        m.d.sync += carry(r5, r4x) + [
            r5.ih.eq(sat_fast(r4x.ihs, U)),
            r5.vlr.eq((join(r4x.pl_lo, r4x.pl_hi) + 128) >> 8),
            r5.awb.eq(sat_fast(r4x.awb, U + 1)),  # leaves sat_U(awb + ih) as it is (|ih| < 2**(U-1))
            r5.eta.eq(r4x.eta),
        ]
        return [r1_issue, r1x, r2, r2x, r3, r3x, r4, r4x, r5]

    def _s6_to_s9(self, pipe: _Pipe, p, r5, sc: SimpleNamespace, theta) -> list:
        """S5 .. S9: the current I to the membrane u', the output s' and the rounding add of
        u' * recip (:class:`Soma`); returns the stages in order, the last one ``r9``."""
        m, stage, carry, relay, relay_with, multiply = (pipe.m, pipe.stage, pipe.carry, pipe.relay, pipe.relay_with,
                                                       pipe.multiply)
        U = C.U_BITS
        PZ = U + C.RECIP_BITS + 1  # u * recip
        SW = C.SHIFT_MAX + 2
        lif = p.soma == int(C.SomaMode.LIF)
        # S5 -> r6: current I
        # (and the leak term saturated to U + 1 bits, which leaves sat_U(vlr + I) as it is, |I| < 2**(U-1):
        # the membrane's adder below is then U + 2 bits wide, not U + 12)
        r6 = stage("r6", {"i": signed(U), "vlr": signed(U + 1), "eta": signed(C.ETA_BITS)})
        m.d.sync += carry(r6, r5) + [
            r6.i.eq(sat_fast(r5.awb + r5.ih, U)),
            r6.vlr.eq(sat_fast(r5.vlr, U + 1)),
            r6.eta.eq(r5.eta),
        ]
        # S6 -> r7: membrane; rounding add of the ANN shift
        r7 = stage("r7", {"u": signed(U), "ya": signed(SW + 1), "eta": signed(C.ETA_BITS)})
        m.d.sync += carry(r7, r6) + [
            r7.u.eq(Mux(lif, sat_fast(r6.vlr + r6.i, U), r6.i)),
            r7.ya.eq(r6.i + sc.half_n),
            r7.eta.eq(r6.eta),
        ]
        r7x = relay("r7x", r7)
        # S7 -> r8: ANN shift; u * recip (partial products, from r7 as above)
        u_lo, u_hi = split(r7.u)
        pz_lo, pz_hi = multiply("mul_pz_lo", u_lo, sc.recip), multiply("mul_pz_hi", u_hi, sc.recip)
        r8 = stage("r8", {"u": signed(U), "fire": 1, "y": signed(SW + 1), "eta": signed(C.ETA_BITS)})
        m.d.sync += carry(r8, r7x) + [
            r8.u.eq(r7x.u),
            r8.fire.eq(r7x.u > theta),  # the LIF threshold compare, a stage ahead of its use (Fmax)
            r8.y.eq(r7x.ya >> p.ann_shift),
            r8.eta.eq(r7x.eta),
        ]
        r8_mul, r8 = r8, relay_with("r8x", r8, pz_lo=pz_lo, pz_hi=pz_hi)  # the S8 logic below reads the relayed copy
        # S8 -> r9: spike / activation; rounding add of u*recip
        # the ANN clips as top-bit tests (no comparator carry chain after the shifter)
        y = r8.y
        relu = p.ann_act == int(C.AnnAct.RELU)
        y_relu = Mux(y[-1], 0, Mux(y[8:].any(), 255, y[:8]))
        y_id = sat_fast(y, 8)
        r9 = stage("r9", {"u": signed(U), "s": signed(C.X_BITS), "live": 1, "pza": signed(max(PZ, SW) + 1),
                          "eta": signed(C.ETA_BITS)})
        m.d.sync += carry(r9, r8) + [
            r9.u.eq(r8.u),
            r9.s.eq(Mux(lif, r8.fire, Mux(relu, y_relu, y_id))),
            r9.live.eq(r8.v & (r8.j < p.n_neurons)),  # lanes past the last neuron are computed, not written
            r9.pza.eq(join(r8.pz_lo, r8.pz_hi) + sc.half_z),
            r9.eta.eq(r8.eta),
        ]
        return [r6, r7, r7x, r8_mul, r8, r9]

    def _write_back(self, m: Module, p, ofifo: fifo.SyncFIFOBuffered, r9) -> Value:
        """S9: write back u, s and emit the non-zero outputs to the FIFO (from registers); counts the
        outputs.  Returns what keeps ``idle`` low besides the stages (a FIFO write in flight)."""
        nb = self.geom.neuron_bits
        m.d.comb += [self.w_addr.eq(r9.j), self.w_en.eq(r9.live), self.u_wdata.eq(r9.u), self.s_wdata.eq(r9.s)]
        push = r9.live & (r9.s != 0)
        fifo_busy = Const(0)
        if self.mem_delay:
            # (a large core at a high clock) the FIFO's distributed RAM is written from flops a clock
            # later: its write enable fans out to every RAM of the FIFO and carries no decode (the
            # room test's margin covers the entry; the stages after S9 keep ``idle`` low meanwhile)
            push_q = Signal(name="out_push_q")
            wdata_q = Signal.like(ofifo.w_data, name="out_wdata_q", reset_less=True)
            m.d.sync += [push_q.eq(push & p.emit), wdata_q.eq(Cat(r9.j[:nb], r9.s))]
            m.d.comb += [ofifo.w_en.eq(push_q), ofifo.w_data.eq(wdata_q)]
            fifo_busy = push_q
        else:
            m.d.comb += [ofifo.w_en.eq(push & p.emit),
                         ofifo.w_data.eq(Cat(r9.j[:nb], r9.s))]
        with m.If(self.clear_count):
            m.d.sync += self.out_count.eq(0)
        with m.Elif(push):
            m.d.sync += self.out_count.eq(self.out_count + 1)
        return fifo_busy

    def _lut_stages(self, pipe: _Pipe, p, r9) -> tuple[list, list]:
        """S9 .. S13: the shift of u * recip, the table index, the LUT read and the f write; returns
        the stages r10 .. r13 and those of the shift's split (with ``mem_delay``)."""
        m, stage, carry = pipe.m, pipe.stage, pipe.carry
        P = self.geom.lanes
        PZ = C.U_BITS + C.RECIP_BITS + 1  # u * recip
        # S9 -> r10: shift
        r10 = stage("r10", {"zs": signed(PZ), "eta": signed(C.ETA_BITS)})
        if self.mem_delay:
            split_stages = [self._split_shift(pipe, p, r9, r10)]
        else:
            split_stages = []
            m.d.sync += carry(r10, r9) + [r10.zs.eq(r9.pza >> p.recip_shift), r10.eta.eq(r9.eta)]
        # S10 -> r11: z = u/theta - eta, table index clip(z, -256, 255) + 256 (the subtraction on the
        # low bits of zs only, beside a test that zs fits in them: a short carry chain)
        assert C.LUT_HALF == 1 << (C.LUT_INDEX_BITS - 1)
        zc = clip_sub_fast(r10.zs, r10.eta, C.LUT_INDEX_BITS)
        r11 = stage("r11", {"idx": unsigned(C.LUT_INDEX_BITS)})
        m.d.sync += carry(r11, r10) + [r11.idx.eq(Cat(zc[:-1], ~zc[-1]))]  # zc + 256
        # S11: lut read -> r12 (data present) -> r13 (data registered)
        m.d.comb += self.lut_addr.eq(r11.idx)
        r12 = stage("r12", {})
        m.d.sync += carry(r12, r11)
        r12_k = pipe.wait("r12w", r12)
        r13 = stage("r13", {"f": signed(C.F_BITS)})
        m.d.sync += carry(r13, r12_k) + [r13.f.eq(self.lut_data)]
        # S13: write f
        m.d.comb += [self.f_addr.eq(r13.g),
                     self.f_en.eq(Mux(r13.v & (r13.j < p.n_neurons), (Const(1, P) << r13.k)[:P], 0))]
        m.d.comb += [self.f_wdata[q].eq(r13.f) for q in range(P)]
        return [r10, r11, r12, r13], split_stages

    @staticmethod
    def _split_shift(pipe: _Pipe, p, r9, r10):
        """The shift S9 -> r10 with ``mem_delay`` (a large core at a high clock) in two stages: by the
        multiple of 8 (a 6:1 multiplexer per bit), then by the rest (8:1), each from a copy of its
        part of the static shift.  Returns the stage between them."""
        m, stage, carry = pipe.m, pipe.stage, pipe.carry
        assert SOMA_SHIFT_SPLIT == 1
        sh_hi = Signal(len(p.recip_shift) - 3, name="recip_shift_hi_r")
        sh_lo = Signal(3, name="recip_shift_lo_r")
        m.d.sync += [sh_hi.eq(p.recip_shift[3:]), sh_lo.eq(p.recip_shift[:3])]
        r9a = stage("r9a", {"pzs": signed(len(r9.pza)), "eta": signed(C.ETA_BITS)})
        m.d.sync += carry(r9a, r9) + [r9a.pzs.eq(r9.pza >> Cat(Const(0, 3), sh_hi)), r9a.eta.eq(r9.eta)]
        m.d.sync += carry(r10, r9a) + [r10.zs.eq(r9a.pzs >> sh_lo), r10.eta.eq(r9a.eta)]
        return r9a


def split(v):
    """``v = hi * 2**MUL_SPLIT + lo`` (``lo`` unsigned) so that ``v * c = (hi*c << MUL_SPLIT) + lo*c``."""
    return v[:MUL_SPLIT], v[MUL_SPLIT:].as_signed()


def join(lo, hi):
    """The product ``v * c`` from the partial products of :func:`split`."""
    return (hi << MUL_SPLIT) + lo


class _Pipe:
    """Builders of the soma's pipeline registers in module ``m``: the stages (each with the neuron's
    valid bit ``v``, ``j``, lane ``k`` and group ``g``), their relays, the multipliers and the waits
    for pipelined memories (:attr:`waits`: the registers of every wait, in order)."""

    def __init__(self, m: Module, geom: CoreGeometry, g_bits: int, mem_delay: int):
        self.m, self.geom, self.g_bits, self.mem_delay = m, geom, g_bits, mem_delay
        self.waits = []

    def stage(self, name: str, fields: dict) -> Signal:
        """A pipeline register of ``fields`` and the neuron's ``v``, ``j``, ``k``, ``g``."""
        assert not {"v", "j", "k", "g"} & set(fields)
        # reset-less (PIPELINE_RESET_LESS in rtl/layouts.py): the pipeline registers stay off the reset net
        return Signal(data.StructLayout({"v": 1, "j": self.geom.neuron_bits, "k": range(self.geom.lanes),
                                         "g": self.g_bits, **fields}),
                      name=name, reset_less=PIPELINE_RESET_LESS)

    @staticmethod
    def carry(dst, src) -> list:
        """The assignments that take the neuron (``v``, ``j``, ``k``, ``g``) from stage ``src`` to ``dst``."""
        return [dst.v.eq(src.v), dst.j.eq(src.j), dst.k.eq(src.k), dst.g.eq(src.g)]

    def relay(self, name: str, src):
        """A copy of stage ``src`` one clock later.  Every DSP multiply sits between two relays: its
        operands and its product each get a register of their own, which the placer can put next to
        the DSP block, so the long routes to the DSP rows carry no logic (Fmax on the ECP5)."""
        dst = Signal(src.shape(), name=name, reset_less=PIPELINE_RESET_LESS)
        self.m.d.sync += dst.eq(src)
        return dst

    def relay_with(self, name: str, src, **extra):
        """:meth:`relay` of ``src`` with fields ``extra`` (name: value) added: the products of a
        :class:`PipelinedMultiplier` fed a stage early, registered once out of the DSP block."""
        members = dict(src.shape().members)
        members.update({k: v.shape() for k, v in extra.items()})
        dst = Signal(data.StructLayout(members), name=name, reset_less=PIPELINE_RESET_LESS)
        self.m.d.sync += [getattr(dst, k).eq(getattr(src, k)) for k in src.shape().members]
        self.m.d.sync += [getattr(dst, k).eq(v) for k, v in extra.items()]
        return dst

    def multiply(self, name: str, a, b) -> Value:
        """``a * b`` as a :class:`PipelinedMultiplier` (operands and product registered, in the DSP
        block on the ECP5): the product of the operands of two clocks before.  Unsigned operands
        are zero-extended to signed."""
        a, b = to_signed(a), to_signed(b)
        mul = self.m.submodules[name] = PipelinedMultiplier(len(a), len(b))
        self.m.d.comb += [mul.a.eq(a), mul.b.eq(b)]
        return mul.p

    def wait(self, name: str, src):
        """``src`` ``mem_delay`` clocks later: the stages that wait for a pipelined memory's data."""
        out, chain = delayed(self.m, src, self.mem_delay, name, reset_less=PIPELINE_RESET_LESS)
        self.waits.extend(src.shape()(c) for c in chain)
        return src.shape()(out) if chain else src
