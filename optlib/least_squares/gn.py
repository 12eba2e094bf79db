r"""Gauss–Newton with a backtracking (Armijo) line search.

Problem: :math:`\min_x F(x) = \tfrac12\|r(x)\|^2`, :math:`m \ge n`. Iteration :math:`k`:

1. Gauss–Newton direction, the minimum-norm solution of the linearized problem
   :math:`p_k = \arg\min_p \|J_kp + r_k\|` (through the SVD of :math:`J_kD_k^{-1}`,
   :class:`~optlib.least_squares.subproblem.ScaledLeastSquares` at :math:`\lambda = 0`; singular values
   below ``rcond`` are dropped). For full-rank :math:`J_k`: :math:`J_k^\top J_k\,p_k = -J_k^\top r_k`.
2. Backtracking: the first :math:`t \in \{1, \beta, \beta^2, \dots\}` with the Armijo condition

   .. math::

       F(x_k + t p_k) \le F(x_k) + c_1\, t\, \nabla F(x_k)^\top p_k, \qquad
       \nabla F(x_k)^\top p_k = r_k^\top J_k p_k = -\|P_{J_k} r_k\|^2 \le 0,

   :math:`c_1 = 10^{-4}`, :math:`\beta = \tfrac12` (Nocedal & Wright, *Numerical Optimization*, 2nd ed.,
   2006, Algorithm 3.1 and eq. (3.4); Gauss–Newton with a line search is their §10.3). A non-finite
   trial value fails the condition. After ``max_backtracks`` halvings the run stops with
   ``success=False`` (status ``INNER_SEARCH_EXHAUSTED``).
3. :math:`x_{k+1} = x_k + t p_k`.

Stopping (the MINPACK quantities, with the accepted step in place of the trust radius): ``ftol`` when
the actual and predicted relative reductions :math:`1 - \|r_{k+1}\|^2/\|r_k\|^2` and
:math:`(\|r_k\|^2 - \|r_k + tJ_kp_k\|^2)/\|r_k\|^2` are both at most ``ftol``; ``xtol`` when
:math:`t\|D_kp_k\| \le \texttt{xtol}\,(\texttt{xtol} + \|D_kx_{k+1}\|)`; ``gtol`` as for
Levenberg–Marquardt; ``max_nfev``.

Near a zero-residual solution with :math:`J(x^\star)` of full rank the unit step is accepted and the
convergence is quadratic; with residuals the rate is linear with ratio the spectral radius of
:math:`(J^\top J)^{-1}S`, :math:`S = \sum_i r_i\nabla^2 r_i`, at :math:`x^\star` (derived: the Gauss–Newton map
:math:`x - (J^\top J)^{-1}J^\top r` has derivative :math:`-(J^\top J)^{-1}S` there; Dennis & Schnabel,
*Numerical Methods for Unconstrained Optimization and Nonlinear Equations*, 1983, §10.2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ._common import (
    Recorder,
    RunState,
    gradient_cosine,
    initial_scaling,
    start,
)
from ._oracle import ResidualOracle
from .subproblem import ScaledLeastSquares, _norm


class ArmijoRule:
    """Backtracking parameters of Gauss–Newton: ``c1`` (sufficient decrease), ``beta`` (step factor),
    ``max_backtracks``."""

    def __init__(self, c1: float = 1e-4, beta: float = 0.5, max_backtracks: int = 30) -> None:
        if not 0.0 < c1 < 1.0:
            raise ValueError(f"c1 must be in (0, 1), got {c1}")
        if not 0.0 < beta < 1.0:
            raise ValueError(f"beta must be in (0, 1), got {beta}")
        if int(max_backtracks) != max_backtracks or max_backtracks < 0:
            raise ValueError(f"max_backtracks must be a non-negative integer, got {max_backtracks}")
        self.c1, self.beta, self.max_backtracks = float(c1), float(beta), int(max_backtracks)

    def accept(self, cost: float, cost_new: float, t: float, slope: float) -> bool:
        """Armijo's condition ``F(x + t p) <= F(x) + c1 t slope``."""
        return cost_new <= cost + self.c1 * t * slope


def run_gn(
    oracle: ResidualOracle,
    *,
    x_scale: np.ndarray | None,
    ftol: float,
    xtol: float,
    gtol: float,
    max_nfev: int,
    maxiter: int | None = None,
    rule: ArmijoRule | None = None,
    callback: Callable[..., Any] | None = None,
    progress: bool = False,
) -> tuple[RunState, Recorder]:
    """The Gauss–Newton loop; returns the final state and the recorder (trace)."""
    rule = rule if rule is not None else ArmijoRule()
    rec = Recorder(oracle, callback, progress, max_nfev, "gauss-newton")
    be = oracle.backend
    x, r, fnorm = start(oracle, "gn")
    k = 0
    d = np.ones(oracle.n)
    last: dict[str, Any] = {"t": math.nan, "step_norm": math.nan, "trials": 0}
    while True:
        J = oracle.jacobian(x, r)
        if not be.all_finite(J):
            return RunState(x, r, J, True, k, "nonfinite",
                            f"At iteration {k} the Jacobian has non-finite entries; x is the last accepted point."), rec
        cn = be.column_norms(J)
        g = be.host(J.T @ r)
        d = initial_scaling(cn, x_scale) if k == 0 else (np.maximum(d, cn) if x_scale is None else d)
        cosine = gradient_cosine(g, cn, fnorm)
        cost = 0.5 * fnorm * fnorm
        rec.record(k, cost, g, cosine, **last)
        if cosine <= gtol:
            return RunState(x, r, J, True, k, "gtol"), rec
        if maxiter is not None and k >= maxiter:
            return RunState(x, r, J, True, k, "maxiter", f"({maxiter} iterations)"), rec
        sub = ScaledLeastSquares(J, r, d, backend=be)
        w = sub.gauss_newton()
        p = sub.to_x(w)
        slope = -float(np.dot(sub.c, sub.s * w))  # grad F^T p = r^T J p, with U^T J p = -s * w
        t = 1.0
        accepted = False
        nonfinite = 0
        largest_change = 0.0
        for trial in range(rule.max_backtracks + 1):
            x_new = x + t * p
            r_new = oracle.residuals(x_new)
            finite = be.all_finite(r_new)
            if finite:
                fnorm1 = be.norm(r_new)
                cost_new = 0.5 * fnorm1 * fnorm1
                largest_change = max(largest_change, abs(cost_new - cost))
                if rule.accept(cost, cost_new, t, slope):
                    accepted = True
                    break
            else:
                nonfinite += 1
            if oracle.nfev >= max_nfev:
                return RunState(x, r, J, True, k, "max_nfev", f"({max_nfev} evaluations)"), rec
            t *= rule.beta
        if not accepted:
            if nonfinite == rule.max_backtracks + 1:
                return RunState(x, r, J, True, k, "nonfinite",
                                f"At iteration {k} the residuals were not finite at any of the {nonfinite} "
                                "trial points of the line search; x is the last accepted point."), rec
            return RunState(x, r, J, True, k, "line_search",
                            f"At iteration {k} no step t >= {rule.beta:g}^{rule.max_backtracks} met Armijo's "
                            f"condition (largest change of the cost {largest_change:.2e}, cost {cost:.6e}); x is "
                            "the last accepted point."), rec
        step_norm = t * _norm(w)
        actred = 1.0 - (fnorm1 / fnorm) ** 2
        prered = sub.model_decrease(w, t) / (fnorm * fnorm)
        x, r, fnorm = x_new, r_new, fnorm1
        k += 1
        last = {"t": t, "step_norm": step_norm, "trials": trial + 1}
        if rec.accepted(x, r, 0.5 * fnorm * fnorm, k, **last):
            return RunState(x, r, J, False, k, "callback", last_step=last), rec
        f_ok = abs(actred) <= ftol and prered <= ftol
        x_ok = step_norm <= xtol * (xtol + _norm(d * be.host(x)))
        if (f_ok or x_ok) and nonfinite:
            detail = (
                f"At iteration {k} the step was shortened by {nonfinite} trial point(s) with non-finite residuals "
                "until the tolerances were met; x is the last accepted point, at the edge of the region where fun "
                "is finite, and need not be a minimizer."
            )
            return RunState(x, r, J, False, k, "nonfinite", detail, last_step=last), rec
        if f_ok or x_ok:
            return RunState(x, r, J, False, k, "ftol+xtol" if (f_ok and x_ok) else ("ftol" if f_ok else "xtol"),
                            last_step=last), rec
        if oracle.nfev >= max_nfev:
            return RunState(x, r, J, False, k, "max_nfev", f"({max_nfev} evaluations)", last_step=last), rec
