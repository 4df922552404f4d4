"""Record accounting: the counts every stage keeps and writes into its manifest.

``Stats`` holds one unit of work's counts (an input file, a worker's share, a whole stage):
records read and kept, rejections and errors by reason (with the first few examples of each
error, so a manifest says where to look) and character totals. The invariant every stage
keeps, and tests check, is ``read == kept + sum(rejected) + sum(errors)``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLES = 5  # examples kept per error reason


@dataclass
class Stats:
    """Counts of one unit of work. ``read == kept + sum(rejected) + sum(errors)`` must hold."""

    read: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    chars: Counter = field(default_factory=Counter)  # characters read/kept/per reason

    def reject(self, reason: str, n_chars: int = 0) -> None:
        self.rejected[reason] += 1
        if n_chars:
            self.chars[f"rejected:{reason}"] += n_chars

    def error(self, reason: str, file: str | None = None, offset: int | None = None, detail: str | None = None) -> None:
        self.errors[reason] += 1
        self.example(reason, file=file, offset=offset, detail=detail)

    def example(self, reason: str, **info: Any) -> None:
        bucket = self.examples.setdefault(reason, [])
        if len(bucket) < MAX_EXAMPLES:
            bucket.append({k: v for k, v in info.items() if v is not None})

    def merge(self, other: Stats) -> Stats:
        self.read += other.read
        self.kept += other.kept
        self.rejected.update(other.rejected)
        self.errors.update(other.errors)
        self.chars.update(other.chars)
        for reason, items in other.examples.items():
            bucket = self.examples.setdefault(reason, [])
            bucket.extend(items[: MAX_EXAMPLES - len(bucket)])
        return self

    @property
    def balanced(self) -> bool:
        return self.read == self.kept + sum(self.rejected.values()) + sum(self.errors.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "kept": self.kept,
            "rejected": dict(sorted(self.rejected.items())),
            "errors": dict(sorted(self.errors.items())),
            "error_examples": dict(sorted(self.examples.items())),
            "chars": dict(sorted(self.chars.items())),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stats:
        return cls(
            read=data.get("read", 0),
            kept=data.get("kept", 0),
            rejected=Counter(data.get("rejected", {})),
            errors=Counter(data.get("errors", {})),
            examples={k: list(v) for k, v in data.get("error_examples", {}).items()},
            chars=Counter(data.get("chars", {})),
        )
