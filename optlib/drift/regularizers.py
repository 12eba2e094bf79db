r"""Explicit implicit-gradient-regularisation (IGR) penalties with the coefficient fixed by the step size.

Gradient descent with step :math:`h` follows the gradient flow of :math:`\tilde E = E + \tfrac h4\lVert\nabla
E\rVert^2` to :math:`O(h^3)` per step (Barrett & Dherin, "Implicit Gradient Regularization", ICLR 2021,
arXiv 2009.11162, Thm 3.1; :mod:`optlib.drift.flows`). Adding the penalty explicitly (to strengthen the bias
at a small step, or subtracting it to cancel it) needs :math:`\nabla\tfrac h4\lVert g\rVert^2 = \tfrac h2 Hg`:

* :func:`igr_penalty` returns :math:`\tfrac h4\lVert\nabla E\rVert^2` with its graph (double backward: the
  gradient of ``loss + penalty`` costs about two gradients);
* :func:`igr_penalty_grad_fd` returns :math:`\tfrac h2 Hg` without double backward, from gradients at shifted
  parameters along :math:`g` (finite-difference gradient regularisation, F-GR: Karakida, Takase, Hayase & Osawa,
  ICML 2022, "Understanding Gradient Regularization in Deep Learning: Efficient Finite-Difference Computation
  and Implicit Bias"): forward :math:`Hg \approx (\nabla E(\theta + \varepsilon g) - \nabla E(\theta))/
  \varepsilon` (error :math:`O(\varepsilon\lVert g\rVert^2)`) or central :math:`(\nabla E(\theta+\varepsilon g) -
  \nabla E(\theta-\varepsilon g))/(2\varepsilon)` (error :math:`O(\varepsilon^2\lVert g\rVert^3)`), with
  :math:`\varepsilon = \rho/\lVert g\rVert` so that the parameters move by :math:`\rho`.

The IGR paper writes the penalty as :math:`\lambda R_{IG}`, :math:`R_{IG} = \tfrac1m\sum_i(\partial E/\partial
\theta_i)^2` with :math:`\lambda = hm/4` (:math:`m` parameters), the same quantity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

SCHEMES = ("forward", "central")


def _params(params: Tensor | Sequence[Tensor]) -> list[Tensor]:
    group = [params] if isinstance(params, Tensor) else list(params)
    if not group or not all(isinstance(p, Tensor) for p in group):
        raise ValueError("params must be a tensor or a non-empty sequence of tensors")
    if not all(p.requires_grad for p in group):
        raise ValueError("every parameter must have requires_grad=True (the penalty differentiates the loss)")
    return group


def _step(h: float) -> float:
    h = float(h)
    if not (h > 0.0 and math.isfinite(h)):
        raise ValueError(f"the step size h must be positive and finite, got {h}")
    return h


def _loss_value(loss_fn: Callable[[], Tensor] | Tensor) -> Tensor:
    value = loss_fn() if callable(loss_fn) else loss_fn
    if not isinstance(value, Tensor) or value.numel() != 1:
        raise ValueError("the loss must be a scalar tensor (or a callable returning one)")
    return value.reshape(())


def igr_penalty(loss_fn: Callable[[], Tensor] | Tensor, params: Tensor | Sequence[Tensor], h: float) -> Tensor:
    r""":math:`\tfrac h4\lVert\nabla_{params} E\rVert^2` with its graph kept, so that
    ``(loss + igr_penalty(...)).backward()`` gives :math:`g + \tfrac h2Hg`, the IGR modified gradient.

    ``loss_fn`` is a zero-argument callable computing the loss from ``params`` (or the loss tensor already
    computed from them)."""
    h = _step(h)
    group = _params(params)
    with torch.enable_grad():
        value = _loss_value(loss_fn)
        grads = torch.autograd.grad(value, group, create_graph=True, allow_unused=True)
        sq = sum((gr * gr).sum() for gr in grads if gr is not None)
    if isinstance(sq, int):
        raise ValueError("the loss does not depend on params")
    return (h / 4.0) * sq


def igr_penalty_grad_fd(loss_fn: Callable[[], Tensor], params: Sequence[Tensor] | Tensor, h: float,
                        rho: float = 1e-4, scheme: str = "forward") -> list[Tensor]:
    r"""The gradient of the IGR penalty, :math:`\tfrac h2Hg`, by a finite difference of gradients along
    :math:`g` (F-GR, module docstring), one tensor per parameter. ``loss_fn()`` must compute the loss from the
    current values of ``params``, which are shifted in place and restored exactly (copied back)."""
    h = _step(h)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    rho = float(rho)
    if not (rho > 0.0 and math.isfinite(rho)):
        raise ValueError(f"rho (the length of the parameter shift) must be positive and finite, got {rho}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be a zero-argument callable (the parameters are shifted between calls)")
    group = _params(params)

    def grads_now() -> list[Tensor]:
        with torch.enable_grad():
            out = torch.autograd.grad(_loss_value(loss_fn), group, allow_unused=True)
        return [torch.zeros_like(p) if gr is None else gr.detach() for p, gr in zip(group, out)]

    g = grads_now()
    gnorm = math.sqrt(sum(float((gr * gr).sum()) for gr in g))
    if gnorm == 0.0:
        return [torch.zeros_like(p) for p in group]
    eps = rho / gnorm
    saved = [p.detach().clone() for p in group]

    def shifted(sign: float) -> list[Tensor]:
        with torch.no_grad():
            for p, s, gr in zip(group, saved, g):
                p.copy_(s + sign * eps * gr)
        try:
            return grads_now()
        finally:
            with torch.no_grad():
                for p, s in zip(group, saved):
                    p.copy_(s)

    plus = shifted(1.0)
    if scheme == "forward":
        hg = [(gp - g0) / eps for gp, g0 in zip(plus, g)]
    else:
        minus = shifted(-1.0)
        hg = [(gp - gm) / (2.0 * eps) for gp, gm in zip(plus, minus)]
    return [(h / 2.0) * x for x in hg]
