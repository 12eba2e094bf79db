"""The theorem tables: every statement of :mod:`optlib.theory.regularized_newton` run on its problems, and
:data:`FAMILY_TABLES`, every family's table under one name.

This module is the top of :mod:`optlib.theory`: it imports the checkers and the problem library
(:mod:`optlib.problems`), and nothing in the package imports it except ``__init__`` and ``__main__``.
Every problem comes from :mod:`optlib.problems` (exact constants, closed-form or independently certified
optima); the parameters chosen here are the statements' instances, shared with ``tests/theorems``:

* :func:`rosenbrock_instance` - Rosenbrock's function from Rosenbrock's start ``(-1.2, 1)``;
* :func:`chebyshev_instance` - Nesterov's Chebyshev-Rosenbrock function
  ``(x_1 - 1)^2/4 + sum_i (x_{i+1} - 2 x_i^2 + 1)^2`` (the library's chain with ``p = 2, scale = 2``);
* :func:`logistic_instance` - l2-regularized logistic regression, 400 samples in dimension 10, feature
  scales log-spaced from 1 down to ``1/cond`` (so ``cond(A)`` is about ``cond``), labels from a planted
  vector of norm 3 in the unscaled features (:func:`optlib.problems.synthetic_logistic`);
* :func:`quadratic_instance` - the quadratic with spectrum ``(1, 2, 5, 10, 30)`` and a random start of
  scale 3;
* :func:`optlib.problems.pseudo_huber`, :func:`optlib.problems.lse_cubic`,
  :func:`optlib.problems.cubic_lipschitz` - convex, with derived Hessian Lipschitz constants.

Every check is tagged with ``details["problem"]`` (the problem's name) and ``details["method"]``.
``python -m optlib.theory [--full]`` prints the table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..linalg.cubic import CubicSubproblem
from ..linalg.regularized import Metric
from ..problem import Problem
from ..problems import (
    chebyshev_rosenbrock,
    cubic_lipschitz,
    logistic_regression,
    lse_cubic,
    nonlinear_equations,
    pseudo_huber,
    quadratic,
    quadratic_from_matrix,
    rosenbrock,
    rosenbrock_nle,
    synthetic_logistic,
)
from ..second_order import grad_norm_newton, regularized_newton
from ..second_order.cubic_newton import CubicRule
from ..second_order.driver import StepRule
from ..second_order.driver import run as run_rule
from ..second_order.grad_norm_newton import GradNormRule
from ..second_order.super_newton import SuperUniversalRule
from .bilevel import bilevel_table
from .common import TheoremCheck
from .curvature import curvature_table
from .drift import drift_table
from .drop_muon import drop_muon_table
from .inexact_newton import InexactTrialRecorder, cg_residual_rule, forcing_vanishes, hvp_accounting
from .least_squares import least_squares_table
from .regularized_newton import (
    TrialRecorder,
    acceptance_both_ways,
    acceptance_invariant,
    collect_iterates,
    condition_sweep,
    cubic_rate,
    cubic_steps,
    cubic_subproblem,
    iterates_match,
    k2_rate,
    linear_rate,
    local_superlinear,
    mishchenko_rate,
    nonconvex_grad_rate,
    normalized_gradient_reference,
    regularization_formula,
    search_overhead,
    search_replay,
    step_within_radius,
    super_universal_linear_rate,
)
from .unlearning import unlearning_table

GAMMA_MIN = 1e-9
M_MIN = 1e-10
H_MIN = 1e-5
SWEEP_CONDS = (1e1, 1e2, 1e3, 1e4)
SWEEP_REG = 1e-4

ROSENBROCK_START = (-1.2, 1.0)
CHEBYSHEV_SCALE = 2.0
LOGISTIC_SAMPLES, LOGISTIC_DIM, LOGISTIC_SIGNAL = 400, 10, 3.0
QUADRATIC_EIGENVALUES = (1.0, 2.0, 5.0, 10.0, 30.0)
QUADRATIC_START_SCALE = 3.0


# ------------------------------------------------------------------------------------------------
# The statements' instances (all built by optlib.problems)
# ------------------------------------------------------------------------------------------------
def rosenbrock_instance(x0: Any = ROSENBROCK_START) -> Problem:
    """:func:`optlib.problems.rosenbrock` (``a = 1, b = 100``) from ``x0``, by default Rosenbrock's ``(-1.2, 1)``."""
    return rosenbrock(x0=x0)


def chebyshev_instance(n: int) -> Problem:
    """Nesterov's Chebyshev-Rosenbrock function in dimension ``n`` (:func:`optlib.problems.chebyshev_rosenbrock`
    with ``p = 2`` and ``scale = 2``); ``x0 = (-1, 1, ..., 1)``, ``x* = 1``, ``f* = 0``."""
    return chebyshev_rosenbrock(n, p=2, scale=CHEBYSHEV_SCALE)


def logistic_instance(cond: float, reg: float, seed: int = 0) -> Problem:
    """Logistic regression with ``cond(A)`` about ``cond`` and regularization ``reg``
    (:func:`optlib.problems.synthetic_logistic`: 400 samples, dimension 10, scales from 1 down to ``1/cond``,
    labels planted with signal 3 in the unscaled features); ``x0 = 0``, certified ``f*``."""
    return synthetic_logistic(LOGISTIC_SAMPLES, LOGISTIC_DIM, scale_min=1.0 / cond, scale_max=1.0, seed=seed,
                              reg=reg, descending=True, signal=LOGISTIC_SIGNAL)


def quadratic_instance(seed: int = 0) -> Problem:
    """:func:`optlib.problems.quadratic` with spectrum ``(1, 2, 5, 10, 30)`` and a random start of scale 3."""
    return quadratic(QUADRATIC_EIGENVALUES, seed=seed, x0_scale=QUADRATIC_START_SCALE)


def tag(check: TheoremCheck, problem: str, method: str, **extra: Any) -> TheoremCheck:
    """A copy of ``check`` with ``problem``/``method`` (and ``extra``) added to its details."""
    return dataclasses.replace(check, details={**dict(check.details), "problem": problem, "method": method, **extra})


def recorded_grad_norm_run(problem: Problem, rule: GradNormRule | None = None, gamma0: float = 1.0,
                           **options: Any) -> tuple[Any, TrialRecorder]:
    """``grad_norm_newton`` through a :class:`TrialRecorder` (same loop, every trial logged)."""
    rec = TrialRecorder(rule or GradNormRule(GAMMA_MIN))
    res = run_rule(problem, problem.x0, rec, gamma0, method="grad-norm-newton", **options)
    return res, rec


# ------------------------------------------------------------------------------------------------
def invariant_checks(quick: bool) -> list[TheoremCheck]:
    """Statements 1 and 2 (any curvature) and 1.1 (PSD curvature only) on non-convex and convex problems."""
    out = []
    problems = [(rosenbrock_instance(), "exact"), (logistic_instance(100.0, SWEEP_REG), "bohning"),
                (pseudo_huber(), "exact")]
    if not quick:
        problems += [(chebyshev_instance(3), "exact"), (lse_cubic(), "exact"),
                     (logistic_instance(100.0, SWEEP_REG), "exact")]
    for p, hess in problems:
        res, rec = recorded_grad_norm_run(p, hessian=hess, maxiter=2000, gtol=1e-10)
        m = f"grad-norm-newton ({hess} H)"
        out.append(tag(acceptance_invariant(res, p.f_star), p.name, m))
        if p.constants.convex:  # the statement needs H PSD: exact Hessians of convex f, or the Böhning bound
            out.append(tag(step_within_radius(rec), p.name, m))
        out.append(tag(search_overhead(res, trials=rec, gamma_min=GAMMA_MIN), p.name, m))
        if res.nrejected > 0:  # both directions need a rejected trial (pseudo_huber's run rejects none)
            out.append(tag(acceptance_both_ways(rec, "grad-norm"), p.name, m))
            out.append(tag(search_replay(rec, "grad-norm", floor=GAMMA_MIN), p.name, m))
            out.append(tag(regularization_formula(rec, "grad-norm"), p.name, m))
    return out


def iterations_to(problem: Problem, hessian: Any, eps: float, maxiter: int) -> tuple[int, bool]:
    """Iterations of ``grad_norm_newton`` until ``f - f* <= eps``, and whether it got there."""
    res = grad_norm_newton(problem, problem.x0, hessian=hessian, maxiter=maxiter, gtol=0.0,
                           f_target=problem.f_star + eps)
    return int(res.nit), bool(res.success)


def linear_rate_checks(quick: bool) -> list[TheoremCheck]:
    """Statement 3: the Böhning run's tail fit and the condition sweep."""
    out = []
    seeds = (0,) if quick else (0, 1, 2)
    for seed in seeds:
        p = logistic_instance(100.0, SWEEP_REG, seed)
        res = grad_norm_newton(p, p.x0, hessian="bohning", maxiter=5000, gtol=0.0, f_target=p.f_star + 1e-13)
        out.append(tag(linear_rate(res, p.f_star), p.name, "grad-norm-newton (bohning H)"))
        counts = [iterations_to(logistic_instance(c, SWEEP_REG, seed), "bohning", 1e-8, 5000) for c in SWEEP_CONDS]
        sweep = (f"logreg-synthetic[n={LOGISTIC_SAMPLES},d={LOGISTIC_DIM},scale_min=1/cond,scale_max=1.0,seed={seed},"
                 f"reg={SWEEP_REG:g},descending=True,signal={LOGISTIC_SIGNAL}], cond = 1e1..1e4")
        out.append(tag(condition_sweep(SWEEP_CONDS, [n for n, _ in counts], reached=[ok for _, ok in counts]),
                       sweep, "grad-norm-newton (bohning H)"))
    return out


def k2_checks(quick: bool) -> list[TheoremCheck]:
    """Statement 4 for the adaptive method (exact H; spec's C = 100, constant unverified) and Mishchenko's
    method with fixed H = L2 (derived one-step bound and step lemmas, :func:`mishchenko_rate`)."""
    out = []
    problems = [pseudo_huber(), lse_cubic()]
    if not quick:
        problems += [pseudo_huber(n=16, t0=3.0, seed=1), lse_cubic(c=0.0, scale=3.0, seed=1), cubic_lipschitz()]
    for p in problems:
        L2, D = p.constants.L2, float(torch.linalg.vector_norm(p.x0 - p.x_star))
        res = grad_norm_newton(p, p.x0, maxiter=500, gtol=1e-10)
        out.append(tag(k2_rate(res, p.f_star, L2, D), p.name, "grad-norm-newton (exact H)"))
        cb, xs = collect_iterates()
        res = regularized_newton(p, p.x0, H=L2, adaptive=False, maxiter=500, gtol=1e-10, callback=cb)
        out.append(tag(mishchenko_rate(res, [p.x0, *xs], p.x_star, p.f_star, L2, L2), p.name,
                       "regularized-newton (fixed H = L2)"))
    return out


def cubic_newton_checks(quick: bool) -> list[TheoremCheck]:
    """Statements 9a, 9b (cubic Newton, fixed M = L2) and 1b, 2b for the adaptive M search."""
    out = []
    problems = [pseudo_huber(), lse_cubic()]
    if not quick:
        problems += [pseudo_huber(n=16, t0=3.0, seed=1), lse_cubic(c=0.0, scale=3.0, seed=1), cubic_lipschitz()]
    for p in problems:
        L2 = p.constants.L2
        rec = TrialRecorder(CubicRule(M_MIN), keep_tensors=True)
        cb, xs = collect_iterates()
        res = run_rule(p, p.x0, rec, L2, adaptive=False, maxiter=500, gtol=1e-10, callback=cb, method="cubic-newton")
        m = "cubic-newton (fixed M = L2)"
        out.append(tag(cubic_steps(rec), p.name, m))
        out.append(tag(cubic_rate(res, [p.x0, *xs], p.x_star, p.f_star, L2, L2), p.name, m))
    adaptive = [pseudo_huber()] + ([cubic_lipschitz()] if not quick else [])
    for p in adaptive:  # M_0 = 1e-2: the search rejects trials, so both directions are exercised
        rec = TrialRecorder(CubicRule(M_MIN), keep_tensors=True)
        run_rule(p, p.x0, rec, 1e-2, maxiter=300, gtol=1e-8, method="cubic-newton")
        m = "cubic-newton (adaptive M)"
        out.append(tag(acceptance_both_ways(rec, "cubic"), p.name, m))
        out.append(tag(search_replay(rec, "cubic", floor=M_MIN), p.name, m))
        out.append(tag(cubic_steps(rec), p.name, m))
    return out


# (1/3)||A(x - x*)||^3 in the metric A^T A: uniformly convex of degree 3 with sigma = 1/2, Hessian
# Lipschitz with L2 = 2, gradient growth ||g||_* = (3 delta)^(2/3) (statement 10's assumptions).
CUBIC_RESIDUAL_CONSTANTS = {"sigma": 0.5, "L2": 2.0, "G": 3.0 ** (2.0 / 3.0)}


def cubic_residual_instance(seed: int = 0) -> tuple[Problem, torch.Tensor]:
    """The paper's nonlinear equations with ``p = 3`` (n = 20, m = 40) and the metric ``A^T A``."""
    problem = nonlinear_equations(n=20, m=40, p=3, seed=seed)
    A = torch.from_numpy(problem.data["A"])
    return problem, A.T @ A


def super_uniformly_convex_run(rule: StepRule, seed: int = 0) -> tuple[Any, TheoremCheck]:
    """Statement 10 for ``rule`` on :func:`cubic_residual_instance` (trial log recorded)."""
    problem, B = cubic_residual_instance(seed)
    rec = TrialRecorder(rule)
    res = run_rule(problem, problem.x0, rec, 1.0, B=B, maxiter=3000, gtol=1e-13, method="super-newton")
    check = super_universal_linear_rate(rec, res, problem.f_star, **CUBIC_RESIDUAL_CONSTANTS)
    return res, tag(check, problem.name, f"super-newton (alpha = {getattr(rule, 'alpha', float('nan')):.3g}, metric A^T A)")


def super_newton_checks(quick: bool) -> list[TheoremCheck]:
    """Statements 1b and 2b for super-universal Newton, its derived convex decrease (statement 1, c = 4),
    and its linear rate on a uniformly convex problem of degree 3 (statement 10)."""
    out = []
    problems = [rosenbrock_instance(), nonlinear_equations(n=20, m=40, p=4)]
    if not quick:
        problems += [chebyshev_instance(3), lse_cubic(), cubic_lipschitz()]
    for p in problems:
        rec = TrialRecorder(SuperUniversalRule(1.0, H_MIN))
        res = run_rule(p, p.x0, rec, 1.0, maxiter=2000, gtol=1e-9, method="super-newton")
        m = "super-newton (alpha = 1)"
        out.append(tag(acceptance_both_ways(rec, "super-universal"), p.name, m))
        out.append(tag(search_replay(rec, "super-universal", floor=H_MIN), p.name, m))
        out.append(tag(regularization_formula(rec, "super-universal"), p.name, m))
        if p.constants.convex:
            out.append(tag(acceptance_invariant(res, p.f_star, constant=4.0), p.name, m, statement_constant=4))
    for alpha in ([1.0] if quick else [1.0, 2.0 / 3.0]):
        out.append(super_uniformly_convex_run(SuperUniversalRule(alpha, H_MIN))[1])
    return out


def nonconvex_checks(quick: bool) -> list[TheoremCheck]:
    """Statement 5 on Rosenbrock and Chebyshev-Rosenbrock."""
    problems = [rosenbrock_instance(), chebyshev_instance(3)]
    if not quick:
        problems += [rosenbrock_instance(x0=(-2.0, 2.0)), chebyshev_instance(4), rosenbrock_nle()]
    out = []
    for p in problems:
        res = grad_norm_newton(p, p.x0, maxiter=5000, gtol=1e-10)
        out.append(tag(nonconvex_grad_rate(res), p.name, "grad-norm-newton (exact H)"))
    return out


def superlinear_checks(quick: bool) -> list[TheoremCheck]:
    """Statement 6 on strongly convex logistic regression with the exact Hessian."""
    seeds = (0,) if quick else (0, 1, 2)
    out = []
    for seed in seeds:
        p = logistic_instance(10.0, 1e-3, seed)
        res = grad_norm_newton(p, p.x0, maxiter=200, gtol=1e-15)
        out.append(tag(local_superlinear(res, p.f_star), p.name, "grad-norm-newton (exact H)"))
    if not quick:
        p = logistic_regression("breast_cancer")
        res = grad_norm_newton(p, p.x0, maxiter=200, gtol=0.0, f_target=p.f_star + 1e-15)
        out.append(tag(local_superlinear(res, p.f_star), p.name, "grad-norm-newton (exact H)"))
    return out


def recorded_cg_run(problem: Problem, rule: StepRule | None = None, gamma0: float = 1.0,
                    **options: Any) -> tuple[Any, InexactTrialRecorder]:
    """``grad_norm_newton(..., solver="cg")`` (Hessian-free: CG on Hessian-vector products) through an
    :class:`InexactTrialRecorder` (same loop; every trial and its CG solve logged)."""
    rec = InexactTrialRecorder(rule or GradNormRule(GAMMA_MIN))
    res = run_rule(problem, problem.x0, rec, gamma0, solver="cg", method="grad-norm-newton", **options)
    return res, rec


def inexact_newton_checks(quick: bool) -> list[TheoremCheck]:
    """Statements I1-I5 of the Hessian-free method (:mod:`optlib.theory.inexact_newton`): on Rosenbrock
    (non-convex; Steihaug exits keep the radius) and on strongly convex logistic regression (the local
    superlinear rate with ``eta_k = min(1/2, ||g_k||_*^(1/2))``)."""
    out = []
    problems = [rosenbrock_instance()] + ([chebyshev_instance(3)] if not quick else [])
    for p in problems:
        res, rec = recorded_cg_run(p, maxiter=2000, gtol=1e-10)
        m = "grad-norm-newton (CG on HVPs, forcing sqrt)"
        out.append(tag(acceptance_invariant(res, p.f_star), p.name, m))
        out.append(tag(acceptance_both_ways(rec, "grad-norm"), p.name, m))
        out.append(tag(step_within_radius(rec), p.name, m, negative_curvature="boundary"))
        out.append(tag(cg_residual_rule(rec, "sqrt"), p.name, m))
        out.append(tag(hvp_accounting(res, rec), p.name, m))
    for seed in (0,) if quick else (0, 1, 2):
        p = logistic_instance(10.0, 1e-3, seed)
        res, rec = recorded_cg_run(p, maxiter=200, gtol=1e-15)
        m = "grad-norm-newton (CG on HVPs, forcing sqrt)"
        out.append(tag(local_superlinear(res, p.f_star), p.name, m))
        out.append(tag(forcing_vanishes(res), p.name, m))
        out.append(tag(cg_residual_rule(rec, "sqrt"), p.name, m))
        out.append(tag(step_within_radius(rec), p.name, m))
    return out


# ------------------------------------------------------------------------------------------------
def sqrtm_spd(B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(B^{1/2}, B^{-1/2})`` of a symmetric positive definite matrix (eigendecomposition)."""
    w, V = np.linalg.eigh(B)
    return (V * np.sqrt(w)) @ V.T, (V / np.sqrt(w)) @ V.T


def metric_and_transformed(p: Problem, seed: int) -> tuple[np.ndarray, np.ndarray, Problem]:
    """Statement 7c's metric ``B`` (random SPD, seeded by ``seed + 100``), ``B^{-1/2}``, and the quadratic of
    ``p`` in ``z = B^{1/2} x``: ``1/2 z^T (B^{-1/2} A B^{-1/2}) z - (B^{-1/2} b)^T z`` from ``B^{1/2} x0``."""
    A, b, x0 = p.data["A"], p.data["b"], p.x0.numpy()
    rng = np.random.default_rng(seed + 100)
    G = rng.normal(size=A.shape)
    B = G @ G.T / A.shape[0] + 0.5 * np.eye(A.shape[0])
    Bh, Bmh = sqrtm_spd(B)
    pz = quadratic_from_matrix(Bmh @ A @ Bmh, Bmh @ b, x0=Bh @ x0, name="quadratic in z = B^{1/2} x")
    return B, Bmh, pz


def equivalence_checks(seed: int = 0) -> list[TheoremCheck]:
    """Statement 7a-c on a quadratic (closed-form references, numpy)."""
    p = quadratic_instance(seed)
    A, b, x0 = p.data["A"], p.data["b"], p.x0.numpy()
    out = []
    # 7a: H = 0, fixed radius -> normalized gradient steps.
    gamma, steps = 0.5, 10
    cb, xs = collect_iterates()
    grad_norm_newton(p, p.x0, hessian=None, gamma0=gamma, adaptive=False, maxiter=steps, gtol=0.0, callback=cb)
    ref = normalized_gradient_reference(lambda x: A @ x - b, x0, gamma, steps)
    out.append(tag(iterates_match("7a H = 0 is the normalized gradient method", xs, ref,
                                  statement="H = 0: x+ = x - (gamma/||g||) g, to 1e-10"),
                   p.name, "grad-norm-newton (H = 0)"))
    # 7b: tiny lambda (huge gamma0) with the exact Hessian -> one Newton step lands on x*.
    cb, xs = collect_iterates()
    grad_norm_newton(p, p.x0, hessian="exact", gamma0=1e16, adaptive=False, maxiter=1, gtol=0.0, callback=cb)
    out.append(tag(iterates_match("7b tiny lambda is Newton", xs, [np.linalg.solve(A, b)],
                                  statement="lambda -> 0, exact H: x_1 = x0 - A^{-1} g_0 = x*, to 1e-10"),
                   p.name, "grad-norm-newton (exact H, gamma0 = 1e16)"))
    # 7c: metric B equals the change of variables x = B^{-1/2} z (adaptive runs, exact H).
    B, Bmh, pz = metric_and_transformed(p, seed)
    cbx, xs = collect_iterates()
    grad_norm_newton(p, p.x0, hessian="exact", B=torch.tensor(B), gamma0=0.1, maxiter=30, gtol=1e-9, callback=cbx)
    cbz, zs = collect_iterates()
    grad_norm_newton(pz, pz.x0, hessian="exact", gamma0=0.1, maxiter=30, gtol=1e-9, callback=cbz)
    out.append(tag(iterates_match("7c metric B is a change of variables", xs, [Bmh @ z.numpy() for z in zs],
                                  statement="run with B equals the run on f(B^{-1/2} z) mapped back, to 1e-10"),
                   p.name, "grad-norm-newton (exact H, B != I)"))
    return out


def cubic_cases(seed: int = 0) -> list[tuple[str, torch.Tensor, torch.Tensor, float, Any]]:
    """Cubic subproblem instances: random indefinite A, B != I, and the hard case."""
    rng = np.random.default_rng(seed)
    n = 6
    G = rng.normal(size=(n, n))
    A = torch.tensor(0.5 * (G + G.T))
    g = torch.tensor(rng.normal(size=n))
    W = rng.normal(size=(n, n))
    B = torch.tensor(W @ W.T / n + np.eye(n))
    # Hard case: g orthogonal to the bottom eigenvector of an indefinite A and too short to reach r_min.
    Ah = torch.diag(torch.tensor([-1.0, 0.5, 2.0, 3.0], dtype=torch.float64))
    gh = torch.tensor([0.0, 1e-3, -2e-3, 1e-3], dtype=torch.float64)
    return [("indefinite A", A, g, 1.0, None), ("indefinite A, B != I", A, g, 2.0, B), ("hard case", Ah, gh, 1.0, None)]


def cubic_checks(seed: int = 0) -> list[TheoremCheck]:
    """Statement 8 on :func:`cubic_cases`, solved by :class:`optlib.linalg.CubicSubproblem`."""
    out = []
    for label, A, g, M, B in cubic_cases(seed):
        metric = Metric(B)
        d = CubicSubproblem(A, g, metric).solve(M)
        out.append(tag(cubic_subproblem(A, g, M, d, metric), label, "optlib.linalg.CubicSubproblem"))
    return out


def theorem_table(quick: bool = True) -> list[TheoremCheck]:
    """Run every statement on its problems; return the checks (the report's "measured vs bound").

    ``quick=True`` keeps the whole table well under a minute on two cores; ``quick=False`` adds seeds and
    problems. Runs with one torch thread (restored afterwards): the problems are tiny, and intra-op threads
    on a loaded machine cost far more than they save.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        checks: list[TheoremCheck] = []
        checks += invariant_checks(quick)
        checks += linear_rate_checks(quick)
        checks += k2_checks(quick)
        checks += cubic_newton_checks(quick)
        checks += super_newton_checks(quick)
        checks += nonconvex_checks(quick)
        checks += superlinear_checks(quick)
        checks += inexact_newton_checks(quick)
        for seed in (0,) if quick else (0, 1, 2):
            checks += equivalence_checks(seed)
            checks += cubic_checks(seed)
        return checks
    finally:
        torch.set_num_threads(threads)


regularized_newton_table = theorem_table
"""The family's table under the name the report and asv use for every family (``<family>_table(quick)``)."""

FAMILY_TABLES: dict[str, Callable[..., list[TheoremCheck]]] = {
    "regularized-newton": regularized_newton_table,
    "drop-muon": drop_muon_table,
    "least-squares": least_squares_table,
    "curvature": curvature_table,
    "unlearning": unlearning_table,
    "bilevel": bilevel_table,
    "drift": drift_table,
}
"""Every family's table, ``name -> table(quick=True)``: what the report's theorem table, the asv ``track_*``
benchmarks and ``python -m optlib.theory`` run. A new family adds its table here."""


def every_table(quick: bool = True, families: Sequence[str] | None = None) -> list[TheoremCheck]:
    """The checks of every family (or of ``families``), each tagged with ``details["family"]``."""
    names = list(FAMILY_TABLES) if families is None else list(families)
    unknown = [f for f in names if f not in FAMILY_TABLES]
    if unknown:
        raise ValueError(f"unknown theorem famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}; "
                         f"known: {', '.join(FAMILY_TABLES)}")
    return [dataclasses.replace(c, details={**dict(c.details or {}), "family": name})
            for name in names for c in FAMILY_TABLES[name](quick=quick)]


def format_table(checks: list[TheoremCheck]) -> str:
    """The checks as a plain-text "measured vs bound" table (columns as wide as their longest entry)."""
    rows = [(c.name, str(c.details.get("problem", "")), str(c.details.get("method", "")), _num(c.measured),
             _num(c.bound), "holds" if c.holds else "FAILS") for c in checks]
    header = ("statement", "problem", "method", "measured", "bound", "verdict")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells: tuple[str, ...]) -> str:
        left = [f"{cell:<{w}s}" for cell, w in zip(cells[:3], widths[:3])]
        right = [f"{cell:>{w}s}" for cell, w in zip(cells[3:5], widths[3:5])]
        return " ".join(left + right) + "  " + cells[5]

    return "\n".join(line(r) for r in [header, *rows])


def _num(x: Any) -> str:
    try:
        return f"{float(x):.4g}"
    except (TypeError, ValueError):
        return str(x)
