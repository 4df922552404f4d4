"""`curate export hf | gguf`: the summary line, and one-line errors (exit 2) for every mistake."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from curate.cli import cli


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CURATE_CACHE_DIR", str(tmp_path / "cache"))


def invoke(*args):
    return CliRunner().invoke(cli, ["export", *[str(a) for a in args]], catch_exceptions=False)


def one_line_error(result, text: str, code: int = 2) -> None:
    lines = result.output.strip().splitlines()
    assert result.exit_code == code and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert text in lines[0], lines[0]


@pytest.fixture
def bpe_checkpoint(tmp_path, tiny_checkpoint):
    """A tiny checkpoint with a trained BPE tokenizer (GGUF needs one)."""
    import torch

    from curate.stages.tokenize import train_bpe
    from train.checkpoint import save_checkpoint
    from train.model import GPT, GPTConfig

    tok = train_bpe(iter(["hello world, bonjour le monde"] * 20), tmp_path / "tok", vocab_size=280, min_frequency=1)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32)
    torch.manual_seed(0)
    state = GPT(cfg).state_dict()
    return save_checkpoint(tmp_path / "bpe", 1, model_state=state, model_config=cfg.to_dict(), meta={}, tokenizer=tok)


def test_exports_print_one_summary_line(bpe_checkpoint, tmp_path):
    r = invoke("hf", bpe_checkpoint, "-o", tmp_path / "out")
    assert r.exit_code == 0 and "export hf: LlamaForCausalLM, 1 weight file(s)" in r.output, r.output
    assert (tmp_path / "out" / "config.json").exists()
    pytest.importorskip("gguf")
    r = invoke("gguf", bpe_checkpoint, "-o", tmp_path / "m.gguf", "--type", "q8_0")
    assert r.exit_code == 0 and "export gguf: 11 tensors (q8_0)" in r.output, r.output


def test_mistakes_are_one_line(bpe_checkpoint, tiny_checkpoint, tmp_path):
    one_line_error(invoke("hf", tmp_path / "missing", "-o", tmp_path / "o"), "no such checkpoint or run directory")
    one_line_error(invoke("hf", f"hf:{tmp_path / 'nowhere'}", "-o", tmp_path / "o"), "no such folder")
    one_line_error(invoke("hf", bpe_checkpoint, "-o", tmp_path / "o", "--max-shard-size", "5XB"), "unknown size unit")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    one_line_error(invoke("hf", bpe_checkpoint, "-o", tmp_path / "notes"), "exists; pass --overwrite")
    one_line_error(
        invoke("hf", bpe_checkpoint, "-o", tmp_path / "notes", "--overwrite"), "not an exported model folder"
    )
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    assert invoke("hf", bpe_checkpoint, "-o", tmp_path / "o").exit_code == 0
    one_line_error(invoke("hf", bpe_checkpoint, "-o", tmp_path / "o"), "exists; pass --overwrite")
    assert invoke("hf", bpe_checkpoint, "-o", tmp_path / "o", "--overwrite").exit_code == 0
    pytest.importorskip("gguf")
    byte_model = tiny_checkpoint(tmp_path / "bytes")
    one_line_error(invoke("gguf", byte_model, "-o", tmp_path / "b.gguf"), "byte tokenizer has no BPE merges")
    rm = tiny_checkpoint(tmp_path / "rm", kind="reward")
    one_line_error(invoke("gguf", rm, "-o", tmp_path / "r.gguf"), "is a reward model")


def test_missing_optional_package_is_one_line(bpe_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)
    one_line_error(invoke("gguf", bpe_checkpoint, "-o", tmp_path / "m.gguf"), "pip install -e '.[hf]'")
