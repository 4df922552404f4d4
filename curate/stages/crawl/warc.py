"""WARC / ARC / WET files -> records, streaming, and surviving damaged input.

``iter_records(stream)`` reads a forward-only byte stream (a local file, an HTTP body, an S3
object) and yields :class:`Record` objects in file order, interleaved with
:class:`RecordError` items for the stretches it could not parse. It never raises on bad data:
a truncated gzip member, a corrupt record in the middle, trailing garbage or a wrong
``Content-Length`` each become one ``RecordError`` (reason + offset) and reading goes on at the
next record it can find. A wrong ``Content-Length`` whose block is still whole (the next record
header, or a record terminator at the end of the input, frames it) is read instead, marked
``repaired`` so that the stage counts it. Only I/O errors of the stream itself propagate.

Why our own framing instead of ``warcio.ArchiveIterator``: warcio stops at the first damaged
gzip member or malformed header (``ArchiveLoadFailed``) and cannot resume on a forward-only
stream, gives ARC records random ids, and reads only the first record of WARC files with bare
LF line endings. Here the decompression layer (:class:`curate.stages.crawl.warc_bytes.ByteSource`)
undoes gzip member by member, remembers where each member started (that is the record offset
Common Crawl indexes use) and marks *breaks* where data was lost; this module, the record
layer, parses headers and blocks into typed :class:`Record` objects and re-synchronises on
the next ``WARC/x.y`` header (or ARC URL line) after a break. warcio is still what writes our
samples and what the reference loop in ``bench/crawl.py`` uses.

Memory is bounded: a record's block is held only up to ``max_content_bytes``; larger blocks
are streamed past and yielded with ``content=None`` and ``oversized=True``.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from curate.stages.crawl.warc_bytes import MAX_HEADER_BYTES, PADDING, Break, ByteSource

LZ4_MAGIC = b"\x04\x22\x4d\x18"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

WARC_START = re.compile(rb"WARC/\d+\.\d+\r?\n")
# Where a record may start after damage: a WARC version line or an ARC URL line
# ("url ip yyyymmddhhmmss ..."), at the start of a line.
WARC_RESYNC = WARC_START
ARC_RESYNC = re.compile(rb"[a-zA-Z][\w+.-]*:[^\n]*? \d{1,3}(?:\.\d{1,3}){3} \d{14}\d* [^\n]* \d+\r?\n")


@dataclass
class Record:
    """One archive record. ``headers`` has lower-cased names; ``content`` is the block (HTTP
    headers + payload for ``response``), None when it was larger than the reader's limit."""

    type: str
    headers: dict[str, str]
    offset: int
    content: bytes | None
    length: int
    format: str = "warc"  # 'warc' or 'arc'
    oversized: bool = False
    # Set when the record was readable only by fixing its framing (e.g. "bad_content_length").
    repaired: str | None = None

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass
class RecordError:
    """A stretch of input that could not be read as a record (counted, never raised)."""

    reason: str
    offset: int | None
    detail: str = ""


def _parse_header_lines(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    last = None
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line[:1] in (" ", "\t") and last:
            headers[last] += " " + line.strip()  # folded continuation line
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        last = name.strip().lower()
        headers[last] = value.strip()
    return headers


def _arc_date_to_iso(value: str) -> str | None:
    digits = re.sub(r"\D", "", value)[:14]
    if len(digits) < 8:
        return None
    digits = digits.ljust(14, "0")
    return f"{digits[0:4]}-{digits[4:6]}-{digits[6:8]}T{digits[8:10]}:{digits[10:12]}:{digits[12:14]}Z"


def iter_records(stream: BinaryIO, max_content_bytes: int = 16 << 20) -> Iterator[Record | RecordError]:
    """Yield the records of a WARC, ARC or WET stream (gzip'd or not) in order, with a
    :class:`RecordError` for every stretch that could not be read."""
    src = ByteSource(stream)
    fmt = yield from _detect_format(src)
    if fmt is not None:
        yield from _RecordReader(src, fmt, max_content_bytes).records()


def _detect_format(src: ByteSource) -> Generator[RecordError, None, str | None]:
    """'warc' or 'arc' from the first bytes, positioned at the first record; None (with the
    reason yielded when there is one) when the stream holds nothing to read."""
    src.skip_padding()
    head = src.peek(16)
    if not head:
        return None
    if head.startswith(b"filedesc://"):
        return "arc"
    if WARC_START.match(src.peek(32)):
        return "warc"
    # Not obviously either: look for a first record anywhere (junk before it is an error).
    start = src.pos
    if head.startswith(LZ4_MAGIC) or head.startswith(ZSTD_MAGIC):
        kind = "LZ4" if head.startswith(LZ4_MAGIC) else "zstd"
        yield RecordError(
            "not_warc", 0, f"{kind}-compressed archives are not supported; decompress or recompress with gzip first"
        )
        return None
    if not src.scan_to(WARC_RESYNC):
        yield RecordError("not_warc", 0, f"no WARC or ARC record found (starts with {head[:16]!r})")
        return None
    yield RecordError("garbage", src.raw_offset_at(start), "bytes before the first record")
    return "warc"


@dataclass
class _Header:
    """A record header as read, before its block."""

    rec_type: str
    headers: dict[str, str]
    length: int
    offset: int


class _RecordReader:
    """The record layer over a :class:`ByteSource` positioned at the first record of a ``fmt``
    ('warc' or 'arc') stream. Each step yields what it found (records, errors) and returns
    whether reading goes on; after damage the reader re-synchronises on the next header."""

    def __init__(self, src: ByteSource, fmt: str, max_content_bytes: int):
        self.src = src
        self.fmt = fmt
        self.max_content_bytes = max_content_bytes
        self.resync = ARC_RESYNC if fmt == "arc" else WARC_RESYNC
        self.arc_version = 1  # an ARC v2 file says so in its first (filedesc) record

    def records(self) -> Iterator[Record | RecordError]:
        src = self.src
        while True:
            src.compact()
            src.prune_members()
            src.skip_padding()
            for brk in src.take_breaks(src.pos + 1):
                yield RecordError(brk.reason, brk.raw_offset, brk.detail)
            if not src.ensure(1):
                break
            header = yield from self._header()
            if header is not None and not (yield from self._record(header)):
                break
        for brk in src.take_breaks(1 << 62):
            yield RecordError(brk.reason, brk.raw_offset, brk.detail)

    # ---- headers: the WARC header block or the ARC record line ----------------------------

    def _header(self) -> Generator[RecordError, None, _Header | None]:
        """The next record's header; None (an error yielded, the reader moved on) when it is
        not one."""
        src = self.src
        start = src.pos
        offset = src.raw_offset_at(start)
        first = src.readline()
        if self.fmt == "arc":
            return (yield from self._arc_header(first, offset))
        if not WARC_START.match(first):
            src.seek_back(start)
            yield RecordError("garbage", offset, f"expected a WARC header, found {first[:40]!r}")
            src.skip(1)
            src.scan_to(self.resync)
            return None
        return (yield from self._warc_header(offset))

    def _warc_header(self, offset: int) -> Generator[RecordError, None, _Header | None]:
        """The named fields after a ``WARC/x.y`` line, up to the blank line that ends them."""
        src = self.src
        lines: list[bytes] = []
        size = 0
        while True:
            line = src.readline()
            size += len(line)
            if not line or line in (b"\r\n", b"\n") or size > MAX_HEADER_BYTES:
                break
            lines.append(line)
        if not line or size > MAX_HEADER_BYTES:
            brks = src.take_breaks(src.pos + 1)
            reason = brks[0].reason if brks else ("truncated_record" if not line else "bad_header")
            yield RecordError(reason, offset, "record header not terminated")
            if line:
                src.scan_to(self.resync)
            return None
        headers = _parse_header_lines(lines)
        try:
            length = int(headers.get("content-length", ""))
            if length < 0:
                raise ValueError
        except ValueError:
            yield RecordError("bad_header", offset, f"bad Content-Length {headers.get('content-length')!r}")
            src.scan_to(self.resync)
            return None
        return _Header(headers.get("warc-type", "").lower(), headers, length, offset)

    def _arc_header(self, first: bytes, offset: int) -> Generator[RecordError, None, _Header | None]:
        """An ARC record line (``url ip date content-type length``, more fields in ARC v2),
        its fields named like the WARC headers they correspond to."""
        text = first.decode("latin-1").rstrip("\r\n")
        if text.startswith("filedesc://"):
            fields = text.rsplit(" ", 4)
        else:
            fields = text.rsplit(" ", 9 if self.arc_version == 2 else 4)
        try:
            length = int(fields[-1])
            if length < 0 or len(fields) < 5:
                raise ValueError
        except ValueError:
            yield RecordError("bad_header", offset, f"bad ARC record line {first[:60]!r}")
            self.src.scan_to(self.resync)
            return None
        url = fields[0]
        headers = {
            "warc-target-uri": url,
            "warc-date": _arc_date_to_iso(fields[2]) or "",
            "arc-ip-address": fields[1],
            "arc-content-type": fields[3],
        }
        return _Header("warcinfo" if url.startswith("filedesc://") else "", headers, length, offset)

    # ---- blocks ------------------------------------------------------------------------------

    def _record(self, h: _Header) -> Generator[Record | RecordError, None, bool]:
        """Read the block after ``h`` and yield the record (or why it cannot be read)."""
        src = self.src
        block_start = src.pos
        # The block: held up to the limit, streamed past beyond it.
        oversized = h.length > self.max_content_bytes
        if oversized:
            content = None
            got = src.skip(h.length)
        else:
            content = src.read(h.length)
            got = len(content)
        brks = src.take_breaks(block_start + got)
        if brks:
            return (yield from self._lost_in_block(h, brks, block_start, content is not None))
        if got < h.length:
            return (yield from self._cut_short(h, block_start, got, content))
        good = self._at_record_end()
        repaired = None
        if not good and content is not None and self.fmt == "warc":
            # Wrong Content-Length: when the next record header sits shortly after (or inside)
            # what we took as the block, the record is still whole: frame it by that header.
            content = _reframe(src, block_start, h.length)
            if content is not None:
                repaired = "bad_content_length"
                good = True
        if not good:
            yield RecordError(
                "bad_content_length", h.offset, f"Content-Length {h.length} does not end at a record boundary"
            )
            # The next record may be inside what we took as this block: look there first.
            if content is not None or not oversized:
                src.seek_back(block_start)
            src.scan_to(self.resync)
            return True
        yield self._build(h, content, oversized, repaired)
        return True

    def _lost_in_block(
        self, h: _Header, brks: list[Break], block_start: int, held: bool
    ) -> Generator[RecordError, None, bool]:
        """Data was lost inside this record: report it once and restart at the break."""
        src = self.src
        brk = brks[0]
        if held:
            src.seek_back(max(brk.pos, block_start))
        yield RecordError(brk.reason, h.offset, brk.detail)
        # Later breaks in what we read ahead are reported when the reader gets there.
        src.breaks[:0] = [b for b in brks[1:] if b.pos > brk.pos]
        return src.scan_to(self.resync)

    def _cut_short(
        self, h: _Header, block_start: int, got: int, content: bytes | None
    ) -> Generator[Record | RecordError, None, bool]:
        """A block cut short by the end of input; a truncated gzip member there is the same
        loss. Reading goes on only when a too-long Content-Length was the cause."""
        src = self.src
        brks = src.take_breaks(block_start + got + 1)
        if not brks and content is not None and self.fmt == "warc":
            # Or a Content-Length that is too long: if the records after it are framed
            # correctly, frame this one by the next header (or the end of input).
            fixed = _reframe(src, block_start, h.length)
            if fixed is not None:
                yield Record(h.rec_type, h.headers, h.offset, fixed, h.length, self.fmt, False, "bad_content_length")
                return True
        reason = brks[0].reason if brks else "truncated_record"
        yield RecordError(reason, h.offset, f"block has {got} of {h.length} bytes")
        return False

    def _at_record_end(self) -> bool:
        """Does the block end where a record ends: CRLF CRLF (ARC: one LF)? Anything else means
        a wrong length."""
        src = self.src
        if self.fmt != "warc":
            tail = src.peek(1)
            return tail in (b"\n", b"") or tail == b"\r"
        tail = src.peek(4)
        good = tail in (b"\r\n\r\n", b"") or tail.startswith(b"\n\n") or (len(tail) < 4 and not tail.strip(PADDING))
        if not good and tail.startswith(b"\r\n") and src.peek(4)[2:3] in (b"W", b""):
            good = True  # a single CRLF before the next record: common enough to accept
        if not good and tail.startswith(b"\n") and src.peek(6)[1:6] == b"WARC/":
            good = True
        return good

    def _build(self, h: _Header, content: bytes | None, oversized: bool, repaired: str | None) -> Record:
        """The record; an ARC record gets the type its block shows (ARC has no record types)."""
        rec_type = h.rec_type
        if self.fmt == "arc":
            if rec_type == "warcinfo":
                version_line = (content or b"").split(b"\n", 1)[0].split()
                if version_line[:1] == [b"2"]:
                    self.arc_version = 2
            elif content is not None and content[:5] == b"HTTP/":
                rec_type = "response"
            else:
                rec_type = "resource"
                h.headers["content-type"] = h.headers.get("arc-content-type", "")
        return Record(rec_type, h.headers, h.offset, content, h.length, self.fmt, oversized, repaired)


def _reframe(src: ByteSource, block_start: int, length: int) -> bytes | None:
    """The block of a record whose Content-Length is wrong, framed instead by the next record
    header after a record terminator (within the declared length plus a little slack) or by a
    record terminator at the end of input; None when no such boundary is found (the block is
    not known to be whole) or data was lost in between."""
    src.seek_back(block_start)
    window = src.peek(length + 4096)
    end = None
    for m in WARC_START.finditer(window, 1):
        at = m.start()
        if window[:at].endswith((b"\r\n\r\n", b"\n\n")):
            end = at
            break
    if end is None:
        if not src.eof or len(window) > length + 4096 - 1:
            return None
        if not window.endswith((b"\r\n\r\n", b"\n\n")):
            return None  # the input ends inside the block: truncated, not a wrong length
        end = len(window)  # the last record of the input, whole
    if any(b.pos < block_start + end for b in src.breaks):
        return None
    body = window[:end]
    for sep in (b"\r\n\r\n", b"\n\n"):
        if body.endswith(sep):
            body = body[: -len(sep)]
            break
    src.seek_back(block_start + end)
    return body
