r"""Damping rules for curvature solves ``(C + damping)^{-1} v``.

Modes (``Damping(mode, value, min_value, c)``):

``"none"``
    Solve :math:`C x = v`. A singular (or, for K-FAC, a singular-factor) operator raises
    :class:`~optlib.linalg.FactorizationError` before anything is solved.
``"tikhonov"``
    :math:`(C + \lambda I)^{-1} v` with :math:`\lambda` = ``value``. For Kronecker-factored operators this is
    computed through the eigendecompositions of the factors, :math:`A = Q_A\Lambda_AQ_A^\top`,
    :math:`S = Q_S\Lambda_SQ_S^\top`:

    .. math:: (S \otimes A + \lambda I)^{-1}\operatorname{vec}(V)
              = \operatorname{vec}\big(Q_S[(Q_S^\top V Q_A) \oslash (\lambda_S\lambda_A^\top + \lambda)]Q_A^\top\big),

    which is Grosse et al. 2023 ("Studying large language model generalization with influence
    functions", arXiv:2308.03296), eq. 21.
``"exact"``
    The same matrix as ``"tikhonov"`` (the name the K-FAC literature uses for it).
``"heuristic"``
    Factored Tikhonov damping of Martens & Grosse 2015 (arXiv:1503.05671), §6.3, for Kronecker-factored
    operators only: :math:`(A + \pi\sqrt\lambda I) \otimes (S + \tfrac{1}{\pi}\sqrt\lambda I)` with
    :math:`\pi = \sqrt{(\operatorname{tr}A/\dim A)/(\operatorname{tr}S/\dim S)}`; each factor's damping is
    floored at ``min_value`` (curvlinops' ``min_damping`` rule). A separate bias block uses its layer's
    damped :math:`S + \tfrac1\pi\sqrt\lambda I`, or :math:`S + \lambda I` when the layer's weight is not
    covered (curvlinops' ``KFACInverseLinearOperator`` convention).
``"grad_norm"``
    Tikhonov with :math:`\lambda = \max(\lambda_{\min}, \sqrt{c\,\lVert g\rVert})`, the regularization of
    Mishchenko's regularized Newton method (arXiv:2112.02089, :math:`x^+ = x - (\nabla^2 f +
    \sqrt{H\lVert\nabla f\rVert} I)^{-1}\nabla f`, so ``c`` plays the role of the Hessian's Lipschitz
    constant :math:`H`). ``g`` is the ``grad=`` argument of the solve, else the vector being solved. For
    K-FAC and EK-FAC it is applied per layer, with :math:`g_l` the layer's part (curvlinops PR #296).
``"lm"``
    Adaptive Levenberg–Marquardt (Martens & Grosse 2015, §6.5): Tikhonov with the current ``value``,
    which :meth:`Damping.update` adapts from the reduction ratio
    :math:`\rho = (h(\theta+\delta) - h(\theta)) / (M(\delta) - M(0))`: if :math:`\rho > 3/4`,
    :math:`\lambda \leftarrow \omega_1\lambda`; if :math:`\rho < 1/4`, :math:`\lambda \leftarrow \lambda/\omega_1`;
    with :math:`\omega_1 = (19/20)^{T_1}`, :math:`T_1 = 5` (the rule is applied every :math:`T_1` iterations)
    and :math:`\lambda_0 = 150` in the paper. Constants as in tensorflow/kfac ``optimizer.py``
    (``damping_adaptation_decay=0.95``, ``damping_adaptation_interval=5``, ``omega = decay ** interval``,
    thresholds 0.25 / 0.75).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

MODES = ("none", "tikhonov", "exact", "heuristic", "grad_norm", "lm")
KRONECKER_ONLY = ("heuristic",)

# Martens & Grosse 2015, §6.5 (constants as in tensorflow/kfac).
LM_DECAY = 19.0 / 20.0
LM_INTERVAL = 5
LM_INITIAL = 150.0
LM_LOWER = 0.25
LM_UPPER = 0.75


@dataclass
class Damping:
    """A damping rule; see the module docstring for the modes.

    Parameters
    ----------
    mode : str
        One of ``"none"``, ``"tikhonov"``, ``"exact"``, ``"heuristic"``, ``"grad_norm"``, ``"lm"``.
    value : float
        :math:`\\lambda` (tikhonov, exact, heuristic; the current value for lm).
    min_value : float
        Floor: on each factor's damping (heuristic), on :math:`\\lambda` (grad_norm, lm).
    c : float
        The constant of ``grad_norm`` (:math:`\\lambda = \\sqrt{c\\lVert g\\rVert}`).
    interval, decay, lower, upper : LM constants (:math:`T_1`, :math:`19/20`, 1/4, 3/4).
    """

    mode: str = "tikhonov"
    value: float = 0.0
    min_value: float = 0.0
    c: float = 1.0
    interval: int = LM_INTERVAL
    decay: float = LM_DECAY
    lower: float = LM_LOWER
    upper: float = LM_UPPER

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown damping mode {self.mode!r}; use one of {', '.join(MODES)}")
        for name in ("value", "min_value", "c"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"Damping.{name} must be finite and >= 0, got {v}")
            setattr(self, name, v)
        if self.mode == "grad_norm" and self.c <= 0 and self.min_value <= 0:
            raise ValueError("grad_norm damping needs c > 0 or min_value > 0")
        if self.interval < 1:
            raise ValueError("Damping.interval must be >= 1")
        if not 0.0 < self.decay < 1.0:
            raise ValueError("Damping.decay must lie in (0, 1)")
        if not 0.0 <= self.lower < self.upper:
            raise ValueError("Damping needs 0 <= lower < upper")

    # ---------------------------------------------------------------- values
    @property
    def omega(self) -> float:
        """:math:`\\omega_1 = \\mathrm{decay}^{T_1}` (Martens & Grosse 2015, §6.5)."""
        return self.decay ** self.interval

    @property
    def is_tikhonov(self) -> bool:
        """Whether the damped matrix is :math:`C + \\lambda I` (for some :math:`\\lambda`)."""
        return self.mode in ("tikhonov", "exact", "grad_norm", "lm")

    def lam(self, grad_norm: float | None = None) -> float:
        """The Tikhonov :math:`\\lambda` (0 for ``"none"``); ``grad_norm`` needs :math:`\\lVert g\\rVert`."""
        if self.mode == "none":
            return 0.0
        if self.mode == "grad_norm":
            if grad_norm is None:
                raise ValueError("grad_norm damping needs the gradient norm")
            return max(self.min_value, math.sqrt(self.c * float(grad_norm)))
        if self.mode == "lm":
            return max(self.value, self.min_value)
        return self.value

    def heuristic_shifts(self, trace_a: float, dim_a: int, trace_s: float, dim_s: int) -> tuple[float, float]:
        """Factor dampings :math:`(\\max(\\pi\\sqrt\\lambda, m), \\max(\\sqrt\\lambda/\\pi, m))` of §6.3."""
        mean_a, mean_s = trace_a / dim_a, trace_s / dim_s
        if not (mean_a > 0 and mean_s > 0 and math.isfinite(mean_a) and math.isfinite(mean_s)):
            raise ValueError(
                "heuristic (pi) damping needs factors with positive mean eigenvalue, got tr(A)/dim(A) = "
                f"{mean_a:.3e} and tr(S)/dim(S) = {mean_s:.3e}; use mode 'exact' instead"
            )
        pi = math.sqrt(mean_a / mean_s)
        root = math.sqrt(self.value)
        return max(pi * root, self.min_value), max(root / pi, self.min_value)

    # ---------------------------------------------------------------- LM adaptation
    @staticmethod
    def reduction_ratio(h_old: float, h_new: float, model_change: float) -> float:
        """:math:`\\rho = (h(\\theta+\\delta) - h(\\theta)) / (M(\\delta) - M(0))` (NaN-safe: NaN gives -inf)."""
        rho = (float(h_new) - float(h_old)) / float(model_change) if model_change != 0 else -math.inf
        return rho if math.isfinite(rho) else -math.inf

    def update(self, rho: float) -> float:
        """Apply the LM rule to ``value`` in place and return the new value (mode ``"lm"`` only)."""
        if self.mode != "lm":
            raise ValueError(f"update(rho) adapts 'lm' damping; this damping is {self.mode!r}")
        if rho > self.upper:
            self.value = self.value * self.omega
        elif rho < self.lower:
            self.value = self.value / self.omega
        self.value = max(self.value, self.min_value)
        return self.value

    def with_value(self, value: float) -> Damping:
        return replace(self, value=float(value))


def as_damping(damping: Any) -> Damping:
    """``None`` -> ``Damping("none")``; a number -> Tikhonov with that value; a :class:`Damping` as is;
    a mode name -> that mode with value 0."""
    if damping is None:
        return Damping("none")
    if isinstance(damping, Damping):
        return damping
    if isinstance(damping, str):
        return Damping(damping)
    if isinstance(damping, (int, float)) and not isinstance(damping, bool):
        return Damping("tikhonov", float(damping))
    raise TypeError(f"damping must be None, a number, a mode name or a Damping, got {type(damping).__name__}")
