"""Offline corpora and batch sampling (``scale.data``): nanoGPT's shakespeare split, tokenization round trips,
the streamed memmap cache against the in-memory path, exact sampler resume, the rank slicing that DDP
equality relies on, fixed evaluation windows, the stdlib corpus' provenance, and the error messages."""

from __future__ import annotations

import hashlib
import io
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

from scale import data
from scale.data import BatchSampler, eval_windows, load_corpus, open_token_file, write_token_file

SHIPPED = Path(data.__file__).resolve().parent / "corpora" / "tinyshakespeare.txt"


@pytest.fixture(scope="module")
def shakespeare():
    return load_corpus("shakespeare")


def positions(n: int) -> np.ndarray:
    """Tokens equal to their own position: a window's content reveals where it starts."""
    assert n <= 65535
    return np.arange(n, dtype=np.uint16)


# ------------------------------------------------------------------------------------------------ corpora
def test_shakespeare_split_matches_nanogpt(shakespeare):
    # nanoGPT data/shakespeare_char/prepare.py: 1,115,394 characters, 65 distinct, 1,003,854 / 111,540
    assert len(shakespeare.train) == 1_003_854
    assert len(shakespeare.val) == 111_540
    assert shakespeare.vocab_size == 65
    assert shakespeare.train.dtype == np.uint16
    raw = SHIPPED.read_bytes()
    assert shakespeare.meta["sha256"] == hashlib.sha256(raw).hexdigest()
    assert shakespeare.meta["n_tokens"] == 1_115_394
    assert shakespeare.meta["val_fraction"] == 0.1
    text = raw.decode("utf-8")
    assert shakespeare.vocab == sorted(set(text))
    # ids are vocabulary positions: compare with a dict lookup built here
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    assert shakespeare.train[:2000].tolist() == [stoi[c] for c in text[:2000]]
    assert shakespeare.val[-500:].tolist() == [stoi[c] for c in text[-500:]]


def test_encode_decode_round_trip(shakespeare, tmp_path):
    sample = SHIPPED.read_text(encoding="utf-8")[5000:9000]
    ids = shakespeare.encode(sample)
    assert ids.dtype == np.uint16 and shakespeare.decode(ids) == sample
    assert shakespeare.decode(torch.as_tensor(ids.astype(np.int64))) == sample
    with pytest.raises(ValueError, match="outside the vocabulary"):
        shakespeare.encode("naïve")

    text = "héllo wörld ✓ — ünïcödé\n" * 50
    path = tmp_path / "u.txt"
    path.write_text(text, encoding="utf-8")
    byte = load_corpus(str(path), level="byte")
    assert byte.vocab is None and byte.vocab_size == 256
    joined = np.concatenate([byte.train, byte.val])
    assert joined.tolist() == list(text.encode("utf-8"))
    assert byte.decode(byte.encode(text)) == text
    char = load_corpus(str(path), level="char")
    assert char.vocab == sorted(set(text))
    assert char.decode(np.concatenate([char.train, char.val])) == text


@pytest.mark.parametrize("level", ["char", "byte"])
def test_memmap_cache_equals_in_memory(tmp_path, monkeypatch, level):
    # small chunks force the streamed path to cut the text (and multi-byte characters' bytes) many times
    monkeypatch.setattr(data, "_CHUNK_CHARS", 997)
    text = SHIPPED.read_text(encoding="utf-8")[:60_000] + "ünïcödé ✓\n" * 300
    path = tmp_path / "mixed.txt"
    path.write_text(text, encoding="utf-8")
    mem = load_corpus(str(path), level=level, val_fraction=0.15)
    cached = load_corpus(str(path), level=level, val_fraction=0.15, cache_dir=tmp_path / "cache")
    assert isinstance(cached.train, np.memmap) and isinstance(cached.val, np.memmap)
    np.testing.assert_array_equal(cached.train, mem.train)
    np.testing.assert_array_equal(cached.val, mem.val)
    assert cached.vocab == mem.vocab
    assert cached.meta["sha256"] == mem.meta["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    # a second load reuses the token files instead of writing them again
    train_file = Path(cached.meta["cache"]) / "train.bin"
    stamp = train_file.stat().st_mtime_ns
    again = load_corpus(str(path), level=level, val_fraction=0.15, cache_dir=tmp_path / "cache")
    assert train_file.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.train, mem.train)


def test_cached_shakespeare_matches(tmp_path, shakespeare):
    cached = load_corpus("shakespeare", cache_dir=tmp_path)
    np.testing.assert_array_equal(cached.train, shakespeare.train)
    np.testing.assert_array_equal(cached.val, shakespeare.val)
    assert (len(cached.train), len(cached.val)) == (1_003_854, 111_540)


def test_token_files_round_trip(tmp_path):
    chunks = [np.array([0, 1, 65535], dtype=np.uint16), np.arange(10, dtype=np.int64), np.array([], dtype=np.int32)]
    n = write_token_file(tmp_path / "t.bin", iter(chunks))
    assert n == 13
    assert (tmp_path / "t.bin").stat().st_size == 26
    back = open_token_file(tmp_path / "t.bin")
    assert back.tolist() == [0, 1, 65535] + list(range(10))
    with pytest.raises(ValueError, match="65535"):
        write_token_file(tmp_path / "bad.bin", [np.array([70000])])
    with pytest.raises(ValueError, match="not found"):
        open_token_file(tmp_path / "missing.bin")


def test_stdlib_corpus_provenance():
    a = load_corpus("stdlib", max_files=6)
    b = load_corpus("stdlib", max_files=6)
    assert a.meta["sha256"] == b.meta["sha256"]
    assert a.meta["files_sha256"] == b.meta["files_sha256"]
    np.testing.assert_array_equal(a.train, b.train)
    root = Path(sysconfig.get_paths()["stdlib"])
    expected = sorted(p.name for p in root.glob("*.py") if p.is_file())[:6]
    assert a.meta["files"] == expected and a.meta["n_files"] == 6
    assert a.meta["files_sha256"] == hashlib.sha256("\n".join(expected).encode()).hexdigest()
    text = a.decode(np.concatenate([a.train, a.val]))
    assert a.vocab == sorted(set(text))  # vocabulary built from the corpus itself
    assert hashlib.sha256(text.encode()).hexdigest() == a.meta["sha256"]
    for name in expected:  # every file's source is in the corpus, in order
        assert (root / name).read_text(encoding="utf-8")[:200] in text
    assert a.meta["python_version"].count(".") == 2
    assert load_corpus("stdlib").meta["n_files"] == data.STDLIB_MAX_FILES


# ------------------------------------------------------------------------------------------------ sampling
def test_sampler_windows_are_shifted_contiguous_and_deterministic():
    tokens = positions(5000)
    s1 = BatchSampler(tokens, block_size=16, batch_size=8, seed=3)
    s2 = BatchSampler(tokens, block_size=16, batch_size=8, seed=3)
    s3 = BatchSampler(tokens, block_size=16, batch_size=8, seed=4)
    same, different = True, True
    for _ in range(5):
        x1, y1 = s1.next()
        x2, y2 = s2.next()
        x3, _ = s3.next()
        assert x1.dtype == torch.int64 and x1.shape == (8, 16)
        start = x1[:, :1]
        assert torch.equal(x1, start + torch.arange(16))  # a contiguous window of the text
        assert torch.equal(y1, x1 + 1)  # the next token
        assert int(start.max()) + 16 <= 4999
        same &= torch.equal(x1, x2) and torch.equal(y1, y2)
        different &= not torch.equal(x1, x3)
    assert same and different
    assert s1.batches_drawn == 5


def test_sampler_resume_is_exact():
    tokens = positions(3000)
    ref = BatchSampler(tokens, 8, 6, seed=11)
    for _ in range(4):
        ref.next()
    buf = io.BytesIO()
    torch.save(ref.state_dict(), buf)  # through a checkpoint file, loaded as the trainer does
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    expected = [ref.next() for _ in range(5)]

    resumed = BatchSampler(tokens, 8, 6, seed=11)
    resumed.load_state_dict(state)
    assert resumed.batches_drawn == 4
    got = [resumed.next() for _ in range(5)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(expected, got))
    # would catch: a sampler restarted from its seed (state not restored) repeats the first batches
    fresh = BatchSampler(tokens, 8, 6, seed=11)
    assert not torch.equal(fresh.next()[0], expected[0][0])
    with pytest.raises(ValueError, match="block_size"):
        BatchSampler(tokens, 9, 6, seed=11).load_state_dict(state)


def test_rank_slices_concatenate_to_the_global_batch():
    tokens = positions(4000)
    one = BatchSampler(tokens, 12, 8, seed=5)
    ranks = [BatchSampler(tokens, 12, 8, seed=5, rank=r, world_size=2) for r in range(2)]
    four = [BatchSampler(tokens, 12, 8, seed=5, rank=r, world_size=4) for r in range(4)]
    for _ in range(6):
        x, y = one.next()
        parts = [s.next() for s in ranks]
        assert parts[0][0].shape == (4, 12)
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
        assert torch.equal(torch.cat([s.next()[0] for s in four]), x)
    # a state saved by rank 0 of a 2-process run resumes a 1-process run on the same global stream
    single = BatchSampler(tokens, 12, 8, seed=5)
    single.load_state_dict(ranks[0].state_dict())
    x_next, _ = one.next()
    assert torch.equal(single.next()[0], x_next)


def test_eval_windows_fixed_and_evenly_spaced():
    tokens = positions(1000)
    a = eval_windows(tokens, block_size=10, batch_size=4, n_batches=3)
    b = eval_windows(tokens, block_size=10, batch_size=4, n_batches=3)
    assert len(a) == 3 and all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    starts = torch.cat([x[:, 0] for x, _ in a]).numpy()
    np.testing.assert_array_equal(starts, np.rint(np.linspace(0, 1000 - 11, 12)).astype(int))
    for x, y in a:
        assert torch.equal(x, x[:, :1] + torch.arange(10)) and torch.equal(y, x + 1)
    halves = [eval_windows(tokens, 10, 4, 3, rank=r, world_size=2) for r in range(2)]
    for k in range(3):
        assert torch.equal(torch.cat([halves[0][k][0], halves[1][k][0]]), a[k][0])


# ------------------------------------------------------------------------------------------------ errors
def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus 'shakespear'.*shakespeare, stdlib"):
        load_corpus("shakespear")
    with pytest.raises(ValueError, match="not found"):
        load_corpus(str(tmp_path / "nope.txt"))
    with pytest.raises(ValueError, match="unknown level"):
        load_corpus("shakespeare", level="word")
    with pytest.raises(ValueError, match="val_fraction"):
        load_corpus("shakespeare", val_fraction=1.0)
    with pytest.raises(ValueError, match="max_files"):
        load_corpus("shakespeare", max_files=3)

    short = tmp_path / "short.txt"
    short.write_text("abcdefghij" * 3, encoding="utf-8")  # 30 chars: 27 train, 3 val
    with pytest.raises(ValueError, match="val split has 3 tokens, too short for one context window"):
        load_corpus(str(short), block_size=8)
    with pytest.raises(ValueError, match="too short for one context window"):
        load_corpus(str(short), block_size=8, cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="too short for one context window"):
        BatchSampler(np.arange(8, dtype=np.uint16), block_size=8, batch_size=2, seed=0)
    with pytest.raises(ValueError, match="too short for one context window"):
        eval_windows(np.arange(8, dtype=np.uint16), 8, 2, 1)

    wide = tmp_path / "wide.txt"
    chars = [chr(c) for c in range(0x100, 0x100 + 68000) if not 0xD800 <= c <= 0xDFFF]  # 65,952 symbols
    wide.write_text("".join(chars), encoding="utf-8")
    with pytest.raises(ValueError, match="does not fit uint16"):
        load_corpus(str(wide))
    assert load_corpus(str(wide), level="byte").vocab_size == 256

    with pytest.raises(ValueError, match="not divisible by world_size 3"):
        BatchSampler(positions(100), 4, 8, seed=0, rank=0, world_size=3)
    with pytest.raises(ValueError, match="rank 2 is out of range"):
        BatchSampler(positions(100), 4, 8, seed=0, rank=2, world_size=2)
