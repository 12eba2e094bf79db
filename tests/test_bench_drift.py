"""The discretisation-drift benchmark: a small run of every experiment through the command's own path, what its
tables must show where the outcome is known in advance, and bad settings.

Known in advance (small steps, so not an artefact of the sizes): on the 2-D landscape at h = 0.05
(hλ_max < 0.3), the principal flow tracks GD better than the IGR flow, and the IGR flow better than the gradient
flow (orders 1, 2 and "all principal orders" of backward error analysis); on the digits MLP constant-step GD at
h = 1.6 diverges while DAL from the same start does not.
"""

from __future__ import annotations

import json
import math

import pytest

from scale.bench import drift as bd
from scale.bench.common import SECTIONS

TINY = dict(bd.PRESETS["quick"], landscape_lrs=(0.05,), landscape_steps=8, edge_lrs=(0.1,), edge_steps=40,
            lambda_every=20, lanczos_steps=10, igr_lrs=(0.01, 0.04), igr_time=0.4, dirac_steps=40, mog_steps=10,
            mog_batch=32, dal_lrs=(0.1, 1.6), dal_steps=40)


def test_small_run_writes_tables_figures_and_json(tmp_path):
    cfg = bd.Config(**TINY, out=tmp_path)
    assert bd._run(cfg) == 0
    data = json.loads((tmp_path / bd.JSON_NAME).read_text())
    ex = data["experiments"]
    assert set(ex) == set(bd.EXPERIMENTS)
    for name in bd.EXPERIMENTS:
        assert (tmp_path / f"drift_{name}.png").stat().st_size > 0

    land = ex["landscape"]["0.05"]
    assert land["max_h_lambda"] < 0.3 and not land["failures"]
    d = land["max_distance"]
    assert d["principal"] < d["igr"] < d["gradient"]

    edge = ex["edge"]["0.1"]
    assert [k for k, _ in edge["lambda"]] == [0, 20, 40] and all(lam > 0 for _, lam in edge["lambda"])

    igr = ex["igr-bias"]
    assert [r["steps"] for r in igr["runs"]] == [40, 10] and igr["explicit"]["penalty"] == pytest.approx(0.03)

    gans = ex["gans"]
    for key in ("plain", "drift-regularised"):
        assert len(gans["dirac"][key]["final_distance"]) == cfg.seeds
        assert all(0 <= m <= bd.MOG_MODES for m in gans["mog"][key]["modes"])

    dal = ex["dal"]
    assert dal["rows"]["constant 1.6"]["diverged"] == 1  # h λ_max > 2 from the start
    assert dal["rows"]["dal p=1"]["diverged"] == 0
    assert dal["verdict"]["smallest_diverging_constant"] == 1.6 and dal["verdict"]["best_constant"] == "constant 0.1"
    assert math.isfinite(dal["verdict"]["loss_ratio"]) and dal["cost"]["ratio"] > 1  # a flow step > a gradient
    md = (tmp_path / "drift.md").read_text()
    for title in ("2-D landscape", "Edge of stability", "IGR bias", "GANs", "DAL against constant"):
        assert title in md


def test_report_section_is_registered():
    section = SECTIONS["drift"]
    assert section.title == "Discretisation drift" and section.fn is bd.report_section


def test_unknown_experiment_is_a_usage_error(capsys):
    assert bd.main(["--experiments", "edge,sharpness"]) == 2
    err = capsys.readouterr().err
    assert "sharpness" in err and err.count("\n") == 1
    with pytest.raises(ValueError, match="unknown experiment"):
        bd.Config(experiments=("edge", "sharpness")).validate()


@pytest.mark.parametrize(("changes", "words"), [
    ({"igr_lrs": (0.01,)}, "at least two step sizes"),
    ({"igr_time": 0.01}, "--igr-time must be at least"),
    ({"n_train": 5000}, r"--n-train must lie in \[1, 1797\]"),
    ({"dal_lrs": (0.1, -1.0)}, "--dal-lrs must be positive"),
    ({"seeds": 0}, "--seeds must be at least 1"),
    ({"gan_lr": float("nan")}, "--gan-lr must be a positive step size"),
])
def test_bad_settings_are_named(changes, words):
    with pytest.raises(ValueError, match=words):
        bd.Config(**changes).validate()
