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
