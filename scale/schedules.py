r"""Learning-rate schedules as multipliers of the peak learning rate, pure functions of the step.

Every schedule is an :class:`LRSchedule`: call it with the step :math:`s = 0, 1, \dots` (the number of
optimizer steps already taken) to get :math:`\eta(s)/\eta_{\max}`. It plugs into PyTorch directly,
``torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)``: ``LambdaLR`` evaluates it at ``last_epoch``,
which is 0 for the first optimizer step and grows by one per ``scheduler.step()``. Its attributes are
plain data (a name and a dict of numbers and strings), so ``LambdaLR.state_dict()`` (which copies the
callable's ``__dict__``) saves and loads under ``torch.load(weights_only=True)``.

Conventions shared by all schedules (:math:`W` = ``warmup``, :math:`S` = ``total``):

* warmup is linear from 0, :math:`s/W` for :math:`s < W` (the spec's formula; nanoGPT uses
  :math:`(s+1)/(W+1)`, which never gives a zero step; the two agree from :math:`s = W` on);
* a decay that starts at step :math:`T` and lasts :math:`D` steps uses :math:`x = (s - T)/D \in [0, 1]`, so the
  value is 1 at :math:`s = T` and the final value at :math:`s = T + D`; steps after the end keep the final
  value.

The schedules:

:func:`cosine`
    nanoGPT's ``get_lr``: warmup, then :math:`m + (1 - m)\tfrac12(1 + \cos \pi x)` with
    :math:`x = (s - W)/(S - W)` and :math:`m` = ``min_ratio``.
:func:`wsd`
    Warmup-Stable-Decay (MiniCPM, Hu et al. 2024, arXiv:2404.06395): :math:`s/W` for :math:`s < W`,
    1 for :math:`W \le s < T`, :math:`f(s - T)` for :math:`T \le s \le S`, with
    :math:`T = S - \operatorname{round}(\text{decay\_fraction}\cdot S)`. Decay shapes :math:`f`:
    ``"exp"``, MiniCPM's :math:`f = 0.5^{(s - T)/T_{1/2}}` (half-life ``half_life``, or the one that reaches
    ``min_ratio`` at :math:`S`; floored at ``min_ratio``); ``"linear"``, :math:`m + (1 - m)(1 - x)`;
    ``"sqrt"``, the "1 − sqrt" cooldown of Hägele et al. 2024 (arXiv:2405.18392),
    :math:`m + (1 - m)(1 - \sqrt{x})`.
:func:`wsd_s`
    WSD-S (Wen et al. 2024, "Understanding Warmup-Stable-Decay Learning Rates: A River Valley Loss
    Landscape Perspective", arXiv:2410.05192): one run, W → S → D → S → D …; each stable phase
    restarts at the peak learning rate **from the decayed checkpoint** instead of branching decays off an
    un-decayed main branch, and the checkpoint at the end of every decay is a deliverable
    (:meth:`LRSchedule.decay_ends`). What the paper's abstract states: a single main branch whose decay phases
    are reused, training resumed from a decayed checkpoint (at the stable phase's learning rate, the peak).
    What we chose (cycle lengths and decay lengths are free parameters here): the decays end at
    ``cycle, 2·cycle, …, total`` (or at the explicit list of steps given as ``cycle``); each cycle
    :math:`[E_{k-1}, E_k)` decays over its last ``round(decay_fraction · (E_k - E_{k-1}))`` steps (rounded half
    up) with the shapes of :func:`wsd`; step :math:`E_k` already belongs to the next cycle and is back at
    the peak (``rewarmup=0``), or starts a linear ramp from the decay's final value back to 1 over
    ``rewarmup`` steps. The checkpoint to keep is the one after :math:`E_k` optimizer steps.
:func:`constant`
    Warmup, then 1.

:func:`make_schedule` builds any of them by name (``"cosine"``, ``"wsd"``, ``"wsd-s"``, ``"constant"``; the
underscore spelling ``"wsd_s"`` of earlier versions is accepted as an alias).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "SCHEDULES",
    "DECAYS",
    "LRSchedule",
    "cosine",
    "wsd",
    "wsd_s",
    "constant",
    "make_schedule",
    "cosine_multiplier",
    "wsd_multiplier",
    "wsd_s_multiplier",
    "constant_multiplier",
]

SCHEDULES = ("cosine", "wsd", "wsd-s", "constant")
DECAYS = ("linear", "exp", "sqrt")


# ------------------------------------------------------------------------------------------ validation
def _int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _ratio(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not 0.0 <= float(v) <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
    return float(v)


def _decay_params(decay: str, min_ratio: float, half_life: float | None) -> None:
    if decay not in DECAYS:
        raise ValueError(f"unknown decay {decay!r}; valid: {', '.join(DECAYS)}")
    if decay == "exp":
        if half_life is not None:
            if isinstance(half_life, bool) or not isinstance(half_life, (int, float)) or half_life <= 0:
                raise ValueError(f"half_life must be a positive number of steps, got {half_life!r}")
        elif min_ratio <= 0.0:
            raise ValueError("decay='exp' never reaches 0: give half_life, or min_ratio > 0 (the half-life is then "
                             "chosen so that the decay ends at min_ratio)")
    elif half_life is not None:
        raise ValueError(f"half_life applies to decay='exp' only, not to decay={decay!r}")


# ------------------------------------------------------------------------------------------ pure functions
def _decay_value(x: float, length: int, decay: str, min_ratio: float, half_life: float | None) -> float:
    """:math:`f` at progress ``x = (s - T)/D`` in [0, 1] of a decay of ``length`` = D steps."""
    if decay == "linear":
        return min_ratio + (1.0 - min_ratio) * (1.0 - x)
    if decay == "sqrt":
        return min_ratio + (1.0 - min_ratio) * (1.0 - math.sqrt(x))
    # MiniCPM's exponential decay f = 0.5 ** ((s - T) / T_half)
    t_half = half_life if half_life is not None else length * math.log(2.0) / math.log(1.0 / min_ratio)
    return max(min_ratio, 0.5 ** (x * length / t_half))


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _warm(step: float, warmup: int) -> float:
    return step / warmup


def constant_multiplier(step: float, warmup: int = 0) -> float:
    """:math:`s/W` for :math:`s < W`, then 1."""
    if step < warmup:
        return _warm(step, warmup)
    return 1.0


def cosine_multiplier(step: float, total: int, warmup: int = 0, min_ratio: float = 0.1) -> float:
    r""":math:`s/W` for :math:`s < W`; :math:`m + (1-m)\tfrac12(1 + \cos(\pi (s - W)/(S - W)))` for
    :math:`W \le s \le S`; :math:`m` after :math:`S`."""
    if step < warmup:
        return _warm(step, warmup)
    if step >= total:
        return min_ratio
    x = (step - warmup) / (total - warmup)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * x))


def _wsd_decay_start(total: int, decay_fraction: float) -> tuple[int, int]:
    length = _round_half_up(decay_fraction * total)
    return total - length, length


def wsd_multiplier(step: float, total: int, warmup: int, decay_fraction: float = 0.1, decay: str = "linear",
                   min_ratio: float = 0.0, half_life: float | None = None) -> float:
    """Warmup-Stable-Decay (Hu et al. 2024, arXiv:2404.06395): :math:`s/W`, then 1 until :math:`T`, then
    :math:`f(s - T)` until :math:`S`, then the final value."""
    if step < warmup:
        return _warm(step, warmup)
    start, length = _wsd_decay_start(total, decay_fraction)
    if step < start or length == 0:
        return 1.0
    x = min(1.0, (step - start) / length)
    return _decay_value(x, length, decay, min_ratio, half_life)


def _cycle_ends(total: int, cycle: int | Sequence[int]) -> list[int]:
    if isinstance(cycle, (int, np.integer)) and not isinstance(cycle, bool):
        c = _int("cycle", cycle, 1)
        ends = list(range(c, total, c)) + [total]
    elif isinstance(cycle, Sequence) and not isinstance(cycle, str):
        ends = [_int("cycle end", e, 1) for e in cycle]
        if not ends or any(b <= a for a, b in zip(ends, ends[1:])) or ends[-1] != total:
            raise ValueError(f"cycle as a list gives the steps at which decays end: strictly increasing, the last "
                             f"equal to total={total}; got {list(cycle)!r}")
    else:
        raise ValueError(f"cycle must be a positive integer (cycle length) or a list of decay-end steps, got {cycle!r}")
    return ends


def _wsd_s_phases(ends: Sequence[int], decay_fraction: float) -> list[tuple[int, int, int]]:
    """``(cycle start, decay start, cycle end)`` of every cycle."""
    phases = []
    prev = 0
    for end in ends:
        length = _round_half_up(decay_fraction * (end - prev))
        phases.append((prev, end - length, end))
        prev = end
    return phases


def wsd_s_multiplier(step: float, total: int, warmup: int, cycle: int | Sequence[int], decay_fraction: float = 0.1,
                     decay: str = "linear", min_ratio: float = 0.0, half_life: float | None = None,
                     rewarmup: int = 0) -> float:
    """WSD-S (Wen et al. 2024, arXiv:2410.05192): cycles ``[E_{k-1}, E_k)``, each stable at 1 and decaying
    over its last ``round(decay_fraction (E_k - E_{k-1}))`` steps; back at 1 at ``E_k`` (or ramping back over
    ``rewarmup`` steps); the final value after ``total``."""
    ends = _cycle_ends(total, cycle)
    phases = _wsd_s_phases(ends, decay_fraction)
    if step < warmup:
        return _warm(step, warmup)
    if step >= total:
        start, dstart, end = phases[-1]
        return _decay_value(1.0, end - dstart, decay, min_ratio, half_life) if end > dstart else 1.0
    for k, (start, dstart, end) in enumerate(phases):
        if step >= end:
            continue
        if step >= dstart and end > dstart:
            return _decay_value((step - dstart) / (end - dstart), end - dstart, decay, min_ratio, half_life)
        if k > 0 and rewarmup > 0 and step < start + rewarmup:
            p_start, p_dstart, p_end = phases[k - 1]
            low = _decay_value(1.0, p_end - p_dstart, decay, min_ratio, half_life) if p_end > p_dstart else 1.0
            return low + (1.0 - low) * (step - start) / rewarmup
        return 1.0
    return 1.0  # unreachable: step < total lies in some cycle


# ------------------------------------------------------------------------------------------ the object
class LRSchedule:
    """A learning-rate multiplier :math:`\\eta(s)/\\eta_{\\max}`, callable on the step.

    ``LambdaLR(optimizer, schedule)`` works as is. Attributes are plain data: ``name`` (one of
    :data:`SCHEDULES`) and ``params`` (the keyword arguments of the builder), so the object survives
    ``LambdaLR.state_dict()`` / ``torch.save`` / ``torch.load(weights_only=True)``.
    """

    def __init__(self, name: str, params: dict[str, Any]):
        name = _ALIASES.get(name, name)
        if name not in _BUILDERS:
            raise ValueError(f"unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")
        self.name = name
        self.params = dict(params)

    def __call__(self, step: int | float) -> float:
        # the alias lookup serves objects whose __dict__ LambdaLR.load_state_dict restored from an old state
        return float(_VALUE[_ALIASES.get(self.name, self.name)](float(step), **self.params))

    def values(self, n: int | None = None) -> np.ndarray:
        """The multipliers of steps ``0 .. n-1`` (``n`` = ``total`` by default)."""
        if n is None:
            n = self.params.get("total")
            if n is None:
                raise ValueError("constant() has no total: pass the number of steps")
        return np.array([self(s) for s in range(int(n))], dtype=np.float64)

    def decay_ends(self) -> list[int]:
        """The steps (optimizer steps completed) at which a decay ends: the checkpoints to keep. WSD-S: one
        per cycle; cosine and WSD: ``[total]``; constant: ``[]``."""
        if _ALIASES.get(self.name, self.name) == "wsd-s":
            return _cycle_ends(self.params["total"], self.params["cycle"])
        if self.name == "constant":
            return []
        return [int(self.params["total"])]

    def describe(self) -> str:
        """One line per phase, in steps."""
        p = self.params
        w = p.get("warmup", 0)
        lines = [f"{self.name}({', '.join(f'{k}={v!r}' for k, v in p.items())})"]
        if w:
            lines.append(f"  warmup: 0 -> 1 linearly over steps [0, {w})")
        if self.name == "constant":
            lines.append(f"  constant 1 from step {w}")
        elif self.name == "cosine":
            lines.append(f"  cosine 1 -> {p['min_ratio']} over steps [{w}, {p['total']}], then {p['min_ratio']}")
        elif self.name == "wsd":
            start, length = _wsd_decay_start(p["total"], p["decay_fraction"])
            lines.append(f"  stable 1 over steps [{w}, {start})")
            if length:
                lines.append(f"  {p['decay']} decay over steps [{start}, {p['total']}] to "
                             f"{self(p['total']):.6g}")
        else:
            ends = _cycle_ends(p["total"], p["cycle"])
            for k, (start, dstart, end) in enumerate(_wsd_s_phases(ends, p["decay_fraction"])):
                s0 = max(start, w)
                ramp = f" (re-warmup over {p['rewarmup']} steps)" if k and p["rewarmup"] else ""
                lines.append(f"  cycle {k + 1}: stable 1 over [{s0}, {dstart}){ramp}, {p['decay']} decay over "
                             f"[{dstart}, {end}), checkpoint at step {end}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"LRSchedule({self.name!r}, {self.params!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LRSchedule) and (self.name, self.params) == (other.name, other.params)


# ------------------------------------------------------------------------------------------ builders
def constant(warmup: int = 0) -> LRSchedule:
    """Linear warmup over ``warmup`` steps, then the peak learning rate."""
    return LRSchedule("constant", {"warmup": _int("warmup", warmup, 0)})


def cosine(total: int, warmup: int = 0, min_ratio: float = 0.1) -> LRSchedule:
    """nanoGPT's schedule: linear warmup, then cosine from 1 to ``min_ratio`` at step ``total``."""
    total = _int("total", total, 1)
    warmup = _int("warmup", warmup, 0)
    if warmup >= total:
        raise ValueError(f"warmup ({warmup}) must be smaller than total ({total})")
    return LRSchedule("cosine", {"total": total, "warmup": warmup, "min_ratio": _ratio("min_ratio", min_ratio)})


def wsd(total: int, warmup: int = 0, decay_fraction: float = 0.1, decay: str = "linear", min_ratio: float = 0.0,
        half_life: float | None = None) -> LRSchedule:
    """Warmup-Stable-Decay (MiniCPM, Hu et al. 2024, arXiv:2404.06395): warmup, stable at 1, then a
    ``decay`` over the last ``round(decay_fraction * total)`` steps (MiniCPM: about 10 %, exponential)."""
    total = _int("total", total, 1)
    warmup = _int("warmup", warmup, 0)
    decay_fraction = _ratio("decay_fraction", decay_fraction)
    min_ratio = _ratio("min_ratio", min_ratio)
    start, _ = _wsd_decay_start(total, decay_fraction)
    _decay_params(decay, min_ratio, half_life)
    if warmup > start:
        raise ValueError(f"warmup ({warmup}) runs into the decay, which starts at step {start}")
    return LRSchedule("wsd", {"total": total, "warmup": warmup, "decay_fraction": decay_fraction, "decay": decay,
                              "min_ratio": min_ratio, "half_life": None if half_life is None else float(half_life)})


def wsd_s(total: int, warmup: int, cycle: int | Sequence[int], decay_fraction: float = 0.1, decay: str = "linear",
          min_ratio: float = 0.0, half_life: float | None = None, rewarmup: int = 0) -> LRSchedule:
    """WSD-S (Wen et al. 2024, arXiv:2410.05192): W → S → D → S → D … in one run, each stable phase
    resuming at the peak from the decayed checkpoint.

    Parameters
    ----------
    total : int
        Steps of the whole run (the last decay ends there).
    warmup : int
        Linear warmup steps at the start (only once).
    cycle : int or list of int
        Cycle length (decays end at ``cycle, 2*cycle, ..., total``) or the explicit decay-end steps.
    decay_fraction : float
        Each cycle decays over its last ``round(decay_fraction * cycle length)`` steps.
    decay, min_ratio, half_life
        The decay shape, as in :func:`wsd`.
    rewarmup : int
        0: back at the peak at the first step after a decay end. Otherwise a linear ramp that starts at
        the decay's final value at the decay end :math:`E_k` and reaches 1 at :math:`E_k` + ``rewarmup``.
    """
    total = _int("total", total, 1)
    warmup = _int("warmup", warmup, 0)
    decay_fraction = _ratio("decay_fraction", decay_fraction)
    min_ratio = _ratio("min_ratio", min_ratio)
    rewarmup = _int("rewarmup", rewarmup, 0)
    ends = _cycle_ends(total, cycle)
    phases = _wsd_s_phases(ends, decay_fraction)
    _decay_params(decay, min_ratio, half_life)
    if warmup > phases[0][1]:
        raise ValueError(f"warmup ({warmup}) runs into the first decay, which starts at step {phases[0][1]}")
    for start, dstart, _ in phases[1:]:
        if start + rewarmup > dstart:
            raise ValueError(f"rewarmup ({rewarmup}) runs into the decay starting at step {dstart}")
    cycle_param = int(cycle) if isinstance(cycle, (int, np.integer)) else [int(e) for e in cycle]
    return LRSchedule("wsd-s", {"total": total, "warmup": warmup, "cycle": cycle_param,
                                "decay_fraction": decay_fraction, "decay": decay, "min_ratio": min_ratio,
                                "half_life": None if half_life is None else float(half_life), "rewarmup": rewarmup})


_BUILDERS = {"cosine": cosine, "wsd": wsd, "wsd-s": wsd_s, "constant": constant}
_VALUE = {"cosine": cosine_multiplier, "wsd": wsd_multiplier, "wsd-s": wsd_s_multiplier,
          "constant": constant_multiplier}
_ALIASES = {"wsd_s": "wsd-s", "wsds": "wsd-s"}


def make_schedule(name: str, **kwargs: Any) -> LRSchedule:
    """Build a schedule by name: ``"cosine"``, ``"wsd"``, ``"wsd-s"`` (also ``"wsd_s"``) or ``"constant"``;
    keyword arguments go to the builder. Unknown names and arguments are ``ValueError`` listing the valid
    ones."""
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in _BUILDERS:
        raise ValueError(f"unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    builder = _BUILDERS[key]
    valid = list(inspect.signature(builder).parameters)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"schedule {key!r} takes no argument(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    return builder(**kwargs)
