"""``python -m scale.quantize`` end to end on a briefly trained GPT, and its refusals of bad input.

The model trains for 40 steps (a few seconds); the end-to-end check is about the plumbing (files written,
perplexity before and after, sizes), not about quality, which the quantization targets measure on the fully
trained CPU preset (``python -m scale.quantize``)."""

from __future__ import annotations

import json

import pytest
import torch

from scale.config import resolve
from scale.quantize.cli import Config, load_model, main, run_evaluation
from scale.train import train


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("qrun")
    cfg = resolve("shakespeare-char-cpu", overrides={
        "run.out_dir": str(out), "run.max_iters": 40, "run.eval_interval": 40, "run.eval_iters": 2,
        "run.progress": False, "schedule.warmup": 4, "model.n_layer": 2})
    train(cfg)
    return out


def test_cli_writes_table_plot_json_and_packed_model(short_run, tmp_path, capsys):
    out = tmp_path / "report"
    rc = main(["--checkpoint", str(short_run), "--methods", "rtn", "gptq", "--bits", "4", "--group-sizes", "32",
               "--calib-windows", "8", "--eval-windows", "20", "--write-packed", "--out", str(out)])
    assert rc == 0
    result = json.loads((out / "quantize.json").read_text())
    assert [r["method"] for r in result["rows"]] == ["rtn", "gptq"]
    assert (out / "quantize.md").read_text().startswith("| method |")
    assert (out / "quantize_ppl_vs_bits.png").stat().st_size > 0
    for r in result["rows"]:
        assert r["ppl"] > 1 and r["size_bytes"] < result["fp"]["size_bytes"] / 3
        assert (out / r["packed"].split("/")[-1]).exists()


@pytest.mark.slow
def test_targets_on_the_trained_cpu_preset(tmp_path):
    """The fully trained CPU preset (2000 steps, minutes): 4-bit GPTQ and FOEM raise the validation perplexity by
    less than 2 % relative at g = 32 and g = 128, and GPTQ is no worse than RTN."""
    cfg = Config(checkpoint=str(tmp_path / "model"), train=True, methods=("rtn", "gptq", "foem"), bits=(4,),
                 group_sizes=(32, 128))
    result = run_evaluation(cfg, log=lambda *_: None, progress=False)
    for g in (32, 128):
        rows = {r["method"]: r for r in result["rows"] if r["group_size"] == g}
        assert rows["gptq"]["increase"] < 0.02 and rows["foem"]["increase"] < 0.02
        assert rows["gptq"]["ppl"] <= rows["rtn"]["ppl"]


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    bogus = tmp_path / "ckpt_0000001.pt"
    torch.save({"weights": torch.zeros(2)}, bogus)
    with pytest.raises(ValueError, match="is not a usable scale.train checkpoint"):
        load_model(str(bogus))
    with pytest.raises(ValueError, match="no scale.train checkpoint"):
        load_model(str(tmp_path / "empty"))
    assert main(["--checkpoint", str(bogus), "--out", str(tmp_path / "o")]) == 2


def test_help_and_bad_settings(capsys):
    assert main(["--help"]) == 0
    assert "--group-sizes" in capsys.readouterr().out
    assert main(["--bits", "5"]) == 2
    assert "bits must be one of" in capsys.readouterr().err
