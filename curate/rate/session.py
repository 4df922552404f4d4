"""A rating session: raters, their queues and the log, behind the HTTP layer.

:class:`RatingSession` is everything the server does except speak HTTP: who a token belongs to,
the next pair for a rater (A/B order applied, flagged pairs held back once a rater's cap is
reached), recording a choice (validated, idempotent, durable), giving skipped pairs to another
rater, the break clock and progress. Tests and other front-ends can drive it directly.

Caps on flagged pairs also steer the assignment: a skipped flagged pair goes to a rater below
their cap first, and once a rater reaches a cap, the flagged pairs waiting for them move to
raters with room (room: the cap less the flagged pairs seen and those already handed over
unseen). Each rating records what it caused (``taker``, ``moved``), so replaying the log
rebuilds the same queues whatever the limits of a later run. A pair held back is not served,
not even by id, nor rated; a pair given back and taken over by another rater cannot be rated
again by the rater who gave it back. The caps' rules are in :mod:`.caps`, the checks on a
rating's fields in :mod:`.request`.

One server per rating directory: ``DIR/.lock`` is held (``flock``) while a session is open, so
two servers cannot interleave their appends; the OS drops the lock when the process dies,
even by ``kill -9``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from curate.core.errors import ConfigError, CurateError
from curate.core.files import atomic_write_json
from curate.rate import BREAKS_LOG, PAIRS_DB, RATINGS_LOG, RELEASING, SESSION_FILE
from curate.rate.assign import Assignment, a_is
from curate.rate.caps import FlagCaps
from curate.rate.flags import ContentCheck, flag_pairs
from curate.rate.pairs import ImportStats, Pair, PairStore, import_pairs
from curate.rate.raters import EXAMPLE_TOKEN_PREFIX, RATER_NAME, Rater, load_raters
from curate.rate.request import RateError, check_rating, clean_text, held_message
from curate.rate.store import RatingsLog, read_log
from curate.rate.wellbeing import Activity, Limits, note_resume, rating_time, read_resumes, saw_flagged

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None  # type: ignore[assignment]

__all__ = ["EXAMPLE_TOKEN_PREFIX", "RATER_NAME", "RateError", "Rater", "RatingSession", "load_raters"]


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RatingSession:
    """An open rating directory: import pairs, flag them, lock, load the log, assign raters.

    ``flag_words`` and ``flag_filters`` (a filter chain file) add to the bundled bad-words list
    and PII detectors (:mod:`.flags`); like ``overlap`` they default to the values the directory
    was started with, because the flagged set decides who rates what. ``limits`` (breaks, caps
    on flagged pairs) belong to this run only. ``clock`` is the time source (tests pass their own).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        pairs_source: str | os.PathLike | None,
        raters: list[Rater],
        overlap: float | None = None,
        overlap_raters: int | None = None,
        require_tokens: bool = False,
        flag_words: str | os.PathLike | None = None,
        flag_filters: str | os.PathLike | None = None,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise CurateError(f"{self.directory}: exists and is not a directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        if not raters:
            raise ConfigError("no raters")
        if require_tokens and any(not r.token for r in raters):
            raise ConfigError("every rater needs a token when the server is reachable from other machines")
        self.raters = {r.name: r for r in raters}
        self.require_tokens = require_tokens or any(r.token for r in raters)
        self.limits = limits or Limits()
        self.clock = clock
        self._lock_fd = self._acquire_lock()
        try:
            previous = self._read_session()
            self.overlap = float(overlap if overlap is not None else previous.get("overlap", 0.0))
            self.overlap_raters = int(
                overlap_raters if overlap_raters is not None else previous.get("overlap_raters", 2)
            )
            if not 0.0 <= self.overlap <= 1.0:
                raise ConfigError(f"--overlap must be between 0 and 1 (got {self.overlap})")
            if self.overlap_raters < 2:
                raise ConfigError(f"--overlap-raters must be at least 2 (got {self.overlap_raters})")
            source = pairs_source if pairs_source is not None else previous.get("pairs")
            if source is None:
                raise CurateError(f"{self.directory}: no pairs given and none imported before")
            self.flag_words = _path(flag_words) if flag_words is not None else previous.get("flag_words")
            self.flag_filters = _path(flag_filters) if flag_filters is not None else previous.get("flag_filters")
            # Built from the paths as given (errors name them so); stored resolved, for restarts elsewhere.
            check = ContentCheck.build(
                flag_words if flag_words is not None else self.flag_words,
                flag_filters if flag_filters is not None else self.flag_filters,
            )
            self.import_stats: ImportStats = import_pairs(source, self.directory / PAIRS_DB)
            self.pairs = PairStore(self.directory / PAIRS_DB)
            self.pair_ids = self.pairs.active_ids()
            self.flags = flag_pairs(self.pairs, check)
            self.log = RatingsLog(self.directory / RATINGS_LOG)
            self._load_state()
            self._served: dict[tuple[str, str], float] = {}
            atomic_write_json(
                self.directory / SESSION_FILE,
                {
                    "pairs": str(Path(source).resolve()),
                    "overlap": self.overlap,
                    "overlap_raters": self.overlap_raters,
                    "raters": sorted(self.raters),
                    "groups": {r.name: r.group for r in raters if r.group},
                    "flag_words": self.flag_words,
                    "flag_filters": self.flag_filters,
                    "started": _iso(self.clock()),
                    "pairs_ready": len(self.pair_ids),
                    "pairs_flagged": len(self.flags),
                },
            )
        except BaseException:
            if hasattr(self, "pairs"):
                self.pairs.close()
            self._release_lock()
            raise

    # -- lifecycle -------------------------------------------------------------------------

    def _acquire_lock(self) -> int:
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise CurateError(f"{self.directory}: another `curate rate` server is using this directory") from None
        return fd

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = -1

    def _read_session(self) -> dict[str, Any]:
        path = self.directory / SESSION_FILE
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CurateError(f"{path}: unreadable ({exc}); move it away to start the session afresh") from None
        return data if isinstance(data, dict) else {}

    def _load_state(self) -> None:
        """The assignment and the raters' clocks, from the pairs and the log on disk."""
        self.assignment = Assignment(
            self.pair_ids, sorted(self.raters), self.overlap, self.overlap_raters, flagged=self.flags
        )
        self.activity: dict[str, Activity] = {name: Activity() for name in self.raters}
        self._resumes = read_resumes(self.directory / BREAKS_LOG, self.activity)
        for record in read_log(self.log.path):  # skips and moves give pairs away; times feed the clocks
            self.assignment.apply(record)
            self._clock_in(record)
        for rater, times in self._resumes.items():
            for t in times:
                self.activity[rater].resume(t)
        self._resumes.clear()
        self._cursor: dict[str, int] = dict.fromkeys(self.raters, 0)
        self.caps = FlagCaps(self.raters, self.flags, self.limits, self.activity, self.assignment, self.log)

    def _clock_in(self, record: dict[str, Any]) -> None:
        rater = record["rater"]
        t = rating_time(record)
        if rater in self.activity and t is not None:
            resumes = self._resumes.get(rater)
            while resumes and resumes[-1] <= t:  # breaks taken before this rating, in time order
                self.activity[rater].resume(resumes.pop())
            self.activity[rater].act(t, record["pair_id"] if saw_flagged(record) else None)

    def close(self) -> None:
        self.log.close()
        self.pairs.close()
        self._release_lock()

    def __enter__(self) -> RatingSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- raters ----------------------------------------------------------------------------

    def authenticate(self, token: str | None) -> Rater | None:
        """The rater holding ``token``; without tokens configured, the single local rater."""
        if not self.require_tokens:
            return next(iter(self.raters.values()))
        if not token:
            return None
        # Compare digests (equal length) against every rater so the time taken says nothing.
        offered = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        found = None
        for rater in self.raters.values():
            if hmac.compare_digest(offered, hashlib.sha256((rater.token or "").encode()).digest()):
                found = rater
        return found

    # -- pairs, progress and well-being ----------------------------------------------------

    def progress(self, rater: str) -> dict[str, int]:
        """done (a/b/tie/skip), total (assigned minus passed), skipped, passed, and held (flagged
        pairs waiting because the rater reached a cap)."""
        done = skipped = passed = held = 0
        with self.log.lock:  # another request of the same rater may be adding to `answered`
            answered = self.log.state(rater).answered
            for pair_id, choice in answered.items():
                if self.assignment.is_assigned(rater, pair_id):
                    passed += choice == "pass"
                    done += choice != "pass"
                    skipped += choice == "skip"
            limit = self.activity[rater].flagged_limit(self.limits, self.clock()) if rater in self.activity else None
            if limit is not None:
                held = sum(
                    1
                    for pair_id in self.assignment.flagged_queue(rater)
                    if pair_id not in answered and self.caps.held_back(rater, pair_id, limit)
                )
        total = self.assignment.total(rater) - passed
        return {"done": done, "total": total, "skipped": skipped, "passed": passed, "held": held}

    def wellbeing(self, rater: str) -> dict[str, Any]:
        """What the page needs to pause or to explain held-back pairs."""
        now = self.clock()
        with self.log.lock:
            activity = self.activity.get(rater) or Activity()
            return {
                "break_due": activity.break_due(self.limits, now),
                "rating_minutes": round(activity.rating_for(now) / 60, 1),
                "break_after_minutes": None
                if self.limits.break_after_s is None
                else round(self.limits.break_after_s / 60, 1),
                "flagged_limit": activity.flagged_limit(self.limits, now),
                "flagged_this_session": activity.flagged_this_session(now),
                "flagged_today": activity.flagged_today(now),
            }

    def resume(self, rater: str) -> None:
        """The rater ends the break the page asked for; the break clock starts again (noted in
        ``breaks.jsonl``, so a restarted server does not ask for the same break twice)."""
        with self.log.lock:
            if rater not in self.activity:
                return
            now = self.clock()
            self.activity[rater].resume(now)
            note_resume(self.directory / BREAKS_LOG, rater, _iso(now))

    def last_rated(self, rater: str) -> str | None:
        """The pair this rater rated most recently, if still assigned (for Back after a reload)."""
        with self.log.lock:
            last = self.log.state(rater).last_pair
        return last if last and self.assignment.is_assigned(rater, last) else None

    def _view(self, rater: str, pair: Pair) -> dict[str, Any]:
        first = a_is(rater, pair.pair_id)
        return {
            "pair_id": pair.pair_id,
            "prompt": pair.prompt,
            "a": pair.response(first),
            "b": pair.response(3 - first),
            "flags": self.flags.get(pair.pair_id, []),
        }

    def next_pair(self, rater: str) -> dict[str, Any] | None:
        """The rater's first unanswered pair in queue order (the same one until it is answered),
        passing over flagged pairs while the rater's cap is reached."""
        with self.log.lock:
            queue = self.assignment.queues.get(rater, [])
            answered = self.log.state(rater).answered
            cursor = self._cursor.get(rater, 0)
            while cursor < len(queue) and self.pair_ids[queue[cursor]] in answered:
                cursor += 1
            self._cursor[rater] = cursor
            now = self.clock()
            limit = self.activity[rater].flagged_limit(self.limits, now) if rater in self.activity else None
            waiting = (self.pair_ids[i] for i in itertools.islice(queue, cursor, None))
            pair_id = next((p for p in waiting if p not in answered and not self.caps.held_back(rater, p, limit)), None)
            if pair_id is None:
                return None
            self._served.setdefault((rater, pair_id), now)
            pair = self.pairs.get(pair_id)
        return self._view(rater, pair) if pair else None

    def pair_for(self, rater: str, pair_id: str) -> dict[str, Any]:
        """One assigned pair (to go back and revise), with the rater's current choice; not one
        held back by the rater's cap on flagged pairs (409)."""
        with self.log.lock:
            if not self.assignment.is_assigned(rater, pair_id):
                raise RateError(f"pair {pair_id!r} is not assigned to {rater}", 404)
            limit = self.caps.limit(rater, self.clock())
            if self.caps.held_back(rater, pair_id, limit):
                raise RateError(held_message(pair_id, rater, limit), 409)
            pair = self.pairs.get(pair_id)
            choice = self.log.state(rater).answered.get(pair_id)
        if pair is None:  # pragma: no cover - assigned ids always come from the database
            raise RateError(f"pair {pair_id!r} not found", 404)
        return {**self._view(rater, pair), "choice": choice}

    # -- ratings ---------------------------------------------------------------------------

    def rate(self, rater: str, payload: Any) -> dict[str, Any]:
        """Validate and record one choice; returns {recorded, duplicate, progress}.

        A skip or a pass gives the pair to another rater (:meth:`Assignment.release`).
        """
        rating_id, pair_id, choice, reason, client_ms = check_rating(payload)
        revise = payload.get("revise", False) is True
        with self.log.lock:
            if self.log.has(rater, rating_id):  # a retry of a rating already on disk
                return {"recorded": False, "duplicate": True, "progress": self.progress(rater)}
            if not self.assignment.is_assigned(rater, pair_id):
                raise RateError(f"pair {pair_id!r} is not assigned to {rater}", 404)
            previous = self.log.state(rater).answered.get(pair_id)
            if previous is not None and not revise:
                raise RateError(f"pair {pair_id!r} is already rated by {rater}; send revise=true to change it", 409)
            if choice not in RELEASING and self.assignment.replaced(rater, pair_id):
                raise RateError(f"pair {pair_id!r} was given back by {rater} and another rater has it now", 409)
            now = self.clock()
            limit = self.caps.limit(rater, now)
            unread_pass = choice == "pass" and payload.get("revealed") is not True
            if not unread_pass and (rater, pair_id) not in self._served and self.caps.held_back(rater, pair_id, limit):
                raise RateError(held_message(pair_id, rater, limit), 409)
            shown = a_is(rater, pair_id)
            served = self._served.pop((rater, pair_id), None)
            flags = self.flags.get(pair_id, [])
            record = {
                "v": 1,
                "rating_id": rating_id,
                "rater": rater,
                "group": self.raters[rater].group if rater in self.raters else None,
                "pair_id": pair_id,
                "choice": choice,
                "a_is": shown,
                "preferred": {"a": shown, "b": 3 - shown}.get(choice),  # 1 or 2 (response_N), None otherwise
                "reason": clean_text(reason) or None,
                "time": _iso(now),
                "served_at": _iso(served) if served else None,
                "elapsed_s": round(now - served, 3) if served else None,
                "client_ms": int(client_ms) if client_ms is not None else None,
                "revises": previous,
                "flags": flags,
            }
            if flags:  # whether the rater opened the text behind the content note
                record["revealed"] = choice != "pass" or payload.get("revealed") is True
            try:
                self._clock_in(record)
                if choice in RELEASING:  # who takes it over: recorded, so a replay needs no limits
                    record["taker"] = self.assignment.release(pair_id, rater, prefer=self.caps.prefer(now))
                if moves := self.caps.rebalance(now):
                    record["moved"] = moves
                self.log.append(record)
            except BaseException:
                self._load_state()  # not on disk: back to what the log says
                raise
            return {"recorded": True, "duplicate": False, "progress": self.progress(rater)}


def _path(value: str | os.PathLike) -> str:
    return str(Path(value).resolve())
