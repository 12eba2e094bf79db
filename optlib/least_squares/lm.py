r"""Levenberg–Marquardt as a trust-region method: Moré (1978), the algorithm of MINPACK's ``lmder``.

Problem: :math:`\min_x F(x) = \tfrac12\|r(x)\|^2`, :math:`r: \mathbb R^n \to \mathbb R^m`, :math:`m \ge n`.

Iteration :math:`k` (Moré 1978: the trust-region derivation of §2; the constants are those of MINPACK's
``lmder``/``lmpar``, Moré's implementation of the paper):

1. :math:`J_k = J(x_k)`; scaling :math:`D_k = \operatorname{diag}(d_k)` with Marquardt's choice
   :math:`d_{k,j} = \max(d_{k-1,j}, \|J_k e_j\|)` (running maximum of the column norms, so that
   :math:`D_k^2 \succeq \operatorname{diag}(J_k^\top J_k)`; MINPACK's ``mode = 1``), or a fixed
   :math:`D = \operatorname{diag}(1/\texttt{x\_scale})` (``mode = 2``). With the running maximum the iterates
   are invariant under a diagonal rescaling of the variables :math:`x = Sz` (derived: the column norms,
   hence :math:`D`, scale by :math:`S`, so :math:`\|Dp\|`, :math:`\Delta_0` and every test are unchanged).
   Initial radius :math:`\Delta_0 = \texttt{factor}\cdot\|D_0x_0\|` (:math:`\texttt{factor}` if that is 0),
   with MINPACK's ``factor = 100`` by default (see "Initial step bound" below).
2. Step: :math:`p = p(\lambda)` with :math:`(J_k^\top J_k + \lambda D_k^2)\,p = -J_k^\top r_k`, where
   :math:`\lambda = 0` if the Gauss–Newton step has :math:`\|D_kp\| \le 1.1\Delta_k`, else :math:`\lambda > 0`
   with :math:`\bigl|\|D_kp\| - \Delta_k\bigr| \le 0.1\Delta_k` (:meth:`ScaledLeastSquares.lm_parameter`;
   the system is solved through an SVD of :math:`J_kD_k^{-1}`, never the normal equations). On the first
   iteration :math:`\Delta_0 \leftarrow \min(\Delta_0, \|D_0p\|)`.
3. Gain ratio :math:`\rho = \mathrm{ared}/\mathrm{pred}` with, relative to :math:`\|r_k\|^2`,

   .. math::

       \mathrm{ared} = 1 - \frac{\|r(x_k+p)\|^2}{\|r_k\|^2}\ (\text{or } -1 \text{ if } \|r(x_k+p)\| \ge 10\|r_k\|),
       \qquad
       \mathrm{pred} = \frac{\|J_kp\|^2 + 2\lambda\|D_kp\|^2}{\|r_k\|^2}
                     = \frac{\|r_k\|^2 - \|r_k + J_kp\|^2}{\|r_k\|^2}.

4. Radius: if :math:`\rho \le \tfrac14`, :math:`\Delta \leftarrow \mu\min(\Delta, 10\|Dp\|)` and
   :math:`\lambda \leftarrow \lambda/\mu`, with :math:`\mu = \tfrac12` when :math:`\mathrm{ared} \ge 0`, else
   the minimizer of the quadratic interpolating :math:`F` along :math:`p`,
   :math:`\mu = \tfrac12\,\mathrm{dir}/(\mathrm{dir} + \tfrac12\mathrm{ared})` with
   :math:`\mathrm{dir} = -(\|Jp\|^2 + \lambda\|Dp\|^2)/\|r\|^2`, clipped below at :math:`\tfrac1{10}`
   (also :math:`\mu = \tfrac1{10}` when :math:`\|r(x+p)\| \ge 10\|r\|`). If :math:`\rho \ge \tfrac34`, or
   :math:`\lambda = 0`: :math:`\Delta \leftarrow 2\|Dp\|`, :math:`\lambda \leftarrow \lambda/2`.
5. Accept :math:`x_{k+1} = x_k + p` iff :math:`\rho \ge 10^{-4}`; otherwise repeat from 2 with the new
   radius (same :math:`J_k`).

Stopping (MINPACK's tests): ``ftol`` when :math:`|\mathrm{ared}| \le \texttt{ftol}`,
:math:`\mathrm{pred} \le \texttt{ftol}` and :math:`\rho \le 2`; ``xtol`` when
:math:`\Delta \le \texttt{xtol}\,\|D x\|`; ``gtol`` when
:math:`\max_j |J_{:j}^\top r|/(\|J_{:j}\|\|r\|) \le \texttt{gtol}` (checked at each new Jacobian);
``max_nfev`` residual evaluations.

Initial step bound (the ``factor`` option). The first trial solves the subproblem for
:math:`\Delta_0 = \texttt{factor}\cdot\|D_0x_0\|`, so the first step has
:math:`\|D_0p_0\| \le 1.1\,\texttt{factor}\,\|D_0x_0\|`, and the radius grows from there by at most a
factor 2.2 per iteration (step 4: :math:`\Delta \leftarrow 2\|Dp\|` with :math:`\|Dp\| \le 1.1\Delta`).
MINPACK documents ``factor`` as "used in determining the initial step bound ... in most cases factor
should lie in the interval (.1,100.). 100. is a generally recommended value" (``lmder``'s argument list;
Moré, Garbow & Hillstrom 1980); ``scipy.optimize.leastsq`` passes it through and
``scipy.optimize.least_squares(method="lm")`` fixes it at 100. The default here is 100, MINPACK's.

A smaller value, ``factor = 1`` (the first step is at most about as long as :math:`x_0`, in the scaled
norm), is the variant for starts far from the solution. With Marquardt scaling a parameter whose Jacobian
column is small at :math:`x_0` is cheap in :math:`\|D_0p\|`, and a first step of up to
:math:`100\|D_0x_0\|` can carry it onto a plateau of the model where that column underflows: the parameter
"evaporates" to the boundary of the model manifold (Transtrum, Machta & Sethna, "Why are nonlinear fits to
data so challenging?", *Phys. Rev. Lett.* 104 (2010) 060201; Transtrum & Sethna, "Improvements to the
Levenberg–Marquardt algorithm for nonlinear least-squares minimization", arXiv:1201.5885 (2012)). There
the gradient vanishes to rounding, the Gauss–Newton step loses that direction (its singular value falls
below ``rcond``) and the ``ftol``/``xtol`` tests end the run at a point that is stationary only in
float64. NIST's BoxBOD from start 1, :math:`b = (1, 1)` with :math:`f = b_1(1 - e^{-b_2x})`, is the example:
:math:`d_{0,2} = \|J_{:2}\| = 0.48` because :math:`J_{:2} \propto b_1 = 1` (certified
:math:`b_1 = 213.8`), the first step takes :math:`b_2` from 1 to 111, :math:`e^{-b_2x}` underflows and the
run stops at :math:`b_1 = \bar y = 172.5` with RSS 9771.5 (certified 1168.0); MINPACK stalls on the same
plateau. With ``factor = 1`` every shipped NIST problem reaches its certified parameters from both starts
(so do 0.1, 0.3, 3 and 10; 30 and 100 lose BoxBOD start 1). Only :math:`\Delta_0` changes:
the run is MINPACK's ``lmder`` with that ``factor``. What it leaves unchanged is the slow progress along
narrow curved valleys: from start 1 of MGH17 and Bennett5, :math:`\rho` stays between :math:`\tfrac14` and
:math:`\tfrac34` for hundreds of iterations, so step 4 keeps :math:`\Delta` and the accepted steps have
:math:`\|Dp\| \approx \Delta` (about 500 and 765 evaluations with either ``factor``; MINPACK with 100: 597 and 763).

Departure from MINPACK (documented, on purpose): a trial point where ``fun`` returns NaN or inf is a
rejected trial with :math:`\mu = \tfrac1{10}` (as for a huge residual) and does not count for the
``ftol``/``xtol`` tests; ``max_nonfinite`` consecutive such trials stop the run with
``success=False``. A non-finite Jacobian stops the run at once.

Reference: J. J. Moré, "The Levenberg–Marquardt algorithm: implementation and theory", in *Numerical
Analysis* (G. A. Watson, ed.), Lecture Notes in Mathematics 630, Springer (1978), 105–116. MINPACK-1:
Moré, Garbow & Hillstrom, User Guide for MINPACK-1, Argonne report ANL-80-74 (1980), routines
``lmder`` (the loop, the update of the step bound and the tests above) and ``lmpar`` (the choice of
:math:`\lambda`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ._common import (
    Recorder,
    RunState,
    gradient_cosine,
    initial_scaling,
    start,
)
from ._oracle import ResidualOracle
from .subproblem import ScaledLeastSquares, _norm


def check_factor(factor: Any) -> float:
    """``factor`` as a positive finite float; ``ValueError`` naming the option otherwise."""
    try:
        value = float(factor)
    except (TypeError, ValueError):
        raise ValueError(
            f"factor (the initial step bound of Levenberg–Marquardt) must be a number, got {factor!r}"
        ) from None
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(
            f"factor (the initial step bound of Levenberg–Marquardt) must be positive and finite, got {factor!r}; "
            "MINPACK recommends a value in (0.1, 100), 100 by default"
        )
    return value


class TrustRegionRule:
    """The method-specific updates of Moré's Levenberg–Marquardt (see the module docstring).

    Subclasses change one piece at a time (the tests' "would catch" twins do).

    Parameters
    ----------
    factor : float, optional
        The initial step bound :math:`\\Delta_0 = \\text{factor}\\cdot\\|D_0x_0\\|` (MINPACK's ``factor``;
        see "Initial step bound" in the module docstring). Omitted: the class attribute, 100.

    Attributes
    ----------
    factor : float
        As above (MINPACK's default 100).
    accept_threshold : float
        A trial is accepted iff :math:`\\rho \\ge` this (:math:`10^{-4}`).
    """

    factor = 100.0
    accept_threshold = 1e-4

    def __init__(self, factor: float | None = None) -> None:
        if factor is not None:
            self.factor = check_factor(factor)

    def step(self, sub: ScaledLeastSquares, delta: float, lam: float) -> tuple[float, np.ndarray]:
        """``(lam, w)``: Moré's λ for the radius ``delta`` and its step (``p = -D^{-1}Vw``)."""
        lam, w, _ = sub.lm_parameter(delta, lam)
        return lam, w

    def update_scaling(self, d: np.ndarray, colnorms: np.ndarray) -> np.ndarray:
        """Marquardt scaling: the running maximum of the column norms of ``J``."""
        return np.maximum(d, colnorms)

    def gain_ratio(self, actred: float, prered: float) -> float:
        """:math:`\\rho = \\mathrm{ared}/\\mathrm{pred}` (0 when pred = 0)."""
        return actred / prered if prered != 0.0 else 0.0

    def update(self, *, ratio: float, actred: float, dirder: float, huge: bool, delta: float, pnorm: float,
               lam: float) -> tuple[float, float]:
        """New ``(delta, lam)`` after a trial (step 4 of the module docstring)."""
        if ratio <= 0.25:
            mu = 0.5 if actred >= 0.0 else 0.5 * dirder / (dirder + 0.5 * actred)
            if huge or mu < 0.1:
                mu = 0.1
            return mu * min(delta, pnorm / 0.1), lam / mu
        if lam == 0.0 or ratio >= 0.75:
            return pnorm / 0.5, 0.5 * lam
        return delta, lam


def run_lm(
    oracle: ResidualOracle,
    *,
    x_scale: np.ndarray | None,
    ftol: float,
    xtol: float,
    gtol: float,
    max_nfev: int,
    maxiter: int | None = None,
    rule: TrustRegionRule | None = None,
    max_nonfinite: int = 10,
    callback: Callable[..., Any] | None = None,
    progress: bool = False,
) -> tuple[RunState, Recorder]:
    """The Levenberg–Marquardt loop; returns the final state and the recorder (trace)."""
    rule = rule if rule is not None else TrustRegionRule()
    rec = Recorder(oracle, callback, progress, max_nfev, "levenberg-marquardt")
    be = oracle.backend
    x, r, fnorm = start(oracle, "lm")
    lam = 0.0
    k = 0
    d = np.ones(oracle.n)
    delta = xnorm = math.nan
    last = {"lam": math.nan, "radius": math.nan, "delta": math.nan, "ratio": math.nan, "step_norm": math.nan,
            "trials": 0}
    domain_cut = 0  # non-finite trials since the step bound last stopped binding (an accepted lam = 0 step)
    while True:
        J = oracle.jacobian(x, r)
        if not be.all_finite(J):
            return RunState(x, r, J, True, k, "nonfinite",
                            f"At iteration {k} the Jacobian has non-finite entries; x is the last accepted point."), rec
        cn = be.column_norms(J)
        g = be.host(J.T @ r)
        if k == 0:
            d = initial_scaling(cn, x_scale)
            xnorm = _norm(d * be.host(x))
            delta = rule.factor * xnorm if xnorm > 0.0 else rule.factor
        cosine = gradient_cosine(g, cn, fnorm)
        rec.record(k, 0.5 * fnorm * fnorm, g, cosine, **last)
        if cosine <= gtol:
            return RunState(x, r, J, True, k, "gtol"), rec
        if maxiter is not None and k >= maxiter:
            return RunState(x, r, J, True, k, "maxiter", f"({maxiter} iterations)"), rec
        if x_scale is None:
            d = rule.update_scaling(d, cn)
        sub = ScaledLeastSquares(J, r, d, backend=be)
        trials = nonfinite = 0
        while True:
            lam, w = rule.step(sub, delta, lam)
            p = sub.to_x(w)
            pnorm = _norm(w)
            if k == 0:
                delta = min(delta, pnorm)
            radius = delta
            x_new = x + p
            r_new = oracle.residuals(x_new)
            trials += 1
            # a finite norm proves the residuals finite: the entrywise test only when it is not (overflow or not)
            fnorm1 = be.norm(r_new)
            finite = math.isfinite(fnorm1) or be.all_finite(r_new)
            if not finite:
                fnorm1 = math.inf
            huge = not (0.1 * fnorm1 < fnorm)
            actred = -1.0 if huge else 1.0 - (fnorm1 / fnorm) ** 2
            t1 = sub.jp_norm(w) / fnorm
            t2 = math.sqrt(lam) * pnorm / fnorm
            prered = t1 * t1 + t2 * t2 / 0.5
            dirder = -(t1 * t1 + t2 * t2)
            ratio = rule.gain_ratio(actred, prered) if finite else -math.inf
            delta, lam_next = rule.update(ratio=ratio, actred=actred, dirder=dirder, huge=huge, delta=delta,
                                          pnorm=pnorm, lam=lam)
            accepted = finite and ratio >= rule.accept_threshold
            step_info = {"lam": lam, "radius": radius, "delta": delta, "ratio": ratio, "step_norm": pnorm,
                         "trials": trials}
            lam = lam_next
            if accepted:
                x, r, fnorm = x_new, r_new, fnorm1
                xnorm = _norm(d * be.host(x))
                k += 1
                last = step_info
                if step_info["lam"] == 0.0:
                    domain_cut = 0
                if rec.accepted(x, r, 0.5 * fnorm * fnorm, k, **step_info):
                    return RunState(x, r, J, False, k, "callback", last_step=last), rec
            termination = None
            if finite:
                f_ok = abs(actred) <= ftol and prered <= ftol and 0.5 * ratio <= 1.0
                x_ok = delta <= xtol * xnorm
                if f_ok or x_ok:
                    termination = "ftol+xtol" if (f_ok and x_ok) else ("ftol" if f_ok else "xtol")
            else:
                nonfinite += 1
                domain_cut += 1
            if termination is not None and domain_cut:
                # the step bound is small because trial points left the domain of fun, not because
                # the iteration converged: report it instead of a tolerance
                detail = (
                    f"At iteration {k} the {termination} test was met only because {domain_cut} trial point(s) "
                    "with non-finite residuals had cut the step bound; x is the last accepted point, at the edge "
                    "of the region where fun is finite, and need not be a minimizer."
                )
                return RunState(x, r, J, not accepted, k, "nonfinite", detail, last_step=last), rec
            if termination is not None:
                return RunState(x, r, J, not accepted, k, termination, last_step=last), rec
            if oracle.nfev >= max_nfev:
                detail = f"({max_nfev} evaluations)"
                return RunState(x, r, J, not accepted, k, "max_nfev", detail, last_step=last), rec
            if nonfinite >= max_nonfinite:
                return RunState(
                    x, r, J, True, k, "nonfinite",
                    f"At iteration {k} the residuals were not finite at {nonfinite} consecutive trial points "
                    f"(the step bound shrank to {delta:.3e}); x is the last accepted point.",
                ), rec
            if accepted:
                break
