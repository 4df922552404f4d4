"""The data side of the alignment stages (sft, reward, rlhf, dpo, sample-pairs).

:func:`read_records` reads records from a file or directory: JSON Lines, one JSON array
(``.json``, as Alpaca ships), either gzipped, or Parquet (as ``datasets`` writes it); a line
that is not a JSON object or not UTF-8 is counted in a :class:`Skipped` instead of failing.
The shapes of the records are :mod:`train.align.formats`' business. :func:`read_prompts`
reads the prompts that RLHF and sample-pairs answer; :class:`HeldOutSplit` splits off a held-out slice chosen by a
hash of each example's content (:func:`stable_fraction`), so membership does not depend on
order, seed or data size; :func:`batch_indices` gives a deterministic batch order that
resumes from a step number alone; :func:`pad_right` and :func:`left_pad` pad token sequences
into tensors; :func:`data_digest` fingerprints the data for checkpoint metadata.
:class:`Origin` (from :func:`origin_of`) is where an example came from, and
:func:`batch_counts` how often :func:`batch_indices` has given each example after some steps:
together, what a checkpoint's ``consumed.parquet`` records (train/lineage.py).
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from curate.core.comparisons import Unusable
from curate.core.errors import InputError
from curate.core.files import iter_jsonl, sha256_file

from .formats import prompt_messages

NOT_UTF8 = "not UTF-8 text"
SUFFIXES = (".jsonl", ".json", ".parquet", ".jsonl.gz", ".json.gz")


def stable_fraction(key: str) -> float:
    """A number in [0, 1) from a hash of ``key``: held-out membership that does not depend
    on order, seed or how many examples there are."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Example indices of optimisation step ``step`` (0-based): the examples of epoch e in a
    permutation seeded by (seed, e), read in order and cut into batches. A pure function of
    its arguments, so resuming at step s needs nothing but s."""
    if n < 1:
        raise ValueError("no examples")
    out: list[int] = []
    pos = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(pos, n)
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g).tolist()
        take = min(batch_size - len(out), n - offset)
        out.extend(perm[offset : offset + take])
        pos += take
    return out


def pad_right(
    seqs: Sequence[Sequence[int]], pad_id: int, masks: Sequence[Sequence[int]] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(ids, attention_mask, loss_mask or None) for sequences padded on the right."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    lm = torch.zeros((len(seqs), width), dtype=torch.long) if masks is not None else None
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attn[i, : len(s)] = 1
        if lm is not None:
            lm[i, : len(s)] = torch.tensor(masks[i], dtype=torch.long)
    return ids, attn, lm


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask) for sequences padded on the left: prompts whose answers are
    generated in one batch all end at the same position."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        attn[i, width - len(s) :] = 1
    return ids, attn


@dataclass
class Skipped:
    """Records that could not be used, by reason, with the first place each reason occurred."""

    counts: dict[str, int] = field(default_factory=dict)
    first: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.first.setdefault(reason, where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        return [f"skipped {n} record(s): {reason} (first at {self.first[reason]})" for reason, n in self.counts.items()]

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "first": dict(self.first)}


def _parquet_rows(file: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(file)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputError(f"{file}: not a readable Parquet file ({exc})") from None
    batches = pf.iter_batches(batch_size=1024)
    row_no = 0
    while True:
        # A file whose footer is fine can still hold a corrupt page; only the read itself is
        # guarded, so an error raised by the consumer is not mistaken for a bad file.
        try:
            batch = next(batches, None)
            rows = batch.to_pylist() if batch is not None else []
        except Exception as exc:
            raise InputError(f"{file}: unreadable Parquet data after row {row_no} ({exc})") from None
        if batch is None:
            return
        for row in rows:
            yield f"{file} row {row_no}", row
            row_no += 1


def _undecodable(raw: bytes, start: int) -> str:
    return f"byte {start + 1}: 0x{raw[start]:02x}"


def _decoded_lines(lines: Iterable[bytes], bad: list[tuple[int, str]]) -> Iterator[str]:
    """Each line as text; a line that is not UTF-8 becomes blank (which :func:`iter_jsonl`
    skips, keeping the numbering) and is noted in ``bad`` as (line number, where)."""
    for number, raw in enumerate(lines, 1):
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)  # Windows tools start files with one
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.append((number, _undecodable(raw, exc.start)))
            yield ""


def _jsonl_rows(file: Path, fh: IO[bytes]) -> Iterator[tuple[str, dict[str, Any]]]:
    bad: list[tuple[int, str]] = []
    for lineno, row, problem in iter_jsonl(_decoded_lines(fh, bad), objects_only=True):
        while bad:  # lines before this one that were not UTF-8
            number, detail = bad.pop(0)
            yield f"{file}:{number} ({detail})", {"__error__": NOT_UTF8}
        if problem is None and _has_undecodable(row):  # a "\\ud800" escape: valid JSON, not text
            problem = NOT_UTF8
        yield f"{file}:{lineno}", row if problem is None else {"__error__": problem}
    for number, detail in bad:
        yield f"{file}:{number} ({detail})", {"__error__": NOT_UTF8}


def _has_undecodable(value: Any) -> bool:
    """Whether a parsed value holds text that is not valid Unicode: bytes that were not UTF-8
    (decoded with surrogateescape) or a lone surrogate written as a JSON escape."""
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return any(_has_undecodable(k) or _has_undecodable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_undecodable(v) for v in value)
    return False


def _array_rows(file: Path, data: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    """The items of a file holding one JSON array; an item with bytes that are not UTF-8 is
    counted like a line that is not."""
    text = data.removeprefix(codecs.BOM_UTF8).decode("utf-8", errors="surrogateescape")
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{file}: invalid JSON array ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(items, list):
        raise InputError(f"{file}: expected JSON Lines or one JSON array")
    for i, item in enumerate(items):
        where = f"{file} item {i}"
        if not isinstance(item, dict):
            yield where, {"__error__": "not a JSON object"}
        elif _has_undecodable(item):
            yield where, {"__error__": NOT_UTF8}
        else:
            yield where, item


def _json_rows(file: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """JSON Lines or one JSON array, told apart by the first character; gzipped or not."""
    try:
        with gzip.open(file, "rb") if file.name.endswith(".gz") else open(file, "rb") as fh:
            head = fh.read(4096).removeprefix(codecs.BOM_UTF8).lstrip()
            if head.startswith(b"["):
                yield from _array_rows(file, head + fh.read())
                return
            fh.seek(0)
            yield from _jsonl_rows(file, fh)
    except (OSError, EOFError) as exc:  # a truncated or corrupt gzip stream
        raise InputError(f"{file}: unreadable ({exc})") from None


def read_records(
    path: str | Path, what: str = "examples", skipped: Skipped | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) from a JSON Lines or JSON array file (``.jsonl``, ``.json``, optionally
    ``.gz``), a ``.parquet`` file or a directory of them. A line that is not a JSON object or
    not UTF-8 is counted in ``skipped`` or, without it, yielded as ``(where, {"__error__":
    message})``: either way the caller goes on. An unreadable Parquet or gzip file, or a JSON
    array that does not parse, is an InputError naming it."""
    path = Path(path)
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.name.endswith(SUFFIXES) and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise InputError(f"{path}: no .jsonl, .json or .parquet {what} files")
    elif path.exists():
        files = [path]
    else:
        raise InputError(f"{path}: no such file or directory")
    for file in files:
        for where, row in _parquet_rows(file) if file.suffix == ".parquet" else _json_rows(file):
            if skipped is not None and "__error__" in row:
                skipped.add(row["__error__"], where)
            else:
                yield where, row


@dataclass(frozen=True)
class Origin:
    """Where an example came from: its id (the record's ``id`` field, else ``file:line``), the
    file, and its line (JSON Lines, from 1) or row/item (Parquet or a JSON array, from 0)."""

    id: str
    file: str
    row: int


_WHERE = re.compile(r"^(?P<file>.*?)(?::(?P<line>\d+)| row (?P<row>\d+)| item (?P<item>\d+))$")


def origin_of(where: str, row: dict[str, Any]) -> Origin:
    """The :class:`Origin` of a record :func:`read_records` gave as ``(where, row)``."""
    match = _WHERE.match(where)
    file, number = (
        (match.group("file"), int(next(g for g in match.group("line", "row", "item") if g))) if match else (where, 0)
    )
    given = row.get("id")
    if isinstance(given, (str, int)) and not isinstance(given, bool) and str(given):
        return Origin(str(given), file, number)
    return Origin(f"{file}:{number}", file, number)


def batch_counts(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """How many times each of ``n`` examples is in the batches of steps 0 .. ``steps`` - 1 of
    :func:`batch_indices` (whole passes, then the start of the next pass's permutation)."""
    epochs, rest = divmod(steps * batch_size, n)
    counts = np.full(n, epochs, dtype=np.int32)
    if rest:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epochs)
        counts[torch.randperm(n, generator=g).numpy()[:rest]] += 1
    return counts


@dataclass
class Prompt:
    text: str  # what the reward sees as the prompt (the last user turn)
    messages: list[dict[str, str]]
    origin: Origin | None = None  # where it came from (None for a .txt file's lines)


def read_prompts(path: str | Path) -> tuple[list[Prompt], Skipped]:
    """Prompts from any record file :func:`read_records` reads, in any shape
    :func:`train.align.formats.prompt_messages` knows (a ``prompt``, a conversation ending with
    a user turn, SFT examples or comparisons without their answers), or from a ``.txt`` file
    (one prompt per line). Unusable rows and lines that are not UTF-8 are counted."""
    path = Path(path)
    skipped = Skipped()
    prompts: list[Prompt] = []
    if path.suffix == ".txt":
        if not path.exists():
            raise InputError(f"{path}: no such file")
        bad: list[tuple[int, str]] = []
        for line in _decoded_lines(path.read_bytes().splitlines(), bad):
            if line.strip():
                prompts.append(Prompt(line.strip(), [{"role": "user", "content": line.strip()}]))
        for number, detail in bad:
            skipped.add(NOT_UTF8, f"{path}:{number} ({detail})")
    else:
        for where, row in read_records(path, "prompt", skipped):
            try:
                messages = prompt_messages(row)
            except Unusable as exc:
                skipped.add(str(exc), where)
                continue
            prompts.append(Prompt(messages[-1]["content"], messages, origin_of(where, row)))
    if not prompts:
        detail = f" ({'; '.join(skipped.lines())})" if skipped.total else ""
        raise InputError(f"{path}: no usable prompts{detail}")
    return prompts, skipped


@dataclass
class HeldOutSplit:
    """Examples split into training and held-out ones by a hash of a key (their content), so
    the split does not depend on order, seed or data size."""

    val_fraction: float
    train: list[Any] = field(default_factory=list)
    held: list[Any] = field(default_factory=list)

    def add(self, key: str, example: Any) -> None:
        (self.held if stable_fraction(key) < self.val_fraction else self.train).append(example)

    def finish(self, path: str | Path, what: str, skipped: Skipped) -> tuple[list[Any], list[Any], Skipped]:
        """(train, held-out, skipped); an InputError naming ``path`` when nothing is usable."""
        train, held = self.train, self.held
        if not train and held:
            # Too few examples to hold any out: train on all of them rather than on none.
            train, held = held, []
        if not train:
            detail = f" ({'; '.join(skipped.lines())})" if skipped.total else ""
            raise InputError(f"{path}: no usable {what}{detail}")
        return train, held, skipped


def data_digest(path: str | Path) -> str:
    """sha256 over the data file(s), recorded in checkpoint metadata: each file's path
    relative to ``path`` and its own sha256, so a moved or renamed file changes it too."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        rel = f.relative_to(path).as_posix() if path.is_dir() else f.name
        h.update(f"{rel}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()
