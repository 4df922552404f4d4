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

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Iterator

from .errors import CurateError, InputError
from .shards import MANIFEST_NAME

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
    """A DuckDB connection with the views ``docs`` (+ ``rejected``/``removed``) over ``path``."""
    import duckdb

    files = shard_files(path)
    if not files:
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file or directory")
        raise InputError(f"{path}: no .parquet shards here")
    con = duckdb.connect(database=":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    _create_view(con, "docs", files)
    if os.path.isdir(path):
        for name in SIDE_VIEWS:
            side = shard_files(os.path.join(path, name)) if os.path.isdir(os.path.join(path, name)) else []
            if side:
                _create_view(con, name, side)
    return con


def _create_view(con, name: str, files: list[str]) -> None:
    listing = ", ".join(_sql_str(f) for f in files)
    # union_by_name: shards written by an older schema version (fewer columns) still line up.
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listing}], union_by_name = true)")


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
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CurateError(f"SQL error: {first}") from None
    if result.description is None:
        return [], iter(())
    names = [d[0] for d in result.description]

    def rows() -> Iterator[tuple]:
        while True:
            try:
                batch = result.fetchmany(1024)
            except duckdb.Error as exc:
                raise CurateError(f"SQL error: {str(exc).strip().splitlines()[0]}") from None
            if not batch:
                return
            yield from batch

    return names, rows()


def _cell(value: Any, width: int | None = None) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, default=str, ensure_ascii=False)
    else:
        text = str(value)
    text = text.replace("\n", "\\n").replace("\t", " ")
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def format_rows(names: list[str], rows: Iterator[tuple], fmt: str = "table", max_rows: int = 100,
                max_width: int = 60) -> Iterator[str]:
    """Rows as text: an aligned ``table`` (first ``max_rows``), ``csv`` or ``json`` (one
    array, streamed)."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(names)
        yield buf.getvalue().rstrip("\n")
        for row in rows:
            buf.seek(0)
            buf.truncate()
            w.writerow(["" if v is None else (json.dumps(v, default=str) if isinstance(v, (dict, list)) else v) for v in row])
            yield buf.getvalue().rstrip("\n")
        return
    if fmt == "json":
        yield "["
        pending = None
        for row in rows:
            if pending is not None:
                yield pending + ","
            pending = json.dumps(dict(zip(names, row)), default=str, ensure_ascii=False)
        if pending is not None:
            yield pending
        yield "]"
        return
    if fmt != "table":
        raise CurateError(f"unknown format {fmt!r} (table, csv or json)")
    shown: list[tuple] = []
    more = 0
    for row in rows:
        if len(shown) < max_rows:
            shown.append(row)
        else:
            more += 1
    cells = [[_cell(v, max_width) for v in row] for row in shown]
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
    numeric = [all(isinstance(r[i], (int, float)) or r[i] is None for r in shown) and shown for i in range(len(names))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    yield line(list(names))
    yield "  ".join("-" * w for w in widths)
    for r in cells:
        yield line(r)
    yield f"({len(shown) + more:,} row{'s' if len(shown) + more != 1 else ''}" + (
        f"; first {len(shown):,} shown, use --format csv for all)" if more else ")")


# --- manifests ------------------------------------------------------------------------------


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
        out.append({
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
        })
    return out


# --- summary ----------------------------------------------------------------------------------


def _histogram(con, column: str, lo: float | None, hi: float | None, bins: int = 10, view: str = "docs") -> list[dict[str, Any]]:
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


def summarize(path: str, top: int = 15) -> dict[str, Any]:
    """Everything ``curate inspect`` prints, as a dict (also the data behind the report)."""
    con = connect(path)
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
        {"source": k, "docs": int(d), measure: int(s or 0), "chars": int(c or 0),
         "share": (float(s or 0) / tokens) if tokens else 0.0}
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
            for e, n in con.execute("SELECT epoch, count(*) FROM docs WHERE epoch IS NOT NULL GROUP BY epoch ORDER BY epoch").fetchall()
        ]
    if has("date"):
        dmin, dmax, dated = con.execute("SELECT min(date), max(date), count(date) FROM docs").fetchone()
        summary["dates"] = {
            "min": dmin.isoformat() if dmin else None, "max": dmax.isoformat() if dmax else None,
            "dated_docs": int(dated), "undated_docs": docs - int(dated),
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
            reason = "reject_reason" if name == "rejected" and "reject_reason" in side_cols else (
                "dup_kind" if "dup_kind" in side_cols else None)
            n = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            reasons = con.execute(
                f"SELECT coalesce({reason}, '(none)') AS r, count(*) AS n FROM {name} GROUP BY r ORDER BY n DESC, r"
            ).fetchall() if reason else []
            side[name] = {"docs": int(n), "by_reason": {r: int(c) for r, c in reasons}}
    summary["side_outputs"] = side
    con.close()

    chain = manifest_chain(path) if os.path.isdir(path) else []
    tokens_per_char = (tokens / chars) if (chars and tokens_complete) else None
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


def _bar(n: float, most: float, width: int = 30) -> str:
    return "#" * (int(round(width * n / most)) if most else 0)


def format_summary(s: dict[str, Any]) -> str:
    """The summary as readable text with small bar charts."""
    m = s["measure"]
    unit_note = "" if m == "tokens" else " (no n_tokens column filled: UTF-8 bytes shown instead of tokens)"
    lines = [
        f"{s['path']}" + (f"  [stage: {s['stage']}]" if s.get("stage") else ""),
        f"  documents {s['docs']:,}   {m} {s['tokens']:,}   characters {s['chars']:,}{unit_note}",
    ]
    if s.get("mix") and s["mix"].get("tokenizer"):
        lines.append(f"  tokenizer {s['mix']['tokenizer'].get('name')}   seed {s['mix'].get('seed')}")

    lines.append("")
    lines.append(f"  {'source':<20}{'docs':>10}{m:>14}{'share':>9}" + ("   requested" if s.get("mix") else ""))
    requested = {x["name"]: x for x in (s.get("mix") or {}).get("sources", [])}
    for row in s["sources"]:
        req = requested.get(row["source"])
        extra = f"{100 * req['share_requested']:>11.2f}%  epochs {req['epochs']:.2f}" if req else ""
        lines.append(f"  {row['source']:<20}{row['docs']:>10,}{row[m]:>14,}{100 * row['share']:>8.2f}%{extra}")

    if any(r["language"] != "(none)" for r in s["languages"]):
        lines.append("")
        lines.append("  languages (by " + m + ")")
        most = max(r[m] for r in s["languages"])
        for r in s["languages"]:
            lines.append(f"    {r['language']:<10}{r['docs']:>10,} docs {r[m]:>14,}  {_bar(r[m], most)}")
    if s.get("top_domains"):
        lines.append("")
        lines.append("  top domains")
        for r in s["top_domains"]:
            lines.append(f"    {r['domain']:<40}{r['docs']:>8,}")
    lp = s["length_percentiles"]
    if lp["chars"]:
        lines.append("")
        lines.append("  length percentiles   " + "".join(f"{'p' + str(int(q * 100)):>9}" for q in lp["percentiles"]))
        lines.append("    characters         " + "".join(f"{v:>9,}" for v in lp["chars"]))
        lines.append(f"    {m:<19}" + "".join(f"{v:>9,}" for v in lp[m]))
    for title, key in (("quality score", "quality_histogram"), ("language score", "language_score_histogram")):
        hist = s.get(key) or []
        if hist:
            lines.append("")
            lines.append(f"  {title} histogram")
            most = max(b["count"] for b in hist)
            for b in hist:
                lines.append(f"    [{b['lo']:7.3f}, {b['hi']:7.3f})  {b['count']:>8,}  {_bar(b['count'], most)}")
    if s.get("epochs") and any(e["epoch"] for e in s["epochs"]):
        lines.append("")
        lines.append("  rows per epoch: " + ", ".join(f"{e['epoch']}: {e['rows']:,}" for e in s["epochs"]))
    cut = (s.get("mix") or {}).get("training_cutoff")
    dates = s.get("dates")
    if cut and cut.get("max"):
        lines.append("")
        lines.append(f"  training cutoff: max {cut['max']}   p99 {cut['p99']}   "
                     f"({cut.get('undated_docs', 0):,} undated document(s) ignored)")
    elif dates and dates.get("max"):
        lines.append("")
        lines.append(f"  dates: {dates['min']} .. {dates['max']}   ({dates['undated_docs']:,} undated)")
    for name, info in (s.get("side_outputs") or {}).items():
        lines.append("")
        lines.append(f"  {name}/: {info['docs']:,} documents" + (
            ": " + ", ".join(f"{k}={v:,}" for k, v in info["by_reason"].items()) if info["by_reason"] else ""))
    if s.get("funnel"):
        lines.append("")
        lines.append("  funnel (from the manifests of this stage and the ones that fed it)")
        for f in s["funnel"]:
            tok = ""
            if f["tokens_kept"] is not None:
                tok = f"  tokens {'~' if f['tokens_estimated'] else ''}{f['tokens_kept']:,}"
            lines.append(f"    {f['stage']:<10}{f['dir']:<30} read {f['read']:>10,}  kept {f['kept']:>10,}{tok}")
            drops = sorted({**f["rejected"], **{f"error:{k}": v for k, v in f["errors"].items()}}.items(),
                           key=lambda kv: (-kv[1], kv[0]))
            if drops:
                lines.append("      dropped: " + ", ".join(f"{k}={v:,}" for k, v in drops[:12]))
    return "\n".join(lines)

