r"""Data sets, losses and parameter bookkeeping shared by the unlearning methods and metrics.

A data set is a pair ``(inputs, targets)`` of tensors (one batch) or an iterable of such pairs (a list
of batches, a ``DataLoader``); iterables are read once and kept as a list, because every step reads the
forget set again.

Losses (``loss=``):

``"cross_entropy"``
    Softmax cross-entropy with the class dimension **last**: the model output ``(..., C)`` (the first
    element when the model returns a tuple, as :class:`scale.model.GPT` does) and integer targets of shape
    ``(...)``; a target ``-1`` leaves its position out. The loss of a data set is the mean over its
    *terms* (positions with a target other than ``-1``, across all batches):
    :math:`L(\theta) = \frac1N \sum_{t} -\log p_\theta(y_t \mid x_t)`.
a callable ``fn(output, targets) -> scalar``
    A per-batch **mean** over the batch's first dimension; batches are combined with weights
    :math:`B_b/N` (so the data-set loss is the mean over all ``N`` rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor
Batch = tuple[Tensor, Tensor]
LossSpec = str | Callable[[Tensor, Tensor], Tensor]

LOSSES = ("cross_entropy",)
IGNORE_INDEX = -1


# ----------------------------------------------------------------------------------------------- data sets
def as_batches(data: Any, name: str = "data") -> list[Batch]:
    """``data`` as a list of ``(inputs, targets)`` batches; an empty data set is a ``ValueError``."""
    if data is None:
        raise ValueError(f"{name} is required: give (inputs, targets) tensors or an iterable of such batches")
    if isinstance(data, Tensor):
        raise TypeError(f"{name} must be (inputs, targets) or an iterable of (inputs, targets) batches, got a single "
                        "tensor")
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        items: list[Any] = [tuple(data)]
    else:
        try:
            items = list(data)
        except TypeError:
            raise TypeError(f"{name} must be (inputs, targets) or an iterable of (inputs, targets) batches, got "
                            f"{type(data).__name__}") from None
    batches: list[Batch] = []
    for i, item in enumerate(items):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError(f"{name}: batch {i} is not an (inputs, targets) pair (got {type(item).__name__})")
        x, y = item
        if not isinstance(y, Tensor):
            raise TypeError(f"{name}: the targets of batch {i} must be a tensor, got {type(y).__name__}")
        if y.shape[0] > 0:
            batches.append((x, y))
    if not batches:
        raise ValueError(f"{name} is empty: it holds no (inputs, targets) rows")
    return batches


def check_loss(loss: LossSpec) -> LossSpec:
    """``loss`` if it is a known name or a callable; otherwise a ``ValueError`` / ``TypeError`` naming the options."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; use one of {', '.join(LOSSES)} or a callable "
                             "fn(output, targets) -> mean loss")
        return loss
    if not callable(loss):
        raise TypeError(f"loss must be one of {', '.join(LOSSES)} or a callable, got {type(loss).__name__}")
    return loss


def model_output(model: Callable[[Any], Any], x: Any) -> Tensor:
    """``model(x)``; the first element when the model returns a tuple or list (``(logits, loss)`` models)."""
    out = model(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, Tensor):
        raise TypeError(f"the model must return a tensor (or a tuple whose first element is one), got "
                        f"{type(out).__name__}")
    return out


def _on(t: Any, device: torch.device) -> Any:
    return t.to(device) if isinstance(t, Tensor) and t.device != device else t


def batch_on(batch: Batch, device: torch.device) -> Batch:
    return _on(batch[0], device), _on(batch[1], device)


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def term_count(batch: Batch, loss: LossSpec) -> int:
    """How many loss terms a batch holds: non-ignored targets (cross-entropy) or rows (a callable loss)."""
    y = batch[1]
    if loss == "cross_entropy":
        return int((y != IGNORE_INDEX).sum())
    return int(y.shape[0])


def total_terms(batches: Sequence[Batch], loss: LossSpec) -> int:
    return sum(term_count(b, loss) for b in batches)


def batch_loss_sum(output: Tensor, targets: Tensor, loss: LossSpec) -> Tensor:
    """The batch's loss summed over its terms (so that data-set mean = sum over batches / term count)."""
    if loss == "cross_entropy":
        if output.shape[:-1] != targets.shape:
            raise ValueError(f"cross_entropy: output {tuple(output.shape)} needs targets of shape "
                             f"{tuple(output.shape[:-1])} (class dimension last), got {tuple(targets.shape)}")
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), targets.reshape(-1).long(),
                               ignore_index=IGNORE_INDEX, reduction="sum")
    return loss(output, targets) * targets.shape[0]


# ----------------------------------------------------------------------------------------------- parameters
def select_parameters(model: nn.Module, names: Iterable[str] | None) -> dict[str, nn.Parameter]:
    """The named parameters to act on: ``names`` (in that order) or every parameter with ``requires_grad``."""
    named = dict(model.named_parameters())
    if names is None:
        out = {n: p for n, p in named.items() if p.requires_grad}
    else:
        names = list(names)
        missing = [n for n in names if n not in named]
        if missing:
            raise ValueError(f"parameter name(s) {', '.join(missing)} are not in the model; it has "
                             f"{', '.join(named)}")
        out = {n: named[n] for n in names}
    if not out:
        raise ValueError("no parameters to unlearn: the model has no trainable parameters (or params=[] was given)")
    return out


def flatten(tensors: Iterable[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vec: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    out, i = {}, 0
    for n, p in like.items():
        k = p.numel()
        out[n] = vec[i:i + k].view_as(p)
        i += k
    if i != vec.numel():
        raise ValueError(f"vector of length {vec.numel()} does not match the {i} selected parameter entries")
    return out


# ----------------------------------------------------------------------------------------------- values and gradients
@torch.no_grad()
def mean_loss(model: nn.Module, batches: Sequence[Batch], loss: LossSpec) -> float:
    """The data set's mean loss (see the module docstring)."""
    device = model_device(model)
    total, count = 0.0, 0
    for b in batches:
        x, y = batch_on(b, device)
        total += float(batch_loss_sum(model_output(model, x), y, loss))
        count += term_count(b, loss)
    if count == 0:
        raise ValueError("the data set has no loss terms (every target is ignored)")
    return total / count


def loss_and_grad(model: nn.Module, batches: Sequence[Batch], loss: LossSpec,
                  params: dict[str, nn.Parameter]) -> tuple[float, Tensor]:
    """The data set's mean loss and its gradient with respect to ``params`` as one flat vector (``.grad``
    fields are left untouched)."""
    device = model_device(model)
    n = total_terms(batches, loss)
    if n == 0:
        raise ValueError("the data set has no loss terms (every target is ignored)")
    plist = list(params.values())
    grad = [torch.zeros_like(p) for p in plist]
    value = 0.0
    with torch.enable_grad():
        for b in batches:
            x, y = batch_on(b, device)
            s = batch_loss_sum(model_output(model, x), y, loss) / n
            gs = torch.autograd.grad(s, plist, allow_unused=True)
            for acc, g in zip(grad, gs):
                if g is not None:
                    acc.add_(g)
            value += float(s.detach())
    return value, flatten(grad)
