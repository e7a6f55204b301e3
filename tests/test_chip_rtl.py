"""The Verilated multi-core chip (cores + mesh + sequencer) equals the golden model bit for bit.

One small chip build (2x2 mesh of 32-axon x 16-neuron cores, P = 4) serves every case: layers of
more than 16 neurons span several cores, so routing, multicast and the per-step phase order are
exercised.  The full randomized set is marked ``regress``.
"""

import os

import numpy as np
import pytest

from plasticore import chip_map as M
from plasticore import contract as C
from plasticore import golden, runs
from plasticore.app.cli import main
from plasticore.chip_map import ChipGeometry
from plasticore.host.bus import BusError
from plasticore.host.compiler import CompileError, compile_bundle
from plasticore.host.device import Device
from plasticore.sim.chipsim import ChipConfig, ChipSimBus
from plasticore.sim.random_bundle import random_bundle, random_inputs, random_program

CFG = ChipConfig(2, 2, 32, 16, 4)
#: the same chip of program cores (rule programs, contract v2)
CFG_PROGRAM = ChipConfig(2, 2, 32, 16, 4, core="program")
#: the same chip with pipelined, banked core memories (``mem_pipe``)
CFG_PIPE = ChipConfig(2, 2, 32, 16, 4, mem_pipe=True)


def _device(cfg: ChipConfig):
    """A host device on the Verilated chip ``cfg``, identified."""
    with ChipSimBus(cfg) as bus:
        d = Device(bus, cfg.geometry())
        d.identify()
        yield d


@pytest.fixture(scope="module")
def dev():
    yield from _device(CFG)


def _check(dev, b, x):
    dev.deploy(b)
    r = dev.run(x, record_membranes=True)
    g = golden.run(b, x, record_membranes=True)
    for li in range(len(b.layers)):
        assert np.array_equal(r.u_trace[li], g.u_trace[li]), f"layer {li} membranes"
    msg = runs.compare_results(runs.result_to_npz_dict(r, "rtl"), runs.result_to_npz_dict(g, "golden"))
    assert msg is None, msg


def _case(seed):
    rng = np.random.default_rng(seed)
    n_layers = int(rng.integers(1, 4))
    sizes = [int(rng.integers(1, 33))] + [int(rng.integers(1, 25)) for _ in range(n_layers)]
    while sum(-(-n // 16) for n in sizes[1:]) > 4:
        sizes[int(np.argmax(sizes[1:])) + 1] //= 2
    b = random_bundle(rng, sizes=sizes, timesteps=int(rng.integers(1, 5)))
    x = random_inputs(rng, b, int(rng.integers(1, 4)), str(rng.choice(["random", "random", "silent", "all"])))
    return b, x


@pytest.mark.parametrize("seed", range(6))
def test_random_networks_bit_exact(dev, seed):
    _check(dev, *_case(1000 + seed))


@pytest.fixture(scope="module")
def dev_program():
    yield from _device(CFG_PROGRAM)


def _program_case(seed):
    """A random network with a random rule program on every plastic layer, the host's third factor t of
    every layer (per sample, per step or broadcast) and the output layer's teaching current."""
    b, x = _case(seed)
    rng = np.random.default_rng(seed + 7)
    S, T = x.shape[:2]
    m = {}
    for li, L in enumerate(b.layers):
        L.rule = random_program(rng, L) if L.plastic else None
        shape = [(S, L.n_out), (S, T, L.n_out), (S,)][li % 3]
        m[li] = rng.integers(-(1 << 15), 1 << 15, shape)
    teach = rng.integers(-(1 << 12), 1 << 12, (S, T, b.n_out))
    return b, x, m, teach


@pytest.mark.parametrize("seed", range(4))
def test_program_chip_runs_rule_programs_bit_exact(dev_program, seed):
    """A chip of program cores runs random rule programs with the host's m and teaching current: spikes,
    membranes (every step) and the final H equal the golden model's."""
    assert dev_program.geom.programs  # (identify read it from the cores' VERSION)
    b, x, m, teach = _program_case(2000 + seed)
    dev_program.deploy(b)
    r = dev_program.run(x, record_membranes=True, m=m, teach=teach)
    g = golden.run(b, x, record_membranes=True, m=m, teach=teach)
    for li in range(len(b.layers)):
        assert np.array_equal(r.u_trace[li], g.u_trace[li]), f"layer {li} membranes"
    msg = runs.compare_results(runs.result_to_npz_dict(r, "rtl"), runs.result_to_npz_dict(g, "golden"))
    assert msg is None, msg


def test_program_chip_runs_v1_networks(dev_program):
    """v1 bundles run unchanged on a chip of program cores."""
    _check(dev_program, *_case(1000))


def test_v1_chip_refuses_programs_and_host_inputs(dev):
    """A chip of v1 cores refuses the host's m / teaching current and rule programs the v1 LPU cannot run."""
    from plasticore import rules as R

    b, x = _case(1000)
    assert not dev.geom.programs
    dev.deploy(b)
    with pytest.raises(Exception, match="program cores"):
        dev.run(x, m={0: np.zeros(len(x), np.int64)})
    with pytest.raises(Exception, match="program cores"):
        dev.run(x, teach=np.zeros(len(x), np.int64))
    b.layers[0].plastic = True
    b.layers[0].rule = R.compile_rule("0.5*x*m")
    with pytest.raises(R.RuleError, match="program cores"):
        dev.deploy(b)


@pytest.fixture(scope="module")
def dev_pipe():
    yield from _device(CFG_PIPE)


@pytest.mark.parametrize("seed", range(3))
def test_random_networks_bit_exact_mem_pipe(dev_pipe, seed):
    """The chip with pipelined memories gives the same integers (seeds of the plain chip's test)."""
    _check(dev_pipe, *_case(1000 + seed))


@pytest.mark.parametrize("which", ["dev", "dev_pipe"])
def test_chip_register_read_right_after_write(request, which):
    """A chip register read issued the clock after a write to it returns the written value (with
    ``mem_pipe`` the write is made two clocks after it is accepted and the read answered from a
    value read a clock earlier)."""
    from plasticore.chip_map import ChipReg, chip_addr

    d = request.getfixturevalue(which)
    regs = [ChipReg.N_PHASES] + [ChipReg.CORE_PHASE_BASE + k for k in range(d.geom.cores)]
    for value in (5, 10, 3):
        for i, reg in enumerate(regs):
            v = (value + i) & 0xF
            d.bus.write(chip_addr(reg), [v])
            (got,) = d.bus.read(chip_addr(reg), 1)
            assert got == v, f"chip register {reg}: wrote {v}, read {got}"


def test_split_layer_with_persistent_plasticity(dev):
    rng = np.random.default_rng(77)
    b = random_bundle(rng, sizes=[30, 28, 10], timesteps=4, coding="direct", allow_ann=False, edges=["none", "none"])
    for L in b.layers:
        L.plastic, L.h_persist = True, C.HPersist.NEVER
    x = random_inputs(rng, b, 4)
    _check(dev, b, x)
    g = golden.run(b, x)
    assert not np.array_equal(g.h_final[0], b.layers[0].H0), "plasticity must have changed H (non-vacuous)"


def test_per_sample_h_reset(dev):
    rng = np.random.default_rng(78)
    b = random_bundle(rng, sizes=[12, 9, 5], timesteps=3, allow_ann=False, edges=["none", "none"])
    for L in b.layers:
        L.plastic, L.h_persist = True, C.HPersist.SAMPLE
    _check(dev, b, random_inputs(rng, b, 3))


@pytest.mark.regress
@pytest.mark.parametrize("seed", range(100))
def test_regress_random_networks(dev, seed):
    base = int(os.environ.get("SEED", "0") or 0)
    _check(dev, *_case(base * 1000 + seed))


def test_bad_address_is_an_error(dev):
    from plasticore.chip_map import core_addr
    from plasticore.core_map import Mem

    with pytest.raises(BusError, match="rejected address"):
        dev.bus.read(core_addr(7, Mem.W, 0), 1)  # only 4 cores
    dev.bus.sync()  # the chip still answers


def test_chip_registers_read_the_same_with_mem_pipe(dev, dev_pipe):
    """Every chip register address below ROUTE_BASE reads the same value (or the same error) on the
    plain chip and on the ``mem_pipe`` one (whose read multiplexer is two levels of flops), after a
    reset: constants, the empty output ring, the core phases, unknown addresses."""
    from plasticore.chip_map import ChipReg, chip_addr

    skip = {ChipReg.STEPS, ChipReg.CYCLES, ChipReg.DESIGN_ID}  # (history, build configuration)
    seen = []
    for d in (dev, dev_pipe):
        d.bus.reset()
        d.bus.write(chip_addr(ChipReg.N_PHASES), [2])  # (the writable registers: set, not left to other tests)
        for k in range(d.geom.cores):
            d.bus.write(chip_addr(ChipReg.CORE_PHASE_BASE + k), [(3 * k + 1) & 0xF])
        got = {}
        for reg in range(ChipReg.ROUTE_BASE):
            if reg in skip:
                continue
            try:
                (got[reg],) = d.bus.read(chip_addr(reg), 1)
            except BusError as e:
                got[reg] = f"error: {e}"
                d.bus.sync()
        got["window"] = d.bus.read(chip_addr(ChipReg.OUT_WIN), 2)
        seen.append(got)
    plain, pipe = seen
    diff = {r: (plain[r], pipe[r]) for r in plain if plain[r] != pipe[r]}
    assert not diff, f"chip registers that differ (plain, mem_pipe): {diff}"
    assert plain[ChipReg.CHIP_ID] == M.CHIP_ID_VALUE and plain[ChipReg.OUT_COUNT] == 0
    assert plain["window"] == [M.OUT_EMPTY] * 2, "an empty output window reads OUT_EMPTY"
    assert str(plain[ChipReg.OUT_ACK]).startswith("error"), "OUT_ACK is write-only"
    assert str(plain[13]).startswith("error"), "an unknown chip register must be an error"


@pytest.mark.parametrize("which", ["dev", "dev_pipe"])
def test_cycles_register_counts_the_last_step(request, which):
    """ChipReg.CYCLES is the clock count of the last step of a RUN (silent steps all cost the same);
    RUN 0 answers the step count, RUN n the output ring level."""
    from plasticore.chip_map import ChipReg, chip_addr

    dev = request.getfixturevalue(which)
    rng = np.random.default_rng(3)
    dev.deploy(random_bundle(rng, sizes=[8, 6], timesteps=1))
    dev.bus.reset()
    (steps0,) = dev.bus.read(chip_addr(ChipReg.STEPS), 1)
    assert dev.bus.run(1) == dev.bus.read(chip_addr(ChipReg.OUT_COUNT), 1)[0]
    (one,) = dev.bus.read(chip_addr(ChipReg.CYCLES), 1)
    dev.bus.run(3)
    (last,) = dev.bus.read(chip_addr(ChipReg.CYCLES), 1)
    assert one > 0 and last == one, f"CYCLES after RUN 1: {one}, after RUN 3: {last}"
    assert dev.bus.run(0) == steps0 + 4, "RUN 0 answers the step count (STEPS)"


def test_network_too_big_is_a_compile_error():
    b = random_bundle(np.random.default_rng(1), sizes=[8, 32, 32, 16], timesteps=2)
    with pytest.raises(CompileError, match="more than the chip's 4 cores"):
        compile_bundle(b, ChipGeometry(2, 2, CFG.geometry().core))


def test_sim_run_cli_matches_golden(tmp_path, capsys):
    main(["bundle", "random", "--out", str(tmp_path / "b"), "--seed", "11", "--sizes", "10,20,6",
          "--timesteps", "3", "--coding", "rate"])
    np.savez(tmp_path / "in.npz", features=np.random.default_rng(0).integers(0, 256, (3, 10)))
    rc = main(["sim", "run", "--bundle", str(tmp_path / "b"), "--inputs", str(tmp_path / "in.npz"),
               "--out", str(tmp_path / "rtl.npz"), "--check", "--mesh", "2x2", "--axons", "32", "--neurons", "16",
               "--lanes", "4"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "bit-exact with the golden model" in out


def test_sim_run_cli_runs_rule_programs(tmp_path, capsys):
    """``plasticore sim run --check`` with a bundle of rule programs and m / teach in ``--inputs``: the chip
    of program cores is chosen by itself, bit-exact with the golden model on the same host inputs."""
    from plasticore.bundle import save_bundle

    b, x, m, teach = _program_case(2002)
    save_bundle(b, tmp_path / "b")
    np.savez(tmp_path / "in.npz", x=x, teach=teach, **{f"m{li}": v for li, v in m.items()})
    rc = main(["sim", "run", "--bundle", str(tmp_path / "b"), "--inputs", str(tmp_path / "in.npz"),
               "--out", str(tmp_path / "rtl.npz"), "--check", "--mesh", "2x2", "--axons", "32", "--neurons", "16",
               "--lanes", "4"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "program cores" in out and "bit-exact with the golden model" in out


def test_sim_run_chip_fits_wide_layers():
    """``plasticore sim run`` without --axons / --neurons / --mesh: cores wide enough for a 784-input
    layer (1024 axons), neurons doubled until no layer spans more than MAX_DESTS cores; what is given wins."""
    import argparse

    from plasticore.app.sim_cli import chip_config_for
    from plasticore.sim.chipboard import DEFAULT_CHIP, fitting_chip

    b = random_bundle(np.random.default_rng(2), sizes=[784, 12, 10], timesteps=2)
    args = argparse.Namespace(mesh=None, axons=None, neurons=None, lanes=16)
    cfg = chip_config_for(b, args)
    assert (cfg.a_max, cfg.n_max, cfg.mesh_x * cfg.mesh_y) == (1024, 128, 2)
    compile_bundle(b, cfg.geometry())
    b.layers[0].plastic, b.layers[0].h_persist = True, C.HPersist.SAMPLE  # its H0: 784 x 16 / 2 words
    assert fitting_chip(b).h0_words == max(DEFAULT_CHIP.h0_words, 1 << (784 * 16 // 2 - 1).bit_length())
    big = random_bundle(np.random.default_rng(3), sizes=[784, 600, 10], timesteps=2)
    big.layers[0].plastic, big.layers[0].h_persist = True, C.HPersist.SAMPLE  # 784 x 608 / 2: beyond 64 Ki
    assert fitting_chip(big).h0_words == 1 << 18
    args.axons, args.neurons, args.mesh = 512, 16, (2, 2)
    assert (lambda c: (c.a_max, c.n_max, c.mesh_x, c.mesh_y))(chip_config_for(b, args)) == (512, 16, 2, 2)


@pytest.fixture(scope="module")
def dev_ulx3s():
    """The chip the ULX3S bitstream carries (``CHIP_DEFAULTS["ulx3s"]``: 2 x 1 cores of 256 x 256,
    P = 4, pipelined memories with the block-RAM ones tiled), Verilated (~8 min to build)."""
    from plasticore.firmware.designs import CHIP_DEFAULTS

    kw = CHIP_DEFAULTS["ulx3s"]
    yield from _device(ChipConfig(kw["mesh_x"], kw["mesh_y"], kw["a_max"], kw["n_max"], kw["lanes"], kw["out_fifo"],
                                  bool(kw.get("mem_pipe")), bool(kw.get("engine"))))


@pytest.mark.regress
@pytest.mark.parametrize("seed", range(3))
def test_regress_ulx3s_default_chip(dev_ulx3s, seed):
    """Random two-layer networks (each layer plastic with probability 0.8) of 100-256 neurons, one
    layer per core, on the ULX3S chip equal the golden model (spikes, membranes, final H)."""
    rng = np.random.default_rng(int(os.environ.get("SEED", "0") or 0) * 1000 + 7000 + seed)
    sizes = [int(rng.integers(100, 257)), int(rng.integers(100, 257)), int(rng.integers(2, 200))]
    b = random_bundle(rng, sizes=sizes, timesteps=int(rng.integers(2, 4)))
    _check(dev_ulx3s, b, random_inputs(rng, b, 2, "random"))


@pytest.mark.regress
@pytest.mark.parametrize("coding", ["direct", "rate"])
def test_regress_ulx3s_streamed(dev_ulx3s, coding):
    """The ULX3S chip's sample engine in front of its pipelined cores: a random 2-layer network (H
    carried) streamed, features coded on the chip, records and final H equal the golden model's."""
    from plasticore.coding import encode_for

    rng = np.random.default_rng(int(os.environ.get("SEED", "0") or 0) * 1000 + 7100 + (coding == "rate"))
    while True:
        b = random_bundle(rng, sizes=[int(rng.integers(30, 257)), int(rng.integers(20, 257)),
                                      int(rng.integers(2, 40))], timesteps=int(rng.integers(2, 5)), coding=coding)
        if b.layers[-1].soma == C.SomaMode.LIF:
            break
    for L in b.layers:
        L.h_persist = C.HPersist.NEVER
    f = rng.integers(0, 256, (6, b.n_in))
    dev_ulx3s.deploy(b)
    assert dev_ulx3s.why_not_stream() is None
    r = dev_ulx3s.stream(f)
    msg = runs.compare_compact(r, runs.CompactResult.of(golden.run(b, encode_for(b, f))))
    assert msg is None, msg


@pytest.mark.parametrize("which", ["dev", "dev_pipe"])
def test_output_window_reads_again_until_acknowledged(request, which):
    """The output window (ChipReg.OUT_WIN + i) reads the waiting outputs without removing them: a
    repeated read returns the same entries (a destructive FIFO pop would return the next ones or
    OUT_EMPTY); OUT_ACK n drops the n oldest; acknowledging more than are waiting is an error that
    drops nothing. Then a run long enough to wrap the ring is bit-exact."""
    from plasticore.chip_map import ChipReg, chip_addr, core_addr
    from plasticore.core_map import Mem
    from plasticore.host.compiler import decode_outputs

    d = request.getfixturevalue(which)
    rng = np.random.default_rng(21)
    b = random_bundle(rng, sizes=[20, 24, 8], timesteps=4, coding="direct", allow_ann=False, edges=["none", "none"])
    x = random_inputs(rng, b, 48, "all")
    d.deploy(b)
    win, ack, count = chip_addr(ChipReg.OUT_WIN), chip_addr(ChipReg.OUT_ACK), chip_addr(ChipReg.OUT_COUNT)
    d.bus.write(chip_addr(ChipReg.CLEAR), [1])
    for k in d.image.placement.layer_cores[0]:
        d.bus.write(core_addr(k, Mem.X, 0), [int(v) & 0x1FF for v in x[0, 0]])
    n = d.bus.run(1)
    g = golden.run(b, x[:1])
    want = sum(int(np.count_nonzero(sp[0, 0])) for sp in g.spikes)
    assert n == want >= 4, f"RUN answered {n} outputs, the golden model has {want}"
    first = d.bus.read(win, n + 2)
    assert first[n:] == [M.OUT_EMPTY] * 2 and M.OUT_EMPTY not in first[:n]
    got = np.zeros_like(g.spikes[0][0, 0]), np.zeros_like(g.spikes[1][0, 0])
    for li, j, v in decode_outputs(first[:n], b, d.image.placement):
        got[li][j] = v
    assert all(np.array_equal(got[li], g.spikes[li][0, 0]) for li in range(2)), "window entries vs golden"
    assert d.bus.read(win, n) == first[:n], "a repeated window read returns the same entries"
    assert d.bus.read(win + 1, n - 1) == first[1:n], "window entry i is the i-th waiting output"
    assert d.bus.read(count, 1) == [n], "reading the window acknowledges nothing"
    d.bus.write(ack, [2])
    assert d.bus.read(count, 1) == [n - 2]
    assert d.bus.read(win, n - 1) == first[2:n] + [M.OUT_EMPTY]
    with pytest.raises(BusError, match="rejected address"):
        d.bus.write(ack, [n - 1])  # one more than are waiting
        d.bus.sync()
    assert d.bus.read(count, 1) == [n - 2], "a refused OUT_ACK drops nothing"
    d.bus.write(ack, [n - 2])
    assert d.bus.read(count, 1) == [0] and d.bus.read(win, 1) == [M.OUT_EMPTY]
    # a run of more outputs than the ring holds, so it wraps around
    per_sample = sum(int(np.count_nonzero(sp)) for sp in golden.run(b, x).spikes) / len(x)
    x = random_inputs(rng, b, int(1.2 * d.geom.out_fifo / per_sample) + 1, "all")
    total = sum(int(np.count_nonzero(sp)) for sp in golden.run(b, x).spikes)
    assert total > d.geom.out_fifo, f"{total} outputs do not wrap the ring of {d.geom.out_fifo}"
    _check(d, b, x)
