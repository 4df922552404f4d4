"""Scoring a file with a reward model: ``curate train score``.

    curate train score work/ckpt/rm --data answers.jsonl -o scored.jsonl

Rows with ``prompt`` + ``response`` (or another SFT shape, :mod:`train.align.formats`: the
last assistant turn is scored) get a ``score``; comparison rows (``prompt``, ``chosen``,
``rejected``, or any shape :func:`~curate.core.comparisons.comparison_from_row` reads) get
``chosen_score`` and ``rejected_score``. A file holds one kind: the first usable row decides,
and rows of the other kind (or of neither, or with an empty prompt or answer) are counted as
skipped. Rows are scored in batches and, given an output file, written back with their
scores, atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from curate.core.comparisons import Unusable, comparison_from_row
from curate.core.errors import InputError

from ..runtime import select_device
from .data import Skipped, read_records
from .formats import sft_messages
from .reward import RewardScorer

FLUSH_ROWS = 256  # rows held before they are scored (and written)


@dataclass
class ScoreResult:
    rows: int
    kind: str  # "responses" | "comparisons"
    mean_score: float | None
    accuracy: float | None  # comparisons: fraction where chosen scores above rejected
    output: Path | None
    skipped: Skipped


def row_fields(row: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """("comparisons", (prompt, chosen, rejected)) or ("responses", (prompt, response));
    :class:`~curate.core.comparisons.Unusable` for a row that is neither."""
    if any(key in row for key in ("chosen", "rejected", "response_j")):
        return "comparisons", comparison_from_row(row)
    prompt, response = row.get("prompt"), row.get("response")
    if isinstance(prompt, str) and isinstance(response, str):
        if not prompt.strip() or not response.strip():
            raise Unusable("empty prompt" if not prompt.strip() else "empty response")
        return "responses", (prompt, response)
    if row.get("messages") is None and "instruction" not in row:
        raise Unusable("needs prompt + response (or another SFT example), or a comparison")
    messages = sft_messages(row)
    if messages[-1]["role"] != "assistant" or len(messages) < 2:
        raise Unusable("the last turn must be the assistant's answer")
    head = messages[:-1]
    prompt = head[0]["content"] if len(head) == 1 and head[0]["role"] == "user" else head
    return "responses", (prompt, messages[-1]["content"])


class _Scoring:
    """Rows waiting to be scored, the running totals, and the open output file (if any)."""

    def __init__(self, scorer: RewardScorer, out: IO[str] | None):
        self.scorer = scorer
        self.out = out
        self.kind: str | None = None
        self.pending: list[tuple[dict[str, Any], tuple[Any, ...]]] = []  # (row as read, what is scored)
        self.rows = 0
        self.score_sum, self.scores, self.wins = 0.0, 0, 0.0

    def add(self, row: dict[str, Any], fields: tuple[Any, ...]) -> None:
        self.pending.append((row, fields))
        self.rows += 1
        if len(self.pending) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        pending = self.pending
        if not pending:
            return
        rows = [row for row, _ in pending]
        fields = [f for _, f in pending]
        prompts = [f[0] for f in fields]
        if self.kind == "comparisons":
            chosen = self.scorer(prompts, [f[1] for f in fields])
            rejected = self.scorer(prompts, [f[2] for f in fields])
            for r, c, j in zip(rows, chosen, rejected):
                r["chosen_score"], r["rejected_score"] = c, j
                self.wins += 1.0 if c > j else 0.5 if c == j else 0.0
                self.score_sum += c + j
                self.scores += 2
        else:
            for r, score in zip(rows, self.scorer(prompts, [f[1] for f in fields])):
                r["score"] = score
                self.score_sum += score
                self.scores += 1
        if self.out is not None:
            for r in rows:
                self.out.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
        pending.clear()


def _score_rows(scoring: _Scoring, data: str | Path, skipped: Skipped) -> None:
    for where, row in read_records(data, "scoring", skipped):
        try:
            kind, fields = row_fields(row)
        except Unusable as exc:
            skipped.add(str(exc), where)
            continue
        if scoring.kind is None:
            scoring.kind = kind
        elif kind != scoring.kind:
            skipped.add(f"a {kind} row in a file of {scoring.kind}", where)
            continue
        scoring.add(row, fields)
    scoring.flush()


def score_file(
    reward_model: str | Path,
    data: str | Path,
    output: str | Path | None = None,
    *,
    batch_size: int = 16,
    device: str = "auto",
) -> ScoreResult:
    """Score every row of ``data`` with the reward model; with ``output`` (``.jsonl``), each
    input row is written back with its scores added, atomically."""
    scorer = RewardScorer(reward_model, select_device(device), batch_size=batch_size)
    skipped = Skipped()
    if output is None:
        scoring = _Scoring(scorer, None)
        _score_rows(scoring, data, skipped)
    else:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as out:
                scoring = _Scoring(scorer, out)
                _score_rows(scoring, data, skipped)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        tmp.replace(output)
    if scoring.kind is None:
        raise InputError(f"{data}: no rows to score ({'; '.join(skipped.lines()) or 'empty'})")
    return ScoreResult(
        rows=scoring.rows,
        kind=scoring.kind,
        mean_score=scoring.score_sum / scoring.scores if scoring.scores else None,
        accuracy=scoring.wins / scoring.rows if scoring.kind == "comparisons" and scoring.rows else None,
        output=output,
        skipped=skipped,
    )
