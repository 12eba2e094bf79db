"""The regression gate before merging: every ``track_*`` figure at two commits, each judged in its own direction.

asv's own comparison (``asv continuous`` / ``asv compare``) counts every increase as worse, which is right for
times and for the ``optlib/peer`` ratios but wrong for accuracies, shares of theorem checks that hold,
tokens/s or speed-ups: a drop there would pass and a gain would fail. Here each ``track_*`` function in
``benchmarks/`` declares ``better = "lower"``, ``"higher"`` or ``"none"`` (a figure with a target value, such
as a measured slope, which is shown but not gated), and may declare its own ``factor`` (``1.0``: any change for
the worse counts, used for the deterministic counts such as the share of theorem checks that hold).

A figure regresses when it moved in its worse direction by more than ``(factor - 1) * |base|``:

* ``better = "lower"``:  ``head > base + (factor - 1) |base|`` (for positive values: ``head > factor * base``);
* ``better = "higher"``: ``head < base - (1 - 1/factor) |base|`` (for positive values: ``head < base / factor``);
* a figure that had a value at ``base`` and fails or is NaN at ``head`` regresses; one that was NaN at ``base``
  (not reached, not applicable) is not judged.

With ``--run`` (the default of ``make bench-compare``) both commits are first measured by ``asv run`` into asv's
own environment (``asv.conf.json``); without it the results already in ``--results`` are compared. Exit status:
0 when nothing regressed, 1 when something did, 2 on bad input (unknown commit, no results).
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from scale.cli import Command, option

ROOT = Path(__file__).resolve().parents[1]
DIRECTIONS = ("lower", "higher", "none")


@dataclass
class Config:
    base: str = option("main", "the commit (or branch, tag) to compare against")
    head: str = option("HEAD", "the commit (or branch, tag) under review")
    factor: float = option(1.5, "a figure regresses when it moved the worse way by more than (factor - 1) "
                                "times its base value; a benchmark's own `factor` attribute overrides this")
    bench: str = option("track_", "regular expression of the benchmarks to measure and compare (asv --bench)")
    run: bool = option(True, "measure both commits with `asv run` first (--no-run: compare stored results)")
    results: Path = option(Path(".asv/results"), "asv's results folder")
    machine: str | None = option(None, "asv machine name (default: the one in the results folder)")


def git_hash(rev: str) -> str:
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ValueError(f"unknown commit {rev!r} (git rev-parse found nothing)")
    return proc.stdout.strip()


def directions(bench: str = "") -> dict[str, tuple[str, float | None]]:
    """``module.Class.method`` -> (better, own factor) for every ``track_*`` function of the suite."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    out = {}
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        if path.stem.startswith("_"):
            continue
        module = importlib.import_module(f"benchmarks.{path.stem}")
        for cls_name, cls in vars(module).items():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            for name, func in vars(cls).items():
                if not name.startswith("track_"):
                    continue
                key = f"{path.stem}.{cls_name}.{name}"
                if bench and not re.search(bench, key):
                    continue
                better = getattr(func, "better", None)
                if better not in DIRECTIONS:
                    raise ValueError(f"{key} declares better={better!r}; expected one of {DIRECTIONS}")
                out[key] = (better, getattr(func, "factor", None))
    return out


def judge(base: float | None, head: float | None, better: str, factor: float) -> str:
    """``"regressed"``, ``"improved"``, ``"same"``, ``"not gated"`` or ``"not judged"`` (see the module doc)."""
    if base is None or not math.isfinite(base):
        return "not judged"
    if better == "none":
        return "not gated"
    if head is None or not math.isfinite(head):
        return "regressed"
    if _moved(base, head, up=better == "lower", factor=factor):
        return "regressed"
    if _moved(base, head, up=better == "higher", factor=factor):
        return "improved"
    return "same"


def _moved(base: float, head: float, up: bool, factor: float) -> bool:
    """Whether ``head`` moved up (or down) from ``base`` by more than ``factor`` allows."""
    if up:
        return head - base > (factor - 1.0) * abs(base)
    return base - head > (1.0 - 1.0 / factor) * abs(base)


def _machine(results: Path, machine: str | None) -> str:
    if machine:
        return machine
    names = sorted(p.name for p in results.iterdir() if p.is_dir()) if results.is_dir() else []
    if len(names) != 1:
        raise ValueError(f"{results}: expected the results of one machine, found {names or 'none'}; "
                         "name it with --machine")
    return names[0]


def load_values(results: Path, machine: str, commit: str) -> dict[tuple[str, tuple], float | None]:
    """(benchmark, parameter values) -> value at ``commit`` from asv's result files (None: failed; NaN: skipped
    or not reached)."""
    from asv.results import iter_results_for_machine_and_hash

    values: dict[tuple[str, tuple], float | None] = {}
    found = False
    for res in iter_results_for_machine_and_hash(str(results), machine, commit):
        found = True
        for key in res.get_all_result_keys():
            params = res.get_result_params(key)
            combos = _product(params)
            for combo, value in zip(combos, res.get_result_value(key, params), strict=False):
                values[(key, combo)] = None if value is None else float(value)
    if not found:
        raise ValueError(f"no results for {commit[:8]} on machine {machine!r} in {results}")
    return values


def _product(params: list[list[str]]) -> list[tuple]:
    return [tuple(c) for c in itertools.product(*params)] if params else [()]


def compare(base: dict, head: dict, dirs: dict[str, tuple[str, float | None]], factor: float) -> list[dict]:
    rows = []
    for (name, combo), value in sorted(base.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if name not in dirs:
            continue
        better, own = dirs[name]
        used, now = factor if own is None else own, head.get((name, combo))
        rows.append({"benchmark": name, "params": list(combo), "better": better, "base": value, "head": now,
                     "factor": used, "verdict": judge(value, now, better, used)})
    return rows


def _asv_run(commit: str, bench: str) -> None:
    cmd = [sys.executable, "-m", "asv", "run", "--show-stderr", "--bench", bench, f"{commit}^!"]
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT)
    if proc.returncode not in (0, 2):  # 2: some benchmark failed, recorded as such
        raise RuntimeError(f"asv run for {commit[:8]} exited with status {proc.returncode}")


def run(cfg: Config) -> int:
    if not cfg.factor >= 1.0:
        raise ValueError(f"--factor must be >= 1, got {cfg.factor}")
    base, head = git_hash(cfg.base), git_hash(cfg.head)
    dirs = directions(cfg.bench)
    if not dirs:
        raise ValueError(f"--bench {cfg.bench!r} selects no track_ benchmark")
    if cfg.run:
        subprocess.run([sys.executable, "-m", "asv", "machine", "--yes"], cwd=ROOT, check=True,
                       capture_output=True)
        for commit in dict.fromkeys((base, head)):
            _asv_run(commit, cfg.bench)
    machine = _machine(cfg.results, cfg.machine)
    rows = compare(load_values(cfg.results, machine, base), load_values(cfg.results, machine, head), dirs,
                   cfg.factor)
    width = max((len(r["benchmark"]) for r in rows), default=10)
    for r in rows:
        params = ", ".join(map(str, r["params"]))
        label = f"{r['benchmark']}({params})" if params else r["benchmark"]
        rule = "target value" if r["better"] == "none" else f"{r['better']} is better, factor {r['factor']:g}"
        print(f"{r['verdict']:>10}  {label:<{width + 30}} {_fmt(r['base']):>12} -> {_fmt(r['head']):<12} ({rule})")
    bad = [r for r in rows if r["verdict"] == "regressed"]
    summary = {v: sum(r["verdict"] == v for r in rows) for v in ("regressed", "improved", "same", "not gated",
                                                                 "not judged")}
    print(json.dumps({"base": base[:8], "head": head[:8], **summary}))
    return 1 if bad else 0


def _fmt(value: float | None) -> str:
    return "failed" if value is None else f"{value:.4g}"


COMMAND = Command(
    prog="bench_compare",
    description="Compare the asv track_ figures of two commits, each in the direction its benchmark declares "
                "(lower or higher is better); exit status 1 when one got worse by more than the factor.",
    config=Config,
    run=run,
)
main = COMMAND.main

if __name__ == "__main__":
    raise SystemExit(main())
