"""Fixtures shared by the train tests: a small mix directory of numbered documents, and one
torch thread for the tests that train (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from curate.core.accounting import Stats
from curate.core.document import Document
from curate.core.manifest import build_manifest, write_manifest
from curate.core.shards import ShardWriter


def _write_numbered_mix(directory: Path, n_docs: int = 60, shard_bytes: int = 2_000, extra: dict | None = None) -> Path:
    """A small mix directory: several shards, a manifest with a training cutoff; document i
    is "Document number i says hello. " repeated 1 + i % 4 times."""
    writer = ShardWriter(directory, prefix="part-00000", shard_bytes=shard_bytes, row_group_bytes=700)
    for i in range(n_docs):
        writer.write(Document(id=f"doc-{i:04d}", text=f"Document number {i} says hello. " * (1 + i % 4), source="web"))
    shards = writer.close()
    stats = Stats(read=n_docs, kept=n_docs)
    manifest = build_manifest(
        "mix",
        {},
        [],
        stats,
        {"": shards},
        extra={
            "training_cutoff": {"max": "2024-05-01", "p99": "2024-04-20", "undated_docs": 0},
            "tokenizer": {"name": "bytes", "vocab_size": 262},
            **(extra or {}),
        },
    )
    write_manifest(directory, manifest)
    return directory


@pytest.fixture
def write_numbered_mix():
    """``write_numbered_mix(directory, n_docs=60, shard_bytes=2_000, extra=None)`` -> directory."""
    return _write_numbered_mix


@pytest.fixture
def numbered_mix(tmp_path) -> Path:
    return _write_numbered_mix(tmp_path / "mix")


@pytest.fixture
def one_thread():
    """The CI machine is shared: one thread per test process is faster than oversubscribing."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
