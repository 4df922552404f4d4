"""The connected components that ``dedup --engine ray`` computes as tasks (large-star and
small-star rounds over partitioned edge files, :mod:`curate.stages.dedup.ray`), run here in
this process: the same components as the union-find of the local engine."""

from __future__ import annotations

import random
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from curate.stages.dedup.index import UnionFind
from curate.stages.dedup.partitioned import partition_ranges, read_ranges
from curate.stages.dedup.ray import RayEngine
from curate.stages.dedup.ray_tasks import EDGE, labels_task, write_edges


class InProcess:
    """An executor's ``map``, in this process."""

    def map(self, fn, items):
        return (fn(item) for item in items)


def _labels(tmp_path, left: np.ndarray, right: np.ndarray, partitions: int) -> tuple[dict[int, int], int]:
    state = SimpleNamespace(work=tmp_path, counters=Counter())
    (tmp_path / "components").mkdir(exist_ok=True)
    path = str(tmp_path / "components" / "v.bin")
    edges = [(path, write_edges(path, np.concatenate((left, right)), np.concatenate((right, left)), partitions))]
    engine = RayEngine(InProcess())
    stars = engine._components(state, edges, partitions)
    labels = {}
    for q in range(partitions):
        out = str(tmp_path / f"labels-{q}.bin")
        bounds = labels_task((partition_ranges(stars, q), out, partitions))
        rec = read_ranges([(out, 0, bounds[-1])], EDGE)
        for label, doc in zip(rec["src"].tolist(), rec["dst"].tolist()):
            assert doc not in labels
            labels[doc] = label
    return labels, state.counters["component_rounds"]


@pytest.mark.parametrize("partitions", [1, 4, 16])
@pytest.mark.parametrize("seed", range(4))
def test_components_match_union_find(tmp_path, seed, partitions):
    rng = random.Random(seed)
    n = 400
    m = rng.choice([50, 200, 600])
    kind = seed % 2
    if kind:  # long paths in shuffled order: the worst case for label propagation
        perm = list(range(n))
        rng.shuffle(perm)
        pairs = [(perm[i], perm[i + 1]) for i in range(n - 1) if rng.random() < 0.97]
    else:
        pairs = [(rng.randrange(n), rng.randrange(n)) for _ in range(m)]
    pairs = [(a, b) for a, b in pairs if a != b]
    left = np.array([a for a, _ in pairs], dtype=np.int64)
    right = np.array([b for _, b in pairs], dtype=np.int64)
    labels, rounds = _labels(tmp_path, left, right, partitions)
    uf = UnionFind()
    uf.union_many(left, right)
    expected = {int(doc): int(comp[0]) for comp in uf.components() for doc in comp}
    assert labels == expected  # every document in an edge, labelled by its component's smallest
    assert rounds < 40


def test_no_edges(tmp_path):
    labels, _ = _labels(tmp_path, np.zeros(0, np.int64), np.zeros(0, np.int64), 4)
    assert labels == {}
