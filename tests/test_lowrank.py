"""The sequence form of a float plastic layer (training/lowrank.py) equals the step-by-step forward:
membranes, spikes, final H and every gradient, in float64; it steps aside whenever the clamp could act."""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import pytest
import torch

from plasticore.bundle import ramp_for
from plasticore.training import lowrank
from plasticore.training.model import HybridNet, NetConfig, mse_loss
from plasticore.training.train import authors_config, encode_int, predict, to_real, train_inputs

torch.set_num_threads(1)


def _net(seed: int, rule: dict, plastic: str = "all", ramp: bool = True, beta: float = 0.3, T: int = 6):
    cfg = NetConfig(sizes=[30, 20, 5], timesteps=T, plastic_layers=plastic, spike_ramp=ramp, tau=5.0,
                    rule={"lam_exact": 0.4, "decay_exact": 0.95, **rule})
    net = HybridNet(cfg, seed=seed).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for L in net.layers:
            L.W.mul_(3.0)
            L.alpha.fill_(0.8)
            L.beta.copy_(torch.empty(L.n_in).uniform_(-beta, beta, generator=g))
            L.eta.copy_(torch.empty(L.n_out).uniform_(-0.5, 0.5, generator=g))
            L.H.copy_(torch.empty(L.n_in, L.n_out).uniform_(-0.5, 0.5, generator=g))
    return net


def _run(net, x, h_mode: str, sequence: bool, teach=None):
    """Forward + backward of a copy; returns (outputs, gradients, STATS delta)."""
    net = copy.deepcopy(net)
    before = dict(lowrank.STATS)
    with contextlib.nullcontext() if sequence else lowrank.step_path():
        o = net(x, h_mode=h_mode, qat=False, record=True, teach=teach, carry=True)
        loss = mse_loss(o["u"], o["theta"], torch.arange(x.shape[0]) % 5, 5) + sum((h ** 2).mean() for h in o["H"])
        loss.backward()
    grads = {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
    delta = {k: lowrank.STATS[k] - before[k] for k in before}
    return o, grads, delta, [L.H.clone() for L in net.layers]


CASES = [("shared", "tanh", 1, "soft"), ("shared", "tanh", -1, "hard"), ("shared", "identity", 1, "soft"),
         ("sample", "tanh", 1, "soft"), ("sample", "tanh", -1, "hard"), ("sample", "identity", -1, "soft")]


@pytest.mark.parametrize("h_mode,post_fn,sign,reset", CASES)
def test_sequence_form_equals_step_form(h_mode, post_fn, sign, reset):
    seed = CASES.index((h_mode, post_fn, sign, reset))
    # (identity: f is not bounded by 1, so smaller β keep |H| provably inside the int16 range)
    net = _net(seed, {"post_fn": post_fn, "hebb_sign": sign, "reset": reset, "clamp": None},
               beta=0.3 if post_fn == "tanh" else 0.02)
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(8, 30, generator=g, dtype=torch.float64)
    ramp = torch.tensor(ramp_for(5.0, 6), dtype=torch.float64) / 256
    if h_mode == "shared":  # the shared form needs x_t = r_t·x
        x = lowrank.Separable(base, ramp)
    else:  # any per-step inputs
        x = base[:, None, :] * ramp[None, :, None] + 0.2 * torch.rand(8, 6, 30, generator=g, dtype=torch.float64)
    teach = torch.rand(8, 6, 5, generator=g, dtype=torch.float64)
    a, ga, da, Ha = _run(net, x, h_mode, True, teach)
    b, gb, db, Hb = _run(net, x, h_mode, False, teach)
    # layer 0 always, layer 1 (spike inputs) only per sample
    assert da["sequence"] == (2 if h_mode == "sample" else 1) and da["fallback"] == 0
    assert db["sequence"] == 0
    for li in range(2):
        assert torch.equal(a["spikes"][li], b["spikes"][li]), f"layer {li} spikes differ"
        torch.testing.assert_close(a["mem"][li], b["mem"][li], rtol=0, atol=1e-12)
        torch.testing.assert_close(a["H"][li], b["H"][li], rtol=0, atol=1e-12)
        torch.testing.assert_close(Ha[li], Hb[li], rtol=0, atol=1e-12)  # the carried H
    assert ga.keys() == gb.keys() and {"layers.0.W", "layers.0.beta", "layers.0.alpha", "layers.0.eta"} <= ga.keys()
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], rtol=1e-9, atol=1e-11, msg=f"gradient of {k}")


@pytest.mark.parametrize("h_mode", ["shared", "sample"])
def test_sequence_form_steps_aside_when_the_clamp_can_act(h_mode):
    """β large enough for |H| to reach the clamp: the layer runs the step path (exactly its result)."""
    net = _net(11, {"clamp": 2.0}, plastic="hidden", beta=3.0)
    base = torch.rand(6, 30, dtype=torch.float64)
    ramp = torch.tensor(ramp_for(5.0, 6), dtype=torch.float64) / 256
    x = lowrank.Separable(base, ramp) if h_mode == "shared" else lowrank.Separable(base, ramp).dense()
    a, ga, da, _ = _run(net, x, h_mode, True)
    b, gb, _, _ = _run(net, x, h_mode, False)
    assert da["fallback"] == 1 and da["sequence"] == 0
    assert float(a["H"][0].detach().abs().max()) == pytest.approx(2.0)  # the clamp did act
    torch.testing.assert_close(a["mem"][1], b["mem"][1], rtol=0, atol=0)
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], rtol=0, atol=0)


def test_step_path_where_the_sequence_form_does_not_apply():
    """QAT, rule programs, task masks and a shared H with per-step inputs run step by step."""
    net = _net(3, {}, plastic="hidden")
    x = torch.rand(4, 6, 30, dtype=torch.float64)
    before = dict(lowrank.STATS)
    net(x, h_mode="shared", qat=False)  # shared H, inputs not separable
    net(x, h_mode="sample", qat=True)  # quantisation-aware: H is rounded every step
    net.layers[0].set_task_mask(torch.ones(30, 20))
    net(x, h_mode="sample", qat=False)
    assert lowrank.STATS == before
    rnet = HybridNet(NetConfig(sizes=[30, 20, 5], timesteps=4, rule={"rule": "c*x*s", "coefs": {"c": 0.1}}))
    rnet(torch.rand(2, 4, 30), h_mode="sample", qat=False)
    assert lowrank.STATS == before


def test_separable_training_inputs():
    """Float direct coding: x_t = (f / 256)·(ramp_t / 256), within 1/512 of the chip's rounded input."""
    cfg = authors_config(timesteps=5).net_config(12, 3)
    feats = np.random.default_rng(0).integers(0, 256, size=(7, 12)).astype(np.uint8)
    g = torch.Generator().manual_seed(0)
    sep = train_inputs(feats, cfg, g, dtype=torch.float64, separable=True)
    assert isinstance(sep, lowrank.Separable) and sep.shape == (7, 5, 12)
    ramp = np.asarray(ramp_for(cfg.tau, 5), np.float64)
    np.testing.assert_array_equal(sep.dense().numpy(), feats[:, None, :] * ramp[None, :, None] / 65536.0)
    chip = to_real(encode_int(feats, cfg), cfg, torch.float64)
    assert float((sep.dense() - chip).abs().max()) <= 1 / 512


def _authors_net(hidden: int, timesteps: int, seed: int, alpha: float, beta_scale: float, h: float = 0.0):
    """A 30-``hidden``-5 ``--authors`` network with α, β (and H, ±``h``) large enough for H to matter."""
    cfg = authors_config(hidden=hidden, timesteps=timesteps)
    net = HybridNet(cfg.net_config(30, 5), seed=seed)
    with torch.no_grad():
        for L in net.layers:
            L.alpha.fill_(alpha)
            L.beta.mul_(beta_scale)
            L.H.uniform_(-h, h)
    return cfg, net


def test_float_predictions_unchanged_by_the_sequence_form():
    """``predict`` of a float model (per-sample H, chip inputs) gives the step path's classes."""
    _, net = _authors_net(40, 6, seed=2, alpha=0.5, beta_scale=30, h=0.3)
    feats = np.random.default_rng(1).integers(0, 256, size=(40, 30)).astype(np.uint8)
    before = lowrank.STATS["sequence"]
    p = predict(net, feats, qat=False, exact=False)
    assert lowrank.STATS["sequence"] > before
    with lowrank.step_path():
        q = predict(net, feats, qat=False, exact=False)
    np.testing.assert_array_equal(p, q)


def _qat_pair(net, x, teach=None):
    outs = []
    for round_h in (False, True):
        n2 = copy.deepcopy(net)
        before = lowrank.STATS["sequence"]
        o = n2(x, h_mode="sample", qat=True, record=True, teach=teach, round_h=round_h)
        outs.append((o, lowrank.STATS["sequence"] - before))
    return outs


def test_qat_sequence_form_rounds_everything_but_h():
    """Quantisation-aware, ``round_h=False``: with α = 0 (H has no effect) every other rounding (g, the
    leak, the u clamps, the table) makes the sequence form equal the step path exactly; with α ≠ 0 it is
    within H's per-step rounding of it."""
    net = _net(5, {"clamp": 4.0}, plastic="all", ramp=False, beta=0.5)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(8, 6, 30, generator=g, dtype=torch.float64)
    teach = torch.rand(8, 6, 5, generator=g, dtype=torch.float64)
    (a, na), (b, nb) = _qat_pair(net, x, teach)
    assert na == 2 and nb == 0
    for li in range(2):
        d = float((a["mem"][li] - b["mem"][li]).abs().max())
        assert 0 < d < 0.05 * net.layers[li].opts.theta, (li, d)  # (30 inputs x 6 steps of 2^-13 H errors)
    with torch.no_grad():
        for L in net.layers:
            L.alpha.zero_()
            L.alpha.add_(1e-30)  # (a plastic layer's α, quantised to 0)
    (a, _), (b, _) = _qat_pair(net, x, teach)
    for li in range(2):
        assert torch.equal(a["mem"][li], b["mem"][li]) and torch.equal(a["spikes"][li], b["spikes"][li])


def test_predict_shared_is_the_authors_evaluation(monkeypatch):
    """Mini-batches in order, one batch-mean H each, carried from batch to batch; the net's own H untouched."""
    from plasticore.training.train import predict_shared

    cfg, net = _authors_net(12, 5, seed=4, alpha=2.0, beta_scale=50)
    feats = np.random.default_rng(2).integers(0, 256, size=(9, 30)).astype(np.uint8)
    H_before = [L.H.clone() for L in net.layers]
    calls, forward = [], HybridNet.forward

    def spy(self, x, h_mode="sample", qat=True, carry=False, **kw):
        calls.append((h_mode, carry, x.shape[0], self.layers[0].H.clone()))
        return forward(self, x, h_mode=h_mode, qat=qat, carry=carry, **kw)

    monkeypatch.setattr(HybridNet, "forward", spy)
    got = predict_shared(net, feats, batch=4)
    assert all(torch.equal(L.H, h) for L, h in zip(net.layers, H_before, strict=True))
    assert [c[:3] for c in calls] == [("shared", True, 4), ("shared", True, 4), ("shared", True, 1)]
    assert torch.equal(calls[0][3], H_before[0]) and not torch.equal(calls[1][3], calls[0][3])  # carried
    monkeypatch.setattr(HybridNet, "forward", forward)
    ref, want = copy.deepcopy(net), []
    for s0 in (0, 4, 8):
        xb = train_inputs(feats[s0:s0 + 4], cfg.net_config(30, 5), torch.Generator(), separable=True)
        want.append(ref(xb, h_mode="shared", qat=False, carry=True)["u"].argmax(-1).numpy())
    np.testing.assert_array_equal(got, np.concatenate(want))
