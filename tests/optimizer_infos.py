"""The table of optimizers that ``tests/test_optimizer_registry.py`` runs its generic tests on.

Modelled on torch.optim's ``OptimizerInfo`` (``torch/testing/_internal/common_optimizers.py``) and optax's
``_common_test.py``: one row per optimizer says how to build it on a small model it can train, with several
option sets; the generic tests (``state_dict`` round trip, every LR scheduler, parameters without a gradient,
unknown options, non-finite gradients, generators as ``params``) take every row.

Adding an optimizer is one more ``OptimizerInfo`` in ``OPTIMIZERS``:

- ``cls`` and ``make_model(seed)``: a small model (input ``(batch, 6)``, 3 classes, cross-entropy) that the
  optimizer can train as a whole;
- ``params(model)``: the constructor's first argument (parameters, group dicts, or the model itself);
- ``option_sets``: keyword arguments to build it with, one dict per variant; the first one is used where a
  single variant is enough (the LR schedulers);
- ``forward(model, opt, x)``: the forward pass of one step (where the optimizer needs something before it,
  as Drop-Muon's cutoff);
- ``victims(model)``: parameters the optimizer updates at every step (at least one per kind of group): the
  tests take away their gradient, or make it NaN;
- ``generator``: what ``cls(model.parameters(), ...)`` does: ``None`` if it is accepted (and equal to the
  list), else ``(exception type, regex of the message)``; ``listed(model)``: a list the constructor takes
  whose generator must be accepted and equal to the list (``None`` if there is none).

Unknown keyword arguments must raise ``TypeError`` naming them; a non-finite gradient must raise
``ValueError`` naming the parameter as ``param_groups[i]['params'][j]`` before anything is updated (the
optimizers document both).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from optlib.optim import KFAC, DropMuon, Muon, MuonWithAdamW, layer_param_groups, muon_param_groups
from optlib.optim.progressive import progressive_forward

IN_FEATURES, CLASSES = 6, 3


def batch(k: int, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``k`` of a fixed stream: inputs ``(n, 6)`` and class labels in ``0..2``."""
    gen = torch.Generator().manual_seed(1000 + k)
    return torch.randn(n, IN_FEATURES, generator=gen), torch.randint(0, CLASSES, (n,), generator=gen)


def mlp(seed: int, bias: bool = True) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(IN_FEATURES, 8, bias=bias), nn.Tanh(), nn.Linear(8, 8, bias=bias), nn.Tanh(),
                         nn.Linear(8, CLASSES, bias=bias))


def blocks(seed: int) -> nn.ModuleList:
    """Three blocks (layers 0, 1, 2 of Drop-Muon), matrices only."""
    torch.manual_seed(seed)
    return nn.ModuleList([nn.Sequential(nn.Linear(IN_FEATURES, 8, bias=False), nn.Tanh()),
                          nn.Sequential(nn.Linear(8, 8, bias=False), nn.Tanh()),
                          nn.Linear(8, CLASSES, bias=False)])


def plain_forward(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def drop_muon_forward(model: nn.ModuleList, opt: DropMuon, x: torch.Tensor) -> torch.Tensor:
    """Drop-Muon's contract: the cutoff is drawn before the forward pass, which stops autograd below it."""
    s = opt.sample_cutoff() if opt.sampler is not None else 0
    return progressive_forward(model, x, s)


@dataclass(frozen=True)
class OptimizerInfo:
    """One row of the table (module docstring)."""

    cls: type[torch.optim.Optimizer]
    make_model: Callable[[int], nn.Module]
    params: Callable[[nn.Module], Any]
    option_sets: tuple[dict, ...]
    victims: Callable[[nn.Module], list[torch.Tensor]]
    forward: Callable[[nn.Module, torch.optim.Optimizer, torch.Tensor], torch.Tensor] = plain_forward
    generator: tuple[type[Exception], str] | None = None
    listed: Callable[[nn.Module], list] | None = None
    notes: str = ""

    @property
    def name(self) -> str:
        return self.cls.__name__

    def build(self, model: nn.Module, options: dict) -> torch.optim.Optimizer:
        return self.cls(self.params(model), **options)


OPTIMIZERS: tuple[OptimizerInfo, ...] = (
    OptimizerInfo(
        cls=Muon,
        make_model=lambda seed: mlp(seed, bias=False),
        params=lambda model: list(model.parameters()),
        option_sets=(
            {},
            {"nesterov": False},
            {"weight_decay": 0.1, "lr": 0.05},
            {"adjust_lr": "moonshot"},
            {"momentum_style": "sum", "adjust_lr": "none"},
            {"orthogonalizer": "svd", "ns_dtype": None},
        ),
        victims=lambda model: [model[2].weight],
        listed=lambda model: list(model.parameters()),
        notes="matrices only: the model has no biases",
    ),
    OptimizerInfo(
        cls=MuonWithAdamW,
        make_model=mlp,
        params=lambda model: model,
        option_sets=(
            {},
            {"nesterov": False, "adamw_betas": (0.8, 0.99)},
            {"weight_decay": 0.1, "adamw_weight_decay": 0.01, "adamw_lr": 1e-3},
            {"adjust_lr": "moonshot", "momentum_style": "sum"},
        ),
        victims=lambda model: [model[2].weight, model[2].bias],  # a Muon and an AdamW parameter
        generator=(ValueError, r"use_muon.*muon_param_groups\(model\), or pass the model"),
        listed=muon_param_groups,
        notes="routes the model itself; a generator of tensors cannot be routed",
    ),
    OptimizerInfo(
        cls=DropMuon,
        make_model=blocks,
        params=lambda model: layer_param_groups(model)[0],
        option_sets=(
            {"sampler": "uniform", "seed": 0},
            {"sampler": [0.5, 0.3, 0.2], "seed": 1, "radius": "smooth", "L": 50.0, "new_weight": 0.5},
            {"sampler": "uniform", "seed": 2, "radius": "l0l1", "L0": 1.0, "L1": 2.0},
            {"sampler": None},
            {"sampler": "uniform", "seed": 3, "weight_decay": 0.1, "momentum_style": "sum", "nesterov": False},
        ),
        victims=lambda model: [model[2].weight],  # the last layer is updated at every cutoff
        forward=drop_muon_forward,
        generator=(ValueError, r"param-group dicts, each with a 'layer'.*layer_param_groups\(blocks\)"),
        listed=lambda model: layer_param_groups(model)[0],
        notes="a group is a layer; the cutoff is drawn before the forward pass",
    ),
    OptimizerInfo(
        cls=KFAC,
        make_model=mlp,
        params=lambda model: model,
        option_sets=(
            {},
            {"momentum": 0.9, "weight_decay": 1e-3},
            {"fisher_type": "type2", "damping_mode": "exact", "damping": 0.1, "kl_clip": None, "lr": 0.05},
            {"factor_update_freq": 2, "inv_update_freq": 3, "momentum": 0.5, "seed": 3},
            {"fisher_type": "empirical"},
        ),
        victims=lambda model: [model[2].weight, model[2].bias],
        generator=(TypeError, r"needs the model itself \(an nn.Module\).*not model.parameters\(\)"),
        notes="hooks the model's Linear layers; the training loss is cross-entropy, its default",
    ),
)


def cases(first_only: bool = False) -> list:
    """``pytest.param(info, options)`` for every row and option set (the first option set only, if asked)."""
    import pytest

    out = []
    for info in OPTIMIZERS:
        for i, options in enumerate(info.option_sets[:1] if first_only else info.option_sets):
            label = ",".join(f"{k}={v}" for k, v in options.items()) or "defaults"
            out.append(pytest.param(info, options, id=f"{info.name}[{i}:{label}]"))
    return out
