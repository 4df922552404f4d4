"""The filter registry and the chain: building filters from a TOML chain, running them in order.

A chain file is a list of ``[[filters]]`` tables, each with ``name`` and that filter's
parameters, applied in order::

    [[filters]]
    name = "language"
    languages = ["en", "de"]

    [[filters]]
    name = "gopher_quality"
    mode = "annotate"

An unknown filter or parameter is a one-line :class:`~curate.core.errors.ConfigError` listing what
exists. :class:`FilterChain` runs the filters on one document at a time and keeps, per filter,
how many documents it saw, dropped (and their characters) per reason, would have dropped
(annotate mode), and its own counters (lines removed, replacements ...).
"""

from __future__ import annotations

import dataclasses
import difflib
import time
import typing
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from curate.core.config import from_dict
from curate.core.document import Document
from curate.core.errors import ConfigError, CurateError

from .base import REGISTRY, Filter

# Importing a module registers its filters; the order is the order of `curate filter --list`.
_FILTER_MODULES = ("language", "gopher", "c4", "fineweb", "quality", "safety", "decontaminate")
CHAIN_KEYS = ("filters", "annotate")


def _load_all() -> None:
    import importlib

    for module in _FILTER_MODULES:
        importlib.import_module(f"filters.{module}")


def available() -> dict[str, type[Filter]]:
    """Registered filters by name, in listing order."""
    _load_all()
    return dict(REGISTRY)


def get_filter_class(name: str) -> type[Filter]:
    filters = available()
    if name not in filters:
        close = difflib.get_close_matches(name, list(filters), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown filter {name!r}{hint}; available: {', '.join(filters)}")
    return filters[name]


def build_filter(spec: dict[str, Any], where: str = "filter") -> Filter:
    """A filter from one ``[[filters]]`` table (``name`` + parameters)."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a table with a 'name', got {spec!r}")
    if "name" not in spec:
        raise ConfigError(f"{where}: missing 'name' (one of: {', '.join(available())})")
    if not isinstance(spec["name"], str):
        raise ConfigError(f"{where}: 'name' must be text, got {spec['name']!r} (one of: {', '.join(available())})")
    params = {k: v for k, v in spec.items() if k != "name"}
    cls = get_filter_class(spec["name"])
    return from_dict(cls, params, where=f"{where} ({spec['name']})")


def resolved_spec(f: Filter) -> dict[str, Any]:
    """A filter's full parameter table (defaults filled in), as the manifest records it."""
    return {"name": f.name, **f.params()}


def build_chain(config: dict[str, Any] | list[dict[str, Any]], annotate: bool = False) -> FilterChain:
    """A chain from a parsed chain file (``{"filters": [...]}``) or a list of tables.
    ``annotate`` (or ``annotate = true`` in the file) puts every filter in annotate mode."""
    if isinstance(config, dict):
        unknown = [k for k in config if k not in CHAIN_KEYS]
        if unknown:
            raise ConfigError(f"filter chain: unknown key {unknown[0]!r}; known keys: {', '.join(CHAIN_KEYS)}")
        annotate = annotate or bool(config.get("annotate", False))
        specs = config.get("filters")
        if specs is None:
            raise ConfigError("filter chain: no [[filters]] tables")
    else:
        specs = config
    if not isinstance(specs, list) or not specs:
        raise ConfigError("filter chain: 'filters' must be a non-empty list of [[filters]] tables")
    filters = []
    for i, spec in enumerate(specs):
        spec = dict(spec) if isinstance(spec, dict) else spec
        if annotate and isinstance(spec, dict):
            spec["mode"] = "annotate"
        filters.append(build_filter(spec, where=f"filters[{i}]"))
    return FilterChain(filters)


class FilterFailure(Exception):
    """A filter raised on one document (a bug or a pathological text): the stage counts the
    document as an error instead of losing the whole input."""

    def __init__(self, label: str, exc: BaseException):
        super().__init__(f"{label}: {type(exc).__name__}: {exc}")
        self.label = label


@dataclass
class FilterStats:
    label: str
    name: str
    mode: str
    docs_in: int = 0
    dropped: Counter = field(default_factory=Counter)
    chars_dropped: Counter = field(default_factory=Counter)
    would_drop: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def to_json(self, counters: Counter, distinct: dict[str, set[str]] | None = None) -> dict[str, Any]:
        counters = Counter(counters)
        for key, values in (distinct or {}).items():
            counters[key] = len(values)
        out = {
            "label": self.label,
            "name": self.name,
            "mode": self.mode,
            "docs_in": self.docs_in,
            "dropped": dict(sorted(self.dropped.items())),
            "chars_dropped": dict(sorted(self.chars_dropped.items())),
            "would_drop": dict(sorted(self.would_drop.items())),
            "counters": dict(sorted(counters.items())),
            "seconds": round(self.seconds, 3),
        }
        if distinct:  # only filters that collect sets have the key (other reports unchanged)
            out["distinct"] = {key: sorted(values) for key, values in sorted(distinct.items())}
        return out


class FilterChain:
    """Filters applied in order to one document at a time."""

    def __init__(self, filters: list[Filter]):
        labels = Counter(f.label for f in filters)
        twice = [label for label, n in labels.items() if n > 1]
        if twice:
            raise ConfigError(f"filter chain: {twice[0]!r} appears twice; give one of them a distinct 'label'")
        self.filters = filters
        self.reset_stats()

    def reset_stats(self) -> None:
        self.stats = [FilterStats(f.label, f.name, f.mode) for f in self.filters]
        for f in self.filters:
            f.counters.clear()
            f.distinct.clear()

    def specs(self) -> list[dict[str, Any]]:
        return [resolved_spec(f) for f in self.filters]

    def fingerprint(self) -> list[dict[str, Any]]:
        return [f.fingerprint() for f in self.filters]

    def process(self, doc: Document) -> str | None:
        """Run the document through the chain. Returns ``"label/reason"`` when a filter in
        filter mode drops it (the chain stops there), else None. Annotating filters record
        their would-be reason in ``doc.reject_reason`` (the first one wins) and go on.
        Dropped characters are counted as the document was given (before transforms)."""
        clock = time.perf_counter
        chars_read = len(doc.text or "")  # drops are counted in characters as read
        for f, st in zip(self.filters, self.stats):
            st.docs_in += 1
            start = clock()
            try:
                reason = f(doc)
            except CurateError:
                raise
            except Exception as exc:
                st.seconds += clock() - start
                raise FilterFailure(f.label, exc) from exc
            st.seconds += clock() - start
            if reason is None:
                continue
            if f.mode == "annotate":
                st.would_drop[reason] += 1
                if doc.reject_reason is None:
                    doc.reject_reason = f"{f.label}/{reason}"
                continue
            st.dropped[reason] += 1
            st.chars_dropped[reason] += chars_read
            doc.reject_reason = f"{f.label}/{reason}"
            return doc.reject_reason
        return None

    def report(self) -> list[dict[str, Any]]:
        return [st.to_json(f.counters, f.distinct) for f, st in zip(self.filters, self.stats)]


def merge_reports(reports: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Sum per-filter reports of several inputs (same chain); collected sets (``distinct``)
    are united, and their counters are the sizes of the unions."""
    merged: list[dict[str, Any]] = []
    sets: list[dict[str, set[str]]] = []
    for report in reports:
        if not merged:
            merged = [
                dict(
                    r,
                    dropped=dict(r["dropped"]),
                    chars_dropped=dict(r["chars_dropped"]),
                    would_drop=dict(r["would_drop"]),
                    counters=dict(r["counters"]),
                )
                for r in report
            ]
            sets = [{k: set(v) for k, v in r.get("distinct", {}).items()} for r in report]
            continue
        for into, r, collected in zip(merged, report, sets):
            into["docs_in"] += r["docs_in"]
            into["seconds"] = round(into["seconds"] + r["seconds"], 3)
            for key in ("dropped", "chars_dropped", "would_drop", "counters"):
                c = Counter(into[key])
                c.update(r[key])
                into[key] = dict(sorted(c.items()))
            for key, values in r.get("distinct", {}).items():
                collected.setdefault(key, set()).update(values)
    for into, collected in zip(merged, sets):
        if collected:
            into["counters"] = dict(sorted({**into["counters"], **{k: len(v) for k, v in collected.items()}}.items()))
            into["distinct"] = {k: sorted(v) for k, v in sorted(collected.items())}
    return merged


def describe_filters() -> str:
    """Human listing of every filter: summary, parameters with defaults, reasons."""
    out = [
        'Every filter also takes mode = "filter" (drop) or "annotate" (score only) and label '
        "(name in reasons and scores; default: the filter's name).",
        "",
    ]
    for name, cls in available().items():
        out.append(f"{name}: {cls.summary}")
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in ("mode", "label"):
                continue
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = f.default_factory()  # type: ignore[misc]
            else:
                default = None
            allowed = cls.bounds.get(f.name)
            extra = f"; {allowed.short()}" if allowed is not None else ""
            out.append(f"    {f.name} = {default!r}  ({_type_name(hints.get(f.name))}{extra})")
        out.append(f"    reasons: {', '.join(cls.reasons) if cls.reasons else '(transform; never drops)'}")
    return "\n".join(out)


def _type_name(hint: Any) -> str:
    if hint is None:
        return "?"
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")
