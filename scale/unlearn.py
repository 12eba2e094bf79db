r"""Gauss–Newton unlearning (K-FADE) against gradient ascent: forget-loss / retain-KL frontiers on two workloads.

``python -m scale.unlearn`` reproduces at CPU scale the comparison behind McKinney, Thudi, Bae, Rezaei, Papernot,
McIlraith & Grosse, "Gauss-Newton Unlearning for the LLM Era" (arXiv:2602.10568): uphill Gauss–Newton steps in
the retain-set K-FAC / EK-FAC metric (:func:`optlib.unlearning.kfade`) raise the forget loss while changing the
outputs on the retain distribution less than first-order unlearning (:func:`optlib.unlearning.gradient_ascent`).

Experiments (``--experiments``):

``digits``
    scikit-learn's digits (8x8 images, 10 classes), standardized, one stratified 80/20 split. A 2-layer MLP
    ``64 -> hidden -> 10`` (tanh) trained full-batch with Adam on the training split; the forget set is every
    training image of one class (``--digits-class``), the retain set the rest. Ground truth: the same
    initialization retrained on the retain set only (:func:`optlib.unlearning.retrain`).
``gpt``
    A small character-level :class:`scale.model.GPT` on tiny-shakespeare (:func:`scale.data.load_corpus`). The
    text is split into speeches, blocks ``"NAME:\n...lines..."`` separated by blank lines; the forget set is
    every character spoken by one speaker (``--speaker``, default the speaker with the most lines), scored as
    next-character targets inside context windows (other positions of those windows are left out). The retain
    set is the text with that speaker's speeches removed. The model is trained on the whole training split
    (retain + forget) with AdamW for ``--gpt-steps`` steps of random windows; with ``--gpt-retrain`` the same
    initialization is also trained on the retain text alone, as a reference.

Methods, all acting on the same parameters (every ``nn.Linear`` weight and bias; the GPT's embeddings and norms
stay fixed, since K-FAC covers linear layers only):

* ``kfade-kfac`` / ``kfade-ekfac``: :func:`optlib.unlearning.kfade` with :class:`optlib.curvature.KFAC` /
  :class:`optlib.curvature.EKFAC` of the retain-set cross-entropy (``--fisher-type``; ``type2`` is the exact
  GGN's K-FAC), damping ``--damping``, per-step KL budgets ``--budgets`` (each a separate run);
* ``gradient_ascent``: :func:`optlib.unlearning.gradient_ascent` with step sizes ``--ga-lrs``.

Every run takes ``--steps`` steps from the trained model; each step is a point
(forget-loss increase on the forget set, retain KL :math:`\mathbb{E}_x\mathrm{KL}(p_{\theta_0}\Vert p_\theta)` on
held-out retain data). A method's *frontier* is the lower envelope of its points (the least retain KL that
reaches at least a given forget-loss increase), read between its points by linear interpolation in log-log
coordinates, so that a densely sampled sweep is not favoured. K-FADE *dominates* gradient ascent when its
frontier lies below on the whole range of forget-loss increases both methods reach; this is checked on a log
grid over that range and over the part of it both reach with retain KL at most ``--kl-cap`` (where the model is
still usable), with the share of the grid where K-FADE is lower and the geometric-mean KL ratio. Also reported:
the largest forget-loss increase each method reaches within the KL cap; the point of each method whose forget
loss is closest to the retrained model's; and each method's closest approach to the retrained model's outputs,
:math:`\mathbb{E}_x\mathrm{KL}(p_\mathrm{retrained}\Vert p_\theta)` on held-out data.

Outputs in ``--out``: ``unlearn.json`` (configuration, provenance, every point, frontiers, dominance, matched
points) and one PNG per experiment (``unlearn_<experiment>.png``: the frontier and the distance to the
retrained model against the forget-loss increase). ``--quick`` runs both experiments in about a minute on a CPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

EXPERIMENTS = ("digits", "gpt")
METHODS = ("kfade-kfac", "kfade-ekfac", "gradient_ascent")
KFADE_METHODS = {"kfade-kfac": "KFAC", "kfade-ekfac": "EKFAC"}
FISHER_TYPES = ("type2", "mc", "empirical")
JSON_NAME = "unlearn.json"


def log_grid(lo: float, hi: float, n: int) -> tuple[float, ...]:
    """``n`` log-spaced values from ``lo`` to ``hi``, rounded to 3 significant digits."""
    return tuple(float(f"{v:.3g}") for v in np.geomspace(lo, hi, n))


def plot_name(experiment: str) -> str:
    return f"unlearn_{experiment}.png"


# ---------------------------------------------------------------------------------------- configuration
@dataclass
class Config:
    """Everything one run of the benchmark depends on (recorded in the JSON)."""

    experiments: Sequence[str] = EXPERIMENTS
    methods: Sequence[str] = METHODS
    steps: int = 5
    budgets: Sequence[float] = log_grid(1e-4, 1e-1, 25)
    ga_lrs: Sequence[float] = log_grid(0.03, 30.0, 25)
    damping: float = 1e-3
    fisher_type: str = "type2"
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    grid: int = 40
    kl_cap: float = 0.1
    # digits
    digits_class: int = 3
    digits_hidden: int = 128
    digits_epochs: int = 400
    digits_lr: float = 1e-2
    digits_weight_decay: float = 1e-4
    # gpt
    speaker: str = "auto"
    gpt_layers: int = 2
    gpt_heads: int = 2
    gpt_embd: int = 64
    gpt_block: int = 64
    gpt_steps: int = 600
    gpt_batch: int = 32
    gpt_lr: float = 3e-3
    gpt_forget_windows: int = 64
    gpt_retain_windows: int = 64
    gpt_curvature_windows: int = 32
    gpt_budgets: Sequence[float] | None = log_grid(1e-5, 1e-2, 13)
    gpt_ga_lrs: Sequence[float] | None = log_grid(0.003, 3.0, 13)
    gpt_retrain: bool = True

    def validate(self) -> None:
        unknown = [e for e in self.experiments if e not in EXPERIMENTS]
        if unknown or not self.experiments:
            raise ValueError(f"unknown or no experiment(s) {unknown}; known: {', '.join(EXPERIMENTS)}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown or no method(s) {unknown}; known: {', '.join(METHODS)}")
        if self.fisher_type not in FISHER_TYPES:
            raise ValueError(f"unknown --fisher-type {self.fisher_type!r}; known: {', '.join(FISHER_TYPES)}")
        if self.steps < 1:
            raise ValueError("--steps must be at least 1")
        for name in ("budgets", "ga_lrs", "gpt_budgets", "gpt_ga_lrs"):
            vals = getattr(self, name)
            if vals is not None and (len(vals) == 0 or any(not (math.isfinite(v) and v > 0) for v in vals)):
                raise ValueError(f"--{name.replace('_', '-')} needs positive finite values")
        if not self.kl_cap > 0:
            raise ValueError("--kl-cap must be positive")
        if not (math.isfinite(self.damping) and self.damping >= 0):
            raise ValueError("--damping must be >= 0")
        if not 0 <= self.digits_class <= 9:
            raise ValueError("--digits-class must be a digit 0..9")
        for name in ("digits_hidden", "digits_epochs", "gpt_layers", "gpt_heads", "gpt_embd", "gpt_block",
                     "gpt_steps", "gpt_batch", "gpt_forget_windows", "gpt_retain_windows", "gpt_curvature_windows",
                     "grid"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.gpt_embd % self.gpt_heads:
            raise ValueError("--gpt-embd must be divisible by --gpt-heads")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError("--device must be auto, cpu, cuda or cuda:N")


# About a minute on a 2-core CPU for both experiments.
QUICK = dict(steps=5, budgets=log_grid(1e-4, 1e-1, 7), ga_lrs=log_grid(0.03, 30.0, 7),
             gpt_budgets=log_grid(1e-5, 1e-2, 7), gpt_ga_lrs=log_grid(0.003, 3.0, 7), digits_hidden=64,
             digits_epochs=300, gpt_layers=1, gpt_embd=48, gpt_heads=2, gpt_block=32, gpt_steps=250, gpt_batch=32,
             gpt_forget_windows=32, gpt_retain_windows=32, gpt_curvature_windows=16, grid=30)
# The report's smoke mode: a few seconds.
SMOKE = dict(QUICK, steps=2, budgets=(3e-3, 3e-1), ga_lrs=(1.0, 100.0), gpt_budgets=(3e-4, 3e-2),
             gpt_ga_lrs=(0.1, 10.0), digits_epochs=100, gpt_steps=60,
             gpt_embd=32, gpt_forget_windows=8, gpt_retain_windows=8, gpt_curvature_windows=4, gpt_retrain=False)


# ---------------------------------------------------------------------------------------- frontiers
def envelope(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The lower envelope of ``(forget increase, retain KL)`` points: for each increase ``u`` reached, the least
    KL among points reaching at least ``u``; returned as the Pareto points sorted by increase."""
    pts = sorted((float(u), float(k)) for u, k in points if u > 0 and math.isfinite(u) and math.isfinite(k))
    out: list[tuple[float, float]] = []
    best = math.inf
    for u, k in reversed(pts):
        if k < best:
            best = k
            out.append((u, k))
    return out[::-1]


def envelope_at(env: Sequence[tuple[float, float]], u: float) -> float:
    """The envelope's KL at increase ``u``: linear interpolation of log KL in log increase between the two Pareto
    points around ``u`` (so that the comparison does not depend on how densely a sweep sampled the frontier);
    inf beyond the envelope's range, the first point's KL before it."""
    if not env or u > env[-1][0]:
        return math.inf
    prev = None
    for uu, k in env:
        if uu >= u:
            if prev is None or uu == u or prev[1] <= 0 or k <= 0:
                return k
            t = (math.log(u) - math.log(prev[0])) / (math.log(uu) - math.log(prev[0]))
            return math.exp((1 - t) * math.log(prev[1]) + t * math.log(k))
        prev = (uu, k)
    return math.inf


def reach(env: Sequence[tuple[float, float]], kl_cap: float) -> float:
    """The largest forget increase the envelope reaches with retain KL at most ``kl_cap`` (0 if none)."""
    return max((u for u, k in env if k <= kl_cap), default=0.0)


def dominance(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]], grid: int = 40,
              kl_cap: float = math.inf) -> dict[str, Any]:
    """Compare envelope ``a`` (K-FADE) with ``b`` (the baseline) on a log grid over the forget increases both
    reach (with ``kl_cap``: both reach with retain KL at most ``kl_cap``): the fraction of grid points where
    ``a``'s KL is lower, the geometric mean of KL(a)/KL(b), and whether ``a`` is lower (or equal) everywhere."""
    if not a or not b:
        return {"range": None, "fraction_lower": None, "geomean_ratio": None, "dominates": None, "grid": 0}
    lo = max(a[0][0], b[0][0])
    hi = min(a[-1][0], b[-1][0]) if math.isinf(kl_cap) else min(reach(a, kl_cap), reach(b, kl_cap))
    if not lo < hi:  # no forget-loss increase that both reach (within the KL cap)
        return {"range": None, "fraction_lower": None, "geomean_ratio": None, "dominates": None, "grid": 0}
    us = np.geomspace(lo, hi, grid)
    ka = np.array([envelope_at(a, u) for u in us])
    kb = np.array([envelope_at(b, u) for u in us])
    ok = (ka > 0) & (kb > 0)
    ratio = ka[ok] / kb[ok]
    return {"range": [float(lo), float(hi)], "fraction_lower": float(np.mean(ka <= kb)),
            "geomean_ratio": float(np.exp(np.mean(np.log(ratio)))) if ratio.size else None,
            "dominates": bool(np.all(ka <= kb)), "grid": int(grid)}


# ---------------------------------------------------------------------------------------- shared machinery
def linear_param_names(model: nn.Module) -> list[str]:
    """Names of every ``nn.Linear`` weight and bias (the parameters K-FAC covers), in module order."""
    names = []
    for mname, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            prefix = f"{mname}." if mname else ""
            names.append(f"{prefix}weight")
            if mod.bias is not None:
                names.append(f"{prefix}bias")
    return names


def build_curvature(kind: str, model: nn.Module, retain_batches, cfg: Config):
    """K-FAC or EK-FAC of the mean retain cross-entropy over the model's linear layers."""
    from optlib import curvature

    params = {n: p for n, p in model.named_parameters() if n in set(linear_param_names(model))}
    cls = getattr(curvature, kind)
    return cls(model, "cross_entropy", params, retain_batches, fisher_type=cfg.fisher_type, seed=cfg.seed)


def sweep(original: nn.Module, forget, retain_eval, curvatures: dict[str, Any], cfg: Config, budgets, lrs,
          monitor: Callable[[nn.Module], dict[str, float]], bar=None) -> list[dict[str, Any]]:
    """Run every (method, value) from a copy of ``original``; one record per step (step 0 excluded)."""
    from optlib.unlearning import gradient_ascent, kfade

    params = linear_param_names(original)
    points = []
    for method in cfg.methods:
        values = lrs if method == "gradient_ascent" else budgets
        for v in values:
            model = copy.deepcopy(original)
            t0 = time.perf_counter()
            try:
                if method == "gradient_ascent":
                    delta = gradient_ascent(model, forget, lr=v, steps=cfg.steps, params=params,
                                            retain_data=retain_eval, monitor=monitor)
                else:
                    delta = kfade(model, forget, curvatures[method], steps=cfg.steps, kl_budget=v,
                                  damping=cfg.damping, retain_data=retain_eval, monitor=monitor)
                error = None
            except (ValueError, RuntimeError) as exc:  # a diverged run is a result, not a crash
                delta, error = None, str(exc)
            seconds = time.perf_counter() - t0
            if delta is None:
                points.append({"method": method, "value": v, "step": None, "error": error, "seconds": seconds})
            else:
                f0 = delta.trace[0]["forget_loss"]
                for rec in delta.trace.records[1:]:
                    row = {"method": method, "value": v, "seconds": seconds, "step": rec["k"],
                           "forget_increase": rec["forget_loss"] - f0}
                    row.update({k: rec[k] for k in rec if k not in ("k", "time")})
                    points.append(row)
            if bar is not None:
                bar.update(1)
    return points


def summarize(points: list[dict[str, Any]], cfg: Config, reference_forget_loss: float | None,
              f0: float) -> dict[str, Any]:
    """Envelopes per method, dominance of each K-FADE variant over gradient ascent, and the points matched to
    the retrained model's forget loss."""
    finite = [p for p in points if p.get("step") is not None and math.isfinite(p["forget_loss"])
              and math.isfinite(p["retain_kl"])]
    env = {m: envelope([(p["forget_increase"], p["retain_kl"]) for p in finite if p["method"] == m])
           for m in cfg.methods}
    dom, dom_useful = {}, {}
    if "gradient_ascent" in env:
        for m in cfg.methods:
            if m != "gradient_ascent":
                dom[m] = dominance(env[m], env["gradient_ascent"], cfg.grid)
                dom_useful[m] = dominance(env[m], env["gradient_ascent"], cfg.grid, kl_cap=cfg.kl_cap)
    matched = {}
    if reference_forget_loss is not None:
        target = reference_forget_loss - f0
        for m in cfg.methods:
            cand = [p for p in finite if p["method"] == m and p["forget_increase"] > 0]
            if cand:
                best = min(cand, key=lambda p: abs(math.log(p["forget_increase"] / max(target, 1e-12))))
                matched[m] = best
    reach_cap = {m: reach(e, cfg.kl_cap) for m, e in env.items()}
    closest = {}
    for m in cfg.methods:
        cand = [p for p in finite if p["method"] == m and math.isfinite(p.get("distance_to_retrained", math.nan))]
        if cand:
            closest[m] = min(cand, key=lambda p: p["distance_to_retrained"])
    return {"envelopes": {m: [list(x) for x in e] for m, e in env.items()}, "dominance": dom, "reach": reach_cap,
            "dominance_below_cap": dom_useful, "kl_cap": cfg.kl_cap, "matched": matched, "closest": closest,
            "errors": [p for p in points if p.get("step") is None]}


def _device(cfg: Config) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


# ---------------------------------------------------------------------------------------- digits
def mlp(hidden: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, hidden), nn.Tanh(), nn.Linear(hidden, 10))


def digits_data(cfg: Config, device: torch.device):
    """Standardized digits, stratified 80/20 split; forget = training images of ``digits_class``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=0.2, random_state=cfg.seed, stratify=y)
    mu, sd = x[idx_tr].mean(0), x[idx_tr].std(0) + 1e-3
    x = torch.tensor((x - mu) / sd, dtype=torch.float32, device=device)
    y = torch.tensor(y, dtype=torch.long, device=device)
    tr, te = torch.as_tensor(idx_tr, device=device), torch.as_tensor(idx_te, device=device)
    c = cfg.digits_class
    f_tr, f_te = y[tr] == c, y[te] == c
    return {
        "train": (x[tr], y[tr]),
        "forget": (x[tr][f_tr], y[tr][f_tr]),
        "retain": (x[tr][~f_tr], y[tr][~f_tr]),
        "test": (x[te], y[te]),
        "forget_test": (x[te][f_te], y[te][f_te]),
        "retain_test": (x[te][~f_te], y[te][~f_te]),
    }


def run_digits(cfg: Config, bar=None) -> dict[str, Any]:
    from optlib.unlearning import accuracy, forget_loss, kl_to_reference, reference_log_probs, retrain

    device = _device(cfg)
    t0 = time.perf_counter()
    data = digits_data(cfg, device)
    init = mlp(cfg.digits_hidden, cfg.seed).to(device)
    train_kw = dict(epochs=cfg.digits_epochs, lr=cfg.digits_lr, weight_decay=cfg.digits_weight_decay, seed=cfg.seed)
    original = retrain(init, data["train"], **train_kw)
    retrained = retrain(init, data["retain"], **train_kw)
    t_train = time.perf_counter() - t0
    ref_test = reference_log_probs(retrained, data["test"])
    ref_retain_test = reference_log_probs(retrained, data["retain_test"])

    def monitor(m: nn.Module) -> dict[str, float]:
        return {"forget_test_loss": forget_loss(m, data["forget_test"]),
                "forget_test_accuracy": accuracy(m, data["forget_test"]),
                "retain_test_accuracy": accuracy(m, data["retain_test"]),
                "distance_to_retrained": kl_to_reference(ref_test, m, data["test"]),
                "distance_to_retrained_retain": kl_to_reference(ref_retain_test, m, data["retain_test"])}

    t1 = time.perf_counter()
    curv = {m: build_curvature(KFADE_METHODS[m], original, [data["retain"]], cfg) for m in cfg.methods
            if m in KFADE_METHODS}
    t_curv = time.perf_counter() - t1
    t2 = time.perf_counter()
    points = sweep(original, data["forget"], data["retain_test"], curv, cfg, cfg.budgets, cfg.ga_lrs, monitor, bar)
    t_sweep = time.perf_counter() - t2
    f0 = forget_loss(original, data["forget"])
    f_ret = forget_loss(retrained, data["forget"])
    summary = summarize(points, cfg, f_ret, f0)
    n_params = sum(p.numel() for p in original.parameters())
    return {
        "setup": {"model": f"MLP 64-{cfg.digits_hidden}-10 (tanh)", "params": n_params,
                  "forget_class": cfg.digits_class, "n_forget": len(data["forget"][1]),
                  "n_retain": len(data["retain"][1]), "n_retain_test": len(data["retain_test"][1])},
        "original": {"forget_loss": f0, **monitor(original)},
        "retrained": {"forget_loss": f_ret, **{k: v for k, v in monitor(retrained).items()}},
        "points": points, **summary,
        "seconds": {"train_and_retrain": t_train, "curvature": t_curv, "sweep": t_sweep},
    }


# ---------------------------------------------------------------------------------------- gpt
class TokenLogits(nn.Module):
    """A GPT seen as a classifier of positions: ``idx (B, T) -> logits (B*T, V)`` (targets flattened to
    ``(B*T,)``), the layout the curvature operators' cross-entropy expects."""

    def __init__(self, gpt: nn.Module) -> None:
        super().__init__()
        self.gpt = gpt

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits, _ = self.gpt(idx)
        return logits.reshape(-1, logits.shape[-1])


def speeches(text: str) -> list[tuple[str, int, int]]:
    """``(speaker, start, end)`` character spans of the speech blocks ``"NAME:\\n...\\n"`` (blocks separated by
    a blank line; the name line is the block's first line and ends with a colon)."""
    out = []
    pos = 0
    for block in text.split("\n\n"):
        head, sep, _ = block.partition("\n")
        if sep and head.endswith(":") and head[:-1].strip() and head == head.upper():
            out.append((head[:-1], pos, pos + len(block)))
        pos += len(block) + 2
    return out


def pick_speaker(spans: list[tuple[str, int, int]], speaker: str) -> str:
    lines: dict[str, int] = {}
    for name, _, _ in spans:
        lines[name] = lines.get(name, 0) + 1
    if speaker == "auto":
        return max(lines, key=lambda n: (lines[n], n))
    if speaker not in lines:
        top = sorted(lines, key=lambda n: -lines[n])[:10]
        raise ValueError(f"speaker {speaker!r} has no speech in the text; the most frequent are {', '.join(top)}")
    return speaker


def check_speaker(speaker: str) -> str:
    """The speaker's name if tiny-shakespeare's training split has speeches by them (``ValueError`` otherwise)."""
    from scale.data import load_corpus

    corpus = load_corpus("shakespeare")
    return pick_speaker(speeches(corpus.decode(corpus.train)), speaker)


def split_text(text: str, speaker: str) -> tuple[np.ndarray, str]:
    """A mask of the characters the speaker speaks (whole speech blocks) and the text without them."""
    mask = np.zeros(len(text), dtype=bool)
    kept, last = [], 0
    for name, s, e in speeches(text):
        if name == speaker:
            mask[s:e] = True
            kept.append(text[last:s])
            last = min(e + 2, len(text))
    kept.append(text[last:])
    return mask, "".join(kept)


def forget_windows(ids: np.ndarray, mask: np.ndarray, block: int, n: int, rng) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` windows whose targets are the speaker's characters (others set to -1), centred on random spoken
    positions."""
    pos = np.flatnonzero(mask[1:]) + 1  # target positions spoken by the speaker
    centres = rng.choice(pos, size=n, replace=len(pos) < n)
    starts = np.clip(centres - block // 2, 0, len(ids) - block - 1)
    idx = starts[:, None] + np.arange(block + 1)[None, :]
    rows = torch.from_numpy(ids[idx].astype(np.int64))
    tmask = torch.from_numpy(mask[idx[:, 1:]])
    y = rows[:, 1:].clone()
    y[~tmask] = -1
    return rows[:, :-1].contiguous(), y.reshape(-1)


def plain_windows(ids: np.ndarray, block: int, n: int, rng) -> tuple[torch.Tensor, torch.Tensor]:
    starts = rng.integers(0, len(ids) - block - 1, size=n)
    idx = starts[:, None] + np.arange(block + 1)[None, :]
    rows = torch.from_numpy(ids[idx].astype(np.int64))
    return rows[:, :-1].contiguous(), rows[:, 1:].reshape(-1).contiguous()


def train_gpt(init: nn.Module, ids: np.ndarray, cfg: Config, device: torch.device, bar=None) -> nn.Module:
    """AdamW (lr ``gpt_lr``, betas (0.9, 0.95), no weight decay) on random windows of ``ids``, cosine decay to
    a tenth over ``gpt_steps`` steps; a copy of ``init`` is trained."""
    from scale.data import BatchSampler

    model = copy.deepcopy(init)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.gpt_lr, betas=(0.9, 0.95), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, cfg.gpt_steps) / cfg.gpt_steps)))
    sampler = BatchSampler(ids, cfg.gpt_block, cfg.gpt_batch, cfg.seed)
    for _ in range(cfg.gpt_steps):
        x, y = sampler.next()
        _, loss = model.gpt(x.to(device), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if bar is not None:
            bar.update(1)
    model.eval()
    return model


def run_gpt(cfg: Config, bar=None) -> dict[str, Any]:
    from optlib.unlearning import forget_loss, kl_to_reference, reference_log_probs
    from scale.data import load_corpus
    from scale.model import GPT, GPTConfig

    device = _device(cfg)
    t0 = time.perf_counter()
    corpus = load_corpus("shakespeare")
    text_tr, text_va = corpus.decode(corpus.train), corpus.decode(corpus.val)
    speaker = pick_speaker(speeches(text_tr), cfg.speaker)
    mask_tr, retain_tr = split_text(text_tr, speaker)
    _, retain_va = split_text(text_va, speaker)
    ids_tr = corpus.encode(text_tr)
    ids_retain = corpus.encode(retain_tr)
    ids_retain_va = corpus.encode(retain_va)
    rng = np.random.default_rng(cfg.seed)
    forget = forget_windows(ids_tr, mask_tr, cfg.gpt_block, cfg.gpt_forget_windows, rng)
    curv_data = plain_windows(ids_retain, cfg.gpt_block, cfg.gpt_curvature_windows, rng)
    retain_eval = plain_windows(ids_retain_va, cfg.gpt_block, cfg.gpt_retain_windows, rng)
    forget, curv_data, retain_eval = ([t.to(device) for t in d] for d in (forget, curv_data, retain_eval))
    gcfg = GPTConfig(vocab_size=corpus.vocab_size, block_size=cfg.gpt_block, n_layer=cfg.gpt_layers,
                     n_head=cfg.gpt_heads, n_embd=cfg.gpt_embd, dropout=0.0, tie_weights=False)
    torch.manual_seed(cfg.seed)
    init = TokenLogits(GPT(gcfg)).to(device)
    original = train_gpt(init, ids_tr, cfg, device, bar)
    retrained = train_gpt(init, ids_retain, cfg, device, bar) if cfg.gpt_retrain else None
    t_train = time.perf_counter() - t0
    refs = None
    if retrained is not None:
        refs = (reference_log_probs(retrained, [forget]), reference_log_probs(retrained, [retain_eval]))

    def monitor(m: nn.Module) -> dict[str, float]:
        out = {"retain_loss": forget_loss(m, [retain_eval])}
        if refs is not None:
            out["distance_to_retrained_forget"] = kl_to_reference(refs[0], m, [forget])
            out["distance_to_retrained"] = kl_to_reference(refs[1], m, [retain_eval])
        return out

    t1 = time.perf_counter()
    curv = {m: build_curvature(KFADE_METHODS[m], original, [curv_data], cfg) for m in cfg.methods
            if m in KFADE_METHODS}
    t_curv = time.perf_counter() - t1
    t2 = time.perf_counter()
    points = sweep(original, [forget], [retain_eval], curv, cfg, cfg.gpt_budgets or cfg.budgets,
                   cfg.gpt_ga_lrs or cfg.ga_lrs, monitor, bar)
    t_sweep = time.perf_counter() - t2
    f0 = forget_loss(original, [forget])
    f_ret = forget_loss(retrained, [forget]) if retrained is not None else None
    summary = summarize(points, cfg, f_ret, f0)
    n_forget_chars = int(mask_tr.sum())
    return {
        "setup": {"model": f"GPT {cfg.gpt_layers} layer(s), width {cfg.gpt_embd}, {cfg.gpt_heads} heads, context "
                           f"{cfg.gpt_block}, untied head", "params": sum(p.numel() for p in original.parameters()),
                  "unlearned_params": sum(p.numel() for n, p in original.named_parameters()
                                          if n in set(linear_param_names(original))),
                  "speaker": speaker, "forget_chars": n_forget_chars,
                  "forget_fraction": n_forget_chars / len(text_tr), "forget_targets": int((forget[1] >= 0).sum()),
                  "retain_eval_targets": int(retain_eval[1].numel()),
                  "curvature_targets": int(curv_data[1].numel()), "train_steps": cfg.gpt_steps,
                  "retrained": retrained is not None},
        "original": {"forget_loss": f0, **monitor(original)},
        "retrained": None if retrained is None else {"forget_loss": f_ret, **monitor(retrained)},
        "points": points, **summary,
        "seconds": {"train_and_retrain": t_train, "curvature": t_curv, "sweep": t_sweep},
    }


# ---------------------------------------------------------------------------------------- driver
RUNNERS = {"digits": run_digits, "gpt": run_gpt}


def provenance(cfg: Config) -> dict[str, Any]:
    return {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "machine": platform.machine(), "threads": torch.get_num_threads(),
            "device": str(_device(cfg)), "run_date": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _units(cfg: Config) -> int:
    n_runs = sum(len(cfg.ga_lrs if m == "gradient_ascent" else cfg.budgets) for m in cfg.methods)
    total = 0
    if "digits" in cfg.experiments:
        total += n_runs
    if "gpt" in cfg.experiments:
        n_gpt = sum(len((cfg.gpt_ga_lrs or cfg.ga_lrs) if m == "gradient_ascent" else (cfg.gpt_budgets or cfg.budgets))
                    for m in cfg.methods)
        total += n_gpt + cfg.gpt_steps * (2 if cfg.gpt_retrain else 1)
    return total


def run_benchmark(cfg: Config, *, progress: bool = True, out: Path | None = None, plot: bool = True) -> dict[str, Any]:
    """Run the configured experiments; write ``unlearn.json`` (and the PNGs) to ``out`` if given."""
    cfg.validate()
    old = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=_units(cfg), desc="unlearn", unit="run")
    try:
        results = {}
        for e in cfg.experiments:
            if bar is not None:
                bar.set_description(f"unlearn {e}")
            results[e] = RUNNERS[e](cfg, bar)
    finally:
        if bar is not None:
            bar.close()
        torch.set_num_threads(old)
    result = {"config": asdict(cfg), "provenance": provenance(cfg), "experiments": results}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / JSON_NAME).write_text(json.dumps(result, indent=1, default=float))
        if plot:
            for e, r in results.items():
                plot_experiment(e, r, cfg, out / plot_name(e))
    return result


COLORS = {"kfade-kfac": "tab:blue", "kfade-ekfac": "tab:green", "gradient_ascent": "tab:red"}


def plot_experiment(name: str, r: dict[str, Any], cfg: Config, path: Path | str) -> None:
    """Two panels against the forget-loss increase: retain KL (points and envelopes) and the distance to the
    retrained model (when there is one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dist_key = "distance_to_retrained"
    has_dist = any(dist_key in p for p in r["points"])
    fig, axes = plt.subplots(1, 2 if has_dist else 1, figsize=(11 if has_dist else 6, 4.2), squeeze=False)
    ax = axes[0, 0]
    ref = r.get("retrained")
    for m in cfg.methods:
        pts = [p for p in r["points"] if p["method"] == m and p.get("step") is not None and p["forget_increase"] > 0]
        if not pts:
            continue
        ax.scatter([p["forget_increase"] for p in pts], [max(p["retain_kl"], 1e-12) for p in pts], s=10, alpha=0.4,
                   color=COLORS.get(m))
        env = r["envelopes"].get(m) or []
        if env:
            ax.plot([u for u, _ in env], [max(k, 1e-12) for _, k in env], color=COLORS.get(m), label=m)
    if ref is not None:
        ax.axvline(ref["forget_loss"] - r["original"]["forget_loss"], color="k", linestyle=":", linewidth=0.9,
                   label="retrained model")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("forget-loss increase (nats)")
    ax.set_ylabel("retain KL(p0 || p)  (held-out retain data)")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"{name}: frontier (lower is better)", fontsize=9)
    if has_dist:
        ax2 = axes[0, 1]
        for m in cfg.methods:
            pts = [p for p in r["points"] if p["method"] == m and p.get("step") is not None
                   and p["forget_increase"] > 0 and dist_key in p]
            pts.sort(key=lambda p: p["forget_increase"])
            ax2.scatter([p["forget_increase"] for p in pts], [max(p[dist_key], 1e-12) for p in pts], s=10,
                        alpha=0.5, color=COLORS.get(m), label=m)
        if ref is not None:
            ax2.axvline(ref["forget_loss"] - r["original"]["forget_loss"], color="k", linestyle=":", linewidth=0.9)
            ax2.axhline(max(r["original"].get(dist_key, 1e-12), 1e-12), color="gray", linestyle="--",
                        linewidth=0.8, label="original model")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("forget-loss increase (nats)")
        ax2.set_ylabel("KL(p_retrained || p)  (held-out data)")
        ax2.grid(True, alpha=0.3, which="both")
        ax2.legend(fontsize=8)
        ax2.set_title(f"{name}: distance to the retrained model", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_summary(result: dict[str, Any]) -> str:
    """Plain-text summary (what the CLI prints)."""
    lines = []
    for e, r in result["experiments"].items():
        lines.append(f"[{e}] {r['setup']['model']}, forget loss {r['original']['forget_loss']:.3f}"
                     + (f" (retrained: {r['retrained']['forget_loss']:.3f})" if r.get("retrained") else ""))
        lines.append(f"  largest forget-loss increase with retain KL <= {r['kl_cap']:g}: "
                     + ", ".join(f"{m} {u:.3g}" for m, u in r["reach"].items()))
        for key, what in (("dominance", "the common range"),
                          ("dominance_below_cap", f"the range with retain KL <= {r['kl_cap']:g}")):
            for m, d in r[key].items():
                if d["fraction_lower"] is None:
                    lines.append(f"  {m} vs gradient_ascent on {what}: no common range of forget-loss increase")
                    continue
                lines.append(f"  {m} vs gradient_ascent on {what} [{d['range'][0]:.3g}, {d['range'][1]:.3g}] nats: "
                             f"lower retain KL on {100 * d['fraction_lower']:.0f}% of it, geometric-mean KL ratio "
                             f"{d['geomean_ratio']:.3g}; dominates: {d['dominates']}")
        for m, p in r["matched"].items():
            dist = p.get("distance_to_retrained")
            lines.append(f"  matched to retrained forget loss, {m}: increase {p['forget_increase']:.3g}, retain KL "
                         f"{p['retain_kl']:.3g}" + (f", distance to retrained {dist:.3g}" if dist is not None else ""))
        for m, p in r["closest"].items():
            lines.append(f"  closest to the retrained model, {m}: distance {p['distance_to_retrained']:.3g} at "
                         f"forget-loss increase {p['forget_increase']:.3g}, retain KL {p['retain_kl']:.3g}")
        for p in r["errors"]:
            lines.append(f"  {p['method']} at {p['value']:g} failed: {p['error']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- report section
def report_section(ctx) -> Any:
    """The report's "Gauss–Newton unlearning" section (to be registered in :mod:`scale.report`)."""
    from .report import SectionResult, fmt_num, md_table

    smoke = ctx.config.mode == "quick"
    cfg = Config(**(SMOKE if smoke else QUICK), threads=ctx.config.threads or 1)
    result = run_benchmark(cfg, progress=ctx.config.progress, out=None, plot=False)
    figs = []
    text = (
        "**K-FADE against gradient ascent** (McKinney et al. 2026, arXiv:2602.10568; our reconstruction of the "
        "step rule, see `optlib.unlearning`). Uphill Gauss–Newton steps θ ← θ + η(G_r + λI)⁻¹∇L_f with the "
        "retain-set K-FAC / EK-FAC curvature and the KL trust-region step "
        f"η = sqrt(2ε/gᵀδ), against θ ← θ + η∇L_f; {cfg.steps} steps per run, budgets "
        f"{', '.join(f'{b:g}' for b in cfg.budgets)}, gradient-ascent step sizes "
        f"{', '.join(f'{b:g}' for b in cfg.ga_lrs)}, damping {cfg.damping:g}, {cfg.fisher_type} Fisher. Retain KL "
        "E KL(p₀‖p) on held-out retain data; a method's frontier is the least KL reaching a given forget-loss "
        "increase. Quick configuration; `python -m scale.unlearn` runs the full one.\n\n"
    )
    rows = []
    for e, r in result["experiments"].items():
        for key, what in (("dominance", "all"), ("dominance_below_cap", f"KL ≤ {r['kl_cap']:g}")):
            for m, d in r[key].items():
                rng = "none in common" if not d["range"] else \
                    f"{fmt_num(d['range'][0], 3)} – {fmt_num(d['range'][1], 3)}"
                rows.append([e, m, what, rng,
                             "–" if d["fraction_lower"] is None else f"{100 * d['fraction_lower']:.0f}%",
                             "–" if d["geomean_ratio"] is None else fmt_num(d["geomean_ratio"], 3),
                             "–" if d["dominates"] is None else ("yes" if d["dominates"] else "no")])
    text += md_table(["experiment", "K-FADE variant", "range", "forget-loss increases compared (nats)",
                      "share where K-FADE's KL is lower", "geo-mean KL ratio K-FADE / GA", "dominates"], rows)
    text += ("\n\nLargest forget-loss increase (nats) each method reaches while the retain KL stays at most "
             f"{cfg.kl_cap:g}:\n\n" + md_table(["experiment", *cfg.methods],
                                                 [[e, *(fmt_num(r["reach"].get(m, 0.0), 3) for m in cfg.methods)]
                                                  for e, r in result["experiments"].items()]))
    mrows = []
    for e, r in result["experiments"].items():
        for m, p in r["matched"].items():
            mrows.append([e, m, fmt_num(p["forget_increase"], 3), fmt_num(p["retain_kl"], 3),
                          fmt_num(p.get("distance_to_retrained", float("nan")), 3)])
    if mrows:
        text += ("\n\nAt the forget loss of the retrained model (the closest point of each method):\n\n"
                 + md_table(["experiment", "method", "forget-loss increase", "retain KL", "KL to retrained"], mrows))
    crows = [[e, m, fmt_num(p["distance_to_retrained"], 3), fmt_num(p["forget_increase"], 3),
              fmt_num(p["retain_kl"], 3)] for e, r in result["experiments"].items() for m, p in r["closest"].items()]
    if crows:
        text += ("\n\nClosest approach to the retrained model's outputs, E KL(p_retrained ‖ p) on held-out data, over "
                 "all points of each method:\n\n"
                 + md_table(["experiment", "method", "KL to retrained", "forget-loss increase", "retain KL"], crows))
    for e, r in result["experiments"].items():
        path, rel = ctx.figure(plot_name(e))
        plot_experiment(e, r, cfg, path)
        figs.append(rel)
        text += f"\n\n![{e} unlearning frontier]({rel})"
    return SectionResult(text, figs)


# ---------------------------------------------------------------------------------------- CLI
def _floats(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None


def parser() -> argparse.ArgumentParser:
    d = Config()
    p = argparse.ArgumentParser(
        prog="python -m scale.unlearn",
        description=(
            "Gauss-Newton unlearning (K-FADE, McKinney et al. 2026, arXiv:2602.10568) against gradient ascent: "
            "the frontier of forget-loss increase against retain-set KL, and the distance to a model retrained "
            "without the forget set, on a digits MLP (forget one class) and a character-level GPT on "
            "tiny-shakespeare (forget one speaker). Writes OUT/unlearn.json and OUT/unlearn_<experiment>.png."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--experiments", nargs="+", default=list(d.experiments), choices=EXPERIMENTS, metavar="NAME",
                   help=f"experiments to run ({', '.join(EXPERIMENTS)})")
    p.add_argument("--methods", nargs="+", default=list(d.methods), choices=METHODS, metavar="NAME",
                   help=f"methods to compare ({', '.join(METHODS)})")
    p.add_argument("--quick", action="store_true",
                   help="a configuration that runs both experiments in about a minute on a CPU (overrides the "
                        "sizes and sweeps below)")
    p.add_argument("--steps", type=int, default=d.steps, help="unlearning steps per run (every step is a point)")
    p.add_argument("--budgets", type=_floats, nargs="+", default=list(d.budgets),
                   help="K-FADE per-step KL budgets epsilon (one run each)")
    p.add_argument("--ga-lrs", type=_floats, nargs="+", default=list(d.ga_lrs),
                   help="gradient-ascent step sizes (one run each)")
    p.add_argument("--damping", type=float, default=d.damping, help="Tikhonov damping lambda of (G_r + lambda I)")
    p.add_argument("--fisher-type", choices=FISHER_TYPES, default=d.fisher_type,
                   help="what the K-FAC output factor averages: type2 (exact GGN), mc (sampled labels), empirical")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of data splits, initializations and windows")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (0 keeps torch's choice)")
    p.add_argument("--grid", type=int, default=d.grid, help="grid points of the frontier comparison")
    p.add_argument("--kl-cap", type=float, default=d.kl_cap,
                   help="the frontiers are also compared on the forget-loss increases both methods reach with "
                        "retain KL at most this (nats): the range where the model is still usable")
    g = p.add_argument_group("digits experiment")
    g.add_argument("--digits-class", type=int, default=d.digits_class, help="the class to forget")
    g.add_argument("--digits-hidden", type=int, default=d.digits_hidden,
                   help="hidden width of the MLP (128: 9.6k parameters)")
    g.add_argument("--digits-epochs", type=int, default=d.digits_epochs, help="full-batch Adam steps of training")
    g.add_argument("--digits-lr", type=float, default=d.digits_lr, help="Adam learning rate")
    g.add_argument("--digits-weight-decay", type=float, default=d.digits_weight_decay,
                   help="mu of the mu/2 ||theta||^2 term in the training objective")
    g = p.add_argument_group("gpt experiment")
    g.add_argument("--speaker", default=d.speaker,
                   help="speaker to forget (as in the text, e.g. ROMEO); auto: the one with the most speeches")
    g.add_argument("--gpt-layers", type=int, default=d.gpt_layers, help="transformer blocks")
    g.add_argument("--gpt-heads", type=int, default=d.gpt_heads, help="attention heads")
    g.add_argument("--gpt-embd", type=int, default=d.gpt_embd, help="width")
    g.add_argument("--gpt-block", type=int, default=d.gpt_block, help="context length")
    g.add_argument("--gpt-steps", type=int, default=d.gpt_steps, help="AdamW training steps")
    g.add_argument("--gpt-batch", type=int, default=d.gpt_batch, help="windows per training step")
    g.add_argument("--gpt-lr", type=float, default=d.gpt_lr, help="AdamW peak learning rate (cosine to a tenth)")
    g.add_argument("--gpt-forget-windows", type=int, default=d.gpt_forget_windows,
                   help="windows of the forget set (targets: the speaker's characters)")
    g.add_argument("--gpt-retain-windows", type=int, default=d.gpt_retain_windows,
                   help="held-out retain windows (validation text without the speaker) for the retain KL")
    g.add_argument("--gpt-curvature-windows", type=int, default=d.gpt_curvature_windows,
                   help="retain windows (training text without the speaker) for K-FAC / EK-FAC")
    g.add_argument("--gpt-budgets", type=_floats, nargs="+", default=list(d.gpt_budgets),
                   help="K-FADE per-step KL budgets for the GPT")
    g.add_argument("--gpt-ga-lrs", type=_floats, nargs="+", default=list(d.gpt_ga_lrs),
                   help="gradient-ascent step sizes for the GPT")
    g.add_argument("--no-gpt-retrain", dest="gpt_retrain", action="store_false",
                   help="skip retraining the GPT without the speaker (no distance to a retrained model)")
    p.add_argument("--out", type=Path, default=Path("reports/unlearn"), help="output folder (created if missing)")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="skip the PNGs")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    fields = {f for f in Config.__dataclass_fields__}
    kw = {k: v for k, v in vars(args).items() if k in fields}
    for k in ("experiments", "methods", "budgets", "ga_lrs"):
        kw[k] = tuple(kw[k])
    for k in ("gpt_budgets", "gpt_ga_lrs"):
        if kw.get(k) is not None:
            kw[k] = tuple(kw[k])
    cfg = Config(**kw)
    if args.quick:
        cfg = replace(cfg, **QUICK)
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = config_from_args(args)
    try:
        cfg.validate()
        if "gpt" in cfg.experiments and cfg.speaker != "auto":
            check_speaker(cfg.speaker)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = run_benchmark(cfg, progress=args.progress, out=args.out, plot=args.plot)
    print(format_summary(result))
    print(f"results written to {Path(args.out) / JSON_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
