"""Proofs as tests for the curvature operators (spec 50 §6, items 1-4 and 8).

Each statement is checked against an independent float64 reference: dense Jacobians and loss Hessians
from ``torch.autograd.functional`` applied to torch's own loss functions, dense Kronecker products and
``torch.linalg`` solves, never the operator under test. Beside each check, a "would catch" twin runs the
same check on a deliberately wrong variant (a missing factor 2, the empirical instead of the true
Fisher, a wrong damping) and asserts that it fails.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

import optlib.curvature as oc
from optlib.curvature.damping import Damping
from optlib.curvature.ggn import GGN

DT = torch.float64
TORCH_LOSSES = {
    "mse": torch.nn.functional.mse_loss,
    "cross_entropy": torch.nn.functional.cross_entropy,
    "bce_with_logits": torch.nn.functional.binary_cross_entropy_with_logits,
}


# ------------------------------------------------------------------------------------------------
# Independent references
# ------------------------------------------------------------------------------------------------
def mlp(sizes, act=nn.Tanh, bias=True, seed=0):
    torch.manual_seed(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1], bias=bias))
        if act is not None and i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers).to(DT)


def make_data(loss, n_in, n_out, sizes=(5, 3), seed=1):
    g = torch.Generator().manual_seed(seed)
    data = []
    for b in sizes:
        X = torch.randn(b, n_in, generator=g, dtype=DT)
        if loss == "cross_entropy":
            y = torch.randint(0, n_out, (b,), generator=g)
        elif loss == "bce_with_logits":
            y = torch.randint(0, 2, (b, n_out), generator=g).to(DT)
        else:
            y = torch.randn(b, n_out, generator=g, dtype=DT)
        data.append((X, y))
    return data


def flat_params(model):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().flatten() for _, p in model.named_parameters()])

    def unflat(t):
        out, off = {}, 0
        for n, s in zip(names, shapes):
            m = s.numel()
            out[n] = t[off:off + m].view(s)
            off += m
        return out

    return theta, unflat


def dense_ggn(model, loss, data, reduction):
    """sum_b w_b J_b^T (d^2 loss_b / dz^2) J_b with torch's loss and dense autograd (w_b = B_b/N for mean)."""
    theta, unflat = flat_params(model)
    N = sum(len(X) for X, _ in data)
    fn = TORCH_LOSSES[loss]
    G = torch.zeros(theta.numel(), theta.numel(), dtype=DT)
    for X, y in data:
        w = len(X) / N if reduction == "mean" else 1.0
        z = functional_call(model, unflat(theta), (X,))
        J = torch.autograd.functional.jacobian(lambda t: functional_call(model, unflat(t), (X,)).reshape(-1), theta)
        Hz = torch.autograd.functional.hessian(lambda zz: fn(zz.reshape(z.shape), y, reduction=reduction),
                                               z.detach().reshape(-1))
        G += w * J.T @ Hz @ J
    return G


def dense_hessian(model, loss, data, reduction):
    theta, unflat = flat_params(model)
    N = sum(len(X) for X, _ in data)
    fn = TORCH_LOSSES[loss]

    def total(t):
        return sum((len(X) / N if reduction == "mean" else 1.0) * fn(functional_call(model, unflat(t), (X,)), y,
                                                                     reduction=reduction) for X, y in data)

    return torch.autograd.functional.hessian(total, theta)


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def block_slices(model):
    """Flat index ranges of each parameter."""
    out, off = {}, 0
    for n, p in model.named_parameters():
        out[n] = slice(off, off + p.numel())
        off += p.numel()
    return out


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


# ------------------------------------------------------------------------------------------------
# 1. GGN vs Hessian
# ------------------------------------------------------------------------------------------------
def ggn_equals_hessian(ggn_cls, model, data, reduction="mean"):
    G = ggn_cls(model, oc.MSELoss(reduction), None, data).to_dense()
    H = dense_hessian(model, "mse", data, reduction)
    err = rel_err(G, H)
    return err, err <= 1e-12


def test_ggn_equals_hessian_linear_mse():
    """For f linear in theta and MSE, the Hessian is exactly J^T (2I) J: GGN = H to 1e-12 (spec §6.1)."""
    model = mlp([4, 3], act=None)
    for reduction in ("mean", "sum"):
        err, holds = ggn_equals_hessian(GGN, model, make_data("mse", 4, 3), reduction)
        assert holds, err


def test_ggn_equals_hessian_would_catch_missing_factor_2():
    model = mlp([4, 3], act=None)
    err, holds = ggn_equals_hessian(GGNMissingFactor2, model, make_data("mse", 4, 3))
    assert not holds and err == pytest.approx(0.5, rel=1e-9)


def test_ggn_equals_hessian_would_catch_nonlinear_model():
    """The identity needs a linear model: a tanh MLP breaks it by far more than the tolerance."""
    model = mlp([4, 5, 3])
    err, holds = ggn_equals_hessian(GGN, model, make_data("mse", 4, 3))
    assert not holds and err > 1e-3


def psd_margin(M):
    """lambda_min(M) / ||M||_2 (>= -1e-6 counts as PSD, spec §6.1)."""
    ev = torch.linalg.eigvalsh(0.5 * (M + M.T))
    return float(ev[0] / ev.abs().max()), float(ev[0])


def test_ggn_psd_while_hessian_indefinite(record_property):
    """MLP with cross-entropy: lambda_min(G) >= -1e-6 ||G|| while the Hessian has a negative eigenvalue."""
    model = mlp([4, 6, 3], seed=3)
    data = make_data("cross_entropy", 4, 3, sizes=(8,), seed=4)
    G = oc.GGN(model, nn.CrossEntropyLoss(), None, data).to_dense()
    H = oc.Hessian(model, nn.CrossEntropyLoss(), None, data).to_dense()
    H_ref = dense_hessian(model, "cross_entropy", data, "mean")
    assert rel_err(H, H_ref) < 1e-12
    g_margin, _ = psd_margin(G)
    h_margin, h_min = psd_margin(H_ref)
    record_property("hessian_lambda_min", h_min)
    record_property("hessian_lambda_min_relative", h_margin)
    assert g_margin >= -1e-6
    assert h_min < 0  # the Hessian is indefinite here; its lambda_min is recorded
    # would catch: the same PSD check on the Hessian fails
    assert h_margin < -1e-6


# ------------------------------------------------------------------------------------------------
# 2. GGN-vector products
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "bce_with_logits"])
def test_ggn_products_match_dense_reference(loss):
    """G v equals the dense J^T (d^2 loss/dz^2) J v (rtol 1e-5); u^T G v = v^T G u to 1e-10 (spec §6.2)."""
    model = mlp([4, 5, 3])
    data = make_data(loss, 4, 3)
    op = oc.GGN(model, loss, None, data)
    G_ref = dense_ggn(model, loss, data, "mean")
    g = torch.Generator().manual_seed(7)
    V = torch.randn(op.n, 4, generator=g, dtype=DT)
    GV = op @ V
    torch.testing.assert_close(GV, G_ref @ V, rtol=1e-5, atol=1e-12)
    gv = op @ V[:, 0]  # the single-vector path
    torch.testing.assert_close(gv, GV[:, 0], rtol=1e-12, atol=1e-14)
    u, v = V[:, 1], V[:, 2]
    a, b = float(u @ (op @ v)), float(v @ (op @ u))
    assert abs(a - b) <= 1e-10 * max(abs(a), abs(b))


def test_ggn_products_would_catch_missing_factor_2():
    model = mlp([4, 5, 3])
    data = make_data("mse", 4, 3)
    wrong = GGNMissingFactor2(model, "mse", None, data)
    V = torch.randn(wrong.n, 3, dtype=DT)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(wrong @ V, dense_ggn(model, "mse", data, "mean") @ V, rtol=1e-5, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# 3. K-FAC exactness
# ------------------------------------------------------------------------------------------------
def kfac_block_errors(kfac, G, model):
    """Relative error of each diagonal parameter block of K-FAC against the exact GGN."""
    K = kfac.to_dense()
    sl = block_slices(model)
    return {n: rel_err(K[s, s], G[s, s]) for n, s in sl.items()}


def test_kfac_type2_exact_for_batch_size_one():
    """K-FAC (expand, type-2) equals the exact GGN diagonal blocks for one sample (spec §6.3)."""
    model = mlp([4, 5, 3])
    data = make_data("cross_entropy", 4, 3, sizes=(1,))
    G = dense_ggn(model, "cross_entropy", data, "mean")
    for sep in (True, False):
        kfac = oc.KFAC(model, "cross_entropy", None, data, fisher_type="type2", separate_weight_and_bias=sep)
        errs = kfac_block_errors(kfac, G, model)
        assert max(errs.values()) <= 1e-10, errs


def test_kfac_batch_one_would_catch_empirical_fisher():
    """The empirical Fisher (data label) K-FAC is not the GGN block, even for one sample."""
    model = mlp([4, 5, 3])
    data = make_data("cross_entropy", 4, 3, sizes=(1,))
    G = dense_ggn(model, "cross_entropy", data, "mean")
    errs = kfac_block_errors(oc.KFAC(model, "cross_entropy", None, data, fisher_type="empirical"), G, model)
    assert max(errs.values()) > 1e-2


def test_kfac_exact_for_deep_linear_mse():
    """Deep linear network with MSE: K-FAC (type-2) equals the exact GGN blocks for any batch (spec §6.3)."""
    model = mlp([4, 5, 3, 2], act=None)
    data = make_data("mse", 4, 2, sizes=(6, 4))
    for reduction in ("mean", "sum"):
        G = dense_ggn(model, "mse", data, reduction)
        kfac = oc.KFAC(model, oc.MSELoss(reduction), None, data, fisher_type="type2")
        errs = kfac_block_errors(kfac, G, model)
        assert max(errs.values()) <= 1e-10, errs


def test_kfac_deep_linear_would_catch_empirical_fisher():
    model = mlp([4, 5, 3, 2], act=None)
    data = make_data("mse", 4, 2, sizes=(6, 4))
    G = dense_ggn(model, "mse", data, "mean")
    errs = kfac_block_errors(oc.KFAC(model, "mse", None, data, fisher_type="empirical"), G, model)
    assert max(errs.values()) > 1e-2


def test_kfac_mc_unbiased_for_type2():
    """MC K-FAC is type-2 K-FAC in expectation: the mean of S over seeds is within 6 standard errors of the
    type-2 S entrywise (statistical tolerance; A is deterministic)."""
    model = mlp([4, 5, 3])
    data = make_data("cross_entropy", 4, 3, sizes=(6,))
    exact = oc.KFAC(model, "cross_entropy", None, data, fisher_type="type2").factors()
    seeds = 150
    draws = [oc.KFAC(model, "cross_entropy", None, data, fisher_type="mc", seed=s).factors() for s in range(seeds)]
    for name, (A, S) in exact.items():
        Ss = torch.stack([d[name][1] for d in draws])
        mean, se = Ss.mean(0), Ss.std(0) / math.sqrt(seeds)
        assert bool(((mean - S).abs() <= 6 * se + 1e-14).all())
        torch.testing.assert_close(draws[0][name][0], A, rtol=1e-12, atol=1e-14)
        # would catch: the empirical S is far outside the same band
        S_emp = oc.KFAC(model, "cross_entropy", None, data, fisher_type="empirical").factors()[name][1]
        assert bool(((S_emp - S).abs() > 6 * se + 1e-14).any())


def test_linear_regression_ggn_is_twice_foof():
    """Linear regression with square loss: GGN(W) = 2 I (x) (c sum_n x x^T), c = 1/(N C) (mean) or 1 (sum)
    (row-major W; spec §6.3, curvlinops PR #98); K-FAC is exact here."""
    model = mlp([4, 3], act=None, bias=False)
    data = make_data("mse", 4, 3, sizes=(5, 3))
    Xall = torch.cat([X for X, _ in data])
    N, C = Xall.shape[0], 3
    for reduction, c in (("mean", 1.0 / (N * C)), ("sum", 1.0)):
        ref = 2.0 * torch.kron(torch.eye(C, dtype=DT), c * Xall.T @ Xall)
        G = oc.GGN(model, oc.MSELoss(reduction), None, data).to_dense()
        K = oc.KFAC(model, oc.MSELoss(reduction), None, data, fisher_type="type2").to_dense()
        assert rel_err(G, ref) <= 1e-12 and rel_err(K, ref) <= 1e-12
        wrong = GGNMissingFactor2(model, oc.MSELoss(reduction), None, data).to_dense()
        assert rel_err(wrong, ref) == pytest.approx(0.5, rel=1e-9)


# ------------------------------------------------------------------------------------------------
# 4. Inverse consistency
# ------------------------------------------------------------------------------------------------
def _kfac_small(sep=True):
    model = mlp([4, 5, 3])
    data = make_data("cross_entropy", 4, 3, sizes=(7,))
    return model, oc.KFAC(model, "cross_entropy", None, data, fisher_type="type2", separate_weight_and_bias=sep)


def test_exact_damped_inverse_matches_dense_solve():
    """(S (x) A + lambda I)^{-1} v from the factors' eigendecompositions equals a dense solve (1e-10)."""
    for sep in (True, False):
        _, kfac = _kfac_small(sep)
        K = kfac.to_dense()
        v = torch.randn(kfac.n, 3, dtype=DT)
        for lam in (1e-3, 1.0):
            ref = torch.linalg.solve(K + lam * torch.eye(kfac.n, dtype=DT), v)
            for mode in ("exact", "tikhonov"):
                x = kfac.solve(v, Damping(mode, lam))
                assert rel_err(x, ref) <= 1e-10
            # would catch: heuristic damping is a different matrix
            assert rel_err(kfac.solve(v, Damping("heuristic", lam)), ref) > 1e-3


def _heuristic_reference(kfac, model, lam, pi_power=1.0):
    """Dense block-diagonal inverse of (S + sqrt(l)/pi I) (x) (A + pi sqrt(l) I) per weight block and of
    (S + sqrt(l)/pi I) per bias block, pi = sqrt((tr A / dim A) / (tr S / dim S))."""
    sl = block_slices(model)
    n = kfac.n
    Minv = torch.zeros(n, n, dtype=DT)
    for layer_name, (A, S) in kfac.factors().items():
        pi = math.sqrt((float(A.trace()) / A.shape[0]) / (float(S.trace()) / S.shape[0])) ** pi_power
        Ad = A + pi * math.sqrt(lam) * torch.eye(A.shape[0], dtype=DT)
        Sd = S + math.sqrt(lam) / pi * torch.eye(S.shape[0], dtype=DT)
        sw, sb = sl[f"{layer_name}.weight"], sl[f"{layer_name}.bias"]
        Minv[sw, sw] = torch.linalg.inv(torch.kron(Sd, Ad))
        Minv[sb, sb] = torch.linalg.inv(Sd)
    return Minv


def test_heuristic_damped_inverse_is_exact_inverse_of_damped_factors():
    """The heuristic-damped solve is the exact inverse of (A + pi sqrt(l) I) (x) (S + sqrt(l)/pi I) (spec §6.4)."""
    model, kfac = _kfac_small()
    v = torch.randn(kfac.n, 2, dtype=DT)
    lam = 0.05
    ref = _heuristic_reference(kfac, model, lam) @ v
    assert rel_err(kfac.solve(v, Damping("heuristic", lam)), ref) <= 1e-10
    # would catch: pi and 1/pi swapped
    assert rel_err(kfac.solve(v, InvertedPi("heuristic", lam)), ref) > 1e-3


# ------------------------------------------------------------------------------------------------
# 8. Scaling conventions
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "bce_with_logits"])
def test_scaling_conventions_match_dense(loss, reduction):
    """For each loss and reduction, the GGN equals the dense GGN of torch's batch loss combined over
    batches as the loss of the whole data set (w_b = B_b/N for mean), and deep-linear/batch-1 K-FAC
    matches it too; sum / mean = N C (MSE, BCE) or N (cross-entropy) (spec §6.8)."""
    model = mlp([4, 5, 3])
    data = make_data(loss, 4, 3, sizes=(4, 2))
    G = oc.GGN(model, oc.as_loss(loss, reduction), None, data).to_dense()
    G_ref = dense_ggn(model, loss, data, reduction)
    assert rel_err(G, G_ref) <= 1e-12
    if reduction == "sum":
        N = sum(len(X) for X, _ in data)
        ratio = N * (1 if loss == "cross_entropy" else 3)
        G_mean = oc.GGN(model, oc.as_loss(loss, "mean"), None, data).to_dense()
        assert rel_err(G, ratio * G_mean) <= 1e-12
    one = [(data[0][0][:1], data[0][1][:1])]
    K = oc.KFAC(model, oc.as_loss(loss, reduction), None, one, fisher_type="type2")
    errs = kfac_block_errors(K, dense_ggn(model, loss, one, reduction), model)
    assert max(errs.values()) <= 1e-10, errs


def test_scaling_would_catch_missing_factor_2():
    model = mlp([4, 5, 3])
    data = make_data("mse", 4, 3, sizes=(4, 2))
    wrong = GGNMissingFactor2(model, "mse", None, data).to_dense()
    assert rel_err(wrong, dense_ggn(model, "mse", data, "mean")) > 0.4


@pytest.mark.parametrize("fisher_type", ["type2", "empirical", "mc"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "bce_with_logits"])
def test_kfac_factors_match_curvlinops(loss, reduction, fisher_type):
    """Our K-FAC factors equal curvlinops' KFACLinearOperator factors: the documented ratio is 1 for every
    loss and reduction (the same convention; curvlinops #82 is the 2x difference to BackPACK/ASDL). With the
    same seed even the Monte-Carlo label draws coincide."""
    curvlinops = pytest.importorskip("curvlinops")
    model = mlp([4, 5, 3])
    data = make_data(loss, 4, 3, sizes=(4, 2))
    ours = oc.KFAC(model, oc.as_loss(loss, reduction), None, data, fisher_type=fisher_type, seed=7)
    torch_loss = {"mse": nn.MSELoss, "cross_entropy": nn.CrossEntropyLoss,
                  "bce_with_logits": nn.BCEWithLogitsLoss}[loss](reduction=reduction)
    theirs = curvlinops.KFACLinearOperator(model, torch_loss, list(model.parameters()), data,
                                           fisher_type={"type2": "type-2", "empirical": "empirical",
                                                        "mc": "mc"}[fisher_type], seed=7, check_deterministic=False)
    eye = torch.eye(ours.n, dtype=DT)
    assert rel_err(ours.to_dense(), theirs @ eye) <= 1e-12
