r"""AWQ, activation-aware weight quantization (Lin et al., MLSys 2024, arXiv:2306.00978): a per-input-channel
scale searched on a grid, folded like SmoothQuant's, then RTN.

For a mapping (the linear layers :math:`W^{(\ell)}` that read one input :math:`X`, ``[n, in]``) and
:math:`\bar x_j = \mathrm{mean}_t |X_{tj}|` (paper §3.2, eq. 4–5; grid and "duo scaling" as in llm-compressor's
``_compute_best_scale``):

.. math::

    s(\alpha) = \bar x^{\alpha}\ \ \text{or, with duo scaling,}\ \ \frac{\bar x^{\alpha}}{\bar w^{1-\alpha} + 10^{-4}},
    \quad s \leftarrow \max(s, 10^{-4}),\quad s \leftarrow s / \sqrt{\max s\cdot\min s},

    \alpha^\star = \arg\min_{\alpha \in \{0, 1/N, \dots, (N-1)/N\}}
    \sum_\ell \bigl\lVert X\,\mathrm{diag}(s)^{-1}\,Q\bigl(W^{(\ell)}\mathrm{diag}(s)\bigr)^{\top} - X W^{(\ell)\top}
    \bigr\rVert_F^2,

with :math:`Q` the group RTN of :mod:`scale.quantize.rtn` and :math:`\bar w_j` the mean over output rows of
:math:`|W_{rj}|` divided by the max of :math:`|W|` in its (row, group). :math:`N` = ``n_grid`` = 20.

Differences from the references: the loss is the output of the mapping's linear layers themselves (llm-compressor
and AutoAWQ use the output of the parent module, e.g. the whole attention block), and AutoAWQ's weight-clipping
search (``auto_clip``) is not done. Without duo scaling, :math:`\alpha = 0` gives :math:`s \equiv 1`, hence RTN
exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from scale.quantize.quantizer import check_group_size
from scale.quantize.rtn import rtn
from scale.quantize.smoothquant import ScaledQuantizedWeight

__all__ = ["AWQSearch", "awq", "awq_scales", "awq_search", "weight_group_mean"]

AWQ_MIN_SCALE = 1e-4


def weight_group_mean(weights: Sequence[Tensor], group_size: int) -> Tensor:
    """:math:`\\bar w_j`: mean over the rows of all ``weights`` of :math:`|W_{rj}|` / max of :math:`|W|` in its
    (row, group)."""
    W = torch.cat([w.detach() for w in weights], 0)
    cols = W.shape[1]
    g = check_group_size(group_size, cols, allow_ragged=True)
    a = W.abs()
    normed = torch.empty_like(a)
    for start in range(0, cols, g):
        blk = a[:, start:start + g]
        normed[:, start:start + g] = blk / (blk.amax(1, keepdim=True) + 1e-6)
    return normed.mean(0)


def awq_scales(x_mean: Tensor, w_mean: Tensor | None, alpha: float) -> Tensor:
    """The normalized AWQ scale :math:`s(\\alpha)` (module docstring); ``w_mean=None``: no duo scaling."""
    if w_mean is None:
        s = x_mean.pow(alpha)
    else:
        s = x_mean.pow(alpha) / (w_mean.pow(1.0 - alpha) + 1e-4)
    s = s.clamp_min(AWQ_MIN_SCALE)
    return s / torch.sqrt(s.max() * s.min())


@dataclass
class AWQSearch:
    """Result of one mapping's grid search: the chosen scale and alpha, and the loss at every grid point."""

    scales: Tensor
    alpha: float
    losses: list[float]


def awq_search(weights: Sequence[Tensor], X: Tensor, bits: int = 4, group_size: int = 128, sym: bool = False,
               n_grid: int = 20, duo_scaling: bool = True) -> AWQSearch:
    """Grid search of :math:`\\alpha` for the linear layers ``weights`` (each ``[out_l, in]``) reading ``X``
    ``[n, in]`` (module docstring)."""
    if isinstance(n_grid, bool) or not isinstance(n_grid, int) or n_grid < 1:
        raise ValueError(f"n_grid must be a positive integer (20 in the references), got {n_grid!r}")
    if X.ndim != 2 or not weights or any(w.ndim != 2 or w.shape[1] != X.shape[1] for w in weights):
        raise ValueError(f"awq_search needs inputs X [n, in] and weights [out, in] with the same in; got X "
                         f"{tuple(X.shape)} and weights {[tuple(w.shape) for w in weights]}")
    dtype = torch.float64 if X.dtype == torch.float64 else torch.float32
    X = X.to(dtype)
    ws = [w.detach().to(dtype) for w in weights]
    x_mean = X.abs().mean(0)
    w_mean = weight_group_mean(ws, group_size) if duo_scaling else None
    ref = [X @ w.T for w in ws]
    best, losses = None, []
    for k in range(n_grid):
        alpha = k / n_grid
        s = awq_scales(x_mean, w_mean, alpha)
        loss = 0.0
        for w, y in zip(ws, ref):
            wq = rtn(w * s[None, :], bits, group_size, sym).dequantize().to(dtype) / s[None, :]
            loss += float(((X @ wq.T - y) ** 2).sum())
        losses.append(loss / sum(y.numel() for y in ref))
        if best is None or losses[-1] < best[0]:
            best = (losses[-1], alpha, s)
    return AWQSearch(best[2], best[1], losses)


def awq(W: Tensor, X: Tensor, bits: int = 4, group_size: int = 128, sym: bool = False, n_grid: int = 20,
        duo_scaling: bool = True, alpha: float | None = None) -> ScaledQuantizedWeight:
    """AWQ on one layer ``W`` ``[out, in]`` with calibration inputs ``X`` ``[n, in]``: the grid search (or the
    given ``alpha``), then RTN of :math:`W\\,\\mathrm{diag}(s)`."""
    if alpha is None:
        found = awq_search([W], X, bits, group_size, sym, n_grid, duo_scaling)
        s, a = found.scales, found.alpha
    else:
        w_mean = weight_group_mean([W], group_size) if duo_scaling else None
        x = X if X.dtype == torch.float64 else X.float()
        s, a = awq_scales(x.abs().mean(0), w_mean, float(alpha)), float(alpha)
    qw = rtn(W * s.to(W.dtype)[None, :], bits, group_size, sym)
    return ScaledQuantizedWeight(qw, s, a)
