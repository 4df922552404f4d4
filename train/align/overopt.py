"""Watching an RLHF run for reward over-optimization.

A policy optimized against a reward model learns whatever that model rewards, including what
people did not mean: longer answers, repeated phrases, flattery. Gao et al. (2023, "Scaling
laws for reward model overoptimization") show the signature: as the KL from the starting
policy grows, the optimized reward keeps rising while a reward the policy is not trained
against (their "gold" model) peaks and falls. This module gives :mod:`train.align.rlhf`:

* :class:`HoldoutReward`: a second reward (``--holdout-reward``, e.g. a reward model trained
  on the other half of the comparisons, ``curate train reward --half``) that scores every
  rollout under ``torch.no_grad``; its scores are logged and never reach the loss.
* :func:`batch_stats`: what each logging step records besides the reward: the held-out
  score, the Pearson correlation of each reward with response length over the batch, and the
  share of repeated word 3-grams in the responses.
* :func:`evaluate`: the held-out prompts answered with a fixed sampling seed (as
  :meth:`~train.align.rollout.Sampler.evaluate` does) and the same statistics, prefixed ``val_``.
* :class:`DivergenceWatch`: the held-out reward at each eval, the best eval, and the rule of
  ``--stop-on-divergence N``: the held-out reward fell at each of the last N evals while the
  optimized one ended above where it stood before that run of falls.
* :func:`save_best`: the policy of the best eval by held-out reward, kept in ``RUN/best/``.
* :class:`Watcher`: all of it as one RLHF run uses it: step by step, eval by eval, in its
  checkpoints, and in the run's result.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from curate.core.errors import ConfigError

from ..checkpoint import list_step_dirs, save_checkpoint
from .data import Prompt
from .rollout import RewardFn, Rollout, Sampler, response_lengths
from .stage import StageResult, StageRun

NGRAM = 3  # repeated word n-grams are counted for this n
BEST_DIR = "best"  # RUN/best/: the checkpoint of the best eval by held-out reward


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's r; None when it is undefined (fewer than two values, or one side constant)."""
    n = len(xs)
    if n < 2 or n != len(ys):
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / math.sqrt(sxx * syy)


def repeated_ngram_rate(texts: Sequence[str], n: int = NGRAM) -> float:
    """The share of word n-grams that repeat an earlier one of the same response, over all the
    responses' n-grams together (0 when none is long enough to have one): a policy that pads
    its answers by repeating itself drives it up."""
    total = repeated = 0
    for text in texts:
        words = text.split()
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        repeated += len(grams) - len(set(grams))
    return repeated / total if total else 0.0


class HoldoutReward:
    """A reward that watches: scores responses like the optimized one, under ``torch.no_grad``
    and without drawing random numbers, so a run's updates are the same with or without it."""

    def __init__(self, reward: RewardFn, name: str):
        self.reward = reward
        self.name = name

    def __call__(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            scores = [float(s) for s in self.reward([p.text for p in prompts], responses)]
        if len(scores) != len(responses):
            raise ConfigError(f"the held-out reward returned {len(scores)} scores for {len(responses)} responses")
        return torch.tensor(scores, dtype=torch.float32)


def batch_stats(rolls: Sequence[Rollout], holdout: Sequence[torch.Tensor] | None) -> dict[str, float | None]:
    """Mean held-out score, each reward's correlation with response length (tokens), repeated
    word 3-gram share, over one or more rollouts."""
    lengths = torch.cat([response_lengths(r.mask).float().cpu() for r in rolls]).tolist()
    scores = torch.cat([r.scores.float().cpu() for r in rolls]).tolist()
    stats: dict[str, float | None] = {
        "score_len_corr": pearson(scores, lengths),
        f"repeat_{NGRAM}gram": repeated_ngram_rate([text for r in rolls for text in r.responses]),
    }
    if holdout is not None:
        held = torch.cat(list(holdout)).tolist()
        stats["holdout_score"] = sum(held) / len(held)
        stats["holdout_len_corr"] = pearson(held, lengths)
    return stats


@torch.no_grad()
def evaluate(
    sampler: Sampler, prompts: Sequence[Prompt], holdout: HoldoutReward | None
) -> dict[str, float | None] | None:
    """Held-out prompts answered with the same fixed seed and batches as
    :meth:`Sampler.evaluate` (so ``val_score``, ``val_kl`` and ``val_response_len`` are the
    numbers it gives), plus :func:`batch_stats` over all the answers, each key prefixed ``val_``."""
    if not prompts:
        return None
    cfg = sampler.config
    generator = torch.Generator(device=sampler.device).manual_seed(cfg.seed + 7919)
    expanded = [p for p in prompts for _ in range(cfg.eval_samples)]
    size = max(cfg.batch_size * cfg.samples_per_prompt, 1)
    rolls, held = [], []
    for start in range(0, len(expanded), size):
        batch = expanded[start : start + size]
        rolls.append(sampler.rollout(batch, generator))
        if holdout is not None:
            held.append(holdout(batch, rolls[-1].responses))
    out: dict[str, float | None] = {
        "val_score": float(torch.cat([r.scores for r in rolls]).mean()),
        "val_kl": float(torch.cat([(r.logprobs - r.ref_logprobs).sum(1) for r in rolls]).mean()),
        "val_response_len": float(torch.cat([response_lengths(r.mask) for r in rolls]).float().mean()),
    }
    out.update({f"val_{k}": v for k, v in batch_stats(rolls, held if holdout is not None else None).items()})
    return out


@dataclass
class DivergenceWatch:
    """The optimized and held-out reward of each eval, and what follows from them.

    ``patience`` is ``--stop-on-divergence N`` (0: never stop). The state rides along in the
    run's checkpoints (:meth:`state`), so a resumed run stops where the uninterrupted one does.
    """

    patience: int = 0
    evals: list[tuple[int, float, float]] = field(default_factory=list)  # (step, optimized, held-out)

    def observe(self, step: int, optimized: float, held_out: float) -> bool:
        """Record one eval; whether it is the best so far by held-out reward."""
        best = self.best
        self.evals.append((step, optimized, held_out))
        return best is None or held_out > best[1]

    @property
    def best(self) -> tuple[int, float] | None:
        """(step, held-out reward) of the best eval; the earliest among equals."""
        if not self.evals:
            return None
        step, _, held = max(self.evals, key=lambda e: (e[2], -e[0]))
        return step, held

    @property
    def falling(self) -> int:
        """How many evals in a row, up to the last, the held-out reward fell."""
        run = 0
        for (_, _, before), (_, _, after) in zip(self.evals[-2::-1], self.evals[::-1]):
            if not after < before:
                break
            run += 1
        return run

    @property
    def diverged(self) -> bool:
        """The held-out reward fell at each of the last ``patience`` evals while the optimized
        reward rose over them (its last value above the one before the first fall)."""
        n = self.patience
        if not n or self.falling < n:
            return False
        return self.evals[-1][1] > self.evals[-1 - n][1]

    def state(self) -> dict[str, Any]:
        return {"evals": [list(e) for e in self.evals]}

    def load(self, state: dict[str, Any] | None) -> None:
        self.evals = [(int(s), float(o), float(h)) for s, o, h in (state or {}).get("evals", [])]

    def meta(self) -> dict[str, Any]:
        """Checkpoint metadata: the held-out reward at the first and last eval, the best eval,
        and the step where the run stopped on divergence (None when it did not)."""
        best = self.best
        return {
            "holdout_score_before": self.evals[0][2] if self.evals else None,
            "holdout_score_after": self.evals[-1][2] if self.evals else None,
            "best_step": best[0] if best else None,
            "best_holdout_score": best[1] if best else None,
            "diverged_at": self.evals[-1][0] if self.diverged else None,
        }


def best_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint kept in ``RUN/best/``, if any."""
    steps = list_step_dirs(Path(run_dir) / BEST_DIR) if (Path(run_dir) / BEST_DIR).is_dir() else []
    return steps[-1] if steps else None


def save_best(run: StageRun, step: int, policy: torch.nn.Module, fields: dict[str, Any]) -> Path:
    """The policy at ``step`` as ``RUN/best/step-N`` (weights and metadata, no optimizer state:
    a result, not a place to resume from), replacing the one there."""
    best_dir = run.output / BEST_DIR
    consumed, files = run.consumed_record(step)  # what the policy at that step had read (lineage)
    meta_fields: dict[str, Any] = {"data": run.data, "data_sha256": run.data_sha256, **consumed, **fields}
    if run.parent is not None and "tokenizer" in run.parent.meta:
        meta_fields["tokenizer"] = run.parent.meta["tokenizer"]
    saved = save_checkpoint(
        best_dir,
        step,
        model_state=policy.state_dict(),
        model_config=policy.config.to_dict(),
        meta=run.dir.meta(step, meta_fields),
        kind="policy",
        tokenizer=run.tokenizer,
        keep_last=None,
        files=files,
    )
    # Only one best: any other step here is an earlier best (or one from a run started over).
    for old in list_step_dirs(best_dir):
        if old != saved:
            shutil.rmtree(old, ignore_errors=True)
    return saved


class StopOnDivergence(Exception):
    """Raised by a step that is not to be taken: the held-out reward has diverged."""


class Watcher:
    """The over-optimization watch of one RLHF run.

    ``holdout`` may be None: the length correlation and repetition are logged all the same.
    ``checkpoint_meta()`` gives the metadata a best checkpoint is saved with (the run's own).
    """

    def __init__(self, run: StageRun, holdout: HoldoutReward | None, patience: int):
        self.run, self.holdout = run, holdout
        self.watch = DivergenceWatch(patience)
        self.done = 0  # steps taken: the step an eval belongs to
        self.skip_next_eval = False  # a resumed run's first eval is its checkpoint's step, watched already

    def resume(self, train_state: dict[str, Any]) -> None:
        self.watch.load(train_state.get("watch"))
        self.done = int(train_state["step"])
        self.skip_next_eval = True

    def start_step(self, step: int) -> None:
        """Before step ``step`` (0-based) does anything: refuse it once the run has diverged."""
        if self.watch.diverged:
            raise StopOnDivergence
        self.done = step + 1

    def score(self, prompts: Sequence[Prompt], roll: Rollout) -> torch.Tensor | None:
        return self.holdout(prompts, roll.responses) if self.holdout is not None else None

    def evaluate(
        self, sampler: Sampler, prompts: Sequence[Prompt], policy: torch.nn.Module, meta: dict[str, Any]
    ) -> dict[str, float | None] | None:
        """The held-out prompts' eval (:func:`evaluate`); with a held-out reward, the watch's
        view of it (a new best is saved to ``RUN/best/`` with ``meta``) and the best eval so
        far (``best_step``, ``best_val_holdout_score``)."""
        val = evaluate(sampler, prompts, self.holdout)
        if val is None or self.holdout is None:
            return val
        if self.skip_next_eval:
            self.skip_next_eval = False
        elif self.watch.observe(self.done, val["val_score"], val["val_holdout_score"]):
            save_best(self.run, self.done, policy, {**meta, **self.meta()})
        best = self.watch.best
        val["best_step"], val["best_val_holdout_score"] = best if best else (None, None)
        return val

    def state(self) -> dict[str, Any]:
        return self.watch.state()

    def meta(self) -> dict[str, Any]:
        """Checkpoint metadata: the held-out reward's name and :meth:`DivergenceWatch.meta`."""
        if self.holdout is None:
            return {}
        return {"holdout_reward": self.holdout.name, **self.watch.meta()}

    def finish(self, result: StageResult, patience: int) -> StageResult:
        """With a held-out reward: the best checkpoint as the result of a finished run, and
        plain notes when the run stopped on divergence or lowered the held-out reward."""
        if self.holdout is None:
            return result
        meta = self.watch.meta()
        if meta["diverged_at"] is not None:
            result.status = "diverged"
            self.run.note(
                f"stopped at step {meta['diverged_at']:,}: the held-out reward fell for {patience} "
                "evaluation(s) in a row while the optimized reward rose"
            )
        before, after = meta["holdout_score_before"], meta["holdout_score_after"]
        if before is not None and after is not None and after < before:
            self.run.note(
                f"RLHF lowered the held-out reward ({before:.4g} -> {after:.4g}); the best policy by "
                f"held-out reward is step {meta['best_step']:,} ({meta['best_holdout_score']:.4g})"
            )
        best = best_checkpoint(self.run.output)
        if result.status in ("done", "diverged") and best is not None:
            result.checkpoint = best
        return result
