"""The Drop-Muon CNN benchmark (``scale.bench.drop_muon_digits``): its generated command line, the JSON it
writes, that Drop-Muon really backpropagates fewer blocks than Muon, and that the report's smoke configuration
reaches its target (so the report's quick section has real ratios). No timing is asserted: wall-clock numbers
on a shared machine are only meaningful as ratios in a report."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from optlib.optim.progressive import progressive_forward
from scale.bench import drop_muon_digits as bench
from scale.bench.common import ReportContext

TINY = dict(seeds=1, target=1.0, resolution=8, channels=(4, 8), batch_size=64, eval_every=5, max_steps=12,
            warmup_steps=1, time_limit=20.0, max_epochs=5.0, threads=1, progress=False)


def test_cli_help_names_every_option(capsys):
    assert bench.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m scale.bench.drop_muon_digits")
    for flag in ("--seeds", "--target", "--batch-size", "--channels", "--lr", "--max-epochs", "--time-limit",
                 "--out", "--methods", "--resolution", "--metric", "--plot", "--progress", "--preset"):
        assert flag in out, flag
    squeezed = "".join(out.split())  # argparse wraps long choices at their hyphens
    assert "2510.02239" in out and "drop-muon-uniform" in squeezed and "drop-muon-shift" in squeezed


def test_cli_rejects_bad_input(tmp_path, capsys):
    assert bench.main(["--bogus", "--out", str(tmp_path)]) == 2
    assert "unknown option '--bogus'" in capsys.readouterr().err
    assert bench.main(["--methods", "drop-uniform", "--out", str(tmp_path)]) == 2
    assert "methods: invalid value 'drop-uniform' (did you mean 'drop-muon-uniform'" in capsys.readouterr().err
    assert bench.main(["--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "error: --seeds must be at least 1" in capsys.readouterr().err
    assert bench.main(["--target", "1.5", "--out", str(tmp_path)]) == 2
    assert "error: --target" in capsys.readouterr().err
    assert bench.main(["--resolution", "12", "--out", str(tmp_path)]) == 2
    assert "error: --resolution must be at least 8 and divisible by 2**len(channels) = 8" in capsys.readouterr().err
    assert bench.main(["--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_print_config_round_trips(tmp_path, capsys):
    assert bench.main(["--preset", "smoke", "--seeds", "1", "--max-steps", "7", "--print-config"]) == 0
    toml = tmp_path / "c.toml"
    toml.write_text(capsys.readouterr().out)
    expected = bench.Config(**{**bench.PRESETS["smoke"], "seeds": 1, "max_steps": 7})
    assert bench.COMMAND.parse(["--config", str(toml)])[0] == expected
    assert bench.main(["--preset", "quick", "--print-config"]) == 0
    assert 'methods = ["muon", "drop-muon-uniform", "drop-muon-shift"]' in capsys.readouterr().out


def test_presets_are_valid_settings():
    for name, values in bench.PRESETS.items():
        bench.Config(**values).validate()
    smoke = bench.Config(**bench.PRESETS["smoke"])
    # The report's --quick section shows the 8x8 digits as they are: its text must not claim an upsampling.
    assert smoke.resolution == 8
    assert "no upsampling" in bench.describe_images(smoke.resolution)
    assert "upsampled bilinearly to 16x16" in bench.describe_images(16)


def test_smoke_preset_reaches_its_target(tmp_path, monkeypatch):
    """The report's quick section measures something real: it runs the smoke preset, with which Muon and the
    Drop-Muon methods reach the target (measured: every run reaches 0.9 within 5-20 of the 30 allowed epochs,
    a fraction of a second each), so the ratios Muon / Drop-Muon are finite; its text describes the 8x8 images
    truthfully."""
    results = []
    run_benchmark = bench.run_benchmark

    def recording(cfg, **kwargs):
        results.append((cfg, run_benchmark(cfg, **kwargs)))
        return results[-1][1]

    monkeypatch.setattr(bench, "run_benchmark", recording)
    ctx = ReportContext(SimpleNamespace(mode="quick", threads=1, progress=False), tmp_path)
    section = bench.report_section(ctx)
    (cfg, result), = results
    assert cfg == bench.Config(**bench.PRESETS["smoke"], threads=1, out=None, plot=False, progress=False)
    summary = result["summary"]
    assert summary["muon"]["reached"] >= 1, summary["muon"]
    reached = [m for m in bench.DROP_METHODS if summary[m]["reached"] >= 1]
    assert reached, {m: summary[m]["reached"] for m in bench.DROP_METHODS}
    for m in reached:
        ratio = result["ratios"][f"muon/{m}"]["time_to_target"]
        assert ratio["n"] >= 1 and math.isfinite(ratio["median"]) and ratio["median"] > 0
    assert result["data"]["resolution"] == 8 and not result["data"]["upsampled"]
    text = section.markdown
    assert "8x8 images as they are (no upsampling)" in text and "upsampled" not in text.replace("no upsampling", "")
    assert "`python -m scale.bench.drop_muon_digits --preset smoke`" in text
    assert section.figures == ["figures/" + bench.PLOT_NAME] and (tmp_path / section.figures[0]).stat().st_size > 0


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("drop_muon")
    result = bench.run_benchmark(bench.Config(**TINY), out=out, plot=True)
    return out, result


def test_tiny_run_writes_json_and_plot(tiny_result):
    out, _ = tiny_result
    data = json.loads((out / bench.JSON_NAME).read_text())
    assert {"config", "provenance", "data", "model", "runs", "summary", "ratios"} <= set(data)
    assert (out / bench.PLOT_NAME).stat().st_size > 0
    assert {r["method"] for r in data["runs"]} == set(bench.METHODS)
    assert data["config"]["methods"] == list(bench.METHODS) and data["config"]["channels"] == [4, 8]
    assert "out" not in data["config"] and "progress" not in data["config"]
    for run in data["runs"]:
        for key in ("seed", "reached", "time_to_target", "steps", "mean_layers_backpropagated",
                    "backward_flops_to_target", "curve_time", "curve_accuracy", "cutoff_counts", "frozen_grads_seen"):
            assert key in run, key
        assert run["steps"] == TINY["max_steps"]
        assert len(run["curve_time"]) == len(run["curve_accuracy"]) >= 1
        assert sum(run["cutoff_counts"]) == run["steps"]
    assert set(data["ratios"]) == {"muon/adamw", "muon/drop-muon-uniform", "muon/drop-muon-shift"}
    for r in data["ratios"].values():
        assert {"time_to_target", "backward_flops_to_target", "time_per_step"} <= set(r)
    assert data["provenance"]["env-benchmark_threads"] == 1


def test_drop_muon_backpropagates_fewer_layers(tiny_result):
    _, result = tiny_result
    runs = {r["method"]: r for r in result["runs"]}
    n_blocks = result["model"]["blocks"]
    assert runs["muon"]["mean_layers_backpropagated"] == n_blocks
    assert runs["adamw"]["mean_layers_backpropagated"] == n_blocks
    for m in bench.DROP_METHODS:
        assert runs[m]["mean_layers_backpropagated"] < n_blocks
        assert sum(runs[m]["cutoff_counts"][1:]) > 0
        # The backward pass really stopped: no frozen block ever held a gradient.
        assert runs[m]["frozen_grads_seen"] == 0
    for r in result["runs"]:
        assert r["mean_backward_flops_per_step"] <= runs["muon"]["mean_backward_flops_per_step"] + 1e-6


def test_frozen_blocks_keep_weights_and_no_grad():
    """One Drop-Muon step with cutoff 2 on the benchmark's model: blocks 0 and 1 get no gradient and do
    not move; the blocks above do."""
    cfg = bench.Config(**{**TINY, "channels": (4, 8, 8)})
    torch.manual_seed(0)
    model = bench.build_model(cfg.channels, cfg.resolution)
    trainer = bench.Trainer("drop-muon-uniform", model, cfg, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
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
    costs = bench.block_costs((4, 8, 16), 16)
    back = [costs.backward(s) for s in range(costs.num_blocks)]
    assert all(a > b for a, b in zip(back, back[1:]))
