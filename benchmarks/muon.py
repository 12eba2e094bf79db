"""Muon and Drop-Muon (asv).

* ``StepTime.time_step``: one optimizer step of ``optlib.optim.Muon`` or of ``torch.optim.Muon`` on the same
  parameters and gradients. Shape sets: ``tiny-gpt`` (the hidden matrices of a 2-layer GPT of width 128:
  per layer four 128x128 attention matrices and the 512x128 / 128x512 MLP pair), ``1024x1024`` (four
  square matrices) and ``4096x1024`` (two tall matrices). Both optimizers use their equivalent settings
  (EMA momentum 0.95 with Nesterov, Keller's quintic Newton–Schulz, 5 steps in bfloat16, the
  ``sqrt(max(1, m/n))`` lr scaling), under which their updates are equal (``tests/test_muon.py``).
* ``Ratio.track_ratio_step_time``: median optlib step time / median torch step time, measured in the same
  process with the two interleaved step by step after a warm-up. Below 1 means optlib's step is faster;
  the issue's target is <= 1.0. Absolute times move with the machine's load; this ratio is the number to
  watch.
* ``DropMuon.track_dropmuon_speedup``: Muon's wall-clock time to the target accuracy divided by
  Drop-Muon's (median over seeds, paired by seed) from a short run of ``scale.bench.drop_muon_digits`` with
  small settings (its ``quick`` preset: the report's configuration), for the uniform and the
  progress-shifted cutoff (``drop-muon-uniform``, ``drop-muon-shift``). Above 1 means Drop-Muon reached the
  target sooner. The full benchmarks are ``python -m scale.bench.muon_step`` and
  ``python -m scale.bench.drop_muon_digits``.

Everything runs single-threaded (torch and the BLAS pools, ``scale.bench.common.pin_threads``), as the report
does.
"""

from __future__ import annotations

import math

from ._commit import compute_or_skip, requires, skip_if_absent

common = requires("scale.bench.common")
drop_muon_digits = requires("scale.bench.drop_muon_digits")
muon_step = requires("scale.bench.muon_step")

THREADS = 1
# The shape sets and implementations by the names their histories are keyed by (scale.bench.muon_step's
# STEP_SHAPES and STEP_IMPLS at HEAD; a test keeps them equal).
SHAPES = ["tiny-gpt", "1024x1024", "4096x1024"]
IMPLS = ["optlib", "torch"]


def _shape_set(name: str):
    """The matrices of a shape set, as the commit under test defines them (absent there: skipped)."""
    skip_if_absent(muon_step.STEP_SHAPES, name)
    return muon_step.STEP_SHAPES[name]
# asv's parameter "sampling" keeps the values its history is keyed by; each names one of the benchmark's methods.
SAMPLING = {"drop-uniform": "drop-muon-uniform", "drop-shift": "drop-muon-shift"}


class StepTime:
    """Wall time of one Muon step on a shape set."""

    params = (SHAPES, IMPLS)
    param_names = ["shape", "method"]  # the shape set; optlib or torch
    timeout = 300
    number = 1
    repeat = (2, 10, 20.0)
    warmup_time = 0.0

    def setup(self, shapes, impl):
        common.pin_threads(THREADS)
        self.opt = muon_step.muon_optimizer(impl, muon_step.step_params(_shape_set(shapes)))
        self.opt.step()  # state allocation and first-call costs, untimed

    def time_step(self, shapes, impl):
        self.opt.step()


class Ratio:
    """optlib.optim.Muon step time / torch.optim.Muon step time, measured in one process."""

    params = (SHAPES,)
    param_names = ["shape"]
    timeout = 600

    def setup(self, shapes):
        self.matrices = _shape_set(shapes)
        self.measure = muon_step.muon_step_times

    def track_ratio_step_time(self, shapes):
        steps, warmup = (3, 1) if shapes == "4096x1024" else (7, 2)
        return self.measure(self.matrices, steps=steps, warmup=warmup, threads=THREADS)["ratio"]

    track_ratio_step_time.unit = "optlib/torch"
    track_ratio_step_time.better = "lower"


def _dropmuon_small():
    """One short ``scale.bench.drop_muon_digits`` run; the median per-seed ratios Muon time / Drop-Muon time,
    keyed by method name."""
    common.pin_threads(THREADS)
    # One short Drop-Muon run (about a minute): the report's configuration.
    cfg = drop_muon_digits.Config(**drop_muon_digits.PRESETS["quick"], threads=THREADS, out=None, plot=False, progress=False)
    result = drop_muon_digits.run_benchmark(cfg)
    return {name.split("/", 1)[1]: r["time_to_target"]["median"] for name, r in result["ratios"].items()}


def _dropmuon_cache():
    return compute_or_skip(_dropmuon_small)


_dropmuon_cache.timeout = 600


class DropMuon:
    """Muon time to target / Drop-Muon time to target on the small CNN benchmark (NaN: not reached)."""

    params = (["drop-uniform", "drop-shift"],)
    param_names = ["sampling"]
    setup_cache = staticmethod(_dropmuon_cache)
    timeout = 600

    def setup(self, cache, sampling):
        skip_if_absent(cache)

    def track_dropmuon_speedup(self, cache, sampling):
        value = cache.get(SAMPLING[sampling], math.nan)
        return value if isinstance(value, float) and math.isfinite(value) else math.nan

    track_dropmuon_speedup.unit = "Muon/Drop-Muon"
    track_dropmuon_speedup.better = "higher"
