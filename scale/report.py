"""The theory-to-scale report: ``python -m scale.report`` (``optlib-report``; what ``make demo`` runs).

Writes ``<out>/report.md``, a self-contained ``<out>/report.html`` (figures inlined), the figures as PNG under
``<out>/figures/``, and the raw files the sections leave beside it (the second-order comparison's
``results.json``, one record per timed run in benchopt's long format, and ``curves.csv``).

The report is the top layer of ``scale``: it names no benchmark. Every module of :mod:`scale.bench` registers
its sections with :func:`scale.bench.common.register_section`; :func:`load_sections` imports the package's
modules and the report runs the registered sections in their order. Sections share expensive work through the
:class:`~scale.bench.common.ReportContext` cache. A section that raises is reported in place, the others still
run, and the command exits with status 1.
"""

from __future__ import annotations

import base64
import html
import importlib
import pkgutil
import re
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import scale.bench
from scale.bench.common import (
    LISTINGS,
    ReportContext,
    Section,
    SectionResult,
    md_table,
    provenance,
    register_section,
    sections,
)
from scale.cli import Command, config_to_dict, did_you_mean, option

MODES = ("quick", "default", "full")


# ---------------------------------------------------------------------------------------- configuration
@dataclass
class ReportConfig:
    """What the report runs; ``--quick`` and ``--full`` are presets over these defaults."""

    out: Path = option(Path("reports/latest"), "output folder (created if missing)")
    mode: str = option("default", "how much to run: each section's smoke run (quick), its report configuration "
                                  "(default) or its longest (full); the presets --quick and --full set it with "
                                  "the settings below", choices=MODES)
    problems: tuple[str, ...] | None = option(
        ("logreg-breast_cancer", "logreg-digits_binary", "logreg-synthetic", "softmax-digits", "log-sum-exp"),
        "problems of the second-order comparison (none = every library problem with a certified optimum); "
        "see --list")
    solvers: tuple[str, ...] | None = option(None, "solvers of the second-order comparison (none = all "
                                                   "registered); see --list")
    repeats: int = option(5, "timed repetitions per (problem, solver) after one "
                                                        "warm-up; the median is reported")
    target: float = option(1e-8, "relative suboptimality (f - f*)/(f(x0) - f*) that stops "
                                                        "every solver")
    time_limit: float = option(20.0, "seconds per run; a run still short of the target then counts as a failure")
    repeat_budget: float = option(8.0, "stop repeating a (problem, solver) pair once its timed runs used this "
                                       "many seconds (at least one run)")
    theorems_quick: bool = option(True, "the theorem table's quick problem set (false: the full one)")
    sections: tuple[str, ...] | None = option(None, "sections to write, in report order (none = all); see --list")
    html: bool = option(True, "also write report.html with the figures inlined")
    threads: int = option(1, "threads for torch and for numpy/scipy's BLAS while measuring (0 keeps the "
                             "libraries' own choice); one thread keeps timings steady on a small shared machine "
                             "(a multi-threaded kernel stalls when a neighbour takes a core); recorded in the "
                             "provenance")
    progress: bool = option(True, "progress lines and bars on stderr")
    list: bool = option(False, "list the known problems, solvers and sections, then exit")
    # Problems supplied from code (name -> zero-argument constructor), e.g. by tests; they may be named in
    # ``problems``.
    extra_problems: Mapping[str, Callable[[], Any]] | None = option(None, cli=False)

    def validate(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {self.repeats}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if not (self.time_limit > 0 and self.repeat_budget > 0 and self.target > 0):
            raise ValueError("time_limit, repeat_budget and target must be positive")


PRESETS = {
    "quick": {"mode": "quick", "problems": ("logreg-breast_cancer",), "repeats": 1, "time_limit": 10.0,
              "repeat_budget": 2.0, "theorems_quick": True},
    "full": {"mode": "full", "problems": None, "time_limit": 60.0, "repeat_budget": 30.0,
             "theorems_quick": False},
}


# ---------------------------------------------------------------------------------------- sections
def load_sections() -> list[Section]:
    """Import every module of :mod:`scale.bench` (each registers its sections) and return them in order."""
    for info in pkgutil.iter_modules(scale.bench.__path__):
        importlib.import_module(f"scale.bench.{info.name}")
    return sections()


@register_section("provenance", "Machine and provenance", order=1000)
def section_provenance(ctx: ReportContext) -> SectionResult:
    """Versions, machine facts, the report's settings and each section's time."""
    records = ctx.cache.get("records") or []
    keys = ("version-", "platform", "env-", "git-", "run_date")
    prov = {k: v for k, v in records[0].items() if k.startswith(keys)} if records else provenance(ctx.config.threads)
    rows = [[k, v] for k, v in prov.items()]
    rows += [[f"setting: {k}", v] for k, v in config_to_dict(ctx.config).items()
             if k not in ("list", "extra_problems")]
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
def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def build_report(config: ReportConfig) -> tuple[Path, list[str]]:
    """Run the selected sections and write the report; returns (path of report.md, failed section names)."""
    config.validate()
    known = load_sections()
    wanted = list(config.sections) if config.sections else [s.name for s in known]
    names = [s.name for s in known]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}{did_you_mean(unknown[0], names)}; known: "
                         f"{', '.join(names)}")
    chosen = [s for s in known if s.name in wanted]
    for sec in chosen:
        if sec.check is not None:
            sec.check(config)
    ctx = ReportContext(config, config.out)
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
    files = [f for _, res in parts for f in res.files]
    header = [
        "# optlib: theory-to-scale report",
        "",
        f"Mode `{config.mode}`, target relative suboptimality {config.target:g}; generated in {total:.0f} s by "
        "`python -m scale.report`.",
        "",
        "Contents: " + ", ".join(f"[{s.title}](#{_anchor(s.title)})" for s, _ in parts),
        "",
        "Performance over commits: `make dashboard` publishes the asv history of these benchmarks to "
        "`.asv/html/index.html`; how to run and read it: `docs/benchmarks_over_time.md` (the docs page "
        "\"Benchmarks over time\").",
    ]
    if failed:
        header += ["", f"**Failed sections: {', '.join(failed)}.**"]
    if files:
        header += ["", "Raw results: " + ", ".join(f"`{e}`" for e in files) + "."]
    body = []
    for sec, res in parts:
        body += ["", f"## {sec.title}", "", res.markdown.strip()]
    md = "\n".join(header + body) + "\n"
    md_path = ctx.out / "report.md"
    md_path.write_text(md, encoding="utf-8")
    if config.html:
        (ctx.out / "report.html").write_text(markdown_to_html(md, ctx.out, "optlib report"), encoding="utf-8")
    return md_path, failed


def _run(config: ReportConfig) -> int:
    if config.list:
        print("sections:", ", ".join(s.name for s in load_sections()))
        for name, names in LISTINGS.items():
            print(f"{name}:", ", ".join(names()))
        return 0
    md_path, failed = build_report(config)
    print(f"report written to {md_path}" + (f" (failed sections: {', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


COMMAND = Command(
    prog="python -m scale.report",
    description=(
        "Write the theory-to-scale report: the theorem table, time to target of optlib's second-order methods "
        "against scipy's on the same oracles (convergence plots, performance profile), and one section per "
        "benchmark of scale.bench (Muon step time, Drop-Muon, training, curvature, least squares, unlearning), "
        "then the machine's provenance. Output: OUT/report.md, OUT/report.html, OUT/figures/*.png, "
        "OUT/results.json, OUT/curves.csv. --quick is a smoke run of every section (a minute or two); --full "
        "runs every library problem with longer limits (tens of minutes)."
    ),
    config=ReportConfig, run=_run, presets=PRESETS, preset_flags=True,
)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (``python -m scale.report --help``); returns the exit status."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
