"""The drift-adjusted learning rate (:mod:`optlib.optim.dal`) against closed forms on quadratics.

Statement (Rosca et al., TMLR 2023, DAL; the authors' code): with :math:`g = \\nabla E`, the step is
:math:`h = \\min(2(\\lVert g\\rVert/\\lVert Hg\\rVert)^p, h_{\\max})`. On :math:`E = \\tfrac12\\theta^\\top A\\theta`
the gradient is :math:`A\\theta` and :math:`Hg = A^2\\theta`, so :math:`p = 1` gives
:math:`h = 2\\lVert A\\theta\\rVert/\\lVert A^2\\theta\\rVert` (numpy, independently of the code), which is
:math:`2/\\lambda` when :math:`\\theta` is an eigenvector. Constants: ``A = diag(0.5, 3, 10)``, float64; tolerance
1e-12 relative for the exact product, 1e-9 for the finite difference (exact on a quadratic up to rounding).
"Would catch": a rule with the wrong factor (``Hg`` doubled) run through the same step fails the same check.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optlib.optim import DriftAdjustedLR, dal_step_size

EIGS = np.array([0.5, 3.0, 10.0])


def quadratic(theta0):
    """A parameter at ``theta0`` and the closure of E = theta^T A theta / 2 (A = diag(EIGS)), float64."""
    theta = nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    a = torch.tensor(EIGS)

    def loss():
        return 0.5 * (a * theta * theta).sum()

    return theta, loss


def dal_lr_on_quadratic(theta0, cls=DriftAdjustedLR, **options) -> float:
    theta, loss = quadratic(theta0)
    opt = torch.optim.SGD([theta], lr=0.01)
    dal = cls(opt, **options)
    loss().backward()
    dal.step(loss)
    return opt.param_groups[0]["lr"]


def closed_form(theta0, power=1.0, max_lr=5.0) -> float:
    g = EIGS * np.asarray(theta0)
    hg = EIGS * g
    return min(2.0 / (np.linalg.norm(hg) / np.linalg.norm(g)) ** power, max_lr)


class DoubledProduct(DriftAdjustedLR):
    """Wrong on purpose: reports 2Hg (a factor error in the product)."""

    def hessian_grad_product(self, closure, params):
        return [2 * h for h in super().hessian_grad_product(closure, params)]


@pytest.mark.parametrize("hvp", ["exact", "finite_difference"])
def test_eigenvector_gives_two_over_lambda(hvp):
    tol = 1e-12 if hvp == "exact" else 1e-9
    for i, lam in enumerate(EIGS):
        if 2 / lam > 5:
            continue  # capped, see test_cap
        theta0 = np.zeros(3)
        theta0[i] = 0.7
        assert dal_lr_on_quadratic(theta0, hvp=hvp) == pytest.approx(2 / lam, rel=tol)
    # would catch: the doubled product gives 1/lambda on the same inputs
    theta0 = np.array([0.0, 0.0, 0.7])
    assert dal_lr_on_quadratic(theta0, cls=DoubledProduct, hvp=hvp) != pytest.approx(2 / EIGS[2], rel=0.1)


@pytest.mark.parametrize("hvp", ["exact", "finite_difference"])
@pytest.mark.parametrize("power", [0.5, 1.0, 2.0])
def test_general_direction_matches_the_closed_form(hvp, power):
    theta0 = [0.3, -1.1, 0.4]
    tol = 1e-12 if hvp == "exact" else 1e-9
    assert dal_lr_on_quadratic(theta0, hvp=hvp, power=power) == pytest.approx(closed_form(theta0, power), rel=tol)


def test_cap_and_power_zero():
    theta0 = np.array([0.9, 0.0, 0.0])  # 2/0.5 = 4 < 5; with max_lr 1.5 the cap binds
    assert dal_lr_on_quadratic(theta0, max_lr=1.5) == pytest.approx(1.5, rel=1e-15)
    assert dal_lr_on_quadratic(theta0) == pytest.approx(4.0, rel=1e-12)
    theta, loss = quadratic([0.0, 0.0, 0.0])  # zero curvature along g would give an infinite rate: the cap
    assert dal_step_size(1.0, 0.0, base_lr=0.1, max_lr=5.0) == 5.0
    assert dal_step_size(1.0, 4.0, power=0.0, base_lr=0.1) == 0.1  # p = 0: plain GD at the base rate

    def never():
        raise AssertionError("p = 0 must not evaluate the loss")

    opt = torch.optim.SGD([theta], lr=0.05)
    dal = DriftAdjustedLR(opt, power=0.0)
    loss().backward()
    assert dal.step(never) == 1.0 and opt.param_groups[0]["lr"] == 0.05


def test_window_and_multiplier_on_several_groups():
    theta, loss = quadratic([0.3, -1.1, 0.4])
    other = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = torch.optim.SGD([{"params": [theta], "lr": 0.01}, {"params": [other], "lr": 0.03}])
    dal = DriftAdjustedLR(opt, start=1, stop=3, hvp="exact")
    lrs = []
    for t in range(5):
        opt.zero_grad()
        loss().backward()
        expected = closed_form(theta.detach().numpy())
        dal.step(loss)
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        if t == 2:  # inside the window
            assert lrs[-1][0] == pytest.approx(expected, rel=1e-12)
            assert lrs[-1][1] == pytest.approx(3 * expected, rel=1e-12)  # the same multiplier on every group
    assert lrs[0] == [0.01, 0.03] and lrs[1] == [0.01, 0.03]  # t = 0, 1: outside 1 < t < 3
    assert lrs[3] == [0.01, 0.03] and lrs[4] == [0.01, 0.03]  # t = 3, 4: outside


def test_dal_gd_is_stable_where_constant_gd_diverges():
    """hλ_max = 2.5 with the constant rate 0.25: GD grows along the top eigenvector (loss x1e6 in 300 steps).
    DAL-1 from the same start never increases the loss: the components below the top converge and the top one
    is held at the edge h = 2/λ_max (factor 1 - hλ = -1: it flips sign and keeps its size)."""
    theta0 = [0.3, -1.1, 0.4]
    curves = {}
    for name in ("constant", "dal"):
        theta, loss = quadratic(theta0)
        opt = torch.optim.SGD([theta], lr=0.25)
        dal = DriftAdjustedLR(opt, hvp="exact") if name == "dal" else None
        curve = []
        for _ in range(300):
            opt.zero_grad()
            value = loss()
            curve.append(float(value.detach()))
            value.backward()
            if dal is not None:
                dal.step(loss)
            opt.step()
        curves[name] = np.array(curve)
        final = theta.detach().numpy()
    assert curves["constant"][-1] / curves["constant"][0] > 1e6
    dal_curve = curves["dal"]
    assert np.all(np.diff(dal_curve) <= 1e-12 * dal_curve[0])
    assert np.all(np.abs(final[:2]) < 1e-12)
    assert dal_curve[-1] == pytest.approx(0.5 * EIGS[2] * final[2] ** 2, rel=1e-9)
    assert dal_curve[-1] == pytest.approx(dal_curve[-2], rel=1e-9)  # the period-2 orbit at the edge


def test_finite_difference_tracks_the_exact_product_on_an_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x, y = torch.randn(32, 5, dtype=torch.float64), torch.randint(0, 3, (32,))
    out = {}
    for hvp in ("exact", "finite_difference"):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        dal = DriftAdjustedLR(opt, hvp=hvp)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        before = [p.detach().clone() for p in model.parameters()], [p.grad.clone() for p in model.parameters()]
        dal.step(lambda: F.cross_entropy(model(x), y))
        out[hvp] = dal.last_ratio
        assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before[0]))  # parameters restored
        assert all(torch.equal(p.grad, q) for p, q in zip(model.parameters(), before[1]))  # .grad untouched
    # a forward difference errs by O(probe length): about 1e-3 relative with the authors' 0.01, 1e-5 with 1e-4
    assert out["finite_difference"] == pytest.approx(out["exact"], rel=5e-3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dal = DriftAdjustedLR(opt, fd_scale=1e-4)
    dal.step(lambda: F.cross_entropy(model(x), y))
    assert dal.last_ratio == pytest.approx(out["exact"], rel=5e-5)


def _mlp_run(opt_factory, steps, state=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    opt = opt_factory(model)
    dal = DriftAdjustedLR(opt)
    if state is not None:
        model.load_state_dict(state[0])
        opt.load_state_dict(state[1])
        dal.load_state_dict(state[2])
    for k in steps:
        gen = torch.Generator().manual_seed(k)
        x, y = torch.randn(16, 4, generator=gen), torch.randint(0, 2, (16,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        dal.step(lambda x=x, y=y: F.cross_entropy(model(x), y))
        opt.step()
    return model, opt, dal


def _saved(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer)  # weights_only=True by default


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_state_dict_round_trip_continues_exactly(name):
    factories = {"sgd": lambda m: torch.optim.SGD(m.parameters(), lr=0.05),
                 "momentum": lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9),
                 "adam": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3)}
    model, opt, dal = _mlp_run(factories[name], range(3))
    state = _saved((model.state_dict(), opt.state_dict(), dal.state_dict()))
    model, opt, dal = _mlp_run(factories[name], range(6))  # the uninterrupted run
    resumed, opt2, dal2 = _mlp_run(factories[name], range(3, 6), state=state)
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    assert dal.state_dict() == dal2.state_dict()
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in opt2.param_groups]


def test_bad_input_is_named():
    theta, loss = quadratic([1.0, 1.0, 1.0])
    opt = torch.optim.SGD([theta], lr=0.1)
    with pytest.raises(ValueError, match="unknown hvp mode 'hessian'"):
        DriftAdjustedLR(opt, hvp="hessian")
    with pytest.raises(ValueError, match="power must be a finite number >= 0"):
        DriftAdjustedLR(opt, power=-1)
    with pytest.raises(ValueError, match="max_lr must be a finite number > 0"):
        DriftAdjustedLR(opt, max_lr=0.0)
    with pytest.raises(ValueError, match="window start < t < stop is empty"):
        DriftAdjustedLR(opt, start=3, stop=4)
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        DriftAdjustedLR([theta])
    dal = DriftAdjustedLR(opt)
    with pytest.raises(ValueError, match="no parameter has a gradient"):
        dal.step(loss)
    loss().backward()
    theta.grad[1] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite gradient for param_groups\[0\]\['params'\]\[0\]"):
        dal.step(loss)
    assert opt.param_groups[0]["lr"] == 0.1 and dal.steps == 0  # nothing changed
    with pytest.raises(ValueError, match="grad_norm must be a finite positive number"):
        dal_step_size(0.0, 1.0, base_lr=0.1)
    with pytest.raises(ValueError, match="not a DriftAdjustedLR state: missing base_lrs"):
        dal.load_state_dict({"steps": 1})
