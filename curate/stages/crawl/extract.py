"""From an HTTP payload to main text: transfer/content decoding, charset, trafilatura.

Three pure steps, each usable on its own:

* :func:`decode_payload` undoes ``Transfer-Encoding: chunked`` and ``Content-Encoding``
  (gzip, deflate, brotli; stacked encodings in reverse order). A payload cut short keeps what
  decodes.
* :func:`decode_html` picks the charset from the HTTP header, then the ``<meta>`` tag, then
  detection (charset-normalizer), so gb2312, windows-1251, EUC-JP ... pages become correct
  Unicode. Declared labels are mapped the way browsers do (gb2312 -> gb18030, iso-8859-1 ->
  windows-1252, shift_jis -> cp932) and a declaration that does not decode is not trusted.
* :class:`TextExtractor` runs trafilatura on a tree parsed once with lxml, favouring precision
  by default, under a per-page time limit.

Speed (measured by ``bench/crawl.py``, interleaved with the plain ``trafilatura.extract`` loop):

* the page is parsed once, with a C-level element class lookup, and elements that hold no text
  and that every trafilatura stage discards anyway (script, style, svg, ...) are removed before
  extraction: trafilatura's cost is dominated by XPath passes that call back into Python for
  each element, and the text comes out byte-identical (checked on 513 real pages);
* most of those XPath passes are trafilatura's boilerplate rules calling ``re:test()``, which
  lxml runs as a Python callback per element, also on elements that lack the attribute tested
  (~40% of the full cascade's time on Common Crawl portal pages). We evaluate the same
  expressions with an attribute-presence test in front of each ``re:test`` whose pattern cannot
  match '' (and plain-string callback arguments), swapped into trafilatura's rule lists only
  during our own calls (curate/extract_xpaths.py);
* better still, the rules of the plain form ``.//*[...]`` (and BODY_XPATH's ``[1]`` forms),
  whose predicates use only attribute tests, tag tests and these functions, are evaluated in
  Python (``PythonRule``): tag filtering in C, regular expressions compiled once, and one
  cached verdict per (tag, attributes read), since class/id strings repeat a lot. Anything the
  small parser does not understand keeps its XPath form. The same elements are selected (every
  rule call checked against lxml during extraction of 503 real pages in all three modes, none
  differed), the text is byte-identical on those pages, and extraction is ~1.6x faster than
  with trafilatura's own expressions on the CC capture, ~1.4-1.5x on the scrapinghub articles
  (~1.2-1.4x over the guarded expressions alone, also with the verdict cache emptied before
  every pass);
* trafilatura's full cascade (its own extractor, then readability and justext as fallbacks)
  costs ~1.7x its ``fast`` mode, and the fallbacks change the result only on pages whose fast
  text is short. ``mode = "adaptive"`` (the default) sends pages with little ``<p>`` text
  (portals, listings: most of a Common Crawl snapshot) straight to the full cascade, runs
  article-like pages in fast mode, and re-runs the full cascade only when the fast text is
  short while the page holds more text outside links. Every page thus pays for one pass,
  rarely two, and on the scrapinghub article benchmark the token F1 equals the full cascade's
  (= ``trafilatura.extract``'s). ``mode = "full"`` and ``"fast"`` are there too.

The time limit uses ``SIGALRM`` (``setitimer``), which Python delivers only to the main thread
of a process. The crawl runs extraction in the main thread of each worker process (and of the
main process with ``--workers 1``), so the limit holds there; called from another thread the
extraction runs without a limit (``TextExtractor.limit_active`` tells which). The exception is
a ``BaseException`` so that trafilatura's own ``except Exception`` blocks cannot swallow it.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import re
import signal
import threading
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import lxml.etree
import lxml.html

from curate.stages.crawl.xpaths import fast_xpaths

logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
logging.getLogger("htmldate").setLevel(logging.CRITICAL)
logging.getLogger("readability").setLevel(logging.CRITICAL)

try:  # brotli is a dependency, but a broken install should only cost brotli pages
    import brotli  # type: ignore
except ImportError:  # pragma: no cover
    brotli = None


class DecodeError(Exception):
    """A payload whose content encoding cannot be undone (reason in ``args[0]``)."""


class ExtractTimeout(BaseException):
    """Raised inside an extraction that ran past its time limit."""


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
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data)
        # Concatenated gzip members (rare, but legal).
        while d.eof and d.unused_data and wbits == 31 and d.unused_data[:2] == b"\x1f\x8b":
            rest = d.unused_data
            d = zlib.decompressobj(wbits)
            out += d.decompress(rest)
        return out + d.flush()
    except zlib.error:
        raise


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


# ---- main text extraction ---------------------------------------------------------------------


@dataclass
class ExtractOptions:
    """trafilatura settings (``[extract]`` in the crawl config)."""

    mode: str = "adaptive"  # adaptive | full | fast (see the module docstring)
    full_below_chars: int = 1000  # adaptive: rerun the full cascade when fast text is shorter
    # ... and the page has at least this many characters outside links beyond the fast text.
    full_min_gain_chars: int = 150
    # adaptive: pages with less text than this in <p> elements (portals, listings, shops: most
    # of a Common Crawl snapshot) go straight to the full cascade, which is cheaper than a fast
    # pass that comes out short followed by a full one.
    full_below_paragraph_chars: int = 1000
    # Drop script/style/svg/... before extraction (same text, less work; see strip_inert).
    strip_inert: bool = True
    # Evaluate trafilatura's regex XPath rules in an equivalent, cheaper form (see _FastXPaths).
    fast_xpaths: bool = True
    favor_precision: bool = True
    favor_recall: bool = False
    include_comments: bool = False
    include_tables: bool = True
    include_links: bool = False
    include_formatting: bool = False
    target_language: str | None = None
    # Per-page wall-clock limit in seconds (0 = none).
    time_limit: float = 5.0

    def validate(self) -> None:
        from curate.core.errors import ConfigError

        if self.mode not in ("adaptive", "full", "fast"):
            raise ConfigError(f"extract.mode: expected adaptive, full or fast, got {self.mode!r}")
        if self.time_limit < 0:
            raise ConfigError("extract.time_limit: must be >= 0")


def _on_alarm(signum, frame):  # pragma: no cover - exercised through time_limit
    raise ExtractTimeout()


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[bool]:
    """Raise :class:`ExtractTimeout` in the block after ``seconds`` (main thread only; yields
    whether the limit is active)."""
    active = seconds > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not active:
        yield False
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# Same parser settings trafilatura uses for its own parsing, except the element class lookup:
# lxml.html's default lookup is a Python callback run every time an element is touched from
# Python (trafilatura touches hundreds of thousands per page set: ~5% of extraction time);
# the C-level default lookup still gives HtmlElement everywhere, which is what trafilatura
# needs (it only uses HtmlMixin methods, never FormElement/InputElement specifics).
_PARSER = lxml.html.HTMLParser(collect_ids=False, default_doctype=False, remove_comments=True, remove_pis=True)
_PARSER.set_element_class_lookup(
    lxml.etree.ElementDefaultClassLookup(
        element=lxml.html.HtmlElement,
        comment=lxml.html.HtmlComment,
        pi=lxml.html.HtmlProcessingInstruction,
        entity=lxml.html.HtmlEntity,
    )
)
_XML_DECL_STR = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")

# Elements that hold no visible text and that every trafilatura stage throws away (its tree
# cleaning deletes them, readability drops script/style itself): removed right after parsing,
# tails kept, so the many XPath passes trafilatura makes over the tree (each one calls back into
# Python for every element) see ~15% fewer elements. JSON-LD scripts stay: trafilatura reads
# them (forum detection, article body rescue). On 513 real pages (scrapinghub benchmark,
# Common Crawl and ClueWeb captures, the samples) the extracted text is byte-identical with and
# without this step, in fast and full mode. Not removed on purpose: noscript (can hold the
# only copy of the text), img/input/embed (readability counts them), forms, nav, footer.
INERT_TAGS = ("script", "style", "svg", "link", "meta", "iframe", "template")


def strip_inert(tree: lxml.html.HtmlElement) -> lxml.html.HtmlElement:
    """Remove :data:`INERT_TAGS` elements in place (keeping the text that follows them)."""
    for element in list(tree.iter(INERT_TAGS)):
        if element.tag == "script" and (element.get("type") or "").strip().lower() == "application/ld+json":
            continue
        if element.getparent() is not None:  # the root cannot be dropped
            element.drop_tree()
    return tree


def parse_html(html: str, strip: bool = True) -> lxml.html.HtmlElement | None:
    """Parse once with lxml (the tree is handed to trafilatura; no re-decoding)."""
    html = _INVALID_XML_CHARS.sub("", _XML_DECL_STR.sub("", html, count=1))
    if not html.strip():
        return None
    try:
        tree = lxml.html.document_fromstring(html, parser=_PARSER)
    except (ValueError, lxml.etree.ParserError):
        return None
    if tree is None or not len(tree):
        return None
    return strip_inert(tree) if strip else tree


_BODY = lxml.etree.XPath("//body")
_LINKS = lxml.etree.XPath("//body//a")


def _squeezed_len(text: str) -> int:
    """Characters of ``text`` once whitespace runs count as one."""
    return len(" ".join(text.split()))


def paragraph_chars(tree: lxml.html.HtmlElement) -> int:
    """Characters of text in ``<p>`` elements (whitespace runs count as one): a cheap guess at
    whether the page is an article that trafilatura's fast pass will extract in full."""
    return sum(_squeezed_len(p.text_content()) for p in tree.iter("p"))


def text_outside_links(tree: lxml.html.HtmlElement) -> int:
    """Visible characters of the page body that are not link text (an upper bound on what any
    extractor can add to a main text: boilerplate is mostly links)."""
    bodies = _BODY(tree)
    root = bodies[0] if bodies else tree
    total = _squeezed_len(root.text_content())
    in_links = sum(_squeezed_len(a.text_content()) for a in _LINKS(tree))
    return max(total - in_links, 0)


class TextExtractor:
    """Main-text extraction with fixed options, reusable across pages (one per worker)."""

    def __init__(self, options: ExtractOptions | None = None):
        from trafilatura.settings import Extractor

        self.options = options or ExtractOptions()
        self.options.validate()
        o = self.options
        common = dict(
            output_format="python",
            precision=o.favor_precision,
            recall=o.favor_recall,
            comments=o.include_comments,
            tables=o.include_tables,
            links=o.include_links,
            formatting=o.include_formatting,
            lang=o.target_language,
        )
        self._fast = Extractor(fast=True, **common)
        self._full = Extractor(fast=False, **common)
        # Adaptive mode's choices (for bench/crawl.py figures): pages sent straight to the full
        # cascade, pages re-run through it after a short fast result.
        self.direct_full = 0
        self.reruns = 0

    def _run(self, tree, settings, url: str | None) -> str:
        from trafilatura import bare_extraction

        settings.url = url
        settings.source = url
        if self.options.fast_xpaths:
            with fast_xpaths().active():
                doc = bare_extraction(tree, options=settings)
        else:
            doc = bare_extraction(tree, options=settings)
        text = (doc.text if doc is not None else None) or ""
        return unicodedata.normalize("NFC", text).strip()

    def needs_full(self, tree, fast_text: str) -> bool:
        """Adaptive mode: is the fast result short *and* does the page hold enough text outside
        links for the fallbacks to find more? (On the 513-page check set every page where the
        full cascade changed the fast result had >= 215 such characters beyond the fast text;
        portal pages whose text is all links are not re-run for nothing.)"""
        if len(fast_text) >= self.options.full_below_chars:
            return False
        return text_outside_links(tree) - _squeezed_len(fast_text) >= self.options.full_min_gain_chars

    def extract_tree(self, tree, url: str | None = None) -> str:
        """Main text of a parsed page ('' when there is none). May raise ExtractTimeout.
        ``tree`` is not modified (trafilatura works on a copy)."""
        mode = self.options.mode
        if mode == "full":
            return self._run(tree, self._full, url)
        if mode == "adaptive" and paragraph_chars(tree) < self.options.full_below_paragraph_chars:
            self.direct_full += 1
            return self._run(tree, self._full, url)
        text = self._run(tree, self._fast, url)
        if mode == "adaptive" and self.needs_full(tree, text):
            # Short result on a page with more text: the fallbacks (readability, justext) may
            # find the real content.
            self.reruns += 1
            full = self._run(tree, self._full, url)
            if full:
                text = full
        return text

    def extract(self, html: str, url: str | None = None) -> str:
        """Parse and extract under the time limit; raises ExtractTimeout past it."""
        with time_limit(self.options.time_limit):
            tree = parse_html(html, strip=self.options.strip_inert)
            if tree is None:
                return ""
            return self.extract_tree(tree, url)

    def warm_up(self) -> None:
        """Pay one-time costs now (lazy imports, justext's stop-word table: ~1 s) so that a
        parent process can do it once before forking its workers."""
        filler = " ".join(["word"] * 30)
        page = f"<html><body><div><span>{filler}</span></div><div><a href='/'>Home</a></div></body></html>"
        try:
            tree = parse_html(page)
            if tree is not None:
                self._run(tree, self._full, None)
        except Exception:
            pass
