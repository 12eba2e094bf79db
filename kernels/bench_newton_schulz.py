"""GPU timing of Newton–Schulz: the PyTorch reference against the Triton kernels (and ``torch.optim.Muon``'s helper).

Usage (on a machine with CUDA and triton)::

    python -m kernels.bench_newton_schulz
    python -m kernels.bench_newton_schulz --shapes 1024x1024 4096x1024 --dtypes float32 bfloat16 --repeats 50

Times are medians over ``--repeats`` calls measured with ``torch.cuda.Event`` after ``--warmup`` calls (the first
Triton call compiles). The table also gives the speed-up of Triton over the reference and the largest absolute
difference between the two outputs. ``torch.optim.Muon``'s private ``_zeropower_via_newtonschulz`` (bf16, 2-D only,
``norm.clamp(min=eps)`` normalization) is timed too when this torch has it, as the parity anchor of issue 3's target.
Without CUDA the script exits with status 2 and says so: CPU timing of the interpreter is meaningless.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable

import torch

from kernels.newton_schulz import (
    DEFAULT_COEFFICIENTS,
    newton_schulz_reference,
    newton_schulz_triton,
    triton_installed,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must look like 1024x1024 or 8x256x512, got {text!r}") from None
    if len(dims) < 2 or min(dims) <= 0:
        raise argparse.ArgumentTypeError(f"shape needs at least two positive dimensions, got {text!r}")
    return dims


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kernels.bench_newton_schulz",
        description="Time Newton–Schulz orthogonalization on a CUDA GPU: PyTorch reference vs Triton kernels.",
    )
    parser.add_argument("--shapes", nargs="+", type=_parse_shape, default=[(1024, 1024), (4096, 1024)],
                        help="matrix shapes, e.g. 1024x1024 4096x1024 (leading dims batch); default: %(default)s")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["float32", "bfloat16"],
                        help="input dtypes; default: %(default)s")
    parser.add_argument("--steps", type=int, default=5, help="Newton–Schulz iterations (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per case (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per case (default: %(default)s)")
    parser.add_argument("--allow-tf32", action="store_true",
                        help="let the Triton kernels use tf32 dots for fp32 inputs (default: ieee fp32)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def time_cuda(fn: Callable[[], torch.Tensor], repeats: int, warmup: int) -> float:
    """Median milliseconds of ``fn()`` measured with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _torch_muon_helper() -> Callable | None:
    try:
        from torch.optim._muon import _zeropower_via_newtonschulz
    except ImportError:
        return None
    return _zeropower_via_newtonschulz


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_newton_schulz: CUDA is not available (torch.cuda.is_available() is False); this benchmark "
              "times GPU kernels only. Run it on a GPU machine.", file=sys.stderr)
        return 2
    if not triton_installed():
        print("bench_newton_schulz: the 'triton' package is not installed (pip install 'triton>=3.0').",
              file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    muon_ns = _torch_muon_helper()
    device = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(device)}; torch {torch.__version__}; steps {args.steps}; "
          f"median of {args.repeats} (CUDA events)")
    header = f"{'shape':>14} {'dtype':>9} {'reference ms':>13} {'triton ms':>10} {'speed-up':>9} {'max |diff|':>11}"
    if muon_ns is not None:
        header += f" {'torch Muon ms':>14}"
    print(header)
    for shape in args.shapes:
        for name in args.dtypes:
            G = torch.randn(*shape, device=device, dtype=DTYPES[name])
            ref = lambda: newton_schulz_reference(G, args.steps)  # noqa: E731
            tri = lambda: newton_schulz_triton(G, args.steps, allow_tf32=args.allow_tf32)  # noqa: E731
            t_ref = time_cuda(ref, args.repeats, args.warmup)
            t_tri = time_cuda(tri, args.repeats, args.warmup)
            diff = (ref().float() - tri().float()).abs().max().item()
            row = (f"{'x'.join(map(str, shape)):>14} {name:>9} {t_ref:13.3f} {t_tri:10.3f} "
                   f"{t_ref / t_tri:8.2f}x {diff:11.2e}")
            if muon_ns is not None:
                if len(shape) == 2:
                    muon = lambda: muon_ns(G, DEFAULT_COEFFICIENTS, args.steps, 1e-7)  # noqa: E731
                    try:
                        row += f" {time_cuda(muon, args.repeats, args.warmup):14.3f}"
                    except (TypeError, ValueError) as exc:  # private helper; its signature may differ by version
                        row += f" {'n/a':>14}"
                        print(f"torch.optim Muon helper failed: {exc}", file=sys.stderr)
                else:
                    row += f" {'(2-D only)':>14}"
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
