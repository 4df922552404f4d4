"""curate.runtime.output: the output-folder rules every stage shares."""

from __future__ import annotations

import json

import pytest

from curate.core.errors import CurateError
from curate.runtime.output import OutputDir


def test_a_fresh_folder_starts_and_records_its_state(tmp_path):
    out = OutputDir(tmp_path / "o", "crawl")
    assert out.check() is None
    out.start({"config_hash": "abc"})
    assert json.loads((tmp_path / "o" / ".curate" / "state.json").read_text()) == {
        "stage": "crawl",
        "config_hash": "abc",
    }
    assert out.check() == {"stage": "crawl", "config_hash": "abc"}
    assert "different configuration" in str(out.changed())
    assert "different configuration or inputs" in str(out.changed("configuration or inputs"))


def test_another_stage_or_foreign_shards_are_refused(tmp_path):
    OutputDir(tmp_path / "o", "crawl").start({})
    with pytest.raises(CurateError, match="holds output of stage 'crawl', not 'filter'"):
        OutputDir(tmp_path / "o", "filter").check()
    foreign = tmp_path / "f"
    foreign.mkdir()
    (foreign / "data.parquet").write_bytes(b"x")
    with pytest.raises(CurateError, match="not written by `curate mix`; use --overwrite"):
        OutputDir(foreign, "mix", state_file="mix-state.json").check()
    # A manifest of another stage without our state file is refused too.
    (foreign / "manifest.json").write_text(json.dumps({"stage": "dedup"}))
    with pytest.raises(CurateError, match="holds output of stage 'dedup', not 'mix'"):
        OutputDir(foreign, "mix", state_file="mix-state.json").check()


def test_inputs_inside_the_output_are_refused(tmp_path):
    out = OutputDir(tmp_path / "o", "filter", ["rejected"])
    (tmp_path / "o" / "rejected").mkdir(parents=True)
    out.refuse_inputs_inside([str(tmp_path / "elsewhere.parquet")])
    with pytest.raises(CurateError, match="is inside the output directory"):
        out.refuse_inputs_inside([str(tmp_path / "o" / "rejected" / "part-00000-000.parquet")])


def test_reset_removes_only_what_runs_wrote(tmp_path):
    root = tmp_path / "o"
    out = OutputDir(root, "filter", ["rejected"])
    out.start({"config_hash": "1"})
    for rel in (
        "part-00000-000.parquet",
        "rejected/part-00000-000.parquet",
        ".part-00001-000.parquet.x.tmp",
        "manifest.json",
        "notes.txt",
        "sub/keep.parquet",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    out.reset()
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert left == ["notes.txt", "sub/keep.parquet"]


def test_temp_files_and_an_inputs_shards_are_removed(tmp_path):
    root = tmp_path / "o"
    out = OutputDir(root, "crawl", ["rejected"])
    (root / "rejected").mkdir(parents=True)
    for rel in (
        ".part-00002-000.parquet.a.tmp",
        "rejected/.x.tmp",
        "part-00002-000.parquet",
        "part-00003-000.parquet",
        "rejected/part-00002-001.parquet",
    ):
        (root / rel).write_text("x")
    out.remove_temp_files()
    out.remove_shards("part-00002")
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == ["part-00003-000.parquet"]


def test_commit_moves_staged_shards_in_and_writes_the_manifest_last(tmp_path):
    root = tmp_path / "o"
    out = OutputDir(root, "dedup", ["removed"])
    (root / "removed").mkdir(parents=True)
    (root / "part-00000-000.parquet").write_text("old")
    (root / "removed" / "part-00000-000.parquet").write_text("old")
    staging = root / ".curate" / "staging"
    (staging / "removed").mkdir(parents=True)
    (staging / "part-00000-000.parquet").write_text("new kept")
    (staging / "removed" / "part-00000-000.parquet").write_text("new removed")
    out.commit({"stage": "dedup", "complete": True}, staging=staging)
    assert (root / "part-00000-000.parquet").read_text() == "new kept"
    assert (root / "removed" / "part-00000-000.parquet").read_text() == "new removed"
    assert not staging.exists()
    assert json.loads((root / "manifest.json").read_text())["complete"] is True
