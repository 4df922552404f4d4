"""The ratings log: ``DIR/ratings.jsonl``, one JSON object per line, appended and fsync'd.

Every choice is on disk before the server answers OK, so a crash, Ctrl-C or ``kill -9`` loses
nothing the rater saw confirmed. Each rating carries a client-made ``rating_id``: a retried
POST (the answer got lost, the server restarted in between) finds its id already in the log and
is acknowledged without a second line. The log is never rewritten: a revised rating is a new
line with ``revises`` set, and readers take the last line per (rater, pair).

A crash in the middle of a write can leave a torn last line (no newline). The server, which
owns the file, trims it on open (that rating was never acknowledged, so its client retries);
read-only users (export, stats) just ignore it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.core.errors import InputError


@dataclass
class LogReadReport:
    lines: int = 0
    bad_lines: int = 0
    first_bad: str | None = None
    torn_tail_bytes: int = 0


RATING_KEYS = ("rating_id", "rater", "pair_id", "choice")


def read_log(
    path: str | os.PathLike, report: LogReadReport | None = None, required: tuple[str, ...] = RATING_KEYS
) -> Iterator[dict[str, Any]]:
    """Stream the complete records in a JSONL log (those with the ``required`` keys), in append
    order (bounded memory)."""
    path = Path(path)
    report = report if report is not None else LogReadReport()
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                report.torn_tail_bytes = len(raw)  # only the last line can lack its newline
                break
            report.lines += 1
            try:
                record = json.loads(raw)
                if not isinstance(record, dict) or not set(required) <= record.keys():
                    raise ValueError("not a rating")
            except ValueError:
                report.bad_lines += 1
                report.first_bad = report.first_bad or f"{path.name}:{lineno}"
                continue
            yield record


def latest_ratings(
    path: str | os.PathLike, report: LogReadReport | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    """The last rating per (rater, pair_id), in the order each pair was first rated."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for record in read_log(path, report):
        latest[(record["rater"], record["pair_id"])] = record  # an update keeps the key's first place
    return latest


@dataclass
class RaterState:
    answered: dict[str, str] = field(default_factory=dict)  # pair_id -> latest choice
    ratings: int = 0  # log lines by this rater (revisions included)
    last_pair: str | None = None  # the pair rated most recently (the page's Back after a reload)


class RatingsLog:
    """The writer: append + fsync under a lock; an in-memory index for idempotency and progress."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock = threading.RLock()  # re-entrant: rate() reads progress while holding it
        self.rating_ids: set[tuple[str, str]] = set()  # (rater, rating_id): ids are the client's, per rater
        self.raters: dict[str, RaterState] = {}
        self.report = LogReadReport()
        for record in read_log(self.path, self.report):
            self._index(record)
        if self.report.torn_tail_bytes:
            # Never acknowledged (the fsync comes before the answer): cut it so the next line starts clean.
            with open(self.path, "r+b") as fh:
                fh.truncate(self.path.stat().st_size - self.report.torn_tail_bytes)
                fh.flush()
                os.fsync(fh.fileno())
        new_file = not self.path.exists()
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if new_file:
            _fsync_dir(self.path.parent)

    def _index(self, record: dict[str, Any]) -> None:
        self.rating_ids.add((record["rater"], record["rating_id"]))
        state = self.raters.setdefault(record["rater"], RaterState())
        state.answered[record["pair_id"]] = record["choice"]
        state.ratings += 1
        state.last_pair = record["pair_id"]

    def state(self, rater: str) -> RaterState:
        return self.raters.get(rater) or RaterState()

    def has(self, rater: str, rating_id: str) -> bool:
        return (rater, rating_id) in self.rating_ids

    def append(self, record: dict[str, Any]) -> bool:
        """Write one rating durably; False (and nothing written) when its rating_id is already logged.

        Callers that check-then-append hold :attr:`lock` around both.
        """
        if (record["rater"], record["rating_id"]) in self.rating_ids:
            return False
        line = json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"
        data = line.encode("utf-8", "replace")
        start = os.fstat(self.fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]
            os.fsync(self.fd)
        except OSError as exc:
            try:  # a half-written line (disk full) would corrupt the next one: cut it back
                os.ftruncate(self.fd, start)
            except OSError:
                pass
            raise InputError(f"{self.path}: cannot write the rating ({exc.strerror or exc})") from None
        self._index(record)
        return True

    def close(self) -> None:
        with self.lock:  # let a rating being written finish its line and fsync first
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
