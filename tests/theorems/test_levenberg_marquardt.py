"""Proofs as tests for Levenberg–Marquardt (Moré 1978) and Gauss–Newton (spec 50 §4 and §6.5).

The statements, their derivations and their tolerances are the checkers of :mod:`optlib.theory.least_squares`;
each is measured on a problem whose constants are known in closed form (or against MINPACK itself through
:func:`scipy.optimize.leastsq`) and has a "would catch" twin: a deliberately wrong variant (a subclass of
:class:`~optlib.least_squares.TrustRegionRule` or :class:`~optlib.least_squares.ArmijoRule` differing in one
place, run through the same production loop, or Levenberg's unscaled damping) for which the same check fails.
"""

from __future__ import annotations

import pytest

from optlib.least_squares import ArmijoRule, TrustRegionRule
from optlib.theory import least_squares as ls


# ------------------------------------------------------------------------------------------------
# Deliberately wrong variants (each differs from the production rule in one place)
# ------------------------------------------------------------------------------------------------
class LambdaFloor(TrustRegionRule):
    """Never lets lambda fall below 1e-2 (in the scaled variables): no Gauss–Newton steps."""

    def step(self, sub, delta, lam):
        lam, _ = super().step(sub, delta, lam)
        lam = max(lam, 1e-2)
        return lam, sub.step(lam)


class HalfStep(TrustRegionRule):
    """Takes half of Moré's step (a wrong factor in the solve)."""

    def step(self, sub, delta, lam):
        lam, w = super().step(sub, delta, lam)
        return lam, 0.5 * w


class DoubleStep(TrustRegionRule):
    """Takes twice Moré's step (ignores the trust radius it was computed for)."""

    def step(self, sub, delta, lam):
        lam, w = super().step(sub, delta, lam)
        return lam, 2.0 * w


class WrongSignGainRatio(TrustRegionRule):
    """rho = -ared / pred: accepts the steps that increase F."""

    def gain_ratio(self, actred, prered):
        return -super().gain_ratio(actred, prered)


class StrictAcceptance(TrustRegionRule):
    """Accepts only rho >= 1/4 (the radius-shrink threshold used as the acceptance threshold)."""

    accept_threshold = 0.25


class InvertedLambdaUpdate(TrustRegionRule):
    """After a rejected trial (rho <= 1/4) lambda <- lambda * mu instead of lambda / mu (the issue's surviving bug)."""

    def update(self, *, ratio, actred, dirder, huge, delta, pnorm, lam):
        new_delta, new_lam = super().update(ratio=ratio, actred=actred, dirder=dirder, huge=huge, delta=delta,
                                            pnorm=pnorm, lam=lam)
        if ratio <= 0.25 and new_lam > 0.0:
            mu = lam / new_lam
            new_lam = lam * mu
        return new_delta, new_lam


class AbsSlopeArmijo(ArmijoRule):
    """Armijo's test with |slope| (F may increase by c1 t |slope|; the issue's surviving bug)."""

    def accept(self, cost, cost_new, t, slope):
        return cost_new <= cost + self.c1 * t * abs(slope)


# ---------------------------------------------------------------------------------------------- 1
@pytest.mark.parametrize("x0", [(-1.2, 1.0), (-2.0, 2.0), (3.0, -4.0)])
def test_rosenbrock_zero_residual_steps_are_quadratic_with_constant_one(x0):
    check = ls.zero_residual_error_square(x0)
    assert check.holds, check


def test_rosenbrock_zero_residual_would_catch_lambda_floor():
    """Would catch: damping that never vanishes converges only linearly, e_{k+1}/e_k^2 grows like 1/e_k."""
    check = ls.zero_residual_error_square(rule=LambdaFloor())
    assert not check.holds and check.measured > 1.0, check


# ---------------------------------------------------------------------------------------------- 2
def test_zero_residual_quadratic_constant_matches_closed_form():
    check = ls.zero_residual_quadratic_constant()
    assert check.holds, check


def test_zero_residual_quadratic_constant_would_catch_lambda_floor():
    """Would catch: with lambda >= 1e-2 the ratio e_{k+1}/e_k^2 leaves every bound as e_k -> 0."""
    check = ls.zero_residual_quadratic_constant(rule=LambdaFloor())
    assert not check.holds, check


# ---------------------------------------------------------------------------------------------- 3
@pytest.mark.parametrize("t", [0.5, -0.5, 0.25])
def test_large_residual_converges_linearly_at_rate_t(t):
    check = ls.large_residual_linear_rate(t)
    assert check.holds, check


def test_large_residual_rate_would_catch_half_step():
    """Would catch: half of the Gauss–Newton step contracts by 1 - (1 - t)/2 = 0.75, not t = 0.5."""
    check = ls.large_residual_linear_rate(0.5, rule=HalfStep())
    assert not check.holds and check.details["rate"] == pytest.approx(0.75, rel=0.02), check


# ---------------------------------------------------------------------------------------------- 4
NIST_CASES = [("Misra1a", 1), ("Thurber", 1), ("MGH09", 2), ("Eckerle4", 1)]


@pytest.mark.parametrize("name,start", NIST_CASES)
def test_accepted_steps_decrease_the_cost_and_the_gain_ratio_is_the_true_one(name, start):
    check = ls.gain_ratio_is_true_ratio(name, start)
    assert check.holds, check


def test_gain_ratio_would_catch_wrong_sign():
    """Would catch: rho = -ared/pred accepts the steps that increase F."""
    check = ls.gain_ratio_is_true_ratio("Misra1a", 1, rule=WrongSignGainRatio(), max_nfev=200)
    assert not check.holds, check


# ---------------------------------------------------------------------------------------------- 5
@pytest.mark.parametrize("name,start", [("Bennett5", 2), ("MGH10", 2), ("Thurber", 1)])
def test_acceptance_matches_the_gain_ratio_threshold_both_ways(name, start):
    check = ls.gain_ratio_thresholds(name, start)
    assert check.holds, check


def test_acceptance_both_ways_would_catch_strict_threshold():
    """Would catch: rejecting trials with 1e-4 <= rho < 1/4 (the 'rejected => rho < 1e-4' direction)."""
    check = ls.gain_ratio_thresholds("Bennett5", 2, rule=StrictAcceptance())
    assert not check.holds and check.details["wrong_reject"] > 0, check


def test_acceptance_both_ways_would_catch_wrong_sign():
    """Would catch: rho = -ared/pred accepts trials with rho < 1e-4 (the 'accepted => rho >= 1e-4' direction)."""
    check = ls.gain_ratio_thresholds("Misra1a", 1, rule=WrongSignGainRatio(), max_nfev=300)
    assert not check.holds and check.details["wrong_accept"] > 0, check


# ---------------------------------------------------------------------------------------------- 6
@pytest.mark.parametrize("name,start", NIST_CASES)
def test_steps_stay_in_the_trust_region(name, start):
    check = ls.trust_region_bound(name, start)
    assert check.holds, check


def test_trust_region_would_catch_double_step():
    """Would catch: doubling the step puts it at twice the radius whenever lambda > 0."""
    check = ls.trust_region_bound("Misra1a", 1, rule=DoubleStep())
    assert not check.holds, check


# ---------------------------------------------------------------------------------------------- 7
def test_marquardt_scaling_makes_the_iterates_scale_invariant():
    check = ls.scale_invariance(None)
    assert check.holds, check


def test_scale_invariance_would_catch_no_marquardt_scaling():
    """Would catch: Levenberg's unscaled lambda I (x_scale=1, D = I) follows different iterates."""
    check = ls.scale_invariance(1.0)
    assert not check.holds and (check.measured > 1e-2 or check.details["iterates"][0] != check.details["iterates"][1])


# ---------------------------------------------------------------------------------------------- 8
@pytest.mark.parametrize("name,start", ls.PARITY_CASES)
def test_lm_matches_minpack_nfev_and_x(name, start):
    check = ls.minpack_parity(name, start)
    assert check.holds, check


@pytest.mark.parametrize("name,start", ls.PARITY_CASES)
def test_minpack_parity_would_catch_inverted_lambda_update(name, start):
    """Would catch: lambda <- lambda * mu after a rejected trial changes nfev on every parity case."""
    check = ls.minpack_parity(name, start, rule=InvertedLambdaUpdate())
    assert not check.holds and check.measured > 0, check


# ---------------------------------------------------------------------------------------------- 9
def test_gauss_newton_armijo_uses_the_signed_slope():
    check = ls.armijo_signed_slope()
    assert check.holds, check


def test_armijo_would_catch_abs_slope():
    """Would catch: with |slope| the unit step to x = -1 (F unchanged) is accepted and the run oscillates."""
    check = ls.armijo_signed_slope(rule=AbsSlopeArmijo())
    assert not check.holds and check.measured > 0, check


def test_table_holds():
    rows = ls.least_squares_table(quick=True)
    assert rows and all(r.holds for r in rows), [str(r) for r in rows if not r.holds]
