"""The report's theorem table: every statement that ``optlib.theory`` checks, in every family, measured on runs.

Each row runs a method on a problem whose constants are known and compares the measured quantity with the
statement's bound; the checkers are the same functions the theorem tests and the asv ``track_*`` benchmarks
call (:data:`optlib.theory.FAMILY_TABLES`), so the three cannot disagree about what a theorem says.
"""

from __future__ import annotations

from optlib.theory import FAMILY_TABLES, every_table

from .common import ReportContext, SectionResult, fmt_num, md_escape, md_table, register_section


def theorem_checks(quick: bool) -> list:
    """Every family's checks, tagged with their family."""
    return every_table(quick=quick)


@register_section("theorems", "Theorems checked on runs", order=10)
def report_section(ctx: ReportContext) -> SectionResult:
    quick = ctx.config.theorems_quick
    checks = theorem_checks(quick)
    rows = []
    for c in checks:
        details = dict(c.details or {})
        run = " on ".join(str(details[k]) for k in ("method", "problem") if k in details)
        rows.append([details.get("family", ""), c.name, c.statement, run, fmt_num(c.measured, 4),
                     fmt_num(c.bound, 4), fmt_num(c.slack, 2), "✓" if c.holds else "✗ **fails**", c.source])
    n_hold = sum(bool(c.holds) for c in checks)
    per_family = ", ".join(f"{name} {sum(1 for c in checks if c.details.get('family') == name)}"
                           for name in FAMILY_TABLES)
    text = (
        "Each row runs a method on a problem whose constants are known and compares the measured quantity "
        "with the statement's bound (by default `measured <= bound * (1 + slack)`; a check's own comparison "
        "is listed with its details in `optlib.theory`). Every row has a deliberately wrong variant in "
        "`tests/theorems/` that fails it. Computed by `optlib.theory.every_table"
        f"(quick={quick})` ({per_family} checks). **{n_hold} of {len(checks)} hold.**\n\n"
        + md_table(["family", "check", "statement", "run", "measured", "bound", "slack", "holds", "source"], rows)
    )
    failing = [c for c in checks if not c.holds]
    if failing:
        text += "\n\nDetails of the failing checks:\n\n" + "\n".join(
            f"- **{md_escape(c.name)}**: " + md_escape(", ".join(f"{k} = {v}" for k, v in (c.details or {}).items()))
            for c in failing
        )
    return SectionResult(text)
