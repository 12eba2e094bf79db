"""Proofs-as-tests for the bilevel hypergradient estimators (spec 30 §6 (i)-(v), §9 B9/B10).

Every checker returns a :class:`TheoremCheck`; references come from closed forms in numpy float64 on the
exact problems Q1/Q2/Q3 (:mod:`optlib.problems.bilevel`), never from the estimator under test. Each
checker that tests an estimator takes that estimator as an argument, so a deliberately wrong twin can
be passed in and must fail the same checker (``tests/theorems/test_bilevel_hypergradients.py``).

Notation (Q1/Q2): ``g(x, y) = (1/2) y^T A y - y^T (B x + c)``, ``H = A`` (``mu = lambda_min(A)``,
``l_g1 = lambda_max(A)``), ``grad^2_xy g v = -B^T v``, ``b = grad_y f(x, y) = C^T (C y - d)``,
``v* = A^{-1} b``, ``grad Phi(x) = grad_x f(x, y*) + B^T v*``.

Derived bounds [derived — verify]:

* **Neumann** ``v_Q = alpha sum_{q<Q} (I - alpha A)^q b``. Since ``alpha sum_{q<Q} M^q = (I - M^Q)(alpha A)^{-1}
  alpha`` for ``M = I - alpha A`` (telescoping ``(I - M) sum M^q = I - M^Q``), ``v_Q - v* = -M^Q v*``, and for
  ``0 < alpha <= 1/l_g1`` the eigenvalues of ``M`` lie in ``[0, 1 - alpha mu]``, so
  ``||v_Q - v*|| <= (1 - alpha mu)^Q ||v*||``. The hypergradient error is ``B^T (v_Q - v*)``, so
  ``||h_Q - grad Phi|| <= ||B|| (1 - alpha mu)^Q ||v*||``.
* **z-iterate** ``z <- z - nu (A z - b)``: ``z_{k+1} - v* = (I - nu A)(z_k - v*)``, and ``||I - nu A|| =
  max_i |1 - nu lambda_i| = max(|1 - nu mu|, |1 - nu l_g1|) =: r`` (a convex function of ``lambda`` peaks at an end
  of ``[mu, l_g1]``). From ``z_0 = 0``: ``||h_k - grad Phi|| <= ||B|| r^k ||v*||``.
* **unroll** from ``y_0 = y*`` with ``K`` steps of size ``lr``: ``y_{k+1} = y_k - lr (A y_k - B x - c)`` gives
  ``y_K = y*`` (a fixed point) and ``dy_K/dx = sum_{k<K} (I - lr A)^k lr B = (I - (I - lr A)^K) A^{-1} B``, so the
  unrolled hypergradient is ``grad_x f + B^T (I - (I - lr A)^K) v*`` and its error is ``-B^T (I - lr A)^K v*``:
  ``||h_K - grad Phi|| <= ||B|| max(|1 - lr mu|, |1 - lr l_g1|)^K ||v*||`` (the Neumann bound with
  ``alpha = lr``: unrolling K steps from ``y*`` *is* the K-term Neumann series).
* **inexact y** (Q1, exact solve): ``h(x, y) = rho x + B^T A^{-1} C^T (C y - d)`` is affine in ``y``, so
  ``h(x, y) - grad Phi(x) = B^T A^{-1} C^T C (y - y*)`` and ``||.|| <= L_phi_y ||y - y*||`` with
  ``L_phi_y = ||B^T A^{-1} C^T C||``, attained along the top right singular vector (so the bound is tight).
* **randomized Neumann** (B10) on the stochastic Q1 below, lower batch ``eps in {-1, +1}`` (Rademacher):
  ``A_eps = A + s eps I``, ``E[A_eps] = A``. With independent ``eps_j`` per factor,
  ``E[prod_j (I - alpha A_{eps_j})] = prod_j E[.] = M^q``, so ``E[alpha Q prod_{j<=q'} (.) b] =
  alpha sum_{q<Q} M^q b`` (``q' ~ Unif{0..Q-1}``): unbiased for the truncated sum. Reusing one ``eps`` for all
  factors gives ``E = (1/2)((M - alpha s I)^q + (M + alpha s I)^q)``, whose excess over ``M^q`` is
  ``sum_{j even >= 2} C(q, j) M^{q-j} (alpha s)^j`` (positive definite for ``q >= 2``): bias
  ``alpha sum_{q<Q} [ (1/2)((M - alpha s)^q + (M + alpha s)^q) - M^q ] b``, computed in closed form below
  (:func:`dependent_sample_bias`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..bilevel.hypergradient import hypergradient
from ..bilevel.problem import BilevelConstants, BilevelProblem
from ..problems.bilevel import bilevel_exponential, bilevel_hyper_cleaning, bilevel_quadratic
from .common import TheoremCheck, le_with_slack

SOURCE = "spec 30 §6; derived (module docstring)"

PROBLEMS: dict[str, Callable[[], BilevelProblem]] = {
    "Q1": bilevel_quadratic,
    "Q2": bilevel_exponential,
    "Q3": bilevel_hyper_cleaning,
}

Estimator = Callable[..., Tensor]


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def _quad_parts(problem: BilevelProblem, x: Tensor) -> dict[str, np.ndarray | float]:
    """``A, B, v*, ||B||, mu, l_g1`` of a Q1/Q2 problem at ``x`` (numpy, closed form)."""
    D = problem.data
    A, B, c, C, d = (np.asarray(D[k], dtype=np.float64) for k in ("A", "B", "c", "C", "d"))
    ys = np.linalg.solve(A, B @ _np(x) + c)
    b = C.T @ (C @ ys - d)
    eig = np.linalg.eigvalsh(A)
    return {"A": A, "B": B, "ys": ys, "b": b, "v": np.linalg.solve(A, b), "Bnorm": float(np.linalg.norm(B, 2)),
            "mu": float(eig[0]), "l_g1": float(eig[-1])}


def estimator_matches_closed_form(problem_name: str = "Q1", method: str = "cg", problem: BilevelProblem | None = None,
                                  **knobs: object) -> TheoremCheck:
    """At ``y = y*(x)`` the estimate ``h`` matches ``grad Phi(x)`` (closed form): relative error ``<= 1e-8`` for
    ``exact``/``cg``; for ``neumann``, ``z-iterate`` (from ``z = 0``) and ``unroll`` (from ``y*``) the absolute
    error is at most ``||B|| r^k ||v*||`` (module docstring; ``r = 1 - alpha mu`` resp. ``max(|1 - nu mu|,
    |1 - nu l_g1|)`` resp. the same with ``lr``), Q1/Q2 only for those three."""
    prob = problem if problem is not None else PROBLEMS[problem_name]()
    x = prob.x0
    ys = prob.lower_solution(x)
    truth = _np(prob.true_hypergradient(x))
    est = hypergradient(prob, x, ys, method, **knobs)
    err = float(np.linalg.norm(_np(est.grad) - truth))
    tnorm = float(np.linalg.norm(truth))
    if method in ("exact", "cg"):
        measured, bound, cmp = err / tnorm, 1e-8, "relative error <= 1e-8"
    else:
        qp = _quad_parts(prob, x)
        if method == "neumann":
            alpha, k = float(est.diagnostics["alpha"]), int(est.knobs["steps"])
            r = 1.0 - alpha * qp["mu"]
        elif method == "z-iterate":
            nu, k = float(est.knobs["nu"]), int(est.knobs["steps"])
            r = max(abs(1 - nu * qp["mu"]), abs(1 - nu * qp["l_g1"]))
        else:
            lr, k = float(est.knobs["lr"]), int(est.knobs["steps"])
            r = max(abs(1 - lr * qp["mu"]), abs(1 - lr * qp["l_g1"]))
        bound = qp["Bnorm"] * r**k * float(np.linalg.norm(qp["v"])) + 1e-12 * tnorm
        measured, cmp = err, "||h - grad Phi|| <= ||B|| r^k ||v*|| (+1e-12 ||grad Phi|| roundoff)"
    return TheoremCheck(f"(i) {method} matches grad Phi at y* on {problem_name}",
                        "estimator at y = y*(x) vs closed-form grad Phi", SOURCE, measured, bound,
                        le_with_slack(measured, bound, 0.0),
                        details={"comparison": cmp, "problem": prob.name, "method": method, "knobs": dict(est.knobs),
                                 "relative_error": err / tnorm})


def _neumann_v(problem: BilevelProblem, x: Tensor, y: Tensor, steps: int, alpha: float) -> Tensor:
    return hypergradient(problem, x, y, "neumann", steps=steps, alpha=alpha, check_step=False).v


def neumann_truncation_bound(steps: int = 20, alpha_scale: float = 1.0, problem: BilevelProblem | None = None,
                             estimator: Estimator = _neumann_v) -> TheoremCheck:
    """(ii) ``||v_Q - A^{-1} b|| <= (1 - alpha mu)^Q ||A^{-1} b||`` for ``alpha = alpha_scale / l_g1`` (valid for
    ``alpha_scale <= 1``). ``estimator(problem, x, y, steps, alpha) -> v_Q``."""
    prob = problem if problem is not None else bilevel_quadratic()
    x = prob.x0
    qp = _quad_parts(prob, x)
    alpha = alpha_scale / qp["l_g1"]
    v = _np(estimator(prob, x, torch.from_numpy(qp["ys"]), steps, alpha))
    vnorm = float(np.linalg.norm(qp["v"]))
    measured = float(np.linalg.norm(v - qp["v"]))
    bound = (1.0 - alpha * qp["mu"]) ** steps * vnorm
    return TheoremCheck("(ii) Neumann truncation bound", "||v_Q - H^{-1} b|| <= (1 - alpha mu)^Q ||H^{-1} b||",
                        SOURCE, measured, bound, le_with_slack(measured, bound + 1e-13 * vnorm, 0.0),
                        details={"problem": prob.name, "method": "neumann", "alpha": alpha, "Q": steps,
                                 "comparison": "measured <= bound + 1e-13 ||v*||"})


def _exact_h(problem: BilevelProblem, x: Tensor, y: Tensor) -> Tensor:
    return hypergradient(problem, x, y, "exact").grad


def inexact_y_bias(radius: float = 0.3, problem: BilevelProblem | None = None,
                   estimator: Estimator = _exact_h) -> TheoremCheck:
    """(iii) ``||h(x, y) - grad Phi(x)|| <= L_phi_y ||y - y*(x)||`` (Q1, ``L_phi_y = ||B^T A^{-1} C^T C||``), over
    the directions ``y - y* = radius * w`` for every right singular vector ``w`` of ``B^T A^{-1} C^T C`` (the top
    one gives equality) and every coordinate axis: deterministic directions, no random draw."""
    prob = problem if problem is not None else bilevel_quadratic()
    x = prob.x0
    D = prob.data
    A, B, C = (np.asarray(D[k], dtype=np.float64) for k in ("A", "B", "C"))
    Mxy = B.T @ np.linalg.solve(A, C.T @ C)
    L = float(np.linalg.norm(Mxy, 2))
    ys = _np(prob.lower_solution(x))
    truth = _np(prob.true_hypergradient(x))
    dirs = list(np.linalg.svd(Mxy)[2]) + list(np.eye(ys.size))
    ratios = []
    for dvec in dirs:
        delta = radius * dvec / np.linalg.norm(dvec)
        h = _np(estimator(prob, x, torch.from_numpy(ys + delta)))
        ratios.append(float(np.linalg.norm(h - truth)) / radius)
    measured = max(ratios)
    return TheoremCheck("(iii) inexact-y bias", "||h(x,y) - grad Phi(x)|| <= L_phi_y ||y - y*(x)||", SOURCE,
                        measured, L, le_with_slack(measured, L, 1e-10),
                        details={"problem": prob.name, "method": "exact", "L_phi_y_problem": prob.constants.L_phi_y,
                                 "comparison": "max ratio <= L_phi_y*(1+1e-10)", "ratios": ratios})


def _z_step(problem: BilevelProblem, x: Tensor, y: Tensor, z: Tensor, nu: float) -> Tensor:
    state = {"z": z}
    hypergradient(problem, x, y, "z-iterate", nu=nu, steps=1, state=state)
    return state["z"]


def z_iterate_contraction(nu: float = 0.2, steps: int = 15, problem: BilevelProblem | None = None,
                          update: Estimator = _z_step) -> TheoremCheck:
    """(iv) ``||z_{k+1} - v*|| <= max(|1 - nu mu|, |1 - nu l_g1|) ||z_k - v*||`` at every step (Q1), from
    ``z_0 = 0`` and from ``z_0 = v* + u`` for the extreme eigenvectors ``u`` of ``A`` (where the factor is
    attained). ``update(problem, x, y, z, nu) -> z_next``."""
    prob = problem if problem is not None else bilevel_quadratic()
    x = prob.x0
    qp = _quad_parts(prob, x)
    rate = max(abs(1 - nu * qp["mu"]), abs(1 - nu * qp["l_g1"]))
    U = np.linalg.eigh(qp["A"])[1]
    y = torch.from_numpy(qp["ys"])
    ratios = []
    for z0 in (np.zeros(prob.ny), qp["v"] + U[:, 0], qp["v"] + U[:, -1]):
        z = torch.from_numpy(z0)
        for _ in range(steps):
            z_new = update(prob, x, y, z, nu)
            ratios.append(float(np.linalg.norm(_np(z_new) - qp["v"]) / np.linalg.norm(_np(z) - qp["v"])))
            z = z_new
    measured = max(ratios)
    return TheoremCheck("(iv) z-iterate contraction", "||z_{k+1} - v*|| <= max(|1-nu mu|,|1-nu l_g1|) ||z_k - v*||",
                        SOURCE, measured, rate, le_with_slack(measured, rate, 1e-10),
                        details={"problem": prob.name, "method": "z-iterate", "nu": nu, "ratios": ratios,
                                 "comparison": "max step ratio <= rate*(1+1e-10)"})


# ---------------------------------------------------------------------------------------------- stochastic Q1
def stochastic_quadratic(s: float = 1.0, seed: int = 0) -> BilevelProblem:
    """Q1 with a noisy lower Hessian: lower batch ``eps ~ Rademacher``, ``g(x, y; eps) = g(x, y) + (s eps / 2)||y||^2``
    so ``grad^2_yy g(.; eps) = A + s eps I`` with mean ``A`` (module docstring). Upper level deterministic.
    ``s = 1 > mu = 0.5`` on purpose: a single batch Hessian may be indefinite (the mean is not), which makes the
    dependent-sample bias ``~ (alpha s)^2`` large enough to see at ~10 standard errors with 1500 draws."""
    base = bilevel_quadratic(seed=seed)
    D = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in base.data.items()}
    rho = 0.1

    def g(x: Tensor, y: Tensor, eps: Tensor) -> Tensor:
        return 0.5 * y @ (D["A"] @ y) + 0.5 * s * eps * (y @ y) - y @ (D["B"] @ x + D["c"])

    def f(x: Tensor, y: Tensor, _batch: object) -> Tensor:
        r = D["C"] @ y - D["d"]
        return 0.5 * (r @ r) + 0.5 * rho * (x @ x)

    def lower_sampler(gen: torch.Generator) -> Tensor:
        return (2 * torch.randint(2, (), generator=gen) - 1).to(torch.float64)

    prob = BilevelProblem(f, g, base.x0, base.y0, upper_sampler=lambda gen: None, lower_sampler=lower_sampler,
                          constants=BilevelConstants(mu=base.constants.mu, l_g1=base.constants.l_g1),
                          solution=base.lower_solution, name=f"bilevel-quadratic-stochastic(s={s})")
    prob.data, prob.noise_scale = base.data, s
    return prob


def _randomized_v(problem: BilevelProblem, x: Tensor, y: Tensor, steps: int, alpha: float,
                  gen: torch.Generator) -> Tensor:
    return hypergradient(problem, x, y, "neumann", steps=steps, alpha=alpha, randomized=True, check_step=False,
                         upper_batch=(None,), lower_batch=(torch.tensor(1.0, dtype=torch.float64),),
                         generator=gen).v


def dependent_sample_bias(problem: BilevelProblem, steps: int, alpha: float) -> np.ndarray:
    """Closed-form bias of reusing one ``eps`` for all factors (module docstring)."""
    qp = _quad_parts(problem, problem.x0)
    n = qp["A"].shape[0]
    M = np.eye(n) - alpha * qp["A"]
    d = alpha * problem.noise_scale * np.eye(n)
    out = np.zeros(n)
    for q in range(steps):
        mp = np.linalg.matrix_power
        out += (0.5 * (mp(M - d, q) + mp(M + d, q)) - mp(M, q)) @ qp["b"]
    return alpha * out


def randomized_neumann_unbiased(draws: int = 2000, steps: int = 10, alpha_scale: float = 0.8, seed: int = 0,
                                noise: float = 1.0, estimator: Callable[..., Tensor] = _randomized_v) -> TheoremCheck:
    """(v) The randomized-truncation Neumann estimate is unbiased for ``alpha sum_{q<Q} (I - alpha A)^q b``: the
    Monte Carlo mean over ``draws`` lies within 4 standard errors in every coordinate (B10: needs an
    independent lower batch per factor). ``alpha = alpha_scale / (l_g1 + s)`` keeps every factor contracting."""
    prob = stochastic_quadratic(s=noise)
    x = prob.x0
    qp = _quad_parts(prob, x)
    alpha = alpha_scale / (qp["l_g1"] + prob.noise_scale)
    M = np.eye(prob.ny) - alpha * qp["A"]
    target = np.zeros(prob.ny)
    p = qp["b"].copy()
    for _ in range(steps):
        target += p
        p = M @ p
    target *= alpha
    gen = torch.Generator().manual_seed(seed)
    y = torch.from_numpy(qp["ys"])
    samples = np.stack([_np(estimator(prob, x, y, steps, alpha, gen)) for _ in range(draws)])
    mean, se = samples.mean(0), samples.std(0, ddof=1) / math.sqrt(draws)
    z = np.abs(mean - target) / se
    measured = float(z.max())
    bias = dependent_sample_bias(prob, steps, alpha)
    return TheoremCheck("(v) randomized Neumann unbiased", "|MC mean - alpha sum_{q<Q} M^q b|_i <= 4 SE_i",
                        SOURCE, measured, 4.0, measured <= 4.0,
                        details={"problem": prob.name, "method": "neumann-randomized", "draws": draws, "Q": steps,
                                 "alpha": alpha, "comparison": "max_i |mean - target|/SE <= 4",
                                 "dependent_bias_in_se": float(np.max(np.abs(bias) / se))})


def bilevel_table(quick: bool = True) -> list[TheoremCheck]:
    """Every statement on its default problem (``quick``: Q1 for the estimator matches; else Q2/Q3 too)."""
    rows = []
    names = ("Q1",) if quick else ("Q1", "Q2", "Q3")
    for name in names:
        rows += [estimator_matches_closed_form(name, "exact"), estimator_matches_closed_form(name, "cg")]
        if name != "Q3":
            rows += [estimator_matches_closed_form(name, "neumann", steps=30),
                     estimator_matches_closed_form(name, "z-iterate", nu=0.2, steps=30),
                     estimator_matches_closed_form(name, "unroll", steps=30, lr=0.2)]
    rows += [neumann_truncation_bound(), inexact_y_bias(), z_iterate_contraction(),
             randomized_neumann_unbiased(draws=1000 if quick else 4000)]
    return rows
