r"""Gauss–Newton unlearning (K-FADE) against gradient ascent: forget-loss / retain-KL frontiers on two workloads.

``python -m scale.bench.unlearning`` reproduces at CPU scale the comparison behind McKinney, Thudi, Bae, Rezaei,
Papernot, McIlraith & Grosse, "Gauss-Newton Unlearning for the LLM Era" (arXiv:2602.10568): uphill Gauss–Newton steps in
the retain-set K-FAC / EK-FAC metric (:func:`optlib.unlearning.kfade`) raise the forget loss while changing the
outputs on the retain distribution less than first-order unlearning (:func:`optlib.unlearning.gradient_ascent`).

**What is trained, and why.** Unlearning is measured against models, so the benchmark trains its own. For each
experiment it needs (1) the *original* model, trained on the whole training split (retain + forget set), which
every method starts from; (2) the *retrained* model, the same initialization trained the same way on the retain set
only: the ground truth of exact unlearning, whose forget loss fixes the headline range and whose outputs are the
target of the distance below; and (3) the *unlearned* models, one per (method, grid value, step), obtained from the
original by the methods compared. (1) and (2) are made by :func:`train_digits_models` (full-batch Adam through
:func:`optlib.unlearning.retrain`) and :func:`train_gpt_models` (AdamW on random windows, :func:`train_gpt`);
(3) by :func:`sweep`.

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
    (retain + forget) with AdamW for ``--gpt-steps`` steps of random windows; unless ``--no-gpt-retrain`` the
    same initialization is also trained on the retain text alone, as a reference.

Methods, all acting on the same parameters (every ``nn.Linear`` weight and bias; the GPT's embeddings and norms
stay fixed, since K-FAC covers linear layers only), each run for the same number of steps ``--steps`` from
the trained model:

* ``kfade-kfac`` / ``kfade-ekfac``: :func:`optlib.unlearning.kfade` with :class:`optlib.curvature.KFAC` /
  :class:`optlib.curvature.EKFAC` of the retain-set cross-entropy (``--fisher-type``; ``type2`` is the exact
  GGN's K-FAC), per-step KL budgets ``--budgets`` (each a separate run);
* ``gradient-ascent``: :func:`optlib.unlearning.gradient_ascent` with constant step sizes ``--ga-lrs``.

**Damping rule** (a published default taken as is, not tuned on these experiments; the same for both): the
Tikhonov :math:`\lambda` of :math:`(G_r + \lambda I)^{-1}` is ``--damping`` (0.1) times the mean eigenvalue
:math:`\operatorname{tr}(\hat G_r)/n` of the variant's own curvature approximation (K-FAC:
:math:`\sum_l \operatorname{tr}S_l\operatorname{tr}A_l + \operatorname{tr}S_l` over weight and bias blocks;
EK-FAC: the sum of its corrected eigenvalues). This is the heuristic damping of kronfluence, the EK-FAC
influence-function library of the paper's group (``HEURISTIC_DAMPING_SCALE = 0.1`` times the mean eigenvalue),
applied to the whole approximation rather than per layer. It uses the retain-set curvature only: nothing measured
on the forget set, the held-out data or the retrained model enters it. A damping given in absolute units
(``--damping-rule absolute``) makes the comparison depend on the curvature's scale: the training-set GGN of a
model that interpolates its training data (the digits MLP) is orders of magnitude smaller than the same
model's GGN on held-out data, and an absolute :math:`\lambda = 10^{-3}` there is five to ten times the mean
eigenvalue, which turns K-FADE's direction into (nearly) the gradient's, while for the GPT (mean eigenvalue
about :math:`10^{-2}`) the same :math:`\lambda` is a tenth of it.

**Points and frontiers.** Every step of every run is a point (forget-loss increase
:math:`L_f(\theta) - L_f(\theta_0)` on the forget set, retain KL
:math:`\mathbb{E}_x\mathrm{KL}(p_{\theta_0}\Vert p_\theta)` on held-out retain data, and the forget-set accuracy).
A method's *frontier* is the lower envelope of its points (the least retain KL that reaches at least a given
forget-loss increase), read between its points by linear interpolation in log-log coordinates, so that a densely
sampled sweep is not favoured. Both methods get the same number of steps per run and the same number of grid
values, log-spaced; the grids are wide enough that the frontier on the compared range is not made by a grid's
smallest or largest value, and the summary says so when it is (``grid check``), since then a wider grid could
lower that method's frontier.

**Comparison ranges.** K-FADE *dominates* gradient ascent on a range when its frontier is lower (or equal) at
every point of a log grid (``--grid`` points) over it; also reported: the share of the grid where it is lower, the
geometric-mean and the largest KL ratio K-FADE / gradient ascent. Ranges, each cut to the increases both methods
reach:

* ``to_retrained`` (the headline when a retrained model exists): forget-loss increases from 1% to 100% of the
  retrained model's. Beyond it the model forgets more than retraining would: the mean cross-entropy of a class
  the model no longer predicts grows without bound (linearly in the logit margin), so increases of tens or
  hundreds of nats say nothing about unlearning; far below it the model has not started to forget;
* ``kl_cap``: the increases both reach with retain KL at most ``--kl-cap`` (where the model is still usable);
* ``common``: every increase both reach (including the over-forgetting regime), for completeness.

A second view, insensitive to how the cross-entropy saturates: the forget-set **accuracy**. For each level
:math:`a_q = a_0 - q(a_0 - a_r)`, :math:`q \in \{0.25, 0.5, 0.75, 1\}` of the way from the original model's
forget accuracy :math:`a_0` to the retrained model's :math:`a_r`, the least retain KL at which each method's
forget accuracy is at most :math:`a_q`. Also reported: the largest forget-loss increase each method reaches
within the KL cap; each method's least retain KL among its points whose forget loss is at least the retrained
model's (the frontier at full unlearning, with that point's distance to the retrained model); and each method's
closest approach to the retrained model's outputs,
:math:`\mathbb{E}_x\mathrm{KL}(p_\mathrm{retrained}\Vert p_\theta)` on held-out data.

Outputs in ``--out``: ``unlearn.json`` (configuration, provenance, every point, frontiers, the damping each
variant used, comparisons, grid checks, matched points) and one PNG per experiment (``unlearn_<experiment>.png``:
the frontier, forget accuracy against retain KL, and the distance to the retrained model). ``--preset quick``
(or ``--quick``; what the report runs) does both experiments in well under a minute on a CPU, ``--preset smoke``
(the report's quick mode) in seconds.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from optlib import curvature
from optlib.curvature import EKFAC, KFAC
from optlib.unlearning import (
    KFADE,
    GradientAscent,
    accuracy,
    forget_loss,
    kl_to_reference,
    reference_log_probs,
    retrain,
)
from scale.cli import Command, config_to_dict, option
from scale.data import BatchSampler, load_corpus
from scale.model import GPT, GPTConfig

from .common import (
    ReportContext,
    SectionResult,
    fmt_num,
    md_table,
    provenance,
    pyplot,
    register_section,
    save_json,
    thread_limit,
)

EXPERIMENTS = ("digits", "gpt")
METHODS = ("kfade-kfac", "kfade-ekfac", "gradient-ascent")
BASELINE = "gradient-ascent"
KFADE_METHODS = {"kfade-kfac": "KFAC", "kfade-ekfac": "EKFAC"}
FISHER_TYPES = ("type2", "mc", "empirical")
DAMPING_RULES = ("relative", "absolute")
RANGES = ("to_retrained", "kl_cap", "common")
TARGET_DECADES = 2  # the to_retrained range: [10^-2, 1] x the retrained model's forget-loss increase
ACCURACY_FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # forget-accuracy levels, as fractions of the retrained model's drop
JSON_NAME = "unlearn.json"


def log_grid(lo: float, hi: float, n: int) -> tuple[float, ...]:
    """``n`` log-spaced values from ``lo`` to ``hi``, rounded to 3 significant digits."""
    return tuple(float(f"{v:.3g}") for v in np.geomspace(lo, hi, n))


def plot_name(experiment: str) -> str:
    return f"unlearn_{experiment}.png"


# ---------------------------------------------------------------------------------------- configuration
# Config fields that say where and how a run reports, not what it measures (left out of the JSON's config).
_RUN_ONLY = ("out", "plot", "progress")


@dataclass
class Config:
    """Everything one run of the benchmark depends on (recorded in the JSON, less ``out``, ``plot``, ``progress``)."""

    experiments: tuple[str, ...] = option(EXPERIMENTS, "experiments to run", choices=EXPERIMENTS)
    methods: tuple[str, ...] = option(METHODS, "methods to compare", choices=METHODS)
    steps: int = option(20, "unlearning steps per run, the same for every method (every step is a point)")
    budgets: tuple[float, ...] = option(log_grid(1e-8, 1e-1, 36), "K-FADE per-step KL budgets epsilon (one run each)")
    ga_lrs: tuple[float, ...] = option(
        log_grid(1e-2, 1e3, 36), "gradient-ascent step sizes (one run each; the default has as many values as "
        "--budgets, so that neither method's frontier gets more candidate points)")
    damping: float = option(
        0.1, "Tikhonov damping of (G_r + lambda I): with --damping-rule relative, lambda is this times the mean "
        "eigenvalue of each K-FADE variant's curvature approximation (0.1: kronfluence's heuristic); with absolute, "
        "lambda itself")
    damping_rule: str = option("relative", "how --damping sets lambda (relative to the curvature's mean eigenvalue, "
                               "or absolute)", choices=DAMPING_RULES)
    fisher_type: str = option("type2", "what the K-FAC output factor averages: type2 (exact GGN), mc (sampled "
                              "labels), empirical", choices=FISHER_TYPES)
    seed: int = option(0, "seed of data splits, initializations and windows")
    device: str = option("cpu", "auto, cpu, cuda or cuda:N")
    threads: int = option(1, "torch threads (0 keeps torch's choice)")
    grid: int = option(40, "grid points of the frontier comparison")
    kl_cap: float = option(0.1, "the frontiers are also compared on the forget-loss increases both methods reach "
                           "with retain KL at most this (nats): the range where the model is still usable")
    # digits
    digits_class: int = option(3, "digits experiment: the class to forget")
    digits_hidden: int = option(128, "digits experiment: hidden width of the MLP (128: 9.6k parameters)")
    digits_epochs: int = option(400, "digits experiment: full-batch Adam steps of training (original and retrained "
                                "model)")
    digits_lr: float = option(1e-2, "digits experiment: Adam learning rate")
    digits_weight_decay: float = option(1e-4, "digits experiment: mu of the mu/2 ||theta||^2 term in the training "
                                        "objective")
    # gpt
    speaker: str = option("auto", "gpt experiment: speaker to forget (as in the text, e.g. ROMEO); auto: the one "
                          "with the most speeches")
    gpt_layers: int = option(2, "gpt experiment: transformer blocks")
    gpt_heads: int = option(2, "gpt experiment: attention heads")
    gpt_embd: int = option(64, "gpt experiment: width")
    gpt_block: int = option(64, "gpt experiment: context length")
    gpt_steps: int = option(600, "gpt experiment: AdamW training steps (original and retrained model)")
    gpt_batch: int = option(32, "gpt experiment: windows per training step")
    gpt_lr: float = option(3e-3, "gpt experiment: AdamW peak learning rate (cosine to a tenth)")
    gpt_forget_windows: int = option(64, "gpt experiment: windows of the forget set (targets: the speaker's "
                                     "characters)")
    gpt_retain_windows: int = option(64, "gpt experiment: held-out retain windows (validation text without the "
                                     "speaker) for the retain KL")
    gpt_curvature_windows: int = option(32, "gpt experiment: retain windows (training text without the speaker) for "
                                        "K-FAC / EK-FAC")
    gpt_budgets: tuple[float, ...] | None = option(log_grid(1e-10, 1e-2, 17), "gpt experiment: K-FADE per-step KL "
                                                   "budgets (none: --budgets)")
    gpt_ga_lrs: tuple[float, ...] | None = option(log_grid(1e-5, 3.0, 17), "gpt experiment: gradient-ascent step "
                                                  "sizes (none: --ga-lrs)")
    gpt_retrain: bool = option(True, "gpt experiment: also train the initialization on the text without the speaker "
                               "(the retrained model: the headline range and the distance to it need it)")
    # outputs
    out: Path = option(Path("reports/unlearn"), f"output folder for {JSON_NAME} and the PNGs (created if missing)")
    plot: bool = option(True, "write one PNG per experiment")
    progress: bool = option(True, "show a progress bar")

    def validate(self) -> None:
        unknown = [e for e in self.experiments if e not in EXPERIMENTS]
        if unknown or not self.experiments:
            raise ValueError(f"--experiments: unknown or no experiment(s) {unknown}; known: {', '.join(EXPERIMENTS)}.")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"--methods: unknown or no method(s) {unknown}; known: {', '.join(METHODS)}.")
        if self.fisher_type not in FISHER_TYPES:
            raise ValueError(f"unknown --fisher-type {self.fisher_type!r}; known: {', '.join(FISHER_TYPES)}.")
        if self.damping_rule not in DAMPING_RULES:
            raise ValueError(f"unknown --damping-rule {self.damping_rule!r}; known: {', '.join(DAMPING_RULES)}.")
        if self.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {self.steps}.")
        for name in ("budgets", "ga_lrs", "gpt_budgets", "gpt_ga_lrs"):
            vals = getattr(self, name)
            if vals is not None and (len(vals) == 0 or any(not (math.isfinite(v) and v > 0) for v in vals)):
                raise ValueError(f"--{name.replace('_', '-')} needs positive finite values, got {list(vals)}.")
        if not self.kl_cap > 0:
            raise ValueError(f"--kl-cap must be positive, got {self.kl_cap}.")
        if not (math.isfinite(self.damping) and self.damping >= 0):
            raise ValueError(f"--damping must be a finite number >= 0, got {self.damping}.")
        if not 0 <= self.digits_class <= 9:
            raise ValueError(f"--digits-class must be a digit 0..9, got {self.digits_class}.")
        for name in ("digits_hidden", "digits_epochs", "gpt_layers", "gpt_heads", "gpt_embd", "gpt_block",
                     "gpt_steps", "gpt_batch", "gpt_forget_windows", "gpt_retain_windows", "gpt_curvature_windows",
                     "grid"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if self.gpt_embd % self.gpt_heads:
            raise ValueError(f"--gpt-embd ({self.gpt_embd}) must be divisible by --gpt-heads ({self.gpt_heads}).")
        if self.threads < 0:
            raise ValueError(f"--threads must be at least 0 (0 keeps torch's choice), got {self.threads}.")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}.")


# "quick": what the report's default mode runs, both experiments in well under a minute on a 2-core CPU;
# "smoke": the report's quick mode, a few seconds (no retrained GPT).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(steps=10, budgets=log_grid(1e-8, 1e-1, 15), ga_lrs=log_grid(1e-2, 1e3, 15),
                  gpt_budgets=log_grid(1e-10, 1e-2, 9), gpt_ga_lrs=log_grid(1e-5, 3.0, 9), digits_hidden=64,
                  digits_epochs=300, gpt_layers=1, gpt_embd=48, gpt_heads=2, gpt_block=32, gpt_steps=250,
                  gpt_batch=32, gpt_forget_windows=32, gpt_retain_windows=32, gpt_curvature_windows=16, grid=30),
}
PRESETS["smoke"] = dict(PRESETS["quick"], steps=2, budgets=(3e-3, 3e-1), ga_lrs=(1.0, 100.0), gpt_budgets=(3e-4, 3e-2),
                        gpt_ga_lrs=(0.1, 10.0), digits_epochs=100, gpt_steps=60, gpt_embd=32, gpt_forget_windows=8,
                        gpt_retain_windows=8, gpt_curvature_windows=4, gpt_retrain=False)


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


def comparison_range(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]],
                     bounds: tuple[float, float] | None = None,
                     kl_cap: float = math.inf) -> tuple[float, float] | None:
    """The forget increases both envelopes reach (with ``kl_cap``: reach with retain KL at most ``kl_cap``),
    cut to ``bounds``; ``None`` when that is empty."""
    if not a or not b:
        return None
    lo = max(a[0][0], b[0][0])
    hi = min(a[-1][0], b[-1][0]) if math.isinf(kl_cap) else min(reach(a, kl_cap), reach(b, kl_cap))
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return (lo, hi) if lo < hi else None


def dominance(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]], grid: int = 40,
              kl_cap: float = math.inf, bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """Compare envelope ``a`` (K-FADE) with ``b`` (the baseline) on a log grid over :func:`comparison_range`:
    the fraction of grid points where ``a``'s KL is lower (or equal), the geometric mean and the largest value of
    KL(a)/KL(b), and whether ``a`` is lower (or equal) everywhere."""
    rng = comparison_range(a, b, bounds, kl_cap)
    if rng is None:  # no forget-loss increase that both reach (within the bounds and the KL cap)
        return {"range": None, "fraction_lower": None, "geomean_ratio": None, "max_ratio": None, "dominates": None,
                "grid": 0}
    us = np.geomspace(rng[0], rng[1], grid)
    ka = np.array([envelope_at(a, u) for u in us])
    kb = np.array([envelope_at(b, u) for u in us])
    ok = (ka > 0) & (kb > 0)
    ratio = ka[ok] / kb[ok]
    return {"range": [float(rng[0]), float(rng[1])], "fraction_lower": float(np.mean(ka <= kb)),
            "geomean_ratio": float(np.exp(np.mean(np.log(ratio)))) if ratio.size else None,
            "max_ratio": float(ratio.max()) if ratio.size else None,
            "dominates": bool(np.all(ka <= kb)), "grid": int(grid)}


def envelope_support(env: Sequence[tuple[float, float]], lo: float, hi: float, grid: int) -> set[int]:
    """Indices of the envelope points that :func:`envelope_at` reads on a log grid over ``[lo, hi]`` (the point
    at or above each grid value and the one before it)."""
    used: set[int] = set()
    for u in np.geomspace(lo, hi, grid):
        for i, (uu, _) in enumerate(env):
            if uu >= u:
                used.add(i)
                if i > 0 and uu != u:
                    used.add(i - 1)
                break
    return used


def least_kl_at_accuracy(points: Sequence[dict[str, Any]], level: float) -> float | None:
    """The least retain KL among ``points`` whose forget accuracy is at most ``level`` (``None`` if none is)."""
    kls = [p["retain_kl"] for p in points if p["forget_accuracy"] <= level + 1e-12]
    return min(kls) if kls else None


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
    params = {n: p for n, p in model.named_parameters() if n in set(linear_param_names(model))}
    cls = getattr(curvature, kind)
    return cls(model, "cross_entropy", params, retain_batches, fisher_type=cfg.fisher_type, seed=cfg.seed)


def mean_eigenvalue(op: Any) -> float:
    r""":math:`\operatorname{tr}(\hat G)/n` of a K-FAC or EK-FAC operator, from its factors: K-FAC's weight block
    :math:`S \otimes A` has trace :math:`\operatorname{tr}S\operatorname{tr}A` and a separate bias block
    :math:`S` trace :math:`\operatorname{tr}S`; EK-FAC's trace is the sum of its corrected eigenvalues."""
    total = 0.0
    if isinstance(op, EKFAC):
        for lw, lb in op.eigenvalues().values():
            total += sum(float(t.sum()) for t in (lw, lb) if t is not None)
    elif isinstance(op, KFAC):
        factors = op.factors()
        for layer in op.layers:
            A, S = factors[layer.name]
            tr_s = float(torch.trace(S))
            if A is not None:
                total += tr_s * float(torch.trace(A))
            if layer.bias is not None and not layer.homogeneous:
                total += tr_s
    else:
        raise TypeError(f"mean_eigenvalue needs a KFAC or EKFAC operator, got {type(op).__name__}")
    return total / op.shape[0]


def resolve_damping(op: Any, cfg: Config) -> dict[str, float]:
    """The Tikhonov lambda a K-FADE variant uses: ``cfg.damping`` times the mean eigenvalue of its curvature
    approximation (``relative``, the default rule) or ``cfg.damping`` itself (``absolute``)."""
    mean = mean_eigenvalue(op)
    if not (math.isfinite(mean) and mean >= 0):
        raise ValueError(f"the curvature's mean eigenvalue is {mean!r}; the factors are not finite")
    lam = cfg.damping * mean if cfg.damping_rule == "relative" else cfg.damping
    return {"lambda": float(lam), "mean_eigenvalue": float(mean), "rule": cfg.damping_rule, "factor": cfg.damping}


def sweep(original: nn.Module, forget, retain_eval, curvatures: dict[str, Any], dampings: dict[str, float],
          cfg: Config, budgets, lrs, monitor: Callable[[nn.Module], dict[str, float]],
          bar=None) -> list[dict[str, Any]]:
    """Run every (method, value) for ``cfg.steps`` steps from a copy of ``original``; one record per step (step 0
    excluded). A run that fails (a non-finite or zero gradient after the model diverged) keeps the steps it took
    and adds a record with ``step=None`` and the error."""
    params = linear_param_names(original)
    points = []
    for method in cfg.methods:
        values = lrs if method == BASELINE else budgets
        for v in values:
            model = copy.deepcopy(original)
            if method == BASELINE:
                unlearner = GradientAscent(model, lr=v, params=params)
            else:
                unlearner = KFADE(model, curvatures[method], kl_budget=v, damping=dampings[method])
            t0 = time.perf_counter()
            try:
                unlearner.run(forget, steps=cfg.steps, retain_data=retain_eval, monitor=monitor)
                error = None
            except (ValueError, RuntimeError) as exc:  # a diverged run is a result, not a crash
                error = str(exc)
            seconds = time.perf_counter() - t0
            trace = getattr(unlearner, "trace", None)
            records = trace.records if trace is not None else []
            if records:
                f0 = records[0]["forget_loss"]
                for rec in records[1:]:
                    row = {"method": method, "value": v, "seconds": seconds, "step": rec["k"],
                           "forget_increase": rec["forget_loss"] - f0}
                    row.update({k: rec[k] for k in rec if k not in ("k", "time")})
                    points.append(row)
            if error is not None:
                points.append({"method": method, "value": v, "step": None, "error": error, "seconds": seconds,
                               "steps_done": max(len(records) - 1, 0)})
            if bar is not None:
                bar.update(1)
    return points


def grid_check(points: Sequence[dict[str, Any]], env: Sequence[tuple[float, float]], values: Sequence[float],
               rng: Sequence[float] | None, grid: int) -> dict[str, Any]:
    """Which grid values (and steps) make the envelope on the compared range ``rng``, and whether the grid's
    smallest or largest value is *binding* there: dropping that value's points changes the envelope somewhere on
    the range (then a value beyond the grid's end could lower it too)."""
    if not rng or not env:
        return {"values": [], "steps": [], "smallest_binding": None, "largest_binding": None}
    source = {(p["forget_increase"], p["retain_kl"]): (p["value"], p["step"]) for p in points}
    used = [source[env[i]] for i in sorted(envelope_support(env, rng[0], rng[1], grid)) if env[i] in source]
    us = np.geomspace(rng[0], rng[1], grid)
    base = [envelope_at(env, u) for u in us]

    def binding(v: float) -> bool:
        rest = envelope([(p["forget_increase"], p["retain_kl"]) for p in points if p["value"] != v])
        return any(not math.isclose(envelope_at(rest, u), k, rel_tol=1e-9) for u, k in zip(us, base))

    return {"values": sorted({v for v, _ in used}), "steps": sorted({s for _, s in used}),
            "smallest_binding": binding(min(values)), "largest_binding": binding(max(values))}


def summarize(points: list[dict[str, Any]], cfg: Config, original: dict[str, float],
              reference: dict[str, float] | None, grids: dict[str, Sequence[float]]) -> dict[str, Any]:
    """Envelopes per method; the comparison of each K-FADE variant with gradient ascent on the ranges of
    :data:`RANGES` and at the forget-accuracy levels; grid checks; the points matched to the retrained model."""
    finite = [p for p in points if p.get("step") is not None and math.isfinite(p["forget_loss"])
              and math.isfinite(p["retain_kl"])]
    by_method = {m: [p for p in finite if p["method"] == m] for m in cfg.methods}
    env = {m: envelope([(p["forget_increase"], p["retain_kl"]) for p in pts]) for m, pts in by_method.items()}
    f0 = original["forget_loss"]
    target = None if reference is None else reference["forget_loss"] - f0
    bounds = {"to_retrained": (target * 10.0 ** -TARGET_DECADES, target) if target and target > 0 else None,
              "kl_cap": None, "common": None}
    primary = "to_retrained" if bounds["to_retrained"] is not None else "kl_cap"
    dom: dict[str, dict[str, Any]] = {r: {} for r in RANGES}
    if BASELINE in env:
        for m in cfg.methods:
            if m == BASELINE:
                continue
            for r in RANGES:
                if r == "to_retrained" and bounds[r] is None:
                    continue
                dom[r][m] = dominance(env[m], env[BASELINE], cfg.grid,
                                      kl_cap=cfg.kl_cap if r == "kl_cap" else math.inf, bounds=bounds[r])
    # grid check on the primary range as every method sees it (the range both reach is per K-FADE variant;
    # use the union of those ranges for gradient ascent)
    checks = {}
    for m in cfg.methods:
        rngs = [d["range"] for d in dom[primary].values() if d["range"]] if m == BASELINE else \
            [dom[primary][m]["range"]] if m in dom[primary] and dom[primary][m]["range"] else []
        rng = [min(r[0] for r in rngs), max(r[1] for r in rngs)] if rngs else None
        checks[m] = grid_check(by_method[m], env[m], grids[m], rng, cfg.grid)
    accuracy_view = None
    if reference is not None and "forget_accuracy" in original and "forget_accuracy" in reference:
        a0, ar = original["forget_accuracy"], reference["forget_accuracy"]
        if a0 > ar:
            levels = [a0 - q * (a0 - ar) for q in ACCURACY_FRACTIONS]
            kls = {m: [least_kl_at_accuracy(pts, a) for a in levels] for m, pts in by_method.items()}
            ratios = {}
            if BASELINE in kls:
                for m in kls:
                    if m != BASELINE:
                        ratios[m] = [None if k is None or g is None or g <= 0 else k / g
                                     for k, g in zip(kls[m], kls[BASELINE])]
            accuracy_view = {"fractions": list(ACCURACY_FRACTIONS), "levels": levels, "original": a0,
                             "retrained": ar, "least_kl": kls, "ratio": ratios}
    matched = {}  # the frontier at the retrained model's forget loss: least KL among points reaching it
    if target is not None:
        for m in cfg.methods:
            cand = [p for p in by_method[m] if p["forget_increase"] >= target]
            if cand:
                matched[m] = min(cand, key=lambda p: p["retain_kl"])
    reach_cap = {m: reach(e, cfg.kl_cap) for m, e in env.items()}
    closest = {}
    for m in cfg.methods:
        cand = [p for p in by_method[m] if math.isfinite(p.get("distance_to_retrained", math.nan))]
        if cand:
            closest[m] = min(cand, key=lambda p: p["distance_to_retrained"])
    return {"envelopes": {m: [list(x) for x in e] for m, e in env.items()}, "primary_range": primary,
            "target_increase": target, "dominance": dom, "reach": reach_cap, "kl_cap": cfg.kl_cap,
            "accuracy": accuracy_view, "grid_check": checks, "matched": matched, "closest": closest,
            "errors": [p for p in points if p.get("step") is None]}


def _device(cfg: Config) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


# ---------------------------------------------------------------------------------------- digits
def digits_mlp(hidden: int, seed: int) -> nn.Sequential:
    """The digits experiment's untrained model: ``64 -> hidden -> 10`` with tanh, initialized from ``seed``."""
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


def train_digits_models(data: dict[str, Any], cfg: Config, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """The digits experiment's two trained models, from one initialization (:func:`digits_mlp`) and the same
    training (full-batch Adam, ``digits_epochs`` steps, :func:`optlib.unlearning.retrain`): the *original* model on
    the whole training split, where unlearning starts, and the *retrained* model on the retain set only, the ground
    truth that unlearning approximates."""
    init = digits_mlp(cfg.digits_hidden, cfg.seed).to(device)
    train_kw = dict(epochs=cfg.digits_epochs, lr=cfg.digits_lr, weight_decay=cfg.digits_weight_decay, seed=cfg.seed)
    original = retrain(init, data["train"], **train_kw)
    retrained = retrain(init, data["retain"], **train_kw)
    return original, retrained


def run_digits(cfg: Config, bar=None) -> dict[str, Any]:
    """The digits experiment: train the original and retrained MLPs, build the curvatures, sweep every method."""
    device = _device(cfg)
    t0 = time.perf_counter()
    data = digits_data(cfg, device)
    original, retrained = train_digits_models(data, cfg, device)
    t_train = time.perf_counter() - t0
    ref_test = reference_log_probs(retrained, data["test"])
    ref_retain_test = reference_log_probs(retrained, data["retain_test"])

    def monitor(m: nn.Module) -> dict[str, float]:
        return {"forget_accuracy": accuracy(m, data["forget"]),
                "forget_test_loss": forget_loss(m, data["forget_test"]),
                "forget_test_accuracy": accuracy(m, data["forget_test"]),
                "retain_test_accuracy": accuracy(m, data["retain_test"]),
                "distance_to_retrained": kl_to_reference(ref_test, m, data["test"]),
                "distance_to_retrained_retain": kl_to_reference(ref_retain_test, m, data["retain_test"])}

    t1 = time.perf_counter()
    curv = {m: build_curvature(KFADE_METHODS[m], original, [data["retain"]], cfg) for m in cfg.methods
            if m in KFADE_METHODS}
    damping = {m: resolve_damping(op, cfg) for m, op in curv.items()}
    t_curv = time.perf_counter() - t1
    t2 = time.perf_counter()
    points = sweep(original, data["forget"], data["retain_test"], curv, {m: d["lambda"] for m, d in damping.items()},
                   cfg, cfg.budgets, cfg.ga_lrs, monitor, bar)
    t_sweep = time.perf_counter() - t2
    orig = {"forget_loss": forget_loss(original, data["forget"]), **monitor(original)}
    ref = {"forget_loss": forget_loss(retrained, data["forget"]), **monitor(retrained)}
    grids = {m: cfg.ga_lrs if m == BASELINE else cfg.budgets for m in cfg.methods}
    summary = summarize(points, cfg, orig, ref, grids)
    n_params = sum(p.numel() for p in original.parameters())
    return {
        "setup": {"model": f"MLP 64-{cfg.digits_hidden}-10 (tanh)", "params": n_params,
                  "forget_class": cfg.digits_class, "n_forget": len(data["forget"][1]),
                  "n_retain": len(data["retain"][1]), "n_retain_test": len(data["retain_test"][1]),
                  "steps": cfg.steps, "grids": grids,
                  "train_retain_loss": forget_loss(original, data["retain"]),
                  "train_retain_accuracy": accuracy(original, data["retain"])},
        "damping": damping, "original": orig, "retrained": ref, "points": points, **summary,
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


def train_gpt_models(vocab_size: int, ids_train: np.ndarray, ids_retain: np.ndarray, cfg: Config,
                     device: torch.device, bar=None) -> tuple[nn.Module, nn.Module | None]:
    """The GPT experiment's trained models, from one initialization (seeded by ``seed``, untied head, no dropout)
    and the same training (:func:`train_gpt`): the *original* model on the whole training text, where unlearning
    starts, and (with ``gpt_retrain``) the *retrained* model on the text without the speaker, the ground truth that
    unlearning approximates (``None`` without it)."""
    gcfg = GPTConfig(vocab_size=vocab_size, block_size=cfg.gpt_block, n_layer=cfg.gpt_layers,
                     n_head=cfg.gpt_heads, n_embd=cfg.gpt_embd, dropout=0.0, tie_weights=False)
    torch.manual_seed(cfg.seed)
    init = TokenLogits(GPT(gcfg)).to(device)
    original = train_gpt(init, ids_train, cfg, device, bar)
    retrained = train_gpt(init, ids_retain, cfg, device, bar) if cfg.gpt_retrain else None
    return original, retrained


def run_gpt(cfg: Config, bar=None) -> dict[str, Any]:
    """The GPT experiment: split the text by speaker, draw the windows, train the original (and retrained) GPT,
    build the curvatures, sweep every method."""
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
    original, retrained = train_gpt_models(corpus.vocab_size, ids_tr, ids_retain, cfg, device, bar)
    t_train = time.perf_counter() - t0
    refs = None
    if retrained is not None:
        refs = (reference_log_probs(retrained, [forget]), reference_log_probs(retrained, [retain_eval]))

    def monitor(m: nn.Module) -> dict[str, float]:
        out = {"forget_accuracy": accuracy(m, [forget]), "retain_loss": forget_loss(m, [retain_eval])}
        if refs is not None:
            out["distance_to_retrained_forget"] = kl_to_reference(refs[0], m, [forget])
            out["distance_to_retrained"] = kl_to_reference(refs[1], m, [retain_eval])
        return out

    t1 = time.perf_counter()
    curv = {m: build_curvature(KFADE_METHODS[m], original, [curv_data], cfg) for m in cfg.methods
            if m in KFADE_METHODS}
    damping = {m: resolve_damping(op, cfg) for m, op in curv.items()}
    t_curv = time.perf_counter() - t1
    t2 = time.perf_counter()
    budgets, lrs = cfg.gpt_budgets or cfg.budgets, cfg.gpt_ga_lrs or cfg.ga_lrs
    points = sweep(original, [forget], [retain_eval], curv, {m: d["lambda"] for m, d in damping.items()}, cfg,
                   budgets, lrs, monitor, bar)
    t_sweep = time.perf_counter() - t2
    orig = {"forget_loss": forget_loss(original, [forget]), **monitor(original)}
    ref = None if retrained is None else {"forget_loss": forget_loss(retrained, [forget]), **monitor(retrained)}
    grids = {m: lrs if m == BASELINE else budgets for m in cfg.methods}
    summary = summarize(points, cfg, orig, ref, grids)
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
                  "retrained": retrained is not None, "steps": cfg.steps, "grids": grids},
        "damping": damping, "original": orig, "retrained": ref, "points": points, **summary,
        "seconds": {"train_and_retrain": t_train, "curvature": t_curv, "sweep": t_sweep},
    }


# ---------------------------------------------------------------------------------------- driver
RUNNERS = {"digits": run_digits, "gpt": run_gpt}


def _units(cfg: Config) -> int:
    n_runs = sum(len(cfg.ga_lrs if m == BASELINE else cfg.budgets) for m in cfg.methods)
    total = 0
    if "digits" in cfg.experiments:
        total += n_runs
    if "gpt" in cfg.experiments:
        n_gpt = sum(len((cfg.gpt_ga_lrs or cfg.ga_lrs) if m == BASELINE else (cfg.gpt_budgets or cfg.budgets))
                    for m in cfg.methods)
        total += n_gpt + cfg.gpt_steps * (2 if cfg.gpt_retrain else 1)
    return total


def run_benchmark(cfg: Config) -> dict[str, Any]:
    """Run the configured experiments with ``cfg.threads`` torch threads (BLAS pools left alone, as before the move
    to :mod:`scale.bench`); :func:`write_outputs` writes the JSON and the PNGs."""
    cfg.validate()
    bar = tqdm(total=_units(cfg), desc="unlearn", unit="run") if cfg.progress else None
    try:
        with thread_limit(cfg.threads, blas=None):
            prov = {**provenance(torch.get_num_threads()), "device": str(_device(cfg))}
            results = {}
            for e in cfg.experiments:
                if bar is not None:
                    bar.set_description(f"unlearn {e}")
                results[e] = RUNNERS[e](cfg, bar)
    finally:
        if bar is not None:
            bar.close()
    record = {k: v for k, v in config_to_dict(cfg).items() if k not in _RUN_ONLY}
    return {"config": record, "provenance": prov, "experiments": results}


def write_outputs(result: dict[str, Any], cfg: Config) -> Path:
    """``cfg.out/unlearn.json`` and, with ``cfg.plot``, one PNG per experiment; returns the JSON's path."""
    path = save_json(result, cfg.out, JSON_NAME)
    if cfg.plot:
        for e, r in result["experiments"].items():
            plot_experiment(e, r, cfg, Path(cfg.out) / plot_name(e))
    return path


COLORS = {"kfade-kfac": "tab:blue", "kfade-ekfac": "tab:green", "gradient-ascent": "tab:red"}


RANGE_TEXT = {"to_retrained": "1-100% of the retrained model's forget-loss increase",
              "kl_cap": "the increases both reach with retain KL <= {cap:g}",
              "common": "every increase both reach"}


def range_text(name: str, kl_cap: float) -> str:
    return RANGE_TEXT[name].format(cap=kl_cap)


def plot_experiment(name: str, r: dict[str, Any], cfg: Config, path: Path | str) -> None:
    """Up to three panels: retain KL against the forget-loss increase (points, envelopes, the headline range
    shaded), retain KL against the forget accuracy, and the distance to the retrained model."""
    plt = pyplot()
    dist_key = "distance_to_retrained"
    pts_all = [p for p in r["points"] if p.get("step") is not None]
    has_dist = any(dist_key in p for p in pts_all)
    has_acc = any("forget_accuracy" in p for p in pts_all)
    n = 1 + has_acc + has_dist
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.2), squeeze=False)
    axes = list(axes[0])
    ax = axes.pop(0)
    ref = r.get("retrained")
    for m in cfg.methods:
        pts = [p for p in pts_all if p["method"] == m and p["forget_increase"] > 0]
        if not pts:
            continue
        ax.scatter([p["forget_increase"] for p in pts], [max(p["retain_kl"], 1e-12) for p in pts], s=8, alpha=0.3,
                   color=COLORS.get(m))
        env = r["envelopes"].get(m) or []
        if env:
            ax.plot([u for u, _ in env], [max(k, 1e-12) for _, k in env], color=COLORS.get(m), label=m)
    rngs = [d["range"] for d in r["dominance"].get(r["primary_range"], {}).values() if d.get("range")]
    if rngs:
        ax.axvspan(min(x[0] for x in rngs), max(x[1] for x in rngs), color="0.9", zorder=0,
                   label=f"compared ({r['primary_range']})")
    if ref is not None:
        ax.axvline(ref["forget_loss"] - r["original"]["forget_loss"], color="k", linestyle=":", linewidth=0.9,
                   label="retrained model")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("forget-loss increase (nats)")
    ax.set_ylabel("retain KL(p0 || p)  (held-out retain data)")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"{name}: frontier (lower is better), {cfg.steps} steps per run", fontsize=9)
    if has_acc:
        ax = axes.pop(0)
        for m in cfg.methods:
            pts = sorted((p for p in pts_all if p["method"] == m and "forget_accuracy" in p),
                         key=lambda p: p["forget_accuracy"])
            if not pts:
                continue
            ax.scatter([p["forget_accuracy"] for p in pts], [max(p["retain_kl"], 1e-12) for p in pts], s=8,
                       alpha=0.3, color=COLORS.get(m))
            best, xs, ys = math.inf, [], []  # least KL reaching at most this accuracy
            for p in pts:
                if p["retain_kl"] < best:
                    best = p["retain_kl"]
                xs.append(p["forget_accuracy"])
                ys.append(max(best, 1e-12))
            ax.step(xs, ys, where="post", color=COLORS.get(m), label=m)
        if ref is not None and "forget_accuracy" in ref:
            ax.axvline(ref["forget_accuracy"], color="k", linestyle=":", linewidth=0.9, label="retrained model")
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("forget-set accuracy")
        ax.set_ylabel("retain KL(p0 || p)")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8)
        ax.set_title(f"{name}: forget accuracy against retain KL", fontsize=9)
    if has_dist:
        ax2 = axes.pop(0)
        for m in cfg.methods:
            pts = [p for p in pts_all if p["method"] == m and p["forget_increase"] > 0 and dist_key in p]
            ax2.scatter([p["forget_increase"] for p in pts], [max(p[dist_key], 1e-12) for p in pts], s=8,
                        alpha=0.4, color=COLORS.get(m), label=m)
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
    for a in fig.axes:  # a retain KL above 10 nats is a destroyed model: keep the axes on the useful part
        lo, hi = a.get_ylim()
        if hi > 10.0 > lo:
            a.set_ylim(top=10.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _grid_warnings(r: dict[str, Any]) -> list[str]:
    out = []
    for m, c in r["grid_check"].items():
        ends = [w for w, k in (("smallest", "smallest_binding"), ("largest", "largest_binding")) if c.get(k)]
        if ends:
            what = "step size" if m == BASELINE else "budget"
            out.append(f"{m}: the frontier on the compared range depends on the grid's {' and '.join(ends)} {what} "
                       "(without its points it changes); a wider grid could lower it there")
    return out


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.3g}"


def format_summary(result: dict[str, Any]) -> str:
    """Plain-text summary (what the CLI prints)."""
    lines = []
    for e, r in result["experiments"].items():
        setup = r["setup"]
        lines.append(f"[{e}] {setup['model']}, forget loss {r['original']['forget_loss']:.3f}"
                     + (f" (retrained: {r['retrained']['forget_loss']:.3f})" if r.get("retrained") else "")
                     + f"; {setup['steps']} steps per run")
        for m, g in setup["grids"].items():
            what = "step sizes" if m == BASELINE else "KL budgets"
            lines.append(f"  {m}: {len(g)} {what} {min(g):.3g} .. {max(g):.3g}"
                         + (f", damping {r['damping'][m]['lambda']:.3g} ({r['damping'][m]['factor']:g} x mean "
                            f"eigenvalue {r['damping'][m]['mean_eigenvalue']:.3g})"
                            if m in r["damping"] and r["damping"][m]["rule"] == "relative" else
                            f", damping {r['damping'][m]['lambda']:.3g} (absolute)" if m in r["damping"] else ""))
        order = [r["primary_range"]] + [x for x in RANGES if x != r["primary_range"]]
        for rng in order:
            for m, d in r["dominance"].get(rng, {}).items():
                head = f"  {m} vs gradient-ascent, {rng}{' (headline)' if rng == r['primary_range'] else ''}"
                if d["fraction_lower"] is None:
                    lines.append(f"{head}: no common range ({range_text(rng, r['kl_cap'])})")
                    continue
                lines.append(f"{head} [{d['range'][0]:.3g}, {d['range'][1]:.3g}] nats: lower retain KL on "
                             f"{100 * d['fraction_lower']:.0f}%, KL ratio geometric mean {_fmt(d['geomean_ratio'])}, "
                             f"largest {_fmt(d['max_ratio'])}; dominates: {d['dominates']}")
        acc = r.get("accuracy")
        ref = r.get("retrained")
        if not acc and ref and "forget_accuracy" in ref:
            lines.append(f"  no forget-accuracy view: the retrained model's forget accuracy "
                         f"{ref['forget_accuracy']:.3g} is not below the original model's "
                         f"{r['original']['forget_accuracy']:.3g}")
        if acc:
            lines.append("  least retain KL to bring the forget accuracy to at most "
                         + ", ".join(f"{a:.3g}" for a in acc["levels"])
                         + f" ({', '.join(f'{100 * q:.0f}%' for q in acc['fractions'])} of the way to the "
                         "retrained model's):")
            for m, kls in acc["least_kl"].items():
                ratio = acc["ratio"].get(m)
                lines.append(f"    {m}: " + ", ".join(_fmt(k) for k in kls)
                             + (f"  (ratio to gradient-ascent {', '.join(_fmt(x) for x in ratio)})" if ratio else ""))
        lines.append(f"  largest forget-loss increase with retain KL <= {r['kl_cap']:g}: "
                     + ", ".join(f"{m} {u:.3g}" for m, u in r["reach"].items()))
        for m, p in r["matched"].items():
            dist = p.get("distance_to_retrained")
            lines.append(f"  least retain KL reaching the retrained forget loss, {m}: increase "
                         f"{p['forget_increase']:.3g}, retain KL {p['retain_kl']:.3g}"
                         + (f", distance to retrained {dist:.3g}" if dist is not None else ""))
        for m, p in r["closest"].items():
            lines.append(f"  closest to the retrained model, {m}: distance {p['distance_to_retrained']:.3g} at "
                         f"forget-loss increase {p['forget_increase']:.3g}, retain KL {p['retain_kl']:.3g}")
        for w in _grid_warnings(r):
            lines.append(f"  grid check: {w}")
        for p in r["errors"]:
            lines.append(f"  {p['method']} at {p['value']:g} stopped after {p.get('steps_done', 0)} step(s): "
                         f"{p['error']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- report section
@register_section("unlearning", "Gauss–Newton unlearning", order=70)
def report_section(ctx: ReportContext) -> SectionResult:
    cfg = Config(**PRESETS["smoke" if ctx.quick else "quick"], threads=ctx.config.threads or 1,
                 progress=ctx.config.progress, plot=False)
    result = run_benchmark(cfg)
    figs = []
    text = (
        "**K-FADE against gradient ascent** (McKinney et al. 2026, arXiv:2602.10568; our reconstruction of the "
        "step rule, see `optlib.unlearning`). Uphill Gauss–Newton steps θ ← θ + η(G_r + λI)⁻¹∇L_f with the "
        "retain-set K-FAC / EK-FAC curvature and the KL trust-region step "
        f"η = sqrt(2ε/gᵀδ), against θ ← θ + η∇L_f; {cfg.steps} steps per run for every method, "
        f"{len(cfg.budgets)} budgets {min(cfg.budgets):g} … {max(cfg.budgets):g} and {len(cfg.ga_lrs)} "
        f"gradient-ascent step sizes {min(cfg.ga_lrs):g} … {max(cfg.ga_lrs):g} (digits), log-spaced. Damping "
        + (f"λ = {cfg.damping:g} × the mean eigenvalue of each curvature approximation (kronfluence's heuristic "
           "default, taken as published rather than tuned on these results)" if cfg.damping_rule == "relative" else
           f"λ = {cfg.damping:g}")
        + f", {cfg.fisher_type} Fisher. Retain KL E KL(p₀‖p) on held-out retain data; a method's frontier is the "
        "least KL reaching a given forget-loss increase. The headline range is 1–100% of the retrained model's "
        "forget-loss increase (beyond it the cross-entropy of a forgotten class grows without bound). Quick "
        "configuration; `python -m scale.bench.unlearning` runs the full one.\n\n"
    )
    rows = []
    for e, r in result["experiments"].items():
        for rng in [r["primary_range"]] + [x for x in RANGES if x != r["primary_range"]]:
            for m, d in r["dominance"].get(rng, {}).items():
                span = "none in common" if not d["range"] else \
                    f"{fmt_num(d['range'][0], 3)} – {fmt_num(d['range'][1], 3)}"
                rows.append([e, m, rng + (" (headline)" if rng == r["primary_range"] else ""), span,
                             "–" if d["fraction_lower"] is None else f"{100 * d['fraction_lower']:.0f}%",
                             "–" if d["geomean_ratio"] is None else fmt_num(d["geomean_ratio"], 3),
                             "–" if d["max_ratio"] is None else fmt_num(d["max_ratio"], 3),
                             "–" if d["dominates"] is None else ("yes" if d["dominates"] else "no")])
    text += md_table(["experiment", "K-FADE variant", "range", "forget-loss increases compared (nats)",
                      "share where K-FADE's KL is lower", "geo-mean KL ratio K-FADE / GA", "largest ratio",
                      "dominates"], rows)
    arows = []
    for e, r in result["experiments"].items():
        acc = r.get("accuracy")
        if not acc:
            continue
        for i, (q, a) in enumerate(zip(acc["fractions"], acc["levels"])):
            arows.append([e, f"{fmt_num(a, 3)} ({100 * q:.0f}%)",
                          *(fmt_num(acc["least_kl"][m][i], 3) if m in acc["least_kl"] else "–" for m in cfg.methods)])
    if arows:
        text += ("\n\nLeast retain KL at which the forget-set accuracy is at most the given level (in brackets: the "
                 "share of the way from the original to the retrained model's forget accuracy):\n\n"
                 + md_table(["experiment", "forget accuracy ≤", *cfg.methods], arows))
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
        text += ("\n\nAt the forget loss of the retrained model (each method's point of least retain KL among those "
                 "whose forget loss is at least the retrained model's):\n\n"
                 + md_table(["experiment", "method", "forget-loss increase", "retain KL", "KL to retrained"], mrows))
    crows = [[e, m, fmt_num(p["distance_to_retrained"], 3), fmt_num(p["forget_increase"], 3),
              fmt_num(p["retain_kl"], 3)] for e, r in result["experiments"].items() for m, p in r["closest"].items()]
    if crows:
        text += ("\n\nClosest approach to the retrained model's outputs, E KL(p_retrained ‖ p) on held-out data, over "
                 "all points of each method:\n\n"
                 + md_table(["experiment", "method", "KL to retrained", "forget-loss increase", "retain KL"], crows))
    warnings = [f"{e}: {w}" for e, r in result["experiments"].items() for w in _grid_warnings(r)]
    if warnings:
        text += "\n\nGrid check:\n\n" + "\n".join(f"- {w}" for w in warnings)
    for e, r in result["experiments"].items():
        path, rel = ctx.figure(plot_name(e))
        plot_experiment(e, r, cfg, path)
        figs.append(rel)
        text += f"\n\n![{e} unlearning frontier]({rel})"
    return SectionResult(text, figs)


# ---------------------------------------------------------------------------------------- CLI
def _run(cfg: Config) -> int:
    cfg.validate()
    if "gpt" in cfg.experiments and cfg.speaker != "auto":
        check_speaker(cfg.speaker)  # before hours of work, not after the digits experiment
    result = run_benchmark(cfg)
    print(format_summary(result))
    print(f"results written to {write_outputs(result, cfg)}")
    return 0


COMMAND = Command(
    prog="python -m scale.bench.unlearning",
    description=(
        "Gauss-Newton unlearning (K-FADE, McKinney et al. 2026, arXiv:2602.10568) against gradient ascent: the "
        "frontier of forget-loss increase against retain-set KL, and the distance to a model retrained without the "
        "forget set, on a digits MLP (forget one class) and a character-level GPT on tiny-shakespeare (forget one "
        "speaker). The benchmark trains the original model (all training data) and the retrained one (without the "
        "forget set) itself, then unlearns from the original with each method. "
        f"Writes OUT/{JSON_NAME} and OUT/unlearn_<experiment>.png."
    ),
    config=Config, run=_run, presets=PRESETS, preset_flags=True,
)
main = COMMAND.main

if __name__ == "__main__":
    raise SystemExit(main())
