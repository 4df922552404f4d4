"""What a training run leaves behind is reproducible: identical runs write identical weight
files, and metrics.jsonl after a stop and a resume (or after a kill before the first
checkpoint) is the uninterrupted run's, for pretraining and an alignment stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from curate.core.config import from_dict
from train.align.sft import SFTConfig, sft
from train.checkpoint import WEIGHTS_FILE, list_step_dirs, sort_safetensors_metadata
from train.pretrain import PretrainConfig, pretrain

VOLATILE = {"time", "tokens_per_s", "mfu"}  # wall-clock figures differ between any two runs

PRETRAIN = {
    "model": {"preset": "tiny", "block_size": 32, "n_embd": 32, "n_head": 2, "n_layer": 1},
    "optim": {"lr": 3e-3, "warmup_steps": 2},
    "batch_size": 2,
    "log_every": 5,
    "eval_every": 5,
    "checkpoint_every": 0,
    "max_steps": 12,
    "data": {"val_fraction": 0.1, "val_sequences": 4},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE} for line in lines]


def pretrain_config(**top) -> PretrainConfig:
    return from_dict(PretrainConfig, {**PRETRAIN, **top})


def test_identical_runs_write_identical_weight_files(numbered_mix, tmp_path):
    for name in ("a", "b"):
        pretrain(pretrain_config(max_steps=2, checkpoint_every=1), numbered_mix, tmp_path / name, progress=False)
    for step in ("step-000001", "step-000002"):
        a = (tmp_path / "a" / step / WEIGHTS_FILE).read_bytes()
        b = (tmp_path / "b" / step / WEIGHTS_FILE).read_bytes()
        assert a == b
        size = int.from_bytes(a[:8], "little")
        assert a[8 : 8 + size].startswith(b'{"__metadata__":{"format":"pt","kind":"lm"}')


def test_the_safetensors_header_is_rewritten_with_sorted_metadata_in_place(tmp_path):
    from safetensors.torch import load_file

    # A header as the writer may leave it: metadata in whatever order its hash map chose.
    header = {
        "__metadata__": {"kind": "lm", "format": "pt"},
        "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    data = torch.tensor([1.5, -2.0]).numpy().tobytes()
    path = tmp_path / "w.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)
    sort_safetensors_metadata(path)
    raw = path.read_bytes()
    assert len(raw) == 8 + len(text) + len(data) and raw.endswith(data)
    assert raw[8:].startswith(b'{"__metadata__":{"format":"pt","kind":"lm"},"w":')
    assert load_file(str(path))["w"].tolist() == [1.5, -2.0]


def test_pretrain_metrics_after_a_resume_equal_the_uninterrupted_runs(numbered_mix, tmp_path):
    cfg = pretrain_config()
    pretrain(cfg, numbered_mix, tmp_path / "straight", progress=False)
    # Stopped at a step that is neither a logging nor an eval step, then resumed.
    stopped = pretrain(cfg, numbered_mix, tmp_path / "resumed", progress=False, stop_at_step=7)
    assert stopped.status == "stopped" and stopped.last_loss is not None  # reported, not logged
    assert [r["step"] for r in records(tmp_path / "resumed")] == [1, 5]
    pretrain(cfg, numbered_mix, tmp_path / "resumed", progress=False)
    straight = records(tmp_path / "straight")
    assert [r["step"] for r in straight] == [1, 5, 10, 12]
    assert records(tmp_path / "resumed") == straight


def test_pretrain_rerun_after_a_kill_before_the_first_checkpoint_starts_a_new_log(numbered_mix, tmp_path):
    cfg = pretrain_config(max_steps=6)
    pretrain(cfg, numbered_mix, tmp_path / "straight", progress=False)
    # What a run killed at step 3, before its first checkpoint, leaves: metrics, no checkpoint.
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "metrics.jsonl").write_text('{"step": 1, "loss": 5.5}\n{"step": 2, "loss": 5.4}\n{"step": 3, "lo')
    pretrain(cfg, numbered_mix, killed, progress=False)
    assert records(killed) == records(tmp_path / "straight")


def write_qa(path: Path, n: int = 30) -> Path:
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"prompt": f"{i % 7}+{i % 5}?", "response": f"{i % 7 + i % 5}"}) + "\n")
    return path


def test_sft_metrics_after_a_resume_or_a_kill_equal_the_uninterrupted_runs(tmp_path, tiny_checkpoint):
    base = tiny_checkpoint(tmp_path / "base")
    data = write_qa(tmp_path / "qa.jsonl")
    cfg = SFTConfig(batch_size=4, max_steps=12, log_every=5, eval_every=5, val_fraction=0.2, seed=3)
    sft(cfg, base, data, tmp_path / "straight", progress=False)
    straight = records(tmp_path / "straight")
    assert [r["step"] for r in straight] == [0, 1, 5, 10, 12]

    sft(cfg, base, data, tmp_path / "resumed", progress=False, stop_at_step=7)
    sft(cfg, base, data, tmp_path / "resumed", progress=False)
    assert records(tmp_path / "resumed") == straight

    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "metrics.jsonl").write_text('{"step": 0, "val_loss": 5.0}\n{"step": 1, "loss": 5.1}\n')
    sft(cfg, base, data, killed, progress=False)
    assert records(killed) == straight
    assert [p.name for p in list_step_dirs(killed)] == ["step-000012"]
