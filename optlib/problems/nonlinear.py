r"""The nonlinear-equations problem :math:`f(x) = \frac1p\|Ax - b\|^p` (Semenov, Jaggi & Doikov, arXiv 2506.13710).

Spec 10 §6 and the authors' notebook (epfml/grad-norm-smooth, ``notebooks/examples.ipynb``): ``p = 4``,
``A`` with U[-1, 1] entries, start at the all-ones vector, metric :math:`B = A^\top A + 10^{-8}I`,
and the rank-one "Fisher term" approximation of the Hessian.

Here ``A`` has ``m`` rows (equations) and ``n`` columns (unknowns), ``x`` has length ``n``, and the
right-hand side is placed in the range of ``A``: :math:`b = Ax_{\rm true}` with :math:`x_{\rm true}`
drawn U[-1, 1]. Hence :math:`f^\star = 0` in closed form and :math:`x^\star = x_{\rm true}` is a
minimizer (the unique one when ``A`` has full column rank, which holds almost surely for
``m >= n``; for ``m < n`` the minimizers form an affine set and ``x_true`` is one of them). The
authors' notebook uses ``A`` of shape 100 x 200 (100 equations, 200 unknowns): that is
``nonlinear_equations(n=200, m=100)``; the defaults here (``n=100, m=200``) give the overdetermined
but consistent system.

Derivatives with :math:`u = Ax - b`: :math:`\nabla f = \|u\|^{p-2}A^\top u`,
:math:`\nabla^2 f = \|u\|^{p-2}A^\top A + (p-2)\|u\|^{p-4}(A^\top u)(A^\top u)^\top`.

Curvatures (see :mod:`optlib.problems._residual`):

* ``"fisher"``: :math:`\frac{p-2}{\|u\|^p}\nabla f\nabla f^\top`, as ``LowRank(U=column)``.
* ``"gauss-newton"``: :math:`\|u\|^{p-2}A^\top A` (the first Hessian term alone; the full generalized
  Gauss-Newton matrix equals the exact Hessian here because ``u`` is affine).
* ``"gn-fisher"``: the sum of both, i.e. the exact Hessian.

Constants: convex (a convex non-decreasing function of a norm of an affine map). For ``p > 2`` the
Hessian grows like :math:`\|u\|^{p-2}`, so no global ``L`` exists, and it vanishes at the optimum,
so no strong convexity; for ``p = 2``, ``L`` :math:`= \lambda_{\max}(A^\top A)`,
``mu`` :math:`= \lambda_{\min}(A^\top A)` (when positive) and ``L2 = 0``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..problem import Constants, Problem
from ._data import problem_name
from ._residual import power_residual_problem

Tensor = torch.Tensor


def nonlinear_equations(n: int = 100, m: int = 200, p: float = 4, seed: int = 0) -> Problem:
    """``(1/p) ||A x - b||^p`` with ``A`` (m x n) U[-1, 1] and ``b = A x_true`` (``f_star = 0``).

    ``x0`` is the all-ones vector; ``x_star = x_true``. ``problem.metric_B = A^T A + 1e-8 I`` (the
    notebook's metric). Data from ``numpy.random.default_rng(seed)``.
    """
    n, m = int(n), int(m)
    if n <= 0 or m <= 0:
        raise ValueError(f"n and m must be positive, got n={n}, m={m}")
    rng = np.random.default_rng(seed)
    A_np = rng.uniform(-1.0, 1.0, size=(m, n))
    x_true = rng.uniform(-1.0, 1.0, size=n)
    b_np = A_np @ x_true
    A = torch.from_numpy(A_np)
    b = torch.from_numpy(b_np)

    def residuals(x: Tensor) -> Tensor:
        return torch.mv(A, x).sub_(b)

    def jacobian(x: Tensor) -> Tensor:
        return A

    gram = A_np.T @ A_np
    if float(p) == 2.0:
        eig = np.linalg.eigvalsh(gram)
        constants = Constants(L=float(eig[-1]), L2=0.0, mu=float(eig[0]) if eig[0] > 0 else None, M=0.0,
                              convex=True, notes={"L": "lambda_max(A^T A)", "mu": "lambda_min(A^T A)"})
    else:
        constants = Constants(convex=True, notes={"L": "none: the Hessian grows like ||u||^(p-2)",
                                                  "mu": "none: the Hessian vanishes at the optimum"})
    prob = power_residual_problem(
        n,
        p=p,
        residuals=residuals,
        jacobian=jacobian,
        second_order=None,
        constants=constants,
        x0=torch.ones(n, dtype=torch.float64),
        name=problem_name("nonlinear-equations", "", {"n": n, "m": m, "p": p, "seed": seed},
                          {"n": 100, "m": 200, "p": 4, "seed": 0}),
        f_star=0.0,
        x_star=lambda: torch.from_numpy(x_true.copy()),
    )
    B = gram.copy()
    B[np.diag_indices(n)] += 1e-8
    prob.metric_B = torch.from_numpy(B)
    prob.data = {"A": A_np, "b": b_np, "x_true": x_true.copy()}
    return prob
