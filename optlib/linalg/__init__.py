"""Linear algebra shared by the optimizers: metrics, regularized Newton solves, the cubic subproblem."""

from .cg import MatvecCurvature
from .cubic import CubicSubproblem
from .regularized import (
    FactorizationError,
    LowRank,
    Metric,
    NonPSDCurvatureError,
    as_metric,
    regularized_newton_step,
)
from .spectral import SpectralCurvature

__all__ = [
    "CubicSubproblem",
    "FactorizationError",
    "LowRank",
    "MatvecCurvature",
    "Metric",
    "NonPSDCurvatureError",
    "SpectralCurvature",
    "as_metric",
    "regularized_newton_step",
]
