"""``torchrun --standalone --nproc_per_node=2 -m scale.train`` on CPU (gloo) against one process.

Both see the same global batch at every step (each rank a contiguous half of its rows), so the loss curves
agree up to floating-point reordering: DDP averages the two half-batch gradients, one process takes the mean
over the whole batch. Tolerance: 2e-5 absolute on every logged training and validation loss over 10 steps
(measured differences are about 5e-7 for AdamW and a few 1e-6 for Muon with float32 Newton-Schulz). The
"would catch" twin shows that a run on one rank's half of the batch is far outside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scale import train as T
from scale.checkpoint import load_checkpoint
from scale.config import resolve
from scale.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]
TOL = 2e-5

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")


TINY = {
    "model.n_layer": 2, "model.n_head": 2, "model.n_embd": 32, "model.block_size": 16,
    "data.batch_size": 8, "run.eval_iters": 2, "run.log_interval": 1, "run.eval_interval": 5,
    "run.max_iters": 10, "schedule.warmup": 2, "run.threads": 1, "optim.ns_dtype": "float32",
    "run.progress": False, "run.plot": False, "run.verbose": False,
}


def overrides(corpus: str, out_dir, **extra) -> dict:
    o = dict(TINY)
    o.update({"data.corpus": corpus, "run.out_dir": str(out_dir)})
    o.update({k.replace("__", "."): v for k, v in extra.items()})
    return o


def torchrun(o: dict, nproc: int = 2) -> subprocess.CompletedProcess:
    argv = [f"--{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in o.items()]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "scale.train", *argv]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def curve(metrics_path) -> list[tuple[str, int, float]]:
    out = []
    for r in read_metrics(metrics_path):
        if r.get("kind") == "train":
            out.append(("train", r["step"], r["loss"]))
        elif r.get("kind") == "eval":
            out.append(("eval", r["step"], r["val_loss"]))
    return out


def max_gap(a, b) -> float:
    assert [(k, s) for k, s, _ in a] == [(k, s) for k, s, _ in b]
    return max(abs(x - y) for (_, _, x), (_, _, y) in zip(a, b))


def compare(corpus, tmp_path, name: str, **extra) -> tuple[float, float]:
    """(largest loss gap, largest parameter gap) between 2 gloo ranks and one process."""
    o = overrides(corpus, tmp_path / "ddp", optim__name=name, **extra)
    torchrun(o)
    single = T.train(resolve(overrides={**o, "run.out_dir": str(tmp_path / "single"), "run.parallel": "ddp"}))
    ddp_records = read_metrics(tmp_path / "ddp" / "metrics.jsonl")
    assert ddp_records[0]["world_size"] == 2
    gap = max_gap(curve(tmp_path / "ddp" / "metrics.jsonl"), curve(single["metrics_path"]))
    ddp_ckpt = tmp_path / "ddp" / "ckpt_0000010.pt"
    if not ddp_ckpt.exists():  # FSDP2 writes the sharded DCP folder
        ddp_ckpt = ddp_ckpt.with_suffix(".dcp")
    a = load_checkpoint(ddp_ckpt)["model"]
    b = load_checkpoint(single["checkpoint_path"])["model"]
    pgap = max(float((a[k] - b[k]).abs().max()) for k in a)
    return gap, pgap


@pytest.mark.parametrize("name", ["adamw", "muon"])
def test_two_gloo_ranks_match_one_process(name, corpus, tmp_path):
    gap, pgap = compare(corpus, tmp_path, name)
    assert gap <= TOL, gap
    assert pgap <= 1e-4, pgap


def test_gradient_accumulation_under_ddp_matches_one_process(corpus, tmp_path):
    """Two ranks with two micro-batches each (``no_sync`` on the first) against one process with the same
    accumulation: the same global batch per step, so the same tolerance as above."""
    gap, pgap = compare(corpus, tmp_path, "adamw", run__grad_accum=2)
    assert gap <= TOL, gap
    assert pgap <= 1e-4, pgap


def test_drop_muon_two_ranks_draw_the_same_cutoffs(corpus, tmp_path):
    gap, _ = compare(corpus, tmp_path, "drop-muon")
    assert gap <= TOL, gap
    ddp = [r["cutoff"] for r in read_metrics(tmp_path / "ddp" / "metrics.jsonl") if r.get("kind") == "train"]
    single = [r["cutoff"] for r in read_metrics(tmp_path / "single" / "metrics.jsonl") if r.get("kind") == "train"]
    assert ddp == single and len(set(ddp)) > 1
    log = load_checkpoint(tmp_path / "ddp" / "ckpt_0000010.pt")["optim"][0]["state"]["drop_muon"]
    assert log["frozen_with_grad"] == 0  # DDP left the frozen blocks' .grad at None


@pytest.mark.slow
def test_fsdp2_on_gloo_matches_and_resumes(corpus, tmp_path):
    gap, pgap = compare(corpus, tmp_path, "adamw", run__parallel="fsdp", run__ckpt_interval=5,
                        run__keep_checkpoints=0)
    assert gap <= TOL and pgap <= 1e-4, (gap, pgap)
    # resume the sharded run from step 5: identical continuation
    (tmp_path / "ddp" / "ckpt_0000010.dcp").rename(tmp_path / "full.dcp")
    o = overrides(corpus, tmp_path / "ddp", optim__name="adamw", run__parallel="fsdp", run__ckpt_interval=5,
                  run__keep_checkpoints=0, run__resume=True)
    torchrun(o)
    a = load_checkpoint(tmp_path / "full.dcp")["model"]
    b = load_checkpoint(tmp_path / "ddp" / "ckpt_0000010.dcp")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fsdp_rejects_untested_optimizer(corpus, tmp_path, monkeypatch):
    """Under FSDP (world size > 1) an optimizer not tested on sharded parameters is refused by name."""
    cfg = resolve(overrides=overrides(corpus, tmp_path, optim__name="sgd", run__parallel="fsdp"))
    ctx = T.DistContext(rank=0, world_size=2)
    with pytest.raises(ValueError, match="run.parallel='fsdp' supports optim.name in adamw, muon, drop-muon"):
        T._check_config(cfg, ctx)


def test_half_batch_is_outside_the_tolerance(corpus, tmp_path):
    """The twin: one rank's rows alone (batch 4 instead of the global 8) give a curve far from the
    global-batch one, so the tolerance above separates "same global batch" from "per-rank batches"."""
    full = T.train(resolve(overrides=overrides(corpus, tmp_path / "full", optim__name="adamw")))
    half = T.train(resolve(overrides=overrides(corpus, tmp_path / "half", optim__name="adamw",
                                               data__batch_size=4)))
    assert max_gap(curve(full["metrics_path"]), curve(half["metrics_path"])) > 100 * TOL
