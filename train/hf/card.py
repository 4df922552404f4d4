"""The model card (README.md) of an exported folder, and the metadata it shares with config.json.

What a user of the exported model needs to know about where it came from (the stage that
trained it, its training cutoff, the mix and data it saw, the checkpoint it started from)
is written twice: as a table in the card, and under ``"curate"`` in config.json, from which
an import restores it (so export -> import -> export gives the same files).
"""

from __future__ import annotations

import json
from typing import Any

from ..model import GPTConfig
from .tokenizer import CHAT_TEMPLATE

# Checkpoint metadata that travels with an export, in the card's order, with its label.
CARD_KEYS = {
    "kind": "checkpoint kind",
    "stage": "training stage",
    "step": "step",
    "tokens_seen": "tokens seen",
    "training_cutoff": "training cutoff",
    "mix_manifest_sha256": "mix manifest sha256",
    "data": "training data",
    "data_sha256": "training data sha256",
    "parent": "parent checkpoint",
    "parent_stage": "parent stage",
    "tool_version": "curate version",
    "reward_bias": "reward head bias",
}


def curate_block(meta: dict[str, Any], kind: str) -> dict[str, Any]:
    """The metadata written under ``"curate"`` in config.json (present keys only)."""
    found = {"kind": kind, **{k: meta[k] for k in CARD_KEYS if k != "kind" and meta.get(k) is not None}}
    return {k: found[k] for k in CARD_KEYS if k in found}


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        value = ", ".join(f"{k} {v}" for k, v in value.items())
    elif not isinstance(value, str):
        value = json.dumps(value)
    return value.replace("|", "\\|").replace("\n", " ")


def _usage(reward: bool) -> str:
    name = "path/to/this/folder"
    if reward:
        return (
            "```python\n"
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
            f'tok = AutoTokenizer.from_pretrained("{name}")\n'
            f'model = AutoModelForSequenceClassification.from_pretrained("{name}")\n'
            'chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]\n'
            'ids = tok.apply_chat_template(chat, return_tensors="pt", return_dict=True)["input_ids"]\n'
            "score = model(ids).logits[0, 0]  # higher = preferred\n"
            "```\n"
        )
    return (
        "```python\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f'tok = AutoTokenizer.from_pretrained("{name}")\n'
        f'model = AutoModelForCausalLM.from_pretrained("{name}")\n'
        'chat = [{"role": "user", "content": "What is the capital of France?"}]\n'
        'ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)\n'
        "out = model.generate(**ids, max_new_tokens=64, do_sample=False)\n"
        'print(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))\n'
        "```\n\n"
        "`tok(text)` puts `<|endoftext|>` first, as every training document started: the ids "
        "`curate generate` feeds for a plain prompt.\n"
    )


def model_card(cfg: GPTConfig, block: dict[str, Any], *, reward: bool, params: int) -> str:
    """README.md of an exported folder (naming nothing that changes with where it is written,
    so the same checkpoint always gives the same card)."""
    arch = "LlamaForSequenceClassification" if reward else "LlamaForCausalLM"
    rows = "\n".join(f"| {CARD_KEYS[k]} | {_cell(v)} |" for k, v in block.items())
    kv = f", {cfg.n_kv_head} key/value heads" if cfg.n_kv_head != cfg.n_head else ""
    bias = ""
    if reward and block.get("reward_bias"):
        bias = (
            f"\n`LlamaForSequenceClassification` has no bias in its score layer: its scores are curate's "
            f"minus {block['reward_bias']:.6g}. Differences between two answers are the same.\n"
        )
    return (
        "---\n"
        "library_name: transformers\n"
        f"pipeline_tag: {'text-classification' if reward else 'text-generation'}\n"
        "tags:\n- curate\n- llama\n"
        "---\n\n"
        f"# curate {block.get('stage') or block['kind']} model, step {block.get('step', 0)}\n\n"
        f"A {'reward model' if reward else 'language model'} trained with curate, exported as `{arch}` "
        "(no custom code needed).\n\n"
        "| | |\n|---|---|\n"
        f"{rows}\n\n"
        "## Model\n\n"
        f"{params:,} parameters: {cfg.n_layer} layers, width {cfg.n_embd}, {cfg.n_head} heads{kv}, "
        f"SwiGLU hidden size {cfg.mlp_hidden}, context {cfg.block_size} tokens, vocabulary {cfg.vocab_size}, "
        f"RoPE base {cfg.rope_theta:g}, RMSNorm epsilon {cfg.norm_eps:g}"
        # a sequence classifier has no output layer to tie (and an import always ties it)
        f"{', tied input/output embeddings' if cfg.tie_embeddings and not reward else ''}.\n"
        f"{bias}\n"
        "## Use\n\n"
        f"{_usage(reward)}\n"
        "## Chat format\n\n"
        "`<|endoftext|><|system|>…<|end|><|user|>…<|end|><|assistant|>…<|end|>`, the role markers being "
        "special tokens; `tokenizer_config.json` holds it as a chat template:\n\n"
        f"```jinja\n{CHAT_TEMPLATE}\n```\n"
    )
