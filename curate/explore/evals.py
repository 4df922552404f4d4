"""Evaluation results (``eval.json``, written by ``curate eval``) as text and as HTML: the table
``curate eval`` prints and the block ``curate inspect`` / ``curate report`` show for a
checkpoint. Reads only the JSON; needs neither torch nor the model."""

from __future__ import annotations

import html
import json
import os
from typing import Any

from curate.core.errors import InputError

EVAL_FILE = "eval.json"
TASK_COLUMNS = ("n", "acc", "acc_norm", "acc_char", "centered", "random")
BPB_COLUMNS = ("docs", "bytes", "tokens", "bpb")


def load_eval(step_dir: str) -> dict[str, Any] | None:
    """The step folder's eval.json, None when there is none."""
    path = os.path.join(step_dir, EVAL_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable evaluation results ({exc})") from None


def _num(value: Any, key: str) -> str:
    if value is None:
        return "-"
    if key in ("n", "docs", "bytes", "tokens"):
        return f"{int(value):,}"
    return f"{value:.4f}"


def _rows(headers: tuple[str, ...], rows: list[tuple[str, dict[str, Any]]], indent: str) -> list[str]:
    """An aligned text table: a name column, then ``headers`` taken from each row's dict."""
    cells = [[name] + [_num(values.get(h), h) for h in headers] for name, values in rows]
    first = max([6] + [len(c[0]) for c in cells])
    widths = [max(len(h), *(len(c[i + 1]) for c in cells)) for i, h in enumerate(headers)]
    head = "source" if headers == BPB_COLUMNS else "task"
    out = [indent + f"{head:<{first}}  " + "  ".join(f"{h:>{w}}" for h, w in zip(headers, widths))]
    for c in cells:
        out.append(indent + f"{c[0]:<{first}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(c[1:], widths)))
    return out


def ordered_tasks(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tasks in the order they were run (eval.json's keys are sorted)."""
    tasks = results.get("tasks") or {}
    order = (results.get("core") or {}).get("tasks") or []
    return {name: tasks[name] for name in [*order, *sorted(set(tasks) - set(order))] if name in tasks}


def settings_line(results: dict[str, Any]) -> str:
    s = results.get("settings") or {}
    parts = [f"{s.get('shots', 0)}-shot", f"seed {s.get('seed')}"]
    parts.append(f"first {s['limit']:,} items per task" if s.get("limit") else "all items")
    if s.get("chat"):
        parts.append("chat template")
    parts.append(f"{s.get('device')} {s.get('dtype')}")
    return ", ".join(parts)


def format_eval(results: dict[str, Any], indent: str = "") -> list[str]:
    """The results as the lines ``curate eval`` prints."""
    ck = results.get("checkpoint") or {}
    lines = [f"{indent}eval of {ck.get('path')} ({ck.get('stage') or ck.get('kind')}, step {ck.get('step')})"]
    lines.append(f"{indent}  settings: {settings_line(results)}")
    tasks = ordered_tasks(results)
    if tasks:
        lines += _rows(TASK_COLUMNS, list(tasks.items()), indent + "  ")
        core = results.get("core") or {}
        lines.append(
            f"{indent}  CORE (mean centered accuracy over {len(tasks)} task(s)): {_num(core.get('centered_mean'), '')}"
        )
    bpb = results.get("bpb")
    if bpb:
        lines.append(
            f"{indent}  held-out bits per byte: mix {bpb['mix']}, val_fraction {bpb['val_fraction']}, "
            f"windows of {bpb['window']} tokens, stride {bpb['stride']}"
        )
        rows = list(bpb["sources"].items()) + [("all", bpb["all"])]
        lines += _rows(BPB_COLUMNS, rows, indent + "  ")
    if results.get("text_bpb"):
        lines.append(f"{indent}  bits per byte on --text")
        lines += _rows(BPB_COLUMNS, list(results["text_bpb"].items()), indent + "  ")
    for note in results.get("notes") or []:
        lines.append(f"{indent}  note: {note}")
    lines.append(
        f"{indent}  acc: argmax of log-likelihood; acc_norm: per UTF-8 byte; acc_char: per character; "
        "centered: (acc - 1/k)/(1 - 1/k); bpb: bits / UTF-8 bytes"
    )
    return lines


def eval_html(results: dict[str, Any], table) -> list[str]:
    """The results as report sections; ``table(headers, rows)`` renders a table."""
    esc = html.escape
    parts = [f"<h2>Evaluation</h2><p>{esc(settings_line(results))}</p>"]
    tasks = ordered_tasks(results)
    if tasks:
        parts.append(table(["task", *TASK_COLUMNS], [[n, *(m.get(h) for h in TASK_COLUMNS)] for n, m in tasks.items()]))
        mean = (results.get("core") or {}).get("centered_mean")
        parts.append(f"<p>CORE (mean centered accuracy over {len(tasks)} task(s)): <b>{_num(mean, '')}</b></p>")
    sections = []
    if results.get("bpb"):
        bpb = results["bpb"]
        sections.append((f"held-out bits per byte (mix {bpb['mix']})", {**bpb["sources"], "all": bpb["all"]}))
    if results.get("text_bpb"):
        sections.append(("bits per byte on --text", results["text_bpb"]))
    for title, rows in sections:
        parts.append(f"<h3>{esc(title)}</h3>")
        parts.append(table(["source", *BPB_COLUMNS], [[n, *(r.get(h) for h in BPB_COLUMNS)] for n, r in rows.items()]))
    for key, text in (results.get("definitions") or {}).items():
        parts.append(f"<p class='note'><b>{esc(key)}</b>: {esc(text)}</p>")
    return parts
