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
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..problem import Constants, Problem

Tensor = torch.Tensor


def quadratic(eigenvalues: Any, *, seed: int = 0) -> Problem:
    """``1/2 x^T A x - b^T x`` with ``A = Q diag(eigenvalues) Q^T``; ``x0 = 0``.

    The Hessian oracle returns the same constant tensor on every call (do not modify it in place).
    ``problem.eigenvalues`` holds the sorted spectrum; ``problem.data`` has ``A``, ``b``, ``Q``.
    """
    eigs = np.asarray(eigenvalues, dtype=np.float64)
    if eigs.ndim != 1 or eigs.size == 0:
        raise ValueError(f"eigenvalues must be a non-empty 1-D sequence, got shape {eigs.shape}")
    if not np.isfinite(eigs).all():
        raise ValueError("eigenvalues must be finite")
    d = eigs.size
    rng = np.random.default_rng(seed)
    Qr, R = np.linalg.qr(rng.standard_normal((d, d)))
    Q = Qr * np.sign(np.where(np.diag(R) == 0, 1.0, np.diag(R)))
    A_np = (Q * eigs) @ Q.T
    A_np = 0.5 * (A_np + A_np.T)
    b_np = rng.standard_normal(d)

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

    lo, hi = float(eigs.min()), float(eigs.max())
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
        x_opt = Q @ ((Q.T @ b_np) / eigs)
        f_opt = -0.5 * float(b_np @ x_opt)

        def f_star() -> float:
            return f_opt

        def x_star() -> Tensor:
            return torch.from_numpy(x_opt.copy())

    cond = hi / lo if lo > 0 else math.inf
    prob = Problem(
        fun,
        d,
        value_and_grad=value_and_grad,
        hess=hess,
        hvp=hvp,
        constants=constants,
        f_star=f_star,
        x_star=x_star,
        x0=torch.zeros(d, dtype=torch.float64),
        name=f"quadratic[d={d},cond={cond:.3g},seed={seed}]",
    )
    prob.eigenvalues = np.sort(eigs)
    prob.data = {"A": A_np, "b": b_np, "Q": Q}
    return prob


def quadratic_with_condition(d: int, cond: float, seed: int = 0) -> Problem:
    """:func:`quadratic` with eigenvalues ``logspace(0, log10(cond), d)`` (from 1 to ``cond``)."""
    d = int(d)
    cond = float(cond)
    if d <= 0:
        raise ValueError(f"d must be positive, got {d}")
    if not (cond >= 1 and math.isfinite(cond)):
        raise ValueError(f"the condition number must be >= 1 and finite, got {cond}")
    prob = quadratic(np.logspace(0.0, math.log10(cond), d), seed=seed)
    k = math.log10(cond)
    label = f"1e{round(k)}" if abs(k - round(k)) < 1e-12 else f"{cond:g}"
    prob.name = f"quadratic-cond{label}" + (f"[d={d},seed={seed}]" if (d, seed) != (100, 0) else "")
    return prob
