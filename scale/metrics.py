"""Metrics of ``scale.train``: a JSON-lines file and a loss-curve figure.

``metrics.jsonl`` holds one JSON object per line:

- first, ``{"kind": "header", "config": {...}, "corpus": {...}, ...}`` (the resolved configuration, the
  corpus metadata, versions and the world size);
- per logged training step ``{"kind": "train", "step", "loss", "ce", "z", "lr", "lr_mult", "tokens",
  "tokens_per_s", "wall_s", "grad_norm", "cutoff", "layers_backpropagated", "block_backward_flops"}``, where
  ``loss`` is the training objective averaged over the global batch (``ce`` + ``z``, the z-loss term), ``lr``
  the learning rate of the first param group in that step and ``lr_mult`` the schedule's multiplier,
  ``wall_s`` the training clock (evaluation and checkpointing excluded), ``tokens_per_s`` the rate over the
  steps since the previous line, ``grad_norm`` the global gradient norm before clipping; ``cutoff`` is
  Drop-Muon's cutoff block (0 for the other optimizers), ``layers_backpropagated`` the blocks the backward
  pass went through and ``block_backward_flops`` their analytic backward FLOPs on this rank's batch;
- per evaluation ``{"kind": "eval", "step", "val_loss", "val_ppl", "tokens", "wall_s"}``;
- on resume ``{"kind": "resume", "step", "checkpoint", "schedule"}`` (``schedule``: the learning-rate schedule
  the run continues on, ``{"name", "params"}``, also in the header).

The ``step``/``lr``/``loss`` columns are what :func:`scale.scaling_law.load_metrics` reads.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

from .records import json_safe, pyplot

__all__ = ["MetricsWriter", "plot_loss_curve", "read_metrics", "truncate_after"]


class MetricsWriter:
    """Appends JSON lines to ``path`` (flushed after every line, so a killed run loses nothing written)."""

    def __init__(self, path: str | Path, *, append: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a" if append else "w", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._fh.write(json.dumps(json_safe(record), sort_keys=False) + "\n")
        self._fh.flush()

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_metrics(path: str | Path) -> list[dict]:
    """Every JSON object of a metrics file (a torn last line, from a killed run, is skipped)."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def truncate_after(path: str | Path, step: int) -> int:
    """Drop the records of steps after ``step`` (a run resumed from step ``step`` rewrites them).

    Returns the number of records dropped. The file is rewritten atomically.
    """
    path = Path(path)
    if not path.exists():
        return 0
    records = read_metrics(path)
    keep = [r for r in records if not (isinstance(r.get("step"), int) and r["step"] > step)]
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for r in keep:
            fh.write(json.dumps(r) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return len(records) - len(keep)


def plot_loss_curve(records: Iterable[dict], path: str | Path, title: str = "") -> Path:
    """Training loss (per logged step) and validation loss (per evaluation) against the step, as a PNG."""
    plt = pyplot()
    records = list(records)
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train" and _finite(r.get("loss"))]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("kind") == "eval" and _finite(r.get("val_loss"))]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if train:
        ax.plot(*zip(*train), lw=1.0, label="train loss (objective)")
    if val:
        ax.plot(*zip(*val), "o-", ms=3.5, lw=1.4, label="validation loss (cross-entropy)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
