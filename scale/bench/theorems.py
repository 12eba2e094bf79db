"""The report's theorem table: every statement that ``optlib.theory`` checks, measured on runs.

Each row runs a method on a problem whose constants are known and compares the measured quantity with the
statement's bound; the checkers are the same functions the theorem tests and the asv ``track_*`` benchmarks
call, so the three cannot disagree about what a theorem says.
"""

from __future__ import annotations

from optlib import theory
from optlib.theory import drop_muon

from .common import ReportContext, SectionResult, fmt_num, md_escape, md_table, register_section


def theorem_checks(quick: bool) -> list:
    """The regularized Newton family's statements, then Drop-Muon's."""
    return theory.theorem_table(quick=quick) + drop_muon.drop_muon_table()


@register_section("theorems", "Theorems checked on runs", order=10)
def report_section(ctx: ReportContext) -> SectionResult:
    quick = ctx.config.theorems_quick
    checks = theorem_checks(quick)
    rows = []
    for c in checks:
        details = dict(c.details or {})
        run = " on ".join(str(details[k]) for k in ("method", "problem") if k in details)
        rows.append([c.name, c.statement, run, fmt_num(c.measured, 4), fmt_num(c.bound, 4), fmt_num(c.slack, 2),
                     "✓" if c.holds else "✗ **fails**", c.source])
    n_hold = sum(bool(c.holds) for c in checks)
    text = (
        "Each row runs a method on a problem whose constants are known and compares the measured quantity "
        "with the statement's bound (by default `measured <= bound * (1 + slack)`; a check's own comparison "
        "is listed with its details in `optlib.theory`). Computed by `optlib.theory.theorem_table"
        f"(quick={quick})` and `optlib.theory.drop_muon.drop_muon_table()`. "
        f"**{n_hold} of {len(checks)} hold.**\n\n"
        + md_table(["check", "statement", "run", "measured", "bound", "slack", "holds", "source"], rows)
    )
    failing = [c for c in checks if not c.holds]
    if failing:
        text += "\n\nDetails of the failing checks:\n\n" + "\n".join(
            f"- **{md_escape(c.name)}**: " + md_escape(", ".join(f"{k} = {v}" for k, v in (c.details or {}).items()))
            for c in failing
        )
    return SectionResult(text)
