"""The training runs a ``curate forget`` request makes out of date: those whose consumption
record holds the documents, those with no record that trained on the old mix, and every run
started from one of them, parents first, each with the command that redoes it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from curate.explore.trace import Found, read_step_config, step_meta


def runs_to_redo(found: Found, workdir: Path, target: Path) -> list[dict[str, Any]]:
    """The training runs (run folders) to redo: those with a step that consumed the documents
    (or has no consumption record and was trained on the old mix), and every run started from
    one of them; parents first, each with its command."""
    steps = {Path(ck["path"]): ck for ck in found.checkpoints}
    in_mix = any(d["mix"] for d in found.documents)
    runs: dict[Path, dict[str, Any]] = {}
    maybe: set[Path] = set()  # runs with a step that has no record but was trained on the mix
    for path, ck in sorted(steps.items()):
        run = path.parent
        entry = runs.setdefault(run, {"run": str(run), "stage": ck["stage"], "why": None, "step": str(path)})
        entry["step"] = str(path)  # the newest step (sorted)
        if ck["record"] and ck["documents"]:
            entry["why"] = f"consumed {ck['documents']} of them ({ck['tokens']:,} tokens)"
        elif not ck["record"] and ck["trained_on_mix"] and in_mix:
            maybe.add(run)
    parents = {}
    for path, ck in steps.items():
        if ck.get("parent"):
            parent = Path(ck["parent"])
            parents[path.parent] = _same(parent.parent if parent.name.startswith("step-") else parent, runs)
    # A run started from a run to redo is redone too (base -> sft -> reward, rlhf ...); only a
    # run without such a parent is redone for having been trained on the mix without a record.
    changed = True
    while changed:
        changed = False
        for run, parent in parents.items():
            if runs[run]["why"] is None and runs.get(parent, {}).get("why"):
                runs[run]["why"] = f"started from {parent}"
                changed = True
    for run in sorted(maybe):
        if runs[run]["why"] is None and run not in parents:
            runs[run]["why"] = "no consumption record; trained on the mix that holds them"
    ordered = [r for r in _parents_first(runs, parents) if r["why"]]
    for r in ordered:
        r["command"] = _command(r, workdir, target, parents, runs)
    return ordered


def _same(path: Path, runs: dict[Path, Any]) -> Path:
    """The run folder among ``runs`` that ``path`` names (paths may be relative or absolute)."""
    for run in runs:
        if os.path.abspath(run) == os.path.abspath(path):
            return run
    return path


def _parents_first(runs: dict[Path, dict[str, Any]], parents: dict[Path, Path]) -> list[dict[str, Any]]:
    def depth(run: Path, seen: int = 0) -> int:
        parent = parents.get(run)
        return 0 if parent is None or seen > 8 else 1 + depth(parent, seen + 1)

    return [runs[r] for r in sorted(runs, key=lambda r: (depth(r), str(r)))]


def _new_run(run: Path, workdir: Path, target: Path) -> str:
    try:
        return str(target / os.path.relpath(os.path.abspath(run), os.path.abspath(workdir)))
    except ValueError:
        return str(target / run.name)


def _command(
    r: dict[str, Any], workdir: Path, target: Path, parents: dict[Path, Path], runs: dict[Path, dict[str, Any]]
) -> str:
    run = Path(r["run"])
    meta = step_meta(read_step_config(Path(r["step"])))
    out = _new_run(run, workdir, target)
    parent = parents.get(run)
    base = _new_run(parent, workdir, target) if parent is not None else "BASE"
    settings = f"  # other settings as in {r['step']}/config.json (train_config)"
    stage = r["stage"]
    data = meta.get("data") or "DATA"
    if stage == "pretrain":
        return f"curate train pretrain --data {target / 'mix'} -o {out} --config CONFIG" + settings
    if stage in ("sft", "reward"):
        return f"curate train {stage} --base {base} --data {data} -o {out}" + settings
    if stage == "rlhf":
        reward = meta.get("reward") or "REWARD"
        return f"curate train rlhf --policy {base} --reward {reward} --prompts {data} -o {out}" + settings
    if stage == "dpo":
        return f"curate train dpo --policy {base} --data {data} -o {out}" + settings
    return f"retrain {run} from {base} into {out}" + settings
