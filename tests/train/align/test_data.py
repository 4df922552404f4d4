"""train/align/data.py: batch order, Parquet and JSONL records, prompts, the data digest."""

from __future__ import annotations

import json

import pytest

from curate.core.errors import InputError
from train.align.data import batch_indices, data_digest, read_prompts, read_records


def test_batch_indices_cover_each_epoch_once():
    seen = [i for s in range(5) for i in batch_indices(10, 4, s, seed=3)]
    assert sorted(seen[:10]) == list(range(10))  # the first epoch is a permutation
    assert batch_indices(10, 4, 2, seed=3) == batch_indices(10, 4, 2, seed=3)
    assert len(seen) == 20


def test_corrupt_parquet_row_group_is_an_input_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = tmp_path / "good.parquet"
    rows = [{"prompt": f"question {i} " * 5, "response": f"answer {i} " * 5} for i in range(300)]
    pq.write_table(pa.Table.from_pylist(rows), good, row_group_size=100, compression="zstd")
    assert len(list(read_records(good))) == 300
    # The footer stays intact (the file opens); the second row group's page header does not.
    data = bytearray(good.read_bytes())
    offset = pq.ParquetFile(good).metadata.row_group(1).column(0).data_page_offset
    data[offset + 20 : offset + 60] = bytes(b ^ 0xFF for b in data[offset + 20 : offset + 60])
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match="bad.parquet: unreadable Parquet data"):
        list(read_records(bad))
    with pytest.raises(InputError, match="not a readable Parquet file"):
        (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
        list(read_records(tmp_path / "junk.parquet"))


def test_data_digest_covers_content_and_relative_paths(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name / "sub").mkdir(parents=True)
        (tmp_path / name / "sub" / "x.jsonl").write_text("1\n")
    assert data_digest(tmp_path / "a") == data_digest(tmp_path / "b")
    (tmp_path / "b" / "sub" / "x.jsonl").write_text("2\n")
    assert data_digest(tmp_path / "a") != data_digest(tmp_path / "b")
    # same name and content, another subdirectory: a different data set
    (tmp_path / "b" / "sub" / "x.jsonl").rename(tmp_path / "b" / "x.jsonl")
    (tmp_path / "b" / "x.jsonl").write_text("1\n")
    assert data_digest(tmp_path / "a") != data_digest(tmp_path / "b")
    assert data_digest(tmp_path / "a" / "sub" / "x.jsonl") == data_digest(tmp_path / "b" / "x.jsonl")


def test_read_prompts_from_jsonl_and_txt(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        json.dumps({"prompt": "a"})
        + "\nbad\n"
        + json.dumps({"messages": [{"role": "user", "content": "b"}]})
        + "\n"
        + json.dumps({"other": 1})
        + "\n"
    )
    prompts, skipped = read_prompts(path)
    assert [p.text for p in prompts] == ["a", "b"] and skipped.total == 2
    txt = tmp_path / "p.txt"
    txt.write_text("one\n\ntwo\n")
    assert [p.text for p in read_prompts(txt)[0]] == ["one", "two"]
    with pytest.raises(InputError):
        read_prompts(tmp_path / "none.jsonl")
