"""Matrix-free regularized Newton steps by preconditioned conjugate gradients.

Solves ``(H + lam B) d = -g`` with only products ``H v`` (Hessian-vector products through
``torch.func``, or a problem's own ``hvp``), preconditioned by the metric ``B`` (so the iteration
runs on ``B^{-1/2} H B^{-1/2} + lam I``). CG (Hestenes & Stiefel 1952) stops when the residual is
below ``rtol * ||g||_*``; a direction of non-positive curvature proves that ``H + lam B`` is not
positive definite and raises :class:`FactorizationError`, which the optimizers treat as a rejected
trial. The solve is inexact by design; the methods' acceptance tests still verify every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .regularized import FactorizationError, Metric

Tensor = torch.Tensor


class MatvecCurvature:
    """A curvature known only through ``matvec(v) = H v``.

    ``rtol`` is the relative residual at which CG stops; ``None`` picks the forcing term
    ``min(0.1, sqrt(||g||_*))`` per solve (the choice of scipy's Newton-CG, Nocedal & Wright 2006,
    §7.1), which keeps the local convergence superlinear.
    """

    def __init__(self, matvec: Callable[[Tensor], Tensor], n: int, rtol: float | None = None,
                 maxiter: int | None = None) -> None:
        self.matvec = matvec
        self.n = n
        self.rtol = rtol
        self.maxiter = maxiter if maxiter is not None else 2 * n
        self.iterations = 0  # CG iterations of the last solve

    def solve(self, g: Tensor, lam: float, metric: Metric) -> Tensor:
        """``-(H + lam B)^{-1} g`` to the relative tolerance; raises ``FactorizationError``."""
        gnorm = metric.dual_norm(g)
        rtol = self.rtol if self.rtol is not None else min(0.1, math.sqrt(gnorm))
        d = torch.zeros_like(g)
        r = -g
        z = metric.inv_apply(r)
        p = z
        rz = float(torch.dot(r, z))
        for it in range(1, self.maxiter + 1):
            Ap = self.matvec(p) + lam * metric.apply(p)
            pAp = float(torch.dot(p, Ap))
            if not pAp > 0.0:
                self.iterations = it
                raise FactorizationError(
                    f"CG met a direction of non-positive curvature at lam = {lam:.3e}: H + lam B is not positive definite"
                )
            alpha = rz / pAp
            d = d + alpha * p
            r = r - alpha * Ap
            z = metric.inv_apply(r)
            rz_new = float(torch.dot(r, z))
            if math.sqrt(max(rz_new, 0.0)) <= rtol * gnorm:
                self.iterations = it
                return d
            p = z + (rz_new / rz) * p
            rz = rz_new
        self.iterations = self.maxiter
        return d
