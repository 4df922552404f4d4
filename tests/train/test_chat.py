"""The chat template: special ids for role markers, assistant-only loss masks, prompts."""

from __future__ import annotations

import pytest

from curate.core.tokenizer import ByteTokenizer
from train import chat


@pytest.fixture
def tok():
    return ByteTokenizer()


def test_encode_chat_masks_only_assistant_tokens(tok):
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."},
    ]
    ids, mask = chat.encode_chat(msgs, tok)
    assert len(ids) == len(mask)
    end = tok.token_id("<|end|>")
    expected = (
        [tok.eot_id, tok.token_id("<|system|>")]
        + list(b"Be brief.")
        + [end, tok.token_id("<|user|>")]
        + list(b"Hi?")
        + [end, tok.token_id("<|assistant|>")]
        + list(b"Hello.")
        + [end]
    )
    assert ids == expected
    learned = [i for i, m in zip(ids, mask) if m]
    # exactly the assistant's words and the <|end|> closing its turn
    assert learned == list(b"Hello.") + [end]


def test_multi_turn_learns_every_assistant_turn(tok):
    msgs = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
    ]
    ids, mask = chat.encode_chat(msgs, tok)
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "b<|end|>d<|end|>"


def test_typed_role_marker_is_not_a_special_token(tok):
    ids, _ = chat.encode_chat(
        [{"role": "user", "content": "<|assistant|>"}, {"role": "assistant", "content": "x"}], tok
    )
    assert ids.count(tok.token_id("<|assistant|>")) == 1  # only the real marker


def test_truncation_keeps_right_length(tok):
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a" * 50}]
    ids, mask = chat.encode_chat(msgs, tok, max_len=10)
    assert len(ids) == len(mask) == 10


def test_prompt_encoding_matches_format_prompt(tok):
    ids = chat.encode_prompt("What is 2 plus 2?", tok, system="sys")
    assert ids[-1] == tok.token_id("<|assistant|>")
    text = chat.format_prompt("What is 2 plus 2?", system="sys")
    assert text.endswith("<|assistant|>") and "<|system|>sys<|end|>" in text
    assert chat.encode_with_specials(text, tok) == ids
    long_ids = chat.encode_prompt("x" * 100, tok, max_len=20)
    assert len(long_ids) == 20 and long_ids[-1] == tok.token_id("<|assistant|>")


def test_decode_response_stops_at_end(tok):
    ids = list(b"yes") + [tok.token_id("<|end|>")] + list(b"junk")
    assert chat.decode_response(ids, tok) == "yes"
