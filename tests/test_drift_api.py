"""optlib.drift's API and its answers to bad input (the orders of accuracy are in tests/theorems/test_drift.py;
this file has its own name because pytest imports test modules by base name)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import optlib.drift as drift
from optlib.drift import (
    DriftExpansionWarning,
    IntegrationError,
    PrincipalFlowTooLarge,
    drift_from_flow,
    edge_of_stability_ratio,
    game_drift_penalties,
    game_flow,
    igr_penalty,
    igr_penalty_grad_fd,
    integrate,
    lambda_max,
    modified_flow,
    module_loss,
    principal_coefficients,
    principal_flow,
)

F64 = torch.float64


def quadratic(eigenvalues):
    A = torch.diag(torch.tensor(eigenvalues, dtype=F64))
    return A, (lambda th: 0.5 * th @ (A @ th))


def tiny_mlp():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).to(F64)
    X = torch.randn(8, 3, dtype=F64)
    y = torch.randn(8, 1, dtype=F64)
    return model, X, y


# ------------------------------------------------------------------------------------- flows
def test_flows_on_a_quadratic_are_closed_form():
    A, loss = quadratic([1.0, 3.0])
    th = torch.tensor([1.0, -2.0], dtype=F64)
    g = A @ th
    h, beta = 0.1, 0.4
    assert torch.allclose(modified_flow(loss, "ngf", h)(th), -g)
    assert torch.allclose(modified_flow(loss, "igr", h)(th), -g - h / 2 * A @ g)
    assert torch.allclose(modified_flow(loss, "igr2", h)(th), -g - h / 2 * A @ g - h**2 / 3 * A @ A @ g)
    expect = -(g + h * (1 + beta) / (2 * (1 - beta) ** 2) * A @ g) / (1 - beta)
    assert torch.allclose(modified_flow(loss, "momentum", h, beta=beta)(th), expect)


def test_sgd_flow_is_the_gradient_of_the_sgd_modified_loss():
    A, loss_a = quadratic([1.0, 3.0])
    B, loss_b = quadratic([2.0, 0.5])
    th = torch.tensor([0.3, 0.7], dtype=F64)
    h = 0.05
    flow = modified_flow(None, "sgd", h, batches=[loss_a, loss_b])
    ga, gb = A @ th, B @ th
    expect = -(ga + gb) / 2 - h / 4 * (A @ ga + B @ gb)
    assert torch.allclose(flow(th), expect)
    assert flow.m == 2


def test_flows_work_on_a_module_through_module_loss():
    model, X, y = tiny_mlp()
    loss, theta0 = module_loss(model, lambda out: torch.nn.functional.mse_loss(out, y), X)
    H = drift.dense_hessian(loss, theta0)
    g = drift.gradient(loss, theta0)
    v = modified_flow(loss, "igr", 0.01)(theta0)
    assert torch.allclose(v, -g - 0.005 * H @ g, atol=1e-12)
    assert torch.allclose(drift.hvp(loss, theta0, g), H @ g, atol=1e-12)
    assert lambda_max(loss, theta0, steps=theta0.numel()) == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]),
                                                                           rel=1e-9)


def test_lambda_max_over_module_parameters_matches_the_flat_version():
    model, X, y = tiny_mlp()
    loss, theta0 = module_loss(model, lambda out: torch.nn.functional.mse_loss(out, y), X)
    params = list(model.parameters())
    lam_params = lambda_max(lambda: torch.nn.functional.mse_loss(model(X), y), params, steps=theta0.numel())
    assert lam_params == pytest.approx(lambda_max(loss, theta0, steps=theta0.numel()), rel=1e-9)
    assert edge_of_stability_ratio(0.5, lam_params) == pytest.approx(0.25 * lam_params)


@pytest.mark.parametrize("args,message", [
    (("nope", 0.1), "unknown modified-flow kind"),
    (("igr", 0.0), "must be positive"),
    (("igr", float("nan")), "must be positive"),
    (("momentum", 0.1), "needs beta"),
    (("igr", 0.1, 0.5), "only used by kind='momentum'"),
    (("sgd", 0.1), "needs batches"),
])
def test_modified_flow_rejects_bad_input(args, message):
    _, loss = quadratic([1.0])
    with pytest.raises(ValueError, match=message):
        modified_flow(loss, *args)


def test_modified_flow_hands_principal_to_principal_flow():
    _, loss = quadratic([1.0, 3.0])
    flow = modified_flow(loss, "pf", 0.5)
    assert isinstance(flow, drift.PrincipalFlow) and flow.h == 0.5
    with pytest.raises(ValueError, match="neither beta nor batches"):
        modified_flow(loss, "principal", 0.5, beta=0.3)


def test_momentum_beta_out_of_range():
    _, loss = quadratic([1.0])
    with pytest.raises(ValueError, match="0 <= beta < 1"):
        modified_flow(loss, "momentum", 0.1, beta=1.0)


def test_sgd_loss_must_be_the_mean_of_the_batches():
    _, la = quadratic([1.0, 2.0])
    _, lb = quadratic([3.0, 1.0])
    flow = modified_flow(la, "sgd", 0.1, batches=[la, lb])
    with pytest.raises(ValueError, match="not the mean of the minibatch losses"):
        flow(torch.ones(2, dtype=F64))


def test_loss_must_return_a_scalar():
    flow = modified_flow(lambda th: th * 2.0, "igr", 0.1)
    with pytest.raises(ValueError, match="scalar tensor"):
        flow(torch.ones(2, dtype=F64))


# ------------------------------------------------------------------------------------- principal flow
def test_principal_coefficients_signs_and_limits():
    lam = torch.tensor([0.0, 1.0, 3.0, 4.0, 5.0, -1.0], dtype=F64)
    c = principal_coefficients(lam, 0.5, part="real")
    assert c[0] == pytest.approx(-1.0)
    assert c[1] < -1.0 and c[2] < 0 and c[3] == pytest.approx(0.0, abs=1e-15) and c[4] > 0
    assert -1.0 < c[5] < 0.0
    cc = principal_coefficients(lam, 0.5)
    assert cc[4].imag == pytest.approx(math.pi / 2.5) and cc[1].imag == 0.0
    assert cc[2].real == pytest.approx(math.log(0.5) / 1.5)


def test_principal_coefficient_at_h_lambda_one_is_refused():
    with pytest.raises(ValueError, match="h \\* lambda = 1"):
        principal_coefficients(torch.tensor([2.0], dtype=F64), 0.5)


def test_principal_flow_refuses_large_models_naming_size_and_limit():
    flow = principal_flow(lambda th: (th**2).sum(), 0.1, max_dim=5)
    with pytest.raises(PrincipalFlowTooLarge, match="6 parameters exceed the limit max_dim = 5"):
        flow(torch.ones(6, dtype=F64))


def test_principal_flow_reduces_to_igr_for_small_steps():
    A, loss = quadratic([1.0, 2.0])
    th = torch.tensor([1.0, 1.0], dtype=F64)
    h = 1e-3
    pf = principal_flow(loss, h, part="real")(th)
    igr = modified_flow(loss, "igr", h)(th)
    assert torch.allclose(pf, igr, atol=1e-6)


# ------------------------------------------------------------------------------------- integrate
def test_integrate_matches_the_exponential():
    out = integrate(lambda th: -th, torch.tensor([1.0, 2.0], dtype=F64), [0.0, 0.5, 1.0])
    ref = torch.tensor([1.0, 2.0], dtype=F64) * torch.exp(-torch.tensor([[0.0], [0.5], [1.0]], dtype=F64))
    assert out.shape == (3, 2) and torch.allclose(out, ref, rtol=1e-11)


def test_integrator_failure_names_scipy_message_and_time():
    with pytest.raises(IntegrationError) as err:
        integrate(lambda th: th**2, torch.tensor([1.0], dtype=F64), 2.0)  # blows up at t = 1
    assert 0.9 < err.value.t_reached <= 1.0 + 1e-6
    assert "failed at t = " in str(err.value) and err.value.message


def test_integrator_refuses_non_finite_right_hand_sides():
    def rhs(th):
        return torch.full_like(th, float("nan")) if float(th[0]) > 1.5 else torch.ones_like(th)
    with pytest.raises(IntegrationError, match="non-finite") as err:
        integrate(rhs, torch.tensor([1.0], dtype=F64), 3.0)
    assert 0.0 < err.value.t_reached < 1.0


@pytest.mark.parametrize("t,message", [([1.0, 0.5], "strictly increasing"), (-1.0, ">= 0"),
                                       (float("inf"), "finite"), ([], "at least one")])
def test_integrate_rejects_bad_times(t, message):
    with pytest.raises(ValueError, match=message):
        integrate(lambda th: -th, torch.ones(1, dtype=F64), t)


def test_integrate_rejects_a_right_hand_side_of_the_wrong_shape():
    with pytest.raises(ValueError, match="shape of theta0"):
        integrate(lambda th: th[:1], torch.ones(2, dtype=F64), 1.0)


# ------------------------------------------------------------------------------------- diagnostics
def test_drift_from_flow_warns_with_the_measured_h_lambda_max():
    A, loss = quadratic([1.0, 4.0])
    h = 0.2
    xs = [torch.tensor([1.0, 1.0], dtype=F64)]
    for _ in range(3):
        xs.append(xs[-1] - h * (A @ xs[-1]))
    with pytest.warns(DriftExpansionWarning, match="h \\* lambda_max = 0.8"):
        d = drift_from_flow(xs, principal_flow(loss, h), h, loss=loss)
    assert d.shape == (4,) and np.max(d) < 1e-9  # the PF is exact on a quadratic, even where the warning applies


def test_drift_from_flow_silent_in_the_valid_range():
    A, loss = quadratic([1.0, 4.0])
    h = 0.02
    xs = [torch.tensor([1.0, 1.0], dtype=F64)]
    for _ in range(3):
        xs.append(xs[-1] - h * (A @ xs[-1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d_igr = drift_from_flow(xs, modified_flow(loss, "igr", h), h, loss=loss)
        d_ngf = drift_from_flow(xs, modified_flow(loss, "gradient", h), h, loss=loss)
    assert d_igr[0] == 0.0 and 0 < d_igr[-1] < d_ngf[-1] / 5


# ------------------------------------------------------------------------------------- games and regularisers
def test_game_flow_needs_phi_dim_on_a_flat_state_and_a_known_mode():
    flow = game_flow(lambda p, t: -t, lambda p, t: p.clone(), 1.0, 1.0, 0.1)
    with pytest.raises(ValueError, match="phi_dim"):
        flow(torch.ones(2, dtype=F64))
    with pytest.raises(ValueError, match="unknown game update mode"):
        game_flow(lambda p, t: -t, lambda p, t: p, 1.0, 1.0, 0.1, mode="both")
    with pytest.raises(ValueError, match="alpha must be positive"):
        game_flow(lambda p, t: -t, lambda p, t: p, 0.0, 1.0, 0.1)


def test_bilinear_game_flow_is_the_closed_form():
    h = 0.2
    z = torch.tensor([1.0, 0.5], dtype=F64)
    sim = game_flow(lambda p, t: -t, lambda p, t: p.clone(), 1.0, 1.0, h, "sim", phi_dim=1)(z)
    alt = game_flow(lambda p, t: -t, lambda p, t: p.clone(), 1.0, 1.0, h, "alt", phi_dim=1)(z)
    assert torch.allclose(sim, torch.tensor([-0.5 + h / 2, 1.0 + h / 2 * 0.5], dtype=F64))
    assert torch.allclose(alt, torch.tensor([-0.5 + h / 2, 1.0 - h / 2 * 0.5], dtype=F64))


def test_zero_sum_simultaneous_interaction_ascends_the_other_players_gradient_norm():
    """E = phi^2 theta, L1 = E, L2 = -E: theta's drift is +(alpha lam h/4) grad_theta ||grad_phi E||^2, i.e. the
    interaction penalty's theta-gradient is -(alpha h/4) * 8 phi^2 theta (closed form)."""
    phi = torch.tensor(0.7, dtype=F64, requires_grad=True)
    theta = torch.tensor(-0.4, dtype=F64, requires_grad=True)
    E = phi**2 * theta
    alpha, lam, h = 1.0, 0.5, 0.1
    pen = game_drift_penalties(E, -E, phi, theta, alpha, lam, h, "simultaneous")
    (gt,) = torch.autograd.grad(pen.theta_interaction, theta)
    assert float(gt) == pytest.approx(-(alpha * h / 4) * 8 * 0.7**2 * -0.4, rel=1e-12)


def test_igr_penalty_rejects_params_without_grad():
    th = torch.ones(2, dtype=F64)
    with pytest.raises(ValueError, match="requires_grad"):
        igr_penalty(lambda: (th**2).sum(), [th], 0.1)


def test_fd_penalty_restores_the_parameters_bit_for_bit():
    model, X, y = tiny_mlp()
    before = [p.detach().clone() for p in model.parameters()]
    grads = igr_penalty_grad_fd(lambda: torch.nn.functional.mse_loss(model(X), y), list(model.parameters()), 0.1,
                                scheme="central")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    exact = torch.autograd.grad(igr_penalty(lambda: torch.nn.functional.mse_loss(model(X), y),
                                            list(model.parameters()), 0.1), list(model.parameters()))
    err = max(float((a - b).abs().max()) for a, b in zip(grads, exact))
    assert err < 1e-6
    with pytest.raises(ValueError, match="scheme"):
        igr_penalty_grad_fd(lambda: torch.nn.functional.mse_loss(model(X), y), list(model.parameters()), 0.1,
                            scheme="backward")


def test_optlib_drift_exports():
    assert set(drift.__all__) <= set(dir(drift))
    assert drift.KINDS == ("gradient", "igr", "igr2", "sgd", "momentum")
