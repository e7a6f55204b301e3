"""Data layouts shared by the core's blocks, derived from ``plasticore.core_map`` (never duplicated),
and the memory attributes they share."""

from __future__ import annotations

import os
from types import SimpleNamespace

from amaranth.hdl import Signal, signed, unsigned
from amaranth.lib import data
from amaranth.lib.wiring import In, Out

from plasticore import contract as C
from plasticore.core_map import MEM_BITS, PARAM_REGS, REGS, CoreGeometry

__all__ = ["NO_RW_CHECK", "PIPELINE_RESET_LESS", "RW_POISON_ENV", "no_rw_check_read",
           "axon_event_layout", "bus_req_layout", "param_layout",
           "spike_event_layout"]

#: Yosys memory attribute: a read in the same clock as a write to the same word may return anything.
#: No read whose data is used ever meets a write to its word (the engines read words they are not
#: writing, the host reads and writes in different clocks), so the synthesiser need not emulate
#: read-before-write across the two BRAM ports (that emulation delays every write by a clock and adds
#: an address comparator and a bypass multiplexer per block RAM, which limited Fmax).  Yosys honours
#: it only on a port made by :func:`no_rw_check_read`; ``tests/test_core_amaranth.py`` checks the claim
#: with :data:`RW_POISON_ENV`.
NO_RW_CHECK = {"no_rw_check": 1}

#: Simulation only (environment ``PLASTICORE_RW_POISON=1`` when the design is elaborated): a read of
#: a :data:`NO_RW_CHECK` memory (through :func:`no_rw_check_read`) in the same clock as a write to
#: its word returns the inverted word, so that a test in which a used read meets a write fails.
RW_POISON_ENV = "PLASTICORE_RW_POISON"


def no_rw_check_read(m, mem, wp, name: str):
    """A synchronous read port of ``mem`` (a :data:`NO_RW_CHECK` memory with write port ``wp``) made
    of an asynchronous port and a register with the port's enable (``addr``, ``en``, ``data``, like an
    Amaranth read port, not transparent).

    Yosys honours ``no_rw_check`` only when it merges such a register into the port (``memory_dff``):
    on a synchronous read port made by Amaranth it emulates the read-before-write behaviour across the
    two block-RAM ports (a comparator, a bypass multiplexer and a copy of every write per block RAM).
    In simulation the read is the same; with :data:`RW_POISON_ENV` set a read meeting a write of its
    word returns the word inverted."""
    rp = mem.read_port(domain="comb")
    port = SimpleNamespace(addr=rp.addr, en=Signal(name=f"{name}_en"),
                           data=Signal(rp.data.shape(), name=f"{name}_data", reset_less=True))
    word = rp.data
    if os.environ.get(RW_POISON_ENV) == "1":
        hit = wp.en.any() & (wp.addr == rp.addr)
        word = rp.data ^ hit.replicate(len(rp.data))
    with m.If(port.en):
        m.d.sync += port.data.eq(word)
    return port

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


def h_sweep_ports(geom: CoreGeometry) -> dict:
    """The ports of a plasticity unit that sweeps a layer's H words (``rtl/lpu.py``,
    ``rtl/program_lpu.py``): parameters, start/busy, the H read and write ports, x and β by axon."""
    P = geom.lanes
    return {
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
    }
