"""What every method shares: `OptimizeResult` (scipy's, plus a trace and counters), `Trace` (one record
per iteration), the status codes, the callback conventions, and the checks and declarations of options."""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

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

    def column(self, key: str, default: Any = None) -> np.ndarray:
        """One field across all records, as a 1-D array with one entry per record.

        A numeric field (every present value a real number: ``int``, ``float``, ``bool``, a numpy
        scalar or a 0-d array or tensor) comes back as a float array, with ``default`` (NaN when
        ``None``) where a record lacks the field. Any other field, for example ``rejections`` (a
        list of reasons per record, of varying length) or a string, comes back as a 1-D array of
        ``dtype=object`` holding the values themselves, with ``default`` (``None`` when ``None``)
        where a record lacks it; numpy never tries to stack such values into a 2-D array.
        """
        present = [r[key] for r in self.records if key in r]
        if all(_is_real_scalar(v) for v in present):
            fill = np.nan if default is None else default
            return np.array([float(r[key]) if key in r else fill for r in self.records], dtype=float)
        out = np.empty(len(self.records), dtype=object)
        for i, r in enumerate(self.records):
            out[i] = r.get(key, default)
        return out

    def keys(self) -> list[str]:
        """Every field name that appears in some record, in first-seen order."""
        seen: dict[str, None] = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return list(seen)

    def __repr__(self) -> str:
        return f"Trace({len(self)} records, fields={self.keys()})"


def _is_real_scalar(value: Any) -> bool:
    """Whether ``value`` is one real number (a Python or numpy scalar, or a 0-d array or tensor)."""
    if isinstance(value, (numbers.Real, np.bool_)):
        return True
    if getattr(value, "ndim", None) == 0 and not isinstance(value, (str, bytes)):
        dtype = getattr(value, "dtype", None)
        is_complex = getattr(value, "is_complex", None)
        if callable(is_complex):  # a torch tensor
            return not is_complex()
        return dtype is not None and (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)) \
            and not np.issubdtype(dtype, np.complexfloating)
    return False


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

# A run that reaches the rounding floor with ||g||_* <= ROUNDOFF_SUCCESS_FACTOR * gtol is reported as a
# success (status SUCCESS) with ROUNDOFF_SUCCESS_MESSAGE: the requested gradient norm is then only a
# small factor beyond what float64 lets the method verify, and the point is as good as the arithmetic
# allows. Farther from gtol the status stays ROUNDOFF_FLOOR (success=False).
ROUNDOFF_SUCCESS_FACTOR = 10.0
ROUNDOFF_SUCCESS_MESSAGE = (
    "Optimization terminated successfully at the float64 rounding floor: the gradient norm {gnorm:.3e} is "
    "within {factor:g}x of gtol {gtol:.3e}, and no trial changed f measurably any more."
)


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


# ------------------------------------------------------------------------------ options of the methods
# The options that several methods share: name -> (kind, smallest allowed value). A tolerance is a
# finite real number, a count an integer; both at least the bound.
SHARED_OPTIONS: dict[str, tuple[str, int]] = {
    "tol": ("tolerance", 0),
    "gtol": ("tolerance", 0),
    "ftol": ("tolerance", 0),
    "xtol": ("tolerance", 0),
    "maxiter": ("count", 0),
    "max_inner": ("count", 1),
    "max_nfev": ("count", 1),
    "max_nonfinite": ("count", 1),
    "hessian_every": ("count", 1),
}


def _check_tolerance(name: str, value: Any, minimum: int) -> float:
    if isinstance(value, (bool, np.bool_, str, bytes)):
        tol = math.nan
    else:
        try:
            tol = float(value)
        except (TypeError, ValueError):
            tol = math.nan
    if not (math.isfinite(tol) and tol >= minimum):
        raise ValueError(f"{name} must be a finite number >= {minimum}, got {value!r}.")
    return tol


def _check_count(name: str, value: Any, minimum: int) -> int:
    count = None
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        count = int(value)
    elif isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        as_float = float(value)
        if math.isfinite(as_float) and as_float.is_integer():  # 1e4 is a count; 2.5 is not
            count = int(as_float)
    if count is None or count < minimum:
        note = " (a bool is not a count)" if isinstance(value, (bool, np.bool_)) else ""
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}{note}.")
    return count


def check_options(**values: Any) -> dict[str, Any]:
    """Validate the shared options among ``values``; return them converted, ``None`` left as is.

    The one check of these options for every method of :func:`optlib.minimize` and for
    :func:`optlib.least_squares.least_squares` (see :data:`SHARED_OPTIONS`):

    * tolerances ``tol``, ``gtol``, ``ftol``, ``xtol``: finite real numbers ``>= 0`` (NaN, a
      negative number, a bool or a string is refused); returned as ``float``;
    * counts ``maxiter >= 0`` and ``max_inner``, ``max_nfev``, ``max_nonfinite``,
      ``hessian_every >= 1``: integers, where an integral float such as ``1e4`` counts as one and
      ``2.5``, ``"10"`` or ``True`` do not; returned as ``int``.

    A bad value raises ``ValueError`` naming the option and the value it got. A name outside
    :data:`SHARED_OPTIONS` is a mistake of the caller and raises ``KeyError``.
    """
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in SHARED_OPTIONS:
            raise KeyError(f"check_options knows no option {name!r}; it checks {', '.join(SHARED_OPTIONS)}")
        kind, minimum = SHARED_OPTIONS[name]
        if value is None:
            out[name] = None
        elif kind == "tolerance":
            out[name] = _check_tolerance(name, value, minimum)
        else:
            out[name] = _check_count(name, value, minimum)
    return out


Method = TypeVar("Method", bound=Callable[..., Any])


def forwards_options(target: Callable[..., Any], *, fixed: Iterable[str] = ()) -> Callable[[Method], Method]:
    """Declare that a method passes its ``**options`` on to ``target``.

    The decorated function's signature (what :func:`inspect.signature`, ``help`` and
    :func:`optlib.dispatch.method_options` see) becomes its own parameters followed by the
    keyword-only parameters of ``target``, less the ones it sets itself: its own parameters and the
    names in ``fixed``. The accepted options are thus read off the real signatures, with no second
    list to keep in step. The names in ``fixed`` are kept in ``__fixed_options__`` so that an error
    can say that the method sets them itself. Raises ``TypeError`` when the function has no
    ``**options`` to forward.
    """
    fixed = frozenset(fixed)

    def decorate(fn: Method) -> Method:
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        if len(own) == len(sig.parameters):
            raise TypeError(
                f"{fn.__qualname__} takes no **options, so it has nothing to forward to {target.__qualname__}"
            )
        taken = {p.name for p in own} | fixed
        params = inspect.signature(target).parameters.values()
        forwarded = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in taken]
        still_open = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
        fn.__signature__ = sig.replace(parameters=[*own, *forwarded, *still_open])  # type: ignore[attr-defined]
        fn.__fixed_options__ = fixed  # type: ignore[attr-defined]
        return fn

    return decorate
