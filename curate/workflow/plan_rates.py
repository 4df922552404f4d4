"""The measured rates ``curate pipeline --plan`` rests on, each with the bench that measured it.

Every figure is one of the README's Benchmarks figures (2-core development machine, Python
3.11, shared with other jobs: ±30% between runs). Rates are per core (one worker process);
memory is the RSS high-water of one worker or of the driver. Where a figure is an assumption
rather than a measurement, its ``source`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    value: float
    unit: str
    source: str


# --- Common Crawl: documented per-snapshot averages ----------------------------------------
# A monthly snapshot lists ~90,000 WARC files (its warc.paths.gz), each ~1 GB gzip-compressed,
# holding ~3 billion pages in all (Common Crawl's announcement of each crawl, e.g.
# https://commoncrawl.org/blog/february-march-2024-crawl-archive-now-available, and
# https://commoncrawl.github.io/cc-crawl-statistics/ for page counts per snapshot).
CC_WARC_FILES_PER_SNAPSHOT = 90_000
CC_WARC_FILE_BYTES = 1_000_000_000
CC_PAGES_PER_SNAPSHOT = 3_000_000_000
CC_PAGES_PER_WARC = CC_PAGES_PER_SNAPSHOT / CC_WARC_FILES_PER_SNAPSHOT  # ~33,000
CC_SOURCE = "Common Crawl snapshot averages: ~90,000 WARC files of ~1 GB, ~3 billion pages (commoncrawl.org)"

RATES: dict[str, Rate] = {
    # docs/s per core
    "crawl": Rate(114.2, "HTML docs/s per core", "bench/crawl.py: real Common Crawl capture, 2026-11-28"),
    "filter": Rate(235.0, "docs/s per core", "bench/filters.py: FineWeb-order chain on 4,873 real docs (low end)"),
    "dedup": Rate(2107.0, "docs/s per core", "bench/dedup.py: end to end on 6,316 real docs, one worker"),
    "mix": Rate(16_893.0, "docs/s, one process", "bench/scale.py: mix at 100k docs, 2026-12-03"),
    # peak memory per worker / on the driver, bytes
    "crawl_worker_mem": Rate(
        116e6,
        "bytes",
        "bench/scale.py --child crawl samples/warc -j 2: worker RSS on the samples' small WARC files "
        "(records are streamed; unmeasured on 1 GB files)",
    ),
    "filter_worker_mem": Rate(159e6, "bytes", "bench/scale.py: filter worker RSS at 10k and 100k docs"),
    "dedup_worker_mem": Rate(204e6, "bytes", "bench/scale.py: dedup worker RSS at 100k docs"),
    "dedup_driver_base": Rate(280e6, "bytes", "bench/scale.py: dedup driver RSS at 10k docs"),
    "dedup_driver_per_doc": Rate(1385.0, "bytes/doc", "bench/scale.py: dedup driver RSS growth 10k -> 100k"),
    "mix_driver_per_doc": Rate(3411.0, "bytes/doc", "bench/scale.py: mix RSS growth 10k -> 100k"),
    "mix_driver_base": Rate(194e6, "bytes", "bench/scale.py: mix RSS at 10k docs"),
    # sizes and survival
    "parquet_bytes_per_doc": Rate(508.0, "bytes/doc", "bench/scale.py corpus: 1,963 chars/doc, zstd Parquet"),
    "crawl_yield": Rate(0.9, "docs per page", "assumed: HTML responses with extractable text"),
    "filter_keep": Rate(
        0.45,
        "kept/in",
        "assumed: ~45% of CC pages are English (cc-crawl-statistics); "
        "the default chain kept 166 of 197 real English pages (README ablation)",
    ),
    "dedup_keep": Rate(0.8, "kept/in", "assumed: 10-30% duplicates on web crawls (issue 19); 0.8 kept"),
    "pretrain_mfu": Rate(0.4, "MFU", "README: curate train pretrain on an H200, small, compiled: MFU 37-40%"),
}
