"""``python -m optlib.theory [--full]`` (``optlib-theorems``): print the theorem table and its verdicts.

By default the quick problem set runs (seconds); ``--full`` runs every problem of every statement (minutes).
The exit status is 0 when every check holds, 1 when one fails, 2 for an unknown argument.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from .table import format_table, theorem_table

PROG = "python -m optlib.theory"


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table; see the module docstring for the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: {PROG} [--full]\n\n{__doc__.strip()}")
        return 0
    unknown = [a for a in argv if a != "--full"]
    if unknown:
        print(f"{PROG}: error: unknown argument(s) {' '.join(unknown)}; the only option is --full", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    table = theorem_table(quick="--full" not in argv)
    print(format_table(table))
    failing = sum(not c.holds for c in table)
    print(f"{len(table)} checks, {failing} failing, {time.perf_counter() - t0:.1f} s")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
