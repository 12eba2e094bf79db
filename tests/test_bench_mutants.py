"""The mutation runner (scale.bench.mutants) on a tiny project: a killed mutant, a surviving equivalent one,
a stale catalogue entry, and the real catalogue's entries all applying to the current sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from scale.bench import mutants

ROOT = Path(__file__).resolve().parents[1]


def _project(tmp_path: Path, catalogue: str) -> Path:
    (tmp_path / "optlib").mkdir()
    (tmp_path / "optlib" / "__init__.py").write_text("")
    (tmp_path / "optlib" / "step.py").write_text("def step(x):\n    return x - 0.5 * x\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_step.py").write_text(
        "from optlib.step import step\n\n\ndef test_halves():\n    assert step(4.0) == 2.0\n")
    (tmp_path / "catalogue.toml").write_text(catalogue)
    return tmp_path


ENTRY = """
[[mutant]]
id = "{id}"
file = "optlib/step.py"
original = "    return x - 0.5 * x"
replacement = "{replacement}"
statement = "step halves"
test = "tests/test_step.py"
"""


def test_runner_kills_a_bug_and_reports_an_equivalent_mutant(tmp_path):
    root = _project(tmp_path, ENTRY.format(id="sign", replacement="    return x + 0.5 * x")
                    + ENTRY.format(id="equivalent", replacement="    return 0.5 * x"))
    cfg = mutants.Config(catalogue=Path("catalogue.toml"), suite="tests", root=root, timeout=60.0, progress=False)
    result = mutants.run_catalogue(cfg)
    assert (result["mutants"], result["killed"], result["survivors"]) == (2, 1, ["equivalent"])
    assert result["results"][0]["killed_by"].startswith("tests/test_step.py::test_halves")
    assert (root / "optlib" / "step.py").read_text() == "def step(x):\n    return x - 0.5 * x\n"  # untouched
    assert "**survived**" in mutants.format_table(result)


def test_stale_or_malformed_entries_are_refused(tmp_path):
    root = _project(tmp_path, ENTRY.format(id="a", replacement="    return x").replace("0.5 * x\"", "0.25 * x\""))
    cfg = mutants.Config(catalogue=Path("catalogue.toml"), suite="tests", root=root, progress=False)
    with pytest.raises(ValueError, match="occurs 0 times"):
        mutants.run_catalogue(cfg)
    (root / "catalogue.toml").write_text(ENTRY.format(id="a", replacement="    return x") * 2)
    with pytest.raises(ValueError, match="appears twice"):
        mutants.load_catalogue(root / "catalogue.toml")


def test_every_catalogue_entry_applies_to_the_current_sources():
    catalogue = mutants.load_catalogue(ROOT / mutants.CATALOGUE)
    assert len(catalogue) >= 40
    for m in catalogue:
        mutated = m.apply((ROOT / m.file).read_text(encoding="utf-8"))
        assert mutated != (ROOT / m.file).read_text(encoding="utf-8")
        assert (ROOT / m.test.split("::")[0]).exists(), f"{m.id}: no test file {m.test}"


def test_command_line_refuses_unknown_ids(capsys):
    assert mutants.main(["--ids", "no-such-mutant", "--no-progress", "--out", "unused"]) == 2
    assert "unknown mutant id(s) no-such-mutant" in capsys.readouterr().err
