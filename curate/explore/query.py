"""Looking at a stage's output with DuckDB: views, summaries and the manifest chain.

DuckDB scans the Parquet shards in place (``read_parquet('DIR/*.parquet')``) and aggregates
column by column, so nothing here loads a shard set into Python memory; summaries read only
the small columns (``n_chars``, ``n_tokens``, scores ...) unless a count must fall back to the
text itself.

Views in every connection (:func:`connect`):

* ``docs``: the shards of the directory;
* ``rejected`` / ``removed``: ``DIR/rejected`` and ``DIR/removed`` shards where they exist
  (filter and dedup write them).

The **manifest chain** (:func:`manifest_chain`) follows each stage's ``inputs`` (and the mix's
``upstream``) to the manifests of the stages that fed it (mix -> dedup -> filter -> crawl), so
drop reasons and the funnel can be reported from the mix alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.core.errors import CurateError, InputError
from curate.core.manifest import MANIFEST_NAME

# The text formatting lives beside this module; re-exported for the CLI and callers.
from curate.explore.format import format_rows, format_summary  # noqa: F401

SIDE_VIEWS = ("rejected", "removed")
PERCENTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_schema(file: str) -> pa.Schema:
    try:
        return pq.read_schema(file)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"{file}: not a readable Parquet file ({_first_line(exc)})") from None


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
        raise InputError(f"{where}: cannot be read as Parquet ({_first_line(exc)})") from None


def views(con) -> list[str]:
    return [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]


def _columns(con, view: str) -> set[str]:
    return {r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()}


# --- running user queries --------------------------------------------------------------


def run_query(con, query: str) -> tuple[list[str], Iterator[tuple]]:
    """Execute ``query``; (column names, streamed rows). SQL errors become one-line errors."""
    import duckdb

    try:
        result = con.execute(query)
    except duckdb.Error as exc:
        raise CurateError(f"SQL error: {_first_line(exc)}") from None
    if result.description is None:
        return [], iter(())
    names = [d[0] for d in result.description]

    def rows() -> Iterator[tuple]:
        while True:
            try:
                batch = result.fetchmany(1024)
            except duckdb.Error as exc:
                raise CurateError(f"SQL error: {_first_line(exc)}") from None
            if not batch:
                return
            yield from batch

    return names, rows()


def _manifest_dir_of(path: str, base: str | None = None) -> str | None:
    """The stage directory holding ``path`` (a directory with a manifest, or a file in one)."""
    candidates = [path]
    if base and not os.path.isabs(path):
        # Relative paths were relative to wherever that stage ran: usually the manifest's own
        # directory or one of its ancestors (the project root above work/).
        here = os.path.abspath(base)
        for _ in range(8):
            candidates.append(os.path.join(here, path))
            parent = os.path.dirname(here)
            if parent == here:
                break
            here = parent
    for p in candidates:
        if os.path.isdir(p) and os.path.exists(os.path.join(p, MANIFEST_NAME)):
            return os.path.normpath(p)
        parent = os.path.dirname(p)
        if os.path.isfile(p) and parent and os.path.exists(os.path.join(parent, MANIFEST_NAME)):
            return os.path.normpath(parent)
    return None


def read_manifest(directory: str) -> dict[str, Any] | None:
    path = os.path.join(directory, MANIFEST_NAME)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError):
        return None


def manifest_chain(directory: str, max_stages: int = 32) -> list[dict[str, Any]]:
    """Manifests of ``directory`` and every stage upstream of it, upstream first.

    Each item: ``{"dir", "stage", "manifest", "upstream": [dirs]}``. Input paths are tried as
    given and relative to the manifest's own directory; inputs without a manifest (WARC files,
    JSONL sources) end the walk.
    """
    seen: dict[str, dict[str, Any]] = {}
    order: list[str] = []

    def visit(d: str) -> None:
        d = os.path.normpath(d)
        if d in seen or len(seen) >= max_stages:
            return
        manifest = read_manifest(d)
        if manifest is None:
            return
        node = {"dir": d, "stage": manifest.get("stage", "?"), "manifest": manifest, "upstream": []}
        seen[d] = node
        parents: list[str] = []
        for item in manifest.get("inputs", []) or []:
            path = item.get("path") if isinstance(item, dict) else item if isinstance(item, str) else None
            if not path:
                continue
            up = _manifest_dir_of(path, base=d)
            if up and os.path.normpath(up) != d and up not in parents:
                parents.append(up)
        for path in manifest.get("upstream", []) or []:
            up = _manifest_dir_of(path, base=d)
            if up and os.path.normpath(up) != d and up not in parents:
                parents.append(up)
        node["upstream"] = parents
        for up in parents:
            visit(up)
        order.append(d)  # post-order: every upstream stage comes before its consumers

    visit(directory)
    return [seen[d] for d in order]


def funnel(chain: list[dict[str, Any]], tokens_per_char: float | None = None) -> list[dict[str, Any]]:
    """Per stage: documents read and kept, drops by reason, characters and tokens kept
    (tokens exact where the stage counted them, else estimated from characters)."""
    out = []
    for node in chain:
        m = node["manifest"]
        counts = m.get("counts", {})
        chars = counts.get("chars", {}) or {}
        kept_chars = chars.get("kept")
        tokens = None
        estimated = False
        if isinstance(m.get("tokens"), dict) and m["tokens"].get("realized") is not None:
            tokens = m["tokens"]["realized"]
        elif kept_chars is not None and tokens_per_char:
            tokens = int(round(kept_chars * tokens_per_char))
            estimated = True
        out.append(
            {
                "stage": node["stage"],
                "dir": node["dir"],
                "read": counts.get("read", 0),
                "kept": counts.get("kept", 0),
                "rows": m.get("tokens", {}).get("rows") if isinstance(m.get("tokens"), dict) else None,
                "rejected": dict(counts.get("rejected", {}) or {}),
                "errors": dict(counts.get("errors", {}) or {}),
                "chars_kept": kept_chars,
                "tokens_kept": tokens,
                "tokens_estimated": estimated,
            }
        )
    return out


# --- summary ----------------------------------------------------------------------------------


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


def _summarize_shards(con, path: str, top: int) -> dict[str, Any]:
    """The numbers of :func:`summarize` that come from the shards themselves."""
    cols = _columns(con, "docs")
    has = lambda c: c in cols  # noqa: E731
    chars_expr = "coalesce(n_chars, length(text))" if has("n_chars") else "length(text)"
    tokens_expr = "n_tokens" if has("n_tokens") else "NULL"
    total = con.execute(
        f"SELECT count(*), sum({tokens_expr}), count({tokens_expr}), sum({chars_expr}) FROM docs"
    ).fetchone()
    docs, tokens, with_tokens, chars = int(total[0]), total[1], int(total[2] or 0), int(total[3] or 0)
    tokens_complete = docs > 0 and with_tokens == docs
    measure = "tokens" if tokens_complete else "bytes"
    if not tokens_complete:
        # No token counts (stages before mix): report UTF-8 bytes instead, and say so.
        tokens = con.execute("SELECT sum(strlen(text)) FROM docs").fetchone()[0]
    tokens = int(tokens or 0)
    size_expr = "n_tokens" if tokens_complete else "strlen(text)"
    summary: dict[str, Any] = {
        "path": path,
        "docs": docs,
        "measure": measure,
        "tokens": tokens,
        "chars": chars,
        "views": views(con),
    }
    by = lambda col: (  # noqa: E731
        f"SELECT coalesce(CAST({col} AS VARCHAR), '(none)') AS k, count(*) AS docs, sum({size_expr}) AS size, "
        f"sum({chars_expr}) AS chars FROM docs GROUP BY k ORDER BY size DESC, k"
    )
    summary["sources"] = [
        {
            "source": k,
            "docs": int(d),
            measure: int(s or 0),
            "chars": int(c or 0),
            "share": (float(s or 0) / tokens) if tokens else 0.0,
        }
        for k, d, s, c in con.execute(by("source") if has("source") else by("NULL")).fetchall()
    ]
    summary["languages"] = [
        {"language": k, "docs": int(d), measure: int(s or 0)}
        for k, d, s, _ in con.execute(by("language") if has("language") else by("NULL")).fetchall()[:top]
    ]
    if has("domain"):
        summary["top_domains"] = [
            {"domain": k, "docs": int(d)}
            for k, d in con.execute(
                f"SELECT domain, count(*) AS n FROM docs WHERE domain IS NOT NULL GROUP BY domain "
                f"ORDER BY n DESC, domain LIMIT {int(top)}"
            ).fetchall()
        ]
    qs = ", ".join(str(q) for q in PERCENTILES)
    pct = con.execute(
        f"SELECT quantile_disc({chars_expr}, [{qs}]), quantile_disc({size_expr}, [{qs}]), "
        f"avg({chars_expr}), min({chars_expr}), max({chars_expr}) FROM docs"
    ).fetchone()
    summary["length_percentiles"] = {
        "percentiles": list(PERCENTILES),
        "chars": [int(v) for v in (pct[0] or [])],
        measure: [int(v) for v in (pct[1] or [])],
        "mean_chars": float(pct[2]) if pct[2] is not None else None,
        "min_chars": int(pct[3]) if pct[3] is not None else None,
        "max_chars": int(pct[4]) if pct[4] is not None else None,
    }
    # Log-spaced document length bins (quarter decades), for the report's histogram.
    summary["length_histogram"] = [
        {"log10_chars": float(b), "docs": int(n)}
        for b, n in con.execute(
            f"SELECT floor(log10(greatest({chars_expr}, 1)) * 4) / 4 AS b, count(*) FROM docs GROUP BY b ORDER BY b"
        ).fetchall()
    ]
    summary["quality_histogram"] = _histogram(con, "quality_score", None, None) if has("quality_score") else []
    summary["language_score_histogram"] = _histogram(con, "language_score", 0.0, 1.0) if has("language_score") else []
    if has("epoch"):
        summary["epochs"] = [
            {"epoch": e, "rows": int(n)}
            for e, n in con.execute(
                "SELECT epoch, count(*) FROM docs WHERE epoch IS NOT NULL GROUP BY epoch ORDER BY epoch"
            ).fetchall()
        ]
    if has("date"):
        dmin, dmax, dated = con.execute("SELECT min(date), max(date), count(date) FROM docs").fetchone()
        summary["dates"] = {
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
    side: dict[str, Any] = {}
    for name in SIDE_VIEWS:
        if name in summary["views"]:
            side_cols = _columns(con, name)
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
    summary["side_outputs"] = side
    return summary


def summarize(path: str, top: int = 15) -> dict[str, Any]:
    """Everything ``curate inspect`` prints, as a dict (also the data behind the report).

    Files that are not curate document files are an :class:`InputError` before any query;
    optional columns of an unusable type are left out and listed under ``notes``; a file that
    fails while being scanned (a corrupt page) is an :class:`InputError` too."""
    import duckdb

    con, notes = _open(path, None, documents=True)
    try:
        summary = _summarize_shards(con, path, top)
    except duckdb.Error as exc:
        raise InputError(f"{path}: cannot be summarized ({_first_line(exc)})") from None
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
