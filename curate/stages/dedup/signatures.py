"""Pass 1 of ``curate dedup``, run in worker processes: per row group (a :class:`Unit`), the
signatures, hashes and LSH band keys of every document (see :mod:`curate.stages.dedup.run`; the
driver's side is :mod:`curate.stages.dedup.signature_pass`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.core.accounting import MAX_EXAMPLES
from curate.core.document import conform_column
from curate.stages.dedup.config import DedupConfig
from curate.stages.dedup.inputs import cast_columns, char_batches, unreadable
from curate.stages.dedup.lsh import band_keys
from curate.stages.dedup.minhash import MinHasher
from curate.stages.dedup.urls import hash128, normalize_url

NO_DATE = np.iinfo(np.int64).max  # missing dates sort last
_PROJECTION = ["id", "text", "url", "date", "quality_score"]

_HASHER: MinHasher | None = None  # this process's hasher, kept across units of one run


class Unit(NamedTuple):
    """One row group of one input: the signature pass's unit of work."""

    input: int  # the input's index
    offset: int  # the unit's first document
    args: tuple[str, int, int, DedupConfig]  # for signature_unit: path, row group, rows, config


def _hasher(config: DedupConfig) -> MinHasher:
    global _HASHER
    h = _HASHER
    if h is None or (h.num_perm, h.seed, h.ngram, h.hash_name) != (
        config.num_perm,
        config.seed,
        config.ngram,
        config.shingle_hash,
    ):
        h = _HASHER = MinHasher(config.num_perm, config.seed, config.ngram, config.shingle_hash)
    return h


def _column(batch: pa.RecordBatch, name: str) -> pa.Array | None:
    idx = batch.schema.get_field_index(name)
    return batch.column(idx) if idx >= 0 else None


def signature_unit(args: tuple[str, int, int, DedupConfig]) -> dict[str, Any]:
    """Signatures and keys of one row group. Never raises: an unreadable unit reports ``error``."""
    path, row_group, n_rows, config = args
    try:
        return _signature_unit_inner(path, row_group, n_rows, config)
    except Exception as exc:
        reason, message = unreadable(path, row_group, exc)
        return {"error": message, "reason": reason, "n": n_rows}


def _read_row_group(
    path: str, row_group: int, n_rows: int
) -> tuple[list[str | None], list[str | None], list[str | None], np.ndarray, np.ndarray]:
    """``(ids, texts, urls, dates, quality)`` of one row group, every column cast to its schema
    type (missing dates are :data:`NO_DATE`, missing scores NaN)."""
    pf = pq.ParquetFile(path)
    names = set(pf.schema_arrow.names)
    # Every column the output pass will cast is cast here too (and the result dropped), so a
    # value that cannot be cast fails the input now, before anything is decided or written.
    cast_only = [c for c in cast_columns(pf.schema_arrow) if c not in _PROJECTION]
    columns = [c for c in _PROJECTION if c in names] + cast_only
    ids: list[str | None] = []
    texts: list[str | None] = []
    urls: list[str | None] = []
    dates: list[np.ndarray] = []
    quality: list[np.ndarray] = []
    for batch in pf.iter_batches(batch_size=4096, row_groups=[row_group], columns=columns):
        n = batch.num_rows
        for name in cast_only:
            conform_column(_column(batch, name), name, path)
        ids.extend(conform_column(_column(batch, "id"), "id", path).to_pylist())
        texts.extend(conform_column(_column(batch, "text"), "text", path).to_pylist())
        url = _column(batch, "url")
        urls.extend(conform_column(url, "url", path).to_pylist() if url is not None else [None] * n)
        date = _column(batch, "date")
        if date is None:
            dates.append(np.full(n, NO_DATE, dtype=np.int64))
        else:
            us = conform_column(date, "date", path).cast(pa.int64())
            dates.append(pc.fill_null(us, NO_DATE).to_numpy(zero_copy_only=False).astype(np.int64))
        q = _column(batch, "quality_score")
        if q is None:
            quality.append(np.full(n, np.nan, dtype=np.float32))
        else:
            quality.append(conform_column(q, "quality_score", path).to_numpy(zero_copy_only=False).astype(np.float32))
    if len(ids) != n_rows:
        raise ValueError(f"expected {n_rows} rows, read {len(ids)}")
    return (
        ids,
        texts,
        urls,
        np.concatenate(dates) if dates else np.zeros(0, np.int64),
        np.concatenate(quality) if quality else np.zeros(0, np.float32),
    )


def _signature_unit_inner(path: str, row_group: int, n_rows: int, config: DedupConfig) -> dict[str, Any]:
    ids, texts, urls, dates, quality = _read_row_group(path, row_group, n_rows)
    n = len(ids)
    valid = np.ones(n, dtype=np.uint8)
    errors: Counter = Counter()
    examples: list[tuple[int, str, str | None]] = []  # (row in the unit, reason, id)
    for i in range(n):
        # The rule of curate.core.document.null_rows: a null text, else a null id, is an error.
        if texts[i] is None or ids[i] is None:
            reason = "null_text" if texts[i] is None else "null_id"
            valid[i], texts[i] = 0, texts[i] or ""
            errors[reason] += 1
            if errors[reason] <= MAX_EXAMPLES:
                examples.append((i, reason, ids[i]))
    hasher = _hasher(config)
    sig = np.empty((n, config.num_perm), dtype=np.uint32)
    n_shingles = np.empty(n, dtype=np.int64)
    exact = np.empty((n, 2), dtype=np.uint64)
    for start, end in char_batches(texts):
        out = hasher.signatures(texts[start:end])
        sig[start:end], n_shingles[start:end], exact[start:end] = out.signatures, out.n_shingles, out.exact
    url_hash = np.zeros((n, 2), dtype=np.uint64)
    has_url = np.zeros(n, dtype=np.uint8)
    if config.url:
        for i, u in enumerate(urls):
            norm = normalize_url(u)
            if norm is not None:
                url_hash[i] = hash128(norm)
                has_url[i] = 1
    bands, rows = config.lsh() if config.near else (0, 0)
    keys = band_keys(sig, bands, rows) if config.near else np.zeros((n, 0), dtype=np.uint64)
    return {
        "n": n,
        "ids": [i or "" for i in ids],
        "valid": valid,
        "errors": errors,
        "error_examples": examples,
        "date": dates,
        "quality": quality,
        "sig": sig,
        "n_shingles": n_shingles,
        "exact": exact,
        "url": url_hash,
        "has_url": has_url,
        "keys": keys,
        "chars": sum(len(t) for t in texts),
    }


def placeholder(n: int, config: DedupConfig) -> dict[str, Any]:
    return {
        "n": n,
        "ids": [""] * n,
        "valid": np.zeros(n, np.uint8),
        "date": np.full(n, NO_DATE, np.int64),
        "quality": np.full(n, np.nan, np.float32),
        "sig": np.zeros((n, config.num_perm), np.uint32),
        "n_shingles": np.zeros(n, np.int64),
        "exact": np.zeros((n, 2), np.uint64),
        "url": np.zeros((n, 2), np.uint64),
        "has_url": np.zeros(n, np.uint8),
        "keys": np.zeros((n, 0), np.uint64),
    }


def unit_key_records(
    result: dict[str, Any], docs: np.ndarray, config: DedupConfig
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(index name, keys, docs)`` of one unit's signature result: exact-text keys of valid
    documents, URL keys of those with a URL, band keys of those with shingles."""
    valid = result["valid"].astype(bool)
    if config.exact:
        yield "exact", result["exact"][valid, 0], docs[valid]
    if config.url:
        with_url = valid & result["has_url"].astype(bool)
        yield "url", result["url"][with_url, 0], docs[with_url]
    if config.near:
        has = valid & (result["n_shingles"] > 0)
        keys = result["keys"][has]
        yield "band", keys.reshape(-1), np.repeat(docs[has], keys.shape[1])
