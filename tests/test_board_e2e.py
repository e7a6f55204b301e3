"""End to end over a real serial port: the simulated board (chip + UART link in Verilator behind a
pty) deployed and run by the host exactly like a USB-serial board; equal to the golden model."""

import numpy as np
import pytest

from plasticore import contract as C
from plasticore import golden, runs
from plasticore.core_map import CoreGeometry
from plasticore.host import connect
from plasticore.host.linkbus import BoardError
from plasticore.sim.chipboard import board_design_id, chip_board_top
from plasticore.sim.random_bundle import random_bundle, random_inputs
from plasticore.sim.simboard import SimBoard

#: a small chip with the ULX3S build's top options (the bus slice between the link and the chip)
SMALL = {"mesh_x": 2, "mesh_y": 2, "a_max": 32, "n_max": 16, "lanes": 4, "bus_slice": 1}


@pytest.fixture(scope="module")
def board():
    with SimBoard.start(chip_board_top, clocks_per_bit=8, **SMALL) as b:
        yield b


def test_two_layer_plastic_network_over_serial(board):
    rng = np.random.default_rng(5)
    b = random_bundle(rng, sizes=[24, 20, 12], timesteps=4, coding="direct", allow_ann=False,
                      edges=["none", "none"])
    for L in b.layers:
        L.plastic, L.h_persist = True, C.HPersist.NEVER
    x = random_inputs(rng, b, 5)
    did = board_design_id(8, **SMALL)
    with connect(board.port, expected_design_id=did) as dev:
        assert dev.geom.cores == 4
        dev.deploy(b)
        r = dev.run(x)
    assert len({sl.core for sl in dev.image.placement.slices}) == 3  # 2 cores for layer 0, 1 for layer 1
    g = golden.run(b, x)
    msg = runs.compare_results(runs.result_to_npz_dict(r, "board"), runs.result_to_npz_dict(g, "golden"))
    assert msg is None, msg
    assert not np.array_equal(g.h_final[0], b.layers[0].H0)


def test_wrong_design_id_is_refused(board):
    with pytest.raises(BoardError, match="runs design 0x"):
        connect(board.port, expected_design_id=0x12345678)


def test_missing_port_is_a_clear_error():
    with pytest.raises(BoardError, match="cannot open serial port '/dev/ttyNOPE0'"):
        connect("/dev/ttyNOPE0")


def test_bad_inputs_and_misfit_bundles_leave_the_board_consistent(board):
    from plasticore.coding import InputError
    from plasticore.host.compiler import CompileError

    rng = np.random.default_rng(6)
    b = random_bundle(rng, sizes=[10, 8], timesteps=3, coding="rate", allow_ann=False, edges=["none"])
    x = random_inputs(rng, b, 2)
    with connect(board.port) as dev:
        dev.deploy(b)
        with pytest.raises(InputError, match=r"inputs have shape \(2, 3, 11\), expected \(samples, 3, 10\)"):
            dev.run(np.zeros((2, 3, 11), np.int64))
        with pytest.raises(InputError, match="layer 0 accepts 0..1"):
            dev.run(np.full((2, 3, 10), 7))
        big = random_bundle(rng, sizes=[40, 8], timesteps=3)  # 40 inputs > 32 axons per core
        with pytest.raises(CompileError, match="layer 0 has 40 inputs but a core has 32 axons"):
            dev.deploy(big)
        # nothing was half-written: the deployed network still runs bit-exactly
        r = dev.run(x)
    g = golden.run(b, x)
    assert runs.compare_results(runs.result_to_npz_dict(r, "b"), runs.result_to_npz_dict(g, "g")) is None


def test_icebreaker_chip_over_serial():
    """The iCEBreaker build's chip exactly (``CHIP_DEFAULTS["icebreaker"]``: one compact 128 x 128 core,
    lean link) on the simulated board: a plastic LIF layer and an ANN layer, equal to the golden model."""
    from plasticore.firmware.designs import CHIP_DEFAULTS

    cfg = dict(CHIP_DEFAULTS["icebreaker"])
    with SimBoard.start(chip_board_top, clocks_per_bit=8, **cfg) as b:
        for seed, ann in ((11, False), (12, True)):
            rng = np.random.default_rng(seed)
            bundle = random_bundle(rng, sizes=[100, 40], timesteps=3, coding="direct", allow_ann=ann,
                                   edges=["none"])
            L = bundle.layers[0]
            if ann:
                L.soma = C.SomaMode.ANN
            L.plastic, L.h_persist = True, C.HPersist.NEVER
            x = random_inputs(rng, bundle, 3)
            with connect(b.port, expected_design_id=board_design_id(8, **cfg)) as dev:
                assert dev.geom.cores == 1 and dev.geom.core == CoreGeometry(128, 128, 1)
                dev.deploy(bundle)
                r = dev.run(x)
            g = golden.run(bundle, x)
            msg = runs.compare_results(runs.result_to_npz_dict(r, "board"),
                                         runs.result_to_npz_dict(g, "golden"))
            assert msg is None, f"seed {seed}: {msg}"
            assert not np.array_equal(g.h_final[0], L.H0)


def test_streamed_run_over_serial(board):
    """The sample engine behind the link and the bus slice: features queued, compact records back,
    bit-exact with the golden model; a full run after it on the same board passes through the engine;
    a layer that resets H at every sample (the engine's H0 store)."""
    from plasticore.coding import encode_for

    rng = np.random.default_rng(8)
    b = random_bundle(rng, sizes=[24, 20, 12], timesteps=4, coding="direct", allow_ann=False,
                      edges=["none", "none"])
    for L in b.layers:
        L.plastic, L.h_persist = True, C.HPersist.NEVER
    f = rng.integers(0, 256, (40, 24))
    with connect(board.port, expected_design_id=board_design_id(8, **SMALL)) as dev:
        dev.deploy(b)
        w0 = dev.bus.wire_bytes()
        r = dev.stream(f)
        w1 = dev.bus.wire_bytes()
        dev.deploy(b)
        full = dev.run(encode_for(b, f[:2]))
    g = golden.run(b, encode_for(b, f))
    msg = runs.compare_compact(r, runs.CompactResult.of(g))
    assert msg is None, msg
    assert np.array_equal(full.u_final[-1], g.u_final[-1][:2])
    sent = (w1[0] - w0[0]) / len(f)
    assert sent < 24 + 16, sent  # 6 queue words a sample, framing shared by many samples
    # H := H0 at every sample (h_persist = sample): from the engine's H0 store, not over the link
    b.layers[0].h_persist = C.HPersist.SAMPLE
    with connect(board.port, expected_design_id=board_design_id(8, **SMALL)) as dev:
        dev.deploy(b)
        r = dev.stream(f[:20])
        assert sum(dev.stats["stream_wire_bytes"]) / 20 < 200  # (the H0 writes would be 1.5 KB a sample)
    msg = runs.compare_compact(r, runs.CompactResult.of(golden.run(b, encode_for(b, f[:20]))))
    assert msg is None, msg


def test_cli_stream_check(board, tmp_path, capsys):
    """``plasticore run --stream --check`` over the serial port: compact run file, bit-exact verdict,
    bytes per sample reported; a rate-coded bundle (the engine draws its spikes)."""
    from plasticore.app.cli import main
    from plasticore.bundle import save_bundle

    rng = np.random.default_rng(9)
    b = random_bundle(rng, sizes=[24, 20, 12], timesteps=3, coding="rate", allow_ann=False,
                      edges=["none", "none"])
    for L in b.layers:
        L.h_persist = C.HPersist.NEVER
    save_bundle(b, tmp_path / "b")
    np.savez(tmp_path / "f.npz", features=rng.integers(0, 256, (20, 24)), labels=rng.integers(0, 12, 20))
    rc = main(["run", "--bundle", str(tmp_path / "b"), "--port", board.port, "--inputs", str(tmp_path / "f.npz"),
               "--out", str(tmp_path / "r.npz"), "--stream", "--check", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "bit-exact with the golden model (output membranes" in out and "B to the board" in out
    with np.load(tmp_path / "r.npz") as z:
        assert str(z["format"]) == runs.COMPACT_FORMAT and z["layer1_u_final"].shape == (20, 12)
    # coded inputs (spike trains): queued as events
    np.savez(tmp_path / "x.npz", x=(rng.random((20, 3, 24)) < 0.1).astype(np.int64))
    rc = main(["run", "--bundle", str(tmp_path / "b"), "--port", board.port, "--inputs", str(tmp_path / "x.npz"),
               "--out", str(tmp_path / "r2.npz"), "--stream", "--check", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "bit-exact with the golden model (output membranes" in out, out


@pytest.fixture(scope="module")
def program_board():
    """The small chip of program cores on a simulated board."""
    with SimBoard.start(chip_board_top, clocks_per_bit=8, core="program", **SMALL) as b:
        yield b


def test_rule_programs_over_serial(program_board, tmp_path, capsys):
    """A board of program cores behind the serial link: ``plasticore run --check`` with a bundle of random
    rule programs and the host's m / teaching current in ``--inputs`` is bit-exact with the golden model
    (the host learns from the cores' VERSION that they run programs)."""
    from plasticore.app.cli import main
    from plasticore.bundle import save_bundle
    from plasticore.sim.random_bundle import random_program

    rng = np.random.default_rng(12)
    b = random_bundle(rng, sizes=[20, 12, 6], timesteps=3, coding="rate", allow_ann=False, edges=["none", "none"])
    for L in b.layers:
        L.plastic = True
        L.rule = random_program(rng, L)
    x = random_inputs(rng, b, 3)
    save_bundle(b, tmp_path / "b")
    np.savez(tmp_path / "in.npz", x=x, m0=rng.integers(-4096, 4096, (3, 12)), m1=rng.integers(-4096, 4096, (3, 3, 6)),
             teach=rng.integers(-2000, 2000, (3, 6)))
    rc = main(["run", "--bundle", str(tmp_path / "b"), "--inputs", str(tmp_path / "in.npz"), "--port",
               program_board.port, "--out", str(tmp_path / "r.npz"), "--check", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "bit-exact with the golden model" in out


def test_few_shot_episode_on_the_board(program_board):
    """A few-shot episode on the board (``training.fewshot.board_episode``: H reset, the support streamed
    with one-hot m, then the queries) equals the golden model's, and the prototype rule learns: the
    board's predictions beat chance on well separated classes."""
    import torch

    from plasticore.training.export import export_bundle
    from plasticore.training.fewshot import board_episode, build_net, episode, golden_episode, sized_bundle

    torch.manual_seed(0)
    net = build_net(16, 12, 3, timesteps=4, seed=0, c=0.2)
    with torch.no_grad():
        net.layers[1].alpha.fill_(0.05)
    b = sized_bundle(export_bundle(net, name="fs", h_persist="never"), 3)
    rng = np.random.default_rng(3)
    protos = rng.integers(0, 256, (3, 16))
    by_class = {c: np.clip(protos[c] + rng.integers(-20, 21, (10, 16)), 0, 255) for c in range(3)}
    with connect(program_board.port) as dev:
        assert dev.geom.programs
        dev.deploy(b)
        for _ in range(2):
            ep = episode(rng, by_class, [0, 1, 2], 3, 2, 3)
            pred, _, _, res = golden_episode(b, ep, net.cfg)
            bpred, exact = board_episode(dev, b, ep, res, net.cfg)
            assert exact and np.array_equal(bpred, pred)
            assert not np.array_equal(res.h_final[-1], b.layers[-1].H0)  # the support moved H
