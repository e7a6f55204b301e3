"""Torch deploy mode == golden model, bit for bit (spikes, membranes, H at every step)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from plasticore import contract as C
from plasticore import golden
from plasticore.sim.random_bundle import EDGES, random_bundle, random_inputs
from plasticore.training.deploy import compare_with_golden, deploy_run, golden_h_trace

torch.set_num_threads(1)


@pytest.mark.parametrize("seed", range(120))
def test_deploy_equals_golden_random_bundles(seed):
    rng = np.random.default_rng(1000 + seed)
    b = random_bundle(rng)
    mode = ("random", "random", "silent", "all")[seed % 4]
    x = random_inputs(rng, b, samples=int(rng.integers(1, 6)), mode=mode)
    assert compare_with_golden(b, x) is None


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("coding", ["direct", "rate"])
def test_deploy_equals_golden_edge_classes(edge, coding):
    for k in range(4):
        rng = np.random.default_rng(zlib.crc32(f"{edge}/{coding}/{k}".encode()))
        n_layers = int(rng.integers(1, 4))
        sizes = [int(rng.integers(1, 24)) for _ in range(n_layers + 1)]
        b = random_bundle(rng, sizes=sizes, timesteps=int(rng.integers(1, 7)), coding=coding,
                          edges=[edge] * n_layers)
        x = random_inputs(rng, b, samples=3, mode=("random", "all", "silent", "random")[k])
        assert compare_with_golden(b, x) is None


@pytest.mark.parametrize("seed", range(25))
def test_deploy_h_every_step_equals_golden(seed):
    rng = np.random.default_rng(5000 + seed)
    b = random_bundle(rng, sizes=[int(rng.integers(1, 12)) for _ in range(int(rng.integers(2, 4)))])
    x = random_inputs(rng, b, samples=3)
    d = deploy_run(b, x, record_h=True)
    g = golden_h_trace(b, x)
    for li in range(len(b.layers)):
        assert np.array_equal(d.h_trace[li], g[li]), f"layer {li}: H trace differs"


def test_deploy_single_neuron_and_h_start():
    rng = np.random.default_rng(7)
    b = random_bundle(rng, sizes=[1, 1], timesteps=5)
    x = random_inputs(rng, b, samples=4)
    assert compare_with_golden(b, x) is None
    b = random_bundle(rng, sizes=[9, 7, 3], timesteps=4)
    for L in b.layers:
        L.h_persist = C.HPersist.NEVER
        L.plastic = True
    H_start = [rng.integers(-300, 300, size=(L.n_in, L.n_out)) for L in b.layers]
    x = random_inputs(rng, b, samples=3)
    assert compare_with_golden(b, x, H_start=H_start) is None


def test_deploy_maximal_width_layer():
    rng = np.random.default_rng(11)
    b = random_bundle(rng, sizes=[C.MAX_AXONS, 6], timesteps=2, coding="direct")
    x = random_inputs(rng, b, samples=2)
    assert compare_with_golden(b, x) is None


def test_teach_current_zero_is_identity():
    rng = np.random.default_rng(3)
    b = random_bundle(rng, sizes=[8, 6, 4], timesteps=4)
    x = random_inputs(rng, b, samples=3)
    d0 = deploy_run(b, x)
    d1 = deploy_run(b, x, teach=np.zeros((3, 4, 4), np.int64))
    g = golden.run(b, x)
    assert np.array_equal(d0.spikes[-1], d1.spikes[-1]) and np.array_equal(d0.predictions, g.predictions)
