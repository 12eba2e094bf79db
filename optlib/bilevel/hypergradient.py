"""Hypergradient estimators behind one function.

For ``Phi(x) = f(x, y*(x))`` with ``g(x, .)`` strongly convex, the implicit function theorem gives

    grad Phi(x) = grad_x f(x, y*) - grad^2_xy g(x, y*) v*,    grad^2_yy g(x, y*) v* = grad_y f(x, y*)

(e.g. Ghadimi & Wang 2018, eq. (2.3); Ji, Yang & Liang 2021, eq. (2)). Every estimator evaluates the
formula at the ``y`` it is given and differs in how it approximates ``v = H^{-1} b`` with
``H = grad^2_yy g(x, y)``, ``b = grad_y f(x, y)``:

* ``"exact"``: the dense ``H`` (``ny`` Hessian-vector products) and a Cholesky solve; for small problems.
* ``"cg"``: conjugate gradients on Hessian-vector products (Pedregosa 2016, HOAG; Rajeswaran et al.
  2019, iMAML); knobs ``maxiter``, ``tol`` (relative residual), ``reg`` (Tikhonov ``H + reg I``).
  Negative curvature ``p^T H p <= 0`` is an error that reports the measured curvature.
* ``"neumann"``: ``v ~= alpha sum_{q=0}^{Q-1} (I - alpha H)^q b`` (Ghadimi & Wang 2018; StocBiO; the
  BO-REP paper's estimator), truncation error ``(I - alpha H)^Q H^{-1} b``, so
  ``||error|| <= (1 - alpha mu)^Q ||H^{-1} b||`` for ``alpha <= 1/l_g1``; with ``randomized=True`` the
  randomized truncation ``alpha Q prod_{j=1}^{q'} (I - alpha H_j) b``, ``q' ~ Unif{0..Q-1}``, each factor on
  an independent lower batch, unbiased for the truncated sum. Knobs ``steps`` (Q), ``alpha``,
  ``randomized``, ``check_step`` (a power-iteration estimate of ``lambda_max(H)`` refuses ``alpha lambda_max >= 1``
  before running).
* ``"z-iterate"``: ``z <- z - nu (H z - b)``, ``steps`` times per call, warm-started from the caller's
  ``state["z"]`` (SOBA, Dagréou et al. 2022; the BO-REP reference code); the contraction factor is
  ``||I - nu H|| = max(|1 - nu mu|, |1 - nu l_g1|)``.
* ``"unroll"``: reverse-mode through ``K`` gradient steps ``y <- y - lr grad_y g(x, y)`` from ``y``
  (Maclaurin et al. 2015; Franceschi et al. 2017), for comparison; knobs ``steps`` (K) and ``lr``.

Each call returns a :class:`HypergradientEstimate` that states its method, its knobs and diagnostics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .problem import BilevelProblem

ESTIMATORS = ("exact", "cg", "neumann", "z-iterate", "unroll")

KNOBS = {
    "exact": {"reg": 0.0},
    "cg": {"maxiter": 100, "tol": 1e-10, "reg": 0.0},
    "neumann": {"steps": 20, "alpha": None, "randomized": False, "check_step": True},
    "z-iterate": {"nu": 1e-2, "steps": 1},
    "unroll": {"steps": 10, "lr": None},
}


class NegativeCurvatureError(ValueError):
    """The lower level is not strongly convex where the estimator needs it."""


@dataclass
class HypergradientEstimate:
    """``grad``: the estimate of ``grad Phi(x)``; ``v``: the approximate ``H^{-1} grad_y f`` it used
    (``None`` for unrolling); ``method`` and ``knobs``: what ran; ``diagnostics``: residuals, iterations,
    curvature estimates."""

    grad: Tensor
    v: Tensor | None
    method: str
    knobs: dict[str, Any]
    diagnostics: dict[str, Any] = field(default_factory=dict)


def _knobs(method: str, options: dict[str, Any]) -> dict[str, Any]:
    if method not in KNOBS:
        raise ValueError(f"unknown hypergradient method {method!r}; known: {', '.join(ESTIMATORS)}")
    unknown = sorted(set(options) - set(KNOBS[method]))
    if unknown:
        raise ValueError(f"hypergradient method {method!r} has no option(s) {', '.join(map(repr, unknown))}; "
                         f"its options: {', '.join(KNOBS[method])}")
    knobs = {**KNOBS[method], **options}
    for key in ("steps", "maxiter"):
        if key in knobs and (not isinstance(knobs[key], int) or isinstance(knobs[key], bool) or knobs[key] < 1):
            raise ValueError(f"{key} must be an integer >= 1, got {knobs[key]!r}")
    for key in ("tol", "reg", "nu", "alpha", "lr"):
        val = knobs.get(key)
        if val is not None and not (isinstance(val, (int, float)) and math.isfinite(val) and val >= 0):
            raise ValueError(f"{key} must be a finite number >= 0, got {val!r}")
    return knobs


def largest_eigenvalue(problem: BilevelProblem, x: Tensor, y: Tensor, batch: tuple = (), iters: int = 30,
                       seed: int = 0) -> float:
    """Power iteration on ``grad^2_yy g(x, y)`` (a lower estimate of ``lambda_max``; ``iters`` HVPs)."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(problem.ny, generator=gen, dtype=problem.dtype)
    v /= v.norm()
    lam = 0.0
    hvp = problem.hvp_operator(x, y, batch)
    for _ in range(iters):
        w = hvp(v)
        lam = float(v @ w)
        nrm = float(w.norm())
        if nrm == 0.0:
            return 0.0
        v = w / nrm
    return lam


def _cg(problem: BilevelProblem, x: Tensor, y: Tensor, b: Tensor, batch: tuple, knobs: dict[str, Any],
        v0: Tensor | None) -> tuple[Tensor, dict[str, Any]]:
    reg, tol, maxiter = float(knobs["reg"]), float(knobs["tol"]), int(knobs["maxiter"])

    hvp = problem.hvp_operator(x, y, batch)

    def H(v: Tensor) -> Tensor:
        return hvp(v) + reg * v if reg else hvp(v)

    v = torch.zeros_like(b) if v0 is None else v0.clone()
    r = b - H(v) if v0 is not None else b.clone()
    p = r.clone()
    rr = float(r @ r)
    bnorm = float(b.norm())
    it = 0
    while it < maxiter and math.sqrt(rr) > tol * max(bnorm, 1e-300):
        Hp = H(p)
        curv = float(p @ Hp)
        if curv <= 0.0:
            raise NegativeCurvatureError(
                f"CG found non-positive curvature p^T H p / ||p||^2 = {curv / float(p @ p):.3e} in the lower "
                "Hessian: the lower level is not strongly convex here; pass reg > 0 (Tikhonov) to regularize")
        a = rr / curv
        v = v + a * p
        r = r - a * Hp
        rr_new = float(r @ r)
        p = r + (rr_new / rr) * p
        rr = rr_new
        it += 1
    return v, {"iterations": it, "relative_residual": math.sqrt(rr) / max(bnorm, 1e-300)}


def _neumann(problem: BilevelProblem, x: Tensor, y: Tensor, b: Tensor, batch: tuple, knobs: dict[str, Any],
             generator: torch.Generator | None) -> tuple[Tensor, dict[str, Any]]:
    Q, alpha = int(knobs["steps"]), knobs["alpha"]
    diag: dict[str, Any] = {}
    if alpha is None or knobs["check_step"]:
        lam = largest_eigenvalue(problem, x, y, batch)
        diag["lambda_max_estimate"] = lam
        if alpha is None:
            alpha = 1.0 / (1.1 * lam) if lam > 0 else 1.0
            diag["alpha_chosen"] = alpha
        elif alpha * lam >= 1.0:
            raise ValueError(f"Neumann step alpha = {alpha:g} with alpha * lambda_max = {alpha * lam:.3g} >= 1 "
                             f"(lambda_max ~ {lam:.4g} by power iteration): the series diverges; "
                             f"take alpha < {1.0 / lam:.4g}")
    if knobs["randomized"]:
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        q = int(torch.randint(Q, (1,), generator=gen))
        p = b.clone()
        for _ in range(q):  # one independent lower batch per factor (the estimator's unbiasedness needs it)
            fb = (problem.lower_sampler(gen),) if problem.stochastic else batch
            p = p - alpha * problem.hvp_yy(x, y, p, fb)
        diag["truncation_index"] = q
        return alpha * Q * p, {**diag, "alpha": alpha}
    p = b.clone()
    v = b.clone()
    hvp = problem.hvp_operator(x, y, batch)
    for _ in range(Q - 1):
        p = p - alpha * hvp(p)
        v = v + p
    return alpha * v, {**diag, "alpha": alpha}


def hypergradient(
    problem: BilevelProblem,
    x: Any,
    y: Any,
    method: str = "cg",
    *,
    upper_batch: tuple = (),
    lower_batch: tuple = (),
    generator: torch.Generator | None = None,
    state: dict[str, Any] | None = None,
    **options: Any,
) -> HypergradientEstimate:
    """Estimate ``grad Phi(x)`` from the lower point ``y`` with ``method`` (module docstring).

    ``upper_batch``/``lower_batch`` are the batches of a stochastic problem (tuples as
    :meth:`BilevelProblem.batches` returns them). ``state`` carries the z-iterate between calls
    (``state["z"]``) and a CG warm start (``state["v"]``, used when present). Options are the
    method's knobs (``KNOBS``); an unknown one is an error naming the method's options.
    """
    knobs = _knobs(method, options)
    x, y = problem.check_xy(x, y)
    if method == "unroll":
        return _unroll(problem, x, y, upper_batch, lower_batch, knobs)
    with problem.shared_lower_graph(x, y, lower_batch):  # one lower graph for the solve and the cross term
        return _implicit(problem, x, y, method, knobs, upper_batch, lower_batch, generator, state)


def _implicit(problem: BilevelProblem, x: Tensor, y: Tensor, method: str, knobs: dict[str, Any],
              upper_batch: tuple, lower_batch: tuple, generator: torch.Generator | None,
              state: dict[str, Any] | None) -> HypergradientEstimate:
    """The implicit-function estimators ("exact", "cg", "neumann", "z-iterate")."""
    gx, b = problem.upper_grads(x, y, upper_batch)
    diag: dict[str, Any]
    if method == "exact":
        H = problem.lower_hessian(x, y, lower_batch)
        H = H + float(knobs["reg"]) * torch.eye(problem.ny, dtype=H.dtype)
        L, info = torch.linalg.cholesky_ex(0.5 * (H + H.T))
        if int(info) != 0:
            lam_min = float(torch.linalg.eigvalsh(0.5 * (H + H.T))[0])
            raise NegativeCurvatureError(f"the lower Hessian is not positive definite (smallest eigenvalue "
                                         f"{lam_min:.3e}); pass reg > 0 (Tikhonov) to regularize")
        v = torch.cholesky_solve(b[:, None], L)[:, 0]
        diag = {"hvps": problem.ny}
    elif method == "cg":
        v0 = None if state is None else state.get("v")
        v, diag = _cg(problem, x, y, b, lower_batch, knobs, v0)
    elif method == "neumann":
        v, diag = _neumann(problem, x, y, b, lower_batch, knobs, generator)
    else:  # z-iterate
        z = torch.zeros_like(b) if state is None or state.get("z") is None else state["z"]
        nu = float(knobs["nu"])
        hvp = problem.hvp_operator(x, y, lower_batch)
        for _ in range(int(knobs["steps"])):
            z = z - nu * (hvp(z) - b)
        v = z
        if state is not None:
            state["z"] = z
        diag = {}
    if state is not None and method == "cg":
        state["v"] = v
    grad = gx - problem.cross(x, y, v, lower_batch)
    if not bool(torch.isfinite(grad).all()):
        raise FloatingPointError(f"the {method} hypergradient is not finite at this (x, y)")
    return HypergradientEstimate(grad=grad, v=v, method=method, knobs=knobs, diagnostics=diag)


def _unroll(problem: BilevelProblem, x: Tensor, y: Tensor, upper_batch: tuple, lower_batch: tuple,
            knobs: dict[str, Any]) -> HypergradientEstimate:
    K, lr = int(knobs["steps"]), knobs["lr"]
    if lr is None:
        lam = largest_eigenvalue(problem, x, y, lower_batch)
        lr = 1.0 / lam if lam > 0 else 1.0
    xl = x.detach().requires_grad_(True)
    with torch.enable_grad():
        yk = y.detach().requires_grad_(True)
        for _ in range(K):
            val = problem.g(xl, yk, *lower_batch)
            (gy,) = torch.autograd.grad(val, yk, create_graph=True)
            problem.counters.nlower += 1
            yk = yk - lr * gy
        out = problem.f(xl, yk, *upper_batch)
        (grad,) = torch.autograd.grad(out, xl, allow_unused=True)
    problem.counters.nupper += 1
    grad = torch.zeros_like(x) if grad is None else grad.detach()
    if not bool(torch.isfinite(grad).all()):
        raise FloatingPointError("the unrolled hypergradient is not finite at this (x, y)")
    return HypergradientEstimate(grad=grad, v=None, method="unroll", knobs={**knobs, "lr": lr},
                                 diagnostics={"y_final": yk.detach()})
