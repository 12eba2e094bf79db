r"""The LogSumExp problem of Semenov, Jaggi & Doikov (arXiv 2506.13710), with its optimum at the origin.

.. math::

    f(x) = \mu \log\sum_{i=1}^m \exp\Bigl(\frac{a_i^\top x - b_i}{\mu}\Bigr), \qquad x\in\mathbb R^n,

a smooth approximation of :math:`\max_i(a_i^\top x - b_i)`. Construction, as in the authors' notebook
(epfml/grad-norm-smooth, ``notebooks/examples.ipynb`` and ``create_log_sum_exp_zero_oracle`` in
``src/oracles.py``): draw :math:`A_0` with i.i.d. U[-1, 1] entries and :math:`b` with U[-1, 1]
entries, compute the gradient :math:`g_0 = A_0^\top\pi_0` of the LogSumExp of :math:`(A_0, b)` at
:math:`x = 0`, where :math:`\pi_0 = \mathrm{softmax}(-b/\mu)`, and use the shifted rows
:math:`a_i = a_{0,i} - g_0`. The shift changes the function by a linear term only,
:math:`f(x) = f_0(x) - g_0^\top x`, so :math:`\nabla f(0) = g_0 - g_0 = 0`: the convex function has its
minimum at :math:`x^\star = 0` and :math:`f^\star = f(0) = \mu\log\sum_i e^{-b_i/\mu}` (closed form).

Oracles, with :math:`\pi(x) = \mathrm{softmax}((Ax - b)/\mu)`:
:math:`\nabla f = A^\top\pi`,
:math:`\nabla^2 f = \frac1\mu\bigl(A^\top\mathrm{Diag}(\pi)A - A^\top\pi\,\pi^\top A\bigr)`.

Curvatures:

* ``"weighted-gauss-newton"`` (the paper's "weighted Gauss-Newton" approximation, also registered as
  ``"gauss-newton"``): :math:`H = \frac1\mu A^\top\mathrm{Diag}(\pi)A = \nabla^2 f + \frac1\mu\nabla f\nabla f^\top`.
  It drops the rank-one term of the exact Hessian (which is itself the generalized Gauss-Newton
  matrix here, since :math:`x \mapsto Ax - b` is linear).

Metric: ``problem.metric_B`` is :math:`B = A_0^\top A_0` built from the unshifted rows, as in the
authors' notebook (``B = A.dot(A.T)`` there, with ``A`` stored transposed), plus
:math:`10^{-8}\,\mathrm{tr}(A_0^\top A_0)/n\cdot I` when :math:`m < n` makes it singular.

Constants (derived here; the Hessian is :math:`\frac1\mu` times the covariance of the rows under
:math:`\pi`, which does not change if all rows move by the same vector):

* ``L`` :math:`= \frac1\mu\min\bigl(R^2, \tfrac14 D^2\bigr)` with :math:`D = \max_{i,j}\|a_i - a_j\|` and
  :math:`R = \min(\max_i\|a_i\|, \max_i\|a_{0,i}\|)`: :math:`\mathrm{Var}_\pi(a^\top v) \le \mathbb E_\pi(a^\top v)^2`
  and, by Popoviciu's inequality, :math:`\le \tfrac14(\max_i a_i^\top v - \min_i a_i^\top v)^2`.
* ``M`` :math:`= D/\mu` (quasi-self-concordance): :math:`D^3 f[u,u,v] = \frac1{\mu^2}\mathbb E_\pi
  [(s_u - \mathbb E s_u)^2(s_v - \mathbb E s_v)]` with :math:`s_u = a^\top u`, and
  :math:`|s_v - \mathbb E s_v|\le D\|v\|`.
* ``L2`` :math:`= M\cdot L` (the same bound with :math:`\langle\nabla^2 f u, u\rangle \le L\|u\|^2`).
* no strong convexity (``mu`` is None): far from the origin the Hessian vanishes along the directions
  in which one affine piece dominates.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..problem import Constants, Problem
from ._data import problem_name

Tensor = torch.Tensor


def log_sum_exp(n: int = 100, m: int = 1000, mu: float = 1.0, seed: int = 0) -> Problem:
    """LogSumExp of ``m`` affine functions in dimension ``n`` with smoothing ``mu``; optimum at 0.

    Data from ``numpy.random.default_rng(seed)``: ``A0`` (m x n) and ``b`` (m) with U[-1, 1] entries.
    ``x0`` is the all-ones vector (the authors' notebook). ``f_star = f(0)`` in closed form and
    ``x_star = 0``. See :mod:`optlib.problems.log_sum_exp` for the construction, curvatures, the metric
    ``problem.metric_B`` and the constants.
    """
    n, m = int(n), int(m)
    if n <= 0 or m <= 0:
        raise ValueError(f"n and m must be positive, got n={n}, m={m}")
    mu = float(mu)
    if not (mu > 0 and math.isfinite(mu)):
        raise ValueError(f"the smoothing parameter mu must be positive and finite, got {mu}")
    rng = np.random.default_rng(seed)
    A0 = rng.uniform(-1.0, 1.0, size=(m, n))
    b_np = rng.uniform(-1.0, 1.0, size=m)
    z0 = -b_np / mu
    pi0 = np.exp(z0 - z0.max())
    pi0 /= pi0.sum()
    A_np = np.ascontiguousarray(A0 - A0.T @ pi0)  # rows a_i = a0_i - g0

    At = torch.from_numpy(np.ascontiguousarray(A_np.T))  # column-major A: faster products in torch
    A = At.T
    b = torch.from_numpy(b_np)
    inv_mu = 1.0 / mu

    def fun(x: Tensor) -> Tensor:
        return mu * torch.logsumexp((A @ x - b) * inv_mu, dim=0)

    def _softmax(x: Tensor) -> tuple[Tensor, Tensor]:
        z = torch.mv(A, x).sub_(b).mul_(inv_mu)
        lse = torch.logsumexp(z, dim=0)
        return lse, torch.exp(z.sub_(lse))

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        lse, pi = _softmax(x)
        return mu * lse, torch.mv(At, pi)

    def weighted_gn(x: Tensor) -> Tensor:
        _, pi = _softmax(x)
        return torch.mm(At * pi, A).mul_(inv_mu)

    def hess(x: Tensor) -> Tensor:
        _, pi = _softmax(x)
        g = torch.mv(At, pi)
        H = torch.mm(At * pi, A)
        return torch.addr(H, g, g, alpha=-1.0).mul_(inv_mu)

    def hvp(x: Tensor, v: Tensor) -> Tensor:
        _, pi = _softmax(x)
        g = torch.mv(At, pi)
        return (torch.mv(At, pi * torch.mv(A, v)) - g * torch.dot(g, v)).mul_(inv_mu)

    # Constants.
    sq = np.einsum("ij,ij->i", A_np, A_np)
    gram_rows = A_np @ A_np.T
    diam2 = float(np.max(sq[:, None] + sq[None, :] - 2.0 * gram_rows))
    diam = math.sqrt(max(diam2, 0.0))
    radius2 = min(float(sq.max()), float(np.einsum("ij,ij->i", A0, A0).max()))
    L = inv_mu * min(radius2, 0.25 * diam2)
    M = diam * inv_mu
    constants = Constants(
        L=L,
        L2=M * L,
        mu=None,
        M=M,
        convex=True,
        notes={
            "L": "(1/mu) min(max_i ||a_i||^2, max_{i,j} ||a_i - a_j||^2 / 4): Hessian = (1/mu) Cov_pi(a) (derived)",
            "M": "max_{i,j} ||a_i - a_j|| / mu: third central moment bound (derived)",
            "L2": "M * L (derived)",
            "mu": "none: the Hessian vanishes far from the origin",
        },
    )

    B0 = A0.T @ A0
    if m < n:
        B0[np.diag_indices(n)] += 1e-8 * np.trace(B0) / n

    f_star_value = mu * float(np.log(np.sum(np.exp(z0 - z0.max())))) + mu * float(z0.max())
    name = problem_name("log-sum-exp", "", {"n": n, "m": m, "mu": mu, "seed": seed},
                        {"n": 100, "m": 1000, "mu": 1.0, "seed": 0})
    prob = Problem(
        fun,
        n,
        value_and_grad=value_and_grad,
        hess=hess,
        hvp=hvp,
        curvatures={"weighted-gauss-newton": weighted_gn, "gauss-newton": weighted_gn},
        constants=constants,
        f_star=lambda: f_star_value,
        x_star=lambda: torch.zeros(n, dtype=torch.float64),
        x0=torch.ones(n, dtype=torch.float64),
        name=name,
    )
    prob.metric_B = torch.from_numpy(B0)
    prob.data = {"A": A_np, "A0": A0, "b": b_np, "mu": mu}
    return prob
