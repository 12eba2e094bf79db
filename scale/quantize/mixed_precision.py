r"""Per-layer number formats chosen by an integer linear program: a *reconstruction* of SNIP-style mixed precision.

SNIP (Pan, Yang, Yang, Mahlke, "SNIP: ...", arXiv:2602.01410, ASPLOS 2026) scores each GEMM of a model in each
candidate format by a *loss divergence* (the forward, quantization-induced change of the loss) and a *weight
divergence* (how quantization error propagates into the weight update), then picks one format per layer with an ILP
under an efficiency target. Only the paper's abstract was available when this module was written: the formulas
below are our reconstruction in the standard multiple-choice-knapsack form (project spec 60-quantization.md §9), not
the paper's §4, and the module is named for what it does, not "SNIP", until the two are checked against each other.
Here the formats apply to the *weights* of ``nn.Linear`` layers (post-training), not to all GEMM operands.

Formats (fake-quantized: rounded to the format and returned in the original dtype):

* ``bf16``: round to bfloat16 (nearest-even, torch's cast); 16 bits per weight.
* ``fp8_e4m3``: one per-tensor scale :math:`s = \max|W| / 448`, then ``torch.float8_e4m3fn`` (nearest-even,
  448 the largest finite value); 8 bits per weight.
* ``fp4_e2m1``: blocks of 32 consecutive input columns, scale :math:`s = \max|W_\text{block}| / 6`, then
  :func:`round_to_e2m1`; 4 bits per weight plus a 16-bit scale per 32 weights (4.5 bits).
* ``int4_g128``: the asymmetric group quantizer of :mod:`scale.quantize.quantizer` with ``group_size=128``
  (ragged last group when 128 does not divide the input dimension); 4 bits plus a 16-bit scale and a 4-bit zero
  per 128 weights (4.156 bits).

Sensitivities, measured on calibration batches with the loss :math:`L` (mean over batches), for layer :math:`l` with
input :math:`X_l`, output :math:`Y_l = X_l W_l^\top (+b)` and the fake-quantized weight :math:`W_l^{(p)}`:

.. math::

    \mathrm{LD}_{l,p} = \bigl|\langle \nabla_{Y_l} L,\ X_l (W_l^{(p)} - W_l)^\top \rangle\bigr|,\qquad
    \mathrm{WD}_{l,p} = \frac{\lVert \nabla_{W_l} L(W_l^{(p)}) - \nabla_{W_l} L(W_l) \rVert_F}
                             {\lVert \nabla_{W_l} L(W_l) \rVert_F},

the first-order change of the loss when only layer :math:`l` is quantized, and the relative change of layer
:math:`l`'s gradient (its SGD update direction) when the forward pass runs with :math:`W_l^{(p)}`.

ILP (:func:`solve_ilp`), binary :math:`x_{l,p}`, allowed formats :math:`A_l` (a pinned layer has one):

.. math::

    \min \sum_{l,p} x_{l,p}\,(\mathrm{LD}_{l,p} + \lambda\,\mathrm{WD}_{l,p})\quad\text{s.t.}\quad
    \sum_{p \in A_l} x_{l,p} = 1\ \forall l,\qquad \sum_{l,p} x_{l,p}\,c_{l,p} \le B,

with costs :math:`c_{l,p}` = bits (``budget_kind="size"``: parameters × bits per weight) or FLOP time
(``"flops"``: :math:`2\,d_\text{in} d_\text{out}` × the format's time factor, bf16 : fp8 : fp4 = 1 : 1/2 : 1/4,
int4 g128 = 1 because W4A16 runs its math in 16 bits) and :math:`B = \rho \sum_l c_{l,\text{bf16}}`. Solved with
PuLP's bundled CBC or with HiGHS (``highspy``). A budget below the cheapest allowed assignment raises
:class:`InfeasibleBudgetError` giving the smallest feasible :math:`\rho`. :func:`brute_force` (enumeration) and
:func:`greedy` (the classic multiple-choice-knapsack heuristic: start from the cheapest formats, then repeatedly take
the upgrade with the largest score decrease per unit of cost that still fits) are the cross-checks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pulp
import torch
from torch import Tensor, nn

from scale.quantize.quantizer import fit_groups, quantize_with

__all__ = [
    "BACKENDS",
    "E2M1_VALUES",
    "FORMATS",
    "Assignment",
    "InfeasibleBudgetError",
    "MixedPrecisionPlan",
    "SensitivityTable",
    "WeightFormat",
    "brute_force",
    "choose_formats",
    "fake_quantize",
    "greedy",
    "measure_sensitivity",
    "min_feasible_budget",
    "round_to_e2m1",
    "solve_ilp",
]

E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
"""The non-negative values of fp4 e2m1 (1 sign, 2 exponent, 1 mantissa bit; no inf/nan; largest 6)."""
FP8_E4M3_MAX = 448.0
FP4_BLOCK = 32
INT4_GROUP = 128


class InfeasibleBudgetError(ValueError):
    """The budget is below the cost of the cheapest allowed assignment; ``min_budget`` is the smallest feasible."""

    def __init__(self, message: str, min_budget: float) -> None:
        super().__init__(message)
        self.min_budget = min_budget


# ----------------------------------------------------------------------------------------------------------------
# Formats
# ----------------------------------------------------------------------------------------------------------------


def round_to_e2m1(x: Tensor) -> Tensor:
    """Round to the nearest fp4 e2m1 value, ties to the value with an even mantissa bit, saturating at ±6.

    Between neighbours ``a < b`` of :data:`E2M1_VALUES` the midpoint goes to whichever has mantissa bit 0: 0.25 → 0,
    0.75 → 1, 1.25 → 1, 1.75 → 2, 2.5 → 2, 3.5 → 4, 5 → 4 (the IEEE round-half-to-even rule applied to the
    e2m1 grid, as in the OCP Microscaling spec's conversions). The sign is kept; NaN is refused.
    """
    if torch.isnan(x).any():
        raise ValueError("round_to_e2m1 got NaN, which fp4 e2m1 cannot represent")
    grid = torch.tensor(E2M1_VALUES, dtype=x.dtype, device=x.device)
    mid = (grid[1:] + grid[:-1]) / 2
    a = x.abs().clamp(max=grid[-1])
    up = torch.bucketize(a, mid, right=True)  # a == mid[i] goes to i + 1
    tie = (up > 0) & (a == mid[(up - 1).clamp(min=0)])
    # mid[i] lies between grid[i] and grid[i+1]; grid[i] has an even mantissa when i is even
    to_lower = tie & ((up - 1) % 2 == 0)
    idx = torch.where(to_lower, up - 1, up)
    return torch.copysign(grid[idx], x)


def _bf16(w: Tensor) -> Tensor:
    return w.to(torch.bfloat16).to(w.dtype)


def _fp8_e4m3(w: Tensor) -> Tensor:
    amax = w.abs().max()
    if amax == 0:
        return w.clone()
    s = amax / FP8_E4M3_MAX
    return (w / s).to(torch.float8_e4m3fn).to(w.dtype) * s


def _fp4_e2m1(w: Tensor) -> Tensor:
    out_f, in_f = w.shape
    pad = (-in_f) % FP4_BLOCK
    wp = torch.nn.functional.pad(w, (0, pad)).reshape(out_f, -1, FP4_BLOCK)
    s = wp.abs().amax(dim=-1, keepdim=True) / E2M1_VALUES[-1]
    s = torch.where(s == 0, torch.ones_like(s), s)
    return (round_to_e2m1(wp / s) * s).reshape(out_f, -1)[:, :in_f]


def _int4_g128(w: Tensor) -> Tensor:
    scales, zeros = fit_groups(w, 4, INT4_GROUP, sym=False, allow_ragged=True)
    q = quantize_with(w, scales, zeros, 4, INT4_GROUP)
    cols = torch.arange(w.shape[1], device=w.device) // INT4_GROUP
    return (scales[:, cols] * (q.to(scales.dtype) - zeros[:, cols])).to(w.dtype)


@dataclass(frozen=True)
class WeightFormat:
    """A weight format: storage bits per weight (scales included), GEMM time relative to bf16, fake quantizer."""

    name: str
    bits_per_weight: float
    time_factor: float
    quantize: Callable[[Tensor], Tensor] = field(repr=False)


FORMATS: dict[str, WeightFormat] = {
    f.name: f for f in (
        WeightFormat("bf16", 16.0, 1.0, _bf16),
        WeightFormat("fp8_e4m3", 8.0, 0.5, _fp8_e4m3),
        WeightFormat("fp4_e2m1", 4.0 + 16.0 / FP4_BLOCK, 0.25, _fp4_e2m1),
        WeightFormat("int4_g128", 4.0 + (16.0 + 4.0) / INT4_GROUP, 1.0, _int4_g128),
    )
}
REFERENCE_FORMAT = "bf16"


def fake_quantize(w: Tensor, fmt: str) -> Tensor:
    """``w`` ``[out, in]`` rounded to format ``fmt`` (a key of :data:`FORMATS`), in ``w``'s dtype."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if w.ndim != 2:
        raise ValueError(f"fake_quantize expects a 2-D weight [out, in], got shape {tuple(w.shape)}")
    return FORMATS[fmt].quantize(w.detach())


# ----------------------------------------------------------------------------------------------------------------
# Sensitivities
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class SensitivityTable:
    """Per-layer measurements: arrays are ``[layers, formats]`` (``n_params`` and ``flops`` are ``[layers]``).

    ``loss_change_first_order`` is the signed :math:`\\langle \\nabla_Y L, \\Delta Y\\rangle`; ``loss_divergence``
    its absolute value; ``flops`` counts :math:`2\\,d_\\text{in} d_\\text{out}` per token.
    """

    layers: list[str]
    formats: list[str]
    loss_change_first_order: np.ndarray
    weight_divergence: np.ndarray
    n_params: np.ndarray
    flops: np.ndarray

    @property
    def loss_divergence(self) -> np.ndarray:
        return np.abs(self.loss_change_first_order)

    def scores(self, weight_divergence_weight: float = 1.0) -> np.ndarray:
        """:math:`\\mathrm{LD} + \\lambda\\,\\mathrm{WD}` per layer and format."""
        if not math.isfinite(weight_divergence_weight) or weight_divergence_weight < 0:
            raise ValueError(f"weight_divergence_weight must be finite and >= 0, got {weight_divergence_weight}")
        return self.loss_divergence + weight_divergence_weight * self.weight_divergence

    def costs(self, budget_kind: str) -> np.ndarray:
        """Bits (``"size"``) or relative FLOP time (``"flops"``) of each layer in each format."""
        if budget_kind == "size":
            per = np.array([FORMATS[f].bits_per_weight for f in self.formats])
            return self.n_params[:, None] * per[None, :]
        if budget_kind == "flops":
            per = np.array([FORMATS[f].time_factor for f in self.formats])
            return self.flops[:, None] * per[None, :]
        raise ValueError(f"budget_kind must be 'size' or 'flops', got {budget_kind!r}")


def _linear_layers(model: nn.Module, layers: Sequence[str] | None) -> dict[str, nn.Linear]:
    modules = dict(model.named_modules())
    if layers is None:
        found = {n: m for n, m in modules.items() if isinstance(m, nn.Linear)}
        if not found:
            raise ValueError(f"{type(model).__name__} has no nn.Linear layers")
        return found
    out = {}
    for name in layers:
        if not isinstance(modules.get(name), nn.Linear):
            raise ValueError(f"{name!r} is not an nn.Linear of the model")
        out[name] = modules[name]
    if not out:
        raise ValueError("layers is empty")
    return out


def measure_sensitivity(model: nn.Module, loss_fn: Callable[[nn.Module, Any], Tensor], batches: Iterable[Any],
                        formats: Sequence[str] = tuple(FORMATS), layers: Sequence[str] | None = None
                        ) -> SensitivityTable:
    """Loss and weight divergences (module docstring) of each ``nn.Linear`` in each format.

    ``loss_fn(model, batch)`` returns a scalar loss; the loss is averaged over ``batches``. Cost: one forward and
    backward pass per batch for the reference, then one per (layer, format, batch) for the weight divergences. The
    model's weights are restored afterwards and its gradients cleared.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be a non-empty subset of {list(FORMATS)}, got unknown {unknown}")
    batches = list(batches)
    if not batches:
        raise ValueError("measure_sensitivity needs at least one calibration batch")
    linears = _linear_layers(model, layers)
    names = list(linears)
    inputs: dict[str, list[Tensor]] = {n: [] for n in names}
    outputs: dict[str, list[Tensor]] = {n: [] for n in names}

    def hook(name: str):
        def record(_module, args, output):
            if not output.requires_grad:
                raise ValueError(f"the output of layer {name!r} does not require grad: measure with gradients "
                                 "enabled and the layer's weight trainable")
            inputs[name].append(args[0].detach())
            output.retain_grad()
            outputs[name].append(output)
        return record

    handles = [linears[n].register_forward_hook(hook(n)) for n in names]
    try:
        base_grads = _weight_grads(model, loss_fn, batches, linears)
    finally:
        for h in handles:
            h.remove()
    first = np.zeros((len(names), len(formats)))
    wd = np.zeros((len(names), len(formats)))
    for i, name in enumerate(names):
        layer = linears[name]
        original = layer.weight.detach().clone()
        grads_y = [o.grad for o in outputs[name]]
        for j, fmt in enumerate(formats):
            delta = fake_quantize(original, fmt) - original
            change = sum(float((g * (x @ delta.T)).sum()) for g, x in zip(grads_y, inputs[name], strict=True))
            first[i, j] = change  # the output gradients are already those of the batch-mean loss
            if not bool(delta.any()):
                continue  # the format represents this weight exactly: no divergence
            with torch.no_grad():
                layer.weight.copy_(original + delta)
            try:
                g_p = _weight_grads(model, loss_fn, batches, {name: layer})[name]
            finally:
                with torch.no_grad():
                    layer.weight.copy_(original)
            g0 = base_grads[name]
            num = float(torch.linalg.norm(g_p - g0))
            den = float(torch.linalg.norm(g0))
            wd[i, j] = num / den if den > 0 else (0.0 if num == 0 else math.inf)
    model.zero_grad(set_to_none=True)
    n_params = np.array([linears[n].weight.numel() for n in names], dtype=float)
    return SensitivityTable(names, list(formats), first, wd, n_params, 2.0 * n_params)


def _weight_grads(model: nn.Module, loss_fn: Callable[[nn.Module, Any], Tensor], batches: list[Any],
                  linears: Mapping[str, nn.Linear]) -> dict[str, Tensor]:
    """Gradients of the batch-mean loss with respect to the weights of ``linears``."""
    model.zero_grad(set_to_none=True)
    for batch in batches:
        loss = loss_fn(model, batch)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(f"loss_fn must return a scalar tensor, got {type(loss).__name__}")
        (loss / len(batches)).backward()
    out = {}
    for name, layer in linears.items():
        if layer.weight.grad is None:
            raise ValueError(f"the loss does not depend on layer {name!r} (no gradient reached it)")
        out[name] = layer.weight.grad.detach().clone()
    return out


# ----------------------------------------------------------------------------------------------------------------
# The assignment problem
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    """One format index per layer, with its objective and cost."""

    choice: tuple[int, ...]
    objective: float
    cost: float


BACKENDS = ("cbc", "highs")


def _check_problem(scores: np.ndarray, costs: np.ndarray, allowed: np.ndarray | None) -> tuple[np.ndarray, ...]:
    scores = np.asarray(scores, dtype=float)
    costs = np.asarray(costs, dtype=float)
    if scores.ndim != 2 or scores.shape != costs.shape or 0 in scores.shape:
        raise ValueError(f"scores {scores.shape} and costs {costs.shape} must be the same non-empty [layers, formats]")
    if not (np.isfinite(scores).all() and np.isfinite(costs).all()):
        raise ValueError("scores and costs must be finite")
    if (costs < 0).any():
        raise ValueError("costs must be >= 0")
    allowed = np.ones(scores.shape, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    if allowed.shape != scores.shape:
        raise ValueError(f"allowed must have shape {scores.shape}, got {allowed.shape}")
    empty = np.flatnonzero(~allowed.any(axis=1))
    if empty.size:
        raise ValueError(f"layers {empty.tolist()} have no allowed format")
    return scores, costs, allowed


def min_feasible_budget(costs: np.ndarray, allowed: np.ndarray | None = None) -> float:
    """The cost of the cheapest allowed assignment: every layer at its cheapest allowed format."""
    _, costs, allowed = _check_problem(np.zeros_like(np.asarray(costs, dtype=float)), costs, allowed)
    return float(np.where(allowed, costs, np.inf).min(axis=1).sum())


def _check_budget(costs: np.ndarray, allowed: np.ndarray, budget: float) -> None:
    if not isinstance(budget, (int, float)) or math.isnan(budget):
        raise ValueError(f"budget must be a number, got {budget!r}")
    need = min_feasible_budget(costs, allowed)
    if budget < need * (1 - 1e-12):
        raise InfeasibleBudgetError(
            f"budget {budget:.6g} is below the smallest feasible budget {need:.6g} (every layer at its cheapest "
            f"allowed format)", need)


def _assignment(choice: Sequence[int], scores: np.ndarray, costs: np.ndarray) -> Assignment:
    rows = np.arange(len(choice))
    c = np.asarray(choice)
    return Assignment(tuple(int(v) for v in choice), float(scores[rows, c].sum()), float(costs[rows, c].sum()))


def solve_ilp(scores: np.ndarray, costs: np.ndarray, budget: float, allowed: np.ndarray | None = None, *,
              backend: str = "cbc") -> Assignment:
    """The optimum of the multiple-choice knapsack ILP (module docstring) with PuLP.

    ``backend``: ``"cbc"`` (PuLP's bundled CBC) or ``"highs"`` (needs ``highspy``). Relative and absolute MIP gaps
    are set to 1e-10 (HiGHS's default relative gap, 1e-4, would accept near-optimal answers).
    """
    scores, costs, allowed = _check_problem(scores, costs, allowed)
    _check_budget(costs, allowed, budget)
    if backend == "cbc":
        with warnings.catch_warnings():
            # PuLP 3.3 announces that PULP_CBC_CMD (the CBC binary it bundles) goes away in PuLP 4.0; it is the
            # offline solver this module relies on, so the notice is silenced here rather than in every caller.
            warnings.filterwarnings("ignore", message="PULP_CBC_CMD is deprecated", category=DeprecationWarning)
            solver = pulp.PULP_CBC_CMD(msg=False, gapRel=1e-10, gapAbs=1e-10)
    elif backend == "highs":
        solver = pulp.HiGHS(msg=False, gapRel=1e-10, gapAbs=1e-10)
    else:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not solver.available():
        raise RuntimeError(f"the {backend!r} ILP backend is not available here"
                           + (" (pip install highspy)" if backend == "highs" else ""))
    n_layers, n_formats = scores.shape
    # Costs are rescaled to O(1) so the solvers' absolute feasibility tolerances mean the same at any model size.
    unit = max(float(costs.max()), 1e-300)
    prob = pulp.LpProblem("mixed_precision", pulp.LpMinimize)
    x = {(i, j): prob.add_variable(f"x_{i}_{j}", cat="Binary")
         for i in range(n_layers) for j in range(n_formats) if allowed[i, j]}
    prob += pulp.lpSum(float(scores[i, j]) * v for (i, j), v in x.items())
    for i in range(n_layers):
        prob += pulp.lpSum(v for (li, _), v in x.items() if li == i) == 1, f"one_format_{i}"
    prob += pulp.lpSum(float(costs[i, j] / unit) * v for (i, j), v in x.items()) <= budget / unit, "budget"
    status = prob.solve(solver)
    if pulp.LpStatus[status] != "Optimal":
        raise RuntimeError(f"the {backend} solver returned status {pulp.LpStatus[status]!r}")
    choice = []
    for i in range(n_layers):
        picked = [j for j in range(n_formats) if allowed[i, j] and (x[i, j].value() or 0) > 0.5]
        if len(picked) != 1:
            raise RuntimeError(f"the {backend} solution picks {len(picked)} formats for layer {i}")
        choice.append(picked[0])
    result = _assignment(choice, scores, costs)
    if result.cost > budget * (1 + 1e-9) + 1e-12:
        raise RuntimeError(f"the {backend} solution costs {result.cost:.9g}, over the budget {budget:.9g}")
    return result


def brute_force(scores: np.ndarray, costs: np.ndarray, budget: float, allowed: np.ndarray | None = None
                ) -> Assignment:
    """The optimum by enumerating every assignment (for checking :func:`solve_ilp`; at most 8 layers)."""
    scores, costs, allowed = _check_problem(scores, costs, allowed)
    _check_budget(costs, allowed, budget)
    if scores.shape[0] > 8:
        raise ValueError(f"brute force enumerates formats^layers assignments; refusing {scores.shape[0]} > 8 layers")
    options = [np.flatnonzero(allowed[i]) for i in range(scores.shape[0])]
    combos = np.stack(np.meshgrid(*options, indexing="ij"), axis=-1).reshape(-1, len(options))
    rows = np.arange(scores.shape[0])
    total_cost = costs[rows, combos].sum(axis=1)
    total_score = scores[rows, combos].sum(axis=1)
    feasible = total_cost <= budget * (1 + 1e-12)
    best = np.flatnonzero(feasible)[np.argmin(total_score[feasible])]
    return _assignment(combos[best], scores, costs)


def greedy(scores: np.ndarray, costs: np.ndarray, budget: float, allowed: np.ndarray | None = None) -> Assignment:
    """The multiple-choice-knapsack greedy heuristic (module docstring); never better than the ILP optimum."""
    scores, costs, allowed = _check_problem(scores, costs, allowed)
    _check_budget(costs, allowed, budget)
    masked_cost = np.where(allowed, costs, np.inf)
    # cheapest allowed format per layer, the lower score among equally cheap ones
    choice = [int(np.lexsort((scores[i], masked_cost[i]))[0]) for i in range(scores.shape[0])]
    spent = float(sum(costs[i, c] for i, c in enumerate(choice)))
    while True:
        best, best_ratio = None, 0.0
        for i, cur in enumerate(choice):
            for j in np.flatnonzero(allowed[i]):
                gain = scores[i, cur] - scores[i, j]
                extra = costs[i, j] - costs[i, cur]
                if gain <= 0 or spent + extra > budget * (1 + 1e-12):
                    continue
                ratio = math.inf if extra <= 0 else gain / extra
                if best is None or ratio > best_ratio:
                    best, best_ratio = (i, int(j)), ratio
        if best is None:
            return _assignment(choice, scores, costs)
        i, j = best
        spent += costs[i, j] - costs[i, choice[i]]
        choice[i] = j


# ----------------------------------------------------------------------------------------------------------------
# From measurements to a plan
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class MixedPrecisionPlan:
    """The chosen format per layer, with the ILP objective, its cost and the budget, both relative to all-bf16;
    ``greedy_objective`` is the heuristic's objective on the same problem (≥ ``objective``)."""

    formats: dict[str, str]
    objective: float
    relative_cost: float
    budget: float
    budget_kind: str
    backend: str
    greedy_objective: float

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.formats.values():
            out[f] = out.get(f, 0) + 1
        return out


def choose_formats(table: SensitivityTable, budget: float, *, budget_kind: str = "size",
                   weight_divergence_weight: float = 1.0, pin_first_last: str | None = None,
                   pinned: Mapping[str, str] | None = None, backend: str = "cbc") -> MixedPrecisionPlan:
    """Pick one format per layer of ``table`` with :func:`solve_ilp`.

    ``budget`` is :math:`\\rho`, the allowed cost as a fraction of every layer in bf16 (size: bits; flops: FLOP
    time). ``pin_first_last`` (a format name) fixes the first and last layers of the table to it; ``pinned`` fixes
    named layers. An infeasible ``budget`` raises :class:`InfeasibleBudgetError` whose message and ``min_budget``
    give the smallest feasible :math:`\\rho`.
    """
    if REFERENCE_FORMAT not in table.formats:
        raise ValueError(f"the budget is relative to {REFERENCE_FORMAT}, which the table does not measure")
    pins = dict(pinned or {})
    if pin_first_last is not None:
        pins.setdefault(table.layers[0], pin_first_last)
        pins.setdefault(table.layers[-1], pin_first_last)
    allowed = np.ones((len(table.layers), len(table.formats)), dtype=bool)
    for name, fmt in pins.items():
        if name not in table.layers:
            raise ValueError(f"pinned layer {name!r} is not in the table (layers: {table.layers})")
        if fmt not in table.formats:
            raise ValueError(f"pinned format {fmt!r} for {name!r} is not measured (formats: {table.formats})")
        i = table.layers.index(name)
        allowed[i] = False
        allowed[i, table.formats.index(fmt)] = True
    costs = table.costs(budget_kind)
    base = float(costs[:, table.formats.index(REFERENCE_FORMAT)].sum())
    rel = costs / base
    scores = table.scores(weight_divergence_weight)
    try:
        best = solve_ilp(scores, rel, budget, allowed, backend=backend)
    except InfeasibleBudgetError as exc:
        raise InfeasibleBudgetError(
            f"{budget_kind} budget rho={budget:.6g} of all-{REFERENCE_FORMAT} is below the smallest feasible "
            f"rho={exc.min_budget:.6g} (every layer at its cheapest allowed format"
            f"{', pinned layers at their pinned format' if pins else ''})", exc.min_budget) from None
    heuristic = greedy(scores, rel, budget, allowed)
    return MixedPrecisionPlan({n: table.formats[j] for n, j in zip(table.layers, best.choice, strict=True)},
                              best.objective, best.cost, float(budget), budget_kind, backend, heuristic.objective)
