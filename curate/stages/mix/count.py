"""Pass 1 of ``curate mix``: every document of a source tokenized once, keeping only its
token count (:class:`SourceCount`), one task per part of the source, the parts' counts then
combined in file order (:func:`combine_counts`)."""

from __future__ import annotations

import zlib
from array import array
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.core.accounting import Stats
from curate.core.progress import Progress
from curate.core.readers import SourceFile, SourceReader
from curate.core.tokenizer import ByteTokenizer, Tokenizer
from curate.stages.mix.chunks import split_text
from curate.stages.mix.config import SourceSpec


@dataclass
class Part:
    """A run of whole files of a source that one task counts and scatters, and where its
    documents and positions start in the source."""

    files: list[SourceFile]
    docs: int = 0
    positions: int = 0
    id_digest: int = 0
    doc_start: int = 0
    pos_start: int = 0


@dataclass
class SourceCount:
    """What pass 1 learned about one source."""

    spec: SourceSpec
    n_tokens: np.ndarray  # int32 per document position (4 bytes a document; a memory map on the driver)
    stats: Stats
    files: list[str]
    chars: int
    bytes: int
    id_digest: int  # crc32 of the ids in order, to catch inputs changing between passes
    failed: dict[str, tuple[str, str]]  # files that could not be read: path -> (reason, message)
    docs: int = 0  # documents read; a position of n_tokens is a document or one of its chunks
    split_docs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # their ordinals
    split_chunks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # chunks of each
    parts: list[Part] = field(default_factory=list)  # the runs of files tasks counted

    @property
    def positions(self) -> int:
        """Rows the source offers: its documents, a split one counted once per chunk."""
        return int(self.n_tokens.shape[0])

    def chunks_per_doc(self, first: int, n: int) -> np.ndarray:
        """The number of positions of documents ``first`` .. ``first + n - 1``."""
        reps = np.ones(n, dtype=np.int64)
        lo, hi = np.searchsorted(self.split_docs, [first, first + n])
        reps[self.split_docs[lo:hi] - first] = self.split_chunks[lo:hi]
        return reps

    @property
    def tokens(self) -> int:
        return int(self.n_tokens.sum(dtype=np.int64))


def count_tokens(texts: pa.ChunkedArray | pa.Array, tokenizer: Tokenizer) -> np.ndarray:
    if isinstance(tokenizer, ByteTokenizer):
        return np.asarray(pc.binary_length(pc.cast(texts, pa.binary())).to_numpy(zero_copy_only=False), dtype=np.int64)
    return np.asarray(tokenizer.count(texts.to_pylist()), dtype=np.int64)


def source_reader(
    spec: SourceSpec, skip: dict[str, tuple[str, str]] | None = None, files: list[SourceFile] | None = None
) -> SourceReader:
    """The reader of a source (of its ``files`` only, when given); ``skip``: the files pass 1
    could not read (not read again)."""
    if files is None:
        paths = spec.paths
    else:
        paths = []
    reader = SourceReader(spec.name, paths, spec.format, spec.text_field, spec.id_field, spec.date_field, skip=skip)
    if files is not None:
        reader.files = list(files)
    return reader


def combine_counts(spec: SourceSpec, parts: list[SourceCount], n_tokens: np.ndarray | None = None) -> SourceCount:
    """One source's count from its parts' counts (in file order); ``n_tokens``: their token
    counts already joined (into a file, as the driver does part by part), else joined here."""
    stats = Stats()
    failed: dict[str, tuple[str, str]] = {}
    infos: list[Part] = []
    split_docs, split_chunks = [], []
    docs = positions = 0
    for c in parts:
        stats.merge(c.stats)
        failed.update(c.failed)
        n_pos = c.parts[0].positions  # also when the part's n_tokens went to a file
        infos.append(Part(c.parts[0].files, c.docs, n_pos, c.id_digest, docs, positions))
        split_docs.append(c.split_docs + docs)
        split_chunks.append(c.split_chunks)
        docs += c.docs
        positions += n_pos
    if n_tokens is None:
        n_tokens = np.concatenate([c.n_tokens for c in parts]) if parts else np.zeros(0, np.int32)
    if n_tokens.shape[0] != positions:
        raise ValueError(f"source {spec.name!r}: {n_tokens.shape[0]} token counts for {positions} positions")
    return SourceCount(
        spec,
        n_tokens,
        stats,
        [f for c in parts for f in c.files],
        sum(c.chars for c in parts),
        sum(c.bytes for c in parts),
        zlib.crc32(b"".join(c.id_digest.to_bytes(4, "little") for c in parts)),
        failed,
        docs=docs,
        split_docs=np.concatenate(split_docs) if split_docs else np.zeros(0, np.int64),
        split_chunks=np.concatenate(split_chunks) if split_chunks else np.zeros(0, np.int64),
        parts=infos,
    )


def crc_ids(crc: int, table: pa.Table) -> int:
    return zlib.crc32("\x1f".join(table.column("id").to_pylist()).encode("utf-8", "replace"), crc)


def count_source(
    spec: SourceSpec,
    tokenizer: Tokenizer,
    progress: Progress | None = None,
    chunk_limit: int | None = None,
    files: list[SourceFile] | None = None,
) -> SourceCount:
    """Pass 1 over one source (or its ``files`` only): tokens per position (a document, or
    each chunk of a document longer than ``chunk_limit``). A Parquet file that fails partway is
    left out entirely: the counts of its rows already read are dropped (its documents get no
    position)."""
    reader = source_reader(spec, files=files)
    counts = array("i")
    split_docs, split_chunks = array("q"), array("q")
    chars = nbytes = docs = 0
    crc = 0
    mark: tuple[str | None, int, int, int, int, int, int] = (None, 0, 0, 0, 0, 0, 0)  # where the current file began
    for path, table in reader.batches():
        if table is None:  # ``path`` failed after some of its rows: back to where it began
            if mark[0] == path:
                _, n_pos, chars, nbytes, crc, docs, n_split = mark
                del counts[n_pos:], split_docs[n_split:], split_chunks[n_split:]
            continue
        if path is not None and mark[0] != path:
            mark = (path, len(counts), chars, nbytes, crc, docs, len(split_docs))
        text = table.column("text")
        per_doc = count_tokens(text, tokenizer)
        long = np.flatnonzero(per_doc > chunk_limit) if chunk_limit else np.zeros(0, np.int64)
        if long.shape[0] == 0:
            counts.extend(per_doc.tolist())
        else:
            done = 0
            for i in long.tolist():
                counts.extend(per_doc[done:i].tolist())
                chunks = split_text(text[i].as_py(), chunk_limit, tokenizer)
                counts.extend(tokenizer.count(chunks))
                split_docs.append(docs + i)
                split_chunks.append(len(chunks))
                done = i + 1
            counts.extend(per_doc[done:].tolist())
        docs += table.num_rows
        chars += pc.sum(pc.utf8_length(text)).as_py() or 0
        nbytes += pc.sum(pc.binary_length(pc.cast(text, pa.binary()))).as_py() or 0
        crc = crc_ids(crc, table)
        if progress is not None:
            progress.add(docs=table.num_rows)
    return SourceCount(
        spec,
        np.frombuffer(counts, dtype=np.int32).copy() if counts else np.zeros(0, np.int32),
        reader.stats,
        [f.path for f in reader.files],
        chars,
        nbytes,
        crc,
        reader.failed,
        docs=docs,
        split_docs=np.frombuffer(split_docs, dtype=np.int64).copy() if split_docs else np.zeros(0, np.int64),
        split_chunks=np.frombuffer(split_chunks, dtype=np.int64).copy() if split_chunks else np.zeros(0, np.int64),
        parts=[Part(list(reader.files), docs, len(counts), crc)],
    )
