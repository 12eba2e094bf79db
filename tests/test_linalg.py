"""Regularized Newton solves and metrics against dense numpy/scipy references."""

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import torch

from optlib.linalg import CubicSubproblem, FactorizationError, LowRank, Metric, regularized_newton_step

DT = torch.float64
rng = np.random.default_rng(0)


def spd(n, cond=10.0, seed=0):
    r = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(r.standard_normal((n, n)))
    return Q @ np.diag(np.logspace(0, np.log10(cond), n)) @ Q.T


@pytest.mark.parametrize("metric_kind", ["identity", "dense"])
@pytest.mark.parametrize("kind", ["dense", "diag", "lowrank", "zero"])
def test_step_matches_dense_solve(kind, metric_kind):
    n, lam = 7, 0.37
    B = None if metric_kind == "identity" else spd(n, 5.0, seed=3)
    Bd = np.eye(n) if B is None else B
    g = rng.standard_normal(n)
    if kind == "dense":
        Hd = spd(n, 100.0, seed=1)
        H = torch.tensor(Hd)
    elif kind == "diag":
        h = rng.uniform(0, 3, n)
        Hd, H = np.diag(h), torch.tensor(h)
    elif kind == "lowrank":
        U = rng.standard_normal((n, 2))
        s = np.array([2.0, 0.5])
        Hd, H = U @ np.diag(s) @ U.T, LowRank(torch.tensor(U), torch.tensor(s))
    else:
        Hd, H = np.zeros((n, n)), None
    d = regularized_newton_step(H, torch.tensor(g), lam, Metric(None if B is None else torch.tensor(B)))
    ref = -scipy.linalg.solve(Hd + lam * Bd, g, assume_a="pos")
    np.testing.assert_allclose(d.numpy(), ref, rtol=1e-10, atol=1e-12)


def test_indefinite_system_raises():
    H = torch.diag(torch.tensor([1.0, -2.0], dtype=DT))
    with pytest.raises(FactorizationError, match="not positive definite"):
        regularized_newton_step(H, torch.ones(2, dtype=DT), 1.0, Metric())
    d = regularized_newton_step(H, torch.ones(2, dtype=DT), 3.0, Metric())
    assert torch.isfinite(d).all()


def test_metric_norms_and_validation():
    B = spd(4, 20.0)
    M = Metric(torch.tensor(B))
    v = rng.standard_normal(4)
    assert M.norm(torch.tensor(v)) == pytest.approx(np.sqrt(v @ B @ v))
    assert M.dual_norm(torch.tensor(v)) == pytest.approx(np.sqrt(v @ np.linalg.solve(B, v)))
    with pytest.raises(ValueError, match="positive definite"):
        Metric(torch.tensor(-np.eye(3)))
    with pytest.raises(ValueError, match="symmetric"):
        Metric(torch.tensor(np.triu(np.ones((3, 3)))))


@pytest.mark.parametrize("indefinite", [False, True])
@pytest.mark.parametrize("with_metric", [False, True])
def test_cubic_step_is_the_global_minimizer(indefinite, with_metric):
    """Compare with a multistart scipy minimization of the cubic model (an independent solver)."""
    n, M = 5, 2.5
    r = np.random.default_rng(7)
    A = spd(n, 50.0, seed=2)
    if indefinite:
        A = A - 3.0 * np.eye(n)
    B = spd(n, 4.0, seed=5) if with_metric else np.eye(n)
    g = r.standard_normal(n)
    sub = CubicSubproblem(torch.tensor(A), torch.tensor(g), Metric(torch.tensor(B) if with_metric else None))
    d = sub.solve(M)

    def model(y):
        return g @ y + 0.5 * y @ A @ y + M / 6 * np.sqrt(y @ B @ y) ** 3

    best = min((scipy.optimize.minimize(model, r.standard_normal(n), method="BFGS", options={"gtol": 1e-12})
                for _ in range(8)), key=lambda res: res.fun)
    assert sub.model_value(d, M) <= best.fun + 1e-10
    assert float(torch.linalg.vector_norm(sub.residual(d, M))) <= 1e-10 * max(1.0, float(np.linalg.norm(g)))


@pytest.mark.parametrize("metric_kind", ["identity", "dense"])
def test_cg_step_matches_dense_solve(metric_kind):
    from optlib.linalg import MatvecCurvature

    n, lam = 12, 0.05
    Hd = spd(n, 1e3, seed=4)
    B = None if metric_kind == "identity" else spd(n, 5.0, seed=6)
    g = rng.standard_normal(n)
    H = torch.tensor(Hd)
    op = MatvecCurvature(lambda v: H @ v, n, rtol=1e-13)
    d = regularized_newton_step(op, torch.tensor(g), lam, Metric(None if B is None else torch.tensor(B)))
    ref = -scipy.linalg.solve(Hd + lam * (np.eye(n) if B is None else B), g, assume_a="pos")
    np.testing.assert_allclose(d.numpy(), ref, rtol=1e-9, atol=1e-11)
    assert 1 <= op.iterations <= 2 * n


def test_cg_detects_indefinite_system():
    from optlib.linalg import MatvecCurvature

    H = torch.diag(torch.tensor([1.0, -2.0, 3.0], dtype=DT))
    op = MatvecCurvature(lambda v: H @ v, 3)
    with pytest.raises(FactorizationError, match="non-positive curvature"):
        regularized_newton_step(op, torch.ones(3, dtype=DT), 1.0, Metric())


# ------------------------------------------------------------------------------------------------
# Truncated CG: forcing terms, monotone norms, negative curvature (optlib.linalg.cg)
# ------------------------------------------------------------------------------------------------
def test_forcing_terms_and_their_validation():
    """eta = min(1/2, ||g||^theta) with theta = 1/2 ("sqrt", Nocedal & Wright Alg. 7.1) or 1 ("gradient"),
    or a constant in (0, 1); anything else is refused with the option's name."""
    from optlib.linalg.cg import check_forcing, forcing_term

    assert forcing_term("sqrt", 1e-4) == pytest.approx(1e-2)
    assert forcing_term("gradient", 1e-4) == pytest.approx(1e-4)
    assert forcing_term("sqrt", 4.0) == 0.5 and forcing_term("gradient", 0.7) == 0.5
    assert forcing_term(0.3, 1e-9) == 0.3
    for bad in ("quadratic", 0.0, 1.0, -0.1, True, None):
        with pytest.raises(ValueError, match="forcing must be"):
            check_forcing(bad)


@pytest.mark.parametrize("metric_kind", ["identity", "dense"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_truncated_cg_norms_increase_and_stay_within_the_radius(metric_kind, seed):
    """Steihaug (1983), Thm 2.1: CG from 0 on a positive definite system has iterates whose norms (in the
    preconditioner's metric B) increase monotonically; they converge to d* with ||d*|| <= ||g||_*/lam
    for PSD H, so every truncated iterate is within that radius. Here H is PSD and singular (rank n-3)."""
    from optlib.linalg import MatvecCurvature

    r = np.random.default_rng(seed)
    n, lam = 15, 0.02
    U = r.standard_normal((n, n - 3)) * np.logspace(0, 2, n - 3)
    H = torch.tensor(U @ U.T)
    metric = Metric(None if metric_kind == "identity" else torch.tensor(spd(n, 50.0, seed=seed + 10)))
    g = torch.tensor(r.standard_normal(n))
    radius = metric.dual_norm(g) / lam
    norms = []
    for j in range(1, n + 1):
        op = MatvecCurvature(lambda v: H @ v, n, rtol=1e-14, maxiter=j, negative_curvature="boundary")
        d = op.solve(g, lam, metric)
        norms.append(metric.norm(d))
        assert float(torch.dot(g, d)) < 0  # a descent direction at every truncation
    assert all(b >= a * (1 - 1e-12) for a, b in zip(norms, norms[1:])), norms
    assert max(norms) <= radius * (1 + 1e-12)


@pytest.mark.parametrize("metric_kind", ["identity", "dense"])
def test_cg_negative_curvature_goes_to_the_boundary(metric_kind):
    """With negative_curvature="boundary" an indefinite H + lam B ends CG on the sphere ||d|| = ||g||_*/lam
    (Steihaug 1983) along a descent direction that lowers the quadratic model; when the very first
    direction has non-positive curvature the step is the normalized gradient step -B^{-1} g / lam."""
    from optlib.linalg import MatvecCurvature

    n = 6
    metric = Metric(None if metric_kind == "identity" else torch.tensor(spd(n, 5.0, seed=7)))
    Hd = np.diag([3.0, 1.0, 0.5, -0.2, -1.0, -4.0])
    H = torch.tensor(Hd)
    g = torch.tensor(rng.standard_normal(n))
    lam = 0.5
    op = MatvecCurvature(lambda v: H @ v, n, negative_curvature="boundary")
    d = op.solve(g, lam, metric)
    gnorm = metric.dual_norm(g)
    assert metric.norm(d) == pytest.approx(gnorm / lam, rel=1e-12)
    assert op.report["cg_exit"] in ("negative-curvature", "boundary")
    model = float(torch.dot(g, d) + 0.5 * torch.dot(d, H @ d + lam * metric.apply(d)))
    assert float(torch.dot(g, d)) < 0 and model < 0
    # The first direction -B^{-1} g already has negative curvature: the normalized gradient step.
    Hneg = -torch.eye(n, dtype=DT)
    op0 = MatvecCurvature(lambda v: Hneg @ v, n, negative_curvature="boundary")
    d0 = op0.solve(g, lam, metric)
    torch.testing.assert_close(d0, -metric.inv_apply(g) / lam, rtol=1e-12, atol=1e-14)
    assert op0.iterations == 1 and op0.report["cg_exit"] == "negative-curvature"
    with pytest.raises(ValueError, match="negative_curvature must be"):
        MatvecCurvature(lambda v: v, n, negative_curvature="ignore")


def test_cg_report_and_forcing_rule():
    """A converged solve reports its forcing term and a residual below it; the residual recomputed
    from d agrees; the gradient forcing rule solves more accurately than the sqrt rule."""
    from optlib.linalg import MatvecCurvature

    n, lam = 20, 1e-3
    H = torch.tensor(spd(n, 1e3, seed=5))
    g = 1e-3 * torch.tensor(rng.standard_normal(n))
    gnorm = float(torch.linalg.vector_norm(g))
    rho = {}
    for forcing in ("sqrt", "gradient"):
        op = MatvecCurvature(lambda v: H @ v, n, forcing=forcing)
        d = op.solve(g, lam, Metric())
        rep = op.report
        assert rep["cg_exit"] == "converged" and rep["cg_residual"] <= rep["cg_forcing"]
        true = float(torch.linalg.vector_norm(H @ d + lam * d + g)) / gnorm
        assert true <= rep["cg_forcing"] * (1 + 1e-8)
        rho[forcing] = true
    assert rho["gradient"] < rho["sqrt"]
