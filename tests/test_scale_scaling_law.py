"""The scaling law with LR annealing (``scale.scaling_law``, Tissue, Wang & Wang 2024, arXiv:2408.11029).

Reference curves are generated here from known parameters with an independent computation of the areas
(the momentum as a dense matrix of powers of lambda, not the recursion under test), plus multiplicative
noise. Fitting a constant and a cosine run must recover the parameters and predict a WSD run; the law
without its annealing term (C = 0) must predict the WSD run much worse (the "would catch" twin)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from scale import scaling_law as sl
from scale.schedules import constant, cosine, wsd

ROOT = Path(__file__).resolve().parents[1]
LAM = 0.999
ETA = 3e-3
N = 2000
TRUE = dict(L0=1.3, A=0.12, alpha=0.45)


def dense_areas(lrs: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """S1 and S2 by definition: m = K d with K[i, j] = lam ** (i - j) for j <= i, d_i = eta_{i-1} - eta_i."""
    lrs = np.asarray(lrs, dtype=np.float64)
    n = lrs.size
    d = np.zeros(n)
    d[1:] = lrs[:-1] - lrs[1:]
    i = np.arange(n)
    diff = i[:, None] - i[None, :]
    kernel = np.where(diff >= 0, lam ** np.maximum(diff, 0), 0.0)
    return np.cumsum(lrs), np.cumsum(kernel @ d)


def law_curve(lrs: np.ndarray, C: float, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    s1, s2 = dense_areas(lrs, LAM)
    loss = TRUE["L0"] + TRUE["A"] * s1 ** (-TRUE["alpha"]) - C * s2
    return loss * (1 + noise * np.random.default_rng(seed).standard_normal(loss.size))


@pytest.fixture(scope="module")
def schedules():
    return {
        "constant": ETA * constant(0).values(N),
        "cosine": ETA * cosine(N, 0, 0.1).values(N),
        "wsd": ETA * wsd(N, 0, 0.2, "linear").values(N),
    }


@pytest.fixture(scope="module")
def C_true(schedules):
    # the annealing term is worth 0.25 in loss at the end of the cosine run
    return 0.25 / dense_areas(schedules["cosine"], LAM)[1][-1]


@pytest.fixture(scope="module")
def fitted(schedules, C_true):
    runs = [(schedules[k], law_curve(schedules[k], C_true, noise=0.002, seed=i))
            for i, k in enumerate(("constant", "cosine"))]
    return sl.fit(runs, decay_factor=LAM), sl.fit(runs, decay_factor=LAM, with_annealing=False)


# ------------------------------------------------------------------------------------------------ areas
def test_areas_hand_case():
    # lambda = 0.5: m = [0, 0, 0.5, 0.5 * 0.5 + 0.25] = [0, 0, 0.5, 0.5]
    s1, s2 = sl.areas([1.0, 1.0, 0.5, 0.25], decay_factor=0.5)
    np.testing.assert_allclose(s1, [1.0, 2.0, 2.5, 2.75])
    np.testing.assert_allclose(s2, [0.0, 0.0, 0.5, 1.0])
    # lambda = 0: no momentum, S2(s) = eta_0 - eta_s
    lrs = np.array([0.9, 0.7, 0.75, 0.2, 0.1])
    np.testing.assert_allclose(sl.areas(lrs, 0.0)[1], lrs[0] - lrs, atol=1e-15)


def test_areas_match_dense_definition(schedules):
    for lrs in schedules.values():
        s1, s2 = sl.areas(lrs, LAM)
        r1, r2 = dense_areas(lrs, LAM)
        np.testing.assert_allclose(s1, r1, rtol=1e-12)
        np.testing.assert_allclose(s2, r2, rtol=1e-9, atol=1e-15)
    # a constant schedule has no annealing area
    assert np.all(sl.areas(schedules["constant"], LAM)[1] == 0)


def test_peak_warmup():
    lrs = ETA * cosine(100, 10, 0.1).values(100)
    peaked = sl.peak_warmup_lrs(lrs)
    assert np.all(peaked[:11] == ETA) and np.array_equal(peaked[11:], lrs[11:])
    # the raw warmup makes the momentum negative (S2 < 0), the peak convention does not
    assert sl.areas(lrs, LAM)[1][50] < 0 < sl.areas(peaked, LAM)[1][50]
    dip = np.array([1.0, 0.5, 2.0, 2.0])  # not a monotone warmup: unchanged
    assert np.array_equal(sl.peak_warmup_lrs(dip), dip)


# ------------------------------------------------------------------------------------------------ fit
def test_fit_recovers_parameters(fitted, C_true):
    law, _ = fitted
    # tolerances for 0.2 % multiplicative noise on 2 x 2000 points
    assert law.L0 == pytest.approx(TRUE["L0"], rel=0.01)
    assert law.A == pytest.approx(TRUE["A"], rel=0.05)
    assert law.alpha == pytest.approx(TRUE["alpha"], abs=0.02)
    assert law.C == pytest.approx(C_true, rel=0.03)
    assert law.info["r2"] > 0.99 and law.info["n_runs"] == 2


def test_fit_is_exact_without_noise(schedules, C_true):
    runs = [(schedules[k], law_curve(schedules[k], C_true)) for k in ("constant", "cosine")]
    law = sl.fit(runs, decay_factor=LAM)
    assert law.L0 == pytest.approx(TRUE["L0"], rel=1e-4)
    assert law.A == pytest.approx(TRUE["A"], rel=1e-3)
    assert law.alpha == pytest.approx(TRUE["alpha"], rel=1e-3)
    assert law.C == pytest.approx(C_true, rel=1e-4)


def test_predicts_wsd_and_would_catch_missing_annealing_term(fitted, schedules, C_true):
    law, no_s2 = fitted
    truth = law_curve(schedules["wsd"], C_true)
    err = sl.prediction_error(law, schedules["wsd"], truth)
    assert err["mean_rel"] < 1e-3 and err["max_rel"] < 5e-3 and err["final_rel"] < 2e-3
    # twin: the same fit without -C*S2 cannot see the loss drop of the WSD decay
    bad = sl.prediction_error(no_s2, schedules["wsd"], truth)
    assert no_s2.C == 0.0
    assert bad["final_rel"] > 0.03
    assert bad["final_rel"] > 20 * err["final_rel"]


def test_fit_with_warmup_uses_the_peak_convention(C_true):
    """Runs with a 100-step warmup: the truth uses the paper's convention (warmup counted at the peak lr,
    written out here), and the default fit (peak warmup, warmup skipped) recovers the parameters."""
    warm = 100
    runs = []
    for i, sched in enumerate((constant(warm), cosine(N, warm, 0.1))):
        lrs = ETA * sched.values(N)
        peaked = np.where(np.arange(N) < warm, ETA, lrs)
        s1, s2 = dense_areas(peaked, LAM)
        loss = TRUE["L0"] + TRUE["A"] * s1 ** (-TRUE["alpha"]) - C_true * s2
        runs.append((lrs, loss * (1 + 0.002 * np.random.default_rng(10 + i).standard_normal(N))))
    law = sl.fit(runs, decay_factor=LAM)
    assert law.alpha == pytest.approx(TRUE["alpha"], abs=0.02)
    assert law.C == pytest.approx(C_true, rel=0.03)
    # would catch: the raw warmup lrs in the areas (negative momentum after the warmup) fit worse
    raw = sl.fit(runs, decay_factor=LAM, peak_warmup=False)
    assert raw.info["objective"] > 5 * law.info["objective"]


def test_predict_at_logged_steps_equals_dense_prediction(fitted, schedules):
    law, _ = fitted
    lrs = schedules["wsd"]
    steps = np.arange(0, N, 10)
    dense = law.predict(lrs)
    # the WSD schedule is piecewise linear in the step, so interpolating the logged lrs is exact
    np.testing.assert_allclose(law.predict(lrs[steps], steps=steps), dense[steps], rtol=1e-12)


def test_fit_rejects_bad_input(schedules):
    lrs = schedules["cosine"]
    with pytest.raises(ValueError, match="decay_factor"):
        sl.areas(lrs, 1.0)
    with pytest.raises(ValueError, match="non-negative"):
        sl.areas(-lrs)
    with pytest.raises(ValueError, match="same length"):
        sl.fit([(lrs, np.ones(10))])
    with pytest.raises(ValueError, match="positive"):
        sl.fit([(lrs, -np.ones(N))])
    with pytest.raises(ValueError, match="usable points"):
        sl.fit([(lrs[:20], np.ones(20))], skip=18)


# ------------------------------------------------------------------------------------------------ files + CLI
def write_metrics(path: Path, lrs: np.ndarray, losses: np.ndarray, every: int = 10) -> None:
    lines = [json.dumps({"kind": "header", "config": {"lr": float(lrs.max())}})]
    for s in range(0, lrs.size, every):
        lines.append(json.dumps({"step": s, "lr": float(lrs[s]), "loss": float(losses[s]), "tokens": 64 * s}))
        if s % 200 == 0:
            lines.append(json.dumps({"step": s, "kind": "eval", "val_loss": 9.9, "lr": 1.0, "loss": 9.9}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_load_metrics(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text("\n".join([
        json.dumps({"kind": "header", "python": "3.11"}),
        json.dumps({"step": 2, "lr": 0.5, "loss": 3.0}),
        json.dumps({"step": 1, "lr": 0.25, "loss": 4.0, "wall_s": 0.1}),
        json.dumps({"step": 2, "kind": "eval", "val_loss": 3.5}),
        json.dumps({"step": 3, "kind": "eval", "lr": 0.5, "loss": 7.0}),
        "",
        json.dumps({"step": 2, "lr": 0.5, "loss": 2.5}),  # resumed run logged step 2 again: last one wins
        '{"step": 4, "lr": 0.5, "lo',  # a line cut by a killed run
    ]) + "\n", encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        steps, lr, loss = sl.load_metrics(p)
    assert any("not JSON" in str(w.message) for w in caught)
    assert steps.tolist() == [1, 2] and lr.tolist() == [0.25, 0.5] and loss.tolist() == [4.0, 2.5]
    with pytest.raises(ValueError, match="not found"):
        sl.load_metrics(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text('{"kind": "header"}\n')
    with pytest.raises(ValueError, match="no lines"):
        sl.load_metrics(tmp_path / "empty.jsonl")


def test_cli_help():
    proc = subprocess.run([sys.executable, "-m", "scale.scaling_law", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for option in ("--fit", "--predict", "--plot", "--json", "--decay-factor", "--skip", "--huber-delta"):
        assert option in proc.stdout, option
    assert "2408.11029" in proc.stdout


def test_cli_fits_and_predicts_from_jsonl(tmp_path, schedules, C_true, capsys):
    for i, name in enumerate(("constant", "cosine", "wsd")):
        write_metrics(tmp_path / f"{name}.jsonl", schedules[name], law_curve(schedules[name], C_true, 0.002, i))
    out_json, out_png = tmp_path / "law.json", tmp_path / "law.png"
    rc = sl.main(["--fit", str(tmp_path / "constant.jsonl"), str(tmp_path / "cosine.jsonl"),
                  "--predict", str(tmp_path / "wsd.jsonl"), "--json", str(out_json), "--plot", str(out_png)])
    assert rc == 0
    assert "mean rel err" in capsys.readouterr().out
    result = json.loads(out_json.read_text())
    assert result["law"]["alpha"] == pytest.approx(TRUE["alpha"], abs=0.03)
    assert result["law"]["C"] == pytest.approx(C_true, rel=0.05)
    wsd_err = result["errors"][str(tmp_path / "wsd.jsonl")]
    assert wsd_err["role"] == "predict" and wsd_err["mean_rel"] < 0.003  # noise alone is 0.2 %
    assert out_png.stat().st_size > 0
    capsys.readouterr()
    assert sl.main(["--fit", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m scale.scaling_law: error: metrics file not found") and "missing.jsonl" in err
    # --no-peak-warmup (and --peak-warmup false) still switch the warmup rule off
    args = ["--fit", str(tmp_path / "constant.jsonl"), "--json", str(out_json)]
    assert sl.main([*args, "--no-peak-warmup"]) == 0
    assert json.loads(out_json.read_text())["law"]["peak_warmup"] is False
    assert sl.main([*args, "--peak-warmup", "false", "--skip", "50"]) == 0
    assert json.loads(out_json.read_text())["law"]["peak_warmup"] is False


@pytest.mark.parametrize("argv, words", [
    ([], ["--fit", "at least one metrics file"]),
    (["--fit"], ["--fit"]),
    (["--fitt", "a.jsonl"], ["unknown option '--fitt'", "did you mean '--fit'"]),
    (["--fit", "a.jsonl", "--decay-factor", "high"], ["decay_factor", "expected float"]),
])
def test_cli_usage_errors_are_one_line(argv, words, capsys):
    assert sl.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m scale.scaling_law: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)


def test_cli_print_config_round_trip(tmp_path, capsys):
    argv = ["--fit", "a.jsonl", "b.jsonl", "--skip", "7", "--no-peak-warmup", "--plot", "out.png"]
    assert sl.main([*argv, "--print-config"]) == 0
    path = tmp_path / "fit.toml"
    path.write_text(capsys.readouterr().out)
    cfg, _ = sl.COMMAND.parse(["--config", str(path)])
    assert cfg == sl.COMMAND.parse(argv)[0]
    assert cfg.fit == (Path("a.jsonl"), Path("b.jsonl")) and cfg.skip == 7 and cfg.peak_warmup is False
