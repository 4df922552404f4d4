"""``curate dedup --engine ray``: the passes of :mod:`curate.stages.dedup.run` spread over a Ray cluster.

The work directory (``OUTPUT/.curate/work``) must be storage every node sees, as the output
directory itself. What runs where, for N documents, B LSH bands and P partitions:

* **Signatures, on the cluster**: one Ray task per input row group, as the local engine's
  worker processes. A task computes the unit's signatures and hashes
  (:func:`curate.stages.dedup.signatures.signature_unit`), writes its ``(key, doc)`` records of each
  index (band, exact, url) to one file per index in the work directory, ordered by partition
  (the key's top bits) and returns the partition boundaries plus the per-document columns
  (about 4 x num_perm bytes a document). The driver appends those, in unit order, to the
  memory-mapped document store (:class:`curate.stages.dedup.index.DocStore`) in the work directory.
* **Near-duplicate edges, on the cluster**, in two rounds of independent tasks. First one task
  per band partition (at least :data:`MIN_BAND_PARTITIONS`, more when a partition would not
  fit ``memory_bytes``): it reads its slice of every unit's band file (N x B / P records),
  groups documents by band key and writes the candidate pairs among documents still kept after
  the URL and exact decisions, partitioned by a hash of the pair. Then one task per pair
  partition: it de-duplicates its pairs (a pair sharing several bands is verified once, and
  counted once, as on the local engine), verifies them on signatures memory-mapped from the
  shared store, and returns a spanning forest of the verified edges (at most one edge per
  document it touches). No process ever holds more than one partition of the band index,
  which is B times larger than the corpus's document count.
* **On the driver**: the document store (memory maps: what is touched stays in page cache,
  not process memory), the URL and exact decisions streamed partition by partition (each
  partition sized to ``memory_bytes``), the union-find over the partitions' forests (memory
  proportional to the documents that have a near duplicate, usually a small fraction), the
  split of clusters into stars, and the single sequential write pass, which keeps the output
  shards byte-identical to the local engine's.

With ``verify = "exact"`` (:mod:`curate.stages.dedup.exact`) the near-duplicate edges take three
rounds instead (:meth:`RayRun._near`):

* **Candidate pairs, on the cluster**: the same task per band partition
  (:func:`exact_pairs_task`), which also returns the documents of its pairs; the driver marks
  them (one byte a document, memory-mapped) and deletes the band files.
* **Shingle pass, on the cluster**: one task per row group holding marked documents (or URL
  removals and their targets), :func:`curate.stages.dedup.exact.shingle_unit` as the local worker
  processes run it, through the ``_task_results`` hook; the driver appends the returned sets,
  in unit order, to the shingle store in the work directory (a flat file plus per-document
  offsets), so the sets are on disk, never all in memory.
* **Exact verification, on the cluster**: one task per pair partition
  (:func:`exact_verify_task`): it de-duplicates its pairs, reads the sets it needs from the
  shared store in batches of at most half the budget and returns a spanning forest of the
  accepted pairs and its counters. A pair partition holds at most the pairs of a band
  partition's share (two per band record, 8 bytes each against a record's 16), so it fits
  where a band partition does.
* **On the driver**, as locally: the union-find, the star split measured on exact Jaccard
  (sets read through a cache bounded by half the budget) and the final similarities.

Groups, candidate pairs and verified edges do not depend on the number of partitions or
workers, and the union of the partitions' forests has the components of all verified edges,
so the kept and removed documents (and the output shards) are exactly the local engine's. In
exact mode only the manifest's ``pairs.exact.pair_partitions`` and ``batches`` differ: they
count this engine's partitions.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from curate.core.errors import CurateError
from curate.core.progress import Progress
from curate.stages.dedup.exact import new_pair_stats, verify_partition
from curate.stages.dedup.exact_store import ShingleReader
from curate.stages.dedup.index import (
    RECORD,
    UnionFind,
    candidate_pairs,
    group_records,
    keep_groups,
    plan_partitions,
    verify_pairs,
)
from curate.stages.dedup.minhash import fmix64
from curate.stages.dedup.run import _Run
from curate.stages.dedup.signatures import signature_unit, unit_key_records

# Band partitions: enough tasks to keep a cluster busy even when the index fits one node.
# A constant (not derived from the cluster size) so the partitioning, and with it every
# figure in the manifest, does not depend on the number of workers.
MIN_BAND_PARTITIONS = 16


# --------------------------------------------------------------------------- partitioned key files


def _partition_bits(partitions: int) -> int:
    return int(math.log2(partitions))


def write_partitioned(path: str, records: np.ndarray, hashes: np.ndarray, partitions: int) -> list[int]:
    """Write ``records`` to ``path`` grouped by partition (the top bits of their uniform 64-bit
    ``hashes``; order kept inside each) and return the ``partitions + 1`` record offsets."""
    if partitions > 1:
        part = (hashes >> np.uint64(64 - _partition_bits(partitions))).astype(np.int64)
        order = np.argsort(part, kind="stable")
        records, part = records[order], part[order]
        bounds = np.searchsorted(part, np.arange(partitions + 1)).tolist()
    else:
        bounds = [0, len(records)]
    tmp = f"{path}.tmp"
    records.tofile(tmp)
    os.replace(tmp, path)  # a retried task rewrites the same file whole
    return [int(b) for b in bounds]


def write_key_records(path: str, keys: np.ndarray, docs: np.ndarray, partitions: int) -> list[int]:
    """``(key, doc)`` records partitioned by key (band keys and text/URL hashes are uniform)."""
    rec = np.empty(len(keys), dtype=RECORD)
    rec["key"] = keys
    rec["doc"] = docs
    return write_partitioned(path, rec, rec["key"], partitions)


def read_ranges(ranges: list[tuple[str, int, int]], dtype: np.dtype = RECORD) -> np.ndarray:
    """The records ``[lo, hi)`` of each file, concatenated in the order given."""
    dtype = np.dtype(dtype)
    parts = [np.fromfile(path, dtype=dtype, count=hi - lo, offset=lo * dtype.itemsize) for path, lo, hi in ranges]
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def partition_ranges(files: list[tuple[str, list[int]]], partition: int) -> list[tuple[str, int, int]]:
    """``(path, lo, hi)`` of one partition in each ``(path, bounds)`` file that has records of it."""
    return [(path, b[partition], b[partition + 1]) for path, b in files if b[partition + 1] > b[partition]]


class PartitionedKeys:
    """The key index of one kind of key, as the signature tasks left it: one file per unit,
    each ordered by partition. Has the :class:`~curate.stages.dedup.index.KeyIndex` interface the
    decisions use (``groups``, ``partitions``, ``spilled_bytes``, ``close``)."""

    def __init__(self, directory: Path, name: str, partitions: int):
        self.directory = directory
        self.name = name
        self.partitions = partitions
        self.units: list[tuple[str, list[int]]] = []  # in unit (= document) order
        self.records = 0
        self.spilled_bytes = 0

    def unit_path(self, unit: int) -> str:
        return str(self.directory / f"{self.name}-u{unit:06d}.bin")

    def add_unit(self, path: str, bounds: list[int]) -> None:
        self.units.append((path, bounds))
        self.records += bounds[-1]
        self.spilled_bytes += bounds[-1] * RECORD.itemsize

    def ranges(self, partition: int) -> list[tuple[str, int, int]]:
        return partition_ranges(self.units, partition)

    def groups(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """As :meth:`KeyIndex.groups`: units were added in document order, so every group
        lists its documents in increasing order."""
        for p in range(self.partitions):
            grouped = group_records(read_ranges(self.ranges(p)))
            if grouped is not None:
                yield grouped

    def close(self) -> None:
        for path, _ in self.units:
            Path(path).unlink(missing_ok=True)
        self.units = []


# --------------------------------------------------------------------------- Ray tasks


def signature_task(args: tuple[int, int, tuple, dict[str, str], dict[str, int]]) -> dict[str, Any]:
    """Pass 1 for one row group: signatures, with the key records written to partitioned files
    (``paths[name]``) instead of returned."""
    _unit, doc_offset, unit_args, paths, partitions = args
    result = signature_unit(unit_args)
    if "error" in result:
        return result
    docs = np.arange(doc_offset, doc_offset + result["n"], dtype=np.int64)
    files = {}
    for name, keys, key_docs in unit_key_records(result, docs, unit_args[3]):
        files[name] = (paths[name], write_key_records(paths[name], keys, key_docs, partitions[name]))
    del result["keys"]  # written to the band file; the driver does not need them
    result["index_files"] = files
    return result


def _band_partition_pairs(ranges: list[tuple[str, int, int]], alive_path: str, n_docs: int) -> np.ndarray:
    """Encoded candidate pairs of one band partition among documents still kept."""
    pairs = np.zeros(0, np.int64)
    grouped = group_records(read_ranges(ranges))
    if grouped is not None:
        alive = np.memmap(alive_path, dtype=np.uint8, mode="r", shape=(n_docs,))
        grouped = keep_groups(grouped[0], grouped[1], alive[grouped[0]])
        if grouped is not None:
            pairs = candidate_pairs(grouped[0], grouped[1], n_docs).astype(np.int64)
    return pairs


def pairs_task(args: tuple[list[tuple[str, int, int]], str, int, str, int]) -> list[int]:
    """Candidate pairs of one band partition among documents still kept, written to
    ``out_path`` partitioned by a hash of the pair (so that each pair, whichever bands it
    shares, is verified by one task only); returns the partition offsets."""
    ranges, alive_path, n_docs, out_path, partitions = args
    pairs = _band_partition_pairs(ranges, alive_path, n_docs)
    return write_partitioned(out_path, pairs, fmix64(pairs.view(np.uint64)), partitions)


def exact_pairs_task(args: tuple[list[tuple[str, int, int]], str, int, str, int]) -> dict[str, Any]:
    """:func:`pairs_task` for ``verify = "exact"``: also returns the documents of the pairs
    (at most the partition's records), which the driver marks for the shingle pass."""
    ranges, alive_path, n_docs, out_path, partitions = args
    pairs = _band_partition_pairs(ranges, alive_path, n_docs)
    bounds = write_partitioned(out_path, pairs, fmix64(pairs.view(np.uint64)), partitions)
    return {"bounds": bounds, "docs": np.unique(np.concatenate((pairs // n_docs, pairs % n_docs)))}


def verify_task(args: tuple[list[tuple[str, int, int]], str, int, int, float]) -> dict[str, Any]:
    """Verified edges among the candidate pairs of one pair partition, as a spanning forest."""
    ranges, sig_path, n_docs, num_perm, accept = args
    pairs = np.unique(read_ranges(ranges, np.int64))
    uf = UnionFind()
    verified = 0
    if len(pairs):
        sig = np.memmap(sig_path, dtype="<u4", mode="r", shape=(n_docs, num_perm))
        for a, b in verify_pairs(pairs, n_docs, sig, accept):
            verified += len(a)
            uf.union_many(a, b)
    members, roots = uf.forest()
    return {"candidates": len(pairs), "verified": verified, "members": members, "roots": roots}


def exact_verify_task(args: tuple[list[tuple[str, int, int]], str, str, int, int, float, int]) -> dict[str, Any]:
    """Exact verification of the candidate pairs of one pair partition
    (:func:`curate.stages.dedup.exact.verify_partition`): the shingle sets of each batch are read from
    the driver's shingle store in the shared work directory, at most ``set_budget`` bytes at
    once; returns a spanning forest of the accepted pairs and the counters."""
    ranges, shingle_dir, sig_path, n_docs, num_perm, accept, set_budget = args
    pairs = np.unique(read_ranges(ranges, np.int64))
    uf = UnionFind()
    stats = new_pair_stats()
    if len(pairs):
        sig = np.memmap(sig_path, dtype="<u4", mode="r", shape=(n_docs, num_perm))
        sets = ShingleReader(shingle_dir, n_docs)
        try:
            verify_partition(pairs, n_docs, sets, sig, accept, set_budget, uf, stats)
        finally:
            sets.close()
    members, roots = uf.forest()
    return {"stats": stats, "members": members, "roots": roots}


def ordered_map(ray: Any, fn: Callable[[Any], Any], items: Iterable[Any], in_flight: int) -> Iterator[Any]:
    """``fn(item)`` as Ray tasks, at most ``in_flight`` at once, results yielded in item order
    (what keeps the outcome independent of scheduling). Pending tasks are cancelled when the
    consumer stops early; a task that fails (after Ray's retries) is a one-line CurateError."""
    remote_fn = ray.remote(num_cpus=1, max_retries=2)(fn)
    pending: deque = deque()

    def get(ref: Any) -> Any:
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[-1]
            # A missing or unreadable work file usually means a node does not see the output
            # directory; other failures are reported as they are.
            hint = (
                " (the output directory must be storage every node of the cluster sees)"
                if isinstance(cause, OSError)
                else ""
            )
            raise CurateError(
                f"dedup: a Ray task ({fn.__name__}) failed: {type(cause).__name__}: {first_line}{hint}"
            ) from None

    try:
        for item in items:
            pending.append(remote_fn.remote(item))
            if len(pending) >= in_flight:
                yield get(pending.popleft())
        while pending:
            yield get(pending.popleft())
    finally:
        for ref in pending:
            ray.cancel(ref)


# --------------------------------------------------------------------------- the run


class RayRun(_Run):
    """A dedup run whose signature pass and near-duplicate edges are Ray tasks."""

    def __init__(self, inputs, output_dir, config, workers, memory_bytes, progress, ray: Any):
        super().__init__(inputs, output_dir, config, workers, memory_bytes, progress)
        self.ray = ray
        self.workers = max(1, int(ray.cluster_resources().get("CPU", workers)))
        self.in_flight = 2 * self.workers

    def _make_indexes(self, records: dict[str, int]) -> dict[str, Any]:
        directory = self.work / "index"
        directory.mkdir(parents=True, exist_ok=True)
        indexes = {}
        for name, count in records.items():
            # The driver decides URL and exact groups one partition at a time, and a near task
            # holds one band partition: each may use the whole budget.
            partitions = plan_partitions(count, self.memory_bytes)
            if name == "band":
                partitions = max(partitions, MIN_BAND_PARTITIONS)
            indexes[name] = PartitionedKeys(directory, name, partitions)
        return indexes

    @contextmanager
    def _unit_results(self, units: list[tuple[int, int, tuple]]) -> Iterator[Iterator[dict[str, Any]]]:
        partitions = {name: index.partitions for name, index in self.indexes.items()}
        items = (
            (k, offset, unit_args, {name: index.unit_path(k) for name, index in self.indexes.items()}, partitions)
            for k, (_, offset, unit_args) in enumerate(units)
        )
        results = ordered_map(self.ray, signature_task, items, self.in_flight)
        try:
            yield results
        finally:
            results.close()

    def _index_keys(self, docs: np.ndarray, result: dict[str, Any]) -> None:
        for name, (path, bounds) in result.get("index_files", {}).items():
            self.indexes[name].add_unit(path, bounds)

    @contextmanager
    def _task_results(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Iterator[Any]]:
        """``fn`` over ``items`` as Ray tasks, results in item order: the hook through which
        :meth:`curate.stages.dedup.exact.ExactVerifier.hash_documents` runs the shingle pass here."""
        results = ordered_map(self.ray, fn, items, self.in_flight)
        try:
            yield results
        finally:
            results.close()

    def _pair_round(self, task: Callable[[Any], Any], progress: Progress, then: int) -> Iterator[tuple[str, Any]]:
        """Round 1: ``task`` (:func:`pairs_task` or :func:`exact_pairs_task`) over the band
        partitions, yielding each pair file with the task's result (``then``: the steps
        ``progress`` counts after this round)."""
        index = self.indexes["band"]
        n, partitions = self.n_docs, index.partitions
        alive_path = str(self.work / "alive.bin")
        np.asarray(self.alive, dtype=np.uint8).tofile(alive_path)  # what url/exact left
        pair_dir = self.work / "pairs"
        pair_dir.mkdir(parents=True, exist_ok=True)
        band_items = [
            (index.ranges(p), alive_path, n, str(pair_dir / f"pairs-b{p:04d}.bin"), partitions)
            for p in range(partitions)
            if index.ranges(p)
        ]
        progress.total = len(band_items) + then
        try:
            for item, result in zip(band_items, ordered_map(self.ray, task, band_items, self.in_flight)):
                yield item[3], result
                progress.advance()
        finally:
            Path(alive_path).unlink(missing_ok=True)

    def _has_band_records(self) -> bool:
        index = self.indexes.get("band")
        return index is not None and index.records > 0 and self.n_docs > 0

    def _near_edges(self, uf: UnionFind) -> None:
        """Two rounds of tasks: candidate pairs per band partition, then verification per
        pair partition; the driver only joins the returned forests."""
        if not self._has_band_records():
            return
        n, partitions = self.n_docs, self.indexes["band"].partitions
        progress = Progress(
            "dedup: near pairs", total=partitions, unit="partitions", enabled=None if self.show_progress else False
        )
        try:
            pair_files = list(self._pair_round(pairs_task, progress, then=partitions))
            sig_path = str(self.work / "store" / "sig.bin")
            verify_items = [
                (partition_ranges(pair_files, q), sig_path, n, self.config.num_perm, self.config.accept)
                for q in range(partitions)
            ]
            for result in ordered_map(self.ray, verify_task, verify_items, self.in_flight):
                self.counters["candidate_pairs"] += result["candidates"]
                self.counters["verified_pairs"] += result["verified"]
                uf.union_many(result["members"], result["roots"])
                progress.advance()
        finally:
            progress.close()

    def _near(self) -> None:
        """``verify = "exact"`` in three rounds of tasks: candidate pairs per band partition
        (their documents marked on the driver), the shingle pass over the row groups holding
        marked documents (sets appended on the driver to the store in the work directory), and
        exact verification per pair partition; then the star split on the driver, as locally.
        With estimated verification, :meth:`_near_edges` through the local ``_near``."""
        verifier = self.exact_verifier
        if verifier is None:
            super()._near()
            return
        uf = UnionFind()
        partitions = self.indexes["band"].partitions if self._has_band_records() else 0
        enabled = None if self.show_progress else False
        pair_files = []
        if partitions:
            progress = Progress("dedup: near pairs", total=partitions, unit="partitions", enabled=enabled)
            try:
                for path, result in self._pair_round(exact_pairs_task, progress, then=0):
                    pair_files.append((path, result["bounds"]))
                    verifier.mark(result["docs"])
            finally:
                progress.close()
        if "band" in self.indexes:
            self.indexes["band"].close()  # the band files are no longer needed
        verifier.hash_documents()  # also marks URL removals and their targets
        sig_path = str(self.work / "store" / "sig.bin")
        shingle_dir = str(verifier.store.directory)
        verify_items = [
            (
                partition_ranges(pair_files, q),
                shingle_dir,
                sig_path,
                self.n_docs,
                self.config.num_perm,
                self.config.accept,
                verifier.budget // 2,
            )
            for q in range(partitions)
        ]
        progress = Progress("dedup: exact verification (pairs)", total=partitions, unit="partitions", enabled=enabled)
        try:
            for result in ordered_map(self.ray, exact_verify_task, verify_items, self.in_flight):
                verifier.add_stats(result["stats"])
                uf.union_many(result["members"], result["roots"])
                progress.advance()
        finally:
            progress.close()
        verifier.stats["pair_partitions"] = partitions
        self.counters["candidate_pairs"] += verifier.stats["candidates"]
        self.counters["verified_pairs"] += verifier.stats["accepted"]
        self._stars(uf, verifier)
