"""Dolan–Moré performance profiles.

E. D. Dolan and J. J. Moré, "Benchmarking optimization software with performance profiles",
Math. Program. 91:201–213 (2002), arXiv:cs/0102001. For a cost ``t[p, s]`` of solver ``s`` on
problem ``p`` (time, oracle calls or iterations to pass the convergence test; ``inf`` on failure):

    r[p, s]   = t[p, s] / min_s t[p, s]                   (performance ratio)
    rho_s(tau) = |{p : r[p, s] <= tau}| / |P|              (performance profile)

``rho_s(1)`` is the share of problems on which ``s`` is fastest (ties count for every tied solver);
``rho_s(tau)`` for large ``tau`` is the share ``s`` solves at all. A problem that no solver solves
stays in ``P`` with ``r = inf`` for everyone, so no profile reaches 1 on it. The profile is a step
function, drawn over ``log2 tau``.

Profiles compare solvers *within one set*: adding or removing a solver changes the minimum and can
reorder the others (spec ``90-benchmarks-and-style.md`` §3), so read them with the set they came from.

:func:`integrated_score` is AlgoPerf's one-number summary of a profile (mlcommons/algorithmic-efficiency,
``scoring/performance_profile.py``): ``(1/(r_max - 1)) * integral_1^r_max rho_s(tau) dtau``, here
computed exactly for the step function instead of with the trapezoidal rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

CostTable = Mapping[str, Mapping[str, float | None]]


def _cost(value: float | None) -> float:
    """A cost as a float: ``None``, NaN, negative or infinite values are failures (``inf``)."""
    if value is None:
        return math.inf
    v = float(value)
    if math.isnan(v) or v < 0:
        return math.inf
    return v


def solver_names(table: CostTable) -> list[str]:
    """Every solver in the table, in first-seen order."""
    seen: dict[str, None] = {}
    for row in table.values():
        seen.update(dict.fromkeys(row))
    return list(seen)


def performance_ratios(table: CostTable, solvers: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """``{problem: {solver: r}}`` with ``r = t / min_s t``; ``inf`` for failures, for a solver missing
    from a problem's row, and for everyone on a problem nobody solved.

    A zero best cost (possible with counters) makes every solver with zero cost ratio 1 and every other
    solver ratio ``inf``.
    """
    names = list(solvers) if solvers is not None else solver_names(table)
    out: dict[str, dict[str, float]] = {}
    for problem, row in table.items():
        costs = {s: _cost(row.get(s)) for s in names}
        best = min(costs.values(), default=math.inf)
        ratios = {}
        for s, t in costs.items():
            if math.isinf(t) or math.isinf(best):
                ratios[s] = math.inf
            elif best == 0.0:
                ratios[s] = 1.0 if t == 0.0 else math.inf
            else:
                ratios[s] = t / best
        out[problem] = ratios
    return out


def performance_profile(
    table: CostTable, taus: Sequence[float] | np.ndarray | None = None, solvers: Sequence[str] | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(taus, {solver: rho(taus)})``.

    Without ``taus`` the grid is every finite ratio in the table (plus 1), sorted: the points where
    some profile steps, so the returned arrays describe the step functions exactly.
    """
    ratios = performance_ratios(table, solvers)
    names = list(solvers) if solvers is not None else solver_names(table)
    n_prob = len(ratios)
    if taus is None:
        finite = {r for row in ratios.values() for r in row.values() if math.isfinite(r)}
        taus = np.array(sorted(finite | {1.0}), dtype=float)
    else:
        taus = np.asarray(taus, dtype=float)
    profiles = {}
    for s in names:
        r = np.array([ratios[p][s] for p in ratios], dtype=float)
        if n_prob == 0:
            profiles[s] = np.zeros_like(taus)
        else:
            # a failure (r = inf) never counts, not even at tau = inf: rho(inf) is the share solved
            profiles[s] = (np.isfinite(r)[None, :] & (r[None, :] <= taus[:, None])).sum(axis=1) / n_prob
    return taus, profiles


def rho(table: CostTable, solver: str, tau: float) -> float:
    """``rho_solver(tau)``: the share of problems with performance ratio ``<= tau``."""
    _, prof = performance_profile(table, [tau], solvers=solver_names(table))
    return float(prof[solver][0])


def integrated_score(table: CostTable, r_max: float = 4.0) -> dict[str, float]:
    """AlgoPerf's score ``B_s = (1/(r_max-1)) int_1^r_max rho_s(tau) dtau`` (exact for the step function).

    A problem with ratio ``r <= r_max`` contributes ``(r_max - r)/(|P| (r_max - 1))``; ratios above
    ``r_max`` count as failures, as in AlgoPerf. ``B_s`` lies in ``[0, 1]``; 1 means fastest everywhere.
    """
    if not r_max > 1:
        raise ValueError(f"r_max must exceed 1, got {r_max}")
    ratios = performance_ratios(table)
    n_prob = len(ratios)
    out = {}
    for s in solver_names(table):
        total = sum(r_max - ratios[p][s] for p in ratios if ratios[p][s] <= r_max)
        out[s] = total / (n_prob * (r_max - 1)) if n_prob else 0.0
    return out


def solver_styles(names: Sequence[str], families: Mapping[str, str] | None = None) -> dict[str, dict]:
    """One distinct colour per solver (matplotlib's 20-colour qualitative map, so up to 20 solvers never
    share one) and a dashed line for the ``"scipy"`` family; shared by every plot of a report."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    # Sorted (optlib first, then by name) so that the same solver set gets the same colours in every plot.
    order = sorted(names, key=lambda s: ((families or {}).get(s, "") == "scipy", s))
    out = {}
    for i, s in enumerate(order):
        dashed = families is not None and families.get(s) == "scipy"
        out[s] = {"color": cmap((2 * i) % 20 + (2 * i) // 20 % 2), "linestyle": "--" if dashed else "-"}
    return out


def plot_performance_profile(
    table: CostTable,
    path: str,
    *,
    title: str = "Performance profile",
    xlabel: str = "log2 τ (cost / best cost)",
    families: Mapping[str, str] | None = None,
) -> str:
    """Draw the profiles as steps over ``log2 tau`` into a PNG at ``path``; returns ``path``.

    ``families`` (solver -> family name) draws solvers of the family ``"scipy"`` dashed, so that
    optlib and its anchors are told apart at a glance.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus, prof = performance_profile(table)
    finite = taus[np.isfinite(taus)]
    top = float(finite.max()) if finite.size else 1.0
    log_top = max(math.log2(top) * 1.1, 1.0)
    xs = np.concatenate([np.log2(taus), [log_top]])
    styles = solver_styles(list(prof), families)
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    for s, values in prof.items():
        ys = np.concatenate([values, values[-1:]])
        ax.step(xs, ys, where="post", label=s, linewidth=1.6, **styles[s])
    ax.set_xlim(0.0, log_top)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of problems ρ(τ)")
    ax.set_title(f"{title} ({len(table)} problems)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
