"""The caps on flagged pairs (``--max-flagged``, ``--max-flagged-per-day``) over a rating
session's state: which flagged pairs wait while a rater is at a cap, how many more a rater has
room for, and who takes over the flagged pairs waiting for a rater at a cap."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection

from curate.rate.assign import Assignment
from curate.rate.store import RatingsLog
from curate.rate.wellbeing import Activity, Limits


class FlagCaps:
    """``limits`` applied to the raters' ``activity``, the ``assignment`` and the ``log``; built
    again whenever the session reloads its state, so it always reads the current objects."""

    def __init__(
        self,
        raters: Collection[str],
        flags: dict[str, list[str]],
        limits: Limits,
        activity: dict[str, Activity],
        assignment: Assignment,
        log: RatingsLog,
    ):
        self.raters = raters
        self.flags = flags
        self.limits = limits
        self.activity = activity
        self.assignment = assignment
        self.log = log

    def held_back(self, rater: str, pair_id: str, limit: str | None) -> bool:
        """A flagged pair the rater has not seen yet, while their cap is reached."""
        return limit is not None and pair_id in self.flags and pair_id not in self.activity[rater].flagged_pairs

    def limit(self, rater: str, now: float) -> str | None:
        activity = self.activity.get(rater)
        return activity.flagged_limit(self.limits, now) if activity is not None else None

    def room(self, rater: str, now: float) -> float:
        """How many more flagged pairs the rater may see now, less those handed to them unseen."""
        activity = self.activity.get(rater)
        if activity is None:
            return 0
        room = math.inf
        if self.limits.max_flagged_session is not None:
            room = min(room, self.limits.max_flagged_session - activity.flagged_this_session(now))
        if self.limits.max_flagged_day is not None:
            room = min(room, self.limits.max_flagged_day - activity.flagged_today(now))
        answered = self.log.state(rater).answered
        pending = sum(
            1 for p in self.assignment.received(rater) if p not in answered and p not in activity.flagged_pairs
        )
        return room - pending

    def rebalance(self, now: float) -> list[list[str]]:
        """Move the flagged pairs waiting for raters at a cap to raters with room (fewest flagged
        pairs first); the moves as [pair_id, from, to], in the order made."""
        if self.limits.max_flagged_session is None and self.limits.max_flagged_day is None:
            return []
        capped = [r for r in sorted(self.raters) if self.limit(r, now) is not None]
        if not capped:
            return []
        room = {r: self.room(r, now) for r in self.raters}
        moves: list[list[str]] = []
        for giver in capped:
            if not any(left > 0 for left in room.values()):
                break
            answered = self.log.state(giver).answered
            seen = self.activity[giver].flagged_pairs
            for pair_id in self.assignment.flagged_queue(giver):
                if pair_id in answered or pair_id in seen or self.assignment.gave_back(giver, pair_id):
                    continue
                taker = self.assignment.best_taker(pair_id, lambda r: room[r] > 0)
                if taker is not None and self.assignment.move(pair_id, giver, taker):
                    room[taker] -= 1
                    moves.append([pair_id, giver, taker])
        return moves

    def prefer(self, now: float) -> Callable[[str], tuple]:
        """How a skipped flagged pair picks its taker: raters below their cap first, those with room first."""

        def key(name: str) -> tuple:
            return (self.limit(name, now) is not None, self.room(name, now) <= 0)

        return key
