"""Pass 2 of ``curate dedup``: the inputs streamed again, kept rows written to the staging
directory and removed rows (with ``dup_of``, ``dup_kind``, ``dup_similarity``) to its
``removed/``, in input order. The run then moves the staged shards into place and writes
``manifest.json`` last (:meth:`curate.runtime.output.OutputDir.commit`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.core.accounting import Stats
from curate.core.errors import CurateError
from curate.core.shards import ShardInfo, ShardWriter, read_tables
from curate.stages.dedup.decide import Removals
from curate.stages.dedup.index import remove_tree
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


class _WritePass:
    def __init__(self, state: DedupState, removals: Removals, staging: Path):
        self.state = state
        self.removals = removals
        shard_bytes = state.config.shard_bytes
        group_chars = max(1, min(MAX_GROUP_CHARS, shard_bytes))
        self.kept = RowGroups(ShardWriter(staging, prefix="part-00000", shard_bytes=shard_bytes), group_chars)
        self.removed = RowGroups(
            ShardWriter(staging / REMOVED, prefix="part-00000", shard_bytes=shard_bytes), group_chars
        )
        self.rep_rank = {int(r): k for k, r in enumerate(removals.top_reps)}
        self.stats = Stats()

    def count_input_errors(self) -> None:
        """What the signature pass could not use: documents of the inputs it read, and each
        input left out as one record read and one error."""
        state = self.state
        self.stats.read += len(state.failed)
        for index, errors in sorted(state.input_errors.items()):
            self.stats.errors.update(errors)
            for reason, items in state.error_examples.get(index, {}).items():
                for item in items:
                    self.stats.example(reason, **item)

    def table(self, table: pa.Table, offset: int) -> None:
        """Count and write the rows of one batch, whose first document is ``offset``."""
        state, stats = self.state, self.stats
        idx = np.arange(offset, offset + table.num_rows)
        valid = state.store["valid"][idx].astype(bool)
        kind = state.kind[idx]
        keep = valid & (kind == KEPT)
        rem = valid & (kind != KEPT)
        text_len = pc.utf8_length(table.column("text")).to_numpy(zero_copy_only=False)
        text_len = np.nan_to_num(text_len.astype(np.float64)).astype(np.int64)
        stats.chars["read"] += int(text_len.sum())
        stats.chars["kept"] += int(text_len[keep].sum())
        stats.kept += int(keep.sum())
        for k, name in KIND_NAMES.items():
            c = int(np.count_nonzero(rem & (kind == k)))
            if c:
                stats.rejected[name] += c
                stats.chars[f"rejected:{name}"] += int(text_len[rem & (kind == k)].sum())
        if self.rep_rank:
            clusters = self.removals.clusters
            for j in np.flatnonzero(np.isin(idx, self.removals.top_reps)).tolist():
                clusters[self.rep_rank[int(idx[j])]]["representative_url"] = table.column("url")[j].as_py()
        self.kept.add(table.filter(pa.array(keep)))
        if rem.any():
            self.removed.add(self._removed_rows(table.filter(pa.array(rem)), idx[rem]))

    def _removed_rows(self, removed: pa.Table, docs: np.ndarray) -> pa.Table:
        """``removed`` (the rows of ``docs``) with their ``dup_of``, ``dup_kind`` and ``dup_similarity``."""
        state = self.state
        where = np.searchsorted(self.removals.docs, docs)  # removals.docs are sorted ascending
        targets = np.asarray(state.dup_of[docs])
        removed = _set_column(removed, "dup_of", pa.array(state.store.doc_ids(targets), pa.string()))
        kinds = [KIND_NAMES[int(k)] for k in state.kind[docs]]
        removed = _set_column(removed, "dup_kind", pa.array(kinds, pa.string()))
        return _set_column(removed, "dup_similarity", pa.array(self.removals.similarity[where], pa.float32()))

    def abort(self) -> None:
        self.kept.writer.abort()
        self.removed.writer.abort()


def write_outputs(state: DedupState, removals: Removals, staging: Path) -> tuple[Stats, dict[str, list[ShardInfo]]]:
    """Pass 2 into ``staging`` (see the module docstring); the clusters of ``removals`` get their
    representative's URL. Returns the counts and the shards of each output."""
    remove_tree(staging)
    out = _WritePass(state, removals, staging)
    out.count_input_errors()
    progress = state.progress_bar("writing", state.n_docs, "docs")
    try:
        for info in state.inputs:
            if info.index in state.failed:
                continue
            out.stats.read += info.rows
            offset = state.offsets[info.index]
            for table in read_tables(info.path, batch_rows=2048):
                out.table(table, offset)
                offset += table.num_rows
                progress.advance(table.num_rows)
            if offset != state.offsets[info.index] + info.rows:
                raise CurateError(f"{info.path}: changed while dedup was running; rerun")
        out.kept.flush()
        out.removed.flush()
        shards = {"": out.kept.writer.close(), REMOVED: out.removed.writer.close()}
    except BaseException:
        out.abort()
        raise
    finally:
        progress.close()
    return out.stats, shards
