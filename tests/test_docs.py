"""The documentation: the site builds in strict mode, the API page covers the public API, and the
Python examples in the pages run."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API_PAGE = DOCS / "api.md"

# (package, names it exports) whose every public name must be on the API page.
PUBLIC_PACKAGES = ("optlib", "optlib.second_order", "optlib.optim", "optlib.curvature", "optlib.least_squares",
                   "optlib.unlearning", "optlib.drift")

DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$", re.MULTILINE)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
ANCHOR = re.compile(r'\bid="([A-Za-z_][\w.]*)"')

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (pip install -e '.[docs]')",
)


def resolve(path: str):
    """The object a dotted path names, importing the longest importable module prefix first
    (so that ``optlib.minimize.minimize`` is the function inside the module ``optlib.minimize``)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def public_names(package: str) -> list[tuple[str, object]]:
    module = importlib.import_module(package)
    return [(name, getattr(module, name)) for name in module.__all__]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the site once for this module: ``mkdocs build --strict`` into a temporary folder."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, (
        "mkdocs build --strict failed (every warning is an error in strict mode):\n"
        + proc.stdout[-4000:] + proc.stderr[-8000:]
    )
    return out


@needs_mkdocs
def test_site_builds_strict(site):
    """The build succeeded (the fixture asserts it) and wrote every page of the navigation."""
    for page in ("design", "second_order", "problems", "benchmarks", "api"):
        assert (site / page / "index.html").exists(), f"page {page} was not built"
    assert (site / "index.html").exists()


def test_api_page_names_every_public_name():
    """Each public name of optlib and optlib.second_order appears on docs/api.md, either by name or
    through a ``:::`` directive of the module that defines it."""
    text = API_PAGE.read_text(encoding="utf-8")
    directives = set(DIRECTIVE.findall(text))
    missing = []
    for package in PUBLIC_PACKAGES:
        for name, obj in public_names(package):
            module = getattr(obj, "__module__", None)
            named = re.search(rf"(?<![\w.]){re.escape(package)}\.{re.escape(name)}\b", text) or \
                re.search(rf"`{re.escape(name)}`", text)
            by_directive = f"{package}.{name}" in directives or (module in directives) or any(
                d.endswith(f".{name}") and resolve(d) is obj for d in directives
            )
            if not (named or by_directive):
                missing.append(f"{package}.{name}")
    assert not missing, f"public names missing from docs/api.md: {', '.join(missing)}"


@needs_mkdocs
def test_api_page_renders_every_public_name(site):
    """The built API page has a rendered entry (an anchor) for each public name of optlib and
    optlib.second_order, pointing at the very object the package exports."""
    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    rendered = {}
    for anchor in set(ANCHOR.findall(html)):
        if not anchor.startswith("optlib"):
            continue
        try:
            rendered[anchor] = resolve(anchor)
        except (ImportError, AttributeError):
            continue
    missing = []
    for package in PUBLIC_PACKAGES:
        for name, obj in public_names(package):
            if not any(a.rsplit(".", 1)[-1] == name and o is obj for a, o in rendered.items()):
                missing.append(f"{package}.{name}")
    assert not missing, f"public names not rendered on the API page: {', '.join(missing)}"


def test_docs_examples_run():
    """Every ```python block in the README and the pages runs (each in a fresh namespace, in one fresh
    process, so that an example registering a method does not touch the registry of the test process)."""
    blocks = []
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for i, code in enumerate(PYTHON_BLOCK.findall(page.read_text(encoding="utf-8"))):
            blocks.append((f"{page.name} block {i + 1}", code))
    assert blocks, "no python examples found in docs/"
    assert any(label.startswith("README.md") for label, _ in blocks), "the README has no python example"
    runner = textwrap.dedent(
        """
        import sys, traceback
        blocks = {blocks!r}
        failed = []
        for label, code in blocks:
            try:
                exec(compile(code, label, "exec"), {{"__name__": "__docs_example__"}})
            except Exception:
                failed.append(label)
                traceback.print_exc()
        if failed:
            print("FAILED:", ", ".join(failed), file=sys.stderr)
            sys.exit(1)
        """
    ).format(blocks=blocks)
    proc = subprocess.run([sys.executable, "-c", runner], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, "a documentation example failed:\n" + proc.stderr[-6000:]
