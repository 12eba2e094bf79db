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

import numpy as np
import torch

from .autodiff import NumpyOracles, TorchOracles, check_hessian_option
from .problem import Problem
from .result import OptimizeResult, check_options, forwards_options, wrap_callback
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


# The scipy methods that handle what optlib does not (scipy.optimize.minimize's documentation).
SCIPY_BOUNDS_METHODS = ("L-BFGS-B", "TNC", "SLSQP", "Powell", "Nelder-Mead", "trust-constr", "COBYLA", "COBYQA")
SCIPY_CONSTRAINTS_METHODS = ("COBYLA", "COBYQA", "SLSQP", "trust-constr")

# method=None: a dense Hessian up to this dimension, Hessian-vector products (CG) above it.
DENSE_DEFAULT_MAX_DIMENSION = 200


def _scipy_problem(fun: Any, x0: Any, args: tuple[Any, ...], jac: Any, hess: Any,
                   hessp: Any) -> tuple[Problem, bool, bool]:
    """Build the problem of a plain callable in scipy's forms; also say whether the user works in
    numpy (numpy in, numpy out) and whether a dense Hessian is available."""
    check_hessian_option(hess)
    if hessp is not None and not callable(hessp):
        raise ValueError(f"hessp must be a callable or None, got {type(hessp).__name__}")
    if not callable(fun):
        raise TypeError(f"fun must be an optlib.Problem or a callable, got {type(fun).__name__}")
    numpy_in = not isinstance(x0, torch.Tensor)
    shape = np.shape(x0)
    if len(shape) != 1 or shape[0] == 0:
        raise ValueError(f"x0 must be a non-empty flat vector, got shape {shape}")
    n = int(shape[0])
    name = getattr(fun, "__name__", "function")
    if jac is None or jac is False:
        if hess is not None or hessp is not None:
            raise ValueError("hess/hessp without jac: pass jac=True or jac=callable with them, "
                             "or leave all three out for a torch function (autodiff)")
        oracles = TorchOracles(fun, args)
        prob = Problem(oracles.value, n, value_and_grad=oracles.value_and_grad, hess=oracles.hessian,
                       hvp=oracles.hvp, name=name)
        return prob, numpy_in, True
    if isinstance(x0, torch.Tensor) and not callable(jac) and jac is not True:
        raise ValueError(f"jac must be True, a callable or None, got {jac!r}")
    np_oracles = NumpyOracles(fun, n, jac, hess=hess, hessp=hessp, args=args)
    prob = Problem(np_oracles.value, n, value_and_grad=np_oracles.value_and_grad,
                   hess=np_oracles.hessian, hvp=np_oracles.hvp, name=name)
    return prob, numpy_in, hess is not None


def _default_method(n: int, dense: bool, options: dict[str, Any]) -> tuple[str, str]:
    """method=None: gradient-regularized Newton; dense curvature for small problems with a Hessian,
    Hessian-vector products solved by CG otherwise. Returns the method and a sentence saying why."""
    if dense and n <= DENSE_DEFAULT_MAX_DIMENSION:
        return "grad-norm-newton", f"method=None chose 'grad-norm-newton' with the dense Hessian (n = {n})"
    options.setdefault("solver", "cg")
    why = f"n = {n} > {DENSE_DEFAULT_MAX_DIMENSION}" if dense else "no dense Hessian given"
    return "grad-norm-newton", f"method=None chose 'grad-norm-newton' with CG on Hessian-vector products ({why})"


def _numpy_result(res: OptimizeResult) -> OptimizeResult:
    """numpy in, numpy out: ``x`` and ``jac`` as float64 arrays, ``fun`` a float."""
    for key in ("x", "jac"):
        if isinstance(res.get(key), torch.Tensor):
            res[key] = res[key].detach().cpu().numpy()
    if isinstance(res.get("fun"), torch.Tensor):
        res["fun"] = float(res["fun"])
    return res


def _numpy_callback(callback: Callable[..., Any]) -> Callable[..., Any]:
    """The user's callback, seeing numpy arrays (scipy's legacy ``callback(xk)`` or
    ``callback(intermediate_result)``)."""
    call = wrap_callback(callback)

    def numpy_callback(intermediate_result: OptimizeResult) -> bool:
        return call(_numpy_result(OptimizeResult(intermediate_result)))

    return numpy_callback


def minimize(
    fun: Problem | Callable[..., Any],
    x0: Any,
    args: tuple[Any, ...] = (),
    method: str | None = None,
    jac: Any = None,
    hess: Any = None,
    hessp: Any = None,
    bounds: Any = None,
    constraints: Any = None,
    tol: float | None = None,
    callback: Callable[..., Any] | None = None,
    options: dict[str, Any] | None = None,
    *,
    progress: bool = False,
    **kwargs: Any,
) -> OptimizeResult:
    """Minimize ``fun`` from ``x0``, with ``scipy.optimize.minimize``'s call forms.

    Parameters
    ----------
    fun : Problem or callable
        An :class:`optlib.Problem`; or a torch function ``fun(x, *args) -> scalar tensor`` of a flat
        tensor, differentiated by :mod:`optlib.autodiff` (one forward pass per point, Hessian-vector
        products through the gradient's graph); or a numpy callable ``fun(x, *args) -> float``
        together with ``jac``.
    x0 : array-like or tensor
        Starting point, a flat vector. A numpy array (or list) gives numpy results (``res.x``,
        ``res.jac``, and the ``x`` a legacy ``callback(xk)`` sees); a tensor gives tensors.
    args : tuple
        Extra arguments passed to ``fun``, ``jac``, ``hess`` and ``hessp``.
    method : str, optional
        One of :func:`methods`. ``None`` picks gradient-regularized Newton (``"grad-norm-newton"``)
        with the dense Hessian when one exists and ``n <= 200``, and with CG on Hessian-vector
        products otherwise; ``res.method`` and ``res.message`` say which.
    jac : bool or callable, optional
        ``True``: ``fun`` returns ``(f, g)``; a callable ``jac(x, *args)``; ``None`` for a torch
        function (autodiff). Numpy objectives need it (no finite-difference gradients).
    hess, hessp : callable, optional
        ``hess(x, *args)`` (an ``(n, n)`` array) and ``hessp(x, p, *args)``. With neither, a numpy
        objective's Hessian-vector products are forward differences of ``jac``. scipy's
        ``"2-point"``/``"3-point"``/``"cs"`` and ``HessianUpdateStrategy`` objects are refused.
    bounds, constraints
        Not supported: a ``ValueError`` names the scipy methods that handle them.
    tol : float, optional
        Shorthand for ``gtol``, the gradient tolerance (a given ``gtol`` takes precedence).
    callback : callable, optional
        ``callback(intermediate_result)`` or the legacy ``callback(xk)``, after each iteration;
        raising ``StopIteration`` or returning ``True`` stops the run.
    options : dict, optional
        The method's options (scipy's form); the same as passing them as keywords.
    progress : bool
        Show a tqdm progress bar.
    **kwargs
        The method's options (:func:`method_options` lists them: ``hessian``, ``B``, ``maxiter``,
        ``gamma0``, ``solver``, ...). ``disp=True`` prints the final message.

    Returns
    -------
    OptimizeResult
        scipy's fields plus ``trace``, ``method`` and the method's counters.

    Raises
    ------
    ValueError
        For an unknown method; for an option the method does not accept, before anything runs, as
        ``Method 'grad-norm-newton' has no option 'gama0'; did you mean 'gamma0'? Accepted options of
        'grad-norm-newton': accept_unverified, adaptive, B, ...``; for a bad value of a shared option
        (:func:`optlib.result.check_options`), naming the option and the value; for ``bounds`` or
        ``constraints``; for ``jac``/``hess`` forms optlib does not support; for an objective whose
        value is not a scalar, or a torch objective that calls numpy inside.
    """
    if bounds is not None:
        raise ValueError("bounds are not supported: optlib's methods are unconstrained. scipy.optimize.minimize "
                         f"handles bounds with {', '.join(SCIPY_BOUNDS_METHODS)}.")
    if constraints is not None and constraints != () and constraints != []:
        raise ValueError("constraints are not supported: optlib's methods are unconstrained. "
                         f"scipy.optimize.minimize handles constraints with {', '.join(SCIPY_CONSTRAINTS_METHODS)}.")
    if isinstance(args, str):
        raise ValueError(f"the third positional argument is args (scipy's order), got the string {args!r}; "
                         "pass the method by keyword: method=...")
    args = args if isinstance(args, tuple) else (args,)
    opts = dict(options or {})
    both = sorted(set(opts) & set(kwargs))
    if both:
        raise ValueError(f"option(s) {', '.join(map(repr, both))} given both in options= and as keywords")
    opts.update(kwargs)
    disp = bool(opts.pop("disp", False))
    if isinstance(fun, Problem):
        if jac is not None or hess is not None or hessp is not None or args:
            raise ValueError("an optlib.Problem carries its own oracles: jac, hess, hessp and args must be left out")
        prob, numpy_in, dense, n = fun, False, True, None
    else:
        prob, numpy_in, dense = _scipy_problem(fun, x0, args, jac, hess, hessp)
        n = prob.n
    chosen = None
    if method is None:
        method, chosen = _default_method(prob.n if n is None else n, dense, opts)
    entry = _entry(method)
    _check_option_names(method, entry, opts)
    if tol is not None:
        if "gtol" not in entry.options:
            raise ValueError(f"tol is minimize's shorthand for gtol, and method {method!r} has no gtol option.")
        opts.setdefault("gtol", check_options(tol=tol)["tol"])
    cb = callback
    if callback is not None and numpy_in:
        cb = _numpy_callback(callback)
    res = entry.fn(prob, x0, callback=cb, progress=progress, **opts)
    res["method"] = method.lower()
    if chosen is not None:
        res["message"] = f"{res.get('message', '')} ({chosen}.)"
    if numpy_in:
        res = _numpy_result(res)
    if disp:
        print(f"{method}: {res['message']} f = {float(res['fun']):.10g}, nit = {res.get('nit')}, "
              f"nfev = {res.get('nfev')}")
    return res


register_method("grad-norm-newton", grad_norm_newton)
register_method("normalized-gradient", normalized_gradient)
register_method("regularized-newton", regularized_newton)
register_method("super-newton", super_newton)
register_method("cubic-newton", cubic_newton)
