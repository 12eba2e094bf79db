"""Unit tests for Drop-Muon: cutoff samplers, the truncated forward pass, cost accounting, the optimizer
(parity with Muon, frozen layers, radius rules, state_dict) and the layered test problems."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from optlib.optim import Muon
from optlib.optim.drop_muon import DropMuon, layer_param_groups
from optlib.optim.progressive import (
    BlockCosts,
    CutoffSampler,
    block_costs,
    epoch_shift,
    inclusion_probabilities,
    linear_shift,
    progressive_forward,
)
from optlib.problems.layered import (
    concat_blocks,
    deep_linear_network,
    exponential_blocks,
    layered_quadratic,
    log_sum_exp_blocks,
)

# ------------------------------------------------------------------------------------------------
# Samplers
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", ["uniform", [0.1, 0.2, 0.3, 0.4], [0.7, 0.0, 0.3, 0.0]])
def test_sampler_frequencies_match_p(p):
    n = 20_000
    sampler = CutoffSampler(4, p, seed=1)
    freq = np.bincount(sampler.sample_many(n), minlength=4) / n
    probs = sampler.probabilities()
    se = np.sqrt(probs * (1 - probs) / n)
    assert np.all(np.abs(freq - probs) <= 4 * se + 1e-12)
    single = np.bincount([sampler.sample() for _ in range(4000)], minlength=4) / 4000
    assert np.all(np.abs(single - probs) <= 4 * np.sqrt(probs * (1 - probs) / 4000) + 1e-12)


def test_inclusion_probabilities():
    q = inclusion_probabilities([0.5, 0.3, 0.2])
    assert np.allclose(q, [0.5, 0.8, 1.0]) and q[-1] == 1.0
    assert np.allclose(CutoffSampler(4).inclusion_probabilities(), [0.25, 0.5, 0.75, 1.0])


@pytest.mark.parametrize(
    "p, match",
    [([0.5, 0.6, 0.0], "sum to 1"), ([1.2, -0.2, 0.0], "negative"), ([0.5, 0.5], "one entry per layer"),
     ([np.nan, 0.5, 0.5], "non-finite"), ("geometric", "unknown")],
)
def test_sampler_validation(p, match):
    with pytest.raises(ValueError, match=match):
        CutoffSampler(3, p)


def test_sampler_callable_validated():
    with pytest.raises(ValueError, match="one entry per layer"):
        CutoffSampler(3, lambda progress: [0.5, 0.5])
    bad = CutoffSampler(3, lambda progress: [1.0, 0.0, 0.0] if progress < 0.5 else [0.9, 0.0, 0.0])
    with pytest.raises(ValueError, match="sum to 1"):
        bad.sample(progress=0.9)
    with pytest.raises(ValueError):
        CutoffSampler(0)


def test_epoch_shift_schedule():
    sched = epoch_shift(4, alpha=0.5)
    for pr in (0.0, 0.3, 1.0):
        p = sched(pr)
        assert p.sum() == pytest.approx(1.0) and np.all(p > 0)
    assert np.all(np.diff(sched(0.0)) < 0) and np.all(np.diff(sched(1.0)) > 0)  # shallow -> deep
    i = np.arange(4)
    w = np.exp(0.5 * ((1 - 0.3) * (3 - i) + 0.3 * i))
    assert np.allclose(sched(0.3), w / w.sum())
    sampler = CutoffSampler(4, sched, seed=0)
    assert np.mean(sampler.sample_many(4000, progress=0.0)) < np.mean(sampler.sample_many(4000, progress=1.0))


def test_linear_shift_schedule():
    sched = linear_shift(3)
    assert np.allclose(sched(0.0), [1, 0, 0]) and np.allclose(sched(1.0), [1 / 3] * 3)
    assert np.allclose(sched(0.5), [2 / 3, 1 / 6, 1 / 6])


def test_sampler_state_round_trip():
    a = CutoffSampler(5, seed=3)
    a.sample_many(7)
    state = a.state_dict()
    first = a.sample_many(20)
    b = CutoffSampler(5, seed=99)
    b.load_state_dict(state)
    assert np.array_equal(first, b.sample_many(20))


# ------------------------------------------------------------------------------------------------
# progressive_forward and costs
# ------------------------------------------------------------------------------------------------


def _blocks(seed=0):
    torch.manual_seed(seed)
    return nn.ModuleList([
        nn.Sequential(nn.Linear(6, 8), nn.Tanh()),
        nn.Sequential(nn.Linear(8, 8), nn.Tanh()),
        nn.Sequential(nn.Linear(8, 5), nn.Tanh()),
        nn.Linear(5, 2),
    ]).double()


@pytest.mark.parametrize("s", [0, 1, 2, 3])
def test_progressive_forward_truncates_backward(s):
    blocks = _blocks()
    x = torch.randn(10, 6, dtype=torch.float64)
    out_full = x
    for blk in blocks:
        out_full = blk(out_full)
    out_full.square().sum().backward()
    full = {name: p.grad.clone() for name, p in blocks.named_parameters()}
    blocks.zero_grad(set_to_none=True)
    out = progressive_forward(blocks, x, s)
    assert torch.equal(out, out_full.detach())
    out.square().sum().backward()
    for j, blk in enumerate(blocks):
        for name, p in blk.named_parameters():
            if j < s:
                assert p.grad is None  # P3: frozen parameters get no gradient at all
            else:
                assert torch.allclose(p.grad, full[f"{j}.{name}"], rtol=1e-12, atol=1e-14)


def test_progressive_forward_builds_no_graph_below_s():
    blocks = _blocks()
    seen = []
    for j, blk in enumerate(blocks):
        blk.register_forward_hook(lambda mod, args, out, j=j: seen.append((j, out.requires_grad)))
    progressive_forward(blocks, torch.randn(3, 6, dtype=torch.float64), 2)
    assert seen == [(0, False), (1, False), (2, True), (3, True)]


def test_progressive_forward_bad_cutoff():
    blocks = _blocks()
    for s in (-1, 4, 1.5, True):
        with pytest.raises(ValueError, match="cutoff"):
            progressive_forward(blocks, torch.randn(2, 6, dtype=torch.float64), s)


def test_block_costs_linear_and_conv():
    blocks = [nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),
              nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 10))]
    costs = block_costs(blocks, torch.randn(2, 1, 8, 8))
    conv = 2.0 * (2 * 4 * 8 * 8) * (1 * 9)
    lin = 2.0 * 2 * 256 * 10
    assert costs.forward == (conv, lin)
    assert costs.backward(0) == conv + 2 * lin  # the input gradient of block 0 is not needed
    assert costs.backward(1) == lin
    assert costs.step(1) == conv + 2 * lin
    assert costs.expected_step([0.5, 0.5]) == pytest.approx(0.5 * costs.step(0) + 0.5 * costs.step(1))
    assert BlockCosts.layers_backpropagated(1, 2) == 1
    with pytest.raises(ValueError):
        costs.backward(2)


# ------------------------------------------------------------------------------------------------
# DropMuon
# ------------------------------------------------------------------------------------------------


def _params(seed=0, shapes=((8, 6), (6, 6), (3, 4, 5), (4, 2, 3, 3))):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) for s in shapes]


def _groups(params):
    return [{"params": [p], "layer": i} for i, p in enumerate(params)]


def _grads(params, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=g) for p in params]


@pytest.mark.parametrize("options", [
    {},
    {"weight_decay": 0.1, "nesterov": False},
    {"momentum_style": "sum", "adjust_lr": "moonshot"},
    {"orthogonalizer": "svd", "ns_dtype": None},
])
def test_parity_c_drop_muon_with_p_on_first_layer_equals_muon(options):
    """Spec 20 Parity (c): cutoff always 0, Keller momentum, constant radius: bit-for-bit Muon."""
    init = _params()
    a = [nn.Parameter(w.clone()) for w in init]
    b = [nn.Parameter(w.clone()) for w in init]
    muon = Muon(a, lr=0.03, **options)
    drop = DropMuon(_groups(b), lr=0.03, sampler=[1.0, 0.0, 0.0, 0.0], seed=0, **options)
    for k in range(4):
        for pa, pb, g in zip(a, b, _grads(init, k)):
            pa.grad, pb.grad = g.clone(), g.clone()
        muon.step()
        drop.sample_cutoff()
        drop.step()
    for pa, pb in zip(a, b):
        assert torch.equal(pa, pb)
        assert torch.equal(muon.state[pa]["momentum_buffer"], drop.state[pb]["momentum_buffer"])
    assert drop.state["drop_muon"]["cutoff_history"] == [0] * 4


def test_paper_momentum_form_maps_to_keller_ema():
    """P1: the paper's M <- (1-beta) M + beta g equals Keller's EMA with momentum = 1 - beta, no Nesterov."""
    init = _params(shapes=((8, 6), (6, 6)))
    a = [nn.Parameter(w.clone().double()) for w in init]
    b = [nn.Parameter(w.clone().double()) for w in init]
    paper = DropMuon(_groups(a), lr=0.05, new_weight=0.3, orthogonalizer="svd", ns_dtype=None)
    keller = DropMuon(_groups(b), lr=0.05, momentum=0.7, nesterov=False, orthogonalizer="svd", ns_dtype=None)
    for k in range(5):
        for pa, pb, g in zip(a, b, _grads(init, k)):
            pa.grad, pb.grad = g.double(), g.double()
        paper.step(cutoff=0)
        keller.step(cutoff=0)
    for pa, pb in zip(a, b):
        assert torch.allclose(pa, pb, rtol=0, atol=1e-12)
        assert torch.allclose(paper.state[pa]["momentum_buffer"], keller.state[pb]["momentum_buffer"], atol=1e-14)


def test_frozen_groups_untouched_even_with_a_gradient():
    params = [nn.Parameter(w) for w in _params()]
    opt = DropMuon(_groups(params), lr=0.05)
    for p, g in zip(params, _grads(params, 0)):
        p.grad = g
    opt.step(cutoff=0)
    grads = _grads(params, 1)
    for p, g in zip(params, grads):
        p.grad = g.clone()
    snap = [(p.detach().clone(), opt.state[p]["momentum_buffer"].clone()) for p in params]
    opt.step(cutoff=2)
    for i, (p, (w, m)) in enumerate(zip(params, snap)):
        if i < 2:
            assert torch.equal(p, w) and torch.equal(opt.state[p]["momentum_buffer"], m)
            assert torch.equal(p.grad, grads[i])  # grads are not read or modified (P5)
        else:
            assert not torch.equal(p, w)
    log = opt.state["drop_muon"]
    assert log["frozen_with_grad"] == 2  # a full backward pass was wasted on the frozen layers
    assert log["layers_updated"] == [4, 2] and log["cutoff_history"] == [0, 2]


def test_training_loop_with_progressive_forward_and_adamw():
    blocks = _blocks()
    muon_groups, other = layer_param_groups(blocks)
    assert [g["layer"] for g in muon_groups] == [0, 1, 2, 3] and [g["layer"] for g in other] == [0, 1, 2, 3]
    costs = block_costs(blocks, torch.randn(16, 6, dtype=torch.float64))
    opt = DropMuon(muon_groups, lr=0.02, sampler="uniform", seed=0, ns_dtype=None, costs=costs)
    aux = torch.optim.AdamW(other, lr=1e-2)
    x, y = torch.randn(16, 6, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    for _ in range(6):
        s = opt.sample_cutoff()
        before = [p.detach().clone() for p in blocks[:s].parameters()]
        loss = (progressive_forward(blocks, x, s) - y).square().mean()
        opt.zero_grad(set_to_none=True)
        aux.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        aux.step()
        assert all(torch.equal(p, w) for p, w in zip(blocks[:s].parameters(), before))  # biases froze too (P8)
    log = opt.state["drop_muon"]
    assert log["frozen_with_grad"] == 0
    assert log["backward_flops"] == [costs.backward(s) for s in log["cutoff_history"]]
    assert log["layers_updated"] == [4 - s for s in log["cutoff_history"]]


def test_radius_rules():
    torch.manual_seed(0)
    P = nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    G = torch.randn(5, 3, dtype=torch.float64)
    nuc = float(torch.linalg.matrix_norm(G, ord="nuc"))
    for rule, extra, expected in [("smooth", {"L": 4.0}, nuc / 4.0),
                                  ("l0l1", {"L0": 2.0, "L1": 0.5}, nuc / (2 + 0.5 * nuc)),
                                  ("l0l1", {"L0": 0.0, "L1": 2.0}, 0.5)]:
        p = nn.Parameter(P.detach().clone())
        opt = DropMuon([{"params": [p], "layer": 0, "radius": rule, **extra}], new_weight=1.0,
                       orthogonalizer="svd", ns_dtype=None)
        p.grad = G.clone()
        opt.step(cutoff=0)
        assert opt.state[p]["radius"] == pytest.approx(expected, rel=1e-12)
        U, _, Vh = torch.linalg.svd(G, full_matrices=False)
        assert torch.allclose(p.detach(), P.detach() - expected * U @ Vh, atol=1e-12)


def test_state_dict_round_trip():
    init = _params()
    a = [nn.Parameter(w.clone()) for w in init]
    opt = DropMuon(_groups(a), lr=0.03, sampler=[0.4, 0.3, 0.2, 0.1], seed=5, costs=[4.0, 3.0, 2.0, 1.0])

    def run(opt, params, ks):
        for k in ks:
            opt.sample_cutoff()
            for p, g in zip(params, _grads(init, k)):
                p.grad = g
            opt.step()

    run(opt, a, range(3))
    pending = opt.sample_cutoff()  # a draw made before the save is the next step's cutoff after the load
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # as on disk: no tensor shared with `opt`
    buffer.seek(0)
    sd = torch.load(buffer, weights_only=False)
    b = [nn.Parameter(p.detach().clone()) for p in a]
    opt2 = DropMuon(_groups(b), lr=0.03, sampler=[0.4, 0.3, 0.2, 0.1], seed=123, costs=[4.0, 3.0, 2.0, 1.0])
    opt2.load_state_dict(sd)
    for o, params in ((opt, a), (opt2, b)):
        for p, g in zip(params, _grads(init, 3)):
            p.grad = g
        o.step()
    run(opt, a, range(4, 7))
    run(opt2, b, range(4, 7))
    assert all(torch.equal(pa, pb) for pa, pb in zip(a, b))
    assert opt.state["drop_muon"] == opt2.state["drop_muon"]
    assert opt2.state["drop_muon"]["cutoff_history"][3] == pending
    assert len(opt.state["drop_muon"]["backward_flops"]) == 7


def test_step_needs_the_cutoff_drawn_before_the_forward_pass():
    """The cutoff contract: with a sampler, step() without a pending sample_cutoff() draw and without cutoff=
    raises and changes nothing; sample_cutoff() then step(), or step(cutoff=s), are the documented ways;
    without a sampler step() is a full step (Muon's)."""
    init = _params()
    a = [nn.Parameter(w.clone()) for w in init]
    opt = DropMuon(_groups(a), lr=0.03, sampler="uniform", seed=0)
    for p, g in zip(a, _grads(init, 0)):
        p.grad = g
    with pytest.raises(RuntimeError, match=r"sample_cutoff\(progress\) before the forward pass.*step\(cutoff=s\)"):
        opt.step()
    assert all(torch.equal(p, w) for p, w in zip(a, init)) and not any(p in opt.state for p in a)
    assert "drop_muon" not in opt.state
    s = opt.sample_cutoff()
    with pytest.raises(ValueError, match=f"sample_cutoff\\(\\) drew {s}"):
        opt.step(cutoff=(s + 1) % 4)  # a cutoff other than the drawn one
    opt.step()
    opt.step(cutoff=2)
    assert opt.state["drop_muon"]["cutoff_history"] == [s, 2]
    with pytest.raises(RuntimeError, match="sample_cutoff"):
        opt.step()  # a draw serves one step only

    # sampler=None is the full-step mode: bit for bit Muon.
    b, c = [nn.Parameter(w.clone()) for w in init], [nn.Parameter(w.clone()) for w in init]
    full, muon = DropMuon(_groups(b), lr=0.03), Muon(c, lr=0.03)
    for k in range(3):
        for pb, pc, g in zip(b, c, _grads(init, k)):
            pb.grad, pc.grad = g.clone(), g.clone()
        full.step()
        muon.step()
    assert all(torch.equal(pb, pc) for pb, pc in zip(b, c))
    assert full.state["drop_muon"]["cutoff_history"] == [0, 0, 0]


@pytest.mark.parametrize("groups, kwargs, match", [
    ([{"params": [nn.Parameter(torch.randn(3, 3))]}], {}, "layer"),
    ([{"params": [nn.Parameter(torch.randn(3, 3))], "layer": -1}], {}, "layer"),
    ([{"params": [nn.Parameter(torch.randn(3))], "layer": 0}], {}, "AdamW"),
    ([{"params": [nn.Parameter(torch.randn(3, 3))], "layer": 0}], {"radius": "huge"}, "radius"),
    ([{"params": [nn.Parameter(torch.randn(3, 3))], "layer": 0}], {"radius": "smooth"}, "L"),
    ([{"params": [nn.Parameter(torch.randn(3, 3))], "layer": 0}], {"radius": "l0l1", "L0": 1.0}, "L0 and L1"),
    ([{"params": [nn.Parameter(torch.randn(3, 3))], "layer": 0}], {"radius": "l0l1", "L0": 0.0, "L1": 0.0}, "both"),
    ([{"params": [nn.Parameter(torch.randn(3, 3))], "layer": 0}], {"new_weight": 1.5}, "new_weight"),
    ([{"params": [nn.Parameter(torch.randn(3, 3))], "layer": 0}], {"new_weight": 0.5, "nesterov": True}, "nesterov"),
    ([{"params": [nn.Parameter(torch.randn(3, 3))], "layer": 0}], {"lr": -1.0}, "lr"),
    ([{"params": [nn.Parameter(torch.randn(3, 3))], "layer": 0}], {"momentum": 1.0}, "momentum"),
    ([{"params": [nn.Parameter(torch.randn(3, 3))], "layer": 1}], {"sampler": [0.5, 0.6]}, "sum to 1"),
    ([{"params": [nn.Parameter(torch.randn(3, 3))], "layer": 1}], {"costs": [1.0]}, "costs"),
    ([{"params": [nn.Parameter(torch.randn(3, 3))], "layer": 1}], {"num_layers": 1}, "num_layers"),
])
def test_bad_input(groups, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DropMuon(groups, **kwargs)


def test_bad_input_plain_params_and_cutoff():
    with pytest.raises(ValueError, match="param-group dicts"):
        DropMuon([nn.Parameter(torch.randn(3, 3))])
    p = nn.Parameter(torch.randn(3, 3))
    opt = DropMuon([{"params": [p], "layer": 0}])
    p.grad = torch.randn(3, 3)
    for s in (1, -1, 0.5):
        with pytest.raises(ValueError, match="cutoff"):
            opt.step(cutoff=s)
    with pytest.raises(RuntimeError, match="sampler"):
        opt.sample_cutoff()
    p.grad = torch.full((3, 3), float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        opt.step(cutoff=0)


# ------------------------------------------------------------------------------------------------
# Layered problems
# ------------------------------------------------------------------------------------------------


def test_layered_quadratic_constants():
    prob = layered_quadratic(((6, 4), (3, 5)), a=(2.0, 0.5))
    assert prob.L == (8.0, 1.5) and prob.mu == (2.0, 0.5) and prob.f_inf == 0.0
    G = prob.grads(prob.x0)
    for Gi, X, T, a in zip(G, prob.x0, prob.data["targets"], (2.0, 0.5)):
        assert torch.allclose(Gi, a * (X - T))
    assert prob.value(prob.data["targets"]) == 0.0
    with pytest.raises(ValueError, match="layers"):
        prob.value(prob.x0[:1])
    with pytest.raises(ValueError, match="shape"):
        prob.value([prob.x0[1], prob.x0[0]])
    with pytest.raises(ValueError):
        layered_quadratic(start="sideways")


def test_deep_linear_hand_gradients_match_autograd():
    prob = deep_linear_network(seed=4)
    auto = dataclasses.replace(prob, vg_fn=None)
    Xs = [x + 0.1 for x in prob.x0]
    f1, g1 = prob.value_and_grads(Xs)
    f2, g2 = auto.value_and_grads(Xs)
    assert f1 == pytest.approx(f2, rel=1e-13)
    assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-14) for a, b in zip(g1, g2))
    assert prob.value(prob.data["teacher"]) == pytest.approx(0.0, abs=1e-25)


def test_exponential_and_lse_constants():
    prob = exponential_blocks((3, 4), seed=2)
    x = prob.x0
    G = prob.grads(x)
    for i, (u, Gi) in enumerate(zip(prob.data["u"], G)):
        def block(z, i=i):
            return prob.block_fns([z if j == i else x[j] for j in range(2)])[i]

        H = torch.autograd.functional.hessian(block, x[i])
        H = H.reshape(u.numel(), u.numel())
        assert float(torch.linalg.matrix_norm(H, ord=2)) == pytest.approx(prob.L1[i] * float(Gi.norm()), rel=1e-10)
    lse = log_sum_exp_blocks((3,), seed=1)
    z = lse.x0[0]
    H = torch.autograd.functional.hessian(lambda v: lse.fn([v]), z).reshape(3, 3)
    assert float(torch.linalg.matrix_norm(H, ord=2)) <= lse.L0[0]
    both = concat_blocks(prob, lse)
    assert both.num_layers == 3 and both.L is None and both.L1 == (*prob.L1, 0.0)
    assert both.value(both.x0) == pytest.approx(prob.value(prob.x0) + lse.value(lse.x0))
    assert math.isfinite(both.value(both.x0))
