r"""The Hessian of the total loss as a linear operator.

.. math:: H = \nabla^2_\theta \mathcal{L}(\theta),\qquad
          \mathcal{L}(\theta) = \sum_b w_b\,\mathrm{loss}(f(\theta, X_b), y_b)

(``w_b = 1`` for ``"sum"``, ``B_b/N`` for ``"mean"``; :mod:`optlib.curvature.losses`). Products are
forward-over-reverse: :math:`Hv` = JVP of :math:`\theta \mapsto \nabla\mathcal{L}_b(\theta)` in direction
:math:`v` (Pearlmutter 1994), batched over columns with :func:`torch.func.vmap`. The Hessian need not be
positive semidefinite: solves require :math:`H + \lambda I \succ 0` and raise
:class:`~optlib.linalg.FactorizationError` otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.func import grad, jvp, vmap

from .operators import Cols, CurvatureOperator, ModelCurvature

Tensor = torch.Tensor


class Hessian(ModelCurvature):
    """Hessian-vector products of the total loss over ``data`` (see :class:`ModelCurvature`)."""

    psd = False

    def _matmat(self, cols: Cols) -> Cols:
        k = next(iter(cols.values())).shape[0]
        out = self._zeros(k)
        P = self.params
        for X, y, w in self.batches():
            def L(p, X=X, y=y, w=w):
                return w * self.loss(self.forward(p, X), y)

            g = grad(L)

            def hvp(v):
                return jvp(g, (P,), (v,))[1]

            if k == 1:
                r = {n: t.unsqueeze(0) for n, t in hvp({n: c[0] for n, c in cols.items()}).items()}
            else:
                r = vmap(hvp)(cols)
            for n in self.names:
                out[n] += r[n]
        return out

    @staticmethod
    def from_problem(problem: Any, x: Tensor) -> CurvatureOperator:
        """The Hessian of an :class:`optlib.Problem` at ``x`` (products by ``problem.hvp``)."""
        return _ProblemHessian(problem, x)


class _ProblemHessian(CurvatureOperator):
    psd = False

    def __init__(self, problem: Any, x: Tensor) -> None:
        x = problem.check_x(x)
        super().__init__(["x"], [x.shape], x.dtype, x.device)
        self.problem, self.x = problem, x

    def _matmat(self, cols):
        V = cols["x"]
        return {"x": torch.stack([self.problem.hvp(self.x, v) for v in V])}

    def to_dense(self, chunk: int = 256) -> Tensor:
        H = self.problem.hessian(self.x)
        return 0.5 * (H + H.T)
