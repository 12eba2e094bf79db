"""Discretisation drift as proofs-as-tests (spec 40 §8, spec 95 §4): every order of accuracy of the flows of
optlib.drift measured against the iterates they model, each with a "would catch" twin (a flow with a wrong sign,
factor, branch or mode) run through the same checker, which must then fail. Derivations: optlib/theory/drift.py."""

from __future__ import annotations

import pytest
import torch

from optlib.drift import DriftExpansionWarning, game_drift_penalties, igr_penalty, modified_flow, principal_flow
from optlib.drift.flows import ModifiedFlow
from optlib.drift.principal import PrincipalFlow
from optlib.theory import drift as D
from optlib.theory.table import FAMILY_TABLES


class SignFlippedIGR(ModifiedFlow):
    """Twin: the IGR correction with the wrong sign (ascends the gradient norm)."""

    def igr_coefficient(self) -> float:
        return -self.h / 2.0


class DoubledIGR(ModifiedFlow):
    """Twin: the IGR coefficient h instead of h/2 (penalty h/2 ||g||^2 instead of h/4)."""

    def igr_coefficient(self) -> float:
        return self.h


class WrongThirdDerivative(ModifiedFlow):
    """Twin: the second-order correction with the third-derivative term's sign flipped."""

    def second_order_coefficients(self) -> tuple[float, float]:
        return 1.0 / 3.0, -1.0 / 12.0


class GDCoefficientMomentum(ModifiedFlow):
    """Twin: heavy ball with GD's correction h/2 (the (1+beta)/(1-beta)^2 factor dropped)."""

    def momentum_coefficients(self) -> tuple[float, float]:
        return 1.0 / (1.0 - self.beta), self.h / 2.0


class DoubledSGD(ModifiedFlow):
    """Twin: the SGD drift coefficient h/m instead of h/(2m)."""

    def sgd_coefficient(self) -> float:
        return self.h / self.m


class TruncatedPrincipal(PrincipalFlow):
    """Twin: the principal flow's series cut after the first order (-1 - h lambda/2: the IGR flow)."""

    def coefficients(self, eigenvalues):
        return (-1.0 - self.h * eigenvalues / 2.0).to(torch.complex128)


def twin(cls, kind, **options):
    return lambda loss, h: cls(loss, kind, h, **options)


# ------------------------------------------------------------------------------------- GD: local and global order
@pytest.mark.parametrize("kind", ["gradient", "igr", "igr2"])
def test_local_order(kind):
    check = D.local_error_slope(kind)
    assert check.holds, str(check)
    assert check.details["max_h_lambda_max"] <= 0.1


@pytest.mark.parametrize("cls", [SignFlippedIGR, DoubledIGR])
def test_twin_wrong_igr_correction_loses_local_order(cls):
    check = D.local_error_slope("igr", flow_factory=twin(cls, "igr"))
    assert not check.holds, str(check)
    assert abs(check.measured - 2.0) <= 0.1  # falls back to the order of the plain gradient flow


def test_twin_wrong_third_derivative_loses_fourth_order():
    check = D.local_error_slope("igr2", flow_factory=twin(WrongThirdDerivative, "igr2"))
    assert not check.holds, str(check)


def test_twin_gradient_flow_is_not_third_order():
    check = D.local_error_slope("igr", flow_factory=D.kind_factory("gradient"))
    assert not check.holds, str(check)


def test_local_order_on_an_mlp_and_its_twin():
    check = D.mlp_local_error_slope("igr")
    assert check.holds, str(check)
    doubled = D.mlp_local_error_slope("igr", flow_factory=twin(DoubledIGR, "igr"))
    assert not doubled.holds, str(doubled)


def test_slope_outside_the_expansion_range_warns_and_does_not_hold():
    with pytest.warns(DriftExpansionWarning, match="h \\* lambda_max = 0.37"):
        check = D.local_error_slope("igr", hs=(0.25, 0.125, 0.0625))
    assert not check.holds and check.details["max_h_lambda_max"] > 0.1


@pytest.mark.parametrize("kind", ["gradient", "igr"])
def test_global_order(kind):
    check = D.global_error_slope(kind)
    assert check.holds, str(check)


def test_twin_sign_flipped_igr_loses_global_order():
    check = D.global_error_slope("igr", flow_factory=twin(SignFlippedIGR, "igr"))
    assert not check.holds, str(check)


# ------------------------------------------------------------------------------------- principal flow
def test_principal_flow_is_gd_on_quadratics_in_every_regime():
    check = D.principal_flow_exact()
    assert check.holds, str(check)


def test_twin_real_part_or_truncated_principal_flow_is_not_gd():
    real = D.principal_flow_exact(flow_factory=D.principal_factory("real"))
    truncated = D.principal_flow_exact(flow_factory=lambda loss, h: TruncatedPrincipal(loss, h))
    assert not real.holds and not truncated.holds, (str(real), str(truncated))


def test_principal_flow_matches_every_regime_and_ngf_igr_do_not():
    assert D.qualitative_regimes().holds
    for kind in ("gradient", "igr"):
        wrong = D.qualitative_regimes(D.kind_factory(kind), kind, expected=1)
        assert wrong.holds, str(wrong)
        # the same checker asked for all three regimes must fail them
        assert not D.qualitative_regimes(D.kind_factory(kind), kind).holds


def test_divergence_onset_predicted_by_principal_flow():
    check = D.divergence_onset()
    assert check.holds, str(check)


def test_twin_igr_never_predicts_divergence():
    check = D.divergence_onset(D.kind_factory("igr"), "igr")
    assert not check.holds and not any(check.details["flow_grows"]), str(check)


# ------------------------------------------------------------------------------------- games
def test_bilinear_simultaneous_growth_discrepancy_is_fourth_order():
    check = D.bilinear_growth_slope()
    assert check.holds, str(check)


@pytest.mark.parametrize("options", [{"mode": "alternating"}, {"mode": "simultaneous", "drift": False}])
def test_twin_wrong_mode_or_no_drift_loses_fourth_order(options):
    mode = options.pop("mode")
    check = D.bilinear_growth_slope(flow_factory=D.game_factory(mode, **options))
    assert not check.holds, str(check)


def test_alternating_updates_and_flow_bounded():
    check = D.alternating_bounded()
    assert check.holds, str(check)


def test_twin_simultaneous_flow_is_not_bounded():
    check = D.alternating_bounded(flow_factory=D.game_factory("simultaneous"))
    assert not check.holds, str(check)


@pytest.mark.parametrize("mode", ["simultaneous", "alternating"])
def test_game_local_order(mode):
    check = D.game_local_error_slope(mode)
    assert check.holds, str(check)


@pytest.mark.parametrize("mode,wrong", [("simultaneous", "alternating"), ("alternating", "simultaneous")])
def test_twin_game_flow_of_the_other_mode_loses_order(mode, wrong):
    check = D.game_local_error_slope(mode, flow_factory=D.game_factory(wrong))
    assert not check.holds, str(check)


@pytest.mark.parametrize("mode", ["simultaneous", "alternating"])
def test_game_regularisers_reproduce_the_flow(mode):
    check = D.game_penalties_match_flow(mode)
    assert check.holds, str(check)


def test_twin_regularisers_of_the_other_mode_do_not():
    def other(l1, l2, phi, theta, alpha, lam, h, mode):
        return game_drift_penalties(l1, l2, phi, theta, alpha, lam, h, "alternating")
    check = D.game_penalties_match_flow("simultaneous", penalties=other)
    assert not check.holds, str(check)


# ------------------------------------------------------------------------------------- SGD and momentum
def test_sgd_epoch_mean_follows_the_sgd_flow_to_third_order():
    check = D.sgd_epoch_slope(against="sgd")
    assert check.holds, str(check)


def test_sgd_epoch_mean_is_second_order_from_ngf():
    check = D.sgd_epoch_slope(against="gradient")
    assert check.holds, str(check)


def test_twin_sgd_without_variance_term_or_doubled_coefficient_loses_order():
    batches = D.sgd_batch_losses()
    full_batch_igr = D.sgd_epoch_slope(against="sgd", flow_factory=D.kind_factory("igr"))
    doubled = D.sgd_epoch_slope(against="sgd", flow_factory=lambda loss, h: DoubledSGD(loss, "sgd", h,
                                                                                       batches=batches))
    assert not full_batch_igr.holds and not doubled.holds, (str(full_batch_igr), str(doubled))


@pytest.mark.parametrize("beta", [0.5, 0.2])
def test_momentum_dominant_root_matches_flow(beta):
    check = D.momentum_root_slope(beta=beta)
    assert check.holds, str(check)


def test_twin_momentum_with_gd_coefficient_loses_order():
    check = D.momentum_root_slope(flow_factory=twin(GDCoefficientMomentum, "momentum", beta=0.5))
    assert not check.holds, str(check)
    without_time_scale = D.momentum_root_slope(flow_factory=D.kind_factory("igr"))
    assert not without_time_scale.holds


# ------------------------------------------------------------------------------------- explicit IGR
def test_igr_penalty_gradient_is_the_igr_drift():
    assert D.igr_penalty_gradient().holds


def test_twin_igr_penalty_with_h_over_2_fails():
    def doubled(loss_fn, params, h):
        return igr_penalty(loss_fn, params, 2.0 * h)
    assert not D.igr_penalty_gradient(penalty=doubled).holds


@pytest.mark.parametrize("scheme", ["forward", "central"])
def test_finite_difference_igr_order(scheme):
    check = D.igr_fd_slope(scheme)
    assert check.holds, str(check)


def test_twin_forward_difference_is_not_second_order():
    assert not D.igr_fd_slope("forward", expected=2).holds


# ------------------------------------------------------------------------------------- table
def test_drift_table_registered():
    assert FAMILY_TABLES["drift"] is D.drift_table


def test_flows_used_by_checks_are_the_public_ones():
    """The default factories build the production flows (not copies): the twins above replace exactly them."""
    loss = D.valley_loss
    assert type(D.kind_factory("igr")(loss, 0.1)) is type(modified_flow(loss, "igr", 0.1))
    assert type(D.principal_factory()(loss, 0.1)) is type(principal_flow(loss, 0.1))


@pytest.mark.slow
def test_drift_table_holds():
    rows = D.drift_table(quick=True)
    failing = [str(c) for c in rows if not c.holds]
    assert not failing, "\n".join(failing)
