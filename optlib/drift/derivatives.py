r"""Gradients and Hessian-vector products of a loss of one flat parameter vector (double backward).

Every flow of :mod:`optlib.drift` is written for a loss :math:`E:\mathbb R^n\to\mathbb R` given as a torch
function of a flat tensor ``theta`` of shape ``(n,)``. A Hessian-vector product :math:`H(\theta)v` is one more
backward pass through the gradient's graph (Pearlmutter 1994, "Fast exact multiplication by the Hessian"):
:math:`Hv = \nabla_\theta\,(\nabla E(\theta)^\top v)` with :math:`v` held fixed. :func:`module_loss` turns an
``nn.Module`` and a loss on its outputs into such a function (``torch.func.functional_call``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

FlatLoss = Callable[[Tensor], Tensor]


def as_flat_point(theta: Any, what: str = "theta") -> Tensor:
    """``theta`` as a 1-D floating tensor (a copy detached from any graph); errors name the problem."""
    t = theta if isinstance(theta, Tensor) else torch.as_tensor(theta)
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"{what} must be a non-empty flat vector of shape (n,), got shape {tuple(t.shape)}")
    if not (t.is_floating_point() or t.is_complex()):
        t = t.to(torch.get_default_dtype())
    return t.detach().clone()


def scalar_loss(loss: FlatLoss, theta: Tensor) -> Tensor:
    """``loss(theta)`` checked to be a real scalar tensor."""
    value = loss(theta)
    if not isinstance(value, Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"the loss must return a scalar tensor, got {shape}")
    if value.is_complex():
        raise ValueError("the loss must be real-valued, got a complex tensor")
    return value.reshape(())


def gradient_with_graph(loss: FlatLoss, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(theta_leaf, E(theta), grad E(theta))`` with the gradient's graph kept (``create_graph=True``) so that
    Hessian-vector products are one more backward pass."""
    leaf = theta.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        value = scalar_loss(loss, leaf)
        if not value.requires_grad:
            raise ValueError("the loss does not depend on theta through torch operations (no gradient graph)")
        (grad,) = torch.autograd.grad(value, leaf, create_graph=True)
    return leaf, value, grad


def gradient(loss: FlatLoss, theta: Tensor) -> Tensor:
    r""":math:`\nabla E(\theta)` (detached)."""
    leaf = as_flat_point(theta).requires_grad_(True)
    with torch.enable_grad():
        value = scalar_loss(loss, leaf)
        if not value.requires_grad:
            raise ValueError("the loss does not depend on theta through torch operations (no gradient graph)")
        (grad,) = torch.autograd.grad(value, leaf)
    return grad.detach()


def hvp_on_graph(leaf: Tensor, grad: Tensor, v: Tensor, keep_graph: bool = False) -> Tensor:
    r""":math:`H v = \nabla_\theta(\nabla E^\top v)` on a gradient computed by :func:`gradient_with_graph`;
    ``keep_graph=True`` returns it with its own graph (for third-derivative terms)."""
    with torch.enable_grad():
        (hv,) = torch.autograd.grad(grad, leaf, grad_outputs=v.detach(), retain_graph=True, create_graph=keep_graph,
                                    allow_unused=True)
    return torch.zeros_like(leaf) if hv is None else hv


def hvp(loss: FlatLoss, theta: Tensor, v: Tensor) -> Tensor:
    r""":math:`H(\theta)v` by double backward (detached)."""
    leaf, _, grad = gradient_with_graph(loss, as_flat_point(theta))
    if v.shape != leaf.shape:
        raise ValueError(f"v must have the shape of theta {tuple(leaf.shape)}, got {tuple(v.shape)}")
    return hvp_on_graph(leaf, grad, v.to(leaf.dtype)).detach()


def dense_hessian(loss: FlatLoss, theta: Tensor) -> Tensor:
    r"""The dense Hessian :math:`H(\theta)` (``n`` Hessian-vector products in one batched backward pass),
    symmetrized as :math:`(H + H^\top)/2`."""
    leaf, _, grad = gradient_with_graph(loss, as_flat_point(theta))
    return dense_hessian_on_graph(leaf, grad)


def dense_hessian_on_graph(leaf: Tensor, grad: Tensor) -> Tensor:
    """:func:`dense_hessian` from a gradient computed by :func:`gradient_with_graph` (no second forward pass)."""
    n = leaf.numel()
    eye = torch.eye(n, dtype=leaf.dtype, device=leaf.device)
    with torch.enable_grad():
        (rows,) = torch.autograd.grad(grad, leaf, grad_outputs=eye, is_grads_batched=True, allow_unused=True)
    H = torch.zeros(n, n, dtype=leaf.dtype, device=leaf.device) if rows is None else rows.detach()
    return 0.5 * (H + H.T)


class HessianOperator:
    """:math:`H(\\theta)` as a matrix-free operator (``shape``, ``dtype``, ``device``, ``@``) for
    :func:`optlib.curvature.lanczos`. The gradient's graph is built once and reused by every product."""

    def __init__(self, loss: FlatLoss, theta: Tensor) -> None:
        self.leaf, self.value, self.grad = gradient_with_graph(loss, as_flat_point(theta))
        n = self.leaf.numel()
        self.shape = (n, n)
        self.dtype = self.leaf.dtype
        self.device = self.leaf.device
        self.products = 0

    def __matmul__(self, v: Tensor) -> Tensor:
        if v.shape != (self.shape[0],):
            raise ValueError(f"the Hessian operator acts on vectors of shape ({self.shape[0]},), got {tuple(v.shape)}")
        self.products += 1
        return hvp_on_graph(self.leaf, self.grad, v.to(self.dtype)).detach()


def module_loss(module: torch.nn.Module, loss_fn: Callable[..., Tensor], *inputs: Any,
                params: Sequence[str] | None = None) -> tuple[FlatLoss, Tensor]:
    """A loss of one flat vector for an ``nn.Module``: ``(E, theta0)`` with
    ``E(theta) = loss_fn(module(*inputs) with parameters theta)`` (``torch.func.functional_call``) and
    ``theta0`` the module's current parameters concatenated in ``named_parameters`` order (or ``params``)."""
    named = dict(module.named_parameters())
    names = list(named) if params is None else list(params)
    unknown = [n for n in names if n not in named]
    if unknown or not names:
        raise ValueError(f"unknown or empty parameter names {unknown or names}; the module has {list(named)}")
    shapes = [named[n].shape for n in names]
    sizes = [named[n].numel() for n in names]
    theta0 = torch.cat([named[n].detach().reshape(-1) for n in names])

    def flat_loss(theta: Tensor) -> Tensor:
        if theta.shape != theta0.shape:
            raise ValueError(f"theta must have shape {tuple(theta0.shape)} (the module's parameters), "
                             f"got {tuple(theta.shape)}")
        chunks = torch.split(theta, sizes)
        values = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes)}
        return loss_fn(torch.func.functional_call(module, values, inputs))

    return flat_loss, theta0
