"""Views of a comparison set for watching RLHF: two disjoint halves, and the raters' groups.

``curate train reward --half 0|1`` trains on one half of the comparisons (:class:`Halves`):
a hash of each pair's prompt and ``half_seed`` decides (:func:`half_of`), so the halves are
disjoint, together the whole set, the same whatever the order or size of the data, and every
pair of a prompt lands in the same half. Two reward models trained on the two halves give
``curate train rlhf`` one reward to optimize and a held-out one (``--holdout-reward``) that
never saw the first one's prompts (:mod:`train.align.overopt`).

``--by-group`` reports held-out accuracy per rater group: a comparison's ``group`` field, or
``rater_group`` (what ``curate rate export`` writes for raters given a group in
``raters.toml``); rows without one form the group ``(no group)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate.core.comparisons import Message
from curate.core.errors import ConfigError, InputError

from .data import stable_fraction

if TYPE_CHECKING:  # annotations only: reward.py imports this module
    from .reward import PairExample, RewardConfig
    from .stage import StageRun

NO_GROUP = "(no group)"
GROUP_FIELDS = ("group", "rater_group")


def half_of(prompt: str | list[Message], seed: int) -> int:
    """The half (0 or 1) a prompt's comparisons fall in: a hash of the prompt and ``seed``, so
    the halves do not depend on order or data size, and every pair of a prompt lands together."""
    key = json.dumps(prompt, ensure_ascii=False, sort_keys=True)
    return 0 if stable_fraction(f"{seed}\0{key}") < 0.5 else 1


@dataclass
class Halves:
    """Keeps the comparisons of one half (a ``keep`` for :func:`load_pairs`) and counts both."""

    half: int
    seed: int
    kept: int = 0
    left_out: int = 0

    def __call__(self, prompt: str | list[Message]) -> bool:
        keep = half_of(prompt, self.seed) == self.half
        self.kept += keep
        self.left_out += not keep
        return keep

    def meta(self) -> dict[str, int]:
        return {"index": self.half, "seed": self.seed, "comparisons": self.kept, "other_half": self.left_out}


def group_of(row: dict[str, Any]) -> str | None:
    """A comparison's rater group: its ``group`` field, else ``rater_group``; None without one."""
    for name in GROUP_FIELDS:
        value = row.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def group_counts(pairs: Sequence[PairExample]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pair in pairs:
        counts[pair.group or NO_GROUP] = counts.get(pair.group or NO_GROUP, 0) + 1
    return counts


def group_accuracy(eval_metrics: dict[str, float], train_counts: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per rater group: held-out accuracy and pairs, training pairs (checkpoint metadata)."""
    groups = sorted(set(train_counts) | {k[len("val_pairs[") : -1] for k in eval_metrics if k.startswith("val_pairs[")})
    return {
        g: {
            "accuracy": eval_metrics.get(f"val_accuracy[{g}]"),
            "held_out": int(eval_metrics.get(f"val_pairs[{g}]", 0)),
            "train": train_counts.get(g, 0),
        }
        for g in groups
    }


def check_halves(run: StageRun, config: RewardConfig) -> None:
    """A resumed run must train on the half its checkpoints were trained on."""
    if run.resume_from is None:
        return
    before = run.resume_from.meta.get("train_config") or {}
    was = (before.get("half"), before.get("half_seed", 0))
    if was != (config.half, config.half_seed):

        def name(half: int | None, seed: int) -> str:
            return "all comparisons" if half is None else f"half {half} (seed {seed})"

        raise ConfigError(
            f"{run.output} was trained on {name(*was)}, not {name(config.half, config.half_seed)}; "
            "use another output directory or --overwrite"
        )


def check_groups(data: str | Path, train: Sequence[PairExample], held: Sequence[PairExample], run: StageRun) -> None:
    """``by_group`` needs comparisons that name their rater group; note groups with nothing held out."""
    if not any(p.group for p in [*train, *held]):
        raise InputError(
            f"{data}: no comparison has a 'group' (or 'rater_group') field, so there is nothing to report "
            "per group (`curate rate export` writes the raters' groups from raters.toml)"
        )
    held_groups = group_counts(held)
    for group, n in sorted(group_counts(train).items()):
        if group not in held_groups:
            run.note(f"rater group {group!r}: no held-out comparisons ({n:,} training); its accuracy is not reported")
