r"""Pseudo-Huber terms on orthogonal directions: convex, Lipschitz Hessian, and hard for undamped Newton.

.. math::

    f(x) = \frac c3\sum_{i=1}^n |x_i|^3 + \sum_{j=1}^n \varphi(a_j^\top x), \qquad
    \varphi(t) = \sqrt{1 + t^2} - 1, \qquad A = \mathrm{scale}\cdot Q,

with :math:`Q` the orthogonal factor of the QR decomposition of a standard normal ``n x n`` matrix
(``numpy.random.default_rng(seed)``; no sign normalization). :math:`\varphi` is the pseudo-Huber (Charbonnier)
function: quadratic near 0, linear far away (Hartley & Zisserman, *Multiple View Geometry in Computer
Vision*, 2nd ed., 2004, Appendix 6.8). It is evaluated as :math:`t^2/(\sqrt{1 + t^2} + 1)`, without
cancellation.

Optimum (closed form). Every term is non-negative and vanishes at 0, and :math:`\sum_j\varphi(a_j^\top x) = 0`
only when :math:`Ax = 0`, i.e. :math:`x = 0` (``A`` is invertible): :math:`x^\star = 0`, :math:`f^\star = 0`,
unique.

Start. :math:`x_0 = A^{-1}(t_0\,\sigma)` with random signs :math:`\sigma \in \{\pm1\}^n` (drawn after ``Q``), so
:math:`|a_j^\top x_0| = t_0` for every ``j`` and :math:`D = \|x_0 - x^\star\| = t_0\sqrt n/\mathrm{scale}`.
Far from 0 the curvature :math:`\varphi''(t) = (1 + t^2)^{-3/2}` decays like :math:`|t|^{-3}`, and a pure
Newton step on one term maps :math:`t \mapsto t - \varphi'(t)/\varphi''(t) = -t^3`: from :math:`|t| > 1`
undamped (or under-regularized) Newton steps overshoot and diverge, which is what the O(1/k^2) check of
:mod:`optlib.theory.regularized_newton` must catch when the regularization is too small.

Oracles, with :math:`t = Ax`, :math:`s = \sqrt{1 + t^2}`:
:math:`\nabla f = c\,x\odot|x| + A^\top(t/s)`,
:math:`\nabla^2 f = 2c\,\mathrm{Diag}(|x|) + A^\top\mathrm{Diag}(s^{-3})A`.

Constants (derived).

* ``L2``. :math:`\varphi'''(t) = -3t(1 + t^2)^{-5/2}`; its modulus is largest where
  :math:`(1 + t^2) - 5t^2 = 0`, i.e. :math:`|t| = 1/2`, with value :math:`1.5\cdot1.25^{-5/2} = 0.8587`. Then
  :math:`|D^3 f[h,h,h]| \le 0.8587\sum_j|a_j^\top h|^3 \le 0.8587\|Ah\|_2^3 = 0.8587\,\mathrm{scale}^3\|h\|^3`
  (:math:`\|\cdot\|_3 \le \|\cdot\|_2`), and a symmetric trilinear form attains its norm on the diagonal, so
  with the cubic part's ``2c`` (see :mod:`optlib.problems.lse_cubic`)
  :math:`L_2 = 2c + 0.8587\,\mathrm{scale}^3`. For ``c = 0`` it is attained: along :math:`h \parallel a_j` at
  :math:`a_j^\top x = 1/2` only the ``j``-th term moves.
* ``L = scale^2`` for ``c = 0``: :math:`0 < \varphi'' \le 1`, so :math:`0 \preceq \nabla^2 f \preceq A^\top A =
  \mathrm{scale}^2 I`, with equality at ``x = 0``. For ``c > 0`` no global ``L`` exists (``None``).
* No strong convexity: the curvature vanishes far away.

Registered in :func:`optlib.problems.library` as ``"pseudo-huber"``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..problem import Constants, Problem
from ._data import problem_name

Tensor = torch.Tensor

# max_t |d^3/dt^3 sqrt(1 + t^2)| = max 3|t|(1 + t^2)^(-5/2), attained at |t| = 1/2.
PSEUDO_HUBER_THIRD_MAX = 1.5 * 1.25**-2.5


def pseudo_huber(n: int = 8, c: float = 0.0, scale: float = 1.0, t0: float = 2.0, seed: int = 0) -> Problem:
    """``(c/3) sum_i |x_i|^3 + sum_j (sqrt(1 + <a_j, x>^2) - 1)`` with ``A = scale * Q``, ``Q`` orthogonal.

    ``x* = 0``, ``f* = 0`` (closed form); ``x0`` has ``|<a_j, x0>| = t0`` for every ``j``.
    ``constants.L2 = 2c + 0.8587 scale^3`` and, for ``c = 0``, ``constants.L = scale^2`` (derived in
    :mod:`optlib.problems.pseudo_huber`). ``problem.data`` holds ``A`` and ``c``.
    """
    n = int(n)
    if n <= 0:
        raise ValueError(f"pseudo-huber: n must be positive, got {n}")
    c, scale, t0 = float(c), float(scale), float(t0)
    if not (c >= 0 and math.isfinite(c)):
        raise ValueError(f"pseudo-huber: the cubic weight c must be finite and non-negative, got {c}")
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"pseudo-huber: scale must be positive and finite, got {scale}")
    if not (t0 > 0 and math.isfinite(t0)):
        raise ValueError(f"pseudo-huber: the start margin t0 must be positive and finite, got {t0}")
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    A = scale * Q
    At = torch.tensor(A)
    L2 = 2.0 * c + PSEUDO_HUBER_THIRD_MAX * scale**3

    def fun(x: Tensor) -> Tensor:
        t = At @ x
        s = torch.sqrt(1.0 + t * t)
        return (c / 3.0) * torch.sum(torch.abs(x) ** 3) + torch.sum(t * t / (s + 1.0))

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        t = At @ x
        s = torch.sqrt(1.0 + t * t)
        f = (c / 3.0) * torch.sum(torch.abs(x) ** 3) + torch.sum(t * t / (s + 1.0))
        return f, c * x * torch.abs(x) + At.T @ (t / s)

    def hess(x: Tensor) -> Tensor:
        t = At @ x
        s = torch.sqrt(1.0 + t * t)
        return torch.diag(2.0 * c * torch.abs(x)) + (At.T * s**-3) @ At

    def hvp(x: Tensor, v: Tensor) -> Tensor:
        t = At @ x
        s = torch.sqrt(1.0 + t * t)
        return 2.0 * c * torch.abs(x) * v + At.T @ (s**-3 * (At @ v))

    signs = rng.choice([-1.0, 1.0], size=n)
    x0 = np.linalg.solve(A, t0 * signs)
    notes = {
        "L2": "2c + 0.8587 scale^3 (derived in optlib.problems.pseudo_huber)",
        "L": "scale^2 for c = 0 (phi'' <= 1, A^T A = scale^2 I); none for c > 0",
        "f_star": "closed form: x* = 0, f* = 0",
    }
    prob = Problem(
        fun,
        n,
        value_and_grad=value_and_grad,
        hess=hess,
        hvp=hvp,
        constants=Constants(L=scale**2 if c == 0.0 else None, L2=L2, convex=True, notes=notes),
        f_star=0.0,
        x_star=torch.zeros(n, dtype=torch.float64),
        x0=torch.tensor(x0),
        name=problem_name("pseudo-huber", "", {"n": n, "c": c, "scale": scale, "t0": t0, "seed": seed},
                          {"n": 8, "c": 0.0, "scale": 1.0, "t0": 2.0, "seed": 0}),
    )
    prob.data = {"A": A, "c": c}
    return prob
