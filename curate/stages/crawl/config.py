"""``crawl.toml``: the crawl stage's settings (every key optional)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from curate.core.config import deep_merge, from_dict, load_toml, parse_bytes
from curate.core.ranges import COUNT, SIZE, Range, check_bounds, check_value
from curate.stages.crawl.extract import ExtractOptions
from curate.stages.crawl.sources import HttpOptions


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

    # Numeric settings and their ranges, checked when the config is built (from_dict) and by
    # validate(); the two sizes are checked there once parsed ("4MB" -> bytes).
    bounds: ClassVar[dict[str, Range]] = {"min_text_chars": COUNT}

    def validate(self, who: str = "crawl") -> CrawlConfig:
        self.max_page_bytes = parse_bytes(self.max_page_bytes)
        self.shard_size = parse_bytes(self.shard_size)
        for key in ("max_page_bytes", "shard_size"):
            check_value(who, key, getattr(self, key), SIZE, integer=True)
        check_bounds(self, who)
        self.content_types = [c.strip().lower() for c in self.content_types]
        self.extract.validate(f"{who}.extract")
        check_bounds(self.http, f"{who}.http")
        return self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load_config(path: str | None = None, overrides: dict[str, Any] | None = None) -> CrawlConfig:

    data = load_toml(path) if path else {}
    if overrides:
        data = deep_merge(data, overrides)
    where = path or "crawl config"
    return from_dict(CrawlConfig, data, where=where).validate()
