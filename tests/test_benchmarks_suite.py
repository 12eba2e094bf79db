"""The asv suite in ``benchmarks/`` across commits: it imports at a commit that lacks the code it measures, its
benchmarks are then *skipped* (asv's ``NotImplementedError`` in ``setup``), never failed, and the parameter
names its histories are keyed by are fixed lists that match what the code at HEAD provides."""

from __future__ import annotations

import importlib
import inspect
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _commit  # noqa: E402

SUITE = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if not p.stem.startswith("_"))
PROJECT = ("optlib", "scale", "kernels")
KINDS = ("time_", "track_", "peakmem_", "mem_", "timeraw_")


def _benchmark_classes(module):
    for name, obj in vars(module).items():
        if inspect.isclass(obj) and obj.__module__ == module.__name__ and not name.startswith("_") \
                and any(attr.startswith(KINDS) for attr in dir(obj)):
            yield obj


def _combos(cls):
    params = getattr(cls, "params", None)
    if not params:
        return [()]
    if not isinstance(params[0], (list, tuple)):  # one parameter given as a flat list
        params = [params]
    return list(itertools.product(*params))


def _fresh(module_name: str, monkeypatch):
    """Import ``benchmarks.<module_name>`` anew (the previous module object is restored after the test)."""
    full = f"benchmarks.{module_name}"
    package = importlib.import_module("benchmarks")
    # the import below binds the package attribute too: restore it (or its absence) afterwards
    monkeypatch.setattr(package, module_name, getattr(package, module_name, None), raising=False)
    if full in sys.modules:
        monkeypatch.delitem(sys.modules, full)
    else:
        monkeypatch.setitem(sys.modules, full, None)
        monkeypatch.delitem(sys.modules, full)
    return importlib.import_module(full)


def _hide_project(monkeypatch):
    """Make the project's packages unimportable, as at a commit before any of them existed."""
    for name in list(sys.modules):
        if name.split(".")[0] in PROJECT:
            monkeypatch.delitem(sys.modules, name)
    for top in PROJECT:
        monkeypatch.setitem(sys.modules, top, None)


# ------------------------------------------------------------------------------------------ the handles


def test_requires_returns_the_module_when_the_commit_has_it():
    handle = _commit.requires("optlib.theory")
    import optlib.theory

    assert handle.FAMILY_TABLES is optlib.theory.FAMILY_TABLES


def test_a_missing_module_or_name_is_not_in_this_commit():
    absent = _commit.requires("optlib.no_such_family")
    with pytest.raises(NotImplementedError, match="optlib.no_such_family is not in this commit"):
        absent.anything  # noqa: B018
    with pytest.raises(NotImplementedError, match=r"optlib.theory.no_such_table is not in this commit"):
        _commit.requires("optlib.theory").no_such_table  # noqa: B018


def test_a_module_that_fails_to_import_for_another_reason_is_a_failure(tmp_path, monkeypatch):
    """A broken commit (its module imports a dependency that is not there) must not be hidden as "skipped"."""
    (tmp_path / "broken_module_for_asv.py").write_text("import no_such_dependency_for_asv\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_for_asv"):
        _commit.requires("broken_module_for_asv")


def test_skip_if_absent_reads_the_cache_and_its_keys():
    with pytest.raises(NotImplementedError, match="no module"):
        _commit.skip_if_absent(_commit.Skipped("no module x"))
    with pytest.raises(NotImplementedError, match="'drift' is not in this commit"):
        _commit.skip_if_absent({"bilevel": 1}, "drift")
    _commit.skip_if_absent({"drift": 1}, "drift")
    _commit.skip_if_absent({"drift": 1})


def test_compute_or_skip_turns_only_absence_into_a_skip():
    assert _commit.compute_or_skip(lambda: 3) == 3
    skipped = _commit.compute_or_skip(lambda: _commit.requires("optlib.no_such_family").run())
    assert isinstance(skipped, _commit.Skipped) and "no_such_family" in skipped.reason
    with pytest.raises(ZeroDivisionError):  # a real error in the computation is still an error
        _commit.compute_or_skip(lambda: 1 / 0)


# ---------------------------------------------------------------------- every benchmark at an old commit


@pytest.mark.parametrize("module_name", SUITE)
def test_at_a_commit_without_the_project_every_benchmark_is_skipped(module_name, monkeypatch):
    """The suite module imports, every ``setup_cache`` returns ``Skipped`` and every benchmark's ``setup``
    raises ``NotImplementedError`` for every parameter combination: what asv records as "skipped"."""
    _hide_project(monkeypatch)
    module = _fresh(module_name, monkeypatch)
    classes = list(_benchmark_classes(module))
    assert classes, f"benchmarks/{module_name}.py defines no benchmark"
    for cls in classes:
        instance = cls()
        args = ()
        if hasattr(cls, "setup_cache"):
            cache = instance.setup_cache()
            assert isinstance(cache, _commit.Skipped), f"{cls.__name__}.setup_cache did not skip: {cache!r}"
            args = (cache,)
        assert hasattr(cls, "setup"), f"{cls.__name__} has no setup to skip in"
        for combo in _combos(cls):
            with pytest.raises(NotImplementedError):
                instance.setup(*args, *combo)


def test_a_family_the_commit_lacks_is_skipped_and_a_broken_one_fails():
    """theorems: the cache of a commit without the drift table skips ``family=drift``; a table that raised
    fails that family alone."""
    from benchmarks import theorems

    bench = theorems.TheoremTable()
    cache = {"bilevel": {"holding": 1.0, "worst_margin": 0.5}, "curvature": {"error": "ValueError: x"}}
    bench.setup(cache, "bilevel")
    assert bench.track_share_holding(cache, "bilevel") == 1.0
    with pytest.raises(NotImplementedError):
        bench.setup(cache, "drift")
    with pytest.raises(RuntimeError, match="curvature table raised ValueError"):
        bench.setup(cache, "curvature")


def test_a_shape_set_the_commit_lacks_is_skipped(monkeypatch):
    from benchmarks import muon
    from scale.bench import muon_step

    monkeypatch.delitem(muon_step.STEP_SHAPES, "4096x1024")
    with pytest.raises(NotImplementedError, match="4096x1024"):
        muon.Ratio().setup("4096x1024")


# -------------------------------------------------------------------- names the histories are keyed by


def test_fixed_parameter_lists_match_the_code_at_head():
    """asv keys a history by the parameter values; the suite writes them out (so that an older commit's
    registry cannot relabel them) and they must name exactly what HEAD provides."""
    from benchmarks import least_squares, muon, quantize, second_order, theorems, training, user_path
    from optlib.problems import user_path_problems
    from optlib.theory import FAMILY_TABLES
    from scale.bench import least_squares as bench_ls
    from scale.bench import muon_step
    from scale.bench import second_order as bench_so
    from scale.bench import training as bench_training
    from scale.quantize.calibration import METHODS as QUANTIZERS

    assert theorems.FAMILIES == list(FAMILY_TABLES)
    assert muon.SHAPES == list(muon_step.STEP_SHAPES) and muon.IMPLS == list(muon_step.STEP_IMPLS)
    assert training.SIDES == list(bench_training.SIDES)
    assert training.METHODS == list(bench_training.DEFAULT_METHODS) and training.ANCHOR == bench_training.ANCHOR
    assert second_order.PROBLEMS == list(bench_so.LOGISTIC_PROBLEMS)
    assert second_order.SOLVERS == list(bench_so.solvers())
    assert least_squares.SOLVERS == list(bench_ls.SOLVERS)
    assert user_path.PROBLEMS == list(user_path_problems(quick=True))
    assert set(quantize.METHODS) <= set(QUANTIZERS)


@pytest.mark.parametrize("module_name", SUITE)
def test_parameters_are_plain_values(module_name):
    """Parameter values are strings, numbers or tuples of them: what asv can key a history by."""
    module = importlib.import_module(f"benchmarks.{module_name}")
    for cls in _benchmark_classes(module):
        for combo in _combos(cls):
            for value in combo:
                assert isinstance(value, (str, int, float, tuple)), (cls.__name__, value)


def test_asv_check_accepts_the_suite():
    """asv itself discovers the suite and checks every benchmark's signature (setup, setup_cache, params)."""
    proc = subprocess.run([sys.executable, "-m", "asv", "check", "-E", f"existing:{sys.executable}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
