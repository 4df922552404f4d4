"""Scoring a file with a reward model: ``curate train score``.

    curate train score work/ckpt/rm --data answers.jsonl -o scored.jsonl

Rows with ``prompt`` + ``response`` get a ``score``; comparison rows (``prompt``, ``chosen``,
``rejected``) get ``chosen_score`` and ``rejected_score``. A file holds one kind: the first
usable row decides, and rows of the other kind (or of neither) are counted as skipped. Rows
are scored in batches and, given an output file, written back with their scores, atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from curate.core.errors import InputError

from ..runtime import select_device
from .data import Skipped, read_records
from .reward import RewardScorer, comparison_fields

FLUSH_ROWS = 256  # rows held before they are scored (and written)


@dataclass
class ScoreResult:
    rows: int
    kind: str  # "responses" | "comparisons"
    mean_score: float | None
    accuracy: float | None  # comparisons: fraction where chosen scores above rejected
    output: Path | None
    skipped: Skipped


def row_kind(row: dict[str, Any]) -> str | None:
    """ "comparisons", "responses", or None for a row that is neither."""
    if comparison_fields(row):
        return "comparisons"
    if isinstance(row.get("prompt"), str) and isinstance(row.get("response"), str):
        return "responses"
    return None


class _Scoring:
    """Rows waiting to be scored, the running totals, and the open output file (if any)."""

    def __init__(self, scorer: RewardScorer, out: IO[str] | None):
        self.scorer = scorer
        self.out = out
        self.kind: str | None = None
        self.pending: list[dict[str, Any]] = []
        self.rows = 0
        self.score_sum, self.scores, self.wins = 0.0, 0, 0.0

    def add(self, row: dict[str, Any]) -> None:
        self.pending.append(row)
        self.rows += 1
        if len(self.pending) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        rows = self.pending
        if not rows:
            return
        prompts = [r["prompt"] for r in rows]
        if self.kind == "comparisons":
            chosen = self.scorer(prompts, [r["chosen"] for r in rows])
            rejected = self.scorer(prompts, [r["rejected"] for r in rows])
            for r, c, j in zip(rows, chosen, rejected):
                r["chosen_score"], r["rejected_score"] = c, j
                self.wins += 1.0 if c > j else 0.5 if c == j else 0.0
                self.score_sum += c + j
                self.scores += 2
        else:
            for r, score in zip(rows, self.scorer(prompts, [r["response"] for r in rows])):
                r["score"] = score
                self.score_sum += score
                self.scores += 1
        if self.out is not None:
            for r in rows:
                self.out.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
        rows.clear()


def _score_rows(scoring: _Scoring, data: str | Path, skipped: Skipped) -> None:
    for where, row in read_records(data, "scoring", skipped):
        kind = row_kind(row)
        if kind is None:
            skipped.add("needs prompt + response, or prompt + chosen + rejected", where)
            continue
        if scoring.kind is None:
            scoring.kind = kind
        elif kind != scoring.kind:
            skipped.add(f"a {kind} row in a file of {scoring.kind}", where)
            continue
        scoring.add(row)
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
