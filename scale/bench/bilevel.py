r"""BO-REP against the stochastic bilevel baselines at equal oracle budgets: data hyper-cleaning (a linear and a
recurrent lower level), L2 HPO and hyper-representation learning.

``python -m scale.bench.bilevel`` runs the tasks of :mod:`optlib.problems.bilevel_tasks` (``--tasks``):

``cleaning``
    data hyper-cleaning on scikit-learn digits, ``--flip`` (35 %) of the training labels flipped; x = per-example
    weight logits, lower level = L2-regularized linear softmax regression on the weighted training loss, upper =
    clean validation cross-entropy. Metric: clean-test accuracy.
``l2``
    per-feature L2 coefficients (log scale) of logistic regression on breast_cancer; upper = validation loss.
    Metric: test accuracy (and loss in the JSON).
``text-cleaning``
    the paper's regime: hyper-cleaning of a recurrent play classifier (word embedding, one-layer ``torch.nn.RNN``,
    linear head; the lower variable is all its parameters) on tiny-shakespeare lines, Coriolanus against Romeo and
    Juliet, ``--text-n-train`` (2000) training lines with ``--flip`` of the labels flipped, 500 clean validation
    lines, 1000 test lines. The corpus is the one ``scale.data.load_corpus("shakespeare")`` ships. Metric: clean-test
    accuracy.
``representation``
    hyper-representation on digits: x = a shared tanh encoder (64 -> 16), y = ten one-vs-rest logistic heads
    trained with L2 on the training split, upper = the heads' validation loss. Metric: ten-class test accuracy.

Methods (:data:`optlib.bilevel.driver.METHODS`): ``bo-rep`` (paper variant) against ``stocbio``, ``ttsa``,
``soba``, ``ma-soba``, ``sustain`` and ``slip``. SABA is left out: it needs batches of one index (SAGA tables),
a different sampler than the other methods share. Every run stops at the same budget of gradient-equivalent
oracle calls (``oracle_calls`` of the trace: upper gradients + lower gradients + Hessian- and Jacobian-vector
products), ``--budget``; BO-REP's ``init_steps`` lower steps count.

**Fixed settings** (not tuned, the same for every method): lower step ``lower_lr`` and Neumann step ``alpha`` of
:data:`LOWER_STEPS` per task (cleaning, l2: 1 = ``1/l_g1`` for the normalized rows, where ``l_g1 <= 1 + reg``;
representation: 1, with the largest full-batch lower-Hessian eigenvalue
measured at about 0.4 at the end of runs, below the bound ``(width + 1)/4``; text-cleaning: SGD step 1
and ``alpha = 0.25``, below ``1/2.4``, 2.4 being the largest full-batch lower-Hessian eigenvalue measured by power
iteration on SGD-trained points — the recurrent lower level has no known ``l_g1``), Neumann series with 10 terms,
BO-REP ``period = 2``, ``refresh_steps = 10``, ``init_steps = 50``, ``beta = 0.9``; SLIP ``beta = 0.9``.

**Tuning.** Each method's upper step (``eta`` for the normalized methods BO-REP and SLIP, ``lr_x`` for the others)
is chosen from the grid of :data:`GRIDS` (``--grid-size`` 5 values ``centre * 10^{-1, -1/2, 0, 1/2, 1}``;
centres in :data:`GRIDS`) on a separate seed
(``--tune-seed``: both the data split and the run's generator), by the final validation loss at the budget; the
chosen value then runs on ``--seeds`` seeds (each seed: its own split, flipped labels and batches).

Outputs in ``--out``: ``bilevel.json`` (configuration, provenance, the tuning runs, every trace's
(oracle calls, time, test accuracy) curve, the summary), ``bilevel.md`` (the table), and per task
``bilevel_<task>_oracles.png`` / ``bilevel_<task>_time.png`` (median over seeds and min–max band). The test
accuracy is evaluated every ``--eval-every`` iterations (1 by default, 4 in the ``text`` preset) and at the budget;
the driver's ``time`` field excludes the time spent in these evaluations. The table:
final test accuracy mean ± standard deviation and [min, max] over seeds; oracle calls to reach the best
baseline's mean final accuracy (median over seeds of the first iteration whose test accuracy reaches it,
not smoothed, so a transient peak counts; ``—`` when fewer than half the seeds reach it).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from optlib.bilevel.driver import run_bilevel
from optlib.problems.bilevel_tasks import TASKS
from scale.cli import Command, config_to_dict, option
from scale.data import load_corpus

from .common import (
    ReportContext,
    SectionResult,
    fmt_num,
    md_table,
    provenance,
    pyplot,
    register_section,
    save_json,
    spread,
    thread_limit,
)

JSON_NAME = "bilevel.json"
METHOD_NAMES = ("bo-rep", "stocbio", "ttsa", "soba", "ma-soba", "sustain", "slip")
PROPOSED = "bo-rep"
NORMALIZED = ("bo-rep", "slip")  # step option "eta"; the rest "lr_x"
NEUMANN = ("bo-rep", "stocbio", "ttsa", "sustain", "slip")  # take hypergrad_options
# task -> grid centres ("eta": BO-REP and SLIP, "lr_x": the others, or a method's own); the grid is
# centre * 10^{-1 .. 1} (grid_size values). The l2 centres of stocbio, ttsa and sustain are 30x the others': a first
# run with centre 100 chose the grid's top (1000) for all three.
GRIDS = {"cleaning": {"eta": 3.0, "lr_x": 1000.0},
         "l2": {"eta": 0.3, "lr_x": 100.0, "stocbio": 3000.0, "ttsa": 3000.0, "sustain": 3000.0},
         "text-cleaning": {"eta": 1.0, "lr_x": 1000.0},
         "representation": {"eta": 3.0, "lr_x": 100.0}}
# task -> (lower SGD step, Neumann alpha); see the module docstring for where each comes from
LOWER_STEPS = {"cleaning": (1.0, 1.0), "l2": (1.0, 1.0), "text-cleaning": (1.0, 0.25), "representation": (1.0, 1.0)}
_RUN_ONLY = ("out",)


@dataclass
class Config:
    tasks: tuple[str, ...] = option(("cleaning", "l2"), "tasks to run", choices=tuple(TASKS))
    methods: tuple[str, ...] = option(METHOD_NAMES, "methods compared", choices=METHOD_NAMES)
    seeds: int = option(5, "evaluation seeds (each: split, flipped labels, batches)")
    tune_seed: int = option(1000, "seed of the step-size tuning runs")
    grid_size: int = option(5, "step sizes per method in the tuning grid (log-spaced over two decades)")
    budget: int = option(4000, "gradient-equivalent oracle calls per run")
    flip: float = option(0.35, "fraction of flipped training labels (cleaning)")
    n_train: int = option(600, "training examples (cleaning)")
    text_n_train: int = option(2000, "training lines (text-cleaning)")
    batch: int = option(64, "minibatch size (both levels)")
    eval_every: int = option(1, "evaluate the test accuracy every this many iterations (and at the budget)")
    threads: int = option(1, "torch threads (0 keeps torch's choice)")
    out: Path = option(Path("reports/bilevel"), f"output folder for {JSON_NAME} and the figures")

    def validate(self) -> None:
        for name in ("seeds", "grid_size", "budget", "n_train", "text_n_train", "batch", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if not 0.0 <= self.flip < 1.0:
            raise ValueError(f"--flip must lie in [0, 1), got {self.flip}.")
        if PROPOSED not in self.methods or len(self.methods) < 2:
            raise ValueError("--methods needs bo-rep and at least one baseline")


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"seeds": 2, "grid_size": 3, "budget": 600, "methods": ("bo-rep", "stocbio", "soba"),
              "tasks": ("cleaning",), "n_train": 300},
    # the recurrent task at a budget where its lower level learns (6000 calls, 10–15 s a run on one free core),
    # against the baselines of spec 30's CPU plan (StocBiO, MA-SOBA)
    "text": {"seeds": 5, "grid_size": 3, "budget": 6000, "methods": ("bo-rep", "stocbio", "ma-soba"),
             "tasks": ("text-cleaning",), "eval_every": 4},
    "smoke": {"seeds": 1, "grid_size": 1, "budget": 300, "methods": ("bo-rep", "soba"), "tasks": ("cleaning",),
              "n_train": 200},
}


def grid(task: str, method: str, size: int) -> list[float]:
    g = GRIDS[task]
    centre = g.get(method, g["eta" if method in NORMALIZED else "lr_x"])
    if size == 1:
        return [centre]
    return [float(f"{v:.3g}") for v in centre * np.logspace(-1.0, 1.0, size)]


def method_options(task: str, method: str, step: float) -> dict[str, Any]:
    lower_lr, alpha = LOWER_STEPS[task]
    opts: dict[str, Any] = {"lower_lr": lower_lr, ("eta" if method in NORMALIZED else "lr_x"): step}
    if method in NEUMANN:
        opts["hypergrad_options"] = {"alpha": alpha, "steps": 10}
    if method == PROPOSED:
        opts.update(period=2, refresh_steps=10, init_steps=50, beta=0.9)
    return opts


@functools.lru_cache(maxsize=1)
def shakespeare_text() -> str:
    """The tiny-shakespeare corpus as one string (both splits of ``scale.data.load_corpus``, in order)."""
    corpus = load_corpus("shakespeare")
    chars = np.array(corpus.vocab)
    return "".join(chars[np.concatenate([corpus.train, corpus.val])])


def make_task(cfg: Config, task: str, seed: int):
    kw: dict[str, Any] = {"seed": seed, "batch": cfg.batch}
    if task == "cleaning":
        kw.update(flip=cfg.flip, n_train=cfg.n_train)
    elif task == "text-cleaning":
        return TASKS[task](shakespeare_text(), flip=cfg.flip, n_train=cfg.text_n_train, **kw)
    return TASKS[task](**kw)


def run_one(cfg: Config, task: str, method: str, step: float, seed: int) -> dict[str, Any]:
    """One run to the budget: the (oracle calls, time, test accuracy, validation loss) curve."""
    bt = make_task(cfg, task, seed)

    def stop(intermediate_result: Any) -> bool:
        rec = intermediate_result.trace[-1]
        if rec["oracle_calls"] >= cfg.budget and "test_acc" not in rec:  # the last point is always evaluated
            rec.update(bt.evaluate(intermediate_result.x, intermediate_result.y))
        return rec["oracle_calls"] >= cfg.budget

    t0 = time.perf_counter()
    res = run_bilevel(bt.problem, method, iterations=cfg.budget, seed=seed, evaluate=bt.evaluate,
                      eval_every=cfg.eval_every, callback=stop, **method_options(task, method, step))
    wall = time.perf_counter() - t0
    tr = [r for r in res.trace if "test_acc" in r]
    curve = {k: [float(r[k]) for r in tr] for k in ("oracle_calls", "time", "test_acc", "val_loss")}
    return {"task": task, "method": method, "step": step, "seed": seed, "status": int(res.status),
            "message": res.message, "wall": wall, "curve": curve, "final_acc": curve["test_acc"][-1],
            "final_val_loss": curve["val_loss"][-1]}


def first_reach(curve: dict[str, list[float]], target: float) -> float | None:
    for calls, acc in zip(curve["oracle_calls"], curve["test_acc"]):
        if acc >= target - 1e-12:
            return calls
    return None


def run_benchmark(cfg: Config, log: Any = print) -> dict[str, Any]:
    cfg.validate()
    conf = {k: v for k, v in config_to_dict(cfg).items() if k not in _RUN_ONLY}
    out: dict[str, Any] = {"config": conf, "provenance": provenance(cfg.threads), "tasks": {}}
    n_runs = len(cfg.methods) * (cfg.grid_size + cfg.seeds)
    with thread_limit(cfg.threads or None):
        for task in cfg.tasks:
            bar = tqdm(total=n_runs, desc=f"bilevel {task}", leave=False, disable=log is not print)

            def one(m: str, step: float, seed: int) -> dict[str, Any]:
                r = run_one(cfg, task, m, step, seed)
                bar.update(1)
                return r

            tuning, chosen, edges = [], {}, []
            for m in cfg.methods:
                runs = [one(m, s, cfg.tune_seed) for s in grid(task, m, cfg.grid_size)]
                ok = [r for r in runs if math.isfinite(r["final_val_loss"])]
                best = min(ok or runs, key=lambda r: r["final_val_loss"])
                chosen[m] = best["step"]
                if len(runs) > 1 and best["step"] in (runs[0]["step"], runs[-1]["step"]):
                    edges.append(m)
                tuning += [{k: r[k] for k in ("method", "step", "final_val_loss", "final_acc", "status")} for r in runs]
                log(f"[{task}] tuned {m}: step {best['step']:g} (val loss {best['final_val_loss']:.4f})")
            runs = {m: [one(m, chosen[m], s) for s in range(cfg.seeds)] for m in cfg.methods}
            bar.close()
            out["tasks"][task] = {"tuning": tuning, "chosen": chosen, "grid_edge": edges, "runs": runs,
                                  "summary": summarize(runs), "info": make_task(cfg, task, 0).info}
            log(format_table(out["tasks"][task]["summary"]))
    return out


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    final = {m: [r["final_acc"] for r in rs] for m, rs in runs.items()}
    means = {m: float(np.mean(v)) for m, v in final.items()}
    baselines = [m for m in runs if m != PROPOSED]
    best = max(baselines, key=lambda m: means[m])
    target = means[best]
    rows = {}
    for m, rs in runs.items():
        hits = [first_reach(r["curve"], target) for r in rs]
        reached = [h for h in hits if h is not None]
        rows[m] = {"mean": means[m], "std": float(np.std(final[m])), "spread": spread(final[m]),
                   "final": final[m], "hits": hits,
                   "calls_to_target": float(np.median(reached)) if 2 * len(reached) >= len(hits) else None,
                   "wall": float(np.mean([r["wall"] for r in rs]))}
    verdict = None
    c_p, c_b = rows[PROPOSED]["calls_to_target"], rows[best]["calls_to_target"]
    if c_p is not None and c_b is not None:
        verdict = {"proposed_calls": c_p, "baseline_calls": c_b, "ratio": c_p / c_b}
    return {"best_baseline": best, "target": target, "rows": rows, "verdict": verdict}


def format_table(summary: dict[str, Any]) -> str:
    rows = []
    for m, r in summary["rows"].items():
        s = r["spread"]
        rows.append([m + (" (best baseline)" if m == summary["best_baseline"] else ""),
                     f"{r['mean']:.4f} ± {r['std']:.4f}", f"[{fmt_num(s['min'], 4)}, {fmt_num(s['max'], 4)}]",
                     fmt_num(r["calls_to_target"]), f"{sum(h is not None for h in r['hits'])}/{len(r['hits'])}",
                     f"{r['wall']:.2f}"])
    text = md_table(["method", "final test acc (mean ± std)", "[min, max]",
                     f"oracle calls to {summary['target']:.4f}", "seeds reaching", "wall s / run"], rows)
    v = summary["verdict"]
    if v is not None:
        text += (f"\n\nBO-REP reaches the best baseline's ({summary['best_baseline']}) mean final accuracy in "
                 f"{v['proposed_calls']:.0f} oracle calls against {v['baseline_calls']:.0f} "
                 f"(ratio {v['ratio']:.2f}).")
    else:
        text += f"\n\nBO-REP or {summary['best_baseline']} does not reach the target on half the seeds."
    return text


def plot(task: str, runs: dict[str, list[dict[str, Any]]], path_prefix: str) -> list[str]:
    plt = pyplot()
    paths = []
    for axis, label in (("oracle_calls", "oracle calls"), ("time", "wall-clock s")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for m, rs in runs.items():
            hi = max(max(r["curve"][axis]) for r in rs)
            xs = np.linspace(0, hi, 200)
            ys = np.array([np.interp(xs, r["curve"][axis], r["curve"]["test_acc"]) for r in rs])
            ax.plot(xs, np.median(ys, 0), label=m, lw=2 if m == PROPOSED else 1)
            ax.fill_between(xs, ys.min(0), ys.max(0), alpha=0.15)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (clean labels)")
        ax.set_title(f"{task}: median over seeds, min-max band")
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = f"{path_prefix}_{axis.replace('oracle_calls', 'oracles')}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def markdown(result: dict[str, Any]) -> str:
    parts = []
    for task, t in result["tasks"].items():
        parts.append(f"**{task}** ({t['info']['dataset']}, {t['info']})  \nchosen steps: {t['chosen']}; "
                     f"chosen at a grid edge: {', '.join(t['grid_edge']) or 'none'}\n\n"
                     + format_table(t["summary"]))
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------- report section
@register_section("bilevel", "Bilevel: BO-REP against the baselines", order=95)
def report_section(ctx: ReportContext) -> SectionResult:
    cfg = Config(**PRESETS["smoke" if ctx.quick else "quick"], threads=ctx.config.threads or 1)
    res = run_benchmark(cfg, log=lambda *_: None)
    figs = []
    for task, t in res["tasks"].items():
        path, rel = ctx.figure(f"bilevel_{task}")
        plot(task, t["runs"], path)
        figs += [f"{rel}_oracles.png", f"{rel}_time.png"]
    text = (f"Equal budget of {cfg.budget} oracle calls, {cfg.seeds} seed(s), steps tuned on a grid of "
            f"{cfg.grid_size} (preset {'smoke' if ctx.quick else 'quick'}; `python -m scale.bench.bilevel` for the "
            "full run).\n\n" + markdown(res))
    return SectionResult(text, figs)


# ---------------------------------------------------------------------------------------- CLI
def _run(cfg: Config) -> int:
    result = run_benchmark(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    for task, t in result["tasks"].items():
        plot(task, t["runs"], str(cfg.out / f"bilevel_{task}"))
    (cfg.out / "bilevel.md").write_text(markdown(result) + "\n", encoding="utf-8")
    print(f"results written to {save_json(result, cfg.out, JSON_NAME)}")
    return 0


COMMAND = Command(
    prog="python -m scale.bench.bilevel",
    description=("BO-REP against StocBiO, TTSA, SOBA, MA-SOBA, SUSTAIN and SLIP at equal oracle budgets on data "
                 "hyper-cleaning (digits with a linear lower level; tiny-shakespeare lines with a recurrent one), "
                 "per-feature L2 HPO (breast_cancer) and hyper-representation (digits); steps tuned on a "
                 f"separate seed; writes OUT/{JSON_NAME}, OUT/bilevel.md and figures."),
    config=Config, run=_run, presets=PRESETS, preset_flags=True,
)
main = COMMAND.main

if __name__ == "__main__":
    raise SystemExit(main())
