"""Theorem checks for the Hessian-free (inexact) gradient-regularized Newton method (``solver="cg"``).

The regularized system ``(H + lam B) d = -g`` is solved by truncated, ``B``-preconditioned conjugate
gradients on Hessian-vector products (:mod:`optlib.linalg.cg`), stopped by the forcing-term rule

    ||(H + lam B) d + g||_*  <=  eta_k ||g_k||_*,      eta_k = min(1/2, ||g_k||_*^theta)

(Dembo, Eisenstat & Steihaug 1982; ``theta = 1/2`` is Nocedal & Wright 2006, Algorithm 7.1), with
Steihaug's (1983) step to the radius on negative curvature. What the exact method guarantees and the
inexact one keeps:

====  ===============================================  ==========================================
 I1   acceptance invariant, both directions            reuse :func:`~optlib.theory.regularized_newton.acceptance_invariant`,
                                                       :func:`~optlib.theory.regularized_newton.acceptance_both_ways`
 I2   ``||d|| <= gamma`` for every truncated step      reuse :func:`~optlib.theory.regularized_newton.step_within_radius`
 I3   the residual rule at every trial                 :func:`cg_residual_rule`
 I4   local superlinear rate when ``eta_k -> 0``       reuse :func:`~optlib.theory.regularized_newton.local_superlinear`,
                                                       plus :func:`forcing_vanishes`
 I5   every Hessian-vector product accounted for       :func:`hvp_accounting`
====  ===============================================  ==========================================

I1 holds because the driver verifies each step with the method's own test, whatever the solve
returned. I2 (derived): with ``H`` PSD the exact step has ``||d*|| <= ||g||_*/lam = gamma``; CG from
``d_0 = 0`` has monotonically increasing ``B``-norms ``||d_j||`` (Steihaug 1983, Thm 2.1, in the
preconditioner's norm) converging to ``d*``, so every truncated iterate obeys the same bound; the
Steihaug exits land exactly on ``||d|| = gamma``, so with ``negative_curvature="boundary"`` the bound
holds even for indefinite ``H``. I4: Dembo, Eisenstat & Steihaug (1982), Thm 3.3: ``eta_k -> 0``
gives a superlinear rate for the inexact Newton iteration; here ``lam_k = ||g_k||_*/gamma_k -> 0`` as
well, so the step tends to the inexact Newton step. A constant ``eta`` gives only a linear rate (their
Thm 2.3), which is the "would catch" twin of I4.

Every check takes the trial log of an :class:`InexactTrialRecorder` (the production
:class:`~optlib.theory.regularized_newton.TrialRecorder` that also keeps each trial's solve: its CG
report, ``g``, ``d``, ``lam``, the metric and the curvature's products) and recomputes what it asserts
from those tensors and the problem's own Hessian-vector products, never from the solver's report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..linalg.cg import EXIT_BOUNDARY, EXIT_CONVERGED, EXIT_MAXITER, EXIT_NEGATIVE_CURVATURE
from ..result import OptimizeResult, Trace
from ..second_order.driver import Point, Trial
from .common import TheoremCheck, as_trace, le_with_slack
from .regularized_newton import TrialRecorder

DES = "Dembo, Eisenstat & Steihaug 1982, SIAM J. Numer. Anal. 19(2):400-408"
STEIHAUG = "Steihaug 1983, SIAM J. Numer. Anal. 20(3):626-637"

__all__ = ["InexactTrialRecorder", "cg_residual_rule", "forcing_rule", "forcing_vanishes", "hvp_accounting"]


class InexactTrialRecorder(TrialRecorder):
    """A :class:`TrialRecorder` that also keeps what each CG solve did.

    Every trial's entry gets the solve's report as the curvature left it (``cg_iterations``,
    ``cg_forcing``, ``cg_residual``, ``cg_exit``; for a solve that raised, its report up to the
    failure) and, for the independent recomputations, ``g``, ``d``, ``lam_solve`` (the ``lam`` of the
    system), the metric and ``matvec`` (the curvature's product ``v -> H v`` at that iterate). The
    report is read right after the rule's ``propose``, so it describes the last solve of that trial.
    """

    def propose(self, pt: Point, sigma: float) -> Trial:
        try:
            trial = super().propose(pt, sigma)
        except Exception:
            if self.trials:
                self.trials[-1].update(getattr(pt.H, "report", {}))
            raise
        entry = self.trials[-1]
        entry.update(getattr(pt.H, "report", {}))
        entry.update(g=pt.g, d=trial.d, lam_solve=float(trial.lam), metric=pt.metric,
                     matvec=getattr(pt.H, "matvec", None))
        return trial


def forcing_rule(forcing: str | float, gnorm: float) -> float:
    """``eta`` of the stated rule, written out here rather than taken from the solver (so that a solver
    whose forcing term drifts from the statement is caught): ``min(1/2, ||g||_*^(1/2))`` for
    ``"sqrt"``, ``min(1/2, ||g||_*)`` for ``"gradient"``, the constant itself otherwise."""
    if forcing == "sqrt":
        return min(0.5, math.sqrt(gnorm))
    if forcing == "gradient":
        return min(0.5, gnorm)
    return float(forcing)


def _log(trials: TrialRecorder | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return list(trials.trials if isinstance(trials, TrialRecorder) else trials)


def cg_residual_rule(
    trials: InexactTrialRecorder | Sequence[Mapping[str, Any]],
    forcing: str | float = "sqrt",
    *,
    cg_maxiter: int | None = None,
    slack: float = 1e-8,
    radius_slack: float = 1e-10,
) -> TheoremCheck:
    """Statement I3: every CG trial meets the inexactness rule it was run with, or is a documented exit.

    For each logged trial the true residual ``rho = ||(H + lam B) d + g||_* / ||g||_*`` is recomputed
    from ``d`` with the problem's own products (not CG's recursive residual), and ``eta`` from
    ``forcing`` and ``||g||_*`` by :func:`forcing_rule` (the rule stated in :mod:`optlib.linalg.cg`,
    restated independently; Dembo, Eisenstat & Steihaug 1982). A trial

    * that stopped as converged must have ``rho <= eta (1 + slack) + 1e-13`` (the slack covers the
      drift between CG's updated residual and the recomputed one, about ``kappa * eps``);
    * that stopped at the radius (negative curvature or leaving the ball; Steihaug 1983) must have
      ``||d|| = ||g||_*/lam`` to ``radius_slack`` relative;
    * that stopped at the cap must have used ``cg_maxiter`` iterations (when ``cg_maxiter`` is given).

    ``measured`` = the number of violations, ``bound = 0``; ``holds`` also needs a converged trial.
    """
    violations: list[int] = []
    worst = 0.0
    exits = {EXIT_CONVERGED: 0, EXIT_BOUNDARY: 0, EXIT_NEGATIVE_CURVATURE: 0, EXIT_MAXITER: 0}
    for i, e in enumerate(_log(trials)):
        if "cg_exit" not in e or e.get("matvec") is None:
            continue
        exit_ = e["cg_exit"]
        exits[exit_] = exits.get(exit_, 0) + 1
        g, d, lam, metric = e["g"], e["d"], float(e["lam_solve"]), e["metric"]
        gnorm = metric.dual_norm(g)
        if gnorm == 0.0:
            continue
        if exit_ == EXIT_CONVERGED:
            r = e["matvec"](d) + lam * metric.apply(d) + g
            rho = metric.dual_norm(r) / gnorm
            eta = forcing_rule(forcing, gnorm)
            worst = max(worst, rho / eta)
            if not rho <= eta * (1.0 + slack) + 1e-13:
                violations.append(i)
        elif exit_ in (EXIT_BOUNDARY, EXIT_NEGATIVE_CURVATURE):
            if not abs(metric.norm(d) * lam / gnorm - 1.0) <= radius_slack:
                violations.append(i)
        elif exit_ == EXIT_MAXITER and cg_maxiter is not None and int(e["cg_iterations"]) != cg_maxiter:
            violations.append(i)
    return TheoremCheck(
        name="I3 CG residual rule",
        statement="||(H + lam B) d + g||_* <= eta_k ||g_k||_*, eta_k = min(1/2, ||g_k||_*^theta), at every "
        "converged CG exit; ||d|| = ||g||_*/lam at Steihaug exits",
        source=f"{DES} (forcing terms); {STEIHAUG} (boundary exits); recomputed with the problem's products",
        measured=float(len(violations)),
        bound=0.0,
        holds=not violations and exits[EXIT_CONVERGED] > 0,
        slack=slack,
        details={
            "comparison": "no violation, and >= 1 converged exit",
            "forcing": forcing,
            "violations": violations[:20],
            "worst_rho_over_eta": worst,
            "exits": exits,
        },
    )


def forcing_vanishes(run: OptimizeResult | Trace, *, last: int = 2, bound: float = 1e-2) -> TheoremCheck:
    """Statement I4, its premise: the forcing terms ``eta_k`` of the accepted steps tend to 0.

    Dembo, Eisenstat & Steihaug (1982), Thm 3.3: superlinear convergence of an inexact Newton method
    needs (and, near a strong minimizer, is given by) ``eta_k -> 0``. ``measured`` = the largest
    ``cg_forcing`` among the last ``last`` accepted steps, ``bound`` = ``bound``.
    """
    etas = as_trace(run).column("cg_forcing")[1:]
    etas = etas[np.isfinite(etas)]
    tail = etas[-last:]
    measured = float(tail.max()) if tail.size else math.nan
    return TheoremCheck(
        name="I4 forcing terms vanish",
        statement="eta_k -> 0: max of the last forcing terms <= bound",
        source=f"{DES}, Thm 3.3",
        measured=measured,
        bound=bound,
        holds=bool(tail.size) and le_with_slack(measured, bound, 0.0),
        details={"comparison": "measured <= bound", "etas": etas.tolist()},
    )


def hvp_accounting(run: OptimizeResult, trials: InexactTrialRecorder | Sequence[Mapping[str, Any]]) -> TheoremCheck:
    """Statement I5: the run's ``nhvp`` equals the CG iterations of all its trials (one product each),
    and a Hessian-free run evaluates no Hessian (``nhev = 0``).

    Derived from the algorithm: preconditioned CG from ``d_0 = 0`` needs one product ``H p`` per
    iteration and none to start (``r_0 = -g``). Every trial must carry its solve's report (checked).
    ``measured = |nhvp - sum of cg_iterations| + nhev``, ``bound = 0``.
    """
    log = _log(trials)
    total = sum(int(e["cg_iterations"]) for e in log if "cg_iterations" in e)
    unlogged = sum(1 for e in log if "cg_iterations" not in e)
    measured = abs(int(run["nhvp"]) - total) + int(run["nhev"])
    return TheoremCheck(
        name="I5 Hessian-vector products accounted",
        statement="nhvp = sum over trials of CG iterations; nhev = 0",
        source="derived (one product per CG iteration)",
        measured=float(measured),
        bound=0.0,
        holds=measured == 0 and unlogged == 0 and total > 0,
        details={"comparison": "measured == 0", "nhvp": int(run["nhvp"]), "cg_iterations": total,
                 "nhev": int(run["nhev"]), "unlogged_trials": unlogged},
    )
