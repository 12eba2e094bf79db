r"""The uniform group quantizer every method of :mod:`scale.quantize` calls, and the quantized-weight object.

Per output row :math:`r` and per group :math:`G` of input columns, with :math:`q_{\max} = 2^b - 1`
(the range fit of GPTQ's ``Quantizer.find_params``, Frantar et al. 2023, arXiv:2210.17323, reference code
IST-DASLab/gptq ``quant.py``):

.. math::

    m = \min(0, \min_{j\in G} W_{rj}),\quad M = \max(0, \max_{j\in G} W_{rj}),\qquad
    s = \frac{M - m}{q_{\max}},\quad z = \mathrm{round}(-m / s),

    q_{rj} = \mathrm{clamp}(\mathrm{round}(W_{rj}/s) + z,\ 0,\ q_{\max}),\qquad \hat W_{rj} = s\,(q_{rj} - z).

Symmetric mode replaces the range by :math:`[-\max(|m|, M), \max(|m|, M)]` and fixes :math:`z = (q_{\max}+1)/2`
(8 for 4 bits). The range always contains 0, so a constant non-zero group is an ordinary group; an all-zero group
(the only degenerate case, :math:`M = m = 0`) gets the range :math:`[-1, 1]`, as in the reference, so nothing
divides by zero.

Groups are ``group_size`` consecutive input columns; ``group_size=-1`` makes the whole row one group. When
``group_size`` does not divide the input dimension, the call is refused unless ``allow_ragged=True``; the last
group is then the shorter remainder (``n_groups = ceil(in / group_size)``) and column :math:`j` still belongs to
group :math:`\lfloor j / g \rfloor`.

Zero points are stored in code units (integer values in :math:`[0, q_{\max}]`, kept in the float dtype of the
scales), so :math:`W \approx S_{r,g(j)}\,(Q_{rj} - Z_{r,g(j)})`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "SUPPORTED_BITS",
    "QuantizedWeight",
    "check_bits",
    "check_group_size",
    "default_g_idx",
    "fit_groups",
    "fit_range",
    "quantize_codes",
    "quantize_with",
]

SUPPORTED_BITS = (2, 3, 4, 8)
"""Bit widths the quantizer accepts (the codes must fit the packed formats: 2, 3 and 4 bits pack into bytes or
int32 words, 8 bits is one code per byte)."""


def check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in SUPPORTED_BITS:
        raise ValueError(f"bits must be one of {SUPPORTED_BITS}, got {bits!r}")
    return bits


def check_group_size(group_size, in_features: int, *, allow_ragged: bool = False, where: str = "") -> int:
    """Return the effective group size (``in_features`` for ``-1``), or raise ``ValueError`` naming the value.

    ``where`` names the layer in the message (e.g. ``"blocks.0.mlp.c_fc"``).
    """
    at = f" for {where}" if where else ""
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f"group_size must be an int (-1 for the whole row){at}, got {group_size!r}")
    if group_size == -1:
        return in_features
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1 or -1 (whole row){at}, got {group_size}")
    if in_features % group_size and not allow_ragged:
        raise ValueError(
            f"group_size={group_size} does not divide the input dimension {in_features}{at}; pick a divisor, "
            f"group_size=-1, or allow_ragged=True (the last group then holds {in_features % group_size} columns)")
    return group_size


def default_g_idx(in_features: int, group_size: int, device=None) -> Tensor:
    """The group of each input column when groups are consecutive: ``j // group_size``."""
    return torch.arange(in_features, device=device) // group_size


def fit_range(W: Tensor, bits: int, sym: bool) -> tuple[Tensor, Tensor]:
    """Scale and zero point of each row of ``W`` ``[rows, cols]`` fitted on all its columns (one group per row).

    Returns ``(scale, zero)``, each ``[rows]``, in the dtype of ``W`` (float32 at least).
    """
    maxq = 2 ** check_bits(bits) - 1
    if W.ndim != 2:
        raise ValueError(f"fit_range expects a 2-D weight [rows, cols], got shape {tuple(W.shape)}")
    if W.shape[1] == 0:
        raise ValueError("fit_range got a group with no columns")
    x = W if W.dtype == torch.float64 else W.float()
    zero_t = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    xmin = torch.minimum(x.min(dim=1).values, zero_t)
    xmax = torch.maximum(x.max(dim=1).values, zero_t)
    if sym:
        xmax = torch.maximum(xmin.abs(), xmax)
        xmin = torch.where(xmin < 0, -xmax, xmin)
    dead = (xmin == 0) & (xmax == 0)
    xmin = torch.where(dead, -torch.ones_like(xmin), xmin)
    xmax = torch.where(dead, torch.ones_like(xmax), xmax)
    scale = (xmax - xmin) / maxq
    if sym:
        zero = torch.full_like(scale, (maxq + 1) / 2)
    else:
        zero = torch.round(-xmin / scale)
    return scale, zero


def quantize_codes(w: Tensor, scale: Tensor, zero: Tensor, bits: int) -> Tensor:
    r"""Integer codes :math:`\mathrm{clamp}(\mathrm{round}(w/s) + z, 0, q_{\max})` as a float tensor (broadcasting)."""
    maxq = 2 ** check_bits(bits) - 1
    return torch.clamp(torch.round(w / scale) + zero, 0, maxq)


def fit_groups(W: Tensor, bits: int = 4, group_size: int = 128, sym: bool = False, *,
               allow_ragged: bool = False, g_idx: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Fit one scale and zero per (row, group) of ``W`` ``[out, in]``; returns ``(scales, zeros)``, ``[out, n_groups]``.

    With ``g_idx`` (LongTensor ``[in]``), group ``k`` is the set of columns ``j`` with ``g_idx[j] == k``; otherwise
    groups are consecutive blocks of ``group_size`` columns (see the module docstring for ragged groups).
    """
    check_bits(bits)
    if W.ndim != 2:
        raise ValueError(f"expected a 2-D weight [out, in], got shape {tuple(W.shape)}")
    out_f, in_f = W.shape
    if in_f == 0 or out_f == 0:
        raise ValueError(f"cannot quantize an empty weight of shape {tuple(W.shape)}")
    g = check_group_size(group_size, in_f, allow_ragged=allow_ragged)
    if g_idx is None:
        n_groups = math.ceil(in_f / g)
        cols = [slice(k * g, min((k + 1) * g, in_f)) for k in range(n_groups)]
        parts = [fit_range(W[:, c], bits, sym) for c in cols]
    else:
        g_idx = _check_g_idx(g_idx, in_f)
        n_groups = int(g_idx.max()) + 1
        parts = []
        for k in range(n_groups):
            mask = g_idx == k
            if not bool(mask.any()):
                raise ValueError(f"g_idx leaves group {k} empty (groups must be numbered 0..n_groups-1)")
            parts.append(fit_range(W[:, mask], bits, sym))
    scales = torch.stack([p[0] for p in parts], dim=1)
    zeros = torch.stack([p[1] for p in parts], dim=1)
    return scales, zeros


def _check_g_idx(g_idx: Tensor, in_features: int) -> Tensor:
    if not isinstance(g_idx, Tensor) or g_idx.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"g_idx must be an integer tensor [in], got {type(g_idx).__name__}"
                        f"{'' if not isinstance(g_idx, Tensor) else ' of dtype ' + str(g_idx.dtype)}")
    if g_idx.shape != (in_features,):
        raise ValueError(f"g_idx must have shape ({in_features},), got {tuple(g_idx.shape)}")
    if in_features and int(g_idx.min()) < 0:
        raise ValueError(f"g_idx has a negative group index {int(g_idx.min())}")
    return g_idx.long()


def quantize_with(W: Tensor, scales: Tensor, zeros: Tensor, bits: int, group_size: int, *,
                  g_idx: Tensor | None = None) -> Tensor:
    """Codes of ``W`` ``[out, in]`` under given per-group ``scales``/``zeros`` (``[out, n_groups]``), as int16.

    ``group_size=-1`` means one group per row; with ``g_idx`` the column-to-group map is taken from it.
    """
    cols_group = _column_groups(W.shape[1], group_size, g_idx, W.device)
    if int(cols_group.max()) >= scales.shape[1]:
        raise ValueError(f"scales has {scales.shape[1]} groups but a column maps to group {int(cols_group.max())}")
    s = scales[:, cols_group]
    z = zeros[:, cols_group]
    x = W if W.dtype == torch.float64 else W.float()
    return quantize_codes(x, s.to(x.dtype), z.to(x.dtype), bits).to(torch.int16)


def _column_groups(in_features: int, group_size: int, g_idx: Tensor | None, device) -> Tensor:
    if g_idx is not None:
        return _check_g_idx(g_idx, in_features).to(device)
    g = in_features if group_size == -1 else group_size
    if g < 1:
        raise ValueError(f"group_size must be >= 1 or -1, got {group_size}")
    return default_g_idx(in_features, g, device)


@dataclass
class QuantizedWeight:
    r"""A weight quantized per (row, group): :math:`W \approx S_{r,g(j)}\,(Q_{rj} - Z_{r,g(j)})`.

    Attributes
    ----------
    qweight : Tensor
        Integer codes ``[out, in]`` (int16 or int32), values in ``[0, 2**bits - 1]``.
    scales, zeros : Tensor
        ``[out, n_groups]``; zeros in code units (integer-valued floats).
    g_idx : Tensor or None
        LongTensor ``[in]``: the group of each input column (act-order); ``None`` means column ``j`` is in group
        ``j // group_size`` (``group_size=-1``: a single group).
    bits, group_size : int
    sym : bool
    """

    qweight: Tensor
    scales: Tensor
    zeros: Tensor
    g_idx: Tensor | None
    bits: int
    group_size: int
    sym: bool

    def __post_init__(self) -> None:
        check_bits(self.bits)
        if self.qweight.ndim != 2:
            raise ValueError(f"qweight must be 2-D [out, in], got shape {tuple(self.qweight.shape)}")
        if self.qweight.dtype not in (torch.int16, torch.int32, torch.int64, torch.uint8, torch.int8):
            raise TypeError(f"qweight must hold integer codes, got dtype {self.qweight.dtype}")
        out_f, in_f = self.qweight.shape
        if self.scales.shape != self.zeros.shape or self.scales.ndim != 2 or self.scales.shape[0] != out_f:
            raise ValueError(f"scales {tuple(self.scales.shape)} and zeros {tuple(self.zeros.shape)} must both be "
                             f"[{out_f}, n_groups]")
        groups = _column_groups(in_f, self.group_size, self.g_idx, self.qweight.device)
        if in_f and int(groups.max()) >= self.scales.shape[1]:
            raise ValueError(f"a column maps to group {int(groups.max())} but scales has only "
                             f"{self.scales.shape[1]} groups")

    @property
    def shape(self) -> torch.Size:
        """``(out_features, in_features)``."""
        return self.qweight.shape

    @property
    def n_groups(self) -> int:
        return self.scales.shape[1]

    def column_groups(self) -> Tensor:
        """The group of each input column (``g_idx`` or the consecutive default)."""
        return _column_groups(self.qweight.shape[1], self.group_size, self.g_idx, self.qweight.device)

    def dequantize(self, dtype: torch.dtype | None = None) -> Tensor:
        r"""The float weight :math:`S_{r,g(j)}(Q_{rj} - Z_{r,g(j)})` in the dtype of the scales (or ``dtype``)."""
        cols = self.column_groups()
        s = self.scales[:, cols]
        z = self.zeros[:, cols]
        w = s * (self.qweight.to(s.dtype) - z)
        return w if dtype is None else w.to(dtype)

    def size_bytes(self, scale_bytes: int = 2) -> float:
        """Storage of the packed form: ``bits`` per code, one scale (``scale_bytes``) and one ``bits``-wide zero
        per group, plus the ``g_idx`` (int32) when present."""
        out_f, in_f = self.qweight.shape
        codes = out_f * in_f * self.bits / 8
        meta = self.scales.numel() * (scale_bytes + self.bits / 8)
        return codes + meta + (4 * in_f if self.g_idx is not None else 0)
