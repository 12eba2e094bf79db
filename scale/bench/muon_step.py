"""Muon's optimizer step against ``torch.optim.Muon``: median step time on the same parameters and gradients.

Both optimizers run with the settings under which their updates are equal: EMA momentum 0.95 with Nesterov,
Keller Jordan's quintic Newton–Schulz iteration (5 steps, bfloat16) and the ``sqrt(max(1, m/n))`` learning-rate
scaling (Jordan et al. 2024, "Muon: an optimizer for hidden layers"). The two are timed in one process,
interleaved step by step with the order alternating, after a warm-up; the figure is the ratio optlib / torch
(below 1: optlib's step is faster). ``python -m scale.bench.muon_step --help``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from optlib.optim import Muon
from scale.cli import Command, option

from .common import (
    ReportContext,
    SectionResult,
    fmt_num,
    fmt_time,
    md_table,
    provenance,
    register_section,
    save_json,
    thread_limit,
)

# Shape sets: the hidden matrices of a 2-layer GPT of width 128 (per layer four 128x128 attention matrices and
# the 512x128 / 128x512 MLP pair), four square 1024x1024 matrices, two tall 4096x1024 ones.
STEP_SHAPES = {
    "tiny-gpt": [(128, 128)] * 8 + [(512, 128), (128, 512)] * 2,
    "1024x1024": [(1024, 1024)] * 4,
    "4096x1024": [(4096, 1024)] * 2,
}
STEP_IMPLS = ("optlib", "torch")
JSON_NAME = "muon_step.json"


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
    with thread_limit(threads, blas=None):
        opts = {impl: muon_optimizer(impl, step_params(shapes)) for impl in STEP_IMPLS}
        times: dict[str, list[float]] = {impl: [] for impl in STEP_IMPLS}
        for k in range(warmup + steps):
            for impl in STEP_IMPLS if k % 2 == 0 else STEP_IMPLS[::-1]:
                t0 = time.perf_counter()
                opts[impl].step()
                dt = time.perf_counter() - t0
                if k >= warmup:
                    times[impl].append(dt)
    out = {impl: statistics.median(v) for impl, v in times.items()}
    out["ratio"] = out["optlib"] / out["torch"]
    return out


def _count(shapes: Sequence[tuple[int, int]]) -> dict[tuple[int, int], int]:
    out: dict[tuple[int, int], int] = {}
    for s in shapes:
        out[s] = out.get(s, 0) + 1
    return out


@dataclass
class Config:
    """Which shape sets to time, and how long."""

    shapes: tuple[str, ...] = option(tuple(STEP_SHAPES), "shape sets to time", choices=tuple(STEP_SHAPES))
    steps: int = option(7, "timed steps per implementation (the large sets take seconds per step on a CPU)")
    warmup: int = option(2, "untimed steps per implementation before the timed ones")
    threads: int = option(1, "torch threads (0 keeps torch's choice)")
    out: Path = option(Path("reports/muon_step"), "output folder for muon_step.json")

    def validate(self) -> None:
        """A ``ValueError`` naming the option for settings the benchmark cannot run with."""
        unknown = [s for s in self.shapes if s not in STEP_SHAPES]
        if unknown or not self.shapes:
            raise ValueError(f"--shapes needs one or more of {', '.join(STEP_SHAPES)}, got {', '.join(unknown)}")
        if self.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {self.steps}")
        if self.warmup < 0 or self.threads < 0:
            raise ValueError(f"--warmup and --threads must be >= 0, got {self.warmup} and {self.threads}")


# The report's timed and warm-up steps per shape set (few on the large sets: seconds per step on a CPU).
REPORT_STEPS = {"tiny-gpt": (7, 2), "1024x1024": (3, 1), "4096x1024": (3, 1)}
PRESETS = {
    "report": {"shapes": tuple(REPORT_STEPS)},
    "smoke": {"shapes": ("tiny-gpt",), "steps": 3, "warmup": 1},
}


def run_benchmark(cfg: Config, steps_per_set: dict[str, tuple[int, int]] | None = None) -> dict:
    """``{"provenance", "config", "times": {shape set: {optlib, torch, ratio}}}``."""
    cfg.validate()
    times = {}
    for name in cfg.shapes:
        steps, warm = (steps_per_set or {}).get(name, (cfg.steps, cfg.warmup))
        times[name] = muon_step_times(STEP_SHAPES[name], steps=steps, warmup=warm, threads=cfg.threads)
    return {"provenance": provenance(cfg.threads), "config": {"shapes": list(cfg.shapes), "steps": cfg.steps,
                                                              "warmup": cfg.warmup}, "times": times}


@register_section("muon-step", "Muon step time against torch.optim.Muon", order=50)
def report_section(ctx: ReportContext) -> SectionResult:
    threads = ctx.config.threads or 1
    if ctx.quick:
        cfg = Config(**PRESETS["smoke"], threads=threads)
        result = run_benchmark(cfg)
    else:
        cfg = Config(**PRESETS["report"], threads=threads)
        result = run_benchmark(cfg, REPORT_STEPS)
    rows = []
    for name, t in result["times"].items():
        shapes = ", ".join(f"{n}x {m}x{k}" for (m, k), n in _count(STEP_SHAPES[name]).items())
        rows.append([name, shapes, fmt_time(t["optlib"]), fmt_time(t["torch"]), fmt_num(t["ratio"], 3)])
    text = (
        "One optimizer step on the same parameters and gradients, both with EMA momentum 0.95 + Nesterov, "
        "Keller Jordan's quintic Newton–Schulz (5 steps, bfloat16) and the sqrt(max(1, m/n)) lr scaling "
        "(settings under which the two updates are equal). Median over interleaved steps after a warm-up, "
        f"{threads} torch thread(s). Ratio below 1: optlib's step is faster. Few steps are timed on the large "
        "sets, so their ratios are rough; `benchmarks/muon.py` (asv) repeats them.\n\n"
        + md_table(["shapes", "matrices", "optlib", "torch", "ratio optlib/torch"], rows)
    )
    return SectionResult(text)


def _run(cfg: Config) -> int:
    result = run_benchmark(cfg)
    for name, t in result["times"].items():
        print(f"{name:<10} optlib {fmt_time(t['optlib'])}, torch {fmt_time(t['torch'])}, ratio {t['ratio']:.3f}")
    print(f"results written to {save_json(result, cfg.out, JSON_NAME)}")
    return 0


COMMAND = Command(
    prog="python -m scale.bench.muon_step",
    description=(
        "Median step time of optlib.optim.Muon against torch.optim.Muon on the same parameters and gradients, "
        "both with the settings under which their updates are equal: EMA momentum 0.95 with Nesterov, Keller "
        "Jordan's quintic Newton-Schulz (5 steps, bfloat16) and the sqrt(max(1, m/n)) lr scaling (Jordan et al. "
        "2024). The two are timed in one process, interleaved step by step with the order alternating, after "
        "a warm-up. Prints the ratio optlib / torch per shape set (below 1: optlib's step is faster) and writes "
        f"OUT/{JSON_NAME}. Presets: report (the report's shape sets), smoke (tiny-gpt, a few steps)."),
    config=Config, run=_run, presets=PRESETS,
)
main = COMMAND.main

if __name__ == "__main__":
    raise SystemExit(main())
