"""Drop-Muon against Muon and AdamW: wall-clock time to a target accuracy on a small CNN (scikit-learn's digits).

``python -m scale.bench.drop_muon_digits`` reproduces, at CPU scale, the experiment behind the claim of
Gruntkowska, Maziane, Qu & Richtárik, "Drop-Muon: Update Less, Converge Faster" (arXiv:2510.02239):
randomized progressive training reaches the accuracy of full-network Muon (Jordan et al., 2024) in
less wall-clock time. The paper trains a 3-conv CNN plus a linear head on MNIST-like data with batch
8192 and channels [64, 128, 256]; here the data are scikit-learn's bundled digits (8x8 images, upsampled
bilinearly to ``--resolution`` when it is larger than 8; no package on the registry ships MNIST inside its
wheel in a form that installs offline), so everything runs on a laptop CPU in minutes.

Methods (all on the same model, data order and initialization per seed):

* ``adamw``: AdamW on every parameter, full backward pass.
* ``muon``: Muon on the conv filters (the routing of :func:`optlib.optim.muon_param_groups`: by default
  every conv but the first, ``--first-conv``), AdamW on the head, the biases and the first conv; full
  backward pass. The Newton–Schulz iteration runs in float32 by default (``--ns-dtype``).
* ``drop-muon-uniform``: Drop-Muon with the cutoff ``s`` drawn uniformly from the ``b`` blocks at every step.
  Blocks ``< s`` run under ``torch.no_grad`` (:func:`optlib.optim.progressive.progressive_forward`), so
  the backward pass really stops at block ``s``; their parameters keep ``p.grad is None`` and neither
  their weights nor their optimizer state move.
* ``drop-muon-shift``: Drop-Muon whose cutoff distribution moves from shallow to deep with training progress
  (``p_i ∝ exp(α[(1 − u)(b − 1 − i) + u·i])``, ``u = min(1, epoch / shift_epochs)``): early steps update
  the whole network, later ones mostly the top blocks.

What is measured follows AlgoPerf's time-to-target (spec 90 §2): the training clock runs over the
forward pass, the backward pass and the optimizer step only; it is paused while the accuracy is
evaluated (every ``--eval-every`` steps). The time to target is the clock at the first evaluation
whose accuracy reaches ``--target``. Alongside it, a hardware-independent cost (the number of blocks
backpropagated per step and an analytic backward-FLOP count: weight gradients of every trained block,
input gradients of every trained block above the cutoff) and the process's CPU time over the same
intervals (less sensitive than wall-clock to other programs on a small shared machine). All methods
run in one process, seeds interleaved, so that a change of machine load hits them alike; the headline
numbers are per-seed ratios (Muon time / Drop-Muon time) with their spread.

Presets: ``--preset quick`` is the report's configuration (16x16 images, three seeds, about a minute on a
2-core CPU); ``--preset smoke`` the report's ``--quick`` one (the 8x8 digits as they are, two seeds, a few
seconds). Outputs in ``--out``: ``drop_muon_digits.json`` (configuration, provenance, every run's curve,
summaries and ratios) and ``drop_muon_digits_accuracy.png`` (accuracy against training wall-clock, one line
per run).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from optlib.optim import DropMuon, Muon, muon_param_groups
from optlib.optim.progressive import block_costs as _block_costs
from optlib.optim.progressive import epoch_shift, progressive_forward
from scale.cli import Command, config_to_dict, option

from .common import (
    ReportContext,
    SectionResult,
    fmt_num,
    fmt_time,
    md_table,
    provenance,
    pyplot,
    register_section,
    save_json,
    spread,
    thread_limit,
)

METHODS = ("adamw", "muon", "drop-muon-uniform", "drop-muon-shift")
DROP_METHODS = ("drop-muon-uniform", "drop-muon-shift")
JSON_NAME = "drop_muon_digits.json"
PLOT_NAME = "drop_muon_digits_accuracy.png"


# ---------------------------------------------------------------------------------------- configuration
@dataclass
class Config:
    """Everything one benchmark run depends on (recorded in the JSON); the defaults are the full benchmark."""

    methods: tuple[str, ...] = option(METHODS, "methods to compare", choices=METHODS)
    seeds: int = option(3, "number of seeds (0..N-1); each seed fixes the initialization, the batch order and "
                           "the cutoff draws, shared by all methods")
    target: float = option(0.99, "accuracy that stops a run (in (0, 1])")
    metric: str = option("train", "accuracy measured on the training set or on the held-out split",
                         choices=("train", "test"))
    batch_size: int = option(128, "mini-batch size")
    channels: tuple[int, ...] = option((16, 32, 64), "output channels of the conv blocks (one block per entry; "
                                                     "the paper uses 64 128 256)")
    resolution: int = option(32, "side of the images: the 8x8 digits as they are (8) or upsampled bilinearly "
                                 "(divisible by 2**len(channels)); larger images make the early blocks "
                                 "costlier, as on MNIST")
    lr: float = option(0.02, "Muon / Drop-Muon learning rate (spectral radius per step)")
    momentum: float = option(0.95, "Muon momentum (Nesterov)")
    adamw_lr: float = option(3e-3, "AdamW learning rate (the AdamW baseline, and the head and biases of the "
                                   "Muon methods)")
    first_conv: str = option("adamw", "optimizer of the first conv filter in the Muon methods (Keller Jordan's "
                                      "README sends it to AdamW; Drop-Muon's paper treats every layer alike)",
                             choices=("muon", "adamw"))
    ns_dtype: str = option("float32", "dtype of the Newton-Schulz iteration in the Muon methods (bfloat16 is what "
                                      "GPUs use; on a CPU without bf16 matrix units it is emulated and slow, "
                                      "which would inflate Drop-Muon's saving from skipped orthogonalizations)",
                           choices=("float32", "bfloat16"))
    shift_alpha: float = option(0.5, "drop-muon-shift: sharpness α of p_i ∝ exp(α[(1-u)(b-1-i) + u·i])")
    shift_epochs: float = option(10.0, "drop-muon-shift: epochs over which the progress u goes from 0 to 1")
    max_epochs: float = option(40.0, "per-run bound on training epochs")
    max_steps: int | None = option(None, "per-run bound on steps (none: no bound)")
    time_limit: float = option(120.0, "per-run bound on training wall-clock in seconds; a run still short of "
                                      "the target then counts as not reached")
    eval_every: int = option(4, "steps between accuracy evaluations (the clock is paused during them)")
    threads: int = option(1, "torch threads during the benchmark (0 keeps torch's choice); recorded")
    test_fraction: float = option(0.2, "fraction of the digits held out as the test split (stratified, fixed)")
    warmup_steps: int = option(3, "untimed steps per method before the timed runs")
    out: Path | None = option(Path("reports/drop_muon_digits"), "output folder for the JSON and the PNG "
                                                                "(created if missing; none: write nothing)")
    plot: bool = option(True, "write the accuracy-against-wall-clock PNG")
    progress: bool = option(True, "show a progress bar on stderr")

    def validate(self) -> None:
        """A ``ValueError`` naming the option for settings the benchmark cannot run with."""
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"--methods: unknown method(s) {', '.join(unknown)}; valid: {', '.join(METHODS)}")
        if not self.methods:
            raise ValueError(f"--methods needs at least one of {', '.join(METHODS)}")
        if self.seeds < 1:
            raise ValueError(f"--seeds must be at least 1, got {self.seeds}")
        if not 0.0 < self.target <= 1.0:
            raise ValueError(f"--target is an accuracy in (0, 1], got {self.target:g}")
        if self.metric not in ("train", "test"):
            raise ValueError(f"--metric must be 'train' or 'test', got {self.metric!r}")
        if self.batch_size < 1 or self.eval_every < 1:
            raise ValueError(f"--batch-size and --eval-every must be at least 1, got {self.batch_size} and "
                             f"{self.eval_every}")
        if len(self.channels) < 1 or any(c < 1 for c in self.channels):
            raise ValueError(f"--channels needs at least one positive width, got {list(self.channels)}")
        if self.resolution < 8 or self.resolution % (2 ** len(self.channels)):
            raise ValueError(f"--resolution must be at least 8 and divisible by 2**len(channels) = "
                             f"{2 ** len(self.channels)}, got {self.resolution}")
        if self.lr <= 0 or self.adamw_lr <= 0:
            raise ValueError(f"--lr and --adamw-lr must be positive, got {self.lr:g} and {self.adamw_lr:g}")
        if self.ns_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"--ns-dtype must be 'float32' or 'bfloat16', got {self.ns_dtype!r}")
        if self.first_conv not in ("muon", "adamw"):
            raise ValueError(f"--first-conv must be 'muon' or 'adamw', got {self.first_conv!r}")
        if self.shift_epochs <= 0:
            raise ValueError(f"--shift-epochs must be positive, got {self.shift_epochs:g}")
        if self.max_epochs <= 0 or self.time_limit <= 0:
            raise ValueError(f"--max-epochs and --time-limit must be positive, got {self.max_epochs:g} and "
                             f"{self.time_limit:g}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max-steps must be at least 1 (or none), got {self.max_steps}")
        if self.threads < 0 or self.warmup_steps < 0:
            raise ValueError(f"--threads and --warmup-steps must be >= 0, got {self.threads} and "
                             f"{self.warmup_steps}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"--test-fraction must be in (0, 1), got {self.test_fraction:g}")


# "quick": the report's configuration, about a minute on a 2-core CPU (16x16 images, small channels, an easy
# target, three seeds). "smoke": the report's --quick one, a few seconds in all: the 8x8 digits as they are (no
# upsampling), two conv blocks, target 0.9 (reached in about 5-20 epochs, a fraction of a second per run).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(seeds=3, target=0.95, resolution=16, channels=(8, 16, 32), batch_size=128, eval_every=2,
                  max_epochs=30.0, time_limit=20.0, warmup_steps=2,
                  methods=("muon", "drop-muon-uniform", "drop-muon-shift")),
}
PRESETS["smoke"] = dict(PRESETS["quick"], seeds=2, resolution=8, channels=(8, 16), target=0.9, time_limit=10.0)


def describe_images(resolution: int) -> str:
    """The images as the text of a report says it: the 8x8 digits as they are, or upsampled."""
    if resolution == 8:
        return "8x8 images as they are (no upsampling)"
    return f"8x8 images upsampled bilinearly to {resolution}x{resolution}"


# ---------------------------------------------------------------------------------------- data and model
def load_digits(resolution: int, test_fraction: float = 0.2, split_seed: int = 0):
    """scikit-learn's digits as ``(x_train, y_train, x_test, y_test)``: standardized, upsampled to
    ``resolution`` x ``resolution`` (bilinear) when ``resolution`` is not 8, one fixed stratified split."""
    from sklearn.datasets import load_digits as _load  # scikit-learn is slow to import: only when data are loaded
    from sklearn.model_selection import train_test_split

    x, y = _load(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    x = (x - x.mean()) / x.std()
    if resolution != 8:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    y = torch.tensor(y, dtype=torch.long)
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=split_seed,
                                      stratify=y.numpy())
    idx_tr, idx_te = torch.as_tensor(idx_tr), torch.as_tensor(idx_te)
    return x[idx_tr].contiguous(), y[idx_tr].contiguous(), x[idx_te].contiguous(), y[idx_te].contiguous()


def build_model(channels: Sequence[int], resolution: int, n_classes: int = 10) -> nn.Sequential:
    """An ``nn.Sequential`` of blocks: ``len(channels)`` blocks conv3x3 -> ReLU -> maxpool2, then a
    linear head (its own block). Block ``i`` is Drop-Muon's layer ``i`` (0 = input side)."""
    blocks: list[nn.Module] = []
    c_in = 1
    for c in channels:
        blocks.append(nn.Sequential(nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)))
        c_in = c
    side = resolution // 2 ** len(channels)
    blocks.append(nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, n_classes)))
    return nn.Sequential(*blocks)


def block_costs(channels: Sequence[int], resolution: int):
    """Per-sample FLOP estimates of each block (:func:`optlib.optim.progressive.block_costs` on one image):
    a step with cutoff ``s`` costs ``costs.backward(s)`` backward FLOPs per sample (weight gradients of
    blocks ``>= s``, input gradients of blocks ``> s``)."""
    return _block_costs(list(build_model(channels, resolution)), torch.zeros(1, 1, resolution, resolution))


# ---------------------------------------------------------------------------------------- optimizers
def _routing(model: nn.Sequential, first_conv: str) -> list[dict]:
    """:func:`optlib.optim.muon_param_groups` on the model: groups with ``use_muon`` True (conv filters) or
    False (head, biases, and the first conv unless ``first_conv == "muon"``)."""
    return muon_param_groups(model, first_conv_to_adamw=(first_conv == "adamw"))


class Trainer:
    """One method's optimizers and cutoff rule on one model: ``cutoff(progress)``, then ``step()``.

    The Muon methods share the routing and the AdamW half (``torch.optim.AdamW`` with the routing's betas
    and eps on the non-Muon parameters), so that Muon and Drop-Muon differ only in the Muon half:
    :class:`optlib.optim.Muon` on the conv filters routed to Muon, or :class:`optlib.optim.DropMuon` with one
    group per block (``layer`` = block index) and its own cutoff sampler. Under Drop-Muon a frozen block's
    parameters have ``p.grad is None``, which both optimizers skip: its weights and optimizer state stay
    as they are.
    """

    def __init__(self, method: str, model: nn.Sequential, cfg: Config, seed: int) -> None:
        self.method = method
        self.model = model
        self.n_blocks = len(model)
        self.drop = None
        self.optimizers: list[torch.optim.Optimizer] = []
        self.muon_names: list[str] = []
        if method == "adamw":
            self.optimizers.append(torch.optim.AdamW(model.parameters(), lr=cfg.adamw_lr, betas=(0.9, 0.95),
                                                     weight_decay=0.0))
            return
        groups = _routing(model, cfg.first_conv)
        muon = [g for g in groups if g["use_muon"]]
        rest = [g for g in groups if not g["use_muon"]]
        muon_params = [p for g in muon for p in g["params"]]
        self.muon_names = [n for g in muon for n in g["param_names"]]
        if method == "muon":
            self.optimizers.append(Muon(muon_params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                                        ns_dtype=getattr(torch, cfg.ns_dtype)))
        else:
            layer_of = {id(p): i for i, blk in enumerate(model) for p in blk.parameters()}
            layers = [{"params": [p for p in muon_params if layer_of[id(p)] == i], "layer": i}
                      for i in range(self.n_blocks)]
            p = "uniform" if method == "drop-muon-uniform" else epoch_shift(self.n_blocks, cfg.shift_alpha)
            self.drop = DropMuon([g for g in layers if g["params"]], lr=cfg.lr, momentum=cfg.momentum,
                                 nesterov=True, sampler=p, num_layers=self.n_blocks, seed=seed,
                                 ns_dtype=getattr(torch, cfg.ns_dtype))
            self.optimizers.append(self.drop)
        if rest:
            first = rest[0]
            self.optimizers.append(torch.optim.AdamW([p for g in rest for p in g["params"]], lr=cfg.adamw_lr,
                                                     betas=first.get("betas", (0.9, 0.95)),
                                                     eps=first.get("eps", 1e-8), weight_decay=0.0))

    def cutoff(self, progress: float) -> int:
        """The step's cutoff (0 for the full-network methods); call before the forward pass."""
        return 0 if self.drop is None else int(self.drop.sample_cutoff(progress))

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)


# ---------------------------------------------------------------------------------------- one run
@dataclass
class Run:
    method: str
    seed: int
    reached: bool = False
    time_to_target: float = math.inf
    cpu_time_to_target: float = math.inf
    steps_to_target: int | None = None
    backward_flops_to_target: float = math.inf
    layers_backpropagated_to_target: int | None = None
    mean_layers_backpropagated: float = 0.0
    mean_backward_flops_per_step: float = 0.0
    steps: int = 0
    epochs: float = 0.0
    train_time: float = 0.0
    train_cpu_time: float = 0.0
    final_accuracy: float = 0.0
    frozen_grads_seen: int = 0
    stopped_by: str = ""
    curve_time: list[float] = field(default_factory=list)
    curve_step: list[int] = field(default_factory=list)
    curve_accuracy: list[float] = field(default_factory=list)
    cutoff_counts: list[int] = field(default_factory=list)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 1024) -> float:
    model.eval()
    hits = sum(int((model(x[i:i + chunk]).argmax(1) == y[i:i + chunk]).sum()) for i in range(0, len(y), chunk))
    model.train()
    return hits / len(y)


def train_one(method: str, seed: int, cfg: Config, data, *, max_steps: int | None = None,
              stop_at_target: bool = True, bar=None) -> Run:
    """Train one (method, seed) until the target, ``max_epochs``, ``max_steps`` or ``time_limit``."""
    x_tr, y_tr, x_te, y_te = data
    x_ev, y_ev = (x_tr, y_tr) if cfg.metric == "train" else (x_te, y_te)
    torch.manual_seed(seed)
    model = build_model(cfg.channels, cfg.resolution)
    trainer = Trainer(method, model, cfg, seed)
    blocks = list(model)
    costs = block_costs(cfg.channels, cfg.resolution)
    gen = torch.Generator().manual_seed(10_000 + seed)
    n = len(y_tr)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    run = Run(method, seed, cutoff_counts=[0] * len(blocks))
    limit_steps = max_steps if max_steps is not None else cfg.max_steps
    clock = 0.0
    cpu_clock = 0.0
    layers_total = 0
    flops_total = 0.0
    step = 0
    done = False
    while not done:
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            xb, yb = x_tr[idx], y_tr[idx]
            progress = (step / steps_per_epoch) / cfg.shift_epochs
            c0, t0 = time.process_time(), time.perf_counter()
            s = trainer.cutoff(progress)
            trainer.zero_grad()
            loss = F.cross_entropy(progressive_forward(blocks, xb, s), yb)
            loss.backward()
            trainer.step()
            clock += time.perf_counter() - t0
            cpu_clock += time.process_time() - c0
            # Accounting (outside the clock).
            step += 1
            run.cutoff_counts[s] += 1
            run.frozen_grads_seen += sum(p.grad is not None for blk in blocks[:s] for p in blk.parameters())
            layers_total += len(blocks) - s
            flops_total += len(yb) * costs.backward(s)
            epochs = step / steps_per_epoch
            last = (limit_steps is not None and step >= limit_steps) or epochs >= cfg.max_epochs \
                or clock >= cfg.time_limit
            if step % cfg.eval_every == 0 or last:
                acc = accuracy(model, x_ev, y_ev)
                run.curve_time.append(clock)
                run.curve_step.append(step)
                run.curve_accuracy.append(acc)
                if bar is not None:
                    bar.set_postfix_str(f"{method} seed {seed}: step {step}, acc {acc:.3f}, {clock:.1f} s")
                if acc >= cfg.target and not run.reached:
                    run.reached = True
                    run.time_to_target = clock
                    run.cpu_time_to_target = cpu_clock
                    run.steps_to_target = step
                    run.backward_flops_to_target = flops_total
                    run.layers_backpropagated_to_target = layers_total
                    if stop_at_target:
                        run.stopped_by = "target"
                        done = True
            if last and not done:
                run.stopped_by = ("max_steps" if limit_steps is not None and step >= limit_steps
                                  else "max_epochs" if epochs >= cfg.max_epochs else "time_limit")
                done = True
            if done:
                break
    run.steps = step
    run.epochs = step / steps_per_epoch
    run.train_time = clock
    run.train_cpu_time = cpu_clock
    run.final_accuracy = run.curve_accuracy[-1] if run.curve_accuracy else 0.0
    run.mean_layers_backpropagated = layers_total / max(step, 1)
    run.mean_backward_flops_per_step = flops_total / max(step, 1)
    return run


# ---------------------------------------------------------------------------------------- the benchmark
def summarize(runs: Sequence[Run], methods: Sequence[str]) -> tuple[dict, dict]:
    """Per-method summaries and per-seed paired ratios (Muon / X, for time and backward FLOPs)."""
    by = {m: {r.seed: r for r in runs if r.method == m} for m in methods}
    summary = {}
    for m in methods:
        rs = list(by[m].values())
        summary[m] = {
            "reached": sum(r.reached for r in rs), "runs": len(rs),
            "time_to_target": spread([r.time_to_target for r in rs]),
            "cpu_time_to_target": spread([r.cpu_time_to_target for r in rs]),
            "steps_to_target": spread([r.steps_to_target for r in rs if r.steps_to_target is not None]),
            "backward_flops_to_target": spread([r.backward_flops_to_target for r in rs]),
            "mean_layers_backpropagated": spread([r.mean_layers_backpropagated for r in rs]),
            "time_per_step": spread([r.train_time / r.steps for r in rs if r.steps]),
        }
    ratios = {}
    if "muon" in methods:
        for m in methods:
            if m == "muon":
                continue
            seeds = sorted(set(by["muon"]) & set(by[m]))
            t = [by["muon"][s].time_to_target / by[m][s].time_to_target for s in seeds]
            c = [by["muon"][s].cpu_time_to_target / by[m][s].cpu_time_to_target for s in seeds]
            f = [by["muon"][s].backward_flops_to_target / by[m][s].backward_flops_to_target for s in seeds]
            step_time = [(by["muon"][s].train_time / max(by["muon"][s].steps, 1))
                         / (by[m][s].train_time / max(by[m][s].steps, 1)) for s in seeds]
            ratios[f"muon/{m}"] = {
                "time_to_target": {**spread([x for x in t if math.isfinite(x) and x > 0]),
                                   "per_seed": dict(zip(seeds, t))},
                "cpu_time_to_target": {**spread([x for x in c if math.isfinite(x) and x > 0]),
                                       "per_seed": dict(zip(seeds, c))},
                "backward_flops_to_target": {**spread([x for x in f if math.isfinite(x) and x > 0]),
                                             "per_seed": dict(zip(seeds, f))},
                "time_per_step": spread(step_time),
            }
    return summary, ratios


def run_benchmark(cfg: Config, *, progress: bool | None = None, out: Path | None = None,
                  plot: bool | None = None) -> dict[str, Any]:
    """All methods x seeds (seeds interleaved), then summaries, ratios, the JSON and the plot.

    ``progress`` and ``plot`` default to the settings' own; the JSON and the plot are written to ``out`` only
    when it is given (the command line passes ``cfg.out``)."""
    cfg.validate()
    progress = cfg.progress if progress is None else progress
    plot = cfg.plot if plot is None else plot
    with thread_limit(cfg.threads, blas=None):
        threads = torch.get_num_threads()
        data = load_digits(cfg.resolution, cfg.test_fraction)
        # Untimed warm-up: first-call costs (allocator, kernels, lazy imports) paid by nobody.
        if cfg.warmup_steps:
            for m in cfg.methods:
                train_one(m, 0, cfg, data, max_steps=cfg.warmup_steps, stop_at_target=False)
        jobs = [(m, seed) for seed in range(cfg.seeds) for m in cfg.methods]
        runs: list[Run] = []
        with tqdm(total=len(jobs), desc="drop-muon", unit="run", disable=not progress, file=sys.stderr) as bar:
            for m, seed in jobs:
                runs.append(train_one(m, seed, cfg, data, bar=bar))
                bar.update(1)
        summary, ratios = summarize(runs, cfg.methods)
        muon_names = Trainer("muon", build_model(cfg.channels, cfg.resolution), cfg, 0).muon_names \
            if any(m != "adamw" for m in cfg.methods) else []
    costs = block_costs(cfg.channels, cfg.resolution)
    result = {
        "config": {k: v for k, v in config_to_dict(cfg).items() if k not in ("out", "plot", "progress")},
        "provenance": provenance(threads),
        "data": {"name": "sklearn digits", "n_train": int(len(data[1])), "n_test": int(len(data[3])),
                 "resolution": cfg.resolution, "upsampled": cfg.resolution != 8},
        "model": {"blocks": costs.num_blocks, "forward_flops_per_sample": list(costs.forward),
                  "backward_flops_per_sample_by_cutoff": [costs.backward(s) for s in range(costs.num_blocks)],
                  "muon_parameters": muon_names},
        "runs": [asdict(r) for r in runs],
        "summary": summary,
        "ratios": ratios,
    }
    if out is not None:
        save_json(result, out, JSON_NAME)
        if plot:
            plot_curves(runs, cfg, Path(out) / PLOT_NAME)
            result["plot"] = str(Path(out) / PLOT_NAME)
    return result


STYLES = {"adamw": "tab:gray", "muon": "tab:blue", "drop-muon-uniform": "tab:orange", "drop-muon-shift": "tab:green"}


def plot_curves(runs: Sequence[Run], cfg: Config, path: Path | str, title: str | None = None) -> None:
    """Accuracy against training wall-clock (evaluation time excluded), one line per run."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    seen = set()
    for r in runs:
        label = r.method if r.method not in seen else None
        seen.add(r.method)
        ax.plot(r.curve_time, r.curve_accuracy, color=STYLES.get(r.method), linewidth=1.2, alpha=0.85,
                label=label, marker=".", markersize=2)
    ax.axhline(cfg.target, color="k", linestyle=":", linewidth=0.8)
    ax.set_xlabel("training wall-clock (s; evaluation excluded)")
    ax.set_ylabel(f"{cfg.metric} accuracy")
    ax.set_ylim(max(0.0, cfg.target - 0.3), 1.0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"digits {cfg.resolution}x{cfg.resolution}, channels {list(cfg.channels)}, "
                          f"batch {cfg.batch_size}; dotted: target {cfg.target:g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_summary(result: dict[str, Any]) -> str:
    """A short plain-text table of the ratios (what the CLI prints)."""
    lines = [f"{'ratio':<24} {'quantity':<26} {'median':>8} {'min':>8} {'max':>8} {'n':>3}"]
    for name, r in result["ratios"].items():
        for q in ("time_to_target", "cpu_time_to_target", "backward_flops_to_target", "time_per_step"):
            s = r[q]
            lines.append(f"{name:<24} {q:<26} {s['median']:>8.3f} {s['min']:>8.3f} {s['max']:>8.3f} {s['n']:>3}")
    for m, s in result["summary"].items():
        lines.append(f"{m:<18} reached {s['reached']}/{s['runs']}, median time to target "
                     f"{s['time_to_target']['median']:.2f} s, mean layers backpropagated "
                     f"{s['mean_layers_backpropagated']['median']:.2f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- report section
@register_section("drop-muon", "Drop-Muon: time to a target accuracy on a small CNN", order=51)
def report_section(ctx: ReportContext) -> SectionResult:
    preset = "smoke" if ctx.quick else "quick"
    cfg = Config(**PRESETS[preset], threads=ctx.config.threads or 1, out=None, plot=False,
                 progress=bool(getattr(ctx.config, "progress", False)))
    path, rel_path = ctx.figure(PLOT_NAME)
    result = run_benchmark(cfg)
    runs = [Run(**r) for r in result["runs"]]
    plot_curves(runs, cfg, path)
    rrows = []
    for name, r in result["ratios"].items():
        t, c, f, st = (r["time_to_target"], r["cpu_time_to_target"], r["backward_flops_to_target"],
                       r["time_per_step"])
        rrows.append([name, fmt_num(t["median"], 3), f"{fmt_num(t['min'], 3)} – {fmt_num(t['max'], 3)}",
                      fmt_num(c["median"], 3), fmt_num(f["median"], 3), fmt_num(st["median"], 3), t["n"]])
    mrows = [[m, f"{s['reached']}/{s['runs']}", fmt_time(s["time_to_target"]["median"]),
              fmt_num(s["steps_to_target"]["median"], 3), fmt_num(s["mean_layers_backpropagated"]["median"], 3)]
             for m, s in result["summary"].items()]
    missed = [f"{m} ({s['runs'] - s['reached']} of {s['runs']})" for m, s in result["summary"].items()
              if s["reached"] < s["runs"]]
    command = f"`python -m scale.bench.drop_muon_digits --preset {preset}`"
    scope = (f"the benchmark's smoke configuration ({command}: runs of a fraction of a second, so the ratios are "
             "dominated by noise)" if ctx.quick else f"the benchmark's quick configuration ({command})")
    text = (
        "Drop-Muon (Gruntkowska, Maziane, Qu & Richtárik 2025, arXiv:2510.02239) against full-network Muon "
        f"(Jordan et al. 2024) on a small CNN: scikit-learn's digits, {describe_images(cfg.resolution)}, "
        f"conv channels {list(cfg.channels)} + linear head ({len(cfg.channels) + 1} blocks), batch "
        f"{cfg.batch_size}, Muon lr {cfg.lr:g}, {cfg.seeds} seed(s), target {cfg.metric} accuracy {cfg.target:g} "
        f"within {cfg.max_epochs:g} epochs. "
        "Drop-Muon draws a cutoff block per step (uniformly, or shifted from shallow to deep with training "
        "progress), runs the blocks below it without autograd and updates only the blocks from it up. Muon on "
        "every conv but the first (the routing rule), AdamW on the rest. Time "
        "is training wall-clock with evaluation paused (AlgoPerf's time to target); ratios are per seed, "
        "Muon / method (above 1: the method is faster), median and min – max over seeds; the process's CPU "
        f"time is less sensitive than wall-clock to other load on the machine. This is {scope}; without a preset "
        "the command runs the full benchmark."
        + (f" Runs that missed the target (their ratios are n/a): {', '.join(missed)}." if missed else "")
        + "\n\n"
        + md_table(["ratio", "time to target (median)", "min – max", "CPU time to target",
                    "backward FLOPs to target", "time per step", "seeds"], rrows)
        + "\n\n" + md_table(["method", "reached", "median time to target", "median steps",
                               "blocks backpropagated per step"], mrows)
        + f"\n\n![Drop-Muon accuracy against wall-clock]({rel_path})"
    )
    return SectionResult(text, [rel_path])


# ---------------------------------------------------------------------------------------- command line
def _run(cfg: Config) -> int:
    result = run_benchmark(cfg, out=cfg.out)
    print(format_summary(result))
    if cfg.out is not None:
        print(f"results written to {Path(cfg.out) / JSON_NAME}")
    return 0


COMMAND = Command(
    prog="python -m scale.bench.drop_muon_digits",
    description=(
        "Time to a target accuracy of Drop-Muon (Gruntkowska, Maziane, Qu & Richtárik 2025, arXiv:2510.02239) "
        "against full-network Muon (Jordan et al. 2024) and AdamW, on a small CNN trained on scikit-learn's "
        "8x8 digits (upsampled to --resolution when it is above 8). Drop-Muon draws a cutoff block s per step, "
        "runs the blocks below s without autograd and updates only blocks >= s. The clock covers forward, "
        f"backward and optimizer step only (evaluation paused). Writes OUT/{JSON_NAME} and OUT/{PLOT_NAME} "
        "and prints the per-seed ratios Muon time / method time. Presets: quick (the report's configuration, "
        "about a minute), smoke (the report's --quick one, a few seconds)."),
    config=Config, run=_run, presets=PRESETS,
)
main = COMMAND.main

if __name__ == "__main__":
    raise SystemExit(main())
