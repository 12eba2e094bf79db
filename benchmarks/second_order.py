"""Second-order methods against scipy on the logistic problems (asv).

* ``TimeToTarget.time_solve``: wall time of one run from ``x0`` until the relative suboptimality
  (f - f*)/(f(x0) - f*) reaches ``scale.bench.second_order.DEFAULT_TARGET``, for every optlib method and every
  scipy peer (``scale.bench.second_order.solvers()``), all on the same counted oracles. Data, f*, x0 and f(x0)
  are built in ``setup``; the timed body is the solve only.
* ``Ratio.track_ratio_optlib_over_scipy``: best optlib time / best scipy time to target, both measured
  in the same process and the same run (``scale.bench.second_order.run_comparison``, median of repetitions after a
  warm-up). Below 1 means optlib is faster. Absolute times on shared machines move with the load; this
  ratio is the number to watch.
* ``Quality.track_*``: iterations and oracle calls (f, gradient, Hessian, Hessian-vector products) to the
  target, per (problem, solver); NaN where the target was not reached.

The comparison behind ``Ratio`` and ``Quality`` runs once per ``asv run`` (a shared ``setup_cache``).
Everything runs single-threaded (torch and numpy/scipy's BLAS; see ``scale.bench.common.thread_limit``), as
the report does by default, so that a busy neighbour on a small machine slows all solvers alike.
"""

from __future__ import annotations

import math

from ._commit import compute_or_skip, requires, skip_if_absent

compare = requires("scale.bench.second_order")
common = requires("scale.bench.common")

# The problems and solvers by the names their histories are keyed by (scale.bench.second_order's
# LOGISTIC_PROBLEMS and solvers() at HEAD; a test keeps them equal). Those an older commit lacks are skipped.
PROBLEMS = ["logreg-breast_cancer", "logreg-digits_binary", "logreg-synthetic"]
SOLVERS = [
    "optlib:grad-norm-newton[exact]", "optlib:grad-norm-newton[cg]", "optlib:grad-norm-newton[bohning]",
    "optlib:cubic-newton", "optlib:cubic-newton[lazy]", "optlib:super-newton", "optlib:regularized-newton",
    "scipy:trust-ncg", "scipy:trust-exact", "scipy:trust-krylov", "scipy:Newton-CG", "scipy:trust-ncg[hess]",
    "scipy:trust-krylov[hess]", "scipy:Newton-CG[hess]", "scipy:L-BFGS-B",
]

THREADS = 1
_BUILT: dict = {}


def _problem(name):
    """Build (once per process) a problem with its certified optimum resolved."""
    if name not in _BUILT:
        problem = compare.named_problems()[name]()
        problem.f_star  # noqa: B018 - the lazy certificate is computed here, outside any timing
        _BUILT[name] = problem
    return _BUILT[name]


def _comparison():
    """One comparison of every solver on every problem the commit has, reduced to plain numbers (pickled)."""
    problems = [name for name in PROBLEMS if name in compare.LOGISTIC_PROBLEMS]
    records = compare.run_comparison(
        {name: (lambda name=name: _problem(name)) for name in problems},
        compare.solvers(), repeats=3, repeat_budget=5.0, time_limit=30.0, threads=THREADS,
    )
    table = compare.time_to_target_table(records)
    summary = compare.summarize(records)
    return {
        "ratio": {row["problem"]: row["ratio"] for row in table},
        "runs": {
            (row["dataset_name"], row["solver_name"]): {
                "reached": row["reached"],
                **{k: row[k] for k in ("iterations", *compare.COUNTERS)},
            }
            for row in summary
        },
    }


def _compare_all():
    return compute_or_skip(_comparison)


_compare_all.timeout = 900


class TimeToTarget:
    """Wall time from x0 to the target, one solver on one problem."""

    params = (PROBLEMS, SOLVERS)
    param_names = ["problem", "solver"]
    timeout = 300
    number = 1
    repeat = (1, 5, 30.0)
    warmup_time = 0.0

    def setup(self, problem, solver):
        common.pin_threads(THREADS)
        skip_if_absent(compare.LOGISTIC_PROBLEMS, problem)
        skip_if_absent(compare.solvers(), solver)
        self.problem = _problem(problem)
        self.solver = compare.get_solver(solver)
        reason = self.solver.skip_reason(self.problem)
        if reason is not None:  # e.g. no Böhning curvature: asv skips a combination whose setup raises this
            raise NotImplementedError(reason)
        self.x0 = compare.starting_point(self.problem)
        self.f_star = self.problem.f_star
        self.f0 = compare.uncounted_value(self.problem, self.x0)
        # asv's warm-up is switched off; one untimed run here pays the first-call costs instead.
        compare.run_once(self.problem, self.solver, x0=self.x0, f_star=self.f_star, f0=self.f0, time_limit=1.0)

    def time_solve(self, problem, solver):
        compare.run_once(self.problem, self.solver, x0=self.x0, f_star=self.f_star, f0=self.f0, time_limit=60.0)


class Ratio:
    """best optlib / best scipy time to target, measured in one process."""

    params = (PROBLEMS,)
    param_names = ["problem"]
    setup_cache = staticmethod(_compare_all)
    timeout = 900

    def setup(self, cache, problem):
        skip_if_absent(cache)
        skip_if_absent(cache["ratio"], problem)

    def track_ratio_optlib_over_scipy(self, cache, problem):
        return cache["ratio"][problem]

    track_ratio_optlib_over_scipy.unit = "optlib/scipy"
    track_ratio_optlib_over_scipy.better = "lower"


class Quality:
    """Iterations and oracle calls to the target (NaN: not reached or not applicable)."""

    params = (PROBLEMS, SOLVERS)
    param_names = ["problem", "solver"]
    setup_cache = staticmethod(_compare_all)
    timeout = 900

    def setup(self, cache, problem, solver):
        skip_if_absent(cache)
        skip_if_absent(cache["runs"], (problem, solver))

    @staticmethod
    def _get(cache, problem, solver, key):
        run = cache["runs"][(problem, solver)]
        if not run["reached"]:
            return math.nan
        return run[key]

    def track_iterations(self, cache, problem, solver):
        return self._get(cache, problem, solver, "iterations")

    def track_nfev(self, cache, problem, solver):
        return self._get(cache, problem, solver, "nfev")

    def track_njev(self, cache, problem, solver):
        return self._get(cache, problem, solver, "njev")

    def track_nhev(self, cache, problem, solver):
        return self._get(cache, problem, solver, "nhev")

    def track_nhvp(self, cache, problem, solver):
        return self._get(cache, problem, solver, "nhvp")

    track_iterations.unit = "iterations"
    track_iterations.better = "lower"
    track_nfev.unit = track_njev.unit = track_nhev.unit = track_nhvp.unit = "calls"
    track_nfev.better = "lower"
    track_njev.better = "lower"
    track_nhev.better = "lower"
    track_nhvp.better = "lower"
