"""The decision pass of ``curate dedup``: which documents are removed, and which document
represents each of them (the rules are in :mod:`curate.stages.dedup.run`'s docstring).

:class:`~curate.stages.dedup.stars.Ranker` orders a group best first (earliest date, or latest
for URL groups; then higher quality; then smaller id; then input order). :class:`Decisions` runs, after the
signature pass and on its :class:`~curate.stages.dedup.state.DedupState`, the steps that remove
URL and exact duplicates per key group, join verified near-duplicate pairs (on estimated
Jaccard, or on exact Jaccard through :mod:`curate.stages.dedup.exact`; the edges come from the
run's engine, :mod:`curate.stages.dedup.engine`) and split each cluster into stars around its
best-ranked document, point every removed document at the kept one that represents it, and list
the largest clusters for the manifest: its :class:`Removals`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from curate.stages.dedup.engine import Engine
from curate.stages.dedup.exact import ExactVerifier
from curate.stages.dedup.signatures import NO_DATE
from curate.stages.dedup.stars import Ranker
from curate.stages.dedup.state import EXACT, KEPT, KIND_NAMES, NEAR, URL, DedupState

TOP_CLUSTERS = 10
RESOLVE_CHUNK = 1 << 16  # documents the driver resolves (and scans for the clusters) at once
SIMILARITY = "similarity.bin"  # the work file of exact dup_similarity per document (float32)


@dataclass
class Removals:
    """What the decisions removed, for the write pass and the manifest: besides these, every
    removed document has its kind in ``state.kind``, the kept document that represents it in
    ``state.dup_of`` and, with ``verify = "exact"``, its ``dup_similarity`` in the work file
    :data:`SIMILARITY` (the estimated one is the write pass's: agreeing signature values)."""

    top_reps: np.ndarray  # representatives of the largest clusters, largest first
    clusters: list[dict[str, Any]]  # their manifest entries (representative_url: the write pass's)


class Decisions:
    """The decision pass over one run's ``state`` (updated in place), with near-duplicate edges
    from ``engine``. With ``verify = "exact"`` it creates the run's :attr:`verifier`; call
    :meth:`close` whatever happens."""

    def __init__(self, state: DedupState, engine: Engine):
        self.state = state
        self.engine = engine
        self.ranker = Ranker(state.store)
        self.verifier: ExactVerifier | None = None

    def run(self) -> Removals:
        self.decide()
        return self.resolve()

    def decide(self) -> None:
        cfg, state = self.state.config, self.state
        if cfg.url:
            self._keyed_dedup("url", "url", URL, newest=True)
        if cfg.exact:
            self._keyed_dedup("exact", "exact", EXACT, newest=False)
        if cfg.verify == "exact":
            self.verifier = ExactVerifier(state, self.engine.map)
        if cfg.near:
            self._near()
        elif self.verifier is not None:  # URL removals still get an exact similarity
            self.verifier.hash_documents()
        for index in state.indexes.values():
            index.close()

    def close(self) -> None:
        if self.verifier is not None:
            self.verifier.close()

    def _remove(self, docs: np.ndarray, kind: int, keepers: np.ndarray | int) -> None:
        state = self.state
        state.kind[docs] = kind
        state.dup_of[docs] = keepers
        state.alive[docs] = False
        state.counters[f"removed_{KIND_NAMES[kind]}"] += len(docs)

    def _keyed_dedup(self, name: str, column: str, kind: int, newest: bool) -> None:
        """Keep one document per identical key (the index's 64 bits plus the stored other 64)."""
        store = self.state.store
        full = store[column]
        for docs, group in self.state.alive_groups(name):
            low = np.asarray(full[docs, 1])
            date = np.asarray(store["date"][docs])
            if newest:
                date = np.where(date == NO_DATE, NO_DATE, -date)
            quality = np.asarray(store["quality"][docs], dtype=np.float64)
            quality = np.where(np.isnan(quality), -np.inf, quality)
            order = np.lexsort((docs, -quality, date, low, group))
            docs, group, low, date, quality = docs[order], group[order], low[order], date[order], quality[order]
            first = np.ones(len(docs), dtype=bool)
            first[1:] = (group[1:] != group[:-1]) | (low[1:] != low[:-1])
            sub = np.cumsum(first) - 1
            sizes = np.bincount(sub)
            # Sub-groups whose two best share date and quality need the id tie-break.
            second = np.flatnonzero(first) + 1
            has_second = sizes >= 2
            tied = np.zeros(len(sizes), dtype=bool)
            s_idx = second[has_second]
            tied[has_second] = (date[s_idx] == date[s_idx - 1]) & (quality[s_idx] == quality[s_idx - 1])
            keeper = docs[np.flatnonzero(first)]
            for k in np.flatnonzero(tied).tolist():
                keeper[k] = self.ranker.order(docs[sub == k], newest=newest)[0]
            losers = (sizes[sub] >= 2) & (docs != keeper[sub])
            if losers.any():
                self._remove(docs[losers], kind, keeper[sub[losers]])

    def _near(self) -> None:
        verifier = self.verifier
        if verifier is None:
            for docs, centers in self.engine.near_stars(self.state):
                self._remove(docs, NEAR, centers)
            return
        for docs, centers, sims in self.engine.exact_stars(self.state, verifier):
            self._remove(docs, NEAR, centers)
            verifier.record_near(docs, sims)
        self.state.counters["candidate_pairs"] += verifier.stats["candidates"]
        self.state.counters["verified_pairs"] += verifier.stats["accepted"]

    def resolve(self) -> Removals:
        """Point every removed document at a kept one, fill similarities, list the clusters;
        :data:`RESOLVE_CHUNK` documents at a time (memory maps in the work directory hold the
        per-document results: the driver's memory does not grow with the corpus)."""
        state = self.state
        n = state.n_docs
        # Exact similarities come from the verifier; estimated ones the write pass computes.
        similarity = _work_map(state, SIMILARITY, "<f4") if self.verifier is not None else None
        sizes = _work_map(state, "cluster_sizes.bin", "<i4")  # removed documents each one represents
        for lo in range(0, n, RESOLVE_CHUNK):
            removed = lo + np.flatnonzero(np.asarray(state.kind[lo : lo + RESOLVE_CHUNK]) != KEPT)
            if len(removed) == 0:
                continue
            target = np.asarray(state.dup_of[removed])
            direct = target.copy()
            for _ in range(8):  # chains are at most url -> exact -> near
                chained = state.kind[target] != KEPT
                if not chained.any():
                    break
                target[chained] = state.dup_of[target[chained]]
            state.dup_of[removed] = target
            if self.verifier is not None and similarity is not None:
                similarity[removed] = self.verifier.final_similarity(removed, direct, target)
            np.add.at(sizes, target, 1)
        for column in (similarity, state.kind, state.dup_of):
            if isinstance(column, np.memmap):
                column.flush()  # the write tasks read them, on other nodes too
        top_reps, clusters = self._clusters(sizes)
        del sizes
        (state.work / "cluster_sizes.bin").unlink(missing_ok=True)
        return Removals(top_reps, clusters)

    def _clusters(self, sizes: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """The representatives of the largest clusters (``sizes``: removed documents each
        document represents) and their manifest entries, in two chunked scans."""
        state = self.state
        n = state.n_docs
        reps, counts = np.zeros(0, np.int64), np.zeros(0, np.int64)
        for lo in range(0, n, RESOLVE_CHUNK):
            chunk = np.asarray(sizes[lo : lo + RESOLVE_CHUNK], dtype=np.int64)
            hit = np.flatnonzero(chunk)
            reps, counts = np.concatenate((reps, lo + hit)), np.concatenate((counts, chunk[hit]))
            order = np.lexsort((reps, -counts))[:TOP_CLUSTERS]
            reps, counts = reps[order], counts[order]
        kinds: list[Counter] = [Counter() for _ in reps]
        members: list[list[int]] = [[] for _ in reps]
        for lo in range(0, n if len(reps) else 0, RESOLVE_CHUNK):
            removed = lo + np.flatnonzero(np.asarray(state.kind[lo : lo + RESOLVE_CHUNK]) != KEPT)
            targets = np.asarray(state.dup_of[removed])
            for k, rep in enumerate(reps.tolist()):
                mine = removed[targets == rep]
                kinds[k].update(KIND_NAMES[int(c)] for c in np.asarray(state.kind[mine]))
                members[k].extend(mine[: 5 - len(members[k])].tolist())
        out = []
        for k, (rep, count) in enumerate(zip(reps.tolist(), counts.tolist())):
            out.append(
                {
                    "size": count + 1,
                    "representative": state.store.doc_id(rep),
                    "representative_url": None,  # filled by the write pass
                    "removed_by_kind": dict(sorted(kinds[k].items())),
                    "members": state.store.doc_ids(np.array(members[k], dtype=np.int64)),
                }
            )
        return reps, out


def _work_map(state: DedupState, name: str, dtype: str) -> np.ndarray:
    """A zeroed per-document column in a new work file."""
    n = state.n_docs
    return np.memmap(state.work / name, dtype=dtype, mode="w+", shape=(max(n, 1),))[:n]
