"""Shared pieces of the theorem checks: the :class:`TheoremCheck` record, trace access and line fits.

Nothing here depends on pytest: the same checks serve the tests, the asv benchmarks and the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..result import OptimizeResult, Trace

# float64 unit roundoff (2^-53); used to write absolute roundoff allowances down explicitly.
UNIT_ROUNDOFF = 2.0**-53


@dataclass(frozen=True)
class TheoremCheck:
    """One statement checked on one run.

    name      : short identifier ("1 acceptance invariant", ...).
    statement : the inequality in words and symbols.
    source    : the paper (and where in it) or "derived" with the derivation in the checker's docstring.
    measured  : the measured quantity (a float).
    bound     : what the statement allows.
    holds     : the verdict. Unless ``details["comparison"]`` says otherwise it is
                ``measured <= bound * (1 + slack)``.
    slack     : the relative slack used in the comparison.
    details   : everything else needed to read the verdict (sub-checks, counts, the run's parameters).
    """

    name: str
    statement: str
    source: str
    measured: float
    bound: float
    holds: bool
    slack: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """A flat dict for tables: name, measured, bound, holds, slack, comparison, problem."""
        return {
            "name": self.name,
            "measured": self.measured,
            "bound": self.bound,
            "holds": self.holds,
            "slack": self.slack,
            "comparison": self.details.get("comparison", "measured <= bound*(1+slack)"),
            "problem": self.details.get("problem", ""),
            "method": self.details.get("method", ""),
        }

    def __str__(self) -> str:
        verdict = "holds" if self.holds else "FAILS"
        cmp = self.details.get("comparison", "measured <= bound*(1+slack)")
        return f"[{verdict}] {self.name}: measured {self.measured:.6g} vs bound {self.bound:.6g} ({cmp})"


def le_with_slack(measured: float, bound: float, slack: float) -> bool:
    """``measured <= bound + slack * |bound|`` (= ``bound * (1 + slack)`` for ``bound >= 0``).

    NaN and ``+inf`` never hold.
    """
    if not (math.isfinite(measured) or measured == -math.inf):
        return False
    return measured <= bound + slack * abs(bound)


def as_trace(run: OptimizeResult | Trace | Sequence[Mapping[str, Any]]) -> Trace:
    """The trace of a run given as an ``OptimizeResult``, a :class:`Trace` or a list of records."""
    if isinstance(run, Trace):
        return run
    if isinstance(run, OptimizeResult) or (isinstance(run, dict) and "trace" in run):
        trace = run["trace"]
        if not isinstance(trace, Trace):
            raise TypeError("the result has no Trace in its 'trace' field")
        return trace
    return Trace(list(run))


def fit_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares line ``y ~ slope * x + intercept``; returns ``(slope, intercept, r2)``.

    ``r2`` is the coefficient of determination; a perfectly constant ``y`` gives ``r2 = 1`` when
    the fit is exact (slope 0). Needs at least two distinct ``x``.
    """
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.size < 2:
        raise ValueError(f"fit_line needs two equal-length sequences of >= 2 points, got {xa.size} and {ya.size}")
    if not (np.isfinite(xa).all() and np.isfinite(ya).all()):
        raise ValueError("fit_line got non-finite values")
    xm, ym = xa.mean(), ya.mean()
    sxx = float(np.sum((xa - xm) ** 2))
    if sxx == 0.0:
        raise ValueError("fit_line needs at least two distinct x values")
    slope = float(np.sum((xa - xm) * (ya - ym)) / sxx)
    intercept = float(ym - slope * xm)
    ss_res = float(np.sum((ya - (slope * xa + intercept)) ** 2))
    ss_tot = float(np.sum((ya - ym) ** 2))
    r2 = 1.0 if ss_tot == 0.0 else 1.0 - ss_res / ss_tot
    return slope, intercept, r2
