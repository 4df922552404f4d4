"""The filter chain as the stage uses it: the default chain, chain files, and one built chain
per process and configuration (models load once per worker, not once per input)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from curate.core.config import load_toml, resolve_path, resolve_paths

# The chain used when no --config is given: FineWeb's order (language, Gopher repetition,
# Gopher quality, C4, FineWeb), all languages kept, then PII scrubbing of what is kept.
DEFAULT_CHAIN: dict[str, Any] = {
    "filters": [
        {"name": "language", "min_score": 0.65},
        {"name": "gopher_repetition"},
        {"name": "gopher_quality"},
        {"name": "c4"},
        {"name": "fineweb"},
        {"name": "pii"},
    ]
}


def default_chain() -> dict[str, Any]:
    """A fresh copy of :data:`DEFAULT_CHAIN`."""
    return json.loads(json.dumps(DEFAULT_CHAIN))


def load_chain_config(path: str | None) -> dict[str, Any]:
    """A chain file (TOML) or, without a path, :data:`DEFAULT_CHAIN`. Files a filter names in
    the chain file (its ``paths`` parameters: models, word lists) are relative to that file's
    folder."""
    if path is None:
        return default_chain()
    return _paths_relative_to(load_toml(path), os.path.dirname(path))


def _paths_relative_to(chain: dict[str, Any], base: str) -> dict[str, Any]:
    from filters.registry import available

    known = available()
    specs = chain.get("filters")
    if not isinstance(specs, list):
        return chain  # build_chain names the problem
    resolved = []
    for spec in specs:
        name = spec.get("name") if isinstance(spec, dict) else None
        cls = known.get(name) if isinstance(name, str) else None
        if cls is not None:
            spec = dict(spec)
            for key in cls.paths:
                value = spec.get(key)
                if isinstance(value, dict):
                    spec[key] = {k: resolve_path(v, base) for k, v in value.items()}
                elif value:  # a file, or a list of files and names (decontaminate's tasks)
                    spec[key] = resolve_paths(value, base, keep=cls.is_name)
        resolved.append(spec)
    return {**chain, "filters": resolved}


def _chain_from_specs(specs: list[dict[str, Any]]):
    from filters.registry import build_chain

    return build_chain(specs)


# One chain per process and configuration.
_CHAINS: dict[str, Any] = {}


def cached_chain(specs: list[dict[str, Any]]):
    """The chain for ``specs``, built once per process, its counters reset."""
    key = hashlib.sha256(json.dumps(specs, sort_keys=True, default=str).encode()).hexdigest()
    chain = _CHAINS.get(key)
    if chain is None:
        chain = _CHAINS[key] = _chain_from_specs(specs)
    chain.reset_stats()
    return chain
