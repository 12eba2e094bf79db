"""The time-to-target harness (scale.bench.second_order) and the performance profiles
(scale.bench.performance_profile).

No assertion here depends on how fast anything ran: times only need to be finite and positive.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from optlib import Problem
from scale.bench import common
from scale.bench import performance_profile as profiles
from scale.bench import second_order as compare


def tiny_logistic(n: int = 60, d: int = 4, seed: int = 0) -> Problem:
    """L2-regularized logistic regression on seeded Gaussian data; f* by Newton's method to convergence."""
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.sign(A @ torch.randn(d, generator=gen, dtype=torch.float64) + 0.5 * torch.randn(n, generator=gen,
                                                                                          dtype=torch.float64))
    B = A * y[:, None]
    reg = 1.0 / n

    def fun(x):
        return torch.nn.functional.softplus(-(B @ x)).mean() + 0.5 * reg * torch.dot(x, x)

    def value_and_grad(x):
        s = torch.sigmoid(-(B @ x))
        return fun(x), -(B.T @ s) / n + reg * x

    def hess(x):
        s = torch.sigmoid(-(B @ x))
        return (B.T * (s * (1 - s) / n)) @ B + reg * torch.eye(d, dtype=torch.float64)

    bohning = B.T @ B / (4 * n) + reg * torch.eye(d, dtype=torch.float64)

    def f_star() -> float:
        x = torch.zeros(d, dtype=torch.float64)
        for _ in range(50):
            x = x - torch.linalg.solve(hess(x), value_and_grad(x)[1])
        return float(fun(x))

    return Problem(fun, d, value_and_grad=value_and_grad, hess=hess, hvp=lambda x, v: hess(x) @ v,
                   curvatures={"bohning": lambda x: bohning}, f_star=f_star, name="tiny-logistic")


@pytest.fixture(scope="module")
def records():
    return compare.run_comparison({"tiny": tiny_logistic()}, repeats=2, warmup=False, time_limit=30.0, threads=1)


def test_every_solver_reaches_the_target_and_is_stopped_by_it(records):
    target = compare.DEFAULT_TARGET
    seen = {r["solver_name"] for r in records}
    assert seen == set(compare.solvers())
    for r in records:
        name = r["solver_name"]
        assert r["reached"], (name, r["stopped_by"], r["message"])
        assert r["stopped_by"] == "target", name
        assert r["rel_suboptimality"] <= target, name
        assert math.isfinite(r["time"]) and r["time"] > 0, name
        rel = r["curve_rel"]
        # The run stops at the first iterate that meets the target, not later.
        assert rel[-1] <= target and all(v > target for v in rel[:-1]), name
        assert rel[0] == 1.0 and r["curve_iter"] == list(range(len(rel))), name
        assert all(b >= a for a, b in zip(r["curve_time"], r["curve_time"][1:], strict=False)), name
        assert r["iterations"] == len(rel) - 1
        assert r["nfev"] >= 1 and r["njev"] >= 1, name
        solver = compare.get_solver(name)
        if solver.oracle == "hessp" or solver.options.get("solver") == "cg":
            assert r["nhvp"] > 0 and r["nhev"] == 0, name
        elif solver.oracle == "hess" or solver.family == "optlib":
            assert r["nhev"] > 0 and r["nhvp"] == 0, name
        else:
            assert r["nhev"] == 0 and r["nhvp"] == 0, name
        assert r["idx_rep"] in (0, 1)
        for key in ("version-torch", "version-scipy", "version-numpy", "platform", "env-cpu_count",
                    "env-torch_threads"):
            assert key in r


def test_same_start_and_optimum_for_every_solver(records):
    assert len({(r["f0"], r["f_star"]) for r in records}) == 1
    assert len({r["dataset_name"] for r in records}) == 1


def test_summary_and_table_shape(records):
    table = compare.time_to_target_table(records)
    assert len(table) == 1
    row = table[0]
    assert row["problem"] == "tiny"
    assert compare.get_solver(row["best_optlib"]).family == "optlib"
    assert compare.get_solver(row["best_scipy"]).family == "scipy"
    assert row["ratio"] == pytest.approx(row["best_optlib_time"] / row["best_scipy_time"])
    assert set(row["times"]) == set(compare.solvers())
    assert row["best_optlib_time"] == min(t for s, t in row["times"].items() if s.startswith("optlib:"))


def _rec(problem, solver, time, rep=0, reached=True):
    return {
        "dataset_name": problem, "solver_name": solver, "solver_family": solver.split(":")[0],
        "time": time if reached else math.inf, "reached": reached, "idx_rep": rep, "dimension": 3,
        "iterations": 7, "nfev": 1, "njev": 1, "nhev": 0, "nhvp": 0, "stopped_by": "target" if reached else "solver",
    }


def test_ratio_from_a_synthetic_record_set():
    recs = [
        # problem p: optlib medians 2.0 (reps 3, 1, 2) and 5.0; scipy medians 4.0 and 8.0 -> ratio 0.5
        _rec("p", "optlib:a", 3.0, 0), _rec("p", "optlib:a", 1.0, 1), _rec("p", "optlib:a", 2.0, 2),
        _rec("p", "optlib:b", 5.0),
        _rec("p", "scipy:c", 4.0, 0), _rec("p", "scipy:c", 4.0, 1),
        _rec("p", "scipy:d", 8.0),
        # problem q: optlib fails everywhere -> inf
        _rec("q", "optlib:a", 0.0, reached=False), _rec("q", "scipy:c", 1.0),
        # problem r: scipy fails -> 0
        _rec("r", "optlib:a", 1.0), _rec("r", "scipy:c", 0.0, reached=False),
        # problem s: both fail -> nan
        _rec("s", "optlib:a", 0.0, reached=False), _rec("s", "scipy:c", 0.0, reached=False),
        # problem t: one failed repetition makes the pair a failure
        _rec("t", "optlib:a", 1.0, 0), _rec("t", "optlib:a", 1.0, 1, reached=False), _rec("t", "scipy:c", 3.0),
    ]
    table = {row["problem"]: row for row in compare.time_to_target_table(recs)}
    p = table["p"]
    assert (p["best_optlib"], p["best_optlib_time"]) == ("optlib:a", 2.0)
    assert (p["best_scipy"], p["best_scipy_time"]) == ("scipy:c", 4.0)
    assert p["ratio"] == 0.5
    assert p["times"] == {"optlib:a": 2.0, "optlib:b": 5.0, "scipy:c": 4.0, "scipy:d": 8.0}
    assert table["q"]["ratio"] == math.inf
    assert table["r"]["ratio"] == 0.0
    assert math.isnan(table["s"]["ratio"])
    assert table["t"]["ratio"] == math.inf
    costs = compare.cost_table(recs)
    assert costs["p"]["optlib:a"] == 2.0 and costs["q"]["optlib:a"] == math.inf


def test_monitor_evaluates_missing_fun_uncounted_and_outside_the_clock():
    problem = tiny_logistic()
    x0 = compare.starting_point(problem)
    f0 = compare.uncounted_value(problem, x0)
    mon = compare.TargetMonitor(problem, problem.f_star, f0, 1e-8, time_limit=60.0)
    mon.start()
    before = problem.counters.as_dict()
    mon({"x": x0.numpy() + 0.1})  # no "fun": the monitor evaluates f itself
    assert problem.counters.as_dict() == before
    assert len(mon.curve_rel) == 2 and mon.curve_rel[1] > 1e-8
    with pytest.raises(StopIteration):
        mon({"x": x0.numpy(), "fun": problem.f_star})
    assert mon.reached and mon.time_to_target <= mon.elapsed()


def test_solver_that_cannot_reach_the_target_is_a_failure():
    problem = tiny_logistic()
    slow = compare.Solver("scipy:slow", "scipy", "L-BFGS-B", {"maxiter": 2})
    rec = compare.run_once(problem, slow)
    assert not rec["reached"] and rec["stopped_by"] == "solver" and rec["time"] == math.inf


def test_skips_and_errors():
    problem = Problem(lambda x: (x**2).sum() + x.sum(), 3, f_star=-0.75, x0=torch.ones(3, dtype=torch.float64))
    assert compare.get_solver("optlib:grad-norm-newton[bohning]").skip_reason(problem) is not None
    recs = compare.run_comparison([problem], ["optlib:grad-norm-newton[bohning]", "scipy:trust-exact"], repeats=1,
                                  warmup=False)
    assert [r["solver_name"] for r in recs] == ["scipy:trust-exact"]
    with pytest.raises(ValueError, match="unknown solver"):
        compare.get_solver("scipy:nope")
    with pytest.raises(ValueError, match="f_star"):
        compare.run_once(Problem(lambda x: (x**2).sum(), 2, x0=torch.ones(2)), "scipy:trust-exact")
    with pytest.raises(ValueError, match="not above"):
        compare.run_once(Problem(lambda x: (x**2).sum(), 2, f_star=0.0), "scipy:trust-exact")  # x0 = 0 is optimal


def test_curve_rows_are_long_format(records):
    rows = compare.curve_rows(records)
    assert len(rows) == sum(len(r["curve_rel"]) for r in records)
    assert {"objective_name", "dataset_name", "solver_name", "idx_rep", "time", "objective_value"} <= set(rows[0])


def test_thread_limit_restores():
    before = torch.get_num_threads()
    with common.thread_limit(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# ---------------------------------------------------------------------------------------- profiles
HAND_TABLE = {
    "p1": {"A": 1.0, "B": 2.0, "C": 4.0},
    "p2": {"A": 4.0, "B": 2.0, "C": None},  # C failed
    "p3": {"A": math.inf, "B": 3.0, "C": 3.0},  # A failed; B and C tie
    "p4": {"A": math.inf, "B": math.nan, "C": math.inf},  # nobody solved it
}


def test_performance_ratios_by_hand():
    r = profiles.performance_ratios(HAND_TABLE)
    assert r["p1"] == {"A": 1.0, "B": 2.0, "C": 4.0}
    assert r["p2"] == {"A": 2.0, "B": 1.0, "C": math.inf}
    assert r["p3"] == {"A": math.inf, "B": 1.0, "C": 1.0}
    assert all(math.isinf(v) for v in r["p4"].values())


def test_performance_profile_by_hand():
    taus, rho = profiles.performance_profile(HAND_TABLE)
    assert list(taus) == [1.0, 2.0, 4.0]
    # A: ratios 1, 2, inf, inf; B: 2, 1, 1, inf; C: 4, inf, 1, inf (four problems)
    np.testing.assert_array_equal(rho["A"], [0.25, 0.5, 0.5])
    np.testing.assert_array_equal(rho["B"], [0.5, 0.75, 0.75])
    np.testing.assert_array_equal(rho["C"], [0.25, 0.25, 0.5])
    assert profiles.rho(HAND_TABLE, "A", 1.999) == 0.25
    assert profiles.rho(HAND_TABLE, "B", math.inf) == 0.75  # share solved


def test_integrated_score_by_hand():
    score = profiles.integrated_score(HAND_TABLE, r_max=4.0)
    # sum over problems of (r_max - r) for r <= r_max, divided by |P| (r_max - 1) = 12
    assert score["A"] == pytest.approx((3 + 2) / 12)
    assert score["B"] == pytest.approx((2 + 3 + 3) / 12)
    assert score["C"] == pytest.approx((0 + 3) / 12)


def test_profile_plot_writes_png(tmp_path):
    path = profiles.plot_performance_profile(HAND_TABLE, str(tmp_path / "profile.png"), families={"C": "scipy"})
    data = (tmp_path / "profile.png").read_bytes()
    assert path.endswith("profile.png") and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_solver_styles_do_not_depend_on_order():
    fam = {"scipy:x": "scipy", "optlib:a": "optlib", "optlib:b": "optlib"}
    a = profiles.solver_styles(["scipy:x", "optlib:a", "optlib:b"], fam)
    b = profiles.solver_styles(["optlib:b", "scipy:x", "optlib:a"], fam)
    assert a == b
    assert a["scipy:x"]["linestyle"] == "--" and a["optlib:a"]["linestyle"] == "-"
    assert len({str(v["color"]) for v in a.values()}) == 3
