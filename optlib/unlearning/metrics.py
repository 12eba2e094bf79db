r"""Unlearning metrics: forget-loss increase, retain-set KL, distance of outputs to a retrained model.

All three read a classifier's (or a language model's) logits with the class dimension last; positions whose
target is ``-1`` are left out, and every average is over the remaining positions (*terms*) of the whole data
set (see :mod:`optlib.unlearning._data`).

* forget-loss increase: :math:`L_f(\theta) - L_f(\theta_0)` with
  :math:`L_f(\theta) = \frac1{N_f}\sum_{t \in D_f} -\log p_\theta(y_t \mid x_t)`;
* retain KL (the specificity measure of McKinney et al. 2026, arXiv:2602.10568):
  :math:`\mathbb{E}_{x \sim D_r}\,\mathrm{KL}\big(p_{\theta_0}(\cdot\mid x)\,\Vert\,p_\theta(\cdot\mid x)\big)`;
* distance to a retrained model :math:`\theta_r`: the same mean KL with :math:`p_{\theta_r}` in the first
  argument, :math:`\mathbb{E}_x \mathrm{KL}(p_{\theta_r}\Vert p_\theta)`, on any data set (retain, forget or
  held-out).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ._data import IGNORE_INDEX, Batch, as_batches, batch_on, check_loss, mean_loss, model_device, model_output

Tensor = torch.Tensor


def _terms_logp(model: nn.Module, batch: Batch, device: torch.device) -> Tensor:
    """Log-probabilities ``(n_terms, C)`` of the batch's non-ignored positions."""
    x, y = batch_on(batch, device)
    z = model_output(model, x)
    if z.shape[:-1] != y.shape:
        raise ValueError(f"output {tuple(z.shape)} needs targets of shape {tuple(z.shape[:-1])} (class dimension "
                         f"last), got {tuple(y.shape)}")
    z = z.reshape(-1, z.shape[-1])
    keep = y.reshape(-1) != IGNORE_INDEX
    return torch.log_softmax(z[keep].to(torch.float64 if z.dtype == torch.float64 else torch.float32), dim=-1)


@torch.no_grad()
def reference_log_probs(model: nn.Module, data: Any) -> list[Tensor]:
    """The log-probabilities of ``model`` on ``data``, one ``(n_terms, C)`` tensor per batch (to compute
    KLs against a fixed reference without keeping the reference model)."""
    batches = as_batches(data, "data")
    device = model_device(model)
    return [_terms_logp(model, b, device) for b in batches]


@torch.no_grad()
def kl_to_reference(ref_logp: Sequence[Tensor], model: nn.Module, data: Any) -> float:
    r""":math:`\frac1N\sum_t \mathrm{KL}(p_\mathrm{ref}(\cdot\mid x_t)\Vert p_\theta(\cdot\mid x_t))` with the
    reference given by :func:`reference_log_probs` on the same ``data``."""
    batches = as_batches(data, "data")
    if len(ref_logp) != len(batches):
        raise ValueError(f"reference has {len(ref_logp)} batches, data has {len(batches)}")
    device = model_device(model)
    total, count = 0.0, 0
    for lp_ref, b in zip(ref_logp, batches):
        lq = _terms_logp(model, b, device)
        if lq.shape != lp_ref.shape:
            raise ValueError(f"reference log-probabilities {tuple(lp_ref.shape)} do not match the model's "
                             f"{tuple(lq.shape)}")
        lp = lp_ref.to(lq.device, lq.dtype)
        total += float((lp.exp() * (lp - lq)).sum())
        count += lq.shape[0]
    if count == 0:
        raise ValueError("the data set has no terms (every target is ignored)")
    return total / count


def output_kl(p_model: nn.Module, q_model: nn.Module, data: Any) -> float:
    r""":math:`\mathbb{E}_{x\sim\mathrm{data}}\,\mathrm{KL}(p(\cdot\mid x)\,\Vert\,q(\cdot\mid x))`, the mean over the
    data set's terms."""
    return kl_to_reference(reference_log_probs(p_model, data), q_model, data)


def retain_kl(original: nn.Module, model: nn.Module, retain_data: Any) -> float:
    r"""Retain-set KL :math:`\mathbb{E}_{x\sim D_r}\mathrm{KL}(p_{\theta_0}(\cdot|x)\Vert p_\theta(\cdot|x))`."""
    return output_kl(original, model, retain_data)


def distance_to_retrained(retrained: nn.Module, model: nn.Module, data: Any) -> float:
    r"""Output-space distance to a retrained model: :math:`\mathbb{E}_x\mathrm{KL}(p_{\theta_r}\Vert p_\theta)`."""
    return output_kl(retrained, model, data)


def forget_loss(model: nn.Module, forget_data: Any, loss: Any = "cross_entropy") -> float:
    r"""The forget set's mean loss :math:`L_f(\theta)` (mean negative log-likelihood for ``"cross_entropy"``)."""
    return mean_loss(model, as_batches(forget_data, "forget_data"), check_loss(loss))


def forget_loss_increase(original: nn.Module, model: nn.Module, forget_data: Any, loss: Any = "cross_entropy") -> float:
    r""":math:`L_f(\theta) - L_f(\theta_0)`."""
    return forget_loss(model, forget_data, loss) - forget_loss(original, forget_data, loss)


@torch.no_grad()
def accuracy(model: nn.Module, data: Any) -> float:
    """Top-1 accuracy over the data set's terms."""
    batches = as_batches(data, "data")
    device = model_device(model)
    hits, count = 0, 0
    for b in batches:
        x, y = batch_on(b, device)
        z = model_output(model, x)
        keep = y != IGNORE_INDEX
        hits += int((z.argmax(-1)[keep] == y[keep]).sum())
        count += int(keep.sum())
    if count == 0:
        raise ValueError("the data set has no terms (every target is ignored)")
    return hits / count
