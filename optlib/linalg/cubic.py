"""The cubic-regularized Newton subproblem (Nesterov & Polyak 2006, eq. (2.6) in the M/6 convention).

    minimize_d  m(d) = <g, d> + 1/2 <A d, d> + (M/6) ||d||^3,     ||d|| = sqrt(d^T B d).

A global minimizer satisfies ``g + A d + (M/2) ||d|| B d = 0`` with ``A + (M/2)||d|| B`` positive
semidefinite (Nesterov & Polyak 2006, Prop. 1), also when ``A`` is indefinite. With ``B = L L^T``
and the eigendecomposition ``L^{-1} A L^{-T} = Q diag(a) Q^T`` the condition becomes a scalar
equation in ``r = ||d||``:

    r = || (diag(a) + (M r / 2) I)^{-1} Q^T L^{-1} g ||,    r >= r_min = max(0, -2 min(a) / M),

whose right side decreases in ``r``. We solve it by Newton's method on
``psi(r) = 1/||z(r)|| - 1/r`` (the secular-equation form that converges without overshoot),
safeguarded by bisection, and handle the "hard case" (g orthogonal to the bottom eigenvector).
The eigendecomposition is computed once per point and reused for every ``M`` the search tries.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .regularized import Metric
from .spectral import SpectralCurvature

Tensor = torch.Tensor


class CubicSubproblem:
    """Eigen-factored cubic model at one point; :meth:`solve` returns the minimizer for any ``M``."""

    def __init__(self, A: Tensor, g: Tensor, metric: Metric, spectral: SpectralCurvature | None = None) -> None:
        if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] != g.shape[0]:
            raise ValueError(f"cubic subproblem: A of shape {tuple(A.shape)} does not match g of length {g.shape[0]}")
        if spectral is None:
            try:
                spectral = SpectralCurvature(A, metric)
            except ValueError as exc:
                raise ValueError(f"cubic subproblem: {exc}") from None
        self.A = A
        self.g = g
        self.metric = metric
        self.spectral = spectral
        self.a, self.Q = spectral.a, spectral.Q
        self.ghat = spectral.to_eig(g)
        self._a = self.a.detach().cpu().numpy()
        self._ghat = self.ghat.detach().cpu().numpy()

    @classmethod
    def from_spectral(cls, spectral: SpectralCurvature, g: Tensor) -> CubicSubproblem:
        """Reuse an eigendecomposition already computed for this curvature and metric."""
        return cls(spectral.H, g, spectral.metric, spectral)

    def solve(self, M: float, tol: float = 1e-15, maxiter: int = 200) -> Tensor:
        """The global minimizer ``d`` of the cubic model for regularization ``M > 0``.

        The scalar iteration runs on numpy arrays: it is ``O(n)`` per step and its cost is call
        overhead, which numpy keeps several times lower than torch for these small vectors.
        """
        if not M > 0:
            raise ValueError(f"cubic regularization M must be positive, got {M}")
        a, ghat = self._a, self._ghat
        a_min = float(a[0])
        r_min = max(0.0, -2.0 * a_min / M)
        gnorm = float(np.linalg.norm(ghat))
        if gnorm == 0.0:
            if a_min >= 0:
                return torch.zeros_like(self.g)
            return self._hard_case(M, r_min)
        # Hard case: the equation has no root above r_min when the components of g along the
        # bottom eigenspace vanish and the remaining part is too short.
        shift = a + 0.5 * M * r_min
        bottom = shift <= 1e-12 * max(1.0, abs(a_min))
        if a_min < 0 and bool(np.all(np.abs(ghat[bottom]) <= 1e-14 * gnorm)):
            if float(np.linalg.norm(ghat[~bottom] / shift[~bottom])) <= r_min:
                return self._hard_case(M, r_min)
        # w_0 = a_0 + M r/2 may vanish at the bracket's lower end and near the hard case; z_0 is
        # then recomputed below from the norm constraint.
        with np.errstate(divide="ignore", invalid="ignore"):
            r = self._root(M, r_min, tol, maxiter)
            w = a + 0.5 * M * r
            z = -ghat / w
        if a_min < 0:
            # Near the hard case w_0 is tiny and z_0 = -ghat_0/w_0 amplifies the last error in r;
            # the norm constraint ||z|| = r fixes z_0 to working accuracy instead.
            tail2 = float(np.sum(z[1:] ** 2))
            zn = math.sqrt(tail2 + float(z[0]) ** 2)
            if float(w[0]) <= 64 * np.finfo(np.float64).eps * (abs(a_min) + 0.5 * M * r) \
                    or float(z[0]) ** 2 >= 0.5 * r**2 or abs(zn - r) > 1e-12 * r:
                sign = -1.0 if float(ghat[0]) > 0 else 1.0
                z[0] = sign * math.sqrt(max(r**2 - tail2, 0.0))
        return self._to_d(z)

    def _root(self, M: float, r_min: float, tol: float, maxiter: int) -> float:
        """The root ``r > r_min`` of ``||z(r)|| = r``: safeguarded Newton on ``1/||z(r)|| - 1/r``."""
        a, ghat = self._a, self._ghat
        g2 = ghat * ghat
        # Bracket: phi(r) = ||z(r)|| - r is positive just above r_min and negative for large r.
        lo = r_min
        # Start strictly above r_min: at r_min the bottom shift vanishes and ||z|| is 0/0.
        hi = r_min + max(r_min, 1.0)
        while math.sqrt(float(np.sum(g2 / (a + 0.5 * M * hi) ** 2))) > hi:
            hi *= 2.0
        r = hi
        for _ in range(maxiter):
            w = a + 0.5 * M * r
            q = g2 / (w * w)
            z2 = float(q.sum())
            zn = math.sqrt(z2)
            psi = 1.0 / zn - 1.0 / r
            if abs(psi) * r <= tol:
                break
            if psi > 0:  # ||z|| < r: root lies below r
                hi = r
            else:
                lo = r
            dz2 = -M * float((q / w).sum())  # d(z2)/dr
            dpsi = -0.5 * dz2 / z2**1.5 + 1.0 / r**2
            r_new = r - psi / dpsi if dpsi != 0 else 0.5 * (lo + hi)
            if not (lo < r_new < hi):
                r_new = 0.5 * (lo + hi)
            if abs(r_new - r) <= tol * r:
                r = r_new
                break
            r = r_new
        return r

    def _hard_case(self, M: float, r_min: float) -> Tensor:
        a, ghat = self._a, self._ghat
        shift = a + 0.5 * M * r_min
        bottom = shift <= 1e-12 * max(1.0, abs(float(a[0])))
        z = np.zeros_like(ghat)
        z[~bottom] = -ghat[~bottom] / shift[~bottom]
        tau2 = max(r_min**2 - float(np.sum(z**2)), 0.0)
        z[int(np.flatnonzero(bottom)[0])] += math.sqrt(tau2)
        return self._to_d(z)

    def _to_d(self, z: np.ndarray) -> Tensor:
        return self.spectral.from_eig(torch.as_tensor(z, dtype=self.Q.dtype, device=self.Q.device))

    def model_value(self, d: Tensor, M: float) -> float:
        """``m(d) = <g, d> + 1/2 <A d, d> + (M/6) ||d||^3``."""
        r = self.metric.norm(d)
        return float(torch.dot(self.g, d) + 0.5 * torch.dot(d, self.A @ d)) + M / 6.0 * r**3

    def residual(self, d: Tensor, M: float) -> Tensor:
        """``g + A d + (M/2) ||d|| B d`` (zero at the minimizer)."""
        return self.g + self.A @ d + 0.5 * M * self.metric.norm(d) * self.metric.apply(d)
