"""``make dashboard``: the asv suite over the last N commits of a branch, each commit built into asv's own
virtualenv, then the dashboard published with its libraries vendored (``scripts/offline_assets.py``).

The commits are those of ``git rev-list --first-parent --max-count=N BRANCH``. With ``--jobs J`` they are dealt
round-robin to J asv processes, each with its own copy of asv's environment (``.asv/env-shard-K``, created on
first use, then reused), so that J commits are measured at once on a machine with J free cores (the suite
is single-threaded). The results land in the one results folder as usual. Raw ``time_*`` values measured
side by side share the machine's memory bandwidth; the ``track_*`` ratios compare two sides measured in the
same process and are what the graphs are read for (docs/benchmarks_over_time.md).

At the end the history of each benchmark over the range is printed and written to
``.asv/dashboard/history.json``: on how many commits it was measured, skipped (the commit lacked what it
measures) or failed. Commits that already have results are skipped (``--skip-existing-commits``), so a
second run measures only what is new. asv exits with status 2 when a benchmark failed or could not run at some commit (recorded as
failed or skipped there); that is part of a history and does not stop the run. Any other status does.

Timing attributes: ``--attribute`` (asv's ``-a``, default ``rounds=1`` and ``repeat=3``) caps how often each
``time_*``/``peakmem_*`` benchmark repeats, so that one commit costs minutes rather than tens of minutes; the
``track_*`` benchmarks measure their own repetitions and are unaffected.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from scale.cli import Command, option

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "asv.conf.json"


@dataclass
class Config:
    commits: int = option(20, "how many commits to measure, newest first (N of `make dashboard N=...`)")
    branch: str = option("main", "the branch whose first-parent history is measured")
    jobs: int = option(1, "asv processes run side by side, each on its own share of the commits and its own "
                          "environment copy (one per free core)")
    bench: str = option("", "regular expression restricting the run to matching benchmarks (empty: all)")
    attribute: tuple[str, ...] = option(("rounds=1", "repeat=3"), "asv benchmark attributes overridden for "
                                        "the run (asv's -a), e.g. repeat=3")
    publish: bool = option(True, "publish the dashboard into .asv/html and vendor its libraries afterwards")


def commit_list(branch: str, count: int) -> list[str]:
    proc = subprocess.run(["git", "rev-list", "--first-parent", f"--max-count={count}", branch], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ValueError(f"git rev-list {branch}: {proc.stderr.strip() or 'failed'}")
    commits = proc.stdout.split()
    if not commits:
        raise ValueError(f"branch {branch!r} has no commits")
    return commits


def shards(commits: list[str], jobs: int) -> list[list[str]]:
    """Round-robin: every shard spans the whole range, so the graphs fill in evenly while the run goes on."""
    return [part for part in (commits[k::jobs] for k in range(jobs)) if part]


def shard_config(k: int, jobs: int, folder: Path) -> Path:
    """asv.conf.json with its own environment folder for shard ``k`` (the default one when ``jobs == 1``)."""
    if jobs == 1:
        return CONFIG
    from asv.util import load_json

    conf = load_json(str(CONFIG), js_comments=True)
    conf["env_dir"] = f"{conf['env_dir']}-shard-{k}"
    # asv reads a configuration's relative paths from the configuration's own folder: make them absolute
    for key in ("repo", "benchmark_dir", "env_dir", "results_dir", "html_dir"):
        conf[key] = str((ROOT / conf[key]).resolve())
    path = folder / f"asv-shard-{k}.json"
    path.write_text(json.dumps(conf, indent=2) + "\n", encoding="utf-8")
    return path


def history_lengths(results: Path, commits: list[str]) -> dict[str, dict[str, int]]:
    """Per benchmark: of ``commits``, how many have a value (at least one parameter combination measured),
    how many skipped it (asv's NaN: the commit lacked what it measures) and how many failed it (no value)."""
    from asv.results import iter_results

    wanted = set(commits)
    out: dict[str, dict[str, int]] = {}
    for res in iter_results(str(results)):
        if res.commit_hash not in wanted:
            continue
        for key in res.get_all_result_keys():
            values = res.get_result_value(key, res.get_result_params(key))
            numbers = [v for v in values if v is not None]
            kind = ("measured" if any(not math.isnan(v) for v in numbers) else
                    "skipped" if numbers else "failed")
            row = out.setdefault(key, {"measured": 0, "skipped": 0, "failed": 0})
            row[kind] += 1
    return dict(sorted(out.items()))


def _pump(stream, prefix: str, log) -> None:
    for line in iter(stream.readline, ""):
        log.write(line)
        log.flush()
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


def run(cfg: Config) -> int:
    if cfg.commits < 1 or cfg.jobs < 1:
        raise ValueError("--commits and --jobs must be >= 1")
    for attr in cfg.attribute:
        if "=" not in attr:
            raise ValueError(f"--attribute {attr!r}: expected NAME=VALUE")
    commits = commit_list(cfg.branch, cfg.commits)
    folder = ROOT / ".asv" / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "asv", "machine", "--yes"], cwd=ROOT, check=True, capture_output=True)
    parts = shards(commits, cfg.jobs)
    from asv.results import iter_existing_hashes

    results = ROOT / ".asv" / "results"
    known = set(iter_existing_hashes(str(results))) if results.is_dir() else set()
    new = [c for c in commits if c not in known]
    print(f"{len(new)} of the {len(commits)} commits have no results yet and will be measured", flush=True)
    started = time.monotonic()
    procs, pumps, logs = [], [], []
    for k, part in enumerate(parts, 1):
        hashfile = folder / f"commits-{k}.txt"
        hashfile.write_text("\n".join(part) + "\n", encoding="utf-8")
        cmd = [sys.executable, "-m", "asv", "--config", str(shard_config(k, len(parts), folder)), "run",
               "--show-stderr", "--skip-existing-commits"]
        for attr in cfg.attribute:
            cmd += ["-a", attr]
        if cfg.bench:
            cmd += ["--bench", cfg.bench]
        cmd.append(f"HASHFILE:{hashfile}")
        print(f"[{k}] {len(part)} commits: {' '.join(cmd[2:])}", flush=True)
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log = open(folder / f"shard-{k}.log", "w", encoding="utf-8")  # noqa: SIM115 - closed below
        prefix = f"[{k}] " if len(parts) > 1 else ""
        pump = threading.Thread(target=_pump, args=(proc.stdout, prefix, log), daemon=True)
        pump.start()
        procs.append(proc)
        pumps.append(pump)
        logs.append(log)
    statuses = [proc.wait() for proc in procs]
    for pump, log in zip(pumps, logs, strict=True):
        pump.join()
        log.close()
    minutes = (time.monotonic() - started) / 60
    print(f"measured {len(new)} new of {len(commits)} commits in {minutes:.1f} min with {len(parts)} asv "
          "process(es) (commits with results were skipped); "
          f"exit statuses {statuses} (2: some benchmark failed or was skipped at some commit)", flush=True)
    bad = [s for s in statuses if s not in (0, 2)]
    lengths = history_lengths(results, commits)
    (folder / "history.json").write_text(json.dumps({"commits": commits, "minutes": round(minutes, 1),
                                                     "jobs": len(parts), "benchmarks": lengths}, indent=2)
                                         + "\n", encoding="utf-8")
    width = max((len(name) for name in lengths), default=9)
    print(f"{'benchmark':<{width}}  measured  skipped  failed   (of {len(commits)} commits)")
    for name, row in lengths.items():
        print(f"{name:<{width}}  {row['measured']:>8}  {row['skipped']:>7}  {row['failed']:>6}")
    if cfg.publish:
        subprocess.run([sys.executable, "-m", "asv", "publish"], cwd=ROOT, check=True)
        subprocess.run([sys.executable, "scripts/offline_assets.py", "--target", "dashboard", "--html-dir",
                        ".asv/html"], cwd=ROOT, check=True)
    return 1 if bad else 0


COMMAND = Command(
    prog="dashboard_run",
    description="Run the asv suite over the last --commits commits of --branch (each built into asv's own "
                "virtualenv, --jobs asv processes side by side), then publish the offline dashboard.",
    config=Config,
    run=run,
)
main = COMMAND.main

if __name__ == "__main__":
    raise SystemExit(main())
