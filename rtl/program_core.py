"""ProgramCore: the hybrid core that runs rule programs (contract v2) on chip.

:class:`~plasticore.rtl.core.HybridCore` with the programmable LPU (``rtl/program_lpu.py``) in place
of the v1 unit, the factor unit (``rtl/factor_unit.py``: traces, third factor, post words) before it,
and the memories a program needs (``plasticore.core_map.PROGRAM_MEMS``): the traces ``XTR`` / ``YTR``,
the host's third-factor input ``MT`` and teaching current ``TEACH`` (added to the soma's bias).  The
program itself is in registers (``plasticore.core_map.ProgReg``, :func:`~plasticore.core_map.term_reg`),
written and read over the bus like the layer's parameters.

A plastic step: integrate and soma as in the v1 core, then ``PREP`` (the factor unit,
:func:`~plasticore.rtl.factor_unit.factor_cycles`), then ``LPU`` (the program,
:func:`~plasticore.rtl.program_lpu.program_lpu_cycles`).  A clear (sample start) makes the next
plastic step read both traces as zero.  Plain memories only (``mem_pipe`` is not supported yet).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import data, memory

from plasticore import contract as C
from plasticore import rules as R
from plasticore.core_map import ALL_MEMS, PROG_REGS, PROGRAM_CORE_VERSION, TERM_FIELDS, Mem, ProgReg, term_reg

from .axon import AxonBuffer
from .core import HybridCore
from .dendrite import Dendrite
from .factor_unit import FactorUnit, factor_cycles, post_lane_layout
from .layouts import NO_RW_CHECK, no_rw_check_read
from .program_lpu import POST_FIELDS, ProgramPlasticityUnit, program_layout, program_lpu_cycles
from .soma import Soma

__all__ = ["ProgramCore", "program_step_cycle_parts", "program_step_cycles"]


class ProgramCore(HybridCore):
    """A hybrid core whose LPU runs the layer's rule program (module docstring)."""

    mem_infos = ALL_MEMS
    version = PROGRAM_CORE_VERSION

    def __init__(self, a_max: int = 256, n_max: int = 256, lanes: int = 16, **kw):
        if kw.get("mem_pipe"):
            raise ValueError("ProgramCore has plain memories only (mem_pipe is not supported)")
        super().__init__(a_max, n_max, lanes, **kw)

    # ---- engines and the program registers ---------------------------------------------------------
    def _engines(self, m: Module, K: int):
        geom = self.geom
        assert K == 0
        m.submodules.axb = axb = AxonBuffer(geom, registered_writes=False, evt_banks=self.evt_banks,
                                            x_banks=self.x_banks)
        m.submodules.den = den = Dendrite(geom, mem_delay=0, reset_less=False, x_delay=0)
        m.submodules.soma = soma = Soma(geom, den.aw_bits, den.ah_bits, mem_delay=0, b_bits=C.B_BITS + 1)
        m.submodules.lpu = lpu = ProgramPlasticityUnit(geom)
        m.submodules.fu = fu = self._fu = FactorUnit(geom)
        self._blocks = {"axb": axb, "den": den, "soma": soma, "lpu": lpu, "fu": fu}
        self._program_registers(m)
        # the post words: one per neuron group, written a lane (neuron) at a time by the factor unit
        P = geom.lanes
        lane = post_lane_layout()
        post = memory.Memory(shape=data.ArrayLayout(lane, P), depth=max(2, geom.groups), init=[],
                             attrs=NO_RW_CHECK)
        m.submodules.mem_post = post
        wp = post.write_port(granularity=1)  # (one lane, a neuron)
        rp = no_rw_check_read(m, post, wp, "mem_post_rp")
        m.d.comb += [wp.addr.eq(fu.post_waddr), wp.en.eq(fu.post_we), rp.addr.eq(lpu.post_addr), rp.en.eq(1)]
        m.d.comb += [wp.data[j].eq(fu.post_wdata) for j in range(P)]
        m.d.comb += [lpu.post_data[f][j].eq(rp.data[j][f]) for f in POST_FIELDS for j in range(P)]
        return axb, den, soma, lpu, 0

    def _program_registers(self, m: Module) -> None:
        """The program registers (the host port writes and reads them at their addresses, :meth:`_extra_regs`)."""
        prog = self._prog = Signal(program_layout())
        self._pre_decay, self._post_decay = Signal(C.FRAC8_BITS, init=C.FRAC8_ONE), Signal(C.FRAC8_BITS,
                                                                                           init=C.FRAC8_ONE)
        self._m_error = Signal()
        targets = self._prog_targets = {ProgReg.N_TERMS: prog.n_terms, ProgReg.PRE_DECAY: self._pre_decay,
                                        ProgReg.POST_DECAY: self._post_decay, ProgReg.M_KIND: self._m_error}
        for k in range(R.K_MAX):
            for f in TERM_FIELDS:
                targets[term_reg(k, f)] = prog.terms[k][f]
        assert all(len(Value.cast(sig)) == PROG_REGS[a][0] for a, sig in targets.items())

    def _extra_regs(self) -> dict:
        return {int(a): sig for a, sig in self._prog_targets.items()}

    # ---- the plastic phase's inputs and ports -----------------------------------------------------
    def _soma_bias(self, rps):
        return rps[Mem.B].data.as_signed() + rps[Mem.TEACH].data.as_signed()

    def _lpu_post_inputs(self, rps, lpu) -> list:
        return [lpu.program.eq(self._prog), lpu.xtr_data.eq(rps[Mem.XTR].data)]

    def _x_raddr(self, s, engines):
        axb, den, soma, lpu = engines
        return Mux(self._in_prep, self._fu.x_addr, Mux(s.in_lpu, lpu.x_addr, den.x_addr))

    def _s_raddr(self, s, engines):
        return Mux(self._in_prep, self._fu.n_addr, engines[2].n_addr)

    def _f_raddr(self, s, engines):
        return self._fu.f_addr

    def _extra_ports(self, m: Module, s, er, ew, engines) -> None:
        fu, soma, lpu = self._fu, engines[2], engines[3]
        m.d.comb += [
            er[Mem.TEACH].addr.eq(soma.n_addr),
            er[Mem.XTR].addr.eq(Mux(self._in_prep, fu.xtr_raddr, lpu.xtr_addr)),
            er[Mem.YTR].addr.eq(fu.n_addr), er[Mem.MT].addr.eq(fu.n_addr),
            ew[Mem.XTR].addr.eq(fu.xtr_waddr), ew[Mem.XTR].data.eq(fu.xtr_wdata), ew[Mem.XTR].en.eq(fu.xtr_we),
            ew[Mem.YTR].addr.eq(fu.ytr_waddr), ew[Mem.YTR].data.eq(fu.ytr_wdata), ew[Mem.YTR].en.eq(fu.ytr_we),
        ]

    def _wire_factor_unit(self, m: Module, s, rps, axb, params) -> None:
        fu = self._fu
        m.d.comb += [
            fu.params.eq(params), fu.pre_decay.eq(self._pre_decay), fu.post_decay.eq(self._post_decay),
            fu.m_error.eq(self._m_error), fu.fresh.eq(self._fresh), fu.n_groups.eq(s.n_groups),
            fu.x_data.eq(axb.x_data), fu.xtr_rdata.eq(rps[Mem.XTR].data), fu.s_data.eq(rps[Mem.S].data),
            fu.ytr_rdata.eq(rps[Mem.YTR].data), fu.mt_data.eq(rps[Mem.MT].data), fu.f_data.eq(rps[Mem.F].data),
        ]

    # ---- the sequencer's plastic phase ------------------------------------------------------------
    def _on_clear(self, m: Module) -> None:
        m.d.sync += self._fresh.eq(1)

    def _start_plastic(self, m: Module, s, engines) -> None:
        m.d.comb += self._fu.start.eq(1)
        m.next = "PREP"

    def _plastic_states(self, m: Module, s, engines) -> None:
        with m.State("PREP"):
            m.d.comb += self._in_prep.eq(1)
            with m.If(~self._fu.busy):
                m.d.comb += engines[3].start.eq(1)
                m.d.sync += self._fresh.eq(0)
                m.next = "LPU"

    def elaborate(self, platform):
        self._in_prep = Signal()
        self._fresh = Signal(init=1)
        return super().elaborate(platform)

    def _sequencer(self, m: Module, s, host, wps, engines, params) -> None:
        # (the factor unit's inputs need the read ports, which exist by now)
        self._wire_factor_unit(m, s, self._rps, engines[0], params)
        super()._sequencer(m, s, host, wps, engines, params)

    def _memories(self, m: Module):
        rps, wps = super()._memories(m)
        self._rps = rps
        return rps, wps


def program_step_cycle_parts(events: int, n_axons: int, n_neurons: int, lanes: int, plastic: bool,
                             n_terms: int) -> dict[str, int]:
    """The phases of :func:`program_step_cycles`: the v1 core's integrate, soma drain and clear, then
    ``prep`` (the factor unit) and ``lpu`` (the program, +1 for its start) of a plastic step."""
    from .core import step_cycle_parts

    parts = step_cycle_parts(events, n_axons, n_neurons, lanes, False)
    if plastic:
        G = -(-n_neurons // lanes)
        parts["prep"] = factor_cycles(n_axons, G, lanes)
        parts["lpu"] = program_lpu_cycles(n_terms, G, n_axons) + 1
    return parts


def program_step_cycles(events: int, n_axons: int, n_neurons: int, lanes: int, plastic: bool,
                        n_terms: int) -> int:
    """Clock cycles of one step of a :class:`ProgramCore` (register ``CYCLES``, ``docs/core.md``)."""
    return sum(program_step_cycle_parts(events, n_axons, n_neurons, lanes, plastic, n_terms).values())

