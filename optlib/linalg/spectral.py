"""A curvature matrix eigendecomposed once in the metric's coordinates.

With ``B = L L^T`` and ``L^{-1} H L^{-T} = Q diag(a) Q^T``, every regularized system is diagonal:

    (H + lam B)^{-1} g = L^{-T} Q diag(1/(a + lam)) Q^T L^{-1} g,

so after one ``O(n^3)`` decomposition each new ``lam`` costs ``O(n^2)``. This pays off when many
``lam`` are tried on the same matrix: rejected trials of a search, a curvature kept for several
iterations (lazy Hessians), or the cubic subproblem's scalar equation.
"""

from __future__ import annotations

import torch

from .regularized import FactorizationError, LowRank, Metric, regularized_newton_step

Tensor = torch.Tensor


class SpectralCurvature:
    """``H`` (dense, diagonal or :class:`LowRank`) with its eigendecomposition in the metric ``B``."""

    def __init__(self, H: Tensor | LowRank, metric: Metric) -> None:
        if isinstance(H, LowRank):
            H = H.dense()
        elif H.ndim == 1:
            H = torch.diag(H)
        if H.ndim != 2 or H.shape[0] != H.shape[1]:
            raise ValueError(f"curvature must be a square matrix, got shape {tuple(H.shape)}")
        if not bool(torch.isfinite(H).all()):
            raise ValueError("the curvature matrix has non-finite entries")
        self.H = H
        self.metric = metric
        if metric.is_identity:
            H_t = H
        else:
            Linv_H = torch.linalg.solve_triangular(metric.chol, H, upper=False)
            H_t = torch.linalg.solve_triangular(metric.chol, Linv_H.T, upper=False).T
        self.a, self.Q = torch.linalg.eigh(0.5 * (H_t + H_t.T))

    def to_eig(self, g: Tensor) -> Tensor:
        """``Q^T L^{-1} g``: a gradient in eigen-coordinates."""
        if not self.metric.is_identity:
            g = torch.linalg.solve_triangular(self.metric.chol, g.unsqueeze(-1), upper=False).squeeze(-1)
        return self.Q.T @ g

    def from_eig(self, z: Tensor) -> Tensor:
        """``L^{-T} Q z``: a step from eigen-coordinates (so that ``||d||_B = ||z||``)."""
        d = self.Q @ z
        if self.metric.is_identity:
            return d
        return torch.linalg.solve_triangular(self.metric.chol.T, d.unsqueeze(-1), upper=True).squeeze(-1)

    def solve(self, g: Tensor, lam: float, metric: Metric | None = None) -> Tensor:
        """``-(H + lam B)^{-1} g``; raises :class:`FactorizationError` unless ``H + lam B`` is PD.

        The decomposition serves the metric it was made in. Given another ``metric``, the system
        ``(H + lam B') d = -g`` is solved directly from the stored matrix (one Cholesky
        factorization), so that a ``SpectralCurvature`` can stand wherever its dense matrix could.
        """
        if metric is not None and metric is not self.metric:
            return regularized_newton_step(self.H, g, lam, metric)
        shifted = self.a + lam
        if not float(shifted[0]) > 0.0:
            raise FactorizationError(
                f"H + lam B is not positive definite at lam = {lam:.3e} (smallest eigenvalue of H in the "
                f"metric: {float(self.a[0]):.3e})"
            )
        return -self.from_eig(self.to_eig(g) / shifted)
