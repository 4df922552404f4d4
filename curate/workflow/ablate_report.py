"""The comparison an ablation ends with: every metric per variant beside the base's seed spread.

For each metric (the CORE-style mean of centered accuracies, each task's centered accuracy,
held-out bits per byte per source, the final validation loss) a variant's value is the mean
over its seeds; its difference from the base is shown next to the base's seed-to-seed range
(max - min over the base's seeds), and called beyond the noise only when it is larger than
that range (and than the variant's own range when it has several seeds). With two base seeds the range is a rough yardstick; more seeds make it firmer.
"""

from __future__ import annotations

import html
import statistics
from pathlib import Path
from typing import Any

from curate.core.files import atomic_write_bytes
from curate.explore.html import figure, img, page, table

BASE = "base"


def metrics_of(run: dict[str, Any]) -> dict[str, tuple[str, float, bool]]:
    """``metric -> (label, value, higher is better)`` of one proxy run."""
    out: dict[str, tuple[str, float, bool]] = {}
    results = run["eval"]
    if results.get("core"):
        out["core"] = ("CORE (mean centered accuracy)", float(results["core"]["centered_mean"]), True)
    for task, r in sorted((results.get("tasks") or {}).items()):
        out[f"task/{task}"] = (f"{task} (centered accuracy)", float(r["centered"]), True)
    held = results.get("bpb") or {}
    for source, r in sorted((held.get("sources") or {}).items()):
        if r.get("bpb") is not None:
            out[f"bpb/{source}"] = (f"bits per byte, held-out {source}", float(r["bpb"]), False)
    if (held.get("all") or {}).get("bpb") is not None:
        out["bpb/all"] = ("bits per byte, all held-out", float(held["all"]["bpb"]), False)
    for name, r in sorted((results.get("text_bpb") or {}).items()):
        if r.get("bpb") is not None:
            out[f"text/{name}"] = (f"bits per byte, {name}", float(r["bpb"]), False)
    val = run["train"]["val_loss"]
    if val:
        # on the run's own mix's held-out slice, in its own tokens: not comparable across
        # variants whose tokenizer or mix differ (bits per byte on the base's slice are)
        out["val_loss"] = ("final validation loss (own mix, per token)", float(val[-1][1]), False)
    return out


def _spread(values: list[float]) -> dict[str, float | int]:
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "range": max(values) - min(values),
        "values": values,
    }


def compare(setup: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The comparison (see the module docstring) of ``runs`` for the ablation ``setup``
    (:func:`curate.workflow.ablate.describe`), ready for ablation.json."""
    names = [v["name"] for v in setup["variants"]]
    per_run = [(r["variant"], metrics_of(r)) for r in runs]
    keys = list(dict.fromkeys(k for _, m in per_run for k in m))
    metrics = []
    for key in keys:
        values = {n: [m[key][1] for v, m in per_run if v == n and key in m] for n in names}
        label, higher = next((m[key][0], m[key][2]) for _, m in per_run if key in m)
        stats = {n: _spread(vals) for n, vals in values.items() if vals}
        if BASE not in stats:
            continue
        noise = stats[BASE]["range"]
        deltas = {}
        for n, s in stats.items():
            if n == BASE:
                continue
            delta = s["mean"] - stats[BASE]["mean"]
            # a variant trained with several seeds has a spread of its own: the larger one counts
            threshold = max(noise, s["range"])
            deltas[n] = {
                "delta": delta,
                "noise": threshold,
                "beyond_noise": abs(delta) > threshold,
                "better": (delta > 0) == higher if delta else False,
            }
        metrics.append(
            {
                "metric": key,
                "label": label,
                "higher_is_better": higher,
                "noise": noise,
                "variants": stats,
                "deltas": deltas,
            }
        )
    return {"setup": setup, "runs": runs, "metrics": metrics}


def format_table(result: dict[str, Any]) -> str:
    """One line per metric: the base's mean ± half its seed range, then each variant's mean and
    difference (``*``: beyond the base's seed range)."""
    names = [v["name"] for v in result["setup"]["variants"]]
    base_seeds = len(result["setup"]["variants"][0]["seeds"])
    head = ["metric", f"base ({base_seeds} seeds)", *names[1:]]
    rows = [head]
    for m in result["metrics"]:
        base = m["variants"][BASE]
        row = [m["label"], f"{base['mean']:.4f} ± {base['range'] / 2:.4f}"]
        for n in names[1:]:
            if n in m["deltas"]:
                d = m["deltas"][n]
                mark = "*" if d["beyond_noise"] else ""
                row.append(f"{m['variants'][n]['mean']:.4f} ({d['delta']:+.4f}{mark})")
            else:
                row.append("-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("(variant: mean over its seeds, (difference from the base); * beyond the base's seed range)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the HTML page


def _plot_metric(m: dict[str, Any], names: list[str]) -> str:
    fig, ax = figure(6.4, 3.0)
    present = [n for n in names if n in m["variants"]]
    means = [m["variants"][n]["mean"] for n in present]
    # Error bars: half the seed range (a variant with one seed has none).
    errors = [m["variants"][n]["range"] / 2 for n in present]
    ax.bar(range(len(present)), means, yerr=errors, capsize=4, color=["#666"] + ["#4a7ab7"] * (len(present) - 1))
    ax.set_xticks(range(len(present)), present, rotation=20, ha="right")
    ax.set_title(m["label"] + (" (higher is better)" if m["higher_is_better"] else " (lower is better)"))
    return img(fig, m["label"])


def _plot_curves(runs: list[dict[str, Any]], key: str, title: str) -> str | None:
    if not any(r["train"][key] for r in runs):
        return None
    fig, ax = figure(6.4, 3.4)
    for r in runs:
        points = r["train"][key]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], label=f"{r['variant']} seed {r['seed']}")
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return img(fig, title)


def write_page(result: dict[str, Any], path: Path) -> None:
    """``ablation.html``: the table, one bar plot per metric with seed-range error bars, the
    loss curves of every proxy overlaid."""
    names = [v["name"] for v in result["setup"]["variants"]]
    body = [f"<h1>Ablation: {html.escape(result['setup']['source'])}</h1>"]
    body.append(f"<pre>{html.escape(format_table(result))}</pre>")
    changes = [
        [v["name"], ", ".join(f"[{s}] {t}" for s, t in v["changes"].items()) or "(the base)", len(v["seeds"])]
        for v in result["setup"]["variants"]
    ]
    body.append("<h2>Variants</h2>" + table(["variant", "changes", "seeds"], changes))
    body.append("<h2>Metrics</h2><div class='grid'>")
    body.extend(f"<div>{_plot_metric(m, names)}</div>" for m in result["metrics"])
    body.append("</div><h2>Training</h2><div class='grid'>")
    for key, title in (("loss", "training loss"), ("val_loss", "validation loss")):
        plot = _plot_curves(result["runs"], key, title)
        if plot:
            body.append(f"<div>{plot}</div>")
    body.append("</div>")
    atomic_write_bytes(path, page("curate ablation", "".join(body)).encode("utf-8"))
