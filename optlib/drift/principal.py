r"""The principal flow (PF) of gradient descent: every order in :math:`h` of the Hessian-only modified-flow terms.

With the eigendecomposition :math:`H(\theta) = \sum_i\lambda_iu_iu_i^\top` and :math:`g = \nabla E(\theta)`
(Rosca, Wu, Qin & Dherin, "On a continuous time model of gradient descent dynamics and instability in deep
learning", TMLR 2023, arXiv 2302.01952; the same formula in the authors' notebook ``PF_exact_GD_convergence``):

.. math:: \dot\theta = \sum_i c(h\lambda_i)\,(u_i^\top g)\,u_i,\qquad c(x) = \frac{\log(1 - x)}{x},

with the principal branch of the complex logarithm, so that for :math:`x > 1`
:math:`\log(1 - x) = \log|1 - x| + i\pi` and the flow is complex; :math:`c(0) = -1` (the limit). The series
:math:`-\log(1-x)/x = \sum_{n\ge0}x^n/(n+1)` shows that the first-order truncation is the IGR flow. On a quadratic
:math:`E = \tfrac12\theta^\top A\theta` the flow is exact: :math:`\theta(t) = (I - hA)^{t/h}\theta_0`, so
:math:`\theta(nh)` is the ``n``-th GD iterate for every :math:`h` (including :math:`h\lambda\in(1,2)`, oscillating
and convergent, and :math:`h\lambda > 2`, divergent). The real part :math:`\operatorname{Re}c(x) = \log|1-x|/x` is
:math:`< -1` on :math:`(0,1)`, negative on :math:`(1,2)`, zero at :math:`2` and positive beyond: the PF predicts
divergence exactly where GD diverges on a quadratic.

A complex state :math:`a + ib` uses the first-order holomorphic extension of the gradient,
:math:`\nabla E(a + ib) \approx \nabla E(a) + iH(a)b` with :math:`H` and its eigenvectors taken at :math:`a`; this is
exact for quadratic losses (our choice for non-quadratic losses, where the PF drops third derivatives anyway).
The full eigendecomposition costs :math:`n` Hessian-vector products and :math:`O(n^3)` per evaluation, so the flow
refuses models above ``max_dim`` parameters.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .derivatives import FlatLoss, as_flat_point, dense_hessian_on_graph, gradient_with_graph, hvp_on_graph

DEFAULT_MAX_DIM = 1000
"""The largest parameter count :func:`principal_flow` accepts unless told otherwise."""

PARTS = ("complex", "real")


class PrincipalFlowTooLarge(ValueError):
    """The model has more parameters than the principal flow's full eigendecomposition allows."""


def principal_coefficients(eigenvalues: Tensor, h: float, part: str = "complex") -> Tensor:
    r""":math:`c(h\lambda_i) = \log(1 - h\lambda_i)/(h\lambda_i)` (principal branch; :math:`c(0) = -1`), complex
    (``part="complex"``) or its real part :math:`\log|1 - h\lambda_i|/(h\lambda_i)` (``part="real"``).

    Raises ``ValueError`` where :math:`h\lambda_i = 1` exactly (GD maps that direction to zero in one step: the
    coefficient is :math:`-\infty`)."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    lam = eigenvalues.detach().to(torch.float64)
    x = float(h) * lam
    if bool((x == 1.0).any()):
        raise ValueError(f"h * lambda = 1 exactly for an eigenvalue (lambda = {1.0 / float(h):.6g}): GD zeroes that "
                         f"direction in one step and the principal-flow coefficient log(1 - h lambda) is -inf")
    small = x.abs() < 1e-8
    safe = torch.where(small, torch.ones_like(x), x)
    magnitude = torch.log(torch.abs(1.0 - safe))
    below = safe < 1.0
    magnitude = torch.where(below, torch.log1p(-torch.where(below, safe, torch.zeros_like(safe))), magnitude)
    real = torch.where(small, -1.0 - x / 2.0, magnitude / safe)  # series -1 - x/2 - x^2/3 ... near 0
    if part == "real":
        return real
    imag = torch.where(x > 1.0, math.pi / safe, torch.zeros_like(x))
    return torch.complex(real, imag)


class PrincipalFlow:
    r"""The right-hand side of the principal flow for step ``h`` (module docstring); ``part="real"`` keeps only
    :math:`\operatorname{Re}c` (a real flow that keeps the stability prediction and drops the oscillation)."""

    def __init__(self, loss: FlatLoss, h: float, part: str = "complex", max_dim: int = DEFAULT_MAX_DIM) -> None:
        if not callable(loss):
            raise TypeError(f"loss must be a callable theta -> scalar tensor, got {type(loss).__name__}")
        h = float(h)
        if not (h > 0.0 and math.isfinite(h)):
            raise ValueError(f"the step size h must be positive and finite, got {h}")
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        if int(max_dim) < 1:
            raise ValueError(f"max_dim must be >= 1, got {max_dim}")
        self.loss, self.h, self.part, self.max_dim = loss, h, part, int(max_dim)
        self.evaluations = 0

    def coefficients(self, eigenvalues: Tensor) -> Tensor:
        """The coefficients :math:`c(h\\lambda_i)` this flow applies (see :func:`principal_coefficients`)."""
        return principal_coefficients(eigenvalues, self.h, self.part)

    def _check_size(self, n: int) -> None:
        if n > self.max_dim:
            raise PrincipalFlowTooLarge(
                f"the principal flow needs the full eigendecomposition of the {n} x {n} Hessian; {n} parameters "
                f"exceed the limit max_dim = {self.max_dim} (raise max_dim if the memory and O(n^3) time per "
                f"evaluation are acceptable, or use modified_flow)")

    def __call__(self, theta: Tensor) -> Tensor:
        theta = as_flat_point(theta)
        self._check_size(theta.numel())
        self.evaluations += 1
        if theta.is_complex():
            if self.part == "real":
                raise ValueError("the real-part principal flow takes a real parameter vector")
            a, b = theta.real.contiguous(), theta.imag.contiguous()
            leaf, _, g_graph = gradient_with_graph(self.loss, a)
            g = torch.complex(g_graph.detach(), hvp_on_graph(leaf, g_graph, b).detach())
        else:
            leaf, _, g_graph = gradient_with_graph(self.loss, theta)
            g = g_graph.detach()
        H = dense_hessian_on_graph(leaf, g_graph)
        lam, U = torch.linalg.eigh(H)
        c = self.coefficients(lam)
        if c.is_complex() or g.is_complex():
            Uc = U.to(torch.complex128 if U.dtype == torch.float64 else torch.complex64)
            return Uc @ (c.to(Uc.dtype) * (Uc.T @ g.to(Uc.dtype)))
        return U @ (c.to(U.dtype) * (U.T @ g))

    def __repr__(self) -> str:
        return f"PrincipalFlow(h={self.h}, part={self.part!r}, max_dim={self.max_dim})"


def principal_flow(loss: FlatLoss, h: float, *, part: str = "complex", max_dim: int = DEFAULT_MAX_DIM) -> PrincipalFlow:
    r"""The principal flow of GD with step ``h`` on ``loss`` (a torch function of a flat vector) as an ODE
    right-hand side. Its values are complex once some :math:`h\lambda_i > 1` (integrate with
    :func:`optlib.drift.integrate`, which then carries a complex state). Models with more than ``max_dim``
    parameters are refused with an error naming both numbers."""
    return PrincipalFlow(loss, h, part=part, max_dim=max_dim)
