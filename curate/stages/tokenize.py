"""The tokenizer stage: a byte-level BPE trained on the corpus (``curate tokenizer train``).

``run(TokenizeConfig, ctx)`` streams the texts of ``ctx.inputs`` (shard folders, JSONL, text or
code files) into Hugging Face ``tokenizers``' BPE trainer and saves ``tokenizer.json`` and
``tokenizer_config.json`` in ``ctx.output``, with the project's special tokens reserved
(:data:`curate.core.tokenizer.SPECIAL_TOKENS`). It returns what it trained on and the bytes per
token it reaches on the first megabyte of that text.

**The sample.** Under ``max_docs`` / ``max_chars`` the trainer sees a seeded sample of the whole
corpus, not its first files: every document gets a key (a hash of ``seed``, its file's place
in the input listing and its row), one task per input file counts documents and characters
per key range (:data:`KEY_RANGES` of them), the lowest key ranges that reach the caps are
chosen, and one task per file returns its documents in those ranges, in file order. The
trainer takes them in input order until the caps (the last text cut to ``max_chars``). The
tasks run on ``ctx.executor`` (local processes or Ray tasks); the sample, and so
``tokenizer.json``, is the same on either engine and any number of workers.
"""

from __future__ import annotations

import itertools
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from curate.core.errors import ConfigError, InputError
from curate.core.files import atomic_write_bytes, atomic_write_json
from curate.core.lock import LOCK_NAME, folder_lock
from curate.core.ranges import SIZE, Range, check_bounds
from curate.core.readers import FORMATS, SourceReader, resolve_files
from curate.core.tokenizer import SPECIAL_TOKENS, TOKENIZER_FILE, BPETokenizer
from curate.runtime.executor import Executor
from curate.runtime.stage import StageContext

STAGE = "tokenizer"
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)


@dataclass
class TokenizeConfig:
    """What to train on and how big. ``curate pipeline`` uses its own defaults for the
    ``[tokenizer]`` table (see :mod:`curate.workflow.stages`)."""

    vocab_size: int = 32000
    min_frequency: int = 2  # pairs seen fewer times are not merged
    max_docs: int | None = None
    max_chars: int | None = 1_000_000_000
    format: str = "auto"  # of the inputs: auto | parquet | jsonl | text | code
    seed: int = 0  # of the sample drawn under max_docs / max_chars

    bounds: ClassVar[dict[str, Range]] = {
        "vocab_size": Range(MIN_VOCAB),
        "min_frequency": SIZE,
        "max_docs": SIZE,
        "max_chars": SIZE,
    }

    def __post_init__(self) -> None:
        # Checked as it is built, so that these messages (older than the declared bounds, and
        # relied on) come first, also through from_dict.
        self.validate()

    def validate(self, where: str = "tokenizer") -> TokenizeConfig:
        if isinstance(self.vocab_size, int) and self.vocab_size < MIN_VOCAB:
            raise ConfigError(f"[{where}]: vocab_size must be at least {MIN_VOCAB}, got {self.vocab_size}")
        for name in ("min_frequency", "max_docs", "max_chars"):
            value = getattr(self, name)
            if isinstance(value, int) and value < 1:
                raise ConfigError(f"[{where}]: {name} must be at least 1, got {value}")
        check_bounds(self, f"[{where}]")
        if self.format not in FORMATS:
            raise ConfigError(f"[{where}]: unknown format {self.format!r} (known: {', '.join(FORMATS)})")
        return self


def run(config: TokenizeConfig, ctx: StageContext) -> dict[str, Any]:
    """Train on ``ctx.inputs`` and save the tokenizer in ``ctx.output``; returns what it
    trained on (documents, characters) and its bytes per token. One run at a time per folder."""
    with folder_lock(Path(ctx.output) / ".curate" / LOCK_NAME, "`curate tokenizer train`", ctx.output):
        return train_from_paths(
            list(ctx.inputs),
            ctx.output,
            vocab_size=config.vocab_size,
            min_frequency=config.min_frequency,
            max_docs=config.max_docs,
            max_chars=config.max_chars,
            fmt=config.format,
            seed=config.seed,
            executor=ctx.executor,
        )


def train_bpe(
    texts: Iterator[str], output_dir: str | os.PathLike, vocab_size: int = 32000, min_frequency: int = 2
) -> BPETokenizer:
    """Train a byte-level BPE over ``texts`` (streamed) and save it in ``output_dir``."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ConfigError(f"vocab size {vocab_size} is too small (at least {256 + len(SPECIAL_TOKENS)})")
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / TOKENIZER_FILE, tok.to_str(pretty=True).encode("utf-8"))
    atomic_write_json(
        out / "tokenizer_config.json",
        {"kind": "byte-level-bpe", "vocab_size": tok.get_vocab_size(), "special_tokens": SPECIAL_TOKENS},
    )
    return BPETokenizer(out)


KEY_RANGES = 4096  # key ranges the sample is chosen by (the last one taken is cut at the caps)


def _keys(seed: int, file_index: int, n: int, first: int) -> np.ndarray:
    """The key range (0 .. KEY_RANGES - 1) of rows ``first .. first + n - 1`` of a file."""
    base = np.uint64(zlib.crc32(f"{int(seed)}:{file_index}".encode()))
    with np.errstate(over="ignore"):
        x = (np.arange(first, first + n, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15) ^ (
            base * np.uint64(0xD6E8FEB86659FD93)
        )
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(64 - 12)).astype(np.int64)


def _file_texts(path: str, fmt: str) -> Iterator[list[str]]:
    for table in SourceReader("input", [path], fmt, strict=True).tables():
        yield table.column("text").to_pylist()


def _count_file(job: tuple[str, str, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Documents and characters per key range of one input file (a task)."""
    path, fmt, index, seed = job
    docs = np.zeros(KEY_RANGES, np.int64)
    chars = np.zeros(KEY_RANGES, np.int64)
    row = 0
    for texts in _file_texts(path, fmt):
        keys = _keys(seed, index, len(texts), row)
        row += len(texts)
        docs += np.bincount(keys, minlength=KEY_RANGES)
        chars += np.bincount(keys, weights=[len(t) for t in texts], minlength=KEY_RANGES).astype(np.int64)
    return docs, chars


def _sample_file(job: tuple[str, str, int, int, int]) -> list[str]:
    """The texts of one input file whose key range is at most ``limit`` (a task)."""
    path, fmt, index, seed, limit = job
    out: list[str] = []
    row = 0
    for texts in _file_texts(path, fmt):
        keys = _keys(seed, index, len(texts), row)
        row += len(texts)
        out.extend(t for t, k in zip(texts, keys.tolist()) if k <= limit)
    return out


def sample_texts(
    inputs: list[str],
    fmt: str = "auto",
    max_docs: int | None = None,
    max_chars: int | None = None,
    seed: int = 0,
    executor: Executor | None = None,
) -> Iterator[str]:
    """The seeded sample of the documents under ``inputs`` within the caps (see the module
    docstring), in input order, drawn by tasks on ``executor``."""
    executor = executor or Executor()
    files = resolve_files(inputs, fmt)
    limit = KEY_RANGES - 1
    if max_docs is not None or max_chars is not None:
        docs = np.zeros(KEY_RANGES, np.int64)
        chars = np.zeros(KEY_RANGES, np.int64)
        for d, c in executor.map(_count_file, [(f.path, f.format, i, seed) for i, f in enumerate(files)]):
            docs += d
            chars += c
        reached = np.zeros(KEY_RANGES, bool)
        if max_docs is not None:
            reached |= np.cumsum(docs) >= max_docs
        if max_chars is not None:
            reached |= np.cumsum(chars) >= max_chars
        if reached.any():
            limit = int(np.argmax(reached))
    jobs = [(f.path, f.format, i, seed, limit) for i, f in enumerate(files)]
    yield from _capped(itertools.chain.from_iterable(executor.map(_sample_file, jobs)), max_docs, max_chars)


def _capped(texts: Iterable[str], max_docs: int | None, max_chars: int | None) -> Iterator[str]:
    chars = 0
    for docs, text in enumerate(texts):
        if (max_docs is not None and docs >= max_docs) or (max_chars is not None and chars >= max_chars):
            return
        if max_chars is not None:
            text = text[: max_chars - chars]
        chars += len(text)
        yield text


def train_from_paths(
    inputs: list[str],
    output_dir: str | os.PathLike,
    vocab_size: int = 32000,
    min_frequency: int = 2,
    max_docs: int | None = None,
    max_chars: int | None = None,
    fmt: str = "auto",
    seed: int = 0,
    executor: Executor | None = None,
) -> dict:
    """Train a BPE on documents under ``inputs`` (shard folders, JSONL, text or code files):
    a seeded sample within ``max_docs`` / ``max_chars`` drawn by tasks on ``executor``;
    returns what it trained on and the bytes per token it achieves on the first megabyte of
    that text."""
    seen = {"docs": 0, "chars": 0}
    sample: list[str] = []
    sample_bytes = 0
    executor = executor or Executor()

    def texts() -> Iterator[str]:
        nonlocal sample_bytes
        for text in sample_texts(inputs, fmt, max_docs, max_chars, seed, executor):
            seen["docs"] += 1
            seen["chars"] += len(text)
            if sample_bytes < 1 << 20:
                sample.append(text)
                sample_bytes += len(text.encode("utf-8", "replace"))
            yield text

    with executor.session():
        stream = texts()
        try:
            first = next(stream)
        except StopIteration:
            raise InputError(f"no documents found in {', '.join(inputs)}") from None
        tok = train_bpe(
            itertools.chain([first], stream), output_dir, vocab_size=vocab_size, min_frequency=min_frequency
        )
    n_tokens = sum(tok.count(sample)) or 1
    return {
        "vocab_size": tok.vocab_size,
        "docs": seen["docs"],
        "chars": seen["chars"],
        "bytes_per_token": sample_bytes / n_tokens,
        "path": str(output_dir),
    }
