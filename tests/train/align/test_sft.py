"""SFT: prompt tokens get no gradient, padded examples do not see each other, training lowers
the held-out loss, checkpoints carry the lineage, reruns resume."""

from __future__ import annotations

import json

import pytest
import torch

from curate.core.errors import InputError
from curate.core.tokenizer import ByteTokenizer
from train.align.data import Skipped, batch_indices, data_digest, read_records
from train.align.sft import ChatExample, SFTConfig, load_sft_examples, sft, sft_batch
from train.align.stage import StageRun, run_steps
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


def test_batch_indices_cover_each_epoch_once():
    seen = [i for s in range(5) for i in batch_indices(10, 4, s, seed=3)]
    assert sorted(seen[:10]) == list(range(10))  # the first epoch is a permutation
    assert batch_indices(10, 4, 2, seed=3) == batch_indices(10, 4, 2, seed=3)
    assert len(seen) == 20


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


def test_corrupt_parquet_row_group_is_an_input_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = tmp_path / "good.parquet"
    rows = [{"prompt": f"question {i} " * 5, "response": f"answer {i} " * 5} for i in range(300)]
    pq.write_table(pa.Table.from_pylist(rows), good, row_group_size=100, compression="zstd")
    assert len(list(read_records(good))) == 300
    # The footer stays intact (the file opens); the second row group's page header does not.
    data = bytearray(good.read_bytes())
    offset = pq.ParquetFile(good).metadata.row_group(1).column(0).data_page_offset
    data[offset + 20 : offset + 60] = bytes(b ^ 0xFF for b in data[offset + 20 : offset + 60])
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match="bad.parquet: unreadable Parquet data"):
        list(read_records(bad))
    with pytest.raises(InputError, match="not a readable Parquet file"):
        (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
        list(read_records(tmp_path / "junk.parquet"))


def test_data_digest_covers_content_and_relative_paths(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name / "sub").mkdir(parents=True)
        (tmp_path / name / "sub" / "x.jsonl").write_text("1\n")
    assert data_digest(tmp_path / "a") == data_digest(tmp_path / "b")
    (tmp_path / "b" / "sub" / "x.jsonl").write_text("2\n")
    assert data_digest(tmp_path / "a") != data_digest(tmp_path / "b")
    # same name and content, another subdirectory: a different data set
    (tmp_path / "b" / "sub" / "x.jsonl").rename(tmp_path / "b" / "x.jsonl")
    (tmp_path / "b" / "x.jsonl").write_text("1\n")
    assert data_digest(tmp_path / "a") != data_digest(tmp_path / "b")
    assert data_digest(tmp_path / "a" / "sub" / "x.jsonl") == data_digest(tmp_path / "b" / "x.jsonl")


def test_run_steps_eval_log_and_checkpoint_schedule(tmp_path):
    """One documented schedule for every stage: eval before the first step (logged as step 0),
    every eval_every steps and at the last step; logs on the first step, every log_every and
    the last; checkpoints every checkpoint_every and at the last; stop_at_step stops there."""
    cfg = SFTConfig(eval_every=4, log_every=3, checkpoint_every=5)
    run = StageRun("sft", tmp_path / "out", overwrite=False, parent=None, config=cfg)
    optimizer, result = run.begin(
        torch.nn.Linear(1, 1), cfg, torch.device("cpu"), max_steps=10, examples=1, held_out=1, skipped=Skipped()
    )
    evals, saves, steps = [], [], []

    def eval_fn():
        evals.append(len(steps))
        return {"val_loss": 10.0 - len(steps)}

    def save_fn(step):
        saves.append(step)
        return tmp_path / f"step-{step}"

    res = run_steps(
        run,
        result,
        cfg,
        optimizer,
        step_fn=lambda s: steps.append(s) or {"loss": float(s)},
        eval_fn=eval_fn,
        save_fn=save_fn,
        stop_at_step=9,
        progress=False,
    )
    assert steps == list(range(9)) and res.status == "stopped" and res.step == 9
    assert evals == [0, 4, 8, 9] and saves == [5, 9]
    assert res.first_eval == {"val_loss": 10.0} and res.eval == {"val_loss": 1.0}
    assert res.first == {"loss": 0.0} and res.last == {"loss": 8.0}
    lines = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 1, 3, 4, 6, 8, 9]
    assert "lr" in lines[1] and "val_loss" in lines[0] and "loss" not in lines[0]
    assert [line["step"] for line in lines if "val_loss" in line] == [0, 4, 8, 9]
