"""Builders for the over-optimization tests: reward models whose score is a known function of
length, built weight by weight, and a policy that starts out answering briefly."""

from __future__ import annotations

import json

import pytest
import torch

from curate.core.tokenizer import ByteTokenizer


def _length_reward(path, sign: float = 1.0, scale: float = 4.0, block_size: int = 64):
    """A one-layer reward model whose score rises with the length of what it reads (``sign``
    -1: falls). Every token but ``<|endoftext|>`` embeds as e1, ``<|endoftext|>`` (the first
    token of every scored text) as e0; the attention's queries and keys are zero, so the last
    position averages the values of all T positions, and the value copies e0 into dimension 2:
    the residual there is 1/T-ish, and the head reads ``-sign * scale`` times it. Monotone in T."""
    from train.align.reward import ScalarHeadModel
    from train.checkpoint import save_checkpoint
    from train.model import GPTConfig

    tok = ByteTokenizer()
    width = 32
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=block_size, n_layer=1, n_head=1, n_embd=width)
    model = ScalarHeadModel(cfg)
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        emb = model.trunk.tok_emb.weight
        emb[:, 1] = 1.0
        emb[tok.eot_id] = 0.0
        emb[tok.eot_id, 0] = 1.0
        attn = model.trunk.blocks[0].attn
        attn.qkv.weight[2 * width + 2, 0] = 1.0  # value dim 2 <- input dim 0 (rows: q, k, v)
        attn.proj.weight[2, 2] = 1.0
        model.head.weight[0, 2] = -sign * scale
    return save_checkpoint(
        path,
        0,
        model_state=model.export_state(),
        model_config=cfg.to_dict(),
        meta={"stage": "reward", "training_cutoff": "2026-01-01"},
        kind="reward",
    )


def _short_policy(path, end_logit: float = 0.8, block_size: int = 64):
    """A random one-layer policy (untied head) that ends its answers early: every embedding
    gets +1 in dimension 0, which the final norm turns into a large shared component, and the
    ``<|end|>`` row of the head reads it (mean answer ~4 tokens). Optimizing for length lowers it."""
    from train.chat import end_id
    from train.checkpoint import save_checkpoint
    from train.model import GPT, GPTConfig

    tok = ByteTokenizer()
    cfg = GPTConfig(
        vocab_size=tok.vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=32, tie_embeddings=False
    )
    torch.manual_seed(0)
    model = GPT(cfg)
    with torch.no_grad():
        model.tok_emb.weight[:, 0] += 1.0
        model.lm_head.weight[end_id(tok), 0] = end_logit
    return save_checkpoint(
        path,
        0,
        model_state=model.state_dict(),
        model_config=cfg.to_dict(),
        meta={"stage": "sft", "training_cutoff": "2026-01-01"},
        kind="policy",
    )


def _question_prompts(path, n: int = 40):
    path.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(n)))
    return path


@pytest.fixture
def length_reward():
    """``length_reward(path, sign=1.0, scale=4.0)`` -> a reward checkpoint scoring by length."""
    return _length_reward


@pytest.fixture
def short_policy():
    """``short_policy(path, end_logit=0.8)`` -> a policy checkpoint that answers briefly."""
    return _short_policy


@pytest.fixture
def question_prompts():
    """``question_prompts(path, n=40)`` -> a prompts file of "question i"."""
    return _question_prompts
