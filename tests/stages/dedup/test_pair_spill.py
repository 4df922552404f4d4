"""PairSpill (curate/stages/dedup/exact_store.py): candidate pairs appended in any order come
back distinct and sorted, in partitions within the budget, and never through more files at once
than a process may open, however small the budget."""

from __future__ import annotations

import numpy as np

from curate.stages.dedup.exact_store import MAX_PAIR_PARTITIONS, PairSpill


def _spill(tmp_path, chunks, memory_bytes):
    spill = PairSpill(tmp_path)
    for chunk in chunks:
        spill.add(chunk)
    parts = list(spill.sorted_partitions(memory_bytes))
    return spill, parts


def test_pairs_come_back_distinct_sorted_and_complete(tmp_path):
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 50_000, size=int(n)) for n in rng.integers(0, 3_000, size=20)]
    expected = np.unique(np.concatenate(chunks))
    for name, budget in (("big", 1 << 30), ("small", 40_000)):
        spill, parts = _spill(tmp_path / name, chunks, budget)
        got = np.concatenate(parts)
        assert np.array_equal(got, expected), name  # distinct, sorted, nothing lost
        assert all(len(p) and np.all(np.diff(p) > 0) for p in parts)
        assert (spill.partitions == 1) == (name == "big")
        if name == "small":
            assert spill.partitions > 4 and max(len(p) for p in parts) * 8 * 3 <= budget * 2
        assert not list((tmp_path / name).glob("pairs-*.bin"))  # partition files removed


def test_a_tiny_budget_gives_bigger_partitions_not_more_files(tmp_path):
    pairs = np.arange(200_000, dtype=np.int64)[::-1].copy()
    spill, parts = _spill(tmp_path, [pairs, pairs[:1000]], 64)
    assert spill.partitions <= MAX_PAIR_PARTITIONS
    assert np.array_equal(np.concatenate(parts), np.arange(200_000))
