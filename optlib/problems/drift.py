"""Small problems with known curvature for the discretisation-drift statements (:mod:`optlib.theory.drift`):
a quadratic with prescribed Hessian eigenvalues in a seeded random basis, and a tiny tanh MLP as a loss of one
flat parameter vector. Both float64."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..drift import module_loss

__all__ = ["rotated_quadratic", "tiny_mlp_loss"]


def tiny_mlp_loss(seed: int = 0) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """A 3-4-1 tanh MLP on 8 Gaussian points, mean squared error, float64, as a loss of one flat vector
    (:func:`optlib.drift.module_loss`), and its initial parameters."""
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).to(torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.7 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    X = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(8, 1, generator=gen, dtype=torch.float64)
    return module_loss(model, lambda out: torch.mean((out - y) ** 2), X)


def rotated_quadratic(eigenvalues: Sequence[float], seed: int = 0) -> tuple[np.ndarray, Callable[[Tensor], Tensor]]:
    """``A = Q diag(eigenvalues) Q^T`` with a seeded random orthogonal ``Q``, and ``E = theta^T A theta / 2``."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues), len(eigenvalues))))
    A = (Q * np.asarray(eigenvalues, dtype=float)) @ Q.T
    A = 0.5 * (A + A.T)
    At = torch.as_tensor(A, dtype=torch.float64)
    return A, lambda theta: 0.5 * theta @ (At @ theta)
