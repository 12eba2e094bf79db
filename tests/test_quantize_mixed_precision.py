"""Mixed precision by ILP (scale/quantize/mixed_precision.py): the fp4 rounding, the fake-quantized formats, the
sensitivity measurements, and the ILP against brute-force enumeration (both PuLP backends) and the greedy heuristic.

References are independent of the code under test: the fp4 result is checked against a nearest-value search over
the e2m1 grid written here; the first-order loss change against a central finite difference of the loss
re-evaluated along the quantization error (float64 model, step h = 1e-3: the difference is O(h²) ≈ 1e-6 relative,
asserted at 1e-4); the ILP against enumerating every assignment. The first-order estimate is what the method uses; on
this small model the actual loss change for bf16 rounding differs from it by a comparable second-order term, which is
why the check is against the derivative and not against the full change.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from scale.quantize import mixed_precision as mp

BACKENDS = ["cbc", pytest.param("highs", marks=pytest.mark.skipif(importlib.util.find_spec("highspy") is None,
                                                                   reason="highspy is not installed"))]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------------------------


def _nearest_e2m1(v: float) -> set[float]:
    """Every e2m1 value at minimal distance from ``v`` (after saturation to ±6): one value, or two at a tie."""
    grid = [s * g for g in mp.E2M1_VALUES for s in (1.0, -1.0)]
    a = max(-6.0, min(6.0, v))
    best = min(abs(a - g) for g in grid)
    return {g for g in grid if abs(a - g) == best}


def test_round_to_e2m1_is_nearest_with_ties_to_even():
    x = torch.linspace(-8, 8, 641, dtype=torch.float64)  # step 0.025: hits every midpoint exactly
    r = mp.round_to_e2m1(x)
    for v, got in zip(x.tolist(), r.tolist(), strict=True):
        assert got in _nearest_e2m1(v) or (got == 0 and 0.0 in _nearest_e2m1(v)), (v, got)
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.75, -5.0])
    # the neighbour with mantissa bit 0 (0, 1, 2, 4 have it; 0.5, 1.5, 3, 6 do not)
    assert mp.round_to_e2m1(ties).tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, -1.0, -4.0]
    grid = torch.tensor(mp.E2M1_VALUES)
    assert torch.equal(mp.round_to_e2m1(grid), grid) and torch.equal(mp.round_to_e2m1(-grid), -grid)
    assert mp.round_to_e2m1(torch.tensor([1e9, -7.0])).tolist() == [6.0, -6.0]
    with pytest.raises(ValueError, match="NaN"):
        mp.round_to_e2m1(torch.tensor([float("nan")]))


def test_round_to_e2m1_would_catch_round_half_up():
    """Rounding ties upward (the classic mistake) disagrees with ties-to-even at 0.25, 1.25, 2.5 and 5."""
    x = torch.tensor([0.25, 1.25, 2.5, 5.0])
    half_up = torch.tensor([0.5, 1.5, 3.0, 6.0])
    assert not torch.equal(mp.round_to_e2m1(x), half_up)


def test_fake_quantized_errors_are_within_each_formats_rounding_bound():
    W = torch.randn(16, 96, generator=_gen(0), dtype=torch.float64)
    err = {f: (mp.fake_quantize(W, f) - W).abs() for f in mp.FORMATS}
    # bf16: 8 significant bits, relative error <= 2^-8 (unit roundoff)
    assert bool((err["bf16"] <= 2**-8 * W.abs()).all())
    # fp8 e4m3 with a per-tensor scale s = max|W|/448: 4 significant bits (u = 2^-4) for normal values,
    # absolute spacing 2^-9·s below the smallest normal 2^-6·s (half of it bounds the error)
    s = float(W.abs().max()) / 448
    assert bool((err["fp8_e4m3"] <= 2**-4 * W.abs() + 2**-10 * s + 1e-15).all())
    # fp4 e2m1 in blocks of 32 with s = max|block|/6: grid spacing 0.5 up to 2, then 1, then 2
    blocks = W.reshape(16, 3, 32)
    sb = (blocks.abs().amax(-1, keepdim=True) / 6).expand_as(blocks).reshape(16, 96)
    assert bool((err["fp4_e2m1"] <= sb * torch.clamp(W.abs() / sb / 4, min=0.25) + 1e-12).all())
    # int4 g128 over 96 columns is one (ragged) group per row: |w − ŵ| <= scale/2 with scale = range/15
    rng = (W.amax(1).clamp(min=0) - W.amin(1).clamp(max=0))[:, None]
    assert bool((err["int4_g128"] <= rng / 15 / 2 + 1e-12).all())
    norms = {f: float(e.norm()) for f, e in err.items()}
    assert norms["bf16"] < norms["fp8_e4m3"] < norms["fp4_e2m1"]
    with pytest.raises(ValueError, match="unknown format 'fp6'"):
        mp.fake_quantize(W, "fp6")


# --------------------------------------------------------------------------------------------------------------
# Sensitivities
# --------------------------------------------------------------------------------------------------------------


def _model_and_batches(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(), nn.Linear(24, 4)).double()
    g = _gen(seed + 1)
    batches = [(torch.randn(32, 8, generator=g, dtype=torch.float64),
                torch.randn(32, 4, generator=g, dtype=torch.float64)) for _ in range(2)]
    return model, batches


def _loss(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def _loss_with(model, batches, layer, weight):
    original = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.copy_(weight)
        value = sum(float(_loss(model, b)) for b in batches) / len(batches)
        layer.weight.copy_(original)
    return value


def test_loss_divergence_is_the_first_order_loss_change():
    model, batches = _model_and_batches()
    table = mp.measure_sensitivity(model, _loss, batches, formats=("bf16", "fp8_e4m3"))
    assert table.layers == ["0", "2", "4"]
    layers = [model[0], model[2], model[4]]
    h = 1e-3
    for i, layer in enumerate(layers):
        W = layer.weight.detach().clone()
        for j, fmt in enumerate(table.formats):
            delta = mp.fake_quantize(W, fmt) - W
            # central difference of the loss along the quantization error: the directional derivative, O(h²)
            slope = (_loss_with(model, batches, layer, W + h * delta)
                     - _loss_with(model, batches, layer, W - h * delta)) / (2 * h)
            estimate = table.loss_change_first_order[i, j]
            assert estimate == pytest.approx(slope, rel=1e-4), (table.layers[i], fmt)
            # would catch: averaging over the batches twice (the output gradients already carry the 1/batches
            # of the mean loss), and the inputs or output gradients of another layer
            assert estimate / len(batches) != pytest.approx(slope, rel=1e-4)
            assert table.loss_change_first_order[(i + 1) % 3, j] != pytest.approx(slope, rel=1e-4)
    assert np.array_equal(table.loss_divergence, np.abs(table.loss_change_first_order))
    assert (table.weight_divergence > 0).all()
    assert table.n_params.tolist() == [192.0, 576.0, 96.0] and table.flops.tolist() == [384.0, 1152.0, 192.0]
    # the model is left as it was
    assert all(p.grad is None for p in model.parameters())


def test_a_format_that_represents_the_weights_exactly_has_zero_divergence():
    model, batches = _model_and_batches(1)
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.copy_(m.weight.to(torch.bfloat16).double())
    table = mp.measure_sensitivity(model, _loss, batches, formats=("bf16", "fp4_e2m1"))
    assert (table.loss_change_first_order[:, 0] == 0).all() and (table.weight_divergence[:, 0] == 0).all()
    assert (table.loss_divergence[:, 1] > 0).all() and (table.weight_divergence[:, 1] > 0).all()


def test_sensitivity_refusals():
    model, batches = _model_and_batches()
    with pytest.raises(ValueError, match="no nn.Linear"):
        mp.measure_sensitivity(nn.Sequential(nn.Tanh()), _loss, batches)
    with pytest.raises(ValueError, match="at least one calibration batch"):
        mp.measure_sensitivity(model, _loss, [])
    with pytest.raises(ValueError, match="unknown"):
        mp.measure_sensitivity(model, _loss, batches, formats=("bf16", "int3"))
    with pytest.raises(ValueError, match="'1' is not an nn.Linear"):
        mp.measure_sensitivity(model, _loss, batches, layers=["1"])


# --------------------------------------------------------------------------------------------------------------
# The ILP against brute force and greedy
# --------------------------------------------------------------------------------------------------------------

BITS = np.array([16.0, 8.0, 4.5, 4.15625])


def _instance(n_layers: int, seed: int, fraction: float):
    """Scores that fall with the bits spent (as measured divergences do), sizes of random layers, and a budget at
    ``fraction`` of the way from the cheapest to the dearest assignment."""
    rng = np.random.default_rng(seed)
    params = rng.integers(1_000, 50_000, size=n_layers).astype(float)
    costs = params[:, None] * BITS[None, :]
    scores = rng.random((n_layers, 1)) * np.array([1.0, 5.0, 30.0, 20.0]) * rng.uniform(0.5, 1.5, (n_layers, 4))
    lo, hi = costs.min(1).sum(), costs.max(1).sum()
    return scores, costs, lo + fraction * (hi - lo)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_layers,seed,fraction", [(1, 0, 0.5), (3, 1, 0.3), (5, 2, 0.6), (8, 3, 0.2),
                                                    (8, 4, 0.45), (8, 5, 0.8)])
def test_ilp_optimum_equals_brute_force(backend, n_layers, seed, fraction):
    scores, costs, budget = _instance(n_layers, seed, fraction)
    ilp = mp.solve_ilp(scores, costs, budget, backend=backend)
    exact = mp.brute_force(scores, costs, budget)
    assert ilp.cost <= budget * (1 + 1e-9)
    assert ilp.objective == pytest.approx(exact.objective, rel=1e-9, abs=1e-12)
    # would catch: a solver that dropped the budget row returns the unconstrained optimum, which is infeasible here
    unconstrained = mp.brute_force(scores, costs, float(costs.max(1).sum()))
    if n_layers > 1:
        assert unconstrained.cost > budget and unconstrained.objective < exact.objective
    # pinning: the first and last layers fixed to bf16 (index 0) when the budget allows it
    allowed = np.ones_like(scores, dtype=bool)
    allowed[[0, -1], 1:] = False
    pinned_budget = max(budget, mp.min_feasible_budget(costs, allowed) * 1.05)
    ilp_p = mp.solve_ilp(scores, costs, pinned_budget, allowed, backend=backend)
    exact_p = mp.brute_force(scores, costs, pinned_budget, allowed)
    assert ilp_p.choice[0] == 0 and ilp_p.choice[-1] == 0
    assert ilp_p.objective == pytest.approx(exact_p.objective, rel=1e-9, abs=1e-12)


def test_greedy_is_feasible_and_never_better_than_the_ilp():
    gaps = []
    for seed in range(12):
        scores, costs, budget = _instance(6, 100 + seed, 0.1 + 0.07 * seed)
        best = mp.solve_ilp(scores, costs, budget)
        heuristic = mp.greedy(scores, costs, budget)
        assert heuristic.cost <= budget * (1 + 1e-12)
        assert heuristic.objective >= best.objective - 1e-12
        gaps.append(heuristic.objective - best.objective)
    assert max(gaps) > 0  # the heuristic is not exact on these instances: the comparison is not vacuous


def test_infeasible_budget_names_the_smallest_feasible_budget():
    scores, costs, _ = _instance(4, 7, 0.5)
    smallest = float(sum(min(row) for row in costs.tolist()))
    for solve in (mp.solve_ilp, mp.brute_force, mp.greedy):
        with pytest.raises(mp.InfeasibleBudgetError, match=f"smallest feasible budget {smallest:.6g}") as info:
            solve(scores, costs, 0.9 * smallest)
        assert info.value.min_budget == pytest.approx(smallest)
    assert mp.solve_ilp(scores, costs, smallest).choice == tuple(np.argmin(costs, axis=1))
    with pytest.raises(ValueError, match="backend must be one of"):
        mp.solve_ilp(scores, costs, smallest, backend="glpk")
    with pytest.raises(ValueError, match="at most 8|refusing 9"):
        mp.brute_force(np.ones((9, 2)), np.ones((9, 2)), 100.0)


def _table(n_layers: int = 5, seed: int = 0) -> mp.SensitivityTable:
    rng = np.random.default_rng(seed)
    n_params = rng.integers(100, 1000, n_layers).astype(float)
    grow = np.array([1.0, 4.0, 30.0, 20.0])
    return mp.SensitivityTable([f"l{i}" for i in range(n_layers)], list(mp.FORMATS),
                               rng.uniform(0.5, 1.5, (n_layers, 4)) * grow * 1e-3,
                               rng.uniform(0.5, 1.5, (n_layers, 4)) * grow * 1e-2, n_params, 2 * n_params)


@pytest.mark.parametrize("backend", BACKENDS)
def test_choose_formats_budget_pins_and_errors(backend):
    table = _table()
    # rho = 1 allows all-bf16, which has the smallest score everywhere
    plan = mp.choose_formats(table, 1.0, backend=backend)
    assert set(plan.formats.values()) == {"bf16"} and plan.relative_cost == pytest.approx(1.0)
    plan = mp.choose_formats(table, 0.7, pin_first_last="bf16", backend=backend)
    assert plan.formats["l0"] == "bf16" and plan.formats["l4"] == "bf16"
    assert plan.relative_cost <= 0.7 + 1e-9 and plan.greedy_objective >= plan.objective - 1e-12
    flops_plan = mp.choose_formats(table, 0.5, budget_kind="flops", backend=backend)
    assert flops_plan.relative_cost <= 0.5 + 1e-9
    # all at int4 g128 (4 + 20/128 of 16 bits), the cheapest, except the pinned ends at bf16
    n = table.n_params
    smallest = (16 * (n[0] + n[4]) + 4.15625 * n[1:4].sum()) / (16 * n.sum())
    with pytest.raises(mp.InfeasibleBudgetError, match=f"smallest feasible rho={smallest:.6g}"):
        mp.choose_formats(table, 0.2, pin_first_last="bf16", backend=backend)
    with pytest.raises(ValueError, match="budget_kind"):
        mp.choose_formats(table, 0.5, budget_kind="latency")
    with pytest.raises(ValueError, match="pinned layer 'l9'"):
        mp.choose_formats(table, 0.5, pinned={"l9": "bf16"})


def test_measure_then_choose_end_to_end():
    model, batches = _model_and_batches(2)
    table = mp.measure_sensitivity(model, _loss, batches)
    plan = mp.choose_formats(table, 0.6, pin_first_last="bf16")
    assert list(plan.formats) == ["0", "2", "4"] and plan.formats["0"] == plan.formats["4"] == "bf16"
    assert plan.relative_cost <= 0.6 + 1e-9 and plan.formats["2"] != "bf16"
    assert sum(plan.counts().values()) == 3
