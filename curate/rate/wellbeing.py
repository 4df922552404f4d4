"""Rater well-being: how long someone has rated without a pause, and how much flagged content
they have seen, in this session and in the last day.

Time comes from the ratings themselves (each log line's ``time``), so a restarted server knows
as much as the one before it. Three spans, one rule each:

- a gap of :data:`PAUSE_S` or more between two ratings is a *pause*: active time does not run
  through it (``curate rate stats``), and the break clock starts again after it;
- a gap of :data:`SESSION_GAP_S` or more ends a *session*: the per-session cap on flagged pairs
  (``--max-flagged``) starts afresh;
- the per-day cap (``--max-flagged-per-day``) counts the last 24 hours, whatever the time zone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from curate.core.errors import CurateError
from curate.rate.store import read_log

PAUSE_S = 5 * 60
SESSION_GAP_S = 30 * 60
DAY_S = 24 * 3600


def rating_time(record: dict[str, Any]) -> float | None:
    """The POSIX time a rating was recorded (its ``time`` field), or None."""
    text = record.get("time")
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def client_seconds(record: dict[str, Any]) -> float | None:
    """How long the page showed the pair (its visible-time clock, else the server's)."""
    if isinstance(record.get("client_ms"), (int, float)):
        return record["client_ms"] / 1000.0
    if isinstance(record.get("elapsed_s"), (int, float)):
        return float(record["elapsed_s"])
    return None


def saw_flagged(record: dict[str, Any]) -> bool:
    """Whether a rating showed a flagged pair's text (a pass from the content note did not)."""
    return bool(record.get("flags")) and (record["choice"] != "pass" or record.get("revealed") is True)


def active_seconds(events: Iterable[tuple[float, float | None]]) -> float:
    """Active time of one rater from their ratings' (time, seconds the page showed the pair):
    the gaps between consecutive ratings, a gap of a pause or more replaced by the time the page
    showed that pair (at most :data:`PAUSE_S`). Wall time would count lunch; this counts
    reading and choosing."""
    total = 0.0
    previous: float | None = None
    for t, seconds in sorted(events, key=lambda e: e[0]):
        if previous is not None and t - previous < PAUSE_S:
            total += t - previous
        else:
            total += min(seconds or 0.0, PAUSE_S)
        previous = t
    return total


@dataclass(frozen=True)
class Limits:
    """The well-being settings of a server run (None = off)."""

    max_flagged_session: int | None = None
    max_flagged_day: int | None = None
    break_after_s: float | None = None


@dataclass
class Activity:
    """One rater's clocks and flagged-content counts, fed rating by rating."""

    last: float | None = None
    stretch_start: float | None = None  # continuous rating since (the break clock)
    session_start: float | None = None
    flagged_seen: list[float] = field(default_factory=list)  # when each flagged pair was first seen
    flagged_pairs: set[str] = field(default_factory=set)

    def act(self, t: float, flagged_pair: str | None = None) -> None:
        """A rating at ``t``; ``flagged_pair`` when it showed a flagged pair's text."""
        if self.last is None or t - self.last >= PAUSE_S:
            self.stretch_start = t
        if self.last is None or t - self.last >= SESSION_GAP_S:
            self.session_start = t
        self.last = t if self.last is None else max(self.last, t)
        if flagged_pair is not None and flagged_pair not in self.flagged_pairs:
            self.flagged_pairs.add(flagged_pair)
            self.flagged_seen.append(t)

    def resume(self, now: float) -> None:
        """The rater took the break the page asked for: the break clock starts again."""
        self.stretch_start = now

    def rating_for(self, now: float) -> float:
        """Seconds of continuous rating up to ``now`` (0 after a pause)."""
        if self.last is None or self.stretch_start is None or now - self.last >= PAUSE_S:
            return 0.0
        return max(0.0, now - self.stretch_start)

    def flagged_this_session(self, now: float) -> int:
        if self.last is None or self.session_start is None or now - self.last >= SESSION_GAP_S:
            return 0
        return sum(t >= self.session_start for t in self.flagged_seen)

    def flagged_today(self, now: float) -> int:
        return sum(t > now - DAY_S for t in self.flagged_seen)

    def flagged_limit(self, limits: Limits, now: float) -> str | None:
        """``"session"`` or ``"day"`` when that cap on flagged pairs is reached, else None."""
        if limits.max_flagged_day is not None and self.flagged_today(now) >= limits.max_flagged_day:
            return "day"
        if limits.max_flagged_session is not None and self.flagged_this_session(now) >= limits.max_flagged_session:
            return "session"
        return None

    def break_due(self, limits: Limits, now: float) -> bool:
        if limits.break_after_s is None or self.last is None or now - self.last >= PAUSE_S:
            return False
        return self.rating_for(now) >= limits.break_after_s


def note_resume(path: str | os.PathLike, rater: str, when: str) -> None:
    """Append a resume after a break to ``breaks.jsonl`` (so a restart does not ask again)."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"rater": rater, "time": when}) + "\n")
    except OSError as exc:  # the break itself is not lost, only its note for a restart
        raise CurateError(f"{path}: cannot write ({exc.strerror or exc})") from None


def read_resumes(path: str | os.PathLike, raters: Container[str]) -> dict[str, list[float]]:
    """Per rater, the times they resumed after a break, newest first (to pop oldest first)."""
    resumes: dict[str, list[float]] = {}
    for record in read_log(path, required=("rater", "time")):
        t = rating_time(record)
        if record["rater"] in raters and t is not None:
            resumes.setdefault(record["rater"], []).append(t)
    for times in resumes.values():
        times.sort(reverse=True)
    return resumes
