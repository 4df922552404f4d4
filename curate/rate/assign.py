"""Which rater rates which pair, and in which order the two answers are shown.

Everything is a pure function of names and ids (keyed hashes), so a restart, a reload or a
second machine computes the same assignment with no state to keep:

- a pair is an *overlap* pair (rated by several people, for agreement statistics) when a hash of
  its id falls below ``overlap``; independent of file order, so adding pairs changes nothing;
- the raters of a pair are chosen by rendezvous (highest-random-weight) hashing: rank all raters
  by ``hash(rater, pair)`` and take the first one (or ``overlap_raters`` for overlap pairs).
  Adding a rater to ``raters.toml`` moves only the pairs the new rater now wins, never shuffles
  everyone's queue (a plain ``hash % n`` would);
- answer A is ``response_1`` or ``response_2`` by another hash of (rater, pair): random with
  respect to the content, fixed across reloads, and recorded in every rating as ``a_is``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence


def _unit(*parts: str) -> float:
    """A uniform number in [0, 1) from the parts (blake2b, stable across runs and machines)."""
    digest = hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_overlap_pair(pair_id: str, overlap: float) -> bool:
    return overlap > 0 and _unit("overlap", pair_id) < overlap


def raters_for_pair(pair_id: str, raters: Sequence[str], overlap: float, overlap_raters: int) -> list[str]:
    """The raters who should rate ``pair_id`` (several for overlap pairs), best-ranked first."""
    if not raters:
        return []
    want = overlap_raters if is_overlap_pair(pair_id, overlap) else 1
    ranked = sorted(raters, key=lambda name: (_unit("rater", name, pair_id), name), reverse=True)
    return ranked[: max(1, min(want, len(ranked)))]


def a_is(rater: str, pair_id: str) -> int:
    """Which response (1 or 2) this rater sees as answer A for this pair."""
    return 1 if _unit("ab", rater, pair_id) < 0.5 else 2


class Assignment:
    """Each rater's queue: the positions of their pairs, in file order.

    ``pair_ids`` is the session's list of pairs in file order; the queues hold indices into it,
    so a large session costs a few integers per (pair, rater) and no text.
    """

    def __init__(self, pair_ids: Sequence[str], raters: Iterable[str], overlap: float = 0.0, overlap_raters: int = 2):
        self.pair_ids = pair_ids
        self.raters = list(raters)
        self.overlap = overlap
        self.overlap_raters = overlap_raters
        self.queues: dict[str, list[int]] = {name: [] for name in self.raters}
        for index, pair_id in enumerate(pair_ids):
            for name in raters_for_pair(pair_id, self.raters, overlap, overlap_raters):
                self.queues[name].append(index)
        self._assigned = {name: {pair_ids[i] for i in q} for name, q in self.queues.items()}

    def total(self, rater: str) -> int:
        return len(self.queues.get(rater, ()))

    def is_assigned(self, rater: str, pair_id: str) -> bool:
        return pair_id in self._assigned.get(rater, ())

    def queue(self, rater: str) -> list[str]:
        return [self.pair_ids[i] for i in self.queues.get(rater, ())]
