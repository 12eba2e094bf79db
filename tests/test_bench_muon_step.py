"""Muon's step time against ``torch.optim.Muon`` (``scale.bench.muon_step``): the smoke preset runs and gives a
finite ratio, the report section in quick mode measures it, and the generated command line (errors naming the
valid choices, ``--print-config`` round trip, the JSON it writes). No timing is asserted beyond finiteness."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from scale.bench import muon_step as bench
from scale.bench.common import ReportContext


def test_smoke_preset_gives_a_finite_ratio():
    result = bench.run_benchmark(bench.Config(**bench.PRESETS["smoke"]))
    assert list(result["times"]) == ["tiny-gpt"]
    t = result["times"]["tiny-gpt"]
    for key in ("optlib", "torch", "ratio"):
        assert math.isfinite(t[key]) and t[key] > 0, (key, t)
    assert t["ratio"] == pytest.approx(t["optlib"] / t["torch"])
    assert result["provenance"]["env-benchmark_threads"] == 1


def test_optimizers_make_the_same_update():
    """The settings timed against each other are equivalent: one step from the same state gives the same
    parameters (bfloat16 Newton–Schulz on both sides, so up to bf16 round-off)."""
    shapes = [(32, 16), (16, 48)]
    params = {impl: bench.step_params(shapes) for impl in bench.STEP_IMPLS}
    for impl in bench.STEP_IMPLS:
        bench.muon_optimizer(impl, params[impl]).step()
    for a, b in zip(params["optlib"], params["torch"]):
        assert (a - b).abs().max().item() < 1e-3
    with pytest.raises(ValueError, match="unknown implementation 'jax'"):
        bench.muon_optimizer("jax", params["torch"])


def test_report_section_quick_measures_the_smoke_set(tmp_path):
    ctx = ReportContext(SimpleNamespace(mode="quick", threads=1, progress=False), tmp_path)
    text = bench.report_section(ctx).markdown
    assert "| tiny-gpt |" in text and "n/a" not in text
    assert "1024x1024 |" not in text


def test_cli_errors_name_the_option(tmp_path, capsys):
    assert bench.main(["--shapes", "bogus", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m scale.bench.muon_step: error: shapes: invalid value 'bogus'")
    assert "valid values: tiny-gpt, 1024x1024, 4096x1024" in err
    assert bench.main(["--bogus"]) == 2
    assert "unknown option '--bogus'" in capsys.readouterr().err
    assert bench.main(["--steps", "0", "--out", str(tmp_path)]) == 2
    assert "error: --steps must be at least 1" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    assert bench.main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--shapes", "--steps", "--warmup", "--threads", "--out", "--preset", "--print-config"):
        assert flag in out, flag


def test_print_config_round_trips(tmp_path, capsys):
    assert bench.main(["--preset", "smoke", "--steps", "4", "--print-config"]) == 0
    toml = tmp_path / "c.toml"
    toml.write_text(capsys.readouterr().out)
    expected = bench.Config(**{**bench.PRESETS["smoke"], "steps": 4})
    assert bench.COMMAND.parse(["--config", str(toml)])[0] == expected
    assert bench.COMMAND.parse(["--preset", "report"])[0].shapes == tuple(bench.STEP_SHAPES)


def test_cli_smoke_run_writes_the_json(tmp_path, capsys):
    assert bench.main(["--preset", "smoke", "--steps", "1", "--warmup", "0", "--out", str(tmp_path)]) == 0
    assert "tiny-gpt" in capsys.readouterr().out
    data = json.loads((tmp_path / bench.JSON_NAME).read_text())
    assert data["config"] == {"shapes": ["tiny-gpt"], "steps": 1, "warmup": 0}
    assert set(data["times"]["tiny-gpt"]) == {"optlib", "torch", "ratio"}
