"""Drop-Muon against Muon and AdamW: wall-clock time to a target accuracy on a small CNN.

``python -m scale.dropmuon`` reproduces, at CPU scale, the experiment behind the claim of
Gruntkowska, Maziane, Qu & Richtárik, "Drop-Muon: Update Less, Converge Faster" (arXiv:2510.02239):
randomized progressive training reaches the accuracy of full-network Muon (Jordan et al., 2024) in
less wall-clock time. The paper trains a 3-conv CNN plus a linear head on MNIST-like data with batch
8192 and channels [64, 128, 256]; here the data are scikit-learn's bundled digits (8x8 images,
upsampled to ``--resolution``; no package on the registry ships MNIST inside its wheel in a form that
installs offline), so everything runs on a laptop CPU in minutes.

Methods (all on the same model, data order and initialization per seed):

* ``adamw``: AdamW on every parameter, full backward pass.
* ``muon``: Muon on the conv filters (the routing of :func:`optlib.optim.muon_param_groups`: by default
  every conv but the first, ``--first-conv``), AdamW on the head, the biases and the first conv; full
  backward pass. The Newton–Schulz iteration runs in float32 by default (``--ns-dtype``).
* ``drop-uniform``: Drop-Muon with the cutoff ``s`` drawn uniformly from the ``b`` blocks at every step.
  Blocks ``< s`` run under ``torch.no_grad`` (:func:`optlib.optim.progressive.progressive_forward`), so
  the backward pass really stops at block ``s``; their parameters keep ``p.grad is None`` and neither
  their weights nor their optimizer state move.
* ``drop-shift``: Drop-Muon whose cutoff distribution moves from shallow to deep with training progress
  (``p_i ∝ exp(α[(1 − u)(b − 1 − i) + u·i])``, ``u = min(1, epoch / shift_epochs)``): early steps update
  the whole network, later ones mostly the top blocks.

What is measured follows AlgoPerf's time-to-target (spec 90 §2): the training clock runs over the
forward pass, the backward pass and the optimizer step only; it is paused while the accuracy is
evaluated (every ``--eval-every`` steps). The time to target is the clock at the first evaluation
whose accuracy reaches ``--target``. Alongside it, a hardware-independent cost (the number of blocks
backpropagated per step and an analytic backward-FLOP count: weight gradients of every trained block,
input gradients of every trained block above the cutoff) and the process's CPU time over the same
intervals (less sensitive than wall-clock to other programs on a small shared machine). All methods
run in one process, seeds interleaved, so that a change of machine load hits them alike; the headline numbers are per-seed
ratios (Muon time / Drop-Muon time) with their spread.

Outputs in ``--out``: ``dropmuon.json`` (configuration, provenance, every run's curve, summaries and
ratios) and ``dropmuon_accuracy.png`` (accuracy against training wall-clock, one line per run).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
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

from .compare import provenance
from .records import json_safe

METHODS = ("adamw", "muon", "drop-uniform", "drop-shift")
DROP_METHODS = ("drop-uniform", "drop-shift")
JSON_NAME = "dropmuon.json"
PLOT_NAME = "dropmuon_accuracy.png"


# ---------------------------------------------------------------------------------------- configuration
@dataclass
class Config:
    """Everything one benchmark run depends on (recorded in the JSON)."""

    methods: Sequence[str] = METHODS
    seeds: int = 3
    target: float = 0.99
    metric: str = "train"
    batch_size: int = 128
    channels: Sequence[int] = (16, 32, 64)
    resolution: int = 32
    lr: float = 0.02
    momentum: float = 0.95
    adamw_lr: float = 3e-3
    first_conv: str = "adamw"
    ns_dtype: str = "float32"
    shift_alpha: float = 0.5
    shift_epochs: float = 10.0
    max_epochs: float = 40.0
    max_steps: int | None = None
    time_limit: float = 120.0
    eval_every: int = 4
    threads: int = 1
    test_fraction: float = 0.2
    warmup_steps: int = 3

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
        if self.seeds < 1:
            raise ValueError("--seeds must be at least 1")
        if not 0.0 < self.target <= 1.0:
            raise ValueError("--target is an accuracy in (0, 1]")
        if self.metric not in ("train", "test"):
            raise ValueError("--metric must be 'train' or 'test'")
        if self.batch_size < 1 or self.eval_every < 1:
            raise ValueError("--batch-size and --eval-every must be at least 1")
        if len(self.channels) < 1 or any(c < 1 for c in self.channels):
            raise ValueError("--channels needs at least one positive width")
        if self.resolution < 8 or self.resolution % (2 ** len(self.channels)):
            raise ValueError(f"--resolution must be >= 8 and divisible by 2**len(channels) = {2 ** len(self.channels)}")
        if self.lr <= 0 or self.adamw_lr <= 0:
            raise ValueError("learning rates must be positive")
        if self.ns_dtype not in ("float32", "bfloat16"):
            raise ValueError("--ns-dtype must be 'float32' or 'bfloat16'")
        if self.first_conv not in ("muon", "adamw"):
            raise ValueError("--first-conv must be 'muon' or 'adamw'")


# ---------------------------------------------------------------------------------------- data and model
def load_digits(resolution: int, test_fraction: float = 0.2, split_seed: int = 0):
    """scikit-learn's digits as ``(x_train, y_train, x_test, y_test)``: standardized, upsampled to
    ``resolution`` x ``resolution`` (bilinear), one fixed stratified split."""
    from sklearn.datasets import load_digits as _load
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
    from optlib.optim.progressive import block_costs as _costs

    return _costs(list(build_model(channels, resolution)), torch.zeros(1, 1, resolution, resolution))


# ---------------------------------------------------------------------------------------- optimizers
def _routing(model: nn.Sequential, first_conv: str) -> list[dict]:
    """:func:`optlib.optim.muon_param_groups` on the model: groups with ``use_muon`` True (conv filters) or
    False (head, biases, and the first conv unless ``first_conv == "muon"``)."""
    from optlib.optim import muon_param_groups

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
            from optlib.optim import Muon

            self.optimizers.append(Muon(muon_params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                                        ns_dtype=getattr(torch, cfg.ns_dtype)))
        else:
            from optlib.optim import DropMuon
            from optlib.optim.progressive import epoch_shift

            layer_of = {id(p): i for i, blk in enumerate(model) for p in blk.parameters()}
            layers = [{"params": [p for p in muon_params if layer_of[id(p)] == i], "layer": i}
                      for i in range(self.n_blocks)]
            p = "uniform" if method == "drop-uniform" else epoch_shift(self.n_blocks, cfg.shift_alpha)
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
    from optlib.optim.progressive import progressive_forward

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
def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and interquartile range of finite values (``n`` counts them)."""
    v = sorted(x for x in values if x is not None and math.isfinite(x))
    if not v:
        return {"n": 0, "median": math.nan, "min": math.nan, "max": math.nan, "q25": math.nan, "q75": math.nan}
    q = np.quantile(v, [0.25, 0.75]) if len(v) > 1 else [v[0], v[0]]
    return {"n": len(v), "median": statistics.median(v), "min": v[0], "max": v[-1],
            "q25": float(q[0]), "q75": float(q[1])}


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


def run_benchmark(cfg: Config, *, progress: bool = True, out: Path | None = None,
                  plot: bool = True) -> dict[str, Any]:
    """All methods x seeds (seeds interleaved), then summaries, ratios, the JSON and the plot."""
    cfg.validate()
    old_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        data = load_digits(cfg.resolution, cfg.test_fraction)
        # Untimed warm-up: first-call costs (allocator, kernels, lazy imports) paid by nobody.
        for m in cfg.methods:
            train_one(m, 0, cfg, data, max_steps=cfg.warmup_steps, stop_at_target=False)
        from tqdm.auto import tqdm

        jobs = [(m, seed) for seed in range(cfg.seeds) for m in cfg.methods]
        runs: list[Run] = []
        with tqdm(total=len(jobs), desc="dropmuon", unit="run", disable=not progress, file=sys.stderr) as bar:
            for m, seed in jobs:
                runs.append(train_one(m, seed, cfg, data, bar=bar))
                bar.update(1)
        summary, ratios = summarize(runs, cfg.methods)
        muon_names = Trainer("muon", build_model(cfg.channels, cfg.resolution), cfg, 0).muon_names \
            if any(m != "adamw" for m in cfg.methods) else []
    finally:
        torch.set_num_threads(old_threads)
    costs = block_costs(cfg.channels, cfg.resolution)
    result = {
        "config": {**asdict(cfg), "methods": list(cfg.methods), "channels": list(cfg.channels)},
        "provenance": provenance(cfg.threads if cfg.threads > 0 else old_threads),
        "data": {"name": "sklearn digits", "n_train": int(len(data[1])), "n_test": int(len(data[3])),
                 "resolution": cfg.resolution},
        "model": {"blocks": costs.num_blocks, "forward_flops_per_sample": list(costs.forward),
                  "backward_flops_per_sample_by_cutoff": [costs.backward(s) for s in range(costs.num_blocks)],
                  "muon_parameters": muon_names},
        "runs": [asdict(r) for r in runs],
        "summary": summary,
        "ratios": ratios,
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / JSON_NAME).write_text(json.dumps(json_safe(result), indent=1))
        if plot:
            plot_curves(runs, cfg, out / PLOT_NAME)
            result["plot"] = str(out / PLOT_NAME)
    return result


STYLES = {"adamw": "tab:gray", "muon": "tab:blue", "drop-uniform": "tab:orange", "drop-shift": "tab:green"}


def plot_curves(runs: Sequence[Run], cfg: Config, path: Path | str, title: str | None = None) -> None:
    """Accuracy against training wall-clock (evaluation time excluded), one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    lines = [f"{'ratio':<22} {'quantity':<26} {'median':>8} {'min':>8} {'max':>8} {'n':>3}"]
    for name, r in result["ratios"].items():
        for q in ("time_to_target", "cpu_time_to_target", "backward_flops_to_target", "time_per_step"):
            s = r[q]
            lines.append(f"{name:<22} {q:<26} {s['median']:>8.3f} {s['min']:>8.3f} {s['max']:>8.3f} {s['n']:>3}")
    for m, s in result["summary"].items():
        lines.append(f"{m:<14} reached {s['reached']}/{s['runs']}, median time to target "
                     f"{s['time_to_target']['median']:.2f} s, mean layers backpropagated "
                     f"{s['mean_layers_backpropagated']['median']:.2f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- Muon step time
# Shape sets for the step-time comparison with torch.optim.Muon: the hidden matrices of a 2-layer GPT of
# width 128 (per layer four 128x128 attention matrices and the 512x128 / 128x512 MLP pair), four square
# 1024x1024 matrices, two tall 4096x1024 ones.
STEP_SHAPES = {
    "tiny-gpt": [(128, 128)] * 8 + [(512, 128), (128, 512)] * 2,
    "1024x1024": [(1024, 1024)] * 4,
    "4096x1024": [(4096, 1024)] * 2,
}
STEP_IMPLS = ("optlib", "torch")


def step_params(shapes: Sequence[tuple[int, int]], seed: int = 0) -> list[nn.Parameter]:
    """Parameters of the given shapes with fixed random gradients (the same for every optimizer)."""
    gen = torch.Generator().manual_seed(seed)
    params = []
    for m, n in shapes:
        p = nn.Parameter(torch.randn(m, n, generator=gen) / math.sqrt(n))
        p.grad = torch.randn(m, n, generator=gen)
        params.append(p)
    return params


def muon_optimizer(impl: str, params) -> torch.optim.Optimizer:
    """``optlib.optim.Muon`` or ``torch.optim.Muon`` with equivalent settings: EMA momentum 0.95 with
    Nesterov, Keller's quintic Newton–Schulz (5 steps, bfloat16), lr scaling ``sqrt(max(1, m/n))``."""
    if impl == "optlib":
        from optlib.optim import Muon

        return Muon(params, lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.0, momentum_style="ema",
                    adjust_lr="keller", ns_dtype=torch.bfloat16)
    if impl == "torch":
        return torch.optim.Muon(params, lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.0)
    raise ValueError(f"unknown implementation {impl!r}; use 'optlib' or 'torch'")


def muon_step_times(shapes: Sequence[tuple[int, int]], steps: int = 7, warmup: int = 2,
                    threads: int = 1) -> dict[str, float]:
    """Median step time of each implementation on the same parameters and gradients, measured in one
    process with the two interleaved step by step (order alternating) after ``warmup`` steps each;
    ``ratio`` = optlib / torch."""
    old = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        opts = {impl: muon_optimizer(impl, step_params(shapes)) for impl in STEP_IMPLS}
        times: dict[str, list[float]] = {impl: [] for impl in STEP_IMPLS}
        for k in range(warmup + steps):
            for impl in STEP_IMPLS if k % 2 == 0 else STEP_IMPLS[::-1]:
                t0 = time.perf_counter()
                opts[impl].step()
                dt = time.perf_counter() - t0
                if k >= warmup:
                    times[impl].append(dt)
    finally:
        torch.set_num_threads(old)
    out = {impl: statistics.median(v) for impl, v in times.items()}
    out["ratio"] = out["optlib"] / out["torch"]
    return out


# ---------------------------------------------------------------------------------------- report section
# A configuration that runs in about a minute on a 2-core CPU: small images and channels, an easy target.
QUICK = dict(seeds=3, target=0.95, resolution=16, channels=(8, 16, 32), batch_size=128, eval_every=2,
             max_epochs=30.0, time_limit=20.0, warmup_steps=2, methods=("muon", "drop-uniform", "drop-shift"))
REPORT_STEP_SHAPES = {"tiny-gpt": (7, 2), "1024x1024": (3, 1), "4096x1024": (3, 1)}  # shape set -> (timed steps, warm-up steps)
# The report's --quick mode (a smoke run of a few seconds): one seed, tiny images, the small shape set only.
SMOKE = dict(QUICK, seeds=1, resolution=8, channels=(4, 8), target=0.8, time_limit=5.0, max_epochs=5.0)
SMOKE_STEP_SHAPES = {"tiny-gpt": (3, 1)}


def report_section(ctx) -> Any:
    """The report's "Muon and Drop-Muon" section (registered in :mod:`scale.report`)."""
    from .report import SectionResult, fmt_num, fmt_time, md_table

    threads = ctx.config.threads or 1
    smoke = ctx.config.mode == "quick"
    rows = []
    for name, (steps, warm) in (SMOKE_STEP_SHAPES if smoke else REPORT_STEP_SHAPES).items():
        t = muon_step_times(STEP_SHAPES[name], steps=steps, warmup=warm, threads=threads)
        shapes = ", ".join(f"{n}x {m}x{k}" for (m, k), n in _count(STEP_SHAPES[name]).items())
        rows.append([name, shapes, fmt_time(t["optlib"]), fmt_time(t["torch"]), fmt_num(t["ratio"], 3)])
    text = (
        "**Step time against `torch.optim.Muon`.** One optimizer step on the same parameters and gradients, "
        "both with EMA momentum 0.95 + Nesterov, Keller Jordan's quintic Newton–Schulz (5 steps, bfloat16) and "
        "the sqrt(max(1, m/n)) lr scaling (settings under which the two updates are equal). Median over "
        "interleaved steps after a warm-up, "
        f"{threads} torch thread(s). Ratio below 1: optlib's step is faster. Few steps are timed on the large "
        "sets, so their ratios are rough; `benchmarks/muon.py` (asv) repeats them.\n\n"
        + md_table(["shapes", "matrices", "optlib", "torch", "ratio optlib/torch"], rows)
    )
    cfg = Config(**(SMOKE if smoke else QUICK), threads=threads)
    path, rel_path = ctx.figure(PLOT_NAME)
    result = run_benchmark(cfg, progress=ctx.config.progress, out=None, plot=False)
    runs = [Run(**{k: v for k, v in r.items()}) for r in result["runs"]]
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
    text += (
        "\n\n**Drop-Muon on a small CNN** (Gruntkowska, Maziane, Qu & Richtárik 2025, arXiv:2510.02239; "
        f"Muon: Jordan et al. 2024). scikit-learn's digits upsampled to {cfg.resolution}x{cfg.resolution}, "
        f"conv channels {list(cfg.channels)} + linear head ({len(cfg.channels) + 1} blocks), batch "
        f"{cfg.batch_size}, Muon lr {cfg.lr:g}, {cfg.seeds} seeds, target {cfg.metric} accuracy {cfg.target:g}. "
        "Drop-Muon draws a cutoff block per step (uniformly, or shifted from shallow to deep with training "
        "progress), runs the blocks below it without autograd and updates only the blocks from it up. Muon on "
        "every conv but the first (the routing rule), AdamW on the rest. Time "
        "is training wall-clock with evaluation paused (AlgoPerf's time to target); ratios are per seed, "
        "Muon / method (above 1: the method is faster), median and min – max over seeds; the process's CPU "
        "time is less sensitive than wall-clock to other load on the machine. This is the quick "
        "configuration; `python -m scale.dropmuon` runs the full benchmark.\n\n"
        + md_table(["ratio", "time to target (median)", "min – max", "CPU time to target",
                    "backward FLOPs to target", "time per step", "seeds"], rrows)
        + "\n\n" + md_table(["method", "reached", "median time to target", "median steps",
                               "blocks backpropagated per step"], mrows)
        + f"\n\n![Drop-Muon accuracy against wall-clock]({rel_path})"
    )
    return SectionResult(text, [rel_path])


def _count(shapes: Sequence[tuple[int, int]]) -> dict[tuple[int, int], int]:
    out: dict[tuple[int, int], int] = {}
    for s in shapes:
        out[s] = out.get(s, 0) + 1
    return out


# ---------------------------------------------------------------------------------------- CLI
def parser() -> argparse.ArgumentParser:
    d = Config()
    p = argparse.ArgumentParser(
        prog="python -m scale.dropmuon",
        description=(
            "Time to a target accuracy of Drop-Muon (Gruntkowska, Maziane, Qu & Richtárik 2025, "
            "arXiv:2510.02239) against full-network Muon (Jordan et al. 2024) and AdamW, on a small CNN "
            "trained on scikit-learn's digits. Drop-Muon draws a cutoff block s per step, runs the "
            "blocks below s without autograd and updates only blocks >= s. Writes OUT/dropmuon.json "
            "and OUT/dropmuon_accuracy.png and prints the per-seed ratios Muon time / method time."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--methods", nargs="+", default=list(d.methods), choices=METHODS, metavar="NAME",
                   help=f"methods to compare ({', '.join(METHODS)})")
    p.add_argument("--seeds", type=int, default=d.seeds,
                   help="number of seeds (0..N-1); each seed fixes the initialization, the batch order and "
                        "the cutoff draws, shared by all methods")
    p.add_argument("--target", type=float, default=d.target, help="accuracy that stops a run (in (0, 1])")
    p.add_argument("--metric", choices=("train", "test"), default=d.metric,
                   help="accuracy measured on the training set or on the held-out split")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="mini-batch size")
    p.add_argument("--channels", type=int, nargs="+", default=list(d.channels),
                   help="output channels of the conv blocks (one block per entry; the paper uses 64 128 256)")
    p.add_argument("--resolution", type=int, default=d.resolution,
                   help="side of the images after bilinear upsampling of the 8x8 digits (divisible by "
                        "2**len(channels)); larger images make the early blocks costlier, as on MNIST")
    p.add_argument("--lr", type=float, default=d.lr, help="Muon / Drop-Muon learning rate (spectral radius per step)")
    p.add_argument("--momentum", type=float, default=d.momentum, help="Muon momentum (Nesterov)")
    p.add_argument("--adamw-lr", type=float, default=d.adamw_lr,
                   help="AdamW learning rate (the AdamW baseline, and the head and biases of the Muon methods)")
    p.add_argument("--first-conv", choices=("muon", "adamw"), default=d.first_conv,
                   help="optimizer of the first conv filter in the Muon methods (Keller Jordan's README "
                        "sends it to AdamW; Drop-Muon's paper treats every layer alike)")
    p.add_argument("--ns-dtype", choices=("float32", "bfloat16"), default=d.ns_dtype,
                   help="dtype of the Newton-Schulz iteration in the Muon methods (bfloat16 is what GPUs use; "
                        "on a CPU without bf16 matrix units it is emulated and slow, which would inflate "
                        "Drop-Muon's saving from skipped orthogonalizations)")
    p.add_argument("--shift-alpha", type=float, default=d.shift_alpha,
                   help="drop-shift: sharpness α of p_i ∝ exp(α[(1-u)(b-1-i) + u·i])")
    p.add_argument("--shift-epochs", type=float, default=d.shift_epochs,
                   help="drop-shift: epochs over which the progress u goes from 0 to 1")
    p.add_argument("--max-epochs", type=float, default=d.max_epochs, help="per-run bound on training epochs")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="per-run bound on steps (none by default)")
    p.add_argument("--time-limit", type=float, default=d.time_limit,
                   help="per-run bound on training wall-clock in seconds; a run still short of the target "
                        "then counts as not reached")
    p.add_argument("--eval-every", type=int, default=d.eval_every,
                   help="steps between accuracy evaluations (the clock is paused during them)")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch threads during the benchmark (0 keeps torch's choice); recorded")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps,
                   help="untimed steps per method before the timed runs")
    p.add_argument("--out", type=Path, default=Path("reports/dropmuon"), help="output folder (created if missing)")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="skip the PNG")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    return Config(
        methods=tuple(args.methods), seeds=args.seeds, target=args.target, metric=args.metric,
        batch_size=args.batch_size, channels=tuple(args.channels), resolution=args.resolution, lr=args.lr,
        momentum=args.momentum, adamw_lr=args.adamw_lr, first_conv=args.first_conv, ns_dtype=args.ns_dtype,
        shift_alpha=args.shift_alpha, shift_epochs=args.shift_epochs, max_epochs=args.max_epochs,
        max_steps=args.max_steps, time_limit=args.time_limit, eval_every=args.eval_every,
        threads=args.threads, warmup_steps=args.warmup_steps,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = config_from_args(args)
    try:
        cfg.validate()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = run_benchmark(cfg, progress=args.progress, out=args.out, plot=args.plot)
    print(format_summary(result))
    print(f"results written to {Path(args.out) / JSON_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
