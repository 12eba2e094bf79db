"""Residual and Jacobian oracles for :func:`optlib.least_squares.least_squares`.

One :class:`ResidualOracle` wraps the user's ``fun`` and ``jac`` and hides where they live:

* **numpy mode** (``x0`` is not a tensor and ``jac`` is not ``"autodiff"``): ``fun`` and a callable
  ``jac`` receive float64 numpy arrays, as in :func:`scipy.optimize.least_squares`; results come back
  as numpy arrays.
* **torch mode** (``x0`` is a :class:`torch.Tensor`, or ``jac="autodiff"``): ``fun`` receives float64
  tensors on ``x0``'s device (CPU for a numpy ``x0``); the Jacobian is by default forward-mode
  automatic differentiation (:func:`torch.func.jacfwd`, ``n`` JVPs, the cheaper mode for the tall
  Jacobians of least squares, ``m >= n``).

Jacobian options (``jac=``): a callable ``jac(x, *args, **kwargs) -> (m, n)``; ``"2-point"`` forward
differences with step :math:`h_j = \\sqrt{\\varepsilon}\\,\\operatorname{sign}(x_j)\\max(1, |x_j|)`
(``n`` extra residual evaluations); ``"3-point"`` central differences with
:math:`h_j = \\varepsilon^{1/3}\\max(1, |x_j|)` (``2n`` evaluations); ``"cs"`` the complex step
:math:`J_{:j} = \\operatorname{Im} r(x + i h e_j)/h`, :math:`h_j = \\sqrt{\\varepsilon}\\max(1,|x_j|)`
(numpy mode, for ``fun`` written for complex input); ``"autodiff"``. ``diff_step`` replaces the
relative factor (:math:`\\sqrt\\varepsilon` or :math:`\\varepsilon^{1/3}`) as scipy's ``diff_step`` does.
``jac=None`` means ``"autodiff"`` in torch mode and ``"2-point"`` in numpy mode. The step actually
used is the representable :math:`(x_j + h_j) - x_j`.

Counting: ``nfev`` counts the residual evaluations the algorithm asked for, ``njev`` the Jacobians
(of any kind) and ``nfev_jac`` the residual evaluations spent inside finite differences (scipy's
``lm`` counts neither of the latter two in ``nfev``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

Tensor = torch.Tensor

EPS = float(np.finfo(np.float64).eps)
JAC_OPTIONS = ("2-point", "3-point", "cs", "autodiff")


class NumpyBackend:
    """Array operations of the loops on float64 numpy arrays (numpy mode)."""

    is_torch = False

    @staticmethod
    def norm(v: Any) -> float:
        with np.errstate(over="ignore"):  # huge finite residuals give inf: a failed trial, not an error
            return float(np.sqrt(np.dot(v, v)))

    @staticmethod
    def all_finite(v: Any) -> bool:
        return bool(np.isfinite(v).all())

    @staticmethod
    def host(v: Any) -> np.ndarray:
        return v

    @staticmethod
    def native(a: np.ndarray) -> Any:
        return a

    @staticmethod
    def column_norms(J: Any) -> np.ndarray:
        return np.sqrt(np.einsum("ij,ij->j", J, J))

    @staticmethod
    def svd_scaled(J: Any, r: Any, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``s, U^T r, V^T`` of the thin SVD of ``J / d``."""
        U, s, Vh = np.linalg.svd(J / d, full_matrices=False)
        return s, U.T @ r, Vh

    @staticmethod
    def nonfinite_indices(v: Any) -> list[int]:
        return np.flatnonzero(~np.isfinite(v)).tolist()


class TorchBackend:
    """The same operations on float64 tensors of one device (torch mode)."""

    is_torch = True

    def __init__(self, device: torch.device) -> None:
        self.device = device

    @staticmethod
    def norm(v: Tensor) -> float:
        return float(torch.linalg.vector_norm(v))

    @staticmethod
    def all_finite(v: Tensor) -> bool:
        return bool(torch.isfinite(v).all())

    @staticmethod
    def host(v: Tensor) -> np.ndarray:
        return v.detach().cpu().numpy()

    def native(self, a: np.ndarray) -> Tensor:
        return torch.as_tensor(a, dtype=torch.float64, device=self.device)

    @staticmethod
    def column_norms(J: Tensor) -> np.ndarray:
        return torch.linalg.vector_norm(J, dim=0).cpu().numpy()

    def svd_scaled(self, J: Tensor, r: Tensor, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        U, s, Vh = torch.linalg.svd(J / self.native(d), full_matrices=False)
        return s.cpu().numpy(), (U.T @ r).cpu().numpy(), Vh.cpu().numpy()

    @staticmethod
    def nonfinite_indices(v: Tensor) -> list[int]:
        return torch.nonzero(~torch.isfinite(v)).flatten().tolist()


class ResidualOracle:
    """Counted residual/Jacobian evaluations on flat float64 vectors (see the module docstring).

    Vectors are float64 numpy arrays in numpy mode and float64 tensors on :attr:`device` in torch
    mode ("native" arrays); :attr:`backend` holds the array operations the loops use on them.
    """

    def __init__(
        self,
        fun: Callable[..., Any],
        x0: Any,
        jac: Callable[..., Any] | str | None = None,
        *,
        args: tuple = (),
        kwargs: Mapping[str, Any] | None = None,
        diff_step: float | None = None,
    ) -> None:
        if not callable(fun):
            raise TypeError(f"fun must be callable, got {type(fun).__name__}")
        if not isinstance(args, tuple):
            raise TypeError(f"args must be a tuple, got {type(args).__name__}")
        self.fun = fun
        self.args = args
        self.kwargs = dict(kwargs or {})
        self.torch_mode = isinstance(x0, Tensor) or jac == "autodiff"
        self.return_tensors = isinstance(x0, Tensor)
        self.device = x0.device if isinstance(x0, Tensor) else torch.device("cpu")
        self.backend: NumpyBackend | TorchBackend = TorchBackend(self.device) if self.torch_mode else NumpyBackend()
        self.x0 = self._check_x0(x0)
        self.n = int(self.x0.shape[0])
        if jac is None:
            jac = "autodiff" if self.torch_mode else "2-point"
        if isinstance(jac, str):
            if jac not in JAC_OPTIONS:
                raise ValueError(f"jac must be a callable or one of {', '.join(map(repr, JAC_OPTIONS))}, got {jac!r}")
            if jac == "cs" and self.torch_mode:
                raise ValueError("jac='cs' (complex step) needs a numpy x0; with torch input use jac='autodiff'")
        elif not callable(jac):
            raise TypeError(f"jac must be a callable or one of {', '.join(map(repr, JAC_OPTIONS))}, got {jac!r}")
        self.jac = jac
        if diff_step is not None and not (np.isfinite(diff_step) and diff_step > 0):
            raise ValueError(f"diff_step must be a positive number, got {diff_step!r}")
        self.diff_step = diff_step
        self.m: int | None = None
        self.nfev = 0
        self.njev = 0
        self.nfev_jac = 0

    # ------------------------------------------------------------------ conversions
    def _check_x0(self, x0: Any) -> Any:
        if isinstance(x0, Tensor):
            if x0.is_complex():
                raise ValueError(f"x0 must be real, got dtype {x0.dtype}")
            arr = x0.detach().to(dtype=torch.float64).cpu().numpy()
        else:
            try:
                arr = np.asarray(x0, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"x0 must be a real 1-D array: {exc}") from None
        arr = np.array(arr, dtype=np.float64)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1:
            raise ValueError(f"x0 must have at most 1 dimension, got shape {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError("x0 must not be empty")
        if not np.isfinite(arr).all():
            raise ValueError("x0 must be finite")
        return self.backend.native(arr)

    def _native(self, out: Any, what: str) -> Any:
        if not self.torch_mode and type(out) is np.ndarray and out.dtype == np.float64:
            return out  # numpy mode's usual case, with nothing to convert or check (checked first: it is per call)
        if isinstance(out, Tensor):
            if out.is_complex():
                raise ValueError(f"{what} must be real, got dtype {out.dtype}")
            out = out.detach().to(dtype=torch.float64)
            return out.to(device=self.device) if self.torch_mode else out.cpu().numpy()
        if hasattr(out, "toarray") or hasattr(out, "matvec"):
            raise TypeError(
                f"{what} must be a dense array: got {type(out).__name__}; methods 'lm' and 'gn' work with dense "
                "Jacobians only (call .toarray(), or use scipy.optimize.least_squares(method='trf') for sparse ones)"
            )
        arr = np.asarray(out)
        if np.iscomplexobj(arr):
            raise ValueError(f"{what} must be real, got a complex array")
        arr = np.asarray(arr, dtype=np.float64)
        return self.backend.native(arr) if self.torch_mode else arr

    def output(self, v: Any) -> Any:
        """A native array in the caller's kind (numpy unless ``x0`` was a tensor), as a copy."""
        if v is None:
            return None
        if self.return_tensors:
            return v.detach().clone()
        return self.backend.host(v).copy()

    # ------------------------------------------------------------------ oracles
    def _call(self, x: Any) -> Any:
        r = self._native(self.fun(x.clone() if self.torch_mode else x.copy(), *self.args, **self.kwargs),
                         "fun's return value")
        if r.ndim == 0:
            r = r.reshape(1)
        if r.ndim != 1:
            raise ValueError(f"fun must return a 1-D array of residuals, got shape {tuple(r.shape)}")
        if self.m is None:
            self.m = int(r.shape[0])
        elif r.shape[0] != self.m:
            raise ValueError(f"fun returned {r.shape[0]} residuals at one point and {self.m} at another")
        return r

    def residuals(self, x: Any) -> Any:
        """``r(x)`` (counts one ``nfev``)."""
        self.nfev += 1
        return self._call(x)

    def jacobian(self, x: Any, r: Any) -> Any:
        """``J(x)``, shape ``(m, n)`` (counts one ``njev``; finite differences reuse ``r = r(x)``)."""
        self.njev += 1
        if callable(self.jac):
            J = self._native(self.jac(x.clone() if self.torch_mode else x.copy(), *self.args, **self.kwargs),
                             "jac's return value")
        elif self.jac == "autodiff":
            J = self._autodiff(x)
        elif self.jac == "cs":
            J = self._complex_step(x)
        else:
            J = self._finite_difference(x, r)
        if tuple(J.shape) != (self.m, self.n):
            raise ValueError(f"jac returned shape {tuple(J.shape)}, expected (m, n) = ({self.m}, {self.n})")
        return J

    def _steps(self, x: Any, rel: float, signed: bool) -> np.ndarray:
        xh = self.backend.host(x)
        h = rel * np.maximum(np.abs(xh), 1.0)
        if signed:
            h = np.where(xh >= 0, h, -h)
        return (xh + h) - xh  # the representable step

    def _shifted(self, x: Any, j: int, h: float) -> Any:
        xj = x.clone() if self.torch_mode else x.copy()
        xj[j] += h
        return xj

    def _stack(self, cols: list[Any]) -> Any:
        return torch.stack(cols, dim=1) if self.torch_mode else np.stack(cols, axis=1)

    def _finite_difference(self, x: Any, r: Any) -> Any:
        if self.jac == "2-point":
            h = self._steps(x, self.diff_step or EPS**0.5, signed=True)
            cols = [(self._call(self._shifted(x, j, h[j])) - r) / h[j] for j in range(self.n)]
            self.nfev_jac += self.n
            return self._stack(cols)
        h = self._steps(x, self.diff_step or EPS ** (1.0 / 3.0), signed=False)
        cols = [(self._call(self._shifted(x, j, h[j])) - self._call(self._shifted(x, j, -h[j]))) / (2.0 * h[j])
                for j in range(self.n)]
        self.nfev_jac += 2 * self.n
        return self._stack(cols)

    def _complex_step(self, x: np.ndarray) -> np.ndarray:
        h = (self.diff_step or EPS**0.5) * np.maximum(1.0, np.abs(x))
        cols = []
        for j in range(self.n):
            xc = x.astype(np.complex128)
            xc[j] += 1j * h[j]
            out = np.asarray(self.fun(xc, *self.args, **self.kwargs))
            if not np.iscomplexobj(out):
                raise ValueError("jac='cs' needs fun to propagate complex input (it returned a real array)")
            cols.append(out.imag.reshape(-1) / h[j])
            self.nfev_jac += 1
        return np.stack(cols, axis=1)

    def _autodiff(self, x: Tensor) -> Tensor:
        def f(z: Tensor) -> Tensor:
            out = self.fun(z, *self.args, **self.kwargs)
            if not isinstance(out, Tensor):
                raise TypeError(
                    f"jac='autodiff' needs fun to return a torch tensor, got {type(out).__name__}; "
                    "pass jac='2-point' for numpy functions"
                )
            return out.reshape(-1).to(torch.float64)

        try:
            return torch.func.jacfwd(f)(x.clone()).detach()
        except TypeError:
            raise
        except RuntimeError as exc:
            raise RuntimeError(
                f"automatic differentiation of fun failed ({exc}); write fun with differentiable torch "
                "operations or pass jac='2-point' or a callable jac"
            ) from exc
