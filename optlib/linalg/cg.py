"""Matrix-free regularized Newton steps by preconditioned conjugate gradients: an inexact solve with
forcing terms and a safe answer to negative curvature.

Solves ``(H + lam B) d = -g`` with only products ``H v`` (Hessian-vector products through
``torch.func``, or a problem's own ``hvp``), preconditioned by the metric ``B`` (so the iteration
runs on ``B^{-1/2} H B^{-1/2} + lam I``; Hestenes & Stiefel 1952), started at ``d_0 = 0``.

**The inexactness rule.** CG stops at the first iterate ``d_j`` with

    ||(H + lam B) d_j + g||_*  <=  eta * ||g||_*,        eta = min(eta_max, ||g||_*^theta),

the forcing-term rule of inexact Newton methods (Dembo, Eisenstat & Steihaug, "Inexact Newton
methods", SIAM J. Numer. Anal. 19(2):400-408, 1982): ``eta_k <= eta_max < 1`` keeps a local linear
rate, ``eta_k -> 0`` makes it superlinear and ``eta_k = O(||g_k||)`` quadratic (their Theorems 2.3
and 3.3). ``forcing="sqrt"`` (``theta = 1/2``, ``eta_max = 1/2``) is the choice of Nocedal & Wright
(2006, Algorithm 7.1) and of scipy's Newton-CG; ``forcing="gradient"`` (``theta = 1``) the quadratic
one; a number ``c`` in ``(0, 1)`` is a constant forcing term ``eta = c`` (local rate only linear: it
exists for comparisons and for the tests). ``||.||_*`` is the metric's dual norm, i.e. the residual
is measured as ``sqrt(r^T B^{-1} r)``, which preconditioned CG has at hand.
The regularized step needs no smaller tolerance than Newton's: near a minimizer ``lam_k -> 0`` and the
step tends to the Newton step, whose inexact version the theorem covers.

**The radius.** With ``H`` positive semidefinite the exact step has ``||d*|| <= ||g||_*/lam`` (since
``H + lam B >= lam B``; for the gradient-regularized method this radius is ``gamma``). CG started
at ``0`` produces iterates whose ``B``-norms increase monotonically (Steihaug 1983, Theorem 2.1,
in the preconditioner's norm; it needs only positive curvature along the directions used so far),
and they converge to ``d*``; hence **every truncated iterate also has ``||d_j|| <= ||g||_*/lam``**,
and an inexact step keeps the radius bound of the exact one.

**Negative curvature.** For non-convex ``f`` the system may be indefinite even with ``lam B``
added. CG detects it when a search direction has ``p^T (H + lam B) p <= 0``. With
``negative_curvature="boundary"`` (the default of the optimizers) the solve follows Steihaug (1983)
and Toint (1981): it returns ``d_j + tau p`` with ``tau >= 0`` chosen so that ``||d|| = ||g||_*/lam``
(for ``j = 0`` this is the normalized gradient step ``-B^{-1} g / lam``); the same truncation applies
when an iterate would leave that ball, which for PSD ``H`` never happens (by the monotonicity above).
Either way the returned step stays within the radius, is a descent direction, and decreases the
quadratic model; the method's acceptance test decides whether it is taken. With
``negative_curvature="reject"`` the solve raises :class:`FactorizationError` instead, which the
optimizers count as a rejected trial, like a failed Cholesky factorization.

When ``maxiter`` iterations pass without meeting the rule, the last iterate is returned (its norm
still obeys the radius bound); the report says so. T. Steihaug, "The conjugate gradient method and
trust regions in large scale optimization", SIAM J. Numer. Anal. 20(3):626-637, 1983.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .regularized import FactorizationError, Metric

Tensor = torch.Tensor

FORCING_RULES = {"sqrt": 0.5, "gradient": 1.0}
"""Named forcing rules ``eta = min(ETA_MAX, ||g||_*^theta)``: name -> ``theta``."""

ETA_MAX = 0.5
"""The cap ``eta_max`` of the named forcing rules (Nocedal & Wright 2006, Algorithm 7.1)."""

NEGATIVE_CURVATURE = ("boundary", "reject")

# The ways a solve ends, as reported in ``MatvecCurvature.report["cg_exit"]``.
EXIT_CONVERGED = "converged"
EXIT_NEGATIVE_CURVATURE = "negative-curvature"
EXIT_BOUNDARY = "boundary"
EXIT_MAXITER = "maxiter"


def check_forcing(forcing: Any) -> str | float:
    """Validate a ``forcing=`` option: ``"sqrt"``, ``"gradient"`` or a number in ``(0, 1)``."""
    if isinstance(forcing, str):
        if forcing in FORCING_RULES:
            return forcing
    elif isinstance(forcing, (int, float)) and not isinstance(forcing, bool):
        if 0.0 < float(forcing) < 1.0:
            return float(forcing)
    raise ValueError(
        f"forcing must be 'sqrt', 'gradient' or a constant in (0, 1), got {forcing!r}"
    )


def forcing_term(forcing: str | float, gnorm: float) -> float:
    """``eta`` for a solve whose right-hand side has dual norm ``gnorm`` (see the module docstring)."""
    if isinstance(forcing, str):
        return min(ETA_MAX, gnorm ** FORCING_RULES[forcing])
    return float(forcing)


def check_negative_curvature(value: Any) -> str:
    """Validate a ``negative_curvature=`` option."""
    if value not in NEGATIVE_CURVATURE:
        raise ValueError(f"negative_curvature must be one of {', '.join(map(repr, NEGATIVE_CURVATURE))}, got {value!r}")
    return value


def boundary_step(d: Tensor, p: Tensor, radius: float, metric: Metric) -> Tensor:
    """``d + tau p`` with ``tau >= 0`` and ``||d + tau p|| = radius`` (needs ``||d|| <= radius``).

    The positive root of ``||p||^2 tau^2 + 2 <d, p>_B tau + ||d||^2 - radius^2 = 0``, written without
    cancellation (Steihaug 1983, step 3 of his algorithm).
    """
    Bp = metric.apply(p)
    pBp = float(torch.dot(p, Bp))
    dBp = float(torch.dot(d, Bp))
    dBd = float(torch.dot(d, metric.apply(d)))
    gap = max(radius * radius - dBd, 0.0)
    root = math.sqrt(dBp * dBp + pBp * gap)
    tau = gap / (dBp + root) if dBp > 0 else (root - dBp) / pBp
    return d + tau * p


class MatvecCurvature:
    """A curvature known only through ``matvec(v) = H v``, solved by truncated CG.

    ``forcing`` is the inexactness rule (module docstring); ``rtol``, when given, is a fixed
    relative residual and overrides it (the interface of the curvature operators). ``maxiter``
    caps the CG iterations of one solve (default ``2 n``). ``negative_curvature`` is ``"reject"``
    (raise :class:`FactorizationError`) or ``"boundary"`` (Steihaug's step to ``||d|| = ||g||_*/lam``).

    After each solve, :attr:`iterations` holds its CG iterations (one product with ``H`` each) and
    :attr:`report` the numbers the optimizers put in the trace: ``cg_iterations``, ``cg_forcing``
    (``eta``), ``cg_residual`` (the relative residual ``||(H + lam B) d + g||_* / ||g||_*`` as CG
    updated it) and ``cg_exit`` (``"converged"``, ``"negative-curvature"``, ``"boundary"`` or
    ``"maxiter"``).
    """

    def __init__(self, matvec: Callable[[Tensor], Tensor], n: int, rtol: float | None = None,
                 maxiter: int | None = None, *, forcing: str | float = "sqrt",
                 negative_curvature: str = "reject") -> None:
        self.matvec = matvec
        self.n = n
        self.rtol = rtol
        self.forcing = check_forcing(forcing)
        self.maxiter = maxiter if maxiter is not None else 2 * n
        self.negative_curvature = check_negative_curvature(negative_curvature)
        self.iterations = 0  # CG iterations of the last solve
        self.report: dict[str, Any] = {}

    def eta(self, gnorm: float) -> float:
        """The relative residual a solve with right-hand side of dual norm ``gnorm`` must reach."""
        return self.rtol if self.rtol is not None else forcing_term(self.forcing, gnorm)

    def _done(self, d: Tensor, it: int, eta: float, residual: float, exit: str) -> Tensor:
        self.iterations = it
        self.report = {"cg_iterations": it, "cg_forcing": eta, "cg_residual": residual, "cg_exit": exit}
        return d

    def solve(self, g: Tensor, lam: float, metric: Metric) -> Tensor:
        """``-(H + lam B)^{-1} g`` to the forcing tolerance; see the class and module docstrings.

        Raises ``FactorizationError`` on non-positive curvature with ``negative_curvature="reject"``,
        or with ``"boundary"`` when ``lam <= 0`` (no finite radius to stop at).
        """
        gnorm = metric.dual_norm(g)
        eta = self.eta(gnorm)
        d = torch.zeros_like(g)
        if gnorm == 0.0:
            return self._done(d, 0, eta, 0.0, EXIT_CONVERGED)
        radius = gnorm / lam if lam > 0 else math.inf
        r = -g
        z = metric.inv_apply(r)
        p = z
        rz = float(torch.dot(r, z))
        for it in range(1, self.maxiter + 1):
            Ap = self.matvec(p) + lam * metric.apply(p)
            pAp = float(torch.dot(p, Ap))
            if not pAp > 0.0:
                if self.negative_curvature == "reject" or not math.isfinite(radius):
                    self.iterations = it
                    self.report = {"cg_iterations": it, "cg_forcing": eta, "cg_residual": math.sqrt(rz) / gnorm,
                                   "cg_exit": EXIT_NEGATIVE_CURVATURE}
                    raise FactorizationError(
                        f"CG met a direction of non-positive curvature at lam = {lam:.3e}: "
                        f"H + lam B is not positive definite"
                    )
                # The residual of the boundary point is not tracked: it is not the CG recursion's.
                return self._done(boundary_step(d, p, radius, metric), it, eta, math.nan, EXIT_NEGATIVE_CURVATURE)
            alpha = rz / pAp
            d_next = d + alpha * p
            if math.isfinite(radius) and self.negative_curvature == "boundary" and metric.norm(d_next) > radius:
                # Only reachable for an indefinite H (PSD H: the iterates' norms increase towards
                # ||d*|| <= radius), or within rounding of the radius.
                return self._done(boundary_step(d, p, radius, metric), it, eta, math.nan, EXIT_BOUNDARY)
            d = d_next
            r = r - alpha * Ap
            z = metric.inv_apply(r)
            rz_new = float(torch.dot(r, z))
            residual = math.sqrt(max(rz_new, 0.0))
            if residual <= eta * gnorm:
                return self._done(d, it, eta, residual / gnorm, EXIT_CONVERGED)
            p = z + (rz_new / rz) * p
            rz = rz_new
        return self._done(d, self.maxiter, eta, math.sqrt(max(rz, 0.0)) / gnorm, EXIT_MAXITER)
