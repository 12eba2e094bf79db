"""GPU timing of Newton–Schulz: the PyTorch reference against the Triton kernels (and ``torch.optim.Muon``'s helper).

Usage (on a machine with CUDA and triton)::

    python -m scale.bench.newton_schulz_kernel
    python -m scale.bench.newton_schulz_kernel --shapes 1024x1024 4096x1024 --dtypes float32 bfloat16 --repeats 50
    python -m scale.bench.newton_schulz_kernel --preset smoke

The orthogonalization is Muon's quintic Newton–Schulz iteration (Jordan et al. 2024, "Muon: an optimizer for hidden
layers"); the Triton kernels are in :mod:`kernels.newton_schulz`. Times are medians over ``--repeats`` calls measured
with ``torch.cuda.Event`` after ``--warmup`` calls (the first Triton call compiles). The table also gives the speed-up
of Triton over the reference and the largest absolute difference between the two outputs. ``torch.optim.Muon``'s
private ``_zeropower_via_newtonschulz`` (bf16, 2-D only, ``norm.clamp(min=eps)`` normalization) is timed too when
this torch has it, as the parity anchor of issue 3's target.

Exit status: 0 after printing the table; 2 with one ``error:`` line on stderr for a bad setting (a malformed
``--shapes`` entry, say), when CUDA is not available (CPU timing of the Triton interpreter is meaningless), or when
triton is not installed. The settings are checked before the GPU, so a bad command line is reported on any machine.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from kernels.newton_schulz import (
    DEFAULT_COEFFICIENTS,
    newton_schulz_reference,
    newton_schulz_triton,
    triton_installed,
)
from scale.bench.common import time_cuda
from scale.cli import Command, option

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_shape(text: str) -> tuple[int, ...]:
    """``"4096x1024"`` -> ``(4096, 1024)``; leading dimensions are a batch (``"8x256x512"``)."""
    try:
        dims = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--shapes: a shape looks like 1024x1024 or 8x256x512, got {text!r}") from None
    if len(dims) < 2 or min(dims) <= 0:
        raise ValueError(f"--shapes: a shape needs at least two positive dimensions, got {text!r}")
    return dims


@dataclass
class Config:
    """Which matrices and dtypes to time, and how long."""

    shapes: tuple[str, ...] = option(("1024x1024", "4096x1024"),
                                     "matrix shapes as ROWSxCOLS, e.g. 1024x1024 4096x1024 (more dimensions: the "
                                     "leading ones are a batch, 8x256x512)")
    dtypes: tuple[str, ...] = option(("float32", "bfloat16"), "input dtypes", choices=tuple(DTYPES))
    steps: int = option(5, "Newton–Schulz iterations")
    repeats: int = option(20, "timed calls per case (the median is reported)")
    warmup: int = option(3, "untimed calls per case before the timed ones (the first Triton call compiles)")
    allow_tf32: bool = option(False, "let the Triton kernels use tf32 dots for fp32 inputs (false: ieee fp32)")
    seed: int = option(0, "seed of the random input matrices")

    def matrix_shapes(self) -> list[tuple[int, ...]]:
        """``--shapes`` as tuples of dimensions (a ``ValueError`` naming the option for a malformed one)."""
        if not self.shapes:
            raise ValueError("--shapes needs at least one shape, e.g. 1024x1024")
        return [parse_shape(s) for s in self.shapes]

    def validate(self) -> None:
        """A ``ValueError`` naming the option for a setting the benchmark cannot run with."""
        self.matrix_shapes()
        unknown = [d for d in self.dtypes if d not in DTYPES]
        if unknown or not self.dtypes:
            raise ValueError(f"--dtypes needs one or more of {', '.join(DTYPES)}, got {', '.join(unknown)}")
        if self.steps < 0:
            raise ValueError(f"--steps must be >= 0, got {self.steps}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"--repeats must be at least 1 and --warmup >= 0, got {self.repeats} and {self.warmup}")


PRESETS = {
    # A few seconds on a GPU: one square matrix, both dtypes, few calls (compilation dominates).
    "smoke": {"shapes": ("1024x1024",), "repeats": 5, "warmup": 2},
}


def _torch_muon_helper() -> Callable | None:
    try:
        from torch.optim._muon import _zeropower_via_newtonschulz
    except ImportError:
        return None
    return _zeropower_via_newtonschulz


def _run(cfg: Config) -> int:
    cfg.validate()  # before the GPU checks: a bad command line is reported on any machine
    if not torch.cuda.is_available():
        raise ValueError("CUDA is not available (torch.cuda.is_available() is False); this benchmark times GPU "
                         "kernels only. Run it on a GPU machine.")
    if not triton_installed():
        raise ValueError("the 'triton' package is not installed (pip install 'triton>=3.0').")
    torch.manual_seed(cfg.seed)
    muon_ns = _torch_muon_helper()
    device = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(device)}; torch {torch.__version__}; steps {cfg.steps}; "
          f"median of {cfg.repeats} (CUDA events)")
    header = f"{'shape':>14} {'dtype':>9} {'reference ms':>13} {'triton ms':>10} {'speed-up':>9} {'max |diff|':>11}"
    if muon_ns is not None:
        header += f" {'torch Muon ms':>14}"
    print(header)
    for shape in cfg.matrix_shapes():
        for name in cfg.dtypes:
            G = torch.randn(*shape, device=device, dtype=DTYPES[name])
            ref = lambda: newton_schulz_reference(G, cfg.steps)  # noqa: E731
            tri = lambda: newton_schulz_triton(G, cfg.steps, allow_tf32=cfg.allow_tf32)  # noqa: E731
            t_ref = time_cuda(ref, cfg.repeats, cfg.warmup)
            t_tri = time_cuda(tri, cfg.repeats, cfg.warmup)
            diff = (ref().float() - tri().float()).abs().max().item()
            row = (f"{'x'.join(map(str, shape)):>14} {name:>9} {t_ref:13.3f} {t_tri:10.3f} "
                   f"{t_ref / t_tri:8.2f}x {diff:11.2e}")
            if muon_ns is not None:
                if len(shape) == 2:
                    muon = lambda: muon_ns(G, DEFAULT_COEFFICIENTS, cfg.steps, 1e-7)  # noqa: E731
                    try:
                        row += f" {time_cuda(muon, cfg.repeats, cfg.warmup):14.3f}"
                    except (TypeError, ValueError) as exc:  # private helper; its signature may differ by version
                        row += f" {'n/a':>14}"
                        print(f"torch.optim Muon helper failed: {exc}", file=sys.stderr)
                else:
                    row += f" {'(2-D only)':>14}"
            print(row)
    return 0


COMMAND = Command(
    prog="python -m scale.bench.newton_schulz_kernel",
    description=(
        "Time Newton–Schulz orthogonalization (Muon's quintic iteration, Jordan et al. 2024) on a CUDA GPU: the "
        "PyTorch reference against the Triton kernels of kernels.newton_schulz, and torch.optim.Muon's helper "
        "when this torch has it. Prints, per shape and dtype, median milliseconds over --repeats calls (CUDA "
        "events, after --warmup calls), the speed-up of Triton and the largest difference between the outputs. "
        "Exit status 2 with an error line when CUDA or triton is missing or a setting is bad. Presets: smoke "
        "(one 1024x1024 matrix, few calls)."),
    config=Config, run=_run, presets=PRESETS,
)
main = COMMAND.main


if __name__ == "__main__":
    raise SystemExit(main())
