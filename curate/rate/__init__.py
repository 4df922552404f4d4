"""``curate rate``: people compare two answers in a browser; their choices feed the reward model.

The pieces, each usable without the web server:

- :mod:`.pairs`   imports the pairs to rate (``PAIRS_SCHEMA`` Parquet/JSONL) into ``DIR/pairs.sqlite``,
- :mod:`.flags`   marks pairs that get a content note (the safety filters, ``--flag-words``),
- :mod:`.assign`  decides which rater sees which pair, in which A/B order (deterministic hashes),
- :mod:`.raters`  ``raters.toml``: names, tokens and optional groups,
- :mod:`.wellbeing` break reminders, caps on flagged pairs, active time,
- :mod:`.store`   the append-only, fsync'd ratings log ``DIR/ratings.jsonl`` (idempotent by rating id),
- :mod:`.server`  the HTTP server and JSON API behind the rating page (:mod:`.page`),
- :mod:`.export`  writes the final choices as comparisons (``curate.core.comparisons.COMPARISON_SCHEMA``),
- :mod:`.stats`   ratings per rater, active time, flagged pairs seen, A/B position bias, Cohen's kappa,
- :mod:`.groups`  agreement within and across rater groups.

A rating directory holds everything needed to export or resume: the imported pairs (and their
flags), the log, ``breaks.jsonl`` and ``session.json`` (the settings the session was started with).
"""

from __future__ import annotations

PAIRS_DB = "pairs.sqlite"
RATINGS_LOG = "ratings.jsonl"
SESSION_FILE = "session.json"
BREAKS_LOG = "breaks.jsonl"  # when each rater resumed after a break reminder

# The rater's answer to one pair, as the page sends it and the log stores it. "pass" is the
# content note's "skip this one, show me something else": it does not count against the rater.
CHOICES = ("a", "b", "tie", "skip", "pass")
# Choices that give the pair back to the pool for another rater.
RELEASING = ("skip", "pass")
