"""Which rater rates which pair, and in which order the two answers are shown.

Everything is a pure function of names, ids, the flagged set and the ratings log (keyed hashes),
so a restart, a reload or ``curate rate stats`` computes the same assignment with no state to keep:

- a pair is an *overlap* pair (rated by several people, for agreement statistics) when a hash of
  its id falls below ``overlap``; independent of file order, so adding pairs changes nothing;
- the raters of an unflagged pair are chosen by rendezvous (highest-random-weight) hashing: rank
  all raters by ``hash(rater, pair)`` and take the first one (or ``overlap_raters`` for overlap
  pairs). Adding a rater to ``raters.toml`` moves only the pairs the new rater now wins, never
  shuffles everyone's queue (a plain ``hash % n`` would);
- flagged pairs (content notes, :mod:`.flags`) are dealt out instead, in hash order rather than
  the order they arrived in: each goes to the raters who hold the fewest flagged pairs so far
  (ties by the rendezvous rank), so every rater carries the same share give or take one. In a
  rater's queue they sit evenly spaced among the unflagged pairs, never in a run;
- a pair a rater skips (or passes on, from a content note) goes back to the pool: the next rater
  in the same ranking who neither holds nor gave back that pair gets it at the end of their queue
  (a flagged pair: the least loaded such rater, those below their cap on flagged pairs first,
  :meth:`Assignment.release`); the giver's flagged load drops by one;
- a flagged pair waiting for a rater who reached their cap can be *moved* to a rater with room
  (:meth:`Assignment.move`; the session decides when, :mod:`.session`);
- caps depend on the time and on this run's limits, so the server writes who took a pair
  (``taker``) and which pairs moved (``moved``) into the rating that caused it: replaying the
  log applies those, and rebuilds exactly the queues the server had;
- answer A is ``response_1`` or ``response_2`` by another hash of (rater, pair): random with
  respect to the content, fixed across reloads, and recorded in every rating as ``a_is``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from curate.rate import RELEASING

_COMPUTE: Any = object()  # release(): no taker recorded, choose one


def _unit(*parts: str) -> float:
    """A uniform number in [0, 1) from the parts (blake2b, stable across runs and machines)."""
    digest = hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_overlap_pair(pair_id: str, overlap: float) -> bool:
    return overlap > 0 and _unit("overlap", pair_id) < overlap


def _want(pair_id: str, n_raters: int, overlap: float, overlap_raters: int) -> int:
    want = overlap_raters if is_overlap_pair(pair_id, overlap) else 1
    return max(1, min(want, n_raters))


def ranked_raters(pair_id: str, raters: Iterable[str]) -> list[str]:
    """All raters in this pair's rendezvous order, best first."""
    return sorted(raters, key=lambda name: (_unit("rater", name, pair_id), name), reverse=True)


def raters_for_pair(pair_id: str, raters: Sequence[str], overlap: float, overlap_raters: int) -> list[str]:
    """The raters who should rate unflagged ``pair_id`` (several for overlap pairs), best-ranked first."""
    if not raters:
        return []
    return ranked_raters(pair_id, raters)[: _want(pair_id, len(raters), overlap, overlap_raters)]


def a_is(rater: str, pair_id: str) -> int:
    """Which response (1 or 2) this rater sees as answer A for this pair."""
    return 1 if _unit("ab", rater, pair_id) < 0.5 else 2


def spread(plain: list[int], flagged: list[int]) -> list[int]:
    """``plain`` with ``flagged`` inserted at evenly spaced places, both keeping their order."""
    n = len(plain) + len(flagged)
    slots = {int((k + 0.5) * n / len(flagged)): index for k, index in enumerate(flagged)} if flagged else {}
    rest = iter(plain)
    return [slots[i] if i in slots else next(rest) for i in range(n)]


class Assignment:
    """Each rater's queue: the positions of their pairs in ``pair_ids`` (the session's pairs in
    file order), so a large session costs a few integers per (pair, rater) and no text."""

    def __init__(
        self,
        pair_ids: Sequence[str],
        raters: Iterable[str],
        overlap: float = 0.0,
        overlap_raters: int = 2,
        flagged: Collection[str] = (),
    ):
        self.pair_ids = pair_ids
        self.raters = list(raters)
        self.overlap = overlap
        self.overlap_raters = overlap_raters
        self.flagged = frozenset(flagged)
        self.flagged_load: Counter[str] = Counter()  # flagged pairs held, per rater
        self._index = {pair_id: i for i, pair_id in enumerate(pair_ids)}
        self._holders: dict[int, list[str]] = {}
        self._given_back: dict[int, set[str]] = {}  # raters who gave the pair back (or had it moved away)
        self._taken: dict[int, set[str]] = {}  # givers whose pair another rater took over
        self._received: dict[str, set[int]] = {name: set() for name in self.raters}  # flagged, handed over
        plain: dict[str, list[int]] = {name: [] for name in self.raters}
        dealt: dict[str, list[int]] = {name: [] for name in self.raters}
        for index, pair_id in enumerate(pair_ids):
            if pair_id not in self.flagged:
                self._holders[index] = raters_for_pair(pair_id, self.raters, overlap, overlap_raters)
                for name in self._holders[index]:
                    plain[name].append(index)
        by_hash = sorted(
            (i for i, p in enumerate(pair_ids) if p in self.flagged), key=lambda i: _unit("flagged", pair_ids[i])
        )
        for index in by_hash:
            pair_id = pair_ids[index]
            self._holders[index] = self._best(pair_id, set(), _want(pair_id, len(self.raters), overlap, overlap_raters))
            for name in self._holders[index]:
                self.flagged_load[name] += 1
                dealt[name].append(index)
        self.queues: dict[str, list[int]] = {name: spread(plain[name], sorted(dealt[name])) for name in self.raters}
        self._assigned = {name: {pair_ids[i] for i in q} for name, q in self.queues.items()}
        self._flagged_queue = {name: [i for i in q if pair_ids[i] in self.flagged] for name, q in self.queues.items()}

    def _best(
        self, pair_id: str, exclude: set[str], want: int = 1, prefer: Callable[[str], tuple] | None = None
    ) -> list[str]:
        """The ``want`` raters (not in ``exclude``) first by ``prefer`` (the session's caps), then
        holding the fewest flagged pairs, by rank on ties."""
        rank = {name: i for i, name in enumerate(ranked_raters(pair_id, self.raters))}

        def key(name: str) -> tuple:
            return (*(prefer(name) if prefer else ()), self.flagged_load[name], rank[name])

        return sorted((r for r in self.raters if r not in exclude), key=key)[:want]

    def _excluded(self, index: int) -> set[str]:
        return set(self._holders.get(index, ())) | self._given_back.get(index, set())

    def best_taker(self, pair_id: str, eligible: Callable[[str], bool]) -> str | None:
        """The least loaded ``eligible`` rater who neither holds nor gave back flagged ``pair_id``."""
        index = self._index.get(pair_id)
        if index is None:
            return None
        exclude = self._excluded(index) | {r for r in self.raters if not eligible(r)}
        return next(iter(self._best(pair_id, exclude)), None)

    def _hand(self, index: int, taker: str) -> None:
        self._holders.setdefault(index, []).append(taker)
        self.queues[taker].append(index)
        self._assigned[taker].add(self.pair_ids[index])
        if self.pair_ids[index] in self.flagged:
            self.flagged_load[taker] += 1
            self._received[taker].add(index)
            self._flagged_queue[taker].append(index)

    def total(self, rater: str) -> int:
        return len(self.queues.get(rater, ()))

    def is_assigned(self, rater: str, pair_id: str) -> bool:
        return pair_id in self._assigned.get(rater, ())

    def is_flagged(self, pair_id: str) -> bool:
        return pair_id in self.flagged

    def queue(self, rater: str) -> list[str]:
        return [self.pair_ids[i] for i in self.queues.get(rater, ())]

    def flagged_queue(self, rater: str) -> list[str]:
        """The flagged pairs in the rater's queue, in queue order."""
        return [self.pair_ids[i] for i in self._flagged_queue.get(rater, ())]

    def received(self, rater: str) -> list[str]:
        """Flagged pairs handed to the rater by a skip or a move (not dealt at the start)."""
        return [self.pair_ids[i] for i in sorted(self._received.get(rater, ()))]

    def gave_back(self, rater: str, pair_id: str) -> bool:
        index = self._index.get(pair_id)
        return index is not None and rater in self._given_back.get(index, ())

    def replaced(self, rater: str, pair_id: str) -> bool:
        """``rater`` gave ``pair_id`` back and another rater took it over: theirs is no longer wanted."""
        index = self._index.get(pair_id)
        return index is not None and rater in self._taken.get(index, ())

    def release(
        self, pair_id: str, rater: str, prefer: Callable[[str], tuple] | None = None, taker: Any = _COMPUTE
    ) -> str | None:
        """``rater`` gave ``pair_id`` back (skip or pass): the rater who takes it over, if any.

        ``prefer`` ranks the candidates for a flagged pair before their load (the session puts
        raters below their cap first); ``taker`` is the one a log line recorded (None: nobody),
        used when still possible. The pair stays in the giver's queue; the taker gets it at the
        end of theirs. Giving the same pair back twice changes nothing.
        """
        index = self._index.get(pair_id)
        if index is None or not self.is_assigned(rater, pair_id):
            return None
        given_back = self._given_back.setdefault(index, set())
        if rater in given_back:
            return None
        exclude = self._excluded(index) | {rater}
        given_back.add(rater)
        if pair_id in self.flagged:
            self.flagged_load[rater] -= 1
            self._received[rater].discard(index)
        if taker is None or (isinstance(taker, str) and taker in self.queues and taker not in exclude):
            chosen = taker
        elif pair_id in self.flagged:
            chosen = next(iter(self._best(pair_id, exclude, prefer=prefer)), None)
        else:
            chosen = next((r for r in ranked_raters(pair_id, self.raters) if r not in exclude), None)
        if chosen is not None:
            self._hand(index, chosen)
            self._taken.setdefault(index, set()).add(rater)
        return chosen

    def move(self, pair_id: str, giver: str, taker: str) -> bool:
        """Flagged ``pair_id`` leaves ``giver``'s queue (who reached a cap before seeing it) for the
        end of ``taker``'s; False (and nothing changed) when that is not possible."""
        index = self._index.get(pair_id)
        if (
            index is None
            or pair_id not in self.flagged
            or not self.is_assigned(giver, pair_id)
            or self.gave_back(giver, pair_id)
            or taker not in self.queues
            or taker in self._excluded(index)
        ):
            return False
        self.queues[giver].remove(index)
        self._flagged_queue[giver].remove(index)
        self._assigned[giver].discard(pair_id)
        self._holders[index].remove(giver)
        self._given_back.setdefault(index, set()).add(giver)
        self._received[giver].discard(index)
        self.flagged_load[giver] -= 1
        self._hand(index, taker)
        return True

    def apply(self, record: dict[str, Any]) -> None:
        """Apply one log line: its skip or pass (to the recorded taker), then its moves."""
        if record.get("choice") in RELEASING:
            taker = record.get("taker", _COMPUTE)
            self.release(
                record["pair_id"], record["rater"], taker=taker if taker is None or isinstance(taker, str) else _COMPUTE
            )
        moved = record.get("moved")
        for move in moved if isinstance(moved, list) else ():
            if isinstance(move, list) and len(move) == 3 and all(isinstance(x, str) for x in move):
                self.move(*move)

    def replay(self, records: Iterable[dict[str, Any]]) -> None:
        """Apply the skips, passes and moves of a ratings log, in log order."""
        for record in records:
            self.apply(record)
