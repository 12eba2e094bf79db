"""One loop for every bilevel method, and a small rule per method (the pattern of
:mod:`optlib.second_order.driver`).

:func:`run_bilevel` owns what all methods share: the state ``(x, y)`` and the random generator, the
counted oracles, the trace, the stopping rules and the refusal of a non-finite step (the run stops
with the reason; no parameter ever becomes NaN). A :class:`BilevelRule` owns one iteration. Update
rules (``h`` is a hypergradient estimate at ``(x_t, y_t)``, ``grad_y g`` a stochastic lower gradient):

* **BO-REP** (Hao, Gong & Liu, ICLR 2024, Algorithm 1; spec 30 §3): ``y_0`` refined by ``init_steps``
  SGD steps on ``g(x_0, .)``; ``y`` refreshed by ``refresh_steps`` SGD steps every ``period`` iterations
  (``t > 0``, ``t mod I = 0``) and kept otherwise; ``m <- beta m + (1 - beta) h`` with a Neumann ``h``;
  ``x <- x - eta m/||m||`` (one global norm). ``variant="reference"`` reproduces the authors' code
  (spec 30 §4): the lower Hessian taken at the stale ``y`` before the refresh, a SOBA z-iterate
  ``z <- z - nu (H_old z - grad_y f(x, y_new))`` instead of the Neumann series, one lower step on the other
  iterations, and ``m/(1e-10 + ||m||)``.
* **StocBiO** (Ji, Yang & Liang, ICML 2021): ``lower_steps`` warm-started SGD steps on ``y``, a Neumann
  ``h``, ``x <- x - lr_x h``.
* **TTSA** (Hong, Wai, Wang & Yang 2023): one SGD step on ``y`` with ``lower_lr (t+1)^{-2/5}``, a
  randomized-truncation Neumann ``h``, ``x <- x - lr_x (t+1)^{-3/5} h`` (the two time scales).
* **SOBA** (Dagréou, Ablin, Vaiter & Moreau, NeurIPS 2022): simultaneous steps from ``(x, y, z)``:
  ``y <- y - lower_lr grad_y g``, ``z <- z - z_lr (H z - grad_y f)``, ``x <- x - lr_x (grad_x f - grad^2_xy g z)``.
* **MA-SOBA** (Chen, Xu & Zhang 2023): SOBA with ``m <- (1 - theta) m + theta h`` and ``x <- x - lr_x m``.
* **SABA** (Dagréou et al. 2022): SOBA's three directions with SAGA variance reduction over a finite
  sum (a problem with ``finite_sum = (n_upper, n_lower)``, batches of one index).
* **SUSTAIN** (Khanduri, Zeng, Hong, Wai, Wang & Yang, NeurIPS 2021): STORM recursive momentum on both
  levels, ``d <- e(z_t; s_t) + (1 - a)(d - e(z_{t-1}; s_t))`` with the same sample ``s_t`` at both points,
  for the lower gradient and for the Neumann hypergradient; ``x <- x - lr_x d_x``, ``y <- y - lower_lr d_y``.
* **SLIP** (Gong, Hao & Liu, ICML 2024; spec 30 §5, details not read in the paper): a single loop with one
  SGD step on ``y`` per iteration and BO-REP's normalized momentum on ``x``.

AccBO is not implemented: the spec records its code only partly (a Nesterov lower level with averaging and
a STORM-like upper step whose correction uses a different sample), not enough to state it exactly.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..result import CALLBACK_STOP, MAXITER, NUMERICAL_FAILURE, SUCCESS, OptimizeResult, Trace, wrap_callback
from .hypergradient import hypergradient
from .problem import BilevelProblem


@dataclass
class BilevelState:
    """What a rule reads and updates: the iterates, the iteration index, the generator, and the rule's
    own memory (momentum, z-iterate, SAGA tables, ...)."""

    x: Tensor
    y: Tensor
    t: int
    generator: torch.Generator
    memory: dict[str, Any] = field(default_factory=dict)


class BilevelRule(ABC):
    """One method: ``start`` (before the first iteration) and ``step`` (one iteration, returning the fields
    it adds to the trace: at least ``refreshed``)."""

    name = "rule"
    variant = "paper"

    def start(self, problem: BilevelProblem, state: BilevelState) -> None:
        return None

    @abstractmethod
    def step(self, problem: BilevelProblem, state: BilevelState) -> dict[str, Any]:
        """One iteration: update ``state.x``, ``state.y`` and ``state.memory``; return the trace fields."""

    def options(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


# ----------------------------------------------------------------------------------------- shared pieces
def sgd_lower(problem: BilevelProblem, x: Tensor, y: Tensor, steps: int, lr: float,
              generator: torch.Generator) -> Tensor:
    """``steps`` SGD steps ``y <- y - lr grad_y g(x, y; zeta)``, a fresh lower batch per step."""
    for _ in range(steps):
        _, lb = problem.batches(generator)
        y = y - lr * problem.lower_grad(x, y, lb)
    return y


def normalized_momentum(memory: dict[str, Any], h: Tensor, beta: float, eps: float = 0.0) -> Tensor:
    """``m <- beta m + (1 - beta) h``; returns ``m/(eps + ||m||)`` (``m = h`` at the first call times (1 - beta))."""
    m = memory.get("m")
    m = (1.0 - beta) * h if m is None else beta * m + (1.0 - beta) * h
    memory["m"] = m
    norm = float(m.norm())
    if norm + eps == 0.0:
        return torch.zeros_like(m)
    return m / (eps + norm)


def _check_positive(**values: float) -> None:
    for name, val in values.items():
        if not (isinstance(val, (int, float)) and math.isfinite(val) and val > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {val!r}")


def _check_count(**values: int) -> None:
    for name, val in values.items():
        if not isinstance(val, int) or isinstance(val, bool) or val < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {val!r}")


# ----------------------------------------------------------------------------------------- the rules
class BOREP(BilevelRule):
    """BO-REP (module docstring). ``hypergrad_options`` go to the Neumann estimator (``steps``, ``alpha``)."""

    name = "bo-rep"

    def __init__(self, eta: float = 0.01, beta: float = 0.9, period: int = 2, refresh_steps: int = 10,
                 lower_lr: float = 0.05, init_steps: int = 100, variant: str = "paper", nu: float = 1e-2,
                 hypergrad_options: dict[str, Any] | None = None) -> None:
        _check_positive(eta=eta, lower_lr=lower_lr, nu=nu)
        _check_count(refresh_steps=refresh_steps, init_steps=init_steps)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must lie in [0, 1), got {beta}")
        if not isinstance(period, int) or period < 1:
            raise ValueError(f"period must be an integer >= 1, got {period!r}")
        if variant not in ("paper", "reference"):
            raise ValueError(f"unknown BO-REP variant {variant!r}; known: paper, reference")
        self.eta, self.beta, self.period, self.refresh_steps = eta, beta, period, refresh_steps
        self.lower_lr, self.init_steps, self.variant, self.nu = lower_lr, init_steps, variant, nu
        self.hypergrad_options = {"steps": 10, "check_step": False, **(hypergrad_options or {})}

    def start(self, problem: BilevelProblem, state: BilevelState) -> None:
        state.y = sgd_lower(problem, state.x, state.y, self.init_steps, self.lower_lr, state.generator)

    def step(self, problem: BilevelProblem, state: BilevelState) -> dict[str, Any]:
        refresh = state.t > 0 and state.t % self.period == 0
        if self.variant == "paper":
            if refresh:
                state.y = sgd_lower(problem, state.x, state.y, self.refresh_steps, self.lower_lr, state.generator)
            ub, lb = problem.batches(state.generator)
            h = hypergradient(problem, state.x, state.y, "neumann", upper_batch=ub, lower_batch=lb,
                              generator=state.generator, **self.hypergrad_options).grad
            eps = 0.0
        else:  # the authors' code: HVP at the stale y, then the lower steps, then the z step
            ub, lb = problem.batches(state.generator)
            z = state.memory.get("z")
            z = torch.zeros(problem.ny, dtype=problem.dtype) if z is None else z
            Hz_old = problem.hvp_yy(state.x, state.y, z, lb)
            state.y = sgd_lower(problem, state.x, state.y, self.refresh_steps if state.t % self.period == 0 else 1,
                                self.lower_lr, state.generator)
            gx, gy = problem.upper_grads(state.x, state.y, ub)
            z = z - self.nu * (Hz_old - gy)
            state.memory["z"] = z
            h = gx - problem.cross(state.x, state.y, z, lb)
            refresh = state.t % self.period == 0
            eps = 1e-10
        direction = normalized_momentum(state.memory, h, self.beta, eps)
        state.x = state.x - self.eta * direction
        return {"refreshed": refresh, "hypergrad_norm": float(h.norm())}


class StocBiO(BilevelRule):
    name = "stocbio"

    def __init__(self, lr_x: float = 0.01, lower_lr: float = 0.05, lower_steps: int = 10,
                 hypergrad_options: dict[str, Any] | None = None) -> None:
        _check_positive(lr_x=lr_x, lower_lr=lower_lr)
        _check_count(lower_steps=lower_steps)
        self.lr_x, self.lower_lr, self.lower_steps = lr_x, lower_lr, lower_steps
        self.hypergrad_options = {"steps": 10, "check_step": False, **(hypergrad_options or {})}

    def step(self, problem: BilevelProblem, state: BilevelState) -> dict[str, Any]:
        state.y = sgd_lower(problem, state.x, state.y, self.lower_steps, self.lower_lr, state.generator)
        ub, lb = problem.batches(state.generator)
        h = hypergradient(problem, state.x, state.y, "neumann", upper_batch=ub, lower_batch=lb,
                          generator=state.generator, **self.hypergrad_options).grad
        state.x = state.x - self.lr_x * h
        return {"refreshed": True, "hypergrad_norm": float(h.norm())}


class TTSA(BilevelRule):
    name = "ttsa"

    def __init__(self, lr_x: float = 0.01, lower_lr: float = 0.05,
                 hypergrad_options: dict[str, Any] | None = None) -> None:
        _check_positive(lr_x=lr_x, lower_lr=lower_lr)
        self.lr_x, self.lower_lr = lr_x, lower_lr
        self.hypergrad_options = {"steps": 10, "check_step": False, "randomized": True, **(hypergrad_options or {})}

    def step(self, problem: BilevelProblem, state: BilevelState) -> dict[str, Any]:
        k = state.t + 1
        state.y = sgd_lower(problem, state.x, state.y, 1, self.lower_lr * k ** -0.4, state.generator)
        ub, lb = problem.batches(state.generator)
        h = hypergradient(problem, state.x, state.y, "neumann", upper_batch=ub, lower_batch=lb,
                          generator=state.generator, **self.hypergrad_options).grad
        state.x = state.x - self.lr_x * k ** -0.6 * h
        return {"refreshed": True, "hypergrad_norm": float(h.norm())}


class SOBA(BilevelRule):
    name = "soba"

    def __init__(self, lr_x: float = 0.01, lower_lr: float = 0.05, z_lr: float | None = None) -> None:
        _check_positive(lr_x=lr_x, lower_lr=lower_lr)
        self.lr_x, self.lower_lr = lr_x, lower_lr
        self.z_lr = lower_lr if z_lr is None else z_lr
        _check_positive(z_lr=self.z_lr)

    def directions(self, problem: BilevelProblem, state: BilevelState) -> tuple[Tensor, Tensor, Tensor]:
        """``(D_y, D_z, D_x)`` at the current ``(x, y, z)`` on fresh batches."""
        ub, lb = problem.batches(state.generator)
        z = state.memory.get("z")
        z = torch.zeros(problem.ny, dtype=problem.dtype) if z is None else z
        gx, gy = problem.upper_grads(state.x, state.y, ub)
        d_y = problem.lower_grad(state.x, state.y, lb)
        d_z = problem.hvp_yy(state.x, state.y, z, lb) - gy
        d_x = gx - problem.cross(state.x, state.y, z, lb)
        return d_y, d_z, d_x

    def apply(self, state: BilevelState, d_y: Tensor, d_z: Tensor, x_direction: Tensor) -> None:
        z = state.memory.get("z")
        z = torch.zeros_like(d_z) if z is None else z
        state.y = state.y - self.lower_lr * d_y
        state.memory["z"] = z - self.z_lr * d_z
        state.x = state.x - self.lr_x * x_direction

    def step(self, problem: BilevelProblem, state: BilevelState) -> dict[str, Any]:
        d_y, d_z, d_x = self.directions(problem, state)
        self.apply(state, d_y, d_z, d_x)
        return {"refreshed": True, "hypergrad_norm": float(d_x.norm())}


class MASOBA(SOBA):
    name = "ma-soba"

    def __init__(self, lr_x: float = 0.01, lower_lr: float = 0.05, z_lr: float | None = None,
                 theta: float = 0.1) -> None:
        super().__init__(lr_x, lower_lr, z_lr)
        if not 0.0 < theta <= 1.0:
            raise ValueError(f"theta must lie in (0, 1], got {theta}")
        self.theta = theta

    def step(self, problem: BilevelProblem, state: BilevelState) -> dict[str, Any]:
        d_y, d_z, d_x = self.directions(problem, state)
        m = state.memory.get("m")
        m = d_x if m is None else (1.0 - self.theta) * m + self.theta * d_x
        state.memory["m"] = m
        self.apply(state, d_y, d_z, m)
        return {"refreshed": True, "hypergrad_norm": float(d_x.norm())}


class SABA(SOBA):
    """SOBA's directions with SAGA memories: ``est = new_i - mem_i + mean(mem)``, ``mem_i <- new_i``."""

    name = "saba"

    def start(self, problem: BilevelProblem, state: BilevelState) -> None:
        sizes = getattr(problem, "finite_sum", None)
        if sizes is None:
            raise ValueError("SABA needs a finite-sum problem: set problem.finite_sum = (n_upper, n_lower), "
                             "with f(x, y, idx) and g(x, y, idx) taking a tensor of sample indices")
        n_f, n_g = sizes
        z = torch.zeros(problem.ny, dtype=problem.dtype)
        state.memory["z"] = z
        # full initialisation of the tables (counted like every other oracle call)
        mem = {"gx": [], "gy": [], "dy": [], "hz": [], "cz": []}
        for j in range(n_f):
            gx, gy = problem.upper_grads(state.x, state.y, (torch.tensor([j]),))
            mem["gx"].append(gx)
            mem["gy"].append(gy)
        for i in range(n_g):
            idx = (torch.tensor([i]),)
            mem["dy"].append(problem.lower_grad(state.x, state.y, idx))
            mem["hz"].append(problem.hvp_yy(state.x, state.y, z, idx))
            mem["cz"].append(problem.cross(state.x, state.y, z, idx))
        state.memory["tables"] = {k: torch.stack(v) for k, v in mem.items()}
        state.memory["means"] = {k: v.mean(0) for k, v in state.memory["tables"].items()}

    def _saga(self, state: BilevelState, key: str, i: int, new: Tensor) -> Tensor:
        table, means = state.memory["tables"][key], state.memory["means"]
        est = new - table[i] + means[key]
        means[key] = means[key] + (new - table[i]) / table.shape[0]
        table[i] = new
        return est

    def step(self, problem: BilevelProblem, state: BilevelState) -> dict[str, Any]:
        n_f, n_g = problem.finite_sum
        j = int(torch.randint(n_f, (1,), generator=state.generator))
        i = int(torch.randint(n_g, (1,), generator=state.generator))
        z = state.memory["z"]
        gx, gy = problem.upper_grads(state.x, state.y, (torch.tensor([j]),))
        li = (torch.tensor([i]),)
        d_y = self._saga(state, "dy", i, problem.lower_grad(state.x, state.y, li))
        hz = self._saga(state, "hz", i, problem.hvp_yy(state.x, state.y, z, li))
        cz = self._saga(state, "cz", i, problem.cross(state.x, state.y, z, li))
        gx = self._saga(state, "gx", j, gx)
        gy = self._saga(state, "gy", j, gy)
        d_x = gx - cz
        self.apply(state, d_y, hz - gy, d_x)
        return {"refreshed": True, "hypergrad_norm": float(d_x.norm())}


class SUSTAIN(BilevelRule):
    name = "sustain"

    def __init__(self, lr_x: float = 0.01, lower_lr: float = 0.05, momentum: float = 0.1,
                 hypergrad_options: dict[str, Any] | None = None) -> None:
        _check_positive(lr_x=lr_x, lower_lr=lower_lr)
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum (the STORM weight a) must lie in (0, 1], got {momentum}")
        self.lr_x, self.lower_lr, self.momentum = lr_x, lower_lr, momentum
        self.hypergrad_options = {"steps": 10, "check_step": False, **(hypergrad_options or {})}

    def _h(self, problem: BilevelProblem, x: Tensor, y: Tensor, ub: tuple, lb: tuple) -> Tensor:
        return hypergradient(problem, x, y, "neumann", upper_batch=ub, lower_batch=lb,
                             **self.hypergrad_options).grad

    def step(self, problem: BilevelProblem, state: BilevelState) -> dict[str, Any]:
        ub, lb = problem.batches(state.generator)
        a = self.momentum
        h_new = self._h(problem, state.x, state.y, ub, lb)
        gy_new = problem.lower_grad(state.x, state.y, lb)
        prev = state.memory.get("prev")
        if prev is None:
            d_x, d_y = h_new, gy_new
        else:  # the same sample at the previous point (the STORM correction)
            x_old, y_old, d_x_old, d_y_old = prev
            d_x = h_new + (1.0 - a) * (d_x_old - self._h(problem, x_old, y_old, ub, lb))
            d_y = gy_new + (1.0 - a) * (d_y_old - problem.lower_grad(x_old, y_old, lb))
        state.memory["prev"] = (state.x, state.y, d_x, d_y)
        state.x = state.x - self.lr_x * d_x
        state.y = state.y - self.lower_lr * d_y
        return {"refreshed": True, "hypergrad_norm": float(h_new.norm())}


class SLIP(BilevelRule):
    name = "slip"

    def __init__(self, eta: float = 0.01, beta: float = 0.9, lower_lr: float = 0.05,
                 hypergrad_options: dict[str, Any] | None = None) -> None:
        _check_positive(eta=eta, lower_lr=lower_lr)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must lie in [0, 1), got {beta}")
        self.eta, self.beta, self.lower_lr = eta, beta, lower_lr
        self.hypergrad_options = {"steps": 10, "check_step": False, **(hypergrad_options or {})}

    def step(self, problem: BilevelProblem, state: BilevelState) -> dict[str, Any]:
        state.y = sgd_lower(problem, state.x, state.y, 1, self.lower_lr, state.generator)
        ub, lb = problem.batches(state.generator)
        h = hypergradient(problem, state.x, state.y, "neumann", upper_batch=ub, lower_batch=lb,
                          generator=state.generator, **self.hypergrad_options).grad
        state.x = state.x - self.eta * normalized_momentum(state.memory, h, self.beta)
        return {"refreshed": True, "hypergrad_norm": float(h.norm())}


METHODS: dict[str, type[BilevelRule]] = {cls.name: cls for cls in (BOREP, StocBiO, TTSA, SOBA, MASOBA, SABA,
                                                                      SUSTAIN, SLIP)}


def make_rule(method: str, **options: Any) -> BilevelRule:
    """The rule of ``method`` with ``options``; unknown names are errors listing the known ones."""
    if method not in METHODS:
        raise ValueError(f"unknown bilevel method {method!r}; known: {', '.join(METHODS)}")
    cls = METHODS[method]
    try:
        return cls(**options)
    except TypeError as exc:
        raise ValueError(f"bilevel method {method!r}: {exc}") from None


def run_bilevel(
    problem: BilevelProblem,
    method: str | BilevelRule = "bo-rep",
    *,
    iterations: int = 100,
    x0: Any = None,
    y0: Any = None,
    seed: int = 0,
    grad_tol: float | None = None,
    evaluate: Callable[[Tensor, Tensor], dict[str, float]] | None = None,
    eval_every: int = 10,
    callback: Callable[[OptimizeResult], Any] | None = None,
    progress: bool = False,
    **options: Any,
) -> OptimizeResult:
    """Run ``method`` for ``iterations`` upper iterations from ``(x0, y0)`` (the problem's by default).

    Returns an :class:`~optlib.OptimizeResult` with ``x``, ``y``, ``nit``, ``status``, ``message``,
    ``method``, ``variant``, ``options``, the oracle counters and a ``trace`` with one record per iteration:
    ``t``, ``step_norm`` (``||x_{t+1} - x_t||``), ``refreshed``, ``hypergrad_norm``, the counters, ``time``
    (seconds since the start, the time spent in ``evaluate`` excluded);
    on problems with closed forms also ``grad_phi_norm`` (``||grad Phi(x_t)||``) and ``y_error``
    (``||y_t - y*(x_t)||``, after the iteration's lower update), which cost no oracle calls; and every
    ``eval_every`` iterations what ``evaluate(x, y)`` returns. ``grad_tol`` (closed forms only) stops with
    success once ``||grad Phi(x)|| <= grad_tol``. A non-finite hypergradient or iterate stops the run
    (status 4) with the reason and keeps the last finite iterate.
    """
    rule = method if isinstance(method, BilevelRule) else make_rule(method, **options)
    if isinstance(method, BilevelRule) and options:
        raise ValueError("options go to the rule's constructor when a rule object is given")
    _check_count(iterations=iterations)
    if not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be an integer >= 1, got {eval_every!r}")
    if grad_tol is not None and not problem.has_closed_form:
        raise ValueError("grad_tol needs a problem with a closed-form hypergradient")
    x, y = problem.check_xy(problem.x0 if x0 is None else x0, problem.y0 if y0 is None else y0)
    state = BilevelState(x=x, y=y, t=0, generator=torch.Generator().manual_seed(seed))
    base = problem.counters.as_dict()
    trace = Trace()
    t0 = time.perf_counter()
    eval_time = 0.0  # time spent in evaluate(), excluded from the trace's "time"
    status, message = MAXITER, "Maximum number of iterations reached."

    def counts() -> dict[str, int]:
        now = problem.counters.as_dict()
        out = {k: now[k] - base[k] for k in now}
        out["oracle_calls"] = sum(out[k] for k in ("nupper", "nlower", "nhvp", "njvp"))
        return out

    def closed_form(rec: dict[str, Any]) -> None:
        if problem.has_closed_form:
            rec["grad_phi_norm"] = float(problem.true_hypergradient(state.x).norm())
            rec["y_error"] = float((state.y - problem.lower_solution(state.x)).norm())

    try:
        rule.start(problem, state)
    except FloatingPointError as exc:
        status, message = NUMERICAL_FAILURE, f"stopped before the first iteration: {exc}"
    first = {"t": 0, "step_norm": 0.0, "refreshed": True, "time": 0.0, **counts()}
    closed_form(first)
    if evaluate is not None:
        t_eval = time.perf_counter()
        first.update(evaluate(state.x, state.y))
        eval_time += time.perf_counter() - t_eval
    trace.append(first)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=iterations, desc=rule.name, leave=False)
    stop = wrap_callback(callback) if callback is not None else None
    while status == MAXITER and state.t < iterations:
        if grad_tol is not None and trace[-1]["grad_phi_norm"] <= grad_tol:
            status, message = SUCCESS, f"||grad Phi(x)|| <= grad_tol = {grad_tol:g}."
            break
        x_prev, y_prev, mem_prev = state.x, state.y, dict(state.memory)
        try:
            fields = rule.step(problem, state)
        except FloatingPointError as exc:
            fields = None
            reason = str(exc)
        else:
            reason = "a non-finite iterate"
        if fields is None or not (bool(torch.isfinite(state.x).all()) and bool(torch.isfinite(state.y).all())):
            state.x, state.y, state.memory = x_prev, y_prev, mem_prev
            status, message = NUMERICAL_FAILURE, f"step {state.t} refused: {reason}; the last finite iterate is kept."
            break
        state.t += 1
        rec = {"t": state.t, "step_norm": float((state.x - x_prev).norm()), **fields,
               "time": time.perf_counter() - t0 - eval_time, **counts()}
        closed_form(rec)
        if evaluate is not None and (state.t % eval_every == 0 or state.t == iterations):
            t_eval = time.perf_counter()
            rec.update(evaluate(state.x, state.y))
            eval_time += time.perf_counter() - t_eval
        trace.append(rec)
        if bar is not None:
            bar.update(1)
        if stop is not None and stop(OptimizeResult(x=state.x, y=state.y, nit=state.t, trace=trace)):
            status, message = CALLBACK_STOP, "Stopped by the callback."
    if grad_tol is not None and status == MAXITER and trace[-1]["grad_phi_norm"] <= grad_tol:
        status, message = SUCCESS, f"||grad Phi(x)|| <= grad_tol = {grad_tol:g}."
    if bar is not None:
        bar.close()
    return OptimizeResult(x=state.x, y=state.y, nit=state.t, status=status, success=status == SUCCESS,
                          message=message, method=rule.name, variant=rule.variant, options=rule.options(),
                          trace=trace, **counts())


class BilevelOptimizer:
    """The usual training loop over ``nn.Module`` parameters: one :meth:`step` is one iteration of
    ``method`` on a problem from :meth:`BilevelProblem.from_modules`, written back into the modules.

    >>> opt = BilevelOptimizer(problem, "bo-rep", eta=0.01)      # doctest: +SKIP
    >>> for _ in range(1000):                                     # doctest: +SKIP
    ...     opt.step()

    ``state_dict``/``load_state_dict`` save and restore the iterates, the iteration index, the rule's
    memory and the generator, so a resumed run continues exactly.
    """

    def __init__(self, problem: BilevelProblem, method: str = "bo-rep", *, seed: int = 0, **options: Any) -> None:
        if getattr(problem, "layouts", None) is None:
            raise ValueError("BilevelOptimizer needs a problem built by BilevelProblem.from_modules")
        self.problem = problem
        self.rule = make_rule(method, **options)
        self.state = BilevelState(x=problem.x0.clone(), y=problem.y0.clone(), t=0,
                                  generator=torch.Generator().manual_seed(seed))
        self._started = False

    def step(self) -> dict[str, Any]:
        """One iteration; refuses (``FloatingPointError``) a step that would make a parameter non-finite."""
        if not self._started:
            self.rule.start(self.problem, self.state)
            self._started = True
        x_prev, y_prev, mem_prev = self.state.x, self.state.y, dict(self.state.memory)
        fields = self.rule.step(self.problem, self.state)
        if not (bool(torch.isfinite(self.state.x).all()) and bool(torch.isfinite(self.state.y).all())):
            self.state.x, self.state.y, self.state.memory = x_prev, y_prev, mem_prev
            raise FloatingPointError(f"step {self.state.t} refused: a non-finite iterate; parameters unchanged")
        self.state.t += 1
        self.problem.write_back(self.state.x, self.state.y)
        return fields

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.state.x.clone(), "y": self.state.y.clone(), "t": self.state.t,
                "memory": dict(self.state.memory), "generator": self.state.generator.get_state(),
                "started": self._started}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.state.x, self.state.y, self.state.t = sd["x"].clone(), sd["y"].clone(), int(sd["t"])
        self.state.memory = dict(sd["memory"])
        self.state.generator.set_state(sd["generator"])
        self._started = bool(sd["started"])
        self.problem.write_back(self.state.x, self.state.y)
