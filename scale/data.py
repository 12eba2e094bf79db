r"""Offline text corpora as ``uint16`` token arrays, and the batch samplers a language-model trainer needs.

Corpora (nothing is downloaded):

* ``"shakespeare"``: the tiny-shakespeare text shipped in ``scale/corpora/`` (Karpathy's ``char-rnn``
  ``data/tinyshakespeare/input.txt``; 1,115,394 characters, 65 distinct).
* ``"stdlib"``: the ``*.py`` files directly under Python's standard-library directory
  (``sysconfig.get_paths()["stdlib"]``), sorted by name, the first ``max_files`` (60 by default), each
  preceded by a one-line header ``# ==== <file name> ====``. The text depends on the Python version, so
  the metadata records the version, the file count, a hash of the file list and a hash of the text; the
  vocabulary is built from the text itself.
* any other value is a path to a UTF-8 text file.

Tokenization is character level (``level="char"``: the vocabulary is the sorted list of distinct
characters, id = position in that list) or byte level (``level="byte"``: the UTF-8 bytes, 256 ids).
The split is by position, as nanoGPT's ``prepare.py`` does it: with :math:`n` tokens, the first
:math:`\lfloor (1 - f)\, n \rfloor` are the training split and the rest the validation split
(:math:`f` = ``val_fraction``; for tiny-shakespeare and :math:`f = 0.1`: 1,003,854 / 111,540).

With ``cache_dir`` the splits are written once as raw little-endian ``uint16`` files (``train.bin``,
``val.bin``, nanoGPT's format, plus ``meta.json``) and opened as :class:`numpy.memmap`, so corpora larger
than memory work: the text is read and encoded in chunks and never held as one string or one array.

Sampling. :class:`BatchSampler` draws, at every step, the **global** batch of ``batch_size`` random
windows from one :class:`numpy.random.Generator` seeded with ``seed`` and returns the rows of one rank
(rank :math:`r` of :math:`R` gets rows :math:`[rB/R, (r+1)B/R)`): one process and :math:`R` processes see
the same global batch at every step, and its :meth:`BatchSampler.state_dict` (the generator's state and
the number of batches drawn) resumes the stream exactly. :func:`eval_windows` gives fixed, evenly spaced
windows, so validation losses are comparable across runs and resumes.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import sys
import sysconfig
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "KNOWN_CORPORA",
    "LEVELS",
    "Corpus",
    "BatchSampler",
    "load_corpus",
    "write_token_file",
    "open_token_file",
    "eval_windows",
]

KNOWN_CORPORA = ("shakespeare", "stdlib")
LEVELS = ("char", "byte")
TOKEN_DTYPE = np.dtype("<u2")  # raw files are little-endian uint16 on every platform
MAX_VOCAB = 1 << 16  # ids 0..65535 fit uint16
STDLIB_MAX_FILES = 60
SHAKESPEARE_FILE = "tinyshakespeare.txt"
_CHUNK_CHARS = 1 << 20  # characters read and encoded at a time on the streaming (cache_dir) path
_CACHE_FORMAT = 1


# ---------------------------------------------------------------------------------------------- text sources
class _TextSource:
    """Where a corpus' text comes from, readable several times in chunks (``pieces()``)."""

    def __init__(self, name: str, pieces: Callable[[], Iterator[str]], meta: dict[str, Any]):
        self.name = name
        self.pieces = pieces
        self.meta = meta

    def read(self) -> str:
        return "".join(self.pieces())


def _read_file_chunks(path: Path, errors: str = "strict") -> Iterator[str]:
    try:
        with open(path, encoding="utf-8", errors=errors, newline="") as f:
            while True:
                chunk = f.read(_CHUNK_CHARS)
                if not chunk:
                    return
                yield chunk
    except UnicodeDecodeError as exc:
        raise ValueError(f"corpus file {path} is not UTF-8 text ({exc})") from None


def _shakespeare_path() -> Path:
    try:
        resource = importlib.resources.files(__package__ or "scale").joinpath("corpora", SHAKESPEARE_FILE)
        with importlib.resources.as_file(resource) as p:
            path = Path(p)
    except (ModuleNotFoundError, TypeError, FileNotFoundError):
        path = Path(__file__).resolve().parent / "corpora" / SHAKESPEARE_FILE
    if not path.is_file():
        raise ValueError(f"the shipped corpus file corpora/{SHAKESPEARE_FILE} is missing from the scale package "
                         f"(looked at {path})")
    return path


def stdlib_files(max_files: int | None = STDLIB_MAX_FILES) -> list[Path]:
    """The ``*.py`` files directly under ``sysconfig.get_paths()["stdlib"]``, sorted by name, the first
    ``max_files`` of them (all of them for ``None``)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted((p for p in root.glob("*.py") if p.is_file()), key=lambda p: p.name)
    if not files:
        raise ValueError(f"no *.py files found directly under the standard-library directory {root}")
    return files if max_files is None else files[:max_files]


def _stdlib_source(max_files: int | None) -> _TextSource:
    if max_files is None:
        max_files = STDLIB_MAX_FILES
    if isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1:
        raise ValueError(f"max_files must be a positive integer, got {max_files!r}")
    files = stdlib_files(max_files)
    names = [p.name for p in files]

    def pieces() -> Iterator[str]:
        for p in files:
            yield f"# ==== {p.name} ====\n"
            # the standard library is UTF-8; replacement keeps the corpus deterministic if a file is not
            yield from _read_file_chunks(p, errors="replace")
            yield "\n"

    meta = {
        "source": "stdlib",
        "stdlib_dir_name": Path(sysconfig.get_paths()["stdlib"]).name,
        "n_files": len(files),
        "files": names,
        "files_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest(),
    }
    return _TextSource("stdlib", pieces, meta)


def _resolve_source(name: str, max_files: int | None) -> _TextSource:
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"corpus name must be a string or a path, got {type(name).__name__}")
    key = os.fspath(name)
    if key != "stdlib" and max_files is not None:
        raise ValueError(f"max_files applies to the 'stdlib' corpus only, not to {key!r}")
    if key == "shakespeare":
        path = _shakespeare_path()
        return _TextSource("shakespeare", lambda: _read_file_chunks(path), {"source": f"corpora/{SHAKESPEARE_FILE}"})
    if key == "stdlib":
        return _stdlib_source(max_files)
    path = Path(key).expanduser()
    looks_like_path = path.suffix != "" or os.sep in key or "/" in key
    if not looks_like_path and not path.exists():
        raise ValueError(f"unknown corpus {key!r}; valid names: {', '.join(KNOWN_CORPORA)}, "
                         "or a path to a UTF-8 .txt file")
    if not path.exists():
        raise ValueError(f"corpus file not found: {key}")
    if not path.is_file():
        raise ValueError(f"corpus path is not a file: {key}")
    return _TextSource(path.stem, lambda: _read_file_chunks(path), {"source": str(path)})


# ---------------------------------------------------------------------------------------------- tokenization
def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4")


def _check_vocab_size(size: int) -> None:
    if size > MAX_VOCAB:
        raise ValueError(f"vocabulary of {size} symbols does not fit uint16 token ids (at most {MAX_VOCAB} "
                         "symbols, ids 0..65535); use level='byte'")


@dataclass
class Corpus:
    """A tokenized corpus: ``train`` and ``val`` hold ``uint16`` token ids (arrays or memmaps).

    Attributes
    ----------
    name : str
        ``"shakespeare"``, ``"stdlib"`` or the stem of the text file.
    level : str
        ``"char"`` (vocabulary = sorted distinct characters) or ``"byte"`` (UTF-8 bytes, 256 ids).
    vocab : list of str or None
        The characters in id order (char level); ``None`` at byte level.
    train, val : numpy.ndarray
        Token ids of the two splits, dtype ``uint16``.
    meta : dict
        ``name``, ``level``, ``n_tokens``, ``n_train``, ``n_val``, ``vocab_size``, ``sha256`` (of the UTF-8
        text), ``python_version``, ``val_fraction``, ``source``; for ``stdlib`` also ``n_files``, ``files``
        and ``files_sha256``; ``cache`` when read from token files.
    """

    name: str
    level: str
    vocab: list[str] | None
    train: np.ndarray
    val: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"unknown level {self.level!r}; valid: {', '.join(LEVELS)}")
        if self.level == "char":
            if self.vocab is None:
                raise ValueError("a char-level corpus needs its vocabulary")
            _check_vocab_size(len(self.vocab))
            self._cp = np.array([ord(c) for c in self.vocab], dtype=np.uint32)
            if len(self._cp) > 1 and np.any(np.diff(self._cp.astype(np.int64)) <= 0):
                raise ValueError("vocab must be sorted distinct single characters")
        else:
            if self.vocab is not None:
                raise ValueError("a byte-level corpus has vocab=None (its 256 ids are the byte values)")
            self._cp = None

    @property
    def vocab_size(self) -> int:
        return 256 if self.level == "byte" else len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        """Token ids (``uint16``) of ``text``; a character outside the vocabulary is a ``ValueError``."""
        if self.level == "byte":
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)
        return _encode_chars(text, self._cp)

    def decode(self, ids) -> str:
        """The text of a sequence of ids (list, array or tensor)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.detach().cpu().numpy()
        arr = np.asarray(ids).astype(np.int64).ravel()
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), got range [{arr.min()}, {arr.max()}]")
        if self.level == "byte":
            return arr.astype(np.uint8).tobytes().decode("utf-8", errors="replace")
        return self._cp[arr].astype("<u4").tobytes().decode("utf-32-le", errors="surrogatepass")


def _encode_chars(text: str, vocab_cp: np.ndarray) -> np.ndarray:
    cps = _codepoints(text)
    idx = np.searchsorted(vocab_cp, cps)
    idx_c = np.minimum(idx, len(vocab_cp) - 1)
    bad = vocab_cp[idx_c] != cps
    if np.any(bad):
        missing = sorted({chr(c) for c in cps[bad][:1000].tolist()})
        raise ValueError(f"characters outside the vocabulary: {missing[:10]!r}")
    return idx.astype(np.uint16)


# ---------------------------------------------------------------------------------------------- token files
def write_token_file(path: str | os.PathLike, tokens: Iterable[np.ndarray]) -> int:
    """Write the concatenation of the arrays in ``tokens`` as raw little-endian ``uint16`` to ``path`` and
    return the number of tokens written. The arrays are written one at a time (streaming); ids must lie in
    ``[0, 65535]``."""
    n = 0
    with open(path, "wb") as f:
        for arr in tokens:
            a = np.asarray(arr)
            if a.size == 0:
                continue
            if a.dtype.kind not in "ui":
                raise TypeError(f"token arrays must be integer, got dtype {a.dtype}")
            if (a.dtype.kind == "i" and a.min() < 0) or a.max() > 65535:
                raise ValueError("token ids must lie in [0, 65535] to be stored as uint16")
            f.write(np.ascontiguousarray(a.ravel(), dtype=TOKEN_DTYPE).tobytes())
            n += a.size
    return n


def open_token_file(path: str | os.PathLike) -> np.memmap:
    """Open a raw ``uint16`` token file written by :func:`write_token_file` as a read-only memmap."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"token file not found: {p}")
    size = p.stat().st_size
    if size == 0:
        raise ValueError(f"token file {p} is empty")
    if size % TOKEN_DTYPE.itemsize:
        raise ValueError(f"token file {p} has {size} bytes, not a whole number of uint16 tokens")
    return np.memmap(p, dtype=TOKEN_DTYPE, mode="r")


# ---------------------------------------------------------------------------------------------- loading
def _check_split(val_fraction: float) -> None:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")


def _split_sizes(n: int, val_fraction: float) -> tuple[int, int]:
    n_train = int(n * (1.0 - val_fraction))
    return n_train, n - n_train


def _check_lengths(name: str, n_train: int, n_val: int, block_size: int | None) -> None:
    if block_size is None:
        return
    for split, n in (("train", n_train), ("val", n_val)):
        if n < block_size + 1:
            raise ValueError(f"corpus {name!r}: the {split} split has {n} tokens, too short for one context window "
                             f"of block_size={block_size} (needs block_size + 1 = {block_size + 1})")


def _base_meta(src: _TextSource, level: str, vocab_size: int, n: int, n_train: int, n_val: int,
               sha: str, val_fraction: float) -> dict[str, Any]:
    meta = {
        "name": src.name,
        "level": level,
        "n_tokens": n,
        "n_train": n_train,
        "n_val": n_val,
        "vocab_size": vocab_size,
        "sha256": sha,
        "python_version": ".".join(map(str, sys.version_info[:3])),
        "val_fraction": val_fraction,
    }
    meta.update(src.meta)
    return meta


def load_corpus(name: str, *, level: str = "char", val_fraction: float = 0.1, max_files: int | None = None,
                cache_dir: str | os.PathLike | None = None, block_size: int | None = None) -> Corpus:
    """Load, tokenize and split a corpus.

    Parameters
    ----------
    name : str
        ``"shakespeare"``, ``"stdlib"`` or a path to a UTF-8 text file.
    level : {"char", "byte"}
        Character-level tokens (vocabulary built from the text) or UTF-8 bytes.
    val_fraction : float
        The last ``val_fraction`` of the tokens form the validation split.
    max_files : int, optional
        For ``"stdlib"``: how many files (sorted by name) to read; 60 by default.
    cache_dir : str or path, optional
        Write the splits as ``uint16`` token files in ``cache_dir/<name>-<level>-<hash>/`` (reused when
        the text, level and split are unchanged) and return them as memmaps. The text is streamed in
        chunks on this path.
    block_size : int, optional
        If given, check that both splits hold at least ``block_size + 1`` tokens.

    Raises
    ------
    ValueError
        Unknown corpus name (the valid ones are listed), missing file, bad level or fraction, a vocabulary
        that does not fit ``uint16``, or a split too short for one context window.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; valid: {', '.join(LEVELS)}")
    _check_split(val_fraction)
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    src = _resolve_source(name, max_files)
    if cache_dir is not None:
        return _load_cached(src, level, val_fraction, Path(cache_dir), block_size)

    text = src.read()
    sha = hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()
    if level == "char":
        vocab = sorted(set(text))
        _check_vocab_size(len(vocab))
        vocab_cp = np.array([ord(c) for c in vocab], dtype=np.uint32)
        ids = _encode_chars(text, vocab_cp)
    else:
        vocab = None
        ids = np.frombuffer(text.encode("utf-8", errors="surrogatepass"), dtype=np.uint8).astype(np.uint16)
    n = int(ids.size)
    n_train, n_val = _split_sizes(n, val_fraction)
    _check_lengths(src.name, n_train, n_val, block_size)
    meta = _base_meta(src, level, 256 if vocab is None else len(vocab), n, n_train, n_val, sha, val_fraction)
    return Corpus(src.name, level, vocab, ids[:n_train].copy(), ids[n_train:].copy(), meta)


def _scan(src: _TextSource, level: str) -> tuple[int, str, list[str] | None]:
    """First streaming pass: token count, text hash and (char level) vocabulary."""
    h = hashlib.sha256()
    chars: set[str] = set()
    n = 0
    for piece in src.pieces():
        b = piece.encode("utf-8", errors="surrogatepass")
        h.update(b)
        if level == "char":
            chars.update(piece)
            n += len(piece)
        else:
            n += len(b)
    vocab = sorted(chars) if level == "char" else None
    return n, h.hexdigest(), vocab


def _token_chunks(src: _TextSource, level: str, vocab_cp: np.ndarray | None) -> Iterator[np.ndarray]:
    for piece in src.pieces():
        if level == "char":
            yield _encode_chars(piece, vocab_cp)
        else:
            yield np.frombuffer(piece.encode("utf-8", errors="surrogatepass"), dtype=np.uint8).astype(np.uint16)


def _token_range(chunks: Iterator[np.ndarray], start: int, stop: int) -> Iterator[np.ndarray]:
    """The tokens with positions in ``[start, stop)`` of a chunked stream."""
    pos = 0
    for chunk in chunks:
        lo, hi = pos, pos + chunk.size
        pos = hi
        if hi <= start:
            continue
        if lo >= stop:
            return
        yield chunk[max(start - lo, 0):min(stop - lo, chunk.size)]


def _load_cached(src: _TextSource, level: str, val_fraction: float, cache_dir: Path,
                 block_size: int | None) -> Corpus:
    n, sha, vocab = _scan(src, level)
    if vocab is not None:
        _check_vocab_size(len(vocab))
    n_train, n_val = _split_sizes(n, val_fraction)
    _check_lengths(src.name, n_train, n_val, block_size)
    meta = _base_meta(src, level, 256 if vocab is None else len(vocab), n, n_train, n_val, sha, val_fraction)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in src.name)
    folder = cache_dir / f"{safe}-{level}-{sha[:16]}"
    meta_path = folder / "meta.json"
    expected = {"format": _CACHE_FORMAT, "sha256": sha, "level": level, "n_train": n_train, "n_val": n_val,
                "vocab": vocab}
    cached = None
    if meta_path.is_file():
        try:
            cached = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            cached = None
    fresh = cached is None or any(cached.get(k) != v for k, v in expected.items())
    if fresh:
        folder.mkdir(parents=True, exist_ok=True)
        vocab_cp = None if vocab is None else np.array([ord(c) for c in vocab], dtype=np.uint32)
        tag = f".tmp{os.getpid()}"  # several ranks may build the same cache at once: write, then rename
        for split, (a, b) in (("train", (0, n_train)), ("val", (n_train, n))):
            tmp = folder / f"{split}.bin{tag}"
            written = write_token_file(tmp, _token_range(_token_chunks(src, level, vocab_cp), a, b))
            if written != b - a:
                tmp.unlink(missing_ok=True)
                raise ValueError(f"corpus {src.name!r} changed while it was being encoded")
            os.replace(tmp, folder / f"{split}.bin")
        record = dict(meta, **expected)
        tmp = folder / f"meta.json{tag}"
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
        os.replace(tmp, meta_path)
    train = open_token_file(folder / "train.bin")
    val = open_token_file(folder / "val.bin")
    if train.size != n_train or val.size != n_val:
        raise ValueError(f"token cache {folder} does not match the corpus (sizes {train.size}/{val.size}, "
                         f"expected {n_train}/{n_val}); delete it and load again")
    meta["cache"] = str(folder)
    return Corpus(src.name, level, vocab, train, val, meta)


# ---------------------------------------------------------------------------------------------- sampling
def _check_window(tokens: np.ndarray, block_size: int) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    n = len(tokens)
    if n < block_size + 1:
        raise ValueError(f"{n} tokens are too short for one context window of block_size={block_size} "
                         f"(needs block_size + 1 = {block_size + 1})")
    return n


def _check_ranks(batch_size: int, rank: int, world_size: int) -> int:
    for label, v, lo in (("batch_size", batch_size, 1), ("world_size", world_size, 1), ("rank", rank, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{label} must be an integer >= {lo}, got {v!r}")
    if rank >= world_size:
        raise ValueError(f"rank {rank} is out of range for world_size {world_size}")
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} (global rows) is not divisible by world_size {world_size}")
    return batch_size // world_size


def _windows(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = starts[:, None] + np.arange(block_size + 1, dtype=np.int64)[None, :]
    rows = np.asarray(tokens[idx], dtype=np.int64)
    xy = torch.from_numpy(rows)
    return xy[:, :-1].contiguous(), xy[:, 1:].contiguous()


class BatchSampler:
    """Random ``block_size`` windows, the global batch drawn from one seeded generator, one rank's rows out.

    At each call of :meth:`next`, ``batch_size`` window starts are drawn uniformly from
    :math:`\\{0, \\dots, n - T - 1\\}` (:math:`n` tokens, :math:`T` = ``block_size``) with
    ``numpy.random.default_rng(seed)``; rank :math:`r` of :math:`R` returns rows
    :math:`[rB/R, (r+1)B/R)` of that global batch, so the union over ranks is the one-process batch.

    Parameters
    ----------
    tokens : numpy.ndarray
        Token ids (array or memmap).
    block_size, batch_size : int
        Context length :math:`T` and **global** batch rows :math:`B` (divisible by ``world_size``).
    seed : int
        Seed of the generator (the same on every rank).
    rank, world_size : int
        This process' rank and the number of processes.
    """

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int, *, rank: int = 0,
                 world_size: int = 1):
        self.n_tokens = _check_window(tokens, block_size)
        self.local_batch_size = _check_ranks(batch_size, rank, world_size)
        self.tokens = tokens
        self.block_size = int(block_size)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.rng = np.random.default_rng(self.seed)
        self.batches_drawn = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``: ``int64`` tensors of shape ``(batch_size // world_size, block_size)``, ``y`` = ``x``
        shifted by one token."""
        starts = self.rng.integers(0, self.n_tokens - self.block_size, size=self.batch_size, dtype=np.int64)
        self.batches_drawn += 1
        lo = self.rank * self.local_batch_size
        return _windows(self.tokens, starts[lo:lo + self.local_batch_size], self.block_size)

    __next__ = next

    def __iter__(self) -> BatchSampler:
        return self

    def state_dict(self) -> dict[str, Any]:
        """Plain data (ints, strings, dicts): the generator's state, ``batches_drawn`` and the settings that
        must match on resume. The global stream does not depend on ``rank`` / ``world_size``, so a state
        saved by one rank loads on any rank of any world size."""
        return {
            "bit_generator": self.rng.bit_generator.state,
            "batches_drawn": self.batches_drawn,
            "seed": self.seed,
            "block_size": self.block_size,
            "batch_size": self.batch_size,
            "n_tokens": self.n_tokens,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("block_size", "batch_size", "n_tokens"):
            if key in state and int(state[key]) != getattr(self, key):
                raise ValueError(f"sampler state has {key}={state[key]}, this sampler has {getattr(self, key)}; "
                                 "the stream would not continue identically")
        rng = np.random.default_rng()
        rng.bit_generator.state = state["bit_generator"]
        self.rng = rng
        self.batches_drawn = int(state["batches_drawn"])
        self.seed = int(state.get("seed", self.seed))


def eval_windows(tokens: np.ndarray, block_size: int, batch_size: int, n_batches: int, *, rank: int = 0,
                 world_size: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed validation batches: ``batch_size * n_batches`` windows with starts evenly spaced over
    :math:`[0, n - T - 1]` (rounded to integers), no randomness, so every run and every resume evaluates on
    the same text. With ``world_size > 1`` each batch is split into contiguous row blocks as in
    :class:`BatchSampler`."""
    n = _check_window(tokens, block_size)
    local = _check_ranks(batch_size, rank, world_size)
    if isinstance(n_batches, bool) or not isinstance(n_batches, (int, np.integer)) or n_batches < 1:
        raise ValueError(f"n_batches must be a positive integer, got {n_batches!r}")
    total = batch_size * n_batches
    starts = np.rint(np.linspace(0, n - block_size - 1, total)).astype(np.int64)
    out = []
    for b in range(n_batches):
        rows = starts[b * batch_size:(b + 1) * batch_size][rank * local:(rank + 1) * local]
        out.append(_windows(tokens, rows, block_size))
    return out
