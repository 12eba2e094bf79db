"""The training entry point ``scale.train``: configuration and CLI, optimizers, Drop-Muon truncation, errors,
checkpoints, exact resume after ``kill -9``, and what a first-time user runs into (short runs of a preset, bad
output folders, damaged checkpoints, resuming with a longer run).

Every run here uses a tiny GPT (2 blocks, width 32, context 16) on the first 40,000 characters of the shipped
tiny-shakespeare text, one thread, a few dozen steps.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from scale import train as T
from scale.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from scale.cli import field_specs
from scale.config import (
    OPTIMIZERS,
    PRESETS,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    config_to_toml,
    resolve,
)
from scale.data import eval_windows, load_corpus
from scale.metrics import read_metrics
from scale.model import GPT
from scale.schedules import cosine

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "scale" / "configs"

TINY = {
    "model.n_layer": 2, "model.n_head": 2, "model.n_embd": 32, "model.block_size": 16,
    "data.batch_size": 8, "run.eval_iters": 2, "run.log_interval": 1, "run.eval_interval": 5,
    "schedule.warmup": 2, "run.threads": 1, "run.progress": False, "run.plot": False, "run.verbose": False,
}


def tiny(corpus: str, out_dir, **overrides) -> TrainConfig:
    o = dict(TINY)
    o.update({"data.corpus": corpus, "run.out_dir": str(out_dir)})
    o.update({k.replace("__", "."): v for k, v in overrides.items()})
    return resolve(overrides=o)


def tiny_argv(corpus: str, out_dir, **overrides) -> list[str]:
    o = dict(TINY)
    o.update({"data.corpus": corpus, "run.out_dir": str(out_dir)})
    o.update({k.replace("__", "."): v for k, v in overrides.items()})
    return [f"--{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in o.items()]


def parse_cli(argv: list[str]) -> tuple[TrainConfig, object]:
    return T.COMMAND.parse(argv)


def lr_mults(metrics_path) -> dict[int, float]:
    return {r["step"]: r["lr_mult"] for r in read_metrics(metrics_path) if r.get("kind") == "train"}


def losses(metrics_path) -> list[tuple]:
    """The loss log: (kind, step, loss) of every training and evaluation line."""
    out = []
    for r in read_metrics(metrics_path):
        if r.get("kind") == "train":
            out.append(("train", r["step"], r["loss"]))
        elif r.get("kind") == "eval":
            out.append(("eval", r["step"], r["val_loss"]))
    return out


def tensors_equal(a, b) -> bool:
    """Exact equality of nested containers of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b))
    return a == b


# ------------------------------------------------------------------------------------------ CLI and config
def _shown(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


def test_help_documents_every_field(capsys):
    assert T.main(["--help"]) == 0
    out = capsys.readouterr().out
    flat = "".join(out.split())  # argparse wraps lines (also at hyphens)
    specs = field_specs(TrainConfig)
    assert len(specs) > 40
    for spec in specs:
        assert f"{spec.flag} " in out, spec.key
        assert "".join(spec.help.split())[:60] in flat, f"help text of {spec.key} missing"
        assert f"(default:{_shown(spec.default)}" in flat, spec.key
        if spec.choices:
            assert "choices:" + ",".join(spec.choices) in flat, spec.key
    assert "(default: true)" in out and "(default: false)" in out  # booleans as the command line spells them
    assert "(default: True)" not in out and "(default: False)" not in out
    for name in PRESETS:
        assert name in out
    assert "--schedule.total" in out and "horizon" in out  # the resume behaviour is documented


def test_every_field_has_a_help_text_in_its_metadata():
    for f in dataclasses.fields(TrainConfig):
        if f.name == "model":
            continue  # GPTConfig belongs to scale.model; its help texts are TrainConfig.__field_help__
        for g in dataclasses.fields(type(getattr(TrainConfig(), f.name))):
            assert len(g.metadata.get("help", "")) > 10, f"{f.name}.{g.name}"
    for spec in field_specs(TrainConfig):
        assert spec.help and spec.help != spec.key, spec.key


def test_method_names_use_hyphens():
    assert OPTIMIZERS == ("adamw", "muon", "drop-muon", "sgd")
    specs = {s.key: s for s in field_specs(TrainConfig)}
    assert specs["optim.cutoff_sampler"].choices == ("uniform", "epoch-shift", "linear-shift")
    assert "wsd-s" in specs["schedule.name"].choices and "wsd_s" not in specs["schedule.name"].choices
    for path in CONFIG_DIR.glob("*.toml"):
        text = path.read_text()
        for old in ("dropmuon", "wsd_s", "epoch_shift", "linear_shift"):
            assert old not in text, (path.name, old)


def test_cli_overrides_both_forms_and_types():
    cfg, _ = parse_cli(["--optim.lr", "3e-3", "--model.n_layer=6", "--model.n_head", "6", "--model.n_embd=96",
                        "--run.progress", "false", "--model.harmonic_exponent", "none", "--data.max-files", "7",
                        "--optim.name=muon", "--model.qk_norm", "true"])
    assert cfg.optim.lr == 3e-3 and isinstance(cfg.optim.lr, float)
    assert cfg.model.n_layer == 6 and isinstance(cfg.model.n_layer, int)
    assert cfg.model.n_embd == 96
    assert cfg.run.progress is False and cfg.model.qk_norm is True
    assert cfg.model.harmonic_exponent is None
    assert cfg.data.max_files == 7
    assert cfg.optim.name == "muon"
    # untouched fields keep their defaults
    assert cfg.optim.beta2 == TrainConfig().optim.beta2


def test_toml_preset_then_file_then_cli(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('preset = "shakespeare-char"\n[optim]\nlr = 5e-4\nname = "muon"\n[run]\nmax_iters = 77\n')
    cfg, _ = parse_cli(["--config", str(path), "--run.max_iters", "12"])
    assert cfg.model.n_layer == 6 and cfg.model.n_embd == 384  # from the preset
    assert cfg.optim.lr == 5e-4 and cfg.optim.name == "muon"  # from the file
    assert cfg.run.max_iters == 12  # the command line wins over the file
    cfg2, _ = parse_cli(["--config", str(path), "--preset", "shakespeare-char-cpu"])
    assert cfg2.model.n_layer == 4  # a preset on the command line wins over the file's


def test_presets_match_their_recipes():
    cpu = resolve("shakespeare-char-cpu")
    assert (cpu.model.n_layer, cpu.model.n_head, cpu.model.n_embd, cpu.model.block_size) == (4, 4, 128, 64)
    assert cpu.data.batch_size == 12 and cpu.optim.name == "adamw" and cpu.model.dropout == 0.0
    gpu = resolve("shakespeare-char")  # nanoGPT config/train_shakespeare_char.py
    assert (gpu.model.n_layer, gpu.model.n_head, gpu.model.n_embd, gpu.model.block_size) == (6, 6, 384, 256)
    assert gpu.data.batch_size == 64 and gpu.model.dropout == 0.2 and gpu.optim.beta2 == 0.99
    assert gpu.optim.lr == 1e-3 and gpu.run.max_iters == 5000 and gpu.schedule.warmup == 100
    assert gpu.schedule.name == "cosine" and math.isclose(gpu.optim.lr * gpu.schedule.min_ratio, 1e-4)
    for name in PRESETS:
        cfg = resolve(name)
        m = cfg.model
        type(m)(**{**config_to_dict(cfg)["model"], "vocab_size": 65}).validate()


def test_config_toml_round_trip(tmp_path, capsys):
    cfg = resolve("shakespeare-char", overrides={"model.harmonic_exponent": 3.5, "data.max_files": None,
                                                 "optim.name": "drop-muon"})
    path = tmp_path / "resolved.toml"
    path.write_text(config_to_toml(cfg))
    assert resolve(config_file=path) == cfg
    assert T.main(["--preset", "shakespeare-char", "--print-config"]) == 0
    printed = tmp_path / "printed.toml"
    printed.write_text(capsys.readouterr().out)
    assert resolve(config_file=printed) == resolve("shakespeare-char")


def test_example_configs_resolve():
    files = sorted(CONFIG_DIR.glob("*.toml"))
    assert len(files) >= 3
    for f in files:
        cfg = resolve(config_file=f)
        assert cfg.run.out_dir.startswith("out/")
    drop = resolve(config_file=CONFIG_DIR / "shakespeare-char-drop-muon-cpu.toml")
    assert drop.optim.name == "drop-muon" and drop.optim.cutoff_sampler == "epoch-shift"
    assert resolve(config_file=CONFIG_DIR / "shakespeare-char-wsd-s-cpu.toml").schedule.name == "wsd-s"


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--optim.name", "adamm"], ["optim.name", "'adamw'", "adamw, muon, drop-muon"]),
        (["--optim.name", "dropmuon"], ["optim.name", "did you mean 'drop-muon'"]),
        (["--optim.cutoff_sampler", "epoch_shift"], ["did you mean 'epoch-shift'"]),
        (["--schedule.name", "wsd_s"], ["did you mean 'wsd-s'"]),
        (["--bogus"], ["unknown option '--bogus'", "--help"]),
        (["--run.max-iter", "5"], ["unknown option", "did you mean '--run.max-iters'"]),
        (["--preset", "shakespeare-cpu"], ["unknown preset", "shakespeare-char-cpu"]),
        (["--optim.lrr", "1e-3"], ["unknown option", "'--optim.lr'"]),
        (["--optimizer.lr", "1e-3"], ["unknown option"]),
        (["--model.n_layer", "four"], ["model.n_layer", "expected int"]),
        (["--model.norm", "batchnorm"], ["model.norm", "layernorm, rmsnorm, powernorm"]),
        (["--run.progress", "maybe"], ["run.progress", "expected bool"]),
    ],
)
def test_bad_cli_input_is_named(argv, words, capsys):
    assert T.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m scale.train: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)


def test_print_config_round_trip_with_overrides(tmp_path, capsys):
    argv = ["--preset", "shakespeare-char-cpu", "--optim.name", "drop-muon", "--run.no-progress",
            "--schedule.total", "none", "--model.qk_norm"]
    assert T.main([*argv, "--print-config"]) == 0
    text = capsys.readouterr().out
    assert 'name = "drop-muon"' in text and "progress = false" in text and "qk_norm = true" in text
    path = tmp_path / "printed.toml"
    path.write_text(text)
    cfg = resolve(config_file=path)
    assert cfg == parse_cli(argv)[0]
    assert cfg.optim.name == "drop-muon" and cfg.run.progress is False and cfg.model.qk_norm is True


def test_bad_toml_is_named(tmp_path):
    bad_key = tmp_path / "k.toml"
    bad_key.write_text("[optim]\nlearning_rate = 1e-3\n")
    with pytest.raises(ValueError, match="optim.learning_rate"):
        resolve(config_file=bad_key)
    bad_section = tmp_path / "s.toml"
    bad_section.write_text("[optimizer]\nlr = 1e-3\n")
    with pytest.raises(ValueError, match=r"did you mean 'optim'"):
        resolve(config_file=bad_section)
    with pytest.raises(ValueError, match="not valid TOML"):
        (tmp_path / "x.toml").write_text("[optim\n")
        resolve(config_file=tmp_path / "x.toml")


def test_bad_run_values(corpus, tmp_path):
    with pytest.raises(ValueError, match="optim.lr must be a finite number > 0"):
        T.train(tiny(corpus, tmp_path / "a", optim__lr=0.0))
    with pytest.raises(ValueError, match="run.max_iters"):
        T.train(tiny(corpus, tmp_path / "b", run__max_iters=0))
    with pytest.raises(ValueError, match="model.vocab_size=10 is smaller than the corpus vocabulary"):
        T.train(tiny(corpus, tmp_path / "c", model__vocab_size=10))
    with pytest.raises(ValueError, match="n_embd"):
        T.train(tiny(corpus, tmp_path / "d", model__n_head=3))


def test_too_short_corpus(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("to be or not to be, that is the question")  # 41 chars: 36 / 5 split
    argv = tiny_argv(str(short), tmp_path / "out", run__max_iters=2)
    assert T.main(argv) == 2
    assert "too short for one context window" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ training
@pytest.mark.parametrize("name", ["adamw", "muon", "drop-muon"])
def test_each_optimizer_lowers_the_loss(name, corpus, tmp_path):
    cfg = tiny(corpus, tmp_path, optim__name=name, run__max_iters=30, run__eval_interval=30,
               optim__ns_dtype="float32")
    summary = T.train(cfg)
    records = read_metrics(summary["metrics_path"])
    header = records[0]
    assert header["kind"] == "header" and header["config"] == summary["config"]
    assert header["corpus"]["n_tokens"] == 40_000 and header["config"]["model"]["vocab_size"] > 0
    evals = [r for r in records if r["kind"] == "eval"]
    assert [e["step"] for e in evals] == [0, 30]
    initial, final = evals[0]["val_loss"], evals[-1]["val_loss"]
    # at initialization the loss is about log(vocab); 30 steps must take it well below
    assert abs(initial - math.log(header["config"]["model"]["vocab_size"])) < 0.2
    assert final < initial - 0.3, (initial, final)
    assert summary["final_val_loss"] == final and summary["best_val_loss"] == min(e["val_loss"] for e in evals)
    assert all(math.isclose(e["val_ppl"], math.exp(e["val_loss"])) for e in evals)
    train_lines = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_lines] == list(range(1, 31))
    keys = {"step", "loss", "ce", "z", "lr", "tokens", "tokens_per_s", "wall_s", "grad_norm",
            "layers_backpropagated"}
    assert all(keys <= r.keys() for r in train_lines)
    assert train_lines[-1]["tokens"] == 30 * 8 * 16 == summary["tokens"]
    ckpt = load_checkpoint(summary["checkpoint_path"])
    assert ckpt["config"] == summary["config"] and ckpt["step"] == 30
    # the schedule multiplies every group's peak lr (cosine to 0.1 after a warmup of 2 steps)
    assert train_lines[0]["lr_mult"] == 0.0 and train_lines[1]["lr_mult"] == 0.5  # warmup s / 2
    assert train_lines[2]["lr_mult"] == 1.0 and 0.1 < train_lines[-1]["lr_mult"] < 0.11
    assert math.isclose(train_lines[2]["lr"], cfg.optim.muon_lr if name != "adamw" else cfg.optim.lr)


def test_tiny_learning_rate_does_not_lower_the_loss(corpus, tmp_path):
    """The twin of the test above: with a negligible step the same check fails, so it measures training."""
    summary = T.train(tiny(corpus, tmp_path, run__max_iters=30, run__eval_interval=30, optim__lr=1e-9))
    evals = [r for r in read_metrics(summary["metrics_path"]) if r["kind"] == "eval"]
    assert not evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.3


@pytest.mark.parametrize(
    "flags",
    [
        {"model__z_loss": 1e-2},
        {"model__qk_norm": True, "model__norm": "rmsnorm"},
        {"model__head": "harmonic"},
        {"model__norm": "powernorm", "model__tie_weights": False},
        {"run__dtype": "bfloat16", "optim__name": "muon"},
        {"schedule__name": "wsd", "schedule__decay": "sqrt", "schedule__decay_fraction": 0.5},
    ],
    ids=["z_loss", "qk_norm-rmsnorm", "harmonic", "powernorm-untied", "bf16-autocast", "wsd"],
)
def test_ablation_flags_train(flags, corpus, tmp_path):
    summary = T.train(tiny(corpus, tmp_path, run__max_iters=6, **flags))
    lines = [r for r in read_metrics(summary["metrics_path"]) if r["kind"] == "train"]
    assert all(math.isfinite(r["loss"]) for r in lines) and math.isfinite(summary["final_val_loss"])
    for r in lines:  # the logged objective is cross-entropy plus the z-loss term
        assert math.isclose(r["loss"], r["ce"] + r["z"], rel_tol=1e-5, abs_tol=1e-5)
        assert (r["z"] > 0) == ("model__z_loss" in flags)


def _drop_muon_run(corpus, out_dir, **extra) -> tuple[list[int], int, list[str]]:
    """A 16-step Drop-Muon run on 3 blocks: (cutoffs, frozen parameters that had a gradient, violations), a
    violation being a block below the cutoff that changed in a step or a block at or above it whose matrices
    did not."""
    cfg = tiny(corpus, out_dir, optim__name="drop-muon", run__max_iters=16, model__n_layer=3,
               optim__ns_dtype="float32", **extra)
    snapshots = {}

    def snap(step, model, record):
        snapshots[step] = (record["cutoff"], [[p.detach().clone() for p in blk.parameters()] for blk in model.blocks])

    summary = T.train(cfg, step_callback=snap)
    records = [r for r in read_metrics(summary["metrics_path"]) if r["kind"] == "train"]
    cutoffs = [r["cutoff"] for r in records]
    assert [r["layers_backpropagated"] for r in records] == [3 - c for c in cutoffs]
    log = load_checkpoint(summary["checkpoint_path"])["optim"][0]["state"]["drop_muon"]
    assert log["cutoff_history"] == cutoffs
    violations = []
    for step in range(2, 17):
        cutoff, params = snapshots[step]
        prev = snapshots[step - 1][1]
        for j in range(3):
            if j < cutoff and not all(torch.equal(a, b) for a, b in zip(params[j], prev[j])):
                violations.append(f"block {j} changed at step {step} with cutoff {cutoff}")
            if j >= cutoff and all(torch.equal(a, b) for a, b in zip(params[j], prev[j]) if a.ndim >= 2):
                violations.append(f"block {j} did not move at step {step} with cutoff {cutoff}")
    return cutoffs, log["frozen_with_grad"], violations


def test_drop_muon_truncates_backward_and_freezes_lower_blocks(corpus, tmp_path):
    cutoffs, frozen_with_grad, violations = _drop_muon_run(corpus, tmp_path)
    assert len(set(cutoffs)) > 1  # uniform over {0, 1, 2}: 16 draws are not all equal
    assert frozen_with_grad == 0  # no frozen parameter ever had a gradient: the backward pass stopped
    assert violations == []  # weights, norms and biases below the cutoff untouched (AdamW part included)


def test_full_backward_would_be_caught(corpus, tmp_path, monkeypatch):
    """The twin: a forward pass that ignores the cutoff (full backward, updates merely skipped for the frozen
    matrices) gives the frozen blocks gradients, and AdamW then moves their norm gains and biases."""
    original = T.GPT.forward
    monkeypatch.setattr(T.GPT, "forward", lambda self, idx, targets=None, *, cutoff=0: original(self, idx, targets))
    cutoffs, frozen_with_grad, violations = _drop_muon_run(corpus, tmp_path)
    assert any(c > 0 for c in cutoffs)
    assert frozen_with_grad > 0 and any("changed" in v for v in violations)


def test_cutoff_schedules(corpus, tmp_path):
    for kind in ("epoch-shift", "linear-shift"):
        cfg = tiny(corpus, tmp_path / kind, optim__name="drop-muon", optim__cutoff_sampler=kind, model__n_layer=3,
                   run__max_iters=4)
        model = T.GPT(dataclasses.replace(cfg.model, vocab_size=65))
        opts, dm = T.build_optimizers(model, cfg, local_batch_size=8)
        assert dm is opts[0] and len(opts) == 2
        early, late = dm.sampler.probabilities(0.0), dm.sampler.probabilities(1.0)
        assert early[0] > late[0] and early[-1] < late[-1]  # cutoffs move from shallow to deep
        assert T.train(cfg)["steps"] == 4


def test_injected_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(corpus, tmp_path):
    cfg = tiny(corpus, tmp_path, run__max_iters=8, run__ckpt_interval=2)

    def poison(step, model, record):
        if step == 3:
            with torch.no_grad():
                model.ln_f.weight.fill_(float("nan"))

    with pytest.raises(T.NonFiniteLossError, match="at step 4") as info:
        T.train(cfg, step_callback=poison)
    assert info.value.step == 4 and math.isnan(info.value.value)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2]
    good = load_checkpoint(tmp_path / "ckpt_0000002.pt")
    assert all(torch.isfinite(t).all() for t in good["model"].values())
    assert info.value.checkpoint.endswith("ckpt_0000002.pt")
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert records[-1]["kind"] == "error" and records[-1]["step"] == 4
    assert max(r["step"] for r in records if r["kind"] == "train") == 3


def test_huge_learning_rate_exits_nonzero(corpus, tmp_path, capsys):
    code = T.main(tiny_argv(corpus, tmp_path, optim__lr=1e30, optim__grad_clip=0, run__max_iters=6))
    assert code == 3
    err = capsys.readouterr().err
    assert "non-finite" in err and "at step " in err


# ------------------------------------------------------------------------------------------ checkpoints
def test_checkpoint_contents_load_weights_only(corpus, tmp_path, capsys):
    summary = T.train(tiny(corpus, tmp_path, optim__name="muon", run__max_iters=4, run__plot=True,
                           run__verbose=True))
    out = capsys.readouterr().out
    assert "[model]" in out and 'name = "muon"' in out  # the resolved configuration is printed
    assert out.strip().splitlines()[-1].startswith("done: 4 steps")  # and a one-line summary
    assert Path(summary["plot_path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = torch.load(summary["checkpoint_path"], weights_only=True)
    for key in ("model", "optim", "sched", "step", "rng", "data_sampler", "tokens_seen", "best_val_loss",
                "config", "optlib_version"):
        assert key in ckpt
    rng = ckpt["rng"][0]
    assert set(rng) == {"torch", "numpy", "python", "cuda"}
    assert ckpt["data_sampler"]["batches_drawn"] == 4 and ckpt["tokens_seen"] == 4 * 8 * 16
    assert ckpt["optlib_version"] == __import__("optlib").__version__
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left


def test_corrupt_checkpoint_is_refused_and_left_untouched(corpus, tmp_path, capsys):
    T.train(tiny(corpus, tmp_path, run__max_iters=4, run__ckpt_interval=2))
    latest = list_checkpoints(tmp_path)[-1][1]
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])  # a torn write
    torn = latest.read_bytes()
    with pytest.raises(CheckpointError, match="damaged torch.save archive"):
        T.train(tiny(corpus, tmp_path, run__max_iters=8, run__resume=True))
    assert latest.read_bytes() == torn
    assert T.main(tiny_argv(corpus, tmp_path, run__max_iters=8, run__resume=True)) == 2
    assert "corrupt" in capsys.readouterr().err
    assert latest.read_bytes() == torn and [s for s, _ in list_checkpoints(tmp_path)] == [2, 4]


def _foreign_files(tmp_path) -> dict[str, bytes]:
    """Files a user might find (or put) under a checkpoint name, none written by scale.train."""
    import fractions

    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    torch.save({"step": 10, "model": {}}, tmp_path / "dict.pt")
    torch.save(fractions.Fraction(1, 3), tmp_path / "object.pt")
    return {
        "empty": b"",
        "text": b"step 10: loss 1.23\n",
        "pickle": pickle.dumps({"a": fractions.Fraction(1, 3)}),
        "torch-object": (tmp_path / "object.pt").read_bytes(),
        "torch-tensor": (tmp_path / "tensor.pt").read_bytes(),
        "torch-dict": (tmp_path / "dict.pt").read_bytes(),
    }


_FOREIGN_WORDS = {
    "empty": "is empty (0 bytes)",
    "text": "not in torch.save's format",
    "pickle": "pickle of Python objects",
    "torch-object": "pickle of Python objects",
    "torch-tensor": "holds a Tensor",
    "torch-dict": "holds a dict without format",
}


@pytest.mark.parametrize("kind", list(_FOREIGN_WORDS))
def test_empty_or_foreign_checkpoint_is_refused_with_a_sentence_of_ours(kind, corpus, tmp_path, capsys):
    data = _foreign_files(tmp_path)[kind]
    out = tmp_path / "out"
    out.mkdir()
    bad = out / "ckpt_10.pt"
    bad.write_bytes(data)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    message = str(info.value)
    assert _FOREIGN_WORDS[kind] in message and str(bad) in message
    assert message.endswith("instead of --run.resume true.")  # whole, with what to do
    assert "--run.overwrite true" in message and "delete it" in message
    assert "weights_only" not in message and "Weights only" not in message  # not torch's advice
    # the command line: one error line, exit status 2, the file untouched
    assert T.main(tiny_argv(corpus, out, run__max_iters=12, run__resume=True)) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m scale.train: error: cannot resume from checkpoint") and err.count("\n") == 1
    assert _FOREIGN_WORDS[kind] in err and "Traceback" not in err
    assert bad.read_bytes() == data


def test_bad_out_dir_is_an_error_line(corpus, tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    cases = [
        (a_file, "is a file, not a folder"),
        (a_file / "run", f"cannot be created because {str(a_file)!r} is a file"),
    ]
    for out_dir, words in cases:
        assert T.main(tiny_argv(corpus, out_dir, run__max_iters=2)) == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m scale.train: error: run.out_dir") and words in err, err
        assert "Traceback" not in err
    assert a_file.read_text() == "not a folder"
    # a folder this process may not write into (simulated: the tests run as root, whom chmod does not stop)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == locked
                        else real_access(path, mode, **kw))
    for out_dir, where in ((locked, "it is not writable"), (locked / "a" / "b", f"folder {str(locked)!r} is not")):
        assert T.main(tiny_argv(corpus, out_dir, run__max_iters=2)) == 2
        err = capsys.readouterr().err
        assert "cannot be written" in err and where in err, err
    assert list(locked.iterdir()) == []


def test_short_run_of_a_preset_shortens_its_warmup(corpus, tmp_path, capsys):
    """``--preset shakespeare-char-cpu --run.max_iters 60``: the preset's 100 warmup steps do not fit a 60-step
    cosine; the run goes ahead with a warmup of 6 (a tenth) and says so. The output folder's missing parents
    are created."""
    out = tmp_path / "new" / "nested" / "run"
    argv = ["--preset", "shakespeare-char-cpu", "--run.max_iters", "60", "--run.out_dir", str(out),
            "--data.corpus", corpus, "--model.n_layer", "1", "--model.n_embd", "32", "--model.block_size", "16",
            "--run.eval_iters", "2", "--run.log_interval", "1", "--run.no-progress", "--run.no-plot",
            "--run.no-verbose"]
    assert T.main(argv) == 0
    err = capsys.readouterr().err
    assert "warning: schedule.warmup=100 does not fit a cosine schedule of 60 steps" in err
    assert "using a warmup of 6 steps" in err and "--schedule.warmup" in err
    mult = lr_mults(out / "metrics.jsonl")
    assert len(mult) == 60 and mult[1] == 0.0 and math.isclose(mult[4], 0.5) and mult[7] == 1.0
    header = read_metrics(out / "metrics.jsonl")[0]
    assert header["schedule"]["params"]["warmup"] == 6 and header["config"]["schedule"]["warmup"] == 100
    # a warmup that fits is left alone: no warning
    assert T.main([*argv[:5], str(tmp_path / "fits"), *argv[6:], "--schedule.warmup", "5"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_resume_with_a_larger_max_iters_keeps_the_schedule_horizon(corpus, tmp_path, capsys):
    """Resuming a finished 8-step cosine run with run.max_iters=12 must not raise the learning rate again: the
    extra steps run at the schedule's final value (min_ratio 0.1), with a warning naming --schedule.total. An
    explicit --schedule.total on resume stretches the schedule from the current step."""
    T.train(tiny(corpus, tmp_path / "kept", run__max_iters=8, run__eval_interval=0))
    T.train(tiny(corpus, tmp_path / "kept", run__max_iters=12, run__eval_interval=0, run__resume=True))
    err = capsys.readouterr().err
    assert "past the schedule's horizon of 8 steps" in err and "--schedule.total" in err
    mult = lr_mults(tmp_path / "kept" / "metrics.jsonl")
    assert sorted(mult) == list(range(1, 13))
    assert all(math.isclose(mult[k], 0.1) for k in range(9, 13)), mult  # not back up
    # a second resume still uses the first run's horizon
    T.train(tiny(corpus, tmp_path / "kept", run__max_iters=14, run__eval_interval=0, run__resume=True))
    assert all(math.isclose(v, 0.1) for k, v in lr_mults(tmp_path / "kept" / "metrics.jsonl").items() if k > 8)
    ckpt = load_checkpoint(tmp_path / "kept" / "ckpt_0000014.pt")
    assert ckpt["schedule"]["params"]["total"] == 8

    T.train(tiny(corpus, tmp_path / "stretched", run__max_iters=8, run__eval_interval=0))
    T.train(tiny(corpus, tmp_path / "stretched", run__max_iters=12, run__eval_interval=0, run__resume=True,
                 schedule__total=12))
    assert "changes the schedule's horizon from 8 steps" in capsys.readouterr().err
    mult = lr_mults(tmp_path / "stretched" / "metrics.jsonl")
    longer = cosine(12, 2, 0.1)
    assert all(math.isclose(mult[k], longer(k - 1)) for k in range(9, 13)) and mult[9] > 0.1
    # the learning rate the optimizer used follows the new schedule from the first resumed step on
    lr = {r["step"]: r["lr"] for r in read_metrics(tmp_path / "stretched" / "metrics.jsonl") if r["kind"] == "train"}
    assert all(math.isclose(lr[k], 1e-3 * longer(k - 1)) for k in range(9, 13)), lr


def test_checkpoint_with_the_old_method_spellings_resumes(corpus, tmp_path, monkeypatch):
    """A checkpoint written before the hyphen rename stores optim.name 'dropmuon' and cutoff sampler
    'epoch_shift': it resumes under the new names (and would be refused without the translation)."""
    T.train(tiny(corpus, tmp_path, optim__name="drop-muon", optim__cutoff_sampler="epoch-shift", run__max_iters=4,
                 optim__ns_dtype="float32"))
    path = tmp_path / "ckpt_0000004.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["optim"].update(name="dropmuon", cutoff_sampler="epoch_shift")
    del ckpt["schedule"]  # nor did it store the schedule
    torch.save(ckpt, path)
    resume = tiny(corpus, tmp_path, optim__name="drop-muon", optim__cutoff_sampler="epoch-shift", run__max_iters=6,
                  optim__ns_dtype="float32", run__resume=True)
    with monkeypatch.context() as m:
        m.setattr(T, "upgrade_config_dict", lambda d: d)
        with pytest.raises(CheckpointError, match="optim.name: checkpoint 'dropmuon', now 'drop-muon'"):
            T.train(resume)
    assert T.train(resume)["steps"] == 6


def test_resume_with_another_config_is_refused(corpus, tmp_path):
    T.train(tiny(corpus, tmp_path, run__max_iters=4))
    before = (tmp_path / "ckpt_0000004.pt").read_bytes()
    with pytest.raises(CheckpointError, match=r"model.n_embd: checkpoint 32, now 64"):
        T.train(tiny(corpus, tmp_path, run__max_iters=8, run__resume=True, model__n_embd=64))
    with pytest.raises(CheckpointError, match=r"optim.name: checkpoint 'adamw', now 'muon'"):
        T.train(tiny(corpus, tmp_path, run__max_iters=8, run__resume=True, optim__name="muon"))
    assert (tmp_path / "ckpt_0000004.pt").read_bytes() == before
    # a run-length field may change: the run continues to the new length
    summary = T.train(tiny(corpus, tmp_path, run__max_iters=6, run__resume=True))
    assert summary["steps"] == 6 and summary["resumed_from"].endswith("ckpt_0000004.pt")


def test_fresh_run_does_not_clobber_checkpoints(corpus, tmp_path):
    T.train(tiny(corpus, tmp_path, run__max_iters=3))
    with pytest.raises(ValueError, match="already holds checkpoints"):
        T.train(tiny(corpus, tmp_path, run__max_iters=3))
    T.train(tiny(corpus, tmp_path, run__max_iters=1, run__overwrite=True, schedule__name="constant"))
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1]


def test_keep_checkpoints_prunes_but_keeps_wsd_s_decay_ends(corpus, tmp_path):
    cfg = tiny(corpus, tmp_path, run__max_iters=12, run__ckpt_interval=1, run__keep_checkpoints=2,
               schedule__name="wsd-s", schedule__cycle=4, schedule__decay_fraction=0.5, schedule__warmup=1)
    T.train(cfg)
    steps = [s for s, _ in list_checkpoints(tmp_path)]
    assert steps == [4, 8, 10, 11, 12]  # decay ends 4, 8, 12 always kept, and the 2 newest others
    evals = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "eval"]
    assert {4, 8, 12} <= set(evals)
    lr = {r["step"]: r["lr_mult"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "train"}
    assert lr[5] == 1.0 and lr[9] == 1.0 and lr[4] < 1.0  # back to the peak after each decay (WSD-S)


# ------------------------------------------------------------------------------------------ exact resume
_KILL_RUNNER = """
import sys, time
from scale.train import COMMAND, train
half = int(sys.argv[1])
config, _ = COMMAND.parse(sys.argv[2:])
# after the checkpoint at `half`, each step waits so that the SIGKILL lands mid-run
train(config, step_callback=lambda step, model, record: time.sleep(0.2) if step > half else None)
"""


@pytest.mark.parametrize("name", ["adamw", "muon", "drop-muon"])
def test_kill_9_then_resume_is_bitwise_identical(name, corpus, tmp_path):
    n, half = 12, 6
    common = dict(optim__name=name, run__max_iters=n, run__ckpt_interval=half, run__eval_interval=4,
                  run__keep_checkpoints=0, model__dropout=0.1)
    straight = T.train(tiny(corpus, tmp_path / "straight", **common))

    out = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", _KILL_RUNNER, str(half), *tiny_argv(corpus, out, **common)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = out / f"ckpt_{half:07d}.pt"

    def past_checkpoint() -> bool:  # the checkpoint exists and the run has logged a later step
        return target.exists() and any(r.get("step", 0) > half for r in read_metrics(out / "metrics.jsonl"))

    deadline = time.monotonic() + 120
    while not past_checkpoint() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert [s for s, _ in list_checkpoints(out)] == [half]  # killed before the end
    assert max(r.get("step", 0) for r in read_metrics(out / "metrics.jsonl")) > half  # it went past the checkpoint

    resumed = T.train(tiny(corpus, out, run__resume=True, **common))
    assert resumed["resumed_from"].endswith(target.name) and resumed["steps"] == n
    a, b = load_checkpoint(straight["checkpoint_path"]), load_checkpoint(resumed["checkpoint_path"])
    assert tensors_equal(a["model"], b["model"])  # bitwise-identical parameters
    assert tensors_equal(a["optim"], b["optim"]) and tensors_equal(a["data_sampler"], b["data_sampler"])
    assert losses(straight["metrics_path"]) == losses(resumed["metrics_path"])  # identical loss log
    assert len(losses(resumed["metrics_path"])) == n + 4  # 12 train lines, evals at 0, 4, 8, 12


def test_resume_without_the_rng_state_would_differ(corpus, tmp_path, monkeypatch):
    """The twin of the kill -9 test: restoring everything but the random generators (dropout) changes the
    continuation, so the identical loss log above really depends on the saved RNG states."""
    common = dict(run__max_iters=8, run__ckpt_interval=4, run__keep_checkpoints=0, model__dropout=0.1)
    straight = T.train(tiny(corpus, tmp_path / "a", **common))
    T.train(tiny(corpus, tmp_path / "b", **common), step_callback=lambda step, m, r: step == 4)
    monkeypatch.setattr(T, "restore_rng", lambda state: None)
    resumed = T.train(tiny(corpus, tmp_path / "b", run__resume=True, **common))
    assert losses(straight["metrics_path"])[:5] == losses(resumed["metrics_path"])[:5]  # steps 0..4 identical
    assert losses(straight["metrics_path"]) != losses(resumed["metrics_path"])


# ------------------------------------------------------------------------------------------ drift options
MICRO = dict(model__n_layer=1, model__n_embd=8, model__n_head=2, data__batch_size=4, run__eval_interval=0)


def test_lambda_max_is_logged_and_matches_a_dense_eigvalsh(corpus, tmp_path):
    """run.lambda_max_every=2 writes sharpness lines at steps 0, 2, 4; the last equals the largest eigenvalue of
    the dense Hessian of the final model's objective on the same held batch (torch.autograd.functional.hessian
    and eigvalsh, float64), within 1e-3 relative (40 Lanczos steps, float32 products). Would catch: the value
    logged at step 0 is that of the initial model and misses the final one by more than the tolerance."""
    summary = T.train(tiny(corpus, tmp_path, optim__name="sgd", optim__lr=0.5, run__max_iters=4,
                           run__lambda_max_every=2, run__lambda_max_iters=40, run__plot=True, **MICRO))
    lines = [r for r in read_metrics(summary["metrics_path"]) if r["kind"] == "sharpness"]
    assert [r["step"] for r in lines] == [0, 2, 4]
    assert all(math.isclose(r["edge_ratio"], r["lr"] * r["lambda_max"] / 2) for r in lines)
    assert Path(summary["plot_path"]).stat().st_size > 0

    config = config_from_dict(summary["config"])
    model = GPT(config.model)
    model.load_state_dict(load_checkpoint(summary["checkpoint_path"])["model"])
    model = model.double().eval()
    data = load_corpus(corpus, level=config.data.level, val_fraction=config.data.val_fraction,
                       block_size=config.model.block_size)
    x, y = eval_windows(data.train, config.model.block_size, config.data.batch_size, 1)[0]
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def objective(flat):
        params, off = {}, 0
        for n, shape in zip(names, shapes):
            params[n] = flat[off:off + shape.numel()].reshape(shape)
            off += shape.numel()
        return torch.func.functional_call(model, params, (x, y))[1]

    with sdpa_kernel(SDPBackend.MATH):
        dense = torch.autograd.functional.hessian(objective, flat0)
    top = float(torch.linalg.eigvalsh(dense)[-1])
    assert lines[-1]["lambda_max"] == pytest.approx(top, rel=1e-3)
    assert lines[0]["lambda_max"] != pytest.approx(top, rel=1e-3)


def test_dal_schedule_sets_the_rate_and_resumes_exactly(corpus, tmp_path):
    """schedule.name='dal' with SGD: every logged lr is min(2 / (||Hg||/||g||), dal_max_lr) times the warmup
    multiplier; a run stopped at step 4 and resumed ends bit for bit where the straight run ends (parameters,
    loss log and DAL state)."""
    common = dict(optim__name="sgd", optim__lr=0.5, schedule__name="dal", schedule__dal_max_lr=2.0,
                  run__max_iters=8, run__ckpt_interval=4, run__keep_checkpoints=0, model__dropout=0.1, **MICRO)
    straight = T.train(tiny(corpus, tmp_path / "a", **common))
    lines = [r for r in read_metrics(straight["metrics_path"]) if r["kind"] == "train"]
    for r in lines:
        assert r["lr"] == pytest.approx(min(2 / r["dal_curvature"], 2.0) * r["lr_mult"], rel=1e-9)
    assert len({round(r["lr"], 6) for r in lines[2:]}) > 3  # the rate moves from step to step
    T.train(tiny(corpus, tmp_path / "b", **common), step_callback=lambda step, m, r: step == 4)
    resumed = T.train(tiny(corpus, tmp_path / "b", run__resume=True, **common))
    a, b = load_checkpoint(straight["checkpoint_path"]), load_checkpoint(resumed["checkpoint_path"])
    assert tensors_equal(a["model"], b["model"]) and a["dal"] == b["dal"]
    # the stopped run evaluated at step 4 on its way out; the training lines are the same
    assert [e for e in losses(straight["metrics_path"]) if e[0] == "train"] == \
        [e for e in losses(resumed["metrics_path"]) if e[0] == "train"]


def test_dal_bad_settings_are_named(corpus, tmp_path):
    with pytest.raises(ValueError, match="schedule.name='dal' needs one optimizer.*drop-muon"):
        T.train(tiny(corpus, tmp_path, optim__name="drop-muon", schedule__name="dal", run__max_iters=2))
    with pytest.raises(ValueError, match="schedule.dal_power must be a finite number >= 0"):
        T.train(tiny(corpus, tmp_path, schedule__name="dal", schedule__dal_power=-1.0, run__max_iters=2))
    with pytest.raises(ValueError, match="run.lambda_max_every must be >= 0"):
        T.train(tiny(corpus, tmp_path, run__lambda_max_every=-3, run__max_iters=2))
