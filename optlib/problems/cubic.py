r"""A convex problem with a known Lipschitz constant of the Hessian: sum of cubed absolute residuals.

.. math::

    f(x) = \frac13\sum_{i=1}^m |a_i^\top x - b_i|^3 + \frac{\mu}{2}\|x\|^2,
    \qquad \nabla f = A^\top(r\odot|r|) + \mu x, \qquad
    \nabla^2 f = 2A^\top\mathrm{Diag}(|r|)A + \mu I,

with :math:`r = Ax - b`. :math:`t\mapsto|t|^3/3` is convex with second derivative :math:`2|t|`,
which is 2-Lipschitz, so :math:`f` is convex, :math:`C^2`, and its Hessian is Lipschitz:

.. math::

    \|\nabla^2 f(x) - \nabla^2 f(y)\| = 2\Bigl\|\sum_i (|r_i(x)| - |r_i(y)|)\,a_ia_i^\top\Bigr\|
    \le 2\sum_i |a_i^\top(x - y)|\,\|a_i\|^2 \le 2\sum_i\|a_i\|^3\,\|x - y\|,

and also, since :math:`-cA^\top A \preceq \sum_i c_i a_ia_i^\top \preceq cA^\top A` for :math:`|c_i|\le c`,
:math:`\le 2\max_i\|a_i\|\,\lambda_{\max}(A^\top A)\,\|x - y\|`. ``L2`` is the smaller of the two bounds.
This is the "Lipschitz Hessian" class of Nesterov & Polyak (cubic regularization, Math. Program. 108,
2006) used by spec 10 §5.4.

``mu`` (keyword, default 0): with the default the problem is convex but not strongly convex
(``constants.mu`` is None); since ``A`` (Gaussian, ``m >= n``) has full column rank almost surely and
:math:`|t|^3` is strictly convex, the minimizer is still unique. No global ``L`` exists (the
Hessian grows with :math:`|r|`).

The certified optimum comes from an independent damped Newton solve in plain numpy
(:mod:`optlib.problems._certify`), started at the least-squares solution; the test suite
cross-checks it against cvxpy (``power(abs(Ax - b), 3) / 3``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..problem import Constants, Problem
from . import _certify
from ._data import problem_name

Tensor = torch.Tensor


def _numpy_oracles(A: np.ndarray, b: np.ndarray, mu: float):
    n = A.shape[1]

    def fun(x: np.ndarray) -> float:
        r = A @ x - b
        return float(np.sum(np.abs(r) ** 3) / 3.0 + 0.5 * mu * (x @ x))

    def fgh(x: np.ndarray):
        r = A @ x - b
        ar = np.abs(r)
        f = float(np.sum(ar**3) / 3.0 + 0.5 * mu * (x @ x))
        g = A.T @ (r * ar) + mu * x
        H = 2.0 * (A.T * ar) @ A
        H[np.diag_indices(n)] += mu
        return f, g, H

    return fun, fgh


def cubic_lipschitz(n: int = 20, m: int = 40, seed: int = 0, *, mu: float = 0.0) -> Problem:
    """``(1/3) sum_i |a_i^T x - b_i|^3 + (mu/2) ||x||^2`` with Gaussian ``A`` (m x n) and ``b``.

    Data from ``numpy.random.default_rng(seed)``. ``x0 = 0``. ``constants.L2`` is the Hessian's
    Lipschitz constant (derived in :mod:`optlib.problems.cubic`); ``f_star``/``x_star`` are certified
    by an independent numpy Newton solve, cached per process.
    """
    n, m = int(n), int(m)
    if n <= 0 or m <= 0:
        raise ValueError(f"n and m must be positive, got n={n}, m={m}")
    mu = float(mu)
    if not (mu >= 0 and math.isfinite(mu)):
        raise ValueError(f"mu must be finite and non-negative, got {mu}")
    rng = np.random.default_rng(seed)
    A_np = rng.standard_normal((m, n))
    b_np = rng.standard_normal(m)
    A = torch.from_numpy(A_np)
    At = A.T
    b = torch.from_numpy(b_np)

    def fun(x: Tensor) -> Tensor:
        r = A @ x - b
        return (r.abs() ** 3).sum() / 3.0 + 0.5 * mu * torch.dot(x, x)

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        r = torch.mv(A, x).sub_(b)
        ar = r.abs()
        f = torch.dot(ar * ar, ar) / 3.0 + 0.5 * mu * torch.dot(x, x)
        return f, torch.addmv(x, At, r.mul_(ar), beta=mu)

    def hess(x: Tensor) -> Tensor:
        ar = torch.mv(A, x).sub_(b).abs_().mul_(2.0)
        H = torch.mm(At * ar, A)
        H.diagonal().add_(mu)
        return H

    def hvp(x: Tensor, v: Tensor) -> Tensor:
        ar = torch.mv(A, x).sub_(b).abs_().mul_(2.0)
        return torch.addmv(v, At, ar.mul_(torch.mv(A, v)), beta=mu)

    row_norms = np.linalg.norm(A_np, axis=1)
    lam_max = float(np.linalg.eigvalsh(A_np.T @ A_np)[-1])
    L2 = 2.0 * min(float(np.sum(row_norms**3)), float(row_norms.max()) * lam_max)
    constants = Constants(
        L2=L2,
        mu=mu if mu > 0 else None,
        convex=True,
        notes={
            "L2": "2 min(sum_i ||a_i||^3, max_i ||a_i|| lambda_max(A^T A)) (derived in the module docstring)",
            "L": "none: the Hessian grows with |r|",
        },
    )

    np_fun, np_fgh = _numpy_oracles(A_np, b_np, mu)

    def solve() -> tuple[float, np.ndarray]:
        x_ls = np.linalg.lstsq(A_np, b_np, rcond=None)[0]
        scale = max(1.0, float(np.linalg.norm(np_fgh(np.zeros(n))[1])))
        return _certify.certify(np_fun, np_fgh, x_ls, scale=scale, what="'cubic-lipschitz'")

    f_star, x_star = _certify.lazy_optimum(_certify.digest("cubic", A_np, b_np, mu), solve)
    prob = Problem(
        fun,
        n,
        value_and_grad=value_and_grad,
        hess=hess,
        hvp=hvp,
        constants=constants,
        f_star=f_star,
        x_star=x_star,
        x0=torch.zeros(n, dtype=torch.float64),
        name=problem_name("cubic-lipschitz", "", {"n": n, "m": m, "seed": seed, "mu": mu},
                          {"n": 20, "m": 40, "seed": 0, "mu": 0.0}),
    )
    prob.data = {"A": A_np, "b": b_np, "mu": mu}
    return prob
