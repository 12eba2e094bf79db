"""Cubic regularization of Newton's method (Yu. Nesterov & B. T. Polyak, "Cubic regularization of
Newton method and its global performance", Math. Program. 108:177-205, 2006).

    x_{k+1} = argmin_y <g, y - x> + 1/2 <H (y - x), y - x> + (M/6) ||y - x||^3

in the ``M/6`` convention (``M >= L2`` makes the model an upper bound). The subproblem is solved
exactly through an eigendecomposition (:class:`optlib.linalg.CubicSubproblem`), so an indefinite
Hessian is allowed. The adaptive variant accepts a trial when ``f(x_{k+1}) <= f(x_k) + m_k(d)``
(the model's value), then halves ``M`` (not below ``M_min``); a rejection doubles it.
"""

from __future__ import annotations

from typing import Any

import torch

from ..linalg.cubic import CubicSubproblem
from ..linalg.regularized import LowRank
from ..linalg.spectral import SpectralCurvature
from ..problem import Problem
from ..result import OptimizeResult, forwards_options
from .driver import Point, StepRule, Trial, run


class CubicRule(StepRule):
    param = "M"

    def __init__(self, M_min: float) -> None:
        self.M_min = M_min

    def propose(self, pt: Point, M: float) -> Trial:
        sub = pt.cache.get("cubic")
        factorizations = 0
        if sub is None:
            if isinstance(pt.H, SpectralCurvature):
                sub = CubicSubproblem.from_spectral(pt.H, pt.g)
            else:
                H = pt.H.dense() if isinstance(pt.H, LowRank) else (pt.H if pt.H.ndim == 2 else torch.diag(pt.H))
                sub = CubicSubproblem(H, pt.g, pt.metric)
                factorizations = 1
            pt.cache["cubic"] = sub
        d = sub.solve(M)
        r = pt.metric.norm(d)
        # lam = (M/2)||d|| is the regularization the cubic step implicitly uses.
        return Trial(d, 0.5 * M * r, {"model": sub.model_value(d, M), "factorizations": factorizations})

    def accept(self, pt: Point, trial: Trial, f_new: float, g_new: torch.Tensor, gnorm_new: float) -> bool:
        return f_new <= pt.f + trial.info["model"]

    def on_success(self, M: float) -> float:
        return max(0.5 * M, self.M_min)

    def on_failure(self, M: float) -> float:
        return 2.0 * M


@forwards_options(run, fixed=("method",))
def cubic_newton(
    problem: Problem,
    x0: Any,
    *,
    M: float = 1.0,
    M_min: float = 1e-10,
    adaptive: bool = True,
    hessian: Any = "exact",
    B: Any = None,
    **options: Any,
) -> OptimizeResult:
    """Minimize with cubic-regularized Newton steps (fixed ``M`` or the doubling/halving search)."""
    if not (M > 0 and M_min > 0):
        raise ValueError(f"M and M_min must be positive, got {M} and {M_min}")
    if hessian is None:
        raise ValueError("cubic Newton needs a curvature (hessian=None is not allowed)")
    if options.get("solver") == "cg":
        raise ValueError("cubic Newton solves its subproblem by eigendecomposition; solver='cg' is not supported")
    return run(problem, x0, CubicRule(M_min), M, hessian=hessian, B=B, adaptive=adaptive,
               method="cubic-newton", **options)
