"""The chip's step sequencer: runs time steps phase by phase over the cores, and clears them."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .stream_slice import stage

__all__ = ["StepSequencer"]


class StepSequencer(wiring.Component):
    """Phase 0 .. ``n_phases`` - 1 of a step: every core whose ``phase_of`` equals the phase is
    started, and the phase ends when those cores are ``done`` and the network is ``quiet``.

    * ``go_run`` (pulse, with the step count ``run_arg`` > 0): run that many steps; ``answer`` pulses
      when the last has finished (RUN's answer is due).  ``go_clear`` (pulse): clear every core (sample
      start); with ``flush`` (RESET) ``flushing`` is high while the clear waits (the output ring empties).
    * ``start`` (one bit a core), ``clear``: to the cores.  ``idle``: in IDLE; ``steps``, ``cycles``:
      steps run, clocks of the last step.

    ``registered`` (the fast chip): ``start`` / ``clear`` reach every core, across the die, from flops
    (the cores start a clock later); each core's ``done`` and the network's ``quiet`` come from flops (a
    clock late: still safe, see the chip); the sequencer leaves IDLE a clock after ``go_run`` /
    ``go_clear``, from flops, with a copy of ``run_arg`` made the clock it came.
    """

    def __init__(self, k: int, *, registered: bool):
        self.k, self.registered = k, registered
        super().__init__({
            "go_run": In(1), "run_arg": In(32), "go_clear": In(1), "flush": In(1),
            "dones": In(k), "quiet": In(1), "n_phases": In(4), "phase_of": In(data.ArrayLayout(4, k)),
            "start": Out(k), "clear": Out(1), "idle": Out(1), "answer": Out(1), "flushing": Out(1),
            "steps": Out(32), "cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        K, reg = self.k, self.registered
        phase = Signal(4)
        steps_left = Signal(32)
        pending = Signal(K)
        start, clear = Signal(K), Signal()
        m.d.comb += [self.start.eq(stage(m, start, reg, "start_q")), self.clear.eq(stage(m, clear, reg, "clear_q"))]
        dones = stage(m, self.dones, reg, "dones_q")
        quiet = stage(m, self.quiet, reg, "quiet_q")
        seq_run = stage(m, self.go_run, reg, "seq_run")
        seq_clear = stage(m, self.go_clear, reg, "seq_clear")
        run_arg = stage(m, self.run_arg, reg, "run_arg")
        flush = Signal()  # RESET: also empty the output ring and zero the drop counter
        with m.If(self.flush):
            m.d.sync += flush.eq(1)
        # the sequencer's decisions come from registers: ``fin`` (every started core done and the
        # network quiet, one clock late: both persist once true, nothing starts a core in WAIT) and
        # the last-phase / last-step compares made in START (phase and steps_left hold during WAIT)
        fin, last_phase, last_step = Signal(), Signal(), Signal()
        # the step clock counter; stated before the FSM so that its reset at a step boundary
        # (``cyc.eq(0)`` below) takes precedence: CYCLES is the last step's count, not the RUN's
        cyc = Signal(32)
        with m.If(~self.idle):
            m.d.sync += cyc.eq(cyc + 1)
        with m.FSM(name="seq"):
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                with m.If(seq_run):
                    m.d.sync += [steps_left.eq(run_arg), phase.eq(0), cyc.eq(0)]
                    m.next = "START"
                with m.Elif(seq_clear):
                    m.next = "CLEAR"
            with m.State("START"):
                sel = Cat(*[self.phase_of[k] == phase for k in range(K)])
                m.d.comb += start.eq(sel)
                m.d.sync += [pending.eq(sel), fin.eq(0), last_phase.eq(phase + 1 >= self.n_phases),
                             last_step.eq(steps_left <= 1)]
                m.next = "WAIT"
            with m.State("WAIT"):
                m.d.sync += [pending.eq(pending & ~dones), fin.eq(((pending & ~dones) == 0) & quiet)]
                with m.If(fin):
                    with m.If(last_phase):
                        m.d.sync += [self.steps.eq(self.steps + 1), steps_left.eq(steps_left - 1), phase.eq(0),
                                     self.cycles.eq(cyc + 1)]
                        with m.If(last_step):
                            m.d.comb += self.answer.eq(1)
                            m.next = "IDLE"
                        with m.Else():
                            m.d.sync += cyc.eq(0)
                            m.next = "START"
                    with m.Else():
                        m.d.sync += phase.eq(phase + 1)
                        m.next = "START"
            with m.State("CLEAR"):
                m.d.comb += clear.eq(1)
                m.d.sync += pending.eq((1 << K) - 1)
                m.next = "CLEAR_WAIT"
            with m.State("CLEAR_WAIT"):
                m.d.sync += pending.eq(pending & ~dones)
                m.d.comb += self.flushing.eq(flush)
                with m.If((pending & ~dones) == 0):
                    m.d.sync += flush.eq(0)
                    m.next = "IDLE"
        return m
