"""Bilevel optimization: ``min_x f(x, y*(x))`` with ``y*(x) = argmin_y g(x, y)``.

* :mod:`optlib.bilevel.problem` - :class:`BilevelProblem` (tensors or ``nn.Module`` parameters, counted oracles);
* :mod:`optlib.bilevel.hypergradient` - :func:`hypergradient` with the estimators ``exact``, ``cg``,
  ``neumann``, ``z-iterate`` and ``unroll``;
* :mod:`optlib.bilevel.driver` - one loop and a small rule per method: BO-REP (Hao, Gong & Liu, ICLR 2024)
  and the baselines.
"""

from .driver import (
    BOREP,
    MASOBA,
    METHODS,
    SABA,
    SLIP,
    SOBA,
    SUSTAIN,
    TTSA,
    BilevelOptimizer,
    BilevelRule,
    BilevelState,
    StocBiO,
    make_rule,
    run_bilevel,
)
from .hypergradient import ESTIMATORS, HypergradientEstimate, NegativeCurvatureError, hypergradient, largest_eigenvalue
from .problem import BilevelConstants, BilevelCounters, BilevelProblem

__all__ = [
    "BOREP",
    "MASOBA",
    "METHODS",
    "SABA",
    "SLIP",
    "SOBA",
    "SUSTAIN",
    "TTSA",
    "BilevelOptimizer",
    "BilevelRule",
    "BilevelState",
    "StocBiO",
    "make_rule",
    "run_bilevel",
    "ESTIMATORS",
    "BilevelConstants",
    "BilevelCounters",
    "BilevelProblem",
    "HypergradientEstimate",
    "NegativeCurvatureError",
    "hypergradient",
    "largest_eigenvalue",
]
