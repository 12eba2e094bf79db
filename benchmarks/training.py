"""Training with ``scale.train`` (asv): step time, peak memory, throughput ratio, time to target, scaling law.

All on the ``shakespeare-char-cpu`` preset's model (nanoGPT's CPU recipe: 4 layers, 4 heads, width 128,
context 64, batch 12, tiny-shakespeare characters), single-threaded like the report.

* ``PlainStep.time_plain_step``: one optimizer step of the plain PyTorch loop
  (``scale.bench.training.PlainLoop``: batch, forward, backward, clipping, AdamW), the anchor of the throughput
  ratio.
* ``Memory.peakmem_plain_steps`` / ``Memory.peakmem_train_steps``: peak resident memory of a few steps of the
  plain loop and of a whole short ``scale.train.train`` call (corpus, model, optimizer state, metrics,
  checkpoint).
* ``Throughput.track_throughput_ratio``: tokens/s of ``scale.train`` / tokens/s of the plain loop, both measured
  in the same process, interleaved (``scale.bench.training.measure_throughput``, the quick preset). 1.0 = no
  overhead; the target is >= 1.0 within noise. ``track_tokens_per_s`` gives each side's median rate.
* ``Quality.track_time_to_target_ratio``: training wall-clock (evaluation paused) of Muon and Drop-Muon to the
  validation loss that AdamW reaches in the same short run, divided by AdamW's (the report's quick
  configuration); below 1 = faster than AdamW. ``track_final_val_loss`` is each method's last validation loss.
* ``ScalingLaw.track_wsd_prediction_error``: mean absolute error of the WSD loss curve predicted by the
  LR-annealing scaling law (Tissue, Wang & Wang 2024, arXiv:2408.11029) fitted on a constant and a cosine run
  of the same length (short runs; error against the moving average of the logged loss, after warmup).

The short runs use the commands' ``quick`` presets (the report's quick mode). The full benchmarks are
``python -m scale.bench.training throughput``, ``... quality --seeds 2`` and ``... scaling`` (tens of minutes
on two cores).
"""

from __future__ import annotations

import math
import tempfile

from ._commit import compute_or_skip, requires, skip_if_absent

common = requires("scale.bench.common")
training = requires("scale.bench.training")

THREADS = 1
# The sides and methods by the names their histories are keyed by (scale.bench.training's SIDES and
# DEFAULT_METHODS at HEAD; a test keeps them equal). ANCHOR is the method the time ratios divide by.
SIDES = ["scale.train", "plain"]
METHODS = ["adamw", "muon", "drop-muon-uniform", "drop-muon-shift"]
ANCHOR = "adamw"


def _plain_config(out_dir: str):
    return training.bench_config({"run.out_dir": out_dir, "run.threads": THREADS, "run.eval_interval": 0,
                                  "run.eval_iters": 1})


class PlainStep:
    """One step of the plain loop (the throughput anchor)."""

    timeout = 300
    number = 1
    repeat = (5, 20, 20.0)
    warmup_time = 0.0

    def setup(self):
        common.pin_threads(THREADS)
        plain_loop = training.PlainLoop
        self.tmp = tempfile.TemporaryDirectory()
        self.loop = plain_loop(_plain_config(self.tmp.name))
        for _ in range(3):  # allocator and first-call costs, untimed
            self.loop.step()

    def teardown(self):
        self.tmp.cleanup()

    def time_plain_step(self):
        self.loop.step()


class Memory:
    """Peak memory of a few training steps."""

    timeout = 300
    steps = 5

    def setup(self):
        common.pin_threads(THREADS)
        self.plain_loop = training.PlainLoop
        self.bench_config = training.bench_config
        self.run_train = training._run_train
        self.tmp = tempfile.TemporaryDirectory()

    def teardown(self):
        self.tmp.cleanup()

    def peakmem_plain_steps(self):
        loop = self.plain_loop(_plain_config(self.tmp.name))
        for _ in range(self.steps):
            loop.step()

    def peakmem_train_steps(self):
        config = self.bench_config({"run.out_dir": self.tmp.name, "run.threads": THREADS,
                                    "run.max_iters": self.steps, "schedule.warmup": 1,
                                    "run.eval_interval": 0, "run.eval_iters": 1})
        self.run_train(config)


def _throughput():
    cfg = training.ThroughputConfig(**{**training.THROUGHPUT_PRESETS["quick"], "threads": (THREADS,)})
    return training.measure_throughput(cfg)["by_threads"][str(THREADS)]


def _throughput_cache():
    return compute_or_skip(_throughput)


_throughput_cache.timeout = 600


class Throughput:
    """scale.train tokens/s against the plain loop's, measured in one process."""

    params = (SIDES,)
    param_names = ["side"]
    setup_cache = staticmethod(_throughput_cache)
    timeout = 600

    def setup(self, cache, side):
        skip_if_absent(cache)

    def track_throughput_ratio(self, cache, side):
        return cache["ratio"] if side == "scale.train" else 1.0

    track_throughput_ratio.unit = "scale.train/plain"
    track_throughput_ratio.better = "higher"

    def track_tokens_per_s(self, cache, side):
        return cache["median_tokens_per_s"][side]

    track_tokens_per_s.unit = "tokens/s"
    track_tokens_per_s.better = "higher"


def _quality():
    cfg = training.QualityConfig(**{**training.QUALITY_PRESETS["quick"], "threads": THREADS})
    return training.run_quality(cfg)


def _quality_cache():
    return compute_or_skip(_quality)


_quality_cache.timeout = 600


class Quality:
    """Time to AdamW's validation loss, relative to AdamW (short runs; NaN: target not reached)."""

    params = (METHODS,)
    param_names = ["method"]
    setup_cache = staticmethod(_quality_cache)
    timeout = 600

    def setup(self, cache, method):
        skip_if_absent(cache)
        skip_if_absent(cache["summary"], method)

    def track_time_to_target_ratio(self, cache, method):
        if method == ANCHOR:
            return 1.0
        value = cache["ratios"][method]["time_to_target"]["median"]
        return value if isinstance(value, float) and math.isfinite(value) else math.nan

    track_time_to_target_ratio.unit = "time/time(adamw)"
    track_time_to_target_ratio.better = "lower"

    def track_final_val_loss(self, cache, method):
        return cache["summary"][method]["final_val_loss"]["median"]

    track_final_val_loss.unit = "nats/char"
    track_final_val_loss.better = "lower"


def _scaling():
    cfg = training.ScalingConfig(**{**training.SCALING_PRESETS["quick"], "threads": THREADS})
    return training.run_scaling(cfg)["prediction"]


def _scaling_cache():
    return compute_or_skip(_scaling)


_scaling_cache.timeout = 600


class ScalingLaw:
    """Error of the scaling law's WSD prediction (fitted on constant + cosine runs)."""

    params = (["mean_abs", "max_abs"],)
    param_names = ["error"]
    setup_cache = staticmethod(_scaling_cache)
    timeout = 600

    def setup(self, cache, error):
        skip_if_absent(cache)

    def track_wsd_prediction_error(self, cache, error):
        return cache["smoothed"][error]

    track_wsd_prediction_error.unit = "loss"
    track_wsd_prediction_error.better = "lower"
