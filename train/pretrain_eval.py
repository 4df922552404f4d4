"""Held-out evaluation during pretraining: the mean loss over the mix's held-out sequences.

Each rank evaluates its own share of the sequences (every ``world_size``-th one) and the
totals are summed over ranks. Under FSDP every forward pass all-gathers weights with the other
ranks, so every rank makes as many passes as rank 0 (which has the largest share); a rank with
fewer makes the rest over a filler batch that is not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .model import GPT
from .runtime import DistContext, all_reduce_sum, autocast_context


@torch.no_grad()
def evaluate(
    model: GPT,
    sequences: np.ndarray | None,
    batch_size: int,
    ctx: DistContext,
    dtype: torch.dtype,
    *,
    lockstep_batches: int | None = None,
    filler: np.ndarray | None = None,
) -> float | None:
    """Mean loss over the held-out sequences (this rank's share; summed over ranks).

    ``lockstep_batches``: under FSDP each forward pass all-gathers weights with every other
    rank, so all ranks must make the same number of passes; a rank whose share is shorter makes
    the rest over ``filler`` without counting them.
    """
    totals = torch.zeros(2, dtype=torch.float64)
    was_training = model.training
    model.eval()
    own = 0 if sequences is None else math.ceil(len(sequences) / batch_size)
    for i in range(own if lockstep_batches is None else max(own, lockstep_batches)):
        counted = i < own
        rows = sequences[i * batch_size : (i + 1) * batch_size] if counted else filler
        block = torch.from_numpy(rows.astype(np.int64)).to(ctx.device)
        with autocast_context(ctx.device, dtype):
            _, loss = model(block[:, :-1], block[:, 1:])
        if counted:
            n = block[:, 1:].numel()
            totals += torch.tensor([float(loss) * n, n], dtype=torch.float64)
    model.train(was_training)
    totals = all_reduce_sum(totals, ctx).cpu()
    return float(totals[0] / totals[1]) if totals[1] > 0 else None


@dataclass
class HeldOut:
    """This rank's share of the held-out sequences and how to evaluate it."""

    sequences: np.ndarray | None
    batch_size: int
    lockstep_batches: int | None = None  # FSDP: the passes every rank makes
    filler: np.ndarray | None = None

    @classmethod
    def share(cls, val: np.ndarray | None, batch_size: int, ctx: DistContext, *, fsdp: bool) -> HeldOut:
        """Rank ``ctx.rank``'s share of ``val`` (all ranks' held-out sequences, or None)."""
        if val is None:
            return cls(None, batch_size)
        lockstep = math.ceil(len(val[0 :: ctx.world_size]) / batch_size) if fsdp else None
        return cls(val[ctx.rank :: ctx.world_size], batch_size, lockstep, val[:1])

    def loss(self, model: GPT, ctx: DistContext, dtype: torch.dtype) -> float | None:
        return evaluate(
            model,
            self.sequences,
            self.batch_size,
            ctx,
            dtype,
            lockstep_batches=self.lockstep_batches,
            filler=self.filler,
        )
