"""The sample engine: samples queued on the chip, coded there, run back to back, compact results.

:class:`SampleEngine` sits between the link and the chip's bus target.  It serves its own registers
(``plasticore.chip_map.EngineReg`` at ``ENGINE_BASE``) and is itself a bus initiator of the chip: for
every complete sample in its input queue (and room for its record in the result ring) it does what the
host would do over the link, without a byte on the wire::

    CLEAR := 1;  state := w | 1;  w := w + RATE_WEYL                       (rate coding's generator)
    the H0 store's runs: H := H0 of the layers that reset H at every sample   (with ``h0_words``)
    for t in 0 .. STEPS-1:
        for every layer-0 core k, every input i with x != 0:
            X[k][i] := x
        where x = rshift_round(feature[i] * ramp[t], 8)                        (CODING = DIRECT)
           or x = [xorshift32(state) >> 24 < feature[i]], one state step per i  (CODING = RATE; every
              core k replays the step's draws)
           or the step's event words (axon, x)                                (CODING = EVENTS)
        n := RUN 1;  if n: OUT_ACK := n          (outputs are not kept: the record is the result)
    record := the output layer's membranes U, slice after slice (chip_map.pack_record)

Every other bus request of the link passes through to the chip while the engine is between samples
(a request that comes while a sample runs waits for its end; RESET also empties both queues).  The
engine starts a sample only when the link has no chip request waiting or outstanding.  The result
window reads change nothing (a lost reply is read again); ``RES_ACK`` (a write, executed once by the
link) frees records.  :class:`EngineChip` is a chip with an engine in front of its bus.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from plasticore import chip_map as M
from plasticore import contract as C
from plasticore import core_map as CM
from plasticore.coding import RATE_WEYL

from .bus import BusOp, BusSignature
from .bus_slice import BusSlice

__all__ = ["EngineChip", "SampleEngine"]

R = M.EngineReg
#: the signals :meth:`SampleEngine.elaborate` hands to :meth:`SampleEngine._sample_fsm`
_FSM_SHARED = (
    'D', 'RW', 'chip', 'coding', 'commit_words', 'done', 'e_addr', 'e_data', 'e_op', 'e_valid', 'errors', 'host',
    'host_pend', 'in_level', 'in_pop', 'in_r', 'in_tail', 'markers', 'pop_words', 'inputs', 'is_eng', 'n_u',
    'n_x', 'ramp_r', 'rd_block', 'rd_i', 'rd_pend', 'rec_words', 'res_commit', 'res_head', 'res_level', 'res_w',
    'running', 'sample_words', 'steps', 'u_core', 'u_n', 'weyl', 'win_in', 'win_pend', 'x_core')
#: address bits of the engine's span, of the RES_NEXT and RES_WIN windows, of a table index; feature bits
SPAN = (M.ENGINE_SPAN - 1).bit_length()
NEXT = (M.ENGINE_MAX_RES_WORDS - 1).bit_length()
WIN = (M.ENGINE_SPAN - R.RES_WIN - 1).bit_length()
DB = (M.MAX_DESTS - 1).bit_length()
FW = (M.FEATURES_PER_WORD - 1).bit_length()  #: log2 of features a queue word
#: width of an input / neuron count register (the contract's axon and neuron limits)
CM_AXON_BITS = max(C.MAX_AXONS, C.MAX_NEURONS).bit_length()


def _log2(n: int, what: str) -> int:
    if n < 2 or n & (n - 1):
        raise ValueError(f"{what} must be a power of two >= 2, got {n}")
    return n.bit_length() - 1


class SampleEngine(wiring.Component):
    """``host``: the bus from the link (a target); ``chip``: the bus to the chip (an initiator).

    ``in_words`` / ``res_words``: input queue and result ring sizes (32-bit words, powers of two; on the
    ECP5 the 1024-word queue takes 2 block RAMs, the 256-word ring LUT RAM);
    ``max_steps``: entries of the ramp table (steps per sample); ``cores``: the chip's cores (core id width);
    ``h0_words``: the H0 store (0: none; a power of two), rewritten into the cores' H at every sample start.
    ``active`` is high while a sample runs.
    """

    def __init__(self, *, in_words: int = 1024, res_words: int = 256, max_steps: int = 64, cores: int = 2,
                 h0_words: int = 0):
        self.in_log2 = _log2(in_words, "in_words")
        self.h0_log2 = _log2(h0_words, "h0_words") if h0_words else None
        self.res_log2 = _log2(res_words, "res_words")
        if not 1 <= max_steps <= M.ENGINE_MAX_STEPS:
            raise ValueError(f"max_steps must be 1..{M.ENGINE_MAX_STEPS}, got {max_steps}")
        if res_words > M.ENGINE_MAX_RES_WORDS or in_words > 1 << 16:
            raise ValueError(f"in_words must be at most 65536, res_words at most {M.ENGINE_MAX_RES_WORDS}")
        self.in_words, self.res_words, self.max_steps, self.cores = in_words, res_words, max_steps, cores
        self.h0_words = h0_words
        super().__init__({"host": In(BusSignature(32)), "chip": Out(BusSignature(32)), "active": Out(1)})

    def info(self) -> int:
        """The INFO register's value."""
        return M.EngineInfo(self.in_words, self.res_words, self.max_steps).pack()

    def elaborate(self, platform):  # noqa: C901 - the register file
        m = Module()
        host, chip = self.host, self.chip
        IW, RW = self.in_log2, self.res_log2
        D = M.MAX_DESTS
        core_bits = max(1, (self.cores - 1).bit_length())

        # ---- configuration (written by the host) -------------------------------------------
        steps = Signal(range(self.max_steps + 1))
        inputs = Signal(CM_AXON_BITS)
        n_x = Signal(range(D + 1))
        n_u = Signal(range(D + 1))
        rec_words = Signal(RW + 1)
        coding = Signal(M.EngineCoding)
        weyl = Signal(32)  # rate coding: the Weyl value of the next sample
        x_core = Array(Signal(core_bits, name=f"x_core{e}") for e in range(D))
        u_core = Array(Signal(core_bits, name=f"u_core{e}") for e in range(D))
        u_n = Array(Signal(CM_AXON_BITS, name=f"u_n{e}") for e in range(D))
        m.submodules.ramp = ramp = memory.Memory(shape=9, depth=self.max_steps, init=[])
        m.submodules.inq = inq = memory.Memory(shape=32, depth=self.in_words, init=[])
        m.submodules.res = res = memory.Memory(shape=32, depth=self.res_words, init=[])
        ramp_w, ramp_r = ramp.write_port(), ramp.read_port(transparent_for=())
        in_w, in_r = inq.write_port(), inq.read_port(transparent_for=())
        res_w, res_r = res.write_port(), res.read_port(transparent_for=())

        h0 = self._h0_store(m, host)

        # ---- queues ---------------------------------------------------------------------------
        in_head, in_tail, in_level = Signal(IW), Signal(IW), Signal(IW + 1)
        res_head, res_tail, res_level = Signal(RW), Signal(RW), Signal(RW + 1)
        res_count = Signal(RW + 1)
        done, errors = Signal(32), Signal(32)
        sample_words = Signal(IW + 1)  # input queue words of a sample of features
        m.d.comb += sample_words.eq((inputs + M.FEATURES_PER_WORD - 1) >> FW)
        in_push, in_pop = Signal(), Signal()  # a word queued (host) / a sample's words freed (engine)
        pop_words = Signal(IW + 1)  # the words a sample frees (the engine says)
        markers = Signal(IW + 1)  # EVENTS: complete samples queued (their EVENT_END words)
        events = coding == M.EngineCoding.EVENTS
        res_commit = Signal()
        commit_words = Signal(RW + 1)
        # RES_ACK n, from registers (timing: the multiply is off the bus path): n and the words it frees are
        # registered a clock apart and applied the clock after; engine requests wait meanwhile (``acking``)
        ack_n, ack_words = Signal(RW + 1), Signal(2 * RW + 2)
        ack_go, ack_go2, res_ack = Signal(), Signal(), Signal()
        acking = ack_go | ack_go2 | res_ack
        m.d.sync += [ack_go2.eq(ack_go), res_ack.eq(ack_go2), ack_go.eq(0), ack_words.eq(ack_n * rec_words)]
        m.d.sync += [in_head.eq(in_head + in_push),
                     in_tail.eq(in_tail + Mux(in_pop, pop_words, 0)),
                     in_level.eq(in_level + in_push - Mux(in_pop, pop_words, 0)),
                     markers.eq(markers + (in_push & events & host.w_data[31]) - (in_pop & events)),
                     res_head.eq(res_head + Mux(res_commit, commit_words, 0)),
                     res_tail.eq(res_tail + Mux(res_ack, ack_words, 0)),
                     res_level.eq(res_level + Mux(res_commit, commit_words, 0) - Mux(res_ack, ack_words, 0)),
                     res_count.eq(res_count + res_commit - Mux(res_ack, ack_n, 0))]
        m.d.comb += [in_w.addr.eq(in_head), in_w.data.eq(host.w_data), in_w.en.eq(in_push)]

        # ---- the sample FSM's state, and who owns the chip bus --------------------------------
        running = Signal()  # a sample is in flight: the engine owns the chip bus
        m.d.comb += self.active.eq(running)
        host_pend = Signal()  # a READ / RUN of the link passed to the chip awaits its answer
        is_eng = ~host.addr[31] & (host.addr[SPAN:31] == M.ENGINE_BASE >> SPAN) & (
            (host.op == BusOp.READ) | (host.op == BusOp.WRITE))
        passing = ~running & ~is_eng
        reset_seen = Signal()  # a RESET passed to the chip: empty the queues (below, last: precedence)

        # ---- the link's requests: pass-through to the chip, or the engine's registers ------------
        e_valid, e_op, e_addr, e_data = Signal(), Signal(BusOp), Signal(32), Signal(32)
        with m.If(running):
            m.d.comb += [chip.valid.eq(e_valid), chip.op.eq(e_op), chip.addr.eq(e_addr), chip.w_data.eq(e_data)]
        with m.Else():
            m.d.comb += [chip.valid.eq(host.valid & ~is_eng), chip.op.eq(host.op), chip.addr.eq(host.addr),
                         chip.w_data.eq(host.w_data)]
        loc_valid, loc_data, loc_err = Signal(), Signal(32), Signal()  # an engine register's answer
        # a window READ (RES_WIN + i, or RES_NEXT + i, which waits until word i exists): ``rd_pend`` while
        # it is decided (the ring address tail + i is presented), ``win_pend`` the clock its answer is out
        rd_pend, rd_block, rd_i = Signal(), Signal(), Signal(WIN)
        win_pend, win_in = Signal(), Signal()
        m.d.sync += [loc_valid.eq(0), loc_err.eq(0), win_pend.eq(0)]
        host_fire_chip = host.valid & passing & chip.ready
        with m.If(host_fire_chip & ((host.op == BusOp.READ) | (host.op == BusOp.RUN))):
            m.d.sync += host_pend.eq(1)
        with m.If(host_pend & chip.r_valid):
            m.d.sync += host_pend.eq(0)
        with m.If(host_fire_chip & (host.op == BusOp.RESET)):
            m.d.comb += reset_seen.eq(1)
        off = host.addr[:SPAN]
        eng_fire = host.valid & is_eng & ~acking  # a request for the engine's registers, accepted
        m.d.comb += [host.ready.eq((is_eng & ~acking) | (passing & chip.ready)),
                     host.r_valid.eq(loc_valid | win_pend | (host_pend & chip.r_valid)),
                     host.r_data.eq(Mux(win_pend, Mux(win_in, res_r.data, M.OUT_EMPTY),
                                        Mux(loc_valid, loc_data, chip.r_data))),
                     host.error.eq(Mux(loc_valid, loc_err, Mux(is_eng, 0, chip.error)))]
        wr_err = Signal()
        m.d.comb += [ramp_w.addr.eq(off - R.RAMP_BASE), ramp_w.data.eq(host.w_data)]
        m.d.comb += res_r.addr.eq(res_tail + rd_i[:RW])
        with m.If(eng_fire & (host.op == BusOp.WRITE)):
            with m.If((off >= R.RAMP_BASE) & (off < R.RAMP_BASE + self.max_steps)):
                m.d.comb += ramp_w.en.eq(1)
            with m.Elif((off >= R.X_CORE_BASE) & (off < R.X_CORE_BASE + D)):
                m.d.sync += x_core[off[:DB]].eq(host.w_data)
            with m.Elif(h0.present & (off >= R.H0_RUN_BASE) & (off < R.H0_RUN_BASE + 2 * M.ENGINE_MAX_H0_RUNS)):
                run = (off - R.H0_RUN_BASE) >> 1
                with m.If(off[0]):  # (H0_RUN_BASE is even)
                    m.d.sync += h0.length[run].eq(host.w_data)
                with m.Else():
                    m.d.sync += h0.addr[run].eq(host.w_data)
            with m.Elif((off >= R.U_SLICE_BASE) & (off < R.U_SLICE_BASE + D)):
                m.d.sync += [u_core[off[:DB]].eq(host.w_data), u_n[off[:DB]].eq(host.w_data[M.SLICE_NEURONS_SHIFT:])]
            with m.Else():
                with m.Switch(off):
                    with m.Case(R.STEPS):
                        m.d.sync += steps.eq(host.w_data)
                    with m.Case(R.INPUTS):
                        m.d.sync += inputs.eq(host.w_data)
                    with m.Case(R.X_CORES):
                        m.d.sync += n_x.eq(host.w_data)
                    with m.Case(R.U_SLICES):
                        m.d.sync += n_u.eq(host.w_data)
                    with m.Case(R.RECORD_WORDS):
                        m.d.sync += rec_words.eq(host.w_data)
                    with m.Case(R.CODING):
                        m.d.sync += coding.eq(host.w_data)
                    with m.Case(R.RNG):
                        m.d.sync += weyl.eq(host.w_data)
                    if h0.present:
                        with m.Case(R.H0_RUNS):
                            m.d.sync += [h0.runs.eq(host.w_data), h0.wp.eq(0)]
                        with m.Case(R.H0_IN):
                            with m.If(h0.wp[-1]):  # full
                                m.d.comb += wr_err.eq(1)
                            with m.Else():
                                m.d.comb += h0.w.en.eq(1)
                                m.d.sync += h0.wp.eq(h0.wp + 1)
                    with m.Case(R.IN):
                        with m.If(in_level[IW]):
                            m.d.comb += wr_err.eq(1)
                        with m.Else():
                            m.d.comb += in_push.eq(1)
                    with m.Case(R.RES_ACK):
                        with m.If(host.w_data > res_count):
                            m.d.comb += wr_err.eq(1)
                        with m.Else():
                            m.d.sync += [ack_go.eq(1), ack_n.eq(host.w_data)]
                    with m.Default():
                        m.d.comb += wr_err.eq(1)
        with m.If(eng_fire & (host.op == BusOp.WRITE)):
            m.d.comb += host.error.eq(wr_err)
        with m.If(eng_fire & (host.op == BusOp.READ)):
            with m.If(off >= R.RES_NEXT):
                m.d.sync += [rd_pend.eq(1), rd_block.eq(off < R.RES_WIN), rd_i.eq(Mux(off >= R.RES_WIN, off[:WIN],
                                                                                      off[:NEXT]))]
            with m.Else():
                m.d.sync += loc_valid.eq(1)
                with m.Switch(off):
                    for reg, val in ((R.ID, M.ENGINE_ID_VALUE), (R.INFO, self.info()), (R.STEPS, steps),
                                     (R.INPUTS, inputs), (R.X_CORES, n_x), (R.U_SLICES, n_u),
                                     (R.RECORD_WORDS, rec_words), (R.CODING, coding), (R.RNG, weyl),
                                     (R.H0_WORDS, self.h0_words), (R.H0_RUNS, h0.runs),
                                     (R.IN_FREE, (1 << IW) - in_level),
                                     (R.RES_COUNT, res_count), (R.DONE, done), (R.ERRORS, errors)):
                        with m.Case(reg):
                            m.d.sync += loc_data.eq(val)
                    with m.Default():
                        m.d.sync += [loc_data.eq(0), loc_err.eq(1)]

        loc = locals()  # what the sample FSM shares with the register file and the queues
        self._sample_fsm(m, SimpleNamespace(**{n: loc[n] for n in _FSM_SHARED}), h0)

        with m.If(reset_seen):  # (last: takes precedence over the queue updates above)
            m.d.sync += [in_head.eq(0), in_tail.eq(0), in_level.eq(0), markers.eq(0), res_head.eq(0), res_tail.eq(0),
                         res_level.eq(0), res_count.eq(0), done.eq(0), errors.eq(0)]
        return m

    def _h0_store(self, m: Module, host) -> SimpleNamespace:
        """The H0 store (``h0_words``): its memory (written through ``H0_IN``) and run table."""
        n = self.h0_words or 1
        h0 = SimpleNamespace(present=bool(self.h0_words), runs=Signal(range(M.ENGINE_MAX_H0_RUNS + 1)),
                             wp=Signal(range(n + 1)),
                             addr=Array(Signal(32, name=f"h0_addr{r}") for r in range(M.ENGINE_MAX_H0_RUNS)),
                             length=Array(Signal(range(n + 1), name=f"h0_len{r}") for r in range(M.ENGINE_MAX_H0_RUNS)))
        if h0.present:
            m.submodules.h0mem = mem = memory.Memory(shape=32, depth=n, init=[])
            h0.w, h0.r = mem.write_port(), mem.read_port(transparent_for=())
            m.d.comb += [h0.w.addr.eq(h0.wp), h0.w.data.eq(host.w_data)]
        return h0

    def _sample_fsm(self, m: Module, v: SimpleNamespace, h0: SimpleNamespace) -> None:
        """The engine's sample sequence (CLEAR, H := H0 from the store, per step the inputs, RUN, OUT_ACK;
        the record), and the result window's answers; ``v``: the signals it shares with :meth:`elaborate`;
        ``h0``: the H0 store (:meth:`_h0_store`)."""
        (D, RW, chip, coding, commit_words, done, e_addr, e_data, e_op, e_valid, errors, host, host_pend, in_level,
         in_pop, in_r, in_tail, markers, pop_words, inputs, is_eng, n_u, n_x, ramp_r, rd_block, rd_i, rd_pend,
         rec_words, res_commit, res_head, res_level, res_w, running, sample_words, steps, u_core, u_n, weyl, win_in,
         win_pend, x_core) = (getattr(v, n) for n in _FSM_SHARED)
        t = Signal(range(self.max_steps + 1))
        k = Signal(range(D + 1))
        i = Signal(CM_AXON_BITS)
        ramp_q = Signal(9)
        word_q = Signal(32)  # the queue word holding input i
        feat_q = Signal(8)  # input i's feature
        x = Signal(C.X_BITS + 8)
        words = Signal(RW + 1)  # record words written so far
        waiting = Signal(32)  # RUN's answer: entries in the output ring, to acknowledge
        acc, nb = Signal(64), Signal(6)  # record packer: nb bits waiting in acc (< 32)
        rng, rng_step = Signal(32), Signal(32)  # rate coding: the generator's state, and at the step's start
        rate = coding == M.EngineCoding.RATE
        s13, s17 = Signal(32), Signal(32)
        m.d.comb += [s13.eq(rng ^ (rng << 13)[:32]), s17.eq(s13 ^ (s13 >> 17))]
        nxt = s17 ^ (s17 << 5)[:32]  # xorshift32 (13, 17, 5): plasticore.coding.xorshift32
        events = coding == M.EngineCoding.EVENTS
        # EVENTS: the word of the sample read, and the first of the step
        ev_pos, ev_start = Signal(self.in_log2 + 1), Signal(self.in_log2 + 1)
        m.d.comb += [ramp_r.addr.eq(t), in_r.addr.eq(in_tail + Mux(events, ev_pos, i >> FW)),
                     pop_words.eq(Mux(events, ev_pos + 1, sample_words))]
        feature = word_q.word_select(i[:FW], 32 // M.FEATURES_PER_WORD)
        ev_end = word_q[31]
        ev_axon = word_q[:M.EVENT_AXON_BITS]
        ev_value = word_q[M.EVENT_VALUE_SHIFT:M.EVENT_VALUE_SHIFT + M.EVENT_VALUE_BITS].as_signed()
        ev_step = word_q[M.EVENT_STEP_SHIFT:M.EVENT_STEP_SHIFT + M.EVENT_STEP_BITS]
        room = ((1 << RW) - res_level) >= rec_words
        queued = Mux(events, markers != 0, (in_level >= sample_words) & (sample_words != 0))
        startable = (steps != 0) & (n_u != 0) & queued & room
        can_start = startable & ~host_pend & ~(host.valid & ~is_eng)

        # the window answers word i once it exists (RES_NEXT), or at once (RES_WIN), or when the engine can
        # run nothing more (then OUT_EMPTY beyond the records waiting).  It decides on registered values
        # (timing): ``have`` and ``idle`` are one snapshot, taken a clock after rd_i is set (``rd_seen``);
        # nothing the link can change meanwhile (it waits for this answer), and the records only grow
        have, idle, rd_seen, decide = Signal(), Signal(), Signal(), Signal()
        m.d.comb += decide.eq(rd_pend & rd_seen & (~rd_block | have | idle))
        m.d.sync += [have.eq(rd_i < res_level), idle.eq(~running & ~startable), rd_seen.eq(rd_pend & ~decide)]
        with m.If(decide):
            m.d.sync += [rd_pend.eq(0), win_pend.eq(1), win_in.eq(have)]
        core_base = Const(M.CORE_REGION, 32)

        def core_req(core, mem, idx):
            return core_base | (core << M.CORE_SHIFT) | (int(mem) << M.MEM_SHIFT) | idx

        # pack a membrane (24 bits) into the record; a full word goes to the result ring
        v24 = chip.r_data[:M.RECORD_VALUE_BITS]
        packed = Signal(64)
        m.d.comb += [packed.eq(acc | (v24 << nb)), res_w.addr.eq(res_head + words)]
        with m.FSM(name="engine"):
            with m.State("IDLE"):
                with m.If(can_start):
                    m.d.sync += [running.eq(1), t.eq(0), words.eq(0), acc.eq(0), nb.eq(0), rng.eq(weyl | 1),
                                 weyl.eq(weyl + RATE_WEYL), ev_pos.eq(0)]
                    m.next = "CLEAR"
            with m.State("CLEAR"):
                m.d.comb += [e_valid.eq(1), e_op.eq(BusOp.WRITE), e_addr.eq(M.ChipReg.CLEAR), e_data.eq(1)]
                with m.If(chip.ready):
                    m.d.sync += errors.eq(errors + chip.error)
                    m.next = "H0_RUN" if h0.present else "RAMP"
            if h0.present:  # H := H0: the store's runs, word after word (read, registered, written)
                self._h0_states(m, h0, chip, e_valid, e_op, e_addr, e_data, errors)
            with m.State("RAMP"):  # ramp[t] is read this clock
                m.d.sync += [k.eq(0), i.eq(0), rng_step.eq(rng), ev_start.eq(ev_pos)]
                m.next = "RAMP_Q"
            with m.State("RAMP_Q"):
                m.d.sync += ramp_q.eq(ramp_r.data)
                with m.If(events):
                    m.next = "EV_READ"
                with m.Else():
                    m.next = "FEAT"
            # EVENTS: the step's events, word after word (read, registered, decided), for every core
            with m.State("EV_READ"):  # the word at ev_pos is read this clock
                m.next = "EV_Q"
            with m.State("EV_Q"):
                m.d.sync += word_q.eq(in_r.data)
                m.next = "EV_DEC"
            with m.State("EV_DEC"):
                with m.If(~ev_end & (ev_step == t)):
                    m.d.comb += [e_valid.eq(1), e_op.eq(BusOp.WRITE),
                                 e_addr.eq(core_req(x_core[k], CM.Mem.X, ev_axon)), e_data.eq(ev_value)]
                    with m.If(chip.ready):
                        m.d.sync += [errors.eq(errors + chip.error), ev_pos.eq(ev_pos + 1)]
                        m.next = "EV_READ"
                with m.Elif(k + 1 >= n_x):  # the step's events are written (ev_pos: the next step's first)
                    m.next = "RUN"
                with m.Else():  # the next core: the same events again
                    m.d.sync += [k.eq(k + 1), ev_pos.eq(ev_start)]
                    m.next = "EV_READ"
            with m.State("FEAT"):  # the feature word of input i is read this clock
                with m.If(k == n_x):
                    m.next = "RUN"
                with m.Elif(i == inputs):
                    m.d.sync += [k.eq(k + 1), i.eq(0)]
                    with m.If(k + 1 != n_x):  # the next core gets the same draws
                        m.d.sync += rng.eq(rng_step)
                with m.Else():
                    m.next = "CODE"
            # (timing: the block RAM's output, the feature select and the multiply each end in a register)
            with m.State("CODE"):  # the queue word from the block RAM
                m.d.sync += [word_q.eq(in_r.data), rng.eq(nxt)]
                m.next = "SEL"
            with m.State("SEL"):
                m.d.sync += feat_q.eq(feature)
                m.next = "MUL"
            with m.State("MUL"):
                with m.If(rate):  # contract: plasticore.coding.rate_spikes
                    m.d.sync += x.eq(rng[24:] < feat_q)
                with m.Else():  # contract: rshift_round(f * ramp, 8)
                    m.d.sync += x.eq((feat_q * ramp_q + 128) >> 8)
                m.next = "XWR"
            with m.State("XWR"):
                with m.If(x == 0):  # an axon not written in a step reads 0
                    m.d.sync += i.eq(i + 1)
                    m.next = "FEAT"
                with m.Else():
                    m.d.comb += [e_valid.eq(1), e_op.eq(BusOp.WRITE), e_addr.eq(core_req(x_core[k], CM.Mem.X, i)),
                                 e_data.eq(x)]
                    with m.If(chip.ready):
                        m.d.sync += [errors.eq(errors + chip.error), i.eq(i + 1)]
                        m.next = "FEAT"
            with m.State("RUN"):
                m.d.comb += [e_valid.eq(1), e_op.eq(BusOp.RUN), e_data.eq(1)]
                with m.If(chip.ready):
                    m.next = "RUN_WAIT"
            with m.State("RUN_WAIT"):
                with m.If(chip.r_valid):
                    m.d.sync += [errors.eq(errors + chip.error), waiting.eq(chip.r_data), t.eq(t + 1)]
                    m.next = "ACK"
            with m.State("ACK"):  # drop what reached the output ring (the record is the result)
                with m.If(waiting == 0):
                    with m.If(t == steps):
                        m.d.sync += [k.eq(0), i.eq(0)]
                        with m.If(events):
                            m.next = "EV_TAIL"
                        with m.Else():
                            m.next = "U_REQ"
                    with m.Else():
                        m.next = "RAMP"
                with m.Else():
                    m.d.comb += [e_valid.eq(1), e_op.eq(BusOp.WRITE), e_addr.eq(M.ChipReg.OUT_ACK),
                                 e_data.eq(waiting)]
                    with m.If(chip.ready):
                        m.d.sync += [errors.eq(errors + chip.error), waiting.eq(0)]
            with m.State("EV_TAIL"):  # EVENTS: to the sample's EVENT_END (events of no step: errors)
                m.next = "EV_TAIL_Q"
            with m.State("EV_TAIL_Q"):
                m.d.sync += word_q.eq(in_r.data)
                m.next = "EV_TAIL_DEC"
            with m.State("EV_TAIL_DEC"):
                with m.If(ev_end):
                    m.next = "U_REQ"
                with m.Else():
                    m.d.sync += [errors.eq(errors + 1), ev_pos.eq(ev_pos + 1)]
                    m.next = "EV_TAIL"
            with m.State("U_REQ"):
                with m.If(k == n_u):
                    m.next = "FLUSH"
                with m.Elif(i == u_n[k]):
                    m.d.sync += [k.eq(k + 1), i.eq(0)]
                with m.Else():
                    m.d.comb += [e_valid.eq(1), e_op.eq(BusOp.READ), e_addr.eq(core_req(u_core[k], CM.Mem.U, i))]
                    with m.If(chip.ready):
                        m.next = "U_WAIT"
            with m.State("U_WAIT"):
                with m.If(chip.r_valid):
                    m.d.sync += [errors.eq(errors + chip.error), i.eq(i + 1)]
                    with m.If(nb + M.RECORD_VALUE_BITS >= 32):
                        m.d.comb += [res_w.data.eq(packed[:32]), res_w.en.eq(1)]
                        m.d.sync += [acc.eq(packed >> 32), nb.eq(nb + M.RECORD_VALUE_BITS - 32), words.eq(words + 1)]
                    with m.Else():
                        m.d.sync += [acc.eq(packed), nb.eq(nb + M.RECORD_VALUE_BITS)]
                    m.next = "U_REQ"
            with m.State("FLUSH"):
                with m.If(nb != 0):
                    m.d.comb += [res_w.data.eq(acc[:32]), res_w.en.eq(1)]
                m.d.comb += [commit_words.eq(words + (nb != 0)), res_commit.eq(1), in_pop.eq(1)]
                m.d.sync += [done.eq(done + 1), running.eq(0)]
                m.next = "IDLE"



    @staticmethod
    def _h0_states(m: Module, h0: SimpleNamespace, chip, e_valid, e_op, e_addr, e_data, errors) -> None:
        """The FSM state that writes the H0 store's runs to the chip (after CLEAR, then RAMP).

        The store is read in order (its runs lie one after another) into a one-word slot while the
        slot's word is written: a read is issued whenever neither the slot nor a read in flight holds a
        word, so a word takes two clocks when the chip takes a write at once."""
        r = Signal(range(M.ENGINE_MAX_H0_RUNS + 1))
        j, q = Signal.like(h0.wp), Signal.like(h0.wp)  # word of the run; the store's next word to read
        word, full, inflight = Signal(32), Signal(), Signal()  # the slot; a read issued last clock
        consume, issue = Signal(), Signal()
        m.d.comb += h0.r.addr.eq(q)
        with m.State("H0_RUN"):
            with m.If(r == h0.runs):
                m.d.sync += [r.eq(0), j.eq(0), q.eq(0), full.eq(0), inflight.eq(0)]
                m.next = "RAMP"
            with m.Else():
                with m.If(j == h0.length[r]):
                    m.d.sync += [r.eq(r + 1), j.eq(0)]
                with m.Elif(full):
                    m.d.comb += [e_valid.eq(1), e_op.eq(BusOp.WRITE), e_addr.eq(h0.addr[r] + j), e_data.eq(word)]
                    with m.If(chip.ready):
                        m.d.comb += consume.eq(1)
                        m.d.sync += [errors.eq(errors + chip.error), j.eq(j + 1)]
                # (a read in flight finds the slot empty: it was issued only then)
                m.d.comb += issue.eq(~((full & ~consume) | inflight))
                m.d.sync += [inflight.eq(issue), q.eq(q + issue)]
                with m.If(inflight):
                    m.d.sync += [word.eq(h0.r.data), full.eq(1)]
                with m.Elif(consume):
                    m.d.sync += full.eq(0)


class EngineChip(wiring.Component):
    """A chip with a :class:`SampleEngine` in front of its bus: the same ports (``bus``, ``busy``),
    geometry and memory map as ``chip``, plus the engine's registers.  A
    :class:`~plasticore.rtl.bus_slice.BusSlice` sits between the engine and the chip: the chip's bus
    decode (address to ``ready`` / ``error``) meets flops on both sides, not the engine's request
    multiplexers (without it the ULX3S build reached 48-52 MHz)."""

    def __init__(self, chip: wiring.Component, **engine_kw):
        self.inner = chip
        self.engine = SampleEngine(cores=chip.k, **engine_kw)
        self.k, self.geom, self.design_id = chip.k, chip.geom, chip.design_id
        super().__init__({"bus": In(BusSignature(32)), "busy": Out(1)})

    def geometry(self) -> dict:
        return self.inner.geometry()

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine, m.submodules.chip = self.engine, self.inner
        m.submodules.slice = sl = BusSlice(32)
        wiring.connect(m, wiring.flipped(self.bus), self.engine.host)
        wiring.connect(m, self.engine.chip, sl.i)
        wiring.connect(m, sl.o, self.inner.bus)
        m.d.comb += self.busy.eq(self.inner.busy | self.engine.active)
        return m
