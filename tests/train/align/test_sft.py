"""SFT: prompt tokens get no gradient, padded examples do not see each other, training lowers
the held-out loss, checkpoints carry the lineage, reruns resume."""

from __future__ import annotations

import json

import pytest
import torch

from curate.core.errors import InputError
from curate.core.tokenizer import ByteTokenizer
from train.align.data import read_records
from train.align.sft import ChatExample, SFTConfig, load_sft_examples, sft, sft_batch
from train.chat import encode_chat
from train.checkpoint import load_checkpoint
from train.model import GPT, GPTConfig


def write_qa(path, n=40):
    with open(path, "w") as fh:
        for i in range(n):
            a, b = i % 7, i % 5
            fh.write(json.dumps({"prompt": f"{a}+{b}?", "response": f"{a + b}"}) + "\n")
    return path


def test_prompt_tokens_get_no_gradient():
    tok = ByteTokenizer()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32))
    examples = []
    for prompt, answer in [("What is two plus two?", "4"), ("Hi", "Hello there, friend.")]:
        ids, mask = encode_chat([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], tok)
        examples.append(ChatExample(ids, mask))
    x, y, attn, target_mask = sft_batch(examples, tok.pad_id, torch.device("cpu"))
    # targets are ignored exactly where the target token is not the assistant's
    assert bool(((y != -100) == target_mask).all())
    assert int(target_mask.sum()) == len("4") + 1 + len("Hello there, friend.") + 1

    # d loss / d logits is zero at every position whose target is a prompt token or padding
    logits, _ = model(x, attention_mask=attn)
    logits.retain_grad()
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-100)
    loss.backward()
    per_pos = logits.grad.abs().sum(-1)
    assert bool((per_pos[~target_mask] == 0).all())
    assert bool((per_pos[target_mask] > 0).all())

    # the model's own loss agrees, and changing the prompt-side targets changes nothing
    _, loss_model = model(x, y, attention_mask=attn)
    assert abs(float(loss_model.detach()) - float(loss.detach())) < 1e-6
    # targets at prompt positions can be anything: with the loss mask they change nothing
    model.zero_grad()
    y_real = y.clone()
    y_real[~target_mask] = 7
    _, l1 = model(x, y_real, attention_mask=attn, loss_mask=target_mask)
    l1.backward()
    g1 = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    y_noise = torch.where(target_mask, y, torch.randint(0, 256, y.shape))
    _, l2 = model(x, y_noise, attention_mask=attn, loss_mask=target_mask)
    l2.backward()
    assert abs(l1.item() - loss.item()) < 1e-6 and abs(l1.item() - l2.item()) < 1e-7
    assert all(torch.equal(a, b.grad) for a, b in zip(g1, model.parameters()))


def test_padded_examples_do_not_attend_to_each_other():
    tok = ByteTokenizer()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32)).eval()
    short = ChatExample(*encode_chat([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], tok))
    long = ChatExample(
        *encode_chat(
            [{"role": "user", "content": "long question"}, {"role": "assistant", "content": "long answer"}], tok
        )
    )
    x, _, attn, _ = sft_batch([short, long], tok.pad_id, torch.device("cpu"))
    batched, _ = model(x, attention_mask=attn)
    alone, _ = model(torch.tensor([short.ids[:-1]]))
    n = len(short.ids) - 1
    assert torch.allclose(batched[0, :n], alone[0], atol=1e-5)


def test_load_examples_counts_bad_records(tmp_path):
    tok = ByteTokenizer()
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"prompt": "a", "response": "b"}\nnot json\n{"prompt": "only"}\n'
        '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}\n'
    )
    train, held, skipped = load_sft_examples(path, tok, 64, 0.0)
    assert len(train) == 2 and not held
    assert skipped.total == 2 and any("invalid JSON" in line for line in skipped.lines())
    empty = tmp_path / "e.jsonl"
    empty.write_text("nope\n")
    with pytest.raises(InputError, match="no usable SFT examples"):
        load_sft_examples(empty, tok, 64, 0.0)
    with pytest.raises(InputError):
        list(read_records(tmp_path / "missing.jsonl"))


def test_sft_lowers_heldout_loss_and_resumes(tmp_path, tiny_checkpoint):
    base = tiny_checkpoint(tmp_path / "base")
    data = write_qa(tmp_path / "qa.jsonl", 60)
    cfg = SFTConfig(batch_size=8, max_steps=40, eval_every=20, log_every=5, val_fraction=0.2, seed=1)
    cfg.optim.lr = 3e-3
    cfg.optim.warmup_steps = 2
    out = tmp_path / "sft"
    res = sft(cfg, base, data, out, progress=False)
    assert res.held_out > 0 and res.examples + res.held_out == 60
    assert res.eval["val_loss"] < res.first_eval["val_loss"] * 0.7
    ckpt = load_checkpoint(out)
    assert ckpt.kind == "policy" and ckpt.meta["stage"] == "sft"
    assert ckpt.meta["training_cutoff"] == "2026-01-01" and ckpt.meta["parent"].endswith("step-000000")
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 40 and "val_loss" in lines[-1]
    # a rerun with the same config has nothing to do
    again = sft(cfg, base, data, out, progress=False)
    assert again.status == "up-to-date"


def test_sft_resume_matches_uninterrupted_run(tmp_path, tiny_checkpoint):
    base = tiny_checkpoint(tmp_path / "base")
    data = write_qa(tmp_path / "qa.jsonl", 30)
    cfg = SFTConfig(batch_size=4, max_steps=10, eval_every=0, val_fraction=0.2, seed=2)
    cfg.optim.lr = 1e-3
    first = sft(cfg, base, data, tmp_path / "a", progress=False, stop_at_step=4)
    assert first.status == "stopped" and first.step == 4
    rest = sft(cfg, base, data, tmp_path / "a", progress=False)
    assert rest.start_step == 4 and rest.step == 10
    sft(cfg, base, data, tmp_path / "b", progress=False)
    a, b = load_checkpoint(tmp_path / "a").model_state, load_checkpoint(tmp_path / "b").model_state
    assert all(torch.equal(a[k], b[k]) for k in a)
