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
all ranks are gathered into ``rng``.

Under FSDP2 a checkpoint is a folder ``ckpt_<step>.dcp`` written with ``torch.distributed.checkpoint`` (DCP):
every rank writes its own shards of ``{"model": module.state_dict(), "optim": {"0": optimizer.state_dict(),
...}}`` (DTensors; the optimizer states keyed by parameter position as in one process), nothing is gathered
on one rank, and rank 0 adds ``trainer_state.pt``, the rest of the dict above (``"model"`` and ``"optim"``
excepted). DCP stores each tensor's global shape, so a folder written by N ranks loads on M ranks, one
process included (:func:`load_sharded`; resharding), and a one-file checkpoint loads into an FSDP2 run
(its whole tensors are sharded on load). Non-tensor optimizer entries (Muon's ``counters``) are stored
once, rank 0's: ``orthogonalized_here``, which differs between ranks, resumes at rank 0's count on every
rank. :func:`load_checkpoint` on such a folder assembles the whole tensors in one process (for
``scale.sample``, ``run.init_from`` and inspection).

Writes are atomic: the dict goes to a temporary file in the same folder, is flushed and ``fsync``-ed, then
``os.replace``-d onto its name, so a process killed mid-write leaves the previous checkpoints intact and never
a half-written one under a checkpoint name. A DCP folder is written under the hidden name
``.ckpt_<step>.dcp.partial`` and renamed once every rank has finished and ``trainer_state.pt`` is in it; the
listing ignores hidden names, so a half-written folder is never the latest checkpoint.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.tensor import DTensor, distribute_tensor

__all__ = [
    "BEST_NAME",
    "CheckpointError",
    "FORMAT",
    "capture_rng",
    "checkpoint_path",
    "is_sharded",
    "load_sharded",
    "remove_checkpoint",
    "save_sharded",
    "shard_full_optimizer_state",
    "find_checkpoint",
    "list_checkpoints",
    "latest_checkpoint",
    "load_checkpoint",
    "restore_rng",
    "save_atomic",
]

FORMAT = "scale.train/1"
REQUIRED_KEYS = ("format", "model", "optim", "sched", "step", "tokens_seen", "best_val_loss", "data_sampler",
                 "rng", "config", "optlib_version")
_NAME = re.compile(r"^ckpt_(\d+)\.(pt|dcp)$")
SHARDED_META = "trainer_state.pt"  # inside a ckpt_<step>.dcp folder: everything but the model and optimizer states


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used to resume (unreadable, foreign, or from another configuration)."""


def checkpoint_path(out_dir: str | Path, step: int, sharded: bool = False) -> Path:
    """``out_dir/ckpt_<step>.pt``, or with ``sharded`` the DCP folder ``out_dir/ckpt_<step>.dcp``."""
    return Path(out_dir) / f"ckpt_{step:07d}.{'dcp' if sharded else 'pt'}"


def is_sharded(path: str | Path) -> bool:
    """Whether ``path`` is a sharded (DCP folder) checkpoint."""
    return Path(path).is_dir()


def remove_checkpoint(path: str | Path) -> None:
    """Delete a checkpoint file or DCP folder (a missing one is no error)."""
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints in ``out_dir``, by increasing step."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = []
    for p in out_dir.iterdir():
        m = _NAME.match(p.name)
        complete = p.is_file() if m and m.group(2) == "pt" else (p / SHARDED_META).is_file()
        if m and complete:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


BEST_NAME = "best.pt"  # run.keep_best: the checkpoint of the lowest validation loss (never a resume point)


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint ``path`` names: the file (or DCP folder) itself, or the latest checkpoint of a run folder
    (:func:`latest_checkpoint`). A missing path or a folder without checkpoints is a ``ValueError`` saying so."""
    path = Path(path)
    if path.is_dir() and (path / SHARDED_META).is_file():
        return path  # a DCP checkpoint folder (ckpt_<step>.dcp, best.dcp)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            best = " (it has a best.pt: pass that file to use it)" if (path / BEST_NAME).is_file() else ""
            raise ValueError(f"{str(path)!r} is a folder without ckpt_*.pt checkpoints{best}")
        return found
    if not path.exists():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    return path


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
    err = CheckpointError(f"cannot resume from checkpoint {str(path)!r}: {problem}. {_WHAT_TO_DO}")
    err.problem = problem  # the reason alone, for readers other than a resume (scale.sample, run.init_from)
    return err


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
    is_pickle = head == _ZIP_MAGIC or head[:1] == b"\x80"  # torch.save's archive, or a bare pickle (protocol >= 2)
    if is_pickle and ("weights only" in str(exc).lower() or "weights_only" in str(exc)):
        return ("the file is a pickle of Python objects other than tensors and plain containers, so it is not a "
                "checkpoint of scale.train (loading it would run code from the file, which is refused)")
    if head == _ZIP_MAGIC:
        return ("the file is a damaged torch.save archive (truncated or corrupt, e.g. a copy that did not finish), "
                "so it cannot be read")
    return ("the file is not in torch.save's format (a text file, or a file of another program under a checkpoint "
            "name), so it cannot be read")


def load_checkpoint(path: str | Path, tensors: bool = True) -> dict:
    """Read a checkpoint with ``weights_only=True``; :class:`CheckpointError` saying why if it is unusable.

    An empty, damaged or foreign file (text, a pickle of something else, a ``torch.save`` of another object) is
    refused with a message of ours that names the file, the problem and what to do. The file is never modified.
    A DCP folder (FSDP2 run) gives the same dict: ``trainer_state.pt`` plus, unless ``tensors=False``, the model
    and optimizer states assembled into whole tensors in this process (optimizer states keyed by parameter
    position, as ``optimizer.state_dict()`` is).
    """
    path = Path(path)
    if path.is_dir():
        meta = path / SHARDED_META
        if not meta.is_file():
            raise _refuse(path, f"the folder has no {SHARDED_META}, so it is not a complete sharded checkpoint of "
                                "scale.train (a write that did not finish leaves a hidden .partial folder instead)")
        ckpt = _load_file(meta)
        if tensors:
            ckpt.update(_assemble_sharded(path))
        else:
            ckpt.update(model=None, optim=None)
        return _checked(path, ckpt)
    return _checked(path, _load_file(path))


def _load_file(path: Path):
    try:
        with warnings.catch_warnings():  # torch's remarks on foreign pickles: our message below replaces them
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # empty, truncated, corrupt or foreign file
        raise _refuse(path, _unreadable(path, exc)) from exc
    return ckpt


def _checked(path: Path, ckpt) -> dict:
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        kind = f"a {type(ckpt).__name__}" if not isinstance(ckpt, dict) else "a dict without format " + repr(FORMAT)
        raise _refuse(path, f"the file was written by torch.save but holds {kind}, not a checkpoint of "
                            "scale.train")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise _refuse(path, f"the checkpoint lacks the entries {', '.join(missing)}, so it cannot resume a run "
                            "exactly")
    return ckpt


# ------------------------------------------------------------------------------------------ sharded (DCP)
def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_sharded(meta: dict, model_state: dict, optim_states: list[dict], path: str | Path) -> Path:
    """Write the DCP folder ``path`` (every rank calls this; collective).

    The shards go to the hidden folder ``.<name>.partial`` beside ``path``; rank 0 then writes ``meta`` there as
    :data:`SHARDED_META` and renames the folder to ``path`` after all ranks have finished, so an interrupted
    write never shows up under a checkpoint name. ``model_state`` is ``module.state_dict()`` (DTensors under
    FSDP2), ``optim_states`` the optimizers' ``state_dict()``s.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.partial"
    main = not dist.is_initialized() or dist.get_rank() == 0
    if main:
        shutil.rmtree(tmp, ignore_errors=True)  # left over by a killed run
        tmp.mkdir(parents=True)
    _barrier()
    dcp.save({"model": model_state, "optim": {str(i): sd for i, sd in enumerate(optim_states)}},
             checkpoint_id=str(tmp))
    if main:
        save_atomic(meta, tmp / SHARDED_META)
        if path.exists():  # the same step written again: replace it
            shutil.rmtree(path)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    _barrier()
    return path


def _nest(flat: dict[tuple, Any]) -> dict:
    """``{("a", "0", "b"): v}`` -> ``{"a": {"0": {"b": v}}}``, list indices (ints in the path) as lists."""
    root: dict = {}
    for key, value in flat.items():
        node = root
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = value
    return _lists(root)


def _lists(node):
    if isinstance(node, dict):
        if node and all(isinstance(k, int) for k in node):
            return [_lists(node[k]) for k in sorted(node)]
        return {k: _lists(v) for k, v in node.items()}
    return node


def _int_keys(node):
    """Digit-string dict keys back to ints at every level (DCP's paths store every key as a string)."""
    if isinstance(node, dict):
        return {int(k) if isinstance(k, str) and k.isdigit() else k: _int_keys(v) for k, v in node.items()}
    return node


def _optim_keys(sd: dict) -> dict:
    """Optimizer state back to ``optimizer.state_dict()``'s form: parameter positions, and the integer keys of
    per-group entries (``MuonWithAdamW``'s ``beta1_applied``), as ints."""
    sd = dict(sd)
    sd["state"] = _int_keys(sd.get("state", {}))
    return sd


def _sharded_template(path: Path, like: dict[str, Any]) -> tuple[dict, dict]:
    """A flat ``{fqn: tensor or None}`` to load the folder into and the ``{fqn: path}`` nesting, from the
    folder's metadata. ``like`` maps a path prefix (``"optim.0.state.3"``) to the parameter whose sharding the
    tensors under it take when their shape is the parameter's (momentum buffers, moments); other tensors
    (scalar steps) and the model's (taken from ``like["model.<name>"]``) load whole or as that DTensor."""
    md = dcp.FileSystemReader(str(path)).read_metadata()
    template, paths = {}, {}
    for fqn, entry in md.state_dict_metadata.items():
        obj_path = md.planner_data[fqn] if md.planner_data else tuple(fqn.split("."))
        paths[fqn] = obj_path
        size = getattr(entry, "size", None)
        if size is None:
            template[fqn] = None  # a non-tensor entry: DCP fills in the stored object
            continue
        dtype = entry.properties.dtype
        is_model = fqn.startswith("model.")
        owner = like.get(fqn) if is_model else like.get(".".join(map(str, obj_path[:4])))
        if owner is not None and tuple(owner.shape) == tuple(size):
            # the model's own tensors load in place; optimizer tensors take their parameter's sharding
            template[fqn] = owner if is_model else torch.zeros_like(owner, dtype=dtype)
        else:
            template[fqn] = torch.zeros(tuple(size), dtype=dtype)
    return template, paths


def load_sharded(path: str | Path, model: torch.nn.Module, optimizers: list[torch.optim.Optimizer]) -> list[dict]:
    """Load the DCP folder ``path`` into ``model`` (in place, whatever the number of ranks that wrote it) and
    return the optimizers' state dicts, with tensors sharded like this run's parameters (DTensors under FSDP2,
    whole tensors in one process), for ``optimizer.load_state_dict``. Collective under ``torch.distributed``."""
    path = Path(path)
    model_sd = model.state_dict()
    like: dict[str, Any] = {f"model.{k}": v for k, v in model_sd.items()}
    for i, opt in enumerate(optimizers):
        k = 0
        for group in opt.param_groups:
            for p in group["params"]:
                like[f"optim.{i}.state.{k}"] = p
                k += 1
    template, paths = _sharded_template(path, like)
    saved_model = {fqn[len("model."):] for fqn in template if fqn.startswith("model.")}
    if saved_model != set(model_sd):
        missing, extra = sorted(set(model_sd) - saved_model), sorted(saved_model - set(model_sd))
        raise ValueError(f"the model's parameters differ from the checkpoint's (missing {missing[:5]}, "
                         f"unexpected {extra[:5]})")
    with warnings.catch_warnings():  # one process (2 -> 1 ranks): DCP's notice that it loads without a group
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(template, checkpoint_id=str(path))
    with torch.no_grad():
        for name, value in model_sd.items():
            loaded = template[f"model.{name}"]
            if loaded is not value:
                value.copy_(loaded)
    nested = _nest({paths[fqn]: v for fqn, v in template.items() if not fqn.startswith("model.")})
    optim = nested.get("optim", {})
    return [_optim_keys(optim[str(i)]) for i in range(len(optimizers)) if str(i) in optim]


def shard_full_optimizer_state(state_dict: dict, optimizer: torch.optim.Optimizer) -> dict:
    """A one-process optimizer state dict (whole tensors) with every tensor shaped like its parameter
    distributed like that parameter (a DTensor parameter's momentum, moments), for loading into an optimizer of
    FSDP2-sharded parameters (collective: every rank calls it with the same dict)."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    state = {}
    for key, entry in state_dict["state"].items():
        p = params[key] if isinstance(key, int) and key < len(params) else None
        if isinstance(p, DTensor) and isinstance(entry, dict):
            entry = {k: distribute_tensor(v, p.device_mesh, p.placements)
                     if isinstance(v, torch.Tensor) and tuple(v.shape) == tuple(p.shape) else v
                     for k, v in entry.items()}
        state[key] = entry
    return {**state_dict, "state": state}


def _assemble_sharded(path: Path) -> dict:
    """The model and optimizer states of a DCP folder as whole tensors, read in this process alone."""
    template, paths = _sharded_template(path, {})
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(template, checkpoint_id=str(path), no_dist=True)
    nested = _nest({paths[fqn]: v for fqn, v in template.items()})
    optim = nested.get("optim", {})
    return {"model": nested.get("model", {}), "optim": [_optim_keys(optim[k]) for k in sorted(optim, key=int)]}


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
