"""What a training user expects day to day: gradient accumulation, fine-tuning from a checkpoint, the best
checkpoint, TensorBoard event files, and text samples (``scale.sample``).

Gradient accumulation: a step over ``data.batch_size`` rows in ``k`` micro-batches, each loss divided by ``k``,
sums to the gradient of the whole batch, so the parameters after N steps equal those of ``k = 1`` up to the
order of floating-point summation. Tolerance: 1e-5 absolute on every parameter after 6 steps (float32; the
measured gaps are about 1e-7 for SGD and AdamW and 6e-7 for Muon with float32 Newton–Schulz). The "would
catch" twin: a dropped 1/k makes SGD's step k times larger, which is what SGD at k times the learning rate does;
that run ends far outside the tolerance.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scale import sample as S
from scale import train as T
from scale.checkpoint import BEST_NAME, list_checkpoints, load_checkpoint
from scale.config import resolve
from scale.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-5

TINY = {
    "model.n_layer": 2, "model.n_head": 2, "model.n_embd": 32, "model.block_size": 16,
    "data.batch_size": 8, "run.eval_iters": 2, "run.log_interval": 1, "run.eval_interval": 3,
    "run.max_iters": 6, "schedule.warmup": 0, "run.threads": 1, "optim.ns_dtype": "float32",
    "run.progress": False, "run.plot": False, "run.verbose": False,
}


def tiny(corpus: str, out_dir, **extra):
    o = dict(TINY)
    o.update({"data.corpus": corpus, "run.out_dir": str(out_dir)})
    o.update({k.replace("__", "."): v for k, v in extra.items()})
    return resolve(overrides=o)


def params_gap(a: str, b: str) -> float:
    x, y = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    return max(float((x[k] - y[k]).abs().max()) for k in x)


# ------------------------------------------------------------------------------------ gradient accumulation
@pytest.mark.parametrize("name", ["sgd", "adamw", "muon"])
def test_accumulated_micro_batches_equal_the_whole_batch(name, corpus, tmp_path):
    lr = {"sgd": 0.5, "adamw": 2e-3, "muon": 2e-3}[name]
    runs = {k: T.train(tiny(corpus, tmp_path / f"k{k}", optim__name=name, optim__lr=lr, optim__grad_clip=0.0,
                            run__grad_accum=k)) for k in (1, 2, 4)}
    for k in (2, 4):
        assert params_gap(runs[1]["checkpoint_path"], runs[k]["checkpoint_path"]) <= TOL
        assert runs[k]["tokens"] == runs[1]["tokens"] == 6 * 8 * 16  # tokens counted per optimizer step
        a = [r["loss"] for r in read_metrics(runs[1]["metrics_path"]) if r.get("kind") == "train"]
        b = [r["loss"] for r in read_metrics(runs[k]["metrics_path"]) if r.get("kind") == "train"]
        assert max(abs(u - v) for u, v in zip(a, b)) <= TOL
    if name == "sgd":  # a dropped 1/k (k = 2) would be SGD at twice the rate: far outside the tolerance
        twin = T.train(tiny(corpus, tmp_path / "twin", optim__name="sgd", optim__lr=2 * lr, optim__grad_clip=0.0))
        assert params_gap(runs[1]["checkpoint_path"], twin["checkpoint_path"]) > 100 * TOL


@pytest.mark.parametrize("extra, words", [
    ({"run.grad_accum": 3}, "run.grad_accum=3 does not divide the 8 rows"),
    ({"run.grad_accum": 0}, "run.grad_accum must be >= 1"),
    ({"run.grad_accum": 2, "schedule.name": "dal", "optim.name": "sgd"}, "use run.grad_accum=1"),
    ({"run.sample_tokens": -1}, "run.sample_tokens must be >= 0"),
])
def test_bad_accumulation_and_sampling_settings_are_named(extra, words, corpus, tmp_path):
    cfg = tiny(corpus, tmp_path, **{k.replace(".", "__"): v for k, v in extra.items()})
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        T.train(cfg)


# ------------------------------------------------------------------------------------ fine-tuning, best
def test_init_from_takes_the_weights_only(corpus, tmp_path):
    base = T.train(tiny(corpus, tmp_path / "base"))
    tuned = T.train(tiny(corpus, tmp_path / "tuned", run__init_from=str(tmp_path / "base"), optim__lr=1e-4))
    first_eval = next(r for r in read_metrics(tuned["metrics_path"]) if r.get("kind") == "eval")
    assert first_eval["step"] == 0
    assert first_eval["val_loss"] == pytest.approx(base["final_val_loss"], abs=1e-6)  # same weights, same windows
    assert tuned["steps"] == 6  # the step count starts fresh
    header = read_metrics(tuned["metrics_path"])[0]
    assert header["init_from"] == base["checkpoint_path"]
    # a fresh model would start at the untrained loss, far above
    fresh = T.train(tiny(corpus, tmp_path / "fresh", optim__lr=1e-4))
    fresh_first = next(r for r in read_metrics(fresh["metrics_path"]) if r.get("kind") == "eval")
    assert fresh_first["val_loss"] > first_eval["val_loss"] + 0.1


def test_init_from_refuses_another_model_and_missing_files(corpus, tmp_path):
    T.train(tiny(corpus, tmp_path / "base"))
    with pytest.raises(ValueError, match=r"model differs from this run's \(model.n_embd: checkpoint 32, now 48"):
        T.train(tiny(corpus, tmp_path / "other", model__n_embd=48, run__init_from=str(tmp_path / "base")))
    with pytest.raises(ValueError, match="does not exist"):
        T.train(tiny(corpus, tmp_path / "x", run__init_from=str(tmp_path / "nope.pt")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="folder without ckpt_"):
        T.train(tiny(corpus, tmp_path / "y", run__init_from=str(tmp_path / "empty")))


def test_keep_best_holds_the_lowest_validation_loss(corpus, tmp_path):
    # a learning rate that first helps and then overshoots, so the best evaluation is not the last
    out = tmp_path / "run"
    s = T.train(tiny(corpus, out, run__keep_best=True, run__eval_interval=1, run__max_iters=8, optim__lr=3e-2,
                     schedule__name="constant"))
    evals = [(r["val_loss"], r["step"]) for r in read_metrics(s["metrics_path"]) if r.get("kind") == "eval"]
    best_loss, best_step = min(evals)
    best = load_checkpoint(out / BEST_NAME)
    assert best["step"] == best_step and best["best_val_loss"] == pytest.approx(best_loss)
    assert BEST_NAME not in [p.name for _, p in list_checkpoints(out)]  # never a resume point
    # its weights give that validation loss
    model, _, _ = S.load_model(out / BEST_NAME)
    again = T.evaluate(model, T.eval_windows(T.load_corpus(str(corpus)).val, 16, 8, 2), torch.device("cpu"),
                       T.contextlib.nullcontext)
    assert again == pytest.approx(best_loss, abs=1e-6)


# ------------------------------------------------------------------------------------ TensorBoard, samples
def test_tensorboard_mirrors_the_metrics(corpus, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    s = T.train(tiny(corpus, tmp_path, run__tensorboard=True, run__sample_tokens=5))
    acc = EventAccumulator(str(tmp_path / T.TENSORBOARD_DIR))
    acc.Reload()
    tb = {e.step: e.value for e in acc.Scalars("train/loss")}
    js = {r["step"]: r["loss"] for r in read_metrics(s["metrics_path"]) if r.get("kind") == "train"}
    assert tb.keys() == js.keys() and all(tb[k] == pytest.approx(js[k], rel=1e-6) for k in js)
    assert {e.step for e in acc.Scalars("eval/val_loss")} == {0, 3, 6}


def test_samples_at_evaluation_are_logged(corpus, tmp_path):
    s = T.train(tiny(corpus, tmp_path, run__sample_tokens=12))
    samples = [r for r in read_metrics(s["metrics_path"]) if r.get("kind") == "sample"]
    assert [r["step"] for r in samples] == [0, 3, 6]
    assert all(len(r["text"]) == 12 for r in samples)


def test_sample_command_is_seeded_and_checks_its_input(corpus, tmp_path, capsys):
    T.train(tiny(corpus, tmp_path / "run"))
    cfg = S.SampleConfig(checkpoint=str(tmp_path / "run"), prompt="ROMEO:", tokens=30, seed=3, num_samples=2)
    a, b = S.sample_text(cfg)
    assert a.startswith("ROMEO:") and len(a) == len("ROMEO:") + 30 and a != b
    assert S.sample_text(cfg) == [a, b]  # the same seed, the same text
    assert S.main(["--checkpoint", str(tmp_path / "run"), "--tokens", "5", "--prompt", "A"]) == 0
    assert capsys.readouterr().out.startswith("A")
    with pytest.raises(ValueError, match="outside the corpus vocabulary"):
        S.sample_text(S.SampleConfig(checkpoint=str(tmp_path / "run"), prompt="\u00e9\u00e9"))
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        S.sample_text(S.SampleConfig(checkpoint=str(tmp_path / "run"), temperature=0.0))
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="cannot read checkpoint .*not a checkpoint of scale.train"):
        S.sample_text(S.SampleConfig(checkpoint=str(bad)))
    assert S.main(["--checkpoint", str(bad)]) == 2  # an error line, not a traceback
    assert "not a checkpoint of scale.train" in capsys.readouterr().err
    with pytest.raises(ValueError, match="run.init_from=.*not a checkpoint of scale.train"):
        T.train(tiny(corpus, tmp_path / "ft", run__init_from=str(bad)))
    assert S.main(["--tokens", "5", "--temprature", "1"]) == 2
    assert "did you mean '--temperature'" in capsys.readouterr().err


def test_top_one_sampling_is_greedy_decoding(corpus, tmp_path):
    T.train(tiny(corpus, tmp_path / "run"))
    model, _, _ = S.load_model(tmp_path / "run")
    idx = torch.tensor([[1, 2, 3]])
    out = S.generate(model, idx, 8, top_k=1, generator=torch.Generator().manual_seed(0))
    greedy = idx
    with torch.no_grad():
        for _ in range(8):
            greedy = torch.cat([greedy, model(greedy[:, -16:])[0][:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, greedy)
