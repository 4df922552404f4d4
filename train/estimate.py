"""Back-of-the-envelope training cost: FLOPs, GPU-hours, money, and the compute-optimal size.

Training a dense transformer with N parameters on D tokens costs about 6·N·D FLOPs (2 for
the forward matmuls, 4 for the backward; attention adds a few percent at usual context
lengths). At a model FLOPs utilisation (MFU) of m on GPUs with peak P FLOP/s this takes
6·N·D / (m·P) GPU-seconds. Hoffmann et al. (2022, "Chinchilla") found the compute-optimal
budget near D ≈ 20·N tokens; for a compute budget C = 6·N·D that gives N = sqrt(C / 120).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from curate.core.config import parse_count
from curate.core.errors import ConfigError

from .metrics import GPU_PEAK_FLOPS

CHINCHILLA_TOKENS_PER_PARAM = 20.0


@dataclass
class Estimate:
    params: float
    tokens: float
    gpu: str
    peak_flops: float
    mfu: float
    gpus: int
    price_per_gpu_hour: float | None
    flops: float
    gpu_hours: float
    wall_hours: float
    cost: float | None
    optimal_tokens: float  # compute-optimal tokens for this parameter count
    optimal_params: float  # compute-optimal parameters for this compute budget
    tokens_per_param: float

    def lines(self) -> list[str]:
        out = [
            f"model:        {_si(self.params)} parameters, {_si(self.tokens)} tokens "
            f"({self.tokens_per_param:,.1f} tokens/parameter)",
            f"compute:      {self.flops:.3g} FLOPs (6 x N x D)",
            f"hardware:     {self.gpus} x {self.gpu} at {self.peak_flops / 1e12:,.0f} TFLOP/s peak bf16, "
            f"MFU {self.mfu:.0%}",
            f"time:         {self.gpu_hours:,.0f} GPU-hours = {_duration(self.wall_hours)} on {self.gpus} GPU(s)",
        ]
        if self.cost is not None:
            out.append(f"cost:         ${self.cost:,.0f} at ${self.price_per_gpu_hour:g}/GPU-hour")
        out.append(
            f"chinchilla:   compute-optimal for {_si(self.params)} parameters is ~{_si(self.optimal_tokens)} tokens "
            f"(~{CHINCHILLA_TOKENS_PER_PARAM:.0f}/parameter); for this compute, ~{_si(self.optimal_params)} "
            f"parameters on ~{_si(self.optimal_params * CHINCHILLA_TOKENS_PER_PARAM)} tokens"
        )
        return out


def _si(n: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:,.3g}{unit}"
    return f"{n:,.0f}"


def _duration(hours: float) -> str:
    if hours >= 48:
        return f"{hours / 24:,.1f} days"
    if hours >= 1:
        return f"{hours:,.1f} hours"
    return f"{hours * 60:,.1f} minutes"


def parse_number(value: str | float | int, what: str) -> float:
    """``7e9``, ``7B``, ``2T``, ``350M``, ``1.5b`` -> float."""
    try:
        n = float(parse_count(value)) if isinstance(value, str) else float(value)
    except ConfigError:
        raise ConfigError(f"--{what} {value!r}: expected a number such as 7e9, 7B or 350M") from None
    if n <= 0:
        raise ConfigError(f"--{what} must be positive, got {value!r}")
    return n


def estimate(
    params: str | float,
    tokens: str | float | None = None,
    *,
    gpu: str = "h100",
    mfu: float = 0.4,
    gpus: int = 1,
    price: float | None = None,
) -> Estimate:
    """The cost of training ``params`` parameters on ``tokens`` tokens (default: the
    compute-optimal ~20 tokens per parameter)."""
    n = parse_number(params, "params")
    key = gpu.lower().replace(" ", "")
    if key not in GPU_PEAK_FLOPS:
        raise ConfigError(f"unknown GPU {gpu!r}; known: {', '.join(sorted(GPU_PEAK_FLOPS))}")
    if not 0 < mfu <= 1:
        raise ConfigError(f"--mfu must be in (0, 1], got {mfu}")
    if gpus < 1:
        raise ConfigError(f"--gpus must be at least 1, got {gpus}")
    if price is not None and price < 0:
        raise ConfigError(f"--price must not be negative, got {price}")
    d = parse_number(tokens, "tokens") if tokens is not None else CHINCHILLA_TOKENS_PER_PARAM * n
    peak = GPU_PEAK_FLOPS[key]
    flops = 6.0 * n * d
    gpu_hours = flops / (mfu * peak) / 3600.0
    return Estimate(
        params=n,
        tokens=d,
        gpu=key,
        peak_flops=peak,
        mfu=mfu,
        gpus=gpus,
        price_per_gpu_hour=price,
        flops=flops,
        gpu_hours=gpu_hours,
        wall_hours=gpu_hours / gpus,
        cost=gpu_hours * price if price is not None else None,
        optimal_tokens=CHINCHILLA_TOKENS_PER_PARAM * n,
        optimal_params=math.sqrt(flops / (6.0 * CHINCHILLA_TOKENS_PER_PARAM)),
        tokens_per_param=d / n,
    )


def preset_params(preset: str, vocab_size: int) -> int:
    """Parameter count of a model preset with a given vocabulary (built on the meta device:
    no memory is allocated)."""
    import torch

    from .model import GPT, PRESETS, GPTConfig

    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    with torch.device("meta"):
        return GPT(GPTConfig(vocab_size=vocab_size, **PRESETS[preset])).num_params()
