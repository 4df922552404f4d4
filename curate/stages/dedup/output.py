"""Pass 2 of ``curate dedup``: one task per input (:func:`write_input`: the engine's worker
processes or Ray tasks) streams the input again and writes its kept rows to the staging
directory and its removed rows (with ``dup_of``, ``dup_kind``, ``dup_similarity``) to its
``removed/``, in input order, as ``part-{input:05d}-NNN.parquet``: the same shards whatever the
engine. The decisions come from memory-mapped files in the work directory, so the driver holds
one task's counts at a time. The run then moves the staged shards into place and writes
``manifest.json`` last (:meth:`curate.runtime.output.OutputDir.commit`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.core.accounting import Stats
from curate.core.errors import CurateError
from curate.core.shards import ShardInfo, ShardWriter, read_tables
from curate.stages.dedup.decide import SIMILARITY, Removals
from curate.stages.dedup.index import DocStore, remove_tree
from curate.stages.dedup.signature_pass import store_columns
from curate.stages.dedup.state import KEPT, KIND_NAMES, DedupState

REMOVED = "removed"  # the sub-folder of removed rows
ROW_CHARS = 200  # what a row counts for besides its text, when row groups are cut
MAX_GROUP_CHARS = 32 * 1024 * 1024


class RowGroups:
    """Rows buffered into row groups of up to ``group_chars`` characters of text (plus
    :data:`ROW_CHARS` a row) before they go to ``writer``, so shards get their target size and
    row groups do not depend on how the inputs were batched."""

    def __init__(self, writer: ShardWriter, group_chars: int):
        self.writer = writer
        self.group_chars = group_chars
        self.tables: list[pa.Table] = []
        self.chars = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            self.tables.append(table)
            self.chars += (pc.sum(pc.utf8_length(table.column("text"))).as_py() or 0) + ROW_CHARS * table.num_rows
        if self.tables and self.chars >= self.group_chars:
            self._write(flush=False)

    def flush(self) -> None:
        if self.tables:
            self._write(flush=True)

    def _write(self, flush: bool) -> None:
        """Write whole row groups; the tail that does not fill one waits unless ``flush``."""
        whole = pa.concat_tables(self.tables)
        lengths = pc.utf8_length(whole.column("text")).to_numpy(zero_copy_only=False)
        ends = np.cumsum(np.nan_to_num(lengths.astype(np.float64)) + ROW_CHARS)
        start = 0
        while start < whole.num_rows:
            done = ends[start - 1] if start else 0.0
            stop = int(np.searchsorted(ends, done + self.group_chars, side="left")) + 1
            stop = min(max(stop, start + 1), whole.num_rows)
            if stop == whole.num_rows and not flush and ends[-1] - done < self.group_chars:
                break  # keep the tail for the next row group
            self.writer.write_table(whole.slice(start, stop - start))
            start = stop
        rest = whole.slice(start)
        self.tables = [rest] if rest.num_rows else []
        self.chars = int(ends[-1] - (ends[start - 1] if start else 0.0)) if rest.num_rows else 0


def _set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), values)


@dataclass
class WriteInput:
    """What :func:`write_input` needs for one input: plain data, so that it can run as a Ray
    task (every path on storage all nodes see)."""

    path: str
    index: int  # the input's number: its shards are part-{index:05d}-NNN
    first: int  # its first document
    rows: int
    staging: str
    shard_bytes: int
    work: str  # the run's work directory: the document store and the decisions' columns
    columns: dict[str, tuple[str, int]]
    n_docs: int
    top_reps: list[int]  # the largest clusters' representatives, whose URL the manifest wants


def write_input(item: WriteInput) -> dict[str, Any]:
    """Pass 2 for one input: its kept rows to ``part-{index:05d}-NNN.parquet`` in the staging
    folder and its removed rows (with ``dup_of``, ``dup_kind``, ``dup_similarity``) to the same
    names under ``removed/``, in input order. Reads the decisions from the work directory's
    memory-mapped columns; returns the counts, the shards and the URLs of ``top_reps`` found."""
    work = Path(item.work)
    store = DocStore.open(work / "store", item.columns, item.n_docs)
    size = max(item.n_docs, 1)
    kind = np.memmap(work / "kind.bin", dtype="u1", mode="r", shape=(size,))
    dup_of = np.memmap(work / "dup_of.bin", dtype="<i8", mode="r", shape=(size,))
    exact = (work / SIMILARITY).exists()
    similarity = np.memmap(work / SIMILARITY, dtype="<f4", mode="r", shape=(size,)) if exact else None
    group_chars = max(1, min(MAX_GROUP_CHARS, item.shard_bytes))
    prefix = f"part-{item.index:05d}"
    staging = Path(item.staging)
    kept = RowGroups(ShardWriter(staging, prefix=prefix, shard_bytes=item.shard_bytes), group_chars)
    removed = RowGroups(ShardWriter(staging / REMOVED, prefix=prefix, shard_bytes=item.shard_bytes), group_chars)
    stats = Stats(read=item.rows)
    urls: dict[int, str] = {}
    reps = np.array(item.top_reps, dtype=np.int64)
    offset = item.first
    try:
        for table in read_tables(item.path, batch_rows=2048):
            idx = np.arange(offset, offset + table.num_rows)
            valid = np.asarray(store["valid"][idx]).astype(bool)
            kinds = np.asarray(kind[idx])
            keep = valid & (kinds == KEPT)
            rem = valid & (kinds != KEPT)
            text_len = pc.utf8_length(table.column("text")).to_numpy(zero_copy_only=False)
            text_len = np.nan_to_num(text_len.astype(np.float64)).astype(np.int64)
            stats.chars["read"] += int(text_len.sum())
            stats.chars["kept"] += int(text_len[keep].sum())
            stats.kept += int(keep.sum())
            for k, name in KIND_NAMES.items():
                c = int(np.count_nonzero(rem & (kinds == k)))
                if c:
                    stats.rejected[name] += c
                    stats.chars[f"rejected:{name}"] += int(text_len[rem & (kinds == k)].sum())
            for j in np.flatnonzero(np.isin(idx, reps)).tolist():
                urls[int(idx[j])] = table.column("url")[j].as_py()
            kept.add(table.filter(pa.array(keep)))
            if rem.any():
                docs = idx[rem]
                targets = np.asarray(dup_of[docs])
                rows = table.filter(pa.array(rem))
                rows = _set_column(rows, "dup_of", pa.array(store.doc_ids(targets), pa.string()))
                rows = _set_column(rows, "dup_kind", pa.array([KIND_NAMES[int(k)] for k in kinds[rem]], pa.string()))
                if similarity is not None:
                    sims = np.asarray(similarity[docs])
                else:  # estimated Jaccard with the document that represents it
                    sig = store["sig"]
                    sims = (sig[docs] == sig[targets]).mean(axis=1).astype(np.float32)
                rows = _set_column(rows, "dup_similarity", pa.array(sims, pa.float32()))
                removed.add(rows)
            offset += table.num_rows
        if offset != item.first + item.rows:
            raise CurateError(f"{item.path}: changed while dedup was running; rerun")
        kept.flush()
        removed.flush()
        shards = {"": kept.writer.close(), REMOVED: removed.writer.close()}
    except BaseException:
        kept.writer.abort()
        removed.writer.abort()
        raise
    return {"stats": stats, "shards": shards, "urls": urls}


def write_outputs(
    state: DedupState,
    removals: Removals,
    staging: Path,
    map_fn: Callable[[Callable[[Any], Any], list[Any]], Iterator[Any]],
) -> tuple[Stats, dict[str, list[ShardInfo]]]:
    """Pass 2 into ``staging``: :func:`write_input` for every input read, through ``map_fn`` (the
    engine's: worker processes or Ray tasks), results joined in input order; the clusters of
    ``removals`` get their representative's URL. Returns the counts and the shards of each
    output. The driver holds one input's result at a time."""
    remove_tree(staging)
    stats = Stats(read=len(state.failed))
    for index, errors in sorted(state.input_errors.items()):  # what the signature pass could not use
        stats.errors.update(errors)
        for reason, items in state.error_examples.get(index, {}).items():
            for example in items:
                stats.example(reason, **example)
    columns = store_columns(state.config.num_perm)
    top = [int(r) for r in removals.top_reps]
    work_items = [
        WriteInput(
            info.path,
            info.index,
            state.offsets[info.index],
            info.rows,
            str(staging),
            state.config.shard_bytes,
            str(state.work),
            columns,
            state.n_docs,
            top,
        )
        for info in state.inputs
        if info.index not in state.failed
    ]
    shards: dict[str, list[ShardInfo]] = {"": [], REMOVED: []}
    rank = {rep: k for k, rep in enumerate(top)}
    progress = state.progress_bar("writing", state.n_docs, "docs")
    try:
        with closing(map_fn(write_input, work_items)) as results:
            for item, result in zip(work_items, results):
                stats.merge(result["stats"])
                for name, infos in result["shards"].items():
                    shards[name].extend(infos)
                for rep, url in result["urls"].items():
                    removals.clusters[rank[rep]]["representative_url"] = url
                progress.advance(item.rows)
    finally:
        progress.close()
    return stats, shards
