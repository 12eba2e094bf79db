"""optlib.least_squares: the scipy-style API, agreement with scipy, Jacobian options, bad input,
callbacks, the optlib.minimize route, and the linear algebra of the subproblem.

References are independent computations: scipy.optimize.least_squares (MINPACK's lmder for
method="lm"), numpy.linalg.lstsq, and problems built with a known solution.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.optimize import Bounds, leastsq
from scipy.optimize import least_squares as scipy_least_squares

import optlib
from optlib.least_squares import (
    ArmijoRule,
    ScaledLeastSquares,
    TrustRegionRule,
    least_squares,
    levenberg_marquardt,
)
from optlib.problems import rosenbrock, rosenbrock_nle
from optlib.result import CALLBACK_STOP, MAXITER, SUCCESS

TIGHT = dict(ftol=1e-15, xtol=1e-15, gtol=1e-15)

# scipy.optimize.least_squares's status codes (its documentation, "status : int"), which least_squares
# uses exactly; -3 and -4 are the two failures scipy's lm does not have.
SCIPY_STATUS = {"callback": -2, "max_nfev": 0, "maxiter": 0, "gtol": 1, "ftol": 2, "xtol": 3, "ftol+xtol": 4,
                "nonfinite": -3, "line_search": -4}


def rosen(x):
    return np.array([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])


def rosen_jac(x):
    return np.array([[-20.0 * x[0], 10.0], [-1.0, 0.0]])


def rosen_torch(x):
    return torch.stack((10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]))


# exponential decay with noise: a residual problem with nonzero residual at the solution
T = np.linspace(0.0, 4.0, 25)
Y = 3.0 * np.exp(-1.3 * T) + 0.5 + 0.01 * np.sin(7.0 * T)


def expo(b, t=T, y=Y):
    return b[0] * np.exp(-b[1] * t) + b[2] - y


def expo_jac(b, t=T, y=Y):
    e = np.exp(-b[1] * t)
    return np.stack([e, -b[0] * t * e, np.ones_like(t)], axis=1)


# ---------------------------------------------------------------------------------------- results
def test_result_fields_numpy_in_numpy_out():
    res = least_squares(expo, [1.0, 1.0, 0.0], expo_jac)
    assert res.success and res.status == SCIPY_STATUS[res.termination] > 0
    assert isinstance(res.x, np.ndarray) and res.x.shape == (3,)
    assert res.fun.shape == (25,) and res.jac.shape == (25, 3)
    np.testing.assert_allclose(res.fun, expo(res.x), rtol=0, atol=0)
    np.testing.assert_allclose(res.jac, expo_jac(res.x), rtol=0, atol=0)
    assert res.cost == pytest.approx(0.5 * res.fun @ res.fun, rel=1e-15)
    np.testing.assert_allclose(res.grad, res.jac.T @ res.fun, rtol=1e-12, atol=1e-15)
    assert res.optimality == pytest.approx(np.abs(res.grad).max(), rel=1e-12)
    assert res.termination in ("gtol", "ftol", "xtol", "ftol+xtol")
    assert res.nfev >= res.nit + 1 and res.njev >= 1 and res.nfev_jac == 0
    assert res.method == "lm" and "termination condition" in res.message
    # one trace record per accepted iterate, x0 included and the returned x last; the cost never increases
    assert len(res.trace) == res.nit + 1
    assert [rec["k"] for rec in res.trace] == list(range(res.nit + 1))
    assert res.trace[-1]["f"] == res.cost and res.trace[-1]["optimality"] == res.optimality
    f = res.trace.column("f")
    assert np.all(np.diff(f) <= 0)


def test_tensor_in_tensor_out_with_autodiff():
    x0 = torch.tensor([-1.2, 1.0], dtype=torch.float64)
    res = least_squares(rosen_torch, x0)
    assert isinstance(res.x, torch.Tensor) and res.x.device == x0.device
    assert isinstance(res.jac, torch.Tensor)
    torch.testing.assert_close(res.x, torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-10)
    # autodiff gives the same iterates as the hand-written Jacobian
    ref = least_squares(rosen, [-1.2, 1.0], rosen_jac)
    assert res.nfev == ref.nfev and res.njev == ref.njev


# ---------------------------------------------------------------------------------------- scipy agreement
def test_lm_reproduces_minpack_on_rosenbrock():
    """Moré's algorithm as MINPACK implements it: the same evaluation counts and the same solution."""
    ours = least_squares(rosen, [-1.2, 1.0], rosen_jac, method="lm")
    ref = scipy_least_squares(rosen, [-1.2, 1.0], rosen_jac, method="lm")
    # both stop on gtol at a fresh Jacobian, so there is no extra Jacobian at the returned x to count
    assert ours.termination == "gtol" and ours.status == ref.status == 1
    assert (ours.nfev, ours.njev) == (ref.nfev, ref.njev)
    np.testing.assert_allclose(ours.x, ref.x, rtol=1e-12)
    assert ours.success and ref.success


@pytest.mark.parametrize("x0", [[1.0, 1.0, 0.0], [5.0, 0.2, 2.0], [0.1, 3.0, -1.0]])
def test_lm_agrees_with_scipy_lm_on_a_residual_problem(x0):
    ours = least_squares(expo, x0, expo_jac, **TIGHT)
    ref = scipy_least_squares(expo, x0, expo_jac, method="lm", **TIGHT)
    assert ours.success and ref.success
    np.testing.assert_allclose(ours.x, ref.x, rtol=1e-9)
    assert ours.cost == pytest.approx(ref.cost, rel=1e-12)
    assert abs(ours.nfev - ref.nfev) <= 3


@pytest.mark.parametrize("factor", [0.1, 1.0, 10.0, 100.0])
@pytest.mark.parametrize("problem", ["rosen", "expo1", "expo2"])
def test_lm_factor_reproduces_minpack_leastsq(problem, factor):
    """The initial step bound is MINPACK's ``factor``: the same evaluations and solution as
    scipy.optimize.leastsq (lmder) with that factor and the same tolerances."""
    fun, jac, x0 = {"rosen": (rosen, rosen_jac, [-1.2, 1.0]), "expo1": (expo, expo_jac, [1.0, 1.0, 0.0]),
                    "expo2": (expo, expo_jac, [5.0, 0.2, 2.0])}[problem]
    tols = dict(ftol=1e-8, xtol=1e-8, gtol=1e-8)
    ours = least_squares(fun, x0, jac, factor=factor, **tols)
    x, _, info, _, ier = leastsq(fun, x0, Dfun=jac, full_output=True, factor=factor, **tols)
    assert ours.success and ier in (1, 2, 3, 4)
    assert ours.nfev == info["nfev"]
    np.testing.assert_allclose(ours.x, x, rtol=1e-10, atol=1e-12)


def test_default_factor_is_minpacks_100():
    assert TrustRegionRule().factor == 100.0 and TrustRegionRule(factor=2).factor == 2.0
    runs = [least_squares(expo, [5.0, 0.2, 2.0], expo_jac, **kw)
            for kw in ({}, {"factor": 100.0}, {"rule": TrustRegionRule(factor=100.0)})]
    assert len({r.nfev for r in runs}) == 1 and all(np.array_equal(r.x, runs[0].x) for r in runs)
    # and a different factor is a different run
    assert least_squares(expo, [5.0, 0.2, 2.0], expo_jac, factor=1.0).nfev != runs[0].nfev


def test_factor_bad_input():
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="factor .*positive and finite"):
            least_squares(rosen, [-1.2, 1.0], rosen_jac, factor=bad)
    with pytest.raises(ValueError, match="factor .*must be a number"):
        least_squares(rosen, [-1.2, 1.0], rosen_jac, factor="large")
    with pytest.raises(ValueError, match="positive and finite"):
        TrustRegionRule(factor=-2.0)
    with pytest.raises(ValueError, match="option of method 'lm'"):
        least_squares(rosen, [-1.2, 1.0], rosen_jac, method="gn", factor=1.0)
    with pytest.raises(ValueError, match="not both"):
        least_squares(rosen, [-1.2, 1.0], rosen_jac, factor=1.0, rule=TrustRegionRule())


def test_gauss_newton_agrees_with_scipy_on_the_solution():
    ours = least_squares(expo, [1.0, 1.0, 0.0], expo_jac, method="gn", **TIGHT)
    ref = scipy_least_squares(expo, [1.0, 1.0, 0.0], expo_jac, method="trf", **TIGHT)
    assert ours.success
    np.testing.assert_allclose(ours.x, ref.x, rtol=1e-9)


def test_linear_problem_is_solved_like_lstsq():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((30, 5))
    b = rng.standard_normal(30)
    ref = np.linalg.lstsq(A, b, rcond=None)[0]
    for method in ("lm", "gn"):
        res = least_squares(lambda x: A @ x - b, np.zeros(5), lambda x: A, method=method, **TIGHT)
        np.testing.assert_allclose(res.x, ref, rtol=1e-12, atol=1e-12)
    # Gauss–Newton solves a linear problem in one step
    res = least_squares(lambda x: A @ x - b, np.zeros(5), lambda x: A, method="gn")
    assert res.nit == 1


# ---------------------------------------------------------------------------------------- the subproblem
def _ill_conditioned(cond: float, m: int = 40, n: int = 6, seed: int = 1, perp: float = 0.0):
    """A with singular values from 1 to 1/cond and r such that min ||A p + r|| is at a known p*; the
    optimal residual is ``perp`` times a vector orthogonal to range(A)."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, m)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.logspace(0, -np.log10(cond), n)
    A = U[:, :n] * s @ V.T
    p_star = rng.standard_normal(n)
    perp_dir = U[:, n:] @ rng.standard_normal(m - n)  # orthogonal to range(A)
    r = -(A @ p_star) + perp * perp_dir  # min ||A p + r|| is at p*
    return A, r, p_star


def test_gauss_newton_step_is_accurate_on_ill_conditioned_jacobians():
    """The SVD solve keeps the error at the cond * eps level of a backward-stable method."""
    A, r, p_star = _ill_conditioned(1e7)
    sub = ScaledLeastSquares(A, r, np.ones(6))
    p = sub.to_x(sub.gauss_newton())
    err = np.linalg.norm(p - p_star) / np.linalg.norm(p_star)
    assert err < 1e7 * 1e-14
    # with a residual r_perp orthogonal to range(J) every method pays cond^2 eps ||r_perp|| / (||J|| ||p||)
    A, r, p_star = _ill_conditioned(1e7, perp=1e-3)
    sub = ScaledLeastSquares(A, r, np.ones(6))
    err = np.linalg.norm(sub.to_x(sub.gauss_newton()) - p_star) / np.linalg.norm(p_star)
    assert err < 1e7 * 1e-14 + 1e14 * 1e-15 * 1e-3 * np.linalg.norm(r) / np.linalg.norm(p_star)


def test_normal_equations_would_fail_the_accuracy_check():
    """Would catch: solving J^T J p = -J^T r squares the condition number (1e14 here)."""
    A, r, p_star = _ill_conditioned(1e7)
    p = np.linalg.solve(A.T @ A, -A.T @ r)
    err = np.linalg.norm(p - p_star) / np.linalg.norm(p_star)
    assert err > 1e7 * 1e-14


def test_damped_step_solves_the_augmented_system():
    """For lambda > 0 the step is the least-squares solution of [J; sqrt(lam) D] p = -[r; 0]."""
    A, r, _ = _ill_conditioned(1e3)
    d = np.array([1.0, 2.0, 0.5, 3.0, 1.5, 0.7])
    sub = ScaledLeastSquares(A, r, d)
    for lam in (1e-6, 1e-2, 1.0, 1e3):
        p = sub.to_x(sub.step(lam))
        aug = np.vstack([A, math.sqrt(lam) * np.diag(d)])
        ref = np.linalg.lstsq(aug, -np.concatenate([r, np.zeros(6)]), rcond=None)[0]
        np.testing.assert_allclose(p, ref, rtol=1e-9, atol=1e-12)
        # the predicted decrease identity ||r||^2 - ||r + A p||^2 = ||A p||^2 + 2 lam ||D p||^2
        lhs = r @ r - np.sum((r + A @ p) ** 2)
        assert lhs == pytest.approx(np.sum((A @ p) ** 2) + 2 * lam * np.sum((d * p) ** 2), rel=1e-8)


def test_lm_parameter_meets_more_conditions():
    """Moré's lambda: |‖Dp‖ - Δ| <= 0.1 Δ when lambda > 0; lambda = 0 iff the GN step has ‖Dp‖ <= 1.1 Δ."""
    A, r, _ = _ill_conditioned(1e4)
    d = np.linspace(0.5, 2.0, 6)
    sub = ScaledLeastSquares(A, r, d)
    gn = np.linalg.norm(sub.gauss_newton())
    for delta in (1e-3 * gn, 0.1 * gn, 0.5 * gn, 0.95 * gn, 2 * gn):
        lam, w, _ = sub.lm_parameter(delta, 0.0)
        dp = np.linalg.norm(d * sub.to_x(w))
        if gn <= 1.1 * delta:
            assert lam == 0.0
        else:
            assert lam > 0 and abs(dp - delta) <= 0.1 * delta


# ---------------------------------------------------------------------------------------- Jacobian options
@pytest.mark.parametrize("jac", ["2-point", "3-point", "cs", None])
def test_jacobian_approximations_reach_the_solution(jac):
    ref = least_squares(expo, [1.0, 1.0, 0.0], expo_jac, **TIGHT)
    res = least_squares(expo, [1.0, 1.0, 0.0], jac, **TIGHT)
    assert res.success
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-6)
    per_jac = {"2-point": 3, None: 3, "3-point": 6, "cs": 3}[jac]
    assert res.nfev_jac == per_jac * res.njev


def test_forward_difference_step_is_the_documented_one():
    """'2-point' is (r(x + h e_j) - r(x)) / h with h = sqrt(eps) * sign(x_j) * max(1, |x_j|), exactly."""
    from optlib.least_squares._oracle import ResidualOracle

    x = np.array([-3.0, 0.25, 0.0])
    oracle = ResidualOracle(expo, x, "2-point")
    J = oracle.jacobian(x, oracle.residuals(x))
    eps = np.finfo(float).eps
    cols = []
    for j in range(3):
        xh = x.copy()
        xh[j] += math.sqrt(eps) * (1 if x[j] >= 0 else -1) * max(1.0, abs(x[j]))
        cols.append((expo(xh) - expo(x)) / (xh[j] - x[j]))
    np.testing.assert_array_equal(J, np.stack(cols, axis=1))
    np.testing.assert_allclose(J, expo_jac(x), rtol=1e-6, atol=1e-6)
    assert (oracle.nfev, oracle.njev, oracle.nfev_jac) == (1, 1, 3)


def test_args_and_kwargs_reach_fun_and_jac():
    def fun(b, t, y, scale=1.0):
        return scale * expo(b, t, y)

    def jac(b, t, y, scale=1.0):
        return scale * expo_jac(b, t, y)

    res = least_squares(fun, [1.0, 1.0, 0.0], jac, args=(T, Y), kwargs={"scale": 2.0})
    ref = least_squares(expo, [1.0, 1.0, 0.0], expo_jac)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-7)


# ---------------------------------------------------------------------------------------- bad input
def test_nonfinite_residuals_later_give_success_false_with_iteration_and_reason():
    """fun is NaN beyond x = 0.5 while the minimizer (x = 3/1.01) lies beyond it: the run must not
    report the edge of the domain as a converged solution."""

    def fun(x):
        return np.array([x[0] - 3.0, 0.1 * x[0]]) if x[0] <= 0.5 else np.full(2, np.nan)

    for method in ("lm", "gn"):
        res = least_squares(fun, [0.0], lambda x: np.array([[1.0], [0.1]]), method=method, max_nfev=10_000)
        assert not res.success and res.status == -3 and res.termination == "nonfinite"
        assert "iteration" in res.message and "non-finite" in res.message
        assert np.all(np.isfinite(res.fun)) and 0.0 < res.x[0] <= 0.5

    # NaN from the first trial on: max_nonfinite consecutive failures end the run at x0
    res = least_squares(lambda x: np.array([x[0] - 3.0, x[0]]) if x[0] == 0.0 else np.full(2, np.nan), [0.0],
                        lambda x: np.array([[1.0], [1.0]]), max_nonfinite=4)
    assert not res.success and res.nfev == 5 and res.x[0] == 0.0
    assert "iteration 0" in res.message and "4 consecutive trial points" in res.message


def test_nonfinite_jacobian_gives_success_false():
    res = least_squares(rosen, [-1.2, 1.0], lambda x: np.full((2, 2), np.inf))
    assert not res.success and res.status == -3
    assert "iteration 0" in res.message and "Jacobian" in res.message


def test_nonfinite_residuals_at_x0_are_an_error():
    with pytest.raises(ValueError, match=r"not finite at x0 \(1 of 2 entries: indices 1\)"):
        least_squares(lambda x: np.array([1.0, np.inf]), [0.0])


def test_gauss_newton_with_nonfinite_trials_fails_cleanly():
    res = least_squares(lambda x: np.array([x[0] - 3.0, 0.1 * x[0]]) if x[0] <= 0 else np.full(2, np.nan),
                        [0.0], lambda x: np.array([[1.0], [0.1]]), method="gn")
    # every trial x = t * 3 > 0 is NaN
    assert not res.success and res.termination == "nonfinite" and "iteration 0" in res.message


def test_bounds_are_rejected_naming_the_alternatives():
    with pytest.raises(ValueError, match="'trf'.*'dogbox'"):
        least_squares(rosen, [-1.2, 1.0], bounds=([0, 0], [2, 2]))
    with pytest.raises(ValueError, match="does not support bounds"):
        least_squares(rosen, [-1.2, 1.0], method="gn", bounds=Bounds(0, np.inf))
    # the unconstrained bounds are accepted, as in scipy
    res = least_squares(rosen, [-1.2, 1.0], rosen_jac, bounds=(-np.inf, np.inf))
    assert res.success


def test_fewer_residuals_than_variables_is_an_error():
    with pytest.raises(ValueError, match=r"m >= n.*m = 1 residuals for n = 2"):
        least_squares(lambda x: np.array([x[0] + x[1]]), [1.0, 2.0])


def test_jacobian_of_wrong_shape_is_an_error():
    with pytest.raises(ValueError, match=r"jac returned shape \(2, 3\), expected \(m, n\) = \(2, 2\)"):
        least_squares(rosen, [-1.2, 1.0], lambda x: np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        least_squares(rosen, [-1.2, 1.0], lambda x: np.zeros(2))


def test_other_bad_input():
    with pytest.raises(ValueError, match="'lm'.*'gn'"):
        least_squares(rosen, [0.0, 0.0], method="trf")
    with pytest.raises(ValueError, match="jac must be a callable or one of"):
        least_squares(rosen, [0.0, 0.0], jac="5-point")
    with pytest.raises(ValueError, match="only 'linear'"):
        least_squares(rosen, [0.0, 0.0], loss="huber")
    with pytest.raises(ValueError, match="machine epsilon"):
        least_squares(rosen, [0.0, 0.0], ftol=0.0)
    with pytest.raises(ValueError, match="at most 1 dimension"):
        least_squares(rosen, np.zeros((2, 1)))
    with pytest.raises(ValueError, match="x_scale"):
        least_squares(rosen, [0.0, 0.0], x_scale=[1.0, -1.0])
    with pytest.raises(ValueError, match="x_scale"):
        least_squares(rosen, [0.0, 0.0], x_scale="auto")
    with pytest.raises(TypeError, match="dense"):
        least_squares(rosen, [0.0, 0.0], lambda x: scipy.sparse.csr_matrix(rosen_jac(x)))
    with pytest.raises(ValueError, match="numpy x0"):
        least_squares(rosen_torch, torch.zeros(2, dtype=torch.float64), jac="cs")
    with pytest.raises(RuntimeError, match="automatic differentiation of fun failed"):
        least_squares(rosen, [0.0, 0.0], jac="autodiff")  # a numpy function cannot be differentiated
    with pytest.raises(TypeError, match="torch tensor"):
        least_squares(lambda x: [1.0, 2.0], [0.0, 0.0], jac="autodiff")
    with pytest.raises(ValueError, match="residuals at one point"):
        least_squares(lambda x: np.ones(2 + int(x[0] != 0.0)), [0.0, 0.0])
    with pytest.raises(TypeError, match="TrustRegionRule"):
        least_squares(rosen, [0.0, 0.0], rule=ArmijoRule())


def test_evaluation_budget_stops_the_run():
    res = least_squares(rosen, [-1.2, 1.0], rosen_jac, max_nfev=5)
    assert not res.success and res.status == 0 and res.termination == "max_nfev" and res.nfev == 5
    res = least_squares(rosen, [-1.2, 1.0], rosen_jac, maxiter=3)
    assert not res.success and res.status == 0 and res.termination == "maxiter" and res.nit == 3


@pytest.mark.parametrize(
    "problem, options, expected",
    [
        ("rosen", {}, 1),  # gtol
        ("expo", dict(ftol=1e-8, xtol=1e-15, gtol=1e-15), 2),  # ftol alone
        ("expo", dict(ftol=1e-15, xtol=1e-8, gtol=1e-15), 3),  # xtol alone
        ("expo", {}, 4),  # ftol and xtol
        ("rosen", dict(max_nfev=5), 0),  # stopped by max_nfev
        ("expo", dict(max_nfev=5), 0),
    ],
)
def test_status_codes_are_scipys(problem, options, expected):
    """least_squares reports scipy.optimize.least_squares's status codes: the same code as scipy's lm
    on the same run, success exactly when status > 0, and scipy's message as the first sentence."""
    fun, jac, x0 = {"rosen": (rosen, rosen_jac, [-1.2, 1.0]), "expo": (expo, expo_jac, [1.0, 1.0, 0.0])}[problem]
    ours = least_squares(fun, x0, jac, **options)
    ref = scipy_least_squares(fun, x0, jac, method="lm", **options)
    assert ours.status == ref.status == expected
    assert ours.success == ref.success == (expected > 0)
    assert ours.message.startswith(ref.message.rstrip("."))
    assert ours.nfev == ref.nfev


def test_minimize_levenberg_marquardt_keeps_optlibs_status_codes():
    """Through optlib.minimize the same terminations are reported in optlib's table (optlib.result),
    like every other method: converged 0, budget 1, callback 2; ``termination`` says which test."""
    prob = rosenbrock()
    res = optlib.minimize(prob, prob.x0, method="levenberg-marquardt")
    assert res.status == SUCCESS and res.success and res.termination == "xtol"
    res = optlib.minimize(prob, prob.x0, method="levenberg-marquardt", max_nfev=5)
    assert res.status == MAXITER and not res.success and res.termination == "max_nfev"
    res = optlib.minimize(prob, prob.x0, method="levenberg-marquardt", callback=lambda x: True)
    assert res.status == CALLBACK_STOP and not res.success and res.nit == 1


@pytest.mark.parametrize(
    "option, value, match",
    [
        ("gtol", float("nan"), r"gtol must be a finite number >= 0, got nan"),
        ("ftol", -1e-8, r"ftol must be a finite number >= 0, got -1e-08"),
        ("xtol", "1e-8", r"xtol must be a finite number >= 0, got '1e-8'"),
        ("maxiter", 2.5, r"maxiter must be an integer >= 0, got 2.5"),
        ("maxiter", True, r"maxiter must be an integer >= 0, got True \(a bool is not a count\)"),
        ("max_nfev", "10", r"max_nfev must be an integer >= 1, got '10'"),
        ("max_nfev", True, r"max_nfev must be an integer >= 1, got True"),
        ("max_nonfinite", 0, r"max_nonfinite must be an integer >= 1, got 0"),
    ],
)
def test_bad_tolerances_and_counts_name_the_option(option, value, match):
    for method in ("lm", "gn"):
        with pytest.raises(ValueError, match=match):
            least_squares(rosen, [-1.2, 1.0], rosen_jac, method=method, **{option: value})


# ---------------------------------------------------------------------------------------- callback
def test_callback_sees_every_accepted_iterate_and_can_stop():
    seen = []

    def cb(intermediate_result):
        seen.append((intermediate_result.nit, intermediate_result.cost, intermediate_result.x.copy()))

    res = least_squares(rosen, [-1.2, 1.0], rosen_jac, callback=cb)
    assert [k for k, _, _ in seen] == list(range(1, res.nit + 1))
    np.testing.assert_array_equal(seen[-1][2], res.x)

    def stop_at_3(intermediate_result):
        if intermediate_result.nit == 3:
            raise StopIteration

    res = least_squares(rosen, [-1.2, 1.0], rosen_jac, callback=stop_at_3)
    assert res.status == -2 and res.nit == 3 and not res.success
    legacy = []
    least_squares(rosen, [-1.2, 1.0], rosen_jac, callback=lambda x: legacy.append(x.copy()))
    assert len(legacy) == len(seen)


# ---------------------------------------------------------------------------------------- Gauss–Newton
def test_gauss_newton_steps_satisfy_armijo():
    """Every accepted step: F(x+) <= F(x) + 1e-4 grad F(x)^T (x+ - x), recomputed from closed forms."""
    xs = [np.array([1.0, 1.0, 0.0])]
    least_squares(expo, xs[0], expo_jac, method="gn", callback=lambda x: xs.append(x.copy()))
    assert len(xs) > 2
    for a, b in zip(xs[:-1], xs[1:]):
        F = lambda z: 0.5 * np.sum(expo(z) ** 2)  # noqa: E731
        g = expo_jac(a).T @ expo(a)
        assert F(b) <= F(a) + 1e-4 * g @ (b - a) + 1e-15 * F(a)


class NoLineSearch(ArmijoRule):
    """Accepts the full Gauss–Newton step whatever it does to F."""

    def accept(self, cost, cost_new, t, slope):
        return True


def test_no_line_search_would_fail_the_armijo_check():
    """Would catch: full steps on a large-residual problem where Gauss–Newton overshoots (local rate
    |t| = 2 > 1 at the minimizer x* = 0, where F'' = 2 - 2t = 6 > 0)."""
    t = -2.0

    def fun(x):
        return np.array([x[0] + 1.0, t * x[0] ** 2 + x[0] - 1.0])

    def jac(x):
        return np.array([[1.0], [2 * t * x[0] + 1.0]])

    F = lambda z: 0.5 * np.sum(fun(z) ** 2)  # noqa: E731
    ok = least_squares(fun, [0.05], jac, method="gn", maxiter=20)
    xs = [np.array([0.05])]
    least_squares(fun, [0.05], jac, method="gn", rule=NoLineSearch(), maxiter=5,
                  callback=lambda x: xs.append(x.copy()))
    violations = [F(b) > F(a) + 1e-4 * (jac(a).T @ fun(a)) @ (b - a) for a, b in zip(xs[:-1], xs[1:])]
    assert any(violations)
    assert ok.trace.column("f")[-1] <= ok.trace.column("f")[0]


def test_line_search_exhaustion_is_reported():
    res = least_squares(rosen, [-1.2, 1.0], lambda x: -rosen_jac(x), method="gn",
                        rule=ArmijoRule(max_backtracks=5))  # the wrong-sign Jacobian points uphill
    assert not res.success and res.status == -4 and res.termination == "line_search"
    assert "iteration 0" in res.message


# ---------------------------------------------------------------------------------------- optlib.minimize
def test_minimize_levenberg_marquardt_on_rosenbrock_problem():
    prob = rosenbrock()
    assert "levenberg-marquardt" in optlib.methods()
    res = optlib.minimize(prob, prob.x0, method="levenberg-marquardt", **TIGHT)
    assert res.success and res.method == "levenberg-marquardt"
    torch.testing.assert_close(res.x, prob.x_star, rtol=0, atol=1e-12)
    # f = ||u||^2 = 2 * cost for Rosenbrock (outer scale 2)
    assert res.fun == pytest.approx(2 * res.cost, rel=1e-15, abs=1e-300)
    assert res.nres >= res.nit and res.njac >= 1 and res.nfev == 0
    assert res.trace[0]["f"] == pytest.approx(float(prob.value(prob.x0)), rel=1e-14)
    # the same iterates as least_squares on the raw residuals
    direct = least_squares(lambda x: prob.residuals(x), prob.x0.clone(), **TIGHT)
    assert direct.nfev == res.nres


def test_minimize_levenberg_marquardt_rejects_unsuitable_problems():
    with pytest.raises(ValueError, match="not a positive multiple of"):
        prob = rosenbrock_nle()
        optlib.minimize(prob, prob.x0, method="levenberg-marquardt")
    with pytest.raises(ValueError, match="needs an optlib.Problem with residuals"):
        optlib.minimize(lambda x: (x**2).sum(), torch.ones(2, dtype=torch.float64), method="levenberg-marquardt")
    prob = rosenbrock()
    with pytest.raises(ValueError, match="Method 'levenberg-marquardt' sets option 'kwargs' itself"):
        optlib.minimize(prob, prob.x0, method="levenberg-marquardt", kwargs=None)
    with pytest.raises(ValueError, match="carries its own oracles"):  # scipy's jac/args belong to plain callables
        optlib.minimize(prob, prob.x0, method="levenberg-marquardt", jac=True)
    with pytest.raises(ValueError, match="bounds are not supported"):
        optlib.minimize(prob, prob.x0, method="levenberg-marquardt", bounds=[(0, 1)] * 2)
    with pytest.raises(ValueError, match="fixed by the problem"):  # the function itself, called directly
        levenberg_marquardt(prob, prob.x0, jac="2-point")


def test_minimize_forwards_tol_and_callback():
    prob = rosenbrock()
    seen = []
    res = optlib.minimize(prob, prob.x0, method="levenberg-marquardt", tol=1e-12,
                          callback=lambda intermediate_result: seen.append(intermediate_result.nit))
    assert seen == list(range(1, res.nit + 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optlib.minimize(prob, prob.x0, method="levenberg-marquardt", maxiter=2)
