"""W4A16 dequantize-matmul (kernels/w4a16.py): packing, the PyTorch reference against the quantizer's formula, the
Triton kernel against the reference under the CPU interpreter (with "would catch" twins for act-order groups and
zero points), and the command line of the GPU benchmark (``scale.bench.w4a16_kernel``).

Interpreter set-up as in tests/test_kernels_newton_schulz.py: ``TRITON_INTERPRET=1`` must be set before ``triton`` is
imported; when this process imported triton too early, the interpreter tests run once, together, in a fresh pytest
subprocess with the flag set.

Tolerances. The kernel and the reference dequantize identically (exact fp32 ``q − z``, one rounding for ``·s``, one
rounding to the activation dtype), so they differ by the order of the K-sums only: for fp32 with K ≤ 100 and
entries of size O(1), below 1e-5 relative to the output scale (measured: ≤ 4e-7); ``rtol = 1e-5, atol = 1e-5 · max|Y|``.
fp16 output: both sides accumulate in fp32 and round once to fp16, so they agree to one fp16 ulp (2⁻¹⁰ relative).
bf16 under the interpreter is computed in fp32 (the interpreter's bf16 ``tl.dot`` is wrong) and only the output is
rounded: compared with the reference computed from fp32 activations, within one bf16 ulp (2⁻⁸ relative). The twins
produce O(1) relative differences, far outside these tolerances.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import torch

_TRUTHY = ("1", "true", "yes", "on")
_TRITON_PREIMPORTED_WITHOUT_FLAG = (
    "triton" in sys.modules and os.environ.get("TRITON_INTERPRET", "0").strip().lower() not in _TRUTHY
)
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from kernels import w4a16 as w4  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HAS_TRITON = w4.triton_installed()
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install 'triton>=3.0')")
SMALL = w4.W4A16Config(block_m=16, block_n=16, block_k=16, split_k=1, num_stages=1)

_INTERPRETED_TESTS: list[str] = []


def _interpreter_in_process() -> bool:
    return w4.interpreting() and not _TRITON_PREIMPORTED_WITHOUT_FLAG


@functools.lru_cache(maxsize=1)
def _subprocess_outcomes() -> tuple[dict[str, str], str]:
    rel = Path(__file__).resolve().relative_to(ROOT).as_posix()
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", rel,
                           "-k", " or ".join(_INTERPRETED_TESTS)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    outcomes = {}
    for line in proc.stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("PASSED", "FAILED", "ERROR", "SKIPPED") and "::" in rest:
            outcomes[rest.split(" - ", 1)[0].strip()] = word
    return outcomes, proc.stdout[-4000:] + proc.stderr[-2000:]


def interpreted(test):
    """Run ``test`` under the Triton interpreter, in this process or (when triton was imported too early) in one
    fresh pytest process for the whole file."""
    _INTERPRETED_TESTS.append(test.__name__)

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        if _interpreter_in_process():
            return test(*args, **kwargs)
        nodeid = os.environ["PYTEST_CURRENT_TEST"].rsplit(" (", 1)[0]
        outcomes, log = _subprocess_outcomes()
        assert outcomes.get(nodeid) == "PASSED", f"interpreter subprocess: {nodeid} -> {outcomes.get(nodeid)}\n{log}"

    return needs_triton(wrapper)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _problem(m: int, k: int, n: int, group_size: int, seed: int, act_order: bool = False,
             scale_dtype: torch.dtype = torch.float32):
    """Random codes (K, N), scales/zeros (n_groups, N), activations (M, K) and, for act-order, the g_idx of a
    random permutation (group of column k = position of k in the permutation // group_size)."""
    g = _gen(seed)
    codes = torch.randint(0, 16, (k, n), generator=g)
    n_groups = -(-k // group_size)
    scales = (torch.rand(n_groups, n, generator=g) * 0.5 + 0.05).to(scale_dtype)
    zeros = torch.randint(0, 16, (n_groups, n), generator=g).to(scale_dtype)
    x = torch.randn(m, k, generator=g)
    g_idx = None
    if act_order:
        perm = torch.randperm(k, generator=g)
        g_idx = torch.empty(k, dtype=torch.int64)
        g_idx[perm] = torch.arange(k) // group_size
    return codes, scales, zeros, x, g_idx


def _explicit_weight(codes, scales, zeros, group_size, g_idx):
    """W[k, n] = S[g(k), n] · (Q[k, n] − Z[g(k), n]) written entry by entry from the unpacked codes (an
    independent statement of the formula, not the code under test)."""
    k, n = codes.shape
    W = torch.empty(k, n, dtype=torch.float64)
    for row in range(k):
        grp = int(g_idx[row]) if g_idx is not None else row // group_size
        W[row] = scales[grp].double() * (codes[row].double() - zeros[grp].double())
    return W


def _assert_parity(y, ref, rtol=1e-5):
    scale = float(ref.abs().max())
    torch.testing.assert_close(y.float(), ref.float(), rtol=rtol, atol=rtol * scale)


# --------------------------------------------------------------------------------------------------------------
# Packing and the reference (no triton needed)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 7, 64])
def test_pack_unpack_round_trip_is_exact(k):
    codes = torch.randint(0, 16, (k, 5), generator=_gen(k))
    packed = w4.pack_int4(codes)
    assert packed.dtype == torch.uint8 and packed.shape == ((k + 1) // 2, 5)
    assert torch.equal(w4.unpack_int4(packed, k), codes.to(torch.uint8))
    # the documented layout: even k in the low nibble, odd k in the high nibble
    assert torch.equal(packed[0] & 0xF, codes[0].to(torch.uint8))
    if k > 1:
        assert torch.equal(packed[0] >> 4, codes[1].to(torch.uint8))
    else:
        assert not bool((packed >> 4).any())  # the padding nibble of an odd K is zero


def test_packing_refuses_bad_codes():
    with pytest.raises(ValueError, match=r"\[0, 15\].*\[0, 16\]"):
        w4.pack_int4(torch.tensor([[0, 16]]))
    with pytest.raises(ValueError, match=r"\[-1, 3\]"):
        w4.pack_int4(torch.tensor([[-1, 3]]))
    with pytest.raises(TypeError, match="integer codes"):
        w4.pack_int4(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="2-D"):
        w4.pack_int4(torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="k=5"):
        w4.unpack_int4(torch.zeros(2, 3, dtype=torch.uint8), 5)


@pytest.mark.parametrize("act_order", [False, True])
def test_reference_matches_the_explicit_formula(act_order):
    codes, scales, zeros, x, g_idx = _problem(3, 40, 6, 16, seed=1, act_order=act_order)  # ragged: 40 = 16+16+8
    W = _explicit_weight(codes, scales, zeros, 16, g_idx)
    packed = w4.pack_int4(codes)
    torch.testing.assert_close(w4.dequantize_packed(packed, scales, zeros, 40, 16, g_idx).double(), W,
                               rtol=1e-7, atol=0)
    torch.testing.assert_close(w4.w4a16_matmul_reference(x.double(), packed, scales, zeros, 16, g_idx),
                               x.double() @ W, rtol=1e-6, atol=1e-6)


def test_operand_checks_name_the_problem():
    codes, scales, zeros, x, _ = _problem(2, 32, 8, 16, seed=2)
    packed = w4.pack_int4(codes)
    with pytest.raises(ValueError, match="needs 2 groups"):
        w4.w4a16_matmul_reference(x, packed, scales[:1], zeros[:1], 16)
    with pytest.raises(ValueError, match="packed rows"):
        w4.w4a16_matmul_reference(x[:, :30], packed, scales, zeros, 16)
    with pytest.raises(ValueError, match=r"g_idx values must lie in \[0, 2\)"):
        w4.w4a16_matmul_reference(x, packed, scales, zeros, 16, torch.full((32,), 2))
    with pytest.raises(ValueError, match="backend"):
        w4.w4a16_matmul(x, packed, scales, zeros, 16, backend="cuda")
    with pytest.raises(TypeError, match="float64"):
        w4.w4a16_matmul_triton(x.double(), packed, scales, zeros, 16)
    with pytest.raises(ValueError, match="power of two"):
        w4.W4A16Config(block_k=24)


def test_auto_dispatch_on_cpu_is_the_reference():
    codes, scales, zeros, x, _ = _problem(4, 32, 8, 16, seed=3)
    packed = w4.pack_int4(codes)
    assert torch.equal(w4.w4a16_matmul(x, packed, scales, zeros, 16),
                       w4.w4a16_matmul_reference(x, packed, scales, zeros, 16))


# --------------------------------------------------------------------------------------------------------------
# Triton under the interpreter
# --------------------------------------------------------------------------------------------------------------


@interpreted
@pytest.mark.parametrize(
    "m,k,n,group_size,act_order,config",
    [
        (5, 96, 80, 32, False, None),  # default interpreter tiles (16x32x32): one scale row per K-tile
        (5, 96, 80, 16, False, None),  # groups smaller than BLOCK_K: per-row gather
        (17, 40, 33, 16, False, SMALL),  # ragged last group, M/N/K tails
        (3, 33, 20, 16, False, SMALL),  # odd K: the padding nibble is never used
        (5, 96, 48, 32, True, None),  # act-order g_idx
        (6, 64, 40, 16, False, w4.W4A16Config(16, 16, 16, split_k=3, num_stages=1)),  # split-K + atomics
    ],
    ids=["tile-scales", "gathered-scales", "ragged", "odd-k", "act-order", "split-k"],
)
def test_triton_matches_reference_fp32(m, k, n, group_size, act_order, config):
    codes, scales, zeros, x, g_idx = _problem(m, k, n, group_size, seed=k + n, act_order=act_order)
    packed = w4.pack_int4(codes)
    y = w4.w4a16_matmul_triton(x, packed, scales, zeros, group_size, g_idx, config=config)
    assert y.shape == (m, n) and y.dtype == torch.float32
    _assert_parity(y, w4.w4a16_matmul_reference(x, packed, scales, zeros, group_size, g_idx))


@interpreted
def test_triton_batched_input_and_dispatch():
    codes, scales, zeros, x, _ = _problem(6, 32, 24, 16, seed=5)
    packed = w4.pack_int4(codes)
    x3 = x.reshape(2, 3, 32)
    y = w4.w4a16_matmul(x3, packed, scales, zeros, 16, backend="triton")
    assert y.shape == (2, 3, 24)
    _assert_parity(y, w4.w4a16_matmul_reference(x3, packed, scales, zeros, 16))


@interpreted
def test_triton_fp16_and_bf16_activations():
    codes, scales, zeros, x, _ = _problem(5, 64, 48, 32, seed=6, scale_dtype=torch.float16)
    packed = w4.pack_int4(codes)
    xh = x.half()
    yh = w4.w4a16_matmul_triton(xh, packed, scales, zeros, 32)
    assert yh.dtype == torch.float16
    _assert_parity(yh, w4.w4a16_matmul_reference(xh, packed, scales, zeros, 32), rtol=2**-10)
    # bf16: computed in fp32 under the interpreter, rounded to bf16 at the end (module docstring of kernels.w4a16)
    xb = x.bfloat16()
    yb = w4.w4a16_matmul_triton(xb, packed, scales, zeros, 32)
    assert yb.dtype == torch.bfloat16
    _assert_parity(yb, w4.w4a16_matmul_reference(xb.float(), packed, scales, zeros, 32), rtol=2**-8)


@interpreted
def test_would_catch_a_kernel_that_ignores_g_idx():
    """The act-order parity check fails for a kernel that uses consecutive groups instead of ``g_idx``."""
    codes, scales, zeros, x, g_idx = _problem(5, 96, 48, 32, seed=7, act_order=True)
    packed = w4.pack_int4(codes)
    ref = w4.w4a16_matmul_reference(x, packed, scales, zeros, 32, g_idx)
    wrong = w4.w4a16_matmul_triton(x, packed, scales, zeros, 32, None)
    with pytest.raises(AssertionError):
        _assert_parity(wrong, ref)
    # and one group index off (the permutation not carried back) fails as well
    shifted = torch.roll(g_idx, 1)
    with pytest.raises(AssertionError):
        _assert_parity(w4.w4a16_matmul_triton(x, packed, scales, zeros, 32, shifted), ref)


@interpreted
def test_would_catch_wrong_zero_point_handling():
    """Zero points taken in weight units (``s·q − z`` instead of ``s·(q − z)``) or dropped fail the parity check.

    Both bugs are reproduced with the real kernel: ``s·q − z = s·(q − z/s)``, so passing ``z/s`` as the zeros is
    exactly the wrong-units kernel; passing zeros of 0 is the kernel that forgets them.
    """
    codes, scales, zeros, x, _ = _problem(5, 64, 32, 32, seed=8)
    packed = w4.pack_int4(codes)
    ref = w4.w4a16_matmul_reference(x, packed, scales, zeros, 32)
    _assert_parity(w4.w4a16_matmul_triton(x, packed, scales, zeros, 32), ref)
    for bad_zeros in (zeros / scales, torch.zeros_like(zeros)):
        with pytest.raises(AssertionError):
            _assert_parity(w4.w4a16_matmul_triton(x, packed, scales, bad_zeros, 32), ref)


@interpreted
def test_quant_linear_on_the_kernel_with_a_gptq_act_order_weight():
    """End to end: GPTQ with act-order produces a real g_idx; QuantLinear forced onto the kernel equals
    ``X @ dequantize().T`` (fp32, summation order only)."""
    from scale.quantize.gptq import gptq, hessian_from_inputs
    from scale.quantize.packed import QuantLinear

    g = _gen(9)
    X = torch.randn(256, 96, generator=g) * torch.linspace(0.1, 3.0, 96)
    qw = gptq(torch.randn(40, 96, generator=g), hessian_from_inputs(X), group_size=32, act_order=True)
    assert qw.g_idx is not None
    x = torch.randn(5, 96, generator=g)
    _assert_parity(QuantLinear.from_quantized(qw, backend="triton")(x), x @ qw.dequantize().T)


# --------------------------------------------------------------------------------------------------------------
# GPU only: compiled kernel (skipped on CPU machines)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available() or not HAS_TRITON or w4.interpreting(),
                    reason="needs a CUDA GPU, triton, and TRITON_INTERPRET unset (compiled kernel)")
@pytest.mark.parametrize("m", [1, 16, 33])
@pytest.mark.parametrize("act_order", [False, True])
def test_compiled_matches_reference_on_gpu(m, act_order):
    codes, scales, zeros, x, g_idx = _problem(m, 512, 384, 128, seed=m, act_order=act_order,
                                              scale_dtype=torch.float16)
    dev = torch.device("cuda")
    packed = w4.pack_int4(codes).to(dev)
    scales, zeros = scales.to(dev), zeros.to(dev)
    g_idx = None if g_idx is None else g_idx.to(dev)
    for dtype, rtol in ((torch.float32, 1e-5), (torch.float16, 2**-10), (torch.bfloat16, 2**-7)):
        xd = x.to(dev, dtype)
        _assert_parity(w4.w4a16_matmul_triton(xd, packed, scales, zeros, 128, g_idx),
                       w4.w4a16_matmul_reference(xd, packed, scales, zeros, 128, g_idx), rtol=rtol)


# --------------------------------------------------------------------------------------------------------------
# The GPU benchmark's command line (scale.bench.w4a16_kernel)
# --------------------------------------------------------------------------------------------------------------


def test_bench_help_and_bad_settings(capsys):
    from scale.bench import w4a16_kernel as bench

    assert bench.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m scale.bench.w4a16_kernel")
    for flag in ("--shapes", "--batches", "--group-size", "--act-order", "--repeats", "--warmup", "--torchao"):
        assert flag in out, flag
    assert bench.parse_shape("4096x11008") == (4096, 11008)
    for argv, message in ((["--shapes", "4096"], "two positive dimensions"),
                          (["--shapes", "4096xq"], "looks like 4096x11008"),
                          (["--group-size", "100"], "multiple of 16"),
                          (["--shapes", "4000x64", "--group-size", "128"], "does not divide"),
                          (["--batches", "0"], "positive integers"),
                          (["--block-n", "24"], "power of two"),
                          (["--split-k", "-1"], "--split-k must be >= 0")):
        assert bench.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m scale.bench.w4a16_kernel: error:") and message in err, err
    # options left at 0 keep the kernel's defaults; set ones replace them
    default = w4.default_config(1, 4096, 4096, interpret=False)
    assert bench.kernel_config(bench.Config(), 1, 4096, 4096) == default
    tuned = bench.kernel_config(bench.Config(split_k=2, block_n=32), 1, 4096, 4096)
    assert (tuned.split_k, tuned.block_n, tuned.block_k) == (2, 32, default.block_k)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message printed without CUDA")
def test_bench_without_cuda_says_so(capsys):
    from scale.bench import w4a16_kernel as bench

    assert bench.main(["--preset", "smoke"]) == 2
    assert capsys.readouterr().err.startswith("python -m scale.bench.w4a16_kernel: error: CUDA is not available")


@pytest.mark.skipif(not torch.cuda.is_available() or not HAS_TRITON or w4.interpreting(),
                    reason="needs a CUDA GPU, triton, and TRITON_INTERPRET unset (compiled kernel)")
def test_bench_smoke_preset_on_gpu(capsys):
    from scale.bench import w4a16_kernel as bench

    assert bench.main(["--preset", "smoke", "--repeats", "2", "--warmup", "1", "--act-order"]) == 0
    out = capsys.readouterr().out
    assert "4096x4096" in out and "g_idx" in out
