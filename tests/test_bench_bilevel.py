"""The bilevel benchmark: the tasks are well-posed stochastic bilevel problems and the smoke run produces a table."""

from __future__ import annotations

import json

import pytest
import torch

from optlib.bilevel.hypergradient import hypergradient
from optlib.problems.bilevel_tasks import hyper_cleaning, l2_hyperparameters
from scale.bench import bilevel as bb


@pytest.mark.parametrize("make", [lambda: hyper_cleaning(n_train=100, n_val=50, seed=3),
                                  lambda: l2_hyperparameters(seed=3)])
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
    with pytest.raises(ValueError, match="bo-rep"):
        bb.Config(methods=("soba", "stocbio")).validate()
    with pytest.raises(ValueError, match="flip"):
        bb.Config(flip=1.0).validate()


def test_first_reach():
    curve = {"oracle_calls": [0, 10, 20], "test_acc": [0.1, 0.5, 0.9]}
    assert bb.first_reach(curve, 0.5) == 10 and bb.first_reach(curve, 0.95) is None
