"""Proofs as tests for Drop-Muon (spec 20 §5 T1-T6 and Parity (d)).

Every bound is derived in :mod:`optlib.theory.drop_muon` (the paper's constants are not known, spec 95 §2);
each check's ``source`` says so. Each statement has a "would catch" twin: a deliberately wrong variant of
the optimizer (a subclass of :class:`optlib.optim.DropMuon` differing in one place) or of the prediction
must make the same check fail. float64 throughout.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from optlib.optim.drop_muon import DropMuon
from optlib.problems.layered import exponential_blocks, layered_quadratic, log_sum_exp_blocks
from optlib.theory.drop_muon import (
    cost_model_contraction,
    cost_tradeoff,
    deep_linear_rate,
    expected_descent,
    frozen_layers_untouched,
    l0l1_decrease,
    one_step_decrease,
    optimal_radius_decrease,
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


def _assert_holds(check):
    assert check.holds, str(check) + f" details={dict(check.details)}"
    assert "derived" in check.source or "spec 20" in check.source


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


# ------------------------------------------------------------------------------------------------
# T2 optimal radius
# ------------------------------------------------------------------------------------------------


def test_t2_optimal_radius_decrease():
    check = optimal_radius_decrease()
    _assert_holds(check)
    assert check.details["equality_gap"] < 1e-10


def test_t2_would_catch_radius_times_ten():
    assert not optimal_radius_decrease(optimizer_cls=TenfoldRadiusDropMuon).holds


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


def test_t4_rate_deep_linear_network():
    check = deep_linear_rate(seeds=range(20), K=30)
    _assert_holds(check)
    assert check.details["final_over_initial"] < 1.0  # the runs make progress
    assert check.details["telescoped_holds"]  # the realized, per-run telescoped form as well
    assert all(row["L_covers_trajectory"] for row in check.details["per_seed"])  # L_i >= every ratio seen


@pytest.fixture(scope="module")
def t4_constants():
    check = deep_linear_rate(seeds=range(6), K=30)
    assert check.holds
    return [row["L"] for row in check.details["per_seed"]]


def test_t4_would_catch_wrong_sign(t4_constants):
    assert not deep_linear_rate(seeds=range(6), K=30, L_fixed=t4_constants, optimizer_cls=AscentDropMuon).holds


def test_t4_would_catch_radius_times_ten(t4_constants):
    assert not deep_linear_rate(seeds=range(6), K=30, L_fixed=t4_constants, radius_factor=10.0).holds


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
