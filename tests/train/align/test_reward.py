"""Reward model: scalar head at the last real token, > 90% held-out accuracy on a learnable
preference, checkpoint round trip, scoring files."""

from __future__ import annotations

import json
import random

import pytest
import torch

from curate.core.errors import InputError
from curate.core.tokenizer import ByteTokenizer
from train.align.data import pad_right
from train.align.reward import RewardConfig, RewardScorer, ScalarHeadModel, load_pairs, train_reward
from train.align.score import score_file
from train.checkpoint import load_checkpoint, load_lm
from train.model import GPTConfig


def preference_data(path, n: int, seed: int = 0):
    """Chosen answers are polite, rejected ones contain a rude word; otherwise alike."""
    rng = random.Random(seed)
    words = ["red", "blue", "green", "cat", "dog", "sun", "tree", "box", "cup", "hat"]
    rude = ["idiot", "stupid", "shut up"]
    with open(path, "w") as fh:
        for _i in range(n):
            prompt = " ".join(rng.choice(words) for _ in range(3)) + "?"
            body = " ".join(rng.choice(words) for _ in range(rng.randint(2, 4)))
            bad = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
            fh.write(
                json.dumps({"prompt": prompt, "chosen": f"{body}, thanks.", "rejected": f"{bad} {rng.choice(rude)}."})
                + "\n"
            )
    return path


def test_reward_read_at_last_real_token():
    torch.manual_seed(0)
    model = ScalarHeadModel(GPTConfig(vocab_size=262, block_size=32, n_layer=1, n_head=2, n_embd=32)).eval()
    torch.nn.init.normal_(model.head.weight)
    a, b = [5, 6, 7], [5, 6, 7, 8, 9]
    ids, attn, _ = pad_right([a, b], pad_id=257)
    batched = model(ids, attn)
    alone = model(torch.tensor([a]), torch.ones(1, 3, dtype=torch.long))
    assert torch.allclose(batched[0], alone[0], atol=1e-5)
    assert torch.allclose(batched[1], model.values(torch.tensor([b]))[0, -1], atol=1e-5)


def test_reward_model_learns_preference(tmp_path, tiny_checkpoint):
    base = tiny_checkpoint(tmp_path / "base")
    data = preference_data(tmp_path / "pairs.jsonl", 300)
    cfg = RewardConfig(batch_size=16, max_steps=30, eval_every=0, val_fraction=0.2, seed=0)
    cfg.optim.lr = 2e-3
    cfg.optim.warmup_steps = 5
    out = tmp_path / "rm"
    res = train_reward(cfg, base, data, out, progress=False)
    assert res.held_out >= 40
    assert res.eval["val_accuracy"] > 0.9, res.eval
    # not a lucky tie-break: the held-out loss fell far below log(2) (no preference)
    assert res.eval["val_loss"] < 0.35 and res.eval["val_margin"] > 1.0, res.eval
    ckpt = load_checkpoint(out)
    assert ckpt.kind == "reward" and "head.weight" in ckpt.model_state
    assert ckpt.meta["training_cutoff"] == "2026-01-01"
    load_lm(out)  # the trunk is still readable as a language model
    scorer = RewardScorer(out)
    good, bad = scorer(["red cat?", "red cat?"], ["blue box, thanks.", "blue stupid."])
    assert good > bad
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("val_accuracy" in line for line in lines)

    # scoring a comparisons file reports the accuracy and writes scores back
    held = tmp_path / "held.jsonl"
    preference_data(held, 30, seed=99)
    scored = score_file(out, held, tmp_path / "scored.jsonl", device="cpu")
    assert scored.kind == "comparisons" and scored.rows == 30 and scored.accuracy > 0.8
    first = json.loads((tmp_path / "scored.jsonl").read_text().splitlines()[0])
    assert {"chosen_score", "rejected_score"} <= set(first)
    responses = tmp_path / "responses.jsonl"
    responses.write_text(json.dumps({"prompt": "a?", "response": "b, thanks."}) + "\n")
    assert score_file(out, responses, device="cpu").kind == "responses"


def test_margin_column_and_bad_rows(tmp_path, tiny_checkpoint):
    tok = ByteTokenizer()
    path = tmp_path / "c.jsonl"
    path.write_text(
        json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "margin": 2})
        + "\n"
        + json.dumps({"prompt": "p", "chosen": "a", "rejected": "c"})
        + "\n"
        + json.dumps({"prompt": "p", "chosen": "same", "rejected": "same"})
        + "\n"
        + "{broken\n"
        + json.dumps({"prompt": "p"})
        + "\n"
    )
    train, _held, skipped = load_pairs(path, tok, 64, 0.0, default_margin=0.5)
    assert [p.margin for p in train] == [2.0, 0.5]
    assert skipped.total == 3
    with pytest.raises(InputError, match="not a reward model"):
        RewardScorer(tiny_checkpoint(tmp_path / "lm"))
