"""Levenberg–Marquardt and Gauss–Newton against scipy on the NIST StRD problems (asv).

* ``TimeSolve.time_solve``: wall time of one solve from a NIST start, for every solver of
  ``scale.bench.least_squares`` (``optlib-lm``, ``optlib-lm-factor1``, ``optlib-gn``, ``scipy-lm``,
  ``scipy-leastsq-factor1``, ``scipy-trf``), on one problem per difficulty level and one with a long run.
  Data and start are loaded in ``setup``; the timed body is the solve only.
* ``Ratio.track_time_ratio_lm_over_scipy_lm``: optlib-lm time / scipy-lm time per (problem, start),
  both measured in the same process and the same run (``scale.bench.least_squares.run_benchmark``,
  median of interleaved repeats after a warm-up). Below 1 means optlib is faster. Absolute times on
  shared machines move with the load; this ratio is the number to watch.
* ``Quality.track_*``: log relative error to the certified parameters, ``nfev`` and ``njev`` per
  (problem, start, solver); ``Summary.track_*``: how many (problem, start) pairs each solver reaches
  (LRE >= 4) and on how many optlib-lm needs no more evaluations than scipy-lm.

The table behind ``Ratio``, ``Quality`` and ``Summary`` runs once per ``asv run`` (a shared
``setup_cache``), single-threaded in torch and in the BLAS pools (``scale.bench.common.thread_limit``); the
timed solves of ``TimeSolve`` likewise (``scale.bench.common.pin_threads``).
"""

from __future__ import annotations

import math

from ._commit import compute_or_skip, requires, skip_if_absent

nist = requires("optlib.problems.nist")
bench = requires("scale.bench.least_squares")
common = requires("scale.bench.common")

PROBLEMS = [
    "Misra1a", "Chwirut2", "Chwirut1", "Lanczos3", "Gauss1", "Gauss2", "DanWood", "Misra1b",
    "Kirby2", "Hahn1", "Nelson", "MGH17", "Lanczos1", "Lanczos2", "Gauss3", "Misra1c", "Misra1d", "Roszman1", "ENSO",
    "MGH09", "Thurber", "BoxBOD", "Rat42", "MGH10", "Eckerle4", "Rat43", "Bennett5",
]
TIMED_PROBLEMS = ["Misra1a", "Kirby2", "Thurber", "MGH10"]
STARTS = [1, 2]
# The solvers by the names their histories are keyed by (scale.bench.least_squares.SOLVERS at HEAD; a test
# keeps them equal).
SOLVERS = ["optlib-lm", "optlib-lm-factor1", "optlib-gn", "scipy-lm", "scipy-leastsq-factor1", "scipy-trf"]

THREADS = 1


def _nist_table():
    """One pass over every problem, start and solver, reduced to plain numbers (pickled by asv)."""
    cfg = bench.Config(problems=tuple(PROBLEMS), repeats=3, threads=THREADS, progress=False)
    result = bench.run_benchmark(cfg)
    runs = {(r["problem"], r["start"], r["solver"]): r for r in result["runs"]}
    summary = result["summary"]
    return {
        "runs": {k: {key: v[key] for key in ("lre", "nfev", "njev", "time")} for k, v in runs.items()},
        "reached": {s: v["reached"] for s, v in summary["solvers"].items()},
        "nfev_le_scipy": summary["lm_vs_scipy_lm"]["nfev_le_scipy"],
        "both_reached": summary["lm_vs_scipy_lm"]["both_reached"],
    }


def _table():
    return compute_or_skip(_nist_table)


_table.timeout = 1200


class TimeSolve:
    """Wall time of one solve, one solver on one (problem, start)."""

    params = (TIMED_PROBLEMS, STARTS, SOLVERS)
    param_names = ["problem", "start", "solver"]
    timeout = 120
    number = 1
    repeat = (3, 10, 20.0)
    warmup_time = 0.0

    def setup(self, problem, start, solver):
        common.pin_threads(THREADS)
        skip_if_absent(bench.SOLVERS, solver)
        self.cfg = bench.Config(problems=(problem,))
        self.problem = nist.load_nist(problem)
        self.x0 = self.problem.start(start)
        # asv's warm-up is switched off; one untimed solve here pays the first-call costs instead.
        bench._solve(solver, self.problem, self.x0, self.cfg)

    def time_solve(self, problem, start, solver):
        bench._solve(solver, self.problem, self.x0, self.cfg)


class Ratio:
    """optlib-lm / scipy-lm time per solve, measured in one process."""

    params = (PROBLEMS, STARTS)
    param_names = ["problem", "start"]
    setup_cache = staticmethod(_table)
    timeout = 1200

    def setup(self, cache, problem, start):
        skip_if_absent(cache)

    def track_time_ratio_lm_over_scipy_lm(self, cache, problem, start):
        ours = cache["runs"].get((problem, start, "optlib-lm"))
        ref = cache["runs"].get((problem, start, "scipy-lm"))
        if ours is None or ref is None:
            return math.nan
        return ours["time"] / ref["time"]

    track_time_ratio_lm_over_scipy_lm.unit = "optlib/scipy"
    track_time_ratio_lm_over_scipy_lm.better = "lower"


class Quality:
    """Accuracy (LRE) and evaluations per solve."""

    params = (PROBLEMS, STARTS, SOLVERS)
    param_names = ["problem", "start", "solver"]
    setup_cache = staticmethod(_table)
    timeout = 1200

    def setup(self, cache, problem, start, solver):
        skip_if_absent(cache)

    @staticmethod
    def _get(cache, problem, start, solver, key):
        run = cache["runs"].get((problem, start, solver))
        if run is None or run[key] is None:
            return math.nan
        return run[key]

    def track_lre(self, cache, problem, start, solver):
        return self._get(cache, problem, start, solver, "lre")

    def track_nfev(self, cache, problem, start, solver):
        return self._get(cache, problem, start, solver, "nfev")

    def track_njev(self, cache, problem, start, solver):
        return self._get(cache, problem, start, solver, "njev")

    track_lre.unit = "digits"
    track_lre.better = "higher"
    track_nfev.unit = track_njev.unit = "calls"
    track_nfev.better = "lower"
    track_njev.better = "lower"


class Summary:
    """Counts over all 54 (problem, start) pairs."""

    setup_cache = staticmethod(_table)
    timeout = 1200

    def setup(self, cache):
        skip_if_absent(cache)

    def track_reached_optlib_lm(self, cache):
        return cache["reached"].get("optlib-lm", math.nan)

    def track_reached_scipy_lm(self, cache):
        return cache["reached"].get("scipy-lm", math.nan)

    def track_lm_nfev_le_scipy_lm(self, cache):
        return cache["nfev_le_scipy"]

    track_reached_optlib_lm.unit = track_reached_scipy_lm.unit = "pairs"
    track_reached_optlib_lm.better = "higher"
    track_reached_optlib_lm.factor = 1.0  # a count: any drop is a regression
    track_reached_scipy_lm.better = "none"
    track_lm_nfev_le_scipy_lm.unit = "pairs"
    track_lm_nfev_le_scipy_lm.better = "higher"
    track_lm_nfev_le_scipy_lm.factor = 1.0  # a count: any drop is a regression
