r"""Generalized Gauss–Newton, empirical Fisher and Monte-Carlo Fisher operators.

With :math:`z_t` the loss-term rows of the output, :math:`J_t = \partial z_t/\partial\theta` and
:math:`c_b` the per-batch scale of :mod:`optlib.curvature.losses`
(:math:`\mathcal{L} = \sum_b c_b\sum_{t\in b}\ell(z_t, y_t)`):

.. math::

    G = \sum_b c_b \sum_{t\in b} J_t^\top\, \nabla^2_z\ell(z_t, y_t)\, J_t
    \qquad \text{(GGN; Schraudolph 2002)}

.. math::

    F_{\mathrm{EF}} = \sum_b c_b \sum_{t\in b} J_t^\top\, g_t g_t^\top\, J_t,\quad g_t = \nabla_z\ell(z_t, y_t)
    \qquad \text{(empirical Fisher: data labels)}

.. math::

    F_{\mathrm{MC}} = \sum_b c_b \sum_{t\in b} \frac1M\sum_{m=1}^M J_t^\top\, \tilde g_{tm}\tilde g_{tm}^\top\, J_t,
    \quad \tilde g_{tm} = \nabla_z\ell(z_t, \tilde y_{tm}),\ \tilde y_{tm}\sim p(\cdot\mid z_t)

(labels sampled from the model; :math:`\mathbb{E}[F_{\mathrm{MC}}] = G` for the three built-in losses). These
are curvlinops' ``GGNLinearOperator``, ``EFLinearOperator`` and ``FisherMCLinearOperator`` conventions
(spec 50 §2). One product (spec §2, curvlinops ``make_ggn_vector_product``):

1. :math:`(z, Jv)` — forward-mode JVP of :math:`\theta\mapsto f(\theta, X)`;
2. :math:`\Lambda Jv` — the output-space matrix (closed forms of :mod:`~optlib.curvature.losses`; autodiff for
   a :class:`~optlib.curvature.losses.CustomLoss`);
3. :math:`J^\top(\Lambda Jv)` — VJP.

For ``k`` columns, one VJP forward pass serves all of them (``vmap`` over the JVPs and over the VJP).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.func import jvp, vjp, vmap

from ..linalg.regularized import NonPSDCurvatureError
from .losses import as_loss
from .operators import Cols, CurvatureOperator, DenseCurvature, ModelCurvature

Tensor = torch.Tensor


class _OutputSpaceOperator(ModelCurvature):
    """:math:`\\sum_b J_b^\\top \\Lambda_b J_b` for an output-space PSD matrix :math:`\\Lambda_b` per batch."""

    needs_builtin = True

    def __init__(self, model_func, loss_func, params=None, data=None, *, num_data=None) -> None:
        super().__init__(model_func, loss_func, params, data, num_data=num_data)
        if self.needs_builtin and not self.loss.builtin:
            raise ValueError(f"{type(self).__name__} needs a likelihood loss (MSELoss, CrossEntropyLoss, "
                             f"BCEWithLogitsLoss), got {self.loss!r}")
        with torch.no_grad():
            for X, y in self.data:
                self.loss.check(self.forward(self.params, X), y)

    def _start(self) -> None:
        """Called once per product, before the batches (resets random state)."""
    def _output_matrix(self, z: Tensor, y: Tensor, w: float) -> Callable[[Tensor], Tensor]:
        raise NotImplementedError

    def _row_op(self, z: Tensor, fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        """Lift ``fn`` on rows ``(k, T, C)`` to outputs ``(k, *z.shape)``."""
        loss = self.loss

        def apply(U: Tensor) -> Tensor:
            Ur = vmap(loss.rows)(U)
            return loss.unrows(fn(Ur), z)

        return apply

    def _matmat(self, cols: Cols) -> Cols:
        k = next(iter(cols.values())).shape[0]
        out = self._zeros(k)
        P = self.params
        self._start()
        for X, y, w in self.batches():
            def f(p, X=X):
                return self.forward(p, X)

            if k == 1:
                v = {n: c[0] for n, c in cols.items()}
                z, Jv = jvp(f, (P,), (v,))
                HJv = self._output_matrix(z, y, w)(Jv.unsqueeze(0))[0]
                _, vjp_fn = vjp(f, P)
                r = {n: t.unsqueeze(0) for n, t in vjp_fn(HJv)[0].items()}
            else:
                z, vjp_fn = vjp(f, P)
                Jv = vmap(lambda v: jvp(f, (P,), (v,))[1])(cols)
                HJv = self._output_matrix(z.detach(), y, w)(Jv)
                r = vmap(vjp_fn)(HJv)[0]
            for n in self.names:
                out[n] += r[n]
        return out


class GGN(_OutputSpaceOperator):
    """The generalized Gauss–Newton matrix :math:`\\sum_b c_b\\sum_t J_t^\\top\\nabla^2_z\\ell\\,J_t`.

    Positive semidefinite for a loss convex in the output. A loss that is not (a
    :class:`~optlib.curvature.losses.CustomLoss` with ``convex=False``) is rejected: use :class:`Hessian`.
    For the three built-in losses this is also the true (type-2) Fisher.
    """
    needs_builtin = False

    def __init__(self, model_func, loss_func, params=None, data=None, *, num_data=None) -> None:
        loss = as_loss(loss_func)
        if not loss.convex:
            raise ValueError(f"the GGN needs a loss convex in the model output, and {loss!r} is not declared convex "
                             "(CustomLoss(..., convex=True) if it is); use Hessian instead")
        super().__init__(model_func, loss, params, data, num_data=num_data)

    def _output_matrix(self, z, y, w):
        loss = self.loss
        if not loss.builtin:
            return lambda U: w * vmap(lambda u: loss.batch_hvp(z, y, u))(U)
        c = w * loss.term_scale(z)
        zr, yr = loss.rows(z), loss.label_rows(y, z)
        return self._row_op(z, lambda Ur: c * loss.hvp_rows(zr, yr, Ur))

    @staticmethod
    def from_problem(problem: Any, x: Tensor) -> CurvatureOperator:
        """The GGN ``J^T (D^2 outer) J`` of an :class:`optlib.Problem` with ``f = outer(residuals(x))``
        (dense, from ``problem.gauss_newton``); raises :class:`~optlib.linalg.NonPSDCurvatureError` if it
        is not positive semidefinite (``outer`` not convex at the residuals): use ``Hessian.from_problem``."""
        x = problem.check_x(x)
        G = problem.gauss_newton(x)
        G = 0.5 * (G + G.T)
        evals = torch.linalg.eigvalsh(G)
        scale = float(evals.abs().max()) if evals.numel() else 0.0
        if evals.numel() and float(evals[0]) < -1e-10 * max(scale, 1e-300):
            raise NonPSDCurvatureError(
                f"the Gauss-Newton matrix of problem '{problem.name}' has eigenvalue {float(evals[0]):.3e} < 0: "
                "outer is not convex at residuals(x); use Hessian.from_problem instead")
        return DenseCurvature(G, psd=True)


class EmpiricalFisher(_OutputSpaceOperator):
    """The empirical Fisher :math:`\\sum_b c_b\\sum_t J_t^\\top g_tg_t^\\top J_t` with data labels.

    Not the Fisher: it uses the observed labels instead of the model's distribution (Kunstner, Balles &
    Hennig 2019, arXiv:1905.12558).
    """
    def _output_matrix(self, z, y, w):
        loss = self.loss
        c = w * loss.term_scale(z)
        G = loss.grad_rows(loss.rows(z), loss.label_rows(y, z))
        return self._row_op(z, lambda Ur: c * G * (G * Ur).sum(-1, keepdim=True))


class MCFisher(_OutputSpaceOperator):
    """The Monte-Carlo Fisher: labels drawn from the model, ``mc_samples`` per loss term.

    The draws come from a generator re-seeded with ``seed`` at the start of every product, so the
    operator is a fixed symmetric matrix; a different ``seed`` gives an independent estimate whose
    expectation is the GGN.
    """

    def __init__(self, model_func, loss_func, params=None, data=None, *, mc_samples: int = 1,
                 seed: int = 2147483647, num_data=None) -> None:
        if int(mc_samples) < 1:
            raise ValueError("mc_samples must be >= 1")
        self.mc_samples = int(mc_samples)
        self.seed = int(seed)
        super().__init__(model_func, loss_func, params, data, num_data=num_data)
        self._gen: torch.Generator | None = None

    def _start(self):
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(self.seed)

    def _output_matrix(self, z, y, w):
        loss = self.loss
        c = w * loss.term_scale(z) / self.mc_samples
        Gs = loss.sample_grad_rows(loss.rows(z), self.mc_samples, self._gen)  # (M, T, C)

        def fn(Ur):
            coef = torch.einsum("mtc,ktc->kmt", Gs, Ur)
            return c * torch.einsum("kmt,mtc->ktc", coef, Gs)

        return self._row_op(z, fn)
