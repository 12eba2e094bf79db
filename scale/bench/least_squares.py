r"""Levenberg–Marquardt and Gauss–Newton against scipy on the NIST StRD nonlinear regression problems.

``python -m scale.bench.least_squares`` runs, for every shipped NIST problem (27, three difficulty
levels; :mod:`optlib.problems.nist`) and both of its starts, six solvers on the same residuals and
analytic Jacobians:

* ``optlib-lm``: :func:`optlib.least_squares.least_squares` with ``method="lm"`` (Moré 1978, the
  algorithm of MINPACK's ``lmder``, solved through an SVD of the scaled Jacobian);
* ``optlib-lm-factor1``: the same with ``factor=1``, the variant with the initial step bound
  :math:`\Delta_0 = \|D_0x_0\|` in place of MINPACK's :math:`100\|D_0x_0\|` (see "Initial step bound" in
  :mod:`optlib.least_squares.lm`: it keeps BoxBOD's first step from start 1 off the plateau where
  :math:`e^{-b_2x}` underflows);
* ``optlib-gn``: ``method="gn"`` (Gauss–Newton with Armijo backtracking);
* ``scipy-lm``: :func:`scipy.optimize.least_squares` with ``method="lm"`` (MINPACK's ``lmder``, ``factor``
  100);
* ``scipy-leastsq-factor1``: :func:`scipy.optimize.leastsq` with ``factor=1`` (MINPACK's ``lmder`` with the
  variant's step bound: the reference for ``optlib-lm-factor1``);
* ``scipy-trf``: :func:`scipy.optimize.least_squares` with ``method="trf"`` (scipy's trust-region
  reflective method).

All share the tolerances (``ftol = xtol = gtol``, default 1e-15, the smallest that MINPACK meaningfully
accepts) and the evaluation budget (``--max-nfev``, default 5000). Accuracy is the log relative error
(LRE) of the returned parameters against NIST's certified values, the minimum over the parameters
(McCullough 1998; 11 is the most the certified digits allow); a run "reaches" the certified values
when its LRE is at least ``--lre-target`` (default 4). Cost is ``nfev`` (residual evaluations) and
``njev`` (Jacobians; ours counts the Jacobian at the returned point when the last accepted step was
not followed by one, scipy's ``lm`` does not). Time per solve is the median over ``--repeats`` runs,
the solvers interleaved run by run in one process, with one thread in torch and in the BLAS pools;
the headline is the ratio optlib time / scipy-lm time (scipy-lm is compiled MINPACK; ours is Python
on numpy), measured in the same run. Whether a run reached the certified values is read from its LRE alone;
the solvers' own ``success`` flags are shown beside the evaluation counts (``(fail)``), never their numeric
status codes, which differ between solvers.

The summary answers the target "LM reaches the certified parameters on every problem, with no more
function evaluations than scipy's lm on most of them": how many (problem, start) pairs LM (and its
``factor=1`` variant) reaches, how many scipy's lm reaches, and on how many of the pairs both reach ours
uses at most scipy-lm's ``nfev``.

Outputs in ``--out``: ``least_squares.json`` (configuration, provenance including the scipy version,
one record per run) and ``least_squares.md`` (the table).
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from scipy.optimize import least_squares as scipy_least_squares
from scipy.optimize import leastsq
from tqdm.auto import tqdm

from optlib.least_squares import least_squares
from optlib.problems.nist import load_nist, nist_problems
from scale.cli import Command, config_to_dict, option

from .common import (
    ReportContext,
    SectionResult,
    fmt_num,
    md_table,
    provenance,
    register_section,
    save_json,
    thread_limit,
)

SOLVERS = ("optlib-lm", "optlib-lm-factor1", "optlib-gn", "scipy-lm", "scipy-leastsq-factor1", "scipy-trf")
ANCHOR = "scipy-lm"
# optlib solver -> options of optlib.least_squares.least_squares
OPTLIB_OPTIONS: dict[str, dict[str, Any]] = {
    "optlib-lm": {"method": "lm"},
    "optlib-lm-factor1": {"method": "lm", "factor": 1.0},
    "optlib-gn": {"method": "gn"},
}
# optlib Levenberg–Marquardt solvers compared with the anchor in the summary: solver -> summary key
LM_COMPARISONS = {"optlib-lm": "lm_vs_scipy_lm", "optlib-lm-factor1": "lm_factor1_vs_scipy_lm"}
JSON_NAME = "least_squares.json"
TABLE_NAME = "least_squares.md"


PROBLEMS = tuple(nist_problems())
# Config fields that say where and how a run reports, not what it measures (left out of the JSON's config).
_RUN_ONLY = ("out", "progress")


@dataclass
class Config:
    """Everything one benchmark run depends on (recorded in the JSON, less ``out`` and ``progress``)."""

    problems: tuple[str, ...] | None = option(None, "NIST problems (none: all 27, by difficulty)", choices=PROBLEMS)
    starts: tuple[int, ...] = option((1, 2), "NIST starting points", choices=(1, 2))
    solvers: tuple[str, ...] = option(SOLVERS, f"solvers; {ANCHOR} is the timing anchor and must be included",
                                      choices=SOLVERS)
    tol: float = option(1e-15, "ftol = xtol = gtol for every solver")
    max_nfev: int = option(5000, "budget of residual evaluations per solve")
    repeats: int = option(5, "timed solves per solver (median reported)")
    threads: int = option(1, "torch and BLAS threads during the runs")
    lre_target: float = option(4.0, "log relative error that counts as reaching the certified parameters")
    out: Path = option(Path("reports/least_squares"),
                       f"output folder for {JSON_NAME} and {TABLE_NAME} (created if missing)")
    progress: bool = option(True, "show a progress bar")

    def problem_names(self) -> list[str]:
        return list(self.problems) if self.problems else list(PROBLEMS)

    def validate(self) -> None:
        unknown = [p for p in (self.problems or ()) if p not in PROBLEMS]
        if unknown:
            raise ValueError(f"--problems: unknown problem(s) {', '.join(unknown)}; known: {', '.join(PROBLEMS)}.")
        bad = [s for s in self.solvers if s not in SOLVERS]
        if bad:
            raise ValueError(f"--solvers: unknown solver(s) {', '.join(bad)}; known: {', '.join(SOLVERS)}.")
        if ANCHOR not in self.solvers:
            raise ValueError(f"--solvers must include the anchor {ANCHOR!r} (times are reported as ratios to it).")
        if not set(self.starts) <= {1, 2} or not self.starts:
            raise ValueError(f"--starts takes 1 and/or 2, got {list(self.starts)}.")
        if not self.tol >= np.finfo(float).eps:
            raise ValueError(f"--tol must be at least the machine epsilon (MINPACK rejects smaller ones), got "
                             f"{self.tol:g}.")
        if self.max_nfev < 1 or self.repeats < 1 or self.threads < 1:
            raise ValueError(f"--max-nfev, --repeats and --threads must be at least 1, got {self.max_nfev}, "
                             f"{self.repeats} and {self.threads}.")


# Quick report mode: one problem per difficulty level, one timed repeat.
SMOKE_PROBLEMS = ("Misra1a", "Kirby2", "MGH10")
# "report": what the report's default mode runs (every problem, 3 timed repeats); "smoke": the report's quick
# mode (one problem per difficulty level, one timed repeat).
PRESETS: dict[str, dict[str, Any]] = {
    "report": {"repeats": 3},
    "smoke": {"problems": SMOKE_PROBLEMS, "repeats": 1},
}


@dataclass
class Run:
    """One solver on one (problem, start): accuracy, cost and the median time per solve."""

    problem: str
    difficulty: str
    start: int
    solver: str
    lre: float
    success: bool
    nfev: int
    njev: int | None
    cost: float
    rss_rel_error: float
    time: float
    times: list[float] = field(default_factory=list)
    message: str = ""


def _solve(solver: str, p: Any, x0: np.ndarray, cfg: Config) -> Any:
    """One solve; returns the solver's result object (``x``, ``fun``, ``nfev``, ``njev``, ``success``,
    ``message``)."""
    tols = dict(ftol=cfg.tol, xtol=cfg.tol, gtol=cfg.tol)
    if solver in OPTLIB_OPTIONS:
        return least_squares(p.residuals, x0, p.jacobian, max_nfev=cfg.max_nfev, **OPTLIB_OPTIONS[solver], **tols)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if solver == "scipy-leastsq-factor1":
            x, _, info, message, ier = leastsq(p.residuals, x0, Dfun=p.jacobian, full_output=True, maxfev=cfg.max_nfev,
                                               factor=1.0, **tols)
            return SimpleNamespace(x=x, fun=info["fvec"], nfev=int(info["nfev"]), njev=info.get("njev"),
                                   success=ier in (1, 2, 3, 4), message=str(message))
        return scipy_least_squares(p.residuals, x0, p.jacobian, method=solver.split("-")[1], max_nfev=cfg.max_nfev,
                                   **tols)


def run_problem(name: str, start: int, cfg: Config) -> list[Run]:
    """Every configured solver on one (problem, start); times interleaved over ``cfg.repeats`` rounds."""
    p = load_nist(name)
    x0 = p.start(start)
    results: dict[str, Any] = {}
    times: dict[str, list[float]] = {s: [] for s in cfg.solvers}
    for s in cfg.solvers:  # warm-up (first-call costs), also the run whose numbers are reported
        results[s] = _solve(s, p, x0, cfg)
    for _ in range(cfg.repeats):
        for s in cfg.solvers:
            t0 = time.perf_counter()
            _solve(s, p, x0, cfg)
            times[s].append(time.perf_counter() - t0)
    runs = []
    for s in cfg.solvers:
        res = results[s]
        x = np.asarray(res.x, dtype=float)
        rss = float(np.sum(np.asarray(res.fun, dtype=float) ** 2))
        runs.append(Run(
            problem=name, difficulty=p.difficulty, start=start, solver=s, lre=p.min_lre(x),
            success=bool(res.success), nfev=int(res.nfev), njev=None if res.njev is None else int(res.njev),
            cost=0.5 * rss, rss_rel_error=abs(rss - p.certified_rss) / p.certified_rss,
            time=statistics.median(times[s]), times=times[s], message=str(res.message),
        ))
    return runs


def summarize(runs: Sequence[Run], lre_target: float) -> dict[str, Any]:
    """Reached counts, nfev comparison with scipy-lm and time ratios (see the module docstring)."""
    by = {(r.problem, r.start, r.solver): r for r in runs}
    pairs = sorted({(r.problem, r.start) for r in runs}, key=lambda k: (k[0], k[1]))
    solvers = sorted({r.solver for r in runs}, key=SOLVERS.index)
    out: dict[str, Any] = {"pairs": len(pairs), "lre_target": lre_target, "solvers": {}}
    for s in solvers:
        reached = [k for k in pairs if by[(*k, s)].lre >= lre_target]
        ratios = [by[(*k, s)].time / by[(*k, ANCHOR)].time for k in pairs]
        out["solvers"][s] = {
            "reached": len(reached),
            "not_reached": [f"{k[0]} start {k[1]}" for k in pairs if k not in reached],
            "median_lre": statistics.median(by[(*k, s)].lre for k in pairs),
            "time_ratio_median": statistics.median(ratios),
            "time_ratio_range": (min(ratios), max(ratios)),
        }
    for lm, key in LM_COMPARISONS.items():
        if lm not in solvers:
            continue
        both = [k for k in pairs if by[(*k, lm)].lre >= lre_target and by[(*k, ANCHOR)].lre >= lre_target]
        fewer = [k for k in both if by[(*k, lm)].nfev <= by[(*k, ANCHOR)].nfev]
        out[key] = {
            "solver": lm,
            "both_reached": len(both),
            "nfev_le_scipy": len(fewer),
            "nfev_equal": sum(by[(*k, lm)].nfev == by[(*k, ANCHOR)].nfev for k in both),
            "nfev_more": [f"{k[0]} start {k[1]} ({by[(*k, lm)].nfev} vs {by[(*k, ANCHOR)].nfev})"
                          for k in both if k not in fewer],
            "only_lm_reached": [f"{k[0]} start {k[1]}" for k in pairs
                                if by[(*k, lm)].lre >= lre_target > by[(*k, ANCHOR)].lre],
            "only_scipy_reached": [f"{k[0]} start {k[1]}" for k in pairs
                                   if by[(*k, ANCHOR)].lre >= lre_target > by[(*k, lm)].lre],
        }
    return out


def run_benchmark(cfg: Config) -> dict[str, Any]:
    """Run the whole table (``cfg.threads`` threads in torch and the BLAS pools); see :func:`write_outputs`."""
    cfg.validate()
    jobs = [(name, s) for name in cfg.problem_names() for s in cfg.starts]
    runs: list[Run] = []
    with thread_limit(cfg.threads), tqdm(total=len(jobs), desc="NIST least squares", leave=False,
                                         disable=not cfg.progress) as bar:
        prov = provenance(cfg.threads)
        for name, start in jobs:
            runs.extend(run_problem(name, start, cfg))
            bar.update(1)
    record = {k: v for k, v in config_to_dict(cfg).items() if k not in _RUN_ONLY}
    return {
        "config": record | {"problems": cfg.problem_names()},
        "provenance": prov,
        "runs": [asdict(r) for r in runs],
        "summary": summarize(runs, cfg.lre_target),
    }


def write_outputs(result: dict[str, Any], out: Path | str) -> Path:
    """``out/least_squares.json`` (the whole result) and ``out/least_squares.md`` (table and summary); returns
    the JSON's path."""
    path = save_json(result, out, JSON_NAME)
    (Path(out) / TABLE_NAME).write_text(format_table(result) + "\n\n" + format_summary(result) + "\n",
                                        encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------- formatting
def table_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per (problem, start); LRE, nfev/njev and time ratio per solver."""
    runs = [Run(**r) for r in result["runs"]]
    solvers = [s for s in SOLVERS if any(r.solver == s for r in runs)]
    by = {(r.problem, r.start, r.solver): r for r in runs}
    target = result["config"]["lre_target"]
    header = ["problem", "level", "start"]
    header += [f"LRE {s}" for s in solvers]
    header += [f"nfev/njev {s}" for s in solvers]
    header += [f"time {s} / {ANCHOR}" for s in solvers if s != ANCHOR] + [f"{ANCHOR} time"]
    rows = []
    order = list(dict.fromkeys((r.problem, r.start) for r in runs))
    for name, start in order:
        row = [name, by[(name, start, solvers[0])].difficulty, str(start)]
        for s in solvers:
            r = by[(name, start, s)]
            row.append(f"{r.lre:.1f}" + ("" if r.lre >= target else " ✗"))
        for s in solvers:
            r = by[(name, start, s)]
            row.append(f"{r.nfev}/{'—' if r.njev is None else r.njev}" + ("" if r.success else " (fail)"))
        anchor = by[(name, start, ANCHOR)].time
        row += [fmt_num(by[(name, start, s)].time / anchor, 3) for s in solvers if s != ANCHOR]
        row.append(f"{anchor * 1e3:.2f} ms")
        rows.append(row)
    return header, rows


def format_table(result: dict[str, Any]) -> str:
    return md_table(*table_rows(result))


def format_summary(result: dict[str, Any]) -> str:
    s = result["summary"]
    cfg = result["config"]
    lines = [
        f"{s['pairs']} (problem, start) pairs; tolerances {cfg['tol']:g}, budget {cfg['max_nfev']} evaluations, "
        f"LRE target {cfg['lre_target']:g}; {cfg['repeats']} timed repeats, {cfg['threads']} thread(s).",
    ]
    for name, v in s["solvers"].items():
        lo, hi = v["time_ratio_range"]
        lines.append(
            f"- {name}: reaches the certified values on {v['reached']}/{s['pairs']} "
            f"(median LRE {v['median_lre']:.1f}); "
            f"time / {ANCHOR}: median {v['time_ratio_median']:.2f} (range {lo:.2f} – {hi:.2f})"
            + (f"; not reached: {', '.join(v['not_reached'])}" if v["not_reached"] else "")
        )
    for lm, key in LM_COMPARISONS.items():
        if key not in s:
            continue
        c = s[key]
        lines.append(
            f"- {lm} vs {ANCHOR}: both reach on {c['both_reached']} pairs; {lm} uses no more function "
            f"evaluations on {c['nfev_le_scipy']} of them ({c['nfev_equal']} equal)"
            + (f"; more on {', '.join(c['nfev_more'])}" if c["nfev_more"] else "")
            + (f"; only {lm} reaches: {', '.join(c['only_lm_reached'])}" if c["only_lm_reached"] else "")
            + (f"; only {ANCHOR} reaches: {', '.join(c['only_scipy_reached'])}" if c["only_scipy_reached"] else "")
        )
    prov = result["provenance"]
    lines.append(f"- scipy {prov.get('version-scipy')}, numpy {prov.get('version-numpy')}, torch "
                 f"{prov.get('version-torch')}; load average {prov.get('env-loadavg')}.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- report section
@register_section("least-squares", "Least squares on the NIST StRD problems", order=90)
def report_section(ctx: ReportContext) -> SectionResult:
    """The report's "Least squares on the NIST StRD problems" section: the ``report`` preset, or the ``smoke``
    preset (three problems, one timed repeat) in the report's quick mode."""
    cfg = Config(**PRESETS["smoke" if ctx.quick else "report"], threads=ctx.config.threads or 1,
                 progress=ctx.config.progress)
    result = run_benchmark(cfg)
    ctx.cache["least_squares"] = result
    header, rows = table_rows(result)
    text = (
        "**Levenberg–Marquardt and Gauss–Newton on the NIST StRD nonlinear regression problems.** "
        "`optlib-lm` is Moré's (1978) trust-region Levenberg–Marquardt with Marquardt scaling, the "
        "algorithm of MINPACK's `lmder` that `scipy-lm` wraps, solved here through an SVD of the scaled "
        "Jacobian; `optlib-lm-factor1` is the same with the initial step bound `factor=1` in place of "
        "MINPACK's 100 (the variant for starts far from the solution; `scipy-leastsq-factor1` is MINPACK "
        "with that bound); `optlib-gn` is Gauss–Newton with Armijo backtracking; `scipy-trf` is scipy's "
        "trust-region reflective method. Same residuals, analytic Jacobians, tolerances and budget for all. "
        "LRE: digits of the certified parameters reached (minimum over parameters, at most 11); ✗ marks "
        f"LRE < {cfg.lre_target:g}. Times: median per solve, ratio to `scipy-lm` in the same process "
        "(below 1: faster than compiled MINPACK). `python -m scale.bench.least_squares` runs the full "
        "table with more repeats.\n\n"
        + format_summary(result) + "\n\n" + md_table(header, rows)
    )
    return SectionResult(text)


# ---------------------------------------------------------------------------------------- CLI
def _run(cfg: Config) -> int:
    result = run_benchmark(cfg)
    print(format_table(result))
    print()
    print(format_summary(result))
    print(f"results written to {write_outputs(result, cfg.out)}")
    return 0


COMMAND = Command(
    prog="python -m scale.bench.least_squares",
    description=(
        "Levenberg–Marquardt (Moré 1978; MINPACK's initial step bound and the factor=1 variant) and "
        "Gauss–Newton from optlib.least_squares against scipy.optimize.least_squares (method='lm', "
        "MINPACK; method='trf') and scipy.optimize.leastsq (factor=1) on the 27 NIST StRD "
        "nonlinear regression problems from both starts: log relative error to the certified "
        "parameters, function and Jacobian evaluations, success, and time per solve as a ratio to "
        f"scipy's lm. Writes OUT/{JSON_NAME} and OUT/{TABLE_NAME} and prints the table."
    ),
    config=Config, run=_run, presets=PRESETS,
)
main = COMMAND.main

if __name__ == "__main__":
    raise SystemExit(main())
