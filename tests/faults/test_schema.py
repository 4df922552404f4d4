"""Fault injection: the same bad Parquet files through filter, dedup, mix and inspect.

Every reader goes through one schema check (:func:`curate.core.document.check_schema`) and one
rule for null texts, so each command must give the same answer on the same file: a file whose
columns hold another kind of value, or that is not readable Parquet, is one counted error named
after the file (``bad_schema``, ``unreadable_file``), the good files are processed and the
command exits 1; a row whose text is null is one ``null_text`` error (file and row), and the
rest of its file is used. Nothing here is patched: the faults are in the files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.document import Document
from curate.core.shards import ShardWriter

STAGES = ("filter", "dedup", "mix")


def _text(i: int) -> str:
    # Words of its own in every document: dedup finds no duplicates among the good ones.
    return f"Report number {i} from the harbour office. " + " ".join(f"w{i}x{k}" for k in range(60)) + "."


def _good(directory: Path, n: int = 8) -> Path:
    with ShardWriter(directory, prefix="part-00000") as w:
        for i in range(n):
            w.write(Document(id=f"good-{i}", text=_text(i), url=f"https://site.example.org/{i}"))
    return directory / "part-00000-000.parquet"


def _ints(path: Path) -> None:
    """id and text stored as int64: cast to strings, the numbers would become the documents."""
    pq.write_table(pa.table({"id": pa.array([1, 2, 3]), "text": pa.array([10, 20, 30])}), path)


def _corrupt(path: Path) -> None:
    path.write_bytes(b"PAR1" + b"\x00garbage" * 64)


def _run(stage: str, inputs: list[Path], out: Path):
    paths = [str(p) for p in inputs]
    if stage == "mix":
        # More tokens than there are, one epoch: every readable document is mixed once.
        args = ["mix", "-s", f"web={','.join(paths)}:1", "--tokens", "1M", "--max-epochs", "1", "-o", str(out)]
    else:
        args = [stage, *paths, "-o", str(out)]
        if stage == "filter":  # annotate: every readable document is kept, whatever its scores
            args += ["-j", "1", "--annotate"]
    return CliRunner().invoke(cli, [*args, "-q"])


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _inputs_by_name(manifest: dict) -> dict[str, str]:
    return {Path(i["path"]).name: i["status"] for i in manifest["inputs"]}


@pytest.mark.parametrize(("make_bad", "reason"), [(_ints, "bad_schema"), (_corrupt, "unreadable_file")])
def test_one_bad_file_among_good_ones_is_the_same_counted_error_everywhere(tmp_path, make_bad, reason):
    good = _good(tmp_path / "good")
    bad = tmp_path / "bad" / "bad.parquet"
    bad.parent.mkdir()
    make_bad(bad)
    for stage in STAGES:
        out = tmp_path / f"out-{stage}"
        r = _run(stage, [good, bad], out)
        assert r.exit_code == 1, (stage, r.output)
        assert "Traceback" not in r.output and f"unreadable input: {bad}" in r.output, (stage, r.output)
        m = _manifest(out)
        c = m["counts"]
        assert c["errors"] == {reason: 1}, (stage, c)
        assert [e["file"] for e in c["error_examples"][reason]] == [str(bad)], stage
        assert c["read"] == 8 + 1 == c["kept"] + sum(c["rejected"].values()) + sum(c["errors"].values()), stage
        assert m["inputs_failed"] == 1 and m["complete"] is False, stage
        assert _inputs_by_name(m) == {"part-00000-000.parquet": "done", "bad.parquet": "failed"}, stage
        assert c["kept"] == 8, stage  # the good file went through, whole
    # inspect says the same thing about the same file, with the same exit status.
    r = CliRunner().invoke(cli, ["inspect", str(bad.parent)])
    assert r.exit_code == 1 and r.output.startswith(f"error: {bad}: ") and r.output.count("\n") == 1, r.output
    if reason == "bad_schema":
        assert "column 'id' has type int64, expected string" in r.output


@pytest.mark.parametrize(("make_bad", "reason"), [(_ints, "bad_schema"), (_corrupt, "unreadable_file")])
def test_a_bad_file_alone_exits_1_everywhere(tmp_path, make_bad, reason):
    bad = tmp_path / "bad" / "bad.parquet"
    bad.parent.mkdir()
    make_bad(bad)
    for stage in STAGES:
        out = tmp_path / f"out-{stage}"
        r = _run(stage, [bad], out)
        assert r.exit_code == 1 and "Traceback" not in r.output and str(bad) in r.output, (stage, r.output)
        if stage == "mix":  # nothing usable at all: no mix is written
            assert "no usable documents in any source" in r.output and not out.exists()
        else:
            assert _manifest(out)["counts"]["errors"] == {reason: 1}, stage
    assert CliRunner().invoke(cli, ["inspect", str(bad)]).exit_code == 1


def test_null_texts_are_the_same_row_errors_everywhere(tmp_path):
    good = _good(tmp_path / "good")
    nulls = tmp_path / "nulls" / "nulls.parquet"
    nulls.parent.mkdir()
    texts = [_text(100), None, _text(102), None]
    pq.write_table(pa.table({"id": ["n0", "n1", "n2", "n3"], "text": pa.array(texts, pa.string())}), nulls)
    expected = [{"file": str(nulls), "row": 1, "id": "n1"}, {"file": str(nulls), "row": 3, "id": "n3"}]
    for stage in STAGES:
        out = tmp_path / f"out-{stage}"
        r = _run(stage, [good, nulls], out)
        assert r.exit_code == 0, (stage, r.output)
        m = _manifest(out)
        c = m["counts"]
        assert c["errors"] == {"null_text": 2} and c["error_examples"]["null_text"] == expected, (stage, c)
        assert c["read"] == 12 == c["kept"] + sum(c["rejected"].values()) + sum(c["errors"].values()), stage
        assert _inputs_by_name(m)["nulls.parquet"] == "done_with_errors" and m["inputs_failed"] == 0, stage
        kept_ids = {
            row["id"] for f in sorted(out.glob("*.parquet")) for row in pq.read_table(f, columns=["id"]).to_pylist()
        }
        assert {"n0", "n2"} <= kept_ids and {"n1", "n3"}.isdisjoint(kept_ids), (stage, kept_ids)
    r = CliRunner().invoke(cli, ["inspect", str(nulls.parent)])
    assert r.exit_code == 0 and "documents 4" in r.output, r.output


def test_a_file_failing_partway_is_left_out_whole_everywhere(tmp_path):
    good = _good(tmp_path / "good")
    bad = tmp_path / "bad"
    with ShardWriter(bad, prefix="part-00001", row_group_bytes=2_000) as w:
        for i in range(40):
            w.write(Document(id=f"late-{i}", text=_text(200 + i)))
    path = bad / "part-00001-000.parquet"
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups > 2
    column = meta.row_group(meta.num_row_groups - 1).column(meta.schema.names.index("text"))
    data = bytearray(path.read_bytes())
    start = column.dictionary_page_offset or column.data_page_offset
    data[start : start + 64] = b"\xff" * 64  # the footer reads; the last text pages do not
    path.write_bytes(bytes(data))
    for stage in STAGES:
        out = tmp_path / f"out-{stage}"
        r = _run(stage, [good, path], out)
        assert r.exit_code == 1, (stage, r.output)
        c = _manifest(out)["counts"]
        assert c["errors"] == {"unreadable_file": 1} and c["read"] == 9, (stage, c)
        kept_ids = {
            row["id"] for f in sorted(out.glob("*.parquet")) for row in pq.read_table(f, columns=["id"]).to_pylist()
        }
        assert kept_ids and not any(i.startswith("late-") for i in kept_ids), stage
    r = CliRunner().invoke(cli, ["inspect", str(bad)])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
