r"""FOEM ("First-Order Error Matters", Zheng, Qin et al., arXiv:2507.11017, AAAI 2026) and the GPTAQ term, as a
delta on the GPTQ sweep of :mod:`scale.quantize.gptq`.

GPTQ's compensation moves the not-yet-quantized weights away from the full-precision ones, so the gradient of the
layer loss at the current point is no longer zero; FOEM keeps the first-order term of
:math:`\Delta L \approx g^\top\delta + \tfrac12\delta^\top H\delta` with :math:`g \approx H(w - w_{\mathrm{fp}})`,
whose Newton step :math:`-H^{-1}g = -(w - w_{\mathrm{fp}})` needs no inverse. Per column :math:`q` of a block, with
:math:`w_{\mathrm{raw}}` the full-precision weights (after the act-order permutation) and :math:`d = U_{qq}`
(the form of the official integration, ModelCloud/GPTQModel ``gptqmodel/quantization/foem.py``):

.. math::

    e = \frac{(w_q - \hat w_q) - \beta\,(w_q - w_{\mathrm{raw},q})}{d},\qquad
    W_{:, q:b} \leftarrow W_{:, q:b} - e\,U_{q, q:b} + \alpha\text{-term},\qquad
    W_{:, q+1} \leftarrow W_{:, q+1} - \beta\,(W_{:, q+1} - W_{\mathrm{raw}, q+1}),

then GPTQ's lazy block update. The :math:`\alpha`-term is GPTAQ's asymmetric calibration (Li et al. 2025,
"GPTAQ", arXiv:2504.02692; reference code GPTQModel ``gptaq.py``): with
:math:`\Delta X X^\top = 2\sum (x - \tilde x)\,\tilde x^\top / n` (:math:`\tilde x` the input the already-quantized
model feeds the layer, from which :math:`H` is built, :math:`x` the full-precision model's), the matrix
:math:`P = \alpha\,\mathrm{triu}_1(\Delta X X^\top U^\top)\,U` (strictly upper triangular) and the update adds
:math:`w_q P_{q, q:b}` in the block (:math:`w_q` before its quantization) and :math:`W_{\text{block}} P_{\text{block},
b:}` after it, with :math:`W_{\text{block}}` the block copy at the block's end, i.e. its quantized values (as the
reference does).

:math:`\alpha = \beta = 0` is GPTQ bit for bit (the extra terms vanish exactly); :math:`\alpha > 0, \beta = 0` is
GPTAQ (0.25 recommended); :math:`\alpha = 0, \beta \in [0.1, 0.25]` FOEM; the reference default is
:math:`(\alpha, \beta) = (0, 0.2)`.

Differences from the reference: its post-block line ``if i + 1 < count: W[:, i2 + 1] -= ...`` runs with
``i = count - 1`` and is therefore dead code; it is not reproduced. The pull-back of the next column stays inside
the block (as in the reference, the first column of the next block is not pulled back).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scale.quantize.gptq import GPTQSweep, HessianError
from scale.quantize.quantizer import QuantizedWeight

__all__ = ["FOEMSweep", "foem"]


class FOEMSweep(GPTQSweep):
    """The GPTQ sweep with FOEM's first-order correction (``beta``) and GPTAQ's asymmetric term (``alpha``,
    needs ``dXXT``)."""

    def __init__(self, bits: int = 4, group_size: int = 128, sym: bool = False, *, beta: float = 0.2,
                 alpha: float = 0.0, dXXT: Tensor | None = None, **kw) -> None:
        super().__init__(bits, group_size, sym, **kw)
        for label, v in (("beta", beta), ("alpha", alpha)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"FOEM {label} must be a finite number >= 0, got {v!r}")
        if alpha > 0 and dXXT is None:
            raise ValueError("FOEM alpha > 0 (the GPTAQ term) needs dXXT = 2 sum (x_fp - x_quant) x_quant^T / n")
        self.beta, self.alpha, self.dXXT = float(beta), float(alpha), dXXT

    def column_error(self, w: Tensor, q: Tensor, w_raw: Tensor, d: Tensor) -> Tensor:
        return ((w - q) - self.beta * (w - w_raw)) / d

    def after_column(self, W1: Tensor, W1_raw: Tensor, i: int) -> None:
        if i + 1 < W1.shape[1]:
            W1[:, i + 1] -= self.beta * (W1[:, i + 1] - W1_raw[:, i + 1])

    def asymmetric_term(self, U: Tensor, perm: Tensor | None, dead: Tensor) -> Tensor | None:
        if self.alpha == 0:
            return None
        D = self.dXXT.to(U.dtype).clone()
        if D.shape != U.shape:
            raise HessianError(f"dXXT must be {tuple(U.shape)} like the Hessian, got {tuple(D.shape)}")
        D[:, dead] = 0
        if perm is not None:
            D = D[perm][:, perm]
        return self.alpha * torch.triu(D @ U.T, diagonal=1) @ U


def foem(W: Tensor, H: Tensor, bits: int = 4, group_size: int = 128, beta: float = 0.2, alpha: float = 0.0,
         dXXT: Tensor | None = None, act_order: bool = False, static_groups: bool = False, damp: float = 0.01,
         block_size: int = 128, sym: bool = False, *, allow_ragged: bool = False,
         name: str = "weight") -> QuantizedWeight:
    """FOEM (and GPTAQ for ``alpha > 0``) on ``W`` ``[out, in]`` with Hessian ``H``; the arguments of
    :func:`scale.quantize.gptq` plus ``beta``, ``alpha`` and ``dXXT`` (module docstring)."""
    sweep = FOEMSweep(bits, group_size, sym, beta=beta, alpha=alpha, dXXT=dXXT, act_order=act_order,
                      static_groups=static_groups, damp=damp, block_size=block_size, allow_ragged=allow_ragged)
    return sweep.run(W, H, name).weight
