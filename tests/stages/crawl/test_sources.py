"""curate.stages.crawl.sources: input expansion, listings, snapshots, and streamed HTTP with retries."""

from __future__ import annotations

import gzip

import pytest

from curate.core.errors import InputError
from curate.stages.crawl.sources import HttpOptions, crawl_name_of, open_input, resolve_inputs

FAST = HttpOptions(retries=3, backoff=0.01, timeout=5)


@pytest.fixture
def server(warc_kit):
    srv = warc_kit.LoopbackServer()
    yield srv
    srv.close()


def test_local_dirs_globs_and_typos(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.warc.gz", "a.warc", "sub/c.arc.gz", "notes.txt", ".hidden.warc.gz"):
        (tmp_path / name).write_bytes(b"x")
    found = resolve_inputs([str(tmp_path)])
    assert [p.rsplit("/", 1)[1] for p in found] == ["a.warc", "b.warc.gz", "c.arc.gz"]
    assert resolve_inputs([str(tmp_path / "*.warc*")]) == [str(tmp_path / "a.warc"), str(tmp_path / "b.warc.gz")]
    # A file named twice is read once; offset/max-files select a window.
    assert len(resolve_inputs([str(tmp_path), str(tmp_path / "a.warc")])) == 3
    assert resolve_inputs([str(tmp_path)], offset=1, max_files=1) == [str(tmp_path / "b.warc.gz")]
    with pytest.raises(InputError, match="no such file"):
        resolve_inputs([str(tmp_path / "typo.warc.gz")])
    with pytest.raises(InputError, match="no file matches"):
        resolve_inputs([str(tmp_path / "*.nothing")])
    with pytest.raises(InputError, match="no input files left"):
        resolve_inputs([str(tmp_path)], offset=10)


def test_local_listing(tmp_path):
    (tmp_path / "x.warc.gz").write_bytes(b"x")
    listing = tmp_path / "my.paths.gz"
    listing.write_bytes(gzip.compress(b"x.warc.gz\ncrawl-data/CC-MAIN-2024-10/segments/1/warc/y.warc.gz\n\n", mtime=0))
    got = resolve_inputs([str(listing)], cc_base_url="http://base.example")
    assert got == [
        str(tmp_path / "x.warc.gz"),
        "http://base.example/crawl-data/CC-MAIN-2024-10/segments/1/warc/y.warc.gz",
    ]


def test_crawl_name_of():
    assert crawl_name_of("crawl-data/CC-MAIN-2024-10/segments/x.warc.gz") == "CC-MAIN-2024-10"
    assert crawl_name_of("local.warc.gz") is None


def test_snapshot_expansion_through_paths_gz(server):
    lines = "".join(f"crawl-data/CC-MAIN-2024-10/segments/1/warc/f{i}.warc.gz\n" for i in range(5))
    server.serve_bytes("/crawl-data/CC-MAIN-2024-10/warc.paths.gz", gzip.compress(lines.encode(), mtime=0))
    got = resolve_inputs(["CC-MAIN-2024-10"], cc_base_url=server.url, offset=1, max_files=2, http=FAST)
    assert got == [f"{server.url}/crawl-data/CC-MAIN-2024-10/segments/1/warc/f{i}.warc.gz" for i in (1, 2)]
    with pytest.raises(InputError, match="404"):
        resolve_inputs(["CC-MAIN-1999-01"], cc_base_url=server.url, http=FAST)


def test_http_stream_retries_5xx_then_ok(server, warc_kit):
    data = warc_kit.make_warc(warc_kit.simple_pages(3))
    server.serve_bytes("/a.warc.gz", data, fail_first=2)
    with open_input(f"{server.url}/a.warc.gz", FAST) as fh:
        assert fh.read() == data
    assert len(server.hits) == 3


def test_http_stream_resumes_a_dropped_body_with_range(server, warc_kit):
    data = warc_kit.make_warc(warc_kit.simple_pages(20))
    server.serve_bytes("/b.warc.gz", data, drop_at=5000)
    with open_input(f"{server.url}/b.warc.gz", FAST) as fh:
        got = b""
        while chunk := fh.read(4096):
            got += chunk
    assert got == data
    assert server.hits[-1][1] == "bytes=5000-"


def test_http_errors_are_input_errors(server, warc_kit):
    with pytest.raises(InputError, match="HTTP 404"):
        open_input(f"{server.url}/missing.warc.gz", FAST)
    server.serve_bytes("/always-503", b"", fail_first=100)
    with pytest.raises(InputError, match="unreachable after 4 attempts"):
        open_input(f"{server.url}/always-503", FAST)
    with pytest.raises(InputError, match="unreachable"):
        open_input(warc_kit.free_port_unreachable(), FAST)


def test_local_open_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        open_input(str(tmp_path / "nope.warc"))
    with pytest.raises(InputError, match="is a directory"):
        open_input(str(tmp_path))
