"""Weight quantization with ``scale.quantize`` (asv), one thread.

* ``GPTQLayer.time_gptq_layer``: one GPTQ sweep (4 bits, g = 32, block 128) of a 512 x 128 layer (the shape of
  ``mlp.c_fc`` of the CPU preset's GPT) with the Hessian of 8192 correlated inputs.
* ``PerplexityIncrease.track_ppl_increase``: relative increase of the validation perplexity per character of the
  CPU preset's GPT trained for ``scale.bench.quantize.QUICK_STEPS`` steps, after 4-bit g = 32 quantization by each
  method (calibration: 32 training windows; evaluation: the first 150 validation windows), the preset's 4 layers. Negative = better
  than the float model. The full model's numbers come from ``python -m scale.quantize``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from ._commit import compute_or_skip, requires, skip_if_absent

common = requires("scale.bench.common")
bq = requires("scale.bench.quantize")
quantize = requires("scale.quantize")
quantize_cli = requires("scale.quantize.cli")

THREADS = 1
METHODS = ["rtn", "gptq", "foem", "awq", "smoothquant+", "smoothquant+gptq"]


def _increases() -> dict[str, float]:
    common.pin_threads(THREADS)
    folder = Path(tempfile.mkdtemp(prefix="asv-quantize-"))
    ckpt = bq.trained_checkpoint(folder, bq.QUICK_STEPS, THREADS)
    config = quantize_cli.Config(checkpoint=str(ckpt), methods=tuple(METHODS), bits=(4,), group_sizes=(32,),
                                 calib_windows=32, eval_windows=150, threads=THREADS)
    result = quantize_cli.run_evaluation(config, log=lambda *_: None, progress=False)
    return {r["method"]: r["increase"] for r in result["rows"]}


class GPTQLayer:
    timeout = 120

    def setup(self):
        common.pin_threads(THREADS)
        self.gptq = quantize.gptq
        gen = torch.Generator().manual_seed(0)
        X = torch.randn(8192, 128, generator=gen) @ (torch.eye(128) + 0.2 * torch.randn(128, 128, generator=gen))
        self.H = quantize.hessian_from_inputs(X)
        self.W = 0.05 * torch.randn(512, 128, generator=gen)

    def time_gptq_layer(self):
        self.gptq(self.W, self.H, bits=4, group_size=32)


class PerplexityIncrease:
    params = METHODS
    param_names = ["method"]
    timeout = 900
    unit = "relative increase"

    def setup_cache(self):
        return compute_or_skip(_increases)

    def setup(self, increases, method):
        skip_if_absent(increases, method)

    def track_ppl_increase(self, increases, method):
        return increases[method]

    track_ppl_increase.better = "lower"
