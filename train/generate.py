"""Text generation from a checkpoint: what ``curate generate`` runs.

Plain prompts are encoded after an ``<|endoftext|>``, because that is how every document
starts in the packed pretraining stream; generation stops at the next ``<|endoftext|>``.
With ``chat=True`` the prompt is wrapped in the chat template (``train/chat.py``) and
generation stops at ``<|end|>``. A seed makes the samples reproducible.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import torch

from curate.core.errors import ConfigError

from .checkpoint import load_checkpoint_tokenizer, load_lm
from .runtime import select_device


@dataclass
class Generation:
    prompt_tokens: int
    completions: list[str]
    new_tokens: list[int]
    checkpoint: str


def _encode_chat_prompt(prompt: str, tokenizer, system: str | None) -> tuple[list[int], int]:
    """Prompt ids in the chat template and the id that ends the assistant's turn."""
    if importlib.util.find_spec("train.chat") is None:
        raise ConfigError("--chat needs train/chat.py (the chat template), which is not installed")
    from . import chat

    if hasattr(chat, "encode_prompt"):
        ids = chat.encode_prompt(prompt, tokenizer, system=system)
    else:
        ids = chat.encode_with_specials(chat.format_prompt(prompt, system=system), tokenizer)
    return list(ids), tokenizer.token_id("<|end|>")


def generate_text(
    checkpoint: str | os.PathLike,
    prompt: str,
    *,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 200,
    top_p: float | None = None,
    seed: int | None = None,
    chat: bool = False,
    system: str | None = None,
    num_samples: int = 1,
    device: str = "auto",
) -> Generation:
    """``num_samples`` continuations of ``prompt`` from the model at ``checkpoint``."""
    if max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    if temperature < 0:
        raise ConfigError(f"--temperature must not be negative, got {temperature}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ConfigError(f"--top-p must be in (0, 1], got {top_p}")
    if num_samples < 1:
        raise ConfigError(f"--num-samples must be at least 1, got {num_samples}")
    dev = select_device(device)
    model, ckpt = load_lm(checkpoint, device=dev)
    tokenizer = load_checkpoint_tokenizer(ckpt.path)
    if chat:
        ids, stop_id = _encode_chat_prompt(prompt, tokenizer, system)
    else:
        ids, stop_id = [tokenizer.eot_id] + tokenizer.encode(prompt), tokenizer.eot_id
    # Keep the end of an over-long prompt: the tokens next to the continuation matter most.
    ids = ids[-(model.config.block_size - 1) :]
    idx = torch.tensor([ids] * num_samples, dtype=torch.long, device=dev)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=dev).manual_seed(seed)
    out = model.generate(
        idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, eos_id=stop_id, generator=generator
    )
    completions, counts = [], []
    for row in out[:, len(ids) :].tolist():
        if stop_id in row:
            row = row[: row.index(stop_id)]
        completions.append(tokenizer.decode(row))
        counts.append(len(row))
    return Generation(prompt_tokens=len(ids), completions=completions, new_tokens=counts, checkpoint=str(ckpt.path))
