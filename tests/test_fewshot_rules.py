"""The prototype-rule few-shot experiment: small run end to end, torch == golden on an episode."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from plasticore.bundle import load_bundle
from plasticore.training import fewshot as F
from plasticore.training.export import export_bundle

torch.set_num_threads(1)


def _data(seed=0, n_cls=4, per=12, A=16):
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, size=(n_cls, A))
    return {c: np.clip(protos[c] + rng.integers(-40, 41, size=(per, A)), 0, 255).astype(np.uint8)
            for c in range(n_cls)}


def test_prototype_rule_accumulates_class_sums_on_golden():
    net = F.build_net(16, 12, 3, timesteps=4, seed=0)
    with torch.no_grad():
        net.layers[0].W.mul_(4.0)
    b = F.sized_bundle(export_bundle(net, h_persist="never"), 3)
    by = _data()
    ep = F.episode(np.random.default_rng(1), by, [0, 1, 2, 3], 3, 2, 2)
    pred, cs, cq, res = F.golden_episode(b, ep, net.cfg)
    # H[:, k] = sum over the support of class k of rshift_round(c * sum_t x_t * 4096, c_shift) per step
    L = b.layers[-1]
    t = L.program.terms[0]
    H = np.zeros((L.n_in, 3), np.int64)
    for i, y in enumerate(ep[1]):
        for step in range(b.timesteps):
            xs = res.spikes[0][i, step].astype(np.int64)
            H[:, y] += (t.c * (xs * 4096) + (1 << (t.c_shift - 1))) >> t.c_shift
    assert np.array_equal(res.h_final[-1], H) and np.any(H != 0)
    assert pred.shape == ep[3].shape


def test_torch_episode_equals_golden_predictions():
    net = F.build_net(16, 12, 3, timesteps=4, seed=2)
    with torch.no_grad():
        net.layers[0].W.mul_(4.0)
    by = _data(3)
    ep = F.episode(np.random.default_rng(4), by, [0, 1, 2, 3], 3, 2, 3)
    b = F.sized_bundle(export_bundle(net, h_persist="never"), 3)
    pred, *_ = F.golden_episode(b, ep, net.cfg)
    m64 = copy.deepcopy(net).double()
    loss, correct, total = F.episode_loss(m64, [ep], 3, dtype=torch.float64)
    assert total == len(ep[3]) and correct == int((pred == ep[3]).sum())


@pytest.mark.parametrize("features", ["input", "hidden"])
def test_fewshot_quick_end_to_end(tmp_path, features):
    r = F.few_shot(tmp_path, features=features, epochs=1, hidden=16, timesteps=3, test_episodes=4, n_query=2,
                   episodes_per_iter=2, settings=((3, 1),), log=lambda *_: None)
    row = r["rows"][0]
    assert row["setting"] == "3-way 1-shot" and abs(row["gp"] - 1 / 3) < 1e-9  # no plasticity: chance
    assert 0 <= row["plastic"] <= 1 and 0 <= row["ncm_raw"] <= 1
    assert (tmp_path / "results.json").is_file() and (tmp_path / "bundle" / "bundle.json").is_file()
    b = load_bundle(tmp_path / "bundle")
    assert len(b.layers) == (1 if features == "input" else 2) and r["features"] == features


def test_unit_norm_keeps_uint8_and_the_norm():
    rng = np.random.default_rng(0)
    f = rng.integers(0, 256, (50, 64)).astype(np.uint8)
    f[3] = 0  # an all-zero sample stays zero
    scale = F.unit_scale(f)
    g = F.unit_norm(f, scale)
    assert g.dtype == np.uint8 and g.max() <= 255 and not g[3].any()
    n = np.linalg.norm(np.delete(g, 3, 0).astype(np.float64), axis=1)
    assert np.all(np.abs(n - scale) <= np.sqrt(64) / 2 + 1e-9)  # within the rounding
    assert np.all(np.abs(g.astype(int) - np.rint(f * scale / np.linalg.norm(f.astype(float), axis=1,
                                                                           keepdims=True).clip(1))) <= 0)


def test_input_features_readout_is_the_cosine_to_class_sums_on_golden():
    """The ``input`` network (the plastic layer reads the unit-norm input): the golden model's prediction
    is the argmax of <x_q, sum of the class's support>, which the rule's H holds."""
    net = F.build_net(16, 0, 3, timesteps=2, seed=0, c=0.05)
    b = F.sized_bundle(export_bundle(net, h_persist="never"), 3)
    assert len(b.layers) == 1
    by = {c: F.unit_norm(v, F.unit_scale(v)) for c, v in _data(5).items()}
    ep = F.episode(np.random.default_rng(6), by, [0, 1, 2, 3], 3, 2, 4)
    pred, *_ , res = F.golden_episode(b, ep, net.cfg)
    H = res.h_final[-1].astype(np.int64)
    for k in range(3):
        assert np.corrcoef(H[:, k], ep[0][ep[1] == k].astype(float).sum(0))[0, 1] > 0.99
    assert (pred == ep[3]).mean() > 0.5


def test_fewshot_bounds_small_run():
    """The reference table of ``training.fewshot_bounds`` runs on the real digits episodes; with one shot
    the class mean is the sample, so NCM and the nearest neighbour agree on every query."""
    from plasticore.training.fewshot_bounds import bounds

    rows = {r["classifier"]: r for r in bounds(episodes=3, iters=2, settings=((5, 1), (3, 2)), n_aug=(2,),
                                                log=lambda *_: None)}
    one = "5-way 1-shot"
    assert rows["NCM, raw pixels (Euclidean)"][one] == rows["1-nearest neighbour, raw pixels"][one]
    assert all(0 <= r[k] <= 1 for r in rows.values() for k in (one, "3-way 2-shot"))
    assert rows["NCM, raw pixels (Euclidean)"][one] > 0.4  # far above chance (0.2) on digits
    assert len(rows) == 10  # 6 on pixels, 2 with augmented copies, 2 on learned features
