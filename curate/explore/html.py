"""Self-contained HTML pieces: plots drawn with matplotlib's Agg backend and embedded as base64
PNG, plain tables, one stylesheet. Used by ``curate report`` and the ablation page."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}td,th{padding:.2rem .6rem;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;display:block;margin:.5rem 0}.note{color:#666;font-size:.85rem}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
"""


def png(fig) -> str:
    buf = io.BytesIO()
    # A fixed "Software" tag and no date keep the PNG bytes the same for the same data.
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight", metadata={"Software": "curate"})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def img(fig, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png(fig)}">'


def figure(width: float = 6.4, height: float = 3.4):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height))
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def table(headers: list[str], rows: list[list[Any]]) -> str:
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


def page(title: str, body: str) -> str:
    """A whole HTML document around ``body``."""
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>{body}</body></html>"
    )
