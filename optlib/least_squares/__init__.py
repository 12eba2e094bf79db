r"""Nonlinear least squares: Levenberg–Marquardt (Moré 1978) and Gauss–Newton with Armijo backtracking.

:func:`least_squares` follows :func:`scipy.optimize.least_squares`'s calling convention for
``fun, x0, jac, x_scale, ftol, xtol, gtol, max_nfev, bounds, args, kwargs, callback`` and returns an
:class:`optlib.OptimizeResult` with scipy's fields plus a trace. An :class:`optlib.Problem` with
residuals runs through ``optlib.minimize(problem, x0, method="levenberg-marquardt")``. ``factor``
(Levenberg–Marquardt's initial step bound, as in :func:`scipy.optimize.leastsq`) selects the variant for
starts far from the solution: MINPACK's 100 by default; ``factor=1`` keeps the first step from carrying a
parameter onto a plateau of the model (see :mod:`~optlib.least_squares.lm`).

Modules: :mod:`~optlib.least_squares.lm` (the Levenberg–Marquardt loop and its update rules),
:mod:`~optlib.least_squares.gn` (Gauss–Newton), :mod:`~optlib.least_squares.subproblem` (the SVD
solution of the augmented system and Moré's choice of :math:`\lambda`).
"""

from ..dispatch import register_method
from .core import least_squares, levenberg_marquardt
from .gn import ArmijoRule
from .lm import TrustRegionRule
from .subproblem import ScaledLeastSquares

__all__ = ["ArmijoRule", "ScaledLeastSquares", "TrustRegionRule", "least_squares", "levenberg_marquardt"]

register_method("levenberg-marquardt", levenberg_marquardt)
