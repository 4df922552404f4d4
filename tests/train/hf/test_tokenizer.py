"""The exported tokenizer: AutoTokenizer gives our ids on a multilingual sample (special tokens
included), for the trained BPE and for the byte tokenizer; its chat template renders the ids
`curate generate --chat` and SFT feed the model."""

from __future__ import annotations

import pytest

from curate.core.tokenizer import SPECIAL_TOKENS, ByteTokenizer
from train import chat
from train.export import export_hf

transformers = pytest.importorskip("transformers")

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Réponds en français."}, {"role": "user", "content": "Capitale ?"}],
    [
        {"role": "user", "content": "Привет! Как дела?"},
        {"role": "assistant", "content": "Хорошо, спасибо. 你好！"},
        {"role": "user", "content": "  spaces\tand\nnewlines  "},
    ],
]


@pytest.fixture(params=["bpe", "bytes"])
def exported(request, make_checkpoint, bpe, tmp_path):
    """(our tokenizer, AutoTokenizer of the export) for each kind of tokenizer."""
    ours = bpe if request.param == "bpe" else ByteTokenizer()
    ckpt = make_checkpoint(ours)
    export_hf(ckpt, tmp_path / "out")
    return ours, transformers.AutoTokenizer.from_pretrained(tmp_path / "out")


def test_same_ids_on_a_multilingual_sample(exported, texts):
    ours, theirs = exported
    for text in texts:
        ids = ours.encode(text)
        assert theirs(text, add_special_tokens=False)["input_ids"] == ids, text
        assert theirs(text)["input_ids"] == [ours.eot_id] + ids  # what `curate generate` feeds
        assert theirs.decode(ids) == ours.decode(ids) == text
    if isinstance(ours, ByteTokenizer):
        assert ours.encode(texts[4]) == list(texts[4].encode())  # bytes are ids 0..255


def test_special_tokens_have_our_ids(exported, sample):
    ours, theirs = exported
    for token in SPECIAL_TOKENS:
        assert theirs.convert_tokens_to_ids(token) == ours.token_id(token)
    assert theirs.bos_token_id == theirs.eos_token_id == ours.eot_id
    assert theirs.pad_token_id == ours.pad_id
    if not isinstance(ours, ByteTokenizer):
        # spelled-out special tokens in text are special ids for both (byte tokenizer: see chat.py)
        assert theirs(sample, add_special_tokens=False)["input_ids"] == ours.encode(sample)
    ids = theirs(sample)["input_ids"]
    assert theirs.decode(ids, skip_special_tokens=True).strip() != ""


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_chat_template_renders_what_curate_feeds(exported, messages):
    ours, theirs = exported

    def hf_ids(generation_prompt: bool) -> list[int]:
        out = theirs.apply_chat_template(messages, add_generation_prompt=generation_prompt, return_dict=True)
        return list(out["input_ids"])

    # generate --chat: train.generate encodes the prompt with chat.encode_prompt
    assert hf_ids(True) == chat.encode_prompt(messages, ours)
    # SFT / reward / DPO: the whole conversation
    assert hf_ids(False) == chat.encode_chat(messages, ours)[0]
    text = theirs.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == chat.render(messages, add_generation_prompt=True)


def test_generate_system_option_matches_a_system_message(exported):
    ours, theirs = exported
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    out = theirs.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
    assert list(out["input_ids"]) == chat.encode_prompt("Hi", ours, system="Be brief.")


def test_chat_template_refuses_unknown_roles(exported):
    _, theirs = exported
    with pytest.raises(Exception, match="roles are system, user, assistant"):
        theirs.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)
