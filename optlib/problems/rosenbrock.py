r"""Rosenbrock's function and the nonlinear-equation chains of Semenov, Jaggi & Doikov (arXiv 2506.13710).

All three are non-convex sums of squared (or powered) residuals, built on
:func:`optlib.problems._residual.power_residual_problem`, with closed-form optima (``f_star = 0``).
No global gradient or Hessian Lipschitz constant exists (the derivatives grow polynomially), so
``constants`` only records ``convex=False``.

* :func:`rosenbrock` (Rosenbrock, Computer J. 3, 1960):
  :math:`f = (a - x_1)^2 + b(x_2 - x_1^2)^2 = \|u\|^2` with :math:`u = (a - x_1, \sqrt b(x_2 - x_1^2))`;
  minimum :math:`x^\star = (a, a^2)`. Start :math:`(-2, 2)` (the authors' notebook, spec 10 §6), or any
  ``x0``, such as Rosenbrock's own :math:`(-1.2, 1)` (used by the theorem checks).
* :func:`rosenbrock_nle`: :math:`f = \frac1p\|u\|^p` with the Rosenbrock residuals
  :math:`u = (1 - x_1, 10(x_2 - x_1^2))`; minimum :math:`(1, 1)`; start :math:`(-2, 2)` (notebook).
* :func:`chebyshev_rosenbrock` (Nesterov's smooth Chebyshev-Rosenbrock function in the residual
  form of the authors' notebook): :math:`u_1 = \frac12(1 - x_1)`,
  :math:`u_i = x_i - (2x_{i-1}^2 - 1)`, :math:`f = \frac cp\|u\|^p` (``scale`` :math:`= c`, default 1;
  Nesterov's own form is :math:`p = 2, c = 2`: :math:`\frac14(x_1 - 1)^2 + \sum_i(x_{i+1} - 2x_i^2 + 1)^2`,
  used by the theorem checks). Solving :math:`u = 0` forward gives
  :math:`x_1 = 1` and :math:`x_i = 2\cdot1^2 - 1 = 1`: :math:`x^\star = \mathbf 1`, :math:`f^\star = 0`.
  Start :math:`x_0 = (-1, 1, \dots, 1)` (where :math:`u = (1, 0, \dots, 0)`), the customary start for
  this function: Jarre, "On Nesterov's smooth Chebyshev-Rosenbrock function", Optim. Methods Softw.
  28 (2013), and Gürbüzbalaban & Overton, "On Nesterov's nonsmooth Chebyshev-Rosenbrock functions",
  Nonlinear Anal. 75 (2012); also attributed to Cartis, Gould & Toint (2010) by benchmark code. These
  sources were seen only as restated by others, not read in full. The authors' notebook instead
  uses ``n = 1000, p = 4`` and a random start.

Curvatures: ``"gn-fisher"`` :math:`= \|u\|^{p-2}J^\top J + (p-2)\|u\|^{p-4}(J^\top u)(J^\top u)^\top`
(the GGN; also registered as ``"gauss-newton"``) and, for :math:`p > 2`, its rank-one part ``"fisher"``; see
:mod:`optlib.problems._residual`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..problem import Constants, Problem
from ._data import problem_name
from ._residual import power_residual_problem

Tensor = torch.Tensor

_NONCONVEX = "non-convex; gradient and Hessian grow polynomially, no global L or L2"


def _rosenbrock_parts(a: float, b: float):
    """Residuals ``(a - x1, sqrt(b)(x2 - x1^2))``, their Jacobian and second-order term."""
    rb = math.sqrt(b)

    def residuals(x: Tensor) -> Tensor:
        return torch.stack((a - x[0], rb * (x[1] - x[0] * x[0])))

    def jacobian(x: Tensor) -> Tensor:
        J = torch.zeros(2, 2, dtype=x.dtype)
        J[0, 0] = -1.0
        J[1, 0] = -2.0 * rb * x[0]
        J[1, 1] = rb
        return J

    def second_order(x: Tensor, w: Tensor) -> Tensor:
        # Hessian(u_1) = 0, Hessian(u_2) = diag(-2 sqrt(b), 0)
        H = torch.zeros(2, 2, dtype=x.dtype)
        H[0, 0] = -2.0 * rb * w[1]
        return H

    return residuals, jacobian, second_order


def _check_positive_b(b: float) -> float:
    b = float(b)
    if not (b > 0 and math.isfinite(b)):
        raise ValueError(f"Rosenbrock's b must be positive and finite, got {b}")
    return b


def _start(x0: Any, n: int, what: str) -> Tensor:
    """``x0`` as a float64 tensor of shape ``(n,)``, validated."""
    try:
        t = torch.as_tensor(x0, dtype=torch.float64).clone()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{what}: x0 must be a vector of {n} numbers: {exc}") from None
    if t.shape != (n,) or not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what}: x0 must be a finite vector of shape ({n},), got {tuple(t.shape)}")
    return t


def _point_label(x: Tensor) -> str:
    return "(" + ",".join(f"{float(v):g}" for v in x) + ")"


def rosenbrock(a: float = 1.0, b: float = 100.0, *, x0: Any = (-2.0, 2.0)) -> Problem:
    """Rosenbrock's 2-D function ``(a - x1)^2 + b (x2 - x1^2)^2`` as ``||u||^2``.

    ``residuals``/``outer`` give ``u = (a - x1, sqrt(b)(x2 - x1^2))`` and ``outer(u) = ||u||^2``, so the
    generic Gauss-Newton machinery applies; ``"gauss-newton"`` is the hand-written ``2 J^T J``.
    ``x0`` defaults to ``(-2, 2)`` (the authors' notebook); ``x0=(-1.2, 1)`` is Rosenbrock's own start
    (Computer J. 3, 1960), used by the theorem checks. ``x_star = (a, a^2)``, ``f_star = 0``.
    """
    a, b = float(a), _check_positive_b(b)
    start = _start(x0, 2, "rosenbrock")
    residuals, jacobian, second_order = _rosenbrock_parts(a, b)
    return power_residual_problem(
        2,
        p=2.0,
        scale=2.0,
        residuals=residuals,
        jacobian=jacobian,
        second_order=second_order,
        constants=Constants(convex=False, notes={"all": _NONCONVEX}),
        x0=start,
        name=problem_name("rosenbrock", "", {"a": a, "b": b, "x0": _point_label(start)},
                          {"a": 1.0, "b": 100.0, "x0": "(-2,2)"}),
        f_star=0.0,
        x_star=lambda: torch.tensor([a, a * a], dtype=torch.float64),
    )


def rosenbrock_nle(p: float = 5) -> Problem:
    """The nonlinear-equation Rosenbrock problem ``(1/p) ||u||^p``, ``u = (1 - x1, 10 (x2 - x1^2))``.

    As in the authors' notebook: ``p = 5`` and ``x0 = (-2, 2)``; ``x_star = (1, 1)``, ``f_star = 0``.
    Curvatures ``"gauss-newton"``/``"gn-fisher"`` (the GGN) and ``"fisher"``.
    """
    residuals, jacobian, second_order = _rosenbrock_parts(1.0, 100.0)
    return power_residual_problem(
        2,
        p=p,
        residuals=residuals,
        jacobian=jacobian,
        second_order=second_order,
        constants=Constants(convex=False, notes={"all": _NONCONVEX}),
        x0=torch.tensor([-2.0, 2.0], dtype=torch.float64),
        name=problem_name("rosenbrock-nle", "", {"p": p}, {"p": 5}),
        f_star=0.0,
        x_star=lambda: torch.ones(2, dtype=torch.float64),
    )


def chebyshev_rosenbrock(n: int = 10, p: float = 2, *, scale: float = 1.0) -> Problem:
    """Chebyshev-Rosenbrock chain ``(scale/p) ||u||^p`` in dimension ``n``; ``x_star = 1``, ``f_star = 0``.

    ``u_1 = (1 - x_1)/2``, ``u_i = x_i - (2 x_{i-1}^2 - 1)``; for ``p = 2``, ``outer(u) = scale ||u||^2 / 2``.
    ``scale = 2`` with ``p = 2`` gives Nesterov's form ``(x_1 - 1)^2/4 + sum_i (x_{i+1} - 2 x_i^2 + 1)^2``
    (used by the theorem checks). ``x0 = (-1, 1, ..., 1)``. Curvatures ``"gauss-newton"``/``"gn-fisher"``
    (the GGN) and, for ``p > 2``, ``"fisher"``.
    """
    n = int(n)
    if n < 2:
        raise ValueError(f"the Chebyshev-Rosenbrock chain needs n >= 2, got {n}")
    scale = float(scale)
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"chebyshev-rosenbrock: scale must be positive and finite, got {scale}")

    def residuals(x: Tensor) -> Tensor:
        return torch.cat((0.5 * (1.0 - x[:1]), x[1:] - (2.0 * x[:-1] * x[:-1] - 1.0)))

    idx = torch.arange(1, n)

    def jacobian(x: Tensor) -> Tensor:
        J = torch.eye(n, dtype=x.dtype)
        J[0, 0] = -0.5
        J[idx, idx - 1] = -4.0 * x[:-1]
        return J

    def second_order(x: Tensor, w: Tensor) -> Tensor:
        # Hessian(u_i) = -4 e_{i-1} e_{i-1}^T for i >= 2 (1-based)
        return torch.diag(torch.cat((-4.0 * w[1:], torch.zeros(1, dtype=x.dtype))))

    x0 = torch.ones(n, dtype=torch.float64)
    x0[0] = -1.0
    return power_residual_problem(
        n,
        p=p,
        scale=scale,
        residuals=residuals,
        jacobian=jacobian,
        second_order=second_order,
        constants=Constants(convex=False, notes={"all": _NONCONVEX}),
        x0=x0,
        name=problem_name("chebyshev-rosenbrock", "", {"n": n, "p": p, "scale": scale},
                          {"n": 10, "p": 2, "scale": 1.0}),
        f_star=0.0,
        x_star=lambda: torch.ones(n, dtype=torch.float64),
    )
