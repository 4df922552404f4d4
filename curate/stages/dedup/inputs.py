"""The inputs of ``curate dedup`` as Parquet metadata describes them (:func:`inspect_inputs`, with
the schema check every stage makes: :func:`curate.core.shards.open_parquet`), the columns every
read casts, and the batching of texts that bounds a worker's memory while it tokenizes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from curate.core.document import SCHEMA, SchemaError
from curate.core.errors import InputError
from curate.core.shards import first_line, open_parquet

# Characters of text tokenized together by one worker (bounds its memory, ~60 B per char).
BATCH_CHARS = 1_000_000


def char_batches(texts: list[str]) -> Iterator[tuple[int, int]]:
    """``(start, end)`` slices of ``texts`` of about BATCH_CHARS characters (at least one text
    each): tokenizing a batch at a time bounds a worker's memory."""
    start = 0
    while start < len(texts):
        end, chars = start, 0
        while end < len(texts) and (end == start or chars + len(texts[end]) <= BATCH_CHARS):
            chars += len(texts[end])
            end += 1
        yield start, end
        start = end


def unreadable(path: str, row_group: int, exc: Exception) -> tuple[str, str]:
    """The error reason and one-line message of a row group that could not be read: a value
    that does not fit its column's type is ``bad_schema`` (its message names the column), any
    other failure ``unreadable_file`` (pyarrow's messages can span several lines)."""
    if isinstance(exc, SchemaError):
        return exc.reason, str(exc)
    return "unreadable_file", f"{path}: row group {row_group} unreadable ({type(exc).__name__}: {first_line(exc)})"


@dataclass
class InputInfo:
    """One input file as its Parquet metadata describes it."""

    path: str
    index: int
    rows: int = 0
    bytes: int = 0
    text_bytes: int = 0
    mtime_ns: int = 0
    row_groups: list[int] = field(default_factory=list)
    error: str | None = None  # why the input cannot be read (one line, naming it)
    error_reason: str | None = None  # and the manifest's error reason for it

    def fingerprint(self) -> dict[str, Any]:
        return {"path": self.path, "bytes": self.bytes, "mtime_ns": self.mtime_ns, "rows": self.rows}


def cast_columns(schema: pa.Schema) -> list[str]:
    """Columns of :data:`~curate.core.document.SCHEMA` that a file stores with another type: they
    are cast on every read (:func:`curate.core.document.conform_column`), and a cast can fail
    on a value (an integer too large for its column)."""
    return [f.name for f in SCHEMA if f.name in schema.names and not schema.field(f.name).type.equals(f.type)]


def inspect_inputs(paths: list[str]) -> list[InputInfo]:
    """Row counts and sizes of every input; an unreadable one gets ``error`` set, not raised."""
    infos = []
    for index, path in enumerate(paths):
        info = InputInfo(path=path, index=index)
        try:
            st = os.stat(path)
            info.bytes, info.mtime_ns = st.st_size, st.st_mtime_ns
            pf = open_parquet(path)  # the footer and the schema every stage checks
            names = pf.schema_arrow.names
            meta = pf.metadata
            info.rows = meta.num_rows
            info.row_groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            text_col = names.index("text")
            info.text_bytes = sum(
                meta.row_group(i).column(text_col).total_uncompressed_size for i in range(meta.num_row_groups)
            )
        except InputError as exc:
            info.error, info.error_reason = str(exc), getattr(exc, "reason", "unreadable_file")
            info.rows, info.row_groups = 0, []
        except Exception as exc:  # any unreadable input is reported, never a traceback
            info.error = f"{path}: not a readable Parquet file ({first_line(exc)})"
            info.error_reason = "unreadable_file"
            info.rows, info.row_groups = 0, []
        infos.append(info)
    return infos
