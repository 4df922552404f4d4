"""``curate dedup --engine ray``: the passes of :mod:`curate.stages.dedup.run` spread over a Ray cluster
(:class:`RayEngine`; the tasks and the files they share are in :mod:`curate.stages.dedup.ray_tasks`).

The work directory (``OUTPUT/.curate/work``) must be storage every node sees, as the output
directory itself. What runs where, for N documents, B LSH bands and P partitions:

* **Signatures, on the cluster**: one Ray task per input row group, as the local engine's
  worker processes. A task computes the unit's signatures and hashes
  (:func:`curate.stages.dedup.signatures.signature_unit`), writes its ``(key, doc)`` records of each
  index (band, exact, url) to one file per index in the work directory, ordered by partition
  (the key's top bits), and its per-document columns (about 4 x num_perm bytes a document) and
  ids to one more file; it returns only the partition boundaries, its error counts and the
  paths, so nothing a document's size passes through Ray's object store to the driver. The
  driver copies the unit files, in unit order and a block at a time, into the memory-mapped
  document store (:class:`curate.stages.dedup.index.DocStore`) in the work directory.
* **Near-duplicate edges, on the cluster**, in two rounds of independent tasks. First one task
  per band partition (at least :data:`MIN_BAND_PARTITIONS`, more when a partition would not
  fit ``memory_bytes``): it reads its slice of every unit's band file (N x B / P records),
  groups documents by band key and writes the candidate pairs among documents still kept after
  the URL and exact decisions, partitioned by a hash of the pair. Then one task per pair
  partition: it de-duplicates its pairs (a pair sharing several bands is verified once, and
  counted once, as on the local engine), verifies them on signatures memory-mapped from the
  shared store, and writes the verified edges in both directions, partitioned by a hash of
  their source. No process ever holds more than one partition of the band index, which is B
  times larger than the corpus's document count.
* **Connected components, on the cluster**: the alternating large-star / small-star algorithm
  (Kiveris et al., "Connected components in MapReduce and beyond", 2014) over the edge files,
  one task per partition and step (:func:`~curate.stages.dedup.ray_tasks.large_star_task`,
  :func:`~curate.stages.dedup.ray_tasks.small_star_task`), each writing the next edge set
  partitioned for the next step. A large-star task also returns the count and an
  order-independent digest of its (distinct) input edges; when a round's input equals the
  previous round's, the set is a fixed point: every component is a star around its smallest
  document (O(log^2 n) rounds at worst, a handful in practice). Then
  :func:`~curate.stages.dedup.ray_tasks.labels_task` turns the stars into ``(label, document)``
  records partitioned by label, and :func:`~curate.stages.dedup.ray_tasks.stars_task` splits
  each component of a label partition into stars (:func:`curate.stages.dedup.stars.star_split`,
  the local engine's rule and code) and writes the ``(removed, centre)`` records.
* **Write, on the cluster**: one task per input file
  (:func:`curate.stages.dedup.output.write_input`), as on the local engine.
* **On the driver**: the document store (memory maps: what is touched stays in page cache,
  not process memory), the URL and exact decisions streamed partition by partition (each
  partition sized to ``memory_bytes``), the removals read back from the star files
  :data:`REMOVAL_CHUNK` records at a time into the memory-mapped per-document columns, and the
  chains resolved and the largest clusters counted in chunks over those columns
  (:meth:`curate.stages.dedup.decide.Decisions.resolve`). Where each partition lies in each
  unit's key file is a table in the work directory
  (:class:`~curate.stages.dedup.partitioned.PartitionedKeys`) that the tasks read themselves. Its
  memory grows with the number of partition files of a round (8 bytes each) and, up to
  ``memory_bytes``, with the URL/exact index partition it decides at once; not with the
  number of row groups, edges or documents (the inputs' entries in the manifest aside).

With ``verify = "exact"`` (:mod:`curate.stages.dedup.exact`) the near-duplicate edges take three
rounds instead (:meth:`RayEngine.exact_stars`):

* **Candidate pairs, on the cluster**: the same task per band partition
  (:func:`~curate.stages.dedup.ray_tasks.exact_pairs_task`), which also returns the documents of its pairs; the driver marks
  them (one byte a document, memory-mapped) and deletes the band files.
* **Shingle pass, on the cluster**: one task per row group holding marked documents (or URL
  removals and their targets), :func:`curate.stages.dedup.exact.shingle_unit` as the local worker
  processes run it, through :meth:`RayEngine.map`: each writes its sets to a file in the work
  directory, which the driver copies, in unit order and a block at a time, into the shingle
  store there (a flat file plus per-document offsets); the units are made as they are handed
  out. So the sets are on disk, never all in memory, and never in Ray's object store.
* **Exact verification, on the cluster**: one task per pair partition
  (:func:`~curate.stages.dedup.ray_tasks.exact_verify_task`): it de-duplicates its pairs, reads
  the sets it needs from the shared store in batches of at most half the budget and writes a
  spanning forest of the accepted pairs as edge files; it returns its counters. A pair
  partition holds at most the pairs of a band partition's share (two per band record, 8 bytes
  each against a record's 16), so it fits where a band partition does.
* **Components and stars, on the cluster**, as above, the star split measured on exact Jaccard
  (the task reads the sets from the shared store through a cache of half the budget) and its
  similarities returned with the removals, which the driver records for the final
  similarities.

Groups, candidate pairs, verified edges and components do not depend on the number of
partitions or workers, so the kept and removed documents (and the output shards) are exactly
the local engine's. In exact mode only the manifest's ``pairs.exact.pair_partitions`` and
``batches`` differ: they count this engine's partitions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from curate.core.errors import CurateError
from curate.core.progress import Progress
from curate.runtime.executor import Executor
from curate.stages.dedup.config import DedupConfig
from curate.stages.dedup.exact import ExactVerifier
from curate.stages.dedup.index import KeyGroups, plan_partitions
from curate.stages.dedup.partitioned import PartitionedKeys, partition_ranges, read_ranges
from curate.stages.dedup.ray_tasks import (
    STAR,
    exact_pairs_task,
    exact_verify_task,
    labels_task,
    large_star_task,
    pairs_task,
    signature_task,
    small_star_task,
    stars_task,
    verify_task,
)
from curate.stages.dedup.signature_pass import store_columns
from curate.stages.dedup.signatures import Unit
from curate.stages.dedup.state import DedupState

# Band partitions: enough tasks to keep a cluster busy even when the index fits one node.
# A constant (not derived from the cluster size) so the partitioning, and with it every
# figure in the manifest, does not depend on the number of workers.
MIN_BAND_PARTITIONS = 16
# Large-star/small-star needs O(log^2 n) rounds; far fewer in practice.
MAX_CC_ROUNDS = 200
REMOVAL_CHUNK = 1 << 16  # (removed, centre) records the driver reads back at once


class RayEngine:
    """A dedup run's signature pass, near-duplicate edges and exact verification as Ray tasks
    (through ``executor``, a Ray one, inside its session): see the module docstring."""

    def __init__(self, executor: Executor):
        self.executor = executor
        self.directory = Path()
        self.indexes: dict[str, PartitionedKeys] = {}

    def make_indexes(self, directory: Path, records: dict[str, int], memory_bytes: int) -> dict[str, KeyGroups]:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory  # also holds the units' store files until the driver adds them
        self.indexes = {}
        for name, count in records.items():
            # The driver decides URL and exact groups one partition at a time, and a near task
            # holds one band partition: each may use the whole budget.
            partitions = plan_partitions(count, memory_bytes)
            if name == "band":
                partitions = max(partitions, MIN_BAND_PARTITIONS)
            self.indexes[name] = PartitionedKeys(directory, name, partitions)
        return dict(self.indexes)

    def signature_results(self, units: list[Unit]) -> Iterator[dict[str, Any]]:
        partitions = {name: index.partitions for name, index in self.indexes.items()}
        items = (
            (
                k,
                unit.offset,
                unit.args,
                {name: index.unit_path(k) for name, index in self.indexes.items()},
                partitions,
                str(self.directory / f"store-u{k:06d}.bin"),
            )
            for k, unit in enumerate(units)
        )
        return self.executor.map(signature_task, items)

    def add_keys(self, docs: np.ndarray, result: dict[str, Any], config: DedupConfig) -> None:
        # The task wrote the unit's records to one file per index (none when the unit failed).
        for name, (_, bounds) in result.get("index_files", {}).items():
            self.indexes[name].add_unit(result["unit"], bounds)

    def map(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
        return self.executor.map(fn, items)

    def _has_band_records(self, state: DedupState) -> bool:
        index = self.indexes.get("band")
        return index is not None and index.records > 0 and state.n_docs > 0

    def _pair_round(
        self, state: DedupState, task: Callable[[Any], Any], progress: Progress, then: int
    ) -> Iterator[tuple[str, Any]]:
        """Round 1: ``task`` (:func:`~curate.stages.dedup.ray_tasks.pairs_task` or
        :func:`~curate.stages.dedup.ray_tasks.exact_pairs_task`) over the band partitions,
        yielding each pair file with the task's result (``then``: the steps ``progress`` counts
        after this round)."""
        index = self.indexes["band"]
        n, partitions = state.n_docs, index.partitions
        alive_path = str(state.work / "alive.bin")  # the memory-mapped flags: what url/exact left
        if isinstance(state.alive, np.memmap):
            state.alive.flush()  # for tasks on other nodes, which read it from shared storage
        pair_dir = state.work / "pairs"
        pair_dir.mkdir(parents=True, exist_ok=True)
        used = np.flatnonzero(index.partition_records()).tolist()  # the partitions with records
        out = str(pair_dir / "pairs-b{:04d}.bin")
        keys = index.spec()  # each task finds its partition's slice of every unit's file itself
        band_items = ((keys, p, alive_path, n, out.format(p), partitions) for p in used)
        progress.total = len(used) + then
        with closing(self.executor.map(task, band_items)) as results:
            for p, result in zip(used, results):
                yield out.format(p), result
                progress.advance()

    def near_stars(self, state: DedupState) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Candidate pairs per band partition, verification per pair partition, connected
        components by large-star/small-star rounds and the star split per label partition, all
        as tasks over files in the work directory; the driver only reads the removals back, a
        chunk at a time (see the module docstring)."""
        if not self._has_band_records(state):
            return
        n, partitions = state.n_docs, self.indexes["band"].partitions
        cfg = state.config
        cc = state.work / "components"
        cc.mkdir(parents=True, exist_ok=True)
        progress = state.progress_bar("near pairs", partitions, "partitions")
        try:
            pair_files = list(self._pair_round(state, pairs_task, progress, then=partitions))
            sig_path = str(state.work / "store" / "sig.bin")
            edge_path = str(cc / "v-{:04d}.bin")
            verify_items = (
                (
                    partition_ranges(pair_files, q),
                    sig_path,
                    n,
                    cfg.num_perm,
                    cfg.accept,
                    edge_path.format(q),
                    partitions,
                )
                for q in range(partitions)
            )
            edges = []
            with closing(self.executor.map(verify_task, verify_items)) as results:
                for q, result in enumerate(results):
                    state.counters["candidate_pairs"] += result["candidates"]
                    state.counters["verified_pairs"] += result["verified"]
                    edges.append((edge_path.format(q), result["bounds"]))
                    progress.advance()
        finally:
            progress.close()
        _unlink(pair_files)
        for docs, centers, _ in self._star_removals(state, edges, partitions):
            yield docs, centers

    def _star_removals(
        self,
        state: DedupState,
        edges: list[tuple[str, np.ndarray]],
        partitions: int,
        shingles: tuple[str, int] | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(removed, centres, similarities)`` of the star split of the components of
        ``edges`` (verified edges in both directions, partitioned by source), on exact Jaccard
        with ``shingles`` (the shingle store's folder and a task's set budget)."""
        if not any(bounds[-1] for _, bounds in edges):  # nothing verified: no components
            _unlink(edges)
            return
        stars = self._stars(state, self._components(state, edges, partitions), partitions, shingles)
        for path in stars:
            yield from _removal_chunks(path)

    def _round(
        self, task: Callable[[Any], Any], files: list[tuple[str, np.ndarray]], out: str, partitions: int
    ) -> list[tuple[str, Any]]:
        """``task`` over every partition of ``files``, each writing ``out`` with its partition
        number filled in: ``(path, result)`` of each."""
        items = ((partition_ranges(files, q), out.format(q), partitions) for q in range(partitions))
        with closing(self.executor.map(task, items)) as results:
            return [(out.format(q), result) for q, result in enumerate(results)]

    def _components(
        self, state: DedupState, edges: list[tuple[str, np.ndarray]], partitions: int
    ) -> list[tuple[str, np.ndarray]]:
        """Large-star and small-star rounds over the verified ``edges`` (both directions,
        partitioned by source) until a round's input equals the previous one's: then every
        component is a star around its smallest document. Returns those edges' files."""
        cc = state.work / "components"
        previous = None
        for r in range(MAX_CC_ROUNDS):
            large = self._round(large_star_task, edges, str(cc / f"l{r:03d}-{{:04d}}.bin"), partitions)
            seen = [sum(res["edges"] for _, res in large), 0, 0]
            for _, res in large:
                seen[1] ^= res["digest"][0]
                seen[2] = (seen[2] + res["digest"][1]) % 2**64
            if seen == previous:
                _unlink(large)
                state.counters["component_rounds"] = r
                return edges
            previous = seen
            large_files = [(path, res["bounds"]) for path, res in large]
            small = self._round(small_star_task, large_files, str(cc / f"s{r:03d}-{{:04d}}.bin"), partitions)
            _unlink(edges)
            _unlink(large_files)
            edges = [(path, res["bounds"]) for path, res in small]
        raise CurateError(f"dedup: connected components did not converge in {MAX_CC_ROUNDS} rounds")

    def _stars(
        self,
        state: DedupState,
        edges: list[tuple[str, np.ndarray]],
        partitions: int,
        shingles: tuple[str, int] | None,
    ) -> list[str]:
        """Component labels, then the star split of each label partition: the removal files."""
        cc = state.work / "components"
        labels = self._round(labels_task, edges, str(cc / "labels-{:04d}.bin"), partitions)
        _unlink(edges)
        columns = store_columns(state.config.num_perm)
        store, n, accept = str(state.work / "store"), state.n_docs, state.config.accept
        label_files = [(path, bounds) for path, bounds in labels]
        out = str(cc / "stars-{:04d}.bin")
        items = (
            (partition_ranges(label_files, q), store, columns, n, accept, out.format(q), *(shingles or (None, 0)))
            for q in range(partitions)
        )
        with closing(self.executor.map(stars_task, items)) as results:
            paths = [out.format(q) for q, _ in enumerate(results)]
        _unlink(labels)
        return paths

    def exact_stars(
        self, state: DedupState, verifier: ExactVerifier
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Three rounds of tasks: candidate pairs per band partition (their documents marked on
        the driver), the shingle pass over the row groups holding marked documents (sets
        appended on the driver to the store in the work directory), and exact verification per
        pair partition; then the components and the star split on exact Jaccard as tasks, as
        in :meth:`near_stars`."""
        partitions = self.indexes["band"].partitions if self._has_band_records(state) else 0
        pair_files = []
        if partitions:
            progress = state.progress_bar("near pairs", partitions, "partitions")
            try:
                for path, result in self._pair_round(state, exact_pairs_task, progress, then=0):
                    pair_files.append((path, result["bounds"]))
                    verifier.mark(result["docs"])
            finally:
                progress.close()
        self.indexes["band"].close()  # the band files are no longer needed
        verifier.hash_documents()  # also marks URL removals and their targets
        sig_path = str(state.work / "store" / "sig.bin")
        shingle_dir = str(verifier.work)
        cfg = state.config
        cc = state.work / "components"
        cc.mkdir(parents=True, exist_ok=True)
        edge_path = str(cc / "v-{:04d}.bin")
        verify_items = (
            (
                partition_ranges(pair_files, q),
                shingle_dir,
                sig_path,
                state.n_docs,
                cfg.num_perm,
                cfg.accept,
                verifier.budget // 2,
                edge_path.format(q),
                partitions,
            )
            for q in range(partitions)
        )
        edges = []
        progress = state.progress_bar("exact verification (pairs)", partitions, "partitions")
        try:
            with closing(self.executor.map(exact_verify_task, verify_items)) as results:
                for q, result in enumerate(results):
                    verifier.add_stats(result["stats"])
                    edges.append((edge_path.format(q), result["bounds"]))
                    progress.advance()
        finally:
            progress.close()
        _unlink(pair_files)
        verifier.stats["pair_partitions"] = partitions
        if partitions:
            yield from self._star_removals(state, edges, partitions, (shingle_dir, verifier.budget // 2))


def _unlink(files: list[tuple[str, Any]]) -> None:
    for path, _ in files:
        Path(path).unlink(missing_ok=True)


def _removal_chunks(path: str) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(removed, centres, similarities)`` of a :func:`~curate.stages.dedup.ray_tasks.stars_task` file, at
    most :data:`REMOVAL_CHUNK` records at a time (so the driver holds a bounded slice), then
    deletes it."""
    chunk = REMOVAL_CHUNK
    total = Path(path).stat().st_size // STAR.itemsize
    for lo in range(0, total, chunk):
        records = read_ranges([(path, lo, min(total, lo + chunk))], STAR)
        yield records["doc"].copy(), records["center"].copy(), records["sim"].copy()
    Path(path).unlink(missing_ok=True)
