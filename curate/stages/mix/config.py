"""What the user asked the mix for: :class:`MixConfig` and its :class:`SourceSpec` list, from
``--source NAME=PATH:WEIGHT`` options and/or a TOML file with ``[[sources]]`` tables."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from curate.core.config import check_finite, from_dict, load_toml, parse_bytes, parse_count, resolve_path, resolve_paths
from curate.core.errors import ConfigError
from curate.core.ranges import POSITIVE, SEED, SIZE, Range, check_bounds, check_value
from curate.core.readers import FORMATS

# The fewest tokens a chunk may hold: room for any one character, whatever the tokenizer.
MIN_DOC_TOKENS = 16


@dataclass
class SourceSpec:
    """One source: a name, its inputs, and its target share of output tokens."""

    name: str
    paths: list[str]
    weight: float
    format: str = "auto"  # auto | parquet | jsonl | text | code
    text_field: str = "text"  # JSONL field holding the text
    id_field: str = "id"
    date_field: str = "date"
    max_epochs: float | None = None  # overrides the mix-wide cap for this source

    # Checked when the config is built (from_dict) and by MixConfig.validate().
    bounds: ClassVar[dict[str, Range]] = {"weight": POSITIVE, "max_epochs": POSITIVE}

    def __post_init__(self) -> None:
        # The weight's own message (older than the declared bounds, and relied on) comes first.
        if not (isinstance(self.weight, (int, float)) and math.isfinite(self.weight) and self.weight > 0):
            raise ConfigError(f"source {self.name!r}: weight must be a positive number, got {self.weight!r}")


@dataclass
class MixConfig:
    sources: list[SourceSpec] = field(default_factory=list)
    tokens: int | str = 0  # the budget: 2000000, "2M", "500k"
    max_epochs: float = 4.0
    seed: int = 0
    strict: bool = False
    tokenizer: str | None = None  # directory with tokenizer.json; None = UTF-8 bytes
    shard_size: int | str = "64MB"  # text bytes per output shard
    shuffle_memory: int | str = "512MB"  # upper bound on one shuffle bucket held in memory
    pretokenize: bool = False
    output: str | None = None  # output directory when -o is not given
    # Documents longer than this many tokens are cut into chunks of at most this many (at
    # paragraph, then sentence, then token boundaries) and the mix samples chunks; 0 or None
    # keeps documents whole (curate.stages.mix.chunks). A multiple of usual context lengths.
    max_doc_tokens: int | None = 8192

    # Checked when the config is built (from_dict) and by validate(); the budget and the two
    # sizes are checked there once parsed ("2M", "64MB"). The seed feeds numpy's generators.
    bounds: ClassVar[dict[str, Range]] = {
        "max_epochs": POSITIVE,
        "seed": SEED,
        "max_doc_tokens": Range(MIN_DOC_TOKENS).or_off(0),
    }

    def validate(self, who: str = "mix") -> None:
        if not self.sources:
            raise ConfigError("no sources given (use --source NAME=PATH:WEIGHT or [[sources]] in --config)")
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"source name(s) given twice: {', '.join(dup)}")
        for s in self.sources:
            if not s.name or any(c in s.name for c in "=:,/ "):
                raise ConfigError(f"source name {s.name!r}: use letters, digits, '-' or '_'")
            if not s.paths:
                raise ConfigError(f"source {s.name!r}: no paths")
            check_bounds(s, f"source {s.name!r}")
            check_finite(s, f"source {s.name!r}")  # --source web=x:inf is built in code
            if s.format not in FORMATS:
                raise ConfigError(f"source {s.name!r}: unknown format {s.format!r} (known: {', '.join(FORMATS)})")
        if self.budget <= 0:
            raise ConfigError("the token budget must be positive (--tokens 2M)")
        check_bounds(self, who)
        check_finite(self, who)
        for key, value in (("shard_size", self.shard_bytes), ("shuffle_memory", self.shuffle_bytes)):
            check_value(who, key, value, SIZE, integer=True)

    @property
    def budget(self) -> int:
        return parse_count(self.tokens)

    @property
    def chunk_limit(self) -> int | None:
        """Tokens a row may hold (``max_doc_tokens``), None when documents are kept whole."""
        return self.max_doc_tokens or None

    @property
    def shard_bytes(self) -> int:
        return parse_bytes(self.shard_size)

    @property
    def shuffle_bytes(self) -> int:
        return parse_bytes(self.shuffle_memory)

    def to_json(self) -> dict[str, Any]:
        return {
            "sources": [{k: v for k, v in vars(s).items() if v is not None} for s in self.sources],
            "tokens": self.budget,
            "max_epochs": self.max_epochs,
            "seed": self.seed,
            "strict": self.strict,
            "tokenizer": self.tokenizer,
            "shard_size": self.shard_bytes,
            "shuffle_memory": self.shuffle_bytes,
            "pretokenize": self.pretokenize,
            "max_doc_tokens": self.chunk_limit,
        }


def parse_source_option(text: str) -> SourceSpec:
    """``web=work/dedup:0.55`` or ``books=a.txt,b.txt:0.2`` -> SourceSpec."""
    usage = "expected NAME=PATH[,PATH...]:WEIGHT, e.g. books=samples/books:0.2"
    if "=" not in text:
        raise ConfigError(f"--source {text!r}: {usage}")
    name, rest = text.split("=", 1)
    if ":" not in rest:
        raise ConfigError(f"--source {text!r}: no weight; {usage}")
    paths_part, weight_part = rest.rsplit(":", 1)
    try:
        weight = float(weight_part)
    except ValueError:
        raise ConfigError(f"--source {text!r}: weight {weight_part!r} is not a number; {usage}") from None
    paths = [p for p in paths_part.split(",") if p]
    if not name.strip() or not paths:
        raise ConfigError(f"--source {text!r}: {usage}")
    return SourceSpec(name=name.strip(), paths=paths, weight=weight)


def _paths_relative_to(data: dict[str, Any], base: str) -> dict[str, Any]:
    data = dict(data)
    for key in ("tokenizer", "output"):
        if isinstance(data.get(key), str) and data[key] != "bytes":
            data[key] = resolve_path(data[key], base)
    if isinstance(data.get("sources"), list):
        data["sources"] = [
            {**s, "paths": resolve_paths(s["paths"], base)} if isinstance(s, dict) and "paths" in s else s
            for s in data["sources"]
        ]
    return data


def load_mix_config(
    path: str | None, overrides: dict[str, Any] | None = None, extra_sources: list[SourceSpec] | None = None
) -> MixConfig:
    """A MixConfig from a TOML file (``[[sources]]`` tables), option overrides (None = keep) and
    ``--source`` specs, which replace config sources of the same name and add the others. Paths
    in the file (sources' ``paths``, ``tokenizer``, ``output``) are relative to its folder; paths
    in ``overrides`` and ``extra_sources`` are taken as given."""
    data: dict[str, Any] = _paths_relative_to(load_toml(path), os.path.dirname(path)) if path else {}
    where = str(path) if path else "mix options"
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    sources = data.get("sources", [])
    if not isinstance(sources, list):
        raise ConfigError(f"{where}: 'sources' must be an array of tables ([[sources]])")
    for i, s in enumerate(sources):
        if isinstance(s, dict):
            if isinstance(s.get("paths"), str):
                s["paths"] = [s["paths"]]  # a single path is fine too
            if "path" in s and "paths" not in s:
                raise ConfigError(f"{where}.sources[{i}]: unknown key 'path' (did you mean 'paths'?)")
    if extra_sources:
        given = {s.name for s in extra_sources}
        sources = [s for s in sources if not (isinstance(s, dict) and s.get("name") in given)]
        sources += [dict(vars(s)) for s in extra_sources]
    data["sources"] = sources
    cfg = from_dict(MixConfig, data, where=where)
    cfg.validate()
    return cfg
