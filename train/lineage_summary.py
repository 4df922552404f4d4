"""The summary of a checkpoint's consumed rows, as its config.json and ``curate lineage`` show
it: rows, documents and tokens, by source and by month of document date, and the cutoff of
the dates (DuckDB queries over a table or view of the rows)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from curate.core.document import PARENT_ID_SQL

_HOUR_US = 3600 * 1_000_000


def connect():
    """An in-memory DuckDB connection that reads and groups dates in UTC."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _iso(us: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


# Documents, not rows: the chunks the mix cut from a long document count as that document.
_PARENT = PARENT_ID_SQL


def _cutoff(con, view: str) -> dict[str, Any]:
    """Latest date and 99th percentile over the view's distinct documents, as the mix computes
    its own (curate/stages/mix/shuffle.py ``Cutoff``: nearest rank over an hourly histogram,
    rounded down to the hour), so the two compare equal when every document was consumed."""
    docs = f"(SELECT {_PARENT} AS doc, max(epoch_us(date)) AS us FROM {view} WHERE tokens > 0 GROUP BY doc)"
    dated, undated, lo, hi = con.execute(
        f"SELECT count(us), count(*) - count(us), min(us), max(us) FROM {docs}"
    ).fetchone()
    out: dict[str, Any] = {"max": None, "p99": None, "min": None, "dated_docs": dated, "undated_docs": undated}
    if not dated:
        return out
    hours = con.execute(
        f"SELECT us // {_HOUR_US} AS h, count(*) FROM {docs} WHERE us IS NOT NULL GROUP BY h ORDER BY h"
    )
    rank, seen, p99_hour = math.ceil(0.99 * dated), 0, None
    for hour, n in hours.fetchall():
        seen += n
        if seen >= rank:
            p99_hour = hour
            break
    out.update(max=_iso(hi), min=_iso(lo), p99=_iso(max(lo, p99_hour * _HOUR_US)))
    return out


def summarize(con, view: str) -> dict[str, Any]:
    """Rows, documents and tokens of ``view``, by source and by month, and their cutoff."""
    rows, docs, tokens = con.execute(
        f"SELECT count(*), count(DISTINCT {_PARENT}), coalesce(sum(tokens), 0) FROM {view}"
    ).fetchone()
    by_source = con.execute(
        f"SELECT coalesce(source, '(none)'), count(DISTINCT {_PARENT}), sum(tokens) FROM {view} GROUP BY 1 "
        "ORDER BY 3 DESC, 1"
    ).fetchall()
    by_month = con.execute(
        f"SELECT coalesce(strftime(date, '%Y-%m'), 'undated') AS m, count(DISTINCT {_PARENT}), sum(tokens) "
        f"FROM {view} GROUP BY 1 ORDER BY (m = 'undated'), m"
    ).fetchall()
    return {
        "rows": int(rows),
        "documents": int(docs),
        "tokens": int(tokens),
        "by_source": {s: {"documents": int(d), "tokens": int(t)} for s, d, t in by_source},
        "by_month": {m: {"documents": int(d), "tokens": int(t)} for m, d, t in by_month},
        "cutoff": _cutoff(con, view),
    }
