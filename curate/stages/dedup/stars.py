"""The representative rule and the star split of ``curate dedup``'s near-duplicate clusters,
shared by the driver (:mod:`curate.stages.dedup.decide`, the local engine) and the Ray tasks
that split the clusters on the cluster (:mod:`curate.stages.dedup.ray_tasks`).

:class:`Ranker` orders a group best first (earliest date, or latest for URL groups; then
higher quality; then smaller id; then input order). :func:`star_split` splits one cluster into
stars around its best-ranked documents (see :mod:`curate.stages.dedup.run`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from curate.stages.dedup.index import DocStore
from curate.stages.dedup.signatures import NO_DATE


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


def star_split(
    component: np.ndarray,
    ranker: Ranker,
    similarities: Callable[[int, np.ndarray], np.ndarray],
    accept: float,
) -> Iterator[tuple[np.ndarray, int, np.ndarray]]:
    """The stars of one cluster: ``(members, centre, their similarities)`` of each star with
    members. The best-ranked document is a centre and takes every member whose similarity
    with it passes ``accept``; the best-ranked of the rest starts the next star."""
    remaining = ranker.order(component)
    while len(remaining) > 1:
        center, rest = int(remaining[0]), remaining[1:]
        sims = similarities(center, rest)
        take = sims >= accept
        if take.any():
            yield rest[take], center, sims[take]
        remaining = rest[~take]


def estimated_similarities(sig: np.ndarray) -> Callable[[int, np.ndarray], np.ndarray]:
    """Estimated Jaccard (agreeing signature values) of a centre with other documents."""
    return lambda center, rest: (sig[rest] == sig[center]).mean(axis=1)
