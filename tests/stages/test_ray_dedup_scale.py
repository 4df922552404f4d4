"""``dedup --engine ray`` without a driver bottleneck: the connected components of the verified
pairs, the star split and the write are Ray tasks over files in the work directory, so the
driver's memory stays flat while the corpus grows 10x, and the output is the local engine's,
byte for byte."""

from __future__ import annotations

import glob
import os
import resource
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.core.document import SCHEMA
from curate.core.files import sha256_file
from curate.runtime.executor import Executor
from curate.runtime.stage import StageContext
from curate.stages import dedup as dedup_stage
from curate.stages.dedup import DedupConfig
from curate.stages.dedup import decide as dedup_decide
from curate.stages.dedup import ray as dedup_ray

ray = pytest.importorskip("ray")

DOCS_PER_FILE = 1000
MEMORY = 256 * 1024  # the per-task budget: both sizes need several partitions of every index
# The driver's traced peak (tracemalloc: Python objects and numpy arrays; memory maps are page
# cache) may grow by at most this much from 2k to 20k documents. Holding the corpus's ids (a list
# of 20k strings: ~1.3 MB) or its verified edges and removals on the driver exceeds it: with the
# union-find and the single write pass on the driver, the growth was 8.2 MB (1.5 -> 9.8 MB).
# What remains (~0.3 MB) is bookkeeping per input row group and per partition (the partitions
# grow with the corpus over a fixed budget: 16 -> 64 band partitions here).
DRIVER_GROWTH_BOUND = 1024 * 1024


@pytest.fixture(scope="module")
def ray_local():
    from curate.runtime.ray import ray_session

    with ray_session(num_cpus=2) as r:
        yield r


def _corpus(directory, n_docs: int, seed: int = 5) -> list[str]:
    """``n_docs`` short documents, about 40% of them planted duplicates of an earlier one: a
    light edit (one word of 100 changed, later date) or an exact copy, in files of
    :data:`DOCS_PER_FILE` documents and small row groups."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i:x}{'abcdefgh'[i % 8]}" for i in range(20000)])
    words = rng.integers(0, len(vocab), size=(n_docs, 100))
    source = np.full(n_docs, -1)
    for i in range(1, n_docs):
        if rng.random() < 0.4:
            j = int(rng.integers(max(0, i - 500), i))
            source[i] = j
            words[i] = words[j]
            if rng.random() < 0.8:
                words[i, rng.integers(0, 100)] = rng.integers(0, len(vocab))
    paths = []
    for f in range(0, n_docs, DOCS_PER_FILE):
        idx = range(f, min(n_docs, f + DOCS_PER_FILE))
        table = pa.table(
            {
                "id": [f"d{i:06d}" for i in idx],
                "text": [" ".join(vocab[words[i]]) for i in idx],
                "url": [f"https://s{i % 97}.org/p{i}" for i in idx],
            }
        )
        table = pa.table(
            {
                name: table.column(name) if name in table.column_names else pa.nulls(len(idx), field.type)
                for name, field in zip(SCHEMA.names, SCHEMA)
            },
            schema=SCHEMA,
        )
        path = str(directory / f"in-{f // DOCS_PER_FILE:04d}.parquet")
        pq.write_table(table, path, row_group_size=250)
        paths.append(path)
    return paths


def _dedup(paths, out, engine: str) -> dict:
    # The local engine with a budget it never exceeds: with a small one it counts a candidate
    # pair once per index partition it shows up in (its kept and removed documents are the same).
    memory = MEMORY if engine == "ray" else 1 << 30
    ctx = StageContext(
        paths, str(out), Executor(engine, 2 if engine == "ray" else 1), progress=False, memory_bytes=memory
    )
    return dedup_stage.run(DedupConfig(), ctx)


def _digest(directory) -> list[tuple[str, str]]:
    files = sorted(
        glob.glob(os.path.join(directory, "*.parquet")) + glob.glob(os.path.join(directory, "removed", "*.parquet"))
    )
    return [(os.path.relpath(f, directory), sha256_file(f)) for f in files]


def _removed(directory) -> dict[str, tuple[str, str, float]]:
    rows = pq.read_table(os.path.join(directory, "removed"), columns=["id", "dup_of", "dup_kind", "dup_similarity"])
    return {r["id"]: (r["dup_of"], r["dup_kind"], r["dup_similarity"]) for r in rows.to_pylist()}


def test_dedup_on_ray_driver_memory_flat_and_output_identical(tmp_path, ray_local, monkeypatch):
    # The driver resolves and reads back removals in chunks; make them smaller than the corpus
    # so that what is measured is what would hold at any size.
    monkeypatch.setattr(dedup_decide, "RESOLVE_CHUNK", 1024)
    monkeypatch.setattr(dedup_ray, "REMOVAL_CHUNK", 1024)
    peaks, rss = {}, {}
    warm = tmp_path / "warm"  # one-time costs on the driver (imports, task definitions) first
    warm.mkdir()
    _dedup(_corpus(warm, 300), warm / "ray", "ray")
    for n in (2000, 20000):
        d = tmp_path / f"n{n}"
        d.mkdir()
        paths = _corpus(d, n)
        local = _dedup(paths, d / "local", "local")
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            on_ray = _dedup(paths, d / "ray", "ray")
            peaks[n] = tracemalloc.get_traced_memory()[1] - before
            rss[n] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
        finally:
            tracemalloc.stop()
        removed = _removed(d / "local")
        assert len(removed) > 0.3 * n  # planted duplicates found
        assert {kind for _, kind, _ in removed.values()} == {"exact", "near"}
        assert _removed(d / "ray") == removed
        assert _digest(d / "ray") == _digest(d / "local")
        assert len(_digest(d / "ray")) >= 2 * (n // DOCS_PER_FILE)  # kept and removed shards per input
        assert on_ray["counts"] == local["counts"] and on_ray["pairs"] == local["pairs"]
        assert on_ray["clusters"] == local["clusters"]
        assert on_ray["memory"]["partitions"]["band"] >= 16
    growth = peaks[20000] - peaks[2000]
    print(
        f"driver traced peak: 2k {peaks[2000] / 1024:.0f} KiB, 20k {peaks[20000] / 1024:.0f} KiB; "
        f"ru_maxrss growth during the runs: {rss[2000]} KiB, {rss[20000]} KiB"
    )
    assert growth < DRIVER_GROWTH_BOUND, (peaks, rss)
