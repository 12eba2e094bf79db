r"""Layered (block-matrix) test problems for Muon and Drop-Muon, with their layer-wise constants derived here.

A *layered* problem is a function of a list of matrices :math:`X = [X_1, \dots, X_b]`, one per layer (layer 1
is the input side, index 0 in code). Muon-type methods use the spectral norm :math:`\|\cdot\|_{op}` on each
layer and its dual, the nuclear norm :math:`\|\cdot\|_*`. The two assumptions the Drop-Muon analysis works
with (Gruntkowska, Maziane, Qu & Richtárik 2025, arXiv:2510.02239; Gluon, Riabinin et al. 2025,
arXiv:2505.13416) are, in our notation:

* layer-wise smoothness (A1):
  :math:`f(Y) \le f(X) + \langle\nabla f(X), Y - X\rangle + \sum_i \frac{L_i}{2}\|Y_i - X_i\|_{op}^2`;
* layer-wise :math:`(L^0, L^1)`-smoothness (A2), here in the Hessian form per block:
  :math:`\|\nabla^2_{ii} f\| \le L^0_i + L^1_i \|\nabla_i f\|_*` (Zhang, He, Sra & Jadbabaie 2020,
  arXiv:1905.11881, for one block).

Every constant below is **derived** in this docstring (the paper's constants are not used anywhere).

Layered quadratic (:func:`layered_quadratic`)
    :math:`f(X) = \sum_i \frac{a_i}{2}\|X_i - T_i\|_F^2`, :math:`X_i \in \mathbb R^{m_i\times n_i}`,
    :math:`r_i = \min(m_i, n_i)`. Then :math:`\nabla_i f = a_i(X_i - T_i)` and, exactly,
    :math:`f(X + \Delta) = f(X) + \langle\nabla f, \Delta\rangle + \sum_i \frac{a_i}{2}\|\Delta_i\|_F^2`.
    Since :math:`\|\Delta_i\|_F^2 \le r_i\|\Delta_i\|_{op}^2` (a matrix has at most :math:`r_i` non-zero
    singular values, each at most the largest), A1 holds with :math:`L_i = a_i r_i`; equality holds for
    :math:`\Delta_i = t\,U V^\top` with full-rank :math:`U V^\top` (all singular values equal), so the constant
    is tight for the LMO step. The gradient form agrees:
    :math:`\|\nabla_i f(X) - \nabla_i f(Y)\|_* = a_i\|X_i - Y_i\|_* \le a_i r_i \|X_i - Y_i\|_{op}`.
    A layer-wise Polyak–Łojasiewicz inequality also holds: :math:`\|\nabla_i f\|_* = a_i\sum_j\sigma_j \ge
    a_i(\sum_j\sigma_j^2)^{1/2}`, so :math:`\|\nabla_i f\|_*^2 \ge 2 a_i f_i` (``mu[i] = a_i``).
    :math:`f^{\inf} = 0` at :math:`X = T`.

Deep linear network (:func:`deep_linear_network`)
    :math:`f(W_1, \dots, W_b) = \frac{1}{2N}\|W_b\cdots W_1 Z - Y\|_F^2` with a realizable target
    :math:`Y = W_b^\star\cdots W_1^\star Z`, so :math:`f^{\inf} = 0`. The function is a polynomial of degree
    :math:`2b` and has no global layer-wise smoothness constant; its :math:`L_i` must be estimated along a
    trajectory (``L`` is ``None``; see :func:`optlib.theory.drop_muon.estimate_layer_smoothness`).

Exponential blocks (:func:`exponential_blocks`)
    :math:`f(x) = \sum_i \exp(u_i^\top x_i)` with :math:`x_i \in \mathbb R^{n_i\times 1}` (a one-column matrix:
    spectral, nuclear and Euclidean norms coincide). :math:`\nabla_i f = e^{u_i^\top x_i} u_i` and
    :math:`\nabla^2_{ii} f = e^{u_i^\top x_i} u_i u_i^\top`, so :math:`\|\nabla^2_{ii} f\| = \|u_i\|\,\|\nabla_i f\|`:
    :math:`L^0_i = 0`, :math:`L^1_i = \|u_i\|`, with equality. No finite :math:`L_i` exists.
    :math:`f^{\inf} = 0` (not attained).

Log-sum-exp blocks (:func:`log_sum_exp_blocks`)
    :math:`f(x) = \sum_i \log\sum_j \exp(a_{ij}^\top x_i - b_{ij})`. The block Hessian is the covariance
    of the rows :math:`a_{ij}` under the softmax weights :math:`\pi_i`, so
    :math:`\|\nabla^2_{ii} f\| \le \min(\max_j\|a_{ij}\|^2, D_i^2/4)` with :math:`D_i = \max_{j,k}\|a_{ij} - a_{ik}\|`
    (second moment bound, and Popoviciu's inequality along any unit direction). Hence
    :math:`L^0_i = L_i = \min(\max_j\|a_{ij}\|^2, D_i^2/4)` and :math:`L^1_i = 0`.

:func:`concat_blocks` joins separable problems into one (the constants concatenate).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

Tensor = torch.Tensor

__all__ = [
    "LayeredProblem",
    "concat_blocks",
    "deep_linear_network",
    "exponential_blocks",
    "layered_quadratic",
    "log_sum_exp_blocks",
]


@dataclass
class LayeredProblem:
    """A function of a list of matrices ``[X_1, ..., X_b]`` with its known layer-wise constants.

    ``fn(Xs)`` returns a 0-d tensor; ``block_fns`` (separable problems only) returns the per-layer values
    whose sum is ``fn``. ``L`` (A1), ``L0``/``L1`` (A2) and ``mu`` (layer-wise PL) are tuples with one
    entry per layer, or ``None`` when no such constant exists or is known. ``x0`` is the customary start.
    """

    name: str
    shapes: tuple[tuple[int, ...], ...]
    fn: Callable[[Sequence[Tensor]], Tensor]
    x0: list[Tensor]
    f_inf: float | None = None
    L: tuple[float, ...] | None = None
    L0: tuple[float, ...] | None = None
    L1: tuple[float, ...] | None = None
    mu: tuple[float, ...] | None = None
    block_fns: Callable[[Sequence[Tensor]], list[Tensor]] | None = None
    vg_fn: Callable[[Sequence[Tensor]], tuple[Tensor, list[Tensor]]] | None = None
    notes: str = ""
    data: dict = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        return len(self.shapes)

    def _check(self, Xs: Sequence[Tensor]) -> list[Tensor]:
        Xs = list(Xs)
        if len(Xs) != self.num_layers:
            raise ValueError(f"{self.name} has {self.num_layers} layers, got {len(Xs)} matrices")
        for i, (X, shape) in enumerate(zip(Xs, self.shapes)):
            if tuple(X.shape) != tuple(shape):
                raise ValueError(f"{self.name}: layer {i} must have shape {tuple(shape)}, got {tuple(X.shape)}")
        return Xs

    def value(self, Xs: Sequence[Tensor]) -> float:
        with torch.no_grad():
            return float(self.fn(self._check(Xs)))

    def layer_values(self, Xs: Sequence[Tensor]) -> list[float]:
        """Per-layer values of a separable problem."""
        if self.block_fns is None:
            raise ValueError(f"{self.name} is not separable: it has no per-layer values")
        with torch.no_grad():
            return [float(v) for v in self.block_fns(self._check(Xs))]

    def value_and_grads(self, Xs: Sequence[Tensor]) -> tuple[float, list[Tensor]]:
        """``f(X)`` and the layer gradients ``[grad_1 f, ..., grad_b f]`` (detached).

        Hand-written oracles (``vg_fn``, checked against autograd in the tests) are used when present,
        autograd otherwise.
        """
        if self.vg_fn is not None:
            with torch.no_grad():
                val, grads = self.vg_fn([X.detach() for X in self._check(Xs)])
            return float(val), list(grads)
        Xs = [X.detach().clone().requires_grad_(True) for X in self._check(Xs)]
        with torch.enable_grad():
            val = self.fn(Xs)
            grads = torch.autograd.grad(val, Xs)
        return float(val.detach()), [g.detach() for g in grads]

    def grads(self, Xs: Sequence[Tensor]) -> list[Tensor]:
        return self.value_and_grads(Xs)[1]

    def parameters(self, Xs: Sequence[Tensor] | None = None) -> list[torch.nn.Parameter]:
        """Fresh leaf parameters initialized at ``Xs`` (default ``x0``), one per layer."""
        src = self.x0 if Xs is None else self._check(Xs)
        return [torch.nn.Parameter(X.detach().clone()) for X in src]

    def backward(self, params: Sequence[torch.nn.Parameter], cutoff: int = 0) -> float:
        """Evaluate ``f`` at ``params`` and fill ``p.grad`` for the layers ``>= cutoff`` only.

        Layers below ``cutoff`` enter the graph detached, so their ``.grad`` is left as it was (``None``
        after ``zero_grad()``), as in a truncated backward pass.
        """
        Xs = [p if i >= cutoff else p.detach() for i, p in enumerate(self._check(params))]
        with torch.enable_grad():
            val = self.fn(Xs)
            if any(p.requires_grad for p in Xs):
                val.backward()
        return float(val.detach())


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _t(a: np.ndarray) -> Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def layered_quadratic(
    shapes: Sequence[tuple[int, int]] = ((6, 4), (5, 5), (4, 6)),
    a: Sequence[float] | None = None,
    *,
    start: str = "generic",
    scale: float = 1.0,
    seed: int = 0,
) -> LayeredProblem:
    r""":math:`f(X) = \sum_i \frac{a_i}{2}\|X_i - T_i\|_F^2` with ``L[i] = a_i * min(m_i, n_i)`` (module docstring).

    ``a`` defaults to log-uniform draws in ``[0.5, 4]``. ``start="generic"`` puts ``x0 = T + scale * E`` with
    a Gaussian ``E`` (full rank almost surely); ``start="rank-one"`` uses a rank-one ``E = scale * u v^T``
    (unit ``u``, ``v``); ``start="isometric"`` uses ``E = scale * U V^T`` (all singular values equal).
    """
    rng = _rng(seed)
    shapes = tuple(tuple(int(d) for d in s) for s in shapes)
    if any(len(s) != 2 or min(s) < 1 for s in shapes):
        raise ValueError(f"layered_quadratic needs 2-D positive shapes, got {shapes}")
    if a is None:
        a = np.exp(rng.uniform(math.log(0.5), math.log(4.0), size=len(shapes)))
    a = tuple(float(v) for v in a)
    if len(a) != len(shapes) or not all(v > 0 for v in a):
        raise ValueError(f"a must hold one positive curvature per layer ({len(shapes)}), got {a}")
    if start not in ("generic", "rank-one", "isometric"):
        raise ValueError(f"start must be 'generic', 'rank-one' or 'isometric', got {start!r}")
    targets, x0 = [], []
    for m, n in shapes:
        T = rng.standard_normal((m, n))
        if start == "generic":
            E = rng.standard_normal((m, n))
        elif start == "rank-one":
            u, v = rng.standard_normal(m), rng.standard_normal(n)
            E = np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
        else:
            Q, _ = np.linalg.qr(rng.standard_normal((max(m, n), min(m, n))))
            E = Q if m >= n else Q.T
        targets.append(_t(T))
        x0.append(_t(T + scale * E))
    ranks = tuple(min(s) for s in shapes)
    at = [torch.tensor(v, dtype=torch.float64) for v in a]

    def block_fns(Xs: Sequence[Tensor]) -> list[Tensor]:
        return [0.5 * ai * torch.sum((X - T) ** 2) for ai, X, T in zip(at, Xs, targets)]

    def fn(Xs: Sequence[Tensor]) -> Tensor:
        return torch.stack(block_fns(Xs)).sum()

    return LayeredProblem(
        name=f"layered-quadratic-{len(shapes)}",
        shapes=shapes,
        fn=fn,
        block_fns=block_fns,
        x0=x0,
        f_inf=0.0,
        L=tuple(ai * r for ai, r in zip(a, ranks)),
        L0=tuple(ai * r for ai, r in zip(a, ranks)),
        L1=tuple(0.0 for _ in a),
        mu=a,
        notes="L_i = a_i * min(m_i, n_i) (spectral/nuclear pair, tight for full-rank LMO steps); mu_i = a_i (PL)",
        data={"a": a, "targets": targets, "ranks": ranks},
    )


def deep_linear_network(
    dims: Sequence[int] = (4, 6, 6, 3),
    n_samples: int = 32,
    *,
    init_scale: float = 0.5,
    seed: int = 0,
) -> LayeredProblem:
    r"""A ``len(dims) - 1``-layer deep linear network with a realizable target (``f_inf = 0``).

    ``W_i`` has shape ``(dims[i+1], dims[i])``; inputs ``Z`` are ``dims[0] x n_samples`` Gaussian; the
    teacher weights ``W*_i`` and the start ``x0`` are Gaussian with entries of variance
    ``init_scale**2 / dims[i]``. No global ``L_i`` exists (module docstring).
    """
    dims = tuple(int(d) for d in dims)
    if len(dims) < 2 or min(dims) < 1:
        raise ValueError(f"deep_linear_network needs at least two positive dims, got {dims}")
    rng = _rng(seed)
    shapes = tuple((dims[i + 1], dims[i]) for i in range(len(dims) - 1))
    Z = _t(rng.standard_normal((dims[0], n_samples)))
    teacher = [_t(rng.standard_normal(s) * (1.0 / math.sqrt(s[1]))) for s in shapes]
    Y = Z
    for W in teacher:
        Y = W @ Y
    x0 = [_t(rng.standard_normal(s) * (init_scale / math.sqrt(s[1]))) for s in shapes]

    def fn(Ws: Sequence[Tensor]) -> Tensor:
        H = Z
        for W in Ws:
            H = W @ H
        return 0.5 / n_samples * torch.sum((H - Y) ** 2)

    def vg_fn(Ws: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
        acts = [Z]
        for W in Ws:
            acts.append(W @ acts[-1])
        R = acts[-1] - Y
        B = R / n_samples
        grads = [None] * len(Ws)
        for k in range(len(Ws) - 1, -1, -1):
            grads[k] = B @ acts[k].T
            B = Ws[k].T @ B
        return 0.5 / n_samples * torch.sum(R * R), grads

    return LayeredProblem(
        name=f"deep-linear-{len(shapes)}",
        shapes=shapes,
        fn=fn,
        vg_fn=vg_fn,
        x0=x0,
        f_inf=0.0,
        notes="realizable teacher: f_inf = 0; no global layer-wise L (estimate along the trajectory)",
        data={"Z": Z, "Y": Y, "teacher": teacher},
    )


def exponential_blocks(
    dims: Sequence[int] = (3, 5),
    *,
    u_norms: Sequence[float] | None = None,
    seed: int = 0,
) -> LayeredProblem:
    r""":math:`f(x) = \sum_i \exp(u_i^\top x_i)`, ``x_i`` of shape ``(dims[i], 1)``; ``L0 = 0``, ``L1 = ||u_i||``.

    ``u_i`` is a Gaussian direction scaled to ``u_norms[i]`` (default: log-uniform in ``[0.5, 3]``); ``x0``
    is Gaussian. ``f_inf = 0`` (approached, not attained).
    """
    rng = _rng(seed)
    dims = tuple(int(d) for d in dims)
    if u_norms is None:
        u_norms = np.exp(rng.uniform(math.log(0.5), math.log(3.0), size=len(dims)))
    us = []
    for d, nrm in zip(dims, u_norms):
        u = rng.standard_normal((d, 1))
        us.append(_t(u / np.linalg.norm(u) * float(nrm)))
    x0 = [_t(rng.standard_normal((d, 1))) for d in dims]

    def block_fns(Xs: Sequence[Tensor]) -> list[Tensor]:
        return [torch.exp(torch.sum(u * x)) for u, x in zip(us, Xs)]

    def fn(Xs: Sequence[Tensor]) -> Tensor:
        return torch.stack(block_fns(Xs)).sum()

    return LayeredProblem(
        name=f"exp-blocks-{len(dims)}",
        shapes=tuple((d, 1) for d in dims),
        fn=fn,
        block_fns=block_fns,
        x0=x0,
        f_inf=0.0,
        L=None,
        L0=tuple(0.0 for _ in dims),
        L1=tuple(float(torch.linalg.vector_norm(u)) for u in us),
        notes="L0_i = 0, L1_i = ||u_i|| (exact: ||Hess_ii|| = ||u_i|| ||grad_i||); not L-smooth",
        data={"u": us},
    )


def log_sum_exp_blocks(
    dims: Sequence[int] = (4,),
    rows: int = 6,
    *,
    seed: int = 0,
) -> LayeredProblem:
    r""":math:`f(x) = \sum_i \log\sum_j \exp(a_{ij}^\top x_i - b_{ij})`.

    ``L0 = L = min(max_j ||a_ij||^2, D_i^2/4)`` and ``L1 = 0`` (module docstring).

    ``a_ij`` and ``b_ij`` are standard Gaussian; ``x_i`` has shape ``(dims[i], 1)``.
    """
    rng = _rng(seed)
    dims = tuple(int(d) for d in dims)
    As, bs, Ls = [], [], []
    for d in dims:
        A = rng.standard_normal((rows, d))
        b = rng.standard_normal(rows)
        max_row = float(np.max(np.sum(A**2, axis=1)))
        diam = float(max(np.linalg.norm(A[j] - A[k]) for j in range(rows) for k in range(rows)))
        Ls.append(min(max_row, diam**2 / 4.0))
        As.append(_t(A))
        bs.append(_t(b))
    x0 = [_t(rng.standard_normal((d, 1))) for d in dims]

    def block_fns(Xs: Sequence[Tensor]) -> list[Tensor]:
        return [torch.logsumexp(A @ x[:, 0] - b, dim=0) for A, b, x in zip(As, bs, Xs)]

    def fn(Xs: Sequence[Tensor]) -> Tensor:
        return torch.stack(block_fns(Xs)).sum()

    return LayeredProblem(
        name=f"lse-blocks-{len(dims)}",
        shapes=tuple((d, 1) for d in dims),
        fn=fn,
        block_fns=block_fns,
        x0=x0,
        f_inf=None,
        L=tuple(Ls),
        L0=tuple(Ls),
        L1=tuple(0.0 for _ in dims),
        notes="L_i = L0_i = min(max_j ||a_ij||^2, D_i^2/4) (softmax covariance bound), L1_i = 0",
        data={"A": As, "b": bs},
    )


def concat_blocks(*problems: LayeredProblem) -> LayeredProblem:
    """The separable sum of layered problems: layers concatenate in order, and so do their constants.

    A constant is kept only when every part has it (``f_inf`` adds up likewise).
    """
    if not problems or any(p.block_fns is None for p in problems):
        raise ValueError("concat_blocks needs at least one problem, all separable (with block_fns)")
    sizes = [p.num_layers for p in problems]

    def split(Xs: Sequence[Tensor]) -> list[list[Tensor]]:
        out, k = [], 0
        for n in sizes:
            out.append(list(Xs[k : k + n]))
            k += n
        return out

    def block_fns(Xs: Sequence[Tensor]) -> list[Tensor]:
        vals: list[Tensor] = []
        for p, part in zip(problems, split(Xs)):
            vals.extend(p.block_fns(part))
        return vals

    def fn(Xs: Sequence[Tensor]) -> Tensor:
        return torch.stack(block_fns(Xs)).sum()

    def cat(attr: str):
        parts = [getattr(p, attr) for p in problems]
        return None if any(v is None for v in parts) else tuple(v for part in parts for v in part)

    f_infs = [p.f_inf for p in problems]
    return LayeredProblem(
        name="+".join(p.name for p in problems),
        shapes=tuple(s for p in problems for s in p.shapes),
        fn=fn,
        block_fns=block_fns,
        x0=[x.clone() for p in problems for x in p.x0],
        f_inf=None if any(v is None for v in f_infs) else float(sum(f_infs)),
        L=cat("L"),
        L0=cat("L0"),
        L1=cat("L1"),
        mu=cat("mu"),
        notes="; ".join(p.notes for p in problems),
    )
