r"""L2-regularized binary logistic regression (real data and an ill-conditioned synthetic set).

.. math::

    f(x) = \frac1n \sum_{i=1}^n \log\bigl(1 + e^{-y_i a_i^\top x}\bigr) + \frac{\rho}{2}\|x\|^2,
    \qquad y_i \in \{-1, +1\},

with the regularization ``reg`` = :math:`\rho` (default :math:`1/n`). Write :math:`b_i = y_i a_i`,
:math:`z_i = b_i^\top x`, :math:`s_i = \sigma(-z_i)` with :math:`\sigma(t) = 1/(1+e^{-t})`. Then

* :math:`\nabla f(x) = -\frac1n \sum_i s_i b_i + \rho x`,
* :math:`\nabla^2 f(x) = \frac1n A^\top \mathrm{Diag}(s_i(1-s_i)) A + \rho I` (since :math:`y_i^2 = 1`).

Curvatures offered (``problem.curvatures``):

* ``"bohning"``: :math:`\frac{1}{4n} A^\top A + \rho I`, a constant upper bound on the Hessian because
  :math:`\sigma'(t) = \sigma(t)(1-\sigma(t)) \le 1/4` (Böhning & Lindsay, "Monotonicity of quadratic
  approximation algorithms", Ann. Inst. Stat. Math. 40, 1988; Böhning, Ann. Inst. Stat. Math. 44, 1992).
  Built once and returned as the same tensor on every call: callers must not modify it in place.
* ``"fisher"``: the empirical Fisher :math:`\frac1n\sum_i \ell'(z_i)^2 a_i a_i^\top + \rho I` with
  :math:`\ell(z) = \log(1+e^{-z})`, so :math:`\ell'(z_i)^2 = s_i^2`.
* ``"gauss-newton"``: the generalized Gauss-Newton matrix of :math:`\ell \circ (Ax)`; the inner map is
  linear, so it equals the exact Hessian.

Constants (``problem.constants``), each derived in one line:

* ``L`` :math:`= \lambda_{\max}(A^\top A)/(4n) + \rho`, from :math:`\sigma' \le 1/4` (tight at :math:`x = 0`).
* ``mu`` :math:`= \rho`: the loss is convex, the regularizer adds :math:`\rho I` (None when :math:`\rho = 0`).
* ``M`` :math:`= \max_i \|a_i\|` (quasi-self-concordance): with :math:`\phi(t) = \log(1+e^{t})`,
  :math:`|\phi'''| = \phi''|1 - 2\sigma| \le \phi''`, so
  :math:`|D^3 f(x)[u,u,v]| = |\frac1n\sum_i \phi'''(-z_i)(a_i^\top u)^2 (y_i a_i^\top v)|
  \le \max_i\|a_i\|\,\|v\|\,\langle\nabla^2 f(x)u,u\rangle`
  (Bach, "Self-concordant analysis for logistic regression", Electron. J. Statist. 4, 2010; spec 10 §4).
* ``L2`` (Hessian Lipschitz): :math:`\max_p |p(1-p)(1-2p)| = 1/(6\sqrt3)` (attained at
  :math:`p = (3-\sqrt3)/6`), hence
  :math:`\|D^3 f(x)[u,u,v]\| \le \frac{1}{6\sqrt3}\frac1n\sum_i |a_i^\top u|^2|a_i^\top v|`,
  bounded both by :math:`\frac{1}{6\sqrt3 n}\sum_i\|a_i\|^3` and by
  :math:`\frac{1}{6\sqrt3}\max_i\|a_i\|\,\lambda_{\max}(A^\top A)/n`; ``L2`` is the smaller of the two.

The certified optimum (``f_star``, ``x_star``, for ``reg > 0``) comes from an independent damped Newton
solve in plain numpy (:mod:`optlib.problems._certify`), computed once per process and data set.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit

from ..problem import Constants, Problem
from . import _certify
from ._data import binary_data, problem_name
from ._data import standardize as _standardize

Tensor = torch.Tensor

# softplus(t) is computed as log1p(exp(t)) below this threshold and as t above it; at 40 the
# dropped term exp(-40) is below double-precision rounding of t, so the value is exact to rounding.
_SOFTPLUS_THRESHOLD = 40.0
_C3 = 1.0 / (6.0 * math.sqrt(3.0))  # max_p |p (1 - p) (1 - 2p)|


def _resolve_reg(reg: float | None, n: int) -> float:
    if reg is None:
        return 1.0 / n
    reg = float(reg)
    if not math.isfinite(reg) or reg < 0:
        raise ValueError(f"reg must be a finite non-negative number, got {reg}")
    return reg


def _numpy_oracles(B: np.ndarray, reg: float):
    """Plain-numpy value and (value, gradient, Hessian) of the logistic objective, for certification."""
    n, d = B.shape

    def fun(x: np.ndarray) -> float:
        return float(np.logaddexp(0.0, -(B @ x)).mean() + 0.5 * reg * (x @ x))

    def fgh(x: np.ndarray):
        z = B @ x
        f = float(np.logaddexp(0.0, -z).mean() + 0.5 * reg * (x @ x))
        s = expit(-z)
        g = -(B.T @ s) / n + reg * x
        w = s * (1.0 - s) / n
        H = B.T @ (B * w[:, None])
        H[np.diag_indices(d)] += reg
        return f, g, H

    return fun, fgh


def _binary_logistic_problem(A: np.ndarray, y: np.ndarray, reg: float | None, name: str) -> Problem:
    """The one implementation behind :func:`logistic_regression` and :func:`synthetic_logistic`."""
    n, d = A.shape
    reg = _resolve_reg(reg, n)
    # Rows b_i = y_i a_i, stored column-major: torch's matrix-vector products with B and B^T both run
    # faster on it than on row-major storage, and B^T is a C-contiguous (d, n) view for the weighted
    # Gram matrix. The numpy certification oracles read the same memory.
    Bt = torch.from_numpy(np.ascontiguousarray((A * y[:, None]).T))
    B = Bt.T
    B_np = Bt.numpy().T
    reg_eye = reg * torch.eye(d, dtype=torch.float64)
    inv_n = 1.0 / n

    def fun(x: Tensor) -> Tensor:
        return F.softplus(-(B @ x), threshold=_SOFTPLUS_THRESHOLD).mean() + 0.5 * reg * torch.dot(x, x)

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        nz = torch.mv(B, x).neg_()
        f = F.softplus(nz, threshold=_SOFTPLUS_THRESHOLD).mean() + 0.5 * reg * torch.dot(x, x)
        s = torch.sigmoid(nz)
        return f, torch.addmv(x, Bt, s, beta=reg, alpha=-inv_n)

    def grad(x: Tensor) -> Tensor:
        s = torch.sigmoid(torch.mv(B, x).neg_())
        return torch.addmv(x, Bt, s, beta=reg, alpha=-inv_n)

    def _weighted_gram(w: Tensor) -> Tensor:
        """(1/n) A^T Diag(w) A + reg I."""
        return torch.addmm(reg_eye, Bt * w, B, alpha=inv_n)

    def _hess_weights(x: Tensor) -> Tensor:
        s = torch.sigmoid(torch.mv(B, x).neg_())
        return s.mul_(1.0 - s)

    def hess(x: Tensor) -> Tensor:
        return _weighted_gram(_hess_weights(x))

    def hvp(x: Tensor, v: Tensor) -> Tensor:
        w = _hess_weights(x)
        return torch.addmv(v, Bt, w.mul_(torch.mv(B, v)), beta=reg, alpha=inv_n)

    def fisher(x: Tensor) -> Tensor:
        s = torch.sigmoid(torch.mv(B, x).neg_())
        return _weighted_gram(s.square_())

    gram = torch.mm(Bt, B)  # = A^T A
    bohning_matrix = torch.add(reg_eye, gram, alpha=0.25 * inv_n)

    def bohning(x: Tensor) -> Tensor:
        return bohning_matrix

    bohning.constant = True  # the driver decomposes it once per run

    lam_max = float(torch.linalg.eigvalsh(gram)[-1])
    row_norms = np.linalg.norm(A, axis=1)
    max_row = float(row_norms.max())
    L = 0.25 * lam_max * inv_n + reg
    L2 = _C3 * min(float(np.sum(row_norms**3)) * inv_n, max_row * lam_max * inv_n)
    constants = Constants(
        L=L,
        L2=L2,
        mu=reg if reg > 0 else None,
        M=max_row,
        convex=True,
        notes={
            "L": "lambda_max(A^T A)/(4n) + reg, since sigma' <= 1/4",
            "mu": "reg (the loss is convex)",
            "M": "max_i ||a_i||: |phi'''| <= phi'' for phi(t) = log(1 + e^t) (Bach 2010)",
            "L2": "(1/(6 sqrt 3)) min(sum_i ||a_i||^3 / n, max_i ||a_i|| lambda_max(A^T A)/n)",
        },
    )

    f_star = x_star = None
    if reg > 0:
        np_fun, np_fgh = _numpy_oracles(B_np, reg)

        def solve() -> tuple[float, np.ndarray]:
            x0 = np.zeros(d)
            scale = max(1.0, float(np.linalg.norm(np_fgh(x0)[1])))
            return _certify.certify(np_fun, np_fgh, x0, scale=scale, what=f"'{name}'")

        f_star, x_star = _certify.lazy_optimum(_certify.digest("logistic", B_np, reg), solve)

    prob = Problem(
        fun,
        d,
        value_and_grad=value_and_grad,
        grad=grad,
        hess=hess,
        hvp=hvp,
        curvatures={"bohning": bohning, "fisher": fisher, "gauss-newton": hess},
        constants=constants,
        f_star=f_star,
        x_star=x_star,
        x0=torch.zeros(d, dtype=torch.float64),
        name=name,
    )
    prob.data = {"A": A, "y": y}
    prob.reg = reg
    return prob


def logistic_regression(
    dataset: Any,
    *,
    reg: float | None = None,
    standardize: bool = True,
    fit_intercept: bool = False,
) -> Problem:
    """Binary logistic regression on a bundled scikit-learn data set or on ``(A, y)``.

    Parameters
    ----------
    dataset : str or (A, y)
        ``"breast_cancer"`` (benign = +1), ``"digits_binary"`` (digit < 5 = +1), ``"wine_binary"``
        (class 0 = +1), ``"iris_binary"`` (setosa = +1), or a pair with ``A`` of shape ``(n, d)`` and
        ``y`` in {-1, +1} or {0, 1} of length ``n``.
    reg : float, optional
        L2 regularization :math:`\\rho \\ge 0`; default ``1/n``. The certified optimum needs ``reg > 0``.
    standardize : bool
        Center and scale each feature to unit variance (constant features become zero).
    fit_intercept : bool
        Append a column of ones after standardizing (its weight is regularized like the others).

    The objective, oracles, curvatures (``"bohning"``, ``"fisher"``, ``"gauss-newton"``) and constants
    are documented in :mod:`optlib.problems.logistic`. ``x0`` is the origin. The processed data are
    available as ``problem.data["A"]``, ``problem.data["y"]`` (numpy) and the regularization as
    ``problem.reg``.
    """
    A, y, label = binary_data(dataset)
    if standardize:
        A = _standardize(A)
    if fit_intercept:
        A = np.hstack([A, np.ones((A.shape[0], 1))])
    name = problem_name(
        "logreg", label, {"reg": reg, "standardize": standardize, "fit_intercept": fit_intercept},
        {"reg": None, "standardize": True, "fit_intercept": False},
    )
    return _binary_logistic_problem(np.ascontiguousarray(A), y, reg, name)


def synthetic_logistic(
    n: int = 5000,
    d: int = 200,
    scale_min: float = 1e-3,
    scale_max: float = 1e1,
    seed: int = 0,
    reg: float | None = None,
    *,
    descending: bool = False,
    signal: float | None = None,
) -> Problem:
    """Ill-conditioned synthetic logistic regression (not standardized).

    Features: ``A = Z S`` with ``Z`` i.i.d. standard normal (``n x d``) and ``S`` diagonal, column ``j``
    scaled by the ``j``-th entry of ``logspace(log10(scale_min), log10(scale_max), d)`` (of
    ``logspace(log10(scale_max), log10(scale_min), d)``, largest first, with ``descending=True``), so the
    Gram matrix has condition number about ``(scale_max/scale_min)^2``. Labels: a planted ``x_true`` ~ N(0, I)
    and ``y_i = +1`` with probability ``sigma(m_i)`` (Bernoulli, so the classes overlap and the data are not
    separable), where the margins are

    * ``signal=None`` (default): ``m = A x_true``, rescaled to standard deviation 2;
    * ``signal=s``: ``m = Z u`` with ``u = s x_true/||x_true||``, planted in the unscaled features, so the
      label noise does not depend on the scales (the theorem checks of :mod:`optlib.theory` use
      ``n=400, d=10, scale_min=1/cond, scale_max=1, descending=True, signal=3``).

    All draws come from ``numpy.random.default_rng(seed)``, in the order ``Z``, ``x_true``, the uniforms of
    the labels. ``reg`` defaults to ``1/n``. Oracles, curvatures and constants are those of
    :func:`logistic_regression` (one shared implementation).
    """
    n, d = int(n), int(d)
    if n <= 0 or d <= 0:
        raise ValueError(f"synthetic logistic regression: n and d must be positive, got n={n}, d={d}")
    if not (0 < scale_min <= scale_max) or not math.isfinite(scale_max):
        raise ValueError(
            f"synthetic logistic regression: need 0 < scale_min <= scale_max < inf, got {scale_min}, {scale_max}"
        )
    if signal is not None and not (signal > 0 and math.isfinite(signal)):
        raise ValueError(f"synthetic logistic regression: signal must be positive and finite, got {signal}")
    rng = np.random.default_rng(seed)
    lo, hi = math.log10(scale_min), math.log10(scale_max)
    scales = np.logspace(hi, lo, d) if descending else np.logspace(lo, hi, d)
    Z = rng.standard_normal((n, d))
    A = Z * scales
    x_true = rng.standard_normal(d)
    if signal is None:
        margins = A @ x_true
        spread = float(margins.std())
        if spread > 0:
            margins *= 2.0 / spread
    else:
        margins = Z @ (x_true * (signal / np.linalg.norm(x_true)))
    y = np.where(rng.random(n) < expit(margins), 1.0, -1.0)
    name = problem_name(
        "logreg", "synthetic",
        {"n": n, "d": d, "scale_min": scale_min, "scale_max": scale_max, "seed": seed, "reg": reg,
         "descending": descending, "signal": signal},
        {"n": 5000, "d": 200, "scale_min": 1e-3, "scale_max": 1e1, "seed": 0, "reg": None,
         "descending": False, "signal": None},
    )
    return _binary_logistic_problem(np.ascontiguousarray(A), y, reg, name)
