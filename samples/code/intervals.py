"""Merging and querying half-open intervals [start, end).

Written for the curate samples: a small, self-contained module with docstrings and tests
in the doctest style, used as a "code" source in the sample mix.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Iterable


def merge(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping or touching intervals.

    >>> merge([(5, 8), (1, 3), (2, 4), (8, 9)])
    [(1, 4), (5, 9)]
    """
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if start > end:
            raise ValueError(f"interval ({start}, {end}) ends before it starts")
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def total_length(intervals: Iterable[tuple[int, int]]) -> int:
    """Length covered by the union of the intervals.

    >>> total_length([(0, 10), (5, 15), (20, 21)])
    16
    """
    return sum(end - start for start, end in merge(intervals))


class IntervalSet:
    """A sorted set of disjoint intervals with fast point lookups."""

    def __init__(self, intervals: Iterable[tuple[int, int]] = ()):
        self._items = merge(intervals)
        self._starts = [s for s, _ in self._items]

    def __contains__(self, point: int) -> bool:
        i = bisect_right(self._starts, point) - 1
        return i >= 0 and point < self._items[i][1]

    def add(self, start: int, end: int) -> None:
        """Add an interval, merging it with its neighbours."""
        self._items = merge(self._items + [(start, end)])
        self._starts = [s for s, _ in self._items]

    def gaps(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """Parts of [lo, hi) not covered by the set.

        >>> IntervalSet([(2, 4), (6, 7)]).gaps(0, 10)
        [(0, 2), (4, 6), (7, 10)]
        """
        out, cursor = [], lo
        for start, end in self._items:
            if end <= lo or start >= hi:
                continue
            if start > cursor:
                out.append((cursor, start))
            cursor = max(cursor, end)
        if cursor < hi:
            out.append((cursor, hi))
        return out

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"IntervalSet({self._items!r})"


if __name__ == "__main__":
    import doctest

    doctest.testmod()
