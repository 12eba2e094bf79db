"""Settings of ``python -m scale.train``: one dataclass tree and its presets.

A run is described by :class:`TrainConfig`, whose five sections are dataclasses:

- ``model``: :class:`scale.model.GPTConfig` (architecture and the loss/normalization ablation flags; its help
  texts are :attr:`TrainConfig.__field_help__`, since ``scale.model`` knows nothing of the command line),
- ``data``: :class:`DataConfig` (corpus, split, batch),
- ``optim``: :class:`OptimConfig` (optimizer family and its hyper-parameters),
- ``schedule``: :class:`ScheduleConfig` (learning-rate multiplier over steps),
- ``run``: :class:`RunConfig` (length, devices, logging, checkpoints).

Every field carries its help text (and its choices, for a closed set of values) via :func:`scale.cli.option`;
the command line (``--run.max_iters 500``), ``--help``, TOML files (``[run]`` tables), presets and
``--print-config`` are generated from these dataclasses by :mod:`scale.cli` (the command itself is
:data:`scale.train.COMMAND`). Resolution order (later wins): dataclass defaults, ``--preset NAME`` (or
``preset = "NAME"`` at the top of the TOML file), ``--config FILE.toml``, then ``--section.key VALUE``.

Names of methods use hyphens: ``optim.name`` is one of :data:`OPTIMIZERS` (``drop-muon``), the Drop-Muon
cutoff samplers are ``uniform``, ``epoch-shift``, ``linear-shift`` and the cyclic schedule is ``wsd-s``. The
earlier underscore spellings (``dropmuon``, ``epoch_shift``, ``wsd_s``) are refused on the command line and in
TOML files with a "did you mean" naming the new one; in the configuration stored inside a checkpoint they are
translated (:func:`upgrade_config_dict`), so a run checkpointed before the rename still resumes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import cli
from .cli import option
from .model import GPTConfig
from .schedules import SCHEDULES

# scale.train's schedules: the step-indexed multipliers of scale.schedules, and "dal" (the drift-adjusted
# learning rate, optlib.optim.DriftAdjustedLR), which depends on the gradient and is set by the trainer each step
TRAIN_SCHEDULES = (*SCHEDULES, "dal")

__all__ = [
    "CUTOFF_SAMPLERS",
    "DataConfig",
    "LEGACY_VALUES",
    "OPTIMIZERS",
    "OptimConfig",
    "PARALLEL",
    "PRESETS",
    "RESUME_FREE_FIELDS",
    "RunConfig",
    "SCHEDULES",
    "ScheduleConfig",
    "TRAIN_SCHEDULES",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "config_to_toml",
    "diff_configs",
    "resolve",
    "upgrade_config_dict",
]

OPTIMIZERS = ("adamw", "muon", "drop-muon", "sgd")
CUTOFF_SAMPLERS = ("uniform", "epoch-shift", "linear-shift")
PARALLEL = ("ddp", "fsdp")

# Spellings used before method names took hyphens: translated in configurations read from checkpoints only.
LEGACY_VALUES: dict[str, dict[str, str]] = {
    "optim.name": {"dropmuon": "drop-muon"},
    "optim.cutoff_sampler": {"epoch_shift": "epoch-shift", "linear_shift": "linear-shift"},
    "schedule.name": {"wsd_s": "wsd-s"},
}


@dataclass
class DataConfig:
    """Corpus, split and batch (``scale.data``)."""

    corpus: str = option("shakespeare", "corpus: 'shakespeare' (the shipped tiny-shakespeare text), 'stdlib' (the "
                                        "*.py files of Python's standard library) or the path of a UTF-8 text file")
    level: str = option("char", "tokenization: one token per character ('char', vocabulary built from the corpus) "
                                "or per UTF-8 byte ('byte', 256 ids)", choices=("char", "byte"))
    val_fraction: float = option(0.1, "fraction of the corpus, taken from its end, held out for validation")
    max_files: int | None = option(None, "stdlib corpus: number of files read (sorted by name); none = the "
                                         "loader's default")
    cache_dir: str | None = option(None, "folder for uint16 token files opened with np.memmap (corpora larger "
                                         "than memory); none = encode in memory")
    batch_size: int = option(12, "global batch: context windows per optimizer step, summed over all ranks (each "
                                 "of N ranks gets a contiguous 1/N of the rows of the same global batch)")


@dataclass
class OptimConfig:
    """Optimizer family and hyper-parameters."""

    name: str = option("adamw", "optimizer: 'adamw' (torch.optim.AdamW, weight decay on 2-D parameters only), "
                                "'muon' (optlib MuonWithAdamW: Muon on hidden matrices, AdamW on embeddings, head, "
                                "norms and biases), 'drop-muon' (optlib DropMuon on the blocks' matrices with a "
                                "random cutoff per step and a truncated backward pass, AdamW on the rest), 'sgd' "
                                "(torch.optim.SGD: plain gradient descent at optim.lr, L2 weight decay on 2-D "
                                "parameters; the optimizer DAL's stability argument is about)",
                       choices=OPTIMIZERS)
    lr: float = option(1e-3, "AdamW (or SGD) peak learning rate (for muon/drop-muon: of the parameters routed to "
                             "AdamW)")
    weight_decay: float = option(0.1, "AdamW decoupled weight decay, applied to 2-D parameters only (embeddings, "
                                      "matrices); biases and norm gains get none")
    beta1: float = option(0.9, "AdamW beta1")
    beta2: float = option(0.99, "AdamW beta2")
    eps: float = option(1e-8, "AdamW epsilon")
    grad_clip: float = option(1.0, "clip the global gradient norm to this value before the step (0 = no "
                                   "clipping; the norm is logged either way)")
    muon_lr: float = option(0.02, "muon/drop-muon: learning rate of the hidden matrices (spectral step, times "
                                  "the shape factor of muon_adjust_lr)")
    muon_momentum: float = option(0.95, "muon/drop-muon: momentum beta")
    muon_nesterov: bool = option(True, "muon/drop-muon: Nesterov momentum")
    muon_weight_decay: float = option(0.0, "muon/drop-muon: decoupled weight decay of the hidden matrices")
    muon_adjust_lr: str = option("keller", "muon/drop-muon: shape scaling of the step, 'keller' "
                                           "sqrt(max(1, m/n)), 'moonshot' 0.2 sqrt(max(m, n)), 'none' 1",
                                 choices=("keller", "moonshot", "none"))
    ns_steps: int = option(5, "muon/drop-muon: Newton-Schulz iterations")
    ns_dtype: str = option("bfloat16", "muon/drop-muon: dtype of the Newton-Schulz iteration ('none' = the "
                                       "gradient's dtype; bfloat16 is what GPUs use, on CPUs without bf16 matrix "
                                       "units it is emulated and slow)", choices=("bfloat16", "float32", "none"))
    orthogonalizer: str = option("newton-schulz", "muon/drop-muon: how the momentum is orthogonalized: "
                                                  "'newton-schulz' (PyTorch, ns_steps iterations in ns_dtype), "
                                                  "'svd' (the exact polar factor U V^T; slow, for checks), "
                                                  "'triton' (the Triton Newton-Schulz kernel of kernels/; CUDA "
                                                  "only)", choices=("newton-schulz", "svd", "triton"))
    cutoff_sampler: str = option("uniform", "drop-muon: distribution of the cutoff block s per step: 'uniform' "
                                            "over the n_layer blocks, 'epoch-shift' (shallow to deep with training "
                                            "progress, sharpness shift_alpha), 'linear-shift' (from always-0 to "
                                            "uniform)", choices=CUTOFF_SAMPLERS)
    shift_alpha: float = option(0.5, "drop-muon with cutoff_sampler='epoch-shift': sharpness alpha")


@dataclass
class ScheduleConfig:
    """Learning-rate multiplier over steps (``scale.schedules``), applied to every param group."""

    name: str = option("cosine", "schedule: 'constant' (after warmup), 'cosine' (warmup then cosine to "
                                 "min_ratio), 'wsd' (warmup-stable-decay, MiniCPM), 'wsd-s' (WSD-S: stable and "
                                 "decay phases repeated, a checkpoint at each decay end), 'dal' (drift-adjusted: "
                                 "every step h = min(2 (||g||/||Hg||)^p, dal_max_lr) relative to optim.lr, Hg by a "
                                 "finite difference of gradients on the step's batch; one more forward and backward "
                                 "pass per step; after the warmup)", choices=TRAIN_SCHEDULES)
    warmup: int = option(100, "linear warmup steps; a warmup too long for the schedule's horizon (e.g. a "
                              "preset's 100 steps in a 60-step run) is shortened to a tenth of the horizon, "
                              "with a warning")
    min_ratio: float = option(0.1, "final learning rate as a fraction of the peak (cosine, wsd, wsd-s)")
    decay_fraction: float = option(0.1, "wsd/wsd-s: fraction of the steps (of each cycle for wsd-s) spent "
                                        "decaying")
    decay: str = option("linear", "wsd/wsd-s: shape of the decay", choices=("linear", "exp", "sqrt"))
    cycle: int = option(0, "wsd-s: steps per stable+decay cycle (0 = a quarter of the schedule's horizon)")
    half_life: float | None = option(None, "wsd/wsd-s with decay='exp': half-life in steps (none = the one that "
                                           "reaches min_ratio at the end of the decay)")
    rewarmup: int = option(0, "wsd-s: steps of linear ramp back to the peak after each decay (0 = jump back)")
    dal_power: float = option(1.0, "dal: exponent p (0 = plain steps at optim.lr; 1 = h = 2||g||/||Hg||)")
    dal_max_lr: float = option(5.0, "dal: cap on the step size of the groups at optim.lr (the others keep their "
                                    "ratio to it); 5 is the DAL authors' default")
    total: int | None = option(None, "the schedule's horizon in steps; none = run.max_iters of the run that "
                                     "started it. A resumed run keeps its checkpoint's horizon, so a larger "
                                     "run.max_iters on resume trains on at the final learning rate instead of "
                                     "raising it again; give schedule.total on resume to change the horizon "
                                     "(the learning rate then follows the new schedule from the current step)")


@dataclass
class RunConfig:
    """Run length, devices, logging and checkpoints."""

    max_iters: int = option(2000, "optimizer steps of the whole run (a resumed run counts the steps before the "
                                  "checkpoint; see schedule.total for what a larger value does on resume)")
    seed: int = option(1337, "seed of the initialization, the data order, dropout and the Drop-Muon cutoffs")
    device: str = option("auto", "'auto' (cuda when available, else cpu), 'cpu', 'cuda' or 'cuda:N'; under "
                                 "torchrun each rank uses cuda:LOCAL_RANK")
    dtype: str = option("float32", "compute dtype of the forward/backward pass (bfloat16 = autocast; parameters "
                                   "and optimizer state stay float32)", choices=("float32", "bfloat16"))
    compile: bool = option(False, "torch.compile the model (costs 13-16 s up front on a small CPU and gives no "
                                  "speed-up there)")
    parallel: str = option("ddp", "data parallelism under torchrun (WORLD_SIZE > 1): 'ddp' "
                                  "(DistributedDataParallel) or 'fsdp' (FSDP2 fully_shard per block and at the "
                                  "root; adamw, muon and drop-muon; sharded DCP checkpoints ckpt_<step>.dcp that "
                                  "resume on any number of ranks)", choices=PARALLEL)
    param_dtype: str = option("float32", "fsdp: dtype of the all-gathered parameters the forward and backward "
                                         "passes use (FSDP2 MixedPrecisionPolicy.param_dtype; the sharded float32 "
                                         "parameters and optimizer state are kept)", choices=("float32", "bfloat16"))
    reduce_dtype: str = option("float32", "fsdp: dtype of the gradient reduce-scatter (FSDP2 "
                                          "MixedPrecisionPolicy.reduce_dtype); float32 keeps the gradient sum exact "
                                          "to float32 rounding", choices=("float32", "bfloat16"))
    dist_timeout: int = option(600, "seconds any collective (all-reduce, gather, checkpoint barrier) may wait under "
                                    "torchrun before the rank fails with an error, so a rank that died stops the "
                                    "others instead of hanging them")
    threads: int = option(0, "torch intra-op threads (0 = torch's default)")
    out_dir: str = option("out/train", "folder for checkpoints, metrics.jsonl and the loss-curve PNG; created "
                                       "with its missing parents (a path that is a file, or under a file, or "
                                       "not writable is an error)")
    resume: bool = option(False, "resume from the latest checkpoint in out_dir (refused when it is unreadable "
                                 "or its model/data/optim/schedule configuration differs; a fresh start if none)")
    overwrite: bool = option(False, "allow a fresh run in an out_dir that already holds checkpoints (they are "
                                    "deleted at the start)")
    log_interval: int = option(10, "steps between metric lines (and progress-bar updates)")
    eval_interval: int = option(250, "steps between validation evaluations (also at step 0 and at the end; 0 = "
                                     "only at the end); the training clock is paused meanwhile")
    eval_iters: int = option(20, "validation batches (fixed, evenly spaced windows of the validation split)")
    ckpt_interval: int = option(0, "steps between checkpoints (0 = only at the end and at wsd-s decay ends)")
    keep_checkpoints: int = option(2, "periodic checkpoints kept (older ones deleted; 0 = keep all; wsd-s "
                                      "decay-end checkpoints are always kept)")
    keep_best: bool = option(False, "also keep best.pt: a full checkpoint of the evaluation with the lowest "
                                    "validation loss so far (rewritten whenever an evaluation improves on it; "
                                    "never deleted by keep_checkpoints, never picked by run.resume)")
    grad_accum: int = option(1, "micro-steps per optimizer step: each rank's share of data.batch_size is split "
                                "into grad_accum micro-batches whose gradients are summed (the loss of each is "
                                "divided by grad_accum), with the data-parallel gradient synchronization on "
                                "the last one only; the same update as one pass over the whole batch, up to "
                                "summation order (must divide data.batch_size / world size)")
    init_from: str | None = option(None, "fine-tune: initialize the model's weights from this checkpoint file "
                                         "(or the latest checkpoint of this folder); its model section must "
                                         "equal this run's. Only the weights are taken: optimizer state, "
                                         "schedule, step count and data order start fresh (run.resume, when it "
                                         "finds a checkpoint in run.out_dir, takes precedence)")
    tensorboard: bool = option(False, "also write TensorBoard event files (out_dir/tensorboard) with the "
                                      "train, eval and sharpness scalars of metrics.jsonl and the samples; "
                                      "needs the tensorboard package")
    sample_tokens: int = option(0, "at each evaluation, generate this many tokens from the start of the "
                                   "validation split (temperature 0.8, top-k 200, a fixed seed) and log them as "
                                   "'sample' lines of metrics.jsonl (0 = off)")
    lambda_max_every: int = option(0, "log the sharpness lambda_max (largest Hessian eigenvalue of the training "
                                      "loss on a held batch of the training split, by Lanczos) every K steps, as "
                                      "'sharpness' lines of metrics.jsonl and a panel of the loss plot (0 = off)")
    lambda_max_iters: int = option(20, "Lanczos iterations per lambda_max estimate (each one Hessian-vector "
                                       "product, about two backward passes)")
    progress: bool = option(True, "tqdm progress bar on rank 0")
    plot: bool = option(True, "write the loss-curve PNG at the end")
    verbose: bool = option(True, "print the resolved configuration at the start and a summary line at the end "
                                 "(rank 0)")


@dataclass
class TrainConfig:
    """The whole run: ``model``, ``data``, ``optim``, ``schedule``, ``run`` (see the section classes)."""

    model: GPTConfig = field(default_factory=lambda: GPTConfig(vocab_size=0))
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)

    # Help texts of the model section (GPTConfig belongs to scale.model and carries no command-line metadata).
    __field_help__ = {
        "model.vocab_size": ("vocabulary size; 0 = the corpus vocabulary (a given value must be at least that)",
                             None),
        "model.block_size": ("context length in tokens", None),
        "model.n_layer": ("transformer blocks", None),
        "model.n_head": ("attention heads per block (must divide n_embd)", None),
        "model.n_embd": ("width of the residual stream", None),
        "model.dropout": ("dropout probability (attention, residual, embedding)", None),
        "model.bias": ("biases in Linear layers and norms", None),
        "model.norm": ("normalization layer", ("layernorm", "rmsnorm", "powernorm")),
        "model.qk_norm": ("qk-layernorm: normalize queries and keys per head before the dot product (Dehghani et "
                          "al. 2023; Wortsman et al. 2023, arXiv 2309.14322)", None),
        "model.z_loss": ("PaLM z-loss coefficient on (log Z)^2 (arXiv 2204.02311; 1e-4 typical, 0 = off)", None),
        "model.head": ("output head: 'softmax' or 'harmonic' (distance-based, Baek et al. 2025, arXiv "
                       "2502.01628)", ("softmax", "harmonic")),
        "model.harmonic_exponent": ("harmonic head exponent n; none = sqrt(n_embd)", None),
        "model.tie_weights": ("tie the token embedding and the output head", None),
        "model.norm_eps": ("epsilon of every norm (added to the variance or mean square)", None),
        "model.powernorm_alpha": ("running-average factor alpha of PowerNorm (0.9 in Shen et al. 2020)", None),
    }


# Run-length and bookkeeping fields: they may differ between a checkpoint and the run resuming from it.
# schedule.total is among them because a resumed run keeps its checkpoint's horizon unless told otherwise
# (scale.train handles it).
RESUME_FREE_FIELDS = frozenset({
    "run.max_iters", "run.out_dir", "run.resume", "run.overwrite", "run.log_interval", "run.eval_interval",
    "run.eval_iters", "run.ckpt_interval", "run.keep_checkpoints", "run.progress", "run.plot", "run.threads",
    "run.device", "run.compile", "run.verbose", "data.cache_dir", "schedule.total", "run.lambda_max_every",
    "run.lambda_max_iters", "run.keep_best", "run.grad_accum", "run.init_from", "run.tensorboard",
    "run.sample_tokens", "run.parallel", "run.dist_timeout",
})

PRESETS: dict[str, dict[str, Any]] = {
    # nanoGPT's CPU recipe (4 layers, 4 heads, width 128, context 64, batch 12, AdamW, cosine to lr/10,
    # 2000 steps) with the peak lr doubled to 2e-3: validation loss about 1.79 (char level) on tiny-shakespeare
    # in a few minutes on 2 CPU cores (nanoGPT's lr 1e-3 gives about 1.88). One thread: two OpenMP threads
    # on a 2-core machine slow down many-fold whenever the other core is busy.
    "shakespeare-char-cpu": {
        "model.n_layer": 4, "model.n_head": 4, "model.n_embd": 128, "model.block_size": 64,
        "model.dropout": 0.0, "model.bias": False,
        "data.corpus": "shakespeare", "data.level": "char", "data.batch_size": 12,
        "optim.name": "adamw", "optim.lr": 2e-3, "optim.weight_decay": 0.1, "optim.beta1": 0.9,
        "optim.beta2": 0.99, "optim.grad_clip": 1.0, "optim.ns_dtype": "float32",
        "schedule.name": "cosine", "schedule.warmup": 100, "schedule.min_ratio": 0.1,
        "run.max_iters": 2000, "run.eval_interval": 250, "run.eval_iters": 20, "run.log_interval": 10,
        "run.device": "cpu", "run.threads": 1, "run.out_dir": "out/shakespeare-char-cpu",
    },
    # nanoGPT's config/train_shakespeare_char.py, for a GPU (about 1.47 validation loss there).
    "shakespeare-char": {
        "model.n_layer": 6, "model.n_head": 6, "model.n_embd": 384, "model.block_size": 256,
        "model.dropout": 0.2, "model.bias": False,
        "data.corpus": "shakespeare", "data.level": "char", "data.batch_size": 64,
        "optim.name": "adamw", "optim.lr": 1e-3, "optim.weight_decay": 0.1, "optim.beta1": 0.9,
        "optim.beta2": 0.99, "optim.grad_clip": 1.0,
        "schedule.name": "cosine", "schedule.warmup": 100, "schedule.min_ratio": 0.1,
        "run.max_iters": 5000, "run.eval_interval": 250, "run.eval_iters": 200, "run.log_interval": 10,
        "run.out_dir": "out/shakespeare-char",
    },
}


# ------------------------------------------------------------------------------------------ thin bindings
def resolve(preset: str | None = None, config_file: str | Path | None = None,
            overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the preset, then the TOML file, then ``{"section.key": value}`` overrides (later wins);
    :func:`scale.cli.resolve` bound to :class:`TrainConfig` and :data:`PRESETS`. A preset named both here and
    in the file: this one wins. Errors are :class:`scale.cli.UsageError` (a ``ValueError``)."""
    return cli.resolve(TrainConfig, PRESETS, preset, config_file, overrides)


def config_to_dict(config: TrainConfig) -> dict[str, dict[str, Any]]:
    """Plain nested dict (str/int/float/bool/None values only): what checkpoints and metrics store."""
    return cli.config_to_dict(config)


def config_from_dict(d: Mapping[str, Mapping[str, Any]]) -> TrainConfig:
    """Inverse of :func:`config_to_dict` (unknown sections or keys raise ``ValueError``)."""
    return cli.config_from_dict(TrainConfig, d)


def config_to_toml(config: TrainConfig) -> str:
    """The configuration as a TOML document that :func:`resolve` reads back to the same configuration."""
    return cli.config_to_toml(config)


def upgrade_config_dict(d: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """A copy of a stored configuration dict with the spellings of :data:`LEGACY_VALUES` replaced by the
    current ones (``dropmuon`` -> ``drop-muon`` ...), for checkpoints written before the rename."""
    out = {section: dict(values) if isinstance(values, Mapping) else values for section, values in d.items()}
    for key, table in LEGACY_VALUES.items():
        section, name = key.split(".", 1)
        values = out.get(section)
        if isinstance(values, dict) and isinstance(values.get(name), str) and values[name] in table:
            values[name] = table[values[name]]
    return out


def diff_configs(saved: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]],
                 ignore: frozenset[str] = RESUME_FREE_FIELDS) -> list[str]:
    """Human-readable differences ``"key: checkpoint a, now b"`` between two config dicts, ``ignore`` excepted."""
    out = []
    for section in sorted(set(saved) | set(current)):
        a, b = saved.get(section, {}), current.get(section, {})
        for k in sorted(set(a) | set(b)):
            key = f"{section}.{k}"
            if key in ignore:
                continue
            va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
            if va != vb:
                out.append(f"{key}: checkpoint {va!r}, now {vb!r}")
    return out
