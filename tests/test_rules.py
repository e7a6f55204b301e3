"""Rule programs (contract v2): parser, v1 equivalence, bundles v2, presets vs their hand-written
numpy forms, third factor / teaching inputs, and torch deploy == golden on random programs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plasticore import contract as C
from plasticore import golden, runs
from plasticore import rules as R
from plasticore.bundle import BUNDLE_VERSION, BundleError, copy_layer, load_bundle, save_bundle
from plasticore.sim.random_bundle import random_bundle, random_inputs, random_program, random_program_bundle
from plasticore.training.deploy import compare_with_golden, deploy_run, golden_h_trace

torch.set_num_threads(1)


def rsr(v, s):
    v = np.asarray(v, np.int64)
    return v if s == 0 else (v + (1 << (s - 1))) >> s


def sat(v, bits):
    return np.clip(v, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


# ------------------------------------------------------------------------------------------
# parser
# ------------------------------------------------------------------------------------------
def test_compile_example_rule():
    p = R.compile_rule("beta*x*lut(u) + c1*x*m", {"c1": 0.5}, x_frac=8, beta_frac=12)
    assert [(t.pre, t.post) for t in p.terms] == [(R.Pre.G, R.Post.LUT), (R.Pre.X, R.Post.M)]
    assert p.terms[0] == R.Term(R.Pre.G, R.Post.LUT, c=1, shift=12, c_shift=0)  # the v1 term
    t = p.terms[1]  # x (8 frac) * m (12 frac) -> shift 8; 0.5 = 16384 * 2^-15
    assert (t.shift, t.c, t.c_shift) == (8, 16384, 15)


def test_numbers_powers_and_signs():
    p = R.compile_rule("-2^-3*x*s + 0.25*ytr - xtr", x_frac=0)
    assert [t.pre for t in p.terms] == [R.Pre.X, R.Pre.ONE, R.Pre.XTR]
    reals = [t.c * 2.0 ** -t.c_shift * 2.0 ** (R.term_scales(t.pre, t.post, 0, 0, 0)[1] - C.H_FRAC)
             for t in p.terms]
    assert reals == [-0.125, 0.25, -1.0]


@pytest.mark.parametrize("rule,needle", [
    ("beta*x*lut(u) + c1*x*m", "'c1' at position 16"),
    ("x*y", "'y' at position 2"),
    ("x**m", "'*' at position 2"),
    ("lut(v)", "'lut' at position 0"),
    ("x+", "'end of rule' at position 2"),
    ("x*xtr", "'xtr' at position 2"),
    ("s*ytr", "'ytr' at position 2"),
    ("x*x", "'x' at position 2"),
    ("x m", "'m' at position 2"),
    ("x # m", "'#' at position 2"),
    ("1+x+s+m+xtr", "'xtr' at position 8"),
    ("2^*x", "'*' at position 2"),
])
def test_bad_rules_name_the_token(rule, needle):
    with pytest.raises(R.RuleError) as e:
        R.compile_rule(rule)
    assert needle in str(e.value) and rule in str(e.value)


def test_coefficient_too_large_is_an_error():
    with pytest.raises(R.RuleError, match="too large"):
        R.compile_rule("1e6*x*s")


# ------------------------------------------------------------------------------------------
# v1 == the one-term program
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(12))
def test_v1_fast_path_equals_generic_program(seed, monkeypatch):
    """The golden model's v1 int32 path and the generic program path give equal results."""
    rng = np.random.default_rng(300 + seed)
    b = random_bundle(rng)
    x = random_inputs(rng, b, samples=3, mode=("random", "all", "silent")[seed % 3])
    fast = golden.run(b, x, record_membranes=True)
    monkeypatch.setattr(R, "v1_form", lambda prog: None)  # every layer through program_dh
    slow = golden.run(b, x, record_membranes=True)
    for li in range(len(b.layers)):
        assert np.array_equal(fast.u_trace[li], slow.u_trace[li]), f"layer {li} u"
        assert np.array_equal(fast.h_final[li], slow.h_final[li]), f"layer {li} H"


def test_v1_saturation_corner_is_exact(monkeypatch):
    """|g*f| near 2^30 with dh_shift 0: the v2 sat18 terms clip to the same H as v1."""
    rng = np.random.default_rng(5)
    b = random_bundle(rng, sizes=[6, 5], timesteps=3, edges=["clamp"], coding="direct")
    L = b.layers[0]
    L.plastic, L.dh_shift = True, 0
    x = random_inputs(rng, b, samples=2, mode="all")
    fast = golden.run(b, x)
    monkeypatch.setattr(R, "v1_form", lambda prog: None)
    assert np.array_equal(golden.run(b, x).h_final[0], fast.h_final[0])


def _as_v1_file(path):
    d = json.loads((path / "bundle.json").read_text())
    d["version"] = 1
    for ld in d["layers"]:
        del ld["rule"]
        for q in C.LAYER_PARAMS:  # parameters newer than version 1
            if q.since > 1:
                del ld[q.name]
    (path / "bundle.json").write_text(json.dumps(d))


@pytest.mark.parametrize("seed", range(8))
def test_v1_bundle_loads_as_v2_and_runs_identically(seed, tmp_path):
    rng = np.random.default_rng(400 + seed)
    b = random_bundle(rng)
    for L in b.layers:  # what a v1 bundle can say
        L.u_reset = 0
    x = random_inputs(rng, b, samples=3)
    ref = runs.result_to_npz_dict(golden.run(b, x), "a")
    save_bundle(b, tmp_path / "b")
    _as_v1_file(tmp_path / "b")
    b1 = load_bundle(tmp_path / "b")  # a v1 file
    assert all(L.program == R.v1_program(L.hebb_sign, L.dh_shift) for L in b1.layers)
    assert runs.compare_results(ref, runs.result_to_npz_dict(golden.run(b1, x), "b")) is None
    save_bundle(b1, tmp_path / "c")  # written in the current version: the explicit program
    assert json.loads((tmp_path / "c" / "bundle.json").read_text())["version"] == BUNDLE_VERSION
    b2 = load_bundle(tmp_path / "c")
    assert all(L.rule is not None for L in b2.layers)
    assert runs.compare_results(ref, runs.result_to_npz_dict(golden.run(b2, x), "c")) is None


def test_v2_round_trip_and_bad_rule_fields(tmp_path):
    rng = np.random.default_rng(9)
    b = random_program_bundle(rng, sizes=[5, 4, 3])
    save_bundle(b, tmp_path / "b")
    b2 = load_bundle(tmp_path / "b")
    assert [L.rule for L in b2.layers] == [L.rule for L in b.layers]
    d = json.loads((tmp_path / "b" / "bundle.json").read_text())
    for edit, needle in [(lambda d: d["layers"][1]["rule"]["terms"][0].update(pre="y"), "layers[1].rule.terms[0]"),
                         (lambda d: d["layers"][0]["rule"]["terms"][0].update(c=1 << 20), "terms[0].c"),
                         (lambda d: d["layers"][0]["rule"].update(m_kind="boss"), "m_kind"),
                         (lambda d: d["layers"][0]["rule"].update(terms=[]), "0 terms"),
                         (lambda d: d["layers"][0].pop("rule"), "missing field 'rule'")]:
        dd = json.loads(json.dumps(d))
        edit(dd)
        (tmp_path / "b" / "bundle.json").write_text(json.dumps(dd))
        with pytest.raises(BundleError, match=None) as e:
            load_bundle(tmp_path / "b")
        assert needle in str(e.value)


# ------------------------------------------------------------------------------------------
# third factor and teaching inputs
# ------------------------------------------------------------------------------------------
def test_expand_per_step_shapes_and_errors():
    S, T, N = 3, 4, 5
    assert R.expand_per_step(np.arange(S), S, T, N, "m0").shape == (S, T, N)
    a = R.expand_per_step(np.arange(S * N).reshape(S, N), S, T, N, "m0")
    assert np.array_equal(a[:, 2], np.arange(S * N).reshape(S, N))
    assert R.expand_per_step(np.ones((S, T, 1), np.int64), S, T, N, "m0").shape == (S, T, N)
    with pytest.raises(R.RuleError, match="m1: shape"):
        R.expand_per_step(np.ones((S, 7), np.int64), S, T, N, "m1")
    with pytest.raises(R.RuleError, match="m1: values"):
        R.expand_per_step(np.full((S, N), 1 << 20, np.int64), S, T, N, "m1")
    assert np.array_equal(R.label_m([2, 0], 3), [[0, 0, 4096], [4096, 0, 0]])


def test_teach_current_reaches_golden_and_deploy():
    rng = np.random.default_rng(3)
    b = random_bundle(rng, sizes=[8, 6, 4], timesteps=4, allow_ann=False)
    x = random_inputs(rng, b, samples=3)
    big = np.zeros((3, 4), np.int64)
    big[:, 2] = C.smax(C.U_BITS)
    r = golden.run(b, x, teach=big)
    assert np.all(r.predictions == 2) and np.all(r.spikes[-1][:, :, 2] == 1)
    assert compare_with_golden(b, x, teach=big) is None
    d0 = golden.run(b, x, teach=np.zeros((3,), np.int64))
    assert np.array_equal(d0.u_final[-1], golden.run(b, x).u_final[-1])


# ------------------------------------------------------------------------------------------
# presets, each against its hand-written numpy form (one step from a random state)
# ------------------------------------------------------------------------------------------
def _preset_case(name, seed, coding="rate"):
    rng = np.random.default_rng(seed)
    b = random_bundle(rng, sizes=[7, 6], timesteps=1, coding=coding, allow_ann=False, edges=["none"])
    L = R.apply_preset(b.layers[0], name)
    A, N = L.n_in, L.n_out
    H = rng.integers(-L.h_clamp, L.h_clamp + 1, size=(A, N))
    u = rng.integers(-3 * L.theta, 3 * L.theta, size=N)
    s_prev = rng.integers(0, 2, size=N)
    x = random_inputs(rng, b, 1)[0, 0]
    st = golden.LayerState(u=u[None], s=s_prev[None], H=H[None], xtr=rng.integers(0, 3000, size=(1, A)),
                           ytr=rng.integers(0, 3000, size=(1, N)))
    t = rng.integers(-4096, 4097, size=N)
    p = golden.layer_params(L)
    new, rec = golden.layer_step(p, st, x[None], t[None])
    z = rsr(new.u[0] * L.recip, L.recip_shift) - L.eta.astype(np.int64)
    f = L.lut[np.clip(z, -256, 255) + 256].astype(np.int64)
    g = sat(rsr(L.beta.astype(np.int64) * x, L.x_frac), 16)
    return L, x, new, st, t, f, g, H


def _c(coef, p_frac):
    """Hand quantisation of a real coefficient for a term whose product has p_frac fraction bits."""
    cf = int(np.floor(np.log2(32767 / abs(coef))))
    return int(np.floor(coef * 2.0 ** cf + 0.5)), cf + p_frac - 12


def _finish(L, H, dh):
    return np.clip(rsr(H * L.decay, 8) + sat(dh, 18), -L.h_clamp, L.h_clamp)


@pytest.mark.parametrize("seed", range(3))
def test_preset_authors_simple(seed):
    L, x, new, st, t, f, g, H = _preset_case("simple", seed)
    assert L.h_clamp == 16384 and np.array_equal(L.lut, C.make_lut("tanh"))
    want = np.clip(rsr(H * L.decay, 8) + rsr(g[:, None] * f[None, :], L.dh_shift), -16384, 16384)
    assert np.array_equal(new.H[0], want)


@pytest.mark.parametrize("seed", range(3))
def test_preset_authors_classification(seed):
    L, x, new, st, t, f, g, H = _preset_case("classification", seed)
    assert L.h_clamp == 8192 and np.array_equal(L.lut, C.make_lut("identity"))
    want = np.clip(rsr(H * L.decay, 8) - rsr(g[:, None] * f[None, :], L.dh_shift), -8192, 8192)
    assert np.array_equal(new.H[0], want)


@pytest.mark.parametrize("seed", range(3))
def test_preset_authors_fmnist(seed):
    L, x, new, st, t, f, g, H = _preset_case("fmnist", seed)
    assert L.reset == C.ResetMode.HARD and L.beta.min() >= 0
    want = np.clip(rsr(H * L.decay, 8) + rsr(g[:, None] * f[None, :], L.dh_shift), -16384, 16384)
    assert np.array_equal(new.H[0], want)
    v = np.where(st.s[0] != 0, 0, st.u[0])  # hard reset
    assert np.array_equal(new.u[0], np.clip(rsr(v * L.lam, 8) + rec_current(L, st, x), -(1 << 23), (1 << 23) - 1))


def rec_current(L, st, x):
    p = golden.layer_params(L)
    accW, accH = golden.dendrite(x[None], p["Wf"], st.H, None if p["hmask_all"] else p["hmask"])
    return golden.soma_current(accW, accH, p)[0]


def test_preset_authors_fewshot_with_teaching():
    rng = np.random.default_rng(11)
    b = random_bundle(rng, sizes=[9, 4], timesteps=3, coding="rate", allow_ann=False, edges=["none"])
    b.layers[0] = R.apply_preset(b.layers[0], "fewshot")
    L = b.layers[0]
    assert L.decay == 256 and R.PRESETS["fewshot"].teach
    x = random_inputs(rng, b, 1)
    teach = np.zeros((1, 4), np.int64)
    teach[0, 1] = C.smax(C.U_BITS) // 2
    r = golden.run(b, x, teach=teach, record_membranes=True)
    H = L.H0.astype(np.int64)
    for t in range(3):  # hand form: the teaching current drives neuron 1, Hebbian beta*x*tanh
        u = r.u_trace[0][0, t].astype(np.int64)
        f = L.lut[np.clip(rsr(u * L.recip, L.recip_shift) - L.eta.astype(np.int64), -256, 255) + 256].astype(np.int64)
        g = sat(rsr(L.beta.astype(np.int64) * x[0, t], 0), 16)
        H = np.clip(H + rsr(g[:, None] * f[None, :], L.dh_shift), -16384, 16384)
    assert np.array_equal(r.h_final[0], H)
    assert r.spikes[0][0, :, 1].all()


@pytest.mark.parametrize("seed", range(3))
def test_preset_stdp(seed):
    L, x, new, st, t, f, g, H = _preset_case("stdp", seed)
    s = new.s[0]
    xtr = sat(rsr(st.xtr[0] * 205, 8) + (x << 8), 16)  # spikes add 1.0 = 256
    ytr = sat(rsr(st.ytr[0] * 205, 8) + (s << 8), 16)
    cp, csp = _c(0.01, 8)  # xtr (8 frac) * s (0)
    cm, csm = _c(-0.012, 8)  # x (0) * ytr (8)
    dh = rsr(cp * sat(xtr[:, None] * s[None, :], 18), csp) + rsr(cm * sat(x[:, None] * ytr[None, :], 18), csm)
    assert np.array_equal(new.xtr[0], xtr) and np.array_equal(new.ytr[0], ytr)
    assert np.array_equal(new.H[0], _finish(L, H, dh))


@pytest.mark.parametrize("seed", range(3))
def test_preset_fireflyp(seed):
    L, x, new, st, t, f, g, H = _preset_case("fireflyp", seed)
    s = new.s[0]
    a, b, c = (_c(v, 0) for v in (0.01, -0.002, -0.001))  # spikes: every product has 0 frac bits
    dh = (rsr(a[0] * (x[:, None] * s[None, :]), a[1]) + rsr(b[0] * np.ones((len(x), 1)) * s[None, :], b[1])
          + rsr(c[0] * x[:, None] * np.ones((1, len(s))), c[1]) + 0)
    assert np.array_equal(new.H[0], _finish(L, H, dh.astype(np.int64)))


@pytest.mark.parametrize("seed", range(3))
def test_preset_reward_hebb(seed):
    L, x, new, st, t, f, g, H = _preset_case("reward_hebb", seed)
    s = new.s[0]
    c, cs = _c(0.01, 12)  # x (0) * (m*s) (12)
    ms = sat(t * s, 16)
    assert np.array_equal(new.H[0], _finish(L, H, rsr(c * sat(x[:, None] * ms[None, :], 18), cs)))


@pytest.mark.parametrize("coding", ["rate", "direct"])
def test_preset_prototype(coding):
    L, x, new, st, t, f, g, H = _preset_case("prototype", 21, coding)
    c, cs = _c(0.01, 12)
    p = sat(rsr(x[:, None] * t[None, :], L.x_frac), 18)  # x (x_frac) * m (12) -> 12 frac
    assert L.decay == 256
    assert np.array_equal(new.H[0], _finish(L, H, rsr(c * p, cs)))


def test_preset_delta_forms_the_error_on_chip():
    L, x, new, st, t, f, g, H = _preset_case("delta", 22)
    c, cs = _c(0.01, 12)
    m = sat(t - f, 16)  # target minus the identity table of z = u/theta - eta
    assert np.array_equal(L.lut, C.make_lut("identity"))
    assert np.array_equal(new.H[0], _finish(L, H, rsr(c * sat(x[:, None] * m[None, :], 18), cs)))


def test_every_preset_has_a_test():
    import sys

    names = {n[len("test_preset_"):] for n in dir(sys.modules[__name__]) if n.startswith("test_preset_")}
    names = {n.removeprefix("authors_").replace("_with_teaching", "").replace("_forms_the_error_on_chip", "")
             for n in names}
    assert set(R.PRESETS) <= names


# ------------------------------------------------------------------------------------------
# deploy == golden on random programs, H compared at every step
# ------------------------------------------------------------------------------------------
def _compare_h_traces(b, x, m, teach):
    d = deploy_run(b, x, record_h=True, m=m, teach=teach)
    g = golden_h_trace(b, x, m=m, teach=teach)
    for li in range(len(b.layers)):
        if not np.array_equal(d.h_trace[li], g[li]):
            s, t, i, j = (int(v) for v in np.argwhere(d.h_trace[li] != g[li])[0])
            return (f"layer {li} step {t} (sample {s}) H[{i}, {j}]: deploy {d.h_trace[li][s, t, i, j]} "
                    f"vs golden {g[li][s, t, i, j]}")
    return compare_with_golden(b, x, m=m, teach=teach)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), samples=st.integers(1, 4), m_shape=st.sampled_from(["sample", "step", "reward"]))
def test_deploy_equals_golden_random_programs(seed, samples, m_shape):
    rng = np.random.default_rng(seed)
    b = random_program_bundle(rng, sizes=[int(rng.integers(1, 10)) for _ in range(int(rng.integers(2, 4)))])
    x = random_inputs(rng, b, samples=samples, mode=str(rng.choice(["random", "all", "silent"])))
    T = b.timesteps
    shp = {"sample": lambda n: (samples, n), "step": lambda n: (samples, T, n), "reward": lambda n: (samples,)}[m_shape]
    m = {li: rng.integers(-8000, 8001, size=shp(L.n_out)) for li, L in enumerate(b.layers) if rng.random() < 0.8}
    teach = rng.integers(-2 * b.layers[-1].theta, 2 * b.layers[-1].theta + 1, size=(samples, T, b.n_out))
    assert _compare_h_traces(b, x, m, teach if rng.random() < 0.5 else None) is None


def test_random_programs_cover_every_factor():
    rng = np.random.default_rng(0)
    b = random_bundle(rng, sizes=[4, 3])
    seen = set()
    for _ in range(200):
        p = random_program(rng, b.layers[0])
        seen |= {t.pre for t in p.terms} | {t.post for t in p.terms} | {p.m_kind}
    assert set(R.Pre) | set(R.Post) | set(R.MKind) <= seen


def test_program_layers_change_h_at_all():
    """The comparison above is not vacuous: random programs do move H."""
    moved = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        b = random_program_bundle(rng, sizes=[6, 5], timesteps=3)
        b.layers[0].plastic = True
        x = random_inputs(rng, b, 2)
        r = golden.run(b, x, m={0: rng.integers(-4096, 4097, size=(2, 5))})
        moved += int(not np.array_equal(r.h_final[0], b.layers[0].H0))
    assert moved >= 10


def test_copy_layer_keeps_rule():
    rng = np.random.default_rng(1)
    b = random_program_bundle(rng, sizes=[3, 2])
    assert copy_layer(b.layers[0]).rule == b.layers[0].rule


def test_golden_cli_reads_m_and_teach(tmp_path):
    from plasticore.app.cli import main

    rng = np.random.default_rng(2)
    b = random_program_bundle(rng, sizes=[5, 4, 3], timesteps=3, coding="rate")
    save_bundle(b, tmp_path / "b")
    x = random_inputs(rng, b, 4)
    m1 = rng.integers(-4096, 4097, size=(4, 3))
    teach = rng.integers(-500, 500, size=(4, 3, 3))
    np.savez(tmp_path / "in.npz", x=x, m1=m1, teach=teach)
    assert main(["golden", "run", "--bundle", str(tmp_path / "b"), "--inputs", str(tmp_path / "in.npz"),
                 "--out", str(tmp_path / "r.npz")]) == 0
    want = runs.result_to_npz_dict(golden.run(b, x, m={1: m1}, teach=teach), "golden")
    assert runs.compare_results(dict(np.load(tmp_path / "r.npz")), want) is None
    np.savez(tmp_path / "bad.npz", x=x, m1=np.zeros((4, 7), np.int64))
    assert main(["golden", "run", "--bundle", str(tmp_path / "b"), "--inputs", str(tmp_path / "bad.npz"),
                 "--out", str(tmp_path / "r2.npz")]) == 2
    assert not (tmp_path / "r2.npz").exists()


def test_host_compiler_refuses_programs_the_v1_lpu_cannot_run():
    rng = np.random.default_rng(4)
    b = random_bundle(rng, sizes=[4, 3], timesteps=2)
    L = b.layers[0]
    L.plastic = True
    assert R.lpu_v1_registers(L) == (L.hebb_sign, L.dh_shift)
    L.rule = R.compile_rule("c*x*m", {"c": 0.1})
    with pytest.raises(R.RuleError, match="c\\*x\\*m"):
        R.lpu_v1_registers(L)
