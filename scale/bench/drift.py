r"""Discretisation drift on small problems: flows against iterates, the edge of stability, IGR's bias, drift in
GANs, and the drift-adjusted learning rate against constant and cosine step sizes.

``python -m scale.bench.drift`` runs the experiments named in ``--experiments`` (all by default):

``landscape``
    :math:`E(x, y) = \log\cosh x + \tfrac14(y - x^2)^2`, gradient descent from ``(1.5, 1.8)`` at the steps of
    ``--landscape-lrs`` for ``--landscape-steps`` steps, against the negative gradient flow, the IGR flow
    (:func:`optlib.drift.modified_flow`) and the principal flow (:func:`optlib.drift.principal_flow`, complex
    once :math:`h\lambda > 1`, compared by its real part), integrated by :func:`optlib.drift.integrate` (DOP853) and
    read at the matched times :math:`t = nh`. Metric: the largest distance :math:`\max_n\lVert\theta_n -
    \varphi(nh)\rVert` per flow, with :math:`\max_n h\lambda_{\max}(\theta_n)` (the expansion behind the
    modified flows holds for small values). Figure: contours, iterates and the three flows.
``edge``
    a tanh MLP (64-``width``-``width``-10, squared error on one-hot targets, float64) trained by full-batch
    gradient descent on ``--n-train`` scikit-learn digits at each step of ``--edge-lrs``; :math:`\lambda_{\max}`
    by Lanczos (:func:`optlib.drift.lambda_max`, ``--lanczos-steps``) every ``--lambda-every`` steps. The edge of
    stability (Cohen et al., ICLR 2021) predicts that the sharpness rises to about :math:`2/h` and hovers there.
    Metric: the median of :math:`h\lambda_{\max}/2` over the last half of the run (1 at the edge).
``igr-bias``
    the same MLP trained to the same time :math:`T` (``--igr-time``; :math:`T/h` steps) at each step of
    ``--igr-lrs``: IGR (Barrett & Dherin, ICLR 2021) predicts a flatter end point (lower :math:`\lambda_{\max}`)
    for larger :math:`h`. Then the smallest step with the explicit penalty
    :func:`optlib.drift.igr_penalty` of coefficient :math:`h_L - h_s` (:math:`h_L` the largest step), whose
    total implicit-plus-explicit regulariser is :math:`\tfrac{h_L}4\lVert\nabla E\rVert^2`, to the same time:
    it should end near the large step's :math:`\lambda_{\max}`. Metric: final :math:`\lambda_{\max}` and loss;
    the slope of :math:`\lambda_{\max}` against :math:`h`.
``gans``
    Dirac-GAN (Mescheder et al., ICML 2018: data at 0, generator :math:`\theta`, discriminator
    :math:`D(x) = \psi x`, :math:`E = \log\sigma(\psi\theta) + \log\sigma(0)`) and a GAN on a mixture of 8
    Gaussians on a circle of radius 2 (std 0.05; generator and discriminator tanh MLPs, non-saturating loss), both
    with simultaneous gradient steps of size ``--gan-lr``, ``--seeds`` seeds each, without and with the explicit
    drift regularisers of :func:`optlib.drift.game_drift_penalties` that cancel both players' interaction terms
    (each player's loss minus its interaction term: the harmful terms of simultaneous updates, Rosca et al.,
    ICML 2021). Metrics: Dirac-GAN's distance to the equilibrium :math:`(0, 0)` after ``--dirac-steps``; the
    mixture's mode coverage (modes holding at least 1 % of 2,000 samples within 0.25) and the share of samples
    within 0.25 of some mode, after ``--mog-steps``.
``dal``
    the ``edge`` MLP trained for ``--dal-steps`` by gradient descent at every constant step of ``--dal-lrs``, by
    a cosine decay from each of them to 0, and by the drift-adjusted learning rate
    (:class:`optlib.optim.DriftAdjustedLR`, :math:`p = 1`, cap 5, finite-difference :math:`Hg`), on ``--seeds``
    initialisations. A run diverges when its loss becomes non-finite or ends above its start. Targets: DAL does
    not diverge although it takes steps where constant steps diverge; its final loss against the best
    non-diverging constant step (ratio reported). Also measured on this MLP: the time of one IGR modified-flow
    evaluation against one gradient (target at most 3x: one gradient plus one Hessian-vector product).

Outputs in ``--out``: ``drift.json`` (configuration, provenance, every curve and summary), ``drift.md`` (the
tables) and the figures ``drift_<experiment>.png``. ``--quick`` (preset) finishes in under a minute on one core.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from optlib.drift import (
    IntegrationError,
    game_drift_penalties,
    gradient,
    igr_penalty,
    integrate,
    lambda_max,
    modified_flow,
    principal_flow,
)
from optlib.optim import DriftAdjustedLR
from scale.cli import Command, config_to_dict, option

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

JSON_NAME = "drift.json"
EXPERIMENTS = ("landscape", "edge", "igr-bias", "gans", "dal")
LANDSCAPE_START = (1.5, 1.8)
FLOWS = ("gradient", "igr", "principal")
MOG_MODES, MOG_RADIUS, MOG_STD, MOG_NEAR = 8, 2.0, 0.05, 0.25
DAL_CAP = 5.0
_RUN_ONLY = ("out",)


@dataclass
class Config:
    experiments: tuple[str, ...] = option(EXPERIMENTS, "experiments to run", choices=EXPERIMENTS)
    seeds: int = option(3, "seeds (initialisations) of the gans and dal experiments")
    n_train: int = option(1000, "digits used as the full batch of the MLP experiments")
    width: int = option(32, "hidden width of the MLP (two tanh layers)")
    landscape_lrs: tuple[float, ...] = option((0.05, 0.3), "landscape: GD steps")
    landscape_steps: int = option(20, "landscape: GD steps taken (flows integrated to the same time)")
    edge_lrs: tuple[float, ...] = option((0.05, 0.1, 0.2), "edge: GD steps")
    edge_steps: int = option(1000, "edge: GD steps per run")
    lambda_every: int = option(50, "edge: steps between lambda_max estimates")
    lanczos_steps: int = option(20, "Lanczos iterations per lambda_max")
    igr_lrs: tuple[float, ...] = option((0.01, 0.02, 0.04, 0.08), "igr-bias: GD steps (at least two)")
    igr_time: float = option(20.0, "igr-bias: training time T = steps x h of every run")
    gan_lr: float = option(0.05, "gans: step size of both players")
    dirac_steps: int = option(2000, "gans: Dirac-GAN steps")
    mog_steps: int = option(2000, "gans: mixture-of-Gaussians GAN steps")
    mog_batch: int = option(256, "gans: real and generated samples per step")
    dal_lrs: tuple[float, ...] = option((0.05, 0.1, 0.2, 0.4, 0.8), "dal: constant (and cosine peak) steps")
    dal_steps: int = option(1000, "dal: GD steps per run")
    threads: int = option(1, "torch threads (0 keeps torch's choice)")
    out: Path = option(Path("reports/drift"), f"output folder for {JSON_NAME}, drift.md and the figures")

    def validate(self) -> None:
        for name in ("seeds", "n_train", "width", "landscape_steps", "edge_steps", "lambda_every", "lanczos_steps",
                     "dirac_steps", "mog_steps", "mog_batch", "dal_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        for name in ("landscape_lrs", "edge_lrs", "igr_lrs", "dal_lrs"):
            values = getattr(self, name)
            if not values or not all(math.isfinite(v) and v > 0 for v in values):
                raise ValueError(f"--{name.replace('_', '-')} must be positive step sizes, got {values!r}.")
        if len(self.igr_lrs) < 2:
            raise ValueError(f"--igr-lrs needs at least two step sizes (a slope), got {self.igr_lrs!r}.")
        if not (math.isfinite(self.igr_time) and self.igr_time > 0) or self.igr_time < max(self.igr_lrs):
            raise ValueError(f"--igr-time must be at least the largest step of --igr-lrs, got {self.igr_time}.")
        if not (math.isfinite(self.gan_lr) and self.gan_lr > 0):
            raise ValueError(f"--gan-lr must be a positive step size, got {self.gan_lr}.")
        if not 1 <= self.n_train <= 1797:
            raise ValueError(f"--n-train must lie in [1, 1797] (the digits data set), got {self.n_train}.")
        unknown = [e for e in self.experiments if e not in EXPERIMENTS]
        if unknown or not self.experiments:
            raise ValueError(f"unknown experiment(s) {unknown or '(none given)'}; valid: {', '.join(EXPERIMENTS)}")


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"seeds": 1, "n_train": 300, "width": 16, "landscape_steps": 12, "edge_steps": 300,
              "edge_lrs": (0.1, 0.2), "lambda_every": 50, "lanczos_steps": 15, "igr_lrs": (0.01, 0.04),
              "igr_time": 4.0, "dirac_steps": 300, "mog_steps": 150, "mog_batch": 128, "dal_steps": 200,
              "dal_lrs": (0.1, 0.4, 1.6)},
}


# ---------------------------------------------------------------------------------------------- the MLP
@functools.lru_cache(maxsize=4)
def digits(n_train: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n_train`` scikit-learn digits, pixels scaled to [0, 1] (float64), and one-hot targets."""
    from sklearn.datasets import load_digits  # scikit-learn is slow to import: only when the data are used

    X, y = load_digits(return_X_y=True)
    x = torch.tensor(X[:n_train] / 16.0, dtype=torch.float64)
    return x, F.one_hot(torch.tensor(y[:n_train]), 10).to(torch.float64)


class DigitsMLP:
    r"""The tanh MLP 64-w-w-10 as a loss of one flat float64 vector:
    :math:`E(\theta) = \tfrac1{2N}\sum_i\lVert f_\theta(x_i) - e_{y_i}\rVert^2` on the full batch."""

    def __init__(self, n_train: int, width: int) -> None:
        self.x, self.y = digits(n_train)
        self.shapes = [(width, 64), (width,), (width, width), (width,), (10, width), (10,)]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.n = sum(self.sizes)

    def init(self, seed: int) -> torch.Tensor:
        """LeCun-normal weights (std 1/sqrt(fan-in)), zero biases."""
        gen = torch.Generator().manual_seed(seed)
        parts = [torch.randn(s, generator=gen, dtype=torch.float64).reshape(-1) / math.sqrt(s[1]) if len(s) == 2
                 else torch.zeros(s, dtype=torch.float64) for s in self.shapes]
        return torch.cat(parts)

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2, w3, b3 = (c.view(s) for c, s in zip(torch.split(theta, self.sizes), self.shapes))
        hidden = torch.tanh(torch.tanh(self.x @ w1.T + b1) @ w2.T + b2)
        return 0.5 * ((hidden @ w3.T + b3 - self.y) ** 2).sum(1).mean()


def sharpness(loss: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, steps: int) -> float:
    """λ_max of the Hessian at ``theta`` (Lanczos); NaN when the point is not finite or Lanczos breaks down."""
    if not bool(torch.isfinite(theta).all()):
        return math.nan
    try:
        return lambda_max(loss, theta, steps=steps)
    except (RuntimeError, ValueError):  # eigvalsh of a tridiagonal with non-finite entries
        return math.nan


def gd_run(loss: DigitsMLP, theta: torch.Tensor, steps: int, lr: Callable[[int], float], *,
           every: int = 0, lanczos_steps: int = 20, penalty: float = 0.0) -> dict[str, Any]:
    """``steps`` full-batch GD steps with step ``lr(k)`` (and an explicit IGR penalty of coefficient ``penalty``);
    the loss every step, λ_max every ``every`` steps; stops at a non-finite loss (``diverged_at``)."""
    losses, lams, diverged_at = [], [], None
    for k in range(steps + 1):
        value = float(loss(theta))
        losses.append(value)
        if not math.isfinite(value):
            diverged_at = k
            break
        if every and (k % every == 0 or k == steps):
            lams.append((k, sharpness(loss, theta, lanczos_steps)))
        if k == steps:
            break
        if penalty > 0:
            leaf = theta.detach().requires_grad_(True)
            with torch.enable_grad():
                total = loss(leaf) + igr_penalty(lambda: loss(leaf), [leaf], penalty)
                (g,) = torch.autograd.grad(total, leaf)
        else:
            g = gradient(loss, theta)
        theta = (theta - lr(k) * g).detach()
    return {"loss": losses, "lambda": lams, "diverged_at": diverged_at, "theta": theta}


# ---------------------------------------------------------------------------------------------- (a) landscape
def landscape_loss(theta: torch.Tensor) -> torch.Tensor:
    x, y = theta[0], theta[1]
    return torch.log(torch.cosh(x)) + 0.25 * (y - x * x) ** 2


def run_landscape(cfg: Config) -> dict[str, Any]:
    out = {}
    for h in cfg.landscape_lrs:
        theta = torch.tensor(LANDSCAPE_START, dtype=torch.float64)
        iterates, hl = [theta], []
        for _ in range(cfg.landscape_steps):
            hl.append(h * sharpness(landscape_loss, theta, 2))
            theta = (theta - h * gradient(landscape_loss, theta)).detach()
            iterates.append(theta)
        gd = torch.stack(iterates)
        times = h * np.arange(cfg.landscape_steps + 1)
        flows, errors, failures = {}, {}, {}
        rhs = {"gradient": modified_flow(landscape_loss, "gradient", h), "igr": modified_flow(landscape_loss, "igr", h),
               "principal": principal_flow(landscape_loss, h)}
        for name in FLOWS:
            try:
                path = integrate(rhs[name], gd[0], times, rtol=1e-10, atol=1e-12)
            except IntegrationError as exc:
                failures[name] = str(exc)
                continue
            path = path.real if path.is_complex() else path
            flows[name] = path.tolist()
            errors[name] = float((path - gd).norm(dim=1).max())
        out[str(h)] = {"h": h, "gd": gd.tolist(), "flows": flows, "max_distance": errors, "failures": failures,
                       "max_h_lambda": float(np.nanmax(hl))}
    return out


def plot_landscape(res: dict[str, Any], path: str) -> str:
    plt = pyplot()
    runs = list(res.values())
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4.2), squeeze=False)
    xs, ys = np.meshgrid(np.linspace(-2, 2, 200), np.linspace(-1, 4, 200))
    zs = np.log(np.cosh(xs)) + 0.25 * (ys - xs ** 2) ** 2
    for ax, run in zip(axes[0], runs):
        ax.contour(xs, ys, zs, levels=25, linewidths=0.5, cmap="Greys")
        gd = np.array(run["gd"])
        ax.plot(gd[:, 0], gd[:, 1], "ko", ms=3, label="GD iterates")
        for name, style in zip(FLOWS, ("C0-", "C1--", "C3:")):
            if name in run["flows"]:
                p = np.array(run["flows"][name])
                ax.plot(p[:, 0], p[:, 1], style, lw=1.5,
                        label=f"{name} flow (max dist {run['max_distance'][name]:.2g})")
        ax.set_title(f"h = {run['h']}, max hλ_max = {run['max_h_lambda']:.2f}", fontsize=9)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- (b) edge
def run_edge(cfg: Config, bar: Any) -> dict[str, Any]:
    mlp = DigitsMLP(cfg.n_train, cfg.width)
    out = {}
    for h in cfg.edge_lrs:
        r = gd_run(mlp, mlp.init(0), cfg.edge_steps, lambda k, h=h: h, every=cfg.lambda_every,
                   lanczos_steps=cfg.lanczos_steps)
        late = [lam for k, lam in r["lambda"] if k >= cfg.edge_steps // 2 and math.isfinite(lam)]
        out[str(h)] = {"h": h, "edge": 2.0 / h, "loss": r["loss"][::10], "lambda": r["lambda"],
                       "diverged_at": r["diverged_at"], "initial_lambda": r["lambda"][0][1],
                       "late_ratio": float(np.median([h * lam / 2 for lam in late])) if late else math.nan,
                       "final_loss": r["loss"][-1]}
        bar.update(1)
    return out


def plot_edge(res: dict[str, Any], path: str) -> str:
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for i, run in enumerate(res.values()):
        ks, lams = zip(*run["lambda"])
        a1.plot(ks, lams, "o-", ms=3, color=f"C{i}", label=f"h = {run['h']}")
        a1.axhline(run["edge"], color=f"C{i}", ls="--", lw=0.8)
        a2.semilogy(np.arange(len(run["loss"])) * 10, run["loss"], color=f"C{i}", label=f"h = {run['h']}")
    a1.set_xlabel("step")
    a1.set_ylabel("λ_max (dashed: 2/h)")
    a1.legend(fontsize=8)
    a2.set_xlabel("step")
    a2.set_ylabel("training loss")
    a2.legend(fontsize=8)
    fig.suptitle("Full-batch GD on digits: sharpness and the edge of stability", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- (c) IGR bias
def run_igr_bias(cfg: Config, bar: Any) -> dict[str, Any]:
    mlp = DigitsMLP(cfg.n_train, cfg.width)
    lrs = sorted(cfg.igr_lrs)
    runs = []
    for h in lrs:
        steps = int(round(cfg.igr_time / h))
        r = gd_run(mlp, mlp.init(0), steps, lambda k, h=h: h)
        runs.append({"h": h, "steps": steps, "penalty": 0.0, "final_loss": r["loss"][-1],
                     "lambda_max": sharpness(mlp, r["theta"], cfg.lanczos_steps), "diverged_at": r["diverged_at"]})
        bar.update(1)
    h_small, h_large = lrs[0], lrs[-1]
    steps = int(round(cfg.igr_time / h_small))
    r = gd_run(mlp, mlp.init(0), steps, lambda k: h_small, penalty=h_large - h_small)
    explicit = {"h": h_small, "steps": steps, "penalty": h_large - h_small, "final_loss": r["loss"][-1],
                "lambda_max": sharpness(mlp, r["theta"], cfg.lanczos_steps), "diverged_at": r["diverged_at"]}
    bar.update(1)
    ok = [x for x in runs if math.isfinite(x["lambda_max"])]
    slope = float(np.polyfit([x["h"] for x in ok], [x["lambda_max"] for x in ok], 1)[0]) if len(ok) > 1 else math.nan
    small, large = runs[0]["lambda_max"], runs[-1]["lambda_max"]
    recovered = (small - explicit["lambda_max"]) / (small - large) if small != large else math.nan
    return {"runs": runs, "explicit": explicit, "slope": slope, "recovered_fraction": recovered,
            "time": cfg.igr_time}


def plot_igr(res: dict[str, Any], path: str) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    hs = [r["h"] for r in res["runs"]]
    ax.plot(hs, [r["lambda_max"] for r in res["runs"]], "o-", label="GD, no penalty")
    e = res["explicit"]
    ax.plot([e["h"]], [e["lambda_max"]], "r*", ms=12,
            label=f"GD h={e['h']} + explicit IGR penalty ({e['penalty']:.3g}/4)||∇E||²")
    ax.set_xlabel(f"step size h (same time T = {res['time']:g})")
    ax.set_ylabel("final λ_max")
    ax.legend(fontsize=8)
    ax.set_title("IGR: larger steps end flatter; the explicit penalty recovers it", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- (d) GANs
def _simultaneous_step(loss1: torch.Tensor, loss2: torch.Tensor, phi: list[torch.Tensor],
                       theta: list[torch.Tensor], h: float, regularise: bool) -> None:
    """One simultaneous gradient step (phi on loss1, theta on loss2, both at rate h), with the interaction drift
    of each player cancelled when ``regularise``."""
    if regularise:
        pen = game_drift_penalties(loss1, loss2, phi, theta, 1.0, 1.0, h, mode="simultaneous")
        loss1, loss2 = loss1 - pen.phi_interaction, loss2 - pen.theta_interaction
    g_phi = torch.autograd.grad(loss1, phi, retain_graph=True)
    g_theta = torch.autograd.grad(loss2, theta)
    with torch.no_grad():
        for p, g in zip(phi + theta, list(g_phi) + list(g_theta)):
            p.sub_(h * g)


def dirac_gan(seed: int, steps: int, h: float, regularise: bool) -> list[float]:
    """Distance to the equilibrium (0, 0) per step, from a start on the unit circle."""
    angle = 2 * math.pi * np.random.default_rng(seed).random()
    psi = torch.tensor([math.cos(angle)], dtype=torch.float64, requires_grad=True)
    theta = torch.tensor([math.sin(angle)], dtype=torch.float64, requires_grad=True)
    distances = []
    for _ in range(steps + 1):
        distances.append(float(torch.cat([psi, theta]).detach().norm()))
        if not math.isfinite(distances[-1]) or len(distances) > steps:
            break
        value = F.logsigmoid(psi * theta).sum() + math.log(0.5)
        _simultaneous_step(-value, value, [psi], [theta], h, regularise)
    return distances


def _mlp(sizes: list[int], gen: torch.Generator) -> list[torch.Tensor]:
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        params += [(torch.randn(b, a, generator=gen) / math.sqrt(a)).requires_grad_(True),
                   torch.zeros(b, requires_grad=True)]
    return params


def _forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    for i in range(0, len(params), 2):
        x = x @ params[i].T + params[i + 1]
        if i + 2 < len(params):
            x = torch.tanh(x)
    return x


def mog_centres() -> torch.Tensor:
    angles = torch.arange(MOG_MODES) * (2 * math.pi / MOG_MODES)
    return MOG_RADIUS * torch.stack([angles.cos(), angles.sin()], 1)


def mog_gan(seed: int, steps: int, batch: int, h: float, regularise: bool) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    g_params, d_params = _mlp([4, 64, 64, 2], gen), _mlp([2, 64, 64, 1], gen)
    centres = mog_centres()
    for _ in range(steps):
        real = centres[torch.randint(0, MOG_MODES, (batch,), generator=gen)] + MOG_STD * torch.randn(batch, 2,
                                                                                                     generator=gen)
        fake = _forward(g_params, torch.randn(batch, 4, generator=gen))
        d_loss = F.softplus(-_forward(d_params, real)).mean() + F.softplus(_forward(d_params, fake)).mean()
        g_loss = F.softplus(-_forward(d_params, fake)).mean()
        _simultaneous_step(d_loss, g_loss, d_params, g_params, h, regularise)
    with torch.no_grad():
        samples = _forward(g_params, torch.randn(2000, 4, generator=gen))
    if not bool(torch.isfinite(samples).all()):
        return {"modes": 0, "quality": 0.0, "diverged": True, "samples": []}
    dist = torch.cdist(samples, centres)
    near, which = dist.min(1)
    hits = near < MOG_NEAR
    counts = torch.bincount(which[hits], minlength=MOG_MODES)
    return {"modes": int((counts >= 0.01 * len(samples)).sum()), "quality": float(hits.double().mean()),
            "diverged": False, "samples": samples[:500].tolist()}


def run_gans(cfg: Config, bar: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"dirac": {}, "mog": {}}
    for regularise in (False, True):
        key = "drift-regularised" if regularise else "plain"
        dirac = [dirac_gan(s, cfg.dirac_steps, cfg.gan_lr, regularise) for s in range(cfg.seeds)]
        out["dirac"][key] = {"final_distance": [d[-1] for d in dirac], "curves": [d[::10] for d in dirac]}
        bar.update(1)
        mog = []
        for s in range(cfg.seeds):
            mog.append(mog_gan(s, cfg.mog_steps, cfg.mog_batch, cfg.gan_lr, regularise))
            bar.update(1)
        out["mog"][key] = {"modes": [m["modes"] for m in mog], "quality": [m["quality"] for m in mog],
                           "samples": mog[0]["samples"]}
    return out


def plot_gans(res: dict[str, Any], path: str) -> str:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for key, style in (("plain", "C3"), ("drift-regularised", "C0")):
        for i, c in enumerate(res["dirac"][key]["curves"]):
            axes[0].semilogy(np.arange(len(c)) * 10, c, color=style, lw=1, label=key if i == 0 else None)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("distance to equilibrium")
    axes[0].set_title("Dirac-GAN, simultaneous steps", fontsize=9)
    axes[0].legend(fontsize=8)
    centres = mog_centres().numpy()
    for ax, key in zip(axes[1:], ("plain", "drift-regularised")):
        s = np.array(res["mog"][key]["samples"])
        if len(s):
            ax.scatter(s[:, 0], s[:, 1], s=3, alpha=0.5)
        ax.scatter(centres[:, 0], centres[:, 1], marker="x", color="k")
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_title(f"MoG GAN, {key}: modes {res['mog'][key]['modes']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- (e) DAL
def dal_run(mlp: DigitsMLP, seed: int, steps: int) -> dict[str, Any]:
    theta = torch.nn.Parameter(mlp.init(seed))
    opt = torch.optim.SGD([theta], lr=0.1)
    dal = DriftAdjustedLR(opt, power=1.0, max_lr=DAL_CAP)
    losses, lrs, diverged_at = [], [], None
    for k in range(steps + 1):
        opt.zero_grad()
        value = mlp(theta)
        losses.append(float(value.detach()))
        if not math.isfinite(losses[-1]):
            diverged_at = k
            break
        if k == steps:
            break
        value.backward()
        dal.step(lambda: mlp(theta))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
    return {"loss": losses, "lrs": lrs, "diverged_at": diverged_at}


def _diverged(losses: list[float], diverged_at: int | None) -> bool:
    return diverged_at is not None or not losses[-1] < losses[0]


def run_dal(cfg: Config, bar: Any) -> dict[str, Any]:
    mlp = DigitsMLP(cfg.n_train, cfg.width)
    n = cfg.dal_steps
    runs: dict[str, list[dict[str, Any]]] = {}
    for seed in range(cfg.seeds):
        for h in cfg.dal_lrs:
            for kind, lr in (("constant", lambda k, h=h: h),
                             ("cosine", lambda k, h=h: 0.5 * h * (1 + math.cos(math.pi * k / n)))):
                r = gd_run(mlp, mlp.init(seed), n, lr)
                runs.setdefault(f"{kind} {h:g}", []).append(
                    {"seed": seed, "final_loss": r["loss"][-1], "diverged": _diverged(r["loss"], r["diverged_at"]),
                     "loss": r["loss"][::5]})
                bar.update(1)
        r = dal_run(mlp, seed, n)
        runs.setdefault("dal p=1", []).append(
            {"seed": seed, "final_loss": r["loss"][-1], "diverged": _diverged(r["loss"], r["diverged_at"]),
             "loss": r["loss"][::5], "lrs": r["lrs"][::5], "max_lr": max(r["lrs"]),
             "median_lr": float(np.median(r["lrs"]))})
        bar.update(1)
    rows = {}
    for name, rs in runs.items():
        ok = [r["final_loss"] for r in rs if not r["diverged"]]
        rows[name] = {"diverged": sum(r["diverged"] for r in rs), "runs": len(rs),
                      "median_final_loss": float(np.median(ok)) if ok else math.nan}
    stable_constant = [(name, row) for name, row in rows.items() if name.startswith("constant") and not row["diverged"]]
    diverging_constant = [float(name.split()[1]) for name, row in rows.items()
                          if name.startswith("constant") and row["diverged"]]
    best_name, best = min(stable_constant, key=lambda x: x[1]["median_final_loss"]) if stable_constant else (None, None)
    dal_row = rows["dal p=1"]
    verdict = {
        "dal_diverged": dal_row["diverged"],
        "smallest_diverging_constant": min(diverging_constant) if diverging_constant else None,
        "dal_max_lr": max(r["max_lr"] for r in runs["dal p=1"]),
        "dal_median_lr": float(np.median([r["median_lr"] for r in runs["dal p=1"]])),
        "best_constant": best_name,
        "loss_ratio": dal_row["median_final_loss"] / best["median_final_loss"] if best else math.nan,
    }
    return {"rows": rows, "runs": runs, "verdict": verdict, "cost": flow_cost(mlp)}


def flow_cost(mlp: DigitsMLP, repeats: int = 20) -> dict[str, float]:
    """Best-of-``repeats`` time of one IGR modified-flow evaluation and of one gradient on the MLP."""
    theta = mlp.init(0)
    flow = modified_flow(mlp, "igr", 0.01)

    def best(fn: Callable[[], Any]) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    t_grad, t_flow = best(lambda: gradient(mlp, theta)), best(lambda: flow(theta))
    return {"gradient_s": t_grad, "flow_s": t_flow, "ratio": t_flow / t_grad, "n_params": mlp.n}


def plot_dal(res: dict[str, Any], path: str) -> str:
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, rs) in enumerate(res["runs"].items()):
        r = rs[0]
        loss = np.array(r["loss"], dtype=float)
        loss = loss[np.isfinite(loss)]  # a diverged run ends where its loss stopped being finite
        style = "k-" if name.startswith("dal") else ("-" if name.startswith("constant") else "--")
        a1.semilogy(np.arange(len(loss)) * 5, loss, style, lw=2 if name.startswith("dal") else 1, label=name)
    a1.set_ylim(top=10)
    a1.set_xlabel("step")
    a1.set_ylabel("training loss (seed 0)")
    a1.legend(fontsize=6, ncol=2)
    d = res["runs"]["dal p=1"][0]
    a2.semilogy(np.arange(len(d["lrs"])) * 5, d["lrs"], "k-", label="DAL step h_t")
    if res["verdict"]["smallest_diverging_constant"] is not None:
        a2.axhline(res["verdict"]["smallest_diverging_constant"], color="C3", ls="--",
                   label="smallest diverging constant step")
    a2.set_xlabel("step")
    a2.set_ylabel("step size")
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- driver
RUNNERS = {"landscape": lambda cfg, bar: run_landscape(cfg), "edge": run_edge, "igr-bias": run_igr_bias,
           "gans": run_gans, "dal": run_dal}
PLOTS = {"landscape": plot_landscape, "edge": plot_edge, "igr-bias": plot_igr, "gans": plot_gans, "dal": plot_dal}


def _units(cfg: Config, name: str) -> int:
    return {"landscape": 1, "edge": len(cfg.edge_lrs), "igr-bias": len(cfg.igr_lrs) + 1,
            "gans": 2 * (1 + cfg.seeds), "dal": cfg.seeds * (2 * len(cfg.dal_lrs) + 1)}[name]


def run_benchmark(cfg: Config, log: Any = print) -> dict[str, Any]:
    cfg.validate()
    conf = {k: v for k, v in config_to_dict(cfg).items() if k not in _RUN_ONLY}
    out: dict[str, Any] = {"config": conf, "provenance": provenance(cfg.threads), "experiments": {}, "seconds": {}}
    total = sum(_units(cfg, name) for name in cfg.experiments)
    with thread_limit(cfg.threads or None):
        bar = tqdm(total=total, desc="drift", leave=False, disable=log is not print)
        for name in cfg.experiments:
            t0 = time.perf_counter()
            out["experiments"][name] = RUNNERS[name](cfg, bar)
            if name == "landscape":
                bar.update(1)
            out["seconds"][name] = time.perf_counter() - t0
            log(f"{name}: {out['seconds'][name]:.1f} s")
        bar.close()
    return out


def write_figures(result: dict[str, Any], prefix: str) -> list[str]:
    return [PLOTS[name](res, f"{prefix}_{name}.png") for name, res in result["experiments"].items()]


def markdown(result: dict[str, Any]) -> str:
    parts = []
    ex = result["experiments"]
    if "landscape" in ex:
        rows = [[run["h"], fmt_num(run["max_h_lambda"])] + [fmt_num(run["max_distance"].get(f)) for f in FLOWS]
                for run in ex["landscape"].values()]
        parts.append("**2-D landscape** (largest distance between GD iterates and each flow at t = nh)\n\n"
                     + md_table(["h", "max hλ_max", "gradient flow", "IGR flow", "principal flow (real part)"], rows))
    if "edge" in ex:
        rows = [[run["h"], fmt_num(run["edge"]), fmt_num(run["initial_lambda"]), fmt_num(run["lambda"][-1][1]),
                 fmt_num(run["late_ratio"]), fmt_num(run["final_loss"]), fmt_num(run["diverged_at"])]
                for run in ex["edge"].values()]
        parts.append("**Edge of stability** (full-batch GD on digits)\n\n"
                     + md_table(["h", "2/h", "λ_max at start", "λ_max at end", "median hλ_max/2, last half",
                                 "final loss", "diverged at step"], rows))
    if "igr-bias" in ex:
        r = ex["igr-bias"]
        rows = [[x["h"], x["steps"], fmt_num(x["penalty"]), fmt_num(x["lambda_max"]), fmt_num(x["final_loss"])]
                for x in r["runs"] + [r["explicit"]]]
        parts.append(f"**IGR bias** (same time T = {r['time']:g}; last row: smallest step plus the explicit "
                     f"penalty)\n\n" + md_table(["h", "steps", "explicit coefficient", "final λ_max", "final loss"],
                                                rows)
                     + f"\n\nslope of λ_max in h: {fmt_num(r['slope'])}; the explicit penalty recovers "
                     f"{fmt_num(r['recovered_fraction'])} of the drop from the smallest to the largest step.")
    if "gans" in ex:
        g = ex["gans"]
        rows = []
        for key in ("plain", "drift-regularised"):
            d, m = g["dirac"][key], g["mog"][key]
            rows.append([key, fmt_num(float(np.median(d["final_distance"]))),
                         f"{fmt_num(min(d['final_distance']))}–{fmt_num(max(d['final_distance']))}",
                         f"{np.mean(m['modes']):.2f} ({', '.join(map(str, m['modes']))})",
                         fmt_num(float(np.mean(m["quality"])))])
        parts.append("**GANs** (simultaneous steps; drift-regularised = both interaction terms cancelled)\n\n"
                     + md_table(["variant", "Dirac-GAN distance to equilibrium (median)", "range over seeds",
                                 f"MoG modes covered of {MOG_MODES} (mean; per seed)",
                                 "MoG samples near a mode"], rows))
    if "dal" in ex:
        d = ex["dal"]
        rows = [[name, f"{row['diverged']}/{row['runs']}", fmt_num(row["median_final_loss"])]
                for name, row in d["rows"].items()]
        v, c = d["verdict"], d["cost"]
        parts.append("**DAL against constant and cosine steps** (digits MLP)\n\n"
                     + md_table(["schedule", "diverged", "median final loss (non-diverged)"], rows)
                     + f"\n\nDAL diverged in {v['dal_diverged']} run(s); its steps reached {fmt_num(v['dal_max_lr'])} "
                     f"(median {fmt_num(v['dal_median_lr'])}), the smallest diverging constant step is "
                     f"{fmt_num(v['smallest_diverging_constant'])}; final loss / best stable constant "
                     f"({v['best_constant']}) = {fmt_num(v['loss_ratio'])}.\n\n"
                     f"One IGR modified-flow evaluation costs {fmt_num(c['ratio'])}x one gradient on this MLP "
                     f"({c['n_params']} parameters; {c['flow_s'] * 1e3:.3g} ms against {c['gradient_s'] * 1e3:.3g} ms).")
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------------- report section
@register_section("drift", "Discretisation drift", order=97)
def report_section(ctx: ReportContext) -> SectionResult:
    preset = PRESETS["quick"] if ctx.quick else {}
    cfg = Config(**preset, threads=ctx.config.threads or 1)
    res = run_benchmark(cfg, log=lambda *_: None)
    path, rel = ctx.figure("drift")
    write_figures(res, path)
    figs = [f"{rel}_{name}.png" for name in res["experiments"]]
    text = (f"Preset {'quick' if ctx.quick else 'default'} (`python -m scale.bench.drift` for the full run); "
            f"{sum(res['seconds'].values()):.0f} s on {cfg.threads} thread(s).\n\n" + markdown(res))
    return SectionResult(text, figs)


# ---------------------------------------------------------------------------------------------- CLI
def _run(cfg: Config) -> int:
    result = run_benchmark(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    write_figures(result, str(cfg.out / "drift"))
    (cfg.out / "drift.md").write_text(markdown(result) + "\n", encoding="utf-8")
    print(markdown(result))
    print(f"results written to {save_json(result, cfg.out, JSON_NAME)}")
    return 0


COMMAND = Command(
    prog="python -m scale.bench.drift",
    description=("Discretisation drift: GD iterates against the gradient, IGR and principal flows on a 2-D "
                 "landscape; the edge of stability and IGR's flatter end points on a digits MLP; Dirac-GAN and a "
                 "mixture-of-Gaussians GAN with and without the drift regularisers; the drift-adjusted learning "
                 f"rate against constant and cosine steps. Writes OUT/{JSON_NAME}, OUT/drift.md and figures."),
    config=Config, run=_run, presets=PRESETS, preset_flags=True,
    help="discretisation drift: flows, edge of stability, IGR bias, GANs, DAL",
)
main = COMMAND.main

if __name__ == "__main__":
    raise SystemExit(main())
