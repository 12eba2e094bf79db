r"""Quadratics :math:`f(x) = \frac12 x^\top Ax - b^\top x` with prescribed spectrum.

:math:`A = Q\,\mathrm{Diag}(\lambda)\,Q^\top` with :math:`Q` Haar-distributed orthogonal (QR of a Gaussian
matrix with the signs of :math:`R`'s diagonal moved into :math:`Q`; Mezzadri, "How to generate random
matrices from the classical compact groups", Notices AMS 54, 2007) and :math:`b` standard normal,
both from ``numpy.random.default_rng(seed)``.

Constants are exact: ``L`` :math:`= \max_i|\lambda_i|` (the gradient's Lipschitz constant; the largest
eigenvalue when :math:`A \succeq 0`), ``mu`` :math:`= \min_i\lambda_i` when it is non-negative,
``L2 = 0`` and ``M = 0`` (constant Hessian), ``convex`` iff :math:`\min_i\lambda_i \ge 0`.

Optimum in closed form when :math:`A \succ 0`: :math:`x^\star = Q\,\mathrm{Diag}(1/\lambda)Q^\top b`,
:math:`f^\star = -\frac12 b^\top x^\star`. With a zero or negative eigenvalue the quadratic is unbounded
below for almost every ``b``, and ``f_star``/``x_star`` are None.

Start: the origin by default; :func:`quadratic` can instead draw a random start from the same generator
(``x0_scale``), as the equivalence statements of :mod:`optlib.theory.regularized_newton` need (a start
away from the origin, so that the normalized gradient and Newton steps are not trivial).

:func:`quadratic_from_matrix` builds the same problem from a given symmetric matrix (eigendecomposition by
``numpy.linalg.eigh``), for quadratics obtained by a change of variables.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..problem import Constants, Problem

Tensor = torch.Tensor


def _quadratic_problem(
    A_np: np.ndarray, b_np: np.ndarray, eigs: np.ndarray, V: np.ndarray, x0: np.ndarray, name: str
) -> Problem:
    """The one implementation behind :func:`quadratic` and :func:`quadratic_from_matrix`.

    ``A_np = V diag(eigs) V^T`` (up to rounding) with orthogonal ``V``; ``A_np`` is used as given.
    """
    d = b_np.size
    A = torch.from_numpy(A_np)
    b = torch.from_numpy(b_np)

    def fun(x: Tensor) -> Tensor:
        return 0.5 * torch.dot(x, A @ x) - torch.dot(b, x)

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        Ax = torch.mv(A, x)
        return 0.5 * torch.dot(x, Ax) - torch.dot(b, x), Ax.sub_(b)

    def hess(x: Tensor) -> Tensor:
        return A

    def hvp(x: Tensor, v: Tensor) -> Tensor:
        return torch.mv(A, v)

    lo = float(eigs.min())
    convex = lo >= 0
    constants = Constants(
        L=float(np.abs(eigs).max()),
        L2=0.0,
        mu=lo if convex else None,
        M=0.0,
        convex=convex,
        notes={"L": "max |eigenvalue| (exact)", "mu": "min eigenvalue when >= 0 (exact)", "L2": "0: constant Hessian"},
    )
    f_star = x_star = None
    if lo > 0:
        x_opt = V @ ((V.T @ b_np) / eigs)
        f_opt = -0.5 * float(b_np @ x_opt)

        def f_star() -> float:
            return f_opt

        def x_star() -> Tensor:
            return torch.from_numpy(x_opt.copy())

    prob = Problem(
        fun,
        d,
        value_and_grad=value_and_grad,
        hess=hess,
        hvp=hvp,
        constants=constants,
        f_star=f_star,
        x_star=x_star,
        x0=torch.from_numpy(x0),
        name=name,
    )
    prob.eigenvalues = np.sort(eigs)
    prob.data = {"A": A_np, "b": b_np, "Q": V}
    return prob


def quadratic(eigenvalues: Any, *, seed: int = 0, x0_scale: float = 0.0) -> Problem:
    """``1/2 x^T A x - b^T x`` with ``A = Q diag(eigenvalues) Q^T``.

    ``x0`` is the origin, or with ``x0_scale != 0`` the point ``x0_scale * z`` with ``z`` standard normal,
    drawn from the same generator after ``b`` (so ``A`` and ``b`` do not depend on ``x0_scale``).
    The Hessian oracle returns the same constant tensor on every call (do not modify it in place).
    ``problem.eigenvalues`` holds the sorted spectrum; ``problem.data`` has ``A``, ``b``, ``Q``.
    """
    eigs = np.asarray(eigenvalues, dtype=np.float64)
    if eigs.ndim != 1 or eigs.size == 0:
        raise ValueError(f"quadratic: eigenvalues must be a non-empty 1-D sequence, got shape {eigs.shape}")
    if not np.isfinite(eigs).all():
        raise ValueError("quadratic: eigenvalues must be finite")
    x0_scale = float(x0_scale)
    if not math.isfinite(x0_scale):
        raise ValueError(f"quadratic: x0_scale must be finite, got {x0_scale}")
    d = eigs.size
    rng = np.random.default_rng(seed)
    Qr, R = np.linalg.qr(rng.standard_normal((d, d)))
    Q = Qr * np.sign(np.where(np.diag(R) == 0, 1.0, np.diag(R)))
    A_np = (Q * eigs) @ Q.T
    A_np = 0.5 * (A_np + A_np.T)
    b_np = rng.standard_normal(d)
    x0 = x0_scale * rng.standard_normal(d) if x0_scale != 0.0 else np.zeros(d)
    lo, hi = float(eigs.min()), float(eigs.max())
    cond = hi / lo if lo > 0 else math.inf
    start = f",x0_scale={x0_scale:g}" if x0_scale != 0.0 else ""
    return _quadratic_problem(A_np, b_np, eigs, Q, x0, f"quadratic[d={d},cond={cond:.3g},seed={seed}{start}]")


def quadratic_from_matrix(A: Any, b: Any, *, x0: Any = None, name: str | None = None) -> Problem:
    """``1/2 x^T A x - b^T x`` for a given symmetric ``A`` (``d x d``) and ``b``; ``x0`` defaults to the origin.

    ``A`` is used as given (copied, not re-symmetrized): it must be symmetric to ``1e-12`` relative to its
    largest entry, the level of a product such as ``B A B`` of symmetric matrices, so the gradient ``Ax - b``
    is exact up to that asymmetry. The constants and, for positive definite ``A``, the closed-form optimum
    come from the eigendecomposition of ``(A + A^T)/2`` exactly as in :func:`quadratic`.
    """
    A_np = np.array(A, dtype=np.float64)
    b_np = np.array(b, dtype=np.float64)
    if A_np.ndim != 2 or A_np.shape[0] != A_np.shape[1] or A_np.shape[0] == 0:
        raise ValueError(f"quadratic_from_matrix: A must be a non-empty square matrix, got shape {A_np.shape}")
    d = A_np.shape[0]
    if b_np.shape != (d,):
        raise ValueError(f"quadratic_from_matrix: b must have shape ({d},), got {b_np.shape}")
    if not (np.isfinite(A_np).all() and np.isfinite(b_np).all()):
        raise ValueError("quadratic_from_matrix: A and b must be finite")
    asym = float(np.max(np.abs(A_np - A_np.T)))
    if asym > 1e-12 * max(float(np.max(np.abs(A_np))), np.finfo(float).tiny):
        raise ValueError(f"quadratic_from_matrix: A is not symmetric (max |A - A^T| = {asym:.3e})")
    if x0 is None:
        x0_np = np.zeros(d)
    else:
        x0_np = np.array(x0, dtype=np.float64)
        if x0_np.shape != (d,) or not np.isfinite(x0_np).all():
            raise ValueError(f"quadratic_from_matrix: x0 must be a finite vector of shape ({d},), got {x0_np.shape}")
    eigs, V = np.linalg.eigh(0.5 * (A_np + A_np.T))
    return _quadratic_problem(A_np, b_np, eigs, V, x0_np, name or f"quadratic-matrix[d={d}]")


def quadratic_with_condition(d: int, cond: float, seed: int = 0) -> Problem:
    """:func:`quadratic` with eigenvalues ``logspace(0, log10(cond), d)`` (from 1 to ``cond``)."""
    d = int(d)
    cond = float(cond)
    if d <= 0:
        raise ValueError(f"quadratic_with_condition: d must be positive, got {d}")
    if not (cond >= 1 and math.isfinite(cond)):
        raise ValueError(f"quadratic_with_condition: the condition number must be >= 1 and finite, got {cond}")
    prob = quadratic(np.logspace(0.0, math.log10(cond), d), seed=seed)
    k = math.log10(cond)
    label = f"1e{round(k)}" if abs(k - round(k)) < 1e-12 else f"{cond:g}"
    prob.name = f"quadratic-cond{label}" + (f"[d={d},seed={seed}]" if (d, seed) != (100, 0) else "")
    return prob
