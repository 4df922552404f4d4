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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from curate.errors import ConfigError
from curate.progress import Progress
from curate.tokenizer import Tokenizer

from .chat import encode_chat
from .loop import autocast_context, clip_gradients, resolve_dtype, seed_everything, select_device
from .losses import preference_loss
from .model import GPT
from .reward import load_pairs
from .sft import (
    AlignOptim,
    StageResult,
    StageRun,
    batch_indices,
    check_positive,
    load_policy,
    make_optimizer,
    pad_right,
    response_logprobs,
    schedule_lr,
    steps_for,
)


@dataclass
class DPOConfig:
    optim: AlignOptim = field(default_factory=lambda: AlignOptim(lr=5e-6))
    beta: float = 0.1
    loss: str = "dpo"  # dpo | ipo
    label_smoothing: float = 0.0  # conservative DPO: assumed fraction of flipped labels
    batch_size: int = 8  # pairs per step
    epochs: float = 1.0
    max_steps: int | None = None
    max_len: int | None = None  # tokens per side (default: block_size + 1), cut from the left
    val_fraction: float = 0.1
    eval_every: int = 50
    log_every: int = 10
    checkpoint_every: int = 0
    keep_last: int = 2
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"

    def validate(self) -> None:
        self.optim.validate()
        check_positive(self, ["batch_size", "max_steps", "log_every", "max_len"])
        check_positive(self, ["eval_every", "checkpoint_every", "keep_last"], minimum=0)
        if self.loss not in ("dpo", "ipo"):
            raise ConfigError(f"loss must be dpo or ipo, got {self.loss!r}")
        if self.beta <= 0:
            raise ConfigError(f"beta must be positive, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.epochs <= 0:
            raise ConfigError(f"epochs must be positive, got {self.epochs}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


def encode_side(prompt: str, response: str, tokenizer: Tokenizer, max_len: int) -> tuple[list[int], list[int]]:
    """(ids, assistant mask) of prompt + answer, cut from the left to ``max_len``."""
    ids, mask = encode_chat([{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
                            tokenizer)
    return ids[-max_len:], mask[-max_len:]


def sequence_logps(model: GPT, sides: Sequence[tuple[list[int], list[int]]], pad_id: int, device: torch.device,
                   average: bool) -> torch.Tensor:
    """Sum (or per-token mean) of each answer's token log-probs: (N,)."""
    ids, attn, lm = pad_right([s[0] for s in sides], pad_id, [s[1] for s in sides])
    token_logp, mask = response_logprobs(model, ids.to(device), attn.to(device), lm.to(device))
    total = token_logp.sum(-1)
    return total / mask.sum(-1).clamp(min=1) if average else total


def pair_logps(model: GPT, batch, pad_id: int, device: torch.device, average: bool) -> tuple[torch.Tensor, torch.Tensor]:
    logps = sequence_logps(model, [p.chosen for p in batch] + [p.rejected for p in batch], pad_id, device, average)
    return logps[: len(batch)], logps[len(batch) :]


def dpo_step_metrics(config: DPOConfig, policy: GPT, reference: GPT, batch, pad_id: int, device: torch.device,
                     dtype: torch.dtype) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss (with graph) and metrics of one batch of pairs."""
    average = config.loss == "ipo"
    with torch.no_grad(), autocast_context(device, dtype):
        ref_c, ref_r = pair_logps(reference, batch, pad_id, device, average)
    with autocast_context(device, dtype):
        pol_c, pol_r = pair_logps(policy, batch, pad_id, device, average)
    loss, reward_c, reward_r = preference_loss(config.loss, pol_c, pol_r, ref_c, ref_r, beta=config.beta,
                                               label_smoothing=config.label_smoothing)
    margin = reward_c - reward_r
    return loss, {
        "loss": loss.item(), "reward_chosen": float(reward_c.mean()), "reward_rejected": float(reward_r.mean()),
        "margin": float(margin.mean()), "accuracy": float((margin > 0).float().mean()),
        "logp_chosen": float(pol_c.detach().mean()), "logp_rejected": float(pol_r.detach().mean()),
    }


@torch.no_grad()
def evaluate_dpo(config: DPOConfig, policy: GPT, reference: GPT, pairs, pad_id: int, device: torch.device,
                 dtype: torch.dtype) -> dict[str, float] | None:
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


def dpo(config: DPOConfig, policy_path: str | Path, data: str | Path, output: str | Path, *,
        reference_path: str | Path | None = None, overwrite: bool = False, stop_at_step: int | None = None,
        progress: bool = True, on_message: Callable[[str], None] | None = None) -> StageResult:
    """Train the policy at ``policy_path`` on the comparisons at ``data`` with DPO/IPO against a
    frozen reference (``reference_path``, default the starting policy). Resumable."""
    config.validate()
    device = select_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    seed_everything(config.seed)
    policy, policy_ckpt, tokenizer = load_policy(policy_path, device)
    if reference_path is not None:
        reference, _, _ = load_policy(reference_path, device)
        if reference.config.vocab_size != policy.config.vocab_size:
            raise ConfigError("the reference model's vocabulary differs from the policy's")
    else:
        reference = copy.deepcopy(policy)
    reference.eval().requires_grad_(False)
    max_len = config.max_len or policy.config.block_size + 1
    if max_len > policy.config.block_size + 1:
        raise ConfigError(f"max_len {max_len} exceeds the model's block_size + 1 ({policy.config.block_size + 1})")
    run = StageRun("dpo", output, overwrite=overwrite, parent=policy_ckpt, config=config, data=data,
                   keep_last=config.keep_last, say=on_message)
    train_pairs, held_pairs, skipped = load_pairs(
        data, tokenizer, max_len, config.val_fraction, 0.0, encode=lambda p, r: encode_side(p, r, tokenizer, max_len))
    for line in skipped.lines():
        run.note(line)
    max_steps = steps_for(len(train_pairs), config.batch_size, config.epochs, config.max_steps)
    optimizer = make_optimizer(policy, config.optim, device)
    start = run.start_step
    if run.resume_from is not None:
        policy.load_state_dict({k: v for k, v in run.resume_from.model_state.items() if k in policy.state_dict()})
        optimizer.load_state_dict(run.resume_from.optimizer_state)
        run.restore_rng()
        run.note(f"resuming from {run.resume_from.path.name} (step {start} of {max_steps})")
    result = StageResult("dpo", run.output, None, start, start, max_steps, "done", examples=len(train_pairs),
                         held_out=len(held_pairs), skipped=skipped, notes=run.notes)
    if start >= max_steps:
        result.status, result.checkpoint = "up-to-date", run.resume_from.path if run.resume_from else None
        return result
    logger = run.open_logger()
    bar = Progress(config.loss, total=max_steps, unit="steps", enabled=None if progress else False)
    bar.done = start
    started = time.monotonic()
    pad_id = tokenizer.pad_id
    if start == 0:
        # The margin before any update is 0 by construction; log the held-out baseline anyway.
        base_eval = evaluate_dpo(config, policy, reference, held_pairs, pad_id, device, dtype)
        if base_eval is not None:
            logger.log({"step": 0, **base_eval})
            result.first_eval = base_eval
    policy.train()
    try:
        for step in range(start, max_steps):
            lr = schedule_lr(optimizer, config.optim, step, max_steps)
            batch = [train_pairs[i] for i in batch_indices(len(train_pairs), config.batch_size, step, config.seed)]
            loss, metrics = dpo_step_metrics(config, policy, reference, batch, pad_id, device, dtype)
            loss.backward()
            grad_norm = clip_gradients(policy, config.optim.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            bar.advance()
            last = done == max_steps or done == stop_at_step
            record: dict[str, Any] = {}
            if done % config.log_every == 0 or done == start + 1 or last:
                record = {"step": done, **metrics, "lr": lr, "grad_norm": grad_norm}
                result.first = result.first or dict(metrics)
                result.last = dict(metrics)
            if (config.eval_every and done % config.eval_every == 0) or last:
                val = evaluate_dpo(config, policy, reference, held_pairs, pad_id, device, dtype)
                if val is not None:
                    record.setdefault("step", done)
                    record.update(val)
                    result.first_eval = result.first_eval or dict(val)
                    result.eval = dict(val)
            if record:
                logger.log(record)
            if last or (config.checkpoint_every and done % config.checkpoint_every == 0):
                result.checkpoint = run.save(done, model_state=policy.state_dict(), model_config=policy.config.to_dict(),
                                             kind="policy", optimizer=optimizer, tokenizer=tokenizer,
                                             extra_meta={"loss_type": config.loss, "beta": config.beta,
                                                         "reference": str(reference_path or policy_ckpt.path)})
            result.step = done
            if done == stop_at_step and done < max_steps:
                result.status = "stopped"
                break
    finally:
        bar.close()
        run.close()
    result.elapsed_s = time.monotonic() - started
    return result
