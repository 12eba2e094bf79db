"""The shape of the code base: imports point one way with no cycle, project modules are imported at module
level, one command-line generator serves every entry point, and every console script resolves."""

from __future__ import annotations

import ast
import importlib
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("optlib", "scale", "kernels")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _target(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module an ``ImportFrom`` reads from."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _project(name: str) -> str | None:
    """The longest project module that ``name`` names (``scale.bench.common.fmt_num`` -> ``scale.bench.common``)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in MODULES:
            return ".".join(parts[:i])
    return None


def import_edges(module: str, path: Path) -> tuple[set[str], list[str]]:
    """(project modules imported at module level, project imports made inside functions as 'line: name')."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    top, nested = set(), []

    def names(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        base = _target(node, module, is_package)
        # "from pkg import sub" imports the submodule pkg.sub when there is one
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for name in names(child):
                    target = _project(name)
                    if target is None or target == module:
                        continue
                    if in_function:
                        nested.append(f"{path.relative_to(ROOT)}:{child.lineno}: {target}")
                    else:
                        top.add(target)
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            visit(child, inner)

    visit(tree, False)
    # importing a.b.c runs a and a.b first
    for t in list(top):
        parts = t.split(".")
        top.update(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) != module)
    return top, nested


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


GRAPH = {m: import_edges(m, p) for m, p in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a list of modules, first = last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_import_graph_has_no_cycle():
    graph = {m: {t for t in edges if not m.startswith(t + ".")} for m, (edges, _) in GRAPH.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_would_catch_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_layers_point_one_way():
    """optlib imports neither scale nor kernels' benchmarks; kernels imports no scale; nothing imports the report."""
    bad = []
    for m, (edges, _) in GRAPH.items():
        for t in edges:
            if m.startswith("optlib") and t.startswith("scale"):
                bad.append(f"{m} -> {t}")
            if m.startswith("kernels") and t.startswith(("scale", "optlib")):
                bad.append(f"{m} -> {t}")
            if t == "scale.report" and m != "scale.report":
                bad.append(f"{m} -> {t}")
            if m.startswith("scale.") and not m.startswith("scale.bench") and m != "scale.report" \
                    and t.startswith("scale.bench"):
                bad.append(f"{m} -> {t} (the training application must not depend on the benchmark wing)")
    assert not bad, "\n".join(bad)


def test_report_names_no_benchmark():
    edges, _ = GRAPH["scale.report"]
    named = sorted(t for t in edges if t.startswith("scale.bench.") and t != "scale.bench.common")
    assert not named, f"scale.report imports benchmark modules by name: {named}"


def test_no_project_import_inside_a_function():
    nested = [line for _, (_, n) in GRAPH.items() for line in n]
    assert not nested, "project modules imported inside functions:\n" + "\n".join(nested)


def test_one_command_line_generator():
    offenders = []
    for m, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if m != "scale.cli" and ("add_argument(" in text or "ArgumentParser(" in text):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"hand-written argparse parsers outside scale/cli.py: {offenders}"


SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_console_scripts_resolve_and_are_documented(script):
    module, _, func = SCRIPTS[script].partition(":")
    assert callable(getattr(importlib.import_module(module), func))
    doc = importlib.import_module("scale").__doc__ or ""
    assert script in doc and f"python -m {module.removesuffix('.__main__')}" in doc, f"{script} is not listed in scale/__init__.py's docstring"


def test_every_python_m_entry_point_has_a_console_script():
    """A module with ``if __name__ == "__main__"`` is an entry point users type; it needs a console script."""
    targets = {v.partition(":")[0] for v in SCRIPTS.values()}
    entry = sorted(m for m, p in MODULES.items() if '__name__ == "__main__"' in p.read_text(encoding="utf-8"))
    targets |= {t.removesuffix(".__main__") for t in targets}
    missing = [m for m in entry if m not in targets]
    assert not missing, f"python -m entry points without a console script: {missing}"


def test_nothing_imports_benchmarks_from_the_test_or_asv_side_by_old_names():
    """The flat benchmark modules moved into scale.bench; their old names are gone for good."""
    old = ("scale.compare", "scale.profiles", "scale.train_bench", "scale.dropmuon", "scale.unlearn",
           "scale.curvature_bench", "scale.least_squares_bench", "kernels.bench_newton_schulz")
    for name in old:
        assert name not in MODULES
        sys.modules.pop(name, None)
        with pytest.raises(ImportError):
            importlib.import_module(name)
