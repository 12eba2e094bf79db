r"""Discretisation drift in two-player games: modified flows of simultaneous and alternating Euler updates and the
explicit drift regularisers of both players.

Players :math:`\varphi` and :math:`\theta` follow :math:`\dot\varphi = f(\varphi, \theta)`,
:math:`\dot\theta = g(\varphi, \theta)` with Euler steps of sizes :math:`\alpha h` and :math:`\lambda h`
(Rosca, Wu, Dherin & Barrett, "Discretization Drift in Two-Player Games", ICML 2021, arXiv 2105.13922, Thms 3.1
and 3.2). With :math:`F_1 = -\tfrac12F'F` (:mod:`optlib.drift.flows`), :math:`f_\varphi = \partial f/\partial\varphi`
etc., the modified flows that the updates follow to :math:`O(h^3)` per step (time :math:`t = nh`) are

* simultaneous: :math:`\dot\varphi = \alpha f - \tfrac{\alpha h}2(\alpha f_\varphi f + \lambda f_\theta g)`,
  :math:`\dot\theta = \lambda g - \tfrac{\lambda h}2(\alpha g_\varphi f + \lambda g_\theta g)`;
* alternating (:math:`\varphi` first, then :math:`\theta` at the new :math:`\varphi`): the same
  :math:`\dot\varphi`, and :math:`\dot\theta = \lambda g - \tfrac{\lambda h}2(\lambda g_\theta g - \alpha g_\varphi
  f)`: the step :math:`\theta' = \theta + \lambda h g(\varphi + \alpha hf, \theta)` carries the extra
  :math:`\alpha\lambda h^2g_\varphi f`, which flips the sign of the cross term.

For a differentiable game, :math:`f = -\nabla_\varphi L_1`, :math:`g = -\nabla_\theta L_2`, these are gradient
flows of drift-modified losses, :math:`\dot\varphi = -\alpha\nabla_\varphi(L_1 + R^\varphi_{self} +
R^\varphi_{int})`, :math:`\dot\theta = -\lambda\nabla_\theta(L_2 + R^\theta_{self} + R^\theta_{int})` with
(:math:`\mathrm{sg}` = stop-gradient)

.. math::
   R^\varphi_{self} = \tfrac{\alpha h}4\lVert\nabla_\varphi L_1\rVert^2,\quad
   R^\varphi_{int} = \tfrac{\lambda h}2\,\nabla_\theta L_1^\top\mathrm{sg}(\nabla_\theta L_2),\quad
   R^\theta_{self} = \tfrac{\lambda h}4\lVert\nabla_\theta L_2\rVert^2,\quad
   R^\theta_{int} = \pm\tfrac{\alpha h}2\,\nabla_\varphi L_2^\top\mathrm{sg}(\nabla_\varphi L_1),

``+`` for simultaneous and ``-`` for alternating updates (derived as above; with :math:`\alpha = \lambda` these are
the coefficients of the authors' ``drift_utils.py``; for :math:`\alpha \ne \lambda` our derivation puts the other
player's rate on the interaction term). :func:`game_drift_penalties` returns these four scalars: subtract a term
from a player's loss to cancel that drift, add it to strengthen it (the paper's explicit regularisers, whose
coefficients are fixed by the step sizes). In the zero-sum case :math:`L_1 = E = -L_2` with simultaneous updates,
:math:`\theta` ascends :math:`\tfrac{\alpha\lambda h}4\lVert\nabla_\varphi E\rVert^2`, which destabilises training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .derivatives import as_flat_point

MODES = ("simultaneous", "alternating")
MODE_ALIASES = {"sim": "simultaneous", "alt": "alternating"}

Field = Callable[[Tensor, Tensor], Tensor]


def _mode(mode: str) -> str:
    mode = MODE_ALIASES.get(mode, mode)
    if mode not in MODES:
        raise ValueError(f"unknown game update mode {mode!r}; use one of {', '.join(MODES)} (or 'sim'/'alt')")
    return mode


def _rate(value: float, what: str) -> float:
    value = float(value)
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{what} must be positive and finite, got {value}")
    return value


def _jvp(fn: Callable[[Tensor], Tensor], x: Tensor, v: Tensor) -> Tensor:
    """The directional derivative of ``fn`` at ``x`` along ``v`` (double-backward trick, any autograd function)."""
    with torch.enable_grad():
        _, out = torch.autograd.functional.jvp(fn, x, v)
    return out.detach()


class GameFlow:
    r"""The (modified) flow of a two-player game (module docstring).

    ``field(phi, theta) -> (phi_dot, theta_dot)``; ``rhs(z)`` on ``z = cat(phi, theta)`` needs ``phi_dim``
    (``pack``/``unpack`` convert). ``drift=False`` gives the plain flow :math:`(\alpha f, \lambda g)`.
    """

    def __init__(self, f: Field, g: Field, alpha: float, lam: float, h: float, mode: str = "simultaneous",
                 phi_dim: int | None = None, drift: bool = True) -> None:
        if not (callable(f) and callable(g)):
            raise TypeError("f and g must be callables (phi, theta) -> tensor (the two players' vector fields)")
        self.f, self.g = f, g
        self.alpha, self.lam, self.h = _rate(alpha, "alpha"), _rate(lam, "lam"), _rate(h, "h")
        self.mode = _mode(mode)
        if phi_dim is not None and int(phi_dim) < 1:
            raise ValueError(f"phi_dim must be >= 1, got {phi_dim}")
        self.phi_dim = None if phi_dim is None else int(phi_dim)
        self.drift = bool(drift)
        self.evaluations = 0

    def cross_sign(self) -> float:
        r"""The sign of :math:`\alpha g_\varphi f` in :math:`\dot\theta`'s correction: ``+1`` simultaneous,
        ``-1`` alternating."""
        return 1.0 if self.mode == "simultaneous" else -1.0

    def field(self, phi: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        phi, theta = as_flat_point(phi, "phi"), as_flat_point(theta, "theta")
        self.evaluations += 1
        fv = self.f(phi, theta).detach()
        gv = self.g(phi, theta).detach()
        if fv.shape != phi.shape or gv.shape != theta.shape:
            raise ValueError(f"f must return the shape of phi {tuple(phi.shape)} and g that of theta "
                             f"{tuple(theta.shape)}; got {tuple(fv.shape)} and {tuple(gv.shape)}")
        a, lam, h = self.alpha, self.lam, self.h
        if not self.drift:
            return a * fv, lam * gv
        f_phi_f = _jvp(lambda p: self.f(p, theta), phi, fv)
        f_theta_g = _jvp(lambda q: self.f(phi, q), theta, gv)
        g_phi_f = _jvp(lambda p: self.g(p, theta), phi, fv)
        g_theta_g = _jvp(lambda q: self.g(phi, q), theta, gv)
        phi_dot = a * fv - (a * h / 2.0) * (a * f_phi_f + lam * f_theta_g)
        theta_dot = lam * gv - (lam * h / 2.0) * (lam * g_theta_g + self.cross_sign() * a * g_phi_f)
        return phi_dot, theta_dot

    def pack(self, phi: Tensor, theta: Tensor) -> Tensor:
        return torch.cat([phi.reshape(-1), theta.reshape(-1)])

    def unpack(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.phi_dim is None:
            raise ValueError("the game flow on a concatenated state needs phi_dim (the number of phi coordinates): "
                             "pass phi_dim to game_flow, or call .field(phi, theta)")
        if z.ndim != 1 or z.numel() <= self.phi_dim:
            raise ValueError(f"the state must be a flat vector longer than phi_dim = {self.phi_dim}, "
                             f"got shape {tuple(z.shape)}")
        return z[: self.phi_dim], z[self.phi_dim:]

    def __call__(self, z: Tensor) -> Tensor:
        phi, theta = self.unpack(as_flat_point(z, "z"))
        return self.pack(*self.field(phi, theta))

    def __repr__(self) -> str:
        return (f"GameFlow(alpha={self.alpha}, lam={self.lam}, h={self.h}, mode={self.mode!r}, "
                f"phi_dim={self.phi_dim}, drift={self.drift})")


def game_flow(f: Field, g: Field, alpha: float, lam: float, h: float, mode: str = "simultaneous", *,
              phi_dim: int | None = None, drift: bool = True) -> GameFlow:
    r"""The modified flow of Euler updates ``phi += alpha h f``, ``theta += lam h g`` (``mode`` =
    ``"simultaneous"`` or ``"alternating"``, phi first) as a right-hand side on ``z = cat(phi, theta)``
    (give ``phi_dim``) or as ``.field(phi, theta)``; formulas in the module docstring."""
    return GameFlow(f, g, alpha, lam, h, mode=mode, phi_dim=phi_dim, drift=drift)


@dataclass(frozen=True)
class GameDriftPenalties:
    r"""The drift terms of a differentiable game as scalars whose gradients with respect to the owning player are
    the drift (module docstring): :math:`R^\varphi_{self}`, :math:`R^\varphi_{int}`, :math:`R^\theta_{self}`,
    :math:`R^\theta_{int}`. Differentiate ``phi_*`` with respect to ``phi`` only and ``theta_*`` with respect to
    ``theta`` only."""

    phi_self: Tensor
    phi_interaction: Tensor
    theta_self: Tensor
    theta_interaction: Tensor

    def phi_total(self) -> Tensor:
        return self.phi_self + self.phi_interaction

    def theta_total(self) -> Tensor:
        return self.theta_self + self.theta_interaction


def _flat_grads(value: Tensor, params: list[Tensor]) -> list[Tensor]:
    grads = torch.autograd.grad(value, params, create_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if gr is None else gr for p, gr in zip(params, grads)]


def _dot(a: list[Tensor], b: list[Tensor]) -> Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def game_drift_penalties(loss1: Tensor, loss2: Tensor, phi: Tensor | list[Tensor], theta: Tensor | list[Tensor],
                         alpha: float, lam: float, h: float, mode: str = "simultaneous") -> GameDriftPenalties:
    r"""The explicit drift regularisers of both players of a differentiable game (module docstring).

    ``loss1`` (minimised by ``phi``) and ``loss2`` (minimised by ``theta``) are scalar tensors computed from
    ``phi`` and ``theta`` (tensors or lists of tensors with ``requires_grad``); the results keep their graphs
    (double backward). Coefficients: ``alpha h / 4``, ``lam h / 2``, ``lam h / 4``, ``+-alpha h / 2``.
    """
    mode = _mode(mode)
    alpha, lam, h = _rate(alpha, "alpha"), _rate(lam, "lam"), _rate(h, "h")
    phis = [phi] if isinstance(phi, Tensor) else list(phi)
    thetas = [theta] if isinstance(theta, Tensor) else list(theta)
    for name, group in (("phi", phis), ("theta", thetas)):
        if not group or not all(isinstance(p, Tensor) and p.requires_grad for p in group):
            raise ValueError(f"{name} must be a tensor or a non-empty list of tensors with requires_grad=True")
    for name, value in (("loss1", loss1), ("loss2", loss2)):
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise ValueError(f"{name} must be a scalar tensor")
    with torch.enable_grad():
        g1_phi = _flat_grads(loss1, phis)
        g1_theta = _flat_grads(loss1, thetas)
        g2_phi = _flat_grads(loss2, phis)
        g2_theta = _flat_grads(loss2, thetas)
        sign = 1.0 if mode == "simultaneous" else -1.0
        return GameDriftPenalties(
            phi_self=(alpha * h / 4.0) * _dot(g1_phi, g1_phi),
            phi_interaction=(lam * h / 2.0) * _dot(g1_theta, [t.detach() for t in g2_theta]),
            theta_self=(lam * h / 4.0) * _dot(g2_theta, g2_theta),
            theta_interaction=sign * (alpha * h / 2.0) * _dot(g2_phi, [t.detach() for t in g1_phi]),
        )
