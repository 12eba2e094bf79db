r"""The entry points: :func:`least_squares` (scipy's calling convention) and
:func:`levenberg_marquardt` (an :class:`optlib.Problem` with residuals, through :func:`optlib.minimize`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..problem import Problem
from ..result import OptimizeResult, check_options, forwards_options
from ._common import TERMINATIONS, check_bounds, check_tolerances, check_x_scale, finish
from ._oracle import ResidualOracle
from .gn import ArmijoRule, run_gn
from .lm import TrustRegionRule, check_factor, run_lm

Tensor = torch.Tensor

METHODS = {"lm": "lm", "levenberg-marquardt": "lm", "gn": "gn", "gauss-newton": "gn"}


def least_squares(
    fun: Callable[..., Any],
    x0: Any,
    jac: Callable[..., Any] | str | None = None,
    *,
    method: str = "lm",
    x_scale: Any = None,
    ftol: float = 1e-8,
    xtol: float = 1e-8,
    gtol: float = 1e-8,
    max_nfev: int | None = None,
    bounds: Any = None,
    args: tuple = (),
    kwargs: Mapping[str, Any] | None = None,
    callback: Callable[..., Any] | None = None,
    diff_step: float | None = None,
    loss: str = "linear",
    maxiter: int | None = None,
    rule: TrustRegionRule | ArmijoRule | None = None,
    factor: float | None = None,
    max_nonfinite: int = 10,
    progress: bool = False,
) -> OptimizeResult:
    r"""Minimize :math:`F(x) = \tfrac12\sum_{i=1}^m r_i(x)^2` by Levenberg–Marquardt or Gauss–Newton.

    ``method="lm"``: Moré's trust-region Levenberg–Marquardt (Moré 1978; the algorithm of MINPACK's
    ``lmder``, which ``scipy.optimize.least_squares(method="lm")`` wraps), steps
    :math:`(J^\top J + \lambda D^2)\,p = -J^\top r` with Marquardt scaling
    :math:`D^2 \succeq \operatorname{diag}(J^\top J)` (running maximum of the column norms) and
    :math:`\lambda` set from a trust radius updated by the gain ratio; see
    :mod:`optlib.least_squares.lm`. ``method="gn"``: Gauss–Newton with Armijo backtracking; see
    :mod:`optlib.least_squares.gn`. Both solve their linear systems through an SVD of the scaled
    Jacobian (:mod:`optlib.least_squares.subproblem`), never through the normal equations.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args, **kwargs) -> r``, the residuals, shape ``(m,)`` with ``m >= n``. Receives a
        float64 numpy array, or a float64 tensor on ``x0``'s device when ``x0`` is a tensor or
        ``jac="autodiff"``.
    x0 : array-like or Tensor
        Starting point, shape ``(n,)``. The results (``x``, ``fun``, ``jac``, ``grad``) come back as
        tensors on its device when it is a tensor, as numpy arrays otherwise.
    jac : callable, {"2-point", "3-point", "cs", "autodiff"} or None
        ``jac(x, *args, **kwargs) -> (m, n)`` dense Jacobian, or how to approximate it (see
        :mod:`optlib.least_squares._oracle` for the steps). ``None``: ``"autodiff"``
        (:func:`torch.func.jacfwd`) for tensor input, ``"2-point"`` forward differences otherwise.
    method : {"lm", "gn"}
        Levenberg–Marquardt (default) or Gauss–Newton (``"levenberg-marquardt"``/``"gauss-newton"``
        are accepted too).
    x_scale : None, "jac" or array-like
        ``None``/``"jac"``: Marquardt's Jacobian scaling (scipy's ``lm`` default since 1.16); an array:
        the fixed scaling :math:`D = \operatorname{diag}(1/\texttt{x\_scale})` (``x_scale=1`` is
        Levenberg's unscaled :math:`\lambda I`).
    ftol, xtol, gtol : float
        MINPACK's tests (:mod:`optlib.least_squares.lm`); each must be at least the machine epsilon.
    max_nfev : int, optional
        Bound on residual evaluations (finite-difference evaluations not included); default ``100 n``.
    bounds : None or (lb, ub)
        Only the unconstrained ``(-inf, inf)`` is accepted; real bounds raise a ``ValueError`` that
        names scipy's ``'trf'``/``'dogbox'``.
    args, kwargs
        Extra arguments of ``fun`` and ``jac``.
    callback : callable, optional
        ``callback(intermediate_result)`` (or the legacy ``callback(x)``) after each accepted step;
        the result has ``x``, ``fun``, ``cost``, ``nit`` and the step's parameters. Returning ``True``
        or raising ``StopIteration`` stops the run.
    diff_step : float, optional
        Relative finite-difference step (replaces :math:`\sqrt\varepsilon` or :math:`\varepsilon^{1/3}`).
    loss : "linear"
        Only the plain sum of squares (robust losses are not implemented: use scipy's ``'trf'``).
    maxiter : int, optional
        Bound on accepted iterations (an optlib extension; scipy has none).
    rule : TrustRegionRule or ArmijoRule, optional
        The method's update rules (for variants and tests); defaults to the published ones.
    factor : float, optional
        ``method="lm"`` only: the initial step bound :math:`\Delta_0 = \texttt{factor}\cdot\|D_0x_0\|`
        (MINPACK's ``factor``, as in :func:`scipy.optimize.leastsq`; positive, MINPACK recommends
        :math:`(0.1, 100)`). ``None``: 100, MINPACK's default and the value
        ``scipy.optimize.least_squares(method="lm")`` uses. ``factor=1`` is the variant for starts far from
        the solution: it keeps the first step from carrying a parameter whose Jacobian column is small at
        ``x0`` onto a plateau where that column underflows and the run stalls (NIST's BoxBOD from start 1;
        see "Initial step bound" in :mod:`optlib.least_squares.lm`). Not combined with ``rule`` (give
        ``TrustRegionRule(factor=...)`` there instead).
    max_nonfinite : int
        Levenberg–Marquardt stops with ``success=False`` after this many consecutive trial points with
        non-finite residuals.
    progress : bool
        Show a tqdm progress bar over function evaluations.

    Returns
    -------
    OptimizeResult
        ``x``; ``cost`` :math:`=\tfrac12\|r(x)\|^2`; ``fun`` (residuals); ``jac``; ``grad``
        :math:`=J^\top r`; ``optimality`` :math:`=\|J^\top r\|_\infty`; ``active_mask`` (zeros);
        ``nfev``, ``njev`` (Jacobians, including the one at the returned ``x`` when the last accepted
        step was not followed by one, which scipy's ``lm`` leaves out) and ``nfev_jac``
        (finite-difference evaluations); ``nit`` (accepted steps); ``status``, scipy's codes
        (:func:`scipy.optimize.least_squares`): 1 ``gtol``, 2 ``ftol``, 3 ``xtol``, 4 ``ftol`` and
        ``xtol``, 0 ``max_nfev`` reached (also ``maxiter``, optlib's extension), -2 stopped by the callback;
        and two failures scipy's ``lm`` does not report, -3 non-finite residuals or Jacobian and -4
        Gauss–Newton's line search exhausted (scipy's -1, improper input, is a ``ValueError`` here);
        ``success`` is ``status > 0``, as in scipy; ``termination`` (``"gtol"``, ``"ftol"``, ``"xtol"``, ``"ftol+xtol"``, ``"max_nfev"``,
        ``"maxiter"``, ``"callback"``, ``"nonfinite"``, ``"line_search"``); ``message``;
        ``success``; ``method``; ``trace`` (one record per accepted iterate: ``k``, ``f`` (the cost),
        ``grad_norm``, ``optimality``, ``cosine`` (the ``gtol`` quantity), ``nfev``, ``njev``, ``time``
        and, for ``lm``, the accepted step's ``lam``, ``radius`` (the :math:`\Delta` it was computed for),
        ``delta`` (the radius after the update), ``ratio``, ``step_norm`` (:math:`\|Dp\|`), ``trials``; for
        ``gn``, ``t``, ``step_norm``, ``trials``).

    Raises
    ------
    ValueError
        Unknown ``method``/``jac``/``loss``; bounds; ``m < n``; a Jacobian of the wrong shape;
        residuals that are not finite at ``x0``; tolerances that are NaN, not finite or below the machine
        epsilon; ``max_nfev``, ``max_nonfinite`` (``>= 1``) or ``maxiter`` (``>= 0``) that are not such
        integers (``2.5``, ``"10"``, ``True``; checked by :func:`optlib.result.check_options`); a ``factor``
        that is not positive and finite, or given with ``method="gn"`` or together with a ``rule``.

    Notes
    -----
    Non-finite residuals at a later trial point make that trial fail (the step shrinks); the run
    ends with ``success=False``, the iteration and the reason in ``message`` when this persists
    (``max_nonfinite`` trials for ``lm``, a whole line search for ``gn``) or when the Jacobian is
    not finite.
    """
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise ValueError(
            f"unknown method {method!r}; known methods: 'lm' (Levenberg–Marquardt), 'gn' (Gauss–Newton)"
        )
    meth = METHODS[method.lower()]
    if loss != "linear":
        raise ValueError(
            f"loss={loss!r} is not supported: only 'linear' (the plain sum of squares); use "
            "scipy.optimize.least_squares(method='trf') for robust losses"
        )
    ftol, xtol, gtol = check_tolerances(ftol, xtol, gtol)  # the options first, before any evaluation of fun
    counts = check_options(max_nfev=max_nfev, maxiter=maxiter, max_nonfinite=max_nonfinite)
    max_nfev, maxiter, max_nonfinite = counts["max_nfev"], counts["maxiter"], counts["max_nonfinite"]
    if factor is not None:
        if meth != "lm":
            raise ValueError(
                "factor (the initial step bound) is an option of method 'lm' (Levenberg–Marquardt); "
                "method 'gn' (Gauss–Newton) has no trust region"
            )
        factor = check_factor(factor)
    oracle = ResidualOracle(fun, x0, jac, args=args, kwargs=kwargs, diff_step=diff_step)
    n = oracle.n
    check_bounds(bounds, n, meth)
    xs = check_x_scale(x_scale, n)
    if max_nfev is None:
        max_nfev = 100 * n
    common = dict(x_scale=xs, ftol=ftol, xtol=xtol, gtol=gtol, max_nfev=max_nfev, maxiter=maxiter,
                  callback=callback, progress=progress)
    if meth == "lm":
        if rule is not None and not isinstance(rule, TrustRegionRule):
            raise TypeError(f"method 'lm' takes a TrustRegionRule, got {type(rule).__name__}")
        if factor is not None:
            if rule is not None:
                raise ValueError(
                    "give the initial step bound either as factor= or in the rule (TrustRegionRule(factor=...)), "
                    "not both"
                )
            rule = TrustRegionRule(factor=factor)
        state, rec = run_lm(oracle, rule=rule, max_nonfinite=max_nonfinite, **common)
    else:
        if rule is not None and not isinstance(rule, ArmijoRule):
            raise TypeError(f"method 'gn' takes an ArmijoRule, got {type(rule).__name__}")
        state, rec = run_gn(oracle, rule=rule, **common)
    return finish(oracle, rec, state, meth)


# ------------------------------------------------------------------------------------ optlib.minimize
def _outer_scale(problem: Problem, u0: Tensor) -> float:
    """``c`` with ``outer(u) = (c/2)||u||^2``, checked at two residual vectors; ``ValueError`` otherwise."""
    outer = problem._outer
    if getattr(problem, "power", None) == 2.0 and getattr(problem, "scale", None) is not None:
        return float(problem.scale)
    probe = torch.linspace(0.5, 1.5, u0.shape[0], dtype=u0.dtype, device=u0.device)
    points = [u0, 2.0 * u0 + probe] if bool((u0 != 0).any()) else [probe, -2.0 * probe]
    scales = []
    with torch.no_grad():
        for u in points:
            sq = float(torch.dot(u, u))
            scales.append(2.0 * float(outer(u)) / sq)
    c = scales[0]
    if not (c > 0 and abs(scales[1] - c) <= 1e-10 * c):
        raise ValueError(
            f"method 'levenberg-marquardt' minimizes (c/2)||u(x)||^2, but problem '{problem.name}' has an outer "
            f"function that is not a positive multiple of ||u||^2 (outer/(||u||^2/2) = {scales[0]:.6g} and "
            f"{scales[1]:.6g} at two points); use a method of the regularized Newton family "
            "(e.g. hessian='gauss-newton')"
        )
    return c


@forwards_options(least_squares, fixed=("method", "jac", "args", "kwargs", "bounds"))
def levenberg_marquardt(
    problem: Problem,
    x0: Any,
    *,
    callback: Callable[..., Any] | None = None,
    progress: bool = False,
    **options: Any,
) -> OptimizeResult:
    r"""Levenberg–Marquardt on an :class:`optlib.Problem` with residuals: ``minimize(problem, x0,
    method="levenberg-marquardt", **options)``.

    The problem must have the structure :math:`f(x) = \tfrac c2\|u(x)\|^2` (``residuals`` and an
    ``outer`` that is a positive multiple of :math:`\|u\|^2`); the minimizers are those of
    :math:`\tfrac12\|u\|^2`, which :func:`least_squares` minimizes with the problem's residual and
    Jacobian oracles (counted as ``nres``/``njac``). ``options`` are :func:`least_squares`'s (``ftol``,
    ``xtol``, ``gtol``, ``max_nfev``, ``x_scale``, ``maxiter``, ``rule``, ``factor``, ...).

    Returns
    -------
    OptimizeResult
        As the other methods of :func:`optlib.minimize`: ``x`` (tensor), ``fun`` :math:`= f(x)`,
        ``jac`` :math:`=\nabla f(x) = cJ^\top u`, ``grad_norm``, ``nit``, ``status`` (optlib's codes of
        :mod:`optlib.result`, not scipy's: the ``gtol``, ``ftol``, ``xtol`` and ``ftol+xtol`` terminations
        are ``SUCCESS`` (0); ``max_nfev`` and ``maxiter`` are ``MAXITER`` (1); the callback is
        ``CALLBACK_STOP`` (2); non-finite residuals or Jacobian are ``NUMERICAL_FAILURE`` (4); the
        ``termination`` field says which test ended the run), ``success``,
        ``message``, ``trace`` (``f`` is the objective :math:`f`; ``nres``/``njac`` count oracle
        calls) and the problem's counters; plus ``residuals``, ``residual_jac``, ``cost``
        :math:`=\tfrac12\|u\|^2`, ``termination``.
    """
    if not isinstance(problem, Problem) or not problem.has_residuals:
        name = getattr(problem, "name", type(problem).__name__)
        raise ValueError(
            f"method 'levenberg-marquardt' needs an optlib.Problem with residuals (f = outer(residuals(x))); "
            f"'{name}' has none: build it with residuals= and outer=, or call optlib.least_squares.least_squares "
            "with a residual function"
        )
    for key in ("method", "jac", "args", "kwargs", "bounds"):
        if key in options:
            raise ValueError(f"option {key!r} is fixed by the problem for method 'levenberg-marquardt'")
    x = problem.check_x(x0, "x0")
    base = problem.counters.as_dict()
    with torch.no_grad():
        c = _outer_scale(problem, problem._residuals(x))
    res = least_squares(problem.residuals, x, jac=problem.jacobian, method="lm", callback=callback,
                        progress=progress, **options)
    grad = c * res.grad
    counts = problem.counters.as_dict()
    for rec in res.trace:
        rec["f"] *= c
        rec["grad_norm"] *= c
        rec["optimality"] *= c
        rec["nres"] = rec.pop("nfev")
        rec["njac"] = rec.pop("njev")
    out = OptimizeResult(
        x=res.x,
        fun=c * res.cost,
        jac=grad,
        grad_norm=float(torch.linalg.vector_norm(grad)),
        nit=res.nit,
        status=TERMINATIONS[res.termination][1],
        success=res.success,
        message=res.message,
        termination=res.termination,
        trace=res.trace,
        method="levenberg-marquardt",
        residuals=res.fun,
        residual_jac=res.jac,
        cost=res.cost,
        **{name: counts[name] - base[name] for name in counts},
    )
    return out
