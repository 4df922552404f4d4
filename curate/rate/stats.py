"""``curate rate stats``: how much each rater did, how fast, and how much raters agree.

- per rater: pairs rated (their last choice per pair), the split A / B / tie / skip, how often
  they picked answer A (a rater far from 50% is choosing by position, not content: A/B order is
  random), revisions, and seconds per rating (median and 90th percentile: a coffee break should
  not move the figure; the page's visible-time clock is used, else the server's);
- agreement on pairs rated by two or more people (skips left out), compared on which
  *response* won, not which letter (each rater saw their own A/B order): per pair of raters the
  share of agreement and Cohen's kappa (agreement corrected for chance, 1 = perfect, 0 = chance),
  and the same pooled over all pairs of raters.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

from curate.rate import PAIRS_DB, SESSION_FILE
from curate.rate.assign import Assignment
from curate.rate.export import load_latest
from curate.rate.pairs import PairStore


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items; None when chance agreement is 1."""
    if len(first) != len(second):
        raise ValueError("both raters need a label for every item")
    n = len(first)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(first, second)) / n
    count_1, count_2 = Counter(first), Counter(second)
    expected = sum(count_1[k] * count_2[k] for k in count_1) / (n * n)
    if expected >= 1.0:
        return None  # both always gave the same single label: agreement by chance is certain
    return (observed - expected) / (1.0 - expected)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    pos = (len(values) - 1) * q
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def _seconds(record: dict[str, Any]) -> float | None:
    if isinstance(record.get("client_ms"), (int, float)):
        return record["client_ms"] / 1000.0
    if isinstance(record.get("elapsed_s"), (int, float)):
        return float(record["elapsed_s"])
    return None


def _label(record: dict[str, Any]) -> Hashable:
    return "tie" if record["choice"] == "tie" else record.get("preferred")


def compute_stats(directory: str | os.PathLike) -> dict[str, Any]:
    directory = Path(directory)
    latest, report = load_latest(directory)
    session: dict[str, Any] = {}
    if (directory / SESSION_FILE).exists():
        try:
            session = json.loads((directory / SESSION_FILE).read_text())
        except ValueError:
            session = {}
    store = PairStore(directory / PAIRS_DB)
    try:
        pair_ids = store.active_ids()
    finally:
        store.close()
    assignment = Assignment(
        pair_ids, session.get("raters") or [], float(session.get("overlap", 0.0)), int(session.get("overlap_raters", 2))
    )

    per_rater: dict[str, dict[str, Any]] = {}
    times: dict[str, list[float]] = defaultdict(list)
    labels_by_pair: dict[str, dict[str, Hashable]] = defaultdict(dict)
    revisions: Counter[str] = Counter()
    for (rater, pair_id), record in latest.items():
        row = per_rater.setdefault(rater, {"rated": 0, "a": 0, "b": 0, "tie": 0, "skip": 0})
        row["rated"] += 1
        row[record["choice"]] = row.get(record["choice"], 0) + 1
        seconds = _seconds(record)
        if seconds is not None:
            times[rater].append(seconds)
        if record.get("revises"):
            revisions[rater] += 1
        if record["choice"] != "skip":
            labels_by_pair[pair_id][rater] = _label(record)
    for rater in assignment.raters:
        per_rater.setdefault(rater, {"rated": 0, "a": 0, "b": 0, "tie": 0, "skip": 0})
    for rater, row in per_rater.items():
        decided = row["a"] + row["b"]
        row["chose_a_share"] = row["a"] / decided if decided else None
        row["revised"] = revisions[rater]
        row["median_s"] = _quantile(times[rater], 0.5)
        row["p90_s"] = _quantile(times[rater], 0.9)
        row["total_s"] = sum(times[rater])
        row["assigned"] = assignment.total(rater) if rater in assignment.queues else None

    overlapping = {p: labels for p, labels in labels_by_pair.items() if len(labels) >= 2}
    pairwise, pooled = _agreement(sorted(per_rater), overlapping)
    return {
        "log_lines": report.lines,
        "bad_lines": report.bad_lines,
        "ratings": len(latest),
        "pairs_ready": len(pair_ids),
        "overlap": assignment.overlap,
        "raters": dict(sorted(per_rater.items())),
        "overlap_pairs_rated": len(overlapping),
        "agreement": pairwise,
        "agreement_pooled": pooled,
    }


def _agreement(
    raters: list[str], overlapping: dict[str, dict[str, Hashable]]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Agreement and Cohen's kappa for every pair of raters on the pairs both rated, and pooled
    over all such comparisons."""
    pairwise: list[dict[str, Any]] = []
    pooled_1: list[Hashable] = []
    pooled_2: list[Hashable] = []
    for r1, r2 in combinations(raters, 2):
        common = [p for p, labels in overlapping.items() if r1 in labels and r2 in labels]
        if not common:
            continue
        l1 = [overlapping[p][r1] for p in common]
        l2 = [overlapping[p][r2] for p in common]
        pooled_1 += l1
        pooled_2 += l2
        pairwise.append(
            {
                "raters": [r1, r2],
                "pairs": len(common),
                "agreement": sum(a == b for a, b in zip(l1, l2)) / len(common),
                "kappa": cohen_kappa(l1, l2),
            }
        )
    pooled = None
    if pooled_1:
        # Each comparison counted in both orders so the pooled marginals do not depend on names.
        both_1, both_2 = pooled_1 + pooled_2, pooled_2 + pooled_1
        pooled = {
            "comparisons": len(pooled_1),
            "agreement": sum(a == b for a, b in zip(pooled_1, pooled_2)) / len(pooled_1),
            "kappa": cohen_kappa(both_1, both_2),
        }
    return pairwise, pooled


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_stats(stats: dict[str, Any]) -> str:
    lines = [
        f"{stats['ratings']} ratings by {len(stats['raters'])} rater(s) on {stats['pairs_ready']} pairs "
        f"({stats['log_lines']} log lines" + (f", {stats['bad_lines']} unreadable" if stats["bad_lines"] else "") + ")"
    ]
    header = (
        f"{'rater':<16} {'rated':>6} {'assigned':>8} {'A':>5} {'B':>5} {'tie':>5} {'skip':>5} "
        f"{'chose A':>8} {'revised':>7} {'median s':>9} {'p90 s':>7} {'hours':>6}"
    )
    lines += ["", header]
    for name, row in stats["raters"].items():
        assigned = "-" if row["assigned"] is None else str(row["assigned"])
        chose_a = "-" if row["chose_a_share"] is None else f"{100 * row['chose_a_share']:.0f}%"
        lines.append(
            f"{name:<16} {row['rated']:>6} {assigned:>8} {row['a']:>5} {row['b']:>5} {row['tie']:>5} {row['skip']:>5} "
            f"{chose_a:>8} "
            f"{row['revised']:>7} {_fmt(row['median_s'], '.1f'):>9} {_fmt(row['p90_s'], '.1f'):>7} "
            f"{row['total_s'] / 3600:>6.2f}"
        )
    lines.append("")
    if not stats["agreement"]:
        hint = "" if stats["overlap"] else " (start the server with --overlap, e.g. 0.1, to assign some pairs twice)"
        lines.append(f"agreement: no pair rated by two raters yet{hint}")
        return "\n".join(lines)
    lines.append(
        f"agreement on {stats['overlap_pairs_rated']} pairs rated by two or more raters "
        "(same winning response; skips left out):"
    )
    lines.append(f"{'raters':<34} {'pairs':>6} {'agree':>7} {'kappa':>7}")
    for row in stats["agreement"]:
        lines.append(
            f"{' / '.join(row['raters']):<34} {row['pairs']:>6} {100 * row['agreement']:>6.1f}% "
            f"{_fmt(row['kappa'], '.2f'):>7}"
        )
    pooled = stats["agreement_pooled"]
    lines.append(
        f"{'all raters (pooled)':<34} {pooled['comparisons']:>6} {100 * pooled['agreement']:>6.1f}% "
        f"{_fmt(pooled['kappa'], '.2f'):>7}"
    )
    return "\n".join(lines)
