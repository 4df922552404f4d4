"""Two answers per prompt for people to compare: ``curate train sample-pairs``.

    curate train sample-pairs --model work/ckpt/sft --prompts samples/prompts.jsonl -o work/pairs.parquet

Each prompt is answered twice by the same checkpoint, with two sampling settings (by default
temperatures 0.7 and 1.0 and two seeds), in the chat template. The output is Parquet with
:data:`curate.core.comparisons.PAIRS_SCHEMA` (``pair_id`` is a hash of the prompt and both
answers, so it is stable across reruns), read by ``curate rate``. Prompts whose two answers
came out identical are counted and left out: there is nothing to compare.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from curate.core.comparisons import PAIRS_SCHEMA
from curate.core.errors import ConfigError

from ..chat import decode_response, encode_prompt, end_id
from ..checkpoint import Checkpoint
from ..runtime import select_device
from .data import Prompt, Skipped, left_pad, read_prompts
from .stage import load_policy


@dataclass
class PairsResult:
    output: Path
    prompts: int
    written: int
    identical: int
    skipped: Skipped = field(default_factory=Skipped)


def pair_id(prompt: str, response_1: str, response_2: str) -> str:
    return hashlib.sha256("\x00".join([prompt, response_1, response_2]).encode("utf-8")).hexdigest()[:16]


def _pair_row(prompt: Prompt, first: str, second: str, ckpt: Checkpoint, settings: dict[str, Any]) -> dict[str, Any]:
    """One row of PAIRS_SCHEMA."""
    return {
        "pair_id": pair_id(prompt.text, first, second),
        "prompt": prompt.text,
        "response_1": first,
        "response_2": second,
        "model": str(ckpt.path),
        "meta": json.dumps(
            {**settings, "step": ckpt.step, "messages": prompt.messages if len(prompt.messages) > 1 else None}
        ),
    }


def sample_pairs(
    model: str | Path,
    prompts: str | Path,
    output: str | Path,
    *,
    max_new_tokens: int = 64,
    temperatures: tuple[float, float] = (0.7, 1.0),
    seeds: tuple[int, int] = (1, 2),
    top_k: int | None = None,
    top_p: float | None = None,
    batch_size: int = 16,
    device: str = "auto",
) -> PairsResult:
    """Write two sampled answers per prompt to ``output`` (Parquet, atomically)."""
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if any(t < 0 for t in temperatures):
        raise ConfigError("temperatures must not be negative")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    dev = select_device(device)
    policy, ckpt, tokenizer = load_policy(model, dev)
    if max_new_tokens >= policy.config.block_size:
        raise ConfigError(f"max_new_tokens must be below the model's block_size ({policy.config.block_size})")
    prompt_rows, skipped = read_prompts(prompts)
    max_prompt_len = policy.config.block_size - max_new_tokens
    stop = end_id(tokenizer)
    generators = [torch.Generator(device=dev).manual_seed(s) for s in seeds]
    settings = {"temperatures": list(temperatures), "seeds": list(seeds), "max_new_tokens": max_new_tokens}
    rows: list[dict] = []
    identical = 0
    for start in range(0, len(prompt_rows), batch_size):
        batch = prompt_rows[start : start + batch_size]
        ids, attn = left_pad(
            [encode_prompt(p.messages, tokenizer, max_len=max_prompt_len) for p in batch], tokenizer.pad_id
        )
        ids, attn = ids.to(dev), attn.to(dev)
        answers = []
        for temperature, generator in zip(temperatures, generators):
            out = policy.generate(
                ids,
                max_new_tokens,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                eos_id=stop,
                pad_id=tokenizer.pad_id,
                generator=generator,
                attention_mask=attn,
            )
            answers.append([decode_response(row, tokenizer) for row in out[:, ids.shape[1] :].tolist()])
        for p, first, second in zip(batch, answers[0], answers[1]):
            if first == second:
                identical += 1
            else:
                rows.append(_pair_row(p, first, second, ckpt, settings))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=PAIRS_SCHEMA), tmp, compression="zstd")
    os.replace(tmp, output)
    return PairsResult(output=output, prompts=len(prompt_rows), written=len(rows), identical=identical, skipped=skipped)
