r"""Theorem checkers of Levenberg–Marquardt (Moré 1978 / MINPACK ``lmder``) and Gauss–Newton with Armijo
backtracking (spec 50 §4 and §6.5).

Every checker runs the production solver :func:`optlib.least_squares.least_squares` (optionally with a
``rule``: a subclass of :class:`~optlib.least_squares.TrustRegionRule` or
:class:`~optlib.least_squares.ArmijoRule`, the tests' "would catch" twins) and recomputes what the statement
is about from closed-form residuals and Jacobians, never from the solver's own quantities. The reference
solver for the MINPACK parity check is :func:`scipy.optimize.leastsq` (MINPACK's ``lmder`` itself).

Statements (the derivations are in the checkers' docstrings):

1. :func:`zero_residual_error_square` - zero residual: ``||e_{k+1}|| <= ||e_k||^2`` on Rosenbrock's residuals.
2. :func:`zero_residual_quadratic_constant` - ``e_{k+1}/e_k^2 -> C* = 11/13`` for ``u = (x^2 - 1, x^3 - 1)``.
3. :func:`large_residual_linear_rate` - large residual: linear rate ``|t|``.
4. :func:`gain_ratio_is_true_ratio` - accepted steps decrease F and ``rho = ared/pred`` (closed forms).
5. :func:`gain_ratio_thresholds` - both directions of the acceptance test on the trial log.
6. :func:`trust_region_bound` - ``||D p|| <= 1.1 Delta``, ``| ||D p|| - Delta | <= 0.1 Delta`` when ``lambda > 0``.
7. :func:`scale_invariance` - Marquardt scaling makes the iterates invariant under ``x = S z``.
8. :func:`minpack_parity` - nfev and x equal to MINPACK's on NIST problems where the radius/lambda update
   after a rejected step matters.
9. :func:`armijo_signed_slope` - Gauss–Newton accepts the first ``t`` in ``1, beta, beta^2, ...`` with
   ``F(x + t p) <= F(x) + c1 t grad F^T p`` (the signed slope).

:func:`least_squares_table` runs each statement on its default problem.

The closed-form residual pairs (Rosenbrock's residuals, the cubic pair, the large-residual family and the
saturating residual of statement 9) and their stated roots and Jacobians are in
:mod:`optlib.problems.residual_pairs`; the NIST problems in :mod:`optlib.problems.nist`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import leastsq

from ..least_squares import ArmijoRule, TrustRegionRule, least_squares
from ..problems.nist import load_nist
from ..problems.residual_pairs import (
    Residual,
    cubic_pair,
    cubic_pair_jac,
    large_residual,
    rosenbrock_residual,
    rosenbrock_residual_jac,
    saturating_residual,
    saturating_residual_jac,
)
from .common import TheoremCheck, fit_line

TIGHT = dict(ftol=1e-15, xtol=1e-15, gtol=1e-15)
MORE = "Moré 1978 (LNM 630, §2) and MINPACK-1 lmder/lmpar (Moré, Garbow & Hillstrom 1980)"
ACCEPT_THRESHOLD = 1e-4  # MINPACK lmder: a trial is accepted iff ratio >= p0001
ARMIJO_C1 = 1e-4  # Nocedal & Wright 2006, Algorithm 3.1 (the documented default of ArmijoRule)
ARMIJO_BETA = 0.5


# ------------------------------------------------------------------------------------------------
# Runs
# ------------------------------------------------------------------------------------------------
def run_collect(fun: Residual, x0: Any, jac: Residual, **kw: Any) -> tuple[Any, list[np.ndarray], list[dict]]:
    """Run ``least_squares``; return (result, iterates x_0..x_K, the records of the accepted steps)."""
    xs = [np.asarray(x0, dtype=float)]
    steps: list[dict] = []

    def cb(intermediate_result):
        xs.append(np.array(intermediate_result.x))
        steps.append(dict(intermediate_result))

    res = least_squares(fun, x0, jac, callback=cb, **kw)
    return res, xs, steps


def run_trials(fun: Residual, x0: Any, jac: Residual, **kw: Any) -> tuple[Any, list[np.ndarray], list[np.ndarray]]:
    """Run ``least_squares`` recording every residual evaluation; returns (result, accepted iterates, the
    evaluated points: x_0 first, then every trial point in order)."""
    evaluated: list[np.ndarray] = []

    def logged(x):
        evaluated.append(np.array(x, dtype=float))
        return fun(x)

    res, xs, _ = run_collect(logged, x0, jac, **kw)
    return res, xs, evaluated


def _sq(v: np.ndarray) -> float:
    return float(v @ v)


# ------------------------------------------------------------------------------------------------
# 1-3. Local rates
# ------------------------------------------------------------------------------------------------
def quadratic_ratios(xs, x_star, e_max, e_floor=1e-7):
    """e_{k+1} / e_k^2 over the steps that start at e_floor < e_k <= e_max; and all errors."""
    e = np.array([np.linalg.norm(x - x_star) for x in xs])
    keep = (e[:-1] <= e_max) & (e[:-1] > e_floor)
    return e[1:][keep] / e[:-1][keep] ** 2, e


def zero_residual_error_square(x0=(-1.2, 1.0), rule: TrustRegionRule | None = None) -> TheoremCheck:
    """Rosenbrock's residuals ``u = (1 - x1, 10 (x2 - x1^2))`` (m = n = 2, J invertible everywhere), ``x* = (1, 1)``.

    Derived: a Gauss–Newton step is Newton's step for ``u = 0``; ``u2`` is quadratic with Hessian diag(-20, 0),
    so ``e+ = J^{-1}(J e - u) = J^{-1}(0, -10 e1^2) = (0, -e1^2)`` exactly and ``||e+|| <= ||e||^2``
    (constant 1). LM takes the Gauss–Newton step (lambda = 0) once it fits the trust region, so the run must end
    with such steps. Measured: the largest ``||e_{k+1}|| / ||e_k||^2`` over the lambda = 0 steps and over the
    steps from ``1e-7 < ||e_k|| <= 0.1``; bound 1 (slack 1e-9, rounding). Also needs >= 2 Gauss–Newton steps,
    the last step one of them and ``||e_K|| <= 1e-15``.
    """
    res, xs, steps = run_collect(rosenbrock_residual, list(x0), rosenbrock_residual_jac, rule=rule, max_nfev=400, **TIGHT)
    ratios, e = quadratic_ratios(xs, np.ones(2), e_max=0.1)
    gn = [k for k, s in enumerate(steps) if s["lam"] == 0.0]
    gn_ratios = [np.linalg.norm(xs[k + 1] - 1.0) / max(np.linalg.norm(xs[k] - 1.0), 1e-300) ** 2 for k in gn
                 if np.linalg.norm(xs[k] - 1.0) > 1e-7]
    measured = float(max([*ratios.tolist(), *gn_ratios], default=math.inf))
    structure = len(gn) >= 2 and gn[-1] == len(steps) - 1 and e[-1] <= 1e-15
    holds = structure and measured <= 1.0 + 1e-9
    return TheoremCheck("LM zero residual: e+ <= e^2", "||x_{k+1} - x*|| <= ||x_k - x*||^2 (Rosenbrock residuals)",
                        "derived (Newton on u = 0, u2 quadratic)", measured, 1.0, holds, 1e-9,
                        {"problem": f"rosenbrock residuals x0={list(x0)}", "method": "lm", "gn_steps": len(gn),
                         "final_error": float(e[-1]), "windowed_steps": int(ratios.size)})


def zero_residual_quadratic_constant(rule: TrustRegionRule | None = None) -> TheoremCheck:
    """``u(x) = (x^2 - 1, x^3 - 1)``, m = 2, n = 1, x* = 1, from x0 = 3.

    Derived: expanding u and J around x* in the Gauss–Newton step,
    ``e_{k+1}/e_k^2 -> C* = |J*^T u''*| / (2 ||J*||^2) = (2*2 + 3*6)/(2*13) = 11/13``.
    Measured: the largest ``|ratio/C* - 1|`` over the steps from ``1e-6 < e_k <= 1e-2``; bound 0.02 (the
    first-order term ``C*(1 + O(e))``), and every ratio from ``e_k <= 0.1`` at most ``1.05 C*``.
    """
    c_star = 11.0 / 13.0
    res, xs, _ = run_collect(cubic_pair, [3.0], cubic_pair_jac, rule=rule, **TIGHT)
    ratios, _ = quadratic_ratios(xs, np.ones(1), e_max=0.1, e_floor=1e-6)
    close, _ = quadratic_ratios(xs, np.ones(1), e_max=1e-2, e_floor=1e-6)
    measured = float(np.max(np.abs(close / c_star - 1.0))) if close.size else math.inf
    holds = bool(res.success) and ratios.size >= 2 and float(ratios.max()) <= 1.05 * c_star and measured <= 0.02
    return TheoremCheck("LM quadratic constant 11/13", "e_{k+1}/e_k^2 -> |J*^T u''*|/(2||J*||^2) = 11/13",
                        "derived (second-order expansion of the Gauss–Newton step)", measured, 0.02, holds, 0.0,
                        {"problem": "u = (x^2-1, x^3-1), x0 = 3", "method": "lm", "c_star": c_star,
                         "ratios": ratios.tolist(), "comparison": "max |ratio/C* - 1| <= bound"})


def large_residual_linear_rate(t: float = 0.5, rule: TrustRegionRule | None = None) -> TheoremCheck:
    """``r(x) = (x + 1, t x^2 + x - 1)``, x* = 0 with residual (1, -1) for t < 1.

    Derived: the Gauss–Newton map ``x - J^T r / J^T J`` has derivative ``1 - F''(0)/(J^T J) = 1 - (2 - 2t)/2 = t``
    at x* (Dennis & Schnabel 1983, §10.2: the rate is the spectral radius of ``(J^T J)^{-1} sum r_i Hess r_i``).
    Measured: the contraction ``exp(slope)`` of the line through ``log e_k`` over ``1e-10 < e_k < 1e-3`` (>= 4
    points, r^2 > 0.999, all lambda = 0 steps); bound: ``|rate - |t|| <= 0.02 |t|``.
    """
    fun, jac = large_residual(t)
    res, xs, steps = run_collect(fun, [1.0], jac, rule=rule, **TIGHT)
    e = np.array([np.linalg.norm(x) for x in xs])
    k = np.nonzero((e > 1e-10) & (e < 1e-3))[0]
    if k.size >= 2:
        slope, _, r2 = fit_line(k, np.log(e[k]))
        rate = math.exp(slope)
    else:
        rate, r2 = math.nan, 0.0
    measured = abs(rate - abs(t)) / abs(t) if math.isfinite(rate) else math.inf
    tail_gn = all(s["lam"] == 0.0 for s in steps[-k.size:]) if k.size else False
    holds = (k.size >= 4 and r2 > 0.999 and tail_gn and measured <= 0.02
             and bool(np.allclose(res.fun, [1.0, -1.0], atol=1e-7)))
    return TheoremCheck("LM large residual: linear rate |t|", "e_{k+1}/e_k -> |t| (nonzero residual at x*)",
                        "derived; Dennis & Schnabel 1983, §10.2", measured, 0.02, holds, 0.0,
                        {"problem": f"r = (x+1, {t} x^2 + x - 1), x0 = 1", "method": "lm", "rate": rate, "r2": r2,
                         "points": int(k.size), "comparison": "|rate - |t||/|t| <= bound"})


# ------------------------------------------------------------------------------------------------
# 4-5. The gain ratio and the acceptance test
# ------------------------------------------------------------------------------------------------
def _nist(name: str, start: int) -> tuple[Residual, Residual, np.ndarray]:
    p = load_nist(name)
    return p.residuals, p.jacobian, p.start(start)


def gain_ratio_is_true_ratio(name: str = "Misra1a", start: int = 1, rule: TrustRegionRule | None = None,
                             max_nfev: int | None = None) -> TheoremCheck:
    """Each accepted step decreases F, and the ratio the method acts on is Moré's (§2)
    ``rho = (||r_k||^2 - ||r_{k+1}||^2) / (||r_k||^2 - ||r_k + J_k s_k||^2)`` recomputed from the NIST closed forms.

    Measured: the largest relative mismatch of the recorded ratio (over steps whose actual reduction exceeds
    ``1e-10 ||r_k||^2``, below which the ratio is one of two rounding errors); bound ``1e-6``; and every accepted
    step must decrease F.
    """
    fun, jac, x0 = _nist(name, start)
    _, xs, steps = run_collect(fun, x0, jac, rule=rule, max_nfev=max_nfev)
    decreasing, mismatch = True, 0.0
    for k, s in enumerate(steps):
        r0, r1, J = fun(xs[k]), fun(xs[k + 1]), jac(xs[k])
        ared = _sq(r0) - _sq(r1)
        pred = _sq(r0) - _sq(r0 + J @ (xs[k + 1] - xs[k]))
        decreasing &= bool(ared > 0)
        if abs(ared) > 1e-10 * _sq(r0):
            mismatch = max(mismatch, abs(s["ratio"] - ared / pred) / abs(ared / pred))
    holds = decreasing and len(steps) >= 3 and mismatch <= 1e-6
    return TheoremCheck("LM gain ratio = ared/pred", "accepted steps decrease F; rho = ared/pred (closed forms)",
                        MORE, mismatch, 1e-6, holds, 0.0,
                        {"problem": f"NIST {name} start {start}", "method": "lm", "decreasing": decreasing,
                         "steps": len(steps)})


def gain_ratio_thresholds(name: str = "Bennett5", start: int = 2, rule: TrustRegionRule | None = None,
                          max_nfev: int | None = None) -> TheoremCheck:
    """Both directions of the acceptance test on the trial log: every accepted trial has ``rho >= 1e-4`` and
    every rejected one ``rho < 1e-4`` (MINPACK ``lmder``'s ``p0001``).

    The trial log is every residual evaluation of the run (the solver's ``fun`` is wrapped); a trial is
    accepted iff the next iterate reported to the callback is that point. ``rho`` is recomputed from the closed
    forms at the trial's base point: ``(||r||^2 - ||r(x+p)||^2) / (||r||^2 - ||r + J p||^2)`` (non-finite
    residuals: ``-inf``). Trials with ``|rho - 1e-4| <= 1e-8`` are not judged (the recomputed ``pred`` rounds
    differently). Measured: the number of misclassified trials; bound 0; the log must hold both accepted and
    rejected trials.
    """
    fun, jac, x0 = _nist(name, start)
    _, xs, evaluated = run_trials(fun, x0, jac, rule=rule, max_nfev=max_nfev)
    base, ptr = xs[0], 0
    r0, J0 = fun(base), jac(base)
    wrong_accept = wrong_reject = n_acc = n_rej = 0
    worst = []
    for trial in evaluated[1:]:
        accepted = ptr + 1 < len(xs) and np.array_equal(trial, xs[ptr + 1])
        r1 = fun(trial)
        if np.all(np.isfinite(r1)):
            pred = _sq(r0) - _sq(r0 + J0 @ (trial - base))
            rho = (_sq(r0) - _sq(r1)) / pred if pred != 0 else 0.0
        else:
            rho = -math.inf
        if abs(rho - ACCEPT_THRESHOLD) > 1e-8:
            if accepted:
                n_acc += 1
                if rho < ACCEPT_THRESHOLD:
                    wrong_accept += 1
                    worst.append(("accepted", rho))
            else:
                n_rej += 1
                if rho >= ACCEPT_THRESHOLD:
                    wrong_reject += 1
                    worst.append(("rejected", rho))
        if accepted:
            ptr += 1
            base, r0, J0 = xs[ptr], fun(xs[ptr]), jac(xs[ptr])
    measured = float(wrong_accept + wrong_reject)
    holds = measured == 0 and n_acc >= 1 and n_rej >= 1 and ptr == len(xs) - 1
    return TheoremCheck("LM acceptance both ways", "accepted <=> rho >= 1e-4 on every trial (rho from closed forms)",
                        MORE, measured, 0.0, holds, 0.0,
                        {"problem": f"NIST {name} start {start}", "method": "lm", "accepted": n_acc,
                         "rejected": n_rej, "wrong_accept": wrong_accept, "wrong_reject": wrong_reject,
                         "examples": worst[:5]})


# ------------------------------------------------------------------------------------------------
# 6-7. Trust region and scaling
# ------------------------------------------------------------------------------------------------
def trust_region_bound(name: str = "Misra1a", start: int = 1, rule: TrustRegionRule | None = None) -> TheoremCheck:
    """``||D_k p|| <= 1.1 Delta_k`` for every step and ``| ||D_k p|| - Delta_k | <= 0.1 Delta_k`` when lambda > 0
    (the conditions MINPACK's ``lmpar`` documents for its lambda). Measured: the largest ``||D p|| / Delta``;
    bound 1.1 (slack 1e-12); and the largest damped gap at most 0.1 (>= 1 damped step)."""
    fun, jac, x0 = _nist(name, start)
    _, _, steps = run_collect(fun, x0, jac, rule=rule, **TIGHT)
    outside = max(s["step_norm"] / s["radius"] for s in steps)
    damped = [abs(s["step_norm"] - s["radius"]) / s["radius"] for s in steps if s["lam"] > 0]
    gap = max(damped, default=0.0)
    holds = outside <= 1.1 * (1 + 1e-12) and gap <= 0.1 * (1 + 1e-9) and len(damped) >= 1
    return TheoremCheck("LM trust region", "||D p|| <= 1.1 Delta; | ||D p|| - Delta | <= 0.1 Delta if lambda > 0",
                        "MINPACK-1 lmpar (Moré, Garbow & Hillstrom 1980)", outside, 1.1, holds, 1e-12,
                        {"problem": f"NIST {name} start {start}", "method": "lm", "damped_gap": gap,
                         "damped_steps": len(damped)})


def scale_invariance(x_scale: Any = None, scales=(1e3, 1e-5), name: str = "Misra1a") -> TheoremCheck:
    """With Marquardt's running-maximum scaling the iterates on ``F(S z)`` are ``S^{-1}`` times those on
    ``F(x)`` (derived: the Jacobian is ``J S``, so its column norms and D scale by S and every test sees the same
    numbers). Measured: the largest relative gap between the two iterate sequences; bound 1e-10 (rounding), the
    same number (>= 5) of iterates."""
    p = load_nist(name)
    S = np.asarray(scales, dtype=float)
    _, xa, _ = run_collect(p.residuals, p.start1, p.jacobian, x_scale=x_scale)
    _, zb, _ = run_collect(lambda z: p.residuals(S * z), p.start1 / S, lambda z: p.jacobian(S * z) * S,
                           x_scale=x_scale)
    xb = [S * z for z in zb]
    k = min(len(xa), len(xb))
    dev = max(float(np.max(np.abs(a - b) / np.abs(a))) for a, b in zip(xa[:k], xb[:k]))
    holds = len(xa) == len(xb) and len(xa) >= 5 and dev <= 1e-10
    return TheoremCheck("LM scale invariance", "iterates on F(S z) = S^{-1} iterates on F(x) (Marquardt scaling)",
                        "derived (D scales with the Jacobian's column norms)", dev, 1e-10, holds, 0.0,
                        {"problem": f"NIST {name} start 1, S = {list(S)}", "method": "lm", "iterates": (len(xa),
                                                                                                   len(xb))})


# ------------------------------------------------------------------------------------------------
# 8. Parity with MINPACK
# ------------------------------------------------------------------------------------------------
PARITY_CASES = (("Bennett5", 2), ("MGH10", 2), ("Lanczos3", 1), ("Thurber", 1))
"""NIST runs on which our nfev equals MINPACK's and an inverted lambda update after a rejected step changes it
(measured: Bennett5 2: 203 -> 351, MGH10 2: 126 -> 192, Lanczos3 1: 83 -> 125, Thurber 1: 34 -> 26)."""


def minpack_parity(name: str = "Bennett5", start: int = 2, rule: TrustRegionRule | None = None) -> TheoremCheck:
    """The run is MINPACK's ``lmder``: the same number of residual evaluations and the same solution as
    :func:`scipy.optimize.leastsq` (``Dfun`` = the NIST Jacobian, ``factor = 100``, ``ftol = xtol = 1e-8``,
    ``gtol = 0``, ``maxfev = 100 (n + 1)``) on problems with rejected trials, where the radius and lambda updates
    after a rejected step (``Delta <- mu min(Delta, 10 ||D p||)``, ``lambda <- lambda / mu``) steer the run.

    Measured: ``|nfev - nfev_MINPACK|``; bound 0; and the largest relative gap of x at most 1e-6 (the two
    codes solve the subproblem by different factorizations: QR in MINPACK, SVD here).
    """
    p = load_nist(name)
    x0 = p.start(start)
    maxfev = 100 * (x0.size + 1)
    x_ref, _, info, _, _ = leastsq(p.residuals, x0, Dfun=p.jacobian, full_output=True, ftol=1e-8, xtol=1e-8,
                                   gtol=0.0, maxfev=maxfev, factor=100)
    res = least_squares(p.residuals, x0, p.jacobian, ftol=1e-8, xtol=1e-8, gtol=1e-15, max_nfev=maxfev, rule=rule)
    dx = float(np.max(np.abs(np.asarray(res.x) - x_ref) / np.abs(x_ref)))
    measured = float(abs(res.nfev - info["nfev"]))
    holds = measured == 0 and dx <= 1e-6
    return TheoremCheck("LM = MINPACK lmder", "nfev and x equal to scipy.optimize.leastsq (MINPACK)",
                        MORE, measured, 0.0, holds, 0.0,
                        {"problem": f"NIST {name} start {start}", "method": "lm", "nfev": int(res.nfev),
                         "nfev_minpack": int(info["nfev"]), "x_gap": dx})


# ------------------------------------------------------------------------------------------------
# 9. Gauss–Newton's Armijo test
# ------------------------------------------------------------------------------------------------
def armijo_signed_slope(fun: Residual = saturating_residual, jac: Residual = saturating_residual_jac, x0=(1.0,),
                        rule: ArmijoRule | None = None, max_nfev: int = 60) -> TheoremCheck:
    """Gauss–Newton accepts the first ``t`` in ``1, beta, beta^2, ...`` (``beta = 1/2``) with Armijo's condition
    ``F(x + t p) <= F(x) + c1 t grad F(x)^T p``, ``c1 = 1e-4``, with the signed slope
    ``grad F^T p = r^T J p <= 0`` (Nocedal & Wright 2006, Algorithm 3.1, eq. (3.4)).

    Default problem: ``r(x) = x / sqrt(1 + x^2)`` from ``x0 = 1``. The Gauss–Newton (Newton) step is
    ``p = -x (1 + x^2) = -2``, landing on ``x = -1`` where F is exactly the same, so ``F(x + p) - F(x) = 0`` lies
    between ``c1 slope < 0`` and ``c1 |slope| > 0``: the signed test rejects ``t = 1`` and takes ``t = 1/2``
    (``x = 0``, the zero-residual solution), a test with ``|slope|`` accepts ``t = 1`` and oscillates.

    Recomputed from the closed forms for every accepted step (``p = (x_{k+1} - x_k)/t``): the sufficient-decrease
    excess ``[F(x_{k+1}) - F(x_k) - c1 t r^T J p] / |c1 t r^T J p|`` (measured: its maximum; bound 0, slack
    1e-9) and, for ``t < 1``, that ``t / beta`` failed the condition (the step is the first acceptable one).
    The run must converge (F below 1e-20) with at least one backtracked step.
    """
    res, xs, steps = run_collect(fun, list(x0), jac, method="gn", rule=rule, max_nfev=max_nfev)
    worst, not_first, backtracked = -math.inf, 0, 0
    for k, s in enumerate(steps):
        t = float(s["t"])
        r, J = fun(xs[k]), jac(xs[k])
        p = (xs[k + 1] - xs[k]) / t
        slope = float(r @ (J @ p))
        F0, F1 = 0.5 * _sq(r), 0.5 * _sq(fun(xs[k + 1]))
        scale = abs(ARMIJO_C1 * t * slope) or 1e-300
        worst = max(worst, (F1 - F0 - ARMIJO_C1 * t * slope) / scale)
        if t < 1.0:
            backtracked += 1
            tp = t / ARMIJO_BETA
            Fp = 0.5 * _sq(fun(xs[k] + tp * p))
            if Fp <= F0 + ARMIJO_C1 * tp * slope:
                not_first += 1
    final = 0.5 * _sq(fun(np.asarray(res.x)))
    holds = worst <= 1e-9 and not_first == 0 and backtracked >= 1 and final <= 1e-20
    return TheoremCheck("GN Armijo (signed slope)", "F(x+tp) <= F(x) + c1 t grad F^T p, first such t in beta^j",
                        "Nocedal & Wright 2006, Algorithm 3.1 and eq. (3.4)", float(worst), 0.0, holds, 1e-9,
                        {"problem": f"r = x/sqrt(1+x^2), x0 = {list(x0)}", "method": "gn", "steps": len(steps),
                         "backtracked": backtracked, "not_first": not_first, "final_cost": final,
                         "comparison": "max relative Armijo excess <= 0"})


# ------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------
def least_squares_table(quick: bool = True) -> list[TheoremCheck]:
    """Every statement of this module on its default problem (``quick``: one parity case; else all four and
    the other NIST cases of the trust-region and gain-ratio checks)."""
    rows = [
        zero_residual_error_square(),
        zero_residual_quadratic_constant(),
        large_residual_linear_rate(0.5),
        gain_ratio_is_true_ratio(),
        gain_ratio_thresholds(),
        trust_region_bound(),
        scale_invariance(),
        armijo_signed_slope(),
    ]
    cases = PARITY_CASES[:1] if quick else PARITY_CASES
    rows += [minpack_parity(n, s) for n, s in cases]
    if not quick:
        rows += [large_residual_linear_rate(t) for t in (-0.5, 0.25)]
        for n, s in (("Thurber", 1), ("MGH09", 2), ("Eckerle4", 1)):
            rows += [gain_ratio_is_true_ratio(n, s), trust_region_bound(n, s), gain_ratio_thresholds(n, s)]
    return rows
