"""The user path (asv): plain torch functions, default options, optlib against pytorch-minimize and scipy.

* ``Ratio.track_ratio_optlib_over_best_peer``: per problem of ``optlib.problems.user_path_problems()``, the
  best optlib time to the relative suboptimality (f - f*)/max(1, |f*|) <= 1e-8 divided by the best time of
  pytorch-minimize's and scipy's solvers, all measured in one process by ``scale.bench.user_path.run_benchmark``
  (median of repetitions after a warm-up; below 1: optlib is faster; inf: only optlib failed; 0: only the
  peers failed; NaN: nobody reached the target).
* ``Ratio.track_geometric_mean_ratio``: the geometric mean of those ratios over the problems both sides solved
  (the reported target is <= 0.5).

The comparison runs once per ``asv run`` (a shared ``setup_cache``), single-threaded in torch and the BLAS
pools (``scale.bench.common.pin_threads``), at the full problem sizes with three repetitions
(with ``OPTLIB_BENCH_QUICK=1``, as ``make bench-quick`` sets it: the quick sizes, one repetition).
"""

from __future__ import annotations

import math
import os

from optlib.problems import user_path_problems
from scale.bench import user_path
from scale.bench.common import pin_threads

THREADS = 1
QUICK_ENV = "OPTLIB_BENCH_QUICK"  # set by `make bench-quick`: quick sizes, one repetition
PROBLEMS = list(user_path_problems())


def _compare_all():
    """One run of the whole suite, reduced to plain numbers (pickled by asv)."""
    pin_threads(THREADS)
    if os.environ.get(QUICK_ENV):  # `make bench-quick`: a smoke run of the same code on the quick sizes
        cfg = user_path.Config(size="quick", repeats=1, time_limit=10.0, threads=THREADS, progress=False, plot=False)
    else:
        cfg = user_path.Config(repeats=3, repeat_budget=5.0, time_limit=30.0, threads=THREADS, progress=False,
                               plot=False)
    result = user_path.run_benchmark(cfg)
    return {
        "ratio": {row["problem"]: row["ratio"] for row in result["table"]},
        "geometric_mean": result["summary"]["geometric_mean_ratio"],
    }


_compare_all.timeout = 1800


class Ratio:
    """best optlib / best peer time to target, per problem, and their geometric mean."""

    params = (PROBLEMS,)
    param_names = ["problem"]
    setup_cache = staticmethod(_compare_all)
    timeout = 1800

    def track_ratio_optlib_over_best_peer(self, cache, problem):
        return cache["ratio"].get(problem, math.nan)

    track_ratio_optlib_over_best_peer.unit = "optlib/peer"


class GeometricMean:
    """The geometric mean of the per-problem ratios (problems both sides solved)."""

    setup_cache = staticmethod(_compare_all)
    timeout = 1800

    def track_geometric_mean_ratio(self, cache):
        return cache["geometric_mean"]

    track_geometric_mean_ratio.unit = "optlib/peer"
