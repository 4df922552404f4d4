"""``curate report``: one self-contained HTML page about a stage's output.

The page needs no network and no other file: plots are drawn with matplotlib's Agg backend and
embedded as base64 PNG ``<img>`` tags, tables are plain HTML. The data comes from
:func:`curate.explore.summary.summarize` (DuckDB over the shards, plus the manifest chain), so the
report shows the same numbers as ``curate inspect``: sources (requested vs realized share for
a mix), the funnel from crawl to this stage with drops by reason, languages, domains,
document lengths, quality and language-score histograms, and dates.
"""

from __future__ import annotations

import base64
import html
import io
import os
from typing import Any

from curate.core.files import atomic_write_bytes
from curate.explore.summary import summarize

PAGE_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}td,th{padding:.2rem .6rem;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;display:block;margin:.5rem 0}.note{color:#666;font-size:.85rem}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    # A fixed "Software" tag and no date keep the PNG bytes the same for the same data.
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight", metadata={"Software": "curate"})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(fig, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(fig)}">'


def _figure(width: float = 6.4, height: float = 3.4):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height))
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def html_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, bool) or v is None:
            return f"<td>{html.escape(str(v if v is not None else ''))}</td>"
        if isinstance(v, int):
            return f'<td class="n">{v:,}</td>'
        if isinstance(v, float):
            return f'<td class="n">{v:,.4g}</td>'
        return f"<td>{html.escape(str(v))}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _plot_sources(s: dict[str, Any]) -> str | None:
    rows = s["sources"]
    if not rows:
        return None
    m = s["measure"]
    fig, ax = _figure()
    names = [r["source"] for r in rows]
    mix = {x["name"]: x for x in (s.get("mix") or {}).get("sources", [])}
    if mix:
        import numpy as np

        x = np.arange(len(names))
        req = [100 * mix[n]["share_requested"] if n in mix else 0 for n in names]
        real = [100 * r["share"] for r in rows]
        ax.bar(x - 0.2, req, 0.4, label="requested", color="#9ab")
        ax.bar(x + 0.2, real, 0.4, label="realized", color="#357")
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylabel(f"share of {m} (%)")
        ax.legend(frameon=False)
        ax.set_title("Requested vs realized share per source")
    else:
        ax.bar(names, [r[m] for r in rows], color="#357")
        ax.set_ylabel(m)
        ax.set_title(f"{m.capitalize()} per source")
        ax.tick_params(axis="x", rotation=30)
    return _img(fig, "share per source")


def _plot_funnel(s: dict[str, Any]) -> list[str]:
    f = s.get("funnel") or []
    if not f:
        return []
    out = []

    def label(x: dict[str, Any]) -> str:
        name = os.path.basename(x["dir"].rstrip("/")) or x["dir"]
        return x["stage"] if name == x["stage"] else f"{x['stage']}\n{name}"

    labels = [label(x) for x in f]
    fig, ax = _figure(6.4, 3.6)
    import numpy as np

    x = np.arange(len(f))
    ax.bar(x - 0.2, [r["read"] for r in f], 0.4, label="read", color="#bbb")
    ax.bar(x + 0.2, [r["kept"] for r in f], 0.4, label="kept", color="#2a6")
    ax.set_xticks(x, labels)
    ax.set_ylabel("documents")
    ax.set_title("Funnel: documents read and kept per stage")
    positive = [v for r in f for v in (r["read"], r["kept"]) if v > 0]
    if positive and max(positive) / min(positive) > 50:
        ax.set_yscale("log")  # crawl counts dwarf the mix's otherwise
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    out.append(_img(fig, "funnel documents"))

    if any(r["tokens_kept"] is not None for r in f):
        fig, ax = _figure(6.4, 3.4)
        vals = [r["tokens_kept"] or 0 for r in f]
        colors = ["#d94" if r["tokens_estimated"] else "#357" for r in f]
        ax.bar(x, vals, color=colors)
        ax.set_xticks(x, labels)
        ax.set_ylabel("tokens kept")
        est = any(r["tokens_estimated"] for r in f)
        ax.set_title("Funnel: tokens kept per stage" + (" (orange: estimated from characters)" if est else ""))
        out.append(_img(fig, "funnel tokens"))

    reasons = sorted(
        {
            k
            for r in f
            for k, v in list(r["rejected"].items()) + [(f"error:{e}", n) for e, n in r["errors"].items()]
            if v
        }
    )
    if reasons:
        fig, ax = _figure(6.4, 0.6 + 0.5 * len(f) + 0.15 * len(reasons))
        left = np.zeros(len(f))
        cmap = __import__("matplotlib").colormaps["tab20"]
        for i, reason in enumerate(reasons):
            vals = np.array(
                [
                    r["errors"].get(reason[6:], 0) if reason.startswith("error:") else r["rejected"].get(reason, 0)
                    for r in f
                ],
                dtype=float,
            )
            if vals.sum() == 0:
                continue
            ax.barh(x, vals, left=left, label=reason, color=cmap(i % 20))
            left += vals
        ax.set_yticks(x, [lab.replace("\n", " ") for lab in labels])
        ax.invert_yaxis()
        ax.set_xlabel("documents dropped")
        ax.set_title("Drops by reason per stage")
        ax.legend(frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        out.append(_img(fig, "drops by reason"))
    return out


def _plot_bars(items: list[tuple[str, float]], title: str, xlabel: str, horizontal: bool = True) -> str | None:
    if not items:
        return None
    fig, ax = _figure(6.4, max(2.2, 0.3 * len(items) + 0.8))
    labels = [k for k, _ in items]
    vals = [v for _, v in items]
    ax.barh(range(len(items)), vals, color="#357")
    ax.set_yticks(range(len(items)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _img(fig, title)


def _plot_hist(bins: list[dict[str, Any]], title: str, xlabel: str) -> str | None:
    if not bins or not any(b["count"] for b in bins):
        return None
    fig, ax = _figure()
    ax.bar(
        [b["lo"] for b in bins],
        [b["count"] for b in bins],
        width=[b["hi"] - b["lo"] for b in bins],
        align="edge",
        color="#357",
        edgecolor="white",
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("documents")
    ax.set_title(title)
    return _img(fig, title)


def _plot_lengths(s: dict[str, Any]) -> str | None:
    hist = s.get("length_histogram") or []
    if not hist:
        return None
    fig, ax = _figure()
    ax.bar(
        [10 ** h["log10_chars"] for h in hist],
        [h["docs"] for h in hist],
        width=[10 ** (h["log10_chars"] + 0.25) - 10 ** h["log10_chars"] for h in hist],
        align="edge",
        color="#357",
        edgecolor="white",
    )
    ax.set_xscale("log")
    ax.set_xlabel("document length (characters, log scale)")
    ax.set_ylabel("documents")
    ax.set_title("Document lengths")
    return _img(fig, "document lengths")


def _plot_dates(s: dict[str, Any]) -> str | None:
    months = (s.get("dates") or {}).get("per_month") or []
    if not months:
        return None
    fig, ax = _figure()
    ax.bar(range(len(months)), [m["docs"] for m in months], color="#357")
    step = max(1, len(months) // 12)
    ax.set_xticks(
        range(0, len(months), step), [m["month"] for m in months][::step], rotation=45, ha="right", fontsize=8
    )
    ax.set_ylabel("documents")
    ax.set_title("Documents per month")
    return _img(fig, "documents per month")


def render_report(s: dict[str, Any]) -> str:
    """The HTML page for a summary from :func:`curate.explore.summary.summarize`."""
    esc = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>curate report: {esc(s['path'])}</title>"
        f"<style>{PAGE_CSS}</style></head><body>"
    ]
    # Sections in page order (each draws its own plots).
    parts += _overview(s)
    parts += _sources_section(s)
    parts += _funnel_section(s)
    parts += _content_section(s)
    for name, info in (s.get("side_outputs") or {}).items():
        parts.append(f"<h2>{esc(name)}/</h2>")
        parts.append(html_table(["reason", "documents"], [[k, v] for k, v in info["by_reason"].items()]))
    parts.append("</body></html>\n")
    return "".join(parts)


def _overview(s: dict[str, Any]) -> list[str]:
    """Title, totals, notes and (for a mix) the tokenizer, budget and training cutoff."""
    m = s["measure"]
    esc = html.escape
    parts = [f"<h1>curate report: {esc(s['path'])}</h1>"]
    parts.append(
        html_table(
            ["stage", "documents", m, "characters"],
            [[s.get("stage") or "?", s["docs"], s["tokens"], s["chars"]]],
        )
    )
    if m != "tokens":
        parts.append(
            "<p class='note'>These shards carry no token counts (they come before the mix): sizes are UTF-8 bytes.</p>"
        )
    for note in s.get("notes") or []:  # columns left out of the summary, and why
        parts.append(f"<p class='note'>Note: {esc(note)}</p>")
    mix = s.get("mix")
    if mix:
        cut = mix.get("training_cutoff") or {}
        tok = mix.get("tokenizer") or {}
        parts.append(
            f"<p>Tokenizer <b>{esc(str(tok.get('name')))}</b>, seed {esc(str(mix.get('seed')))}, budget "
            f"{(mix.get('tokens') or {}).get('budget', 0):,} tokens, realized "
            f"{(mix.get('tokens') or {}).get('realized', 0):,}. Training cutoff: latest document "
            f"<b>{esc(str(cut.get('max')))}</b>, 99th percentile {esc(str(cut.get('p99')))} "
            f"({cut.get('undated_docs', 0):,} undated documents ignored).</p>"
        )
    return parts


def _sources_section(s: dict[str, Any]) -> list[str]:
    """Realized shares per source, next to the requested ones for a mix."""
    m = s["measure"]
    mix = s.get("mix")
    parts = ["<h2>Sources</h2>"]
    rows = []
    req = {x["name"]: x for x in (mix or {}).get("sources", [])}
    for r in s["sources"]:
        x = req.get(r["source"], {})
        rows.append(
            [
                r["source"],
                r["docs"],
                r[m],
                round(100 * r["share"], 2),
                round(100 * x["share_requested"], 2) if x else None,
                x.get("epochs"),
                x.get("capped"),
            ]
        )
    parts.append(html_table(["source", "docs", m, "share %", "requested %", "epochs", "capped"], rows))
    img = _plot_sources(s)
    if img:
        parts.append(img)
    for note in (mix or {}).get("notes", []) if mix else []:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    return parts


def _funnel_section(s: dict[str, Any]) -> list[str]:
    """Documents read, kept and dropped per stage, from the manifest chain."""
    parts = ["<h2>Funnel from crawl to this stage</h2>"]
    funnel_imgs = _plot_funnel(s)
    if not funnel_imgs:
        parts.append("<p class='note'>No manifest.json found here or upstream.</p>")
        return parts
    rows = []
    for f in s["funnel"]:
        drops = {**f["rejected"], **{f"error:{e}": n for e, n in f["errors"].items()}}
        rows.append(
            [
                f["stage"],
                f["dir"],
                f["read"],
                f["kept"],
                (("~" if f["tokens_estimated"] else "") + f"{f['tokens_kept']:,}")
                if f["tokens_kept"] is not None
                else None,
                ", ".join(f"{k}={v:,}" for k, v in sorted(drops.items(), key=lambda kv: -kv[1])),
            ]
        )
    parts.append(html_table(["stage", "directory", "read", "kept", "tokens kept", "dropped"], rows))
    parts.extend(funnel_imgs)
    return parts


def _content_section(s: dict[str, Any]) -> list[str]:
    """Languages, domains, lengths, score histograms and dates: plots in a grid, then the
    length percentiles."""
    m = s["measure"]
    parts = ["<h2>Content</h2><div class='grid'>"]
    for img in (
        _plot_bars([(r["language"], r[m]) for r in s["languages"]], f"Languages (by {m})", m),
        _plot_bars([(r["domain"], r["docs"]) for r in s.get("top_domains", [])], "Top domains", "documents"),
        _plot_lengths(s),
        _plot_hist(s.get("quality_histogram") or [], "Quality score", "quality_score"),
        _plot_hist(s.get("language_score_histogram") or [], "Language score", "language_score"),
        _plot_dates(s),
    ):
        if img:
            parts.append(f"<div>{img}</div>")
    parts.append("</div>")
    lp = s["length_percentiles"]
    if lp["chars"]:
        parts.append(
            html_table(
                ["", *[f"p{int(q * 100)}" for q in lp["percentiles"]]], [["characters", *lp["chars"]], [m, *lp[m]]]
            )
        )
    return parts


def write_report(path: str, output: str, top: int = 15) -> str:
    """Summarize ``path`` and write the HTML page to ``output`` (atomically)."""
    page = render_report(summarize(path, top=top))
    atomic_write_bytes(output, page.encode("utf-8"))  # gives the file the usual permissions
    return output
