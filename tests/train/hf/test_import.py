"""transformers -> hf:DIR -> curate: a tiny random Llama (GQA), Mistral and Qwen2 give our model
the same logits; what our model cannot represent is one line; special tokens are added; the
conversion is cached; export -> import -> export is byte-stable."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from curate.core.errors import CurateError
from curate.core.tokenizer import SPECIAL_TOKENS, ByteTokenizer
from train.checkpoint import load_checkpoint, load_checkpoint_tokenizer, load_lm, resolve_checkpoint
from train.export import export_hf

transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-4


def logit_diff(folder, model, ids: torch.Tensor, tokens: int = 380) -> float:
    """Over the source tokenizer's ``tokens`` ids: our special tokens take the rows after them."""
    ours, _ = load_lm(f"hf:{folder}")
    with torch.no_grad():
        return float((ours(ids)[0][..., :tokens] - model(ids).logits[..., :tokens]).abs().max())


@pytest.mark.parametrize(
    "arch, overrides",
    [
        ("llama", {}),
        ("llama", {"tie_word_embeddings": True, "num_key_value_heads": 1, "rope_theta": 500000.0}),
        ("mistral", {}),
        ("qwen2", {"tie_word_embeddings": True}),
    ],
)
def test_transformers_model_gives_the_same_logits(hf_llama, arch, overrides, texts):
    folder, model = hf_llama(arch, **overrides)
    tok = load_checkpoint_tokenizer(resolve_checkpoint(f"hf:{folder}"))
    ids = torch.tensor([tok.encode(" ".join(texts))[:90]])
    assert logit_diff(folder, model, ids) <= TOLERANCE


def test_the_tokenizer_is_the_sources_plus_our_special_tokens(hf_llama, texts):
    folder, model = hf_llama()
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    step = resolve_checkpoint(f"hf:{folder}")
    ours = load_checkpoint_tokenizer(step)
    for text in texts:
        assert ours.encode(text) == theirs(text, add_special_tokens=False)["input_ids"]
    ids = [ours.token_id(t) for t in SPECIAL_TOKENS]
    assert ids == list(range(380, 386))  # after the source's 380 tokens (inside its padded 384 rows)
    ckpt = load_checkpoint(step)
    assert ckpt.model_config["vocab_size"] == 386 and ckpt.meta["stage"] == "import"
    embed = ckpt.model_state["tok_emb.weight"]
    source = model.model.embed_tokens.weight.detach()
    assert torch.equal(embed[ours.eot_id], source[1])  # <|endoftext|> starts as BOS
    assert torch.equal(embed[ours.token_id("<|end|>")], source[2])  # <|end|> as EOS
    assert torch.allclose(embed[ours.pad_id], source[:380].mean(0))
    assert torch.equal(embed[:380], source[:380])
    assert any("added curate's special tokens" in n for n in ckpt.meta["import_notes"])


def test_a_tokenizer_with_our_special_tokens_is_kept(hf_llama):
    folder, _ = hf_llama(with_ours=True)
    ckpt = load_checkpoint(f"hf:{folder}")
    assert ckpt.model_config["vocab_size"] == 384 and ckpt.meta["import_notes"] == []


@pytest.mark.parametrize(
    "arch, overrides, message",
    [
        ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "RoPE scaling 'linear'"),
        ("mistral", {"sliding_window": 32}, "sliding-window attention (32 of 96 positions)"),
        ("llama", {"head_dim": 32}, "head_dim 32"),
        ("llama", {"hidden_act": "gelu"}, "activation 'gelu'"),
    ],
)
def test_what_our_model_cannot_represent_is_one_line(hf_llama, arch, overrides, message):
    folder, _ = hf_llama(arch, **overrides)
    with pytest.raises(CurateError) as err:
        resolve_checkpoint(f"hf:{folder}")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_non_zero_qwen2_biases_are_refused(hf_llama):
    folder, _ = hf_llama("qwen2", seed=1)
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    weights["model.layers.1.self_attn.k_proj.bias"] += 0.1
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CurateError, match=r"Qwen2ForCausalLM has a non-zero bias model\.layers\.1\.self_attn\.k_proj"):
        resolve_checkpoint(f"hf:{folder}")


def test_other_architectures_are_one_line(tmp_path):
    folder = tmp_path / "gpt2"
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2)).save_pretrained(folder)
    with pytest.raises(CurateError) as err:
        resolve_checkpoint(f"hf:{folder}")
    assert "architecture GPT2LMHeadModel is not supported" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "no such folder"),
        (lambda d: d.mkdir(), "no config.json"),
        (lambda d: (d.mkdir(), (d / "config.json").write_text("{")), "unreadable"),
    ],
)
def test_bad_folders_are_one_line(tmp_path, setup, message):
    setup(tmp_path / "m")
    with pytest.raises(CurateError, match=message):
        resolve_checkpoint(f"hf:{tmp_path / 'm'}")


def test_a_tokenizer_larger_than_the_embedding_is_refused(hf_llama):
    for with_ours in (True, False):  # whether or not special tokens are appended after its 380 ids
        folder, _ = hf_llama(vocab_size=300, with_ours=with_ours, name=f"hf-{with_ours}")
        with pytest.raises(CurateError, match="the tokenizer has 380 ids but the embedding only 300 rows"):
            resolve_checkpoint(f"hf:{folder}")


def test_pickled_weights_and_missing_tokenizers_are_refused(hf_llama):
    folder, model = hf_llama()
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.model").write_bytes(b"sentencepiece")
    with pytest.raises(CurateError, match="only a SentencePiece tokenizer.model"):
        resolve_checkpoint(f"hf:{folder}")
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(CurateError, match="pickled"):
        resolve_checkpoint(f"hf:{folder}")


def test_the_conversion_is_cached_by_the_source_files(hf_llama, tmp_path):
    folder, _ = hf_llama()
    first = resolve_checkpoint(f"hf:{folder}", cache=tmp_path / "c")
    assert first.parent.parent == tmp_path / "c"
    import train.hf.importer as importer

    with pytest.MonkeyPatch.context() as patch:  # not `monkeypatch`: its undo would drop the cache setting
        patch.setattr(importer, "read_hf_folder", lambda *a: pytest.fail("re-read"))
        assert resolve_checkpoint(f"hf:{folder}", cache=tmp_path / "c") == first
    config = json.loads((folder / "config.json").read_text())
    config["rms_norm_eps"] = 1e-6  # a changed source is converted again
    (folder / "config.json").write_text(json.dumps(config))
    second = resolve_checkpoint(f"hf:{folder}", cache=tmp_path / "c")
    assert second != first and load_checkpoint(second).model_config["norm_eps"] == 1e-6


def _digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    "tokenizer, kind, model",
    [
        ("bpe", "policy", {}),
        ("bpe", "lm", {"tie_embeddings": False, "norm_weight": True}),
        ("bytes", "policy", {}),
        ("bpe", "reward", {}),
    ],
)
def test_export_import_export_is_byte_stable(make_checkpoint, bpe, tmp_path, tokenizer, kind, model):
    tok = bpe if tokenizer == "bpe" else ByteTokenizer()
    ckpt = make_checkpoint(tok, kind=kind, head_bias=0.5 if kind == "reward" else 0.0, **model)
    export_hf(ckpt, tmp_path / "one", max_shard_size="200kB")
    export_hf(f"hf:{tmp_path / 'one'}", tmp_path / "two", max_shard_size="200kB")
    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")
    imported = load_checkpoint(f"hf:{tmp_path / 'one'}")
    original = load_checkpoint(ckpt)
    assert imported.kind == original.kind and imported.meta["training_cutoff"] == original.meta["training_cutoff"]
    assert imported.model_config == {**original.model_config, "tie_embeddings": imported.model_config["tie_embeddings"]}
    for name, tensor in original.model_state.items():
        if name in imported.model_state:
            assert torch.equal(imported.model_state[name], tensor), name


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_attention_heads": 0}, "unusable config.json"),
        ({"num_attention_heads": "x"}, "unusable config.json"),
        ({"hidden_size": None}, "unusable config.json"),
    ],
)
def test_a_broken_config_json_is_one_line(hf_llama, overrides, message):
    folder, _ = hf_llama()
    config = json.loads((folder / "config.json").read_text())
    config.update(overrides)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CurateError) as err:
        resolve_checkpoint(f"hf:{folder}")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_weights_that_disagree_with_the_config_or_are_not_finite_are_refused(hf_llama):
    from safetensors.torch import load_file, save_file

    folder, _ = hf_llama()
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_key_value_heads": 4}))  # weights have 2
    with pytest.raises(CurateError, match=r"k_proj\.weight has shape \(32, 64\), config\.json implies \(64, 64\)"):
        resolve_checkpoint(f"hf:{folder}")
    (folder / "config.json").write_text(json.dumps(config))
    weights = load_file(folder / "model.safetensors")
    weights["model.layers.0.mlp.up_proj.weight"][0, 0] = float("nan")
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CurateError, match="the weights hold NaN or infinite values"):
        resolve_checkpoint(f"hf:{folder}")


def test_a_sentencepiece_style_tokenizer_gives_the_chat_template_our_ids(tmp_path, texts):
    """Metaspace with prepend_scheme "first" (newer Llama/Mistral tokenizer.json files): the
    exported chat template and curate's per-message encoding agree."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from train.chat import encode_prompt

    folder = tmp_path / "sp"
    folder.mkdir()
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    special = ["<unk>", "<s>", "</s>"]
    tok.train_from_iterator(texts * 20, trainers.BpeTrainer(vocab_size=300, special_tokens=special))
    tok.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    cfg = transformers.LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=160, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=96, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    transformers.LlamaForCausalLM(cfg).save_pretrained(folder)
    ours = load_checkpoint_tokenizer(resolve_checkpoint(f"hf:{folder}"))
    export_hf(f"hf:{folder}", tmp_path / "out")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    messages = [{"role": "user", "content": "Hello world, how are you"}]
    ids = theirs.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert list(ids) == encode_prompt(messages, ours)
    assert theirs("Hello world")["input_ids"] == [ours.eot_id, *ours.encode("Hello world")]
