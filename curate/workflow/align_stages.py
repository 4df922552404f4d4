"""The pipeline's alignment stages: ``sft``, ``reward`` and ``rlhf`` (their Stage records are in
:mod:`curate.workflow.stages`).

``[reward] holdout = true`` trains two reward models on the two seeded halves of the
comparisons (``curate train reward --half 0|1``): ``ckpt/rm`` (the one RLHF optimizes) and
``ckpt/rm-holdout``, which RLHF scores every rollout with but never optimizes (``curate train
rlhf --holdout-reward``). The summary then shows that held-out reward before and after RLHF
next to the optimized one, says plainly when RLHF lowered it, and the stage's result is the
best checkpoint by held-out reward (``ckpt/rlhf/best``), which ``[eval]`` and ``try it`` use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from curate.core.config import from_dict
from curate.core.errors import ConfigError
from curate.workflow.config import Pipeline

Log = Callable[[str], None]
HOLDOUT_KEY = "holdout"  # [reward] key of the pipeline (not of the reward command)
BEST_DIR = "best"  # train.align.overopt.BEST_DIR: RLHF's best checkpoint by held-out reward


def align_builder(stage: str, config_class: Callable[[], type], data_key: str) -> Callable[[Pipeline], Any]:
    """``build`` of an alignment stage: its config (seed defaulting to the pipeline's) and the
    required data file named by ``data_key``."""

    def build(pipe: Pipeline) -> tuple[Any, str]:
        t = dict(pipe.tables[stage])
        data = t.pop(data_key, None)
        if not data:
            raise ConfigError(f"[{stage}]: {data_key!r} is required")
        t.setdefault("seed", pipe.seed)
        config = from_dict(config_class(), t, where=f"[{stage}]")
        config.validate()
        return config, data

    return build


def holdout_enabled(pipe: Pipeline) -> bool:
    value = pipe.tables.get("reward", {}).get(HOLDOUT_KEY, False)
    if not isinstance(value, bool):
        raise ConfigError(f"[reward]: {HOLDOUT_KEY} must be true or false, got {value!r}")
    return value


def build_reward(pipe: Pipeline) -> tuple[Any, str, bool]:
    """[reward]: the reward command's settings, plus ``holdout`` (two models on the two halves)."""
    holdout = holdout_enabled(pipe)
    table = {k: v for k, v in pipe.tables["reward"].items() if k != HOLDOUT_KEY}
    if holdout and table.get("half") is not None:
        raise ConfigError("[reward]: holdout = true trains both halves; leave out `half`")
    without = dataclasses.replace(pipe, tables={**pipe.tables, "reward": table})
    config, data = align_builder("reward", reward_config, "data")(without)
    return config, data, holdout


def build_rlhf(pipe: Pipeline) -> tuple[Any, str]:
    config, prompts = align_builder("rlhf", rlhf_config, "prompts")(pipe)
    if getattr(config, "stop_on_divergence", 0) and not holdout_enabled(pipe):
        raise ConfigError("[rlhf]: stop_on_divergence needs a held-out reward model: set holdout = true in [reward]")
    return config, prompts


def holdout_dir(pipe: Pipeline) -> Path:
    """Where the held-out reward model goes: beside the reward model (``ckpt/rm-holdout``)."""
    out = pipe.out("reward")
    return out.parent / f"{out.name}-holdout"


def model_dir(pipe: Pipeline, stage: str) -> Path:
    """A stage's model: RLHF's best checkpoint by held-out reward when it kept one."""
    out = pipe.out(stage)
    return out / BEST_DIR if stage == "rlhf" and (out / BEST_DIR).is_dir() else out


def metrics(result: Any, keys: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Pick named metrics from a StageResult: note name -> (attribute, metric key)."""
    notes: dict[str, Any] = {"_stopped": result.status == "stopped"}
    for note, (attr, key) in keys.items():
        value = (getattr(result, attr, None) or {}).get(key)
        if value is not None:
            notes[note] = value
    return notes


def sft_config() -> type:
    from train.align.sft import SFTConfig

    return SFTConfig


def reward_config() -> type:
    from train.align.reward import RewardConfig

    return RewardConfig


def rlhf_config() -> type:
    from train.align.rlhf import RLHFConfig

    return RLHFConfig


def run_sft(pipe: Pipeline, built: tuple[Any, str], overwrite: bool, log: Log) -> dict[str, Any]:
    from train.align.sft import sft

    config, data = built
    result = sft(
        config, pipe.out("pretrain"), data, pipe.out("sft"), overwrite=overwrite, progress=True, on_message=log
    )
    return metrics(
        result, {"first_loss": ("first", "loss"), "last_loss": ("last", "loss"), "val_loss": ("eval", "val_loss")}
    )


REWARD_NOTES = {
    "final_loss": ("last", "loss"),
    "val_accuracy_before": ("first_eval", "val_accuracy"),
    "val_accuracy": ("eval", "val_accuracy"),
}


def run_reward(pipe: Pipeline, built: tuple[Any, str, bool], overwrite: bool, log: Log) -> dict[str, Any]:
    from train.align.reward import train_reward

    config, data, holdout = built
    if not holdout:
        result = train_reward(
            config, pipe.out("sft"), data, pipe.out("reward"), overwrite=overwrite, progress=True, on_message=log
        )
        return metrics(result, REWARD_NOTES)
    notes: dict[str, Any] = {}
    # The held-out model is trained after the optimized one: when that one starts afresh (a
    # first run, or `--overwrite`, which clears the stage's own folder), a held-out model
    # already there is from an earlier run and is redone too.
    fresh = overwrite or not (pipe.out("reward") / "latest").exists()
    for half, out in ((0, pipe.out("reward")), (1, holdout_dir(pipe))):
        log(f"[reward] half {half} of the comparisons -> {out}")
        result = train_reward(
            dataclasses.replace(config, half=half),
            pipe.out("sft"),
            data,
            out,
            overwrite=overwrite or (half == 1 and fresh and out.exists()),
            progress=True,
            on_message=log,
        )
        found = metrics(result, REWARD_NOTES)
        notes.update(found if half == 0 else {f"holdout_{k}": v for k, v in found.items() if k != "_stopped"})
    notes["holdout"] = str(holdout_dir(pipe))
    return notes


def run_rlhf(pipe: Pipeline, built: tuple[Any, str], overwrite: bool, log: Log) -> dict[str, Any]:
    from train.align.rlhf import rlhf

    config, prompts = built
    holdout = holdout_dir(pipe) if holdout_enabled(pipe) else None
    result = rlhf(
        config,
        pipe.out("sft"),
        prompts,
        pipe.out("rlhf"),
        reward=pipe.out("reward"),
        holdout_reward=holdout,
        overwrite=overwrite,
        progress=True,
        on_message=log,
    )
    notes = metrics(
        result,
        {
            "reward_before": ("first_eval", "val_score"),
            "reward_after": ("eval", "val_score"),
            "kl": ("eval", "val_kl"),
            "holdout_before": ("first_eval", "val_holdout_score"),
            "holdout_after": ("eval", "val_holdout_score"),
            "best_step": ("eval", "best_step"),
            "best_holdout": ("eval", "best_val_holdout_score"),
        },
    )
    notes["diverged"] = result.status == "diverged"
    if holdout is not None:
        notes["result"] = str(model_dir(pipe, "rlhf"))
    return notes


def rlhf_summary(notes: dict[str, Any], fmt: Callable[[Any], str]) -> list[str]:
    """The summary's RLHF lines: the optimized reward and, with a held-out reward model, the
    held-out one, before and after; a plain sentence when RLHF lowered either."""
    lines = []
    before, after = notes.get("reward_before"), notes.get("reward_after")
    if after is not None:
        lines.append(
            f"mean reward on held-out prompts (optimized reward model): {fmt(before)} before RLHF -> {fmt(after)} after"
        )
    h0, h1 = notes.get("holdout_before"), notes.get("holdout_after")
    if h1 is not None:
        lines.append(f"held-out reward model (never optimized): {fmt(h0)} before RLHF -> {fmt(h1)} after")
    if before is not None and after is not None and after < before:
        lines.append("RLHF LOWERED the optimized reward on held-out prompts: the policy got worse by its own measure")
    if h0 is not None and h1 is not None and h1 < h0:
        lines.append(
            "RLHF LOWERED the held-out reward: the policy learned what the optimized reward model pays for, "
            "not what the raters prefer (reward over-optimization)"
        )
    if notes.get("diverged"):
        lines.append("RLHF stopped on divergence (held-out reward falling while the optimized one rose)")
    if notes.get("best_step") is not None and notes.get("result"):
        lines.append(
            f"kept as the result: step {notes['best_step']} (held-out reward {fmt(notes.get('best_holdout'))}), "
            f"{notes['result']}"
        )
    return lines
