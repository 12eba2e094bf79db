"""Test problems with hand-written oracles, known constants and certified optima.

Every constructor returns an :class:`optlib.Problem` in float64 with

* fast hand-written torch oracles (``value_and_grad``, ``hess``, often ``hvp``), each checked
  against :mod:`torch.func` autograd in ``tests/test_problems.py``;
* problem-specific curvatures in ``problem.curvatures`` (Böhning bound, empirical Fisher,
  Gauss-Newton variants);
* ``problem.constants`` (:class:`optlib.Constants`) with what is known (``L``, ``L2``, ``mu``, ``M``,
  ``convex``), each derived in the module docstring and summarized in ``constants.notes``;
* a customary start ``problem.x0`` and, where available, a certified optimum ``f_star``/``x_star``
  (closed form, or an independent plain-numpy Newton solve computed lazily, once per process).

This is the only problem library of the project: the theorem checks of :mod:`optlib.theory` build their
problems here too (some constructors have options for them, such as ``rosenbrock(x0=...)``,
``chebyshev_rosenbrock(scale=...)``, ``quadratic(x0_scale=...)`` and ``synthetic_logistic(signal=...)``;
:func:`lse_cubic` and :func:`pseudo_huber` are convex problems with derived Hessian Lipschitz constants).
The layered (block-matrix) problems of Muon and Drop-Muon are in :mod:`optlib.problems.layered`; the
closed-form least-squares residual pairs ``(r, J)`` of the Levenberg–Marquardt and Gauss–Newton checks in
:mod:`optlib.problems.residual_pairs`; the seeded small MLPs and batches of the curvature checks in
:mod:`optlib.problems.curvature_nets`; the seeded ridge/logistic/softmax design matrices of the unlearning
checks in :mod:`optlib.problems.unlearning_data`. The plain torch functions of the user-path benchmark
(no hand-written oracles; :class:`UserPathProblem`, :func:`user_path_problems`) are in
:mod:`optlib.problems.user_path`.

Data come only from scikit-learn's bundled loaders or seeded numpy generators.

:func:`library` maps the names of the standard benchmark set to zero-argument constructors.
"""

from __future__ import annotations

from collections.abc import Callable

from ..problem import Problem
from ._data import BINARY_DATASETS, MULTICLASS_DATASETS
from .block_networks import BlockNetwork, block_cnn, block_mlp
from .cubic import cubic_lipschitz
from .curvature_nets import seeded_batches, seeded_mlp, seeded_psd_system
from .layered import (
    LayeredProblem,
    concat_blocks,
    deep_linear_network,
    exponential_blocks,
    layered_quadratic,
    log_sum_exp_blocks,
)
from .log_sum_exp import log_sum_exp
from .logistic import logistic_regression, synthetic_logistic
from .lse_cubic import lse_cubic
from .nonlinear import nonlinear_equations
from .pseudo_huber import pseudo_huber
from .quadratic import quadratic, quadratic_from_matrix, quadratic_with_condition
from .residual_pairs import (
    cubic_pair,
    cubic_pair_jac,
    large_residual,
    rosenbrock_residual,
    rosenbrock_residual_jac,
    saturating_residual,
    saturating_residual_jac,
)
from .rosenbrock import chebyshev_rosenbrock, rosenbrock, rosenbrock_nle
from .softmax import softmax_regression
from .unlearning_data import seeded_logistic_data, seeded_ridge_data, seeded_softmax_data
from .user_path import (
    UserPathProblem,
    broyden_tridiagonal,
    chained_rosenbrock,
    extended_powell_singular,
    log_cosh_regression,
    logistic_l2,
    poisson_regression,
    pseudo_huber_regression,
    softmax_l2,
    trigonometric,
    user_path_problems,
    variably_dimensioned,
)

__all__ = [
    "BlockNetwork",
    "UserPathProblem",
    "block_cnn",
    "broyden_tridiagonal",
    "chained_rosenbrock",
    "block_mlp",
    "BINARY_DATASETS",
    "MULTICLASS_DATASETS",
    "LayeredProblem",
    "chebyshev_rosenbrock",
    "concat_blocks",
    "cubic_lipschitz",
    "cubic_pair",
    "cubic_pair_jac",
    "deep_linear_network",
    "exponential_blocks",
    "extended_powell_singular",
    "large_residual",
    "layered_quadratic",
    "library",
    "log_sum_exp",
    "log_cosh_regression",
    "log_sum_exp_blocks",
    "logistic_l2",
    "logistic_regression",
    "lse_cubic",
    "nonlinear_equations",
    "poisson_regression",
    "pseudo_huber",
    "pseudo_huber_regression",
    "quadratic",
    "quadratic_from_matrix",
    "quadratic_with_condition",
    "rosenbrock",
    "rosenbrock_nle",
    "rosenbrock_residual",
    "rosenbrock_residual_jac",
    "saturating_residual",
    "saturating_residual_jac",
    "seeded_batches",
    "seeded_logistic_data",
    "seeded_mlp",
    "seeded_psd_system",
    "seeded_ridge_data",
    "seeded_softmax_data",
    "softmax_l2",
    "softmax_regression",
    "synthetic_logistic",
    "trigonometric",
    "user_path_problems",
    "variably_dimensioned",
]


def library() -> dict[str, Callable[[], Problem]]:
    """The standard benchmark set: name -> zero-argument constructor (each call builds a new Problem).

    Each problem's ``name`` equals its key here.
    """
    return {
        "logreg-breast_cancer": lambda: logistic_regression("breast_cancer"),
        "logreg-digits_binary": lambda: logistic_regression("digits_binary"),
        "logreg-synthetic": lambda: synthetic_logistic(),
        "logreg-wine_binary": lambda: logistic_regression("wine_binary"),
        "logreg-iris_binary": lambda: logistic_regression("iris_binary"),
        "softmax-digits": lambda: softmax_regression("digits"),
        "softmax-wine": lambda: softmax_regression("wine"),
        "log-sum-exp": lambda: log_sum_exp(),
        "rosenbrock": lambda: rosenbrock(),
        "chebyshev-rosenbrock": lambda: chebyshev_rosenbrock(),
        "nonlinear-equations": lambda: nonlinear_equations(),
        "cubic-lipschitz": lambda: cubic_lipschitz(),
        "lse-cubic": lambda: lse_cubic(),
        "pseudo-huber": lambda: pseudo_huber(),
        "quadratic-cond1e3": lambda: quadratic_with_condition(100, 1e3, seed=0),
    }

