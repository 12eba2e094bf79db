r"""Drift-adjusted learning rate (DAL): a step size from the drift of gradient descent, for any torch optimizer.

Rosca, Wu, Qin & Dherin, "On a continuous time model of gradient descent dynamics and instability in deep
learning", TMLR 2023 (arXiv:2302.01952), the DAL algorithm. With :math:`g = \nabla E(\theta_t)` and
:math:`Hg` the Hessian-vector product along it, the drift of one gradient-descent step of size :math:`h` is
:math:`h\,\lVert H g\rVert` to leading order; DAL sets the step from the curvature along the gradient,

.. math::

    v_t = \frac{\lVert H g\rVert}{\lVert g\rVert}, \qquad
    h_t = \min\Bigl(\frac{2}{v_t^{\,p}},\ h_{\max}\Bigr) \quad (p > 0), \qquad h_t = h_0 \quad (p = 0),

applied as a multiplier :math:`m_t = h_t / h_0` of every param group's base learning rate (:math:`h_0` =
``reference_lr``, by default the first group's learning rate at construction). With one group of
``torch.optim.SGD`` (no momentum), the step is exactly :math:`\theta_{t+1} = \theta_t - h_t g`; :math:`p = 1`
gives :math:`h_t = 2\lVert g\rVert/\lVert Hg\rVert`, which is :math:`2/\lambda` when :math:`g` is an eigenvector
of :math:`H` with eigenvalue :math:`\lambda`, the edge of stability of GD on that direction. Outside the window
``start < t < stop`` (``t`` = DAL steps already taken) the multiplier is 1.

:math:`Hg` is either exact (double backward, ``hvp="exact"``) or the finite difference of two gradients on the
same batch (``hvp="finite_difference"``, the default),

.. math:: Hg \approx \frac{\nabla E(\theta + \varepsilon g) - \nabla E(\theta)}{\varepsilon},
          \qquad \varepsilon = \frac{c}{\lVert g\rVert},\ c = 0.01 \text{ (``fd_scale``)},

so the probe moves the parameters by :math:`c` in norm; it costs one more forward and backward pass, the exact
product about two.

What is verified and what is not:

- checked against the authors' code (google-deepmind/discretisation_drift,
  ``principal_flow_instability_single_objective/dal.py``, read, not copied): the multiplier
  :math:`\operatorname{clip}(2/(h_0 v^p), 0, h_{\max}/h_0)` on a static rate :math:`h_0` (so the effective rate is
  :math:`\min(2/v^p, h_{\max})`, default :math:`h_{\max} = 5`), :math:`p = 0` leaving the rate at :math:`h_0`,
  the strict window ``start < t < stop``, and the finite-difference probe :math:`\varepsilon = 0.01/\lVert
  g\rVert`;
- tested here (``tests/test_dal.py``): on quadratics :math:`h_t = 2/\lambda` along an eigenvector and
  :math:`2\lVert g\rVert/\lVert Ag\rVert` in a general direction, against closed forms; the cap; the window;
  the finite difference against the exact product; exact resume from ``state_dict``;
- not verified: that the printed algorithm of the paper (full text not read) equals the code; the paper's
  choice of :math:`p` per experiment. The authors scale the *gradient* of plain gradient descent; scaling the
  *learning rate*, as here, is the same for SGD without momentum, but differs for momentum (the buffer keeps
  unscaled gradients) and for adaptive methods (Adam is invariant to the gradient's scale, not to the rate's).
  For those optimizers the stability argument (:math:`h\lambda < 2`) does not apply as such and DAL is a
  heuristic.

Usage (the closure returns the loss on the batch that produced ``.grad``, with its graph; it does not call
``backward``)::

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dal = DriftAdjustedLR(opt, power=1.0)
    loss = loss_fn(model(x), y); opt.zero_grad(); loss.backward()
    dal.step(lambda: loss_fn(model(x), y))   # sets every group's lr
    opt.step()
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

__all__ = ["HVP_MODES", "DriftAdjustedLR", "dal_step_size"]

HVP_MODES = ("finite_difference", "exact")
FD_SCALE = 0.01  # the authors' probe length: epsilon * ||g|| = 0.01
MAX_LR = 5.0  # the authors' default max_lr_scale


def dal_step_size(grad_norm: float, hg_norm: float, *, power: float = 1.0, base_lr: float,
                  max_lr: float = MAX_LR) -> float:
    r"""The DAL step :math:`\min(2/(\lVert Hg\rVert/\lVert g\rVert)^p, h_{\max})`, or ``base_lr`` for ``power = 0``.

    ``hg_norm = 0`` (no curvature along :math:`g`) gives the cap. ``grad_norm`` must be positive (the ratio is
    undefined at a stationary point, where any step is zero).
    """
    if not (math.isfinite(grad_norm) and grad_norm > 0):
        raise ValueError(f"grad_norm must be a finite positive number, got {grad_norm!r}")
    if not (math.isfinite(hg_norm) and hg_norm >= 0):
        raise ValueError(f"hg_norm (the norm of the Hessian-vector product) must be finite and >= 0, got {hg_norm!r}")
    if power == 0:
        return float(base_lr)
    ratio = hg_norm / grad_norm
    if ratio == 0:
        return float(max_lr)
    return float(min(2.0 / ratio ** power, max_lr))


def _positive(name: str, v, allow_zero: bool = False) -> float:
    ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
    if not ok or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {v!r}")
    return float(v)


class DriftAdjustedLR:
    r"""Sets the learning rate of every param group of ``optimizer`` by DAL before each step (module docstring).

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Any optimizer; its groups' ``lr`` at construction are the base rates :math:`h_{0,g}`.
    power : float
        :math:`p \ge 0` (0: plain steps at the base rates; 1: :math:`h = 2\lVert g\rVert/\lVert Hg\rVert`).
    max_lr : float
        The cap :math:`h_{\max}` on the reference group's rate (default 5, the authors').
    reference_lr : float, optional
        :math:`h_0`, the rate the multiplier is relative to (default: the first group's base rate).
    start, stop : int, optional
        The window: DAL acts while ``start < t < stop`` (``t`` = steps already taken), else the multiplier is 1.
    hvp : str
        ``"finite_difference"`` (default, one more gradient) or ``"exact"`` (double backward).
    fd_scale : float
        Finite difference: the probe's length :math:`\varepsilon\lVert g\rVert` (default 0.01).

    Notes
    -----
    After :meth:`step`, ``last_multiplier``, ``last_ratio`` (:math:`\lVert Hg\rVert/\lVert g\rVert`) and
    ``last_grad_norm`` hold what was used; all of it goes through :meth:`state_dict`.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, power: float = 1.0, max_lr: float = MAX_LR, *,
                 reference_lr: float | None = None, start: int | None = None, stop: int | None = None,
                 hvp: str = "finite_difference", fd_scale: float = FD_SCALE) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"DriftAdjustedLR needs a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if hvp not in HVP_MODES:
            raise ValueError(f"unknown hvp mode {hvp!r}; valid: {', '.join(HVP_MODES)}")
        self.optimizer = optimizer
        self.power = _positive("power", power, allow_zero=True)
        self.max_lr = _positive("max_lr", max_lr)
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        for i, lr in enumerate(self.base_lrs):
            _positive(f"param_groups[{i}]['lr']", lr)
        self.reference_lr = _positive("reference_lr", self.base_lrs[0] if reference_lr is None else reference_lr)
        for name, v in (("start", start), ("stop", stop)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise ValueError(f"{name} must be an integer step or None, got {v!r}")
        if start is not None and stop is not None and stop <= start + 1:
            raise ValueError(f"the window start < t < stop is empty: start={start}, stop={stop}")
        self.start = -1 if start is None else int(start)
        self.stop = None if stop is None else int(stop)
        self.hvp = hvp
        self.fd_scale = _positive("fd_scale", fd_scale)
        self.steps = 0
        self.last_multiplier = 1.0
        self.last_ratio = float("nan")
        self.last_grad_norm = float("nan")

    # ---------------------------------------------------------------------------------------------- internals
    def _params_with_grad(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]

    def _label(self, p: torch.Tensor) -> str:
        for gi, group in enumerate(self.optimizer.param_groups):
            for j, q in enumerate(group["params"]):
                if q is p:
                    return f"param_groups[{gi}]['params'][{j}]"
        return "a parameter"

    def in_window(self, t: int | None = None) -> bool:
        """Whether DAL acts at step ``t`` (default: the next step)."""
        t = self.steps if t is None else t
        return t > self.start and (self.stop is None or t < self.stop)

    def hessian_grad_product(self, closure: Callable[[], torch.Tensor],
                             params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """:math:`Hg` for the gradient in ``p.grad`` of ``params`` (``closure`` as in :meth:`step`); the
        parameters and their ``.grad`` are left as they were, bit for bit."""
        grads = [p.grad.detach().clone() for p in params]
        if self.hvp == "exact":
            with torch.enable_grad():
                loss = closure()
                g = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
                pairs = [(gi, v) for gi, v in zip(g, grads) if gi is not None and gi.requires_grad]
                if not pairs:
                    return [torch.zeros_like(v) for v in grads]
                hg = torch.autograd.grad([gi for gi, _ in pairs], params, grad_outputs=[v for _, v in pairs],
                                         allow_unused=True)
            return [torch.zeros_like(v) if h is None else h.detach() for h, v in zip(hg, grads)]
        norm = float(torch.sqrt(sum((v.double() ** 2).sum() for v in grads)))
        eps = self.fd_scale / norm
        saved = [p.detach().clone() for p in params]
        try:
            with torch.no_grad():
                for p, v in zip(params, grads):
                    p.add_(v, alpha=eps)
            with torch.enable_grad():
                loss = closure()
                shifted = torch.autograd.grad(loss, params, allow_unused=True)
        finally:
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)
        return [torch.zeros_like(v) if s is None else (s.detach() - v) / eps for s, v in zip(shifted, grads)]

    # ---------------------------------------------------------------------------------------------- the step
    def step(self, closure: Callable[[], torch.Tensor]) -> float:
        r"""Set every group's ``lr`` to its base rate times :math:`m_t` and return :math:`m_t`.

        Call after ``backward`` and before ``optimizer.step()``. ``closure()`` must return the loss on the batch
        that produced the current ``.grad``, as a tensor with its graph (it must not call ``backward``). Outside
        the window nothing is evaluated and the multiplier is 1. A zero gradient keeps the previous multiplier
        (the step is zero whatever the rate). A non-finite gradient or product raises ``ValueError`` naming the
        parameter, before any learning rate changes.
        """
        t = self.steps
        multiplier = 1.0
        if self.in_window(t) and self.power != 0:
            if not callable(closure):
                raise TypeError("DriftAdjustedLR.step needs closure(): the loss on the current batch, with its graph")
            params = self._params_with_grad()
            if not params:
                raise ValueError("DriftAdjustedLR.step: no parameter has a gradient; call loss.backward() first")
            for p in params:
                if not bool(torch.isfinite(p.grad).all()):
                    raise ValueError(f"DriftAdjustedLR: non-finite gradient for {self._label(p)}")
            grad_norm = float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params)))
            if grad_norm == 0:
                multiplier = self.last_multiplier
            else:
                hg = self.hessian_grad_product(closure, params)
                for p, h in zip(params, hg):
                    if not bool(torch.isfinite(h).all()):
                        raise ValueError(f"DriftAdjustedLR: non-finite Hessian-vector product for {self._label(p)} "
                                         f"(the loss at the probe point is not finite?)")
                hg_norm = float(torch.sqrt(sum((h.double() ** 2).sum() for h in hg)))
                h_t = dal_step_size(grad_norm, hg_norm, power=self.power, base_lr=self.reference_lr,
                                    max_lr=self.max_lr)
                multiplier = h_t / self.reference_lr
                self.last_ratio = hg_norm / grad_norm
            self.last_grad_norm = grad_norm
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * multiplier
        self.last_multiplier = float(multiplier)
        self.steps = t + 1
        return self.last_multiplier

    def get_last_lr(self) -> list[float]:
        """The groups' learning rates set by the last :meth:`step` (the base rates before the first)."""
        return [base * self.last_multiplier for base in self.base_lrs]

    def state_dict(self) -> dict:
        """Plain data (numbers, strings, a list): loads under ``torch.load(weights_only=True)``."""
        return {"power": self.power, "max_lr": self.max_lr, "reference_lr": self.reference_lr,
                "base_lrs": list(self.base_lrs), "start": self.start, "stop": self.stop, "hvp": self.hvp,
                "fd_scale": self.fd_scale, "steps": self.steps, "last_multiplier": self.last_multiplier,
                "last_ratio": self.last_ratio, "last_grad_norm": self.last_grad_norm}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output; the groups' learning rates become those of the last step."""
        missing = sorted({"base_lrs", "steps", "last_multiplier"} - set(state))
        if missing:
            raise ValueError(f"not a DriftAdjustedLR state: missing {', '.join(missing)}")
        if len(state["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(f"the state has {len(state['base_lrs'])} base learning rates and the optimizer "
                             f"{len(self.optimizer.param_groups)} param groups")
        if state.get("hvp", self.hvp) not in HVP_MODES:
            raise ValueError(f"unknown hvp mode {state['hvp']!r} in the state; valid: {', '.join(HVP_MODES)}")
        for key in ("power", "max_lr", "reference_lr", "start", "stop", "hvp", "fd_scale", "last_ratio",
                    "last_grad_norm"):
            if key in state:
                setattr(self, key, state[key])
        self.base_lrs = [float(v) for v in state["base_lrs"]]
        self.steps = int(state["steps"])
        self.last_multiplier = float(state["last_multiplier"])
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * self.last_multiplier
