"""The inputs of ``curate dedup`` as Parquet metadata describes them (:func:`inspect_inputs`), the
schema checks and casts every read goes through, and the batching of texts that bounds a worker's
memory while it tokenizes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.core.document import REQUIRED_COLUMNS, SCHEMA

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


def unreadable(path: str, row_group: int, exc: Exception) -> str:
    """The one-line error of a row group that could not be read (pyarrow's messages can span
    several lines)."""
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{path}: row group {row_group} unreadable ({type(exc).__name__}: {first_line})"


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
    error: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        return {"path": self.path, "bytes": self.bytes, "mtime_ns": self.mtime_ns, "rows": self.rows}


def cast_columns(schema: pa.Schema) -> list[str]:
    """Columns of :data:`~curate.core.document.SCHEMA` that a file stores with another type: they
    are cast on every read (:func:`curate.core.document.conform_table`), and a cast can fail."""
    return [f.name for f in SCHEMA if f.name in schema.names and not schema.field(f.name).type.equals(f.type)]


def cast_column(values: pa.Array | pa.ChunkedArray, name: str) -> pa.Array | pa.ChunkedArray:
    """``values`` of column ``name`` cast to its schema type, the failure naming the column."""
    target = SCHEMA.field(name).type
    try:
        return values.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"column {name!r} has type {values.type}, expected {target} ({exc})") from None


def check_schema(schema: pa.Schema) -> None:
    """Raise ValueError when a file cannot hold curate documents: a required column missing,
    or a column whose type can never be cast to the schema's (text where a map belongs, say).
    Casts that depend on the values (numbers stored as text) are checked by the signature
    pass, which casts every such column, so a file fails there and not halfway through the
    output pass."""
    names = schema.names
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ValueError(
            f"not a curate document file (missing column(s) {', '.join(missing)}; "
            f"found {', '.join(names[:12]) or 'none'})"
        )
    for name in cast_columns(schema):
        cast_column(pa.chunked_array([], type=schema.field(name).type), name)


def inspect_inputs(paths: list[str]) -> list[InputInfo]:
    """Row counts and sizes of every input; an unreadable one gets ``error`` set, not raised."""
    infos = []
    for index, path in enumerate(paths):
        info = InputInfo(path=path, index=index)
        try:
            st = os.stat(path)
            info.bytes, info.mtime_ns = st.st_size, st.st_mtime_ns
            pf = pq.ParquetFile(path)
            names = pf.schema_arrow.names
            check_schema(pf.schema_arrow)
            meta = pf.metadata
            info.rows = meta.num_rows
            info.row_groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            text_col = names.index("text")
            info.text_bytes = sum(
                meta.row_group(i).column(text_col).total_uncompressed_size for i in range(meta.num_row_groups)
            )
        except Exception as exc:  # any unreadable input is reported, never a traceback
            info.error = f"{path}: not a readable document Parquet file ({exc})"
            info.rows, info.row_groups = 0, []
        infos.append(info)
    return infos
