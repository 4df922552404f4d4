"""The text ``curate trace`` prints: one block per document (crawl record, filter verdict and
scores, dedup cluster, mix rows, checkpoints), and the totals ``curate forget`` lists as the
places that hold the documents."""

from __future__ import annotations

from collections import Counter
from typing import Any

from curate.explore.trace import SHOWN_SCORES, Found


def _crawl_line(c: dict[str, Any]) -> str:
    parts = [f"{c['warc_path'] or '?'} @ {c['warc_offset'] if c['warc_offset'] is not None else '?'}"]
    if c.get("warc_record_id"):
        parts.append(f"record {c['warc_record_id']}")
    parts += [x for x in (c.get("charset"), c.get("content_type"), c.get("crawl")) if x]
    if c.get("date") is not None:
        parts.append(str(c["date"])[:10])
    parts.append(f"{c['n_chars']:,} chars" if c.get("n_chars") is not None else "")
    return ", ".join(p for p in parts if p) + f"  ({c['file']} row {c['row']})"


def _filter_line(f: dict[str, Any]) -> str:
    head = "kept" if f["status"] == "kept" else f"rejected: {f['reason']}"
    scores = ", ".join(f"{k}={v:.3g}" for k, v in sorted(f["scores"].items())[:SHOWN_SCORES])
    more = f" (+{len(f['scores']) - SHOWN_SCORES} more, --json)" if len(f["scores"]) > SHOWN_SCORES else ""
    lang = f"; language {f['language']}" if f.get("language") else ""
    return (
        f"{head}{lang}"
        + (f"; scores {scores}{more}" if scores else "")
        + f"  ({f['folder']}{f['file']} row {f['row']})"
    )


def _dedup_line(d: dict[str, Any]) -> str:
    if d["status"] == "kept":
        kinds = ", ".join(f"{k} {n}" for k, n in d["removed_by_kind"].items())
        rep = f"; represents {d['represents']} removed ({kinds})" if d["represents"] else ""
        return f"kept{rep}  ({d['file']} row {d['row']})"
    sim = f", similarity {d['similarity']:.3f}" if d["similarity"] is not None else ""
    url = f" {d['dup_of_url']}" if d.get("dup_of_url") else ""
    return f"removed as {d['kind']} duplicate of {d['dup_of']}{url}{sim}  (removed/{d['file']} row {d['row']})"


def _mix_line(rows: list[dict[str, Any]]) -> str:
    epochs = sorted({r["epoch"] for r in rows if r["epoch"] is not None})
    tokens = sum(r["n_tokens"] or 0 for r in rows)
    by_file: dict[str, list[str]] = {}
    for r in rows:
        by_file.setdefault(r["file"], []).append(str(r["row"]))
    where = "; ".join(f"{f} row(s) {', '.join(rs[:6])}{' ...' if len(rs) > 6 else ''}" for f, rs in by_file.items())
    chunks = len({r["chunk_id"] for r in rows if r.get("chunk_id")})
    cut = f" in {chunks} chunk(s)" if chunks else ""
    sources = ", ".join(sorted({str(r["source"]) for r in rows}))
    return (
        f"{len(rows)} row(s){cut} of source {sources}, epoch(s) {', '.join(map(str, epochs))}, "
        f"{tokens:,} tokens  ({where})"
    )


def format_trace(found: Found, limit: int = 20) -> str:
    """The trace as text: a block per document (the first ``limit``), then the totals."""
    folders = ", ".join(f"{s} {p}" if p else f"{s} -" for s, p in found.folders.items())
    docs = found.documents
    lines = [f"trace: {found.selector.label}: {len(docs)} document(s)  [{folders}]"]
    if not docs:
        lines.append("  no stage output holds a matching document")
    for d in docs[:limit]:
        lines.append("")
        lines.append(f"{d['id']}  {d['url'] or ''}".rstrip())
        lines.append("  crawl   " + (_crawl_line(d["crawl"]) if d["crawl"] else "-"))
        lines.append("  filter  " + (_filter_line(d["filter"]) if d["filter"] else "-"))
        lines.append("  dedup   " + (_dedup_line(d["dedup"]) if d["dedup"] else "-"))
        lines.append("  mix     " + (_mix_line(d["mix"]) if d["mix"] else "-"))
        for line in _checkpoint_lines(found, d):
            lines.append("  ckpt    " + line)
    if len(docs) > limit:
        lines.append(f"\n... and {len(docs) - limit} more document(s) (--limit)")
    if len(docs) > 1:
        lines.append("")
        lines.append("totals: " + "; ".join(f"{k} {v}" for k, v in totals(found).items()))
    return "\n".join(lines)


def _checkpoint_lines(found: Found, d: dict[str, Any]) -> list[str]:
    seen = {c["path"]: c for c in d["checkpoints"]}
    lines = []
    for ck in found.checkpoints:
        if ck["record"]:
            c = seen.get(ck["path"])
            if c:
                lines.append(f"{ck['path']}: {c['tokens']:,} tokens, seen {c['times_seen']} time(s)")
            else:
                lines.append(f"{ck['path']}: not consumed")
        else:
            why = " (trained on this mix, which holds it)" if ck["trained_on_mix"] and d["mix"] else ""
            lines.append(f"{ck['path']}: no consumption record{why}")
    return lines or ["- (no checkpoint found)"]


def totals(found: Found) -> dict[str, str]:
    """Counts per stage over the documents found (the ``totals`` line, and forget's listing)."""
    docs = found.documents
    filt = Counter(d["filter"]["status"] for d in docs if d["filter"])
    dedup = Counter(d["dedup"]["status"] for d in docs if d["dedup"])
    mix_rows = sum(len(d["mix"]) for d in docs)
    out = {
        "crawl": f"{sum(1 for d in docs if d['crawl'])}",
        "filter": f"kept {filt['kept']}, rejected {filt['rejected']}",
        "dedup": f"kept {dedup['kept']}, removed {dedup['removed']}",
        "mix": f"{mix_rows} row(s) of {sum(1 for d in docs if d['mix'])} document(s)",
    }
    for ck in found.checkpoints:
        if ck["record"]:
            out[ck["path"]] = f"{ck['documents']} document(s), {ck['tokens']:,} tokens"
        else:
            out[ck["path"]] = "no consumption record" + (" (trained on this mix)" if ck["trained_on_mix"] else "")
    return out
