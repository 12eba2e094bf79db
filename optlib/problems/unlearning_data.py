r"""Seeded numpy data sets of the unlearning checks (:mod:`optlib.theory.unlearning`): raw design matrices and
targets (the checks choose forget sets, fit, and wrap parameters in ``nn.Linear`` themselves).

float64; the same arguments give the same arrays (checked in ``tests/test_problems.py`` with the facts below).

* :func:`seeded_ridge_data` ``(n, d, alpha, seed)`` -> ``(X, y, alpha)``: ``X`` standard normal ``(n, d)``,
  ``y = X w + 0.3 noise`` (``w``, noise standard normal, drawn in that order after ``X``). The ridge objective
  ``sum_i (x_i^T th - y_i)^2 / 2 + alpha/2 ||th||^2`` is a strictly convex quadratic (Hessian
  ``X^T X + alpha I``), so its minimizer is the closed-form solve and one Newton step from anywhere reaches it.
* :func:`seeded_logistic_data` ``(n, d, alpha, seed)`` -> ``(X, y, alpha, order)``: ``X`` standard normal,
  labels ``y_i ~ Bernoulli(sigmoid(x_i^T w))`` as 0./1. (``w`` standard normal), and ``order`` a random
  permutation of ``range(n)`` drawn after them (the checks forget its first k points: nested forget sets).
  With ``alpha > 0`` the regularized logistic objective is strictly convex with a unique minimizer.
* :func:`seeded_softmax_data` ``(n, d, C, seed, scales)`` -> ``(X, y, W0)``: ``X = Z diag(s)`` with ``Z`` standard
  normal, ``W0 = 0.7 G diag(1/s)`` (``G`` standard normal ``(C, d)``) and labels drawn from the model's own
  probabilities ``softmax(X W0^T)``. The logits ``X W0^T = 0.7 Z G^T`` do not depend on the feature scales
  ``s`` (default all ones), so neither do the labels; the scales only stretch the features, which makes the
  retain GGN ``mean_i (diag p_i - p_i p_i^T) (x) x_i x_i^T`` ill-conditioned.
"""

from __future__ import annotations

import numpy as np

__all__ = ["seeded_logistic_data", "seeded_ridge_data", "seeded_softmax_data"]


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(Z):
    Z = Z - Z.max(axis=1, keepdims=True)
    L = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
    return np.exp(L)


def seeded_ridge_data(n=60, d=6, alpha=0.3, seed=0):
    """``(X, y, alpha)``: ``X ~ N(0, 1)^{n x d}``, ``y = X w + 0.3 e`` with ``w, e`` standard normal."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + 0.3 * rng.normal(size=n)
    return X, y, alpha


def seeded_logistic_data(n=400, d=5, alpha=1.0, seed=1):
    """``(X, y, alpha, order)``: Bernoulli labels ``y_i ~ sigmoid(x_i^T w)`` (0./1.) and a random permutation
    ``order`` of ``range(n)`` drawn from the same generator after the data."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (rng.random(n) < _sigmoid(X @ rng.normal(size=d))).astype(float)
    order = rng.permutation(n)
    return X, y, alpha, order


def seeded_softmax_data(n=300, d=5, C=4, seed=3, scales=None):
    """Softmax-regression data ``(X, y, W0)`` and a fixed theta_0 ``W0`` (``(C, d)``) with non-degenerate
    probabilities; labels drawn from ``softmax(X W0^T)``. ``scales`` stretches the features (and shrinks
    ``W0`` to match: the logits and labels stay the same), which makes the retain GGN ill-conditioned."""
    rng = np.random.default_rng(seed)
    s = np.ones(d) if scales is None else np.asarray(scales, dtype=float)
    X = rng.normal(size=(n, d)) * s
    W0 = 0.7 * rng.normal(size=(C, d)) / s
    y = np.array([rng.choice(C, p=p) for p in _softmax(X @ W0.T)])
    return X, y, W0
