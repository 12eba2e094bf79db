"""`OptimizeResult` (scipy's, plus a trace and counters) and `Trace`, one record per iteration."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import scipy.optimize


class Trace:
    """Per-iteration records of a run.

    Each record is a flat dict. Every method writes ``k`` (iteration), ``f``, ``grad_norm``
    (the dual norm of the gradient), ``time`` (seconds since the start, oracle time included)
    and the problem's counters; methods add their own step parameters (``gamma``, ``lam``,
    ``trials``, ...). Iteration 0 is the starting point.
    """

    def __init__(self, records: Iterable[dict[str, Any]] = ()) -> None:
        self.records: list[dict[str, Any]] = list(records)

    def append(self, record: dict[str, Any]) -> None:
        """Add one iteration's record."""
        self.records.append(record)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.records[i]

    def column(self, key: str, default: float = np.nan) -> np.ndarray:
        """One field across all records as a float array (``default`` where a record lacks it)."""
        return np.array([r.get(key, default) for r in self.records], dtype=float)

    def keys(self) -> list[str]:
        """Every field name that appears in some record, in first-seen order."""
        seen: dict[str, None] = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return list(seen)

    def __repr__(self) -> str:
        return f"Trace({len(self)} records, fields={self.keys()})"


class OptimizeResult(scipy.optimize.OptimizeResult):
    """scipy's result object with the fields ``x, fun, jac, nit, nfev, njev, nhev, status, success,
    message`` plus ``trace`` (a :class:`Trace`) and method-specific counters such as ``ntrials``,
    ``nrejected`` and ``nfact``."""


# Status codes shared by every method in optlib.minimize.
SUCCESS = 0
MAXITER = 1
CALLBACK_STOP = 2
INNER_SEARCH_EXHAUSTED = 3
NUMERICAL_FAILURE = 4
ROUNDOFF_FLOOR = 5

STATUS_MESSAGES = {
    SUCCESS: "Optimization terminated successfully.",
    MAXITER: "Maximum number of iterations has been exceeded.",
    CALLBACK_STOP: "Stopped by the callback.",
    INNER_SEARCH_EXHAUSTED: "Inner search exhausted: no trial step passed the acceptance test.",
    NUMERICAL_FAILURE: "Numerical failure.",
    ROUNDOFF_FLOOR: "Stopped at the float64 rounding floor: the decrease of f is no longer measurable.",
}


def wrap_callback(callback: Callable[..., Any]) -> Callable[[OptimizeResult], bool]:
    """Adapt a user callback to scipy's (>= 1.11) conventions; the wrapper returns True to stop.

    A callback whose signature names ``intermediate_result`` receives the result object; any other
    receives ``x`` (scipy's legacy form). Raising ``StopIteration`` or returning ``True`` stops.
    The calling style is worked out once, not on every iteration.
    """
    try:
        params = inspect.signature(callback).parameters
    except (TypeError, ValueError):
        params = {}
    wants_result = "intermediate_result" in params

    def call(intermediate_result: OptimizeResult) -> bool:
        try:
            if wants_result:
                out = callback(intermediate_result=intermediate_result)
            else:
                out = callback(intermediate_result.x)
        except StopIteration:
            return True
        return out is True

    return call
