"""torch executes rule programs: the float64 quantisation-aware forward equals the exported integer
program (torch deploy mode, == golden) bit for bit, and the coefficients are meta-learnable."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from plasticore import rules as R
from plasticore.training.deploy import compare_with_golden, deploy_run
from plasticore.training.export import export_bundle
from plasticore.training.model import HybridNet, NetConfig
from plasticore.training.train import encode_int, to_real

torch.set_num_threads(1)

RULES = [
    ("beta*x*lut(u) + c1*x*m", {"c1": 0.3}, "direct"),
    ("a_plus*xtr*s - a_minus*x*ytr", {"a_plus": 0.2, "a_minus": 0.25}, "direct"),
    ("a*x*s + b*s + c*x + d", {"a": 0.1, "b": -0.02, "c": -0.01, "d": 0.001}, "direct"),
    ("c*x*m*s", {"c": 0.2}, "direct"),
    ("c*x*m", {"c": 0.3}, "error"),
    ("c*beta*m*lut(u) - 2^-3*xtr*m*ytr + beta", {"c": 0.5}, "direct"),
]


@pytest.mark.parametrize("k", range(len(RULES)))
@pytest.mark.parametrize("coding", ["direct", "rate"])
def test_qat_forward_equals_integer_program(k, coding):
    text, coefs, m_kind = RULES[k]
    rule = {"rule": text, "coefs": coefs, "m_kind": m_kind, "pre_decay": 200, "post_decay": 180, "decay": 250}
    cfg = NetConfig(sizes=[10, 7, 4], variant="HP", timesteps=5, coding=coding, plastic_layers="all", rule=rule)
    net = HybridNet(cfg, seed=k)
    g = torch.Generator().manual_seed(k)
    with torch.no_grad():
        for L in net.layers:
            L.W.mul_(3.0)
            L.alpha.fill_(float(torch.empty(()).uniform_(-1.5, 1.5, generator=g)))
            L.beta.copy_(torch.empty(L.n_in).uniform_(-2, 2, generator=g))
            L.eta.copy_(torch.empty(L.n_out).uniform_(-1, 1, generator=g))
            L.H.copy_(torch.empty(L.n_in, L.n_out).uniform_(-1, 1, generator=g))
    rng = np.random.default_rng(k)
    feats = rng.integers(0, 256, size=(5, 10)).astype(np.uint8)
    b = export_bundle(net)
    assert all(L.rule is not None and L.rule.m_kind == m_kind for L in b.layers)
    x = encode_int(feats, cfg)
    m_int = {li: rng.integers(-6000, 6001, size=(5, 5, L.n_out)) for li, L in enumerate(b.layers)}
    d = deploy_run(b, x, record=True, record_h=True, m=m_int)
    m64 = copy.deepcopy(net).double()
    with torch.no_grad():
        o = m64(to_real(x, cfg, torch.float64), h_mode="sample", record=True,
                m={li: torch.as_tensor(v / 4096.0) for li, v in m_int.items()})
    for li, L in enumerate(b.layers):
        u_int = torch.round(o["mem"][li] * 2.0 ** L.u_frac).long().numpy()
        assert np.array_equal(u_int, d.u_trace[li]), f"layer {li}: membranes differ"
        h_int = torch.round(o["H"][li] * 4096).long().numpy()
        want = d.h_trace[li][:, -1]
        assert np.array_equal(h_int, want), f"layer {li}: H differs at {np.argwhere(h_int != want)[:1]}"
    assert compare_with_golden(b, x, m=m_int) is None


def test_rule_coefficients_beta_eta_get_gradients():
    cfg = NetConfig(sizes=[6, 5, 3], timesteps=4, plastic_layers="all",
                    rule={"rule": "beta*x*lut(u) + c1*x*m*s + c2*xtr*lut(u)", "coefs": {"c1": 0.2, "c2": 0.1}})
    net = HybridNet(cfg, seed=0)
    with torch.no_grad():
        for L in net.layers:
            L.W.mul_(4.0)
            L.alpha.fill_(1.0)
            L.beta.fill_(0.5)
    assert any(p is L.rule_c for L in net.layers for p in net.meta_parameters())
    x = torch.rand(4, 4, 6)
    o = net(x, m={1: torch.ones(4, 3)}, teach=torch.ones(4, 3))
    o2 = net(x, H=o["H"], m={1: torch.ones(4, 3)})
    o2["u"].pow(2).sum().backward()
    L0, L1 = net.layers
    assert L1.rule_c.grad is not None and L1.rule_c.grad.abs().sum() > 0
    assert L1.beta.grad.abs().sum() > 0 and L1.eta.grad.abs().sum() > 0 and L0.W.grad.abs().sum() > 0


def test_rule_program_compiles_learned_coefficients():
    cfg = NetConfig(sizes=[4, 3], timesteps=2, plastic_layers="all", rule={"rule": "c*x*m", "coefs": {"c": 0.1}})
    net = HybridNet(cfg, seed=0)
    with torch.no_grad():
        net.layers[0].rule_c.fill_(-0.37)
    p = net.layers[0].rule_program()
    t = p.terms[0]
    assert (t.pre, t.post) == (R.Pre.X, R.Post.M)
    assert abs(t.c * 2.0 ** -t.c_shift * 2.0 ** (R.term_scales(t.pre, t.post, 8, 0, 0)[1] - 12) + 0.37) < 1e-4
