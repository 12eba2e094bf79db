"""Triton kernels, each beside the pure-PyTorch reference it is tested against.

Triton is optional: importing :mod:`optlib` or :mod:`kernels` never requires it. Each module defines its Triton
kernels on first use, so ``TRITON_INTERPRET=1`` (the CPU interpreter used by the tests) only has to be set before
``triton`` is first imported.

Modules:

* :mod:`kernels.newton_schulz`: Newton–Schulz orthogonalization for Muon (symmetric ``X Xᵀ`` kernel, fused
  ``bA + cA²`` and ``aX + BX``), :func:`~kernels.newton_schulz.newton_schulz_reference`, and the dispatcher
  :func:`~kernels.newton_schulz.newton_schulz` (compiled on CUDA, interpreter, or reference).
  GPU timing: ``python -m scale.bench.newton_schulz_kernel`` (the benchmark wing of :mod:`scale`).
* :mod:`kernels.w4a16`: W4A16 dequantize-matmul ``Y = X · (S ⊙ (Q − Z))ᵀ`` from int4 codes packed two per byte
  (optional act-order ``g_idx``), :func:`~kernels.w4a16.w4a16_matmul_reference`, the packers
  :func:`~kernels.w4a16.pack_int4` / :func:`~kernels.w4a16.unpack_int4`, and the dispatcher
  :func:`~kernels.w4a16.w4a16_matmul`. GPU timing: ``python -m scale.bench.w4a16_kernel``.
"""

from kernels.newton_schulz import available

__all__ = ["available"]
