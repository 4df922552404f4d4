"""train/checkpoint.py: atomic step directories, round trips, pruning, tokenizers."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from curate.core.errors import CurateError
from curate.core.tokenizer import BPETokenizer, ByteTokenizer
from curate.stages.tokenize import train_bpe
from train.checkpoint import (
    list_step_dirs,
    load_checkpoint,
    load_checkpoint_tokenizer,
    load_lm,
    resolve_checkpoint,
    save_checkpoint,
)
from train.model import GPT, GPTConfig
from train.optim import build_optimizer
from train.runtime import rng_state

CUTOFF = {"max": "2024-05-01T00:00:00", "p99": "2024-04-20T00:00:00", "undated_docs": 3}


def make_model(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{"vocab_size": 262, "block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16, **overrides}))


def save(run_dir, model, step, **kwargs):
    return save_checkpoint(
        run_dir,
        step,
        model_state=model.state_dict(),
        model_config=model.config.to_dict(),
        meta={"training_cutoff": CUTOFF, "tokens_seen": step * 100},
        **kwargs,
    )


def test_round_trip_gives_the_same_model_and_metadata(tmp_path):
    model = make_model()
    path = save(tmp_path / "run", model, 12)
    assert path.name == "step-000012"
    assert (tmp_path / "run" / "latest").read_text().strip() == "step-000012"
    loaded, ckpt = load_lm(tmp_path / "run")
    idx = torch.randint(0, 262, (2, 8))
    assert torch.equal(loaded(idx)[0], model.eval()(idx)[0])
    assert ckpt.kind == "lm" and ckpt.step == 12
    assert ckpt.meta["training_cutoff"] == CUTOFF
    assert ckpt.meta["tokenizer"]["name"] == "bytes"
    config = json.loads((path / "config.json").read_text())
    assert config["model"]["n_embd"] == 16 and config["training_cutoff"] == CUTOFF
    # The tied matrix is stored once; loading restores the alias so strict loading works.
    assert "lm_head.weight" not in load_file(str(path / "model.safetensors"))
    make_model().load_state_dict(load_checkpoint(path).model_state, strict=True)


def test_untied_and_wrapped_state_dicts(tmp_path):
    model = make_model(tie_embeddings=False, n_kv_head=1)
    wrapped = {f"module._orig_mod.{k}": v for k, v in model.state_dict().items()}  # DDP + compile names
    save_checkpoint(tmp_path, 1, model_state=wrapped, model_config=model.config.to_dict(), meta={})
    loaded, _ = load_lm(tmp_path)
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert loaded.lm_head.weight is not loaded.tok_emb.weight


def test_optimizer_and_train_state_round_trip_weights_only(tmp_path):
    model = make_model()
    opt = build_optimizer(model, lr=1e-3)
    model(torch.randint(0, 262, (2, 8)), torch.randint(0, 262, (2, 8)))[1].backward()
    opt.step()
    state = {"step": 5, "ranks": [{"rng": rng_state(), "data": {"epoch": 0, "row": 3}}]}
    save(tmp_path, model, 5, optimizer_state=opt.state_dict(), train_state=state)
    plain = load_checkpoint(tmp_path)
    assert plain.optimizer_state is None and plain.train_state is None  # only on request
    ckpt = load_checkpoint(tmp_path, with_optimizer=True)
    fresh = build_optimizer(make_model(), lr=1e-3)
    fresh.load_state_dict(ckpt.optimizer_state)
    exp_avg = next(iter(opt.state.values()))["exp_avg"]
    assert torch.equal(next(iter(fresh.state.values()))["exp_avg"], exp_avg)
    assert ckpt.train_state["ranks"][0]["data"] == {"epoch": 0, "row": 3}
    assert torch.equal(ckpt.train_state["ranks"][0]["rng"]["torch"], state["ranks"][0]["rng"]["torch"])


def test_keep_last_prunes_old_steps_and_latest_follows(tmp_path):
    model = make_model()
    for step in (10, 20, 30, 40):
        save(tmp_path, model, step, keep_last=2)
    assert [p.name for p in list_step_dirs(tmp_path)] == ["step-000030", "step-000040"]
    assert resolve_checkpoint(tmp_path).name == "step-000040"
    assert resolve_checkpoint(tmp_path / "step-000030").name == "step-000030"
    # Rewriting an existing step (a resumed run reaching it again) replaces it whole.
    save(tmp_path, make_model(n_embd=32, n_head=2), 40, keep_last=2)
    assert load_checkpoint(tmp_path).model_config["n_embd"] == 32
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_incomplete_directories_are_never_picked(tmp_path):
    model = make_model()
    save(tmp_path, model, 3)
    # A killed save leaves a temp dir; a stale `latest` may name a deleted step.
    (tmp_path / ".step-000004.abc.tmp").mkdir()
    (tmp_path / "step-000005").mkdir()  # no weights: not complete
    (tmp_path / "latest").write_text("step-000009\n")
    assert resolve_checkpoint(tmp_path).name == "step-000003"


def test_missing_or_empty_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CurateError, match="no such checkpoint"):
        resolve_checkpoint(tmp_path / "nope")
    with pytest.raises(CurateError, match="holds no checkpoint"):
        resolve_checkpoint(tmp_path)
    step = save(tmp_path / "run", make_model(), 1)
    (step / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CurateError, match="unreadable weights"):
        load_checkpoint(step)


def test_reward_checkpoints_load_as_language_models(tmp_path):
    model = make_model()
    state = dict(model.state_dict())
    state["head.weight"] = torch.randn(1, 16)
    state["head.bias"] = torch.zeros(1)
    save_checkpoint(tmp_path, 7, model_state=state, model_config=model.config.to_dict(), meta={}, kind="reward")
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.kind == "reward" and "head.weight" in ckpt.model_state
    loaded, _ = load_lm(tmp_path)
    assert torch.equal(loaded.tok_emb.weight, model.tok_emb.weight)


def test_trained_tokenizer_travels_with_the_checkpoint(tmp_path):
    texts = [f"the quick brown fox {i} jumps over the lazy dog" for i in range(200)]
    tok = train_bpe(iter(texts), tmp_path / "tok", vocab_size=300)
    model = make_model(vocab_size=tok.vocab_size)
    step = save(tmp_path / "run", model, 1, tokenizer=tok)
    assert (step / "tokenizer.json").exists()
    (tmp_path / "tok" / "tokenizer.json").unlink()  # the original may be moved or deleted
    loaded = load_checkpoint_tokenizer(tmp_path / "run")
    assert isinstance(loaded, BPETokenizer)
    assert loaded.encode("the quick brown fox") == tok.encode("the quick brown fox")
    assert json.loads((step / "config.json").read_text())["tokenizer"]["name"] == "bpe"
    save(tmp_path / "bytes-run", make_model(), 1)
    assert isinstance(load_checkpoint_tokenizer(tmp_path / "bytes-run"), ByteTokenizer)
