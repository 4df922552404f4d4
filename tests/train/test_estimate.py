"""train/estimate.py and `curate train estimate`: FLOPs, GPU-hours, cost, Chinchilla size."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.errors import ConfigError
from train.estimate import estimate, preset_params


def test_seven_billion_on_two_trillion_tokens():
    e = estimate("7B", "2T", gpu="h100", mfu=0.4, price=2.5)
    assert e.flops == pytest.approx(6 * 7e9 * 2e12)  # 8.4e22
    gpu_hours = 8.4e22 / (0.4 * 989e12) / 3600
    assert e.gpu_hours == pytest.approx(gpu_hours)
    assert e.cost == pytest.approx(gpu_hours * 2.5)
    assert e.optimal_tokens == pytest.approx(140e9)  # ~20 tokens per parameter
    # For this compute, Chinchilla would pick N with 6 * N * 20N = C.
    assert 6 * e.optimal_params * 20 * e.optimal_params == pytest.approx(e.flops)
    assert estimate(7e9, 2e12, gpu="h100").flops == e.flops  # plain numbers work too


def test_defaults_to_the_compute_optimal_token_count():
    e = estimate("1B")
    assert e.tokens == pytest.approx(20e9) and e.tokens_per_param == pytest.approx(20)
    assert e.cost is None


def test_more_gpus_shorten_wall_time_not_gpu_hours():
    one, eight = estimate("1B", gpus=1), estimate("1B", gpus=8)
    assert eight.gpu_hours == pytest.approx(one.gpu_hours)
    assert eight.wall_hours == pytest.approx(one.wall_hours / 8)


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="unknown GPU 'tpu9'; known: a10, a100"):
        estimate("1B", gpu="tpu9")
    with pytest.raises(ConfigError, match="--mfu"):
        estimate("1B", mfu=1.5)
    with pytest.raises(ConfigError, match="--params"):
        estimate("seven")


def test_cli_prints_the_figures():
    result = CliRunner().invoke(
        cli,
        ["train", "estimate", "--params", "7e9", "--tokens", "2e12", "--gpu", "h100", "--mfu", "0.4", "--price", "2.5"],
    )
    assert result.exit_code == 0, result.output
    assert "8.4e+22 FLOPs" in result.output
    assert "58,982 GPU-hours" in result.output
    assert "$147,455" in result.output
    assert "~140B tokens" in result.output


def test_cli_presets_and_errors():
    result = CliRunner().invoke(cli, ["train", "estimate", "--preset", "small", "--tokens", "10B"])
    assert result.exit_code == 0, result.output
    assert "124M parameters" in result.output
    assert preset_params("small", 50304) == pytest.approx(124e6, rel=0.02)
    result = CliRunner().invoke(cli, ["train", "estimate", "--params", "1B", "--gpu", "k80"])
    assert result.exit_code == 2 and "error: unknown GPU 'k80'; known:" in result.output
    result = CliRunner().invoke(cli, ["train", "estimate", "--tokens", "1B"])
    assert result.exit_code == 2 and "--params or --preset" in result.output
