"""The optimisation pieces every training loop shares: the learning-rate schedule (linear
warmup, cosine decay), the allowed values of the optimiser settings, AdamW with decay on
matrices only, setting the learning rate, and gradient clipping.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
import torch.nn as nn

from curate.core.errors import ConfigError
from curate.core.ranges import COUNT, NON_NEGATIVE, POSITIVE, SHARE, Range, check_bounds

# The ranges of the optimiser settings every stage has (a stage's class may add its own);
# min_lr's depends on lr, see check_optim.
OPTIM_BOUNDS: dict[str, Range] = {
    "lr": POSITIVE,
    "warmup_steps": COUNT,
    "weight_decay": NON_NEGATIVE,
    "beta1": SHARE,
    "beta2": SHARE,
    "grad_clip": NON_NEGATIVE,
}


def lr_at(step: int, *, max_lr: float, warmup_steps: int, max_steps: int, min_lr: float) -> float:
    """Linear warmup over ``warmup_steps`` then cosine decay to ``min_lr`` at ``max_steps``
    (``step`` counts from 0; constant ``min_lr`` after ``max_steps``)."""
    if warmup_steps > 0 and step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    span = max(1, max_steps - warmup_steps)
    progress = (step - warmup_steps) / span
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


class Schedule(Protocol):
    """The schedule fields of a stage's optimiser settings."""

    lr: float
    min_lr: float | None  # None = lr / 10
    warmup_steps: int


def check_optim(optim: Any, who: str) -> None:
    """A stage's optimiser settings within their declared ``bounds``, and 0 <= min_lr <= lr."""
    check_bounds(optim, who)
    if optim.min_lr is not None and not 0 <= optim.min_lr <= optim.lr:
        raise ConfigError(f"optim.min_lr must be between 0 and optim.lr, got {optim.min_lr}")


def scheduled_lr(step: int, schedule: Schedule, max_steps: int) -> float:
    """:func:`lr_at` for a stage's settings: peak ``lr``, down to ``min_lr`` (default lr / 10)."""
    min_lr = schedule.min_lr if schedule.min_lr is not None else schedule.lr / 10
    return lr_at(step, max_lr=schedule.lr, warmup_steps=schedule.warmup_steps, max_steps=max_steps, min_lr=min_lr)


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    device: torch.device | None = None,
) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on norm gains, biases, 1-D params):
    decaying a gain towards 0 fights the normalisation instead of regularising."""
    decay, no_decay = [], []
    for param in model.parameters():  # yields a tied matrix once
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused implementation (CUDA and, since torch 2.4, CPU) updates each parameter in one
    # kernel; PyTorch's CPU default is a Python loop of ~10 ops per parameter, which costs a
    # small model a noticeable share of its step. Fall back where a device lacks it.
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_gradients(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Clip the global gradient norm to ``max_norm`` (0 = no clipping); returns the norm
    before clipping (a loss spike usually shows here first) as a 0-d tensor on the device:
    reading it (``float``) waits for the GPU, so callers do that only when they log."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return torch.zeros(())
    if max_norm and max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    return torch.nn.utils.get_total_norm([p.grad for p in params], norm_type=2.0)
