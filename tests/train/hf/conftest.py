"""Fixtures of the Hugging Face conversion tests: tiny random models built locally (never from
the Hub: HF_HUB_OFFLINE is set for every test), a small multilingual BPE tokenizer, curate
checkpoints and ``transformers`` folders of the Llama family."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from curate.core.tokenizer import ByteTokenizer

# Enough scripts, digits, punctuation and whitespace runs to exercise byte-level BPE.
MULTILINGUAL = [
    "The quick brown fox jumps over the lazy dog. It's 12:45, isn't it?",
    "Ça va très bien, merci ! L'été à Paris coûte 3,50 €.",
    "Grüße aus München: Straße, Maß und Fußgänger.",
    "Привет, мир! Как дела? Всё хорошо.",
    "你好，世界。我们今天学习自然语言处理。",
    "日本語のテキストも少し：こんにちは、元気ですか？",
    "مرحبا بالعالم، كيف حالك؟",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "Emoji 🙂👍🏽 and math: ∑ x² ≤ ∞.",
    "def f(x):\n\treturn x  *  2   # spaces\n\n",
]
SAMPLE = " ".join(MULTILINGUAL) + " <|user|>spelled<|end|> special tokens <|endoftext|>!"


@pytest.fixture
def texts() -> list[str]:
    """MULTILINGUAL: the tests' text sample (tests do not import each other)."""
    return list(MULTILINGUAL)


@pytest.fixture
def sample() -> str:
    """All of MULTILINGUAL in one string, with special tokens spelled out in it."""
    return SAMPLE


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test may reach the Hub; hf:DIR conversions outside a run go to a per-test cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("CURATE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def bpe_dir(tmp_path_factory) -> Path:
    """A byte-level BPE (curate's own, special tokens reserved) trained on MULTILINGUAL."""
    from curate.stages.tokenize import train_bpe

    out = tmp_path_factory.mktemp("bpe")
    train_bpe(iter(MULTILINGUAL * 20), out, vocab_size=420, min_frequency=1)
    return out


@pytest.fixture
def bpe(bpe_dir):
    from curate.core.tokenizer import BPETokenizer

    return BPETokenizer(bpe_dir)


@pytest.fixture
def make_checkpoint(tmp_path):
    """``make_checkpoint(tokenizer, kind="policy", seed=0, meta=None, head_bias=0.0, **model)``:
    a random-weight curate checkpoint (default: GQA, tied, gain-free norms). Reward checkpoints
    get a random head. Returns the step directory."""
    from train.align.reward import ScalarHeadModel
    from train.checkpoint import save_checkpoint
    from train.model import GPT, GPTConfig

    def build(tokenizer=None, kind="policy", seed=0, meta=None, head_bias=0.0, name="run", **model):
        tokenizer = tokenizer or ByteTokenizer()
        settings = dict(block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=64, rope_theta=5000.0)
        cfg = GPTConfig(vocab_size=tokenizer.vocab_size, **{**settings, **model})
        torch.manual_seed(seed)
        if kind == "reward":
            net = ScalarHeadModel(cfg)
            torch.nn.init.normal_(net.head.weight, std=0.5)
            net.head.bias.data.fill_(head_bias)
            state = net.export_state()
        else:
            net = GPT(cfg)
            state = net.state_dict()
        if cfg.norm_weight:  # gains that are not all one, so a lost gain would show
            for key, value in state.items():
                if key.endswith("norm.weight") or key.endswith("norm_f.weight"):
                    value.data.uniform_(0.5, 1.5)
        meta = {
            "stage": "sft",
            "training_cutoff": {"max": "2024-05-01", "p99": "2024-04-20"},
            "mix_manifest_sha256": "ab" * 32,
            "parent": "/runs/base/step-000100",
            "parent_stage": "pretrain",
            **(meta or {}),
        }
        bpe_or_bytes = None if isinstance(tokenizer, ByteTokenizer) else tokenizer
        return save_checkpoint(
            tmp_path / name,
            12,
            model_state=state,
            model_config=cfg.to_dict(),
            meta=meta,
            kind=kind,
            tokenizer=bpe_or_bytes,
        )

    return build


@pytest.fixture(scope="session")
def trained(tmp_path_factory, bpe_dir) -> Path:
    """A small model that has learned MULTILINGUAL by heart (150 steps, a few seconds): its
    greedy continuations depend on attention and positions, so a RoPE layout error shows."""
    from curate.core.tokenizer import BPETokenizer
    from train.checkpoint import save_checkpoint
    from train.model import GPT, GPTConfig

    tok = BPETokenizer(bpe_dir)
    torch.manual_seed(3)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=64)
    model = GPT(cfg)
    seq = torch.tensor([tok.eot_id] + tok.encode(" ".join(MULTILINGUAL)))
    batch = torch.stack([seq[s : s + 33] for s in range(0, len(seq) - 33, 8)])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        model(batch[:, :-1], batch[:, 1:])[1].backward()
        opt.step()
        opt.zero_grad()
    out = tmp_path_factory.mktemp("trained") / "run"
    meta = {"stage": "pretrain", "training_cutoff": {"max": "2024-05-01"}}
    return save_checkpoint(
        out, 150, model_state=model.state_dict(), model_config=cfg.to_dict(), meta=meta, tokenizer=tok
    )


def foreign_tokenizer(folder: Path, with_ours: bool = False) -> None:
    """A Llama-style tokenizer.json (<unk>, <s>, </s> first) trained on MULTILINGUAL, with or
    without curate's special tokens, and a tokenizer_config.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from curate.core.tokenizer import SPECIAL_TOKENS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<s>", "</s>"] + (SPECIAL_TOKENS if with_ours else [])
    trainer = trainers.BpeTrainer(
        vocab_size=380,
        min_frequency=1,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(MULTILINGUAL * 20, trainer=trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


@pytest.fixture
def hf_llama(tmp_path):
    """``hf_llama(arch="llama", name="hf", with_ours=False, **config)``: a tiny random
    ``transformers`` model (GQA by default) saved with save_pretrained, plus a tokenizer."""
    transformers = pytest.importorskip("transformers")

    def build(arch="llama", name="hf", with_ours=False, seed=0, **overrides):
        classes = {
            "llama": ("LlamaConfig", "LlamaForCausalLM"),
            "mistral": ("MistralConfig", "MistralForCausalLM"),
            "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
        }
        config_cls, model_cls = (getattr(transformers, n) for n in classes[arch])
        settings = dict(
            vocab_size=384,  # a few rows past the tokenizer's 380: a padded vocabulary
            hidden_size=64,
            intermediate_size=160,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=96,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
        )
        if arch == "mistral":
            settings["sliding_window"] = None
        torch.manual_seed(seed)
        model = model_cls(config_cls(**{**settings, **overrides})).eval()
        with torch.no_grad():  # gains that are not all one
            for pname, param in model.named_parameters():
                if "norm" in pname:
                    param.uniform_(0.5, 1.5)
        folder = tmp_path / name
        model.save_pretrained(folder)
        foreign_tokenizer(folder, with_ours=with_ours)
        return folder, model

    return build
