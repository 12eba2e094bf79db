"""Proofs as tests for Muon and Drop-Muon (spec 20 §5 T1-T6 and Parity (d)).

Every bound is derived in :mod:`optlib.theory.drop_muon` (the paper's constants are not known, spec 95 §2);
each check's ``source`` says so. T1/T1b/T2 also run in the configurations people use (Keller and Moonshot shape
scaling on non-square layers, decoupled weight decay, EMA/sum/Nesterov momentum with beta < 1); parity (d) also
runs through ``progressive_forward`` on real ``nn.Module`` blocks with counted FLOPs. Each statement has a "would
catch" twin: a deliberately wrong variant of the optimizer (a subclass of :class:`optlib.optim.Muon` /
:class:`optlib.optim.DropMuon` differing in one place), a monkeypatched production function (``lr_scale``,
``muon_directions``, ``progressive_forward``, ``block_costs``, ``BlockCosts.backward``) or a wrong prediction must
make the same check fail. float64 throughout (one parity run uses bfloat16 Newton–Schulz).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import optlib.optim.drop_muon as drop_muon_module
import optlib.optim.muon as muon_module
import optlib.optim.progressive as progressive_module
from optlib.optim.drop_muon import DropMuon
from optlib.optim.muon import Muon
from optlib.problems.block_networks import block_cnn
from optlib.problems.layered import exponential_blocks, layered_quadratic, log_sum_exp_blocks
from optlib.theory.drop_muon import (
    cost_accounting,
    cost_model_contraction,
    cost_tradeoff,
    deep_linear_rate,
    descent_rate,
    drop_muon_table,
    expected_descent,
    frozen_layers_untouched,
    l0l1_decrease,
    muon_trajectory,
    one_step_decrease,
    optimal_radius_decrease,
    progressive_parity,
)

# ------------------------------------------------------------------------------------------------
# Deliberately wrong variants (each differs from DropMuon in one place)
# ------------------------------------------------------------------------------------------------


class AscentDropMuon(DropMuon):
    """Steps along +UV^T (wrong sign)."""

    def radius(self, group, p, D):
        return -super().radius(group, p, D)


class TenfoldRadiusDropMuon(DropMuon):
    """Radius 10x the rule's."""

    def radius(self, group, p, D):
        return 10.0 * super().radius(group, p, D)


class ReversedCutoffDropMuon(DropMuon):
    """Updates the layers <= s instead of >= s (freezes the wrong side)."""

    def is_active(self, group, cutoff):
        return group["layer"] <= cutoff


class ZeroFillDropMuon(DropMuon):
    """Keller's distributed-Muon habit: a missing gradient becomes zeros, and every layer steps."""

    def is_active(self, group, cutoff):
        for p in group["params"]:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        return True


class FrobeniusRadiusDropMuon(DropMuon):
    """The "smooth" radius with the Frobenius norm of D instead of its nuclear norm."""

    def radius(self, group, p, D):
        if group["radius"] == "smooth":
            return float(torch.linalg.matrix_norm(D)) / group["L"]
        return super().radius(group, p, D)


class CoupledWeightDecayMuon(Muon):
    """L2-style (coupled) weight decay: wd * W added to the gradient before the momentum, no decoupled shrink."""

    def _muon_group_step(self, group, group_index, all_finite=None):
        wd = group["weight_decay"]
        for p in group["params"]:
            if p.grad is not None:
                p.grad.add_(p, alpha=wd)
        group["weight_decay"] = 0.0
        try:
            super()._muon_group_step(group, group_index, all_finite)
        finally:
            group["weight_decay"] = wd


class NSCoefficientMuon(Muon):
    """Newton-Schulz with c = 2.0 instead of Keller's 2.0315."""

    def add_param_group(self, param_group):
        param_group = {**param_group, "ns_coefficients": (3.4445, -4.7750, 2.0)}
        super().add_param_group(param_group)


def _transposed_keller(shape, adjust_lr, _orig=muon_module.lr_scale):
    """Keller's scaling with rows and columns swapped: sqrt(max(1, n/m))."""
    if adjust_lr == "keller":
        return math.sqrt(max(1, shape[-1] / shape[-2]))
    return _orig(shape, adjust_lr)


def _min_side_moonshot(shape, adjust_lr, _orig=muon_module.lr_scale):
    """Moonshot's scaling with min instead of max: 0.2 sqrt(min(m, n))."""
    if adjust_lr == "moonshot":
        return 0.2 * math.sqrt(min(shape[-2], shape[-1]))
    return _orig(shape, adjust_lr)


def _nesterov_g_plus_beta_m(grads, bufs, *, momentum, nesterov, style, _orig=muon_module.muon_directions):
    """EMA buffer with the sum form's Nesterov direction g + beta M (a common mix-up)."""
    if style == "ema" and nesterov:
        torch._foreach_lerp_(bufs, grads, 1.0 - momentum)
        return list(torch._foreach_add(grads, bufs, alpha=momentum))
    return _orig(grads, bufs, momentum=momentum, nesterov=nesterov, style=style)


def _ema_weights_swapped(grads, bufs, *, momentum, nesterov, style, _orig=muon_module.muon_directions):
    """M <- (1 - beta) M + beta g under the name of Keller's EMA (P1)."""
    if style == "ema":
        torch._foreach_lerp_(bufs, grads, momentum)
        return list(torch._foreach_lerp(grads, bufs, momentum)) if nesterov else list(bufs)
    return _orig(grads, bufs, momentum=momentum, nesterov=nesterov, style=style)


def _not_truncating(blocks, x, s):
    """progressive_forward that runs every block with autograd (validates s, saves nothing)."""
    for blk in blocks:
        x = blk(x)
    return x


def _assert_holds(check):
    assert check.holds, str(check) + f" details={dict(check.details)}"
    assert "derived" in check.source or "spec 20" in check.source


def _assert_holds_any(check):
    """For checks against the references' update rules (their source names the references)."""
    assert check.holds, str(check) + f" details={dict(check.details)}"


# ------------------------------------------------------------------------------------------------
# T1 exact one-step decrease
# ------------------------------------------------------------------------------------------------


def test_t1_exact_one_step_decrease_svd():
    """SVD, float64: the derived identity holds to 1e-10 relative on every layer."""
    check = one_step_decrease(t=0.1)
    _assert_holds(check)
    assert check.bound == 1e-10


@pytest.mark.parametrize("t", [0.02, 0.3])
def test_t1_other_radii(t):
    _assert_holds(one_step_decrease(layered_quadratic(((3, 7), (5, 5)), seed=7), t=t))


def test_t1_newton_schulz_within_stated_tolerance():
    """NS-5 (Keller coefficients, float64 iteration): within the 10% relative tolerance of spec 20 (P4)."""
    check = one_step_decrease(t=0.1, orthogonalizer="newton-schulz")
    _assert_holds(check)
    assert check.measured > 1e-6  # NS-5 is not the exact polar factor


def test_t1_would_catch_wrong_sign():
    assert not one_step_decrease(t=0.1, optimizer_cls=AscentDropMuon).holds


NON_SQUARE = ((6, 3), (3, 7), (5, 5))
T1_RUN = dict(t=0.05, weight_decay=0.5, momentum=0.9, nesterov=True, new_weight=None)


@pytest.mark.parametrize("optimizer_cls", [Muon, DropMuon])
@pytest.mark.parametrize("adjust_lr", ["keller", "moonshot"])
def test_t1_scaled_lr_decoupled_wd_nesterov(optimizer_cls, adjust_lr):
    """T1 as people run Muon: shape scaling on non-square layers, decoupled wd, EMA-Nesterov beta = 0.9."""
    check = one_step_decrease(layered_quadratic(NON_SQUARE, seed=13), optimizer_cls=optimizer_cls,
                              adjust_lr=adjust_lr, **T1_RUN)
    _assert_holds(check)
    assert check.bound == 1e-10


def test_t1_would_catch_coupled_weight_decay():
    assert not one_step_decrease(layered_quadratic(NON_SQUARE, seed=13), optimizer_cls=CoupledWeightDecayMuon,
                                 adjust_lr="keller", **T1_RUN).holds


def test_t1_would_catch_transposed_keller_scaling(monkeypatch):
    monkeypatch.setattr(muon_module, "lr_scale", _transposed_keller)
    assert not one_step_decrease(layered_quadratic(NON_SQUARE, seed=13), optimizer_cls=Muon, adjust_lr="keller",
                                 **T1_RUN).holds


def test_t1_would_catch_min_side_moonshot_scaling_in_drop_muon(monkeypatch):
    monkeypatch.setattr(drop_muon_module, "lr_scale", _min_side_moonshot)
    assert not one_step_decrease(layered_quadratic(NON_SQUARE, seed=13), optimizer_cls=DropMuon,
                                 adjust_lr="moonshot", **T1_RUN).holds


# ------------------------------------------------------------------------------------------------
# T1b closed-form trajectory (momentum beta < 1, scalings, weight decay)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["ema", "sum"])
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjust_lr", ["keller", "moonshot"])
def test_t1b_muon_trajectory_closed_form(style, nesterov, adjust_lr):
    _assert_holds_any(muon_trajectory(momentum_style=style, nesterov=nesterov, adjust_lr=adjust_lr))


@pytest.mark.parametrize("kwargs", [
    dict(),  # DropMuon's constant radius = Muon's update
    dict(momentum_style="ema", radius="smooth", weight_decay=0.0),  # the radius reads ||D||_*: the buffer's scale
    dict(momentum_style="sum", radius="smooth", weight_decay=0.0),
    dict(new_weight=0.3, radius="smooth", weight_decay=0.0),  # the paper's form
])
def test_t1b_drop_muon_trajectory_closed_form(kwargs):
    _assert_holds_any(muon_trajectory(optimizer_cls=DropMuon, **kwargs))


def test_t1b_newton_schulz_matches_keller_iteration():
    _assert_holds_any(muon_trajectory(orthogonalizer="newton-schulz"))


def test_t1b_would_catch_nesterov_g_plus_beta_m_on_ema(monkeypatch):
    monkeypatch.setattr(muon_module, "muon_directions", _nesterov_g_plus_beta_m)
    assert not muon_trajectory().holds


def test_t1b_would_catch_swapped_ema_weights(monkeypatch):
    monkeypatch.setattr(muon_module, "muon_directions", _ema_weights_swapped)
    assert not muon_trajectory(nesterov=False).holds


def test_t1b_would_catch_coupled_weight_decay():
    assert not muon_trajectory(optimizer_cls=CoupledWeightDecayMuon).holds


def test_t1b_would_catch_transposed_keller_scaling(monkeypatch):
    monkeypatch.setattr(muon_module, "lr_scale", _transposed_keller)
    assert not muon_trajectory().holds


def test_t1b_would_catch_wrong_newton_schulz_coefficient():
    check = muon_trajectory(orthogonalizer="newton-schulz", optimizer_cls=NSCoefficientMuon)
    assert not check.holds


# ------------------------------------------------------------------------------------------------
# T2 optimal radius
# ------------------------------------------------------------------------------------------------


def test_t2_optimal_radius_decrease():
    check = optimal_radius_decrease()
    _assert_holds(check)
    assert check.details["equality_gap"] < 1e-10


def test_t2_would_catch_radius_times_ten():
    assert not optimal_radius_decrease(optimizer_cls=TenfoldRadiusDropMuon).holds


@pytest.mark.parametrize("optimizer_cls", [Muon, DropMuon])
@pytest.mark.parametrize("adjust_lr", ["keller", "moonshot"])
def test_t2_optimal_radius_with_lr_scaling(optimizer_cls, adjust_lr):
    check = optimal_radius_decrease(adjust_lr=adjust_lr, optimizer_cls=optimizer_cls)
    _assert_holds(check)
    assert check.details["equality_gap"] < 1e-10


def test_t2_would_catch_transposed_keller_scaling(monkeypatch):
    monkeypatch.setattr(muon_module, "lr_scale", _transposed_keller)
    assert not optimal_radius_decrease(adjust_lr="keller", optimizer_cls=Muon).holds


def test_t2_would_catch_frobenius_radius():
    assert not optimal_radius_decrease(optimizer_cls=FrobeniusRadiusDropMuon).holds


# ------------------------------------------------------------------------------------------------
# T3 expected descent under sampling
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [(0.5, 0.3, 0.2), "uniform"])
def test_t3_expected_descent_monte_carlo(p):
    check = expected_descent(p=p, n_draws=10_000)
    _assert_holds(check)
    freq = np.asarray(check.details["frequencies"])
    assert np.allclose(freq, check.details["p"], atol=4 * math.sqrt(0.25 / 10_000))


def test_t3_would_catch_q_ignored():
    assert not expected_descent(q=np.ones(3)).holds


def test_t3_would_catch_freezing_the_wrong_side():
    assert not expected_descent(optimizer_cls=ReversedCutoffDropMuon).holds


# ------------------------------------------------------------------------------------------------
# T4 rate on the deep linear network
# ------------------------------------------------------------------------------------------------


def test_t4_rate_with_problem_constants():
    check = descent_rate()
    _assert_holds(check)
    assert check.details["final_over_initial"] < 0.5  # the runs make progress
    assert check.measured > 1 - 1e-9  # equality in this setting: the bound is tight
    lhs, rhs = check.details["expected_form"]
    assert lhs <= 1.05 * rhs  # the expected form, up to Monte Carlo error


def test_t4_would_catch_frobenius_radius():
    check = descent_rate(optimizer_cls=FrobeniusRadiusDropMuon)
    assert not check.holds
    assert check.measured > 1.05


def test_t4_would_catch_wrong_sign():
    assert not descent_rate(optimizer_cls=AscentDropMuon).holds


def test_t4_would_catch_radius_times_ten():
    assert not descent_rate(optimizer_cls=TenfoldRadiusDropMuon).holds


def test_t4_would_catch_freezing_the_wrong_side():
    assert not descent_rate(optimizer_cls=ReversedCutoffDropMuon, p=(0.5, 0.3, 0.2)).holds


@pytest.mark.slow
def test_t4_diagnostic_deep_linear_network():
    """The deep linear network with L_i estimated along the run: a diagnostic (it cannot reject a Frobenius radius)."""
    check = deep_linear_rate(seeds=range(20), K=30)
    _assert_holds(check)
    assert check.details["telescoped_holds"]


# ------------------------------------------------------------------------------------------------
# T5 cost model
# ------------------------------------------------------------------------------------------------


def test_t5_full_updates_not_cost_optimal():
    check = cost_tradeoff()
    _assert_holds(check)
    assert check.details["p_star"][0] < 1.0


def test_t5_random_constants_with_fast_costly_input_layer():
    """Generic constants: the input layer converges fastest per update and costs most to backpropagate."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        rho = np.sort(rng.uniform(0.05, 0.6, 3))[::-1]
        costs = np.sort(rng.uniform(0.5, 4.0, 3))[::-1]
        _assert_holds(cost_tradeoff(rho, rng.uniform(1, 10, 3), costs, forward_cost=float(rng.uniform(0.5, 3))))


def test_t5_full_updates_optimal_when_input_layer_is_the_bottleneck():
    """The converse case of our model: when layer 0 is the slowest, p = e_1 wins (the check reports it)."""
    check = cost_tradeoff(rho=(0.1, 0.3, 0.3), delta0=(5.0, 5.0, 5.0))
    assert not check.holds
    assert check.details["p_star"][0] == pytest.approx(1.0)


def test_t5_premise_per_update_contraction():
    _assert_holds(cost_model_contraction())
    _assert_holds(cost_model_contraction(layered_quadratic(seed=11)))


def test_t5_premise_would_catch_radius_times_ten():
    assert not cost_model_contraction(optimizer_cls=TenfoldRadiusDropMuon).holds


def test_t5_would_catch_cost_model_without_backward_saving():
    assert not cost_tradeoff(step_cost=lambda s: 3.5 + 7.0).holds


@pytest.mark.parametrize("p", ["uniform", (0.2, 0.3, 0.5)])
def test_t5_cost_accounting_on_a_real_network(p):
    check = cost_accounting(p=p)
    _assert_holds(check)
    assert check.details["tradeoff"]["p_star"][0] < 1.0


def test_t5_would_catch_backward_cost_without_saving(monkeypatch):
    """Production BlockCosts.backward ignoring the cutoff (every step logged as a full backward)."""
    monkeypatch.setattr(progressive_module.BlockCosts, "backward",
                        lambda self, s: float(sum(self.weight_grad) + sum(self.input_grad[1:])))
    assert not cost_accounting().holds


def test_t5_would_catch_block_costs_without_input_gradients(monkeypatch):
    orig = progressive_module.block_costs

    def no_input_grad(blocks, x):
        c = orig(blocks, x)
        return progressive_module.BlockCosts(forward=c.forward, weight_grad=c.weight_grad,
                                             input_grad=tuple(0.0 for _ in c.forward))

    monkeypatch.setattr(progressive_module, "block_costs", no_input_grad)
    assert not cost_accounting().holds


def test_t5_would_catch_non_truncating_forward(monkeypatch):
    monkeypatch.setattr(progressive_module, "progressive_forward", _not_truncating)
    assert not cost_accounting().holds


# ------------------------------------------------------------------------------------------------
# T6 (L0, L1) radius
# ------------------------------------------------------------------------------------------------


def test_t6_l0l1_radius_exp_and_lse_blocks():
    check = l0l1_decrease()
    _assert_holds(check)
    for row in check.details["blocks"]:
        if row["exp_exact"] is not None:  # exp(u^T x): radius 1/||u||, decrease exactly (1 - 1/e) f
            assert row["actual"] == pytest.approx(row["exp_exact"], rel=1e-12)
            assert row["actual"] >= row["spec_bound"]  # 0.632 f >= f/2


def test_t6_exp_block_radius_is_one_over_norm_u():
    prob = exponential_blocks((4,), u_norms=(2.5,), seed=3)
    check = l0l1_decrease(prob)
    _assert_holds(check)
    assert check.details["blocks"][0]["radius"] == pytest.approx(1 / 2.5, rel=1e-12)


def test_t6_lse_blocks_alone():
    _assert_holds(l0l1_decrease(log_sum_exp_blocks((3, 5), seed=4)))


def test_t6_would_catch_wrong_sign():
    assert not l0l1_decrease(optimizer_cls=AscentDropMuon).holds


def test_t6_would_catch_radius_times_ten_on_lse():
    assert not l0l1_decrease(log_sum_exp_blocks((3, 5), seed=4), optimizer_cls=TenfoldRadiusDropMuon).holds


# ------------------------------------------------------------------------------------------------
# Parity (d) frozen layers
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"new_weight": 0.3}, {"orthogonalizer": "newton-schulz"}])
def test_parity_d_frozen_layers_untouched(options):
    _assert_holds(frozen_layers_untouched(**options))


def test_parity_d_would_catch_zero_filled_gradients():
    assert not frozen_layers_untouched(optimizer_cls=ZeroFillDropMuon).holds


@pytest.mark.parametrize("net", [None, "cnn"])
def test_parity_d_progressive_forward_on_module(net):
    check = progressive_parity(block_cnn(), cutoffs=(1, 2, 1)) if net == "cnn" else progressive_parity()
    _assert_holds(check)


def test_parity_d_progressive_forward_newton_schulz_bf16():
    """The configuration people run (NS-5 in bfloat16, EMA-Nesterov 0.95): frozen blocks still do not move."""
    _assert_holds(progressive_parity(orthogonalizer="newton-schulz", ns_dtype=torch.bfloat16, momentum=0.95))


def test_parity_d_would_catch_non_truncating_forward(monkeypatch):
    monkeypatch.setattr(progressive_module, "progressive_forward", _not_truncating)
    check = progressive_parity()
    assert not check.holds
    assert any(r["violations"]["frozen_grad"] and r["violations"]["backward_flops"] for r in check.details["steps"])


def test_parity_d_module_would_catch_zero_filled_gradients():
    assert not progressive_parity(optimizer_cls=ZeroFillDropMuon).holds


def test_parity_d_module_would_catch_freezing_the_wrong_side():
    assert not progressive_parity(optimizer_cls=ReversedCutoffDropMuon).holds


# ------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------


def test_drop_muon_table_holds():
    rows = drop_muon_table()
    assert rows and all(r.holds for r in rows), [str(r) for r in rows if not r.holds]
