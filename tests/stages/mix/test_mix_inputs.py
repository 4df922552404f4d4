"""curate mix with bad inputs: a file that cannot be read, of the wrong schema, failing partway,
or with null texts is counted and left out like in filter and dedup; the rest is mixed."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.document import Document
from curate.core.errors import CurateError, InputError
from curate.core.readers import SourceReader, iter_texts
from curate.core.shards import ShardWriter
from curate.runtime.stage import StageContext
from curate.stages import mix
from curate.stages.mix import MixConfig, SourceSpec

TEXT = "a river of stone and light over the quiet valley, "


def _shards(directory: Path, prefix: str, n: int, row_group_bytes: int = 1 << 20) -> Path:
    with ShardWriter(directory, prefix=prefix, row_group_bytes=row_group_bytes) as w:
        for i in range(n):
            w.write(Document(id=f"{prefix}-{i:03d}", text=f"{prefix} {i}: " + TEXT * (5 + i % 7)))
    return directory


def _mix(paths: list[str], output: Path, tokens: int = 2_000) -> dict:
    cfg = MixConfig(sources=[SourceSpec("web", paths, 1.0)], tokens=tokens)
    return mix.run(cfg, StageContext([], str(output), progress=False))


def _corrupt_last_row_group(path: Path) -> None:
    """Damage the text pages of the last row group: the footer still reads, the file fails
    partway (after its first row groups went out)."""
    meta = pq.ParquetFile(path).metadata
    column = meta.row_group(meta.num_row_groups - 1).column(meta.schema.names.index("text"))
    data = bytearray(path.read_bytes())
    start = column.dictionary_page_offset or column.data_page_offset
    data[start : start + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["ints", "garbage", "partway"])
def test_a_bad_file_is_counted_and_the_others_are_mixed(tmp_path, kind):
    good = _shards(tmp_path / "web", "part-00000", 20)
    bad = tmp_path / "web" / "part-00001-000.parquet"
    reason = "bad_schema" if kind == "ints" else "unreadable_file"
    if kind == "ints":
        pq.write_table(pa.table({"id": pa.array([1, 2]), "text": pa.array([10, 20])}), bad)
    elif kind == "garbage":
        bad.write_bytes(b"PAR1 not parquet at all")
    else:
        _shards(tmp_path / "web", "part-00001", 30, row_group_bytes=500)
        assert pq.ParquetFile(bad).metadata.num_row_groups > 2
        _corrupt_last_row_group(bad)
    m = _mix([str(good)], tmp_path / "out")
    c = m["counts"]
    assert m["inputs_failed"] == 1 and m["complete"] is False
    assert c["errors"] == {reason: 1} and c["error_examples"][reason][0]["file"] == str(bad)
    assert c["read"] == 21 == c["kept"] + sum(c["rejected"].values()) + sum(c["errors"].values())
    statuses = {Path(i["path"]).name: i["status"] for i in m["inputs"]}
    assert statuses == {"part-00000-000.parquet": "done", "part-00001-000.parquet": "failed"}
    # Nothing of the bad file is mixed, not even the rows read before it failed.
    ids = {r["id"] for f in (tmp_path / "out").glob("*.parquet") for r in pq.read_table(f, columns=["id"]).to_pylist()}
    assert ids and all(i.startswith("part-00000-") for i in ids)
    assert m["sources"][0]["docs_available"] == 20


def test_null_texts_are_errors_and_the_other_rows_are_mixed(tmp_path):
    d = tmp_path / "web"
    d.mkdir()
    texts = [TEXT * 3, None, TEXT * 4, "", TEXT * 5]
    pq.write_table(pa.table({"id": ["a", "b", "c", "d", None], "text": texts}), d / "part.parquet")
    m = _mix([str(d)], tmp_path / "out", tokens=100)
    c = m["counts"]
    assert c["read"] == 5 and c["errors"] == {"null_text": 1, "null_id": 1}
    assert c["rejected"]["empty_text"] == 1 and m["sources"][0]["docs_available"] == 2
    assert c["error_examples"]["null_text"] == [{"file": str(d / "part.parquet"), "row": 1, "id": "b"}]
    assert c["error_examples"]["null_id"] == [{"file": str(d / "part.parquet"), "row": 4}]
    assert m["inputs_failed"] == 0 and m["inputs"][0]["status"] == "done_with_errors"


def test_unreadable_text_and_jsonl_files_fail_alone(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.md").write_text(TEXT * 5)
    (src / "b.jsonl.gz").write_bytes(b"\x1f\x8b\x08 not really gzip")
    (src / "c.txt.gz").write_bytes(b"\x1f\x8b\x08 nor this")
    reader = SourceReader("books", [str(src)])
    rows = [r for t in reader.tables() for r in t.to_pylist()]
    assert len(rows) == 1 and set(reader.failed) == {str(src / "b.jsonl.gz"), str(src / "c.txt.gz")}
    assert reader.stats.read == 3 and dict(reader.stats.errors) == {"unreadable_file": 2}
    # The tokenizer trains on everything or says which file it could not read.
    with pytest.raises(InputError, match=r"b\.jsonl\.gz: cannot be read"):
        list(iter_texts([str(src)]))


def test_no_usable_document_at_all_is_still_an_error(tmp_path):
    d = tmp_path / "web"
    d.mkdir()
    (d / "part.parquet").write_bytes(b"garbage")
    with pytest.raises(CurateError, match="no usable documents in any source .*part.parquet: not a readable") as info:
        _mix([str(d)], tmp_path / "out")
    assert info.value.exit_code == 1 and not (tmp_path / "out" / "manifest.json").exists()


def test_cli_exits_1_and_names_the_file_plan_included(tmp_path):
    good = _shards(tmp_path / "web", "part-00000", 20)
    bad = tmp_path / "web" / "part-00001-000.parquet"
    pq.write_table(pa.table({"id": ["x"], "text": pa.array([b"bytes"], pa.binary())}), bad)
    runner = CliRunner()
    for extra in (["-o", str(tmp_path / "out")], ["--plan"]):
        r = runner.invoke(cli, ["mix", "-s", f"web={good}:1", "--tokens", "2k", "-q", *extra])
        assert r.exit_code == 1, r.output
        assert "Traceback" not in r.output and "could not be read" in r.output
        assert f"unreadable input: {bad}: column 'text' has type binary, expected string" in r.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["errors"] == {"bad_schema": 1} and manifest["tokens"]["realized"] >= 2000
