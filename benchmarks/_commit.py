"""What the commit under test provides: module handles whose absence makes a benchmark *skipped*, not failed.

asv runs the working tree's benchmarks against every commit of a range (``make dashboard``), and with its
forkserver it imports the whole suite once per commit: a single top-level import of a module that an older
commit does not have yet would fail every benchmark of that commit. So the suite imports the project's modules
through :func:`requires`. At a commit that has the module, the real module comes back. At one that does not,
an :class:`Absent` stand-in comes back, and using it (in a benchmark's ``setup`` or ``setup_cache``) raises
``NotImplementedError``, which asv records as "skipped" for that commit: the graph simply starts later. A
module that exists but fails to import for another reason (a broken commit) still raises: that is a failure
and is recorded as one. The same holds for a name the module does not define yet (:meth:`Present.__getattr__`).

Benchmarks with a ``setup_cache`` compute it through :func:`compute_or_skip` and call :func:`skip_if_absent` on the
cache in ``setup``, because asv marks everything depending on a raising ``setup_cache`` as failed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any


class Absent:
    """Stands in for a module the commit under test does not have; any use raises ``NotImplementedError``."""

    def __init__(self, name: str, reason: str):
        self._name = name
        self._reason = reason

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise NotImplementedError(f"{self._name} is not in this commit ({self._reason})")


class Present:
    """A module of the commit under test; a name it lacks raises ``NotImplementedError`` (asv: skipped)."""

    def __init__(self, module: ModuleType):
        self._module = module

    def __getattr__(self, attr: str) -> Any:
        try:
            return getattr(self._module, attr)
        except AttributeError:
            raise NotImplementedError(f"{self._module.__name__}.{attr} is not in this commit") from None


def requires(name: str) -> Present | Absent:
    """The module ``name`` of the commit under test, or a stand-in whose use skips the benchmark.

    Only the module itself (or a package above it) being absent counts as "not in this commit"; an import
    error raised from inside an existing module propagates.
    """
    try:
        return Present(importlib.import_module(name))
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            return Absent(name, f"no module {missing}")
        raise


class Skipped:
    """A ``setup_cache`` result recording that the commit lacks what the benchmark needs."""

    def __init__(self, reason: str):
        self.reason = reason


def compute_or_skip(compute: Callable[[], Any]) -> Any:
    """``compute()``, or :class:`Skipped` when the commit lacks a module it needs.

    Each benchmark module's ``setup_cache`` is its own small function calling this one: asv keys a cache by
    the file and line of the ``setup_cache`` function, so one shared wrapper would make every cache the same.
    """
    try:
        return compute()
    except NotImplementedError as exc:
        return Skipped(str(exc))


def skip_if_absent(cache: Any, key: Any = None) -> None:
    """Raise ``NotImplementedError`` (asv: skipped) when the cache says the commit lacked a module, or when
    ``key`` is given and the cache has no entry for it (a parameter value the commit does not have yet)."""
    if isinstance(cache, Skipped):
        raise NotImplementedError(cache.reason)
    if key is not None and key not in cache:
        raise NotImplementedError(f"{key!r} is not in this commit")
