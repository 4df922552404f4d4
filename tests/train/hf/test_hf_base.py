"""Post-training a transformers base: `--base hf:DIR` (sft, reward), `--policy hf:DIR` (dpo,
rlhf), `generate hf:DIR`, `sample-pairs` and `score` through the one resolver; the converted
base is cached under the run (OUT/.curate/base/) and not converted again on a rerun; a reward
model trained here goes out as LlamaForSequenceClassification and back in as `--reward hf:`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import cli
from train.checkpoint import load_checkpoint, resolve_checkpoint

pytest.importorskip("transformers")

SAMPLES = Path(__file__).resolve().parents[3] / "samples"
COMMON = ["--device", "cpu", "--quiet", "--lr", "3e-3", "--batch-size", "2"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_post_training_a_transformers_base(hf_llama, tmp_path):
    folder, _ = hf_llama(max_position_embeddings=128)
    base = f"hf:{folder}"
    qa = SAMPLES / "sft" / "qa.jsonl"
    r = invoke("train", "sft", "--base", base, "--data", qa, "-o", tmp_path / "sft", "--steps", "2", *COMMON)
    assert r.exit_code == 0, r.output
    assert "added curate's special tokens" in r.output
    cached = list((tmp_path / "sft" / ".curate" / "base").glob("hf-*/step-000000"))
    assert len(cached) == 1
    sft = load_checkpoint(tmp_path / "sft")
    assert sft.meta["parent"] == str(cached[0]) and sft.meta["parent_stage"] == "import"

    # a rerun (here: resuming to more steps) reads the converted base, not the source
    import train.hf.importer as importer

    with pytest.MonkeyPatch.context() as patch:  # not `monkeypatch`: its undo would drop the cache setting
        patch.setattr(importer, "read_hf_folder", lambda *a: pytest.fail("converted again"))
        r = invoke("train", "sft", "--base", base, "--data", qa, "-o", tmp_path / "sft", "--steps", "3", *COMMON)
    assert r.exit_code == 0 and "steps 2 -> 3" in r.output, r.output

    r = invoke("generate", base, "Hello", "-n", "4", "--temperature", "0", "--device", "cpu")
    assert r.exit_code == 0, r.output
    r = invoke("generate", base, "Hello", "-n", "4", "--chat", "--temperature", "0", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert list((tmp_path / "cache" / "hf").glob("hf-*/step-000000"))  # outside a run: the user cache

    comparisons = SAMPLES / "comparisons.jsonl"
    r = invoke("train", "reward", "--base", base, "--data", comparisons, "-o", tmp_path / "rm", "--steps", "2", *COMMON)
    assert r.exit_code == 0, r.output
    r = invoke(
        "train",
        "dpo",
        "--policy",
        base,
        "--ref",
        base,
        "--data",
        comparisons,
        "-o",
        tmp_path / "dpo",
        "--steps",
        "2",
        *COMMON,
    )
    assert r.exit_code == 0, r.output
    assert list((tmp_path / "dpo" / ".curate" / "base").glob("hf-*/step-000000"))

    # the reward model goes out as a sequence classifier and comes back in as --reward hf:
    r = invoke("export", "hf", tmp_path / "rm", "-o", tmp_path / "rm-hf")
    assert r.exit_code == 0 and "LlamaForSequenceClassification" in r.output, r.output
    r = invoke("train", "score", f"hf:{tmp_path / 'rm-hf'}", "--data", comparisons, "--device", "cpu")
    assert r.exit_code == 0, r.output
    r = invoke(
        "train", "rlhf", "--policy", base, "--reward", f"hf:{tmp_path / 'rm-hf'}", "--prompts", SAMPLES / "prompts.jsonl",
        "-o", tmp_path / "rlhf", "--algo", "rloo", "--steps", "1", "--max-new-tokens", "4", "--rloo-k", "2",
        "--set", "eval_samples=1", *COMMON,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "rlhf" / ".curate" / "base").glob("*/step-*"))) == 2  # policy and reward model
    r = invoke(
        "train",
        "sample-pairs",
        "--model",
        base,
        "--prompts",
        SAMPLES / "prompts.jsonl",
        "-o",
        tmp_path / "p.parquet",
        "-n",
        "3",
        "--device",
        "cpu",
    )
    assert r.exit_code == 0, r.output


def test_unsupported_base_is_one_line(tmp_path):
    import transformers

    folder = tmp_path / "gpt2"
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2)).save_pretrained(folder)
    r = invoke(
        "train", "sft", "--base", f"hf:{folder}", "--data", SAMPLES / "sft" / "qa.jsonl", "-o", tmp_path / "o", *COMMON
    )
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        f"error: hf:{folder}: architecture GPT2LMHeadModel is not supported "
        "(curate imports Llama, Mistral (no sliding window), Qwen2 (zero biases), SmolLM, TinyLlama)"
    ]


def test_eval_scores_a_transformers_base(hf_llama, tmp_path):
    folder, _ = hf_llama(max_position_embeddings=128)
    out = tmp_path / "eval.json"
    r = invoke("eval", f"hf:{folder}", "--tasks", "copa", "--limit", "4", "--no-bpb", "--device", "cpu", "-o", out)
    assert r.exit_code == 0, r.output
    results = json.loads(out.read_text())
    copa = results["tasks"]["copa"]
    assert copa["n"] == 4 and 0.0 <= copa["acc"] <= 1.0
    assert results["checkpoint"]  # the converted base is named in the results
    # the same model evaluated from its converted folder scores the same
    step = resolve_checkpoint(f"hf:{folder}")
    again = tmp_path / "again.json"
    r = invoke("eval", step, "--tasks", "copa", "--limit", "4", "--no-bpb", "--device", "cpu", "-o", again)
    assert r.exit_code == 0, r.output
    assert json.loads(again.read_text())["tasks"]["copa"] == copa
