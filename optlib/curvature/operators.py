r"""Curvature as a linear operator over a model's parameters.

:class:`CurvatureOperator` is the common base: ``op.shape == (n, n)``; ``op @ v`` for ``v`` a flat vector
``(n,)``, a matrix of columns ``(n, k)``, or a list/dict of tensors shaped like the parameters (with an
optional trailing column dimension ``k``), returned in the same format; ``op.to_dense()``;
``op.solve(v, damping=...)``. The flat order is the order of :attr:`CurvatureOperator.names`, each tensor
flattened row-major (``tensor.flatten()``).

:class:`ModelCurvature` adds the model, the loss and the data (see :mod:`optlib.curvature.losses` for
the scaling convention): the curvature is that of
:math:`\mathcal{L}(\theta) = \sum_b w_b\,\mathrm{loss}(f(\theta, X_b), y_b)` with ``w_b = 1`` for ``"sum"``
and ``B_b/N`` for ``"mean"``, i.e. the loss of the whole data set as one batch (curvlinops' convention).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..linalg.cg import MatvecCurvature
from ..linalg.regularized import FactorizationError, Metric, NonPSDCurvatureError
from .damping import KRONECKER_ONLY, Damping, as_damping
from .losses import Loss, as_loss

Tensor = torch.Tensor
Cols = dict  # name -> tensor of shape (k, *param_shape): k columns, column index first


class CurvatureOperator:
    """A symmetric ``n x n`` curvature operator over named parameter blocks.

    Subclasses implement :meth:`_matmat` on a dict ``name -> (k, *shape)`` of ``k`` columns. The solve
    defaults to a dense symmetric eigendecomposition (small operators); Kronecker-factored
    operators override it with their structured solve.
    """

    psd: bool = True  # positive semidefinite by construction
    kronecker: bool = False  # has Kronecker factors (heuristic damping, .factors())

    def __init__(self, names: Sequence[str], shapes: Sequence[Sequence[int]], dtype: torch.dtype,
                 device: torch.device) -> None:
        self.names = list(names)
        self.shapes = [torch.Size(s) for s in shapes]
        self.numels = [s.numel() for s in self.shapes]
        self.n = int(sum(self.numels))
        self.shape = (self.n, self.n)
        self.dtype = dtype
        self.device = torch.device(device)
        self._eig: tuple[Tensor, Tensor] | None = None

    # ------------------------------------------------------------------ formats
    def _to_cols(self, v: Any, what: str = "v") -> tuple[Cols, tuple[str, bool]]:
        if isinstance(v, Tensor):
            if v.ndim not in (1, 2) or v.shape[0] != self.n:
                raise ValueError(f"{what} must have shape ({self.n},) or ({self.n}, k), got {tuple(v.shape)}")
            is_vec = v.ndim == 1
            M = v.reshape(self.n, -1)
            k = M.shape[1]
            cols, off = {}, 0
            for name, s, m in zip(self.names, self.shapes, self.numels):
                cols[name] = M[off:off + m].T.reshape(k, *s)
                off += m
            return cols, ("flat", is_vec)
        if isinstance(v, Mapping):
            missing = [n for n in self.names if n not in v]
            extra = [n for n in v if n not in self.names]
            if missing or extra:
                raise ValueError(f"{what}: keys must be the parameter names {self.names}; missing {missing}, "
                                 f"unknown {extra}")
            seq, fmt = [v[n] for n in self.names], "dict"
        elif isinstance(v, (list, tuple)) and all(isinstance(t, Tensor) for t in v):
            if len(v) != len(self.names):
                raise ValueError(f"{what}: expected {len(self.names)} tensors (one per parameter), got {len(v)}")
            seq, fmt = list(v), "list"
        else:
            raise TypeError(f"{what} must be a tensor, a list of tensors or a dict name -> tensor, "
                            f"got {type(v).__name__}")
        if all(t.shape == s for t, s in zip(seq, self.shapes)):
            return {n: t.unsqueeze(0) for n, t in zip(self.names, seq)}, (fmt, True)
        ks = {t.shape[-1] for t in seq if t.ndim >= 1}
        if len(ks) == 1 and all(t.ndim == len(s) + 1 and t.shape[:-1] == s for t, s in zip(seq, self.shapes)):
            return {n: t.movedim(-1, 0) for n, t in zip(self.names, seq)}, (fmt, False)
        raise ValueError(f"{what}: tensors must have the parameter shapes {[tuple(s) for s in self.shapes]} "
                         f"(plus an optional trailing column dimension), got {[tuple(t.shape) for t in seq]}")

    def _from_cols(self, cols: Cols, fmt: tuple[str, bool]) -> Any:
        kind, is_vec = fmt
        if kind == "flat":
            k = next(iter(cols.values())).shape[0]
            M = torch.cat([cols[n].reshape(k, -1) for n in self.names], dim=1).T
            return M[:, 0] if is_vec else M
        seq = [cols[n][0] if is_vec else cols[n].movedim(0, -1) for n in self.names]
        return dict(zip(self.names, seq)) if kind == "dict" else seq

    def flatten(self, cols: Cols) -> Tensor:
        """Columns dict -> ``(n, k)``."""
        return self._from_cols(cols, ("flat", False))

    def unflatten(self, M: Tensor) -> Cols:
        return self._to_cols(M.reshape(self.n, -1))[0]

    # ------------------------------------------------------------------ products
    def _matmat(self, cols: Cols) -> Cols:
        raise NotImplementedError

    def __matmul__(self, v: Any) -> Any:
        cols, fmt = self._to_cols(v)
        return self._from_cols(self._matmat(cols), fmt)

    def matvec(self, v: Any) -> Any:
        """``self @ v`` (the name the spec's interface uses)."""
        return self @ v

    def to_dense(self, chunk: int = 256) -> Tensor:
        """The dense ``n x n`` matrix (``chunk`` columns per product); for small operators."""
        eye = torch.eye(self.n, dtype=self.dtype, device=self.device)
        return torch.cat([self @ eye[:, i:i + chunk] for i in range(0, self.n, chunk)], dim=1)

    def dense(self) -> Tensor:
        return self.to_dense()

    def factors(self) -> Any:
        raise TypeError(f"{type(self).__name__} is not Kronecker-factored; factors() exists for KFAC and EKFAC")

    # ------------------------------------------------------------------ solves
    def eigh(self) -> tuple[Tensor, Tensor]:
        """Eigenvalues (ascending) and eigenvectors of the dense matrix (computed once, cached)."""
        if self._eig is None:
            M = self.to_dense()
            self._eig = torch.linalg.eigh(0.5 * (M + M.T))
        return self._eig

    DENSE_LIMIT = 4096  # largest n solved through the dense eigendecomposition by method="auto"

    def solve(self, v: Any, damping: Any = None, *, grad: Any = None, method: str = "auto",
              rtol: float = 1e-10, maxiter: int | None = None) -> Any:
        """``(C + damping)^{-1} v`` (see :mod:`optlib.curvature.damping`), in ``v``'s format.

        ``damping``: ``None`` (no damping), a number (Tikhonov) or a :class:`Damping`. ``grad``: the
        gradient whose norm sets ``"grad_norm"`` damping (default: each column of ``v``).

        ``method`` (operators without Kronecker structure): ``"dense"`` eigendecomposes the dense matrix once
        (cached) and raises :class:`~optlib.linalg.FactorizationError` when the damped operator is singular or
        not positive definite, before solving; ``"cg"`` runs conjugate gradients on products only
        (:class:`optlib.linalg.MatvecCurvature`, relative residual ``rtol``), which detects an indefinite
        operator only when it meets a direction of non-positive curvature; ``"auto"`` is dense up to
        ``DENSE_LIMIT`` parameters. K-FAC and EK-FAC always solve through their factors.
        """
        if method not in ("auto", "dense", "cg"):
            raise ValueError(f"unknown solve method {method!r}; use 'auto', 'dense' or 'cg'")
        d = as_damping(damping)
        cols, fmt = self._to_cols(v)
        gcols = None if grad is None else self._to_cols(grad, "grad")[0]
        if gcols is not None and next(iter(gcols.values())).shape[0] != 1:
            raise ValueError("grad must be a single vector")
        if not self.kronecker and (method == "cg" or (method == "auto" and self.n > self.DENSE_LIMIT)):
            return self._from_cols(self._solve_cg(cols, d, gcols, rtol, maxiter), fmt)
        return self._from_cols(self._solve(cols, d, gcols), fmt)

    def _lambdas(self, cols: Cols, d: Damping, gcols: Cols | None, k: int) -> Tensor:
        if d.mode == "grad_norm":
            norms = self._grad_norms(cols, gcols)
            return torch.tensor([d.lam(float(g)) for g in norms], dtype=self.dtype, device=self.device).expand(k)
        return torch.full((k,), d.lam(), dtype=self.dtype, device=self.device)

    def _solve_cg(self, cols: Cols, d: Damping, gcols: Cols | None, rtol: float, maxiter: int | None) -> Cols:
        if d.mode in KRONECKER_ONLY:
            raise ValueError(f"damping mode {d.mode!r} needs Kronecker factors (KFAC)")
        B = self.flatten(cols)
        lam = self._lambdas(cols, d, gcols, B.shape[1])
        solver = MatvecCurvature(lambda p: self @ p, self.n, rtol=rtol, maxiter=maxiter)
        X = torch.stack([-solver.solve(B[:, j], float(lam[j]), Metric(None)) for j in range(B.shape[1])], dim=1)
        self.cg_iterations = solver.iterations
        return self.unflatten(X)

    def _grad_norms(self, cols: Cols, gcols: Cols | None, names: Sequence[str] | None = None) -> Tensor:
        src = cols if gcols is None else gcols
        names = self.names if names is None else names
        sq = sum(src[n].reshape(src[n].shape[0], -1).pow(2).sum(1) for n in names)
        return sq.sqrt()

    def _solve(self, cols: Cols, d: Damping, gcols: Cols | None) -> Cols:
        if d.mode in KRONECKER_ONLY:
            raise ValueError(f"damping mode {d.mode!r} needs Kronecker factors (KFAC); for {type(self).__name__} "
                             "use 'none', 'tikhonov', 'grad_norm' or 'lm'")
        B = self.flatten(cols)
        k = B.shape[1]
        lam = self._lambdas(cols, d, gcols, k)
        evals, Q = self.eigh()
        scale = float(evals.abs().max()) if evals.numel() else 0.0
        psd_tol = math.sqrt(torch.finfo(evals.dtype).eps) * max(scale, 1e-300)
        if self.psd and evals.numel() and float(evals[0]) < -psd_tol:
            raise NonPSDCurvatureError(
                f"{type(self).__name__} should be positive semidefinite but has eigenvalue {float(evals[0]):.3e} "
                f"(largest magnitude {scale:.3e})")
        shifted = evals[:, None] + lam[None, :]
        tol = self.n * torch.finfo(evals.dtype).eps * max(scale, float(lam.max()) if k else 0.0, 1e-300)
        if self.psd and k and float(lam.min()) > 0:
            tol = 0.0  # PSD + positive damping: positive definite unless lambda is below rounding
        worst = float(shifted.min())
        if not worst > tol:
            raise FactorizationError(
                f"{type(self).__name__} + damping is not positive definite: smallest eigenvalue {worst:.3e} "
                f"(mode {d.mode!r}, lambda = {float(lam.min()):.3e}, tolerance {tol:.1e}); increase the damping")
        X = Q @ ((Q.T @ B) / shifted)
        return self.unflatten(X)


class DenseCurvature(CurvatureOperator):
    """A symmetric matrix as a curvature operator over one flat block ``"x"`` (flat problems, tests)."""
    def __init__(self, matrix: Tensor, *, psd: bool = False, name: str = "x") -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"curvature must be a square matrix, got shape {tuple(matrix.shape)}")
        if not bool(torch.isfinite(matrix).all()):
            raise ValueError("the curvature matrix has non-finite entries")
        super().__init__([name], [(matrix.shape[0],)], matrix.dtype, matrix.device)
        self.matrix = matrix
        self.psd = psd

    def _matmat(self, cols):
        X = next(iter(cols.values()))  # (k, n)
        return {self.names[0]: X @ self.matrix.T}

    def to_dense(self, chunk: int = 256) -> Tensor:
        return self.matrix.clone()


# ---------------------------------------------------------------------------------------- model operators
def resolve_params(model: Any, params: Any) -> tuple[list[str], list[Tensor]]:
    """Names and tensors of the parameters the curvature is taken over.

    ``params``: a dict ``name -> tensor`` (for an ``nn.Module`` the names are ``named_parameters`` names);
    a list of the module's parameters; or ``None`` (every parameter of the module that requires grad).
    """
    if isinstance(model, nn.Module):
        named = dict(model.named_parameters())
        if params is None:
            items = [(n, p) for n, p in named.items() if p.requires_grad]
        elif isinstance(params, Mapping):
            unknown = [n for n in params if n not in named]
            if unknown:
                raise ValueError(f"unknown parameter name(s) {unknown}; the model has {list(named)}")
            items = list(params.items())
        elif isinstance(params, (list, tuple)):
            by_id = {id(p): n for n, p in named.items()}
            missing = [i for i, p in enumerate(params) if id(p) not in by_id]
            if missing:
                raise ValueError(f"params[{missing}] are not parameters of the model; "
                                 "pass a dict name -> tensor instead")
            items = [(by_id[id(p)], p) for p in params]
        else:
            raise TypeError("params must be None, a dict name -> tensor, or a list of the model's parameters")
    else:
        if not callable(model):
            raise TypeError("model_func must be an nn.Module or a callable f(params: dict, X) -> output")
        if not isinstance(params, Mapping):
            raise TypeError("with a functional model f(params, X), params must be a dict name -> tensor")
        items = list(params.items())
    if not items:
        raise ValueError("no parameters to take the curvature over")
    for n, t in items:
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise TypeError(f"parameter {n!r} must be a floating-point tensor")
    dtypes = {t.dtype for _, t in items}
    devices = {t.device for _, t in items}
    if len(dtypes) > 1 or len(devices) > 1:
        raise ValueError(f"parameters must share one dtype and device, got {dtypes} and {devices}")
    return [n for n, _ in items], [t for _, t in items]


def as_batches(data: Any) -> list[tuple[Any, Tensor]]:
    """A list of ``(X, y)`` batches from a list, a DataLoader-like iterable or a single ``(X, y)`` pair."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor) and isinstance(data[1], Tensor):
        return [data]
    if not isinstance(data, Iterable):
        raise TypeError("data must be an iterable of (X, y) batches")
    batches = list(data)
    if not batches:
        raise ValueError("data is empty")
    for i, b in enumerate(batches):
        if not (isinstance(b, (tuple, list)) and len(b) == 2 and isinstance(b[0], Tensor)):
            raise TypeError(f"data[{i}] must be a pair (X, y) of tensors")
    return [(b[0], b[1]) for b in batches]


class ModelCurvature(CurvatureOperator):
    """Base of the curvature operators of ``loss(model_func(params, X), y)`` summed over ``data``.

    Parameters
    ----------
    model_func : nn.Module or callable
        A module (called through :func:`torch.func.functional_call` with ``params``; other parameters
        and buffers are the module's own) or a function ``f(params: dict, X) -> output``.
    loss_func : Loss, torch loss module or name
        See :func:`optlib.curvature.losses.as_loss`.
    params : dict, list or None
        See :func:`resolve_params`. The operator is taken at these values (detached copies are not made:
        later in-place changes to them change the operator, except cached products and factors).
    data : iterable of (X, y)
        Re-iterated on each product (a one-shot iterator is materialized into a list).
    num_data : int, optional
        ``N`` (default: the sum of the batch sizes ``X.shape[0]``).
    """

    def __init__(self, model_func: nn.Module | Callable, loss_func: Any, params: Any = None, data: Any = None, *,
                 num_data: int | None = None) -> None:
        if data is None:
            raise ValueError("data is required: an iterable of (X, y) batches")
        names, tensors = resolve_params(model_func, params)
        self.model_func = model_func
        self.params = {n: t.detach() for n, t in zip(names, tensors)}
        self.loss: Loss = as_loss(loss_func)
        self.data = as_batches(data)
        total = sum(int(X.shape[0]) for X, _ in self.data)
        self.num_data = int(num_data) if num_data is not None else total
        if self.num_data <= 0:
            raise ValueError("num_data must be positive")
        super().__init__(names, [t.shape for t in tensors], tensors[0].dtype, tensors[0].device)

    def forward(self, params: Mapping[str, Tensor], X: Any) -> Tensor:
        if isinstance(self.model_func, nn.Module):
            return torch.func.functional_call(self.model_func, dict(params), (X,))
        return self.model_func(params, X)

    def batches(self):
        """``(X, y, w_b)`` with ``w_b`` the batch's weight in the total loss."""
        for X, y in self.data:
            yield X, y, self.loss.batch_weight(int(X.shape[0]), self.num_data)

    def total_loss(self) -> Tensor:
        """:math:`\\mathcal{L}(\\theta)` at the operator's parameters."""
        with torch.no_grad():
            return sum(w * self.loss(self.forward(self.params, X), y) for X, y, w in self.batches())

    def gradient(self) -> dict[str, Tensor]:
        """:math:`\\nabla\\mathcal{L}(\\theta)` as a dict (e.g. for ``grad_norm`` damping)."""
        def L(p):
            return sum(w * self.loss(self.forward(p, X), y) for X, y, w in self.batches())

        return dict(torch.func.grad(L)(self.params))

    def _zeros(self, k: int) -> Cols:
        return {n: torch.zeros((k, *s), dtype=self.dtype, device=self.device) for n, s in zip(self.names, self.shapes)}
