"""Super-universal Newton method (N. Doikov, K. Mishchenko, Yu. Nesterov, "Super-Universal
Regularized Newton Method", SIAM J. Optim. 34(1), 2024; arXiv:2208.05888).

    lambda_k = H_k ||grad f(x_k)||_*^alpha
    x_{k+1}  = x_k - (H(x_k) + lambda_k B)^{-1} grad f(x_k)

A trial is accepted when ``<grad f(x_{k+1}), x_k - x_{k+1}> >= ||grad f(x_{k+1})||_*^2 / (4 lambda_k)``;
then ``H_k <- max(H_k/4, H_min)``, otherwise ``H_k <- 4 H_k`` (the authors' code, with
``alpha = 1`` by default; the paper recommends ``alpha`` in ``[2/3, 1]``).
"""

from __future__ import annotations

from typing import Any

import torch

from ..linalg.regularized import regularized_newton_step
from ..problem import Problem
from ..result import OptimizeResult, forwards_options
from .driver import Point, StepRule, Trial, run


class SuperUniversalRule(StepRule):
    param = "H"

    def __init__(self, alpha: float, H_min: float) -> None:
        self.alpha = alpha
        self.H_min = H_min

    def propose(self, pt: Point, H: float) -> Trial:
        lam = H * pt.gnorm**self.alpha
        return Trial(regularized_newton_step(pt.H, pt.g, lam, pt.metric), lam)

    def accept(self, pt: Point, trial: Trial, f_new: float, g_new: torch.Tensor, gnorm_new: float) -> bool:
        return float(torch.dot(g_new, -trial.d)) >= gnorm_new**2 / (4.0 * trial.lam)

    def on_success(self, H: float) -> float:
        return max(H / 4.0, self.H_min)

    def on_failure(self, H: float) -> float:
        return 4.0 * H


@forwards_options(run, fixed=("method",))
def super_newton(
    problem: Problem,
    x0: Any,
    *,
    H0: float = 1.0,
    alpha: float = 1.0,
    H_min: float = 1e-5,
    adaptive: bool = True,
    hessian: Any = "exact",
    B: Any = None,
    **options: Any,
) -> OptimizeResult:
    """Minimize with the super-universal Newton method."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if not (H0 > 0 and H_min > 0):
        raise ValueError(f"H0 and H_min must be positive, got {H0} and {H_min}")
    return run(problem, x0, SuperUniversalRule(alpha, H_min), H0, hessian=hessian, B=B, adaptive=adaptive,
               method="super-newton", **options)
