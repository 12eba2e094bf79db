"""Pieces shared by the Levenberg–Marquardt and Gauss–Newton loops: scaling, the gradient test,
trace records, stopping reasons and the final result."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..result import (
    CALLBACK_STOP,
    INNER_SEARCH_EXHAUSTED,
    MAXITER,
    NUMERICAL_FAILURE,
    STATUS_MESSAGES,
    SUCCESS,
    OptimizeResult,
    Trace,
    check_options,
    wrap_callback,
)
from ._oracle import ResidualOracle

Tensor = torch.Tensor

EPS = float(np.finfo(np.float64).eps)

# Status codes of least_squares: scipy.optimize.least_squares's, exactly (success means status > 0) ...
SCIPY_CALLBACK_STOP = -2  # the callback asked to stop
SCIPY_MAX_NFEV = 0  # the evaluation budget (max_nfev) or optlib's iteration bound (maxiter) is spent
SCIPY_GTOL, SCIPY_FTOL, SCIPY_XTOL, SCIPY_FTOL_XTOL = 1, 2, 3, 4
# ... and two failures scipy's ``lm`` does not report (improper input, scipy's -1, raises ValueError here).
SCIPY_NONFINITE = -3  # non-finite residuals or Jacobian stopped the run
SCIPY_LINE_SEARCH = -4  # Gauss–Newton's backtracking found no acceptable step

# termination -> (status of least_squares (scipy's codes), status of optlib.minimize (optlib.result's codes), message)
TERMINATIONS = {
    "gtol": (SCIPY_GTOL, SUCCESS,
             "`gtol` termination condition is satisfied: every column of J is nearly orthogonal to r."),
    "ftol": (SCIPY_FTOL, SUCCESS,
             "`ftol` termination condition is satisfied: actual and predicted relative reductions of "
             "the sum of squares are at most ftol."),
    "xtol": (SCIPY_XTOL, SUCCESS,
             "`xtol` termination condition is satisfied: the scaled step bound is at most xtol times "
             "the scaled norm of x."),
    "ftol+xtol": (SCIPY_FTOL_XTOL, SUCCESS, "Both `ftol` and `xtol` termination conditions are satisfied."),
    "max_nfev": (SCIPY_MAX_NFEV, MAXITER, "The maximum number of function evaluations is exceeded."),
    "maxiter": (SCIPY_MAX_NFEV, MAXITER, STATUS_MESSAGES[MAXITER]),
    "callback": (SCIPY_CALLBACK_STOP, CALLBACK_STOP, STATUS_MESSAGES[CALLBACK_STOP]),
    "nonfinite": (SCIPY_NONFINITE, NUMERICAL_FAILURE, STATUS_MESSAGES[NUMERICAL_FAILURE]),
    "line_search": (SCIPY_LINE_SEARCH, INNER_SEARCH_EXHAUSTED, STATUS_MESSAGES[INNER_SEARCH_EXHAUSTED]),
}


def check_tolerances(ftol: Any, xtol: Any, gtol: Any) -> tuple[float, float, float]:
    """Each tolerance must be a finite number ``>= eps`` (as scipy's ``method='lm'`` requires).

    The common check (:func:`optlib.result.check_options`: a finite number ``>= 0``) comes first, so
    that a negative or NaN tolerance gets the same error as in every other method of optlib.
    """
    checked = check_options(ftol=ftol, xtol=xtol, gtol=gtol)
    for name, tol in checked.items():
        if tol < EPS:
            raise ValueError(
                f"{name} must be at least the machine epsilon {EPS:.2e} (as in scipy's method='lm'), got {tol!r}."
            )
    return checked["ftol"], checked["xtol"], checked["gtol"]


def check_x_scale(x_scale: Any, n: int) -> np.ndarray | None:
    """``None`` for Jacobian (Marquardt) scaling, else the positive array ``x_scale`` of length ``n``."""
    if x_scale is None or (isinstance(x_scale, str) and x_scale == "jac"):
        return None
    if isinstance(x_scale, str):
        raise ValueError(f"x_scale must be None, 'jac' or a positive array, got {x_scale!r}")
    if isinstance(x_scale, Tensor):
        x_scale = x_scale.detach().cpu().numpy()
    arr = np.asarray(x_scale, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"x_scale must be a scalar or have shape ({n},), got shape {arr.shape}")
    if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
        raise ValueError("x_scale must be positive and finite")
    return arr


def check_bounds(bounds: Any, n: int, method: str) -> None:
    """Only the unconstrained case: a bound that constrains raises, naming the alternatives."""
    if bounds is None:
        return
    lb, ub = (getattr(bounds, "lb", None), getattr(bounds, "ub", None))
    if lb is None and ub is None:
        try:
            lb, ub = bounds
        except (TypeError, ValueError):
            raise ValueError("bounds must be None, a pair (lb, ub) or scipy.optimize.Bounds") from None
    lb = np.broadcast_to(np.asarray(lb, dtype=np.float64), (n,))
    ub = np.broadcast_to(np.asarray(ub, dtype=np.float64), (n,))
    if np.all(lb == -np.inf) and np.all(ub == np.inf):
        return
    raise ValueError(
        f"method={method!r} does not support bounds (Levenberg–Marquardt and Gauss–Newton here are unconstrained); "
        "use scipy.optimize.least_squares(method='trf') or method='dogbox' for bound constraints, or "
        "reparametrize (e.g. x = lb + exp(z) for a lower bound)"
    )


def initial_scaling(colnorms: np.ndarray, x_scale: np.ndarray | None) -> np.ndarray:
    """``d_j = ||J_{:j}||`` (1 where a column is zero), or ``1/x_scale`` when given (MINPACK modes 1 and 2)."""
    if x_scale is not None:
        return 1.0 / x_scale
    return np.where(colnorms == 0.0, 1.0, colnorms)


def gradient_cosine(g: np.ndarray, colnorms: np.ndarray, fnorm: float) -> float:
    r"""MINPACK's gradient test quantity :math:`\max_j |J_{:j}^\top r| / (\|J_{:j}\|\,\|r\|)` (0 when r = 0),
    the largest cosine between ``r`` and a column of ``J``; scale invariant."""
    if fnorm == 0.0:
        return 0.0
    if colnorms.all():  # the usual case, without the selection of the nonzero columns
        return float((np.abs(g) / (colnorms * fnorm)).max())
    mask = colnorms != 0.0
    if not mask.any():
        return 0.0
    return float(np.max(np.abs(g[mask]) / (colnorms[mask] * fnorm)))


@dataclass
class RunState:
    """What a loop hands to :func:`finish`."""

    x: Any
    r: Any
    J: Any
    J_at_x: bool
    nit: int
    termination: str
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    last_step: dict[str, Any] = field(default_factory=dict)  # the accepted step that led to x


class Recorder:
    """Trace records, the callback and the progress bar."""

    def __init__(self, oracle: ResidualOracle, callback: Callable[..., Any] | None, progress: bool,
                 max_nfev: int, desc: str) -> None:
        self.oracle = oracle
        self.t0 = time.perf_counter()
        self.trace = Trace()
        self.stop = wrap_callback(callback) if callback is not None else None
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=max_nfev, desc=desc, leave=False)

    def record(self, k: int, cost: float, g: np.ndarray, cosine: float, **extra: Any) -> None:
        rec = {
            "k": k,
            "f": cost,
            "grad_norm": math.sqrt(float(np.dot(g, g))),  # np.linalg.norm's formula, without its dispatch
            "optimality": float(np.abs(g).max()) if g.size else 0.0,
            "cosine": cosine,
            "time": time.perf_counter() - self.t0,
            "nfev": self.oracle.nfev,
            "njev": self.oracle.njev,
            "nfev_jac": self.oracle.nfev_jac,
        }
        rec.update(extra)
        self.trace.append(rec)

    def accepted(self, x: Any, r: Any, cost: float, k: int, **extra: Any) -> bool:
        """Progress bar and callback after an accepted step; True when the callback asks to stop."""
        if self.bar is not None:
            self.bar.n = self.oracle.nfev
            self.bar.set_postfix(cost=f"{cost:.6e}")
            self.bar.refresh()
        if self.stop is None:
            return False
        inter = OptimizeResult(x=self.oracle.output(x), fun=self.oracle.output(r), cost=cost, nit=k, **extra)
        return self.stop(inter)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def finish(oracle: ResidualOracle, rec: Recorder, st: RunState, method: str) -> OptimizeResult:
    """Assemble the :class:`~optlib.OptimizeResult` (evaluating ``J`` at the returned ``x`` when the
    last accepted step was not followed by a Jacobian; that evaluation is counted in ``njev``)."""
    rec.close()
    J = st.J
    r = st.r
    cost = 0.5 * oracle.backend.norm(r) ** 2
    if not st.J_at_x:  # the returned iterate has no record yet: evaluate J there and record it
        J = oracle.jacobian(st.x, st.r)
    with np.errstate(all="ignore"):  # a non-finite J (reported in the message) gives a non-finite grad
        g = J.T @ r
    if not st.J_at_x:
        gh = oracle.backend.host(g)
        rec.record(st.nit, cost, gh, gradient_cosine(gh, oracle.backend.column_norms(J), math.sqrt(2.0 * cost)),
                   **st.last_step)
    status, _, message = TERMINATIONS[st.termination]
    if st.detail:
        message = f"{message} {st.detail}"
    optimality = float(np.max(np.abs(oracle.backend.host(g))))
    return OptimizeResult(
        x=oracle.output(st.x),
        cost=cost,
        fun=oracle.output(r),
        jac=oracle.output(J),
        grad=oracle.output(g),
        optimality=optimality,
        active_mask=np.zeros(oracle.n, dtype=int),
        nfev=oracle.nfev,
        njev=oracle.njev,
        nfev_jac=oracle.nfev_jac,
        nit=st.nit,
        status=status,
        success=status > 0,
        termination=st.termination,
        message=message,
        method=method,
        trace=rec.trace,
        **st.extra,
    )


def start(oracle: ResidualOracle, method: str) -> tuple[Any, Any, float]:
    """Residuals at ``x0``, validated: finite and ``m >= n``."""
    x = oracle.x0
    r = oracle.residuals(x)
    if not oracle.backend.all_finite(r):
        idx = oracle.backend.nonfinite_indices(r)
        shown = ", ".join(map(str, idx[:8])) + (" ..." if len(idx) > 8 else "")
        raise ValueError(
            f"the residuals are not finite at x0 ({len(idx)} of {r.shape[0]} entries: indices {shown}); "
            "start from a point where fun is defined"
        )
    m, n = int(r.shape[0]), oracle.n
    if m < n:
        raise ValueError(
            f"method={method!r} needs at least as many residuals as variables (m >= n), got m = {m} residuals "
            f"for n = {n} variables; add residuals (e.g. a small ridge term), fix variables, or use "
            "scipy.optimize.least_squares(method='trf'), which handles m < n"
        )
    return x, r, oracle.backend.norm(r)
