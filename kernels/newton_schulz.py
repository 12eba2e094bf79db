"""Newton–Schulz orthogonalization (the matrix step of Muon) as Triton kernels, beside its PyTorch reference.

Math (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks",
https://kellerjordan.github.io/posts/muon/): for a matrix ``G`` (rows ≤ columns, otherwise work on ``Gᵀ``)

    X ← G / (‖G‖_F + eps)
    repeat ``steps`` times, with coefficients (a, b, c) for that step:
        A = X Xᵀ
        B = b·A + c·A·A
        X = a·X + B·X

which drives every singular value of ``G`` towards (a band around) 1 while keeping its singular vectors: an
approximation of the polar factor ``U Vᵀ``. The classic quintic coefficients (3.4445, −4.7750, 2.0315) are the
defaults of ``torch.optim.Muon``; per-step schedules (Dion's, "polar express") are accepted as a list of triples.

The three lines map onto two Triton kernels (Triton language reference:
https://triton-lang.org/main/python-api/triton.language.html):

* ``_sym_gram_kernel``: ``C = alpha·X Xᵀ + beta·Y``. The product is symmetric, so only the tiles on and above the
  block diagonal are computed and each strictly-upper tile is also stored, transposed, into its mirror position:
  about half the multiply–adds of a general matmul. Line 1 is ``alpha=1, beta=0``; line 2 is the same kernel
  applied to ``A`` (``A·A = A·Aᵀ`` because ``A`` is symmetric) with ``alpha=c, beta=b, Y=A``, so ``B`` also costs
  half a matmul and its ``b·A`` term is fused into the epilogue.
* ``_poly_update_kernel``: ``X_new = a·X + B·X``, a general matmul whose epilogue adds ``a·X`` while the output tile
  is still in registers (no separate elementwise pass).

Accumulation is always fp32. Under the CPU interpreter (``TRITON_INTERPRET=1``) bf16 ``tl.dot`` multiplies raw bit
patterns and fp32→bf16 casts truncate, so the wrapper upcasts bf16 inputs to fp32 there; fp32 and fp16 run as
given. On a GPU, fp32 dots use ``input_precision="ieee"`` unless ``allow_tf32=True``, so that results match the
reference; fp16/bf16 inputs keep 16-bit storage with fp32 accumulation.

The split into a symmetric ``X Xᵀ`` kernel (upper tiles, mirrored) and the fused lines follows the structure that
the project spec (70-kernels-triton.md §2) records for microsoft/dion ``dion/newton_schulz_triton.py`` and
KellerJordan/modded-nanogpt ``triton_kernels.py``; the code here is written from the math above.

Triton is optional: this module imports without it (the kernels are defined on first use), and
:func:`newton_schulz_reference` always works. :func:`newton_schulz` dispatches between the compiled kernels (CUDA
tensors), the interpreter (``TRITON_INTERPRET=1``) and the reference.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_COEFFICIENTS",
    "KernelConfig",
    "available",
    "coefficient_schedule",
    "default_config",
    "interpreting",
    "newton_schulz",
    "newton_schulz_reference",
    "newton_schulz_triton",
    "sym_gram",
    "triton_installed",
]

#: Keller Jordan's quintic coefficients (a, b, c); the defaults of ``torch.optim.Muon`` (torch 2.13).
DEFAULT_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)

Coefficients = Sequence[float] | Sequence[Sequence[float]]

# ``tl`` is bound on first use (see ``_kernels``); the kernel bodies below look it up in this module's globals when
# Triton compiles or interprets them, so it must be a module global rather than a local import.
tl: Any = None


# ----------------------------------------------------------------------------------------------------------------
# Shared argument handling
# ----------------------------------------------------------------------------------------------------------------


def coefficient_schedule(coefficients: Coefficients, steps: int) -> list[tuple[float, float, float]]:
    """The ``(a, b, c)`` triple used at each of the ``steps`` iterations.

    ``coefficients`` is either one triple, used at every step, or a sequence of exactly ``steps`` triples, one
    per step (the same rule as ``optlib.linalg.ns_coefficient_schedule``).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    items = list(coefficients)
    if len(items) == 3 and all(_is_number(v) for v in items):
        return [tuple(float(v) for v in items)] * steps  # type: ignore[list-item]
    schedule = []
    for i, triple in enumerate(items):
        triple = list(triple) if not _is_number(triple) else [triple]
        if len(triple) != 3 or not all(_is_number(v) for v in triple):
            raise ValueError(f"coefficients[{i}] must be an (a, b, c) triple of numbers, got {triple!r}")
        schedule.append(tuple(float(v) for v in triple))
    if len(schedule) != steps:
        raise ValueError(f"a coefficient schedule needs one triple per step: got {len(schedule)} for steps={steps}")
    return schedule  # type: ignore[return-value]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_matrix(G: Tensor) -> None:
    if not isinstance(G, Tensor):
        raise TypeError(f"G must be a torch.Tensor, got {type(G).__name__}")
    if G.ndim < 2:
        raise ValueError(f"Newton–Schulz needs a matrix or a batch of matrices, got shape {tuple(G.shape)}")
    if not G.is_floating_point():
        raise TypeError(f"G must be floating point, got {G.dtype}")


# ----------------------------------------------------------------------------------------------------------------
# Pure-PyTorch reference
# ----------------------------------------------------------------------------------------------------------------


def newton_schulz_reference(
    G: Tensor,
    steps: int = 5,
    coefficients: Coefficients = DEFAULT_COEFFICIENTS,
    eps: float = 1e-7,
    compute_dtype: torch.dtype | None = None,
) -> Tensor:
    """Newton–Schulz orthogonalization in plain PyTorch, batched over leading dimensions.

    Computes in ``compute_dtype`` (default: ``G.dtype``) and returns a tensor of ``G``'s shape and dtype. Matrices
    with more rows than columns are transposed, iterated, and transposed back. The normalization is
    ``G / (‖G‖_F + eps)`` per matrix.
    """
    _check_matrix(G)
    schedule = coefficient_schedule(coefficients, steps)
    X = G.to(compute_dtype or G.dtype)
    transpose = X.size(-2) > X.size(-1)
    if transpose:
        X = X.mT
    X = X / (torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True) + eps)
    for a, b, c in schedule:
        A = X @ X.mT
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    if transpose:
        X = X.mT
    return X.to(G.dtype)


# ----------------------------------------------------------------------------------------------------------------
# Triton availability
# ----------------------------------------------------------------------------------------------------------------


def triton_installed() -> bool:
    """Whether the ``triton`` package can be imported (without importing it)."""
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for the CPU interpreter (read now, as Triton reads it when a kernel is
    defined)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def available() -> bool:
    """Whether the Triton path can run here: Triton is installed and either CUDA or the interpreter is available."""
    return triton_installed() and (interpreting() or torch.cuda.is_available())


# ----------------------------------------------------------------------------------------------------------------
# Kernels (plain functions; ``_kernels`` wraps them with ``triton.jit`` on first use)
# ----------------------------------------------------------------------------------------------------------------


def _sym_gram_kernel(
    X, Y, C,  # X (batch, M, K); Y, C (batch, M, M)
    M, K,
    stride_xb, stride_xm, stride_xk,
    stride_yb, stride_ym, stride_yn,
    stride_cb, stride_cm, stride_cn,
    alpha, beta,
    HAS_Y: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """C = alpha * X Xᵀ (+ beta * Y): upper block triangle computed, strictly-upper tiles mirrored."""
    pid = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    tiles = (M + BLOCK - 1) // BLOCK
    pid_m = pid // tiles
    pid_n = pid % tiles
    if pid_m > pid_n:  # the mirror of this tile is written by program (pid_n, pid_m)
        return
    offs_m = pid_m * BLOCK + tl.arange(0, BLOCK)
    offs_n = pid_n * BLOCK + tl.arange(0, BLOCK)
    offs_k = tl.arange(0, BLOCK_K)
    x_base = X + batch * stride_xb
    # rows offs_m of X as (BLOCK, BLOCK_K) and rows offs_n of X read transposed as (BLOCK_K, BLOCK)
    lhs_ptrs = x_base + offs_m[:, None] * stride_xm + offs_k[None, :] * stride_xk
    rhs_ptrs = x_base + offs_n[None, :] * stride_xm + offs_k[:, None] * stride_xk
    acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k_ok = (k0 + offs_k) < K
        lhs = tl.load(lhs_ptrs, mask=(offs_m[:, None] < M) & k_ok[None, :], other=0.0)
        rhs = tl.load(rhs_ptrs, mask=k_ok[:, None] & (offs_n[None, :] < M), other=0.0)
        acc = tl.dot(lhs, rhs, acc, input_precision=INPUT_PRECISION)
        lhs_ptrs += BLOCK_K * stride_xk
        rhs_ptrs += BLOCK_K * stride_xk
    acc = acc * alpha
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < M)
    if HAS_Y:
        y_ptrs = Y + batch * stride_yb + offs_m[:, None] * stride_ym + offs_n[None, :] * stride_yn
        acc += beta * tl.load(y_ptrs, mask=mask, other=0.0).to(tl.float32)
    out = acc.to(C.dtype.element_ty)
    c_base = C + batch * stride_cb
    tl.store(c_base + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn, out, mask=mask)
    if pid_m < pid_n:
        mirror_mask = (offs_n[:, None] < M) & (offs_m[None, :] < M)
        tl.store(c_base + offs_n[:, None] * stride_cm + offs_m[None, :] * stride_cn, tl.trans(out), mask=mirror_mask)


def _poly_update_kernel(
    B, X, Out,  # B (batch, M, M); X, Out (batch, M, N)
    M, N,
    stride_bb, stride_bm, stride_bk,
    stride_xb, stride_xm, stride_xn,
    stride_ob, stride_om, stride_on,
    a,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Out = a * X + B X, the ``a * X`` term added in the epilogue of the matmul."""
    pid = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    tiles_n = (N + BLOCK_N - 1) // BLOCK_N
    pid_m = pid // tiles_n
    pid_n = pid % tiles_n
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    x_base = X + batch * stride_xb
    b_ptrs = B + batch * stride_bb + offs_m[:, None] * stride_bm + offs_k[None, :] * stride_bk
    x_ptrs = x_base + offs_k[:, None] * stride_xm + offs_n[None, :] * stride_xn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, M, BLOCK_K):
        k_ok = (k0 + offs_k) < M
        lhs = tl.load(b_ptrs, mask=(offs_m[:, None] < M) & k_ok[None, :], other=0.0)
        rhs = tl.load(x_ptrs, mask=k_ok[:, None] & (offs_n[None, :] < N), other=0.0)
        acc = tl.dot(lhs, rhs, acc, input_precision=INPUT_PRECISION)
        b_ptrs += BLOCK_K * stride_bk
        x_ptrs += BLOCK_K * stride_xm
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    x_tile = tl.load(x_base + offs_m[:, None] * stride_xm + offs_n[None, :] * stride_xn, mask=mask, other=0.0)
    acc += a * x_tile.to(tl.float32)
    out_ptrs = Out + batch * stride_ob + offs_m[:, None] * stride_om + offs_n[None, :] * stride_on
    tl.store(out_ptrs, acc.to(Out.dtype.element_ty), mask=mask)


_KERNEL_CACHE: dict[bool, tuple[Any, Any]] = {}


def _kernels() -> tuple[Any, Any]:
    """The two kernels wrapped by ``triton.jit``, one pair per interpreter mode.

    ``triton.jit`` decides between compiling and interpreting when it wraps a function, from ``TRITON_INTERPRET``
    at that moment; wrapping lazily (and caching per mode) means the flag only has to be set before the first call.
    """
    mode = interpreting()
    if mode not in _KERNEL_CACHE:
        try:
            import triton
            import triton.language as triton_language
        except ImportError as exc:  # pragma: no cover - exercised only without triton
            raise RuntimeError(
                "the Triton Newton–Schulz path needs the 'triton' package (pip install 'triton>=3.0')"
            ) from exc
        global tl
        tl = triton_language
        _KERNEL_CACHE[mode] = (triton.jit(_sym_gram_kernel), triton.jit(_poly_update_kernel))
    return _KERNEL_CACHE[mode]


# ----------------------------------------------------------------------------------------------------------------
# Launch configuration and wrappers
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelConfig:
    """Tile sizes (all ≥ 16, so an interpreter-tested config stays valid for GPU ``tl.dot``) and launch options."""

    block: int = 64  # square tile of the symmetric product; also BLOCK_M of the update
    block_n: int = 64  # BLOCK_N of the update
    block_k: int = 32
    num_warps: int = 4
    num_stages: int = 3

    def __post_init__(self) -> None:
        for name in ("block", "block_n", "block_k"):
            v = getattr(self, name)
            if v < 16 or v & (v - 1):
                raise ValueError(f"{name} must be a power of two ≥ 16, got {v}")


def default_config(work_dtype: torch.dtype, interpret: bool) -> KernelConfig:
    """One fixed configuration per case (no autotuning; under the interpreter it would re-run every config).

    GPU: 128×128×64 tiles with 8 warps for 16-bit storage (fits shared memory with 3 stages); 64×64×32 for fp32.
    These are untuned starting points chosen from the shared-memory budget, not measured optima.
    Interpreter: 32-wide tiles, so the small test shapes span several tiles and exercise the masks.
    """
    if interpret:
        return KernelConfig(block=32, block_n=32, block_k=32, num_warps=4, num_stages=1)
    if work_dtype in (torch.float16, torch.bfloat16):
        return KernelConfig(block=128, block_n=128, block_k=64, num_warps=8, num_stages=3)
    return KernelConfig(block=64, block_n=64, block_k=32, num_warps=4, num_stages=3)


def _work_dtype(dtype: torch.dtype, interpret: bool) -> torch.dtype:
    if dtype == torch.float64:
        raise TypeError(
            "the Triton Newton–Schulz path supports float32/float16/bfloat16; use backend='torch' for float64"
        )
    if interpret and dtype == torch.bfloat16:
        return torch.float32  # bf16 tl.dot is wrong under the interpreter (spec 70 §4.1)
    return dtype


def _launch_ready(G: Tensor) -> bool:
    return interpreting() or G.is_cuda


def sym_gram(
    X: Tensor,
    Y: Tensor | None = None,
    alpha: float = 1.0,
    beta: float = 0.0,
    *,
    config: KernelConfig | None = None,
    allow_tf32: bool = False,
) -> Tensor:
    """``alpha · X Xᵀ + beta · Y`` for ``X`` of shape (batch, M, K) with the symmetric Triton kernel.

    ``Y`` (batch, M, M) must be symmetric for the result to be: only its upper block triangle is read. Returns a
    (batch, M, M) tensor of ``X``'s dtype; bf16 under the interpreter is computed in fp32 and cast back.
    """
    if X.ndim != 3:
        raise ValueError(f"sym_gram expects X of shape (batch, M, K), got {tuple(X.shape)}")
    if not _launch_ready(X):
        raise RuntimeError("the Triton path needs a CUDA tensor, or TRITON_INTERPRET=1 for the CPU interpreter")
    interpret = interpreting()
    work = _work_dtype(X.dtype, interpret)
    cfg = config or default_config(work, interpret)
    Xw = X.to(work)
    batch, M, _ = Xw.shape
    if Y is not None:
        if Y.shape != (batch, M, M):
            raise ValueError(f"Y must have shape {(batch, M, M)}, got {tuple(Y.shape)}")
        Y = Y.to(work)
    C = torch.empty(batch, M, M, dtype=work, device=X.device)
    _launch_sym_gram(Xw, Y, C, alpha, beta, cfg, allow_tf32)
    return C.to(X.dtype)


def _launch_sym_gram(X: Tensor, Y: Tensor | None, C: Tensor, alpha: float, beta: float, cfg: KernelConfig,
                     allow_tf32: bool) -> None:
    sym_kernel, _ = _kernels()
    batch, M, K = X.shape
    if batch == 0 or M == 0:
        return
    if K == 0:
        C.copy_(beta * Y if Y is not None else torch.zeros_like(C))
        return
    tiles = -(-M // cfg.block)
    Yp = Y if Y is not None else C  # never read when HAS_Y is false
    sym_kernel[(tiles * tiles, batch)](
        X, Yp, C, M, K,
        *X.stride(), *Yp.stride(), *C.stride(),
        float(alpha), float(beta),
        HAS_Y=Y is not None,
        INPUT_PRECISION=_precision(X.dtype, allow_tf32),
        BLOCK=cfg.block, BLOCK_K=cfg.block_k,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )


def _launch_poly_update(B: Tensor, X: Tensor, out: Tensor, a: float, cfg: KernelConfig, allow_tf32: bool) -> None:
    _, update_kernel = _kernels()
    batch, M, N = X.shape
    if batch == 0 or M == 0 or N == 0:
        return
    grid = (-(-M // cfg.block) * -(-N // cfg.block_n), batch)
    update_kernel[grid](
        B, X, out, M, N,
        *B.stride(), *X.stride(), *out.stride(),
        float(a),
        INPUT_PRECISION=_precision(X.dtype, allow_tf32),
        BLOCK_M=cfg.block, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )


def _explain_interpreter_error(exc: Exception) -> None:
    """Turn the interpreter's opaque failure when ``triton`` was imported before ``TRITON_INTERPRET=1`` was set
    (its builtins were then created for the compiler) into an actionable message."""
    if interpreting() and "outside of the scope of a kernel" in str(exc):
        raise RuntimeError(
            "the Triton interpreter cannot run in this process: 'triton' was imported before TRITON_INTERPRET=1 was "
            "set; set the variable before anything imports triton (or run in a fresh process)"
        ) from exc


def _precision(dtype: torch.dtype, allow_tf32: bool) -> str:
    # Only fp32 operands are affected; "ieee" keeps GPU results comparable with the reference (triton#5895).
    return "tf32" if (allow_tf32 and dtype == torch.float32) else "ieee"


def newton_schulz_triton(
    G: Tensor,
    steps: int = 5,
    coefficients: Coefficients = DEFAULT_COEFFICIENTS,
    eps: float = 1e-7,
    *,
    config: KernelConfig | None = None,
    allow_tf32: bool = False,
) -> Tensor:
    """Newton–Schulz with the Triton kernels: compiled for CUDA tensors, interpreted when ``TRITON_INTERPRET=1``.

    Same semantics as :func:`newton_schulz_reference` (batched, transposes tall matrices, returns ``G``'s shape
    and dtype). The Frobenius normalization is computed in fp32 with PyTorch; each step is two launches of the
    symmetric kernel (``A``, then ``B`` with ``b·A`` fused) and one of the update kernel (``a·X`` fused).
    Intermediates are stored in the working dtype (``G.dtype``, but fp32 for bf16 under the interpreter).
    """
    _check_matrix(G)
    schedule = coefficient_schedule(coefficients, steps)
    if not _launch_ready(G):
        raise RuntimeError("the Triton path needs a CUDA tensor, or TRITON_INTERPRET=1 for the CPU interpreter")
    interpret = interpreting()
    work = _work_dtype(G.dtype, interpret)
    cfg = config or default_config(work, interpret)
    _kernels()  # fail early, with a clear message, when triton is missing

    transpose = G.size(-2) > G.size(-1)
    X = G.mT if transpose else G
    rows, cols = X.shape[-2:]
    lead = X.shape[:-2]
    X = X.reshape(-1, rows, cols).float()
    X = (X / (torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True) + eps)).to(work).contiguous()
    batch = X.shape[0]
    if X.numel() > 0 and schedule:
        A = torch.empty(batch, rows, rows, dtype=work, device=X.device)
        B = torch.empty_like(A)
        X_next = torch.empty_like(X)
        for a, b, c in schedule:
            try:
                _launch_sym_gram(X, None, A, 1.0, 0.0, cfg, allow_tf32)  # A = X Xᵀ
                _launch_sym_gram(A, A, B, c, b, cfg, allow_tf32)  # B = c·A Aᵀ + b·A  (A symmetric)
                _launch_poly_update(B, X, X_next, a, cfg, allow_tf32)  # X' = a·X + B X
            except Exception as exc:
                _explain_interpreter_error(exc)
                raise
            X, X_next = X_next, X
    X = X.reshape(*lead, rows, cols)
    if transpose:
        X = X.mT
    return X.to(G.dtype)


def newton_schulz(
    G: Tensor,
    steps: int = 5,
    coefficients: Coefficients = DEFAULT_COEFFICIENTS,
    eps: float = 1e-7,
    *,
    backend: str = "auto",
) -> Tensor:
    """Newton–Schulz orthogonalization with a backend choice.

    ``backend="torch"``: :func:`newton_schulz_reference`. ``backend="triton"``: :func:`newton_schulz_triton`
    (errors when it cannot run). ``backend="auto"``: the compiled Triton kernels for a CUDA tensor when Triton is
    installed, the Triton interpreter when ``TRITON_INTERPRET=1`` is set (slow; meant for tests), otherwise the
    reference. float64 inputs always go to the reference under ``auto``.
    """
    if backend == "torch":
        return newton_schulz_reference(G, steps, coefficients, eps)
    if backend == "triton":
        return newton_schulz_triton(G, steps, coefficients, eps)
    if backend != "auto":
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if (
        isinstance(G, Tensor)
        and G.dtype in (torch.float32, torch.float16, torch.bfloat16)
        and _launch_ready(G)
        and triton_installed()
    ):
        return newton_schulz_triton(G, steps, coefficients, eps)
    return newton_schulz_reference(G, steps, coefficients, eps)
