"""Faults in training, end to end through the CLI: values that cannot train, a model that
cannot fit, a run that goes NaN, a checkpoint holding NaN, a second run into the same output,
a kill before the first checkpoint. Each is one line (never a traceback) with its exit code,
and leaves nothing half-written behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import train.align.stage as stage_module
from curate.cli import cli
from curate.core.tokenizer import ByteTokenizer
from train.align.reward import ScalarHeadModel
from train.checkpoint import WEIGHTS_FILE, list_step_dirs, load_checkpoint, save_checkpoint
from train.model import GPT, GPTConfig

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
ENV = {**os.environ, "CURATE_PROGRESS": "0", "PYTHONPATH": str(ROOT)}
FAST = ["--device", "cpu", "--quiet", "--batch-size", "2"]


def one_line_error(result) -> str:
    """The output of a failed command: one line, ``error: ...``, no traceback (``note:`` lines
    about the input may come before it)."""
    text = result.output if hasattr(result, "output") else result.stderr.decode()
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny policy and a reward model with its head (random weights, byte tokenizer)."""
    root = tmp_path_factory.mktemp("models")
    cfg = GPTConfig(vocab_size=ByteTokenizer().vocab_size, block_size=96, n_layer=1, n_head=2, n_embd=32)
    torch.manual_seed(0)
    policy = save_checkpoint(
        root / "policy", 0, model_state=GPT(cfg).state_dict(), model_config=cfg.to_dict(), meta={"stage": "sft"}
    )
    reward = save_checkpoint(
        root / "rm",
        0,
        model_state=ScalarHeadModel(cfg).export_state(),
        model_config=cfg.to_dict(),
        meta={"stage": "reward"},
        kind="reward",
    )
    return {"policy": policy, "reward": reward}


@pytest.fixture(scope="module")
def mix(tmp_path_factory) -> Path:
    """A mix of bare Parquet shards (no manifest: pretraining reads bytes)."""
    from curate.core.document import Document
    from curate.core.shards import ShardWriter

    directory = tmp_path_factory.mktemp("mix") / "mix"
    writer = ShardWriter(directory, prefix="part-00000", shard_bytes=50_000)
    for i in range(60):
        writer.write(Document(id=f"d{i:03d}", text=f"Document {i} is about cats and dogs. " * 6, source="web"))
    writer.close()
    return directory


def command(stage: str, models: dict[str, Path], mix: Path, out: Path) -> list[str]:
    """The arguments of one training command writing to ``out``."""
    policy, reward = str(models["policy"]), str(models["reward"])
    return {
        "pretrain": ["train", "pretrain", "--data", str(mix), "-o", str(out), "-q", "--set", "model.block_size=32"],
        "sft": ["train", "sft", "--base", policy, "--data", str(SAMPLES / "sft" / "qa.jsonl"), "-o", str(out), *FAST],
        "reward": ["train", "reward", "--base", policy, "--data", str(SAMPLES / "comparisons.jsonl"), "-o", str(out), *FAST],
        "dpo": ["train", "dpo", "--policy", policy, "--data", str(SAMPLES / "comparisons.jsonl"), "-o", str(out), *FAST],
        "rlhf": [
            "train", "rlhf", "--policy", policy, "--reward", reward, "--prompts", str(SAMPLES / "prompts.jsonl"),
            "-o", str(out), *FAST, "--max-new-tokens", "4", "--set", "ppo_epochs=1", "--set", "eval_every=0",
        ],
    }[stage]  # fmt: skip


STAGES = ["pretrain", "sft", "reward", "dpo", "rlhf"]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize(
    "setting, message",
    [
        ("optim.lr=nan", "lr = nan is out of range; allowed: a number > 0"),
        ("optim.lr=inf", "lr = inf is not a finite number"),
        ("optim.weight_decay=nan", "weight_decay = nan is out of range"),
        ("seed=-1", "seed = -1 is out of range"),
    ],
)
def test_values_that_cannot_train_are_one_line(models, mix, tmp_path, stage, setting, message):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [*command(stage, models, mix, out), "--set", setting])
    assert result.exit_code == 2 and message in one_line_error(result)
    assert not out.exists()


def test_a_model_that_cannot_fit_is_refused_before_anything_is_allocated(models, mix, tmp_path):
    out = tmp_path / "out"
    args = command("pretrain", models, mix, out)
    result = subprocess.run(
        [sys.executable, "-m", "curate", *args, "--set", "model.block_size=1000000000000"],
        env=ENV,
        capture_output=True,
        timeout=120,
    )
    line = one_line_error(result)
    assert result.returncode == 2
    assert "block_size 1,000,000,000,000" in line and "needs at least" in line and "available" in line
    assert not out.exists()


def assert_nothing_half_written(out: Path, last_good: int) -> None:
    """Checkpoints up to ``last_good`` only, all finite (loading checks), no temporary leftovers."""
    assert [load_checkpoint(p).step for p in list_step_dirs(out)] == list(range(1, last_good + 1))
    assert not [p for p in out.iterdir() if p.name.startswith(".step-")]


def test_pretraining_that_goes_nan_stops_naming_the_step(models, mix, tmp_path):
    out = tmp_path / "out"
    settings = ["optim.lr=1e10", "optim.grad_clip=0", "optim.warmup_steps=0", "checkpoint_every=1", "keep_last=0"]
    args = [*command("pretrain", models, mix, out), "--set", "max_steps=30", "--set", "batch_size=2"]
    result = CliRunner().invoke(cli, args + [arg for s in settings for arg in ("--set", s)])
    assert result.exit_code == 1
    line = one_line_error(result)
    assert line.startswith("error: step ") and "training stopped" in line
    bad_step = int(line.removeprefix("error: step ").split(":")[0])
    assert_nothing_half_written(out, bad_step - 1)


@pytest.mark.parametrize("stage", ["sft", "reward", "dpo", "rlhf"])
def test_alignment_that_goes_nan_stops_before_the_update(models, mix, tmp_path, monkeypatch, stage):
    """The gradient norm of the third update is NaN: the run stops there, checkpoints 1 and 2
    stay, nothing of step 3 is applied or saved."""
    original, calls = stage_module.clip_gradients, {"n": 0}

    def clip(model, max_norm):
        calls["n"] += 1
        norm = original(model, max_norm)
        return norm * float("nan") if calls["n"] >= 3 else norm

    monkeypatch.setattr(stage_module, "clip_gradients", clip)
    out = tmp_path / "out"
    args = [*command(stage, models, mix, out), "--steps", "6", "--set", "checkpoint_every=1", "--set", "keep_last=0"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert one_line_error(result).startswith("error: step 3: the gradient norm is nan; training stopped")
    assert_nothing_half_written(out, 2)


def test_checkpoints_holding_nan_weights_are_refused_by_every_reader(models, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    for name in ("policy", "reward"):
        source = models[name]  # the step directory
        target = broken / name / source.name
        target.mkdir(parents=True)
        for file in source.iterdir():
            (target / file.name).write_bytes(file.read_bytes())
        weights = load_file(str(target / WEIGHTS_FILE))
        weights["blocks.0.attn.proj.weight"][0, 0] = float("nan")
        save_file(weights, str(target / WEIGHTS_FILE), metadata={"format": "pt"})
    runs = {
        "generate": ["generate", str(broken / "policy"), "Hi", "-n", "2", "--device", "cpu"],
        "sample-pairs": [
            "train", "sample-pairs", "--model", str(broken / "policy"), "--prompts", str(SAMPLES / "prompts.jsonl"),
            "-o", str(tmp_path / "pairs.parquet"), "--device", "cpu",
        ],
        "score": ["train", "score", str(broken / "reward"), "--data", str(SAMPLES / "comparisons.jsonl"), "--device", "cpu"],
        "rlhf": [
            "train", "rlhf", "--policy", str(models["policy"]), "--reward", str(broken / "reward"),
            "--prompts", str(SAMPLES / "prompts.jsonl"), "-o", str(tmp_path / "rl"), "--device", "cpu", "-q",
        ],
    }  # fmt: skip
    for name, args in runs.items():
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, name
        assert "holds weights that are not finite (NaN or inf in blocks.0.attn.proj.weight)" in one_line_error(result)
    assert not (tmp_path / "pairs.parquet").exists() and list_step_dirs(tmp_path / "rl") == []


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from curate.core.lock import folder_lock
    with folder_lock(sys.argv[1], "`curate train sft`", sys.argv[2]):
        print("held", flush=True)
        time.sleep(120)
    """
)


def test_a_second_run_into_the_same_output_stops_with_one_line(models, mix, tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out / ".curate" / "lock"), str(out)],
        env=ENV,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"held"
        for stage in STAGES:
            result = CliRunner().invoke(cli, command(stage, models, mix, out))
            assert result.exit_code == 2, stage
            line = one_line_error(result)
            assert line.startswith(f"error: another `curate train {stage}` is running in {out} (pid {holder.pid}")
        assert sorted(p.name for p in out.iterdir()) == [".curate"]  # nothing written, nothing reset
    finally:
        holder.kill()
        holder.wait()
    result = CliRunner().invoke(cli, [*command("sft", models, mix, out), "--steps", "1"])
    assert result.exit_code == 0, result.output  # the holder is gone: the lock is free again


KILL_AFTER_LOGGED_STEP = textwrap.dedent(
    """
    import os, signal, sys
    import train.metrics
    from curate.cli import cli

    limit = int(sys.argv[1])
    original = train.metrics.MetricsLogger.log

    def log(self, record):
        original(self, record)
        if record.get("step", 0) >= limit:  # killed after this line, before any checkpoint
            os.kill(os.getpid(), signal.SIGKILL)

    train.metrics.MetricsLogger.log = log
    cli(sys.argv[2:], prog_name="curate")
    """
)


@pytest.mark.parametrize("stage", ["pretrain", "sft"])
def test_a_rerun_after_a_kill_before_the_first_checkpoint_logs_like_a_fresh_run(models, mix, tmp_path, stage):
    def run(out: Path, *prefix: str) -> subprocess.CompletedProcess:
        args = [*command(stage, models, mix, out), "--set", "max_steps=6", "--set", "log_every=1"]
        return subprocess.run([*prefix, *args], env=ENV, capture_output=True, timeout=300)

    killed = run(tmp_path / "out", sys.executable, "-c", KILL_AFTER_LOGGED_STEP, "3")
    assert killed.returncode == -9, killed.stderr.decode()
    assert list_step_dirs(tmp_path / "out") == [] and (tmp_path / "out" / "metrics.jsonl").exists()
    for out in (tmp_path / "out", tmp_path / "fresh"):
        done = run(out, sys.executable, "-m", "curate")
        assert done.returncode == 0, done.stderr.decode()

    def records(out: Path) -> list[dict]:
        lines = (out / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k not in ("time", "tokens_per_s")} for line in lines]

    assert records(tmp_path / "out") == records(tmp_path / "fresh")
    assert [r["step"] for r in records(tmp_path / "out")][-6:] == [1, 2, 3, 4, 5, 6]
