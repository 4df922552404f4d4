"""The table ``curate pipeline`` prints at the end: one row per stage, then the training
cutoff, the reward model's held-out accuracy, the reward before and after RLHF and, with an
``[eval]`` stage, the scores of the model it evaluated (CORE, each task's centered accuracy,
bits per byte per held-out source)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from curate.workflow.align_stages import model_dir, rlhf_summary
from curate.workflow.config import Pipeline


@dataclass
class StageOutcome:
    """What a stage reports for the summary table."""

    stage: str
    output: str
    status: str  # "ran" | "skipped"
    seconds: float = 0.0
    docs: int | None = None
    tokens: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "output": self.output,
            "status": self.status,
            "seconds": round(self.seconds, 2),
            "docs": self.docs,
            "tokens": self.tokens,
            "notes": self.notes,
        }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


_NOTE_LABELS = {
    "first_loss": "loss",
    "last_loss": "->",
    "final_loss": "loss",
    "val_loss": "val loss",
    "val_accuracy": "held-out acc",
    "val_accuracy_before": "acc before",
    "reward_before": "reward",
    "reward_after": "->",
    "kl": "KL",
    "vocab_size": "vocab",
    "training_cutoff": "cutoff",
    "core": "CORE",
    "bpb_all": "bpb",
}


def format_summary(pipe: Pipeline, outcomes: list[StageOutcome]) -> str:
    """The table printed at the end of a pipeline run."""
    header = ("stage", "status", "time", "docs", "tokens", "result")
    rows = [header]
    for o in outcomes:
        notes = "  ".join(
            f"{_NOTE_LABELS.get(k, k)} {_fmt(v)}"
            for k, v in o.notes.items()
            if k in _NOTE_LABELS and k != "training_cutoff"
        )
        rows.append(
            (o.stage, o.status, f"{o.seconds:.0f}s" if o.status == "ran" else "-", _fmt(o.docs), _fmt(o.tokens), notes)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["", "  ".join(c.ljust(w) for c, w in zip(rows[0][:-1], widths)) + "  " + rows[0][-1]]
    lines.append("-" * (sum(widths) + 2 * len(widths) + 30))
    for r in rows[1:]:
        lines.append(
            "  ".join(c.ljust(w) if i == 0 or i == 1 else c.rjust(w) for i, (c, w) in enumerate(zip(r[:-1], widths)))
            + "  "
            + r[-1]
        )
    by = {o.stage: o for o in outcomes}
    if "mix" in by and by["mix"].notes.get("training_cutoff"):
        n = by["mix"].notes
        lines.append(
            f"\ntraining cutoff: {n['training_cutoff']} (99th percentile of document dates: {n.get('cutoff_p99')})"
        )
    if "reward" in by and "val_accuracy" in by["reward"].notes:
        lines.append(f"reward model held-out accuracy: {by['reward'].notes['val_accuracy']:.1%}")
    if "rlhf" in by:
        lines.extend(rlhf_summary(by["rlhf"].notes, _fmt))
    if "eval" in by:
        lines.extend(format_eval_scores(by["eval"].notes))
    model_stage = next((s for s in ("rlhf", "sft", "pretrain") if s in by), None)
    if model_stage:
        chat = " --chat" if model_stage != "pretrain" else ""
        lines.append(
            f'\ntry it:  curate generate {model_dir(pipe, model_stage)} "What is the capital of France?"{chat}'
        )
    return "\n".join(lines)


def format_eval_scores(notes: dict[str, Any]) -> list[str]:
    """The eval stage's scores, one row per metric (:func:`curate.workflow.stages.eval_notes`)."""
    rows: list[tuple[str, Any]] = []
    centered = notes.get("centered") or {}
    if notes.get("core") is not None:
        rows.append((f"CORE (mean centered accuracy, {len(centered)} task(s))", notes["core"]))
    rows += [(f"{task} (centered accuracy)", value) for task, value in centered.items()]
    rows += [(f"bits per byte, held-out {source}", value) for source, value in (notes.get("bpb") or {}).items()]
    if notes.get("bpb_all") is not None:
        rows.append(("bits per byte, all held-out", notes["bpb_all"]))
    rows += [(f"bits per byte, {name}", value) for name, value in (notes.get("text_bpb") or {}).items()]
    how = f"{notes.get('shots') or 0}-shot" + (f", first {notes['limit']} items per task" if notes.get("limit") else "")
    head = f"\neval of {notes.get('checkpoint') or notes.get('model')} ({notes.get('model')}; {how}):"
    if not rows:
        return [head, "  no scores (see the eval's notes)"]
    width = max(len(label) for label, _ in rows)
    lines = [head] + [f"  {label.ljust(width)}  {_score(value)}" for label, value in rows]
    return lines + ([f"  every metric: {notes['file']}"] if notes.get("file") else [])


def _score(value: Any) -> str:
    return f"{value:8.4f}" if isinstance(value, float) else f"{_fmt(value):>8}"
