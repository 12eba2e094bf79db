"""The user path (asv): plain torch functions, default options, optlib against pytorch-minimize and scipy.

* ``Ratio.track_ratio_optlib_over_best_peer``: per problem of ``optlib.problems.user_path_problems(quick=True)``,
  the best optlib time to the relative suboptimality (f - f*)/max(1, |f*|) <= 1e-8 divided by the best time
  of pytorch-minimize's and scipy's solvers, all measured in one process by
  ``scale.bench.user_path.run_benchmark`` (median of three runs after a warm-up; below 1: optlib is faster;
  inf: only optlib failed; 0: only the peers failed; NaN: nobody reached the target).
* ``GeometricMean.track_geometric_mean_ratio``: the geometric mean of those ratios over the problems both
  sides solved (the reported target is <= 0.5).

The comparison runs once per ``asv run`` (a shared ``setup_cache``, about 25 s), single-threaded in torch and
the BLAS pools (``scale.bench.common.pin_threads``), on the quick sizes of the problems (d up to 100; at these
sizes the per-iteration overhead of each library weighs most). The full sizes (d up to 1,000, about five
minutes with one repetition, too long to repeat at every commit of ``make dashboard``) are
``python -m scale.bench.user_path``, whose report the theory-to-scale report includes.
"""

from __future__ import annotations

from ._commit import compute_or_skip, requires, skip_if_absent

user_path = requires("scale.bench.user_path")
common = requires("scale.bench.common")

THREADS = 1
# The problems by the names their histories are keyed by (optlib.problems.user_path_problems(quick=True) at
# HEAD; a test keeps them equal).
PROBLEMS = [
    "logistic-breast_cancer", "poisson-diabetes", "logcosh-synthetic", "pseudohuber-synthetic", "softmax-wine",
    "rosenbrock-chained", "mgh13-powell-singular", "mgh25-variably-dimensioned", "mgh26-trigonometric",
    "mgh30-broyden-tridiagonal",
]


def _comparison():
    """One run of the whole suite on the quick sizes, reduced to plain numbers (pickled by asv)."""
    common.pin_threads(THREADS)
    cfg = user_path.Config(size="quick", repeats=3, repeat_budget=5.0, time_limit=10.0, threads=THREADS,
                           progress=False, plot=False)
    result = user_path.run_benchmark(cfg)
    return {
        "ratio": {row["problem"]: row["ratio"] for row in result["table"]},
        "geometric_mean": result["summary"]["geometric_mean_ratio"],
    }


def _compare_all():
    return compute_or_skip(_comparison)


_compare_all.timeout = 1800


class Ratio:
    """best optlib / best peer time to target, per problem, and their geometric mean."""

    params = (PROBLEMS,)
    param_names = ["problem"]
    setup_cache = staticmethod(_compare_all)
    timeout = 1800

    def setup(self, cache, problem):
        skip_if_absent(cache)
        skip_if_absent(cache["ratio"], problem)

    def track_ratio_optlib_over_best_peer(self, cache, problem):
        return cache["ratio"][problem]

    track_ratio_optlib_over_best_peer.unit = "optlib/peer"
    track_ratio_optlib_over_best_peer.better = "lower"


class GeometricMean:
    """The geometric mean of the per-problem ratios (problems both sides solved)."""

    setup_cache = staticmethod(_compare_all)
    timeout = 1800

    def setup(self, cache):
        skip_if_absent(cache)

    def track_geometric_mean_ratio(self, cache):
        return cache["geometric_mean"]

    track_geometric_mean_ratio.unit = "optlib/peer"
    track_geometric_mean_ratio.better = "lower"
