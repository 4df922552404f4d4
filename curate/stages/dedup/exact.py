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
2. **Shingle pass**: the inputs are streamed again, row group by row group (in ``workers``
   processes, results consumed in input order), and only marked documents are tokenized; their
   shingle sets (sorted unique 64-bit hashes, :func:`curate.stages.dedup.minhash.shingle_sets`) are appended
   to a flat file on disk (:class:`ShingleStore`). Documents removed as URL duplicates, and the
   documents they point at, are marked too, so their ``dup_similarity`` is exact as well.
3. **Verification**: each pair partition is cut into batches whose documents' sets fit half of
   the budget; a batch reads exactly the sets it needs from the file (``pread``, not a memory
   map, so nothing stays resident) and accepts a pair when ``|A & B| / |A | B| >=
   verify_threshold``. Accepted pairs go to the union-find; the star split of each cluster
   (:meth:`curate.stages.dedup.decide.Decisions._stars`) then measures every member against its
   centre the same way, through a cache of sets bounded by the same half budget.

Nothing depends on ``workers`` or on the budget: pairs, sets and decisions are the same
whatever the number of partitions or batches, so outputs are byte-identical. With
``--engine ray`` (:mod:`curate.stages.dedup.ray`) the shingle pass runs as Ray tasks through the run's
``_task_results`` hook, and pair partitions are verified by Ray tasks with
:func:`verify_partition` over a :class:`ShingleReader`; the outputs are the same. All files live
in the run's work directory, which the stage removes at its start and end (a killed run
restarts from the signature pass, as without exact verification).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from curate.core.errors import CurateError
from curate.core.progress import Progress
from curate.stages.dedup.index import UnionFind
from curate.stages.dedup.inputs import cast_column, char_batches, unreadable
from curate.stages.dedup.minhash import char_classes, shingle_sets, sorted_set_jaccard
from curate.stages.dedup.output import EXACT, NEAR, URL

_HASH = np.dtype("<u8")  # one shingle of a stored set
_PAIR_BYTES = 8
# Sorting a partition of pairs (np.unique) needs about three times its size.
_SORT_FACTOR = 3
_SAMPLE_PAIRS = 65_536
_MAX_BATCH_PAIRS = 65_536


# --------------------------------------------------------------------------- shingle pass (workers)


def shingle_unit(args: tuple[str, int, int, np.ndarray, int]) -> dict[str, Any]:
    """Shingle sets of the wanted rows (local indices, increasing) of one row group.
    Never raises: an unreadable unit reports ``error``."""
    path, row_group, n_rows, wanted, ngram = args
    try:
        return _shingle_unit_inner(path, row_group, n_rows, wanted, ngram)
    except Exception as exc:
        return {"error": unreadable(path, row_group, exc)}


def _shingle_unit_inner(path: str, row_group: int, n_rows: int, wanted: np.ndarray, ngram: int) -> dict[str, Any]:
    pf = pq.ParquetFile(path)
    texts: list[str] = []
    seen = 0
    for batch in pf.iter_batches(batch_size=4096, row_groups=[row_group], columns=["text"]):
        n = batch.num_rows
        lo, hi = np.searchsorted(wanted, [seen, seen + n])
        if hi > lo:
            column = cast_column(batch.column(0), "text").take(wanted[lo:hi] - seen)
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
    return {"values": np.concatenate(values) if values else np.zeros(0, _HASH), "counts": counts}


# --------------------------------------------------------------------------- storage


class _SetFile:
    """Reading sets back from the three files of a :class:`ShingleStore`: ``shingles.bin``
    (the values), ``shingle_start.bin`` and ``shingle_count.bin`` (per document)."""

    start: np.ndarray
    count: np.ndarray
    _fd: int | None

    def set_bytes(self, docs: np.ndarray) -> np.ndarray:
        return np.asarray(self.count[docs]) * _HASH.itemsize

    def load(self, doc: int) -> np.ndarray:
        n = int(self.count[doc])
        if n == 0:
            return np.zeros(0, _HASH)
        raw = os.pread(self._fd, n * _HASH.itemsize, int(self.start[doc]) * _HASH.itemsize)
        return np.frombuffer(raw, dtype=_HASH)


class ShingleStore(_SetFile):
    """Shingle sets of the marked documents in one flat file, appended in document order;
    read back set by set with ``pread`` (so a batch holds only what it asked for)."""

    def __init__(self, directory: Path, n_docs: int):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / "shingles.bin"
        size = max(n_docs, 1)
        self._start_map = np.memmap(directory / "shingle_start.bin", dtype="<i8", mode="w+", shape=(size,))
        self._count_map = np.memmap(directory / "shingle_count.bin", dtype="<i8", mode="w+", shape=(size,))
        self.start, self.count = self._start_map[:n_docs], self._count_map[:n_docs]
        self._fh = open(self.path, "wb")
        self._written = 0  # values
        self._fd: int | None = None
        self.docs = 0

    def append(self, docs: np.ndarray, values: np.ndarray, counts: np.ndarray) -> None:
        self._fh.write(np.ascontiguousarray(values, dtype=_HASH).tobytes())
        starts = self._written + np.concatenate(([0], np.cumsum(counts)[:-1])) if len(counts) else counts
        self.start[docs] = starts
        self.count[docs] = counts
        self._written += int(counts.sum())
        self.docs += len(docs)

    def finish(self) -> None:
        self._fh.close()
        # Flushed so that other processes (Ray verification tasks, possibly on other nodes of
        # a shared filesystem) read the offsets from the files, not from this page cache.
        self._start_map.flush()
        self._count_map.flush()
        self._fd = os.open(self.path, os.O_RDONLY)

    @property
    def bytes(self) -> int:
        return self._written * _HASH.itemsize

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ShingleReader(_SetFile):
    """Read-only view of a finished :class:`ShingleStore` in ``directory``, for another process
    (a Ray verification task)."""

    def __init__(self, directory: str | os.PathLike, n_docs: int):
        directory = Path(directory)
        size = max(n_docs, 1)
        self.start = np.memmap(directory / "shingle_start.bin", dtype="<i8", mode="r", shape=(size,))[:n_docs]
        self.count = np.memmap(directory / "shingle_count.bin", dtype="<i8", mode="r", shape=(size,))[:n_docs]
        self._fd = os.open(directory / "shingles.bin", os.O_RDONLY)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SetCache:
    """Loaded shingle sets, least recently used dropped first past ``budget`` bytes."""

    def __init__(self, store: ShingleStore, budget: int):
        self.store = store
        self.budget = budget
        self._sets: OrderedDict[int, np.ndarray] = OrderedDict()
        self._bytes = 0
        self.loads = 0

    def get(self, doc: int) -> np.ndarray:
        found = self._sets.get(doc)
        if found is not None:
            self._sets.move_to_end(doc)
            return found
        values = self.store.load(doc)
        self.loads += 1
        self._sets[doc] = values
        self._bytes += values.nbytes
        while self._bytes > self.budget and len(self._sets) > 1:
            _, dropped = self._sets.popitem(last=False)
            self._bytes -= dropped.nbytes
        return values

    def clear(self) -> None:
        self._sets.clear()
        self._bytes = 0


class PairSpill:
    """Candidate pairs appended to a flat file; read back unique and sorted, in partitions of
    consecutive encoded values that each fit ``memory_bytes``."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / "pairs.bin"
        self._fh = open(self.path, "wb")
        self.records = 0
        self.partitions = 0

    def add(self, pairs: np.ndarray) -> None:
        if len(pairs):
            self._fh.write(np.ascontiguousarray(pairs, dtype="<i8").tobytes())
            self.records += len(pairs)

    def sorted_partitions(self, memory_bytes: int) -> Iterator[np.ndarray]:
        self._fh.close()
        if self.records == 0:
            return
        need = self.records * _PAIR_BYTES * _SORT_FACTOR
        if need <= memory_bytes:
            self.partitions = 1
            yield np.unique(np.fromfile(self.path, dtype="<i8"))
            return
        parts = math.ceil(need / max(memory_bytes, 1))
        spilled = np.memmap(self.path, dtype="<i8", mode="r")
        sample = np.sort(spilled[:: max(1, self.records // _SAMPLE_PAIRS)])
        cuts = np.unique(sample[(np.arange(1, parts) * len(sample)) // parts])
        self.partitions = len(cuts) + 1
        paths = [self.directory / f"pairs-{p:04d}.bin" for p in range(self.partitions)]
        handles = [open(p, "wb") for p in paths]
        try:
            step = max(1, memory_bytes // (_PAIR_BYTES * 4))
            for i in range(0, self.records, step):
                chunk = np.sort(spilled[i : i + step])
                bounds = np.searchsorted(chunk, cuts, side="left")
                for fh, lo, hi in zip(handles, np.concatenate(([0], bounds)), np.concatenate((bounds, [len(chunk)]))):
                    if hi > lo:
                        fh.write(chunk[lo:hi].tobytes())
        finally:
            for fh in handles:
                fh.close()
        del spilled
        self.path.unlink(missing_ok=True)
        for path in paths:
            part = np.fromfile(path, dtype="<i8")
            path.unlink()
            if len(part):
                yield np.unique(part)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


# --------------------------------------------------------------------------- verification of pairs


def jaccards(a: np.ndarray, b: np.ndarray, get: Callable[[int], np.ndarray]) -> np.ndarray:
    """Exact Jaccard of the sets ``get(a[i])`` and ``get(b[i])``."""
    return np.fromiter(
        (sorted_set_jaccard(get(x), get(y)) for x, y in zip(a.tolist(), b.tolist())), dtype=np.float64, count=len(a)
    )


def pair_batches(pairs: np.ndarray, n: int, sets: _SetFile, limit: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
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
    sets: _SetFile,
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


class ExactVerifier:
    """Exact verification for one dedup run (:class:`curate.stages.dedup.run._Run`): see the module
    docstring. Created by the decision pass after the URL and exact decisions."""

    def __init__(self, run: Any):
        self.run = run
        self.n = max(run.n_docs, 1)
        self.work = Path(run.work) / "exact"
        self.budget = max(int(run.memory_bytes), 1)
        self.marked = np.memmap(
            self.work.parent / "exact_marked.bin", dtype="u1", mode="w+", shape=(max(run.n_docs, 1),)
        )[: run.n_docs]
        # Exact Jaccard of each near-removed document with the centre of its star.
        self.near_sim = np.memmap(
            self.work.parent / "exact_near_sim.bin", dtype="<f4", mode="w+", shape=(max(run.n_docs, 1),)
        )[: run.n_docs]
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
        kind, dup_of = self.run.kind, self.run.dup_of
        losers = np.flatnonzero(np.asarray(kind) == URL)
        target = np.asarray(dup_of[losers])
        chained = np.asarray(kind[target]) == EXACT
        target[chained] = np.asarray(dup_of[target[chained]])
        return losers, target

    def hash_documents(self) -> None:
        """Stream the inputs once and store the shingle sets of the marked documents."""
        run = self.run
        losers, targets = self.url_targets()
        self.marked[losers] = 1
        self.marked[targets] = 1
        self.store = ShingleStore(self.work, run.n_docs)
        units = []
        for info in run.inputs:
            if info.error or info.index in run.failed:
                continue
            offset = run.offsets[info.index]
            for rg, rows in enumerate(info.row_groups):
                local = np.flatnonzero(np.asarray(self.marked[offset : offset + rows])).astype(np.int64)
                if len(local):
                    units.append((offset + local, (info.path, rg, rows, local, run.config.ngram)))
                offset += rows
        total = sum(len(u[0]) for u in units)
        progress = Progress(
            "dedup: exact verification (shingles)",
            total=total,
            unit="docs",
            enabled=None if run.show_progress else False,
        )
        try:
            # A run may provide its own ordered map (the Ray engine runs the units as Ray tasks).
            task_results = getattr(run, "_task_results", None)
            items = [u[1] for u in units]
            if task_results is not None:
                mapped = task_results(shingle_unit, items)
            else:
                mapped = ordered_results(shingle_unit, items, run.workers)
            with mapped as results:
                for (docs, _), result in zip(units, results):
                    if "error" in result:
                        raise CurateError(
                            f"{result['error']}; it was readable in the signature pass: "
                            "did it change while dedup was running? rerun"
                        )
                    self.store.append(docs, result["values"], result["counts"])
                    progress.advance(len(docs))
        finally:
            progress.close()
        self.store.finish()
        self.cache = SetCache(self.store, self.budget // 2)
        self.stats["documents_hashed"] = self.store.docs
        self.stats["shingle_bytes"] = self.store.bytes

    # ---- 3. verification
    def jaccards(self, a: np.ndarray, b: np.ndarray, get: Callable[[int], np.ndarray]) -> np.ndarray:
        return jaccards(a, b, get)

    def verify(self, uf: UnionFind) -> None:
        """Join every candidate pair whose exact Jaccard passes the verify threshold."""
        accept = self.run.config.accept
        sig = self.run.store["sig"]
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
        kind = np.asarray(self.run.kind[removed])
        sims = np.ones(len(removed), dtype=np.float32)
        near = kind == NEAR
        sims[near] = self.near_sim[removed[near]]
        # An exact duplicate has its keeper's shingle set: 1.0 when the keeper was kept, else
        # the keeper's own similarity with the centre of the star that removed it.
        exact = np.flatnonzero(kind == EXACT)
        keeper_kind = np.asarray(self.run.kind[direct[exact]])
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


@contextmanager
def ordered_results(fn: Callable[[Any], Any], items: list[Any], workers: int) -> Iterator[Iterator[Any]]:
    """``fn`` over ``items``, results in item order (so nothing depends on the number of workers),
    in ``workers`` forked processes when there are several. The signature pass uses it too."""
    char_classes()  # build the character table once, before forking
    if workers > 1 and len(items) > 1:
        pool = mp.get_context("fork").Pool(min(workers, len(items)))
        try:
            yield pool.imap(fn, items, chunksize=1)
        finally:
            pool.terminate()
            pool.join()
    else:
        yield (fn(item) for item in items)
