"""Data for the problem library: scikit-learn's bundled data sets and user-supplied ``(A, y)``.

Only loaders that ship their data with scikit-learn are used (no download), so every problem can
be built offline. Features are standardized column by column (zero mean, unit variance); a
constant column has no scale and is set to zero instead of being divided by zero.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _load(loader_name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets  # imported lazily: scikit-learn takes a while to import

    bunch = getattr(datasets, loader_name)()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)


# Binary tasks: name -> (loader, rule mapping the original target to the positive class).
_BINARY: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    # target 1 = benign, 0 = malignant; the positive class is "benign"
    "breast_cancer": ("load_breast_cancer", lambda t: t == 1),
    "digits_binary": ("load_digits", lambda t: t < 5),
    "wine_binary": ("load_wine", lambda t: t == 0),
    "iris_binary": ("load_iris", lambda t: t == 0),  # setosa vs the rest
}

# Multiclass tasks: name -> loader.
_MULTICLASS: dict[str, str] = {"digits": "load_digits", "wine": "load_wine", "iris": "load_iris"}

BINARY_DATASETS: tuple[str, ...] = tuple(_BINARY)
MULTICLASS_DATASETS: tuple[str, ...] = tuple(_MULTICLASS)


def standardize(A: np.ndarray) -> np.ndarray:
    """Columns with zero mean and unit variance; constant columns become zero."""
    A = np.asarray(A, dtype=np.float64)
    mean = A.mean(axis=0)
    std = A.std(axis=0)
    out = A - mean
    scale = np.where(std > 0, std, 1.0)
    out /= scale
    out[:, std == 0] = 0.0
    return out


def _check_matrix(A: Any) -> np.ndarray:
    try:
        A = np.asarray(A, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the feature matrix A must be a 2-D array of numbers: {exc}") from None
    if A.ndim != 2 or A.shape[0] == 0 or A.shape[1] == 0:
        raise ValueError(f"the feature matrix A must be a non-empty 2-D array (n, d), got shape {A.shape}")
    if not np.isfinite(A).all():
        raise ValueError("the feature matrix A has non-finite entries")
    return A


def _split_pair(dataset: Any) -> tuple[Any, Any]:
    if not (isinstance(dataset, tuple | list) and len(dataset) == 2):
        raise ValueError(f"dataset must be a name or a pair (A, y), got {type(dataset).__name__}")
    return dataset[0], dataset[1]


def binary_data(dataset: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """Return ``(A, y, label)`` with ``y`` in {-1, +1} (float64) for a name or an ``(A, y)`` pair."""
    if isinstance(dataset, str):
        if dataset not in _BINARY:
            raise ValueError(
                f"unknown binary data set '{dataset}'; known: {', '.join(BINARY_DATASETS)} (or pass a pair (A, y))"
            )
        loader, positive = _BINARY[dataset]
        A, t = _load(loader)
        return A, np.where(positive(t), 1.0, -1.0), dataset
    A, y = _split_pair(dataset)
    A = _check_matrix(A)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != A.shape[0]:
        raise ValueError(
            f"labels y must be a 1-D array with one entry per row of A ({A.shape[0]}), got shape {y.shape}"
        )
    try:
        yf = y.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError("labels y must be numbers in {-1, +1} or {0, 1}") from None
    values = set(np.unique(yf).tolist())
    if values <= {-1.0, 1.0}:
        return A, yf, "custom"
    if values <= {0.0, 1.0}:
        return A, 2.0 * yf - 1.0, "custom"
    raise ValueError(f"labels y must lie in {{-1, +1}} or {{0, 1}}, got values {sorted(values)[:6]}")


def multiclass_data(dataset: Any) -> tuple[np.ndarray, np.ndarray, int, str]:
    """Return ``(A, labels, K, label)`` with integer labels in ``0..K-1`` for a name or an ``(A, labels)`` pair."""
    if isinstance(dataset, str):
        if dataset not in _MULTICLASS:
            raise ValueError(
                f"unknown multiclass data set '{dataset}'; known: {', '.join(MULTICLASS_DATASETS)} "
                "(or pass a pair (A, labels))"
            )
        A, t = _load(_MULTICLASS[dataset])
        classes, labels = np.unique(t, return_inverse=True)
        return A, labels.astype(np.int64), len(classes), dataset
    A, t = _split_pair(dataset)
    A = _check_matrix(A)
    t = np.asarray(t)
    if t.ndim != 1 or t.shape[0] != A.shape[0]:
        raise ValueError(f"labels must be a 1-D array with one entry per row of A ({A.shape[0]}), got shape {t.shape}")
    if t.dtype.kind == "f":
        if not np.all(np.isfinite(t)) or not np.all(t == np.round(t)):
            raise ValueError("class labels must be integers (or strings), got non-integral floats")
    classes, labels = np.unique(t, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"softmax regression needs at least two classes, got {len(classes)}")
    return A, labels.astype(np.int64), len(classes), "custom"


def problem_name(prefix: str, base: str, params: dict[str, Any], defaults: dict[str, Any]) -> str:
    """``prefix-base`` followed by the parameters that differ from their defaults."""
    extra = [f"{k}={v}" for k, v in params.items() if defaults.get(k, object()) != v]
    name = f"{prefix}-{base}" if base else prefix
    return name + (f"[{','.join(extra)}]" if extra else "")
