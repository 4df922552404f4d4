"""The pairs to rate, imported once into ``DIR/pairs.sqlite`` so the rating directory stands alone.

Input is ``curate.core.comparisons.PAIRS_SCHEMA`` (``pair_id``, ``prompt``, ``response_1``,
``response_2``, ``model``, ``meta``) as Parquet or JSONL, a file or a directory of them, read in
batches (bounded memory). The server then fetches one pair at a time by id; export and stats
read the same database, so they work after the input file is gone.

Re-running with the same input is a no-op (fingerprint of paths, sizes and mtimes); with a
changed input, new pairs are added, pairs no longer in the input stop being served (their
ratings stay exportable), and a ``pair_id`` whose text changed is an error rather than a
silent swap of the text people already rated.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from curate.core.errors import InputError
from curate.core.files import iter_jsonl

REQUIRED = ("pair_id", "prompt", "response_1", "response_2")
OPTIONAL = ("model", "meta")


@dataclass
class Pair:
    pair_id: str
    prompt: str
    response_1: str
    response_2: str
    model: str | None = None
    meta: str | None = None

    def response(self, which: int) -> str:
        return self.response_1 if which == 1 else self.response_2


@dataclass
class ImportStats:
    """What happened to each input row: read = ready + sum(skipped.values())."""

    read: int = 0
    ready: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    reused: bool = False  # the input was unchanged since the last import

    def skip(self, reason: str, example: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.examples.setdefault(reason, example)

    @property
    def balanced(self) -> bool:
        return self.read == self.ready + sum(self.skipped.values())

    def summary(self) -> str:
        if self.reused:
            return f"pairs: {self.ready} ready (input unchanged since the last start)"
        parts = [f"pairs: read {self.read}, ready {self.ready}"]
        for reason, n in sorted(self.skipped.items()):
            parts.append(f"skipped {n} {reason} (e.g. {self.examples[reason]})")
        return "; ".join(parts)


def input_files(path: str | os.PathLike) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".parquet", ".jsonl") and not p.name.startswith("."))
        if not files:
            raise InputError(f"{path}: no .parquet or .jsonl pair files")
        return files
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.suffix not in (".parquet", ".jsonl"):
        raise InputError(f"{path}: pairs must be a .parquet or .jsonl file (from `curate train sample-pairs`)")
    return [path]


def _rows(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, row) for each row of one input file; ``row`` is a dict or an error string."""
    if path.suffix == ".parquet":
        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a non-Parquet file
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
        names = set(pf.schema_arrow.names)
        missing = [c for c in REQUIRED if c not in names]
        if missing:
            raise InputError(
                f"{path}: missing column(s) {', '.join(missing)}; expected PAIRS_SCHEMA "
                f"({', '.join(REQUIRED + OPTIONAL)})"
            )
        columns = [c for c in REQUIRED + OPTIONAL if c in names]
        index = 0
        for batch in pf.iter_batches(batch_size=1024, columns=columns):
            for row in batch.to_pylist():
                yield f"{path.name} row {index}", row
                index += 1
        return
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, row, problem in iter_jsonl(fh):
            yield f"{path.name}:{lineno}", row if problem is None else problem


def _validate(row: Any) -> Pair | str:
    if isinstance(row, str):
        return row
    bad = [c for c in REQUIRED if not isinstance(row.get(c), str)]
    if bad:
        return f"missing or non-string {', '.join(bad)}"
    if not row["pair_id"].strip():
        return "empty pair_id"
    meta = row.get("meta")
    if meta is not None and not isinstance(meta, str):
        meta = json.dumps(meta, sort_keys=True)
    model = row.get("model")
    return Pair(
        row["pair_id"],
        row["prompt"],
        row["response_1"],
        row["response_2"],
        model if isinstance(model, str) else None,
        meta,
    )


def _digest(pair: Pair) -> str:
    h = hashlib.sha256()
    for text in (pair.prompt, pair.response_1, pair.response_2):
        h.update(text.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:32]


def _fingerprint(files: list[Path]) -> str:
    parts = []
    for f in files:
        st = f.stat()
        parts.append(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class PairStore:
    """Access to ``pairs.sqlite`` (thread-safe for one process: callers hold a lock): the pairs,
    and the flags the session computed for them (kept with the key of the check that made them,
    so a restart with the same input and settings does not scan every text again)."""

    def __init__(self, db_path: str | os.PathLike):
        self.path = Path(db_path)
        if not self.path.exists():
            raise InputError(
                f"{self.path.parent}: not a rating directory (no {self.path.name}); "
                "start one with `curate rate PAIRS -o DIR`"
            )
        self.conn = sqlite3.connect(self.path, check_same_thread=False)

    def active_ids(self) -> list[str]:
        """The ids to serve, in input order."""
        return [r[0] for r in self.conn.execute("SELECT pair_id FROM pairs WHERE active = 1 ORDER BY position")]

    def get(self, pair_id: str) -> Pair | None:
        row = self.conn.execute(
            "SELECT pair_id, prompt, response_1, response_2, model, meta FROM pairs WHERE pair_id = ?", (pair_id,)
        ).fetchone()
        return Pair(*row) if row else None

    def active_pairs(self) -> Iterator[Pair]:
        """The pairs to serve, in input order (streamed)."""
        query = (
            "SELECT pair_id, prompt, response_1, response_2, model, meta FROM pairs WHERE active = 1 ORDER BY position"
        )
        for row in self.conn.execute(query):
            yield Pair(*row)

    def info(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM info WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def flags(self) -> dict[str, list[str]]:
        """pair_id -> flag reasons, for the flagged pairs only (empty before any session)."""
        try:
            rows = self.conn.execute("SELECT pair_id, reasons FROM flags").fetchall()
        except sqlite3.OperationalError:  # a directory made before flags existed, not opened since
            return {}
        return {pair_id: json.loads(reasons) for pair_id, reasons in rows}

    def save_flags(self, flags: dict[str, list[str]], key: str) -> None:
        """Replace the stored flags (one transaction) and remember which check made them."""
        with self.conn:
            self.conn.execute("DELETE FROM flags")
            self.conn.executemany(
                "INSERT INTO flags VALUES (?, ?)", ((p, json.dumps(r)) for p, r in sorted(flags.items()) if r)
            )
            self.conn.execute("INSERT OR REPLACE INTO info VALUES ('flags_key', ?)", (key,))

    def positions(self) -> dict[str, int]:
        """pair_id -> order for export (active pairs by input order, then the retired ones)."""
        rows = self.conn.execute("SELECT pair_id FROM pairs ORDER BY active DESC, position, pair_id")
        return {r[0]: i for i, r in enumerate(rows)}

    def close(self) -> None:
        self.conn.close()


_CREATE = """
CREATE TABLE IF NOT EXISTS pairs (
    pair_id TEXT PRIMARY KEY, position INTEGER NOT NULL, active INTEGER NOT NULL,
    prompt TEXT NOT NULL, response_1 TEXT NOT NULL, response_2 TEXT NOT NULL,
    model TEXT, meta TEXT, digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS flags (pair_id TEXT PRIMARY KEY, reasons TEXT NOT NULL);
"""


def import_pairs(source: str | os.PathLike, db_path: str | os.PathLike) -> ImportStats:
    """Import (or refresh) the pairs in ``source`` into ``db_path``; one transaction."""
    files = input_files(source)
    stats = ImportStats()
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path)
    try:
        conn.executescript(_CREATE)
        fingerprint = _fingerprint(files)
        row = conn.execute("SELECT value FROM info WHERE key = 'fingerprint'").fetchone()
        if row and row[0] == fingerprint:
            stats.ready = conn.execute("SELECT count(*) FROM pairs WHERE active = 1").fetchone()[0]
            stats.read, stats.reused = stats.ready, True
            return stats
        with conn:  # one transaction: a crash mid-import leaves the previous state
            conn.execute(
                "CREATE TEMP TABLE incoming (pair_id TEXT PRIMARY KEY, position INTEGER, prompt TEXT,"
                " response_1 TEXT, response_2 TEXT, model TEXT, meta TEXT, digest TEXT)"
            )
            position = 0
            for f in files:
                for where, raw in _rows(f):
                    stats.read += 1
                    pair = _validate(raw)
                    if isinstance(pair, str):
                        stats.skip("invalid", f"{where}: {pair}")
                        continue
                    if pair.response_1 == pair.response_2:
                        stats.skip("identical_responses", f"{where}: pair_id {pair.pair_id!r}")
                        continue
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO incoming VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            pair.pair_id,
                            position,
                            pair.prompt,
                            pair.response_1,
                            pair.response_2,
                            pair.model,
                            pair.meta,
                            _digest(pair),
                        ),
                    )
                    if cur.rowcount == 0:
                        stats.skip("duplicate_pair_id", f"{where}: pair_id {pair.pair_id!r}")
                        continue
                    position += 1
                    stats.ready += 1
            changed = conn.execute(
                "SELECT i.pair_id FROM incoming i JOIN pairs p USING (pair_id) WHERE p.digest != i.digest LIMIT 1"
            ).fetchone()
            if changed:
                raise InputError(
                    f"{source}: pair_id {changed[0]!r} has different text than the pair already imported into "
                    f"{db_path.parent} (ratings refer to the old text); rate the new pairs in a new -o directory"
                )
            conn.execute("UPDATE pairs SET active = 0")
            conn.execute(
                "INSERT INTO pairs (pair_id, position, active, prompt, response_1, response_2, model, meta, digest) "
                "SELECT pair_id, position, 1, prompt, response_1, response_2, model, meta, digest FROM incoming "
                "WHERE true ON CONFLICT (pair_id) DO UPDATE SET active = 1, position = excluded.position"
            )
            conn.execute("INSERT OR REPLACE INTO info VALUES ('fingerprint', ?)", (fingerprint,))
            conn.execute("DROP TABLE incoming")
    finally:
        conn.close()
    return stats
