"""Where the parallel parts of a ``curate dedup`` run execute: :class:`Engine` is the few
operations that differ between the engines, :class:`LocalEngine` runs them in this process and
in the :class:`~curate.runtime.executor.Executor`'s worker processes;
:class:`curate.stages.dedup.ray.RayEngine` runs them as Ray tasks. Everything else (the driver's
side of the signature pass, the URL and exact decisions, the star split, the write pass) is the
same code whatever the engine, and so are the outputs.

An engine is made for one run. The operations:

* ``make_indexes`` and ``add_keys``: the key indexes and how a unit's ``(key, doc)`` records get
  into them (locally a :class:`~curate.stages.dedup.index.KeyIndex` per kind of key, fed by the
  driver; on Ray the tasks write them to partitioned files);
* ``signature_results``: the signature pass's results, in unit order;
* ``map``: any function over units, results in order (the exact verification's shingle pass);
* ``near_stars``: with ``verify = "estimate"``, the stars of the clusters of verified candidate
  pairs among the documents still kept (locally a union-find over the pairs and the star split
  in this process; on Ray connected components and star split as tasks, see
  :mod:`curate.stages.dedup.ray`);
* ``exact_stars``: the same with ``verify = "exact"``: the candidate pairs handed to the
  :class:`~curate.stages.dedup.exact.ExactVerifier`, its shingle pass, then the clusters of the
  pairs whose exact Jaccard passes the threshold, split into stars on exact Jaccard.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from curate.core.text import char_classes
from curate.runtime.executor import Executor
from curate.stages.dedup.config import DedupConfig
from curate.stages.dedup.exact import ExactVerifier
from curate.stages.dedup.exact_store import PairSpill
from curate.stages.dedup.index import KeyGroups, KeyIndex, UnionFind, candidate_pairs, verify_pairs
from curate.stages.dedup.signatures import Unit, signature_unit, unit_key_records
from curate.stages.dedup.stars import Ranker, estimated_similarities, star_split
from curate.stages.dedup.state import DedupState


class Engine(Protocol):
    """The operations of a dedup run that depend on where it runs (see the module docstring)."""

    def make_indexes(self, directory: Path, records: dict[str, int], memory_bytes: int) -> dict[str, KeyGroups]:
        """One key index per kind of key (``records``: how many each will get)."""
        ...

    def signature_results(self, units: list[Unit]) -> Iterator[dict[str, Any]]:
        """:func:`~curate.stages.dedup.signatures.signature_unit` of every unit, in unit order."""
        ...

    def add_keys(self, docs: np.ndarray, result: dict[str, Any], config: DedupConfig) -> None:
        """Add a unit's ``(key, doc)`` records (``docs``: its documents) to the key indexes."""
        ...

    def map(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
        """``fn(item)`` for every item, in item order."""
        ...

    def near_stars(self, state: DedupState) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(removed, centres)``: the documents the star split of the clusters of verified
        candidate pairs among documents still kept removes, each with its star's centre."""
        ...

    def exact_stars(
        self, state: DedupState, verifier: ExactVerifier
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(removed, centres, similarities)``: :meth:`near_stars` with ``verify = "exact"``,
        the pairs and the star split measured on exact Jaccard through ``verifier``."""
        ...


class LocalEngine:
    """Signatures and shingle sets in the executor's worker processes; key indexes, candidate
    pairs and their verification in this process."""

    def __init__(self, executor: Executor):
        self.executor = executor
        self.indexes: dict[str, KeyIndex] = {}

    def make_indexes(self, directory: Path, records: dict[str, int], memory_bytes: int) -> dict[str, KeyGroups]:
        # Each index gets a share of the budget proportional to its records.
        total = max(sum(records.values()), 1)
        self.indexes = {
            name: KeyIndex(directory, name, max(1, memory_bytes * count // total), count)
            for name, count in records.items()
        }
        return dict(self.indexes)

    def signature_results(self, units: list[Unit]) -> Iterator[dict[str, Any]]:
        return self.map(signature_unit, [u.args for u in units])

    def add_keys(self, docs: np.ndarray, result: dict[str, Any], config: DedupConfig) -> None:
        for name, keys, key_docs in unit_key_records(result, docs, config):
            self.indexes[name].add(keys, key_docs)

    def map(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
        char_classes()  # build the character table once, before the workers fork
        return self.executor.map(fn, items)

    def near_stars(self, state: DedupState) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        uf = UnionFind()
        self.near_edges(state, uf)
        ranker, sig = Ranker(state.store), state.store["sig"]
        for component in uf.components():
            for members, center, _ in star_split(component, ranker, estimated_similarities(sig), state.config.accept):
                yield members, np.full(len(members), center, dtype=np.int64)

    def near_edges(self, state: DedupState, uf: UnionFind) -> None:
        sig = state.store["sig"]
        n = max(state.n_docs, 1)
        for pairs in distinct_candidates(state, n):
            state.counters["candidate_pairs"] += len(pairs)
            for a, b in verify_pairs(pairs, n, sig, state.config.accept):
                state.counters["verified_pairs"] += len(a)
                uf.union_many(a, b)

    def exact_stars(
        self, state: DedupState, verifier: ExactVerifier
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        uf = UnionFind()
        self.exact_edges(state, verifier, uf)
        ranker = Ranker(state.store)
        for component in uf.components():
            for members, center, sims in star_split(component, ranker, verifier.similarities, state.config.accept):
                yield members, np.full(len(members), center, dtype=np.int64), sims

    def exact_edges(self, state: DedupState, verifier: ExactVerifier, uf: UnionFind) -> None:
        n = max(state.n_docs, 1)
        for members, gid in state.alive_groups("band"):
            verifier.add_candidates(candidate_pairs(members, gid, n))
        state.indexes["band"].close()  # frees the in-memory index before the shingle pass
        verifier.hash_documents()
        verifier.verify(uf)


def distinct_candidates(state: DedupState, n: int) -> Iterator[np.ndarray]:
    """The distinct candidate pairs among the documents still kept, in chunks (encoded
    ``lo * n + hi``). A band partition's pairs are distinct, but when the band index spilled,
    a pair whose documents share bands in two of its partitions comes from each: those go
    through a :class:`~curate.stages.dedup.exact_store.PairSpill` and come back distinct, a
    budget-sized slice at a time, so the pairs counted and verified are the same whatever the
    memory budget (and the same as the Ray engine's)."""
    groups = state.alive_groups("band")
    if state.indexes["band"].partitions == 1:
        for members, gid in groups:
            yield candidate_pairs(members, gid, n)
        return
    directory = state.work / "near_pairs"
    spill = PairSpill(directory)
    try:
        for members, gid in groups:
            spill.add(candidate_pairs(members, gid, n))
        yield from spill.sorted_partitions(max(1, state.memory_bytes // 4))
    finally:
        spill.close()
        shutil.rmtree(directory, ignore_errors=True)
