r"""Shared builder for objectives of the form :math:`f(x) = \frac{c}{p}\|u(x)\|^p` (:math:`p \ge 2`).

Used by Rosenbrock (:math:`c = 2, p = 2`), the nonlinear-equation Rosenbrock and Chebyshev-Rosenbrock
chains, and the linear nonlinear-equations problem. With :math:`J = \nabla u(x)` and
:math:`\nu = \|u\|`:

.. math::

    \nabla f = c\,\nu^{p-2} J^\top u, \qquad
    \nabla^2 f = c\Bigl[\nu^{p-2}\bigl(J^\top J + \textstyle\sum_i u_i\nabla^2 u_i\bigr)
                 + (p-2)\,\nu^{p-4}(J^\top u)(J^\top u)^\top\Bigr].

The curvature names follow Semenov, Jaggi & Doikov (arXiv 2506.13710; spec 10 §6 and 95 §1.9):

* ``"fisher"`` (for :math:`p > 2`): the rank-one Fisher term
  :math:`c(p-2)\nu^{p-4}(J^\top u)(J^\top u)^\top`, which for :math:`c = 1` is
  :math:`\frac{p-2}{\|u\|^p}\nabla f\nabla f^\top`, returned as :class:`optlib.linalg.LowRank`.
* ``"gn-fisher"``: :math:`c\,\nu^{p-2}J^\top J` plus the Fisher term, dense. This is the generalized
  Gauss-Newton matrix :math:`J^\top\nabla^2\phi(u)J` of the outer function
  :math:`\phi(u) = \frac cp\|u\|^p`.
* ``"gauss-newton"``: the same GGN when :math:`u` is nonlinear. When :math:`u` is affine the GGN is
  the exact Hessian, and ``"gauss-newton"`` is instead the first term :math:`c\,\nu^{p-2}J^\top J`
  alone (the "Gauss-Newton" stand-in of the nonlinear-equations experiment).

At :math:`u = 0` the limits are used: for :math:`p = 2` the Hessian is :math:`cJ^\top J`, for
:math:`p > 2` every term vanishes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..linalg import LowRank
from ..problem import Constants, Problem

Tensor = torch.Tensor


def power_residual_problem(
    n: int,
    *,
    p: float,
    residuals: Callable[[Tensor], Tensor],
    jacobian: Callable[[Tensor], Tensor],
    second_order: Callable[[Tensor, Tensor], Tensor] | None,
    scale: float = 1.0,
    constants: Constants,
    x0: Tensor,
    name: str,
    f_star: Any = None,
    x_star: Any = None,
) -> Problem:
    """Build a :class:`Problem` for ``f(x) = scale/p * ||residuals(x)||^p``.

    ``jacobian(x)`` is the closed-form Jacobian of ``residuals``; ``second_order(x, w)`` returns
    ``sum_i w_i * Hessian(u_i)(x)`` (``None`` for affine residuals).
    """
    p = float(p)
    if not p >= 2.0:
        raise ValueError(f"the power p must be >= 2 (the Hessian blows up at u = 0 otherwise), got {p}")
    c = float(scale)
    affine = second_order is None

    def outer(u: Tensor) -> Tensor:
        if p == 2.0:
            return 0.5 * c * torch.dot(u, u)
        return (c / p) * torch.dot(u, u) ** (0.5 * p)

    def fun(x: Tensor) -> Tensor:
        return outer(residuals(x))

    def _coeffs(nu: float) -> tuple[float, float]:
        """(c nu^{p-2}, c (p-2) nu^{p-4}) with their limits at nu = 0."""
        if nu == 0.0:
            return (c if p == 2.0 else 0.0), 0.0
        return c * nu ** (p - 2.0), (c * (p - 2.0) * nu ** (p - 4.0) if p != 2.0 else 0.0)

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        u = residuals(x)
        nu2 = torch.dot(u, u)
        nu = float(nu2) ** 0.5
        f = 0.5 * c * nu2 if p == 2.0 else (c / p) * nu2 ** (0.5 * p)
        a, _ = _coeffs(nu)
        return f, jacobian(x).T.mv(u).mul_(a)

    def _parts(x: Tensor) -> tuple[Tensor, Tensor, Tensor, float, float]:
        u = residuals(x)
        J = jacobian(x)
        a, b = _coeffs(float(torch.linalg.vector_norm(u)))
        return u, J, J.T.mv(u), a, b

    def gn_plain(x: Tensor) -> Tensor:
        _, J, _, a, _ = _parts(x)
        return (J.T @ J).mul_(a)

    def gn_fisher(x: Tensor) -> Tensor:
        _, J, Jtu, a, b = _parts(x)
        H = (J.T @ J).mul_(a)
        return torch.addr(H, Jtu, Jtu, alpha=b) if b != 0.0 else H

    def fisher(x: Tensor) -> LowRank:
        _, _, Jtu, _, b = _parts(x)
        return LowRank(U=(Jtu * b**0.5).unsqueeze(1))

    def hess(x: Tensor) -> Tensor:
        u, J, Jtu, a, b = _parts(x)
        H = J.T @ J
        if not affine:
            H.add_(second_order(x, u))
        H.mul_(a)
        return torch.addr(H, Jtu, Jtu, alpha=b) if b != 0.0 else H

    curvatures: dict[str, Callable[[Tensor], Any]] = {
        "gn-fisher": gn_fisher,
        "gauss-newton": gn_plain if affine else gn_fisher,
    }
    if p != 2.0:
        curvatures["fisher"] = fisher

    prob = Problem(
        fun,
        n,
        value_and_grad=value_and_grad,
        hess=hess,
        residuals=residuals,
        outer=outer,
        curvatures=curvatures,
        constants=constants,
        f_star=f_star,
        x_star=x_star,
        x0=x0,
        name=name,
    )
    prob.power = p
    prob.scale = c
    return prob
