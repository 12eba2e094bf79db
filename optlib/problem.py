"""`Problem`: a scalar objective on a flat float64 tensor, with oracles and call counters.

Oracles come from :mod:`torch.func` unless the problem supplies hand-written ones (the problem
library does so for speed; ``tests/test_problems.py`` compares every hand-written oracle with
autograd). Every oracle call is counted, so results and benchmarks can report the cost of a run
in function, gradient, Hessian and Hessian-vector-product evaluations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import func as tf

Tensor = torch.Tensor

COUNTER_NAMES = ("nfev", "njev", "nhev", "nhvp", "nres", "njac")


@dataclass
class Counters:
    """Oracle call counters. ``nfev``/``njev``/``nhev`` follow scipy's names."""

    nfev: int = 0  # objective values
    njev: int = 0  # gradients
    nhev: int = 0  # Hessians or Hessian approximations (one per matrix built)
    nhvp: int = 0  # Hessian-vector products
    nres: int = 0  # residual vectors
    njac: int = 0  # residual Jacobians

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in COUNTER_NAMES}

    def reset(self) -> None:
        for k in COUNTER_NAMES:
            setattr(self, k, 0)


@dataclass
class Constants:
    """Constants a problem is known to satisfy; ``None`` where unknown.

    L   : Lipschitz constant of the gradient (Euclidean).
    L2  : Lipschitz constant of the Hessian (Euclidean operator norm).
    mu  : strong-convexity modulus.
    M   : quasi-self-concordance parameter, |D^3 f(x)[u,u,v]| <= M ||v|| <u, D^2 f(x) u>.
    convex : whether f is convex.
    """

    L: float | None = None
    L2: float | None = None
    mu: float | None = None
    M: float | None = None
    convex: bool = False
    notes: dict[str, str] = field(default_factory=dict)


class Problem:
    """An unconstrained problem ``min_x f(x)`` over a flat tensor ``x`` of length ``n``.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> scalar tensor`` written in torch; differentiable by :mod:`torch.func`.
    n : int or None
        Dimension of ``x``; ``None`` fixes it from the first point checked (the ``x0`` of a run).
    grad, value_and_grad, hess, hvp : callable, optional
        Hand-written oracles replacing autograd (each must agree with autograd; the problem
        library tests this).
    residuals, outer : callable, optional
        A composite structure ``f(x) = outer(residuals(x))``. Enables the Gauss-Newton
        approximation ``J^T (D^2 outer) J`` and the residual/Jacobian oracles.
    curvatures : mapping of name to callable, optional
        Problem-specific Hessian stand-ins, ``name -> (x -> PSD matrix)`` (for example the Böhning
        bound or the Fisher term). :meth:`curvature` resolves names against these first.
    constants : Constants, optional
        What the theorems need (L, L2, mu, M, convexity).
    f_star, x_star : float/tensor or zero-argument callable, optional
        A certified optimum. A callable is evaluated once, on first access (so that an expensive
        independent solve happens only when someone needs it).
    x0 : tensor, optional
        The problem's customary starting point (as used in the literature it comes from).
    """

    def __init__(
        self,
        fun: Callable[[Tensor], Tensor],
        n: int | None,
        *,
        grad: Callable[[Tensor], Tensor] | None = None,
        value_and_grad: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
        hess: Callable[[Tensor], Tensor] | None = None,
        hvp: Callable[[Tensor, Tensor], Tensor] | None = None,
        residuals: Callable[[Tensor], Tensor] | None = None,
        outer: Callable[[Tensor], Tensor] | None = None,
        curvatures: Mapping[str, Callable[[Tensor], Any]] | None = None,
        constants: Constants | None = None,
        f_star: float | Callable[[], float] | None = None,
        x_star: Tensor | Callable[[], Tensor] | None = None,
        x0: Tensor | None = None,
        name: str = "problem",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if n is not None and int(n) <= 0:
            raise ValueError(f"problem dimension n must be positive, got {n}")
        if (residuals is None) != (outer is None):
            raise ValueError("residuals and outer go together: f(x) = outer(residuals(x))")
        self._fun = fun
        self.n = None if n is None else int(n)
        self.name = name
        self.dtype = dtype
        self._grad = grad
        self._value_and_grad = value_and_grad
        self._hess = hess
        self._hvp = hvp
        self._residuals = residuals
        self._outer = outer
        self.curvatures: dict[str, Callable[[Tensor], Any]] = dict(curvatures or {})
        self.constants = constants or Constants()
        self._f_star = f_star
        self._x_star = x_star
        self.x0 = None if x0 is None else self.check_x(x0, "x0")
        self.counters = Counters()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_numpy(
        cls,
        fun: Callable[[np.ndarray], float],
        n: int | None = None,
        *,
        jac: Callable[[np.ndarray], np.ndarray] | bool | None = None,
        hess: Callable[[np.ndarray], np.ndarray] | None = None,
        hessp: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
        **kwargs: Any,
    ) -> Problem:
        """Wrap scipy-style numpy callables: ``Problem.from_numpy(fun, n, jac=..., hess=..., hessp=...)``.

        The arguments are those of :class:`Problem` (``fun``, then the dimension ``n``) with
        :func:`scipy.optimize.minimize`'s derivative keywords: ``jac`` a callable ``jac(x) -> g``, or
        ``True`` when ``fun`` returns ``(f, g)``; ``hess(x) -> H``; ``hessp(x, p) -> H p``. The
        derivatives are keyword-only. ``n`` may be left out, as in
        ``Problem.from_numpy(scipy.optimize.rosen, jac=scipy.optimize.rosen_der)``: the dimension is
        then fixed by the first point the problem sees (``x0`` in :func:`optlib.minimize`). Other
        keywords (``name``, ``x0``, ``constants``, ...) go to :class:`Problem`.

        Without ``jac`` the problem has no gradient; without ``hess`` no Hessian: asking for
        one raises a ``ValueError`` that says which argument to pass.
        """
        if n is not None and (callable(n) or isinstance(n, bool) or not isinstance(n, (int, np.integer))):
            raise TypeError(
                f"the second argument of Problem.from_numpy is the dimension n (an integer or None), got {n!r}; "
                "give the derivatives by keyword: Problem.from_numpy(fun, n, jac=..., hess=...)"
            )

        def to_np(x: Tensor) -> np.ndarray:
            return x.detach().cpu().numpy()

        def as_t(a: Any) -> Tensor:
            return torch.as_tensor(np.asarray(a, dtype=np.float64))

        if jac is True:
            def value(x: Tensor) -> Tensor:
                return as_t(fun(to_np(x))[0])

            def vg(x: Tensor) -> tuple[Tensor, Tensor]:
                f, g = fun(to_np(x))
                return as_t(f), as_t(g)
        else:
            def value(x: Tensor) -> Tensor:
                return as_t(fun(to_np(x)))

            vg = None
            if callable(jac):
                def vg(x: Tensor) -> tuple[Tensor, Tensor]:
                    xn = to_np(x)
                    return as_t(fun(xn)), as_t(jac(xn))
            elif jac not in (None, False):
                raise ValueError(f"jac must be a callable, True or None, got {jac!r}")

        def missing(what: str, arg: str) -> Callable[..., Tensor]:
            def fail(*_: Any) -> Tensor:
                raise ValueError(f"this numpy problem has no {what}: pass {arg}= to Problem.from_numpy")
            return fail

        prob = cls(
            value,
            n,
            value_and_grad=vg or missing("gradient", "jac"),
            hess=(lambda x: as_t(hess(to_np(x)))) if hess is not None else missing("Hessian", "hess"),
            hvp=(lambda x, v: as_t(hessp(to_np(x), to_np(v)))) if hessp is not None else None,
            **kwargs,
        )
        prob._numpy_backed = True
        return prob

    _numpy_backed = False

    # ------------------------------------------------------------------ validation
    def check_x(self, x: Any, name: str = "x") -> Tensor:
        """Return ``x`` as a contiguous 1-D tensor of the problem's dtype, or raise ``ValueError``."""
        if isinstance(x, np.ndarray):
            if not np.issubdtype(x.dtype, np.floating):
                raise ValueError(f"{name} must hold floating-point numbers, got dtype {x.dtype}")
            x = torch.from_numpy(np.ascontiguousarray(x))
        elif not isinstance(x, Tensor):
            try:
                x = torch.as_tensor(np.asarray(x, dtype=np.float64))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name} must be a 1-D array of length {self.n}: {exc}") from None
        if x.is_complex() or not x.is_floating_point():
            raise ValueError(f"{name} must be a real floating-point tensor, got dtype {x.dtype}")
        if self.n is None and x.ndim == 1 and x.shape[0] > 0:
            self.n = int(x.shape[0])
        if x.ndim != 1 or x.shape[0] != self.n:
            raise ValueError(
                f"{name} must be a flat vector of length {self.n} for problem '{self.name}', "
                f"got shape {tuple(x.shape)}"
            )
        return x.detach().to(self.dtype).contiguous()

    # ------------------------------------------------------------------ oracles
    def value(self, x: Tensor) -> Tensor:
        """``f(x)`` (counts one ``nfev``)."""
        self.counters.nfev += 1
        return self._fun(x)

    def grad(self, x: Tensor) -> Tensor:
        """``grad f(x)`` (counts one ``njev``)."""
        self.counters.njev += 1
        if self._grad is not None:
            return self._grad(x)
        if self._value_and_grad is not None:
            return self._value_and_grad(x)[1]
        return tf.grad(self._fun)(x)

    def value_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(f(x), grad f(x))`` in one pass (counts one ``nfev`` and one ``njev``)."""
        self.counters.nfev += 1
        self.counters.njev += 1
        if self._value_and_grad is not None:
            return self._value_and_grad(x)
        if self._grad is not None:
            return self._fun(x), self._grad(x)
        g, f = tf.grad_and_value(self._fun)(x)
        return f, g

    def hessian(self, x: Tensor) -> Tensor:
        """The dense Hessian ``grad^2 f(x)`` (counts one ``nhev``)."""
        self.counters.nhev += 1
        if self._hess is not None:
            return self._hess(x)
        return tf.hessian(self._fun)(x)

    def hvp(self, x: Tensor, v: Tensor) -> Tensor:
        """The Hessian-vector product ``grad^2 f(x) v`` (counts one ``nhvp``), forward-over-reverse."""
        self.counters.nhvp += 1
        if self._hvp is not None:
            return self._hvp(x, v)
        if self._hess is not None:
            return self._hess(x) @ v
        grad_fn = self._grad if self._grad is not None else tf.grad(self._fun)
        return tf.jvp(grad_fn, (x,), (v,))[1]

    @property
    def has_residuals(self) -> bool:
        return self._residuals is not None

    def residuals(self, x: Tensor) -> Tensor:
        """The residual vector ``u(x)`` of ``f = outer(u(x))`` (counts one ``nres``)."""
        if self._residuals is None:
            raise ValueError(f"problem '{self.name}' has no residual structure f = outer(residuals(x))")
        self.counters.nres += 1
        return self._residuals(x)

    def jacobian(self, x: Tensor) -> Tensor:
        """The residual Jacobian ``du/dx``, shape ``(m, n)`` (counts one ``njac``)."""
        if self._residuals is None:
            raise ValueError(f"problem '{self.name}' has no residual structure f = outer(residuals(x))")
        self.counters.njac += 1
        return tf.jacrev(self._residuals)(x)

    def gauss_newton(self, x: Tensor) -> Tensor:
        """The generalized Gauss-Newton matrix ``J^T (D^2 outer)(u) J`` at ``x`` (dense)."""
        if "gauss-newton" in self.curvatures:
            self.counters.nhev += 1
            return self.curvatures["gauss-newton"](x)
        u = self.residuals(x)
        J = self.jacobian(x)
        self.counters.nhev += 1
        Hu = tf.hessian(self._outer)(u)
        return J.T @ Hu @ J

    # ------------------------------------------------------------------ curvature by name
    GENERIC_CURVATURES = ("exact", "gauss-newton", "diagonal")

    def available_curvatures(self) -> list[str]:
        """Names accepted by :meth:`curvature` (and by the ``hessian=`` option) for this problem."""
        names = ["exact", "diagonal"]
        if self.has_residuals or "gauss-newton" in self.curvatures:
            names.append("gauss-newton")
        return names + [k for k in self.curvatures if k not in names]

    def curvature(self, name: str) -> Callable[[Tensor], Any]:
        """Resolve a Hessian option to a function ``x -> curvature``.

        ``"exact"`` is the Hessian, ``"diagonal"`` its diagonal (returned as a 1-D tensor),
        ``"gauss-newton"`` the GGN; anything else must be one of the problem's own curvatures.
        """
        if name == "exact":
            return self.hessian
        if name == "diagonal":
            return lambda x: torch.diagonal(self.hessian(x)).clone()
        if name == "gauss-newton" and (self.has_residuals or "gauss-newton" in self.curvatures):
            return self.gauss_newton
        if name in self.curvatures:
            fn = self.curvatures[name]

            def counted(x: Tensor) -> Any:
                self.counters.nhev += 1
                return fn(x)

            return counted
        raise ValueError(
            f"problem '{self.name}' has no Hessian approximation '{name}'; "
            f"available: {', '.join(self.available_curvatures())}"
        )

    # ------------------------------------------------------------------ optimum
    @property
    def f_star(self) -> float | None:
        """The certified optimal value, or ``None`` when unknown."""
        if callable(self._f_star):
            self._f_star = float(self._f_star())
        return None if self._f_star is None else float(self._f_star)

    @property
    def x_star(self) -> Tensor | None:
        """A certified minimizer, or ``None`` when unknown."""
        if callable(self._x_star):
            self._x_star = torch.as_tensor(self._x_star(), dtype=self.dtype)
        return self._x_star

    # ------------------------------------------------------------------ scipy bridge
    def as_scipy(self) -> dict[str, Callable[..., Any]]:
        """numpy callables for ``scipy.optimize.minimize``: ``fun`` (returns f, g), ``hess``, ``hessp``.

        They go through the same counted oracles, so scipy runs report comparable counts.
        """

        def fun(xn: np.ndarray) -> tuple[float, np.ndarray]:
            f, g = self.value_and_grad(torch.from_numpy(np.asarray(xn, dtype=np.float64)))
            return float(f), g.detach().numpy()

        def hess(xn: np.ndarray) -> np.ndarray:
            return self.hessian(torch.from_numpy(np.asarray(xn, dtype=np.float64))).detach().numpy()

        def hessp(xn: np.ndarray, p: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(np.asarray(xn, dtype=np.float64))
            return self.hvp(x, torch.from_numpy(np.asarray(p, dtype=np.float64))).detach().numpy()

        return {"fun": fun, "jac": True, "hess": hess, "hessp": hessp}

    def __repr__(self) -> str:
        return f"Problem(name={self.name!r}, n={self.n})"


def as_problem(obj: Any, n: int | None = None) -> Problem:
    """Accept a :class:`Problem` or a torch callable (then ``n`` comes from ``x0``)."""
    if isinstance(obj, Problem):
        return obj
    if callable(obj):
        if n is None:
            raise ValueError("a plain callable needs the dimension (taken from x0)")
        return Problem(obj, n, name=getattr(obj, "__name__", "function"))
    raise TypeError(f"expected an optlib.Problem or a callable, got {type(obj).__name__}")
