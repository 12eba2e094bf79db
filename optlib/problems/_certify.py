"""Independent certification of optima: a plain numpy/scipy damped Newton method and a cache.

The certified optimum of a convex problem must not come from optlib's own optimizers, or a bug
there would certify itself. Every problem with a numerical optimum therefore writes its objective,
gradient and Hessian a second time in plain numpy (next to the torch oracles it is certifying) and
hands them to :func:`newton_minimize` below: Newton's method with an Armijo backtracking line
search (Nocedal & Wright, *Numerical Optimization*, 2nd ed., Alg. 3.1 and §3.3) and a Cholesky
solve (scipy.linalg.cho_factor). On a strongly convex function it converges globally and then
quadratically, so it reaches the gradient-norm floor set by rounding in a few dozen iterations.

:func:`cached` keeps each certified optimum for the life of the process, keyed by a digest of the
data and parameters (so that constructing the same problem twice solves it once).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

_CACHE: dict[str, Any] = {}
_LOCK = threading.Lock()


def _single_threaded_blas() -> contextlib.AbstractContextManager:
    """Run numpy's BLAS on one thread: next to torch's own thread pool, a multi-threaded OpenBLAS
    oversubscribes small machines and the solves become several times slower."""
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def digest(*parts: Any) -> str:
    """A stable key for arrays and scalars (array contents, dtypes and shapes included)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            a = np.ascontiguousarray(p)
            h.update(f"array{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(repr(p).encode())
        h.update(b"|")
    return h.hexdigest()


def cached(key: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per process for each ``key``."""
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    value = compute()
    with _LOCK:
        return _CACHE.setdefault(key, value)


@dataclass
class NewtonResult:
    x: np.ndarray
    fun: float
    grad_norm: float
    nit: int
    converged: bool


def _solve_psd(H: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve ``H d = rhs`` for symmetric positive (semi)definite ``H``, shifting it if Cholesky fails."""
    shift = 0.0
    scale = max(1.0, float(np.max(np.abs(np.diag(H)))))
    for _ in range(30):
        try:
            c = scipy.linalg.cho_factor(H + shift * np.eye(H.shape[0]), check_finite=False)
            return scipy.linalg.cho_solve(c, rhs, check_finite=False)
        except np.linalg.LinAlgError:
            shift = 1e-14 * scale if shift == 0.0 else 10.0 * shift
    raise RuntimeError("certification: the Hessian could not be factored even after a large shift")


def newton_minimize(
    fun: Callable[[np.ndarray], float],
    fgh: Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]],
    x0: np.ndarray,
    *,
    gtol: float,
    max_iter: int = 200,
) -> NewtonResult:
    """Damped Newton method for a smooth convex function, run to the rounding floor.

    ``fun(x)`` is the value, ``fgh(x)`` returns value, gradient and Hessian. Stops once the gradient
    norm is at most ``gtol``, or when rounding prevents further progress (a full Newton step no
    longer lowers the gradient norm after it has dropped below ``1e3 * gtol``).
    """
    x = np.array(x0, dtype=np.float64)
    f, g, H = fgh(x)
    gnorm = float(np.linalg.norm(g))
    nit = 0
    for nit in range(1, max_iter + 1):
        if gnorm <= gtol:
            return NewtonResult(x, float(f), gnorm, nit - 1, True)
        d = _solve_psd(H, -g)
        slope = float(g @ d)
        if not slope < 0.0:
            break
        t = 1.0
        # Armijo with a rounding allowance: near the optimum f no longer resolves the decrease.
        slack = 64 * np.finfo(np.float64).eps * max(1.0, abs(float(f)))
        while fun(x + t * d) > f + 1e-4 * t * slope + slack:
            t *= 0.5
            if t < 1e-16:
                break
        if t < 1e-16:
            break
        x_new = x + t * d
        f_new, g_new, H_new = fgh(x_new)
        gnorm_new = float(np.linalg.norm(g_new))
        if t == 1.0 and gnorm_new >= gnorm and gnorm < 1e3 * gtol:
            break  # at the rounding floor
        x, f, g, H, gnorm = x_new, f_new, g_new, H_new, gnorm_new
    return NewtonResult(x, float(f), gnorm, nit, gnorm <= gtol)


def certify(
    fun: Callable[[np.ndarray], float],
    fgh: Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]],
    x0: np.ndarray,
    *,
    scale: float,
    what: str,
    gtol_rel: float = 1e-13,
    accept_rel: float = 1e-10,
) -> tuple[float, np.ndarray]:
    """Run :func:`newton_minimize` and insist on ``||grad|| <= accept_rel * scale`` at the answer.

    ``scale`` is the size of a typical gradient (for example ``max(1, ||grad f(x0)||)``).
    Returns ``(f_star, x_star)``; raises ``RuntimeError`` when the solve cannot certify the optimum.
    """
    with _single_threaded_blas():
        res = newton_minimize(fun, fgh, x0, gtol=gtol_rel * scale)
    if not np.isfinite(res.fun) or res.grad_norm > accept_rel * scale:
        raise RuntimeError(
            f"certification of {what} failed: Newton stopped after {res.nit} iterations with "
            f"||grad|| = {res.grad_norm:.3e} > {accept_rel * scale:.3e}"
        )
    return res.fun, res.x


def lazy_optimum(key: str, compute: Callable[[], tuple[float, np.ndarray]]) -> tuple[
    Callable[[], float], Callable[[], np.ndarray]
]:
    """Zero-argument ``f_star`` and ``x_star`` callables sharing one cached ``compute()``."""

    def f_star() -> float:
        return float(cached(key, compute)[0])

    def x_star() -> np.ndarray:
        return np.array(cached(key, compute)[1], dtype=np.float64)  # a copy: the cache stays intact

    return f_star, x_star
