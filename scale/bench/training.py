r"""Benchmarks of the training entry point ``scale.train`` on tiny-shakespeare (character level).

``python -m scale.bench.training COMMAND`` with five commands; each writes JSON (and a PNG) under ``--out``.
Every run starts from a ``scale.train`` preset (``--train-preset``, default ``shakespeare-char-cpu``) with the
``--set SECTION.KEY=VALUE`` settings on top; ``--preset quick`` / ``--preset report`` pick the settings the
report runs in its quick and default modes.

``throughput``
    Tokens per second of :func:`scale.train.train` against a plain PyTorch loop on the same model
    (:class:`scale.model.GPT` built from the same configuration and seed), the same batches
    (:class:`scale.data.BatchSampler` with the same seed) and ``torch.optim.AdamW`` with the same
    hyper-parameters, learning-rate schedule and gradient clipping, but nothing else: no metrics, no progress
    bar, no loss read-back (:class:`PlainLoop`). Both sides run in one process, interleaved (the order
    alternates per round), at each thread count of ``--threads``; the first ``--warmup`` steps of every run are
    not timed. The clock of both sides is the same: ``time.perf_counter`` read after a given optimizer step (for
    ``scale.train`` in its ``step_callback``; after ``torch.cuda.synchronize`` on a GPU), so everything
    ``scale.train`` does per step (loss read-back, metrics lines, gradient-norm logging) is inside it.
    Reported: the median tokens/s of each side and the ratio scale.train / plain (1.0 = no overhead), also
    per round, and ``scale.train``'s own training clock (which leaves the metrics writing out).
``quality``
    AlgoPerf-style time to a target validation loss (Dahl et al. 2023, arXiv:2306.07179; spec: the training
    clock, with evaluation paused) of the ``shakespeare-char-cpu`` preset, nanoGPT's CPU recipe (4 layers,
    4 heads, width 128, context 64, batch 12), whose validation loss reaches about 1.88 with AdamW. Methods:
    AdamW, Muon (Jordan et al. 2024) and Drop-Muon (Gruntkowska, Maziane, Qu & Richtárik 2025,
    arXiv:2510.02239) with the uniform and the progress-shifted cutoff samplers, every method on the same
    seeds (initialization and batch order per seed). The time to target is ``wall_s`` of the first evaluation
    whose validation loss is at most ``--target`` (:func:`time_to_target`; ``--target adamw`` takes the target
    from AdamW's runs, as AlgoPerf takes its targets from its baselines); the ratios time(method) / time(AdamW)
    are paired by seed.
``scaling``
    The scaling law with learning-rate annealing (Tissue, Wang & Wang 2024, arXiv:2408.11029, Eq. 1;
    :mod:`scale.scaling_law`), :math:`L(s) = L_0 + A\,S_1(s)^{-\alpha} - C\,S_2(s)`, fitted to the training-loss
    curves of a constant-LR and a cosine run and used to predict the curve of a WSD run (MiniCPM, Hu et al.
    2024, arXiv:2404.06395) from its schedule alone. Reported: mean and max absolute error of the prediction
    after warmup, against the logged per-step loss and against its centered moving average (the per-step
    loss of a 768-token batch is noisy, which the raw error mostly measures).
``ranks``
    Tokens/s of ``scale.train`` in one process and on ``torchrun`` with gloo ranks, under DDP and FSDP2, for
    AdamW and Muon (median over the logged steps after warmup, one torch thread per rank), the ratio to one
    process, and rank 0's share of the Muon orthogonalizations (its ``orthogonalized_here`` counter over the
    one-process count; 1/world when the owners are balanced). On a 2-core machine this measures correctness
    and overhead, not speed-up.
``profile``
    ``cProfile`` of a short ``scale.train`` run and of the plain loop on the same configuration: the functions
    that take the time, to explain a throughput ratio below 1.

The full measurements (minutes to tens of minutes on two cores)::

    python -m scale.bench.training throughput
    python -m scale.bench.training quality --seeds 2
    python -m scale.bench.training scaling

:func:`report_section` is the report's "Training" section.
"""

from __future__ import annotations

import contextlib
import cProfile
import dataclasses
import inspect
import io
import math
import os
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import scale.train as train_module
from scale import scaling_law
from scale.checkpoint import latest_checkpoint, load_checkpoint
from scale.cli import Command, CommandGroup, config_to_dict, option
from scale.config import CUTOFF_SAMPLERS, OPTIMIZERS, PRESETS, TrainConfig, resolve
from scale.data import BatchSampler, load_corpus
from scale.metrics import MetricsWriter, read_metrics
from scale.model import GPT
from scale.schedules import DECAYS

from .common import (
    ReportContext,
    SectionResult,
    fmt_num,
    md_table,
    provenance,
    pyplot,
    register_section,
    save_json,
    spread,
    thread_limit,
)

__all__ = [
    "DEFAULT_METHODS",
    "GROUP",
    "METHODS",
    "PlainLoop",
    "ProfileConfig",
    "QualityConfig",
    "ScalingConfig",
    "ThroughputConfig",
    "anchor_target",
    "bench_config",
    "centered_average",
    "format_profile",
    "main",
    "measure_throughput",
    "parse_assignments",
    "profile_steps",
    "report_section",
    "run_quality",
    "run_scaling",
    "summarize_quality",
    "time_to_target",
]

PRESET = "shakespeare-char-cpu"
"""The ``scale.train`` preset every run starts from unless ``--train-preset`` names another."""
TARGET = 1.88
"""Validation loss (nats per character) that nanoGPT's CPU recipe reaches on tiny-shakespeare."""


def _spelled(names: Sequence[str], word: str) -> str:
    """The member of ``names`` (a list of ``scale.config``) that is ``word`` up to its separators, so that the
    spelling there (``drop-muon`` or ``dropmuon``, ``epoch-shift`` or ``epoch_shift``) is the one used here."""
    return next(n for n in names if n.replace("-", "").replace("_", "") == word)


DROP_MUON = _spelled(OPTIMIZERS, "dropmuon")
"""``scale.train``'s name of the Drop-Muon optimizer."""
METHODS: dict[str, dict[str, Any]] = {
    "adamw": {"optim.name": "adamw"},
    "muon": {"optim.name": "muon"},
    "drop-muon-uniform": {"optim.name": DROP_MUON, "optim.cutoff_sampler": _spelled(CUTOFF_SAMPLERS, "uniform")},
    "drop-muon-shift": {"optim.name": DROP_MUON, "optim.cutoff_sampler": _spelled(CUTOFF_SAMPLERS, "epochshift")},
    "drop-muon-linear": {"optim.name": DROP_MUON, "optim.cutoff_sampler": _spelled(CUTOFF_SAMPLERS, "linearshift")},
}
"""Method name -> the ``scale.train`` settings that select it (on top of the preset)."""
DEFAULT_METHODS = ("adamw", "muon", "drop-muon-uniform", "drop-muon-shift")
ANCHOR = "adamw"
GOAL_RATIO = 0.7
SIDES = ("scale.train", "plain")
FIT_SCHEDULES = ("constant", "cosine", "wsd")
"""The ``scale.train`` schedules the scaling-law check can fit or predict."""

THROUGHPUT_JSON, THROUGHPUT_PNG = "throughput.json", "throughput.png"
QUALITY_JSON, QUALITY_PNG = "quality.json", "quality_val_loss.png"
SCALING_JSON, SCALING_PNG = "scaling.json", "scaling_law.png"
PROFILE_JSON, PROFILE_TXT = "profile.json", "profile.txt"
OUT = Path("reports/training")

# Settings every benchmark run gets: no console output, no per-run PNG, a reused output folder is fine.
QUIET = {"run.progress": False, "run.verbose": False, "run.plot": False, "run.overwrite": True,
         "run.resume": False, "run.keep_checkpoints": 1, "run.ckpt_interval": 0}


# ---------------------------------------------------------------------------------------- configurations
def parse_assignments(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["optim.lr=3e-3", ...]`` (the ``--set`` options) as ``{"optim.lr": "3e-3", ...}``; a mapping is
    returned as a dict. Values are converted to the field types by :func:`scale.config.resolve`."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out = {}
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise ValueError(f"--set expects SECTION.KEY=VALUE (e.g. optim.lr=3e-3), got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def bench_config(overrides: Mapping[str, Any] | None = None, *, train_preset: str = PRESET,
                 extra: Iterable[str] | Mapping[str, Any] | None = None) -> TrainConfig:
    """The ``scale.train`` preset, then :data:`QUIET`, then ``overrides``, then the user's ``extra`` settings
    (the ``--set`` options; later wins)."""
    _check_train_preset(train_preset)
    merged = {**QUIET, **dict(overrides or {}), **parse_assignments(extra)}
    return resolve(train_preset, None, merged)


def _check_train_preset(name: str) -> None:
    if name not in PRESETS:
        raise ValueError(f"unknown scale.train preset {name!r} (--train-preset); valid: {', '.join(PRESETS)}")


def _preset_value(train_preset: str, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(resolve(train_preset), section), name)


def _run_train(config: TrainConfig, on_step: Callable[[int, Any, dict], Any] | None = None
               ) -> tuple[dict, list[dict]]:
    """:func:`scale.train.train` and its summary and metric records; torch's thread count, which ``train``
    sets from ``run.threads``, is restored afterwards."""
    with thread_limit(torch.get_num_threads(), blas=None):
        summary = train_module.train(config, step_callback=on_step)
    return summary, read_metrics(summary["metrics_path"])


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work before a clock is read (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def _check_ints(cfg: Any, bounds: Sequence[tuple[str, int]], optional: bool = False) -> None:
    """Each named field of ``cfg`` an integer at least its bound (``None`` too where ``optional``)."""
    for name, lo in bounds:
        v = getattr(cfg, name)
        if optional and v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            kind = "none or an integer" if optional else "an integer"
            raise ValueError(f"--{name.replace('_', '-')} must be {kind} >= {lo}, got {v!r}")


def _record(cfg: Any) -> dict[str, Any]:
    """The settings stored in a result: the dataclass as plain values, without the output options."""
    return {k: v for k, v in config_to_dict(cfg).items() if k not in ("out", "plot", "progress")}


# Options every command shares (each config class declares them, after its own).
def _train_preset_option(note: str = " (not to be confused with --preset, which picks a named set of this "
                                    "command's settings)") -> Any:
    return option(PRESET, "scale.train preset every run starts from" + note, choices=tuple(PRESETS))


def _set_option() -> Any:
    return option((), "scale.train settings applied to every run after the benchmark's own, as "
                      "SECTION.KEY=VALUE, e.g. --set optim.ns_dtype=float32 run.device=cpu (give them all after "
                      "one --set: a second --set replaces the first)")


def _out_option() -> Any:
    return option(OUT, "output folder of the JSON and PNG files (created if missing)")


def _plot_option() -> Any:
    return option(True, "write the PNG figure")


def _progress_option() -> Any:
    return option(True, "show a progress bar on stderr")


# ---------------------------------------------------------------------------------------- the plain loop
class PlainLoop:
    """The anchor of the throughput comparison: nanoGPT's training loop and nothing more.

    Built from a :class:`scale.config.TrainConfig` with ``optim.name == "adamw"``, with the conventions of
    ``scale.train`` so that both compute the same thing: every random generator seeded with ``run.seed``
    before the model is built (the same initialization), ``BatchSampler(train_split, block_size, batch_size,
    run.seed)`` (the same batches), ``torch.optim.AdamW`` with decoupled weight decay on the parameters of two
    or more dimensions only (fused on CUDA), the learning rate of step :math:`k` (from 0) equal to the peak
    ``optim.lr`` times the schedule's multiplier at :math:`k` (:func:`scale.train.build_schedule`),
    gradient-norm clipping at ``optim.grad_clip`` (0 = none).
    One :meth:`step` is: next batch, forward, backward, clip, AdamW step, ``zero_grad``; the loss stays a
    tensor (no read-back, no logging).

    Parameters
    ----------
    config : TrainConfig
    corpus : scale.data.Corpus, optional
        The loaded corpus (loaded from ``config.data`` if not given).
    """

    def __init__(self, config: TrainConfig, corpus=None) -> None:
        if config.optim.name != "adamw":
            raise ValueError(f"the plain loop is the AdamW anchor; got optim.name={config.optim.name!r} "
                             "(valid: 'adamw')")
        d, m, o, r = config.data, config.model, config.optim, config.run
        if corpus is None:
            corpus = load_corpus(d.corpus, level=d.level, val_fraction=d.val_fraction, max_files=d.max_files,
                                 cache_dir=d.cache_dir, block_size=m.block_size)
        vocab = m.vocab_size or corpus.vocab_size
        if vocab < corpus.vocab_size:
            raise ValueError(f"model.vocab_size={vocab} is smaller than the corpus vocabulary ({corpus.vocab_size})")
        self.config = config
        self.device = _device(r.device)
        random.seed(r.seed)
        np.random.seed(r.seed % 2**32)
        torch.manual_seed(r.seed)
        self.model = GPT(dataclasses.replace(m, vocab_size=vocab)).to(self.device)
        torch.manual_seed(r.seed)  # dropout stream, as scale.train reseeds after building the model
        if r.compile:
            self.model = torch.compile(self.model)
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in self.params if p.ndim >= 2]
        no_decay = [p for p in self.params if p.ndim < 2]
        groups = [g for g in ({"params": decay, "weight_decay": o.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
        # fused AdamW on CUDA, as nanoGPT (and scale.train) use it there; torch's default elsewhere
        self.optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps,
                                           fused=True if self.device.type == "cuda" else None)
        self.peak_lr = o.lr
        self.schedule = train_module.build_schedule(config)
        self.grad_clip = o.grad_clip
        self.sampler = BatchSampler(corpus.train, m.block_size, d.batch_size, r.seed)
        self.tokens_per_step = d.batch_size * m.block_size
        self.autocast = ((lambda: torch.autocast(device_type=self.device.type, dtype=torch.bfloat16))
                         if r.dtype == "bfloat16" else contextlib.nullcontext)
        self.k = 0

    def step(self) -> torch.Tensor:
        """One optimizer step; returns the loss tensor of the batch (before the update)."""
        x, y = self.sampler.next()
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        lr = self.peak_lr * self.schedule(self.k)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        with self.autocast():
            _, loss = self.model(x, y)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.k += 1
        return loss.detach()

    def losses(self, n: int) -> list[float]:
        """The losses of the next ``n`` steps as floats."""
        return [float(self.step()) for _ in range(n)]


# ---------------------------------------------------------------------------------------- throughput
@dataclass
class RunSettings:
    """What every training benchmark's runs start from (a scale.train preset and extra settings) and where the
    results go; the benchmark's own settings follow."""

    train_preset: str = _train_preset_option()
    set: tuple[str, ...] = _set_option()
    out: Path = _out_option()
    plot: bool = _plot_option()
    progress: bool = _progress_option()


@dataclass
class ThroughputConfig(RunSettings):
    """Settings of the throughput comparison (recorded in the JSON without out/plot/progress, which only the
    command reads: :func:`measure_throughput` takes them as arguments)."""

    steps: int = option(100, "timed optimizer steps per side per round")
    warmup: int = option(10, "untimed steps at the start of every run")
    rounds: int = option(5, "rounds; each runs both sides once, the side that goes first alternating")
    threads: tuple[int, ...] = option((1, 2), "torch thread counts to measure")
    seed: int = option(1337, "run.seed of both sides (initialization, batches)")

    def validate(self) -> None:
        _check_ints(self, (("steps", 1), ("warmup", 1), ("rounds", 1)))
        if not self.threads or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in self.threads):
            raise ValueError(f"--threads must be positive integers, got {list(self.threads)!r}")
        _check_train_preset(self.train_preset)
        parse_assignments(self.set)


def _throughput_config(cfg: ThroughputConfig, threads: int, out_dir: Path) -> TrainConfig:
    total = _preset_value(cfg.train_preset, "run.max_iters")
    warmup = _preset_value(cfg.train_preset, "schedule.warmup")
    return bench_config({
        "optim.name": "adamw", "run.seed": cfg.seed, "run.threads": threads,
        # one step past the timed window: the final evaluation and checkpoint come after it
        "run.max_iters": cfg.warmup + cfg.steps + 1,
        "schedule.total": max(total, cfg.warmup + cfg.steps + 2, warmup + 1),
        "run.eval_interval": 0, "run.eval_iters": 1, "run.out_dir": str(out_dir),
    }, train_preset=cfg.train_preset, extra=cfg.set)


def _time_train(config: TrainConfig, warmup: int, steps: int) -> dict[str, float]:
    stamps: dict[int, float] = {}
    marks = (warmup, warmup + steps)

    def on_step(step: int, model, record: dict) -> None:
        if step in marks:
            _sync(next(model.parameters()).device)
            stamps[step] = time.perf_counter()

    summary, records = _run_train(config, on_step)
    tokens = steps * config.data.batch_size * config.model.block_size
    wall = stamps[marks[1]] - stamps[marks[0]]
    # scale.train's own training clock over the logged steps inside the same window
    logged = [r for r in records if r.get("kind") == "train" and marks[0] <= r["step"] <= marks[1]]
    clock = None
    if len(logged) >= 2 and logged[-1]["wall_s"] > logged[0]["wall_s"]:
        clock = (logged[-1]["tokens"] - logged[0]["tokens"]) / (logged[-1]["wall_s"] - logged[0]["wall_s"])
    return {"tokens_per_s": tokens / wall, "seconds": wall, "clock_tokens_per_s": clock,
            "setup_and_teardown_s": summary["total_seconds"] - summary["train_seconds"]}


def _time_plain(config: TrainConfig, corpus, warmup: int, steps: int) -> dict[str, float]:
    loop = PlainLoop(config, corpus)
    for _ in range(warmup):
        loop.step()
    _sync(loop.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        loop.step()
    _sync(loop.device)
    wall = time.perf_counter() - t0
    return {"tokens_per_s": steps * loop.tokens_per_step / wall, "seconds": wall}


def measure_throughput(cfg: ThroughputConfig, *, out: Path | str | None = None, progress: bool = False,
                       plot: bool = True) -> dict[str, Any]:
    """Tokens/s of ``scale.train`` and of :class:`PlainLoop`, interleaved in this process (see the module
    docstring). Returns (and with ``out`` writes as ``throughput.json`` / ``throughput.png``) per thread count
    the per-round rates, their medians, ``ratio`` = median scale.train / median plain and the per-round
    ratios' spread."""
    cfg.validate()
    tmp = tempfile.TemporaryDirectory(prefix="bench_training_")
    per_threads: dict[str, Any] = {}
    try:
        base = _throughput_config(cfg, cfg.threads[0], Path(tmp.name) / "run")
        d = base.data
        corpus = load_corpus(d.corpus, level=d.level, val_fraction=d.val_fraction, max_files=d.max_files,
                             cache_dir=d.cache_dir, block_size=base.model.block_size)
        total = len(cfg.threads) * cfg.rounds * 2
        with tqdm(total=total, desc="throughput", unit="run", disable=not progress, file=sys.stderr) as bar:
            for threads in cfg.threads:
                config = _throughput_config(cfg, threads, Path(tmp.name) / f"run-t{threads}")
                rounds = []
                with thread_limit(threads, blas=None):
                    for r in range(cfg.rounds):
                        entry: dict[str, Any] = {"order": list(SIDES if r % 2 == 0 else SIDES[::-1])}
                        for side in entry["order"]:
                            if side == "scale.train":
                                entry[side] = _time_train(config, cfg.warmup, cfg.steps)
                            else:
                                entry[side] = _time_plain(config, corpus, cfg.warmup, cfg.steps)
                            bar.update(1)
                        entry["ratio"] = entry["scale.train"]["tokens_per_s"] / entry["plain"]["tokens_per_s"]
                        rounds.append(entry)
                med = {s: statistics.median(e[s]["tokens_per_s"] for e in rounds) for s in SIDES}
                clocks = [e["scale.train"]["clock_tokens_per_s"] for e in rounds
                          if e["scale.train"]["clock_tokens_per_s"]]
                per_threads[str(threads)] = {
                    "threads": threads,
                    "rounds": rounds,
                    "median_tokens_per_s": med,
                    "ratio": med["scale.train"] / med["plain"],
                    "ratio_per_round": spread([e["ratio"] for e in rounds]),
                    "median_clock_tokens_per_s": statistics.median(clocks) if clocks else None,
                }
    finally:
        tmp.cleanup()
    result = {
        "config": _record(cfg),
        "model": {"batch_size": base.data.batch_size, "block_size": base.model.block_size,
                  "tokens_per_step": base.data.batch_size * base.model.block_size,
                  "n_layer": base.model.n_layer, "n_embd": base.model.n_embd, "n_head": base.model.n_head},
        "provenance": provenance(cfg.threads[0]),
        "by_threads": per_threads,
    }
    save_json(result, out, THROUGHPUT_JSON)
    if out is not None and plot:
        plot_throughput(result, Path(out) / THROUGHPUT_PNG)
    return result


def plot_throughput(result: dict[str, Any], path: Path | str) -> None:
    """Median tokens/s per side and thread count (bars) with every round's rate (dots)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    keys = list(result["by_threads"])
    width = 0.38
    for j, side in enumerate(SIDES):
        xs = np.arange(len(keys)) + (j - 0.5) * width
        meds = [result["by_threads"][k]["median_tokens_per_s"][side] for k in keys]
        ax.bar(xs, meds, width, label=side, color=("tab:blue", "tab:gray")[j], alpha=0.8)
        for x, k in zip(xs, keys):
            pts = [e[side]["tokens_per_s"] for e in result["by_threads"][k]["rounds"]]
            ax.plot([x] * len(pts), pts, "k.", ms=3)
    top = max(e[side]["tokens_per_s"] for k in keys for e in result["by_threads"][k]["rounds"] for side in SIDES)
    ax.set_ylim(0, 1.15 * top)
    for i, k in enumerate(keys):
        ax.text(i, 1.12 * top, f"ratio {result['by_threads'][k]['ratio']:.3f}", ha="center", va="top", fontsize=8)
    ax.set_xticks(np.arange(len(keys)), [f"{k} thread(s)" for k in keys])
    ax.set_ylabel("tokens / s (median over rounds)")
    ax.set_title("scale.train against a plain loop (same model, batches, AdamW)", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------- profiling
def _profile_components() -> dict[str, Any]:
    """The functions of one training step whose cumulative time :func:`profile_steps` reports, by code
    object (decorator wrappers removed)."""
    trainer_cls = getattr(train_module, "_Trainer", None)  # the training loop's class (internal)
    fns = {
        "batch (BatchSampler.next)": BatchSampler.next,
        "forward (GPT.forward)": GPT.forward,
        "backward (Tensor.backward)": torch.Tensor.backward,
        "clip_grad_norm_": torch.nn.utils.clip_grad_norm_,
        "AdamW step": torch.optim.AdamW.step,
        "zero_grad": torch.optim.Optimizer.zero_grad,
        "LR scheduler step": torch.optim.lr_scheduler.LRScheduler.step,
        "loss read-back (_global_stats)": getattr(trainer_cls, "_global_stats", None),
        "metrics line (MetricsWriter.write)": MetricsWriter.write,
    }
    out = {}
    for name, fn in fns.items():
        code = getattr(inspect.unwrap(fn), "__code__", None) if fn is not None else None
        if code is not None:
            out[name] = (code.co_filename, code.co_firstlineno, code.co_name)
    return out


def profile_steps(config: TrainConfig, steps: int, *, top: int = 25) -> dict[str, Any]:
    """``cProfile`` of ``steps`` optimizer steps of ``scale.train`` (one :func:`scale.train.train` call, setup
    included, after an untimed one-step call that pays the imports) and of :class:`PlainLoop` (steps only,
    after one untimed step).

    Returns, per side, the wall time, ``per_step``: the cumulative seconds per step of the pieces of a step
    (batch, forward, backward, clipping, AdamW, ``zero_grad``, scheduler, loss read-back, metrics line;
    ``None`` where a side does not call it) and of the whole step (``scale.train``'s loop, the plain
    :meth:`PlainLoop.step`), and text tables of the ``top`` functions by own and by cumulative time.
    Profiling slows Python-level code more than the kernels, so the per-step numbers overstate Python
    overheads; they show where time goes, the throughput command measures how much."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    total = config.schedule.total if config.schedule.total is not None else steps
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, max_iters=steps),
                                 schedule=dataclasses.replace(config.schedule, total=total))
    _run_train(dataclasses.replace(config, run=dataclasses.replace(config.run, max_iters=1)))
    components = _profile_components()
    out: dict[str, Any] = {}
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    summary, _ = _run_train(config)
    prof.disable()
    loop_fn = getattr(getattr(train_module, "_Trainer", None), "loop", None)
    whole = {}
    if loop_fn is not None:
        code = loop_fn.__code__
        whole = {"whole step (training loop)": (code.co_filename, code.co_firstlineno, code.co_name)}
    out["scale.train"] = {
        "wall_s": time.perf_counter() - t0, "train_seconds": summary["train_seconds"], "steps": steps,
        "per_step": _per_step(prof, {**components, **whole}, steps), **_stats_tables(prof, top)}
    loop = PlainLoop(config)
    loop.step()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for _ in range(steps - 1):
        loop.step()
    prof.disable()
    step_code = PlainLoop.step.__code__
    out["plain"] = {
        "wall_s": time.perf_counter() - t0, "steps": steps - 1,
        "per_step": _per_step(prof, {**components, "whole step (training loop)": (
            step_code.co_filename, step_code.co_firstlineno, step_code.co_name)}, steps - 1),
        **_stats_tables(prof, top)}
    return out


def _per_step(prof: cProfile.Profile, keys: Mapping[str, tuple], steps: int) -> dict[str, float | None]:
    stats = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    return {name: (stats[key][3] / steps if key in stats else None) for name, key in keys.items()}


def _stats_tables(prof: cProfile.Profile, top: int) -> dict[str, str]:
    tables = {}
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(top)
        tables[f"by_{key}"] = buf.getvalue()
    return tables


def format_profile(result: dict[str, Any]) -> str:
    """The per-step table of :func:`profile_steps` (milliseconds per step, both sides) as plain text."""
    names = list(dict.fromkeys([*result["scale.train"]["per_step"], *result["plain"]["per_step"]]))
    lines = [f"{'piece of a step':<38} {'scale.train ms':>15} {'plain ms':>10}"]
    for n in names:
        a, b = result["scale.train"]["per_step"].get(n), result["plain"]["per_step"].get(n)
        cells = ["—" if v is None else f"{1e3 * v:.3f}" for v in (a, b)]
        lines.append(f"{n:<38} {cells[0]:>15} {cells[1]:>10}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- quality
def time_to_target(records: Iterable[dict] | str | Path, target: float) -> dict[str, Any]:
    """The first evaluation whose validation loss is at most ``target``.

    Parameters
    ----------
    records : iterable of dict, or path
        Metric records of ``scale.train`` (or the path of its ``metrics.jsonl``); the ``"eval"`` records
        (``step``, ``val_loss``, ``wall_s`` = training clock, ``tokens``) are used. A step logged twice (a
        resumed run) keeps its last record.
    target : float

    Returns
    -------
    dict
        ``reached``; ``step``, ``wall_s``, ``tokens``, ``val_loss`` of that evaluation (``wall_s`` is
        ``inf`` and ``step`` / ``tokens`` ``None`` when no evaluation reached the target); ``best_val_loss``
        and ``evaluations`` (how many were read).
    """
    if isinstance(records, (str, Path)):
        records = read_metrics(records)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target):
        raise ValueError(f"target must be a finite number (a validation loss), got {target!r}")
    evals: dict[int, dict] = {}
    for r in records:
        if r.get("kind") == "eval" and isinstance(r.get("val_loss"), (int, float)) and isinstance(r.get("step"), int):
            evals[r["step"]] = r
    if not evals:
        raise ValueError("no evaluation records ('kind': 'eval' with 'step' and 'val_loss') in the metrics; "
                         "was run.eval_interval 0 and the run cut short?")
    ordered = [evals[s] for s in sorted(evals)]
    finite = [r["val_loss"] for r in ordered if math.isfinite(r["val_loss"])]
    best = min(finite) if finite else math.nan
    for r in ordered:
        if math.isfinite(r["val_loss"]) and r["val_loss"] <= target:
            return {"reached": True, "step": r["step"], "wall_s": float(r["wall_s"]), "tokens": r.get("tokens"),
                    "val_loss": float(r["val_loss"]), "best_val_loss": best, "evaluations": len(ordered)}
    return {"reached": False, "step": None, "wall_s": math.inf, "tokens": None, "val_loss": None,
            "best_val_loss": best, "evaluations": len(ordered)}


_METHOD_SETTINGS = "; ".join(f"{k}: " + ", ".join(f"{a}={b}" for a, b in v.items()) for k, v in METHODS.items())


@dataclass
class QualityConfig(RunSettings):
    """Settings of the time-to-target comparison (recorded in the JSON without out/plot/progress, which only
    the command reads: :func:`run_quality` takes them as arguments).

    ``max_iters`` / ``warmup`` / ``eval_iters`` ``None`` keep the preset's values (the schedule spans the
    run). ``target`` is a validation loss, or ``"adamw"`` (:data:`ANCHOR`): the target is then derived from
    the anchor as AlgoPerf derives its targets from its baselines, the best validation loss AdamW reached on
    its worst seed, so that every AdamW run reaches it (at its best evaluation) and the other methods are timed
    to AdamW's quality."""

    methods: tuple[str, ...] = option(DEFAULT_METHODS, "methods, each a scale.train setting on top of the "
                                                       f"preset ({_METHOD_SETTINGS})", choices=tuple(METHODS))
    seeds: int = option(2, "number of seeds; seed i sets run.seed = base-seed + i (initialization, batch order, "
                           "Drop-Muon cutoffs), the same for every method")
    base_seed: int = option(1337, "run.seed of the first seed")
    target: float | str = option(TARGET, "validation loss (nats per character) that counts as reached, or "
                                         f"'{ANCHOR}': the best validation loss {ANCHOR} reached on its worst seed "
                                         f"(AlgoPerf-style target; {ANCHOR} must then be among the methods)")
    max_iters: int | None = option(None, "steps per run (none: the preset's run.max_iters; the schedule spans "
                                         "the run)")
    warmup: int | None = option(None, "warmup steps (none: the preset's schedule.warmup)")
    eval_interval: int = option(50, "steps between validation evaluations; the time to target is read at these "
                                    "points")
    eval_iters: int | None = option(None, "validation batches per evaluation (none: the preset's run.eval_iters)")
    threads: int = option(2, "torch threads of every run")

    @property
    def target_from_anchor(self) -> bool:
        """True when the target is taken from the anchor's runs (``target == "adamw"``)."""
        return self.target == ANCHOR

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"--methods: unknown method(s) {', '.join(unknown) or '(none given)'}; "
                             f"known: {', '.join(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"--methods repeat: {list(self.methods)}")
        _check_ints(self, (("seeds", 1), ("eval_interval", 1), ("threads", 1)))
        _check_ints(self, (("max_iters", 1), ("warmup", 0), ("eval_iters", 1)), optional=True)
        if isinstance(self.target, str):
            if not self.target_from_anchor:
                raise ValueError(f"--target must be a validation loss (a positive number) or "
                                 f"'{ANCHOR}', got {self.target!r}")
            if ANCHOR not in self.methods:
                raise ValueError(f"--target {ANCHOR} takes the target from {ANCHOR!r}, which is not "
                                 "among the --methods")
        elif (isinstance(self.target, bool) or not isinstance(self.target, (int, float))
              or not math.isfinite(self.target) or self.target <= 0):
            raise ValueError(f"--target must be a positive validation loss or '{ANCHOR}', got "
                             f"{self.target!r}")
        _check_train_preset(self.train_preset)
        parse_assignments(self.set)


def _quality_config(cfg: QualityConfig, method: str, seed: int, out_dir: Path) -> TrainConfig:
    o: dict[str, Any] = {**METHODS[method], "run.seed": seed, "run.threads": cfg.threads,
                         "run.eval_interval": cfg.eval_interval, "run.out_dir": str(out_dir)}
    if cfg.max_iters is not None:
        o["run.max_iters"] = cfg.max_iters
    if cfg.warmup is not None:
        o["schedule.warmup"] = cfg.warmup
    if cfg.eval_iters is not None:
        o["run.eval_iters"] = cfg.eval_iters
    return bench_config(o, train_preset=cfg.train_preset, extra=cfg.set)


def _quality_run(method: str, seed: int, config: TrainConfig) -> dict[str, Any]:
    summary, records = _run_train(config)
    evals = sorted((r for r in records if r.get("kind") == "eval"), key=lambda r: r["step"])
    train_recs = [r for r in records if r.get("kind") == "train"]
    steps = summary["steps"]
    return {
        "method": method, "seed": seed,
        "final_val_loss": summary["final_val_loss"], "best_val_loss": summary["best_val_loss"],
        "steps": steps, "train_seconds": summary["train_seconds"],
        "time_per_step": summary["train_seconds"] / steps if steps else math.nan,
        "mean_layers_backpropagated": (statistics.fmean(r["layers_backpropagated"] for r in train_recs)
                                       if train_recs and "layers_backpropagated" in train_recs[0] else None),
        "curve_step": [r["step"] for r in evals],
        "curve_wall_s": [r["wall_s"] for r in evals],
        "curve_val_loss": [r["val_loss"] for r in evals],
        "curve_tokens": [r.get("tokens") for r in evals],
        "metrics_path": summary["metrics_path"],
    }


def _set_time_to_target(run: dict[str, Any], target: float) -> None:
    records = [{"kind": "eval", "step": s, "wall_s": w, "val_loss": v, "tokens": t}
               for s, w, v, t in zip(run["curve_step"], run["curve_wall_s"], run["curve_val_loss"],
                                     run["curve_tokens"])]
    tt = time_to_target(records, target)
    run.update(reached=tt["reached"], time_to_target=tt["wall_s"], steps_to_target=tt["step"],
               tokens_to_target=tt["tokens"])


def anchor_target(runs: Sequence[dict[str, Any]], anchor: str = ANCHOR) -> float:
    """The largest, over the anchor's runs, of the best validation loss each reached (AlgoPerf derives its
    targets from the baselines' validation results the same way; every anchor run reaches this one)."""
    best = [min(v for v in r["curve_val_loss"] if math.isfinite(v)) for r in runs
            if r["method"] == anchor and any(math.isfinite(v) for v in r["curve_val_loss"])]
    if not best:
        raise ValueError(f"no finite validation loss from {anchor!r} to take the target from")
    return max(best)


def summarize_quality(runs: Sequence[dict], methods: Sequence[str], anchor: str = ANCHOR) -> tuple[dict, dict]:
    """Per-method summaries and per-seed ratios time(method) / time(anchor) (also steps and time per
    step). A ratio is ``inf`` when the method missed the target and the anchor did not, ``nan`` when the
    anchor missed; the spread counts finite ratios only."""
    by = {m: {r["seed"]: r for r in runs if r["method"] == m} for m in methods}
    summary = {}
    for m in methods:
        rs = list(by[m].values())
        summary[m] = {
            "reached": sum(bool(r["reached"]) for r in rs), "runs": len(rs),
            "time_to_target": spread([r["time_to_target"] for r in rs]),
            "steps_to_target": spread([r["steps_to_target"] for r in rs if r["steps_to_target"] is not None]),
            "final_val_loss": spread([r["final_val_loss"] for r in rs if r["final_val_loss"] is not None]),
            "time_per_step": spread([r["time_per_step"] for r in rs]),
        }
    ratios = {}
    if anchor in by:
        for m in methods:
            if m == anchor:
                continue
            seeds = sorted(set(by[anchor]) & set(by[m]))

            def ratio(key: str, a: dict, b: dict) -> float:
                num, den = b[key], a[key]
                if num is None or den is None or not math.isfinite(den):
                    return math.nan
                return num / den if math.isfinite(num) else math.inf

            t = {s: ratio("time_to_target", by[anchor][s], by[m][s]) for s in seeds}
            n = {s: ratio("steps_to_target", by[anchor][s], by[m][s]) for s in seeds}
            tps = [by[m][s]["time_per_step"] / by[anchor][s]["time_per_step"] for s in seeds]
            ratios[m] = {
                "time_to_target": {**spread(list(t.values())), "per_seed": t},
                "steps_to_target": {**spread(list(n.values())), "per_seed": n},
                "time_per_step": spread(tps),
                "missed": sum(1 for v in t.values() if v == math.inf),
            }
    return summary, ratios


def _runs_dir(out: Path | str | None, runs_dir: Path | str | None
              ) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """Where the runs of a benchmark go: ``runs_dir``, else ``out/runs``, else a temporary folder (returned
    too, for the caller to clean up)."""
    if runs_dir is not None:
        return Path(runs_dir), None
    if out is not None:
        return Path(out) / "runs", None
    tmp = tempfile.TemporaryDirectory(prefix="bench_training_")
    return Path(tmp.name), tmp


def run_quality(cfg: QualityConfig, *, out: Path | str | None = None, runs_dir: Path | str | None = None,
                progress: bool = False, plot: bool = True) -> dict[str, Any]:
    """Every method on every seed (seeds outermost; the method order rotates per seed), then the time to
    target, summaries and ratios against AdamW. ``runs_dir`` keeps each run's ``metrics.jsonl`` and last
    checkpoint (default ``out/runs``; a temporary folder without ``out``)."""
    cfg.validate()
    runs_dir, tmp = _runs_dir(out, runs_dir)
    seeds = [cfg.base_seed + i for i in range(cfg.seeds)]
    methods = list(cfg.methods)
    runs: list[dict] = []
    try:
        jobs = [(methods[(i + j) % len(methods)], seed) for i, seed in enumerate(seeds) for j in range(len(methods))]
        with tqdm(total=len(jobs), desc="quality", unit="run", disable=not progress, file=sys.stderr) as bar:
            for method, seed in jobs:
                config = _quality_config(cfg, method, seed, runs_dir / f"{method}-seed{seed}")
                run = _quality_run(method, seed, config)
                if tmp is not None:
                    run["metrics_path"] = None
                runs.append(run)
                bar.set_postfix_str(f"{method} seed {seed}: val loss {run['final_val_loss']:.3f}")
                bar.update(1)
    finally:
        if tmp is not None:
            tmp.cleanup()
    target = anchor_target(runs) if cfg.target_from_anchor else float(cfg.target)
    for run in runs:
        _set_time_to_target(run, target)
    summary, ratios = summarize_quality(runs, methods)
    example = _quality_config(cfg, methods[0], seeds[0], runs_dir)
    finite_medians = [r["time_to_target"]["median"] for r in ratios.values()
                      if r["time_to_target"]["n"] and math.isfinite(r["time_to_target"]["median"])]
    result = {
        "config": {**_record(cfg), "seed_values": seeds},
        "target": target,
        "target_source": f"best validation loss of {ANCHOR} (worst seed)" if cfg.target_from_anchor else "given",
        "train_config": {"max_iters": example.run.max_iters, "schedule": example.schedule.name,
                         "warmup": example.schedule.warmup, "batch_size": example.data.batch_size,
                         "block_size": example.model.block_size, "n_layer": example.model.n_layer,
                         "n_embd": example.model.n_embd, "lr": example.optim.lr, "muon_lr": example.optim.muon_lr,
                         "eval_iters": example.run.eval_iters},
        "provenance": provenance(cfg.threads),
        "runs": runs,
        "summary": summary,
        "ratios": ratios,
        "goal": {"ratio": GOAL_RATIO, "best_median_ratio": min(finite_medians) if finite_medians else None,
                 "met": bool(finite_medians) and min(finite_medians) <= GOAL_RATIO},
    }
    save_json(result, out, QUALITY_JSON)
    if out is not None and plot:
        plot_quality(result, Path(out) / QUALITY_PNG)
    return result


STYLES = {"adamw": "tab:gray", "muon": "tab:blue", "drop-muon-uniform": "tab:orange",
          "drop-muon-shift": "tab:green", "drop-muon-linear": "tab:purple"}


def plot_quality(result: dict[str, Any], path: Path | str, title: str | None = None) -> None:
    """Validation loss against the training clock (left) and against steps (right), one line per run
    (colour = method, line style = seed), the target dotted."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), sharey=True)
    target = result["target"]
    seeds = result["config"]["seed_values"]
    dashes = ["-", "--", ":", "-."]
    seen = set()
    vals = []
    for r in result["runs"]:
        label = r["method"] if r["method"] not in seen else None
        seen.add(r["method"])
        ls = dashes[seeds.index(r["seed"]) % len(dashes)] if r["seed"] in seeds else "-"
        for ax, x in zip(axes, (r["curve_wall_s"], r["curve_step"])):
            ax.plot(x, r["curve_val_loss"], color=STYLES.get(r["method"]), ls=ls, lw=1.2, marker=".", ms=2,
                    label=label)
        vals += [v for v in r["curve_val_loss"] if math.isfinite(v)]
    for ax in axes:
        ax.axhline(target, color="k", ls=":", lw=0.8)
        ax.grid(True, alpha=0.3)
    if vals:
        lo = min(min(vals), target)
        hi = min(max(vals), lo + 1.5)
        axes[0].set_ylim(lo - 0.05, hi + 0.05)
    axes[0].set_xlabel("training wall-clock (s; evaluation paused)")
    axes[1].set_xlabel("step")
    axes[0].set_ylabel("validation loss (nats per character)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title or f"tiny-shakespeare, {result['train_config']['n_layer']} layers x "
                          f"{result['train_config']['n_embd']}, batch {result['train_config']['batch_size']} x "
                          f"{result['train_config']['block_size']}; dotted: target {target:.4g}; line style = seed",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------- scaling law
def centered_average(values: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """Centered moving average over ``window`` points (odd; an even one is raised by one); near the ends the
    window shrinks symmetrically (the first and last points are kept as they are), so a linear trend
    passes unchanged."""
    v = np.asarray(values, dtype=np.float64)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    h = int(window) // 2
    n = v.size
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(n)
    half = np.minimum(np.minimum(i, n - 1 - i), h)
    return (c[i + half + 1] - c[i - half]) / (2 * half + 1)


@dataclass
class ScalingConfig(RunSettings):
    """Settings of the scaling-law check (recorded in the JSON without out/plot/progress, which only the
    command reads: :func:`run_scaling` takes them as arguments). ``warmup`` / ``min_ratio`` ``None`` keep the
    preset's values."""

    steps: int = option(800, "steps of every run")
    warmup: int | None = option(None, "warmup steps (none: the preset's schedule.warmup)")
    min_ratio: float | None = option(None, "final learning rate / peak of the cosine and WSD runs (none: the "
                                           "preset's schedule.min_ratio)")
    fit_schedules: tuple[str, ...] = option(("constant", "cosine"), "schedules of the runs the law is fitted on",
                                            choices=FIT_SCHEDULES)
    predict_schedule: str = option("wsd", "schedule of the run the law predicts", choices=FIT_SCHEDULES)
    decay_fraction: float = option(0.2, "WSD: fraction of the steps spent decaying, in (0, 1)")
    decay: str = option("linear", "WSD: decay shape", choices=DECAYS)
    decay_factor: float = option(0.999, "lambda of the annealing momentum m_i = lambda m_{i-1} + (eta_{i-1} - "
                                        "eta_i)")
    smooth: int = option(51, "window (steps) of the centered moving average of the observed loss the error is "
                             "also measured against")
    seed: int = option(1337, "run.seed of every run")
    threads: int = option(2, "torch threads of every run")
    optimizer: str = option("adamw", "scale.train optimizer of every run", choices=OPTIMIZERS)

    def validate(self) -> None:
        _check_ints(self, (("steps", 2), ("smooth", 1), ("threads", 1)))
        _check_ints(self, (("warmup", 0),), optional=True)
        bad = [s for s in (*self.fit_schedules, self.predict_schedule) if s not in FIT_SCHEDULES]
        if bad or not self.fit_schedules:
            raise ValueError(f"schedule(s) {bad or '(none to fit)'} not usable (--fit-schedules, "
                             f"--predict-schedule); valid: {', '.join(FIT_SCHEDULES)}")
        if self.decay not in DECAYS:
            raise ValueError(f"--decay: unknown decay {self.decay!r}; valid: {', '.join(DECAYS)}")
        if not 0 < self.decay_fraction < 1:
            raise ValueError(f"--decay-fraction must lie in (0, 1), got {self.decay_fraction!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        _check_train_preset(self.train_preset)
        parse_assignments(self.set)


def _scaling_config(cfg: ScalingConfig, schedule: str, out_dir: Path) -> TrainConfig:
    o: dict[str, Any] = {"optim.name": cfg.optimizer, "schedule.name": schedule, "schedule.total": None,
                         "run.max_iters": cfg.steps, "run.seed": cfg.seed, "run.threads": cfg.threads,
                         "run.log_interval": 1, "run.eval_interval": 0, "run.eval_iters": 1,
                         "run.out_dir": str(out_dir)}
    if cfg.warmup is not None:
        o["schedule.warmup"] = cfg.warmup
    if cfg.min_ratio is not None:
        o["schedule.min_ratio"] = cfg.min_ratio
    if schedule == "wsd":
        o.update({"schedule.decay_fraction": cfg.decay_fraction, "schedule.decay": cfg.decay})
    return bench_config(o, train_preset=cfg.train_preset, extra=cfg.set)


def run_scaling(cfg: ScalingConfig, *, out: Path | str | None = None, runs_dir: Path | str | None = None,
                progress: bool = False, plot: bool = True) -> dict[str, Any]:
    """Train one run per schedule (same seed: same initialization and batches), fit the law on the
    ``fit_schedules`` runs and predict the ``predict_schedule`` run; errors after warmup against the raw and
    the smoothed per-step loss. The law without its annealing term (:math:`C = 0`) is fitted too, as the
    reference that shows what :math:`S_2` adds."""
    cfg.validate()
    runs_dir, tmp = _runs_dir(out, runs_dir)
    names = list(dict.fromkeys([*cfg.fit_schedules, cfg.predict_schedule]))
    curves: dict[str, dict[str, Any]] = {}
    try:
        with tqdm(total=len(names), desc="scaling", unit="run", disable=not progress, file=sys.stderr) as bar:
            for name in names:
                config = _scaling_config(cfg, name, runs_dir / f"scaling-{name}")
                summary, _ = _run_train(config)
                steps, lrs, losses = scaling_law.load_metrics(summary["metrics_path"])
                curves[name] = {"steps": steps, "lr": lrs, "loss": losses, "warmup": config.schedule.warmup,
                                "final_val_loss": summary["final_val_loss"], "train_seconds": summary["train_seconds"]}
                bar.update(1)
    finally:
        if tmp is not None:
            tmp.cleanup()
    warmup = max(curves[n]["warmup"] for n in names)
    skip = max(1, warmup)
    fit_runs = [(curves[n]["steps"], curves[n]["lr"], curves[n]["loss"]) for n in cfg.fit_schedules]
    # a few thousand points: BLAS threads only contend (much slower on a busy machine)
    with thread_limit(None, blas=1):
        law = scaling_law.fit(fit_runs, decay_factor=cfg.decay_factor, skip=skip)
        law_no_anneal = scaling_law.fit(fit_runs, decay_factor=cfg.decay_factor, skip=skip, with_annealing=False)
    errors: dict[str, Any] = {}
    for n in names:
        c = curves[n]
        c["smooth"] = centered_average(c["loss"], cfg.smooth)
        c["pred"] = law.predict(c["lr"], steps=c["steps"])
        c["pred_no_anneal"] = law_no_anneal.predict(c["lr"], steps=c["steps"])
        errors[n] = {
            "role": "predict" if n == cfg.predict_schedule and n not in cfg.fit_schedules else "fit",
            "raw": scaling_law.prediction_error(law, c["lr"], c["loss"], steps=c["steps"], skip=skip),
            "smoothed": scaling_law.prediction_error(law, c["lr"], c["smooth"], steps=c["steps"], skip=skip),
            "no_annealing_smoothed": scaling_law.prediction_error(law_no_anneal, c["lr"], c["smooth"],
                                                                  steps=c["steps"], skip=skip),
        }
    result = {
        "config": _record(cfg),
        "provenance": provenance(cfg.threads),
        "skip": skip,
        "law": law.to_dict(),
        "law_without_annealing": law_no_anneal.to_dict(),
        "errors": errors,
        "prediction": {"schedule": cfg.predict_schedule, **{k: errors[cfg.predict_schedule][k]
                                                            for k in ("raw", "smoothed", "no_annealing_smoothed")}},
        "curves": {n: {"step": c["steps"].tolist(), "lr": c["lr"].tolist(), "loss": c["loss"].tolist(),
                       "smoothed": c["smooth"].tolist(), "predicted": c["pred"].tolist(),
                       "predicted_without_annealing": c["pred_no_anneal"].tolist(),
                       "final_val_loss": c["final_val_loss"], "train_seconds": c["train_seconds"]}
                   for n, c in curves.items()},
    }
    save_json(result, out, SCALING_JSON)
    if out is not None and plot:
        plot_scaling(result, Path(out) / SCALING_PNG)
    return result


def plot_scaling(result: dict[str, Any], path: Path | str) -> None:
    """Learning rates (top) and loss (bottom): the logged per-step loss (faint), its moving average (solid)
    and the law's curve (dashed) for every run; the fitted runs and the predicted one are labelled."""
    plt = pyplot()
    fig, (ax_lr, ax) = plt.subplots(2, 1, figsize=(7.5, 6.2), sharex=True, gridspec_kw={"height_ratios": [1, 2.6]})
    lows, highs = [], []
    for k, (name, c) in enumerate(result["curves"].items()):
        role = result["errors"][name]["role"]
        color = f"C{k}"
        ax_lr.plot(c["step"], c["lr"], color=color, lw=1.2, label=f"{name} [{role}]")
        ax.plot(c["step"], c["loss"], color=color, lw=0.5, alpha=0.25)
        ax.plot(c["step"], c["smoothed"], color=color, lw=1.4, label=f"{name} observed (moving average)")
        ax.plot(c["step"], c["predicted"], color=color, lw=1.4, ls="--", label=f"{name} law ({role})")
        s = np.asarray(c["smoothed"])[result["skip"]:]
        if s.size:
            lows.append(float(s.min()))
            highs.append(float(np.percentile(s, 95)))
    if lows:
        lo, hi = min(lows), max(highs)
        ax.set_ylim(lo - 0.1 * (hi - lo + 1e-9), hi + 0.15 * (hi - lo + 1e-9))
    skip = result["skip"]
    for a in (ax_lr, ax):
        a.axvline(skip, color="k", lw=0.6, ls=":")
        a.grid(True, alpha=0.3)
    e = result["prediction"]["smoothed"]
    ax.set_title(f"{result['prediction']['schedule']} predicted: mean |err| {e['mean_abs']:.4f}, max |err| "
                 f"{e['max_abs']:.4f} (vs moving average, after step {skip})", fontsize=9)
    ax_lr.set_ylabel("learning rate")
    ax_lr.legend(fontsize=7)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7)
    law = result["law"]
    fig.suptitle(f"L = L0 + A S1^-alpha - C S2 (Tissue et al. 2024): L0={law['L0']:.3g}, A={law['A']:.3g}, "
                 f"alpha={law['alpha']:.3g}, C={law['C']:.3g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------- report section
# The report's settings, also the commands' presets. "quick" (the report's --quick) takes about a minute on
# two quiet cores: the preset's model for a few dozen steps, the target taken from AdamW's runs. "report" (the
# report's default mode) takes a few minutes. The report's "full" mode runs the commands' defaults, the
# benchmark itself (what the commands in the module docstring run).
THROUGHPUT_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"steps": 15, "warmup": 5, "rounds": 2},
    "report": {"steps": 40, "warmup": 10, "rounds": 3},
}
QUALITY_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"seeds": 1, "max_iters": 50, "warmup": 10, "eval_interval": 10, "eval_iters": 4, "target": ANCHOR},
    "report": {"seeds": 1, "max_iters": 600, "warmup": 50, "eval_interval": 25, "eval_iters": 10, "target": ANCHOR},
}
SCALING_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"steps": 60, "warmup": 10, "smooth": 11},
    "report": {"steps": 400, "warmup": 50, "smooth": 31},
}
REPORT_PRESET = {"quick": "quick", "default": "report", "full": None}
"""The report's mode -> the preset its section runs (``None``: the commands' defaults)."""
FULL_COMMANDS = ("python -m scale.bench.training throughput", "python -m scale.bench.training quality --seeds 2",
                 "python -m scale.bench.training scaling")


@register_section("training", "Training a small GPT: AdamW, Muon and Drop-Muon", order=60)
def report_section(ctx: ReportContext) -> SectionResult:
    """The report's "Training" section: throughput against a plain loop, time to target of AdamW / Muon /
    Drop-Muon, and the scaling-law prediction of a WSD run (see the module docstring). The settings follow the
    report's mode (:data:`REPORT_PRESET`): in quick mode small but real runs of the preset's model."""
    mode = ctx.config.mode if ctx.config.mode in REPORT_PRESET else "default"
    preset = REPORT_PRESET[mode]

    def settings(presets: Mapping[str, Mapping[str, Any]], **extra: Any) -> dict[str, Any]:
        return {**(presets[preset] if preset else {}), **extra}

    threads = ctx.config.threads or 1
    progress = bool(getattr(ctx.config, "progress", False))
    tp_threads = (threads,) if mode == "quick" else tuple(sorted({1, 2, threads}))
    tp_cfg = ThroughputConfig(**settings(THROUGHPUT_PRESETS, threads=tp_threads))
    q_cfg = QualityConfig(**settings(QUALITY_PRESETS, threads=threads))
    s_cfg = ScalingConfig(**settings(SCALING_PRESETS, threads=threads))
    tp = measure_throughput(tp_cfg, progress=progress)
    quality = run_quality(q_cfg, progress=progress)
    scaling = run_scaling(s_cfg, progress=progress)
    q_path, q_rel = ctx.figure(QUALITY_PNG)
    plot_quality(quality, q_path)
    s_path, s_rel = ctx.figure(SCALING_PNG)
    plot_scaling(scaling, s_path)
    ctx.cache["training"] = {"throughput": tp, "quality": quality, "scaling": scaling}

    tier_text = {
        "quick": "This is the **quick configuration** (tiny runs of the preset's model, one seed, the target "
                 "taken from AdamW's own run): it checks that the pipeline works; its numbers are not the "
                 "benchmark's.",
        "default": "This is the report's default configuration (short runs, one seed, the target taken from "
                   "AdamW's own run); the benchmark's numbers come from the full commands below.",
        "full": "This is the full benchmark configuration.",
    }[mode]
    tc = quality["train_config"]

    def rate(x: float | None) -> str:
        return "—" if x is None else f"{x:,.0f}"

    tp_rows = [[k, rate(v["median_tokens_per_s"]["scale.train"]), rate(v["median_tokens_per_s"]["plain"]),
                fmt_num(v["ratio"], 3),
                f"{fmt_num(v['ratio_per_round']['min'], 3)} – {fmt_num(v['ratio_per_round']['max'], 3)}",
                rate(v["median_clock_tokens_per_s"])]
               for k, v in tp["by_threads"].items()]
    q_rows = []
    for m in quality["config"]["methods"]:
        s = quality["summary"][m]
        r = quality["ratios"].get(m)
        t = r["time_to_target"] if r else None
        q_rows.append([
            m, f"{s['reached']}/{s['runs']}", fmt_num(s["time_to_target"]["median"], 3),
            fmt_num(s["steps_to_target"]["median"], 4), fmt_num(s["final_val_loss"]["median"], 4),
            fmt_num(s["time_per_step"]["median"] * 1e3, 3),
            "1 (anchor)" if m == ANCHOR else (fmt_num(t["median"], 3) if t and t["n"] else "—"),
            (f"{fmt_num(t['min'], 3)} – {fmt_num(t['max'], 3)}" if t and t["n"] else "—"),
        ])
    pred = scaling["prediction"]
    s_rows = []
    for name, e in scaling["errors"].items():
        s_rows.append([name, e["role"], fmt_num(e["smoothed"]["mean_abs"], 3), fmt_num(e["smoothed"]["max_abs"], 3),
                       fmt_num(e["raw"]["mean_abs"], 3), fmt_num(e["raw"]["max_abs"], 3),
                       fmt_num(e["no_annealing_smoothed"]["mean_abs"], 3)])
    law = scaling["law"]
    text = (
        f"{tier_text} Full benchmark (a quiet machine, two cores; tens of minutes): "
        + ", ".join(f"`{c}`" for c in FULL_COMMANDS) + ".\n\n"
        "**Throughput against a plain PyTorch loop.** `scale.train` and a nanoGPT-style loop on the same model "
        f"(the `{PRESET}` preset: {tc['n_layer']} layers, width {tc['n_embd']}, batch {tc['batch_size']} x "
        f"{tc['block_size']} tokens), the same batches and the same AdamW settings, interleaved in one process; "
        f"{tp_cfg.steps} timed steps after {tp_cfg.warmup} untimed ones, {tp_cfg.rounds} rounds, medians. "
        "Both clocks run from the end of one optimizer step to the end of another, so `scale.train`'s "
        "per-step work (loss read-back, metrics lines) is inside its time. Ratio 1 = no overhead; the last column "
        "is `scale.train`'s own training clock, which leaves out the writing of metrics lines.\n\n"
        + md_table(["threads", "scale.train tokens/s", "plain tokens/s", "ratio", "per-round ratio min – max",
                    "scale.train clock tokens/s"], tp_rows)
        + "\n\n**Time to a validation loss.** AlgoPerf's time to target (training clock, evaluation paused) for "
        f"AdamW, Muon (Jordan et al. 2024) and Drop-Muon (Gruntkowska et al. 2025, arXiv:2510.02239; uniform "
        f"cutoff, and shifted from shallow to deep with training progress). Target validation loss "
        f"{quality['target']:.4g} ({quality['target_source']}; the full benchmark: {TARGET:g}, what nanoGPT's "
        "CPU recipe reaches), "
        f"{tc['max_iters']} steps ({tc['schedule']} schedule, warmup {tc['warmup']}), evaluation every "
        f"{quality['config']['eval_interval']} steps on {tc['eval_iters']} fixed validation batches, "
        f"{quality['config']['seeds']} seed(s), {threads} thread(s). Ratio = time(method) / time(AdamW) per "
        f"seed (below 1: faster than AdamW; the goal is <= {GOAL_RATIO}).\n\n"
        + md_table(["method", "reached", "time to target (s)", "steps to target", "final val loss",
                    "ms per step", "time / AdamW (median)", "min – max"], q_rows)
        + f"\n\n![validation loss against wall-clock and steps]({q_rel})\n\n"
        "**Scaling law with LR annealing** (Tissue, Wang & Wang 2024, arXiv:2408.11029): "
        "L(s) = L0 + A·S1^(−α) − C·S2, fitted on the training-loss curves of the "
        + " and ".join(scaling["config"]["fit_schedules"])
        + f" runs ({s_cfg.steps} steps each, same seed), then used to predict the {pred['schedule']} run "
        f"(decay over the last {s_cfg.decay_fraction:g} of the steps) from its schedule alone. Fitted: "
        f"L0 = {fmt_num(law['L0'], 4)}, A = {fmt_num(law['A'], 4)}, α = {fmt_num(law['alpha'], 3)}, "
        f"C = {fmt_num(law['C'], 4)}. Errors after step {scaling['skip']} (the warmup), against the moving "
        f"average over {s_cfg.smooth} steps of the logged loss and against the raw per-step loss (whose batch "
        "noise the raw error mostly measures); the last column is the law without its annealing term "
        "(C = 0) fitted on the same runs.\n\n"
        + md_table(["run", "role", "mean abs err (smoothed)", "max abs err (smoothed)", "mean abs err (raw)",
                    "max abs err (raw)", "mean abs err, C = 0"], s_rows)
        + f"\n\n![scaling-law fit and prediction]({s_rel})"
    )
    return SectionResult(text, [q_rel, s_rel])


# ---------------------------------------------------------------------------------------- profile settings
@dataclass
class ProfileConfig:
    """Settings of the profile command: a short ``scale.train`` run (AdamW) and the plain loop over the same
    steps, each under ``cProfile``."""

    steps: int = option(100, "optimizer steps profiled (at least 2)")
    threads: int = option(1, "torch threads")
    top: int = option(25, "functions listed per table")
    seed: int = option(1337, "run.seed")
    train_preset: str = _train_preset_option("")
    set: tuple[str, ...] = _set_option()
    out: Path = option(OUT, "output folder of profile.json and profile.txt (created if missing)")

    def validate(self) -> None:
        _check_ints(self, (("steps", 2), ("threads", 1), ("top", 1)))
        _check_train_preset(self.train_preset)
        parse_assignments(self.set)


# ---------------------------------------------------------------------------------------- CLI
def _print_throughput(result: dict) -> None:
    for k, v in result["by_threads"].items():
        m = v["median_tokens_per_s"]
        print(f"{k} thread(s): scale.train {m['scale.train']:,.0f} tokens/s, plain {m['plain']:,.0f} tokens/s, "
              f"ratio {v['ratio']:.3f} (per round {v['ratio_per_round']['min']:.3f} – "
              f"{v['ratio_per_round']['max']:.3f})")


def _print_quality(result: dict) -> None:
    for m, s in result["summary"].items():
        line = (f"{m:<18} reached {s['reached']}/{s['runs']}, median time to target "
                f"{s['time_to_target']['median']:.1f} s, median steps {s['steps_to_target']['median']}")
        r = result["ratios"].get(m)
        if r:
            t = r["time_to_target"]
            line += f", time / {ANCHOR} median {t['median']:.3f} (min {t['min']:.3f}, max {t['max']:.3f}, n {t['n']})"
        print(line)
    print(f"target validation loss {result['target']:.4g} ({result['target_source']})")
    g = result["goal"]
    print(f"goal (a method at <= {g['ratio']} x {ANCHOR}): {'met' if g['met'] else 'not met'}")


def _print_scaling(result: dict) -> None:
    law = result["law"]
    print(f"law: L0={law['L0']:.4g} A={law['A']:.4g} alpha={law['alpha']:.4g} C={law['C']:.4g}")
    for name, e in result["errors"].items():
        print(f"{name:<9} [{e['role']}] mean/max abs err: smoothed {e['smoothed']['mean_abs']:.4f}/"
              f"{e['smoothed']['max_abs']:.4f}, raw {e['raw']['mean_abs']:.4f}/{e['raw']['max_abs']:.4f}; "
              f"without annealing term (smoothed) {e['no_annealing_smoothed']['mean_abs']:.4f}")


def _written(path: Path | None) -> int:
    print(f"results written to {path}")
    return 0


def _run_throughput(cfg: ThroughputConfig) -> int:
    result = measure_throughput(cfg, out=cfg.out, progress=cfg.progress, plot=cfg.plot)
    _print_throughput(result)
    return _written(cfg.out / THROUGHPUT_JSON)


def _run_quality(cfg: QualityConfig) -> int:
    result = run_quality(cfg, out=cfg.out, progress=cfg.progress, plot=cfg.plot)
    _print_quality(result)
    return _written(cfg.out / QUALITY_JSON)


def _run_scaling(cfg: ScalingConfig) -> int:
    result = run_scaling(cfg, out=cfg.out, progress=cfg.progress, plot=cfg.plot)
    _print_scaling(result)
    return _written(cfg.out / SCALING_JSON)


def _run_profile(cfg: ProfileConfig) -> int:
    cfg.validate()
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp, thread_limit(cfg.threads, blas=None):
        config = bench_config({"optim.name": "adamw", "run.seed": cfg.seed, "run.threads": cfg.threads,
                               "run.eval_interval": 0, "run.eval_iters": 1, "run.out_dir": tmp,
                               "schedule.total": _preset_value(cfg.train_preset, "run.max_iters")},
                              train_preset=cfg.train_preset, extra=cfg.set)
        result = profile_steps(config, cfg.steps, top=cfg.top)
    path = save_json(result, cfg.out, PROFILE_JSON)
    text = format_profile(result) + "\n\n" + "\n".join(
        f"==== {side}: {result[side]['wall_s']:.2f} s wall ====\n{result[side]['by_tottime']}\n"
        f"{result[side]['by_cumulative']}" for side in SIDES)
    (cfg.out / PROFILE_TXT).write_text(text, encoding="utf-8")
    print(text)
    return _written(path)


# ------------------------------------------------------------------------------------------ ranks
RANKS_JSON = "ranks.json"
RANKS_PRESETS: dict[str, dict[str, Any]] = {"quick": {"steps": 12, "warmup": 4}}


@dataclass
class RanksConfig(RunSettings):
    """Settings of the data-parallel study: tokens/s per world size, wrapper and optimizer (gloo on the CPU)."""

    steps: int = option(40, "optimizer steps per run; tokens/s is the median over the logged steps after warmup")
    warmup: int = option(5, "steps left out of the rate at the start of every run")
    worlds: tuple[int, ...] = option((1, 2), "numbers of ranks (1 = one process; more: torchrun, gloo, one "
                                             "torch thread per rank)")
    parallel: tuple[str, ...] = option(("ddp", "fsdp"), "data-parallel wrappers for world sizes above 1",
                                       choices=("ddp", "fsdp"))
    optimizers: tuple[str, ...] = option(("adamw", "muon"), "optimizers", choices=("adamw", "muon", "drop-muon"))
    seed: int = option(1337, "run.seed of every run")

    def validate(self) -> None:
        _check_ints(self, (("steps", 2), ("warmup", 0)))
        if self.warmup >= self.steps:
            raise ValueError(f"--warmup ({self.warmup}) must be below --steps ({self.steps})")
        if not self.worlds or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.worlds):
            raise ValueError(f"--worlds must be positive integers, got {list(self.worlds)!r}")
        _check_train_preset(self.train_preset)
        parse_assignments(self.set)


def _counter(obj: Any, key: str) -> int | None:
    """The first integer stored under ``key`` anywhere in a nested optimizer state dict."""
    if isinstance(obj, Mapping):
        if isinstance(obj.get(key), int):
            return obj[key]
        items = obj.values()
    elif isinstance(obj, (list, tuple)):
        items = obj
    else:
        return None
    for v in items:
        found = _counter(v, key)
        if found is not None:
            return found
    return None


def _ranks_run(cfg: RanksConfig, world: int, parallel: str, optimizer: str, out_dir: Path) -> dict[str, Any]:
    config = bench_config({
        "optim.name": optimizer, "run.seed": cfg.seed, "run.threads": 1, "run.max_iters": cfg.steps,
        "schedule.total": max(cfg.steps, _preset_value(cfg.train_preset, "schedule.warmup") + 1),
        "run.log_interval": 1, "run.eval_interval": 0, "run.eval_iters": 1, "run.parallel": parallel,
        "optim.ns_dtype": "float32", "run.out_dir": str(out_dir), "run.progress": False, "run.plot": False,
        "run.verbose": False,
    }, train_preset=cfg.train_preset, extra=cfg.set)
    if world == 1:
        _run_train(config)
    else:
        flat = {f"{section}.{k}": v for section, values in config_to_dict(config).items() for k, v in values.items()}
        argv = [f"--{k}={str(v).lower() if isinstance(v, bool) else ('none' if v is None else v)}"
                for k, v in flat.items() if not isinstance(v, (list, tuple, dict))]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}",
               "-m", "scale.train", *argv]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun with {world} ranks ({parallel}, {optimizer}) failed: {proc.stderr[-2000:]}")
    records = read_metrics(out_dir / "metrics.jsonl")
    rates = [r["tokens_per_s"] for r in records
             if r.get("kind") == "train" and r["step"] > cfg.warmup and r.get("tokens_per_s")]
    ckpt = load_checkpoint(latest_checkpoint(out_dir))
    return {"world": world, "parallel": parallel if world > 1 else "single", "optimizer": optimizer,
            "tokens_per_s": statistics.median(rates),
            "orthogonalized_rank0": _counter(ckpt.get("optim"), "orthogonalized_here")}


def measure_ranks(cfg: RanksConfig, *, out: Path | str | None = None, progress: bool = False) -> dict[str, Any]:
    """Tokens/s of ``scale.train`` per (world size, wrapper, optimizer), and for the Muon family the share of the
    matrices rank 0 orthogonalized (its ``orthogonalized_here`` over the one-process count). On a 2-core machine
    this measures correctness and overhead, not speed-up: two ranks share the cores the one process had."""
    cfg.validate()
    combos = [(w, p, o) for w in cfg.worlds for p in (cfg.parallel if w > 1 else ("ddp",)) for o in cfg.optimizers]
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_ranks_") as tmp, \
            tqdm(total=len(combos), desc="ranks", unit="run", disable=not progress, file=sys.stderr) as bar:
        for i, (w, p, o) in enumerate(combos):
            runs.append(_ranks_run(cfg, w, p, o, Path(tmp) / f"run{i}"))
            bar.update(1)
    single = {r["optimizer"]: r for r in runs if r["world"] == 1}
    for r in runs:
        base = single.get(r["optimizer"])
        r["tokens_per_s_vs_one_process"] = r["tokens_per_s"] / base["tokens_per_s"] if base else None
        whole = base.get("orthogonalized_rank0") if base else None
        own = r.get("orthogonalized_rank0")
        r["orthogonalization_share_rank0"] = own / whole if own is not None and whole else None
    result = {"config": _record(cfg), "provenance": provenance(1), "runs": runs,
              "caveat": "a 2-core CPU with gloo: correctness and overhead, not speed-up"}
    save_json(result, out, RANKS_JSON)
    return result


def _run_ranks(cfg: RanksConfig) -> int:
    result = measure_ranks(cfg, out=cfg.out, progress=cfg.progress)
    rows = [[r["world"], r["parallel"], r["optimizer"], fmt_num(r["tokens_per_s"]),
             fmt_num(r["tokens_per_s_vs_one_process"]), fmt_num(r["orthogonalization_share_rank0"])]
            for r in result["runs"]]
    print(md_table(["ranks", "wrapper", "optimizer", "tokens/s", "vs one process", "rank 0's share of "
                    "orthogonalizations"], rows))
    print(f"({result['caveat']})")
    return _written(Path(cfg.out) / RANKS_JSON)


_PROG = "python -m scale.bench.training"
_SETTINGS_NOTE = (
    "Every run starts from the scale.train preset --train-preset with the --set settings on top; --preset picks "
    "a named set of this command's own settings (quick: the report's quick mode, report: its default mode)."
)
GROUP = CommandGroup(
    prog=_PROG,
    description=(
        "Benchmarks of python -m scale.train on tiny-shakespeare (character level), the shakespeare-char-cpu "
        "preset (nanoGPT's CPU recipe: 4 layers, 4 heads, width 128, context 64, batch 12) unless "
        "--train-preset says otherwise. Commands: 'throughput' (tokens/s of scale.train against a plain PyTorch "
        "loop on the same model, batches and AdamW, interleaved in one process, at 1 and 2 threads), 'quality' "
        f"(training wall-clock, evaluation paused, to validation loss {TARGET} for AdamW, Muon and Drop-Muon, "
        "ratios to AdamW paired by seed), 'scaling' (fit the LR-annealing scaling law of Tissue et al. 2024, "
        "arXiv:2408.11029, on a constant and a cosine run and predict a WSD run), 'ranks' (tokens/s per world size, DDP/FSDP2 and optimizer, with Muon's orthogonalization share per rank), 'profile' (cProfile of "
        f"scale.train and of the plain loop). Each writes JSON (and a PNG) under --out. Run '{_PROG} COMMAND "
        "--help' for its options."
    ),
    commands={
        "throughput": Command(
            prog=f"{_PROG} throughput", config=ThroughputConfig, run=_run_throughput, presets=THROUGHPUT_PRESETS,
            help="tokens/s of scale.train against a plain loop",
            description=(
                "Tokens/s of scale.train against a plain PyTorch loop (same GPT, same batches from the same sampler, "
                "torch.optim.AdamW with the same settings, no logging), interleaved in one process; medians over "
                "rounds and the ratio scale.train / plain per thread count. Writes OUT/throughput.json and "
                "OUT/throughput.png. " + _SETTINGS_NOTE)),
        "quality": Command(
            prog=f"{_PROG} quality", config=QualityConfig, run=_run_quality, presets=QUALITY_PRESETS,
            help="time to a validation loss, AdamW vs Muon vs Drop-Muon",
            description=(
                "Training wall-clock (evaluation paused) to a validation loss for each method on each seed, the "
                "ratios time(method) / time(adamw) paired by seed with their spread, and the validation-loss curves "
                "against wall-clock and steps (AlgoPerf's time to target, Dahl et al. 2023, arXiv:2306.07179; "
                "Muon: Jordan et al. 2024; Drop-Muon: Gruntkowska et al. 2025, arXiv:2510.02239). Writes "
                "OUT/quality.json, OUT/quality_val_loss.png and every run's metrics under OUT/runs/. "
                + _SETTINGS_NOTE)),
        "scaling": Command(
            prog=f"{_PROG} scaling", config=ScalingConfig, run=_run_scaling, presets=SCALING_PRESETS,
            help="fit the LR-annealing scaling law, predict WSD",
            description=(
                "Train a constant-LR and a cosine run (and a WSD run) of the preset's model with the same seed, fit "
                "L(s) = L0 + A*S1^-alpha - C*S2 (Tissue, Wang & Wang 2024, arXiv:2408.11029) on the first two and "
                "predict the WSD curve; mean/max absolute error after warmup. Writes OUT/scaling.json and "
                "OUT/scaling_law.png. " + _SETTINGS_NOTE)),
        "ranks": Command(
            prog=f"{_PROG} ranks", config=RanksConfig, run=_run_ranks, presets=RANKS_PRESETS,
            help="tokens/s per world size, DDP/FSDP2 and optimizer; Muon's orthogonalization share",
            description=(
                "Tokens/s of scale.train on 1 process and on torchrun with gloo ranks, under DDP and FSDP2, for "
                "AdamW and Muon (median over the logged steps after warmup), with the ratio to one process and "
                "rank 0's share of the Muon orthogonalizations. On a 2-core CPU this measures correctness and "
                "overhead, not speed-up. Writes OUT/ranks.json. " + _SETTINGS_NOTE)),
        "profile": Command(
            prog=f"{_PROG} profile", config=ProfileConfig, run=_run_profile,
            help="cProfile of scale.train and of the plain loop",
            description=(
                "cProfile of a short scale.train run (AdamW, setup included) and of the plain loop over the same "
                "steps: the functions with the most own and cumulative time. Writes OUT/profile.json and "
                "OUT/profile.txt. Every run starts from the scale.train preset --train-preset with the --set "
                "settings on top.")),
    },
)
main = GROUP.main

if __name__ == "__main__":
    raise SystemExit(main())
