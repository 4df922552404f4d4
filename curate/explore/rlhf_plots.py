"""An RLHF run's over-optimization watch, for ``curate inspect`` and ``curate report``.

Reads the run's ``metrics.jsonl`` (train/align/rlhf.py writes it; plain JSON, no torch): the
evals on held-out prompts (``val_score``, the optimized reward; ``val_holdout_score``, the
held-out reward; ``val_kl``; ``val_response_len``) and the training steps (``score``,
``holdout_score``, ``kl``, ``response_len``). The report plots the over-optimization curve of
Gao et al. (2023): each reward's change since the first eval against the KL from the starting
policy (the optimized one keeps rising; a held-out one that peaks and falls is the policy
learning what the reward model rewards rather than what people meant), and response length
against step. ``RUN/best/`` (the best eval by held-out reward) reads its parent run's log.
"""

from __future__ import annotations

import html
import os
from typing import Any

from curate.core.files import iter_jsonl
from curate.explore.html import figure, img, table

METRICS_FILE = "metrics.jsonl"
BEST_DIR = "best"


def is_rlhf(s: dict[str, Any]) -> bool:
    return str(s["meta"].get("stage") or "").startswith("rlhf")


def run_metrics(step_dir: str) -> list[dict[str, Any]]:
    """The records of the metrics log of the run ``step_dir`` belongs to (its folder's, or for a
    checkpoint in ``RUN/best/``, RUN's); lines that are not JSON objects are left out."""
    run = os.path.dirname(os.path.abspath(step_dir))
    if os.path.basename(run) == BEST_DIR and not os.path.isfile(os.path.join(run, METRICS_FILE)):
        run = os.path.dirname(run)
    path = os.path.join(run, METRICS_FILE)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [record for _, record, problem in iter_jsonl(fh) if problem is None]


def _evals(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if isinstance(r.get("val_score"), (int, float))]


def _steps(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if isinstance(r.get("score"), (int, float))]


def _g(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"


def watch_facts(s: dict[str, Any], records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(label, value) lines for an RLHF checkpoint: rewards and KL first -> last eval, length,
    the held-out reward, the best eval and a stop on divergence."""
    meta, evals = s["meta"], _evals(records)
    facts: list[tuple[str, str]] = []
    if evals:
        first, last = evals[0], evals[-1]
        facts.append(("evals", f"steps {first['step']} -> {last['step']} on held-out prompts ({len(evals)} evals)"))
        facts.append(("reward", f"optimized {_g(first['val_score'])} -> {_g(last['val_score'])}"))
        if "val_holdout_score" in last:
            facts.append(
                ("held-out reward", f"{_g(first.get('val_holdout_score'))} -> {_g(last['val_holdout_score'])}")
            )
        facts.append(("KL to reference", f"{_g(first.get('val_kl'))} -> {_g(last.get('val_kl'))}"))
        facts.append(("response length", f"{_g(first.get('val_response_len'))} -> {_g(last.get('val_response_len'))}"))
    if meta.get("holdout_reward"):
        facts.append(("held-out model", str(meta["holdout_reward"])))
    if meta.get("best_step") is not None:
        where = meta.get("best_checkpoint") or "RUN/best/"
        facts.append(("best (held-out)", f"step {meta['best_step']} ({_g(meta.get('best_holdout_score'))}): {where}"))
    if meta.get("diverged_at") is not None:
        facts.append(("stopped", f"at step {meta['diverged_at']}: held-out reward fell while the optimized rose"))
    steps = _steps(records)
    if steps and isinstance(steps[-1].get("score_len_corr"), (int, float)):
        last = steps[-1]
        facts.append(
            (
                "last batch",
                f"reward~length r {_g(last['score_len_corr'])}, repeated 3-grams {_g(last.get('repeat_3gram'))}",
            )
        )
    return facts


def plot_overoptimization(records: list[dict[str, Any]], best_step: int | None = None) -> str | None:
    """Each reward's change since the first point against KL: the evals when there are two or
    more (held-out prompts, a fixed sampling seed), else the training batches."""
    points = _evals(records)
    opt, held, kl = "val_score", "val_holdout_score", "val_kl"
    if len(points) < 2:
        points, opt, held, kl = _steps(records), "score", "holdout_score", "kl"
    points = [p for p in points if isinstance(p.get(kl), (int, float))]
    if len(points) < 2:
        return None
    fig, ax = figure(6.4, 3.8)
    xs = [p[kl] for p in points]
    series = [(opt, "optimized reward", "o", "#357")]
    if all(isinstance(p.get(held), (int, float)) for p in points):
        series.append((held, "held-out reward", "s", "#c52"))
    for key, label, marker, color in series:
        ys = [p[key] - points[0][key] for p in points]
        # Faint lines in step order (KL need not grow steadily), the points themselves solid.
        ax.plot(xs, ys, "-", color=color, alpha=0.3, linewidth=1)
        ax.plot(xs, ys, marker, color=color, label=label, markersize=5)
        ax.annotate(
            f"step {points[-1].get('step')}", (xs[-1], ys[-1]), fontsize=7, xytext=(4, 2), textcoords="offset points"
        )
        for p, x, y in zip(points, xs, ys):
            if key == held and p.get("step") == best_step:
                ax.plot([x], [y], "*", color=color, markersize=14, label=f"best (step {best_step})")
    ax.axhline(0, color="#aaa", linewidth=0.8)
    ax.set_xlabel("KL to the starting policy (nats per response)")
    ax.set_ylabel("change since the first eval")
    where = "held-out prompts" if opt == "val_score" else "training batches"
    ax.set_title(f"Reward over-optimization ({where})")
    ax.legend(fontsize=8, frameon=False)
    return img(fig, "optimized and held-out reward against KL")


def plot_length(records: list[dict[str, Any]]) -> str | None:
    steps = [r for r in _steps(records) if isinstance(r.get("response_len"), (int, float))]
    evals = [r for r in _evals(records) if isinstance(r.get("val_response_len"), (int, float))]
    if len(steps) + len(evals) < 2:
        return None
    fig, ax = figure()
    if steps:
        ax.plot(
            [r["step"] for r in steps], [r["response_len"] for r in steps], "-", color="#357", label="training batch"
        )
    if evals:
        ax.plot(
            [r["step"] for r in evals], [r["val_response_len"] for r in evals], "o", color="#c52", label="held-out eval"
        )
    ax.set_xlabel("step")
    ax.set_ylabel("mean response length (tokens)")
    ax.set_title("Response length")
    ax.legend(fontsize=8, frameon=False)
    return img(fig, "response length against step")


def watch_html(s: dict[str, Any]) -> list[str]:
    """The report's section for an RLHF checkpoint (empty when its run left no metrics)."""
    records = run_metrics(s["step_dir"])
    if not records:
        return []
    parts = ["<h2>Reward over-optimization</h2>"]
    plots = [p for p in (plot_overoptimization(records, s["meta"].get("best_step")), plot_length(records)) if p]
    if plots:
        parts.append("<div class='grid'>" + "".join(plots) + "</div>")
    if not any(r.get("holdout_score") is not None or r.get("val_holdout_score") is not None for r in records):
        parts.append(
            "<p class='note'>No held-out reward in this run: train with <code>--holdout-reward</code> "
            "(e.g. a reward model from <code>curate train reward --half</code> on the other half).</p>"
        )
    keys = (
        "step",
        "val_score",
        "val_holdout_score",
        "val_kl",
        "val_response_len",
        "val_score_len_corr",
        "val_repeat_3gram",
    )
    evals = _evals(records)
    if evals:
        parts.append(table(list(keys), [[r.get(k) for k in keys] for r in evals]))
    parts.append(f"<p class='note'>From {html.escape(METRICS_FILE)} of the run.</p>")
    return parts
