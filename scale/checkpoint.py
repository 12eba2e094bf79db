"""Checkpoints of ``scale.train`` that resume a run exactly.

A checkpoint is one ``torch.save`` file ``ckpt_<step>.pt`` holding a plain dict::

    {"format", "model", "optim" (list, one per optimizer), "sched" (list), "step", "tokens_seen",
     "best_val_loss", "data_sampler", "rng" (list, one per rank), "config", "optlib_version", "torch_version",
     "world_size", "train_seconds"}

Exact resume needs every piece of state the next step reads: weights, optimizer moments, scheduler position,
the step count, the data sampler's generator and position, and every random generator (torch CPU and CUDA,
numpy's global one, Python's ``random``) on every rank. Leaving any of them out makes a resumed run silently
differ from an uninterrupted one.

Only tensors and plain containers are stored (numpy and Python generator states are converted to lists and
ints), so checkpoints load with ``torch.load(weights_only=True)``, which executes no pickled code.

Under DDP the model and optimizer states are replicated and rank 0 writes its own; the generator states of
all ranks are gathered into ``rng``. Under FSDP2 the full (unsharded) model and optimizer states are gathered
with ``torch.distributed.checkpoint.state_dict`` (``full_state_dict=True``) and written in the same one-file
format (optimizer state keyed by parameter name there), which suits models that fit one host's memory; sharded
``torch.distributed.checkpoint`` files are not written.

Writes are atomic: the dict goes to a temporary file in the same folder, is flushed and ``fsync``-ed, then
``os.replace``-d onto its name, so a process killed mid-write leaves the previous checkpoints intact and never
a half-written one under a checkpoint name.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckpointError",
    "FORMAT",
    "capture_rng",
    "checkpoint_path",
    "list_checkpoints",
    "latest_checkpoint",
    "load_checkpoint",
    "restore_rng",
    "save_atomic",
]

FORMAT = "scale.train/1"
REQUIRED_KEYS = ("format", "model", "optim", "sched", "step", "tokens_seen", "best_val_loss", "data_sampler",
                 "rng", "config", "optlib_version")
_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used to resume (unreadable, foreign, or from another configuration)."""


def checkpoint_path(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / f"ckpt_{step:07d}.pt"


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints in ``out_dir``, by increasing step."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = []
    for p in out_dir.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (temporary file in the same folder, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archive format
_WHAT_TO_DO = ("It was left untouched: delete it (a resume then starts from the checkpoint before it, if any) or "
               "start afresh in this folder with --run.overwrite true instead of --run.resume true.")


def _refuse(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"cannot resume from checkpoint {str(path)!r}: {problem}. {_WHAT_TO_DO}")


def _unreadable(path: Path, exc: BaseException) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, in our words (torch's message may be cut short, empty,
    or advise ``weights_only=False``, which would run the file's pickled code)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as os_exc:
        return f"the file cannot be opened ({os_exc.strerror or type(os_exc).__name__})"
    if not head:
        return "the file is empty (0 bytes), so it holds no state to resume"
    if "weights only" in str(exc).lower() or "weights_only" in str(exc):
        return ("the file is a pickle of Python objects other than tensors and plain containers, so it is not a "
                "checkpoint of scale.train (loading it would run code from the file, which is refused)")
    if head == _ZIP_MAGIC:
        return ("the file is a damaged torch.save archive (truncated or corrupt, e.g. a copy that did not finish), "
                "so it cannot be read")
    return ("the file is not in torch.save's format (a text file, or a file of another program under a checkpoint "
            "name), so it cannot be read")


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint with ``weights_only=True``; :class:`CheckpointError` saying why if it is unusable.

    An empty, damaged or foreign file (text, a pickle of something else, a ``torch.save`` of another object) is
    refused with a message of ours that names the file, the problem and what to do. The file is never modified.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch's remarks on foreign pickles: our message below replaces them
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # empty, truncated, corrupt or foreign file
        raise _refuse(path, _unreadable(path, exc)) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        kind = f"a {type(ckpt).__name__}" if not isinstance(ckpt, dict) else "a dict without format " + repr(FORMAT)
        raise _refuse(path, f"the file was written by torch.save but holds {kind}, not a checkpoint of "
                            "scale.train")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise _refuse(path, f"the checkpoint lacks the entries {', '.join(missing)}, so it cannot resume a run "
                            "exactly")
    return ckpt


# ------------------------------------------------------------------------------------------ RNG state
def capture_rng() -> dict:
    """This process's generator states as tensors and plain Python values (``weights_only``-loadable)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(np_state[0]), "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": int(py_state[0]), "internal": list(py_state[1]), "gauss_next": py_state[2]},
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng(state: dict) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([t.to(torch.uint8).cpu() for t in cuda])
        else:
            torch.cuda.set_rng_state(cuda[0].to(torch.uint8).cpu())
