r"""Gauss–Newton unlearning (K-FADE) and its baselines: gradient ascent and the one-step Newton (influence) update.

Setting (McKinney, Thudi, Bae, Rezaei, Papernot, McIlraith & Grosse, "Gauss-Newton Unlearning for the LLM
Era", arXiv:2602.10568, 2026): a model :math:`\theta_0` trained on :math:`D = D_r \cup D_f`; the forget loss
:math:`L_f(\theta) = \frac1{N_f}\sum_{t\in D_f} -\log p_\theta(y_t\mid x_t)` is to be raised while the model's
outputs on the retain distribution move as little as possible, measured by

.. math::

    \mathrm{KL}_r(\theta)
    = \mathbb{E}_{x\sim D_r}\,\mathrm{KL}\big(p_{\theta_0}(\cdot\mid x)\,\Vert\,p_\theta(\cdot\mid x)\big)
    = \tfrac12 (\theta-\theta_0)^\top G_r (\theta-\theta_0) + O(\lVert\theta-\theta_0\rVert^3),

with :math:`G_r = \mathbb{E}_{x\sim D_r} J^\top(\operatorname{diag}p - pp^\top)J` the retain-set Gauss–Newton
matrix, which for softmax outputs is also the Fisher (spec 50 §2). K-FADE replaces :math:`G_r` by a
parametric approximation, K-FAC or EK-FAC, so that the constraint on outputs over the whole retain set
becomes a constraint on the weights (the paper's abstract).

The full text of §3 (notation, exact step rule, hyperparameters) was not available to us; the update below
is our reconstruction from the abstract (spec 50 §5), with the trust-region step size derived here.

**K-FADE step** (:class:`KFADE`). For :math:`t = 0, \dots, T-1`:

.. math::

    g_t = \nabla L_f(\theta_t),\qquad
    \delta_t = (G_r + \lambda I)^{-1} g_t,\qquad
    \eta_t = \sqrt{\frac{2\varepsilon}{g_t^\top\delta_t}}\ \ (\text{or a fixed } \eta),\qquad
    \theta_{t+1} = \theta_t + \eta_t\,\delta_t .

The sign is uphill (:math:`\delta` is *added*: the forget loss rises). The stored update is
:math:`\Delta = \theta_T - \theta_0` (:class:`~optlib.unlearning.UnlearningDelta`).

*Derivation of the step size* (ours). Each step solves the trust-region problem

.. math::

    \max_s\ g^\top s \quad\text{s.t.}\quad \tfrac12 s^\top (G_r + \lambda I) s \le \varepsilon ,

the linearized forget-loss increase under the damped quadratic model of the retain KL. The objective is
linear and the constraint a positive definite ellipsoid, so the maximizer lies on the boundary and the KKT
condition :math:`g = \mu (G_r + \lambda I) s` with :math:`\mu > 0` gives :math:`s = \eta\delta`,
:math:`\eta = 1/\mu`. On the boundary,
:math:`\tfrac12\eta^2\,\delta^\top(G_r+\lambda I)\delta = \tfrac12\eta^2\, g^\top\delta = \varepsilon`, hence
:math:`\eta = \sqrt{2\varepsilon / g^\top\delta}`. The undamped model of the step is
:math:`\tfrac12 (\eta\delta)^\top G_r (\eta\delta) = \varepsilon - \tfrac12\lambda\eta^2\lVert\delta\rVert^2`, which
tends to :math:`\varepsilon` as :math:`\lambda \to 0`; the true KL agrees with it to
:math:`O(\varepsilon^{3/2})`. The budget is per step: after :math:`T` steps the quadratic model of the total
change is at most :math:`T^2\varepsilon` (triangle inequality in the :math:`(G_r+\lambda I)`-norm).

**Newton / influence step** (:class:`NewtonUnlearning`, spec 50 §5). If :math:`\theta_0` minimizes
:math:`N_r L_r + N_f L_f` (both means; a regularizer belongs to :math:`N_r L_r`), then
:math:`\nabla L_r(\theta_0) = -\frac{N_f}{N_r}\nabla L_f(\theta_0)` and one Newton step on the retain objective is

.. math::

    \theta_0 + \frac{N_f}{N_r}\,(H_r + \lambda I)^{-1}\nabla L_f(\theta_0),

with :math:`H_r = \nabla^2 L_r(\theta_0)`. For a quadratic objective (ridge regression) this is the retrained
optimum exactly; for a smooth strongly convex one it errs by :math:`O(\lVert\theta_r - \theta_0\rVert^2)`
(Newton's local quadratic convergence). Replacing :math:`H_r` by the GGN gives Gauss–Newton unlearning.

**Gradient ascent** (:class:`GradientAscent`): :math:`\theta_{t+1} = \theta_t + \eta\,\nabla L_f(\theta_t)`,
the usual first-order baseline.

Curvature (``retain_curvature`` / ``retain_hessian``): an operator of :mod:`optlib.curvature` (``KFAC``,
``EKFAC``, ``GGN``, ``Hessian``, ... built on the retain data, with :attr:`names` naming the parameters it
covers, which are then the parameters unlearned) or a dense symmetric matrix over the selected parameters,
flattened in ``named_parameters`` order. ``damping`` is passed to the operator's ``solve``: a number is
Tikhonov :math:`\lambda`, or an :class:`optlib.curvature.Damping`.
"""

from __future__ import annotations

import difflib
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..curvature.damping import as_damping
from ..curvature.operators import DenseCurvature
from ..linalg.regularized import NonPSDCurvatureError
from ..result import Trace
from ._data import (
    LossSpec,
    as_batches,
    check_loss,
    loss_and_grad,
    mean_loss,
    select_parameters,
    total_terms,
    unflatten,
)
from .delta import UnlearningDelta
from .metrics import kl_to_reference, reference_log_probs

Tensor = torch.Tensor

METHODS = ("kfade", "gradient-ascent", "newton")  # hyphenated, as optlib.methods() spells names
"""The method names :func:`unlearn` dispatches on."""


# ----------------------------------------------------------------------------------------------- curvature
def _curvature_operator(curvature: Any, *, psd: bool) -> Any:
    """An :mod:`optlib.curvature` operator for ``curvature``: a dense matrix is wrapped in ``DenseCurvature``
    (checked to be symmetric, and positive semidefinite when ``psd``)."""

    if isinstance(curvature, Tensor):
        if curvature.ndim != 2 or curvature.shape[0] != curvature.shape[1]:
            raise ValueError(f"a dense curvature must be a square matrix, got shape {tuple(curvature.shape)}")
        if not bool(torch.isfinite(curvature).all()):
            raise ValueError("the curvature matrix has non-finite entries")
        scale = float(curvature.abs().max()) if curvature.numel() else 0.0
        if not torch.allclose(curvature, curvature.T, rtol=0.0, atol=1e-10 * max(scale, 1e-300)):
            raise ValueError("the curvature matrix must be symmetric")
        return DenseCurvature(curvature, psd=psd)
    if not (hasattr(curvature, "solve") and hasattr(curvature, "shape")):
        raise TypeError("the retain curvature must be an optlib.curvature operator (KFAC, EKFAC, GGN, Hessian, ...) "
                        f"or a dense square tensor, got {type(curvature).__name__}")
    return curvature


def _operator_names(op: Any) -> list[str] | None:
    """The parameter names an operator covers, or ``None`` for a flat dense one."""

    if isinstance(op, DenseCurvature):
        return None
    names = getattr(op, "names", None)
    return list(names) if names is not None else None


def _params_for(op: Any, params: Iterable[str] | None) -> list[str] | None:
    """The parameter names to unlearn: the operator's (its flat order is the step's order), or ``params``
    when the operator is a flat dense matrix; a ``params`` list that contradicts the operator is an error."""
    names = _operator_names(op)
    if params is None:
        return names
    params = list(params)
    if names is not None and params != names:
        raise ValueError(f"params {params} do not match the parameters the curvature covers, {names} (same order)")
    return params


def _solve(op: Any, g: Tensor, damping: Any) -> Tensor:
    """``op.solve(g, damping)`` in the operator's dtype and device, returned in ``g``'s; the gradient goes along
    for ``"grad_norm"`` damping."""

    v = g.to(dtype=op.dtype, device=op.device)
    if as_damping(damping).mode == "grad_norm":
        d = op.solve(v, damping=damping, grad=v)
    else:
        d = op.solve(v, damping=damping)
    return d.to(dtype=g.dtype, device=g.device)


def _describe(op: Any) -> str:
    return type(op).__name__


# ----------------------------------------------------------------------------------------------- base loop
class Unlearner:
    r"""Uphill steps :math:`\theta_{t+1} = \theta_t + \eta_t\,d_t` on the forget loss.

    Subclasses define the direction :math:`d_t` (:meth:`direction`) and the step size :math:`\eta_t`
    (:meth:`step_size`); :meth:`run` applies ``steps`` of them to the model **in place** and returns the
    :class:`~optlib.unlearning.UnlearningDelta` :math:`\theta_T - \theta_0`.

    Parameters
    ----------
    model : nn.Module
        The trained model :math:`\theta_0`; modified in place.
    loss : ``"cross_entropy"`` or callable
        The forget loss (see :mod:`optlib.unlearning._data`): mean negative log-likelihood over the forget
        terms, or a callable ``fn(output, targets)`` giving a per-batch mean.
    params : iterable of str, optional
        Names of the parameters to change; default: those the curvature operator covers, else every
        trainable parameter.
    """

    method = "unlearner"

    def __init__(self, model: nn.Module, *, loss: LossSpec = "cross_entropy",
                 params: Iterable[str] | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.loss = check_loss(loss)
        self.params = select_parameters(model, params)
        self.n = sum(p.numel() for p in self.params.values())

    # ------------------------------------------------------------------------------------------- hooks
    def direction(self, g: Tensor) -> Tensor:
        """The ascent direction :math:`d` for the forget gradient :math:`g` (flat)."""
        raise NotImplementedError

    def step_size(self, g: Tensor, d: Tensor) -> float:
        """The step size :math:`\\eta` for gradient :math:`g` and direction :math:`d`."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------------------------------- loop
    def run(self, forget_data: Any, *, steps: int = 1, retain_data: Any = None,
            monitor: Callable[[nn.Module], dict[str, float]] | None = None,
            progress: bool = False) -> UnlearningDelta:
        """Take ``steps`` uphill steps on ``forget_data``; record the retain KL on ``retain_data`` if given, and
        the fields ``monitor(model)`` returns (any extra metrics), at the start and after every step. The record
        is also :attr:`trace`, so the steps taken before an error can still be read.

        Raises
        ------
        ValueError
            Empty forget set, ``steps < 1``, a non-finite gradient or step, or :math:`g^\\top d \\le 0`.
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        batches = as_batches(forget_data, "forget_data")
        n_forget = total_terms(batches, self.loss)
        if n_forget == 0:
            raise ValueError("forget_data is empty: every target is ignored (-1)")
        retain = as_batches(retain_data, "retain_data") if retain_data is not None else None
        ref = reference_log_probs(self.model, retain) if retain is not None else None
        theta0 = {n: p.detach().clone() for n, p in self.params.items()}
        trace = self.trace = Trace()  # kept on the instance: a failed run's steps so far stay readable
        t0 = time.perf_counter()

        def record(k: int, extra: dict[str, Any]) -> None:
            rec: dict[str, Any] = {"k": k, "forget_loss": mean_loss(self.model, batches, self.loss)}
            if ref is not None:
                rec["retain_kl"] = kl_to_reference(ref, self.model, retain)
            if monitor is not None:
                rec.update(monitor(self.model))
            rec.update(extra)
            rec["time"] = time.perf_counter() - t0
            trace.append(rec)

        record(0, {})
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, desc=self.method, leave=False)
        try:
            for k in range(1, steps + 1):
                _, g = loss_and_grad(self.model, batches, self.loss, self.params)
                if not bool(torch.isfinite(g).all()):
                    raise ValueError(f"the forget-loss gradient is not finite at step {k}")
                d = self.direction(g)
                gd = float(torch.dot(g.double(), d.double()))
                if not math.isfinite(gd):
                    raise ValueError(f"the step direction is not finite at step {k}")
                if gd <= 0.0:
                    if float(g.norm()) == 0.0:
                        raise ValueError(f"the forget-loss gradient is zero at step {k}: nothing to ascend")
                    raise NonPSDCurvatureError(
                        f"g^T d = {gd:.3e} <= 0 at step {k}: the damped curvature is not positive definite along "
                        "the forget gradient; increase the damping or use a positive semidefinite curvature")
                eta = float(self.step_size(g, d))
                if not math.isfinite(eta):
                    raise ValueError(f"the step size is not finite at step {k}")
                step = eta * d
                with torch.no_grad():
                    for p, s in zip(self.params.values(), unflatten(step, self.params).values()):
                        p.add_(s.to(p.dtype))
                record(k, {"eta": eta, "g_dot_delta": gd, "grad_norm": float(g.norm()),
                           "step_norm": float(step.norm()), "model_kl": 0.5 * eta * eta * gd})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(forget_loss=f"{trace[-1]['forget_loss']:.3g}")
        finally:
            if bar is not None:
                bar.close()
        deltas = {n: (p.detach() - theta0[n]).clone() for n, p in self.params.items()}
        info = {"steps": steps, "n_forget": n_forget, "n_params": self.n, "params": list(self.params),
                **self.settings()}
        return UnlearningDelta(deltas, trace, self.method, info)


# ----------------------------------------------------------------------------------------------- K-FADE
class KFADE(Unlearner):
    r"""K-FADE: uphill Gauss–Newton steps on the forget loss in the retain-set metric (module docstring).

    Parameters
    ----------
    model : nn.Module
        The trained model; modified in place by :meth:`run`.
    retain_curvature : operator or Tensor
        :math:`G_r`, the retain-set GGN/Fisher (mean over retain terms): an :mod:`optlib.curvature` operator
        (``KFAC``/``EKFAC`` for K-FADE proper; ``GGN`` or a dense matrix for small models). Must be positive
        semidefinite.
    kl_budget : float, optional
        Per-step budget :math:`\varepsilon > 0` of the quadratic KL model; sets
        :math:`\eta = \sqrt{2\varepsilon/g^\top\delta}`. Exactly one of ``kl_budget`` and ``lr``.
    lr : float, optional
        A fixed step size :math:`\eta > 0` instead.
    damping : float or Damping
        :math:`\lambda` of :math:`(G_r + \lambda I)^{-1}` (default ``1e-3``), passed to the operator's solve.
    loss, params
        As in :class:`Unlearner`.
    """
    method = "kfade"

    def __init__(self, model: nn.Module, retain_curvature: Any, *, kl_budget: float | None = None,
                 lr: float | None = None, damping: Any = 1e-3, loss: LossSpec = "cross_entropy",
                 params: Iterable[str] | None = None) -> None:
        if (kl_budget is None) == (lr is None):
            raise ValueError("give exactly one of kl_budget (KL trust region) and lr (fixed step size)")
        if kl_budget is not None and not (math.isfinite(kl_budget) and kl_budget > 0):
            raise ValueError(f"kl_budget must be a positive finite number, got {kl_budget!r}")
        if lr is not None and not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        op = _curvature_operator(retain_curvature, psd=True)
        super().__init__(model, loss=loss, params=_params_for(op, params))
        if tuple(op.shape) != (self.n, self.n):
            raise ValueError(f"the curvature is {tuple(op.shape)} but the selected parameters have {self.n} entries "
                             f"({', '.join(self.params)})")
        self.curvature = op
        self.kl_budget = None if kl_budget is None else float(kl_budget)
        self.lr = None if lr is None else float(lr)
        self.damping = damping
        self._check_damping()

    def _check_damping(self) -> None:
        as_damping(self.damping)  # raises on an unknown mode or a negative value

    def direction(self, g: Tensor) -> Tensor:
        r""":math:`\delta = (G_r + \lambda I)^{-1} g` (raises if the damped curvature is singular)."""
        return _solve(self.curvature, g, self.damping)

    def step_size(self, g: Tensor, d: Tensor) -> float:
        r""":math:`\sqrt{2\varepsilon/g^\top\delta}` under a KL budget, else the fixed ``lr``."""
        if self.kl_budget is None:
            return self.lr
        return math.sqrt(2.0 * self.kl_budget / float(torch.dot(g.double(), d.double())))

    def settings(self) -> dict[str, Any]:
        return {"kl_budget": self.kl_budget, "lr": self.lr, "damping": _damping_repr(self.damping),
                "curvature": _describe(self.curvature)}


class GradientAscent(Unlearner):
    r"""Gradient ascent on the forget loss: :math:`\theta_{t+1} = \theta_t + \eta\nabla L_f(\theta_t)`."""

    method = "gradient-ascent"

    def __init__(self, model: nn.Module, *, lr: float, loss: LossSpec = "cross_entropy",
                 params: Iterable[str] | None = None) -> None:
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        super().__init__(model, loss=loss, params=params)
        self.lr = float(lr)

    def direction(self, g: Tensor) -> Tensor:
        return g

    def step_size(self, g: Tensor, d: Tensor) -> float:
        return self.lr

    def settings(self) -> dict[str, Any]:
        return {"lr": self.lr}


class NewtonUnlearning(Unlearner):
    r"""One Newton (influence-function) step towards the retrained optimum:
    :math:`\theta_0 + \frac{N_f}{N_r}(H_r + \lambda I)^{-1}\nabla L_f(\theta_0)` (module docstring).

    Parameters
    ----------
    model : nn.Module
        :math:`\theta_0`, a minimizer of :math:`N_rL_r + N_fL_f`; modified in place.
    retain_hessian : operator or Tensor
        :math:`H_r = \nabla^2 L_r(\theta_0)`, the Hessian of the **mean** retain objective (regularizer
        included, divided by :math:`N_r`); an :mod:`optlib.curvature` operator (``Hessian``, or ``GGN`` for the
        Gauss–Newton variant) or a dense matrix. It may be indefinite; :math:`H_r + \lambda I` must be positive
        definite.
    n_retain : int
        :math:`N_r`, the number of retain terms :math:`\theta_0` was trained on.
    n_forget : int, optional
        :math:`N_f` (default: the number of terms in the forget data).
    damping : float or Damping
        :math:`\lambda` (default 0).
    """

    method = "newton"

    def __init__(self, model: nn.Module, retain_hessian: Any, *, n_retain: int, n_forget: int | None = None,
                 damping: Any = 0.0, loss: LossSpec = "cross_entropy", params: Iterable[str] | None = None) -> None:
        if isinstance(n_retain, bool) or not isinstance(n_retain, int) or n_retain < 1:
            raise ValueError(f"n_retain must be a positive integer, got {n_retain!r}")
        if n_forget is not None and (isinstance(n_forget, bool) or not isinstance(n_forget, int) or n_forget < 1):
            raise ValueError(f"n_forget must be a positive integer, got {n_forget!r}")
        op = _curvature_operator(retain_hessian, psd=False)
        super().__init__(model, loss=loss, params=_params_for(op, params))
        if tuple(op.shape) != (self.n, self.n):
            raise ValueError(f"the Hessian is {tuple(op.shape)} but the selected parameters have {self.n} entries")
        self.curvature = op
        self.n_retain = n_retain
        self.n_forget = n_forget
        self.damping = damping
        self._n_forget_run: int | None = None

    def factor(self) -> float:
        r""":math:`N_f/N_r`."""
        return self._n_forget_run / self.n_retain

    def direction(self, g: Tensor) -> Tensor:
        r""":math:`(H_r + \lambda I)^{-1} g`."""
        return _solve(self.curvature, g, self.damping)

    def step_size(self, g: Tensor, d: Tensor) -> float:
        return self.factor()

    def run(self, forget_data: Any, *, steps: int = 1, retain_data: Any = None,
            monitor: Callable[[nn.Module], dict[str, float]] | None = None,
            progress: bool = False) -> UnlearningDelta:
        if steps != 1:
            raise ValueError(f"the Newton unlearning update is one step from theta_0; got steps={steps!r}")
        counted = total_terms(as_batches(forget_data, "forget_data"), self.loss)
        self._n_forget_run = self.n_forget if self.n_forget is not None else counted
        return super().run(forget_data, steps=1, retain_data=retain_data, monitor=monitor, progress=progress)

    def settings(self) -> dict[str, Any]:
        return {"n_retain": self.n_retain, "n_forget": self._n_forget_run, "damping": _damping_repr(self.damping),
                "curvature": _describe(self.curvature)}


def _damping_repr(damping: Any) -> Any:
    if isinstance(damping, (int, float)) or damping is None:
        return damping
    return repr(damping)


# ----------------------------------------------------------------------------------------------- functions
def kfade(model: nn.Module, forget_data: Any, retain_curvature: Any, *, steps: int = 1, kl_budget: float | None = None,
          lr: float | None = None, damping: Any = 1e-3, loss: LossSpec = "cross_entropy",
          params: Iterable[str] | None = None, retain_data: Any = None,
          monitor: Callable[[nn.Module], dict[str, float]] | None = None, progress: bool = False) -> UnlearningDelta:
    r"""K-FADE (McKinney et al. 2026, arXiv:2602.10568): ``steps`` uphill Gauss–Newton steps
    :math:`\theta \leftarrow \theta + \eta\,(G_r + \lambda I)^{-1}\nabla L_f(\theta)` with
    :math:`\eta = \sqrt{2\varepsilon/g^\top\delta}` (``kl_budget=ε``) or a fixed ``lr``; see :class:`KFADE`.

    The model is changed in place; the returned :class:`~optlib.unlearning.UnlearningDelta` holds
    :math:`\theta_T - \theta_0` and the per-step record (retain KL too when ``retain_data`` is given).

    Examples
    --------
    >>> from optlib.curvature import KFAC                                    # doctest: +SKIP
    >>> G = KFAC(model, "cross_entropy", None, retain_batches)               # doctest: +SKIP
    >>> delta = kfade(model, (x_forget, y_forget), G, steps=3, kl_budget=0.01)   # doctest: +SKIP
    >>> delta.apply(finetuned_model)                                         # doctest: +SKIP
    """
    return KFADE(model, retain_curvature, kl_budget=kl_budget, lr=lr, damping=damping, loss=loss,
                 params=params).run(forget_data, steps=steps, retain_data=retain_data, monitor=monitor,
                                    progress=progress)


def gradient_ascent(model: nn.Module, forget_data: Any, *, lr: float, steps: int = 1, loss: LossSpec = "cross_entropy",
                    params: Iterable[str] | None = None, retain_data: Any = None,
                    monitor: Callable[[nn.Module], dict[str, float]] | None = None,
                    progress: bool = False) -> UnlearningDelta:
    r"""Gradient ascent on the forget loss, :math:`\theta \leftarrow \theta + \eta\nabla L_f(\theta)`, ``steps``
    times (in place); see :class:`GradientAscent`."""
    return GradientAscent(model, lr=lr, loss=loss, params=params).run(forget_data, steps=steps, retain_data=retain_data,
                                                                       monitor=monitor, progress=progress)


def newton_unlearning(model: nn.Module, forget_data: Any, retain_hessian: Any, *, n_retain: int,
                      n_forget: int | None = None, damping: Any = 0.0, loss: LossSpec = "cross_entropy",
                      params: Iterable[str] | None = None, retain_data: Any = None) -> UnlearningDelta:
    r"""One Newton / influence step :math:`\theta_0 + \frac{N_f}{N_r}(H_r+\lambda I)^{-1}\nabla L_f(\theta_0)`
    (in place); see :class:`NewtonUnlearning`."""
    return NewtonUnlearning(model, retain_hessian, n_retain=n_retain, n_forget=n_forget, damping=damping, loss=loss,
                            params=params).run(forget_data, retain_data=retain_data)


def unlearn(method: str, model: nn.Module, forget_data: Any, **kwargs: Any) -> UnlearningDelta:
    """Dispatch by name: ``"kfade"`` (:func:`kfade`, needs ``retain_curvature``), ``"gradient-ascent"``
    (:func:`gradient_ascent`) or ``"newton"`` (:func:`newton_unlearning`, needs ``retain_hessian`` and
    ``n_retain``)."""
    if method == "kfade":
        if "retain_curvature" not in kwargs:
            raise ValueError("method 'kfade' needs retain_curvature=")
        return kfade(model, forget_data, kwargs.pop("retain_curvature"), **kwargs)
    if method == "gradient-ascent":
        return gradient_ascent(model, forget_data, **kwargs)
    if method == "newton":
        if "retain_hessian" not in kwargs:
            raise ValueError("method 'newton' needs retain_hessian=")
        return newton_unlearning(model, forget_data, kwargs.pop("retain_hessian"), **kwargs)
    close = difflib.get_close_matches(str(method), METHODS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown unlearning method {method!r}{hint}; known: {', '.join(METHODS)}")


__all__ = ["METHODS", "GradientAscent", "KFADE", "NewtonUnlearning", "Unlearner", "gradient_ascent", "kfade",
           "newton_unlearning", "unlearn"]
