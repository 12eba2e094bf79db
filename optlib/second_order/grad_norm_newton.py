"""Gradient-regularized Newton with an adaptive radius (Semenov, Jaggi & Doikov 2025).

A. Semenov, M. Jaggi, N. Doikov, "Gradient-Normalized Smoothness for Optimization with Approximate
Hessians", arXiv:2506.13710 (ICLR 2026). For a metric ``B`` (``||h|| = sqrt(<Bh, h>)``,
``||s||_* = sqrt(<s, B^{-1} s>)``), a PSD curvature ``H(x)`` and a radius ``gamma_k > 0``:

    lambda_k = ||grad f(x_k)||_* / gamma_k
    x_{k+1}  = x_k - (H(x_k) + lambda_k B)^{-1} grad f(x_k)

Since ``H + lambda B >= lambda B``, every step has ``||x_{k+1} - x_k|| <= gamma_k``. A trial is
accepted when (the one-step progress inequality of the paper's Lemma 1)

    f(x_k) - f(x_{k+1}) >= ||grad f(x_{k+1})||_*^2 / (8 lambda_k),

after which ``gamma <- max(2 gamma, gamma_min)``; a rejected trial halves ``gamma``. This search is
the one in the authors' code (``grad_norm_smooth``), except that here a failed factorization is a
rejected trial and an exhausted search is reported, never silently accepted. With ``hessian=None``
(``H = 0``) the step is ``-(gamma/||g||_*) B^{-1} g``: the normalized gradient method.
"""

from __future__ import annotations

from typing import Any

import torch

from ..linalg.regularized import regularized_newton_step
from ..problem import Problem
from ..result import OptimizeResult, forwards_options
from .driver import Point, StepRule, Trial, run


class GradNormRule(StepRule):
    param = "gamma"

    def __init__(self, gamma_min: float, needs_curvature: bool = True) -> None:
        self.gamma_min = gamma_min
        self.needs_curvature = needs_curvature

    def propose(self, pt: Point, gamma: float) -> Trial:
        lam = pt.gnorm / gamma
        return Trial(regularized_newton_step(pt.H, pt.g, lam, pt.metric), lam)

    def accept(self, pt: Point, trial: Trial, f_new: float, g_new: torch.Tensor, gnorm_new: float) -> bool:
        return pt.f - f_new >= gnorm_new**2 / (8.0 * trial.lam)

    def on_success(self, gamma: float) -> float:
        return max(2.0 * gamma, self.gamma_min)

    def on_failure(self, gamma: float) -> float:
        return 0.5 * gamma


@forwards_options(run, fixed=("method",))
def grad_norm_newton(
    problem: Problem,
    x0: Any,
    *,
    hessian: Any = "exact",
    gamma0: float = 1.0,
    gamma_min: float = 1e-9,
    adaptive: bool = True,
    B: Any = None,
    **options: Any,
) -> OptimizeResult:
    """Minimize with the gradient-regularized Newton method (adaptive or fixed radius ``gamma``).

    Parameters
    ----------
    hessian : str, callable or None
        ``"exact"``, ``"gauss-newton"``, ``"fisher"``, ``"bohning"``, ``"diagonal"``, a callable
        ``x -> H``, or ``None`` for ``H = 0`` (normalized gradient method).
    gamma0 : float
        Initial radius.
    gamma_min : float
        Floor applied when ``gamma`` doubles after a success (as in the authors' code).
    adaptive : bool
        ``False`` keeps ``gamma = gamma0`` and takes every step; the trace then marks steps that
        fail the acceptance inequality as ``verified=False``.
    B : tensor, optional
        Positive definite metric (default identity).
    **options
        ``maxiter``, ``max_inner``, ``gtol``, ``f_target``, ``accept_unverified``, ``callback``,
        ``progress`` (see :func:`optlib.second_order.driver.run`).
    """
    if not gamma_min > 0:
        raise ValueError(f"gamma_min must be positive, got {gamma_min}")
    rule = GradNormRule(gamma_min, needs_curvature=hessian is not None)
    return run(problem, x0, rule, gamma0, hessian=hessian, B=B, adaptive=adaptive,
               method="grad-norm-newton", **options)


@forwards_options(grad_norm_newton, fixed=("hessian",))
def normalized_gradient(problem: Problem, x0: Any, **options: Any) -> OptimizeResult:
    """The adaptive normalized gradient method: :func:`grad_norm_newton` with ``H = 0``."""
    res = grad_norm_newton(problem, x0, hessian=None, **options)
    res.method = "normalized-gradient"
    return res
