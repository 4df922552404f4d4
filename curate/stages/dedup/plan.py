"""The resource plan of ``curate dedup`` (``--plan``, and the lines printed before a run).

The plan is computed from Parquet metadata alone (row counts, row groups, uncompressed text
bytes) plus a short timing of signature computation on a sample of the first input, so
``curate dedup --plan`` answers "how much memory, disk and time will this take?" in about a
second whatever the corpus size.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow.parquet as pq

from curate.stages.dedup.config import DedupConfig
from curate.stages.dedup.index import RECORD, plan_partitions
from curate.stages.dedup.inputs import BATCH_CHARS, InputInfo
from curate.stages.dedup.minhash import MinHasher

_BASE_MEMORY = 250 * 1024**2  # interpreter, numpy, pyarrow
_BYTES_PER_BATCH_CHAR = 60


@dataclass
class DedupPlan:
    """Estimated resources of a run (see :func:`plan_dedup`)."""

    inputs: int
    unreadable: int
    docs: int
    text_bytes: int
    input_bytes: int
    workers: int
    memory_budget: int
    bands: int
    rows: int
    index_records: int
    index_bytes: int
    partitions: int
    store_bytes: int
    peak_memory: int
    disk_bytes: int
    signature_rate: float  # docs/s per worker, measured on a sample (0 when not measured)
    seconds: float
    verify: str = "estimate"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        def size(n: float) -> str:
            for unit in ("B", "KB", "MB", "GB", "TB"):
                if abs(n) < 1000 or unit == "TB":
                    return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
                n /= 1000
            return str(n)

        if self.seconds < 60:
            duration = f"{self.seconds:.1f} s"
        else:
            hours, rest = divmod(int(self.seconds + 0.5), 3600)
            duration = f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
        spill = (
            f"spilled to disk in {self.partitions} partitions (budget {size(self.memory_budget)})"
            if self.partitions > 1
            else f"in memory (budget {size(self.memory_budget)})"
        )
        lines = [
            f"dedup plan: {self.docs:,} documents in {self.inputs} input(s), "
            f"{size(self.text_bytes)} of text, {size(self.input_bytes)} of Parquet",
            f"  LSH: {self.bands} bands x {self.rows} rows; index {self.index_records:,} records "
            f"({size(self.index_bytes)}), {spill}",
            f"  peak memory ~{size(self.peak_memory)}; disk ~{size(self.disk_bytes)} "
            f"(work files {size(self.store_bytes + (self.index_bytes if self.partitions > 1 else 0))}, "
            f"output ~{size(self.input_bytes)})",
        ]
        rate = f" at {self.signature_rate:,.0f} docs/s per worker (measured)" if self.signature_rate else ""
        lines.append(f"  time ~{duration} with {self.workers} worker(s){rate}")
        if self.verify == "exact":
            # What it costs depends on how many documents have a candidate, unknown until the
            # bands are grouped: give the rule rather than a figure.
            lines.append(
                "  exact verification: one more pass tokenizing the documents that have a candidate "
                "pair; their shingle sets go to disk (~2 bytes per character of those documents)"
            )
        if self.unreadable:
            lines.append(f"  {self.unreadable} input(s) cannot be read and will be skipped")
        return lines


def _measure_rate(infos: list[InputInfo], config: DedupConfig) -> tuple[float, float]:
    """(docs/s, chars/s) of signature computation on up to ~300 KB of the first input."""
    for info in infos:
        if info.error or not info.rows:
            continue
        try:
            pf = pq.ParquetFile(info.path)
            texts: list[str] = []
            for batch in pf.iter_batches(batch_size=256, columns=["text"]):
                texts.extend(t for t in batch.column(0).to_pylist() if t)
                if sum(len(t) for t in texts) > 300_000 or len(texts) >= 1000:
                    break
        except Exception:
            continue
        if not texts:
            continue
        hasher = MinHasher(config.num_perm, config.seed, config.ngram, config.shingle_hash)
        hasher.signatures(texts[:4])  # warm-up (character table, caches)
        start = time.perf_counter()
        hasher.signatures(texts)
        elapsed = max(time.perf_counter() - start, 1e-6)
        return len(texts) / elapsed, sum(len(t) for t in texts) / elapsed
    return 0.0, 0.0


def plan_dedup(
    infos: list[InputInfo], config: DedupConfig, workers: int, memory_bytes: int, measure: bool = True
) -> DedupPlan:
    readable = [i for i in infos if not i.error]
    docs = sum(i.rows for i in readable)
    text_bytes = sum(i.text_bytes for i in readable)
    input_bytes = sum(i.bytes for i in readable)
    bands, rows = config.lsh() if config.near else (0, 0)
    index_records = docs * ((bands if config.near else 0) + (1 if config.exact else 0) + (1 if config.url else 0))
    index_bytes = index_records * RECORD.itemsize
    partitions = plan_partitions(index_records, memory_bytes)
    avg_id = 40
    per_doc_store = config.num_perm * 4 + 8 + 4 + 16 + 16 + 8 + 1 + 4 + avg_id + 8 + 13
    store_bytes = docs * per_doc_store
    max_rg = max((max(i.row_groups, default=0) for i in readable), default=0)
    per_doc_result = config.num_perm * 4 + bands * 8 + 120
    chars_per_doc = text_bytes / docs if docs else 0.0
    batch_chars = min(BATCH_CHARS, max_rg * chars_per_doc) if max_rg else 0
    worker_memory = int(batch_chars * _BYTES_PER_BATCH_CHAR + 2 * max_rg * per_doc_result)
    index_memory = min(3 * index_bytes, memory_bytes)  # one partition, sorted
    peak = _BASE_MEMORY + workers * (worker_memory + _BASE_MEMORY // 2) + index_memory + docs * 2
    disk = store_bytes + (index_bytes if partitions > 1 else 0) + input_bytes
    rate_docs, rate_chars = _measure_rate(infos, config) if measure else (0.0, 0.0)
    if rate_chars and text_bytes:
        signature_seconds = text_bytes / rate_chars / max(workers, 1)
    else:
        signature_seconds = docs / 3000.0 / max(workers, 1)
    # Grouping, verification and the write pass: rough constants measured on this project's
    # bench (about 40k documents/s to index and 60 MB/s of Parquet rewritten).
    seconds = signature_seconds + docs / 40_000 + input_bytes / 60e6
    return DedupPlan(
        inputs=len(infos),
        unreadable=len(infos) - len(readable),
        docs=docs,
        text_bytes=text_bytes,
        input_bytes=input_bytes,
        workers=workers,
        memory_budget=memory_bytes,
        bands=bands,
        rows=rows,
        index_records=index_records,
        index_bytes=index_bytes,
        partitions=partitions,
        store_bytes=store_bytes,
        peak_memory=peak,
        disk_bytes=disk,
        signature_rate=rate_docs,
        seconds=seconds,
        verify=config.verify,
    )
