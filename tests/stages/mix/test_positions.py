"""The mix driver's per-position arrays in files (:mod:`curate.stages.mix.positions`), walked a
chunk at a time: the same sample, the same sums, as the whole-array computation they replace,
and nothing of them left in memory or on disk."""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.core.accounting import Stats
from curate.core.document import SCHEMA
from curate.runtime.executor import Executor
from curate.runtime.stage import StageContext
from curate.stages import mix
from curate.stages.mix import MixConfig
from curate.stages.mix import positions as mix_positions
from curate.stages.mix.config import SourceSpec
from curate.stages.mix.count import Part, SourceCount, combine_counts
from curate.stages.mix.plan import _selected, plan_mix, select_rows
from curate.stages.mix.positions import Positions


def _reference(n_tokens: np.ndarray, target: int, seed: int) -> tuple[int, np.ndarray, int, int]:
    """The whole-array sample: a permutation, its cumulative tokens, the first to reach."""
    total = int(n_tokens.sum())
    full, rest = divmod(target, total)
    partial = np.zeros(len(n_tokens), bool)
    if not rest:
        return full, partial, -1, 0
    order = np.random.default_rng(seed).permutation(len(n_tokens))
    reached = np.cumsum(n_tokens[order])
    k = int(np.searchsorted(reached, rest, side="left"))
    partial[order[: k + 1]] = True
    return full, partial, int(order[k]), int(reached[k] - rest)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(mix_positions, "CHUNK", 7)  # many chunks, one ending mid-sample


@pytest.mark.parametrize("target", [1, 555, 4_000, 9_999, 10_000, 25_431])
def test_sample_from_files_is_the_whole_array_sample(tmp_path, small_chunks, target):
    rng = np.random.default_rng(1)
    n_tokens = rng.integers(0, 200, size=100).astype(np.int32)
    n_tokens[-1] += 10_000 - int(n_tokens.sum())  # 10,000 tokens in all
    positions = Positions(str(tmp_path))
    full, partial, last, over = select_rows(n_tokens, target, np.random.default_rng(9), positions)
    ref = _reference(n_tokens, target, 9)
    assert (full, last, over) == ref[0:1] + ref[2:]
    np.testing.assert_array_equal(np.asarray(partial), ref[1])
    assert isinstance(partial, np.memmap) and any(positions.directory.iterdir())
    positions.close()
    assert not positions.directory.exists()


def test_selected_sums_match_whole_arrays_with_split_documents(small_chunks):
    rng = np.random.default_rng(4)
    docs = 50
    split_docs = np.array([0, 6, 7, 31, 49])  # documents cut into several positions
    split_chunks = np.array([3, 2, 9, 4, 2])
    per_doc = np.ones(docs, np.int64)
    per_doc[split_docs] = split_chunks
    n_tokens = rng.integers(1, 50, size=int(per_doc.sum())).astype(np.int32)
    spec = SourceSpec("s", ["x"], 1.0)
    c = SourceCount(
        spec, n_tokens, Stats(), [], 0, 0, 0, {}, docs=docs, split_docs=split_docs, split_chunks=split_chunks
    )
    doc_of = np.repeat(np.arange(docs), per_doc)
    for full in (0, 2):
        partial = rng.random(len(n_tokens)) < 0.3
        reps = partial.astype(np.int64) + full
        taken = reps > 0
        expected = (int((reps * n_tokens).sum()), int(reps.sum()), len(np.unique(doc_of[taken])), int(taken.sum()))
        assert _selected(c, full, partial) == expected


def test_counts_joined_in_a_file_must_match_the_parts(tmp_path):
    spec = SourceSpec("s", ["x"], 1.0)
    parts = [
        SourceCount(spec, np.zeros(0, np.int32), Stats(), [], 0, 0, 0, {}, docs=n, parts=[Part([], n, n)])
        for n in (3, 0, 5)
    ]
    positions = Positions(str(tmp_path))
    writer = positions.writer("n_tokens", np.int32)
    writer.append(np.arange(3))
    writer.append(np.arange(5))
    c = combine_counts(spec, parts, writer.finish())
    assert isinstance(c.n_tokens, np.memmap) and c.positions == 8 and c.tokens == 3 + 10
    assert [p.pos_start for p in c.parts] == [0, 3, 3]
    with pytest.raises(ValueError, match="7 token counts for 8 positions"):
        combine_counts(spec, parts, np.zeros(7, np.int32))
    positions.close()


def test_plan_mix_same_with_files_or_memory(tmp_path, small_chunks):
    rng = np.random.default_rng(2)
    specs = [SourceSpec("a", ["x"], 0.7), SourceSpec("b", ["y"], 0.3)]
    counted = [
        SourceCount(spec, rng.integers(1, 90, size=n).astype(np.int32), Stats(), [], 0, 0, 0, {}, docs=n)
        for spec, n in zip(specs, (60, 15))
    ]
    cfg = MixConfig(sources=specs, tokens=5_000, seed=3)
    in_memory, _ = plan_mix(cfg, counted)
    positions = Positions(str(tmp_path))
    on_disk, _ = plan_mix(cfg, counted, positions)
    for a, b in zip(in_memory, on_disk):
        np.testing.assert_array_equal(a.partial, np.asarray(b.partial))
        assert (a.full_epochs, a.tokens_planned, a.rows_planned, a.docs_selected) == (
            b.full_epochs,
            b.tokens_planned,
            b.rows_planned,
            b.docs_selected,
        )
    assert on_disk[1].full_epochs >= 1  # the small source is repeated, the other sampled
    positions.close()


def _parquet_source(folder, n_docs: int) -> None:
    folder.mkdir()
    per_file = 5_000
    for f in range(0, n_docs, per_file):
        idx = range(f, min(n_docs, f + per_file))
        cols = {"id": [f"d{i}" for i in idx], "text": [f"document {i} " + "word " * (i % 40) for i in idx]}
        table = pa.table({k: cols.get(k, pa.nulls(len(idx), fld.type)) for k, fld in zip(SCHEMA.names, SCHEMA)})
        pq.write_table(table.cast(SCHEMA), folder / f"part-{f // per_file:03d}.parquet", row_group_size=1000)


def test_planning_memory_does_not_grow_with_the_source(tmp_path, monkeypatch):
    """Counting and planning 10x the documents (a sample of about half of each) takes no more
    traced memory on the driver: the token counts, the sampling order and the mask are files,
    walked a chunk at a time. Holding them in memory, as before, grew the peak by 1.7 MB from
    5k to 50k documents."""
    monkeypatch.setattr(sys.modules["curate.stages.mix.plan"], "PART_BYTES", 64 * 1024)  # many small parts
    monkeypatch.setattr(mix_positions, "CHUNK", 2048)
    peaks = {}
    for n in (500, 5_000, 50_000):  # the first warms up imports and caches
        folder = tmp_path / f"s{n}"
        _parquet_source(folder, n)
        cfg = MixConfig(sources=[SourceSpec("s", [str(folder)], 1.0)], tokens=n * 60, seed=1)
        ctx = StageContext([], str(tmp_path / f"out{n}"), Executor("local", 1), progress=False)
        tracemalloc.start()
        try:
            report = mix.plan(cfg, ctx)
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        source = report["sources"][0]
        assert source["docs_available"] == n and 0.2 * n < source["docs"] < 0.9 * n  # a partial epoch
    assert peaks[50_000] - peaks[5_000] < 512 * 1024, peaks
