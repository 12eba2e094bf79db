"""Curvature operators and the K-FAC optimizer (asv).

* ``GGNVectorProduct.time_ggn_vp_optlib`` / ``time_ggn_vp_curvlinops``: one GGN-vector product of
  ``optlib.curvature.GGN`` or of curvlinops' ``GGNLinearOperator`` on the same MLP, batch and flat vector
  (cross-entropy, float32; shape sets below). curvlinops is optional: without it the curvlinops benchmark is
  skipped (``NotImplementedError``).
* ``Ratios.track_ratio_ggn_vp``: median optlib time / median curvlinops time, measured in one process with
  the two interleaved call by call after a warm-up (``scale.bench.curvature.ggn_vp_times``). Below 1: optlib
  is faster. Absolute times move with the machine's load; this ratio is the number to watch.
* ``Ratios.track_ratio_kfac_step``: median training-step time (forward, loss, backward, optimizer step) of
  ``optlib.optim.KFAC`` / ``torch.optim.SGD`` on the same model and batch, interleaved
  (``scale.bench.curvature.kfac_step_times``): K-FAC's overhead.

Everything runs single-threaded in torch and in the BLAS pools (``scale.bench.common.pin_threads``), as the
report does.
"""

from __future__ import annotations

import torch
from torch import nn

from ._commit import requires

curvature = requires("optlib.curvature")
cb = requires("scale.bench.curvature")
common = requires("scale.bench.common")

THREADS = 1
# name -> (layer widths, batch size)
SHAPES = {
    "mlp-784-256-256-10-b128": ((784, 256, 256, 10), 128),
    "mlp-64-32-10-b32": ((64, 32, 10), 32),
}


def _config(shape: str, **kw):
    widths, batch = SHAPES[shape]
    return cb.Config(widths=widths, batch_size=batch, threads=THREADS, **kw)


class GGNVectorProduct:
    """Wall time of one GGN-vector product."""

    params = (list(SHAPES),)
    param_names = ["shape"]
    timeout = 300
    number = 1
    repeat = (3, 15, 20.0)
    warmup_time = 0.0

    def setup(self, shape):
        common.pin_threads(THREADS)
        model, X, y = cb.build(_config(shape))
        self.ours = curvature.GGN(model, nn.CrossEntropyLoss(), dict(model.named_parameters()), [(X, y)])
        self.v = torch.randn(self.ours.n, dtype=X.dtype)
        self.theirs = None
        try:
            import curvlinops  # optional
        except ImportError:
            return
        self.theirs = curvlinops.GGNLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()), [(X, y)],
                                                   check_deterministic=False)
        self.ours @ self.v  # first-call costs, untimed
        self.theirs @ self.v

    def time_ggn_vp_optlib(self, shape):
        self.ours @ self.v

    def time_ggn_vp_curvlinops(self, shape):
        if self.theirs is None:
            raise NotImplementedError("curvlinops is not installed")
        self.theirs @ self.v


class Ratios:
    """Ratios measured in one process: GGN-vp optlib/curvlinops, training step K-FAC/SGD."""

    params = (list(SHAPES),)
    param_names = ["shape"]
    timeout = 600

    def setup(self, shape):
        common.pin_threads(THREADS)
        self.ggn_vp_times, self.kfac_step_times = cb.ggn_vp_times, cb.kfac_step_times

    def track_ratio_ggn_vp(self, shape):
        ratio = self.ggn_vp_times(_config(shape, repeats=15, warmup=3))["ratio"]
        if ratio is None:
            raise NotImplementedError("curvlinops is not installed")
        return ratio

    track_ratio_ggn_vp.unit = "optlib/curvlinops"
    track_ratio_ggn_vp.better = "lower"

    def track_ratio_kfac_step(self, shape):
        return self.kfac_step_times(_config(shape, kfac_steps=20, warmup=3))["ratio_median"]

    track_ratio_kfac_step.unit = "KFAC/SGD"
    track_ratio_kfac_step.better = "lower"
