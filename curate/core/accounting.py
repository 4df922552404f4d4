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
    # Records read only after their framing was fixed (a wrong Content-Length), by what was
    # wrong: a note on records already counted above, not a fourth outcome.
    repaired: Counter = field(default_factory=Counter)

    def reject(self, reason: str, n_chars: int = 0) -> None:
        self.rejected[reason] += 1
        if n_chars:
            self.chars[f"rejected:{reason}"] += n_chars

    def error(
        self, reason: str, file: str | None = None, offset: int | None = None, detail: str | None = None, **info: Any
    ) -> None:
        """One error; its example holds ``file``, ``offset`` (bytes) or ``row`` (Parquet), ``detail``."""
        self.errors[reason] += 1
        self.example(reason, file=file, offset=offset, detail=detail, **info)

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
        self.repaired.update(other.repaired)
        for reason, items in other.examples.items():
            bucket = self.examples.setdefault(reason, [])
            bucket.extend(items[: MAX_EXAMPLES - len(bucket)])
        return self

    @property
    def balanced(self) -> bool:
        return self.read == self.kept + sum(self.rejected.values()) + sum(self.errors.values())

    def to_json(self) -> dict[str, Any]:
        out = {
            "read": self.read,
            "kept": self.kept,
            "rejected": dict(sorted(self.rejected.items())),
            "errors": dict(sorted(self.errors.items())),
            "error_examples": dict(sorted(self.examples.items())),
            "chars": dict(sorted(self.chars.items())),
        }
        if self.repaired:  # only where it happened: other manifests keep their shape
            out["repaired"] = dict(sorted(self.repaired.items()))
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stats:
        return cls(
            read=data.get("read", 0),
            kept=data.get("kept", 0),
            rejected=Counter(data.get("rejected", {})),
            errors=Counter(data.get("errors", {})),
            examples={k: list(v) for k, v in data.get("error_examples", {}).items()},
            chars=Counter(data.get("chars", {})),
            repaired=Counter(data.get("repaired", {})),
        )


def failed_input(path: str, exc: BaseException) -> tuple[Stats, str]:
    """The counts and one-line message of an input that could not be read at all: one record
    read, one error (the exception's ``reason``: ``bad_schema`` for a file whose columns cannot
    hold documents, ``unreadable_file`` for any other input error, ``input_failed`` for anything
    else), its example naming the file. Every stage counts a failed input this way."""
    from curate.core.errors import CurateError, InputError

    if isinstance(exc, CurateError):
        message = str(exc)
        fallback = "unreadable_file" if isinstance(exc, InputError) else "input_failed"
    else:
        message, fallback = f"{type(exc).__name__}: {exc}", "input_failed"
    message = message.removeprefix(f"{path}: ")
    return failed_stats(path, getattr(exc, "reason", fallback), message), message


def failed_stats(path: str, reason: str, message: str) -> Stats:
    """One record read and one error ``reason`` whose example names ``path`` (see
    :func:`failed_input`)."""
    stats = Stats(read=1)
    stats.error(reason, file=path, detail=message.removeprefix(f"{path}: "))
    return stats
