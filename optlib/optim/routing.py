r"""Which parameters Muon gets, and one optimizer object for a whole model.

Muon is meant for the hidden weight matrices only (Jordan et al. 2024, blog "Muon: An optimizer for hidden
layers in neural networks", and the KellerJordan/Muon README): "embeddings, classifier heads, and hidden
gains/biases should be optimized using AdamW", and "for a ConvNet, use Muon for all conv filters except the
first one". :func:`muon_param_groups` applies that rule to an ``nn.Module``:

- ``nn.Embedding`` / ``nn.EmbeddingBag`` weights, the output head (the last ``nn.Linear`` in module order
  that has a trainable parameter, or the modules named by ``head=``), every parameter with ``ndim < 2``
  (biases, norm gains, scalars) and, by default, the first convolution: AdamW;
- every other parameter with ``ndim >= 2`` (hidden linear layers, conv filters, expert stacks): Muon.

A parameter shared by two modules (tied embedding and head) is routed once, to AdamW if any rule says so.
Frozen parameters (``requires_grad=False``) are left out.

:class:`MuonWithAdamW` is a single ``torch.optim.Optimizer`` whose groups carry ``use_muon``: Muon groups get
the update of :class:`optlib.optim.Muon`, the others AdamW (Loshchilov & Hutter, "Decoupled Weight Decay
Regularization", ICLR 2019), in the form ``torch.optim.AdamW`` implements:

.. math::

    m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
    \theta_t = \theta_{t-1}(1 - \gamma\lambda) - \gamma\,\frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}.

Its AdamW defaults are those of Keller Jordan's ``MuonWithAuxAdam`` (lr 3e-4, betas (0.9, 0.95), eps 1e-10,
weight decay 0).
"""

from __future__ import annotations

import torch
from torch import nn

from .muon import KELLER_COEFFICIENTS, Muon, _check_real, check_muon_options, check_muon_params

Tensor = torch.Tensor

__all__ = ["MuonWithAdamW", "muon_param_groups"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_MUON_KEYS = ("momentum", "nesterov", "momentum_style", "adjust_lr", "orthogonalizer", "ns_steps", "distributed",
              "ns_coefficients", "ns_dtype")
_ADAMW_KEYS = ("betas",)


def muon_param_groups(
    model: nn.Module,
    *,
    muon_lr: float = 0.02,
    adamw_lr: float = 3e-4,
    muon_weight_decay: float = 0.0,
    adamw_weight_decay: float = 0.0,
    adamw_betas: tuple[float, float] = (0.9, 0.95),
    adamw_eps: float = 1e-10,
    head: str | list[str] | tuple[str, ...] | None = None,
    first_conv_to_adamw: bool = True,
) -> list[dict]:
    """Two param groups for ``model``: ``use_muon=True`` (hidden matrices) and ``use_muon=False`` (the rest).

    Parameters
    ----------
    head : str or list of str, optional
        Names of the output modules (as in ``model.named_modules()``) whose parameters go to AdamW. By default
        the last ``nn.Linear`` registered in the model that has a trainable parameter.
    first_conv_to_adamw : bool
        Send the first convolution in module order to AdamW (the README rule for ConvNets).

    Returns
    -------
    list of dict
        Groups with ``params``, ``param_names``, ``use_muon``, ``lr``, ``weight_decay`` (and ``betas``, ``eps``
        for AdamW); empty groups are left out. Usable by :class:`MuonWithAdamW`, or, dropping ``use_muon``,
        by ``Muon`` and ``torch.optim.AdamW`` separately.
    """
    modules = dict(model.named_modules())
    if head is None:
        linears = [name for name, m in modules.items()
                   if isinstance(m, nn.Linear) and any(p.requires_grad for p in m.parameters(recurse=False))]
        heads = set(linears[-1:])
    else:
        heads = {head} if isinstance(head, str) else set(head)
        missing = sorted(heads - set(modules))
        if missing:
            raise ValueError(f"head module(s) {missing} not found in the model; modules: {sorted(modules)[:20]}")
    first_conv = next((name for name, m in modules.items() if isinstance(m, _CONVS)), None)

    to_adamw: dict[int, bool] = {}
    names: dict[int, str] = {}
    params: dict[int, Tensor] = {}
    for mod_name, module in modules.items():
        special = (
            isinstance(module, (nn.Embedding, nn.EmbeddingBag))
            or mod_name in heads
            or (first_conv_to_adamw and mod_name == first_conv)
        )
        for p_name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            key = id(p)
            if key not in params:
                params[key] = p
                names[key] = f"{mod_name}.{p_name}" if mod_name else p_name
                to_adamw[key] = False
            to_adamw[key] = to_adamw[key] or special or p.ndim < 2

    muon = [k for k in params if not to_adamw[k]]
    adamw = [k for k in params if to_adamw[k]]
    groups = []
    if muon:
        groups.append(dict(params=[params[k] for k in muon], param_names=[names[k] for k in muon], use_muon=True,
                           lr=muon_lr, weight_decay=muon_weight_decay))
    if adamw:
        groups.append(dict(params=[params[k] for k in adamw], param_names=[names[k] for k in adamw], use_muon=False,
                           lr=adamw_lr, weight_decay=adamw_weight_decay, betas=tuple(adamw_betas), eps=adamw_eps))
    return groups


def adamw_update(p: Tensor, grad: Tensor, state: dict, *, lr: float, betas, eps: float, weight_decay: float) -> None:
    """One AdamW step on ``p`` in place (formula in the module docstring); ``state`` holds ``step``,
    ``exp_avg`` (:math:`m`) and ``exp_avg_sq`` (:math:`v`) and is created on first use."""
    beta1, beta2 = betas
    if "step" not in state:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    state["step"] += 1
    t = state["step"]
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m.lerp_(grad, 1.0 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    if weight_decay != 0:
        p.mul_(1.0 - lr * weight_decay)
    denom = (v.sqrt() / (1.0 - beta2**t) ** 0.5).add_(eps)
    p.addcdiv_(m, denom, value=-lr / (1.0 - beta1**t))


def _check_adamw_options(group: dict) -> None:
    _check_real("lr", group["lr"])
    _check_real("eps", group["eps"])
    _check_real("weight_decay", group["weight_decay"])
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    _check_real("betas[0]", betas[0], high=1.0)
    _check_real("betas[1]", betas[1], high=1.0)


class MuonWithAdamW(Muon):
    """Muon for the groups with ``use_muon=True``, AdamW for the others: one optimizer, one ``state_dict``.

    Parameters
    ----------
    param_groups_or_model : nn.Module or list of dict
        A model (routed with :func:`muon_param_groups`, passing ``lr``/``adamw_lr``, the weight decays,
        ``adamw_betas``, ``adamw_eps``, ``head`` and ``first_conv_to_adamw``) or param groups that each carry
        ``use_muon``. A Muon group may override any :class:`optlib.optim.Muon` option; an AdamW group
        ``lr``, ``betas``, ``eps``, ``weight_decay``. A Muon option in an AdamW group (or ``betas`` in a Muon
        group) raises ``ValueError``: it usually means a parameter was routed to the wrong group.
    lr, momentum, ..., skip_nonfinite
        Defaults for the Muon groups, as in :class:`optlib.optim.Muon`.
    adamw_lr, adamw_betas, adamw_eps, adamw_weight_decay
        Defaults for the AdamW groups.

    Notes
    -----
    ``skip_nonfinite`` applies to both kinds of group; without it a non-finite gradient raises ``ValueError``
    naming the parameter before anything is updated. Counters (``state["counters"]``) are Muon's plus
    ``adamw_updates``.

    Momentum and schedulers: ``defaults`` is ``{"lr", "momentum", "weight_decay", "eps"}`` of the Muon groups
    plus AdamW's ``"betas"``, and every group carries both ``momentum`` and ``betas``: a Muon group has
    ``betas = (momentum, adamw_betas[1])`` (its second entry is not used), an AdamW group has
    ``momentum = betas[0]``. They are one hyperparameter, the weight of the past in the running average of
    the gradients (Muon's ``momentum``, AdamW's beta1): a change to either one between two steps
    (by your code, such as a Muon momentum warm-up that writes ``group["momentum"]``, or by a scheduler;
    ``CyclicLR`` and ``OneCycleLR`` with ``cycle_momentum=True`` write ``betas[0]`` of every group because
    ``defaults`` has ``betas``) is used by the next :meth:`step`, which copies it to the other key. Changing
    both to different values between two steps raises ``ValueError``. The value each group last stepped
    with is kept in ``state["beta1_applied"]`` (``{group index: value}``, saved by ``state_dict``).

    ``param_groups_or_model`` may be a generator of param-group dicts; a generator of tensors (such as
    ``model.parameters()``) raises ``ValueError`` saying to pass the model or
    :func:`muon_param_groups`'s groups (the routing needs the module structure). Unknown keyword arguments
    raise ``TypeError`` naming them.
    """

    def __init__(
        self,
        param_groups_or_model,
        *,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        momentum_style: str = "ema",
        weight_decay: float = 0.0,
        adjust_lr: str = "keller",
        orthogonalizer: str = "newton-schulz",
        ns_steps: int = 5,
        ns_coefficients=KELLER_COEFFICIENTS,
        eps: float = 1e-7,
        ns_dtype: torch.dtype | None = torch.bfloat16,
        skip_nonfinite: bool = False,
        distributed: bool = False,
        adamw_lr: float = 3e-4,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-10,
        adamw_weight_decay: float = 0.0,
        head: str | list[str] | None = None,
        first_conv_to_adamw: bool = True,
    ) -> None:
        self.muon_defaults = dict(
            lr=lr, momentum=momentum, nesterov=nesterov, momentum_style=momentum_style, weight_decay=weight_decay,
            adjust_lr=adjust_lr, orthogonalizer=orthogonalizer, ns_steps=ns_steps, ns_coefficients=ns_coefficients,
            eps=eps, ns_dtype=ns_dtype, skip_nonfinite=skip_nonfinite, distributed=distributed,
        )
        self.adamw_defaults = dict(lr=adamw_lr, betas=tuple(adamw_betas), eps=adamw_eps,
                                   weight_decay=adamw_weight_decay, skip_nonfinite=skip_nonfinite)
        check_muon_options(self.muon_defaults)
        _check_adamw_options(self.adamw_defaults)
        if isinstance(param_groups_or_model, nn.Module):
            groups = muon_param_groups(
                param_groups_or_model, muon_lr=lr, adamw_lr=adamw_lr, muon_weight_decay=weight_decay,
                adamw_weight_decay=adamw_weight_decay, adamw_betas=adamw_betas, adamw_eps=adamw_eps, head=head,
                first_conv_to_adamw=first_conv_to_adamw,
            )
        else:
            groups = list(param_groups_or_model)
        # Each kind of group gets its own defaults in add_param_group; `defaults` holds the keys both kinds
        # share, so that schedulers which look there for momentum or betas (CyclicLR, OneCycleLR) accept us.
        defaults = dict(lr=lr, momentum=momentum, betas=tuple(adamw_betas), weight_decay=weight_decay, eps=eps)
        torch.optim.Optimizer.__init__(self, groups, defaults)

    def add_param_group(self, param_group: dict) -> None:
        if not isinstance(param_group, dict) or not isinstance(param_group.get("use_muon"), bool):
            raise ValueError(
                "MuonWithAdamW needs param groups that each carry use_muon=True or False "
                "(build them with optlib.optim.muon_param_groups(model), or pass the model)"
            )
        use_muon = param_group["use_muon"]
        wrong = [k for k in (_ADAMW_KEYS if use_muon else _MUON_KEYS) if k in param_group]
        if wrong:
            kind = "Muon" if use_muon else "AdamW"
            raise ValueError(f"option(s) {wrong} do not apply to a{'n' if kind == 'AdamW' else ''} {kind} group "
                             f"(use_muon={use_muon}); check the routing of its parameters")
        for k, v in (self.muon_defaults if use_muon else self.adamw_defaults).items():
            param_group.setdefault(k, v)
        # momentum and betas[0] are one hyperparameter in every group (class docstring).
        if use_muon:
            param_group["betas"] = (param_group["momentum"], self.adamw_defaults["betas"][1])
        elif isinstance(param_group["betas"], (tuple, list)) and len(param_group["betas"]) == 2:
            param_group["momentum"] = param_group["betas"][0]
        torch.optim.Optimizer.add_param_group(self, param_group)
        group, index = self.param_groups[-1], len(self.param_groups) - 1
        try:
            if use_muon:
                check_muon_options(group)
                check_muon_params(group, index)
            else:
                _check_adamw_options(group)
        except Exception:
            self.param_groups.pop()
            raise
        self.state["beta1_applied"][index] = group["momentum"]

    def _sync_beta1(self, group: dict, group_index: int) -> None:
        """Make ``momentum`` and ``betas[0]`` of ``group`` equal to the one that changed since the last step
        (class docstring); ``ValueError`` when both changed to different values."""
        applied = self.state["beta1_applied"]
        momentum, betas = group.get("momentum"), group.get("betas")
        if momentum is None:  # a group saved before both keys existed
            momentum = betas[0]
        if betas is None:
            betas = (momentum, self.adamw_defaults["betas"][1])
        last = applied.get(group_index)
        if momentum != betas[0]:
            moved_momentum = last is None or momentum != last
            moved_beta1 = last is None or betas[0] != last
            if moved_momentum and moved_beta1:
                kind = "Muon" if group["use_muon"] else "AdamW"
                raise ValueError(
                    f"param_groups[{group_index}] ({kind} group) has momentum={momentum!r} and "
                    f"betas[0]={betas[0]!r}, both changed since the last step; in MuonWithAdamW they are one "
                    "hyperparameter (Muon's momentum, AdamW's beta1): set only one of them"
                )
            if moved_beta1:
                momentum = betas[0]
            else:
                betas = (momentum, betas[1])
        _check_real("momentum" if group["use_muon"] else "betas[0]", momentum, high=1.0)
        group["momentum"], group["betas"] = momentum, tuple(betas)
        applied[group_index] = momentum

    def state_dict(self) -> dict:
        sd = super().state_dict()
        if "beta1_applied" in sd["state"]:
            sd["state"]["beta1_applied"] = dict(sd["state"]["beta1_applied"])
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        if "beta1_applied" in self.state:
            self.state["beta1_applied"] = dict(self.state["beta1_applied"])

    def _adamw_group_step(self, group: dict, group_index: int, all_finite: bool = False) -> None:
        counters = self._counters()
        for i, p in enumerate(group["params"]):
            if p.grad is None or (not all_finite and not self._finite_or_skip(group, group_index, i, p)):
                continue
            adamw_update(p, p.grad, self.state[p], lr=group["lr"], betas=group["betas"], eps=group["eps"],
                         weight_decay=group["weight_decay"])
            counters["adamw_updates"] = counters.get("adamw_updates", 0) + 1

    @torch.no_grad()
    def step(self, closure=None):
        """One step: Muon on the ``use_muon`` groups, AdamW on the others."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group_index, group in enumerate(self.param_groups):
            self._sync_beta1(group, group_index)
        finite = self._check_finite(range(len(self.param_groups)))
        for group_index, group in enumerate(self.param_groups):
            if group["use_muon"]:
                self._muon_group_step(group, group_index, finite[group_index])
            else:
                self._adamw_group_step(group, group_index, finite[group_index])
        self._counters()["steps"] += 1
        return loss
