"""Configuration of ``python -m scale.train``: one dataclass tree, presets, TOML files and dotted CLI overrides.

A run is described by :class:`TrainConfig`, whose five sections are dataclasses:

- ``model``: :class:`scale.model.GPTConfig` (architecture and the loss/normalization ablation flags),
- ``data``: :class:`DataConfig` (corpus, split, batch),
- ``optim``: :class:`OptimConfig` (optimizer family and its hyper-parameters),
- ``schedule``: :class:`ScheduleConfig` (learning-rate multiplier over steps),
- ``run``: :class:`RunConfig` (length, devices, logging, checkpoints).

Every field carries its help text in ``field(metadata={"help": ...})`` (and ``"choices"`` where the values are a
closed set); the command line and ``--help`` are generated from these dataclasses, so a new field is documented
and settable from the command line without touching the parser.

Resolution order (later wins): dataclass defaults, ``--preset NAME`` (or ``preset = "NAME"`` at the top of the
TOML file), ``--config file.toml`` (sections ``[model]``, ``[data]``, ``[optim]``, ``[schedule]``, ``[run]``),
then ``--section.key value`` / ``--section.key=value`` overrides. An unknown preset, section or key raises
``ValueError`` listing the valid names (with a "did you mean" from :mod:`difflib`).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import GPTConfig

__all__ = [
    "DataConfig",
    "FieldSpec",
    "MODEL_HELP",
    "RESUME_FREE_FIELDS",
    "OptimConfig",
    "PRESETS",
    "RunConfig",
    "ScheduleConfig",
    "SECTIONS",
    "TrainConfig",
    "apply_overrides",
    "build_parser",
    "config_from_dict",
    "config_to_dict",
    "config_to_toml",
    "convert_value",
    "diff_configs",
    "field_specs",
    "load_toml",
    "parse_cli",
    "preset_overrides",
    "resolve",
]

OPTIMIZERS = ("adamw", "muon", "dropmuon")
SCHEDULES = ("constant", "cosine", "wsd", "wsd_s")
CUTOFF_SAMPLERS = ("uniform", "epoch_shift", "linear_shift")
PARALLEL = ("ddp", "fsdp")


def _f(default, help: str, choices: Sequence[str] | None = None):  # noqa: A002 - mirrors argparse's name
    meta: dict[str, Any] = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    """Corpus, split and batch (``scale.data``)."""

    corpus: str = _f("shakespeare", "corpus: 'shakespeare' (the shipped tiny-shakespeare text), 'stdlib' (the "
                                    "*.py files of Python's standard library) or the path of a UTF-8 text file")
    level: str = _f("char", "tokenization: one token per character ('char', vocabulary built from the corpus) "
                            "or per UTF-8 byte ('byte', 256 ids)", ("char", "byte"))
    val_fraction: float = _f(0.1, "fraction of the corpus, taken from its end, held out for validation")
    max_files: int | None = _f(None, "stdlib corpus: number of files read (sorted by name); none = the "
                                     "loader's default")
    cache_dir: str | None = _f(None, "folder for uint16 token files opened with np.memmap (corpora larger than "
                                     "memory); none = encode in memory")
    batch_size: int = _f(12, "global batch: context windows per optimizer step, summed over all ranks (each "
                             "of N ranks gets a contiguous 1/N of the rows of the same global batch)")


@dataclass
class OptimConfig:
    """Optimizer family and hyper-parameters."""

    name: str = _f("adamw", "optimizer: 'adamw' (torch.optim.AdamW, weight decay on 2-D parameters only), "
                            "'muon' (optlib MuonWithAdamW: Muon on hidden matrices, AdamW on embeddings, head, "
                            "norms and biases), 'dropmuon' (optlib DropMuon on the blocks' matrices with a "
                            "random cutoff per step and a truncated backward pass, AdamW on the rest)",
                   OPTIMIZERS)
    lr: float = _f(1e-3, "AdamW peak learning rate (for muon/dropmuon: of the parameters routed to AdamW)")
    weight_decay: float = _f(0.1, "AdamW decoupled weight decay, applied to 2-D parameters only (embeddings, "
                                  "matrices); biases and norm gains get none")
    beta1: float = _f(0.9, "AdamW beta1")
    beta2: float = _f(0.99, "AdamW beta2")
    eps: float = _f(1e-8, "AdamW epsilon")
    grad_clip: float = _f(1.0, "clip the global gradient norm to this value before the step (0 = no clipping; "
                               "the norm is logged either way)")
    muon_lr: float = _f(0.02, "muon/dropmuon: learning rate of the hidden matrices (spectral step, times the "
                              "shape factor of muon_adjust_lr)")
    muon_momentum: float = _f(0.95, "muon/dropmuon: momentum beta")
    muon_nesterov: bool = _f(True, "muon/dropmuon: Nesterov momentum")
    muon_weight_decay: float = _f(0.0, "muon/dropmuon: decoupled weight decay of the hidden matrices")
    muon_adjust_lr: str = _f("keller", "muon/dropmuon: shape scaling of the step, 'keller' sqrt(max(1, m/n)), "
                                       "'moonshot' 0.2 sqrt(max(m, n)), 'none' 1", ("keller", "moonshot", "none"))
    ns_steps: int = _f(5, "muon/dropmuon: Newton-Schulz iterations")
    ns_dtype: str = _f("bfloat16", "muon/dropmuon: dtype of the Newton-Schulz iteration ('none' = the "
                                   "gradient's dtype; bfloat16 is what GPUs use, on CPUs without bf16 matrix "
                                   "units it is emulated and slow)", ("bfloat16", "float32", "none"))
    cutoff_sampler: str = _f("uniform", "dropmuon: distribution of the cutoff block s per step: 'uniform' over "
                                        "the n_layer blocks, 'epoch_shift' (shallow to deep with training "
                                        "progress, sharpness shift_alpha), 'linear_shift' (from always-0 to "
                                        "uniform)", CUTOFF_SAMPLERS)
    shift_alpha: float = _f(0.5, "dropmuon with cutoff_sampler='epoch_shift': sharpness alpha")


@dataclass
class ScheduleConfig:
    """Learning-rate multiplier over steps (``scale.schedules``), applied to every param group."""

    name: str = _f("cosine", "schedule: 'constant' (after warmup), 'cosine' (warmup then cosine to "
                             "min_ratio), 'wsd' (warmup-stable-decay, MiniCPM), 'wsd_s' (WSD-S: stable and decay "
                             "phases repeated, a checkpoint at each decay end)", SCHEDULES)
    warmup: int = _f(100, "linear warmup steps")
    min_ratio: float = _f(0.1, "final learning rate as a fraction of the peak (cosine, wsd, wsd_s)")
    decay_fraction: float = _f(0.1, "wsd/wsd_s: fraction of the steps (of each cycle for wsd_s) spent decaying")
    decay: str = _f("linear", "wsd/wsd_s: shape of the decay", ("linear", "exp", "sqrt"))
    cycle: int = _f(0, "wsd_s: steps per stable+decay cycle (0 = a quarter of the schedule's total)")
    half_life: float | None = _f(None, "wsd/wsd_s with decay='exp': half-life in steps (none = the one that "
                                       "reaches min_ratio at the end of the decay)")
    rewarmup: int = _f(0, "wsd_s: steps of linear ramp back to the peak after each decay (0 = jump back)")
    total: int | None = _f(None, "steps over which the schedule runs; none = run.max_iters")


@dataclass
class RunConfig:
    """Run length, devices, logging and checkpoints."""

    max_iters: int = _f(2000, "optimizer steps")
    seed: int = _f(1337, "seed of the initialization, the data order, dropout and the Drop-Muon cutoffs")
    device: str = _f("auto", "'auto' (cuda when available, else cpu), 'cpu', 'cuda' or 'cuda:N'; under "
                             "torchrun each rank uses cuda:LOCAL_RANK")
    dtype: str = _f("float32", "compute dtype of the forward/backward pass (bfloat16 = autocast; parameters "
                               "and optimizer state stay float32)", ("float32", "bfloat16"))
    compile: bool = _f(False, "torch.compile the model (costs 13-16 s up front on a small CPU and gives no "
                              "speed-up there)")
    parallel: str = _f("ddp", "data parallelism under torchrun (WORLD_SIZE > 1): 'ddp' "
                              "(DistributedDataParallel) or 'fsdp' (FSDP2 fully_shard per block and at the root; "
                              "optim.name='adamw' only)", PARALLEL)
    threads: int = _f(0, "torch intra-op threads (0 = torch's default)")
    out_dir: str = _f("out/train", "folder for checkpoints, metrics.jsonl and the loss-curve PNG")
    resume: bool = _f(False, "resume from the latest checkpoint in out_dir (refused when it is unreadable or "
                             "its model/data/optim/schedule configuration differs; a fresh start if none)")
    overwrite: bool = _f(False, "allow a fresh run in an out_dir that already holds checkpoints (they are "
                                "deleted at the start)")
    log_interval: int = _f(10, "steps between metric lines (and progress-bar updates)")
    eval_interval: int = _f(250, "steps between validation evaluations (also at step 0 and at the end; 0 = "
                                 "only at the end); the training clock is paused meanwhile")
    eval_iters: int = _f(20, "validation batches (fixed, evenly spaced windows of the validation split)")
    ckpt_interval: int = _f(0, "steps between checkpoints (0 = only at the end and at wsd_s decay ends)")
    keep_checkpoints: int = _f(2, "periodic checkpoints kept (older ones deleted; 0 = keep all; wsd_s "
                                  "decay-end checkpoints are always kept)")
    progress: bool = _f(True, "tqdm progress bar on rank 0")
    plot: bool = _f(True, "write the loss-curve PNG at the end")
    verbose: bool = _f(True, "print the resolved configuration at the start and a summary line at the end "
                             "(rank 0)")


@dataclass
class TrainConfig:
    """The whole run: ``model``, ``data``, ``optim``, ``schedule``, ``run`` (see the section classes)."""

    model: GPTConfig = field(default_factory=lambda: GPTConfig(vocab_size=0))
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)


SECTIONS: dict[str, type] = {
    "model": GPTConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "run": RunConfig,
}

# Help texts for the model section, used where GPTConfig's own fields carry no "help" metadata.
MODEL_HELP: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "vocab_size": ("vocabulary size; 0 = the corpus vocabulary (a given value must be at least that)", None),
    "block_size": ("context length in tokens", None),
    "n_layer": ("transformer blocks", None),
    "n_head": ("attention heads per block (must divide n_embd)", None),
    "n_embd": ("width of the residual stream", None),
    "dropout": ("dropout probability (attention, residual, embedding)", None),
    "bias": ("biases in Linear layers and norms", None),
    "norm": ("normalization layer", ("layernorm", "rmsnorm", "powernorm")),
    "qk_norm": ("qk-layernorm: normalize queries and keys per head before the dot product (Dehghani et al. "
                "2023; Wortsman et al. 2023, arXiv 2309.14322)", None),
    "z_loss": ("PaLM z-loss coefficient on (log Z)^2 (arXiv 2204.02311; 1e-4 typical, 0 = off)", None),
    "head": ("output head: 'softmax' or 'harmonic' (distance-based, Baek et al. 2025, arXiv 2502.01628)",
             ("softmax", "harmonic")),
    "harmonic_exponent": ("harmonic head exponent n; none = sqrt(n_embd)", None),
    "tie_weights": ("tie the token embedding and the output head", None),
    "norm_eps": ("epsilon of every norm (added to the variance or mean square)", None),
    "powernorm_alpha": ("running-average factor alpha of PowerNorm (0.9 in Shen et al. 2020)", None),
}

# Run-length and bookkeeping fields: they may differ between a checkpoint and the run resuming from it.
RESUME_FREE_FIELDS = frozenset({
    "run.max_iters", "run.out_dir", "run.resume", "run.overwrite", "run.log_interval", "run.eval_interval",
    "run.eval_iters", "run.ckpt_interval", "run.keep_checkpoints", "run.progress", "run.plot", "run.threads",
    "run.device", "run.compile", "run.verbose", "data.cache_dir",
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


# ------------------------------------------------------------------------------------------ field specs
@dataclass(frozen=True)
class FieldSpec:
    """One settable field: ``key`` ("section.name"), its type, default, help text and valid values."""

    key: str
    section: str
    name: str
    type: Any
    default: Any
    help: str
    choices: tuple[str, ...] | None


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # unresolvable annotation: fall back on the defaults' types
        return {}


def _field_default(f: dataclasses.Field, instance) -> Any:
    return getattr(instance, f.name)


def field_specs(defaults: TrainConfig | None = None) -> list[FieldSpec]:
    """Every settable field of :class:`TrainConfig`, in section order, with the defaults of ``defaults``."""
    defaults = TrainConfig() if defaults is None else defaults
    specs = []
    for section, cls in SECTIONS.items():
        instance = getattr(defaults, section)
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            default = _field_default(f, instance)
            help_text = f.metadata.get("help")
            choices = f.metadata.get("choices")
            if section == "model" and f.name in MODEL_HELP:
                mh, mc = MODEL_HELP[f.name]
                help_text = help_text or mh
                choices = choices or mc
            if not help_text:
                help_text = f"{section} option {f.name}"
            typ = hints.get(f.name, type(default) if default is not None else str)
            specs.append(FieldSpec(f"{section}.{f.name}", section, f.name, typ, default, help_text,
                                   tuple(choices) if choices else None))
    return specs


def _spec_map() -> dict[str, FieldSpec]:
    return {s.key: s for s in field_specs()}


def _did_you_mean(word: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(valid), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _unknown(kind: str, word: str, valid: Sequence[str]) -> ValueError:
    return ValueError(f"unknown {kind} {word!r}{_did_you_mean(word, valid)}; valid {kind}s: "
                      f"{', '.join(sorted(valid))}")


# ------------------------------------------------------------------------------------------ values
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _base_types(typ) -> tuple[list[type], bool]:
    """The non-None member types of ``typ`` and whether None is allowed."""
    origin = typing.get_origin(typ)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(typ)
        return [a for a in args if a is not type(None)], type(None) in args
    return [typ], False


def convert_value(spec: FieldSpec, value: Any) -> Any:
    """``value`` (a CLI string or a TOML value) as the field's type; ``ValueError`` naming the field if not."""
    bases, nullable = _base_types(spec.type)
    if isinstance(value, str) and value.strip().lower() in ("none", "null") and nullable:
        return None
    if value is None:
        if nullable:
            return None
        raise ValueError(f"{spec.key} cannot be none")
    errors = []
    for base in bases:
        try:
            out = _convert_one(base, value)
        except (TypeError, ValueError) as exc:
            errors.append(str(exc))
            continue
        if spec.choices is not None and out not in spec.choices:
            raise ValueError(f"{spec.key}: invalid value {out!r}{_did_you_mean(str(out), spec.choices)}; "
                             f"valid values: {', '.join(spec.choices)}")
        return out
    kinds = " or ".join(getattr(b, "__name__", str(b)) for b in bases) + (" or none" if nullable else "")
    raise ValueError(f"{spec.key}: expected {kinds}, got {value!r}")


def _convert_one(base, value):
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"not a boolean (true/false): {value!r}")
    if base is int:
        if isinstance(value, bool):
            raise TypeError("bool given for an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            s = value.strip().replace("_", "")
            try:
                return int(s)
            except ValueError:
                x = float(s)  # "1e3"
                if x.is_integer():
                    return int(x)
                raise
        raise TypeError(f"not an integer: {value!r}")
    if base is float:
        if isinstance(value, bool):
            raise TypeError("bool given for a float")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
        raise TypeError(f"not a number: {value!r}")
    if base is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise TypeError(f"not a string: {value!r}")
    raise TypeError(f"unsupported field type {base!r}")


# ------------------------------------------------------------------------------------------ dict round trip
def config_to_dict(config: TrainConfig) -> dict[str, dict[str, Any]]:
    """Plain nested dict (str/int/float/bool/None values only): what checkpoints and metrics store."""
    return {section: dataclasses.asdict(getattr(config, section)) for section in SECTIONS}


def config_from_dict(d: Mapping[str, Mapping[str, Any]]) -> TrainConfig:
    """Inverse of :func:`config_to_dict` (unknown sections or keys raise ``ValueError``)."""
    return apply_overrides(TrainConfig(), _flatten(d, "config"))


def _flatten(d: Mapping[str, Any], origin: str) -> dict[str, Any]:
    out = {}
    for section, values in d.items():
        if section not in SECTIONS:
            raise _unknown(f"section in {origin}", section, list(SECTIONS))
        if not isinstance(values, Mapping):
            raise ValueError(f"{origin}: [{section}] must be a table of key = value pairs, got {values!r}")
        for k, v in values.items():
            out[f"{section}.{k}"] = v
    return out


def apply_overrides(config: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """A copy of ``config`` with ``{"section.key": value}`` applied (values converted to the field types)."""
    specs = _spec_map()
    sections = {s: dataclasses.asdict(getattr(config, s)) for s in SECTIONS}
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key not in specs:
            raise _unknown("config key", key, list(specs))
        spec = specs[key]
        sections[spec.section][spec.name] = convert_value(spec, value)
    return TrainConfig(**{s: SECTIONS[s](**vals) for s, vals in sections.items()})


def load_toml(path: str | Path) -> tuple[str | None, dict[str, Any]]:
    """``(preset, overrides)`` from a TOML file with sections ``[model]`` ... ``[run]`` and an optional
    top-level ``preset = "NAME"``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} not found")
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc
    preset = doc.pop("preset", None)
    if preset is not None and not isinstance(preset, str):
        raise ValueError(f"{path}: preset must be a string, got {preset!r}")
    return preset, _flatten(doc, f"config file {str(path)!r}")


def preset_overrides(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise _unknown("preset", name, list(PRESETS))
    return dict(PRESETS[name])


def resolve(preset: str | None = None, config_file: str | Path | None = None,
            overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the preset, then the TOML file, then ``overrides`` (later wins); see the module docstring.

    A preset named both on the command line and in the file: the command line's wins.
    """
    file_preset, file_overrides = (None, {}) if config_file is None else load_toml(config_file)
    preset = preset or file_preset
    config = TrainConfig()
    if preset:
        config = apply_overrides(config, preset_overrides(preset))
    config = apply_overrides(config, file_overrides)
    return apply_overrides(config, overrides or {})


# ------------------------------------------------------------------------------------------ TOML out
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if v is None:
        return '"none"'
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def config_to_toml(config: TrainConfig) -> str:
    """The configuration as a TOML document that :func:`resolve` reads back to the same configuration."""
    lines = []
    for section, values in config_to_dict(config).items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ CLI
_DESCRIPTION = (
    "Train a GPT (scale.model) on a character- or byte-level corpus (scale.data) with AdamW, Muon or Drop-Muon "
    "(optlib.optim). Single process by default; under 'torchrun --nproc_per_node=N -m scale.train ...' "
    "(WORLD_SIZE > 1) data-parallel with DDP or FSDP2 (gloo on CPU, nccl on CUDA), each rank taking its slice "
    "of the same global batch. Writes OUT_DIR/metrics.jsonl, checkpoints OUT_DIR/ckpt_<step>.pt (exact "
    "resume with --run.resume true) and OUT_DIR/loss.png. Settings: defaults < --preset < --config FILE.toml "
    "< --section.key VALUE overrides (also --section.key=VALUE)."
)


def _type_name(typ) -> str:
    bases, nullable = _base_types(typ)
    name = "|".join(getattr(b, "__name__", str(b)) for b in bases)
    return name + ("|none" if nullable else "")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser; one ``--section.key`` option per field of :class:`TrainConfig`."""
    p = argparse.ArgumentParser(prog="python -m scale.train", description=_DESCRIPTION, allow_abbrev=False,
                                epilog="presets: " + "; ".join(
                                    f"{n} ({', '.join(f'{k}={v}' for k, v in o.items() if k.startswith('model.'))})"
                                    for n, o in PRESETS.items()))
    p.add_argument("--preset", metavar="NAME", default=None,
                   help=f"start from a named configuration; choices: {', '.join(PRESETS)}")
    p.add_argument("--config", metavar="FILE.toml", default=None,
                   help="TOML file with [model] [data] [optim] [schedule] [run] tables (and optional preset = ...)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration as TOML and exit")
    for section, cls in SECTIONS.items():
        group = p.add_argument_group(f"[{section}]", (cls.__doc__ or "").strip().splitlines()[0])
        for spec in (s for s in field_specs() if s.section == section):
            extra = f" (default: {spec.default!r}"
            if spec.choices:
                extra += f"; choices: {', '.join(spec.choices)}"
            extra += ")"
            group.add_argument(f"--{spec.key}", dest=spec.key, metavar=_type_name(spec.type).upper(),
                               default=argparse.SUPPRESS, help=spec.help.replace("%", "%%") + extra)
    return p


def _normalize_argv(argv: Sequence[str]) -> list[str]:
    out = []
    for tok in argv:
        if tok.startswith("--") and "." in tok.split("=", 1)[0]:
            key, eq, val = tok.partition("=")
            tok = "--" + key[2:].replace("-", "_") + eq + val
        out.append(tok)
    return out


def parse_cli(argv: Sequence[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """``(config, args)`` from the command line; ``ValueError`` for an unknown key, preset or bad value."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(_normalize_argv(argv))
    if unknown:
        flags = [tok for tok in unknown if tok.startswith("--")]
        if flags:
            word = flags[0].split("=", 1)[0]
            valid = [f"--{s.key}" for s in field_specs()] + ["--preset", "--config", "--print-config"]
            raise ValueError(f"unknown option {word!r}{_did_you_mean(word, valid)}; run with --help for the "
                             f"list (keys: {', '.join(s.key for s in field_specs())})")
        raise ValueError(f"unexpected argument(s) {unknown}: options are --section.key VALUE")
    overrides = {k: v for k, v in vars(args).items() if "." in k}
    config = resolve(args.preset, args.config, overrides)
    return config, args


def diff_configs(saved: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]],
                 ignore: frozenset[str] = RESUME_FREE_FIELDS) -> list[str]:
    """Human-readable differences ``"key: saved -> current"`` between two config dicts, ``ignore`` excepted."""
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
