"""train/weights_file.py: a safetensors file read a piece at a time gives exactly what
safetensors itself reads, refuses damaged files with one-line errors, and backs
``load_checkpoint(lazy=True)``."""

from __future__ import annotations

import json

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

    def header(obj) -> bytes:
        raw = json.dumps(obj).encode()
        return len(raw).to_bytes(8, "little") + raw

    cases = {  # name: (bytes, what the message says)
        "truncated": (data[: len(data) - 10], "lies outside the file"),
        "no header": (b"\x00" * 8, "header length 0"),
        "garbage": (b"\xff" * 64, "header length"),
        "bad json": ((20).to_bytes(8, "little") + b"{not json at all!!!}", "Expecting"),
        "not an object": (header([]), "not a JSON object"),
        "unknown dtype": (header({"a": {"dtype": "F3", "shape": [1], "data_offsets": [0, 4]}}), "dtype 'F3'"),
        "negative dim": (header({"a": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]}}), "bad header entry"),
    }
    for name, (raw, says) in cases.items():
        broken = tmp_path / f"{name}.safetensors"
        broken.write_bytes(raw)
        with pytest.raises(InputError) as err:
            WeightsFile(broken)
        message = str(err.value)
        assert "unreadable weights" in message and says in message and "\n" not in message, (name, message)
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


def test_fsdp_init_weights_are_the_models_and_checked(tmp_path, monkeypatch):
    """``--init-from`` under FSDP (train.fsdp.model_weights on a lazy checkpoint): a reward
    head is left out as load_lm leaves it; a missing tensor or a shape that disagrees with the
    config is a one-line InputError; and the host check asks for one process's shards."""
    from train import footprint as footprint_module
    from train.checkpoint import model_config_of
    from train.fsdp import model_weights

    config = GPTConfig(n_layer=2, n_embd=32, n_head=4, block_size=16)
    torch.manual_seed(2)
    state = GPT(config).state_dict()

    def saved(name, tensors):
        save_checkpoint(tmp_path / name, 1, model_state=tensors, model_config=config.to_dict(), meta={}, kind="reward")
        return load_checkpoint(tmp_path / name, lazy=True)

    weights = model_weights(saved("reward", {**state, "reward_head.weight": torch.ones(1, 32)}), config)
    assert set(weights) == set(state) and all(isinstance(v, LazyTensor) for v in weights.values())
    assert torch.equal(weights["blocks.1.mlp.up.weight"].full(), state["blocks.1.mlp.up.weight"])
    partial = {k: v for k, v in state.items() if k != "blocks.0.attn.qkv.weight"}
    with pytest.raises(InputError, match=r"weights lack 1 model tensor\(s\), e.g. blocks.0.attn.qkv.weight"):
        model_weights(saved("missing", partial), config)
    with pytest.raises(InputError, match=r"blocks.0.mlp.up.weight has shape \(5, 32\)"):
        model_weights(saved("shape", {**state, "blocks.0.mlp.up.weight": torch.ones(5, 32)}), config)
    ckpt = load_checkpoint(tmp_path / "reward", lazy=True)
    need = footprint_module.footprint(config)
    monkeypatch.setattr(footprint_module, "host_available", lambda: need.building(4) + 64)
    with pytest.raises(InputError, match="to build it"):
        model_config_of(ckpt)
    assert model_config_of(ckpt, shards=4) == config
