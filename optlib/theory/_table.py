"""The standard runs behind :func:`optlib.theory.regularized_newton.theorem_table`.

Each statement runs on the problem of :mod:`optlib.theory.standard` chosen for it; every check is
tagged with ``details["problem"]`` and ``details["method"]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ..linalg.cubic import CubicSubproblem
from ..linalg.regularized import Metric
from ..problem import Constants, Problem
from ..second_order import grad_norm_newton, regularized_newton
from ..second_order.driver import run as run_rule
from ..second_order.grad_norm_newton import GradNormRule
from . import standard
from .common import TheoremCheck
from .regularized_newton import (
    TrialRecorder,
    acceptance_invariant,
    collect_iterates,
    condition_sweep,
    cubic_subproblem,
    iterates_match,
    k2_rate,
    linear_rate,
    local_superlinear,
    nonconvex_grad_rate,
    normalized_gradient_reference,
    search_overhead,
    step_within_radius,
)

GAMMA_MIN = 1e-9
SWEEP_CONDS = (1e1, 1e2, 1e3, 1e4)
SWEEP_REG = 1e-4


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
    problems = [(standard.rosenbrock(), "exact"), (standard.logistic(cond=100.0, reg=SWEEP_REG), "bohning"),
                (standard.pseudo_huber(), "exact")]
    if not quick:
        problems += [(standard.chebyshev_rosenbrock(3), "exact"), (standard.lse_cubic(), "exact"),
                     (standard.logistic(cond=100.0, reg=SWEEP_REG), "exact")]
    for p, hess in problems:
        res, rec = recorded_grad_norm_run(p, hessian=hess, maxiter=2000, gtol=1e-10)
        m = f"grad-norm-newton ({hess} H)"
        out.append(tag(acceptance_invariant(res, p.f_star), p.name, m))
        if p.constants.convex:  # the statement needs H PSD: exact Hessians of convex f, or the Böhning bound
            out.append(tag(step_within_radius(rec), p.name, m))
        out.append(tag(search_overhead(res, trials=rec, gamma_min=GAMMA_MIN), p.name, m))
    return out


def iterations_to(problem: Problem, hessian: Any, eps: float, maxiter: int) -> tuple[int, bool]:
    res = grad_norm_newton(problem, problem.x0, hessian=hessian, maxiter=maxiter, gtol=0.0,
                           f_target=problem.f_star + eps)
    return int(res.nit), bool(res.success)


def linear_rate_checks(quick: bool) -> list[TheoremCheck]:
    """Statement 3: the Böhning run's tail fit and the condition sweep."""
    out = []
    seeds = (0,) if quick else (0, 1, 2)
    for seed in seeds:
        p = standard.logistic(cond=100.0, reg=SWEEP_REG, seed=seed)
        res = grad_norm_newton(p, p.x0, hessian="bohning", maxiter=5000, gtol=0.0, f_target=p.f_star + 1e-13)
        out.append(tag(linear_rate(res, p.f_star), p.name, "grad-norm-newton (bohning H)"))
        counts = [iterations_to(standard.logistic(cond=c, reg=SWEEP_REG, seed=seed), "bohning", 1e-8, 5000)
                  for c in SWEEP_CONDS]
        out.append(tag(condition_sweep(SWEEP_CONDS, [n for n, _ in counts], reached=[ok for _, ok in counts]),
                       f"logistic(cond=1e1..1e4, reg={SWEEP_REG:g}, seed={seed})", "grad-norm-newton (bohning H)"))
    return out


def k2_checks(quick: bool) -> list[TheoremCheck]:
    """Statement 4 for the adaptive method (exact H) and Mishchenko's method with fixed H = L2."""
    out = []
    problems = [standard.pseudo_huber(), standard.lse_cubic()]
    if not quick:
        from ..problems import cubic_lipschitz

        problems += [standard.pseudo_huber(n=16, t0=3.0, seed=1), standard.lse_cubic(c=0.0, scale=3.0, seed=1),
                     cubic_lipschitz()]
    for p in problems:
        L2, D = p.constants.L2, float(torch.linalg.vector_norm(p.x0 - p.x_star))
        res = grad_norm_newton(p, p.x0, maxiter=500, gtol=1e-10)
        out.append(tag(k2_rate(res, p.f_star, L2, D), p.name, "grad-norm-newton (exact H)"))
        res = regularized_newton(p, p.x0, H=L2, adaptive=False, maxiter=500, gtol=1e-10)
        out.append(tag(k2_rate(res, p.f_star, L2, D), p.name, "regularized-newton (fixed H = L2)"))
    return out


def nonconvex_checks(quick: bool) -> list[TheoremCheck]:
    """Statement 5 on Rosenbrock and Chebyshev-Rosenbrock."""
    problems = [standard.rosenbrock(), standard.chebyshev_rosenbrock(3)]
    if not quick:
        from ..problems import rosenbrock_nle

        problems += [standard.rosenbrock(x0=(-2.0, 2.0)), standard.chebyshev_rosenbrock(4), rosenbrock_nle()]
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
        p = standard.logistic(cond=10.0, reg=1e-3, seed=seed)
        res = grad_norm_newton(p, p.x0, maxiter=200, gtol=1e-15)
        out.append(tag(local_superlinear(res, p.f_star), p.name, "grad-norm-newton (exact H)"))
    if not quick:
        from ..problems import logistic_regression

        p = logistic_regression("breast_cancer")
        res = grad_norm_newton(p, p.x0, maxiter=200, gtol=0.0, f_target=p.f_star + 1e-15)
        out.append(tag(local_superlinear(res, p.f_star), p.name, "grad-norm-newton (exact H)"))
    return out


# ------------------------------------------------------------------------------------------------
def quadratic_problem(Q: np.ndarray, c: np.ndarray, x0: np.ndarray, name: str) -> Problem:
    """``1/2 x^T Q x - c^T x`` as a Problem (closed-form gradient and Hessian)."""
    Qt, ct = torch.tensor(Q), torch.tensor(c)

    def value_and_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Qx = Qt @ x
        return 0.5 * torch.dot(x, Qx) - torch.dot(ct, x), Qx - ct

    xs = np.linalg.solve(Q, c)
    return Problem(lambda x: value_and_grad(x)[0], len(c), value_and_grad=value_and_grad, hess=lambda x: Qt,
                   constants=Constants(convex=True), f_star=-0.5 * float(c @ xs), x_star=torch.tensor(xs),
                   x0=torch.tensor(x0), name=name)


def sqrtm_spd(B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(B^{1/2}, B^{-1/2})`` of a symmetric positive definite matrix (eigendecomposition)."""
    w, V = np.linalg.eigh(B)
    return (V * np.sqrt(w)) @ V.T, (V / np.sqrt(w)) @ V.T


def equivalence_checks(seed: int = 0) -> list[TheoremCheck]:
    """Statement 7a-c on a quadratic (closed-form references, numpy)."""
    p = standard.quadratic(seed=seed)
    Q, c, x0 = p.Q, p.c, p.x0.numpy()
    out = []
    # 7a: H = 0, fixed radius -> normalized gradient steps.
    gamma, steps = 0.5, 10
    cb, xs = collect_iterates()
    grad_norm_newton(p, p.x0, hessian=None, gamma0=gamma, adaptive=False, maxiter=steps, gtol=0.0, callback=cb)
    ref = normalized_gradient_reference(lambda x: Q @ x - c, x0, gamma, steps)
    out.append(tag(iterates_match("7a H = 0 is the normalized gradient method", xs, ref,
                                  statement="H = 0: x+ = x - (gamma/||g||) g, to 1e-10"),
                   p.name, "grad-norm-newton (H = 0)"))
    # 7b: tiny lambda (huge gamma0) with the exact Hessian -> one Newton step lands on x*.
    cb, xs = collect_iterates()
    grad_norm_newton(p, p.x0, hessian="exact", gamma0=1e16, adaptive=False, maxiter=1, gtol=0.0, callback=cb)
    out.append(tag(iterates_match("7b tiny lambda is Newton", xs, [np.linalg.solve(Q, c)],
                                  statement="lambda -> 0, exact H: x_1 = x0 - Q^{-1} g_0 = x*, to 1e-10"),
                   p.name, "grad-norm-newton (exact H, gamma0 = 1e16)"))
    # 7c: metric B equals the change of variables x = B^{-1/2} z (adaptive runs, exact H).
    rng = np.random.default_rng(seed + 100)
    G = rng.normal(size=Q.shape)
    B = G @ G.T / Q.shape[0] + 0.5 * np.eye(Q.shape[0])
    Bh, Bmh = sqrtm_spd(B)
    pz = quadratic_problem(Bmh @ Q @ Bmh, Bmh @ c, Bh @ x0, "quadratic in z = B^{1/2} x")
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
    out = []
    for label, A, g, M, B in cubic_cases(seed):
        metric = Metric(B)
        d = CubicSubproblem(A, g, metric).solve(M)
        out.append(tag(cubic_subproblem(A, g, M, d, metric), label, "optlib.linalg.CubicSubproblem"))
    return out


def build_table(quick: bool = True) -> list[TheoremCheck]:
    """All checks. Runs with one torch thread (restored afterwards): the problems are tiny, and
    intra-op threads on a loaded machine cost far more than they save."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        checks: list[TheoremCheck] = []
        checks += invariant_checks(quick)
        checks += linear_rate_checks(quick)
        checks += k2_checks(quick)
        checks += nonconvex_checks(quick)
        checks += superlinear_checks(quick)
        for seed in (0,) if quick else (0, 1, 2):
            checks += equivalence_checks(seed)
            checks += cubic_checks(seed)
        return checks
    finally:
        torch.set_num_threads(threads)


def format_table(checks: list[TheoremCheck]) -> str:
    """A plain-text "measured vs bound" table."""
    lines = [f"{'statement':42s} {'problem':48s} {'method':40s} {'measured':>12s} {'bound':>12s}  verdict"]
    for c in checks:
        lines.append(f"{c.name[:42]:42s} {str(c.details.get('problem', ''))[:48]:48s} "
                     f"{str(c.details.get('method', ''))[:40]:40s} {c.measured:12.4g} {c.bound:12.4g}  "
                     f"{'holds' if c.holds else 'FAILS'}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    import sys
    import time

    t0 = time.perf_counter()
    table = build_table(quick="--full" not in sys.argv)
    print(format_table(table))
    print(f"{len(table)} checks, {sum(not c.holds for c in table)} failing, {time.perf_counter() - t0:.1f} s")
