r"""Stochastic bilevel learning tasks on scikit-learn data (no network): data hyper-cleaning and
per-feature L2 hyperparameter optimization, as :class:`optlib.bilevel.BilevelProblem`\ s with minibatch samplers.

Both tasks share the preprocessing: the rows of the design matrix are standardized per feature (statistics of the
training split), then scaled to unit Euclidean norm and given a constant bias feature, so every row ``a_i`` has
``||a_i||^2 = 2``. Then the per-example cross-entropy of a linear softmax model has Hessian in ``W`` at most
``||a_i||^2/2 = 1`` (the softmax covariance has largest eigenvalue at most 1/2), and the logistic loss at most
``||a_i||^2/4 = 1/2``: the lower-level smoothness constants below follow.

``hyper_cleaning(...)``
    digits (1797 images, 64 features, 10 classes), a seeded split into ``n_train`` / ``n_val`` / rest (test);
    a fraction ``flip`` of the training labels replaced by a uniformly drawn *different* class. Upper variable
    ``x in R^{n_train}``: per-example weight logits, weights ``sigmoid(x_i)``; lower variable ``y``: the
    ``65 x 10`` weights of a linear softmax classifier (flat). ``g(x, y; B) = mean_{i in B} sigmoid(x_i)
    CE(y; a_i, noisy b_i) + (reg/2)||y||^2`` (strongly convex: ``mu = reg``, ``l_g1 <= 1 + reg``);
    ``f(x, y; B') = mean_{j in B'} CE(y; a_j, b_j)`` on the clean validation split (f does not depend on x
    directly). Test metric: accuracy of ``y`` on the clean test split.
``l2_hyperparameters(...)``
    breast_cancer (569 x 30, binary), a seeded split; upper ``x in R^{30}``: log per-feature L2 coefficients;
    lower ``y in R^{31}`` (weights and an unregularized bias): ``g = mean logistic loss on the training batch +
    (1/2) sum_j exp(x_j) w_j^2 + (reg/2) y^2`` with a small floor ``reg`` that keeps ``g`` strongly convex
    uniformly (``mu >= reg``, ``l_g1 <= 1/2 + max_j exp(x_j) + reg`` — x-dependent, so not recorded);
    ``f`` = mean logistic loss on the validation split. Test metric: accuracy and loss on the test split.

Batches are index tensors drawn with replacement by the problem's samplers from the ``torch.Generator`` the bilevel
driver owns, so a run is reproducible from its seed. Everything is float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from optlib.bilevel.problem import BilevelConstants, BilevelProblem

DTYPE = torch.float64


@dataclass
class BilevelTask:
    """A problem with its evaluation: ``evaluate(x, y) -> {"test_acc", "test_loss", "val_loss"}``."""

    problem: BilevelProblem
    evaluate: Any
    info: dict[str, Any]


def _prepare(features: np.ndarray, train_idx: np.ndarray) -> Tensor:
    mean = features[train_idx].mean(0)
    std = features[train_idx].std(0)
    std[std == 0] = 1.0
    z = (features - mean) / std
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return torch.from_numpy(np.hstack([z, np.ones((len(z), 1))])).to(DTYPE)


def _split(n: int, sizes: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    a, b = sizes
    if a + b >= n:
        raise ValueError(f"n_train + n_val = {a + b} leaves no test data out of {n}")
    return perm[:a], perm[a:a + b], perm[a + b:]


def _sampler(n: int, batch: int):
    def draw(gen: torch.Generator) -> Tensor:
        return torch.randint(n, (batch,), generator=gen)

    return draw


def hyper_cleaning(*, n_train: int = 600, n_val: int = 300, flip: float = 0.35, reg: float = 1e-2,
                   batch: int = 64, seed: int = 0) -> BilevelTask:
    """Data hyper-cleaning on digits (module docstring). ``seed`` fixes the split and the flipped labels."""
    from sklearn.datasets import load_digits

    if not 0.0 <= flip < 1.0:
        raise ValueError(f"flip must lie in [0, 1), got {flip}")
    data = load_digits()
    tr, va, te = _split(len(data.target), (n_train, n_val), seed)
    A = _prepare(data.data.astype(np.float64), tr)
    labels = torch.from_numpy(data.target.astype(np.int64))
    k = 10
    rng = np.random.default_rng(seed + 1)
    noisy = data.target[tr].copy()
    flipped = rng.random(n_train) < flip
    noisy[flipped] = (noisy[flipped] + rng.integers(1, k, flipped.sum())) % k  # a different class
    Atr, btr = A[tr], torch.from_numpy(noisy)
    Ava, bva, Ate, bte = A[va], labels[va], A[te], labels[te]
    d = A.shape[1]

    def g(x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
        W = y.view(d, k)
        ce = F.cross_entropy(Atr[idx] @ W, btr[idx], reduction="none")
        return (torch.sigmoid(x[idx]) * ce).mean() + 0.5 * reg * (y @ y)

    def f(x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
        return F.cross_entropy(Ava[idx] @ y.view(d, k), bva[idx])

    consts = BilevelConstants(mu=reg, l_g1=1.0 + reg, notes={
        "l_g1": "rows with ||a||^2 = 2, softmax covariance <= 1/2 (weights sigmoid <= 1)"})
    prob = BilevelProblem(f, g, torch.zeros(n_train, dtype=DTYPE), torch.zeros(d * k, dtype=DTYPE),
                          upper_sampler=_sampler(n_val, batch), lower_sampler=_sampler(n_train, batch),
                          constants=consts, name=f"hyper-cleaning-digits-flip{flip:g}", dtype=DTYPE)
    prob.finite_sum = (n_val, n_train)

    def evaluate(x: Tensor, y: Tensor) -> dict[str, float]:
        with torch.no_grad():
            W = y.view(d, k)
            logits = Ate @ W
            return {"test_acc": float((logits.argmax(1) == bte).double().mean()),
                    "test_loss": float(F.cross_entropy(logits, bte)),
                    "val_loss": float(F.cross_entropy(Ava @ W, bva))}

    info = {"task": "hyper-cleaning", "dataset": "sklearn digits", "n_train": n_train, "n_val": n_val,
            "n_test": len(te), "flip": flip, "flipped": int(flipped.sum()), "reg": reg, "batch": batch, "seed": seed,
            "nx": n_train, "ny": d * k}
    return BilevelTask(prob, evaluate, info)


def l2_hyperparameters(*, n_train: int = 200, n_val: int = 150, reg: float = 1e-3, batch: int = 32,
                       seed: int = 0) -> BilevelTask:
    """Per-feature L2 coefficients of logistic regression on breast_cancer (module docstring)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    tr, va, te = _split(len(data.target), (n_train, n_val), seed)
    A = _prepare(data.data.astype(np.float64), tr)
    s = torch.from_numpy(np.where(data.target == 1, 1.0, -1.0)).to(DTYPE)
    Atr, str_, Ava, sva, Ate, ste = A[tr], s[tr], A[va], s[va], A[te], s[te]
    p = A.shape[1] - 1

    def g(x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
        loss = F.softplus(-str_[idx] * (Atr[idx] @ y)).mean()
        return loss + 0.5 * (torch.exp(x) * y[:p] ** 2).sum() + 0.5 * reg * (y @ y)

    def f(x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
        return F.softplus(-sva[idx] * (Ava[idx] @ y)).mean()

    x0 = torch.full((p,), float(np.log(1e-2)), dtype=DTYPE)
    consts = BilevelConstants(mu=reg, notes={"l_g1": "1/2 + max_j exp(x_j) + reg: depends on x"})
    prob = BilevelProblem(f, g, x0, torch.zeros(p + 1, dtype=DTYPE), upper_sampler=_sampler(n_val, batch),
                          lower_sampler=_sampler(n_train, batch), constants=consts,
                          name="l2-hyperparameters-breast_cancer", dtype=DTYPE)
    prob.finite_sum = (n_val, n_train)

    def evaluate(x: Tensor, y: Tensor) -> dict[str, float]:
        with torch.no_grad():
            m = ste * (Ate @ y)
            return {"test_acc": float((m > 0).double().mean()), "test_loss": float(F.softplus(-m).mean()),
                    "val_loss": float(F.softplus(-sva * (Ava @ y)).mean())}

    info = {"task": "l2-hyperparameters", "dataset": "sklearn breast_cancer", "n_train": n_train, "n_val": n_val,
            "n_test": len(te), "reg": reg, "batch": batch, "seed": seed, "nx": p, "ny": p + 1}
    return BilevelTask(prob, evaluate, info)


TASKS = {"cleaning": hyper_cleaning, "l2": l2_hyperparameters}
