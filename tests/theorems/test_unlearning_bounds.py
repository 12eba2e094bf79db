r"""Proofs as tests for Gauss–Newton unlearning (spec 50 §6 items 6 and 7, and the K-FADE step rule of §5).

The paper's own constants are not known (spec 95 §5); every statement is derived (in the docstring of
:mod:`optlib.unlearning.methods` and in the checkers of :mod:`optlib.theory.unlearning`, which these tests call)
and checked on a problem where it can be computed exactly. Reference numbers come from closed forms and numpy
Newton solves, never from the code under test.
Each statement has a "would catch" twin: a deliberately wrong variant of the method (a subclass differing in
one place) must fail the same check. float64 throughout.

1. Ridge regression: one Newton step with the exact retain Hessian from :math:`\theta_0` is the retrained
   optimum (the objective is quadratic).
2. Logistic regression: the one-step error against retraining is :math:`O(\lVert\theta_r - \theta_0\rVert^2)`
   (Newton's local quadratic convergence); the fitted log-log slope over forget sets of 2 to 64 of 400 points is 2.
3. K-FADE's KL trust region (and its consequence, spec 50 §6 item 6: at equal forget-loss increase K-FADE's
   retain KL is below gradient ascent's, since to second order it minimizes the quadratic KL model among steps
   with the same linear increase): :math:`\tfrac12(\eta\delta)^\top(G_r+\lambda I)(\eta\delta) = \varepsilon` exactly,
   :math:`\tfrac12(\eta\delta)^\top G_r(\eta\delta) \to \varepsilon` as :math:`\lambda \to 0`, and the true retain KL
   :math:`\to \varepsilon` as :math:`\varepsilon \to 0`.
4. Re-application: for softmax regression :math:`\nabla^2 L_f = \frac1{N_f}\sum_i(\operatorname{diag}p_i -
   p_ip_i^\top)\otimes x_ix_i^\top \preceq \tfrac12 I\otimes\frac1{N_f}X_f^\top X_f` (Böhning's bound
   :math:`\operatorname{diag}p - pp^\top \preceq \tfrac12 I`), so with
   :math:`L = \tfrac12\lambda_{\max}(X_f^\top X_f/N_f)`,
   :math:`|[L_f(\theta_\mathrm{ft}+\Delta) - L_f(\theta_\mathrm{ft})] - [L_f(\theta_0+\Delta) - L_f(\theta_0)]|
   \le L\,\lVert\Delta\rVert\,\lVert\theta_\mathrm{ft}-\theta_0\rVert`:
   the re-applied delta keeps the forget loss up, degrading at most linearly in the fine-tune distance.
"""

from __future__ import annotations

import math

import pytest

from optlib.theory import unlearning as ul
from optlib.unlearning import KFADE, NewtonUnlearning

# ------------------------------------------------------------------------------------------------
# Deliberately wrong variants (each differs from the method in one place)
# ------------------------------------------------------------------------------------------------


class NoFactorNewton(NewtonUnlearning):
    """Drops the N_f / N_r factor."""

    def factor(self):
        return 1.0


class DownhillNewton(NewtonUnlearning):
    """Steps downhill on the forget loss (wrong sign)."""

    def step_size(self, g, d):
        return -super().step_size(g, d)


class NoSqrtKFADE(KFADE):
    """eta = 2 eps / g^T delta (square root forgotten)."""

    def step_size(self, g, d):
        return 2.0 * self.kl_budget / float(g @ d)


class NoTwoKFADE(KFADE):
    """eta = sqrt(eps / g^T delta) (factor 2 of the quadratic model forgotten)."""

    def step_size(self, g, d):
        return math.sqrt(self.kl_budget / float(g @ d))


class WrongMetricKFADE(KFADE):
    """Multiplies the gradient by the curvature instead of solving with it (delta = G g)."""

    def direction(self, g):
        return self.curvature @ g


class DownhillKFADE(KFADE):
    """Steps downhill on the forget loss (wrong sign)."""

    def step_size(self, g, d):
        return -super().step_size(g, d)


# ------------------------------------------------------------------------------------------------
# 1. Ridge: one Newton step = retraining
# ------------------------------------------------------------------------------------------------
def test_ridge_newton_step_equals_retraining():
    check = ul.ridge_newton_exact()
    assert check.holds, check


@pytest.mark.parametrize("cls", [NoFactorNewton, DownhillNewton])
def test_ridge_would_catch_wrong_step(cls):
    """Would catch: without N_f/N_r the step is N_r/N_f = 5.7 times too long; downhill moves away."""
    check = ul.ridge_newton_exact(cls)
    assert not check.holds and check.measured > 1e-2 * check.details["moved"], check


# ------------------------------------------------------------------------------------------------
# 2. Logistic regression: error O(||theta_r - theta_0||^2)
# ------------------------------------------------------------------------------------------------
def test_logistic_newton_error_is_quadratic():
    check = ul.logistic_quadratic_error()
    assert check.holds, check


def test_logistic_would_catch_first_order_step():
    """Would catch: with the curvature replaced by a scaled identity the error is O(distance): slope ~1."""
    check = ul.logistic_quadratic_error(hessian="scaled_identity")
    assert not check.holds, check


def test_logistic_would_catch_missing_factor():
    """Would catch: without N_f/N_r the error does not shrink with the forget set (slope ~0)."""
    check = ul.logistic_quadratic_error(NoFactorNewton)
    assert not check.holds, check


# ------------------------------------------------------------------------------------------------
# 3. The KL trust region of K-FADE
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lam", [1e-1, 1e-3, 1e-6])
def test_kfade_step_meets_damped_budget_exactly(lam):
    check = ul.kfade_damped_budget(lam=lam)
    assert check.holds, check


@pytest.mark.parametrize("cls", [NoSqrtKFADE, NoTwoKFADE])
def test_kfade_budget_would_catch_wrong_step_size(cls):
    """Would catch: eta without the square root, or without the factor 2, misses the damped budget by far."""
    check = ul.kfade_damped_budget(cls=cls)
    assert not check.holds and check.measured > 0.1, check


def test_kfade_undamped_model_tends_to_budget():
    check = ul.kfade_undamped_limit()
    assert check.holds, check


def test_kfade_undamped_limit_would_catch_missing_sqrt():
    check = ul.kfade_undamped_limit(NoSqrtKFADE)
    assert not check.holds, check


def test_kfade_true_kl_tends_to_budget():
    check = ul.kfade_true_kl_limit()
    assert check.holds, check


@pytest.mark.parametrize("cls", [DownhillKFADE, NoTwoKFADE])
def test_kfade_true_kl_would_catch_wrong_sign_or_step(cls):
    """Would catch: a downhill step lowers the forget loss; eta without the 2 gives KL ~ eps/2."""
    check = ul.kfade_true_kl_limit(cls)
    assert not check.holds, check


# ------------------------------------------------------------------------------------------------
# 4. Re-application after fine-tuning
# ------------------------------------------------------------------------------------------------
def test_reapplied_delta_keeps_forget_loss_high():
    check = ul.reapplication_bound()
    assert check.holds, check


def test_reapplication_would_catch_wrong_sign():
    """Would catch: the downhill delta lowers the forget loss (inc(theta_0) < 0)."""
    check = ul.reapplication_bound(DownhillKFADE)
    assert not check.holds and check.details["inc0"] < 0, check


# ------------------------------------------------------------------------------------------------
# 5. Pareto comparison with gradient ascent
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [1e-3, 1e-2])
def test_kfade_beats_gradient_ascent_at_equal_forget_increase(eps):
    check = ul.kfade_beats_gradient_ascent(eps=eps)
    assert check.holds, check


@pytest.mark.parametrize("eps", [1e-3, 1e-2])
def test_pareto_would_catch_wrong_metric(eps):
    """Would catch: multiplying by G instead of solving with it does worse than gradient ascent (ratio ~1.1)."""
    check = ul.kfade_beats_gradient_ascent(WrongMetricKFADE, eps=eps)
    assert not check.holds and check.measured > 1.0, check


def test_table_holds():
    rows = ul.unlearning_table(quick=True)
    assert rows and all(r.holds for r in rows), [str(r) for r in rows if not r.holds]
