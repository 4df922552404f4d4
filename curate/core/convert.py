"""Files that are not document shards -> Documents: JSONL, plain text / Markdown, code.

The conversion rules are listed in :mod:`curate.core.readers` (they are part of what makes ids
and the mix reproducible). :func:`file_documents` converts one file, counting what it reads and
what it cannot use in the given :class:`~curate.core.accounting.Stats`.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from curate.core.accounting import Stats
from curate.core.document import Document, stable_id, to_utc
from curate.core.errors import InputError
from curate.core.files import iter_jsonl

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
# What reading a damaged file raises (a corrupt gzip stream is a zlib.error, not an OSError).
READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)

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


@dataclass(frozen=True)
class Conversion:
    """How records of a source become documents: its name and the JSONL field names."""

    name: str
    text_field: str = "text"
    id_field: str = "id"
    date_field: str = "date"


def split_compression(path: str) -> tuple[str, str | None]:
    base, ext = os.path.splitext(path)
    if ext.lower() in COMPRESSIONS:
        return base, ext.lower()
    return path, None


def _open_text(path: str) -> IO[str]:
    _, comp = split_compression(path)
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


def file_documents(conv: Conversion, f: SourceFile, stats: Stats) -> Iterator[Document]:
    """The documents of one non-Parquet file (counted in ``stats``); an :class:`InputError`,
    before the first document, when the file cannot be read at all."""
    if f.format == "jsonl":
        yield from _jsonl_documents(conv, f, stats)
        return
    try:
        opener = COMPRESSIONS.get(split_compression(f.path)[1] or "", open)
        with opener(f.path, "rb") as fh:  # type: ignore[operator]
            data = fh.read()
    except READ_ERRORS as exc:
        raise InputError(f"{f.path}: cannot be read ({exc})") from None
    stats.read += 1
    text, charset = _decode(data)
    if f.format == "code":
        lang = CODE_EXTENSIONS.get(os.path.splitext(split_compression(f.path)[0])[1].lower(), "unknown")
        meta = {"path": f.rel, "lang": lang}
        yield Document(
            id=stable_id(conv.name, f.rel),
            text=text,
            source=conv.name,
            charset=charset,
            content_type=f"text/x-{lang}",
            meta=json.dumps(meta, sort_keys=True),
        )
        return
    fields, body = split_front_matter(text)
    meta: dict[str, Any] = {"path": f.rel}
    meta.update({k: v for k, v in fields.items() if k not in ("date", "url", "language", "id")})
    yield Document(
        id=fields.get("id") or stable_id(conv.name, f.rel),
        text=body,
        url=fields.get("url") or None,
        source=conv.name,
        date=parse_date(fields.get("date")),
        language=fields.get("language") or None,
        charset=charset,
        content_type="text/markdown" if f.rel.lower().endswith((".md", ".markdown")) else "text/plain",
        meta=json.dumps(meta, sort_keys=True, ensure_ascii=False),
    )


def _jsonl_documents(conv: Conversion, f: SourceFile, stats: Stats) -> Iterator[Document]:
    try:
        fh = _open_text(f.path)
    except OSError as exc:
        raise InputError(f"{f.path}: cannot be read ({exc})") from None
    lines_read = 0

    def counted(lines: IO[str]) -> Iterator[str]:
        nonlocal lines_read
        for line in lines:
            lines_read += 1
            yield line

    with fh:
        try:
            for lineno, record, problem in iter_jsonl(counted(fh)):
                stats.read += 1
                if problem is not None:
                    stats.error("bad_json", file=f.path, offset=lineno, detail=problem)
                    continue
                doc = _record_document(conv, record, f, lineno)
                if doc is None:
                    detail = f"no string field {conv.text_field!r} and no messages"
                    stats.error("missing_text", file=f.path, offset=lineno, detail=detail)
                    continue
                yield doc
        except READ_ERRORS as exc:
            if not lines_read:  # not one line: the file cannot be read at all
                raise InputError(f"{f.path}: cannot be read ({exc})") from None
            stats.read += 1  # a truncated .gz: what was read is kept, the rest is one error
            stats.error("unreadable_file", file=f.path, offset=lines_read, detail=str(exc))


def _record_document(conv: Conversion, record: dict[str, Any], f: SourceFile, lineno: int) -> Document | None:
    rest = dict(record)
    text = rest.pop(conv.text_field, None)
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
    raw_id = rest.pop(conv.id_field, None)
    url = rest.pop("url", None)
    raw_date = rest.pop(conv.date_field, None)
    date = parse_date(raw_date)
    if raw_date is not None and date is None:
        rest[conv.date_field] = raw_date  # unparseable: kept, not lost
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
        id=str(raw_id) if raw_id not in (None, "") else stable_id(conv.name, f.rel, lineno),
        text=text,
        url=url if isinstance(url, str) else None,
        source=conv.name,
        date=date,
        language=language if isinstance(language, str) else None,
        content_type="application/jsonl",
        meta=json.dumps(rest, sort_keys=True, ensure_ascii=False, default=str),
    )
