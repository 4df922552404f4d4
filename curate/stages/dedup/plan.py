"""Configuration, input inspection and the resource plan of ``curate dedup``.

The plan is computed from Parquet metadata alone (row counts, row groups, uncompressed text
bytes) plus a short timing of signature computation on a sample of the first input, so
``curate dedup --plan`` answers "how much memory, disk and time will this take?" in about a
second whatever the corpus size.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.core.document import REQUIRED_COLUMNS, SCHEMA
from curate.core.errors import ConfigError
from curate.core.shards import DEFAULT_SHARD_BYTES
from curate.stages.dedup.index import RECORD, plan_partitions
from curate.stages.dedup.lsh import optimal_bands
from curate.stages.dedup.minhash import MinHasher

# Band selection weights: candidates are verified on their signatures before anything is
# removed, so a false positive of the banding costs one signature comparison while a false
# negative is a duplicate missed for good. Hence recall is weighted far above precision.
FALSE_POSITIVE_WEIGHT = 0.05
FALSE_NEGATIVE_WEIGHT = 0.95
# With exact verification a false candidate costs one set comparison, in a pass that reads only
# candidate documents, so the banding leans further towards recall: 16 bands x 7 rows instead of
# 14 x 8 at threshold 0.8 (97.7% of pairs at Jaccard 0.8 become candidates instead of 92.4%).
EXACT_FALSE_POSITIVE_WEIGHT = 0.02
EXACT_FALSE_NEGATIVE_WEIGHT = 0.98

VERIFY_MODES = ("estimate", "exact")

# Characters of text tokenized together by one worker (bounds its memory, ~60 B per char).
BATCH_CHARS = 1_000_000
_BASE_MEMORY = 250 * 1024**2  # interpreter, numpy, pyarrow


def char_batches(texts: list[str]) -> Iterator[tuple[int, int]]:
    """``(start, end)`` slices of ``texts`` of about BATCH_CHARS characters (at least one text
    each): tokenizing a batch at a time bounds a worker's memory."""
    start = 0
    while start < len(texts):
        end, chars = start, 0
        while end < len(texts) and (end == start or chars + len(texts[end]) <= BATCH_CHARS):
            chars += len(texts[end])
            end += 1
        yield start, end
        start = end


def unreadable(path: str, row_group: int, exc: Exception) -> str:
    """The one-line error of a row group that could not be read (pyarrow's messages can span
    several lines)."""
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{path}: row group {row_group} unreadable ({type(exc).__name__}: {first_line})"


_BYTES_PER_BATCH_CHAR = 60


@dataclass
class DedupConfig:
    """Everything that changes the result of a dedup run (workers and memory do not)."""

    threshold: float = 0.8
    ngram: int = 5
    num_perm: int = 112
    seed: int = 1
    bands: int | None = None
    rows: int | None = None
    # Jaccard a candidate pair needs to be merged (default: threshold).
    verify_threshold: float | None = None
    # How a candidate pair's Jaccard is measured: "estimate" (share of agreeing signature
    # values) or "exact" (true Jaccard of the two shingle sets; see curate.stages.dedup.exact).
    verify: str = "estimate"
    exact: bool = True
    near: bool = True
    url: bool = False
    shingle_hash: str = "fast"
    shard_bytes: int = DEFAULT_SHARD_BYTES

    def validate(self) -> DedupConfig:
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.verify_threshold is not None and not 0.0 < self.verify_threshold <= 1.0:
            raise ConfigError(f"verify threshold must be in (0, 1], got {self.verify_threshold}")
        if self.verify not in VERIFY_MODES:
            raise ConfigError(f"verify must be 'estimate' or 'exact', got {self.verify!r}")
        if self.ngram < 1:
            raise ConfigError(f"ngram must be at least 1, got {self.ngram}")
        if not 2 <= self.num_perm <= 4096:
            raise ConfigError(f"num_perm must be between 2 and 4096, got {self.num_perm}")
        if self.shingle_hash not in ("fast", "sha1"):
            raise ConfigError(f"shingle hash must be 'fast' or 'sha1', got {self.shingle_hash!r}")
        if (self.bands is None) != (self.rows is None):
            raise ConfigError("give both --bands and --rows, or neither (derived from the threshold)")
        if self.bands is not None:
            if self.bands < 1 or self.rows < 1:
                raise ConfigError("bands and rows must be at least 1")
            if self.bands * self.rows > self.num_perm:
                raise ConfigError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if not (self.exact or self.near or self.url):
            raise ConfigError("nothing to do: exact, near and url dedup are all off")
        if self.shard_bytes < 1:
            raise ConfigError("shard size must be positive")
        return self

    def lsh(self) -> tuple[int, int]:
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        if self.verify == "exact":
            return optimal_bands(
                self.threshold, self.num_perm, EXACT_FALSE_POSITIVE_WEIGHT, EXACT_FALSE_NEGATIVE_WEIGHT
            )
        return optimal_bands(self.threshold, self.num_perm, FALSE_POSITIVE_WEIGHT, FALSE_NEGATIVE_WEIGHT)

    @property
    def accept(self) -> float:
        return self.threshold if self.verify_threshold is None else self.verify_threshold

    def to_json(self) -> dict[str, Any]:
        bands, rows = self.lsh() if self.near else (None, None)
        out = {**asdict(self), "bands": bands, "rows": rows, "verify_threshold": self.accept}
        if self.verify == "estimate":
            # Left out at its default so outputs written before the option existed keep their
            # configuration hash (a rerun of them stays a no-op).
            del out["verify"]
        return out


@dataclass
class InputInfo:
    """One input file as its Parquet metadata describes it."""

    path: str
    index: int
    rows: int = 0
    bytes: int = 0
    text_bytes: int = 0
    mtime_ns: int = 0
    row_groups: list[int] = field(default_factory=list)
    error: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        return {"path": self.path, "bytes": self.bytes, "mtime_ns": self.mtime_ns, "rows": self.rows}


def cast_columns(schema: pa.Schema) -> list[str]:
    """Columns of :data:`~curate.core.document.SCHEMA` that a file stores with another type: they
    are cast on every read (:func:`curate.core.document.conform_table`), and a cast can fail."""
    return [f.name for f in SCHEMA if f.name in schema.names and not schema.field(f.name).type.equals(f.type)]


def cast_column(values: pa.Array | pa.ChunkedArray, name: str) -> pa.Array | pa.ChunkedArray:
    """``values`` of column ``name`` cast to its schema type, the failure naming the column."""
    target = SCHEMA.field(name).type
    try:
        return values.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"column {name!r} has type {values.type}, expected {target} ({exc})") from None


def check_schema(schema: pa.Schema) -> None:
    """Raise ValueError when a file cannot hold curate documents: a required column missing,
    or a column whose type can never be cast to the schema's (text where a map belongs, say).
    Casts that depend on the values (numbers stored as text) are checked by the signature
    pass, which casts every such column, so a file fails there and not halfway through the
    output pass."""
    names = schema.names
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ValueError(
            f"not a curate document file (missing column(s) {', '.join(missing)}; "
            f"found {', '.join(names[:12]) or 'none'})"
        )
    for name in cast_columns(schema):
        cast_column(pa.chunked_array([], type=schema.field(name).type), name)


def inspect_inputs(paths: list[str]) -> list[InputInfo]:
    """Row counts and sizes of every input; an unreadable one gets ``error`` set, not raised."""
    infos = []
    for index, path in enumerate(paths):
        info = InputInfo(path=path, index=index)
        try:
            st = os.stat(path)
            info.bytes, info.mtime_ns = st.st_size, st.st_mtime_ns
            pf = pq.ParquetFile(path)
            names = pf.schema_arrow.names
            check_schema(pf.schema_arrow)
            meta = pf.metadata
            info.rows = meta.num_rows
            info.row_groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            text_col = names.index("text")
            info.text_bytes = sum(
                meta.row_group(i).column(text_col).total_uncompressed_size for i in range(meta.num_row_groups)
            )
        except Exception as exc:  # any unreadable input is reported, never a traceback
            info.error = f"{path}: not a readable document Parquet file ({exc})"
            info.rows, info.row_groups = 0, []
        infos.append(info)
    return infos


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
    index_memory = index_bytes if partitions == 1 else min(index_bytes, memory_bytes)
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
