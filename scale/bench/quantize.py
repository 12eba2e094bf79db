"""The "Quantization" report section: :mod:`scale.quantize`'s methods on a char GPT trained for the purpose.

The model is the ``shakespeare-char-cpu`` preset of :mod:`scale.train` (4 layers, width 128, context 64),
trained into the report's output folder with the preset's full 2000 steps; quick mode trains ``QUICK_STEPS``
steps of a 2-layer variant instead (a smoke check of the plumbing, not of quality). Then :func:`scale.quantize.cli.run_evaluation` with the settings of :data:`REPORT_SETTINGS`: validation
perplexity per character before and after 4-bit quantization by each method, model size, and the figure of
perplexity against bits. The full command is ``python -m scale.quantize``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scale.checkpoint import latest_checkpoint
from scale.config import resolve
from scale.quantize.cli import TRAIN_PRESET, Config, markdown, plot, run_evaluation
from scale.train import train

from .common import ReportContext, SectionResult, register_section

QUICK_STEPS = 120
"""Training steps of the report's quick mode (2 layers; a rough model, enough to exercise every method end to end
in well under a minute)."""
QUICK_LAYERS = 2

REPORT_SETTINGS: dict[str, dict[str, Any]] = {
    "quick": {"methods": ("rtn", "gptq", "foem"), "bits": (4,), "group_sizes": (32,), "calib_windows": 16,
              "eval_windows": 100},
    "default": {"methods": ("rtn", "gptq", "foem", "awq", "smoothquant+", "smoothquant+gptq"), "bits": (4, 3),
                "group_sizes": (32, 128), "calib_windows": 128, "eval_windows": 0},
}


def trained_checkpoint(out_dir: Path, steps: int | None, threads: int = 1, n_layer: int | None = None) -> Path:
    """The latest checkpoint of ``out_dir``, training the CPU preset there first (``steps`` steps and ``n_layer``
    blocks, or the preset's) when it holds none."""
    found = latest_checkpoint(out_dir)
    if found is not None:
        return found
    overrides: dict[str, Any] = {"run.out_dir": str(out_dir), "run.threads": threads, "run.progress": False,
                                 "run.verbose": False}
    if steps is not None:
        overrides.update({"run.max_iters": steps, "run.eval_interval": steps, "schedule.warmup": steps // 10})
    if n_layer is not None:
        overrides["model.n_layer"] = n_layer
    train(resolve(TRAIN_PRESET, overrides=overrides))
    return latest_checkpoint(out_dir)


@register_section("quantize", "Quantization: 4-bit weights of a char GPT (RTN, GPTQ, FOEM, AWQ, SmoothQuant+)",
                  order=75)
def report_section(ctx: ReportContext) -> SectionResult:
    mode = "quick" if ctx.quick else "default"
    threads = ctx.config.threads or 1
    ckpt = trained_checkpoint(ctx.out / "quantize_model" / mode, QUICK_STEPS if ctx.quick else None, threads,
                              QUICK_LAYERS if ctx.quick else None)
    cfg = Config(checkpoint=str(ckpt), threads=threads, **REPORT_SETTINGS[mode])
    result = run_evaluation(cfg, log=lambda *_: None, progress=False)
    path, rel = ctx.figure("quantize_ppl_vs_bits.png")
    plot(result, path)
    what = (f"{QUICK_STEPS} steps with {QUICK_LAYERS} layers (quick mode: a smoke check, not a quality figure)"
            if ctx.quick else "its 2000 steps")
    text = (f"Model: the `{TRAIN_PRESET}` preset trained for {what}. Settings `{mode}` "
            f"({REPORT_SETTINGS[mode]}); the full run is `python -m scale.quantize`.\n\n" + markdown(result))
    return SectionResult(text, [rel])
