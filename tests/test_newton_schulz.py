"""Newton–Schulz orthogonalization and the exact polar factor (optlib.linalg.newton_schulz).

Newton–Schulz acts on singular values only: with ``X_0 = G / (||G||_F + eps)`` and ``G = U diag(s) V^T``,
the output is ``U diag(f(x)) V^T`` where ``x = s / (||G||_F + eps)`` and ``f`` is the composition of the
scalar step polynomials ``p(x) = a x + b x^3 + c x^5``. The tests check the matrix iteration against that
scalar map computed independently in numpy, and the band the map reaches for Keller Jordan's coefficients.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from optlib.linalg import KELLER_COEFFICIENTS, matrix_view, newton_schulz, polar
from optlib.linalg.newton_schulz import ns_coefficient_schedule

CUBIC = (1.5, -0.5, 0.0)  # classical Newton–Schulz: x -> x (3 - x^2) / 2, fixed point 1

# Band of the five-step Keller map f = p o p o p o p o p on x in [X_MIN, 1], measured on a grid of
# 2e5 log-spaced points in float64 (see _keller_band below, which recomputes it in the test):
# min f = 0.68183, max f = 1.20237 (the max over all of (0, 1], reached near x = 0.0041). The blog's
# "S'_ii ~ Uniform(0.5, 1.5)" is the looser envelope; inputs with x < 1.07e-3 fall below 0.5, because
# tiny singular values do not converge in five steps (spec 20, P4).
X_MIN = 2e-3
BAND = (0.68, 1.21)


def _scalar_map(x: np.ndarray, coefficients, steps: int) -> np.ndarray:
    y = np.asarray(x, dtype=np.float64).copy()
    for a, b, c in ns_coefficient_schedule(coefficients, steps):
        y = a * y + b * y**3 + c * y**5
    return y


def _keller_band(x_min: float) -> tuple[float, float]:
    x = np.logspace(math.log10(x_min), 0.0, 200_001)
    y = _scalar_map(x, KELLER_COEFFICIENTS, 5)
    return float(y.min()), float(y.max())


def _with_singular_values(s: np.ndarray, m: int, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    r = len(s)
    U, _ = torch.linalg.qr(torch.randn(m, r, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, r, generator=gen, dtype=torch.float64))
    return (U * torch.as_tensor(s, dtype=torch.float64)) @ V.T


def test_measured_band_matches_the_constant():
    lo, hi = _keller_band(X_MIN)
    assert BAND[0] <= lo < BAND[0] + 0.01 and BAND[1] - 0.01 < hi <= BAND[1]
    # and the whole band lies inside Keller Jordan's documented envelope [0.5, 1.5]
    assert 0.5 <= BAND[0] and BAND[1] <= 1.5


@settings(deadline=None, max_examples=25)
@given(
    m=st.integers(1, 40),
    n=st.integers(1, 40),
    log_cond=st.floats(0.0, 6.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_keller_singular_values_follow_the_scalar_map_and_stay_in_band(m, n, log_cond, seed):
    """NS_5 with Keller's coefficients: sigma_i(out) = f(x_i) exactly (float64), and for x_i >= X_MIN the
    output singular value lies in BAND, inside the blog's envelope [0.5, 1.5]."""
    r = min(m, n)
    rng = np.random.default_rng(seed)
    s = np.sort(10.0 ** rng.uniform(-log_cond, 0.0, size=r))[::-1].copy()
    s[0] = 1.0
    G = _with_singular_values(s, m, n, seed)
    out = newton_schulz(G, steps=5)
    assert out.shape == G.shape and out.dtype == G.dtype
    x = s / (np.linalg.norm(s) + 1e-7)
    predicted = _scalar_map(x, KELLER_COEFFICIENTS, 5)
    sv = torch.linalg.svdvals(out).numpy()
    np.testing.assert_allclose(np.sort(sv), np.sort(predicted), rtol=1e-9, atol=1e-12)
    inside = predicted[x >= X_MIN]
    assert np.all((inside >= BAND[0]) & (inside <= BAND[1]))
    # same singular vectors as the polar factor: out = P diag-scaled, so P^T out is symmetric PSD (m >= n)
    P = polar(G)
    M = P.mT @ out if m >= n else out @ P.mT
    torch.testing.assert_close(M, M.mT, rtol=0, atol=1e-10)


def test_gaussian_matrices_sit_in_the_band():
    """Random Gaussian matrices (the typical gradient) are well inside the range x >= X_MIN."""
    gen = torch.Generator().manual_seed(0)
    for m, n in [(64, 32), (32, 64), (128, 96), (256, 64)]:
        sv = torch.linalg.svdvals(newton_schulz(torch.randn(m, n, generator=gen, dtype=torch.float64)))
        assert BAND[0] <= float(sv.min()) and float(sv.max()) <= BAND[1], (m, n, sv.aminmax())


@pytest.mark.parametrize("shape", [(12, 12), (30, 7), (7, 30), (3, 9, 5)])
def test_cubic_iteration_converges_to_polar(shape):
    """The classical cubic iteration converges to U V^T to 1e-6 (float64; 60 steps from ||X_0||_2 <= 1,
    singular values of X_0 in [0.1/||s||, 1/||s||], kept well away from 0)."""
    gen = torch.Generator().manual_seed(1)
    G = torch.randn(*shape, generator=gen, dtype=torch.float64)
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    s = torch.linspace(1.0, 0.1, min(shape[-2:]), dtype=torch.float64)
    G = (U * s) @ Vh
    out = newton_schulz(G, steps=60, coefficients=CUBIC)
    torch.testing.assert_close(out, polar(G), rtol=0, atol=1e-6)


def test_would_catch_wrong_sign_of_b():
    """Would catch: b = +1/2 instead of -1/2 makes every singular value grow, far from U V^T."""
    gen = torch.Generator().manual_seed(1)
    G = torch.randn(12, 8, generator=gen, dtype=torch.float64)
    wrong = newton_schulz(G, steps=60, coefficients=(1.5, 0.5, 0.0))
    assert not torch.allclose(wrong, polar(G), atol=1e-6)


def test_schedule_equals_repeated_triple_and_is_applied_in_order():
    gen = torch.Generator().manual_seed(2)
    G = torch.randn(10, 6, generator=gen, dtype=torch.float64)
    same = newton_schulz(G, steps=3, coefficients=[KELLER_COEFFICIENTS] * 3)
    torch.testing.assert_close(same, newton_schulz(G, steps=3), rtol=0, atol=0)
    schedule = [(3.0, -2.0, 0.5), CUBIC]
    s = torch.linalg.svdvals(G).numpy()
    x = s / (np.linalg.norm(s) + 1e-7)
    sv = np.sort(torch.linalg.svdvals(newton_schulz(G, steps=2, coefficients=schedule)).numpy())
    np.testing.assert_allclose(sv, np.sort(_scalar_map(x, schedule, 2)), rtol=1e-10)
    reversed_ = np.sort(_scalar_map(x, schedule[::-1], 2))
    assert not np.allclose(sv, reversed_, rtol=1e-6)
    with pytest.raises(ValueError, match="one triple per step"):
        newton_schulz(G, steps=3, coefficients=schedule)
    with pytest.raises(ValueError, match="entry 0"):
        newton_schulz(G, steps=1, coefficients=[(1.0, 2.0)])


def test_batched_equals_loop_and_tall_equals_wide_transposed():
    gen = torch.Generator().manual_seed(3)
    B = torch.randn(4, 2, 9, 5, generator=gen, dtype=torch.float64)
    out = newton_schulz(B)
    loop = torch.stack([torch.stack([newton_schulz(g) for g in row]) for row in B])
    torch.testing.assert_close(out, loop, rtol=0, atol=1e-13)
    torch.testing.assert_close(newton_schulz(B[0, 0].T), out[0, 0].T, rtol=0, atol=1e-13)


def test_zero_matrix_and_dtype_handling():
    assert torch.equal(newton_schulz(torch.zeros(5, 3)), torch.zeros(5, 3))
    assert torch.equal(polar(torch.zeros(2, 5, 3)), torch.zeros(2, 5, 3))
    G = torch.randn(16, 8, generator=torch.Generator().manual_seed(4))
    low = newton_schulz(G, compute_dtype=torch.bfloat16)
    assert low.dtype == torch.float32
    # bf16 iteration: about 3 significant digits of the fp32 one
    assert float((low - newton_schulz(G)).norm() / newton_schulz(G).norm()) < 2e-2


def test_bf16_path_equals_torch_reference_bitwise():
    """With compute_dtype=bfloat16 our iteration performs the same operations as torch.optim.Muon's
    (torch 2.13, torch/optim/_muon.py), so the two outputs are identical."""
    from torch.optim import _muon

    gen = torch.Generator().manual_seed(5)
    for shape in [(64, 32), (32, 64), (48, 48)]:
        G = torch.randn(*shape, generator=gen)
        ref = _muon._zeropower_via_newtonschulz(G, KELLER_COEFFICIENTS, 5, 1e-7)
        assert torch.equal(newton_schulz(G, compute_dtype=torch.bfloat16), ref.to(G.dtype))


def test_polar_rank_deficient():
    """A rank-r matrix gives the partial isometry on its range, which is also the cubic iteration's limit
    while the round-off singular values (~1e-16, multiplied by at most 1.5 per step) stay below 1e-6:
    40 steps, 1.5**40 ~ 1e7."""
    gen = torch.Generator().manual_seed(6)
    G = torch.randn(8, 2, generator=gen, dtype=torch.float64) @ torch.randn(2, 6, generator=gen, dtype=torch.float64)
    P = polar(G)
    assert torch.linalg.matrix_rank(P) == 2
    torch.testing.assert_close(torch.linalg.svdvals(P)[:2], torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(newton_schulz(G, steps=40, coefficients=CUBIC), P, rtol=0, atol=1e-6)


def test_matrix_view_rule():
    conv = torch.randn(8, 3, 5, 5)
    v = matrix_view(conv)
    assert v.shape == (8, 75) and v.data_ptr() == conv.data_ptr()
    torch.testing.assert_close(newton_schulz(v).reshape(conv.shape), newton_schulz(conv.reshape(8, -1)).view_as(conv))
    experts = torch.randn(4, 6, 10)
    assert matrix_view(experts) is experts
    w = torch.randn(6, 10)
    assert matrix_view(w) is w
    for bad in (torch.randn(7), torch.tensor(1.0)):
        with pytest.raises(ValueError, match=r"-D tensor of shape .*muon_param_groups"):
            matrix_view(bad)
    with pytest.raises(ValueError, match="ndim >= 2"):
        newton_schulz(torch.randn(7))
