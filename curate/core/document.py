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
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

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


def conform_table(table: pa.Table, origin: str = "input") -> pa.Table:
    """Cast a table read from disk to :data:`SCHEMA`.

    Missing optional columns become nulls and unknown columns are dropped; a missing required
    column or a column of an incompatible type is an :class:`InputError` naming the file.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(
            f"{origin}: not a curate document file (missing column(s) {', '.join(missing)}; "
            f"found {', '.join(table.column_names[:12]) or 'none'})"
        )
    columns = []
    for f in SCHEMA:
        if f.name in table.column_names:
            col = table.column(f.name)
            if not col.type.equals(f.type):
                try:
                    col = col.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise InputError(
                        f"{origin}: column {f.name!r} has type {col.type}, expected {f.type} ({exc})"
                    ) from None
            columns.append(col)
        else:
            columns.append(pa.nulls(table.num_rows, type=f.type))
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def table_to_documents(table: pa.Table) -> list[Document]:
    return [Document.from_row(row) for row in table.to_pylist()]
