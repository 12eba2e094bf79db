r"""Training a copy of a model from a given initialization: the retrained reference of unlearning experiments.

Retraining without the forget set is the ground truth that unlearning approximates. :func:`retrain` trains a
*copy* of ``init`` on the given data and leaves ``init`` untouched, so the original model and its retrained
reference can start from the same weights (call it with the full data for the original, with the retain data
for the reference). The objective is the data set's mean loss plus an optional
:math:`\tfrac{\mu}{2}\lVert\theta\rVert^2` (``weight_decay=μ``).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from ._data import LossSpec, as_batches, batch_loss_sum, batch_on, check_loss, model_device, model_output, total_terms

OPTIMIZERS = ("adam", "lbfgs")


def _objective(model: nn.Module, batches, loss: LossSpec, weight_decay: float, n: int) -> torch.Tensor:
    device = model_device(model)
    total = 0.0
    for b in batches:
        x, y = batch_on(b, device)
        total = total + batch_loss_sum(model_output(model, x), y, loss) / n
    if weight_decay:
        total = total + 0.5 * weight_decay * sum((p * p).sum() for p in model.parameters() if p.requires_grad)
    return total


def retrain(init: nn.Module, data: Any, *, loss: LossSpec = "cross_entropy", epochs: int = 100, lr: float = 1e-2,
            batch_size: int | None = None, optimizer: str = "adam", weight_decay: float = 0.0, seed: int = 0,
            progress: bool = False) -> nn.Module:
    r"""Train a deep copy of ``init`` on ``data`` and return it.

    Parameters
    ----------
    init : nn.Module
        The initialization (not modified).
    data : (inputs, targets) or iterable of batches
        The training set. With ``batch_size`` and a single ``(inputs, targets)`` pair, each epoch visits the
        rows in a fresh random order (seeded by ``seed``) in mini-batches; otherwise each epoch is one pass
        over the given batches (full batch for a single pair).
    loss : ``"cross_entropy"`` or callable
        See :mod:`optlib.unlearning._data`.
    epochs : int
        Passes over the data (``"lbfgs"``: outer L-BFGS iterations on the full objective).
    lr : float
        Adam's learning rate, or L-BFGS's initial step (1.0 is the usual choice there).
    optimizer : {"adam", "lbfgs"}
        ``torch.optim.Adam``, or full-batch ``torch.optim.LBFGS`` with strong-Wolfe line search (small
        convex models, where it reaches the optimum to high accuracy).
    weight_decay : float
        :math:`\mu \ge 0` of the :math:`\tfrac{\mu}{2}\lVert\theta\rVert^2` term added to the objective.
    seed : int
        Seeds the mini-batch order.
    """
    if not isinstance(init, nn.Module):
        raise TypeError(f"init must be an nn.Module, got {type(init).__name__}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be positive, got {lr!r}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    loss = check_loss(loss)
    batches = as_batches(data, "data")
    n = total_terms(batches, loss)
    if n == 0:
        raise ValueError("data has no loss terms (every target is ignored)")
    model = copy.deepcopy(init)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc="retrain", leave=False)
    try:
        if optimizer == "lbfgs":
            opt = torch.optim.LBFGS(params, lr=lr, max_iter=20, history_size=50, line_search_fn="strong_wolfe",
                                    tolerance_grad=1e-12, tolerance_change=1e-15)

            def closure():
                opt.zero_grad(set_to_none=True)
                value = _objective(model, batches, loss, weight_decay, n)
                value.backward()
                return value

            for _ in range(epochs):
                opt.step(closure)
                if bar is not None:
                    bar.update(1)
        else:
            opt = torch.optim.Adam(params, lr=lr)
            gen = torch.Generator().manual_seed(seed)
            single = len(batches) == 1 and isinstance(batches[0][0], torch.Tensor)
            for _ in range(epochs):
                if batch_size is not None and single:
                    x, y = batches[0]
                    perm = torch.randperm(y.shape[0], generator=gen).to(y.device)
                    epoch = [(x[perm[i:i + batch_size]], y[perm[i:i + batch_size]])
                             for i in range(0, y.shape[0], batch_size)]
                else:
                    epoch = batches
                for b in epoch:
                    m = total_terms([b], loss)
                    if m == 0:
                        continue
                    opt.zero_grad(set_to_none=True)
                    _objective(model, [b], loss, weight_decay, m).backward()
                    opt.step()
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    return model
