"""What runs leave on disk: one conversion to JSON-safe values, and matplotlib on its file-only backend.

Both the training application (metrics, loss curves, the scaling-law plot) and every benchmark of
:mod:`scale.bench` write through these, so the application needs nothing from the benchmark wing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["json_safe", "pyplot"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (imported on first use: matplotlib is slow to load)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def json_safe(obj: Any) -> Any:
    """A copy of ``obj`` that ``json.dumps`` writes as standard JSON.

    Mappings become dicts with string keys, lists and tuples lists, numpy scalars and arrays Python
    numbers and lists; non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"`` (standard
    JSON has no such numbers); any other object its ``repr``.
    """
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return repr(obj)
