"""The tools around the asv suite: the regression gate (``scripts/bench_compare.py``) judges each figure in
its declared direction, and ``make dashboard``'s runner (``scripts/dashboard_run.py``) deals commits to its
asv processes and gives each its own environment."""

from __future__ import annotations

import datetime
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench_compare = _script("bench_compare")
dashboard_run = _script("dashboard_run")


# ------------------------------------------------------------------------------------------- the gate


@pytest.mark.parametrize(("base", "head", "better", "verdict"), [
    (1.0, 1.6, "lower", "regressed"),    # a ratio 1.6x larger
    (1.0, 1.4, "lower", "same"),
    (1.0, 0.6, "lower", "improved"),
    (0.9, 0.5, "higher", "regressed"),   # an accuracy that fell below base / 1.5
    (0.9, 0.7, "higher", "same"),
    (0.6, 0.95, "higher", "improved"),   # asv's own rule would call this rise a regression
    (-0.02, 0.0, "lower", "regressed"),  # a negative perplexity increase that rose past (factor-1)|base|
    (-0.02, -0.025, "lower", "same"),
    (2.0, 3.5, "none", "not gated"),     # a slope with a target value: shown, not judged
    (math.nan, 1.0, "lower", "not judged"),
    (None, 1.0, "higher", "not judged"),
    (1.0, None, "lower", "regressed"),   # failed at HEAD
    (1.0, math.nan, "higher", "regressed"),
])
def test_judge_follows_the_declared_direction(base, head, better, verdict):
    assert bench_compare.judge(base, head, better, 1.5) == verdict


def test_a_count_with_factor_one_flags_any_drop():
    assert bench_compare.judge(1.0, 6 / 7, "higher", 1.0) == "regressed"
    assert bench_compare.judge(53.0, 53.0, "higher", 1.0) == "same"


def test_every_track_benchmark_declares_its_direction():
    dirs = bench_compare.directions()
    assert len(dirs) >= 30
    assert dirs["theorems.TheoremTable.track_share_holding"] == ("higher", 1.0)
    assert dirs["muon.Ratio.track_ratio_step_time"] == ("lower", None)
    assert dirs["bilevel.Accuracy.track_test_acc_bo_rep"][0] == "higher"
    assert set(bench_compare.directions("theorems")) == {"theorems.TheoremTable.track_share_holding",
                                                         "theorems.TheoremTable.track_worst_margin"}


def _write_results(folder: Path, machine: str, commit: str, values: dict[str, list]):
    """asv result files written through asv's own API, as `asv run` writes them."""
    from asv.results import Results
    from asv.runner import BenchmarkResult

    res = Results({"machine": machine, "python": "3.11"}, {}, commit, 0, "3.11", "virtualenv-py3.11", {})
    for name, (params, result) in values.items():
        bench = {"name": name, "version": "1", "params": params, "param_names": [f"p{i}" for i in
                                                                                  range(len(params))]}
        res.add_result(bench, BenchmarkResult(result=result, samples=[None] * len(result),
                                              number=[None] * len(result), errcode=0, stderr="", profile=None),
                       started_at=datetime.datetime.now(datetime.UTC), duration=1.0)
    res.save(str(folder))


def test_results_are_read_and_compared_per_parameter(tmp_path):
    base, head = "a" * 40, "b" * 40
    (tmp_path / "box").mkdir()
    (tmp_path / "box" / "machine.json").write_text(json.dumps({"machine": "box", "version": 1}))
    _write_results(tmp_path, "box", base, {
        "muon.Ratio.track_ratio_step_time": ([["'tiny-gpt'", "'1024x1024'"]], [1.0, 1.0]),
        "bilevel.Accuracy.track_test_acc_bo_rep": ([], [0.6]),
    })
    _write_results(tmp_path, "box", head, {
        "muon.Ratio.track_ratio_step_time": ([["'tiny-gpt'", "'1024x1024'"]], [1.2, 2.0]),
        "bilevel.Accuracy.track_test_acc_bo_rep": ([], [0.95]),
    })
    assert bench_compare._machine(tmp_path, None) == "box"
    old = bench_compare.load_values(tmp_path, "box", base)
    new = bench_compare.load_values(tmp_path, "box", head)
    assert old[("muon.Ratio.track_ratio_step_time", ("'1024x1024'",))] == 1.0
    rows = bench_compare.compare(old, new, bench_compare.directions(), 1.5)
    verdicts = {(r["benchmark"], tuple(r["params"])): r["verdict"] for r in rows}
    assert verdicts == {("bilevel.Accuracy.track_test_acc_bo_rep", ()): "improved",
                        ("muon.Ratio.track_ratio_step_time", ("'1024x1024'",)): "regressed",
                        ("muon.Ratio.track_ratio_step_time", ("'tiny-gpt'",)): "same"}
    with pytest.raises(ValueError, match="no results for cccccccc"):
        bench_compare.load_values(tmp_path, "box", "c" * 40)


def test_the_gate_rejects_bad_input(capsys):
    assert bench_compare.main(["--base", "no-such-branch-xyz", "--no-run"]) == 2
    assert "unknown commit 'no-such-branch-xyz'" in capsys.readouterr().err
    assert bench_compare.main(["--factor", "0.5", "--no-run"]) == 2
    assert bench_compare.main(["--bench", "no_such_benchmark", "--no-run"]) == 2


# ------------------------------------------------------------------------------------------ the runner


def test_commits_are_dealt_round_robin():
    commits = [f"c{i}" for i in range(7)]
    assert dashboard_run.shards(commits, 1) == [commits]
    assert dashboard_run.shards(commits, 2) == [["c0", "c2", "c4", "c6"], ["c1", "c3", "c5"]]
    assert dashboard_run.shards(commits[:1], 3) == [["c0"]]  # no empty shard, no idle asv process


def test_each_shard_gets_its_own_environment(tmp_path):
    from asv.util import load_json

    assert dashboard_run.shard_config(1, 1, tmp_path) == dashboard_run.CONFIG
    main = load_json(str(dashboard_run.CONFIG), js_comments=True)
    paths = [dashboard_run.shard_config(k, 2, tmp_path) for k in (1, 2)]
    confs = [json.loads(p.read_text()) for p in paths]
    root = dashboard_run.ROOT.resolve()
    assert [c["env_dir"] for c in confs] == [str(root / (main["env_dir"] + f"-shard-{k}")) for k in (1, 2)]
    paths = ("repo", "benchmark_dir", "env_dir", "results_dir", "html_dir")
    for conf in confs:  # the same folders (absolute: asv reads them from the configuration's folder) ...
        assert conf["repo"] == str(root) and conf["results_dir"] == str(root / main["results_dir"])
        # ... and everything else is the project's configuration
        assert {k: v for k, v in conf.items() if k not in paths} == {k: v for k, v in main.items()
                                                                     if k not in paths}


def test_the_runner_rejects_bad_input(capsys):
    assert dashboard_run.main(["--jobs", "0"]) == 2
    assert dashboard_run.main(["--branch", "no-such-branch-xyz"]) == 2
    assert "git rev-list no-such-branch-xyz" in capsys.readouterr().err
    assert dashboard_run.main(["--attribute", "repeat"]) == 2


def test_the_scripts_run_from_the_makefile_targets():
    makefile = (ROOT / "Makefile").read_text()
    assert "scripts/dashboard_run.py --commits $(N) --jobs $(J)" in makefile
    assert "scripts/bench_compare.py --base $(BASE) --head $(HEAD) --factor $(FACTOR)" in makefile


def test_history_lengths_count_measured_skipped_and_failed_commits(tmp_path):
    """asv stores a skipped benchmark as NaN and a failed one as None; a commit outside the range is ignored."""
    commits = [c * 40 for c in "abc"]
    (tmp_path / "box").mkdir()
    (tmp_path / "box" / "machine.json").write_text(json.dumps({"machine": "box", "version": 1}))
    for commit, values in zip(commits + ["d" * 40], ([1.0, math.nan], [math.nan, math.nan], [None, None],
                                                     [2.0, 2.0]), strict=True):
        _write_results(tmp_path, "box", commit, {"drift.Cost.time_gradient": ([["'x'", "'y'"]], values)})
    lengths = dashboard_run.history_lengths(tmp_path, commits)
    assert lengths == {"drift.Cost.time_gradient": {"measured": 1, "skipped": 1, "failed": 1}}


# ------------------------------------------------------------------------------------ the browser check

dashboard_check = _script("dashboard_check")


def _published(tmp_path: Path) -> Path:
    """A published dashboard's index.json and graph files, as `asv publish` writes them."""
    html = tmp_path / "html"
    graphs = html / "graphs" / "machine-vm"
    graphs.mkdir(parents=True)
    (html / "index.json").write_text(json.dumps({"benchmarks": {
        "drift.Cost.time_gradient": {}, "drift.Slopes.track_dal_loss_ratio": {}, "muon.StepTime.time_step": {}}}))
    (graphs / "drift.Cost.time_gradient.json").write_text(json.dumps([[1, 0.1], [2, 0.2], [3, None]]))
    (graphs / "drift.Slopes.track_dal_loss_ratio.json").write_text(json.dumps([[1, 0.7], [2, 0.8]]))
    # a parameterized benchmark: one list of values per point, a point counts when any value is there
    (graphs / "muon.StepTime.time_step.json").write_text(json.dumps([[1, [None, None]], [2, [0.3, None]]]))
    return html


def test_each_family_shows_its_longest_history_track_first(tmp_path):
    html = _published(tmp_path)
    assert dashboard_check.graph_points(html / "graphs") == {
        "drift.Cost.time_gradient": 2, "drift.Slopes.track_dal_loss_ratio": 2, "muon.StepTime.time_step": 1}
    assert dashboard_check.pick_graphs(html) == {"drift": ("drift.Slopes.track_dal_loss_ratio", 2),
                                                 "muon": ("muon.StepTime.time_step", 1)}


def test_the_check_fails_loudly_without_a_browser_or_a_dashboard(tmp_path, capsys, monkeypatch):
    with pytest.raises(dashboard_check.CheckError, match="no Chromium found.*apt-get install"):
        dashboard_check.find_chromium("no-such-browser-xyz")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html></html>")
    html = _published(tmp_path)
    (html / "index.html").write_text("<html></html>")
    argv = ["--html-dir", str(html), "--site-dir", str(site), "--out", str(tmp_path / "out")]
    assert dashboard_check.main([*argv, "--chromium", "no-such-browser-xyz"]) == 2
    assert "no Chromium found" in capsys.readouterr().err
    assert dashboard_check.main(["--html-dir", str(tmp_path / "nothing"), "--site-dir", str(site)]) == 2
    assert "run `make dashboard` first" in capsys.readouterr().err
