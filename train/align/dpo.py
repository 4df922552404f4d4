"""Direct preference optimisation (DPO) and IPO: learn from comparisons without a reward model.

    curate train dpo --policy work/ckpt/sft --data work/comparisons -o work/ckpt/dpo --beta 0.1
    curate train dpo ... --loss ipo

The policy's log-probability of each answer (summed over the assistant's tokens, prompt
excluded) is compared with a frozen reference copy of the starting policy. DPO minimises
``-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))``; the implicit rewards
``beta * (pi - ref)`` of chosen and rejected answers, their margin and how often chosen wins
are logged, on training batches and on held-out pairs.

IPO (``--loss ipo``) regresses the gap onto ``1/(2 beta)`` instead, using per-token *average*
log-probs as in the IPO paper and TRL, so it stops pushing once the gap is reached.

Differences from the paper: reference log-probs are computed batch by batch (one extra
forward with no gradient) rather than once up front, which keeps memory flat for any data
size; ``label_smoothing`` gives the conservative DPO variant.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from curate.core.comparisons import Message
from curate.core.errors import ConfigError
from curate.core.ranges import POSITIVE, Range
from curate.core.tokenizer import Tokenizer

from ..chat import encode_chat
from ..model import GPT
from ..runtime import autocast_context
from .config import AlignOptim, DataStageConfig, check_max_len
from .data import pad_right
from .losses import preference_loss
from .reward import load_pairs, pair_side
from .stage import (
    StageResult,
    StageRun,
    load_policy,
    optimizer_step,
    run_steps,
    step_batch,
)


@dataclass
class DPOConfig(DataStageConfig):
    """DPO/IPO settings: the shared stage fields (see :class:`train.align.stage.StageConfig`;
    ``batch_size`` counts pairs, ``max_len`` tokens per side, default block_size + 1, cut from
    the left) plus the preference loss."""

    optim: AlignOptim = field(default_factory=lambda: AlignOptim(lr=5e-6))
    beta: float = 0.1
    loss: str = "dpo"  # dpo | ipo
    label_smoothing: float = 0.0  # conservative DPO: assumed fraction of flipped labels

    bounds: ClassVar[dict[str, Range]] = {
        **DataStageConfig.bounds,
        "beta": POSITIVE,
        # At 0.5 the labels are a coin toss: the loss no longer prefers either answer.
        "label_smoothing": Range(0.0, 0.5, high_open=True),
    }

    def validate(self, who: str | None = None) -> None:
        super().validate(who)
        if self.loss not in ("dpo", "ipo"):
            raise ConfigError(f"loss must be dpo or ipo, got {self.loss!r}")


def encode_side(
    prompt: str | list[Message], response: str, tokenizer: Tokenizer, max_len: int
) -> tuple[list[int], list[int]]:
    """(ids, assistant mask) of prompt + answer, cut from the left to ``max_len``; the mask
    covers the answer only (a dialogue's earlier assistant turns are prompt here)."""
    ids, mask = encode_chat(pair_side(prompt, response), tokenizer)
    if not isinstance(prompt, str):  # a dialogue: its assistant turns are not the answer
        answer = len(encode_chat(pair_side(prompt, ""), tokenizer)[0]) - 1  # where the answer starts
        mask = [0] * answer + mask[answer:]
    return ids[-max_len:], mask[-max_len:]


def response_logprobs(
    model: GPT, ids: torch.Tensor, attn: torch.Tensor, loss_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of ``ids[:, 1:]`` under ``model`` and the mask of the tokens that
    count (``loss_mask[:, 1:]``, padding excluded): both (B, T-1)."""
    logits, _ = model(ids[:, :-1], attention_mask=attn[:, :-1])
    logp = torch.log_softmax(logits.float(), dim=-1)
    token_logp = torch.gather(logp, -1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = (loss_mask[:, 1:] * attn[:, 1:]).to(token_logp.dtype)
    return token_logp * mask, mask


def sequence_logps(
    model: GPT, sides: Sequence[tuple[list[int], list[int]]], pad_id: int, device: torch.device, average: bool
) -> torch.Tensor:
    """Sum (or per-token mean) of each answer's token log-probs: (N,)."""
    ids, attn, lm = pad_right([s[0] for s in sides], pad_id, [s[1] for s in sides])
    token_logp, mask = response_logprobs(model, ids.to(device), attn.to(device), lm.to(device))
    total = token_logp.sum(-1)
    return total / mask.sum(-1).clamp(min=1) if average else total


def pair_logps(
    model: GPT, batch, pad_id: int, device: torch.device, average: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    logps = sequence_logps(model, [p.chosen for p in batch] + [p.rejected for p in batch], pad_id, device, average)
    return logps[: len(batch)], logps[len(batch) :]


def dpo_step_metrics(
    config: DPOConfig, policy: GPT, reference: GPT, batch, pad_id: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss (with graph) and metrics of one batch of pairs."""
    average = config.loss == "ipo"
    with torch.no_grad(), autocast_context(device, dtype):
        ref_c, ref_r = pair_logps(reference, batch, pad_id, device, average)
    with autocast_context(device, dtype):
        pol_c, pol_r = pair_logps(policy, batch, pad_id, device, average)
    loss, reward_c, reward_r = preference_loss(
        config.loss, pol_c, pol_r, ref_c, ref_r, beta=config.beta, label_smoothing=config.label_smoothing
    )
    margin = reward_c - reward_r
    return loss, {
        "loss": loss.item(),
        "reward_chosen": float(reward_c.mean()),
        "reward_rejected": float(reward_r.mean()),
        "margin": float(margin.mean()),
        "accuracy": float((margin > 0).float().mean()),
        "logp_chosen": float(pol_c.detach().mean()),
        "logp_rejected": float(pol_r.detach().mean()),
    }


@torch.no_grad()
def evaluate_dpo(
    config: DPOConfig, policy: GPT, reference: GPT, pairs, pad_id: int, device: torch.device, dtype: torch.dtype
) -> dict[str, float] | None:
    """Held-out loss, implicit-reward margin and accuracy (pairs where chosen gains more)."""
    if not pairs:
        return None
    was_training = policy.training
    policy.eval()
    sums: dict[str, float] = {}
    for start in range(0, len(pairs), config.batch_size):
        batch = pairs[start : start + config.batch_size]
        _, metrics = dpo_step_metrics(config, policy, reference, batch, pad_id, device, dtype)
        for key in ("loss", "margin", "accuracy"):
            sums[key] = sums.get(key, 0.0) + metrics[key] * len(batch)
    policy.train(was_training)
    return {f"val_{k}": v / len(pairs) for k, v in sums.items()}


def dpo(
    config: DPOConfig,
    policy_path: str | Path,
    data: str | Path,
    output: str | Path,
    *,
    reference_path: str | Path | None = None,
    overwrite: bool = False,
    stop_at_step: int | None = None,
    progress: bool = True,
    on_message: Callable[[str], None] | None = None,
) -> StageResult:
    """Train the policy at ``policy_path`` on the comparisons at ``data`` with DPO/IPO against a
    frozen reference (``reference_path``, default the starting policy). Resumable."""
    with StageRun("dpo", config, output, overwrite=overwrite, data=data, say=on_message) as run:
        policy, tokenizer = run.load_parent(policy_path)
        if reference_path is not None:
            reference, _, _ = load_policy(run.resolve(reference_path), run.device)
            if reference.config.vocab_size != policy.config.vocab_size:
                raise ConfigError("the reference model's vocabulary differs from the policy's")
        else:
            reference = copy.deepcopy(policy)
        reference.eval().requires_grad_(False)
        max_len = check_max_len(config.max_len, policy.config.block_size + 1, "block_size + 1")
        run.open()
        train_pairs, held_pairs, skipped = load_pairs(
            data,
            tokenizer,
            max_len,
            config.val_fraction,
            0.0,
            encode=lambda p, r: encode_side(p, r, tokenizer, max_len),
        )
        optimizer, _ = run.begin(policy, examples=len(train_pairs), held_out=len(held_pairs), skipped=skipped)
        run.track(train_pairs, lambda p: len(p.chosen[0]) + len(p.rejected[0]))
        pad_id, device, dtype = tokenizer.pad_id, run.device, run.dtype

        def step_fn(step: int) -> dict[str, float]:
            batch = step_batch(train_pairs, config, step)
            loss, metrics = dpo_step_metrics(config, policy, reference, batch, pad_id, device, dtype)
            grad_norm = optimizer_step(loss, policy, optimizer, config.optim.grad_clip)
            return {**metrics, "grad_norm": grad_norm}

        def save_fn(step: int) -> Path:
            return run.save(
                step,
                model_state=policy.state_dict(),
                model_config=policy.config.to_dict(),
                kind="policy",
                extra_meta={
                    "loss_type": config.loss,
                    "beta": config.beta,
                    "reference": str(reference_path or run.parent.path),
                },
            )

        # The held-out margin before any update is 0 by construction; the baseline eval still
        # gives the starting loss (log 2 for DPO) to compare with.
        policy.train()
        return run_steps(
            run,
            step_fn=step_fn,
            eval_fn=lambda: evaluate_dpo(config, policy, reference, held_pairs, pad_id, device, dtype),
            save_fn=save_fn,
            stop_at_step=stop_at_step,
            progress=progress,
            label=config.loss,
        )
