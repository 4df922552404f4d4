"""Bits per byte: windows that score every token once, equality with a direct computation, the
byte-tokenizer identity (bpb = mean NLL per token / ln 2), the held-out slice found through
the checkpoint's lineage with pretraining's rule, and extra text."""

from __future__ import annotations

import json
import math

import pytest
import torch

from curate.core.accounting import Stats
from curate.core.document import Document
from curate.core.errors import ConfigError, InputError
from curate.core.manifest import build_manifest, write_manifest
from curate.core.shards import ShardWriter
from curate.core.tokenizer import ByteTokenizer
from train.checkpoint import save_checkpoint
from train.data import is_validation
from train.eval import EvalConfig, run_eval
from train.eval.bpb import document_windows, find_heldout
from train.model import GPT, GPTConfig

VAL_FRACTION = 0.3


def _text(source: str, i: int) -> str:
    return f"{source} document {i}: " + ("héllo wörld " if source == "books" else "plain words ") * (1 + i % 5)


@pytest.fixture
def mix_dir(tmp_path):
    """A mix of two sources; every document appears twice (as a second epoch would)."""
    directory = tmp_path / "mix"
    writer = ShardWriter(directory, prefix="part-00000", shard_bytes=4_000, row_group_bytes=1_000)
    for _epoch in range(2):
        for source in ("web", "books"):
            for i in range(30):
                writer.write(Document(id=f"{source}-{i}", text=_text(source, i), source=source))
    manifest = build_manifest("mix", {}, [], Stats(read=120, kept=120), {"": writer.close()})
    write_manifest(directory, manifest)
    return directory


def _checkpoint(path, meta, block_size=64):
    cfg = GPTConfig(vocab_size=ByteTokenizer().vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=32)
    torch.manual_seed(1)
    return save_checkpoint(path, 5, model_state=GPT(cfg).state_dict(), model_config=cfg.to_dict(), meta=meta)


def _pretrained(tmp_path, mix_dir, block_size=256):
    meta = {"stage": "pretrain", "mix": str(mix_dir), "train_config": {"data": {"val_fraction": VAL_FRACTION}}}
    return _checkpoint(tmp_path / "base", meta, block_size)


def test_windows_score_every_token_once():
    tokens = list(range(1000, 1023))  # a start token and 22 more
    for block, stride in [(8, 8), (8, 3), (8, 1), (30, 30)]:
        windows = document_windows(tokens, block, stride)
        assert [t for w in windows for t in w.targets] == tokens[1:]
        for w in windows:
            assert len(w.inputs) <= block
            end = tokens.index(w.targets[-1])
            assert w.inputs == tuple(tokens[end - len(w.inputs) : end])  # the tokens just before
        assert all(len(w.inputs) == block for w in windows[1:])  # later windows have full context
    assert document_windows([1000], 8, 8) == []
    with pytest.raises(ConfigError, match="larger than the model's block size"):
        document_windows(tokens, 8, 9)


def _direct_bits(model, text: str) -> tuple[float, int]:
    ids = [ByteTokenizer().eot_id, *text.encode()]
    x, y = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])
    with torch.no_grad():
        _, loss = model(x, y)
    return float(loss) * len(ids[1:]) / math.log(2), len(ids) - 1


def test_heldout_bpb_per_source_equals_direct_computation(tmp_path, mix_dir):
    from train.checkpoint import load_lm

    step = _pretrained(tmp_path, mix_dir)
    results = run_eval(step, EvalConfig(tasks="none", device="cpu"))
    model, _ = load_lm(step)
    bpb = results["bpb"]
    assert bpb["val_fraction"] == VAL_FRACTION and bpb["stride"] == bpb["window"] == 256
    for source in ("web", "books"):
        held = [_text(source, i) for i in range(30) if is_validation(f"{source}-{i}", VAL_FRACTION)]
        assert 0 < len(held) < 30
        bits = sum(_direct_bits(model, t)[0] for t in held)
        nbytes = sum(len(t.encode()) for t in held)
        got = bpb["sources"][source]
        assert got["docs"] == len(held)  # each held-out id once, though the mix repeats it
        assert got["bytes"] == nbytes == got["tokens"]
        assert got["bpb"] == pytest.approx(bits / nbytes, rel=1e-5)
        # A byte-level model: bits per byte is the mean loss per token / ln 2.
        assert got["bpb"] == pytest.approx(got["bits_per_token"], rel=1e-12)
    assert bpb["sources"]["books"]["bytes"] > bpb["sources"]["books"]["docs"] * 20  # é counts two bytes
    assert bpb["all"]["bits"] == pytest.approx(bpb["sources"]["web"]["bits"] + bpb["sources"]["books"]["bits"])


def test_windowed_bpb_matches_rolling_windows(tmp_path, mix_dir):
    """Documents longer than the block: the same number whatever the batch size; an
    overlapping stride scores the same bytes, with more context (so a different number)."""
    step = _pretrained(tmp_path, mix_dir, block_size=16)
    one = run_eval(step, EvalConfig(tasks="none", device="cpu", batch_size=1), output=tmp_path / "a.json")
    seven = run_eval(step, EvalConfig(tasks="none", device="cpu", batch_size=7), output=tmp_path / "b.json")
    for source, values in one["bpb"]["sources"].items():
        assert seven["bpb"]["sources"][source]["bpb"] == pytest.approx(values["bpb"], abs=1e-6)
    overlap = run_eval(step, EvalConfig(tasks="none", device="cpu", stride=4), output=tmp_path / "c.json")
    assert overlap["bpb"]["stride"] == 4
    assert overlap["bpb"]["all"]["bytes"] == one["bpb"]["all"]["bytes"]
    assert overlap["bpb"]["all"]["bpb"] != pytest.approx(one["bpb"]["all"]["bpb"], abs=1e-9)


def test_fine_tuned_model_finds_the_mix_through_its_parent(tmp_path, mix_dir):
    base = _pretrained(tmp_path, mix_dir)
    sft = _checkpoint(tmp_path / "sft", {"stage": "sft", "parent": str(base), "train_config": {"max_len": 64}})
    meta = json.loads((sft / "config.json").read_text())
    held = find_heldout(meta, sft)
    assert held.reason is None and held.mix == mix_dir and held.val_fraction == VAL_FRACTION
    results = run_eval(sft, EvalConfig(tasks="none", device="cpu"))
    assert set(results["bpb"]["sources"]) == {"books", "web"}


def test_missing_mix_is_a_note_unless_given(tmp_path, mix_dir, tiny_checkpoint):
    step = tiny_checkpoint(tmp_path / "bare")
    notes = []
    results = run_eval(step, EvalConfig(tasks="none", text=[f"extra={mix_dir}"], device="cpu"), note=notes.append)
    assert results["bpb"] is None and "pass --mix DIR" in notes[0]
    assert results["text_bpb"]["extra"]["docs"] == 120  # --text scores every row as it is
    with pytest.raises(InputError, match="no such mix folder"):
        run_eval(step, EvalConfig(tasks="none", mix=str(tmp_path / "nowhere"), device="cpu"))
    given = run_eval(step, EvalConfig(tasks="none", mix=str(mix_dir), val_fraction=0.5, device="cpu"))
    assert given["bpb"]["val_fraction"] == 0.5 and given["bpb"]["all"]["docs"] > 0


def test_extra_text_from_jsonl(tmp_path, tiny_checkpoint):
    step = tiny_checkpoint(tmp_path / "bare")
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.jsonl").write_text('{"text": "one short text"}\n{"text": "and another one"}\n')
    results = run_eval(step, EvalConfig(tasks="none", bpb=False, text=[str(tmp_path / "t")], device="cpu"))
    assert results["text_bpb"]["t"]["docs"] == 2
    assert results["text_bpb"]["t"]["bytes"] == len("one short text") + len("and another one")
