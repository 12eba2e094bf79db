r"""Muon: momentum, then an orthogonalized step, for the hidden weight matrices of a network.

For each parameter :math:`W` (viewed as a matrix, see :func:`optlib.linalg.matrix_view`) with gradient
:math:`g_t`, momentum :math:`\beta`, learning rate :math:`\gamma` and weight decay :math:`\lambda`:

.. math::

    \text{ema (Keller Jordan):}\quad & M_t = \beta M_{t-1} + (1-\beta) g_t, &
        D_t &= (1-\beta) g_t + \beta M_t \ \text{(Nesterov)}\ \text{or}\ M_t \\
    \text{sum (torch.optim.Muon docs):}\quad & B_t = \beta B_{t-1} + g_t, &
        D_t &= g_t + \beta B_t \ \text{(Nesterov)}\ \text{or}\ B_t \\
    & O_t = \mathrm{orth}(D_t) \approx U V^\top \ \text{for}\ D_t = U\Sigma V^\top \\
    & W_t = W_{t-1}(1 - \gamma\lambda) - \gamma\, s(m, n)\, O_t

with :math:`s(m, n)` the shape scaling of the ``(m, n)`` matrix view: ``"keller"`` :math:`\sqrt{\max(1, m/n)}`,
``"moonshot"`` :math:`0.2\sqrt{\max(m, n)}` (Liu et al. 2025, "Muon is Scalable for LLM Training",
arXiv:2502.16982: the update's RMS then matches AdamW's, about 0.2, so AdamW's lr and weight decay carry
over), ``"none"`` :math:`1`. Weight decay is decoupled and uses the unscaled :math:`\gamma`, as both
references do. In the LMO reading (spec 20, §2) the step is
:math:`W \leftarrow W + \mathrm{LMO}_{\|Z\|_{2\to2}\le t}(D_t)` with radius :math:`t = \gamma\, s(m, n)`; it is
exact with ``orthogonalizer="svd"`` and approximate with Newton–Schulz (for Keller's coefficients the singular
values of :math:`O_t` lie in :math:`[0.68, 1.21]` wherever :math:`\sigma_i(D_t) \ge 2\cdot 10^{-3}\|D_t\|_F`, see
``tests/test_newton_schulz.py``; smaller ones have not converged after five steps).

The two momentum forms give parallel directions: :math:`M_t = (1-\beta) B_t` and the Nesterov
:math:`D^{\text{ema}}_t = (1-\beta) D^{\text{sum}}_t`. Orthogonalization divides by the Frobenius norm, so the
updates agree up to the ``eps`` term and rounding; they differ for methods that use the size of the
momentum (e.g. radius rules :math:`t \propto \|D\|_*`).

Parity with ``torch.optim.Muon`` (torch 2.13, ``torch/optim/_muon.py``, read): its docstring states the sum form,
but its code keeps the EMA buffer (``lerp``), and its Newton–Schulz runs in bfloat16. So
``torch.optim.Muon(params, lr, weight_decay=wd, momentum=beta, nesterov=n)`` equals
``Muon(params, lr, weight_decay=wd, momentum=beta, nesterov=n, momentum_style="ema", adjust_lr="keller",
ns_dtype=torch.bfloat16)`` exactly (the test asserts identical parameters and buffers). torch names
``adjust_lr_fn="original"`` (its default) what we call ``"keller"``, and ``"match_rms_adamw"`` ``"moonshot"``.

Sources: K. Jordan, Y. Jin, V. Boza, J. You, F. Cesista, L. Newhouse, J. Bernstein, "Muon: An optimizer for
hidden layers in neural networks" (blog, 2024, https://kellerjordan.github.io/posts/muon/), reference code
KellerJordan/Muon ``muon.py``; the ``torch.optim.Muon`` documentation
(https://docs.pytorch.org/docs/stable/generated/torch.optim.Muon.html); J. Liu et al., arXiv:2502.16982.

Differences from both references, on purpose: conv filters ``(out, in, kh, kw)`` and expert stacks ``(E, m, n)``
are accepted (the reshape rule of :func:`optlib.linalg.matrix_view`; ``torch.optim.Muon`` takes 2-D only), a
parameter without a gradient is skipped (its momentum is not decayed, unlike Keller's distributed ``Muon``,
which fills missing gradients with zeros), and a non-finite gradient raises instead of poisoning the momentum.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch.distributed.tensor import DTensor, Shard

from kernels.newton_schulz import available as triton_available
from kernels.newton_schulz import newton_schulz_triton
from optlib.linalg.newton_schulz import (
    KELLER_COEFFICIENTS,
    NS_MATMULS_PER_STEP,
    matrix_view,
    newton_schulz,
    ns_coefficient_schedule,
    polar,
)

Tensor = torch.Tensor

__all__ = [
    "ADJUST_LR",
    "MOMENTUM_STYLES",
    "Muon",
    "ORTHOGONALIZERS",
    "lr_scale",
    "muon_direction",
    "muon_directions",
    "orthogonalize",
    "orthogonalize_many",
    "orthogonalize_sharded",
    "shard_owners",
]

MOMENTUM_STYLES = ("ema", "sum")
ADJUST_LR = ("keller", "moonshot", "none")
ORTHOGONALIZERS = ("newton-schulz", "svd", "triton")
_TORCH_NAMES = {"original": "keller", "match_rms_adamw": "moonshot", None: "keller"}
_ROUTING_HINT = "route it to AdamW with optlib.optim.muon_param_groups(model) (or use optlib.optim.MuonWithAdamW)"


# ------------------------------------------------------------------------------------------------------------
# Functional pieces (also used by DropMuon)
# ------------------------------------------------------------------------------------------------------------


def muon_directions(grads: list[Tensor], bufs: list[Tensor], *, momentum: float, nesterov: bool,
                    style: str) -> list[Tensor]:
    r"""Update the momentum buffers ``bufs`` in place and return the directions to orthogonalize.

    ``style="ema"``: :math:`M \leftarrow \beta M + (1-\beta) g`; direction :math:`(1-\beta) g + \beta M`
    with Nesterov, else :math:`M`. ``style="sum"``: :math:`B \leftarrow \beta B + g`; direction
    :math:`g + \beta B` with Nesterov, else :math:`B`. Without Nesterov the returned tensors *are* the
    buffers: do not modify them in place. One ``torch._foreach_*`` call per operation serves the whole list
    (the arithmetic per tensor is that of the single-tensor ops).
    """
    if style == "ema":
        torch._foreach_lerp_(bufs, grads, 1.0 - momentum)  # M + (1 - beta)(g - M)
        return list(torch._foreach_lerp(grads, bufs, momentum)) if nesterov else list(bufs)
    if style == "sum":
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads)
        return list(torch._foreach_add(grads, bufs, alpha=momentum)) if nesterov else list(bufs)
    raise ValueError(f"momentum_style must be one of {MOMENTUM_STYLES}, got {style!r}")


def muon_direction(grad: Tensor, buf: Tensor, *, momentum: float, nesterov: bool, style: str) -> Tensor:
    """:func:`muon_directions` for one tensor."""
    return muon_directions([grad], [buf], momentum=momentum, nesterov=nesterov, style=style)[0]


def _matrix_shape(shape) -> tuple[int, int]:
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"a {len(shape)}-D shape {shape} has no matrix view; {_ROUTING_HINT}")
    if len(shape) <= 3:
        return shape[-2], shape[-1]
    return shape[0], math.prod(shape[1:])


def lr_scale(shape, adjust_lr: str) -> float:
    r"""The factor :math:`s(m, n)` multiplying the learning rate for a parameter of this shape.

    ``(m, n)`` is the matrix view of the shape (conv filters ``(out, in*kh*kw)``, expert stacks the per-expert
    ``(m, n)``). ``"keller"``: :math:`\sqrt{\max(1, m/n)}`; ``"moonshot"``: :math:`0.2\sqrt{\max(m, n)}`;
    ``"none"``: 1.
    """
    rows, cols = _matrix_shape(shape)
    if adjust_lr == "keller":
        return math.sqrt(max(1, rows / cols))
    if adjust_lr == "moonshot":
        return 0.2 * math.sqrt(max(rows, cols))
    if adjust_lr == "none":
        return 1.0
    raise ValueError(_unknown("adjust_lr", adjust_lr, ADJUST_LR))


def _triton_newton_schulz():
    """The Triton Newton–Schulz entry point, or a RuntimeError that says what to use instead."""
    if not triton_available():
        raise RuntimeError(
            "orthogonalizer='triton' needs CUDA and an installed triton (or TRITON_INTERPRET=1 for the CPU "
            "interpreter); use orthogonalizer='newton-schulz' (the pure-torch reference the kernel is tested "
            "against)"
        )
    return newton_schulz_triton


def orthogonalize(
    direction: Tensor,
    *,
    method: str = "newton-schulz",
    steps: int = 5,
    coefficients=KELLER_COEFFICIENTS,
    eps: float = 1e-7,
    compute_dtype: torch.dtype | None = None,
    cast_back: bool = True,
) -> Tensor:
    """``orth(direction)`` in ``direction``'s shape and dtype: its matrix view is orthogonalized.

    ``cast_back=False`` leaves a Newton–Schulz result in ``compute_dtype`` (the optimizers add it into
    the parameter directly, which promotes it, as ``torch.optim.Muon`` does).

    ``method="newton-schulz"``: :func:`optlib.linalg.newton_schulz` (iterated in ``compute_dtype``, default the
    direction's dtype); ``"svd"``: the exact polar factor :func:`optlib.linalg.polar`; ``"triton"``: the Triton
    kernel ``kernels.newton_schulz.newton_schulz_triton`` (CUDA; ``RuntimeError`` naming the fallback otherwise).
    """
    M = matrix_view(direction)
    if method == "newton-schulz":
        Q = newton_schulz(M, steps=steps, coefficients=coefficients, eps=eps, compute_dtype=compute_dtype,
                          cast_back=cast_back)
    elif method == "svd":
        Q = polar(M)
    elif method == "triton":
        kernel = _triton_newton_schulz()
        X = M.to(compute_dtype) if compute_dtype is not None else M
        Q = kernel(X, steps, coefficients, eps).to(direction.dtype)
    else:
        raise ValueError(_unknown("orthogonalizer", method, ORTHOGONALIZERS))
    return Q.reshape(direction.shape)


_STACK_MAX_NUMEL = 512 * 512


def _world(distributed: bool) -> tuple[int, int]:
    """``(world_size, rank)`` of the default process group when ``distributed`` and one is initialised."""
    if not distributed or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return 1, 0
    return torch.distributed.get_world_size(), torch.distributed.get_rank()


def _owned_then_gathered(stack: Tensor, orth, world: int, rank: int) -> Tensor:
    """``orth(stack)`` with the work split over the ranks: the ``k`` matrices of ``stack`` are cut into
    ``world`` equal chunks (zero-padded; a zero matrix orthogonalizes to zero), rank ``r`` computes chunk
    ``r`` and ``all_gather`` gives every rank all chunks. Batched products act on each matrix alone, so the
    result equals the one-process ``orth(stack)`` bit for bit."""
    k = stack.shape[0]
    chunk = -(-k // world)
    if chunk * world > k:
        stack = torch.cat([stack, stack.new_zeros(chunk * world - k, *stack.shape[1:])])
    local = orth(stack[rank * chunk:(rank + 1) * chunk]).contiguous()
    parts = [torch.empty_like(local) for _ in range(world)]
    torch.distributed.all_gather(parts, local)
    return torch.cat(parts)[:k]


def orthogonalize_many(
    directions: list[Tensor],
    *,
    method: str = "newton-schulz",
    steps: int = 5,
    coefficients=KELLER_COEFFICIENTS,
    eps: float = 1e-7,
    compute_dtype: torch.dtype | None = None,
    cast_back: bool = True,
    distributed: bool = False,
    stats: dict | None = None,
) -> list[Tensor]:
    """:func:`orthogonalize` of every tensor in ``directions``, batched and optionally shared out over ranks.

    Directions whose matrix views have the same shape, dtype and device are stacked and orthogonalized in
    one batched call (one Python-level iteration for all of them instead of one per matrix; the batched
    products treat each matrix alone, so the results equal the one-at-a-time ones); matrices of
    ``512 * 512`` entries or more, where the copy into a stack would cost more than it saves, go one at a
    time in a single process. With ``distributed=True``
    and an initialised ``torch.distributed`` default group of size ``W > 1``, every stack is cut into ``W``
    chunks, rank ``r`` orthogonalizes chunk ``r`` and the chunks are all-gathered (the "owner computes,
    then all-gather" design of Keller Jordan's distributed Muon, there by whole matrices): each rank does
    about ``1/W`` of the Newton–Schulz work. All ranks must call this with the same shapes in the same order
    (true under DDP, where the gradients are all-reduced). ``method="triton"`` runs matrix by matrix.
    ``stats``, if given, gets ``"orthogonalized_here"`` increased by the number of directions (zero
    padding included) this process orthogonalized.
    """
    world, rank = _world(distributed)
    out: list[Tensor | None] = [None] * len(directions)
    buckets: dict[tuple, list[int]] = {}
    for i, D in enumerate(directions):
        M = matrix_view(D)
        buckets.setdefault((tuple(M.shape), D.dtype, D.device), []).append(i)

    def orth(M: Tensor) -> Tensor:
        if method == "newton-schulz":
            return newton_schulz(M, steps=steps, coefficients=coefficients, eps=eps, compute_dtype=compute_dtype,
                                 cast_back=cast_back)
        return polar(M)

    for (shape, _, _), idx in buckets.items():
        # Stacking pays where per-call overhead dominates (small matrices); a large matrix is compute-bound
        # and its copy into a stack would only cost time, so one process orthogonalizes it on its own.
        alone = world == 1 and (len(idx) == 1 or math.prod(shape[-2:]) >= _STACK_MAX_NUMEL)
        if method == "triton" or alone:
            if stats is not None:
                stats["orthogonalized_here"] = stats.get("orthogonalized_here", 0) + len(idx)
            for i in idx:
                out[i] = orthogonalize(directions[i], method=method, steps=steps, coefficients=coefficients,
                                       eps=eps, compute_dtype=compute_dtype, cast_back=cast_back)
            continue
        if method not in ("newton-schulz", "svd"):
            raise ValueError(_unknown("orthogonalizer", method, ORTHOGONALIZERS))
        stack = torch.stack([matrix_view(directions[i]) for i in idx])
        if stats is not None:
            stats["orthogonalized_here"] = stats.get("orthogonalized_here", 0) + -(-len(idx) // world)
        Q = orth(stack) if world == 1 else _owned_then_gathered(stack, orth, world, rank)
        for j, i in enumerate(idx):
            out[i] = Q[j].reshape(directions[i].shape)
    return out  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------------------
# Sharded parameters (FSDP2: DTensor, Shard(0))
# ------------------------------------------------------------------------------------------------------------


def local_part(t: Tensor) -> Tensor:
    """This rank's part of ``t``: the local shard of a DTensor (a view: in-place changes reach the DTensor),
    ``t`` itself otherwise."""
    return t.to_local() if isinstance(t, DTensor) else t


def _check_row_sharded(p: Tensor, what: str) -> None:
    if not isinstance(p, DTensor):
        raise ValueError(f"{what}: a parameter of shape {tuple(p.shape)} is a plain {type(p).__name__}, not a "
                         "DTensor; whole (unsharded) tensors go through orthogonalize_many")
    placements = tuple(p.placements)
    if p.device_mesh.ndim != 1 or placements != (Shard(0),):
        raise ValueError(
            f"{what}: a sharded parameter of shape {tuple(p.shape)} with placements {placements} on a "
            f"{p.device_mesh.ndim}-D mesh; Muon gathers whole matrices from FSDP2's row shards only (Shard(0) on a "
            "1-D mesh, what torch.distributed.fsdp.fully_shard produces)"
        )


def _row_counts(rows: int, world: int) -> list[int]:
    """Rows of each rank under ``Shard(0)`` (``torch.chunk``'s split: ``ceil(rows / world)`` each, the last
    ranks shorter or empty)."""
    chunk = -(-rows // world)
    return [max(0, min(chunk, rows - r * chunk)) for r in range(world)]


def shard_owners(numels: list[int], world: int) -> list[int]:
    """The rank that orthogonalizes each matrix: matrices sorted by size (largest first, ties by position) are
    dealt round-robin to the ranks, so every rank gets about ``1/world`` of the matrices and of their entries.
    Every rank computes the same answer from the same sizes."""
    order = sorted(range(len(numels)), key=lambda i: (-numels[i], i))
    owners = [0] * len(numels)
    for k, i in enumerate(order):
        owners[i] = k % world
    return owners


def orthogonalize_sharded(
    shards: list[Tensor],
    params: list[Tensor],
    *,
    method: str = "newton-schulz",
    steps: int = 5,
    coefficients=KELLER_COEFFICIENTS,
    eps: float = 1e-7,
    compute_dtype: torch.dtype | None = None,
    stats: dict | None = None,
) -> list[Tensor]:
    r"""This rank's rows of :math:`\mathrm{orth}(D_i)` for row-sharded directions.

    ``shards[i]`` is this rank's block of rows of the direction :math:`D_i` of the DTensor parameter
    ``params[i]`` (FSDP2's ``Shard(0)`` on a 1-D mesh; the parameter supplies the global shape and the mesh).
    Newton–Schulz needs the whole matrix, so (the "gather, orthogonalize on the owner, scatter" scheme of
    distributed Muon under FSDP, e.g. Liu et al. 2025, arXiv:2502.16982, §2.3):

    1. owners: :func:`shard_owners` deals the matrices, largest first, round-robin to the ranks;
    2. gather: every rank sends its rows of :math:`D_i` to the owner of :math:`i` (``dist.gather``, rows padded
       to ``ceil(m / world)``);
    3. orthogonalize: each owner runs :func:`orthogonalize_many` on its whole matrices (batched by shape as in
       one process, so the result equals the one-process one bit for bit);
    4. scatter: the owner sends each rank its rows of :math:`\mathrm{orth}(D_i)` (``dist.scatter``).

    All gathers are issued before any owner computes and all scatters after, so the ranks orthogonalize at the
    same time. The result has the shards' dtype. Every rank must call this with the same parameters in the same
    order (true for an optimizer stepping FSDP2 parameters: the gradients are reduce-scattered on all ranks).
    ``stats["orthogonalized_here"]`` is increased by the number of parameters this rank owns (the unit of
    :func:`orthogonalize_many`). Collectives use the process group's timeout, so a rank that fails does not hang the
    others for longer than that.
    """
    if not params:
        return []
    for p in params:
        _check_row_sharded(p, "orthogonalize_sharded")
    mesh = params[0].device_mesh
    for p in params:
        if p.device_mesh != mesh:
            raise ValueError("orthogonalize_sharded: all parameters must be sharded over the same device mesh")
    group = mesh.get_group()
    world = torch.distributed.get_world_size(group)
    rank = torch.distributed.get_rank(group)
    owners = shard_owners([p.numel() for p in params], world)
    counts = [_row_counts(p.shape[0], world) for p in params]
    for i, (shard, p) in enumerate(zip(shards, params)):
        expected = (counts[i][rank], *p.shape[1:])
        if tuple(shard.shape) != expected:
            raise ValueError(f"orthogonalize_sharded: shard {i} has shape {tuple(shard.shape)}, expected {expected} "
                             f"for rank {rank} of {world} of a parameter of shape {tuple(p.shape)}")

    def padded(t: Tensor, rows: int) -> Tensor:
        if t.shape[0] == rows:
            return t.contiguous()
        return torch.cat([t, t.new_zeros(rows - t.shape[0], *t.shape[1:])])

    # 2. gather every matrix on its owner
    received: dict[int, list[Tensor]] = {}
    works = []
    for i, (shard, p) in enumerate(zip(shards, params)):
        chunk = max(counts[i])
        mine = owners[i] == rank
        if mine:
            received[i] = [shard.new_empty(chunk, *p.shape[1:]) for _ in range(world)]
        works.append(torch.distributed.gather(padded(shard, chunk), received.get(i), group=group,
                                              group_dst=owners[i], async_op=True))
    for w in works:
        w.wait()
    # 3. orthogonalize the owned matrices, batched as in one process
    owned = sorted(received)
    full = [torch.cat([part[:n] for part, n in zip(received[i], counts[i])]) for i in owned]
    ortho = orthogonalize_many(full, method=method, steps=steps, coefficients=coefficients, eps=eps,
                               compute_dtype=compute_dtype, cast_back=True)
    if stats is not None:
        stats["orthogonalized_here"] = stats.get("orthogonalized_here", 0) + len(owned)
    pieces = {i: [padded(part, max(counts[i])) for part in Q.to(shards[i].dtype).split(counts[i])]
              for i, Q in zip(owned, ortho)}
    # 4. scatter the rows back
    out, works = [], []
    for i, (shard, p) in enumerate(zip(shards, params)):
        recv = shard.new_empty(max(counts[i]), *p.shape[1:])
        works.append(torch.distributed.scatter(recv, pieces.get(i), group=group, group_src=owners[i],
                                               async_op=True))
        out.append(recv)
    for w in works:
        w.wait()
    return [recv[:counts[i][rank]] for i, recv in enumerate(out)]


def grads_all_finite(params) -> bool:
    """Whether every existing gradient in ``params`` is finite, with one synchronization for the whole
    group: a norm is finite exactly when every entry is (an overflow of the norm counts as non-finite,
    and then the per-parameter check decides). Sharded (DTensor) gradients: each rank checks its shards and one
    all-reduce over their mesh's group combines the answers, so all ranks agree."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    sharded = [g for g in grads if isinstance(g, DTensor)]
    grads = [local_part(g) for g in grads]
    norms = torch._foreach_norm(grads)
    if len({n.dtype for n in norms}) > 1:  # parameters of several dtypes: stack needs one
        norms = [n.float() for n in norms]
    finite = bool(torch.isfinite(torch.stack(norms)).all())
    if sharded:  # every rank must take the same branch: one reduction over the shards' group
        flag = torch.tensor([0.0 if finite else 1.0], device=grads[0].device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX,
                                     group=sharded[0].device_mesh.get_group())
        finite = flag.item() == 0.0
    return finite


# ------------------------------------------------------------------------------------------------------------
# Option checks (shared with MuonWithAdamW)
# ------------------------------------------------------------------------------------------------------------


def _unknown(what: str, value, valid) -> str:
    msg = f"unknown {what} {value!r}; valid values: {', '.join(repr(v) for v in valid)}"
    if what == "adjust_lr" and value in _TORCH_NAMES:
        msg += f" (torch.optim.Muon's {value!r} is {_TORCH_NAMES[value]!r} here)"
    return msg


def _check_real(name: str, value, *, low: float = 0.0, high: float | None = None, closed_high: bool = False):
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or (high is not None and (value > high if closed_high else value >= high)):
        upper = "" if high is None else (f", {high}]" if closed_high else f", {high})")
        raise ValueError(f"{name} must be in [{low}{upper or ', inf)'}, got {value!r}")


def check_muon_options(group: dict) -> None:
    """Raise ``ValueError`` (``RuntimeError`` for an unusable Triton path) for invalid Muon options."""
    _check_real("lr", group["lr"])
    _check_real("momentum", group["momentum"], high=1.0)
    _check_real("weight_decay", group["weight_decay"])
    _check_real("eps", group["eps"])
    if not isinstance(group["nesterov"], bool):
        raise ValueError(f"nesterov must be True or False, got {group['nesterov']!r}")
    if group["momentum_style"] not in MOMENTUM_STYLES:
        raise ValueError(_unknown("momentum_style", group["momentum_style"], MOMENTUM_STYLES))
    if group["adjust_lr"] not in ADJUST_LR:
        raise ValueError(_unknown("adjust_lr", group["adjust_lr"], ADJUST_LR))
    if group["orthogonalizer"] not in ORTHOGONALIZERS:
        raise ValueError(_unknown("orthogonalizer", group["orthogonalizer"], ORTHOGONALIZERS))
    ns_coefficient_schedule(group["ns_coefficients"], group["ns_steps"])
    dtype = group["ns_dtype"]
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"ns_dtype must be None or a floating torch.dtype, got {dtype!r}")
    if not isinstance(group.get("distributed", False), bool):
        raise ValueError(f"distributed must be True or False, got {group['distributed']!r}")
    if group["orthogonalizer"] == "triton":
        _triton_newton_schulz()


def param_label(group: dict, group_index: int, i: int, p: Tensor) -> str:
    """How errors name a parameter: its name when the group has ``param_names``, else its position."""
    names = group.get("param_names")
    where = f"param_groups[{group_index}]['params'][{i}]"
    if names is not None:
        where = f"{names[i]!r} ({where})"
    return f"{where} of shape {tuple(p.shape)}"


def check_muon_params(group: dict, group_index: int) -> None:
    for i, p in enumerate(group["params"]):
        if p.ndim < 2:
            label = param_label(group, group_index, i, p)
            raise ValueError(f"Muon cannot orthogonalize the {p.ndim}-D parameter {label}; {_ROUTING_HINT}")
        if p.is_complex():
            raise ValueError(f"Muon does not support complex parameters: {param_label(group, group_index, i, p)}")


# ------------------------------------------------------------------------------------------------------------
# The optimizer
# ------------------------------------------------------------------------------------------------------------


class Muon(torch.optim.Optimizer):
    r"""Muon (MomentUm Orthogonalized by Newton–Schulz) as a ``torch.optim.Optimizer``.

    The update rule is in the module docstring. Every option can be overridden per param group.

    Parameters
    ----------
    params : iterable of Tensors, (name, Tensor) pairs, or param-group dicts
        Parameters with ``ndim >= 2`` only (conv filters and expert stacks included; see
        :func:`optlib.linalg.matrix_view`). A 1-D parameter raises ``ValueError``; use
        :func:`optlib.optim.muon_param_groups` and :class:`optlib.optim.MuonWithAdamW` for whole models.
    lr : float
        :math:`\gamma` (Keller Jordan's default 0.02).
    momentum : float
        :math:`\beta \in [0, 1)`.
    nesterov : bool
        Orthogonalize the Nesterov direction instead of the buffer.
    momentum_style : {"ema", "sum"}
        The buffer's recursion (module docstring).
    weight_decay : float
        :math:`\lambda`, decoupled: :math:`W \leftarrow W(1 - \gamma\lambda)`.
    adjust_lr : {"keller", "moonshot", "none"}
        Shape scaling :math:`s(m, n)` (:func:`lr_scale`).
    orthogonalizer : {"newton-schulz", "svd", "triton"}
        How :math:`U V^\top` is computed (:func:`orthogonalize`).
    ns_steps, ns_coefficients, eps
        Newton–Schulz steps, one ``(a, b, c)`` or one triple per step, and the normalization's ``eps``.
    ns_dtype : torch.dtype or None
        Dtype of the Newton–Schulz iteration. The default ``torch.bfloat16`` is what KellerJordan/Muon and
        ``torch.optim.Muon`` do (and is faster on CPU as well); ``None`` iterates in the gradient's dtype
        (use it for float64 work and exact tests).
    skip_nonfinite : bool
        With ``False`` (default) a NaN/inf gradient raises ``ValueError`` naming the parameter, before any
        parameter or state is updated; with ``True`` that parameter's step (momentum and weight) is skipped and
        counted, and the others step.
    distributed : bool
        Under ``torch.distributed`` (e.g. DDP, gradients already all-reduced) each rank orthogonalizes only
        its share of the matrices and the results are all-gathered (:func:`orthogonalize_many`); the update is
        the same as in one process. Without an initialised process group it has no effect. FSDP2-sharded
        parameters (DTensors, ``Shard(0)``) need no flag: momentum, weight decay and the step act on each
        rank's shard, and each whole matrix is gathered on one owner rank, orthogonalized there and its rows
        scattered back (:func:`orthogonalize_sharded`); the update again equals the one-process update.

    Notes
    -----
    State: per parameter ``momentum_buffer`` and ``step``; ``optimizer.state["counters"]`` holds totals over all
    steps: ``steps`` (calls of :meth:`step`), ``updates`` (matrices updated; an expert stack counts ``E``),
    ``ns_matmuls`` (matrix products in Newton–Schulz, 3 per iteration per matrix), ``svds``,
    ``skipped_nonfinite`` and ``orthogonalized_here`` (parameters this process orthogonalized; with
    ``distributed=True`` only this rank's share, zero padding included). All of it goes through
    ``state_dict``/``load_state_dict``.

    ``params`` may be any iterable, a generator such as ``model.parameters()`` included (of a model whose
    trainable parameters are all matrices). An unknown keyword argument raises ``TypeError`` naming it (Python's
    own check, as for ``torch.optim``); an invalid value raises ``ValueError``. Keys of param-group dicts are
    not checked (groups may carry extra keys, such as the ``initial_lr`` an LR scheduler adds).
    """

    def __init__(
        self,
        params,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        momentum_style: str = "ema",
        weight_decay: float = 0.0,
        adjust_lr: str = "keller",
        orthogonalizer: str = "newton-schulz",
        ns_steps: int = 5,
        ns_coefficients=KELLER_COEFFICIENTS,
        eps: float = 1e-7,
        ns_dtype: torch.dtype | None = torch.bfloat16,
        skip_nonfinite: bool = False,
        distributed: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            momentum_style=momentum_style,
            weight_decay=weight_decay,
            adjust_lr=adjust_lr,
            orthogonalizer=orthogonalizer,
            ns_steps=ns_steps,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_dtype=ns_dtype,
            skip_nonfinite=skip_nonfinite,
            distributed=distributed,
        )
        check_muon_options(defaults)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            check_muon_options(group)
            check_muon_params(group, len(self.param_groups) - 1)
        except Exception:
            self.param_groups.pop()
            raise

    # -- counters and state_dict --------------------------------------------------------------------------

    def _counters(self) -> dict:
        if "counters" not in self.state:
            self.state["counters"] = dict(steps=0, updates=0, ns_matmuls=0, svds=0, skipped_nonfinite=0,
                                          orthogonalized_here=0)
        return self.state["counters"]

    def state_dict(self) -> dict:
        sd = super().state_dict()
        if "counters" in sd["state"]:
            sd["state"]["counters"] = dict(sd["state"]["counters"])
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        if "counters" in self.state:
            self.state["counters"] = dict(self.state["counters"])

    # -- the step -----------------------------------------------------------------------------------------

    def _check_finite(self, group_indices) -> dict[int, bool]:
        """``{group index: whether all its gradients are finite}`` for the given groups, with one
        synchronization per group. Before anything is updated, raise ``ValueError`` naming the first parameter
        with a non-finite gradient in a group without ``skip_nonfinite``."""
        finite = {}
        for group_index in group_indices:
            group = self.param_groups[group_index]
            finite[group_index] = grads_all_finite(group["params"])
            if finite[group_index] or group["skip_nonfinite"]:
                continue
            for i, p in enumerate(group["params"]):
                if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                    raise ValueError(
                        f"non-finite gradient for {param_label(group, group_index, i, p)}; this step updated "
                        "nothing (pass skip_nonfinite=True to skip such parameters' steps and count them)"
                    )
        return finite

    def _finite_or_skip(self, group: dict, group_index: int, i: int, p: Tensor) -> bool:
        """True when ``p.grad`` is finite; otherwise raise, or count and return False (``skip_nonfinite``)."""
        if bool(torch.isfinite(p.grad).all()):
            return True
        if not group["skip_nonfinite"]:
            raise ValueError(
                f"non-finite gradient for {param_label(group, group_index, i, p)}; nothing was updated for it "
                "(pass skip_nonfinite=True to skip such steps and count them)"
            )
        self._counters()["skipped_nonfinite"] += 1
        return False

    def _collect(self, group: dict, group_index: int,
                 all_finite: bool | None = None) -> tuple[list[Tensor], list[dict]]:
        """The parameters of ``group`` that take a step now (finite gradient) and their states, with the
        momentum buffer created and ``step`` counted. ``all_finite`` is :meth:`_check_finite`'s answer for the
        group (computed here when not given)."""
        if all_finite is None:
            all_finite = grads_all_finite(group["params"])
        params, states = [], []
        for i, p in enumerate(group["params"]):
            if p.grad is None or (not all_finite and not self._finite_or_skip(group, group_index, i, p)):
                continue
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] = 0
            state["step"] += 1
            params.append(p)
            states.append(state)
        return params, states

    def _orthogonalize(self, group: dict, directions: list[Tensor], cast_back: bool,
                       params: list[Tensor] | None = None) -> list[Tensor]:
        """``orth`` of each direction. With ``params`` given, a DTensor parameter's direction is this rank's
        shard of rows and gets this rank's rows of the orthogonalized whole matrix
        (:func:`orthogonalize_sharded`); the other directions go through :func:`orthogonalize_many`."""
        counters = self._counters()
        method = group["orthogonalizer"]
        shapes = [D.shape for D in directions] if params is None else [p.shape for p in params]
        for shape in shapes:
            n_matrices = shape[0] if len(shape) == 3 else 1
            counters["updates"] += n_matrices
            if method == "svd":
                counters["svds"] += n_matrices
            else:
                counters["ns_matmuls"] += n_matrices * NS_MATMULS_PER_STEP * group["ns_steps"]
        kw = dict(method=method, steps=group["ns_steps"], coefficients=group["ns_coefficients"], eps=group["eps"],
                  compute_dtype=group["ns_dtype"], stats=counters)
        sharded = [] if params is None else [i for i, p in enumerate(params) if isinstance(p, DTensor)]
        if not sharded:
            return orthogonalize_many(directions, cast_back=cast_back, distributed=group["distributed"], **kw)
        out: list[Tensor | None] = [None] * len(directions)
        for i, Q in zip(sharded, orthogonalize_sharded([directions[i] for i in sharded],
                                                       [params[i] for i in sharded], **kw)):
            out[i] = Q
        rest = [i for i in range(len(directions)) if out[i] is None]
        if rest:
            for i, Q in zip(rest, orthogonalize_many([directions[i] for i in rest], cast_back=cast_back,
                                                     distributed=group["distributed"], **kw)):
                out[i] = Q
        return out  # type: ignore[return-value]

    def _muon_group_step(self, group: dict, group_index: int, all_finite: bool | None = None) -> None:
        params, states = self._collect(group, group_index, all_finite)
        if not params:
            return
        lr, wd = group["lr"], group["weight_decay"]
        # FSDP2's DTensor parameters: the elementwise parts act on this rank's shards (local_part)
        D = muon_directions([local_part(p.grad) for p in params], [local_part(s["momentum_buffer"]) for s in states],
                            momentum=group["momentum"], nesterov=group["nesterov"], style=group["momentum_style"])
        Q = self._orthogonalize(group, D, cast_back=False, params=params)
        weights = [local_part(p) for p in params]
        if wd != 0:
            torch._foreach_mul_(weights, 1.0 - lr * wd)
        for p, w, o in zip(params, weights, Q):
            w.add_(o, alpha=-lr * lr_scale(p.shape, group["adjust_lr"]))

    @torch.no_grad()
    def step(self, closure=None):
        """One Muon step on every parameter that has a gradient; returns ``closure()``'s loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        finite = self._check_finite(range(len(self.param_groups)))
        for group_index, group in enumerate(self.param_groups):
            self._muon_group_step(group, group_index, finite[group_index])
        self._counters()["steps"] += 1
        return loss
