"""train/pretrain.py and `curate train pretrain`: loss falls, exact resume, checkpoints, errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from curate.cli import cli
from curate.core.accounting import Stats
from curate.core.config import from_dict
from curate.core.document import Document
from curate.core.errors import ConfigError, CurateError
from curate.core.manifest import build_manifest, write_manifest
from curate.core.shards import ShardWriter
from train.checkpoint import list_step_dirs, load_checkpoint
from train.metrics import read_metrics
from train.pretrain import PretrainConfig, pretrain
from train.runtime import StopRequest

CUTOFF = {"max": "2024-03-28T00:00:00+00:00", "p99": "2024-03-20T00:00:00+00:00", "undated_docs": 0}
SUBJECTS = ["The cat", "A dog", "My friend", "The teacher", "Our neighbour", "The child"]
VERBS = ["sees", "likes", "finds", "paints", "reads about", "walks to"]
OBJECTS = ["the red house", "a small boat", "the old tree", "a green apple", "the quiet river", "a blue bird"]

# A model small enough for a few dozen steps in seconds on one CPU thread.
SMALL = {
    "model": {"preset": "tiny", "block_size": 64, "n_embd": 64, "n_head": 4, "n_layer": 2},
    "optim": {"lr": 3e-3, "warmup_steps": 5},
    "batch_size": 4,
    "log_every": 1,
    "eval_every": 10,
    "checkpoint_every": 10,
    "data": {"val_fraction": 0.05, "val_sequences": 8},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def write_mix(directory: Path, n_docs: int = 300) -> Path:
    """Learnable text: short sentences from a small grammar."""
    rng = random.Random(0)
    writer = ShardWriter(directory, prefix="part-00000", shard_bytes=20_000, row_group_bytes=5_000)
    for i in range(n_docs):
        text = " ".join(
            f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}." for _ in range(rng.randint(3, 8))
        )
        writer.write(Document(id=f"doc-{i:05d}", text=text, source="web"))
    shards = writer.close()
    manifest = build_manifest(
        "mix",
        {},
        [],
        Stats(read=n_docs, kept=n_docs),
        {"": shards},
        extra={
            "training_cutoff": CUTOFF,
            "tokenizer": {"name": "bytes", "vocab_size": 262},
        },
    )
    write_manifest(directory, manifest)
    return directory


@pytest.fixture(scope="module")
def mix_dir(tmp_path_factory):
    return write_mix(tmp_path_factory.mktemp("pretrain") / "mix")


def config(**overrides) -> PretrainConfig:
    data = json.loads(json.dumps(SMALL))
    for key, value in overrides.items():
        node = data
        *parents, last = key.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return from_dict(PretrainConfig, data)


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r}


def test_loss_falls_and_checkpoint_carries_the_training_cutoff(mix_dir, tmp_path):
    result = pretrain(config(max_steps=40), mix_dir, tmp_path / "run", progress=False)
    assert result.status == "done" and result.step == 40
    curve = losses(tmp_path / "run")
    assert sorted(curve) == list(range(1, 41))
    assert curve[40] < 0.6 * curve[1]
    records = list(read_metrics(tmp_path / "run" / "metrics.jsonl"))
    vals = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(vals) == 4 and vals[-1] < vals[0]
    last = records[-1]
    assert {"lr", "grad_norm", "tokens", "tokens_per_s", "val_ppl"} <= set(last)
    assert "mfu" not in last  # no known peak FLOPs on CPU
    assert last["tokens"] == 40 * 4 * 64
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.step == 40
    assert ckpt.meta["training_cutoff"] == CUTOFF
    assert len(ckpt.meta["mix_manifest_sha256"]) == 64
    assert ckpt.meta["tokenizer"]["name"] == "bytes"
    assert ckpt.meta["tokens_seen"] == 40 * 4 * 64
    assert ckpt.meta["train_config"]["optim"]["lr"] == 3e-3
    # Checkpoints every 10 steps, the newest keep_last (3) kept.
    assert [p.name for p in list_step_dirs(tmp_path / "run")] == ["step-000020", "step-000030", "step-000040"]


def test_resume_reproduces_the_uninterrupted_loss_curve_exactly(mix_dir, tmp_path):
    # Dropout and grad accumulation on, so RNG state and micro-batching are part of the check.
    cfg = config(max_steps=16, grad_accum=2, checkpoint_every=0, model__dropout=0.1)
    pretrain(cfg, mix_dir, tmp_path / "straight", progress=False)
    first = pretrain(cfg, mix_dir, tmp_path / "resumed", progress=False, stop_at_step=7)
    assert first.status == "stopped" and first.step == 7
    # A killed run may have logged past its last checkpoint: the resumed run drops those lines.
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 8, "loss": 123.0}) + "\n" + '{"step": 9, "lo')
    second = pretrain(cfg, mix_dir, tmp_path / "resumed", progress=False)
    assert second.start_step == 7 and second.step == 16
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert sorted(resumed) == list(range(1, 17))
    assert resumed == straight  # exact float equality, step by step
    a = load_checkpoint(tmp_path / "straight").model_state
    b = load_checkpoint(tmp_path / "resumed").model_state
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Nothing left to do: a rerun says so and changes nothing.
    again = pretrain(cfg, mix_dir, tmp_path / "resumed", progress=False)
    assert again.status == "up-to-date" and again.step == 16


def test_gradient_accumulation_matches_the_larger_batch(mix_dir, tmp_path):
    pretrain(config(max_steps=1, batch_size=4, grad_accum=2), mix_dir, tmp_path / "accum", progress=False)
    pretrain(config(max_steps=1, batch_size=8, grad_accum=1), mix_dir, tmp_path / "batch", progress=False)
    a = load_checkpoint(tmp_path / "accum").model_state
    b = load_checkpoint(tmp_path / "batch").model_state
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert losses(tmp_path / "accum")[1] == pytest.approx(losses(tmp_path / "batch")[1], rel=1e-5)


def test_token_budget_sets_the_number_of_steps(mix_dir, tmp_path):
    result = pretrain(config(max_tokens="2.5k", eval_every=0), mix_dir, tmp_path / "run", progress=False)
    assert result.max_steps == 10  # ceil(2500 / (4 * 64))
    assert result.tokens_seen == 10 * 4 * 64


def test_output_directory_rules(mix_dir, tmp_path):
    cfg = config(max_steps=2, eval_every=0)
    with pytest.raises(CurateError, match="no checkpoint to resume"):
        pretrain(cfg, mix_dir, tmp_path / "run", resume=True, progress=False)
    pretrain(cfg, mix_dir, tmp_path / "run", progress=False)
    with pytest.raises(CurateError, match="--overwrite"):
        pretrain(cfg, mix_dir, tmp_path / "run", resume=False, progress=False)
    with pytest.raises(ConfigError, match="model differs") as info:
        pretrain(config(max_steps=4, model__n_layer=3), mix_dir, tmp_path / "run", progress=False)
    assert "n_layer: saved 2, this run 3" in str(info.value) and "--set model.n_layer=2" in str(info.value)
    with pytest.raises(ConfigError, match="norm_weight: saved False, this run True"):
        pretrain(config(max_steps=4, model__norm_weight=True), mix_dir, tmp_path / "run", progress=False)
    fresh = pretrain(config(max_steps=3, eval_every=0), mix_dir, tmp_path / "run", overwrite=True, progress=False)
    assert fresh.start_step == 0 and losses(tmp_path / "run").keys() == {1, 2, 3}
    # Continued pretraining from another run's weights.
    child = pretrain(cfg, mix_dir, tmp_path / "child", init_from=tmp_path / "run", progress=False)
    assert load_checkpoint(child.checkpoint).meta["parent"].endswith("step-000003")


def test_cli_trains_resumes_and_reports(mix_dir, tmp_path):
    sample = Path(__file__).resolve().parents[2] / "samples" / "train" / "pretrain_tiny.toml"
    args = [
        "train",
        "pretrain",
        "--data",
        str(mix_dir),
        "--config",
        str(sample),
        "-o",
        str(tmp_path / "run"),
        "--set",
        "max_steps=6",
        "--set",
        "model.block_size=32",
        "--set",
        "batch_size=2",
        "--set",
        "eval_every=3",
        "--quiet",
    ]
    result = CliRunner().invoke(cli, args + ["--stop-at-step", "3"])
    assert result.exit_code == 0, result.output
    assert "steps 0 -> 3 of 6" in result.output and "rerun the same command" in result.output
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "resuming from step-000003" in result.output and "steps 3 -> 6 of 6" in result.output
    assert "checkpoint: " in result.output and "val loss" in result.output


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "optim.learning_rate=1"], "unknown key 'learning_rate'"),
        (["--set", "model.preset=huge"], "model.preset 'huge' is unknown"),
        (["--set", "batch_size=0"], "pretrain config: batch_size = 0 is out of range; allowed: an integer >= 1"),
        (["--set", "seed=-1"], "seed = -1 is out of range"),
        (["--set", "optim.lr=nan"], "optim: lr = nan is out of range; allowed: a number > 0"),
        (["--set", "optim.lr=inf"], "optim: lr = inf is not a finite number"),
        (["--set", "optim.weight_decay=nan"], "weight_decay = nan is out of range"),
        (["--set", "optim.grad_clip=-1"], "grad_clip = -1.0 is out of range; allowed: a number >= 0"),
        (["--set", "data.val_fraction=1"], "val_fraction = 1.0 is out of range; allowed: a number in [0, 1)"),
        (["--set", "optim.min_lr=1.0"], "optim.min_lr must be between 0 and optim.lr"),
        (["--config", "/nonexistent.toml"], "config file not found"),
    ],
)
def test_cli_config_errors_are_one_line(mix_dir, tmp_path, extra, message):
    result = CliRunner().invoke(cli, ["train", "pretrain", "--data", str(mix_dir), "-o", str(tmp_path / "r"), *extra])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_bounds_are_checked_for_configs_built_in_code(mix_dir, tmp_path):
    cfg = config(max_steps=2)
    cfg.optim.lr = -1.0
    with pytest.raises(ConfigError, match="lr = -1.0 is out of range"):
        pretrain(cfg, mix_dir, tmp_path / "run", progress=False)
    cfg = config(max_steps=2)
    cfg.model.n_layer = 0
    with pytest.raises(ConfigError, match="model: n_layer = 0 is out of range"):
        pretrain(cfg, mix_dir, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_cli_missing_mix_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["train", "pretrain", "--data", str(tmp_path / "nope"), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and "no such mix directory" in result.output


def test_a_stop_request_checkpoints_at_the_step_boundary(mix_dir, tmp_path, monkeypatch):
    import train.pretrain_loop as loop_module

    class StopAfterFive(StopRequest):
        """Behaves as if SIGTERM arrived during step 5."""

        checks = 0

        @property
        def requested(self):
            StopAfterFive.checks += 1
            return StopAfterFive.checks >= 5

        @requested.setter
        def requested(self, value):
            pass

    monkeypatch.setattr(loop_module, "StopRequest", StopAfterFive)
    cfg = config(max_steps=50, checkpoint_every=0, eval_every=0)
    result = pretrain(cfg, mix_dir, tmp_path / "run", progress=False)
    assert result.status == "stopped" and result.step == 5
    assert load_checkpoint(tmp_path / "run").step == 5
    assert any("rerun the same command" in n for n in result.notes)
    monkeypatch.undo()
    resumed = pretrain(cfg, mix_dir, tmp_path / "run", progress=False)
    assert resumed.start_step == 5 and resumed.step == 50


def test_every_numeric_pretraining_setting_declares_its_range():
    import dataclasses
    import typing

    from train.pretrain import DataSettings, ModelSettings, OptimSettings

    for cls in (PretrainConfig, ModelSettings, OptimSettings, DataSettings):
        hints = typing.get_type_hints(cls)
        numeric = {f.name for f in dataclasses.fields(cls) if hints[f.name] in (int, float, int | None, float | None)}
        assert not numeric - set(cls.bounds) - {"min_lr"}, cls.__name__  # min_lr: checked against lr
