r"""Drift diagnostics: the sharpness :math:`\lambda_{max}` by Lanczos, the edge-of-stability ratio, the drift
between iterates and a flow, and the validity check of the modified-flow expansion.

* :func:`lambda_max` runs :func:`optlib.curvature.lanczos` (full reorthogonalisation) on Hessian-vector products
  (double backward) and returns the largest Ritz value, which converges to :math:`\lambda_{max}(H)` from below.
* :func:`edge_of_stability_ratio` is :math:`h\lambda_{max}/2`: GD on a quadratic diverges iff it exceeds 1, and
  full-batch training drives it to about 1 (Cohen, Kaur, Li, Kolter & Talwalkar, ICLR 2021, "Gradient Descent on
  Neural Networks Typically Occurs at the Edge of Stability").
* :func:`drift_from_flow` measures :math:`\lVert x_n - \varphi(nh)\rVert` for iterates :math:`x_n` and the flow
  :math:`\varphi` started at :math:`x_0` (matched times: step :math:`n` at :math:`t = nh`).
* Backward-error series are asymptotic: slopes and flow comparisons assume :math:`h\lambda_{max}\le 0.1`
  (:data:`EXPANSION_LIMIT`); :func:`check_expansion` warns with the measured value above it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..curvature import lanczos
from .derivatives import FlatLoss, HessianOperator, as_flat_point
from .integration import integrate

EXPANSION_LIMIT = 0.1
"""The largest :math:`h\\lambda_{max}` at which order-of-accuracy tests and flow comparisons are run."""


class DriftExpansionWarning(UserWarning):
    """A modified-flow comparison at a step size where the backward-error expansion is not valid."""


class _ParamsHessian:
    """:math:`H` of a closure ``loss_fn()`` over a list of parameter tensors, acting on flat vectors."""

    def __init__(self, loss_fn: Callable[[], Tensor], params: Sequence[Tensor]) -> None:
        self.params = list(params)
        if not self.params or not all(isinstance(p, Tensor) and p.requires_grad for p in self.params):
            raise ValueError("params must be a non-empty sequence of tensors with requires_grad=True")
        with torch.enable_grad():
            value = loss_fn()
            if not isinstance(value, Tensor) or value.numel() != 1:
                raise ValueError("loss_fn() must return a scalar tensor")
            grads = torch.autograd.grad(value.reshape(()), self.params, create_graph=True, allow_unused=True)
        self.grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
        self.sizes = [p.numel() for p in self.params]
        n = sum(self.sizes)
        self.shape = (n, n)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device
        self.products = 0

    def __matmul__(self, v: Tensor) -> Tensor:
        chunks = [c.reshape(p.shape).to(p.dtype) for c, p in zip(torch.split(v, self.sizes), self.params)]
        self.products += 1
        with torch.enable_grad():
            out = torch.autograd.grad(self.grads, self.params, grad_outputs=chunks, retain_graph=True,
                                      allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if o is None else o).reshape(-1) for p, o in zip(self.params, out)]
                         ).detach().to(self.dtype)


def hessian_operator(loss: FlatLoss | Callable[[], Tensor], params: Tensor | Sequence[Tensor]) -> Any:
    """The Hessian as an operator (``shape``, ``@``) for :func:`optlib.curvature.lanczos`: ``loss(theta)`` at a
    flat tensor ``params``, or a zero-argument ``loss()`` over a list of parameter tensors (a module's)."""
    if isinstance(params, Tensor):
        return HessianOperator(loss, params)
    return _ParamsHessian(loss, params)


def lambda_max(loss: FlatLoss | Callable[[], Tensor], params: Tensor | Sequence[Tensor], steps: int = 20,
               seed: int = 0) -> float:
    r"""The largest Hessian eigenvalue by ``steps`` Lanczos iterations (:func:`optlib.curvature.lanczos`; at most
    ``n`` are run, which is exact up to roundoff). ``loss``/``params`` as in :func:`hessian_operator`."""
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    op = hessian_operator(loss, params)
    return float(lanczos(op, steps=int(steps), seed=seed).largest(1)[0])


def edge_of_stability_ratio(h: float, lam_max: float) -> float:
    r""":math:`h\lambda_{max}/2` (1 at the edge of stability; GD on a quadratic diverges above 1)."""
    if not (math.isfinite(h) and math.isfinite(lam_max)):
        raise ValueError(f"h and lambda_max must be finite, got {h} and {lam_max}")
    return float(h) * float(lam_max) / 2.0


def check_expansion(h: float, lam_max: float, what: str = "a modified-flow comparison",
                    limit: float = EXPANSION_LIMIT) -> float:
    r"""Returns :math:`h\lambda_{max}`; warns (:class:`DriftExpansionWarning`, naming the value) when it exceeds
    ``limit``, where the backward-error expansion that ``what`` relies on is not valid."""
    value = float(h) * float(lam_max)
    if value > limit:
        warnings.warn(f"{what} assumes h * lambda_max <= {limit:g}, but the measured h * lambda_max = {value:.4g} "
                      f"(h = {h:.4g}, lambda_max = {lam_max:.4g}); the modified-flow expansion is not valid there",
                      DriftExpansionWarning, stacklevel=2)
    return value


def drift_from_flow(iterates: Sequence[Any] | Tensor | np.ndarray, rhs: Callable[[Tensor], Tensor], h: float, *,
                    loss: FlatLoss | None = None, lanczos_steps: int = 20, **integrate_options: Any) -> np.ndarray:
    r""":math:`\lVert x_n - \varphi(nh)\rVert` for ``n = 0..N-1``, with :math:`\varphi` the solution of ``rhs``
    from :math:`x_0` (:func:`optlib.drift.integrate`). Give ``loss`` to measure :math:`h\lambda_{max}` at
    :math:`x_0` and be warned when the comparison is outside the expansion's range."""
    xs = torch.stack([as_flat_point(x, "iterate") for x in iterates]) if not isinstance(iterates, Tensor) \
        else iterates.detach()
    if xs.ndim != 2 or xs.shape[0] < 1:
        raise ValueError(f"iterates must be a sequence of flat vectors, got shape {tuple(xs.shape)}")
    h = float(h)
    if not (h > 0 and math.isfinite(h)):
        raise ValueError(f"the step size h must be positive and finite, got {h}")
    if loss is not None:
        check_expansion(h, lambda_max(loss, xs[0], steps=lanczos_steps), "drift_from_flow")
    times = h * np.arange(xs.shape[0])
    flow = integrate(rhs, xs[0], times, **integrate_options)
    return (xs.to(flow.dtype) - flow).abs().pow(2).sum(dim=1).sqrt().real.cpu().numpy()
