r"""``python -m scale.train``: a nanoGPT-style trainer for :class:`scale.model.GPT` with optlib's optimizers.

Usage::

    python -m scale.train --preset shakespeare-char-cpu                     # minutes on a laptop CPU
    python -m scale.train --config scale/configs/shakespeare-char-muon-cpu.toml --optim.lr 3e-3  # TOML, then flags
    python -m scale.train --help                                            # every option, with defaults
    torchrun --standalone --nproc_per_node=2 -m scale.train --preset ...    # data parallel (gloo on CPU)

From Python, :func:`train` takes a :class:`scale.config.TrainConfig` and returns a summary dict; :func:`main`
is the command line, :data:`COMMAND` (a :class:`scale.cli.Command`) its description: every field of
:class:`~scale.config.TrainConfig` is an option ``--section.name VALUE``, with ``--preset``, ``--config FILE.toml``
and ``--print-config``. Exit status: 0, 2 for a usage or configuration error (an ``error:`` line), 3 for a
non-finite loss.

Optimizers (``optim.name``):

- ``adamw``: ``torch.optim.AdamW`` (Loshchilov & Hutter, ICLR 2019; torch's fused kernel, on CPU as well as
  CUDA), weight decay on parameters with two or more dimensions only (embeddings and matrices; biases and norm
  gains get none), as nanoGPT does.
- ``muon``: :class:`optlib.optim.MuonWithAdamW` over :func:`optlib.optim.muon_param_groups`: the hidden
  matrices of the blocks take Muon steps (Jordan et al. 2024), the token/position embeddings, the head, norms
  and biases take AdamW steps (the AdamW part split into decayed 2-D and undecayed 1-D groups as above).
- ``drop-muon``: :class:`optlib.optim.DropMuon` (Gruntkowska, Maziane, Qu & Richtárik 2025, arXiv:2510.02239)
  over :func:`optlib.optim.layer_param_groups` of ``model.blocks``, ``torch.optim.AdamW`` on every other
  parameter. Each step draws a cutoff :math:`s` (``opt.sample_cutoff(progress)``, progress = step / max_iters),
  runs ``model(x, y, cutoff=s)`` so the embeddings and ``blocks[:s]`` run without autograd, and the backward
  pass stops at block :math:`s`: only the blocks :math:`\ge s` (and the head) get gradients and updates;
  AdamW skips the frozen parameters since their ``.grad`` is ``None``.
- ``sgd``: ``torch.optim.SGD``, plain gradient descent at ``optim.lr`` (L2 weight decay on the 2-D parameters),
  the method whose stability edge :math:`h\lambda_{\max} = 2` the drift options below are about.

Drift options. ``schedule.name = "dal"`` sets the learning rate every step by the drift-adjusted learning rate
(:class:`optlib.optim.DriftAdjustedLR`; Rosca et al., TMLR 2023): :math:`h = \min(2(\lVert g\rVert/\lVert
Hg\rVert)^p, h_{\max})` for the groups at ``optim.lr`` (the others keep their ratio to it), times the warmup
ramp, with :math:`Hg` the finite difference of two gradients on the step's batch (one more forward and backward
pass); its state goes into the checkpoint, so a resumed run continues exactly. One process, one optimizer
(not ``drop-muon``). ``run.lambda_max_every = K`` logs the sharpness :math:`\lambda_{\max}` of the training
loss on a held batch of the training split (:func:`sharpness`: Lanczos over Hessian-vector products, in eval
mode) every K steps, with :math:`h\lambda_{\max}/2` (the edge of stability is 1 for gradient descent), as
``sharpness`` lines of ``metrics.jsonl`` and a panel of the loss plot; the training clock is paused meanwhile.

Every param group's learning rate is its peak value times the schedule's multiplier
(``torch.optim.lr_scheduler.LambdaLR`` over :func:`scale.schedules.make_schedule`); with ``wsd-s`` a
checkpoint (and an evaluation) is written at every decay end. The schedule's horizon is ``schedule.total``, by
default the ``run.max_iters`` of the run that started it; a resumed run keeps the horizon of its checkpoint, so
resuming with a larger ``run.max_iters`` continues at the final learning rate rather than raising it again
(``--schedule.total`` on resume sets a new horizon). A warmup longer than the horizon allows is shortened to a
tenth of the horizon with a warning, so that a preset runs with a short ``--run.max_iters``.

Distributed: when ``WORLD_SIZE > 1`` (set by ``torchrun``) the process group is initialised (gloo on CPU,
nccl on CUDA) and the model is wrapped in ``DistributedDataParallel`` (``run.parallel = "ddp"``) or sharded
with FSDP2's ``fully_shard`` per block and at the root (``"fsdp"``; AdamW, Muon and Drop-Muon: each whole
Muon matrix is gathered on an owner rank, orthogonalized there and scattered back,
:func:`optlib.optim.muon.orthogonalize_sharded`; checkpoints are sharded DCP folders that resume on any number
of ranks, :mod:`scale.checkpoint`; ``run.param_dtype``/``run.reduce_dtype`` set FSDP2's mixed-precision policy). The sampler hands each rank a contiguous slice of the same global batch, so the loss curve
equals the one-process curve up to floating-point reordering. Muon-family optimizers get
``distributed=True`` (each rank orthogonalizes its share of the matrices, then all-gather). Drop-Muon's
cutoff sampler is seeded identically on every rank, so all ranks draw the same cutoff; the parameters below
the cutoff are then unused in that step and DDP runs with ``find_unused_parameters=True``, which leaves their
``.grad`` at ``None`` (a parameter unused on every rank is not written by the reducer), so the frozen blocks
stay frozen and Drop-Muon's ``frozen_with_grad`` counter stays 0. Why this and not the frozen part outside
DDP: a DDP wrapper is tied to a fixed parameter set, so "outside DDP" means dropping DDP for a manual
all-reduce of the existing gradients after the backward pass. On 2 gloo ranks that saved some communication
at uniform cutoffs but gave up DDP's overlap of the all-reduce with the backward pass, while
``find_unused_parameters=True`` cost nothing measurable at cutoff 0 against plain DDP (its extra graph
traversal is short for a few blocks). Rank 0 logs and saves.

``run.out_dir`` is created with its missing parents; a path that is a file, lies under a file or is not
writable is refused before anything is loaded.

Checkpoints and exact resume: see :mod:`scale.checkpoint`. Metrics: see :mod:`scale.metrics`. Evaluation
runs on fixed validation windows (:func:`scale.data.eval_windows`) every ``run.eval_interval`` steps with the
training clock paused (AlgoPerf's convention). A non-finite training loss stops the run with the step in the
error (:class:`NonFiniteLossError`), before any update or checkpoint of that step, so the last good checkpoint
stays the latest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import math
import os
import random
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import optlib
from optlib.curvature import CustomLoss, Hessian, lanczos
from optlib.optim import DriftAdjustedLR, DropMuon, MuonWithAdamW, layer_param_groups, muon_param_groups
from optlib.optim.progressive import epoch_shift, linear_shift

from .checkpoint import (
    BEST_NAME,
    FORMAT,
    CheckpointError,
    capture_rng,
    checkpoint_path,
    find_checkpoint,
    is_sharded,
    list_checkpoints,
    load_checkpoint,
    load_sharded,
    remove_checkpoint,
    restore_rng,
    save_atomic,
    save_sharded,
    shard_full_optimizer_state,
)
from .cli import Command
from .config import (
    CUTOFF_SAMPLERS,
    OPTIMIZERS,
    PRESETS,
    TrainConfig,
    config_to_dict,
    config_to_toml,
    diff_configs,
    upgrade_config_dict,
)
from .data import BatchSampler, eval_windows, load_corpus
from .metrics import MetricsWriter, plot_loss_curve, read_metrics, truncate_after
from .model import GPT
from .sample import generate
from .schedules import LRSchedule, make_schedule

__all__ = [
    "COMMAND",
    "CheckpointError",
    "DistContext",
    "NonFiniteLossError",
    "build_optimizers",
    "build_schedule",
    "check_out_dir",
    "fit_schedule",
    "evaluate",
    "main",
    "schedule_horizon",
    "setup_distributed",
    "sharpness",
    "train",
]

METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "loss.png"
TENSORBOARD_DIR = "tensorboard"  # run.tensorboard: the event files, beside metrics.jsonl
NS_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "none": None}
FSDP_OPTIMIZERS = ("adamw", "muon", "drop-muon")  # tested on FSDP2's DTensor parameters
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class NonFiniteLossError(RuntimeError):
    """The training loss (or the gradient norm) became NaN or infinite; ``step`` is the update that was being
    computed, ``checkpoint`` the last one written (or None)."""

    def __init__(self, message: str, step: int, value: float, checkpoint: str | None) -> None:
        super().__init__(message)
        self.step = step
        self.value = value
        self.checkpoint = checkpoint


# ------------------------------------------------------------------------------------------ distributed
@dataclass
class DistContext:
    """Where this process runs: rank, world size, device, and whether it initialised the process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def _resolve_device(spec: str, local_rank: int, world_size: int) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ValueError(f"run.device: invalid device {spec!r} (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"run.device={spec!r} but CUDA is not available; use run.device=cpu")
        if world_size > 1:
            device = torch.device("cuda", local_rank)
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    elif device.type != "cpu":
        raise ValueError(f"run.device: unsupported device type {device.type!r} (use auto, cpu, cuda or cuda:N)")
    return device


def setup_distributed(config: TrainConfig) -> DistContext:
    """Read torchrun's environment; initialise the default process group when ``WORLD_SIZE > 1``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=_resolve_device(config.run.device, 0, 1))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    device = _resolve_device(config.run.device, local_rank, world)
    owns = False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # every collective fails after run.dist_timeout seconds instead of hanging when a rank has died
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=config.run.dist_timeout))
        owns = True
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                       device=device, owns_group=owns)


# ------------------------------------------------------------------------------------------ validation
def _check_config(config: TrainConfig, ctx: DistContext) -> None:
    """Errors the consumers (model, data, schedules, optimizers) would not phrase in terms of the config."""
    r, d, o = config.run, config.data, config.optim

    def positive(key: str, v, allow_zero: bool = False) -> None:
        lo = 0 if allow_zero else 1
        if v < lo:
            raise ValueError(f"{key} must be >= {lo}, got {v}")

    positive("run.max_iters", r.max_iters)
    positive("run.log_interval", r.log_interval)
    positive("run.eval_iters", r.eval_iters)
    positive("run.eval_interval", r.eval_interval, allow_zero=True)
    positive("run.ckpt_interval", r.ckpt_interval, allow_zero=True)
    positive("run.keep_checkpoints", r.keep_checkpoints, allow_zero=True)
    positive("run.threads", r.threads, allow_zero=True)
    positive("data.batch_size", d.batch_size)
    positive("schedule.warmup", config.schedule.warmup, allow_zero=True)
    if d.batch_size % ctx.world_size:
        raise ValueError(f"data.batch_size={d.batch_size} (global rows) is not divisible by the world size "
                         f"{ctx.world_size}")
    for key in ("lr", "muon_lr"):
        v = getattr(o, key)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"optim.{key} must be a finite number > 0, got {v!r}")
    for key in ("weight_decay", "muon_weight_decay", "grad_clip", "eps"):
        v = getattr(o, key)
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"optim.{key} must be a finite number >= 0, got {v!r}")
    for key in ("beta1", "beta2", "muon_momentum"):
        v = getattr(o, key)
        if not 0 <= v < 1:
            raise ValueError(f"optim.{key} must lie in [0, 1), got {v!r}")
    positive("run.lambda_max_every", r.lambda_max_every, allow_zero=True)
    positive("run.grad_accum", r.grad_accum)
    positive("run.sample_tokens", r.sample_tokens, allow_zero=True)
    local = d.batch_size // ctx.world_size
    if local % r.grad_accum:
        raise ValueError(f"run.grad_accum={r.grad_accum} does not divide the {local} rows of data.batch_size="
                         f"{d.batch_size} that each of the {ctx.world_size} rank(s) takes per step; choose a "
                         "divisor, or a batch size that is a multiple of grad_accum x world size")
    if r.grad_accum > 1 and config.schedule.name == "dal":
        raise ValueError("schedule.name='dal' measures curvature on the step's whole batch in one pass; use "
                         "run.grad_accum=1 with it")
    if r.tensorboard:
        try:
            import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
        except ImportError:
            raise ValueError("run.tensorboard=true needs the tensorboard package (pip install tensorboard, or "
                             "the project's [tensorboard] extra); metrics.jsonl is written either way") from None
    positive("run.lambda_max_iters", r.lambda_max_iters)
    s = config.schedule
    if s.name == "dal":
        if not (math.isfinite(s.dal_power) and s.dal_power >= 0):
            raise ValueError(f"schedule.dal_power must be a finite number >= 0, got {s.dal_power!r}")
        if not (math.isfinite(s.dal_max_lr) and s.dal_max_lr > 0):
            raise ValueError(f"schedule.dal_max_lr must be a finite number > 0, got {s.dal_max_lr!r}")
        if o.name == "drop-muon":
            raise ValueError("schedule.name='dal' needs one optimizer over every parameter; optim.name='drop-muon' "
                             "steps two (and truncates the backward pass): use adamw, muon or sgd")
        if ctx.distributed:
            raise ValueError("schedule.name='dal' runs in one process (its extra gradient is not all-reduced); "
                             "run without torchrun or use another schedule")
    if ctx.distributed and r.lambda_max_every > 0 and r.parallel == "fsdp":
        raise ValueError("run.lambda_max_every needs whole parameters, which run.parallel='fsdp' shards; use "
                         "run.parallel='ddp' or run.lambda_max_every=0")
    if ctx.distributed and r.parallel == "fsdp" and o.name not in FSDP_OPTIMIZERS:
        raise ValueError(f"run.parallel='fsdp' supports optim.name in {', '.join(FSDP_OPTIMIZERS)}; {o.name!r} has not "
                         "been tested on FSDP2's sharded parameters: use run.parallel='ddp'")
    if (r.param_dtype != "float32" or r.reduce_dtype != "float32") and not (ctx.distributed and r.parallel == "fsdp"):
        raise ValueError("run.param_dtype / run.reduce_dtype set FSDP2's mixed-precision policy and apply to "
                         "run.parallel='fsdp' under torchrun only; for one process or DDP use run.dtype=bfloat16 "
                         "(autocast)")
    if o.name in ("muon", "drop-muon") and o.orthogonalizer == "triton" and ctx.device.type != "cuda":
        raise ValueError(f"optim.orthogonalizer='triton' runs the Triton Newton-Schulz kernel on CUDA only; this "
                         f"run is on {ctx.device.type} (the Triton interpreter is for tests, not training): use "
                         "optim.orthogonalizer='newton-schulz' (the same iteration in PyTorch) or 'svd'")


# ------------------------------------------------------------------------------------------ optimizers
def _adamw_groups(named: Sequence[tuple[str, nn.Parameter]], *, lr: float, weight_decay: float,
                  **extra) -> list[dict]:
    """nanoGPT's split: parameters with ``ndim >= 2`` decayed, the others not; empty groups left out."""
    decay = [(n, p) for n, p in named if p.ndim >= 2]
    no_decay = [(n, p) for n, p in named if p.ndim < 2]
    groups = []
    for items, wd in ((decay, weight_decay), (no_decay, 0.0)):
        if items:
            groups.append(dict(params=[p for _, p in items], param_names=[n for n, _ in items], lr=lr,
                               weight_decay=wd, **extra))
    return groups


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _cutoff_distribution(config: TrainConfig):
    n = config.model.n_layer
    kind = config.optim.cutoff_sampler
    if kind == "uniform":
        return "uniform"
    if kind == "epoch-shift":
        return epoch_shift(n, config.optim.shift_alpha)
    if kind == "linear-shift":
        return linear_shift(n)
    raise ValueError(f"optim.cutoff_sampler: unknown sampler {kind!r}; valid: {', '.join(CUTOFF_SAMPLERS)}")


def build_optimizers(model: nn.Module, config: TrainConfig, *, world_size: int = 1,
                     local_batch_size: int | None = None) -> tuple[list[torch.optim.Optimizer], DropMuon | None]:
    """The optimizers of ``config.optim`` for ``model`` (a :class:`scale.model.GPT`, possibly FSDP-sharded).

    Returns ``(optimizers, drop_muon)``: every optimizer steps each iteration; ``drop_muon`` is the
    :class:`optlib.optim.DropMuon` among them (whose ``sample_cutoff`` gives the step's cutoff) or ``None``.
    """
    o = config.optim
    betas = (o.beta1, o.beta2)
    params = list(model.parameters())
    # torch's fused AdamW kernel on CUDA and on CPU (on the CPU preset it takes about a quarter of the
    # time of the default per-parameter loop); not on FSDP's DTensor parameters, where the foreach path is
    # the tested one
    fused_ok = params[0].device.type in ("cuda", "cpu") and not any(hasattr(p, "full_tensor") for p in params)
    adamw_kw: dict[str, Any] = dict(betas=betas, eps=o.eps)
    if o.name == "adamw":
        groups = _adamw_groups(list(model.named_parameters()), lr=o.lr, weight_decay=o.weight_decay)
        for g in groups:
            g.pop("param_names")
        return [torch.optim.AdamW(groups, lr=o.lr, fused=fused_ok or None, **adamw_kw)], None

    if o.name == "sgd":
        groups = _adamw_groups(list(model.named_parameters()), lr=o.lr, weight_decay=o.weight_decay)
        for g in groups:
            g.pop("param_names")
        return [torch.optim.SGD(groups, lr=o.lr)], None

    muon_kw: dict[str, Any] = dict(lr=o.muon_lr, momentum=o.muon_momentum, nesterov=o.muon_nesterov,
                                   weight_decay=o.muon_weight_decay, adjust_lr=o.muon_adjust_lr,
                                   ns_steps=o.ns_steps, ns_dtype=NS_DTYPES[o.ns_dtype],
                                   orthogonalizer=o.orthogonalizer)
    if o.name == "muon":
        routed = muon_param_groups(model, muon_lr=o.muon_lr, adamw_lr=o.lr, muon_weight_decay=o.muon_weight_decay,
                                   adamw_weight_decay=o.weight_decay, adamw_betas=betas, adamw_eps=o.eps)
        groups = []
        for g in routed:
            if g["use_muon"]:
                groups.append(g)
            else:
                named = list(zip(g["param_names"], g["params"]))
                groups += _adamw_groups(named, lr=o.lr, weight_decay=o.weight_decay, use_muon=False,
                                        betas=betas, eps=o.eps)
        if world_size > 1 and _accepts(MuonWithAdamW.__init__, "distributed"):
            muon_kw["distributed"] = True
        opt = MuonWithAdamW(groups, adamw_lr=o.lr, adamw_betas=betas, adamw_eps=o.eps,
                            adamw_weight_decay=o.weight_decay, **muon_kw)
        return [opt], None

    if o.name == "drop-muon":
        blocks = model.blocks
        n_layer = len(blocks)
        muon_groups, _ = layer_param_groups(blocks)
        in_drop_muon = {id(p) for g in muon_groups for p in g["params"]}
        rest = [(n, p) for n, p in model.named_parameters() if p.requires_grad and id(p) not in in_drop_muon]
        costs = model.block_costs(local_batch_size) if local_batch_size and hasattr(model, "block_costs") else None
        if world_size > 1 and _accepts(DropMuon.__init__, "distributed"):
            muon_kw["distributed"] = True
        dm = DropMuon(muon_groups, sampler=_cutoff_distribution(config), num_layers=n_layer,
                      seed=config.run.seed, costs=costs, **muon_kw)
        opts: list[torch.optim.Optimizer] = [dm]
        adam_groups = _adamw_groups(rest, lr=o.lr, weight_decay=o.weight_decay)
        for g in adam_groups:
            g.pop("param_names")
        if adam_groups:
            opts.append(torch.optim.AdamW(adam_groups, lr=o.lr, fused=fused_ok or None, **adamw_kw))
        return opts, dm
    raise ValueError(f"optim.name: unknown optimizer {o.name!r}; valid: {', '.join(OPTIMIZERS)}")


def schedule_horizon(config: TrainConfig) -> int:
    """The steps the schedule of ``config`` spans: ``schedule.total``, else ``run.max_iters``."""
    return config.schedule.total if config.schedule.total is not None else config.run.max_iters


def _make_schedule(config: TrainConfig, total: int, warmup: int) -> LRSchedule:
    s = config.schedule
    kw: dict[str, Any] = {"warmup": warmup}
    if s.name == "dal":  # the step-indexed part of DAL is its warmup; the trainer sets the rest each step
        return make_schedule("constant", **kw)
    if s.name != "constant":
        kw.update(total=total, min_ratio=s.min_ratio)
    if s.name in ("wsd", "wsd-s"):
        kw.update(decay_fraction=s.decay_fraction, decay=s.decay, half_life=s.half_life)
    if s.name == "wsd-s":
        kw.update(cycle=s.cycle if s.cycle > 0 else max(1, total // 4), rewarmup=s.rewarmup)
    try:
        return make_schedule(s.name, **kw)
    except ValueError as exc:
        raise ValueError(f"schedule: {exc}") from exc


def fit_schedule(config: TrainConfig, total: int | None = None) -> tuple[LRSchedule, str | None]:
    """The schedule of ``config.schedule`` over ``total`` steps (default :func:`schedule_horizon`) and a warning.

    A ``schedule.warmup`` that does not fit the horizon (cosine: warmup >= total; wsd/wsd-s: warmup running into
    the first decay) is shortened to a tenth of the horizon, and the warning says so; ``None`` when the
    schedule is built as configured. Other inconsistencies raise ``ValueError`` naming the ``schedule`` field.
    """
    s = config.schedule
    total = schedule_horizon(config) if total is None else total
    try:
        return _make_schedule(config, total, s.warmup), None
    except ValueError as exc:
        short = total // 10
        if short >= s.warmup:
            raise  # not the warmup's fault
        try:
            schedule = _make_schedule(config, total, short)
        except ValueError:
            raise exc from None
        return schedule, (f"schedule.warmup={s.warmup} does not fit a {s.name} schedule of {total} steps "
                          f"({str(exc).removeprefix('schedule: ')}); using a warmup of {short} steps (a tenth of "
                          "the schedule) instead. Set --schedule.warmup to choose it.")


def build_schedule(config: TrainConfig, total: int | None = None) -> LRSchedule:
    """The :class:`scale.schedules.LRSchedule` of ``config.schedule`` over ``total`` steps (default
    ``schedule.total``, else ``run.max_iters``), with a too-long warmup shortened as :func:`fit_schedule` says."""
    return fit_schedule(config, total)[0]


# ------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate(model: nn.Module, windows: Sequence[tuple[torch.Tensor, torch.Tensor]], device: torch.device,
             autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> float:
    """Mean cross-entropy (nats per token) of ``model`` over the fixed ``windows`` (eval mode, no autograd).

    The loss is the model's ``loss_parts["ce"]`` (the z-loss term is a training regularizer, not part of the
    validation metric). The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for x, y in windows:
            with autocast():
                model(x.to(device), y.to(device))
            total += float(model.loss_parts["ce"])
    finally:
        model.train(was_training)
    return total / len(windows)


def sharpness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 20, *, seed: int = 0) -> float:
    r""":math:`\lambda_{\max}` of :math:`\nabla^2_\theta \mathcal{L}(\theta; x, y)`, the model's training objective
    (cross-entropy plus any z-loss) on one batch, by ``steps`` Lanczos iterations
    (:func:`optlib.curvature.lanczos`) over forward-over-reverse Hessian-vector products
    (:class:`optlib.curvature.Hessian`) in eval mode (no dropout; norms' running statistics untouched), with
    attention on PyTorch's math kernel, which has the second derivatives the fused kernels lack. The largest Ritz
    value converges to :math:`\lambda_{\max}` from below. The model's train/eval mode is restored afterwards;
    parameters, gradients and random generators are not touched."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    stacked = torch.stack([x, y], dim=1)  # one tensor per batch, as the operator takes its data

    def objective(p, xy):
        return torch.func.functional_call(model, p, (xy[:, 0], xy[:, 1]))[1]

    identity = CustomLoss(lambda value, _: value, name="training objective")
    was_training = model.training
    model.eval()
    try:
        with sdpa_kernel(SDPBackend.MATH):
            op = Hessian(objective, identity, params, [(stacked, torch.zeros(len(x)))])
            return float(lanczos(op, steps, seed=seed).largest(1))
    finally:
        model.train(was_training)


# ------------------------------------------------------------------------------------------ training
def _rank_seed(seed: int, rank: int) -> int:
    return seed + 1_000_003 * rank


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def check_out_dir(out_dir: str | Path) -> Path:
    """``out_dir`` as a Path if it is, or can be created as, a writable folder; ``ValueError`` saying why not.

    Nothing is created here (the trainer creates the folder and its missing parents once the configuration has
    been checked); a path that is a file, lies under a file, or whose nearest existing folder this process may
    not write into is refused.
    """
    path = Path(out_dir)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"run.out_dir {str(path)!r} is a file, not a folder; pass a folder with --run.out_dir "
                             "(a missing folder is created)")
        existing = path
    else:
        existing = next((a for a in path.parents if a.exists()), Path("."))
        if not existing.is_dir():
            raise ValueError(f"run.out_dir {str(path)!r} cannot be created because {str(existing)!r} is a file, not "
                             "a folder; choose another --run.out_dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "it is" if existing == path else f"its nearest existing folder {str(existing)!r} is"
        raise ValueError(f"run.out_dir {str(path)!r} cannot be written: {where} not writable by this process; "
                         "choose another --run.out_dir or change the folder's permissions")
    return path


def _make_out_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"run.out_dir {str(path)!r} cannot be created ({exc.strerror or type(exc).__name__}); "
                         "choose another --run.out_dir") from exc


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name (some messages are empty)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _resolve_vocab(config: TrainConfig, corpus_vocab: int) -> TrainConfig:
    v = config.model.vocab_size
    if v == 0:
        v = corpus_vocab
    elif v < corpus_vocab:
        raise ValueError(f"model.vocab_size={v} is smaller than the corpus vocabulary ({corpus_vocab}); "
                         "use 0 (the corpus vocabulary) or a larger value")
    return dataclasses.replace(config, model=dataclasses.replace(config.model, vocab_size=v))


def init_weights(model: nn.Module, config: TrainConfig) -> Path:
    """Load the weights of the checkpoint ``config.run.init_from`` (a file, or a run folder's latest checkpoint)
    into ``model``, for fine-tuning; return the file. Only the weights are read: the optimizer state, the
    schedule, the step count and the data order of the new run start fresh. The checkpoint's model section must
    equal this run's (vocabulary included, so the corpus must tokenize alike); otherwise a ``ValueError``
    lists the differences."""
    path = find_checkpoint(config.run.init_from)
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        raise ValueError(f"run.init_from={str(path)!r}: {getattr(exc, 'problem', exc)}") from None
    saved = {"model": upgrade_config_dict(ckpt["config"]).get("model", {})}
    diffs = diff_configs(saved, {"model": config_to_dict(config)["model"]}, ignore=frozenset())
    if diffs:
        raise ValueError(f"run.init_from={str(path)!r}: its model differs from this run's ({'; '.join(diffs)}); "
                         "fine-tuning needs the same architecture and vocabulary")
    model.load_state_dict(ckpt["model"])
    return path


def _corpus(config: TrainConfig, ctx: DistContext):
    d = config.data

    def load():
        return load_corpus(d.corpus, level=d.level, val_fraction=d.val_fraction, max_files=d.max_files,
                           cache_dir=d.cache_dir, block_size=config.model.block_size)

    if ctx.distributed and d.cache_dir is not None:  # rank 0 writes the token files, the others reuse them
        corpus = load() if ctx.is_main else None
        ctx.barrier()
        return corpus if corpus is not None else load()
    return load()


def _current_implementation(optimizer: torch.optim.Optimizer, state_dict: dict) -> dict:
    """``state_dict`` with the implementation switches of this run's param groups (``fused``, ``foreach``,
    Muon's ``distributed``) instead of the saved ones: they depend on the layout (no fused AdamW on FSDP2's
    DTensors; Muon's sharing of work under DDP), not on the run's mathematics."""
    groups = []
    for saved, current in zip(state_dict["param_groups"], optimizer.param_groups):
        saved = dict(saved)
        for key in ("fused", "foreach", "distributed"):
            if key in current:
                saved[key] = current[key]
        groups.append(saved)
    return {**state_dict, "param_groups": groups + list(state_dict["param_groups"][len(groups):])}


def _policy_dtype(name: str) -> torch.dtype | None:
    """FSDP2's ``MixedPrecisionPolicy`` entry for a ``run.param_dtype`` / ``run.reduce_dtype`` value: ``None`` (no
    cast) for the parameters' own float32."""
    return None if name == "float32" else PRECISIONS[name]


@contextlib.contextmanager
def _fsdp_sync_off(module: nn.Module):
    """FSDP2: accumulate unsharded gradients locally (no reduce-scatter) inside the block."""
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


class _Trainer:
    """State of one :func:`train` call (split out of the function for readability)."""

    def __init__(self, config: TrainConfig, ctx: DistContext,
                 step_callback: Callable[[int, nn.Module, dict], Any] | None) -> None:
        self.ctx = ctx
        self.callback = step_callback
        self.init_path: Path | None = None
        self.t_start = time.perf_counter()
        _check_config(config, ctx)
        self.out_dir = check_out_dir(config.run.out_dir)
        if config.run.threads > 0:
            torch.set_num_threads(config.run.threads)
        self.corpus = _corpus(config, ctx)
        self.config = config = _resolve_vocab(config, self.corpus.vocab_size)
        config.model.validate()
        self.metrics_path = self.out_dir / METRICS_NAME
        self.notes: list[str] = []  # warnings for rank 0 to print once the run is set up
        self._set_schedule(schedule_horizon(config))

        # Model: the same initialization on every rank; then per-rank generators (dropout).
        _seed_all(config.run.seed)
        raw = GPT(config.model).to(ctx.device)
        if config.run.init_from is not None and not (config.run.resume and list_checkpoints(self.out_dir)):
            self.init_path = init_weights(raw, config)  # a resumed run takes its weights from its checkpoint
        self.raw = raw
        _seed_all(_rank_seed(config.run.seed, ctx.rank))
        self.model = self._wrap(raw)
        self.n_layer = config.model.n_layer
        b, t = config.data.batch_size, config.model.block_size
        self.local_batch = b // ctx.world_size
        self.tokens_per_step = b * t
        self.optimizers, self.drop_muon = build_optimizers(raw, config, world_size=ctx.world_size,
                                                          local_batch_size=self.local_batch)
        self.costs = raw.block_costs(self.local_batch)  # analytic per-block FLOPs of one rank's batch
        # DAL reads the groups' learning rates as its base rates: built before LambdaLR applies the warmup
        s = config.schedule
        self.dal = (DriftAdjustedLR(self.optimizers[0], power=s.dal_power, max_lr=s.dal_max_lr,
                                    reference_lr=config.optim.lr) if s.name == "dal" else None)
        self.held_batch = (eval_windows(self.corpus.train, t, b, 1)[0] if config.run.lambda_max_every > 0
                           else None)
        # through self: a resume may replace the schedule (the checkpoint's horizon)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: self.schedule(s)) for o in self.optimizers]
        self.params = [p for p in raw.parameters() if p.requires_grad]
        self.sampler = BatchSampler(self.corpus.train, t, b, config.run.seed, rank=ctx.rank,
                                    world_size=ctx.world_size)
        self.val_windows = eval_windows(self.corpus.val, t, b, config.run.eval_iters)
        self.autocast = (
            (lambda: torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16))
            if config.run.dtype == "bfloat16" else contextlib.nullcontext
        )
        self.step = 0
        self.tokens_seen = 0
        self.best_val = math.inf
        self.last_val: float | None = None
        self.train_seconds = 0.0
        self.last_saved: int | None = None
        self.last_ckpt: Path | None = None
        self.resumed_from: Path | None = None
        self.writer: MetricsWriter | None = None
        self.last_loss: float | None = None

    # -- setup ----------------------------------------------------------------------------------------
    def _set_schedule(self, horizon: int) -> None:
        self.schedule, note = fit_schedule(self.config, horizon)
        self.notes = [n for n in self.notes if not n.startswith("schedule.warmup=")]
        if note is not None:
            self.notes.append(note)
        self.decay_ends = set(self.schedule.decay_ends()) if self.config.schedule.name == "wsd-s" else set()

    def _wrap(self, raw: nn.Module) -> nn.Module:
        run = self.config.run
        model: nn.Module = raw
        if run.compile:
            model = torch.compile(raw)
        if not self.ctx.distributed:
            return model
        if run.parallel == "fsdp":
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

            mesh = init_device_mesh(self.ctx.device.type, (self.ctx.world_size,))
            # parameters stay float32 (sharded, and in the optimizer); param_dtype is the dtype of the
            # all-gathered copies the forward and backward passes use, reduce_dtype the gradients' reduce-scatter
            policy = MixedPrecisionPolicy(param_dtype=_policy_dtype(run.param_dtype),
                                          reduce_dtype=_policy_dtype(run.reduce_dtype))
            for blk in raw.blocks:
                fully_shard(blk, mesh=mesh, mp_policy=policy)
            fully_shard(raw, mesh=mesh, mp_policy=policy)
            return model
        ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(
            model, device_ids=ids, find_unused_parameters=self.config.optim.name == "drop-muon")

    @property
    def fsdp(self) -> bool:
        return self.ctx.distributed and self.config.run.parallel == "fsdp"

    def print(self, *args, **kw) -> None:
        if self.ctx.is_main and self.config.run.verbose:
            print(*args, **kw, flush=True)

    def warn_notes(self) -> None:
        """Print the collected warnings on stderr (rank 0, whatever run.verbose says)."""
        if self.ctx.is_main:
            for note in self.notes:
                print(f"warning: {note}", file=sys.stderr, flush=True)

    # -- checkpoints ------------------------------------------------------------------------------------
    def _state_dicts(self) -> tuple[dict, list[dict]]:
        """The model's and the optimizers' ``state_dict()``: whole tensors, or this rank's shards (DTensors) under
        FSDP2, where :func:`scale.checkpoint.save_sharded` writes them without gathering."""
        return self.raw.state_dict(), [o.state_dict() for o in self.optimizers]

    def save(self, best: bool = False) -> Path:
        """Write ``ckpt_<step>.pt``, or with ``best`` the file ``best.pt`` (run.keep_best; not a resume point,
        never pruned) (rank 0; every rank takes part in gathering state). Under FSDP2 the checkpoint is the DCP
        folder ``ckpt_<step>.dcp`` (``best.dcp``) that every rank writes its shards into."""
        model_sd, optim_sds = self._state_dicts()
        rng = capture_rng()
        if self.ctx.distributed:
            rngs: list = [None] * self.ctx.world_size
            dist.all_gather_object(rngs, rng)
        else:
            rngs = [rng]
        path = self.out_dir / BEST_NAME if best else checkpoint_path(self.out_dir, self.step)
        if self.fsdp:
            path = path.with_suffix(".dcp")
        if self.ctx.is_main or self.fsdp:
            if self.writer is not None:
                self.writer.sync()
            ckpt = {
                "format": FORMAT,
                "model": model_sd,
                "optim": optim_sds,
                "sched": [s.state_dict() for s in self.schedulers],
                "step": self.step,
                "tokens_seen": self.tokens_seen,
                "best_val_loss": self.best_val,
                "data_sampler": self.sampler.state_dict(),
                "rng": rngs,
                "config": config_to_dict(self.config),
                "optlib_version": optlib.__version__,
                "torch_version": str(torch.__version__),
                "world_size": self.ctx.world_size,
                "train_seconds": self.train_seconds,
                "schedule": {"name": self.schedule.name, "params": self.schedule.params},
            }
            if self.dal is not None:
                ckpt["dal"] = self.dal.state_dict()
            if self.fsdp:  # every rank writes its shards; rank 0 the rest
                save_sharded({k: v for k, v in ckpt.items() if k not in ("model", "optim")}, model_sd, optim_sds,
                             path)
            else:
                save_atomic(ckpt, path)
            if not best and self.ctx.is_main:
                self._prune()
        self.ctx.barrier()
        if not best:
            self.last_saved, self.last_ckpt = self.step, path
        return path

    def _prune(self) -> None:
        keep = self.config.run.keep_checkpoints
        if keep <= 0:
            return
        periodic = [(s, p) for s, p in list_checkpoints(self.out_dir) if s not in self.decay_ends]
        for _, p in periodic[:-keep]:
            remove_checkpoint(p)

    def restore(self, path: Path) -> None:
        """Load ``path`` into every piece of state; refuse (CheckpointError) if it cannot resume this config.

        Any checkpoint resumes on any number of ranks: a DCP folder (FSDP2 run) is resharded to this run's
        layout by :func:`scale.checkpoint.load_sharded`, a one-file checkpoint's whole tensors are sharded on
        load under FSDP2. Only a one-file checkpoint of an FSDP2 run of an earlier version (optimizer state keyed
        by parameter name) needs FSDP2 to resume, and is refused elsewhere with that reason."""
        sharded = is_sharded(path)
        ckpt = load_checkpoint(path, tensors=not sharded)
        saved = upgrade_config_dict(ckpt["config"])
        diffs = diff_configs(saved, config_to_dict(self.config))
        keep = ("It was left untouched; use another --run.out_dir for a new run, or --run.overwrite true instead of "
                "--run.resume true to delete the checkpoints of this folder and start again.")
        if diffs:
            raise CheckpointError(
                f"refusing to resume from {str(path)!r}: it was written by a run with another configuration "
                f"({'; '.join(diffs)}), and only run-length and bookkeeping settings may change on resume. {keep}")
        if ckpt["step"] > self.config.run.max_iters:
            raise CheckpointError(f"refusing to resume from {str(path)!r}: it is at step {ckpt['step']}, past "
                                  f"run.max_iters={self.config.run.max_iters}; raise --run.max_iters to continue it.")
        n_optim = len(ckpt["optim"]) if not sharded else len(self.optimizers)
        if n_optim != len(self.optimizers) or len(ckpt["sched"]) != len(self.schedulers):
            raise CheckpointError(f"refusing to resume from {str(path)!r}: it holds {n_optim} optimizer "
                                  f"state(s) and this run has {len(self.optimizers)}. {keep}")
        named_state = not sharded and any(isinstance(k, str) and "." in k for sd in ckpt["optim"] for k in sd["state"])
        if named_state and not self.fsdp:
            raise CheckpointError(
                f"refusing to resume from {str(path)!r}: it is a whole-model file of an FSDP2 run written by an "
                f"earlier version (optimizer state keyed by parameter name, saved by {ckpt.get('world_size')} ranks), "
                "a format that does not reshard to one process or DDP; resume it under torchrun with "
                f"--run.parallel fsdp, or start afresh. {keep}")
        self._resume_horizon(ckpt, saved)
        try:
            if sharded:  # a DCP folder: resharded to this run's layout, whatever the world size that wrote it
                optim_sds = load_sharded(path, self.raw, self.optimizers)
                if len(optim_sds) != len(self.optimizers):
                    raise ValueError(f"the folder holds {len(optim_sds)} optimizer state(s), this run has "
                                     f"{len(self.optimizers)}")
                for o, sd in zip(self.optimizers, optim_sds):
                    o.load_state_dict(_current_implementation(o, sd))
            elif self.fsdp:  # whole tensors into sharded parameters
                from torch.distributed.checkpoint.state_dict import (
                    StateDictOptions,
                    set_model_state_dict,
                    set_optimizer_state_dict,
                )

                opts = StateDictOptions(full_state_dict=True)
                set_model_state_dict(self.raw, ckpt["model"], options=opts)
                for o, sd in zip(self.optimizers, ckpt["optim"]):
                    if named_state:
                        set_optimizer_state_dict(self.raw, o, sd, options=opts)
                    else:
                        o.load_state_dict(_current_implementation(o, shard_full_optimizer_state(sd, o)))
            else:
                self.raw.load_state_dict(ckpt["model"])
                for o, sd in zip(self.optimizers, ckpt["optim"]):
                    o.load_state_dict(_current_implementation(o, sd))
            for s, sd in zip(self.schedulers, ckpt["sched"]):
                s.load_state_dict(sd)
                if self._horizon_changed:  # the restored learning rates are the old schedule's
                    for group, base in zip(s.optimizer.param_groups, s.base_lrs):
                        group["lr"] = base * self.schedule(s.last_epoch)
            self.sampler.load_state_dict(ckpt["data_sampler"])
            if self.dal is not None:
                self.dal.load_state_dict(ckpt["dal"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"refusing to resume from {str(path)!r}: its state does not fit this run's model "
                                  f"or optimizer although their settings match ({_first_line(exc)}). {keep}") from exc
        rngs = ckpt["rng"]
        if self.ctx.rank < len(rngs):
            restore_rng(rngs[self.ctx.rank])
        else:  # more ranks than when saved: a fresh, rank-specific stream (dropout only)
            _seed_all(_rank_seed(self.config.run.seed + ckpt["step"], self.ctx.rank))
        self.step = int(ckpt["step"])
        self.tokens_seen = int(ckpt["tokens_seen"])
        self.best_val = float(ckpt["best_val_loss"])
        self.train_seconds = float(ckpt.get("train_seconds", 0.0))
        self.last_saved, self.last_ckpt = self.step, path
        self.resumed_from = path

    def _resume_horizon(self, ckpt: dict, saved: dict) -> None:
        """Keep the checkpoint's schedule horizon unless ``schedule.total`` is given (then switch to it)."""
        stored = ckpt.get("schedule") or {}
        saved_horizon = stored.get("params", {}).get("total")
        if saved_horizon is None:  # a constant schedule, or a checkpoint from before the "schedule" entry
            s, r = saved.get("schedule", {}), saved.get("run", {})
            saved_horizon = s.get("total") if s.get("total") is not None else r.get("max_iters")
        explicit = self.config.schedule.total
        horizon = int(explicit if explicit is not None else saved_horizon)
        step, max_iters = int(ckpt["step"]), self.config.run.max_iters
        if horizon != schedule_horizon(self.config):
            self._set_schedule(horizon)
        self._horizon_changed = horizon != int(saved_horizon)
        if explicit is not None and explicit != saved_horizon:
            before = fit_schedule(self.config, int(saved_horizon))[0](step)
            self.notes.append(f"schedule.total={explicit} changes the schedule's horizon from {saved_horizon} steps "
                              f"(the checkpoint's) to {explicit} at step {step}: the learning-rate multiplier goes "
                              f"from {before:.4g} to {self.schedule(step):.4g}.")
        elif self.config.schedule.name not in ("constant", "dal") and max_iters > horizon:
            self.notes.append(f"run.max_iters={max_iters} runs past the schedule's horizon of {horizon} steps kept "
                              f"from the checkpoint: steps {max(step, horizon)} to {max_iters} train at its final "
                              f"learning rate (multiplier {self.schedule(horizon):.4g}). Pass --schedule.total to "
                              "stretch the schedule instead.")

    def prepare_out_dir(self) -> None:
        """Resume, or start fresh (refusing to mix with another run's checkpoints unless ``overwrite``)."""
        run = self.config.run
        existing = list_checkpoints(self.out_dir)
        if run.resume and existing:
            self.restore(existing[-1][1])
            return
        if run.resume:
            self.print(f"run.resume: no checkpoint in {str(self.out_dir)!r}; starting from scratch")
        elif existing:
            if not run.overwrite:
                raise ValueError(
                    f"run.out_dir {str(self.out_dir)!r} already holds checkpoints (latest "
                    f"{existing[-1][1].name}); pass run.resume=true to continue that run, run.overwrite=true to "
                    "delete them and start again, or another run.out_dir")
            self.ctx.barrier()
            if self.ctx.is_main:
                for _, p in existing:
                    remove_checkpoint(p)
            self.ctx.barrier()

    def open_metrics(self) -> None:
        if not self.ctx.is_main:
            return
        header = {
            "kind": "header",
            "config": config_to_dict(self.config),
            "corpus": self.corpus.meta,
            "world_size": self.ctx.world_size,
            "device": str(self.ctx.device),
            "n_params": self.raw.num_params(),
            "flops_per_token": self.raw.flops_per_token(),
            "torch": str(torch.__version__),
            "optlib": optlib.__version__,
            "python": sys.version.split()[0],
            "schedule": {"name": self.schedule.name, "params": self.schedule.params},
            "init_from": None if self.init_path is None else str(self.init_path),
        }
        tb = self.out_dir / TENSORBOARD_DIR if self.config.run.tensorboard else None
        if self.resumed_from is not None and self.metrics_path.exists():
            truncate_after(self.metrics_path, self.step)
            self.writer = MetricsWriter(self.metrics_path, append=True, tensorboard_dir=tb)
        else:
            self.writer = MetricsWriter(self.metrics_path, tensorboard_dir=tb)
            self.writer.write(header)
        if self.resumed_from is not None:
            self.writer.write({"kind": "resume", "step": self.step, "checkpoint": self.resumed_from.name,
                               "schedule": {"name": self.schedule.name, "params": self.schedule.params}})

    # -- the loop ---------------------------------------------------------------------------------------
    def _global_stats(self, loss: float, ce: float, z: float) -> tuple[float, float, float]:
        """The rank-local (loss, ce, z) averaged over the ranks."""
        if not self.ctx.distributed:
            return loss, ce, z
        dev = self.ctx.device if self.ctx.device.type == "cuda" else torch.device("cpu")  # nccl needs CUDA
        v = torch.tensor([loss, ce, z], dtype=torch.float64, device=dev)
        dist.all_reduce(v)
        v = (v / self.ctx.world_size).tolist()
        return v[0], v[1], v[2]

    def _gradient_sync(self, on: bool):
        """A context in which backward passes synchronize gradients across ranks (``on``) or only accumulate
        them locally: DDP's ``no_sync``, FSDP2's ``set_requires_gradient_sync``."""
        if on or not self.ctx.distributed:
            return contextlib.nullcontext()
        if self.fsdp:
            return _fsdp_sync_off(self.raw)
        return self.model.no_sync()

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor, cutoff: int) -> tuple[float, float, float]:
        """Gradients of the step's loss on this rank's rows ``x, y`` in ``run.grad_accum`` micro-batches (each
        loss divided by their number, so the summed gradient is the whole batch's), the gradient
        synchronization on the last one only; returns (loss, ce, z) averaged over micro-batches and ranks,
        refusing (before any update) a non-finite loss."""
        k = self.config.run.grad_accum
        totals = [0.0, 0.0, 0.0]
        for i, (xm, ym) in enumerate(zip(x.chunk(k), y.chunk(k))):
            with self._gradient_sync(i == k - 1):
                with self.autocast():
                    _, loss = self.model(xm, ym, cutoff=cutoff)
                parts = self.raw.loss_parts
                for j, v in enumerate((float(loss.detach()), parts.get("ce", float("nan")), parts.get("z", 0.0))):
                    totals[j] += v / k
                if k == 1 and not math.isfinite(totals[0]) and not self.ctx.distributed:
                    self._non_finite(self.step + 1, totals[0])  # before a backward pass through NaNs
                (loss / k if k > 1 else loss).backward()
        loss_v, ce, z = self._global_stats(*totals)
        if not math.isfinite(loss_v):
            self._non_finite(self.step + 1, loss_v)
        return loss_v, ce, z

    def run_eval(self) -> float:
        # the unwrapped model: DDP's hooks are for training; FSDP's root module is `raw` itself (every rank
        # evaluates every window, so their all-gathers match)
        val = evaluate(self.raw, self.val_windows, self.ctx.device, self.autocast)
        self.last_val = val
        improved = val < self.best_val
        self.best_val = min(self.best_val, val)
        if self.writer is not None:
            self.writer.write({"kind": "eval", "step": self.step, "val_loss": val, "val_ppl": math.exp(min(val, 700)),
                               "tokens": self.tokens_seen, "wall_s": self.train_seconds})
        if improved and self.config.run.keep_best:
            self.save(best=True)
        if self.config.run.sample_tokens > 0:
            self.log_sample()
        return val

    def log_sample(self) -> str:
        """``run.sample_tokens`` tokens continuing the first ``block_size`` tokens of the validation split, drawn
        with a generator seeded by ``run.seed`` (the same draws at every evaluation), as a ``sample`` line."""
        n = min(self.config.model.block_size, len(self.corpus.val))
        start = torch.as_tensor(np.asarray(self.corpus.val[:n], dtype=np.int64), device=self.ctx.device)
        gen = torch.Generator().manual_seed(self.config.run.seed)
        seq = generate(self.raw, start.reshape(1, -1), self.config.run.sample_tokens, generator=gen)
        text = self.corpus.decode(seq[0, n:].cpu().numpy())
        if self.writer is not None:
            self.writer.write({"kind": "sample", "step": self.step, "text": text})
        return text

    def loop(self) -> None:
        cfg = self.config
        run = cfg.run
        max_iters = run.max_iters
        bar = None
        if self.ctx.is_main and run.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=max_iters, initial=self.step, desc="train", dynamic_ncols=True, leave=False)
        last_log_tokens, last_log_time = self.tokens_seen, self.train_seconds
        self.tokens_at_start, self.seconds_at_start = self.tokens_seen, self.train_seconds
        if self.resumed_from is None and run.eval_interval > 0:
            self.run_eval()
        if self.resumed_from is None and run.lambda_max_every > 0:
            self.log_sharpness(self.optimizers[0].param_groups[0]["lr"])
        self.raw.train()
        try:
            while self.step < max_iters:
                t0 = time.perf_counter()
                x, y = self.sampler.next()
                x = x.to(self.ctx.device, non_blocking=True)
                y = y.to(self.ctx.device, non_blocking=True)
                cutoff = 0
                if self.drop_muon is not None:
                    cutoff = self.drop_muon.sample_cutoff(self.step / max_iters)
                loss_v, ce, z = self._forward_backward(x, y, cutoff)
                if self.dal is not None:
                    self._dal_step(x, y, cutoff)
                clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
                grad_norm = torch.nn.utils.clip_grad_norm_(self.params, clip)
                if hasattr(grad_norm, "full_tensor"):  # FSDP: a DTensor
                    grad_norm = grad_norm.full_tensor()
                grad_norm = float(grad_norm)
                if not math.isfinite(grad_norm):
                    self._non_finite(self.step + 1, grad_norm, what="gradient norm")
                lr = self.optimizers[0].param_groups[0]["lr"]
                lr_mult = self.schedule(self.step)
                for o in self.optimizers:
                    o.step()
                for s in self.schedulers:
                    s.step()
                for o in self.optimizers:
                    o.zero_grad(set_to_none=True)
                self.step += 1
                self.tokens_seen += self.tokens_per_step
                self.last_loss = loss_v
                self.train_seconds += time.perf_counter() - t0

                step = self.step
                record = None
                if step % run.log_interval == 0 or step == max_iters:
                    dt = self.train_seconds - last_log_time
                    record = {
                        "kind": "train", "step": step, "loss": loss_v, "ce": ce, "z": z, "lr": lr,
                        "lr_mult": lr_mult, "tokens": self.tokens_seen,
                        "tokens_per_s": (self.tokens_seen - last_log_tokens) / dt if dt > 0 else None,
                        "wall_s": self.train_seconds, "grad_norm": grad_norm,
                        "layers_backpropagated": self.n_layer - cutoff, "cutoff": cutoff,
                        "block_backward_flops": self.costs.backward(cutoff),
                    }
                    if self.dal is not None:
                        record.update(dal_mult=self.dal.last_multiplier, dal_curvature=self.dal.last_ratio)
                    last_log_tokens, last_log_time = self.tokens_seen, self.train_seconds
                    if self.writer is not None:
                        self.writer.write(record)
                if bar is not None:
                    bar.update(1)
                    if record is not None:
                        bar.set_postfix(loss=f"{loss_v:.4f}", val=f"{self.last_val:.4f}" if self.last_val else "-")
                if run.lambda_max_every > 0 and step % run.lambda_max_every == 0:
                    self.log_sharpness(lr)
                is_eval = (run.eval_interval > 0 and step % run.eval_interval == 0) or step == max_iters \
                    or step in self.decay_ends
                if is_eval:
                    val = self.run_eval()
                    if bar is not None:
                        bar.write(f"step {step}: val loss {val:.4f}")
                stop = False
                if self.callback is not None:
                    stop = bool(self.callback(step, self.raw, record if record is not None else
                                              {"step": step, "loss": loss_v, "cutoff": cutoff}))
                if (run.ckpt_interval > 0 and step % run.ckpt_interval == 0) or step in self.decay_ends \
                        or step == max_iters or stop:
                    self.save()
                if stop:
                    break
        finally:
            if bar is not None:
                bar.close()

    def _dal_step(self, x: torch.Tensor, y: torch.Tensor, cutoff: int) -> None:
        """Set the learning rates of this step by DAL (before clipping: the finite difference subtracts the
        stored gradient from an unclipped one), times the warmup multiplier."""
        def closure() -> torch.Tensor:
            with self.autocast():
                return self.model(x, y, cutoff=cutoff)[1]

        try:
            self.dal.step(closure)
        except ValueError as exc:
            if "non-finite" not in str(exc):
                raise
            self._non_finite(self.step + 1, float("nan"), what=f"gradient or curvature ({exc})")
        warm = self.schedule(self.step)
        for group in self.optimizers[0].param_groups:
            group["lr"] *= warm

    def log_sharpness(self, lr: float) -> float:
        """λ_max on the held batch (:func:`sharpness`) as a ``sharpness`` metrics line, ``lr`` the step size just
        used; the training clock is not running."""
        x, y = (t.to(self.ctx.device) for t in self.held_batch)
        lam = sharpness(self.raw, x, y, self.config.run.lambda_max_iters, seed=self.config.run.seed)
        if self.writer is not None:
            self.writer.write({"kind": "sharpness", "step": self.step, "lambda_max": lam, "lr": lr,
                               "edge_ratio": lr * lam / 2, "lanczos_steps": self.config.run.lambda_max_iters})
        return lam

    def _non_finite(self, step: int, value: float, what: str = "training loss") -> None:
        where = (f"the last good checkpoint is {str(self.last_ckpt)!r}" if self.last_ckpt is not None
                 else "no checkpoint was written")
        msg = (f"non-finite {what} ({value}) at step {step} (after {step - 1} updates); training stopped "
               f"before updating, {where}. Lower optim.lr / optim.muon_lr, enable optim.grad_clip or "
               "model.z_loss / model.qk_norm")
        if self.writer is not None:
            self.writer.write({"kind": "error", "step": step, "message": msg})
        raise NonFiniteLossError(msg, step, value, None if self.last_ckpt is None else str(self.last_ckpt))

    def finish(self) -> dict:
        if self.last_saved != self.step:
            self.save()
        if self.last_val is None:
            self.run_eval()
        plot = None
        if self.ctx.is_main and self.config.run.plot and self.writer is not None:
            self.writer.sync()
            o = self.config.optim
            title = (f"{self.corpus.meta.get('name', '')} {self.config.model.n_layer}x{self.config.model.n_embd}, "
                     f"{o.name}, {self.config.schedule.name}")
            plot = str(plot_loss_curve(read_metrics(self.metrics_path), self.out_dir / PLOT_NAME, title))
        secs = self.train_seconds - self.seconds_at_start
        toks = self.tokens_seen - self.tokens_at_start
        summary = {
            "steps": self.step,
            "final_val_loss": self.last_val,
            "best_val_loss": self.best_val if math.isfinite(self.best_val) else None,
            "final_train_loss": self.last_loss,
            "tokens": self.tokens_seen,
            "train_seconds": self.train_seconds,
            "total_seconds": time.perf_counter() - self.t_start,
            "tokens_per_s": toks / secs if secs > 0 else None,
            "optimizer": self.config.optim.name,
            "world_size": self.ctx.world_size,
            "n_params": self.raw.num_params(),
            "out_dir": str(self.out_dir),
            "metrics_path": str(self.metrics_path),
            "checkpoint_path": None if self.last_ckpt is None else str(self.last_ckpt),
            "plot_path": plot,
            "resumed_from": None if self.resumed_from is None else str(self.resumed_from),
            "config": config_to_dict(self.config),
        }
        tps = summary["tokens_per_s"]
        self.print(
            f"done: {self.step} steps ({self.config.optim.name}, world {self.ctx.world_size}), val loss "
            f"{self.last_val:.4f} (best {self.best_val:.4f}), {tps:,.0f} tokens/s, "
            f"train {self.train_seconds:.1f} s, wall {summary['total_seconds']:.1f} s; {self.metrics_path}"
            if tps is not None else
            f"done: {self.step} steps, val loss {self.last_val:.4f} (best {self.best_val:.4f}); nothing to train; "
            f"{self.metrics_path}")
        return summary

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def train(config: TrainConfig, *, step_callback: Callable[[int, nn.Module, dict], Any] | None = None) -> dict:
    """Train as ``config`` says and return a summary.

    Parameters
    ----------
    config : TrainConfig
        The resolved configuration (:func:`scale.config.resolve` builds one from a preset, a TOML file and
        overrides). ``model.vocab_size = 0`` takes the corpus vocabulary.
    step_callback : callable, optional
        ``step_callback(step, model, record)`` after every optimizer step (``record`` is the metrics line of a
        logged step, else ``{"step", "loss", "cutoff"}``); a true return value stops training after this step
        (with a checkpoint), e.g. for a time-to-target benchmark.

    Returns
    -------
    dict
        ``steps``, ``final_val_loss``, ``best_val_loss``, ``final_train_loss``, ``tokens``, ``train_seconds``
        (the training clock, evaluation excluded), ``total_seconds``, ``tokens_per_s`` (this call's training
        tokens over its training clock), ``n_params``, the paths (``out_dir``, ``metrics_path``,
        ``checkpoint_path``, ``plot_path``, ``resumed_from``) and the resolved ``config`` as a dict.

    Raises
    ------
    ValueError
        A bad configuration (named field and valid values), a corpus too short for one context window, or an
        ``out_dir`` holding another run's checkpoints.
    CheckpointError
        ``run.resume`` with an unreadable checkpoint or one from another configuration (left untouched).
    NonFiniteLossError
        The training loss became NaN/inf (the step is in the message; nothing is saved for that step).
    """
    ctx = setup_distributed(config)
    trainer = None
    threads = torch.get_num_threads()
    try:
        trainer = _Trainer(config, ctx, step_callback)
        trainer.prepare_out_dir()
        if ctx.is_main:
            _make_out_dir(trainer.out_dir)
        trainer.warn_notes()
        trainer.print(f"# resolved configuration (world size {ctx.world_size}, device {ctx.device})")
        trainer.print(config_to_toml(trainer.config))
        if trainer.resumed_from is not None:
            trainer.print(f"resumed from {trainer.resumed_from} at step {trainer.step}")
        trainer.open_metrics()
        trainer.loop()
        return trainer.finish()
    finally:
        if trainer is not None:
            trainer.close()
        torch.set_num_threads(threads)  # run.threads applies to this call only
        if ctx.owns_group and dist.is_initialized():
            dist.destroy_process_group()


_DESCRIPTION = "\n\n".join(textwrap.fill(paragraph, 100) for paragraph in (
    "Train a GPT (scale.model) on a character- or byte-level corpus (scale.data) with AdamW, Muon or Drop-Muon "
    "(optlib.optim). Single process by default; under 'torchrun --nproc_per_node=N -m scale.train ...' "
    "(WORLD_SIZE > 1) data-parallel with DDP or FSDP2 (gloo on CPU, nccl on CUDA), each rank taking its slice "
    "of the same global batch. Writes OUT_DIR/metrics.jsonl, checkpoints OUT_DIR/ckpt_<step>.pt (exact "
    "resume with --run.resume true) and OUT_DIR/loss.png; OUT_DIR is created with its missing parents.",
    "Settings: defaults < --preset < --config FILE.toml < --section.name VALUE (also --section.name=VALUE; "
    "dashes and underscores are interchangeable in names).",
    "Resuming: the run continues from the latest checkpoint of OUT_DIR if its model/data/optim/schedule settings "
    "match. The learning-rate schedule keeps the checkpoint's horizon: resuming with a larger --run.max_iters "
    "trains the extra steps at the schedule's final learning rate (a warning says so) instead of raising it "
    "again; --schedule.total N on resume stretches the schedule to N steps instead. A warmup longer than the "
    "schedule allows (e.g. a preset's 100 steps with --run.max_iters 60) is shortened to a tenth of the "
    "schedule, with a warning.",
    "Exit status: 0 done, 2 a usage or configuration error (one 'error:' line), 3 a non-finite loss.",
))


def _epilog() -> str:
    lines = ["presets:"]
    for name, o in PRESETS.items():
        shape = ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in o.items() if k.startswith("model.n_"))
        lines.append(f"  {name}: {o.get('optim.name')}, {o.get('run.max_iters')} steps, {shape}")
    return "\n".join(lines)


def _run(config: TrainConfig) -> int:
    """:func:`train` for the command line: a refused checkpoint becomes a usage error (exit status 2, via
    :class:`scale.cli.Command`), a non-finite loss an ``error:`` line and exit status 3."""
    try:
        train(config)
    except CheckpointError as exc:
        raise ValueError(str(exc)) from exc
    except NonFiniteLossError as exc:
        print(f"{COMMAND.prog}: error: {exc}", file=sys.stderr)
        return 3
    return 0


COMMAND = Command(prog="python -m scale.train", description=_DESCRIPTION, config=TrainConfig, run=_run,
                  presets=PRESETS, epilog=_epilog(), help="train a GPT with AdamW, Muon or Drop-Muon")
main = COMMAND.main


if __name__ == "__main__":
    raise SystemExit(main())
