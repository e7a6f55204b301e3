"""The sample engine (``rtl/engine.py``) on the Verilated chip: samples queued as uint8 features, coded
on the chip, run back to back; the compact records and the final H equal the golden model's."""

import dataclasses

import numpy as np
import pytest

from plasticore import chip_map as M
from plasticore import contract as C
from plasticore import golden
from plasticore.bundle import validate
from plasticore.coding import encode_for, rate_weyl
from plasticore.host.bus import BusError
from plasticore.host.device import Device, DeviceError
from plasticore.runs import CompactResult, compare_compact
from plasticore.sim.chipsim import ChipConfig, ChipSimBus
from plasticore.sim.random_bundle import random_bundle

CFG = ChipConfig(2, 2, 32, 16, 4, engine=True, h0_words=512)


@pytest.fixture(scope="module")
def dev():
    with ChipSimBus(CFG) as bus:
        d = Device(bus, CFG.geometry())
        d.identify()
        yield d


def _streamable(rng, sizes, T, coding="direct", persist=C.HPersist.NEVER):
    """A random bundle the engine runs: direct coding (a random ramp) or rate coding (xorshift32, a random
    64-bit seed), H carried (or reset at every sample: ``persist``) or frozen, LIF output."""
    while True:
        b = random_bundle(rng, sizes=sizes, timesteps=T, coding=coding)
        if b.layers[-1].soma == C.SomaMode.LIF:
            break
    layers = [dataclasses.replace(L, h_persist=persist) for L in b.layers]
    if coding == "direct":
        cod = dataclasses.replace(b.coding, ramp=[int(v) for v in rng.integers(0, 257, T)])
    else:
        cod = dataclasses.replace(b.coding, seed=int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2)))
    b = dataclasses.replace(b, layers=layers, coding=cod)
    validate(b)
    return b


def _features(rng, b, S):
    f = rng.integers(0, 256, (S, b.n_in))
    f[rng.random(f.shape) < 0.3] = 0  # zero features: the engine writes no input for them
    return f


def _check(dev, b, f):
    dev.deploy(b)
    r = dev.stream(f)
    g = CompactResult.of(golden.run(b, encode_for(b, f)))
    msg = compare_compact(r, g)
    assert msg is None, msg


@pytest.mark.parametrize("seed", range(6))
def test_streamed_records_equal_golden(dev, seed):
    """Random networks, direct (seeds 0-3) and rate coded (4-5)."""
    rng = np.random.default_rng(500 + seed)
    n_layers = int(rng.integers(1, 4))
    sizes = [int(rng.integers(1, 33))] + [int(rng.integers(1, 25)) for _ in range(n_layers)]
    while sum(-(-n // 16) for n in sizes[1:]) > 4:
        sizes[int(np.argmax(sizes[1:])) + 1] //= 2
    b = _streamable(rng, sizes, int(rng.integers(1, 6)), "direct" if seed < 4 else "rate")
    _check(dev, b, _features(rng, b, int(rng.integers(1, 12))))


def test_rate_coding_on_the_chip(dev):
    """The engine's xorshift32 spikes equal ``plasticore.coding.rate_spikes``: layer 0 over two cores
    (each replays the step's draws), two streams in a row (each numbers its samples from 0: the host
    writes RNG when it configures the engine; the Weyl value steps once a sample), and the generator's
    register after the run."""
    rng = np.random.default_rng(11)
    b = _streamable(rng, [32, 24, 10], 3, "rate")
    assert len(b.layers) == 2 and b.layers[0].n_out > CFG.n_max
    f = _features(rng, b, 20)
    _check(dev, b, f)
    assert dev.bus.read(M.engine_addr(M.EngineReg.CODING), 2) == [M.EngineCoding.RATE,
                                                                int(rate_weyl(b.coding.seed, 20))]
    _check(dev, b, f[::-1])


@pytest.mark.parametrize("coding", ["rate", "direct"])
def test_event_inputs_equal_golden(dev, coding):
    """Coded inputs as events (``Device.stream_inputs``): sparse spikes (rate-coded layer 0) or graded
    values down to X_MIN (the sign of the 9-bit X word), layer 0 over two cores (each gets the step's
    events again), samples of different lengths, empty ones included, more than the queue holds."""
    rng = np.random.default_rng(21 if coding == "rate" else 22)
    b = _streamable(rng, [32, 20, 6], 4, coding)
    S = 150
    if coding == "rate":
        x = (rng.random((S, 4, 32)) < 0.15).astype(np.int64)
    else:
        x = rng.integers(C.X_MIN, C.X_GRADED_MAX + 1, (S, 4, 32))
        x[rng.random(x.shape) < 0.8] = 0
    x[::7] = 0
    words = sum(len(M.pack_events(s)) for s in x)
    assert words > dev.engine().in_words
    dev.deploy(b)
    r = dev.stream_inputs(x)
    msg = compare_compact(r, CompactResult.of(golden.run(b, x)))
    assert msg is None, msg


def test_events_out_of_order_are_skipped_and_counted(dev):
    """An event whose step has passed when the engine reaches it (the host sorts them; this one did not)
    is skipped, counted in ERRORS, and the sample still ends at its EVENT_END: the next sample is whole."""
    rng = np.random.default_rng(23)
    b = _streamable(rng, [8, 5], 3, "rate")
    b = dataclasses.replace(b, layers=[dataclasses.replace(b.layers[0], plastic=False)])
    dev.deploy(b)
    x = np.zeros((2, 3, 8), np.int64)
    x[:, 1, 2] = 1
    ref = dev.stream_inputs(x)
    E, a = M.EngineReg, M.engine_addr
    ev1, end = M.pack_events(x[0])  # the step-1 event, EVENT_END
    bad = [ev1, ev1 & ~(((1 << M.EVENT_STEP_BITS) - 1) << M.EVENT_STEP_SHIFT), end]  # t = 1, then t = 0
    dev.deploy(b)
    dev.bus.write_fix(a(E.IN), bad + M.pack_events(x[1]))
    rec = M.record_words(5)
    win = dev.bus.read(a(E.RES_NEXT), 2 * rec)
    dev.bus.write(a(E.RES_ACK), [2])
    assert dev.bus.read(a(E.ERRORS), 1) == [1]  # the t = 0 event: step 0 had passed
    assert np.array_equal(M.unpack_record(win[rec:], 5), ref.u_out[1])
    dev.bus.reset()


@pytest.mark.parametrize("seed", range(3))
def test_per_sample_h_is_reset_from_the_h0_store(dev, seed):
    """``h_persist = sample`` layers streamed: the engine rewrites H0 from its store after every CLEAR
    (layers over one or two cores, beside a layer whose H carries over); records and final H as golden."""
    rng = np.random.default_rng(700 + seed)
    sizes = [[20, 24, 6], [32, 16], [12, 8, 10]][seed]
    b = _streamable(rng, sizes, int(rng.integers(2, 5)), "rate" if seed == 1 else "direct", C.HPersist.SAMPLE)
    layers = [dataclasses.replace(L, plastic=True) for L in b.layers]
    if seed == 2:
        layers[1] = dataclasses.replace(layers[1], h_persist=C.HPersist.NEVER)
    b = dataclasses.replace(b, layers=layers)
    validate(b)
    assert b.reset_h_layers()
    _check(dev, b, _features(rng, b, 12))


def test_queues_wrap_and_runs_mix(dev):
    """More samples than the input queue and the result ring hold (both wrap, the host waits for
    room), a full host-driven run between two streams (requests pass through the engine), and a
    layer of 20 neurons over two cores (two output slices, records of 15 words)."""
    rng = np.random.default_rng(7)
    b = _streamable(rng, [30, 12, 20], 2)
    f = _features(rng, b, 400)
    eng = dev.engine()
    assert 400 * M.feature_words(30) > eng.in_words and 400 * M.record_words(20) > eng.res_words
    _check(dev, b, f)
    dev.deploy(b)
    x = encode_for(b, f[:3])
    r = dev.run(x)
    g = golden.run(b, x)
    assert np.array_equal(r.u_final[-1], g.u_final[-1])
    r2 = dev.stream(f[3:9])
    g2 = golden.run(dataclasses.replace(b, layers=[dataclasses.replace(L, H0=h) for L, h in
                                                   zip(b.layers, g.h_final, strict=True)]), encode_for(b, f[3:9]))
    assert compare_compact(r2, CompactResult.of(g2)) is None


def test_engine_registers_refuse_bad_requests(dev):
    E, a = M.EngineReg, M.engine_addr
    dev.bus.reset()
    with pytest.raises(BusError):
        dev.bus.write(a(E.RES_ACK), [1])  # no record waiting
        dev.bus.sync()
    with pytest.raises(BusError):
        dev.bus.read(a(E.H0_IN, 1), 1)  # an unused address
    assert dev.bus.read(a(E.RES_WIN), 2) == [M.OUT_EMPTY, M.OUT_EMPTY]
    assert dev.bus.read(a(E.RES_NEXT, 5), 1) == [M.OUT_EMPTY]  # nothing queued: the wait ends at once
    info = dev.engine()
    assert (info.in_words, info.res_words, info.max_steps, info.h0_words) == (1024, 256, 64, 512)


def test_a_bundle_the_engine_cannot_run_is_refused(dev):
    rng = np.random.default_rng(3)
    b = _streamable(rng, [8, 6], 2)
    b = dataclasses.replace(b, layers=[dataclasses.replace(b.layers[0], soma=C.SomaMode.ANN)])
    dev.deploy(b)
    assert "ANN output layer" in dev.why_not_stream()
    with pytest.raises(DeviceError, match="cannot stream"):
        dev.stream(np.zeros((1, 8), np.int64))
    b = _streamable(rng, [32, 32, 16], 2, persist=C.HPersist.SAMPLE)  # H0 of 3 slices: 768 words > 512
    b = dataclasses.replace(b, layers=[dataclasses.replace(L, plastic=True) for L in b.layers])
    dev.deploy(b)
    assert "the engine's H0 store holds 512 words" in dev.why_not_stream()
    b = _streamable(rng, [8, 6], 2, "rate")
    dev.deploy(dataclasses.replace(b, coding=dataclasses.replace(b.coding, rng="pcg64")))
    assert "'pcg64'" in dev.why_not_stream()


def test_a_chip_without_engine_says_so():
    cfg = ChipConfig(2, 2, 32, 16, 4)
    with ChipSimBus(cfg) as bus:
        d = Device(bus, cfg.geometry())
        assert d.engine() is None
