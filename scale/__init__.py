"""optlib's algorithms on real workloads: a GPT training application and a benchmark wing.

The training application sits at the top level of this package, one module per concern: ``config`` (the
settings of a run as dataclasses, presets and TOML), ``model`` (a nanoGPT-style decoder), ``data`` (offline
corpora, tokenization, rank-sliced batches), ``schedules`` (cosine, WSD, WSD-S), ``checkpoint`` (atomic saves,
exact resume), ``metrics`` (JSONL and the loss plot), ``scaling_law`` (the LR-annealing scaling law) and
``train`` (the loop, single process or torchrun). ``cli`` generates every command line below from dataclass
metadata. The benchmark wing, :mod:`scale.bench`, holds one module per family's benchmark and the shared
plumbing; ``report`` is the top layer that runs every registered benchmark section.

Entry points (console script, and the same command as ``python -m``):

| console script | module | what it does |
|---|---|---|
| ``optlib-train`` | ``python -m scale.train`` | train a GPT with AdamW, Muon, Drop-Muon or SGD (torchrun for DDP/FSDP2) |
| ``optlib-sample`` | ``python -m scale.sample`` | generate text from a checkpoint (temperature, top-k, seed) |
| ``optlib-report`` | ``python -m scale.report`` | the theory-to-scale report (``make demo``) |
| ``optlib-scaling-law`` | ``python -m scale.scaling_law`` | fit the LR-annealing scaling law on metrics files |
| ``optlib-bench-training`` | ``python -m scale.bench.training`` | throughput, time to a validation loss, scaling-law prediction |
| ``optlib-bench-muon-step`` | ``python -m scale.bench.muon_step`` | Muon's step time against ``torch.optim.Muon`` |
| ``optlib-bench-drop-muon`` | ``python -m scale.bench.drop_muon_digits`` | Drop-Muon's time to a target accuracy on a CNN |
| ``optlib-bench-curvature`` | ``python -m scale.bench.curvature`` | GGN-vector products against curvlinops; K-FAC overhead |
| ``optlib-bench-least-squares`` | ``python -m scale.bench.least_squares`` | Levenberg–Marquardt and Gauss–Newton on NIST StRD |
| ``optlib-bench-user-path`` | ``python -m scale.bench.user_path`` | plain torch functions, default options: optlib against pytorch-minimize and scipy |
| ``optlib-bench-unlearning`` | ``python -m scale.bench.unlearning`` | K-FADE against gradient ascent, Newton and retraining |
| ``optlib-bench-bilevel`` | ``python -m scale.bench.bilevel`` | BO-REP against the bilevel baselines at equal oracle budgets |
| ``optlib-bench-drift`` | ``python -m scale.bench.drift`` | discretisation drift: flows against GD, edge of stability, IGR bias, GANs, DAL |
| ``optlib-quantize`` | ``python -m scale.quantize`` | 4-bit weights of a trained GPT (RTN, GPTQ, FOEM, AWQ, SmoothQuant+): perplexity and size |
| ``optlib-bench-newton-schulz`` | ``python -m scale.bench.newton_schulz_kernel`` | the Triton Newton–Schulz kernel (GPU) |
| ``optlib-bench-w4a16`` | ``python -m scale.bench.w4a16_kernel`` | the Triton W4A16 dequantize-matmul against fp16 and torchao int4 (GPU) |
| ``optlib-bench-mutants`` | ``python -m scale.bench.mutants`` | the mutation catalogue against the theorem suite (``make mutants``) |
| ``optlib-theorems`` | ``python -m optlib.theory`` | the theorem table of :mod:`optlib.theory` (``--full``: every problem) |

Every command takes ``--help``, ``--config FILE.toml`` and ``--print-config``.
"""
