"""Test-wide settings.

- The suite runs under pytest-xdist with one worker per core; one torch thread per worker avoids
  oversubscribing the cores (two workers with two OpenMP threads each made small factorizations
  orders of magnitude slower on a 2-core machine).
- Without a GPU, Triton kernels run under the CPU interpreter, which must be switched on before
  triton is first imported in the process.
- ``corpus``: the trainer tests' text file.
"""

import os
import pathlib

import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]

torch.set_num_threads(1)
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    """The first 40,000 characters of the shipped tiny-shakespeare as a text file (the trainer tests' corpus)."""
    text = (REPO / "scale" / "corpora" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:40_000]
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)
