"""Data layouts shared by the core's blocks, derived from ``plasticore.core_map`` (never duplicated),
and the memory attributes they share."""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from plasticore import contract as C
from plasticore.core_map import MEM_BITS, PARAM_REGS, REGS, CoreGeometry

__all__ = ["NO_RW_CHECK", "PIPELINE_RESET_LESS", "axon_event_layout", "bus_req_layout", "param_layout",
           "spike_event_layout"]

#: Yosys memory attribute: a read in the same clock as a write to the same word may return anything.
#: No read whose data is used ever meets a write to its word (the engines read words they are not
#: writing, the host reads and writes in different clocks), so the synthesiser need not emulate
#: read-before-write across the two BRAM ports (that emulation delays every write by a clock and adds
#: an address comparator and a bypass multiplexer per block RAM, which limited Fmax).
NO_RW_CHECK = {"no_rw_check": 1}

#: The soma's pipeline registers (its stages, lane buffer and multiplier relays) are built without
#: reset: on an FPGA the domain reset is a synchronous reset net to every flop that has one, and its
#: route to the soma relays was the ULX3S chip's critical path (17.3 ns on one net).  Their contents
#: are harmless after a reset: the FPGA configures every flop to its initial value, each stage's valid
#: bit is copied from the stage before it in every clock, and the first stage's valid comes from reset
#: control state, so a reset of at least the pipeline depth (19 clocks) flushes them; the board's
#: power-on, button and PLL-lock reset lasts far longer.  (The LPU and dendrite pipelines keep their
#: reset: with all three reset-less, Yosys 0.70's ABC9 step fails an assertion on the ULX3S chip.)
PIPELINE_RESET_LESS = True


def param_layout() -> data.StructLayout:
    """All parameter registers of :data:`core_map.PARAM_REGS`, field name = register name in lower case."""
    fields = {}
    for r in PARAM_REGS:
        w, sgn = REGS[r]
        fields[r.name.lower()] = signed(w) if sgn else unsigned(w)
    return data.StructLayout(fields)


def bus_req_layout(geom: CoreGeometry) -> data.StructLayout:
    return data.StructLayout({
        "we": 1,
        "mem": MEM_BITS,
        "addr": geom.addr_bits,
        "mask": geom.lanes,
        "data": geom.data_bits,
    })


def axon_event_layout(geom: CoreGeometry) -> data.StructLayout:
    """An input for the next step: axon index and value (spike 1, or graded -256..255)."""
    return data.StructLayout({"axon": geom.axon_bits, "value": signed(C.X_BITS)})


def spike_event_layout(geom: CoreGeometry) -> data.StructLayout:
    """A non-zero output of the soma: neuron index and value (spike 1, or ANN output)."""
    return data.StructLayout({"neuron": geom.neuron_bits, "value": signed(C.X_BITS)})
