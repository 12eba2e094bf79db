r"""Randomized progressive training: cutoff samplers, a truncated forward pass and its cost accounting.

Drop-Muon (Gruntkowska, Maziane, Qu & Richtárik 2025, arXiv:2510.02239) draws at every step a cutoff layer
and updates only the layers from the cutoff to the output. The paper numbers layers :math:`1..b` (layer 1 on
the input side) and draws :math:`s \in \{1..b\}`; here layers are **0-based**: ``s`` in ``{0, ..., b-1}``, so
code cutoff ``s`` is the paper's :math:`s + 1`, and ``p[s]`` is the paper's :math:`p_{s+1}`. Cutoff ``0``
updates every layer (a full Muon step); cutoff ``b - 1`` updates the last layer only.

Layer ``i`` is updated when ``s <= i``, so its inclusion probability is
:math:`q_i = \sum_{s \le i} p_s` (non-decreasing in ``i``, and :math:`q_{b-1} = 1`); uniform ``p`` gives
:math:`q_i = (i+1)/b`.

The saving is real only if the backward pass stops at the cutoff: :func:`progressive_forward` runs the
blocks below ``s`` under :func:`torch.no_grad`, so autograd records nothing there, their parameters keep
``p.grad is None`` (after ``zero_grad(set_to_none=True)``), and the backward pass never reaches them.
Merely skipping the update of frozen layers after a full backward pass saves nothing.

Schedules that move the cutoff with training progress (a number in ``[0, 1]``):

* :func:`epoch_shift` — weights :math:`w_i = \exp(\alpha[(1-\text{progress})(b-1-i) + \text{progress}\cdot i])`,
  :math:`\alpha = 0.5`, normalized. It is taken from the third-party (not the authors') DropMuon class in
  the GitHub repository junaidaliop/zij (``drop_strategy="epoch_shift"``). Early in training the cutoff
  is mostly shallow (most steps update most layers); late in training it is mostly deep. Whether the paper
  uses this schedule is unknown.
* :func:`linear_shift` — ours: the straight-line interpolation ``(1 - progress) * p_start + progress *
  p_end`` between two probability vectors (by default from "cutoff always 0" to uniform).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "BlockCosts",
    "CutoffSampler",
    "block_costs",
    "epoch_shift",
    "inclusion_probabilities",
    "linear_shift",
    "progressive_forward",
    "validate_probabilities",
]

ProbabilitySpec = str | Sequence[float] | np.ndarray | Callable[[float], Sequence[float]]


def validate_probabilities(p, num_layers: int, *, atol: float = 1e-9) -> np.ndarray:
    """``p`` as a float64 vector of length ``num_layers``, checked: finite, non-negative, sums to 1.

    Raises ``ValueError`` naming what is wrong. The vector is renormalized to sum to 1 exactly
    after the check (to absorb rounding within ``atol``).
    """
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] != num_layers:
        raise ValueError(f"the cutoff distribution must have one entry per layer ({num_layers}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"the cutoff distribution has non-finite entries: {arr.tolist()}")
    if np.any(arr < 0):
        raise ValueError(f"the cutoff distribution has negative entries: {arr.tolist()}")
    total = float(arr.sum())
    if abs(total - 1.0) > atol:
        raise ValueError(f"the cutoff distribution must sum to 1, got sum {total!r}")
    return arr / total


def inclusion_probabilities(p) -> np.ndarray:
    """:math:`q_i = \\sum_{s \\le i} p_s`: the probability that layer ``i`` is updated at a step."""
    q = np.cumsum(np.asarray(p, dtype=np.float64))
    q[-1] = 1.0  # exact: the last layer is always updated
    return np.minimum(q, 1.0)


def epoch_shift(num_layers: int, alpha: float = 0.5) -> Callable[[float], np.ndarray]:
    """The shallow-to-deep cutoff schedule of junaidaliop/zij (third party; see the module docstring).

    Returns ``progress -> p`` with :math:`p_i \\propto \\exp(\\alpha[(1-\\text{progress})(b-1-i) +
    \\text{progress}\\cdot i])`.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    idx = np.arange(num_layers, dtype=np.float64)

    def schedule(progress: float) -> np.ndarray:
        pr = float(np.clip(progress, 0.0, 1.0))
        logits = alpha * ((1.0 - pr) * (num_layers - 1 - idx) + pr * idx)
        w = np.exp(logits - logits.max())
        return w / w.sum()

    return schedule


def linear_shift(num_layers: int, start=None, end="uniform") -> Callable[[float], np.ndarray]:
    """Ours: ``progress -> (1 - progress) * start + progress * end`` (both probability vectors).

    ``start`` defaults to "cutoff always 0" (full updates); ``"uniform"`` is accepted for either end.
    """

    def vec(v, default):
        if v is None:
            v = default
        if isinstance(v, str):
            if v != "uniform":
                raise ValueError(f"unknown distribution name {v!r}; use 'uniform' or a vector")
            return np.full(num_layers, 1.0 / num_layers)
        return validate_probabilities(v, num_layers)

    first = np.zeros(num_layers)
    first[0] = 1.0
    p0, p1 = vec(start, first), vec(end, "uniform")

    def schedule(progress: float) -> np.ndarray:
        pr = float(np.clip(progress, 0.0, 1.0))
        return (1.0 - pr) * p0 + pr * p1

    return schedule


class CutoffSampler:
    """Draws the cutoff ``s`` in ``{0, ..., num_layers - 1}`` (0-based; the paper's ``s + 1``).

    Parameters
    ----------
    num_layers : int
        ``b``, the number of layers.
    p : "uniform" | probability vector | callable
        The distribution of ``s``: ``"uniform"``, a fixed vector of length ``b``, or a callable
        ``progress -> vector`` (validated at every call) such as :func:`epoch_shift`.
    seed : int or None
        Seed of the sampler's own ``numpy`` generator (independent of torch's global RNG).
    """

    def __init__(self, num_layers: int, p: ProbabilitySpec = "uniform", seed: int | None = None) -> None:
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        self.num_layers = num_layers
        if isinstance(p, str):
            if p != "uniform":
                raise ValueError(f"unknown cutoff distribution {p!r}; use 'uniform', a vector or a callable")
            self._fixed: np.ndarray | None = np.full(num_layers, 1.0 / num_layers)
            self._fn = None
        elif callable(p):
            self._fixed = None
            self._fn = p
            validate_probabilities(p(0.0), num_layers)  # fail early on a wrong length
        else:
            self._fixed = validate_probabilities(p, num_layers)
            self._fn = None
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def probabilities(self, progress: float = 0.0) -> np.ndarray:
        """The distribution ``p`` at ``progress`` (a copy)."""
        if self._fixed is not None:
            return self._fixed.copy()
        return validate_probabilities(self._fn(progress), self.num_layers)

    def inclusion_probabilities(self, progress: float = 0.0) -> np.ndarray:
        """``q_i = P(layer i is updated)`` at ``progress``."""
        return inclusion_probabilities(self.probabilities(progress))

    def sample(self, progress: float = 0.0) -> int:
        """One cutoff draw."""
        p = self.probabilities(progress)
        return int(np.searchsorted(np.cumsum(p), self.rng.random(), side="right").clip(0, self.num_layers - 1))

    def sample_many(self, n: int, progress: float = 0.0) -> np.ndarray:
        """``n`` independent draws at a fixed ``progress`` (same generator as :meth:`sample`)."""
        p = self.probabilities(progress)
        u = self.rng.random(n)
        return np.searchsorted(np.cumsum(p), u, side="right").clip(0, self.num_layers - 1)

    def state_dict(self) -> dict:
        return {"num_layers": self.num_layers, "seed": self.seed, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        if state.get("num_layers") != self.num_layers:
            raise ValueError(
                f"sampler state is for {state.get('num_layers')} layers, this sampler has {self.num_layers}"
            )
        self.rng.bit_generator.state = state["rng"]

    def __repr__(self) -> str:
        kind = "callable" if self._fn is not None else np.array2string(self._fixed, precision=3)
        return f"CutoffSampler(num_layers={self.num_layers}, p={kind}, seed={self.seed})"


def progressive_forward(blocks: Sequence[nn.Module], x: torch.Tensor, s: int) -> torch.Tensor:
    """Run ``blocks[:s]`` without autograd and ``blocks[s:]`` with it; return the output.

    The activation entering block ``s`` carries no graph, so ``loss.backward()`` stops at block ``s``:
    the parameters of blocks ``< s`` get no gradient (``p.grad`` stays ``None`` after
    ``zero_grad(set_to_none=True)``) and no backward work is done for them. ``s = 0`` is an ordinary
    forward pass. ``s`` must lie in ``0..len(blocks)-1`` (at least the last block trains).
    """
    blocks = list(blocks)
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= int(s) < len(blocks):
        raise ValueError(f"cutoff s must be an integer in [0, {len(blocks) - 1}], got {s!r}")
    s = int(s)
    if s > 0:
        with torch.no_grad():
            for blk in blocks[:s]:
                x = blk(x)
        x = x.detach()
    for blk in blocks[s:]:
        x = blk(x)
    return x


@dataclass(frozen=True)
class BlockCosts:
    """Per-block FLOP estimates for one batch (see :func:`block_costs`).

    ``forward[j]``: forward FLOPs of block ``j``; ``weight_grad[j]`` and ``input_grad[j]``: the two halves
    of its backward pass. A step with cutoff ``s`` backpropagates blocks ``s..b-1``; block ``s`` needs no
    input gradient (nothing below it trains), so :meth:`backward` is
    ``sum_{j>=s} weight_grad[j] + sum_{j>s} input_grad[j]``.
    """

    forward: tuple[float, ...]
    weight_grad: tuple[float, ...]
    input_grad: tuple[float, ...]

    @property
    def num_blocks(self) -> int:
        return len(self.forward)

    def backward(self, s: int) -> float:
        """Backward FLOPs of a step with cutoff ``s``."""
        if not 0 <= s < self.num_blocks:
            raise ValueError(f"cutoff must be in [0, {self.num_blocks - 1}], got {s}")
        return float(sum(self.weight_grad[s:]) + sum(self.input_grad[s + 1 :]))

    def step(self, s: int) -> float:
        """Forward plus backward FLOPs of a step with cutoff ``s`` (the forward pass always runs in full)."""
        return float(sum(self.forward)) + self.backward(s)

    @staticmethod
    def layers_backpropagated(s: int, num_blocks: int) -> int:
        return num_blocks - s

    def expected_step(self, p) -> float:
        """``sum_s p_s * step(s)`` for a cutoff distribution ``p``."""
        p = validate_probabilities(p, self.num_blocks)
        return float(sum(ps * self.step(s) for s, ps in enumerate(p)))


def _module_flops(mod: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> float:
    """Multiply-add FLOPs (2 per MAC) of one Linear or Conv{1,2,3}d call; 0 for anything else."""
    if isinstance(mod, nn.Linear):
        rows = inp.numel() // inp.shape[-1]
        return 2.0 * rows * mod.in_features * mod.out_features
    if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        kernel = math.prod(mod.kernel_size)
        per_out = (mod.in_channels // mod.groups) * kernel
        return 2.0 * out.numel() * per_out
    return 0.0


def block_costs(blocks: Sequence[nn.Module], example_input: torch.Tensor) -> BlockCosts:
    """Estimate per-block FLOPs from the shapes of one forward pass on ``example_input``.

    Only ``nn.Linear`` and ``nn.ConvNd`` layers are counted (2 FLOPs per multiply-add); activations,
    norms and pooling are ignored. For each counted layer the weight gradient and the input gradient
    each cost about one forward pass, which is the usual 1:2 forward:backward ratio.
    """
    fwd = [0.0] * len(blocks)
    current = [0]
    handles = []

    def hook(mod, args, out):
        fwd[current[0]] += _module_flops(mod, args[0], out)

    for blk in blocks:
        for mod in blk.modules():
            if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            x = example_input
            for j, blk in enumerate(blocks):
                current[0] = j
                x = blk(x)
    finally:
        for h in handles:
            h.remove()
    return BlockCosts(forward=tuple(fwd), weight_grad=tuple(fwd), input_grad=tuple(fwd))
