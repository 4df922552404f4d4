"""The one Document record and its one Arrow schema, shared by every stage.

Every Parquet file the project writes uses :data:`SCHEMA`, passed explicitly to the writer so
that a column never changes type because a shard happened to hold only nulls. Columns that a
stage does not fill stay null (``language`` until ``filter`` runs, ``dup_of`` outside
``dedup/removed`` ...). Later stages add columns here, in :data:`FIELDS`, and bump
:data:`SCHEMA_VERSION`; readers accept files written with an older version by filling the
missing nullable columns with nulls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.core.errors import InputError

SCHEMA_VERSION = "1"

# (name, arrow type, required). Required columns must be present in every input file.
FIELDS: list[tuple[str, pa.DataType, bool]] = [
    ("id", pa.string(), True),
    ("url", pa.string(), False),
    ("domain", pa.string(), False),
    ("source", pa.string(), False),
    ("crawl", pa.string(), False),
    ("date", pa.timestamp("us", tz="UTC"), False),
    ("warc_path", pa.string(), False),
    ("warc_offset", pa.int64(), False),
    ("warc_record_id", pa.string(), False),
    ("content_type", pa.string(), False),
    ("charset", pa.string(), False),
    ("language", pa.string(), False),
    ("language_score", pa.float32(), False),
    ("quality_score", pa.float32(), False),
    ("text", pa.string(), True),
    ("n_chars", pa.int64(), False),
    # Filled by `filter`: named scores per filter (e.g. "gopher_quality.mean_word_length"), and
    # the reason a document was (or, in annotate mode, would have been) rejected.
    ("scores", pa.map_(pa.string(), pa.float64()), False),
    ("reject_reason", pa.string(), False),
    # Filled by `dedup` on removed documents.
    ("dup_of", pa.string(), False),
    ("dup_kind", pa.string(), False),
    ("dup_similarity", pa.float32(), False),
    # Filled by `mix`: token count with the mix's tokenizer, and which repeat of a document
    # this row is (0 for the first epoch).
    ("n_tokens", pa.int64(), False),
    ("epoch", pa.int32(), False),
    # Free-form JSON for source-specific fields (kept from JSONL inputs, for instance).
    ("meta", pa.string(), False),
]

SCHEMA = pa.schema(
    [pa.field(name, typ, nullable=not required) for name, typ, required in FIELDS],
    metadata={b"curate.schema_version": SCHEMA_VERSION.encode()},
)
COLUMN_NAMES = [name for name, _, _ in FIELDS]
REQUIRED_COLUMNS = [name for name, _, required in FIELDS if required]


@dataclass
class Document:
    """One document as it flows between stages. Field names match :data:`SCHEMA` columns."""

    id: str
    text: str
    url: str | None = None
    domain: str | None = None
    source: str | None = None
    crawl: str | None = None
    date: datetime | None = None
    warc_path: str | None = None
    warc_offset: int | None = None
    warc_record_id: str | None = None
    content_type: str | None = None
    charset: str | None = None
    language: str | None = None
    language_score: float | None = None
    quality_score: float | None = None
    n_chars: int | None = None
    scores: dict[str, float] = field(default_factory=dict)
    reject_reason: str | None = None
    dup_of: str | None = None
    dup_kind: str | None = None
    dup_similarity: float | None = None
    n_tokens: int | None = None
    epoch: int | None = None
    meta: str | None = None

    def __post_init__(self) -> None:
        if self.n_chars is None and self.text is not None:
            self.n_chars = len(self.text)
        if self.domain is None and self.url:
            self.domain = domain_of(self.url)

    def to_row(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in COLUMN_NAMES}
        row["n_chars"] = len(self.text) if self.text is not None else None
        # An empty map is written as null so that "no scores" reads the same everywhere.
        row["scores"] = list(self.scores.items()) if self.scores else None
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Document:
        kwargs = {name: row.get(name) for name in COLUMN_NAMES}
        scores = kwargs.get("scores")
        kwargs["scores"] = dict(scores) if scores else {}
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Document:
        return dataclasses.replace(self, **changes)

    def meta_dict(self) -> dict[str, Any]:
        return json.loads(self.meta) if self.meta else {}


def domain_of(url: str) -> str | None:
    """Lower-cased host of a URL without a leading ``www.``; None when there is none."""
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    if not host:
        return None
    host = host.lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


CHUNK_MARK = "#c"  # the mix cuts a long document ID into chunks ID#c00000, ID#c00001, ...
_CHUNK_SUFFIX = re.compile(r"#c\d{5,}$")
CHUNK_SUFFIX_SQL = "#c[0-9]{5,}$"  # the same, for DuckDB's regexp_replace
PARENT_ID_SQL = f"regexp_replace(id, '{CHUNK_SUFFIX_SQL}', '')"  # parent_id() of the `id` column, in SQL


def parent_id(doc_id: str) -> str:
    """The id of the document a mix chunk was cut from (the id itself for a whole document):
    what held-out splits, lineage counts, trace and forget go by."""
    return _CHUNK_SUFFIX.sub("", doc_id)


def stable_id(*parts: object) -> str:
    """A short stable id from the given parts (used when a record has no WARC-Record-ID)."""
    h = hashlib.sha1("\x1f".join("" if p is None else str(p) for p in parts).encode("utf-8"))
    return h.hexdigest()[:32]


def to_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def documents_to_table(docs: Iterable[Document]) -> pa.Table:
    """Rows to an Arrow table with the project schema (never an inferred one)."""
    return pa.Table.from_pylist([d.to_row() for d in docs], schema=SCHEMA)


class SchemaError(InputError):
    """A file whose columns cannot hold curate documents: a required column missing, or a
    column of another kind than the schema's (numbers or bytes where text belongs, text where a
    date belongs ...). Stages count it as the error :attr:`reason` of that file."""

    reason = "bad_schema"


def _kind(t: pa.DataType) -> str:
    """What a column holds, whatever its physical type: the unit of :func:`castable`."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    checks = (
        ("null", pa.types.is_null),
        ("string", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)),
        ("integer", pa.types.is_integer),
        ("float", pa.types.is_floating),
        ("time", lambda t: pa.types.is_timestamp(t) or pa.types.is_date(t)),
        ("map", pa.types.is_map),
    )
    return next((kind for kind, test in checks if test(t)), str(t))


def castable(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether a column stored as ``source`` is read as ``target`` without changing what it
    means: the same kind of value in another width, unit, zone or string layout (large_string ->
    string, int32 -> int64, float32 <-> float64, timestamp[ns] or date32 -> timestamp[us, UTC]),
    integers where floats belong, or all nulls. Numbers, booleans or bytes where text belongs,
    text where a date or a number belongs, floats where integers belong are other kinds."""
    kind, wanted = _kind(source), _kind(target)
    if kind == "null":
        return True
    if wanted == "float":
        return kind in ("float", "integer")
    if wanted == "map":
        return (
            kind == "map"
            and castable(source.key_type, target.key_type)
            and castable(source.item_type, target.item_type)
        )
    return kind == wanted


def schema_problems(schema: pa.Schema) -> dict[str, str]:
    """``{column: what is wrong}`` for the columns of :data:`SCHEMA` that ``schema`` (a file's)
    lacks (required ones only) or stores as another kind (:func:`castable`); empty when the file
    can be read as documents. Columns the schema does not know are ignored."""
    problems: dict[str, str] = {}
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        found = ", ".join(schema.names[:12]) or "none"
        problems[missing[0]] = f"not a curate document file (missing column(s) {', '.join(missing)}; found {found})"
    for f in SCHEMA:
        if f.name in schema.names and f.name not in problems:
            t = schema.field(f.name).type
            if not castable(t, f.type):
                problems[f.name] = f"column {f.name!r} has type {t}, expected {f.type}"
    return problems


def check_schema(schema: pa.Schema, origin: str = "input") -> None:
    """:class:`SchemaError` naming ``origin`` and the first problem of :func:`schema_problems`:
    every reader checks a file's schema (its footer) before it reads a row."""
    problems = schema_problems(schema)
    if problems:
        raise SchemaError(f"{origin}: {next(iter(problems.values()))}")


def conform_column(values: pa.Array | pa.ChunkedArray, name: str, origin: str = "input") -> pa.Array | pa.ChunkedArray:
    """``values`` of column ``name`` cast to its :data:`SCHEMA` type. Only a value out of the
    target's range (an integer too large for int32) can fail once :func:`check_schema` passed:
    a :class:`SchemaError` naming the column."""
    target = SCHEMA.field(name).type
    if values.type.equals(target):
        return values
    if not castable(values.type, target):
        raise SchemaError(f"{origin}: column {name!r} has type {values.type}, expected {target}")
    try:
        # Sub-microsecond digits of a timestamp are dropped, not refused: no date needs them.
        return pc.cast(values, options=pc.CastOptions(target, allow_time_truncate=True))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise SchemaError(f"{origin}: column {name!r} has type {values.type}, expected {target} ({first})") from None


def conform_table(table: pa.Table, origin: str = "input") -> pa.Table:
    """Cast a table read from disk to :data:`SCHEMA`.

    Missing optional columns become nulls and unknown columns are dropped; a missing required
    column or a column of another kind (:func:`check_schema`) is a :class:`SchemaError` naming
    the file. Null ids and texts stay null: readers count those rows (:func:`null_rows`).
    """
    check_schema(table.schema, origin)
    columns = []
    for f in SCHEMA:
        if f.name in table.column_names:
            columns.append(conform_column(table.column(f.name), f.name, origin))
        else:
            columns.append(pa.nulls(table.num_rows, type=f.type))
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def null_rows(table: pa.Table) -> list[tuple[int, str]]:
    """``(row, reason)`` of the rows no document can be made of: ``null_text`` where the text is
    null, else ``null_id`` where the id is (the same rule in every stage)."""
    text, ids = table.column("text"), table.column("id")
    if not (text.null_count or ids.null_count):
        return []
    no_text = text.is_null().to_numpy(zero_copy_only=False)
    no_id = ids.is_null().to_numpy(zero_copy_only=False)
    return [(int(r), "null_text" if no_text[r] else "null_id") for r in np.flatnonzero(no_text | no_id)]


def table_to_documents(table: pa.Table) -> list[Document]:
    return [Document.from_row(row) for row in table.to_pylist()]
