r"""Closed-form residual pairs ``(r, J)`` for the least-squares solver :func:`optlib.least_squares.least_squares`.

Each residual maps a float numpy vector ``x`` to ``r(x)`` and its Jacobian to the dense ``J(x) = dr/dx``
(shape ``(m, n)``); the objective is ``F(x) = ||r(x)||^2 / 2``. These are the problems of the
Levenberg–Marquardt and Gauss–Newton checks of :mod:`optlib.theory.least_squares`; the facts those checks
rely on are stated here and checked in ``tests/test_problems.py`` (Jacobians against central differences,
the stated roots and residuals, the stated Gauss–Newton steps):

* :func:`rosenbrock_residual` - ``r = (1 - x1, 10 (x2 - x1^2))``, m = n = 2, root ``x* = (1, 1)``;
  ``det J = -10`` everywhere, and the Gauss–Newton step maps the error ``e = x - x*`` to ``(0, -e1^2)``.
* :func:`cubic_pair` - ``r = (x^2 - 1, x^3 - 1)``, m = 2, n = 1, root ``x* = 1``, ``J* = (2, 3)``,
  ``r''* = (2, 6)``: Gauss–Newton's ``e_{k+1}/e_k^2 -> |J*^T r''*| / (2 ||J*||^2) = 11/13``.
* :func:`large_residual` ``(t)`` - ``r = (x + 1, t x^2 + x - 1)``, m = 2, n = 1; for ``t < 1`` the minimizer
  is ``x* = 0`` with the nonzero residual ``(1, -1)`` and ``J* = (1, 1)``, and Gauss–Newton converges
  linearly with rate ``|t|`` (the derivative of its map at 0 is ``t``).
* :func:`saturating_residual` - ``r = x / sqrt(1 + x^2)``, m = n = 1, root ``x* = 0``; the Gauss–Newton step
  is ``p = -x (1 + x^2)``, so from ``x = 1`` it lands on ``x = -1`` where F is the same (1/4).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Residual = Callable[[np.ndarray], np.ndarray]

__all__ = [
    "cubic_pair",
    "cubic_pair_jac",
    "large_residual",
    "rosenbrock_residual",
    "rosenbrock_residual_jac",
    "saturating_residual",
    "saturating_residual_jac",
]


def rosenbrock_residual(x):
    """Rosenbrock's residuals ``(1 - x1, 10 (x2 - x1^2))``; root ``(1, 1)``, ``F = Rosenbrock / 2``."""
    return np.array([1.0 - x[0], 10.0 * (x[1] - x[0] ** 2)])


def rosenbrock_residual_jac(x):
    """``[[-1, 0], [-20 x1, 10]]`` (determinant -10: invertible everywhere)."""
    return np.array([[-1.0, 0.0], [-20.0 * x[0], 10.0]])


def cubic_pair(x):
    """``(x^2 - 1, x^3 - 1)``; zero residual at the root ``x* = 1``."""
    return np.array([x[0] ** 2 - 1.0, x[0] ** 3 - 1.0])


def cubic_pair_jac(x):
    """``[[2 x], [3 x^2]]``; ``(2, 3)`` at the root."""
    return np.array([[2.0 * x[0]], [3.0 * x[0] ** 2]])


def large_residual(t: float) -> tuple[Residual, Residual]:
    """``(r, J)`` of ``r(x) = (x + 1, t x^2 + x - 1)``: for ``t < 1``, ``x* = 0`` with ``r(x*) = (1, -1)``
    (``F'(0) = 0``, ``F''(0) = 2 - 2t > 0``) and ``J(x*) = (1, 1)``."""

    def fun(x):
        return np.array([x[0] + 1.0, t * x[0] ** 2 + x[0] - 1.0])

    def jac(x):
        return np.array([[1.0], [2.0 * t * x[0] + 1.0]])

    return fun, jac


def saturating_residual(x):
    """``r(x) = x / sqrt(1 + x^2)``: from ``x = 1`` the Gauss–Newton step lands on ``-1`` where F is the same."""
    return np.array([x[0] / math.sqrt(1.0 + x[0] ** 2)])


def saturating_residual_jac(x):
    """``(1 + x^2)^{-3/2}``."""
    return np.array([[(1.0 + x[0] ** 2) ** -1.5]])
