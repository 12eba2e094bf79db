"""The Drop-Muon CNN benchmark (``scale.dropmuon``): its CLI, the JSON it writes, and that Drop-Muon really
backpropagates fewer blocks than Muon. No timing is asserted: wall-clock numbers on a shared machine are
only meaningful as ratios in a report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("optlib.optim.drop_muon")

from scale import dropmuon  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(seeds=1, target=1.0, resolution=8, channels=(4, 8), batch_size=64, eval_every=5, max_steps=12,
            warmup_steps=1, time_limit=20.0, max_epochs=5.0)


def test_cli_help_names_every_option():
    proc = subprocess.run([sys.executable, "-m", "scale.dropmuon", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for option in ("--seeds", "--target", "--batch-size", "--channels", "--lr", "--max-epochs", "--time-limit",
                   "--out", "--methods", "--resolution", "--metric"):
        assert option in proc.stdout, option
    assert "2510.02239" in proc.stdout


def test_cli_rejects_bad_input(tmp_path):
    assert dropmuon.main(["--seeds", "0", "--out", str(tmp_path)]) == 2
    assert dropmuon.main(["--target", "1.5", "--out", str(tmp_path)]) == 2
    assert dropmuon.main(["--resolution", "12", "--out", str(tmp_path)]) == 2


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("dropmuon")
    cfg = dropmuon.Config(**TINY, threads=1)
    result = dropmuon.run_benchmark(cfg, progress=False, out=out, plot=True)
    return out, result


def test_tiny_run_writes_json_and_plot(tiny_result):
    out, _ = tiny_result
    data = json.loads((out / dropmuon.JSON_NAME).read_text())
    assert {"config", "provenance", "data", "model", "runs", "summary", "ratios"} <= set(data)
    assert (out / dropmuon.PLOT_NAME).stat().st_size > 0
    assert {r["method"] for r in data["runs"]} == set(dropmuon.METHODS)
    for run in data["runs"]:
        for key in ("seed", "reached", "time_to_target", "steps", "mean_layers_backpropagated",
                    "backward_flops_to_target", "curve_time", "curve_accuracy", "cutoff_counts", "frozen_grads_seen"):
            assert key in run, key
        assert run["steps"] == TINY["max_steps"]
        assert len(run["curve_time"]) == len(run["curve_accuracy"]) >= 1
        assert sum(run["cutoff_counts"]) == run["steps"]
    for name in ("muon/drop-uniform", "muon/drop-shift", "muon/adamw"):
        assert {"time_to_target", "backward_flops_to_target", "time_per_step"} <= set(data["ratios"][name])
    assert data["provenance"]["env-benchmark_threads"] == 1


def test_drop_muon_backpropagates_fewer_layers(tiny_result):
    _, result = tiny_result
    runs = {r["method"]: r for r in result["runs"]}
    n_blocks = result["model"]["blocks"]
    assert runs["muon"]["mean_layers_backpropagated"] == n_blocks
    assert runs["adamw"]["mean_layers_backpropagated"] == n_blocks
    for m in dropmuon.DROP_METHODS:
        assert runs[m]["mean_layers_backpropagated"] < n_blocks
        assert sum(runs[m]["cutoff_counts"][1:]) > 0
        # The backward pass really stopped: no frozen block ever held a gradient.
        assert runs[m]["frozen_grads_seen"] == 0
    for r in result["runs"]:
        assert r["mean_backward_flops_per_step"] <= runs["muon"]["mean_backward_flops_per_step"] + 1e-6


def test_frozen_blocks_keep_weights_and_no_grad():
    """One Drop-Muon step with cutoff 2 on the benchmark's model: blocks 0 and 1 get no gradient and do
    not move; the blocks above do."""
    cfg = dropmuon.Config(**{**TINY, "channels": (4, 8, 8)})
    torch.manual_seed(0)
    model = dropmuon.build_model(cfg.channels, cfg.resolution)
    trainer = dropmuon.Trainer("drop-uniform", model, cfg, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    from optlib.optim.progressive import progressive_forward

    x, y = torch.randn(16, 1, cfg.resolution, cfg.resolution), torch.randint(0, 10, (16,))
    s = 2
    trainer.zero_grad()
    torch.nn.functional.cross_entropy(progressive_forward(list(model), x, s), y).backward()
    for opt in trainer.optimizers:
        opt.step(cutoff=s) if opt is trainer.drop else opt.step()
    layer_of = [i for i, blk in enumerate(model) for _ in blk.parameters()]
    for i, p, p0 in zip(layer_of, model.parameters(), before):
        if i < s:
            assert p.grad is None and torch.equal(p, p0)
        else:
            assert p.grad is not None and not torch.equal(p, p0)


def test_block_costs_decrease_with_the_cutoff():
    costs = dropmuon.block_costs((4, 8, 16), 16)
    back = [costs.backward(s) for s in range(costs.num_blocks)]
    assert all(a > b for a, b in zip(back, back[1:]))
