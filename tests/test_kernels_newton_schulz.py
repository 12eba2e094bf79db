"""Newton–Schulz kernels (kernels/newton_schulz.py): the Triton path against the PyTorch reference on the CPU
interpreter, the reference against float64 and against optlib.linalg, and the command line of the GPU benchmark
(``scale.bench.newton_schulz_kernel``).

Interpreter set-up (spec 70 §4–5): ``TRITON_INTERPRET=1`` must be in the environment before ``triton`` is imported
(Triton's builtins such as ``tl.zeros`` are created for the compiler otherwise, and an interpreted launch fails with
"Cannot call @triton.jit'd outside of the scope of a kernel"). This module sets it at import when there is no GPU;
``kernels.newton_schulz`` imports triton lazily, so the flag is in place in time unless some other module in the same
worker imported triton first. In that case, or on a GPU machine (where the flag is not set so that compiled kernels
can be tested), the interpreter tests run once, together, in a fresh ``python -m pytest`` subprocess with the flag
set, and each of them here reports its outcome there.

Tolerances (fp32): one step of the iteration is three matmuls of O(1) entries, so the interpreter (numpy fp32
matmuls) and torch differ by summation order only, ~1e-8 absolute. Each step multiplies earlier rounding errors by
roughly |a| + |b| + |c| ≈ 10 for the classic coefficients, and after 5 steps the measured difference is ≤ 1e-6
absolute (relative Frobenius error ~1e-6) on the shapes below. ``rtol = atol = 1e-5`` leaves a 10× margin while
still catching any indexing or masking error, which produces O(0.1) differences.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import torch

_TRUTHY = ("1", "true", "yes", "on")
# Recorded before this module touches the flag: was triton imported in this process without the interpreter?
_TRITON_PREIMPORTED_WITHOUT_FLAG = (
    "triton" in sys.modules and os.environ.get("TRITON_INTERPRET", "0").strip().lower() not in _TRUTHY
)
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from kernels import newton_schulz as ns  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HAS_TRITON = ns.triton_installed()
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install 'triton>=3.0')")

RTOL = ATOL = 1e-5
SHAPES = [(32, 64), (48, 48), (3, 16, 40), (64, 32)]
# Dion's per-iteration schedule (microsoft/dion, dion/newton_schulz_triton.py; spec 70 §2).
DION_SCHEDULE = [
    (4.0848, -6.8946, 2.9270),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
]
SMALL_TILES = ns.KernelConfig(block=16, block_n=16, block_k=16, num_stages=1)


def _interpreter_in_process() -> bool:
    return ns.interpreting() and not _TRITON_PREIMPORTED_WITHOUT_FLAG


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


_INTERPRETED_TESTS: list[str] = []


@functools.lru_cache(maxsize=1)
def _subprocess_outcomes() -> tuple[dict[str, str], str]:
    """Run every interpreter test of this file once in a fresh pytest process; map test id -> outcome."""
    rel = Path(__file__).resolve().relative_to(ROOT).as_posix()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", rel,
         "-k", " or ".join(_INTERPRETED_TESTS)],
        cwd=ROOT, env=_subprocess_env(), capture_output=True, text=True, timeout=600,
    )
    outcomes = {}
    for line in proc.stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("PASSED", "FAILED", "ERROR", "SKIPPED") and "::" in rest:
            outcomes[rest.split(" - ", 1)[0].strip()] = word
    return outcomes, proc.stdout[-4000:] + proc.stderr[-2000:]


def interpreted(test):
    """Run ``test`` under the Triton interpreter: in this process when the flag was set in time, otherwise (one
    batch for the whole file) in a fresh pytest process started with ``TRITON_INTERPRET=1``."""
    _INTERPRETED_TESTS.append(test.__name__)

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        if _interpreter_in_process():
            return test(*args, **kwargs)
        nodeid = os.environ["PYTEST_CURRENT_TEST"].rsplit(" (", 1)[0]
        outcomes, log = _subprocess_outcomes()
        outcome = outcomes.get(nodeid)
        assert outcome == "PASSED", f"interpreter subprocess: {nodeid} -> {outcome}\n{log}"

    return needs_triton(wrapper)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------------------------
# Coefficients and the reference (no triton needed)
# --------------------------------------------------------------------------------------------------------------


def test_coefficient_schedule_forms():
    assert ns.coefficient_schedule((1, 2, 3), 2) == [(1.0, 2.0, 3.0)] * 2
    assert ns.coefficient_schedule(DION_SCHEDULE, 5) == DION_SCHEDULE
    assert ns.coefficient_schedule(ns.DEFAULT_COEFFICIENTS, 0) == []
    for steps in (3, 6):
        with pytest.raises(ValueError, match="one triple per step"):
            ns.coefficient_schedule(DION_SCHEDULE, steps)
    with pytest.raises(ValueError, match="triple"):
        ns.coefficient_schedule([(1, 2, 3), (1, 2)], 2)
    with pytest.raises(ValueError, match="non-negative"):
        ns.coefficient_schedule((1, 2, 3), -1)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="matrix"):
        ns.newton_schulz_reference(torch.ones(5))
    with pytest.raises(TypeError, match="floating"):
        ns.newton_schulz_reference(torch.ones(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="backend"):
        ns.newton_schulz(torch.ones(3, 4), backend="cuda")
    with pytest.raises(TypeError, match="float64"):
        ns.newton_schulz_triton(torch.ones(3, 4, dtype=torch.float64))


def test_reference_fp32_matches_float64():
    G = torch.randn(3, 24, 40, generator=_gen(0), dtype=torch.float64)
    out32 = ns.newton_schulz_reference(G.float())
    out64 = ns.newton_schulz_reference(G)
    torch.testing.assert_close(out32.double(), out64, rtol=RTOL, atol=ATOL)


def test_reference_semantics():
    G = torch.randn(2, 3, 20, 36, generator=_gen(1), dtype=torch.float64)
    out = ns.newton_schulz_reference(G)
    assert out.shape == G.shape and out.dtype == G.dtype
    # batched == one matrix at a time; a tall matrix is handled through its transpose
    torch.testing.assert_close(out[1, 2], ns.newton_schulz_reference(G[1, 2]))
    torch.testing.assert_close(ns.newton_schulz_reference(G.mT), out.mT)
    # zero steps: the Frobenius-normalized input
    torch.testing.assert_close(ns.newton_schulz_reference(G[0, 0], steps=0), G[0, 0] / (G[0, 0].norm() + 1e-7))
    # one step by hand
    X = G[0, 0] / (G[0, 0].norm() + 1e-7)
    a, b, c = ns.DEFAULT_COEFFICIENTS
    A = X @ X.T
    torch.testing.assert_close(ns.newton_schulz_reference(G[0, 0], steps=1), a * X + (b * A + c * A @ A) @ X)
    # compute_dtype: bf16 input computed in fp32 returns bf16
    Gb = G[0, 0].to(torch.bfloat16)
    out_b = ns.newton_schulz_reference(Gb, compute_dtype=torch.float32)
    assert out_b.dtype == torch.bfloat16
    torch.testing.assert_close(out_b, ns.newton_schulz_reference(Gb.float()).to(torch.bfloat16), rtol=0, atol=0)


def test_reference_orthogonalizes_within_the_quintic_band():
    # The classic quintic does not converge to 1: after 5 steps the singular values sit in a band around 1
    # (Jordan et al. 2024 describe roughly U(0.5, 1.5)). Measured on float64 for Gaussian 32x64 inputs, seeds 0-4:
    # smallest singular value 0.682, largest 1.134; the assertion keeps a margin around that band.
    G = torch.randn(32, 64, generator=_gen(2), dtype=torch.float64)
    s = torch.linalg.svdvals(ns.newton_schulz_reference(G))
    assert s.min() > 0.6 and s.max() < 1.25, s
    # singular vectors are kept: X = U f(Σ) Vᵀ with f > 0, so X Gᵀ = U f(Σ) Σ Uᵀ is symmetric positive definite
    XGt = ns.newton_schulz_reference(G) @ G.T
    torch.testing.assert_close(XGt, XGt.T)
    assert torch.linalg.eigvalsh(XGt).min() > 0


def test_reference_matches_optlib_linalg():
    linalg = pytest.importorskip("optlib.linalg")
    if not hasattr(linalg, "newton_schulz"):
        pytest.skip("optlib.linalg.newton_schulz does not exist yet")
    G = torch.randn(2, 24, 40, generator=_gen(3))
    torch.testing.assert_close(linalg.newton_schulz(G), ns.newton_schulz_reference(G), rtol=1e-6, atol=1e-6)
    Gt = torch.randn(40, 24, generator=_gen(4))
    torch.testing.assert_close(
        linalg.newton_schulz(Gt, steps=5, coefficients=DION_SCHEDULE),
        ns.newton_schulz_reference(Gt, steps=5, coefficients=DION_SCHEDULE), rtol=1e-6, atol=1e-6,
    )


def test_module_imports_and_falls_back_without_triton():
    code = (
        "import sys; sys.modules['triton'] = None\n"  # makes 'import triton' raise ImportError
        "import torch\n"
        "from kernels import newton_schulz as ns\n"
        "assert not ns.available()\n"
        "G = torch.randn(8, 12)\n"
        "assert torch.equal(ns.newton_schulz(G), ns.newton_schulz_reference(G))\n"
        "try:\n"
        "    ns.newton_schulz_triton(G)\n"
        "except RuntimeError as e:\n"
        "    assert 'triton' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('expected RuntimeError')\n"
    )
    # TRITON_INTERPRET is set to show that the fallback does not depend on it.
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------------------------------------------
# Triton under the interpreter
# --------------------------------------------------------------------------------------------------------------


@interpreted
@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_triton_matches_reference_fp32(shape, steps):
    G = torch.randn(*shape, generator=_gen(10 + steps))
    out = ns.newton_schulz_triton(G, steps)
    assert out.shape == G.shape and out.dtype == G.dtype
    torch.testing.assert_close(out, ns.newton_schulz_reference(G, steps), rtol=RTOL, atol=ATOL)


@interpreted
def test_triton_per_step_schedule_and_small_tiles():
    # 16-wide tiles: 40 rows -> 3 row tiles (last one partial), 50 columns -> partial K tiles.
    G = torch.randn(40, 50, generator=_gen(20))
    out = ns.newton_schulz_triton(G, 5, DION_SCHEDULE, config=SMALL_TILES)
    torch.testing.assert_close(out, ns.newton_schulz_reference(G, 5, DION_SCHEDULE), rtol=RTOL, atol=ATOL)


@interpreted
@pytest.mark.parametrize("shape", [(48, 48), (2, 40, 50), (1, 16, 3)])
def test_sym_gram_matches_x_xt(shape):
    X = torch.randn(*shape, generator=_gen(30))
    X = X if X.ndim == 3 else X[None]
    expected = X @ X.mT
    torch.testing.assert_close(ns.sym_gram(X, config=SMALL_TILES), expected, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(ns.sym_gram(X), expected, rtol=RTOL, atol=ATOL)
    # the fused second line: c·A Aᵀ + b·A with A symmetric
    A = expected
    torch.testing.assert_close(ns.sym_gram(A, A, alpha=2.0315, beta=-4.775, config=SMALL_TILES),
                               2.0315 * A @ A - 4.775 * A, rtol=RTOL, atol=1e-4)


@interpreted
def test_sym_gram_output_is_exactly_symmetric_off_the_diagonal_tiles():
    X = torch.randn(1, 40, 24, generator=_gen(31))
    C = ns.sym_gram(X, config=SMALL_TILES)[0]
    # strictly-upper tiles are mirrored, so entries in different tiles are bitwise equal to their transposes
    rows = torch.arange(40) // 16
    off_tile = rows[:, None] != rows[None, :]
    assert torch.equal(C[off_tile], C.T[off_tile])


@interpreted
def test_triton_low_precision_inputs():
    G = torch.randn(24, 40, generator=_gen(40))
    # bf16 is upcast to fp32 inside the wrapper (bf16 tl.dot is wrong under the interpreter): the only error left is
    # the final rounding to bf16, at most one bf16 ulp (2^-8 relative) of the fp32 result.
    Gb = G.to(torch.bfloat16)
    out_b = ns.newton_schulz_triton(Gb)
    assert out_b.dtype == torch.bfloat16
    ref_b = ns.newton_schulz_reference(Gb.float())
    torch.testing.assert_close(out_b.float(), ref_b, rtol=2**-8, atol=1e-6)
    # fp16 stays fp16 between steps (fp32 accumulation); 5 steps of fp16 storage round-off (2^-11 relative,
    # amplified ~10x per step as above) stay below 5e-3 absolute for entries of size <= 0.5.
    Gh = G.to(torch.float16)
    out_h = ns.newton_schulz_triton(Gh)
    assert out_h.dtype == torch.float16
    torch.testing.assert_close(out_h.float(), ns.newton_schulz_reference(Gh.float()), rtol=0, atol=5e-3)


@interpreted
def test_dispatch_and_edge_cases():
    G = torch.randn(20, 36, generator=_gen(50))
    assert ns.available()
    torch.testing.assert_close(ns.newton_schulz(G), ns.newton_schulz_triton(G), rtol=0, atol=0)
    assert torch.equal(ns.newton_schulz(G, backend="torch"), ns.newton_schulz_reference(G))
    G64 = G.double()
    assert torch.equal(ns.newton_schulz(G64), ns.newton_schulz_reference(G64))
    torch.testing.assert_close(ns.newton_schulz_triton(G, steps=0), ns.newton_schulz_reference(G, steps=0))
    empty = torch.randn(0, 5, 7)
    assert ns.newton_schulz_triton(empty).shape == (0, 5, 7)
    # non-contiguous input (a transposed view) is handled
    Gv = torch.randn(36, 20, generator=_gen(51)).T
    torch.testing.assert_close(ns.newton_schulz_triton(Gv), ns.newton_schulz_reference(Gv), rtol=RTOL, atol=ATOL)


def test_preimported_triton_gives_an_actionable_error():
    # The failure mode that the subprocess fallback above avoids, made explicit.
    if not HAS_TRITON:
        pytest.skip("triton is not installed (pip install 'triton>=3.0')")
    code = (
        "import os, torch, triton\n"
        "os.environ['TRITON_INTERPRET'] = '1'\n"
        "from kernels import newton_schulz as ns\n"
        "try:\n"
        "    ns.newton_schulz_triton(torch.randn(16, 16))\n"
        "except RuntimeError as e:\n"
        "    assert 'before TRITON_INTERPRET=1' in str(e), e\n"
        "    print('ok')\n"
    )
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    # Triton versions whose interpreter tolerates the late flag print nothing; both outcomes are acceptable.
    assert proc.stdout.strip() in ("ok", "")


# --------------------------------------------------------------------------------------------------------------
# GPU (skipped on CPU machines): compiled kernels
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available() or not HAS_TRITON or ns.interpreting(),
                    reason="needs a CUDA GPU, triton, and TRITON_INTERPRET unset (compiled kernels)")
@pytest.mark.parametrize("shape", [(256, 512), (4, 128, 96), (384, 256)], ids=lambda s: "x".join(map(str, s)))
def test_compiled_matches_reference_on_gpu(shape):
    G = torch.randn(*shape, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    torch.testing.assert_close(ns.newton_schulz_triton(G), ns.newton_schulz_reference(G), rtol=1e-4, atol=1e-4)
    Gb = G.to(torch.bfloat16)
    # bf16 storage between steps on both sides; differences are bf16 round-off amplified over 5 steps
    torch.testing.assert_close(ns.newton_schulz_triton(Gb).float(),
                               ns.newton_schulz_reference(Gb.float()), rtol=0, atol=5e-2)


# --------------------------------------------------------------------------------------------------------------
# The GPU benchmark's command line (scale.bench.newton_schulz_kernel)
# --------------------------------------------------------------------------------------------------------------


def test_bench_help():
    proc = subprocess.run([sys.executable, "-m", "scale.bench.newton_schulz_kernel", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m scale.bench.newton_schulz_kernel")
    for flag in ("--shapes", "--dtypes", "--steps", "--repeats", "--warmup", "--allow-tf32", "--seed", "--preset"):
        assert flag in proc.stdout, flag


def test_bench_rejects_bad_settings_on_any_machine(tmp_path, capsys):
    """Settings are checked before the GPU: a malformed shape, an unknown dtype or option exits 2 naming it."""
    from scale.bench import newton_schulz_kernel as bench

    assert bench.parse_shape("4096x1024") == (4096, 1024) and bench.parse_shape("8X256x512") == (8, 256, 512)
    for shape, message in (("4096", "at least two positive dimensions"), ("4x0", "at least two positive"),
                           ("4xy", "a shape looks like 1024x1024")):
        assert bench.main(["--shapes", "1024x1024", shape]) == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m scale.bench.newton_schulz_kernel: error: --shapes:") and message in err
    assert bench.main(["--dtypes", "float64"]) == 2
    assert "dtypes: invalid value 'float64'" in capsys.readouterr().err
    assert bench.main(["--repeats", "0"]) == 2
    assert "error: --repeats must be at least 1" in capsys.readouterr().err
    assert bench.main(["--shape", "8x8"]) == 2
    assert "unknown option '--shape' (did you mean '--shapes'" in capsys.readouterr().err
    assert bench.main(["--preset", "smoke", "--print-config"]) == 0
    toml = tmp_path / "c.toml"
    toml.write_text(capsys.readouterr().out)
    assert bench.COMMAND.parse(["--config", str(toml)])[0] == bench.Config(**bench.PRESETS["smoke"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message printed without CUDA")
def test_bench_without_cuda_says_so():
    proc = subprocess.run([sys.executable, "-m", "scale.bench.newton_schulz_kernel", "--repeats", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("python -m scale.bench.newton_schulz_kernel: error: CUDA is not available")


@pytest.mark.skipif(not torch.cuda.is_available() or not HAS_TRITON or ns.interpreting(),
                    reason="needs a CUDA GPU, triton, and TRITON_INTERPRET unset (compiled kernels)")
def test_bench_smoke_preset_on_gpu(capsys):
    from scale.bench import newton_schulz_kernel as bench

    assert bench.main(["--preset", "smoke", "--repeats", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "1024x1024" in out and "float32" in out and "bfloat16" in out
