r"""Losses on the network output, with the output-space derivatives the curvature operators need.

Scaling convention (the same as curvlinops)
-------------------------------------------
A data set is an iterable of batches ``(X_b, y_b)`` with ``N = sum_b B_b`` samples. The model output of a
batch is split into *loss terms* ``t`` (rows of length ``C``): for :class:`CrossEntropyLoss` the class
dimension is dim 1 of the output ``(B, C, d_1, ...)`` and every other position is a term; for
:class:`MSELoss` and :class:`BCEWithLogitsLoss` the last dimension is ``C`` and every other position is
a term. With :math:`\ell(z_t, y_t)` the loss of one term **summed over its C entries** (for MSE
:math:`\ell = \lVert z_t - y_t \rVert^2`, with no 1/2), the total loss is

.. math::

    \mathcal{L}(\theta) = \sum_b w_b\, \mathrm{loss}(f(\theta, X_b), y_b)
                        = \sum_b c_b \sum_{t \in b} \ell(z_t, y_t),

where ``loss`` is torch's batch loss with the given ``reduction``; ``w_b = 1`` for ``"sum"`` and
``w_b = B_b / N`` for ``"mean"``, so that the total is the loss of the whole data set as one batch.
``c_b = w_b`` for ``"sum"``; for ``"mean"``, ``c_b = w_b / m_b`` with ``m_b`` the number of elements torch
averages over (``B_b C`` times the positions for MSE and BCE, which average over the output dimension
too; ``B_b`` times the positions for cross-entropy). For 2-D outputs and ``"mean"``: ``c = 1/(N C)`` for
MSE and BCE, ``1/N`` for cross-entropy.

Per-term output-space quantities (closed forms, checked against autograd in the tests):

* MSE: :math:`\nabla^2_z \ell = 2 I`; the model's distribution is :math:`\mathcal{N}(z, \tfrac12 I)`, for
  which :math:`\mathbb{E}[\nabla\ell\nabla\ell^\top] = 2I` (so the true Fisher equals the GGN).
* Cross-entropy with softmax: :math:`\nabla^2_z \ell = \operatorname{diag}(p) - pp^\top` with
  symmetric factor :math:`S = \operatorname{diag}(\sqrt p) - p\sqrt p^\top` (spec §2); labels are
  drawn from :math:`\mathrm{Categorical}(p)`.
* BCE with logits: :math:`\nabla^2_z \ell = \operatorname{diag}(\sigma(z)(1-\sigma(z)))`; labels from
  :math:`\mathrm{Bernoulli}(\sigma(z))`.

For these three (exponential families with canonical links) the true Fisher equals the GGN
(Martens 2020, "New insights and perspectives on the natural gradient method", JMLR 21, §9.2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Tensor = torch.Tensor

REDUCTIONS = ("mean", "sum")


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; use one of {', '.join(REDUCTIONS)}")
    return reduction


class Loss:
    """A loss on model outputs; subclasses define the per-term derivatives (see the module docstring).

    Attributes
    ----------
    reduction : {"mean", "sum"}
        torch's reduction of one batch; also how batches combine (sum, or weights ``B_b / N``).
    convex : bool
        Whether the loss is convex in the model output (a GGN needs it).
    """

    name = "loss"
    convex = True
    builtin = True

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = _check_reduction(reduction)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"

    # -------------------------------------------------------------------- batch value
    def __call__(self, z: Tensor, y: Tensor) -> Tensor:
        """torch's batch loss with this reduction."""
        raise NotImplementedError

    # -------------------------------------------------------------------- term layout
    def rows(self, z: Tensor) -> Tensor:
        """The output as loss-term rows ``(T, C)``."""
        if z.ndim == 1:
            return z.reshape(-1, 1)
        return z.reshape(-1, z.shape[-1])

    def unrows(self, r: Tensor, like: Tensor) -> Tensor:
        """Inverse of :meth:`rows`: rows ``(..., T, C)`` back to the output's shape (leading dims kept)."""
        return r.reshape(*r.shape[:-2], *like.shape)

    def label_rows(self, y: Tensor, z: Tensor) -> Tensor:
        return self.rows(y)

    def check(self, z: Tensor, y: Tensor) -> None:
        if y.shape != z.shape:
            raise ValueError(f"{self.name}: labels must have the output's shape {tuple(z.shape)}, got {tuple(y.shape)}")

    def term_scale(self, z: Tensor) -> float:
        """``1/m_b`` for ``"mean"`` (elements torch averages over), 1 for ``"sum"``:
        batch loss = scale * sum of the per-term losses."""
        return 1.0 / z.numel() if self.reduction == "mean" else 1.0

    def batch_weight(self, batch_size: int, num_data: int) -> float:
        """``w_b``: 1 for ``"sum"``, ``B_b / N`` for ``"mean"``."""
        return batch_size / num_data if self.reduction == "mean" else 1.0

    # -------------------------------------------------------------------- per-term derivatives
    def grad_rows(self, zr: Tensor, yr: Tensor) -> Tensor:
        """:math:`\\nabla_z \\ell(z_t, y_t)` per row (summed per-term loss)."""
        raise NotImplementedError

    def hvp_rows(self, zr: Tensor, yr: Tensor, ur: Tensor) -> Tensor:
        """:math:`\\nabla^2_z \\ell(z_t, y_t)\\, u_t` per row; ``ur`` may have leading batch dims."""
        raise NotImplementedError

    def hessian_sqrt_rows(self, zr: Tensor, yr: Tensor) -> Tensor:
        """``S_t`` of shape ``(K, T, C)`` with :math:`\\sum_k S_{k,t} S_{k,t}^\\top = \\nabla^2_z \\ell(z_t, y_t)`."""
        raise NotImplementedError

    def sample_grad_rows(self, zr: Tensor, num_samples: int, generator: torch.Generator | None) -> Tensor:
        """Gradients :math:`\\nabla_z \\ell(z_t, \\tilde y)` for labels :math:`\\tilde y \\sim p(\\cdot|z_t)`,
        shape ``(num_samples, T, C)``; their second moment is the per-term Hessian."""
        raise NotImplementedError

    def sample_labels(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Labels drawn from the model's predictive distribution, shaped like data labels."""
        raise NotImplementedError


class MSELoss(Loss):
    r"""Squared error ``(z - y)^2`` averaged (``"mean"``, torch's ``MSELoss``: over every element) or summed.

    Per term :math:`\ell = \lVert z - y\rVert^2`, :math:`\nabla^2_z\ell = 2I`; predictive distribution
    :math:`\mathcal{N}(z, \tfrac12 I)`.
    """

    name = "mse"

    def __call__(self, z: Tensor, y: Tensor) -> Tensor:
        return torch.nn.functional.mse_loss(z, y, reduction=self.reduction)

    def grad_rows(self, zr, yr):
        return 2.0 * (zr - yr)

    def hvp_rows(self, zr, yr, ur):
        return 2.0 * ur

    def hessian_sqrt_rows(self, zr, yr):
        C = zr.shape[-1]
        eye = torch.eye(C, dtype=zr.dtype, device=zr.device) * math.sqrt(2.0)
        return eye[:, None, :].expand(C, zr.shape[0], C)

    def sample_grad_rows(self, zr, num_samples, generator):
        # y ~ N(z, 1/2 I): grad = 2 (z - y) = -2 eps, eps ~ N(0, 1/2).
        eps = torch.randn((num_samples, *zr.shape), dtype=zr.dtype, device=zr.device, generator=generator)
        return -2.0 * math.sqrt(0.5) * eps

    def sample_labels(self, z, generator=None):
        eps = torch.randn(z.shape, dtype=z.dtype, device=z.device, generator=generator)
        return z.detach() + math.sqrt(0.5) * eps


class CrossEntropyLoss(Loss):
    r"""Softmax cross-entropy with integer class labels (torch's ``CrossEntropyLoss`` without class
    weights, ignored labels or label smoothing). Class dimension: 1.

    Per term :math:`\nabla^2_z\ell = \operatorname{diag}(p) - pp^\top`.
    """

    name = "cross_entropy"

    def __call__(self, z: Tensor, y: Tensor) -> Tensor:
        return torch.nn.functional.cross_entropy(z, y, reduction=self.reduction)

    def rows(self, z):
        if z.ndim < 2:
            raise ValueError(f"cross_entropy: the output needs a class dimension (dim 1), got shape {tuple(z.shape)}")
        return z.movedim(1, -1).reshape(-1, z.shape[1])

    def unrows(self, r, like):
        lead = r.shape[:-2]
        moved = (like.shape[0], *like.shape[2:], like.shape[1])
        out = r.reshape(*lead, *moved)
        return out.movedim(-1, len(lead) + 1)

    def label_rows(self, y, z):
        return y.reshape(-1)

    def check(self, z, y):
        if z.ndim < 2:
            raise ValueError(f"cross_entropy: the output needs a class dimension (dim 1), got shape {tuple(z.shape)}")
        expect = (z.shape[0], *z.shape[2:])
        if tuple(y.shape) != expect or y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise ValueError(f"cross_entropy: labels must be class indices of shape {expect} (integer dtype), "
                             f"got shape {tuple(y.shape)} and dtype {y.dtype}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= z.shape[1]):
            raise ValueError(f"cross_entropy: labels must lie in [0, {z.shape[1] - 1}] "
                             "(ignored labels are not supported)")

    def term_scale(self, z):
        return z.shape[1] / z.numel() if self.reduction == "mean" else 1.0

    def grad_rows(self, zr, yr):
        p = zr.softmax(-1)
        return p - torch.nn.functional.one_hot(yr.long(), zr.shape[-1]).to(zr.dtype)

    def hvp_rows(self, zr, yr, ur):
        p = zr.softmax(-1)
        return p * ur - p * (p * ur).sum(-1, keepdim=True)

    def hessian_sqrt_rows(self, zr, yr):
        p = zr.softmax(-1)
        sp = p.sqrt()
        eye = torch.eye(zr.shape[-1], dtype=zr.dtype, device=zr.device)
        # column k of S = diag(sqrt p) - p sqrt(p)^T is sqrt(p_k) (e_k - p)
        return sp.T[:, :, None] * (eye[:, None, :] - p[None, :, :])

    def sample_grad_rows(self, zr, num_samples, generator):
        p = zr.softmax(-1)
        idx = torch.multinomial(p, num_samples, replacement=True, generator=generator).T  # (M, T)
        onehot = torch.nn.functional.one_hot(idx, zr.shape[-1]).to(zr.dtype)
        return p.unsqueeze(0) - onehot

    def sample_labels(self, z, generator=None):
        zr = self.rows(z.detach())
        idx = torch.multinomial(zr.softmax(-1), 1, generator=generator).squeeze(-1)
        return idx.reshape(z.shape[0], *z.shape[2:])


class BCEWithLogitsLoss(Loss):
    r"""Binary cross-entropy on logits (torch's ``BCEWithLogitsLoss`` without weights), labels in {0, 1}
    or probabilities; per term :math:`\nabla^2_z\ell = \operatorname{diag}(\sigma(z)(1-\sigma(z)))`."""

    name = "bce_with_logits"

    def __call__(self, z: Tensor, y: Tensor) -> Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction=self.reduction)

    def grad_rows(self, zr, yr):
        return torch.sigmoid(zr) - yr

    def hvp_rows(self, zr, yr, ur):
        s = torch.sigmoid(zr)
        return s * (1 - s) * ur

    def hessian_sqrt_rows(self, zr, yr):
        s = torch.sigmoid(zr)
        d = (s * (1 - s)).sqrt()
        eye = torch.eye(zr.shape[-1], dtype=zr.dtype, device=zr.device)
        return d.T[:, :, None] * eye[:, None, :]

    def sample_grad_rows(self, zr, num_samples, generator):
        s = torch.sigmoid(zr)
        draws = torch.bernoulli(s.unsqueeze(0).expand(num_samples, *s.shape).contiguous(), generator=generator)
        return s.unsqueeze(0) - draws

    def sample_labels(self, z, generator=None):
        return torch.bernoulli(torch.sigmoid(z.detach()), generator=generator)


class CustomLoss(Loss):
    r"""A user loss ``fn(z, y) -> scalar`` (one batch, already reduced).

    Batches combine by ``reduction``: ``"sum"`` adds the batch values, ``"mean"`` weights them by ``B_b/N``.
    Its output Hessian comes from autograd (:func:`torch.func.jvp` of :func:`torch.func.grad`). Only the
    :class:`~optlib.curvature.Hessian` and, when ``convex=True``, the :class:`~optlib.curvature.GGN`
    accept it; the Fisher-type operators and K-FAC need one of the built-in likelihoods.
    """

    builtin = False

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], reduction: str = "mean", *, convex: bool = False,
                 name: str = "custom") -> None:
        super().__init__(reduction)
        if not callable(fn):
            raise TypeError("CustomLoss needs a callable fn(output, labels) -> scalar")
        self.fn = fn
        self.convex = bool(convex)
        self.name = name

    def __repr__(self) -> str:
        return f"CustomLoss({self.name!r}, reduction={self.reduction!r}, convex={self.convex})"

    def __call__(self, z, y):
        return self.fn(z, y)

    def check(self, z, y):
        return None

    def batch_hvp(self, z: Tensor, y: Tensor, u: Tensor) -> Tensor:
        """:math:`\\nabla^2_z \\mathrm{fn}(z, y)\\, u` by forward-over-reverse autodiff."""
        from torch.func import grad, jvp

        return jvp(grad(lambda zz: self.fn(zz, y)), (z,), (u,))[1]


LOSSES: dict[str, type[Loss]] = {
    "mse": MSELoss,
    "cross_entropy": CrossEntropyLoss,
    "bce_with_logits": BCEWithLogitsLoss,
}


def as_loss(loss: Any, reduction: str | None = None) -> Loss:
    """A :class:`Loss` from one of ours, a torch loss module (``MSELoss``, ``CrossEntropyLoss``,
    ``BCEWithLogitsLoss``) or a name (``"mse"``, ``"cross_entropy"``, ``"bce_with_logits"``).

    Anything else (a plain callable, another torch loss) is rejected with a message pointing to
    :class:`CustomLoss`, which is where convexity is declared.
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; use one of {', '.join(LOSSES)}, or CustomLoss(fn, convex=...)")
        return LOSSES[loss](reduction or "mean")
    if isinstance(loss, nn.MSELoss):
        return MSELoss(loss.reduction)
    if isinstance(loss, nn.CrossEntropyLoss):
        if loss.weight is not None or loss.label_smoothing != 0.0:
            raise ValueError("CrossEntropyLoss with class weights or label smoothing is not supported")
        return CrossEntropyLoss(loss.reduction)
    if isinstance(loss, nn.BCEWithLogitsLoss):
        if loss.weight is not None or loss.pos_weight is not None:
            raise ValueError("BCEWithLogitsLoss with weight or pos_weight is not supported")
        return BCEWithLogitsLoss(loss.reduction)
    raise TypeError(
        f"unsupported loss {loss!r}: use MSELoss, CrossEntropyLoss or BCEWithLogitsLoss (torch modules, ours, or "
        f"the names {', '.join(LOSSES)}), or wrap a callable in CustomLoss(fn, reduction, convex=...)"
    )
