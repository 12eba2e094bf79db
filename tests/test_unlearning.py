"""Unlearning (``optlib.unlearning``) and its benchmark (``scale.unlearn``): the K-FADE step against a dense
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
    c = unlearn("gradient_ascent", copy.deepcopy(model), forget, lr=0.1)
    assert c.method == "gradient_ascent"
    assert set(METHODS) == {"kfade", "gradient_ascent", "newton"}


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
    with pytest.raises(ValueError, match="unknown unlearning method 'ascent'.*kfade, gradient_ascent, newton"):
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

from scale import unlearn as bench  # noqa: E402

TINY = dict(bench.SMOKE, gpt_steps=20, digits_epochs=40, digits_hidden=16, gpt_embd=16, gpt_block=16,
            gpt_forget_windows=4, gpt_retain_windows=4, gpt_curvature_windows=2, gpt_batch=8)


def test_cli_help_names_every_option():
    proc = subprocess.run([sys.executable, "-m", "scale.unlearn", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    for option in ("--experiments", "--methods", "--quick", "--steps", "--budgets", "--ga-lrs", "--damping",
                   "--fisher-type", "--kl-cap", "--digits-class", "--digits-hidden", "--speaker", "--gpt-steps",
                   "--gpt-budgets", "--no-gpt-retrain", "--out", "--device", "--threads"):
        assert option in proc.stdout, option
    assert "2602.10568" in proc.stdout


def test_cli_rejects_bad_input(tmp_path, capsys):
    assert bench.main(["--steps", "0", "--out", str(tmp_path)]) == 2
    assert bench.main(["--budgets", "-1", "--out", str(tmp_path)]) == 2
    assert bench.main(["--digits-class", "12", "--out", str(tmp_path)]) == 2
    assert bench.main(["--experiments", "gpt", "--speaker", "NOBODY", "--out", str(tmp_path)]) == 2
    assert "NOBODY" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--methods", "newton"])


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
    assert not bench.dominance(env, lower, grid=5)["dominates"]
    assert bench.reach(env, 0.5) == 2.0


def test_tiny_run_writes_json_and_plots(tmp_path):
    cfg = bench.Config(**TINY)
    result = bench.run_benchmark(cfg, progress=False, out=tmp_path, plot=True)
    data = json.loads((tmp_path / bench.JSON_NAME).read_text())
    assert set(data["experiments"]) == {"digits", "gpt"}
    for e, r in data["experiments"].items():
        assert (tmp_path / bench.plot_name(e)).stat().st_size > 0
        assert {"setup", "original", "points", "envelopes", "dominance", "dominance_below_cap", "reach"} <= set(r)
        methods = {p["method"] for p in r["points"]}
        assert methods == set(bench.METHODS), e
        for p in r["points"]:
            assert p["step"] in (1, 2) and math.isfinite(p["forget_loss"])
    assert data["experiments"]["digits"]["retrained"]["forget_loss"] > data["experiments"]["digits"]["original"][
        "forget_loss"]
    assert data["experiments"]["digits"]["setup"]["params"] <= 50_000
    assert "kfade-kfac vs gradient_ascent" in bench.format_summary(result)
