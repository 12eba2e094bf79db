"""The report (scale.report): a quick run on a tiny problem set writes every file and section; sections come
from the registry that the benchmark modules fill, in their order."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
from test_bench_second_order import tiny_logistic

from scale import report
from scale.bench import common, mutants, theorems, training
from scale.data import load_corpus

SOLVERS = ["optlib:grad-norm-newton[exact]", "optlib:cubic-newton", "scipy:trust-exact", "scipy:L-BFGS-B"]


@dataclass
class FakeCheck:
    name: str
    statement: str
    source: str
    measured: float
    bound: float
    holds: bool
    slack: float = 0.0
    details: dict = field(default_factory=dict)


@pytest.fixture
def fake_theory(monkeypatch):
    """A stand-in for the theorem checks, so the test checks the rendering, not the theorems."""
    checks = [
        FakeCheck("1 invariant", "f_k - f_{k+1} >= g^2/(8 lam)", "paper, Lemma 1", 0.5, 1.0, True, 1e-12,
                  {"method": "grad-norm-newton", "problem": "tiny"}),
        FakeCheck("2 overhead | pipes", "N_K <= 2K + 1", "derived", 3.0, 2.0, False, 0.0, {"K": 1}),
    ]
    monkeypatch.setattr(theorems, "theorem_checks", lambda quick: checks)
    return checks


def _tiny_training_tier(tmp_path, monkeypatch) -> None:
    """The training section's quick presets shrunk to a 2-block GPT on 30,000 characters (a few seconds)."""
    corpus = load_corpus("shakespeare")
    path = tmp_path / "tiny.txt"
    path.write_text(corpus.decode(corpus.train[:30_000]), encoding="utf-8")
    tiny = (f"data.corpus={path}", "model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.block_size=16",
            "data.batch_size=4", "run.eval_iters=2")
    monkeypatch.setitem(training.THROUGHPUT_PRESETS, "quick", dict(steps=2, warmup=1, rounds=1, set=tiny))
    monkeypatch.setitem(training.QUALITY_PRESETS, "quick", dict(seeds=1, max_iters=4, warmup=1, eval_interval=2,
                                                                target="adamw", set=tiny))
    monkeypatch.setitem(training.SCALING_PRESETS, "quick", dict(steps=24, warmup=3, smooth=5, set=tiny))


def test_quick_report_writes_every_file_and_section(tmp_path, fake_theory, monkeypatch):
    _tiny_training_tier(tmp_path, monkeypatch)
    # one historical survivor against one theorem file keeps the mutation section to seconds
    monkeypatch.setitem(mutants.PRESETS, "smoke", {"ids": ("grn-acceptance-stricter",),
                                                   "suite": "tests/theorems/test_regularized_newton.py"})
    config = report.ReportConfig(**{
        **report.PRESETS["quick"], "out": tmp_path / "rep", "problems": ("tiny",), "solvers": tuple(SOLVERS),
        "extra_problems": {"tiny": tiny_logistic}, "progress": False,
    })
    md_path, failed = report.build_report(config)
    assert failed == []
    out = tmp_path / "rep"
    for name in ("report.md", "report.html", "results.json", "curves.csv",
                 "figures/convergence_tiny.png", "figures/performance_profile_time.png"):
        assert (out / name).is_file(), name
    md = md_path.read_text()
    assert len(report.load_sections()) >= 11
    for sec in report.load_sections():
        assert f"## {sec.title}" in md
    assert "1 of 2 hold" in md and "fails" in md
    assert "**1 of 1 mutants killed (100.0 %)**" in md
    assert "ratio optlib/scipy" in md
    for solver in SOLVERS:
        assert solver in md
    assert "(figures/convergence_tiny.png)" in md
    html = (out / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html and "<h2" in html
    results = json.loads((out / "results.json").read_text())
    assert {r["solver_name"] for r in results} == set(SOLVERS)
    assert all(r["reached"] for r in results)


def test_failing_section_is_reported_and_the_rest_still_written(tmp_path, monkeypatch):
    def boom(ctx):
        raise RuntimeError("deliberate")

    def fine(ctx):
        return common.SectionResult("all good")

    monkeypatch.setattr(common, "SECTIONS", {"boom": common.Section("boom", "Boom", 1, boom),
                                             "ok": common.Section("ok", "Fine", 2, fine)})
    md_path, failed = report.build_report(report.ReportConfig(out=tmp_path, mode="quick", progress=False))
    md = md_path.read_text()
    assert failed == ["boom"]
    assert "This section failed" in md and "deliberate" in md and "all good" in md
    assert md.index("## Boom") < md.index("## Fine")


def test_sections_register_themselves_in_order(monkeypatch):
    monkeypatch.setattr(common, "SECTIONS", dict(common.SECTIONS))
    names = [s.name for s in report.load_sections()]
    assert names[0] == "theorems" and names[-1] == "provenance"
    assert {"time-to-target", "muon-step", "drop-muon", "training", "unlearning", "curvature",
            "least-squares"} <= set(names)

    @common.register_section("extra", "Extra", order=999)
    def extra(ctx):
        return common.SectionResult("x")

    names = [s.name for s in report.load_sections()]
    assert names.index("extra") == names.index("provenance") - 1

    def other(ctx):
        return common.SectionResult("y")

    with pytest.raises(ValueError, match="already registered"):
        common.register_section("extra", "Again", order=1)(other)


def test_unknown_names_are_errors(tmp_path, capsys):
    assert report.main(["--out", str(tmp_path), "--problems", "no-such-problem", "--no-progress"]) == 2
    assert "unknown problem" in capsys.readouterr().err
    assert report.main(["--out", str(tmp_path), "--solvers", "scipy:nope", "--no-progress"]) == 2
    assert report.main(["--out", str(tmp_path), "--sections", "nope", "--no-progress"]) == 2
    assert "unknown section(s) nope" in capsys.readouterr().err
    assert report.main(["--out", str(tmp_path), "--sections", "theorem", "--no-progress"]) == 2
    assert "did you mean 'theorems'?" in capsys.readouterr().err
    assert report.main(["--out", str(tmp_path), "--repeat", "3"]) == 2
    assert "did you mean '--repeats'" in capsys.readouterr().err
    assert report.main(["--quick", "--full"]) == 2
    assert "choose one preset" in capsys.readouterr().err


def test_presets_and_print_config(capsys):
    assert report.main(["--quick", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert 'mode = "quick"' in text and "repeats = 1" in text and "html = true" in text
    config, _ = report.COMMAND.parse(["--full", "--repeats", "2"])
    assert (config.mode, config.problems, config.repeats, config.theorems_quick) == ("full", None, 2, False)


def test_help_lists_every_option():
    out = subprocess.run([sys.executable, "-m", "scale.report", "--help"], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    for option in ("--out", "--quick", "--full", "--problems", "--solvers", "--repeats", "--target",
                   "--time-limit", "--repeat-budget", "--sections", "--threads", "--no-html", "--list",
                   "--config", "--print-config"):
        assert option in out
    assert "(default: true)" in out and "(default: True)" not in out


def test_markdown_to_html_renders_tables_lists_and_code(tmp_path):
    md = "# T\n\nsome `code` and **bold**\n\n| a | b \\| c |\n|---|---|\n| 1 | 2 |\n\n- x\n- y\n\n```\n<raw>\n```\n"
    html = report.markdown_to_html(md, tmp_path)
    assert "<h1" in html and "<code>code</code>" in html and "<strong>bold</strong>" in html
    assert "<th>b | c</th>" in html and "<td>2</td>" in html
    assert "<li>x</li>" in html and "&lt;raw&gt;" in html
