"""The settings of a pretraining run: what ``[model]``, ``[optim]``, ``[data]`` and the top-level
keys of a pretraining TOML (samples/train/pretrain_tiny.toml) may hold, their defaults, and the
checks that turn a bad value into a one-line error before anything runs, and how to say that
a checkpoint's model differs from the configured one. train/pretrain.py runs them;
``curate.core.config.from_dict`` builds them from TOML and ``--set`` overrides.

Every numeric setting declares its allowed values in ``bounds`` (:mod:`curate.core.ranges`):
``from_dict`` checks them as a config is read, and :meth:`PretrainConfig.validate` checks them
again for a config built in code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from curate.core.config import parse_count, to_dict
from curate.core.errors import ConfigError
from curate.core.ranges import COUNT, POSITIVE, SEED, SHARE, SIZE, Range, check_bounds

from .model import PRESETS, GPTConfig
from .optim import OPTIM_BOUNDS, check_optim

DISTRIBUTED_STRATEGIES = ("ddp", "fsdp")


@dataclass
class ModelSettings:
    """A preset plus per-field overrides (None = the preset's value)."""

    preset: str = "tiny"
    block_size: int | None = None
    n_layer: int | None = None
    n_head: int | None = None
    n_kv_head: int | None = None
    n_embd: int | None = None
    mlp_hidden: int | None = None
    rope_theta: float | None = None
    norm_eps: float | None = None
    norm_weight: bool | None = None
    tie_embeddings: bool | None = None
    dropout: float | None = None

    bounds: ClassVar[dict[str, Range]] = {
        **dict.fromkeys(("block_size", "n_layer", "n_head", "n_kv_head", "n_embd", "mlp_hidden"), SIZE),
        "rope_theta": POSITIVE,
        "norm_eps": POSITIVE,
        "dropout": SHARE,
    }

    def build(self, vocab_size: int) -> GPTConfig:
        if self.preset not in PRESETS:
            raise ConfigError(f"model.preset {self.preset!r} is unknown; known: {', '.join(PRESETS)}")
        values = dict(PRESETS[self.preset])
        for key, value in to_dict(self).items():
            if key != "preset" and value is not None:
                values[key] = value
        try:
            return GPTConfig(vocab_size=vocab_size, **values)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


@dataclass
class OptimSettings:
    lr: float = 6e-4  # peak learning rate, reached after warmup
    min_lr: float | None = None  # end of the cosine; None = lr / 10
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 = off

    bounds: ClassVar[dict[str, Range]] = {**OPTIM_BOUNDS, "eps": POSITIVE}


@dataclass
class DataSettings:
    val_fraction: float = 0.01  # documents held out for validation (by a hash of their id)
    val_sequences: int = 64  # held-out sequences evaluated each time (split across ranks)
    shuffle_shards: bool = True  # a seeded shard order per epoch over the mix
    trace: bool = False  # write trace/rank-N.jsonl: the document ids behind every step

    bounds: ClassVar[dict[str, Range]] = {"val_fraction": SHARE, "val_sequences": COUNT}


@dataclass
class PretrainConfig:
    model: ModelSettings = field(default_factory=ModelSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    data: DataSettings = field(default_factory=DataSettings)
    batch_size: int = 8  # sequences per micro-batch per process
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 1000
    max_tokens: int | str | None = None  # a token budget ("2B") instead of max_steps
    seed: int = 1337
    log_every: int = 10
    eval_every: int = 200  # 0 = only at the end
    checkpoint_every: int = 500  # 0 = only at the end
    keep_last: int = 3  # checkpoints kept (0 = all)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16
    compile: bool = False  # torch.compile the model (worth it on GPU for long runs)
    # How several processes share the work: "ddp" keeps a full copy of the model per process;
    # "fsdp" shards weights, gradients and optimizer state across them (models too big for one GPU).
    distributed: str = "ddp"
    threads: int = 0  # CPU threads for torch ops (0 = torch's default: all cores)
    tensorboard: bool = False

    bounds: ClassVar[dict[str, Range]] = {
        **dict.fromkeys(("batch_size", "grad_accum", "max_steps", "log_every"), SIZE),
        **dict.fromkeys(("eval_every", "checkpoint_every", "keep_last", "threads"), COUNT),
        "seed": SEED,
    }

    def validate(self, who: str = "pretrain config") -> None:
        """Every declared range (also for a config built in code, which ``from_dict`` never
        saw), then the checks that relate several settings."""
        check_bounds(self, who)
        check_bounds(self.model, f"{who}.model")
        check_bounds(self.data, f"{who}.data")
        check_optim(self.optim, f"{who}.optim")
        if self.max_tokens is not None and parse_count(self.max_tokens) <= 0:
            raise ConfigError(f"max_tokens must be positive, got {self.max_tokens!r}")
        if str(getattr(self, "dtype", "auto")).lower() in ("float16", "fp16"):
            # fp16 training needs loss scaling (a GradScaler), which this loop does not do.
            raise ConfigError("dtype float16 is not supported for training (no loss scaling); use bf16 or fp32")
        if self.distributed not in DISTRIBUTED_STRATEGIES:
            raise ConfigError(
                f"distributed must be one of {', '.join(DISTRIBUTED_STRATEGIES)}, got {self.distributed!r}"
            )

    def tokens_per_step(self, seq_len: int, world_size: int) -> int:
        return self.batch_size * self.grad_accum * seq_len * world_size

    def total_steps(self, seq_len: int, world_size: int) -> int:
        if self.max_tokens is None:
            return self.max_steps
        return max(1, math.ceil(parse_count(self.max_tokens) / self.tokens_per_step(seq_len, world_size)))


def model_difference(saved: GPTConfig, current: GPTConfig) -> str:
    """The model settings that differ, as 'key: saved X, this run Y', and how to match them."""
    a, b = saved.to_dict(), current.to_dict()
    keys = [k for k in a if a[k] != b.get(k)]
    text = "; ".join(f"{k}: saved {a[k]!r}, this run {b.get(k)!r}" for k in keys)
    if keys:
        text += f"; to match, --set {' '.join(f'model.{k}={str(a[k]).lower() if isinstance(a[k], bool) else a[k]}' for k in keys)}"
    if "norm_weight" in keys and a["norm_weight"]:
        text += " (runs from before norms without gains became the default have norm_weight true)"
    return text
