"""What a checkpoint has consumed, and the documents behind it (``curate lineage``).

Every training stage writes ``consumed.parquet`` into each step folder: one row per mix row
(pretraining) or example (SFT, reward, RLHF, DPO) it has read so far, with

    id          the document id as in the mix shard (chunk ids as they are), or the example's
                ``id`` field, else ``file:line``
    source      the mix row's source, or the example file
    tokens      tokens of it consumed so far, over every pass (pretraining counts the
                end-of-text token after each document, so the column sums to the tokens seen)
    times_seen  passes in which it was read (a document cut by the checkpoint counts once)
    shard, row  the mix shard's file name (relative to the mix folder) and the row in it, or
                the example file and its line (JSON Lines, from 1) or row (Parquet, from 0)

It is built from the data readers' positions (train/data.py counts as it advances, which is
what its resumable position replays), never from per-token lists, so a resumed run writes the
uninterrupted run's file. The checkpoint's ``config.json`` gets a summary (``consumed``: rows,
documents, tokens, by source, by month of document date, and the cutoff of what was consumed:
latest date, 99th percentile, undated documents), which ``curate inspect``/``report`` show.

:func:`lineage` joins the record with the mix shards' crawl columns (DuckDB over the shards'
files, reading no text) for ``curate lineage``. This module does not import torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.core.errors import InputError

from .lineage_summary import connect, summarize
from .mix import MixInfo, open_mix

CONSUMED_FILE = "consumed.parquet"
CONFIG_FILE = "config.json"  # train/checkpoint.py's; not imported from there (it imports torch)
CONSUMED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("tokens", pa.int64()),
        ("times_seen", pa.int32()),
        ("shard", pa.string()),
        ("row", pa.int64()),
    ]
)
# What `curate lineage` writes, in this order.
LINEAGE_COLUMNS = [
    "id",
    "source",
    "url",
    "crawl",
    "warc_path",
    "warc_offset",
    "date",
    "tokens",
    "times_seen",
    "shard",
    "row",
]
_CRAWL_COLUMNS = {
    "url": "VARCHAR",
    "crawl": "VARCHAR",
    "warc_path": "VARCHAR",
    "warc_offset": "BIGINT",
    "date": "TIMESTAMPTZ",
}


class Consumption:
    """Tokens consumed and times seen per mix row, counted as one reader advances: two arrays
    per shard it has touched (12 bytes a row), whatever the run's length."""

    def __init__(self, shard_rows: Sequence[int]):
        self.shard_rows = list(shard_rows)
        self.tokens: dict[int, np.ndarray] = {}
        self.times: dict[int, np.ndarray] = {}

    def _arrays(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        if shard not in self.tokens:
            self.tokens[shard] = np.zeros(self.shard_rows[shard], dtype=np.int64)
            self.times[shard] = np.zeros(self.shard_rows[shard], dtype=np.int32)
        return self.tokens[shard], self.times[shard]

    def add(self, shard: int, row: int, tokens: int, started: bool) -> None:
        """``tokens`` more of a row; ``started``: they begin the row (a new pass over it)."""
        counts, times = self._arrays(shard)
        counts[row] += tokens
        if started:
            times[row] += 1

    @property
    def total_tokens(self) -> int:
        return int(sum(int(a.sum()) for a in self.tokens.values()))

    def sparse(self) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """(shard, rows, tokens, times) of the rows read, to gather across ranks."""
        out = []
        for shard in sorted(self.tokens):
            rows = np.flatnonzero(self.tokens[shard] | self.times[shard])
            out.append((shard, rows, self.tokens[shard][rows], self.times[shard][rows]))
        return out

    def merge(self, parts: Sequence[tuple[int, np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Add another reader's :meth:`sparse` (ranks read disjoint rows; sums either way)."""
        for shard, rows, tokens, times in parts:
            counts, seen = self._arrays(int(shard))
            np.add.at(counts, rows, tokens)
            np.add.at(seen, rows, times)

    def load(self, table: pa.Table, shard_names: Sequence[str]) -> None:
        """Add a ``consumed.parquet`` written for this mix (rows of shards it no longer has are
        an InputError: the mix changed under the run)."""
        index = {name: i for i, name in enumerate(shard_names)}
        shards = table.column("shard").to_pylist()
        rows = table.column("row").to_numpy()
        tokens = table.column("tokens").to_numpy()
        times = table.column("times_seen").to_numpy()
        for name in dict.fromkeys(shards):
            if name not in index:
                raise InputError(f"{CONSUMED_FILE} names shard {name}, which the mix does not hold")
        picked = np.array([index[s] for s in shards], dtype=np.int64)
        for shard in np.unique(picked):
            where = picked == shard
            self.merge([(int(shard), rows[where], tokens[where], times[where])])


def shard_names(mix: MixInfo) -> list[str]:
    """Each mix shard's name as ``consumed.parquet`` records it: its path in the mix folder."""
    out = []
    for path in mix.shards:
        try:
            out.append(path.relative_to(mix.directory).as_posix())
        except ValueError:
            out.append(path.name)
    return out


def mix_consumed(mix: MixInfo, consumption: Consumption) -> tuple[pa.Table, pa.Array]:
    """(the ``consumed.parquet`` table, each row's document date) of a pretraining run: ids,
    sources and dates read from the shards one at a time (no text), rows in shard order."""
    names = shard_names(mix)
    tables, dates = [], []
    for shard, rows, tokens, times in consumption.sparse():
        path = mix.shards[shard]
        present = set(pq.read_schema(path).names)
        wanted = [c for c in ("id", "source", "date") if c in present]
        picked = pq.read_table(path, columns=wanted).take(pa.array(rows))
        n = len(rows)
        tables.append(
            pa.table(
                {
                    "id": picked.column("id").cast(pa.string()),
                    "source": picked.column("source").cast(pa.string())
                    if "source" in present
                    else pa.nulls(n, pa.string()),
                    "tokens": pa.array(tokens, pa.int64()),
                    "times_seen": pa.array(times, pa.int32()),
                    "shard": pa.array([names[shard]] * n, pa.string()),
                    "row": pa.array(rows, pa.int64()),
                },
                schema=CONSUMED_SCHEMA,
            )
        )
        date = picked.column("date") if "date" in present else pa.nulls(n, pa.timestamp("us", tz="UTC"))
        dates.append(date.cast(pa.timestamp("us", tz="UTC")))
    if not tables:
        return CONSUMED_SCHEMA.empty_table(), pa.array([], pa.timestamp("us", tz="UTC"))
    return pa.concat_tables(tables), pa.chunked_array(dates).combine_chunks()


def examples_consumed(
    ids: Sequence[str], sources: Sequence[str], rows: Sequence[int], tokens_each: Sequence[int], times: np.ndarray
) -> pa.Table:
    """The ``consumed.parquet`` table of an alignment stage: the examples read at least once
    (``times``: passes over each), ``tokens_each`` per pass; ``shard`` is the example file."""
    seen = np.flatnonzero(np.asarray(times) > 0)
    return pa.table(
        {
            "id": pa.array([ids[i] for i in seen], pa.string()),
            "source": pa.array([sources[i] for i in seen], pa.string()),
            "tokens": pa.array(np.asarray(tokens_each, dtype=np.int64)[seen] * np.asarray(times)[seen], pa.int64()),
            "times_seen": pa.array(np.asarray(times)[seen], pa.int32()),
            "shard": pa.array([sources[i] for i in seen], pa.string()),
            "row": pa.array([rows[i] for i in seen], pa.int64()),
        },
        schema=CONSUMED_SCHEMA,
    )


def write_consumed(path: Path, table: pa.Table) -> None:
    pq.write_table(table.cast(CONSUMED_SCHEMA), path, compression="zstd")


# -- summaries ------------------------------------------------------------------------------


def consumption_summary(table: pa.Table, dates: pa.Array | None = None) -> dict[str, Any]:
    """The ``consumed`` entry of a checkpoint's config.json (see the module docstring)."""
    if dates is None:
        dates = pa.nulls(table.num_rows, pa.timestamp("us", tz="UTC"))
    con = connect()
    con.register("consumed_rows", table.append_column("date", dates))
    return summarize(con, "consumed_rows")


# -- curate lineage -------------------------------------------------------------------------


@dataclass
class Lineage:
    """What ``curate lineage`` reports of one checkpoint."""

    step_dir: Path
    meta: dict[str, Any]
    summary: dict[str, Any]
    head: list[dict[str, Any]] = field(default_factory=list)  # the rows with the most tokens
    mix: str | None = None  # the mix whose shards the rows were joined with
    notes: list[str] = field(default_factory=list)

    @property
    def chain(self) -> list[dict[str, Any]]:
        """The checkpoints this one descends from, oldest first, then itself."""
        meta = self.meta
        chain = [dict(c) for c in meta.get("parent_chain") or []]
        if not chain and meta.get("parent"):
            chain = [{"path": meta["parent"], "stage": meta.get("parent_stage")}]
        return chain + [{"path": str(self.step_dir), "stage": meta.get("stage"), "step": meta.get("step")}]


def step_folder(path: str | Path) -> Path:
    """A step folder from a step folder or a run folder (its ``latest``, else its newest)."""
    path = Path(path)
    if (path / CONFIG_FILE).exists():
        return path
    latest = path / "latest"
    if latest.exists() and (path / latest.read_text().strip() / CONFIG_FILE).exists():
        return path / latest.read_text().strip()
    steps = sorted(p for p in path.glob("step-*") if (p / CONFIG_FILE).exists()) if path.is_dir() else []
    if not steps:
        raise InputError(f"{path}: no such checkpoint (a step folder with {CONFIG_FILE}, or a run folder)")
    return steps[-1]


def _sql_path(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def lineage(path: str | Path, output: str | Path | None = None, head: int = 10) -> Lineage:
    """The documents (or examples) the checkpoint at ``path`` has consumed, joined with the
    mix shards' url, crawl, WARC position and date; written to ``output`` (Parquet, columns
    :data:`LINEAGE_COLUMNS`) when given, summarised by source and month either way."""
    step = step_folder(path)
    meta = json.loads((step / CONFIG_FILE).read_text())
    consumed = step / CONSUMED_FILE
    if not consumed.exists():
        raise InputError(f"{step}: has no {CONSUMED_FILE} (written by curate's trainers since the lineage record)")
    con = connect()
    con.execute(f"CREATE VIEW consumed AS SELECT * FROM read_parquet({_sql_path(consumed)})")
    found = Lineage(step, meta, {})
    crawl = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in _CRAWL_COLUMNS.items())
    select = f"SELECT id, source, {crawl}, tokens, times_seen, shard, row FROM consumed"
    mix = _open_mix_of(meta, found.notes)
    if mix is not None and mix.shards:
        found.mix = str(mix.directory)
        files = ", ".join(_sql_path(p.resolve()) for p in mix.shards)
        con.execute(
            f"CREATE VIEW docs AS SELECT * FROM read_parquet([{files}], filename = true, file_row_number = true, union_by_name = true)"
        )
        con.execute("CREATE TABLE shard_paths (name VARCHAR, path VARCHAR)")
        con.executemany(
            "INSERT INTO shard_paths VALUES (?, ?)", list(zip(shard_names(mix), [str(p.resolve()) for p in mix.shards]))
        )
        present = {r[0] for r in con.execute("DESCRIBE docs").fetchall()}
        cols = ", ".join(
            f"CAST(m.{c} AS {t}) AS {c}" if c in present else f"CAST(NULL AS {t}) AS {c}"
            for c, t in _CRAWL_COLUMNS.items()
        )
        source = "coalesce(m.source, c.source)" if "source" in present else "c.source"
        select = (
            f"SELECT c.id, {source} AS source, {cols}, c.tokens, c.times_seen, c.shard, c.row FROM consumed c "
            "LEFT JOIN shard_paths s ON s.name = c.shard "
            "LEFT JOIN docs m ON m.filename = s.path AND m.file_row_number = c.row"
        )
    con.execute(f"CREATE TABLE lineage AS {select} ORDER BY shard, row")
    found.summary = summarize(con, "lineage")
    cursor = con.execute(f"SELECT * FROM lineage ORDER BY tokens DESC, shard, row LIMIT {int(head)}")
    names = [d[0] for d in cursor.description]
    found.head = [dict(zip(names, r)) for r in cursor.fetchall()]
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY (SELECT * FROM lineage ORDER BY shard, row) TO {_sql_path(output)} (FORMAT parquet)")
    return found


def _open_mix_of(meta: dict[str, Any], notes: list[str]) -> MixInfo | None:
    if not meta.get("mix"):
        return None
    try:
        mix = open_mix(meta["mix"])
    except InputError as exc:
        notes.append(f"the mix is not readable here ({exc}): url, crawl and date left empty")
        return None
    if meta.get("mix_manifest_sha256") not in (None, mix.manifest_sha256):
        notes.append(f"the mix at {meta['mix']} changed since this checkpoint: rows may not be the ones trained on")
    return mix


def _cutoff_text(cut: dict[str, Any] | None) -> str:
    if not cut or not cut.get("max"):
        undated = (cut or {}).get("undated_docs")
        return f"none (no dated documents{f'; {undated:,} undated' if undated else ''})"
    return f"{cut['max']} (p99 {cut['p99']}; {cut.get('undated_docs') or 0:,} undated)"


def format_lineage(found: Lineage) -> str:
    """The text ``curate lineage`` prints."""
    s, meta = found.summary, found.meta
    lines = [f"{found.step_dir}  [{meta.get('stage') or '?'} step {meta.get('step')}]"]
    lines.append("  chain           " + " -> ".join(f"{c.get('stage') or '?'} ({c.get('path')})" for c in found.chain))
    what = "documents" if found.mix else "examples"
    lines.append(f"  consumed        {s['documents']:,} {what} ({s['rows']:,} rows), {s['tokens']:,} tokens")
    if found.mix:
        lines.append(f"  mix             {found.mix}")
        mix_cut = meta.get("training_cutoff")
        cut = s["cutoff"]
        lines.append(f"  cutoff          {_cutoff_text(cut)}  (from what it consumed)")
        if isinstance(mix_cut, dict) and (mix_cut.get("max"), mix_cut.get("p99")) != (cut.get("max"), cut.get("p99")):
            lines.append(f"  mix cutoff      {_cutoff_text(mix_cut)}")
    elif isinstance(meta.get("consumed_cutoff"), dict):
        lines.append(
            f"  cutoff          {_cutoff_text(meta['consumed_cutoff'])}  (the parent's, from what it consumed)"
        )
    lines += [f"  note: {n}" for n in found.notes]
    unit = "docs" if found.mix else "examples"
    lines.append("  by source")
    for source, row in s["by_source"].items():
        share = row["tokens"] / s["tokens"] if s["tokens"] else 0.0
        lines.append(f"    {source:<30} {row['documents']:>8,} {unit} {row['tokens']:>12,} tokens {share:>7.1%}")
    if found.mix:
        lines.append("  by month of document date")
        for month, row in s["by_month"].items():
            lines.append(f"    {month:<30} {row['documents']:>8,} docs {row['tokens']:>12,} tokens")
    if found.head:
        lines.append(f"  most consumed ({len(found.head)} of {s['rows']:,})")
        for r in found.head:
            where = r.get("url") or f"{r['shard']}:{r['row']}"
            lines.append(f"    {r['id']:<24} {r['tokens']:>10,} tokens x{r['times_seen']}  {where}")
    return "\n".join(lines)
