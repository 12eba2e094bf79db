"""Tests for the problem library ``optlib.problems``.

* every hand-written oracle and closed-form curvature against :mod:`torch.func` autograd;
* the curvature orderings the theory relies on (Böhning bound above the Hessian, PSD stand-ins);
* certified optima: tiny gradients, agreement with cvxpy, closed forms;
* constants (L, mu, M, L2) checked at sample points, each paired with a deliberately wrong constant
  that the same check must catch;
* the options the theorem checks of ``optlib.theory`` need (``rosenbrock(x0=...)``,
  ``chebyshev_rosenbrock(scale=...)``, ``quadratic(x0_scale=...)``, ``quadratic_from_matrix``,
  ``synthetic_logistic(descending=..., signal=...)``) against the documented constructions;
* the raw problems of the least-squares, curvature and unlearning checks (closed-form residual pairs, seeded
  MLPs and batches, seeded ridge/logistic/softmax data): their stated roots, Jacobians (against central
  differences), Gauss-Newton facts and constructions;
* input validation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import func as tf

from optlib import Problem
from optlib.linalg import LowRank
from optlib.problems import (
    BINARY_DATASETS,
    MULTICLASS_DATASETS,
    _certify,
    chebyshev_rosenbrock,
    cubic_lipschitz,
    cubic_pair,
    cubic_pair_jac,
    large_residual,
    library,
    log_sum_exp,
    logistic_regression,
    lse_cubic,
    nonlinear_equations,
    pseudo_huber,
    quadratic,
    quadratic_from_matrix,
    quadratic_with_condition,
    rosenbrock,
    rosenbrock_nle,
    rosenbrock_residual,
    rosenbrock_residual_jac,
    saturating_residual,
    saturating_residual_jac,
    seeded_batches,
    seeded_logistic_data,
    seeded_mlp,
    seeded_psd_system,
    seeded_ridge_data,
    seeded_softmax_data,
    softmax_regression,
    synthetic_logistic,
)
from optlib.problems._data import standardize

DT = torch.float64
RTOL = 1e-10


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """These tests make many small dense calls (eigvalsh, Hessians of a few hundred rows). On a small,
    shared CI machine torch's OpenMP pool then spends more time waiting for its threads than
    computing (seconds per call instead of milliseconds), so the module runs on one thread and
    restores the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a = torch.as_tensor(a, dtype=DT)
    b = torch.as_tensor(b, dtype=DT)
    return float(torch.linalg.vector_norm(a - b)) / max(1.0, float(torch.linalg.vector_norm(b)))


def sample_points(p: Problem, k: int = 3, scale: float = 1.0, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pts = [p.x0.clone()]
    pts += [p.x0 + scale * torch.randn(p.n, generator=g, dtype=DT) for _ in range(k)]
    return pts


def small_digits(K: int = 10, rows: int = 150, cols: int = 12):
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = d.target < K
    return d.data[keep][:rows, 20 : 20 + cols], d.target[keep][:rows]


def _spd(d: int, seed: int) -> np.ndarray:
    """A random symmetric positive definite matrix (eigenvalues >= 0.5)."""
    G = np.random.default_rng(seed).standard_normal((d, d))
    return G @ G.T / d + 0.5 * np.eye(d)


# --------------------------------------------------------------------------- problem zoo (small)
SMALL: dict[str, callable] = {
    "logreg-breast_cancer": lambda: logistic_regression("breast_cancer"),
    "logreg-wine-intercept": lambda: logistic_regression("wine_binary", fit_intercept=True, reg=1e-2),
    "logreg-synthetic-small": lambda: synthetic_logistic(n=300, d=8, seed=3),
    "softmax-wine": lambda: softmax_regression("wine"),
    "softmax-iris": lambda: softmax_regression("iris", reg=0.05),
    "softmax-digits-small": lambda: softmax_regression(small_digits()),
    "log-sum-exp-small": lambda: log_sum_exp(n=6, m=15, mu=0.5, seed=2),
    "rosenbrock": lambda: rosenbrock(),
    "rosenbrock-shifted": lambda: rosenbrock(a=0.5, b=10.0),
    "rosenbrock-nle": lambda: rosenbrock_nle(),
    "chebyshev-p2": lambda: chebyshev_rosenbrock(n=6, p=2),
    "chebyshev-p3": lambda: chebyshev_rosenbrock(n=6, p=3),
    "chebyshev-p4": lambda: chebyshev_rosenbrock(n=6, p=4),
    "nonlinear-p4": lambda: nonlinear_equations(n=5, m=8, p=4, seed=1),
    "nonlinear-p3-under": lambda: nonlinear_equations(n=8, m=5, p=3, seed=1),
    "nonlinear-p2": lambda: nonlinear_equations(n=5, m=8, p=2, seed=1),
    "cubic": lambda: cubic_lipschitz(n=6, m=10, seed=1),
    "cubic-mu": lambda: cubic_lipschitz(n=6, m=10, seed=1, mu=0.1),
    "quadratic-indefinite": lambda: quadratic([-2.0, 0.5, 1.0, 3.0], seed=4),
    "quadratic-cond": lambda: quadratic_with_condition(7, 1e4, seed=2),
    "quadratic-start": lambda: quadratic([1.0, 2.0, 5.0, 10.0, 30.0], seed=1, x0_scale=3.0),
    "quadratic-matrix": lambda: quadratic_from_matrix(_spd(5, seed=6), np.arange(5.0) - 2.0, x0=np.ones(5)),
    "rosenbrock-classic": lambda: rosenbrock(x0=(-1.2, 1.0)),
    "chebyshev-scaled": lambda: chebyshev_rosenbrock(n=4, p=2, scale=2.0),
    "logreg-synthetic-planted": lambda: synthetic_logistic(n=300, d=8, scale_min=1e-2, scale_max=1.0, seed=3, reg=1e-3,
                                                           descending=True, signal=3.0),
    "lse-cubic": lambda: lse_cubic(),
    "lse-only": lambda: lse_cubic(c=0.0, scale=3.0, seed=1),
    "pseudo-huber": lambda: pseudo_huber(),
    "pseudo-huber-cubic": lambda: pseudo_huber(n=5, c=0.5, scale=2.0, seed=3),
}

_BUILT: dict[str, Problem] = {}


def small(name: str) -> Problem:
    if name not in _BUILT:
        _BUILT[name] = SMALL[name]()
    return _BUILT[name]


# --------------------------------------------------------------------------- oracles vs autograd
@pytest.mark.parametrize("name", list(SMALL))
def test_oracles_match_autograd(name):
    p = small(name)
    scale = 0.3 if name.startswith(("logreg", "softmax")) else 1.0
    for x in sample_points(p, scale=scale):
        f_ad = p.value(x)
        g_ad = tf.grad(p.value)(x)
        H_ad = tf.hessian(p.value)(x)
        f, g = p.value_and_grad(x)
        assert abs(float(f) - float(f_ad)) <= RTOL * max(1.0, abs(float(f_ad)))
        assert rel_err(g, g_ad) <= RTOL
        assert rel_err(p.grad(x), g_ad) <= RTOL
        assert rel_err(p.hessian(x), H_ad) <= RTOL
        v = torch.linspace(-1.0, 1.0, p.n, dtype=DT)
        assert rel_err(p.hvp(x, v), H_ad @ v) <= RTOL


def _autograd_ggn(p: Problem, x: torch.Tensor) -> torch.Tensor:
    u = p._residuals(x)
    J = tf.jacrev(p._residuals)(x)
    return J.T @ tf.hessian(p._outer)(u) @ J


def _per_sample_fisher_logistic(p: Problem, x: torch.Tensor) -> torch.Tensor:
    A = torch.from_numpy(p.data["A"])
    y = torch.from_numpy(p.data["y"])

    def loss(xx, a, yy):
        return torch.nn.functional.softplus(-yy * torch.dot(a, xx))

    G = tf.vmap(tf.grad(loss), in_dims=(None, 0, 0))(x, A, y)
    return G.T @ G / A.shape[0] + p.reg * torch.eye(p.n, dtype=DT)


def _per_sample_fisher_softmax(p: Problem, x: torch.Tensor) -> torch.Tensor:
    A = torch.from_numpy(p.data["A"])
    K = p.data["K"]
    Y = torch.nn.functional.one_hot(torch.from_numpy(p.data["labels"]), K).to(DT)

    def loss(xx, a, onehot):
        z = a @ xx.reshape(-1, K)
        return torch.logsumexp(z, 0) - torch.dot(z, onehot)

    G = tf.vmap(tf.grad(loss), in_dims=(None, 0, 0))(x, A, Y)
    return G.T @ G / A.shape[0] + p.reg * torch.eye(p.n, dtype=DT)


@pytest.mark.parametrize("name", [n for n in SMALL if n.startswith(("logreg", "softmax"))])
def test_glm_curvatures_match_autograd(name):
    p = small(name)
    per_sample = _per_sample_fisher_logistic if name.startswith("logreg") else _per_sample_fisher_softmax
    for x in sample_points(p, scale=0.3):
        H_ad = tf.hessian(p.value)(x)
        assert rel_err(p.curvature("gauss-newton")(x), H_ad) <= RTOL  # linear inner map: GN is exact
        assert rel_err(p.curvature("fisher")(x), per_sample(p, x)) <= RTOL
    if name.startswith("logreg"):
        # sigma'(0) = 1/4: the Böhning bound is the Hessian at the origin
        zero = torch.zeros(p.n, dtype=DT)
        assert rel_err(p.curvature("bohning")(zero), tf.hessian(p.value)(zero)) <= RTOL


def test_softmax_bohning_is_tight_for_two_classes_at_origin():
    A, t = small_digits(K=2, rows=120, cols=12)
    p = softmax_regression((A, t))
    zero = torch.zeros(p.n, dtype=DT)
    assert rel_err(p.curvature("bohning")(zero), tf.hessian(p.value)(zero)) <= RTOL


def test_bohning_is_constant_and_cached():
    p = small("logreg-breast_cancer")
    x = torch.randn(p.n, dtype=DT)
    B1 = p.curvature("bohning")(x)
    B2 = p.curvature("bohning")(torch.zeros(p.n, dtype=DT))
    assert B1 is B2


def test_log_sum_exp_weighted_gauss_newton():
    p = small("log-sum-exp-small")
    mu = p.data["mu"]
    for x in sample_points(p):
        g = tf.grad(p.value)(x)
        expected = tf.hessian(p.value)(x) + torch.outer(g, g) / mu
        assert rel_err(p.curvature("weighted-gauss-newton")(x), expected) <= RTOL
        assert rel_err(p.gauss_newton(x), expected) <= RTOL


@pytest.mark.parametrize(
    "name",
    ["rosenbrock", "rosenbrock-shifted", "rosenbrock-nle", "chebyshev-p2", "chebyshev-p3", "chebyshev-p4",
     "nonlinear-p4", "nonlinear-p3-under", "nonlinear-p2", "rosenbrock-classic", "chebyshev-scaled"],
)
def test_residual_curvatures_match_autograd(name):
    p = small(name)
    for x in sample_points(p):
        ggn = _autograd_ggn(p, x)
        assert rel_err(p.curvature("gn-fisher")(x), ggn) <= RTOL
        u = p._residuals(x)
        nu = float(torch.linalg.vector_norm(u))
        g = tf.grad(p.value)(x)
        pw = p.power
        if pw > 2:
            F = p.curvature("fisher")(x)
            assert isinstance(F, LowRank) and F.U.shape == (p.n, 1)
            assert rel_err(F.dense(), (pw - 2) / nu**pw * torch.outer(g, g)) <= RTOL
        else:
            assert "fisher" not in p.curvatures
        if name.startswith("nonlinear"):
            A = torch.from_numpy(p.data["A"])
            plain = nu ** (pw - 2) * (A.T @ A)
            assert rel_err(p.gauss_newton(x), plain) <= RTOL
            assert rel_err(p.curvature("gn-fisher")(x), tf.hessian(p.value)(x)) <= RTOL  # affine u
        else:
            assert rel_err(p.gauss_newton(x), ggn) <= RTOL


def test_rosenbrock_matches_textbook_form():
    for a, b in [(1.0, 100.0), (0.5, 10.0)]:
        p = rosenbrock(a=a, b=b)
        for x in sample_points(p, k=5):
            x1, x2 = float(x[0]), float(x[1])
            textbook = (a - x1) ** 2 + b * (x2 - x1**2) ** 2
            assert abs(float(p.value(x)) - textbook) <= 1e-12 * max(1.0, textbook)
            assert abs(float(p._outer(p._residuals(x))) - textbook) <= 1e-12 * max(1.0, textbook)
    assert torch.equal(rosenbrock().x0, torch.tensor([-2.0, 2.0], dtype=DT))


def test_residual_problems_at_zero_residual():
    # the limits at u = 0 (the optimum): no NaN, p = 2 keeps J^T J, p > 2 gives zero
    for p in (chebyshev_rosenbrock(n=5, p=2), chebyshev_rosenbrock(n=5, p=3), rosenbrock_nle(p=5)):
        xs = p.x_star
        f, g = p.value_and_grad(xs)
        assert float(f) == 0.0 and float(g.abs().max()) == 0.0
        H = p.hessian(xs)
        assert torch.isfinite(H).all()
        assert torch.isfinite(p.curvature("gn-fisher")(xs)).all()
        if "fisher" in p.curvatures:
            assert float(p.curvature("fisher")(xs).U.abs().max()) == 0.0


# --------------------------------------------------------------------------- PSD orderings
def lam_min(M: torch.Tensor) -> float:
    return float(torch.linalg.eigvalsh(0.5 * (M + M.T))[0])


def lam_max(M: torch.Tensor) -> float:
    return float(torch.linalg.eigvalsh(0.5 * (M + M.T))[-1])


@pytest.mark.parametrize("name", ["logreg-breast_cancer", "logreg-synthetic-small", "softmax-wine",
                                  "softmax-digits-small", "logreg-synthetic-planted"])
def test_bohning_dominates_hessian(name):
    p = small(name)
    B = p.curvature("bohning")(p.x0)
    tol = 1e-10 * max(1.0, lam_max(B))
    for x in sample_points(p, k=4, scale=1.0, seed=5):
        H = p.hessian(x)
        assert lam_min(B - H) >= -tol
        assert lam_min(p.curvature("fisher")(x)) >= -tol
    # would catch: a bound below the Hessian at the origin (where p is uniform) fails the check;
    # binary: 1/8 instead of 1/4; K classes: 1/(2K) instead of 1/2
    reg = p.reg
    shrink = 0.5 if name.startswith("logreg") else 1.0 / p.data["K"]
    wrong = shrink * (B - reg * torch.eye(p.n, dtype=DT)) + reg * torch.eye(p.n, dtype=DT)
    assert lam_min(wrong - p.hessian(torch.zeros(p.n, dtype=DT))) < -1e-6


def test_log_sum_exp_weighted_gn_dominates_hessian():
    p = small("log-sum-exp-small")
    for x in sample_points(p, k=4):
        W = p.curvature("gauss-newton")(x)
        assert lam_min(W - p.hessian(x)) >= -1e-12 * max(1.0, lam_max(W))
        assert lam_min(p.hessian(x)) >= -1e-12 * max(1.0, lam_max(W))


# --------------------------------------------------------------------------- certified optima
@pytest.fixture(scope="module")
def lib_problems():
    return {name: ctor() for name, ctor in library().items()}


def test_library_contents(lib_problems):
    assert set(lib_problems) == {
        "logreg-breast_cancer", "logreg-digits_binary", "logreg-synthetic", "logreg-wine_binary",
        "logreg-iris_binary", "softmax-digits", "softmax-wine", "log-sum-exp", "rosenbrock",
        "chebyshev-rosenbrock", "nonlinear-equations", "cubic-lipschitz", "lse-cubic", "pseudo-huber",
        "quadratic-cond1e3",
    }
    for name, p in lib_problems.items():
        assert isinstance(p, Problem)
        assert p.name == name
        assert p.x0 is not None and p.x0.shape == (p.n,) and p.x0.dtype == DT
        f, g = p.value_and_grad(p.x0)
        assert math.isfinite(float(f)) and bool(torch.isfinite(g).all())
    assert lib_problems["logreg-synthetic"].n == 200
    assert lib_problems["softmax-digits"].n == 640


def test_certified_optima_have_tiny_gradients(lib_problems):
    for name, p in lib_problems.items():
        assert p.f_star is not None, name
        xs = p.x_star
        assert xs.shape == (p.n,)
        scale = max(1.0, float(torch.linalg.vector_norm(p.grad(p.x0))))
        assert float(torch.linalg.vector_norm(p.grad(xs))) <= 1e-9 * scale, name
        assert abs(float(p.value(xs)) - p.f_star) <= 1e-12 * max(1.0, abs(p.f_star)), name
        if p.constants.convex:
            # convexity: no sampled point beats the certified value
            for x in sample_points(p, k=3, scale=0.1, seed=7):
                assert float(p.value(x)) >= p.f_star - 1e-12 * max(1.0, abs(p.f_star)), name


def test_closed_form_optima():
    p = rosenbrock(a=0.5, b=10.0)
    assert torch.equal(p.x_star, torch.tensor([0.5, 0.25], dtype=DT)) and p.f_star == 0.0
    assert float(p.value(p.x_star)) == 0.0 and float(p.grad(p.x_star).abs().max()) == 0.0
    c = chebyshev_rosenbrock(n=7)
    assert torch.equal(c.x_star, torch.ones(7, dtype=DT))
    assert torch.equal(c.x0, torch.tensor([-1.0] + [1.0] * 6, dtype=DT))
    assert float(c.value(c.x_star)) == 0.0
    ne = nonlinear_equations(n=6, m=9, p=4, seed=3)
    assert ne.f_star == 0.0 and float(ne.value(ne.x_star)) <= 1e-28
    lse = log_sum_exp(n=5, m=20, mu=0.3, seed=1)
    b, mu = lse.data["b"], lse.data["mu"]
    assert abs(lse.f_star - mu * np.log(np.sum(np.exp(-b / mu)))) <= 1e-12
    assert float(torch.linalg.vector_norm(lse.grad(lse.x_star))) <= 1e-14
    q = quadratic([1.0, 2.0, 5.0], seed=1)
    A, bq = torch.from_numpy(q.data["A"]), torch.from_numpy(q.data["b"])
    assert rel_err(q.x_star, torch.linalg.solve(A, bq)) <= 1e-12
    assert quadratic([-1.0, 2.0]).f_star is None and quadratic([0.0, 2.0]).x_star is None



@pytest.mark.parametrize("make", [lambda: lse_cubic(), lambda: lse_cubic(c=0.0, scale=3.0, seed=1),
                                  lambda: pseudo_huber(), lambda: pseudo_huber(n=16, t0=3.0, seed=1),
                                  lambda: pseudo_huber(n=5, c=0.5, scale=2.0, seed=3)])
def test_origin_optima_agree_with_scipy(make):
    """lse_cubic and pseudo_huber: x* = 0, f* = 0 in closed form; the origin is stationary, and an independent
    solver (scipy's BFGS from x0) finds nothing below f* and ends at f* (to 1e-12) near the origin."""
    scipy_optimize = pytest.importorskip("scipy.optimize")
    p = make()
    assert p.f_star == 0.0 and torch.equal(p.x_star, torch.zeros(p.n, dtype=DT))
    assert abs(float(p.value(p.x_star))) <= 1e-15
    assert float(torch.linalg.vector_norm(p.grad(p.x_star))) <= 1e-14
    oracles = p.as_scipy()
    res = scipy_optimize.minimize(oracles["fun"], p.x0.numpy(), jac=True, method="BFGS",
                                  options={"gtol": 1e-10, "maxiter": 2000})
    assert -1e-15 <= res.fun <= 1e-12
    assert np.linalg.norm(res.x) <= 1e-5 * float(torch.linalg.vector_norm(p.x0))


def test_lse_cubic_and_pseudo_huber_starts():
    """lse_cubic: ||x0 - x*|| = D; pseudo_huber: |<a_j, x0>| = t0 for every j, so ||x0|| = t0 sqrt(n)/scale."""
    for p, D in ((lse_cubic(), 10.0), (lse_cubic(n=5, m=9, D=3.0, seed=4), 3.0)):
        assert float(torch.linalg.vector_norm(p.x0)) == pytest.approx(D, rel=1e-14)
        assert np.allclose(p.data["p"] @ p.data["A"], 0.0, atol=1e-15) and p.data["p"].sum() == pytest.approx(1.0)
    for n, scale, t0 in ((8, 1.0, 2.0), (5, 2.0, 0.5)):
        q = pseudo_huber(n=n, scale=scale, t0=t0, seed=2)
        assert np.allclose(np.abs(q.data["A"] @ q.x0.numpy()), t0, rtol=1e-13)
        assert float(torch.linalg.vector_norm(q.x0)) == pytest.approx(t0 * math.sqrt(n) / scale, rel=1e-13)

def test_metric_attributes():
    lse = log_sum_exp(n=5, m=20, seed=1)
    A0 = torch.from_numpy(lse.data["A0"])
    assert rel_err(lse.metric_B, A0.T @ A0) <= 1e-14
    assert lam_min(log_sum_exp(n=6, m=4, seed=1).metric_B) > 0  # ridge when A0^T A0 is singular
    ne = nonlinear_equations(n=8, m=5, p=4, seed=1)
    A = torch.from_numpy(ne.data["A"])
    assert rel_err(ne.metric_B, A.T @ A + 1e-8 * torch.eye(8, dtype=DT)) <= 1e-14
    assert lam_min(ne.metric_B) > 0


def _cvxpy_logistic(A: np.ndarray, y: np.ndarray, reg: float) -> float:
    cp = pytest.importorskip("cvxpy")
    n, d = A.shape
    x = cp.Variable(d)
    obj = cp.sum(cp.logistic(-cp.multiply(y, A @ x))) / n + 0.5 * reg * cp.sum_squares(x)
    prob = cp.Problem(cp.Minimize(obj))
    prob.solve(solver=cp.CLARABEL)
    assert prob.status == cp.OPTIMAL
    return float(prob.value)


@pytest.mark.parametrize("make", [lambda: logistic_regression("breast_cancer"),
                                  lambda: synthetic_logistic(n=200, d=6, seed=11),
                                  lambda: small("logreg-synthetic-planted")])
def test_logistic_f_star_agrees_with_cvxpy(make):
    p = make()
    ref = _cvxpy_logistic(p.data["A"], p.data["y"], p.reg)
    assert abs(p.f_star - ref) <= 1e-6 * max(1.0, abs(ref))
    assert p.f_star <= ref + 1e-12  # Newton's answer is at least as good as the interior-point one


def test_cubic_f_star_agrees_with_cvxpy():
    cp = pytest.importorskip("cvxpy")
    for p in (cubic_lipschitz(), cubic_lipschitz(n=6, m=10, seed=1, mu=0.1)):
        A, b, mu = p.data["A"], p.data["b"], p.data["mu"]
        x = cp.Variable(A.shape[1])
        obj = cp.sum(cp.power(cp.abs(A @ x - b), 3)) / 3 + 0.5 * mu * cp.sum_squares(x)
        prob = cp.Problem(cp.Minimize(obj))
        prob.solve(solver=cp.CLARABEL)
        assert prob.status == cp.OPTIMAL
        assert abs(p.f_star - prob.value) <= 1e-6 * max(1.0, abs(prob.value))
        assert p.f_star <= prob.value + 1e-12


def test_certified_optimum_is_computed_once_per_process(monkeypatch):
    calls = []
    real = _certify.newton_minimize

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_certify, "newton_minimize", counting)
    p1 = logistic_regression("iris_binary", reg=0.0123)
    p2 = logistic_regression("iris_binary", reg=0.0123)
    assert p1.f_star == p2.f_star
    assert torch.equal(p1.x_star, p2.x_star)
    assert len(calls) == 1
    p2.x_star.add_(1.0)  # mutating a returned x_star does not corrupt the cache
    assert torch.equal(logistic_regression("iris_binary", reg=0.0123).x_star, p1.x_star)


def test_unregularized_logistic_has_no_certified_optimum():
    p = logistic_regression("iris_binary", reg=0.0)  # separable: no minimizer exists
    assert p.f_star is None and p.x_star is None and p.constants.mu is None


# --------------------------------------------------------------------------- constants
def test_logistic_L_and_mu():
    for name in ("logreg-breast_cancer", "logreg-synthetic-small"):
        p = small(name)
        L, mu = p.constants.L, p.constants.mu
        pts = sample_points(p, k=4, scale=1.0, seed=2)
        pts[0] = torch.zeros(p.n, dtype=DT)  # sigma' = 1/4 everywhere: lambda_max = L exactly
        top = [lam_max(p.hessian(x)) for x in pts]
        bottom = [lam_min(p.hessian(x)) for x in pts]
        assert max(top) <= L * (1 + 1e-12)
        assert any(t > L / 10 for t in top)  # would catch L/10
        assert min(bottom) >= mu * (1 - 1e-9)
    # would catch 10 mu: the synthetic features with scale 1e-3 leave lambda_min close to reg
    p = small("logreg-synthetic-small")
    assert any(lam_min(p.hessian(x)) < 10 * p.constants.mu for x in sample_points(p, k=2))


def _third(p: Problem, x, u, v) -> float:
    """D^3 f(x)[u, u, v] by autograd."""
    hvp_u = lambda z: tf.jvp(tf.grad(p.value), (z,), (u,))[1]  # noqa: E731
    return float(torch.dot(u, tf.jvp(hvp_u, (x,), (v,))[1]))


def test_logistic_quasi_self_concordance_and_L2():
    # general data: the bounds hold at random points
    p = small("logreg-breast_cancer")
    M, L2 = p.constants.M, p.constants.L2
    g = torch.Generator().manual_seed(3)
    for _ in range(4):
        x, u, v, w = (torch.randn(p.n, generator=g, dtype=DT) * 0.3 for _ in range(4))
        quad = float(u @ p.hessian(x) @ u)
        assert abs(_third(p, x, u, v)) <= M * float(v.norm()) * quad * (1 + 1e-9)
        dH = torch.linalg.matrix_norm(p.hessian(x) - p.hessian(w), 2)
        assert float(dH) <= L2 * float((x - w).norm())
    # one sample (a, y = 1), negligible reg: both constants are nearly attained along a, so a
    # constant ten times too small is caught
    a = np.array([[3.0, -1.0, 2.0]])
    q = logistic_regression((a, np.array([1.0])), reg=1e-12, standardize=False)
    at = torch.from_numpy(a[0])
    e = at / at.norm()
    ratios_M, ratios_L2 = [], []
    for t in (2.0, 4.0, 6.0):  # margins z = -t (misclassified side), |1 - 2 sigma| close to 1
        x = -t * at / at.dot(at)
        quad = float(e @ q.hessian(x) @ e)
        ratios_M.append(abs(_third(q, x, e, e)) / quad)
    zc = -math.log((3 + math.sqrt(3)) / (3 - math.sqrt(3)))  # where |sigma'''| peaks
    for h in (1e-3, 1e-2):
        x = zc * at / at.dot(at)
        y = x + h * e
        ratios_L2.append(float(torch.linalg.matrix_norm(q.hessian(x) - q.hessian(y), 2)) / h)
    assert max(ratios_M) <= q.constants.M * (1 + 1e-9) and max(ratios_M) > q.constants.M / 10
    assert max(ratios_L2) <= q.constants.L2 * (1 + 1e-6) and max(ratios_L2) > q.constants.L2 / 10


def test_softmax_L_and_mu():
    for name in ("softmax-wine", "softmax-digits-small"):
        p = small(name)
        L = p.constants.L
        top = [lam_max(p.hessian(x)) for x in sample_points(p, k=3, scale=0.5)]
        assert max(top) <= L * (1 + 1e-12)
        assert top[0] > L / 10  # at the origin lambda_max = 2L/K - ...: catches L/10 for K <= 10
        assert min(lam_min(p.hessian(x)) for x in sample_points(p, k=2)) >= p.constants.mu * (1 - 1e-9)


def test_log_sum_exp_L():
    for p in (small("log-sum-exp-small"), log_sum_exp(n=3, m=4, seed=1)):
        L = p.constants.L
        top = [lam_max(p.hessian(x)) for s in (1.0, 10.0) for x in sample_points(p, k=10, scale=s, seed=4)]
        assert max(top) <= L * (1 + 1e-12)
        assert max(top) > L / 10  # would catch L/10
        assert p.constants.L2 == pytest.approx(p.constants.M * L)


def test_quadratic_constants_are_exact():
    eigs = [0.5, 2.0, 3.0, 10.0]
    p = quadratic(eigs, seed=3)
    spec = torch.linalg.eigvalsh(p.hessian(p.x0))
    assert rel_err(spec, torch.tensor(eigs, dtype=DT)) <= 1e-12
    assert p.constants.L == 10.0 and p.constants.mu == 0.5 and p.constants.L2 == 0.0 and p.constants.convex
    q = quadratic([-2.0, 1.0], seed=0)
    assert not q.constants.convex and q.constants.mu is None and q.constants.L == 2.0
    c = quadratic_with_condition(50, 1e3, seed=1)
    ev = torch.linalg.eigvalsh(c.hessian(c.x0))
    assert float(ev[-1] / ev[0]) == pytest.approx(1e3, rel=1e-9)
    assert c.constants.L / c.constants.mu == pytest.approx(1e3, rel=1e-12)
    # would catch: L/10 is below the top eigenvalue
    assert float(ev[-1]) > c.constants.L / 10


def test_nonlinear_p2_constants():
    p = small("nonlinear-p2")
    ev = torch.linalg.eigvalsh(p.hessian(p.x0))
    assert float(ev[-1]) == pytest.approx(p.constants.L, rel=1e-10)
    assert float(ev[0]) == pytest.approx(p.constants.mu, rel=1e-8)
    assert small("nonlinear-p4").constants.L is None and small("nonlinear-p4").constants.convex


def test_cubic_hessian_lipschitz_constant():
    for p in (cubic_lipschitz(), small("cubic")):
        L2 = p.constants.L2
        A = torch.from_numpy(p.data["A"])
        g = torch.Generator().manual_seed(0)
        ratios = []
        for s in (0.1, 1.0, 10.0):
            for _ in range(15):
                x = s * torch.randn(p.n, generator=g, dtype=DT)
                i = int(torch.randint(A.shape[0], (1,), generator=g))
                h = A[i] / A[i].norm() * s * float(torch.rand(1, generator=g, dtype=DT))
                dH = torch.linalg.matrix_norm(p.hessian(x) - p.hessian(x + h), 2)
                ratios.append(float(dH) / float(h.norm()))
        assert max(ratios) <= L2 * (1 + 1e-12)
        assert max(ratios) > L2 / 10  # would catch L2/10



def _hessian_lipschitz_ratios(p: Problem, directions: str, seed: int = 0) -> list[float]:
    """||H(x) - H(x + h)|| / ||h|| at random x (scales 0.1..3), for small h along rows of A, coordinates, or random."""
    A = torch.from_numpy(p.data["A"])
    g = torch.Generator().manual_seed(seed)
    ratios = []
    for s in (0.1, 0.5, 1.0, 3.0):
        for k in range(30):
            x = s * torch.randn(p.n, generator=g, dtype=DT)
            kind = directions[k % len(directions)]
            if kind == "row":
                i = int(torch.randint(A.shape[0], (1,), generator=g))
                h = A[i] / A[i].norm()
            elif kind == "coordinate":
                h = torch.zeros(p.n, dtype=DT)
                h[k % p.n] = 1.0
            else:
                h = torch.randn(p.n, generator=g, dtype=DT)
                h /= h.norm()
            h = h * 10.0 ** float(torch.empty(1, dtype=DT).uniform_(-3.0, 0.0, generator=g))
            dH = torch.linalg.matrix_norm(p.hessian(x) - p.hessian(x + h), 2)
            ratios.append(float(dH) / float(h.norm()))
    return ratios


def test_lse_cubic_hessian_lipschitz_constant():
    """L2 = 2c + 2 max_j ||a_j||^3 bounds the Hessian's variation; with c = 1 the cubic term alone (moving one
    coordinate) shows more than L2/10, so a constant ten times too small is caught."""
    for p in (small("lse-cubic"), small("lse-only"), lse_cubic(n=4, m=6, c=2.0, scale=0.5, seed=2)):
        ratios = _hessian_lipschitz_ratios(p, ("row", "coordinate", "random"))
        assert max(ratios) <= p.constants.L2 * (1 + 1e-10), p.name
        r = float(np.max(np.linalg.norm(p.data["A"], axis=1)))
        assert p.constants.L2 == pytest.approx(2.0 * p.data["c"] + 2.0 * r**3, rel=1e-15)
    assert max(_hessian_lipschitz_ratios(small("lse-cubic"), ("coordinate",))) > small("lse-cubic").constants.L2 / 10


def test_pseudo_huber_constants():
    """L2 = 2c + 0.8587 scale^3 bounds the Hessian's variation and, for c = 0, is attained along a row a_j
    where <a_j, x> = 1/2 (to 1e-6 with a step of 1e-7); L = scale^2 is the Hessian's largest eigenvalue at 0."""
    for p in (small("pseudo-huber"), small("pseudo-huber-cubic"), pseudo_huber(n=6, scale=3.0, seed=5)):
        assert max(_hessian_lipschitz_ratios(p, ("row", "coordinate", "random"))) <= p.constants.L2 * (1 + 1e-10)
    for p in (small("pseudo-huber"), pseudo_huber(n=6, scale=3.0, seed=5)):
        A = p.data["A"]
        scale = float(np.linalg.norm(A[0]))
        x = torch.from_numpy(np.linalg.solve(A, np.r_[0.5, np.zeros(p.n - 1)]))
        h = torch.from_numpy(A[0] / scale) * 1e-7
        ratio = float(torch.linalg.matrix_norm(p.hessian(x + h) - p.hessian(x), 2)) / 1e-7
        assert ratio == pytest.approx(p.constants.L2, rel=1e-6)
        assert p.constants.L == pytest.approx(scale**2, rel=1e-14)
        zero = torch.zeros(p.n, dtype=DT)
        assert lam_max(p.hessian(zero)) == pytest.approx(p.constants.L, rel=1e-12)
        assert max(lam_max(p.hessian(x)) for x in sample_points(p, k=5)) <= p.constants.L * (1 + 1e-12)
    assert small("pseudo-huber-cubic").constants.L is None  # the cubic term's Hessian 2c|x| is unbounded


# --------------------------------------------------------------------------- options used by the theorem checks
def test_rosenbrock_start_option():
    p = rosenbrock(x0=(-1.2, 1.0))
    assert torch.equal(p.x0, torch.tensor([-1.2, 1.0], dtype=DT))
    assert p.name == "rosenbrock[x0=(-1.2,1)]" and rosenbrock(x0=[-2.0, 2.0]).name == "rosenbrock"
    x = torch.tensor([0.3, -0.7], dtype=DT)
    assert float(p.value(x)) == float(rosenbrock().value(x))  # the start changes nothing else
    for bad in ((1.0,), (1.0, 2.0, 3.0), (math.nan, 1.0), "start"):
        with pytest.raises(ValueError, match="rosenbrock"):
            rosenbrock(x0=bad)


def test_chebyshev_scale_option():
    """scale = 2, p = 2 is Nesterov's (x_1 - 1)^2/4 + sum_i (x_{i+1} - 2 x_i^2 + 1)^2; scale multiplies f."""
    p = small("chebyshev-scaled")
    base = chebyshev_rosenbrock(n=4, p=2)
    for x in sample_points(p, k=4):
        nesterov = 0.25 * (float(x[0]) - 1.0) ** 2 + sum(
            (float(x[i + 1]) - 2.0 * float(x[i]) ** 2 + 1.0) ** 2 for i in range(3))
        assert float(p.value(x)) == pytest.approx(nesterov, rel=1e-13)
        assert float(p.value(x)) == pytest.approx(2.0 * float(base.value(x)), rel=1e-14)
        assert rel_err(p.gauss_newton(x), 2.0 * base.gauss_newton(x)) <= 1e-14
    assert p.name == "chebyshev-rosenbrock[n=4,scale=2.0]" and p.scale == 2.0
    assert torch.equal(p.x0, base.x0) and p.f_star == 0.0
    with pytest.raises(ValueError, match="chebyshev-rosenbrock"):
        chebyshev_rosenbrock(n=4, scale=0.0)


def test_quadratic_start_option():
    """x0_scale draws x0 = x0_scale * z after b: A, b and the optimum do not depend on it, x0 scales with it."""
    eigs = [1.0, 2.0, 5.0, 10.0, 30.0]
    p0, p3, p6 = (quadratic(eigs, seed=1, x0_scale=s) for s in (0.0, 3.0, 6.0))
    for p in (p3, p6):
        assert np.array_equal(p.data["A"], p0.data["A"]) and np.array_equal(p.data["b"], p0.data["b"])
        assert p.f_star == p0.f_star
    assert torch.equal(p0.x0, torch.zeros(5, dtype=DT))
    assert rel_err(p6.x0, 2.0 * p3.x0) == 0.0 and float(p3.x0.norm()) > 1.0
    rng = np.random.default_rng(1)
    rng.standard_normal((5, 5))
    rng.standard_normal(5)
    assert np.array_equal(p3.x0.numpy(), 3.0 * rng.standard_normal(5))
    assert p3.name == "quadratic[d=5,cond=30,seed=1,x0_scale=3]" and p0.name == "quadratic[d=5,cond=30,seed=1]"


def test_quadratic_from_matrix():
    """The same problem as quadratic() when given its data; the closed-form optimum and exact constants."""
    q = quadratic([0.5, 2.0, 3.0, 10.0], seed=3, x0_scale=1.0)
    p = quadratic_from_matrix(q.data["A"], q.data["b"], x0=q.x0.numpy(), name="copy")
    assert p.name == "copy" and torch.equal(p.x0, q.x0)
    for x in sample_points(q):
        assert float(p.value(x)) == float(q.value(x))
        assert torch.equal(p.grad(x), q.grad(x))
    assert p.f_star == pytest.approx(q.f_star, rel=1e-13) and rel_err(p.x_star, q.x_star) <= 1e-13
    assert p.constants.L == pytest.approx(10.0, rel=1e-13) and p.constants.mu == pytest.approx(0.5, rel=1e-13)
    m = small("quadratic-matrix")
    A, b = torch.from_numpy(m.data["A"]), torch.from_numpy(m.data["b"])
    assert rel_err(m.x_star, torch.linalg.solve(A, b)) <= 1e-13 and torch.equal(m.x0, torch.ones(5, dtype=DT))
    assert m.name == "quadratic-matrix[d=5]"
    indefinite = quadratic_from_matrix(np.diag([-1.0, 2.0]), np.ones(2))
    assert indefinite.f_star is None and not indefinite.constants.convex
    with pytest.raises(ValueError, match="not symmetric"):
        quadratic_from_matrix(np.array([[1.0, 2.0], [0.0, 1.0]]), np.ones(2))
    with pytest.raises(ValueError, match="quadratic_from_matrix"):
        quadratic_from_matrix(np.eye(3), np.ones(2))
    with pytest.raises(ValueError, match="quadratic_from_matrix"):
        quadratic_from_matrix(np.eye(2), np.ones(2), x0=np.ones(3))


def test_synthetic_logistic_construction():
    """The documented construction, rebuilt here: default (ascending scales, margins A x_true rescaled to std 2)
    and the theorem checks' variant (descending scales, margins Z u with ||u|| = signal in the unscaled features)."""
    expit = pytest.importorskip("scipy.special").expit
    n, d, seed = 120, 6, 4
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d))
    x_true = rng.standard_normal(d)
    uniforms = rng.random(n)
    default = synthetic_logistic(n, d, seed=seed)
    A = Z * np.logspace(-3.0, 1.0, d)
    margins = A @ x_true
    margins *= 2.0 / margins.std()
    assert np.array_equal(default.data["A"], A)
    assert np.array_equal(default.data["y"], np.where(uniforms < expit(margins), 1.0, -1.0))
    planted = synthetic_logistic(n, d, scale_min=1e-2, scale_max=1.0, seed=seed, reg=1e-3, descending=True, signal=3.0)
    assert np.array_equal(planted.data["A"], Z * np.logspace(0.0, -2.0, d))
    u = x_true * (3.0 / np.linalg.norm(x_true))
    assert np.array_equal(planted.data["y"], np.where(uniforms < expit(Z @ u), 1.0, -1.0))
    assert planted.reg == 1e-3 and torch.equal(planted.x0, torch.zeros(d, dtype=DT))
    assert planted.name == ("logreg-synthetic[n=120,d=6,scale_min=0.01,scale_max=1.0,seed=4,reg=0.001,"
                            "descending=True,signal=3.0]")

# --------------------------------------------------------------------------- data handling and errors
def test_standardize():
    from sklearn.datasets import load_digits

    X = standardize(load_digits().data)
    const = load_digits().data.std(axis=0) == 0
    assert const.any() and np.all(X[:, const] == 0)
    assert np.allclose(X[:, ~const].mean(axis=0), 0, atol=1e-12)
    assert np.allclose(X[:, ~const].std(axis=0), 1, atol=1e-12)


def test_labels_and_intercept():
    A = np.random.default_rng(0).standard_normal((30, 4))
    y01 = (A[:, 0] > 0).astype(float)
    p01 = logistic_regression((A, y01))
    ppm = logistic_regression((A, 2 * y01 - 1))
    x = torch.randn(4, dtype=DT)
    assert float(p01.value(x)) == float(ppm.value(x))
    pi = logistic_regression((A, y01), fit_intercept=True)
    assert pi.n == 5 and np.all(pi.data["A"][:, -1] == 1.0)
    s = softmax_regression((A, np.array(["a", "b", "c"] * 10)))
    assert s.n == 4 * 3 and s.data["K"] == 3


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ValueError) as err:
        logistic_regression("mushrooms")
    assert all(name in str(err.value) for name in BINARY_DATASETS)
    with pytest.raises(ValueError) as err:
        softmax_regression("mnist")
    assert all(name in str(err.value) for name in MULTICLASS_DATASETS)


@pytest.mark.parametrize(
    "dataset",
    [
        (np.ones((5, 3)), np.ones(4)),  # y too short
        (np.ones(5), np.ones(5)),  # A not 2-D
        (np.ones((5, 3)), np.ones((5, 1))),  # y not 1-D
        (np.ones((4, 2)), np.array([0.0, 1.0, 2.0, 1.0])),  # labels outside {0,1}/{-1,1}
        (np.array([[1.0, np.nan]]), np.array([1.0])),  # non-finite features
        (np.ones((3, 2)),),  # not a pair
    ],
)
def test_bad_logistic_input(dataset):
    with pytest.raises(ValueError):
        logistic_regression(dataset)


def test_bad_other_input():
    with pytest.raises(ValueError):
        softmax_regression((np.ones((4, 2)), np.zeros(4)))  # one class
    with pytest.raises(ValueError):
        softmax_regression((np.ones((4, 2)), np.zeros(3)))
    with pytest.raises(ValueError):
        logistic_regression("breast_cancer", reg=-1.0)
    with pytest.raises(ValueError):
        nonlinear_equations(n=3, m=4, p=1.5)
    with pytest.raises(ValueError):
        chebyshev_rosenbrock(n=1)
    with pytest.raises(ValueError):
        quadratic(np.ones((2, 2)))
    with pytest.raises(ValueError):
        quadratic_with_condition(5, 0.5)
    with pytest.raises(ValueError):
        log_sum_exp(mu=0.0)
    with pytest.raises(ValueError):
        rosenbrock(b=-1.0)
    for bad in (dict(n=8, m=8), dict(c=-1.0), dict(scale=0.0), dict(D=math.inf)):
        with pytest.raises(ValueError, match="lse-cubic"):
            lse_cubic(**bad)
    for bad in (dict(n=0), dict(c=math.nan), dict(scale=-1.0), dict(t0=0.0)):
        with pytest.raises(ValueError, match="pseudo-huber"):
            pseudo_huber(**bad)
    with pytest.raises(ValueError, match="signal"):
        synthetic_logistic(n=20, d=3, signal=-1.0)
    with pytest.raises(ValueError, match="x0_scale"):
        quadratic([1.0, 2.0], x0_scale=math.inf)


# --------------------------------------------------------------------------- residual pairs (least-squares checks)
def _central_jacobian(fun, x, h=1e-6):
    x = np.asarray(x, dtype=float)
    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        cols.append((fun(x + e) - fun(x - e)) / (2 * h))
    return np.stack(cols, axis=1)


def _gn_step(fun, jac, x):
    x = np.asarray(x, dtype=float)
    return x - np.linalg.lstsq(jac(x), fun(x), rcond=None)[0]


RESIDUAL_PAIRS = {
    "rosenbrock": (rosenbrock_residual, rosenbrock_residual_jac, [(-1.2, 1.0), (0.3, -0.7), (2.0, 3.0)]),
    "cubic_pair": (cubic_pair, cubic_pair_jac, [(3.0,), (0.4,), (-1.3,)]),
    "large_residual_0.5": (*large_residual(0.5), [(1.0,), (-0.6,), (2.5,)]),
    "large_residual_-0.5": (*large_residual(-0.5), [(1.0,), (-0.6,), (2.5,)]),
    "saturating": (saturating_residual, saturating_residual_jac, [(1.0,), (-0.3,), (4.0,)]),
}


@pytest.mark.parametrize("name", list(RESIDUAL_PAIRS))
def test_residual_pair_jacobians_match_central_differences(name):
    fun, jac, points = RESIDUAL_PAIRS[name]
    for x in points:
        J = jac(np.asarray(x, dtype=float))
        assert J.shape == (fun(np.asarray(x, dtype=float)).size, len(x))
        np.testing.assert_allclose(J, _central_jacobian(fun, x), rtol=1e-7, atol=1e-8)


def test_rosenbrock_residual_root_and_gauss_newton_error_map():
    """Root (1, 1); det J = -10; the Gauss-Newton step maps e = x - x* to (0, -e1^2) exactly."""
    assert np.array_equal(rosenbrock_residual(np.ones(2)), np.zeros(2))
    rng = np.random.default_rng(0)
    for x in rng.normal(size=(5, 2)):
        assert np.linalg.det(rosenbrock_residual_jac(x)) == pytest.approx(-10.0, rel=1e-12)
        e = x - 1.0
        np.testing.assert_allclose(_gn_step(rosenbrock_residual, rosenbrock_residual_jac, x) - 1.0,
                                   [0.0, -e[0] ** 2], atol=1e-12 * (1 + e[0] ** 2))


def test_cubic_pair_root_and_quadratic_constant():
    """Root 1 with J* = (2, 3); the Gauss-Newton ratio e+/e^2 tends to 11/13 (first-order term O(e))."""
    assert np.array_equal(cubic_pair(np.ones(1)), np.zeros(2))
    assert np.array_equal(cubic_pair_jac(np.ones(1)), [[2.0], [3.0]])
    for e in (1e-3, -1e-3):
        e_next = _gn_step(cubic_pair, cubic_pair_jac, [1.0 + e])[0] - 1.0
        assert e_next / e**2 == pytest.approx(11.0 / 13.0, rel=1e-2)


@pytest.mark.parametrize("t", [0.5, -0.5, 0.25])
def test_large_residual_minimizer_and_gauss_newton_rate(t):
    """x* = 0 is a strict local minimizer of F with residual (1, -1) and J* = (1, 1); the derivative of the
    Gauss-Newton map at 0 is t (central differences)."""
    fun, jac = large_residual(t)
    x0 = np.zeros(1)
    assert np.array_equal(fun(x0), [1.0, -1.0])
    assert np.array_equal(jac(x0), [[1.0], [1.0]])
    assert (jac(x0).T @ fun(x0))[0] == 0.0  # grad F(0) = J^T r = 0

    def F(x):
        return 0.5 * float(fun(np.array([x])) @ fun(np.array([x])))

    h = 1e-4
    assert (F(h) - 2 * F(0.0) + F(-h)) / h**2 == pytest.approx(2.0 - 2.0 * t, rel=1e-6)
    slope = (_gn_step(fun, jac, [h])[0] - _gn_step(fun, jac, [-h])[0]) / (2 * h)
    assert slope == pytest.approx(t, rel=1e-6)


def test_saturating_residual_gauss_newton_step_lands_on_equal_cost():
    """Root 0; the Gauss-Newton step is -x (1 + x^2): from 1 it lands on -1 where F = 1/4 as at 1."""
    assert np.array_equal(saturating_residual(np.zeros(1)), np.zeros(1))
    for x in (0.3, 1.0, -2.0):
        assert _gn_step(saturating_residual, saturating_residual_jac, [x])[0] == pytest.approx(-x**3, rel=1e-12)
    x1 = _gn_step(saturating_residual, saturating_residual_jac, [1.0])
    assert x1[0] == pytest.approx(-1.0, rel=1e-14)
    F = [0.5 * saturating_residual(np.array([v]))[0] ** 2 for v in (1.0, x1[0])]
    assert F[0] == pytest.approx(0.25, rel=1e-15) and F[1] == pytest.approx(F[0], rel=1e-14)


# --------------------------------------------------------------------------- seeded MLPs and batches (curvature checks)
def test_seeded_mlp_structure_and_determinism():
    model = seeded_mlp([4, 6, 5, 3])
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    assert [(m.in_features, m.out_features) for m in model if isinstance(m, torch.nn.Linear)] == [(4, 6), (6, 5), (5, 3)]
    assert all(p.dtype == DT for p in model.parameters())
    same, other = seeded_mlp([4, 6, 5, 3]), seeded_mlp([4, 6, 5, 3], seed=1)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), same.parameters()))
    assert not torch.equal(model[0].weight, other[0].weight)
    no_bias = seeded_mlp([4, 3], act=None, bias=False)
    assert [type(m).__name__ for m in no_bias] == ["Linear"] and no_bias[0].bias is None


def test_seeded_mlp_without_activation_is_affine():
    """act=None, one layer: z = x W^T + b (linear in the parameters); several layers: the product of the
    weights (a deep linear network)."""
    X = torch.randn(7, 4, generator=torch.Generator().manual_seed(0), dtype=DT)
    lin = seeded_mlp([4, 3], act=None)
    torch.testing.assert_close(lin(X), X @ lin[0].weight.T + lin[0].bias, rtol=1e-14, atol=1e-14)
    deep = seeded_mlp([4, 5, 3, 2], act=None, bias=False)
    W = deep[2].weight @ deep[1].weight @ deep[0].weight
    torch.testing.assert_close(deep(X), X @ W.T, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "bce_with_logits"])
def test_seeded_batches_shapes_labels_and_stream(loss):
    data = seeded_batches(loss, 4, 3, sizes=(5, 3), seed=2)
    assert [tuple(X.shape) for X, _ in data] == [(5, 4), (3, 4)]
    assert all(X.dtype == DT for X, _ in data)
    for X, y in data:
        if loss == "cross_entropy":
            assert y.dtype == torch.int64 and y.shape == (len(X),) and int(y.min()) >= 0 and int(y.max()) <= 2
        elif loss == "bce_with_logits":
            assert y.dtype == DT and y.shape == (len(X), 3) and set(y.unique().tolist()) <= {0.0, 1.0}
        else:
            assert y.dtype == DT and y.shape == (len(X), 3)
    again = seeded_batches(loss, 4, 3, sizes=(5, 3), seed=2)
    assert all(torch.equal(a, b) for (Xa, ya), (Xb, yb) in zip(data, again) for a, b in ((Xa, Xb), (ya, yb)))
    first = seeded_batches(loss, 4, 3, sizes=(5,), seed=2)[0]  # one generator, drawn batch by batch
    assert torch.equal(first[0], data[0][0]) and torch.equal(first[1], data[0][1])


def test_seeded_batches_full_column_rank_for_the_lower_bound_check():
    """The GGN lower-bound check needs X (8 x 4, seed 2) of full column rank: lambda_min(X^T X) > 0."""
    X = torch.cat([x for x, _ in seeded_batches("mse", 4, 3, sizes=(5, 3), seed=2)]).numpy()
    assert np.linalg.matrix_rank(X) == 4 and np.linalg.eigvalsh(X.T @ X)[0] > 1e-3


def test_seeded_psd_system_construction():
    """C = B B^T symmetric positive definite, ||g|| = g_norm, and the stated draw order."""
    C, g = seeded_psd_system()
    assert C.shape == (6, 6) and g.shape == (6,)
    assert np.array_equal(C, C.T) and np.linalg.eigvalsh(C)[0] > 0
    assert np.linalg.norm(g) == pytest.approx(9.0, rel=1e-15)
    rng = np.random.default_rng(3)
    B = rng.normal(size=(6, 6))
    g_ref = rng.normal(size=6)
    np.testing.assert_allclose(C, B @ B.T, rtol=1e-15, atol=1e-14)
    np.testing.assert_allclose(g, 9.0 * g_ref / np.linalg.norm(g_ref), rtol=1e-14, atol=0)
    C4, g4 = seeded_psd_system(4, 2.0, seed=0)
    assert C4.shape == (4, 4) and np.linalg.norm(g4) == pytest.approx(2.0, rel=1e-15)


# --------------------------------------------------------------------------- seeded data of the unlearning checks
def test_seeded_ridge_data_construction():
    """X, then w, then the noise from default_rng(seed); the ridge Hessian X^T X + alpha I is positive definite."""
    X, y, alpha = seeded_ridge_data()
    rng = np.random.default_rng(0)
    X_ref = rng.normal(size=(60, 6))
    w = rng.normal(size=6)
    noise = rng.normal(size=60)
    assert alpha == 0.3 and np.array_equal(X, X_ref)
    np.testing.assert_allclose(y, X_ref @ w + 0.3 * noise, rtol=0, atol=1e-14)
    assert np.linalg.eigvalsh(X.T @ X + alpha * np.eye(6))[0] > alpha
    X2, y2, _ = seeded_ridge_data(n=10, d=3, alpha=1.0, seed=5)
    assert X2.shape == (10, 3) and y2.shape == (10,)


def test_seeded_logistic_data_labels_and_forget_order():
    X, y, alpha, order = seeded_logistic_data()
    assert X.shape == (400, 5) and y.shape == (400,) and alpha == 1.0
    assert set(np.unique(y).tolist()) == {0.0, 1.0}
    assert np.array_equal(np.sort(order), np.arange(400))
    again = seeded_logistic_data()
    assert all(np.array_equal(a, b) for a, b in zip((X, y, order), (again[0], again[1], again[3])))
    # the labels carry signal: the plain-numpy logistic fit separates better than chance
    th = np.zeros(5)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-X @ th))
        th -= np.linalg.solve(X.T @ (X * (p * (1 - p))[:, None]) + alpha * np.eye(5), X.T @ (p - y) + alpha * th)
    assert np.mean((X @ th > 0) == (y > 0.5)) > 0.6


def test_seeded_softmax_data_scales_leave_logits_and_labels_unchanged():
    X, y, W0 = seeded_softmax_data()
    assert X.shape == (300, 5) and W0.shape == (4, 5) and y.shape == (300,)
    assert np.array_equal(np.unique(y), np.arange(4))
    s = np.array([3.0, 1.0, 1.0, 0.5, 0.3])
    Xs, ys, Ws = seeded_softmax_data(scales=s)
    np.testing.assert_allclose(Xs, X * s, rtol=1e-15, atol=0)
    np.testing.assert_allclose(Ws, W0 / s, rtol=1e-15, atol=0)
    np.testing.assert_allclose(Xs @ Ws.T, X @ W0.T, rtol=0, atol=1e-12)
    assert np.array_equal(ys, y)
    assert np.linalg.cond(Xs.T @ Xs) > 10 * np.linalg.cond(X.T @ X)
    # labels follow the model's probabilities: the empirical class frequencies match the mean probability
    Z = X @ W0.T
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    assert np.abs(np.bincount(y, minlength=4) / len(y) - P.mean(axis=0)).max() < 0.1
