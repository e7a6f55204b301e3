"""Float model, quantisation-aware forward, exporter: float64 QAT forward == integer deploy == golden."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from plasticore import contract as C
from plasticore import golden
from plasticore.bundle import load_bundle, save_bundle
from plasticore.training.deploy import compare_with_golden, deploy_run
from plasticore.training.export import export_bundle
from plasticore.training.model import HybridNet, NetConfig, mse_loss
from plasticore.training.train import encode_int, predict_onchip, to_real

torch.set_num_threads(1)


def _excite(net: HybridNet, seed: int, h_scale: float = 0.5):
    """Push the meta-local parameters and H away from their tiny initial values so plasticity,
    clamps and both signs are exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for L in net.layers:
            L.W.mul_(3.0)
            if L.opts.plastic:
                L.alpha.fill_(float(torch.empty(()).uniform_(-1.5, 1.5, generator=g)))
                L.beta.copy_(torch.empty(L.n_in).uniform_(-2, 2, generator=g))
                L.eta.copy_(torch.empty(L.n_out).uniform_(-1, 1, generator=g))
                L.H.copy_(torch.empty(L.n_in, L.n_out).uniform_(-h_scale, h_scale, generator=g))


def _float_int_traces(net: HybridNet, feats: np.ndarray):
    b = export_bundle(net)
    x = encode_int(feats, net.cfg)
    d = deploy_run(b, x, record=True)
    m64 = __import__("copy").deepcopy(net).double()
    with torch.no_grad():
        o = m64(to_real(x, net.cfg, torch.float64), h_mode="sample", record=True)
    return b, x, d, o


CASES = list(itertools.product(["tanh", "identity", "sign"], [1, -1], [4.0, 2.0, None], ["soft", "hard"]))


@pytest.mark.parametrize("post_fn,sign,clamp,reset", CASES)
def test_qat_float64_forward_equals_integer_deploy(post_fn, sign, clamp, reset):
    seed = CASES.index((post_fn, sign, clamp, reset))
    coding = "direct" if seed % 2 == 0 else "rate"
    rule = {"post_fn": post_fn, "hebb_sign": sign, "clamp": clamp, "reset": reset}
    cfg = NetConfig(sizes=[12, 9, 4], variant="HP", timesteps=5, coding=coding, plastic_layers="all", rule=rule)
    net = HybridNet(cfg, seed=seed)
    _excite(net, seed, h_scale=3.0 if clamp is None else 1.0)
    feats = np.random.default_rng(seed).integers(0, 256, size=(6, 12)).astype(np.uint8)
    b, x, d, o = _float_int_traces(net, feats)
    for li, L in enumerate(b.layers):
        u_int = torch.round(o["mem"][li] * 2.0 ** L.u_frac).long().numpy()
        assert np.array_equal(u_int, d.u_trace[li]), f"layer {li}: membranes differ"
        assert np.array_equal(o["spikes"][li].long().numpy(), d.spikes[li]), f"layer {li}: spikes differ"
        h_int = torch.round(o["H"][li] * 4096).long().numpy()
        assert h_int.shape[0] == feats.shape[0]
    # and the bundle equals the golden model, bit for bit
    assert compare_with_golden(b, x) is None


@pytest.mark.parametrize("variant", ["HP", "GP", "LP"])
def test_variants_export_and_match_golden(variant):
    cfg = NetConfig(sizes=[16, 10, 3], variant=variant, timesteps=4)
    net = HybridNet(cfg, seed=1)
    _excite(net, 1)
    if variant == "GP":
        assert not any(L.opts.plastic for L in net.layers) and not net.meta_parameters()
    if variant == "LP":
        assert not net.layers[0].W.requires_grad and net.layers[1].W.requires_grad
    feats = np.random.default_rng(1).integers(0, 256, size=(5, 16)).astype(np.uint8)
    b, x, d, o = _float_int_traces(net, feats)
    assert np.array_equal(o["u"].argmax(-1).numpy(), d.predictions)
    assert compare_with_golden(b, x) is None
    assert all(not L.plastic and L.alpha == 0 for L in b.layers) if variant == "GP" else b.layers[0].plastic


def test_task_mask_export_semantics():
    cfg = NetConfig(sizes=[10, 8, 3], variant="HP", timesteps=4)
    net = HybridNet(cfg, seed=2)
    _excite(net, 2)
    M = (torch.rand(10, 8, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    net.layers[0].set_task_mask(M)
    feats = np.random.default_rng(2).integers(0, 256, size=(4, 10)).astype(np.uint8)
    b, x, d, o = _float_int_traces(net, feats)
    L0 = b.layers[0]
    assert np.array_equal(L0.hmask, 1 - M.numpy().astype(np.uint8))
    assert np.all(L0.W[M.numpy() == 0] == 0)
    u_int = torch.round(o["mem"][0] * 2.0 ** L0.u_frac).long().numpy()
    assert np.array_equal(u_int, d.u_trace[0])
    assert compare_with_golden(b, x) is None


def test_onchip_batch1_semantics_match_golden():
    cfg = NetConfig(sizes=[12, 9, 4], variant="HP", timesteps=4, plastic_layers="all")
    net = HybridNet(cfg, seed=3)
    _excite(net, 3)
    feats = np.random.default_rng(3).integers(0, 256, size=(7, 12)).astype(np.uint8)
    b = export_bundle(net, h_persist="never")
    assert all(L.h_persist == C.HPersist.NEVER for L in b.layers)
    x = encode_int(feats, net.cfg)
    g = golden.run(b, x)
    assert np.array_equal(predict_onchip(net, feats), g.predictions)
    assert compare_with_golden(b, x) is None
    # H really carried: the final H differs from H0
    assert not np.array_equal(g.h_final[0], b.layers[0].H0)


def test_bundle_roundtrip(tmp_path):
    net = HybridNet(NetConfig(sizes=[6, 5, 2], timesteps=3), seed=4)
    b = export_bundle(net, name="rt")
    save_bundle(b, tmp_path / "b")
    b2 = load_bundle(tmp_path / "b")
    x = encode_int(np.random.default_rng(0).integers(0, 256, (3, 6)).astype(np.uint8), net.cfg)
    assert np.array_equal(deploy_run(b, x).u_final[-1], deploy_run(b2, x).u_final[-1])


def test_surrogate_gradient_and_meta_gradients():
    cfg = NetConfig(sizes=[8, 6, 3], variant="HP", timesteps=4)
    net = HybridNet(cfg, seed=5)
    x = torch.rand(4, 4, 8)
    o = net(x, h_mode="shared")
    loss = mse_loss(o["u"], o["theta"], torch.tensor([0, 1, 2, 0]), 3)
    loss.backward()
    L0 = net.layers[0]
    assert L0.W.grad is not None and L0.W.grad.abs().sum() > 0
    assert L0.beta.grad is not None and L0.alpha.grad is not None and L0.eta.grad is not None
    # shared mode: one (A, N) H with the batch-mean update; sample mode: (B, A, N)
    assert o["H"][0].shape == (8, 6)
    assert net(x, h_mode="sample")["H"][0].shape == (4, 8, 6)


@pytest.mark.parametrize("sizes,plastic_layers", [([8, 6, 3], "all"), ([8, 6, 5, 3], "hidden")])
def test_no_qat_training_with_plastic_layer_on_spikes(sizes, plastic_layers):
    """qat=False, a plastic layer fed by spikes, H carried (shared): two steps train without an in-place
    error, and the forward never hands out the H buffer itself (the carry overwrites it)."""
    from plasticore.training.train import TrainConfig, make_optimizers, train_step

    cfg = TrainConfig(hidden=sizes[1:-1], timesteps=4, qat=False, plastic_layers=plastic_layers, batch_size=4,
                      h_mode="shared")
    net = HybridNet(cfg.net_config(sizes[0], sizes[-1]), seed=6)
    assert net.layers[1].opts.plastic  # takes the first layer's spikes
    _excite(net, 6)
    x, y = torch.rand(4, 4, sizes[0]), torch.tensor([0, 1, 2, 0])
    o = net(x, h_mode="shared", qat=False)
    assert all(h is not L.H for h, L in zip(o["H"], net.layers, strict=True) if L.opts.plastic)
    opts = make_optimizers(net, cfg)
    W1, H1 = net.layers[1].W.detach().clone(), net.layers[1].H.clone()
    losses = [train_step(net, net, opts, x, y, sizes[-1], cfg) for _ in range(2)]
    assert all(np.isfinite(losses))
    assert not torch.equal(net.layers[1].W.detach(), W1) and not torch.equal(net.layers[1].H, H1)


def test_lp_is_the_authors_lp():
    """LP: layer 0 entirely frozen (W, b, α, β, η get no gradient, run under no_grad) while its H learns
    by the local rule; the output layer is plastic and trains W, b, α, β, η."""
    net = HybridNet(NetConfig(sizes=[8, 6, 3], variant="LP", timesteps=4), seed=7)
    L0, L1 = net.layers
    assert L0.opts.plastic and L1.opts.plastic
    assert not any(p.requires_grad for p in L0.parameters())
    assert {id(p) for p in net.meta_parameters()} == {id(L1.alpha), id(L1.beta), id(L1.eta)}
    assert {id(p) for p in net.global_parameters()} == {id(L1.W), id(L1.b)}
    H0 = L0.H.clone()
    o = net(torch.rand(4, 4, 8), h_mode="shared", carry=True, record=True)
    assert not o["spikes"][0].requires_grad  # layer 0 ran without autograd
    mse_loss(o["u"], o["theta"], torch.tensor([0, 1, 2, 0]), 3).backward()
    assert all(p.grad is None for p in L0.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in (L1.W, L1.b, L1.beta))
    assert L1.alpha.grad is not None and L1.eta.grad is not None
    assert not torch.equal(L0.H, H0)  # local learning in the frozen layer


def test_loss_clamp_straight_through():
    """Same value as the authors' clamp(u/θ, max 1.1) MSE; an output saturated above the clamp still gets
    the gradient that pulls it down (the authors' hard clamp gives it none: the output clamp trap)."""
    u = torch.tensor([[0.2, 1.0, -0.1], [0.9, 0.05, 0.3]], requires_grad=True)  # u/θ: 0.57, 2.86 (> 1.1), ...
    y = torch.tensor([0, 0])
    st = mse_loss(u, 0.35, y, 3)
    hard = mse_loss(u, 0.35, y, 3, straight_through=False)
    assert torch.equal(st, hard)
    (g_st,) = torch.autograd.grad(st, u)
    (g_hard,) = torch.autograd.grad(hard, u)
    assert g_hard[0, 1] == 0 and g_st[0, 1] > 0  # wrong class stuck high: only straight-through pushes it down
    assert torch.equal(g_st[0, [0, 2]], g_hard[0, [0, 2]])


def test_authors_float_options_only_in_float_forward():
    """spike_ramp and exact λ/decay change the float (qat=False) forward and leave the QAT forward
    (= the integer contract) alone."""
    rule = {"lam_exact": 0.4, "decay_exact": 0.95}
    base = HybridNet(NetConfig(sizes=[8, 6, 3], timesteps=4, plastic_layers="all"), seed=8)
    auth = HybridNet(NetConfig(sizes=[8, 6, 3], timesteps=4, plastic_layers="all", rule=rule, spike_ramp=True),
                     seed=8)
    _excite(base, 8)
    auth.load_state_dict(base.state_dict())
    x = torch.rand(3, 4, 8, dtype=torch.float64)
    b64, a64 = base.double(), auth.double()
    assert torch.equal(b64(x, qat=True)["u"], a64(x, qat=True)["u"])
    assert not torch.equal(b64(x, qat=False)["u"], a64(x, qat=False)["u"])
    q = a64.layers[0].qparams(qat=False)
    assert q.lam == 0.4 and q.decay == 0.95
    assert a64.layers[0].qparams(qat=True).lam == 102 / 256
