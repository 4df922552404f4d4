"""A rating session: raters, their queues and the log, behind the HTTP layer.

:class:`RatingSession` is everything the server does except speak HTTP: who a token belongs to,
the next pair for a rater (A/B order applied), recording a choice (validated, idempotent,
durable) and progress. Tests and other front-ends can drive it directly.

One server per rating directory: ``DIR/.lock`` is held (``flock``) while a session is open, so
two servers cannot interleave their appends; the OS drops the lock when the process dies,
even by ``kill -9``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from curate.core.config import load_toml
from curate.core.errors import ConfigError, CurateError
from curate.core.files import atomic_write_json
from curate.rate import CHOICES, PAIRS_DB, RATINGS_LOG, SESSION_FILE
from curate.rate.assign import Assignment, a_is
from curate.rate.pairs import ImportStats, Pair, PairStore, import_pairs
from curate.rate.store import RatingsLog

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None  # type: ignore[assignment]

MAX_REASON_CHARS = 5000
MAX_CLIENT_MS = 24 * 3600 * 1000
RATING_ID = re.compile(r"^[A-Za-z0-9_-]{8,100}$")
RATER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
TOKEN = re.compile(r"^[A-Za-z0-9_.~-]+$")  # safe unquoted in a URL and a cookie (token_urlsafe's alphabet)
MIN_TOKEN_CHARS = 16
# The tokens in samples/raters.toml start with this; they are public, so never accept them.
EXAMPLE_TOKEN_PREFIX = "change-me"


@dataclass(frozen=True)
class Rater:
    name: str
    token: str | None = None


class RateError(CurateError):
    """A request the session refuses; ``status`` is the HTTP status the server answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def load_raters(path: str | os.PathLike, allow_example_tokens: bool = False) -> list[Rater]:
    """``[[raters]]`` tables with ``name`` and ``token``; names and tokens unique, tokens long.

    The public example tokens of ``samples/raters.toml`` pass only with ``allow_example_tokens``
    (the server allows them on the loopback address, for trying things out).
    """
    data = load_toml(path)
    unknown = sorted(set(data) - {"raters"})
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}; expected [[raters]] tables with name and token"
        )
    entries = data.get("raters")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f'{path}: no raters; add [[raters]] tables with name = "..." and token = "..."')
    raters: list[Rater] = []
    for i, entry in enumerate(entries):
        where = f"{path}: raters[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table with name and token")
        extra = sorted(set(entry) - {"name", "token"})
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)}; known keys: name, token")
        name, token = entry.get("name"), entry.get("token")
        if not isinstance(name, str) or not RATER_NAME.match(name):
            raise ConfigError(f"{where}: name must be 1-64 letters, digits or _.@- (got {name!r})")
        if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"{where} ({name}): token must be a string of at least {MIN_TOKEN_CHARS} characters; "
                "make one with: python -c 'import secrets; print(secrets.token_urlsafe(24))'"
            )
        if token.startswith(EXAMPLE_TOKEN_PREFIX) and not allow_example_tokens:
            raise ConfigError(
                f"{where} ({name}): replace the example token with a secret one "
                "(python -c 'import secrets; print(secrets.token_urlsafe(24))')"
            )
        if not TOKEN.match(token):
            raise ConfigError(f"{where} ({name}): token may hold only letters, digits and _.~-")
        raters.append(Rater(name, token))
    names = [r.name for r in raters]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"{path}: rater name {dup!r} appears twice")
    if len({r.token for r in raters}) != len(raters):
        raise ConfigError(f"{path}: two raters share a token; each rater needs their own")
    return raters


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clean_text(text: str) -> str:
    # Lone surrogates (from JSON "\ud800") cannot be written as UTF-8; control characters are noise.
    text = text.encode("utf-8", "replace").decode("utf-8")
    return "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc").strip()


class RatingSession:
    """An open rating directory: import pairs, lock, load the log, assign raters."""

    def __init__(
        self,
        directory: str | os.PathLike,
        pairs_source: str | os.PathLike | None,
        raters: list[Rater],
        overlap: float | None = None,
        overlap_raters: int | None = None,
        require_tokens: bool = False,
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
            self.import_stats: ImportStats = import_pairs(source, self.directory / PAIRS_DB)
            self.pairs = PairStore(self.directory / PAIRS_DB)
            self.pair_ids = self.pairs.active_ids()
            self.assignment = Assignment(self.pair_ids, sorted(self.raters), self.overlap, self.overlap_raters)
            self.log = RatingsLog(self.directory / RATINGS_LOG)
            self._cursor: dict[str, int] = dict.fromkeys(self.raters, 0)
            self._served: dict[tuple[str, str], float] = {}
            atomic_write_json(
                self.directory / SESSION_FILE,
                {
                    "pairs": str(Path(source).resolve()),
                    "overlap": self.overlap,
                    "overlap_raters": self.overlap_raters,
                    "raters": sorted(self.raters),
                    "started": _now(),
                    "pairs_ready": len(self.pair_ids),
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

    # -- pairs and progress ----------------------------------------------------------------

    def progress(self, rater: str) -> dict[str, int]:
        done = skipped = 0
        with self.log.lock:  # another request of the same rater may be adding to `answered`
            for pair_id, choice in self.log.state(rater).answered.items():
                if self.assignment.is_assigned(rater, pair_id):
                    done += 1
                    skipped += choice == "skip"
        return {"done": done, "total": self.assignment.total(rater), "skipped": skipped}

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
        }

    def next_pair(self, rater: str) -> dict[str, Any] | None:
        """The rater's first unanswered pair in queue order (the same one until it is answered)."""
        with self.log.lock:
            queue = self.assignment.queues.get(rater, [])
            answered = self.log.state(rater).answered
            cursor = self._cursor.get(rater, 0)
            while cursor < len(queue) and self.pair_ids[queue[cursor]] in answered:
                cursor += 1
            self._cursor[rater] = cursor
            if cursor >= len(queue):
                return None
            pair_id = self.pair_ids[queue[cursor]]
            self._served.setdefault((rater, pair_id), time.time())
            pair = self.pairs.get(pair_id)
        return self._view(rater, pair) if pair else None

    def pair_for(self, rater: str, pair_id: str) -> dict[str, Any]:
        """One assigned pair (to go back and revise), with the rater's current choice."""
        with self.log.lock:
            if not self.assignment.is_assigned(rater, pair_id):
                raise RateError(f"pair {pair_id!r} is not assigned to {rater}", 404)
            pair = self.pairs.get(pair_id)
            choice = self.log.state(rater).answered.get(pair_id)
        if pair is None:  # pragma: no cover - assigned ids always come from the database
            raise RateError(f"pair {pair_id!r} not found", 404)
        return {**self._view(rater, pair), "choice": choice}

    # -- ratings ---------------------------------------------------------------------------

    def rate(self, rater: str, payload: Any) -> dict[str, Any]:
        """Validate and record one choice; returns {recorded, duplicate, progress}."""
        if not isinstance(payload, dict):
            raise RateError("expected a JSON object")
        rating_id, pair_id, choice = payload.get("rating_id"), payload.get("pair_id"), payload.get("choice")
        if not isinstance(rating_id, str) or not RATING_ID.match(rating_id):
            raise RateError("rating_id must be 8-100 letters, digits, _ or -")
        if not isinstance(pair_id, str):
            raise RateError("pair_id must be a string")
        if choice not in CHOICES:
            raise RateError(f"choice must be one of {', '.join(CHOICES)}")
        reason = payload.get("reason") or ""
        if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
            raise RateError(f"reason must be text of at most {MAX_REASON_CHARS} characters")
        client_ms = payload.get("client_ms")
        if client_ms is not None and (
            isinstance(client_ms, bool)
            or not isinstance(client_ms, (int, float))
            or not 0 <= client_ms <= MAX_CLIENT_MS
        ):
            raise RateError("client_ms must be a number of milliseconds")
        revise = payload.get("revise", False) is True
        with self.log.lock:
            if self.log.has(rater, rating_id):  # a retry of a rating already on disk
                return {"recorded": False, "duplicate": True, "progress": self.progress(rater)}
            if not self.assignment.is_assigned(rater, pair_id):
                raise RateError(f"pair {pair_id!r} is not assigned to {rater}", 404)
            previous = self.log.state(rater).answered.get(pair_id)
            if previous is not None and not revise:
                raise RateError(f"pair {pair_id!r} is already rated by {rater}; send revise=true to change it", 409)
            shown = a_is(rater, pair_id)
            served = self._served.pop((rater, pair_id), None)
            now = time.time()
            record = {
                "v": 1,
                "rating_id": rating_id,
                "rater": rater,
                "pair_id": pair_id,
                "choice": choice,
                "a_is": shown,
                "preferred": {"a": shown, "b": 3 - shown}.get(choice),  # 1 or 2 (response_N), None for tie/skip
                "reason": _clean_text(reason) or None,
                "time": _now(),
                "served_at": datetime.fromtimestamp(served, UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
                if served
                else None,
                "elapsed_s": round(now - served, 3) if served else None,
                "client_ms": int(client_ms) if client_ms is not None else None,
                "revises": previous,
            }
            self.log.append(record)
            return {"recorded": True, "duplicate": False, "progress": self.progress(rater)}
