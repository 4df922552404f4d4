"""The tokenizer stage: a byte-level BPE trained on the corpus (``curate tokenizer train``).

``run(TokenizeConfig, ctx)`` streams the texts of ``ctx.inputs`` (shard folders, JSONL, text or
code files; capped by ``max_docs`` / ``max_chars``) into Hugging Face ``tokenizers``' BPE
trainer and saves ``tokenizer.json`` and ``tokenizer_config.json`` in ``ctx.output``, with the
project's special tokens reserved (:data:`curate.core.tokenizer.SPECIAL_TOKENS`). It returns
what it trained on and the bytes per token it reaches on the first megabyte of that text.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from curate.core.errors import ConfigError, InputError
from curate.core.files import atomic_write_bytes, atomic_write_json
from curate.core.lock import LOCK_NAME, folder_lock
from curate.core.ranges import SIZE, Range, check_bounds
from curate.core.readers import FORMATS, iter_texts
from curate.core.tokenizer import SPECIAL_TOKENS, TOKENIZER_FILE, BPETokenizer
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


def train_from_paths(
    inputs: list[str],
    output_dir: str | os.PathLike,
    vocab_size: int = 32000,
    min_frequency: int = 2,
    max_docs: int | None = None,
    max_chars: int | None = None,
    fmt: str = "auto",
) -> dict:
    """Train a BPE on documents under ``inputs`` (shard folders, JSONL, text or code files),
    streamed and capped by ``max_docs`` / ``max_chars``; returns what it trained on and the
    bytes per token it achieves on the first megabyte of that text."""
    seen = {"docs": 0, "chars": 0}
    sample: list[str] = []
    sample_bytes = 0

    def texts() -> Iterator[str]:
        nonlocal sample_bytes
        for text in iter_texts(inputs, fmt, max_docs=max_docs, max_chars=max_chars):
            seen["docs"] += 1
            seen["chars"] += len(text)
            if sample_bytes < 1 << 20:
                sample.append(text)
                sample_bytes += len(text.encode("utf-8", "replace"))
            yield text

    stream = texts()
    try:
        first = next(stream)
    except StopIteration:
        raise InputError(f"no documents found in {', '.join(inputs)}") from None
    tok = train_bpe(itertools.chain([first], stream), output_dir, vocab_size=vocab_size, min_frequency=min_frequency)
    n_tokens = sum(tok.count(sample)) or 1
    return {
        "vocab_size": tok.vocab_size,
        "docs": seen["docs"],
        "chars": seen["chars"],
        "bytes_per_token": sample_bytes / n_tokens,
        "path": str(output_dir),
    }
