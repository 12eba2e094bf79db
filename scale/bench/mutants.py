"""The mutation catalogue: how many deliberate bugs in the production algorithms the theorem suite catches.

Each entry of ``tests/mutants/catalogue.toml`` is one semantic mutant of a production file: a single line of
code replaced by a plausible wrong one (a constant changed, a square root dropped, a sign flipped, an update
inverted), with the statement that must catch it. The runner copies the source tree to a scratch folder once,
checks that the unmutated theorem suite passes there, then for each mutant writes the changed line into the
scratch copy, runs the theorem suite (``pytest -x``, the test file of the named statement first so that a kill
is found quickly, then the rest), and restores the line. A mutant is *killed* when a test fails or the run
exceeds the time limit (an endless loop is a caught bug, as in mutmut), and *survives* when the whole suite
passes. The kill ratio and the survivors are printed and written to ``OUT/mutants.json`` and
``OUT/mutants.md``. The report's "Mutation catalogue" section runs the whole catalogue (or reuses the result
``make mutants`` saved for the same clean commit), and in quick mode the four bugs that once survived the whole
test suite.

``make mutants`` runs the whole catalogue (``python -m scale.bench.mutants``, ``optlib-bench-mutants``); it
needs a source checkout (the catalogue and the tests are not installed with the package).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from scale.cli import Command, option

from .common import ReportContext, SectionResult, md_table, provenance, register_section, save_json

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = Path("tests/mutants/catalogue.toml")
JSON_NAME = "mutants.json"
TABLE_NAME = "mutants.md"
COPIED = ("optlib", "scale", "kernels", "tests", "pyproject.toml")


@dataclass(frozen=True)
class Mutant:
    """One bug: in ``file``, the line ``original`` (which must occur exactly once) becomes ``replacement``."""

    id: str
    file: str
    original: str
    replacement: str
    statement: str
    test: str
    family: str

    def apply(self, text: str) -> str:
        count = text.count(self.original)
        if count != 1:
            raise ValueError(f"mutant {self.id}: the original line occurs {count} times in {self.file} (it must "
                             f"occur exactly once; the catalogue is stale): {self.original.strip()!r}")
        return text.replace(self.original, self.replacement)


def load_catalogue(path: Path | str) -> list[Mutant]:
    """The mutants of a catalogue file (TOML, one ``[[mutant]]`` table each); errors name the entry."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"mutation catalogue {str(path)!r} not found (run from a source checkout)")
    with path.open("rb") as fh:
        doc = tomllib.load(fh)
    mutants, seen = [], set()
    for i, entry in enumerate(doc.get("mutant", [])):
        missing = [k for k in ("id", "file", "original", "replacement", "statement", "test") if k not in entry]
        if missing:
            raise ValueError(f"{path}: mutant #{i + 1} lacks {', '.join(missing)}")
        if entry["id"] in seen:
            raise ValueError(f"{path}: mutant id {entry['id']!r} appears twice")
        if entry["original"] == entry["replacement"]:
            raise ValueError(f"{path}: mutant {entry['id']!r} changes nothing")
        seen.add(entry["id"])
        mutants.append(Mutant(entry["id"], entry["file"], entry["original"], entry["replacement"],
                              entry["statement"], entry["test"], entry.get("family", entry["file"].split("/")[1])))
    if not mutants:
        raise ValueError(f"{path}: no [[mutant]] entries")
    return mutants


@dataclass
class Config:
    """Which mutants to run against which suite."""

    catalogue: Path = option(CATALOGUE, "the catalogue (TOML), relative to the source checkout")
    ids: tuple[str, ...] | None = option(None, "run only these mutant ids (none = all)")
    families: tuple[str, ...] | None = option(None, "run only these families (none = all)")
    suite: str = option("tests/theorems", "the pytest target whose failures count as kills")
    timeout: float = option(300.0, "seconds one mutant's run may take; past it the mutant counts as killed")
    root: Path = option(ROOT, "the source checkout (the folder holding optlib/, scale/, tests/)")
    out: Path = option(Path("reports/mutants"), "output folder for mutants.json and mutants.md")
    progress: bool = option(True, "progress bar")

    def validate(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")
        if not (Path(self.root) / "tests").is_dir():
            raise ValueError(f"{self.root} holds no tests/ folder: the mutation runner needs a source checkout")


# The four bugs that survived the whole test suite before the theorem checks were made to bind in both
# directions; the report's quick mode runs these (about a minute), the default mode the whole catalogue.
HISTORICAL_SURVIVORS = ("grn-acceptance-stricter", "cubic-subproblem-third-of-M", "lm-lambda-update-inverted",
                        "gn-armijo-absolute-slope")
PRESETS = {"smoke": {"ids": HISTORICAL_SURVIVORS}}


def _pytest(scratch: Path, targets: list[str], timeout: float) -> tuple[str, float, str]:
    """Run pytest on ``targets`` in ``scratch``: (``"pass"``/``"fail"``/``"timeout"``, seconds, first failure)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *targets]
    env = {**_env(), "PYTHONPATH": str(scratch)}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    seconds = time.perf_counter() - t0
    failed = next((line.split(" ", 1)[1].split(" - ")[0] for line in proc.stdout.splitlines()
                   if line.startswith(("FAILED ", "ERROR "))), "")
    if proc.returncode == 5:  # no test collected: a wrong target is a usage error, not a kill
        raise ValueError(f"pytest collected no test from {' '.join(targets)}")
    return ("pass" if proc.returncode == 0 else "fail"), seconds, failed


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}


def _scratch_copy(root: Path, into: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
    for name in COPIED:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, into / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, into / name)


def run_catalogue(cfg: Config) -> dict[str, Any]:
    """Run the selected mutants; returns the record written to ``mutants.json``."""
    cfg.validate()
    root = Path(cfg.root)
    mutants = load_catalogue(root / cfg.catalogue)
    if cfg.ids is not None:
        unknown = sorted(set(cfg.ids) - {m.id for m in mutants})
        if unknown:
            raise ValueError(f"unknown mutant id(s) {', '.join(unknown)}")
        mutants = [m for m in mutants if m.id in cfg.ids]
    if cfg.families is not None:
        mutants = [m for m in mutants if m.family in cfg.families]
    pristine = {m.file: (root / m.file).read_text(encoding="utf-8") for m in mutants}
    for m in mutants:  # every entry must apply before anything runs
        m.apply(pristine[m.file])
    results = []
    with tempfile.TemporaryDirectory(prefix="optlib-mutants-") as tmp:
        scratch = Path(tmp)
        _scratch_copy(root, scratch)
        status, seconds, failed = _pytest(scratch, [cfg.suite], cfg.timeout * 3)
        if status != "pass":
            raise ValueError(f"the unmutated suite {cfg.suite} does not pass ({status}: {failed}); fix it first")
        baseline = seconds
        bar = tqdm(mutants, desc="mutants", disable=not cfg.progress)
        for m in bar:
            target = scratch / m.file
            target.write_text(m.apply(pristine[m.file]), encoding="utf-8")
            try:
                first = [m.test] if (scratch / m.test.split("::")[0]).exists() else []
                outcome, secs, failed = _pytest(scratch, first or [cfg.suite], cfg.timeout)
                if outcome == "pass" and first:
                    outcome, more, failed = _pytest(scratch, [cfg.suite], cfg.timeout)
                    secs += more
            finally:
                target.write_text(pristine[m.file], encoding="utf-8")
            killed = outcome in ("fail", "timeout")
            results.append({"id": m.id, "family": m.family, "file": m.file, "statement": m.statement,
                            "original": m.original.strip(), "replacement": m.replacement.strip(),
                            "killed": killed, "outcome": outcome, "killed_by": failed, "seconds": secs})
            bar.set_postfix(killed=sum(r["killed"] for r in results), of=len(results))
    killed = sum(r["killed"] for r in results)
    return {
        "provenance": provenance(),
        "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "suite": cfg.suite, "catalogue": str(cfg.catalogue), "baseline_seconds": baseline,
        "catalogue_sha256": _sha256(root / cfg.catalogue),
        "selection": "all" if cfg.ids is None and cfg.families is None else "subset",
        "mutants": len(results), "killed": killed, "kill_ratio": killed / len(results) if results else float("nan"),
        "survivors": [r["id"] for r in results if not r["killed"]], "results": results,
    }


def format_table(result: dict[str, Any]) -> str:
    rows = [[r["id"], r["family"], r["statement"], "killed" if r["killed"] else "**survived**",
             r["killed_by"] or r["outcome"], f"{r['seconds']:.0f} s"] for r in result["results"]]
    return md_table(["mutant", "family", "statement that must catch it", "verdict", "caught by", "time"], rows)


def _run(cfg: Config) -> int:
    result = run_catalogue(cfg)
    save_json(result, cfg.out, JSON_NAME)
    (Path(cfg.out) / TABLE_NAME).write_text(format_table(result) + "\n", encoding="utf-8")
    print(f"{result['killed']} of {result['mutants']} mutants killed ({100 * result['kill_ratio']:.1f} %) by "
          f"{result['suite']}")
    for r in result["results"]:
        if not r["killed"]:
            print(f"  survived: {r['id']} ({r['file']}: {r['replacement']})")
    print(f"results written to {Path(cfg.out) / JSON_NAME}")
    return 0


def _saved_for_this_commit(path: Path, catalogue: Path) -> dict[str, Any] | None:
    """A saved whole-catalogue result measured on the current, clean commit with the current catalogue."""
    if not path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    commit = provenance().get("git-commit") or ""
    same = (result["provenance"].get("git-commit") == commit and not commit.endswith("+dirty")
            and result.get("catalogue_sha256") == _sha256(catalogue) and result.get("selection") == "all")
    return result if same else None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@register_section("mutants", "Mutation catalogue: bugs the theorem suite catches", order=15)
def report_section(ctx: ReportContext) -> SectionResult:
    """The catalogue against the theorem suite: every mutant in the default and full modes (several minutes; a
    result saved by ``make mutants`` for the same clean commit is reused), the historical survivors in quick
    mode."""
    if not (ROOT / CATALOGUE).is_file():
        return SectionResult(f"Skipped: the catalogue `{CATALOGUE}` and the tests are not installed with the "
                             "package; run the report from a source checkout to measure it.")
    saved_path = ROOT / Config().out / JSON_NAME
    if ctx.quick:
        cfg = Config(**PRESETS["smoke"], progress=False)
        result, how = run_catalogue(cfg), "measured now on the four historical survivors (the `smoke` preset)"
    else:
        result = _saved_for_this_commit(saved_path, ROOT / CATALOGUE)
        how = f"read from `{saved_path.relative_to(ROOT)}`, saved by `make mutants` for this commit"
        if result is None:
            result, how = run_catalogue(Config(progress=ctx.config.progress)), "measured now on the whole catalogue"
            save_json(result, saved_path.parent, JSON_NAME)
    commit = result["provenance"].get("git-commit") or "unknown"
    text = (
        f"**{result['killed']} of {result['mutants']} mutants killed ({100 * result['kill_ratio']:.1f} %)** by "
        f"`{result['suite']}` alone; {how} (commit `{commit}`, {result['measured_at']}). Each mutant is one line "
        f"of a production algorithm replaced by a plausible bug (`{result['catalogue']}`), run through the "
        "unchanged theorem suite; the first failing test is listed.\n\n" + format_table(result)
    )
    return SectionResult(text)


COMMAND = Command(
    prog="python -m scale.bench.mutants",
    description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
    config=Config, run=_run, presets=PRESETS,
)
main = COMMAND.main

if __name__ == "__main__":
    raise SystemExit(main())
