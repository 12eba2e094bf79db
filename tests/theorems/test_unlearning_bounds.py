r"""Proofs as tests for Gauss–Newton unlearning (spec 50 §6 items 6 and 7, and the K-FADE step rule of §5).

The paper's own constants are not known (spec 95 §5); every statement here is derived (in the docstring of
:mod:`optlib.unlearning.methods` and below) and checked on a problem where it can be computed exactly. Reference
numbers come from closed forms and numpy Newton solves written in this file, never from the code under test.
Each statement has a "would catch" twin: a deliberately wrong variant of the method (a subclass differing in
one place) must fail the same check. float64 throughout.

1. Ridge regression: one Newton step with the exact retain Hessian from :math:`\theta_0` is the retrained
   optimum (the objective is quadratic).
2. Logistic regression: the one-step error against retraining is :math:`O(\lVert\theta_r - \theta_0\rVert^2)`
   (Newton's local quadratic convergence); the fitted log-log slope over forget sets of 2 to 64 of 400 points is 2.
3. K-FADE's KL trust region (and its consequence, spec 50 §6 item 6: at equal forget-loss increase K-FADE's
   retain KL is below gradient ascent's, since to second order it minimizes the quadratic KL model among steps
   with the same linear increase): :math:`\tfrac12(\eta\delta)^\top(G_r+\lambda I)(\eta\delta) = \varepsilon` exactly,
   :math:`\tfrac12(\eta\delta)^\top G_r(\eta\delta) \to \varepsilon` as :math:`\lambda \to 0`, and the true retain KL
   :math:`\to \varepsilon` as :math:`\varepsilon \to 0`.
4. Re-application: for softmax regression :math:`\nabla^2 L_f = \frac1{N_f}\sum_i(\operatorname{diag}p_i -
   p_ip_i^\top)\otimes x_ix_i^\top \preceq \tfrac12 I\otimes\frac1{N_f}X_f^\top X_f` (Böhning's bound
   :math:`\operatorname{diag}p - pp^\top \preceq \tfrac12 I`), so with
   :math:`L = \tfrac12\lambda_{\max}(X_f^\top X_f/N_f)`,
   :math:`|[L_f(\theta_\mathrm{ft}+\Delta) - L_f(\theta_\mathrm{ft})] - [L_f(\theta_0+\Delta) - L_f(\theta_0)]|
   \le L\,\lVert\Delta\rVert\,\lVert\theta_\mathrm{ft}-\theta_0\rVert`:
   the re-applied delta keeps the forget loss up, degrading at most linearly in the fine-tune distance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from optlib.unlearning import KFADE, NewtonUnlearning

# ------------------------------------------------------------------------------------------------
# Deliberately wrong variants (each differs from the method in one place)
# ------------------------------------------------------------------------------------------------


class NoFactorNewton(NewtonUnlearning):
    """Drops the N_f / N_r factor."""

    def factor(self):
        return 1.0


class DownhillNewton(NewtonUnlearning):
    """Steps downhill on the forget loss (wrong sign)."""

    def step_size(self, g, d):
        return -super().step_size(g, d)


class NoSqrtKFADE(KFADE):
    """eta = 2 eps / g^T delta (square root forgotten)."""

    def step_size(self, g, d):
        return 2.0 * self.kl_budget / float(g @ d)


class NoTwoKFADE(KFADE):
    """eta = sqrt(eps / g^T delta) (factor 2 of the quadratic model forgotten)."""

    def step_size(self, g, d):
        return math.sqrt(self.kl_budget / float(g @ d))


class WrongMetricKFADE(KFADE):
    """Multiplies the gradient by the curvature instead of solving with it (delta = G g)."""

    def direction(self, g):
        return self.curvature @ g


class DownhillKFADE(KFADE):
    """Steps downhill on the forget loss (wrong sign)."""

    def step_size(self, g, d):
        return -super().step_size(g, d)


# ------------------------------------------------------------------------------------------------
# Problems and independent references (numpy)
# ------------------------------------------------------------------------------------------------


def linear_model(theta: np.ndarray) -> torch.nn.Linear:
    """``nn.Linear`` without bias whose weight is ``theta`` (a vector: one output; a matrix: C outputs)."""
    W = np.atleast_2d(theta)
    m = torch.nn.Linear(W.shape[1], W.shape[0], bias=False).double()
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(W))
    return m


def half_squared_error(out, t):
    return 0.5 * ((out.squeeze(-1) - t) ** 2).mean()


def logistic_loss(out, t):
    return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), t)


def ridge_problem(n=60, d=6, alpha=0.3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + 0.3 * rng.normal(size=n)
    return X, y, alpha


def ridge_fit(X, y, alpha):
    """argmin sum_i (x_i^T th - y_i)^2 / 2 + alpha/2 ||th||^2 (closed form)."""
    return np.linalg.solve(X.T @ X + alpha * np.eye(X.shape[1]), X.T @ y)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def logistic_fit(X, y, alpha):
    """argmin sum_i log(1 + e^{z_i}) - y_i z_i + alpha/2 ||th||^2 by Newton's method to ||grad|| < 1e-13."""
    th = np.zeros(X.shape[1])
    for _ in range(100):
        p = sigmoid(X @ th)
        g = X.T @ (p - y) + alpha * th
        if np.linalg.norm(g) < 1e-13:
            return th
        H = X.T @ (X * (p * (1 - p))[:, None]) + alpha * np.eye(X.shape[1])
        th = th - np.linalg.solve(H, g)
    raise AssertionError("reference Newton solve did not converge")


def logistic_retain_hessian(X, th, alpha):
    """Hessian of the mean retain objective (sum of losses + alpha/2 ||th||^2) / N_r."""
    p = sigmoid(X @ th)
    return (X.T @ (X * (p * (1 - p))[:, None]) + alpha * np.eye(X.shape[1])) / X.shape[0]


def log_softmax_np(Z):
    Z = Z - Z.max(axis=1, keepdims=True)
    return Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))


def softmax_np(Z):
    return np.exp(log_softmax_np(Z))


def softmax_ggn(X, W):
    """Dense G = mean_i (diag p_i - p_i p_i^T) kron x_i x_i^T over W.flatten() (row-major (C, d))."""
    P = softmax_np(X @ W.T)
    C, d = W.shape
    G = np.zeros((C * d, C * d))
    for x, p in zip(X, P):
        G += np.kron(np.diag(p) - np.outer(p, p), np.outer(x, x))
    return G / X.shape[0]


def mean_kl(X, W0, W):
    lp, lq = log_softmax_np(X @ W0.T), log_softmax_np(X @ W.T)
    return float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=1)))


def mean_nll(X, y, W):
    return float(-np.mean(log_softmax_np(X @ W.T)[np.arange(len(y)), y]))


def softmax_problem(n=300, d=5, C=4, seed=3, scales=None):
    """Softmax-regression data and a fixed theta_0 with non-degenerate probabilities; ``scales`` stretches the
    features (and shrinks theta_0 to match), which makes the retain GGN ill-conditioned."""
    rng = np.random.default_rng(seed)
    s = np.ones(d) if scales is None else np.asarray(scales, dtype=float)
    X = rng.normal(size=(n, d)) * s
    W0 = 0.7 * rng.normal(size=(C, d)) / s
    y = np.array([rng.choice(C, p=p) for p in softmax_np(X @ W0.T)])
    return X, y, W0


def tensors(X, y):
    return torch.from_numpy(X), torch.from_numpy(y)


# ------------------------------------------------------------------------------------------------
# 1. Ridge: one Newton step = retraining
# ------------------------------------------------------------------------------------------------


def ridge_step_error(cls=NewtonUnlearning, n_forget=9):
    X, y, alpha = ridge_problem()
    th0 = ridge_fit(X, y, alpha)
    Xf, yf, Xr, yr = X[:n_forget], y[:n_forget], X[n_forget:], y[n_forget:]
    th_r = ridge_fit(Xr, yr, alpha)
    H_r = (Xr.T @ Xr + alpha * np.eye(X.shape[1])) / len(yr)
    model = linear_model(th0)
    cls(model, torch.from_numpy(H_r), n_retain=len(yr), loss=half_squared_error).run(tensors(Xf, yf))
    th1 = model.weight.detach().numpy()[0]
    return float(np.abs(th1 - th_r).max()), float(np.linalg.norm(th_r - th0))


def test_ridge_newton_step_equals_retraining():
    """Ridge regression, N = 60, d = 6, alpha = 0.3, 9 points forgotten: theta_0 + (N_f/N_r) H_r^{-1} grad L_f
    equals the closed-form retrained optimum to 1e-10 (the objective is quadratic, so one Newton step is exact)."""
    err, moved = ridge_step_error()
    assert moved > 1e-2  # the retrained optimum really is elsewhere
    assert err <= 1e-10, err


def test_ridge_would_catch_missing_factor():
    """Would catch: without N_f/N_r the step is N_r/N_f = 5.7 times too long."""
    err, moved = ridge_step_error(NoFactorNewton)
    assert err > 1e-2 * moved


def test_ridge_would_catch_wrong_sign():
    """Would catch: the downhill step moves away from the retrained optimum (error 2 ||theta_r - theta_0||)."""
    err, moved = ridge_step_error(DownhillNewton)
    assert err > 0.5 * moved


# ------------------------------------------------------------------------------------------------
# 2. Logistic regression: error O(||theta_r - theta_0||^2)
# ------------------------------------------------------------------------------------------------

FORGET_SIZES = (2, 4, 8, 16, 32, 64)
SLOPE_RANGE = (1.8, 2.2)  # fitted slope of log(error) against log(distance); 1.93 measured


def logistic_errors(cls=NewtonUnlearning, hessian="exact"):
    rng = np.random.default_rng(1)
    n, d, alpha = 400, 5, 1.0
    X = rng.normal(size=(n, d))
    y = (rng.random(n) < sigmoid(X @ rng.normal(size=d))).astype(float)
    th0 = logistic_fit(X, y, alpha)
    perm = rng.permutation(n)
    dists, errs = [], []
    for k in FORGET_SIZES:
        f, r = perm[:k], perm[k:]
        th_r = logistic_fit(X[r], y[r], alpha)
        H_r = logistic_retain_hessian(X[r], th0, alpha)
        if hessian == "scaled_identity":  # a first-order step: curvature replaced by its mean eigenvalue
            H_r = np.trace(H_r) / d * np.eye(d)
        model = linear_model(th0)
        cls(model, torch.from_numpy(H_r), n_retain=len(r), loss=logistic_loss).run(tensors(X[f], y[f]))
        dists.append(np.linalg.norm(th_r - th0))
        errs.append(np.linalg.norm(model.weight.detach().numpy()[0] - th_r))
    slope = float(np.polyfit(np.log(dists), np.log(errs), 1)[0])
    return slope, np.array(dists), np.array(errs)


def test_logistic_newton_error_is_quadratic():
    """Logistic regression (N = 400, d = 5, alpha = 1), forget sets of 2..64 nested random points: the error of
    the one-step estimate against the retrained optimum (numpy Newton to ||grad|| < 1e-13) scales as
    ||theta_r - theta_0||^2: fitted log-log slope in [1.8, 2.2], and error / distance^2 bounded (< 1)."""
    slope, dists, errs = logistic_errors()
    assert SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1], slope
    assert np.all(errs < dists)  # a real improvement over not unlearning at all
    assert np.all(errs / dists**2 < 1.0), errs / dists**2


def test_logistic_would_catch_first_order_step():
    """Would catch: with the curvature replaced by a scaled identity the error is O(distance): slope ~1."""
    slope, _, _ = logistic_errors(hessian="scaled_identity")
    assert not SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1], slope


def test_logistic_would_catch_missing_factor():
    """Would catch: without N_f/N_r the error does not shrink with the forget set (slope ~0)."""
    slope, _, _ = logistic_errors(NoFactorNewton)
    assert not SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1], slope


# ------------------------------------------------------------------------------------------------
# 3. The KL trust region of K-FADE
# ------------------------------------------------------------------------------------------------


def kfade_one_step(eps, lam, cls=KFADE):
    """One K-FADE step on softmax regression with the exact (dense) retain GGN; returns (delta, G, X_r, W0)."""
    X, y, W0 = softmax_problem()
    Xf, yf, Xr = X[:40], y[:40], X[40:]
    G = softmax_ggn(Xr, W0)
    model = linear_model(W0)
    cls(model, torch.from_numpy(G), kl_budget=eps, damping=lam).run((torch.from_numpy(Xf), torch.from_numpy(yf)))
    delta = model.weight.detach().numpy() - W0
    return delta.reshape(-1), G, Xr, W0, (Xf, yf)


@pytest.mark.parametrize("lam", [1e-1, 1e-3, 1e-6])
def test_kfade_step_meets_damped_budget_exactly(lam):
    """Derived (methods docstring): eta = sqrt(2 eps / g^T delta) puts the step on the boundary of the damped
    trust region, 1/2 (eta delta)^T (G_r + lambda I) (eta delta) = eps, to 1e-10 relative (G_r dense, numpy)."""
    eps = 1e-3
    s, G, _, _, _ = kfade_one_step(eps, lam)
    model = 0.5 * s @ (G + lam * np.eye(len(s))) @ s
    assert abs(model / eps - 1) <= 1e-10, model / eps


def test_kfade_undamped_model_tends_to_budget():
    """1/2 (eta delta)^T G_r (eta delta) = eps - lambda eta^2 ||delta||^2 / 2 -> eps as lambda -> 0: the gap
    shrinks at least 10x per 100x smaller lambda, and is below 1e-5 at lambda = 1e-6."""
    eps = 1e-3
    gaps = []
    for lam in (1e-2, 1e-4, 1e-6):
        s, G, _, _, _ = kfade_one_step(eps, lam)
        gaps.append(abs(0.5 * s @ G @ s / eps - 1))
    assert gaps[1] < gaps[0] / 10 and gaps[2] < gaps[1] / 10, gaps
    assert gaps[2] < 1e-5, gaps


@pytest.mark.parametrize("cls", [NoSqrtKFADE, NoTwoKFADE])
def test_kfade_budget_would_catch_wrong_step_size(cls):
    """Would catch: eta without the square root, or without the factor 2, misses the damped budget by far."""
    eps, lam = 1e-3, 1e-3
    s, G, _, _, _ = kfade_one_step(eps, lam, cls)
    model = 0.5 * s @ (G + lam * np.eye(len(s))) @ s
    assert abs(model / eps - 1) > 0.1, model / eps


def test_kfade_true_kl_tends_to_budget():
    """The true retain KL (numpy) of one undamped-limit step approaches eps as eps -> 0: KL/eps - 1 = O(sqrt eps)
    (the cubic term of the KL over the quadratic model); the gap shrinks by at least 2x per 10x smaller eps and is
    below 1e-2 at eps = 1e-5, while the forget loss rises."""
    lam = 1e-8
    gaps = []
    for eps in (1e-2, 1e-3, 1e-4, 1e-5):
        s, _, Xr, W0, (Xf, yf) = kfade_one_step(eps, lam)
        W = W0 + s.reshape(W0.shape)
        gaps.append(abs(mean_kl(Xr, W0, W) / eps - 1))
        assert mean_nll(Xf, yf, W) > mean_nll(Xf, yf, W0)
    assert all(b < a / 2 for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 1e-2, gaps


def test_kfade_would_catch_wrong_sign():
    """Would catch: a downhill step (wrong sign) lowers the forget loss at the same KL."""
    s, _, _, W0, (Xf, yf) = kfade_one_step(1e-3, 1e-3, DownhillKFADE)
    assert mean_nll(Xf, yf, W0 + s.reshape(W0.shape)) < mean_nll(Xf, yf, W0)


# ------------------------------------------------------------------------------------------------
# 4. Re-application after fine-tuning
# ------------------------------------------------------------------------------------------------


def reapplication(sign=1.0):
    """K-FADE delta on softmax regression, re-applied to theta_0 fine-tuned by k full-batch gradient steps
    (lr 0.2) on a shifted retain distribution. Returns the increase at theta_0, and per k the fine-tune
    distance, the increase at theta_ft and the derived bound on the degradation."""
    X, y, W0 = softmax_problem()
    Xf, yf, Xr, yr = X[:40], y[:40], X[40:], y[40:]
    G = softmax_ggn(Xr, W0)
    model = linear_model(W0)
    KFADE(model, torch.from_numpy(G), kl_budget=0.05, damping=1e-3).run((torch.from_numpy(Xf), torch.from_numpy(yf)),
                                                                       steps=2)
    D = sign * (model.weight.detach().numpy() - W0)
    inc0 = mean_nll(Xf, yf, W0 + D) - mean_nll(Xf, yf, W0)
    L = 0.5 * float(np.linalg.eigvalsh(Xf.T @ Xf / len(yf))[-1])  # bound on ||Hessian of L_f|| (Boehning)
    rng = np.random.default_rng(7)
    y_shift = np.where(rng.random(len(yr)) < 0.3, (yr + 1) % W0.shape[0], yr)  # new task: 30% relabelled
    rows = []
    W = W0.copy()
    done = 0
    for k in (1, 3, 10, 30, 100):
        for _ in range(k - done):  # gradient of the mean cross-entropy (numpy)
            P = softmax_np(Xr @ W.T)
            P[np.arange(len(y_shift)), y_shift] -= 1.0
            W = W - 0.2 * (P.T @ Xr) / len(y_shift)
        done = k
        dist = float(np.linalg.norm(W - W0))
        inc = mean_nll(Xf, yf, W + D) - mean_nll(Xf, yf, W)
        rows.append((dist, inc, L * np.linalg.norm(D) * dist))
    return inc0, rows


def test_reapplied_delta_keeps_forget_loss_high():
    """The degradation |inc(theta_ft) - inc(theta_0)| stays within the derived bound
    (1/2) lambda_max(X_f^T X_f / N_f) ||Delta|| ||theta_ft - theta_0|| at every fine-tune distance (measured:
    about 0.07 of the bound), and at the smallest distances (bound < inc(theta_0)/2) the re-applied delta still
    raises the forget loss by more than half its original increase."""
    inc0, rows = reapplication()
    assert inc0 > 0.1
    for dist, inc, bound in rows:
        assert abs(inc - inc0) <= bound * (1 + 1e-9), (dist, inc, inc0, bound)
        if bound < inc0 / 2:
            assert inc > inc0 / 2, (dist, inc, inc0)
    assert rows[0][2] < inc0 / 2  # the smallest fine-tune is within the bound's useful range


def test_reapplication_would_catch_wrong_sign():
    """Would catch: re-applying -Delta lowers the forget loss (the 'keeps it high' check fails)."""
    inc0, rows = reapplication(sign=-1.0)
    assert inc0 < 0 and rows[0][1] < 0


# ------------------------------------------------------------------------------------------------
# 3b. Pareto comparison with gradient ascent
# ------------------------------------------------------------------------------------------------

SCALES = (3.0, 1.0, 1.0, 0.5, 0.3)  # feature scales: an ill-conditioned retain GGN


def kl_at_equal_increase(cls, eps):
    """One step of ``cls`` (exact retain GGN, lambda = 1e-8) and gradient ascent with its step size bisected
    (numpy) to the same forget-loss increase; returns (KL of ``cls``, KL of gradient ascent)."""
    X, y, W0 = softmax_problem(scales=SCALES)
    Xf, yf, Xr = X[:40], y[:40], X[40:]
    G = softmax_ggn(Xr, W0)
    model = linear_model(W0)
    cls(model, torch.from_numpy(G), kl_budget=eps, damping=1e-8).run(tensors(Xf, yf))
    W = model.weight.detach().numpy()
    inc = mean_nll(Xf, yf, W) - mean_nll(Xf, yf, W0)
    P = softmax_np(Xf @ W0.T)
    P[np.arange(len(yf)), yf] -= 1.0
    g = P.T @ Xf / len(yf)  # gradient of the mean forget NLL (numpy)
    lo, hi = 0.0, 100.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mean_nll(Xf, yf, W0 + mid * g) - mean_nll(Xf, yf, W0) < inc else (lo, mid)
    return mean_kl(Xr, W0, W), mean_kl(Xr, W0, W0 + lo * g)


@pytest.mark.parametrize("eps", [1e-3, 1e-2])
def test_kfade_beats_gradient_ascent_at_equal_forget_increase(eps):
    """Softmax regression with feature scales (3, 1, 1, 0.5, 0.3): one K-FADE step with the exact retain GGN
    reaches a forget-loss increase with less true retain KL (numpy) than the gradient-ascent step reaching the
    same increase (measured ratio 0.42-0.45)."""
    kl_kfade, kl_ga = kl_at_equal_increase(KFADE, eps)
    assert kl_kfade < 0.8 * kl_ga, (kl_kfade, kl_ga)


@pytest.mark.parametrize("eps", [1e-3, 1e-2])
def test_pareto_would_catch_wrong_metric(eps):
    """Would catch: multiplying by G instead of solving with it does worse than gradient ascent (ratio ~1.1)."""
    kl_wrong, kl_ga = kl_at_equal_increase(WrongMetricKFADE, eps)
    assert kl_wrong > kl_ga, (kl_wrong, kl_ga)
