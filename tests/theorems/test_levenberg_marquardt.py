"""Proofs as tests for Levenberg–Marquardt (Moré 1978) and Gauss–Newton (spec 50 §4 and §6.5).

Each statement is measured on a problem whose constants are known in closed form, with reference
numbers computed independently (closed-form residuals and Jacobians, never the solver's own
quantities), and has a "would catch" twin: a deliberately wrong variant (a subclass of
:class:`~optlib.least_squares.TrustRegionRule` differing in one place, or Levenberg's unscaled damping)
for which the same check fails.

Statements

1. Zero residual, quadratic convergence. For Rosenbrock's residuals u = (1 - x1, 10 (x2 - x1^2))
   (m = n = 2, J invertible everywhere) a Gauss–Newton step is Newton's step for u(x) = 0, and since
   u2 is quadratic with Hessian diag(-20, 0) the error obeys exactly (derived):
   e+ = x+ - x* = J(x)^{-1} (J(x) e - u(x)) = J(x)^{-1} (0, -10 e1^2) = (0, -e1^2),
   so ||e_{k+1}|| <= ||e_k||^2 with constant 1. Levenberg–Marquardt takes the Gauss–Newton step
   (lambda = 0) once it fits in the trust region, so every step from ||e_k|| <= 0.1 satisfies it.
2. Zero residual, the quadratic constant. For u(x) = (x^2 - 1, x^3 - 1) (m = 2, n = 1, x* = 1),
   expanding u and J around x* in the Gauss–Newton step gives (derived)
   e_{k+1} / e_k^2 -> C* = |J*^T u''*| / (2 ||J*||^2) = (2*2 + 3*6) / (2 * 13) = 11/13.
3. Large residual, linear convergence. For r(x) = (x + 1, t x^2 + x - 1), x* = 0 is a minimizer for
   t < 1 with residual (1, -1); the Gauss–Newton map x -> x - J^T r / J^T J has derivative
   1 - F''(0) / (J^T J) = 1 - (2 - 2t)/2 = t at x* (derived; Dennis & Schnabel 1983, §10.2 give the
   general rate ||(J^T J)^{-1} sum_i r_i Hess r_i||). The fitted contraction is |t|: in (0, 1) and
   bounded away from 0.
4. The gain ratio. Each accepted step decreases F, and the ratio the method acts on equals
   (||r_k||^2 - ||r_{k+1}||^2) / (||r_k||^2 - ||r_k + J_k s_k||^2) recomputed from closed forms
   (the actual over the predicted reduction of Moré 1978, §2).
5. Trust region. ||D_k p|| <= 1.1 Delta_k, and |‖D_k p‖ - Delta_k| <= 0.1 Delta_k when lambda > 0 (the
   conditions MINPACK's lmpar documents for its lambda; Moré, Garbow & Hillstrom 1980).
6. Scale invariance of Marquardt scaling. With D_k = diag of the running maximum of the column norms
   of J, the iterates of LM on F(S z) are S^{-1} times the iterates on F(x) for any positive diagonal S
   (derived: with x = S z the Jacobian is J S, its column norms and hence D scale by S, so D p, the
   initial radius and every test are the same numbers in both runs).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from optlib.least_squares import TrustRegionRule, least_squares
from optlib.problems.nist import load_nist
from optlib.theory.common import fit_line

TIGHT = dict(ftol=1e-15, xtol=1e-15, gtol=1e-15)


# ------------------------------------------------------------------------------------------------
# Deliberately wrong variants (each differs from TrustRegionRule in one place)
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


# ------------------------------------------------------------------------------------------------
# Problems (closed-form residuals and Jacobians)
# ------------------------------------------------------------------------------------------------
def rosen(x):
    return np.array([1.0 - x[0], 10.0 * (x[1] - x[0] ** 2)])


def rosen_jac(x):
    return np.array([[-1.0, 0.0], [-20.0 * x[0], 10.0]])


def cubic_pair(x):
    return np.array([x[0] ** 2 - 1.0, x[0] ** 3 - 1.0])


def cubic_pair_jac(x):
    return np.array([[2.0 * x[0]], [3.0 * x[0] ** 2]])


def large_residual(t):
    def fun(x):
        return np.array([x[0] + 1.0, t * x[0] ** 2 + x[0] - 1.0])

    def jac(x):
        return np.array([[1.0], [2.0 * t * x[0] + 1.0]])

    return fun, jac


def run_collect(fun, x0, jac, **kw):
    """Run LM; return (result, iterates x_0..x_K, the step records of the accepted steps)."""
    xs = [np.asarray(x0, dtype=float)]
    steps = []

    def cb(intermediate_result):
        xs.append(np.array(intermediate_result.x))
        steps.append(dict(intermediate_result))

    res = least_squares(fun, x0, jac, callback=cb, **kw)
    return res, xs, steps


# ------------------------------------------------------------------------------------------------
# Checks (each returns the measured quantities; the tests assert on them)
# ------------------------------------------------------------------------------------------------
def quadratic_ratios(xs, x_star, e_max, e_floor=1e-7):
    """e_{k+1} / e_k^2 over the steps that start at e_floor < e_k <= e_max."""
    e = np.array([np.linalg.norm(x - x_star) for x in xs])
    keep = (e[:-1] <= e_max) & (e[:-1] > e_floor)
    return e[1:][keep] / e[:-1][keep] ** 2, e


def tail_contraction(xs, x_star, lo=1e-10, hi=1e-3):
    """exp(slope) of the line through log e_k over the iterates with lo < e_k < hi."""
    e = np.array([np.linalg.norm(x - x_star) for x in xs])
    k = np.nonzero((e > lo) & (e < hi))[0]
    slope, _, r2 = fit_line(k, np.log(e[k]))
    return math.exp(slope), r2, k.size


# ---------------------------------------------------------------------------------------------- 1
@pytest.mark.parametrize("x0", [[-1.2, 1.0], [-2.0, 2.0], [3.0, -4.0]])
def test_rosenbrock_zero_residual_steps_are_quadratic_with_constant_one(x0):
    res, xs, steps = run_collect(rosen, x0, rosen_jac, **TIGHT)
    assert res.success
    # every step that starts near x* satisfies the bound (Rosenbrock's Gauss–Newton steps jump from
    # ||e|| ~ 1 to the rounding level, so this window may hold no step; the twin below fills it)
    ratios, e = quadratic_ratios(xs, np.ones(2), e_max=0.1)
    assert np.all(ratios <= 1.0 + 1e-9)
    # the run ends with Gauss–Newton steps (lambda = 0) ...
    gn_steps = [k for k, s in enumerate(steps) if s["lam"] == 0.0]
    assert len(gn_steps) >= 2 and gn_steps[-1] == len(steps) - 1
    # ... after each of which the error is exactly (0, -e1^2), so ||e_{k+1}|| <= ||e_k||^2
    for k in gn_steps:
        e_prev = xs[k] - 1.0
        np.testing.assert_allclose(xs[k + 1] - 1.0, [0.0, -e_prev[0] ** 2], rtol=1e-9, atol=1e-12)
        assert np.linalg.norm(xs[k + 1] - 1.0) <= np.linalg.norm(e_prev) ** 2 * (1 + 1e-9) + 1e-15
    assert e[-1] <= 1e-15


def test_lambda_floor_would_break_the_quadratic_bound():
    """Would catch: damping that never vanishes converges only linearly, e_{k+1}/e_k^2 grows like 1/e_k."""
    res, xs, _ = run_collect(rosen, [-1.2, 1.0], rosen_jac, rule=LambdaFloor(), max_nfev=400, **TIGHT)
    ratios, _ = quadratic_ratios(xs, np.ones(2), e_max=0.1)
    assert ratios.size >= 3 and ratios.max() > 1.0


# ---------------------------------------------------------------------------------------------- 2
def test_zero_residual_quadratic_constant_matches_closed_form():
    c_star = 11.0 / 13.0
    res, xs, steps = run_collect(cubic_pair, [3.0], cubic_pair_jac, **TIGHT)
    assert res.success
    ratios, e = quadratic_ratios(xs, np.ones(1), e_max=0.1, e_floor=1e-6)
    assert ratios.size >= 2
    assert ratios.max() <= 1.05 * c_star  # bounded by the constant (first order: C*(1 + O(e)))
    close, _ = quadratic_ratios(xs, np.ones(1), e_max=1e-2, e_floor=1e-6)
    assert close.size >= 1 and np.all(np.abs(close / c_star - 1.0) <= 0.02)


def test_lambda_floor_would_miss_the_quadratic_constant():
    """Would catch: with lambda >= 1e-2 the ratio e_{k+1}/e_k^2 leaves every bound as e_k -> 0."""
    _, xs, _ = run_collect(cubic_pair, [3.0], cubic_pair_jac, rule=LambdaFloor(), **TIGHT)
    ratios, _ = quadratic_ratios(xs, np.ones(1), e_max=0.1, e_floor=1e-6)
    assert ratios.size >= 2 and ratios.max() > 1.05 * 11.0 / 13.0


# ---------------------------------------------------------------------------------------------- 3
@pytest.mark.parametrize("t", [0.5, -0.5, 0.25])
def test_large_residual_converges_linearly_at_rate_t(t):
    fun, jac = large_residual(t)
    res, xs, steps = run_collect(fun, [1.0], jac, **TIGHT)
    assert res.success
    np.testing.assert_allclose(res.fun, [1.0, -1.0], atol=1e-7)  # a nonzero residual at x* = 0
    rate, r2, points = tail_contraction(xs, np.zeros(1))
    assert points >= 4 and r2 > 0.999
    assert 0.0 < rate < 1.0 and rate > 0.2  # linear: in (0, 1), bounded away from 0
    assert abs(rate - abs(t)) <= 0.02 * abs(t)
    # the steps on the tail are Gauss–Newton steps
    assert all(s["lam"] == 0.0 for s in steps[-points:])


def test_half_step_would_miss_the_linear_rate():
    """Would catch: half of the Gauss–Newton step contracts by 1 - (1 - t)/2 = 0.75, not t = 0.5."""
    fun, jac = large_residual(0.5)
    _, xs, _ = run_collect(fun, [1.0], jac, rule=HalfStep(), **TIGHT)
    rate, _, _ = tail_contraction(xs, np.zeros(1))
    assert abs(rate - 0.5) > 0.02 * 0.5
    assert rate == pytest.approx(0.75, rel=0.02)


# ---------------------------------------------------------------------------------------------- 4
def _gain_ratio_check(fun, jac, x0, rule=None, **kw):
    """(all accepted steps decrease F, max relative mismatch of rho) from closed forms."""
    res, xs, steps = run_collect(fun, x0, jac, rule=rule, **kw)
    decreasing = True
    mismatch = 0.0
    for k, s in enumerate(steps):
        r0, r1, J = fun(xs[k]), fun(xs[k + 1]), jac(xs[k])
        step = xs[k + 1] - xs[k]
        ared = r0 @ r0 - r1 @ r1
        pred = r0 @ r0 - np.sum((r0 + J @ step) ** 2)
        decreasing &= bool(ared > 0)
        if abs(ared) > 1e-10 * (r0 @ r0):  # a ratio of two rounding errors says nothing
            mismatch = max(mismatch, abs(s["ratio"] - ared / pred) / abs(ared / pred))
    return decreasing, mismatch, len(steps)


NIST_CASES = [("Misra1a", 1), ("Thurber", 1), ("MGH09", 2), ("Eckerle4", 1)]


@pytest.mark.parametrize("name,start", NIST_CASES)
def test_accepted_steps_decrease_the_cost_and_the_gain_ratio_is_the_true_one(name, start):
    p = load_nist(name)
    decreasing, mismatch, nsteps = _gain_ratio_check(p.residuals, p.jacobian, p.start(start))
    assert nsteps >= 3 and decreasing
    assert mismatch <= 1e-6


def test_gain_ratio_check_would_catch_wrong_sign():
    """Would catch: rho = -ared/pred accepts the steps that increase F."""
    p = load_nist("Misra1a")
    decreasing, mismatch, nsteps = _gain_ratio_check(p.residuals, p.jacobian, p.start(1),
                                                     rule=WrongSignGainRatio(), max_nfev=200)
    assert nsteps >= 1
    assert not decreasing or mismatch > 1e-6


# ---------------------------------------------------------------------------------------------- 5
def _trust_region_check(name, start, rule=None):
    p = load_nist(name)
    _, _, steps = run_collect(p.residuals, p.start(start), p.jacobian, rule=rule, **TIGHT)
    outside = max(s["step_norm"] / s["radius"] for s in steps)
    damped = [abs(s["step_norm"] - s["radius"]) / s["radius"] for s in steps if s["lam"] > 0]
    return outside, max(damped, default=0.0), len(damped)


@pytest.mark.parametrize("name,start", NIST_CASES)
def test_steps_stay_in_the_trust_region(name, start):
    outside, damped_gap, ndamped = _trust_region_check(name, start)
    assert outside <= 1.1 * (1 + 1e-12)
    assert damped_gap <= 0.1 * (1 + 1e-9)
    assert ndamped >= 1


def test_double_step_would_leave_the_trust_region():
    """Would catch: doubling the step puts it at twice the radius whenever lambda > 0."""
    outside, damped_gap, ndamped = _trust_region_check("Misra1a", 1, rule=DoubleStep())
    assert ndamped >= 1 and (outside > 1.1 or damped_gap > 0.1)


# ---------------------------------------------------------------------------------------------- 6
SCALES = np.array([1e3, 1e-5])


def _scale_deviation(x_scale):
    """Largest relative gap between the iterates on F(x) and S times the iterates on F(S z)."""
    p = load_nist("Misra1a")
    _, xa, _ = run_collect(p.residuals, p.start1, p.jacobian, x_scale=x_scale)
    _, zb, _ = run_collect(lambda z: p.residuals(SCALES * z), p.start1 / SCALES,
                           lambda z: p.jacobian(SCALES * z) * SCALES, x_scale=x_scale)
    xb = [SCALES * z for z in zb]
    k = min(len(xa), len(xb))
    dev = max(float(np.max(np.abs(a - b) / np.abs(a))) for a, b in zip(xa[:k], xb[:k]))
    return dev, len(xa), len(xb)


def test_marquardt_scaling_makes_the_iterates_scale_invariant():
    dev, na, nb = _scale_deviation(None)
    assert na == nb and na >= 5
    assert dev <= 1e-10


def test_no_marquardt_scaling_would_break_scale_invariance():
    """Would catch: Levenberg's unscaled lambda I (x_scale=1, D = I) follows different iterates."""
    dev, na, nb = _scale_deviation(1.0)
    assert dev > 1e-2 or na != nb
