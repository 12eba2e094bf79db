"""The training benchmarks (``scale.train_bench``) on tiny configurations: the plain loop computes what
``scale.train`` computes (the fairness of the throughput ratio), the time-to-target extraction, the
scaling-law pipeline, the JSON/PNG outputs, the report section and the CLI. No timing is asserted: the
speed figures are only meaningful as ratios measured by the benchmark itself."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scale import train_bench as tb
from scale.data import BatchSampler

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory) -> tuple[str, ...]:
    """``--set`` overrides that shrink the preset: a 30,000-character corpus, 2 blocks of width 32, context
    16, batch 4, 2 validation batches."""
    from scale.data import load_corpus

    corpus = load_corpus("shakespeare")
    text = corpus.decode(corpus.train[:30_000])
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(text, encoding="utf-8")
    return (f"data.corpus={path}", "model.n_layer=2", "model.n_head=2", "model.n_embd=32",
            "model.block_size=16", "data.batch_size=4", "run.eval_iters=2")


def _tiny_config(tiny_sets, tmp_path, **overrides):
    base = {"run.max_iters": 6, "run.log_interval": 1, "run.eval_interval": 0, "schedule.warmup": 2,
            "run.out_dir": str(tmp_path / "run"), "run.seed": 11, "run.threads": 1}
    return tb.bench_config({**base, **overrides}, extra=tiny_sets)


# ---------------------------------------------------------------------------------------- fairness
def test_plain_loop_sees_the_same_batches_and_gives_the_same_losses(tiny_sets, tmp_path):
    config = _tiny_config(tiny_sets, tmp_path)
    _, records = tb._run_train(config)
    train_losses = [r["loss"] for r in records if r.get("kind") == "train"]
    assert len(train_losses) == 6
    plain = tb.PlainLoop(config)
    # same initialization, batches, AdamW groups, schedule and clipping -> the same loss at every step
    np.testing.assert_allclose(plain.losses(6), train_losses, rtol=1e-6, atol=0)


def test_plain_loop_comparison_would_catch_other_batches_or_schedule(tiny_sets, tmp_path):
    config = _tiny_config(tiny_sets, tmp_path)
    _, records = tb._run_train(config)
    train_losses = np.array([r["loss"] for r in records if r.get("kind") == "train"])
    other_batches = tb.PlainLoop(config)
    other_batches.sampler = BatchSampler(other_batches.sampler.tokens, config.model.block_size,
                                         config.data.batch_size, config.run.seed + 1)
    assert np.max(np.abs(np.array(other_batches.losses(6)) - train_losses)) > 1e-3
    no_warmup = tb.PlainLoop(config)
    no_warmup.schedule = lambda k: 1.0  # the peak learning rate from step 0: steps 2.. differ
    losses = np.array(no_warmup.losses(6))
    assert losses[0] == pytest.approx(train_losses[0], rel=1e-6)  # before any update
    assert np.max(np.abs(losses[1:] - train_losses[1:])) > 1e-4


def test_plain_loop_refuses_other_optimizers(tiny_sets, tmp_path):
    with pytest.raises(ValueError, match="adamw"):
        tb.PlainLoop(_tiny_config(tiny_sets, tmp_path, **{"optim.name": "muon"}))


# ---------------------------------------------------------------------------------------- time to target
def _write_metrics(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return path


EVALS = [(0, 0.0, 4.17), (50, 5.0, 2.10), (100, 10.5, 1.87), (150, 16.0, 1.80)]


def test_time_to_target_reads_the_first_evaluation_at_or_below_the_target(tmp_path):
    lines = [{"kind": "header", "config": {}}]
    for step, wall, val in EVALS:
        if step:
            lines.append({"kind": "train", "step": step, "loss": val + 0.1, "wall_s": wall - 0.1, "tokens": 768 * step})
        lines.append({"kind": "eval", "step": step, "val_loss": val, "wall_s": wall, "tokens": 768 * step})
    path = _write_metrics(tmp_path / "metrics.jsonl", lines)
    hit = tb.time_to_target(path, 1.88)
    assert hit["reached"] and hit["step"] == 100 and hit["wall_s"] == 10.5 and hit["tokens"] == 76_800
    assert hit["val_loss"] == 1.87 and hit["best_val_loss"] == 1.80 and hit["evaluations"] == 4
    assert tb.time_to_target(path, 1.87)["step"] == 100  # "at most" the target
    assert tb.time_to_target(path, 2.10)["step"] == 50
    miss = tb.time_to_target(path, 1.5)
    assert not miss["reached"] and miss["wall_s"] == math.inf and miss["step"] is None
    assert miss["best_val_loss"] == 1.80


def test_time_to_target_keeps_the_last_record_of_a_repeated_step(tmp_path):
    lines = [{"kind": "eval", "step": s, "val_loss": v, "wall_s": w} for s, w, v in EVALS]
    # a resumed run evaluates step 100 again (records appended after the original ones)
    lines.append({"kind": "resume", "step": 50, "checkpoint": "ckpt_0000050.pt"})
    lines.append({"kind": "eval", "step": 100, "val_loss": 1.95, "wall_s": 11.0})
    hit = tb.time_to_target(lines, 1.88)
    assert hit["step"] == 150 and hit["wall_s"] == 16.0


def test_time_to_target_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no evaluation records"):
        tb.time_to_target([{"kind": "train", "step": 1, "loss": 2.0}], 1.88)
    with pytest.raises(ValueError, match="target"):
        tb.time_to_target([{"kind": "eval", "step": 0, "val_loss": 2.0, "wall_s": 0.0}], math.nan)


def test_quality_ratios_pair_seeds_and_mark_misses():
    def run(method, seed, t, steps=None):
        return {"method": method, "seed": seed, "reached": math.isfinite(t), "time_to_target": t,
                "steps_to_target": steps, "final_val_loss": 1.8, "time_per_step": 0.1 if method == "adamw" else 0.12}

    runs = [run("adamw", 0, 10.0, 100), run("adamw", 1, 20.0, 200), run("adamw", 2, math.inf),
            run("muon", 0, 6.0, 50), run("muon", 1, math.inf), run("muon", 2, 5.0, 40)]
    summary, ratios = tb.summarize_quality(runs, ["adamw", "muon"])
    r = ratios["muon"]["time_to_target"]
    assert r["per_seed"][0] == pytest.approx(0.6)
    assert r["per_seed"][1] == math.inf  # muon missed, adamw reached
    assert math.isnan(r["per_seed"][2])  # the anchor missed: no ratio
    assert r["n"] == 1 and r["median"] == pytest.approx(0.6)
    assert ratios["muon"]["missed"] == 1
    assert ratios["muon"]["steps_to_target"]["per_seed"][0] == pytest.approx(0.5)
    assert ratios["muon"]["time_per_step"]["median"] == pytest.approx(1.2)
    assert summary["adamw"]["reached"] == 2 and summary["muon"]["reached"] == 2


def test_anchor_target_is_the_worst_seed_best_loss():
    runs = [{"method": "adamw", "curve_val_loss": [3.0, 2.0, 2.1]},
            {"method": "adamw", "curve_val_loss": [3.0, 2.4, 2.2]},
            {"method": "muon", "curve_val_loss": [3.0, 1.5]}]
    assert tb.anchor_target(runs) == 2.2


# ---------------------------------------------------------------------------------------- benchmarks, tiny
def test_throughput_tiny_writes_json_and_png(tiny_sets, tmp_path):
    cfg = tb.ThroughputConfig(steps=3, warmup=1, rounds=2, threads=(1,), overrides=tiny_sets)
    result = tb.measure_throughput(cfg, out=tmp_path)
    data = json.loads((tmp_path / tb.THROUGHPUT_JSON).read_text())
    assert (tmp_path / tb.THROUGHPUT_PNG).stat().st_size > 0
    one = data["by_threads"]["1"]
    assert [r["order"] for r in one["rounds"]] == [list(tb.SIDES), list(tb.SIDES[::-1])]
    for r in result["by_threads"]["1"]["rounds"]:
        for side in tb.SIDES:
            assert r[side]["tokens_per_s"] > 0 and math.isfinite(r[side]["tokens_per_s"])
    assert data["model"]["tokens_per_step"] == 4 * 16
    assert one["ratio"] > 0 and one["ratio_per_round"]["n"] == 2


def test_quality_tiny_with_target_from_adamw(tiny_sets, tmp_path):
    cfg = tb.QualityConfig(methods=("adamw", "muon", "dropmuon-shift"), seeds=1, max_iters=6, warmup=2,
                           eval_interval=2, target=None, threads=1, overrides=tiny_sets)
    result = tb.run_quality(cfg, out=tmp_path)
    data = json.loads((tmp_path / tb.QUALITY_JSON).read_text())
    assert (tmp_path / tb.QUALITY_PNG).stat().st_size > 0
    adamw = next(r for r in data["runs"] if r["method"] == "adamw")
    assert data["target"] == pytest.approx(min(adamw["curve_val_loss"]))
    assert adamw["reached"] and adamw["curve_step"] == [0, 2, 4, 6]
    dm = next(r for r in result["runs"] if r["method"] == "dropmuon-shift")
    assert dm["mean_layers_backpropagated"] is not None and 1 <= dm["mean_layers_backpropagated"] <= 2
    assert set(data["ratios"]) == {"muon", "dropmuon-shift"}
    assert Path(adamw["metrics_path"]).is_file()


def test_quality_rejects_bad_settings():
    with pytest.raises(ValueError, match="known: adamw"):
        tb.QualityConfig(methods=("sgd",)).validate()
    with pytest.raises(ValueError, match="target=None"):
        tb.QualityConfig(methods=("muon",), target=None).validate()
    with pytest.raises(ValueError, match="seeds"):
        tb.QualityConfig(seeds=0).validate()
    with pytest.raises(ValueError, match="SECTION.KEY=VALUE"):
        tb.parse_assignments(["optim.lr"])


def test_centered_average_hand_cases():
    np.testing.assert_allclose(tb.centered_average([0.0, 2.0, 0.0, 2.0, 0.0], 3), [0, 2 / 3, 4 / 3, 2 / 3, 0])
    line = np.arange(10.0) * 0.5 + 1.0
    np.testing.assert_allclose(tb.centered_average(line, 5), line)  # a linear trend passes unchanged
    np.testing.assert_allclose(tb.centered_average([1.0, 5.0, 3.0], 1), [1.0, 5.0, 3.0])


def test_scaling_pipeline_on_tiny_runs(tiny_sets, tmp_path):
    cfg = tb.ScalingConfig(steps=30, warmup=3, smooth=5, threads=1, overrides=tiny_sets)
    result = tb.run_scaling(cfg, out=tmp_path)
    data = json.loads((tmp_path / tb.SCALING_JSON).read_text())
    assert (tmp_path / tb.SCALING_PNG).stat().st_size > 0
    assert set(data["curves"]) == {"constant", "cosine", "wsd"}
    assert data["errors"]["wsd"]["role"] == "predict" and data["errors"]["cosine"]["role"] == "fit"
    # the learning rates that were logged are the schedules asked for: constant after warmup, WSD decaying
    lr_c, lr_w = np.array(data["curves"]["constant"]["lr"]), np.array(data["curves"]["wsd"]["lr"])
    assert np.ptp(lr_c[5:]) == 0 and lr_w[-1] < lr_w[10]
    # the reported errors are the differences of the stored curves after the skipped warmup
    skip = data["skip"]
    for name, c in result["curves"].items():
        step = np.array(c["step"])
        keep = step >= skip
        diff = np.abs(np.array(c["predicted"]) - np.array(c["smoothed"]))[keep]
        assert result["errors"][name]["smoothed"]["mean_abs"] == pytest.approx(diff.mean(), rel=1e-9)
        assert result["errors"][name]["smoothed"]["max_abs"] == pytest.approx(diff.max(), rel=1e-9)
        raw = np.abs(np.array(c["predicted"]) - np.array(c["loss"]))[keep]
        assert result["errors"][name]["raw"]["mean_abs"] == pytest.approx(raw.mean(), rel=1e-9)
    law = data["law"]
    assert all(math.isfinite(law[k]) for k in ("L0", "A", "alpha", "C"))
    assert data["law_without_annealing"]["C"] == 0.0


def test_profile_tiny_names_the_pieces_of_a_step(tiny_sets, tmp_path):
    config = _tiny_config(tiny_sets, tmp_path, **{"run.log_interval": 2})
    result = tb.profile_steps(config, 4, top=5)
    train, plain = result["scale.train"]["per_step"], result["plain"]["per_step"]
    for piece in ("forward (GPT.forward)", "backward (Tensor.backward)", "AdamW step", "whole step (training loop)"):
        assert train[piece] > 0 and plain[piece] > 0, piece
    assert train["metrics line (MetricsWriter.write)"] > 0 and plain["metrics line (MetricsWriter.write)"] is None
    assert train["forward (GPT.forward)"] < train["whole step (training loop)"]
    assert "AdamW step" in tb.format_profile(result) and "by_tottime" in result["plain"]


# ---------------------------------------------------------------------------------------- report and CLI
def test_report_section_quick_mode(tiny_sets, tmp_path, monkeypatch):
    from scale.report import ReportConfig, ReportContext

    tiny = {
        "throughput": dict(steps=2, warmup=1, rounds=1, overrides=tiny_sets),
        "quality": dict(seeds=1, max_iters=4, warmup=1, eval_interval=2, target=None, overrides=tiny_sets),
        "scaling": dict(steps=24, warmup=3, smooth=5, overrides=tiny_sets),
    }
    monkeypatch.setitem(tb.REPORT_TIERS, "quick", tiny)
    ctx = ReportContext(ReportConfig(out=tmp_path, mode="quick", threads=1, progress=False))
    section = tb.report_section(ctx)
    assert "quick configuration" in section.markdown
    assert "python -m scale.train_bench quality --seeds 2" in section.markdown
    for method in tb.DEFAULT_METHODS:
        assert f"| {method} |" in section.markdown
    assert len(section.figures) == 2
    for rel in section.figures:
        assert (tmp_path / rel).stat().st_size > 0


def test_cli_help_explains_every_command():
    proc = subprocess.run([sys.executable, "-m", "scale.train_bench", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for command in ("throughput", "quality", "scaling", "profile"):
        assert command in proc.stdout
    p = tb.parser()
    sub = next(a for a in p._actions if a.dest == "command").choices
    expected = {
        "throughput": ("--steps", "--warmup", "--rounds", "--threads", "--seed"),
        "quality": ("--methods", "--seeds", "--target", "--max-iters", "--eval-interval", "--threads"),
        "scaling": ("--steps", "--fit-schedules", "--predict-schedule", "--decay-fraction", "--smooth"),
        "profile": ("--steps", "--threads", "--top"),
    }
    for command, options in expected.items():
        text = sub[command].format_help()
        for option in (*options, "--out", "--set", "--preset"):
            assert option in text, (command, option)
        for action in sub[command]._actions:  # every option carries a help text
            assert action.help, (command, action.dest)


def test_cli_bad_input_exits_2(tmp_path, capsys):
    assert tb.main(["quality", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "seeds" in capsys.readouterr().err
    assert tb.main(["throughput", "--set", "optim.lr", "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        tb.main(["quality", "--target", "low"])
