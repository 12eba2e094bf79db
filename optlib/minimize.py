"""`minimize(problem, x0, method=..., **options)`: one entry point over a registry of methods."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .problem import Problem, as_problem
from .result import OptimizeResult
from .second_order import cubic_newton, grad_norm_newton, normalized_gradient, regularized_newton, super_newton

_METHODS: dict[str, Callable[..., OptimizeResult]] = {}


def register_method(name: str, fn: Callable[..., OptimizeResult]) -> None:
    """Make ``fn(problem, x0, **options) -> OptimizeResult`` available as ``method=name``."""
    key = name.lower()
    if key in _METHODS and _METHODS[key] is not fn:
        raise ValueError(f"method '{name}' is already registered")
    _METHODS[key] = fn


def methods() -> list[str]:
    """Names accepted by :func:`minimize`."""
    return sorted(_METHODS)


def minimize(
    problem: Problem | Callable[..., Any],
    x0: Any,
    method: str = "grad-norm-newton",
    *,
    callback: Callable[..., Any] | None = None,
    progress: bool = False,
    tol: float | None = None,
    **options: Any,
) -> OptimizeResult:
    """Minimize ``problem`` from ``x0``.

    Parameters
    ----------
    problem : Problem or callable
        An :class:`optlib.Problem`, or a torch function of a flat tensor (wrapped on the fly).
    x0 : array-like
        Starting point, a flat vector of the problem's dimension.
    method : str
        One of :func:`methods`: ``"grad-norm-newton"``, ``"normalized-gradient"``,
        ``"regularized-newton"``, ``"super-newton"``, ``"cubic-newton"``.
    callback : callable, optional
        ``callback(intermediate_result)`` after each iteration (or the legacy ``callback(x)``);
        raising ``StopIteration`` or returning ``True`` stops the run.
    progress : bool
        Show a tqdm progress bar.
    tol : float, optional
        Shorthand for ``gtol``, the dual gradient-norm tolerance.
    **options
        Method options (``hessian``, ``B``, ``maxiter``, ``gamma0``, ``H``, ``M``, ...).

    Returns
    -------
    OptimizeResult
        scipy's fields plus ``trace`` and the method's counters.
    """
    if not isinstance(method, str) or method.lower() not in _METHODS:
        raise ValueError(f"unknown method {method!r}; known methods: {', '.join(methods())}")
    n = None
    if not isinstance(problem, Problem):
        shape = getattr(x0, "shape", None)
        n = int(shape[0]) if shape is not None and len(shape) == 1 else len(x0)
    prob = as_problem(problem, n)
    if tol is not None:
        options.setdefault("gtol", tol)
    return _METHODS[method.lower()](prob, x0, callback=callback, progress=progress, **options)


register_method("grad-norm-newton", grad_norm_newton)
register_method("normalized-gradient", normalized_gradient)
register_method("regularized-newton", regularized_newton)
register_method("super-newton", super_newton)
register_method("cubic-newton", cubic_newton)
