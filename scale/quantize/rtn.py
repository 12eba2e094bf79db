r"""Round-to-nearest (RTN): the group quantizer applied to the original weight, with no compensation.

.. math::

    (S, Z) = \mathrm{fit}(W),\qquad Q = \mathrm{clamp}(\mathrm{round}(W / S) + Z, 0, 2^b - 1),

per row and group (:mod:`scale.quantize.quantizer`). It is the baseline of every comparison and the last step of
SmoothQuant+ and AWQ.
"""

from __future__ import annotations

from torch import Tensor

from scale.quantize.quantizer import QuantizedWeight, fit_groups, quantize_with

__all__ = ["rtn"]


def rtn(W: Tensor, bits: int = 4, group_size: int = 128, sym: bool = False, *,
        allow_ragged: bool = False) -> QuantizedWeight:
    """Quantize ``W`` ``[out, in]`` group-wise to ``bits`` bits by rounding to nearest.

    ``group_size=-1``: one group per row. A ``group_size`` that does not divide ``in`` is refused unless
    ``allow_ragged`` (then the last group is the shorter remainder).
    """
    scales, zeros = fit_groups(W, bits, group_size, sym, allow_ragged=allow_ragged)
    q = quantize_with(W, scales, zeros, bits, group_size)
    return QuantizedWeight(q, scales, zeros, None, bits, group_size, sym)
