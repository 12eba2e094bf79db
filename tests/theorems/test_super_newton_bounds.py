"""Proofs as tests for the super-universal Newton method (Doikov, Mishchenko & Nesterov 2024,
arXiv:2208.05888; authors' code ``super_newton``; spec 10 §3.3).

Statements (checkers in :mod:`optlib.theory.regularized_newton`):

* 1b the acceptance test ``<g(x+), x - x+> >= ||g(x+)||_*^2/(4 lam)`` both ways, from the trial log;
* 2b the search replayed: ``H <- max(H/4, H_min)`` after a success, ``4 H`` after a failure;
* 1 (derived, convex ``f``) every accepted step decreases ``f`` by ``||g(x+)||_*^2/(4 lam)``: by convexity
  ``f(x) - f(x+) >= <g(x+), x - x+>``, then the acceptance test. Checked with :func:`acceptance_invariant`
  at constant 4 on convex problems, among them the paper's nonlinear equations ``(1/p)||Ax - b||^p``.

Not verified here: the paper's global rates (Hölder-Hessian and uniformly convex classes). Their constants
were not looked up, and the rate depends on the search's ``H_k``, for which we have no derived bound.

Each statement has a "would catch" twin: a subclass of the production :class:`SuperUniversalRule` run through
the same driver.
"""

from __future__ import annotations

import pytest
import torch

from optlib.problems import cubic_lipschitz, lse_cubic, nonlinear_equations
from optlib.second_order import super_newton
from optlib.second_order.driver import Point, Trial, run
from optlib.second_order.super_newton import SuperUniversalRule
from optlib.theory import TrialRecorder, acceptance_invariant, collect_iterates
from optlib.theory.regularized_newton import acceptance_both_ways, search_replay
from optlib.theory.table import chebyshev_instance, logistic_instance, rosenbrock_instance

H_MIN = 1e-5

PROBLEMS = [
    pytest.param(lambda: rosenbrock_instance(), id="rosenbrock"),
    pytest.param(lambda: chebyshev_instance(3), id="chebyshev-rosenbrock-3"),
    pytest.param(lambda: logistic_instance(100.0, 1e-4), id="logistic"),
    pytest.param(lambda: lse_cubic(), id="lse-cubic"),
    pytest.param(lambda: nonlinear_equations(n=20, m=40, p=4), id="nonlinear-equations-p4"),
    pytest.param(lambda: cubic_lipschitz(), id="cubic-lipschitz"),
]
CONVEX = [p for p in PROBLEMS if p.id not in ("rosenbrock", "chebyshev-rosenbrock-3")]


class StricterSuperAcceptance(SuperUniversalRule):
    """Acceptance constant 1/2 instead of 1/4."""

    def accept(self, pt: Point, trial: Trial, f_new: float, g_new: torch.Tensor, gnorm_new: float) -> bool:
        return float(torch.dot(g_new, -trial.d)) >= gnorm_new**2 / (2.0 * trial.lam)


class LooserSuperAcceptance(SuperUniversalRule):
    """Acceptance constant 1/8 instead of 1/4."""

    def accept(self, pt: Point, trial: Trial, f_new: float, g_new: torch.Tensor, gnorm_new: float) -> bool:
        return float(torch.dot(g_new, -trial.d)) >= gnorm_new**2 / (8.0 * trial.lam)


class HalvesOnSuccess(SuperUniversalRule):
    """H <- H/2 after a success (instead of H/4)."""

    def on_success(self, H: float) -> float:
        return max(H / 2.0, self.H_min)


class DoublesOnFailure(SuperUniversalRule):
    """H <- 2H after a failure (instead of 4H)."""

    def on_failure(self, H: float) -> float:
        return 2.0 * H


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def recorded(problem, rule):
    rec = TrialRecorder(rule)
    res = run(problem, problem.x0, rec, 1.0, maxiter=2000, gtol=1e-9, method=type(rule).__name__)
    return res, rec


@pytest.mark.parametrize("alpha", [1.0, 2.0 / 3.0])
@pytest.mark.parametrize("make", PROBLEMS)
def test_super_acceptance_and_search(make, alpha):
    """Statements 1b and 2b for alpha = 1 (code default) and 2/3 (the paper's range [2/3, 1]):
    accepted <=> <g(x+), x - x+> >= ||g(x+)||^2/(4 lam) (recomputed; ties within 1e-10 relative excluded),
    and every H is the replayed max(H/4, H_min) / 4H."""
    problem = make()
    res, rec = recorded(problem, SuperUniversalRule(alpha, H_MIN))
    assert res.success
    both = acceptance_both_ways(rec, "super-universal")
    assert both.holds, both
    replay = search_replay(rec, "super-universal", floor=H_MIN)
    assert replay.holds, replay


def test_super_production_entry_point_matches_rule():
    """The production ``super_newton`` takes the same steps as the rule run through the recorder."""
    problem = rosenbrock_instance()
    cb, xs = collect_iterates()
    super_newton(problem, problem.x0, maxiter=2000, gtol=1e-9, callback=cb)
    cbr, xr = collect_iterates()
    run(problem, problem.x0, TrialRecorder(SuperUniversalRule(1.0, H_MIN)), 1.0, maxiter=2000, gtol=1e-9, callback=cbr)
    assert len(xs) == len(xr) > 10
    assert max(float(torch.linalg.vector_norm(a - b)) for a, b in zip(xs, xr)) == 0.0


@pytest.mark.parametrize("make", PROBLEMS)
def test_super_acceptance_would_catch_stricter_constant(make):
    """Would catch: constant 1/2: rejected trials that satisfy the 1/4 test (on every problem here)."""
    _, rec = recorded(make(), StricterSuperAcceptance(1.0, H_MIN))
    check = acceptance_both_ways(rec, "super-universal")
    assert not check.holds and check.details["wrongly_rejected"], check


@pytest.mark.parametrize("make", [p for p in PROBLEMS if p.id != "logistic"])
def test_super_acceptance_would_catch_looser_constant(make):
    """Would catch: constant 1/8: accepted trials that violate the 1/4 test. (On the logistic instance
    no trial falls between the two constants.)"""
    _, rec = recorded(make(), LooserSuperAcceptance(1.0, H_MIN))
    check = acceptance_both_ways(rec, "super-universal")
    assert not check.holds and check.details["wrongly_accepted"], check


@pytest.mark.parametrize("twin", [HalvesOnSuccess, DoublesOnFailure])
def test_super_search_would_catch_wrong_factors(twin):
    """Would catch: H/2 after a success or 2H after a failure (Rosenbrock)."""
    _, rec = recorded(rosenbrock_instance(), twin(1.0, H_MIN))
    check = search_replay(rec, "super-universal", floor=H_MIN)
    assert not check.holds and check.measured > 0, check


@pytest.mark.parametrize("make", CONVEX)
def test_super_decrease_convex(make):
    """Statement 1 at constant 4 (derived for convex f): f_k - f_{k+1} >= <g_{k+1}, x_k - x_{k+1}> >=
    ||g_{k+1}||^2/(4 lam_k) on every accepted step; f non-increasing; the sum bound by f_0 - f*."""
    problem = make()
    res, _ = recorded(problem, SuperUniversalRule(1.0, H_MIN))
    check = acceptance_invariant(res, problem.f_star, constant=4.0)
    assert check.holds, check


def test_super_decrease_would_catch_looser_constant():
    """Would catch: with the 1/8 test, accepted steps decrease f by less than ||g_{k+1}||^2/(4 lam_k)
    (nonlinear equations, p = 4)."""
    problem = nonlinear_equations(n=20, m=40, p=4)
    res, _ = recorded(problem, LooserSuperAcceptance(1.0, H_MIN))
    check = acceptance_invariant(res, problem.f_star, constant=4.0)
    assert not check.holds, check
