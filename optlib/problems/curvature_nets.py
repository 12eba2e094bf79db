r"""Seeded small torch models and data sets of the curvature checks (:mod:`optlib.theory.curvature`).

float64 throughout; the same arguments give the same model and the same data (checked in
``tests/test_problems.py``).

* :func:`seeded_mlp` ``(sizes, act, bias, seed)`` - ``nn.Sequential`` of ``nn.Linear(sizes[i], sizes[i+1])``
  with ``act()`` between consecutive linear layers (none after the last), torch's default initialization
  after ``torch.manual_seed(seed)`` (this reseeds torch's global generator). With ``act=None`` and one layer
  the model is ``z = x W^T (+ b)``, linear in its parameters, so with MSE its GGN equals its Hessian; with
  ``act=None`` and several layers it is a deep linear network (linear in ``x``, not in the parameters).
* :func:`seeded_batches` ``(loss, n_in, n_out, sizes, seed)`` - a list of ``(X, y)`` batches of the given
  sizes from one ``torch.Generator`` seeded with ``seed``: ``X`` standard normal ``(B, n_in)``; ``y`` by loss:
  ``"cross_entropy"`` class indices in ``{0, .., n_out - 1}`` (int64, shape ``(B,)``), ``"bce_with_logits"``
  0/1 targets (float64, ``(B, n_out)``), otherwise (``"mse"``) standard normal ``(B, n_out)``.
* :func:`seeded_psd_system` ``(n, g_norm, seed)`` - numpy ``(C, g)``: ``C = B B^T`` (``B`` standard normal
  ``n x n``: symmetric PSD, positive definite with probability one) and ``g`` a standard normal vector rescaled
  to ``||g|| = g_norm`` (up to rounding), both from ``default_rng(seed)``; the grad-norm damping check uses
  ``n = 6``, ``||g|| = 9``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

DT = torch.float64

__all__ = ["seeded_batches", "seeded_mlp", "seeded_psd_system"]


def seeded_mlp(sizes, act=nn.Tanh, bias=True, seed=0) -> nn.Sequential:
    """Linear layers ``sizes[0] -> sizes[1] -> ...`` with ``act()`` between them, float64, torch's default
    initialization after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1], bias=bias))
        if act is not None and i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers).to(DT)


def seeded_batches(loss, n_in, n_out, sizes=(5, 3), seed=1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches ``(X, y)`` of the given sizes for ``loss`` (``"mse"``, ``"cross_entropy"`` or
    ``"bce_with_logits"``), drawn in order from one generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    data = []
    for b in sizes:
        X = torch.randn(b, n_in, generator=g, dtype=DT)
        if loss == "cross_entropy":
            y = torch.randint(0, n_out, (b,), generator=g)
        elif loss == "bce_with_logits":
            y = torch.randint(0, 2, (b, n_out), generator=g).to(DT)
        else:
            y = torch.randn(b, n_out, generator=g, dtype=DT)
        data.append((X, y))
    return data


def seeded_psd_system(n=6, g_norm=9.0, seed=3) -> tuple[np.ndarray, np.ndarray]:
    """``(C, g)``: ``C = B B^T`` with ``B`` standard normal (``n x n``) and ``g`` standard normal scaled to norm
    ``g_norm``, drawn in that order from ``np.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(n, n))
    C = B @ B.T
    g = rng.normal(size=n)
    g *= g_norm / np.linalg.norm(g)
    return C, g
