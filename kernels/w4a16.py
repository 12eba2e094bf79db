r"""W4A16 dequantize-matmul: int4 weight codes packed two per byte, 16-bit (or fp32) activations.

Math (the group quantizer of GPTQ, Frantar et al. 2023, arXiv:2210.17323, §3 and its reference ``quant.py``):
a weight ``W`` (N, K) in ``nn.Linear`` convention is stored as integer codes ``Q`` (N, K) in ``[0, 2^b − 1]``
with one scale and one zero point per (output row, group of input columns),

.. math::

    \hat W_{nk} = S_{g(k), n}\,(Q_{nk} − Z_{g(k), n}),\qquad Y = X\,\hat W^\top,

where ``g(k) = k // group_size`` for consecutive groups, or ``g(k) = g_idx[k]`` for GPTQ's act-order
("desc_act"), whose groups are formed in a permuted column order and carried back through the permutation.

Layout (the one :mod:`scale.quantize.packed` writes), K-major so that ``Y = X @ dequant(B)``:

* ``qweight``: uint8 (ceil(K/2), N). Byte ``[i, n]`` holds code ``(2i, n)`` in its low nibble and code
  ``(2i+1, n)`` in its high nibble (the torchao ``PLAIN`` 2×int4-per-byte order along K). An odd K is padded with
  one zero nibble; the padding row is never read (its activation column does not exist).
* ``scales``, ``zeros``: (n_groups, N), any float dtype; zeros are in code units (integers for GPTQ/RTN).
* ``g_idx``: int32 or int64 (K,), optional.

Codes of 2 or 3 bits fit the same nibbles, so the kernel reads any ``bits ≤ 4`` unchanged.

Kernel (``_w4a16_kernel``): one program per (BLOCK_M × BLOCK_N) output tile and K-split. Per K-tile it loads
BLOCK_K/2 packed rows, splits each byte into its low and high nibble (``b & 0xF``, ``b >> 4``; unsigned, so no sign
extension), interleaves them back into BLOCK_K rows with ``tl.join`` + ``permute`` + ``reshape``, dequantizes in
fp32 as ``(q − z)·s`` and feeds ``tl.dot`` with fp32 accumulation. Scales and zeros are loaded once per tile (a
row broadcast over BLOCK_K) when the groups are consecutive and BLOCK_K divides ``group_size``; otherwise (act-order
``g_idx``, or small groups) they are gathered per K row, as in GPTQModel's ``quant_matmul_248_kernel``. With
``split_k > 1`` several programs share an output tile, each over every ``split_k``-th K-tile, and add their partial
sums into an fp32 buffer with ``tl.atomic_add`` (for small batches, where the output tiles alone do not fill the
GPU). The design follows the project spec (70-kernels-triton.md §1), which records torchao's
``prototype/hqq/kernels.py::_mixed_mm_kernel`` and GPTQModel's kernel; the code here is written from the math.

Rounding, which the reference :func:`w4a16_matmul_reference` reproduces step by step: the dequantized weight is
computed in fp32 (``q − z`` is exact for integer codes and zeros, then one rounding for the product), rounded to the
activation dtype, multiplied with fp32 accumulation, and the result is rounded to the activation dtype. So fp32
and fp16 results differ from the reference by summation order only.

bf16 under the CPU interpreter (``TRITON_INTERPRET=1``): the interpreter multiplies bf16 ``tl.dot`` operands as raw
bit patterns and rounds fp32→bf16 casts toward zero (spec 70 §4.1), so the wrapper computes bf16 inputs in fp32
there and rounds the fp32 result to bf16 with torch. The dequantized weight is then *not* rounded to bf16 first, so
the interpreted bf16 result may differ from the reference by one bf16 rounding of each weight (≲ 2⁻⁸ relative to
the output scale); exact bf16 parity is checked on a GPU only. On a GPU, fp32 inputs use ``input_precision="ieee"``
(no tf32) unless ``allow_tf32=True``.

Triton is optional: the module imports without it, and the reference always works.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "W4A16Config",
    "available",
    "default_config",
    "dequantize_packed",
    "interpreting",
    "pack_int4",
    "triton_installed",
    "unpack_int4",
    "w4a16_matmul",
    "w4a16_matmul_reference",
    "w4a16_matmul_triton",
]

# Bound on first use (see ``_kernel``); the kernel body looks it up in this module's globals.
tl: Any = None

MAX_PACKED_BITS = 4
"""Widest code the two-per-byte layout holds."""


# ----------------------------------------------------------------------------------------------------------------
# Packing (shared with scale.quantize.packed)
# ----------------------------------------------------------------------------------------------------------------


def pack_int4(codes: Tensor) -> Tensor:
    """Pack integer codes (K, N) in ``[0, 15]`` two per byte along K: uint8 (ceil(K/2), N).

    Byte ``[i, n] = codes[2i, n] | codes[2i+1, n] << 4``; an odd K gets one zero high nibble in its last row.
    Codes outside ``[0, 15]`` or a non-integer tensor are refused (they would silently wrap).
    """
    if not isinstance(codes, Tensor) or codes.ndim != 2:
        raise ValueError(f"pack_int4 expects a 2-D integer tensor (K, N), got "
                         f"{tuple(codes.shape) if isinstance(codes, Tensor) else type(codes).__name__}")
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise TypeError(f"pack_int4 expects integer codes, got dtype {codes.dtype}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) > 15):
        raise ValueError(f"int4 codes must lie in [0, 15], got values in [{int(codes.min())}, {int(codes.max())}]")
    K, N = codes.shape
    c = codes.to(torch.uint8)
    if K % 2:
        c = torch.cat([c, torch.zeros(1, N, dtype=torch.uint8, device=c.device)])
    return (c[0::2] | (c[1::2] << 4)).contiguous()


def unpack_int4(packed: Tensor, k: int) -> Tensor:
    """Inverse of :func:`pack_int4`: uint8 (ceil(k/2), N) -> uint8 codes (k, N)."""
    if not isinstance(packed, Tensor) or packed.dtype != torch.uint8 or packed.ndim != 2:
        raise ValueError(f"unpack_int4 expects a 2-D uint8 tensor, got "
                         f"{packed.dtype if isinstance(packed, Tensor) else type(packed).__name__}")
    if packed.shape[0] != (k + 1) // 2:
        raise ValueError(f"{packed.shape[0]} packed rows cannot hold k={k} codes (need {(k + 1) // 2})")
    out = torch.stack([packed & 0xF, packed >> 4], dim=1).reshape(-1, packed.shape[1])
    return out[:k]


# ----------------------------------------------------------------------------------------------------------------
# Reference
# ----------------------------------------------------------------------------------------------------------------


def _check_operands(qweight: Tensor, scales: Tensor, zeros: Tensor, k: int, group_size: int,
                    g_idx: Tensor | None) -> None:
    if qweight.dtype != torch.uint8 or qweight.ndim != 2:
        raise ValueError(f"qweight must be uint8 (ceil(K/2), N) with two codes per byte, got {qweight.dtype} "
                         f"{tuple(qweight.shape)}")
    if qweight.shape[0] != (k + 1) // 2:
        raise ValueError(f"qweight has {qweight.shape[0]} packed rows; K={k} needs {(k + 1) // 2}")
    n = qweight.shape[1]
    if scales.ndim != 2 or scales.shape != zeros.shape or scales.shape[1] != n:
        raise ValueError(f"scales {tuple(scales.shape)} and zeros {tuple(zeros.shape)} must both be (n_groups, {n})")
    if not scales.is_floating_point() or not zeros.is_floating_point():
        raise TypeError(f"scales and zeros must be floating point, got {scales.dtype} and {zeros.dtype}")
    if g_idx is None:
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size must be a positive int, got {group_size!r}")
        need = -(-k // group_size)
        if scales.shape[0] != need:
            raise ValueError(f"K={k} with group_size={group_size} needs {need} groups, scales has {scales.shape[0]}")
    else:
        if g_idx.shape != (k,) or g_idx.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"g_idx must be an int32/int64 tensor of shape ({k},), got {g_idx.dtype} "
                             f"{tuple(g_idx.shape)}")
        # The value check reads the tensor; on CUDA that would synchronize every call, so there the caller
        # (scale.quantize.packed checks when a layer is built) is trusted.
        if k and not g_idx.is_cuda and (int(g_idx.min()) < 0 or int(g_idx.max()) >= scales.shape[0]):
            raise ValueError(f"g_idx values must lie in [0, {scales.shape[0]}), got [{int(g_idx.min())}, "
                             f"{int(g_idx.max())}]")


def _row_groups(k: int, group_size: int, g_idx: Tensor | None, device: torch.device) -> Tensor:
    if g_idx is not None:
        return g_idx.long()
    return torch.arange(k, device=device) // group_size


def dequantize_packed(qweight: Tensor, scales: Tensor, zeros: Tensor, k: int, group_size: int,
                      g_idx: Tensor | None = None) -> Tensor:
    """The fp32 weight ``B[k, n] = S[g(k), n] · (Q[k, n] − Z[g(k), n])``, shape (K, N) (the transposed
    ``nn.Linear`` weight)."""
    _check_operands(qweight, scales, zeros, k, group_size, g_idx)
    q = unpack_int4(qweight, k).float()
    rows = _row_groups(k, group_size, g_idx, qweight.device)
    return (q - zeros.float()[rows]) * scales.float()[rows]


def w4a16_matmul_reference(x: Tensor, qweight: Tensor, scales: Tensor, zeros: Tensor, group_size: int,
                           g_idx: Tensor | None = None) -> Tensor:
    """``Y = X · dequant(B)`` in PyTorch, with the kernel's rounding steps (module docstring).

    ``x`` (..., K) in fp32/fp16/bf16 (fp64 is computed in fp64); returns (..., N) in ``x.dtype``.
    """
    k = x.shape[-1]
    W = dequantize_packed(qweight, scales, zeros, k, group_size, g_idx)
    if x.dtype == torch.float64:
        return x @ W.double()
    acc = x.float() @ W.to(x.dtype).float()
    return acc.to(x.dtype)


# ----------------------------------------------------------------------------------------------------------------
# Triton availability
# ----------------------------------------------------------------------------------------------------------------


def triton_installed() -> bool:
    """Whether the ``triton`` package can be imported (without importing it)."""
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for the CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def available() -> bool:
    """Whether the Triton path can run here: Triton is installed and either CUDA or the interpreter is available."""
    return triton_installed() and (interpreting() or torch.cuda.is_available())


# ----------------------------------------------------------------------------------------------------------------
# Kernel
# ----------------------------------------------------------------------------------------------------------------


def _w4a16_kernel(
    X, QW, S, Z, GIDX, Y,
    M, N, K,
    stride_xm, stride_xk,
    stride_qk, stride_qn,
    stride_sg, stride_sn,
    stride_zg, stride_zn,
    stride_ym, stride_yn,
    group_size,
    HAS_G_IDX: tl.constexpr,
    SCALE_ROW_PER_TILE: tl.constexpr,
    SPLIT_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Y[m, n] (+)= Σ_k X[m, k] · S[g(k), n] · (Q[k, n] − Z[g(k), n]) over this program's K-tiles."""
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    tiles_n = tl.cdiv(N, BLOCK_N)
    pid_m = pid // tiles_n
    pid_n = pid % tiles_n
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    offs_kp = tl.arange(0, BLOCK_K // 2)
    m_ok = offs_m < M
    n_ok = offs_n < N
    packed_rows = (K + 1) // 2
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    k_tiles = tl.cdiv(K, BLOCK_K)
    for kt in range(pid_k, k_tiles, SPLIT_K):
        k0 = kt * BLOCK_K
        kk = k0 + offs_k
        k_ok = kk < K
        x = tl.load(X + offs_m[:, None] * stride_xm + kk[None, :] * stride_xk,
                    mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        prow = k0 // 2 + offs_kp
        packed = tl.load(QW + prow[:, None] * stride_qk + offs_n[None, :] * stride_qn,
                         mask=(prow[:, None] < packed_rows) & n_ok[None, :], other=0)
        lo = packed & 0xF
        hi = packed >> 4
        q = tl.reshape(tl.permute(tl.join(lo, hi), (0, 2, 1)), (BLOCK_K, BLOCK_N)).to(tl.float32)
        if SCALE_ROW_PER_TILE:
            g = k0 // group_size
            s = tl.load(S + g * stride_sg + offs_n * stride_sn, mask=n_ok, other=0.0).to(tl.float32)
            z = tl.load(Z + g * stride_zg + offs_n * stride_zn, mask=n_ok, other=0.0).to(tl.float32)
            w = (q - z[None, :]) * s[None, :]
        else:
            if HAS_G_IDX:
                g = tl.load(GIDX + kk, mask=k_ok, other=0)
            else:
                g = kk // group_size
            sz_mask = k_ok[:, None] & n_ok[None, :]
            s = tl.load(S + g[:, None] * stride_sg + offs_n[None, :] * stride_sn, mask=sz_mask, other=0.0)
            z = tl.load(Z + g[:, None] * stride_zg + offs_n[None, :] * stride_zn, mask=sz_mask, other=0.0)
            w = (q - z.to(tl.float32)) * s.to(tl.float32)
        acc = tl.dot(x, w.to(x.dtype), acc, input_precision=INPUT_PRECISION)
    y_ptrs = Y + offs_m[:, None] * stride_ym + offs_n[None, :] * stride_yn
    y_mask = m_ok[:, None] & n_ok[None, :]
    if SPLIT_K == 1:
        tl.store(y_ptrs, acc.to(Y.dtype.element_ty), mask=y_mask)
    else:
        tl.atomic_add(y_ptrs, acc, mask=y_mask)


_KERNEL_CACHE: dict[bool, Any] = {}


def _kernel() -> Any:
    """The kernel wrapped by ``triton.jit``, once per interpreter mode (``triton.jit`` reads
    ``TRITON_INTERPRET`` when it wraps)."""
    mode = interpreting()
    if mode not in _KERNEL_CACHE:
        try:
            import triton
            import triton.language as triton_language
        except ImportError as exc:  # pragma: no cover - exercised only without triton
            raise RuntimeError("the Triton W4A16 path needs the 'triton' package (pip install 'triton>=3.0')") from exc
        global tl
        tl = triton_language
        _KERNEL_CACHE[mode] = triton.jit(_w4a16_kernel)
    return _KERNEL_CACHE[mode]


@dataclass(frozen=True)
class W4A16Config:
    """Tile sizes (powers of two ≥ 16, so a config tested under the interpreter stays valid for GPU ``tl.dot``),
    the K-split and launch options."""

    block_m: int = 16
    block_n: int = 64
    block_k: int = 64
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 3

    def __post_init__(self) -> None:
        for name in ("block_m", "block_n", "block_k"):
            v = getattr(self, name)
            if v < 16 or v & (v - 1):
                raise ValueError(f"{name} must be a power of two >= 16, got {v}")
        if self.split_k < 1:
            raise ValueError(f"split_k must be >= 1, got {self.split_k}")


def default_config(m: int, n: int, k: int, interpret: bool) -> W4A16Config:
    """One fixed configuration per case, no autotuning.

    Interpreter: 16×32×32 tiles so that small test shapes span several tiles. GPU: BLOCK_M = 16 for decoding-size
    batches (≤ 16 rows), 32 or 64 above; BLOCK_N = 64, BLOCK_K = 128; for small batches the K loop is split until
    the grid has about 2 programs per streaming multiprocessor. These are untuned starting points derived from the
    shapes, not measured optima.
    """
    if interpret:
        return W4A16Config(block_m=16, block_n=32, block_k=32, split_k=1, num_warps=4, num_stages=1)
    block_m = 16 if m <= 16 else (32 if m <= 32 else 64)
    block_n, block_k = 64, 128
    tiles = -(-m // block_m) * -(-n // block_n)
    sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count \
        if torch.cuda.is_available() else 108
    k_tiles = -(-k // block_k)
    split_k = 1
    while tiles * split_k < 2 * sms and split_k * 2 <= max(1, k_tiles // 4):
        split_k *= 2
    return W4A16Config(block_m=block_m, block_n=block_n, block_k=block_k, split_k=split_k, num_warps=4,
                       num_stages=3)


def _explain_interpreter_error(exc: Exception) -> None:
    if interpreting() and "outside of the scope of a kernel" in str(exc):
        raise RuntimeError(
            "the Triton interpreter cannot run in this process: 'triton' was imported before TRITON_INTERPRET=1 was "
            "set; set the variable before anything imports triton (or run in a fresh process)"
        ) from exc


def w4a16_matmul_triton(x: Tensor, qweight: Tensor, scales: Tensor, zeros: Tensor, group_size: int,
                        g_idx: Tensor | None = None, *, config: W4A16Config | None = None,
                        allow_tf32: bool = False) -> Tensor:
    """``Y = X · dequant(B)`` with the Triton kernel: compiled for CUDA tensors, interpreted when
    ``TRITON_INTERPRET=1``. Same arguments and result as :func:`w4a16_matmul_reference`; fp32/fp16/bf16 only."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"the Triton W4A16 path supports float32/float16/bfloat16 activations, got {x.dtype}; "
                        "use w4a16_matmul_reference for float64")
    interpret = interpreting()
    if not (interpret or x.is_cuda):
        raise RuntimeError("the Triton path needs CUDA tensors, or TRITON_INTERPRET=1 for the CPU interpreter")
    k = x.shape[-1]
    _check_operands(qweight, scales, zeros, k, group_size, g_idx)
    devices = {t.device for t in (x, qweight, scales, zeros) + (() if g_idx is None else (g_idx,))}
    if len(devices) > 1:
        raise ValueError(f"x, qweight, scales, zeros and g_idx must be on one device, got {sorted(map(str, devices))}")
    kernel = _kernel()
    n = qweight.shape[1]
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    work = torch.float32 if (interpret and x.dtype == torch.bfloat16) else x.dtype
    x2 = x2.to(work)
    cfg = config or default_config(m, n, k, interpret)
    if m == 0 or n == 0:
        return torch.zeros(*lead, n, dtype=x.dtype, device=x.device)
    if k == 0:
        return torch.zeros(*lead, n, dtype=x.dtype, device=x.device)
    out_dtype = torch.float32 if cfg.split_k > 1 else work
    y = (torch.zeros if cfg.split_k > 1 else torch.empty)(m, n, dtype=out_dtype, device=x.device)
    gidx = g_idx if g_idx is not None else scales  # never read without HAS_G_IDX
    grid = (-(-m // cfg.block_m) * -(-n // cfg.block_n), cfg.split_k)
    try:
        kernel[grid](
            x2, qweight, scales, zeros, gidx, y,
            m, n, k,
            *x2.stride(), *qweight.stride(), *scales.stride(), *zeros.stride(), *y.stride(),
            group_size if g_idx is None else 1,
            HAS_G_IDX=g_idx is not None,
            SCALE_ROW_PER_TILE=g_idx is None and group_size % cfg.block_k == 0,
            SPLIT_K=cfg.split_k,
            INPUT_PRECISION="tf32" if (allow_tf32 and work == torch.float32) else "ieee",
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )
    except Exception as exc:
        _explain_interpreter_error(exc)
        raise
    return y.to(x.dtype).reshape(*lead, n)


def w4a16_matmul(x: Tensor, qweight: Tensor, scales: Tensor, zeros: Tensor, group_size: int,
                 g_idx: Tensor | None = None, *, backend: str = "auto") -> Tensor:
    """``Y = X · dequant(B)`` with a backend choice.

    ``"torch"``: :func:`w4a16_matmul_reference`; ``"triton"``: :func:`w4a16_matmul_triton` (errors when it cannot
    run); ``"auto"``: the compiled kernel for CUDA fp32/fp16/bf16 activations when Triton is installed, otherwise the
    reference (the interpreter is never chosen automatically: it is for tests).
    """
    if backend == "torch":
        return w4a16_matmul_reference(x, qweight, scales, zeros, group_size, g_idx)
    if backend == "triton":
        return w4a16_matmul_triton(x, qweight, scales, zeros, group_size, g_idx)
    if backend != "auto":
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if (x.is_cuda and x.dtype in (torch.float32, torch.float16, torch.bfloat16) and triton_installed()
            and not interpreting()):
        return w4a16_matmul_triton(x, qweight, scales, zeros, group_size, g_idx)
    return w4a16_matmul_reference(x, qweight, scales, zeros, group_size, g_idx)
