r"""K-FAC and EK-FAC: Kronecker-factored curvature for ``Linear`` and ``Conv2d`` layers.

One implementation of the factor and inverse arithmetic serves the operators here and the optimizer
:class:`optlib.optim.KFAC` / :class:`optlib.optim.KFACPreconditioner`.

**K-FAC** (Martens & Grosse 2015, arXiv:1503.05671; conv layers: Grosse & Martens 2016,
arXiv:1602.01407; weight sharing: Eschenhagen et al. 2023, arXiv:2311.00636). A layer computes
:math:`s = W a` (``a`` the input, or a patch for ``Conv2d``; with ``separate_weight_and_bias=False``, ``a``
carries a homogeneous coordinate 1 and ``W = [W, b]``). The layer's block of the Fisher/GGN is
approximated by

.. math:: F_W \approx S \otimes A \quad(\text{flat order } W\text{.flatten(), i.e. row-major}),\qquad
          (S\otimes A)\operatorname{vec}(V) = \operatorname{vec}(S\,V\,A),

.. math::

    A = \frac{1}{N}\sum_n \frac{1}{P}\sum_p a_{np}a_{np}^\top \ \ (\text{expand}),\qquad
    A = \frac{1}{N}\sum_n \bar a_n\bar a_n^\top,\ \bar a_n = \frac1P\sum_p a_{np}\ \ (\text{reduce}),

.. math::

    S = \sum_b c_b \sum_{n\in b} \sum_k w_k \sum_p b^{(k)}_{np}b^{(k)\top}_{np}\ \ (\text{expand}),\qquad
    S = \sum_b c_b \sum_{n\in b}\sum_k w_k \Big(\sum_p b^{(k)}_{np}\Big)\Big(\sum_p b^{(k)}_{np}\Big)^\top
    \ \ (\text{reduce}),

where ``P`` counts the shared positions (sequence entries, conv output pixels), :math:`c_b` is the loss
scale of :mod:`optlib.curvature.losses`, and :math:`b^{(k)} = \partial z^\top u^{(k)}/\partial s` backpropagates
output-space vectors :math:`u^{(k)}`: the columns of the per-term loss Hessian's square root
(``fisher_type="type2"``, :math:`w_k = 1`), gradients for labels sampled from the model (``"mc"``,
:math:`w_k = 1/M`; the true Fisher), or data-label gradients (``"empirical"``). With this scaling
K-FAC approximates the operators of :mod:`optlib.curvature.ggn` for the same loss and reduction, and is
exact (type-2) for batch size 1 and for deep linear networks with MSE. The factors equal curvlinops'
``KFACLinearOperator`` ones (constant 1; spec 50 §6 item 8).

A bias block without its weight (``separate_weight_and_bias=True``) is :math:`S` alone.

**EK-FAC** (George et al. 2018, arXiv:1806.03884): keep the eigenbases :math:`Q_A, Q_S` of the K-FAC factors
and re-estimate the diagonal in that basis from per-sample gradients
:math:`G_n = \sum_p b_{np} a_{np}^\top`:
:math:`\Lambda_{ij} = \sum_b c_b\sum_{n,k} w_k\,(Q_S^\top G^{(k)}_n Q_A)_{ij}^2`, and
:math:`F_W \approx (Q_S\otimes Q_A)\operatorname{diag}(\operatorname{vec}\Lambda)(Q_S\otimes Q_A)^\top`
(curvlinops' ``EKFACLinearOperator`` convention).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..linalg.regularized import FactorizationError
from .damping import Damping
from .losses import Loss
from .operators import Cols, ModelCurvature

Tensor = torch.Tensor

SUPPORTED_LAYERS = (nn.Linear, nn.Conv2d)
FISHER_TYPES = ("mc", "type2", "empirical")
KFAC_APPROX = ("expand", "reduce")


# ---------------------------------------------------------------------------------------- layers
@dataclass
class KFACLayer:
    """A supported layer and which of its parameters the curvature covers (full parameter names)."""

    name: str
    module: nn.Module
    weight: str | None
    bias: str | None
    homogeneous: bool

    @property
    def out_dim(self) -> int:
        m = self.module
        return m.out_features if isinstance(m, nn.Linear) else m.out_channels

    @property
    def in_dim(self) -> int:
        """Columns of the weight matrix view (with the homogeneous coordinate if any)."""
        m = self.module
        d = m.in_features if isinstance(m, nn.Linear) else m.in_channels * math.prod(m.kernel_size)
        return d + int(self.homogeneous)


def find_layers(model: nn.Module, param_names: Sequence[str], separate_weight_and_bias: bool = True) -> list[KFACLayer]:
    """The ``Linear``/``Conv2d`` layers owning ``param_names``; any other parameter is an error."""
    wanted = set(param_names)
    claimed: set[str] = set()
    layers = []
    for mname, mod in model.named_modules():
        if not isinstance(mod, SUPPORTED_LAYERS):
            continue
        prefix = f"{mname}." if mname else ""
        w = f"{prefix}weight" if f"{prefix}weight" in wanted else None
        b = f"{prefix}bias" if mod.bias is not None and f"{prefix}bias" in wanted else None
        if w is None and b is None:
            continue
        if isinstance(mod, nn.Conv2d):
            if mod.groups != 1:
                raise ValueError(f"K-FAC: Conv2d layer {mname!r} has groups={mod.groups}; only groups=1 is supported")
            if mod.padding_mode != "zeros":
                raise ValueError(f"K-FAC: Conv2d layer {mname!r} has padding_mode={mod.padding_mode!r}; only 'zeros'")
            if isinstance(mod.padding, str) and mod.padding != "valid":
                raise ValueError(f"K-FAC: Conv2d layer {mname!r} has padding={mod.padding!r}; use explicit integers")
        layers.append(KFACLayer(mname, mod, w, b, homogeneous=(not separate_weight_and_bias and w is not None
                                                              and b is not None)))
        claimed.update(x for x in (w, b) if x is not None)
    rest = [n for n in param_names if n not in claimed]
    if rest:
        owners = {}
        for n in rest:
            mod = model.get_submodule(n.rpartition(".")[0]) if "." in n else model
            owners[n] = type(mod).__name__
        raise ValueError(f"K-FAC supports parameters of nn.Linear and nn.Conv2d layers only; got {owners}")
    return layers


def layer_inputs(module: nn.Module, x: Tensor) -> Tensor:
    """The layer's input as ``(B, P, d_in)``: positions P (sequence entries or conv output pixels)."""
    if isinstance(module, nn.Linear):
        return x.reshape(x.shape[0], -1, x.shape[-1])
    pad = 0 if module.padding == "valid" else module.padding
    cols = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=pad, stride=module.stride)
    return cols.transpose(1, 2)


def layer_output_grads(module: nn.Module, g: Tensor) -> Tensor:
    """Gradients w.r.t. the layer's output as ``(B, P, d_out)``."""
    if isinstance(module, nn.Linear):
        return g.reshape(g.shape[0], -1, g.shape[-1])
    return g.flatten(2).transpose(1, 2)


def with_ones(a: Tensor) -> Tensor:
    return torch.cat([a, a.new_ones(*a.shape[:-1], 1)], dim=-1)


def input_gram(a: Tensor, approx: str) -> Tensor:
    """:math:`\\sum_n \\frac1P\\sum_p a a^\\top` (expand) or :math:`\\sum_n \\bar a\\bar a^\\top` (reduce);
    ``a``: (B, P, d)."""
    if approx == "expand":
        flat = a.reshape(-1, a.shape[-1])
        return flat.T @ flat / a.shape[1]
    abar = a.mean(1)
    return abar.T @ abar


def output_gram(b: Tensor, approx: str) -> Tensor:
    """:math:`\\sum_{n,p} bb^\\top` (expand) or :math:`\\sum_n (\\sum_p b)(\\sum_p b)^\\top` (reduce);
    ``b``: (..., B, P, d)."""
    if approx == "expand":
        flat = b.reshape(-1, b.shape[-1])
    else:
        flat = b.sum(-2).reshape(-1, b.shape[-1])
    return flat.T @ flat


def backprop_rows(loss: Loss, z: Tensor, y: Tensor | None, fisher_type: str, mc_samples: int,
                  generator: torch.Generator | None) -> tuple[Tensor, float]:
    """Output-space vectors ``(K, *z.shape)`` to backpropagate for a Fisher type, and their weight ``w_k``
    (the loss scale :math:`c_b` is not included)."""
    zr = loss.rows(z.detach())
    if fisher_type == "type2":
        R = loss.hessian_sqrt_rows(zr, None if y is None else loss.label_rows(y, z))
        weight = 1.0
    elif fisher_type == "mc":
        R = loss.sample_grad_rows(zr, mc_samples, generator)
        weight = 1.0 / mc_samples
    elif fisher_type == "empirical":
        if y is None:
            raise ValueError("the empirical Fisher needs data labels")
        R = loss.grad_rows(zr, loss.label_rows(y, z))[None]
        weight = 1.0
    else:
        raise ValueError(f"unknown fisher_type {fisher_type!r}; use one of {', '.join(FISHER_TYPES)}")
    return loss.unrows(R, z), weight


class LayerCapture:
    """Forward hooks that record each layer's input and insert a zero "probe" on its output.

    ``grad`` of the model output w.r.t. the probes is the gradient w.r.t. the layer outputs, even when
    an in-place activation later overwrites the output tensor.
    """

    def __init__(self, layers: Sequence[KFACLayer], probes: bool = True) -> None:
        self.layers = list(layers)
        self.use_probes = probes
        self.active = True  # hooks record only while active and grad mode is on
        self.inputs: dict[str, Tensor] = {}
        self.probes: dict[str, Tensor] = {}
        self._handles: list[Any] = []

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if not (self.active and torch.is_grad_enabled()):
                return None
            if name in self.inputs:
                raise RuntimeError(f"K-FAC: layer {name!r} was called twice in one forward pass (shared layers "
                                   "are not supported)")
            self.inputs[name] = inputs[0].detach()
            if self.use_probes:
                probe = torch.zeros_like(output, requires_grad=True)
                self.probes[name] = probe
                return output + probe
            return None

        return hook

    def clear(self) -> None:
        self.inputs, self.probes = {}, {}

    def attach(self) -> LayerCapture:
        self.clear()
        for layer in self.layers:
            self._handles.append(layer.module.register_forward_hook(self._hook(layer.name)))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> LayerCapture:
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    def output_grads(self, z: Tensor, u: Tensor, retain_graph: bool = True) -> dict[str, Tensor]:
        """Gradients of :math:`\\langle z, u\\rangle` w.r.t. each layer's output, ``(B, P, d_out)``."""
        names = list(self.probes)
        grads = torch.autograd.grad(z, [self.probes[n] for n in names], grad_outputs=u, retain_graph=retain_graph,
                                    allow_unused=True)
        mods = {layer.name: layer.module for layer in self.layers}
        return {n: layer_output_grads(mods[n], torch.zeros_like(self.probes[n]) if g is None else g)
                for n, g in zip(names, grads)}


def batch_factors(layers: Sequence[KFACLayer], capture: LayerCapture, z: Tensor, vectors: Tensor, scale: float,
                  approx: str, retain_graph: bool = False) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """One batch's contributions: ``A_sum[layer] = input_gram`` (not yet divided by N) and
    ``S[layer] = scale * sum_k output_gram(b^(k))`` for the output-space ``vectors`` ``(K, *z.shape)``."""
    A_sum: dict[str, Tensor] = {}
    for layer in layers:
        if layer.weight is not None:
            a = layer_inputs(layer.module, capture.inputs[layer.name])
            A_sum[layer.name] = input_gram(with_ones(a) if layer.homogeneous else a, approx)
    S: dict[str, Tensor] = {}
    K = vectors.shape[0]
    for k in range(K):
        grads = capture.output_grads(z, vectors[k], retain_graph=retain_graph or k < K - 1)
        for layer in layers:
            g = output_gram(grads[layer.name], approx) * scale
            S[layer.name] = g if layer.name not in S else S[layer.name] + g
    return A_sum, S


# ---------------------------------------------------------------------------------------- Kronecker algebra
def factor_eigh(M: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (ascending) and eigenvectors of a Kronecker factor (symmetrized first).

    The factors are Gram matrices, hence PSD; negative eigenvalues can only be rounding and are set to 0.
    """
    if not bool(torch.isfinite(M).all()):
        raise FactorizationError("a K-FAC factor has non-finite entries (NaN or inf): the model or the "
                                 "training diverged")
    evals, Q = torch.linalg.eigh(0.5 * (M + M.T))
    return evals.clamp_min(0.0), Q


def kron_matmat(S: Tensor, A: Tensor | None, V: Tensor) -> Tensor:
    """:math:`S V A` for ``V`` of shape ``(k, out, in)`` (``A is None``: :math:`S V` for ``(k, out)``)."""
    if A is None:
        return V @ S.T
    return S @ V @ A


def _check_denominator(denom: Tensor, scale: float, what: str, damped: bool) -> None:
    """Undamped: the block must be numerically nonsingular (eigenvalues above ``n eps scale``). Damped by a
    positive amount: the damped eigenvalues must be positive (the factors are PSD up to rounding)."""
    tol = denom.shape[-1] * torch.finfo(denom.dtype).eps * max(scale, 1e-300) if not damped else 0.0
    worst = float(denom.min())
    if not worst > tol:
        raise FactorizationError(
            f"{what}: the damped Kronecker block is singular or indefinite (smallest eigenvalue {worst:.3e}, "
            f"tolerance {tol:.1e}); increase the damping")


def kron_solve(eig_S: tuple[Tensor, Tensor], eig_A: tuple[Tensor, Tensor] | None, V: Tensor, damping: Damping,
               lam: Tensor | float, what: str = "K-FAC", eigenvalues: Tensor | None = None,
               weight_eig_A: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Solve one Kronecker block for ``V`` ``(k, out, in)`` (or ``(k, out)`` when ``eig_A is None``).

    The block is :math:`S\\otimes A` (or the EK-FAC diagonal ``eigenvalues`` in the eigenbasis) with the
    damping of ``damping``; ``lam`` is the Tikhonov value (a scalar, or one per column for ``grad_norm``).
    Heuristic damping of a separate bias block uses the layer's damped :math:`S + \\tfrac1\\pi\\sqrt\\lambda I`
    (``weight_eig_A``: the layer's input factor) and :math:`S + \\lambda I` for a layer whose weight is not
    covered (curvlinops' ``KFACInverseLinearOperator`` convention).
    """
    lS, QS = eig_S
    lam_t = torch.as_tensor(lam, dtype=V.dtype, device=V.device)
    if eig_A is None:
        Vt = V @ QS  # (k, out): (QS^T v) for every column
        if eigenvalues is not None:
            base = eigenvalues
        else:
            base = lS
        if damping.mode == "heuristic":
            if weight_eig_A is not None:
                lA = weight_eig_A[0]
                shift = damping.heuristic_shifts(float(lA.sum()), lA.numel(), float(lS.sum()), lS.numel())[1]
            else:
                shift = damping.value
            denom = (base + shift).expand(V.shape[0], -1)
            damped = shift > 0
        else:
            denom = base + lam_t.reshape(-1, 1) if lam_t.ndim else base + lam_t
            denom = denom.expand(V.shape[0], -1)
            damped = float(lam_t.min()) > 0
        _check_denominator(denom, float(base.abs().max()) + float(lam_t.max()), what, damped)
        return (Vt / denom) @ QS.T
    lA, QA = eig_A
    Vt = QS.T @ V @ QA
    if eigenvalues is not None:
        base = eigenvalues
    else:
        base = lS[:, None] * lA[None, :]
    if damping.mode == "heuristic":
        if eigenvalues is not None:
            raise ValueError("heuristic (pi) damping is defined for K-FAC's factors; for EK-FAC use 'exact'")
        dA, dS = damping.heuristic_shifts(float(lA.sum()), lA.numel(), float(lS.sum()), lS.numel())
        denom = ((lS + dS)[:, None] * (lA + dA)[None, :]).expand(V.shape[0], -1, -1)
        scale = float(denom.abs().max())
        damped = dA > 0 and dS > 0
    else:
        denom = base + (lam_t.reshape(-1, 1, 1) if lam_t.ndim else lam_t)
        denom = denom.expand(V.shape[0], -1, -1)
        scale = float(base.abs().max()) + float(lam_t.max())
        damped = float(lam_t.min()) > 0
    _check_denominator(denom, scale, what, damped)
    return QS @ (Vt / denom) @ QA.T


def kron_inverse_factors(eig_S: tuple[Tensor, Tensor], eig_A: tuple[Tensor, Tensor] | None, damping: Damping,
                         what: str = "K-FAC") -> tuple[Tensor, Tensor | None]:
    """``((S + d_S I)^{-1}, (A + d_A I)^{-1})`` for damping that keeps the block a Kronecker product
    (``"heuristic"`` shifts, ``"none"`` no shift), from the eigendecompositions; then a solve is the two
    products :math:`(S+d_SI)^{-1} V (A+d_AI)^{-1}` (and :math:`(S+d_SI)^{-1}v` for a separate bias, the
    bias convention of :func:`kron_solve`). Equal to :func:`kron_solve` for those modes."""
    lS, QS = eig_S
    if damping.mode == "heuristic":
        if eig_A is None:
            dS, dA = damping.value, 0.0
        else:
            lA = eig_A[0]
            dA, dS = damping.heuristic_shifts(float(lA.sum()), lA.numel(), float(lS.sum()), lS.numel())
    elif damping.mode == "none":
        dS = dA = 0.0
    else:
        raise ValueError(f"damping mode {damping.mode!r} is not a Kronecker product of damped factors; use kron_solve")
    damped = damping.mode != "none"
    _check_denominator((lS + dS).unsqueeze(0), float(lS.abs().max()) + dS, what, damped and dS > 0)
    S_inv = (QS / (lS + dS)) @ QS.T
    A_inv = None
    if eig_A is not None:
        lA, QA = eig_A
        _check_denominator((lA + dA).unsqueeze(0), float(lA.abs().max()) + dA, what, damped and dA > 0)
        A_inv = (QA / (lA + dA)) @ QA.T
    return S_inv, A_inv


def block_lambda(damping: Damping, norms: Tensor) -> Tensor | float:
    """Tikhonov value(s) for a block: per column from the layer gradient norms for ``grad_norm``."""
    if damping.mode == "grad_norm":
        return torch.tensor([damping.lam(float(g)) for g in norms], dtype=norms.dtype, device=norms.device)
    return damping.lam()


def gather_block(layer: KFACLayer, cols: dict[str, Tensor]) -> tuple[Tensor | None, Tensor | None]:
    """``(weight block (k, out, in), bias block (k, out))`` of a layer from columns; homogeneous: one block."""
    W = None
    if layer.weight is not None:
        w = cols[layer.weight]
        W = w.reshape(w.shape[0], w.shape[1], -1)
        if layer.homogeneous:
            W = torch.cat([W, cols[layer.bias].unsqueeze(-1)], dim=-1)
            return W, None
    b = cols[layer.bias] if layer.bias is not None else None
    return W, b


def scatter_block(layer: KFACLayer, W: Tensor | None, b: Tensor | None, shapes: dict[str, torch.Size],
                  out: dict[str, Tensor]) -> None:
    if layer.homogeneous:
        out[layer.weight] = W[..., :-1].reshape(W.shape[0], *shapes[layer.weight])
        out[layer.bias] = W[..., -1]
        return
    if layer.weight is not None:
        out[layer.weight] = W.reshape(W.shape[0], *shapes[layer.weight])
    if layer.bias is not None:
        out[layer.bias] = b


# ---------------------------------------------------------------------------------------- operators
class KFAC(ModelCurvature):
    """K-FAC over ``Linear``/``Conv2d`` parameters (see the module docstring for the factors).

    Parameters
    ----------
    model_func, loss_func, params, data, num_data
        As in :class:`~optlib.curvature.operators.ModelCurvature`; ``model_func`` must be an ``nn.Module``
        and the loss one of the built-in likelihoods.
    fisher_type : {"mc", "type2", "empirical"}
        What :math:`S` averages (default ``"mc"``, the true Fisher by sampling).
    mc_samples : int
        Labels drawn per loss term for ``"mc"``.
    kfac_approx : {"expand", "reduce"}
        Treatment of weight sharing (Eschenhagen et al. 2023).
    separate_weight_and_bias : bool
        Separate weight and bias blocks (default) or one block with a homogeneous coordinate.
    seed : int
        Seed of the label sampling.
    """

    kronecker = True

    def __init__(self, model_func: nn.Module, loss_func: Any, params: Any = None, data: Any = None, *,
                 fisher_type: str = "mc", mc_samples: int = 1, kfac_approx: str = "expand",
                 separate_weight_and_bias: bool = True, seed: int = 2147483647, num_data: int | None = None) -> None:
        if not isinstance(model_func, nn.Module):
            raise TypeError("K-FAC needs an nn.Module (its Linear/Conv2d layers are hooked)")
        if fisher_type not in FISHER_TYPES:
            raise ValueError(f"unknown fisher_type {fisher_type!r}; use one of {', '.join(FISHER_TYPES)}")
        if kfac_approx not in KFAC_APPROX:
            raise ValueError(f"unknown kfac_approx {kfac_approx!r}; use one of {', '.join(KFAC_APPROX)}")
        if int(mc_samples) < 1 or (fisher_type != "mc" and int(mc_samples) != 1):
            raise ValueError("mc_samples must be >= 1, and 1 unless fisher_type='mc'")
        super().__init__(model_func, loss_func, params, data, num_data=num_data)
        if not self.loss.builtin:
            raise ValueError("K-FAC needs a likelihood loss (MSELoss, CrossEntropyLoss, BCEWithLogitsLoss), "
                             f"got {self.loss!r}")
        self.fisher_type = fisher_type
        self.mc_samples = int(mc_samples)
        self.kfac_approx = kfac_approx
        self.separate_weight_and_bias = bool(separate_weight_and_bias)
        self.seed = int(seed)
        self.layers = find_layers(model_func, self.names, self.separate_weight_and_bias)
        self._shapes = dict(zip(self.names, self.shapes))
        self._A: dict[str, Tensor] = {}
        self._S: dict[str, Tensor] = {}
        self._eigs: dict[str, tuple] = {}
        self._compute_factors()

    # -------------------------------------------------------------- factors
    def _generator(self) -> torch.Generator:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed)
        return gen

    def _passes(self):
        """Yield ``(capture, z, vectors, scale)`` per batch, with the backward graph alive."""
        gen = self._generator()
        leaves = {n: t.detach().requires_grad_(True) for n, t in self.params.items()}
        for X, y, w in self.batches():
            with LayerCapture(self.layers) as cap, torch.enable_grad():
                z = self.forward(leaves, X)
            self.loss.check(z, y)
            vectors, wk = backprop_rows(self.loss, z, y, self.fisher_type, self.mc_samples, gen)
            yield cap, z, vectors, w * self.loss.term_scale(z) * wk

    def _compute_factors(self) -> None:
        A_sum: dict[str, Tensor] = {}
        S: dict[str, Tensor] = {}
        for cap, z, vectors, scale in self._passes():
            a, s = batch_factors(self.layers, cap, z, vectors, scale, self.kfac_approx)
            for n, t in a.items():
                A_sum[n] = t if n not in A_sum else A_sum[n] + t
            for n, t in s.items():
                S[n] = t if n not in S else S[n] + t
        self._A = {n: t / self.num_data for n, t in A_sum.items()}
        self._S = S

    def factors(self) -> dict[str, tuple[Tensor | None, Tensor]]:
        """``layer name -> (A, S)`` (``A`` is ``None`` for a layer whose weight is not covered)."""
        return {layer.name: (self._A.get(layer.name), self._S[layer.name]) for layer in self.layers}

    def _factor_eigs(self, layer: KFACLayer):
        if layer.name not in self._eigs:
            eA = factor_eigh(self._A[layer.name]) if layer.name in self._A else None
            self._eigs[layer.name] = (factor_eigh(self._S[layer.name]), eA)
        return self._eigs[layer.name]

    # -------------------------------------------------------------- products and solves
    def _apply_layer(self, layer: KFACLayer, W: Tensor | None, b: Tensor | None):
        S, A = self._S[layer.name], self._A.get(layer.name)
        return (None if W is None else kron_matmat(S, A, W)), (None if b is None else kron_matmat(S, None, b))

    def _matmat(self, cols: Cols) -> Cols:
        out: dict[str, Tensor] = {}
        for layer in self.layers:
            W, b = gather_block(layer, cols)
            RW, Rb = self._apply_layer(layer, W, b)
            scatter_block(layer, RW, Rb, self._shapes, out)
        return out

    def _solve_layer(self, layer: KFACLayer, W, b, damping: Damping, lam):
        eS, eA = self._factor_eigs(layer)
        what = f"{type(self).__name__} layer {layer.name!r}"
        RW = None if W is None else kron_solve(eS, eA, W, damping, lam, what)
        Rb = None if b is None else kron_solve(eS, None, b, damping, lam, what, weight_eig_A=eA)
        return RW, Rb

    def _solve(self, cols: Cols, d: Damping, gcols: Cols | None) -> Cols:
        out: dict[str, Tensor] = {}
        for layer in self.layers:
            names = [n for n in (layer.weight, layer.bias) if n is not None]
            lam = block_lambda(d, self._grad_norms(cols, gcols, names)) if d.mode == "grad_norm" else d.lam()
            W, b = gather_block(layer, cols)
            RW, Rb = self._solve_layer(layer, W, b, d, lam)
            scatter_block(layer, RW, Rb, self._shapes, out)
        return out


class EKFAC(KFAC):
    """EK-FAC: K-FAC's eigenbases with the diagonal re-estimated from per-sample gradients.

    Same parameters as :class:`KFAC`; a second pass over the data (with the same label draws) computes
    :math:`\\Lambda`. Damping modes: ``"none"``, ``"tikhonov"``/``"exact"``, ``"grad_norm"``, ``"lm"``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lambda: dict[str, tuple[Tensor | None, Tensor | None]] = {}
        self._correct_eigenvalues()

    def _correct_eigenvalues(self) -> None:
        acc: dict[str, list] = {layer.name: [None, None] for layer in self.layers}
        for cap, z, vectors, scale in self._passes():
            K = vectors.shape[0]
            rot_a = {}
            for layer in self.layers:
                if layer.weight is not None:
                    a = layer_inputs(layer.module, cap.inputs[layer.name])
                    a = with_ones(a) if layer.homogeneous else a
                    rot_a[layer.name] = a @ self._factor_eigs(layer)[1][1]
            for k in range(K):
                grads = cap.output_grads(z, vectors[k], retain_graph=k < K - 1)
                for layer in self.layers:
                    (_, QS), _ = self._factor_eigs(layer)
                    br = grads[layer.name] @ QS  # (B, P, out)
                    slot = acc[layer.name]
                    if layer.weight is not None:
                        G = torch.einsum("bpo,bpi->boi", br, rot_a[layer.name])
                        v = scale * G.pow(2).sum(0)
                        slot[0] = v if slot[0] is None else slot[0] + v
                    if layer.bias is not None and not layer.homogeneous:
                        v = scale * br.sum(1).pow(2).sum(0)
                        slot[1] = v if slot[1] is None else slot[1] + v
        self._lambda = {n: (s[0], s[1]) for n, s in acc.items()}

    def eigenvalues(self) -> dict[str, tuple[Tensor | None, Tensor | None]]:
        """``layer name -> (Lambda_weight (out, in), Lambda_bias (out,))`` (``None`` where absent)."""
        return dict(self._lambda)

    def _apply_layer(self, layer, W, b):
        (_, QS), eA = self._factor_eigs(layer)
        lw, lb = self._lambda[layer.name]
        RW = None if W is None else QS @ (lw * (QS.T @ W @ eA[1])) @ eA[1].T
        Rb = None if b is None else ((b @ QS) * lb) @ QS.T
        return RW, Rb

    def _solve_layer(self, layer, W, b, damping, lam):
        if damping.mode == "heuristic":
            raise ValueError("heuristic (pi) damping is defined for K-FAC's factors; for EK-FAC use 'none', "
                             "'tikhonov', 'exact', 'grad_norm' or 'lm'")
        eS, eA = self._factor_eigs(layer)
        lw, lb = self._lambda[layer.name]
        what = f"EKFAC layer {layer.name!r}"
        RW = None if W is None else kron_solve(eS, eA, W, damping, lam, what, eigenvalues=lw)
        Rb = None if b is None else kron_solve(eS, None, b, damping, lam, what, eigenvalues=lb)
        return RW, Rb
