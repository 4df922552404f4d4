"""The settings every alignment stage (sft, reward, rlhf, dpo) shares.

:class:`AlignOptim` is the optimiser, :class:`StageConfig` the fields every stage has (batch
size, steps, held-out share, logging, checkpoints, seed, device) and :class:`DataStageConfig`
those of a stage that makes passes over fixed examples. Each declares its numeric ranges in
``bounds`` (:mod:`curate.core.ranges`): ``from_dict`` checks them as a config is read and
``validate`` checks them again for a config built in code; a stage adds its own fields' ranges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from curate.core.errors import ConfigError
from curate.core.ranges import COUNT, POSITIVE, SEED, SHARE, SIZE, Range, check_bounds

from ..optim import OPTIM_BOUNDS, check_optim


@dataclass
class AlignOptim:
    """Optimiser settings of an alignment stage (defaults suit fine-tuning, not pretraining)."""

    lr: float = 1e-4
    min_lr: float | None = None  # end of the cosine; None = lr / 10
    warmup_steps: int = 10
    weight_decay: float = 0.0  # fine-tuning usually runs without decay
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global gradient norm; 0 = off

    bounds: ClassVar[dict[str, Range]] = OPTIM_BOUNDS

    def validate(self, who: str = "optim") -> None:
        check_optim(self, who)


@dataclass
class StageConfig:
    """Fields every alignment stage has. A stage subclasses it, redeclaring a field only to
    change its default (e.g. its own ``optim`` learning rate), and adds its own fields' ranges
    to ``bounds`` (checked by ``from_dict`` and again by :meth:`validate`)."""

    optim: AlignOptim = field(default_factory=AlignOptim)
    batch_size: int = 8  # examples, pairs or prompts per step
    max_steps: int | None = None
    val_fraction: float = 0.1  # held out for evaluation (by a hash of the content)
    eval_every: int = 50  # steps between evals (0 = only before the first step and at the end)
    log_every: int = 10
    checkpoint_every: int = 0  # 0 = only at the end
    keep_last: int = 2
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"

    bounds: ClassVar[dict[str, Range]] = {
        **dict.fromkeys(("batch_size", "max_steps", "log_every"), SIZE),
        **dict.fromkeys(("eval_every", "checkpoint_every", "keep_last"), COUNT),
        "val_fraction": SHARE,
        "seed": SEED,
    }

    def validate(self, who: str | None = None) -> None:
        """Every declared range (also for a config built in code), then the checks that
        relate several fields (a stage adds its own)."""
        who = who or type(self).__name__
        check_bounds(self, who)
        self.optim.validate(f"{who}.optim")


@dataclass
class DataStageConfig(StageConfig):
    """A stage that makes passes over a fixed set of examples (sft, reward, dpo)."""

    epochs: float = 1.0  # passes over the training examples (ignored when max_steps is set)
    max_len: int | None = None  # tokens per example or side (default: what the model takes)

    bounds: ClassVar[dict[str, Range]] = {**StageConfig.bounds, "epochs": POSITIVE, "max_len": SIZE}


def check_max_len(max_len: int | None, limit: int, what: str) -> int:
    """``max_len`` (default ``limit``, what the model takes: ``what``) after checking it fits."""
    max_len = max_len or limit
    if max_len > limit:
        raise ConfigError(f"max_len {max_len} exceeds the model's {what} ({limit})")
    return max_len
