"""The last step of ``curate mix``: the sorted buckets cut into shards of ``shard_size``, and
the shards written by tasks (with ``pretokenize``, a file of token ids per shard beside each).

Where the row groups and shards end depends only on the stream of row sizes in key order
(:class:`ShardPlanner`: a row group closes on the row that fills the room left, the smaller
of ``row_group_bytes`` and what the shard still takes; a shard closes once it holds
``shard_bytes``), never on how the stream was cut into buckets. So the driver plans the cuts
from each sorted bucket's row sizes (8 bytes a row, read from a file the sort task wrote, one
bucket at a time), and every shard is then written by a task of its own
(:func:`write_shard`), reading its rows from the sorted bucket files: the shards are written
in parallel, and the bytes are the same whatever the engine, the number of workers or buckets.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from curate.core.files import sha256_file
from curate.core.shards import ShardInfo, ShardWriter
from curate.core.tokenizer import TOKENIZER_FILE, Tokenizer, load_tokenizer

TOKENS_DIR = "tokens"
ROW_OVERHEAD = 200  # bytes per row beside its text, as ShardWriter counts it
SORTED_BATCH_ROWS = 4096  # rows per record batch of a sorted bucket file (random access by row)

# A segment of the sorted stream: (sorted bucket file, first row, end row) in that file.
Segment = tuple[str, int, int]


def row_sizes(table: pa.Table) -> np.ndarray:
    """Bytes each row counts for against a shard: its UTF-8 text plus :data:`ROW_OVERHEAD`."""
    text = pc.binary_length(pc.cast(table.column("text"), pa.binary()))
    return np.asarray(text.to_numpy(zero_copy_only=False), dtype=np.int64) + ROW_OVERHEAD


def write_sorted(table: pa.Table, path: str) -> None:
    """A sorted bucket as an Arrow IPC file of :data:`SORTED_BATCH_ROWS`-row batches (so that
    rows ``lo..hi`` are read without the rest) and its row sizes as ``path + ".sizes"``;
    both renamed into place, so a retried task rewrites them whole."""
    with pa.OSFile(path + ".tmp", "wb") as sink:
        with ipc.new_file(sink, table.schema, options=ipc.IpcWriteOptions(compression="lz4")) as writer:
            for lo in range(0, table.num_rows, SORTED_BATCH_ROWS):
                for batch in table.slice(lo, SORTED_BATCH_ROWS).combine_chunks().to_batches():
                    writer.write_batch(batch)
    row_sizes(table).astype("<i8").tofile(path + ".sizes.tmp")
    os.replace(path + ".tmp", path)
    os.replace(path + ".sizes.tmp", path + ".sizes")


def read_rows(segments: list[Segment]) -> pa.Table:
    """The rows of ``segments`` (in order) from sorted bucket files."""
    tables = []
    for path, lo, hi in segments:
        with pa.OSFile(path, "rb") as src:
            reader = ipc.open_file(src)
            first, last = lo // SORTED_BATCH_ROWS, (hi - 1) // SORTED_BATCH_ROWS
            batches = [reader.get_batch(i) for i in range(first, last + 1)]
            tables.append(pa.Table.from_batches(batches).slice(lo - first * SORTED_BATCH_ROWS, hi - lo))
    return pa.concat_tables(tables)


class ShardPlanner:
    """The row groups and shards of the sorted stream, from its row sizes alone (see the
    module docstring). :meth:`add` each sorted bucket in key order; it returns the shards that
    bucket completed as ``(index, row groups)``, a row group being a list of segments."""

    def __init__(self, shard_bytes: int, row_group_bytes: int):
        self.shard_bytes = shard_bytes
        self.row_group_bytes = row_group_bytes
        self.shards = 0  # shards planned so far
        self._groups: list[list[Segment]] = []  # the open shard's closed row groups
        self._group: list[Segment] = []  # the open row group's segments
        self._filled = 0  # bytes in the open shard's closed row groups
        self._pending = 0  # bytes in the open row group

    def _room(self) -> int:
        return min(self.shard_bytes - self._filled, self.row_group_bytes)

    def add(self, path: str, sizes: np.ndarray) -> list[tuple[int, list[list[Segment]]]]:
        done = []
        reached = np.cumsum(sizes, dtype=np.int64)
        start, before = 0, 0  # the first row of ``path`` not yet in a row group; bytes before it
        while start < len(sizes):
            k = int(np.searchsorted(reached, before + self._room() - self._pending, side="left"))
            if k >= len(sizes):  # the open row group goes on into the next bucket
                self._group.append((path, start, len(sizes)))
                self._pending += int(reached[-1]) - before
                break
            self._group.append((path, start, k + 1))
            self._filled += self._pending + int(reached[k]) - before
            self._groups.append(self._group)
            self._group, self._pending = [], 0
            start, before = k + 1, int(reached[k])
            if self._filled >= self.shard_bytes:
                done.append(self._close())
        return done

    def _close(self) -> tuple[int, list[list[Segment]]]:
        shard = (self.shards, self._groups)
        self.shards += 1
        self._groups, self._filled = [], 0
        return shard

    def finish(self) -> list[tuple[int, list[list[Segment]]]]:
        """The last shard: what is left, its last row group holding the rest."""
        if self._group:
            self._groups.append(self._group)
            self._group, self._pending = [], 0
        return [self._close()] if self._groups else []


_TOKENIZERS: dict[tuple[str | None, int], Tokenizer] = {}


def cached_tokenizer(spec: str | None) -> Tokenizer:
    """The tokenizer at ``spec`` (None: UTF-8 bytes), loaded once per worker process (again
    when its file changes)."""
    try:
        path = spec if not spec or os.path.isfile(spec) else os.path.join(spec, TOKENIZER_FILE)
        stamp = os.stat(path).st_mtime_ns if path else 0
    except OSError:
        stamp = -1
    key = (spec, stamp)
    if key not in _TOKENIZERS:
        if len(_TOKENIZERS) > 8:
            _TOKENIZERS.clear()
        _TOKENIZERS[key] = load_tokenizer(spec)
    return _TOKENIZERS[key]


def token_dtype(tokenizer: Tokenizer) -> np.dtype:
    """The token files' values: 16 bits when the vocabulary fits, little-endian on any machine."""
    return np.dtype(np.uint16 if tokenizer.vocab_size <= 65536 else np.uint32).newbyteorder("<")


def write_shard(job: tuple[str, int, list[list[Segment]], int, str | None, bool]) -> dict[str, Any]:
    """One shard (a task): its row groups read from the sorted bucket files and written as
    ``part-NNNNN-000.parquet``, one Parquet row group each, and with ``pretokenize`` its token
    ids as ``tokens/part-NNNNN-000.bin``; both renamed into place. Returns the shard's
    :class:`~curate.core.shards.ShardInfo` and its token file's entry (None without)."""
    output_dir, index, groups, row_group_bytes, tokenizer_spec, pretokenize = job
    tokenizer = cached_tokenizer(tokenizer_spec) if pretokenize else None
    writer = ShardWriter(output_dir, prefix=f"part-{index:05d}", shard_bytes=1 << 62, row_group_bytes=row_group_bytes)
    tok_tmp = os.path.join(output_dir, TOKENS_DIR, f".part-{index:05d}-000.bin.tmp")
    tok_fh, tok_count = None, 0
    try:
        if tokenizer is not None:
            os.makedirs(os.path.dirname(tok_tmp), exist_ok=True)
            tok_fh = open(tok_tmp, "wb")
        for segments in groups:
            part = read_rows(segments)
            ids = part.column("_ids") if "_ids" in part.column_names else None
            writer.write_table(part.drop_columns(["_ids"]) if ids is not None else part)
            if tok_fh is not None:
                flat = _token_ids(part, ids, tokenizer)
                tok_fh.write(flat.astype(token_dtype(tokenizer)).tobytes())
                tok_count += int(flat.shape[0])
        infos = writer.close()
    except BaseException:
        writer.abort()
        if tok_fh is not None:
            tok_fh.close()
            os.unlink(tok_tmp)
        raise
    entry = None
    if tok_fh is not None:
        tok_fh.close()
        final = os.path.join(output_dir, TOKENS_DIR, infos[0].path.replace(".parquet", ".bin"))
        os.replace(tok_tmp, final)
        entry = {
            "shard": infos[0].path,
            "path": os.path.relpath(final, output_dir),
            "tokens": tok_count,
            "bytes": os.path.getsize(final),
            "sha256": sha256_file(final),
        }
    return {"shards": infos, "tokens": entry, "rows": sum(i.rows for i in infos)}


def _token_ids(table: pa.Table, encoded: pa.ChunkedArray | None, tokenizer: Tokenizer) -> np.ndarray:
    """Token ids of the rows, each followed by end-of-text; ``encoded``: the ids the
    shuffle's reduce tasks computed (else they are encoded here)."""
    eot = tokenizer.eot_id
    if encoded is not None:
        lists = encoded.combine_chunks()
        values = np.asarray(pc.list_flatten(lists).to_numpy(zero_copy_only=False), dtype=np.int64)
        lengths = np.asarray(pc.list_value_length(lists).to_numpy(zero_copy_only=False), dtype=np.int64)
        flat = np.full(int(lengths.sum()) + lengths.shape[0], eot, dtype=np.int64)
        ends = np.cumsum(lengths + 1) - 1
        keep = np.ones(flat.shape[0], dtype=bool)
        keep[ends] = False
        flat[keep] = values
        return flat
    ids = tokenizer.encode_batch(table.column("text").to_pylist())
    return np.fromiter(itertools.chain.from_iterable(doc + [eot] for doc in ids), dtype=np.int64)


class OutputWriter:
    """The shards of a mix as their tasks report them, in shard order: what the manifest lists
    (``shards``, ``token_files`` and the token ``dtype``)."""

    def __init__(self, output_dir: str, shard_bytes: int, tokenizer: Tokenizer | None):
        self.output_dir = output_dir
        self.shard_bytes = shard_bytes
        self.row_group_bytes = min(32 * 1024 * 1024, shard_bytes)
        self.dtype = token_dtype(tokenizer) if tokenizer is not None else np.dtype(np.uint16)
        self.shards: list[ShardInfo] = []
        self.token_files: list[dict[str, Any]] = []

    def planner(self) -> ShardPlanner:
        return ShardPlanner(self.shard_bytes, self.row_group_bytes)

    def add(self, result: dict[str, Any]) -> None:
        """A :func:`write_shard` result (results must come in shard order)."""
        self.shards.extend(result["shards"])
        if result["tokens"] is not None:
            self.token_files.append(result["tokens"])
