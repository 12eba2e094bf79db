"""The ``factor=1`` variant of Levenberg–Marquardt (MINPACK's initial step bound) on the NIST StRD problems.

Statements (see "Initial step bound" in :mod:`optlib.least_squares.lm`)

1. The update rule, on a hand case. With Marquardt scaling :math:`d_{0,j} = \\|J_{:j}(x_0)\\|`, the first
   trial solves the subproblem for the radius :math:`\\Delta_0 = \\text{factor}\\cdot\\|D_0x_0\\|`: it is the
   Gauss–Newton step (:math:`\\lambda = 0`) when that has :math:`\\|D_0p\\| \\le 1.1\\Delta_0`, and otherwise
   the solution of :math:`(J_0^\\top J_0 + \\lambda D_0^2)p = -J_0^\\top r_0` with :math:`\\lambda > 0` and
   :math:`|\\|D_0p\\| - \\Delta_0| \\le 0.1\\Delta_0` (Moré 1978; MINPACK's ``lmder``/``lmpar``). Checked on
   Rosenbrock's residuals from :math:`(-1.2, 1)`, where every quantity has a closed form.
2. The variant reaches the certified parameters of every shipped NIST problem from both starts (LRE at
   least 6, RSS to 9 digits up to float64 evaluation error) within :math:`100\\,n(n+1)` evaluations;
   BoxBOD and MGH09 from start 1 within scipy's default budget :math:`100\\,n`.
3. The cause is the step bound and not this implementation: MINPACK itself
   (:func:`scipy.optimize.leastsq`) with ``factor=1`` reaches BoxBOD from start 1, with ``factor=100``
   (``scipy.optimize.least_squares(method="lm")``) it does not.

"Would catch" twins: MINPACK's default bound (100) stalls on BoxBOD's plateau, where the :math:`b_2`
column of the Jacobian underflows (the NIST check of 2 fails for it); a rule that drops the ``factor``
it is given fails the hand check of 1.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.optimize import least_squares as scipy_least_squares
from scipy.optimize import leastsq

import optlib
from optlib.least_squares import TrustRegionRule, least_squares
from optlib.problems.nist import load_nist, nist_problems

EPS = np.finfo(np.float64).eps
TOL = dict(ftol=1e-15, xtol=1e-15, gtol=1e-15)
REQUIRED_LRE = 6.0
ALL = nist_problems()


def budget(p) -> int:
    """The evaluation budget of the variant's check: 100 n (n + 1)."""
    return 100 * p.n * (p.n + 1)


# ---------------------------------------------------------------------------------------- 1. the hand case
def rosen(x):
    return np.array([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])


def rosen_jac(x):
    return np.array([[-20.0 * x[0], 10.0], [-1.0, 0.0]])


X0 = np.array([-1.2, 1.0])
R0 = np.array([10.0 * (1.0 - 1.44), 2.2])  # r(x0)
J0 = np.array([[24.0, 10.0], [-1.0, 0.0]])  # J(x0)
D0 = np.array([math.sqrt(24.0**2 + 1.0), 10.0])  # column norms of J(x0)
DX0 = math.sqrt((D0[0] * 1.2) ** 2 + (D0[1] * 1.0) ** 2)  # ||D0 x0|| = sqrt(577 * 1.44 + 100) = 30.510...
P_GN = np.array([2.2, (4.4 - 24.0 * 2.2) / 10.0])  # J0 p = -r0: p1 = 2.2, p2 = -4.84
DP_GN = float(np.linalg.norm(D0 * P_GN))  # ||D0 p_GN|| = sqrt(577 * 4.84 + 100 * 4.84**2) = 71.66...


class Recording(TrustRegionRule):
    """Moré's rule, recording each trial's radius, lambda and step."""

    def __init__(self, factor=None):
        super().__init__(factor)
        self.trials = []

    def step(self, sub, delta, lam):
        lam, w = super().step(sub, delta, lam)
        self.trials.append((delta, lam, np.asarray(sub.to_x(w), dtype=float).copy()))
        return lam, w


class DropsFactor(Recording):
    """Would catch: ignores the factor it is given (MINPACK's 100 whatever the option says)."""

    def __init__(self, factor=None):
        super().__init__(None)


def check_first_trial(rule: Recording, factor: float) -> None:
    """Statement 1 for the first trial of ``rule`` on Rosenbrock from (-1.2, 1)."""
    least_squares(rosen, X0, rosen_jac, rule=rule, maxiter=1)
    delta0, lam, p = rule.trials[0]
    assert delta0 == pytest.approx(factor * DX0, rel=1e-13)
    if DP_GN <= 1.1 * delta0:
        assert lam == 0.0
        np.testing.assert_allclose(p, P_GN, rtol=1e-12)
    else:
        assert lam > 0.0
        assert abs(np.linalg.norm(D0 * p) - delta0) <= 0.1 * delta0
        # the damped normal equations, from the closed-form J0, r0, D0
        np.testing.assert_allclose((J0.T @ J0 + lam * np.diag(D0**2)) @ p, -J0.T @ R0, rtol=1e-10, atol=1e-12)


def test_hand_case_numbers():
    """The closed forms above are Rosenbrock's residual, Jacobian and Gauss–Newton step at x0."""
    np.testing.assert_array_equal(rosen(X0), R0)
    np.testing.assert_array_equal(rosen_jac(X0), J0)
    np.testing.assert_allclose(J0 @ P_GN, -R0, rtol=0, atol=1e-14)
    assert DX0 == pytest.approx(30.5103, abs=1e-4) and DP_GN == pytest.approx(71.6606, abs=1e-4)


@pytest.mark.parametrize("factor", [0.1, 1.0, 2.0, 3.0, 100.0])
def test_first_trial_solves_the_subproblem_for_the_initial_bound(factor):
    # 0.1, 1 and 2 give a damped first step (||D0 p_GN|| = 71.7 > 1.1 factor 30.5); 3 and 100 the GN step
    check_first_trial(Recording(factor), factor)


def test_dropping_the_factor_would_fail_the_hand_check():
    check_first_trial(DropsFactor(100.0), 100.0)  # agrees by construction at MINPACK's default
    with pytest.raises(AssertionError):
        check_first_trial(DropsFactor(1.0), 1.0)


# ---------------------------------------------------------------------------------------- 2. the NIST problems
def rss_tolerance(p) -> float:
    """RSS to 9 digits plus the float64 evaluation error of the residuals (Lanczos1's certified RSS,
    1.4e-25, is below the latter)."""
    r = p.residuals(p.certified)
    err = 16 * EPS * (np.abs(p.model(p.certified)) + np.abs(p.y))
    return 1e-9 * p.certified_rss + 2 * float(np.abs(r) @ err) + float(err @ err)


@pytest.fixture(scope="module")
def factor1_runs():
    out = {}
    for name in ALL:
        p = load_nist(name)
        for start in (1, 2):
            out[name, start] = least_squares(p.residuals, p.start(start), p.jacobian, factor=1.0,
                                             max_nfev=budget(p), **TOL)
    return out


@pytest.mark.parametrize("name", ALL)
def test_factor_one_reaches_the_certified_parameters(factor1_runs, name):
    p = load_nist(name)
    for start in (1, 2):
        res = factor1_runs[name, start]
        assert res.success, f"{name} start {start}: {res.message}"
        assert res.nfev <= budget(p)
        lre = p.min_lre(res.x)
        assert lre >= REQUIRED_LRE, f"{name} start {start}: LRE {lre:.2f} after {res.nfev} evaluations"
        assert abs(2 * res.cost - p.certified_rss) <= rss_tolerance(p), f"{name} start {start}"


@pytest.mark.parametrize("name", ["BoxBOD", "MGH09"])
def test_factor_one_reaches_the_hard_starts_within_the_default_budget(name):
    """BoxBOD and MGH09 from start 1 within scipy's default 100 n (about 31 of 200 and 116 of 400
    evaluations; MGH17 needs about its 500, Bennett5 about 765 of 300: the narrow valleys of the module
    docstring)."""
    p = load_nist(name)
    res = least_squares(p.residuals, p.start(1), p.jacobian, factor=1.0, **TOL)  # max_nfev = 100 n
    assert res.success and p.min_lre(res.x) >= REQUIRED_LRE, f"{name}: {res.message}"


def test_minpack_default_bound_stalls_on_boxbods_plateau():
    """Would catch: with factor 100 the first step takes b2 from 1 to about 111, exp(-b2 x) underflows and
    the run ends at b1 = mean(y), RSS 9771.5, certified 1168.0 (the check above fails for it)."""
    p = load_nist("BoxBOD")
    res = least_squares(p.residuals, p.start(1), p.jacobian, max_nfev=budget(p), **TOL)
    assert p.min_lre(res.x) < 1
    d0 = np.linalg.norm(p.jacobian(p.start(1)), axis=0)
    assert res.trace[1]["radius"] == pytest.approx(100 * np.linalg.norm(d0 * p.start(1)), rel=1e-12)
    assert res.x[1] > 50  # b2 evaporated (certified 0.547)
    assert res.x[0] == pytest.approx(np.mean(p.y), rel=1e-12)
    assert np.linalg.norm(res.jac[:, 1]) < 1e-40  # the b2 column underflowed
    assert 2 * res.cost == pytest.approx(6 * np.var(p.y), rel=1e-12)  # the constant model's RSS
    assert abs(2 * res.cost - p.certified_rss) > rss_tolerance(p)


# ---------------------------------------------------------------------------------------- 3. MINPACK agrees
def test_minpack_with_the_same_bounds_behaves_the_same_on_boxbod():
    p = load_nist("BoxBOD")
    x0 = p.start(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x1, _, info, _, ier = leastsq(p.residuals, x0, Dfun=p.jacobian, full_output=True, factor=1.0,
                                      maxfev=budget(p), **TOL)
        ref = scipy_least_squares(p.residuals, x0, p.jacobian, method="lm", max_nfev=budget(p), **TOL)
    assert ier in (1, 2, 3, 4) and p.min_lre(x1) >= REQUIRED_LRE
    assert p.min_lre(ref.x) < 1 and ref.x[0] == pytest.approx(np.mean(p.y), rel=1e-9)
    ours = least_squares(p.residuals, x0, p.jacobian, factor=1.0, max_nfev=budget(p), **TOL)
    # same algorithm up to the linear algebra (SVD here, QR in MINPACK): a few evaluations apart
    assert abs(ours.nfev - info["nfev"]) <= 5


# ---------------------------------------------------------------------------------------- the option
def test_factor_option_is_the_rules_factor_and_reaches_minimize():
    p = load_nist("BoxBOD")
    a = least_squares(p.residuals, p.start(1), p.jacobian, factor=1.0, **TOL)
    b = least_squares(p.residuals, p.start(1), p.jacobian, rule=TrustRegionRule(factor=1.0), **TOL)
    assert a.nfev == b.nfev and np.array_equal(a.x, b.x)
    prob = p.problem(start=1)
    res = optlib.minimize(prob, prob.x0, method="levenberg-marquardt", factor=1.0, **TOL)
    assert res.success and p.min_lre(res.x) >= REQUIRED_LRE
    assert res.nres == a.nfev
