"""Theorem checkers: one function per statement, shared by the tests, the benchmarks and the report.

A check takes a run (an :class:`~optlib.OptimizeResult` or its trace) and the constants of the
statement and returns a :class:`TheoremCheck` ``(name, statement, source, measured, bound, holds,
slack, details)``. The package measures runs and checks bounds; every problem it runs on comes from
:mod:`optlib.problems`.

Modules, each importing only those above it:

* :mod:`optlib.theory.common` - :class:`TheoremCheck`, trace access, line fits;
* :mod:`optlib.theory.regularized_newton` - the checkers of the gradient-regularized Newton family;
* :mod:`optlib.theory.inexact_newton` - the checkers of its Hessian-free variant (truncated CG with
  forcing terms): :class:`~optlib.theory.inexact_newton.InexactTrialRecorder`, the residual rule,
  vanishing forcing terms and the Hessian-vector product count;
* :mod:`optlib.theory.drop_muon` - the Drop-Muon checkers and :func:`~optlib.theory.drop_muon.drop_muon_table`;
* :mod:`optlib.theory.least_squares` - Levenberg–Marquardt and Gauss–Newton checkers and
  :func:`~optlib.theory.least_squares.least_squares_table`;
* :mod:`optlib.theory.curvature` - curvature-operator and damping checkers and
  :func:`~optlib.theory.curvature.curvature_table`;
* :mod:`optlib.theory.bilevel` - hypergradient checkers on the exact bilevel problems and
  :func:`~optlib.theory.bilevel.bilevel_table`;
* :mod:`optlib.theory.unlearning` - Newton/K-FADE unlearning checkers and
  :func:`~optlib.theory.unlearning.unlearning_table`;
* :mod:`optlib.theory.drift` - orders of accuracy of the modified, principal and game flows of
  :mod:`optlib.drift` and :func:`~optlib.theory.drift.drift_table`;
* :mod:`optlib.theory.table` - :func:`theorem_table` (every regularized-Newton statement on its problems),
  :data:`FAMILY_TABLES` (every family's table) and :func:`every_table`, and :func:`format_table`;
  ``python -m optlib.theory [--full] [--family NAME ...]`` prints them.
"""

from . import bilevel, curvature, drift, drop_muon, least_squares, unlearning
from .common import TheoremCheck, fit_line
from .inexact_newton import InexactTrialRecorder, cg_residual_rule, forcing_vanishes, hvp_accounting
from .regularized_newton import (
    TrialRecorder,
    acceptance_invariant,
    collect_iterates,
    condition_sweep,
    cubic_subproblem,
    iterates_match,
    k2_rate,
    linear_rate,
    local_superlinear,
    nonconvex_grad_rate,
    normalized_gradient_reference,
    regularization_formula,
    search_overhead,
    step_within_radius,
    super_universal_linear_rate,
)
from .table import FAMILY_TABLES, every_table, format_table, theorem_table

__all__ = [
    "FAMILY_TABLES",
    "every_table",
    "TheoremCheck",
    "bilevel",
    "curvature",
    "drift",
    "drop_muon",
    "least_squares",
    "unlearning",
    "InexactTrialRecorder",
    "TrialRecorder",
    "acceptance_invariant",
    "cg_residual_rule",
    "forcing_vanishes",
    "hvp_accounting",
    "collect_iterates",
    "condition_sweep",
    "cubic_subproblem",
    "fit_line",
    "format_table",
    "iterates_match",
    "k2_rate",
    "linear_rate",
    "local_superlinear",
    "nonconvex_grad_rate",
    "normalized_gradient_reference",
    "regularization_formula",
    "search_overhead",
    "step_within_radius",
    "super_universal_linear_rate",
    "theorem_table",
]
