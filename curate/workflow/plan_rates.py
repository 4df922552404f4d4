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


# Common Crawl's published sizes (pages per snapshot, bytes per page) are in
# curate.workflow.cc_snapshots.

# dedup and mix have a part that does not spread over workers (the driver's scheduling and its
# per-document work): from the same 1M-document corpus run with 1 and with 2 workers,
# t(w) = serial + parallel / w gives both, in microseconds per document.
SCALE = "bench/scale.py 2026-12-03, 1M generated documents, 1 vs 2 workers"
SCALE4 = "bench/scale.py 2026-12-04, 1M generated documents, 1 vs 2 workers"
S = "bench/scale.py 2026-12-03"
S4 = "bench/scale.py 2026-12-04"

RATES: dict[str, Rate] = {
    # docs/s per core
    "crawl": Rate(114.2, "HTML docs/s per core", "bench/crawl.py: real Common Crawl capture, 2026-11-28"),
    "filter": Rate(235.0, "docs/s per core", "bench/filters.py: FineWeb-order chain on 4,873 real docs (low end)"),
    "dedup": Rate(2107.0, "docs/s per core", "bench/dedup.py: end to end on 6,316 real docs, one worker"),
    # Real documents cost more to dedup than the generated ones: 474.6 us (bench/dedup.py, one
    # worker) vs 151.2 us (bench/scale.py at 1M, one local worker). Applied to both engines.
    "dedup_real_factor": Rate(
        474.6 / 151.2, "x", "bench/dedup.py (real docs) / bench/scale.py (generated), one worker"
    ),
    "dedup_serial_us": Rate(25.6, "us/doc", f"{SCALE}, local: 151.2 s and 88.4 s"),
    "dedup_parallel_us": Rate(125.6, "core-us/doc", f"{SCALE}, local"),
    # Two pairs of runs the same day gave 27.3 + 112.4 (139.7 s and 83.5 s, before the offsets
    # table) and 14.5 + 123.0 (the current code): the split moves with a few % of noise.
    "dedup_ray_serial_us": Rate(14.5, "us/doc", f"{SCALE4}, --engine ray: 137.5 s and 76.0 s"),
    "dedup_ray_parallel_us": Rate(123.0, "core-us/doc", f"{SCALE4}, --engine ray"),
    # Since 2026-12-04 a task writes each shard (the driver only plans the cuts): before, the
    # local mix was almost all serial (34.9 + 1.8 us/doc), on Ray 12.8 + 26.8.
    "mix_serial_us": Rate(5.2, "us/doc", f"{SCALE4}, local: 33.4 s and 19.3 s"),
    "mix_parallel_us": Rate(28.2, "core-us/doc", f"{SCALE4}, local"),
    "mix_ray_serial_us": Rate(7.4, "us/doc", f"{SCALE4}, --engine ray: 37.4 s and 22.4 s"),
    "mix_ray_parallel_us": Rate(30.0, "core-us/doc", f"{SCALE4}, --engine ray"),
    # peak memory per worker / on the driver, bytes (RSS high-water)
    "crawl_worker_mem": Rate(
        116e6,
        "bytes",
        "bench/scale.py --child crawl samples/warc -j 2: worker RSS on the samples' small WARC files "
        "(records are streamed; unmeasured on 1 GB files)",
    ),
    "filter_worker_mem": Rate(177e6, "bytes", "bench/scale.py: filter worker RSS at 1M docs (157-177 MB, 10k-1M)"),
    "dedup_worker_mem": Rate(1.09e9, "bytes", f"{S4}: local dedup worker RSS at 10M docs (2.62 GB on 2026-12-03)"),
    "dedup_driver_base": Rate(145e6, "bytes", f"{S}: local dedup driver RSS at 10k docs"),
    # 10.17 GB RSS at 10M on 2026-12-04: 4.85 GB its own (the index partition, within
    # --memory-gb), 5.21 GB its memory-mapped document store.
    "dedup_driver_per_doc": Rate(
        1002.0, "bytes/doc", f"{S}: local dedup driver RSS at 10k; {S4}: 10.17 GB at 10M (a line through both)"
    ),
    # The Ray dedup driver's own memory (smaps: heap + anonymous; no object store pages since
    # the signature tasks write their columns to files) was 101.5, 113.6, 144.0 and 230.0 x
    # 10^6 bytes at 30k, 300k, 1M and 3M documents: the URL/exact decisions' index partition, 16
    # bytes a document per kind of key (3x while sorted), which --memory-gb caps (plan_cost
    # applies the cap).
    "dedup_ray_driver_base": Rate(101.5e6, "bytes", f"{S4} --engine ray: the driver's own memory at 30k docs (smaps)"),
    "dedup_ray_driver_per_doc": Rate(
        43.0, "bytes/doc", f"{S4} --engine ray: the driver's own memory, 144 -> 230 MB from 1M to 3M (smaps)"
    ),
    "mix_worker_mem": Rate(594e6, "bytes", f"{S4}: local mix worker RSS at 10M docs (552 MB at 3M)"),
    # The local mix driver's RSS at 1M, 3M and 10M documents: 159, 161 and 226 x 10^6 bytes; its
    # own memory 41, 42 and 39; the rest its memory-mapped per-document arrays in page cache.
    "mix_driver_base": Rate(159e6, "bytes", f"{S4}: local mix driver RSS at 1M docs"),
    "mix_driver_per_doc": Rate(9.4, "bytes/doc", f"{S4}: local mix driver RSS, 3M-10M (161 -> 226 MB)"),
    # The Ray mix driver's own memory (smaps: heap + anonymous) was 76.5, 78.4, 79.0 and 81.0
    # x 10^6 bytes at 30k, 300k, 1M and 3M documents: its per-document arrays are memory-mapped
    # files and the shards are written by tasks (before 2026-12-04: 183, 449, 507 MB at
    # 30k-1M, the driver holding a sorted bucket and the shard being written).
    "mix_ray_driver_base": Rate(76.5e6, "bytes", f"{S4} --engine ray: the mix driver's own memory at 30k docs (smaps)"),
    "mix_ray_driver_per_doc": Rate(
        1.5, "bytes/doc", f"{S4} --engine ray: the mix driver's own memory, 76.5 -> 81.0 MB from 30k to 3M (smaps)"
    ),
    # sizes and survival
    "parquet_bytes_per_doc": Rate(510.0, "bytes/doc", "bench/scale.py corpus: 1,968 chars/doc, zstd Parquet"),
    "crawl_yield": Rate(
        0.94, "docs per page", "16 of 17 responses in two real Common Crawl WARC files (2020-34, 2024-22) gave text"
    ),
    "filter_keep": Rate(
        0.434 * 166 / 197,
        "kept/in",
        "43.4% of CC-MAIN-2024-42's pages are English (cc-crawl-statistics languages.csv) x the default "
        "chain kept 166 of 197 real English pages (README ablation)",
    ),
    "dedup_keep": Rate(
        0.8,
        "kept/in",
        "assumed: 10-30% duplicates on web crawls (issue 19); CC-MAIN-2024-42 alone has 2.8% exact "
        "content duplicates (its digests vs pages), near duplicates are more",
    ),
    "pretrain_mfu": Rate(0.4, "MFU", "README: curate train pretrain on an H200, small, compiled: MFU 37-40%"),
}
