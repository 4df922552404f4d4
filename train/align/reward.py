"""Reward model: the transformer trunk plus a scalar head, trained on human comparisons.

    curate train reward --base work/ckpt/sft --data work/comparisons -o work/ckpt/rm
    curate train score work/ckpt/rm --data answers.jsonl

Each comparison (``prompt``, ``chosen``, ``rejected``, or HH-RLHF, StackExchange-paired or TRL
rows; JSON Lines, a JSON array, Parquet or a directory, see :mod:`curate.core.comparisons`) is
rendered twice in the chat template, prompt (one turn or a whole dialogue) + answer, and the
model reads one number at the last real token of each (the ``<|end|>`` closing the answer).
The loss is Bradley–Terry, ``-log sigmoid(r_chosen - r_rejected - margin)``; the margin is a
per-row ``margin`` field when the data has one (Llama 2 style: larger for clearer
preferences), else the configured constant (0 = plain Bradley–Terry). A slice of the pairs
(by a hash of the pair) is held out; each eval reports held-out pairwise accuracy.

``half`` (0 or 1) trains on one seeded half of the comparisons and ``by_group`` reports
held-out accuracy per rater group (:mod:`train.align.halves`): two models trained on the two
halves are the reward and the held-out reward of an RLHF run (:mod:`train.align.overopt`).

Differences from InstructGPT's recipe: one pair per row rather than all K-choose-2 pairs of
a K-way ranking (rank-derived pairs can simply be written as rows), and an optional small
penalty on ``(r_chosen + r_rejected)^2`` (``center_coef``) that keeps scores centred on 0,
which keeps the RLHF reward scale stable.

The checkpoint is the trunk's state dict plus ``head.weight``/``head.bias`` (kind
"reward"), so ``load_lm`` can still read its trunk. :class:`RewardScorer` applies it, to RLHF
rollouts and to files (:mod:`train.align.score`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn

from curate.core.comparisons import Message, Unusable, comparison_from_row
from curate.core.errors import InputError
from curate.core.ranges import NON_NEGATIVE, SEED, Range
from curate.core.tokenizer import Tokenizer

from ..chat import encode_chat
from ..checkpoint import Checkpoint, load_checkpoint, load_checkpoint_tokenizer, model_config_of
from ..model import GPT, GPTConfig
from ..runtime import autocast_context
from .config import AlignOptim, DataStageConfig, check_max_len
from .data import HeldOutSplit, Origin, Skipped, origin_of, pad_right, read_records
from .halves import NO_GROUP, Halves, check_groups, check_halves, group_accuracy, group_counts, group_of
from .losses import bradley_terry_loss
from .stage import (
    StageResult,
    StageRun,
    optimizer_step,
    run_steps,
    step_batch,
)

HEAD_PREFIX = "head."


class ScalarHeadModel(nn.Module):
    """A GPT trunk with a linear head giving one number per position. Used as the reward
    model (read at each sequence's last real token) and as the PPO value model (read at every
    response position)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.trunk = GPT(config)
        self.head = nn.Linear(config.n_embd, 1)
        # A fresh head starts at 0 for every input: no preference before any training.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def config(self) -> GPTConfig:
        return self.trunk.config

    def values(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) head output at every position."""
        hidden = self.trunk.hidden_states(idx, attention_mask=attention_mask)
        return self.head(hidden).squeeze(-1)

    def forward(self, idx: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B,) head output at each row's last real token (rows right-padded)."""
        hidden = self.trunk.hidden_states(idx, attention_mask=attention_mask)
        last = attention_mask.long().sum(1).clamp(min=1) - 1
        picked = hidden[torch.arange(idx.shape[0], device=idx.device), last]
        return self.head(picked.to(self.head.weight.dtype)).squeeze(-1)

    def export_state(self) -> dict[str, torch.Tensor]:
        """Trunk keys as a plain GPT has them, plus ``head.*``."""
        state = dict(self.trunk.state_dict())
        state.update({HEAD_PREFIX + k: v for k, v in self.head.state_dict().items()})
        return state

    def load_export(self, state: dict[str, torch.Tensor], where: str, require_head: bool) -> None:
        trunk_keys = self.trunk.state_dict()
        missing = sorted(k for k in trunk_keys if k not in state)
        if missing:
            raise InputError(f"{where}: weights lack {len(missing)} model tensor(s), e.g. {missing[0]}")
        for name in trunk_keys:
            if state[name].shape != trunk_keys[name].shape:
                raise InputError(
                    f"{where}: {name} has shape {tuple(state[name].shape)}, "
                    f"config expects {tuple(trunk_keys[name].shape)}"
                )
        self.trunk.load_state_dict({k: state[k] for k in trunk_keys})
        head = {k[len(HEAD_PREFIX) :]: v for k, v in state.items() if k.startswith(HEAD_PREFIX)}
        if head:
            self.head.load_state_dict(head)
        elif require_head:
            raise InputError(f"{where}: is not a reward model (no head weights); train one with `curate train reward`")


def load_scalar_model(
    path: str | Path, device: torch.device | str = "cpu", require_head: bool = False
) -> tuple[ScalarHeadModel, Checkpoint]:
    """A ScalarHeadModel from a reward checkpoint (head included) or from any LM checkpoint
    (trunk only, a zero head; ``require_head`` refuses that)."""
    ckpt = load_checkpoint(path)
    config = model_config_of(ckpt)
    model = ScalarHeadModel(config)
    model.load_export(ckpt.model_state, str(ckpt.path), require_head=require_head or ckpt.kind == "reward")
    return model.to(device).eval(), ckpt


def pair_side(prompt: str | list[Message], response: str) -> list[Message]:
    """A prompt (one user turn, or the turns of a dialogue) and an answer, as messages."""
    head = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return head + [{"role": "assistant", "content": response}]


def encode_pair_side(prompt: str | list[Message], response: str, tokenizer: Tokenizer, max_len: int) -> list[int]:
    """Prompt + answer in the chat template, cut from the left to ``max_len`` tokens so the
    end (where the score is read) is always kept."""
    ids, _ = encode_chat(pair_side(prompt, response), tokenizer)
    return ids[-max_len:]


class RewardScorer:
    """Scores (prompt, response) pairs with a reward checkpoint, in batches. The callable form
    (``scorer(prompts, responses) -> list[float]``) is what :mod:`train.align.rlhf` takes as a reward."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu", batch_size: int = 16):
        self.model, self.checkpoint = load_scalar_model(path, device, require_head=True)
        self.tokenizer = load_checkpoint_tokenizer(self.checkpoint.path)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.max_len = self.model.config.block_size

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str | list[Message]], responses: Sequence[str]) -> list[float]:
        out: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            seqs = [
                encode_pair_side(p, r, self.tokenizer, self.max_len)
                for p, r in zip(prompts[start : start + self.batch_size], responses[start : start + self.batch_size])
            ]
            ids, attn, _ = pad_right(seqs, self.tokenizer.pad_id)
            out.extend(self.model(ids.to(self.device), attn.to(self.device)).float().tolist())
        return out


# =============================================================================== training


@dataclass
class RewardConfig(DataStageConfig):
    """Reward-model settings: the shared stage fields (see :class:`train.align.stage.StageConfig`;
    ``batch_size`` counts pairs, ``max_len`` tokens per side, default the model's block_size)
    plus the loss's margin and centring."""

    optim: AlignOptim = field(default_factory=lambda: AlignOptim(lr=5e-5))
    margin: float = 0.0  # used when a row has no `margin` field
    center_coef: float = 0.0  # weight of mean((r_c + r_r)^2): keeps scores centred on 0
    half: int | None = None  # 0 or 1: train on that half of the comparisons (by prompt); None = all
    half_seed: int = 0  # which split into halves: the two models of a pair must share it
    by_group: bool = False  # held-out accuracy per rater group (the rows' `group` or `rater_group`)

    bounds: ClassVar[dict[str, Range]] = {
        **DataStageConfig.bounds,
        "margin": NON_NEGATIVE,
        "center_coef": NON_NEGATIVE,
        "half": Range(0, 1),
        "half_seed": SEED,
    }


@dataclass
class PairExample:
    chosen: list[int]
    rejected: list[int]
    margin: float
    group: str | None = None  # the rater group, when the row names one
    origin: Origin | None = None  # where it came from (consumed.parquet)


def load_pairs(
    path: str | Path,
    tokenizer: Tokenizer,
    max_len: int,
    val_fraction: float,
    default_margin: float,
    encode: Callable[[str, str], Any] | None = None,
    keep: Callable[[str | list[Message]], bool] | None = None,
) -> tuple[list[Any], list[Any], Skipped]:
    """(train, held-out, skipped) comparisons from ``path``, in any shape
    :func:`~curate.core.comparisons.comparison_from_row` reads; each becomes ``encode(prompt,
    answer)`` per side (default: reward-model ids). Bad rows (an empty prompt or answer among
    them) are counted, not fatal; a usable row whose prompt ``keep`` refuses (a :class:`Halves`)
    is left out without being counted as skipped."""
    encode = encode or (lambda p, r: encode_pair_side(p, r, tokenizer, max_len))
    split = HeldOutSplit(val_fraction)
    skipped = Skipped()
    for where, row in read_records(path, "comparison", skipped):
        try:
            prompt, chosen, rejected = comparison_from_row(row)
        except Unusable as exc:
            skipped.add(str(exc), where)
            continue
        if chosen == rejected:
            skipped.add("chosen and rejected are identical", where)
            continue
        if keep is not None and not keep(prompt):
            continue
        margin = row.get("margin")
        margin = float(margin) if isinstance(margin, (int, float)) and not isinstance(margin, bool) else default_margin
        split.add(
            json.dumps([prompt, chosen, rejected], ensure_ascii=False),
            PairExample(encode(prompt, chosen), encode(prompt, rejected), margin, group_of(row), origin_of(where, row)),
        )
    return split.finish(path, "comparisons", skipped)


def pair_rewards(
    model: ScalarHeadModel, pairs: Sequence[PairExample], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen rewards, rejected rewards) in one forward over both sides."""
    ids, attn, _ = pad_right([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id)
    rewards = model(ids.to(device), attn.to(device)).float()
    return rewards[: len(pairs)], rewards[len(pairs) :]


@torch.no_grad()
def evaluate_pairs(
    model: ScalarHeadModel,
    pairs: Sequence[PairExample],
    batch_size: int,
    pad_id: int,
    device: torch.device,
    dtype: torch.dtype,
    by_group: bool = False,
) -> dict[str, float] | None:
    """Held-out pairwise accuracy (ties count half), mean margin and loss; with ``by_group``
    also ``val_accuracy[GROUP]`` and ``val_pairs[GROUP]`` per rater group."""
    if not pairs:
        return None
    was_training = model.training
    model.eval()
    wins: list[float] = []
    loss_sum = margin_sum = 0.0
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        with autocast_context(device, dtype):
            rc, rr = pair_rewards(model, batch, pad_id, device)
        wins += ((rc > rr).float() + 0.5 * (rc == rr).float()).tolist()
        loss_sum += float(bradley_terry_loss(rc, rr)) * len(batch)
        margin_sum += float((rc - rr).sum())
    model.train(was_training)
    n = len(pairs)
    out = {"val_accuracy": sum(wins) / n, "val_margin": margin_sum / n, "val_loss": loss_sum / n}
    if by_group:
        per_group: dict[str, list[float]] = {}
        for pair, win in zip(pairs, wins):
            per_group.setdefault(pair.group or NO_GROUP, []).append(win)
        for group in sorted(per_group):
            out[f"val_accuracy[{group}]"] = sum(per_group[group]) / len(per_group[group])
            out[f"val_pairs[{group}]"] = len(per_group[group])
    return out


def _reward_data(run: Any, config: RewardConfig, data: str | Path, tokenizer: Any, max_len: int) -> tuple:
    """``(halves, train pairs, held-out pairs, skipped)`` of a reward run, after the checks
    on ``half`` and ``by_group``, with what was kept and left out noted in the run."""
    check_halves(run, config)
    halves = Halves(config.half, config.half_seed) if config.half is not None else None
    train_pairs, held_pairs, skipped = load_pairs(
        data, tokenizer, max_len, config.val_fraction, config.margin, keep=halves
    )
    if halves is not None:
        run.note(
            f"half {halves.half} (seed {halves.seed}): {halves.kept:,} comparison(s) kept, "
            f"{halves.left_out:,} left to half {1 - halves.half}"
        )
    if not held_pairs:
        run.note("no held-out comparisons (too few rows or val_fraction = 0): accuracy is not reported")
    if config.by_group:
        check_groups(data, train_pairs, held_pairs, run)
    return halves, train_pairs, held_pairs, skipped


def train_reward(
    config: RewardConfig,
    base: str | Path,
    data: str | Path,
    output: str | Path,
    *,
    overwrite: bool = False,
    stop_at_step: int | None = None,
    progress: bool = True,
    on_message: Callable[[str], None] | None = None,
) -> StageResult:
    """Train a reward model on the comparisons at ``data``, starting from the trunk at ``base``
    (an LM/policy checkpoint; a reward checkpoint continues with its head)."""
    with StageRun("reward", config, output, overwrite=overwrite, data=data, say=on_message) as run:
        model, tokenizer = run.load_parent(base, load_scalar_model)
        max_len = check_max_len(config.max_len, model.config.block_size, "block_size")
        run.open()
        halves, train_pairs, held_pairs, skipped = _reward_data(run, config, data, tokenizer, max_len)
        train_groups = group_counts(train_pairs)
        optimizer, result = run.begin(
            model,
            examples=len(train_pairs),
            held_out=len(held_pairs),
            skipped=skipped,
            load_model=lambda ckpt: model.load_export(ckpt.model_state, str(ckpt.path), require_head=True),
        )
        run.track(train_pairs, lambda p: len(p.chosen) + len(p.rejected))
        pad_id, device, dtype = tokenizer.pad_id, run.device, run.dtype

        def step_fn(step: int) -> dict[str, float]:
            batch = step_batch(train_pairs, config, step)
            with autocast_context(device, dtype):
                rc, rr = pair_rewards(model, batch, pad_id, device)
            margins = torch.tensor([p.margin for p in batch], device=device)
            loss = bradley_terry_loss(rc, rr, margins)
            if config.center_coef:
                loss = loss + config.center_coef * ((rc + rr) ** 2).mean()
            grad_norm = optimizer_step(loss, model, optimizer, config.optim.grad_clip)
            rc, rr = rc.detach(), rr.detach()
            return {
                "loss": loss.item(),
                "accuracy": float((rc > rr).float().mean()),
                "margin": float((rc - rr).mean()),
                "grad_norm": grad_norm,
            }

        def save_fn(step: int) -> Path:
            extra_meta: dict[str, Any] = {"val_accuracy": result.eval.get("val_accuracy")}
            if halves is not None:
                extra_meta["half"] = halves.meta()
            if config.by_group:
                extra_meta["group_accuracy"] = group_accuracy(result.eval, train_groups)
            return run.save(
                step,
                model_state=model.export_state(),
                model_config=model.config.to_dict(),
                kind="reward",
                extra_meta=extra_meta,
            )

        model.train()
        return run_steps(
            run,
            step_fn=step_fn,
            eval_fn=lambda: evaluate_pairs(
                model, held_pairs, config.batch_size, pad_id, device, dtype, by_group=config.by_group
            ),
            save_fn=save_fn,
            stop_at_step=stop_at_step,
            progress=progress,
        )
