"""train/align/stage.py: the step loop's schedule and the run object every alignment stage uses."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest
import torch

from curate.core.config import from_dict
from curate.core.errors import ConfigError
from train.align.config import AlignOptim
from train.align.data import Skipped
from train.align.dpo import DPOConfig
from train.align.reward import RewardConfig
from train.align.rlhf import RLHFConfig
from train.align.sft import SFTConfig
from train.align.stage import StageRun, run_steps
from train.checkpoint import load_checkpoint


def test_run_steps_eval_log_and_checkpoint_schedule(tmp_path):
    """One documented schedule for every stage: eval before the first step (logged as step 0),
    every eval_every steps and at max_steps; logs on step 1, every log_every and at max_steps;
    checkpoints every checkpoint_every, at max_steps and at stop_at_step, which stops there
    without a line or an eval of its own (the rerun logs what the uninterrupted run logs)."""
    cfg = SFTConfig(eval_every=4, log_every=3, checkpoint_every=5)
    run = StageRun("sft", cfg, tmp_path / "out")
    run.open()
    run.begin(torch.nn.Linear(1, 1), max_steps=10, examples=1, held_out=1, skipped=Skipped())
    evals, saves, steps = [], [], []

    def eval_fn():
        evals.append(len(steps))
        return {"val_loss": 10.0 - len(steps)}

    def save_fn(step):
        saves.append(step)
        return tmp_path / f"step-{step}"

    res = run_steps(
        run,
        step_fn=lambda s: steps.append(s) or {"loss": float(s)},
        eval_fn=eval_fn,
        save_fn=save_fn,
        stop_at_step=9,
        progress=False,
    )
    assert steps == list(range(9)) and res.status == "stopped" and res.step == 9
    assert evals == [0, 4, 8] and saves == [5, 9]
    assert res.first_eval == {"val_loss": 10.0} and res.eval == {"val_loss": 2.0}
    assert res.first == {"loss": 0.0} and res.last == {"loss": 8.0}  # the stop step's, reported
    lines = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 1, 3, 4, 6, 8, 9]  # 9: a log_every step
    assert "lr" in lines[1] and "val_loss" in lines[0] and "loss" not in lines[0]
    assert [line["step"] for line in lines if "val_loss" in line] == [0, 4, 8]


def test_stage_run_records_its_parent_resumes_and_starts_over(tmp_path, tiny_checkpoint):
    base = tiny_checkpoint(tmp_path / "base")
    data = tmp_path / "qa.jsonl"
    data.write_text('{"prompt": "a", "response": "b"}\n')
    cfg = SFTConfig(max_steps=2)
    run = StageRun("sft", cfg, tmp_path / "out", data=data)
    model, _ = run.load_parent(base)
    run.open()
    _, result = run.begin(model, examples=1, held_out=0, skipped=Skipped())
    assert run.device.type == "cpu" and result.start_step == 0 and result.max_steps == 2
    path = run.save(1, model_state=model.state_dict(), model_config=model.config.to_dict(), kind="policy")
    meta = load_checkpoint(path).meta
    assert meta["stage"] == "sft" and meta["parent"] == str(run.parent.path) and meta["parent_stage"] == "pretrain"
    assert meta["training_cutoff"] == "2026-01-01" and meta["data"] == str(data) and len(meta["data_sha256"]) == 64

    notes: list[str] = []
    data.write_text('{"prompt": "a", "response": "c"}\n')
    again = StageRun("sft", cfg, tmp_path / "out", data=data, say=notes.append)
    again.load_parent(base)
    again.open()
    assert again.start_step == 1 and len(notes) == 1 and "changed since step-000001" in notes[0]

    fresh = StageRun("sft", cfg, tmp_path / "out", overwrite=True, data=data)
    fresh.load_parent(base)
    fresh.open()
    assert fresh.resume_from is None and not (tmp_path / "out" / "step-000001").exists()
    # The config is checked before anything is touched.
    with pytest.raises(ConfigError, match="batch_size"):
        StageRun("sft", SFTConfig(batch_size=0), tmp_path / "other")
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    "cls, data, message",
    [
        (SFTConfig, {"batch_size": 0}, "SFTConfig: batch_size = 0 is out of range; allowed: an integer >= 1"),
        (SFTConfig, {"seed": -3}, "SFTConfig: seed = -3 is out of range"),
        (SFTConfig, {"val_fraction": 1.0}, "val_fraction = 1.0 is out of range; allowed: a number in [0, 1)"),
        (SFTConfig, {"epochs": 0.0}, "epochs = 0.0 is out of range; allowed: a number > 0"),
        (SFTConfig, {"optim": {"lr": 0.0}}, "SFTConfig.optim: lr = 0.0 is out of range; allowed: a number > 0"),
        (SFTConfig, {"optim": {"warmup_steps": -1}}, "warmup_steps = -1 is out of range"),
        (SFTConfig, {"optim": {"grad_clip": -0.5}}, "grad_clip = -0.5 is out of range"),
        (SFTConfig, {"optim": {"min_lr": 1.0}}, "optim.min_lr must be between 0 and optim.lr"),
        (RewardConfig, {"center_coef": -1.0}, "center_coef = -1.0 is out of range; allowed: a number >= 0"),
        (DPOConfig, {"beta": 0.0}, "beta = 0.0 is out of range; allowed: a number > 0"),
        (DPOConfig, {"label_smoothing": 0.5}, "label_smoothing = 0.5 is out of range; allowed: a number in [0, 0.5)"),
        (RLHFConfig, {"temperature": 0.0}, "temperature = 0.0 is out of range; allowed: a number > 0"),
        (RLHFConfig, {"kl_coef": -0.1}, "kl_coef = -0.1 is out of range; allowed: a number >= 0"),
        (RLHFConfig, {"gamma": 1.5}, "gamma = 1.5 is out of range; allowed: a number in [0, 1]"),
        (RLHFConfig, {"rloo_k": 1}, "rloo_k = 1 is out of range; allowed: an integer >= 2"),
        (RLHFConfig, {"ppo_epochs": 0}, "ppo_epochs = 0 is out of range"),
    ],
)
def test_declared_bounds_are_checked_when_read_and_when_built_in_code(cls, data, message):
    with pytest.raises(ConfigError) as read:
        from_dict(cls, data, cls.__name__).validate()
    assert message in str(read.value)
    built = cls()
    for key, value in data.items():
        if isinstance(value, dict):
            for inner, v in value.items():
                setattr(getattr(built, key), inner, v)
        else:
            setattr(built, key, value)
    with pytest.raises(ConfigError) as in_code:
        built.validate()
    assert message in str(in_code.value)


def test_every_numeric_field_of_an_alignment_config_declares_its_range():
    """A new numeric setting must say what it accepts (a stage's bounds include the shared ones)."""
    for cls in (SFTConfig, RewardConfig, DPOConfig, RLHFConfig, AlignOptim):
        numeric = {
            f.name
            for f in dataclasses.fields(cls)
            if typing.get_type_hints(cls)[f.name] in (int, float, int | None, float | None)
        }
        unbounded = numeric - set(cls.bounds) - {"min_lr", "missing_end_penalty"}  # min_lr: relative to lr
        assert not unbounded, (cls.__name__, unbounded)
