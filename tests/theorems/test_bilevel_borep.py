"""Proofs as tests for the bilevel optimizers (BO-REP, Hao, Gong & Liu, ICLR 2024; spec 30 §6), on the
exact problems Q1/Q2 of :mod:`optlib.problems.bilevel`, float64.

Statements (all derived from the update rules; constants in closed form):

* **step length**: BO-REP's upper step is ``eta m/||m||``, so ``||x_{t+1} - x_t|| = eta`` exactly
  (relative 1e-12) on every iteration with ``m != 0``;
* **refresh schedule**: the lower level is refreshed exactly at ``t > 0, t mod I = 0``, with exactly
  ``N`` lower gradients, and untouched otherwise (from the trace's counters);
* **lower-error envelope** (Q1/Q2, deterministic ``g`` quadratic in ``y``): with
  ``q = max(|1 - gamma mu|, |1 - gamma l_g1|)`` (one gradient step's contraction) and
  ``kappa = ||A^{-1} B||`` (``y*`` is ``kappa``-Lipschitz), the recorded ``E_t = ||y_t - y*(x_{t+1})||``
  obeys ``E_{t+1} <= q^N E_t + kappa eta`` after a refresh and ``E_{t+1} <= E_t + kappa eta`` otherwise,
  from the measured ``E_0``;
* **unbounded smoothness (Q2)**: from ``u^T x_0 = 10`` a fixed-step method (SOBA) with the step
  ``1/L(x)`` tuned at ``x = 0`` (``L = L0 + L1 ||grad Phi(0)||``) blows up, while BO-REP reaches
  ``||grad Phi|| <= 0.05``.

Each has a "would catch" twin run through the same :func:`~optlib.bilevel.run_bilevel` loop.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from optlib.bilevel import BOREP, BilevelOptimizer, BilevelProblem, BilevelState, hypergradient, run_bilevel
from optlib.bilevel.driver import sgd_lower
from optlib.problems.bilevel import bilevel_exponential, bilevel_quadratic

ETA, PERIOD, N, GAMMA = 0.02, 3, 4, 0.2
HYPER = {"alpha": 0.2}


def borep_run(problem, rule=None, iterations=120):
    rule = rule or BOREP(eta=ETA, period=PERIOD, refresh_steps=N, lower_lr=GAMMA, init_steps=5, hypergrad_options=HYPER)
    return run_bilevel(problem, rule, iterations=iterations)


class UnnormalizedMomentum(BOREP):
    """``x <- x - eta m`` (the normalization dropped)."""

    def step(self, problem, state):
        out = super().step(problem, state)
        # undo the normalized step and take the raw momentum step instead
        m = state.memory["m"]
        state.x = state.x + self.eta * m / m.norm() - self.eta * m
        return out


class RefreshOffByOne(BOREP):
    """Refreshes at ``(t + 1) mod I = 0``."""

    def step(self, problem, state):
        refresh = (state.t + 1) % self.period == 0
        if refresh:
            state.y = sgd_lower(problem, state.x, state.y, self.refresh_steps, self.lower_lr, state.generator)
        saved, self.period = self.period, 10**9  # the parent then never refreshes
        try:
            out = super().step(problem, state)
        finally:
            self.period = saved
        out["refreshed"] = refresh
        return out


class NoRefresh(BOREP):
    """Claims the schedule but never refreshes the lower level."""

    def step(self, problem, state):
        saved, self.period = self.period, 10**9
        try:
            out = super().step(problem, state)
        finally:
            self.period = saved
        out["refreshed"] = state.t > 0 and state.t % saved == 0
        return out


# ------------------------------------------------------------------------------- the checks
def step_lengths(res, eta):
    """max relative deviation of ||x_{t+1} - x_t|| from eta."""
    steps = np.array([r["step_norm"] for r in res.trace][1:])
    return float(np.max(np.abs(steps - eta) / eta))


def refresh_schedule(res, period, refresh_steps):
    """The iterations whose refresh flag or lower-gradient count differs from the schedule."""
    bad = []
    recs = list(res.trace)
    for prev, rec in zip(recs, recs[1:]):
        t = rec["t"] - 1  # the iteration that produced this record
        expected = t > 0 and t % period == 0
        used = rec["nlower"] - prev["nlower"]
        if bool(rec["refreshed"]) != expected or used != (refresh_steps if expected else 0):
            bad.append(t)
    return bad


def lower_envelope(res, problem, period, refresh_steps, gamma, eta):
    """max_t E_t / envelope_t (module docstring); <= 1 when the statement holds."""
    A = problem.data["A"]
    q = max(abs(1 - gamma * problem.constants.mu), abs(1 - gamma * problem.constants.l_g1))
    kappa = float(np.linalg.norm(np.linalg.solve(A, problem.data["B"]), 2))
    E = np.array([r["y_error"] for r in res.trace])
    env = np.empty_like(E)
    env[0] = E[0]
    for i in range(1, len(E)):
        t = i - 1
        refresh = t > 0 and t % period == 0
        env[i] = (q**refresh_steps if refresh else 1.0) * env[i - 1] + kappa * eta
    return float(np.max(E / (env * (1 + 1e-9) + 1e-14)))


# ------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("make", [bilevel_quadratic, bilevel_exponential])
def test_borep_step_length_is_eta(make):
    res = borep_run(make())
    assert res.nit == 120
    assert step_lengths(res, ETA) <= 1e-12


def test_step_length_would_catch_unnormalized_momentum():
    res = borep_run(bilevel_quadratic(), UnnormalizedMomentum(eta=ETA, period=PERIOD, refresh_steps=N, lower_lr=GAMMA,
                                                              init_steps=5, hypergrad_options=HYPER))
    assert step_lengths(res, ETA) > 1e-3


@pytest.mark.parametrize("make", [bilevel_quadratic, bilevel_exponential])
def test_borep_refresh_every_period(make):
    res = borep_run(make())
    assert refresh_schedule(res, PERIOD, N) == []
    assert sum(bool(r["refreshed"]) for r in list(res.trace)[1:]) == len([t for t in range(1, 120) if t % PERIOD == 0])


def test_refresh_schedule_would_catch_off_by_one():
    twin = RefreshOffByOne(eta=ETA, period=PERIOD, refresh_steps=N, lower_lr=GAMMA, init_steps=5,
                           hypergrad_options=HYPER)
    assert refresh_schedule(borep_run(bilevel_quadratic(), twin), PERIOD, N)


@pytest.mark.parametrize("make", [bilevel_quadratic, bilevel_exponential])
def test_lower_error_stays_under_envelope(make):
    problem = make()
    ratio = lower_envelope(borep_run(problem), problem, PERIOD, N, GAMMA, ETA)
    assert ratio <= 1.0
    assert ratio > 0.05  # the envelope is not vacuous on these runs


def test_envelope_would_catch_missing_refresh():
    problem = bilevel_quadratic()
    twin = NoRefresh(eta=ETA, period=PERIOD, refresh_steps=N, lower_lr=GAMMA, init_steps=5, hypergrad_options=HYPER)
    assert lower_envelope(borep_run(problem, twin, iterations=300), problem, PERIOD, N, GAMMA, ETA) > 1.0


def test_unbounded_smoothness_fixed_step_blows_up_where_borep_converges():
    """Q2 from u^T x0 = 10: SOBA with the step tuned at x = 0 blows up; BO-REP reaches ||grad Phi|| <= 0.05."""
    problem = bilevel_exponential()
    c = problem.constants
    L = c.L0 + c.L1 * float(problem.true_hypergradient(torch.zeros(problem.nx, dtype=torch.float64)).norm())
    soba = run_bilevel(problem, "soba", iterations=400, lr_x=1.0 / L, lower_lr=GAMMA)
    final = soba.trace[-1]["grad_phi_norm"]
    grad0 = float(problem.true_hypergradient(problem.x0).norm())
    assert soba.status == 4 or final > grad0, (final, grad0)  # worse than where it started: no convergence
    borep = run_bilevel(problem, "bo-rep", iterations=1500, grad_tol=0.05, eta=ETA, hypergrad_options=HYPER)
    assert borep.success, borep.message
    assert borep.trace[-1]["grad_phi_norm"] <= 0.05


def test_every_method_runs_and_descends_on_q1():
    """Every registered method on Q1 (deterministic): Phi decreases from x0 over 200 iterations."""
    problem = bilevel_quadratic()
    phi0 = float(problem.phi(problem.x0))
    opts = {"bo-rep": {"eta": 0.02}, "slip": {"eta": 0.02}, "stocbio": {"lr_x": 0.1}, "ttsa": {"lr_x": 0.5},
            "soba": {"lr_x": 0.1}, "ma-soba": {"lr_x": 0.02}, "sustain": {"lr_x": 0.1}}
    for method, o in opts.items():
        res = run_bilevel(problem, method, iterations=200, **o)
        assert res.status == 1 and float(problem.phi(res.x)) < phi0, (method, res.message)
        assert res.oracle_calls > 0 and res.method == method


def test_saba_needs_a_finite_sum_and_runs_on_one():
    problem = bilevel_quadratic()
    with pytest.raises(ValueError, match="finite-sum"):
        run_bilevel(problem, "saba", iterations=2)
    # Q1 as a finite sum of n identical-in-expectation pieces: g_i = g + (y^T e_i) s_i with sum_i s_i = 0
    n = 4
    shifts = torch.randn(n, problem.ny, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    shifts -= shifts.mean(0)
    fs = BilevelProblem(lambda x, y, idx: problem.f(x, y), lambda x, y, idx: problem.g(x, y) + y @ shifts[idx[0]],
                        problem.x0, problem.y0, upper_sampler=lambda gen: torch.randint(1, (1,), generator=gen),
                        lower_sampler=lambda gen: torch.randint(n, (1,), generator=gen))
    fs.finite_sum = (1, n)
    res = run_bilevel(fs, "saba", iterations=300, lr_x=0.1, lower_lr=0.2)
    assert float(problem.phi(res.x)) < float(problem.phi(problem.x0))


def test_bad_input_is_named():
    problem = bilevel_quadratic()
    with pytest.raises(ValueError, match="unknown bilevel method 'borep'"):
        run_bilevel(problem, "borep")
    with pytest.raises(ValueError, match="eta must be a finite number > 0"):
        run_bilevel(problem, "bo-rep", eta=-1.0)
    with pytest.raises(ValueError, match="unknown BO-REP variant"):
        run_bilevel(problem, "bo-rep", variant="code")
    with pytest.raises(ValueError, match="bilevel method 'soba'"):
        run_bilevel(problem, "soba", eta=0.1)
    with pytest.raises(ValueError, match="y has 3 entries"):
        run_bilevel(problem, "bo-rep", y0=torch.zeros(3))


def test_non_finite_hypergradient_stops_the_run_without_nan():
    base = bilevel_quadratic()

    def f(x, y):
        return base.f(x, y) + torch.where((x[0] - 1.9).abs() > 0.1, x[0] * float("nan"), torch.zeros((), dtype=x.dtype))

    problem = BilevelProblem(f, base.g, torch.full((base.nx,), 1.9, dtype=torch.float64), base.y0)
    res = run_bilevel(problem, "stocbio", iterations=50, lr_x=5.0)
    assert res.status == 4 and "refused" in res.message
    assert bool(torch.isfinite(res.x).all())


def test_module_form_and_optimizer_loop_resume_exactly():
    """nn.Module form: x = a per-feature input scale (upper module), y = a linear model trained with ridge;
    the optimizer loop equals run_bilevel, and a state_dict resume continues bit for bit."""
    gen = torch.Generator().manual_seed(0)
    Xtr, Xva = torch.randn(40, 3, generator=gen, dtype=torch.float64), torch.randn(20, 3, generator=gen, dtype=torch.float64)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    ytr, yva = Xtr @ w + 0.3 * torch.randn(40, generator=gen, dtype=torch.float64), Xva @ w

    def build():
        scale = nn.Linear(3, 1, bias=False).double()  # its weight row: the per-feature scales
        with torch.no_grad():
            scale.weight.fill_(1.0)
        model = nn.Linear(3, 1).double()
        with torch.no_grad():
            model.weight.zero_()
            model.bias.zero_()

        def g(up, low):
            pred = low(Xtr * up.weight).squeeze(-1)
            return ((pred - ytr) ** 2).mean() + 0.1 * sum((p**2).sum() for p in low.parameters())

        def f(up, low):
            return ((low(Xva * up.weight).squeeze(-1) - yva) ** 2).mean()

        return BilevelProblem.from_modules(scale, model, f, g), scale, model

    p1, _, m1 = build()
    res = run_bilevel(p1, "bo-rep", iterations=20, eta=0.01, init_steps=20)
    p2, _, m2 = build()
    opt = BilevelOptimizer(p2, "bo-rep", eta=0.01, init_steps=20)
    for _ in range(10):
        opt.step()
    sd = opt.state_dict()
    p3, _, m3 = build()
    opt3 = BilevelOptimizer(p3, "bo-rep", eta=0.01, init_steps=20)
    opt3.load_state_dict(sd)
    for _ in range(10):
        opt.step()
        opt3.step()
    assert torch.equal(opt.state.x, res.x) and torch.equal(opt3.state.x, res.x) and torch.equal(opt3.state.y, res.y)
    assert torch.equal(m2.weight.detach().reshape(-1), res.y[:3])


def test_borep_step_replays_the_update():
    """Every BO-REP step equals the update replayed from independently computed hypergradients:
    ``m <- beta m + (1 - beta) h_t`` (weight beta on the old value, spec 30 B3), ``x <- x - eta m/||m||``
    (to 1e-12). Would catch swapped momentum weights, which the rate statements above let pass. On Q2
    (u^T x0 = 1), where h's direction turns (on Q1 with y fixed it does not: grad_x f = rho x keeps
    h parallel along normalized steps, and any momentum weights give the same steps)."""
    problem = bilevel_exponential(start=1.0)
    rule = BOREP(eta=ETA, beta=0.9, period=10**6, init_steps=5, lower_lr=GAMMA, hypergrad_options=HYPER)
    state = BilevelState(x=problem.x0.clone(), y=problem.y0.clone(), t=0, generator=torch.Generator().manual_seed(0))
    rule.start(problem, state)
    m = None
    worst = 0.0
    for t in range(30):
        h = hypergradient(problem, state.x, state.y, "neumann", **rule.hypergrad_options).grad
        m = 0.1 * h if m is None else 0.9 * m + 0.1 * h
        expected = state.x - ETA * m / m.norm()
        rule.step(problem, state)
        state.t = t + 1
        worst = max(worst, float((state.x - expected).norm()) / ETA)
    assert worst <= 1e-12
