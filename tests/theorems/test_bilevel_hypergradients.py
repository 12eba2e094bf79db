"""Bilevel hypergradient estimators as proofs-as-tests (spec 30 §6 (i)-(v)); every statement has a twin
(a deliberately wrong estimator) that must fail the same checker. Derivations: optlib/theory/bilevel.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optlib.bilevel.hypergradient import NegativeCurvatureError, hypergradient
from optlib.bilevel.problem import BilevelProblem
from optlib.problems.bilevel import bilevel_quadratic
from optlib.theory.bilevel import (
    bilevel_table,
    estimator_matches_closed_form,
    inexact_y_bias,
    neumann_truncation_bound,
    randomized_neumann_unbiased,
    z_iterate_contraction,
)
from optlib.theory.table import FAMILY_TABLES


# ------------------------------------------------------------------------------------- (i) closed-form match
@pytest.mark.parametrize("name", ["Q1", "Q2", "Q3"])
@pytest.mark.parametrize("method", ["exact", "cg"])
def test_exact_and_cg_match_closed_form(name, method):
    check = estimator_matches_closed_form(name, method)
    assert check.holds, str(check)


@pytest.mark.parametrize("name", ["Q1", "Q2"])
@pytest.mark.parametrize("method,knobs", [("neumann", {"steps": 30}), ("z-iterate", {"nu": 0.2, "steps": 30}),
                                          ("unroll", {"steps": 30, "lr": 0.2})])
def test_truncated_estimators_within_their_bound(name, method, knobs):
    check = estimator_matches_closed_form(name, method, **knobs)
    assert check.holds, str(check)


def test_unroll_error_decays_geometrically_in_K():
    """Unrolling K steps from y* is the K-term Neumann series with alpha = lr: error ratio per step -> rate."""
    errs = [estimator_matches_closed_form("Q1", "unroll", steps=k, lr=0.2).measured for k in (10, 20, 40)]
    assert errs[0] > errs[1] > errs[2]
    prob = bilevel_quadratic()
    eig = np.linalg.eigvalsh(prob.data["A"])
    rate = max(abs(1 - 0.2 * eig[0]), abs(1 - 0.2 * eig[-1]))
    assert (errs[2] / errs[1]) ** (1 / 20) <= rate * (1 + 1e-8)


def test_twin_neumann_too_few_steps_exceeds_the_30_step_bound():
    """Twin: Neumann with the bound stated for 30 steps but run for 3 (a dropped factor r^k) exceeds r^30."""
    check = estimator_matches_closed_form("Q1", "neumann", steps=3)
    tight = estimator_matches_closed_form("Q1", "neumann", steps=30)
    assert check.measured > tight.bound


# ------------------------------------------------------------------------------------- (ii) Neumann truncation
def test_neumann_truncation_bound():
    for Q in (1, 5, 20, 60):
        check = neumann_truncation_bound(steps=Q)
        assert check.holds, str(check)


def test_twin_neumann_alpha_doubled_violates_bound():
    check = neumann_truncation_bound(steps=20, alpha_scale=2.2)
    assert not check.holds, str(check)


def _neumann_no_alpha(problem, x, y, steps, alpha):
    """Twin: the series without the leading alpha."""
    return hypergradient(problem, x, y, "neumann", steps=steps, alpha=alpha, check_step=False).v / alpha


def test_twin_neumann_dropped_alpha_factor_fails():
    check = neumann_truncation_bound(steps=20, estimator=_neumann_no_alpha)
    assert not check.holds, str(check)


# ------------------------------------------------------------------------------------- (iii) inexact-y bias
def test_inexact_y_bias_bound_is_tight():
    check = inexact_y_bias()
    assert check.holds, str(check)
    assert check.measured >= check.bound * (1 - 1e-10)  # attained on the top singular vector
    assert check.bound == pytest.approx(check.details["L_phi_y_problem"], rel=1e-12)


def _sign_error_h(problem, x, y):
    """Twin: + instead of - in front of the cross term."""
    gx, b = problem.upper_grads(x, y)
    v = torch.linalg.solve(problem.lower_hessian(x, y), b)
    return gx + problem.cross(x, y, v)


def test_twin_sign_error_in_cross_term_fails():
    check = inexact_y_bias(estimator=_sign_error_h)
    assert not check.holds, str(check)


# ------------------------------------------------------------------------------------- (iv) z-iterate contraction
@pytest.mark.parametrize("nu", [0.1, 0.2, 0.45])
def test_z_iterate_contraction(nu):
    check = z_iterate_contraction(nu=nu)
    assert check.holds, str(check)


def _z_step_wrong_sign(problem, x, y, z, nu):
    _, b = problem.upper_grads(x, y)
    return z + nu * (problem.hvp_yy(x, y, z) - b)


def test_twin_z_iterate_wrong_sign_fails():
    check = z_iterate_contraction(nu=0.2, update=_z_step_wrong_sign)
    assert not check.holds, str(check)


# ------------------------------------------------------------------------------------- (v) randomized Neumann
def test_randomized_neumann_unbiased():
    check = randomized_neumann_unbiased(draws=1500)
    assert check.holds, str(check)
    assert check.details["dependent_bias_in_se"] > 10.0  # the instance can detect the B10 bias


def _dependent_randomized(problem, x, y, steps, alpha, gen):
    """Twin (B10): one lower batch reused for every factor of the product."""
    _, b = problem.upper_grads(x, y, (None,))
    q = int(torch.randint(steps, (1,), generator=gen))
    eps = problem.lower_sampler(gen)
    p = b.clone()
    for _ in range(q):
        p = p - alpha * problem.hvp_yy(x, y, p, (eps,))
    return alpha * steps * p


def test_twin_dependent_samples_are_biased():
    check = randomized_neumann_unbiased(draws=1500, estimator=_dependent_randomized)
    assert not check.holds, str(check)


# ------------------------------------------------------------------------------------- table
def test_bilevel_table_registered_and_holds():
    assert FAMILY_TABLES["bilevel"] is bilevel_table
    rows = bilevel_table(quick=True)
    assert rows and all(r.holds for r in rows), "\n".join(map(str, rows))


# ------------------------------------------------------------------------------------- property tests
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nx=st.integers(1, 6), ny=st.integers(1, 9), seed=st.integers(0, 10_000),
       mu=st.floats(0.05, 1.0), cond=st.floats(1.0, 50.0))
def test_property_exact_cg_match_on_random_q1(nx, ny, seed, mu, cond):
    prob = bilevel_quadratic(nx=nx, ny=ny, m=4, mu=mu, l_g1=mu * cond, seed=seed)
    for method in ("exact", "cg"):
        check = estimator_matches_closed_form("Q1", method, problem=prob)
        assert check.holds, str(check)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ny=st.integers(1, 9), seed=st.integers(0, 10_000), Q=st.integers(1, 40), scale=st.floats(0.05, 1.0),
       cond=st.floats(1.0, 30.0))
def test_property_neumann_bound_on_random_q1(ny, seed, Q, scale, cond):
    prob = bilevel_quadratic(nx=3, ny=ny, m=4, mu=0.3, l_g1=0.3 * cond, seed=seed)
    check = neumann_truncation_bound(steps=Q, alpha_scale=scale, problem=prob)
    assert check.holds, str(check)


# ------------------------------------------------------------------------------------- bad input
def _indefinite_problem():
    D = torch.tensor([-1.0, 2.0, 3.0], dtype=torch.float64)
    return BilevelProblem(lambda x, y: 0.5 * ((y - x) ** 2).sum(), lambda x, y: 0.5 * (D * y * y).sum() - x @ y,
                          np.ones(3), np.zeros(3))


def test_cg_on_indefinite_lower_hessian_names_the_curvature():
    prob = _indefinite_problem()
    x = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)  # b = -x along the negative direction
    with pytest.raises(NegativeCurvatureError, match=r"curvature .* = -1\.0"):
        hypergradient(prob, x, torch.zeros(3, dtype=torch.float64), "cg")


def test_neumann_alpha_too_large_raises_before_running():
    prob = bilevel_quadratic()
    y = prob.lower_solution(prob.x0)
    with pytest.raises(ValueError, match="alpha"):
        hypergradient(prob, prob.x0, y, "neumann", steps=50, alpha=1.0)  # l_g1 = 4: alpha*lambda = 4
    assert prob.counters.nhvp <= 30  # the power iteration only, no Neumann product


def test_shape_mismatch_names_which():
    prob = bilevel_quadratic()
    with pytest.raises(ValueError, match="^x has 4 entries"):
        hypergradient(prob, torch.zeros(4, dtype=torch.float64), prob.y0, "cg")
    with pytest.raises(ValueError, match="^y has 3 entries"):
        hypergradient(prob, prob.x0, torch.zeros(3, dtype=torch.float64), "cg")


def test_unknown_method_or_knob_raises():
    prob = bilevel_quadratic()
    with pytest.raises(ValueError, match="unknown hypergradient method 'newton'"):
        hypergradient(prob, prob.x0, prob.y0, "newton")
    with pytest.raises(ValueError, match="no option.*'maxiters'"):
        hypergradient(prob, prob.x0, prob.y0, "cg", maxiters=5)
