"""The external shuffle of ``curate mix`` (its passes 3 and 4).

Every selected (source, document, epoch) row gets a seeded 64-bit key (:func:`shuffle_keys`)
and goes to one of N bucket files by key range (:class:`Buckets`, one set per source's task);
each bucket is then gathered over the sources and sorted by a task of its own
(:func:`sort_bucket`), and the sorted stream is cut into shards that tasks write
(:mod:`curate.stages.mix.writer`). The output order is the global key order whatever N is, so
memory is bounded by one bucket (per worker) and the bytes written do not depend on it. :class:`Cutoff` tracks the training cutoff over the selected documents.
"""

from __future__ import annotations

import math
import os
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from curate.core.accounting import Stats
from curate.core.document import SCHEMA
from curate.stages.mix.writer import TOKENS_DIR, OutputWriter, cached_tokenizer, write_sorted

__all__ = [
    "BUCKET_SCHEMA",
    "TOKENS_DIR",
    "Buckets",
    "Cutoff",
    "OutputWriter",
    "Realized",
    "Selected",
    "bucket_index",
    "cached_tokenizer",
    "shuffle_keys",
    "sort_bucket",
]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x.copy()
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def shuffle_keys(seed: int, source_name: str, positions: np.ndarray, epochs: np.ndarray) -> np.ndarray:
    """A seeded random 64-bit key per (source, document position, epoch)."""
    base = (np.uint64(int(seed) & 0xFFFFFFFF) << np.uint64(32)) | np.uint64(zlib.crc32(source_name.encode()))
    with np.errstate(over="ignore"):
        x = positions.astype(np.uint64) * _GOLDEN + epochs.astype(np.uint64) * np.uint64(0xD6E8FEB86659FD93)
        x ^= _mix64(np.full(positions.shape, base, dtype=np.uint64))
    return _mix64(x)


BUCKET_SCHEMA = (
    SCHEMA.append(pa.field("_key", pa.uint64()))
    .append(pa.field("_src", pa.int32()))
    .append(pa.field("_pos", pa.int64()))
)


class Buckets:
    """The map side of the shuffle for one task (``tag``): its rows, by key range into N
    buckets, buffered per bucket and flushed as record batches into ONE Arrow IPC file, with
    the bucket of every batch kept (:meth:`close` returns them), so a task writes one file
    whatever N is and the reduce side (:func:`sort_bucket`) reads only its own batches."""

    def __init__(self, directory: Path, n: int, flush_bytes: int, tag: int = 0):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.n = n
        self.flush_bytes = flush_bytes
        self.path = directory / f"map-{tag:06d}.arrow"
        self._sink: Any = None
        self._writer: Any = None
        self._batch_buckets: list[int] = []
        self._pending: list[list[pa.Table]] = [[] for _ in range(n)]
        self._pending_bytes = [0] * n

    def add(self, bucket: int, table: pa.Table) -> None:
        self._pending[bucket].append(table)
        self._pending_bytes[bucket] += table.nbytes
        if self._pending_bytes[bucket] >= self.flush_bytes:
            self._flush(bucket)

    def _flush(self, bucket: int) -> None:
        if not self._pending[bucket]:
            return
        if self._writer is None:
            self._sink = pa.OSFile(str(self.path), "wb")
            self._writer = ipc.new_file(self._sink, BUCKET_SCHEMA, options=ipc.IpcWriteOptions(compression="lz4"))
        table = pa.concat_tables(self._pending[bucket]).combine_chunks()
        for batch in table.to_batches():
            self._writer.write_batch(batch)
            self._batch_buckets.append(bucket)
        self._pending[bucket], self._pending_bytes[bucket] = [], 0

    def close(self) -> tuple[str, list[int]] | None:
        """Flush and close; (the file, the bucket of each of its batches), None if empty."""
        try:
            for b in range(self.n):
                self._flush(b)
        finally:
            if self._writer is not None:
                self._writer.close()
                self._sink.close()
                self._writer = None
        return (str(self.path), self._batch_buckets) if self._batch_buckets else None


def bucket_index(written: list[tuple[str, list[int]] | None], n: int) -> list[list[tuple[str, list[int]]]]:
    """Where each of the ``n`` buckets lies in the map tasks' files: (file, its batch numbers)."""
    out: list[list[tuple[str, list[int]]]] = [[] for _ in range(n)]
    for item in written:
        if item is None:
            continue
        path, buckets = item
        per_bucket: dict[int, list[int]] = {}
        for i, bucket in enumerate(buckets):
            per_bucket.setdefault(bucket, []).append(i)
        for bucket, numbers in sorted(per_bucket.items()):
            out[bucket].append((path, numbers))
    return out


def sort_bucket(job: tuple[int, list[tuple[str, list[int]]], str | None, bool]) -> dict[str, Any] | None:
    """The reduce side of the shuffle (a task): one bucket's batches from every map task's
    file, sorted by key and (with ``pretokenize``) encoded into an ``_ids`` column, written to
    one sorted file beside them with its row sizes
    (:func:`~curate.stages.mix.writer.write_sorted`). Returns the file and its row count
    (None for an empty bucket)."""
    bucket, where, tokenizer, pretokenize = job
    batches = []
    for path, numbers in where:
        with pa.OSFile(path, "rb") as src:
            reader = ipc.open_file(src)
            batches.extend(reader.get_batch(i) for i in numbers)
    if not batches:
        return None
    table = pa.Table.from_batches(batches, schema=BUCKET_SCHEMA)
    order = pc.sort_indices(
        table,
        sort_keys=[("_key", "ascending"), ("_src", "ascending"), ("_pos", "ascending"), ("epoch", "ascending")],
    )
    table = table.take(order).drop_columns(["_key", "_src", "_pos"])
    if pretokenize:
        ids = cached_tokenizer(tokenizer).encode_batch(table.column("text").to_pylist())
        table = table.append_column("_ids", pa.array(ids, pa.list_(pa.int64())))
    out = os.path.join(os.path.dirname(where[0][0]), f"sorted-{bucket:05d}.arrow")
    write_sorted(table, out)
    return {"path": out, "rows": table.num_rows}


class Cutoff:
    """Latest document date and the 99th percentile over the mix's distinct documents, in
    bounded memory: exact maximum; the percentile from an hourly histogram (rounded down to
    the hour)."""

    HOUR_US = 3600 * 1_000_000

    def __init__(self) -> None:
        self.hours: Counter[int] = Counter()
        self.max_us: int | None = None
        self.min_us: int | None = None
        self.undated = 0
        self.dated = 0

    def merge(self, other: Cutoff) -> None:
        """Add what ``other`` saw (the cutoff of another source's task)."""
        self.hours.update(other.hours)
        self.undated += other.undated
        self.dated += other.dated
        for name, pick in (("max_us", max), ("min_us", min)):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, theirs if mine is None else mine if theirs is None else pick(mine, theirs))

    def add(self, dates: pa.ChunkedArray | pa.Array) -> None:
        self.undated += dates.null_count
        valid = pc.drop_null(dates)
        if len(valid) == 0:
            return
        us = np.asarray(pc.cast(valid, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
        self.dated += int(us.shape[0])
        hi, lo = int(us.max()), int(us.min())
        self.max_us = hi if self.max_us is None else max(self.max_us, hi)
        self.min_us = lo if self.min_us is None else min(self.min_us, lo)
        hours, counts = np.unique(us // self.HOUR_US, return_counts=True)
        for h, n in zip(hours.tolist(), counts.tolist()):
            self.hours[h] += n

    @staticmethod
    def _iso(us: int) -> str:
        return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "max": None,
            "p99": None,
            "min": None,
            "dated_docs": self.dated,
            "undated_docs": self.undated,
        }
        if self.max_us is None:
            return out
        rank = math.ceil(0.99 * self.dated)  # nearest-rank percentile
        seen = 0
        p99_hour = None
        for hour in sorted(self.hours):
            seen += self.hours[hour]
            if seen >= rank:
                p99_hour = hour
                break
        out["max"] = self._iso(self.max_us)
        out["min"] = self._iso(self.min_us)
        out["p99"] = self._iso(max(self.min_us, p99_hour * self.HOUR_US)) if p99_hour is not None else None
        return out


@dataclass
class Realized:
    tokens: int = 0
    rows: int = 0
    docs: int = 0
    chars: int = 0  # of rows, repeats included
    doc_chars: int = 0  # of distinct rows taken (documents or chunks)
    chunks: int = 0  # distinct positions taken (a whole document is one)
    split_docs: int = 0  # documents taken that were cut into chunks
    cut_rows: int = 0  # rows cut to end their source's partial epoch on its target

    def add(self, other: Realized) -> None:
        """Add the counts of another part of the same source."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Selected:
    """What pass 2 put into the buckets."""

    stats: Stats = field(default_factory=Stats)
    realized: dict[str, Realized] = field(default_factory=dict)
    cutoff: Cutoff = field(default_factory=Cutoff)
    inputs: list[dict[str, Any]] = field(default_factory=list)
