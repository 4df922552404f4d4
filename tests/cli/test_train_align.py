"""CLI smoke test of the whole alignment chain on the project's samples:
base (random init) -> sft -> sample-pairs -> reward -> score -> rlhf (ppo, rloo) -> dpo,
plus one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import torch
from click.testing import CliRunner

from curate.cli import cli
from curate.core.comparisons import PAIRS_SCHEMA
from curate.core.tokenizer import ByteTokenizer
from train.checkpoint import load_checkpoint, save_checkpoint
from train.model import GPT, GPTConfig

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def test_alignment_chain_on_samples(tmp_path):
    cfg = GPTConfig(vocab_size=ByteTokenizer().vocab_size, block_size=96, n_layer=1, n_head=2, n_embd=32)
    torch.manual_seed(0)
    base = save_checkpoint(
        tmp_path / "base",
        0,
        model_state=GPT(cfg).state_dict(),
        model_config=cfg.to_dict(),
        meta={"stage": "pretrain", "training_cutoff": "2026-06-30"},
        kind="lm",
    )
    common = ["--device", "cpu", "--quiet", "--lr", "3e-3"]

    r = invoke(
        "train",
        "sft",
        "--base",
        base,
        "--data",
        SAMPLES / "sft" / "qa.jsonl",
        "-o",
        tmp_path / "sft",
        "--steps",
        "4",
        "--batch-size",
        "4",
        *common,
    )
    assert r.exit_code == 0, r.output
    assert "sft: steps 0 -> 4 of 4" in r.output and "checkpoint:" in r.output
    sft_ckpt = load_checkpoint(tmp_path / "sft")
    assert sft_ckpt.kind == "policy" and sft_ckpt.meta["training_cutoff"] == "2026-06-30"

    pairs = tmp_path / "pairs.parquet"
    r = invoke(
        "train",
        "sample-pairs",
        "--model",
        tmp_path / "sft",
        "--prompts",
        SAMPLES / "prompts.jsonl",
        "-o",
        pairs,
        "-n",
        "8",
        "--device",
        "cpu",
    )
    assert r.exit_code == 0, r.output
    table = pq.read_table(pairs)
    assert table.schema.names == PAIRS_SCHEMA.names and table.num_rows > 40
    assert len(set(table.column("pair_id").to_pylist())) == table.num_rows

    r = invoke(
        "train",
        "reward",
        "--base",
        tmp_path / "sft",
        "--data",
        SAMPLES / "comparisons.jsonl",
        "-o",
        tmp_path / "rm",
        "--steps",
        "4",
        "--batch-size",
        "4",
        *common,
    )
    assert r.exit_code == 0, r.output
    assert "val_accuracy" in r.output
    assert load_checkpoint(tmp_path / "rm").kind == "reward"

    r = invoke(
        "train",
        "score",
        tmp_path / "rm",
        "--data",
        SAMPLES / "comparisons.jsonl",
        "--device",
        "cpu",
        "-o",
        tmp_path / "scored.jsonl",
    )
    assert r.exit_code == 0, r.output
    assert "120 comparisons row(s)" in r.output
    assert len((tmp_path / "scored.jsonl").read_text().splitlines()) == 120

    for algo in ("ppo", "rloo"):
        r = invoke(
            "train",
            "rlhf",
            "--policy",
            tmp_path / "sft",
            "--reward",
            tmp_path / "rm",
            "--prompts",
            SAMPLES / "prompts.jsonl",
            "-o",
            tmp_path / algo,
            "--algo",
            algo,
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--max-new-tokens",
            "6",
            "--rloo-k",
            "2",
            "--kl-estimator",
            "k3",
            "--set",
            "eval_samples=1",
            *common,
        )
        assert r.exit_code == 0, r.output
        log = [json.loads(line) for line in (tmp_path / algo / "metrics.jsonl").read_text().splitlines()]
        assert log[-1]["step"] == 2 and {"score", "kl", "entropy", "response_len"} <= set(log[-1])
        assert load_checkpoint(tmp_path / algo).meta["reward"].endswith("rm")

    r = invoke(
        "train",
        "dpo",
        "--policy",
        tmp_path / "sft",
        "--data",
        SAMPLES / "comparisons.jsonl",
        "-o",
        tmp_path / "dpo",
        "--beta",
        "0.1",
        "--loss",
        "ipo",
        "--steps",
        "3",
        "--batch-size",
        "4",
        *common,
    )
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "dpo").meta["loss_type"] == "ipo"

    # rerunning a finished stage resumes and finds nothing to do
    r = invoke(
        "train",
        "dpo",
        "--policy",
        tmp_path / "sft",
        "--data",
        SAMPLES / "comparisons.jsonl",
        "-o",
        tmp_path / "dpo",
        "--beta",
        "0.1",
        "--loss",
        "ipo",
        "--steps",
        "3",
        "--batch-size",
        "4",
        *common,
    )
    assert r.exit_code == 0 and "nothing to do" in r.output


def test_cli_errors_are_one_line(tmp_path):
    r = invoke(
        "train",
        "sft",
        "--base",
        tmp_path / "missing",
        "--data",
        SAMPLES / "sft" / "qa.jsonl",
        "-o",
        tmp_path / "out",
        "--device",
        "cpu",
    )
    assert r.exit_code == 2 and r.output.startswith("error: ") and "Traceback" not in r.output
    r = invoke(
        "train",
        "dpo",
        "--policy",
        tmp_path,
        "--data",
        SAMPLES / "comparisons.jsonl",
        "-o",
        tmp_path / "o",
        "--set",
        "bogus_key=1",
    )
    assert r.exit_code == 2 and "unknown key 'bogus_key'" in r.output
    cfg = GPTConfig(vocab_size=ByteTokenizer().vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32)
    lm = save_checkpoint(tmp_path / "lm", 0, model_state=GPT(cfg).state_dict(), model_config=cfg.to_dict(), meta={})
    r = invoke("train", "score", lm, "--data", SAMPLES / "comparisons.jsonl", "--device", "cpu")
    assert r.exit_code == 2 and "not a reward model" in r.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    r = invoke("train", "reward", "--base", lm, "--data", bad, "-o", tmp_path / "rm", "--device", "cpu")
    assert r.exit_code == 2 and "no usable comparisons" in r.output and "invalid JSON" in r.output
