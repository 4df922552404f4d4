"""``curate rate``: people compare two answers in a browser; their choices feed the reward model.

The pieces, each usable without the web server:

- :mod:`.pairs`   imports the pairs to rate (``PAIRS_SCHEMA`` Parquet/JSONL) into ``DIR/pairs.sqlite``,
- :mod:`.assign`  decides which rater sees which pair, in which A/B order (deterministic hashes),
- :mod:`.store`   the append-only, fsync'd ratings log ``DIR/ratings.jsonl`` (idempotent by rating id),
- :mod:`.server`  the HTTP server and JSON API behind the rating page (:mod:`.page`),
- :mod:`.export`  writes the final choices as comparisons (``curate.core.comparisons.COMPARISON_SCHEMA``),
- :mod:`.stats`   ratings per rater, time per rating, A/B position bias, Cohen's kappa.

A rating directory holds everything needed to export or resume: the imported pairs, the log and
``session.json`` (the settings the session was started with).
"""

from __future__ import annotations

PAIRS_DB = "pairs.sqlite"
RATINGS_LOG = "ratings.jsonl"
SESSION_FILE = "session.json"

# The rater's answer to one pair, as the page sends it and the log stores it.
CHOICES = ("a", "b", "tie", "skip")
