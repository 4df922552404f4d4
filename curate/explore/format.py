"""Text output of ``curate sql`` and ``curate inspect``: result tables (table/csv/json) and the
human-readable summary of a shard folder. The numbers come from :mod:`curate.explore.query`
(``sql``) and :mod:`curate.explore.summary` (``inspect``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from curate.core.errors import CurateError


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


def format_rows(
    names: list[str], rows: Iterator[tuple], fmt: str = "table", max_rows: int = 100, max_width: int = 60
) -> Iterator[str]:
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
            w.writerow(
                ["" if v is None else (json.dumps(v, default=str) if isinstance(v, (dict, list)) else v) for v in row]
            )
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
        return "  ".join(
            v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))
        ).rstrip()

    yield line(list(names))
    yield "  ".join("-" * w for w in widths)
    for r in cells:
        yield line(r)
    yield f"({len(shown) + more:,} row{'s' if len(shown) + more != 1 else ''}" + (
        f"; first {len(shown):,} shown, use --format csv for all)" if more else ")"
    )


# --- manifests ------------------------------------------------------------------------------


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
    for note in s.get("notes") or []:
        lines.append(f"  note: {note}")

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
        lines.append(
            f"  training cutoff: max {cut['max']}   p99 {cut['p99']}   "
            f"({cut.get('undated_docs', 0):,} undated document(s) ignored)"
        )
    elif dates and dates.get("max"):
        lines.append("")
        lines.append(f"  dates: {dates['min']} .. {dates['max']}   ({dates['undated_docs']:,} undated)")
    for name, info in (s.get("side_outputs") or {}).items():
        lines.append("")
        lines.append(
            f"  {name}/: {info['docs']:,} documents"
            + (": " + ", ".join(f"{k}={v:,}" for k, v in info["by_reason"].items()) if info["by_reason"] else "")
        )
    if s.get("funnel"):
        lines.append("")
        lines += _funnel_lines(s["funnel"])
    return "\n".join(lines)


def _funnel_lines(funnel: list[dict[str, Any]]) -> list[str]:
    """One line per stage (read, kept, tokens kept) and its most frequent drop reasons."""
    lines = ["  funnel (from the manifests of this stage and the ones that fed it)"]
    for f in funnel:
        tok = ""
        if f["tokens_kept"] is not None:
            tok = f"  tokens {'~' if f['tokens_estimated'] else ''}{f['tokens_kept']:,}"
        lines.append(f"    {f['stage']:<10}{f['dir']:<30} read {f['read']:>10,}  kept {f['kept']:>10,}{tok}")
        drops = sorted(
            {**f["rejected"], **{f"error:{k}": v for k, v in f["errors"].items()}}.items(),
            key=lambda kv: (-kv[1], kv[0]),
        )
        if drops:
            lines.append("      dropped: " + ", ".join(f"{k}={v:,}" for k, v in drops[:12]))
    return lines
