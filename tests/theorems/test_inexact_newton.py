"""Proofs as tests for the Hessian-free gradient-regularized Newton method (``solver="cg"``).

The regularized system is solved by truncated CG on Hessian-vector products, stopped when
``||(H + lam B) d + g||_* <= eta_k ||g_k||_*`` with ``eta_k = min(1/2, ||g_k||_*^(1/2))`` (Dembo,
Eisenstat & Steihaug 1982; Nocedal & Wright 2006, Alg. 7.1), with Steihaug's step to the radius on
negative curvature (statements I1-I5 of :mod:`optlib.theory.inexact_newton`). Each statement has a
"would catch" twin: a deliberately wrong variant run through the same production loop
(:func:`optlib.second_order.driver.run` with ``solver="cg"``) must make the same check fail.
Problems come from :mod:`optlib.problems` through the instances of :mod:`optlib.theory.table`;
optima are certified independently. Everything runs in float64.
"""

from __future__ import annotations

import math

import pytest
import torch

from optlib.linalg import MatvecCurvature
from optlib.problems import pseudo_huber
from optlib.second_order.driver import Point, Trial
from optlib.second_order.grad_norm_newton import GradNormRule
from optlib.theory import (
    acceptance_invariant,
    cg_residual_rule,
    forcing_vanishes,
    hvp_accounting,
    local_superlinear,
    step_within_radius,
)
from optlib.theory.regularized_newton import acceptance_both_ways
from optlib.theory.table import GAMMA_MIN, chebyshev_instance, logistic_instance, recorded_cg_run, rosenbrock_instance


# ------------------------------------------------------------------------------------------------
# Deliberately wrong variants (each differs from GradNormRule + truncated CG in one place)
# ------------------------------------------------------------------------------------------------
class LooseAcceptance(GradNormRule):
    """Acceptance constant 1/80 instead of 1/8."""

    def accept(self, pt: Point, trial: Trial, f_new: float, g_new: torch.Tensor, gnorm_new: float) -> bool:
        return pt.f - f_new >= gnorm_new**2 / (80.0 * trial.lam)


class StricterAcceptance(GradNormRule):
    """Acceptance constant 1/4 instead of 1/8 (rejects steps the paper's test accepts)."""

    def accept(self, pt: Point, trial: Trial, f_new: float, g_new: torch.Tensor, gnorm_new: float) -> bool:
        return pt.f - f_new >= gnorm_new**2 / (4.0 * trial.lam)


class UnderRegularizedCG(GradNormRule):
    """CG on ``H + (lam/4) B`` while reporting ``lam = ||g||_*/gamma``: steps up to 4 gamma long."""

    def propose(self, pt: Point, gamma: float) -> Trial:
        lam = pt.gnorm / gamma
        return Trial(pt.H.solve(pt.g, lam / 4.0, pt.metric), lam)


class LaxCG(GradNormRule):
    """Stops CG at relative residual 0.9 whatever the run's forcing rule says (a solver that ignores it)."""

    def propose(self, pt: Point, gamma: float) -> Trial:
        lam = pt.gnorm / gamma
        lax = MatvecCurvature(pt.H.matvec, pt.H.n, forcing=0.9, negative_curvature="boundary")
        d = lax.solve(pt.g, lam, pt.metric)
        pt.H.report = lax.report
        return Trial(d, lam)


class DoubleSolve(GradNormRule):
    """Solves every system twice (the first solve's products are spent but not reported)."""

    def propose(self, pt: Point, gamma: float) -> Trial:
        lam = pt.gnorm / gamma
        pt.H.solve(pt.g, lam, pt.metric)
        return Trial(pt.H.solve(pt.g, lam, pt.metric), lam)


NONCONVEX = [
    pytest.param(rosenbrock_instance, id="rosenbrock"),
    pytest.param(lambda: chebyshev_instance(3), id="chebyshev-rosenbrock-3"),
]
CONVEX = [
    pytest.param(lambda: logistic_instance(100.0, 1e-4), id="logistic-cond100"),
    pytest.param(pseudo_huber, id="pseudo-huber"),
]


# ------------------------------------------------------------------------------------------------
# I1 acceptance invariant (the driver verifies every inexact step)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", NONCONVEX + CONVEX)
def test_acceptance_invariant_inexact(make):
    """I1 (Semenov, Jaggi & Doikov 2025, Lemma 1, as the acceptance test): every accepted truncated-CG
    step has f_k - f_{k+1} >= ||g_{k+1}||_*^2/(8 lam_k), and a trial is accepted iff it satisfies it.
    Tolerances: those of acceptance_invariant / acceptance_both_ways (1e-12 relative plus roundoff)."""
    problem = make()
    res, rec = recorded_cg_run(problem, maxiter=2000, gtol=1e-9)
    assert res.success and res.nhev == 0, res.message
    check = acceptance_invariant(res, problem.f_star)
    assert check.holds, check
    if res.nrejected:
        both = acceptance_both_ways(rec, "grad-norm")
        assert both.holds, both


def test_acceptance_invariant_inexact_would_catch_loose_acceptance():
    """Would catch: the constant 1/80 lets through inexact steps that violate the 1/8 inequality."""
    problem = rosenbrock_instance()
    res, _ = recorded_cg_run(problem, LooseAcceptance(GAMMA_MIN), maxiter=2000, gtol=1e-9)
    check = acceptance_invariant(res, problem.f_star)
    assert not check.holds and check.measured > 1.0, check


def test_acceptance_both_ways_inexact_would_catch_stricter_constant():
    """Would catch: the constant 1/4 rejects inexact trials that satisfy the 1/8 inequality."""
    res, rec = recorded_cg_run(rosenbrock_instance(), StricterAcceptance(GAMMA_MIN), maxiter=2000, gtol=1e-9)
    check = acceptance_both_ways(rec, "grad-norm")
    assert not check.holds and check.details["wrongly_rejected"], check


# ------------------------------------------------------------------------------------------------
# I2 ||d|| <= gamma for every truncated step
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", CONVEX)
@pytest.mark.parametrize("forcing", ["sqrt", 0.5])
def test_step_within_radius_truncated_cg(make, forcing):
    """I2 (derived; Steihaug 1983, Thm 2.1): for PSD H the exact step has ||d*|| <= ||g||_*/lam = gamma,
    and CG from 0 has B-norms increasing monotonically towards ||d*||, so every truncated iterate, at
    any forcing term, has ||d|| <= gamma. Checked on every trial; slack 1e-12 relative."""
    res, rec = recorded_cg_run(make(), forcing=forcing, maxiter=2000, gtol=1e-9)
    check = step_within_radius(rec)
    assert check.holds, check
    exits = {e["cg_exit"] for e in rec.trials}
    assert exits == {"converged"}, exits  # PSD: no Steihaug exit was needed


@pytest.mark.parametrize("make", NONCONVEX)
def test_step_within_radius_nonconvex_with_steihaug_exits(make):
    """I2 for indefinite H: a direction of non-positive curvature of H + lam B, or an iterate leaving the
    ball, ends CG on the sphere ||d|| = gamma (Steihaug 1983), so the bound holds for every trial.
    The run must have met at least one such exit (else the case is not exercised)."""
    res, rec = recorded_cg_run(make(), maxiter=2000, gtol=1e-9)
    check = step_within_radius(rec)
    assert check.holds, check
    assert any(e["cg_exit"] in ("boundary", "negative-curvature") for e in rec.trials)


@pytest.mark.parametrize("make", CONVEX[:1] + NONCONVEX[:1])
def test_step_within_radius_would_catch_under_regularized_cg(make):
    """Would catch: CG on H + (lam/4) B gives steps longer than gamma."""
    _, rec = recorded_cg_run(make(), UnderRegularizedCG(GAMMA_MIN), maxiter=300, gtol=1e-9)
    check = step_within_radius(rec)
    assert not check.holds and check.measured > 1.0 + 1e-6, check


# ------------------------------------------------------------------------------------------------
# I3 the residual rule at every trial
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", NONCONVEX + CONVEX)
@pytest.mark.parametrize("forcing", ["sqrt", "gradient", 0.3])
def test_cg_residual_rule(make, forcing):
    """I3 (Dembo, Eisenstat & Steihaug 1982 forcing terms): every converged CG exit has
    ||(H + lam B) d + g||_* <= eta_k ||g_k||_* with eta_k = min(1/2, ||g_k||_*^theta) (theta = 1/2, 1) or
    the constant, recomputed with the problem's Hessian-vector products; Steihaug exits lie on the sphere."""
    res, rec = recorded_cg_run(make(), forcing=forcing, maxiter=2000, gtol=1e-9)
    check = cg_residual_rule(rec, forcing)
    assert check.holds, check


def test_cg_residual_rule_with_a_metric():
    """I3 in a metric B (the residual in the dual norm sqrt(r^T B^{-1} r), CG preconditioned by B)."""
    problem = logistic_instance(100.0, 1e-4)
    B = problem.curvature("bohning")(problem.x0)
    res, rec = recorded_cg_run(problem, B=B, maxiter=500, gtol=1e-9)
    assert res.success
    assert cg_residual_rule(rec, "sqrt").holds
    assert step_within_radius(rec).holds


@pytest.mark.parametrize("make", CONVEX[:1] + NONCONVEX[:1])
def test_cg_residual_rule_would_catch_lax_solver(make):
    """Would catch: a solve that stops at relative residual 0.9 breaks the declared forcing rule."""
    _, rec = recorded_cg_run(make(), LaxCG(GAMMA_MIN), maxiter=300, gtol=1e-9)
    check = cg_residual_rule(rec, "sqrt")
    assert not check.holds and check.details["worst_rho_over_eta"] > 1.5, check


# ------------------------------------------------------------------------------------------------
# I4 local superlinear rate when the forcing terms vanish
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("forcing", ["sqrt", "gradient"])
def test_local_superlinear_inexact(seed, forcing):
    """I4 (Dembo, Eisenstat & Steihaug 1982, Thm 3.3: eta_k -> 0 gives a superlinear rate; here also
    lam_k -> 0): on strongly convex logistic regression, (f_{k+1} - f*)/(f_k - f*) <= 1e-2 in the final
    iterations before f - f* <= 1e-14 (local_superlinear), and the last forcing terms are <= 1e-2."""
    problem = logistic_instance(10.0, 1e-3, seed)
    res, _ = recorded_cg_run(problem, forcing=forcing, maxiter=200, gtol=1e-15)
    check = local_superlinear(res, problem.f_star)
    assert check.holds, check
    assert forcing_vanishes(res).holds


@pytest.mark.parametrize("seed", [0, 1])
def test_local_superlinear_would_catch_constant_forcing(seed):
    """Would catch: a forcing term that does not shrink (eta = 0.5) leaves a linear rate only
    (Dembo, Eisenstat & Steihaug 1982, Thm 2.3): the final ratios stay above 1e-2."""
    problem = logistic_instance(10.0, 1e-3, seed)
    res, _ = recorded_cg_run(problem, forcing=0.5, maxiter=200, gtol=1e-15)
    assert not local_superlinear(res, problem.f_star).holds
    assert not forcing_vanishes(res).holds


# ------------------------------------------------------------------------------------------------
# I5 every Hessian-vector product accounted for
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", NONCONVEX[:1] + CONVEX[:1])
def test_hvp_accounting(make):
    """I5 (derived): one Hessian-vector product per CG iteration and none to start, so nhvp equals the
    CG iterations summed over all trials, accepted or not; no Hessian is ever formed (nhev = 0)."""
    res, rec = recorded_cg_run(make(), maxiter=2000, gtol=1e-9)
    check = hvp_accounting(res, rec)
    assert check.holds, check
    assert res.nhvp == sum(res.trace.column("cg_iterations")[1:]) + sum(
        e["cg_iterations"] for e in rec.trials if not e.get("accepted", True))


def test_hvp_accounting_would_catch_hidden_products():
    """Would catch: a rule that solves every system twice spends products the trace does not report."""
    res, rec = recorded_cg_run(rosenbrock_instance(), DoubleSolve(GAMMA_MIN), maxiter=300, gtol=1e-9)
    check = hvp_accounting(res, rec)
    assert not check.holds and check.measured > 0, check


def test_options_are_checked():
    """Bad inexactness options are refused with the option's name and value."""
    problem = rosenbrock_instance()
    for bad in ("cubic", 0.0, 1.0, True, math.nan):
        with pytest.raises(ValueError, match="forcing"):
            recorded_cg_run(problem, forcing=bad)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="cg_maxiter"):
            recorded_cg_run(problem, cg_maxiter=bad)
    with pytest.raises(ValueError, match="negative_curvature"):
        recorded_cg_run(problem, negative_curvature="ignore")
