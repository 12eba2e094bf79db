"""``python -m optlib.theory [--full] [--family NAME ...]`` (``optlib-theorems``): print the theorem tables.

By default every family's quick table runs (seconds); ``--full`` runs every problem of every statement
(minutes); ``--family`` picks families (``regularized-newton``, ``drop-muon``, ``least-squares``,
``curvature``, ``unlearning``). The exit status is 0 when every check holds, 1 when one fails, 2 for a usage
error.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from .table import FAMILY_TABLES, every_table, format_table

PROG = "python -m optlib.theory"


def _usage_error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Print the tables; see the module docstring for the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: {PROG} [--full] [--family NAME ...]\n\n{__doc__.strip()}")
        return 0
    full, families, rest = "--full" in argv, None, [a for a in argv if a != "--full"]
    if rest and rest[0] == "--family":
        families = rest[1:]
        if not families:
            return _usage_error(f"--family needs at least one name: {', '.join(FAMILY_TABLES)}")
    elif rest:
        return _usage_error(f"unknown argument(s) {' '.join(rest)}; the options are --full and --family NAME ...")
    t0 = time.perf_counter()
    try:
        table = every_table(quick=not full, families=families)
    except ValueError as exc:
        return _usage_error(str(exc))
    print(format_table(table))
    failing = sum(not c.holds for c in table)
    print(f"{len(table)} checks, {failing} failing, {time.perf_counter() - t0:.1f} s")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
