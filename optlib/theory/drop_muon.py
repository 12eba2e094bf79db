r"""Theorem checks for Drop-Muon (randomized progressive training with LMO steps), spec 20 §5.

Source of the method: Gruntkowska, Maziane, Qu & Richtárik 2025, "Drop-Muon: Update Less, Converge Faster",
arXiv:2510.02239. The paper's theorem constants have not been read (spec 95 §2: "No inequality or constant from
these theorems may be encoded"), so **every bound below is derived here**, from the two assumptions written in
:mod:`optlib.problems.layered` (A1 layer-wise smoothness; A2 layer-wise :math:`(L^0, L^1)`-smoothness, the
assumption of Gluon, Riabinin et al. 2025, arXiv:2505.13416, with the one-block definition of Zhang, He, Sra &
Jadbabaie 2020, arXiv:1905.11881). Each check returns a :class:`~optlib.theory.common.TheoremCheck` whose
``source`` says "derived". Layers are 0-based (the paper's layer :math:`i+1` is our ``i``); a step with cutoff
``s`` updates layers ``i >= s`` and layer ``i`` is updated with probability :math:`q_i = \sum_{s\le i} p_s`.

Derivations (LMO step :math:`\Delta_i = -t_i U_iV_i^\top` for :math:`G_i = U_i\Sigma_iV_i^\top`, so
:math:`\langle G_i, \Delta_i\rangle = -t_i\|G_i\|_*` and :math:`\|\Delta_i\|_{op} = t_i`):

T1 (exact one-step change, :func:`one_step_decrease`).
    On :math:`f = \sum_i \frac{a_i}{2}\|X_i - T_i\|_F^2` with full-rank :math:`G_i`,
    :math:`\|\Delta_i\|_F^2 = r_i t_i^2`,
    so :math:`f_i(X_i + \Delta_i) = f_i(X_i) - t_i\|G_i\|_* + \frac{a_i r_i}{2}t_i^2` exactly.
T2 (optimal radius, :func:`optimal_radius_decrease`).
    Under A1 the model :math:`-t g_i + \frac{L_i}{2}t^2` is minimized by :math:`t_i = g_i/L_i` with value
    :math:`-g_i^2/(2L_i)`: :math:`f(X^+) \le f(X) - \sum_i g_i^2/(2L_i)` (equality in the T1 setting).
T3 (expected descent under sampling, :func:`expected_descent`).
    Apply A1 to the random step (only layers ``>= s`` move) and take the expectation over ``s``:
    :math:`\mathbb E f(X^+) \le f(X) - \sum_i q_i (t_i g_i - \frac{L_i}{2}t_i^2)`, an equality in the T1 setting.
T4 (rate, :func:`descent_rate`).
    With :math:`t_i = g_i/L_i`, T3 gives :math:`\mathbb E f^{k+1} \le \mathbb E f^k - \frac12\mathbb E\sum_i q_i
    g_i^{k\,2}/L_i`; summing over :math:`k < K`:
    :math:`\min_{k<K}\mathbb E\sum_i q_i g_i^{k\,2}/L_i \le 2(f^0 - f^{\inf})/K`. Pathwise, before the
    expectation: :math:`\sum_k\sum_{i\ge s_k} g_i^{k\,2}/L_i \le 2(f^0 - f^K)`, an equality on the layered
    quadratic with its own :math:`L_i = a_i r_i`, which is what is checked (no constant is estimated from the run).
    :func:`deep_linear_rate` (constants estimated along the run) is kept as a diagnostic, not as T4.
T5 (cost model, :func:`cost_tradeoff`).
    A layer-wise Polyak–Łojasiewicz inequality :math:`g_i^2 \ge 2\mu_i f_i` (true for the layered quadratic with
    :math:`\mu_i = a_i`, see :mod:`optlib.problems.layered`) and T2 give, for a separable :math:`f`,
    :math:`\mathbb E f_i^{k+1} \le (1 - q_i\rho_i)\,\mathbb E f_i^k` with :math:`\rho_i = \mu_i/L_i`. So
    :math:`K(p) = \min\{k: \sum_i (1 - q_i\rho_i)^k \Delta_i \le \varepsilon\}` iterations suffice, a step with
    cutoff ``s`` costs :math:`C(s) = c_F + \sum_{j\ge s} c_j` and :math:`\mathbb E C = c_F + \sum_j q_j c_j`;
    total cost :math:`K(p)\,\mathbb E C`. This is our model, not the paper's (which is not known).
T6 (:math:`(L^0, L^1)` radius, :func:`l0l1_decrease`).
    If :math:`\|\nabla^2_{ii} f\| \le L^0_i + L^1_i\|\nabla_i f\|_*` on the segment, then along
    :math:`z(\tau) = X + \tau\Delta` (one block, :math:`\delta = \|\Delta_i\|`),
    :math:`\frac{d}{d\tau}\|\nabla_i f(z)\| \le (L^0_i + L^1_i\|\nabla_i f(z)\|)\delta`, so by Grönwall
    :math:`L^0_i + L^1_i\|\nabla_i f(z(\tau))\| \le (L^0_i + L^1_i g_i)e^{c\tau}` with :math:`c = L^1_i\delta`, and
    :math:`f(X + \Delta) \le f(X) + \langle\nabla_i f, \Delta_i\rangle + (L^0_i + L^1_i g_i)\delta^2\varphi(c)`,
    :math:`\varphi(c) = (e^c - 1 - c)/c^2` (:math:`\varphi(0) = 1/2`). With :math:`t_i = g_i/(L^0_i + L^1_i g_i)`
    (so :math:`c \le 1`) the decrease is at least :math:`\frac{g_i^2}{L^0_i + L^1_i g_i}(1 - \varphi(c_i)) \ge
    (3 - e)\frac{g_i^2}{L^0_i + L^1_i g_i}`. The spec's heuristic :math:`g_i^2/(2(L^0_i + L^1_i g_i))` (the
    :math:`c \to 0` limit) is reported alongside. On :math:`\exp(u^\top x)` the step is :math:`-u/\|u\|^2` and the
    decrease is exactly :math:`(1 - e^{-1})f`.
T1 in the configurations people run (:func:`one_step_decrease` with ``adjust_lr``/``weight_decay``, and
:func:`muon_trajectory`, "T1b"): the first step from an empty buffer orthogonalizes a positive multiple of the
gradient in every momentum form, so T1 extends exactly to Keller's / Moonshot's shape scaling and decoupled weight
decay; over several steps with :math:`\beta < 1` the whole trajectory is recomputed in numpy from the update rules
(gradients known in closed form) and compared with the optimizer's.
Parity (d) (:func:`frozen_layers_untouched`, :func:`progressive_parity`): frozen layers keep weights, momentum and
``p.grad is None``; on a real ``nn.Module`` through ``progressive_forward`` the backward pass's graph and counted
FLOPs stop at the cutoff. :func:`cost_accounting` ties T5 to the production cost accounting.

Numerical settings: float64, ``orthogonalizer="svd"`` (exact polar factor) unless a check says otherwise; T2-T6 use
the paper's momentum form with ``new_weight=1`` (:math:`M = g`, the deterministic setting) and ``adjust_lr="none"``;
T1/T1b/T2 also run with Keller/Moonshot scaling, decoupled weight decay and EMA/sum/Nesterov momentum.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..optim import progressive
from ..optim.drop_muon import DropMuon, layer_param_groups
from ..optim.muon import Muon
from ..optim.progressive import CutoffSampler, inclusion_probabilities
from ..problems.block_networks import BlockNetwork, block_cnn, block_mlp
from ..problems.layered import (
    LayeredProblem,
    concat_blocks,
    deep_linear_network,
    exponential_blocks,
    layered_quadratic,
    log_sum_exp_blocks,
)
from .common import TheoremCheck, le_with_slack

Tensor = torch.Tensor

DERIVED = "derived (spec 20 §5; our algebra in optlib.theory.drop_muon) — the paper's constants are not used"
PAPER = "Gruntkowska, Maziane, Qu & Richtárik 2025, arXiv:2510.02239"

__all__ = [
    "cost_accounting",
    "cost_model_contraction",
    "cost_tradeoff",
    "deep_linear_rate",
    "descent_rate",
    "drop_muon_table",
    "estimate_layer_smoothness",
    "expected_descent",
    "frozen_layers_untouched",
    "l0l1_decrease",
    "muon_trajectory",
    "nuclear_norms",
    "one_step_decrease",
    "optimal_radius_decrease",
    "phi",
    "progressive_parity",
    "reference_direction",
    "reference_lr_scale",
    "reference_newton_schulz",
    "reference_polar",
]

EXACT = dict(orthogonalizer="svd", ns_dtype=None, new_weight=1.0, adjust_lr="none")


# =============================================================================================
# Helpers
# =============================================================================================
def nuclear_norms(Gs: Sequence[Tensor]) -> list[float]:
    return [float(torch.linalg.matrix_norm(G, ord="nuc")) for G in Gs]


def phi(c: float) -> float:
    """:math:`(e^c - 1 - c)/c^2`, with its limit 1/2 at 0 (series below 1e-4)."""
    if abs(c) < 1e-4:
        return 0.5 + c / 6.0 + c * c / 24.0
    return (math.expm1(c) - c) / (c * c)


# Independent references (plain numpy, float64): nothing below calls the code under test.
#: Keller Jordan's quintic Newton–Schulz coefficients, copied from the blog / KellerJordan/Muon ``muon.py``.
REFERENCE_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def reference_lr_scale(m: int, n: int, rule: str) -> float:
    """Shape scaling of an ``m x n`` matrix: Keller ``sqrt(max(1, m/n))`` (KellerJordan/Muon, torch "original"),
    Moonshot ``0.2 sqrt(max(m, n))`` (Liu et al. 2025, arXiv:2502.16982, torch "match_rms_adamw"), ``"none"`` 1."""
    if rule == "keller":
        return math.sqrt(max(1.0, m / n))
    if rule == "moonshot":
        return 0.2 * math.sqrt(max(m, n))
    if rule == "none":
        return 1.0
    raise ValueError(f"unknown shape scaling {rule!r}")


def reference_polar(G: np.ndarray) -> np.ndarray:
    """``U V^T`` of a full-rank ``G = U S V^T`` by numpy's SVD."""
    U, _, Vt = np.linalg.svd(G, full_matrices=False)
    return U @ Vt


def reference_newton_schulz(G: np.ndarray, steps: int = 5, coefficients=REFERENCE_NS_COEFFICIENTS,
                            eps: float = 1e-7) -> np.ndarray:
    """Keller Jordan's iteration as written in his reference: ``X = G/(||G||_F + eps)`` (on the short side),
    then ``A = X X^T``, ``X = a X + (b A + c A^2) X``, ``steps`` times."""
    a, b, c = coefficients
    X = G.T if G.shape[0] > G.shape[1] else G
    X = X / (np.linalg.norm(X) + eps)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if G.shape[0] > G.shape[1] else X


def reference_direction(g: np.ndarray, buf: np.ndarray, *, momentum: float, nesterov: bool, style: str,
                        new_weight: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""``(new buffer, direction)`` of one step, from the update rules of the references (written out here).

    ``new_weight=beta'`` (Drop-Muon paper): :math:`M \leftarrow (1-\beta')M + \beta' g`, :math:`D = M`.
    ``style="ema"`` (KellerJordan/Muon; ``torch.optim.Muon``'s code, ``buf.lerp_(grad, 1 - momentum)`` and
    ``grad.lerp_(buf, momentum)``): :math:`M \leftarrow \beta M + (1-\beta) g`, Nesterov
    :math:`D = (1-\beta) g + \beta M`, else :math:`D = M`. ``style="sum"`` (``torch.optim.Muon`` docs):
    :math:`B \leftarrow \beta B + g`, Nesterov :math:`D = g + \beta B`, else :math:`D = B`.
    """
    if new_weight is not None:
        M = (1.0 - new_weight) * buf + new_weight * g
        return M, M
    beta = momentum
    if style == "ema":
        M = beta * buf + (1.0 - beta) * g
        return M, ((1.0 - beta) * g + beta * M) if nesterov else M
    if style == "sum":
        B = beta * buf + g
        return B, (g + beta * B) if nesterov else B
    raise ValueError(f"unknown momentum style {style!r}")


def _optimizer(optimizer_cls, groups, **opts):
    """``optimizer_cls(groups, **opts)``; options only DropMuon knows are dropped for plain Muon."""
    if not issubclass(optimizer_cls, DropMuon):
        for key in ("new_weight", "radius", "L", "L0", "L1", "sampler", "seed", "costs"):
            opts.pop(key, None)
    return optimizer_cls(groups, **opts)


def _step(opt, cutoff: int = 0) -> None:
    if isinstance(opt, DropMuon):
        opt.step(cutoff=cutoff)
    else:
        opt.step()


def _groups(problem: LayeredProblem, params, radius: str) -> list[dict]:
    groups = []
    for i, p in enumerate(params):
        g = {"params": [p], "layer": i, "radius": radius}
        if radius == "smooth":
            g["L"] = float(problem.L[i]) if problem.L is not None else 1.0  # overridden by the caller
        if radius == "l0l1":
            g["L0"], g["L1"] = float(problem.L0[i]), float(problem.L1[i])
        groups.append(g)
    return groups


def _one_step(problem, Xs, cutoff, optimizer_cls, radius, lr=1.0, L=None, **opts):
    """One step of ``optimizer_cls`` from ``Xs`` with cutoff ``cutoff``; returns the new matrices."""
    params = problem.parameters(Xs)
    groups = _groups(problem, params, radius)
    if L is not None:
        for g, Li in zip(groups, L):
            g["L"] = float(Li)
    settings = {**EXACT, **opts}
    opt = _optimizer(optimizer_cls, groups, lr=lr, **settings)
    opt.zero_grad(set_to_none=True)
    problem.backward(params, cutoff)
    _step(opt, cutoff)
    return [p.detach().clone() for p in params]


# =============================================================================================
# T1, T2
# =============================================================================================
def one_step_decrease(
    problem: LayeredProblem | None = None,
    t: float = 0.1,
    *,
    orthogonalizer: str = "svd",
    ns_steps: int = 5,
    tol: float | None = None,
    optimizer_cls=DropMuon,
    adjust_lr: str = "none",
    weight_decay: float = 0.0,
    momentum: float = 0.95,
    nesterov: bool = False,
    momentum_style: str = "ema",
    new_weight: float | None = 1.0,
) -> TheoremCheck:
    r"""T1: one step of learning rate ``t`` on a layered quadratic changes each layer exactly as derived.

    The step from ``x0`` (empty momentum) is :math:`X^+ = (1 - t\lambda)X - t\,s(m, n)\,\mathrm{orth}(D)` with the
    shape scaling ``s`` of ``adjust_lr`` (:func:`reference_lr_scale`) and decoupled weight decay :math:`\lambda`.
    On the first step every momentum form makes :math:`D` a positive multiple of :math:`G` (EMA
    :math:`(1-\beta)G`, its Nesterov :math:`(1-\beta^2)G`, sum :math:`G` or :math:`(1+\beta)G`, paper
    :math:`\beta' G`), so :math:`\mathrm{orth}(D) = O = UV^\top` of :math:`G`, and with
    :math:`\Delta = -t\lambda X - \tau O`, :math:`\tau = t\,s`, the quadratic's exact expansion gives the decrease

    .. math:: f_i(X) - f_i(X^+) = t\lambda\langle G, X\rangle + \tau\|G\|_*
              - \tfrac{a_i}{2}\big(t^2\lambda^2\|X\|_F^2 + 2t\lambda\tau\langle X, O\rangle + \tau^2 r_i\big)

    (:math:`\langle G, O\rangle = \|G\|_*`, :math:`\|O\|_F^2 = r_i`; with :math:`\lambda = 0`, ``s = 1`` it is the
    module docstring's T1). Everything on the right is computed in numpy from ``x0``, the targets and ``a_i``.
    Coupled weight decay (:math:`\lambda X` added to the gradient) orthogonalizes :math:`G + \lambda X` instead and
    breaks the identity; so does a wrong shape scaling on a non-square layer.

    measured = max over layers of ``|actual decrease - predicted| / |predicted|``; bound = ``tol`` (default
    1e-10 with SVD in float64; 0.10 with Newton–Schulz, the 5-10% of spec 20 §5 T1: the NS step's singular values
    are only near 1 — pitfall P4). ``optimizer_cls`` may be :class:`~optlib.optim.Muon` or
    :class:`~optlib.optim.DropMuon` (radius ``"constant"``, whose radius is ``lr * s``).
    """
    problem = problem or layered_quadratic(seed=0)
    if tol is None:
        tol = 1e-10 if orthogonalizer == "svd" else 0.10
    before = problem.layer_values(problem.x0)
    a, r, targets = problem.data["a"], problem.data["ranks"], problem.data["targets"]
    mom = dict(momentum=momentum, nesterov=nesterov, momentum_style=momentum_style, new_weight=new_weight)
    if new_weight is not None:
        mom["nesterov"] = False
    Xn = _one_step(problem, problem.x0, 0, optimizer_cls, "constant", lr=t, orthogonalizer=orthogonalizer,
                   ns_steps=ns_steps, adjust_lr=adjust_lr, weight_decay=weight_decay, **mom)
    after = problem.layer_values(Xn)
    errs, rows = [], []
    for i in range(problem.num_layers):
        X = problem.x0[i].numpy()
        G = a[i] * (X - targets[i].numpy())
        UV = reference_polar(G)
        tau = t * reference_lr_scale(*X.shape, adjust_lr)
        wd = t * weight_decay
        nuc = float(np.linalg.svd(G, compute_uv=False).sum())
        predicted = (wd * float(np.sum(G * X)) + tau * nuc
                     - 0.5 * a[i] * (wd * wd * float(np.sum(X * X)) + 2 * wd * tau * float(np.sum(X * UV))
                                     + tau * tau * r[i]))
        actual = before[i] - after[i]
        errs.append(abs(actual - predicted) / abs(predicted))
        rows.append(dict(layer=i, shape=tuple(X.shape), actual=actual, predicted=predicted, radius=tau))
    measured = max(errs)
    config = dict(adjust_lr=adjust_lr, weight_decay=weight_decay, **mom, optimizer=optimizer_cls.__name__)
    return TheoremCheck(
        name="T1 exact one-step decrease" + ("" if adjust_lr == "none" and weight_decay == 0 else
                                              f" ({adjust_lr} lr, wd {weight_decay:g})"),
        statement="f_i((1-t wd) X_i - t s(m,n) U V^T) = f_i(X_i) - [t wd <G,X> + tau ||G_i||_* - (a_i/2)(t^2 wd^2 "
                  "||X||^2 + 2 t wd tau <X,UV^T> + tau^2 r_i)], tau = t s(m,n), on a layered quadratic",
        source=DERIVED + "; shape scalings: KellerJordan/Muon, arXiv:2502.16982",
        measured=measured,
        bound=tol,
        holds=measured <= tol,
        details=dict(comparison="measured <= bound", problem=problem.name, method=orthogonalizer, t=t, layers=rows,
                     config=config, metric="max_i |actual - predicted| / |predicted| (decrease of layer i)"),
    )


def muon_trajectory(
    problem: LayeredProblem | None = None,
    *,
    steps: int = 5,
    lr: float = 0.05,
    momentum: float = 0.9,
    nesterov: bool = True,
    momentum_style: str = "ema",
    new_weight: float | None = None,
    weight_decay: float = 0.1,
    adjust_lr: str = "keller",
    radius: str = "constant",
    orthogonalizer: str = "svd",
    ns_steps: int = 5,
    tol: float = 1e-9,
    optimizer_cls=Muon,
) -> TheoremCheck:
    r"""T1b: ``steps`` real optimizer steps equal the closed-form recursion, step by step, momentum included.

    On a layered quadratic the gradient at every iterate is known in closed form, :math:`g = a_i(X - T_i)`, so the
    whole trajectory can be recomputed in numpy without the code under test:
    :math:`(M_k, D_k)` = :func:`reference_direction` (EMA, EMA-Nesterov :math:`(1-\beta)g + \beta M`, sum, sum-Nesterov
    :math:`g + \beta B`, or the paper's :math:`(1-\beta')M + \beta' g`), then
    :math:`X_{k+1} = (1 - \gamma\lambda)X_k - t_k\,\mathrm{orth}(D_k)` with :math:`t_k = \gamma s(m, n)`
    (``radius="constant"``; Keller or Moonshot :math:`s`, :func:`reference_lr_scale`) or
    :math:`t_k = \|D_k\|_*/L_i` (``"smooth"``, :math:`L_i = a_i r_i` of the problem), and ``orth`` the exact polar
    factor by numpy's SVD (``orthogonalizer="svd"``) or Keller's Newton–Schulz written out in numpy
    (:func:`reference_newton_schulz`, float64 iteration). Weight decay is decoupled and uses the unscaled
    :math:`\gamma` (KellerJordan/Muon; ``torch.optim.Muon``).

    With :math:`\beta < 1` and a gradient that changes along the run, the momentum's form decides the direction from
    step 2 on (the two EMA-Nesterov readings :math:`(1-\beta)g + \beta M` and :math:`g + \beta M` are not parallel).
    measured = :math:`\max_{k,i}\|X^{\text{opt}}_{k,i} - X^{\text{ref}}_{k,i}\|_F / \|X^{\text{ref}}_{k,i} -
    X^{\text{ref}}_{k-1,i}\|_F` (error relative to the step's size); bound ``tol`` = 1e-9 (float64: the two SVDs
    and orders of summation differ by a few ulps of the entries, about 1e-13 relative here).
    """
    problem = problem or layered_quadratic(((6, 3), (3, 7), (5, 5)), seed=13)
    a, targets, L = problem.data["a"], problem.data["targets"], problem.L
    params = problem.parameters()
    groups = [{"params": [p], "layer": i, "radius": radius, "L": float(L[i])} for i, p in enumerate(params)]
    if new_weight is not None:
        nesterov = False
    opt = _optimizer(optimizer_cls, groups, lr=lr, momentum=momentum, nesterov=nesterov,
                     momentum_style=momentum_style, new_weight=new_weight, weight_decay=weight_decay,
                     adjust_lr=adjust_lr, orthogonalizer=orthogonalizer, ns_steps=ns_steps, ns_dtype=None)
    Xs = [X.numpy().copy() for X in problem.x0]
    bufs = [np.zeros_like(X) for X in Xs]
    worst, per_step = 0.0, []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        problem.backward(params, 0)
        _step(opt, 0)
        errs = []
        for i, X in enumerate(Xs):
            g = a[i] * (X - targets[i].numpy())
            bufs[i], D = reference_direction(g, bufs[i], momentum=momentum, nesterov=nesterov,
                                             style=momentum_style, new_weight=new_weight)
            UV = reference_polar(D) if orthogonalizer == "svd" else reference_newton_schulz(D, ns_steps)
            if radius == "constant":
                t = lr * reference_lr_scale(*X.shape, adjust_lr)
            elif radius == "smooth":
                t = float(np.linalg.svd(D, compute_uv=False).sum()) / L[i]
            else:
                raise ValueError(f"muon_trajectory supports radius 'constant' and 'smooth', got {radius!r}")
            Xn = (1.0 - lr * weight_decay) * X - t * UV
            step_size = float(np.linalg.norm(Xn - X))
            errs.append(float(np.linalg.norm(params[i].detach().numpy() - Xn)) / step_size)
            Xs[i] = Xn
        per_step.append(max(errs))
        worst = max(worst, max(errs))
    form = ("paper" if new_weight is not None else momentum_style) + ("-nesterov" if nesterov else "")
    config = dict(momentum=momentum, nesterov=nesterov, momentum_style=momentum_style, new_weight=new_weight,
                  weight_decay=weight_decay, adjust_lr=adjust_lr, radius=radius, lr=lr,
                  optimizer=optimizer_cls.__name__)
    return TheoremCheck(
        name=f"T1b closed-form trajectory ({optimizer_cls.__name__}, {form}, {adjust_lr}, wd {weight_decay:g}, "
             f"{radius} radius, {orthogonalizer})",
        statement="X_{k+1} = (1 - lr wd) X_k - t_k orth(D_k), D_k from the stated momentum recursion on the "
                  "known gradients a_i (X_k - T_i), t_k = lr s(m,n) or ||D_k||_*/L_i",
        source="update rules of KellerJordan/Muon, torch.optim.Muon, arXiv:2502.16982 and arXiv:2510.02239; "
               "closed form ours",
        measured=worst,
        bound=tol,
        holds=worst <= tol,
        details=dict(comparison="measured <= bound", problem=problem.name, method=orthogonalizer, steps=steps,
                     per_step=per_step, config=config,
                     metric="max_{k,i} ||X_opt - X_ref||_F / ||X_ref step||_F"),
    )


def optimal_radius_decrease(
    problem: LayeredProblem | None = None, *, slack: float = 1e-10, optimizer_cls=DropMuon,
    adjust_lr: str | None = None,
) -> TheoremCheck:
    """T2: with ``t_i = ||G_i||_*/L_i``, ``f(X+) <= f(X) - sum_i ||G_i||_*^2 / (2 L_i)`` (equality here).

    ``adjust_lr=None``: the ``"smooth"`` radius rule of DropMuon. ``adjust_lr="keller"`` or ``"moonshot"``: the
    radius people run, ``lr_i * s(m_i, n_i)`` (:class:`~optlib.optim.Muon`, or DropMuon's ``"constant"`` rule), with
    the per-layer learning rate ``lr_i = ||G_i||_* / (L_i s(m_i, n_i))`` set by this check from
    :func:`reference_lr_scale`: a wrong shape scaling in the optimizer moves the radius off the optimum and the
    (tight) bound fails on the non-square layers of the default problem.
    """
    problem = problem or layered_quadratic(seed=1)
    f0 = problem.value(problem.x0)
    g = nuclear_norms(problem.grads(problem.x0))
    predicted = f0 - sum(gi * gi / (2.0 * Li) for gi, Li in zip(g, problem.L))
    if adjust_lr is None:
        f1 = problem.value(_one_step(problem, problem.x0, 0, optimizer_cls, "smooth"))
    else:
        params = problem.parameters()
        groups = [{"params": [p], "layer": i, "radius": "constant",
                   "lr": gi / (Li * reference_lr_scale(*p.shape, adjust_lr))}
                  for i, (p, gi, Li) in enumerate(zip(params, g, problem.L))]
        opt = _optimizer(optimizer_cls, groups, lr=1.0, **{**EXACT, "adjust_lr": adjust_lr})
        problem.backward(params, 0)
        _step(opt, 0)
        f1 = problem.value(params)
    return TheoremCheck(
        name="T2 optimal radius" + ("" if adjust_lr is None else f" ({adjust_lr} lr scaling)"),
        statement="t_i = ||G_i||_*/L_i gives f(X+) <= f(X) - sum_i ||G_i||_*^2/(2 L_i)",
        source=DERIVED,
        measured=f1,
        bound=predicted,
        holds=le_with_slack(f1, predicted, slack),
        slack=slack,
        details=dict(problem=problem.name, f0=f0, equality_gap=abs(f1 - predicted) / f0, L=problem.L,
                     adjust_lr=adjust_lr, optimizer=optimizer_cls.__name__),
    )


# =============================================================================================
# T3 expected descent
# =============================================================================================
def expected_descent(
    problem: LayeredProblem | None = None,
    p: Sequence[float] | str = (0.5, 0.3, 0.2),
    *,
    n_draws: int = 10_000,
    seed: int = 0,
    q: Sequence[float] | None = None,
    n_se: float = 4.0,
    optimizer_cls=DropMuon,
) -> TheoremCheck:
    """T3: ``E f(X+) = f(X) - sum_i q_i (t_i g_i - L_i t_i^2/2)`` by Monte Carlo over ``n_draws`` cutoffs.

    The cutoffs are drawn by :class:`~optlib.optim.progressive.CutoffSampler`; the outcome of each cutoff is one
    real optimizer step from ``x0`` (radius rule ``"smooth"``). ``q`` overrides the inclusion probabilities used
    in the prediction (for the "would catch" twin). measured = ``|mean - predicted| / standard error``;
    bound = ``n_se``.
    """
    problem = problem or layered_quadratic(seed=2)
    b = problem.num_layers
    sampler = CutoffSampler(b, p, seed=seed)
    pvec = sampler.probabilities()
    qvec = inclusion_probabilities(pvec) if q is None else np.asarray(q, dtype=float)
    f0 = problem.value(problem.x0)
    g = nuclear_norms(problem.grads(problem.x0))
    t = [gi / Li for gi, Li in zip(g, problem.L)]
    predicted = f0 - sum(qi * (ti * gi - 0.5 * Li * ti * ti) for qi, ti, gi, Li in zip(qvec, t, g, problem.L))
    outcome = np.array([problem.value(_one_step(problem, problem.x0, s, optimizer_cls, "smooth")) for s in range(b)])
    draws = sampler.sample_many(n_draws)
    values = outcome[draws]
    mean = float(values.mean())
    se = float(values.std(ddof=1) / math.sqrt(n_draws))
    measured = abs(mean - predicted) / se if se > 0 else (0.0 if mean == predicted else math.inf)
    return TheoremCheck(
        name="T3 expected RPT descent",
        statement="E f(X+) <= f(X) - sum_i q_i (t_i g_i - L_i t_i^2 / 2), q_i = sum_{s<=i} p_s (equality here)",
        source=DERIVED,
        measured=measured,
        bound=n_se,
        holds=measured <= n_se,
        details=dict(comparison="|MC mean - predicted| / SE <= bound", problem=problem.name, p=pvec.tolist(),
                     q=list(map(float, qvec)), mc_mean=mean, predicted=predicted, standard_error=se,
                     n_draws=n_draws, frequencies=(np.bincount(draws, minlength=b) / n_draws).tolist()),
    )


# =============================================================================================
# T4 rate on the deep linear network
# =============================================================================================
def estimate_layer_smoothness(
    problem: LayeredProblem, Xs: Sequence[Tensor], steps: Sequence[Tensor | None]
) -> list[float]:
    """``max`` over layers moved of ``||grad_i f(X + Delta_i) - grad_i f(X)||_* / ||Delta_i||_op`` (one block moved).

    ``steps[i]`` is the move of layer ``i`` (``None`` or zero: not moved, ratio 0). This is the layer-wise
    gradient-Lipschitz ratio of Gluon's estimation procedure, taken one block at a time.
    """
    G = problem.grads(Xs)
    out = []
    for i, D in enumerate(steps):
        if D is None:
            out.append(0.0)
            continue
        dn = float(torch.linalg.matrix_norm(D, ord=2))
        if dn == 0.0:
            out.append(0.0)
            continue
        Ys = list(Xs)
        Ys[i] = Xs[i] + D
        Gi = problem.grads(Ys)[i]
        out.append(float(torch.linalg.matrix_norm(Gi - G[i], ord="nuc")) / dn)
    return out


def _rate_run(problem, L, K, p, seed, optimizer_cls, radius_factor):
    """K steps with t_i = radius_factor * g_i / L_i.

    Returns (f^0..f^K, nuclear gradient norms per step, sup ratios or None if diverged, q, cutoffs).
    """
    params = problem.parameters()
    groups = _groups(problem, params, "smooth")
    for g, Li in zip(groups, L):
        g["L"] = float(Li) / radius_factor
    opt = optimizer_cls(groups, lr=1.0, sampler=p, seed=seed, **EXACT)
    q = opt.inclusion_probabilities()
    fs, gs, sup, cut = [], [], [0.0] * problem.num_layers, []
    for _ in range(K):
        Xs = [x.detach().clone() for x in params]
        f, G = problem.value_and_grads(Xs)
        fs.append(f)
        gs.append(nuclear_norms(G))
        s = opt.sample_cutoff()
        cut.append(s)
        opt.zero_grad(set_to_none=True)
        problem.backward(params, s)
        opt.step()
        if not (all(bool(torch.isfinite(x).all()) for x in params) and math.isfinite(problem.value(params))):
            return fs, gs, None, q, cut  # diverged: the L_i used were too small
        moves = [params[i].detach() - Xs[i] if i >= s else None for i in range(problem.num_layers)]
        ratios = estimate_layer_smoothness(problem, Xs, moves)
        sup = [max(a, b) for a, b in zip(sup, ratios)]
    fs.append(problem.value(params))
    return fs, gs, sup, q, cut


def descent_rate(
    problem: LayeredProblem | None = None,
    seeds: Sequence[int] = tuple(range(4)),
    *,
    K: int = 15,
    p: Sequence[float] | str = "uniform",
    tol: float = 1e-9,
    optimizer_cls=DropMuon,
) -> TheoremCheck:
    r"""T4: the telescoped rate with the problem's own constants, pathwise and in expectation.

    On a layered quadratic :math:`L_i = a_i r_i` is a global constant of the problem (A1, tight for full-rank LMO
    steps; :mod:`optlib.problems.layered`), so nothing is estimated from the run. With
    :math:`t_i = \|\nabla_i f\|_*/L_i` each updated layer decreases by exactly :math:`g_i^2/(2L_i)` (T1 with
    :math:`t = g/L`), so along every run with cutoffs :math:`s_k`

    .. math:: R := \sum_{k<K}\sum_{i\ge s_k} g_i^{k\,2}/L_i = 2\,(f^0 - f^K) \le 2\,(f^0 - f^{\inf}),

    the pathwise form of T4, an equality here; taking expectations gives the stated rate
    :math:`\frac1K\sum_{k<K}\mathbb E\sum_i q_i g_i^{k\,2}/L_i \le 2(f^0 - f^{\inf})/K` (and so its min form).
    Any other radius rule :math:`t` decreases the layer by :math:`tg - Lt^2/2 < g^2/(2L)` (strictly, unless
    :math:`t = g/L`); the Frobenius radius :math:`\|D\|_F/L` falls short by :math:`(g - \|D\|_F)^2/(2L)`, which
    is a fixed fraction of the decrease on a layer with spread singular values.

    The run: DropMuon with ``radius="smooth"``, ``L`` from the problem, the cutoff drawn by
    :meth:`~optlib.optim.DropMuon.sample_cutoff` before a truncated backward (``problem.backward(params, s)``),
    ``new_weight=1`` (deterministic setting). :math:`g_i^k` are nuclear norms of the problem's gradients by numpy's
    SVD. measured = :math:`\max_{\text{seeds}} R / (2(f^0 - f^K))` (``inf`` if the run did not decrease
    :math:`f`); bound 1 with relative tolerance ``tol`` (rounding). The expected form follows from the pathwise
    one by taking expectations; ``details["expected_form"]`` reports its seed-average estimate (a Monte Carlo
    estimate, close to tight once :math:`f^K \approx 0`, so it is reported, not asserted).
    """
    problem = problem or layered_quadratic(((6, 4), (5, 5), (3, 7)), seed=21)
    L = problem.L
    ratios, lhs, mins, finals = [], [], [], []
    f0 = problem.value(problem.x0)
    for seed in seeds:
        params = problem.parameters()
        groups = [{"params": [x], "layer": i, "radius": "smooth", "L": float(L[i])} for i, x in enumerate(params)]
        opt = optimizer_cls(groups, lr=1.0, sampler=p, seed=seed, **EXACT)
        q = opt.inclusion_probabilities()
        realized, vals = 0.0, []
        for _ in range(K):
            g = [float(np.linalg.svd(G.numpy(), compute_uv=False).sum())
                 for G in problem.grads([x.detach() for x in params])]
            vals.append(sum(qi * gi * gi / Li for qi, gi, Li in zip(q, g, L)))
            s = opt.sample_cutoff()
            realized += sum(gi * gi / Li for gi, Li in zip(g[s:], L[s:]))
            opt.zero_grad(set_to_none=True)
            problem.backward(params, s)
            opt.step()
        fK = problem.value(params)
        finals.append(fK)
        ratios.append(realized / (2.0 * (f0 - fK)) if f0 - fK > 0 and math.isfinite(fK) else math.inf)
        lhs.append(float(np.mean(vals)))
        mins.append(min(vals))
    measured = max(ratios)
    expected_lhs, expected_rhs = float(np.mean(lhs)), 2.0 * (f0 - problem.f_inf) / K
    return TheoremCheck(
        name="T4 rate with the problem's L_i",
        statement="sum_k sum_{i>=s_k} ||grad_i f(X^k)||_*^2/L_i = 2 (f^0 - f^K) <= 2 (f^0 - f_inf) per run, hence "
                  "(1/K) sum_k E sum_i q_i ||grad_i f(X^k)||_*^2/L_i <= 2 (f^0 - f_inf)/K; L_i = a_i r_i",
        source=DERIVED + "; L_i of the layered quadratic (optlib.problems.layered), not estimated",
        measured=measured,
        bound=1.0,
        holds=bool(measured <= 1.0 + tol),
        slack=tol,
        details=dict(comparison="max_seeds R/(2(f0-fK)) <= 1 + slack",
                     problem=problem.name, K=K, seeds=len(seeds), L=L, per_seed_ratio=ratios,
                     expected_form=(expected_lhs, expected_rhs),
                     min_form=float(np.mean(mins)), final_over_initial=float(np.mean(finals)) / f0),
    )


def deep_linear_rate(
    seeds: Sequence[int] = tuple(range(20)),
    *,
    K: int = 30,
    p: Sequence[float] | str = "uniform",
    dims: Sequence[int] = (4, 6, 6, 3),
    rounds: int = 8,
    radius_factor: float = 1.0,
    L_fixed: Sequence[Sequence[float]] | None = None,
    optimizer_cls=DropMuon,
) -> TheoremCheck:
    """T4 diagnostic on the deep linear network (not in the table; :func:`descent_rate` is T4).

    ``(1/K) sum_{k<K} sum_i q_i ||grad_i f(X^k)||_*^2 / L_i <= 2 (f(X^0) - f_inf) / K`` (seed average). The
    constants are estimated from the run itself, so this check cannot tell a wrong radius norm from a right one
    (a Frobenius radius passes it); it is kept as a diagnostic of the estimation procedure only.

    The average form is what the telescoped T3 bound gives; it implies the min form of spec 20 (reported in
    ``details["min_form"]``), which is vacuous at small ``K`` (the ``k = 0`` term alone can meet it).
    ``details["telescoped_holds"]``: per run, ``sum_k sum_{i >= s_k} g_i^2/L_i <= 2 (f^0 - f^K)`` (the realized,
    sharper form).

    Per seed, ``L_i`` is estimated along the run's own trajectory (:func:`estimate_layer_smoothness`, the sup
    over the steps): start from a probe at ``x0``, run with ``t_i = g_i / L_i``, raise ``L_i`` to the sup seen,
    rerun, until no ratio exceeds the ``L_i`` used (at most ``rounds`` times; a diverging run multiplies every
    ``L_i`` by 10). ``radius_factor`` scales the radii
    of the run (not the bound), for the "would catch" twin. ``L_fixed[j]`` (one list per seed) skips the
    estimation and uses those constants (a wrong method must be judged with the correct method's constants:
    re-estimating along its own trajectory would adapt the constants to the error). measured and bound are
    averages over seeds; ``details["per_seed"]`` holds each seed's ``L``.
    """
    lhs, rhs, mins, info = [], [], [], []
    for j, seed in enumerate(seeds):
        problem = deep_linear_network(dims, seed=seed)
        if L_fixed is not None:
            L = [float(v) for v in L_fixed[j]]
            fs, gs, sup, q, cut = _rate_run(problem, L, K, p, seed, optimizer_cls, radius_factor)
            r = -1
        else:
            G0 = problem.grads(problem.x0)
            probe = []
            for X, G in zip(problem.x0, G0):
                U, _, Vh = torch.linalg.svd(G, full_matrices=False)
                probe.append(-0.1 * torch.linalg.matrix_norm(X, ord=2) * (U @ Vh))
            L = [max(v, 1e-12) for v in estimate_layer_smoothness(problem, problem.x0, probe)]
            for r in range(rounds):
                fs, gs, sup, q, cut = _rate_run(problem, L, K, p, seed, optimizer_cls, radius_factor)
                if sup is None:
                    L = [10.0 * Li for Li in L]
                    continue
                if all(s <= Li * (1 + 1e-12) for s, Li in zip(sup, L)):
                    break
                L = [max(Li, s) for Li, s in zip(L, sup)]
        with np.errstate(over="ignore"):
            vals = [sum(qi * gi * gi / Li for qi, gi, Li in zip(q, gk, L)) for gk in gs]
            realized = sum(sum(gi * gi / Li for gi, Li in zip(gk[s:], L[s:])) for gk, s in zip(gs, cut))
        diverged = sup is None
        vals += [math.inf] * (K - len(vals))  # a diverged run counts as making no progress
        lhs.append(float(np.mean(vals)))
        mins.append(min(vals))
        rhs.append(2.0 * (fs[0] - problem.f_inf) / K)
        covered = (not diverged) and all(sv <= Li * (1 + 1e-12) for sv, Li in zip(sup, L))
        info.append(dict(seed=seed, L=L, rounds=r + 1, f0=fs[0], f_last=fs[-1], diverged=diverged,
                         L_covers_trajectory=covered,
                         telescoped_realized=(realized, 2.0 * (fs[0] - fs[-1])) if not diverged else None))
    measured, bound = float(np.mean(lhs)), float(np.mean(rhs))
    return TheoremCheck(
        name="T4 rate, deep linear network",
        statement="E (1/K) sum_{k<K} sum_i q_i ||grad_i f(X^k)||_*^2 / L_i <= 2 (f(X^0) - f_inf) / K "
                  "(so also the min over k), L_i estimated along the run",
        source=DERIVED + "; L_i estimated along the trajectory (Gluon-style, arXiv:2505.13416)",
        measured=measured,
        bound=bound,
        holds=le_with_slack(measured, bound, 0.0),
        details=dict(problem=f"deep-linear {tuple(dims)}", K=K, seeds=len(seeds), per_seed=info,
                     min_form=float(np.mean(mins)),
                     telescoped_holds=all(d["telescoped_realized"] is not None
                                          and d["telescoped_realized"][0] <= d["telescoped_realized"][1] * (1 + 1e-9)
                                          for d in info),
                     final_over_initial=float(np.mean([d["f_last"] / d["f0"] for d in info]))),
    )


# =============================================================================================
# T5 cost model
# =============================================================================================
def _simplex_grid(b: int, h: float) -> list[np.ndarray]:
    n = round(1.0 / h)
    pts = []
    for c in itertools.product(range(n + 1), repeat=b - 1):
        if sum(c) <= n:
            pts.append(np.array([*c, n - sum(c)], dtype=float) / n)
    return pts


def iterations_to_eps(q: np.ndarray, rho: np.ndarray, delta0: np.ndarray, eps: float) -> float:
    """``min{k : sum_i (1 - q_i rho_i)^k delta0_i <= eps}`` (``inf`` when some layer with gap > eps never moves)."""
    if float(delta0.sum()) <= eps:
        return 0.0
    rate = 1.0 - q * rho
    if np.any((rate >= 1.0) & (delta0 > 0)):
        return math.inf

    def gap(k: float) -> float:
        return float(np.sum(rate**k * delta0))

    hi = 1.0
    while gap(hi) > eps:
        hi *= 2.0
    lo = hi / 2.0 if hi > 1 else 0.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if gap(mid) > eps else (lo, mid)
    return float(math.ceil(hi - 1e-9))


def cost_tradeoff(
    rho: Sequence[float] | None = None,
    delta0: Sequence[float] | None = None,
    costs: Sequence[float] = (4.0, 2.0, 1.0),
    forward_cost: float = 3.5,
    *,
    eps: float = 1e-6,
    grid_step: float = 0.05,
    problem: LayeredProblem | None = None,
    step_cost=None,
) -> TheoremCheck:
    """T5: grid-search ``p`` on the simplex for the cost model of the module docstring.

    ``rho``/``delta0`` default to those of ``problem`` (a layered quadratic with ``mu_i = a_i``,
    ``rho_i = mu_i/L_i = 1/r_i``, ``delta0_i = f_i(x0)``); the default problem has shapes
    ``(16, 2), (8, 8), (4, 6)``: the input layer is cheap to converge (``r = 2``) but the most expensive
    to backpropagate. ``step_cost(s)`` overrides ``C(s) = forward_cost + sum_{j>=s} costs[j]`` (for the
    "would catch" twin). measured = ``cost(p*) / cost(e_1)``; holds when it is < 1 and ``p* != e_1``.
    """
    if rho is None or delta0 is None:
        problem = problem or layered_quadratic(((16, 2), (8, 8), (4, 6)), a=(1.0, 1.0, 1.0), seed=5)
        rho = [m / L for m, L in zip(problem.mu, problem.L)]
        delta0 = problem.layer_values(problem.x0)
    rho_a, d_a = np.asarray(rho, float), np.asarray(delta0, float)
    b = rho_a.size
    c = np.asarray(costs, float)
    if c.size != b:
        raise ValueError(f"costs needs {b} entries, got {c.size}")
    if step_cost is None:
        def step_cost(s: int) -> float:
            return forward_cost + float(c[s:].sum())

    def total(p: np.ndarray) -> float:
        q = inclusion_probabilities(p)
        K = iterations_to_eps(q, rho_a, d_a, eps)
        per = sum(ps * step_cost(s) for s, ps in enumerate(p))
        return K * per

    grid = _simplex_grid(b, grid_step)
    totals = [total(p) for p in grid]
    best = int(np.argmin(totals))
    full = np.zeros(b)
    full[0] = 1.0
    c_full = total(full)
    p_star = grid[best]
    measured = totals[best] / c_full
    not_full = not np.allclose(p_star, full)
    return TheoremCheck(
        name="T5 cost model: full updates not optimal",
        statement="argmin_p K(p) * E[C(s)] over the simplex is not e_1 for generic (rho_i, c_i)",
        source=DERIVED + "; cost model ours (the paper's is not known)",
        measured=measured,
        bound=1.0,
        holds=bool(measured < 1.0 - 1e-9 and not_full),
        details=dict(comparison="cost(p*)/cost(e_1) < 1 - 1e-9 and p* != e_1", p_star=p_star.tolist(),
                     q_star=inclusion_probabilities(p_star).tolist(), cost_full=c_full, cost_best=totals[best],
                     rho=rho_a.tolist(), delta0=d_a.tolist(), costs=c.tolist(), forward_cost=forward_cost,
                     grid_points=len(grid), K_full=iterations_to_eps(np.ones(b), rho_a, d_a, eps),
                     K_best=iterations_to_eps(inclusion_probabilities(p_star), rho_a, d_a, eps),
                     problem=problem.name if problem is not None else "given constants"),
    )


def cost_model_contraction(
    problem: LayeredProblem | None = None, *, n_updates: int = 25, slack: float = 1e-10, optimizer_cls=DropMuon
) -> TheoremCheck:
    """T5's premise: each update of layer ``i`` (radius ``g_i/L_i``) shrinks ``f_i`` by at least ``1 - rho_i``.

    On a separable problem layer ``i``'s value after ``n`` of its own updates, ``h_i(n)``, does not depend on
    when the other layers moved, so ``E f_i^k = sum_n Binom(n; k, q_i) h_i(n)`` and the model's
    ``E f_i^k <= (1 - q_i rho_i)^k f_i^0`` follows from ``h_i(n) <= (1 - rho_i)^n h_i(0)`` for every ``n``. This
    checks the latter on real optimizer steps. measured = ``max_{i, n>=1} h_i(n) / ((1 - rho_i)^n h_i(0))``;
    bound 1.
    """
    problem = problem or layered_quadratic(((16, 2), (8, 8), (4, 6)), a=(1.0, 1.0, 1.0), seed=5)
    rho = [m / L for m, L in zip(problem.mu, problem.L)]
    params = problem.parameters()
    opt = optimizer_cls(_groups(problem, params, "smooth"), lr=1.0, **EXACT)
    h = [problem.layer_values(params)]
    for _ in range(n_updates):
        opt.zero_grad(set_to_none=True)
        problem.backward(params, 0)
        opt.step(cutoff=0)
        h.append(problem.layer_values([p.detach() for p in params]))
    h = np.asarray(h)
    model = np.asarray([[(1.0 - r) ** n * h[0, i] for i, r in enumerate(rho)] for n in range(n_updates + 1)])
    tiny = np.finfo(float).tiny
    negligible = h <= 16 * np.finfo(float).eps * h[0]
    ratio = np.where(model > tiny, h / np.maximum(model, tiny), np.where(negligible, 0.0, np.inf))
    measured = float(ratio[1:].max())  # n >= 1 (n = 0 is 1 by definition)
    return TheoremCheck(
        name="T5 premise: per-update contraction",
        statement="h_i(n) <= (1 - mu_i/L_i)^n h_i(0) (layer-wise PL + optimal radius)",
        source=DERIVED,
        measured=measured,
        bound=1.0,
        holds=le_with_slack(measured, 1.0, slack),
        slack=slack,
        details=dict(problem=problem.name, rho=rho, n_updates=n_updates,
                     final_ratio=[float(v) for v in h[-1] / h[0]]),
    )


# =============================================================================================
# T6 (L0, L1) radius
# =============================================================================================
def l0l1_decrease(
    problem: LayeredProblem | None = None, *, slack: float = 1e-12, optimizer_cls=DropMuon, radius_scale: float = 1.0
) -> TheoremCheck:
    """T6: the radius ``t_i = g_i/(L0_i + L1_i g_i)`` decreases each block by at least the derived bound.

    Default problem: two ``exp(u^T x)`` blocks and one log-sum-exp block (separable). measured = ``f(X+)``;
    bound = ``f(X) - sum_i g_i t_i (1 - phi(L1_i t_i))`` with the rule's ``t_i`` (module docstring).
    ``radius_scale`` multiplies the optimizer's ``L0, L1`` by ``1/radius_scale`` (the twin's too-large radius).
    Details: per-block actual decrease, the derived bound, the spec's ``g^2/(2(L0 + L1 g))`` and, for exp
    blocks, the exact ``(1 - 1/e) f_i``.
    """
    problem = problem or concat_blocks(exponential_blocks((3, 5), seed=0), log_sum_exp_blocks((4,), seed=0))
    before = problem.layer_values(problem.x0)
    g = nuclear_norms(problem.grads(problem.x0))
    params = problem.parameters()
    groups = _groups(problem, params, "l0l1")
    for grp in groups:
        grp["L0"] /= radius_scale
        grp["L1"] /= radius_scale
    opt = optimizer_cls(groups, lr=1.0, **EXACT)
    problem.backward(params, 0)
    opt.step(cutoff=0)
    after = problem.layer_values([p.detach() for p in params])
    rows, guaranteed = [], 0.0
    for i in range(problem.num_layers):
        L0, L1 = problem.L0[i], problem.L1[i]
        t = g[i] / (L0 + L1 * g[i])
        dec = g[i] * t * (1.0 - phi(L1 * t))
        guaranteed += dec
        rows.append(dict(layer=i, actual=before[i] - after[i], derived_bound=dec,
                         spec_bound=g[i] ** 2 / (2.0 * (L0 + L1 * g[i])), radius=t,
                         exp_exact=(1.0 - math.exp(-1.0)) * before[i] if L0 == 0 else None))
    f0, f1 = sum(before), sum(after)
    bound = f0 - guaranteed
    return TheoremCheck(
        name="T6 (L0,L1) radius",
        statement="t_i = g_i/(L0_i + L1_i g_i) gives f_i decrease >= g_i t_i (1 - phi(L1_i t_i)) "
                  ">= (3-e) g_i^2/(L0_i+L1_i g_i)",
        source=DERIVED + "; (L0,L1) definition: Zhang et al. 2020, arXiv:1905.11881",
        measured=f1,
        bound=bound,
        holds=le_with_slack(f1, bound, slack) and all(r["actual"] >= r["derived_bound"] * (1 - slack) for r in rows),
        slack=slack,
        details=dict(problem=problem.name, blocks=rows, f0=f0),
    )


# =============================================================================================
# Parity (d) frozen layers
# =============================================================================================
def frozen_layers_untouched(
    problem: LayeredProblem | None = None,
    cutoffs: Sequence[int] = (1, 2, 2, 1),
    *,
    optimizer_cls=DropMuon,
    **options,
) -> TheoremCheck:
    """Parity (d): after a step with cutoff ``s`` the layers ``< s`` keep weights, momentum and ``grad is None``.

    A first full step (cutoff 0) fills every momentum buffer; then each cutoff in ``cutoffs`` runs a
    truncated backward (:meth:`LayeredProblem.backward`) and a step. measured = number of violations (a weight
    or buffer that changed bitwise, or a frozen ``.grad`` that is not ``None``); bound = 0.
    """
    problem = problem or layered_quadratic(seed=3)
    params = problem.parameters()
    opts = dict(lr=0.05, momentum=0.9, orthogonalizer="svd", ns_dtype=None)
    opts.update(options)
    opt = optimizer_cls([{"params": [p], "layer": i} for i, p in enumerate(params)], **opts)
    problem.backward(params, 0)
    opt.step(cutoff=0)
    violations, changed_max = 0, 0.0
    for s in cutoffs:
        opt.zero_grad(set_to_none=True)
        problem.backward(params, s)
        snap = [(p.detach().clone(), opt.state[p]["momentum_buffer"].clone()) for p in params[:s]]
        opt.step(cutoff=s)
        for p, (w, m) in zip(params[:s], snap):
            buf = opt.state[p].get("momentum_buffer")
            violations += int(not torch.equal(p.detach(), w)) + int(buf is None or not torch.equal(buf, m))
            violations += int(p.grad is not None)
            changed_max = max(changed_max, float((p.detach() - w).abs().max()))
    return TheoremCheck(
        name="Parity (d) frozen layers untouched",
        statement="layers < s: weights, momentum buffers unchanged bitwise and p.grad stays None",
        source="spec 20 §5 Parity (d), §9 P2/P3",
        measured=float(violations),
        bound=0.0,
        holds=violations == 0,
        details=dict(comparison="measured == 0", problem=problem.name, cutoffs=list(cutoffs),
                     max_weight_change=changed_max),
    )


def _leaves_in_graph(loss: Tensor) -> int:
    """Number of ``AccumulateGrad`` nodes reachable from ``loss``: the leaves the backward pass will write."""
    seen, stack, leaves = set(), [loss.grad_fn], 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        leaves += type(node).__name__ == "AccumulateGrad"
        stack.extend(nxt for nxt, _ in node.next_functions)
    return leaves


def _counted_step(net: BlockNetwork, s: int) -> tuple[Tensor, int, float, float]:
    """Forward with :func:`optlib.optim.progressive.progressive_forward` (looked up at call time), then backward;
    returns ``(loss, leaves in the graph, forward FLOPs, backward FLOPs)`` counted by ``torch.utils.flop_counter``."""
    fwd = FlopCounterMode(display=False)
    with fwd:
        loss = net.loss(progressive.progressive_forward(net.blocks, net.x, s))
    leaves = _leaves_in_graph(loss)
    bwd = FlopCounterMode(display=False)
    with bwd:
        loss.backward()
    return loss, leaves, float(fwd.get_total_flops()), float(bwd.get_total_flops())


def progressive_parity(
    net: BlockNetwork | None = None,
    cutoffs: Sequence[int] = (1, 3, 2, 1),
    *,
    optimizer_cls=DropMuon,
    **options,
) -> TheoremCheck:
    r"""Parity (d) on a real ``nn.Module``: the backward pass really stops at the cutoff and frozen blocks stay put.

    ``net`` (default :func:`optlib.problems.block_networks.block_mlp`, non-square ``Linear`` blocks) is trained by
    DropMuon (groups from :func:`~optlib.optim.drop_muon.layer_param_groups`) with the forward pass of
    :func:`~optlib.optim.progressive.progressive_forward`: one full step (cutoff 0, fills every momentum buffer),
    then one step per cutoff ``s`` in ``cutoffs``. For each, with ``zero_grad(set_to_none=True)`` before it:

    * the autograd graph of the loss reaches exactly the matrices of blocks ``>= s`` (``AccumulateGrad`` nodes);
    * the backward FLOPs counted by ``torch.utils.flop_counter`` equal the derived
      :math:`\sum_{j\ge s}F_j + \sum_{j>s}F_j` (:mod:`optlib.problems.block_networks`; a full backward costs
      :math:`2\sum_j F_j - F_0`), and the forward FLOPs :math:`\sum_j F_j`;
    * blocks ``< s``: ``p.grad is None``, weights and momentum buffers bitwise unchanged by the step;
    * blocks ``>= s``: a gradient, and the weights move.

    measured = number of violations; bound 0. Defaults: ``lr=0.05``, EMA-Nesterov ``momentum=0.9``,
    ``weight_decay=0.1`` (a frozen block must not decay either), Keller scaling, SVD, float64.
    """
    net = net or block_mlp()
    groups, other = layer_param_groups(net.blocks)
    if other:
        raise ValueError("progressive_parity needs blocks whose parameters are all matrices")
    opts = dict(lr=0.05, momentum=0.9, weight_decay=0.1, adjust_lr="keller", orthogonalizer="svd", ns_dtype=None)
    opts.update(options)
    opt = optimizer_cls(groups, **opts)
    mats = [net.matrices(j) for j in range(net.num_blocks)]
    violations, rows = 0, []
    for k, s in enumerate((0, *cutoffs)):
        opt.zero_grad(set_to_none=True)
        _, leaves, fwd, bwd = _counted_step(net, s)
        frozen = [p for j in range(s) for p in mats[j]]
        active = [p for j in range(s, net.num_blocks) for p in mats[j]]
        snap = [(p.detach().clone(), opt.state[p]["momentum_buffer"].clone() if p in opt.state else None)
                for p in frozen]
        before_active = [p.detach().clone() for p in active]
        opt.step(cutoff=s)
        bad = dict(leaves=int(leaves != len(active)), backward_flops=int(bwd != net.backward_flops(s)),
                   forward_flops=int(fwd != sum(net.forward_flops)))
        bad["frozen_grad"] = sum(p.grad is not None for p in frozen)
        bad["frozen_moved"] = sum(not torch.equal(p.detach(), w) for p, (w, _) in zip(frozen, snap))
        bad["frozen_state"] = sum(m is not None and not torch.equal(opt.state[p]["momentum_buffer"], m)
                                  for p, (_, m) in zip(frozen, snap))
        bad["active_no_grad"] = sum(p.grad is None for p in active)
        bad["active_still"] = sum(torch.equal(p.detach(), w) for p, w in zip(active, before_active))
        if k > 0:
            violations += sum(bad.values())
        rows.append(dict(cutoff=s, leaves=leaves, expected_leaves=len(active), backward_flops=bwd,
                         derived_backward_flops=net.backward_flops(s), forward_flops=fwd, violations=bad))
    return TheoremCheck(
        name="Parity (d) progressive_forward on an nn.Module",
        statement="cutoff s: the graph reaches only blocks >= s, backward FLOPs = sum_{j>=s} F_j + sum_{j>s} F_j; "
                  "blocks < s keep grad None, weights and momentum; blocks >= s get a gradient and move",
        source="spec 20 §5 Parity (d), §9 P2/P3; FLOP counts derived in optlib.problems.block_networks",
        measured=float(violations),
        bound=0.0,
        holds=violations == 0,
        details=dict(comparison="measured == 0", problem=net.name, cutoffs=list(cutoffs), steps=rows,
                     optimizer=optimizer_cls.__name__),
    )


def cost_accounting(
    net: BlockNetwork | None = None,
    rho: Sequence[float] = (0.5, 0.125, 1.0 / 6.0),
    *,
    p: Sequence[float] | str = "uniform",
    n_steps: int = 6,
    seed: int = 0,
    eps: float = 1e-6,
    optimizer_cls=DropMuon,
) -> TheoremCheck:
    r"""T5 on production cost accounting: the costs the optimizer logs are the FLOPs of the truncated step, and
    with them full updates are not cost-optimal.

    ``net`` (default :func:`~optlib.problems.block_networks.block_cnn`: two conv blocks and a linear head; the input
    conv is the costliest to backpropagate) is run for ``n_steps`` DropMuon steps with a sampled cutoff and
    ``costs=block_costs(blocks, x)`` (:func:`optlib.optim.progressive.block_costs`, looked up at call time). Each
    step's forward and backward are counted by ``torch.utils.flop_counter``. Checked:

    (a) the optimizer's logged ``backward_flops`` equals the counted backward FLOPs of that step, and
        ``BlockCosts.step(s)`` the counted forward + backward, for every cutoff ``s`` (exact: integers);
    (b) T5's trade-off (:func:`cost_tradeoff`, the module docstring's model) with these production per-step costs
        :math:`C(s)` = ``BlockCosts.step(s)`` and per-update contractions ``rho`` (default: those of the
        ``(16, 2), (8, 8), (4, 6)`` layered quadratic, ``1/r_i``; the input layer converges fastest) has its
        minimizer away from :math:`e_1`.

    measured = max relative error of (a) (bound 0); holds when (a) is exact and (b) holds. A cost model without the
    backward saving (or with a wrong FLOP count) breaks (a).
    """
    net = net or block_cnn()
    b = net.num_blocks
    costs = progressive.block_costs(net.blocks, net.x)
    groups, _ = layer_param_groups(net.blocks)
    opt = optimizer_cls(groups, lr=0.02, momentum=0.9, orthogonalizer="svd", ns_dtype=None, sampler=p, seed=seed,
                        costs=costs)
    errs, rows = [], []
    for _ in range(n_steps):
        s = opt.sample_cutoff()
        opt.zero_grad(set_to_none=True)
        _, _, fwd, bwd = _counted_step(net, s)
        opt.step()
        logged = opt.state["drop_muon"]["backward_flops"][-1]
        errs.append(abs(logged - bwd) / bwd)
        rows.append(dict(cutoff=s, logged_backward=logged, counted_backward=bwd))
    per_cutoff = []
    for s in range(b):
        for q in opt.param_groups:
            for x in q["params"]:
                x.grad = None
        _, _, fwd, bwd = _counted_step(net, s)
        errs.append(abs(costs.step(s) - (fwd + bwd)) / (fwd + bwd))
        per_cutoff.append(dict(cutoff=s, production_step=costs.step(s), counted_step=fwd + bwd))
    measured = max(errs)
    rho_a = np.asarray(rho, float)
    delta0 = np.ones(b)
    trade = cost_tradeoff(rho_a, delta0, costs=np.zeros(b), forward_cost=0.0, eps=eps, step_cost=costs.step)
    return TheoremCheck(
        name="T5 cost accounting on a real network",
        statement="logged backward FLOPs and BlockCosts.step(s) equal the FLOPs counted on the truncated step; "
                  "with these C(s), argmin_p K(p) E[C(s)] != e_1",
        source=DERIVED + "; FLOPs counted by torch.utils.flop_counter",
        measured=measured,
        bound=0.0,
        holds=bool(measured == 0.0 and trade.holds),
        details=dict(comparison="measured == 0 and the trade-off holds", problem=net.name, steps=rows,
                     per_cutoff=per_cutoff, tradeoff=trade.row() | dict(p_star=trade.details["p_star"]),
                     optimizer=optimizer_cls.__name__),
    )


def drop_muon_table(quick: bool = True) -> list[TheoremCheck]:
    """Every Drop-Muon / Muon check on its default problem (about a second; ``quick=False`` adds the remaining
    momentum forms and scalings of T1b and the CNN parity)."""
    rows = [
        one_step_decrease(),
        one_step_decrease(orthogonalizer="newton-schulz"),
        one_step_decrease(layered_quadratic(((6, 3), (3, 7), (5, 5)), seed=13), t=0.05, optimizer_cls=Muon,
                          adjust_lr="keller", weight_decay=0.5, momentum=0.9, nesterov=True, new_weight=None),
        muon_trajectory(),
        muon_trajectory(momentum_style="sum", adjust_lr="moonshot"),
        muon_trajectory(optimizer_cls=DropMuon, new_weight=0.3, radius="smooth", weight_decay=0.0),
        muon_trajectory(orthogonalizer="newton-schulz"),
        optimal_radius_decrease(),
        optimal_radius_decrease(adjust_lr="keller", optimizer_cls=Muon),
        optimal_radius_decrease(adjust_lr="moonshot", optimizer_cls=Muon),
        expected_descent(),
        descent_rate(),
        cost_tradeoff(),
        cost_model_contraction(),
        cost_accounting(),
        l0l1_decrease(),
        frozen_layers_untouched(),
        progressive_parity(),
    ]
    if not quick:
        rows += [muon_trajectory(momentum_style=st, nesterov=nes, adjust_lr=adj)
                 for st in ("ema", "sum") for nes in (True, False) for adj in ("keller", "moonshot")]
        rows += [muon_trajectory(optimizer_cls=DropMuon, momentum_style="ema", radius="smooth"),
                 progressive_parity(block_cnn(), cutoffs=(1, 2, 1))]
    return rows
