r"""``python -m scale.quantize``: quantize a ``scale.train`` GPT with each method and score it offline.

For a checkpoint of :mod:`scale.train` (or, with ``--train``, the ``shakespeare-char-cpu`` preset trained first
when ``--checkpoint`` holds none), on the checkpoint's own corpus and split:

1. calibration: ``--calib-windows`` random context windows of the **training** split (seed ``--seed``);
2. for every bit width in ``--bits``, group size in ``--group-sizes`` and method in ``--methods``
   (:data:`scale.quantize.calibration.METHODS`), :func:`scale.quantize.calibration.quantize_model` (sequential:
   each layer calibrated on the outputs of the already-quantized layers before it);
3. validation perplexity per character, :math:`\exp(\text{mean CE})` over the non-overlapping windows of the
   validation split, before and after; model size with the quantized linear layers packed (codes + fp16 scale
   + zero per group) and the rest in fp16.

Writes ``OUT/quantize.json`` (settings, provenance, every result), ``OUT/quantize.md`` (the table),
``OUT/quantize_ppl_vs_bits.png`` (perplexity against bits, one line per method and group size) and, with
``--write-packed``, each method's packed model ``OUT/<method>_w<bits>g<group>.safetensors``
(:mod:`scale.quantize.packed`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from scale.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from scale.cli import Command, config_to_dict, option
from scale.config import config_from_dict, resolve, upgrade_config_dict
from scale.data import load_corpus
from scale.model import GPT
from scale.quantize.calibration import (
    METHODS,
    QuantSettings,
    calibration_windows,
    model_size_bytes,
    perplexity,
    quantizable_linears,
    quantize_model,
)
from scale.quantize.packed import QuantLinear, save_packed
from scale.records import pyplot
from scale.train import train

__all__ = ["COMMAND", "Config", "PRESETS", "load_model", "main", "markdown", "plot", "run_evaluation"]

JSON_NAME = "quantize.json"
TRAIN_PRESET = "shakespeare-char-cpu"
DEFAULT_METHODS = ("rtn", "gptq", "foem", "awq", "smoothquant+", "smoothquant+gptq", "smoothquant+foem")


@dataclass
class Config:
    checkpoint: str = option(f"out/{TRAIN_PRESET}", "a scale.train checkpoint file, or a folder (its latest "
                                                     "ckpt_<step>.pt is used)")
    train: bool = option(False, f"when --checkpoint holds no checkpoint, train the {TRAIN_PRESET} preset into that "
                                "folder first")
    methods: tuple[str, ...] = option(DEFAULT_METHODS, "quantization methods", choices=tuple(METHODS))
    bits: tuple[int, ...] = option((4, 3), "weight bit widths")
    group_sizes: tuple[int, ...] = option((32, 128), "group sizes (-1 = one group per row)")
    sym: bool = option(False, "symmetric quantization (zero point fixed at 2^(bits-1))")
    act_order: bool = option(False, "GPTQ/FOEM: quantize columns by decreasing Hessian diagonal (g_idx)")
    static_groups: bool = option(False, "GPTQ/FOEM: fit every group from the original weights before the sweep")
    damp: float = option(0.01, "GPTQ/FOEM: damping as a fraction of the mean Hessian diagonal")
    block_size: int = option(128, "GPTQ/FOEM: columns per lazy block")
    calib_windows: int = option(128, "calibration windows (context length each) from the training split")
    eval_windows: int = option(0, "validation windows scored (0 = every non-overlapping window)")
    seed: int = option(0, "seed of the calibration windows")
    threads: int = option(1, "torch threads (0 keeps torch's choice)")
    write_packed: bool = option(False, "write each quantized model in the packed safetensors format")
    out: Path = option(Path("reports/quantize"), f"output folder for {JSON_NAME}, the table and the figure")

    def validate(self) -> None:
        if not self.methods or not self.bits or not self.group_sizes:
            raise ValueError("--methods, --bits and --group-sizes each need at least one value")
        for b in self.bits:
            QuantSettings(bits=b).validate()
        for g in self.group_sizes:
            if g != -1 and g < 1:
                raise ValueError(f"--group-sizes: {g} is neither a positive group size nor -1 (whole row)")
        for name in ("calib_windows", "block_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.eval_windows < 0 or self.threads < 0:
            raise ValueError("--eval-windows and --threads must be >= 0")


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"methods": ("rtn", "gptq", "foem"), "bits": (4,), "group_sizes": (32,), "calib_windows": 32,
              "eval_windows": 200},
}


# ------------------------------------------------------------------------------------------ model
def _checkpoint_file(spec: str, allow_train: bool) -> Path:
    path = Path(spec)
    if path.is_dir() or not path.exists():
        found = latest_checkpoint(path) if path.is_dir() else None
        if found is not None:
            return found
        if not allow_train:
            raise ValueError(f"no scale.train checkpoint (ckpt_<step>.pt) in {spec!r}; train one with "
                             f"'python -m scale.train --preset {TRAIN_PRESET} --run.out_dir {spec}' or pass --train")
        cfg = resolve(TRAIN_PRESET, overrides={"run.out_dir": str(path)})
        train(cfg)
        found = latest_checkpoint(path)
        if found is None:
            raise ValueError(f"training the {TRAIN_PRESET} preset into {spec!r} left no checkpoint")
        return found
    return path


def load_model(spec: str, allow_train: bool = False):
    """``(model, corpus, checkpoint path)`` from a checkpoint file or folder (``allow_train``: train the CPU preset
    first when the folder holds none). A file that is not a scale.train checkpoint raises ``ValueError``."""
    path = _checkpoint_file(spec, allow_train)
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        raise ValueError(f"{str(path)!r} is not a usable scale.train checkpoint: {exc}") from exc
    config = config_from_dict(upgrade_config_dict(ckpt["config"]))
    model = GPT(config.model)
    model.load_state_dict(ckpt["model"])
    model.eval()
    d = config.data
    corpus = load_corpus(d.corpus, level=d.level, val_fraction=d.val_fraction, max_files=d.max_files,
                         block_size=config.model.block_size)
    if corpus.vocab_size > config.model.vocab_size:
        raise ValueError(f"the corpus {d.corpus!r} has {corpus.vocab_size} tokens but the checkpoint's model only "
                         f"{config.model.vocab_size}")
    return model, corpus, path


# ------------------------------------------------------------------------------------------ run
def run_evaluation(cfg: Config, log=print, progress: bool = True) -> dict[str, Any]:
    """Every (bits, group size, method) of ``cfg`` on the checkpoint; returns the JSON-ready result."""
    cfg.validate()
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _evaluate(cfg, log, progress)
    finally:
        torch.set_num_threads(threads)


def _evaluate(cfg: Config, log, progress: bool) -> dict[str, Any]:
    model, corpus, path = load_model(cfg.checkpoint, cfg.train)
    T = model.config.block_size
    windows = calibration_windows(corpus.train, T, cfg.calib_windows, cfg.seed)
    max_eval = cfg.eval_windows or None
    t0 = time.perf_counter()
    ppl_fp = perplexity(model, corpus.val, T, max_windows=max_eval)
    eval_s = time.perf_counter() - t0
    size_fp = model_size_bytes(model)
    log(f"checkpoint {path}: {sum(lin.weight.numel() for _, lin in quantizable_linears(model))} quantizable "
        f"weights in {len(quantizable_linears(model))} linear layers; fp perplexity {ppl_fp:.4f} "
        f"({eval_s:.1f} s per evaluation)")
    jobs = [(b, g, m) for b in cfg.bits for g in cfg.group_sizes for m in cfg.methods]
    rows = []
    bar = tqdm(jobs, desc="quantize", disable=not progress)
    for bits, g, method in bar:
        bar.set_postfix_str(f"{method} w{bits} g{g}")
        settings = QuantSettings(bits=bits, group_size=g, sym=cfg.sym, act_order=cfg.act_order,
                                 static_groups=cfg.static_groups, damp=cfg.damp, block_size=cfg.block_size)
        res = quantize_model(model, windows, method, settings)
        ppl = perplexity(res.model, corpus.val, T, max_windows=max_eval)
        row = {"method": method, "bits": bits, "group_size": g, "ppl": ppl,
               "increase": ppl / ppl_fp - 1.0, "size_bytes": model_size_bytes(res.model, res.weights),
               "quantize_seconds": res.info["seconds"],
               **{k: res.info[k] for k in ("smooth_alpha", "awq_alpha") if k in res.info}}
        if cfg.write_packed:
            row["packed"] = str(_write_packed(cfg.out, res, row))
        rows.append(row)
        log(f"{method:>18} w{bits} g{g:<4}: ppl {ppl:.4f} ({100 * row['increase']:+.2f} %), "
            f"{res.info['seconds']:.1f} s")
    conf = {k: (str(v) if isinstance(v, Path) else v) for k, v in config_to_dict(cfg).items()}
    return {"config": conf, "checkpoint": str(path), "provenance": _provenance(cfg.threads),
            "calibration": {"windows": cfg.calib_windows, "tokens": cfg.calib_windows * T, "split": "train",
                            "sequential": True},
            "evaluation": {"split": "val", "windows": max_eval or (len(corpus.val) - 1) // T, "block_size": T},
            "fp": {"ppl": ppl_fp, "size_bytes": size_fp}, "rows": rows}


def _write_packed(out: Path, res, row: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    mods = dict(quantizable_linears(res.model))
    layers = {name: QuantLinear.from_quantized(qw, mods[name].bias) for name, qw in res.weights.items()}
    name = f"{row['method'].replace('+', '_')}_w{row['bits']}g{row['group_size']}.safetensors"
    return save_packed(out / name, layers, method=row["method"])


def _provenance(threads: int) -> dict[str, Any]:
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "threads": threads or torch.get_num_threads(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


# ------------------------------------------------------------------------------------------ outputs
def markdown(result: dict[str, Any]) -> str:
    """The results as a markdown table (one row per method, bits and group size, fp first)."""
    fp = result["fp"]
    lines = ["| method | bits | group | val ppl / char | increase | size (KiB) | quantize s |",
             "|---|---|---|---|---|---|---|",
             f"| fp (fp16 storage) | 16 | – | {fp['ppl']:.4f} | – | {fp['size_bytes'] / 1024:.1f} | – |"]
    for r in result["rows"]:
        lines.append(f"| {r['method']} | {r['bits']} | {r['group_size']} | {r['ppl']:.4f} | "
                     f"{100 * r['increase']:+.2f} % | {r['size_bytes'] / 1024:.1f} | {r['quantize_seconds']:.1f} |")
    ev, cal = result["evaluation"], result["calibration"]
    lines.append("")
    lines.append(f"Perplexity per character over {ev['windows']} non-overlapping validation windows of "
                 f"{ev['block_size']} characters; calibration on {cal['windows']} windows ({cal['tokens']} tokens) "
                 "of the training split, sequential.")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str | Path) -> Path:
    """Perplexity against bits, one line per (method, group size); the fp perplexity as a dashed line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    keys = sorted({(r["method"], r["group_size"]) for r in result["rows"]}, key=str)
    for method, g in keys:
        pts = sorted((r["bits"], r["ppl"]) for r in result["rows"] if r["method"] == method and r["group_size"] == g)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{method} g{g}",
                ls="-" if g == min(k[1] for k in keys) else "--")
    ax.axhline(result["fp"]["ppl"], color="k", ls=":", label="fp")
    ax.set_xlabel("weight bits")
    ax.set_ylabel("validation perplexity per character")
    ax.set_title("Weight-only quantization of the char GPT")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _run(cfg: Config) -> int:
    result = run_evaluation(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "quantize.md").write_text(markdown(result) + "\n", encoding="utf-8")
    plot(result, cfg.out / "quantize_ppl_vs_bits.png")
    (cfg.out / JSON_NAME).write_text(json.dumps(result, indent=1, default=_json_default) + "\n", encoding="utf-8")
    print(markdown(result))
    print(f"results written to {cfg.out / JSON_NAME}")
    return 0


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if dataclasses.is_dataclass(x):
        return dataclasses.asdict(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


COMMAND = Command(
    prog="python -m scale.quantize",
    description=("Quantize a scale.train GPT checkpoint to few-bit weights with RTN, GPTQ, FOEM, GPTAQ, AWQ, "
                 "SmoothQuant+ and their combinations (calibration windows from the training split, sequential), "
                 f"and report validation perplexity per character and model size; writes OUT/{JSON_NAME}, "
                 "OUT/quantize.md, OUT/quantize_ppl_vs_bits.png and, with --write-packed, packed safetensors."),
    config=Config, run=_run, presets=PRESETS, preset_flags=True,
    help="quantize a trained GPT (RTN, GPTQ, FOEM, AWQ, SmoothQuant+) and score it")
main = COMMAND.main
