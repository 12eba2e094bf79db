"""The gradient-regularized Newton family and its anchors (see docs/second_order.md)."""

from .cubic_newton import cubic_newton
from .grad_norm_newton import grad_norm_newton, normalized_gradient
from .regularized_newton import regularized_newton
from .super_newton import super_newton

__all__ = ["cubic_newton", "grad_norm_newton", "normalized_gradient", "regularized_newton", "super_newton"]
