"""One problem library: :mod:`optlib.theory` measures runs and checks bounds, :mod:`optlib.problems` builds problems.

* ``optlib.theory`` has no problem module of its own (the former ``optlib.theory.standard`` is gone), its source
  constructs no :class:`optlib.Problem`, and every problem the theorem table runs on is created by code in
  ``optlib.problems``;
* no module of ``optlib.theory`` defines a function named like a problem of ``optlib.problems`` (a name in its
  ``__all__``) or like a problem builder (``make_*``, ``*_problem``, ``*_data``, ``*_residual``, ``*_jac``, ...),
  and seeded random generators appear in ``optlib.theory`` only in the listed functions (probe vectors and
  perturbations of a check, each with its reason): a new data generator written in a theory module is noticed;
* the imports of ``optlib.theory`` point one way (``table`` on top, imported only by the package) and neither
  package imports project modules inside functions;
* the statements' instances are the ones the theorem checks were written for: values pinned from the
  former ``optlib.theory.standard`` (same data, same ``x0``, same ``f*``).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest
import torch

import optlib.problem
import optlib.problems
import optlib.theory
from optlib.problems import lse_cubic, pseudo_huber
from optlib.theory import FAMILY_TABLES
from optlib.theory.__main__ import main
from optlib.theory.table import chebyshev_instance, logistic_instance, quadratic_instance, rosenbrock_instance

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "optlib" / "theory"
PROBLEMS = ROOT / "optlib" / "problems"


def test_theory_has_no_problem_module():
    assert importlib.util.find_spec("optlib.theory.standard") is None
    assert not hasattr(optlib.theory, "standard")
    assert not (THEORY / "standard.py").exists()


def _sources(folder: Path) -> dict[str, ast.Module]:
    return {p.name: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.py"))}


def test_theory_source_constructs_no_problem():
    """No module of optlib.theory names ``Problem(...)`` or ``Constants(...)``: problems come from optlib.problems."""
    for name, tree in _sources(THEORY).items():
        calls = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
        assert "Problem" not in calls and "Constants" not in calls, name


def test_theorem_table_problems_come_from_the_library(monkeypatch):
    """Every Problem created while the (full) theorem table runs is created by a module of optlib.problems,
    and every problem named in the table is one of them (the other rows name cubic-subproblem cases or the
    condition sweep)."""
    creators: dict[str, str] = {}
    original = optlib.problem.Problem.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        creators[self.name] = sys._getframe(1).f_globals.get("__name__", "?")

    monkeypatch.setattr(optlib.problem.Problem, "__init__", recording_init)
    checks = optlib.theory.theorem_table(quick=False)
    assert creators
    outside = {name: module for name, module in creators.items() if not module.startswith("optlib.problems.")}
    assert not outside, f"problems created outside optlib.problems: {outside}"
    named = {str(c.details["problem"]) for c in checks}
    not_problems = {n for n in named if n not in creators}
    assert all(n.startswith(("indefinite A", "hard case", "logreg-synthetic[")) for n in not_problems), not_problems
    assert len(named - not_problems) >= 10


def _top_level_functions(tree: ast.Module) -> dict[str, int]:
    return {n.name: n.lineno for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_theory_defines_no_library_names():
    """No module of optlib.theory defines a top-level function, class or variable whose name is exported by
    optlib.problems (a moved problem redefined, or a copy kept beside the library's)."""
    exported = set(optlib.problems.__all__)
    for name, tree in _sources(THEORY).items():
        defined = set(_top_level_functions(tree))
        defined |= {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
        defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        assert not defined & exported, (name, sorted(defined & exported))


PROBLEM_BUILDER_NAME = r"^(make|build|generate|random)_|_(problem|problems|data|dataset|residual|residuals|jac)$|^mlp$"


def test_theory_defines_no_problem_builder_names():
    """Functions named like problem or data builders belong in optlib.problems (``*_instance`` selectors of
    library problems, such as ``rosenbrock_instance``, are allowed)."""
    bad = {name: [f for f in _top_level_functions(tree) if re.search(PROBLEM_BUILDER_NAME, f.lstrip("_"))]
           for name, tree in _sources(THEORY).items()}
    assert not {k: v for k, v in bad.items() if v}, bad


SEEDED_GENERATORS = {"default_rng", "Generator", "manual_seed", "RandomState", "seed"}
ALLOWED_RANDOMNESS = {
    # Monte Carlo draws of the randomized Neumann estimator (its own randomness, like probe vectors)
    ("bilevel.py", "randomized_neumann_unbiased"),
    # probe vectors of operator identities (the problem is the seeded MLP and batches of optlib.problems)
    ("curvature.py", "ggn_products"),
    ("curvature.py", "damped_inverse"),
    ("curvature.py", "heuristic_inverse"),
    # the perturbation of the experiment: 30 % of the retain labels shifted before fine-tuning
    ("unlearning.py", "reapplication_bound"),
    # a random SPD metric B of the change-of-variables statement (a method parameter, not the problem)
    ("table.py", "metric_and_transformed"),
    # random cubic-subproblem instances (A, g) of the cubic-subproblem statement
    ("table.py", "cubic_cases"),
}


def _seeded_randomness(tree: ast.Module) -> set[str]:
    """Top-level functions that create or seed a random generator (numpy or torch)."""
    found = set()
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
                if name in SEEDED_GENERATORS:
                    found.add(fn.name)
    return found


def test_theory_randomness_only_where_listed():
    """A new seeded generator in optlib.theory is noticed: draw problems and data sets in optlib.problems (or,
    for a check's own probe vectors or perturbations, add the function here with the reason)."""
    used = {(name, fn) for name, tree in _sources(THEORY).items() for fn in _seeded_randomness(tree)}
    assert used <= ALLOWED_RANDOMNESS, sorted(used - ALLOWED_RANDOMNESS)


def test_the_guards_would_notice_the_former_generators():
    """The three guards above flag the former in-theory generators (a would-catch twin on source text)."""
    former = ast.parse(
        "import numpy as np\n"
        "def ridge_problem(n=60, d=6, seed=0):\n"
        "    rng = np.random.default_rng(seed)\n"
        "    return rng.normal(size=(n, d))\n"
        "def mlp(sizes, seed=0):\n"
        "    torch.manual_seed(seed)\n"
        "def rosen_jac(x):\n"
        "    return x\n"
        "def seeded_mlp(sizes):\n"
        "    return sizes\n"
    )
    assert _seeded_randomness(former) == {"ridge_problem", "mlp"}
    assert {f for f in _top_level_functions(former) if re.search(PROBLEM_BUILDER_NAME, f)} == {
        "ridge_problem", "mlp", "rosen_jac"}
    assert set(_top_level_functions(former)) & set(optlib.problems.__all__) == {"seeded_mlp"}


def _function_level_imports(tree: ast.Module) -> list[tuple[str, int]]:
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("optlib")):
                    found.append((fn.name, node.lineno))
                if isinstance(node, ast.Import) and any(a.name.startswith("optlib") for a in node.names):
                    found.append((fn.name, node.lineno))
    return found


@pytest.mark.parametrize("folder", [THEORY, PROBLEMS], ids=["theory", "problems"])
def test_no_project_imports_inside_functions(folder):
    bad = {name: hits for name, tree in _sources(folder).items() if (hits := _function_level_imports(tree))}
    assert not bad, bad


def test_theory_imports_point_one_way():
    """``table`` is imported only by the package's ``__init__`` (and ``__main__``) and imports only the checker
    modules; the checker modules import neither ``table`` nor the package itself (no cycle)."""
    for name, tree in _sources(THEORY).items():
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                targets.add(node.module or "")
                targets.update(a.name for a in node.names if node.module is None)
        if name in ("__init__.py", "__main__.py"):
            continue
        if name == "table.py":
            checkers = {p.stem for p in THEORY.glob("*.py")} - {"__init__", "__main__", "table"}
            assert targets <= checkers, targets - checkers
        else:
            assert "table" not in targets and "" not in targets, (name, targets)



def test_problems_do_not_import_theory():
    """optlib.problems is below optlib.theory: none of its modules imports optlib.theory (no cycle)."""
    for name, tree in _sources(PROBLEMS).items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert not (node.level == 2 and module.split(".")[0] == "theory"), name
                assert not (node.level == 2 and not module and any(a.name == "theory" for a in node.names)), name
                assert not (node.level == 0 and module.startswith("optlib.theory")), name
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("optlib.theory") for a in node.names), name

# Values of the former optlib.theory.standard problems, computed before it was removed:
# (||x0||, f(x), ||grad f(x)||, f*) at x = x0 + 0.25 * linspace(-1, 1, n).
PINNED = {
    "rosenbrock": (rosenbrock_instance, (1.5620499351813308, 78.67812500000001, 527.6558276945304, 0.0)),
    "chebyshev-3": (lambda: chebyshev_instance(3), (1.7320508075688772, 2.59375, 13.094011035584169, 0.0)),
    "logistic-100": (lambda: logistic_instance(100.0, 1e-4, 0),
                     (0.0, 0.7317165477328822, 0.14876279899777986, 0.46183656636911496)),
    "logistic-10-seed1": (lambda: logistic_instance(10.0, 1e-3, 1),
                          (0.0, 0.7566476693544048, 0.21373955384973528, 0.4069207186686827)),
    "quadratic": (quadratic_instance, (3.58374880273144, 176.4268267885248, 101.50125438868933, -0.28469992715065245)),
    "pseudo-huber": (pseudo_huber, (5.656854249492381, 10.33502716555517, 2.541680492605773, 0.0)),
    "pseudo-huber-16": (lambda: pseudo_huber(n=16, t0=3.0, seed=1),
                        (12.0, 33.744981723757355, 3.7862061453555307, 0.0)),
    "lse-cubic": (lse_cubic, (10.0, 212.43473143315666, 66.50187818943452, 0.0)),
    "lse-only": (lambda: lse_cubic(c=0.0, scale=3.0, seed=1), (10.0, 15.884062372859418, 3.2198516187432267, 0.0)),
}


@pytest.mark.parametrize("name", list(PINNED))
def test_theorem_instances_are_unchanged(name):
    """Same data and start as the former theory problems: the values agree to rounding (1e-12 relative; the
    oracles may evaluate in a different order), and the certified optimum to 1e-13."""
    make, (x0_norm, f_ref, g_ref, f_star_ref) = PINNED[name]
    p = make()
    x = p.x0 + 0.25 * torch.linspace(-1.0, 1.0, p.n, dtype=torch.float64)
    f, g = p.value_and_grad(x)
    assert math.isclose(float(torch.linalg.vector_norm(p.x0)), x0_norm, rel_tol=1e-14, abs_tol=0.0)
    assert math.isclose(float(f), f_ref, rel_tol=1e-12)
    assert math.isclose(float(torch.linalg.vector_norm(g)), g_ref, rel_tol=1e-12)
    assert abs(p.f_star - f_star_ref) <= 1e-13


def test_pinned_constants_of_the_convex_instances():
    """L2 of the O(1/k^2) instances is the former theory value (2c + 0.8587 scale^3, 2c + 2 max_j ||a_j||^3)."""
    assert pseudo_huber().constants.L2 == pytest.approx(0.8586501033599193, rel=1e-15)
    assert pseudo_huber(n=16, t0=3.0, seed=1).constants.L2 == pytest.approx(0.8586501033599193, rel=1e-15)
    assert lse_cubic().constants.L2 == pytest.approx(7.150944617230547, rel=1e-14)
    assert lse_cubic(c=0.0, scale=3.0, seed=1).constants.L2 == pytest.approx(201.75040242666736, rel=1e-14)


def test_theorem_table_command_refuses_unknown_arguments(capsys):
    assert main(["--ful"]) == 2
    assert "unknown argument(s) --ful" in capsys.readouterr().err
    assert main(["--family", "drop-muonn"]) == 2
    assert "unknown theorem family drop-muonn" in capsys.readouterr().err
    assert main(["--family", "least-squares"]) == 0
    out = capsys.readouterr().out
    names = {c.name for c in FAMILY_TABLES["least-squares"]()}
    assert all(name in out for name in names) and "0 failing" in out
    assert not any(c.name in out for c in FAMILY_TABLES["drop-muon"]())
    assert main(["--help"]) == 0
    assert "--full" in capsys.readouterr().out
