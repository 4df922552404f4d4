"""Crawl records -> documents: the cheap checks, decoding, extraction and accounting.

The work per record is a chain of pure functions over iterators (this module); the stage
runs it per input file (:mod:`curate.stages.crawl.run`)::

    iter_records(stream)            -> Record | RecordError      (curate.stages.crawl.warc)
    record_to_page(record, ...)     -> Page             or raises Skip(reason)
    page_to_document(page, ...)     -> Document         or raises Skip(reason)
    crawl_records(items, ...)       -> Document stream, counting everything in a Stats

What counts as *read*: every ``response``, ``resource``, ``conversion`` (WET) and
``revisit`` record, plus every stretch of input that could not be parsed as a record (one
error each). ``warcinfo``, ``request`` and ``metadata`` records describe other records and
are skipped without being counted (warcinfo is still used for the snapshot name). So in each
manifest ``read = kept + rejected + errors`` where rejections are deliberate skips
(``not_html``, ``status_404``, ``redirect``, ``revisit``, ``too_large``, ``no_text``,
``extract_timeout``, ``not_response``) and errors are damage (``corrupt_gzip``,
``truncated_gzip``, ``truncated_record``, ``bad_content_length``, ``garbage``,
``trailing_garbage``, ``bad_http``, ``bad_content_encoding``, ``extract_failed`` ...), each
with its first examples (file and offset). A record whose Content-Length disagrees with its
bytes but whose block is whole (framed by the next record header, or by the record terminator
at the end of the input) is read and also counted under ``repaired`` (``bad_content_length``,
examples under ``repaired:bad_content_length``); one whose block cannot be framed is the error
``bad_content_length``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from curate.core.accounting import Stats
from curate.core.document import Document, stable_id
from curate.stages.crawl.config import CrawlConfig
from curate.stages.crawl.decode import DecodeError, charset_from_content_type, decode_html, decode_payload, parse_http
from curate.stages.crawl.extract import ExtractTimeout, TextExtractor
from curate.stages.crawl.sources import crawl_name_of
from curate.stages.crawl.warc import Record, RecordError

COUNTED_TYPES = ("response", "resource", "conversion", "revisit")
HTML_SNIFF = (b"<!doctype html", b"<html", b"<head", b"<body")


class Skip(Exception):
    """A record deliberately not turned into a document (``reason``), or one that is damaged
    (``error=True``: counted under errors with an example)."""

    def __init__(self, reason: str, error: bool = False, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.error = error
        self.detail = detail


@dataclass
class Page:
    """A record that passed the cheap checks: what extraction needs, nothing more."""

    url: str | None
    date: datetime | None
    record_id: str | None
    warc_path: str
    offset: int
    crawl: str | None
    kind: str  # 'html' or 'text' (WET conversion)
    body: bytes
    http_headers: dict[str, str]
    content_type: str | None
    meta: dict[str, Any] = field(default_factory=dict)


def parse_warc_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def clean_uri(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]  # wget writes <uri>
    return value.replace(" ", "%20") or None


def record_uuid(record_id: str | None) -> str | None:
    """``<urn:uuid:1234-...>`` -> ``1234-...`` (other ids lose only their angle brackets)."""
    if not record_id:
        return None
    rid = record_id.strip().strip("<>")
    return rid[len("urn:uuid:") :] if rid.lower().startswith("urn:uuid:") else rid or None


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def warcinfo_crawl(record: Record) -> str | None:
    """The snapshot a warcinfo record says its file belongs to (``isPartOf``)."""
    for line in (record.content or b"").decode("utf-8", "replace").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "ispartof" and value.strip():
            return value.strip()
    return None


def record_to_page(record: Record, warc_path: str, crawl: str | None, cfg: CrawlConfig) -> Page:
    """Cheap checks before any decoding or parsing: type, status, content type, size."""
    rtype = record.type
    if rtype == "revisit":
        raise Skip("revisit")
    if rtype == "conversion" and not cfg.keep_wet:
        raise Skip("not_response")
    if rtype not in ("response", "resource", "conversion"):
        raise Skip("not_response")
    if record.oversized or record.content is None:
        raise Skip("too_large")
    meta: dict[str, Any] = {}
    if record.repaired:
        meta["repaired"] = record.repaired
    common = dict(
        url=clean_uri(record.header("warc-target-uri")),
        date=parse_warc_date(record.header("warc-date")),
        record_id=record.header("warc-record-id"),
        warc_path=warc_path,
        offset=record.offset,
        crawl=crawl,
    )
    if rtype == "conversion":
        lang = record.header("warc-identified-content-language")
        if lang:
            meta["wet_languages"] = lang
        return Page(kind="text", body=record.content, http_headers={}, content_type="text/plain", meta=meta, **common)
    if rtype == "response" and (record.content[:5] == b"HTTP/" or record.format == "arc"):
        http = parse_http(record.content)
        if http is None:
            raise Skip("bad_http", error=True, detail="response block without an HTTP status line")
        if http.status is None:
            raise Skip("bad_http", error=True, detail="unreadable HTTP status line")
        if http.status != 200:
            raise Skip("redirect" if 300 <= http.status < 400 else f"status_{http.status}")
        headers = http.headers
        body = record.content[http.body_offset :]
    elif rtype == "response" and record.header("content-type", "").startswith("application/http"):
        raise Skip("bad_http", error=True, detail="response block without an HTTP status line")
    else:
        # A resource record (or a headerless response): the WARC Content-Type describes it.
        headers = {"content-type": record.header("content-type", "")}
        body = record.content
    ctype = headers.get("content-type", "")
    mime = _mime(ctype)
    if mime not in cfg.content_types:
        generic = mime in ("", "application/octet-stream", "unknown/unknown", "text/plain")
        if not (cfg.sniff_html and generic and body.lstrip()[:64].lower().startswith(HTML_SNIFF)):
            raise Skip("not_html")
    if len(body) > cfg.max_page_bytes:
        raise Skip("too_large")
    return Page(kind="html", body=body, http_headers=headers, content_type=mime or "text/html", meta=meta, **common)


def page_to_document(page: Page, extractor: TextExtractor, cfg: CrawlConfig) -> tuple[Document, str | None]:
    """Decode and extract one page; returns the document and the charset used."""
    charset: str | None
    if page.kind == "text":
        text, charset = page.body.decode("utf-8", "replace").strip(), "utf-8"
    else:
        try:
            body = decode_payload(page.body, page.http_headers)
        except DecodeError as exc:
            raise Skip("bad_content_encoding", error=True, detail=str(exc)) from None
        if len(body) > cfg.max_page_bytes:
            raise Skip("too_large")
        html, charset = decode_html(body, charset_from_content_type(page.http_headers.get("content-type")))
        try:
            text = extractor.extract(html, page.url)
        except ExtractTimeout:
            raise Skip("extract_timeout") from None
        except RecursionError:
            raise Skip("extract_failed", error=True, detail="page nesting too deep") from None
        except Exception as exc:  # a trafilatura bug on one page must not stop the file
            raise Skip("extract_failed", error=True, detail=f"{type(exc).__name__}: {exc}"[:200]) from None
    if len(text) < max(cfg.min_text_chars, 1):
        raise Skip("no_text")
    record_id = page.record_id
    uid = record_uuid(record_id) or stable_id(cfg.source, page.url, page.date.isoformat() if page.date else None)
    doc = Document(
        id=uid,
        text=text,
        url=page.url,
        source=cfg.source,
        crawl=page.crawl,
        date=page.date,
        warc_path=page.warc_path,
        warc_offset=page.offset,
        warc_record_id=record_id,
        content_type=page.content_type,
        charset=charset,
        meta=json.dumps(page.meta, sort_keys=True, ensure_ascii=False) if page.meta else None,
    )
    return doc, charset


def crawl_records(
    items: Iterable[Record | RecordError],
    warc_path: str,
    cfg: CrawlConfig,
    extractor: TextExtractor,
    stats: Stats,
    crawl: str | None = None,
    report: Any = None,
) -> Iterator[Document]:
    """Records of one input -> documents, counting every counted record in ``stats``."""
    crawl = crawl or crawl_name_of(warc_path)
    for item in items:
        if isinstance(item, RecordError):
            stats.read += 1
            stats.error(item.reason, file=warc_path, offset=item.offset, detail=item.detail or None)
            if report:
                report(records=1)
            continue
        if item.type == "warcinfo":
            crawl = warcinfo_crawl(item) or crawl
            continue
        if item.type not in COUNTED_TYPES:
            continue  # request, metadata, ...: describe other records, not counted
        stats.read += 1
        if report:
            report(records=1)
        if item.repaired:  # counted whatever becomes of the record: never silently
            stats.repaired[item.repaired] += 1
            stats.example(f"repaired:{item.repaired}", file=warc_path, offset=item.offset)
        try:
            page = record_to_page(item, warc_path, crawl, cfg)
            doc, _ = page_to_document(page, extractor, cfg)
        except Skip as skip:
            if skip.error:
                stats.error(skip.reason, file=warc_path, offset=item.offset, detail=skip.detail or None)
            else:
                stats.reject(skip.reason)
            continue
        stats.kept += 1
        stats.chars["kept"] += len(doc.text)
        if report:
            report(docs=1)
        yield doc
