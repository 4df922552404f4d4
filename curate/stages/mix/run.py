"""``curate mix``: documents from several sources, mixed to an exact token budget by weight.

A source's weight is its target share of the OUTPUT TOKENS. The mix runs in passes, streaming
every source each time and keeping only small per-document arrays in memory:

1. **Count**: every non-empty document of every source is tokenized with the chosen tokenizer
   (a trained BPE directory, or UTF-8 bytes by default); a document longer than
   ``max_doc_tokens`` is cut into chunks (:mod:`curate.stages.mix.chunks`), each a position of
   its own. Only ``n_tokens`` per position is kept (4 bytes, in a file), plus the ordinals and chunk
   counts of the documents that were cut.
2. **Plan** (:func:`allocate`): targets are ``weight * budget``. A source may be repeated up
   to ``max_epochs`` times (4 by default: Muennighoff et al., 2023, "Scaling Data-Constrained
   Language Models", found up to about four epochs nearly as useful as fresh data); a source
   that would need more is capped and its shortfall is given to the other sources in
   proportion to their weights (water filling), or is an error with ``strict``.
   Each source's target is then met by whole epochs plus a uniform random sample (seeded) of
   positions for the last, partial epoch (:func:`select_documents`).
   **Budget rule**: the sample takes positions in a seeded random order until the source's
   target is reached. With ``max_doc_tokens`` on, the last row taken is cut to the tokens the
   target still needs, so each source meets its target (within the few tokens a BPE counts
   differently on the cut text); with it off, each source overshoots by less than one
   document and the mix holds at least the budget, unless sources run out (reported).
3. **Scatter**: each selected (source, position, epoch) row gets a seeded 64-bit random key
   (in an epoch that takes the whole source, the key of its document's first position, so a
   document's chunks stay together and in order)
   and is appended to one of N temporary bucket files by key range (N sized so that a bucket
   fits in ``shuffle_memory``); each task writes one file of record batches, and the bucket
   of each batch.
4. **Gather**: one task per bucket reads that bucket's batches from every task's file, sorts
   the rows by key (with ``pretokenize`` also encodes them) and writes one sorted file with its
   row sizes; the driver cuts the sorted stream, in key order, into row groups and shards of
   ``shard_size`` from the row sizes alone, and one task per shard writes it
   (:mod:`curate.stages.mix.writer`). The result is a global shuffle across sources in bounded
   memory, and the same inputs, config and seed give byte-identical shards.

Passes 1 and 3 run one task per part of a source (a run of whole files of about
:data:`~curate.stages.mix.plan.PART_BYTES`) and pass 4 one task per bucket, then one per
shard, on ``ctx.executor``: in this process, in local worker processes, or as Ray tasks (a
map/reduce shuffle). The driver keeps the per-position arrays (token counts, sampling order,
partial-epoch flags) in memory-mapped files of a temporary directory
(:mod:`curate.stages.mix.positions`), walked a chunk at a time, and reads one bucket's row
sizes at a time, so its memory does not grow with the corpus; the tasks' results are combined in file and bucket order, so shards, token files and manifest
do not depend on the engine, the number of workers or how sources are split into parts.

Rows keep ``source`` (set to the mix's source name) and their original ``id``; ``epoch`` says
which repeat a row is (0 = first) and ``n_tokens`` holds its token count. The manifest holds
requested vs realized shares, epochs, the seed and tokenizer, and the ``training_cutoff``
(latest document date, with the 99th percentile beside it) that the trainer records.

Settings live in :mod:`curate.stages.mix.config`, counting in :mod:`curate.stages.mix.count`,
planning in :mod:`curate.stages.mix.plan`, pass 3 in :mod:`curate.stages.mix.scatter`, the
shuffle in :mod:`curate.stages.mix.shuffle` and shard writing in :mod:`curate.stages.mix.writer`;
this module runs the passes (``run(config, ctx)``, or ``plan(config, ctx)`` to stop after
planning), guards the output folder and writes the manifest.
"""

from __future__ import annotations

import math
import os
import shutil
from typing import Any

import numpy as np

from curate.core.errors import CurateError
from curate.core.files import writing
from curate.core.manifest import config_hash
from curate.core.progress import Progress
from curate.core.shards import ShardInfo
from curate.core.tokenizer import load_tokenizer
from curate.runtime.executor import report
from curate.runtime.output import OutputDir
from curate.runtime.stage import StageContext
from curate.stages.mix.config import MixConfig
from curate.stages.mix.count import SourceCount, combine_counts, count_source
from curate.stages.mix.plan import Planned, plan_mix, source_parts
from curate.stages.mix.positions import Positions
from curate.stages.mix.report import STAGE, plan_report
from curate.stages.mix.report import manifest as build_mix_manifest
from curate.stages.mix.scatter import scatter
from curate.stages.mix.shuffle import bucket_index, cached_tokenizer, sort_bucket
from curate.stages.mix.writer import ROW_OVERHEAD, TOKENS_DIR, OutputWriter, write_shard

STATE_FILE = "mix-state.json"  # under .curate/
BUCKET_DIR = ".curate/buckets"


# --------------------------------------------------------------------------- entry points


def plan(config: MixConfig, ctx: StageContext) -> dict[str, Any]:
    """Count and plan only: the shares, epochs and notes the mix would realize (writes nothing)."""
    positions = Positions()
    try:
        with ctx.executor.session():
            planned = _count_and_plan(config, ctx, positions)
        return plan_report(config, planned)
    finally:
        positions.close()


def run(config: MixConfig, ctx: StageContext) -> dict[str, Any]:
    """Mix ``config.sources`` into ``ctx.output``; returns the manifest (also written there).

    A rerun with the same configuration and unchanged inputs returns the existing manifest and
    does nothing; with changed inputs it starts over (the mix is one global shuffle).
    """
    positions = Positions()
    try:
        with ctx.executor.session():
            planned = _count_and_plan(config, ctx, positions)
            out = OutputDir(ctx.output, STAGE, state_file=STATE_FILE)
            with out.locked(), writing(out.path):
                return _write_mix(config, ctx, planned, out)
    finally:
        positions.close()


def _write_mix(config: MixConfig, ctx: StageContext, planned: Planned, out: OutputDir) -> dict[str, Any]:
    """Passes 3 and 4 (scatter; sort and write) into ``out`` (held locked), unless it already
    holds this exact mix."""
    chash = config_hash(config.to_json())
    fingerprint = _fingerprint([(c.spec.name, c.files) for c in planned.counted])
    done = _prepare_output(out, chash, fingerprint, ctx.overwrite)
    if done is not None:
        ctx.log(f"{ctx.output}: already holds this mix (same configuration and inputs); nothing to do")
        return done
    n_buckets, flush_bytes = _bucket_sizes(config, planned)
    shutil.rmtree(out.path / BUCKET_DIR, ignore_errors=True)  # a killed run's buckets
    writer = OutputWriter(str(out.path), config.shard_bytes, planned.tokenizer if config.pretokenize else None)
    try:
        selected, written = scatter(config, planned, ctx, str(out.path / BUCKET_DIR), n_buckets, flush_bytes)
        shards = _gather(config, ctx, written, writer, n_buckets)
    except BaseException:
        # A shard task removes its own half-written files; whole shards stay until the rerun.
        shutil.rmtree(out.path / BUCKET_DIR, ignore_errors=True)
        raise
    shutil.rmtree(out.path / BUCKET_DIR, ignore_errors=True)
    manifest = build_mix_manifest(config, planned, selected, shards, writer, n_buckets)
    out.commit(manifest)
    return manifest


# --------------------------------------------------------------------------- passes


def _count_and_plan(cfg: MixConfig, ctx: StageContext, positions: Positions) -> Planned:
    """Pass 1 (token counts per document of every source) and the plan built on it, the
    per-position arrays in ``positions`` (each part's counts added as its task returns)."""
    cfg.validate()
    tokenizer = load_tokenizer(cfg.tokenizer)
    parts = [source_parts(spec) for spec in cfg.sources]
    progress = Progress(
        "mix: counting tokens", total=sum(map(len, parts)), unit="parts", enabled=None if ctx.progress else False
    )
    jobs = [(spec, files, cfg.tokenizer, cfg.chunk_limit) for spec, runs in zip(cfg.sources, parts) for files in runs]
    results = ctx.executor.map(_count_task, jobs, progress=progress)
    counted = []
    for spec, runs in zip(cfg.sources, parts):
        part_counts = []
        n_tokens = positions.writer("n_tokens", np.int32)
        for _ in runs:
            count = next(results)
            n_tokens.append(count.n_tokens)
            count.n_tokens = np.zeros(0, np.int32)  # in the file now
            part_counts.append(count)
            progress.advance()
        counted.append(combine_counts(spec, part_counts, n_tokens.finish()))
    progress.close()
    for c in counted:
        if c.docs == 0:
            ctx.log(f"warning: source {c.spec.name!r} has no usable documents")
    plans, notes = plan_mix(cfg, counted, positions)
    for note in notes:
        ctx.log(f"note: {note}")
    if sum(c.docs for c in counted) == 0:
        failed = [f"{path}: {message}" for c in counted for path, (_, message) in c.failed.items()]
        detail = f"; {failed[0]}" + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "") if failed else ""
        # Exit 1 like a stage whose inputs could not be read; nothing is written.
        raise CurateError(f"no usable documents in any source (all inputs empty or unreadable{detail})", 1)
    return Planned(tokenizer, counted, plans, notes)


def _prepare_output(out: OutputDir, chash: str, fingerprint: list[Any], overwrite: bool) -> dict[str, Any] | None:
    """Check the output folder; return the existing manifest when it is already the result of
    this exact mix (nothing to do), else clear earlier mix output and record this run."""
    if not overwrite:
        state = out.check()
        if state is not None:
            if state.get("config_hash") != chash:
                raise out.changed()
            existing = out.manifest()
            if existing is not None and existing.get("complete") and state.get("inputs") == fingerprint:
                return existing
    # Start clean: a killed run leaves only whole shards (renamed into place) and temp files.
    out.reset()
    for pattern in (f"{TOKENS_DIR}/*.bin", f"{TOKENS_DIR}/.*.tmp"):
        for f in out.path.glob(pattern):
            f.unlink()
    out.start({"config_hash": chash, "inputs": fingerprint})
    return None


def _fingerprint(counted_files: list[tuple[str, list[str]]]) -> list[Any]:
    out = []
    for name, files in counted_files:
        for f in files:
            st = os.stat(f)
            out.append([name, f, st.st_size, st.st_mtime_ns])
    return out


def _bucket_sizes(cfg: MixConfig, planned: Planned) -> tuple[int, int]:
    """Bucket count (so one bucket, sorted in memory, stays within shuffle_memory) and the
    bytes a bucket buffers before it is flushed to its file."""
    planned_bytes = 0
    for c, p in zip(planned.counted, planned.plans):
        per_token = (c.bytes / c.tokens) if c.tokens else 1.0
        planned_bytes += int(p.tokens_planned * per_token) + ROW_OVERHEAD * 4 * p.rows_planned
    bucket_bytes = max(64 * 1024, cfg.shuffle_bytes // 3)
    n_buckets = max(1, min(4096, math.ceil(planned_bytes / bucket_bytes)))
    flush_bytes = max(64 * 1024, min(8 << 20, cfg.shuffle_bytes // (4 * n_buckets)))
    return n_buckets, flush_bytes


class _Reported:
    """Progress counts of a task, sent with :func:`~curate.runtime.executor.report`."""

    def add(self, **counts: int) -> None:
        report(**counts)


def _count_task(job: tuple[Any, Any, str | None, int | None]) -> SourceCount:
    """Pass 1 over a run of files of one source (a task: here, a local worker or Ray)."""
    spec, files, tokenizer, chunk_limit = job
    return count_source(spec, cached_tokenizer(tokenizer), _Reported(), chunk_limit, files=files)


def _gather(
    cfg: MixConfig, ctx: StageContext, written: list[Any], writer: OutputWriter, n_buckets: int
) -> list[ShardInfo]:
    """Pass 4 (the shuffle's reduce): a task per bucket gathers its batches from every map
    task's file and sorts them by key (with ``pretokenize`` also encodes them); the driver cuts
    the sorted stream into shards from its row sizes, and a task per shard writes it
    (:mod:`curate.stages.mix.writer`)."""
    progress = Progress("mix: sorting", total=n_buckets, unit="buckets", enabled=None if ctx.progress else False)
    where = bucket_index(written, n_buckets)
    jobs = ((b, where[b], cfg.tokenizer, bool(cfg.pretokenize)) for b in range(n_buckets))
    # A map task's file goes once the last bucket it holds batches of is sorted.
    last = {}
    for item in written:
        if item is not None:
            last.setdefault(max(item[1]), []).append(item[0])
    planner = writer.planner()
    shards = []
    for b, result in enumerate(ctx.executor.map(sort_bucket, jobs)):
        if result is not None:
            sizes_path = result["path"] + ".sizes"
            shards.extend(planner.add(result["path"], np.fromfile(sizes_path, dtype="<i8")))
            os.unlink(sizes_path)
        for path in last.get(b, []):
            os.unlink(path)
        progress.advance()
    shards.extend(planner.finish())
    progress.close()
    # A sorted bucket goes once the last shard that reads it is written.
    release: dict[int, list[str]] = {}
    for path, k in {seg[0]: k for k, (_, groups) in enumerate(shards) for g in groups for seg in g}.items():
        release.setdefault(k, []).append(path)
    progress = Progress("mix: writing", total=len(shards), unit="shards", enabled=None if ctx.progress else False)
    items = (
        (writer.output_dir, index, groups, writer.row_group_bytes, cfg.tokenizer, bool(cfg.pretokenize))
        for index, groups in shards
    )
    for k, result in enumerate(ctx.executor.map(write_shard, items)):
        writer.add(result)
        for path in release.get(k, []):
            os.unlink(path)
        progress.add(rows=result["rows"])
        progress.advance()
    progress.close()
    return writer.shards
