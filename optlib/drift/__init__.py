"""Discretisation drift: the flows that gradient descent, SGD, heavy-ball momentum and two-player games follow,
their explicit regularisers, and the diagnostics that say when those flows apply.

One module per idea, each importing only those above it:

* :mod:`optlib.drift.derivatives` - gradients, Hessian-vector products (double backward), dense Hessians,
  :func:`module_loss` (an ``nn.Module`` as a loss of one flat vector);
* :mod:`optlib.drift.flows` - :func:`modified_flow`: ``"gradient"``, ``"igr"``, ``"igr2"``, ``"sgd"``,
  ``"momentum"`` (and ``"principal"``, handed to :func:`principal_flow`);
* :mod:`optlib.drift.principal` - :func:`principal_flow` (full eigendecomposition, complex principal branch);
* :mod:`optlib.drift.games` - :func:`game_flow` and :func:`game_drift_penalties`;
* :mod:`optlib.drift.integration` - :func:`integrate` over ``scipy.integrate.solve_ivp`` (DOP853);
* :mod:`optlib.drift.regularizers` - :func:`igr_penalty` and its finite-difference gradient
  :func:`igr_penalty_grad_fd`;
* :mod:`optlib.drift.diagnostics` - :func:`lambda_max` (Lanczos from :mod:`optlib.curvature`),
  :func:`edge_of_stability_ratio`, :func:`drift_from_flow`, :func:`check_expansion`.

Formulas and sources: the module docstrings and ``docs/drift.md``.
"""

from .derivatives import HessianOperator, dense_hessian, gradient, hvp, module_loss
from .diagnostics import (
    EXPANSION_LIMIT,
    DriftExpansionWarning,
    check_expansion,
    drift_from_flow,
    edge_of_stability_ratio,
    hessian_operator,
    lambda_max,
)
from .flows import KINDS, ModifiedFlow, modified_flow
from .games import GameDriftPenalties, GameFlow, game_drift_penalties, game_flow
from .integration import IntegrationError, integrate
from .principal import (
    DEFAULT_MAX_DIM,
    PrincipalFlow,
    PrincipalFlowTooLarge,
    principal_coefficients,
    principal_flow,
)
from .regularizers import igr_penalty, igr_penalty_grad_fd

__all__ = [
    "DEFAULT_MAX_DIM",
    "DriftExpansionWarning",
    "EXPANSION_LIMIT",
    "GameDriftPenalties",
    "GameFlow",
    "HessianOperator",
    "IntegrationError",
    "KINDS",
    "ModifiedFlow",
    "PrincipalFlow",
    "PrincipalFlowTooLarge",
    "check_expansion",
    "dense_hessian",
    "drift_from_flow",
    "edge_of_stability_ratio",
    "game_drift_penalties",
    "game_flow",
    "gradient",
    "hessian_operator",
    "hvp",
    "igr_penalty",
    "igr_penalty_grad_fd",
    "integrate",
    "lambda_max",
    "modified_flow",
    "module_loss",
    "principal_coefficients",
    "principal_flow",
]
