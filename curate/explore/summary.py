"""``curate inspect``'s numbers: one DuckDB pass over a stage's shards, plus its manifest chain.

:func:`summarize` returns everything ``curate inspect`` prints (and ``curate report`` draws) as
a dict: totals, sources, languages, domains, document lengths, score histograms, epochs, dates,
the side outputs' drop reasons, and the funnel from the manifests upstream
(:mod:`curate.explore.chain`). Queries read only the small columns (``n_chars``,
``n_tokens``, scores ...) unless a count must fall back to the text itself. The summary's keys
come in a fixed order: ``inspect --json`` prints them as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from curate.core.errors import InputError
from curate.explore.chain import funnel, manifest_chain
from curate.explore.query import SIDE_VIEWS, UNREADABLE, columns, connect_documents, first_line, views

PERCENTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def summarize(path: str, top: int = 15) -> dict[str, Any]:
    """Everything ``curate inspect`` prints, as a dict (also the data behind the report).

    Files that are not curate document files are an :class:`InputError` before any query;
    optional columns of an unusable type are left out and listed under ``notes``; a file that
    fails while being scanned (a corrupt page) is an :class:`InputError` too."""
    import duckdb

    con, notes = connect_documents(path)
    try:
        summary = _summarize_shards(con, path, top)
    except duckdb.Error as exc:
        raise InputError(f"{path}: cannot be summarized ({first_line(exc)})", UNREADABLE) from None
    finally:
        con.close()
    summary["notes"] = notes

    chain = manifest_chain(path) if os.path.isdir(path) else []
    tokens, chars = summary["tokens"], summary["chars"]
    tokens_per_char = (tokens / chars) if (chars and summary["measure"] == "tokens") else None
    summary["tokens_per_char"] = tokens_per_char
    summary["funnel"] = funnel(chain, tokens_per_char)
    here = chain[-1]["manifest"] if chain and os.path.normpath(chain[-1]["dir"]) == os.path.normpath(path) else None
    summary["stage"] = here.get("stage") if here else None
    if here and here.get("stage") == "mix":
        summary["mix"] = {
            "sources": here.get("sources", []),
            "tokens": here.get("tokens"),
            "training_cutoff": here.get("training_cutoff"),
            "tokenizer": here.get("tokenizer"),
            "seed": here.get("seed"),
        }
    return summary


@dataclass
class _Measure:
    """How documents are measured, decided by the columns the shards have."""

    chars: str  # SQL for a document's characters
    size: str  # SQL for its size: tokens, or UTF-8 bytes when not every document has n_tokens
    name: str  # "tokens" or "bytes": the key the sizes are reported under


def _summarize_shards(con, path: str, top: int) -> dict[str, Any]:
    """The numbers of :func:`summarize` that come from the shards themselves."""
    cols = columns(con, "docs")
    summary, m = _totals(con, path, cols)
    summary["sources"] = [
        {
            "source": k,
            "docs": int(d),
            m.name: int(s or 0),
            "chars": int(c or 0),
            "share": (float(s or 0) / summary["tokens"]) if summary["tokens"] else 0.0,
        }
        for k, d, s, c in _group_sizes(con, "source" if "source" in cols else "NULL", m)
    ]
    summary["languages"] = [
        {"language": k, "docs": int(d), m.name: int(s or 0)}
        for k, d, s, _ in _group_sizes(con, "language" if "language" in cols else "NULL", m)[:top]
    ]
    if "domain" in cols:
        summary["top_domains"] = [
            {"domain": k, "docs": int(d)}
            for k, d in con.execute(
                f"SELECT domain, count(*) AS n FROM docs WHERE domain IS NOT NULL GROUP BY domain "
                f"ORDER BY n DESC, domain LIMIT {int(top)}"
            ).fetchall()
        ]
    summary["length_percentiles"] = _length_percentiles(con, m)
    # Log-spaced document length bins (quarter decades), for the report's histogram.
    summary["length_histogram"] = [
        {"log10_chars": float(b), "docs": int(n)}
        for b, n in con.execute(
            f"SELECT floor(log10(greatest({m.chars}, 1)) * 4) / 4 AS b, count(*) FROM docs GROUP BY b ORDER BY b"
        ).fetchall()
    ]
    summary["quality_histogram"] = _histogram(con, "quality_score", None, None) if "quality_score" in cols else []
    summary["language_score_histogram"] = (
        _histogram(con, "language_score", 0.0, 1.0) if "language_score" in cols else []
    )
    if "epoch" in cols:
        summary["epochs"] = [
            {"epoch": e, "rows": int(n)}
            for e, n in con.execute(
                "SELECT epoch, count(*) FROM docs WHERE epoch IS NOT NULL GROUP BY epoch ORDER BY epoch"
            ).fetchall()
        ]
    if "date" in cols:
        summary["dates"] = _dates(con, summary["docs"])
    summary["side_outputs"] = _side_outputs(con, summary["views"])
    return summary


def _totals(con, path: str, cols: set[str]) -> tuple[dict[str, Any], _Measure]:
    """The summary's first keys (documents, size, characters, views) and how to measure."""
    chars_expr = "coalesce(n_chars, length(text))" if "n_chars" in cols else "length(text)"
    tokens_expr = "n_tokens" if "n_tokens" in cols else "NULL"
    total = con.execute(
        f"SELECT count(*), sum({tokens_expr}), count({tokens_expr}), sum({chars_expr}) FROM docs"
    ).fetchone()
    docs, tokens, with_tokens, chars = int(total[0]), total[1], int(total[2] or 0), int(total[3] or 0)
    tokens_complete = docs > 0 and with_tokens == docs
    if not tokens_complete:
        # No token counts (stages before mix): report UTF-8 bytes instead, and say so.
        tokens = con.execute("SELECT sum(strlen(text)) FROM docs").fetchone()[0]
    m = _Measure(
        chars=chars_expr,
        size="n_tokens" if tokens_complete else "strlen(text)",
        name="tokens" if tokens_complete else "bytes",
    )
    summary = {"path": path, "docs": docs, "measure": m.name, "tokens": int(tokens or 0), "chars": chars}
    summary["views"] = views(con)
    return summary, m


def _group_sizes(con, column: str, m: _Measure) -> list[tuple]:
    """(value, documents, size, characters) per value of ``column``, largest first."""
    return con.execute(
        f"SELECT coalesce(CAST({column} AS VARCHAR), '(none)') AS k, count(*) AS docs, sum({m.size}) AS size, "
        f"sum({m.chars}) AS chars FROM docs GROUP BY k ORDER BY size DESC, k"
    ).fetchall()


def _length_percentiles(con, m: _Measure) -> dict[str, Any]:
    qs = ", ".join(str(q) for q in PERCENTILES)
    pct = con.execute(
        f"SELECT quantile_disc({m.chars}, [{qs}]), quantile_disc({m.size}, [{qs}]), "
        f"avg({m.chars}), min({m.chars}), max({m.chars}) FROM docs"
    ).fetchone()
    return {
        "percentiles": list(PERCENTILES),
        "chars": [int(v) for v in (pct[0] or [])],
        m.name: [int(v) for v in (pct[1] or [])],
        "mean_chars": float(pct[2]) if pct[2] is not None else None,
        "min_chars": int(pct[3]) if pct[3] is not None else None,
        "max_chars": int(pct[4]) if pct[4] is not None else None,
    }


def _histogram(
    con, column: str, lo: float | None, hi: float | None, bins: int = 10, view: str = "docs"
) -> list[dict[str, Any]]:
    """Equal-width bins of ``column`` over [lo, hi] (the column's range when None)."""
    row = con.execute(f"SELECT min({column}), max({column}), count({column}) FROM {view}").fetchone()
    cmin, cmax, n = row
    if not n:
        return []
    lo = float(cmin) if lo is None else min(lo, float(cmin))
    hi = float(cmax) if hi is None else max(hi, float(cmax))
    if hi <= lo:
        hi = lo + 1.0
    width = (hi - lo) / bins
    rows = con.execute(
        f"SELECT least(CAST(floor(({column} - ?) / ?) AS INTEGER), {bins - 1}) AS b, count(*) "
        f"FROM {view} WHERE {column} IS NOT NULL GROUP BY b ORDER BY b",
        [lo, width],
    ).fetchall()
    counts = dict(rows)
    return [{"lo": lo + i * width, "hi": lo + (i + 1) * width, "count": int(counts.get(i, 0))} for i in range(bins)]


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _dates(con, docs: int) -> dict[str, Any]:
    dmin, dmax, dated = con.execute("SELECT min(date), max(date), count(date) FROM docs").fetchone()
    return {
        "min": _iso(dmin),
        "max": _iso(dmax),
        "dated_docs": int(dated),
        "undated_docs": docs - int(dated),
        "per_month": [
            {"month": str(m)[:7], "docs": int(n)}
            for m, n in con.execute(
                "SELECT date_trunc('month', date) AS m, count(*) FROM docs WHERE date IS NOT NULL GROUP BY m ORDER BY m"
            ).fetchall()
        ],
    }


def _side_outputs(con, present: list[str]) -> dict[str, Any]:
    """Documents in ``rejected/`` and ``removed/``, by reason (filter) or duplicate kind (dedup)."""
    side: dict[str, Any] = {}
    for name in SIDE_VIEWS:
        if name in present:
            side_cols = columns(con, name)
            reason = (
                "reject_reason"
                if name == "rejected" and "reject_reason" in side_cols
                else ("dup_kind" if "dup_kind" in side_cols else None)
            )
            n = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            reasons = (
                con.execute(
                    f"SELECT coalesce(CAST({reason} AS VARCHAR), '(none)') AS r, count(*) AS n FROM {name} GROUP BY r ORDER BY n DESC, r"
                ).fetchall()
                if reason
                else []
            )
            side[name] = {"docs": int(n), "by_reason": {r: int(c) for r, c in reasons}}
    return side
