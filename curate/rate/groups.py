"""``curate rate stats --by group``: where groups of raters agree and where they part.

A rater's group is the optional ``group`` of ``raters.toml`` (recorded with consent), as written
into their ratings. For the pairs rated by several people (``--overlap``):

- *within* a group: agreement and Cohen's kappa pooled over every two raters of that group;
- *across* two groups: the same over every rater of one with every rater of the other, and how
  often the two groups prefer the same answer: per pair both groups rated, each group's majority
  label (response 1, response 2 or tie) compared; a pair where a group's vote is split evenly
  has no group answer and is counted as ``split``.

Low agreement across groups next to high agreement within them means the groups want different
things, and a reward model trained on all ratings learns the larger group's taste.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable
from itertools import combinations, product
from typing import Any

from curate.rate.agreement import compare


def majority(labels: list[Hashable]) -> Hashable | None:
    """The most common label, or None when two labels tie for most common."""
    top = Counter(labels).most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def group_stats(labels_by_pair: dict[str, dict[str, Hashable]], group_of: dict[str, str]) -> dict[str, Any]:
    """Per-group and per-pair-of-groups agreement on ``labels_by_pair`` (pair -> rater -> label)."""
    members: dict[str, list[str]] = defaultdict(list)
    for rater, group in sorted(group_of.items()):
        members[group].append(rater)
    within = []
    for group in sorted(members):
        _, pooled = compare(combinations(members[group], 2), labels_by_pair)
        within.append({"group": group, "raters": len(members[group]), **_pooled(pooled)})
    across = []
    for g1, g2 in combinations(sorted(members), 2):
        _, pooled = compare(product(members[g1], members[g2]), labels_by_pair)
        both = same = split = 0
        for labels in labels_by_pair.values():
            votes_1 = [label for rater, label in labels.items() if group_of.get(rater) == g1]
            votes_2 = [label for rater, label in labels.items() if group_of.get(rater) == g2]
            if not votes_1 or not votes_2:
                continue
            both += 1
            answer_1, answer_2 = majority(votes_1), majority(votes_2)
            if answer_1 is None or answer_2 is None:
                split += 1
            else:
                same += answer_1 == answer_2
        decided = both - split
        across.append(
            {
                "groups": [g1, g2],
                **_pooled(pooled),
                "pairs": both,
                "split": split,
                "same_answer": same / decided if decided else None,
            }
        )
    return {"members": dict(sorted(members.items())), "within": within, "across": across}


def _pooled(pooled: dict[str, Any] | None) -> dict[str, Any]:
    return pooled or {"comparisons": 0, "agreement": None, "kappa": None}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_groups(stats: dict[str, Any], ungrouped: list[str]) -> list[str]:
    """The lines ``curate rate stats --by group`` prints after the per-group table."""
    lines: list[str] = []
    if ungrouped:
        lines.append(f"without a group (left out below): {', '.join(ungrouped)}")
    lines.append("agreement within groups (same winning response; skips left out):")
    lines.append(f"{'group':<24} {'raters':>6} {'comparisons':>11} {'agree':>7} {'kappa':>6}")
    for row in stats["within"]:
        lines.append(
            f"{row['group']:<24} {row['raters']:>6} {row['comparisons']:>11} {_pct(row['agreement']):>7} "
            f"{_num(row['kappa']):>6}"
        )
    if not stats["across"]:
        lines.append("across groups: only one group")
        return lines
    lines.append("agreement across groups, and how often the groups' majorities prefer the same answer:")
    lines.append(f"{'groups':<24} {'comparisons':>11} {'agree':>7} {'kappa':>6} {'pairs':>6} {'split':>6} {'same':>7}")
    for row in stats["across"]:
        lines.append(
            f"{' / '.join(row['groups']):<24} {row['comparisons']:>11} {_pct(row['agreement']):>7} "
            f"{_num(row['kappa']):>6} {row['pairs']:>6} {row['split']:>6} {_pct(row['same_answer']):>7}"
        )
    return lines
