"""Test-wide settings.

- The suite runs under pytest-xdist with one worker per core; one torch thread per worker avoids
  oversubscribing the cores (two workers with two OpenMP threads each made small factorizations
  orders of magnitude slower on a 2-core machine).
- Without a GPU, Triton kernels run under the CPU interpreter, which must be switched on before
  triton is first imported in the process.
"""

import os

import torch

torch.set_num_threads(1)
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
