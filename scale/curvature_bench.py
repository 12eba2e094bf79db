"""GGN-vector products against curvlinops, and the K-FAC optimizer's step overhead against SGD.

``python -m scale.curvature_bench`` measures, in one process and on the same model and batch:

* **GGN-vector product time**: ``optlib.curvature.GGN(model, CrossEntropyLoss(), params, [(X, y)]) @ v``
  against curvlinops' ``GGNLinearOperator`` (``pip install curvlinops-for-pytorch``) on an MLP (default
  784-256-256-10, batch 128, float32, as in the MNIST setting of the K-FAC papers). Both multiply the same
  flat vector; both compute Jᵀ(∇²_z ℓ)J v by a forward-mode JVP, the output-space Hessian and a VJP (spec
  50 §2). The two are interleaved call by call (order alternating) after a warm-up, and the headline is the
  ratio of medians optlib / curvlinops (below 1: optlib is faster).
* **K-FAC step overhead**: one training step (forward, cross-entropy, backward, optimizer step) with
  ``optlib.optim.KFAC`` (true Fisher by sampling, factors every step, eigendecompositions every
  ``--inv-update-freq`` steps) against ``torch.optim.SGD`` on the same model and batch, interleaved; the ratio
  of median step times KFAC / SGD is the overhead (1 = free). The K-FAC steps cycle through the inverse
  refresh, so the median reflects the common step and ``mean`` the amortized cost.

Timings on a shared machine are only meaningful as these ratios (spec 90); absolute times are recorded
with the load average. Writes ``OUT/curvature_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .compare import provenance

JSON_NAME = "curvature_bench.json"


@dataclass
class Config:
    """Everything a run depends on (recorded in the JSON)."""

    widths: Sequence[int] = (784, 256, 256, 10)
    batch_size: int = 128
    dtype: str = "float32"
    repeats: int = 15
    warmup: int = 3
    kfac_steps: int = 20
    inv_update_freq: int = 10
    threads: int = 1
    seed: int = 0

    def validate(self) -> None:
        if len(self.widths) < 2 or any(w < 1 for w in self.widths):
            raise ValueError("--widths needs at least two positive layer widths")
        if self.batch_size < 1 or self.repeats < 1 or self.warmup < 0 or self.kfac_steps < 1:
            raise ValueError("--batch-size, --repeats and --kfac-steps must be >= 1 and --warmup >= 0")
        if self.dtype not in ("float32", "float64"):
            raise ValueError("--dtype must be 'float32' or 'float64'")
        if self.inv_update_freq < 1:
            raise ValueError("--inv-update-freq must be >= 1")


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


def ggn_vp_times(cfg: Config) -> dict[str, Any]:
    """Median GGN-vector product times of optlib and curvlinops (``None`` if curvlinops is missing)."""
    import optlib.curvature as oc

    model, X, y = build(cfg)
    params = {n: p for n, p in model.named_parameters()}
    ours = oc.GGN(model, nn.CrossEntropyLoss(), params, [(X, y)])
    v = torch.randn(ours.n, generator=torch.Generator().manual_seed(cfg.seed + 2), dtype=X.dtype)
    fns = {"optlib": lambda: ours @ v}
    try:
        import curvlinops
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
    from optlib.optim.kfac import KFAC

    import torch.nn.functional as F

    runs = {}
    for name in ("kfac", "sgd"):
        model, X, y = build(cfg)
        opt = KFAC(model, lr=1e-3, damping=1e-2, inv_update_freq=cfg.inv_update_freq) if name == "kfac" \
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


def _version(dist: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # not installed
        return None


def run_benchmark(cfg: Config, out: Path | None = None) -> dict[str, Any]:
    cfg.validate()
    old = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        ggn = ggn_vp_times(cfg)
        kfac = kfac_step_times(cfg)
    finally:
        torch.set_num_threads(old)
    result = {"config": {**asdict(cfg), "widths": list(cfg.widths)}, "provenance": provenance(cfg.threads or old),
              "ggn_vp": ggn, "kfac_step": kfac}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / JSON_NAME).write_text(json.dumps(result, indent=1))
    return result


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
QUICK = dict(widths=(784, 256, 256, 10), batch_size=128, repeats=9, warmup=2, kfac_steps=20)
SMOKE = dict(widths=(64, 32, 10), batch_size=32, repeats=3, warmup=1, kfac_steps=4)


def report_section(ctx) -> Any:
    """The report's "Curvature: GGN products and K-FAC overhead" section (for :mod:`scale.report`)."""
    from .report import SectionResult, fmt_num, fmt_time, md_table

    threads = ctx.config.threads or 1
    cfg = Config(**(SMOKE if ctx.config.mode == "quick" else QUICK), threads=threads)
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
def parser() -> argparse.ArgumentParser:
    d = Config()
    p = argparse.ArgumentParser(
        prog="python -m scale.curvature_bench",
        description=("GGN-vector product time of optlib.curvature.GGN against curvlinops' GGNLinearOperator, and "
                     "the training-step overhead of optlib.optim.KFAC against torch.optim.SGD, on the same MLP and "
                     "batch, interleaved; prints medians and ratios and writes OUT/curvature_bench.json."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--widths", type=int, nargs="+", default=list(d.widths), help="layer widths of the MLP")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="batch size")
    p.add_argument("--dtype", choices=("float32", "float64"), default=d.dtype, help="model and data dtype")
    p.add_argument("--repeats", type=int, default=d.repeats, help="timed GGN-vector products per implementation")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed calls before timing")
    p.add_argument("--kfac-steps", type=int, default=d.kfac_steps, help="timed training steps per optimizer")
    p.add_argument("--inv-update-freq", type=int, default=d.inv_update_freq,
                   help="K-FAC steps between eigendecompositions of the factors")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (0 keeps torch's choice)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the model and the batch")
    p.add_argument("--out", type=Path, default=Path("reports/curvature"), help="output folder")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = Config(widths=tuple(args.widths), batch_size=args.batch_size, dtype=args.dtype, repeats=args.repeats,
                 warmup=args.warmup, kfac_steps=args.kfac_steps, inv_update_freq=args.inv_update_freq,
                 threads=args.threads, seed=args.seed)
    try:
        cfg.validate()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = run_benchmark(cfg, out=args.out)
    print(format_summary(result))
    print(f"results written to {Path(args.out) / JSON_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
