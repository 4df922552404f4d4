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

from curate.core.document import REQUIRED_COLUMNS, SCHEMA, SchemaError, schema_problems
from curate.core.errors import CurateError, InputError
from curate.core.shards import first_line

SIDE_VIEWS = ("rejected", "removed")
# The exit status of a file that cannot be read or holds no documents: 1, as in every stage
# (a path that does not exist stays a usage error, 2).
UNREADABLE = 1


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
    """Like :func:`connect`, for curate document files only (:func:`check_document_files`): the
    connection, and notes on optional columns left out of the views."""
    return _open(path, threads, documents=True)


def _open(path: str, threads: int | None, documents: bool) -> tuple[Any, list[str]]:
    """The connection behind :func:`connect`, and notes on columns left out of the views.

    With ``documents`` every file must be a curate document file (:func:`check_document_files`);
    optional columns of another kind than the schema's are left out of the views and noted."""
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


def _read_schema(file: str) -> pa.Schema:
    try:
        return pq.read_schema(file)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"{file}: not a readable Parquet file ({first_line(exc)})", UNREADABLE) from None


def _check_readable(files: list[str]) -> dict[str, str]:
    for f in files:
        _read_schema(f)
    return {}


def check_document_files(files: list[str]) -> dict[str, str]:
    """Check the schema of every file (footers only) with the check every data stage makes
    (:func:`curate.core.document.schema_problems`), so that ``inspect`` and ``report`` refuse
    what ``filter``, ``dedup`` and ``mix`` refuse: a file that is not readable Parquet, or whose
    ``id`` or ``text`` is missing or of another kind, is an :class:`InputError` naming it (the
    stages' message). An optional column of another kind (a date stored as text) makes the
    stages refuse the file too; a summary can do without it, so it is left out of the views:
    returns ``{column: why}`` (the first offending file named)."""
    unusable: dict[str, str] = {}
    for f in files:
        schema = _read_schema(f)
        for column, problem in schema_problems(schema).items():
            if column in REQUIRED_COLUMNS:
                raise SchemaError(f"{f}: {problem}", UNREADABLE)
            if column not in unusable:
                expected = SCHEMA.field(column).type
                t = schema.field(column).type
                unusable[column] = f"{f} stores it as {t}, expected {expected} (the data stages refuse such a file)"
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
        raise InputError(f"{where}: cannot be read as Parquet ({first_line(exc)})", UNREADABLE) from None


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
