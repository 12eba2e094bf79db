"""Linear algebra shared by the optimizers: metrics, regularized Newton solves, the cubic subproblem."""

from .cg import MatvecCurvature
from .cubic import CubicSubproblem
from .newton_schulz import KELLER_COEFFICIENTS, matrix_view, newton_schulz, polar
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
    "KELLER_COEFFICIENTS",
    "LowRank",
    "MatvecCurvature",
    "Metric",
    "NonPSDCurvatureError",
    "SpectralCurvature",
    "as_metric",
    "matrix_view",
    "newton_schulz",
    "polar",
    "regularized_newton_step",
]
