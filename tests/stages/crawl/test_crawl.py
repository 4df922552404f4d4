"""curate.stages.crawl: the stage on the project's samples and on generated damaged inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from curate.core.errors import ConfigError
from curate.core.shards import read_documents
from curate.runtime.executor import Executor
from curate.runtime.stage import StageContext
from curate.stages import crawl as crawl_stage
from curate.stages.crawl import CrawlConfig, load_config
from curate.stages.crawl.records import record_uuid


def crawl(inputs, out, cfg=None, workers=1, **options):
    """The crawl stage through its one entry point, quietly; returns the manifest."""
    ctx = StageContext(list(inputs), str(out), Executor("local", workers), progress=False)
    return crawl_stage.run(cfg or CrawlConfig(), ctx, **options)


SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "warc"

SAMPLE_FILES = sorted(str(p) for p in SAMPLES.glob("*.gz"))


def rows(out: Path) -> list[dict]:
    return sorted((d.to_row() for d in read_documents([str(out)])), key=lambda r: (r["warc_path"], r["warc_offset"]))


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("crawl") / "one"
    manifest = crawl(SAMPLE_FILES, str(out), workers=1)
    return out, manifest


def test_samples_counts_add_up_and_reasons(sample_run):
    _out, manifest = sample_run
    c = manifest["counts"]
    assert c["read"] == c["kept"] + sum(c["rejected"].values()) + sum(c["errors"].values())
    assert c["errors"] == {}
    for reason in ("not_html", "redirect", "status_404", "revisit"):
        assert c["rejected"].get(reason, 0) >= 1, reason
    assert c["kept"] >= 250
    assert manifest["inputs_failed"] == 0 and all(i["status"] == "done" for i in manifest["inputs"])
    assert sum(s["rows"] for s in manifest["shards"]) == c["kept"]


def test_samples_documents(sample_run):
    out, _ = sample_run
    docs = rows(out)
    assert len({d["id"] for d in docs}) == len(docs)
    by_url = {d["url"]: d for d in docs}
    assert (
        "Зимой" in by_url["https://gorod-novosti.ru/cp1251.html"]["text"]
        or "Осенью" in by_url["https://gorod-novosti.ru/cp1251.html"]["text"]
    )
    assert by_url["https://gorod-novosti.ru/cp1251.html"]["charset"] == "cp1251"
    assert by_url["https://shenghuo.example.cn/gb2312.html"]["charset"] == "gb18030"
    assert "的" in by_url["https://shenghuo.example.cn/gb2312.html"]["text"]
    assert by_url["https://kurashi.example.jp/eucjp.html"]["charset"] == "euc_jp"
    assert "。" in by_url["https://kurashi.example.jp/eucjp.html"]["text"]
    first = docs[0]
    assert first["source"] == "web" and first["crawl"] == "CURATE-SAMPLES-2024"
    assert first["date"].tzinfo is not None and 2023 <= first["date"].year <= 2024
    assert first["warc_record_id"].startswith("<urn:uuid:") and first["id"] == record_uuid(first["warc_record_id"])
    wet = [d for d in docs if d["url"] and d["url"].startswith("https://wet.example.org/")]
    assert len(wet) == 24 and all(json.loads(d["meta"])["wet_languages"] for d in wet)
    # Encoded bodies (gzip, chunked, brotli, deflate) all came out as text.
    assert all("<" not in d["text"][:50] for d in docs)


def test_deterministic_and_workers_agree(sample_run, tmp_path):
    out1, _ = sample_run
    out2 = tmp_path / "two"
    crawl(SAMPLE_FILES, str(out2), workers=2)
    assert rows(out1) == rows(out2)
    # Byte-identical shards: same names, same sha256.
    m1 = json.loads((out1 / "manifest.json").read_text())
    m2 = json.loads((out2 / "manifest.json").read_text())
    assert [(s["path"], s["sha256"]) for s in m1["shards"]] == [(s["path"], s["sha256"]) for s in m2["shards"]]


def test_damaged_inputs_are_counted_and_the_rest_kept(tmp_path, warc_kit):
    pages = warc_kit.simple_pages(6)
    good = warc_kit.make_warc(pages)
    offs = warc_kit.member_offsets(good) + [len(good)]
    truncated = good[: offs[3] + 100] + good[offs[4] :]  # record 3 cut mid-member
    (tmp_path / "a-truncated.warc.gz").write_bytes(truncated)
    (tmp_path / "b-trailing.warc.gz").write_bytes(good + b"garbage" * 100)
    (tmp_path / "c-notwarc.warc").write_bytes(b"<html>hello</html>" * 100)
    not_html = warc_kit.make_warc(
        [
            ("https://e.com/x.json", warc_kit.http_block(b"{}", "application/json")),
            ("https://e.com/404", warc_kit.http_block(b"<html></html>", status="404 Not Found")),
            ("https://e.com/empty", warc_kit.http_block(b"<html><body></body></html>")),
        ]
    )
    (tmp_path / "d-mixed.warc.gz").write_bytes(not_html)
    manifest = crawl([str(tmp_path)], str(tmp_path / "out"), workers=1)
    status = {Path(i["path"]).name: i["status"] for i in manifest["inputs"]}
    assert status == {
        "a-truncated.warc.gz": "done_with_errors",
        "b-trailing.warc.gz": "done_with_errors",
        "c-notwarc.warc": "failed",
        "d-mixed.warc.gz": "done",
    }
    c = manifest["counts"]
    assert c["read"] == c["kept"] + sum(c["rejected"].values()) + sum(c["errors"].values())
    assert c["kept"] == 5 + 6
    assert c["rejected"] == {"not_html": 1, "status_404": 1, "no_text": 1}
    # Two damaged records, and the file that is no archive at all as one error naming it.
    assert sum(c["errors"].values()) == 3 and "trailing_garbage" in c["errors"]
    assert c["error_examples"]["unreadable_file"][0]["file"].endswith("c-notwarc.warc")
    example = c["error_examples"]["trailing_garbage"][0]
    assert example["file"].endswith("b-trailing.warc.gz") and example["offset"] == len(good)
    assert manifest["inputs_failed"] == 1


def test_wrong_content_lengths_are_counted_whether_repaired_or_not(tmp_path, warc_kit):
    from curate.runtime.stage import summarize

    def set_length(data: bytes, which: int, delta: int) -> bytes:
        pos = -1
        for _ in range(which + 1):
            pos = data.index(b"Content-Length: ", pos + 1)
        end = data.index(b"\r\n", pos)
        return data[: pos + 16] + str(int(data[pos + 16 : end]) + delta).encode() + data[end:]

    long_page = ("https://e.com/long", warc_kit.http_block(("<p>" + "word " * 4000 + "</p>").encode()))
    data = warc_kit.make_warc(warc_kit.simple_pages(3) + [long_page] + warc_kit.simple_pages(1, "z"), gzip=False)
    data = set_length(data, 1, -7)  # page 0: 7 bytes short, the next header frames it whole
    data = set_length(data, 2, 11)  # page 1: 11 bytes long, the same
    data = set_length(data, 4, -12_000)  # the long page: far too short, no header near its end
    (tmp_path / "in.warc").write_bytes(data)
    manifest = crawl([str(tmp_path / "in.warc")], str(tmp_path / "out"))
    c = manifest["counts"]
    assert c["repaired"] == {"bad_content_length": 2} and c["errors"] == {"bad_content_length": 1}
    assert c["kept"] == 4 and c["read"] == 5 == c["kept"] + sum(c["rejected"].values()) + sum(c["errors"].values())
    offsets = [e["offset"] for e in c["error_examples"]["repaired:bad_content_length"]]
    docs = {d.url: d for d in read_documents([str(tmp_path / "out")])}
    assert sorted(d.warc_offset for d in docs.values() if "repaired" in (d.meta or "")) == sorted(offsets)
    assert "https://e.com/long" not in docs
    assert "repaired: bad_content_length=2" in summarize(manifest)


def test_too_large_and_config(tmp_path, warc_kit):
    big = (
        "https://e.com/big",
        warc_kit.http_block(("<html><body>" + "<p>word</p>" * 50_000 + "</body></html>").encode()),
    )
    (tmp_path / "in.warc.gz").write_bytes(warc_kit.make_warc([big] + warc_kit.simple_pages(2)))
    cfg = load_config(None, {"max_page_bytes": "100KB"})
    manifest = crawl([str(tmp_path / "in.warc.gz")], str(tmp_path / "out"), cfg)
    assert manifest["counts"]["rejected"] == {"too_large": 1} and manifest["counts"]["kept"] == 2
    with pytest.raises(ConfigError, match="did you mean 'max_page_bytes'"):
        load_config(None, {"max_page_byte": 1})
    toml = tmp_path / "crawl.toml"
    toml.write_text('[extract]\nmode = "full"\ntime_limit = 2.5\n')
    assert load_config(str(toml)).extract.mode == "full"
    assert isinstance(CrawlConfig().validate().max_page_bytes, int)


def test_killed_run_resumes_without_duplicates(tmp_path, warc_kit):
    for i in range(3):
        (tmp_path / f"in-{i}.warc.gz").write_bytes(warc_kit.make_warc(warc_kit.simple_pages(12, f"f{i}")))
    out = tmp_path / "out"
    args = ["crawl", str(tmp_path), "-o", str(out), "-j", "1", "-q", "--set", "shard_size=4KB"]
    env = {**os.environ, "CURATE_PROGRESS": "0"}
    faults = str(Path(__file__).resolve().parents[2] / "faults" / "inject.py")
    # Killed while input 1 is half written (7 of its 12 documents).
    killed = subprocess.run(
        [sys.executable, faults, "kill-after-docs", "1", "7", "--", *args], env=env, capture_output=True, timeout=120
    )
    assert killed.returncode == -9, killed.stderr.decode()
    assert not (out / "manifest.json").exists()
    assert (out / ".curate" / "inputs" / "00000.json").exists()
    assert list(out.glob("part-00001-*.parquet"))  # input 1 left complete shards behind
    curate = [sys.executable, "-m", "curate"]
    again = subprocess.run([*curate, *args], env=env, capture_output=True, timeout=120)
    assert again.returncode == 0, again.stderr.decode()
    fresh = tmp_path / "fresh"
    subprocess.run([*curate, *args[:3], str(fresh), *args[4:]], env=env, check=True, capture_output=True, timeout=120)
    got, want = rows(out), rows(fresh)
    assert len(got) == 36 and len({(r["warc_path"], r["id"]) for r in got}) == 36
    assert got == want
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"min_text_chars": -1}, "crawl config: min_text_chars = -1 is out of range; allowed: an integer >= 0"),
        ({"max_page_bytes": 0}, "crawl: max_page_bytes = 0 is out of range; allowed: an integer >= 1"),
        ({"shard_size": "0MB"}, "crawl: shard_size = 0 is out of range; allowed: an integer >= 1"),
        ({"extract": {"time_limit": -1.0}}, "crawl config.extract: time_limit = -1.0 is out of range"),
        ({"extract": {"full_below_chars": -5}}, "crawl config.extract: full_below_chars = -5 is out of range"),
        ({"http": {"retries": -1}}, "crawl config.http: retries = -1 is out of range; allowed: an integer >= 0"),
        ({"http": {"timeout": 0.0}}, "crawl config.http: timeout = 0.0 is out of range; allowed: a number > 0"),
        ({"http": {"backoff": -0.5}}, "crawl config.http: backoff = -0.5 is out of range; allowed: a number >= 0"),
    ],
)
def test_numeric_settings_are_range_checked_when_built(overrides, message):
    import re

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, overrides)


def test_configs_built_in_code_are_range_checked_by_validate():
    from curate.stages.crawl.extract import ExtractOptions
    from curate.stages.crawl.sources import HttpOptions

    with pytest.raises(ConfigError, match=r"crawl\.extract: time_limit = -2 is out of range"):
        CrawlConfig(extract=ExtractOptions(time_limit=-2)).validate()
    with pytest.raises(ConfigError, match=r"crawl\.http: max_backoff = -1 is out of range"):
        CrawlConfig(http=HttpOptions(max_backoff=-1)).validate()
    assert CrawlConfig(extract=ExtractOptions(time_limit=0)).validate().extract.time_limit == 0
