"""Pass 3 of ``curate mix`` (the shuffle's map): each part of a source read again, the rows the
plan selects repeated once per epoch, each given its key and scattered into a bucket file of
the part's task (:func:`scatter`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.core.errors import CurateError
from curate.core.progress import Progress
from curate.core.tokenizer import Tokenizer
from curate.runtime.executor import report
from curate.runtime.stage import StageContext
from curate.stages.mix.chunks import chunk_id, chunk_is_marked, chunk_meta, explode, head, set_column, split_text
from curate.stages.mix.config import MixConfig
from curate.stages.mix.count import SourceCount, crc_ids, source_reader
from curate.stages.mix.plan import Planned, SourcePlan, part_view
from curate.stages.mix.shuffle import Buckets, Realized, Selected, cached_tokenizer, shuffle_keys


def scatter(
    cfg: MixConfig, planned: Planned, ctx: StageContext, bucket_dir: str, n_buckets: int, flush_bytes: int
) -> tuple[Selected, list[Any]]:
    """Pass 3 (the shuffle's map): one task per part of a source reads it again and scatters
    its selected rows (with their repeats) into a bucket file of its own, each with its key;
    returns what was selected and, per task, its file and the bucket of each of its batches."""
    selected = Selected(realized={p.name: Realized() for p in planned.plans})
    total_docs = sum(c.docs for c in planned.counted)
    progress = Progress("mix: selecting", total=total_docs, unit="docs", enabled=None if ctx.progress else False)
    jobs = []
    for src_index, (c, plan) in enumerate(zip(planned.counted, planned.plans)):
        for part in c.parts:
            view, part_plan = part_view(c, plan, part)
            tag = len(jobs)
            jobs.append((cfg, view, part_plan, src_index, part.pos_start, bucket_dir, tag, n_buckets, flush_bytes))
    written = []
    for part_selected, index in ctx.executor.map(_scatter_part, jobs, progress=progress):
        selected.stats.merge(part_selected.stats)
        for name, r in part_selected.realized.items():
            selected.realized[name].add(r)
        selected.cutoff.merge(part_selected.cutoff)
        selected.inputs.extend(part_selected.inputs)
        written.append(index)
    progress.close()
    return selected, written


def _scatter_part(job: tuple[Any, ...]) -> tuple[Selected, tuple[str, list[int]] | None]:
    """Pass 3 over a part of a source (a task; ``c`` and ``plan`` are the part's view, see
    :func:`~curate.stages.mix.plan.part_view`): its selected rows into a bucket file of its
    own. Returns what it selected and (its file, the bucket of each batch), None if empty."""
    cfg, c, plan, src_index, pos_start, bucket_dir, tag, n_buckets, flush_bytes = job
    tokenizer = cached_tokenizer(cfg.tokenizer)
    buckets = Buckets(Path(bucket_dir), n_buckets, flush_bytes, tag=tag)
    selected = Selected(realized={plan.name: Realized()})
    try:
        reader = source_reader(c.spec, skip=c.failed, files=c.parts[0].files)
        offset, position, crc = 0, 0, 0
        for table in reader.tables():
            n = table.num_rows
            if offset + n > c.docs:
                raise CurateError(f"source {c.spec.name!r}: inputs changed while mixing (more documents than counted)")
            crc = crc_ids(crc, table)
            at = Where(src_index, offset, position, tokenizer, cfg.chunk_limit, pos_start)
            position += _scatter_table(cfg, c, plan, at, table, buckets, selected)
            offset += n
            report(docs=n)
        if offset != c.docs or position != c.positions or crc != c.id_digest:
            raise CurateError(f"source {c.spec.name!r}: inputs changed while mixing; rerun")
    except BaseException:
        try:
            buckets.close()
        except OSError:
            pass  # a full disk fails the buckets' last flush too; they are removed all the same
        raise
    index = buckets.close()
    s = reader.stats
    s.kept = selected.realized[plan.name].docs
    if c.docs - s.kept:
        s.rejected["not_sampled"] += c.docs - s.kept
    selected.stats.merge(s)
    for path, fs in reader.per_file.items():
        status = "failed" if path in c.failed else "done_with_errors" if fs.errors else "done"
        entry = {"source": plan.name, "path": path, "read": fs.read, "errors": sum(fs.errors.values())}
        message = {"message": c.failed[path][1]} if path in c.failed else {}
        selected.inputs.append({**entry, "status": status, **message})
    return selected, index


@dataclass
class Where:
    """Where a table of a source starts: its first document and first position."""

    src_index: int
    offset: int  # documents before it
    position: int  # positions (documents or chunks) before it
    tokenizer: Tokenizer
    chunk_limit: int | None
    base: int = 0  # positions of the source before the task's part (where its keys start)


def _scatter_table(
    cfg: MixConfig, c: SourceCount, plan: SourcePlan, at: Where, table: pa.Table, buckets: Buckets, selected: Selected
) -> int:
    """The rows of one table of a source that the plan selects, repeated once per epoch; a
    split document's selected chunks are cut from it again (as pass 1 cut them). Returns the
    number of positions the table spans."""
    per_doc = c.chunks_per_doc(at.offset, table.num_rows)
    n_pos = int(per_doc.sum())
    positions = at.position + np.arange(n_pos, dtype=np.int64)
    doc_of = np.repeat(np.arange(table.num_rows), per_doc)
    reps = plan.partial[at.position : at.position + n_pos].astype(np.int64) + plan.full_epochs
    if not (reps > 0).any():
        return n_pos
    needed = np.unique(doc_of[reps > 0])
    docs = table.take(pa.array(needed))
    in_needed = np.isin(doc_of, needed)
    positions, reps = positions[in_needed], reps[in_needed]
    chunks = []
    for local, d in enumerate(needed.tolist()):
        if per_doc[d] > 1:
            parts = split_text(docs.column("text")[local].as_py(), at.chunk_limit, at.tokenizer)
            if len(parts) != per_doc[d]:
                raise CurateError(f"source {c.spec.name!r}: inputs changed while mixing; rerun")
            chunks.append(parts)
        else:
            chunks.append([])
    rows = explode(docs, np.arange(needed.shape[0]), chunks)
    parents = at.position + (np.cumsum(per_doc) - per_doc)[doc_of[in_needed]]
    chosen = reps > 0
    real = selected.realized[plan.name]
    selected.cutoff.add(docs.column("date"))
    real.docs += int(needed.shape[0])
    real.chunks += int(chosen.sum())
    real.split_docs += int(sum(1 for parts in chunks if parts))
    real.doc_chars += int(pc.sum(pc.utf8_length(rows.filter(pa.array(chosen)).column("text"))).as_py() or 0)
    idx = np.repeat(np.arange(rows.num_rows), reps)
    starts = np.repeat(np.cumsum(reps) - reps, reps)
    epochs = (np.arange(idx.shape[0]) - starts).astype(np.int32)
    positions, parents = positions[idx], parents[idx]
    ntok = c.n_tokens[positions].astype(np.int64)
    rows = rows.take(pa.array(idx))
    cut = np.flatnonzero((positions == plan.cut_position) & (epochs == plan.full_epochs))
    if cut.shape[0]:
        rows, ntok[cut[0]] = _cut_row(rows, int(cut[0]), plan.cut_tokens, at.tokenizer)
        real.cut_rows += 1
    real.rows += int(idx.shape[0])
    real.tokens += int(ntok.sum())
    real.chars += int(pc.sum(pc.utf8_length(rows.column("text"))).as_py() or 0)
    rows = set_column(rows, "n_tokens", pa.array(ntok, pa.int64()))
    rows = set_column(rows, "epoch", pa.array(epochs, pa.int32()))
    # In a whole epoch the chunks of a document share its key (and sort by position, so they
    # stay together and in order); in the partial epoch each row has its own key.
    keys = np.where(
        epochs < plan.full_epochs,
        shuffle_keys(cfg.seed, plan.name, parents + at.base, epochs),
        shuffle_keys(cfg.seed, plan.name, positions + at.base, epochs),
    )
    rows = rows.append_column("_key", pa.array(keys, pa.uint64()))
    rows = rows.append_column("_src", pa.array(np.full(idx.shape[0], at.src_index, np.int32)))
    rows = rows.append_column("_pos", pa.array(positions + at.base, pa.int64()))
    n_buckets = buckets.n
    bucket_of = ((keys >> np.uint64(32)) * np.uint64(n_buckets)) >> np.uint64(32)
    order = np.argsort(bucket_of, kind="stable")
    sorted_b = bucket_of[order]
    rows = rows.take(pa.array(order))
    bounds = np.searchsorted(sorted_b, np.arange(n_buckets + 1))
    for b in range(n_buckets):
        if bounds[b + 1] > bounds[b]:
            buckets.add(b, rows.slice(int(bounds[b]), int(bounds[b + 1] - bounds[b])))
    return n_pos


def _cut_row(rows: pa.Table, i: int, tokens: int, tokenizer: Tokenizer) -> tuple[pa.Table, int]:
    """Row ``i`` cut to its first ``tokens`` tokens (a chunk of its document, marked ``cut``)."""
    text = head(rows.column("text")[i].as_py(), tokens, tokenizer)
    ids, metas = rows.column("id").to_pylist(), rows.column("meta").to_pylist()
    meta = json.loads(metas[i]) if metas[i] and chunk_is_marked(metas[i]) else None
    if meta is None:  # a whole document: it becomes chunk 0 of 1
        metas[i] = chunk_meta(metas[i], ids[i], 0, 1, cut=True)
        ids[i] = chunk_id(ids[i], 0)
    else:
        metas[i] = chunk_meta(metas[i], meta["parent_id"], meta["chunk"], meta["chunks"], cut=True)
    texts, n_chars = rows.column("text").to_pylist(), rows.column("n_chars").to_pylist()
    texts[i], n_chars[i] = text, len(text)
    for name, values in (("text", texts), ("id", ids), ("meta", metas), ("n_chars", n_chars)):
        rows = set_column(rows, name, values)
    return rows, tokenizer.count([text])[0]
