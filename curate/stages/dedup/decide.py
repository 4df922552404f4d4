"""The decision pass of ``curate dedup``: which documents are removed, and which document
represents each of them (the rules are in :mod:`curate.stages.dedup.run`'s docstring).

:class:`Ranker` orders a group best first (earliest date, or latest for URL groups; then
higher quality; then smaller id; then input order). :class:`Decisions` is the part of a dedup
run (:class:`curate.stages.dedup.run._Run`, and :class:`curate.stages.dedup.ray.RayRun` through it) that, after
the signature pass, removes URL and exact duplicates per key group, joins verified near-duplicate
pairs (on estimated Jaccard, or on exact Jaccard through :mod:`curate.stages.dedup.exact`) and splits
each cluster into stars around its best-ranked document, points every removed
document at the kept one that represents it, and lists the largest clusters for the manifest.
``_near_edges`` is the hook the Ray engine overrides.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

from curate.stages.dedup.config import DedupConfig
from curate.stages.dedup.exact import ExactVerifier
from curate.stages.dedup.index import DocStore, KeyIndex, UnionFind, candidate_pairs, keep_groups, verify_pairs
from curate.stages.dedup.output import EXACT, KEPT, KIND_NAMES, NEAR, URL
from curate.stages.dedup.signatures import NO_DATE

_VERIFY_CHUNK = 32_768
TOP_CLUSTERS = 10


class Ranker:
    """Picks representatives: earliest date (latest for URL groups), higher quality, smaller id."""

    def __init__(self, store: DocStore):
        self.date = store["date"]
        self.quality = store["quality"]
        self.store = store

    def order(self, docs: np.ndarray, newest: bool = False) -> np.ndarray:
        """``docs`` sorted best first."""
        date = self.date[docs]
        quality = self.quality[docs].astype(np.float64)
        quality = np.where(np.isnan(quality), -np.inf, quality)
        if newest:
            date_key = np.where(date == NO_DATE, np.iinfo(np.int64).max, -date)  # missing dates last
        else:
            date_key = date
        order = np.lexsort((docs, -quality, date_key))
        ranked = docs[order]
        dk, qk = date_key[order], quality[order]
        tied = int(np.count_nonzero((dk == dk[0]) & (qk == qk[0])))
        if tied > 1:  # break the tie on the leading documents by id, then input order
            head = ranked[:tied]
            ids = self.store.doc_ids(head)
            head = head[sorted(range(tied), key=lambda k: (ids[k], int(head[k])))]
            ranked = np.concatenate((head, ranked[tied:]))
        return ranked


class Decisions:
    """The decision pass, mixed into a dedup run. The run provides what the signature pass
    built: the document store, the key indexes, the ranker and the per-document state arrays
    (``alive``, ``kind``, ``dup_of``), which these methods update in place."""

    config: DedupConfig
    n_docs: int
    counters: Counter
    store: DocStore
    indexes: dict[str, KeyIndex]
    ranker: Ranker
    alive: np.ndarray  # bool per document: still kept
    kind: np.ndarray  # u1 per document: KEPT or the kind of duplicate it was removed as
    dup_of: np.ndarray  # i8 per document: the document that removed it (-1 while kept)
    removed_docs: np.ndarray  # set by resolve()
    similarity: np.ndarray  # set by resolve(), aligned with removed_docs
    top_reps: np.ndarray  # set by clusters()

    def _alive_groups(self, name: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(docs, group)`` of the named index restricted to documents still kept."""
        for docs, group in self.indexes[name].groups():
            kept = keep_groups(docs, group, self.alive[docs])
            if kept is not None:
                yield kept

    def _remove(self, docs: np.ndarray, kind: int, keeper: int) -> None:
        self.kind[docs] = kind
        self.dup_of[docs] = keeper
        self.alive[docs] = False
        self.counters[f"removed_{KIND_NAMES[kind]}"] += len(docs)

    def _keyed_dedup(self, name: str, column: str, kind: int, newest: bool) -> None:
        """Keep one document per identical key (the index's 64 bits plus the stored other 64)."""
        full = self.store[column]
        for docs, group in self._alive_groups(name):
            low = np.asarray(full[docs, 1])
            date = np.asarray(self.store["date"][docs])
            if newest:
                date = np.where(date == NO_DATE, NO_DATE, -date)
            quality = np.asarray(self.store["quality"][docs], dtype=np.float64)
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
                self._remove_many(docs[losers], kind, keeper[sub[losers]])

    def _remove_many(self, docs: np.ndarray, kind: int, keepers: np.ndarray) -> None:
        self.kind[docs] = kind
        self.dup_of[docs] = keepers
        self.alive[docs] = False
        self.counters[f"removed_{KIND_NAMES[kind]}"] += len(docs)

    def decide(self) -> None:
        cfg = self.config
        if cfg.url:
            self._keyed_dedup("url", "url", URL, newest=True)
        if cfg.exact:
            self._keyed_dedup("exact", "exact", EXACT, newest=False)
        self.exact_verifier = ExactVerifier(self) if cfg.verify == "exact" else None
        if cfg.near:
            self._near()
        elif self.exact_verifier is not None:  # URL removals still get an exact similarity
            self.exact_verifier.hash_documents()
        for index in self.indexes.values():
            index.close()

    def _near(self) -> None:
        uf = UnionFind()
        verifier = self.exact_verifier
        if verifier is None:
            self._near_edges(uf)
            self._stars(uf)
            return
        n = max(self.n_docs, 1)
        for members, gid in self._alive_groups("band"):
            verifier.add_candidates(candidate_pairs(members, gid, n))
        self.indexes["band"].close()  # frees the in-memory index before the shingle pass
        verifier.hash_documents()
        verifier.verify(uf)
        self.counters["candidate_pairs"] += verifier.stats["candidates"]
        self.counters["verified_pairs"] += verifier.stats["accepted"]
        self._stars(uf, verifier)

    def _near_edges(self, uf: UnionFind) -> None:
        """Join every verified candidate pair of documents still kept in ``uf``."""
        sig = self.store["sig"]
        n = max(self.n_docs, 1)
        for members, gid in self._alive_groups("band"):
            pairs = candidate_pairs(members, gid, n)
            self.counters["candidate_pairs"] += len(pairs)
            for a, b in verify_pairs(pairs, n, sig, self.config.accept, _VERIFY_CHUNK):
                self.counters["verified_pairs"] += len(a)
                uf.union_many(a, b)

    def _stars(self, uf: UnionFind, verifier: ExactVerifier | None = None) -> None:
        """Stars inside each cluster: see the module docstring. Members are measured against
        the centre by estimated Jaccard, or exact Jaccard with a ``verifier``."""
        sig = self.store["sig"]
        accept = self.config.accept
        for component in uf.components():
            remaining = self.ranker.order(component)
            while len(remaining) > 1:
                center, rest = int(remaining[0]), remaining[1:]
                if verifier is None:
                    sims = (sig[rest] == sig[center]).mean(axis=1)
                else:
                    sims = verifier.similarities(center, rest)
                take = sims >= accept
                if take.any():
                    self._remove(rest[take], NEAR, center)
                    if verifier is not None:
                        verifier.record_near(rest[take], sims[take])
                remaining = rest[~take]

    def resolve(self) -> None:
        """Point every removed document at a kept one and fill similarities."""
        removed = np.flatnonzero(self.kind != KEPT)
        self.removed_docs = removed
        if len(removed) == 0:
            self.similarity = np.zeros(0, np.float32)
            return
        target = np.asarray(self.dup_of[removed])
        direct = target.copy()
        for _ in range(8):  # chains are at most url -> exact -> near
            chained = self.kind[target] != KEPT
            if not chained.any():
                break
            target[chained] = self.dup_of[target[chained]]
        self.dup_of[removed] = target
        verifier = getattr(self, "exact_verifier", None)
        if verifier is not None:
            self.similarity = verifier.final_similarity(removed, direct, target)
            return
        sig = self.store["sig"]
        sims = np.empty(len(removed), dtype=np.float32)
        for i in range(0, len(removed), _VERIFY_CHUNK):
            a, b = removed[i : i + _VERIFY_CHUNK], target[i : i + _VERIFY_CHUNK]
            sims[i : i + _VERIFY_CHUNK] = (sig[a] == sig[b]).mean(axis=1)
        self.similarity = sims

    def clusters(self) -> list[dict[str, Any]]:
        if len(self.removed_docs) == 0:
            self.top_reps = np.zeros(0, np.int64)
            return []
        targets = np.asarray(self.dup_of[self.removed_docs])
        reps, counts = np.unique(targets, return_counts=True)
        order = np.lexsort((reps, -counts))[:TOP_CLUSTERS]
        self.top_reps = reps[order]
        out = []
        for rep, count in zip(reps[order].tolist(), counts[order].tolist()):
            members = self.removed_docs[targets == rep]
            kinds = Counter(KIND_NAMES[int(k)] for k in self.kind[members])
            out.append(
                {
                    "size": count + 1,
                    "representative": self.store.doc_id(rep),
                    "representative_url": None,  # filled by the write pass
                    "removed_by_kind": dict(sorted(kinds.items())),
                    "members": self.store.doc_ids(members[:5]),
                }
            )
        return out
