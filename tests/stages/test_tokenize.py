"""curate.stages.tokenize: BPE training from sources, special tokens, loading the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.core.errors import ConfigError, InputError
from curate.core.tokenizer import SPECIAL_TOKENS, BPETokenizer, load_tokenizer
from curate.runtime.stage import StageContext
from curate.stages import tokenize
from curate.stages.tokenize import train_bpe, train_from_paths

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok")
    stats = train_from_paths([str(SAMPLES / "books"), str(SAMPLES / "papers")], out, vocab_size=600)
    assert stats["docs"] == 11 and stats["bytes_per_token"] > 1.5
    return out


def test_bpe_trained_from_sources(bpe_dir):
    tok = load_tokenizer(bpe_dir)
    assert isinstance(tok, BPETokenizer) and tok.vocab_size == 600
    text = "The forecast reduced the mean absolute error. ünïcödé 🙂"
    ids = tok.encode(text)
    assert tok.decode(ids) == text  # byte-level: every string round-trips
    assert len(ids) < len(text.encode())  # and it compresses text it has seen
    # Special tokens are single ids, shared with the chat templates.
    for special in SPECIAL_TOKENS:
        assert tok.encode(special) == [tok.token_id(special)]
    assert tok.eot_id != tok.pad_id
    info = tok.describe()
    assert info["vocab_size"] == 600 and len(info["sha256"]) == 64
    config = json.loads((bpe_dir / "tokenizer_config.json").read_text())
    assert config["special_tokens"] == SPECIAL_TOKENS
    assert tok.count([text, "abc"]) == [len(ids), len(tok.encode("abc"))]


def test_training_caps_and_errors(tmp_path):
    stats = train_from_paths([str(SAMPLES / "conversations")], tmp_path / "a", vocab_size=300, max_docs=5)
    assert stats["docs"] == 5
    stats = train_from_paths([str(SAMPLES / "books")], tmp_path / "b", vocab_size=300, max_chars=1000)
    assert stats["chars"] == 1000 and stats["docs"] == 1
    with pytest.raises(ConfigError, match="too small"):
        train_bpe(iter(["x"]), tmp_path / "c", vocab_size=100)
    with pytest.raises(InputError, match="no tokenizer.json"):
        load_tokenizer(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.jsonl").write_text('{"text": ""}\n')
    with pytest.raises(InputError, match="no documents"):
        train_from_paths([str(empty)], tmp_path / "d", vocab_size=300)
    assert not (tmp_path / "d" / "tokenizer.json").exists()


def test_run_is_the_stage_entry_point(tmp_path):
    cfg = tokenize.TokenizeConfig(vocab_size=300, max_docs=3)
    stats = tokenize.run(cfg.validate(), StageContext([str(SAMPLES / "papers")], str(tmp_path / "tok")))
    assert stats["docs"] == 3 and stats["vocab_size"] == 300
    assert load_tokenizer(tmp_path / "tok").vocab_size == 300
    with pytest.raises(ConfigError, match="vocab_size must be at least 262"):
        tokenize.TokenizeConfig(vocab_size=10).validate()
    with pytest.raises(ConfigError, match="max_docs must be at least 1"):
        tokenize.TokenizeConfig(max_docs=0).validate()
    with pytest.raises(ConfigError, match="unknown format"):
        tokenize.TokenizeConfig(format="pdf").validate()


def test_settings_are_checked_when_built():
    from curate.core.config import from_dict

    # Built from a table (the pipeline's [tokenizer]) or in code: checked at once, same messages.
    with pytest.raises(ConfigError, match=r"\[tokenizer\]: max_chars must be at least 1, got -5"):
        from_dict(tokenize.TokenizeConfig, {"max_chars": -5}, where="[tokenizer]")
    with pytest.raises(ConfigError, match="min_frequency must be at least 1"):
        tokenize.TokenizeConfig(min_frequency=-1)
    assert set(tokenize.TokenizeConfig.bounds) == {"vocab_size", "min_frequency", "max_docs", "max_chars"}
