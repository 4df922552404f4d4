"""The crawl stage: web archives (WARC/ARC/WET) -> Parquet shards of extracted documents.

The work per record is a chain of pure functions over iterators, so the same code can run
under :func:`curate.runtime.stage.run_stage` (one input file per worker process, resumable) or,
later, on Ray::

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
with its first examples (file and offset).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from curate.core.config import from_dict, load_toml, parse_bytes
from curate.core.document import Document, stable_id
from curate.core.errors import ConfigError, InputError
from curate.core.progress import Progress
from curate.runtime.stage import Stats, Task, run_stage
from curate.stages.crawl.extract import (
    DecodeError,
    ExtractOptions,
    ExtractTimeout,
    TextExtractor,
    charset_from_content_type,
    decode_html,
    decode_payload,
)
from curate.stages.crawl.sources import (
    DEFAULT_CC_BASE_URL,
    HttpOptions,
    crawl_name_of,
    input_size,
    open_input,
    resolve_inputs,
)
from curate.stages.crawl.warc import Record, RecordError, iter_records, parse_http

STAGE = "crawl"
COUNTED_TYPES = ("response", "resource", "conversion", "revisit")
HTML_SNIFF = (b"<!doctype html", b"<html", b"<head", b"<body")
# Test hook: "INDEX:N" makes the process SIGKILL itself after writing N documents of input
# INDEX (tests use it to check that a killed crawl resumes without duplicates).
CRASH_ENV = "CURATE_TEST_CRASH_AFTER"


@dataclass
class CrawlConfig:
    """``crawl.toml``: every key optional."""

    source: str = "web"
    # Larger HTML payloads (before or after content decoding) are skipped as too_large.
    max_page_bytes: int | str = "4MB"
    content_types: list[str] = field(default_factory=lambda: ["text/html", "application/xhtml+xml"])
    # Treat a payload with no or a generic content type (application/octet-stream) as HTML
    # when it starts like HTML.
    sniff_html: bool = True
    # WET conversion records: text taken as is.
    keep_wet: bool = True
    # Documents with fewer characters of text are rejected as no_text.
    min_text_chars: int = 1
    shard_size: int | str = "256MB"
    extract: ExtractOptions = field(default_factory=ExtractOptions)
    http: HttpOptions = field(default_factory=HttpOptions)

    def validate(self) -> CrawlConfig:
        self.max_page_bytes = parse_bytes(self.max_page_bytes)
        self.shard_size = parse_bytes(self.shard_size)
        if self.max_page_bytes <= 0:
            raise ConfigError("max_page_bytes: must be > 0")
        if self.shard_size <= 0:
            raise ConfigError("shard_size: must be > 0")
        self.content_types = [c.strip().lower() for c in self.content_types]
        self.extract.validate()
        return self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load_config(path: str | None = None, overrides: dict[str, Any] | None = None) -> CrawlConfig:
    from curate.core.config import deep_merge

    data = load_toml(path) if path else {}
    if overrides:
        data = deep_merge(data, overrides)
    where = path or "crawl config"
    return from_dict(CrawlConfig, data, where=where).validate()


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
        try:
            page = record_to_page(item, warc_path, crawl, cfg)
            doc, _ = page_to_document(page, extractor, cfg)
        except Skip as skip:
            if skip.error:
                stats.error(skip.reason, file=warc_path, offset=item.offset, detail=skip.detail or None)
            else:
                stats.reject(skip.reason)
            continue
        if item.repaired:
            stats.example(f"repaired:{item.repaired}", file=warc_path, offset=item.offset)
        stats.kept += 1
        stats.chars["kept"] += len(doc.text)
        if report:
            report(docs=1)
        yield doc


_EXTRACTORS: dict[str, TextExtractor] = {}


def _extractor_for(options: ExtractOptions) -> TextExtractor:
    """One extractor per process and option set (building one imports trafilatura)."""
    key = json.dumps(asdict(options), sort_keys=True)
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = TextExtractor(ExtractOptions(**asdict(options)))
    return _EXTRACTORS[key]


def _crash_hook(index: int) -> int | None:
    value = os.environ.get(CRASH_ENV)
    if not value:
        return None
    at_index, _, after = value.partition(":")
    return int(after or 0) if int(at_index) == index else None


def process_input(task: Task) -> tuple[Stats, str, str | None]:
    """run_stage's per-input function: one archive file -> shards of documents."""
    cfg = from_dict(CrawlConfig, task.config).validate()
    extractor = _extractor_for(cfg.extract)
    stats = Stats()
    crash_after = _crash_hook(task.index)
    writer = task.writer("")
    seen = [0]  # records of any type, to tell an empty input from one without pages
    try:
        with open_input(task.path, cfg.http) as stream:
            # Records are held up to max_page_bytes plus room for HTTP headers.
            items = _guard(iter_records(stream, max_content_bytes=cfg.max_page_bytes + 65536), seen)
            for doc in crawl_records(items, task.path, cfg, extractor, stats, report=task.report):
                writer.write(doc)
                if crash_after is not None and stats.kept >= crash_after:
                    writer._flush_rows()  # a partial shard on disk, as a real crash would leave
                    os.kill(os.getpid(), signal.SIGKILL)
    except InputError as exc:
        # The runner prints the input's path next to the message: do not repeat it.
        raise InputError(str(exc).removeprefix(f"{task.path}: ")) from None
    if not seen[0]:
        raise InputError("empty input (no records)")
    status = "done_with_errors" if stats.errors else "done"
    message = None
    if stats.errors:
        message = ", ".join(f"{k}={v}" for k, v in sorted(stats.errors.items()))
    return stats, status, message


def _guard(items: Iterable[Record | RecordError], seen: list[int]) -> Iterator[Record | RecordError]:
    """Count what the reader yields; a file that holds no record at all is an input that
    cannot be read (status failed), not a file with errors."""
    for item in items:
        if isinstance(item, RecordError) and item.reason == "not_warc" and not seen[0]:
            raise InputError(f"not a WARC/ARC/WET file ({item.detail})")
        seen[0] += 1
        yield item


def crawl(
    inputs: list[str] | tuple[str, ...],
    output_dir: str,
    config: CrawlConfig | None = None,
    *,
    workers: int = 1,
    overwrite: bool = False,
    max_files: int | None = None,
    offset: int = 0,
    cc_base_url: str = DEFAULT_CC_BASE_URL,
    progress: bool | Progress = False,
) -> tuple[dict[str, Any], list]:
    """Crawl ``inputs`` (paths, globs, URLs, snapshot names, listings) into ``output_dir``.

    Resumes a previous run in the same directory unless ``overwrite``. Returns the manifest
    and the per-input results.
    """
    cfg = (config or CrawlConfig()).validate()
    files = resolve_inputs(list(inputs), cc_base_url=cc_base_url, max_files=max_files, offset=offset, http=cfg.http)
    sizes = {f: input_size(f) for f in files}
    by_bytes = all(s is not None for s in sizes.values())
    bar: Progress | None
    if isinstance(progress, Progress):
        bar = progress
    elif progress:
        bar = Progress("crawl", unit="bytes" if by_bytes else "files")
    else:
        bar = None
    weights = {f: float(s or 0) for f, s in sizes.items()} if by_bytes and bar and bar.unit == "bytes" else None
    if files:
        # Build and warm the extractor here, once: forked workers inherit it (imports and
        # justext's stop-word table are then not paid again in every worker).
        _extractor_for(cfg.extract).warm_up()
    return run_stage(
        STAGE,
        files,
        output_dir,
        process_input,
        cfg.to_json(),
        workers=workers,
        overwrite=overwrite,
        shard_bytes=int(cfg.shard_size),
        progress=bar,
        input_weights=weights,
    )
