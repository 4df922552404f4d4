"""Parquet shards: size-targeted, atomic writes and streaming, schema-conformed reads.

A shard is written under a hidden temporary name and renamed only once it is complete, so a
killed job never leaves a half-written ``part-*.parquet`` behind. Readers stream one row group
at a time and cast every file to the project schema, so memory stays bounded whatever the
size of the shard set.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.core.accounting import Stats
from curate.core.document import SCHEMA, Document, check_schema, conform_table, null_rows
from curate.core.errors import InputError, OutputError
from curate.core.files import make_public, sha256_file, writing

DEFAULT_SHARD_BYTES = 256 * 1024 * 1024
DEFAULT_ROW_GROUP_BYTES = 32 * 1024 * 1024


@dataclass
class ShardInfo:
    path: str  # relative to the output directory
    rows: int
    bytes: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows, "bytes": self.bytes, "sha256": self.sha256}


class ShardWriter:
    """Writes documents to ``{prefix}-{seq:03d}.parquet`` files of roughly ``shard_bytes`` each.

    Rows are buffered up to ``row_group_bytes`` of text, written as one row group, and a shard is
    closed (and renamed into place) once it holds ``shard_bytes`` of text. Names depend only on
    ``prefix`` and order, so a rerun that redoes an input overwrites the same files.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        prefix: str = "part-00000",
        schema: pa.Schema = SCHEMA,
        shard_bytes: int = DEFAULT_SHARD_BYTES,
        row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
        compression: str = "zstd",
    ):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.schema = schema
        self.shard_bytes = shard_bytes
        self.row_group_bytes = min(row_group_bytes, shard_bytes)
        self.compression = compression
        self.shards: list[ShardInfo] = []
        self._rows: list[dict[str, Any]] = []
        self._buffered = 0
        self._writer: pq.ParquetWriter | None = None
        self._tmp_path: str | None = None
        self._shard_rows = 0
        self._shard_text = 0

    def write(self, doc: Document) -> None:
        self.write_row(doc.to_row())

    def write_row(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        size = len(row.get("text") or "") + 200
        self._buffered += size
        if self._buffered >= self.row_group_bytes:
            self._flush_rows()

    def write_table(self, table: pa.Table) -> None:
        self._flush_rows()
        self._write_table(table)
        if self._shard_text >= self.shard_bytes:
            self._close_shard()

    def _flush_rows(self) -> None:
        if not self._rows:
            return
        table = pa.Table.from_pylist(self._rows, schema=self.schema)
        self._rows, self._buffered = [], 0
        self._write_table(table)
        if self._shard_text >= self.shard_bytes:
            self._close_shard()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A failed write is one OutputError naming the shard; the half-written one is removed."""
        try:
            with writing(self.directory / self._next_name()):
                yield
        except OutputError:
            self.abort()
            raise

    def _write_table(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        with self._writing():
            if self._writer is None:
                final = self._next_name()
                fd, self._tmp_path = tempfile.mkstemp(prefix=f".{final}.", suffix=".tmp", dir=self.directory)
                os.close(fd)
                self._writer = pq.ParquetWriter(self._tmp_path, self.schema, compression=self.compression)
            self._writer.write_table(table)
        self._shard_rows += table.num_rows
        if "text" in table.column_names:
            self._shard_text += sum(len(t) for t in table.column("text").to_pylist() if t) + 200 * table.num_rows
        else:
            self._shard_text += table.nbytes

    def _next_name(self) -> str:
        return f"{self.prefix}-{len(self.shards):03d}.parquet"

    def _close_shard(self) -> None:
        if self._writer is None:
            return
        final = self.directory / self._next_name()
        with self._writing():
            self._writer.close()
            make_public(self._tmp_path)
            os.replace(self._tmp_path, final)
        self.shards.append(
            ShardInfo(path=final.name, rows=self._shard_rows, bytes=final.stat().st_size, sha256=sha256_file(final))
        )
        self._writer, self._tmp_path = None, None
        self._shard_rows = self._shard_text = 0

    def close(self) -> list[ShardInfo]:
        self._flush_rows()
        self._close_shard()
        return self.shards

    def abort(self) -> None:
        """Drop the shard being written (completed shards stay; the caller decides)."""
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError:
                pass  # a full disk fails the close too: the temp file goes all the same
            finally:
                if self._tmp_path and os.path.exists(self._tmp_path):
                    os.unlink(self._tmp_path)
            self._writer, self._tmp_path = None, None
        self._rows = []

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def expand_parquet_inputs(paths: Iterable[str]) -> list[str]:
    """Files, directories (their ``*.parquet``, not recursing into subfolders such as
    ``rejected/``) and globs, sorted within each argument; an argument matching nothing is an
    error. A file reached twice (``a a``, or a file and its directory) is read once."""
    out: list[str] = []
    seen: set[str] = set()
    for p in paths:
        if os.path.isdir(p):
            found = sorted(glob.glob(os.path.join(p, "*.parquet")))
            if not found:
                raise InputError(f"{p}: directory holds no .parquet files")
        elif os.path.isfile(p):
            found = [p]
        else:
            found = sorted(glob.glob(p))
            if not found:
                raise InputError(f"{p}: no such file or directory")
        for f in found:
            key = os.path.realpath(f)
            if not os.path.basename(f).startswith(".") and key not in seen:
                seen.add(key)
                out.append(f)
    return out


def open_parquet(path: str) -> pq.ParquetFile:
    """A Parquet file whose footer reads and whose schema holds documents (:func:`check_schema`):
    an :class:`InputError` naming the file otherwise (:class:`SchemaError` for the schema)."""
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({first_line(exc)})") from None
    check_schema(pf.schema_arrow, path)
    return pf


def first_line(exc: BaseException) -> str:
    """An exception's text as one line (Arrow's messages can span many)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_tables(path: str, columns: list[str] | None = None, batch_rows: int = 2048) -> Iterator[pa.Table]:
    """Stream a Parquet file as schema-conformed tables of at most ``batch_rows`` rows; the
    schema is checked before the first row (:func:`open_parquet`). Rows with a null id or text
    are passed on: the caller counts them (:func:`drop_null_rows`)."""
    pf = open_parquet(path)
    try:
        for batch in pf.iter_batches(batch_size=batch_rows):
            table = conform_table(pa.Table.from_batches([batch]), origin=path)
            yield table.select(columns) if columns else table
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: corrupt Parquet file ({first_line(exc)})") from None


def drop_null_rows(table: pa.Table, stats: Stats, path: str, first_row: int) -> pa.Table:
    """``table`` (rows ``first_row``... of ``path``) without the rows no document can be made of
    (:func:`~curate.core.document.null_rows`), each counted in ``stats`` as read and as one
    error, with its file, row and id (when there is one); the caller counts the rows it gets back."""
    bad = null_rows(table)
    if not bad:
        return table
    ids = table.column("id")
    for row, reason in bad:
        stats.read += 1
        stats.error(reason, file=path, row=first_row + row, id=ids[row].as_py())
    keep = np.ones(table.num_rows, dtype=bool)
    keep[[row for row, _ in bad]] = False
    return table.filter(pa.array(keep))


def read_documents(paths: Iterable[str], batch_rows: int = 2048) -> Iterator[Document]:
    """Stream Documents from Parquet files, directories or globs."""
    for path in expand_parquet_inputs(paths):
        for table in read_tables(path, batch_rows=batch_rows):
            for row in table.to_pylist():
                yield Document.from_row(row)


def count_rows(paths: Iterable[str]) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in expand_parquet_inputs(paths))
