#!/usr/bin/env bash
# One CUDA node: Muon under FSDP2 on nanoGPT's shakespeare-char configuration (6 layers, 6 heads, width 384,
# context 256, batch 64), bf16 forward/backward, and Drop-Muon against Muon in time to nanoGPT's validation loss
# of 1.47 for that configuration. Tokens/s and the loss curves are in each run's metrics.jsonl; the time to the
# target per method is in OUT/quality/quality.json. Nothing here runs without CUDA (the first check says so).
#
#   bash scripts/gpu_training.sh            # every GPU of the node, results under reports/gpu-training
#   NPROC=1 OUT=/tmp/gpu bash scripts/gpu_training.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-reports/gpu-training}
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA device: this script is for a GPU node (the CPU tests cover the same code paths under gloo)')"
NPROC=${NPROC:-$("$PY" -c "import torch; print(torch.cuda.device_count())")}
mkdir -p "$OUT"

# 1. Muon with FSDP2 over NPROC GPUs (nccl), bf16 compute, float32 gradient reduction, sharded checkpoints.
"$PY" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m scale.train --preset shakespeare-char \
    --optim.name muon --run.parallel fsdp --run.dtype bfloat16 --run.param_dtype bfloat16 \
    --run.reduce_dtype float32 --run.keep_best true --run.out_dir "$OUT/muon-fsdp" --run.overwrite true

# 2. Drop-Muon against Muon (one GPU each run, the same seeds): training time, evaluation paused, to 1.47.
"$PY" -m scale.bench.training quality --train-preset shakespeare-char --methods muon drop-muon \
    --target 1.47 --seeds 2 --out "$OUT/quality"
