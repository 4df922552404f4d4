"""DPO and IPO widen the chosen-vs-rejected implicit-reward margin, on training and held-out
pairs, with the reference model left untouched."""

from __future__ import annotations

import json
import random

import torch

from train.align.dpo import DPOConfig, dpo
from train.checkpoint import load_checkpoint


def pairs(path, n: int, seed: int = 0):
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for _ in range(n):
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            fh.write(json.dumps({"prompt": f"{a}+{b}", "chosen": f"yes {a + b}", "rejected": f"no {a + b + 1}"}) + "\n")
    return path


def run(tmp_path, loss: str, tiny_checkpoint):
    base = tiny_checkpoint(tmp_path / "base", block_size=48, stage="sft", kind="policy")
    data = pairs(tmp_path / "pairs.jsonl", 80)
    cfg = DPOConfig(loss=loss, beta=0.1, batch_size=8, max_steps=15, eval_every=0, val_fraction=0.2, seed=0)
    cfg.optim.lr = 2e-3
    cfg.optim.warmup_steps = 2
    out = tmp_path / loss
    return base, out, dpo(cfg, base, data, out, progress=False)


def test_dpo_widens_margin(tmp_path, tiny_checkpoint):
    base, out, res = run(tmp_path, "dpo", tiny_checkpoint)
    assert res.first_eval["val_margin"] == 0.0  # policy == reference before training
    assert res.eval["val_margin"] > 0.5, res.eval
    assert res.eval["val_accuracy"] > 0.9
    assert res.eval["val_loss"] < res.first_eval["val_loss"]
    assert res.last["margin"] > res.first["margin"]
    ckpt = load_checkpoint(out)
    assert ckpt.kind == "policy" and ckpt.meta["stage"] == "dpo" and ckpt.meta["loss_type"] == "dpo"
    assert ckpt.meta["training_cutoff"] == "2026-01-01"
    # the policy moved; the base checkpoint (the reference) did not
    before = load_checkpoint(base).model_state
    assert not torch.equal(before["tok_emb.weight"], ckpt.model_state["tok_emb.weight"])


def test_ipo_widens_margin(tmp_path, tiny_checkpoint):
    _, _, res = run(tmp_path, "ipo", tiny_checkpoint)
    assert res.eval["val_margin"] > res.first_eval["val_margin"] + 0.05, res.eval
    assert res.eval["val_loss"] < res.first_eval["val_loss"]
