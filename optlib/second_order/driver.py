"""The loop shared by the regularized Newton family.

Every method here has the same skeleton: at ``x_k`` build the curvature once, then try steps with
a scalar regularization parameter ``sigma`` (a radius ``gamma``, a Lipschitz estimate ``H`` or a
cubic constant ``M``) until one passes the method's acceptance test, moving ``sigma`` up or down.
A :class:`StepRule` holds the method-specific pieces (how ``sigma`` becomes a step, the test, the
search moves); :func:`run` holds the rest: oracles, counters, stopping, the trace, callbacks and
the progress bar.

Never an unverified step: a failed factorization, a non-finite trial value, or a failed test is a
rejected trial. When ``max_inner`` trials are rejected the run stops with status
``INNER_SEARCH_EXHAUSTED`` and keeps ``x_k``, unless ``accept_unverified=True``; then the last
finite trial is taken and flagged ``verified=False`` in the trace. When no trial changed ``f`` by
more than its rounding error, the status is ``ROUNDOFF_FLOOR`` instead: the test cannot be decided
in float64, which is a limit of the arithmetic rather than of the method. If that happens with
``||g||_* <= 10 gtol`` (:data:`~optlib.result.ROUNDOFF_SUCCESS_FACTOR`) the run is a success whose
message says it stopped at the rounding floor near ``gtol``.

The regularized system is solved by Cholesky, by one eigendecomposition per curvature (once per
run for a constant curvature), or matrix-free by truncated CG with forcing terms; see :func:`run`.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..linalg.cg import MatvecCurvature, check_forcing, check_negative_curvature
from ..linalg.regularized import FactorizationError, LowRank, Metric, NonPSDCurvatureError, as_metric
from ..linalg.spectral import SpectralCurvature
from ..problem import Problem
from ..result import (
    CALLBACK_STOP,
    INNER_SEARCH_EXHAUSTED,
    MAXITER,
    NUMERICAL_FAILURE,
    ROUNDOFF_FLOOR,
    ROUNDOFF_SUCCESS_FACTOR,
    ROUNDOFF_SUCCESS_MESSAGE,
    STATUS_MESSAGES,
    SUCCESS,
    OptimizeResult,
    Trace,
    _check_count,
    check_options,
    wrap_callback,
)

Tensor = torch.Tensor

EPS = float(torch.finfo(torch.float64).eps)
# Changes of f below this many units in the last place of f are rounding noise: an acceptance test
# on them can neither pass nor fail meaningfully.
ROUNDOFF_ULPS = 16


@dataclass
class Point:
    """The current iterate and what the rules may read about it."""

    x: Tensor
    f: float
    g: Tensor
    gnorm: float  # dual norm ||g||_*
    H: Any = None  # curvature at x (dense, diagonal, LowRank or None for H = 0)
    metric: Metric = field(default_factory=Metric)
    cache: dict[str, Any] = field(default_factory=dict)  # per-point precomputations of a rule


@dataclass
class Trial:
    """One proposed step: ``d``, the regularization ``lam`` it used, and rule-specific numbers."""

    d: Tensor
    lam: float
    info: dict[str, float] = field(default_factory=dict)


class StepRule(abc.ABC):
    """Method-specific pieces of the loop. ``param`` names ``sigma`` in the trace."""

    param: str = "sigma"
    needs_curvature: bool = True

    def start(self, sigma: float) -> float:
        """``sigma`` at the first trial of an outer iteration, given the last accepted one."""
        return sigma

    @abc.abstractmethod
    def propose(self, pt: Point, sigma: float) -> Trial:
        """The trial step for ``sigma``; raises ``FactorizationError`` when its system is not PD."""

    @abc.abstractmethod
    def accept(self, pt: Point, trial: Trial, f_new: float, g_new: Tensor, gnorm_new: float) -> bool:
        """The method's acceptance test for the trial point."""

    @abc.abstractmethod
    def on_success(self, sigma: float) -> float:
        """``sigma`` after an accepted trial."""

    @abc.abstractmethod
    def on_failure(self, sigma: float) -> float:
        """``sigma`` after a rejected trial."""


def resolve_hessian(problem: Problem, hessian: Any) -> tuple[Callable[[Tensor], Any] | None, bool]:
    """Map the ``hessian=`` option to a function ``x -> curvature`` (``None`` means ``H = 0``).

    Strings: ``"exact"``, ``"gauss-newton"``, ``"diagonal"``, or one of the problem's own
    approximations (``"fisher"``, ``"bohning"``, ...). A callable ``hessian(x)`` may return a dense
    symmetric matrix, a 1-D diagonal, or a :class:`~optlib.linalg.LowRank`. A fixed matrix (a
    tensor or array, dense or 1-D, or a ``LowRank``) is a constant curvature.

    The second return value says whether each value must be validated in full (finite,
    symmetric): yes for user callables and fixed matrices, no for the problem's own curvatures.
    """
    if hessian is None or (isinstance(hessian, str) and hessian in ("none", "zero")):
        return None, False
    if isinstance(hessian, str):
        return problem.curvature(hessian), False
    if isinstance(hessian, LowRank) or hasattr(hessian, "shape"):
        fixed = hessian if isinstance(hessian, (LowRank, Tensor)) else torch.as_tensor(hessian, dtype=torch.float64)
        return (lambda x: fixed), True
    if callable(hessian):
        def counted(x: Tensor) -> Any:
            problem.counters.nhev += 1
            return hessian(x)
        return counted, True
    raise ValueError(
        "hessian must be a name ('exact', 'gauss-newton', 'fisher', 'bohning', 'diagonal', 'none'), "
        f"a callable or a fixed matrix, got {hessian!r}"
    )


def declared_constant(problem: Problem, hessian: Any) -> bool:
    """Whether the curvature is known not to depend on ``x``: a fixed matrix passed as ``hessian=``,
    or a callable (a user's, or one of the problem's named curvatures) carrying ``constant = True``.

    A problem declares a named curvature constant by setting the attribute on the function it
    registers, e.g. ``bohning.constant = True``. Undeclared curvatures are still recognised when they
    return the very same, unmodified tensor at two iterations (see :func:`run`).
    """
    if isinstance(hessian, LowRank) or (hessian is not None and hasattr(hessian, "shape")):
        return True
    if isinstance(hessian, str):
        fn = problem.curvatures.get(hessian) if hessian not in ("exact", "none", "zero") else None
        return bool(getattr(fn, "constant", False))
    return bool(getattr(hessian, "constant", False))


def _same_tensor(value: Any, previous: tuple[Any, int] | None) -> bool:
    """``value`` is the tensor object seen before and has not been modified in place since (torch
    bumps a tensor's ``_version`` on every in-place operation)."""
    return (previous is not None and isinstance(value, Tensor) and value is previous[0]
            and value._version == previous[1])


def check_curvature(H: Any, n: int, full: bool = True) -> Any:
    """Validate a curvature value: right shape and, with ``full``, finite and symmetric.

    Non-finite entries that slip past the cheap check still cannot become a step: the solve's
    result is checked for finiteness on every trial.
    """
    if H is None or isinstance(H, LowRank):
        if isinstance(H, LowRank) and (H.U.ndim != 2 or H.U.shape[0] != n):
            raise ValueError(f"low-rank curvature U must have shape (n, k) with n = {n}, got {tuple(H.U.shape)}")
        return H
    if not (isinstance(H, Tensor) and H.dtype == torch.float64):
        H = torch.as_tensor(H, dtype=torch.float64)
    if not full and H.shape in ((n, n), (n,)):
        return H
    if not bool(torch.isfinite(H).all()):
        raise NonPSDCurvatureError("the curvature matrix has non-finite entries (NaN or inf)")
    if H.ndim == 1:
        if H.shape[0] != n:
            raise ValueError(f"diagonal curvature must have length {n}, got {H.shape[0]}")
        return H
    if H.shape != (n, n):
        raise ValueError(f"curvature matrix must have shape ({n}, {n}), got {tuple(H.shape)}")
    scale = float(H.abs().max()) if H.numel() else 0.0
    if float((H - H.T).abs().max()) > 1e-8 * max(scale, 1e-300):
        raise ValueError("curvature matrix is not symmetric")
    return H


SOLVERS = ("auto", "cholesky", "eigh", "cg")


def matvec_curvature(problem: Problem, hessian: Any, curv: Callable[[Tensor], Any], x: Tensor,
                     validate: bool, **cg: Any) -> MatvecCurvature:
    """The curvature at ``x`` as products only: Hessian-vector products for ``"exact"``, else
    products with the (validated) curvature value. ``cg`` goes to :class:`MatvecCurvature`
    (``forcing``, ``maxiter``, ``negative_curvature``)."""
    if hessian == "exact":
        return MatvecCurvature(lambda v: problem.hvp(x, v), problem.n, **cg)
    H = check_curvature(curv(x), problem.n, full=validate)
    if isinstance(H, LowRank):
        return MatvecCurvature(lambda v: H.U @ ((H.U.T @ v) * (1.0 if H.s is None else H.s)), problem.n, **cg)
    if H.ndim == 1:
        return MatvecCurvature(lambda v: H * v, problem.n, **cg)
    return MatvecCurvature(lambda v: H @ v, problem.n, **cg)


def _record(problem: Problem, k: int, pt: Point, t0: float, base: dict[str, int], **extra: Any) -> dict[str, Any]:
    rec = {"k": k, "f": pt.f, "grad_norm": pt.gnorm, "time": time.perf_counter() - t0}
    counts = problem.counters.as_dict()
    rec.update({name: counts[name] - base[name] for name in counts})
    rec.update(extra)
    return rec


def _eval(problem: Problem, x: Tensor, metric: Metric) -> tuple[float, Tensor, float]:
    """``f``, ``g`` and ``||g||_*``; the norm is NaN or inf exactly when ``g`` is not finite."""
    f, g = problem.value_and_grad(x)
    return float(f), g, metric.dual_norm(g)


def check_start(problem: Problem, x0: Any, metric: Metric) -> tuple[Tensor, float, Tensor, float]:
    """Validate ``x0`` and the oracles there; raise ``ValueError`` naming what is wrong."""
    x = problem.check_x(x0, "x0")
    metric.check_dim(problem.n)
    f, g = problem.value_and_grad(x)
    f = float(f)
    if not math.isfinite(f):
        raise ValueError(f"the objective is not finite at x0 (f(x0) = {f})")
    if g.shape != x.shape:
        raise ValueError(f"the gradient at x0 has shape {tuple(g.shape)}, expected {tuple(x.shape)}")
    gnorm = metric.dual_norm(g)
    if not math.isfinite(gnorm):
        raise ValueError("the gradient is not finite at x0")
    return x, f, g, gnorm


def run(
    problem: Problem,
    x0: Any,
    rule: StepRule,
    sigma0: float,
    *,
    hessian: Any = "exact",
    B: Any = None,
    adaptive: bool = True,
    hessian_every: int | str = 1,
    solver: str = "auto",
    forcing: str | float = "sqrt",
    cg_maxiter: int | None = None,
    negative_curvature: str = "boundary",
    maxiter: int = 1000,
    max_inner: int = 40,
    gtol: float = 1e-8,
    f_target: float | None = None,
    accept_unverified: bool = False,
    callback: Callable[[OptimizeResult], Any] | None = None,
    progress: bool = False,
    method: str = "",
) -> OptimizeResult:
    """Run a regularized Newton method defined by ``rule``; see the module docstring.

    ``hessian_every = m`` evaluates the curvature at iterations 0, m, 2m, ... and keeps it in
    between ("lazy Hessians", Doikov, Chayti & Jaggi, ICML 2023, arXiv:2212.00781;
    ``hessian_every="dimension"`` takes m = n, the update period that paper analyses as the best
    trade-off between Hessian and gradient costs); a stale
    Hessian is one more approximate Hessian in the sense of Semenov, Jaggi & Doikov 2025, and the
    acceptance test still guards every step.

    Solvers of ``(H + lam B) d = -g``:

    * ``"cholesky"`` factors ``H + lam B`` on every trial;
    * ``"eigh"`` eigendecomposes each new curvature once (:class:`~optlib.linalg.SpectralCurvature`)
      so every trial and every reuse costs ``O(n^2)``;
    * ``"auto"`` (default) is ``"cholesky"``, except for a **constant** dense curvature, which is
      eigendecomposed once for the whole run (``nfact = 1``): a fixed matrix passed as ``hessian=``,
      a curvature declared constant (:func:`declared_constant`), or one that returns the very same,
      unmodified tensor at two iterations (recognised at the second evaluation, so the first
      iteration is solved by Cholesky). A constant curvature is never re-validated nor, with
      ``"eigh"``, re-decomposed either;
    * ``"cg"`` never forms a matrix: truncated conjugate gradients on Hessian-vector products (with
      ``hessian="exact"``) or on products with the chosen curvature
      (:class:`~optlib.linalg.MatvecCurvature`). It stops when ``||(H + lam B) d + g||_* <= eta_k
      ||g_k||_*`` with the forcing term ``eta_k = min(1/2, ||g_k||_*^theta)``: ``forcing="sqrt"``
      (``theta = 1/2``, superlinear; Dembo, Eisenstat & Steihaug 1982; Nocedal & Wright 2006, Alg. 7.1),
      ``"gradient"`` (``theta = 1``, quadratic), or a constant in ``(0, 1)`` (linear only);
      ``cg_maxiter`` caps the iterations per solve (default ``2n``). A direction of non-positive
      curvature of ``H + lam B`` gives, with ``negative_curvature="boundary"`` (default), Steihaug's
      step to ``||d|| = ||g||_*/lam`` (the radius ``gamma`` of the gradient-regularized method), and
      with ``"reject"`` a rejected trial like a failed factorization. Truncated CG keeps ``||d|| <=
      ||g||_*/lam`` for PSD ``H`` (see :mod:`optlib.linalg.cg`); the acceptance test verifies
      every step. Each trial's ``cg_iterations``, ``cg_forcing``, ``cg_residual`` and ``cg_exit`` go
      to the trace; ``nhvp`` counts the products.

    Stopping: ``||g||_* <= gtol`` or ``f <= f_target`` is a success. When rounding stops progress
    (no trial of an iteration changes ``f`` by more than 16 ulp) the run stops with
    ``ROUNDOFF_FLOOR``, unless ``||g||_* <= 10 gtol`` (:data:`~optlib.result.ROUNDOFF_SUCCESS_FACTOR`):
    then it is reported as a success whose message says that the rounding floor was reached near
    ``gtol``.

    ``gtol``, ``maxiter``, ``max_inner`` and ``hessian_every`` are checked by
    :func:`optlib.result.check_options` (the check least squares uses too): a negative or NaN
    ``gtol``, a ``maxiter`` that is not an integer ``>= 0`` (``2.5``, ``"10"``, ``True``) or a
    ``max_inner < 1`` raises a ``ValueError`` naming the option and the value; so do a bad
    ``solver``, ``forcing``, ``cg_maxiter`` or ``negative_curvature``.
    """
    if hessian_every == "dimension":
        hessian_every = problem.check_x(x0, "x0").shape[0]
    checked = check_options(gtol=gtol, maxiter=maxiter, max_inner=max_inner, hessian_every=hessian_every)
    gtol, maxiter, max_inner, hessian_every = (checked[k] for k in ("gtol", "maxiter", "max_inner", "hessian_every"))
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; known solvers: {', '.join(SOLVERS)}")
    cg_options = {
        "forcing": check_forcing(forcing),
        "maxiter": None if cg_maxiter is None else _check_count("cg_maxiter", cg_maxiter, 1),
        "negative_curvature": check_negative_curvature(negative_curvature),
    }
    if not sigma0 > 0:
        raise ValueError(f"the initial {rule.param} must be positive, got {sigma0}")
    metric = as_metric(B)
    base = problem.counters.as_dict()
    t0 = time.perf_counter()
    x, f, g, gnorm = check_start(problem, x0, metric)
    curv, validate = resolve_hessian(problem, hessian) if rule.needs_curvature else (None, False)
    constant = curv is not None and declared_constant(problem, hessian)

    pt = Point(x=x, f=f, g=g, gnorm=gnorm, metric=metric)
    trace = Trace()
    trace.append(_record(problem, 0, pt, t0, base, **{rule.param: sigma0}))
    stats = {"ntrials": 0, "nrejected": 0, "nfact": 0, "nfact_failed": 0, "nunverified": 0}
    sigma = sigma0
    status = MAXITER
    message = None

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=maxiter, desc=method or "minimize", leave=False)

    stop_requested = wrap_callback(callback) if callback is not None else None
    H_k = None  # the curvature in use (kept between refreshes when hessian_every > 1)
    seen: tuple[Any, int] | None = None  # (last curvature value, its tensor _version): detects constancy
    k = 0
    while True:
        if gnorm <= gtol or (f_target is not None and f <= f_target):
            status = SUCCESS
            break
        if k >= maxiter:
            status = MAXITER
            break
        # A declared-constant curvature is evaluated (and decomposed) once for the whole run.
        refresh = curv is not None and k % hessian_every == 0 and not (constant and H_k is not None)
        if refresh and solver == "cg":
            H_k = matvec_curvature(problem, hessian, curv, pt.x, validate, **cg_options)
        elif refresh:
            raw = curv(pt.x)
            if _same_tensor(raw, seen):
                # The same unmodified tensor as before: the curvature is constant in fact. Decompose
                # it once (auto) or keep the decomposition we have (eigh; cholesky refactors anyway).
                constant = True
                if solver == "auto" and isinstance(H_k, Tensor) and H_k.ndim == 2:
                    H_k = SpectralCurvature(H_k, metric)
                    stats["nfact"] += 1
            else:
                H_k = check_curvature(raw, problem.n, full=validate)
                spectral = solver == "eigh" or (solver == "auto" and constant and isinstance(H_k, Tensor)
                                                and H_k.ndim == 2)
                if spectral and H_k is not None:
                    H_k = SpectralCurvature(H_k, metric)
                    stats["nfact"] += 1
            seen = (raw, raw._version) if isinstance(raw, Tensor) else None
        pt.H = H_k if curv is not None else None
        pt.cache = {}
        sigma = rule.start(sigma) if adaptive else sigma
        prefactored = isinstance(pt.H, (SpectralCurvature, MatvecCurvature))
        rejections: list[str] = []
        accepted = None  # (trial, x_new, f_new, g_new, gnorm_new, verified)
        last_finite = None
        largest_change = 0.0  # over finite trials: tells an unmeasurable decrease from a real failure
        for _ in range(max_inner if adaptive else 1):
            stats["ntrials"] += 1
            try:
                trial = rule.propose(pt, sigma)
            except FactorizationError as exc:
                stats["nfact"] += 1
                stats["nfact_failed"] += 1
                stats["nrejected"] += 1
                if not adaptive:
                    raise NonPSDCurvatureError(
                        f"iteration {k}: {exc}; with {rule.param} fixed the regularization cannot grow "
                        f"(use the adaptive search or a positive semidefinite curvature)"
                    ) from None
                rejections.append(f"factorization failed: {exc}")
                sigma = rule.on_failure(sigma)
                continue
            stats["nfact"] += int(trial.info.pop("factorizations", int(pt.H is not None and not prefactored)))
            if isinstance(pt.H, MatvecCurvature):
                trial.info.update(pt.H.report)
            x_new = pt.x + trial.d
            f_new, g_new, gnorm_new = _eval(problem, x_new, metric)
            finite = math.isfinite(f_new) and math.isfinite(gnorm_new)
            ok = finite and rule.accept(pt, trial, f_new, g_new, gnorm_new)
            if finite:
                last_finite = (trial, x_new, f_new, g_new, gnorm_new)
                largest_change = max(largest_change, abs(f_new - pt.f))
            if not adaptive:
                if not finite:
                    status, message = NUMERICAL_FAILURE, f"iteration {k}: the objective is not finite at the new point"
                    break
                accepted = (trial, x_new, f_new, g_new, gnorm_new, ok)
                break
            if ok:
                accepted = (trial, x_new, f_new, g_new, gnorm_new, True)
                sigma = rule.on_success(sigma)
                break
            stats["nrejected"] += 1
            rejections.append("non-finite value at the trial point" if not finite else "acceptance test failed")
            sigma = rule.on_failure(sigma)
        if accepted is None and status == NUMERICAL_FAILURE:
            break
        if accepted is None:
            if accept_unverified and last_finite is not None:
                accepted = (*last_finite, False)
            elif last_finite is not None and largest_change <= ROUNDOFF_ULPS * EPS * max(abs(pt.f), 1e-300):
                floor_note = (f"At iteration {k} no trial changed f by more than {largest_change:.1e} "
                              f"(f = {pt.f:.6e}, gradient norm {pt.gnorm:.3e}); x is the last accepted point.")
                if gtol > 0 and pt.gnorm <= ROUNDOFF_SUCCESS_FACTOR * gtol:
                    # Within a small factor of gtol the floor is where the run was asked to go: the
                    # arithmetic, not the method, stops the last factor (scipy's BFGS stops likewise
                    # with "precision loss"); say so rather than report a failure.
                    status = SUCCESS
                    message = ROUNDOFF_SUCCESS_MESSAGE.format(gnorm=pt.gnorm, factor=ROUNDOFF_SUCCESS_FACTOR,
                                                              gtol=gtol) + " " + floor_note
                else:
                    status = ROUNDOFF_FLOOR
                    message = f"{STATUS_MESSAGES[ROUNDOFF_FLOOR]} {floor_note}"
                break
            else:
                status = INNER_SEARCH_EXHAUSTED
                message = (
                    f"{STATUS_MESSAGES[INNER_SEARCH_EXHAUSTED]} At iteration {k}, {len(rejections)} trials were "
                    f"rejected (last: {rejections[-1] if rejections else 'none'}); x is the last accepted point."
                )
                break
        trial, x_new, f_new, g_new, gnorm_new, verified = accepted
        stats["nunverified"] += int(not verified)
        step_norm = metric.norm(trial.d)
        pt = Point(x=x_new, f=f_new, g=g_new, gnorm=gnorm_new, metric=metric)
        x, f, g, gnorm = pt.x, pt.f, pt.g, pt.gnorm
        k += 1
        trace.append(
            _record(
                problem, k, pt, t0, base,
                **{rule.param: sigma, "lam": trial.lam, "step_norm": step_norm, "trials": len(rejections) + 1,
                   "verified": verified, "rejections": rejections, "hessian_updated": refresh, **trial.info},
            )
        )
        if bar is not None:
            bar.update(1)
            bar.set_postfix(f=f"{f:.6e}", grad=f"{gnorm:.2e}")
        if callback is not None:
            inter = OptimizeResult(x=x.clone(), fun=f, jac=g.clone(), nit=k, grad_norm=gnorm)
            if stop_requested(inter):
                status = CALLBACK_STOP
                break
    if bar is not None:
        bar.close()

    counts = problem.counters.as_dict()
    res = OptimizeResult(
        x=x,
        fun=f,
        jac=g,
        grad_norm=gnorm,
        nit=k,
        status=status,
        success=status == SUCCESS,
        message=message or STATUS_MESSAGES[status],
        trace=trace,
        method=method,
        **{name: counts[name] - base[name] for name in counts},
        **stats,
    )
    if not res.success and status == MAXITER:
        res.message = f"{STATUS_MESSAGES[MAXITER]} ({maxiter} iterations; gradient norm {gnorm:.3e} > gtol {gtol:g})"
    return res
