"""curate -> `curate export hf` -> transformers: the same logits (fp32, max abs diff <= 1e-4),
the same greedy continuation, every setting in config.json, sharding, the model card, and the
reward model as LlamaForSequenceClassification."""

from __future__ import annotations

import json

import pytest
import torch

from train.align.data import pad_right
from train.align.reward import encode_pair_side, load_scalar_model
from train.checkpoint import load_lm
from train.export import export_hf
from train.generate import generate_text

transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-4


def hf_model(folder, cls="AutoModelForCausalLM"):
    return getattr(transformers, cls).from_pretrained(folder, dtype=torch.float32).eval()


def max_logit_diff(ckpt, folder, ids: torch.Tensor) -> float:
    ours, _ = load_lm(ckpt)
    with torch.no_grad():
        return float((ours(ids)[0] - hf_model(folder)(ids).logits).abs().max())


@pytest.mark.parametrize(
    "model",
    [
        {},  # GQA, tied embeddings, gain-free norms: our defaults
        {"n_kv_head": 4, "tie_embeddings": False, "norm_weight": True, "rope_theta": 10000.0, "norm_eps": 1e-6},
        {"n_kv_head": 1, "mlp_hidden": 96},  # multi-query attention, an explicit SwiGLU width
    ],
)
def test_transformers_gives_our_logits(make_checkpoint, bpe, tmp_path, texts, model):
    ckpt = make_checkpoint(bpe, **model)
    export_hf(ckpt, tmp_path / "out")
    ids = torch.tensor([[bpe.eot_id] + bpe.encode(" ".join(texts))[:60]])
    diff = max_logit_diff(ckpt, tmp_path / "out", ids)
    assert diff <= TOLERANCE, diff
    # the permutation matters: without it the logits are far apart (the test can fail)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]


def test_config_carries_every_setting(make_checkpoint, bpe, tmp_path):
    ckpt = make_checkpoint(bpe, tie_embeddings=False, rope_theta=2500.0, norm_eps=1e-6, block_size=48)
    export_hf(ckpt, tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    expected = {
        "model_type": "llama",
        "vocab_size": bpe.vocab_size,
        "hidden_size": 64,
        "intermediate_size": 192,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 48,
        "rms_norm_eps": 1e-6,
        "rope_theta": 2500.0,
        "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": 2500.0},
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "bos_token_id": bpe.eot_id,
        "pad_token_id": bpe.pad_id,
    }
    assert {k: config[k] for k in expected} == expected
    loaded = transformers.AutoConfig.from_pretrained(tmp_path / "out")
    assert loaded.rope_parameters["rope_theta"] == 2500.0 and loaded.num_key_value_heads == 2
    # gain-free norms are written as ones
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "out" / "model.safetensors")
    assert bool((weights["model.layers.0.input_layernorm.weight"] == 1).all())
    assert "lm_head.weight" in weights  # untied


@pytest.mark.parametrize(
    "prompt, learned",
    [("Привет, мир! Как", " дела?"), ("Grüße aus", " München"), ("The quick brown fox", " jumps over")],
)
def test_greedy_continuation_is_the_same(trained, bpe, tmp_path, prompt, learned):
    export_hf(trained, tmp_path / "out")
    ours = generate_text(trained, prompt, max_new_tokens=12, temperature=0, device="cpu")
    assert ours.completions[0].startswith(learned)  # what the model learned: attention matters
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    ids = tok(prompt, return_tensors="pt")
    assert ids["input_ids"].shape[1] == ours.prompt_tokens  # <|endoftext|> put first, as curate does
    out = hf_model(tmp_path / "out").generate(**ids, max_new_tokens=12, do_sample=False, eos_token_id=bpe.eot_id)
    new = out[0, ids["input_ids"].shape[1] :].tolist()
    if new and new[-1] == bpe.eot_id:
        new = new[:-1]
    assert len(new) == ours.new_tokens[0] and tok.decode(new) == ours.completions[0]


def test_big_models_are_sharded_with_an_index(make_checkpoint, bpe, tmp_path):
    ckpt = make_checkpoint(bpe, tie_embeddings=False)
    result = export_hf(ckpt, tmp_path / "out", max_shard_size="150kB")
    shards = sorted(p.name for p in (tmp_path / "out").glob("model-*.safetensors"))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert not (tmp_path / "out" / "model.safetensors").exists()
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["total_size"] == result.tensor_bytes
    ids = torch.tensor([[bpe.eot_id] + bpe.encode("Grüße aus München")])
    assert max_logit_diff(ckpt, tmp_path / "out", ids) <= TOLERANCE


def test_model_card_and_config_carry_the_lineage(make_checkpoint, bpe, tmp_path):
    ckpt = make_checkpoint(bpe, meta={"data_sha256": "cd" * 32, "tokens_seen": 1234})
    export_hf(ckpt, tmp_path / "my-model")
    card = (tmp_path / "my-model" / "README.md").read_text()
    for text in ("max 2024-05-01", "ab" * 32, "cd" * 32, "/runs/base/step-000100", "| training stage | sft |"):
        assert text in card
    assert "AutoModelForCausalLM" in card and "<|assistant|>" in card
    block = json.loads((tmp_path / "my-model" / "config.json").read_text())["curate"]
    assert block["training_cutoff"] == {"max": "2024-05-01", "p99": "2024-04-20"}
    assert block["mix_manifest_sha256"] == "ab" * 32 and block["parent"] == "/runs/base/step-000100"
    assert block["stage"] == "sft" and block["step"] == 12


def test_bfloat16_export_loads(make_checkpoint, bpe, tmp_path):
    ckpt = make_checkpoint(bpe)
    export_hf(ckpt, tmp_path / "out", dtype="bfloat16")
    from safetensors.torch import load_file

    assert load_file(tmp_path / "out" / "model.safetensors")["model.embed_tokens.weight"].dtype == torch.bfloat16
    ids = torch.tensor([[bpe.eot_id] + bpe.encode("Ça va")])
    assert max_logit_diff(ckpt, tmp_path / "out", ids) < 0.05  # bf16 rounding, not a layout error


@pytest.mark.parametrize("bias", [0.0, 0.75])
def test_reward_model_exports_as_a_sequence_classifier(make_checkpoint, bpe, tmp_path, bias):
    ckpt = make_checkpoint(bpe, kind="reward", head_bias=bias, tie_embeddings=False)
    result = export_hf(ckpt, tmp_path / "rm")
    assert result.architecture == "LlamaForSequenceClassification"
    assert bool(result.notes) == bool(bias)
    ours, _ = load_scalar_model(ckpt, require_head=True)
    theirs = hf_model(tmp_path / "rm", "AutoModelForSequenceClassification")
    assert theirs.config.num_labels == 1 and theirs.config.pad_token_id == bpe.pad_id
    pairs = [("What is 2+2?", "4"), ("Привет", "Здравствуйте, как дела?"), ("你好", "你好！")]
    seqs = [encode_pair_side(p, r, bpe, 64) for p, r in pairs]
    ids, attn, _ = pad_right(seqs, bpe.pad_id)
    with torch.no_grad():
        mine = ours(ids, attn)
        hf = theirs(input_ids=ids, attention_mask=attn).logits[:, 0]
    assert float((mine - bias - hf).abs().max()) <= TOLERANCE
    assert float(mine.std()) > 1e-3  # scores differ between answers: the comparison can fail
    assert "reward_bias" not in json.loads((tmp_path / "rm" / "config.json").read_text())["curate"] or bias
