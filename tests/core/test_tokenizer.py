"""curate.core.tokenizer: the byte fallback and its special tokens."""

from __future__ import annotations

import pytest

from curate.core.errors import ConfigError
from curate.core.tokenizer import SPECIAL_TOKENS, ByteTokenizer, load_tokenizer


def test_byte_tokenizer_roundtrip_and_specials():
    tok = load_tokenizer(None)
    assert isinstance(tok, ByteTokenizer) and tok.vocab_size == 256 + len(SPECIAL_TOKENS)
    text = "naïve café – 東京"
    ids = tok.encode(text)
    assert len(ids) == len(text.encode()) and tok.count([text]) == [len(ids)]
    assert tok.decode(ids + [tok.eot_id] + ids) == text + "<|endoftext|>" + text
    assert tok.eot_id == 256 and tok.pad_id == 257
    with pytest.raises(ConfigError):
        tok.token_id("<|nope|>")
