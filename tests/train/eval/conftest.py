"""Fixtures of the eval tests: a tiny random model loaded from a checkpoint, task files written
on the spot, and a direct (unbatched, unpadded) log-likelihood to compare against."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F


@pytest.fixture
def tiny_lm(tmp_path, tiny_checkpoint):
    """(model, tokenizer, step dir) of a 2-layer random byte-level model, block size 96."""
    from train.checkpoint import load_checkpoint_tokenizer, load_lm

    step = tiny_checkpoint(tmp_path / "ckpt", seed=3, block_size=96)
    model, ckpt = load_lm(step)
    return model, load_checkpoint_tokenizer(ckpt.path), ckpt.path


@pytest.fixture
def direct_loglik():
    """``direct_loglik(model, ids, n)``: the sum of log p of the last ``n`` of ``ids``, from
    one unpadded forward pass over ``ids[:-1]``."""

    @torch.no_grad()
    def compute(model, ids: list[int], n: int) -> float:
        x = torch.tensor([ids[:-1]])
        logits, _ = model(x)
        logp = F.log_softmax(logits[0].double(), dim=-1)
        targets = ids[1:]
        return float(sum(logp[i, targets[i]] for i in range(len(targets) - n, len(targets))))

    return compute


@pytest.fixture
def write_task():
    """``write_task(path, records)`` writes a JSONL task file and returns its path as str."""

    def write(path: Path, records: list[dict]) -> str:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return str(path)

    return write


@pytest.fixture
def toy_records():
    """Eight generic records of three lengths, choices of different lengths, ids q0..q7."""
    return [
        {
            "id": f"q{i}",
            "context": f"Question {i}: " + "sky colour? " * (1 + i % 3) + "\nAnswer:",
            "choices": ["blue", "a very long and rambling green answer", "red"],
            "label": i % 3,
        }
        for i in range(8)
    ]
