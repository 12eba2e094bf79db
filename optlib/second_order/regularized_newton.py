"""Mishchenko's regularized Newton method (K. Mishchenko, "Regularized Newton Method with Global
O(1/k^2) Convergence", SIAM J. Optim. 33(3), 2023; arXiv:2112.02089).

    lambda_k = sqrt(H ||grad f(x_k)||_*)
    x_{k+1}  = x_k - (grad^2 f(x_k) + lambda_k B)^{-1} grad f(x_k)

With a fixed ``H >= L2`` (the Hessian's Lipschitz constant) the method converges globally at
``O(1/k^2)`` on convex functions and superlinearly near a strongly convex minimizer
(arXiv:2112.02089, abstract). Without knowledge of ``H`` a line search accepts the trial when

    ||grad f(x_{k+1})||_* <= 2 lambda_k ||x_{k+1} - x_k||   and
    f(x_{k+1}) <= f(x_k) - (2/3) lambda_k ||x_{k+1} - x_k||^2,

doubling ``H`` on failure and starting each iteration from ``H_{k-1}/4``. These line-search
constants are as our specification records them; they are not yet checked against the paper's
Algorithm 2, so no theorem test relies on them (the fixed-``H`` method is the one tested).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..linalg.regularized import regularized_newton_step
from ..problem import Problem
from ..result import OptimizeResult, forwards_options
from .driver import Point, StepRule, Trial, run


class MishchenkoRule(StepRule):
    param = "H"

    def start(self, H: float) -> float:
        return H / 4.0

    def propose(self, pt: Point, H: float) -> Trial:
        lam = math.sqrt(H * pt.gnorm)
        return Trial(regularized_newton_step(pt.H, pt.g, lam, pt.metric), lam)

    def accept(self, pt: Point, trial: Trial, f_new: float, g_new: torch.Tensor, gnorm_new: float) -> bool:
        r = pt.metric.norm(trial.d)
        return gnorm_new <= 2.0 * trial.lam * r and f_new <= pt.f - (2.0 / 3.0) * trial.lam * r**2

    def on_success(self, H: float) -> float:
        return H

    def on_failure(self, H: float) -> float:
        return 2.0 * H


@forwards_options(run, fixed=("method",))
def regularized_newton(
    problem: Problem,
    x0: Any,
    *,
    H: float = 1.0,
    adaptive: bool = True,
    hessian: Any = "exact",
    B: Any = None,
    **options: Any,
) -> OptimizeResult:
    """Mishchenko's method: fixed ``H`` (``adaptive=False``) or the line search over ``H``."""
    if not H > 0:
        raise ValueError(f"H must be positive, got {H}")
    return run(problem, x0, MishchenkoRule(), H, hessian=hessian, B=B, adaptive=adaptive,
               method="regularized-newton", **options)
