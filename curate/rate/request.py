"""What a rating request may hold: the checks on the fields the page sends with a choice, and
:class:`RateError`, the refusal the server answers with an HTTP status."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from curate.core.errors import CurateError
from curate.rate import CHOICES

MAX_REASON_CHARS = 5000
MAX_CLIENT_MS = 24 * 3600 * 1000
RATING_ID = re.compile(r"^[A-Za-z0-9_-]{8,100}$")


class RateError(CurateError):
    """A request the session refuses; ``status`` is the HTTP status the server answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def check_rating(payload: Any) -> tuple[str, str, str, str, int | float | None]:
    """(rating_id, pair_id, choice, reason, client_ms) of a rating's JSON body, each checked."""
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
        isinstance(client_ms, bool) or not isinstance(client_ms, (int, float)) or not 0 <= client_ms <= MAX_CLIENT_MS
    ):
        raise RateError("client_ms must be a number of milliseconds")
    return rating_id, pair_id, choice, reason, client_ms


def clean_text(text: str) -> str:
    # Lone surrogates (from JSON "\ud800") cannot be written as UTF-8; control characters are noise.
    text = text.encode("utf-8", "replace").decode("utf-8")
    return "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc").strip()


def held_message(pair_id: str, rater: str, limit: str | None) -> str:
    return f"pair {pair_id!r} is held back: {rater} reached the cap on flagged pairs for this {limit}"
