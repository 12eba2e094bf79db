r"""L2-regularized multinomial (softmax) logistic regression.

The variable is a weight matrix :math:`W \in \mathbb{R}^{d\times K}` flattened row by row
(``x = W.reshape(-1)``, so ``x[j*K + k] = W[j, k]``). With scores :math:`z_i = W^\top a_i \in \mathbb{R}^K`,
probabilities :math:`p_i = \mathrm{softmax}(z_i)` and one-hot labels :math:`e_{y_i}`,

.. math::

    f(W) = \frac1n\sum_{i=1}^n\Bigl[\log\sum_k e^{z_{ik}} - z_{i,y_i}\Bigr] + \frac{\rho}{2}\|W\|_F^2,

    \nabla f = \frac1n A^\top (P - Y) + \rho W, \qquad
    \nabla^2 f = \frac1n\sum_i (a_i a_i^\top) \otimes (\mathrm{Diag}(p_i) - p_i p_i^\top) + \rho I.

The Kronecker order ``(a a^T) ⊗ (K x K block)`` matches the row-major flattening of ``W``. The
Hessian is built analytically: the ``- p p^T`` part is :math:`G^\top G/n` with
:math:`G_{i,(j,k)} = a_{ij}p_{ik}`, and the diagonal part adds :math:`\frac1n A^\top\mathrm{Diag}(P_{:,k})A`
to the ``(k, k)`` blocks.

Curvatures:

* ``"bohning"``: :math:`(A^\top A/n) \otimes \tfrac12(I_K - \mathbf 1\mathbf 1^\top/K) + \rho I`. Böhning
  (1992, "Multinomial logistic regression algorithm", Ann. Inst. Stat. Math. 44:197-200) shows
  :math:`\mathrm{Diag}(p) - pp^\top \preceq \tfrac12(I - \mathbf 1\mathbf 1^\top/K)` for every probability
  vector :math:`p`, so this constant matrix bounds the Hessian from above. Returned as the same
  tensor on every call (do not modify it in place).
* ``"fisher"``: the empirical Fisher :math:`\frac1n\sum_i g_i g_i^\top + \rho I` with per-sample loss
  gradients :math:`g_i = a_i \otimes (p_i - e_{y_i})`.
* ``"gauss-newton"``: the generalized Gauss-Newton matrix of the cross-entropy composed with the linear
  scores; the inner map is linear, so it is the exact Hessian.

Constants (derived here; "derived - verify" in the sense of spec 10):

* ``L`` :math:`= \lambda_{\max}(A^\top A)/(2n) + \rho` (Böhning's bound; the eigenvalues of
  :math:`I - \mathbf 1\mathbf 1^\top/K` are 0 and 1).
* ``mu`` :math:`= \rho`.
* ``M`` :math:`= \sqrt2\max_i\|a_i\|`: :math:`D^3 f[U,U,V] = \frac1n\sum_i
  \mathbb E_{p_i}[(s_U - \mathbb E s_U)^2(s_V - \mathbb E s_V)]` with :math:`s_U = U^\top a_i`, and
  :math:`|s_{V,k} - \mathbb E s_V| \le \max_{k,l}|a_i^\top(V_k - V_l)| \le \sqrt2\|a_i\|\|V\|_F`.
* ``L2`` :math:`= \min\bigl(\tfrac{1}{\sqrt2 n}\sum_i\|a_i\|^3,\
  \sqrt2\max_i\|a_i\|\cdot\lambda_{\max}(A^\top A)/(2n)\bigr)`,
  from the same bound and :math:`\mathrm{Var}_{p}(s_U) \le \tfrac12\|U^\top a_i\|^2` (Böhning's bound).

The certified optimum (for ``reg > 0``) comes from an independent damped Newton solve in plain numpy
(:mod:`optlib.problems._certify`) with its own numpy oracles, polished to the rounding floor and cached
per process.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp as np_logsumexp

from ..problem import Constants, Problem
from . import _certify
from ._data import multiclass_data, problem_name
from ._data import standardize as _standardize
from .logistic import _resolve_reg

Tensor = torch.Tensor


def _numpy_oracles(A: np.ndarray, labels: np.ndarray, K: int, reg: float):
    """Plain-numpy value and (value, gradient, Hessian) of the softmax objective, for certification."""
    n, d = A.shape
    rows = np.arange(n)
    Y = np.zeros((n, K))
    Y[rows, labels] = 1.0

    def fun(x: np.ndarray) -> float:
        Z = A @ x.reshape(d, K)
        return float((np_logsumexp(Z, axis=1) - Z[rows, labels]).mean() + 0.5 * reg * (x @ x))

    def fgh(x: np.ndarray):
        W = x.reshape(d, K)
        Z = A @ W
        lse = np_logsumexp(Z, axis=1)
        f = float((lse - Z[rows, labels]).mean() + 0.5 * reg * (x @ x))
        P = np.exp(Z - lse[:, None])
        g = (A.T @ (P - Y) / n + reg * W).reshape(-1)
        G = (A[:, :, None] * P[:, None, :]).reshape(n, d * K)
        H = -(G.T @ G) / n
        H4 = H.reshape(d, K, d, K)
        for k in range(K):
            H4[:, k, :, k] += (A.T * P[:, k]) @ A / n
        H[np.diag_indices(d * K)] += reg
        return f, g, H

    return fun, fgh


def softmax_regression(dataset: Any, *, reg: float | None = None, standardize: bool = True) -> Problem:
    """Multinomial logistic regression on ``"digits"`` (K=10), ``"wine"`` (3), ``"iris"`` (3) or ``(A, labels)``.

    ``labels`` may be any 1-D array of class labels (integers or strings), one per row of ``A``;
    they are mapped to ``0..K-1`` in sorted order. ``reg`` defaults to ``1/n``; features are
    standardized unless ``standardize=False``. ``x0`` is zero. See :mod:`optlib.problems.softmax` for
    the formulas, curvatures (``"bohning"``, ``"fisher"``, ``"gauss-newton"``) and constants. The
    processed data are in ``problem.data`` (``"A"``, ``"labels"``, ``"K"``).
    """
    A, labels, K, label = multiclass_data(dataset)
    if standardize:
        A = _standardize(A)
    A = np.ascontiguousarray(A)
    n, d = A.shape
    reg_arg = reg
    reg = _resolve_reg(reg, n)
    dK = d * K
    inv_n = 1.0 / n

    At = torch.from_numpy(A)
    lab = torch.from_numpy(labels)
    Y = torch.zeros(n, K, dtype=torch.float64)
    Y[torch.arange(n), lab] = 1.0

    def fun(x: Tensor) -> Tensor:
        Z = At @ x.reshape(d, K)
        return (torch.logsumexp(Z, dim=1) - (Z * Y).sum(dim=1)).mean() + 0.5 * reg * torch.dot(x, x)

    def _probs(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        Z = torch.mm(At, x.reshape(d, K))
        lse = torch.logsumexp(Z, dim=1)
        P = torch.exp(Z - lse[:, None])
        return Z, lse, P

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        Z, lse, P = _probs(x)
        f = (lse.sum() - torch.dot(Z.reshape(-1), Y.reshape(-1))) * inv_n + 0.5 * reg * torch.dot(x, x)
        g = torch.addmm(x.reshape(d, K), At.T, P.sub_(Y), beta=reg, alpha=inv_n)
        return f, g.reshape(-1)

    def hess(x: Tensor) -> Tensor:
        _, _, P = _probs(x)
        G = (At[:, :, None] * P[:, None, :]).reshape(n, dK)
        H = torch.mm(G.T, G).mul_(-inv_n)
        # (k, k) blocks: + (1/n) A^T Diag(P[:, k]) A, i.e. H[j, k, l, k] += (A^T G)[j, l, k] / n
        torch.diagonal(H.view(d, K, d, K), dim1=1, dim2=3).add_(torch.mm(At.T, G).view(d, d, K), alpha=inv_n)
        H.diagonal().add_(reg)
        return H

    def hvp(x: Tensor, v: Tensor) -> Tensor:
        # per sample: a_i (M_i V^T a_i)^T with M_i q = p * q - p (p . q)
        _, _, P = _probs(x)
        V = v.reshape(d, K)
        R = P * torch.mm(At, V)
        R.sub_(P * R.sum(dim=1, keepdim=True))
        return torch.addmm(V, At.T, R, beta=reg, alpha=inv_n).reshape(-1)

    def fisher(x: Tensor) -> Tensor:
        _, _, P = _probs(x)
        Gf = (At[:, :, None] * P.sub_(Y)[:, None, :]).reshape(n, dK)
        H = torch.mm(Gf.T, Gf).mul_(inv_n)
        H.diagonal().add_(reg)
        return H

    gram = torch.mm(At.T, At)
    centering = 0.5 * (torch.eye(K, dtype=torch.float64) - 1.0 / K)
    bohning_matrix = torch.kron(gram * inv_n, centering)
    bohning_matrix.diagonal().add_(reg)

    def bohning(x: Tensor) -> Tensor:
        return bohning_matrix

    lam_max = float(torch.linalg.eigvalsh(gram)[-1])
    row_norms = np.linalg.norm(A, axis=1)
    max_row = float(row_norms.max())
    M = math.sqrt(2.0) * max_row
    constants = Constants(
        L=0.5 * lam_max * inv_n + reg,
        L2=min(float(np.sum(row_norms**3)) * inv_n / math.sqrt(2.0), M * 0.5 * lam_max * inv_n),
        mu=reg if reg > 0 else None,
        M=M,
        convex=True,
        notes={
            "L": "lambda_max(A^T A)/(2n) + reg (Boehning's bound Diag(p) - pp^T <= (I - 11^T/K)/2)",
            "mu": "reg",
            "M": "sqrt(2) max_i ||a_i|| (derived - verify): third central moment of the scores",
            "L2": "min(sum_i ||a_i||^3/(sqrt(2) n), M lambda_max(A^T A)/(2n)) (derived - verify)",
        },
    )

    f_star = x_star = None
    name = problem_name("softmax", label, {"reg": reg_arg, "standardize": standardize},
                        {"reg": None, "standardize": True})
    if reg > 0:
        np_fun, np_fgh = _numpy_oracles(A, labels, K, reg)

        def solve() -> tuple[float, np.ndarray]:
            x0 = np.zeros(dK)
            scale = max(1.0, float(np.linalg.norm(np_fgh(x0)[1])))
            return _certify.certify(np_fun, np_fgh, x0, scale=scale, what=f"'{name}'")

        f_star, x_star = _certify.lazy_optimum(_certify.digest("softmax", A, labels, K, reg), solve)

    prob = Problem(
        fun,
        dK,
        value_and_grad=value_and_grad,
        hess=hess,
        hvp=hvp,
        curvatures={"bohning": bohning, "fisher": fisher, "gauss-newton": hess},
        constants=constants,
        f_star=f_star,
        x_star=x_star,
        x0=torch.zeros(dK, dtype=torch.float64),
        name=name,
    )
    prob.data = {"A": A, "labels": labels, "K": K}
    prob.reg = reg
    return prob
