"""The last step of ``curate mix``: the sorted rows streamed into shards of ``shard_size``
(:class:`OutputWriter`) and, with ``pretokenize``, a file of token ids per shard."""

from __future__ import annotations

import itertools
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.core.files import sha256_file
from curate.core.shards import ShardInfo, ShardWriter
from curate.core.tokenizer import Tokenizer

TOKENS_DIR = "tokens"
ROW_OVERHEAD = 200  # bytes per row beside its text, as ShardWriter counts it


class OutputWriter:
    """Writes sorted rows into shards of ``shard_bytes`` text (``part-NNNNN-000.parquet``),
    with an optional ``tokens/part-NNNNN-000.bin`` of token ids per shard."""

    def __init__(self, output_dir: str, shard_bytes: int, tokenizer: Tokenizer | None):
        self.output_dir = output_dir
        self.shard_bytes = shard_bytes
        self.row_group_bytes = min(32 * 1024 * 1024, shard_bytes)
        self.tokenizer = tokenizer
        self.dtype = np.uint16 if tokenizer is not None and tokenizer.vocab_size <= 65536 else np.uint32
        self.shards: list[ShardInfo] = []
        self.token_files: list[dict[str, Any]] = []
        self._writer: ShardWriter | None = None
        self._filled = 0
        self._tok_fh: Any = None
        self._tok_tmp: str | None = None
        self._tok_count = 0
        self._pending: list[pa.Table] = []
        self._pending_bytes = 0

    def _open(self) -> None:
        index = len(self.shards)
        self._writer = ShardWriter(
            self.output_dir, prefix=f"part-{index:05d}", shard_bytes=1 << 62, row_group_bytes=self.row_group_bytes
        )
        self._filled = 0
        if self.tokenizer is not None:
            tok_dir = os.path.join(self.output_dir, TOKENS_DIR)
            os.makedirs(tok_dir, exist_ok=True)
            self._tok_tmp = os.path.join(tok_dir, f".part-{index:05d}-000.bin.tmp")
            self._tok_fh = open(self._tok_tmp, "wb")
            self._tok_count = 0

    def _close(self) -> None:
        if self._writer is None:
            return
        infos = self._writer.close()
        self.shards.extend(infos)
        if self._tok_fh is not None:
            self._tok_fh.close()
            final = os.path.join(self.output_dir, TOKENS_DIR, infos[0].path.replace(".parquet", ".bin"))
            os.replace(self._tok_tmp, final)
            self.token_files.append(
                {
                    "shard": infos[0].path,
                    "path": os.path.relpath(final, self.output_dir),
                    "tokens": self._tok_count,
                    "bytes": os.path.getsize(final),
                    "sha256": sha256_file(final),
                }
            )
            self._tok_fh = None
        self._writer = None

    def write(self, table: pa.Table) -> None:
        """Append rows. Shard and row-group cuts depend only on the row stream, never on how
        it was split into calls, so the bucket count cannot change the bytes written."""
        if table.num_rows == 0:
            return
        self._pending.append(table)
        self._pending_bytes += int(self._sizes(table).sum())
        while self._pending_bytes >= self._room():
            self._emit(final=False)

    def _sizes(self, table: pa.Table) -> np.ndarray:
        return (
            np.asarray(
                pc.binary_length(pc.cast(table.column("text"), pa.binary())).to_numpy(zero_copy_only=False),
                dtype=np.int64,
            )
            + ROW_OVERHEAD
        )

    def _room(self) -> int:
        return min(self.shard_bytes - self._filled, self.row_group_bytes)

    def _emit(self, final: bool) -> None:
        """Write one row group: the pending rows up to the one that fills the room left."""
        table = pa.concat_tables(self._pending) if len(self._pending) > 1 else self._pending[0]
        sizes = self._sizes(table)
        reached = np.cumsum(sizes)
        k = int(np.searchsorted(reached, self._room(), side="left"))
        end = table.num_rows if final and k >= table.num_rows else min(table.num_rows, k + 1)
        part, rest = table.slice(0, end), table.slice(end)
        if self._writer is None:
            self._open()
        ids = part.column("_ids") if "_ids" in part.column_names else None
        self._writer.write_table(part.drop_columns(["_ids"]) if ids is not None else part)
        if self.tokenizer is not None:
            self._write_tokens(part, ids)
        self._filled += int(sizes[:end].sum())
        self._pending = [rest] if rest.num_rows else []
        self._pending_bytes = int(sizes[end:].sum())
        if self._filled >= self.shard_bytes:
            self._close()

    def _write_tokens(self, table: pa.Table, encoded: pa.ChunkedArray | None) -> None:
        """Token ids of the rows, each followed by end-of-text; ``encoded``: the ids the
        shuffle's reduce tasks computed (else they are encoded here)."""
        eot = self.tokenizer.eot_id
        if encoded is not None:
            lists = encoded.combine_chunks()
            values = np.asarray(pc.list_flatten(lists).to_numpy(zero_copy_only=False), dtype=np.int64)
            lengths = np.asarray(pc.list_value_length(lists).to_numpy(zero_copy_only=False), dtype=np.int64)
            flat = np.full(int(lengths.sum()) + lengths.shape[0], eot, dtype=np.int64)
            ends = np.cumsum(lengths + 1) - 1
            keep = np.ones(flat.shape[0], dtype=bool)
            keep[ends] = False
            flat[keep] = values
        else:
            ids = self.tokenizer.encode_batch(table.column("text").to_pylist())
            flat = np.fromiter(itertools.chain.from_iterable(doc + [eot] for doc in ids), dtype=np.int64)
        # Fixed little-endian layout, whatever the machine, so the files are portable.
        self._tok_fh.write(flat.astype(np.dtype(self.dtype).newbyteorder("<")).tobytes())
        self._tok_count += int(flat.shape[0])

    def close(self) -> list[ShardInfo]:
        while self._pending:
            self._emit(final=True)
        self._close()
        return self.shards

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        if self._tok_fh is not None:
            self._tok_fh.close()
            if self._tok_tmp and os.path.exists(self._tok_tmp):
                os.unlink(self._tok_tmp)
            self._tok_fh = None
