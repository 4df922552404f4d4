"""Builders of known shards and stage manifests for the explore tests (inspect, sql, report)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from curate.core.accounting import Stats
from curate.core.document import Document
from curate.core.manifest import build_manifest, write_manifest
from curate.core.shards import ShardWriter


def _known_docs() -> list[Document]:
    docs = []
    for i in range(10):
        docs.append(
            Document(
                id=f"d{i}",
                text="x" * (100 * (i + 1)),
                source="a" if i < 6 else "b",
                language="en" if i < 7 else "de",
                language_score=0.525 + 0.05 * i,  # bin centres: float32 edges are fuzzy
                quality_score=0.05 + 0.1 * i,
                url=f"https://x.com/{i}" if i < 5 else f"https://www.y.org/{i}" if i < 8 else None,
                n_tokens=10 * (i + 1) if i < 6 else 100,
                date=datetime(2024, 1 + i, 1, tzinfo=UTC) if i != 9 else None,
            )
        )
    return docs


def _write_stage(
    directory: Path,
    stage: str,
    inputs: list[str],
    read: int,
    kept: int,
    rejected: dict,
    errors: dict,
    docs: list[Document] | None = None,
) -> None:
    shards = []
    if docs:
        with ShardWriter(directory, prefix="part-00000") as w:
            for d in docs:
                w.write(d)
        shards = w.shards
    stats = Stats(read=read, kept=kept)
    stats.rejected.update(rejected)
    stats.errors.update(errors)
    stats.chars["kept"] = sum(len(d.text) for d in docs or [])
    directory.mkdir(parents=True, exist_ok=True)
    write_manifest(directory, build_manifest(stage, {}, [{"path": p} for p in inputs], stats, {"": shards}))


@pytest.fixture
def known(tmp_path) -> Path:
    d = tmp_path / "known"
    with ShardWriter(d, prefix="part-00000", shard_bytes=600) as w:  # several shards
        for doc in _known_docs():
            w.write(doc)
    with ShardWriter(d / "rejected", prefix="part-00000") as w:
        for i, reason in enumerate(["too_short", "too_short", "too_short", "lang"]):
            w.write(Document(id=f"r{i}", text="short", reject_reason=reason))
    return d


@pytest.fixture
def explore_kit():
    """``known_docs()``: ten documents with known columns; ``write_stage(...)``: a stage folder
    with shards and a manifest of given counts."""
    return SimpleNamespace(known_docs=_known_docs, write_stage=_write_stage)
