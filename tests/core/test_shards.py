"""Parquet shards: size targets, atomic writes, streaming reads, manifests."""

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.core.document import SCHEMA
from curate.core.errors import InputError
from curate.core.files import atomic_write_json, sha256_file
from curate.core.manifest import load_manifest, write_manifest
from curate.core.shards import (
    ShardWriter,
    count_rows,
    drop_null_rows,
    expand_parquet_inputs,
    open_parquet,
    read_documents,
    read_tables,
)


def test_writer_splits_by_size_and_records_checksums(tmp_path, make_docs):
    docs = make_docs(50, text=lambda i: f"text {i} " + "x" * 1000)
    with ShardWriter(tmp_path, prefix="part-00000", shard_bytes=10_000, row_group_bytes=5_000) as w:
        for d in docs:
            w.write(d)
    shards = w.shards
    assert len(shards) > 3
    assert [s.path for s in shards] == [f"part-00000-{i:03d}.parquet" for i in range(len(shards))]
    assert sum(s.rows for s in shards) == 50
    for s in shards:
        path = tmp_path / s.path
        assert s.sha256 == sha256_file(path)
        schema = pq.read_schema(path)
        assert schema.equals(SCHEMA) and schema.metadata == SCHEMA.metadata
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    assert [d.id for d in read_documents([str(tmp_path)])] == [d.id for d in docs]
    assert count_rows([str(tmp_path)]) == 50


def test_abort_leaves_no_partial_shard(tmp_path, make_docs):
    w = ShardWriter(tmp_path, shard_bytes=10**9, row_group_bytes=100)
    for d in make_docs(5):
        w.write(d)
    w.abort()
    assert not list(tmp_path.iterdir())  # neither a shard nor a temp file


def test_exception_inside_context_aborts(tmp_path, make_docs):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, row_group_bytes=1) as w:
            for d in make_docs(3):
                w.write(d)
            raise RuntimeError("killed")
    assert not list(tmp_path.glob("*.parquet")) and not list(tmp_path.glob(".*.tmp"))


def test_writes_are_deterministic(tmp_path, make_docs):
    for name in ("a", "b"):
        with ShardWriter(tmp_path / name) as w:
            for d in make_docs(20):
                w.write(d)
    assert sha256_file(tmp_path / "a" / "part-00000-000.parquet") == sha256_file(
        tmp_path / "b" / "part-00000-000.parquet"
    )


def test_expand_inputs_errors_and_skips_hidden(tmp_path, make_docs):
    with pytest.raises(InputError, match="no such file"):
        expand_parquet_inputs([str(tmp_path / "missing")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .parquet files"):
        expand_parquet_inputs([str(tmp_path / "empty")])
    with ShardWriter(tmp_path / "d") as w:
        w.write(make_docs(1)[0])
    (tmp_path / "d" / ".part-x.parquet.tmp").write_text("junk")
    assert [os.path.basename(p) for p in expand_parquet_inputs([str(tmp_path / "d")])] == ["part-00000-000.parquet"]
    assert len(expand_parquet_inputs([str(tmp_path / "d" / "*.parquet")])) == 1


def test_reading_wrong_schema_or_garbage_is_input_error(tmp_path):
    pq.write_table(pa.table({"url": ["u"]}), tmp_path / "wrong.parquet")
    with pytest.raises(InputError, match="wrong.parquet.*missing column"):
        list(read_documents([str(tmp_path / "wrong.parquet")]))
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="garbage.parquet"):
        list(read_documents([str(tmp_path / "garbage.parquet")]))


def test_schema_is_checked_before_the_first_row(tmp_path):
    from curate.core.document import SchemaError

    path = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"id": pa.array([1, 2]), "text": pa.array([10, 20])}), path)
    tables = read_tables(str(path))
    with pytest.raises(SchemaError, match=r"ints\.parquet: column 'id' has type int64, expected string"):
        next(tables)
    with pytest.raises(SchemaError):
        open_parquet(str(path))
    with pytest.raises(InputError, match="not a readable Parquet file"):
        (tmp_path / "x.parquet").write_bytes(b"PAR1 nope")
        open_parquet(str(tmp_path / "x.parquet"))


def test_rows_with_a_null_id_or_text_are_counted_and_dropped(tmp_path):
    from curate.core.accounting import Stats

    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"id": ["a", "b", None, "d"], "text": ["x", None, "z", "w"]}), path)
    stats = Stats()
    [table] = list(read_tables(str(path)))
    kept = drop_null_rows(table, stats, str(path), first_row=100)
    assert kept.column("id").to_pylist() == ["a", "d"]
    assert stats.read == 2 and dict(stats.errors) == {"null_text": 1, "null_id": 1}
    assert stats.examples["null_text"] == [{"file": str(path), "row": 101, "id": "b"}]
    assert stats.examples["null_id"] == [{"file": str(path), "row": 102}]


def test_manifest_round_trip_is_atomic(tmp_path):
    assert load_manifest(tmp_path) is None
    write_manifest(tmp_path, {"stage": "x", "counts": {"read": 1}})
    assert load_manifest(tmp_path)["counts"]["read"] == 1
    atomic_write_json(tmp_path / "other.json", [1, 2])
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(InputError, match="unreadable manifest"):
        load_manifest(tmp_path)


def test_files_get_normal_permissions(tmp_path, make_docs):
    import stat

    with ShardWriter(tmp_path) as w:
        w.write(make_docs(1)[0])
    write_manifest(tmp_path, {"a": 1})
    for name in ("part-00000-000.parquet", "manifest.json"):
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode & 0o044, oct(mode)  # readable by group/others (umask permitting), not 0600


def test_repeated_inputs_are_read_once(tmp_path, make_docs):
    with ShardWriter(tmp_path / "d") as w:
        for d in make_docs(3):
            w.write(d)
    f = str(tmp_path / "d" / "part-00000-000.parquet")
    assert expand_parquet_inputs([f, f, str(tmp_path / "d")]) == [f]
    assert count_rows([str(tmp_path / "d"), str(tmp_path / "d")]) == 3
