"""Test-wide settings.

The suite runs under pytest-xdist with one worker per core; one torch thread per worker avoids
oversubscribing the cores (two workers with two OpenMP threads each made small factorizations
orders of magnitude slower on a 2-core machine).
"""

import torch

torch.set_num_threads(1)
