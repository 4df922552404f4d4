"""``curate rate stats``: how much each rater did, the load they carried, and how much they agree.

- per rater: pairs rated (their last choice per pair), the split A / B / tie / skip, passes
  (content notes declined; not counted against anyone), how often they picked answer A (a rater
  far from 50% is choosing by position, not content: A/B order is random), revisions, seconds
  per rating (median and 90th percentile; the page's visible-time clock, else the server's),
  *active* time (:func:`.wellbeing.active_seconds`: pauses do not count) and the flagged pairs
  they saw, so a lead can see the load each person carries;
- agreement on pairs rated by two or more people (skips left out, and so is a rating of a pair
  the rater had given back to another rater, from logs before that was refused), compared on which
  *response* won, not which letter: per pair of raters the share of agreement and Cohen's kappa
  (agreement corrected for chance, 1 = perfect, 0 = chance), and the same pooled;
- with ``--by group``: the same figures per rater group, and agreement within and across
  groups (:mod:`.groups`).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Hashable
from itertools import combinations
from pathlib import Path
from typing import Any

from curate.rate import PAIRS_DB, RATINGS_LOG, SESSION_FILE
from curate.rate.agreement import cohen_kappa, compare
from curate.rate.assign import Assignment
from curate.rate.export import load_latest
from curate.rate.groups import format_groups, group_stats
from curate.rate.pairs import PairStore
from curate.rate.store import read_log
from curate.rate.wellbeing import active_seconds, client_seconds, rating_time, saw_flagged

__all__ = ["cohen_kappa", "compute_stats", "format_stats"]
CHOICE_COUNTS = ("a", "b", "tie", "skip", "pass")


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    pos = (len(values) - 1) * q
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def _label(record: dict[str, Any]) -> Hashable:
    return "tie" if record["choice"] == "tie" else record.get("preferred")


def read_session(directory: Path) -> dict[str, Any]:
    """``session.json`` as a dict (empty when missing or unreadable: stats still work)."""
    try:
        data = json.loads((directory / SESSION_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def compute_stats(directory: str | os.PathLike) -> dict[str, Any]:
    directory = Path(directory)
    latest, report = load_latest(directory)
    session = read_session(directory)
    store = PairStore(directory / PAIRS_DB)
    try:
        pair_ids, flags = store.active_ids(), store.flags()
    finally:
        store.close()
    # The server's assignment, rebuilt: the same pairs, flags and raters, the log's skips replayed.
    assignment = Assignment(
        pair_ids,
        session.get("raters") or [],
        float(session.get("overlap", 0.0)),
        int(session.get("overlap_raters", 2)),
        flagged=flags,
    )
    group_of: dict[str, str] = {k: v for k, v in (session.get("groups") or {}).items() if isinstance(v, str)}
    events: dict[str, list[tuple[float, float | None]]] = defaultdict(list)
    flagged_seen: dict[str, set[str]] = defaultdict(set)
    for record in read_log(directory / RATINGS_LOG):
        rater = record["rater"]
        assignment.replay([record])
        if (t := rating_time(record)) is not None:
            events[rater].append((t, client_seconds(record)))
        if saw_flagged(record):
            flagged_seen[rater].add(record["pair_id"])
        if isinstance(record.get("group"), str):
            group_of[rater] = record["group"]

    per_rater: dict[str, dict[str, Any]] = {}
    times: dict[str, list[float]] = defaultdict(list)
    labels_by_pair: dict[str, dict[str, Hashable]] = defaultdict(dict)
    revisions: dict[str, int] = defaultdict(int)
    for (rater, pair_id), record in latest.items():
        row = per_rater.setdefault(rater, dict.fromkeys(CHOICE_COUNTS, 0))
        row[record["choice"]] = row.get(record["choice"], 0) + 1
        revisions[rater] += bool(record.get("revises"))
        seconds = client_seconds(record)
        if seconds is not None and record["choice"] != "pass":
            times[rater].append(seconds)
        if record["choice"] not in ("skip", "pass") and not assignment.replaced(rater, pair_id):
            labels_by_pair[pair_id][rater] = _label(record)  # not a pair the rater gave to another
    for rater in assignment.raters:
        per_rater.setdefault(rater, dict.fromkeys(CHOICE_COUNTS, 0))
    for rater, row in per_rater.items():
        decided = row["a"] + row["b"]
        row["rated"] = row["a"] + row["b"] + row["tie"] + row["skip"]
        row["chose_a_share"] = row["a"] / decided if decided else None
        row["revised"] = revisions[rater]
        row["median_s"] = _quantile(times[rater], 0.5)
        row["p90_s"] = _quantile(times[rater], 0.9)
        row["total_s"] = sum(times[rater])
        row["active_s"] = active_seconds(events[rater])
        row["flagged_seen"] = len(flagged_seen[rater])
        row["group"] = group_of.get(rater)
        row["assigned"] = assignment.total(rater) - row["pass"] if rater in assignment.queues else None

    overlapping = {p: labels for p, labels in labels_by_pair.items() if len(labels) >= 2}
    pairwise, pooled = compare(combinations(sorted(per_rater), 2), overlapping)
    grouped = {r: g for r, g in group_of.items() if r in per_rater}
    return {
        "log_lines": report.lines,
        "bad_lines": report.bad_lines,
        "ratings": len(latest),
        "pairs_ready": len(pair_ids),
        "pairs_flagged": len(flags),
        "overlap": assignment.overlap,
        "raters": dict(sorted(per_rater.items())),
        "overlap_pairs_rated": len(overlapping),
        "agreement": pairwise,
        "agreement_pooled": pooled,
        "groups": group_stats(overlapping, grouped),
        "ungrouped": sorted(r for r in per_rater if r not in grouped),
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def format_stats(stats: dict[str, Any], by: str = "rater") -> str:
    """The text ``curate rate stats`` prints; ``by="group"`` sums raters per group and adds
    agreement within and across groups."""
    lines = [
        f"{stats['ratings']} ratings by {len(stats['raters'])} rater(s) on {stats['pairs_ready']} pairs, "
        f"{stats['pairs_flagged']} with a content note "
        f"({stats['log_lines']} log lines" + (f", {stats['bad_lines']} unreadable" if stats["bad_lines"] else "") + ")",
        "",
    ]
    if by == "group":
        return "\n".join(lines + _group_table(stats))
    lines.append(
        f"{'rater':<16} {'rated':>6} {'assigned':>8} {'A':>5} {'B':>5} {'tie':>5} {'skip':>5} {'pass':>5} "
        f"{'chose A':>8} {'revised':>7} {'median s':>9} {'p90 s':>7} {'active h':>8} {'flagged':>7}"
    )
    for name, row in stats["raters"].items():
        assigned = "-" if row["assigned"] is None else str(row["assigned"])
        lines.append(
            f"{name:<16} {row['rated']:>6} {assigned:>8} {row['a']:>5} {row['b']:>5} {row['tie']:>5} "
            f"{row['skip']:>5} {row['pass']:>5} {_share(row['chose_a_share']):>8} {row['revised']:>7} "
            f"{_fmt(row['median_s'], '.1f'):>9} {_fmt(row['p90_s'], '.1f'):>7} {row['active_s'] / 3600:>8.2f} "
            f"{row['flagged_seen']:>7}"
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


def _group_table(stats: dict[str, Any]) -> list[str]:
    if not stats["groups"]["members"]:
        return ['no rater has a group: add group = "..." to their [[raters]] table (with their consent)']
    lines = [f"{'group':<24} {'raters':>6} {'rated':>6} {'skip':>5} {'pass':>5} {'active h':>8} {'flagged':>7}"]
    for group, members in stats["groups"]["members"].items():
        rows = [stats["raters"][m] for m in members]
        lines.append(
            f"{group:<24} {len(rows):>6} {sum(r['rated'] for r in rows):>6} {sum(r['skip'] for r in rows):>5} "
            f"{sum(r['pass'] for r in rows):>5} {sum(r['active_s'] for r in rows) / 3600:>8.2f} "
            f"{sum(r['flagged_seen'] for r in rows):>7}"
        )
    return [*lines, "", *format_groups(stats["groups"], stats["ungrouped"])]
