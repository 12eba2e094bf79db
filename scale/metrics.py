r"""Metrics of ``scale.train``: a JSON-lines file and a loss-curve figure.

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
- with ``schedule.name = "dal"``, the training lines also carry ``dal_mult`` (the drift-adjusted multiplier of
  the step) and ``dal_curvature`` (:math:`\lVert Hg\rVert/\lVert g\rVert`, the curvature along the gradient);
- with ``run.lambda_max_every = K``, every K steps (and at step 0) ``{"kind": "sharpness", "step", "lambda_max",
  "lr", "edge_ratio", "lanczos_steps"}``: the largest Hessian eigenvalue of the training objective on a held
  batch after ``step`` updates, the learning rate of the last step, and :math:`h\lambda_{\max}/2` (1 at
  gradient descent's edge of stability);
- with ``run.sample_tokens = N``, at every evaluation ``{"kind": "sample", "step", "text"}``: N generated
  tokens continuing the start of the validation split (:func:`scale.sample.generate`);
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

__all__ = ["MetricsWriter", "TENSORBOARD_KINDS", "plot_loss_curve", "read_metrics", "truncate_after"]

TENSORBOARD_KINDS = ("train", "eval", "sharpness")  # metrics lines mirrored as TensorBoard scalars


class MetricsWriter:
    """Appends JSON lines to ``path`` (flushed after every line, so a killed run loses nothing written).

    With ``tensorboard_dir``, every ``train``, ``eval`` and ``sharpness`` line is mirrored as TensorBoard
    scalars ``<kind>/<field>`` at its ``step`` (finite numbers only) and every ``sample`` line as text, through
    :class:`torch.utils.tensorboard.SummaryWriter` (which needs the ``tensorboard`` package). The JSON lines stay
    the record a resumed run truncates and continues; the event files of a resumed run are appended to.
    """

    def __init__(self, path: str | Path, *, append: bool = False, tensorboard_dir: str | Path | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a" if append else "w", encoding="utf-8")
        self._tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._fh.close()
                raise ValueError("TensorBoard logging needs the tensorboard package (pip install tensorboard)") \
                    from None
            self._tb = SummaryWriter(log_dir=str(tensorboard_dir))

    def write(self, record: dict) -> None:
        self._fh.write(json.dumps(json_safe(record), sort_keys=False) + "\n")
        self._fh.flush()
        if self._tb is not None:
            self._mirror(record)

    def _mirror(self, record: dict) -> None:
        kind, step = record.get("kind"), record.get("step")
        if step is None:
            return
        if kind == "sample":
            self._tb.add_text("sample", str(record.get("text", "")), int(step))
        elif kind in TENSORBOARD_KINDS:
            for key, value in record.items():
                if key not in ("kind", "step") and isinstance(value, (int, float)) and not isinstance(value, bool) \
                        and math.isfinite(value):
                    self._tb.add_scalar(f"{kind}/{key}", value, int(step))

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None

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
    """Training loss (per logged step) and validation loss (per evaluation) against the step, as a PNG; with
    ``sharpness`` lines, a second panel of λ_max and the gradient-descent stability edge 2/lr (lr of each logged
    step)."""
    plt = pyplot()
    records = list(records)
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train" and _finite(r.get("loss"))]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("kind") == "eval" and _finite(r.get("val_loss"))]
    sharp = [(r["step"], r["lambda_max"]) for r in records
             if r.get("kind") == "sharpness" and _finite(r.get("lambda_max"))]
    if sharp:
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 6.4), dpi=110, sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
        ax2.plot(*zip(*sharp), "s-", ms=3, lw=1.2, color="C3", label="λ_max (held batch, Lanczos)")
        edge = [(r["step"], 2.0 / r["lr"]) for r in records
                if r.get("kind") == "train" and _finite(r.get("lr")) and r["lr"] > 0]
        if edge:
            ax2.plot(*zip(*edge), lw=1.0, ls="--", color="k", label="2 / lr (edge of stability of GD)")
            ax2.set_yscale("log")
        ax2.set_xlabel("step")
        ax2.set_ylabel("sharpness")
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=8)
    else:
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if train:
        ax.plot(*zip(*train), lw=1.0, label="train loss (objective)")
    if val:
        ax.plot(*zip(*val), "o-", ms=3.5, lw=1.4, label="validation loss (cross-entropy)")
    if not sharp:
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
