"""curate.stages.crawl.warc: record framing, offsets, and recovery from damaged archives."""

from __future__ import annotations

import io
import zlib

from curate.stages.crawl.decode import parse_http
from curate.stages.crawl.warc import Record, RecordError, iter_records


def read_all(data: bytes, **kw) -> tuple[list[Record], list[RecordError]]:
    items = list(iter_records(io.BytesIO(data), **kw))
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, RecordError)]


def urls(records: list[Record]) -> list[str]:
    return [r.header("warc-target-uri") for r in records if r.type == "response"]


def test_gzip_records_and_offsets_match_members(warc_kit):
    data = warc_kit.make_warc(warc_kit.simple_pages(5))
    records, errors = read_all(data)
    assert errors == []
    assert [r.type for r in records] == ["warcinfo"] + ["response"] * 5
    assert [r.offset for r in records] == warc_kit.member_offsets(data)
    # An offset is where a reader can start: the record found there is the same one.
    third = records[3]
    again, _ = read_all(data[third.offset :])
    assert again[0].header("warc-record-id") == third.header("warc-record-id")
    assert again[0].content == third.content


def test_plain_warc_same_records_as_gzip(warc_kit):
    plain, errors = read_all(warc_kit.make_warc(warc_kit.simple_pages(4), gzip=False))
    gz, _ = read_all(warc_kit.make_warc(warc_kit.simple_pages(4)))
    assert errors == []
    assert [(r.type, r.content) for r in plain] == [(r.type, r.content) for r in gz]
    assert plain[1].offset > 0 and plain[0].offset == 0


def test_whole_file_gzip_is_read(warc_kit):
    import gzip

    data = gzip.compress(warc_kit.make_warc(warc_kit.simple_pages(3), gzip=False), mtime=0)
    records, errors = read_all(data)
    assert errors == [] and len(urls(records)) == 3


def test_truncated_member_in_the_middle_loses_only_that_record(warc_kit):
    data = warc_kit.make_warc(warc_kit.simple_pages(6))
    offs = warc_kit.member_offsets(data) + [len(data)]
    k = 3  # cut record #3 (2nd page... index in members) in half
    cut = data[: offs[k] + (offs[k + 1] - offs[k]) // 2] + data[offs[k + 1] :]
    records, errors = read_all(cut)
    assert len(urls(records)) == 5
    assert "https://example.com/page/2" not in urls(records)
    assert [e.reason for e in errors] == ["corrupt_gzip"] or [e.reason for e in errors] == ["truncated_gzip"]
    assert errors[0].offset == offs[k]


def test_truncated_at_end_of_file(warc_kit):
    data = warc_kit.make_warc(warc_kit.simple_pages(3))
    records, errors = read_all(data[: len(data) - 200])
    assert len(urls(records)) == 2
    assert [e.reason for e in errors] == ["truncated_gzip"]


def test_corrupt_bytes_in_a_middle_record(warc_kit):
    data = bytearray(warc_kit.make_warc(warc_kit.simple_pages(6)))
    offs = warc_kit.member_offsets(bytes(data))
    mid = offs[4] + 60
    data[mid : mid + 40] = b"\x00" * 40
    records, errors = read_all(bytes(data))
    assert len(urls(records)) == 5
    assert len(errors) == 1 and errors[0].reason == "corrupt_gzip" and errors[0].offset == offs[4]


def test_trailing_garbage_is_one_error_after_all_records(warc_kit):
    data = warc_kit.make_warc(warc_kit.simple_pages(3)) + b"this is not gzip at all" * 20
    records, errors = read_all(data)
    assert len(urls(records)) == 3
    assert [e.reason for e in errors] == ["trailing_garbage"]
    # Zero padding at the end is not garbage.
    records, errors = read_all(warc_kit.make_warc(warc_kit.simple_pages(3)) + b"\x00" * 512)
    assert errors == [] and len(urls(records)) == 3


def test_garbage_between_records_in_plain_warc(warc_kit):
    parts = warc_kit.make_warc(warc_kit.simple_pages(2), gzip=False, info=None)
    second = parts.index(b"WARC/1.0", 10)
    data = parts[:second] + b"junk junk junk\r\n" * 5 + parts[second:]
    records, errors = read_all(data)
    assert len(urls(records)) == 2
    assert [e.reason for e in errors] == ["garbage"]


def _set_length(data: bytes, which: int, delta: int) -> bytes:
    """Change the Content-Length of the ``which``-th record of a plain WARC by ``delta``."""
    pos = -1
    for _ in range(which + 1):
        pos = data.index(b"Content-Length: ", pos + 1)
    end = data.index(b"\r\n", pos)
    value = int(data[pos + 16 : end]) + delta
    return data[: pos + 16] + str(value).encode() + data[end:]


def test_wrong_content_length_is_repaired_from_framing(warc_kit):
    data = warc_kit.make_warc(warc_kit.simple_pages(4), gzip=False)
    for delta in (-7, 9):
        records, errors = read_all(_set_length(data, 2, delta))  # record 2 = page 1
        assert errors == []
        assert len(urls(records)) == 4
        fixed = [r for r in records if r.repaired]
        assert len(fixed) == 1 and fixed[0].header("warc-target-uri") == "https://example.com/page/1"
        good, _ = read_all(data)
        assert fixed[0].content == good[2].content


def test_wrong_content_length_without_a_boundary_is_an_error(warc_kit):
    long_page = ("https://example.com/long", warc_kit.http_block(("<p>" + "word " * 4000 + "</p>").encode()))
    data = warc_kit.make_warc(warc_kit.simple_pages(1) + [long_page] + warc_kit.simple_pages(2, "after"), gzip=False)
    # Far too short: the block ends inside the page, no record header anywhere near.
    records, errors = read_all(_set_length(data, 2, -12_000))
    assert [e.reason for e in errors] == ["bad_content_length"]
    assert "https://example.com/long" not in urls(records)
    assert len(urls(records)) == 3  # the records after it are still found
    # Far too long: framed by the next header, nothing lost.
    records, errors = read_all(_set_length(data, 2, 50_000))
    assert errors == [] and len(urls(records)) == 4


def test_plain_warc_cut_inside_its_last_record_is_not_repaired(warc_kit):
    data = warc_kit.make_warc(warc_kit.simple_pages(3), gzip=False)
    last = data.rindex(b"WARC/1.0")
    # Cut in the middle of the last page: its declared length runs past the end of the input,
    # and what is there does not end like a record. Truncated, not a wrong length.
    cut = data[: last + (len(data) - last) // 2]
    records, errors = read_all(cut)
    assert [e.reason for e in errors] == ["truncated_record"]
    assert urls(records) == ["https://example.com/page/0", "https://example.com/page/1"]
    assert not any(r.repaired for r in records)


def test_too_long_content_length_of_the_last_record_is_repaired_when_it_ends_like_a_record(warc_kit):
    data = warc_kit.make_warc(warc_kit.simple_pages(3), gzip=False)
    records, errors = read_all(_set_length(data, 3, 500))  # record 3 = the last page
    assert errors == [] and len(urls(records)) == 3
    assert [r.repaired for r in records] == [None, None, None, "bad_content_length"]
    good, _ = read_all(data)
    assert records[-1].content == good[-1].content


def test_not_a_warc():
    records, errors = read_all(b"<html><body>just a page</body></html>" * 50)
    assert records == [] and [e.reason for e in errors] == ["not_warc"]
    records, errors = read_all(zlib.compress(b"x" * 1000))
    assert records == [] and [e.reason for e in errors] == ["not_warc"]
    assert read_all(b"") == ([], [])


def test_lf_only_warc(warc_kit):
    data = warc_kit.make_warc(warc_kit.simple_pages(3), gzip=False).replace(b"\r\n", b"\n")
    records, _errors = read_all(data)
    assert len(urls(records)) == 3


def test_oversized_record_is_streamed_past(warc_kit):
    big = warc_kit.http_block(b"<html><body>" + b"x" * 300_000 + b"</body></html>")
    data = warc_kit.make_warc([("https://example.com/big", big)] + warc_kit.simple_pages(2))
    records, errors = read_all(data, max_content_bytes=100_000)
    assert errors == []
    big_rec = next(r for r in records if r.header("warc-target-uri") == "https://example.com/big")
    assert big_rec.oversized and big_rec.content is None and big_rec.length == len(big)
    assert len(urls(records)) == 3


def test_arc_file():
    html = b"<html><body><p>Hello ARC</p></body></html>"
    http = b"HTTP/1.0 200 OK\nContent-Type: text/html\n\n" + html
    version = b"1 0 Test\nURL IP-address Archive-date Content-type Archive-length\n"
    data = (
        b"filedesc://test.arc 0.0.0.0 20140216050221 text/plain %d\n" % len(version)
        + version
        + b"\n"
        + b"http://example.com/a b 93.184.216.119 20140216050221 text/html %d\n" % len(http)
        + http
        + b"\n"
    )
    records, errors = read_all(data)
    assert errors == []
    assert [r.type for r in records] == ["warcinfo", "response"]
    assert records[1].header("warc-target-uri") == "http://example.com/a b"
    assert records[1].header("warc-date") == "2014-02-16T05:02:21Z"
    assert records[1].content == http


def test_parse_http():
    resp = parse_http(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nX-A: 1\r\nX-A: 2\r\n\r\nbody")
    assert resp.status == 404 and resp.headers["x-a"] == "1, 2" and resp.headers["content-type"] == "text/html"
    block = b"HTTP/1.1 200 OK\nContent-Type: text/plain\n\nhello"
    resp = parse_http(block)
    assert resp.status == 200 and block[resp.body_offset :] == b"hello"
    assert parse_http(b"<html>") is None
