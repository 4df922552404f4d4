"""``curate inspect`` and ``curate report`` on a checkpoint folder (a training run's folder or
one of its ``step-NNNNNN`` folders): its metadata from ``config.json`` and its evaluation
results from ``eval.json``, in one block; for an RLHF run also its over-optimization watch
from the run's ``metrics.jsonl`` (:mod:`curate.explore.rlhf_plots`). Reads only those JSON
files (no torch, no weights); the layout is train/checkpoint.py's.

The training cutoff shown is the one of the documents the checkpoint consumed (config.json's
``consumed_cutoff``, train/lineage.py), with the whole mix's beside it where they differ (a
run stopped early has not read the late documents); the report plots the consumed tokens by
month of document date."""

from __future__ import annotations

import html
import json
import os
import re
from typing import Any

from curate.core.errors import InputError
from curate.core.files import atomic_write_bytes
from curate.explore.evals import eval_html, format_eval, load_eval
from curate.explore.html import CSS, figure, img, table
from curate.explore.rlhf_plots import is_rlhf, run_metrics, watch_facts, watch_html

CONFIG_FILE, WEIGHTS_FILE, LATEST_FILE = "config.json", "model.safetensors", "latest"
_STEP = re.compile(r"^step-(\d+)$")


def _is_step(path: str) -> bool:
    return os.path.isfile(os.path.join(path, CONFIG_FILE)) and os.path.isfile(os.path.join(path, WEIGHTS_FILE))


def _steps(run_dir: str) -> list[str]:
    """The run's complete step folders, oldest first."""
    found = []
    for name in os.listdir(run_dir):
        match = _STEP.match(name)
        if match and _is_step(os.path.join(run_dir, name)):
            found.append((int(match.group(1)), name))
    return [name for _, name in sorted(found)]


def is_checkpoint(path: str) -> bool:
    """A step folder, or a run folder holding at least one."""
    return os.path.isdir(path) and (_is_step(path) or bool(_steps(path)))


def step_folder(path: str) -> str:
    """The step a path means: itself, else the run's ``latest``, else its newest step."""
    if _is_step(path):
        return path
    latest = os.path.join(path, LATEST_FILE)
    if os.path.isfile(latest):
        with open(latest, encoding="utf-8") as fh:
            named = os.path.join(path, fh.read().strip())
        if _is_step(named):
            return named
    steps = _steps(path)
    if not steps:
        raise InputError(f"{path}: holds no checkpoint")
    return os.path.join(path, steps[-1])


def checkpoint_summary(path: str) -> dict[str, Any]:
    """What ``curate inspect`` shows of a checkpoint: metadata, the run's steps, eval results."""
    step = step_folder(path)
    try:
        with open(os.path.join(step, CONFIG_FILE), encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{os.path.join(step, CONFIG_FILE)}: unreadable checkpoint config ({exc})") from None
    run = path if os.path.normpath(step) != os.path.normpath(path) else os.path.dirname(step)
    return {
        "path": path,
        "step_dir": step,
        "steps": _steps(run) if os.path.isdir(run) else [],
        "meta": meta,
        "eval": load_eval(step),
    }


def _model_line(model: dict[str, Any]) -> str:
    keys = ("n_layer", "n_head", "n_kv_head", "n_embd", "block_size", "vocab_size")
    return ", ".join(f"{k} {model[k]}" for k in keys if k in model)


def _facts(s: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs of the checkpoint's metadata, those it has, in reading order."""
    meta = s["meta"]
    tok = meta.get("tokenizer") or {}
    facts = [
        ("stage", f"{meta.get('stage') or '?'} (kind {meta.get('kind', 'lm')})"),
        ("step", f"{meta.get('step')} ({os.path.basename(s['step_dir'])}; kept: {', '.join(s['steps']) or '-'})"),
        ("model", _model_line(meta.get("model") or {})),
        ("tokenizer", f"{tok.get('name')} (vocab {tok.get('vocab_size')})" if isinstance(tok, dict) else str(tok)),
        ("tokens seen", f"{meta['tokens_seen']:,}" if isinstance(meta.get("tokens_seen"), int) else None),
        *_cutoff_facts(meta),
        ("consumed", _consumed_line(meta)),
        ("mix", meta.get("mix")),
        ("parent", meta.get("parent")),
        ("last loss", _losses(meta)),
        ("tool version", meta.get("tool_version")),
    ]
    facts += _half_and_groups(meta)
    if is_rlhf(s):
        facts += watch_facts(s, run_metrics(s["step_dir"]))
    return [(k, str(v)) for k, v in facts if v not in (None, "")]


def _cutoff_text(cutoff: Any) -> Any:
    if not isinstance(cutoff, dict):
        return cutoff
    undated = cutoff.get("undated_docs")
    tail = f"; {undated:,} undated" if isinstance(undated, int) and undated else ""
    return f"{cutoff.get('max')} (p99 {cutoff.get('p99')}{tail})"


def _cutoff_facts(meta: dict[str, Any]) -> list[tuple[str, Any]]:
    """The cutoff of what the checkpoint consumed, and the mix's where it differs."""
    mix, consumed = meta.get("training_cutoff"), meta.get("consumed_cutoff")
    if not isinstance(consumed, dict):
        return [("training cutoff", _cutoff_text(mix))]
    facts = [("training cutoff", f"{_cutoff_text(consumed)}, from the documents consumed")]
    if not isinstance(mix, dict) or (mix.get("max"), mix.get("p99")) != (consumed.get("max"), consumed.get("p99")):
        facts.append(("mix cutoff", _cutoff_text(mix)))
    return facts


def _consumed_line(meta: dict[str, Any]) -> str | None:
    consumed = meta.get("consumed")
    if not isinstance(consumed, dict):
        return None
    what = "documents" if "by_month" in consumed else "examples"
    sources = ", ".join(f"{k} {v.get('tokens', 0):,}" for k, v in list((consumed.get("by_source") or {}).items())[:5])
    return (
        f"{consumed.get('documents', 0):,} {what}, {consumed.get('tokens', 0):,} tokens"
        f"{f' ({sources})' if sources else ''}; curate lineage lists them"
    )


def _consumed_by_month_html(meta: dict[str, Any]) -> list[str]:
    """A bar plot of the consumed tokens by month of document date (undated ones noted)."""
    by_month = (meta.get("consumed") or {}).get("by_month") or {}
    dated = {m: row.get("tokens", 0) for m, row in by_month.items() if m != "undated"}
    if not dated:
        return []
    fig, ax = figure(7.0, 3.0)
    months = sorted(dated)
    ax.bar(range(len(months)), [dated[m] for m in months], color="#4c78a8")
    step = max(1, len(months) // 12)
    ax.set_xticks(range(0, len(months), step), months[::step], rotation=45, ha="right")
    ax.set_ylabel("tokens consumed")
    ax.set_title("consumed tokens by month of document date")
    undated = (by_month.get("undated") or {}).get("tokens", 0)
    note = f"<p class='note'>{undated:,} tokens from undated documents are not plotted.</p>" if undated else ""
    return ["<h2>Consumed tokens by month</h2>", img(fig, "consumed tokens by month of document date"), note]


def _half_and_groups(meta: dict[str, Any]) -> list[tuple[str, Any]]:
    """A reward model's half of the comparisons and held-out accuracy per rater group."""
    facts: list[tuple[str, Any]] = []
    half = meta.get("half")
    if isinstance(half, dict):
        facts.append(
            (
                "half",
                f"{half.get('index')} of the comparisons (seed {half.get('seed')}): "
                f"{half.get('comparisons')} kept, {half.get('other_half')} in the other half",
            )
        )
    for group, row in sorted((meta.get("group_accuracy") or {}).items()):
        acc = row.get("accuracy")
        shown = f"{acc:.1%}" if isinstance(acc, (int, float)) else "-"
        facts.append(
            (f"group {group}", f"held-out accuracy {shown} of {row.get('held_out')} ({row.get('train')} training)")
        )
    return facts


def _losses(meta: dict[str, Any]) -> str | None:
    names = {"loss": "training", "val_loss": "held-out"}
    parts = [f"{name} {meta[k]:.4g}" for k, name in names.items() if isinstance(meta.get(k), float)]
    return "  ".join(parts) or None


def format_checkpoint(s: dict[str, Any]) -> str:
    """The block ``curate inspect`` prints for a checkpoint."""
    lines = [f"{s['path']}  [checkpoint]"]
    lines += [f"  {label:<16}{value}" for label, value in _facts(s)]
    if s["eval"] is None:
        lines.append(f"  eval            none yet (curate eval {s['path']} writes {s['step_dir']}/eval.json)")
    else:
        lines += format_eval(s["eval"], indent="  ")
    return "\n".join(lines)


def write_checkpoint_report(path: str, output: str) -> str:
    """One self-contained HTML page: the checkpoint's metadata and evaluation results."""
    s = checkpoint_summary(path)
    esc = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>curate report: {esc(path)}</title>"
        f"<style>{CSS}</style></head><body><h1>curate report: checkpoint {esc(path)}</h1>",
        table(["", ""], [[label, value] for label, value in _facts(s)]),
    ]
    if s["eval"] is None:
        parts.append(f"<p class='note'>No evaluation yet: run <code>curate eval {esc(path)}</code>.</p>")
    else:
        parts += eval_html(s["eval"], table)
    parts += _consumed_by_month_html(s["meta"])
    if is_rlhf(s):
        parts += watch_html(s)
    parts.append("</body></html>\n")
    atomic_write_bytes(output, "".join(parts).encode("utf-8"))
    return output
