r"""`UnlearningDelta`: the parameter change of an unlearning run, re-applicable to a later model.

K-FADE's updates "can be reapplied later if the model undergoes further training" (McKinney et al. 2026,
arXiv:2602.10568, abstract): the stored difference :math:`\Delta = \theta_T - \theta_0` is added to a
fine-tuned :math:`\theta_\mathrm{ft}` of the same architecture, :math:`\theta_\mathrm{ft} + s\Delta`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..result import Trace

Tensor = torch.Tensor


@dataclass
class UnlearningDelta:
    r"""Parameter deltas of an unlearning run and its per-step record.

    Attributes
    ----------
    deltas : dict of str to Tensor
        :math:`\Delta_n = \theta_{T,n} - \theta_{0,n}` for each unlearned parameter name ``n`` (names as in
        ``model.named_parameters()``), detached.
    trace : optlib.Trace
        One record per step (record 0 is the starting point): ``k``, ``forget_loss``
        (:math:`L_f(\theta_k)`), ``retain_kl`` (:math:`\mathbb{E}_{D_r}\mathrm{KL}(p_{\theta_0}\Vert p_{\theta_k})`,
        when retain data were given to monitor it), ``eta`` (step size), ``g_dot_delta`` (:math:`g^\top\delta`),
        ``grad_norm``, ``step_norm`` (:math:`\lVert\eta\delta\rVert`), ``model_kl`` (the damped quadratic model
        :math:`\tfrac12\eta^2\delta^\top(G+\lambda I)\delta = \tfrac12\eta^2 g^\top\delta`), ``time``.
    method : str
        ``"kfade"``, ``"gradient-ascent"`` or ``"newton"``.
    info : dict
        The run's settings (budget or lr, damping, steps, curvature description, counts).
    """

    deltas: dict[str, Tensor]
    trace: Trace = field(default_factory=Trace)
    method: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------- records
    @property
    def forget_loss(self) -> np.ndarray:
        """:math:`L_f(\\theta_k)` for ``k = 0..T``."""
        return self.trace.column("forget_loss")

    @property
    def retain_kl(self) -> np.ndarray:
        """Retain KL after each step (NaN where it was not monitored)."""
        return self.trace.column("retain_kl")

    @property
    def steps(self) -> int:
        return max(len(self.trace) - 1, 0)

    # ------------------------------------------------------------------------------------------- algebra
    def norm(self) -> float:
        """Euclidean norm of the whole delta."""
        return float(torch.sqrt(sum((d.double() ** 2).sum() for d in self.deltas.values())))

    def flat(self) -> Tensor:
        """The delta as one vector (parameter order of :attr:`deltas`)."""
        return torch.cat([d.reshape(-1) for d in self.deltas.values()])

    def scaled(self, scale: float) -> UnlearningDelta:
        """A copy with every delta multiplied by ``scale`` (the trace is kept as is)."""
        return UnlearningDelta({n: scale * d for n, d in self.deltas.items()}, self.trace, self.method,
                               dict(self.info, scale=scale))

    # ------------------------------------------------------------------------------------------- applying
    @torch.no_grad()
    def apply(self, model: nn.Module, scale: float = 1.0) -> nn.Module:
        r"""Add :math:`s\Delta` to ``model``'s parameters in place (:math:`\theta \leftarrow \theta + s\Delta`) and
        return the model. The model may be a later, fine-tuned copy of the original: only names and shapes
        must match. ``scale=-1`` undoes an earlier application.

        Raises
        ------
        ValueError
            A name missing from the model, a shape mismatch, or a non-finite ``scale``.
        """
        scale = float(scale)
        if not np.isfinite(scale):
            raise ValueError(f"scale must be finite, got {scale}")
        named = dict(model.named_parameters())
        missing = [n for n in self.deltas if n not in named]
        if missing:
            raise ValueError(f"the model has no parameter(s) {', '.join(missing)}; its parameters are "
                             f"{', '.join(named)}")
        bad = [f"{n}: delta {tuple(d.shape)} vs parameter {tuple(named[n].shape)}"
               for n, d in self.deltas.items() if d.shape != named[n].shape]
        if bad:
            raise ValueError("shape mismatch: " + "; ".join(bad))
        for n, d in self.deltas.items():
            p = named[n]
            p.add_(d.to(device=p.device, dtype=p.dtype), alpha=scale)
        return model

    # ------------------------------------------------------------------------------------------- storage
    def state_dict(self) -> dict[str, Any]:
        """Deltas, method, settings and trace records as plain objects (``torch.save``-able)."""
        return {"deltas": {n: d.detach().cpu().clone() for n, d in self.deltas.items()}, "method": self.method,
                "info": dict(self.info), "trace": [dict(r) for r in self.trace]}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> UnlearningDelta:
        return cls(dict(state["deltas"]), Trace(state.get("trace", [])), state.get("method", ""),
                   dict(state.get("info", {})))

    def __repr__(self) -> str:
        n = sum(d.numel() for d in self.deltas.values())
        return (f"UnlearningDelta(method={self.method!r}, {len(self.deltas)} tensors, {n} entries, "
                f"norm={self.norm():.4g}, steps={self.steps})")
