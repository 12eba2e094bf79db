"""Bilevel problems with closed-form hypergradients (spec 30 §6): Q1, Q2, Q3.

All three share the lower level of Q1/Q2 or a weighted ridge, strongly convex in ``y`` with known
``mu`` and ``l_g1``; each returns a :class:`optlib.bilevel.BilevelProblem` carrying ``Phi``,
``y*(x)`` and ``grad Phi`` in closed form, and its constants derived below.

**Q1 (quadratic).** ``g(x, y) = (1/2) y^T A y - y^T (B x + c)``, ``A`` SPD, so ``y*(x) = A^{-1}(B x + c)``,
``grad^2_yy g = A``, ``grad^2_xy g v = -B^T v``. ``f(x, y) = (1/2)||C y - d||^2 + (rho/2)||x||^2``. Then
``grad Phi(x) = rho x + B^T A^{-1} C^T (C y*(x) - d)``; with ``K = C A^{-1} B`` and ``e = C A^{-1} c - d``,
``Phi(x) = (1/2)||K x + e||^2 + (rho/2)||x||^2``, ``x* = -(K^T K + rho I)^{-1} K^T e``. Constants:
``mu = lambda_min(A)``, ``l_g1 = lambda_max(A)``, ``L0 = ||K^T K + rho I||``, ``L1 = 0``; the formula
``h(x, y) = rho x + B^T A^{-1} C^T (C y - d)`` evaluated at any ``y`` is Lipschitz in ``y`` with
``L_phi_y = ||B^T A^{-1} C^T C||``, so ``||h(x, y) - grad Phi(x)|| <= L_phi_y ||y - y*(x)||``.

**Q2 (unbounded smoothness, the BO-REP regime).** The same ``g``; ``f(x, y) = exp(u^T x) + (1/2)||C y - d||^2``
and ``B u = 0`` (``B`` is built with ``u`` in its null space). ``grad Phi(x) = u e^{u^T x} + K^T (K x + e)``,
``grad^2 Phi = u u^T e^{u^T x} + K^T K``. Since ``K u = 0``, ``u`` is orthogonal to the range of ``K^T``, so
``||grad Phi||^2 = ||u||^2 e^{2 u^T x} + ||K^T(K x + e)||^2 >= ||u||^2 e^{2 u^T x}`` and
``||grad^2 Phi|| <= ||K||^2 + ||u|| ||grad Phi||``: ``Phi`` is ``(L0, L1) = (||K||^2, ||u||)``-smooth and not
globally smooth (its Hessian grows like ``e^{u^T x}``). ``Phi >= 0`` with infimum not attained along ``-u``;
``||grad Phi|| -> 0`` is reachable. The start has ``u^T x0 = 10`` (spec 30 §6).

**Q3 (weighted-ridge hyper-cleaning).** Training rows ``(a_i, b_i)`` of scikit-learn's diabetes data
(standardized) with a fraction of targets corrupted; ``y*(lam) = argmin_y sum_i s(lam_i)(a_i^T y - b_i)^2 +
(mu/2)||y||^2`` with ``s`` the logistic sigmoid, the upper level the clean validation error
``f(lam, y) = (1/(2 n_val))||A_val y - b_val||^2``. ``grad^2_yy g = 2 A^T S A + mu I`` (``S = diag s(lam)``),
``(grad^2_{lam y} g v)_i = 2 s'(lam_i)(a_i^T y - b_i)(a_i^T v)``, ``grad_lam f = 0``; the per-example
hypergradient ``grad Phi(lam)_i = -2 s'(lam_i) r_i (a_i^T v*)`` with ``r = A y* - b`` and
``v* = H^{-1} grad_y f``. Constants: ``mu`` (the ridge weight), ``l_g1 <= 2 ||A||^2 + mu``.

Q1/Q2 data: ``numpy.random.default_rng(seed)``; the Hessians have chosen spectra.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..bilevel.problem import BilevelConstants, BilevelProblem
from ._data import problem_name


def _spd(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * np.linspace(lo, hi, n)) @ Q.T


class _Quadratic:
    """The shared algebra of Q1/Q2: lower level, ``y*``, ``K``, ``e`` (float64 numpy and torch)."""

    def __init__(self, A: np.ndarray, B: np.ndarray, c: np.ndarray, C: np.ndarray, d: np.ndarray) -> None:
        self.A, self.B, self.c, self.C, self.d = (torch.from_numpy(M) for M in (A, B, c, C, d))
        Ainv = np.linalg.inv(A)
        self.K_np = C @ Ainv @ B
        self.e_np = C @ Ainv @ c - d
        self.K, self.e = torch.from_numpy(self.K_np), torch.from_numpy(self.e_np)
        eig = np.linalg.eigvalsh(A)
        self.mu, self.l_g1 = float(eig[0]), float(eig[-1])
        self.L_phi_y = float(np.linalg.norm(B.T @ Ainv @ C.T @ C, 2))

    def g(self, x: Tensor, y: Tensor) -> Tensor:
        return 0.5 * y @ (self.A @ y) - y @ (self.B @ x + self.c)

    def y_star(self, x: Tensor) -> Tensor:
        return torch.linalg.solve(self.A, self.B @ x + self.c)

    def residual(self, y: Tensor) -> Tensor:
        return self.C @ y - self.d

    def quadratic_grad(self, x: Tensor) -> Tensor:
        return self.K.T @ (self.K @ x + self.e)


def _instance(nx: int, ny: int, m: int, mu: float, l_g1: float, seed: int) -> tuple[np.random.Generator, dict]:
    rng = np.random.default_rng(seed)
    return rng, {
        "A": _spd(rng, ny, mu, l_g1),
        "B": rng.standard_normal((ny, nx)) / np.sqrt(nx),
        "c": rng.standard_normal(ny),
        "C": rng.standard_normal((m, ny)) / np.sqrt(ny),
        "d": rng.standard_normal(m),
    }


def bilevel_quadratic(nx: int = 5, ny: int = 8, m: int = 6, mu: float = 0.5, l_g1: float = 4.0,
                      rho: float = 0.1, seed: int = 0) -> BilevelProblem:
    """Q1 (module docstring): quadratic upper and lower levels, everything in closed form."""
    if not 0 < mu <= l_g1:
        raise ValueError(f"need 0 < mu <= l_g1, got mu={mu}, l_g1={l_g1}")
    rng, data = _instance(nx, ny, m, mu, l_g1, seed)
    q = _Quadratic(**data)
    KtK = q.K_np.T @ q.K_np
    x_star = -np.linalg.solve(KtK + rho * np.eye(nx), q.K_np.T @ q.e_np)

    def f(x: Tensor, y: Tensor) -> Tensor:
        r = q.residual(y)
        return 0.5 * (r @ r) + 0.5 * rho * (x @ x)

    def phi(x: Tensor) -> Tensor:
        r = q.K @ x + q.e
        return 0.5 * (r @ r) + 0.5 * rho * (x @ x)

    consts = BilevelConstants(mu=q.mu, l_g1=q.l_g1, L0=float(np.linalg.norm(KtK + rho * np.eye(nx), 2)), L1=0.0,
                              L_phi_y=q.L_phi_y,
                              notes={"mu": "lambda_min(A)", "l_g1": "lambda_max(A)", "L0": "||K^T K + rho I||",
                                     "L_phi_y": "||B^T A^{-1} C^T C||"})
    prob = BilevelProblem(f, q.g, rng.standard_normal(nx), np.zeros(ny), constants=consts,
                          hypergradient=lambda x: rho * x + q.quadratic_grad(x), solution=q.y_star, phi=phi,
                          name=problem_name("bilevel-quadratic", "", {"nx": nx, "ny": ny, "m": m, "mu": mu,
                                                                       "l_g1": l_g1, "rho": rho, "seed": seed},
                                            {"nx": 5, "ny": 8, "m": 6, "mu": 0.5, "l_g1": 4.0, "rho": 0.1, "seed": 0}))
    prob.x_star = torch.from_numpy(x_star)
    prob.data = data
    return prob


def bilevel_exponential(nx: int = 5, ny: int = 8, m: int = 6, mu: float = 0.5, l_g1: float = 4.0,
                        start: float = 10.0, seed: int = 0) -> BilevelProblem:
    """Q2 (module docstring): ``f = exp(u^T x) + (1/2)||C y - d||^2`` with ``B u = 0``; ``u^T x0 = start``."""
    rng, data = _instance(nx, ny, m, mu, l_g1, seed)
    u = rng.standard_normal(nx)
    u /= np.linalg.norm(u)
    data["B"] = data["B"] @ (np.eye(nx) - np.outer(u, u))  # B u = 0, so K u = 0
    q = _Quadratic(**data)
    ut = torch.from_numpy(u)

    def f(x: Tensor, y: Tensor) -> Tensor:
        r = q.residual(y)
        return torch.exp(ut @ x) + 0.5 * (r @ r)

    def phi(x: Tensor) -> Tensor:
        r = q.K @ x + q.e
        return torch.exp(ut @ x) + 0.5 * (r @ r)

    x0 = rng.standard_normal(nx)
    x0 += (start - u @ x0) * u
    consts = BilevelConstants(mu=q.mu, l_g1=q.l_g1, L0=float(np.linalg.norm(q.K_np, 2) ** 2), L1=1.0,
                              L_phi_y=q.L_phi_y,
                              notes={"L0": "||K||^2", "L1": "||u|| = 1", "mu": "lambda_min(A)"})
    prob = BilevelProblem(f, q.g, x0, np.zeros(ny), constants=consts,
                          hypergradient=lambda x: ut * torch.exp(ut @ x) + q.quadratic_grad(x), solution=q.y_star,
                          phi=phi,
                          name=problem_name("bilevel-exponential", "", {"nx": nx, "ny": ny, "seed": seed, "start": start},
                                            {"nx": 5, "ny": 8, "seed": 0, "start": 10.0}))
    prob.u = ut
    prob.data = data
    return prob


def bilevel_hyper_cleaning(n_train: int = 300, corrupt: float = 0.3, mu: float = 1.0, seed: int = 0) -> BilevelProblem:
    """Q3 (module docstring): weighted ridge on scikit-learn's diabetes data with corrupted targets."""
    from sklearn.datasets import load_diabetes

    if not 0.0 <= corrupt < 1.0:
        raise ValueError(f"corrupt must lie in [0, 1), got {corrupt}")
    X, t = load_diabetes(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    t = (t - t.mean()) / t.std()
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(t))
    tr, va = perm[:n_train], perm[n_train:]
    A_np, b_np = X[tr], t[tr].copy()
    flipped = rng.random(n_train) < corrupt
    b_np[flipped] = rng.permutation(b_np[flipped]) + rng.standard_normal(int(flipped.sum()))
    A, b = torch.from_numpy(A_np), torch.from_numpy(b_np)
    Av, bv = torch.from_numpy(X[va]), torch.from_numpy(t[va])
    ny = A.shape[1]

    def g(lam: Tensor, y: Tensor) -> Tensor:
        r = A @ y - b
        return (torch.sigmoid(lam) * r * r).sum() + 0.5 * mu * (y @ y)

    def f(lam: Tensor, y: Tensor) -> Tensor:
        r = Av @ y - bv
        return 0.5 * (r @ r) / len(bv)

    def y_star(lam: Tensor) -> Tensor:
        H = 2.0 * A.T @ (torch.sigmoid(lam)[:, None] * A) + mu * torch.eye(ny, dtype=A.dtype)
        return torch.linalg.solve(H, 2.0 * A.T @ (torch.sigmoid(lam) * b))

    def hypergradient(lam: Tensor) -> Tensor:
        s = torch.sigmoid(lam)
        H = 2.0 * A.T @ (s[:, None] * A) + mu * torch.eye(ny, dtype=A.dtype)
        y = torch.linalg.solve(H, 2.0 * A.T @ (s * b))
        v = torch.linalg.solve(H, Av.T @ (Av @ y - bv) / len(bv))
        return -2.0 * s * (1 - s) * (A @ y - b) * (A @ v)

    consts = BilevelConstants(mu=mu, l_g1=2.0 * float(np.linalg.norm(A_np, 2)) ** 2 + mu,
                              notes={"mu": "ridge weight", "l_g1": "2 ||A||^2 + mu (upper bound)"})
    prob = BilevelProblem(f, g, np.zeros(n_train), np.zeros(ny), constants=consts, hypergradient=hypergradient,
                          solution=y_star, phi=lambda lam: f(lam, y_star(lam)),
                          name=problem_name("bilevel-hyper-cleaning", "", {"n_train": n_train, "corrupt": corrupt,
                                                                            "mu": mu, "seed": seed},
                                            {"n_train": 300, "corrupt": 0.3, "mu": 1.0, "seed": 0}))
    prob.corrupted = torch.from_numpy(flipped)
    return prob
