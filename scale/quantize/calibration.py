r"""Model plumbing of :mod:`scale.quantize`: calibration windows, Hessians by forward hooks, smoothing folds for
our GPT (:mod:`scale.model`), sequential quantization of a whole model, and perplexity.

**Calibration.** ``n`` random context windows of the *training* split (:func:`calibration_windows`). A layer's
Hessian is :math:`H = \frac{2}{n}\sum_t x_t x_t^\top` over the :math:`n` tokens its input sees (a forward hook on the
``nn.Linear``; summed in float64, the same quantity as the reference's streaming ``add_batch`` rescaling).

**Sequential form** (the reference's default order, one ``nn.Linear`` at a time, input side first): the Hessian of
each layer is collected with every earlier layer already quantized, so each layer compensates the error of those
before it. GPTAQ's :math:`\Delta X X^\top` also needs the full-precision model's input to the same layer, taken in
the same pass from an unquantized copy.

**Which layers.** Every ``nn.Linear`` whose weight is not an embedding's (the tied head of our GPT shares
``wte.weight`` and stays in float, as the references leave ``lm_head`` out).

**Perplexity per character** on the validation split: :math:`\exp(\text{mean CE})` over non-overlapping windows of
``block_size`` tokens (GPTQ's ``opt_eval`` windowing: ``n_windows = (len - 1) // block_size``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scale.quantize.awq import awq_search
from scale.quantize.foem import FOEMSweep
from scale.quantize.gptq import GPTQSweep
from scale.quantize.quantizer import QuantizedWeight, check_bits, check_group_size
from scale.quantize.rtn import rtn
from scale.quantize.smoothquant import (
    fold_into_linear_rows,
    fold_into_norm,
    scale_input_columns,
    smoothing_scales,
)

__all__ = [
    "METHODS",
    "MethodSpec",
    "QuantSettings",
    "QuantizedModel",
    "SmoothingMapping",
    "apply_smoothing",
    "calibration_loss",
    "calibration_windows",
    "input_statistics",
    "layer_hessians",
    "model_size_bytes",
    "perplexity",
    "quantizable_linears",
    "quantize_model",
    "smoothing_mappings",
]


# ------------------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class MethodSpec:
    """A method of the command line: a smoothing transform (``"none"``, ``"smoothquant+"``, ``"awq"``) and a
    weight solver (``"rtn"``, ``"gptq"``, ``"foem"``; FOEM's ``beta`` and GPTAQ's ``alpha``)."""

    smoothing: str
    solver: str
    beta: float = 0.0
    alpha: float = 0.0


METHODS: dict[str, MethodSpec] = {
    "rtn": MethodSpec("none", "rtn"),
    "gptq": MethodSpec("none", "gptq"),
    "foem": MethodSpec("none", "foem", beta=0.2),
    "gptaq": MethodSpec("none", "foem", alpha=0.25),
    "foem+gptaq": MethodSpec("none", "foem", beta=0.2, alpha=0.25),
    "awq": MethodSpec("awq", "rtn"),
    "smoothquant+": MethodSpec("smoothquant+", "rtn"),
    "smoothquant+gptq": MethodSpec("smoothquant+", "gptq"),
    "smoothquant+foem": MethodSpec("smoothquant+", "foem", beta=0.2),
}
"""Methods by name: FOEM (beta 0.2) and GPTAQ (alpha 0.25) are the references' defaults."""


@dataclass
class QuantSettings:
    """Settings shared by every method (defaults: the references')."""

    bits: int = 4
    group_size: int = 128
    sym: bool = False
    act_order: bool = False
    static_groups: bool = False
    damp: float = 0.01
    block_size: int = 128
    smooth_grid: int = 21
    awq_grid: int = 20
    duo_scaling: bool = True
    batch: int = 32
    awq_max_tokens: int = 4096

    def validate(self) -> None:
        check_bits(self.bits)
        if self.group_size != -1 and (isinstance(self.group_size, bool) or self.group_size < 1):
            raise ValueError(f"group_size must be >= 1 or -1 (whole row), got {self.group_size!r}")
        for name in ("block_size", "smooth_grid", "awq_grid", "batch", "awq_max_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.smooth_grid < 2:
            raise ValueError(f"smooth_grid needs at least 2 points on [0, 1], got {self.smooth_grid}")
        if not math.isfinite(self.damp) or self.damp < 0:
            raise ValueError(f"damp must be a finite number >= 0, got {self.damp!r}")


# ------------------------------------------------------------------------------------------ layers
def quantizable_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """``(name, module)`` of every ``nn.Linear`` in module order whose weight is not an embedding's."""
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and id(m.weight) not in embedded]
    if not found:
        raise ValueError(f"the model ({type(model).__name__}) has no nn.Linear layer to quantize (a head that shares "
                         "the embedding's weight is not counted)")
    return found


@dataclass
class SmoothingMapping:
    """Linear layers ``consumers`` that read one input, produced by ``producer`` (a norm, or rows ``rows`` of a
    linear layer); ``name`` names the input."""

    name: str
    producer: nn.Module
    consumers: list[tuple[str, nn.Linear]]
    rows: slice | None = None


def smoothing_mappings(model: nn.Module) -> list[SmoothingMapping]:
    """The exact smoothing folds of our GPT (see :mod:`scale.quantize.smoothquant`): per block, ``ln_1`` →
    ``attn.c_attn``, value rows of ``attn.c_attn`` → ``attn.c_proj``, ``ln_2`` → ``mlp.c_fc``."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise ValueError(f"smoothing needs a scale.model.GPT (blocks with ln_1/attn/ln_2/mlp); got "
                         f"{type(model).__name__} without .blocks")
    out = []
    for b, blk in enumerate(blocks):
        try:
            attn, mlp = blk.attn, blk.mlp
            c = attn.c_proj.in_features
            out += [SmoothingMapping(f"blocks.{b}.ln_1", blk.ln_1, [(f"blocks.{b}.attn.c_attn", attn.c_attn)]),
                    SmoothingMapping(f"blocks.{b}.attn.v", attn.c_attn, [(f"blocks.{b}.attn.c_proj", attn.c_proj)],
                                     rows=slice(2 * c, 3 * c)),
                    SmoothingMapping(f"blocks.{b}.ln_2", blk.ln_2, [(f"blocks.{b}.mlp.c_fc", mlp.c_fc)])]
        except AttributeError as exc:
            raise ValueError(f"block {b} is not a scale.model.Block (ln_1, attn.c_attn, attn.c_proj, ln_2, "
                             f"mlp.c_fc): {exc}") from exc
    return out


def apply_smoothing(mapping: SmoothingMapping, s: Tensor) -> None:
    r"""In place and exact in real arithmetic: the producer's output is divided by :math:`s`, the consumers'
    weights multiplied by it along their input."""
    if mapping.rows is None:
        fold_into_norm(mapping.producer, s)
    else:
        fold_into_linear_rows(mapping.producer, mapping.rows, s)
    for _, lin in mapping.consumers:
        scale_input_columns(lin, s)


# ------------------------------------------------------------------------------------------ data
def calibration_windows(tokens: np.ndarray, block_size: int, n_windows: int, seed: int = 0) -> Tensor:
    """``n_windows`` random windows of ``block_size + 1`` tokens from ``tokens`` (the training split), as a
    LongTensor ``[n_windows, block_size + 1]`` (inputs ``[:, :-1]``, targets ``[:, 1:]``)."""
    if isinstance(n_windows, bool) or not isinstance(n_windows, int) or n_windows < 1:
        raise ValueError(f"the number of calibration windows must be a positive integer, got {n_windows!r}")
    n = len(tokens)
    if n < block_size + 1:
        raise ValueError(f"the calibration split holds {n} tokens, fewer than one window of {block_size + 1}")
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - block_size, size=n_windows)
    return torch.from_numpy(np.stack([np.asarray(tokens[s:s + block_size + 1], dtype=np.int64) for s in starts]))


def _batches(windows: Tensor, batch: int):
    for i in range(0, windows.shape[0], batch):
        yield windows[i:i + batch]


class _Stop(Exception):
    """Raised by a capturing hook to skip the rest of a forward pass."""


def _run_until(model: nn.Module, module: nn.Module, x: Tensor, on_input: Callable[[Tensor], None]) -> None:
    def hook(_mod, args):
        on_input(args[0].detach())
        raise _Stop

    handle = module.register_forward_pre_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()


def layer_hessians(model: nn.Module, linear: nn.Linear, windows: Tensor, batch: int = 32, *,
                   fp_model: nn.Module | None = None, fp_linear: nn.Linear | None = None) -> tuple[Tensor, Tensor | None]:
    r""":math:`H = 2\sum_t \tilde x_t \tilde x_t^\top / n` of ``linear`` in ``model`` on the calibration windows
    and, with ``fp_model``/``fp_linear``, GPTAQ's :math:`\Delta XX^\top = 2\sum_t (x_t - \tilde x_t)\tilde x_t^\top / n`
    (:math:`x` from the full-precision copy, :math:`\tilde x` from ``model``). float32 results, float64 sums."""
    d = linear.in_features
    S = torch.zeros(d, d, dtype=torch.float64)
    D = torch.zeros(d, d, dtype=torch.float64) if fp_model is not None else None
    n = 0
    with torch.no_grad():
        for xb in _batches(windows[:, :-1], batch):
            got: dict[str, Tensor] = {}
            _run_until(model, linear, xb, lambda t: got.__setitem__("q", t.reshape(-1, d).double()))
            xq = got["q"]
            S += xq.T @ xq
            if D is not None:
                _run_until(fp_model, fp_linear, xb, lambda t: got.__setitem__("f", t.reshape(-1, d).double()))
                D += (got["f"] - xq).T @ xq
            n += xq.shape[0]
    H = (2.0 * S / n).float()
    return H, None if D is None else (2.0 * D / n).float()


def input_statistics(model: nn.Module, linears: Sequence[nn.Linear], windows: Tensor, batch: int = 32,
                     keep_tokens: int = 0) -> list[dict[str, Tensor]]:
    """Per input channel of each of ``linears``: ``absmax`` and ``absmean`` of its input over the windows, and
    (``keep_tokens > 0``) the first ``keep_tokens`` input rows as ``sample`` ``[n, in]``."""
    stats = [{"absmax": torch.zeros(lin.in_features), "abssum": torch.zeros(lin.in_features, dtype=torch.float64),
              "n": 0, "rows": []} for lin in linears]

    def make(k: int):
        def hook(_mod, args):
            x = args[0].detach().reshape(-1, linears[k].in_features)
            st = stats[k]
            st["absmax"] = torch.maximum(st["absmax"], x.abs().amax(0).float())
            st["abssum"] += x.abs().double().sum(0)
            st["n"] += x.shape[0]
            have = sum(r.shape[0] for r in st["rows"])
            if have < keep_tokens:
                st["rows"].append(x[:keep_tokens - have].float().clone())
        return hook

    handles = [lin.register_forward_pre_hook(make(k)) for k, lin in enumerate(linears)]
    try:
        with torch.no_grad():
            for xb in _batches(windows[:, :-1], batch):
                model(xb)
    finally:
        for h in handles:
            h.remove()
    out = []
    for st in stats:
        item = {"absmax": st["absmax"], "absmean": (st["abssum"] / max(st["n"], 1)).float()}
        if keep_tokens:
            item["sample"] = torch.cat(st["rows"], 0)
        out.append(item)
    return out


def calibration_loss(model: nn.Module, windows: Tensor, batch: int = 32) -> float:
    """Mean next-token cross-entropy of ``model`` on the calibration windows."""
    total, count = 0.0, 0
    with torch.no_grad():
        for wb in _batches(windows, batch):
            logits, _ = model(wb[:, :-1])
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), wb[:, 1:].reshape(-1),
                                           reduction="sum"))
            count += wb[:, 1:].numel()
    return total / count


def perplexity(model: nn.Module, tokens: np.ndarray, block_size: int, batch: int = 64,
               max_windows: int | None = None) -> float:
    """Perplexity per token, :math:`\\exp(\\text{mean CE})`, over the non-overlapping windows of ``tokens``
    (the first ``max_windows`` of them if given)."""
    n_win = (len(tokens) - 1) // block_size
    if max_windows is not None:
        n_win = min(n_win, max_windows)
    if n_win < 1:
        raise ValueError(f"the evaluation split holds {len(tokens)} tokens, fewer than one window of "
                         f"{block_size + 1}")
    arr = np.asarray(tokens[:n_win * block_size + 1], dtype=np.int64)
    x = torch.from_numpy(arr[:-1].reshape(n_win, block_size))
    y = torch.from_numpy(arr[1:].reshape(n_win, block_size))
    total = 0.0
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, n_win, batch):
                logits, _ = model(x[i:i + batch])
                total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[i:i + batch].reshape(-1),
                                               reduction="sum"))
    finally:
        model.train(was)
    return math.exp(total / (n_win * block_size))


def model_size_bytes(model: nn.Module, quantized: dict[str, QuantizedWeight] | None = None,
                     float_bytes: int = 2) -> float:
    """Storage of the model's parameters: ``float_bytes`` per float parameter (a tied weight once), the quantized
    linear layers at their packed size (:meth:`QuantizedWeight.size_bytes`) instead."""
    quantized = quantized or {}
    qids = {id(m.weight) for n, m in model.named_modules() if n in quantized}
    seen, total = set(), 0.0
    for p in model.parameters():
        if id(p) in seen or id(p) in qids:
            continue
        seen.add(id(p))
        total += p.numel() * float_bytes
    return total + sum(q.size_bytes(float_bytes) for q in quantized.values())


# ------------------------------------------------------------------------------------------ the driver
@dataclass
class QuantizedModel:
    """A model whose quantizable linear layers carry their dequantized weights, with the quantized weights by
    layer name and a record of what was done (``info``)."""

    model: nn.Module
    weights: dict[str, QuantizedWeight]
    info: dict[str, Any] = field(default_factory=dict)


def _smoothquant_alpha(model: nn.Module, windows: Tensor, settings: QuantSettings,
                       log: Callable[[str], None]) -> tuple[float, list[float]]:
    """SmoothQuant+'s one global alpha: the grid point whose smoothed, RTN-quantized model has the least
    calibration loss."""
    mappings = smoothing_mappings(model)
    consumers = [lin for m in mappings for _, lin in m.consumers]
    stats = input_statistics(model, consumers, windows, settings.batch)
    absmax = {id(lin): st["absmax"] for lin, st in zip(consumers, stats)}
    grid = [k / (settings.smooth_grid - 1) for k in range(settings.smooth_grid)]
    losses = []
    for a in grid:
        trial = copy.deepcopy(model)
        _smooth_all(trial, a, {k: absmax[id(lin)] for k, lin in enumerate(consumers)})
        for name, lin in quantizable_linears(trial):
            with torch.no_grad():
                lin.weight.copy_(rtn(lin.weight, settings.bits, settings.group_size, settings.sym,
                                     allow_ragged=False).dequantize(lin.weight.dtype))
        losses.append(calibration_loss(trial, windows, settings.batch))
        log(f"smoothquant+ alpha={a:.2f}: calibration loss {losses[-1]:.4f}")
    best = int(np.argmin(losses))
    return grid[best], losses


def _smooth_all(model: nn.Module, alpha: float, absmax_by_consumer: dict[int, Tensor]) -> None:
    k = 0
    for m in smoothing_mappings(model):
        act = absmax_by_consumer[k]
        s = smoothing_scales(act, [lin.weight for _, lin in m.consumers], alpha)
        apply_smoothing(m, s)
        k += len(m.consumers)


def _awq_all(model: nn.Module, windows: Tensor, settings: QuantSettings) -> dict[str, float]:
    alphas = {}
    for m in smoothing_mappings(model):
        lins = [lin for _, lin in m.consumers]
        st = input_statistics(model, lins[:1], windows, settings.batch, keep_tokens=settings.awq_max_tokens)[0]
        found = awq_search([lin.weight for lin in lins], st["sample"], settings.bits, settings.group_size,
                           settings.sym, settings.awq_grid, settings.duo_scaling)
        apply_smoothing(m, found.scales.to(lins[0].weight.dtype))
        alphas[m.name] = found.alpha
    return alphas


def quantize_model(model: nn.Module, windows: Tensor, method: str | MethodSpec,
                   settings: QuantSettings | None = None, log: Callable[[str], None] = lambda _m: None,
                   progress: Callable[[str], None] | None = None) -> QuantizedModel:
    """Quantize a copy of ``model`` (float32, eval mode) with ``method`` (a name of :data:`METHODS`) on the
    calibration ``windows`` (:func:`calibration_windows`); the input model is not modified.

    Smoothing first (exact folds), then each quantizable linear layer in module order: RTN on its weight, or
    GPTQ/FOEM with the Hessian collected from the model whose earlier layers are already quantized. Errors name
    the layer.
    """
    settings = settings or QuantSettings()
    settings.validate()
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(f"unknown quantization method {method!r}; valid: {', '.join(METHODS)}")
        spec = METHODS[method]
    else:
        spec = method
    t0 = time.perf_counter()
    work = copy.deepcopy(model).float().eval()
    linears = quantizable_linears(work)
    for name, lin in linears:
        check_group_size(settings.group_size, lin.in_features, where=name)
    info: dict[str, Any] = {"method": method if isinstance(method, str) else repr(spec), "sequential": True,
                            "layers": [n for n, _ in linears]}
    if spec.smoothing == "smoothquant+":
        alpha, losses = _smoothquant_alpha(work, windows, settings, log)
        consumers = [lin for m in smoothing_mappings(work) for _, lin in m.consumers]
        stats = input_statistics(work, consumers, windows, settings.batch)
        _smooth_all(work, alpha, {k: st["absmax"] for k, st in enumerate(stats)})
        info.update(smooth_alpha=alpha, smooth_losses=losses)
    elif spec.smoothing == "awq":
        info["awq_alpha"] = _awq_all(work, windows, settings)
    elif spec.smoothing != "none":
        raise ValueError(f"unknown smoothing {spec.smoothing!r}; valid: none, smoothquant+, awq")

    fp = copy.deepcopy(work) if spec.solver == "foem" and spec.alpha > 0 else None
    fp_linears = dict(quantizable_linears(fp)) if fp is not None else {}
    weights: dict[str, QuantizedWeight] = {}
    for name, lin in linears:
        if progress is not None:
            progress(name)
        if spec.solver == "rtn":
            qw = rtn(lin.weight.detach(), settings.bits, settings.group_size, settings.sym)
        elif spec.solver in ("gptq", "foem"):
            H, dXXT = layer_hessians(work, lin, windows, settings.batch, fp_model=fp,
                                     fp_linear=fp_linears.get(name))
            kw = dict(act_order=settings.act_order, static_groups=settings.static_groups, damp=settings.damp,
                      block_size=settings.block_size)
            if spec.solver == "gptq":
                sweep = GPTQSweep(settings.bits, settings.group_size, settings.sym, **kw)
            else:
                sweep = FOEMSweep(settings.bits, settings.group_size, settings.sym, beta=spec.beta,
                                  alpha=spec.alpha, dXXT=dXXT, **kw)
            qw = sweep.run(lin.weight.detach(), H, name).weight
        else:
            raise ValueError(f"unknown solver {spec.solver!r}; valid: rtn, gptq, foem")
        with torch.no_grad():
            lin.weight.copy_(qw.dequantize(lin.weight.dtype))
        weights[name] = qw
    info["seconds"] = time.perf_counter() - t0
    return QuantizedModel(work, weights, info)
