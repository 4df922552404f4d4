"""Looking at a stage's output with DuckDB: the connection, its views, and running queries.

DuckDB scans the Parquet shards in place (``read_parquet('DIR/*.parquet')``) and aggregates
column by column, so nothing here loads a shard set into Python memory. The summary
(:mod:`curate.explore.summary`) and ``curate sql`` both query through these views.

Views in every connection (:func:`connect`):

* ``docs``: the shards of the directory;
* ``rejected`` / ``removed``: ``DIR/rejected`` and ``DIR/removed`` shards where they exist
  (filter and dedup write them).

Files are checked before DuckDB sees them (:func:`check_document_files`), so a bad file is a
one-line error naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.core.errors import CurateError, InputError

SIDE_VIEWS = ("rejected", "removed")


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def shard_files(path: str) -> list[str]:
    """Parquet files of a directory (top level), a single file, or a glob."""
    p = Path(path)
    if p.is_dir():
        return sorted(str(f) for f in p.glob("*.parquet") if not f.name.startswith("."))
    if p.is_file():
        return [str(p)]
    import glob

    return sorted(glob.glob(path))


def connect(path: str, threads: int | None = None):
    """A DuckDB connection with the views ``docs`` (+ ``rejected``/``removed``) over ``path``.

    Any Parquet file is accepted (``curate sql`` queries whatever is there); a file that is not
    readable Parquet is an :class:`InputError` naming it."""
    con, _ = _open(path, threads, documents=False)
    return con


def connect_documents(path: str, threads: int | None = None) -> tuple[Any, list[str]]:
    """Like :func:`connect`, for curate document files only (a string ``text`` column): the
    connection, and notes on optional columns left out of the views (see :data:`USABLE_TYPES`)."""
    return _open(path, threads, documents=True)


def _open(path: str, threads: int | None, documents: bool) -> tuple[Any, list[str]]:
    """The connection behind :func:`connect`, and notes on columns left out of the views.

    With ``documents`` every file must be a curate document file (a string ``text`` column);
    optional columns whose type the summary cannot use are left out of the views and noted."""
    import duckdb

    files = shard_files(path)
    if not files:
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file or directory")
        raise InputError(f"{path}: no .parquet shards here")
    groups = {"docs": files}
    if os.path.isdir(path):
        for name in SIDE_VIEWS:
            side = shard_files(os.path.join(path, name)) if os.path.isdir(os.path.join(path, name)) else []
            if side:
                groups[name] = side
    # Checked before DuckDB sees the files: a footer read per file names the bad file, where
    # DuckDB's own errors come as multi-line messages about the whole view.
    notes: list[str] = []
    excluded: dict[str, list[str]] = {}
    for name, group in groups.items():
        unusable = check_document_files(group) if documents else _check_readable(group)
        excluded[name] = sorted(unusable)
        for column, reason in sorted(unusable.items()):
            where = "" if name == "docs" else f" ({name}/)"
            notes.append(f"column {column!r}{where} left out: {reason}")
    con = duckdb.connect(database=":memory:")
    try:
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        for name, group in groups.items():
            _create_view(con, name, group, exclude=excluded[name])
    except BaseException:
        con.close()
        raise
    return con, notes


def first_line(exc: BaseException) -> str:
    """An exception's text as one line (DuckDB and Arrow messages can span many)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_schema(file: str) -> pa.Schema:
    try:
        return pq.read_schema(file)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"{file}: not a readable Parquet file ({first_line(exc)})") from None


def _check_readable(files: list[str]) -> dict[str, str]:
    for f in files:
        _read_schema(f)
    return {}


def _value_type(t):
    return t.value_type if pa.types.is_dictionary(t) else t


def _is_string(t) -> bool:
    t = _value_type(t)
    return (
        pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", lambda _: False)(t)
    )


def _is_number(t) -> bool:
    t = _value_type(t)
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _is_time(t) -> bool:
    t = _value_type(t)
    return pa.types.is_timestamp(t) or pa.types.is_date(t)


def _is_scores(t) -> bool:
    return pa.types.is_map(t) and _is_string(t.key_type) and _is_number(t.item_type)


# Optional columns the summary computes with, and the types it can use: a column of another
# type (a date stored as text, say) is left out of the views, with a note, rather than failing
# the whole summary halfway or silently giving wrong numbers.
USABLE_TYPES: dict[str, tuple[Any, str]] = {
    "date": (_is_time, "a timestamp"),
    "scores": (_is_scores, "map<string, double>"),
    "n_chars": (_is_number, "a number"),
    "n_tokens": (_is_number, "a number"),
    "epoch": (_is_number, "a number"),
    "quality_score": (_is_number, "a number"),
    "language_score": (_is_number, "a number"),
}


def check_document_files(files: list[str]) -> dict[str, str]:
    """Check the schema of every file (footers only). A file that is not readable Parquet or
    lacks a string ``text`` column is an :class:`InputError` naming it; returns the optional
    columns of an unusable type as ``{column: why}`` (the first offending file named)."""
    unusable: dict[str, str] = {}
    for f in files:
        schema = _read_schema(f)
        if "text" not in schema.names:
            found = ", ".join(schema.names[:12]) or "none"
            raise InputError(f"{f}: not a curate document file (no 'text' column; found {found})")
        text_type = schema.field("text").type
        if not _is_string(text_type):
            raise InputError(f"{f}: column 'text' has type {text_type}, expected string")
        for column, (usable, expected) in USABLE_TYPES.items():
            if column in schema.names and column not in unusable:
                t = schema.field(column).type
                if not usable(t):
                    unusable[column] = f"{f} stores it as {t}, expected {expected}"
    return unusable


def _create_view(con, name: str, files: list[str], exclude: list[str] | None = None) -> None:
    import duckdb

    listing = ", ".join(_sql_str(f) for f in files)
    columns = "* EXCLUDE (" + ", ".join(f'"{c}"' for c in exclude) + ")" if exclude else "*"
    try:
        # union_by_name: shards written by an older schema version (fewer columns) still line up.
        con.execute(f"CREATE VIEW {name} AS SELECT {columns} FROM read_parquet([{listing}], union_by_name = true)")
    except duckdb.Error as exc:
        where = files[0] if len(files) == 1 else f"{os.path.dirname(files[0]) or '.'} ({len(files)} files)"
        raise InputError(f"{where}: cannot be read as Parquet ({first_line(exc)})") from None


def views(con) -> list[str]:
    """The views of the connection, sorted."""
    return [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]


def columns(con, view: str) -> set[str]:
    return {r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()}


# --- running user queries --------------------------------------------------------------


def run_query(con, query: str) -> tuple[list[str], Iterator[tuple]]:
    """Execute ``query``; (column names, streamed rows). SQL errors become one-line errors."""
    import duckdb

    try:
        result = con.execute(query)
    except duckdb.Error as exc:
        raise CurateError(f"SQL error: {first_line(exc)}") from None
    if result.description is None:
        return [], iter(())
    names = [d[0] for d in result.description]

    def rows() -> Iterator[tuple]:
        while True:
            try:
                batch = result.fetchmany(1024)
            except duckdb.Error as exc:
                raise CurateError(f"SQL error: {first_line(exc)}") from None
            if not batch:
                return
            yield from batch

    return names, rows()
