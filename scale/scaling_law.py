r"""The scaling law with learning-rate annealing: fit the loss curve of a run from its LR schedule.

Tissue, Wang & Wang (2024), "Scaling Law with Learning Rate Annealing", arXiv:2408.11029 (NeurIPS),
state that the loss at step :math:`s` of a language-model run follows

.. math::

    L(s) = L_0 + A\,S_1(s)^{-\alpha} - C\,S_2(s),

    S_1(s) = \sum_{i \le s} \eta_i \quad\text{(forward area)},\qquad
    S_2(s) = \sum_{i \le s} m_i,\quad m_i = \lambda\, m_{i-1} + (\eta_{i-1} - \eta_i),\ m_0 = 0
    \quad\text{(annealing area with momentum)},

with :math:`\eta_i` the learning rate of step :math:`i` and the decay factor :math:`\lambda` about 0.999
(the paper discusses 0.99 to 0.999). :math:`S_1` plays the role of the amount of data in a Chinchilla-style
power law; :math:`S_2` is the extra loss drop that annealing brings, delayed by the momentum :math:`m`.

What we took from the paper and the authors' released fitting script (facts, not code):

* :math:`S_1` = cumulative sum of the learning rates, :math:`S_2` = cumulative sum of :math:`m` with
  :math:`m_0 = 0` (:func:`areas`).
* Warmup: the learning rate of the warmup steps is taken as the peak learning rate when :math:`S_1` and
  :math:`S_2` are computed (paper §3.4; otherwise the rising warmup makes :math:`m` negative for about
  :math:`1/(1-\lambda)` steps). ``peak_warmup=True`` does this: the initial non-decreasing run of the
  schedule up to its first maximum is replaced by that maximum.
* Fit: minimise :math:`\sum \operatorname{Huber}_\delta(\log L_{\text{obs}} - \log L_{\text{pred}})` with
  :math:`\delta = 10^{-3}` over all points of one or two runs (typically constant + cosine), with
  L-BFGS-B, parameters bounded below by 0, started from several initial points.

Our choices: the starting points come from non-negative least squares (the law is linear in
:math:`L_0, A, C` for fixed :math:`\alpha`; a grid of :math:`\alpha`), instead of the authors' grid over all
four parameters; the areas are computed internally in units of the largest learning rate (the returned
:math:`A, C` are in the units of the given learning rates); the objective is divided by
:math:`\delta^2 N` so that L-BFGS-B's tolerances do not depend on the number of points; the first
``skip`` steps of each run are left out (default: the warmup, and at least 5 % of the run), because the
power law describes the curve only away from step 0.

Run ``python -m scale.scaling_law --fit run1.jsonl [run2.jsonl] --predict run3.jsonl [--plot out.png]``
on JSONL metrics files (one object per line with ``step``, ``lr`` and ``loss``) to fit on some runs and
report the prediction error on others.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize, nnls
from scipy.signal import lfilter

__all__ = [
    "AnnealingLaw",
    "areas",
    "peak_warmup_lrs",
    "fit",
    "load_metrics",
    "prediction_error",
    "main",
]

DEFAULT_DECAY_FACTOR = 0.999
DEFAULT_HUBER_DELTA = 1e-3
DEFAULT_SKIP_FRACTION = 0.05
_ALPHA_GRID = np.linspace(0.05, 1.5, 30)
_N_STARTS = 3


# ---------------------------------------------------------------------------------------------- areas
def _as_lrs(lrs: Any) -> np.ndarray:
    a = np.asarray(lrs, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"learning rates must be a non-empty 1-D sequence, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError("learning rates must be finite and non-negative")
    return a


def _check_decay_factor(decay_factor: float) -> float:
    if isinstance(decay_factor, bool) or not isinstance(decay_factor, (int, float)) or not 0.0 <= decay_factor < 1.0:
        raise ValueError(f"decay_factor (lambda) must be in [0, 1), got {decay_factor!r}")
    return float(decay_factor)


def areas(lrs: Sequence[float] | np.ndarray,
          decay_factor: float = DEFAULT_DECAY_FACTOR) -> tuple[np.ndarray, np.ndarray]:
    r"""Forward area :math:`S_1` and annealing area :math:`S_2` after every step (Tissue et al. 2024, arXiv:2408.11029).

    .. math::

        S_1(s) = \sum_{i=0}^{s} \eta_i, \qquad
        m_0 = 0,\quad m_i = \lambda m_{i-1} + (\eta_{i-1} - \eta_i), \qquad
        S_2(s) = \sum_{i=0}^{s} m_i.

    Parameters
    ----------
    lrs : array_like
        :math:`\eta_0, \eta_1, \dots`, the learning rate of every step, from step 0.
    decay_factor : float
        :math:`\lambda \in [0, 1)`.

    Returns
    -------
    S1, S2 : numpy.ndarray
        Arrays of the same length as ``lrs``.
    """
    eta = _as_lrs(lrs)
    lam = _check_decay_factor(decay_factor)
    s1 = np.cumsum(eta)
    drop = np.zeros_like(eta)
    drop[1:] = eta[:-1] - eta[1:]
    m = lfilter([1.0], [1.0, -lam], drop)  # m_i = lam * m_{i-1} + drop_i, m_0 = drop_0 = 0
    return s1, np.cumsum(m)


def peak_warmup_lrs(lrs: Sequence[float] | np.ndarray) -> np.ndarray:
    """The learning rates with the warmup replaced by the peak (Tissue et al. 2024, §3.4): if the schedule
    rises monotonically to its first maximum at step ``w``, steps ``0 .. w-1`` get the value of step ``w``.
    Anything else is returned unchanged."""
    eta = _as_lrs(lrs).copy()
    w = int(np.argmax(eta))
    if w > 0 and np.all(np.diff(eta[: w + 1]) >= 0):
        eta[:w] = eta[w]
    return eta


def _warmup_length(eta: np.ndarray) -> int:
    w = int(np.argmax(eta))
    return w if w > 0 and np.all(np.diff(eta[: w + 1]) >= 0) else 0


# ---------------------------------------------------------------------------------------------- runs
@dataclass
class _Run:
    grid_lrs: np.ndarray  # learning rate of every step 0..last
    steps: np.ndarray  # steps with a loss
    losses: np.ndarray | None


def _run(lrs: Any, losses: Any | None, steps: Any | None) -> _Run:
    eta = _as_lrs(lrs)
    if losses is not None:
        loss = np.asarray(losses, dtype=np.float64)
        if loss.shape != eta.shape:
            raise ValueError(f"losses ({loss.shape}) and learning rates ({eta.shape}) must have the same length")
    else:
        loss = None
    if steps is None:
        return _Run(eta, np.arange(eta.size), loss)
    st = np.asarray(steps)
    if st.shape != eta.shape or st.dtype.kind not in "ui":
        raise ValueError("steps must be integers, one per learning rate")
    if st[0] < 0 or np.any(np.diff(st) <= 0):
        raise ValueError("steps must be non-negative and strictly increasing")
    grid = np.interp(np.arange(int(st[-1]) + 1), st, eta)  # linear between logged steps, held before the first
    return _Run(grid, st.astype(np.int64), loss)


def _areas_at(run: _Run, decay_factor: float, peak_warmup: bool) -> tuple[np.ndarray, np.ndarray]:
    eta = peak_warmup_lrs(run.grid_lrs) if peak_warmup else run.grid_lrs
    s1, s2 = areas(eta, decay_factor)
    return s1[run.steps], s2[run.steps]


def _skip_steps(run: _Run, skip: int | None) -> int:
    if skip is not None:
        if isinstance(skip, bool) or not isinstance(skip, (int, np.integer)) or skip < 0:
            raise ValueError(f"skip must be a non-negative number of steps, got {skip!r}")
        return int(skip)
    return max(_warmup_length(run.grid_lrs), int(math.ceil(DEFAULT_SKIP_FRACTION * run.grid_lrs.size)))


def _normalize_runs(runs: Sequence[Any], steps: Sequence[Any] | None) -> list[_Run]:
    if isinstance(runs, tuple) and len(runs) in (2, 3) and np.ndim(runs[0]) == 1:
        runs = [runs]
    if not runs:
        raise ValueError("fit needs at least one run (lrs, losses)")
    if steps is not None and len(steps) != len(runs):
        raise ValueError(f"steps has {len(steps)} entries for {len(runs)} runs")
    out = []
    for k, r in enumerate(runs):
        if len(r) == 3:
            if steps is not None:
                raise ValueError("give steps either inside the runs (steps, lrs, losses) or as steps=, not both")
            st, lrs, losses = r
        elif len(r) == 2:
            lrs, losses = r
            st = None if steps is None else steps[k]
        else:
            raise ValueError("each run is (lrs, losses) or (steps, lrs, losses)")
        out.append(_run(lrs, losses, st))
    return out


# ---------------------------------------------------------------------------------------------- the law
@dataclass
class AnnealingLaw:
    r""":math:`L(s) = L_0 + A\,S_1(s)^{-\alpha} - C\,S_2(s)` (Tissue et al. 2024, arXiv:2408.11029: the
    law of the abstract).

    ``A`` and ``C`` are in the units of the learning rates the law was fitted on. ``peak_warmup``: compute
    the areas with the warmup at the peak learning rate (§3.4), as :func:`fit` does. ``info`` holds what
    the fit reports (objective, number of points, R² on the fitted points, starts).
    """

    L0: float
    A: float
    alpha: float
    C: float
    decay_factor: float = DEFAULT_DECAY_FACTOR
    peak_warmup: bool = True
    info: dict = field(default_factory=dict)

    def predict(self, lrs: Sequence[float] | np.ndarray, *, steps: Sequence[int] | None = None) -> np.ndarray:
        """Predicted loss after every step of a schedule (``lrs`` from step 0), or at ``steps`` when the
        learning rates are given at those logged steps only (linear interpolation in between)."""
        run = _run(lrs, None, steps)
        s1, s2 = _areas_at(run, self.decay_factor, self.peak_warmup)
        with np.errstate(divide="ignore"):
            return self.L0 + self.A * s1 ** (-self.alpha) - self.C * s2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    a = np.abs(r)
    value = np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
    return value, np.clip(r, -delta, delta)


def fit(runs: Sequence[Any], *, steps: Sequence[Any] | None = None, decay_factor: float = DEFAULT_DECAY_FACTOR,
        skip: int | None = None, huber_delta: float = DEFAULT_HUBER_DELTA, peak_warmup: bool = True,
        with_annealing: bool = True) -> AnnealingLaw:
    r"""Fit :math:`L_0, A, \alpha, C` to logged runs (Tissue et al. 2024: Huber loss on log residuals,
    L-BFGS-B, parameters :math:`\ge 0`).

    Parameters
    ----------
    runs : list
        ``[(lrs, losses), ...]`` with one entry per step from step 0, or ``(steps, lrs, losses)`` triples
        (what :func:`load_metrics` returns) when only some steps were logged. Non-finite losses are left out.
    steps : list of arrays, optional
        The logged steps of each ``(lrs, losses)`` run, if they are not ``0, 1, 2, ...``.
    decay_factor : float
        :math:`\lambda` of the annealing momentum.
    skip : int, optional
        Leave out the points of steps ``< skip`` of every run. Default: the warmup, and at least the first
        5 % of each run.
    huber_delta : float
        :math:`\delta` of the Huber loss on :math:`\log L_{\text{obs}} - \log L_{\text{pred}}`.
    peak_warmup : bool
        Compute the areas with the warmup at the peak learning rate (paper §3.4).
    with_annealing : bool
        ``False`` fixes :math:`C = 0` (the law without the annealing term: an ablation).

    Returns
    -------
    AnnealingLaw
    """
    lam = _check_decay_factor(decay_factor)
    if not isinstance(huber_delta, (int, float)) or isinstance(huber_delta, bool) or not huber_delta > 0:
        raise ValueError(f"huber_delta must be positive, got {huber_delta!r}")
    norm_runs = _normalize_runs(runs, steps)
    eta_ref = max(float(r.grid_lrs.max()) for r in norm_runs)
    if eta_ref <= 0:
        raise ValueError("every learning rate is 0: the forward area S1 is 0 and the law is undefined")
    s1_parts, s2_parts, y_parts = [], [], []
    for r in norm_runs:
        s1, s2 = _areas_at(r, lam, peak_warmup)
        keep = (r.steps >= _skip_steps(r, skip)) & np.isfinite(r.losses) & (s1 > 0)
        if np.any(r.losses[keep] <= 0):
            raise ValueError("losses must be positive (the fit works on log L)")
        s1_parts.append(s1[keep] / eta_ref)
        s2_parts.append(s2[keep] / eta_ref)
        y_parts.append(r.losses[keep])
    x1, x2, y = (np.concatenate(p) for p in (s1_parts, s2_parts, y_parts))
    n_params = 4 if with_annealing else 3
    if y.size < n_params + 1:
        raise ValueError(f"only {y.size} usable points after skip={skip}; the law has {n_params} parameters")
    log_y = np.log(y)
    log_x1 = np.log(x1)
    delta = float(huber_delta)
    scale_obj = 1.0 / (delta * delta * y.size)

    # starting points: for fixed alpha the law is linear in (L0, A, C) -> non-negative least squares on
    # relative residuals (close to the log residuals of the objective)
    starts = []
    for alpha in _ALPHA_GRID:
        cols = [np.ones_like(x1), np.exp(-alpha * log_x1)]
        if with_annealing:
            cols.append(-x2)
        design = np.stack(cols, axis=1) / y[:, None]
        coef, res = nnls(design, np.ones_like(y))
        starts.append((res, alpha, coef))
    starts.sort(key=lambda t: t[0])

    def unpack(theta: np.ndarray) -> tuple[float, float, float, float]:
        l0, a, alpha = theta[:3]
        c = theta[3] if with_annealing else 0.0
        return l0, a, alpha, c

    best = None
    for _, alpha0, coef in starts[:_N_STARTS]:
        theta0 = np.array([coef[0], coef[1], alpha0] + ([coef[2]] if with_annealing else []), dtype=np.float64)
        floor = np.array([0.01 * y.mean(), 0.01 * y.mean(), 0.1]
                         + ([0.01 * y.mean() / max(x2.max(), 1e-12)] if with_annealing else []))
        scale = np.maximum(np.abs(theta0), floor)

        def objective(u: np.ndarray, scale: np.ndarray = scale) -> tuple[float, np.ndarray]:
            l0, a, alpha, c = unpack(u * scale)
            power = np.exp(-alpha * log_x1)
            pred = l0 + a * power - c * x2
            if np.any(pred <= 0):
                return 1e10, np.zeros_like(u)
            value, dh = _huber(log_y - np.log(pred), delta)
            w = -dh / pred  # d(huber)/d(pred)
            grad = [w.sum(), (w * power).sum(), (w * (-a * power * log_x1)).sum()]
            if with_annealing:
                grad.append((w * -x2).sum())
            return float(value.sum() * scale_obj), np.asarray(grad) * scale * scale_obj

        res = minimize(objective, theta0 / scale, jac=True, method="L-BFGS-B",
                       bounds=[(0.0, None)] * n_params,
                       options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-10, "maxcor": 20})
        if best is None or res.fun < best[0]:
            best = (float(res.fun), res.x * scale, alpha0, res)
    obj, theta, alpha0, res = best
    l0, a_n, alpha, c_n = unpack(theta)
    law = AnnealingLaw(L0=float(l0), A=float(a_n * eta_ref ** alpha), alpha=float(alpha), C=float(c_n / eta_ref),
                       decay_factor=lam, peak_warmup=bool(peak_warmup))
    pred = l0 + a_n * np.exp(-alpha * log_x1) - c_n * x2
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    law.info = {
        "objective": obj,
        "n_points": int(y.size),
        "n_runs": len(norm_runs),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
        "huber_delta": delta,
        "with_annealing": bool(with_annealing),
        "alpha_start": float(alpha0),
        "converged": bool(res.success),
        "message": str(res.message),
    }
    return law


def prediction_error(law: AnnealingLaw, lrs: Sequence[float] | np.ndarray, losses: Sequence[float] | np.ndarray,
                     skip: int | None = None, *, steps: Sequence[int] | None = None) -> dict[str, float]:
    """Absolute and relative errors of ``law.predict`` against observed losses, over the steps
    ``>= skip`` (default as in :func:`fit`): ``mean_abs``, ``max_abs``, ``mean_rel``, ``max_rel``, ``rmse``,
    ``final_abs`` / ``final_rel`` (the last point) and ``n``."""
    run = _run(lrs, losses, steps)
    pred = law.predict(run.grid_lrs)[run.steps]
    keep = (run.steps >= _skip_steps(run, skip)) & np.isfinite(run.losses)
    if not np.any(keep):
        raise ValueError("no points left to compare after skip")
    err = pred[keep] - run.losses[keep]
    rel = np.abs(err) / np.abs(run.losses[keep])
    return {
        "mean_abs": float(np.mean(np.abs(err))),
        "max_abs": float(np.max(np.abs(err))),
        "mean_rel": float(np.mean(rel)),
        "max_rel": float(np.max(rel)),
        "rmse": float(np.sqrt(np.mean(err * err))),
        "final_abs": float(abs(err[-1])),
        "final_rel": float(rel[-1]),
        "n": int(keep.sum()),
    }


# ---------------------------------------------------------------------------------------------- metrics files
def load_metrics(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, lr, loss)`` from a JSONL metrics file.

    Lines that are JSON objects with numeric ``step``, ``lr`` and ``loss`` are kept, unless their ``kind``
    is something other than ``"train"`` (evaluation lines, headers). Other lines are ignored; lines that are
    not JSON give a warning. A repeated step (a resumed run logs it again) keeps its last line. The result
    is sorted by step.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"metrics file not found: {p}")
    rows: dict[int, tuple[float, float]] = {}
    bad = 0
    with open(p, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if not isinstance(obj, dict) or obj.get("kind", "train") != "train":
                continue
            step, lr, loss = obj.get("step"), obj.get("lr"), obj.get("loss")
            if isinstance(lr, (list, tuple)) and lr:
                lr = lr[0]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (step, lr, loss)):
                continue
            rows[int(step)] = (float(lr), float(loss))
    if bad:
        warnings.warn(f"{p}: {bad} line(s) are not JSON and were skipped", stacklevel=2)
    if not rows:
        raise ValueError(f"{p} has no lines with numeric 'step', 'lr' and 'loss'")
    steps = np.array(sorted(rows), dtype=np.int64)
    lr = np.array([rows[s][0] for s in steps], dtype=np.float64)
    loss = np.array([rows[s][1] for s in steps], dtype=np.float64)
    return steps, lr, loss


# ---------------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scale.scaling_law",
        description="Fit the scaling law with LR annealing, L(s) = L0 + A*S1^-alpha - C*S2 (Tissue, Wang & Wang "
                    "2024, arXiv:2408.11029), on logged runs and predict other runs from their LR schedules alone. "
                    "Inputs are JSONL metrics files with 'step', 'lr' and 'loss' on each training line.",
    )
    p.add_argument("--fit", nargs="+", required=True, metavar="RUN.jsonl",
                   help="metrics file(s) to fit on (one or two runs, e.g. a constant and a cosine schedule)")
    p.add_argument("--predict", nargs="*", default=[], metavar="RUN.jsonl",
                   help="metrics file(s) whose loss is predicted from their lr column and compared")
    p.add_argument("--plot", metavar="OUT.png", help="write observed and predicted loss curves to this PNG")
    p.add_argument("--json", metavar="OUT.json", help="write the fitted law and the errors as JSON")
    p.add_argument("--decay-factor", type=float, default=DEFAULT_DECAY_FACTOR,
                   help="lambda of the annealing momentum m_i = lambda m_{i-1} + (eta_{i-1} - eta_i) (default 0.999)")
    p.add_argument("--skip", type=int, default=None,
                   help="leave out steps < SKIP when fitting and scoring (default: warmup, at least 5%% of a run)")
    p.add_argument("--huber-delta", type=float, default=DEFAULT_HUBER_DELTA,
                   help="delta of the Huber loss on log-loss residuals (default 1e-3)")
    p.add_argument("--no-peak-warmup", action="store_true",
                   help="use the logged warmup learning rates in S1/S2 instead of the peak (paper section 3.4)")
    return p


def _plot(path: str, curves: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, (label, steps, loss, pred) in enumerate(curves):
        ax.plot(steps, loss, color=f"C{k}", lw=0.8, alpha=0.6, label=f"{label} (observed)")
        ax.plot(steps, pred, color=f"C{k}", lw=1.5, ls="--", label=f"{label} (law)")
    finite = np.concatenate([c[2][np.isfinite(c[2])] for c in curves])
    if finite.size:
        lo, hi = np.percentile(finite, [0, 98])
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("L = L0 + A S1^-alpha - C S2 (Tissue et al. 2024)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        fit_data = {f: load_metrics(f) for f in args.fit}
        pred_data = {f: load_metrics(f) for f in args.predict}
        law = fit(list(fit_data.values()), decay_factor=args.decay_factor, skip=args.skip,
                  huber_delta=args.huber_delta, peak_warmup=not args.no_peak_warmup)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"fitted on {len(fit_data)} run(s), {law.info['n_points']} points: L0={law.L0:.6g} A={law.A:.6g} "
          f"alpha={law.alpha:.6g} C={law.C:.6g} (lambda={law.decay_factor}, R^2={law.info['r2']:.5f})")
    result: dict[str, Any] = {"law": law.to_dict(), "fit": list(fit_data), "errors": {}}
    curves = []
    for role, data in (("fit", fit_data), ("predict", pred_data)):
        for name, (steps, lr, loss) in data.items():
            err = prediction_error(law, lr, loss, steps=steps, skip=args.skip)
            result["errors"][name] = dict(err, role=role)
            print(f"{role:8s} {name}: mean rel err {100 * err['mean_rel']:.3f}%  max rel err "
                  f"{100 * err['max_rel']:.3f}%  final rel err {100 * err['final_rel']:.3f}%  ({err['n']} points)")
            curves.append((f"{Path(name).stem} [{role}]", steps, loss, law.predict(lr, steps=steps)))
    if args.plot:
        _plot(args.plot, curves)
        print(f"plot: {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float), encoding="utf-8")
        print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
