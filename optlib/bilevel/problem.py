"""`BilevelProblem`: ``min_x Phi(x) = f(x, y*(x))``, ``y*(x) = argmin_y g(x, y)``, with counted oracles.

The upper objective ``f`` and the lower objective ``g`` are torch functions of two flat tensors
``(x, y)`` (deterministic) or ``(x, y, batch)`` (stochastic: the problem then carries samplers that
draw the batches). :meth:`BilevelProblem.from_modules` builds the same object over the parameters of
two ``nn.Module``\\ s. Every oracle a bilevel method uses is here and counted:

* ``upper_grads(x, y)``: ``(grad_x f, grad_y f)`` (one backward pass, counted as ``nupper``);
* ``lower_grad(x, y)``: ``grad_y g`` (``nlower``);
* ``hvp_yy(x, y, v)``: ``grad^2_yy g v`` (``nhvp``);
* ``cross(x, y, v)``: ``grad^2_xy g v = grad_x <grad_y g(x, y), v>`` (``njvp``, the Jacobian-vector
  product of the hypergradient formula).

These are the four stochastic oracles of the bilevel literature (e.g. Ji, Yang & Liang 2021;
Hao, Gong & Liu 2024, assumption on the oracles), so a run's cost is reported in the same units.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

COUNTER_NAMES = ("nupper", "nlower", "nhvp", "njvp", "nfev")


@dataclass
class BilevelCounters:
    """Oracle counts: upper gradients, lower gradients, Hessian- and Jacobian-vector products, values."""

    nupper: int = 0
    nlower: int = 0
    nhvp: int = 0
    njvp: int = 0
    nfev: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in COUNTER_NAMES}

    def total(self) -> int:
        """Gradient-equivalent oracle calls (values excluded): the x-axis of the experiments."""
        return self.nupper + self.nlower + self.nhvp + self.njvp


@dataclass
class BilevelConstants:
    """Constants of a bilevel problem; ``None`` where unknown.

    mu   : strong-convexity modulus of ``g(x, .)`` (uniform in x).
    l_g1 : Lipschitz constant of ``grad_y g`` in y (largest eigenvalue of ``grad^2_yy g``).
    L0, L1 : ``Phi`` is (L0, L1)-smooth: ``||grad^2 Phi(x)|| <= L0 + L1 ||grad Phi(x)||``.
    L_phi_y : the hypergradient formula evaluated at ``y`` is ``L_phi_y``-Lipschitz in ``y``
        (the bias constant of an inexact lower solution).
    """

    mu: float | None = None
    l_g1: float | None = None
    L0: float | None = None
    L1: float | None = None
    L_phi_y: float | None = None
    notes: dict[str, str] = field(default_factory=dict)


def _flat(t: Any, name: str, dtype: torch.dtype) -> Tensor:
    if isinstance(t, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(t))
    t = torch.as_tensor(t)
    if not t.is_floating_point() or t.is_complex():
        raise ValueError(f"{name} must be a real floating-point vector, got dtype {t.dtype}")
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty flat vector, got shape {tuple(t.shape)}")
    return t.detach().to(dtype).contiguous()


class BilevelProblem:
    """A bilevel problem over flat tensors ``x`` (upper variable) and ``y`` (lower variable).

    Parameters
    ----------
    f, g : callable
        ``f(x, y)`` and ``g(x, y)`` returning scalar tensors, or ``f(x, y, batch)`` and ``g(x, y, batch)``
        when samplers are given.
    x0, y0 : tensor
        Starting points; they fix the dimensions.
    upper_sampler, lower_sampler : callable, optional
        ``sampler(generator) -> batch`` for stochastic problems (``torch.Generator`` in, any batch out). Both or
        neither.
    constants : BilevelConstants, optional
    hypergradient : callable, optional
        ``x -> grad Phi(x)`` in closed form, for problems that have one (the exact problems).
    solution : callable, optional
        ``x -> y*(x)`` in closed form.
    phi : callable, optional
        ``x -> Phi(x)`` in closed form.
    """

    def __init__(
        self,
        f: Callable[..., Tensor],
        g: Callable[..., Tensor],
        x0: Any,
        y0: Any,
        *,
        upper_sampler: Callable[[torch.Generator], Any] | None = None,
        lower_sampler: Callable[[torch.Generator], Any] | None = None,
        constants: BilevelConstants | None = None,
        hypergradient: Callable[[Tensor], Tensor] | None = None,
        solution: Callable[[Tensor], Tensor] | None = None,
        phi: Callable[[Tensor], Tensor] | None = None,
        name: str = "bilevel",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if (upper_sampler is None) != (lower_sampler is None):
            raise ValueError("upper_sampler and lower_sampler go together (a stochastic problem needs both)")
        self.f, self.g = f, g
        self.dtype = dtype
        self.x0 = _flat(x0, "x0", dtype)
        self.y0 = _flat(y0, "y0", dtype)
        self.nx, self.ny = self.x0.numel(), self.y0.numel()
        self.upper_sampler, self.lower_sampler = upper_sampler, lower_sampler
        self.constants = constants or BilevelConstants()
        self._hypergradient, self._solution, self._phi = hypergradient, solution, phi
        self.name = name
        self.counters = BilevelCounters()
        self._shared: tuple[Tensor, Tensor, tuple[Any, ...], tuple[Tensor, Tensor, Tensor]] | None = None

    # ------------------------------------------------------------------ construction from modules
    @classmethod
    def from_modules(
        cls,
        upper: nn.Module,
        lower: nn.Module,
        f: Callable[..., Tensor],
        g: Callable[..., Tensor],
        *,
        upper_sampler: Callable[[torch.Generator], Any] | None = None,
        lower_sampler: Callable[[torch.Generator], Any] | None = None,
        name: str = "bilevel-modules",
    ) -> BilevelProblem:
        """The problem over the parameters of ``upper`` (x) and ``lower`` (y).

        ``f(upper, lower[, batch])`` and ``g(upper, lower[, batch])`` receive the modules; during
        oracle calls their parameters are replaced by views of the flat vectors (as
        :func:`torch.func.functional_call` does), so the functions are written as ordinary PyTorch code
        (``module(inputs)``, ``module.weight``, ``module.parameters()``).
        :meth:`write_back` copies flat vectors into the modules' parameters.
        """
        ux, uy = ParameterLayout(upper), ParameterLayout(lower)

        def wrap(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
            def flat_fn(x: Tensor, y: Tensor, *batch: Any) -> Tensor:
                with ux.bound(x) as um, uy.bound(y) as lm:
                    return fn(um, lm, *batch)

            return flat_fn

        prob = cls(wrap(f), wrap(g), ux.flatten(), uy.flatten(), upper_sampler=upper_sampler,
                   lower_sampler=lower_sampler, name=name,
                   dtype=ux.dtype)
        prob.layouts = (ux, uy)
        return prob

    def write_back(self, x: Tensor, y: Tensor) -> None:
        """Copy ``x`` and ``y`` into the parameters of the modules the problem was built from."""
        layouts = getattr(self, "layouts", None)
        if layouts is None:
            raise ValueError(f"problem '{self.name}' was not built from modules (BilevelProblem.from_modules)")
        layouts[0].assign(x)
        layouts[1].assign(y)

    # ------------------------------------------------------------------ validation
    @property
    def stochastic(self) -> bool:
        return self.upper_sampler is not None

    def check_xy(self, x: Any, y: Any) -> tuple[Tensor, Tensor]:
        """``x`` and ``y`` as flat tensors of the problem's shapes, or a ``ValueError`` naming which is wrong."""
        x = _flat(x, "x", self.dtype)
        y = _flat(y, "y", self.dtype)
        if x.numel() != self.nx:
            raise ValueError(f"x has {x.numel()} entries but problem '{self.name}' has an upper variable of {self.nx}")
        if y.numel() != self.ny:
            raise ValueError(f"y has {y.numel()} entries but problem '{self.name}' has a lower variable of {self.ny}")
        return x, y

    def batches(self, generator: torch.Generator) -> tuple[Any, Any]:
        """One upper and one lower batch (empty tuples for a deterministic problem)."""
        if not self.stochastic:
            return (), ()
        return (self.upper_sampler(generator),), (self.lower_sampler(generator),)

    # ------------------------------------------------------------------ oracles
    def _scalar(self, value: Any, which: str) -> Tensor:
        if not isinstance(value, Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"the {which} objective must return a scalar tensor, got {shape}")
        return value.reshape(())

    def upper_value(self, x: Tensor, y: Tensor, batch: Sequence[Any] = ()) -> Tensor:
        self.counters.nfev += 1
        return self._scalar(self.f(x, y, *batch), "upper").detach()

    def lower_value(self, x: Tensor, y: Tensor, batch: Sequence[Any] = ()) -> Tensor:
        self.counters.nfev += 1
        return self._scalar(self.g(x, y, *batch), "lower").detach()

    def upper_grads(self, x: Tensor, y: Tensor, batch: Sequence[Any] = ()) -> tuple[Tensor, Tensor]:
        """``(grad_x f(x, y), grad_y f(x, y))``."""
        self.counters.nupper += 1
        xl, yl = x.detach().requires_grad_(True), y.detach().requires_grad_(True)
        with torch.enable_grad():
            val = self._scalar(self.f(xl, yl, *batch), "upper")
            gx, gy = torch.autograd.grad(val, (xl, yl), allow_unused=True)
        return (torch.zeros_like(x) if gx is None else gx.detach(),
                torch.zeros_like(y) if gy is None else gy.detach())

    def _lower_graph(self, x: Tensor, y: Tensor, batch: Sequence[Any]) -> tuple[Tensor, Tensor, Tensor]:
        xl, yl = x.detach().requires_grad_(True), y.detach().requires_grad_(True)
        with torch.enable_grad():
            val = self._scalar(self.g(xl, yl, *batch), "lower")
            (gy,) = torch.autograd.grad(val, yl, create_graph=True)
        return xl, yl, gy

    def lower_grad(self, x: Tensor, y: Tensor, batch: Sequence[Any] = ()) -> Tensor:
        """``grad_y g(x, y)``."""
        self.counters.nlower += 1
        yl = y.detach().requires_grad_(True)
        with torch.enable_grad():
            val = self._scalar(self.g(x.detach(), yl, *batch), "lower")
            (gy,) = torch.autograd.grad(val, yl)
        return gy.detach()

    def _lower_vjp(self, x: Tensor, y: Tensor, v: Tensor, batch: Sequence[Any], wrt_x: bool) -> Tensor:
        """``grad_w <grad_y g(x, y), v>`` for ``w = x`` or ``y`` (one double backward)."""
        (xl, yl, gy), shared = self._graph_for(x, y, batch)
        target = xl if wrt_x else yl
        if not gy.requires_grad:
            return torch.zeros_like(target).detach()
        (out,) = torch.autograd.grad(gy, target, v, retain_graph=shared, allow_unused=True)
        return torch.zeros_like(target).detach() if out is None else out.detach()

    def hvp_operator(self, x: Tensor, y: Tensor, batch: Sequence[Any] = ()) -> Callable[[Tensor], Tensor]:
        """``v -> grad^2_yy g(x, y) v`` at a fixed point: the lower gradient's graph is built once (or taken from
        :meth:`shared_lower_graph`) and every product is one backward pass through it (each still counted in
        ``nhvp``). For the inner loops of CG, Neumann and power iteration."""
        (_, yl, gy), _ = self._graph_for(x, y, batch)

        def apply(v: Tensor) -> Tensor:
            self.counters.nhvp += 1
            if not gy.requires_grad:
                return torch.zeros_like(y)
            (hv,) = torch.autograd.grad(gy, yl, v, retain_graph=True, allow_unused=True)
            return torch.zeros_like(y) if hv is None else hv.detach()

        return apply

    @contextlib.contextmanager
    def shared_lower_graph(self, x: Tensor, y: Tensor, batch: Sequence[Any] = ()) -> Iterator[None]:
        """Within the block, :meth:`hvp_operator`, :meth:`hvp_yy` and :meth:`cross` called with these very
        ``x``, ``y`` and batch objects differentiate one graph of ``grad_y g(x, y)``, built here, instead of
        building their own: an estimator that solves with the Hessian and then applies the cross derivative at
        the same point (CG, Neumann, z-iterate) pays one forward and one first backward pass, not two. Oracle
        counts are unchanged; other arguments build their own graph as outside the block."""
        previous = self._shared
        self._shared = (x, y, tuple(batch), self._lower_graph(x, y, batch))
        try:
            yield
        finally:
            self._shared = previous

    def _graph_for(self, x: Tensor, y: Tensor, batch: Sequence[Any]) -> tuple[tuple[Tensor, Tensor, Tensor], bool]:
        """The lower graph at ``(x, y, batch)`` and whether it is the shared one (to be retained)."""
        shared = self._shared
        if (shared is not None and shared[0] is x and shared[1] is y and len(shared[2]) == len(batch)
                and all(a is b for a, b in zip(shared[2], batch))):
            return shared[3], True
        return self._lower_graph(x, y, batch), False

    def hvp_yy(self, x: Tensor, y: Tensor, v: Tensor, batch: Sequence[Any] = ()) -> Tensor:
        """``grad^2_yy g(x, y) v`` (double backward)."""
        self.counters.nhvp += 1
        return self._lower_vjp(x, y, v, batch, wrt_x=False)

    def cross(self, x: Tensor, y: Tensor, v: Tensor, batch: Sequence[Any] = ()) -> Tensor:
        """``grad^2_xy g(x, y) v = grad_x <grad_y g(x, y), v>`` (shape of ``x``)."""
        self.counters.njvp += 1
        return self._lower_vjp(x, y, v, batch, wrt_x=True)

    def lower_hessian(self, x: Tensor, y: Tensor, batch: Sequence[Any] = ()) -> Tensor:
        """The dense ``grad^2_yy g(x, y)`` (``ny`` Hessian-vector products, counted as such)."""
        eye = torch.eye(self.ny, dtype=self.dtype)
        hvp = self.hvp_operator(x, y, batch)
        return torch.stack([hvp(eye[i]) for i in range(self.ny)])

    # ------------------------------------------------------------------ closed forms (exact problems)
    def true_hypergradient(self, x: Tensor) -> Tensor:
        if self._hypergradient is None:
            raise ValueError(f"problem '{self.name}' has no closed-form hypergradient")
        return self._hypergradient(x)

    def lower_solution(self, x: Tensor) -> Tensor:
        if self._solution is None:
            raise ValueError(f"problem '{self.name}' has no closed-form lower solution y*(x)")
        return self._solution(x)

    def phi(self, x: Tensor) -> Tensor:
        if self._phi is None:
            raise ValueError(f"problem '{self.name}' has no closed-form Phi(x)")
        return self._phi(x)

    @property
    def has_closed_form(self) -> bool:
        return self._hypergradient is not None

    def __repr__(self) -> str:
        return f"BilevelProblem(name={self.name!r}, nx={self.nx}, ny={self.ny}, stochastic={self.stochastic})"


class ParameterLayout:
    """The parameters of one module as a flat vector, and the module evaluated at another vector."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.names = [n for n, p in module.named_parameters() if p.requires_grad]
        params = [p for _, p in module.named_parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"{type(module).__name__} has no trainable parameters")
        dtypes = {p.dtype for p in params}
        if len(dtypes) != 1:
            raise ValueError(f"{type(module).__name__} mixes parameter dtypes {sorted(map(str, dtypes))}")
        self.dtype = params[0].dtype
        self.shapes = [p.shape for p in params]
        self.sizes = [p.numel() for p in params]

    def flatten(self) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for n, p in self.module.named_parameters() if n in self.names])

    def split(self, flat: Tensor) -> dict[str, Tensor]:
        parts = torch.split(flat, self.sizes)
        return {n: t.view(s) for n, t, s in zip(self.names, parts, self.shapes)}

    def bound(self, flat: Tensor) -> _Bound:
        return _Bound(self, flat)

    def assign(self, flat: Tensor) -> None:
        with torch.no_grad():
            for (n, p), t in zip(((n, p) for n, p in self.module.named_parameters() if n in self.names),
                                 torch.split(flat.detach(), self.sizes)):
                p.copy_(t.view_as(p))


class _Bound:
    """Context manager: the module itself, its parameters temporarily replaced by views of a flat vector
    (so ``module(x)``, ``module.weight`` and ``module.parameters()`` all see them), restored on exit."""

    def __init__(self, layout: ParameterLayout, flat: Tensor) -> None:
        self.layout, self.flat = layout, flat
        self.saved: list[tuple[nn.Module, str, Any]] = []

    def __enter__(self) -> nn.Module:
        for name, tensor in self.layout.split(self.flat).items():
            *path, leaf = name.split(".")
            owner = self.layout.module.get_submodule(".".join(path)) if path else self.layout.module
            self.saved.append((owner, leaf, owner._parameters[leaf]))
            owner._parameters[leaf] = tensor  # a plain tensor in the parameter slot: autograd flows to `flat`
        return self.layout.module

    def __exit__(self, *exc: Any) -> None:
        for owner, leaf, original in reversed(self.saved):
            owner._parameters[leaf] = original
        self.saved.clear()
