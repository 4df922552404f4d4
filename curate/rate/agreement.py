"""Agreement between raters on the pairs they both rated: share of equal labels and Cohen's kappa.

Labels are which *response* won (1 or 2) or ``"tie"``, never the letter: each rater saw their
own A/B order. Skips carry no label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Any


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


def compare(
    rater_pairs: Iterable[tuple[str, str]], labels_by_pair: dict[str, dict[str, Hashable]]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Agreement and kappa for each pair of raters on the pairs both labelled, and pooled over
    all those comparisons (None when there are none)."""
    pairwise: list[dict[str, Any]] = []
    pooled_1: list[Hashable] = []
    pooled_2: list[Hashable] = []
    for r1, r2 in rater_pairs:
        common = [p for p, labels in labels_by_pair.items() if r1 in labels and r2 in labels]
        if not common:
            continue
        l1 = [labels_by_pair[p][r1] for p in common]
        l2 = [labels_by_pair[p][r2] for p in common]
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
    if not pooled_1:
        return pairwise, None
    # Each comparison counted in both orders so the pooled marginals do not depend on names.
    return pairwise, {
        "comparisons": len(pooled_1),
        "agreement": sum(a == b for a, b in zip(pooled_1, pooled_2)) / len(pooled_1),
        "kappa": cohen_kappa(pooled_1 + pooled_2, pooled_2 + pooled_1),
    }
