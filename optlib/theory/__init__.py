"""Theorem checkers: one function per statement, shared by the tests, the benchmarks and the report.

A check takes a run (an :class:`~optlib.OptimizeResult` or its trace) and the constants of the
statement and returns a :class:`TheoremCheck` ``(name, statement, source, measured, bound, holds,
slack, details)``. :func:`theorem_table` runs every statement on its standard problem
(:mod:`optlib.theory.standard`).
"""

from . import dropmuon, standard
from .common import TheoremCheck, fit_line
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
    search_overhead,
    step_within_radius,
    theorem_table,
)


def format_table(checks: list[TheoremCheck]) -> str:
    """The checks as a plain-text "measured vs bound" table."""
    from ._table import format_table as _fmt

    return _fmt(checks)


__all__ = [
    "TheoremCheck",
    "dropmuon",
    "TrialRecorder",
    "acceptance_invariant",
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
    "search_overhead",
    "standard",
    "step_within_radius",
    "theorem_table",
]
