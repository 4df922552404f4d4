"""Exact verification of ``curate dedup`` (``verify = "exact"``): candidate pairs are accepted
on the true Jaccard of the two documents' shingle sets instead of its MinHash estimate.

Why: with 112 permutations the estimate has a standard deviation of ~0.035 near 0.8, so a pair
of true Jaccard 0.82 often estimates below a 0.8 threshold (and a 0.78 one above it). LSH
banding still chooses the candidates; only the verification changes, so the extra cost is
proportional to the documents that have a candidate, not to the corpus.

How, within the stage's memory budget (``memory_bytes``):

1. **Pairs**: while the band index is grouped, every candidate pair (encoded ``lo * n + hi``,
   as :func:`curate.stages.dedup.index.candidate_pairs` gives them) is appended to a flat file and
   both documents are marked. Pairs are later read back in partitions of consecutive encoded
   values (boundaries from a sample of the file), each partition de-duplicated and sorted on
   its own and sized to a quarter of the budget; a pair found in several bands is verified and
   counted once.
2. **Shingle pass**: the inputs are streamed again, row group by row group (on the engine's
   map: worker processes or Ray tasks, results consumed in input order), and only marked
   documents are tokenized; their shingle sets (sorted unique 64-bit hashes,
   :func:`curate.stages.dedup.minhash.shingle_sets`) are appended to a flat file on disk
   (:class:`~curate.stages.dedup.exact_store.ShingleStore`). Documents removed as URL
   duplicates, and the documents they point at, are marked too, so their ``dup_similarity`` is
   exact as well.
3. **Verification**: each pair partition is cut into batches whose documents' sets fit half of
   the budget; a batch reads exactly the sets it needs from the file (``pread``, not a memory
   map, so nothing stays resident) and accepts a pair when ``|A & B| / |A | B| >=
   verify_threshold``. Accepted pairs go to the union-find; the star split of each cluster
   (:class:`curate.stages.dedup.decide.Decisions`) then measures every member against its
   centre the same way, through a cache of sets bounded by the same half budget.

Nothing depends on ``workers`` or on the budget: pairs, sets and decisions are the same
whatever the number of partitions or batches, so outputs are byte-identical. Which engine
finds the pairs and verifies them is the engine's ``exact_stars``
(:mod:`curate.stages.dedup.engine`): locally steps 1 and 3 run here, with ``--engine ray``
(:mod:`curate.stages.dedup.ray`) the pairs come from Ray tasks, which also verify each pair
partition with :func:`verify_partition` over a
:class:`~curate.stages.dedup.exact_store.ShingleReader`; the outputs are the same. All files
live in the run's work directory, which the stage removes at its start and end (a killed run
restarts from the signature pass, as without exact verification).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from curate.core.document import conform_column
from curate.core.errors import CurateError
from curate.stages.dedup.exact_store import SHINGLE, PairSpill, SetCache, SetFile, ShingleStore
from curate.stages.dedup.index import UnionFind
from curate.stages.dedup.inputs import char_batches, unreadable
from curate.stages.dedup.minhash import shingle_sets, sorted_set_jaccard
from curate.stages.dedup.state import EXACT, NEAR, URL, DedupState

_MAX_BATCH_PAIRS = 65_536


# --------------------------------------------------------------------------- shingle pass (workers)


def shingle_unit(args: tuple[str, int, int, np.ndarray, int, str]) -> dict[str, Any]:
    """Shingle sets of the wanted rows (local indices, increasing) of one row group, written to
    ``out`` (their counts, then the values: what
    :meth:`~curate.stages.dedup.exact_store.ShingleStore.append_file` reads), so that only the
    path comes back to the driver (through Ray's object store, on Ray). Never raises: an
    unreadable unit reports ``error``."""
    path, row_group, n_rows, wanted, ngram, out = args
    try:
        result = _shingle_unit_inner(path, row_group, n_rows, wanted, ngram)
    except Exception as exc:
        return {"error": unreadable(path, row_group, exc)[1]}
    with open(out + ".tmp", "wb") as fh:
        fh.write(np.ascontiguousarray(result["counts"], dtype="<i8").tobytes())
        fh.write(np.ascontiguousarray(result["values"], dtype=SHINGLE).tobytes())
    os.replace(out + ".tmp", out)  # a retried task rewrites it whole
    return {"file": out, "n": len(result["counts"])}


def _shingle_unit_inner(path: str, row_group: int, n_rows: int, wanted: np.ndarray, ngram: int) -> dict[str, Any]:
    pf = pq.ParquetFile(path)
    texts: list[str] = []
    seen = 0
    for batch in pf.iter_batches(batch_size=4096, row_groups=[row_group], columns=["text"]):
        n = batch.num_rows
        lo, hi = np.searchsorted(wanted, [seen, seen + n])
        if hi > lo:
            column = conform_column(batch.column(0), "text", path).take(wanted[lo:hi] - seen)
            texts.extend(t or "" for t in column.to_pylist())
        seen += n
    if seen != n_rows:
        raise ValueError(f"expected {n_rows} rows, read {seen}")
    values: list[np.ndarray] = []
    counts = np.zeros(len(texts), dtype=np.int64)
    for start, end in char_batches(texts):
        v, c = shingle_sets(texts[start:end], ngram)
        values.append(v)
        counts[start:end] = c
    return {"values": np.concatenate(values) if values else np.zeros(0, SHINGLE), "counts": counts}


# --------------------------------------------------------------------------- verification of pairs


def jaccards(a: np.ndarray, b: np.ndarray, get: Callable[[int], np.ndarray]) -> np.ndarray:
    """Exact Jaccard of the sets ``get(a[i])`` and ``get(b[i])``."""
    return np.fromiter(
        (sorted_set_jaccard(get(x), get(y)) for x, y in zip(a.tolist(), b.tolist())), dtype=np.float64, count=len(a)
    )


def pair_batches(pairs: np.ndarray, n: int, sets: SetFile, limit: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(pairs, documents)`` of consecutive slices of ``pairs`` whose documents' sets fit
    ``limit`` bytes (a single pair always forms a batch, whatever its size)."""
    start = 0
    while start < len(pairs):
        stop = min(len(pairs), start + _MAX_BATCH_PAIRS)
        while True:
            part = pairs[start:stop]
            docs = np.unique(np.concatenate((part // n, part % n)))
            if stop - start == 1 or int(sets.set_bytes(docs).sum()) <= limit:
                break
            stop = start + (stop - start) // 2
        yield part, docs
        start = stop


def new_pair_stats() -> dict[str, int]:
    """The counters :func:`verify_partition` adds to."""
    return {
        "candidates": 0,
        "accepted": 0,
        "rejected": 0,
        "accepted_below_estimate": 0,
        "rejected_above_estimate": 0,
        "batches": 0,
    }


def verify_partition(
    pairs: np.ndarray,
    n: int,
    sets: SetFile,
    sig: np.ndarray,
    accept: float,
    limit: int,
    uf: UnionFind,
    stats: dict[str, int],
) -> None:
    """Join in ``uf`` every pair of ``pairs`` (unique, encoded ``lo * n + hi``) whose exact
    Jaccard is at least ``accept``, loading sets in batches of at most ``limit`` bytes, and
    count the outcome (against the signatures' estimate too) in ``stats``."""
    stats["candidates"] += len(pairs)
    for batch, docs in pair_batches(pairs, n, sets, limit):
        stats["batches"] += 1
        a, b = batch // n, batch % n
        loaded = {d: sets.load(d) for d in docs.tolist()}  # each set read once per batch
        good = jaccards(a, b, loaded.__getitem__) >= accept
        del loaded
        estimate = (sig[a] == sig[b]).mean(axis=1) >= accept
        stats["accepted"] += int(good.sum())
        stats["rejected"] += int((~good).sum())
        stats["accepted_below_estimate"] += int((good & ~estimate).sum())
        stats["rejected_above_estimate"] += int((~good & estimate).sum())
        if good.any():
            uf.union_many(a[good], b[good])


# --------------------------------------------------------------------------- the verifier


# ``fn(item)`` for every item, results in item order: the engine's map the shingle pass runs on.
MapFn = Callable[[Callable[[Any], Any], list[Any]], Iterator[Any]]


class ExactVerifier:
    """Exact verification for one dedup run (its :class:`~curate.stages.dedup.state.DedupState`),
    the shingle pass running on ``map_units``: see the module docstring. Created by the decision
    pass after the URL and exact decisions."""

    def __init__(self, state: DedupState, map_units: MapFn):
        self.state = state
        self.map_units = map_units
        self.n = max(state.n_docs, 1)
        self.work = state.work / "exact"
        self.budget = max(int(state.memory_bytes), 1)
        size = max(state.n_docs, 1)
        self.marked = np.memmap(state.work / "exact_marked.bin", dtype="u1", mode="w+", shape=(size,))[: state.n_docs]
        # Exact Jaccard of each near-removed document with the centre of its star.
        self.near_sim = np.memmap(state.work / "exact_near_sim.bin", dtype="<f4", mode="w+", shape=(size,))[
            : state.n_docs
        ]
        self.pairs = PairSpill(self.work)
        self.store: ShingleStore | None = None
        self.cache: SetCache | None = None
        self.stats = {**new_pair_stats(), "documents_hashed": 0, "shingle_bytes": 0, "pair_partitions": 0}

    # ---- 1. pairs
    def add_candidates(self, pairs: np.ndarray) -> None:
        """Encoded candidate pairs of one band partition (unique within it)."""
        if len(pairs) == 0:
            return
        self.pairs.add(pairs)
        self.mark(pairs // self.n)
        self.mark(pairs % self.n)

    def mark(self, docs: np.ndarray) -> None:
        """Documents whose shingle sets the shingle pass must store (the Ray engine marks the
        documents of the candidate pairs its tasks found, without :meth:`add_candidates`)."""
        self.marked[docs] = 1

    # ---- 2. shingle pass
    def url_targets(self) -> tuple[np.ndarray, np.ndarray]:
        """URL-removed documents and the document each points at after the exact decision."""
        kind, dup_of = self.state.kind, self.state.dup_of
        losers = np.flatnonzero(np.asarray(kind) == URL)
        target = np.asarray(dup_of[losers])
        chained = np.asarray(kind[target]) == EXACT
        target[chained] = np.asarray(dup_of[target[chained]])
        return losers, target

    def hash_documents(self) -> None:
        """Stream the inputs once and store the shingle sets of the marked documents."""
        losers, targets = self.url_targets()
        self.marked[losers] = 1
        self.marked[targets] = 1
        self.store = ShingleStore(self.work, self.state.n_docs)
        n, step = self.state.n_docs, 1 << 20
        total = sum(int(np.count_nonzero(self.marked[lo : lo + step])) for lo in range(0, n, step))
        progress = self.state.progress_bar("exact verification (shingles)", total, "docs")
        offsets: deque[tuple[int, int]] = deque()  # (first document, rows) of the units handed out
        try:
            with closing(self.map_units(shingle_unit, self._units(offsets))) as results:
                for result in results:
                    if "error" in result:
                        raise CurateError(
                            f"{result['error']}; it was readable in the signature pass: "
                            "did it change while dedup was running? rerun"
                        )
                    offset, rows = offsets.popleft()
                    docs = offset + np.flatnonzero(np.asarray(self.marked[offset : offset + rows])).astype(np.int64)
                    self.store.append_file(docs, result["file"])
                    Path(result["file"]).unlink(missing_ok=True)
                    progress.advance(len(docs))
        finally:
            progress.close()
        self.store.finish()
        self.cache = SetCache(self.store, self.budget // 2)
        self.stats["documents_hashed"] = self.store.docs
        self.stats["shingle_bytes"] = self.store.bytes

    def _units(self, offsets: deque[tuple[int, int]]) -> Iterator[tuple[str, int, int, np.ndarray, int, str]]:
        """The :func:`shingle_unit` arguments of every row group holding marked documents, made
        as they are handed out (each unit's first document and rows appended to ``offsets``), so the
        driver never holds more than the units in flight."""
        state = self.state
        for info in state.inputs:
            if info.error or info.index in state.failed:
                continue
            offset = state.offsets[info.index]
            for rg, rows in enumerate(info.row_groups):
                local = np.flatnonzero(np.asarray(self.marked[offset : offset + rows])).astype(np.int64)
                if len(local):
                    offsets.append((offset, rows))
                    out = str(self.work / f"shingles-{info.index:06d}-{rg:05d}.bin")
                    yield (info.path, rg, rows, local, state.config.ngram, out)
                offset += rows

    # ---- 3. verification
    def jaccards(self, a: np.ndarray, b: np.ndarray, get: Callable[[int], np.ndarray]) -> np.ndarray:
        return jaccards(a, b, get)

    def verify(self, uf: UnionFind) -> None:
        """Join every candidate pair whose exact Jaccard passes the verify threshold."""
        accept = self.state.config.accept
        sig = self.state.store["sig"]
        for part in self.pairs.sorted_partitions(max(1, self.budget // 4)):
            verify_partition(part, self.n, self.store, sig, accept, self.budget // 2, uf, self.stats)
        self.stats["pair_partitions"] = self.pairs.partitions

    def add_stats(self, stats: dict[str, int]) -> None:
        """Counters of pairs verified elsewhere (a Ray task's :func:`verify_partition`)."""
        for key, value in stats.items():
            self.stats[key] += int(value)

    def similarities(self, center: int, others: np.ndarray) -> np.ndarray:
        """Exact Jaccard of ``center`` with each of ``others`` (the star split's measure)."""
        return self.jaccards(np.full(len(others), center, dtype=np.int64), others, self.cache.get)

    def record_near(self, docs: np.ndarray, sims: np.ndarray) -> None:
        self.near_sim[docs] = sims

    # ---- final similarities
    def final_similarity(self, removed: np.ndarray, direct: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Exact ``dup_similarity`` of each removed document with the kept document ``target``
        that represents it (``direct``: the document that removed it)."""
        kind = np.asarray(self.state.kind[removed])
        sims = np.ones(len(removed), dtype=np.float32)
        near = kind == NEAR
        sims[near] = self.near_sim[removed[near]]
        # An exact duplicate has its keeper's shingle set: 1.0 when the keeper was kept, else
        # the keeper's own similarity with the centre of the star that removed it.
        exact = np.flatnonzero(kind == EXACT)
        keeper_kind = np.asarray(self.state.kind[direct[exact]])
        chained = exact[keeper_kind == NEAR]
        sims[chained] = self.near_sim[direct[chained]]
        assert not np.isin(keeper_kind, (URL, EXACT)).any()
        url = np.flatnonzero(kind == URL)
        if len(url):
            sims[url] = self.jaccards(removed[url], target[url], self.cache.get)
        return sims

    def manifest(self) -> dict[str, Any]:
        return dict(self.stats)

    def close(self) -> None:
        self.pairs.close()
        if self.store is not None:
            self.store.close()
        if self.cache is not None:
            self.cache.clear()
