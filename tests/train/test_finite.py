"""train/finite.py and its uses: training stops at the first loss or gradient norm that is not
finite, naming the step; no checkpoint with such weights is written or loaded."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import train.pretrain_loop as loop_module
from curate.cli import cli
from curate.core.accounting import Stats
from curate.core.config import deep_merge, from_dict, parse_set
from curate.core.document import Document
from curate.core.errors import InputError
from curate.core.manifest import build_manifest, write_manifest
from curate.core.shards import ShardWriter
from train.checkpoint import WEIGHTS_FILE, list_step_dirs, load_checkpoint, save_checkpoint
from train.finite import FiniteGuard, NonFiniteError, first_non_finite
from train.metrics import read_metrics
from train.model import GPT
from train.pretrain import PretrainConfig, pretrain

SMALL = {
    "model": {"preset": "tiny", "block_size": 32, "n_embd": 32, "n_head": 2, "n_layer": 1},
    "optim": {"lr": 3e-3, "warmup_steps": 0},
    "batch_size": 2,
    "log_every": 1,
    "eval_every": 0,
    "checkpoint_every": 1,
    "keep_last": 0,
    "max_steps": 8,
    "data": {"val_fraction": 0.0},
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mix_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("finite") / "mix"
    rng = random.Random(0)
    writer = ShardWriter(directory, prefix="part-00000", shard_bytes=20_000, row_group_bytes=5_000)
    for i in range(80):
        text = " ".join(rng.choice(["a cat", "the dog", "sees", "a tree", "runs"]) for _ in range(30))
        writer.write(Document(id=f"doc-{i:05d}", text=text, source="web"))
    shards = writer.close()
    extra = {"tokenizer": {"name": "bytes", "vocab_size": 262}}
    write_manifest(directory, build_manifest("mix", {}, [], Stats(read=80, kept=80), {"": shards}, extra=extra))
    return directory


def small(*settings: str) -> PretrainConfig:
    """SMALL with ``--set`` style overrides (``"optim.lr=1e10"``)."""
    return from_dict(PretrainConfig, deep_merge(SMALL, parse_set(settings)))


def poison_loss_from(monkeypatch, step: int) -> None:
    """The training loss is NaN from the ``step``-th training forward on (grad_accum = 1 and no
    evals during the steps, so forward call n is step n)."""
    original = GPT.forward
    calls = {"n": 0}

    def forward(self, *args, **kwargs):
        logits, loss = original(self, *args, **kwargs)
        if self.training and loss is not None:
            calls["n"] += 1
            if calls["n"] >= step:
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(GPT, "forward", forward)


def assert_all_checkpoints_finite(run_dir: Path) -> list[int]:
    steps = []
    for path in list_step_dirs(run_dir):
        ckpt = load_checkpoint(path)  # refuses non-finite weights itself
        assert first_non_finite(ckpt.model_state) is None
        steps.append(ckpt.step)
    return steps


def test_the_guard_keeps_the_first_bad_step_until_it_is_checked():
    guard = FiniteGuard(torch.device("cpu"), eager=False)
    guard.record(1, torch.tensor(2.0), torch.tensor(1.0))
    guard.check()
    guard.record(2, torch.tensor(2.0), torch.tensor(float("inf")))
    guard.record(3, torch.tensor(float("nan")), torch.tensor(1.0))
    with pytest.raises(NonFiniteError) as info:
        guard.check()  # read later, as a GPU run does at its next logging step
    assert str(info.value).startswith("step 2: the gradient norm is inf; training stopped")
    assert info.value.exit_code == 1
    eager = FiniteGuard(torch.device("cpu"), eager=True)
    with pytest.raises(NonFiniteError, match="^step 5: the loss is nan"):
        eager.record(5, torch.tensor(float("nan")), torch.tensor(float("nan")))


def test_a_huge_learning_rate_without_clipping_stops_at_the_step_that_went_bad(mix_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError) as info:
        pretrain(small("optim.lr=1e10", "optim.grad_clip=0.0"), mix_dir, out, progress=False)
    # The weights overflow first (a finite loss and gradient, an update to inf) or the loss or
    # gradient norm does: either way the step is named and nothing from it on is saved.
    match = re.match(r"step (\d+): the (loss is|gradient norm is|weights hold) (nan|inf|NaN)", str(info.value))
    assert match, str(info.value)
    bad_step = int(match.group(1))
    assert bad_step > 1 and assert_all_checkpoints_finite(out) == list(range(1, bad_step))
    records = list(read_metrics(out / "metrics.jsonl"))
    assert records and all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in records)


def test_a_nan_loss_stops_the_run_and_no_checkpoint_holds_it(mix_dir, tmp_path, monkeypatch):
    poison_loss_from(monkeypatch, 4)
    with pytest.raises(NonFiniteError, match="^step 4: the loss is nan"):
        pretrain(small(), mix_dir, tmp_path / "run", progress=False)
    assert assert_all_checkpoints_finite(tmp_path / "run") == [1, 2, 3]


def test_on_a_gpu_the_record_is_read_at_logging_steps_and_before_saving(mix_dir, tmp_path, monkeypatch):
    """The GPU path (no synchronisation per step), run on the CPU: the error comes at the
    next logging step or checkpoint but names the step that went bad."""

    class Lazy(FiniteGuard):
        def __init__(self, device, eager):
            super().__init__(device, eager=False)

    monkeypatch.setattr(loop_module, "FiniteGuard", Lazy)
    poison_loss_from(monkeypatch, 3)
    cfg = small("log_every=6", "checkpoint_every=4", "max_steps=12")
    with pytest.raises(NonFiniteError, match="^step 3: the loss is nan"):
        pretrain(cfg, mix_dir, tmp_path / "run", progress=False)
    assert list_step_dirs(tmp_path / "run") == []  # the checkpoint at step 4 was refused
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [1]


def test_a_checkpoint_is_never_written_with_non_finite_weights(tmp_path, tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint(tmp_path / "good"))
    state = dict(ckpt.model_state)
    state["blocks.0.mlp.up.weight"] = state["blocks.0.mlp.up.weight"].clone()
    state["blocks.0.mlp.up.weight"][0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"^step 7: the weights hold NaN or infinite values \(first in blocks.0"):
        save_checkpoint(tmp_path / "bad", 7, model_state=state, model_config=ckpt.model_config, meta={})
    assert not (tmp_path / "bad").exists() or list_step_dirs(tmp_path / "bad") == []


def write_nan_checkpoint(tmp_path: Path, tiny_checkpoint) -> Path:
    """A checkpoint as another tool (or an older version) could have left it: NaN weights."""
    from safetensors.torch import load_file, save_file

    path = tiny_checkpoint(tmp_path / "nan")
    weights = load_file(str(path / WEIGHTS_FILE))
    weights["tok_emb.weight"][3, 1] = float("nan")
    save_file(weights, str(path / WEIGHTS_FILE), metadata={"format": "pt", "kind": "lm"})
    return path


def test_a_checkpoint_with_non_finite_weights_is_refused_when_loaded(tmp_path, tiny_checkpoint):
    path = write_nan_checkpoint(tmp_path, tiny_checkpoint)
    with pytest.raises(InputError, match="holds weights that are not finite .*tok_emb.weight"):
        load_checkpoint(path)
    result = CliRunner().invoke(cli, ["generate", str(path), "Hello", "-n", "3", "--device", "cpu"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    assert "not finite (NaN or inf in tok_emb.weight); use an earlier checkpoint" in result.output
