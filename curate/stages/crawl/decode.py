"""From an HTTP response block to Unicode text: status and headers, content codings, charsets.

Three pure steps, each usable on its own (:mod:`curate.stages.crawl.extract` takes over from the
text):

* :func:`parse_http` reads the status line and headers at the start of a ``response`` record's
  block and says where the payload starts (bare LF line ends tolerated).
* :func:`decode_payload` undoes ``Transfer-Encoding: chunked`` and ``Content-Encoding``
  (gzip, deflate, brotli; stacked encodings in reverse order). A payload cut short keeps what
  decodes.
* :func:`decode_html` picks the charset from the HTTP header, then the ``<meta>`` tag, then
  detection (charset-normalizer), so gb2312, windows-1251, EUC-JP ... pages become correct
  Unicode. Declared labels are mapped the way browsers do (gb2312 -> gb18030, iso-8859-1 ->
  windows-1252, shift_jis -> cp932) and a declaration that does not decode is not trusted.
"""

from __future__ import annotations

import codecs
import re
import zlib
from dataclasses import dataclass, field

try:  # brotli is a dependency, but a broken install should only cost brotli pages
    import brotli  # type: ignore
except ImportError:  # pragma: no cover
    brotli = None


class DecodeError(Exception):
    """A payload whose content encoding cannot be undone (reason in ``args[0]``)."""


# ---- the HTTP response head ---------------------------------------------------------------------


@dataclass
class HttpResponse:
    """Status line and headers of an HTTP response block, and where its body starts."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body_offset: int = 0


def parse_http(block: bytes) -> HttpResponse | None:
    """Parse the HTTP status line and headers at the start of a response block; None when the
    block does not start with an HTTP status line. Tolerates bare LF line ends."""
    if not block.startswith(b"HTTP/"):
        return None
    end = block.find(b"\r\n\r\n")
    sep = 4
    lf_end = block.find(b"\n\n")
    if end < 0 or (0 <= lf_end < end):
        end, sep = lf_end, 2
    if end < 0:
        end, sep = len(block), 0
    lines = block[:end].split(b"\n")
    status_parts = lines[0].split(None, 2)
    try:
        status = int(status_parts[1]) if len(status_parts) > 1 else None
    except ValueError:
        status = None
    headers: dict[str, str] = {}
    for raw in lines[1:]:
        name, colon, value = raw.decode("latin-1").partition(":")
        if colon:
            key = name.strip().lower()
            value = value.strip()
            # Repeated headers are joined like HTTP says; Content-Type keeps the first one.
            if key in headers and key != "content-type":
                headers[key] += ", " + value
            elif key not in headers:
                headers[key] = value
    return HttpResponse(status, headers, end + sep)


# ---- transfer and content encodings ---------------------------------------------------------


def dechunk(data: bytes) -> bytes:
    """Undo HTTP chunked transfer coding; data that is not validly chunked is returned as is
    (servers and crawlers both get this header wrong), a cut-short last chunk is kept."""
    out = bytearray()
    pos = 0
    n = len(data)
    while pos < n:
        eol = data.find(b"\n", pos, pos + 64)
        if eol < 0:
            return data if not out else bytes(out)
        size_field = data[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            return data if not out else bytes(out)
        pos = eol + 1
        if size == 0:
            break
        out += data[pos : pos + size]
        pos += size
        if data[pos : pos + 2] == b"\r\n":
            pos += 2
        elif data[pos : pos + 1] == b"\n":
            pos += 1
    return bytes(out)


def _inflate(data: bytes, wbits: int) -> bytes:
    """Inflate one stream (``wbits`` as zlib takes it); raises zlib.error on bad data."""
    d = zlib.decompressobj(wbits)
    out = d.decompress(data)
    # Concatenated gzip members (rare, but legal).
    while d.eof and d.unused_data and wbits == 31 and d.unused_data[:2] == b"\x1f\x8b":
        rest = d.unused_data
        d = zlib.decompressobj(wbits)
        out += d.decompress(rest)
    return out + d.flush()


def _gunzip(data: bytes) -> bytes:
    try:
        return _inflate(data, 31)
    except zlib.error as exc:
        # A truncated stream raises only at flush on some inputs: keep what decoded.
        d = zlib.decompressobj(31)
        try:
            part = d.decompress(data)
        except zlib.error:
            part = b""
        if part:
            return part
        raise DecodeError(f"bad gzip content ({exc})") from None


def _deflate(data: bytes) -> bytes:
    # "deflate" is zlib-wrapped by the RFC, raw deflate by many servers: try both.
    for wbits in (15, -15):
        try:
            return _inflate(data, wbits)
        except zlib.error:
            continue
    raise DecodeError("bad deflate content")


def decode_payload(body: bytes, headers: dict[str, str]) -> bytes:
    """Undo transfer and content codings named in (lower-cased) HTTP ``headers``."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = dechunk(body)
    codings = [c.strip().lower() for c in headers.get("content-encoding", "").split(",") if c.strip()]
    for coding in reversed(codings):
        if coding in ("identity", "none", "utf-8", "utf8"):
            continue
        if coding in ("gzip", "x-gzip"):
            # Crawlers often store the payload already decoded but keep the header.
            if body[:2] == b"\x1f\x8b":
                body = _gunzip(body)
        elif coding == "deflate":
            if body[:1] in (b"\x78",) or body.lstrip()[:1] != b"<":
                body = _deflate(body)
        elif coding == "br":
            if brotli is None:
                raise DecodeError("brotli content but the brotli module is missing")
            if body.lstrip()[:1] == b"<":
                continue
            try:
                body = brotli.decompress(body)
            except brotli.error as exc:
                raise DecodeError(f"bad brotli content ({exc})") from None
        else:
            raise DecodeError(f"unsupported content encoding {coding!r}")
    return body


# ---- charsets ---------------------------------------------------------------------------------

# Labels mapped to what browsers actually decode them as (a superset of the declared one).
CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "gb_2312-80": "gb18030",
    "cp936": "gb18030",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso-8859-9": "cp1254",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "big5": "big5hkscs",
    "tis-620": "cp874",
    "iso-8859-11": "cp874",
    "x-euc-jp": "euc_jp",
    "utf8": "utf-8",
    "unicode": "utf-8",
}

META_CHARSET_RE = re.compile(rb"""<meta[^>]{0,300}?charset\s*=\s*["']?\s*([a-zA-Z0-9_:.\-]+)""", re.IGNORECASE)
XML_DECL_RE = re.compile(rb"""^\s*<\?xml[^>]{0,200}?encoding\s*=\s*["']([a-zA-Z0-9_.\-]+)""", re.IGNORECASE)


def normalize_charset(label: str | None) -> str | None:
    """A Python codec name for a declared charset label, None when unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = CHARSET_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def charset_from_content_type(value: str | None) -> str | None:
    if not value:
        return None
    m = re.search(r"charset\s*=\s*[\"']?([^\s;\"']+)", value, re.IGNORECASE)
    return m.group(1) if m else None


def sniff_meta_charset(body: bytes, limit: int = 4096) -> str | None:
    """The charset declared in a ``<meta>`` tag (or XML declaration) near the top."""
    head = body[:limit]
    m = META_CHARSET_RE.search(head) or XML_DECL_RE.search(head)
    return m.group(1).decode("ascii", "replace") if m else None


def _try_decode(body: bytes, codec: str | None) -> str | None:
    if not codec:
        return None
    try:
        return body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def detect_charset(body: bytes) -> str | None:
    """Statistical detection (charset-normalizer) on a bounded sample of the page."""
    from charset_normalizer import from_bytes

    best = from_bytes(body[:65536]).best()
    return normalize_charset(best.encoding) if best is not None else None


def decode_html(body: bytes, http_charset: str | None = None) -> tuple[str, str]:
    """Decode an HTML payload to ``(text, codec name)``.

    Order: a BOM, the HTTP header charset, the ``<meta>`` charset, strict UTF-8, detection;
    a declaration is used only if the bytes decode with it. Last resort: UTF-8 with
    replacement characters (never an exception).
    """
    for bom, codec in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if body.startswith(bom):
            text = _try_decode(body[len(bom) :], codec)
            if text is not None:
                return text, codec
    tried: set[str] = set()
    for label in (http_charset, sniff_meta_charset(body)):
        codec = normalize_charset(label)
        if codec and codec not in tried:
            tried.add(codec)
            # A page declared as single-byte latin but valid UTF-8 is UTF-8 (a common lie).
            if codec == "cp1252" and _try_decode(body, "utf-8") is not None and not body.isascii():
                return body.decode("utf-8"), "utf-8"
            text = _try_decode(body, codec)
            if text is not None:
                return text, codec
    text = _try_decode(body, "utf-8")
    if text is not None:
        return text, "utf-8"
    codec = detect_charset(body)
    text = _try_decode(body, codec)
    if text is not None and codec:
        return text, codec
    return body.decode("utf-8", "replace"), "utf-8"
