"""Shared test setup: progress output off, small helpers to build document shards."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

os.environ.setdefault("CURATE_PROGRESS", "0")


@pytest.fixture
def make_docs():
    """Build simple Documents: make_docs(n, source="web", text=lambda i: ...)."""
    from curate.core.document import Document

    def build(n: int, source: str = "web", text=None, start_day: int = 1):
        return [
            Document(
                id=f"{source}-{i:05d}",
                text=text(i) if text else f"Document {i} from {source}. " * 5,
                url=f"https://www.example{i % 7}.com/page/{i}",
                source=source,
                date=datetime(2024, 1, 1 + (start_day + i) % 28, tzinfo=UTC),
            )
            for i in range(n)
        ]

    return build
