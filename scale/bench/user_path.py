r"""The user path: plain torch functions, default options, optlib against pytorch-minimize and scipy.

:mod:`scale.bench.second_order` gives every solver the problem library's hand-written oracles. This benchmark
measures what a user gets who writes only the objective, ``f(x: Tensor) -> Tensor``, and calls each library
with its defaults:

* optlib: ``optlib.minimize(f, x0)`` (whatever method ``minimize`` picks by default), and
  ``optlib.minimize(f, x0, method=m)`` for ``m`` in ``grad-norm-newton``, ``regularized-newton``,
  ``super-newton``; every derivative comes from optlib's own torch autodiff of ``f``;
* pytorch-minimize (``torchmin`` 0.1.0; Feinman, https://github.com/rfeinman/pytorch-minimize):
  ``torchmin.minimize(f, x0, method=m)`` for ``newton-exact``, ``newton-cg``, ``trust-exact``,
  ``trust-ncg``, ``bfgs`` and ``l-bfgs``, derivatives by torchmin's autograd;
* scipy: :func:`scipy.optimize.minimize` with ``L-BFGS-B``, ``trust-exact``, ``Newton-CG`` and
  ``trust-krylov``, fed torch-autograd oracles the way a user writes them (:func:`scipy_oracles`):
  ``fun`` returning value and gradient (``jac=True``) by :func:`torch.autograd.grad` on a numpy -> torch
  wrapper, ``hess`` by :func:`torch.autograd.functional.hessian`, ``hessp`` by double backward.

No algorithmic option is set on any side. The one setting passed is the stopping tolerance, through each
library's documented ``tol`` argument (``optlib.minimize(..., tol=)``, ``torchmin.minimize(..., tol=)``,
``scipy.optimize.minimize(..., tol=)``), set tight (``--tol``, default 1e-14) so that the shared target
rule, not a library's own default tolerance, ends a successful run (``--tol none`` keeps every library's
defaults). Each solver also receives the monitoring callback its library documents.

Measurement. The problems are :func:`optlib.problems.user_path_problems` (plain torch functions, each with an
``f_star`` computed independently of the torch code). A run has reached the target at the first iterate with

.. math::

    \frac{f(x_k) - f^\star}{\max(1, |f^\star|)} \le \text{target} \quad (\text{default } 10^{-8}),

and its time is the wall-clock time from the call until then (AlgoPerf's time to target, Dahl et al.,
arXiv:2306.07179), with the clock paused inside the callback (the monitor evaluates ``f`` itself where the
library's callback passes only ``x``). A solver that stops on its own, raises, or runs past ``--time-limit``
before reaching the target has failed on that problem (time ``inf``); when it stops on its own, its final
point is still checked, untimed. One untimed warm-up run per (problem, solver) pays first-call costs; the
reported time is the median of ``--repeats`` timed runs (fewer once a pair has used ``--repeat-budget``
seconds; a failure is not repeated). Everything runs in one process, one solver after another, with
``--threads`` threads in torch and the BLAS pools (:func:`scale.bench.common.thread_limit`; default 1).

Summary. Per problem: the best optlib time over its four entries, the best peer time over torchmin's and
scipy's ten, and ``ratio = best optlib / best peer`` (below 1: optlib is faster; ``inf`` when only optlib
failed, ``0`` when only the peers did, ``nan`` when both did). The geometric mean of the ratios is taken over
the problems where both sides reached the target. The targets *reported* (never asserted) are a geometric mean
``<= 0.5`` and no problem above ``1.0``. A Dolan–Moré performance profile of the times
(:mod:`scale.bench.performance_profile`) is drawn over all fourteen solvers.

Outputs in ``--out``: ``user_path.json`` (settings, provenance, problems with their ``f_star`` sources,
every timed run, the per-problem table and the summary), ``user_path.md`` (the tables) and
``performance_profile_user_path.png``. ``--quick`` runs small sizes with one repeat (under a minute).
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.optimize
import torch
from tqdm.auto import tqdm

import optlib
from optlib.problems import UserPathProblem, user_path_problems
from scale.cli import Command, config_to_dict, option

from . import performance_profile as profiles
from .common import (
    ReportContext,
    SectionResult,
    fmt_num,
    fmt_time,
    md_table,
    provenance,
    register_listing,
    register_section,
    save_json,
    thread_limit,
)
from .second_order import cost_table, ratio, stop_reason, summarize

try:  # a peer, installed by `make install` without its dependency resolution (see the Makefile)
    import torchmin
except ImportError:  # pragma: no cover - the comparison then runs without torchmin's entries
    torchmin = None

JSON_NAME = "user_path.json"
TABLE_NAME = "user_path.md"
PROFILE_NAME = "performance_profile_user_path.png"
FAMILIES = ("optlib", "torchmin", "scipy")
PEERS = ("torchmin", "scipy")
TIGHT = 1e-14


# ---------------------------------------------------------------------------------------- solvers
@dataclass(frozen=True)
class UserSolver:
    """One library call: ``family`` (``optlib``, ``torchmin`` or ``scipy``), ``method`` (``None``: the
    library's default method) and, for scipy, the second-order ``oracle`` it is given (``hess``,
    ``hessp`` or ``None``)."""

    name: str
    family: str
    method: str | None
    oracle: str | None = None

    def call(self) -> str:
        """The call as a user writes it (for the report)."""
        if self.family == "optlib":
            return "optlib.minimize(f, x0" + (f", method={self.method!r}" if self.method else "") + ", tol=tol)"
        if self.family == "torchmin":
            return f"torchmin.minimize(f, x0, method={self.method!r}, tol=tol)"
        extra = f", {self.oracle}={self.oracle}" if self.oracle else ""
        return f"scipy.optimize.minimize(fun, x0, jac=True{extra}, method={self.method!r}, tol=tol)"

    def available(self) -> str | None:
        """Why this solver cannot run here (``None`` when it can)."""
        if self.family == "torchmin" and torchmin is None:
            return "pytorch-minimize is not installed (make install adds it)"
        return None

    def solve(self, fun: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, tol: float | None,
              callback: Callable[..., Any]) -> Any:
        """Run from ``x0``; returns the library's result object."""
        kw = {} if tol is None else {"tol": tol}
        if self.family == "optlib":
            method = {} if self.method is None else {"method": self.method}
            return optlib.minimize(fun, x0.clone(), callback=callback, **method, **kw)
        if self.family == "torchmin":
            return torchmin.minimize(fun, x0.clone(), method=self.method, callback=callback, **kw)
        oracles = scipy_oracles(fun)
        extra = {self.oracle: oracles[self.oracle]} if self.oracle else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return scipy.optimize.minimize(oracles["fun"], x0.detach().numpy().copy(), jac=True, method=self.method,
                                           callback=callback, **extra, **kw)


SOLVERS: dict[str, UserSolver] = {s.name: s for s in (
    UserSolver("optlib:minimize", "optlib", None),
    UserSolver("optlib:grad-norm-newton", "optlib", "grad-norm-newton"),
    UserSolver("optlib:regularized-newton", "optlib", "regularized-newton"),
    UserSolver("optlib:super-newton", "optlib", "super-newton"),
    UserSolver("torchmin:newton-exact", "torchmin", "newton-exact"),
    UserSolver("torchmin:newton-cg", "torchmin", "newton-cg"),
    UserSolver("torchmin:trust-exact", "torchmin", "trust-exact"),
    UserSolver("torchmin:trust-ncg", "torchmin", "trust-ncg"),
    UserSolver("torchmin:bfgs", "torchmin", "bfgs"),
    UserSolver("torchmin:l-bfgs", "torchmin", "l-bfgs"),
    UserSolver("scipy:L-BFGS-B", "scipy", "L-BFGS-B"),
    UserSolver("scipy:trust-exact", "scipy", "trust-exact", "hess"),
    UserSolver("scipy:Newton-CG", "scipy", "Newton-CG", "hessp"),
    UserSolver("scipy:trust-krylov", "scipy", "trust-krylov", "hessp"),
)}
SOLVER_NAMES = tuple(SOLVERS)


def scipy_oracles(fun: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, Callable[..., Any]]:
    """scipy's callables for a torch function, written the way a user writes them: ``fun(x) -> (f, g)`` by
    :func:`torch.autograd.grad`, ``hess(x)`` by :func:`torch.autograd.functional.hessian` (its defaults),
    ``hessp(x, p)`` by double backward (the gradient built with ``create_graph=True``, then differentiated
    along ``p``). Each call converts numpy -> torch -> numpy; nothing is cached between calls."""

    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        f = fun(xt)
        (g,) = torch.autograd.grad(f, xt)
        return float(f), g.numpy()

    def hess(x: np.ndarray) -> np.ndarray:
        return torch.autograd.functional.hessian(fun, torch.tensor(x, dtype=torch.float64)).numpy()

    def hessp(x: np.ndarray, p: np.ndarray) -> np.ndarray:
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(fun(xt), xt, create_graph=True)
        (hv,) = torch.autograd.grad(g, xt, grad_outputs=torch.as_tensor(p, dtype=torch.float64))
        return hv.numpy()

    return {"fun": value_and_grad, "hess": hess, "hessp": hessp}


# ---------------------------------------------------------------------------------------- one run
class Monitor:
    """The callback every solver gets: records ``(time, relative suboptimality)`` per call, with its own time
    excluded from the clock, and raises ``StopIteration`` at the target or past the time limit.

    It accepts both callback forms: scipy's and optlib's ``callback(intermediate_result)`` (whose ``fun`` is
    used when present) and torchmin's ``callback(x)`` (``f(x)`` is then evaluated here, untimed).
    """

    def __init__(self, problem: UserPathProblem, target: float, time_limit: float) -> None:
        self.problem = problem
        self.f_star = problem.f_star
        self.scale = max(1.0, abs(self.f_star))
        self.target = target
        self.time_limit = time_limit
        self.k = 0
        self.curve_time: list[float] = []
        self.curve_rel: list[float] = []
        self.reached = self.timed_out = False
        self.time_to_target = math.inf
        self.f_last = math.nan
        self._t0 = self._paused = 0.0

    def rel(self, f: float) -> float:
        return (f - self.f_star) / self.scale

    def start(self) -> None:
        self._paused = 0.0
        self._t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0 - self._paused

    def __call__(self, intermediate_result: Any) -> None:
        t_in = time.perf_counter()
        elapsed = t_in - self._t0 - self._paused
        self.k += 1
        if isinstance(intermediate_result, (torch.Tensor, np.ndarray)):
            f = self.problem.value(intermediate_result.detach() if isinstance(intermediate_result, torch.Tensor)
                                   else intermediate_result)
        else:
            f = intermediate_result.get("fun") if hasattr(intermediate_result, "get") else None
            f = self.problem.value(intermediate_result["x"]) if f is None else float(f)
        self.f_last = f
        rel = self.rel(f)
        self.curve_time.append(elapsed)
        self.curve_rel.append(rel)
        stop = False
        if rel <= self.target:
            self.reached, self.time_to_target, stop = True, elapsed, True
        elif elapsed > self.time_limit:
            self.timed_out, stop = True, True
        self._paused += time.perf_counter() - t_in
        if stop:
            raise StopIteration


def _final_value(problem: UserPathProblem, res: Any) -> float | None:
    """The value at a result's ``x`` (untimed), or ``None``."""
    x = res.get("x") if hasattr(res, "get") else getattr(res, "x", None)
    if x is None:
        return None
    try:
        return problem.value(x.detach() if isinstance(x, torch.Tensor) else x)
    except Exception:
        return None


def run_once(problem: UserPathProblem, solver: UserSolver, *, target: float, tol: float | None,
             time_limit: float) -> dict[str, Any]:
    """One run of ``solver`` on ``problem`` from its ``x0``: a record with the time to target (``inf`` when
    missed), why it stopped, the final relative suboptimality and the curve."""
    mon = Monitor(problem, target, time_limit)
    error, message, res = None, "", None
    mon.start()
    try:
        res = solver.solve(problem.fun, problem.x0, tol, mon)
    except StopIteration:  # a library that lets the callback's StopIteration escape (torchmin)
        pass
    except Exception as exc:  # a library failure is a failed run, not a crashed comparison
        error = f"{type(exc).__name__}: {exc}"
    wall = mon.elapsed()
    if res is not None:
        message = str(res.get("message", "")) if hasattr(res, "get") else ""
    ended_alone = not (mon.reached or mon.timed_out) and error is None
    f_end = _final_value(problem, res) if ended_alone and res is not None else None
    stopped_by = stop_reason(mon, error, f_end, wall, target)
    return {
        "dataset_name": problem.name,
        "solver_name": solver.name,
        "solver_family": solver.family,
        "dimension": problem.d,
        "target": target,
        "reached": mon.reached,
        "stopped_by": stopped_by,
        "time": mon.time_to_target if mon.reached else math.inf,
        "wall_time": wall,
        "objective_value": mon.f_last,
        "rel_suboptimality": mon.rel(mon.f_last) if math.isfinite(mon.f_last) else math.nan,
        "iterations": mon.k,
        "message": error or message,
        "f_star": mon.f_star,
        "curve_time": mon.curve_time,
        "curve_rel": mon.curve_rel,
    }


# ---------------------------------------------------------------------------------------- settings
SIZES = ("full", "quick")


@dataclass
class Config:
    """Everything one run depends on (recorded in the JSON, less ``out``, ``plot`` and ``progress``)."""

    size: str = option("full", "problem sizes: full (d up to 1000, softmax on digits with d = 640) or quick "
                               "(d <= 50, softmax on wine)", choices=SIZES)
    problems: tuple[str, ...] | None = option(None, "problems to run (none: all ten of the chosen size); "
                                                    "see optlib.problems.user_path_problems")
    solvers: tuple[str, ...] = option(SOLVER_NAMES, "solvers to run; at least one optlib entry and one peer",
                                      choices=SOLVER_NAMES)
    target: float = option(1e-8, "relative suboptimality (f - f*)/max(1, |f*|) that counts as solved")
    tol: float | None = option(TIGHT, "the stopping tolerance passed as each library's documented tol "
                                      "argument (none: every library's default stopping rule)")
    repeats: int = option(5, "timed runs per (problem, solver) after one warm-up; the median is reported")
    repeat_budget: float = option(10.0, "stop repeating a (problem, solver) once its timed runs used this many "
                                        "seconds (at least one run)")
    time_limit: float = option(30.0, "seconds per run; a run still short of the target then has failed")
    warmup_limit: float = option(2.0, "seconds after which the untimed warm-up run is cut off")
    threads: int = option(1, "threads for torch and the BLAS pools while measuring")
    out: Path = option(Path("reports/user_path"), f"output folder for {JSON_NAME}, {TABLE_NAME} and the profile")
    plot: bool = option(True, "draw the performance profile")
    progress: bool = option(True, "show a progress bar")

    def catalogue(self) -> dict[str, Callable[[], UserPathProblem]]:
        return user_path_problems(quick=self.size == "quick")

    def problem_names(self) -> list[str]:
        return list(self.problems) if self.problems else list(self.catalogue())

    def validate(self) -> None:
        known = list(self.catalogue())
        unknown = [p for p in self.problems or () if p not in known]
        if unknown:
            raise ValueError(f"--problems: unknown problem(s) {', '.join(unknown)} at size {self.size!r}; "
                             f"known: {', '.join(known)}.")
        bad = [s for s in self.solvers if s not in SOLVERS]
        if bad:
            raise ValueError(f"--solvers: unknown solver(s) {', '.join(bad)}; known: {', '.join(SOLVER_NAMES)}.")
        families = {SOLVERS[s].family for s in self.solvers}
        if "optlib" not in families or not families & set(PEERS):
            raise ValueError("--solvers must include at least one optlib solver and one torchmin or scipy solver "
                             "(the summary is a ratio between them).")
        if not 0 < self.target < 1:
            raise ValueError(f"--target must lie in (0, 1), got {self.target:g}.")
        if self.tol is not None and not self.tol >= 0:
            raise ValueError(f"--tol must be >= 0 or none, got {self.tol}.")
        if self.repeats < 1 or self.threads < 1:
            raise ValueError(f"--repeats and --threads must be at least 1, got {self.repeats} and {self.threads}.")
        if not (self.time_limit > 0 and self.repeat_budget > 0 and self.warmup_limit > 0):
            raise ValueError("--time-limit, --repeat-budget and --warmup-limit must be positive.")


_RUN_ONLY = ("out", "plot", "progress")
# quick: small sizes, one repeat, short limits (well under a minute); smoke: the report's quick mode, three
# problems; report: the report's default mode, full sizes with fewer repeats.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"size": "quick", "repeats": 1, "time_limit": 3.0, "warmup_limit": 0.3},
    "smoke": {"size": "quick", "repeats": 1, "time_limit": 3.0, "warmup_limit": 0.3,
              "problems": ("logistic-breast_cancer", "rosenbrock-chained", "mgh30-broyden-tridiagonal")},
    "report": {"repeats": 3, "repeat_budget": 5.0, "time_limit": 30.0},
}


# ---------------------------------------------------------------------------------------- the comparison
def run_benchmark(cfg: Config) -> dict[str, Any]:
    """Every chosen solver on every chosen problem (see the module docstring); returns the JSON's content."""
    cfg.validate()
    catalogue = cfg.catalogue()
    names = cfg.problem_names()
    chosen = [SOLVERS[s] for s in cfg.solvers]
    skipped = {s.name: s.available() for s in chosen if s.available() is not None}
    runnable = [s for s in chosen if s.name not in skipped]
    records: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    with thread_limit(cfg.threads), tqdm(total=len(names) * len(runnable), desc="user path", unit="run",
                                         leave=False, disable=not cfg.progress) as bar:
        prov = provenance(cfg.threads)
        for name in names:
            problem = catalogue[name]()
            f_star = problem.f_star  # the reference solve happens here, before any clock starts
            problems.append({"name": name, "d": problem.d, "f_star": f_star, "f0": problem.value(problem.x0),
                             "f_star_source": problem.f_star_source, "source": problem.source,
                             "reference": problem.reference})
            for solver in runnable:
                bar.set_postfix_str(f"{name} / {solver.name}")
                run_once(problem, solver, target=cfg.target, tol=cfg.tol, time_limit=cfg.warmup_limit)
                spent = 0.0
                for rep in range(cfg.repeats):
                    if rep > 0 and spent >= cfg.repeat_budget:
                        break
                    rec = run_once(problem, solver, target=cfg.target, tol=cfg.tol, time_limit=cfg.time_limit)
                    spent += rec["wall_time"]
                    rec["idx_rep"] = rep
                    records.append(rec)
                    if not rec["reached"]:
                        break  # a deterministic failure repeats itself
                bar.update(1)
    table = comparison_table(records)
    return {
        "config": {k: v for k, v in config_to_dict(cfg).items() if k not in _RUN_ONLY} | {"problems": names},
        "provenance": prov,
        "calls": {s.name: s.call() for s in chosen},
        "skipped_solvers": skipped,
        "problems": problems,
        "runs": records,
        "table": table,
        "summary": summarize_table(table),
    }


def comparison_table(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per problem: the best optlib, torchmin, scipy and peer solver with their median times,
    ``ratio = best optlib / best peer`` (:func:`scale.bench.second_order.ratio`), and every solver's time."""
    by_problem: dict[str, dict[str, dict[str, Any]]] = {}
    for row in summarize(records):
        by_problem.setdefault(row["dataset_name"], {})[row["solver_name"]] = row
    table = []
    for problem, rows in by_problem.items():
        best: dict[str, tuple[str | None, float]] = {}
        for fam in (*FAMILIES, "peer"):
            members = PEERS if fam == "peer" else (fam,)
            cands = sorted((r["time"], n) for n, r in rows.items() if r["solver_family"] in members)
            best[fam] = (cands[0][1], cands[0][0]) if cands and math.isfinite(cands[0][0]) else (None, math.inf)
        table.append({
            "problem": problem,
            "dimension": next(iter(rows.values()))["dimension"],
            **{f"best_{fam}": best[fam][0] for fam in best},
            **{f"best_{fam}_time": best[fam][1] for fam in best},
            "ratio": ratio(best["optlib"][1], best["peer"][1]),
            "times": {n: r["time"] for n, r in rows.items()},
            "stopped_by": {n: r["stopped_by"] for n, r in rows.items()},
            "iterations": {n: r["iterations"] for n, r in rows.items()},
            "rel_suboptimality": {n: r["rel_suboptimality"] for n, r in rows.items()},
        })
    return table


def geometric_mean(values: Sequence[float]) -> float:
    """The geometric mean of positive finite values (``nan`` for none)."""
    v = [x for x in values if math.isfinite(x) and x > 0]
    return math.exp(statistics.fmean(math.log(x) for x in v)) if v else math.nan


def summarize_table(table: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The headline: geometric mean of the ratios where both sides reached the target, the worst ratio, the
    problems above 1, those only one side solved, and whether the reported targets were met."""
    both = [r for r in table if math.isfinite(r["ratio"]) and r["ratio"] > 0]
    gm = geometric_mean([r["ratio"] for r in both])
    above = [r["problem"] for r in table if r["ratio"] > 1.0]  # inf included: only optlib failed
    worst = max(table, key=lambda r: r["ratio"] if not math.isnan(r["ratio"]) else -1.0, default=None)
    return {
        "problems": len(table),
        "both_reached": len(both),
        "geometric_mean_ratio": gm,
        "max_ratio": worst["ratio"] if worst is not None else math.nan,
        "worst_problem": worst["problem"] if worst is not None else None,
        "above_1": above,
        "only_optlib_reached": [r["problem"] for r in table if r["ratio"] == 0.0],
        "only_peers_reached": [r["problem"] for r in table if math.isinf(r["ratio"])],
        "none_reached": [r["problem"] for r in table if math.isnan(r["ratio"])],
        "target_geomean_le_0.5": bool(gm <= 0.5) if math.isfinite(gm) else False,
        "target_none_above_1": not above,
    }


# ---------------------------------------------------------------------------------------- formatting
def _best(name: str | None, t: float) -> str:
    return "none reached" if name is None else f"{name} ({fmt_time(t)})"


def format_tables(result: Mapping[str, Any]) -> str:
    """The headline table (per problem: best optlib, best torchmin, best scipy, ratio), the summary line, and
    every solver's median time."""
    table = result["table"]
    f_star = {p["name"]: p for p in result["problems"]}
    rows = [[r["problem"], r["dimension"], f"{f_star[r['problem']]['f_star']:.10g}",
             _best(r["best_optlib"], r["best_optlib_time"]), _best(r["best_torchmin"], r["best_torchmin_time"]),
             _best(r["best_scipy"], r["best_scipy_time"]), fmt_num(r["ratio"], 3)] for r in table]
    text = md_table(["problem", "d", "f*", "best optlib", "best torchmin", "best scipy",
                     "ratio optlib / best peer"], rows)
    text += "\n\n" + format_summary(result)
    solvers = [n for n in result["calls"] if any(n in r["times"] for r in table)]
    wide = []
    for r in table:
        cells = []
        for n in solvers:
            if n not in r["times"]:
                cells.append("—")
            elif math.isfinite(r["times"][n]):
                cells.append(fmt_time(r["times"][n]))
            else:
                cells.append(f"✗ ({r['stopped_by'][n]}, {fmt_num(r['rel_suboptimality'][n], 2)})")
        wide.append([r["problem"], *cells])
    text += ("\n\nEvery solver's median time to target (✗: not reached, with why it stopped and the relative "
             "suboptimality it ended at):\n\n" + md_table(["problem", *solvers], wide))
    return text


def format_summary(result: Mapping[str, Any]) -> str:
    s, cfg, prov = result["summary"], result["config"], result["provenance"]
    gm = s["geometric_mean_ratio"]
    lines = [
        f"- geometric mean of best optlib / best peer over the {s['both_reached']} of {s['problems']} problems "
        f"both sides solved: **{fmt_num(gm, 3)}** (target ≤ 0.5: {'met' if s['target_geomean_le_0.5'] else 'not met'})",
        f"- largest ratio: {fmt_num(s['max_ratio'], 3)} ({s['worst_problem']}); problems above 1: "
        f"{', '.join(s['above_1']) or 'none'} (target none: {'met' if s['target_none_above_1'] else 'not met'})",
    ]
    if s["only_optlib_reached"] or s["only_peers_reached"] or s["none_reached"]:
        lines.append(f"- solved by optlib only: {', '.join(s['only_optlib_reached']) or 'none'}; by the peers only: "
                     f"{', '.join(s['only_peers_reached']) or 'none'}; by nobody: "
                     f"{', '.join(s['none_reached']) or 'none'}")
    if result.get("skipped_solvers"):
        lines.append("- skipped: " + "; ".join(f"{k} ({v})" for k, v in result["skipped_solvers"].items()))
    lines.append(
        f"- target {cfg['target']:g} on (f − f*)/max(1, |f*|); tol = {cfg['tol']}; median of up to "
        f"{cfg['repeats']} timed runs after a warm-up; {cfg['threads']} thread(s); torch {prov.get('version-torch')}, "
        f"scipy {prov.get('version-scipy')}, torchmin {_torchmin_version()}; load average {prov.get('env-loadavg')} "
        f"on {prov.get('env-cpu_count')} CPUs")
    return "\n".join(lines)


def _torchmin_version() -> str:
    return getattr(torchmin, "__version__", "unknown") if torchmin is not None else "not installed"


def plot_profile(result: Mapping[str, Any], path: Path | str) -> str:
    """The Dolan–Moré profile of time to target over the run's problems (optlib solid, peers dashed)."""
    costs = cost_table(result["runs"], "time")
    families = {r["solver_name"]: ("scipy" if r["solver_family"] in PEERS else r["solver_family"])
                for r in result["runs"]}
    return profiles.plot_performance_profile(costs, str(path), title="User path: time to target",
                                             families=families)


def write_outputs(result: Mapping[str, Any], out: Path | str, plot: bool = True) -> Path:
    """``out/user_path.json``, ``out/user_path.md`` and (``plot``) the profile; returns the JSON's path."""
    path = save_json(result, out, JSON_NAME)
    text = "# User path: optlib against pytorch-minimize and scipy\n\n" + format_tables(result) + "\n"
    if plot:
        plot_profile(result, Path(out) / PROFILE_NAME)
        text += f"\n![performance profile]({PROFILE_NAME})\n"
    (Path(out) / TABLE_NAME).write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------- report section
register_listing("user-path solvers", lambda: list(SOLVER_NAMES))


@register_section("user-path", "The user path: plain torch functions, default options", order=23)
def report_section(ctx: ReportContext) -> SectionResult:
    """The report's user-path section: the ``smoke`` preset in the report's quick mode, the ``report`` preset
    in its default mode, the full run in its full mode."""
    mode = getattr(ctx.config, "mode", "default")
    preset = {"quick": PRESETS["smoke"], "default": PRESETS["report"]}.get(mode, {})
    cfg = Config(**preset, threads=ctx.config.threads or 1, progress=ctx.config.progress)
    result = run_benchmark(cfg)
    save_json(result, ctx.out, JSON_NAME)
    path, rel_path = ctx.figure(PROFILE_NAME)
    plot_profile(result, path)
    text = (
        "Each problem is a plain torch function f(x) -> scalar; each library is called with its defaults and "
        "only a tight stopping tolerance through its documented `tol` argument: `optlib.minimize(f, x0)` and "
        "three named optlib methods, pytorch-minimize's `torchmin.minimize(f, x0, method=...)`, and scipy fed "
        "torch-autograd oracles as a user writes them. Time to (f − f*)/max(1, |f*|) ≤ "
        f"{cfg.target:g}, median after a warm-up, one process, {cfg.threads} thread(s). Ratio = best optlib / "
        "best peer (below 1: optlib is faster). `python -m scale.bench.user_path` runs the full suite.\n\n"
        + format_tables(result) + f"\n\n![performance profile]({rel_path})"
    )
    return SectionResult(text, [rel_path], [JSON_NAME])


# ---------------------------------------------------------------------------------------- CLI
def _run(cfg: Config) -> int:
    result = run_benchmark(cfg)
    print(format_tables(result))
    print(f"results written to {write_outputs(result, cfg.out, cfg.plot)}")
    return 0


COMMAND = Command(
    prog="python -m scale.bench.user_path",
    description=(
        "The user path: plain torch functions f(x) -> scalar, default options on every side. optlib.minimize "
        "(its default method and grad-norm-newton, regularized-newton, super-newton) against pytorch-minimize "
        "(newton-exact, newton-cg, trust-exact, trust-ncg, bfgs, l-bfgs) and scipy (L-BFGS-B, trust-exact, "
        "Newton-CG, trust-krylov on torch-autograd oracles), time to relative suboptimality 1e-8 on ten "
        "problems (regularized logistic, Poisson, log-cosh, pseudo-Huber and softmax regression; chained "
        "Rosenbrock and Moré–Garbow–Hillstrom problems 13, 25, 26, 30). Writes OUT/user_path.json, "
        "OUT/user_path.md and the performance profile; --quick runs small sizes once (under a minute)."
    ),
    config=Config, run=_run, presets=PRESETS, preset_flags=True,
)
main = COMMAND.main

if __name__ == "__main__":
    raise SystemExit(main())
