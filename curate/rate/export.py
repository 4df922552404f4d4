"""``curate rate export``: the ratings log -> comparisons for ``curate train reward`` / ``dpo``.

Each rater's last choice per pair counts (a revision replaces the earlier line). "A is better"
and "B is better" become one comparison (``prompt``, ``chosen``, ``rejected``, ``rater``,
``source``, ``date``, ``reason``, ``group``) with A/B mapped back through the ``a_is`` the rating
recorded; ties, skips and passes stay in the raw log only. ``group`` is the rater's group from
``raters.toml`` (empty when none), for ``curate train reward --by-group``. Every log line is
accounted for::

    lines = exported + ties + skips + passes + revised + disagreements dropped + unknown pairs

Rows come out in input order of the pairs, then by rater name, so the same log gives a
byte-identical file. ``.jsonl`` output is written too (same fields, ISO dates).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.core.comparisons import COMPARISON_SCHEMA
from curate.core.errors import InputError
from curate.core.files import atomic_write_bytes, writing
from curate.rate import PAIRS_DB, RATINGS_LOG, SESSION_FILE
from curate.rate.pairs import PairStore
from curate.rate.store import LogReadReport, latest_ratings

# The comparison schema plus the rater's group (added here unless core's schema has it already).
EXPORT_SCHEMA = (
    COMPARISON_SCHEMA
    if "group" in COMPARISON_SCHEMA.names
    else COMPARISON_SCHEMA.append(pa.field("group", pa.string()))
)


@dataclass
class ExportStats:
    lines: int = 0
    exported: int = 0
    ties: int = 0
    skips: int = 0
    passes: int = 0  # "skip this one" from a content note
    revised: int = 0  # earlier lines replaced by a later rating of the same pair by the same rater
    disagreements: int = 0  # ratings dropped with --drop-disagreements
    unknown_pair: int = 0
    bad_lines: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return self.lines == (
            self.exported
            + self.ties
            + self.skips
            + self.passes
            + self.revised
            + self.disagreements
            + self.unknown_pair
            + self.bad_lines
        )

    def summary(self) -> str:
        parts = [
            f"ratings: {self.lines} log lines -> {self.exported} comparisons exported",
            f"{self.ties} ties",
            f"{self.skips} skips",
            f"{self.passes} passes",
            f"{self.revised} revised (superseded)",
        ]
        if self.disagreements:
            parts.append(f"{self.disagreements} dropped as disagreements")
        if self.unknown_pair:
            parts.append(f"{self.unknown_pair} for unknown pairs")
        if self.bad_lines:
            parts.append(f"{self.bad_lines} unreadable lines")
        return ", ".join(parts) + "".join(f"\n{n}" for n in self.notes)


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def load_latest(directory: str | os.PathLike) -> tuple[dict[tuple[str, str], dict[str, Any]], LogReadReport]:
    directory = Path(directory)
    if not (directory / PAIRS_DB).exists():
        raise InputError(
            f"{directory}: not a rating directory (no {PAIRS_DB}); start one with `curate rate PAIRS -o DIR`"
        )
    report = LogReadReport()
    return latest_ratings(directory / RATINGS_LOG, report), report


def export_ratings(
    directory: str | os.PathLike, output: str | os.PathLike, drop_disagreements: bool = False
) -> ExportStats:
    """Write the comparisons in ``directory``'s log to ``output`` (.parquet or .jsonl)."""
    directory, output = Path(directory), Path(output)
    if output.suffix not in (".parquet", ".jsonl"):
        raise InputError(f"{output}: the output must end in .parquet or .jsonl")
    latest, report = load_latest(directory)
    stats = ExportStats(
        lines=report.lines, bad_lines=report.bad_lines, revised=report.lines - report.bad_lines - len(latest)
    )
    if report.bad_lines:
        stats.notes.append(f"warning: {report.bad_lines} unreadable line(s) in the log, first at {report.first_bad}")
    if report.torn_tail_bytes:
        stats.notes.append(
            "note: the log ends in a partly written line (a rating being saved, or never confirmed); it is not exported"
        )
    groups = _session_groups(directory)
    store = PairStore(directory / PAIRS_DB)
    try:
        positions = store.positions()
        by_pair: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (_, pair_id), record in latest.items():
            if pair_id not in positions:
                stats.unknown_pair += 1
                continue
            if record["choice"] == "tie":
                stats.ties += 1
            elif record["choice"] == "skip":
                stats.skips += 1
            elif record["choice"] == "pass":
                stats.passes += 1
            elif record.get("preferred") in (1, 2):
                by_pair[pair_id].append(record)
            else:
                stats.bad_lines += 1
        rows: list[dict[str, Any]] = []
        for pair_id in sorted(by_pair, key=positions.__getitem__):
            records = sorted(by_pair[pair_id], key=lambda r: r["rater"])
            if drop_disagreements and len({r["preferred"] for r in records}) > 1:
                stats.disagreements += len(records)
                continue
            pair = store.get(pair_id)
            assert pair is not None  # positions come from the same table
            source = f"curate-rate:{pair.model}" if pair.model else "curate-rate"
            for record in records:
                preferred = record["preferred"]
                rows.append(
                    {
                        "prompt": pair.prompt,
                        "chosen": pair.response(preferred),
                        "rejected": pair.response(3 - preferred),
                        "rater": record["rater"],
                        "source": source,
                        "date": parse_time(record.get("time")),
                        "reason": record.get("reason") or None,
                        "group": record.get("group") or groups.get(record["rater"]),
                    }
                )
        stats.exported = len(rows)
    finally:
        store.close()
    if output.suffix == ".parquet":
        _write_parquet(rows, output)
    else:
        lines = [
            json.dumps({**r, "date": r["date"].isoformat() if r["date"] else None}, ensure_ascii=False, sort_keys=True)
            for r in rows
        ]
        atomic_write_bytes(output, ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8"))
    return stats


def _session_groups(directory: Path) -> dict[str, str]:
    """Rater -> group as the session was last started (for ratings made before groups were set)."""
    try:
        groups = json.loads((directory / SESSION_FILE).read_text()).get("groups")
    except (OSError, ValueError, AttributeError):
        return {}
    return {k: v for k, v in groups.items() if isinstance(v, str)} if isinstance(groups, dict) else {}


def _write_parquet(rows: list[dict[str, Any]], output: Path) -> None:
    """Atomically, with :data:`EXPORT_SCHEMA` (core's writer knows only the core columns)."""
    table = pa.Table.from_pylist(rows, schema=EXPORT_SCHEMA)
    with writing(output):
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
        os.close(fd)
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, output)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
