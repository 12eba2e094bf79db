"""Unlearning (``optlib.unlearning``) and its benchmark (``scale.bench.unlearning``): the K-FADE step against a dense
solve of the K-FAC matrix, gradient ascent against autograd, the delta's re-application, the metrics against
hand computations, errors on bad input, and the CLI. The theorems are in ``tests/theorems/test_unlearning_bounds.py``.
No timing is asserted."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optlib.curvature import EKFAC, KFAC, Damping
from optlib.linalg import FactorizationError, NonPSDCurvatureError
from optlib.unlearning import (
    METHODS,
    UnlearningDelta,
    accuracy,
    forget_loss,
    gradient_ascent,
    kfade,
    newton_unlearning,
    output_kl,
    retain_kl,
    retrain,
    unlearn,
)

ROOT = Path(__file__).resolve().parents[1]


def small_mlp(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4)).to(dtype)


def toy_data(n=80, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g, dtype=dtype)
    y = torch.randint(0, 4, (n,), generator=g)
    return x, y


@pytest.fixture(scope="module")
def setup():
    x, y = toy_data()
    model = retrain(small_mlp(), (x, y), epochs=60, lr=0.05)
    forget = (x[:12], y[:12])
    retain = (x[12:], y[12:])
    return model, forget, retain


def flat_params(model, names):
    named = dict(model.named_parameters())
    return torch.cat([named[n].detach().reshape(-1) for n in names])


def forget_grad(model, forget, names):
    """Gradient of the mean forget cross-entropy (plain autograd, for reference)."""
    named = dict(model.named_parameters())
    loss = F.cross_entropy(model(forget[0]), forget[1])
    gs = torch.autograd.grad(loss, [named[n] for n in names])
    return torch.cat([g.reshape(-1) for g in gs])


# ------------------------------------------------------------------------------------------------ steps


@pytest.mark.parametrize("kind", [KFAC, EKFAC])
def test_kfade_step_is_damped_kronecker_solve(setup, kind):
    """One K-FADE step with a fixed lr equals lr (G + lambda I)^{-1} g with G the operator's dense matrix and a
    dense float64 solve (so the parameter order and the solve are right)."""
    model, forget, retain = setup
    G = kind(model, "cross_entropy", None, [retain], fisher_type="type2")
    names = G.names
    lam, lr = 1e-2, 0.3
    g = forget_grad(model, forget, names)
    expected = lr * torch.linalg.solve(G.to_dense() + lam * torch.eye(G.n, dtype=torch.float64), g)
    m = copy.deepcopy(model)
    theta0 = flat_params(m, names)
    delta = kfade(m, forget, G, lr=lr, damping=lam)
    torch.testing.assert_close(flat_params(m, names) - theta0, expected, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(delta.flat(), expected, rtol=1e-8, atol=1e-10)


def test_kfade_trust_region_records(setup):
    """Each K-FADE step sits on the damped budget (model_kl = eps), the forget loss rises every step, and the
    monitored retain KL is the KL of the final model (checked against output_kl)."""
    model, forget, retain = setup
    G = KFAC(model, "cross_entropy", None, [retain], fisher_type="type2")
    m = copy.deepcopy(model)
    eps = 2e-3
    delta = kfade(m, forget, G, steps=3, kl_budget=eps, damping=1e-3, retain_data=retain,
                  monitor=lambda mm: {"acc": accuracy(mm, retain)})
    assert delta.steps == 3 and delta.method == "kfade"
    np.testing.assert_allclose(delta.trace.column("model_kl")[1:], eps, rtol=1e-9)
    assert np.all(np.diff(delta.forget_loss) > 0)
    assert delta.retain_kl[0] == 0.0
    assert delta.retain_kl[-1] == pytest.approx(retain_kl(model, m, retain), rel=1e-10)
    assert "acc" in delta.trace[-1]
    assert delta.info["kl_budget"] == eps and delta.info["curvature"] == "KFAC"


def test_gradient_ascent_step_is_lr_times_gradient(setup):
    """Two gradient-ascent steps equal theta + lr g(theta) twice, g from plain autograd."""
    model, forget, _ = setup
    names = [n for n, _ in model.named_parameters()]
    ref = copy.deepcopy(model)
    for _ in range(2):
        g = forget_grad(ref, forget, names)
        with torch.no_grad():
            off = 0
            for p in ref.parameters():
                p.add_(0.5 * g[off:off + p.numel()].view_as(p))
                off += p.numel()
    m = copy.deepcopy(model)
    delta = gradient_ascent(m, forget, lr=0.5, steps=2)
    torch.testing.assert_close(flat_params(m, names), flat_params(ref, names), rtol=1e-12, atol=1e-12)
    assert delta.forget_loss[-1] > delta.forget_loss[0]


def test_params_restrict_the_update(setup):
    """Only the named parameters move; the others keep their values."""
    model, forget, _ = setup
    m = copy.deepcopy(model)
    delta = gradient_ascent(m, forget, lr=0.5, params=["2.weight"])
    assert list(delta.deltas) == ["2.weight"]
    for n, p in m.named_parameters():
        same = torch.equal(p, dict(model.named_parameters())[n])
        assert same == (n != "2.weight"), n


def test_unlearn_dispatches_by_name(setup):
    model, forget, retain = setup
    G = KFAC(model, "cross_entropy", None, [retain], fisher_type="type2")
    a = unlearn("kfade", copy.deepcopy(model), forget, retain_curvature=G, kl_budget=1e-3)
    b = kfade(copy.deepcopy(model), forget, G, kl_budget=1e-3)
    torch.testing.assert_close(a.flat(), b.flat())
    c = unlearn("gradient-ascent", copy.deepcopy(model), forget, lr=0.1)
    assert c.method == "gradient-ascent"
    assert set(METHODS) == {"kfade", "gradient-ascent", "newton"}
    with pytest.raises(ValueError, match="did you mean 'gradient-ascent'"):
        unlearn("gradient_ascent", copy.deepcopy(model), forget, lr=0.1)


def test_grad_norm_damping_is_passed_through(setup):
    """A Damping('grad_norm') reaches the operator with the gradient: lambda = sqrt(c ||g_l||) per layer."""
    model, forget, retain = setup
    G = KFAC(model, "cross_entropy", None, [retain], fisher_type="type2")
    m = copy.deepcopy(model)
    d = kfade(m, forget, G, lr=0.1, damping=Damping("grad_norm", c=1.0))
    g = forget_grad(model, forget, G.names)
    expected = 0.1 * G.solve(g, damping=Damping("grad_norm", c=1.0), grad=g)
    torch.testing.assert_close(d.flat(), expected)


# ------------------------------------------------------------------------------------------------ the delta


def test_delta_reapplies_and_undoes(setup):
    """apply() adds the delta to another copy of theta_0 (same result as the run), apply(scale=-1) undoes it,
    and the state_dict round trip keeps deltas and records."""
    model, forget, retain = setup
    G = KFAC(model, "cross_entropy", None, [retain], fisher_type="type2")
    m = copy.deepcopy(model)
    delta = kfade(m, forget, G, steps=2, kl_budget=1e-3)
    other = delta.apply(copy.deepcopy(model))
    for (n, p), q in zip(m.named_parameters(), other.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-14, msg=n)
    delta.apply(other, scale=-1.0)
    for p, q in zip(model.parameters(), other.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-14)
    back = UnlearningDelta.from_state_dict(delta.state_dict())
    torch.testing.assert_close(back.flat(), delta.flat())
    assert back.trace.records == delta.trace.records and back.method == "kfade"
    assert delta.scaled(2.0).norm() == pytest.approx(2 * delta.norm())


def test_delta_apply_rejects_mismatched_models(setup):
    model, forget, _ = setup
    delta = gradient_ascent(copy.deepcopy(model), forget, lr=0.1)
    with pytest.raises(ValueError, match="no parameter"):
        delta.apply(nn.Sequential(nn.Linear(6, 4)).double())
    wide = nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 4)).double()
    with pytest.raises(ValueError, match="shape mismatch"):
        delta.apply(wide)
    with pytest.raises(ValueError, match="finite"):
        delta.apply(copy.deepcopy(model), scale=math.nan)


# ------------------------------------------------------------------------------------------------ metrics


def test_metrics_against_hand_computation():
    """forget_loss leaves out targets -1 (sequence data, class dimension last); output_kl is the mean KL over
    the kept positions, computed here by hand."""
    torch.manual_seed(1)
    p_net, q_net = nn.Linear(3, 5).double(), nn.Linear(3, 5).double()
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    y = torch.randint(0, 5, (2, 7))
    y[0, :3] = -1
    keep = y != -1
    with torch.no_grad():
        zp, zq = p_net(x)[keep], q_net(x)[keep]
    nll = -torch.log_softmax(zp, -1)[torch.arange(keep.sum()), y[keep]].mean()
    assert forget_loss(p_net, (x, y)) == pytest.approx(float(nll), rel=1e-12)
    lp, lq = torch.log_softmax(zp, -1), torch.log_softmax(zq, -1)
    kl = (lp.exp() * (lp - lq)).sum(-1).mean()
    assert output_kl(p_net, q_net, [(x, y)]) == pytest.approx(float(kl), rel=1e-12)
    assert output_kl(p_net, p_net, (x, y)) == 0.0


def test_retrain_lbfgs_matches_reference_optimum():
    """retrain(optimizer='lbfgs') on softmax regression reaches the optimum of mean CE + mu/2 ||W||^2: the
    gradient of that objective (autograd, at the result) is below 1e-6."""
    x, y = toy_data(n=60, seed=2)
    lin = nn.Linear(6, 4, bias=False).double()
    mu = 0.1
    fit = retrain(lin, (x, y), optimizer="lbfgs", epochs=10, lr=1.0, weight_decay=mu)
    W = fit.weight.detach().clone().requires_grad_(True)
    obj = F.cross_entropy(x @ W.T, y) + 0.5 * mu * (W * W).sum()
    (g,) = torch.autograd.grad(obj, W)
    assert float(g.norm()) < 1e-6
    assert not torch.equal(lin.weight, fit.weight)  # init left untouched


# ------------------------------------------------------------------------------------------------ bad input


def test_errors_name_the_problem(setup):
    model, forget, retain = setup
    G = KFAC(model, "cross_entropy", None, [retain], fisher_type="type2")
    m = copy.deepcopy(model)
    empty = (forget[0][:0], forget[1][:0])
    with pytest.raises(ValueError, match="empty"):
        kfade(m, empty, G, kl_budget=1e-3)
    with pytest.raises(ValueError, match="empty"):
        gradient_ascent(m, [], lr=0.1)
    with pytest.raises(ValueError, match="ignored"):
        gradient_ascent(m, (forget[0], torch.full_like(forget[1], -1)), lr=0.1)
    with pytest.raises(ValueError, match="unknown unlearning method 'ascent'.*kfade, gradient-ascent, newton"):
        unlearn("ascent", m, forget)
    with pytest.raises(ValueError, match="exactly one"):
        kfade(m, forget, G, kl_budget=1e-3, lr=0.1)
    with pytest.raises(ValueError, match="exactly one"):
        kfade(m, forget, G)
    with pytest.raises(ValueError, match="kl_budget"):
        kfade(m, forget, G, kl_budget=-1.0)
    with pytest.raises(ValueError, match="steps"):
        kfade(m, forget, G, kl_budget=1e-3, steps=0)
    with pytest.raises(ValueError, match="unknown loss"):
        gradient_ascent(m, forget, lr=0.1, loss="hinge")
    with pytest.raises(ValueError, match="unknown damping mode"):
        kfade(m, forget, G, kl_budget=1e-3, damping="big")
    with pytest.raises(ValueError, match="do not match the parameters the curvature covers"):
        kfade(m, forget, G, kl_budget=1e-3, params=["0.weight"])
    with pytest.raises(TypeError, match="optlib.curvature operator"):
        kfade(m, forget, "kfac", kl_budget=1e-3)
    for p, q in zip(m.parameters(), model.parameters()):  # nothing was changed by the failed calls
        assert torch.equal(p, q)


def test_dense_curvature_errors():
    """A dense curvature that is not PSD, or singular with no damping, or of the wrong size, is refused."""
    x, y = toy_data(n=20)
    lin = nn.Linear(6, 2, bias=False).double()
    forget = (x[:5], y[:5] % 2)
    n = 12
    A = torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    indefinite = A + A.T
    with pytest.raises(NonPSDCurvatureError, match="positive semidefinite"):
        kfade(copy.deepcopy(lin), forget, indefinite, kl_budget=1e-3, damping=1e-3)
    singular = torch.zeros(n, n, dtype=torch.float64)
    singular[0, 0] = 1.0
    with pytest.raises(FactorizationError, match="not positive definite"):
        kfade(copy.deepcopy(lin), forget, singular, kl_budget=1e-3, damping=0.0)
    with pytest.raises(ValueError, match="symmetric"):
        kfade(copy.deepcopy(lin), forget, A, kl_budget=1e-3)
    with pytest.raises(ValueError, match="selected parameters have 12 entries"):
        kfade(copy.deepcopy(lin), forget, torch.eye(5, dtype=torch.float64), kl_budget=1e-3)
    with pytest.raises(ValueError, match="n_retain"):
        newton_unlearning(copy.deepcopy(lin), forget, torch.eye(n, dtype=torch.float64), n_retain=0)
    with pytest.raises(FactorizationError):  # an indefinite Hessian needs enough damping
        newton_unlearning(copy.deepcopy(lin), forget, indefinite, n_retain=15)


# ------------------------------------------------------------------------------------------------ benchmark

from scale.bench import unlearning as bench  # noqa: E402

TINY = dict(bench.PRESETS["smoke"], gpt_steps=20, digits_epochs=40, digits_hidden=16, gpt_embd=16, gpt_block=16,
            gpt_forget_windows=4, gpt_retain_windows=4, gpt_curvature_windows=2, gpt_batch=8, progress=False)


def test_cli_help_names_every_option():
    proc = subprocess.run([sys.executable, "-m", "scale.bench.unlearning", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m scale.bench.unlearning")
    for option in ("--experiments", "--methods", "--quick", "--smoke", "--preset", "--steps", "--budgets", "--ga-lrs",
                   "--damping", "--damping-rule", "--fisher-type", "--kl-cap", "--digits-class", "--digits-hidden",
                   "--speaker", "--gpt-steps", "--gpt-budgets", "--no-gpt-retrain", "--out", "--plot", "--progress",
                   "--device", "--threads"):
        assert option in proc.stdout, option
    assert "2602.10568" in proc.stdout
    assert "gradient-ascent" in proc.stdout and "gradient_ascent" not in proc.stdout


def test_cli_rejects_bad_input(tmp_path, capsys):
    assert bench.main(["--steps", "0", "--out", str(tmp_path)]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err
    assert bench.main(["--budgets", "-1", "--out", str(tmp_path)]) == 2
    assert "--budgets needs positive finite values" in capsys.readouterr().err
    assert bench.main(["--digits-class", "12", "--out", str(tmp_path)]) == 2
    assert "--digits-class" in capsys.readouterr().err
    assert bench.main(["--damping", "-0.1", "--out", str(tmp_path)]) == 2
    assert "--damping" in capsys.readouterr().err
    assert bench.main(["--experiments", "gpt", "--speaker", "NOBODY", "--out", str(tmp_path)]) == 2
    assert "NOBODY" in capsys.readouterr().err
    assert bench.main(["--methods", "newton"]) == 2
    assert "methods: invalid value 'newton'" in capsys.readouterr().err
    assert bench.main(["--methods", "gradient_ascent"]) == 2  # the old spelling: one separator style, hyphens
    assert "did you mean 'gradient-ascent'" in capsys.readouterr().err
    assert bench.main(["--damping-rule", "per-layer"]) == 2
    assert "relative, absolute" in capsys.readouterr().err
    assert bench.main(["--bogus"]) == 2
    assert "unknown option '--bogus'" in capsys.readouterr().err
    assert bench.main(["--quick", "--smoke"]) == 2
    assert "choose one preset" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing ran
    with pytest.raises(ValueError, match="damping-rule"):
        bench.Config(damping_rule="per-layer").validate()


def test_cli_presets_and_print_config(tmp_path, capsys):
    """``--quick`` is ``--preset quick``; a command-line value wins over the preset; --print-config round-trips."""
    cfg, _ = bench.COMMAND.parse(["--quick", "--steps", "3"])
    assert cfg == bench.Config(**{**bench.PRESETS["quick"], "steps": 3})
    assert bench.main(["--preset", "smoke", "--gpt-budgets", "none", "--no-plot", "--print-config"]) == 0
    toml = tmp_path / "c.toml"
    toml.write_text(capsys.readouterr().out)
    cfg, _ = bench.COMMAND.parse(["--config", str(toml)])
    assert cfg == bench.Config(**{**bench.PRESETS["smoke"], "gpt_budgets": None, "plot": False})


def test_speech_parsing():
    text = "ROMEO:\nBut soft!\nWhat light\n\nJULIET:\nAy me!\n\nROMEO:\nShe speaks."
    spans = bench.speeches(text)
    assert [s[0] for s in spans] == ["ROMEO", "JULIET", "ROMEO"]
    assert text[spans[1][1]:spans[1][2]] == "JULIET:\nAy me!"
    mask, rest = bench.split_text(text, "ROMEO")
    assert rest == "JULIET:\nAy me!\n\n"
    assert "".join(c for c, k in zip(text, mask) if k) == "ROMEO:\nBut soft!\nWhat lightROMEO:\nShe speaks."
    assert bench.pick_speaker(spans, "auto") == "ROMEO"


def test_frontier_and_dominance():
    env = bench.envelope([(1.0, 0.5), (2.0, 0.4), (3.0, 1.0), (0.5, 0.6), (-1.0, 0.0)])
    assert env == [(2.0, 0.4), (3.0, 1.0)]
    assert bench.envelope_at(env, 1.0) == 0.4 and bench.envelope_at(env, 4.0) == math.inf
    assert bench.envelope_at(env, math.sqrt(6.0)) == pytest.approx(math.sqrt(0.4))  # log-log midpoint
    lower = [(u, k / 2) for u, k in env]
    d = bench.dominance(lower, env, grid=5)
    assert d["dominates"] and d["fraction_lower"] == 1.0 and d["geomean_ratio"] == pytest.approx(0.5)
    assert d["max_ratio"] == pytest.approx(0.5) and d["range"] == [2.0, 3.0]
    assert not bench.dominance(env, lower, grid=5)["dominates"]
    assert bench.reach(env, 0.5) == 2.0
    # bounds cut the range; a range outside both envelopes is empty
    assert bench.dominance(lower, env, grid=5, bounds=(2.5, 10.0))["range"] == [2.5, 3.0]
    assert bench.dominance(lower, env, grid=5, bounds=(4.0, 10.0))["range"] is None
    # crossing frontiers: lower on part of the range only
    cross = [(2.0, 0.2), (3.0, 2.0)]
    d = bench.dominance(cross, env, grid=9)
    assert not d["dominates"] and 0 < d["fraction_lower"] < 1 and d["max_ratio"] == pytest.approx(2.0)


def test_mean_eigenvalue_is_the_trace_over_n(setup):
    """The damping rule's scale: tr/n of the K-FAC and EK-FAC matrices, from their factors, against the dense
    matrices' traces."""
    model, _, retain = setup
    names = bench.linear_param_names(model)
    params = {n: p for n, p in model.named_parameters() if n in names}
    for cls in (KFAC, EKFAC):
        op = cls(model, "cross_entropy", params, [retain], fisher_type="type2")
        dense = op.to_dense()
        assert bench.mean_eigenvalue(op) == pytest.approx(float(torch.trace(dense)) / dense.shape[0], rel=1e-6)
    with pytest.raises(TypeError, match="KFAC or EKFAC"):
        bench.mean_eigenvalue(object())


def test_damping_rules(setup):
    model, _, retain = setup
    op = bench.build_curvature("KFAC", model, [retain], bench.Config())
    mean = bench.mean_eigenvalue(op)
    rel = bench.resolve_damping(op, bench.Config(damping=0.1))
    assert rel["lambda"] == pytest.approx(0.1 * mean) and rel["mean_eigenvalue"] == pytest.approx(mean)
    assert bench.resolve_damping(op, bench.Config(damping=1e-3, damping_rule="absolute"))["lambda"] == 1e-3


def _pt(method, value, step, inc, kl, acc=None):
    p = {"method": method, "value": value, "step": step, "forget_increase": inc, "forget_loss": 1.0 + inc,
         "retain_kl": kl}
    if acc is not None:
        p["forget_accuracy"] = acc
    return p


def test_grid_check_flags_binding_edges():
    # the smallest value's points are the envelope at the low end: binding; the largest value's are dominated
    pts = [_pt("m", 1.0, 1, 0.1, 0.001), _pt("m", 1.0, 2, 0.3, 0.01),
           _pt("m", 2.0, 1, 0.5, 0.02), _pt("m", 2.0, 2, 1.0, 0.05),
           _pt("m", 3.0, 1, 0.6, 0.5), _pt("m", 3.0, 2, 0.9, 0.9)]
    env = bench.envelope([(p["forget_increase"], p["retain_kl"]) for p in pts])
    c = bench.grid_check(pts, env, (1.0, 2.0, 3.0), (0.1, 1.0), grid=20)
    assert c["smallest_binding"] and not c["largest_binding"]
    assert c["values"] == [1.0, 2.0] and c["steps"] == [1, 2]
    # a range starting just below value 2's first point: value 1's point before it is read (interpolation)
    c = bench.grid_check(pts, env, (1.0, 2.0, 3.0), (0.4, 1.0), grid=20)
    assert c["values"] == [1.0, 2.0] and c["smallest_binding"]
    # a range starting at that point: value 1's points are not read and dropping them changes nothing there
    c = bench.grid_check(pts, env, (1.0, 2.0, 3.0), (0.5, 1.0), grid=20)
    assert c["values"] == [2.0] and not c["smallest_binding"] and not c["largest_binding"]
    assert bench.grid_check(pts, env, (1.0, 2.0, 3.0), None, grid=20)["smallest_binding"] is None


def test_summarize_ranges_accuracy_and_matching():
    """The headline range is [1%, 100%] of the retrained model's forget-loss increase; the forget-accuracy view
    takes the least KL reaching each level; the matched point is the least KL at or beyond the retrained loss."""
    cfg = bench.Config(methods=("kfade-kfac", "gradient-ascent"), grid=10, kl_cap=0.5)
    pts = []
    for i, u in enumerate(np.geomspace(1e-3, 100.0, 11)):  # K-FADE: KL = u/100; GA: KL = u/10
        acc = max(0.0, 1.0 - u / 10.0)
        pts.append(_pt("kfade-kfac", 1.0, i + 1, float(u), float(u) / 100, acc))
        pts.append(_pt("gradient-ascent", 1.0, i + 1, float(u), float(u) / 10, acc))
    pts.append({"method": "gradient-ascent", "value": 2.0, "step": None, "error": "diverged", "steps_done": 0})
    original = {"forget_loss": 1.0, "forget_accuracy": 1.0}
    reference = {"forget_loss": 11.0, "forget_accuracy": 0.0}
    grids = {"kfade-kfac": (1.0,), "gradient-ascent": (1.0, 2.0)}
    r = bench.summarize(pts, cfg, original, reference, grids)
    assert r["primary_range"] == "to_retrained" and r["target_increase"] == pytest.approx(10.0)
    d = r["dominance"]["to_retrained"]["kfade-kfac"]
    assert d["range"] == pytest.approx([0.1, 10.0]) and d["dominates"]
    assert d["geomean_ratio"] == pytest.approx(0.1)
    us = np.geomspace(1e-3, 100.0, 11)
    ga_reach = max(u for u in us if u / 10 <= 0.5)  # the largest increase a GA point reaches with KL <= 0.5
    assert r["dominance"]["kl_cap"]["kfade-kfac"]["range"] == pytest.approx([1e-3, ga_reach])
    assert r["dominance"]["common"]["kfade-kfac"]["range"] == pytest.approx([1e-3, 100.0])
    acc = r["accuracy"]
    assert acc["levels"] == pytest.approx([0.75, 0.5, 0.25, 0.0])
    # the least KL reaching an accuracy level is at the smallest sampled increase whose accuracy is that low
    for level, kl_k, kl_g in zip(acc["levels"], acc["least_kl"]["kfade-kfac"], acc["least_kl"]["gradient-ascent"]):
        u_min = min(u for u in us if max(0.0, 1.0 - u / 10.0) <= level + 1e-12)
        assert kl_k == pytest.approx(u_min / 100) and kl_g == pytest.approx(u_min / 10)
    assert acc["ratio"]["kfade-kfac"] == pytest.approx([0.1] * 4)
    assert r["matched"]["kfade-kfac"]["forget_increase"] == pytest.approx(min(u for u in us if u >= 10.0))
    assert [e["error"] for e in r["errors"]] == ["diverged"]
    # no retrained model: the headline is the KL-capped range and there is no accuracy view
    r = bench.summarize(pts, cfg, original, None, grids)
    assert r["primary_range"] == "kl_cap" and r["accuracy"] is None and not r["dominance"]["to_retrained"]


def test_sweep_keeps_the_steps_before_a_failure(setup):
    """A run that fails part-way (here: the monitor raises at step 3) keeps its first two steps as points and
    adds one error record."""
    model, forget, retain = setup
    calls = []

    def monitor(m):
        calls.append(1)
        if len(calls) == 4:  # records 0, 1, 2 succeed; record 3 fails
            raise RuntimeError("diverged at step 3")
        return {}

    cfg = bench.Config(methods=("gradient-ascent",), steps=5)
    pts = bench.sweep(model, forget, retain, {}, {}, cfg, (), (0.1,), monitor)
    assert [p["step"] for p in pts] == [1, 2, None]
    assert pts[-1]["error"] == "diverged at step 3" and pts[-1]["steps_done"] == 2
    assert all(p["forget_increase"] > 0 for p in pts[:2])


def test_tiny_run_writes_json_and_plots(tmp_path):
    cfg = bench.Config(**TINY, out=tmp_path)
    result = bench.run_benchmark(cfg)
    assert bench.write_outputs(result, cfg) == tmp_path / bench.JSON_NAME
    data = json.loads((tmp_path / bench.JSON_NAME).read_text())
    assert set(data["experiments"]) == {"digits", "gpt"}
    assert "out" not in data["config"] and data["config"]["methods"] == list(bench.METHODS)
    assert data["provenance"]["device"] == "cpu" and data["provenance"]["env-torch_threads"] == 1
    for e, r in data["experiments"].items():
        assert (tmp_path / bench.plot_name(e)).stat().st_size > 0
        assert {"setup", "original", "points", "envelopes", "dominance", "reach", "grid_check", "damping",
                "primary_range", "accuracy"} <= set(r)
        assert set(r["dominance"]) == set(bench.RANGES)
        methods = {p["method"] for p in r["points"]}
        assert methods == set(bench.METHODS) == {"kfade-kfac", "kfade-ekfac", "gradient-ascent"}, e
        for p in r["points"]:
            assert p["step"] in (1, 2) and math.isfinite(p["forget_loss"]) and 0 <= p["forget_accuracy"] <= 1
        for m in bench.KFADE_METHODS:  # the default rule: 0.1 x the approximation's mean eigenvalue
            d = r["damping"][m]
            assert d["rule"] == "relative" and d["lambda"] == pytest.approx(0.1 * d["mean_eigenvalue"])
            assert d["mean_eigenvalue"] > 0
    digits = data["experiments"]["digits"]
    assert digits["retrained"]["forget_loss"] > digits["original"]["forget_loss"]
    assert digits["setup"]["params"] <= 50_000
    assert digits["primary_range"] == "to_retrained"  # the digits reference is always retrained
    assert data["experiments"]["gpt"]["primary_range"] == "kl_cap"  # the smoke configuration skips the GPT's
    summary = bench.format_summary(result)
    assert "kfade-kfac vs gradient-ascent, to_retrained (headline)" in summary
    assert "mean eigenvalue" in summary


def test_trained_models_share_the_initialization():
    """The original and the retrained digits models come from one initialization and the same training, on the
    whole training split and on the retain set: they differ, and retraining on the retain set with the same
    settings reproduces the retrained model exactly."""
    cfg = bench.Config(**{**TINY, "digits_epochs": 5})
    data = bench.digits_data(cfg, torch.device("cpu"))
    original, retrained = bench.train_digits_models(data, cfg, torch.device("cpu"))
    again = retrain(bench.digits_mlp(cfg.digits_hidden, cfg.seed), data["retain"], epochs=5, lr=cfg.digits_lr,
                    weight_decay=cfg.digits_weight_decay, seed=cfg.seed)
    for p, q, r in zip(original.parameters(), retrained.parameters(), again.parameters()):
        assert not torch.equal(p, q)
        assert torch.equal(q, r)
