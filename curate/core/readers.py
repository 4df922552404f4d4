"""Reading one source: Parquet shards, or JSONL / plain text / Markdown / code files.

``curate mix`` and ``curate tokenizer train`` take sources that are either document shards
written by earlier stages, or files written by hand or exported from elsewhere (books, papers,
code, conversations). This module turns both into the same thing: a stream of Arrow tables in
the project :data:`~curate.core.document.SCHEMA`, with ``source`` set to the source's name.

Conversion rules (stable, so ids and the mix stay reproducible):

* **Parquet**: rows as they are; ``source`` is replaced by the mix source name (an earlier,
  different value is kept in ``meta`` as ``source_before_mix``).
* **JSONL** (``.jsonl``, ``.ndjson``, optionally ``.gz``/``.bz2``/``.xz``): one document per
  line. The text is ``text_field`` (default ``text``); a record with ``messages``
  (``[{"role", "content"}]``) or ShareGPT ``conversations`` (``[{"from", "value"}]``) and no
  text is rendered as ``Role: content`` turns. ``id``, ``url``, ``date`` (ISO 8601 or Unix
  seconds), ``language`` fill their columns; every other field goes to ``meta``. A line that
  is not a JSON object is counted as an error and skipped; the rest of the file is kept.
* **Text** (``.txt``, ``.md``, ``.rst``, ``.tex``): one document per file. A leading
  ``---`` front-matter block of ``key: value`` lines fills ``date``/``url``/``language`` and
  ``meta`` (title, author ...) and is removed from the text.
* **Code** (``.py``, ``.js``, ``.ts``, ``.go``, ``.rs`` ...): one document per file, the
  programming language in ``meta`` (``{"path": ..., "lang": "python"}``).

Ids of converted documents are ``stable_id(source, relative path[, line])``.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from curate.core.accounting import Stats, failed_input, failed_stats
from curate.core.convert import (
    CODE_EXTENSIONS,
    FORMATS,
    JSONL_EXTENSIONS,
    TEXT_EXTENSIONS,
    Conversion,
    SourceFile,
    file_documents,
    split_compression,
)
from curate.core.document import Document, documents_to_table
from curate.core.errors import InputError
from curate.core.shards import drop_null_rows, read_tables


def detect_format(path: str) -> str | None:
    """The format of a file from its name, or None when the name says nothing we read."""
    base, _ = split_compression(path)
    ext = os.path.splitext(base)[1].lower()
    if path.lower().endswith(".parquet"):
        return "parquet"
    if ext in JSONL_EXTENSIONS:
        return "jsonl"
    if ext in TEXT_EXTENSIONS:
        return "text"
    if ext in CODE_EXTENSIONS:
        return "code"
    return None


def resolve_files(paths: list[str], fmt: str = "auto") -> list[SourceFile]:
    """Files of a source, in a stable order.

    A directory holding ``*.parquet`` at its top level is a shard directory (sub-folders such
    as ``rejected/`` are not read); any other directory is walked recursively for files whose
    extension names a readable format (hidden files and folders skipped). ``fmt`` other than
    ``auto`` forces the format of every file.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown source format {fmt!r} (known: {', '.join(FORMATS)})")
    out: list[SourceFile] = []
    for arg in paths:
        if os.path.isdir(arg):
            top_parquet = sorted(
                f for f in glob.glob(os.path.join(arg, "*.parquet")) if not os.path.basename(f).startswith(".")
            )
            if top_parquet and fmt in ("auto", "parquet"):
                out.extend(SourceFile(f, "parquet", os.path.basename(f)) for f in top_parquet)
                continue
            found = []
            for root, dirs, files in os.walk(arg):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    full = os.path.join(root, name)
                    kind = detect_format(full) if fmt == "auto" else fmt
                    if kind is not None and (fmt != "auto" or kind != "parquet"):
                        found.append(SourceFile(full, kind, os.path.relpath(full, arg)))
            if not found:
                raise InputError(f"{arg}: directory holds no readable files (parquet, jsonl, text, code)")
            out.extend(found)
        elif os.path.isfile(arg):
            kind = detect_format(arg) if fmt == "auto" else fmt
            if kind is None:
                raise InputError(f"{arg}: cannot tell the format from the name; set format = parquet|jsonl|text|code")
            out.append(SourceFile(arg, kind, os.path.basename(arg)))
        else:
            matches = sorted(glob.glob(arg))
            if not matches:
                raise InputError(f"{arg}: no such file or directory")
            out.extend(resolve_files(matches, fmt))
    return out


class SourceReader:
    """Streams a source's documents as schema tables, counting what it could not use.

    Both passes of the mix read a source through this class, so the n-th non-empty document is
    the same document each time. ``stats`` counts ``read``, ``rejected['empty_text']`` and
    errors: per record (``bad_json``, ``missing_text``, ``null_text``, ``null_id``) or per file
    that could not be read at all (``unreadable_file``, ``bad_schema``: one record read, one
    error, nothing of the file used; listed in ``failed``). ``kept`` is left to the caller.
    ``skip`` (path -> (reason, message), the ``failed`` of an earlier pass) counts those files
    the same way without reading them again; with ``strict`` a file that cannot be read is
    raised instead.
    """

    def __init__(
        self,
        name: str,
        paths: list[str],
        fmt: str = "auto",
        text_field: str = "text",
        id_field: str = "id",
        date_field: str = "date",
        batch_rows: int = 1024,
        skip: dict[str, tuple[str, str]] | None = None,
        strict: bool = False,
    ):
        self.name = name
        self.files = resolve_files(paths, fmt)
        self.conversion = Conversion(name, text_field, id_field, date_field)
        self.batch_rows = batch_rows
        self.skip = dict(skip or {})
        self.strict = strict
        self.stats = Stats()
        self.per_file: dict[str, Stats] = {}
        self.failed: dict[str, tuple[str, str]] = {}  # path -> (error reason, message)

    def tables(self) -> Iterator[pa.Table]:
        """Non-empty documents of every file, in order, as conformed tables (the rows of a
        Parquet file that fails partway are among them: see :meth:`batches`)."""
        for _, table in self.batches():
            if table is not None:
                yield table

    def batches(self) -> Iterator[tuple[str | None, pa.Table | None]]:
        """``(path, table)`` for the tables of :meth:`tables`, ``path`` None for converted
        documents (batched across files). A Parquet file that fails after some of its rows
        went out is then announced once as ``(path, None)``: its rows are to be dropped."""
        self.stats = Stats()
        self.per_file = {}
        self.failed = {}
        pending: list[Document] = []  # converted documents, batched across small files
        pending_stats = Stats()
        for f in self.files:
            self.per_file[f.path] = Stats()
            if f.path in self.skip:
                self._fail(f.path, *self.skip[f.path])
            elif f.format == "parquet":
                if pending:
                    yield from ((None, t) for t in self._clean(documents_to_table(pending), pending_stats))
                    pending = []
                yield from self._parquet(f.path)
            else:
                try:
                    for doc in file_documents(self.conversion, f, self.per_file[f.path]):
                        pending.append(doc)
                        if len(pending) >= self.batch_rows:
                            yield from ((None, t) for t in self._clean(documents_to_table(pending), pending_stats))
                            pending = []
                except InputError as exc:  # raised before the file's first document
                    self._failed(f.path, exc)
            self.stats.merge(self.per_file[f.path])
        if pending:
            yield from ((None, t) for t in self._clean(documents_to_table(pending), pending_stats))
        # Empty converted documents are counted once all batches are out.
        self.stats.merge(pending_stats)

    def _parquet(self, path: str) -> Iterator[tuple[str, pa.Table | None]]:
        """The tables of one Parquet file; its rows with a null id or text are errors."""
        stats = self.per_file[path]
        first_row = 0
        try:
            for table in read_tables(path, batch_rows=self.batch_rows):
                n_rows = table.num_rows
                table = drop_null_rows(table, stats, path, first_row)
                first_row += n_rows
                stats.read += table.num_rows
                yield from ((path, t) for t in self._clean(table, stats))
        except InputError as exc:
            self._failed(path, exc)
            if first_row:
                yield path, None

    def _failed(self, path: str, exc: InputError) -> None:
        if self.strict:
            raise exc
        stats, message = failed_input(path, exc)
        self._fail(path, next(iter(stats.errors)), message)

    def _fail(self, path: str, reason: str, message: str) -> None:
        """``path`` could not be read: whatever it counted is replaced by one error."""
        self.per_file[path] = failed_stats(path, reason, message)
        self.failed[path] = (reason, message)

    def _clean(self, table: pa.Table, stats: Stats) -> Iterator[pa.Table]:
        text = table.column("text")
        nonempty = pc.fill_null(pc.greater(pc.utf8_length(text), 0), False)
        n_empty = table.num_rows - pc.sum(nonempty).as_py() if table.num_rows else 0
        if n_empty:
            stats.rejected["empty_text"] += n_empty
            table = table.filter(nonempty)
        if table.num_rows == 0:
            return
        yield self._set_source(table)

    def _set_source(self, table: pa.Table) -> pa.Table:
        old = table.column("source")
        new = pa.array([self.name] * table.num_rows, type=pa.string())
        differs = pc.fill_null(pc.not_equal(old, self.name), False)
        if pc.any(differs).as_py():
            # Keep the upstream label (e.g. "commoncrawl") where the mix renames it.
            metas = table.column("meta").to_pylist()
            for i, (src, flag) in enumerate(zip(old.to_pylist(), differs.to_pylist())):
                if flag:
                    try:
                        meta = json.loads(metas[i]) if metas[i] else {}
                    except json.JSONDecodeError:
                        meta = {"meta_before_mix": metas[i]}
                    if not isinstance(meta, dict):
                        meta = {"meta_before_mix": meta}
                    meta["source_before_mix"] = src
                    metas[i] = json.dumps(meta, sort_keys=True, ensure_ascii=False)
            table = table.set_column(table.schema.get_field_index("meta"), "meta", pa.array(metas, pa.string()))
        return table.set_column(table.schema.get_field_index("source"), "source", new)


def iter_texts(
    paths: list[str], fmt: str = "auto", max_docs: int | None = None, max_chars: int | None = None
) -> Iterator[str]:
    """Texts of documents under ``paths`` (any source format), stopping at the caps; used to
    train tokenizers."""
    reader = SourceReader("input", paths, fmt, strict=True)
    docs = chars = 0
    for table in reader.tables():
        for text in table.column("text").to_pylist():
            if max_docs is not None and docs >= max_docs:
                return
            if max_chars is not None and chars >= max_chars:
                return
            if max_chars is not None:
                text = text[: max_chars - chars]
            docs += 1
            chars += len(text)
            yield text
