"""Generic tests over the table of optimizers in ``tests/optimizer_infos.py`` (one row per optimizer, several
option sets each): ``state_dict`` round trip, every ``torch.optim.lr_scheduler``, parameters without a gradient,
unknown constructor options, non-finite gradients, and generators as ``params``.

Every optimizer is trained on its row's small model with cross-entropy on a fixed stream of batches, so two runs
with the same seed and options are bit for bit equal.
"""

from __future__ import annotations

import io
import re

import pytest
import torch
import torch.nn.functional as F
from optimizer_infos import OPTIMIZERS, batch, cases

SEED = 0


def forward_backward(info, model, opt, k: int) -> torch.Tensor:
    """Step ``k``'s forward and backward pass (the optimizer's step is left to the caller)."""
    x, y = batch(k)
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(info.forward(model, opt, x), y)
    loss.backward()
    return loss


def train(info, model, opt, steps) -> None:
    for k in steps:
        forward_backward(info, model, opt, k)
        opt.step()


def saved(obj):
    """``obj`` after ``torch.save`` and ``torch.load`` (default ``weights_only=True``): no tensor shared."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer)


def assert_same(a, b, where="state") -> None:
    """Recursive equality; tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, sorted(map(str, a)), sorted(map(str, b)))
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def params_of(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def position(opt, p) -> tuple[int, int]:
    for gi, group in enumerate(opt.param_groups):
        for j, q in enumerate(group["params"]):
            if q is p:
                return gi, j
    raise AssertionError("the victim parameter is not in the optimizer")


def test_the_table_covers_the_optimizers():
    assert [info.name for info in OPTIMIZERS] == ["Muon", "MuonWithAdamW", "DropMuon", "KFAC"]
    assert all(len(info.option_sets) >= 3 for info in OPTIMIZERS)


# ------------------------------------------------------------------------------------------------------------
# (a) state_dict round trip
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("info", "options"), cases())
def test_state_dict_round_trip_continues_exactly(info, options):
    """Run 3 steps, save, load into a fresh optimizer on a fresh copy of the model: the next 3 steps equal the
    uninterrupted run's bit for bit (parameters and optimizer state)."""
    model = info.make_model(SEED)
    opt = info.build(model, options)
    train(info, model, opt, range(3))
    model_state, opt_state = saved(model.state_dict()), saved(opt.state_dict())
    train(info, model, opt, range(3, 6))

    resumed = info.make_model(SEED + 1)  # other weights, replaced by the saved ones
    resumed.load_state_dict(model_state)
    opt2 = info.build(resumed, options)
    opt2.load_state_dict(opt_state)
    train(info, resumed, opt2, range(3, 6))
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    assert_same(saved(opt.state_dict()), saved(opt2.state_dict()))


# ------------------------------------------------------------------------------------------------------------
# (b) LR schedulers
# ------------------------------------------------------------------------------------------------------------

SCHEDULERS = {
    "StepLR": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
    "MultiStepLR": lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[1, 3], gamma=0.3),
    "ExponentialLR": lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.8),
    "CosineAnnealingLR": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4),  # lr 0 at step 4
    "LinearLR": lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.25, total_iters=3),
    "LambdaLR": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda k: 1.0 / (k + 1)),
    "ReduceLROnPlateau": lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=0),
    "CyclicLR": lambda o: torch.optim.lr_scheduler.CyclicLR(o, base_lr=0.001, max_lr=0.05, step_size_up=2,
                                                           cycle_momentum=True, base_momentum=0.8,
                                                           max_momentum=0.9),
    "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=8, cycle_momentum=True,
                                                               base_momentum=0.85, max_momentum=0.95),
}


def beta1(opt, group) -> float:
    """The momentum a scheduler cycles, found as torch's schedulers find it: ``betas[0]`` when ``defaults`` has
    ``betas``, else ``momentum``."""
    return group["betas"][0] if "betas" in opt.defaults else group["momentum"]


@pytest.mark.filterwarnings("error::UserWarning")
@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize(("info", "options"), cases(first_only=True))
def test_every_lr_scheduler_drives_the_optimizer(info, options, scheduler):
    """Each scheduler gives the optimizer's groups the lr (and, cycling, the momentum) it gives the same groups of
    torch.optim.SGD, step by step; the optimizer steps with them (lr 0 included), stays finite, and ends elsewhere
    than the same run without the scheduler."""
    model, unscheduled = info.make_model(SEED), info.make_model(SEED)
    opt, fixed = info.build(model, options), info.build(unscheduled, options)
    ref = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": g["lr"]} for g in opt.param_groups],
                          momentum=0.9)
    sched, ref_sched = SCHEDULERS[scheduler](opt), SCHEDULERS[scheduler](ref)
    cycles = scheduler in ("CyclicLR", "OneCycleLR")
    seen = set()
    for k in range(7):
        seen.add(tuple(g["lr"] for g in opt.param_groups))
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref.param_groups], k
        if cycles:
            assert [beta1(opt, g) for g in opt.param_groups] == [g["momentum"] for g in ref.param_groups], k
        loss = forward_backward(info, model, opt, k)
        opt.step()
        forward_backward(info, unscheduled, fixed, k)
        fixed.step()
        ref.step()
        if scheduler == "ReduceLROnPlateau":
            sched.step(1.0)
            ref_sched.step(1.0)
        else:
            sched.step()
            ref_sched.step()
        assert torch.isfinite(loss) and all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert len(seen) > 1  # the schedule did move the lr
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), unscheduled.parameters()))


# ------------------------------------------------------------------------------------------------------------
# (c) parameters without a gradient
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("info", "options"), cases())
def test_parameter_without_grad_is_untouched(info, options):
    """After two steps, a parameter whose .grad is None keeps its value and its optimizer state bit for bit while
    the others step."""
    for victim_index in range(len(info.victims(info.make_model(SEED)))):
        model = info.make_model(SEED)
        opt = info.build(model, options)
        train(info, model, opt, range(2))
        victim = info.victims(model)[victim_index]
        before, state = victim.detach().clone(), saved(dict(opt.state.get(victim, {})))
        others = {n: p.detach().clone() for n, p in model.named_parameters() if p is not victim}
        forward_backward(info, model, opt, 2)
        victim.grad = None
        opt.step()
        assert torch.equal(victim, before)
        assert_same(saved(dict(opt.state.get(victim, {}))), state, "state[victim]")
        stepped = [not torch.equal(p, others[n]) for n, p in model.named_parameters() if p.grad is not None]
        assert all(stepped)  # the step was taken for the parameters with a gradient


# ------------------------------------------------------------------------------------------------------------
# (d) unknown options
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("info", "options"), cases(first_only=True))
def test_unknown_option_raises_type_error_naming_it(info, options):
    model = info.make_model(SEED)
    with pytest.raises(TypeError, match="not_an_option"):
        info.cls(info.params(model), **options, not_an_option=1)


# ------------------------------------------------------------------------------------------------------------
# (e) non-finite gradients
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize(("info", "options"), cases())
def test_nonfinite_gradient_raises_naming_the_parameter_and_changes_nothing(info, options, bad):
    """All four document it: ValueError naming the parameter, raised before any parameter or state changes."""
    for victim_index in range(len(info.victims(info.make_model(SEED)))):
        model = info.make_model(SEED)
        opt = info.build(model, options)
        train(info, model, opt, range(2))
        forward_backward(info, model, opt, 2)
        victim = info.victims(model)[victim_index]
        victim.grad.view(-1)[0] = bad
        before_params, before_state = params_of(model), saved(opt.state_dict())
        gi, j = position(opt, victim)
        where = re.escape(f"param_groups[{gi}]['params'][{j}]")
        with pytest.raises(ValueError, match="non-finite gradient for .*" + where):
            opt.step()
        for p, q in zip(model.parameters(), before_params):
            assert torch.equal(p, q)
        assert_same(saved(opt.state_dict()), before_state)


# ------------------------------------------------------------------------------------------------------------
# (f) generators
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("info", "options"), cases(first_only=True))
def test_generators_are_accepted_or_refused_saying_what_to_pass(info, options):
    """``model.parameters()`` is accepted (then it trains as the list does) or refused with a message that says
    what to pass; a generator over a list the constructor takes is accepted and trains as the list does."""
    model = info.make_model(SEED)
    if info.generator is not None:
        error, pattern = info.generator
        with pytest.raises(error, match=pattern):
            info.cls(model.parameters(), **options)
    if info.listed is None:
        return
    runs = []
    for as_generator in (False, True):
        model = info.make_model(SEED)
        listed = info.listed(model)
        opt = info.cls((item for item in listed) if as_generator else listed, **options)
        train(info, model, opt, range(3))
        runs.append(params_of(model))
    if info.generator is None:
        model = info.make_model(SEED)
        opt = info.cls(model.parameters(), **options)
        train(info, model, opt, range(3))
        runs.append(params_of(model))
    for run in runs[1:]:
        assert all(torch.equal(p, q) for p, q in zip(runs[0], run))
