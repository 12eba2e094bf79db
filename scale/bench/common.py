"""What every benchmark of the wing shares: threads, provenance, spread statistics, JSON records, formatting,
Markdown tables and the report's section registry.

A benchmark module registers its report section with :func:`register_section`; ``scale.report`` imports every
module of :mod:`scale.bench` and runs the registered sections in their ``order``, so the report names no
benchmark and no benchmark imports the report.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import torch

import optlib
from scale.records import json_safe, pyplot

__all__ = [
    "ReportContext",
    "SECTIONS",
    "Section",
    "SectionResult",
    "blas_threads",
    "fmt_num",
    "fmt_time",
    "json_safe",
    "md_escape",
    "md_table",
    "pin_threads",
    "provenance",
    "pyplot",
    "register_listing",
    "register_section",
    "save_json",
    "spread",
    "thread_limit",
]


# ---------------------------------------------------------------------------------------- threads
def _threadpool_limits(n: int, user_api: str | None = None) -> contextlib.AbstractContextManager:
    try:
        from threadpoolctl import threadpool_limits  # optional: scikit-learn brings it
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api=user_api)


@contextlib.contextmanager
def thread_limit(n: int | None, *, blas: int | None | str = "same") -> Iterator[None]:
    """Run with ``n`` torch threads and ``blas`` threads in the BLAS/OpenMP pools numpy and scipy use
    (``"same"``: ``n`` as well), restored afterwards; ``None`` or 0 leaves a pool alone.

    On a small machine that other jobs share, one thread makes timings far steadier: a multi-threaded
    kernel whose second thread is descheduled waits at its barrier, so a busy neighbour can multiply a
    short solve's time many times over, while with one thread the load slows every solver in proportion.
    """
    if n is not None and n < 0:
        raise ValueError(f"thread count must be >= 0, got {n}")
    blas_n = n if blas == "same" else blas
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        with _threadpool_limits(int(blas_n)) if blas_n else contextlib.nullcontext():
            yield
    finally:
        torch.set_num_threads(before)


def pin_threads(n: int) -> None:
    """Set ``n`` threads in torch and the BLAS pools for the rest of the process (asv's benchmark processes)."""
    torch.set_num_threads(n)
    _threadpool_limits(n).__enter__()  # kept for the process's lifetime on purpose


def blas_threads() -> str:
    """The thread pools numpy/scipy/torch load, as ``api=threads`` pairs (for the provenance)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    return ", ".join(f"{d['internal_api']}={d['num_threads']}" for d in threadpool_info()) or "none"


# ---------------------------------------------------------------------------------------- provenance
def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_commit() -> str | None:
    """``HEAD``, with ``+dirty`` when the working tree has uncommitted changes (None outside git)."""
    head = _git("rev-parse", "HEAD")
    if not head:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return head + ("+dirty" if status else "")


def _loadavg() -> float | None:
    """The 1-minute load average when the OS reports one (other work on a shared machine shows here)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def provenance(threads: int | None = None) -> dict[str, Any]:
    """Versions and machine facts stored with every record (benchopt's ``version-*``/``env-*`` columns);
    ``threads``, when given, is recorded as the benchmark's torch thread count."""
    prov = {
        "run_date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "version-python": platform.python_version(),
        "version-optlib": optlib.__version__,
        "version-torch": torch.__version__,
        "version-scipy": scipy.__version__,
        "version-numpy": np.__version__,
        "platform": platform.platform(),
        "platform-machine": platform.machine(),
        "platform-processor": platform.processor() or platform.machine(),
        "env-cpu_count": os.cpu_count(),
        "env-torch_threads": torch.get_num_threads(),
        "env-thread_pools": blas_threads(),
        "env-loadavg": _loadavg(),
        "git-commit": _git_commit(),
    }
    if threads is not None:
        prov["env-benchmark_threads"] = threads
    return prov


# ---------------------------------------------------------------------------------------- statistics and records
def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Median, min, max and interquartile range of the finite values (``n`` counts them)."""
    v = sorted(x for x in values if x is not None and math.isfinite(x))
    if not v:
        return {"n": 0, "median": math.nan, "min": math.nan, "max": math.nan, "q25": math.nan, "q75": math.nan}
    q = np.quantile(v, [0.25, 0.75]) if len(v) > 1 else [v[0], v[0]]
    return {"n": len(v), "median": statistics.median(v), "min": v[0], "max": v[-1],
            "q25": float(q[0]), "q75": float(q[1])}


def save_json(result: Any, out: Path | str | None, name: str) -> Path | None:
    """Write ``result`` (made JSON-safe) to ``out/name``, creating ``out``; nothing when ``out`` is None."""
    if out is None:
        return None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(json.dumps(json_safe(result), indent=1), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------- formatting
def fmt_num(x: Any, digits: int = 3) -> str:
    """A number in ``digits`` significant digits (``—`` for None, ``n/a`` for NaN, ``yes``/``no`` for booleans)."""
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


def fmt_time(t: float | None) -> str:
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


# ---------------------------------------------------------------------------------------- report sections
@dataclass
class SectionResult:
    """A section's Markdown body (without its heading), the figures it wrote and the raw files it left beside
    the report (paths relative to the report)."""

    markdown: str
    figures: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


class ReportContext:
    """Shared state of one report run: its settings (``config``), output folders and a cache that sections
    use to share expensive work."""

    def __init__(self, config: Any, out: Path | str) -> None:
        self.config = config
        self.out = Path(out)
        self.fig_dir = self.out / "figures"
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        self.cache: dict[str, Any] = {}
        self.timings: dict[str, float] = {}

    @property
    def quick(self) -> bool:
        """True in the report's smoke mode: sections measure something small but real."""
        return getattr(self.config, "mode", "default") == "quick"

    def figure(self, name: str) -> tuple[str, str]:
        """``(path to write, path relative to the report)`` for a figure file name."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        return str(self.fig_dir / safe), f"figures/{safe}"


@dataclass(frozen=True)
class Section:
    """A report section: ``fn(ctx)`` writes it; ``check(config)``, when given, refuses settings the section
    cannot use (a ``ValueError`` naming them) before any section runs."""

    name: str
    title: str
    order: float
    fn: Callable[[ReportContext], SectionResult]
    check: Callable[[Any], None] | None = None


SECTIONS: dict[str, Section] = {}
LISTINGS: dict[str, Callable[[], Sequence[str]]] = {}


def register_section(name: str, title: str, *, order: float,
                     check: Callable[[Any], None] | None = None) -> Callable:
    """Decorator: ``fn(ctx) -> SectionResult`` becomes the report section ``name``, placed by ``order``."""

    def deco(fn: Callable[[ReportContext], SectionResult]) -> Callable[[ReportContext], SectionResult]:
        existing = SECTIONS.get(name)
        if existing is not None and existing.fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"report section {name!r} is already registered by {existing.fn.__module__}")
        SECTIONS[name] = Section(name, title, order, fn, check)
        return fn

    return deco


def register_listing(name: str, names: Callable[[], Sequence[str]]) -> None:
    """What the report's ``--list`` prints under ``name`` (for example the solvers a section knows)."""
    LISTINGS[name] = names


def sections() -> list[Section]:
    """The registered sections in report order."""
    return sorted(SECTIONS.values(), key=lambda s: (s.order, s.name))


def time_cuda(fn: Callable[[], torch.Tensor], repeats: int, warmup: int) -> float:
    """Median milliseconds of ``fn()`` measured with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)
