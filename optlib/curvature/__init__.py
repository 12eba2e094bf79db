"""Curvature as linear operators over a model's parameters: Hessian, GGN, empirical and Monte-Carlo
Fisher, K-FAC and EK-FAC; damping rules; Lanczos and Hutchinson estimators.

Every operator states its scaling convention (:mod:`optlib.curvature.losses`): the curvature is that of
the loss of the whole data set as one batch, with torch's reduction (curvlinops' convention).
"""

from __future__ import annotations

from typing import Any

from .damping import Damping, as_damping
from .estimators import Estimate, LanczosResult, hutchinson_diagonal, hutchinson_trace, lanczos
from .ggn import GGN, EmpiricalFisher, MCFisher
from .hessian import Hessian
from .kfac import EKFAC, KFAC
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, CustomLoss, Loss, MSELoss, as_loss
from .operators import CurvatureOperator, DenseCurvature, ModelCurvature

KINDS = ("hessian", "ggn", "fisher_mc", "fisher_type2", "ef", "kfac", "ekfac")
"""The curvature kinds :func:`provider` builds by name."""


def provider(model_func: Any, loss_func: Any, params: Any = None, data: Any = None, kind: str = "ggn",
             **options: Any) -> CurvatureOperator:
    """The curvature operator of spec 50 §10 by name.

    ``kind``: ``"hessian"`` (:class:`Hessian`), ``"ggn"`` and ``"fisher_type2"`` (:class:`GGN`; the type-2
    Fisher is the GGN), ``"fisher_mc"`` (:class:`MCFisher`), ``"ef"`` (:class:`EmpiricalFisher`),
    ``"kfac"`` (:class:`KFAC`), ``"ekfac"`` (:class:`EKFAC`). ``options`` go to the constructor.
    Every operator has ``matvec``/``@``, ``dense()``/``to_dense()`` and ``solve(g, damping=Damping(...))``;
    K-FAC and EK-FAC also ``factors()``.
    """
    table = {"hessian": Hessian, "ggn": GGN, "fisher_type2": GGN, "fisher_mc": MCFisher, "ef": EmpiricalFisher,
             "kfac": KFAC, "ekfac": EKFAC}
    if kind not in table:
        raise ValueError(f"unknown curvature kind {kind!r}; use one of {', '.join(KINDS)}")
    return table[kind](model_func, loss_func, params, data, **options)


Provider = provider
"""Another name for :func:`provider` (the curvature-provider interface's name)."""

__all__ = [
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "CurvatureOperator",
    "CustomLoss",
    "Damping",
    "DenseCurvature",
    "EKFAC",
    "EmpiricalFisher",
    "Estimate",
    "GGN",
    "Hessian",
    "KFAC",
    "KINDS",
    "LanczosResult",
    "Loss",
    "MCFisher",
    "MSELoss",
    "ModelCurvature",
    "Provider",
    "as_damping",
    "as_loss",
    "hutchinson_diagonal",
    "hutchinson_trace",
    "lanczos",
    "provider",
]
