"""train/weights_file.py: a safetensors file read a piece at a time gives exactly what
safetensors itself reads, refuses damaged files with one-line errors, and backs
``load_checkpoint(lazy=True)``."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from curate.core.errors import InputError
from train.checkpoint import WEIGHTS_FILE, load_checkpoint, save_checkpoint
from train.model import GPT, GPTConfig
from train.weights_file import LazyTensor, WeightsFile, materialize


@pytest.fixture()
def tensors(tmp_path):
    torch.manual_seed(0)
    values = {
        "f32": torch.randn(7, 5),
        "bf16": torch.randn(6, 3, 2).to(torch.bfloat16),
        "f16": torch.randn(4).to(torch.float16),
        "i64": torch.arange(12, dtype=torch.int64).reshape(3, 4),
        "flag": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
    }
    path = tmp_path / "w.safetensors"
    save_file(values, str(path), metadata={"format": "pt"})
    return path, values


def test_reads_equal_safetensors_whole_and_by_rows(tensors):
    path, values = tensors
    weights = WeightsFile(path)
    assert sorted(weights.keys()) == sorted(values)
    reference = load_file(str(path))
    for name, value in reference.items():
        got = weights.tensor(name)
        assert got.dtype == value.dtype and got.shape == value.shape and torch.equal(got, value), name
    lazy = weights.lazy_state()
    assert isinstance(lazy["f32"], LazyTensor) and lazy["f32"].shape == (7, 5) and lazy["bf16"].dtype == torch.bfloat16
    for start, stop in ((0, 7), (2, 5), (5, 99), (6, 6), (-3, 7)):
        assert torch.equal(lazy["f32"][start:stop], values["f32"][start:stop]), (start, stop)
    assert torch.equal(lazy["bf16"][1:4], values["bf16"][1:4])
    assert torch.equal(lazy["f32"][::2], values["f32"][::2])  # any other index: read whole, then indexed
    assert torch.equal(materialize(lazy["scalar"]), values["scalar"])
    assert materialize(values["i64"]) is values["i64"]


def test_non_finite_values_are_found_a_tensor_at_a_time(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(
        {"a": torch.ones(3), "b": torch.tensor([1.0, float("nan")]), "i": torch.ones(2, dtype=torch.int64)}, str(path)
    )
    assert WeightsFile(path).first_non_finite() == "b"
    save_file({"a": torch.ones(3)}, str(path))
    assert WeightsFile(path).first_non_finite() is None


def test_damaged_files_are_one_line_errors(tensors, tmp_path):
    path, _ = tensors
    data = path.read_bytes()
    cases = {
        "truncated": data[: len(data) - 10],
        "no header": b"\x00" * 8,
        "garbage": b"\xff" * 64,
        "bad json": (20).to_bytes(8, "little") + b"{not json at all!!!}",
    }
    for name, raw in cases.items():
        broken = tmp_path / f"{name}.safetensors"
        broken.write_bytes(raw)
        with pytest.raises(InputError) as err:
            WeightsFile(broken)
        assert "unreadable weights" in str(err.value) and "\n" not in str(err.value), name
    with pytest.raises(InputError, match="unreadable weights"):
        WeightsFile(tmp_path / "missing.safetensors")


def test_lazy_checkpoint_equals_the_eager_one(tmp_path):
    config = GPTConfig(n_layer=2, n_embd=32, n_head=4, block_size=16)  # tied embeddings
    torch.manual_seed(1)
    model = GPT(config)
    optimizer_state = {"state": {0: {"exp_avg": torch.randn(3, 4), "step": torch.tensor(5.0)}}, "param_groups": []}
    save_checkpoint(
        tmp_path,
        1,
        model_state=model.state_dict(),
        model_config=config.to_dict(),
        meta={},
        optimizer_state=optimizer_state,
        train_state={"step": 1},
    )
    eager = load_checkpoint(tmp_path, with_optimizer=True)
    lazy = load_checkpoint(tmp_path, with_optimizer=True, lazy=True)
    assert set(lazy.model_state) == set(eager.model_state) == set(model.state_dict())
    assert lazy.model_state["lm_head.weight"] is lazy.model_state["tok_emb.weight"]  # the tie restored
    for name, value in eager.model_state.items():
        assert torch.equal(materialize(lazy.model_state[name]), value), name
    assert torch.equal(lazy.optimizer_state["state"][0]["exp_avg"], optimizer_state["state"][0]["exp_avg"])
    assert lazy.train_state == {"step": 1}
    # NaN weights are refused as the eager load refuses them.
    state = {k: v.clone() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    state["blocks.0.attn.qkv.weight"][0, 0] = float("inf")
    save_file(state, str(tmp_path / "step-000001" / WEIGHTS_FILE))
    for lazy_load in (False, True):
        with pytest.raises(InputError, match="not finite"):
            load_checkpoint(tmp_path, lazy=lazy_load)
