r"""Problems as a user writes them: plain torch functions ``f(x: Tensor) -> Tensor`` (a scalar), no oracles.

The rest of :mod:`optlib.problems` builds :class:`optlib.Problem` objects with hand-written gradients and
Hessians. The *user path* benchmark (``scale.bench.user_path``) asks a different question: how fast is each
library when all it gets is the objective, written in torch, with every derivative left to autodiff? This
module provides those objectives. Each constructor returns a :class:`UserPathProblem`: the torch callable
``fun``, the start ``x0``, the dimension ``d``, and a reference optimum ``f_star`` computed *independently of
the torch code* (closed form, or scipy solves on oracles written here in numpy), with ``f_star_source``
saying which.

Data come from scikit-learn's bundled loaders (no network) or from ``numpy.random.default_rng(seed)``;
features are standardized column by column (:func:`optlib.problems._data.standardize`). All arithmetic is
float64. The regularized data-fitting problems are strongly convex (every loss below is convex and the
ridge term :math:`\tfrac\lambda2\|w\|^2` adds :math:`\lambda I`), so their minimizer is unique and any
converged solve finds it.

Data-fitting problems (rows :math:`a_i^\top` of :math:`A \in \mathbb R^{n\times d}`, :math:`r_i = a_i^\top
w - y_i`):

* :func:`logistic_l2` -- L2-regularized logistic regression, :math:`\frac1n\sum_i\log(1 +
  e^{-y_ia_i^\top w}) + \frac\lambda2\|w\|^2`, :math:`y_i \in \{\pm1\}` (breast cancer: 30 features and an
  intercept column, ``d = 31``);
* :func:`poisson_regression` -- Poisson regression with the canonical log link (McCullagh & Nelder,
  *Generalized Linear Models*, 2nd ed., 1989, §6.2), negative log-likelihood up to the constant
  :math:`\sum\log y_i!`: :math:`\frac1n\sum_i(e^{a_i^\top w} - y_ia_i^\top w) + \frac\lambda2\|w\|^2`
  (diabetes: 10 features and an intercept, ``d = 11``, counts :math:`y_i \in [25, 346]`);
* :func:`log_cosh_regression` -- robust regression with the log-cosh loss, :math:`\frac1n\sum_i\log\cosh
  r_i + \frac\lambda2\|w\|^2`, written overflow-free as :math:`|r| + \log(1 + e^{-2|r|}) - \log 2`
  (seeded Gaussian design, Student-t noise with 1.5 degrees of freedom for outliers);
* :func:`pseudo_huber_regression` -- robust regression with the pseudo-Huber loss
  :math:`\delta^2(\sqrt{1 + (r/\delta)^2} - 1)` (Hartley & Zisserman, *Multiple View Geometry*, 2nd ed.,
  2004, A6.8), evaluated as :math:`r^2/(\sqrt{1 + (r/\delta)^2} + 1)` without cancellation;
* :func:`softmax_l2` -- multinomial logistic (softmax) regression, :math:`\frac1n\sum_i(\operatorname{lse}
  (W^\top a_i) - (W^\top a_i)_{c_i}) + \frac\lambda2\|W\|_F^2` with :math:`W \in \mathbb R^{p\times K}`
  flattened row-major (digits: 64 pixels and 10 classes, ``d = 640``).

Their ``f_star`` is the best of three scipy solves (:func:`scipy.optimize.minimize` with ``Newton-CG``
(``xtol = 1e-14``), ``trust-krylov`` (``gtol = 1e-12``) and ``L-BFGS-B`` (``ftol = 0``, ``gtol = 1e-12``))
on value, gradient and Hessian-vector product written in numpy from the formulas above. The three agree to
about 1e-14 relative on every problem here; the spread is stored in ``reference["spread"]``.

Test functions of Moré, Garbow & Hillstrom (1981), "Testing unconstrained optimization software", ACM
Trans. Math. Softw. 7(1):17--41 (MGH), as sums of squares :math:`f = \sum_i f_i(x)^2` with their
published residuals and standard starts:

* :func:`chained_rosenbrock` -- the chained (generalized) Rosenbrock function :math:`\sum_{i=1}^{d-1}
  100(x_{i+1} - x_i^2)^2 + (1 - x_i)^2`, the coupled version of MGH problem 21 (extended Rosenbrock,
  whose pairs are independent); for ``d = 2`` both are MGH problem 1. :math:`x^\star = \mathbf 1`,
  :math:`f^\star = 0` (closed form). Start :math:`x_{0,i} = i/(d + 1)`: from MGH's start of problem 21,
  :math:`(-1.2, 1, -1.2, 1, \dots)`, Newton-type methods (scipy's trust-exact among them) end in the
  chained function's local minimum near :math:`x_1 = -1` with :math:`f \approx 3.98`, which would turn the
  problem into a test of basins rather than speed.
* :func:`extended_powell_singular` -- MGH problem 13 (``d`` a multiple of 4): :math:`f_{4i-3} = x_{4i-3} +
  10x_{4i-2}`, :math:`f_{4i-2} = \sqrt5(x_{4i-1} - x_{4i})`, :math:`f_{4i-1} = (x_{4i-2} - 2x_{4i-1})^2`,
  :math:`f_{4i} = \sqrt{10}(x_{4i-3} - x_{4i})^2`; start :math:`(3, -1, 0, 1, \dots)`; :math:`f^\star = 0`
  at the origin, where the Hessian is singular (Newton converges only linearly there).
* :func:`trigonometric` -- MGH problem 26: :math:`f_i = d - \sum_j\cos x_j + i(1 - \cos x_i) - \sin x_i`,
  start :math:`x_0 = \mathbf 1/d`. MGH list :math:`f = 0`, but the function has other local minima with
  :math:`f > 0`, and from the standard start methods converge to one of them; ``f_star`` is therefore the
  best of scipy solves from ``x0`` (``least_squares`` with ``trf`` and ``lm`` on the residuals and their
  analytic Jacobian, ``BFGS`` and ``L-BFGS-B`` on :math:`f` with :math:`\nabla f = 2J^\top f`). The
  benchmark uses MGH's dimension ``d = 10``, where all four solves end in the same local minimum,
  :math:`f = 2.79506\cdot10^{-5}`; for ``d = 20 .. 100`` they end in different ones (a lottery of basins,
  not a race).
* :func:`variably_dimensioned` -- MGH problem 25: :math:`f_i = x_i - 1` (:math:`i \le d`),
  :math:`f_{d+1} = \sum_j j(x_j - 1)`, :math:`f_{d+2} = f_{d+1}^2`; start :math:`x_{0,j} = 1 - j/d`;
  :math:`x^\star = \mathbf 1`, :math:`f^\star = 0` (closed form).
* :func:`broyden_tridiagonal` -- MGH problem 30: :math:`f_i = (3 - 2x_i)x_i - x_{i-1} - 2x_{i+1} + 1` with
  :math:`x_0 = x_{d+1} = 0`; start :math:`-\mathbf 1`; :math:`f^\star = 0` (MGH; the system has a root,
  which the tests confirm by a solve).

:func:`user_path_problems` lists the benchmark's set (name -> zero-argument constructor), full size or quick.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.optimize
import torch
from scipy.special import expit, logsumexp

from . import _certify
from ._data import _load, binary_data, multiclass_data, standardize

Tensor = torch.Tensor
LOG2 = math.log(2.0)

__all__ = [
    "UserPathProblem",
    "broyden_tridiagonal",
    "chained_rosenbrock",
    "extended_powell_singular",
    "log_cosh_regression",
    "logistic_l2",
    "poisson_regression",
    "pseudo_huber_regression",
    "softmax_l2",
    "trigonometric",
    "user_path_problems",
    "variably_dimensioned",
]


@dataclass(eq=False)
class UserPathProblem:
    """A plain torch objective with its start and an independently computed optimum.

    ``fun(x) -> scalar tensor`` for a flat float64 tensor ``x`` of length ``d``; ``x0`` the start;
    ``f_star`` the reference optimal value (computed on first access, once per process, by ``reference``'s
    recipe); ``f_star_source`` says how (closed form or which scipy solves); ``source`` cites the problem.
    """

    name: str
    fun: Callable[[Tensor], Tensor]
    x0: Tensor
    f_star_source: str
    source: str
    _f_star: float | Callable[[], float] = field(repr=False)
    reference: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def d(self) -> int:
        return int(self.x0.numel())

    @property
    def f_star(self) -> float:
        if callable(self._f_star):
            self._f_star = float(self._f_star())
        return float(self._f_star)

    def value(self, x: Any) -> float:
        """``f(x)`` as a float, without building a graph (for monitoring)."""
        with torch.no_grad():
            return float(self.fun(torch.as_tensor(np.asarray(x, dtype=np.float64))))


# ---------------------------------------------------------------------------------------- scipy references
def _scipy_reference(key: str, fun: Callable, grad: Callable, hessp: Callable, x0: np.ndarray,
                     out: dict[str, Any]) -> Callable[[], float]:
    """A lazy ``f_star``: the best of Newton-CG, trust-krylov and L-BFGS-B with tight tolerances on numpy
    oracles (cached per process under ``key``); the per-method values go to ``out["solves"]``."""

    def compute() -> float:
        solves = {}
        with _certify._single_threaded_blas():
            runs = {
                "Newton-CG": dict(jac=grad, hessp=hessp, options={"xtol": 1e-14, "maxiter": 10_000}),
                "trust-krylov": dict(jac=grad, hessp=hessp, options={"gtol": 1e-12, "maxiter": 10_000}),
                "L-BFGS-B": dict(jac=grad, options={"ftol": 0.0, "gtol": 1e-12, "maxiter": 100_000,
                                                    "maxfun": 200_000}),
            }
            for method, kw in runs.items():
                res = scipy.optimize.minimize(fun, x0, method=method, **kw)
                solves[method] = float(fun(res.x))
        out["solves"] = solves
        best = min(solves.values())
        out["spread"] = (max(solves.values()) - best) / max(1.0, abs(best))
        return best

    return lambda: _certify.cached(key, compute)


def _data_source(recipe: str) -> str:
    return (f"best of scipy Newton-CG (xtol 1e-14), trust-krylov (gtol 1e-12) and L-BFGS-B (ftol 0, gtol 1e-12) "
            f"on numpy oracles of {recipe}")


def _with_intercept(A: np.ndarray) -> np.ndarray:
    return np.hstack([A, np.ones((A.shape[0], 1))])


# ---------------------------------------------------------------------------------------- data problems
def logistic_l2(dataset: str = "breast_cancer", *, lam: float = 1e-3) -> UserPathProblem:
    r"""L2-regularized logistic regression :math:`\frac1n\sum_i\log(1 + e^{-y_ia_i^\top w}) +
    \frac\lambda2\|w\|^2` on a scikit-learn binary task (standardized features and an intercept column);
    start ``w = 0``. The numpy reference uses :math:`\nabla f = -\frac1nA^\top(y\odot\sigma(-z)) + \lambda w`,
    :math:`\nabla^2 f\,v = \frac1nA^\top(\sigma(z)\sigma(-z)\odot Av) + \lambda v`, :math:`z = y\odot Aw`."""
    A_np, y_np, label = binary_data(dataset)
    A_np = _with_intercept(standardize(A_np))
    n = A_np.shape[0]
    A, y = torch.from_numpy(A_np), torch.from_numpy(y_np)

    def fun(w: Tensor) -> Tensor:
        return torch.nn.functional.softplus(-y * (A @ w)).mean() + 0.5 * lam * (w @ w)

    def f_np(w):
        return float(np.logaddexp(0.0, -y_np * (A_np @ w)).mean() + 0.5 * lam * w @ w)

    def g_np(w):
        z = y_np * (A_np @ w)
        return -A_np.T @ (y_np * expit(-z)) / n + lam * w

    def hp_np(w, v):
        z = y_np * (A_np @ w)
        s = expit(z) * expit(-z)
        return A_np.T @ (s * (A_np @ v)) / n + lam * v

    x0 = np.zeros(A_np.shape[1])
    ref: dict[str, Any] = {}
    key = _certify.digest("user-logistic", A_np, y_np, lam)
    return UserPathProblem(f"logistic-{label}", fun, torch.zeros(A_np.shape[1], dtype=torch.float64),
                           _data_source("the logistic loss"), f"scikit-learn {label}, lambda = {lam:g}",
                           _scipy_reference(key, f_np, g_np, hp_np, x0, ref), ref)


def poisson_regression(*, lam: float = 1e-3) -> UserPathProblem:
    r"""Poisson regression with log link on scikit-learn's diabetes data (the disease-progression target,
    integers 25..346, as counts; standardized features and an intercept):
    :math:`\frac1n\sum_i(e^{\eta_i} - y_i\eta_i) + \frac\lambda2\|w\|^2`, :math:`\eta = Aw`; start ``w = 0``.
    Reference oracles :math:`\nabla f = \frac1nA^\top(e^\eta - y) + \lambda w`, :math:`\nabla^2 f\,v =
    \frac1nA^\top(e^\eta\odot Av) + \lambda v`."""
    A_np, y_np = _load("load_diabetes")
    A_np = _with_intercept(standardize(A_np))
    y_np = y_np.astype(np.float64)
    n = A_np.shape[0]
    A, y = torch.from_numpy(A_np), torch.from_numpy(y_np)

    def fun(w: Tensor) -> Tensor:
        eta = A @ w
        return (torch.exp(eta) - y * eta).mean() + 0.5 * lam * (w @ w)

    def f_np(w):
        eta = A_np @ w
        return float((np.exp(eta) - y_np * eta).mean() + 0.5 * lam * w @ w)

    def g_np(w):
        return A_np.T @ (np.exp(A_np @ w) - y_np) / n + lam * w

    def hp_np(w, v):
        return A_np.T @ (np.exp(A_np @ w) * (A_np @ v)) / n + lam * v

    x0 = np.zeros(A_np.shape[1])
    ref: dict[str, Any] = {}
    key = _certify.digest("user-poisson", A_np, y_np, lam)
    return UserPathProblem("poisson-diabetes", fun, torch.zeros(A_np.shape[1], dtype=torch.float64),
                           _data_source("the Poisson negative log-likelihood"),
                           f"scikit-learn diabetes, lambda = {lam:g}",
                           _scipy_reference(key, f_np, g_np, hp_np, x0, ref), ref)


def _robust_data(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded regression data with outliers: ``A`` standard normal with column scales log-spaced over
    [0.1, 10] (an ill-conditioned design), ``w_true`` standard normal, ``y = A w_true + t_{1.5}`` noise."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d)) * np.logspace(-1, 1, d)
    w_true = rng.standard_normal(d)
    y = A @ w_true + rng.standard_t(1.5, size=n)
    return A, y


def log_cosh_regression(n: int = 2000, d: int = 200, *, lam: float = 1e-4, seed: int = 0) -> UserPathProblem:
    r"""Log-cosh regression :math:`\frac1n\sum_i\log\cosh(a_i^\top w - y_i) + \frac\lambda2\|w\|^2` on
    :func:`_robust_data`; start ``w = 0``. Reference oracles :math:`\nabla f = \frac1nA^\top\tanh r +
    \lambda w`, :math:`\nabla^2 f\,v = \frac1nA^\top((1 - \tanh^2 r)\odot Av) + \lambda v`."""
    A_np, y_np = _robust_data(n, d, seed)
    A, y = torch.from_numpy(A_np), torch.from_numpy(y_np)

    def fun(w: Tensor) -> Tensor:
        r = (A @ w - y).abs()
        return (r + torch.nn.functional.softplus(-2.0 * r) - LOG2).mean() + 0.5 * lam * (w @ w)

    def f_np(w):
        r = np.abs(A_np @ w - y_np)
        return float((r + np.logaddexp(0.0, -2.0 * r) - LOG2).mean() + 0.5 * lam * w @ w)

    def g_np(w):
        return A_np.T @ np.tanh(A_np @ w - y_np) / n + lam * w

    def hp_np(w, v):
        t = np.tanh(A_np @ w - y_np)
        return A_np.T @ ((1.0 - t * t) * (A_np @ v)) / n + lam * v

    ref: dict[str, Any] = {}
    key = _certify.digest("user-logcosh", A_np, y_np, lam)
    return UserPathProblem("logcosh-synthetic", fun, torch.zeros(d, dtype=torch.float64),
                           _data_source("the log-cosh loss"),
                           f"seeded Gaussian design n = {n}, t(1.5) noise, seed {seed}, lambda = {lam:g}",
                           _scipy_reference(key, f_np, g_np, hp_np, np.zeros(d), ref), ref)


def pseudo_huber_regression(n: int = 1000, d: int = 500, *, delta: float = 1.0, lam: float = 1e-4,
                            seed: int = 1) -> UserPathProblem:
    r"""Pseudo-Huber regression :math:`\frac1n\sum_i\delta^2(\sqrt{1 + (r_i/\delta)^2} - 1) +
    \frac\lambda2\|w\|^2` on :func:`_robust_data`; start ``w = 0``. With :math:`s = \sqrt{1 + (r/\delta)^2}`:
    :math:`\nabla f = \frac1nA^\top(r/s) + \lambda w`, :math:`\nabla^2 f\,v = \frac1nA^\top(s^{-3}\odot Av) +
    \lambda v`."""
    A_np, y_np = _robust_data(n, d, seed)
    A, y = torch.from_numpy(A_np), torch.from_numpy(y_np)

    def fun(w: Tensor) -> Tensor:
        r = A @ w - y
        return (r * r / (torch.sqrt(1.0 + (r / delta) ** 2) + 1.0)).mean() + 0.5 * lam * (w @ w)

    def f_np(w):
        r = A_np @ w - y_np
        return float((r * r / (np.sqrt(1.0 + (r / delta) ** 2) + 1.0)).mean() + 0.5 * lam * w @ w)

    def g_np(w):
        r = A_np @ w - y_np
        return A_np.T @ (r / np.sqrt(1.0 + (r / delta) ** 2)) / n + lam * w

    def hp_np(w, v):
        r = A_np @ w - y_np
        return A_np.T @ ((1.0 + (r / delta) ** 2) ** -1.5 * (A_np @ v)) / n + lam * v

    ref: dict[str, Any] = {}
    key = _certify.digest("user-pseudohuber", A_np, y_np, delta, lam)
    return UserPathProblem("pseudohuber-synthetic", fun, torch.zeros(d, dtype=torch.float64),
                           _data_source("the pseudo-Huber loss"),
                           f"seeded Gaussian design n = {n}, t(1.5) noise, seed {seed}, delta = {delta:g}, "
                           f"lambda = {lam:g}",
                           _scipy_reference(key, f_np, g_np, hp_np, np.zeros(d), ref), ref)


def softmax_l2(dataset: str = "digits", *, lam: float = 1e-3) -> UserPathProblem:
    r"""Softmax regression :math:`\frac1n\sum_i(\operatorname{lse}(W^\top a_i) - (W^\top a_i)_{c_i}) +
    \frac\lambda2\|W\|_F^2` on a scikit-learn multiclass task (standardized features, no intercept, so that
    digits gives ``d = 64 * 10 = 640``); ``W`` is ``x.reshape(p, K)``; start ``W = 0``. With :math:`P` the
    row-wise softmax of :math:`AW` and :math:`Y` the one-hot labels, :math:`\nabla f = \frac1nA^\top(P - Y) +
    \lambda W` and :math:`\nabla^2 f[V] = \frac1nA^\top(P\odot AV - P\odot\operatorname{rowsum}(P\odot AV)) +
    \lambda V`."""
    A_np, labels, K, label = multiclass_data(dataset)
    A_np = standardize(A_np)
    n, p = A_np.shape
    Y_np = np.eye(K)[labels]
    A, lab = torch.from_numpy(A_np), torch.from_numpy(labels)

    def fun(w: Tensor) -> Tensor:
        Z = A @ w.reshape(p, K)
        return (torch.logsumexp(Z, dim=1) - Z.gather(1, lab[:, None]).squeeze(1)).mean() + 0.5 * lam * (w @ w)

    def f_np(w):
        Z = A_np @ w.reshape(p, K)
        return float((logsumexp(Z, axis=1) - Z[np.arange(n), labels]).mean() + 0.5 * lam * w @ w)

    def _probs(w):
        Z = A_np @ w.reshape(p, K)
        return np.exp(Z - logsumexp(Z, axis=1, keepdims=True))

    def g_np(w):
        return (A_np.T @ (_probs(w) - Y_np) / n).ravel() + lam * w

    def hp_np(w, v):
        P = _probs(w)
        AV = A_np @ v.reshape(p, K)
        PAV = P * AV
        return (A_np.T @ (PAV - P * PAV.sum(axis=1, keepdims=True)) / n).ravel() + lam * v

    ref: dict[str, Any] = {}
    key = _certify.digest("user-softmax", A_np, labels, lam)
    return UserPathProblem(f"softmax-{label}", fun, torch.zeros(p * K, dtype=torch.float64),
                           _data_source("the softmax cross-entropy"),
                           f"scikit-learn {label} ({K} classes), lambda = {lam:g}",
                           _scipy_reference(key, f_np, g_np, hp_np, np.zeros(p * K), ref), ref)


# ---------------------------------------------------------------------------------------- MGH functions
MGH = "Moré, Garbow & Hillstrom (1981), ACM TOMS 7(1)"


def chained_rosenbrock(d: int = 1000) -> UserPathProblem:
    r"""Chained Rosenbrock :math:`\sum_{i=1}^{d-1}100(x_{i+1} - x_i^2)^2 + (1 - x_i)^2`, start
    :math:`x_{0,i} = i/(d + 1)`; :math:`f^\star = 0` at :math:`\mathbf 1` (closed form)."""
    if d < 2:
        raise ValueError(f"chained_rosenbrock needs d >= 2, got {d}")

    def fun(x: Tensor) -> Tensor:
        return (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2).sum()

    x0 = torch.arange(1, d + 1, dtype=torch.float64) / (d + 1)
    return UserPathProblem("rosenbrock-chained", fun, x0, "closed form: f = 0 at x = 1",
                           f"chained form of {MGH} problems 1/21", 0.0)


def extended_powell_singular(d: int = 1000) -> UserPathProblem:
    """MGH problem 13, extended Powell singular function (``d`` a multiple of 4); :math:`f^\\star = 0` at 0."""
    if d < 4 or d % 4:
        raise ValueError(f"extended_powell_singular needs d a positive multiple of 4, got {d}")

    def fun(x: Tensor) -> Tensor:
        x1, x2, x3, x4 = x[0::4], x[1::4], x[2::4], x[3::4]
        return ((x1 + 10.0 * x2) ** 2 + 5.0 * (x3 - x4) ** 2 + (x2 - 2.0 * x3) ** 4
                + 10.0 * (x1 - x4) ** 4).sum()

    x0 = torch.tensor([3.0, -1.0, 0.0, 1.0] * (d // 4), dtype=torch.float64)
    return UserPathProblem("mgh13-powell-singular", fun, x0, "closed form: f = 0 at x = 0 (MGH)",
                           f"{MGH}, problem 13", 0.0)


def _trig_residuals_np(x: np.ndarray) -> np.ndarray:
    d = x.size
    i = np.arange(1, d + 1)
    return d - np.cos(x).sum() + i * (1.0 - np.cos(x)) - np.sin(x)


def _trig_jacobian_np(x: np.ndarray) -> np.ndarray:
    d = x.size
    i = np.arange(1, d + 1)
    J = np.tile(np.sin(x), (d, 1))
    J[np.diag_indices(d)] += i * np.sin(x) - np.cos(x)
    return J


def trigonometric(d: int = 10) -> UserPathProblem:
    """MGH problem 26, the trigonometric function, start ``1/d``; ``f_star`` from scipy solves (see the
    module docstring: the standard start leads to a local minimum with ``f > 0`` for many ``d``)."""
    if d < 1:
        raise ValueError(f"trigonometric needs d >= 1, got {d}")
    i_t = torch.arange(1, d + 1, dtype=torch.float64)

    def fun(x: Tensor) -> Tensor:
        c = torch.cos(x)
        r = d - c.sum() + i_t * (1.0 - c) - torch.sin(x)
        return (r * r).sum()

    x0 = np.full(d, 1.0 / d)
    ref: dict[str, Any] = {}

    def compute() -> float:
        def f(x):
            r = _trig_residuals_np(x)
            return float(r @ r)

        def g(x):
            return 2.0 * _trig_jacobian_np(x).T @ _trig_residuals_np(x)

        solves = {}
        with _certify._single_threaded_blas():
            for method in ("trf", "lm"):
                res = scipy.optimize.least_squares(_trig_residuals_np, x0, jac=_trig_jacobian_np, method=method,
                                                   ftol=1e-15, xtol=1e-15, gtol=1e-15, max_nfev=10_000)
                solves[f"least_squares-{method}"] = f(res.x)
            for method, opts in (("BFGS", {"gtol": 1e-12, "maxiter": 100_000}),
                                 ("L-BFGS-B", {"ftol": 0.0, "gtol": 1e-12, "maxiter": 100_000, "maxfun": 200_000})):
                res = scipy.optimize.minimize(f, x0, jac=g, method=method, options=opts)
                solves[method] = f(res.x)
        ref["solves"] = solves
        best = min(solves.values())
        ref["spread"] = (max(solves.values()) - best) / max(1.0, abs(best))
        return best

    key = _certify.digest("user-trigonometric", d)
    return UserPathProblem("mgh26-trigonometric", fun, torch.from_numpy(x0.copy()),
                           "best of scipy least_squares (trf, lm; tolerances 1e-15, analytic Jacobian), BFGS and "
                           "L-BFGS-B (gtol 1e-12) from x0, on numpy residuals",
                           f"{MGH}, problem 26", lambda: _certify.cached(key, compute), ref)


def variably_dimensioned(d: int = 200) -> UserPathProblem:
    """MGH problem 25, the variably dimensioned function, start ``1 - j/d``; :math:`f^\\star = 0` at
    :math:`\\mathbf 1`."""
    if d < 1:
        raise ValueError(f"variably_dimensioned needs d >= 1, got {d}")
    j = torch.arange(1, d + 1, dtype=torch.float64)

    def fun(x: Tensor) -> Tensor:
        u = x - 1.0
        s = (j * u).sum()
        return (u * u).sum() + s * s + s ** 4

    x0 = 1.0 - j / d
    return UserPathProblem("mgh25-variably-dimensioned", fun, x0, "closed form: f = 0 at x = 1 (MGH)",
                           f"{MGH}, problem 25", 0.0)


def broyden_tridiagonal(d: int = 1000) -> UserPathProblem:
    """MGH problem 30, the Broyden tridiagonal function, start ``-1``; :math:`f^\\star = 0` (MGH)."""
    if d < 1:
        raise ValueError(f"broyden_tridiagonal needs d >= 1, got {d}")

    def fun(x: Tensor) -> Tensor:
        z = x.new_zeros(1)
        left = torch.cat([z, x[:-1]])
        right = torch.cat([x[1:], z])
        r = (3.0 - 2.0 * x) * x - left - 2.0 * right + 1.0
        return (r * r).sum()

    return UserPathProblem("mgh30-broyden-tridiagonal", fun, -torch.ones(d, dtype=torch.float64),
                           "closed form: f = 0 (MGH; the residual system has a root)", f"{MGH}, problem 30", 0.0)


# ---------------------------------------------------------------------------------------- the benchmark's set
# (constructor, keyword arguments at full size, keyword arguments in quick mode); the name is the problem's
_SET: tuple[tuple[Callable[..., UserPathProblem], dict[str, Any], dict[str, Any]], ...] = (
    (logistic_l2, {"dataset": "breast_cancer"}, {"dataset": "breast_cancer"}),
    (poisson_regression, {}, {}),
    (log_cosh_regression, {"n": 2000, "d": 200}, {"n": 200, "d": 20}),
    (pseudo_huber_regression, {"n": 1000, "d": 500}, {"n": 200, "d": 20}),
    (softmax_l2, {"dataset": "digits"}, {"dataset": "wine"}),
    (chained_rosenbrock, {"d": 1000}, {"d": 50}),
    (extended_powell_singular, {"d": 1000}, {"d": 40}),
    (variably_dimensioned, {"d": 200}, {"d": 20}),
    (trigonometric, {"d": 10}, {"d": 10}),
    (broyden_tridiagonal, {"d": 1000}, {"d": 50}),
)
# The names the constructors give, known without loading data (softmax_l2 names itself after its data set).
_NAMES = ("logistic-breast_cancer", "poisson-diabetes", "logcosh-synthetic", "pseudohuber-synthetic",
          "softmax-{}", "rosenbrock-chained", "mgh13-powell-singular", "mgh25-variably-dimensioned",
          "mgh26-trigonometric", "mgh30-broyden-tridiagonal")


def user_path_problems(quick: bool = False) -> dict[str, Callable[[], UserPathProblem]]:
    """The user-path benchmark's problems: name -> zero-argument constructor, full size or (``quick``)
    small (softmax on wine instead of digits, ``d <= 50`` for the synthetic and MGH problems). Each
    constructed problem's ``name`` equals its key."""
    out = {}
    for name, (ctor, kw, quick_kw) in zip(_NAMES, _SET, strict=True):
        kwargs = quick_kw if quick else kw
        out[name.format(kwargs.get("dataset"))] = lambda ctor=ctor, kwargs=kwargs: ctor(**kwargs)
    return out
