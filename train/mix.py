"""A mix directory as the trainer sees it, and the tokenizer to train with.

A mix directory (written by ``curate mix``) holds Parquet shards in the project schema and a
``manifest.json`` naming its shards, tokenizer, token count and training cutoff; a directory
of bare Parquet shards works too. :func:`open_mix` reads that into a :class:`MixInfo`,
including the pre-tokenized token files ``curate mix --pretokenize`` wrote, which
:func:`pretokenized_usable` accepts only for the tokenizer that wrote them.
:func:`resolve_tokenizer` picks the tokenizer: ``--tokenizer``, else the mix's, else bytes.
Streaming the documents as packed sequences is train/data.py's job.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.core.errors import InputError
from curate.core.files import sha256_file
from curate.core.manifest import MANIFEST_NAME
from curate.core.shards import expand_parquet_inputs
from curate.core.tokenizer import ByteTokenizer, Tokenizer, load_tokenizer


@dataclass
class MixInfo:
    """What the trainer needs to know about a mix directory."""

    directory: Path
    shards: list[Path]
    shard_rows: list[int]
    manifest: dict[str, Any] = field(default_factory=dict)
    manifest_sha256: str | None = None
    # Pre-tokenized shards: shard index -> token file, and the dtype they are stored in.
    token_files: dict[int, Path] = field(default_factory=dict)
    token_dtype: str | None = None

    @property
    def rows(self) -> int:
        return sum(self.shard_rows)

    @property
    def training_cutoff(self) -> dict[str, Any] | None:
        return self.manifest.get("training_cutoff")

    @property
    def tokenizer_hint(self) -> str | None:
        """The tokenizer the mix counted tokens with: a path, "bytes", or None."""
        info = self.manifest.get("tokenizer")
        if info is None:
            return None
        if isinstance(info, str):
            name = info
        else:
            path = info.get("path") or info.get("dir") or info.get("directory")
            if path:
                return str(path)
            name = str(info.get("name", ""))
        if name.startswith("bpe:"):
            return name[4:]
        return name or None

    @property
    def total_tokens(self) -> int | None:
        """Tokens in the mix as counted by ``curate mix`` (None when it did not say)."""
        for key in ("total_tokens", "tokens"):
            value = self.manifest.get(key)
            if isinstance(value, (int, float)):
                return int(value)
            if isinstance(value, dict):
                for sub in ("realized", "total", "selected", "kept"):
                    if isinstance(value.get(sub), (int, float)):
                        return int(value[sub])
        return None


def open_mix(path: str | Path) -> MixInfo:
    """Read a mix directory's manifest and shard list (or a directory of bare Parquet
    shards); InputError when it holds no shards."""
    directory = Path(path)
    if not directory.exists():
        raise InputError(f"{directory}: no such mix directory")
    manifest: dict[str, Any] = {}
    manifest_sha = None
    manifest_path = directory / MANIFEST_NAME if directory.is_dir() else None
    if manifest_path is not None and manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{manifest_path}: unreadable manifest ({exc})") from None
        manifest_sha = sha256_file(manifest_path)
    listed = [s.get("path") for s in manifest.get("shards", []) if isinstance(s, dict) and s.get("path")]
    if listed:
        shards = [directory / p for p in listed]
        missing = [str(p) for p in shards if not p.exists()]
        if missing:
            raise InputError(f"{directory}: manifest lists {len(missing)} missing shard(s), e.g. {missing[0]}")
    else:
        shards = [Path(p) for p in expand_parquet_inputs([str(directory)])]
    rows = []
    for shard in shards:
        try:
            rows.append(pq.ParquetFile(shard).metadata.num_rows)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{shard}: not a readable Parquet file ({exc})") from None
    mix = MixInfo(
        directory=directory if directory.is_dir() else directory.parent,
        shards=shards,
        shard_rows=rows,
        manifest=manifest,
        manifest_sha256=manifest_sha,
    )
    pretok = manifest.get("pretokenized")
    if isinstance(pretok, dict) and pretok.get("byteorder", "little") == "little":
        by_shard = {f.get("shard"): mix.directory / f["path"] for f in pretok.get("files", []) if f.get("path")}
        files = {i: by_shard.get(s.name) for i, s in enumerate(shards)}
        if files and all(p is not None and p.exists() for p in files.values()):
            mix.token_files = files  # type: ignore[assignment]
            mix.token_dtype = str(pretok.get("dtype", "uint16"))
    return mix


def pretokenized_usable(mix: MixInfo, tokenizer: Tokenizer) -> bool:
    """Whether the mix's token files were written by ``tokenizer`` (same name, vocabulary and
    end-of-text id), so they can stand in for tokenizing the text."""
    if not mix.token_files:
        return False
    info = mix.manifest.get("tokenizer")
    described = tokenizer.describe()
    return (
        isinstance(info, dict)
        and info.get("name") == described.get("name")
        and info.get("vocab_size") == described.get("vocab_size")
        and (mix.manifest.get("pretokenized") or {}).get("eot_id") == tokenizer.eot_id
    )


def resolve_tokenizer(explicit: str | None, mix: MixInfo, note: Callable[[str], None] | None = None) -> Tokenizer:
    """``--tokenizer`` when given, else the one the mix manifest names, else bytes.

    Falling back to bytes because nothing names a tokenizer (bare Parquet shards, or a
    manifest without a ``tokenizer`` entry) is a silent change of vocabulary and sequence
    length, so it is said once through ``note`` (the trainer's "note: ..." lines). A mix that
    names ``bytes`` itself gets no note."""
    if explicit:
        return load_tokenizer(explicit)
    hint = mix.tokenizer_hint
    if hint is None:
        tokenizer = ByteTokenizer()
        if note is not None:
            note(byte_fallback_note(mix, tokenizer))
        return tokenizer
    if hint == "bytes":
        return ByteTokenizer()
    if not Path(hint).exists():
        raise InputError(
            f"{mix.directory}: the mix was tokenized with {hint}, which does not exist here; pass --tokenizer DIR"
        )
    return load_tokenizer(hint)


def byte_fallback_note(mix: MixInfo, tokenizer: Tokenizer) -> str:
    """The one line said when training falls back to bytes for want of a named tokenizer."""
    if mix.manifest_sha256 is None:
        why = f"{mix.directory} has no {MANIFEST_NAME} (bare Parquet shards)"
    else:
        why = f"the manifest of {mix.directory} names no tokenizer"
    return (
        f"no --tokenizer given and {why}: training on UTF-8 bytes (byte tokenizer, vocab "
        f"{tokenizer.vocab_size}); pass --tokenizer DIR to train with a BPE tokenizer"
    )
