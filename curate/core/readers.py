"""Reading one mix source: Parquet shards, or JSONL / plain text / Markdown / code files.

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

import bz2
import glob
import gzip
import json
import lzma
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc

from curate.core.accounting import Stats
from curate.core.document import Document, documents_to_table, stable_id, to_utc
from curate.core.errors import InputError
from curate.core.shards import read_tables

FORMATS = ("auto", "parquet", "jsonl", "text", "code")

TEXT_EXTENSIONS = {".txt", ".text", ".md", ".markdown", ".rst", ".tex"}
JSONL_EXTENSIONS = {".jsonl", ".ndjson"}
CODE_EXTENSIONS = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".jsx": "javascript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin",
    ".scala": "scala",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".swift": "swift",
    ".lua": "lua",
    ".jl": "julia",
    ".r": "r",
    ".sh": "shell",
    ".bash": "shell",
    ".sql": "sql",
    ".hs": "haskell",
    ".ml": "ocaml",
    ".ex": "elixir",
    ".erl": "erlang",
    ".zig": "zig",
    ".dart": "dart",
}
COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}

# Tried in order when a JSONL record has no ``date_field``.
DATE_FALLBACKS = ("created", "created_at", "timestamp", "published", "date_published", "date_download")

# Roles of chat records rendered into plain text for pretraining.
_ROLE_NAMES = {
    "system": "System",
    "user": "User",
    "human": "User",
    "assistant": "Assistant",
    "gpt": "Assistant",
    "bot": "Assistant",
    "model": "Assistant",
    "tool": "Tool",
}


@dataclass(frozen=True)
class SourceFile:
    path: str
    format: str  # parquet | jsonl | text | code
    rel: str  # path relative to the argument it came from (used in ids)


def _split_compression(path: str) -> tuple[str, str | None]:
    base, ext = os.path.splitext(path)
    if ext.lower() in COMPRESSIONS:
        return base, ext.lower()
    return path, None


def detect_format(path: str) -> str | None:
    """The format of a file from its name, or None when the name says nothing we read."""
    base, _ = _split_compression(path)
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


def _open_text(path: str) -> IO[str]:
    _, comp = _split_compression(path)
    if comp:
        return COMPRESSIONS[comp](path, "rt", encoding="utf-8", errors="replace")  # type: ignore[operator]
    return open(path, encoding="utf-8", errors="replace")


def _decode(data: bytes) -> tuple[str, str]:
    """Bytes of a text file -> (text, charset); UTF-8 first, then a detected charset."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    results = list(from_bytes(data))
    if not results:
        return data.decode("utf-8", errors="replace"), "utf-8"
    best = results[0]
    # Short texts in Western languages decode nearly as cleanly in many single-byte code pages;
    # among the near-ties, windows-1252 (what browsers use for "latin-1") is by far the likeliest.
    western = [r for r in results if r.encoding in ("cp1252", "latin_1", "iso8859_15") and r.chaos <= best.chaos + 0.1]
    chosen = western[0] if western else best
    encoding = (
        "cp1252" if chosen.encoding in ("latin_1", "iso8859_15") and _decodes(data, "cp1252") else chosen.encoding
    )
    return data.decode(encoding, errors="replace"), encoding


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


def parse_date(value: Any) -> datetime | None:
    """ISO 8601 strings (``2024-05-01``, ``...T12:00:00Z``) or Unix seconds/milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return to_utc(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000.0 if value > 1e11 else float(value)
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            return to_utc(datetime.fromisoformat(value.strip()))
        except ValueError:
            return None
    return None


def render_conversation(turns: list[Any]) -> str | None:
    """``[{"role": "user", "content": "..."}]`` (or ShareGPT ``from``/``value``) as text."""
    lines = []
    for turn in turns:
        if not isinstance(turn, dict):
            return None
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if not isinstance(role, str) or not isinstance(content, str):
            return None
        lines.append(f"{_ROLE_NAMES.get(role.lower(), role.capitalize())}: {content.strip()}")
    return "\n\n".join(lines) if lines else None


def split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """A leading ``---`` block of ``key: value`` lines -> (fields, rest of the text)."""
    if not text.startswith("---\n") and not text.startswith("---\r\n"):
        return {}, text
    lines = text.splitlines(keepends=True)
    fields: dict[str, str] = {}
    for i, line in enumerate(lines[1:], start=1):
        stripped = line.strip()
        if stripped == "---":
            return fields, "".join(lines[i + 1 :]).lstrip("\n")
        if ":" not in stripped:
            return {}, text  # not front matter after all
        key, value = stripped.split(":", 1)
        fields[key.strip().lower()] = value.strip().strip('"').strip("'")
    return {}, text


class SourceReader:
    """Streams a source's documents as schema tables, counting what it could not use.

    Both passes of the mix read a source through this class, so the n-th non-empty document is
    the same document each time. ``stats`` counts ``read``, ``rejected['empty_text']`` and
    errors (``bad_json``, ``missing_text``, ``unreadable_file``); ``kept`` is left to the caller.
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
    ):
        self.name = name
        self.files = resolve_files(paths, fmt)
        self.text_field = text_field
        self.id_field = id_field
        self.date_field = date_field
        self.batch_rows = batch_rows
        self.stats = Stats()
        self.per_file: dict[str, Stats] = {}

    def tables(self) -> Iterator[pa.Table]:
        """Non-empty documents of every file, in order, as conformed tables."""
        self.stats = Stats()
        self.per_file = {}
        pending: list[Document] = []  # converted documents, batched across small files
        pending_stats = Stats()
        for f in self.files:
            file_stats = self.per_file.setdefault(f.path, Stats())
            if f.format == "parquet":
                if pending:
                    yield from self._clean(documents_to_table(pending), pending_stats)
                    pending = []
                for table in read_tables(f.path, batch_rows=self.batch_rows):
                    file_stats.read += table.num_rows
                    yield from self._clean(table, file_stats)
            else:
                for doc in self._documents(f, file_stats):
                    pending.append(doc)
                    if len(pending) >= self.batch_rows:
                        yield from self._clean(documents_to_table(pending), pending_stats)
                        pending = []
            self.stats.merge(file_stats)
        if pending:
            yield from self._clean(documents_to_table(pending), pending_stats)
        # Empty converted documents are counted once all batches are out.
        self.stats.merge(pending_stats)

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

    # -- conversion of non-Parquet files ---------------------------------------------------

    def _documents(self, f: SourceFile, stats: Stats) -> Iterator[Document]:
        if f.format == "jsonl":
            yield from self._jsonl_documents(f, stats)
            return
        stats.read += 1
        try:
            opener = COMPRESSIONS.get(_split_compression(f.path)[1] or "", open)
            with opener(f.path, "rb") as fh:  # type: ignore[operator]
                data = fh.read()
        except (OSError, EOFError) as exc:
            stats.error("unreadable_file", file=f.path, detail=str(exc))
            return
        text, charset = _decode(data)
        if f.format == "code":
            lang = CODE_EXTENSIONS.get(os.path.splitext(_split_compression(f.path)[0])[1].lower(), "unknown")
            meta = {"path": f.rel, "lang": lang}
            yield Document(
                id=stable_id(self.name, f.rel),
                text=text,
                source=self.name,
                charset=charset,
                content_type=f"text/x-{lang}",
                meta=json.dumps(meta, sort_keys=True),
            )
            return
        fields, body = split_front_matter(text)
        meta: dict[str, Any] = {"path": f.rel}
        meta.update({k: v for k, v in fields.items() if k not in ("date", "url", "language", "id")})
        yield Document(
            id=fields.get("id") or stable_id(self.name, f.rel),
            text=body,
            url=fields.get("url") or None,
            source=self.name,
            date=parse_date(fields.get("date")),
            language=fields.get("language") or None,
            charset=charset,
            content_type="text/markdown" if f.rel.lower().endswith((".md", ".markdown")) else "text/plain",
            meta=json.dumps(meta, sort_keys=True, ensure_ascii=False),
        )

    def _jsonl_documents(self, f: SourceFile, stats: Stats) -> Iterator[Document]:
        try:
            fh = _open_text(f.path)
        except OSError as exc:
            stats.read += 1
            stats.error("unreadable_file", file=f.path, detail=str(exc))
            return
        with fh:
            lineno = 0
            while True:
                try:
                    line = fh.readline()
                except (OSError, EOFError) as exc:  # a truncated .gz: keep what was read
                    stats.read += 1
                    stats.error("unreadable_file", file=f.path, offset=lineno, detail=str(exc))
                    return
                if not line:
                    return
                lineno += 1
                if not line.strip():
                    continue
                stats.read += 1
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    stats.error("bad_json", file=f.path, offset=lineno, detail=str(exc))
                    continue
                if not isinstance(record, dict):
                    stats.error("bad_json", file=f.path, offset=lineno, detail="not a JSON object")
                    continue
                doc = self._record_document(record, f, lineno)
                if doc is None:
                    stats.error(
                        "missing_text",
                        file=f.path,
                        offset=lineno,
                        detail=f"no string field {self.text_field!r} and no messages",
                    )
                    continue
                yield doc

    def _record_document(self, record: dict[str, Any], f: SourceFile, lineno: int) -> Document | None:
        rest = dict(record)
        text = rest.pop(self.text_field, None)
        if not isinstance(text, str):
            for key in ("messages", "conversations"):
                if isinstance(rest.get(key), list):
                    text = render_conversation(rest[key])
                    if text is not None:
                        rest.pop(key)
                        rest["format"] = "conversation"
                        break
        if not isinstance(text, str):
            return None
        raw_id = rest.pop(self.id_field, None)
        url = rest.pop("url", None)
        raw_date = rest.pop(self.date_field, None)
        date = parse_date(raw_date)
        if raw_date is not None and date is None:
            rest[self.date_field] = raw_date  # unparseable: kept, not lost
        if raw_date is None:
            # Common names for the creation date in exported corpora (dolma: "created"); the
            # field stays in meta as well.
            for name in DATE_FALLBACKS:
                date = parse_date(rest.get(name))
                if date is not None:
                    break
        language = rest.pop("language", None)
        if language is None and isinstance(rest.get("lang"), str):
            language = rest.pop("lang")
        rest["path"] = f.rel
        return Document(
            id=str(raw_id) if raw_id not in (None, "") else stable_id(self.name, f.rel, lineno),
            text=text,
            url=url if isinstance(url, str) else None,
            source=self.name,
            date=date,
            language=language if isinstance(language, str) else None,
            content_type="application/jsonl",
            meta=json.dumps(rest, sort_keys=True, ensure_ascii=False, default=str),
        )


def iter_texts(
    paths: list[str], fmt: str = "auto", max_docs: int | None = None, max_chars: int | None = None
) -> Iterator[str]:
    """Texts of documents under ``paths`` (any source format), stopping at the caps; used to
    train tokenizers."""
    reader = SourceReader("input", paths, fmt)
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


__all__ = [
    "SourceFile",
    "SourceReader",
    "detect_format",
    "iter_texts",
    "parse_date",
    "render_conversation",
    "resolve_files",
    "split_front_matter",
]
