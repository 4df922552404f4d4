"""From decoded HTML to main text: parsing once with lxml, then trafilatura under a time limit.

:class:`TextExtractor` runs trafilatura on a tree parsed once with lxml, favouring precision
by default, under a per-page time limit. (Bytes become text in :mod:`curate.stages.crawl.decode`.)

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
  during our own calls (:mod:`curate.stages.crawl.xpaths`);
* better still, the rules of the plain form ``.//*[...]`` (and BODY_XPATH's ``[1]`` forms),
  whose predicates use only attribute tests, tag tests and these functions, are evaluated in
  Python (``PythonRule``, :mod:`curate.stages.crawl.xpath_rules`): tag filtering in C,
  regular expressions compiled once, and one cached verdict per (tag, attributes read), since
  class/id strings repeat a lot. Anything the small parser does not understand keeps its XPath
  form. The same elements are selected (every
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
extraction runs without a limit (:func:`time_limit` yields whether it is active). The exception is
a ``BaseException`` so that trafilatura's own ``except Exception`` blocks cannot swallow it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import lxml.etree
import lxml.html

from curate.core.ranges import COUNT, NON_NEGATIVE, Range, check_bounds
from curate.stages.crawl.xpaths import fast_xpaths

logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
logging.getLogger("htmldate").setLevel(logging.CRITICAL)
logging.getLogger("readability").setLevel(logging.CRITICAL)


class ExtractTimeout(BaseException):
    """Raised inside an extraction that ran past its time limit."""


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

    # Checked when the config is built (curate.core.config.from_dict) and by validate().
    bounds: ClassVar[dict[str, Range]] = {
        "full_below_chars": COUNT,
        "full_min_gain_chars": COUNT,
        "full_below_paragraph_chars": COUNT,
        "time_limit": NON_NEGATIVE,
    }

    def validate(self, who: str = "crawl.extract") -> None:
        from curate.core.errors import ConfigError

        if self.mode not in ("adaptive", "full", "fast"):
            raise ConfigError(f"extract.mode: expected adaptive, full or fast, got {self.mode!r}")
        check_bounds(self, who)


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
