r"""SmoothQuant+ (Pan et al., arXiv:2312.03788): an exact per-channel rescaling of each linear layer's input,
folded into the layer in front of it, then group-wise RTN.

Per input channel :math:`j` of a set of linear layers that share one input :math:`X` (SmoothQuant, Xiao et al.
2023, arXiv:2211.10438, eq. 4):

.. math::

    s_j = \frac{\max_t |X_{tj}|^{\alpha}}{\max_{\ell, r} |W^{(\ell)}_{rj}|^{1-\alpha}},\qquad
    X \leftarrow X\,\mathrm{diag}(s)^{-1},\quad W^{(\ell)} \leftarrow W^{(\ell)}\,\mathrm{diag}(s),

so :math:`X W^\top` is unchanged in exact arithmetic; :math:`s` is clamped below at ``1e-5``. We use the
**max-abs** statistics of this formula (llm-compressor uses the dynamic range ``max - min`` of the activations and
``2 max|W|``). SmoothQuant+ searches **one** :math:`\alpha` for the whole model (grid 0, 0.05, ..., 1) by the
quantized model's loss on the calibration data (:func:`scale.quantize.calibration.quantize_model`), then
quantizes every smoothed weight with RTN.

The division by :math:`s` is folded into the producer of :math:`X` (:func:`fold_into_norm`,
:func:`fold_into_linear_rows`). In our GPT (:mod:`scale.model`) the mappings are: ``ln_1`` → ``attn.c_attn``;
the value rows of ``attn.c_attn`` → ``attn.c_proj`` (attention mixes tokens, not channels, so a per-channel scale
of :math:`v` passes through it); ``ln_2`` → ``mlp.c_fc``. Unlike Llama's gated MLP, our MLP has a GELU between
``c_fc`` and ``c_proj``, so ``mlp.c_proj`` has no exact fold and is left unsmoothed (a difference from the
reference's "all linear layers").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from scale.quantize.quantizer import QuantizedWeight
from scale.quantize.rtn import rtn

__all__ = [
    "MIN_SMOOTHING_SCALE",
    "ScaledQuantizedWeight",
    "fold_into_linear_rows",
    "fold_into_norm",
    "scale_input_columns",
    "smoothing_scales",
    "smoothquant_plus",
]

MIN_SMOOTHING_SCALE = 1e-5
"""Lower clamp of a smoothing scale (a channel that never fires would otherwise get :math:`s = 0`)."""


@dataclass
class ScaledQuantizedWeight:
    r"""A weight quantized after an input rescaling: the layer computes :math:`(X\,\mathrm{diag}(s)^{-1})\,
    \hat W_s^\top` with :math:`\hat W_s` = ``quantized.dequantize()``; :meth:`dequantize` returns the equivalent
    weight on the unscaled input, :math:`\hat W_s\,\mathrm{diag}(s)^{-1}`."""

    quantized: QuantizedWeight
    input_scales: Tensor
    alpha: float

    @property
    def shape(self) -> torch.Size:
        return self.quantized.shape

    def dequantize(self, dtype: torch.dtype | None = None) -> Tensor:
        w = self.quantized.dequantize()
        w = w / self.input_scales.to(w.dtype)[None, :]
        return w if dtype is None else w.to(dtype)


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0 \
            or not math.isfinite(alpha):
        raise ValueError(f"the smoothing strength alpha must lie in [0, 1], got {alpha!r}")
    return float(alpha)


def smoothing_scales(act_absmax: Tensor, weights: Sequence[Tensor], alpha: float) -> Tensor:
    """:math:`s_j = \\max|X_j|^\\alpha / \\max_\\ell \\max_r |W^{(\\ell)}_{rj}|^{1-\\alpha}` (module docstring)."""
    alpha = _check_alpha(alpha)
    if not weights:
        raise ValueError("smoothing_scales needs at least one weight that consumes the input")
    cols = act_absmax.shape[0]
    for W in weights:
        if W.ndim != 2 or W.shape[1] != cols:
            raise ValueError(f"a weight of shape {tuple(W.shape)} does not take the {cols} smoothed channels")
    w_absmax = torch.stack([W.detach().abs().amax(0) for W in weights]).amax(0).to(act_absmax.dtype)
    a = act_absmax.clamp_min(MIN_SMOOTHING_SCALE)
    w = w_absmax.clamp_min(MIN_SMOOTHING_SCALE)
    return (a.pow(alpha) / w.pow(1.0 - alpha)).clamp_min(MIN_SMOOTHING_SCALE)


def scale_input_columns(linear: nn.Linear, s: Tensor) -> None:
    r"""In place: :math:`W \leftarrow W\,\mathrm{diag}(s)` (the consumer side of a smoothing)."""
    with torch.no_grad():
        linear.weight.mul_(s.to(linear.weight.dtype)[None, :])


def fold_into_norm(norm: nn.Module, s: Tensor) -> None:
    r"""In place: divide the norm's gain (and shift, if any) by :math:`s`, so its output becomes
    :math:`\mathrm{Norm}(x)\,\mathrm{diag}(s)^{-1}`."""
    weight = getattr(norm, "weight", None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"cannot fold a smoothing scale into {type(norm).__name__}: it has no elementwise gain")
    with torch.no_grad():
        weight.div_(s.to(weight.dtype))
        bias = getattr(norm, "bias", None)
        if isinstance(bias, Tensor):
            bias.div_(s.to(bias.dtype))


def fold_into_linear_rows(linear: nn.Linear, rows: slice, s: Tensor) -> None:
    """In place: divide output rows ``rows`` of ``linear`` (weight and bias) by ``s``."""
    with torch.no_grad():
        linear.weight[rows].div_(s.to(linear.weight.dtype)[:, None])
        if linear.bias is not None:
            linear.bias[rows].div_(s.to(linear.bias.dtype))


def smoothquant_plus(W: Tensor, act_absmax: Tensor, alpha: float = 0.5, bits: int = 4, group_size: int = 128,
                     sym: bool = False) -> ScaledQuantizedWeight:
    """SmoothQuant+ on one layer: smooth ``W`` ``[out, in]`` with the input statistics ``act_absmax`` ``[in]``
    (per-channel max of ``|X|``) at strength ``alpha``, then RTN. The model-level method searches ``alpha``
    once for all layers (:func:`scale.quantize.calibration.quantize_model`)."""
    s = smoothing_scales(act_absmax, [W], alpha)
    qw = rtn(W * s.to(W.dtype)[None, :], bits, group_size, sym)
    return ScaledQuantizedWeight(qw, s, float(alpha))
