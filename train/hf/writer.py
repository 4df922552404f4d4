"""A checkpoint as a folder ``transformers`` loads with no custom code.

    DIR/
      config.json               LlamaForCausalLM (or LlamaForSequenceClassification, one label)
      model.safetensors         or model-0000i-of-0000N.safetensors + model.safetensors.index.json
      generation_config.json    the stop tokens and ``curate generate``'s sampling defaults
      tokenizer.json            + tokenizer_config.json (chat template) + special_tokens_map.json
      README.md                 the model card: the checkpoint's lineage and how to use it

Weights are written in the checkpoint's precision unless asked otherwise; q/k rows are
reordered for ``transformers``' RoPE (see :mod:`train.hf.layout`), so logits match ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from curate.core.errors import ConfigError, InputError
from curate.core.files import atomic_write_bytes, atomic_write_json
from curate.core.tokenizer import Tokenizer

from ..model import GPTConfig
from .card import curate_block, model_card
from .layout import CAUSAL_LM, SEQUENCE_CLASSIFIER, hf_config, llama_tensors
from .output import staged_folder
from .tokenizer import special_ids, tokenizer_files
from .weights import DTYPES, write_weights

GENERATION_CONFIG_FILE = "generation_config.json"
CARD_FILE = "README.md"


@dataclass
class Exported:
    output: Path
    architecture: str
    files: list[str]
    tensor_bytes: int
    notes: list[str] = field(default_factory=list)


def hf_tensors(
    state: dict[str, torch.Tensor], cfg: GPTConfig, reward: bool, block: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """The folder's tensors. A reward model's head becomes ``score.weight``; the score layer
    has no bias, so a non-zero one is recorded in ``block`` (``reward_bias``) instead."""
    tensors = llama_tensors(state, cfg, rope="halves")
    block.pop("reward_bias", None)
    if not reward:
        return tensors
    if "head.weight" not in state:
        raise InputError("a reward checkpoint without head weights cannot be exported")
    tensors.pop("lm_head.weight", None)
    tensors["score.weight"] = state["head.weight"]
    bias = float(state["head.bias"].reshape(-1)[0]) if "head.bias" in state else 0.0
    if bias:
        block["reward_bias"] = bias
    return tensors


def generation_config(ids: dict[str, Any]) -> dict[str, Any]:
    """Stops at either end token; samples as ``curate generate`` does by default."""
    return {
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["stop"],
        "pad_token_id": ids["pad"],
        "do_sample": True,
        "temperature": 0.8,
        "top_k": 200,
    }


def write_hf_folder(
    out: Path,
    *,
    state: dict[str, torch.Tensor],
    cfg: GPTConfig,
    kind: str,
    meta: dict[str, Any],
    tokenizer: Tokenizer,
    dtype: str = "float32",
    max_shard_bytes: int = 5_000_000_000,
    overwrite: bool = False,
) -> Exported:
    """Write the folder ``out`` (atomically); reward checkpoints as a sequence classifier."""
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
    if max_shard_bytes < 1:
        raise ConfigError("the shard size must be at least 1 byte")
    reward = kind == "reward"
    block = curate_block(meta, kind)
    tensors = hf_tensors(state, cfg, reward, block)
    ids = special_ids(tokenizer)
    config = {**hf_config(cfg, reward=reward, ids=ids, dtype=dtype), "curate": block}
    params = sum(t.numel() for t in tensors.values())
    notes = []
    if block.get("reward_bias"):
        notes.append(
            f"the reward head's bias ({block['reward_bias']:.6g}) has no place in LlamaForSequenceClassification: "
            "its scores are ours minus that constant (differences between answers are unchanged)"
        )
    with staged_folder(out, overwrite) as tmp:
        files, total = write_weights(tensors, tmp, DTYPES[dtype], max_shard_bytes)
        atomic_write_json(tmp / "config.json", config)
        files.append("config.json")
        if not reward:
            atomic_write_json(tmp / GENERATION_CONFIG_FILE, generation_config(ids))
            files.append(GENERATION_CONFIG_FILE)
        for name, data in tokenizer_files(tokenizer, cfg.block_size).items():
            atomic_write_bytes(tmp / name, data)
            files.append(name)
        card = model_card(cfg, block, reward=reward, params=params)
        atomic_write_bytes(tmp / CARD_FILE, card.encode())
        files.append(CARD_FILE)
    return Exported(out, SEQUENCE_CLASSIFIER if reward else CAUSAL_LM, files, total, notes)
