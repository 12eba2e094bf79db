r"""The scaled linear least-squares subproblem of Gauss–Newton and Levenberg–Marquardt, by one SVD.

At an iterate with residuals :math:`r \in \mathbb R^m`, Jacobian :math:`J \in \mathbb R^{m\times n}`
and positive scaling :math:`d \in \mathbb R^n` (:math:`D = \operatorname{diag}(d)`), every step these
methods take solves, for some :math:`\lambda \ge 0`, the *augmented* least-squares problem

.. math::

    \min_p \left\| \begin{bmatrix} J \\ \sqrt\lambda\, D \end{bmatrix} p
                 + \begin{bmatrix} r \\ 0 \end{bmatrix} \right\|_2 ,
    \qquad\text{equivalently}\qquad (J^\top J + \lambda D^2)\,p = -J^\top r .

With :math:`\tilde p = Dp` and the thin SVD of the scaled Jacobian
:math:`\tilde J = J D^{-1} = U \operatorname{diag}(s) V^\top`, :math:`c = U^\top r`, its solution is

.. math::

    \tilde p(\lambda) = -V w(\lambda), \qquad
    w_i(\lambda) = \frac{s_i c_i}{s_i^2 + \lambda}\quad(\lambda > 0), \qquad
    w_i(0) = \frac{c_i}{s_i}\ \text{for } s_i > \texttt{rcond}\cdot s_1,\ 0 \text{ otherwise}

(the minimum-norm Gauss–Newton step at :math:`\lambda = 0`). One SVD per Jacobian therefore serves every
:math:`\lambda`: this is the accurate route of solving the augmented system by an orthogonal
factorization, in place of Moré's QR with column pivoting plus Givens rotations (MINPACK's ``qrfac``
and ``qrsolv``); the normal equations are never formed. The quantities the algorithms need are all in
the :math:`n`-dimensional coordinates :math:`w`: :math:`\|Dp\| = \|w\|`, :math:`\|Jp\| = \|s \odot w\|`,
:math:`\|D^{-1}J^\top r\| = \|s \odot c\|`.

:meth:`ScaledLeastSquares.lm_parameter` chooses :math:`\lambda` for a trust radius :math:`\Delta` by a
safeguarded Newton iteration on :math:`\phi(\lambda) = \|D p(\lambda)\| - \Delta` (a scheme Moré 1978
attributes to Hebden 1973) with the safeguards and constants of MINPACK's ``lmpar``: it returns
:math:`\lambda = 0` when the Gauss–Newton step satisfies :math:`\|Dp\| \le 1.1\Delta`, else a
:math:`\lambda > 0` with :math:`|\phi(\lambda)| \le 0.1\Delta` (or the value after 10 iterations). The
Newton correction is

.. math::

    \lambda_+ = \lambda + \frac{\phi(\lambda)}{\Delta}\,
      \frac{\|\tilde p\|^2}{\tilde p^\top(\tilde J^\top\tilde J + \lambda I)^{-1}\tilde p}
    = \lambda + \frac{\phi(\lambda)}{\Delta}\,\frac{\|w\|^2}{\sum_i w_i^2/(s_i^2+\lambda)},

kept inside the bracket :math:`[\lambda_l, \lambda_u]` with :math:`\lambda_u = \|s\odot c\|/\Delta` and
:math:`\lambda_l` the Newton value from :math:`\lambda = 0` when :math:`\tilde J` has full rank.

References: J. J. Moré, "The Levenberg–Marquardt algorithm: implementation and theory", in *Numerical
Analysis*, Lecture Notes in Mathematics 630, Springer (1978), 105–116; Moré, Garbow & Hillstrom, User
Guide for MINPACK-1, Argonne report ANL-80-74 (1980).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ._oracle import NumpyBackend, TorchBackend

Tensor = torch.Tensor

EPS = float(np.finfo(np.float64).eps)
TINY = float(np.finfo(np.float64).tiny)


def _norm(v: np.ndarray) -> float:
    """Euclidean norm of a short float64 vector (cheaper than ``np.linalg.norm`` for small ``n``)."""
    return math.sqrt(float(np.dot(v, v)))


class ScaledLeastSquares:
    """The SVD of ``J diag(d)^{-1}`` and the steps it gives (see the module docstring).

    Parameters
    ----------
    J : numpy.ndarray or Tensor
        The Jacobian, shape ``(m, n)``, float64 (a tensor may live on any device).
    r : numpy.ndarray or Tensor
        The residuals, shape ``(m,)``, same kind as ``J``.
    d : numpy.ndarray
        Positive scaling, shape ``(n,)``.
    rcond : float, optional
        Singular values ``<= rcond * s_max`` count as zero in the Gauss–Newton step; default
        ``max(m, n) * eps`` (as :func:`numpy.linalg.lstsq`).
    backend : optional
        The array operations (:class:`~optlib.least_squares._oracle.NumpyBackend` or
        ``TorchBackend``); inferred from ``J`` when omitted.
    """

    def __init__(self, J: Any, r: Any, d: np.ndarray, rcond: float | None = None, backend: Any = None) -> None:
        if backend is None:
            backend = TorchBackend(J.device) if isinstance(J, Tensor) else NumpyBackend()
        self.backend = backend
        m, n = J.shape
        self.d = np.asarray(d, dtype=np.float64)
        self.s, self.c, self.Vh = backend.svd_scaled(J, r, self.d)
        rcond = max(m, n) * EPS if rcond is None else float(rcond)
        cutoff = rcond * float(self.s[0]) if self.s.size else 0.0
        # the singular values come sorted, largest first: the smallest decides the rank
        self.full_rank = self.s.size == n and float(self.s[-1]) > cutoff
        self.s2 = self.s * self.s
        self.sc = self.s * self.c  # V^T D^{-1} J^T r
        self.scaled_grad_norm = _norm(self.sc)
        # w(0), its norm and its Newton ratio serve every trial at this Jacobian: computed once
        if self.full_rank:
            self._gn = self.c / self.s
        else:
            nonsingular = self.s > cutoff
            self._gn = np.zeros_like(self.c)
            self._gn[nonsingular] = self.c[nonsingular] / self.s[nonsingular]
        self._gn_sq = float(np.dot(self._gn, self._gn))
        self._gn_norm = math.sqrt(self._gn_sq)
        self._gn_ratio: float | None = None  # its Newton ratio, when first needed

    # ------------------------------------------------------------------ steps in w-coordinates
    def gauss_newton(self) -> np.ndarray:
        """``w(0)``: the minimum-norm Gauss–Newton step (``p = -D^{-1} V w``); a copy the caller may change."""
        return self._gn.copy()

    def step(self, lam: float) -> np.ndarray:
        """``w(lam)``; ``lam = 0`` is the Gauss–Newton step."""
        if lam == 0.0:
            return self.gauss_newton()
        return self.sc / (self.s2 + lam)

    def to_x(self, w: np.ndarray) -> Any:
        """The step ``p = -D^{-1} V w`` in the original variables (an array of the Jacobian's kind)."""
        return self.backend.native(-(self.Vh.T @ w) / self.d)

    def model_decrease(self, w: np.ndarray, t: float = 1.0) -> float:
        """``||r||^2 - ||r + t J p||^2`` for ``p = -D^{-1} V w`` (exact in exact arithmetic)."""
        Jp_c = self.s * w  # U^T J p = -s * w
        return float(2.0 * t * np.dot(self.c, Jp_c) - t * t * np.dot(Jp_c, Jp_c))

    def jp_norm(self, w: np.ndarray) -> float:
        """``||J p||``."""
        return _norm(self.s * w)

    # ------------------------------------------------------------------ Moré's choice of lambda
    @staticmethod
    def _newton_ratio(w: np.ndarray, ww: float, den: np.ndarray) -> float:
        """``||w||^2 / sum_i w_i^2 / den_i`` with ``ww = ||w||^2`` and ``den_i = s_i^2 + lam > 0`` (the factor of
        phi/Delta in the Newton correction; ``inf`` when the sum vanishes)."""
        q = float((w * w / den).sum())
        return ww / q if q > 0 else math.inf

    def lm_parameter(self, delta: float, lam0: float) -> tuple[float, np.ndarray, int]:
        """Moré's λ for the trust radius ``delta``, started from ``lam0`` (the previous λ).

        Returns ``(lam, w, iterations)``; see the module docstring for the conditions met.
        """
        dxnorm = self._gn_norm
        fp = dxnorm - delta
        if fp <= 0.1 * delta:
            return 0.0, self.gauss_newton(), 0
        lam_l = 0.0
        if self.full_rank:  # every s_i > 0
            if self._gn_ratio is None:
                self._gn_ratio = self._newton_ratio(self._gn, self._gn_sq, self.s2)
            lam_l = (fp / delta) * self._gn_ratio
        gnorm = self.scaled_grad_norm
        lam_u = gnorm / delta
        if lam_u == 0.0:
            lam_u = TINY / min(delta, 0.1)
        lam = min(max(lam0, lam_l), lam_u)
        if lam == 0.0:
            lam = gnorm / dxnorm
        it = 0
        while True:
            it += 1
            if lam == 0.0:
                lam = max(TINY, 1e-3 * lam_u)
            den = self.s2 + lam
            w = self.sc / den  # self.step(lam), sharing den with the Newton ratio
            ww = float(np.dot(w, w))
            dxnorm = math.sqrt(ww)
            fp_prev, fp = fp, dxnorm - delta
            if abs(fp) <= 0.1 * delta or (lam_l == 0.0 and fp <= fp_prev < 0.0) or it == 10:
                return lam, w, it
            correction = (fp / delta) * self._newton_ratio(w, ww, den)
            if fp > 0.0:
                lam_l = max(lam_l, lam)
            elif fp < 0.0:
                lam_u = min(lam_u, lam)
            lam = max(lam_l, lam + correction)
