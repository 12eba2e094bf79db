"""GPU timing of the W4A16 dequantize-matmul: the Triton kernel against the fp16 matmul and torchao's int4 path.

Usage (on a machine with CUDA and triton)::

    python -m scale.bench.w4a16_kernel
    python -m scale.bench.w4a16_kernel --shapes 4096x4096 --batches 1 16 --act-order
    python -m scale.bench.w4a16_kernel --preset smoke

A shape ``KxN`` is an ``nn.Linear(K, N)`` (in × out features): the defaults are 4096×4096 (attention projections of
a 7B Llama-style model) and 4096×11008 (its MLP up-projection). Per shape and batch size ``M``, with random int4
codes and fp16 per-group scales (``--group-size``, zeros in code units), the table gives median milliseconds over
``--repeats`` calls (``torch.cuda.Event``, after ``--warmup`` calls; the first Triton call compiles) of

* ``fp16``: ``torch.nn.functional.linear`` with the dequantized fp16 weight (the dense baseline);
* ``w4a16``: :func:`kernels.w4a16.w4a16_matmul_triton` from the packed form (with ``g_idx`` under
  ``--act-order``, a random permutation of the groups' columns);
* ``torchao``: ``torchao.quantization.quantize_(linear, Int4WeightOnlyConfig(group_size=...))`` on a bf16 copy of
  the same dequantized weight, when torchao is installed and supports this GPU (otherwise ``n/a`` and the reason on
  stderr);

then the speed-ups ``fp16 / w4a16`` and ``torchao / w4a16`` and the largest difference between the kernel and
:func:`kernels.w4a16.w4a16_matmul_reference`, relative to the largest output. Targets to compare with (not asserted):
batch 1 on 4096×4096 at least 2.5× faster than fp16 and within 1.2× of torchao.

Exit status: 0 after printing the table; 2 with one ``error:`` line on stderr for a bad setting, when CUDA is not
available (timing the CPU interpreter is meaningless) or when triton is not installed. Settings are checked before
the GPU, so a bad command line is reported on any machine.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

import torch

from kernels.w4a16 import (
    W4A16Config,
    default_config,
    dequantize_packed,
    pack_int4,
    triton_installed,
    w4a16_matmul_reference,
    w4a16_matmul_triton,
)
from scale.bench.common import time_cuda
from scale.cli import Command, option


def parse_shape(text: str) -> tuple[int, int]:
    """``"4096x11008"`` -> ``(4096, 11008)`` (in features × out features)."""
    try:
        dims = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--shapes: a shape looks like 4096x11008 (in x out features), got {text!r}") from None
    if len(dims) != 2 or min(dims) <= 0:
        raise ValueError(f"--shapes: a shape is two positive dimensions IN x OUT, got {text!r}")
    return dims  # type: ignore[return-value]


@dataclass
class Config:
    """Which layers, batch sizes and group size to time, and how long."""

    shapes: tuple[str, ...] = option(("4096x4096", "4096x11008"), "linear layers as INxOUT features")
    batches: tuple[int, ...] = option((1, 2, 4, 8, 16), "batch sizes M (rows of the activation)")
    group_size: int = option(128, "input columns per scale/zero group (must divide every IN)")
    act_order: bool = option(False, "time the g_idx (act-order) path of the kernel as well")
    repeats: int = option(50, "timed calls per case (the median is reported)")
    warmup: int = option(5, "untimed calls per case before the timed ones (the first Triton call compiles)")
    torchao: bool = option(True, "also time torchao's int4 weight-only path when torchao is installed")
    split_k: int = option(0, "programs sharing one output tile along K (0: the kernel's default heuristic)")
    block_n: int = option(0, "output columns per program, a power of two >= 16 (0: the kernel's default)")
    block_k: int = option(0, "K rows per loop step, a power of two >= 16 (0: the kernel's default)")
    seed: int = option(0, "seed of the random codes, scales and activations")

    def layer_shapes(self) -> list[tuple[int, int]]:
        if not self.shapes:
            raise ValueError("--shapes needs at least one shape, e.g. 4096x4096")
        return [parse_shape(s) for s in self.shapes]

    def validate(self) -> None:
        """A ``ValueError`` naming the option for a setting the benchmark cannot run with."""
        shapes = self.layer_shapes()
        if not self.batches or min(self.batches) < 1:
            raise ValueError(f"--batches must be positive integers, got {list(self.batches)}")
        if self.group_size < 16 or self.group_size % 16:
            raise ValueError(f"--group-size must be a positive multiple of 16, got {self.group_size}")
        bad = [f"{k}x{n}" for k, n in shapes if k % self.group_size]
        if bad:
            raise ValueError(f"--group-size {self.group_size} does not divide the input dimension of {bad}")
        for name in ("block_n", "block_k"):
            v = getattr(self, name)
            if v and (v < 16 or v & (v - 1)):
                raise ValueError(f"--{name.replace('_', '-')} must be 0 (default) or a power of two >= 16, got {v}")
        if self.split_k < 0:
            raise ValueError(f"--split-k must be >= 0 (0: default), got {self.split_k}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"--repeats must be at least 1 and --warmup >= 0, got {self.repeats} and {self.warmup}")


PRESETS = {
    # Seconds on a GPU: one layer, batches 1 and 16, few calls.
    "smoke": {"shapes": ("4096x4096",), "batches": (1, 16), "repeats": 5, "warmup": 2},
}


def _torchao_linear(weight: torch.Tensor, group_size: int) -> tuple[torch.nn.Module | None, str]:
    """An ``nn.Linear`` holding ``weight`` (bf16) converted by torchao's int4 weight-only config, or the reason
    why not."""
    try:
        from torchao.quantization import Int4WeightOnlyConfig, quantize_
    except ImportError as exc:
        return None, f"torchao is not installed ({exc}); pip install torchao to compare"
    n, k = weight.shape
    linear = torch.nn.Linear(k, n, bias=False, device=weight.device, dtype=torch.bfloat16)
    with torch.no_grad():
        linear.weight.copy_(weight.to(torch.bfloat16))
    try:
        quantize_(linear, Int4WeightOnlyConfig(group_size=group_size))
    except Exception as exc:  # version- and GPU-dependent (packing formats, the mslk package)
        return None, f"torchao int4 conversion failed: {type(exc).__name__}: {exc}"
    return linear, ""


def kernel_config(cfg: Config, m: int, n: int, k: int) -> W4A16Config:
    """The kernel's default configuration for this shape with the options that were set replacing its fields."""
    base = default_config(m, n, k, interpret=False)
    changes = {name: getattr(cfg, name) for name in ("split_k", "block_n", "block_k") if getattr(cfg, name)}
    return dataclasses.replace(base, **changes)


def _run(cfg: Config) -> int:
    cfg.validate()
    if not torch.cuda.is_available():
        raise ValueError("CUDA is not available (torch.cuda.is_available() is False); this benchmark times GPU "
                         "kernels only. Run it on a GPU machine.")
    if not triton_installed():
        raise ValueError("the 'triton' package is not installed (pip install 'triton>=3.0').")
    device = torch.device("cuda")
    gen = torch.Generator(device).manual_seed(cfg.seed)
    print(f"device: {torch.cuda.get_device_name(device)}; torch {torch.__version__}; group size {cfg.group_size}; "
          f"median of {cfg.repeats} (CUDA events)")
    print(f"{'layer':>11} {'M':>3} {'path':>9} {'fp16 ms':>8} {'w4a16 ms':>9} {'torchao ms':>11} "
          f"{'vs fp16':>8} {'vs torchao':>11} {'rel diff':>9}")
    for k, n in cfg.layer_shapes():
        groups = k // cfg.group_size
        codes = torch.randint(0, 16, (k, n), device=device, generator=gen)
        qweight = pack_int4(codes)
        scales = (torch.rand(groups, n, device=device, generator=gen) * 0.02 + 0.001).half()
        zeros = torch.randint(0, 16, (groups, n), device=device, generator=gen).half()
        paths = [("groups", None)]
        if cfg.act_order:
            perm = torch.randperm(k, device=device, generator=gen)
            paths.append(("g_idx", (perm // cfg.group_size).to(torch.int32)))
        dense = dequantize_packed(qweight, scales, zeros, k, cfg.group_size).T.contiguous()  # [out, in] fp32
        ao_linear, why = _torchao_linear(dense, cfg.group_size) if cfg.torchao else (None, "disabled by --no-torchao")
        if ao_linear is None:
            print(f"torchao: {why}", file=sys.stderr)
        for path, g_idx in paths:
            w16 = dequantize_packed(qweight, scales, zeros, k, cfg.group_size, g_idx).T.contiguous().half()
            for m in cfg.batches:
                x = torch.randn(m, k, device=device, dtype=torch.float16, generator=gen)
                t_fp16 = time_cuda(lambda: torch.nn.functional.linear(x, w16), cfg.repeats, cfg.warmup)  # noqa: B023
                kcfg = kernel_config(cfg, m, n, k)
                kernel = lambda: w4a16_matmul_triton(x, qweight, scales, zeros, cfg.group_size, g_idx,  # noqa: E731
                                                     config=kcfg)  # noqa: B023
                t_w4 = time_cuda(kernel, cfg.repeats, cfg.warmup)
                ref = w4a16_matmul_reference(x, qweight, scales, zeros, cfg.group_size, g_idx).float()
                rel = ((kernel().float() - ref).abs().max() / ref.abs().max().clamp(min=1e-30)).item()
                if ao_linear is not None and g_idx is None:
                    xb = x.to(torch.bfloat16)
                    t_ao = time_cuda(lambda: ao_linear(xb), cfg.repeats, cfg.warmup)  # noqa: B023
                    ao, vs_ao = f"{t_ao:11.4f}", f"{t_ao / t_w4:10.2f}x"
                else:
                    ao, vs_ao = f"{'n/a':>11}", f"{'n/a':>11}"
                print(f"{f'{k}x{n}':>11} {m:>3} {path:>9} {t_fp16:8.4f} {t_w4:9.4f} {ao} "
                      f"{t_fp16 / t_w4:7.2f}x {vs_ao} {rel:9.1e}  (tiles {kcfg.block_m}x{kcfg.block_n}x"
                      f"{kcfg.block_k}, split-k {kcfg.split_k})")
    return 0


COMMAND = Command(
    prog="python -m scale.bench.w4a16_kernel",
    description=(
        "Time the W4A16 dequantize-matmul of kernels.w4a16 (int4 codes two per byte, per-group fp16 scales and "
        "zeros, optional act-order g_idx) on a CUDA GPU against the fp16 matmul and against torchao's int4 "
        "weight-only path (when installed), for batch sizes 1..16 on 4096x4096 and 4096x11008 layers. Prints "
        "median milliseconds (CUDA events), speed-ups and the kernel's largest relative difference from the "
        "PyTorch reference. Exit status 2 with an error line when CUDA or triton is missing or a setting is bad. "
        "Presets: smoke (one layer, batches 1 and 16, few calls)."),
    config=Config, run=_run, presets=PRESETS,
)
main = COMMAND.main


if __name__ == "__main__":
    raise SystemExit(main())
