r"""Matrix-free spectral and trace estimators for curvature operators.

* :func:`lanczos` — extreme eigenvalues by the Lanczos iteration (Lanczos 1950) with **full
  reorthogonalization** against every previous Lanczos vector (Golub & Van Loan, *Matrix Computations*,
  4th ed., §10.3), so the Ritz values of the tridiagonal :math:`T_m` do not develop spurious copies; meant for
  a modest number of steps ``m`` (memory ``n m``). The extreme Ritz values converge to the extreme
  eigenvalues from inside the spectrum.
* :func:`hutchinson_trace` — :math:`\operatorname{tr}(C) \approx \frac1m\sum_i v_i^\top C v_i` with
  Rademacher :math:`v_i` (Hutchinson 1990). Unbiased, with variance per sample
  :math:`2(\lVert C\rVert_F^2 - \sum_i C_{ii}^2)`.
* :func:`hutchinson_diagonal` — :math:`\operatorname{diag}(C) \approx \frac1m\sum_i v_i\odot Cv_i`
  (Bekas, Kokiopoulou & Saad 2007). Unbiased, with per-entry variance per sample
  :math:`\sum_{j\neq i} C_{ij}^2`.

Every estimator takes ``op`` as a :class:`~optlib.curvature.operators.CurvatureOperator`, a dense square
tensor, or anything with ``shape`` and ``@`` on flat vectors, and a ``seed`` for a private generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

Tensor = torch.Tensor


def _meta(op: Any) -> tuple[int, torch.dtype, torch.device]:
    if isinstance(op, Tensor):
        if op.ndim != 2 or op.shape[0] != op.shape[1]:
            raise ValueError(f"op must be square, got shape {tuple(op.shape)}")
        return op.shape[0], op.dtype, op.device
    shape = getattr(op, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != shape[1]:
        raise TypeError("op must be a square tensor or an operator with shape (n, n) and @")
    return int(shape[0]), getattr(op, "dtype", torch.get_default_dtype()), torch.device(
        getattr(op, "device", torch.get_default_device()))


def _generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def rademacher(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, generator: torch.Generator) -> Tensor:
    """I.i.d. signs ±1."""
    return torch.randint(0, 2, shape, generator=generator, device=device).to(dtype).mul_(2).sub_(1)


@dataclass
class LanczosResult:
    """Ritz values (ascending) of the ``steps x steps`` tridiagonal, and its entries."""

    ritz_values: Tensor
    alpha: Tensor
    beta: Tensor
    steps: int

    def largest(self, k: int = 1) -> Tensor:
        return self.ritz_values[-k:].flip(0)

    def smallest(self, k: int = 1) -> Tensor:
        return self.ritz_values[:k]


def lanczos(op: Any, steps: int = 30, *, seed: int = 0, v0: Tensor | None = None) -> LanczosResult:
    r"""``steps`` Lanczos iterations with full reorthogonalization; returns the Ritz values.

    Iteration (:math:`\beta_0 = 0`, :math:`q_1 = v_0/\lVert v_0\rVert`):
    :math:`w = Cq_j - \beta_{j-1}q_{j-1}`, :math:`\alpha_j = q_j^\top w`, :math:`w \leftarrow w - \alpha_j q_j`,
    then :math:`w \leftarrow w - Q_j(Q_j^\top w)` twice (full reorthogonalization),
    :math:`\beta_j = \lVert w\rVert`, :math:`q_{j+1} = w/\beta_j`. Stops early when :math:`\beta_j` falls below
    :math:`n\epsilon\max_i|\alpha_i|` (an invariant subspace: the Ritz values are then exact eigenvalues).
    """
    n, dtype, device = _meta(op)
    steps = int(min(max(steps, 1), n))
    gen = _generator(device, seed)
    q = torch.randn(n, dtype=dtype, device=device, generator=gen) if v0 is None else v0.to(dtype).reshape(n).clone()
    q = q / q.norm()
    Q = torch.zeros(steps, n, dtype=dtype, device=device)
    alphas, betas = [], []
    beta_prev, q_prev = 0.0, torch.zeros_like(q)
    eps = torch.finfo(dtype).eps
    for j in range(steps):
        Q[j] = q
        w = op @ q
        w = w - beta_prev * q_prev
        a = torch.dot(q, w)
        w = w - a * q
        for _ in range(2):
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        alphas.append(float(a))
        b = float(w.norm())
        if j == steps - 1:
            break
        if b <= n * eps * max(max(abs(x) for x in alphas), 1e-300):
            break
        betas.append(b)
        q_prev, q, beta_prev = q, w / b, b
    m = len(alphas)
    alpha = torch.tensor(alphas, dtype=dtype, device=device)
    beta = torch.tensor(betas[: m - 1], dtype=dtype, device=device)
    T = torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)
    return LanczosResult(torch.linalg.eigvalsh(T), alpha, beta, m)


@dataclass
class Estimate:
    """An estimate, the standard error of the mean over the samples, and the sample count."""

    value: Any
    std_error: Any
    samples: int


def hutchinson_trace(op: Any, num_samples: int = 100, *, seed: int = 0) -> Estimate:
    """Hutchinson's trace estimate with Rademacher probes (see the module docstring)."""
    n, dtype, device = _meta(op)
    if num_samples < 2:
        raise ValueError("num_samples must be >= 2 (the standard error needs two samples)")
    gen = _generator(device, seed)
    V = rademacher((n, num_samples), dtype, device, gen)
    samples = (V * (op @ V)).sum(0)
    return Estimate(float(samples.mean()), float(samples.std() / num_samples ** 0.5), num_samples)


def hutchinson_diagonal(op: Any, num_samples: int = 100, *, seed: int = 0) -> Estimate:
    """Hutchinson-type diagonal estimate :math:`\\frac1m\\sum v\\odot Cv` with Rademacher probes."""
    n, dtype, device = _meta(op)
    if num_samples < 2:
        raise ValueError("num_samples must be >= 2 (the standard error needs two samples)")
    gen = _generator(device, seed)
    V = rademacher((n, num_samples), dtype, device, gen)
    samples = V * (op @ V)
    return Estimate(samples.mean(1), samples.std(1) / num_samples ** 0.5, num_samples)
