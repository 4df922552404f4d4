"""How ``curate mix`` cuts its sorted stream into row groups and shards
(:class:`~curate.stages.mix.writer.ShardPlanner`): from the row sizes alone, the same cuts
however the stream is split into buckets, so shard-writing tasks can run in parallel."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from curate.stages.mix.writer import ShardPlanner


def _reference(sizes: list[int], shard_bytes: int, group_bytes: int) -> list[list[int]]:
    """Row by row: a row group ends on the row that fills the room left (the smaller of the
    row-group size and what the shard still takes); a shard ends once it holds shard_bytes.
    Returns each shard's row-group lengths."""
    shards, groups, filled, pending, rows = [], [], 0, 0, 0
    for size in sizes:
        pending += size
        rows += 1
        if pending >= min(shard_bytes - filled, group_bytes):
            groups.append(rows)
            filled += pending
            pending = rows = 0
            if filled >= shard_bytes:
                shards.append(groups)
                groups, filled = [], 0
    if rows:
        groups.append(rows)
    if groups:
        shards.append(groups)
    return shards


def _plan(sizes: list[int], cuts: list[int], shard_bytes: int, group_bytes: int) -> list[list[int]]:
    planner = ShardPlanner(shard_bytes, group_bytes)
    bounds = [0, *cuts, len(sizes)]
    shards = []
    for b, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        shards += planner.add(f"bucket-{b}", np.array(sizes[lo:hi], dtype=np.int64))
    shards += planner.finish()
    assert [index for index, _ in shards] == list(range(len(shards)))
    out = []
    for _, groups in shards:
        lengths = []
        for segments in groups:
            assert all(hi > lo for _, lo, hi in segments)
            lengths.append(sum(hi - lo for _, lo, hi in segments))
        out.append(lengths)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_cuts_do_not_depend_on_the_buckets(seed):
    rng = random.Random(seed)
    sizes = [rng.randint(200, 5_000) for _ in range(rng.randint(0, 400))]
    shard_bytes = rng.choice([3_000, 50_000, 120_000, 10**9])
    group_bytes = min(shard_bytes, rng.choice([1_000, 20_000, 40_000]))
    expected = _reference(sizes, shard_bytes, group_bytes)
    for _ in range(5):
        cuts = sorted(rng.sample(range(len(sizes) + 1), k=min(len(sizes) + 1, rng.randint(0, 12))))
        assert _plan(sizes, cuts, shard_bytes, group_bytes) == expected
    assert sum(map(sum, expected)) == len(sizes)


def test_segments_point_into_the_right_buckets():
    planner = ShardPlanner(shard_bytes=1_000, row_group_bytes=600)
    done = planner.add("a", np.array([300, 300, 300], dtype=np.int64))  # fills a 600 group, then 300 pending
    assert done == []
    done = planner.add("b", np.array([300, 900], dtype=np.int64))
    # Shard 0: [a0 a1] (600), then [a2 b0] (600 >= room 400): 1,200 bytes, shard full.
    assert done == [(0, [[("a", 0, 2)], [("a", 2, 3), ("b", 0, 1)]])]
    assert planner.finish() == [(1, [[("b", 1, 2)]])]
    # Every shard after the first starts with a whole row group, not a one-row one.
