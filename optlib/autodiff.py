"""Oracles for the functions users pass to :func:`optlib.minimize`: a torch function of a tensor
(differentiated here) or numpy callables in scipy's forms (``jac=True``, ``jac``/``hess``/``hessp``).

Torch functions (:class:`TorchOracles`). One forward pass per point gives the value and, by reverse
mode with ``create_graph=True``, a gradient that keeps its graph. What is computed later at the
same point reuses it:

* a Hessian-vector product is one more backward pass through the gradient's graph (double
  backward): about the cost of a gradient, against about 6x for forward-over-reverse
  (``torch.func.jvp`` of ``torch.func.grad``; measured on regularized logistic regression,
  d = 300, n = 2000, one thread: 0.54 ms vs 3.45 ms, a gradient 0.53 ms);
* a dense Hessian is the cheapest of three strategies for its size, chosen by the dimension from
  the same measurements (one thread; d = 10 / 50 / 300 / 640): batched backward over the
  gradient's graph (``is_grads_batched``: 0.22 / 1.9 / 143 / 821 ms), reverse-over-reverse
  (``torch.func.jacrev`` of ``torch.func.grad``: 0.86 / 1.3 / 14 / 51 ms) and forward-over-reverse
  (``torch.func.hessian``: 2.6 / 4.0 / 97 / 559 ms); so batched backward below
  :data:`SMALL_DIMENSION` and reverse-over-reverse above (within 3x of ``X^T D X`` itself at
  d = 300 and 640). A function that ``torch.func`` cannot transform (data-dependent Python control
  flow, in-place updates of captured tensors) falls back to one backward pass per column.

The two most recent points are kept, so that the driver's trial point, once accepted, is the next
iterate without any recomputation.

Numpy callables (:class:`NumpyOracles`) follow ``scipy.optimize.minimize``: ``fun(x, *args)``
returns a scalar (an array of shape ``()`` or ``(1,)`` is accepted), ``jac=True`` means it returns
``(f, g)``, ``jac(x, *args)``, ``hess(x, *args)``, ``hessp(x, p, *args)``. Without ``hess`` and
``hessp`` the Hessian-vector products are forward differences of the gradient (as scipy's
``Newton-CG`` does), and a dense Hessian is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.func as tf
from torch import Tensor

# Below this dimension the batched backward over the gradient's graph is the cheapest dense Hessian,
# above it reverse-over-reverse (measurements in the module docstring).
SMALL_DIMENSION = 32

# scipy's finite-difference schemes and quasi-Newton strategies, which optlib does not implement.
SCIPY_HESSIAN_SCHEMES = ("2-point", "3-point", "cs")

NUMPY_INSIDE = (
    "fun must be written in torch (it received a torch.Tensor and {what}); either write it with torch "
    "operations, or pass numpy callables: fun(x) on numpy arrays with jac=True or jac=callable."
)


def _numpy_inside(exc: BaseException) -> bool:
    text = str(exc)
    return "numpy" in text or "storage" in text or "data pointer" in text


class TorchOracles:
    """Value, gradient, Hessian-vector products and dense Hessians of ``fun(x, *args)`` by autograd."""

    def __init__(self, fun: Callable[..., Any], args: Sequence[Any] = (), keep: int = 2) -> None:
        self.fun = fun
        self.args = tuple(args)
        self.keep = keep
        self._points: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []  # (x, x_leaf, f, g with graph)
        self.hessian_strategy: str | None = None

    # -------------------------------------------------------------- one pass per point
    def _call(self, x: Tensor) -> Tensor:
        try:
            out = self.fun(x, *self.args)
        except (RuntimeError, TypeError) as exc:
            if _numpy_inside(exc):
                raise ValueError(NUMPY_INSIDE.format(what=f"raised: {exc}")) from None
            raise
        if not isinstance(out, Tensor):
            raise ValueError(NUMPY_INSIDE.format(what=f"returned a {type(out).__name__}, not a tensor"))
        if out.numel() != 1:
            raise ValueError(f"fun must return a scalar, got a tensor of shape {tuple(out.shape)}")
        if out.is_complex():
            raise ValueError("fun must return a real scalar, got a complex tensor")
        return out.reshape(())

    def _point(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        for i, entry in enumerate(self._points):
            if entry[0].shape == x.shape and torch.equal(entry[0], x):
                if i:  # most recently used first: the iterate outlives its rejected trials
                    self._points.insert(0, self._points.pop(i))
                return entry
        leaf = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            f = self._call(leaf)
            if not f.requires_grad:
                raise ValueError(NUMPY_INSIDE.format(what="returned a value that does not depend on it through "
                                                      "torch operations (no gradient)"))
            (g,) = torch.autograd.grad(f, leaf, create_graph=True)
        entry = (x.detach().clone(), leaf, f, g)
        self._points = [entry, *self._points][: self.keep]
        return entry

    def value(self, x: Tensor) -> Tensor:
        return self._point(x)[2].detach()

    def value_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _, _, f, g = self._point(x)
        return f.detach(), g.detach()

    def grad(self, x: Tensor) -> Tensor:
        return self._point(x)[3].detach()

    # -------------------------------------------------------------- curvature
    def hvp(self, x: Tensor, v: Tensor) -> Tensor:
        """``grad^2 f(x) v`` by one backward pass through the gradient's graph."""
        _, leaf, _, g = self._point(x)
        if not g.requires_grad:  # f is affine in x
            return torch.zeros_like(v)
        (hv,) = torch.autograd.grad(g, leaf, v.to(g.dtype), retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if hv is None else hv.detach()

    def hessian(self, x: Tensor) -> Tensor:
        """The dense Hessian by the cheapest strategy for the dimension (module docstring)."""
        n = x.shape[0]
        order = (["batched", "reverse-over-reverse"] if n < SMALL_DIMENSION else ["reverse-over-reverse", "batched"])
        if self.hessian_strategy is not None:
            order = [self.hessian_strategy]
        for strategy in order:
            try:
                H = self._hessian(strategy, x)
            except (RuntimeError, ValueError, NotImplementedError):
                continue  # torch.func cannot transform this function; try the next strategy
            self.hessian_strategy = strategy
            return H
        self.hessian_strategy = "columns"
        return self._hessian("columns", x)

    def _hessian(self, strategy: str, x: Tensor) -> Tensor:
        n = x.shape[0]
        if strategy == "reverse-over-reverse":
            H = tf.jacrev(tf.grad(lambda z: self.fun(z, *self.args).reshape(())))(x.detach())
            return H.detach()
        _, leaf, _, g = self._point(x)
        if not g.requires_grad:
            return torch.zeros(n, n, dtype=x.dtype)
        eye = torch.eye(n, dtype=g.dtype)
        if strategy == "batched":
            (H,) = torch.autograd.grad(g, leaf, eye, retain_graph=True, is_grads_batched=True, allow_unused=True)
            return torch.zeros(n, n, dtype=x.dtype) if H is None else H.detach()
        rows = [torch.autograd.grad(g, leaf, eye[i], retain_graph=True, allow_unused=True)[0] for i in range(n)]
        return torch.stack([torch.zeros(n, dtype=x.dtype) if r is None else r.detach() for r in rows])


class NumpyOracles:
    """scipy's call forms: ``fun``/``jac``/``hess``/``hessp`` on numpy arrays, seen as torch oracles."""

    def __init__(
        self,
        fun: Callable[..., Any],
        n: int,
        jac: Any,
        hess: Callable[..., Any] | None = None,
        hessp: Callable[..., Any] | None = None,
        args: Sequence[Any] = (),
    ) -> None:
        if jac is None or jac is False:
            raise ValueError(
                "a numpy objective needs its gradient: pass jac=True (fun returns (f, g)) or jac=callable; "
                "optlib does not approximate gradients by finite differences. A function written in torch "
                "is differentiated automatically."
            )
        if isinstance(jac, str):
            raise ValueError(f"jac={jac!r}: finite-difference gradients are not supported; pass jac=True or a callable")
        if jac is not True and not callable(jac):
            raise ValueError(f"jac must be True, a callable or None, got {type(jac).__name__}")
        self.fun, self.n, self.jac, self.hess, self.hessp = fun, n, jac, hess, hessp
        self.args = tuple(args)
        self._last: tuple[np.ndarray, float, np.ndarray] | None = None

    @staticmethod
    def _np(x: Tensor) -> np.ndarray:
        return x.detach().cpu().numpy().astype(np.float64, copy=True)

    def _scalar(self, value: Any) -> float:
        arr = np.asarray(value)
        if arr.shape not in ((), (1,)):
            if self.jac is True and isinstance(value, tuple):
                raise ValueError(f"fun returned a tuple of {len(value)} items; with jac=True it must return (f, g)")
            raise ValueError(f"fun must return a scalar (shape () or (1,)), got an array of shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ValueError(f"fun must return a real number, got {arr.dtype}")
        return float(arr.reshape(()))

    def _vector(self, value: Any, what: str) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != (self.n,):
            raise ValueError(f"{what} must return an array of shape ({self.n},), got shape {arr.shape}")
        return arr

    def _fg(self, x: Tensor) -> tuple[float, np.ndarray]:
        xn = self._np(x)
        if self._last is not None and np.array_equal(self._last[0], xn):
            return self._last[1], self._last[2]
        if self.jac is True:
            out = self.fun(xn, *self.args)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                shape = np.shape(out)
                raise ValueError(
                    "jac=True means fun returns (f, g), but it returned "
                    + ("a scalar" if shape in ((), (1,)) else f"a {type(out).__name__} of shape {shape}")
                )
            f, g = self._scalar(out[0]), self._vector(out[1], "fun's gradient (jac=True)")
        else:
            f, g = self._scalar(self.fun(xn, *self.args)), self._vector(self.jac(xn, *self.args), "jac")
        self._last = (xn, f, g)
        return f, g

    def value(self, x: Tensor) -> Tensor:
        if self.jac is True:
            return torch.tensor(self._fg(x)[0], dtype=torch.float64)
        return torch.tensor(self._scalar(self.fun(self._np(x), *self.args)), dtype=torch.float64)

    def value_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f, g = self._fg(x)
        return torch.tensor(f, dtype=torch.float64), torch.from_numpy(g.copy())

    def hessian(self, x: Tensor) -> Tensor:
        if self.hess is None:
            raise ValueError("no dense Hessian: pass hess=callable, or solve with Hessian-vector products "
                             "(solver='cg', the default when only jac or hessp is given)")
        H = np.asarray(self.hess(self._np(x), *self.args), dtype=np.float64)
        if H.shape != (self.n, self.n):
            raise ValueError(f"hess must return an array of shape ({self.n}, {self.n}), got shape {H.shape}")
        return torch.from_numpy(H.copy())

    def hvp(self, x: Tensor, v: Tensor) -> Tensor:
        vn = self._np(v)
        if self.hessp is not None:
            return torch.from_numpy(self._vector(self.hessp(self._np(x), vn, *self.args), "hessp").copy())
        if self.hess is not None:
            return self.hessian(x) @ v
        # forward difference of the gradient, step sqrt(eps) (1 + ||x||)/||v|| (scipy Newton-CG's scale)
        vnorm = float(np.linalg.norm(vn))
        if vnorm == 0.0:
            return torch.zeros_like(v)
        xn = self._np(x)
        h = math.sqrt(np.finfo(float).eps) * (1.0 + float(np.linalg.norm(xn))) / vnorm
        _, g0 = self._fg(x)
        x1 = xn + h * vn
        if self.jac is True:
            g1 = self._vector(self.fun(x1, *self.args)[1], "fun's gradient (jac=True)")
        else:
            g1 = self._vector(self.jac(x1, *self.args), "jac")
        return torch.from_numpy((g1 - g0) / h)


def check_hessian_option(hess: Any) -> None:
    """Refuse scipy's finite-difference schemes and quasi-Newton strategies when the problem is built."""
    if isinstance(hess, str):
        if hess in SCIPY_HESSIAN_SCHEMES:
            raise ValueError(f"hess={hess!r}: finite-difference Hessians are not supported; pass hess=callable, "
                             "hessp=callable, or write fun in torch for exact autodiff curvature")
        raise ValueError(f"hess must be a callable or None, got the string {hess!r}")
    if hess is not None and not callable(hess):
        name = type(hess).__name__
        if hasattr(hess, "initialize") and hasattr(hess, "update"):
            raise ValueError(f"hess={name}(): scipy's quasi-Newton strategies are not supported; pass hess=callable, "
                             "hessp=callable, or write fun in torch for exact autodiff curvature")
        raise ValueError(f"hess must be a callable or None, got {name}")
