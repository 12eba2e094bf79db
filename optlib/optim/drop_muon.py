r"""Drop-Muon: randomized progressive training with layer-wise LMO (Muon) steps.

Gruntkowska, Maziane, Qu & Richtárik, "Drop-Muon: Update Less, Converge Faster" (2025, arXiv:2510.02239).
Layers are numbered from the input side, 0-based here (the paper's layer :math:`i+1` is our ``i``). At every
step a cutoff ``s`` is drawn (see :class:`optlib.optim.progressive.CutoffSampler`) and only the layers
``i >= s`` are updated; for each updated layer, with gradient :math:`g_i`:

.. math::

    \text{momentum}\quad & M_i \leftarrow \text{(one of the two forms below)}, \qquad D_i = \text{direction} \\
    \text{LMO step}\quad & X_i \leftarrow X_i(1 - \gamma\lambda) - t_i\,\mathrm{orth}(D_i),
        \qquad \mathrm{orth}(U\Sigma V^\top) = U V^\top ,

i.e. :math:`X_i + \mathrm{LMO}_{\|Z\|_{2\to2} \le t_i}(D_i)`. The layers ``i < s`` are *frozen*: their weights,
momentum buffers and ``.grad`` are not read or written, and nothing is orthogonalized for them.

Momentum forms (pitfall P1 of spec 20; both are supported and named explicitly):

* ``new_weight=beta`` — the Drop-Muon paper's form :math:`M \leftarrow (1-\beta)M + \beta g` (``beta`` weights the
  *new* gradient; ``beta = 1`` is no momentum, the deterministic setting of the theory). Direction :math:`D = M`;
  Nesterov is not defined for it (``nesterov=True`` raises).
* ``new_weight=None`` (default) — Muon's forms through :func:`optlib.optim.muon.muon_direction`:
  ``momentum_style="ema"`` is Keller Jordan's :math:`M \leftarrow \beta M + (1-\beta)g` with ``momentum=beta``
  (Nesterov direction :math:`(1-\beta)g + \beta M` by default), ``"sum"`` is :math:`B \leftarrow \beta B + g`.
  The paper's ``new_weight=beta'`` equals ``momentum=1-beta'``, ``momentum_style="ema"``, ``nesterov=False``.

Radius rules :math:`t_i` (per group ``radius``; :math:`\|\cdot\|_*` is the nuclear norm of the matrix view of
:math:`D_i`, i.e. of the momentum, or of the gradient when ``new_weight=1``):

* ``"constant"``: :math:`t_i = \gamma\,s(m, n)` with the shape scaling of :func:`optlib.optim.muon.lr_scale`
  (``adjust_lr``); with ``momentum_style="ema"`` this is exactly :class:`optlib.optim.Muon`'s update.
* ``"smooth"``: :math:`t_i = \|D_i\|_*/L_i` (group key ``L``), the minimizer of the layer-wise smoothness upper
  bound :math:`-t\|D\|_* + L t^2/2` (Gluon, Riabinin et al. 2025, arXiv:2505.13416; derived in
  :mod:`optlib.theory.drop_muon`).
* ``"l0l1"``: :math:`t_i = g_i/(L^0_i + L^1_i g_i)` with :math:`g_i = \|D_i\|_*` (group keys ``L0``, ``L1``), the
  layer-wise :math:`(L^0, L^1)` rule (Zhang et al. 2020, arXiv:1905.11881, for the assumption; Gluon for the
  layer-wise step). With :math:`L^0 = 0` it is the constant radius :math:`1/L^1`.

A param group is a layer (group key ``layer``, an integer >= 0); several groups may share a layer. All of
a layer's matrices freeze together (pitfall P8). Biases and norm gains (1-D) cannot be orthogonalized and are
rejected here: give them to ``torch.optim.AdamW``, which skips parameters whose ``.grad`` is ``None`` — with
:func:`~optlib.optim.progressive.progressive_forward` and ``zero_grad(set_to_none=True)`` they then freeze
with their layer automatically. :func:`layer_param_groups` builds both lists from a list of blocks.

Cost accounting lives in ``optimizer.state["drop_muon"]`` (it goes through ``state_dict``):
``cutoff_history`` (one cutoff per step), ``layers_updated`` (number of layers ``>= s`` per step),
``matrices_updated``, ``backward_flops`` (per step, when ``costs`` is given) and ``frozen_with_grad`` (how many
frozen parameters had a gradient: non-zero means the backward pass was *not* truncated and no time was
saved). Muon's totals stay in ``state["counters"]``. Per parameter, ``state[p]`` holds ``momentum_buffer``,
``step`` (updates received) and ``radius`` (the last LMO radius used).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral

import numpy as np
import torch
from torch import nn
from torch.distributed.tensor import DTensor

from optlib.linalg.newton_schulz import KELLER_COEFFICIENTS, matrix_view

from .muon import Muon, _check_real, local_part, lr_scale, muon_directions
from .progressive import BlockCosts, CutoffSampler

Tensor = torch.Tensor

__all__ = ["RADIUS_RULES", "DropMuon", "layer_param_groups"]

RADIUS_RULES = ("constant", "smooth", "l0l1")


def layer_param_groups(blocks: Sequence[nn.Module], **group_options) -> tuple[list[dict], list[dict]]:
    """``(drop_muon_groups, other_groups)`` for a list of blocks, block ``j`` being layer ``j``.

    Parameters with ``ndim >= 2`` of block ``j`` form the DropMuon group ``{"params": [...], "layer": j,
    **group_options}``; its 1-D parameters form ``{"params": [...], "layer": j}`` in the second list (for
    AdamW). Blocks without matrices give no DropMuon group.
    """
    muon, other = [], []
    for j, blk in enumerate(blocks):
        mats = [p for p in blk.parameters() if p.requires_grad and p.ndim >= 2]
        vecs = [p for p in blk.parameters() if p.requires_grad and p.ndim < 2]
        if mats:
            muon.append({"params": mats, "layer": j, **group_options})
        if vecs:
            other.append({"params": vecs, "layer": j})
    return muon, other


class DropMuon(Muon):
    r"""Drop-Muon as a ``torch.optim.Optimizer`` (update rules in the module docstring).

    Parameters
    ----------
    params : iterable of param-group dicts
        Each group has ``layer`` (int >= 0) and matrices only (``ndim >= 2``); any option below may be
        overridden per group (``L``, ``L0``, ``L1`` usually are).
    lr : float
        :math:`\gamma`: the radius for ``radius="constant"`` (times the shape scaling) and the weight decay factor.
    momentum, nesterov, momentum_style
        Muon's momentum (``new_weight=None``). ``nesterov=None`` means True for Muon's forms and False for the
        paper's form.
    new_weight : float in (0, 1] or None
        The paper's momentum form :math:`M \leftarrow (1-\beta)M + \beta g`.
    radius : {"constant", "smooth", "l0l1"}
        Radius rule; ``"smooth"`` needs ``L`` > 0, ``"l0l1"`` needs ``L0``, ``L1`` >= 0 (not both zero).
    sampler : CutoffSampler, "uniform", probability vector, callable(progress) or None
        Distribution of the cutoff over ``0..num_layers-1``; anything but a sampler is wrapped in
        :class:`~optlib.optim.progressive.CutoffSampler` with ``seed``. ``None`` is the full-step mode: cutoff 0
        (every layer updated, as Muon) unless :meth:`step` is given one.
    num_layers : int or None
        ``b``; default: the largest group ``layer`` plus one.
    costs : BlockCosts, sequence of per-layer backward FLOPs, or None
        Used to log ``backward_flops`` per step.

    Notes
    -----
    Remaining options (``weight_decay``, ``adjust_lr``, ``orthogonalizer``, ``ns_steps``, ``ns_coefficients``,
    ``eps``, ``ns_dtype``, ``skip_nonfinite``, ``distributed``) are :class:`~optlib.optim.Muon`'s.

    The cutoff contract: the saving of Drop-Muon is a backward pass that stops at the cutoff, so the cutoff
    must be known before the forward pass. With a sampler, call :meth:`sample_cutoff` before the forward pass,
    run the forward pass with :func:`~optlib.optim.progressive.progressive_forward`, and then :meth:`step`
    uses the drawn cutoff::

        s = opt.sample_cutoff(progress)            # before the forward pass
        loss = loss_fn(progressive_forward(blocks, x, s), y)
        opt.zero_grad(set_to_none=True); loss.backward()
        opt.step()                                 # uses the drawn s

    Or choose the cutoff yourself and pass it: ``opt.step(cutoff=s)`` (it must equal a pending draw, if any).
    A :meth:`step` with a sampler but without a pending draw or ``cutoff=`` raises ``RuntimeError`` (drawing
    the cutoff then, after a full backward pass, would cost the full step and update fewer layers).
    Without a sampler (``sampler=None``) :meth:`step` is a full step (cutoff 0) unless given ``cutoff=``.
    A pending draw is saved by ``state_dict``.

    A non-finite gradient of an updated layer raises ``ValueError`` naming the parameter before anything is
    updated (unless ``skip_nonfinite=True``); frozen layers' gradients are not read. ``params`` may be a
    generator of group dicts; a generator of tensors (such as ``model.parameters()``) raises ``ValueError``
    pointing to :func:`layer_param_groups`, since every group needs its ``layer``. Unknown keyword arguments
    raise ``TypeError`` naming them.
    """

    def __init__(
        self,
        params,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool | None = None,
        momentum_style: str = "ema",
        new_weight: float | None = None,
        radius: str = "constant",
        L: float | None = None,
        L0: float | None = None,
        L1: float | None = None,
        weight_decay: float = 0.0,
        adjust_lr: str = "keller",
        orthogonalizer: str = "newton-schulz",
        ns_steps: int = 5,
        ns_coefficients=KELLER_COEFFICIENTS,
        eps: float = 1e-7,
        ns_dtype: torch.dtype | None = torch.bfloat16,
        skip_nonfinite: bool = False,
        distributed: bool = False,
        sampler=None,
        num_layers: int | None = None,
        seed: int | None = None,
        costs: BlockCosts | Sequence[float] | None = None,
    ) -> None:
        self._drop_defaults = dict(new_weight=new_weight, radius=radius, L=L, L0=L0, L1=L1, nesterov=nesterov)
        params = list(params)
        if not params or not all(isinstance(g, dict) for g in params):
            raise ValueError(
                "DropMuon needs param-group dicts, each with a 'layer' index (a group is a layer); "
                "see optlib.optim.drop_muon.layer_param_groups(blocks)"
            )
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            nesterov=True if nesterov is None else nesterov,
            momentum_style=momentum_style,
            weight_decay=weight_decay,
            adjust_lr=adjust_lr,
            orthogonalizer=orthogonalizer,
            ns_steps=ns_steps,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_dtype=ns_dtype,
            skip_nonfinite=skip_nonfinite,
            distributed=distributed,
        )
        layers = [g["layer"] for g in self.param_groups]
        b = max(layers) + 1 if num_layers is None else num_layers
        if isinstance(b, bool) or not isinstance(b, Integral) or b < 1 or max(layers) >= b:
            raise ValueError(f"num_layers must be an integer > every group's layer ({max(layers)}), got {num_layers!r}")
        self.num_layers = int(b)
        if sampler is None or isinstance(sampler, CutoffSampler):
            self.sampler = sampler
        else:
            self.sampler = CutoffSampler(self.num_layers, sampler, seed=seed)
        if self.sampler is not None and self.sampler.num_layers != self.num_layers:
            raise ValueError(f"the sampler has {self.sampler.num_layers} layers, the optimizer {self.num_layers}")
        if costs is not None and not isinstance(costs, BlockCosts):
            costs = tuple(float(c) for c in costs)
            if len(costs) != self.num_layers or any(not (math.isfinite(c) and c >= 0) for c in costs):
                raise ValueError(f"costs must hold {self.num_layers} non-negative backward FLOP counts, got {costs}")
        self.costs = costs
        self._pending: int | None = None

    # -- groups -----------------------------------------------------------------------------------------------

    def add_param_group(self, param_group: dict) -> None:
        group = dict(param_group)
        if "layer" not in group:
            raise ValueError("every DropMuon param group needs a 'layer' index (a group is a layer)")
        layer = group["layer"]
        if isinstance(layer, bool) or not isinstance(layer, Integral) or layer < 0:
            raise ValueError(f"a group's 'layer' must be an integer >= 0, got {layer!r}")
        group["layer"] = int(layer)
        for key, value in self._drop_defaults.items():
            group.setdefault(key, value)
        nw = group["new_weight"]
        if nw is not None:
            _check_real("new_weight", nw)
            if not 0 < nw <= 1:
                raise ValueError(
                    f"new_weight (the paper's beta, weight on the new gradient) must be in (0, 1], got {nw!r}"
                )
            if group["nesterov"]:
                raise ValueError(
                    "nesterov is not defined for the paper's momentum form (new_weight); pass nesterov=False"
                )
            group["nesterov"] = False
        elif group["nesterov"] is None:
            group["nesterov"] = True
        rule = group["radius"]
        if rule not in RADIUS_RULES:
            raise ValueError(f"unknown radius rule {rule!r}; valid values: {', '.join(map(repr, RADIUS_RULES))}")
        if rule == "smooth":
            if group["L"] is None:
                raise ValueError(f"radius='smooth' needs the layer's smoothness constant L (layer {group['layer']})")
            _check_real("L", group["L"])
            if group["L"] <= 0:
                raise ValueError(f"L must be positive, got {group['L']!r}")
        if rule == "l0l1":
            if group["L0"] is None or group["L1"] is None:
                raise ValueError(f"radius='l0l1' needs L0 and L1 (layer {group['layer']})")
            _check_real("L0", group["L0"])
            _check_real("L1", group["L1"])
            if group["L0"] == 0 and group["L1"] == 0:
                raise ValueError("L0 and L1 cannot both be zero")
        params = group["params"]
        if not isinstance(params, (Tensor, set)):  # a set is refused by torch's own check
            params = group["params"] = list(params)
        if rule != "constant" and any(isinstance(p, DTensor) for p in ([params] if isinstance(params, Tensor)
                                                                         else params)):
            raise ValueError(
                f"radius={rule!r} needs the nuclear norm of each whole matrix, which FSDP2 shards across ranks "
                f"(layer {group['layer']}); use radius='constant' with sharded parameters"
            )
        super().add_param_group(group)

    # -- cutoff -----------------------------------------------------------------------------------------------

    def _log(self) -> dict:
        if "drop_muon" not in self.state:
            self.state["drop_muon"] = dict(
                cutoff_history=[], layers_updated=[], matrices_updated=[], backward_flops=[], frozen_with_grad=0
            )
        return self.state["drop_muon"]

    def sample_cutoff(self, progress: float = 0.0) -> int:
        """Draw the next step's cutoff (call it before the forward pass); :meth:`step` then uses it."""
        if self.sampler is None:
            raise RuntimeError("this DropMuon has no sampler; pass cutoff= to step() or give sampler=")
        self._pending = self.sampler.sample(progress)
        return self._pending

    def inclusion_probabilities(self, progress: float = 0.0) -> np.ndarray:
        """``q_i``: the probability that layer ``i`` is updated at a step."""
        if self.sampler is None:
            return np.ones(self.num_layers)
        return self.sampler.inclusion_probabilities(progress)

    def is_active(self, group: dict, cutoff: int) -> bool:
        """Whether ``group`` is updated at a step with this cutoff (layer >= cutoff)."""
        return group["layer"] >= cutoff

    # -- radius -----------------------------------------------------------------------------------------------

    def radius(self, group: dict, p: Tensor, D: Tensor) -> float | Tensor:
        """The LMO radius ``t`` for parameter ``p`` with direction ``D`` (a tensor of radii for expert stacks)."""
        rule = group["radius"]
        if rule == "constant":
            return group["lr"] * lr_scale(p.shape, group["adjust_lr"])
        g = torch.linalg.matrix_norm(matrix_view(D), ord="nuc")
        if rule == "smooth":
            t = g / group["L"]
        else:
            denom = group["L0"] + group["L1"] * g
            t = torch.where(denom > 0, g / torch.where(denom > 0, denom, torch.ones_like(denom)), torch.zeros_like(g))
        return float(t) if t.ndim == 0 else t

    # -- the step ---------------------------------------------------------------------------------------------

    def _drop_group_step(self, group: dict, group_index: int, all_finite: bool | None = None) -> int:
        params, states = self._collect(group, group_index, all_finite)
        if not params:
            return 0
        lr, wd = group["lr"], group["weight_decay"]
        # FSDP2's DTensor parameters: the elementwise parts act on this rank's shards (local_part)
        grads = [local_part(p.grad) for p in params]
        if group["new_weight"] is not None:
            beta = group["new_weight"]
            D = [local_part(s["momentum_buffer"]) for s in states]
            torch._foreach_mul_(D, 1.0 - beta)
            torch._foreach_add_(D, grads, alpha=beta)
        else:
            D = muon_directions(grads, [local_part(s["momentum_buffer"]) for s in states],
                                momentum=group["momentum"], nesterov=group["nesterov"],
                                style=group["momentum_style"])
        radii = [self.radius(group, p, d) for p, d in zip(params, D)]
        Q = self._orthogonalize(group, D, cast_back=True, params=params)
        weights = [local_part(p) for p in params]
        if wd != 0:
            torch._foreach_mul_(weights, 1.0 - lr * wd)
        for p, w, state, o, t in zip(params, weights, states, Q, radii):
            if isinstance(t, Tensor):
                w.sub_((matrix_view(o) * t[..., None, None].to(o.dtype)).reshape(w.shape))
                state["radius"] = t.tolist()
            else:
                w.add_(o, alpha=-t)
                state["radius"] = t
        return sum(p.shape[0] if p.ndim == 3 else 1 for p in params)

    def _backward_flops(self, cutoff: int) -> float | None:
        if self.costs is None:
            return None
        if isinstance(self.costs, BlockCosts):
            return self.costs.backward(cutoff)
        return float(sum(self.costs[cutoff:]))

    @torch.no_grad()
    def step(self, closure=None, cutoff: int | None = None):
        """One Drop-Muon step: update the groups with ``layer >= cutoff``; returns ``closure()``'s loss if given.

        The cutoff is, in this order: ``cutoff=`` if given; the one drawn by :meth:`sample_cutoff` since the
        last step; 0 (a full step) when the optimizer has no sampler. With a sampler and neither, this raises
        ``RuntimeError``: a cutoff drawn now, after the backward pass, would save nothing (class docstring).
        A ``cutoff=`` that differs from a pending :meth:`sample_cutoff` draw raises ``ValueError``.
        """
        if cutoff is None:
            if self._pending is not None:
                cutoff = self._pending
            elif self.sampler is None:
                cutoff = 0
            else:
                raise RuntimeError(
                    "DropMuon.step() has no cutoff for this step: call s = opt.sample_cutoff(progress) before the "
                    "forward pass and run it as progressive_forward(blocks, x, s), so that the backward pass stops "
                    "at layer s; or pass step(cutoff=s) with the cutoff your forward pass used"
                )
        elif self._pending is not None and cutoff != self._pending:
            raise ValueError(
                f"step(cutoff={cutoff!r}) but sample_cutoff() drew {self._pending} for this step; pass the drawn "
                "cutoff (or none) to step()"
            )
        integer = not isinstance(cutoff, bool) and isinstance(cutoff, (Integral, np.integer))
        if not integer or not 0 <= cutoff < self.num_layers:
            raise ValueError(f"cutoff must be an integer in [0, {self.num_layers - 1}], got {cutoff!r}")
        cutoff = int(cutoff)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        active = [i for i, group in enumerate(self.param_groups) if self.is_active(group, cutoff)]
        finite = self._check_finite(active)  # raises before anything is updated
        self._pending = None
        log = self._log()
        matrices = 0
        for group_index, group in enumerate(self.param_groups):
            if group_index in finite:
                matrices += self._drop_group_step(group, group_index, finite[group_index])
            else:
                log["frozen_with_grad"] += sum(p.grad is not None for p in group["params"])
        self._counters()["steps"] += 1
        log["cutoff_history"].append(cutoff)
        log["layers_updated"].append(self.num_layers - cutoff)
        log["matrices_updated"].append(matrices)
        flops = self._backward_flops(cutoff)
        if flops is not None:
            log["backward_flops"].append(flops)
        return loss

    # -- state_dict -------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        sd = super().state_dict()
        if "drop_muon" in sd["state"]:
            sd["state"]["drop_muon"] = {k: (list(v) if isinstance(v, list) else v)
                                        for k, v in sd["state"]["drop_muon"].items()}
        if self.sampler is not None:
            sd["sampler"] = self.sampler.state_dict()
        sd["pending_cutoff"] = self._pending
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        sampler_state = state_dict.pop("sampler", None)
        pending = state_dict.pop("pending_cutoff", None)
        super().load_state_dict(state_dict)
        if "drop_muon" in self.state:
            self.state["drop_muon"] = {k: (list(v) if isinstance(v, list) else v)
                                       for k, v in self.state["drop_muon"].items()}
        if sampler_state is not None and self.sampler is not None:
            self.sampler.load_state_dict(sampler_state)
        self._pending = pending
