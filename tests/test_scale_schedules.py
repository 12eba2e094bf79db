"""Learning-rate schedules (``scale.schedules``): values at the phase boundaries W, T, S against the formulas
of nanoGPT, MiniCPM (arXiv:2404.06395) and WSD-S (arXiv:2410.05192) written out here; WSD-S restarts at the
peak after every decay; monotone pieces and continuity where the formulas are continuous; LambdaLR use and
its state_dict round trip; errors."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from scale.schedules import SCHEDULES, LRSchedule, constant, cosine, make_schedule, wsd, wsd_s


def restarts_at_peak(values: np.ndarray, ends: list[int]) -> bool:
    """Every decay end before the last is followed by the peak multiplier 1, coming from below."""
    return all(values[e] == 1.0 and values[e - 1] < 1.0 for e in ends[:-1])


# ------------------------------------------------------------------------------------------------ cosine
def test_cosine_matches_nanogpt_formula():
    total, warmup, m = 200, 20, 0.1
    s = cosine(total, warmup, m)
    for step in [0, 1, 7, 19, 20, 21, 55, 110, 150, 199, 200, 250]:
        if step < warmup:
            ref = step / warmup
        elif step > total:
            ref = m
        else:
            ref = m + 0.5 * (1 - m) * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        assert s(step) == pytest.approx(ref, abs=1e-15), step
    assert s(warmup) == 1.0 and s(total) == pytest.approx(m)
    assert s((warmup + total) / 2) == pytest.approx(m + (1 - m) / 2)
    v = s.values(total + 1)
    assert np.all(np.diff(v[: warmup + 1]) > 0) and np.all(np.diff(v[warmup:]) <= 0)


# ------------------------------------------------------------------------------------------------ WSD
@pytest.mark.parametrize("decay", ["linear", "sqrt", "exp"])
def test_wsd_boundaries(decay):
    total, warmup, frac, m = 1000, 50, 0.2, 0.05
    s = wsd(total, warmup, frac, decay, min_ratio=m)
    T = total - 200
    assert s(0) == 0.0 and s(25) == 0.5 and s(warmup - 1) == (warmup - 1) / warmup
    assert s(warmup) == 1.0 and s(T - 1) == 1.0 and s(T) == 1.0  # continuous at W and at T
    assert s(total) == pytest.approx(m, rel=1e-12)  # the decay ends at min_ratio at S
    assert s(total + 500) == pytest.approx(m, rel=1e-12)
    x = 0.25  # a quarter into the decay, against the closed forms
    ref = {"linear": m + (1 - m) * (1 - x), "sqrt": m + (1 - m) * (1 - math.sqrt(x)),
           "exp": m ** x}[decay]  # 0.5 ** (x D / T_half) with T_half = D ln2 / ln(1/m) is m ** x
    assert s(T + 50) == pytest.approx(ref, rel=1e-12)
    v = s.values(total + 1)
    assert np.all(np.diff(v[:warmup + 1]) > 0)
    assert np.all(v[warmup:T + 1] == 1.0)
    assert np.all(np.diff(v[T:]) < 0)
    assert s.decay_ends() == [total]


def test_wsd_exp_half_life_is_minicpm():
    s = wsd(1000, 0, 0.1, "exp", half_life=20)
    assert s(900 + 20) == pytest.approx(0.5) and s(900 + 60) == pytest.approx(0.125)
    # with a floor the exponential stops at min_ratio
    f = wsd(1000, 0, 0.1, "exp", min_ratio=0.2, half_life=10)
    assert f(900 + 10) == pytest.approx(0.5) and f(999) == 0.2


# ------------------------------------------------------------------------------------------------ WSD-S
def test_wsd_s_restarts_at_peak_after_each_decay():
    total, warmup, cycle, frac = 1200, 30, 300, 0.1
    s = wsd_s(total, warmup, cycle, frac)
    ends = s.decay_ends()
    assert ends == [300, 600, 900, 1200]
    v = s.values(total + 1)
    assert restarts_at_peak(v, ends)
    for k, end in enumerate(ends):
        start = 0 if k == 0 else ends[k - 1]
        dstart = end - 30  # round(0.1 * 300)
        stable = v[max(start, warmup):dstart]
        assert np.all(stable == 1.0)
        decay = v[dstart:end]
        assert decay[0] == 1.0 and np.all(np.diff(decay) < 0)
        assert v[end - 1] == pytest.approx(1 - 29 / 30)  # linear to 0, one step before the end
    assert s(total) == 0.0 and s(total + 10) == 0.0
    # would catch: plain WSD over the same run never restarts, and the check says so
    plain = wsd(total, warmup, frac).values(total + 1)
    assert not restarts_at_peak(plain, ends)
    # the same decays as WSD inside each cycle: the last cycle of WSD-S equals WSD of a 300-step run, shifted
    one = wsd(300, 0, frac).values(300)
    np.testing.assert_allclose(v[900:1200], one, rtol=0, atol=1e-15)


def test_wsd_s_explicit_ends_and_rewarmup():
    s = wsd_s(1000, 10, [200, 500, 1000], decay_fraction=0.2, decay="sqrt", min_ratio=0.1, rewarmup=20)
    assert s.decay_ends() == [200, 500, 1000]
    v = s.values(1001)
    # decays over the last 20 % of each cycle: 40, 60 and 100 steps
    assert v[159] == 1.0 and v[160] == 1.0 and v[161] < 1.0
    assert v[439] == 1.0 and v[441] < 1.0
    assert v[899] == 1.0 and v[901] < 1.0
    for end in (200, 500):
        # the re-warmup starts from the decay's final value (continuous) and is back at the peak after 20 steps
        assert v[end] == pytest.approx(0.1)
        assert np.all(np.diff(v[end:end + 21]) > 0) and v[end + 20] == 1.0
    assert s(1000) == pytest.approx(0.1)


def test_continuity_and_jumps():
    """Steps between neighbours are bounded by the slope of the formulas (1/W, the decay's steepest step),
    except at the WSD-S restarts, where the jump is the whole decay."""
    cases = [cosine(500, 25), wsd(500, 25, 0.2, "linear"), constant(25), wsd(500, 25, 0.2, "exp", min_ratio=0.01)]
    for s in cases:
        v = s.values(501)
        assert np.max(np.abs(np.diff(v))) <= 0.25, s
    w = wsd_s(600, 20, 200, 0.25)
    v = w.values(601)
    jumps = np.flatnonzero(np.abs(np.diff(v)) > 0.1)  # elsewhere: 1/20 (warmup), 1/50 (decay)
    assert (jumps + 1).tolist() == [200, 400]  # discontinuous exactly at the restarts


# ------------------------------------------------------------------------------------------------ torch
def test_lambdalr_follows_the_schedule_and_resumes():
    def run(sched: LRSchedule, steps: int, state=None):
        p = torch.nn.Parameter(torch.zeros(2))
        opt = torch.optim.SGD([p], lr=0.3)
        lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, sched)
        if state is not None:
            lr_sched.load_state_dict(state)
        lrs = []
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            lr_sched.step()
        return lrs, lr_sched

    sched = wsd_s(60, 5, 20, 0.25)
    lrs, _ = run(sched, 60)
    np.testing.assert_allclose(lrs, 0.3 * sched.values(60), rtol=1e-12)

    first, lr_sched = run(wsd_s(60, 5, 20, 0.25), 30)
    buf = io.BytesIO()
    torch.save(lr_sched.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # plain data only
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=0.3)
    resumed = torch.optim.lr_scheduler.LambdaLR(opt, wsd_s(60, 5, 20, 0.25))
    resumed.load_state_dict(state)
    opt.param_groups[0]["lr"] = resumed.get_last_lr()[0]
    rest = []
    for _ in range(30):
        rest.append(opt.param_groups[0]["lr"])
        opt.step()
        resumed.step()
    np.testing.assert_allclose(first + rest, lrs, rtol=1e-12)


def test_state_saved_under_the_old_name_still_evaluates():
    """LambdaLR.load_state_dict restores the schedule object's attributes; one saved before the rename has
    name 'wsd_s', which must keep working."""
    sched = wsd_s(60, 5, 20, 0.25)
    old = wsd_s(60, 5, 20, 0.25)
    old.__dict__.update({"name": "wsd_s"})
    assert [old(s) for s in range(60)] == [sched(s) for s in range(60)]
    assert old.decay_ends() == sched.decay_ends() == [20, 40, 60]


# ------------------------------------------------------------------------------------------------ building
def test_make_schedule_and_describe():
    assert make_schedule("cosine", total=100, warmup=10) == cosine(100, 10)
    assert make_schedule("wsd-s", total=100, warmup=0, cycle=50) == wsd_s(100, 0, 50)
    assert make_schedule("wsd_s", total=100, warmup=0, cycle=50) == wsd_s(100, 0, 50)  # the old spelling
    assert wsd_s(100, 0, 50).name == "wsd-s"
    assert set(SCHEDULES) == {"cosine", "wsd", "wsd-s", "constant"}
    text = wsd_s(100, 5, 50).describe()
    assert "cycle 2" in text and "checkpoint at step 100" in text
    assert "stable 1 over steps [10, 90)" in wsd(100, 10).describe()
    assert constant().values(3).tolist() == [1.0, 1.0, 1.0]


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="unknown schedule 'cosin'; valid: cosine, wsd, wsd-s, constant"):
        make_schedule("cosin", total=10)
    with pytest.raises(ValueError, match="takes no argument.*decay_fraction"):
        make_schedule("cosine", total=10, decay_fraction=0.1)
    with pytest.raises(ValueError, match="unknown decay 'cos'; valid: linear, exp, sqrt"):
        wsd(100, 0, 0.1, "cos")
    with pytest.raises(ValueError, match="never reaches 0"):
        wsd(100, 0, 0.1, "exp")
    with pytest.raises(ValueError, match="runs into the decay"):
        wsd(100, 95, 0.1)
    with pytest.raises(ValueError, match="warmup .* must be smaller than total"):
        cosine(10, 10)
    with pytest.raises(ValueError, match="strictly increasing, the last equal to total=100"):
        wsd_s(100, 0, [50, 40, 100])
    with pytest.raises(ValueError, match="min_ratio must be a number in"):
        cosine(100, 0, 1.5)
    with pytest.raises(ValueError, match="rewarmup"):
        wsd_s(100, 0, 50, 0.1, rewarmup=48)
