"""The bilevel benchmark: the tasks are well-posed stochastic bilevel problems and the smoke run produces a table."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F

from optlib.bilevel.hypergradient import hypergradient
from optlib.problems.bilevel_tasks import (
    PLAYS,
    hyper_cleaning,
    hyper_representation,
    l2_hyperparameters,
    speaker_lines,
    text_hyper_cleaning,
)
from scale.bench import bilevel as bb


@pytest.mark.parametrize("make", [lambda: hyper_cleaning(n_train=100, n_val=50, seed=3),
                                  lambda: l2_hyperparameters(seed=3),
                                  lambda: hyper_representation(n_train=100, n_val=50, width=6, seed=3)])
def test_tasks_are_stochastic_and_seeded(make):
    a, b = make(), make()
    p = a.problem
    assert p.stochastic and p.nx == a.info["nx"] and p.ny == a.info["ny"]
    ub1, lb1 = p.batches(torch.Generator().manual_seed(0))
    ub2, lb2 = b.problem.batches(torch.Generator().manual_seed(0))
    assert torch.equal(ub1[0], ub2[0]) and torch.equal(lb1[0], lb2[0])
    # the lower level is strongly convex: the full-batch Hessian's smallest eigenvalue >= mu
    idx = torch.arange(p.finite_sum[1])
    H = p.lower_hessian(p.x0, p.y0, (idx,))
    ev = torch.linalg.eigvalsh(0.5 * (H + H.T))
    assert float(ev.min()) >= p.constants.mu * (1 - 1e-9)
    if p.constants.l_g1 is not None:
        assert float(ev.max()) <= p.constants.l_g1
    assert set(a.evaluate(p.x0, p.y0)) == {"test_acc", "test_loss", "val_loss"}


def test_cleaning_flips_labels_and_hypergradient_estimators_agree():
    t = hyper_cleaning(n_train=80, n_val=40, flip=0.4, reg=0.1, seed=1)
    assert t.info["flipped"] > 15
    p = t.problem
    full = ((torch.arange(40),), (torch.arange(80),))
    y = p.y0
    for _ in range(300):
        y = y - 1.0 * p.lower_grad(p.x0, y, full[1])
    exact = hypergradient(p, p.x0, y, "exact", upper_batch=full[0], lower_batch=full[1]).grad
    cg = hypergradient(p, p.x0, y, "cg", upper_batch=full[0], lower_batch=full[1]).grad
    assert torch.allclose(exact, cg, rtol=1e-5, atol=1e-10)


def test_smoke_run_summary_and_outputs(tmp_path):
    cfg = bb.Config(**bb.PRESETS["smoke"], out=tmp_path)
    assert bb._run(cfg) == 0
    data = json.loads((tmp_path / bb.JSON_NAME).read_text())
    summ = data["tasks"]["cleaning"]["summary"]
    assert summ["best_baseline"] == "soba" and set(summ["rows"]) == {"bo-rep", "soba"}
    for m in ("bo-rep", "soba"):
        run = data["tasks"]["cleaning"]["runs"][m][0]
        assert run["curve"]["oracle_calls"][-1] >= cfg.budget
        assert run["curve"]["oracle_calls"][-2] < cfg.budget
    assert (tmp_path / "bilevel_cleaning_oracles.png").exists() and (tmp_path / "bilevel_cleaning_time.png").exists()
    assert "oracle calls to" in (tmp_path / "bilevel.md").read_text()


def test_grid_and_config_checks():
    assert bb.grid("cleaning", "bo-rep", 5) == [0.3, 0.949, 3.0, 9.49, 30.0]
    assert bb.grid("cleaning", "soba", 1) == [1000.0]
    assert bb.grid("l2", "stocbio", 3) == [300.0, 3000.0, 30000.0]
    assert bb.grid("representation", "soba", 3) == [10.0, 100.0, 1000.0]
    assert set(bb.GRIDS) == set(bb.LOWER_STEPS) == set(bb.TASKS)
    with pytest.raises(ValueError, match="text-n-train"):
        bb.Config(text_n_train=0).validate()
    with pytest.raises(ValueError, match="bo-rep"):
        bb.Config(methods=("soba", "stocbio")).validate()
    with pytest.raises(ValueError, match="flip"):
        bb.Config(flip=1.0).validate()


def test_first_reach():
    curve = {"oracle_calls": [0, 10, 20], "test_acc": [0.1, 0.5, 0.9]}
    assert bb.first_reach(curve, 0.5) == 10 and bb.first_reach(curve, 0.95) is None


# ---------------------------------------------------------------------------------------------- text task
def test_speaker_lines_parses_headings():
    text = "A:\nline one\nline two\n\nB C:\nthird\n\nnot a speech\n\nA:\nfourth\n"
    assert speaker_lines(text) == {"A": ["line one", "line two", "fourth"], "B C": ["third"]}


def _manual_logits(y: torch.Tensor, layout, tokens: torch.Tensor) -> torch.Tensor:
    """The classifier written out: embedding, h_t = tanh(W_ih e_t + b_ih + W_hh h_{t-1} + b_hh), masked mean, head."""
    P = layout.split(y)
    e = P["embed.weight"][tokens]
    h = torch.zeros(tokens.shape[0], P["rnn.weight_hh_l0"].shape[0], dtype=y.dtype)
    states = []
    for t in range(tokens.shape[1]):
        h = torch.tanh(e[:, t] @ P["rnn.weight_ih_l0"].T + P["rnn.bias_ih_l0"] + h @ P["rnn.weight_hh_l0"].T
                       + P["rnn.bias_hh_l0"])
        states.append(h)
    mask = (tokens != 0).to(y.dtype)[:, :, None]
    pooled = (torch.stack(states, 1) * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    return pooled @ P["head.weight"].T + P["head.bias"]


def test_text_task_shapes_labels_and_lower_level():
    text = bb.shakespeare_text()
    t = text_hyper_cleaning(text, n_train=150, n_val=60, n_test=80, flip=0.4, vocab=30, embed=4, hidden=5,
                            length=6, reg=1e-3, seed=2)
    p, info = t.problem, t.info
    assert p.stochastic and (p.nx, info["n_test"]) == (150, 80)
    # y = embedding (vocab + 2 rows), RNN (W_ih, W_hh, b_ih, b_hh), head (2 classes)
    assert p.ny == info["ny"] == 32 * 4 + (5 * 4 + 5 * 5 + 5 + 5) + (2 * 5 + 2)
    assert 0.3 < info["flipped"] / 150 < 0.5
    lines = speaker_lines(text)
    assert len(PLAYS) == 2 and all(sp in lines for sps in PLAYS.values() for sp in sps)
    # g and f are the docstring's formulas, computed here with the recurrence written out
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(p.nx, generator=gen, dtype=torch.float64)
    y = p.y0 + 0.1 * torch.randn(p.ny, generator=gen, dtype=torch.float64)
    ub, lb = p.batches(gen)
    layout = p.layouts[1]
    weights = torch.sigmoid(x[lb[0]])
    tok, lab = t.data["train_tokens"][lb[0]], t.data["train_noisy"][lb[0]]
    ce = F.cross_entropy(_manual_logits(y, layout, tok), lab, reduction="none")
    expected_g = (weights * ce).mean() + 0.5e-3 * (y @ y)
    assert abs(float(p.lower_value(x, y, lb)) - float(expected_g)) < 1e-12
    vtok, vlab = t.data["val_tokens"][ub[0]], t.data["val_labels"][ub[0]]
    expected_f = F.cross_entropy(_manual_logits(y, layout, vtok), vlab)
    assert abs(float(p.upper_value(x, y, ub)) - float(expected_f)) < 1e-12
    # grad_x g: d/dx_i of mean_B sigmoid(x_i) CE_i = (multiplicity of i in B) sigmoid'(x_i) CE_i / |B|
    gx = p.cross(x, y, torch.zeros(p.ny, dtype=torch.float64), lb)
    assert float(gx.abs().max()) == 0.0
    xl = x.clone().requires_grad_(True)
    (gxl,) = torch.autograd.grad(p.g(xl, y, *lb), xl)
    s = torch.sigmoid(x[lb[0]])
    ref = torch.zeros(p.nx, dtype=torch.float64).index_add_(0, lb[0], s * (1 - s) * ce / len(lb[0]))
    assert torch.allclose(gxl, ref, rtol=1e-10, atol=1e-15)
    # not convex: on the full training set the Hessian at y0 has a negative eigenvalue, and the L2 term
    # adds exactly reg to the spectrum of the weighted-loss Hessian
    full = (torch.arange(p.nx),)
    H = p.lower_hessian(p.x0, p.y0, full)
    ev = torch.linalg.eigvalsh(0.5 * (H + H.T))
    assert float(ev[0]) < 0.0 < float(ev[-1])
    t_noreg = text_hyper_cleaning(text, n_train=150, n_val=60, n_test=80, flip=0.4, vocab=30, embed=4, hidden=5,
                                  length=6, reg=0.0, seed=2)
    H0 = t_noreg.problem.lower_hessian(p.x0, p.y0, full)
    assert torch.allclose(H - H0, 1e-3 * torch.eye(p.ny, dtype=torch.float64), atol=1e-12)
    assert set(t.evaluate(p.x0, p.y0)) == {"test_acc", "test_loss", "val_loss"}


def test_text_task_bad_input():
    with pytest.raises(ValueError, match="non-empty string"):
        text_hyper_cleaning("")
    with pytest.raises(ValueError, match="no speech by"):
        text_hyper_cleaning("ROMEO:\nhello there\n")
    with pytest.raises(ValueError, match="hidden"):
        text_hyper_cleaning(bb.shakespeare_text(), hidden=0)


def test_representation_heads_are_separate_problems_and_upper_depends_on_x():
    t = hyper_representation(n_train=60, n_val=40, width=4, seed=5)
    p = t.problem
    assert (p.nx, p.ny) == (64 * 4 + 4, 10 * (4 + 1))
    full_u, full_l = (torch.arange(40),), (torch.arange(60),)
    gx, _ = p.upper_grads(p.x0, p.y0 + 0.1, full_u)
    assert float(gx.norm()) > 0.0
    H = p.lower_hessian(p.x0, p.y0, full_l)
    # parameter order of nn.Linear: weight (10 x width, row k = head k), then bias (10)
    head = torch.cat([torch.arange(10)[:, None] * 4 + torch.arange(4), 40 + torch.arange(10)[:, None]], 1)
    owner = torch.empty(p.ny, dtype=torch.int64)
    for k in range(10):
        owner[head[k]] = k
    cross_task = owner[:, None] != owner[None, :]
    assert float(H[cross_task].abs().max()) == 0.0


def test_new_tasks_run_through_the_bench(tmp_path):
    cfg = bb.Config(tasks=("text-cleaning", "representation"), methods=("bo-rep", "soba"), seeds=1, grid_size=1,
                    budget=80, text_n_train=120, out=tmp_path)
    assert bb._run(cfg) == 0
    data = json.loads((tmp_path / bb.JSON_NAME).read_text())
    for task in cfg.tasks:
        t = data["tasks"][task]
        assert set(t["summary"]["rows"]) == {"bo-rep", "soba"}
        for m in ("bo-rep", "soba"):
            curve = t["runs"][m][0]["curve"]
            assert curve["oracle_calls"][-1] >= cfg.budget > curve["oracle_calls"][-2]
            assert all(0.0 <= a <= 1.0 for a in curve["test_acc"])
        assert (tmp_path / f"bilevel_{task}_oracles.png").exists() and (tmp_path / f"bilevel_{task}_time.png").exists()
    assert data["tasks"]["text-cleaning"]["info"]["n_train"] == 120
