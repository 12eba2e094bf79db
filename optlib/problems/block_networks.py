r"""Small networks split into blocks, for the progressive-training (Drop-Muon) checks on real ``nn.Module`` s.

A *block network* is a list of blocks :math:`B_0, \dots, B_{b-1}` (``nn.Module`` s, block 0 on the input side), a
fixed batch ``(x, y)`` and a loss; the model is :math:`B_{b-1}\circ\cdots\circ B_0`. Every trainable parameter is a
matrix or a convolution filter (the layers have no bias), so every block is one Muon/Drop-Muon layer.

Multiply-add counts (2 FLOPs per multiply-add, the convention of :mod:`torch.utils.flop_counter`), derived here from
the shapes alone, for a batch of ``N`` inputs:

* ``nn.Linear(n_in, n_out)``: forward :math:`F = 2 N n_{in} n_{out}`; its backward computes the weight gradient
  :math:`g^\top a` (:math:`F` FLOPs) and, when its input needs a gradient, the input gradient :math:`g W`
  (another :math:`F`).
* ``nn.Conv2d(c_in, c_out, k)``: forward :math:`F = 2\,|\text{out}|\,c_{in} k^2` (``|out|`` the number of output
  entries); weight and input gradient cost :math:`F` each, the latter only when the input needs a gradient.

So a backward pass that stops at block ``s`` (nothing below ``s`` needs a gradient) costs
:math:`\sum_{j\ge s} F_j + \sum_{j>s} F_j`, and a full one :math:`2\sum_j F_j - F_0` (block 0's input is data).
``forward_flops`` holds the :math:`F_j` computed from these formulas (not by running anything).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

Tensor = torch.Tensor

__all__ = ["BlockNetwork", "block_cnn", "block_mlp"]


@dataclass
class BlockNetwork:
    """Blocks, a batch and a loss; ``forward_flops[j]`` is block ``j``'s forward FLOPs on ``x`` (derived)."""

    name: str
    blocks: nn.ModuleList
    x: Tensor
    y: Tensor
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    forward_flops: tuple[float, ...]
    notes: str = ""
    data: dict = field(default_factory=dict)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def loss(self, out: Tensor) -> Tensor:
        return self.loss_fn(out, self.y)

    def backward_flops(self, s: int) -> float:
        """Derived FLOPs of a backward pass that stops at block ``s`` (module docstring)."""
        return float(sum(self.forward_flops[s:]) + sum(self.forward_flops[s + 1:]))

    def matrices(self, j: int) -> list[nn.Parameter]:
        return [p for p in self.blocks[j].parameters()]


def _mse(out: Tensor, y: Tensor) -> Tensor:
    return 0.5 * torch.mean((out - y) ** 2)


def block_mlp(widths: Sequence[int] = (12, 16, 10, 8, 4), batch: int = 24, *, seed: int = 0,
              dtype: torch.dtype = torch.float64) -> BlockNetwork:
    """An MLP ``Linear(w_j, w_{j+1}, bias=False)`` + ``tanh`` per block (the last block linear), MSE loss.

    Non-square weights on purpose (Muon's shape scalings differ there). ``forward_flops[j] = 2 N w_j w_{j+1}``.
    """
    widths = tuple(int(w) for w in widths)
    gen = torch.Generator().manual_seed(seed)
    blocks = nn.ModuleList()
    for j, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        lin = nn.Linear(n_in, n_out, bias=False, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(n_out, n_in, generator=gen, dtype=dtype) / n_in**0.5)
        last = j == len(widths) - 2
        blocks.append(nn.Sequential(lin) if last else nn.Sequential(lin, nn.Tanh()))
    x = torch.randn(batch, widths[0], generator=gen, dtype=dtype)
    y = torch.randn(batch, widths[-1], generator=gen, dtype=dtype)
    flops = tuple(2.0 * batch * a * b for a, b in zip(widths[:-1], widths[1:]))
    return BlockNetwork(name=f"block-mlp{widths}", blocks=blocks, x=x, y=y, loss_fn=_mse, forward_flops=flops,
                        notes="F_j = 2 N w_j w_{j+1}", data={"widths": widths, "batch": batch})


def block_cnn(channels: Sequence[int] = (3, 4, 6), size: int = 8, classes: int = 5, batch: int = 6, *,
              seed: int = 0, dtype: torch.dtype = torch.float64) -> BlockNetwork:
    """``Conv2d(c_j, c_{j+1}, 3, padding=1, bias=False)`` + ``tanh`` blocks, then a ``Flatten + Linear`` head block.

    Spatial size is kept (padding 1), so ``F_j = 2 N size^2 c_{j+1} c_j 9`` for a conv block and
    ``2 N (c_last size^2) classes`` for the head.
    """
    channels = tuple(int(c) for c in channels)
    gen = torch.Generator().manual_seed(seed)
    blocks = nn.ModuleList()
    flops = []
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False, dtype=dtype)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(c_out, c_in, 3, 3, generator=gen, dtype=dtype) / (9 * c_in) ** 0.5)
        blocks.append(nn.Sequential(conv, nn.Tanh()))
        flops.append(2.0 * batch * size * size * c_out * c_in * 9)
    n_feat = channels[-1] * size * size
    head = nn.Linear(n_feat, classes, bias=False, dtype=dtype)
    with torch.no_grad():
        head.weight.copy_(torch.randn(classes, n_feat, generator=gen, dtype=dtype) / n_feat**0.5)
    blocks.append(nn.Sequential(nn.Flatten(), head))
    flops.append(2.0 * batch * n_feat * classes)
    x = torch.randn(batch, channels[0], size, size, generator=gen, dtype=dtype)
    y = torch.randn(batch, classes, generator=gen, dtype=dtype)
    return BlockNetwork(name=f"block-cnn{channels}", blocks=blocks, x=x, y=y, loss_fn=_mse, forward_flops=tuple(flops),
                        notes="conv: F_j = 2 N size^2 c_out c_in 9; head: 2 N (c size^2) classes",
                        data={"channels": channels, "size": size, "classes": classes, "batch": batch})
