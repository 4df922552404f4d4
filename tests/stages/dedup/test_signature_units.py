"""What a ``dedup --engine ray`` signature task sends back to the driver: a few counters and
paths, whatever the size of its unit; the per-document columns and ids go through a unit file
in the work directory, which the driver copies into the document store exactly as the local
engine appends the same columns in memory; and the offsets of the units' key files are a
table in files, not lists on the driver."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.core.document import SCHEMA
from curate.stages.dedup import DedupConfig, partitioned
from curate.stages.dedup.exact import _shingle_unit_inner, shingle_unit
from curate.stages.dedup.exact_store import ShingleStore
from curate.stages.dedup.index import DocStore, KeyIndex
from curate.stages.dedup.partitioned import PartitionedKeys, keys_ranges, write_key_records
from curate.stages.dedup.ray_tasks import signature_task
from curate.stages.dedup.signature_pass import store_columns
from curate.stages.dedup.signatures import signature_unit


def _parquet(path, n: int) -> str:
    rng = np.random.default_rng(n)
    words = [f"mot{i}é" for i in range(500)]
    texts = [" ".join(rng.choice(words, size=60)) for _ in range(n)]
    texts[3] = None  # an error the task counts, with an example
    columns = {
        "id": [f"doc-{i}-ü" for i in range(n)],
        "text": texts,
        "url": [f"https://example.org/{i % 7}" for i in range(n)],
    }
    # The corpus schema's types, nullable: a null text is a user's mistake the stage counts.
    schema = pa.schema([SCHEMA.field(name).with_nullable(True) for name in columns])
    table = pa.table(columns, schema=schema)
    pq.write_table(table, path, row_group_size=n)
    return str(path)


def _task(tmp_path, n: int, config: DedupConfig) -> tuple[dict, tuple]:
    unit_args = (_parquet(tmp_path / f"in-{n}.parquet", n), 0, n, config)
    paths = {name: str(tmp_path / f"{name}-{n}.bin") for name in ("exact", "url", "band")}
    partitions = {"exact": 4, "url": 4, "band": 16}
    return signature_task((0, 0, unit_args, paths, partitions, str(tmp_path / f"store-{n}.bin"))), unit_args


def test_signature_task_result_does_not_grow_with_its_unit(tmp_path):
    config = DedupConfig()
    sizes = {}
    for n in (100, 5000):
        result, _ = _task(tmp_path, n, config)
        assert result["n"] == n and result["errors"] == {"null_text": 1}
        assert not any(isinstance(v, np.ndarray) and v.size >= n for v in result.values())
        sizes[n] = len(pickle.dumps(result))
    # 50x the documents: the same paths and counters (a unit's columns alone would be ~2.6 MB).
    assert sizes[5000] < sizes[100] + 256 and sizes[5000] < 4096, sizes


def test_unit_file_appends_as_the_columns_do(tmp_path):
    config = DedupConfig()
    n = 300
    result, unit_args = _task(tmp_path, n, config)
    columns = store_columns(config.num_perm)
    local = signature_unit(unit_args)
    inputs = np.full(n, 7, dtype=np.int32)
    direct = DocStore(tmp_path / "direct", columns)
    copied = DocStore(tmp_path / "copied", columns)
    for _ in range(2):  # two units, so offsets into the id blob carry over
        direct.append(local["ids"], input=inputs, **{k: local[k] for k in columns if k != "input"})
        copied.append_unit(result["store_file"], n, input=inputs)
    direct.finish()
    copied.finish()
    assert copied.n_docs == direct.n_docs == 2 * n
    for name in columns:
        np.testing.assert_array_equal(copied[name], direct[name])
    assert copied.doc_ids(np.arange(2 * n)) == direct.doc_ids(np.arange(2 * n))
    assert copied.doc_id(n + 5) == "doc-5-ü"
    assert copied.bytes_on_disk() == direct.bytes_on_disk()


def test_truncated_unit_file_is_named(tmp_path):
    config = DedupConfig()
    result, _ = _task(tmp_path, 50, config)
    path = result["store_file"]
    with open(path, "r+b") as fh:
        fh.truncate(fh.seek(0, 2) - 10)  # the id blob ends short
    store = DocStore(tmp_path / "store", store_columns(config.num_perm))
    with pytest.raises(ValueError, match="ids ends 10 bytes short"):
        store.append_unit(path, 50, input=np.zeros(50, np.int32))


def test_partition_offsets_are_a_table_in_files_that_tasks_read(tmp_path, monkeypatch):
    """The offsets of every partition in every unit's key file stay out of the driver's
    memory: a table in the work directory (turned by partition a few rows at a time), from
    which a task finds its partition's ranges itself; grouping over it is the in-memory index's."""
    monkeypatch.setattr(partitioned, "TABLE_CHUNK_BYTES", 100)  # a row or two at a time
    rng = np.random.default_rng(3)
    partitions = 8
    index = PartitionedKeys(tmp_path, "band", partitions)
    reference = KeyIndex(tmp_path / "ref", "band", 1 << 30, 10_000)
    expected: dict[int, list] = {p: [] for p in range(partitions)}
    doc = 0
    for unit in (0, 1, 3, 4, 7):  # units 2, 5 and 6 failed: no file
        n = int(rng.integers(5, 60))
        keys = rng.integers(0, 40, size=n).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        docs = np.arange(doc, doc + n, dtype=np.int64)
        doc += n
        path = index.unit_path(unit)
        bounds = write_key_records(path, keys, docs, partitions)
        index.add_unit(unit, bounds)
        reference.add(keys, docs)
        for p in range(partitions):
            if bounds[p + 1] > bounds[p]:
                expected[p].append((path, int(bounds[p]), int(bounds[p + 1])))
    assert index.records == doc
    spec = index.spec()
    assert isinstance(spec, tuple) and len(pickle.dumps(spec)) < 300  # what a task is given
    for p in range(partitions):
        assert keys_ranges(spec, p) == expected[p]
    assert index.partition_records().tolist() == [sum(hi - lo for _, lo, hi in expected[p]) for p in range(partitions)]

    def flat(groups):
        out = set()
        for docs, group in groups:
            for g in np.unique(group):
                out.add(tuple(docs[group == g].tolist()))
        return out

    assert flat(index.groups()) == flat(reference.groups()) and flat(reference.groups())
    index.close()
    assert not list(tmp_path.glob("band-*"))  # unit files and the table are gone


def test_shingle_sets_come_back_as_a_file_the_store_copies(tmp_path):
    """``--verify exact``: a shingle task's result is a path, not the sets (which would pass
    through Ray's object store to the driver); the store copies the file to the same bytes and
    offsets as appending the sets."""
    n = 400
    path = _parquet(tmp_path / "in.parquet", n)
    wanted = np.arange(0, n, 3, dtype=np.int64)
    out = str(tmp_path / "sets.bin")
    result = shingle_unit((path, 0, n, wanted, 5, out))
    assert set(result) == {"file", "n"} and result["n"] == len(wanted) and len(pickle.dumps(result)) < 300
    inner = _shingle_unit_inner(path, 0, n, wanted, 5)
    docs = 1000 + wanted
    copied, direct = ShingleStore(tmp_path / "copied", 2000), ShingleStore(tmp_path / "direct", 2000)
    copied.append_file(docs, out)
    direct.append(docs, inner["values"], inner["counts"])
    for store in (copied, direct):
        store.finish()
    assert (tmp_path / "copied" / "shingles.bin").read_bytes() == (tmp_path / "direct" / "shingles.bin").read_bytes()
    np.testing.assert_array_equal(copied.start, direct.start)
    np.testing.assert_array_equal(copied.count, direct.count)
    assert copied.bytes == direct.bytes > 0 and copied.docs == len(wanted)
    copied.close()
    direct.close()
    with open(out, "r+b") as fh:
        fh.truncate(fh.seek(0, 2) - 16)
    short = ShingleStore(tmp_path / "short", 2000)
    with pytest.raises(ValueError, match="shingle values end 16 bytes short"):
        short.append_file(docs, out)
    short.close()
