"""train/footprint.py: the memory estimate matches the model it describes, and a model that
cannot fit is refused with one line before anything is allocated."""

from __future__ import annotations

import pytest
import torch

import train.footprint as footprint_module
from curate.core.errors import ConfigError, InputError
from train.checkpoint import CONFIG_FILE, load_lm
from train.footprint import check_fits, footprint, param_count
from train.model import GPT, PRESETS, GPTConfig


@pytest.mark.parametrize(
    "settings",
    [{}, {"tie_embeddings": False, "norm_weight": True, "n_kv_head": 2}, PRESETS["small"], {"mlp_hidden": 100}],
)
def test_the_parameter_count_is_the_models(settings):
    cfg = GPTConfig(**settings)
    assert param_count(cfg) == GPT(cfg).num_params()


def test_the_estimate_is_a_lower_bound_of_what_the_model_holds():
    cfg = GPTConfig(block_size=256)
    model = GPT(cfg)
    need = footprint(cfg)
    held = sum(p.numel() * p.element_size() for p in model.parameters())  # a tied matrix once
    assert need.weights == held
    assert need.tables == model.rope_cos.nbytes + model.rope_sin.nbytes
    assert need.training() == need.weights * 4 + need.tables + need.activations
    assert need.training(shards=4) < need.training()


def test_a_model_that_cannot_fit_is_one_line(monkeypatch):
    huge = GPTConfig(block_size=10**12)
    with pytest.raises(ConfigError) as info:
        check_fits(huge, torch.device("cpu"))
    message = str(info.value)
    assert "block_size 1,000,000,000,000" in message and "PiB" in message and "available" in message
    assert "\n" not in message
    # What is available decides: a model that fits passes, the same one on a smaller machine does not.
    small = GPTConfig(block_size=4096)
    check_fits(small, torch.device("cpu"))
    monkeypatch.setattr(footprint_module, "host_available", lambda: 1 << 20)
    with pytest.raises(ConfigError, match=r"the host has 1\.0 MiB available"):
        check_fits(small, torch.device("cpu"))
    monkeypatch.setattr(footprint_module, "host_available", lambda: None)
    check_fits(huge, torch.device("cpu"))  # unknown: nothing is refused


def test_fsdp_processes_build_only_their_shards(monkeypatch):
    """On a GPU, a process builds the model in host memory, all of it under DDP, its shards
    under FSDP (meta-device init): a host that holds a quarter of the weights refuses the
    first and passes the second with 4 processes."""
    cfg = GPTConfig(n_layer=4, n_embd=256, n_head=4, block_size=256)
    need = footprint(cfg)
    assert need.building(4) == need.weights // 4 + need.tables < need.building()
    monkeypatch.setattr(footprint_module, "host_available", lambda: need.building(4) + 1024)
    monkeypatch.setattr(footprint_module, "device_available", lambda device: None)
    gpu = torch.device("cuda", 0)  # only named: nothing is allocated on it
    with pytest.raises(ConfigError, match="needs at least .* to build it"):
        check_fits(cfg, gpu)
    check_fits(cfg, gpu, shards=4)


def test_a_checkpoint_whose_model_cannot_be_built_is_refused(tmp_path, tiny_checkpoint):
    import json

    path = tiny_checkpoint(tmp_path / "ckpt")
    config = json.loads((path / CONFIG_FILE).read_text())
    config["model"]["block_size"] = 10**13
    (path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(InputError, match="needs at least .* to build it"):
        load_lm(path)
