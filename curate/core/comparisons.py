"""The comparison (human preference) record: ``prompt``, ``chosen``, ``rejected`` and who/when/why.

Written by ``curate rate export`` (and by hand or other tools as JSONL/Parquet), read by
``curate train reward`` and ``curate train dpo``. One schema, passed explicitly on write.

:func:`comparison_from_row` reads one preference row in any of the shapes public data sets
use: ours (and TRL's standard ``prompt``/``chosen``/``rejected`` strings), StackExchange-paired
(``question``, ``response_j`` preferred over ``response_k``), TRL's conversational format
(``chosen``/``rejected`` message lists, with or without a ``prompt`` list) and Anthropic's
HH-RLHF (``chosen``/``rejected`` as whole ``Human:``/``Assistant:`` dialogues sharing the
prompt). A dialogue's shared turns become the prompt (a plain string when it is one user
turn), and its last, differing assistant turns the two answers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.core.errors import InputError
from curate.core.files import iter_jsonl

COMPARISON_SCHEMA = pa.schema(
    [
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("chosen", pa.string(), nullable=False),
        pa.field("rejected", pa.string(), nullable=False),
        pa.field("rater", pa.string()),
        pa.field("source", pa.string()),
        pa.field("date", pa.timestamp("us", tz="UTC")),
        pa.field("reason", pa.string()),
    ],
    metadata={b"curate.kind": b"comparisons"},
)
REQUIRED = ("prompt", "chosen", "rejected")

# Pairs of answers waiting for a person's judgement: written by `curate train sample-pairs`,
# read by `curate rate`. `pair_id` is stable (a hash of prompt and both responses).
PAIRS_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("response_1", pa.string(), nullable=False),
        pa.field("response_2", pa.string(), nullable=False),
        pa.field("model", pa.string()),
        pa.field("meta", pa.string()),
    ],
    metadata={b"curate.kind": b"pairs"},
)


def _parse_date(value: Any, where: str) -> datetime | None:
    """Dates may come as datetimes (Parquet) or ISO 8601 strings (JSONL); naive means UTC."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"{where}: date {value!r} is not ISO 8601") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise InputError(f"{where}: date must be an ISO 8601 string, got {value!r}")


def _check(row: dict[str, Any], where: str) -> dict[str, Any]:
    missing = [k for k in REQUIRED if not isinstance(row.get(k), str)]
    if missing:
        raise InputError(f"{where}: comparison needs string fields {', '.join(missing)}")
    out = {f.name: row.get(f.name) for f in COMPARISON_SCHEMA}
    out["date"] = _parse_date(out["date"], where)
    return out


def read_comparisons(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Comparisons from a ``.jsonl`` file, a ``.parquet`` file or a directory of either."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".parquet") and not p.name.startswith("."))
        if not files:
            raise InputError(f"{path}: no .jsonl or .parquet comparison files")
        return [row for f in files for row in read_comparisons(f)]
    if not path.exists():
        raise InputError(f"{path}: no such file")
    rows: list[dict[str, Any]] = []
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        for i, row in enumerate(table.to_pylist()):
            rows.append(_check(row, f"{path} row {i}"))
    else:
        with open(path, encoding="utf-8") as fh:
            for lineno, row, problem in iter_jsonl(fh, objects_only=False):
                if problem is not None:
                    raise InputError(f"{path}:{lineno}: {problem}")
                rows.append(_check(row, f"{path}:{lineno}"))
    return rows


def write_comparisons(rows: Iterable[dict[str, Any]], path: str | os.PathLike) -> int:
    """Write comparisons as Parquet with :data:`COMPARISON_SCHEMA` (atomically)."""
    rows = [_check(r, "comparison") for r in rows]
    table = pa.Table.from_pylist(rows, schema=COMPARISON_SCHEMA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return len(rows)


# ------------------------------------------------------------------------------- other shapes

Message = dict[str, str]
ROLES = ("system", "user", "assistant")
HH_ROLES = {"Human": "user", "Assistant": "assistant"}
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
SHAPES = (
    "prompt/chosen/rejected, question/response_j/response_k, or chosen/rejected dialogues "
    "(message lists, or Human:/Assistant: text)"
)


class Unusable(ValueError):
    """A row that cannot be used; ``str()`` is the reason it is counted under."""


def parse_dialogue(text: str) -> list[Message]:
    """An HH-RLHF dialogue (``\\n\\nHuman: ...\\n\\nAssistant: ...``) as messages."""
    parts = _HH_TURN.split(text if text.startswith("\n\n") else "\n\n" + text)
    if parts[0].strip() or len(parts) < 3:
        raise Unusable(f"chosen/rejected text without a prompt must be a Human:/Assistant: dialogue; needs {SHAPES}")
    return [{"role": HH_ROLES[role], "content": content.strip()} for role, content in zip(parts[1::2], parts[2::2])]


def _messages(value: Any) -> list[Message]:
    if not value or not all(
        isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in value
    ):
        raise Unusable("a message needs a role (system, user or assistant) and string content")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _split(chosen: list[Message], rejected: list[Message]) -> tuple[list[Message], str, str]:
    """The shared prompt of two dialogues that differ only in their last assistant turn."""
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise Unusable("chosen and rejected must end with an assistant turn")
    if chosen[:-1] != rejected[:-1]:
        raise Unusable("chosen and rejected do not share a prompt")
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


def comparison_from_row(row: dict[str, Any]) -> tuple[str | list[Message], str, str]:
    """(prompt, chosen, rejected) of a preference row in any shape the module docstring lists;
    the prompt is a string (one user turn) or a message list. :class:`Unusable` names what is
    wrong, including an empty prompt or answer."""
    chosen, rejected, prompt = row.get("chosen"), row.get("rejected"), row.get("prompt")
    if isinstance(prompt, str) and isinstance(chosen, str) and isinstance(rejected, str):
        found: tuple[str | list[Message], str, str] = (prompt, chosen, rejected)
    elif all(isinstance(row.get(k), str) for k in ("question", "response_j", "response_k")):
        found = (row["question"], row["response_j"], row["response_k"])
    elif isinstance(chosen, list) and isinstance(rejected, list):
        head = _messages(prompt) if isinstance(prompt, list) else []
        found = _split(head + _messages(chosen), head + _messages(rejected))
    elif isinstance(chosen, str) and isinstance(rejected, str) and prompt is None:
        found = _split(parse_dialogue(chosen), parse_dialogue(rejected))
    else:
        raise Unusable(f"needs {SHAPES}")
    prompt, chosen, rejected = found
    if isinstance(prompt, list) and len(prompt) == 1 and prompt[0]["role"] == "user":
        prompt = prompt[0]["content"]  # one user turn: the same example as a plain prompt
    turns = [prompt] if isinstance(prompt, str) else [m["content"] for m in prompt if m["role"] != "system"]
    if not turns or not all(t.strip() for t in turns):
        raise Unusable("empty prompt")
    for side, text in (("chosen", chosen), ("rejected", rejected)):
        if not text.strip():
            raise Unusable(f"empty {side} answer")
    return prompt, chosen, rejected
