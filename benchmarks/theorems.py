"""The theorem table of every family (asv): how many statements hold, and how close each family's runs come
to their bounds.

* ``TheoremTable.track_share_holding``: the share of a family's checks that hold (1 when all do). A drop is a
  broken algorithm or a broken check; either is a regression.
* ``TheoremTable.track_worst_margin``: the largest ``measured / bound`` over the family's checks whose bound is
  an upper bound (below 1 everywhere when every check holds with room). It moves when an algorithm gets closer
  to, or further from, what its theorem allows.

The checks are the functions the tests in ``tests/theorems/`` and the report's theorem table call
(:data:`optlib.theory.FAMILY_TABLES`), in their quick configuration, computed once per ``asv run``.
"""

from __future__ import annotations

import math

from ._commit import compute_or_skip, requires, skip_if_absent

theory = requires("optlib.theory")
common = requires("scale.bench.common")

THREADS = 1
DEFAULT = "measured <= bound*(1+slack)"  # the checks whose bound is an upper bound on the measured value
# The families by the names their histories are keyed by (optlib.theory.FAMILY_TABLES at HEAD; a test keeps
# the two equal). A family an older commit does not have is skipped there.
FAMILIES = ["regularized-newton", "drop-muon", "least-squares", "curvature", "unlearning", "bilevel", "drift"]


def _theorem_tables():
    common.pin_threads(THREADS)
    out = {}
    for family, table in theory.FAMILY_TABLES.items():
        try:
            checks = table(quick=True)
        except Exception as exc:  # noqa: BLE001 - one family's failure is recorded for it alone (setup raises)
            out[family] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        ratios = [c.measured / c.bound for c in checks
                  if isinstance(c.measured, (int, float)) and isinstance(c.bound, (int, float))
                  and c.bound > 0 and math.isfinite(c.measured) and math.isfinite(c.bound)
                  and (c.details or {}).get("comparison", DEFAULT) == DEFAULT]
        out[family] = {"holding": sum(bool(c.holds) for c in checks) / len(checks),
                       "worst_margin": max(ratios) if ratios else math.nan}
    return out


def _tables():
    return compute_or_skip(_theorem_tables)


_tables.timeout = 900


class TheoremTable:
    params = [FAMILIES]
    param_names = ["family"]
    setup_cache = staticmethod(_tables)
    timeout = 900

    def setup(self, cache, family):
        skip_if_absent(cache, family)
        if "error" in cache[family]:
            raise RuntimeError(f"the {family} table raised {cache[family]['error']}")

    def track_share_holding(self, cache, family):
        return cache[family]["holding"]

    track_share_holding.unit = "share of checks"
    track_share_holding.better = "higher"
    track_share_holding.factor = 1.0  # a count: any drop is a regression

    def track_worst_margin(self, cache, family):
        return cache[family]["worst_margin"]

    track_worst_margin.unit = "measured / bound"
    track_worst_margin.better = "lower"
