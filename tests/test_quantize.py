"""Proofs as tests for :mod:`scale.quantize` (spec 60), float64 unless said otherwise.

Statements, each with a "would catch" twin run through the same production code:

* **quantizer bound**: for a value inside its group's fitted range, ``|w - w_hat| <= scale/2`` (rounding to the
  nearest code; tolerance 1e-12 relative to the scale) and every code lies in ``[0, 2**bits - 1]``
  (Hypothesis); twin: rounding down instead of to nearest breaks the bound;
* **GPTQ = OBS**: the Cholesky sweep with lazy blocks equals an explicit column-by-column OBS loop that
  re-inverts ``H_F`` (the Hessian of the not-yet-quantized columns) at every step (paper eq. 2-3), to 1e-9;
  with act-order the parity holds through ``g_idx``; twin: the same codes read with the consecutive ``g_idx``
  fail the parity;
* **GPTQ <= RTN** on the calibration inputs, ``||(W - W_hat) X||_F^2``, also with a planted outlier channel;
  twin: the compensation with the wrong sign is worse than RTN;
* **group fit from the compensated weights**: fitting each group's scale/zero from the original ``W`` (the
  classic mistake) gives a strictly larger layer error than GPTQ (on each of 4 seeds);
* **FOEM beta = 0 (alpha = 0) is GPTQ bit for bit**; twin: beta = 1e-3 changes the codes;
* **GPTAQ's alpha term lowers the asymmetric error** ``||W_hat X_q - W X||`` below GPTQ's (3 seeds); twin: the
  statistic ``dXXT`` with its sign flipped raises it;
* **AWQ without duo scaling at alpha = 0 is RTN exactly**; twin: with duo scaling it is not;
* **smoothing without quantization leaves the GPT's float64 logits unchanged** (1e-10 absolute); twin: a fold
  that forgets the value rows of ``attn.c_attn`` changes them;
* bad input is refused with errors naming the layer and the value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from scale.model import GPT, GPTConfig
from scale.quantize import (
    FOEMSweep,
    GPTQSweep,
    HessianError,
    QuantizedWeight,
    QuantSettings,
    apply_smoothing,
    awq,
    awq_scales,
    fit_groups,
    fit_range,
    foem,
    gptq,
    hessian_from_inputs,
    input_statistics,
    quantizable_linears,
    quantize_codes,
    quantize_model,
    quantize_with,
    rtn,
    smoothing_mappings,
    smoothing_scales,
)

DT = torch.float64


def layer_problem(seed: int, out_f: int = 12, in_f: int = 32, n: int = 400, outlier: bool = False):
    """Correlated inputs ``X = Z A`` (n tokens), optionally one channel times 25, and a weight ~ N(0, 0.1^2)."""
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(n, in_f, generator=g, dtype=DT)
    A = torch.eye(in_f, dtype=DT) + 0.3 * torch.randn(in_f, in_f, generator=g, dtype=DT)
    X = Z @ A
    if outlier:
        X[:, 5] *= 25.0
    W = 0.1 * torch.randn(out_f, in_f, generator=g, dtype=DT)
    return W, X


def layer_error(W, W_hat, X) -> float:
    return float(((X @ (W - W_hat).T) ** 2).sum())


# ------------------------------------------------------------------------------------------ quantizer
def test_degenerate_and_constant_groups_are_finite():
    W = torch.zeros(3, 8, dtype=DT)
    W[1] = 0.7  # constant non-zero group: the range [0, 0.7] includes zero
    W[2] = -2.0
    s, z = fit_groups(W, 4, 4)
    assert torch.isfinite(s).all() and (s > 0).all()
    q = quantize_with(W, s, z, 4, 4)
    qw = QuantizedWeight(q, s, z, None, 4, 4, False)
    assert torch.equal(qw.dequantize()[0], torch.zeros(8, dtype=DT))  # all-zero group: range [-1, 1], exact 0
    assert torch.allclose(qw.dequantize()[1:], W[1:], atol=1e-12)  # the endpoints are representable


def test_ragged_last_group_is_the_remainder():
    W = torch.randn(4, 70, dtype=DT)
    with pytest.raises(ValueError, match="group_size=32 does not divide the input dimension 70"):
        fit_groups(W, 4, 32)
    s, z = fit_groups(W, 4, 32, allow_ragged=True)
    assert s.shape == (4, 3)
    s_last, z_last = fit_range(W[:, 64:], 4, False)  # the last group is exactly the 6 remaining columns
    assert torch.equal(s[:, 2], s_last) and torch.equal(z[:, 2], z_last)
    assert rtn(W, 4, 32, allow_ragged=True).dequantize().shape == W.shape


def test_whole_row_group_and_symmetric_zero():
    W = torch.randn(5, 16, dtype=DT)
    qw = rtn(W, 4, -1)
    assert qw.scales.shape == (5, 1)
    sym = rtn(W, 4, 8, sym=True)
    assert torch.equal(sym.zeros, torch.full_like(sym.zeros, 8.0))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([2, 3, 4, 8]), st.sampled_from([1, 3, 8, -1]), st.booleans())
def test_rounding_error_at_most_half_a_step(seed, bits, group_size, sym):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(6, 24, generator=g, dtype=DT) * torch.rand(6, 1, generator=g, dtype=DT) * 10
    qw = rtn(W, bits, group_size, sym)
    assert int(qw.qweight.min()) >= 0 and int(qw.qweight.max()) <= 2**bits - 1
    cols = qw.column_groups()
    s = qw.scales[:, cols]
    lo = s * (0 - qw.zeros[:, cols])
    hi = s * (2**bits - 1 - qw.zeros[:, cols])
    inside = (W >= lo) & (W <= hi)
    err = (W - qw.dequantize()).abs()
    assert bool((err[inside] <= s[inside] / 2 * (1 + 1e-12)).all())
    if not sym:  # the rounded zero moves the grid by < scale/2, so no value of the group is further away
        assert bool((err <= s / 2 * (1 + 1e-12)).all())


def test_rounding_bound_would_catch_rounding_down():
    W = torch.linspace(-1, 1, 64, dtype=DT).reshape(2, 32) + 0.013
    s, z = fit_groups(W, 4, 16)
    cols = torch.arange(32) // 16
    floor_codes = torch.clamp(torch.floor(W / s[:, cols]) + z[:, cols], 0, 15)
    err = (W - s[:, cols] * (floor_codes - z[:, cols])).abs()
    assert bool((err > s[:, cols] / 2 * (1 + 1e-12)).any())
    nearest = quantize_codes(W, s[:, cols], z[:, cols], 4)
    assert bool(((W - s[:, cols] * (nearest - z[:, cols])).abs() <= s[:, cols] / 2 * (1 + 1e-12)).all())


# ------------------------------------------------------------------------------------------ GPTQ vs OBS
def obs_reference(W, H, bits, group_size, damp, order):
    """Explicit OBS (paper eq. 2-3): quantize columns in ``order``; after each, re-invert the damped Hessian of the
    remaining columns and move them by ``-(w_q - quant(w_q)) / [H_F^-1]_qq * [H_F^-1]_{:,q}``. Groups are the
    ``group_size`` consecutive positions of ``order``, fitted from the current (compensated) weights."""
    W = W.clone()
    H = H.clone()
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H = H + damp * torch.diagonal(H).mean() * torch.eye(H.shape[0], dtype=H.dtype)
    remaining = list(order)
    Q = torch.zeros_like(W)
    row_fit = fit_range(W, bits, False) if group_size == -1 else None
    scale = zero = None
    for k, q in enumerate(order):
        if group_size == -1:
            scale, zero = row_fit
        elif k % group_size == 0:
            scale, zero = fit_range(W[:, list(order[k:k + group_size])], bits, False)
        Hinv = torch.linalg.inv(H[remaining][:, remaining])
        w = W[:, q]
        qv = scale * (torch.clamp(torch.round(w / scale) + zero, 0, 2**bits - 1) - zero)
        W[:, remaining] -= torch.outer((w - qv) / Hinv[0, 0], Hinv[:, 0])
        Q[:, q] = qv
        remaining.pop(0)
    return Q


@pytest.mark.parametrize("group_size,block_size", [(4, 4), (8, 4), (-1, 5), (-1, 32)])
def test_gptq_equals_explicit_obs_loop(group_size, block_size):
    W, X = layer_problem(0, out_f=6, in_f=16, n=200)
    H = hessian_from_inputs(X)
    ours = gptq(W, H, bits=3, group_size=group_size, block_size=block_size, damp=0.01).dequantize()
    ref = obs_reference(W, H, 3, group_size, 0.01, list(range(16)))
    assert torch.allclose(ours, ref, atol=1e-9, rtol=0)


def test_gptq_act_order_parity_through_g_idx_and_would_catch_a_wrong_g_idx():
    W, X = layer_problem(1, out_f=6, in_f=16, n=200, outlier=True)
    X[:, 11] *= 4.0
    H = hessian_from_inputs(X)
    qw = gptq(W, H, bits=3, group_size=4, block_size=4, act_order=True)
    order = torch.argsort(torch.diagonal(H), descending=True).tolist()
    ref = obs_reference(W, H, 3, 4, 0.01, order)
    assert qw.g_idx is not None
    assert torch.allclose(qw.dequantize(), ref, atol=1e-9, rtol=0)
    wrong = QuantizedWeight(qw.qweight, qw.scales, qw.zeros, None, 3, 4, False)  # consecutive groups
    assert not torch.allclose(wrong.dequantize(), ref, atol=1e-6, rtol=0)


def test_dead_input_column_is_zeroed():
    W, X = layer_problem(2, out_f=4, in_f=8, n=100)
    X[:, 3] = 0.0
    qw = gptq(W, hessian_from_inputs(X), bits=4, group_size=-1)
    assert torch.equal(qw.dequantize()[:, 3], torch.zeros(4, dtype=DT) * qw.scales[:, 0])


# ------------------------------------------------------------------------------------------ GPTQ vs RTN
class SignFlippedCompensation(GPTQSweep):
    """Propagates ``+(w - q)/d`` (the sign of the OBS update flipped)."""

    def column_error(self, w, q, w_raw, d):
        return -(w - q) / d


class GroupsFromOriginalWeights(GPTQSweep):
    """The classic mistake: each group's scale/zero from the uncompensated weights."""

    def fit_group(self, W, W_raw, start, stop):
        return fit_range(W_raw[:, start:stop], self.bits, self.sym)


@pytest.mark.parametrize("outlier", [False, True])
def test_gptq_layer_error_at_most_rtn(outlier):
    for seed in range(3):
        W, X = layer_problem(10 + seed, outlier=outlier)
        H = hessian_from_inputs(X)
        e_rtn = layer_error(W, rtn(W, 4, 8).dequantize(), X)
        e_gptq = layer_error(W, gptq(W, H, 4, 8).dequantize(), X)
        assert e_gptq <= e_rtn
        twin = SignFlippedCompensation(4, 8).run(W, H).weight
        assert layer_error(W, twin.dequantize(), X) > e_rtn


def test_group_fit_from_uncompensated_weights_is_strictly_worse():
    """``block_size = group_size``: every group starts a block, so (as in the reference, which fits from ``W``
    and not from the block copy) the fit sees all the compensation so far."""
    for seed in range(4):
        W, X = layer_problem(20 + seed, in_f=64, n=600, outlier=True)
        H = hessian_from_inputs(X)
        right = layer_error(W, GPTQSweep(3, 16, block_size=16).run(W, H).weight.dequantize(), X)
        wrong = layer_error(W, GroupsFromOriginalWeights(3, 16, block_size=16).run(W, H).weight.dequantize(), X)
        assert wrong > right


def test_static_groups_use_consecutive_groups_under_act_order():
    W, X = layer_problem(3, outlier=True)
    qw = gptq(W, hessian_from_inputs(X), 4, 8, act_order=True, static_groups=True)
    assert qw.g_idx is None
    s, z = fit_groups(W, 4, 8)
    assert torch.equal(qw.scales, s) and torch.equal(qw.zeros, z)


# ------------------------------------------------------------------------------------------ FOEM
@pytest.mark.parametrize("act_order", [False, True])
def test_foem_beta_zero_is_gptq_bitwise_and_would_catch_a_nonzero_beta(act_order):
    W, X = layer_problem(4, in_f=48, outlier=True)
    W, X = W.float(), X.float()
    H = hessian_from_inputs(X)
    ref = gptq(W, H, 4, 16, act_order=act_order, block_size=32)
    got = foem(W, H, 4, 16, beta=0.0, act_order=act_order, block_size=32)
    for a, b in ((ref.qweight, got.qweight), (ref.scales, got.scales), (ref.zeros, got.zeros)):
        assert torch.equal(a, b)
    moved = foem(W, H, 4, 16, beta=1e-3, act_order=act_order, block_size=32)
    assert not torch.equal(moved.dequantize(), ref.dequantize())


def test_gptaq_term_lowers_the_asymmetric_error_and_would_catch_a_flipped_statistic():
    """GPTAQ's objective ``||W_hat X_q - W X||`` (X_q: the input the quantized model feeds the layer): the alpha
    term with ``dXXT = 2 (X - X_q)^T X_q / n`` lowers it below GPTQ's; the statistic with the sign flipped raises it."""
    for seed in range(3):
        W, X = layer_problem(30 + seed, in_f=64, n=800)
        g = torch.Generator().manual_seed(seed)
        Xq = X + 0.3 * torch.randn(X.shape, generator=g, dtype=DT) * X.std(0)
        H = hessian_from_inputs(Xq)
        D = 2.0 * (X - Xq).T @ Xq / X.shape[0]

        def err(qw):
            return float(((Xq @ qw.dequantize().T - X @ W.T) ** 2).sum())

        e_gptq = err(gptq(W, H, 4, 16))
        assert err(foem(W, H, 4, 16, beta=0.0, alpha=0.25, dXXT=D)) < e_gptq
        assert err(foem(W, H, 4, 16, beta=0.0, alpha=0.25, dXXT=-D)) > e_gptq


def test_gptaq_term_needs_its_statistic():
    with pytest.raises(ValueError, match="needs dXXT"):
        FOEMSweep(4, 16, alpha=0.25)


# ------------------------------------------------------------------------------------------ AWQ
def test_awq_without_duo_scaling_at_alpha_zero_is_rtn():
    W, X = layer_problem(5, outlier=True)
    assert torch.equal(awq_scales(X.abs().mean(0), None, 0.0), torch.ones(W.shape[1], dtype=DT))
    got = awq(W, X, 4, 8, duo_scaling=False, alpha=0.0).dequantize()
    assert torch.equal(got, rtn(W, 4, 8).dequantize())
    duo = awq(W, X, 4, 8, duo_scaling=True, alpha=0.0).dequantize()
    assert not torch.equal(duo, rtn(W, 4, 8).dequantize())


# ------------------------------------------------------------------------------------------ smoothing
def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=17, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=True)).double().eval()
    with torch.no_grad():  # non-trivial norm gains and shifts
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.add_(0.3 * torch.randn_like(m.weight))
                m.bias.add_(0.1 * torch.randn_like(m.bias))
    return model


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.85])
def test_smoothing_without_quantization_leaves_logits_unchanged(alpha):
    model = tiny_gpt()
    idx = torch.randint(0, 17, (4, 8), generator=torch.Generator().manual_seed(1))
    ref, _ = model(idx)
    windows = torch.randint(0, 17, (6, 9), generator=torch.Generator().manual_seed(2))
    maps = smoothing_mappings(model)
    stats = input_statistics(model, [m.consumers[0][1] for m in maps], windows)
    for m, s in zip(maps, stats):
        apply_smoothing(m, smoothing_scales(s["absmax"].double(), [lin.weight for _, lin in m.consumers], alpha))
    got, _ = model(idx)
    assert torch.allclose(got, ref, atol=1e-10, rtol=0)


def test_smoothing_check_would_catch_a_missing_value_fold():
    model = tiny_gpt()
    idx = torch.randint(0, 17, (4, 8), generator=torch.Generator().manual_seed(1))
    ref, _ = model(idx)
    maps = smoothing_mappings(model)
    v = next(m for m in maps if m.rows is not None)
    s = torch.linspace(0.5, 2.0, v.consumers[0][1].in_features, dtype=DT)
    for _, lin in v.consumers:  # the consumer is rescaled, the value rows are not
        with torch.no_grad():
            lin.weight.mul_(s[None, :])
    got, _ = model(idx)
    assert not torch.allclose(got, ref, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------ bad input
def test_bad_input_is_refused_with_names():
    W = torch.randn(4, 12)
    with pytest.raises(ValueError, match="bits must be one of"):
        rtn(W, bits=5, group_size=4)
    with pytest.raises(HessianError, match=r"blocks\.0\.mlp\.c_fc: the Hessian is not positive definite after "
                                           r"damping \(damp=0\.01"):
        gptq(W, -torch.eye(12), 4, 4, name="blocks.0.mlp.c_fc")
    with pytest.raises(HessianError, match=r"must be \[12, 12\]"):
        gptq(W, torch.eye(8), 4, 4)
    with pytest.raises(ValueError, match="no nn.Linear layer to quantize"):
        quantizable_linears(nn.Sequential(nn.Embedding(4, 3), nn.ReLU()))
    model = tiny_gpt().float()
    windows = torch.randint(0, 17, (4, 9))
    with pytest.raises(ValueError, match=r"group_size=5 does not divide the input dimension 16 for blocks\.0\.attn"):
        quantize_model(model, windows, "gptq", QuantSettings(group_size=5))
    with pytest.raises(ValueError, match="unknown quantization method 'gptx'"):
        quantize_model(model, windows, "gptx")


# ------------------------------------------------------------------------------------------ model level
def test_quantize_model_keeps_the_input_model_and_records_layers():
    model = tiny_gpt().float()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    windows = torch.randint(0, 17, (8, 9), generator=torch.Generator().manual_seed(3))
    res = quantize_model(model, windows, "gptq", QuantSettings(group_size=8))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert list(res.weights) == [n for n, _ in quantizable_linears(model)]
    for name, lin in quantizable_linears(res.model):
        assert torch.equal(lin.weight, res.weights[name].dequantize(lin.weight.dtype))
    assert math.isfinite(res.info["seconds"]) and res.info["sequential"]
    np.testing.assert_equal(len(res.weights), 8)
