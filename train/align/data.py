"""The data side of the alignment stages (sft, reward, rlhf, dpo, sample-pairs).

:func:`read_records` reads JSONL/Parquet records from a file or directory, counting bad
lines in a :class:`Skipped` instead of failing; :func:`read_prompts` reads the prompts that
RLHF and sample-pairs answer; :class:`HeldOutSplit` splits off a held-out slice chosen by a
hash of each example's content (:func:`stable_fraction`), so membership does not depend on
order, seed or data size; :func:`batch_indices` gives a deterministic batch order that
resumes from a step number alone; :func:`pad_right` and :func:`left_pad` pad token sequences
into tensors; :func:`data_digest` fingerprints the data for checkpoint metadata.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from curate.core.errors import InputError
from curate.core.files import iter_jsonl, sha256_file


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


def _jsonl_rows(file: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with open(file, encoding="utf-8", errors="replace") as fh:
        for lineno, row, problem in iter_jsonl(fh, objects_only=True):
            yield f"{file}:{lineno}", row if problem is None else {"__error__": problem}


def read_records(
    path: str | Path, what: str = "examples", skipped: Skipped | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) from a ``.jsonl``/``.json`` file, a ``.parquet`` file or a directory of
    them. A line that is not a JSON object is counted in ``skipped`` or, without it, yielded
    as ``(where, {"__error__": message})``: either way the caller goes on. An unreadable
    Parquet file is an InputError naming it."""
    path = Path(path)
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.suffix in (".jsonl", ".json", ".parquet")
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise InputError(f"{path}: no .jsonl or .parquet {what} files")
    elif path.exists():
        files = [path]
    else:
        raise InputError(f"{path}: no such file or directory")
    for file in files:
        for where, row in _parquet_rows(file) if file.suffix == ".parquet" else _jsonl_rows(file):
            if skipped is not None and "__error__" in row:
                skipped.add(row["__error__"], where)
            else:
                yield where, row


@dataclass
class Prompt:
    text: str  # what the reward sees as the prompt (the last user turn)
    messages: list[dict[str, str]]


def read_prompts(path: str | Path) -> tuple[list[Prompt], Skipped]:
    """Prompts from JSONL/Parquet (``prompt`` string or a ``messages`` list ending with a
    user turn; rows of comparisons work too) or a ``.txt`` file (one prompt per line)."""
    path = Path(path)
    skipped = Skipped()
    prompts: list[Prompt] = []
    if path.suffix == ".txt":
        if not path.exists():
            raise InputError(f"{path}: no such file")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip():
                prompts.append(Prompt(line.strip(), [{"role": "user", "content": line.strip()}]))
    else:
        for where, row in read_records(path, "prompt", skipped):
            msgs = row.get("messages")
            if isinstance(row.get("prompt"), str) and row["prompt"].strip():
                prompts.append(Prompt(row["prompt"], [{"role": "user", "content": row["prompt"]}]))
            elif (
                isinstance(msgs, list)
                and msgs
                and all(isinstance(m, dict) for m in msgs)
                and msgs[-1].get("role") == "user"
                and isinstance(msgs[-1].get("content"), str)
            ):
                prompts.append(
                    Prompt(msgs[-1]["content"], [{"role": m.get("role"), "content": m.get("content")} for m in msgs])
                )
            else:
                skipped.add("needs a 'prompt' string or 'messages' ending with a user turn", where)
    if not prompts:
        raise InputError(f"{path}: no usable prompts")
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
