r"""Modified flows of gradient descent, SGD with random shuffling and heavy-ball momentum (backward error analysis).

Backward error analysis (Hairer, Lubich & Wanner, *Geometric Numerical Integration*, IX.1) of the Euler map
:math:`x_{n+1} = x_n + hF(x_n)` gives a modified field :math:`\tilde F = F + hF_1 + h^2F_2 + \dots` whose flow at
time :math:`h` reproduces one step to the order kept, with

.. math:: F_1 = -\tfrac12 F'F, \qquad F_2 = \tfrac1{12}F''(F, F) + \tfrac13 F'F'F .

With :math:`F = -\nabla E`, :math:`g = \nabla E`, :math:`H = \nabla^2 E` the right-hand sides returned by
:func:`modified_flow` are (step :math:`n` of the method matches time :math:`t = nh`):

* ``"gradient"`` (NGF): :math:`\dot\theta = -g`; GD stays :math:`O(h^2)` per step and :math:`O(h)` over a fixed
  horizon from it.
* ``"igr"``: :math:`\dot\theta = -g - \tfrac h2 Hg = -\nabla\tilde E`, :math:`\tilde E = E + \tfrac h4\lVert
  g\rVert^2` (Barrett & Dherin, ICLR 2021, arXiv 2009.11162, Thm 3.1); :math:`O(h^3)` per step, :math:`O(h^2)`
  globally.
* ``"igr2"`` (second-order GD correction): :math:`\dot\theta = -g - \tfrac h2Hg - h^2\bigl(\tfrac13H^2g +
  \tfrac1{12}\nabla_\theta(g^\top H(\theta)g)|_{g\text{ fixed}}\bigr)` (the :math:`F_2` above; the same form as the
  reference flow :math:`v_3` in the authors' principal-flow notebook, Rosca et al., TMLR 2023, arXiv 2302.01952);
  :math:`O(h^4)` per step. The last term is a third derivative: one more backward pass.
* ``"sgd"``: one epoch visits the ``m`` minibatch losses :math:`\hat L_k` (mean :math:`L`) once each in a uniformly
  random order; the mean iterate follows :math:`\dot\theta = -\nabla L - \tfrac h{2m}\sum_k \hat H_k\hat g_k =
  -\nabla\tilde L_{SGD}`, :math:`\tilde L_{SGD} = L + \tfrac h{4m}\sum_k\lVert\nabla\hat L_k\rVert^2` (Smith,
  Dherin, Barrett & De, ICLR 2021, arXiv 2101.12176, eq. (1)); derivation: averaging the second-order term of the
  epoch map over the :math:`m!` orders gives :math:`\tfrac{h^2}2(m^2Hg - \sum_k\hat H_k\hat g_k)`, so the mean
  iterate after one epoch is :math:`O(h^3)` from this flow at :math:`t = mh` and :math:`O(h^2)` from NGF.
* ``"momentum"``: heavy ball :math:`x_{n+1} = x_n - h\nabla L(x_n) + \beta(x_n - x_{n-1})` follows
  :math:`\dot\theta = -\tfrac1{1-\beta}\bigl(g + \tfrac{h(1+\beta)}{2(1-\beta)^2}Hg\bigr) = -\tfrac1{1-\beta}
  \nabla\tilde L`, :math:`\tilde L = L + \tfrac{h(1+\beta)}{4(1-\beta)^2}\lVert g\rVert^2` (derived; agrees with
  Ghosh et al., ICLR 2023). The factor :math:`1/(1-\beta)` is in the right-hand side, so step :math:`n` matches
  :math:`t = nh`. On :math:`L = \lambda x^2/2` the dominant root :math:`r` of :math:`r^2 - (1+\beta-h\lambda)r +
  \beta = 0` has :math:`\log r = -\tfrac{h\lambda}{1-\beta} - \tfrac{(h\lambda)^2(1+\beta)}{2(1-\beta)^3} +
  O(h^3)`, the flow's factor over time :math:`h`.

Every right-hand side costs one gradient and one Hessian-vector product (double backward); ``"igr2"`` two more
backward passes, ``"sgd"`` one gradient and one product per minibatch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .derivatives import FlatLoss, as_flat_point, gradient_with_graph, hvp_on_graph, scalar_loss
from .principal import PrincipalFlow, principal_flow

KINDS = ("gradient", "igr", "igr2", "sgd", "momentum")
"""The kinds :func:`modified_flow` builds (``"ngf"`` is accepted for ``"gradient"``)."""

ALIASES = {"ngf": "gradient"}

PRINCIPAL_KINDS = ("principal", "pf")
"""Kinds that :func:`modified_flow` hands to :func:`optlib.drift.principal_flow`."""

RHS = Callable[[Tensor], Tensor]


class ModifiedFlow:
    r"""The right-hand side :math:`\theta \mapsto \dot\theta` of one modified flow (see the module docstring).

    ``rhs(theta)`` takes a flat real tensor and returns a detached tensor of the same shape. ``kind``, ``h``,
    ``beta`` and ``m`` (the number of minibatches) are kept as attributes; ``evaluations`` counts calls.
    """

    def __init__(self, loss: FlatLoss | None, kind: str, h: float, beta: float | None = None,
                 batches: Sequence[FlatLoss] | None = None) -> None:
        kind = ALIASES.get(kind, kind)
        if kind not in KINDS:
            raise ValueError(f"unknown modified-flow kind {kind!r}; use one of {', '.join(KINDS + PRINCIPAL_KINDS)}")
        h = float(h)
        if not (h > 0.0 and h < float("inf")):
            raise ValueError(f"the step size h must be positive and finite, got {h}")
        if kind == "momentum":
            if beta is None:
                raise ValueError("kind='momentum' needs beta (the heavy-ball coefficient, 0 <= beta < 1)")
            beta = float(beta)
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"beta must satisfy 0 <= beta < 1, got {beta}")
        elif beta is not None:
            raise ValueError(f"beta is only used by kind='momentum', got beta={beta} with kind={kind!r}")
        if kind == "sgd":
            if batches is None or len(batches) == 0:
                raise ValueError("kind='sgd' needs batches: the m minibatch losses of one epoch (m >= 1)")
            if not all(callable(b) for b in batches):
                raise TypeError("batches must be callables theta -> scalar minibatch loss")
            batches = list(batches)
        elif batches is not None:
            raise ValueError(f"batches are only used by kind='sgd', got {len(batches)} with kind={kind!r}")
        if loss is None and kind != "sgd":
            raise ValueError(f"kind={kind!r} needs a loss (a torch function of a flat parameter vector)")
        if loss is not None and not callable(loss):
            raise TypeError(f"loss must be a callable theta -> scalar tensor, got {type(loss).__name__}")
        self.loss, self.kind, self.h, self.beta, self.batches = loss, kind, h, beta, batches
        self.m = len(batches) if batches is not None else 1
        self.evaluations = 0
        self._consistency_checked = loss is None

    # ----------------------------------------------------------------------------------- coefficients
    def igr_coefficient(self) -> float:
        r"""The coefficient :math:`c` of :math:`Hg` in :math:`\dot\theta = -g - cHg` (GD: :math:`h/2`)."""
        return self.h / 2.0

    def second_order_coefficients(self) -> tuple[float, float]:
        r"""``(a, b)`` of the :math:`h^2` term :math:`-h^2(aH^2g + b\nabla_\theta(g^\top H(\theta)g)|_g)` of
        ``"igr2"``: :math:`(1/3, 1/12)` (the :math:`F_2` of the module docstring)."""
        return 1.0 / 3.0, 1.0 / 12.0

    def sgd_coefficient(self) -> float:
        r"""The coefficient :math:`c` of :math:`\sum_k\hat H_k\hat g_k` in the SGD flow: :math:`h/(2m)`."""
        return self.h / (2.0 * self.m)

    def momentum_coefficients(self) -> tuple[float, float]:
        r"""``(a, c)`` of :math:`\dot\theta = -a(g + cHg)`: :math:`a = 1/(1-\beta)`,
        :math:`c = h(1+\beta)/(2(1-\beta)^2)`."""
        b = self.beta
        return 1.0 / (1.0 - b), self.h * (1.0 + b) / (2.0 * (1.0 - b) ** 2)

    # ----------------------------------------------------------------------------------- evaluation
    def __call__(self, theta: Tensor) -> Tensor:
        theta = as_flat_point(theta)
        if theta.is_complex():
            raise ValueError("modified flows take a real parameter vector (the principal flow handles complex "
                             "states)")
        self.evaluations += 1
        if self.kind == "sgd":
            return self._sgd(theta)
        leaf, _, g = gradient_with_graph(self.loss, theta)
        if self.kind == "gradient":
            return -g.detach()
        if self.kind == "momentum":
            a, c = self.momentum_coefficients()
            return (-a * (g + c * hvp_on_graph(leaf, g, g))).detach()
        if self.kind == "igr":
            return (-g - self.igr_coefficient() * hvp_on_graph(leaf, g, g)).detach()
        return self._igr2(leaf, g)

    def _igr2(self, leaf: Tensor, g: Tensor) -> Tensor:
        h = self.h
        gd = g.detach()
        hg_graph = hvp_on_graph(leaf, g, gd, keep_graph=True)  # H(theta) g with g fixed, graph kept
        hg = hg_graph.detach()
        h2g = hvp_on_graph(leaf, g, hg)
        third = None
        if hg_graph.requires_grad:  # H(theta) g depends on theta (no third derivative for a quadratic)
            with torch.enable_grad():
                (third,) = torch.autograd.grad(torch.dot(hg_graph, gd), leaf, allow_unused=True)
        third = torch.zeros_like(gd) if third is None else third.detach()
        a, b = self.second_order_coefficients()
        return (-gd - self.igr_coefficient() * hg - h * h * (a * h2g + b * third)).detach()

    def _sgd(self, theta: Tensor) -> Tensor:
        total_grad = torch.zeros_like(theta)
        drift = torch.zeros_like(theta)
        values = []
        for batch in self.batches:
            leaf, value, g = gradient_with_graph(batch, theta)
            values.append(value.detach())
            total_grad += g.detach()
            drift += hvp_on_graph(leaf, g, g).detach()
        if not self._consistency_checked:
            self._check_mean(theta, torch.stack(values).mean())
        return -(total_grad / self.m) - self.sgd_coefficient() * drift

    def _check_mean(self, theta: Tensor, batch_mean: Tensor) -> None:
        full = scalar_loss(self.loss, theta).detach()
        tol = 1e-8 * max(1.0, float(full.abs()))
        if abs(float(full - batch_mean)) > tol:
            raise ValueError(f"the loss ({float(full):.12g}) is not the mean of the minibatch losses "
                             f"({float(batch_mean):.12g}) at theta; kind='sgd' needs loss = mean of batches "
                             f"(or loss=None)")
        self._consistency_checked = True

    def __repr__(self) -> str:
        extra = f", beta={self.beta}" if self.beta is not None else ""
        extra += f", m={self.m}" if self.kind == "sgd" else ""
        return f"ModifiedFlow(kind={self.kind!r}, h={self.h}{extra})"


def modified_flow(loss: FlatLoss | None, kind: str, h: float, beta: float | None = None,
                  batches: Sequence[FlatLoss] | None = None) -> ModifiedFlow | PrincipalFlow:
    r"""The modified flow of ``kind`` for step size ``h`` as an ODE right-hand side ``rhs(theta) -> theta_dot``.

    ``loss`` is a torch function of a flat parameter vector (see :func:`optlib.drift.module_loss` for a
    module). ``kind``: ``"gradient"`` (or ``"ngf"``), ``"igr"``, ``"igr2"``, ``"sgd"`` (``batches`` = the ``m``
    minibatch losses of one epoch, whose mean is ``loss``; ``loss=None`` uses that mean), ``"momentum"``
    (``beta`` = the heavy-ball coefficient). The formulas and their sources are in the module docstring;
    integrate the result with :func:`optlib.drift.integrate` and compare step ``n`` with time ``nh``.
    ``kind="principal"`` (or ``"pf"``) returns :func:`optlib.drift.principal_flow` ``(loss, h)``.
    """
    if kind in PRINCIPAL_KINDS:
        if beta is not None or batches is not None:
            raise ValueError("the principal flow is that of full-batch GD: it takes neither beta nor batches")
        if loss is None:
            raise ValueError("kind='principal' needs a loss (a torch function of a flat parameter vector)")
        return principal_flow(loss, h)
    return ModifiedFlow(loss, kind, h, beta=beta, batches=batches)
