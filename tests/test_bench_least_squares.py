"""The NIST least-squares benchmark (``scale.bench.least_squares``): a small real run, the summary's counts on
hand-made records (reaching the certified values is read from the LRE, never from a solver's status code), the
Markdown outputs, and the generated command line. No timing is asserted."""

from __future__ import annotations

import json

import pytest

from scale.bench import least_squares as bench


def _run(problem, start, solver, lre, nfev, success=True, time=1.0):
    return bench.Run(problem=problem, difficulty="lower", start=start, solver=solver, lre=lre, success=success,
                     nfev=nfev, njev=nfev, cost=0.0, rss_rel_error=0.0, time=time)


def test_small_run_reaches_the_certified_values():
    cfg = bench.Config(problems=("Misra1a",), starts=(2,), solvers=("optlib-lm", "scipy-lm"), repeats=1,
                       progress=False)
    result = bench.run_benchmark(cfg)
    assert [(r["problem"], r["start"], r["solver"]) for r in result["runs"]] == \
        [("Misra1a", 2, "optlib-lm"), ("Misra1a", 2, "scipy-lm")]
    for r in result["runs"]:
        assert r["lre"] >= cfg.lre_target and r["success"] and r["nfev"] > 0 and r["time"] > 0
    summary = result["summary"]
    assert summary["pairs"] == 1 and summary["solvers"]["optlib-lm"]["reached"] == 1
    assert summary["lm_vs_scipy_lm"]["both_reached"] == 1
    assert result["config"]["problems"] == ["Misra1a"] and result["config"]["starts"] == [2]
    assert "out" not in result["config"] and "progress" not in result["config"]
    assert result["provenance"]["env-benchmark_threads"] == 1


def test_reached_is_the_lre_not_the_status():
    """A run whose solver reports failure but whose parameters carry the certified digits counts as reached;
    one that reports success with too few digits does not. The table marks the first ``(fail)``, the second ✗."""
    runs = [_run("A", 1, "optlib-lm", 8.0, 10, success=False), _run("A", 1, "scipy-lm", 8.0, 12),
            _run("B", 1, "optlib-lm", 2.0, 10, success=True), _run("B", 1, "scipy-lm", 9.0, 8)]
    s = bench.summarize(runs, 4.0)
    assert s["solvers"]["optlib-lm"]["reached"] == 1 and s["solvers"]["optlib-lm"]["not_reached"] == ["B start 1"]
    c = s["lm_vs_scipy_lm"]
    assert c["both_reached"] == 1 and c["nfev_le_scipy"] == 1 and c["only_scipy_reached"] == ["B start 1"]
    result = {"runs": [vars(r) for r in runs], "config": {"lre_target": 4.0}}
    header, rows = bench.table_rows(result)
    assert header[:3] == ["problem", "level", "start"]
    lre_lm, nfev_lm = header.index("LRE optlib-lm"), header.index("nfev/njev optlib-lm")
    assert rows[0][lre_lm] == "8.0" and rows[0][nfev_lm] == "10/10 (fail)"
    assert rows[1][lre_lm] == "2.0 ✗" and rows[1][nfev_lm] == "10/10"


def test_validation_names_the_option():
    with pytest.raises(ValueError, match="--solvers must include the anchor 'scipy-lm'"):
        bench.Config(solvers=("optlib-lm",)).validate()
    with pytest.raises(ValueError, match="--problems: unknown problem"):
        bench.Config(problems=("Nope",)).validate()
    with pytest.raises(ValueError, match="--tol"):
        bench.Config(tol=1e-20).validate()


def test_cli(tmp_path, capsys):
    """--help names every option; unknown options, bad choices and bad values exit 2 naming them;
    --print-config round-trips through --config; a one-problem run writes the JSON and the Markdown table."""
    assert bench.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m scale.bench.least_squares")
    for flag in ("--problems", "--starts", "--solvers", "--tol", "--max-nfev", "--repeats", "--threads",
                 "--lre-target", "--out", "--progress", "--preset"):
        assert flag in out, flag
    assert bench.main(["--bogus"]) == 2
    assert "unknown option '--bogus'" in capsys.readouterr().err
    assert bench.main(["--problems", "Kirby", "--out", str(tmp_path)]) == 2
    assert "problems: invalid value 'Kirby' (did you mean 'Kirby2'" in capsys.readouterr().err
    assert bench.main(["--starts", "3"]) == 2
    assert "starts" in capsys.readouterr().err
    assert bench.main(["--solvers", "optlib-lm", "--out", str(tmp_path)]) == 2
    assert "--solvers must include the anchor" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    assert bench.main(["--preset", "smoke", "--repeats", "2", "--print-config"]) == 0
    toml = tmp_path / "c.toml"
    toml.write_text(capsys.readouterr().out)
    assert bench.COMMAND.parse(["--config", str(toml)])[0] == bench.Config(**{**bench.PRESETS["smoke"], "repeats": 2})
    out_dir = tmp_path / "out"
    assert bench.main(["--problems", "Misra1a", "--starts", "1", "--solvers", "optlib-gn", "scipy-lm",
                       "--repeats", "1", "--no-progress", "--out", str(out_dir)]) == 0
    data = json.loads((out_dir / bench.JSON_NAME).read_text())
    assert {r["solver"] for r in data["runs"]} == {"optlib-gn", "scipy-lm"}
    table = (out_dir / bench.TABLE_NAME).read_text()
    assert table.startswith("| problem | level | start |") and "Misra1a" in table
