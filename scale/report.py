"""The theory-to-scale report: ``python -m scale.report`` (what ``make demo`` runs).

Writes ``<out>/report.md``, a self-contained ``<out>/report.html`` (figures inlined), the figures as
PNG under ``<out>/figures/``, and the raw results (``results.json``: one record per timed run in
benchopt's long format; ``curves.csv``: one row per curve point).

The report is a list of sections. Each section is a function ``section(ctx) -> SectionResult``
(Markdown plus the figures it wrote), registered in order with :func:`register_section`; later
features add their own sections the same way. Sections share expensive work through the
:class:`ReportContext` (the time-to-target comparison runs once and feeds the table, the convergence
plots and the performance profile). A section that raises is reported in place, the others still run,
and the command exits with status 1.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import importlib
import json
import math
import re
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from . import compare
from .records import json_safe

# ---------------------------------------------------------------------------------------- problems
# Report names -> constructors in optlib.problems (resolved lazily: constructing loads data).
DEFAULT_PROBLEMS = (
    "logreg-breast_cancer",
    "logreg-digits_binary",
    "logreg-synthetic",
    "softmax-digits",
    "log-sum-exp",
)
QUICK_PROBLEMS = ("logreg-breast_cancer",)


def available_problems() -> dict[str, Callable[[], Any]]:
    """Every problem name the report accepts: its own suite plus ``optlib.problems.library()``."""
    out = dict(compare.named_problems())
    try:
        from optlib.problems import library
    except ImportError:
        return out
    for name, ctor in library().items():
        out.setdefault(name, ctor)
    return out


def resolve_problems(
    names: Sequence[str], extra: Mapping[str, Callable[[], Any]] | None = None
) -> dict[str, Callable[[], Any]]:
    """Constructors for ``names`` (from ``extra`` first, then :func:`available_problems`)."""
    known = {**available_problems(), **(extra or {})}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown problem(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return {n: known[n] for n in names}


# ---------------------------------------------------------------------------------------- configuration
@dataclass
class ReportConfig:
    """What to run. ``mode`` is ``"quick"``, ``"default"`` or ``"full"``; the other fields override it."""

    out: Path = Path("reports/latest")
    mode: str = "default"
    problems: Sequence[str] | None = None
    solvers: Sequence[str] | None = None
    repeats: int | None = None
    target: float = compare.DEFAULT_TARGET
    time_limit: float | None = None
    repeat_budget: float | None = None
    sections: Sequence[str] | None = None
    html: bool = True
    threads: int | None = 1
    progress: bool = True
    # Problems supplied directly (name -> zero-argument constructor), e.g. by tests or by a caller with
    # its own problem set; they may be named in ``problems``.
    extra_problems: Mapping[str, Callable[[], Any]] | None = None

    # Per mode: problems, repeats, per-run time limit (s), per-pair repeat budget (s), quick theorems.
    MODES = {
        "quick": {"problems": QUICK_PROBLEMS, "repeats": 1, "time_limit": 10.0, "repeat_budget": 2.0,
                  "theorems_quick": True},
        "default": {"problems": DEFAULT_PROBLEMS, "repeats": compare.DEFAULT_REPEATS, "time_limit": 20.0,
                    "repeat_budget": 8.0, "theorems_quick": True},
        "full": {"problems": None, "repeats": compare.DEFAULT_REPEATS, "time_limit": 60.0,
                 "repeat_budget": 30.0, "theorems_quick": False},
    }

    def setting(self, key: str) -> Any:
        value = getattr(self, key, None)
        return self.MODES[self.mode][key] if value is None else value

    def problem_names(self) -> list[str]:
        names = self.setting("problems")
        if names is None:  # full: every problem the report knows that has a certified optimum
            names = list(available_problems())
        return list(names)


@dataclass
class SectionResult:
    """A section's Markdown body (without its heading) and the figures it wrote (paths relative to the report)."""

    markdown: str
    figures: list[str] = field(default_factory=list)


class ReportContext:
    """Shared state of one report run: configuration, output folders, and cached results."""

    def __init__(self, config: ReportConfig) -> None:
        self.config = config
        self.out = Path(config.out)
        self.fig_dir = self.out / "figures"
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        self.cache: dict[str, Any] = {}
        self.timings: dict[str, float] = {}

    def figure(self, name: str) -> tuple[str, str]:
        """``(path to write, path relative to the report)`` for a figure file name."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        return str(self.fig_dir / safe), f"figures/{safe}"

    def comparison(self) -> list[dict[str, Any]]:
        """The time-to-target records (run once per report)."""
        if "records" not in self.cache:
            cfg = self.config
            problems = resolve_problems(cfg.problem_names(), cfg.extra_problems)
            if cfg.mode == "full" and cfg.problems is None:
                problems = {k: v for k, v in problems.items() if _has_f_star(v)}
            self.cache["records"] = compare.run_comparison(
                problems,
                cfg.solvers,
                target=cfg.target,
                repeats=cfg.setting("repeats"),
                time_limit=cfg.setting("time_limit"),
                repeat_budget=cfg.setting("repeat_budget"),
                threads=cfg.threads,
                progress=cfg.progress,
            )
        return self.cache["records"]


def _has_f_star(ctor: Callable[[], Any]) -> bool:
    try:
        return ctor().f_star is not None
    except Exception:  # a problem that cannot build or certify is left out of the full run
        return False


# ---------------------------------------------------------------------------------------- section registry
@dataclass(frozen=True)
class Section:
    name: str
    title: str
    fn: Callable[[ReportContext], SectionResult]


SECTIONS: list[Section] = []


def register_section(name: str, title: str, *, before: str | None = None) -> Callable:
    """Decorator: add ``fn(ctx) -> SectionResult`` as a report section (appended, or before ``before``)."""

    def deco(fn: Callable[[ReportContext], SectionResult]) -> Callable[[ReportContext], SectionResult]:
        if any(s.name == name for s in SECTIONS):
            raise ValueError(f"report section '{name}' is already registered")
        sec = Section(name, title, fn)
        if before is None:
            SECTIONS.append(sec)
        else:
            idx = next((i for i, s in enumerate(SECTIONS) if s.name == before), None)
            if idx is None:
                raise ValueError(f"no report section '{before}' to insert before")
            SECTIONS.insert(idx, sec)
        return fn

    return deco


# ---------------------------------------------------------------------------------------- formatting
def fmt_num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:.{digits}g}"


def fmt_time(t: float) -> str:
    """Seconds as a short human string (``✗`` for a failure)."""
    if t is None or math.isinf(t) or math.isnan(t):
        return "✗"
    if t < 1e-3:
        return f"{t * 1e6:.0f} µs"
    if t < 1.0:
        return f"{t * 1e3:.3g} ms"
    return f"{t:.3g} s"


def md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- sections
@register_section("theorems", "Theorems checked on runs")
def section_theorems(ctx: ReportContext) -> SectionResult:
    theory = importlib.import_module("optlib.theory")

    # The regularized Newton family's statements, then Drop-Muon's (all of those bounds derived).
    checks = theory.theorem_table(quick=ctx.config.setting("theorems_quick")) + theory.dropmuon.dropmuon_table()
    rows = []
    for c in checks:
        details = dict(getattr(c, "details", None) or {})
        run = " on ".join(str(details[k]) for k in ("method", "problem") if k in details)
        rows.append([
            getattr(c, "name", ""), getattr(c, "statement", ""), run,
            fmt_num(getattr(c, "measured", None), 4), fmt_num(getattr(c, "bound", None), 4),
            fmt_num(getattr(c, "slack", None), 2), "✓" if getattr(c, "holds", False) else "✗ **fails**",
            getattr(c, "source", ""),
        ])
    n_hold = sum(bool(getattr(c, "holds", False)) for c in checks)
    text = (
        "Each row runs a method on a problem whose constants are known and compares the measured quantity "
        "with the statement's bound (by default `measured <= bound * (1 + slack)`; a check's own comparison "
        "is listed with its details in `optlib.theory`). Computed by `optlib.theory.theorem_table"
        f"(quick={ctx.config.setting('theorems_quick')})` and `optlib.theory.dropmuon.dropmuon_table()`. "
        f"**{n_hold} of {len(checks)} hold.**\n\n"
        + md_table(["check", "statement", "run", "measured", "bound", "slack", "holds", "source"], rows)
    )
    failing = [c for c in checks if not getattr(c, "holds", False)]
    if failing:
        text += "\n\nDetails of the failing checks:\n\n" + "\n".join(
            f"- **{md_escape(c.name)}**: "
            + md_escape(", ".join(f"{k} = {v}" for k, v in dict(getattr(c, "details", None) or {}).items()))
            for c in failing
        )
    return SectionResult(text)


@register_section("time-to-target", "Time to target: optlib against scipy")
def section_time_to_target(ctx: ReportContext) -> SectionResult:
    records = ctx.comparison()
    target = ctx.config.target
    table = compare.time_to_target_table(records)
    summary = compare.summarize(records)
    head = (
        f"Wall-clock time until the relative suboptimality (f(x_k) − f*)/(f(x0) − f*) first drops to "
        f"{target:g} (benchopt's relative suboptimality; AlgoPerf's time-to-target). Every solver starts "
        "from the same x0, gets the same counted oracles, and is stopped by the same callback; its own "
        "tolerances are set tight so that the callback stops it. Median over the timed repetitions after "
        "one warm-up run; the clock pauses inside the callback. Ratio = best optlib time / best scipy "
        "time (below 1: optlib is faster). Both sides ran in this process, one after the other.\n\n"
    )
    def best(name: str | None, t: float) -> str:
        return "none reached the target" if name is None or math.isinf(t) else f"{name} ({fmt_time(t)})"

    main_rows = [
        [r["problem"], fmt_num(r["dimension"]), best(r["best_optlib"], r["best_optlib_time"]),
         best(r["best_scipy"], r["best_scipy_time"]), fmt_num(r["ratio"], 3)]
        for r in table
    ]
    text = head + md_table(["problem", "n", "best optlib", "best scipy", "ratio optlib/scipy"], main_rows)
    solver_order = [s for s in compare.solvers() if any(s in r["times"] for r in table)]
    wide = [[r["problem"], *(fmt_time(r["times"][s]) if s in r["times"] else "—" for s in solver_order)]
            for r in table]
    text += "\n\nEvery solver's median time to target (✗: target not reached; —: not applicable):\n\n"
    text += md_table(["problem", *solver_order], wide)
    text += "\n\nPer run: iterations (callback calls), oracle calls up to the target, repetitions timed.\n"
    for r in table:
        rows = []
        for s in summary:
            if s["dataset_name"] != r["problem"]:
                continue
            rows.append([
                s["solver_name"], "yes" if s["reached"] else f"no ({s['stopped_by']})",
                fmt_time(s["time"]), f"{fmt_time(s['time_min'])} – {fmt_time(s['time_max'])}" if s["reached"] else "",
                s["iterations"], s["nfev"], s["njev"], s["nhev"], s["nhvp"], s["repetitions"],
            ])
        text += f"\n**{r['problem']}**\n\n" + md_table(
            ["solver", "reached", "median", "min – max", "iter", "nfev", "njev", "nhev", "nhvp", "reps"], rows) + "\n"
    text += "\nSolvers and their options:\n\n" + "\n".join(
        f"- `{s}`: {compare.get_solver(s).description}; options `{_options(compare.get_solver(s))}`"
        for s in solver_order
    )
    return SectionResult(text)


def _options(solver: compare.Solver) -> str:
    opts = dict(solver.options)
    if solver.oracle:
        opts["second-order oracle"] = solver.oracle
    return ", ".join(f"{k}={v}" for k, v in opts.items())


@register_section("convergence", "Convergence: relative suboptimality against time and iterations")
def section_convergence(ctx: ReportContext) -> SectionResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .profiles import solver_styles

    summary = compare.summarize(ctx.comparison())
    target = ctx.config.target
    styles = solver_styles(sorted({r["solver_name"] for r in summary}),
                           {r["solver_name"]: r["solver_family"] for r in summary})
    figures, parts = [], []
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for row in summary:
        by_problem.setdefault(row["dataset_name"], []).append(row)
    for problem, rows in by_problem.items():
        fig, (ax_t, ax_k) = plt.subplots(1, 2, figsize=(11.0, 5.0))
        for row in rows:
            st = styles[row["solver_name"]]
            rel = [max(v, 1e-17) for v in row["curve_rel"]]
            t = row["curve_time"]
            kw = {"marker": ".", "markersize": 3, "linewidth": 1.3, "label": row["solver_name"], **st}
            ax_t.plot(t[1:], rel[1:], **kw)
            ax_k.plot(row["curve_iter"], rel, **kw)
        for ax in (ax_t, ax_k):
            ax.set_yscale("log")
            ax.axhline(target, color="k", linewidth=0.8, linestyle=":")
            ax.grid(True, which="major", alpha=0.3)
            ax.set_ylabel("(f − f*) / (f(x0) − f*)")
        ax_t.set_xscale("log")
        ax_t.set_xlabel("time (s, log scale; median run)")
        ax_k.set_xscale("symlog", linthresh=10)
        ax_k.set_xlim(left=0)
        ax_k.set_xlabel("iteration (linear to 10, log beyond)")
        handles, labels = ax_k.get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=7, frameon=False)
        fig.suptitle(f"{problem}: optlib solid, scipy dashed; dotted line = target {target:g}")
        fig.tight_layout(rect=(0, 0.05 + 0.035 * math.ceil(len(labels) / 4), 1, 1))
        path, rel_path = ctx.figure(f"convergence_{problem}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        figures.append(rel_path)
        parts.append(f"![{problem}]({rel_path})")
    text = (
        "Relative suboptimality of the median timed run of each solver, against wall-clock time (left) and "
        "iterations (right); runs end at the target. scipy's trust-region methods count a rejected step as "
        "an iteration; optlib's methods count accepted steps only (their rejected trials cost oracle calls, "
        "shown in the tables above).\n\n" + "\n\n".join(parts)
    )
    return SectionResult(text, figures)


@register_section("profile", "Performance profile")
def section_profile(ctx: ReportContext) -> SectionResult:
    from . import profiles

    records = ctx.comparison()
    costs = compare.cost_table(records, "time")
    families = {r["solver_name"]: r["solver_family"] for r in records}
    path, rel_path = ctx.figure("performance_profile_time.png")
    profiles.plot_performance_profile(costs, path, title="Time to target", families=families)
    names = profiles.solver_names(costs)
    score = profiles.integrated_score(costs)
    rows = []
    for s in sorted(names, key=lambda s: -score[s]):
        rows.append([s, fmt_num(profiles.rho(costs, s, 1.0), 2), fmt_num(profiles.rho(costs, s, 2.0), 2),
                     fmt_num(profiles.rho(costs, s, math.inf), 2), fmt_num(score[s], 3)])
    text = (
        f"Dolan–Moré performance profile (Math. Program. 91, 2002) of time to target over the {len(costs)} "
        "problems of this run: ρ_s(τ) is the share of problems on which solver s is within a factor τ of the "
        "fastest; failures count as ∞. ρ(1) = share of wins, ρ(∞) = share solved. The score is AlgoPerf's "
        "integrated profile over τ ∈ [1, 4] (1 = fastest everywhere). Profiles depend on the solver set: "
        "adding or removing a solver can reorder the others.\n\n"
        f"![performance profile]({rel_path})\n\n"
        + md_table(["solver", "ρ(1)", "ρ(2)", "ρ(∞)", "score"], rows)
    )
    return SectionResult(text, [rel_path])


@register_section("muon", "Muon and Drop-Muon")
def section_muon(ctx: ReportContext) -> SectionResult:
    from . import dropmuon

    return dropmuon.report_section(ctx)


@register_section("training", "Training a small GPT: AdamW, Muon and Drop-Muon")
def section_training(ctx: ReportContext) -> SectionResult:
    from . import train_bench

    return train_bench.report_section(ctx)


@register_section("unlearning", "Gauss–Newton unlearning")
def section_unlearning(ctx: ReportContext) -> SectionResult:
    from . import unlearn

    return unlearn.report_section(ctx)


@register_section("curvature", "Curvature: GGN products and K-FAC overhead")
def section_curvature(ctx: ReportContext) -> SectionResult:
    from . import curvature_bench

    return curvature_bench.report_section(ctx)


@register_section("least-squares", "Least squares on the NIST StRD problems")
def section_least_squares(ctx: ReportContext) -> SectionResult:
    from . import least_squares_bench

    return least_squares_bench.report_section(ctx)


@register_section("provenance", "Machine and provenance")
def section_provenance(ctx: ReportContext) -> SectionResult:
    records = ctx.cache.get("records") or []
    prov = {k: v for k, v in records[0].items() if k.startswith(("version-", "platform", "env-", "git-", "run_date"))} \
        if records else compare.provenance()
    cfg = ctx.config
    rows = [[k, v] for k, v in prov.items()]
    rows += [
        ["mode", cfg.mode], ["problems", ", ".join(cfg.problem_names())],
        ["repeats", cfg.setting("repeats")], ["per-run time limit (s)", cfg.setting("time_limit")],
        ["per-pair repeat budget (s)", cfg.setting("repeat_budget")], ["target", cfg.target],
    ]
    rows += [[f"section time: {name}", f"{t:.1f} s"] for name, t in ctx.timings.items()]
    text = (
        "Timings are only comparable within one run: on a shared machine the load (see `env-loadavg`) moves "
        "every number, which is why the report gives ratios measured in the same process.\n\n"
        + md_table(["key", "value"], rows)
    )
    return SectionResult(text)


# ---------------------------------------------------------------------------------------- HTML
def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return out


def markdown_to_html(md: str, base: Path, title: str = "report") -> str:
    """A small renderer for the Markdown this module writes: headings, paragraphs, pipe tables, bullet
    lists, fenced code and images (inlined as base64 so the file stands alone)."""
    body: list[str] = []
    lines = md.split("\n")
    i = 0

    def image(alt: str, src: str) -> str:
        p = base / src
        if p.exists():
            src = "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii")
        return f'<img alt="{html.escape(alt)}" src="{src}">'

    def cells(line: str) -> list[str]:
        parts = re.split(r"(?<!\\)\|", line.strip().strip("|"))
        return [c.strip().replace("\\|", "|") for c in parts]

    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            body.append("<pre><code>" + html.escape("\n".join(lines[i + 1:j])) + "</code></pre>")
            i = j + 1
            continue
        m = re.match(r"^(#{1,6})\s+(.*)$", line)
        if m:
            level = len(m.group(1))
            anchor = re.sub(r"[^a-z0-9]+", "-", m.group(2).lower()).strip("-")
            body.append(f'<h{level} id="{anchor}">{_inline(m.group(2))}</h{level}>')
            i += 1
            continue
        m = re.match(r"^!\[([^\]]*)\]\(([^)]+)\)\s*$", line)
        if m:
            body.append(f"<p>{image(m.group(1), m.group(2))}</p>")
            i += 1
            continue
        if line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|(\s*:?-+:?\s*\|)+\s*$", lines[i + 1]):
            head = cells(line)
            j = i + 2
            rows = []
            while j < len(lines) and lines[j].startswith("|"):
                rows.append(cells(lines[j]))
                j += 1
            thead = "<thead><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in head) + "</tr></thead>"
            t = ["<table>", thead, "<tbody>"]
            t += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows]
            t.append("</tbody></table>")
            body.append("\n".join(t))
            i = j
            continue
        if re.match(r"^\s*[-*] ", line):
            items = []
            while i < len(lines) and re.match(r"^\s*[-*] ", lines[i]):
                item = re.sub(r"^\s*[-*] ", "", lines[i])
                items.append(f"<li>{_inline(item)}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
            continue
        para = []
        while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "```", "![")) \
                and not re.match(r"^\s*[-*] ", lines[i]):
            para.append(lines[i])
            i += 1
        if para:
            body.append(f"<p>{_inline(' '.join(para))}</p>")
        else:  # a line no rule consumed (e.g. a stray '|'): keep it as text
            body.append(f"<p>{_inline(lines[i])}</p>")
            i += 1
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
        "table{border-collapse:collapse;margin:0.6em 0;font-size:0.9em}"
        "th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}"
        "th{background:#f3f3f3}img{max-width:100%}code{background:#f5f5f5;padding:0 3px}"
    )
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# ---------------------------------------------------------------------------------------- driver
def write_results(ctx: ReportContext) -> list[str]:
    """Raw results beside the report (only when the comparison ran)."""
    records = ctx.cache.get("records")
    if not records:
        return []
    (ctx.out / "results.json").write_text(json.dumps(json_safe(records), indent=1))
    rows = compare.curve_rows(records)
    with open(ctx.out / "curves.csv", "w", newline="") as fh:
        if rows:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return ["results.json", "curves.csv"]


def build_report(config: ReportConfig) -> tuple[Path, list[str]]:
    """Run the selected sections and write the report; returns (path of report.md, failed section names)."""
    if config.mode not in ReportConfig.MODES:
        raise ValueError(f"mode must be one of {', '.join(ReportConfig.MODES)}, got {config.mode!r}")
    ctx = ReportContext(config)
    wanted = list(config.sections) if config.sections else [s.name for s in SECTIONS]
    unknown = [w for w in wanted if w not in {s.name for s in SECTIONS}]
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(s.name for s in SECTIONS)}")
    chosen = [s for s in SECTIONS if s.name in wanted]
    failed: list[str] = []
    parts: list[tuple[Section, SectionResult]] = []
    start = time.perf_counter()
    for sec in chosen:
        if config.progress:
            print(f"[report] {sec.name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            result = sec.fn(ctx)
        except Exception:
            failed.append(sec.name)
            tb = traceback.format_exc()
            print(f"[report] section '{sec.name}' failed:\n{tb}", file=sys.stderr)
            result = SectionResult(f"**This section failed.**\n\n```\n{tb.strip()}\n```")
        ctx.timings[sec.name] = time.perf_counter() - t0
        parts.append((sec, result))
    total = time.perf_counter() - start
    extra = write_results(ctx)
    header = [
        "# optlib: theory-to-scale report",
        "",
        f"Mode `{config.mode}`, target relative suboptimality {config.target:g}, "
        f"{len(config.problem_names())} problem(s); generated in {total:.0f} s by `python -m scale.report`.",
        "",
        "Contents: " + ", ".join(f"[{s.title}](#{re.sub(r'[^a-z0-9]+', '-', s.title.lower()).strip('-')})"
                                 for s, _ in parts),
    ]
    if failed:
        header += ["", f"**Failed sections: {', '.join(failed)}.**"]
    if extra:
        header += ["", "Raw results: " + ", ".join(f"`{e}`" for e in extra) + "."]
    body = []
    for sec, res in parts:
        body += ["", f"## {sec.title}", "", res.markdown.strip()]
    md = "\n".join(header + body) + "\n"
    md_path = ctx.out / "report.md"
    md_path.write_text(md)
    if config.html:
        (ctx.out / "report.html").write_text(markdown_to_html(md, ctx.out, "optlib report"))
    return md_path, failed


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scale.report",
        description=(
            "Write the theory-to-scale report: the theorem table, time to target of optlib's "
            "second-order methods against scipy's on the same oracles, convergence plots, a performance "
            "profile and the machine's provenance. Output: OUT/report.md, OUT/report.html, OUT/figures/*.png, "
            "OUT/results.json, OUT/curves.csv."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("reports/latest"), help="output folder (created if missing)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="smoke run: one small problem, one timed repetition, quick theorem checks (seconds)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="every library problem with a certified optimum, longer limits, full theorem checks "
                           "(tens of minutes: hard problems use their whole time limit per solver)")
    p.set_defaults(mode="default")
    p.add_argument("--problems", nargs="+", metavar="NAME", default=None,
                   help="problems to compare (overrides the mode's suite); default suite: "
                        + ", ".join(DEFAULT_PROBLEMS) + "; see --list")
    p.add_argument("--solvers", nargs="+", metavar="NAME", default=None,
                   help="solvers to compare (default: all registered); see --list")
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="timed repetitions per (problem, solver), after one warm-up; the median is reported "
                        f"(mode default: {compare.DEFAULT_REPEATS}, quick: 1)")
    p.add_argument("--target", type=float, default=compare.DEFAULT_TARGET,
                   help="relative suboptimality (f - f*)/(f(x0) - f*) that stops every solver")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="per-run limit; a run still short of the target then counts as a failure "
                        "(mode default: 20, quick: 10, full: 60)")
    p.add_argument("--repeat-budget", type=float, default=None, metavar="SECONDS",
                   help="stop repeating a (problem, solver) pair once its timed runs used this long "
                        "(at least one run; mode default: 8, quick: 2, full: 30)")
    p.add_argument("--sections", nargs="+", metavar="NAME", default=None,
                   help="sections to write, in registry order (default: all): "
                        + ", ".join(s.name for s in SECTIONS))
    p.add_argument("--threads", type=int, default=1,
                   help="threads for torch and for numpy/scipy's BLAS during the comparison; 0 keeps the "
                        "libraries' own choice. One thread keeps timings steady on a small shared machine "
                        "(a multi-threaded kernel stalls when a neighbour takes a core); recorded in the "
                        "provenance"),
    p.add_argument("--no-html", dest="html", action="store_false", help="write report.md only")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--list", action="store_true", help="list the known problems, solvers and sections, then exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.list:
        print("problems:", ", ".join(available_problems()))
        print("solvers: ", ", ".join(compare.solvers()))
        print("sections:", ", ".join(s.name for s in SECTIONS))
        return 0
    if args.repeats is not None and args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    config = ReportConfig(
        out=args.out, mode=args.mode, problems=args.problems, solvers=args.solvers, repeats=args.repeats,
        target=args.target, time_limit=args.time_limit, repeat_budget=args.repeat_budget,
        sections=args.sections, html=args.html, threads=args.threads or None, progress=args.progress,
    )
    try:
        for s in args.solvers or ():
            compare.get_solver(s)
        resolve_problems(config.problem_names())
        md_path, failed = build_report(config)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {md_path}" + (f" (failed sections: {', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
