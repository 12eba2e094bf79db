"""optlib: modern optimization algorithms as their papers state them, with theorems checked by tests."""

from . import least_squares  # noqa: F401  registers minimize(method="levenberg-marquardt")
from .dispatch import methods, minimize, register_method
from .problem import Constants, Problem
from .result import OptimizeResult, Trace

__all__ = ["Constants", "OptimizeResult", "Problem", "Trace", "methods", "minimize", "register_method"]
__version__ = "0.1.0"
