"""`curate crawl` through click: exit codes, summaries, one-line errors, HTTP inputs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import cli

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "warc"


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.setenv("CURATE_PROGRESS", "0")
    return CliRunner()


def test_crawl_samples_exit_0_with_summary(runner, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(cli, ["crawl", str(SAMPLES), "-o", str(out), "-j", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert "crawl: read" in result.output and "rejected: " in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "crawl" and manifest["counts"]["kept"] > 250
    # A rerun resumes: nothing is redone, nothing duplicated.
    again = runner.invoke(cli, ["crawl", str(SAMPLES), "-o", str(out), "-q"])
    assert again.exit_code == 0
    assert json.loads((out / "manifest.json").read_text())["counts"] == manifest["counts"]


def test_typo_path_and_bad_option_are_one_line_errors(runner, tmp_path):
    result = runner.invoke(cli, ["crawl", str(tmp_path / "typo.warc.gz"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error:") and "no such file" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(cli, ["crawl", str(SAMPLES), "-o", str(tmp_path / "o"), "--set", "extract.mod=fast"])
    assert result.exit_code == 2 and "did you mean 'mode'" in result.output


def test_http_snapshot_and_unreachable_input(runner, tmp_path, warc_kit):
    srv = warc_kit.LoopbackServer()
    try:
        names = [f"crawl-data/CC-MAIN-2024-10/segments/1/warc/f{i}.warc.gz" for i in range(3)]
        for i, name in enumerate(names):
            srv.serve_bytes(
                "/" + name, warc_kit.make_warc(warc_kit.simple_pages(4, f"f{i}")), fail_first=1 if i == 1 else 0
            )
        srv.serve_bytes("/crawl-data/CC-MAIN-2024-10/warc.paths.gz", gzip.compress("\n".join(names).encode(), mtime=0))
        out = tmp_path / "cc"
        args = [
            "crawl",
            "CC-MAIN-2024-10",
            "--cc-base-url",
            srv.url,
            "--max-files",
            "2",
            "-o",
            str(out),
            "-j",
            "1",
            "-q",
            "--set",
            "http.backoff=0.01",
        ]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        manifest = json.loads((out / "manifest.json").read_text())
        assert [i["path"].rsplit("/", 1)[1] for i in manifest["inputs"]] == ["f0.warc.gz", "f1.warc.gz"]
        assert manifest["counts"]["kept"] == 8
        # An unreachable URL: that input failed, the others were crawled, exit 1.
        bad = warc_kit.free_port_unreachable()
        out2 = tmp_path / "mixed"
        result = runner.invoke(
            cli,
            [
                "crawl",
                f"{srv.url}/{names[2]}",
                bad,
                "-o",
                str(out2),
                "-j",
                "1",
                "-q",
                "--set",
                "http.retries=1",
                "--set",
                "http.backoff=0.01",
            ],
        )
        assert result.exit_code == 1
        assert "unreadable input" in result.output and "1 input(s) could not be read" in result.output
        manifest = json.loads((out2 / "manifest.json").read_text())
        assert [i["status"] for i in manifest["inputs"]] == ["done", "failed"]
        assert manifest["counts"]["kept"] == 4
    finally:
        srv.close()
