"""``manifest.json``: what every stage folder says about itself, written last.

A manifest holds the stage, the tool version, the configuration, the inputs with their
status, the record accounting (``read = kept + rejected + errors``, see
:mod:`curate.core.accounting`) and every shard with its row count and sha256. Stages add their
own sections (``filters``, ``lsh``, ``sources`` ...) through ``extra``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from curate.core.accounting import Stats
from curate.core.document import SCHEMA_VERSION
from curate.core.errors import InputError
from curate.core.files import atomic_write_json
from curate.core.version import __version__

MANIFEST_NAME = "manifest.json"


def config_hash(config: dict[str, Any]) -> str:
    """A short, stable hash of a stage's configuration (what decides whether output resumes)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_manifest(
    stage: str,
    config: dict[str, Any],
    inputs: list[dict[str, Any]],
    stats: Stats,
    outputs: dict[str, list[Any]],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest layout every stage writes. ``outputs`` maps a sub-folder ('' = main) to
    its shards (:class:`~curate.core.shards.ShardInfo`)."""
    if not stats.balanced:
        raise AssertionError(f"{stage}: counts do not add up: {stats.to_json()}")
    manifest = {
        "stage": stage,
        "tool": "curate",
        "tool_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "config": config,
        "inputs": inputs,
        "counts": stats.to_json(),
        "shards": [s.to_json() for s in outputs.get("", [])],
        "outputs": {
            name or ".": {"rows": sum(s.rows for s in shards), "shards": [s.to_json() for s in shards]}
            for name, shards in sorted(outputs.items())
        },
    }
    if extra:
        manifest.update(extra)
    return manifest


def load_manifest(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's manifest, None when it has none; an unreadable one is an InputError."""
    path = Path(directory) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: unreadable manifest ({exc})") from None


def write_manifest(directory: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    path = Path(directory) / MANIFEST_NAME
    atomic_write_json(path, manifest)
    return path
