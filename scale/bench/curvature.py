"""GGN-vector products against curvlinops, and the K-FAC optimizer's step overhead against SGD.

``python -m scale.bench.curvature`` measures, in one process and on the same model and batch:

* **GGN-vector product time**: ``optlib.curvature.GGN(model, CrossEntropyLoss(), params, [(X, y)]) @ v``
  against curvlinops' ``GGNLinearOperator`` (``pip install curvlinops-for-pytorch``) on an MLP (default
  784-256-256-10, batch 128, float32, as in the MNIST setting of the K-FAC papers: Martens & Grosse 2015,
  "Optimizing neural networks with Kronecker-factored approximate curvature"). Both multiply the same flat
  vector; both compute Jᵀ(∇²_z ℓ)J v by a forward-mode JVP, the output-space Hessian and a VJP (Schraudolph
  2002, "Fast curvature matrix-vector products for second-order gradient descent"; spec 50 §2). The two are
  interleaved call by call (order alternating) after a warm-up, and the headline is the ratio of medians
  optlib / curvlinops (below 1: optlib is faster).
* **K-FAC step overhead**: one training step (forward, cross-entropy, backward, optimizer step) with
  ``optlib.optim.KFAC`` (true Fisher by sampling, factors every step, eigendecompositions every
  ``--inv-update-freq`` steps) against ``torch.optim.SGD`` on the same model and batch, interleaved; the ratio
  of median step times KFAC / SGD is the overhead (1 = free). The K-FAC steps cycle through the inverse
  refresh, so the median reflects the common step and ``mean`` the amortized cost.

Timings on a shared machine are only meaningful as these ratios (spec 90); absolute times are recorded
with the load average. Writes ``OUT/curvature_bench.json``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from optlib.curvature import GGN
from optlib.optim.kfac import KFAC
from scale.cli import Command, config_to_dict, option

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

JSON_NAME = "curvature_bench.json"
DTYPES = ("float32", "float64")
# Config fields that say where and how a run reports, not what it measures (left out of the JSON's config).
_RUN_ONLY = ("out",)


@dataclass
class Config:
    """The model, batch and timing settings of one run (recorded in the JSON)."""

    widths: tuple[int, ...] = option((784, 256, 256, 10), "layer widths of the MLP (input ... output)")
    batch_size: int = option(128, "batch size")
    dtype: str = option("float32", "model and data dtype", choices=DTYPES)
    repeats: int = option(15, "timed GGN-vector products per implementation")
    warmup: int = option(3, "untimed calls (products and training steps) before timing")
    kfac_steps: int = option(20, "timed training steps per optimizer")
    inv_update_freq: int = option(10, "K-FAC steps between eigendecompositions of the factors")
    threads: int = option(1, "torch threads (0 keeps torch's choice)")
    seed: int = option(0, "seed of the model and the batch")
    out: Path = option(Path("reports/curvature"), f"output folder for {JSON_NAME} (created if missing)")

    def validate(self) -> None:
        if len(self.widths) < 2 or any(w < 1 for w in self.widths):
            raise ValueError(f"--widths needs at least two positive layer widths, got {list(self.widths)}.")
        for name in ("batch_size", "repeats", "kfac_steps", "inv_update_freq"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be at least 0, got {self.warmup}.")
        if self.threads < 0:
            raise ValueError(f"--threads must be at least 0 (0 keeps torch's choice), got {self.threads}.")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}.")


# "report": what the report's default mode runs (the MNIST-sized MLP, fewer repeats than the CLI's default);
# "smoke": the report's quick mode, a few seconds.
PRESETS: dict[str, dict[str, Any]] = {
    "report": {"widths": (784, 256, 256, 10), "batch_size": 128, "repeats": 9, "warmup": 2, "kfac_steps": 20},
    "smoke": {"widths": (64, 32, 10), "batch_size": 32, "repeats": 3, "warmup": 1, "kfac_steps": 4},
}


def build(cfg: Config) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The MLP (ReLU between Linear layers) and one batch of Gaussian inputs with random labels."""
    torch.manual_seed(cfg.seed)
    layers: list[nn.Module] = []
    w = list(cfg.widths)
    for i in range(len(w) - 1):
        layers.append(nn.Linear(w[i], w[i + 1]))
        if i < len(w) - 2:
            layers.append(nn.ReLU())
    dtype = getattr(torch, cfg.dtype)
    model = nn.Sequential(*layers).to(dtype)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    X = torch.randn(cfg.batch_size, w[0], generator=g, dtype=dtype)
    y = torch.randint(0, w[-1], (cfg.batch_size,), generator=g)
    return model, X, y


def _interleaved(fns: dict[str, Any], repeats: int, warmup: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(warmup + repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            fns[name]()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(dt)
    return times


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def ggn_vp_times(cfg: Config) -> dict[str, Any]:
    """Median GGN-vector product times of optlib and curvlinops (``ratio`` None if curvlinops is missing)."""
    model, X, y = build(cfg)
    params = {n: p for n, p in model.named_parameters()}
    ours = GGN(model, nn.CrossEntropyLoss(), params, [(X, y)])
    v = torch.randn(ours.n, generator=torch.Generator().manual_seed(cfg.seed + 2), dtype=X.dtype)
    fns = {"optlib": lambda: ours @ v}
    try:
        import curvlinops  # optional: the anchor of the comparison
    except ImportError:
        curvlinops = None
    if curvlinops is not None:
        theirs = curvlinops.GGNLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()), [(X, y)],
                                              check_deterministic=False)
        diff = float((ours @ v - theirs @ v).abs().max() / (theirs @ v).abs().max())
        fns["curvlinops"] = lambda: theirs @ v
    times = _interleaved(fns, cfg.repeats, cfg.warmup)
    out: dict[str, Any] = {k: statistics.median(t) for k, t in times.items()}
    out["n_params"] = ours.n
    if curvlinops is not None:
        out["ratio"] = out["optlib"] / out["curvlinops"]
        out["max_relative_difference"] = diff
        out["curvlinops_version"] = getattr(curvlinops, "__version__", None) or _version("curvlinops-for-pytorch")
    else:
        out["ratio"] = None
    out["samples"] = times
    return out


def kfac_step_times(cfg: Config) -> dict[str, Any]:
    """Median and mean training-step times of optlib.optim.KFAC and torch.optim.SGD (interleaved)."""
    runs = {}
    for name in ("kfac", "sgd"):
        model, X, y = build(cfg)
        opt = KFAC(model, lr=1e-3, damping=1e-2, kl_clip=None, inv_update_freq=cfg.inv_update_freq) if name == "kfac" \
            else torch.optim.SGD(model.parameters(), lr=1e-3)
        runs[name] = (model, opt, X, y)

    def step(name: str) -> None:
        model, opt, X, y = runs[name]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(X), y).backward()
        opt.step()

    times = _interleaved({k: (lambda k=k: step(k)) for k in runs}, cfg.kfac_steps, cfg.warmup)
    out: dict[str, Any] = {}
    for k, t in times.items():
        out[k] = {"median": statistics.median(t), "mean": statistics.fmean(t)}
    out["ratio_median"] = out["kfac"]["median"] / out["sgd"]["median"]
    out["ratio_mean"] = out["kfac"]["mean"] / out["sgd"]["mean"]
    out["samples"] = times
    return out


def run_benchmark(cfg: Config) -> dict[str, Any]:
    """``{"config", "provenance", "ggn_vp": ggn_vp_times, "kfac_step": kfac_step_times}``, with ``cfg.threads``
    torch threads (BLAS pools left alone, as before the move to :mod:`scale.bench`)."""
    cfg.validate()
    with thread_limit(cfg.threads, blas=None):
        prov = provenance(torch.get_num_threads())
        ggn = ggn_vp_times(cfg)
        kfac = kfac_step_times(cfg)
    record = {k: v for k, v in config_to_dict(cfg).items() if k not in _RUN_ONLY}
    return {"config": record, "provenance": prov, "ggn_vp": ggn, "kfac_step": kfac}


def format_summary(result: dict[str, Any]) -> str:
    g, k = result["ggn_vp"], result["kfac_step"]
    lines = [f"GGN-vector product ({g['n_params']} parameters): optlib {g['optlib'] * 1e3:.2f} ms"]
    if g.get("ratio") is not None:
        lines[-1] += (f", curvlinops {g['curvlinops'] * 1e3:.2f} ms, ratio optlib/curvlinops {g['ratio']:.3f} "
                      f"(max relative difference {g['max_relative_difference']:.1e})")
    else:
        lines[-1] += " (curvlinops not installed: no ratio)"
    lines.append(f"training step: K-FAC {k['kfac']['median'] * 1e3:.2f} ms, SGD {k['sgd']['median'] * 1e3:.2f} ms "
                 f"(medians); overhead K-FAC/SGD {k['ratio_median']:.2f} (median), {k['ratio_mean']:.2f} (mean)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- report section
@register_section("curvature", "Curvature: GGN products and K-FAC overhead", order=80)
def report_section(ctx: ReportContext) -> SectionResult:
    threads = ctx.config.threads or 1
    cfg = Config(**PRESETS["smoke" if ctx.quick else "report"], threads=threads)
    res = run_benchmark(cfg)
    g, k = res["ggn_vp"], res["kfac_step"]
    rows = [["GGN-vector product", fmt_time(g["optlib"]),
             fmt_time(g["curvlinops"]) if g.get("ratio") is not None else "not installed",
             fmt_num(g["ratio"], 3) if g.get("ratio") is not None else "—"]]
    krows = [["median", fmt_time(k["kfac"]["median"]), fmt_time(k["sgd"]["median"]), fmt_num(k["ratio_median"], 3)],
             ["mean", fmt_time(k["kfac"]["mean"]), fmt_time(k["sgd"]["mean"]), fmt_num(k["ratio_mean"], 3)]]
    text = (
        f"**GGN-vector products against curvlinops.** MLP {'-'.join(map(str, cfg.widths))} ({g['n_params']} "
        f"parameters), batch {cfg.batch_size}, {cfg.dtype}, cross-entropy (mean), {threads} torch thread(s). "
        "Both compute Jᵀ(∇²_z ℓ)J v with a forward-mode JVP, the output Hessian and a VJP; calls interleaved, "
        f"median of {cfg.repeats} after {cfg.warmup} warm-up calls. Ratio below 1: optlib is faster.\n\n"
        + md_table(["product", "optlib", "curvlinops", "ratio optlib/curvlinops"], rows)
        + f"\n\n**K-FAC step overhead.** One training step (forward, loss, backward, optimizer step) of "
        "`optlib.optim.KFAC` (true Fisher by sampling, factors every step, eigendecompositions every "
        f"{cfg.inv_update_freq} steps) against `torch.optim.SGD`, same model and batch, interleaved, "
        f"{cfg.kfac_steps} steps each. The mean includes the periodic eigendecompositions.\n\n"
        + md_table(["statistic", "K-FAC", "SGD", "ratio K-FAC/SGD"], krows)
    )
    return SectionResult(text, [])


# ---------------------------------------------------------------------------------------- CLI
def _run(cfg: Config) -> int:
    result = run_benchmark(cfg)
    print(format_summary(result))
    print(f"results written to {save_json(result, cfg.out, JSON_NAME)}")
    return 0


COMMAND = Command(
    prog="python -m scale.bench.curvature",
    description=(
        "GGN-vector product time of optlib.curvature.GGN against curvlinops' GGNLinearOperator, and the training-step "
        "overhead of optlib.optim.KFAC against torch.optim.SGD, on the same MLP and batch, interleaved; prints medians "
        f"and ratios and writes OUT/{JSON_NAME}."),
    config=Config, run=_run, presets=PRESETS,
)
main = COMMAND.main

if __name__ == "__main__":
    raise SystemExit(main())
