r"""GPTQ (Frantar, Ashkboos, Hoefler & Alistarh, ICLR 2023, arXiv:2210.17323), as the reference code computes it.

Layer objective :math:`\min_{\hat W}\lVert W X - \hat W X\rVert_F^2` with the Hessian :math:`H = 2 X X^\top / n`
(:math:`X` = the layer's inputs, ``[in, n]`` over :math:`n` calibration tokens; :func:`hessian_from_inputs`).
The sweep (the reference's ``fasterquant``, IST-DASLab/gptq ``gptq.py``; paper Algorithm 1):

1. dead inputs (:math:`H_{jj} = 0`): :math:`H_{jj} \leftarrow 1`, :math:`W_{:,j} \leftarrow 0`;
2. ``static_groups``: every group's scale/zero is fitted now, from the original :math:`W`;
3. ``act_order``: columns permuted by decreasing :math:`H_{jj}` (:math:`W \leftarrow W P`, :math:`H \leftarrow
   P^\top H P`);
4. damping :math:`H \leftarrow H + \lambda I`, :math:`\lambda = \text{damp}\cdot\mathrm{mean}(\mathrm{diag} H)`;
5. :math:`U` = the upper Cholesky factor of :math:`H^{-1}` (:math:`H^{-1} = U^\top U`); row :math:`q` of :math:`U`
   restricted to columns :math:`\ge q` is :math:`[H_F^{-1}]_{q,:} / \sqrt{[H_F^{-1}]_{qq}}` for the remaining set
   :math:`F = \{q, q+1, \dots\}` (paper eq. 4–5), so one factor replaces every OBS inverse update;
6. columns in blocks of ``block_size``; for column :math:`q` (paper eq. 2–3, with :math:`d = U_{qq}`):

   .. math::

       \hat w_q = \mathrm{quant}(w_q),\qquad e = (w_q - \hat w_q) / d,\qquad
       W_{:, q:b} \leftarrow W_{:, q:b} - e\, U_{q, q:b},

   then, after the block, the lazy update :math:`W_{:, b:} \leftarrow W_{:, b:} - E\, U_{\text{block}, b:}`.

A group's scale and zero are fitted when the sweep reaches the group's first column, from ``W[:, c:c+g]``, i.e.
from the weights **already compensated** by every earlier block (not from the original ``W``; the in-block
updates of the current block live in the block copy, and, as in the reference, are not seen by the fit: with
``group_size`` a multiple of ``block_size``, or ``block_size`` a multiple that starts every group at a block start,
the fit sees the fully compensated weights). With act-order the group of permuted column :math:`c` is
:math:`\lfloor c/g\rfloor`; carried back through the permutation it becomes ``g_idx`` (``g_idx[perm[c]] = c // g``).
With ``static_groups`` the groups are the natural consecutive ones, so no ``g_idx`` is needed.

:class:`GPTQSweep` is the one loop; FOEM/GPTAQ (:mod:`scale.quantize.foem`) override its two hooks
:meth:`GPTQSweep.column_error` and :meth:`GPTQSweep.after_column`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from scale.quantize.quantizer import (
    QuantizedWeight,
    check_bits,
    check_group_size,
    fit_range,
    quantize_codes,
)

__all__ = ["GPTQSweep", "HessianError", "SweepResult", "gptq", "hessian_from_inputs", "inverse_cholesky_upper"]


class HessianError(ValueError):
    """A Hessian GPTQ cannot use: wrong shape, non-finite, or not positive definite even after damping."""


def hessian_from_inputs(X: Tensor) -> Tensor:
    r""":math:`H = 2 X^\top X / n` for layer inputs ``X`` ``[n, in]`` (``n`` tokens), in float64 for float64
    input and float32 otherwise."""
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"expected layer inputs of shape [n_tokens, in] with n_tokens >= 1, got {tuple(X.shape)}")
    x = X if X.dtype == torch.float64 else X.float()
    return 2.0 * (x.T @ x) / x.shape[0]


def inverse_cholesky_upper(H: Tensor, damp: float, name: str = "weight") -> Tensor:
    r"""Upper :math:`U` with :math:`(H + \lambda I)^{-1} = U^\top U`, :math:`\lambda = \text{damp}\cdot
    \mathrm{mean}(\mathrm{diag} H)`; :class:`HessianError` naming ``name`` if the damped :math:`H` is not
    positive definite."""
    if not (isinstance(damp, (int, float)) and not isinstance(damp, bool)) or not math.isfinite(damp) or damp < 0:
        raise ValueError(f"damp must be a finite number >= 0 (0.01 typical), got {damp!r}")
    lam = damp * float(torch.diagonal(H).mean())
    Hd = H.clone()
    Hd.diagonal().add_(lam)
    L, info = torch.linalg.cholesky_ex(Hd)
    if int(info) != 0:
        eig_min = float(torch.linalg.eigvalsh(Hd.double()).min())
        raise HessianError(
            f"{name}: the Hessian is not positive definite after damping (damp={damp}, {lam:.4g} added to the "
            f"diagonal; smallest eigenvalue {eig_min:.4g}); raise damp or use more calibration tokens")
    Hinv = torch.cholesky_inverse(L)
    U, info = torch.linalg.cholesky_ex(Hinv, upper=True)
    if int(info) != 0:
        raise HessianError(f"{name}: the inverse Hessian lost positive definiteness numerically (damp={damp}); "
                           "raise damp")
    return U


@dataclass
class SweepResult:
    """The quantized weight and the reference's per-row loss :math:`\\sum_q (w_q - \\hat w_q)^2 / (2 d_q^2)`."""

    weight: QuantizedWeight
    losses: Tensor


class GPTQSweep:
    """The GPTQ column sweep (module docstring); one instance per configuration, :meth:`run` per layer.

    Subclasses change the compensation through :meth:`column_error` and :meth:`after_column` and the group fit
    through :meth:`fit_group`; the loop itself is shared.
    """

    def __init__(self, bits: int = 4, group_size: int = 128, sym: bool = False, *, act_order: bool = False,
                 static_groups: bool = False, damp: float = 0.01, block_size: int = 128,
                 allow_ragged: bool = False) -> None:
        check_bits(bits)
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive integer (128 in the reference), got {block_size!r}")
        if group_size != -1 and (isinstance(group_size, bool) or not isinstance(group_size, int)
                                 or group_size < 1):
            raise ValueError(f"group_size must be >= 1 or -1 (whole row), got {group_size!r}")
        self.bits, self.group_size, self.sym = bits, group_size, sym
        self.act_order, self.static_groups = bool(act_order), bool(static_groups)
        self.damp, self.block_size, self.allow_ragged = damp, block_size, allow_ragged
        self.maxq = 2 ** bits - 1

    # ---------------------------------------------------------------------------------------- hooks
    def fit_group(self, W: Tensor, W_raw: Tensor, start: int, stop: int) -> tuple[Tensor, Tensor]:
        """Scale and zero of the group of (permuted) columns ``start:stop``, fitted from the current ``W``."""
        return fit_range(W[:, start:stop], self.bits, self.sym)

    def column_error(self, w: Tensor, q: Tensor, w_raw: Tensor, d: Tensor) -> Tensor:
        """The scaled error :math:`e = (w - \\hat w)/d` propagated to the remaining columns."""
        return (w - q) / d

    def after_column(self, W1: Tensor, W1_raw: Tensor, i: int) -> None:
        """Called after column ``i`` of the block copy ``W1`` has been compensated (GPTQ: nothing)."""

    def asymmetric_term(self, U: Tensor, perm: Tensor | None, dead: Tensor) -> Tensor | None:
        """The GPTAQ matrix :math:`P` (``None`` for GPTQ); ``dead`` marks the dead input columns (natural order)."""
        return None

    # ---------------------------------------------------------------------------------------- the loop
    def run(self, W: Tensor, H: Tensor, name: str = "weight") -> SweepResult:
        """Quantize ``W`` ``[out, in]`` with the Hessian ``H`` ``[in, in]``; errors name the layer ``name``."""
        if W.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D weight [out, in], got shape {tuple(W.shape)}")
        out_f, cols = W.shape
        if H.shape != (cols, cols):
            raise HessianError(f"{name}: the Hessian must be [{cols}, {cols}] for a weight with {cols} input "
                               f"columns, got {tuple(H.shape)}")
        if not bool(torch.isfinite(H).all()):
            raise HessianError(f"{name}: the Hessian has non-finite entries")
        if not bool(torch.isfinite(W).all()):
            raise ValueError(f"{name}: the weight has non-finite entries")
        g = check_group_size(self.group_size, cols, allow_ragged=self.allow_ragged, where=name)
        grouped = self.group_size != -1
        dtype = torch.float64 if W.dtype == torch.float64 else torch.float32
        W = W.detach().to(dtype).clone()
        H = H.detach().to(dtype).clone()
        row_params = None if grouped else fit_range(W, self.bits, self.sym)  # reference: before dead columns

        dead = torch.diagonal(H) == 0
        H[dead, dead] = 1
        W[:, dead] = 0
        n_groups = math.ceil(cols / g)
        static = None
        if grouped and self.static_groups:
            static = [fit_range(W[:, k * g:min((k + 1) * g, cols)], self.bits, self.sym) for k in range(n_groups)]
        perm = None
        if self.act_order:
            perm = torch.argsort(torch.diagonal(H), descending=True)
            W = W[:, perm]
            H = H[perm][:, perm]
        W_raw = W.clone()
        U = inverse_cholesky_upper(H, self.damp, name)
        P = self.asymmetric_term(U, perm, dead)

        codes = torch.zeros_like(W)
        losses = torch.zeros(out_f, dtype=dtype)
        fitted: list[tuple[Tensor, Tensor]] = []
        scale, zero = row_params if row_params is not None else (None, None)
        B = self.block_size
        for i1 in range(0, cols, B):
            i2 = min(i1 + B, cols)
            count = i2 - i1
            W1 = W[:, i1:i2].clone()
            W1_raw = W_raw[:, i1:i2]
            U1 = U[i1:i2, i1:i2]
            Err1 = torch.zeros_like(W1)
            for i in range(count):
                c = i1 + i
                w = W1[:, i].clone()
                d = U1[i, i]
                if grouped:
                    if static is None:
                        if c % g == 0:
                            scale, zero = self.fit_group(W, W_raw, c, min(c + g, cols))
                            fitted.append((scale, zero))
                    else:
                        natural = int(perm[c]) if perm is not None else c
                        scale, zero = static[natural // g]
                code = quantize_codes(w, scale, zero, self.bits)
                q = scale * (code - zero)
                codes[:, c] = code
                losses += (w - q) ** 2 / d ** 2 / 2
                err = self.column_error(w, q, W1_raw[:, i], d)
                W1[:, i:] -= torch.outer(err, U1[i, i:])
                if P is not None:
                    W1[:, i:] += torch.outer(w, P[c, i1 + i:i2])
                Err1[:, i] = err
                self.after_column(W1, W1_raw, i)
            W[:, i2:] -= Err1 @ U[i1:i2, i2:]
            if P is not None:  # as the reference: the block copy at the block's end (its quantized values)
                W[:, i2:] += W1 @ P[i1:i2, i2:]

        g_idx = None
        if perm is not None:
            inv = torch.argsort(perm)
            codes = codes[:, inv]
            if grouped and static is None:
                g_idx = (torch.arange(cols) // g)[inv]
        if not grouped:
            scales, zeros = scale[:, None], zero[:, None]
        elif static is not None:
            scales = torch.stack([s for s, _ in static], 1)
            zeros = torch.stack([z for _, z in static], 1)
        else:
            scales = torch.stack([s for s, _ in fitted], 1)
            zeros = torch.stack([z for _, z in fitted], 1)
        qw = QuantizedWeight(codes.to(torch.int16), scales, zeros, g_idx, self.bits, self.group_size, self.sym)
        return SweepResult(qw, losses)


def gptq(W: Tensor, H: Tensor, bits: int = 4, group_size: int = 128, act_order: bool = False,
         static_groups: bool = False, damp: float = 0.01, block_size: int = 128, sym: bool = False, *,
         allow_ragged: bool = False, name: str = "weight") -> QuantizedWeight:
    r"""GPTQ-quantize ``W`` ``[out, in]`` given the layer Hessian ``H = 2 X X^T / n`` ``[in, in]``.

    See the module docstring for the update; ``damp`` is the reference's ``percdamp`` (1 %), ``block_size`` its
    ``blocksize`` (128). Errors (:class:`HessianError`, ``ValueError``) name ``name``.
    """
    sweep = GPTQSweep(bits, group_size, sym, act_order=act_order, static_groups=static_groups, damp=damp,
                      block_size=block_size, allow_ragged=allow_ragged)
    return sweep.run(W, H, name).weight
