"""The crawl stage: web archives (WARC/ARC/WET) -> Parquet shards of extracted documents.

``run(config, ctx)`` resolves the inputs (files, globs, URLs, s3://, snapshot names, listings;
:mod:`curate.stages.crawl.sources`) and runs :func:`process_input` once per input file through
:func:`curate.runtime.per_input.run_per_input`: locally in worker processes or as Ray tasks,
resumable per input. What is read, kept, rejected and counted as an error is decided per
record in :mod:`curate.stages.crawl.records`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any

from curate.core.accounting import Stats
from curate.core.config import from_dict
from curate.core.errors import InputError
from curate.core.progress import Progress
from curate.runtime.output import OutputDir
from curate.runtime.per_input import Task, run_per_input
from curate.runtime.stage import StageContext
from curate.stages.crawl.config import CrawlConfig
from curate.stages.crawl.extract import ExtractOptions, TextExtractor
from curate.stages.crawl.records import crawl_records
from curate.stages.crawl.sources import DEFAULT_CC_BASE_URL, input_size, open_input, resolve_inputs
from curate.stages.crawl.warc import Record, RecordError, iter_records

STAGE = "crawl"

_EXTRACTORS: dict[str, TextExtractor] = {}


def _extractor_for(options: ExtractOptions) -> TextExtractor:
    """One extractor per process and option set (building one imports trafilatura)."""
    key = json.dumps(asdict(options), sort_keys=True)
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = TextExtractor(ExtractOptions(**asdict(options)))
    return _EXTRACTORS[key]


def process_input(task: Task) -> tuple[Stats, str, str | None]:
    """The per-input function: one archive file -> shards of documents."""
    cfg = from_dict(CrawlConfig, task.config).validate()
    extractor = _extractor_for(cfg.extract)
    stats = Stats()
    writer = task.writer("")
    seen = [0]  # records of any type, to tell an empty input from one without pages
    try:
        with open_input(task.path, cfg.http) as stream:
            # Records are held up to max_page_bytes plus room for HTTP headers.
            items = _guard(iter_records(stream, max_content_bytes=cfg.max_page_bytes + 65536), seen)
            for doc in crawl_records(items, task.path, cfg, extractor, stats, report=task.report):
                writer.write(doc)
    except InputError as exc:
        # The runner prints the input's path next to the message: do not repeat it.
        raise InputError(str(exc).removeprefix(f"{task.path}: ")) from None
    if not seen[0]:
        raise InputError("empty input (no records)")
    status = "done_with_errors" if stats.errors else "done"
    message = None
    if stats.errors:
        message = ", ".join(f"{k}={v}" for k, v in sorted(stats.errors.items()))
    return stats, status, message


def _guard(items: Iterable[Record | RecordError], seen: list[int]) -> Iterator[Record | RecordError]:
    """Count what the reader yields; a file that holds no record at all is an input that
    cannot be read (status failed), not a file with errors."""
    for item in items:
        if isinstance(item, RecordError) and item.reason == "not_warc" and not seen[0]:
            raise InputError(f"not a WARC/ARC/WET file ({item.detail})")
        seen[0] += 1
        yield item


def run(
    config: CrawlConfig,
    ctx: StageContext,
    *,
    max_files: int | None = None,
    offset: int = 0,
    cc_base_url: str = DEFAULT_CC_BASE_URL,
) -> dict[str, Any]:
    """Crawl ``ctx.inputs`` into ``ctx.output``; returns the manifest (also written there).

    ``max_files`` and ``offset`` take a slice of the resolved input list (e.g. of a snapshot's
    listing); ``cc_base_url`` is where snapshot names and relative listing entries are fetched.
    A rerun resumes per input unless ``ctx.overwrite``.
    """
    cfg = config.validate()
    files = resolve_inputs(list(ctx.inputs), cc_base_url=cc_base_url, max_files=max_files, offset=offset, http=cfg.http)
    sizes = {f: input_size(f) for f in files}
    by_bytes = all(s is not None for s in sizes.values())
    bar = Progress("crawl", unit="bytes" if by_bytes else "files") if ctx.progress else None
    weights = {f: float(s or 0) for f, s in sizes.items()} if by_bytes and bar else None
    if files:
        # Build and warm the extractor here, once: forked workers inherit it (imports and
        # justext's stop-word table are then not paid again in every worker).
        _extractor_for(cfg.extract).warm_up()
    out = OutputDir(ctx.output, STAGE)
    with out.locked(), ctx.executor.session():
        manifest, _ = run_per_input(
            out,
            files,
            process_input,
            cfg.to_json(),
            ctx.executor,
            overwrite=ctx.overwrite,
            shard_bytes=int(cfg.shard_size),
            progress=bar,
            input_weights=weights,
        )
        out.commit(manifest)
    return manifest
