"""Tokenizers shared by ``mix`` (token budgets) and the trainer.

Two kinds behind one small interface (:class:`Tokenizer`):

* :class:`BPETokenizer`: a byte-level BPE trained with Hugging Face ``tokenizers``
  (``curate tokenizer train``, :mod:`curate.stages.tokenize`), saved as ``tokenizer.json``
  in a directory;
* :class:`ByteTokenizer`: UTF-8 bytes plus the special tokens, the fallback when no trained
  tokenizer is given (needs no training, works for every language).

Both reserve the same special tokens, so chat templates (SFT, reward, RLHF) work with either.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from curate.core.errors import ConfigError, InputError

EOT = "<|endoftext|>"
SPECIAL_TOKENS = [EOT, "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
TOKENIZER_FILE = "tokenizer.json"


class Tokenizer:
    """What the mix and the trainer need from a tokenizer."""

    name: str = "tokenizer"
    vocab_size: int

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def token_id(self, token: str) -> int:
        raise NotImplementedError

    @property
    def eot_id(self) -> int:
        return self.token_id(EOT)

    @property
    def pad_id(self) -> int:
        return self.token_id("<|pad|>")

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.encode_batch(texts)]

    def describe(self) -> dict:
        return {"name": self.name, "vocab_size": self.vocab_size}


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes 0..255, then the special tokens."""

    name = "bytes"

    def __init__(self) -> None:
        self._special = {tok: 256 + i for i, tok in enumerate(SPECIAL_TOKENS)}
        self._special_by_id = {i: t for t, i in self._special.items()}
        self.vocab_size = 256 + len(SPECIAL_TOKENS)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8", errors="replace"))

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(t.encode("utf-8", errors="replace")) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        out = bytearray()
        parts: list[str] = []
        for i in ids:
            i = int(i)
            if i < 256:
                out.append(i)
            else:
                parts.append(out.decode("utf-8", errors="replace"))
                out = bytearray()
                parts.append(self._special_by_id.get(i, ""))
        parts.append(out.decode("utf-8", errors="replace"))
        return "".join(parts)

    def token_id(self, token: str) -> int:
        try:
            return self._special[token]
        except KeyError:
            raise ConfigError(f"unknown special token {token!r}") from None


class BPETokenizer(Tokenizer):
    """A Hugging Face ``tokenizers`` byte-level BPE loaded from a directory."""

    def __init__(self, path: str | os.PathLike):
        from tokenizers import Tokenizer as HFTokenizer

        path = Path(path)
        file = path / TOKENIZER_FILE if path.is_dir() else path
        if not file.exists():
            raise InputError(f"{path}: no {TOKENIZER_FILE} (train one with `curate tokenizer train`)")
        self._tok = HFTokenizer.from_file(str(file))
        self.path = str(path)
        self.name = f"bpe:{path}"
        self.vocab_size = self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def describe(self) -> dict:
        # The file's digest identifies the exact vocabulary a mix was counted with.
        import hashlib

        file = Path(self.path) / TOKENIZER_FILE if Path(self.path).is_dir() else Path(self.path)
        digest = hashlib.sha256(file.read_bytes()).hexdigest() if file.exists() else None
        return {"name": self.name, "vocab_size": self.vocab_size, "path": self.path, "sha256": digest}

    def token_id(self, token: str) -> int:
        tid = self._tok.token_to_id(token)
        if tid is None:
            raise ConfigError(f"tokenizer {self.path} has no special token {token!r}")
        return tid


def load_tokenizer(path: str | os.PathLike | None) -> Tokenizer:
    """A trained tokenizer from a directory (or tokenizer.json); bytes when ``path`` is None
    or ``"bytes"``."""
    if path is None or str(path) in ("", "bytes"):
        return ByteTokenizer()
    return BPETokenizer(path)
