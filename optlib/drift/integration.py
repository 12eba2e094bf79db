r"""Integrating a flow's right-hand side with ``scipy.integrate.solve_ivp`` (a torch adapter).

:func:`integrate` solves :math:`\dot\theta = F(\theta)`, :math:`\theta(0) = \theta_0` with an explicit
Runge-Kutta method of order 8(5,3) (``DOP853``: Hairer, Nørsett & Wanner, *Solving Ordinary Differential
Equations I*, II.10) at tight tolerances and returns the states at the requested times (dense output is not
used: ``t_eval`` points are step ends or the method's own interpolant). The right-hand side is a torch function
of a flat tensor; real and complex states (the principal flow) are both supported. A failed integration
(a step size below the floating-point spacing, a non-finite right-hand side) raises :class:`IntegrationError`
with scipy's message and the time reached; a truncated trajectory is never returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from .derivatives import as_flat_point

DEFAULT_RTOL = 1e-12
DEFAULT_ATOL = 1e-14


class IntegrationError(RuntimeError):
    """The integrator stopped before the last requested time; ``t_reached`` and ``message`` say where and why."""

    def __init__(self, message: str, t_reached: float, t_final: float) -> None:
        super().__init__(f"the flow integration failed at t = {t_reached:.6g} (of {t_final:.6g}): {message}")
        self.message = message
        self.t_reached = t_reached
        self.t_final = t_final


class _NonFinite(Exception):
    def __init__(self, t: float) -> None:
        self.t = t


def _times(t: float | Sequence[float] | np.ndarray | Tensor) -> tuple[np.ndarray, bool]:
    arr = np.asarray(t.detach().cpu().numpy() if isinstance(t, Tensor) else t, dtype=np.float64)
    scalar = arr.ndim == 0
    arr = arr.reshape(-1)
    if arr.size == 0:
        raise ValueError("t must hold at least one time")
    if not np.isfinite(arr).all():
        raise ValueError(f"times must be finite, got {arr.tolist()}")
    if (arr < 0).any():
        raise ValueError(f"times must be >= 0 (the flow starts at t = 0), got min {arr.min():.6g}")
    if arr.size > 1 and (np.diff(arr) <= 0).any():
        raise ValueError("times must be strictly increasing")
    return arr, scalar


def integrate(rhs: Callable[[Tensor], Tensor], theta0: Any, t: float | Sequence[float] | np.ndarray | Tensor, *,
              rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL, method: str = "DOP853",
              max_step: float = np.inf, **solver_options: Any) -> Tensor:
    r"""The solution of :math:`\dot\theta = \mathrm{rhs}(\theta)` from ``theta0`` at the time(s) ``t``.

    ``t`` is one time (the result has the shape of ``theta0``) or an increasing sequence of times
    (the result is ``(len(t), n)``; a time 0 returns ``theta0`` itself). The dtype of ``theta0`` is kept
    (``float64`` recommended; a real start with a complex right-hand side gives a complex result).
    ``rtol``/``atol``/``method``/``max_step``/``solver_options`` go to ``scipy.integrate.solve_ivp``.
    """
    times, scalar = _times(t)
    theta0 = as_flat_point(theta0, "theta0")
    if not torch.isfinite(torch.view_as_real(theta0) if theta0.is_complex() else theta0).all():
        raise ValueError("theta0 has non-finite entries")
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    shape, device = theta0.shape, theta0.device
    first = rhs(theta0)
    if not isinstance(first, Tensor) or first.shape != shape:
        got = tuple(first.shape) if isinstance(first, Tensor) else type(first).__name__
        raise ValueError(f"rhs must return a tensor of the shape of theta0 {tuple(shape)}, got {got}")
    complex_state = theta0.is_complex() or first.is_complex()
    real_dtype = theta0.real.dtype if theta0.is_complex() else theta0.dtype
    state_dtype = (torch.complex128 if real_dtype == torch.float64 else torch.complex64) if complex_state \
        else real_dtype
    np_dtype = np.complex128 if complex_state else np.float64

    reached = [0.0]

    def fun(time: float, y: np.ndarray) -> np.ndarray:
        reached[0] = max(reached[0], float(time))
        out = rhs(torch.from_numpy(np.array(y, dtype=np_dtype)).to(device=device, dtype=state_dtype))
        arr = out.detach().cpu().numpy().astype(np_dtype, copy=False)
        if not np.isfinite(arr).all():
            raise _NonFinite(time)
        return arr

    y0 = theta0.detach().cpu().numpy().astype(np_dtype)
    t_final = float(times[-1])
    if t_final == 0.0:
        states = np.repeat(y0[None, :], times.size, axis=0)
    else:
        try:
            sol = solve_ivp(fun, (0.0, t_final), y0, method=method, t_eval=times, rtol=rtol, atol=atol,
                            max_step=max_step, **solver_options)
        except _NonFinite as exc:
            raise IntegrationError("the right-hand side returned non-finite values", exc.t, t_final) from None
        if sol.status != 0:
            raise IntegrationError(str(sol.message), reached[0], t_final)
        states = sol.y.T
        if not np.isfinite(states).all():
            raise IntegrationError("the solution has non-finite values", float(times[-1]), t_final)
    result = torch.from_numpy(np.ascontiguousarray(states)).to(device=device, dtype=state_dtype)
    return result[-1] if scalar else result
