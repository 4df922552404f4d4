"""Fault injection on the data stages: a full disk, config files that are not UTF-8, two runs
into one folder, leftovers of a killed run. Every case ends in one line and the right exit code,
with nothing half-written left behind, and a rerun gives the undisturbed result."""

from __future__ import annotations

import errno
import subprocess
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.lock import folder_lock

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
ONE_WARC = str(SAMPLES / "warc" / "curate-sample-00001.warc.gz")


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.tmp"))


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def crawled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "crawl"
    assert run("crawl", ONE_WARC, "-o", out, "-j", "1", "-q").exit_code == 0
    return out


STAGES = {
    "crawl": lambda src, out: ["crawl", ONE_WARC, "-o", out, "-j", "1", "-q"],
    "filter": lambda src, out: ["filter", src, "-o", out, "-j", "1", "-q"],
    "dedup": lambda src, out: ["dedup", src, "-o", out, "-j", "1", "-q"],
    "mix": lambda src, out: ["mix", "--source", f"web={src}:1", "--tokens", "50k", "-o", out, "-q"],
}


# --------------------------------------------------------------------------- a full disk


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_full_disk_is_one_line_and_the_rerun_completes(stage, crawled, tmp_path, monkeypatch):
    out = tmp_path / stage
    original = pq.ParquetWriter.write_table

    def disk_full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", disk_full)
    line = one_line_error(run(*STAGES[stage](crawled, out)), 1)
    assert "No space left on device" in line and "free some space or choose another output directory" in line
    assert "unreadable input" not in line  # a write failure is not blamed on the input
    assert leftovers(out) == [] and not (out / "manifest.json").exists()
    monkeypatch.setattr(pq.ParquetWriter, "write_table", original)
    assert run(*STAGES[stage](crawled, out)).exit_code == 0
    fresh = tmp_path / f"{stage}-fresh"
    assert run(*STAGES[stage](crawled, fresh)).exit_code == 0
    assert shard_bytes(out) == shard_bytes(fresh) and shard_bytes(out)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 40 KB tmpfs (needs the right to mount: root in a container; skipped elsewhere)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_real_full_disk_then_a_bigger_one(tiny_disk, tmp_path):
    out = tiny_disk / "crawl"
    args = ["crawl", SAMPLES / "warc", "-o", out, "-j", "2", "-q"]
    line = one_line_error(run(*args), 1)
    assert f"cannot write {out}" in line and "No space left on device" in line
    assert leftovers(out) == []
    remount = ["mount", "-o", "remount,size=64m", str(tiny_disk)]
    assert subprocess.run(remount, capture_output=True).returncode == 0
    assert run(*args).exit_code == 0  # resumes
    fresh = tmp_path / "fresh"
    assert run("crawl", SAMPLES / "warc", "-o", fresh, "-j", "2", "-q").exit_code == 0
    assert shard_bytes(out) == shard_bytes(fresh)


# --------------------------------------------------------------------------- config files


@pytest.mark.parametrize(
    "args",
    [
        ["crawl", ONE_WARC, "-o", "{tmp}/o", "--config", "{bad}"],
        ["filter", "{tmp}", "-o", "{tmp}/o", "--config", "{bad}"],
        ["mix", "--config", "{bad}", "-o", "{tmp}/o"],
        ["pipeline", "{bad}"],
        ["train", "pretrain", "--data", "{tmp}", "-o", "{tmp}/o", "--config", "{bad}"],
        ["rate", "serve", str(SAMPLES / "pairs.parquet"), "-o", "{tmp}/o", "--raters", "{bad}"],
    ],
    ids=["crawl", "filter", "mix", "pipeline", "pretrain", "rate"],
)
def test_a_config_file_that_is_not_utf8_is_one_line_naming_line_and_byte(args, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'# settings\nx = "caf\xe9"\n')  # latin-1, not UTF-8
    result = run(*[a.format(tmp=tmp_path, bad=bad) for a in args])
    line = one_line_error(result, 2)
    assert f"{bad}: not UTF-8 text (line 2, byte 9: 0xe9)" in line
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- one run per folder


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_second_run_into_the_same_folder_says_who_holds_it(stage, crawled, tmp_path):
    out = tmp_path / stage
    with folder_lock(out / ".curate" / "lock", "`curate test`", out):
        line = one_line_error(run(*STAGES[stage](crawled, out)), 2)
    assert f"another `curate {stage}` is running in {out} (pid " in line
    assert not (out / "manifest.json").exists()
    assert run(*STAGES[stage](crawled, out)).exit_code == 0  # the lock is gone with its holder


def test_the_tokenizer_and_the_pipeline_lock_too(tmp_path):
    tok = tmp_path / "tok"
    with folder_lock(tok / ".curate" / "lock", "`curate test`", tok):
        line = one_line_error(run("tokenizer", "train", SAMPLES / "papers", "-o", tok, "--vocab-size", "300"), 2)
    assert "another `curate tokenizer train` is running" in line
    work = tmp_path / "work"
    with folder_lock(work / ".pipeline" / "lock", "`curate test`", work):
        line = one_line_error(run("pipeline", SAMPLES / "pipeline.toml", "--workdir", work, "--until", "crawl"), 2)
    assert f"another `curate pipeline` is running in {work}" in line


# --------------------------------------------------------------------------- leftovers


def test_a_rerun_removes_leftovers_of_a_killed_run_everywhere(crawled, tmp_path):
    out = tmp_path / "filter"
    assert run("filter", crawled, "-o", out, "-j", "1", "-q").exit_code == 0
    stray = [
        out / f".part-00000-001.parquet.{uuid.uuid4().hex}.tmp",
        out / "rejected" / ".part-00000-001.parquet.x.tmp",
        out / ".curate" / "inputs" / ".00000.json.y.tmp",
        out / ".curate" / "filters" / ".00000.json.z.tmp",
    ]
    for path in stray:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half")
    assert run("filter", crawled, "-o", out, "-j", "1", "-q").exit_code == 0
    assert leftovers(out) == []
