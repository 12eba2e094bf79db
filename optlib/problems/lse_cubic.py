r"""A convex function with a derived Hessian Lipschitz constant and its minimizer at the origin.

.. math::

    f(x) = \frac c3\sum_{i=1}^n |x_i|^3 + \log\sum_{j=1}^m p_j\exp(a_j^\top x),
    \qquad p > 0,\ \textstyle\sum_j p_j = 1,\ A^\top p = 0.

Construction (``numpy.random.default_rng(seed)``, in this order): logits ``z`` standard normal
(``m``), ``p = softmax(z)``; ``A0`` standard normal (``m x n``) times ``scale / sqrt(n)``; the columns of
``A`` are made orthogonal to ``p`` by ``A = A0 - 1 p^T A0``; then ``x0``, a standard normal direction
rescaled to length ``D``.

Optimum (closed form). By Jensen's inequality :math:`\log\sum_j p_je^{u_j} \ge \sum_j p_ju_j`, so with
:math:`u = Ax` and :math:`A^\top p = 0`, :math:`f(x) \ge \frac c3\sum_i|x_i|^3 + p^\top Ax = \frac c3\sum_i|x_i|^3
\ge 0 = f(0)`: :math:`x^\star = 0` and :math:`f^\star = \log\sum_j p_j = 0`. It is the unique minimizer: for
``c > 0`` by the cubic term; for ``c = 0`` equality in Jensen's inequality (``exp`` is strictly convex) needs
:math:`Ax` constant, :math:`p^\top Ax = 0` makes that constant 0, and ``A`` has full column rank (checked;
it needs ``m > n``), so :math:`x = 0`. Since :math:`\|x_0 - x^\star\| = D` by construction, the distance in
the convex rate bounds is ``D``.

Oracles, with :math:`s = \mathrm{softmax}(Ax + \log p)`:
:math:`\nabla f = c\,x\odot|x| + A^\top s`,
:math:`\nabla^2 f = 2c\,\mathrm{Diag}(|x|) + A^\top\mathrm{Diag}(s)A - (A^\top s)(A^\top s)^\top`.

Hessian Lipschitz constant (derived). :math:`\frac c3|t|^3` has second derivative :math:`2c|t|`, so the
separable part changes by :math:`\|\mathrm{Diag}(2c|x_i|) - \mathrm{Diag}(2c|y_i|)\| \le 2c\|x - y\|_\infty
\le 2c\|x - y\|`. For :math:`g(u) = \log\sum_j p_je^{u_j}`, :math:`D^3g(u)[h,h,h] = \mathbb E[(X - \mathbb EX)^3]`
where :math:`X = h_j` with probability :math:`\mathrm{softmax}_j`; since :math:`|X - \mathbb EX| \le \max h - \min h`
and :math:`\mathrm{Var}\,X \le (\max h - \min h)^2/4`, :math:`|D^3g[h,h,h]| \le (\max h - \min h)^3/4 \le
2\|h\|_\infty^3`. With :math:`h = Av`, :math:`\|Av\|_\infty \le r\|v\|` for :math:`r = \max_j\|a_j\|`, and a
symmetric trilinear form attains its norm on the diagonal (S. Banach, "Über homogene Polynome in
(L²)", Studia Math. 7, 1938), so

.. math::

    L_2 = 2c + 2r^3.

No global ``L`` exists for ``c > 0`` (the Hessian grows like :math:`2c|x|`), and ``f`` is not strongly
convex for ``c = 0`` (it grows linearly far away), so ``constants`` holds ``L2`` and ``convex`` only.

Used by the O(1/k^2) statement of :mod:`optlib.theory.regularized_newton` (a convex function with a known
``L2`` and ``D``), and registered in :func:`optlib.problems.library` as ``"lse-cubic"``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..problem import Constants, Problem
from ._data import problem_name

Tensor = torch.Tensor


def lse_cubic(
    n: int = 8, m: int = 24, c: float = 1.0, scale: float = 1.0, D: float = 10.0, seed: int = 0
) -> Problem:
    """``(c/3) sum_i |x_i|^3 + log sum_j p_j exp(<a_j, x>)`` with ``A^T p = 0``: ``x* = 0``, ``f* = 0``.

    ``n`` variables, ``m > n`` log-sum-exp terms, cubic weight ``c >= 0``, rows of size about ``scale``;
    ``x0`` is a fixed random point at distance ``D`` from ``x* = 0``. ``constants.L2 = 2c + 2 max_j ||a_j||^3``
    (derived in :mod:`optlib.problems.lse_cubic`). ``problem.data`` holds ``A``, ``p`` and ``c``.
    """
    n, m = int(n), int(m)
    if n <= 0 or m <= n:
        raise ValueError(f"lse-cubic needs 0 < n < m (A^T p = 0 must leave A of full column rank), got n={n}, m={m}")
    c, scale, D = float(c), float(scale), float(D)
    if not (c >= 0 and math.isfinite(c)):
        raise ValueError(f"lse-cubic: the cubic weight c must be finite and non-negative, got {c}")
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"lse-cubic: scale must be positive and finite, got {scale}")
    if not (D > 0 and math.isfinite(D)):
        raise ValueError(f"lse-cubic: the start distance D must be positive and finite, got {D}")
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=m)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    A = rng.normal(size=(m, n)) * scale / math.sqrt(n)
    A = A - np.outer(np.ones(m), p @ A)
    if np.linalg.matrix_rank(A) < n:
        raise ValueError(f"lse-cubic: A lost full column rank (n={n}, m={m}, seed={seed}); use a larger m")
    r = float(np.max(np.linalg.norm(A, axis=1)))
    L2 = 2.0 * c + 2.0 * r**3
    At = torch.tensor(A)
    logp = torch.tensor(np.log(p))

    def fun(x: Tensor) -> Tensor:
        return (c / 3.0) * torch.sum(torch.abs(x) ** 3) + torch.logsumexp(At @ x + logp, 0)

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        u = At @ x + logp
        lse = torch.logsumexp(u, 0)
        s = torch.exp(u - lse)
        return (c / 3.0) * torch.sum(torch.abs(x) ** 3) + lse, c * x * torch.abs(x) + At.T @ s

    def hess(x: Tensor) -> Tensor:
        s = torch.softmax(At @ x + logp, 0)
        As = At.T @ s
        return torch.diag(2.0 * c * torch.abs(x)) + (At.T * s) @ At - torch.outer(As, As)

    def hvp(x: Tensor, v: Tensor) -> Tensor:
        s = torch.softmax(At @ x + logp, 0)
        Av = At @ v
        return 2.0 * c * torch.abs(x) * v + At.T @ (s * Av) - (At.T @ s) * torch.dot(s, Av)

    x0 = rng.normal(size=n)
    x0 *= D / np.linalg.norm(x0)
    prob = Problem(
        fun,
        n,
        value_and_grad=value_and_grad,
        hess=hess,
        hvp=hvp,
        constants=Constants(
            L2=L2,
            convex=True,
            notes={
                "L2": "2c + 2 max_j ||a_j||^3 (derived in optlib.problems.lse_cubic)",
                "L": "none for c > 0: the Hessian grows like 2c|x|",
                "f_star": "closed form: x* = 0, f* = log sum_j p_j = 0",
            },
        ),
        f_star=0.0,
        x_star=torch.zeros(n, dtype=torch.float64),
        x0=torch.tensor(x0),
        name=problem_name("lse-cubic", "", {"n": n, "m": m, "c": c, "scale": scale, "D": D, "seed": seed},
                          {"n": 8, "m": 24, "c": 1.0, "scale": 1.0, "D": 10.0, "seed": 0}),
    )
    prob.data = {"A": A, "p": p, "c": c}
    return prob
