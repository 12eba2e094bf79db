"""Proofs as tests for the curvature operators (spec 50 §6, items 1-4 and 8) and the damping rules.

The statements, their references (dense autograd, closed forms, numpy; never the operator under test) and
their tolerances are the checkers of :mod:`optlib.theory.curvature`. Beside each check, a "would catch" twin
runs the same checker on a deliberately wrong variant (a subclass of the production operator, loss or damping
rule differing in one place) and asserts that it fails.
"""

from __future__ import annotations

import math

import pytest
import torch

from optlib.curvature.damping import Damping
from optlib.curvature.ggn import GGN
from optlib.curvature.hessian import Hessian
from optlib.curvature.losses import BCEWithLogitsLoss, MSELoss
from optlib.problems import seeded_mlp
from optlib.theory import curvature as cv


# ------------------------------------------------------------------------------------------------
# Deliberately wrong variants
# ------------------------------------------------------------------------------------------------
class GGNMissingFactor2(GGN):
    """MSE's output Hessian taken as I instead of 2I (the classic factor-2 slip)."""

    def _output_matrix(self, z, y, w):
        full = super()._output_matrix(z, y, w)
        return lambda U: 0.5 * full(U)


class InvertedPi(Damping):
    """Heuristic damping with pi replaced by 1/pi."""

    def heuristic_shifts(self, trace_a, dim_a, trace_s, dim_s):
        dA, dS = super().heuristic_shifts(trace_a, dim_a, trace_s, dim_s)
        return dS, dA


class DoubledVarianceMSE(MSELoss):
    """Samples y ~ N(z, I) instead of N(z, I/2): the MC Fisher's expectation doubles."""

    def sample_grad_rows(self, zr, num_samples, generator):
        return math.sqrt(2.0) * super().sample_grad_rows(zr, num_samples, generator)


class FlippedBCE(BCEWithLogitsLoss):
    """Samples the label b ~ Bernoulli(1 - p) (gradient p - (1 - b)): E[g^2] = p^3 + (1-p)^3, not p(1-p)."""

    def sample_grad_rows(self, zr, num_samples, generator):
        return super().sample_grad_rows(zr, num_samples, generator) + 1.0 - 2.0 * torch.sigmoid(zr)


class InvertedLMDamping(Damping):
    """Grows lambda after a good rho and shrinks it after a bad one."""

    def update(self, rho):
        return super().update(1.0 - rho)


class NoSqrtGradNorm(Damping):
    """lambda = c ||g|| (the square root dropped)."""

    def lam(self, grad_norm=None):
        if self.mode == "grad_norm":
            return max(self.min_value, self.c * float(grad_norm))
        return super().lam(grad_norm)


# ------------------------------------------------------------------------------------------------
# 1. GGN vs Hessian; definiteness
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ggn_equals_hessian_linear_mse(reduction):
    check = cv.ggn_equals_hessian(reduction=reduction)
    assert check.holds, check


def test_ggn_equals_hessian_would_catch_missing_factor_2():
    check = cv.ggn_equals_hessian(GGNMissingFactor2)
    assert not check.holds and check.measured == pytest.approx(0.5, rel=1e-9), check


def test_ggn_equals_hessian_would_catch_nonlinear_model():
    """The identity needs a linear model: a tanh MLP breaks it by far more than the tolerance."""
    check = cv.ggn_equals_hessian(model=seeded_mlp([4, 5, 3]))
    assert not check.holds and check.measured > 1e-3, check


def test_ggn_psd_while_hessian_indefinite(record_property):
    check = cv.ggn_psd()
    record_property("hessian_lambda_min", check.details["hessian_lambda_min"])
    assert check.holds, check


def test_ggn_psd_would_catch_hessian_in_place_of_ggn():
    """Would catch: the same PSD check on the Hessian operator fails."""
    check = cv.ggn_psd(Hessian)
    assert not check.holds and check.measured > 1e-6, check


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ggn_lambda_min_meets_the_data_lower_bound(reduction):
    check = cv.ggn_psd_lower_bound(reduction=reduction)
    assert check.holds, check


def test_ggn_lower_bound_would_catch_missing_factor_2():
    check = cv.ggn_psd_lower_bound(GGNMissingFactor2)
    assert not check.holds and check.measured == pytest.approx(0.5 * check.bound, rel=1e-9), check


# ------------------------------------------------------------------------------------------------
# 2. GGN-vector products
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "bce_with_logits"])
def test_ggn_products_match_dense_reference(loss):
    check = cv.ggn_products(loss)
    assert check.holds, check


def test_ggn_products_would_catch_missing_factor_2():
    check = cv.ggn_products("mse", GGNMissingFactor2)
    assert not check.holds, check


# ------------------------------------------------------------------------------------------------
# 3. K-FAC exactness and unbiasedness
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sep", [True, False])
def test_kfac_type2_exact_for_batch_size_one(sep):
    check = cv.kfac_exact("batch_one", separate_weight_and_bias=sep)
    assert check.holds, check


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_kfac_exact_for_deep_linear_mse(reduction):
    check = cv.kfac_exact("deep_linear", reduction=reduction)
    assert check.holds, check


@pytest.mark.parametrize("case", ["batch_one", "deep_linear"])
def test_kfac_exact_would_catch_empirical_fisher(case):
    """The empirical Fisher (data labels) K-FAC is not the GGN block, even for one sample."""
    check = cv.kfac_exact(case, fisher_type="empirical")
    assert not check.holds and check.measured > 1e-2, check


def test_kfac_mc_unbiased_for_type2():
    check = cv.kfac_mc_unbiased(seeds=150)
    assert check.holds, check


def test_kfac_mc_unbiased_would_catch_empirical_fisher():
    """Would catch: the empirical S is far outside the same band."""
    check = cv.kfac_mc_unbiased("empirical", seeds=20)
    assert not check.holds, check


# ------------------------------------------------------------------------------------------------
# Monte-Carlo Fisher
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["mse", "bce_with_logits"])
def test_mc_fisher_is_unbiased_for_the_closed_form_fisher(loss):
    check = cv.mc_fisher_unbiased(loss)
    assert check.holds, check


def test_mc_fisher_would_catch_doubled_mse_variance():
    check = cv.mc_fisher_unbiased("mse", DoubledVarianceMSE("mean"))
    assert not check.holds, check


def test_mc_fisher_would_catch_flipped_bce_labels():
    check = cv.mc_fisher_unbiased("bce_with_logits", FlippedBCE("mean"))
    assert not check.holds, check


# ------------------------------------------------------------------------------------------------
# 4. Inverse consistency
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sep", [True, False])
@pytest.mark.parametrize("lam", [1e-3, 1.0])
@pytest.mark.parametrize("mode", ["exact", "tikhonov"])
def test_exact_damped_inverse_matches_dense_solve(mode, lam, sep):
    check = cv.damped_inverse(mode, lam, sep)
    assert check.holds, check


def test_damped_inverse_would_catch_heuristic_damping():
    """Would catch: heuristic damping is a different matrix."""
    check = cv.damped_inverse("heuristic", 1e-3)
    assert not check.holds and check.measured > 1e-3, check


def test_heuristic_damped_inverse_is_exact_inverse_of_damped_factors():
    check = cv.heuristic_inverse()
    assert check.holds, check


def test_heuristic_inverse_would_catch_inverted_pi():
    check = cv.heuristic_inverse(damping_cls=InvertedPi)
    assert not check.holds and check.measured > 1e-3, check


# ------------------------------------------------------------------------------------------------
# 8. Scaling conventions
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "bce_with_logits"])
def test_scaling_conventions_match_dense(loss, reduction):
    check = cv.scaling_conventions(loss, reduction)
    assert check.holds, check


def test_scaling_would_catch_missing_factor_2():
    check = cv.scaling_conventions("mse", "mean", GGNMissingFactor2)
    assert not check.holds and check.measured > 0.4, check


@pytest.mark.parametrize("fisher_type", ["type2", "empirical", "mc"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "bce_with_logits"])
def test_kfac_factors_match_curvlinops(loss, reduction, fisher_type):
    pytest.importorskip("curvlinops")
    check = cv.kfac_matches_curvlinops(loss, reduction, fisher_type)
    assert check.holds, check


# ------------------------------------------------------------------------------------------------
# Damping rules
# ------------------------------------------------------------------------------------------------
def test_lm_damping_adapts_in_the_documented_direction_and_factor():
    check = cv.lm_damping_adaptation()
    assert check.holds, check


def test_lm_damping_would_catch_inverted_direction():
    check = cv.lm_damping_adaptation(InvertedLMDamping)
    assert not check.holds, check


def test_grad_norm_damping_is_sqrt_c_grad_norm():
    check = cv.grad_norm_damping()
    assert check.holds, check


def test_grad_norm_damping_would_catch_dropped_square_root():
    check = cv.grad_norm_damping(NoSqrtGradNorm)
    assert not check.holds, check


def test_table_holds():
    rows = cv.curvature_table(quick=True)
    assert rows and all(r.holds for r in rows), [str(r) for r in rows if not r.holds]
