"""Metrics and regularized Newton systems ``(H + lam B) d = -g``.

Curvature ``H`` may be

* a dense symmetric ``(n, n)`` tensor,
* a 1-D tensor (a diagonal matrix),
* :class:`LowRank` ``U diag(s) U^T`` (solved with the Woodbury identity, no ``n x n`` factorization
  once ``B`` is factored; with ``U`` a single column this is Sherman-Morrison),
* ``None`` (``H = 0``; the step is the scaled, preconditioned gradient).

A failed Cholesky factorization raises :class:`FactorizationError`; the optimizers turn it into a
rejected trial instead of taking an unverified step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from scipy.linalg.lapack import dposv as _dposv

Tensor = torch.Tensor


class FactorizationError(ValueError):
    """``H + lam B`` is not (numerically) positive definite."""


class NonPSDCurvatureError(ValueError):
    """A curvature matrix that must be positive semidefinite is not, and no regularization can fix it."""


@dataclass(frozen=True)
class LowRank:
    """``H = U diag(s) U^T`` with ``U`` of shape ``(n, k)`` and ``s >= 0`` of shape ``(k,)``."""

    U: Tensor
    s: Tensor | None = None

    def dense(self) -> Tensor:
        """``U diag(s) U^T`` as a dense matrix."""
        s = torch.ones(self.U.shape[1], dtype=self.U.dtype) if self.s is None else self.s
        return (self.U * s) @ self.U.T


class Metric:
    """A positive definite metric ``B``: ``||d|| = sqrt(d^T B d)`` and ``||g||_* = sqrt(g^T B^{-1} g)``.

    ``Metric(None)`` is the Euclidean metric (the fast path). A dense ``B`` is Cholesky-factored
    once; a non-positive-definite ``B`` raises ``ValueError``.
    """

    def __init__(self, B: Tensor | None = None) -> None:
        self.B = B
        if B is None:
            self.chol = None
            return
        if B.ndim != 2 or B.shape[0] != B.shape[1]:
            raise ValueError(f"metric B must be a square matrix, got shape {tuple(B.shape)}")
        if not torch.isfinite(B).all():
            raise ValueError("metric B has non-finite entries")
        if not torch.allclose(B, B.T, rtol=1e-10, atol=1e-12 * float(B.abs().max())):
            raise ValueError("metric B must be symmetric")
        L, info = torch.linalg.cholesky_ex(B)
        if int(info) != 0:
            raise ValueError("metric B must be positive definite (its Cholesky factorization failed)")
        self.chol = L

    @property
    def is_identity(self) -> bool:
        return self.B is None

    def check_dim(self, n: int) -> None:
        """Raise ``ValueError`` unless ``B`` is ``n x n``."""
        if self.B is not None and self.B.shape[0] != n:
            raise ValueError(f"metric B has shape {tuple(self.B.shape)} but the problem has dimension {n}")

    def apply(self, d: Tensor) -> Tensor:
        """``B d``."""
        return d if self.B is None else self.B @ d

    def inv_apply(self, g: Tensor) -> Tensor:
        """``B^{-1} g`` for a vector ``g`` or for each column of a matrix ``g``."""
        if self.B is None:
            return g
        if g.ndim == 2:
            return torch.cholesky_solve(g, self.chol)
        return torch.cholesky_solve(g.unsqueeze(-1), self.chol).squeeze(-1)

    def norm(self, d: Tensor) -> float:
        """The primal norm ``sqrt(d^T B d)``."""
        return float(torch.sqrt(torch.dot(d, self.apply(d))))

    def dual_norm(self, g: Tensor) -> float:
        """The dual norm ``sqrt(g^T B^{-1} g)``."""
        return float(torch.sqrt(torch.dot(g, self.inv_apply(g))))

    def dense(self, n: int, dtype: torch.dtype = torch.float64) -> Tensor:
        """``B`` as a dense matrix (the identity when Euclidean)."""
        return torch.eye(n, dtype=dtype) if self.B is None else self.B


def as_metric(B: Any) -> Metric:
    """A :class:`Metric` from ``None`` (identity), a matrix, or a ``Metric``."""
    if isinstance(B, Metric):
        return B
    if B is None:
        return Metric(None)
    return Metric(torch.as_tensor(B, dtype=torch.float64))


def regularized_newton_step(H: Any, g: Tensor, lam: float, metric: Metric) -> Tensor:
    """Solve ``(H + lam B) d = -g`` for the step ``d``.

    ``H`` is a dense or diagonal tensor, a :class:`LowRank`, ``None`` (``H = 0``), or a
    pre-factored curvature with a ``solve(g, lam, metric)`` method
    (:class:`~optlib.linalg.SpectralCurvature`, :class:`~optlib.linalg.MatvecCurvature`).
    Raises :class:`FactorizationError` when ``H + lam B`` is not positive definite (for example an
    indefinite ``H`` with too small ``lam``) or the solution is not finite.
    """
    if isinstance(H, Tensor):
        if H.ndim == 2:
            d = _dense_step(H, g, lam, metric)
        elif metric.is_identity:
            diag = H + lam
            if not bool((diag > 0).all()):
                raise FactorizationError("H + lam I is not positive definite (a diagonal entry is <= 0)")
            d = -g / diag
        else:
            d = _dense_step(torch.diag(H), g, lam, metric)
    elif H is None:
        if lam <= 0:
            raise FactorizationError("H = 0 needs lam > 0")
        d = -metric.inv_apply(g) / lam
    elif isinstance(H, LowRank):
        d = _woodbury_step(H, g, lam, metric)
    else:
        d = H.solve(g, lam, metric)
    # d.d is finite iff every entry is (an overflow counts as a failure too); one reduction
    # instead of an isfinite pass, since this runs on every trial.
    dd = float(d.numpy() @ d.numpy()) if d.device.type == "cpu" else float(torch.dot(d, d))
    if not math.isfinite(dd):
        raise FactorizationError("the regularized Newton step is not finite")
    return d


def _dense_step(H: Tensor, g: Tensor, lam: float, metric: Metric) -> Tensor:
    if H.device.type == "cpu" and H.dtype == torch.float64 and g.dtype == torch.float64:
        return _dense_step_lapack(H, g, lam, metric)
    if metric.B is None:
        A = H.clone()
        A.diagonal().add_(lam)
    else:
        A = H + lam * metric.B
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        raise _not_pd(lam)
    return -torch.cholesky_solve(g.unsqueeze(-1), L).squeeze(-1)


def _dense_step_lapack(H: Tensor, g: Tensor, lam: float, metric: Metric) -> Tensor:
    """The same solve through LAPACK's ``dposv`` (Cholesky factor and solve in one call) on numpy
    views: for the small dense systems of second-order methods this halves the per-trial cost,
    which is dominated by call overhead, not arithmetic."""
    Hn = H.detach().numpy()
    if metric.B is None:
        A = Hn.copy()
        A.flat[:: A.shape[0] + 1] += lam
    else:
        A = Hn + lam * metric.B.detach().numpy()
    _, x, info = _dposv(A, g.detach().numpy(), lower=1, overwrite_a=1, overwrite_b=0)
    if info != 0:
        raise _not_pd(lam)
    return torch.from_numpy(-x)


def _not_pd(lam: float) -> FactorizationError:
    return FactorizationError(f"Cholesky of H + lam B failed at lam = {lam:.3e}: the matrix is not positive definite")


def _woodbury_step(H: LowRank, g: Tensor, lam: float, metric: Metric) -> Tensor:
    """(lam B + U S U^T)^{-1} g = (1/lam)[B^{-1}g - B^{-1}U (lam S^{-1} + U^T B^{-1} U)^{-1} U^T B^{-1} g].

    Written with S^{1/2} folded into U so that zero weights are allowed.
    """
    if lam <= 0:
        raise FactorizationError("a low-rank curvature needs lam > 0")
    U = H.U if H.s is None else H.U * torch.sqrt(torch.clamp(H.s, min=0.0))
    if H.s is not None and bool((H.s < 0).any()):
        raise FactorizationError("low-rank curvature has a negative weight (not PSD)")
    Binv_g = metric.inv_apply(g)
    Binv_U = metric.inv_apply(U)
    k = U.shape[1]
    small = lam * torch.eye(k, dtype=g.dtype) + U.T @ Binv_U
    L, info = torch.linalg.cholesky_ex(small)
    if int(info) != 0:
        raise FactorizationError("the Woodbury capacitance matrix is not positive definite")
    corr = Binv_U @ torch.cholesky_solve((U.T @ Binv_g).unsqueeze(-1), L).squeeze(-1)
    return -(Binv_g - corr) / lam
