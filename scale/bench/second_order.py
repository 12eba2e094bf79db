"""Time to target against scipy, on the same counted oracles.

Every solver, optlib's or scipy's, starts from the same ``x0`` and is stopped by the same rule: a
callback that raises ``StopIteration`` as soon as the relative suboptimality

    (f(x_k) - f*) / (f(x0) - f*)  <=  target            (default 1e-8)

holds. This is benchopt's "relative suboptimality" (benchopt issue #95 / PR #96; spec
``90-benchmarks-and-style.md`` §1). The solvers' own tolerances are set so tight that the callback is
what stops them; a solver that stops on its own (or runs out of the per-run time limit) before
reaching the target has not reached it, and its time is ``inf``.

What is timed is AlgoPerf's quantity, the wall-clock time to reach the target (Dahl et al.,
arXiv:2306.07179; spec §2), measured with :func:`time.perf_counter`:

* one untimed warm-up run per (problem, solver) comes first, so that torch's and scipy's first-call
  costs (lazy imports, allocator warm-up, dispatch caches) are not charged to anybody;
* the clock is paused inside the callback (benchopt: "time = solver time only"), so monitoring costs
  nothing; when a scipy method's ``intermediate_result`` carries no ``fun``, ``f`` is evaluated there,
  uncounted and untimed;
* the reported time is the median over ``repeats`` timed runs;
* ``threads`` pins torch's and numpy/scipy's BLAS thread counts for the whole comparison
  (:func:`thread_limit`); the report uses one thread.

"Iterations" are callback calls: accepted steps for optlib's methods, every trust-region iteration
(accepted or not) for scipy's. scipy's side also pays the numpy <-> torch conversion at each oracle
call (``Problem.as_scipy``), a few microseconds, which is part of using scipy on these oracles.

Oracle counts (``nfev``, ``njev``, ``nhev``, ``nhvp``) are read from :class:`optlib.Problem`'s counters
at the moment the target is reached. scipy's solvers get ``problem.as_scipy()``, whose callables go
through the same counted torch oracles, so the counts are comparable.

Results are long-format records in benchopt's shape (objective x dataset x solver x repetition,
with ``time`` and ``objective_value`` plus counters and provenance); :func:`time_to_target_table`
reduces them to one row per problem with the best optlib and best scipy solver and their ratio.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.optimize
import torch

import optlib
from optlib import Problem
from optlib.problems import library

from . import performance_profile as profiles
from .common import (
    ReportContext,
    SectionResult,
    fmt_num,
    fmt_time,
    json_safe,
    md_table,
    provenance,
    pyplot,
    register_listing,
    register_section,
    thread_limit,
)
from .performance_profile import solver_styles

DEFAULT_TARGET = 1e-8
DEFAULT_REPEATS = 5
DEFAULT_TIME_LIMIT = 60.0  # seconds per run; a run that exceeds it has not reached the target
TIGHT = 1e-14  # the solvers' own tolerances: tight enough that the target callback stops them
MAXITER = 100_000
COUNTERS = ("nfev", "njev", "nhev", "nhvp")
OBJECTIVE_NAME = "relative suboptimality"


# ---------------------------------------------------------------------------------------- solvers
@dataclass(frozen=True)
class Solver:
    """One entry of the solver registry.

    ``family`` is ``"optlib"`` (run through :func:`optlib.minimize`) or ``"scipy"`` (run through
    :func:`scipy.optimize.minimize` with ``problem.as_scipy()``). ``oracle`` is, for scipy, which
    second-order oracle the method receives (``"hess"``, ``"hessp"`` or ``None``); ``requires`` names
    curvatures the problem must provide (e.g. ``"bohning"``).
    """

    name: str
    family: str
    method: str
    options: Mapping[str, Any] = field(default_factory=dict)
    oracle: str | None = None
    requires: tuple[str, ...] = ()
    description: str = ""

    def skip_reason(self, problem: Problem) -> str | None:
        """Why this solver cannot run on ``problem`` (``None`` when it can)."""
        missing = [c for c in self.requires if c not in problem.available_curvatures()]
        if missing:
            return f"problem '{problem.name}' has no curvature {', '.join(missing)}"
        return None

    def solve(self, problem: Problem, x0: torch.Tensor, callback: Callable[..., Any]) -> Any:
        """Run from ``x0`` with ``callback``; return the solver's result object."""
        if self.family == "optlib":
            return optlib.minimize(problem, x0, method=self.method, callback=callback, **dict(self.options))
        if self.family == "scipy":
            oracles = problem.as_scipy()
            kwargs: dict[str, Any] = {"jac": True}
            if self.oracle is not None:
                kwargs[self.oracle] = oracles[self.oracle]
            return scipy.optimize.minimize(
                oracles["fun"], x0.detach().numpy().copy(), method=self.method, callback=callback,
                options=dict(self.options), **kwargs,
            )
        raise ValueError(f"unknown solver family {self.family!r} (expected 'optlib' or 'scipy')")


_SOLVERS: dict[str, Solver] = {}


def register_solver(solver: Solver) -> Solver:
    """Add ``solver`` to the registry (its name must be new)."""
    if solver.name in _SOLVERS:
        raise ValueError(f"solver '{solver.name}' is already registered")
    if solver.family not in ("optlib", "scipy"):
        raise ValueError(f"solver family must be 'optlib' or 'scipy', got {solver.family!r}")
    _SOLVERS[solver.name] = solver
    return solver


def solvers(family: str | None = None) -> list[str]:
    """Registered solver names (optionally only one family), in registration order."""
    return [name for name, s in _SOLVERS.items() if family is None or s.family == family]


def get_solver(name: str) -> Solver:
    try:
        return _SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; known solvers: {', '.join(_SOLVERS)}") from None


# Options. One setting per solver for every problem (AlgoPerf bans branching on workload identity).
# The one free starting parameter of each method (optlib: gamma0, M, H0, H; scipy's trust regions:
# initial_trust_radius) was chosen once, by the same scan over powers of ten on the default report
# suite, for the fewest Hessian evaluations, then the fewest function evaluations, to the target;
# scipy's Newton-CG and L-BFGS-B have no such parameter. Everything else is each library's default.
_OPTLIB_COMMON = {"gtol": TIGHT, "maxiter": MAXITER}
register_solver(Solver(
    "optlib:grad-norm-newton[exact]", "optlib", "grad-norm-newton",
    {"hessian": "exact", "gamma0": 100.0, **_OPTLIB_COMMON},
    description="gradient-regularized Newton, adaptive radius, exact Hessian (Semenov, Jaggi & Doikov 2025)",
))
register_solver(Solver(
    "optlib:grad-norm-newton[cg]", "optlib", "grad-norm-newton",
    {"hessian": "exact", "solver": "cg", "gamma0": 100.0, **_OPTLIB_COMMON},
    description="Hessian-free gradient-regularized Newton: truncated CG on Hessian-vector products with "
                "forcing terms min(1/2, ||g||^(1/2)) (Dembo, Eisenstat & Steihaug 1982)",
))
register_solver(Solver(
    "optlib:grad-norm-newton[bohning]", "optlib", "grad-norm-newton",
    {"hessian": "bohning", "gamma0": 100.0, **_OPTLIB_COMMON},
    requires=("bohning",),
    description="gradient-regularized Newton with the fixed Böhning bound A^T A/(4n) + mu I",
))
register_solver(Solver(
    "optlib:cubic-newton", "optlib", "cubic-newton",
    {"hessian": "exact", "M": 1e-4, **_OPTLIB_COMMON},
    description="cubic-regularized Newton, adaptive M (Nesterov & Polyak 2006)",
))
register_solver(Solver(
    "optlib:cubic-newton[lazy]", "optlib", "cubic-newton",
    {"hessian": "exact", "M": 1e-4, "hessian_every": "dimension", "solver": "eigh", **_OPTLIB_COMMON},
    description="cubic Newton with lazy Hessians, one Hessian per n iterations, each eigendecomposed once "
                "(Doikov, Chayti & Jaggi 2023)",
))
register_solver(Solver(
    "optlib:super-newton", "optlib", "super-newton",
    {"hessian": "exact", "H0": 1e-2, **_OPTLIB_COMMON},
    description="super-universal regularized Newton, alpha = 1 (Doikov, Mishchenko & Nesterov 2024)",
))
register_solver(Solver(
    "optlib:regularized-newton", "optlib", "regularized-newton",
    {"hessian": "exact", "H": 1e-1, **_OPTLIB_COMMON},
    description="regularized Newton with a line search over H (Mishchenko 2023)",
))

# scipy peers: tolerances tight, iteration caps out of the way.
register_solver(Solver(
    "scipy:trust-ncg", "scipy", "trust-ncg", {"gtol": TIGHT, "maxiter": MAXITER}, oracle="hessp",
    description="Newton conjugate-gradient trust region (Steihaug), Hessian-vector products",
))
register_solver(Solver(
    "scipy:trust-exact", "scipy", "trust-exact",
    {"gtol": TIGHT, "maxiter": MAXITER, "initial_trust_radius": 10.0}, oracle="hess",
    description="nearly exact trust-region subproblem (Moré-Sorensen), dense Hessian",
))
register_solver(Solver(
    "scipy:trust-krylov", "scipy", "trust-krylov",
    {"gtol": TIGHT, "maxiter": MAXITER, "initial_trust_radius": 10.0}, oracle="hessp",
    description="Lanczos trust region (GLTR, trlib), Hessian-vector products",
))
register_solver(Solver(
    "scipy:Newton-CG", "scipy", "Newton-CG", {"xtol": TIGHT, "maxiter": MAXITER}, oracle="hessp",
    description="line-search truncated Newton (CG on Hessian-vector products)",
))
# The same methods fed the dense Hessian instead of Hessian-vector products (scipy then multiplies by
# the matrix itself): where one Hessian costs less than the CG/Lanczos iterations' HVPs, this is the
# stronger anchor, so both forms take part and the best scipy time is the minimum over all of them.
register_solver(Solver(
    "scipy:trust-ncg[hess]", "scipy", "trust-ncg", {"gtol": TIGHT, "maxiter": MAXITER}, oracle="hess",
    description="trust-ncg on the dense Hessian",
))
register_solver(Solver(
    "scipy:trust-krylov[hess]", "scipy", "trust-krylov",
    {"gtol": TIGHT, "maxiter": MAXITER, "initial_trust_radius": 10.0}, oracle="hess",
    description="trust-krylov on the dense Hessian",
))
register_solver(Solver(
    "scipy:Newton-CG[hess]", "scipy", "Newton-CG", {"xtol": TIGHT, "maxiter": MAXITER}, oracle="hess",
    description="Newton-CG on the dense Hessian",
))
register_solver(Solver(
    "scipy:L-BFGS-B", "scipy", "L-BFGS-B",
    {"ftol": 0.0, "gtol": 0.0, "maxiter": MAXITER, "maxfun": 10 * MAXITER},
    description="limited-memory BFGS (first order)",
))


# ---------------------------------------------------------------------------------------- problems
LOGISTIC_PROBLEMS = ("logreg-breast_cancer", "logreg-digits_binary", "logreg-synthetic")


def named_problems() -> dict[str, Callable[[], Problem]]:
    """The comparison's problem names -> zero-argument constructors: :func:`optlib.problems.library` (lazy:
    constructing loads data). ``logreg-synthetic`` is the ill-conditioned synthetic set, n = 5000 samples,
    d = 200 features with column scales log-spaced over [1e-3, 1e1]."""
    return library()


# ---------------------------------------------------------------------------------------- oracles
def uncounted_value(problem: Problem, x: Any) -> float:
    """``f(x)`` without touching the problem's counters (for monitoring only)."""
    saved = problem.counters.as_dict()
    try:
        xt = torch.as_tensor(np.asarray(x, dtype=np.float64)) if not isinstance(x, torch.Tensor) else x
        return float(problem.value(xt))
    finally:
        for k, v in saved.items():
            setattr(problem.counters, k, v)


def starting_point(problem: Problem) -> torch.Tensor:
    """The problem's customary ``x0``, else the origin."""
    if problem.x0 is not None:
        return problem.x0.clone()
    return torch.zeros(problem.n, dtype=problem.dtype)


def stop_reason(mon: Any, error: str | None, f_end: float | None, wall: float, target: float) -> str:
    """Why a timed run ended: ``"target"``, ``"time_limit"``, ``"error"`` or ``"solver"`` (it stopped on its
    own). In the last case its final value ``f_end`` may still meet the target (checked untimed), and the
    monitor (``reached``, ``timed_out``, ``rel``, ``time_to_target``, ``f_last``) is updated to say so."""
    if mon.reached:
        return "target"
    if mon.timed_out:
        return "time_limit"
    if error is not None:
        return "error"
    if f_end is not None:
        mon.f_last = float(f_end)
        if mon.rel(float(f_end)) <= target:
            mon.reached, mon.time_to_target = True, wall
    return "solver"


class TargetMonitor:
    """The shared stopping rule and clock: the callback every solver receives.

    ``start()`` starts the clock. Each call records ``(time, iteration, relative suboptimality)``,
    with the time spent inside the call itself excluded, and raises ``StopIteration`` once the target
    is reached or ``time_limit`` seconds of solver time have passed.
    """

    def __init__(self, problem: Problem, f_star: float, f0: float, target: float, time_limit: float) -> None:
        if not f0 > f_star:
            raise ValueError(
                f"problem '{problem.name}': f(x0) = {f0!r} is not above f* = {f_star!r}; "
                "relative suboptimality is undefined"
            )
        self.problem = problem
        self.f_star = f_star
        self.f0 = f0
        self.target = target
        self.time_limit = time_limit
        self.k = 0
        self.curve_time: list[float] = [0.0]
        self.curve_iter: list[int] = [0]
        self.curve_rel: list[float] = [1.0]
        self.reached = False
        self.timed_out = False
        self.time_to_target = math.inf
        self.counts_at_stop: dict[str, int] | None = None
        self.f_last = f0
        self._t0 = 0.0
        self._paused = 0.0
        self._base: dict[str, int] = {}

    def start(self) -> None:
        self._base = self.problem.counters.as_dict()
        self._paused = 0.0
        self._t0 = time.perf_counter()

    def elapsed(self) -> float:
        """Solver time so far (monitoring excluded)."""
        return time.perf_counter() - self._t0 - self._paused

    def counts(self) -> dict[str, int]:
        now = self.problem.counters.as_dict()
        return {k: now[k] - self._base.get(k, 0) for k in COUNTERS}

    def rel(self, f: float) -> float:
        return (f - self.f_star) / (self.f0 - self.f_star)

    def __call__(self, intermediate_result: Any) -> None:
        t_in = time.perf_counter()
        elapsed = t_in - self._t0 - self._paused
        counts = self.counts()
        self.k += 1
        f = intermediate_result.get("fun") if hasattr(intermediate_result, "get") else None
        if f is None:
            f = uncounted_value(self.problem, intermediate_result["x"])
        f = float(f)
        self.f_last = f
        rel = self.rel(f)
        self.curve_time.append(elapsed)
        self.curve_iter.append(self.k)
        self.curve_rel.append(rel)
        stop = False
        if rel <= self.target:
            self.reached, self.time_to_target, stop = True, elapsed, True
        elif elapsed > self.time_limit:
            self.timed_out, stop = True, True
        if stop:
            self.counts_at_stop = counts
        self._paused += time.perf_counter() - t_in
        if stop:
            raise StopIteration


# ---------------------------------------------------------------------------------------- one run
def run_once(
    problem: Problem,
    solver: Solver | str,
    *,
    x0: torch.Tensor | None = None,
    f_star: float | None = None,
    f0: float | None = None,
    target: float = DEFAULT_TARGET,
    time_limit: float = DEFAULT_TIME_LIMIT,
) -> dict[str, Any]:
    """One run of ``solver`` on ``problem`` under the target stopping rule; returns one record (no provenance).

    ``f_star`` defaults to ``problem.f_star``, ``f0`` to ``f(x0)`` (evaluated uncounted, before the clock).
    """
    solver = get_solver(solver) if isinstance(solver, str) else solver
    x0 = starting_point(problem) if x0 is None else problem.check_x(x0, "x0")
    f_star = problem.f_star if f_star is None else float(f_star)
    if f_star is None:
        raise ValueError(f"problem '{problem.name}' has no f_star; time to target needs a certified optimum")
    f0 = uncounted_value(problem, x0) if f0 is None else float(f0)
    mon = TargetMonitor(problem, f_star, f0, target, time_limit)
    error = None
    status, message = None, ""
    mon.start()
    try:
        res = solver.solve(problem, x0, mon)
        status, message = res.get("status"), str(res.get("message", ""))
        f_end = res.get("fun")
    except StopIteration:  # a solver that lets the callback's StopIteration escape
        f_end = None
    except Exception as exc:  # a solver failure is a failed run, not a crashed comparison
        error = f"{type(exc).__name__}: {exc}"
        f_end = None
    wall = mon.elapsed()
    counts = mon.counts_at_stop if mon.counts_at_stop is not None else mon.counts()
    stopped_by = stop_reason(mon, error, f_end, wall, target)
    return {
        "objective_name": OBJECTIVE_NAME,
        "dataset_name": problem.name,
        "solver_name": solver.name,
        "solver_family": solver.family,
        "target": target,
        "reached": mon.reached,
        "stopped_by": stopped_by,
        "time": mon.time_to_target if mon.reached else math.inf,
        "wall_time": wall,
        "objective_value": mon.f_last,
        "rel_suboptimality": mon.rel(mon.f_last),
        "iterations": mon.curve_iter[-1],
        **counts,
        "status": status,
        "message": error or message,
        "f_star": f_star,
        "f0": f0,
        "dimension": problem.n,
        "solver_options": {k: v for k, v in solver.options.items()} | (
            {"oracle": solver.oracle} if solver.oracle else {}),
        "curve_time": list(mon.curve_time),
        "curve_iter": list(mon.curve_iter),
        "curve_rel": list(mon.curve_rel),
    }


# ---------------------------------------------------------------------------------------- the comparison
def run_comparison(
    problems: Mapping[str, Problem | Callable[[], Problem]] | Sequence[Problem],
    solver_names: Iterable[str] | None = None,
    *,
    target: float = DEFAULT_TARGET,
    repeats: int = DEFAULT_REPEATS,
    warmup: bool = True,
    time_limit: float = DEFAULT_TIME_LIMIT,
    warmup_limit: float = 1.0,
    repeat_budget: float | None = None,
    threads: int | None = None,
    progress: bool = False,
    on_problem: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every solver on every problem; return long-format records, one per timed repetition.

    ``problems`` maps a dataset name to a :class:`Problem` or a zero-argument constructor (built
    here, before any clock starts; its lazy ``f_star`` is also resolved before timing). All solvers
    of one problem run back to back in this process, so the optlib and scipy times they produce are
    measured under the same conditions. Solvers a problem cannot serve (a missing curvature) are
    skipped without a record.

    The warm-up run is cut off after ``warmup_limit`` seconds (its only purpose is to pay first-call
    costs, which come in the first iterations). With ``repeat_budget`` the timed repetitions of one
    (problem, solver) stop early, after at least one, once they have used that many seconds; the
    records say how many were taken. A run that misses the target is not repeated. ``threads`` fixes
    the thread count of torch and of numpy/scipy's BLAS for the whole comparison (see
    :func:`thread_limit`; ``None`` leaves the process's settings alone).
    """
    with thread_limit(threads):
        return _run_comparison(problems, solver_names, target=target, repeats=repeats, warmup=warmup,
                               time_limit=time_limit, warmup_limit=warmup_limit, repeat_budget=repeat_budget,
                               progress=progress, on_problem=on_problem)


def _run_comparison(problems, solver_names, *, target, repeats, warmup, time_limit, warmup_limit,
                    repeat_budget, progress, on_problem):
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not 0 < target < 1:
        raise ValueError(f"target must lie in (0, 1), got {target}")
    names = list(solver_names) if solver_names is not None else solvers()
    chosen = [get_solver(n) for n in names]
    items = list(problems.items()) if isinstance(problems, Mapping) else [(p.name, p) for p in problems]
    prov = provenance()
    records: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items) * len(chosen), desc="time to target", unit="run")
    for dataset, prob in items:
        problem = prob if isinstance(prob, Problem) else prob()
        if on_problem is not None:
            on_problem(dataset)
        f_star = problem.f_star
        x0 = starting_point(problem)
        f0 = uncounted_value(problem, x0)
        for solver in chosen:
            if bar is not None:
                bar.set_postfix_str(f"{dataset} / {solver.name}")
            if solver.skip_reason(problem) is not None:
                if bar is not None:
                    bar.update(1)
                continue
            kw = {"x0": x0, "f_star": f_star, "f0": f0, "target": target, "time_limit": time_limit}
            if warmup:
                run_once(problem, solver, **{**kw, "time_limit": min(time_limit, warmup_limit)})
            spent = 0.0
            for rep in range(repeats):
                if repeat_budget is not None and rep > 0 and spent >= repeat_budget:
                    break
                rec = run_once(problem, solver, **kw)
                spent += rec["wall_time"]
                rec["dataset_name"] = dataset
                rec["idx_rep"] = rep
                rec.update(prov)
                records.append(rec)
                if not rec["reached"]:
                    break  # a deterministic failure repeats itself; one record says so
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return records


# ---------------------------------------------------------------------------------------- reductions
def _key(rec: Mapping[str, Any]) -> tuple[str, str]:
    return rec["dataset_name"], rec["solver_name"]


def summarize(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (problem, solver): the median time over repetitions (``inf`` unless every one reached
    the target), the counters and curve of the median repetition, and the repetition count."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for rec in records:
        groups.setdefault(_key(rec), []).append(rec)
    rows = []
    for (dataset, solver), recs in groups.items():
        reached = all(r["reached"] for r in recs)
        times = sorted(float(r["time"]) for r in recs)
        median = statistics.median(times) if reached else math.inf
        mid = min(recs, key=lambda r: abs(float(r["time"]) - median) if reached else 0.0)
        row = {k: v for k, v in mid.items() if k != "idx_rep"}
        row.update({
            "dataset_name": dataset, "solver_name": solver, "reached": reached, "time": median,
            "time_min": times[0], "time_max": times[-1], "repetitions": len(recs),
        })
        rows.append(row)
    return rows


def time_to_target_table(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows per problem: best optlib and best scipy solver, their median times, and

        ratio = best optlib time / best scipy time     (< 1: optlib is faster)

    with failures counted as ``inf`` (ratio ``0`` if only scipy failed, ``inf`` if only optlib
    failed, ``nan`` if both did). ``times`` holds every solver's median time.
    """
    summary = summarize(records)
    by_problem: dict[str, dict[str, dict[str, Any]]] = {}
    for row in summary:
        by_problem.setdefault(row["dataset_name"], {})[row["solver_name"]] = row
    table = []
    for dataset, rows in by_problem.items():
        best: dict[str, tuple[str | None, float]] = {}
        for family in ("optlib", "scipy"):
            cands = [(r["time"], name) for name, r in rows.items() if r["solver_family"] == family]
            if cands:
                t, name = min(cands)
                best[family] = (name, t)
            else:
                best[family] = (None, math.inf)
        t_opt, t_sci = best["optlib"][1], best["scipy"][1]
        table.append({
            "problem": dataset,
            "dimension": next(iter(rows.values())).get("dimension"),
            "best_optlib": best["optlib"][0],
            "best_optlib_time": t_opt,
            "best_scipy": best["scipy"][0],
            "best_scipy_time": t_sci,
            "ratio": ratio(t_opt, t_sci),
            "times": {name: r["time"] for name, r in rows.items()},
            "iterations": {name: r["iterations"] for name, r in rows.items()},
        })
    return table


def ratio(t_optlib: float, t_scipy: float) -> float:
    """``t_optlib / t_scipy`` with failures as ``inf``: ``0`` if only scipy failed, ``nan`` if both did."""
    if math.isinf(t_optlib) and math.isinf(t_scipy):
        return math.nan
    if math.isinf(t_scipy):
        return 0.0
    if math.isinf(t_optlib):
        return math.inf
    return t_optlib / t_scipy


def cost_table(records: Iterable[Mapping[str, Any]], cost: str = "time") -> dict[str, dict[str, float]]:
    """``{problem: {solver: cost}}`` from the summaries, ``inf`` where the target was not reached; the
    input of :func:`scale.profiles.performance_profile` (``cost`` may be a counter or ``iterations``)."""
    out: dict[str, dict[str, float]] = {}
    for row in summarize(records):
        value = float(row[cost]) if row["reached"] else math.inf
        out.setdefault(row["dataset_name"], {})[row["solver_name"]] = value
    return out


def curve_rows(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """benchopt's on-disk shape: one row per curve point per (dataset, solver, repetition)."""
    rows = []
    for rec in records:
        for t, k, r in zip(rec["curve_time"], rec["curve_iter"], rec["curve_rel"], strict=True):
            rows.append({
                "objective_name": rec["objective_name"], "dataset_name": rec["dataset_name"],
                "solver_name": rec["solver_name"], "idx_rep": rec.get("idx_rep", 0),
                "time": t, "stop_val": k, "objective_value": rec["f_star"] + r * (rec["f0"] - rec["f_star"]),
                "rel_suboptimality": r,
            })
    return rows


# ---------------------------------------------------------------------------------------- report sections
def resolve_problems(names: Sequence[str], extra: Mapping[str, Callable[[], Problem]] | None = None
                     ) -> dict[str, Callable[[], Problem]]:
    """Constructors for ``names`` (from ``extra`` first, then :func:`named_problems`)."""
    known = {**named_problems(), **(extra or {})}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown problem(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return {n: known[n] for n in names}


def _has_f_star(ctor: Callable[[], Problem]) -> bool:
    try:
        return ctor().f_star is not None
    except Exception:  # a problem that cannot build or certify is left out of the full run
        return False


def problem_names(config: object) -> list[str]:
    """The report's problems: ``config.problems``, or every library problem with a certified optimum."""
    names = getattr(config, "problems", None)
    if names is None:
        extra = getattr(config, "extra_problems", None) or {}
        names = [n for n, ctor in {**named_problems(), **extra}.items() if _has_f_star(ctor)]
    return list(names)


def check_settings(config: object) -> None:
    """Refuse unknown solver or problem names before the report starts measuring."""
    for name in getattr(config, "solvers", None) or ():
        get_solver(name)
    if getattr(config, "problems", None) is not None:
        resolve_problems(config.problems, getattr(config, "extra_problems", None))


register_listing("problems", lambda: list(named_problems()))
register_listing("solvers", solvers)


def comparison(ctx: ReportContext) -> list[dict[str, Any]]:
    """The time-to-target records of the report's settings (run once per report, shared by its sections)."""
    if "records" not in ctx.cache:
        cfg = ctx.config
        problems = resolve_problems(problem_names(cfg), getattr(cfg, "extra_problems", None))
        ctx.cache["records"] = run_comparison(
            problems, cfg.solvers, target=cfg.target, repeats=cfg.repeats, time_limit=cfg.time_limit,
            repeat_budget=cfg.repeat_budget, threads=cfg.threads or None, progress=cfg.progress,
        )
    return ctx.cache["records"]


def write_raw_results(ctx: ReportContext, records: list[dict[str, Any]]) -> list[str]:
    """``results.json`` (benchopt's long format) and ``curves.csv`` beside the report."""
    (ctx.out / "results.json").write_text(json.dumps(json_safe(records), indent=1))
    rows = curve_rows(records)
    with open(ctx.out / "curves.csv", "w", newline="") as fh:
        if rows:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return ["results.json", "curves.csv"]


@register_section("time-to-target", "Time to target: optlib against scipy", order=20, check=check_settings)
def section_time_to_target(ctx: ReportContext) -> SectionResult:
    records = comparison(ctx)
    target = ctx.config.target
    table = time_to_target_table(records)
    summary = summarize(records)
    head = (
        f"Wall-clock time until the relative suboptimality (f(x_k) − f*)/(f(x0) − f*) first drops to "
        f"{target:g} (benchopt's relative suboptimality; AlgoPerf's time-to-target). Every solver starts "
        "from the same x0, gets the same counted oracles, and is stopped by the same callback; its own "
        "tolerances are set tight so that the callback stops it. Median over the timed repetitions after "
        "one warm-up run; the clock pauses inside the callback. Ratio = best optlib time / best scipy "
        "time (below 1: optlib is faster). Both sides ran in this process, one after the other.\n\n"
    )
    def best(name: str | None, t: float) -> str:
        return "none reached the target" if name is None or math.isinf(t) else f"{name} ({fmt_time(t)})"

    main_rows = [
        [r["problem"], fmt_num(r["dimension"]), best(r["best_optlib"], r["best_optlib_time"]),
         best(r["best_scipy"], r["best_scipy_time"]), fmt_num(r["ratio"], 3)]
        for r in table
    ]
    text = head + md_table(["problem", "n", "best optlib", "best scipy", "ratio optlib/scipy"], main_rows)
    solver_order = [s for s in solvers() if any(s in r["times"] for r in table)]
    wide = [[r["problem"], *(fmt_time(r["times"][s]) if s in r["times"] else "—" for s in solver_order)]
            for r in table]
    text += "\n\nEvery solver's median time to target (✗: target not reached; —: not applicable):\n\n"
    text += md_table(["problem", *solver_order], wide)
    text += "\n\nPer run: iterations (callback calls), oracle calls up to the target, repetitions timed.\n"
    for r in table:
        rows = []
        for s in summary:
            if s["dataset_name"] != r["problem"]:
                continue
            rows.append([
                s["solver_name"], "yes" if s["reached"] else f"no ({s['stopped_by']})",
                fmt_time(s["time"]), f"{fmt_time(s['time_min'])} – {fmt_time(s['time_max'])}" if s["reached"] else "",
                s["iterations"], s["nfev"], s["njev"], s["nhev"], s["nhvp"], s["repetitions"],
            ])
        text += f"\n**{r['problem']}**\n\n" + md_table(
            ["solver", "reached", "median", "min – max", "iter", "nfev", "njev", "nhev", "nhvp", "reps"], rows) + "\n"
    text += "\nSolvers and their options:\n\n" + "\n".join(
        f"- `{s}`: {get_solver(s).description}; options `{_options(get_solver(s))}`"
        for s in solver_order
    )
    return SectionResult(text, files=write_raw_results(ctx, records))


def _options(solver: Solver) -> str:
    opts = dict(solver.options)
    if solver.oracle:
        opts["second-order oracle"] = solver.oracle
    return ", ".join(f"{k}={v}" for k, v in opts.items())


@register_section("convergence", "Convergence: relative suboptimality against time and iterations", order=21)
def section_convergence(ctx: ReportContext) -> SectionResult:
    plt = pyplot()
    summary = summarize(comparison(ctx))
    target = ctx.config.target
    styles = solver_styles(sorted({r["solver_name"] for r in summary}),
                           {r["solver_name"]: r["solver_family"] for r in summary})
    figures, parts = [], []
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for row in summary:
        by_problem.setdefault(row["dataset_name"], []).append(row)
    for problem, rows in by_problem.items():
        fig, (ax_t, ax_k) = plt.subplots(1, 2, figsize=(11.0, 5.0))
        for row in rows:
            st = styles[row["solver_name"]]
            rel = [max(v, 1e-17) for v in row["curve_rel"]]
            t = row["curve_time"]
            kw = {"marker": ".", "markersize": 3, "linewidth": 1.3, "label": row["solver_name"], **st}
            ax_t.plot(t[1:], rel[1:], **kw)
            ax_k.plot(row["curve_iter"], rel, **kw)
        for ax in (ax_t, ax_k):
            ax.set_yscale("log")
            ax.axhline(target, color="k", linewidth=0.8, linestyle=":")
            ax.grid(True, which="major", alpha=0.3)
            ax.set_ylabel("(f − f*) / (f(x0) − f*)")
        ax_t.set_xscale("log")
        ax_t.set_xlabel("time (s, log scale; median run)")
        ax_k.set_xscale("symlog", linthresh=10)
        ax_k.set_xlim(left=0)
        ax_k.set_xlabel("iteration (linear to 10, log beyond)")
        handles, labels = ax_k.get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=7, frameon=False)
        fig.suptitle(f"{problem}: optlib solid, scipy dashed; dotted line = target {target:g}")
        fig.tight_layout(rect=(0, 0.05 + 0.035 * math.ceil(len(labels) / 4), 1, 1))
        path, rel_path = ctx.figure(f"convergence_{problem}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        figures.append(rel_path)
        parts.append(f"![{problem}]({rel_path})")
    text = (
        "Relative suboptimality of the median timed run of each solver, against wall-clock time (left) and "
        "iterations (right); runs end at the target. scipy's trust-region methods count a rejected step as "
        "an iteration; optlib's methods count accepted steps only (their rejected trials cost oracle calls, "
        "shown in the tables above).\n\n" + "\n\n".join(parts)
    )
    return SectionResult(text, figures)


@register_section("profile", "Performance profile", order=22)
def section_profile(ctx: ReportContext) -> SectionResult:
    records = comparison(ctx)
    costs = cost_table(records, "time")
    families = {r["solver_name"]: r["solver_family"] for r in records}
    path, rel_path = ctx.figure("performance_profile_time.png")
    profiles.plot_performance_profile(costs, path, title="Time to target", families=families)
    names = profiles.solver_names(costs)
    score = profiles.integrated_score(costs)
    rows = []
    for s in sorted(names, key=lambda s: -score[s]):
        rows.append([s, fmt_num(profiles.rho(costs, s, 1.0), 2), fmt_num(profiles.rho(costs, s, 2.0), 2),
                     fmt_num(profiles.rho(costs, s, math.inf), 2), fmt_num(score[s], 3)])
    text = (
        f"Dolan–Moré performance profile (Math. Program. 91, 2002) of time to target over the {len(costs)} "
        "problems of this run: ρ_s(τ) is the share of problems on which solver s is within a factor τ of the "
        "fastest; failures count as ∞. ρ(1) = share of wins, ρ(∞) = share solved. The score is AlgoPerf's "
        "integrated profile over τ ∈ [1, 4] (1 = fastest everywhere). Profiles depend on the solver set: "
        "adding or removing a solver can reorder the others.\n\n"
        f"![performance profile]({rel_path})\n\n"
        + md_table(["solver", "ρ(1)", "ρ(2)", "ρ(∞)", "score"], rows)
    )
    return SectionResult(text, [rel_path])
