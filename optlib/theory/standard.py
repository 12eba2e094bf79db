"""Small problems whose constants and optima the theorem checks need *exactly*.

Each builder returns an :class:`optlib.Problem` with hand-written oracles, its ``constants`` filled
in with derived (documented) values, and a certified optimum: a closed form where one exists, else
an independent numpy Newton solve (never the optimizers under test) with a written error bound in
``problem.constants.notes``.

* :func:`lse_cubic` - convex, Lipschitz Hessian with a derived ``L2``, ``x* = 0``, ``f* = 0``.
* :func:`logistic` - l2-regularized logistic regression on synthetic data with a prescribed
  condition number of the design matrix; curvature ``"bohning"`` (fixed Böhning bound).
* :func:`rosenbrock`, :func:`chebyshev_rosenbrock` - non-convex, ``f* = 0`` at a known point.
* :func:`quadratic` - ``1/2 x^T Q x - c^T x`` with a prescribed spectrum, closed-form optimum.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import expit

from ..problem import Constants, Problem

Tensor = torch.Tensor

# max_t |d^3/dt^3 log(1 + e^t)| = max |sigma''| = 1/(6 sqrt 3), attained where sigma = 1/2 +- 1/(2 sqrt 3).
SIGMOID_SECOND_DERIVATIVE_MAX = 1.0 / (6.0 * math.sqrt(3.0))


# ---------------------------------------------------------------------------------------------
def lse_cubic(n: int = 8, m: int = 24, c: float = 1.0, scale: float = 1.0, D: float = 10.0, seed: int = 0) -> Problem:
    """``f(x) = (c/3) sum_i |x_i|^3 + log sum_j p_j exp(<a_j, x>)`` with ``A^T p = 0``.

    Optimum (closed form). ``p > 0`` sums to 1 and the columns of ``A`` are made orthogonal to
    ``p`` (``A <- A - 1 p^T A``), so ``grad f(0) = c*0 + A^T p = 0``; ``f`` is convex, hence
    ``x* = 0`` and ``f* = log sum_j p_j = 0``. It is the unique minimizer: ``Ah`` constant means
    ``p^T A h = 0 = `` that constant, so ``Ah = 0`` and ``h = 0`` (``A`` has full column rank).

    Hessian Lipschitz constant (derived). ``(c/3)|t|^3`` has second derivative ``2c|t|``, so the
    separable part has ``||diag(2c|x_i|) - diag(2c|y_i|)|| <= 2c ||x - y||_inf <= 2c ||x - y||``.
    For ``g(u) = log sum_j p_j e^{u_j}``, ``D^3 g(u)[h,h,h] = E[(X - EX)^3]`` where ``X = h_j`` with
    probability ``softmax_j``; since ``|X - EX| <= max h - min h`` and ``Var X <= (max h - min h)^2/4``,
    ``|D^3 g[h,h,h]| <= (max h - min h)^3 / 4 <= 2 ||h||_inf^3``. With ``h = A v``,
    ``||Av||_inf <= r ||v||``, ``r = max_j ||a_j||``; a symmetric trilinear form attains its norm on the
    diagonal, so ``L2 <= 2c + 2 r^3``. This is what ``constants.L2`` holds.

    ``x0`` is a fixed random direction of length ``D`` (so ``||x0 - x*|| = D``).
    """
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=m)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    A = rng.normal(size=(m, n)) * scale / math.sqrt(n)
    A = A - np.outer(np.ones(m), p @ A)
    if np.linalg.matrix_rank(A) < n:
        raise ValueError("lse_cubic: A lost full column rank; use m > n")
    r = float(np.max(np.linalg.norm(A, axis=1)))
    L2 = 2.0 * c + 2.0 * r**3
    At = torch.tensor(A)
    logp = torch.tensor(np.log(p))

    def fun(x: Tensor) -> Tensor:
        return (c / 3.0) * torch.sum(torch.abs(x) ** 3) + torch.logsumexp(At @ x + logp, 0)

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        u = At @ x + logp
        lse = torch.logsumexp(u, 0)
        s = torch.exp(u - lse)
        return (c / 3.0) * torch.sum(torch.abs(x) ** 3) + lse, c * x * torch.abs(x) + At.T @ s

    def hess(x: Tensor) -> Tensor:
        u = At @ x + logp
        s = torch.softmax(u, 0)
        As = At.T @ s
        return torch.diag(2.0 * c * torch.abs(x)) + (At.T * s) @ At - torch.outer(As, As)

    x0 = rng.normal(size=n)
    x0 *= D / np.linalg.norm(x0)
    return Problem(
        fun, n, value_and_grad=value_and_grad, hess=hess,
        constants=Constants(L2=L2, convex=True, notes={
            "L2": "2c + 2 max_j ||a_j||^3 (derived in optlib.theory.standard.lse_cubic)",
            "f_star": "closed form: x* = 0, f* = 0",
        }),
        f_star=0.0, x_star=torch.zeros(n, dtype=torch.float64), x0=torch.tensor(x0),
        name=f"lse_cubic(n={n}, m={m}, c={c:g}, scale={scale:g}, seed={seed})",
    )


# ---------------------------------------------------------------------------------------------
def _logistic_np(A: np.ndarray, b: np.ndarray, reg: float):
    n = A.shape[0]

    def f(x: np.ndarray) -> float:
        return float(np.mean(np.logaddexp(0.0, -b * (A @ x)))) + 0.5 * reg * float(x @ x)

    def g(x: np.ndarray) -> np.ndarray:
        return A.T @ (-b * expit(-b * (A @ x))) / n + reg * x

    def H(x: np.ndarray) -> np.ndarray:
        s = expit(A @ x)
        return (A.T * (s * (1.0 - s))) @ A / n + reg * np.eye(A.shape[1])

    return f, g, H


def certify_logistic(A: np.ndarray, b: np.ndarray, reg: float, maxiter: int = 100) -> tuple[np.ndarray, float, float]:
    """Minimize l2-regularized logistic loss by damped Newton in numpy; return ``(x*, f*, err)``.

    ``err = ||g(x*)||^2 / (2 reg)`` bounds ``f(x*) - min f`` (``reg``-strong convexity), so the
    returned ``f*`` is certified to within ``err`` plus the float64 roundoff of one evaluation.
    Independent of the optimizers under test.
    """
    if not reg > 0:
        raise ValueError("certify_logistic needs reg > 0 for its error bound")
    f, g, H = _logistic_np(A, b, reg)
    x = np.zeros(A.shape[1])
    best = (x.copy(), np.inf)
    for _ in range(maxiter):
        gx = g(x)
        gn = float(np.linalg.norm(gx))
        if gn < best[1]:
            best = (x.copy(), gn)
        if gn <= 1e-15:
            break
        d = np.linalg.solve(H(x), -gx)
        t, fx = 1.0, f(x)
        while f(x + t * d) > fx + 1e-4 * t * float(gx @ d) and t > 1e-10:
            t *= 0.5
        x_new = x + t * d
        if np.array_equal(x_new, x):
            break
        x = x_new
    gx = g(x)
    if float(np.linalg.norm(gx)) > best[1]:
        x = best[0]
        gx = g(x)
    return x, f(x), float(gx @ gx) / (2.0 * reg)


def logistic(
    n: int = 400, d: int = 10, cond: float = 10.0, reg: float = 1e-3, signal: float = 3.0, seed: int = 0
) -> Problem:
    """l2-regularized logistic regression ``f(x) = (1/n) sum_i log(1 + exp(-b_i <a_i, x>)) + (reg/2)||x||^2``.

    Data: ``A = Z S`` with ``Z`` standard Gaussian and ``S = diag`` of scales log-spaced from 1 to
    ``1/cond`` (so ``cond(A)`` is about ``cond``); labels ``b_i = +-1`` drawn from the logistic model
    with a planted ``u`` of norm ``signal`` in the ``Z`` coordinates (non-separable for ``n >> d``).

    Curvatures: ``"bohning"`` is Böhning's fixed bound ``A^T A / (4n) + reg I``, valid because
    ``sigma' <= 1/4`` (D. Böhning, "Multinomial logistic regression algorithm", Ann. Inst. Statist.
    Math. 44, 1992). Constants: ``L = ||A||^2/(4n) + reg``, ``mu = reg``, quasi-self-concordance
    ``M = max_i ||a_i||``, ``L2 = max|sigma''| max_i ||a_i|| ||A||^2 / n``.
    Optimum: :func:`certify_logistic` (numpy Newton, certified error in ``constants.notes``).
    """
    rng = np.random.default_rng(seed)
    scales = np.logspace(0.0, -math.log10(cond), d)
    Z = rng.normal(size=(n, d))
    A = Z * scales
    u = rng.normal(size=d)
    u *= signal / np.linalg.norm(u)
    b = np.where(rng.random(n) < expit(Z @ u), 1.0, -1.0)
    At = torch.tensor(A)
    bt = torch.tensor(b)
    normA2 = float(np.linalg.norm(A, 2) ** 2)
    rmax = float(np.max(np.linalg.norm(A, axis=1)))
    bohning = torch.tensor(A.T @ A / (4.0 * n) + reg * np.eye(d))

    def fun(x: Tensor) -> Tensor:
        return torch.mean(torch.logaddexp(torch.zeros((), dtype=x.dtype), -bt * (At @ x))) + 0.5 * reg * torch.dot(x, x)

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        t = -bt * (At @ x)
        f = torch.mean(torch.logaddexp(torch.zeros((), dtype=x.dtype), t)) + 0.5 * reg * torch.dot(x, x)
        return f, At.T @ (-bt * torch.sigmoid(t)) / n + reg * x

    def hess(x: Tensor) -> Tensor:
        s = torch.sigmoid(At @ x)
        return (At.T * (s * (1.0 - s))) @ At / n + reg * torch.eye(d, dtype=x.dtype)

    cache: dict[str, object] = {}

    def solve() -> None:
        if not cache:
            xs, fs, err = certify_logistic(A, b, reg)
            cache.update(x=xs, f=fs, err=err)
            prob.constants.notes["f_star"] = f"numpy Newton; f(x*) - min f <= ||g||^2/(2 reg) = {err:.1e}"

    prob = Problem(
        fun, d, value_and_grad=value_and_grad, hess=hess,
        curvatures={"bohning": lambda x: bohning},
        constants=Constants(
            L=normA2 / (4.0 * n) + reg, mu=reg, M=rmax,
            L2=SIGMOID_SECOND_DERIVATIVE_MAX * rmax * normA2 / n, convex=True,
            notes={"cond": f"{cond:g}"},
        ),
        f_star=lambda: (solve(), cache["f"])[1],
        x_star=lambda: (solve(), torch.tensor(cache["x"]))[1],
        x0=torch.zeros(d, dtype=torch.float64),
        name=f"logistic(n={n}, d={d}, cond={cond:g}, reg={reg:g}, seed={seed})",
    )
    return prob


# ---------------------------------------------------------------------------------------------
def rosenbrock(a: float = 1.0, b: float = 100.0, x0: tuple[float, float] = (-1.2, 1.0)) -> Problem:
    """``f(x) = (a - x_1)^2 + b (x_2 - x_1^2)^2``; ``x* = (a, a^2)``, ``f* = 0`` (closed form)."""

    def fun(x: Tensor) -> Tensor:
        return (a - x[0]) ** 2 + b * (x[1] - x[0] ** 2) ** 2

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        r = x[1] - x[0] ** 2
        g = torch.stack([-2.0 * (a - x[0]) - 4.0 * b * x[0] * r, 2.0 * b * r])
        return (a - x[0]) ** 2 + b * r**2, g

    def hess(x: Tensor) -> Tensor:
        h11 = 2.0 - 4.0 * b * (x[1] - x[0] ** 2) + 8.0 * b * x[0] ** 2
        h12 = -4.0 * b * x[0]
        return torch.stack([torch.stack([h11, h12]), torch.stack([h12, torch.full_like(h12, 2.0 * b)])])

    return Problem(
        fun, 2, value_and_grad=value_and_grad, hess=hess, constants=Constants(convex=False),
        f_star=0.0, x_star=torch.tensor([a, a * a], dtype=torch.float64),
        x0=torch.tensor(x0, dtype=torch.float64), name=f"rosenbrock(a={a:g}, b={b:g})",
    )


def chebyshev_rosenbrock(n: int = 3) -> Problem:
    """Nesterov's Chebyshev-Rosenbrock ``f(x) = (x_1 - 1)^2/4 + sum_i (x_{i+1} - 2 x_i^2 + 1)^2``.

    ``f* = 0`` at ``x* = (1, ..., 1)`` (closed form); the customary start is ``(-1, 1, ..., 1)``.
    """

    def fun(x: Tensor) -> Tensor:
        return 0.25 * (x[0] - 1.0) ** 2 + torch.sum((x[1:] - 2.0 * x[:-1] ** 2 + 1.0) ** 2)

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        r = x[1:] - 2.0 * x[:-1] ** 2 + 1.0
        g = torch.zeros_like(x)
        g[0] = 0.5 * (x[0] - 1.0)
        g[1:] += 2.0 * r
        g[:-1] += -8.0 * x[:-1] * r
        return 0.25 * (x[0] - 1.0) ** 2 + torch.sum(r**2), g

    def hess(x: Tensor) -> Tensor:
        r = x[1:] - 2.0 * x[:-1] ** 2 + 1.0
        H = torch.zeros(n, n, dtype=x.dtype)
        H[0, 0] = 0.5
        idx = torch.arange(n - 1)
        H[idx + 1, idx + 1] += 2.0
        H[idx, idx] += 32.0 * x[:-1] ** 2 - 8.0 * r
        H[idx, idx + 1] = -8.0 * x[:-1]
        H[idx + 1, idx] = -8.0 * x[:-1]
        return H

    x0 = torch.ones(n, dtype=torch.float64)
    x0[0] = -1.0
    return Problem(
        fun, n, value_and_grad=value_and_grad, hess=hess, constants=Constants(convex=False),
        f_star=0.0, x_star=torch.ones(n, dtype=torch.float64), x0=x0, name=f"chebyshev_rosenbrock(n={n})",
    )


# ---------------------------------------------------------------------------------------------
def quadratic(eigenvalues: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0), seed: int = 0) -> Problem:
    """``f(x) = 1/2 x^T Q x - c^T x`` with ``Q = U diag(eigenvalues) U^T`` (random orthogonal ``U``).

    ``x* = Q^{-1} c``, ``f* = -1/2 c^T Q^{-1} c`` (closed form, numpy). ``problem.Q``/``problem.c``
    hold the data as numpy arrays for reference iterations.
    """
    rng = np.random.default_rng(seed)
    lam = np.asarray(eigenvalues, dtype=float)
    n = lam.size
    U, _ = np.linalg.qr(rng.normal(size=(n, n)))
    Q = (U * lam) @ U.T
    Q = 0.5 * (Q + Q.T)
    c = rng.normal(size=n)
    xs = np.linalg.solve(Q, c)
    Qt, ct = torch.tensor(Q), torch.tensor(c)

    def fun(x: Tensor) -> Tensor:
        return 0.5 * torch.dot(x, Qt @ x) - torch.dot(ct, x)

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        Qx = Qt @ x
        return 0.5 * torch.dot(x, Qx) - torch.dot(ct, x), Qx - ct

    prob = Problem(
        fun, n, value_and_grad=value_and_grad, hess=lambda x: Qt,
        constants=Constants(L=float(lam.max()), mu=float(lam.min()), L2=0.0, convex=bool(lam.min() >= 0)),
        f_star=-0.5 * float(c @ xs), x_star=torch.tensor(xs), x0=torch.tensor(rng.normal(size=n) * 3.0),
        name=f"quadratic(eig={tuple(float(v) for v in lam)}, seed={seed})",
    )
    prob.Q, prob.c = Q, c  # type: ignore[attr-defined]
    return prob


# ---------------------------------------------------------------------------------------------
# max_t |d^3/dt^3 sqrt(1 + t^2)| = max 3|t|(1 + t^2)^(-5/2), attained at |t| = 1/2.
PSEUDO_HUBER_THIRD_MAX = 1.5 * 1.25**-2.5


def pseudo_huber(n: int = 8, c: float = 0.0, scale: float = 1.0, t0: float = 2.0, seed: int = 0) -> Problem:
    """``f(x) = (c/3) sum_i |x_i|^3 + sum_j (sqrt(1 + <a_j, x>^2) - 1)`` with ``A = scale * Q``, ``Q`` orthogonal.

    Convex with a Lipschitz Hessian; every term is minimized at 0, so ``x* = 0`` and ``f* = 0``
    (closed form). Far from 0 the pseudo-Huber terms grow linearly and their curvature decays like
    ``|t|^-3``: undamped Newton steps overshoot (from ``|t| > 1`` pure Newton maps ``t -> -t^3``),
    which is what a too-small regularization shows on the O(1/k^2) check.

    Hessian Lipschitz constant (derived). ``phi(t) = sqrt(1 + t^2)`` has ``phi''' = -3t(1 + t^2)^(-5/2)``,
    largest in modulus at ``|t| = 1/2``: ``1.5 * 1.25^-2.5 = 0.8587``. Then
    ``|D^3 f[h,h,h]| <= 0.8587 sum_j |<a_j,h>|^3 <= 0.8587 ||Ah||^3 = 0.8587 scale^3 ||h||^3``; with the
    cubic term (``2c``, see :func:`lse_cubic`), ``L2 = 2c + 0.8587 scale^3`` (attained for ``c = 0``).

    ``x0`` has ``|<a_j, x0>| = t0`` for every ``j`` (random signs), so ``D = ||x0|| = t0 sqrt(n) / scale``.
    """
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    A = scale * Q
    At = torch.tensor(A)
    L2 = 2.0 * c + PSEUDO_HUBER_THIRD_MAX * scale**3

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        t = At @ x
        s = torch.sqrt(1.0 + t * t)
        f = (c / 3.0) * torch.sum(torch.abs(x) ** 3) + torch.sum(t * t / (s + 1.0))  # = sum(s - 1), no cancellation
        return f, c * x * torch.abs(x) + At.T @ (t / s)

    def hess(x: Tensor) -> Tensor:
        t = At @ x
        s = torch.sqrt(1.0 + t * t)
        return torch.diag(2.0 * c * torch.abs(x)) + (At.T * s**-3) @ At

    signs = rng.choice([-1.0, 1.0], size=n)
    x0 = np.linalg.solve(A, t0 * signs)
    return Problem(
        lambda x: value_and_grad(x)[0], n, value_and_grad=value_and_grad, hess=hess,
        constants=Constants(L=scale**2, L2=L2, convex=True, notes={
            "L2": "2c + 0.8587 scale^3 (derived in optlib.theory.standard.pseudo_huber)",
            "f_star": "closed form: x* = 0, f* = 0",
        }),
        f_star=0.0, x_star=torch.zeros(n, dtype=torch.float64), x0=torch.tensor(x0),
        name=f"pseudo_huber(n={n}, c={c:g}, scale={scale:g}, t0={t0:g}, seed={seed})",
    )
