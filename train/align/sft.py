"""Supervised fine-tuning (SFT): teach a pretrained model to answer in the chat template.

    curate train sft --base work/ckpt/base --data samples/sft/qa.jsonl -o work/ckpt/sft

Data is JSON Lines, a JSON array or Parquet (a file or a directory of them) with a
``messages`` list, ``prompt``/``response`` fields, or Alpaca's or Dolly's fields (see
:mod:`train.align.formats`); examples with an empty prompt or response are skipped and counted. Every example is rendered in the chat
template; the loss counts only the assistant's tokens. Batches are right-padded with an
attention mask, so no example ever attends to another's tokens. A slice of the examples
(chosen by a hash of their content, so the split is stable) is held out for an eval loss.

How this differs from nanochat's chat_sft.py: no task mixture and no padding-masked
"packing"; examples are shuffled per epoch by a seeded permutation, which makes a resumed run
(rerun into the same output directory) take exactly the batches the uninterrupted run would.

What all alignment stages share lives in :mod:`train.align.stage` (output directory, resume, the
step loop) and :mod:`train.align.data` (batch order, padding, record reading).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from curate.core.comparisons import Unusable
from curate.core.tokenizer import Tokenizer

from ..chat import encode_chat
from ..model import GPT
from ..runtime import autocast_context
from .config import DataStageConfig, check_max_len
from .data import HeldOutSplit, Origin, Skipped, origin_of, pad_right, read_records
from .formats import sft_messages
from .stage import (
    StageResult,
    StageRun,
    optimizer_step,
    run_steps,
    step_batch,
)


@dataclass
class SFTConfig(DataStageConfig):
    """SFT settings: the shared stage fields (see :class:`train.align.stage.StageConfig`);
    ``max_len`` defaults to the model's block_size + 1 tokens per example."""


@dataclass
class ChatExample:
    ids: list[int]
    loss_mask: list[int]
    origin: Origin | None = None  # where it came from (consumed.parquet)


def load_sft_examples(
    path: str | Path, tokenizer: Tokenizer, max_len: int, val_fraction: float
) -> tuple[list[ChatExample], list[ChatExample], Skipped]:
    """Tokenised (train, held-out, skipped) examples. Held out: a hash of the conversation
    under ``val_fraction``. SFT sets are small (thousands to a few million turns), so the
    token ids are kept in memory."""
    split = HeldOutSplit(val_fraction)
    skipped = Skipped()
    for where, row in read_records(path, "SFT", skipped):
        try:
            messages = sft_messages(row)
        except Unusable as exc:
            skipped.add(str(exc), where)
            continue
        ids, mask = encode_chat(messages, tokenizer, max_len=max_len)
        if sum(mask[1:]) == 0:
            skipped.add(f"no assistant tokens within max_len {max_len}", where)
            continue
        split.add(
            json.dumps(messages, sort_keys=True, ensure_ascii=False), ChatExample(ids, mask, origin_of(where, row))
        )
    return split.finish(path, "SFT examples", skipped)


def sft_batch(
    examples: Sequence[ChatExample], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, targets, attention_mask, loss_mask) for one padded batch: inputs are ids[:-1],
    targets ids[1:] with -100 wherever the loss must not look (prompt, role markers, padding)."""
    ids, attn, lm = pad_right([e.ids for e in examples], pad_id, [e.loss_mask for e in examples])
    x, y = ids[:, :-1], ids[:, 1:].clone()
    target_mask = (lm[:, 1:] * attn[:, 1:]).bool()
    y[~target_mask] = -100
    return x.to(device), y.to(device), attn[:, :-1].to(device), target_mask.to(device)


@torch.no_grad()
def sft_eval_loss(
    model: GPT, examples: Sequence[ChatExample], batch_size: int, pad_id: int, device: torch.device, dtype: torch.dtype
) -> float | None:
    """Mean cross-entropy per assistant token over ``examples``."""
    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        x, y, attn, _ = sft_batch(examples[start : start + batch_size], pad_id, device)
        with autocast_context(device, dtype):
            logits, _ = model(x, attention_mask=attn)
        total += float(
            F.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-100, reduction="sum"
            )
        )
        count += int((y != -100).sum())
    model.train(was_training)
    return total / count if count else None


def sft(
    config: SFTConfig,
    base: str | Path,
    data: str | Path,
    output: str | Path,
    *,
    overwrite: bool = False,
    stop_at_step: int | None = None,
    progress: bool = True,
    on_message: Callable[[str], None] | None = None,
) -> StageResult:
    """Fine-tune the model at ``base`` on the chat examples at ``data``; checkpoints (kind
    "policy") in ``output``. Rerunning into ``output`` resumes; ``stop_at_step`` checkpoints
    and stops early, keeping the full run's schedule."""
    with StageRun("sft", config, output, overwrite=overwrite, data=data, say=on_message) as run:
        model, tokenizer = run.load_parent(base)
        max_len = check_max_len(config.max_len, model.config.block_size + 1, "block_size + 1")
        run.open()
        train_ex, held_ex, skipped = load_sft_examples(data, tokenizer, max_len, config.val_fraction)
        optimizer, result = run.begin(model, examples=len(train_ex), held_out=len(held_ex), skipped=skipped)
        run.track(train_ex, lambda e: len(e.ids))
        pad_id, device, dtype = tokenizer.pad_id, run.device, run.dtype

        def step_fn(step: int) -> dict[str, float]:
            batch = step_batch(train_ex, config, step)
            x, y, attn, _ = sft_batch(batch, pad_id, device)
            with autocast_context(device, dtype):
                _, loss = model(x, y, attention_mask=attn)
            grad_norm = optimizer_step(loss, model, optimizer, config.optim.grad_clip)
            return {"loss": loss.item(), "grad_norm": grad_norm, "tokens": int((y != -100).sum())}

        def eval_fn() -> dict[str, float] | None:
            val = sft_eval_loss(model, held_ex, config.batch_size, pad_id, device, dtype)
            return {"val_loss": val} if val is not None else None

        def save_fn(step: int) -> Path:
            return run.save(
                step,
                model_state=model.state_dict(),
                model_config=model.config.to_dict(),
                kind="policy",
                extra_meta={"val_loss": result.eval.get("val_loss")},
            )

        model.train()
        return run_steps(
            run,
            step_fn=step_fn,
            eval_fn=eval_fn,
            save_fn=save_fn,
            stop_at_step=stop_at_step,
            progress=progress,
        )
