"""train/generate.py and `curate generate`: seeded sampling, greedy decoding, chat, errors."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from curate.cli import cli
from curate.core.tokenizer import ByteTokenizer
from train.checkpoint import save_checkpoint
from train.generate import generate_text
from train.model import GPT, GPTConfig


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A small model taught to continue "ab" with "cdcdcd...": enough structure that greedy
    output is predictable, while sampling still varies."""
    torch.manual_seed(0)
    tok = ByteTokenizer()
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    seq = torch.tensor([[tok.eot_id] + list(b"abcdcdcdcdcdcdcdcdcd")])
    for _ in range(60):
        loss = model(seq[:, :-1], seq[:, 1:])[1]
        loss.backward()
        opt.step()
        opt.zero_grad()
    run = tmp_path_factory.mktemp("gen") / "run"
    save_checkpoint(run, 60, model_state=model.state_dict(), model_config=model.config.to_dict(), meta={})
    return run


def test_greedy_generation_follows_what_the_model_learned(ckpt):
    out = generate_text(ckpt, "ab", max_new_tokens=8, temperature=0, device="cpu")
    assert out.completions == ["cdcdcdcd"]
    assert out.prompt_tokens == 3  # <|endoftext|> + "ab"


def test_cli_generation_is_reproducible_with_a_seed(ckpt):
    def run(*extra):
        result = CliRunner().invoke(
            cli,
            [
                "generate",
                str(ckpt),
                "xy",
                "-n",
                "24",
                "--temperature",
                "2.0",
                "--top-k",
                "0",
                "--device",
                "cpu",
                *extra,
            ],
        )
        assert result.exit_code == 0, result.output
        return result.output

    assert run("--seed", "3") == run("--seed", "3")
    assert run("--seed", "3") != run("--seed", "4")
    samples = run("--seed", "5", "--num-samples", "3")
    assert samples.count("--- sample") == 3


def test_top_p_and_echo(ckpt):
    result = CliRunner().invoke(
        cli, ["generate", str(ckpt), "ab", "-n", "6", "--top-p", "0.5", "--seed", "1", "--device", "cpu", "--echo"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ab")


def test_chat_mode_wraps_the_prompt_in_the_template(ckpt):
    out = generate_text(ckpt, "hello", max_new_tokens=5, temperature=0, chat=True, device="cpu")
    tok = ByteTokenizer()
    # <|endoftext|><|user|>hello<|end|><|assistant|>
    assert out.prompt_tokens == 1 + 1 + len("hello") + 1 + 1
    assert tok.token_id("<|end|>") != tok.eot_id
    assert len(out.completions) == 1


def test_errors_are_one_line(tmp_path, ckpt):
    result = CliRunner().invoke(cli, ["generate", str(tmp_path / "none"), "hi"])
    assert result.exit_code == 2 and "no such checkpoint" in result.output
    result = CliRunner().invoke(cli, ["generate", str(tmp_path), "hi"])
    assert result.exit_code == 2 and "holds no checkpoint" in result.output
    result = CliRunner().invoke(cli, ["generate", str(ckpt), "hi", "--device", "tpu"])
    assert result.exit_code == 2 and "unknown device" in result.output
