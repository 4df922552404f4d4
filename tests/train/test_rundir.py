"""train/rundir.py: the run directory every training stage shares: what --overwrite removes,
resume detection, checkpoint metadata and lineage, the metrics file cut at the resume step."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from curate.core.errors import ConfigError, CurateError
from curate.core.tokenizer import ByteTokenizer
from curate.core.version import __version__
from train.checkpoint import Checkpoint
from train.rundir import METRICS_FILE, RunDir, lineage_of


@dataclass
class TinyConfig:
    lr: float = 0.1
    keep_last: int = 2


def save(run: RunDir, step: int, **fields) -> None:
    run.save(
        step,
        fields=fields,
        model_state={"w": torch.zeros(2)},
        model_config={"n": 2},
        kind="lm",
        optimizer_state={"state": {}, "param_groups": []},
        train_state={"step": step},
        tokenizer=ByteTokenizer(),
    )


def test_reset_removes_only_what_a_run_wrote(tmp_path):
    out = tmp_path / "run"
    run = RunDir(out, "pretrain", TinyConfig(), extra_dirs=("trace",))
    run.open()
    save(run, 1)
    (out / ".step-000002.abc.tmp").mkdir()  # a checkpoint a kill cut short
    (out / ".step-000003.def.old").write_text("x")
    (out / METRICS_FILE).write_text('{"step": 1}\n')
    (out / "trace").mkdir()
    (out / "trace" / "rank-00000.jsonl").write_text("{}\n")
    kept = ["notes.txt", "step-notes.txt", "other/config.toml"]
    for name in kept:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("mine")
    run.reset()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(kept)
    assert not run.open()  # nothing left to resume from
    RunDir(tmp_path / "missing", "sft", TinyConfig()).reset()  # nothing there: nothing to do
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        RunDir(tmp_path / "file", "sft", TinyConfig()).reset()
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        RunDir(tmp_path / "file", "sft", TinyConfig()).open()


def test_resume_detection(tmp_path):
    run = RunDir(tmp_path / "run", "sft", TinyConfig())
    with pytest.raises(CurateError, match="no checkpoint to resume from"):
        run.open(resume=True)
    assert run.open() is False and run.path.is_dir() and run.start_step == 0
    save(run, 4)
    again = RunDir(tmp_path / "run", "sft", TinyConfig())
    with pytest.raises(CurateError, match="already holds checkpoints"):
        again.open(resume=False)
    assert again.open() is True and again.open(resume=True) is True
    ckpt = again.load_resume()
    assert ckpt.step == 4 and again.resume_from is ckpt and again.start_step == 4
    assert ckpt.optimizer_state is not None and ckpt.train_state == {"step": 4}
    other = RunDir(tmp_path / "run", "dpo", TinyConfig())
    assert other.open()
    with pytest.raises(CurateError, match="holds a sft checkpoint, not dpo"):
        other.load_resume()


def test_metadata_carries_lineage_and_a_resumed_run_keeps_its_own(tmp_path):
    parent = Checkpoint(
        tmp_path / "base" / "step-000007",
        {},
        {},
        meta={"stage": "pretrain", "training_cutoff": {"max": "2024-01-01"}, "mix_manifest_sha256": "abc"},
    )
    run = RunDir(tmp_path / "run", "sft", TinyConfig())
    run.lineage = lineage_of(parent)
    meta = run.meta(3, {"data": "qa.jsonl"})
    assert meta == {
        "stage": "sft",
        "step": 3,
        "parent": str(parent.path),
        "parent_stage": "pretrain",
        "training_cutoff": {"max": "2024-01-01"},
        "mix_manifest_sha256": "abc",
        "data": "qa.jsonl",
        "train_config": {"lr": 0.1, "keep_last": 2},
        "tool_version": __version__,
    }
    assert lineage_of(None) == dict.fromkeys(["parent", "parent_stage", "training_cutoff", "mix_manifest_sha256"])
    run.open()
    save(run, 3)
    # Resumed with another parent given: the lineage stays the one the run started with.
    resumed = RunDir(tmp_path / "run", "sft", TinyConfig())
    resumed.lineage = lineage_of(Checkpoint(tmp_path / "elsewhere", {}, {}, meta={"stage": "dpo"}))
    resumed.open()
    resumed.load_resume()
    meta = resumed.meta(5, {})
    assert meta["parent"] == str(parent.path) and meta["parent_stage"] == "pretrain"
    assert meta["training_cutoff"] == {"max": "2024-01-01"} and meta["step"] == 5
    # keep_last comes from the config.
    for step in (6, 7, 8):
        save(resumed, step)
    assert [p.name for p in resumed.checkpoints()] == ["step-000007", "step-000008"]


def test_metrics_file_is_cut_at_the_resume_step(tmp_path):
    run = RunDir(tmp_path / "run", "sft", TinyConfig())
    run.open()
    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in range(1, 6)]
    (run.path / METRICS_FILE).write_text("\n".join(lines) + "\n")
    # A run with nothing to resume (the last one was killed before its first checkpoint)
    # starts a new log: its steps would otherwise appear twice.
    with run.open_metrics() as logger:
        logger.log({"step": 1, "loss": 0.5})
    assert [json.loads(line)["step"] for line in (run.path / METRICS_FILE).read_text().splitlines()] == [1]
    (run.path / METRICS_FILE).write_text("\n".join(lines) + "\n")
    with open(run.path / METRICS_FILE, "a") as fh:
        fh.write('{"step": 6, "lo')  # a kill cut the last line short
    save(run, 3)
    resumed = RunDir(tmp_path / "run", "sft", TinyConfig())
    resumed.open()
    resumed.load_resume()
    # A rank that does not log leaves the file alone.
    resumed.open_metrics(enabled=False).close()
    assert len((run.path / METRICS_FILE).read_text().splitlines()) == 6
    with resumed.open_metrics() as logger:
        logger.log({"step": 4, "loss": 0.25})
    text = (run.path / METRICS_FILE).read_text().splitlines()
    assert text[:3] == lines[:3]  # the lines as written, not re-serialised
    assert [json.loads(line)["step"] for line in text] == [1, 2, 3, 4]


def test_one_run_at_a_time_holds_the_directory_lock(tmp_path):
    from curate.core.lock import folder_lock

    run = RunDir(tmp_path / "run", "rlhf-ppo", TinyConfig())
    with folder_lock(tmp_path / "run" / ".curate" / "lock", "`curate train rlhf`", tmp_path / "run"):
        with pytest.raises(CurateError, match=r"another `curate train rlhf` is running in .*run \(pid \d+") as info:
            with run.lock():
                pass
        assert info.value.exit_code == 2
    with run.lock():  # released: free again, and --overwrite keeps the lock file where it is
        run.open()
        run.reset()
        assert (tmp_path / "run" / ".curate" / "lock").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        RunDir(tmp_path / "file", "sft", TinyConfig()).lock()
