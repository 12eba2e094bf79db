r"""Proofs-as-tests for discretisation drift (spec 40 §8, spec 95 §4): the orders of accuracy of the modified and
principal flows of :mod:`optlib.drift`, measured against the iterates they model.

The flows are the code under test; the iterates (GD, SGD epochs, heavy ball, game updates) are computed here
from closed-form gradients in numpy, and the references (matrix powers, ``scipy.linalg.expm``/``logm``, roots of
the heavy-ball characteristic polynomial) never come from :mod:`optlib.drift`. Each checker that measures a flow
takes a ``flow_factory`` (``(loss, h) -> rhs``), so a deliberately wrong flow (a wrong sign, factor or branch)
runs through the same measurement and must fail it (``tests/theorems/test_drift.py``). Everything is float64.

Statements (all constants [derived — verify] in spec 40 unless a paper is named):

* **local order** (Barrett & Dherin 2021, Thm 3.1 for IGR): :math:`\lVert x_1 - \varphi(h)\rVert = O(h^{p+1})`
  for the flow of order :math:`p`: log-log slope 2 (NGF), 3 (IGR), 4 (the second-order correction ``igr2``),
  :math:`\pm0.1`, on :math:`h\in\{2^{-4},\dots,2^{-10}\}` where :math:`h\lambda_{max}\le 0.1`.
* **global order** over :math:`T = 1`: slope 1 (NGF), 2 (IGR), :math:`\pm0.1`.
* **principal flow exact on quadratics**: :math:`\theta_{PF}(nh) = (I - hA)^n\theta_0` with :math:`h\lambda` in
  (0,1), (1,2) and above 2 (reference :math:`\exp(n\log(I - hA))` by scipy, principal ``logm``, and the matrix
  power); NGF and IGR get the sign (oscillation) and the growth (divergence) wrong in the last two regimes.
* **divergence onset**: on a grid of :math:`h` around :math:`2/\lambda_{max}`, GD diverges from the first grid
  point where the real principal flow grows (:math:`\log|1 - h\lambda|/(h\lambda) > 0 \iff h\lambda > 2`).
* **bilinear game** :math:`E = \varphi\theta` (:math:`\alpha = \lambda = 1`): simultaneous GD grows by
  :math:`\sqrt{1+h^2}` per step, its modified flow by :math:`e^{h^2/2}` over time :math:`h`; the relative
  discrepancy :math:`|\tfrac12\log(1+h^2) - h^2/2| = h^4/4 + O(h^6)` has slope 4. The alternating modified flow
  :math:`\dot z = [[h/2, -1], [1, -h/2]]z` is trace-free: :math:`\lVert z(t)\rVert \le \kappa(V)\lVert z_0\rVert`
  for all :math:`t` (:math:`V` its eigenvectors, :math:`h < 2`), as the alternating map (determinant 1) is.
* **game local order**: one simultaneous or alternating update is :math:`O(h^3)` from :func:`~optlib.drift.game_flow`
  of the same mode (slope 3) on a non-linear game with :math:`\alpha\ne\lambda`.
* **SGD** (Smith et al. 2021): the mean over all :math:`m!` orders of one epoch is :math:`O(h^3)` from the SGD
  flow at :math:`t = mh` and :math:`O(h^2)` from NGF on the mean loss (slopes 3 and 2). The exact mean over all
  orders is used: a Monte Carlo mean has noise :math:`O(h^2/\sqrt N)`, which hides the :math:`h^3` term unless
  :math:`N\gg h^{-2}`.
* **momentum**: the dominant root of :math:`r^2 - (1+\beta-h\lambda)r + \beta` and the momentum flow's factor
  over time :math:`h` agree to :math:`O(h^3)` (slope 3).
* **explicit IGR**: :math:`\nabla\,\mathrm{igr\_penalty} = \tfrac h2Hg` to roundoff; the F-GR finite differences
  converge with slope 1 (forward) and 2 (central) in the shift length.
* **game regularisers**: :func:`~optlib.drift.game_drift_penalties` reproduce the drift of
  :func:`~optlib.drift.game_flow` on a differentiable game, both modes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from ..drift import (
    EXPANSION_LIMIT,
    check_expansion,
    game_drift_penalties,
    game_flow,
    igr_penalty,
    igr_penalty_grad_fd,
    integrate,
    modified_flow,
    principal_flow,
)
from ..problems.drift import rotated_quadratic, tiny_mlp_loss
from .common import TheoremCheck, fit_line

SOURCE = "spec 40 §2-§8 (derived — verify); Barrett & Dherin ICLR 2021; Rosca et al. ICML 2021, TMLR 2023"
SLOPE_TOL = 0.1
FLOW_RTOL, FLOW_ATOL = 1e-13, 1e-15
LOCAL_HS = tuple(2.0**-k for k in range(4, 11))
ORDER = {"gradient": 2, "igr": 3, "igr2": 4}
GLOBAL_ORDER = {"gradient": 1, "igr": 2}
VALLEY_START = (0.5, 0.3)

FlowFactory = Callable[[Callable[[Tensor], Tensor], float], Callable[[Tensor], Tensor]]


def kind_factory(kind: str, **options: Any) -> FlowFactory:
    """``(loss, h) -> modified_flow(loss, kind, h, **options)``."""
    return lambda loss, h: modified_flow(loss, kind, h, **options)


def principal_factory(part: str = "complex") -> FlowFactory:
    """``(loss, h) -> principal_flow(loss, h, part=part)``."""
    return lambda loss, h: principal_flow(loss, h, part=part)


# ---------------------------------------------------------------------------------------------- problems
def valley_loss(theta: Tensor) -> Tensor:
    r""":math:`E(x, y) = \log\cosh x + \tfrac14(y - x^2)^2` (spec 40 §8.1): smooth, non-quadratic, minimum 0 at 0."""
    x, y = theta[0], theta[1]
    return torch.log(torch.cosh(x)) + 0.25 * (y - x * x) ** 2


def valley_grad(p: np.ndarray) -> np.ndarray:
    """Closed-form gradient of :func:`valley_loss`."""
    x, y = p
    return np.array([math.tanh(x) - x * (y - x * x), 0.5 * (y - x * x)])


def valley_hessian(p: np.ndarray) -> np.ndarray:
    """Closed-form Hessian of :func:`valley_loss`."""
    x, y = p
    return np.array([[1.0 / math.cosh(x) ** 2 - y + 3 * x * x, -x], [-x, 0.5]])


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _t(a: Any) -> Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def _flow_at(factory: FlowFactory, loss: Callable[[Tensor], Tensor], h: float, x0: np.ndarray, t: float) -> np.ndarray:
    return _np(integrate(factory(loss, h), _t(x0), t, rtol=FLOW_RTOL, atol=FLOW_ATOL))


def _slope_check(name: str, statement: str, hs: Sequence[float], errors: Sequence[float], expected: float,
                 h_lam: float, details: dict[str, Any], source: str = SOURCE) -> TheoremCheck:
    errs = np.asarray(errors, dtype=float)
    if not (np.isfinite(errs).all() and (errs > 0).all()):
        return TheoremCheck(name, statement, source, float("nan"), expected, False, SLOPE_TOL,
                            details={**details, "errors": errs.tolist(), "comparison": "non-positive error"})
    slope, _, r2 = fit_line(np.log2(hs), np.log2(errs))
    valid = h_lam <= EXPANSION_LIMIT
    holds = abs(slope - expected) <= SLOPE_TOL and valid
    return TheoremCheck(name, statement, source, slope, float(expected), holds, SLOPE_TOL,
                        details={**details, "hs": list(hs), "errors": errs.tolist(), "r2": r2,
                                 "max_h_lambda_max": h_lam,
                                 "comparison": f"|slope - {expected}| <= {SLOPE_TOL} and h*lambda_max <= "
                                               f"{EXPANSION_LIMIT}"})


def _max_h_lambda(hs: Sequence[float], points: Sequence[np.ndarray], what: str) -> float:
    lam = max(float(np.linalg.eigvalsh(valley_hessian(p))[-1]) for p in points)
    return check_expansion(max(hs), lam, what)


# ---------------------------------------------------------------------------------------------- GD orders
def local_error_slope(kind: str = "igr", hs: Sequence[float] | None = None,
                      flow_factory: FlowFactory | None = None, expected: float | None = None) -> TheoremCheck:
    r"""One GD step vs the flow of ``kind`` at :math:`t = h` on the valley: slope ``ORDER[kind]`` :math:`\pm0.1`."""
    if hs is None:
        hs = LOCAL_HS if kind != "igr2" else tuple(2.0**-k for k in range(4, 9))
    factory = flow_factory or kind_factory(kind)
    expected = float(ORDER[kind] if expected is None else expected)
    x0 = np.array(VALLEY_START)
    h_lam = _max_h_lambda(hs, [x0], f"the local-order test of the {kind} flow")
    errors = [float(np.linalg.norm((x0 - h * valley_grad(x0)) - _flow_at(factory, valley_loss, h, x0, h)))
              for h in hs]
    return _slope_check(f"local order of the {kind} flow", f"||x_1 - phi_{kind}(h)|| = O(h^{expected:g})", hs,
                        errors, expected, h_lam, {"problem": "log cosh x + (y - x^2)^2/4 from (0.5, 0.3)",
                                                  "method": f"GD vs {kind} flow"})


def global_error_slope(kind: str = "igr", horizon: float = 1.0, hs: Sequence[float] | None = None,
                       flow_factory: FlowFactory | None = None, expected: float | None = None) -> TheoremCheck:
    r"""GD for :math:`n = T/h` steps vs the flow at :math:`T`: slope ``GLOBAL_ORDER[kind]`` :math:`\pm0.1`."""
    hs = hs if hs is not None else tuple(2.0**-k for k in range(4, 9))
    factory = flow_factory or kind_factory(kind)
    expected = float(GLOBAL_ORDER[kind] if expected is None else expected)
    x0 = np.array(VALLEY_START)
    errors, visited = [], [x0]
    for h in hs:
        n = round(horizon / h)
        if abs(n * h - horizon) > 1e-12 * horizon:
            raise ValueError(f"the horizon {horizon} is not a whole number of steps of h = {h}")
        x = x0.copy()
        for _ in range(n):
            x = x - h * valley_grad(x)
            visited.append(x)
        errors.append(float(np.linalg.norm(x - _flow_at(factory, valley_loss, h, x0, horizon))))
    h_lam = _max_h_lambda(hs, visited, f"the global-order test of the {kind} flow")
    return _slope_check(f"global order of the {kind} flow over T = {horizon:g}",
                        f"||x_(T/h) - phi_{kind}(T)|| = O(h^{expected:g})", hs, errors, expected, h_lam,
                        {"problem": "log cosh x + (y - x^2)^2/4 from (0.5, 0.3)", "method": f"GD vs {kind} flow",
                         "horizon": horizon})


def mlp_local_error_slope(kind: str = "igr", hs: Sequence[float] = tuple(2.0**-k for k in range(7, 12)),
                          flow_factory: FlowFactory | None = None) -> TheoremCheck:
    r"""The local order on a small MLP (any torch model, through :func:`~optlib.drift.module_loss`): one GD step
    (``torch.autograd.grad``) vs the flow at :math:`t = h`, slope ``ORDER[kind]`` :math:`\pm0.1`;
    :math:`\lambda_{max}` from the dense Hessian (``torch.autograd.functional.hessian``, numpy ``eigvalsh``)."""
    factory = flow_factory or kind_factory(kind)
    loss, theta0 = tiny_mlp_loss()
    lam = float(np.linalg.eigvalsh(_np(torch.autograd.functional.hessian(loss, theta0)))[-1])
    h_lam = check_expansion(max(hs), lam, f"the MLP local-order test of the {kind} flow")
    leaf = theta0.clone().requires_grad_(True)
    with torch.enable_grad():
        grad = _np(torch.autograd.grad(loss(leaf), leaf)[0])
    x0 = _np(theta0)
    errors = [float(np.linalg.norm((x0 - h * grad) - _flow_at(factory, loss, h, x0, h))) for h in hs]
    expected = float(ORDER[kind])
    return _slope_check(f"local order of the {kind} flow on an MLP", f"||x_1 - phi_{kind}(h)|| = O(h^{expected:g})",
                        hs, errors, expected, h_lam, {"problem": "3-4-1 tanh MLP, 8 points, MSE",
                                                      "method": f"GD vs {kind} flow", "lambda_max": lam})


# ---------------------------------------------------------------------------------------------- principal flow
def principal_flow_exact(h: float = 0.5, eigenvalues: Sequence[float] = (1.0, 3.0, 5.0), steps: int = 4,
                         flow_factory: FlowFactory | None = None, tol: float = 1e-12) -> TheoremCheck:
    r""":math:`\max_{n\le N}\lVert\theta_{PF}(nh) - (I - hA)^n\theta_0\rVert/\lVert(I-hA)^n\theta_0\rVert \le`
    ``tol`` (default eigenvalues give :math:`h\lambda = 0.5, 1.5, 2.5`); the reference is scipy's
    :math:`\exp(n\log(I - hA))\theta_0` (principal ``logm``), checked against the matrix power to 1e-12."""
    factory = flow_factory or principal_factory()
    A, loss = rotated_quadratic(eigenvalues)
    x0 = np.ones(len(eigenvalues)) / math.sqrt(len(eigenvalues))
    M = np.eye(len(eigenvalues)) - h * A
    log_m = scipy.linalg.logm(M.astype(complex))
    times = h * np.arange(1, steps + 1)
    traj = _np(integrate(factory(loss, h), _t(x0), times, rtol=FLOW_RTOL, atol=FLOW_ATOL))
    errors, ref_gap = [], 0.0
    for n in range(1, steps + 1):
        ref = scipy.linalg.expm(n * log_m) @ x0
        power = np.linalg.matrix_power(M, n) @ x0
        ref_gap = max(ref_gap, float(np.linalg.norm(ref - power) / np.linalg.norm(power)))
        errors.append(float(np.linalg.norm(traj[n - 1] - ref) / np.linalg.norm(ref)))
    measured = max(errors)
    holds = measured <= tol and ref_gap <= 1e-12
    return TheoremCheck("principal flow is GD on a quadratic", "theta_PF(nh) = (I - hA)^n theta_0 for every h",
                        "Rosca et al. TMLR 2023 (PF); spec 40 §7, §8.3", measured, tol, holds,
                        details={"problem": f"quadratic, h*lambda = {[h * e for e in eigenvalues]}",
                                 "method": "principal flow", "errors": errors, "reference_gap": ref_gap,
                                 "comparison": f"max relative error <= {tol:g}"})


def qualitative_regimes(flow_factory: FlowFactory | None = None, label: str = "principal", h: float = 0.5,
                        eigenvalues: Sequence[float] = (1.0, 3.0, 5.0), expected: int = 3) -> TheoremCheck:
    r"""The number of regimes :math:`h\lambda\in(0,1), (1,2), (2,\infty)` in which the flow's factor over time
    :math:`h` along :math:`u_i`, :math:`\operatorname{Re}(u_i^\top\varphi(h))/(u_i^\top\theta_0)`, has the sign and
    the growth (:math:`|\cdot| > 1`) of GD's :math:`1 - h\lambda_i`. The PF gets all 3; NGF and IGR only the first
    (``expected = 1``: they miss the oscillation and the divergence)."""
    factory = flow_factory or principal_factory()
    A, loss = rotated_quadratic(eigenvalues)
    lam, U = np.linalg.eigh(A)
    x0 = U.sum(axis=1)
    phi = _np(integrate(factory(loss, h), _t(x0), h, rtol=FLOW_RTOL, atol=FLOW_ATOL))
    factors = np.real(U.T @ phi) / (U.T @ x0)
    right = [bool(np.sign(f) == np.sign(1 - h * e) and (abs(f) > 1) == (abs(1 - h * e) > 1))
             for f, e in zip(factors, lam)]
    measured = int(sum(right))
    return TheoremCheck(f"{label} flow regimes matched", "sign and growth of the flow's factor vs 1 - h lambda",
                        "spec 40 §7, §8.3", float(measured), float(expected), measured == expected,
                        details={"problem": f"quadratic, h*lambda = {[float(f'{h * e:.6g}') for e in lam]}",
                                 "method": f"{label} flow",
                                 "flow_factors": factors.tolist(), "gd_factors": (1 - h * lam).tolist(),
                                 "comparison": "measured == bound"})


def divergence_onset(flow_factory: FlowFactory | None = None, label: str = "principal (real part)",
                     eigenvalues: Sequence[float] = (0.5, 1.5, 4.0), spacing: float = 0.02, points: int = 5,
                     steps: int = 100) -> TheoremCheck:
    r"""On the grid :math:`h_k = (2/\lambda_{max})(1 + \delta(k - K + \tfrac12))` (:math:`K = \lfloor points/2
    \rfloor`), GD diverges (:math:`\lVert x_N\rVert > \lVert x_0\rVert` after :math:`N` steps) from the same grid
    point on which the flow grows over :math:`t = Nh`, and that point is within one spacing above
    :math:`2/\lambda_{max}`. Measured: the number of grid points between the two onsets (0 holds)."""
    factory = flow_factory or principal_factory("real")
    A, loss = rotated_quadratic(eigenvalues, seed=1)
    lam_max = max(eigenvalues)
    K = points // 2
    grid = [(2.0 / lam_max) * (1.0 + spacing * (k - K + 0.5)) for k in range(points)]
    x0 = np.linalg.eigh(A)[1].sum(axis=1)  # unit component along every eigenvector
    gd, flow = [], []
    for h in grid:
        M = np.eye(len(eigenvalues)) - h * A
        gd.append(bool(np.linalg.norm(np.linalg.matrix_power(M, steps) @ x0) > np.linalg.norm(x0)))
        end = _np(integrate(factory(loss, h), _t(x0), steps * h, rtol=1e-7, atol=1e-12))
        flow.append(bool(np.linalg.norm(end) > np.linalg.norm(x0)))
    first_gd = gd.index(True) if True in gd else points
    first_flow = flow.index(True) if True in flow else points
    measured = abs(first_gd - first_flow)
    onset_ok = first_gd < points and abs(grid[first_gd] - 2.0 / lam_max) <= spacing * 2.0 / lam_max
    return TheoremCheck(f"divergence onset predicted by the {label} flow",
                        "first diverging grid h of GD = first growing grid h of the flow (= 2/lambda_max)",
                        "spec 40 §7, §8.4", float(measured), 0.0, measured == 0 and onset_ok,
                        details={"problem": f"quadratic, eigenvalues {list(eigenvalues)}", "method": label,
                                 "grid": grid, "gd_diverges": gd, "flow_grows": flow,
                                 "comparison": "grid points between the onsets == 0, GD onset within one spacing "
                                               "of 2/lambda_max"})


# ---------------------------------------------------------------------------------------------- games
def _bilinear_fields() -> tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]]:
    # E = phi theta, phi descends, theta ascends: f = -dE/dphi = -theta, g = +dE/dtheta = phi
    return (lambda phi, theta: -theta), (lambda phi, theta: phi.clone())


def game_factory(mode: str, **options: Any) -> Callable[..., Callable[[Tensor], Tensor]]:
    """``(f, g, alpha, lam, h) -> game_flow(..., mode, phi_dim=1)`` for 1-D players."""
    return lambda f, g, alpha, lam, h: game_flow(f, g, alpha, lam, h, mode, phi_dim=1, **options)


def bilinear_growth_slope(hs: Sequence[float] = tuple(2.0**-k for k in range(2, 7)),
                          flow_factory: Callable[..., Callable[[Tensor], Tensor]] | None = None,
                          expected: float = 4.0) -> TheoremCheck:
    r"""Simultaneous GD on :math:`\varphi\theta` grows by exactly :math:`\sqrt{1+h^2}` per step (checked on the
    iterates); the simultaneous modified flow's growth over time :math:`h` differs from it by :math:`O(h^4)`
    relatively (slope 4 :math:`\pm0.1`)."""
    factory = flow_factory or game_factory("simultaneous")
    f, g = _bilinear_fields()
    z0 = np.array([1.0, 0.5])
    errors, step_gap = [], 0.0
    for h in hs:
        z1 = np.array([z0[0] - h * z0[1], z0[1] + h * z0[0]])
        gd_growth = np.linalg.norm(z1) / np.linalg.norm(z0)
        step_gap = max(step_gap, abs(gd_growth - math.sqrt(1 + h * h)))
        zf = _np(integrate(factory(f, g, 1.0, 1.0, h), _t(z0), h, rtol=FLOW_RTOL, atol=FLOW_ATOL))
        errors.append(abs(math.log(np.linalg.norm(zf) / np.linalg.norm(z0)) - math.log(gd_growth)))
    check = _slope_check("bilinear game: simultaneous growth discrepancy",
                         "|log growth_flow(h) - log sqrt(1 + h^2)| = O(h^4)", hs, errors, expected, 0.0,
                         {"problem": "bilinear game phi*theta, alpha = lam = 1", "method": "simultaneous game flow",
                          "gd_growth_gap": step_gap}, source="Rosca et al. ICML 2021; spec 40 §8.5")
    if step_gap > 1e-14:
        return TheoremCheck(check.name, check.statement, check.source, check.measured, check.bound, False,
                            check.slack, {**dict(check.details), "comparison": "GD growth != sqrt(1 + h^2)"})
    return check


def alternating_bounded(h: float = 0.5, horizon: float = 40.0, gd_steps: int = 2000,
                        flow_factory: Callable[..., Callable[[Tensor], Tensor]] | None = None) -> TheoremCheck:
    r"""Alternating updates on :math:`\varphi\theta` (:math:`h < 2`): the map :math:`[[1, -h], [h, 1 - h^2]]`
    (determinant 1) keeps :math:`\lVert z_n\rVert \le \kappa(V_{map})\lVert z_0\rVert`, and the alternating modified
    flow :math:`[[h/2, -1], [1, -h/2]]` (trace 0) keeps :math:`\lVert z(t)\rVert \le \kappa(V_{flow})\lVert
    z_0\rVert` on :math:`[0, T]` (:math:`\kappa` = condition number of the eigenvector matrix, numpy). Measured:
    the flow's largest ratio over its bound."""
    factory = flow_factory or game_factory("alternating")
    f, g = _bilinear_fields()
    z0 = np.array([1.0, 0.5])
    M = np.array([[1.0, -h], [h, 1.0 - h * h]])
    B = np.array([[h / 2, -1.0], [1.0, -h / 2]])
    kappa_map = float(np.linalg.cond(np.linalg.eig(M)[1]))
    kappa_flow = float(np.linalg.cond(np.linalg.eig(B)[1]))
    z, gd_ratio = z0.copy(), 1.0
    for _ in range(gd_steps):
        z = M @ z
        gd_ratio = max(gd_ratio, float(np.linalg.norm(z) / np.linalg.norm(z0)))
    times = np.linspace(0.0, horizon, 401)
    traj = _np(integrate(factory(f, g, 1.0, 1.0, h), _t(z0), times, rtol=1e-11, atol=1e-13))
    flow_ratio = float(np.max(np.linalg.norm(traj, axis=1)) / np.linalg.norm(z0))
    measured = flow_ratio / kappa_flow
    holds = measured <= 1.0 + 1e-8 and gd_ratio <= kappa_map * (1 + 1e-8) and h < 2
    return TheoremCheck("bilinear game: alternating updates and flow stay bounded",
                        "||z(t)|| <= kappa(V_flow) ||z_0||, ||z_n|| <= kappa(V_map) ||z_0|| (h < 2)",
                        "Rosca et al. ICML 2021; spec 40 §8.5", measured, 1.0, holds, 1e-8,
                        details={"problem": f"bilinear game phi*theta, h = {h}", "method": "alternating game flow",
                                 "flow_ratio": flow_ratio, "kappa_flow": kappa_flow, "gd_ratio": gd_ratio,
                                 "kappa_map": kappa_map, "comparison": "flow ratio / kappa_flow <= 1 + 1e-8"})


def _game_fields() -> tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor, Tensor], Tensor],
                            Callable[[np.ndarray], tuple[float, float]]]:
    def f(phi: Tensor, theta: Tensor) -> Tensor:
        return -(theta + 0.5 * torch.sin(phi))

    def g(phi: Tensor, theta: Tensor) -> Tensor:
        return phi - 0.3 * theta**3

    def both(z: np.ndarray) -> tuple[float, float]:
        return -(z[1] + 0.5 * math.sin(z[0])), z[0] - 0.3 * z[1] ** 3

    return f, g, both


def game_local_error_slope(mode: str = "simultaneous", alpha: float = 1.0, lam: float = 0.5,
                           hs: Sequence[float] = tuple(2.0**-k for k in range(3, 9)),
                           flow_factory: Callable[..., Callable[[Tensor], Tensor]] | None = None,
                           expected: float = 3.0) -> TheoremCheck:
    r"""One update of ``mode`` (``phi += alpha h f``; ``theta += lam h g`` at the old or, alternating, the new
    :math:`\varphi`) vs the modified game flow of the same mode at :math:`t = h`, on
    :math:`f = -(\theta + \tfrac12\sin\varphi)`, :math:`g = \varphi - 0.3\theta^3`: slope 3 :math:`\pm0.1`."""
    factory = flow_factory or game_factory(mode)
    f, g, both = _game_fields()
    z0 = np.array([0.4, -0.3])
    errors = []
    for h in hs:
        fv, gv = both(z0)
        phi1 = z0[0] + alpha * h * fv
        if mode in ("alternating", "alt"):
            gv = both(np.array([phi1, z0[1]]))[1]
        z1 = np.array([phi1, z0[1] + lam * h * gv])
        zf = _np(integrate(factory(f, g, alpha, lam, h), _t(z0), h, rtol=FLOW_RTOL, atol=FLOW_ATOL))
        errors.append(float(np.linalg.norm(z1 - zf)))
    return _slope_check(f"game local order, {mode} updates", "||z_1 - phi_game(h)|| = O(h^3)", hs, errors,
                        expected, 0.0, {"problem": "game f = -(theta + sin(phi)/2), g = phi - 0.3 theta^3, "
                                                   f"alpha = {alpha}, lam = {lam}",
                                        "method": f"{mode} game flow"},
                        source="Rosca et al. ICML 2021, Thms 3.1/3.2; spec 40 §6")


# ---------------------------------------------------------------------------------------------- SGD
SGD_DATA = ((np.array([1.0, 0.3]), 0.2), (np.array([-0.4, 1.2]), -0.5), (np.array([0.7, -0.8]), 0.4))


def sgd_batch_losses() -> list[Callable[[Tensor], Tensor]]:
    r""":math:`\hat L_k(\theta) = \log\cosh(a_k^\top\theta - b_k) + \tfrac14(\theta_2 - \theta_1^2)^2`, ``m = 3``."""
    def make(a: np.ndarray, b: float) -> Callable[[Tensor], Tensor]:
        at = _t(a)
        return lambda th: torch.log(torch.cosh(at @ th - b)) + 0.25 * (th[1] - th[0] ** 2) ** 2
    return [make(a, b) for a, b in SGD_DATA]


def _sgd_batch_grad(k: int, p: np.ndarray) -> np.ndarray:
    a, b = SGD_DATA[k]
    x, y = p
    return math.tanh(a @ p - b) * a + np.array([-x * (y - x * x), 0.5 * (y - x * x)])


def _sgd_batch_hessian(k: int, p: np.ndarray) -> np.ndarray:
    a, b = SGD_DATA[k]
    x, y = p
    return np.outer(a, a) / math.cosh(a @ p - b) ** 2 + np.array([[-y + 3 * x * x, -x], [-x, 0.5]])


def sgd_epoch_slope(hs: Sequence[float] = tuple(2.0**-k for k in range(5, 11)), against: str = "sgd",
                    flow_factory: FlowFactory | None = None, expected: float | None = None) -> TheoremCheck:
    r"""The mean over all :math:`m!` orders of one SGD epoch vs the flow at :math:`t = mh` (``against="sgd"``:
    the SGD flow, slope 3; ``"gradient"``: NGF on the mean loss, slope 2), :math:`\pm0.1`."""
    batches = sgd_batch_losses()
    m = len(batches)

    def mean_loss(th: Tensor) -> Tensor:
        return sum(b(th) for b in batches) / m

    if flow_factory is None:
        flow_factory = (lambda loss, h: modified_flow(loss, "sgd", h, batches=batches)) if against == "sgd" \
            else kind_factory("gradient")
    expected = float(expected if expected is not None else (3 if against == "sgd" else 2))
    x0 = np.array(VALLEY_START)
    lam = max(float(np.linalg.eigvalsh(_sgd_batch_hessian(k, x0))[-1]) for k in range(m))
    h_lam = check_expansion(max(hs), lam, "the SGD-epoch order test")
    errors = []
    for h in hs:
        ends = []
        for order in itertools.permutations(range(m)):
            x = x0.copy()
            for k in order:
                x = x - h * _sgd_batch_grad(k, x)
            ends.append(x)
        mean_end = np.mean(ends, axis=0)
        errors.append(float(np.linalg.norm(mean_end - _flow_at(flow_factory, mean_loss, h, x0, m * h))))
    return _slope_check(f"SGD epoch mean vs {against} flow",
                        f"||E_shuffle x_m - phi_{against}(mh)|| = O(h^{expected:g})", hs, errors, expected, h_lam,
                        {"problem": "3 minibatches log cosh(a_k.theta - b_k) + (y - x^2)^2/4",
                         "method": f"SGD (all {math.factorial(m)} orders) vs {against} flow"},
                        source="Smith et al. ICLR 2021; spec 40 §4, §8.7")


# ---------------------------------------------------------------------------------------------- momentum
def momentum_root_slope(beta: float = 0.5, lam: float = 1.0, hs: Sequence[float] = tuple(2.0**-k for k in range(5, 11)),
                        flow_factory: FlowFactory | None = None, expected: float = 3.0) -> TheoremCheck:
    r""":math:`|\log r_{dom}(h) - \log(x(h)/x_0)|` for :math:`L = \lambda x^2/2`: the heavy ball's dominant root
    (``numpy.roots``) vs the momentum flow's factor over time :math:`h`: slope 3 :math:`\pm0.1`."""
    factory = flow_factory or kind_factory("momentum", beta=beta)

    def loss(th: Tensor) -> Tensor:
        return 0.5 * lam * th @ th

    h_lam = check_expansion(max(hs) / (1 - beta), lam, "the momentum order test")
    errors = []
    for h in hs:
        disc = (1.0 + beta - h * lam) ** 2 - 4.0 * beta
        if disc <= 0.0:
            raise ValueError(f"h = {h:g}, beta = {beta:g}, lambda = {lam:g}: the heavy-ball roots are complex "
                             f"(h lambda >= (1 - sqrt(beta))^2), where no real flow describes the iterates")
        r = float(np.max(np.roots([1.0, -(1.0 + beta - h * lam), beta]).real))
        x = _np(integrate(factory(loss, h), _t([1.0]), h, rtol=FLOW_RTOL, atol=FLOW_ATOL))[0]
        errors.append(abs(math.log(r) - math.log(x)))
    return _slope_check("momentum dominant root vs flow", "|log r_dom - log(flow factor over h)| = O(h^3)", hs,
                        errors, expected, h_lam, {"problem": f"L = {lam} x^2/2, beta = {beta}",
                                                  "method": "heavy-ball momentum flow"},
                        source="spec 40 §5, §8.8 (agrees with Ghosh et al. ICLR 2023)")


# ---------------------------------------------------------------------------------------------- regularisers
def igr_penalty_gradient(h: float = 0.1,
                         penalty: Callable[..., Tensor] = igr_penalty) -> TheoremCheck:
    r""":math:`\nabla_\theta\,\mathrm{igr\_penalty}(E, \theta, h) = \tfrac h2H g` on the valley (closed-form
    :math:`H`, :math:`g`) to relative 1e-12."""
    x0 = np.array(VALLEY_START)
    theta = _t(x0).requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(penalty(lambda: valley_loss(theta), [theta], h), theta)
    ref = (h / 2.0) * valley_hessian(x0) @ valley_grad(x0)
    measured = float(np.linalg.norm(_np(grad) - ref) / np.linalg.norm(ref))
    return TheoremCheck("IGR penalty gradient is (h/2) H g", "grad (h/4)||grad E||^2 = (h/2) H grad E",
                        "Barrett & Dherin ICLR 2021 (coefficient h/4); spec 40 §3", measured, 1e-12,
                        measured <= 1e-12, details={"problem": "valley at (0.5, 0.3)", "method": "igr_penalty",
                                                    "comparison": "relative error <= 1e-12"})


def igr_fd_slope(scheme: str = "forward", h: float = 0.1, rhos: Sequence[float] = (1e-2, 5e-3, 2.5e-3, 1.25e-3),
                 expected: float | None = None) -> TheoremCheck:
    r"""F-GR (:func:`~optlib.drift.igr_penalty_grad_fd`) vs :math:`\tfrac h2Hg` (closed form): error slope in the
    shift length :math:`\rho`: 1 (forward), 2 (central), :math:`\pm0.1`."""
    expected = float(expected if expected is not None else (1 if scheme == "forward" else 2))
    x0 = np.array(VALLEY_START)
    ref = (h / 2.0) * valley_hessian(x0) @ valley_grad(x0)
    theta = _t(x0).requires_grad_(True)
    errors = [float(np.linalg.norm(_np(igr_penalty_grad_fd(lambda: valley_loss(theta), [theta], h, rho=rho,
                                                           scheme=scheme)[0]) - ref)) for rho in rhos]
    return _slope_check(f"F-GR {scheme} difference order", f"||FD - (h/2) H g|| = O(rho^{expected:g})", rhos, errors,
                        expected, 0.0, {"problem": "valley at (0.5, 0.3)", "method": f"igr_penalty_grad_fd ({scheme})"},
                        source="Karakida et al. ICML 2022 (F-GR); derived")


def _game_losses() -> tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]]:
    def loss1(phi: Tensor, theta: Tensor) -> Tensor:
        return (phi * theta).sum() + 0.25 * (phi**4).sum() + (torch.sin(phi) * theta**2).sum()

    def loss2(phi: Tensor, theta: Tensor) -> Tensor:
        return -(phi * theta).sum() + 0.5 * (theta**2).sum() + 0.2 * (torch.cos(theta) * phi**2).sum()

    return loss1, loss2


def game_penalties_match_flow(mode: str = "simultaneous", alpha: float = 1.0, lam: float = 0.5, h: float = 0.1,
                              penalties: Callable[..., Any] = game_drift_penalties) -> TheoremCheck:
    r"""For :math:`f = -\nabla_\varphi L_1`, :math:`g = -\nabla_\theta L_2`: the game flow (directional derivatives
    of :math:`f, g`) equals :math:`(-\alpha\nabla_\varphi(L_1 + R^\varphi), -\lambda\nabla_\theta(L_2 +
    R^\theta))` with the regularisers of :func:`~optlib.drift.game_drift_penalties` (double backward), relative
    1e-12: two independent computations of the same drift."""
    loss1, loss2 = _game_losses()
    phi0 = _t([0.3, -0.2])
    theta0 = _t([0.5, 0.1])

    def f(phi: Tensor, theta: Tensor) -> Tensor:
        p = phi.detach().requires_grad_(True) if not phi.requires_grad else phi
        with torch.enable_grad():
            return -torch.autograd.grad(loss1(p, theta), p, create_graph=True)[0]

    def g(phi: Tensor, theta: Tensor) -> Tensor:
        q = theta.detach().requires_grad_(True) if not theta.requires_grad else theta
        with torch.enable_grad():
            return -torch.autograd.grad(loss2(phi, q), q, create_graph=True)[0]

    flow = game_flow(f, g, alpha, lam, h, mode, phi_dim=2)
    fd_phi, fd_theta = flow.field(phi0, theta0)
    phi = phi0.clone().requires_grad_(True)
    theta = theta0.clone().requires_grad_(True)
    with torch.enable_grad():
        l1, l2 = loss1(phi, theta), loss2(phi, theta)
        pen = penalties(l1, l2, phi, theta, alpha, lam, h, mode)
        gp = torch.autograd.grad(l1 + pen.phi_total(), phi, retain_graph=True)[0]
        gt = torch.autograd.grad(l2 + pen.theta_total(), theta)[0]
    want = torch.cat([-alpha * gp, -lam * gt]).detach()
    got = torch.cat([fd_phi, fd_theta])
    measured = float((got - want).norm() / want.norm())
    return TheoremCheck(f"game drift regularisers reproduce the {mode} flow",
                        "-(alpha, lam) * grad(L + R) = modified game flow", "Rosca et al. ICML 2021; spec 40 §6",
                        measured, 1e-12, measured <= 1e-12,
                        details={"problem": "2+2-D non-linear game", "method": f"game_drift_penalties ({mode})",
                                 "comparison": "relative difference <= 1e-12"})


# ---------------------------------------------------------------------------------------------- table
def drift_table(quick: bool = True) -> list[TheoremCheck]:
    """Every drift statement on its problem (``quick=False`` adds the second-order correction and more regimes)."""
    rows = [local_error_slope("gradient"), local_error_slope("igr"), mlp_local_error_slope("igr"),
            global_error_slope("gradient"), global_error_slope("igr"),
            principal_flow_exact(), qualitative_regimes(),
            qualitative_regimes(kind_factory("gradient"), "gradient", expected=1),
            qualitative_regimes(kind_factory("igr"), "igr", expected=1),
            divergence_onset(),
            bilinear_growth_slope(), alternating_bounded(),
            game_local_error_slope("simultaneous"), game_local_error_slope("alternating"),
            sgd_epoch_slope(against="sgd"), sgd_epoch_slope(against="gradient"),
            momentum_root_slope(),
            igr_penalty_gradient(), igr_fd_slope("forward"), igr_fd_slope("central"),
            game_penalties_match_flow("simultaneous"), game_penalties_match_flow("alternating")]
    if not quick:
        rows += [local_error_slope("igr2"), mlp_local_error_slope("gradient"), principal_flow_exact(h=0.3, eigenvalues=(0.5, 4.0, 6.0, 9.0)),
                 momentum_root_slope(beta=0.2)]
    return rows
