"""`minimize(problem, x0, method=..., **options)`: one entry point over a registry of methods.

Every method, of every family (the regularized Newton family of :mod:`optlib.second_order`,
Levenberg–Marquardt of :mod:`optlib.least_squares`), is added by :func:`register_method`, which
records the options the method accepts. They are read off the method's signature
(:func:`inspect.signature`: its keyword parameters after ``problem, x0``), so the signature is the one
list of options; a method that passes ``**options`` on to another function declares so with
:func:`optlib.result.forwards_options`, and the options of that function join its own.
:func:`minimize` refuses an option the method does not accept before the run starts, naming it,
suggesting the closest accepted name and listing them all.

This module is ``optlib.dispatch``; the package exports :func:`minimize`, :func:`methods` and
:func:`register_method` as ``optlib.minimize``, ``optlib.methods`` and ``optlib.register_method``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from .problem import Problem, as_problem
from .result import OptimizeResult, check_options, forwards_options
from .second_order import cubic_newton, grad_norm_newton, normalized_gradient, regularized_newton, super_newton

__all__ = ["forwards_options", "method_options", "methods", "minimize", "register_method"]

# The keywords minimize passes to every method besides the user's options.
DRIVER_KEYWORDS = ("callback", "progress")


class _Entry:
    """A registered method: the function, the options it accepts, the options it sets itself."""

    __slots__ = ("fn", "options", "fixed")

    def __init__(self, fn: Callable[..., OptimizeResult], options: frozenset[str], fixed: frozenset[str]) -> None:
        self.fn = fn
        self.options = options
        self.fixed = fixed


_METHODS: dict[str, _Entry] = {}


def _signature_options(name: str, fn: Callable[..., Any]) -> frozenset[str]:
    """The keyword parameters of ``fn`` after its first two (``problem, x0``)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        raise ValueError(
            f"method '{name}': the signature of {fn!r} cannot be read, so its options are unknown; "
            "pass them to register_method as options=[...]."
        ) from None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise ValueError(
            f"method '{name}': {getattr(fn, '__qualname__', fn)!r} must take (problem, x0, **options), "
            f"but its signature is {inspect.signature(fn)}."
        )
    if any(p.kind is p.VAR_KEYWORD for p in params):
        raise ValueError(
            f"method '{name}': {getattr(fn, '__qualname__', fn)} takes **options, so the options it accepts "
            "cannot be read from its signature; list them as keyword-only parameters, declare where they go "
            "with optlib.dispatch.forwards_options(target), or pass them to register_method as options=[...]."
        )
    skip = {p.name for p in positional[:2]}
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(p.name for p in params if p.kind in keyword and p.name not in skip)


def register_method(name: str, fn: Callable[..., OptimizeResult], *, options: Iterable[str] | None = None) -> None:
    """Make ``fn(problem, x0, *, callback, progress, **options) -> OptimizeResult`` available as ``method=name``.

    Parameters
    ----------
    name : str
        The method's name (case-insensitive).
    fn : callable
        The method. :func:`minimize` calls it as ``fn(problem, x0, callback=..., progress=...,
        **options)``.
    options : iterable of str, optional
        The option names ``fn`` accepts. By default they are read from its signature: the keyword
        parameters after ``problem, x0`` (for a function decorated with
        :func:`~optlib.result.forwards_options`, its own and those of the function it forwards to).
        Give them explicitly for a function whose signature ends in ``**options`` without such a
        declaration; ``callback`` and ``progress`` are always accepted.

    Raises
    ------
    ValueError
        When ``name`` is already registered for another function, or when the options cannot be
        read from the signature (it ends in undeclared ``**options``) and none are given, or when
        ``fn`` does not accept ``callback`` and ``progress``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a method name must be a non-empty string, got {name!r}.")
    key = name.lower()
    if key in _METHODS and _METHODS[key].fn is not fn:
        raise ValueError(f"method '{name}' is already registered for another function.")
    if options is None:
        accepted = _signature_options(name, fn)
        missing = [k for k in DRIVER_KEYWORDS if k not in accepted]
        if missing:
            raise ValueError(
                f"method '{name}': minimize calls it with {' and '.join(DRIVER_KEYWORDS)}=..., but its signature "
                f"{inspect.signature(fn)} has no {', '.join(missing)}."
            )
    else:
        if isinstance(options, str):
            raise ValueError(f"method '{name}': options must be a collection of names, not the string {options!r}.")
        accepted = frozenset(options) | frozenset(DRIVER_KEYWORDS)
        bad = sorted(repr(o) for o in accepted if not (isinstance(o, str) and o.isidentifier()))
        if bad:
            raise ValueError(f"method '{name}': option names must be identifiers, got {', '.join(bad)}.")
    _METHODS[key] = _Entry(fn, accepted, frozenset(getattr(fn, "__fixed_options__", ())))


def methods() -> list[str]:
    """Names accepted by :func:`minimize`."""
    return sorted(_METHODS)


def _entry(method: Any) -> _Entry:
    if not isinstance(method, str) or method.lower() not in _METHODS:
        raise ValueError(f"unknown method {method!r}; known methods: {', '.join(methods())}")
    return _METHODS[method.lower()]


def method_options(method: str) -> list[str]:
    """The options ``minimize(..., method=method, **options)`` accepts, sorted (``tol`` included
    where the method has ``gtol``, for which it is :func:`minimize`'s shorthand)."""
    accepted = set(_entry(method).options)
    if "gtol" in accepted:
        accepted.add("tol")
    return sorted(accepted, key=lambda s: (s.lower(), s))


def _check_option_names(method: str, entry: _Entry, given: Iterable[str]) -> None:
    """Raise ``ValueError`` for options ``method`` does not accept: each named, with the closest
    accepted name when one is close (:func:`difflib.get_close_matches`), and the accepted list."""
    unknown = [k for k in given if k not in entry.options]
    if not unknown:
        return
    accepted = method_options(method)
    by_lower = {a.lower(): a for a in accepted}
    sentences = []
    for k in unknown:
        if k in entry.fixed:
            sentences.append(f"Method {method!r} sets option {k!r} itself; it cannot be given.")
            continue
        close = difflib.get_close_matches(k.lower(), list(by_lower), n=1)
        hint = f"; did you mean {by_lower[close[0]]!r}?" if close else "."
        sentences.append(f"Method {method!r} has no option {k!r}{hint}")
    sentences.append(f"Accepted options of {method!r}: {', '.join(accepted)}.")
    raise ValueError(" ".join(sentences))


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
        ``"regularized-newton"``, ``"super-newton"``, ``"cubic-newton"``, ``"levenberg-marquardt"``.
    callback : callable, optional
        ``callback(intermediate_result)`` after each iteration (or the legacy ``callback(x)``);
        raising ``StopIteration`` or returning ``True`` stops the run.
    progress : bool
        Show a tqdm progress bar.
    tol : float, optional
        Shorthand for ``gtol``, the method's gradient tolerance (a given ``gtol`` takes precedence).
    **options
        The method's options (:func:`method_options` lists them: ``hessian``, ``B``, ``maxiter``,
        ``gamma0``, ``H``, ``M``, ...).

    Returns
    -------
    OptimizeResult
        scipy's fields plus ``trace`` and the method's counters.

    Raises
    ------
    ValueError
        For an unknown method; for an option the method does not accept, before anything runs, as
        ``Method 'grad-norm-newton' has no option 'gama0'; did you mean 'gamma0'? Accepted options of
        'grad-norm-newton': accept_unverified, adaptive, B, ...``; for a bad value of a shared option
        (:func:`optlib.result.check_options`: ``tol``/``gtol`` negative or NaN, ``maxiter`` not an
        integer ``>= 0``, ``max_inner < 1``, ...), naming the option and the value; and whatever the
        method raises for its own options.
    """
    entry = _entry(method)
    _check_option_names(method, entry, options)
    if tol is not None:
        if "gtol" not in entry.options:
            raise ValueError(f"tol is minimize's shorthand for gtol, and method {method!r} has no gtol option.")
        options.setdefault("gtol", check_options(tol=tol)["tol"])
    n = None
    if not isinstance(problem, Problem):
        shape = getattr(x0, "shape", None)
        n = int(shape[0]) if shape is not None and len(shape) == 1 else len(x0)
    prob = as_problem(problem, n)
    return entry.fn(prob, x0, callback=callback, progress=progress, **options)


register_method("grad-norm-newton", grad_norm_newton)
register_method("normalized-gradient", normalized_gradient)
register_method("regularized-newton", regularized_newton)
register_method("super-newton", super_newton)
register_method("cubic-newton", cubic_newton)
