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

from scale.bench.common import pin_threads
from scale.bench.quantize import QUICK_STEPS, trained_checkpoint
from scale.quantize import gptq, hessian_from_inputs
from scale.quantize.cli import Config, run_evaluation

THREADS = 1


class GPTQLayer:
    timeout = 120

    def setup(self):
        pin_threads(THREADS)
        gen = torch.Generator().manual_seed(0)
        X = torch.randn(8192, 128, generator=gen) @ (torch.eye(128) + 0.2 * torch.randn(128, 128, generator=gen))
        self.H = hessian_from_inputs(X)
        self.W = 0.05 * torch.randn(512, 128, generator=gen)

    def time_gptq_layer(self):
        gptq(self.W, self.H, bits=4, group_size=32)


class PerplexityIncrease:
    params = ["rtn", "gptq", "foem", "awq", "smoothquant+", "smoothquant+gptq"]
    param_names = ["method"]
    timeout = 900
    unit = "relative increase"

    def setup_cache(self):
        pin_threads(THREADS)
        folder = Path(tempfile.mkdtemp(prefix="asv-quantize-"))
        ckpt = trained_checkpoint(folder, QUICK_STEPS, THREADS)
        result = run_evaluation(Config(checkpoint=str(ckpt), methods=tuple(self.params), bits=(4,),
                                       group_sizes=(32,), calib_windows=32, eval_windows=150, threads=THREADS),
                                log=lambda *_: None, progress=False)
        return {r["method"]: r["increase"] for r in result["rows"]}

    def track_ppl_increase(self, increases, method):
        return increases[method]
