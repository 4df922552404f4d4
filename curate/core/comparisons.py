"""The comparison (human preference) record: ``prompt``, ``chosen``, ``rejected`` and who/when/why.

Written by ``curate rate export`` (and by hand or other tools as JSONL/Parquet), read by
``curate train reward`` and ``curate train dpo``. One schema, passed explicitly on write.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.core.errors import InputError
from curate.core.files import iter_jsonl

COMPARISON_SCHEMA = pa.schema(
    [
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("chosen", pa.string(), nullable=False),
        pa.field("rejected", pa.string(), nullable=False),
        pa.field("rater", pa.string()),
        pa.field("source", pa.string()),
        pa.field("date", pa.timestamp("us", tz="UTC")),
        pa.field("reason", pa.string()),
    ],
    metadata={b"curate.kind": b"comparisons"},
)
REQUIRED = ("prompt", "chosen", "rejected")

# Pairs of answers waiting for a person's judgement: written by `curate train sample-pairs`,
# read by `curate rate`. `pair_id` is stable (a hash of prompt and both responses).
PAIRS_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("response_1", pa.string(), nullable=False),
        pa.field("response_2", pa.string(), nullable=False),
        pa.field("model", pa.string()),
        pa.field("meta", pa.string()),
    ],
    metadata={b"curate.kind": b"pairs"},
)


def _parse_date(value: Any, where: str) -> datetime | None:
    """Dates may come as datetimes (Parquet) or ISO 8601 strings (JSONL); naive means UTC."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"{where}: date {value!r} is not ISO 8601") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise InputError(f"{where}: date must be an ISO 8601 string, got {value!r}")


def _check(row: dict[str, Any], where: str) -> dict[str, Any]:
    missing = [k for k in REQUIRED if not isinstance(row.get(k), str)]
    if missing:
        raise InputError(f"{where}: comparison needs string fields {', '.join(missing)}")
    out = {f.name: row.get(f.name) for f in COMPARISON_SCHEMA}
    out["date"] = _parse_date(out["date"], where)
    return out


def read_comparisons(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Comparisons from a ``.jsonl`` file, a ``.parquet`` file or a directory of either."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".parquet") and not p.name.startswith("."))
        if not files:
            raise InputError(f"{path}: no .jsonl or .parquet comparison files")
        return [row for f in files for row in read_comparisons(f)]
    if not path.exists():
        raise InputError(f"{path}: no such file")
    rows: list[dict[str, Any]] = []
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        for i, row in enumerate(table.to_pylist()):
            rows.append(_check(row, f"{path} row {i}"))
    else:
        with open(path, encoding="utf-8") as fh:
            for lineno, row, problem in iter_jsonl(fh, objects_only=False):
                if problem is not None:
                    raise InputError(f"{path}:{lineno}: {problem}")
                rows.append(_check(row, f"{path}:{lineno}"))
    return rows


def write_comparisons(rows: Iterable[dict[str, Any]], path: str | os.PathLike) -> int:
    """Write comparisons as Parquet with :data:`COMPARISON_SCHEMA` (atomically)."""
    rows = [_check(r, "comparison") for r in rows]
    table = pa.Table.from_pylist(rows, schema=COMPARISON_SCHEMA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return len(rows)
