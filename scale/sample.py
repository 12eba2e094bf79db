r"""Text from a ``scale.train`` checkpoint: ``python -m scale.sample`` (console script ``optlib-sample``).

The checkpoint's configuration rebuilds the model (:class:`scale.model.GPT`) and the corpus's tokenizer (the
character vocabulary of :func:`scale.data.load_corpus`, or UTF-8 bytes), its weights are loaded, and tokens
are drawn one at a time. At each position the logits :math:`z` of the last token (for the harmonic head, its
log-probabilities) give the next-token distribution

.. math::

    p(v) \propto \exp(z_v / \tau) \quad\text{for } v \text{ among the } k \text{ largest } z_v,
    \qquad p(v) = 0 \text{ otherwise},

with temperature :math:`\tau > 0` and ``top_k`` :math:`k` (0 = every token), nanoGPT's ``sample.py`` rule
(Karpathy, github.com/karpathy/nanoGPT). The context fed to the model is the last ``block_size`` tokens. The
draws use a ``torch.Generator`` seeded with ``seed``, so a seed gives the same text on every run (on one
device type). ``scale.train`` uses :func:`generate` for its optional samples at evaluation time
(``run.sample_tokens``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import CheckpointError, find_checkpoint, load_checkpoint
from .cli import Command, option
from .config import TrainConfig, config_from_dict, upgrade_config_dict
from .data import load_corpus
from .model import GPT, GPTConfig

__all__ = ["SampleConfig", "generate", "load_model", "main", "sample_text"]


@dataclass
class SampleConfig:
    """Settings of ``python -m scale.sample``."""

    checkpoint: str = option("out/shakespeare-char-cpu", "a checkpoint file of scale.train (ckpt_*.pt or the "
                                                         "best.pt of run.keep_best), or a run folder (its latest "
                                                         "ckpt_*.pt)")
    prompt: str = option("\n", "text the samples continue (every character must be in the corpus vocabulary; "
                               "at least one character)")
    tokens: int = option(500, "tokens generated per sample")
    num_samples: int = option(1, "independent samples, printed one after another")
    temperature: float = option(0.8, "softmax temperature tau > 0 (below 1: more conservative text)")
    top_k: int = option(200, "sample among the k most likely tokens only (0 = all)")
    seed: int = option(1337, "seed of the sampling generator (the same seed gives the same text)")
    device: str = option("cpu", "device to run the model on ('cpu', 'cuda', 'cuda:N')")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, TrainConfig, dict]:
    """The model of a checkpoint with its weights, in eval mode, its :class:`TrainConfig` and the checkpoint.

    ``path`` is a checkpoint file or a run folder (:func:`scale.checkpoint.find_checkpoint`); a file that is not
    a ``scale.train`` checkpoint raises a ``ValueError`` that says why.
    """
    file = find_checkpoint(path)
    try:
        ckpt = load_checkpoint(file)
    except CheckpointError as exc:
        raise ValueError(f"cannot read checkpoint {str(file)!r}: {getattr(exc, 'problem', exc)}") from None
    config = config_from_dict(upgrade_config_dict(ckpt["config"]))
    model = GPT(GPTConfig.from_dict(ckpt["config"]["model"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), config, ckpt


def _check(tokens: int, temperature: float, top_k: int) -> None:
    if tokens < 0:
        raise ValueError(f"tokens must be >= 0, got {tokens}")
    if not (temperature > 0 and temperature < float("inf")):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = every token), got {top_k}")


@torch.no_grad()
def generate(model: GPT, idx: Tensor, tokens: int, *, temperature: float = 0.8, top_k: int = 200,
             generator: torch.Generator | None = None) -> Tensor:
    """``idx`` (``(B, T)`` token ids) extended by ``tokens`` sampled tokens (module docstring's rule)."""
    _check(tokens, temperature, top_k)
    if idx.ndim != 2 or idx.shape[1] == 0:
        raise ValueError(f"idx must be a (batch, length >= 1) tensor of token ids, got shape {tuple(idx.shape)}")
    was_training = model.training
    model.eval()
    block = model.config.block_size
    try:
        for _ in range(tokens):
            logits, _ = model(idx[:, -block:])
            z = logits[:, -1, :].float() / temperature
            if 0 < top_k < z.shape[-1]:
                kth = torch.topk(z, top_k, dim=-1).values[:, -1:]
                z = z.masked_fill(z < kth, float("-inf"))
            probs = torch.softmax(z, dim=-1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(idx.device)
            idx = torch.cat([idx, nxt], dim=1)
    finally:
        model.train(was_training)
    return idx


def sample_text(config: SampleConfig) -> list[str]:
    """The samples ``config`` asks for (each the prompt followed by the generated text)."""
    _check(config.tokens, config.temperature, config.top_k)
    if config.num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {config.num_samples}")
    if not config.prompt:
        raise ValueError("prompt must hold at least one character (the model needs a context to continue)")
    model, train_config, _ = load_model(config.checkpoint, config.device)
    d = train_config.data
    corpus = load_corpus(d.corpus, level=d.level, val_fraction=d.val_fraction, max_files=d.max_files,
                         cache_dir=d.cache_dir, block_size=train_config.model.block_size)
    try:
        ids = corpus.encode(config.prompt)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"the prompt has characters outside the corpus vocabulary of the checkpoint ({exc})") from None
    gen = torch.Generator().manual_seed(config.seed)
    start = torch.as_tensor(ids.astype("int64"), device=config.device).reshape(1, -1)
    out = []
    for _ in range(config.num_samples):
        seq = generate(model, start, config.tokens, temperature=config.temperature, top_k=config.top_k,
                       generator=gen)
        out.append(corpus.decode(seq[0].cpu().numpy()))
    return out


def _run(config: SampleConfig) -> int:
    for i, text in enumerate(sample_text(config)):
        if i:
            print("\n" + "-" * 40)
        print(text)
    return 0


COMMAND = Command(prog="python -m scale.sample", config=SampleConfig, run=_run,
                  description="Generate text from a scale.train checkpoint (temperature and top-k sampling, "
                              "seeded).",
                  help="generate text from a scale.train checkpoint")
main = COMMAND.main


if __name__ == "__main__":
    raise SystemExit(main())
