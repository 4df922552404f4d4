"""Training stops at the first loss or gradient norm that is not a finite number, and no
checkpoint ever holds weights that are not.

A learning rate far too high, clipping turned off or one poisoned batch can turn the loss into
NaN or inf; every step after that trains garbage, and a checkpoint of it breaks whatever loads
it next. :class:`FiniteGuard` keeps a device-side record of the first bad step: recording costs
a few tiny kernels and no GPU->CPU synchronisation, so on a GPU the record is read only where
the loop synchronises anyway (logging steps, checkpoints); on the CPU reading it is free and
it is read every step. :func:`first_non_finite` names the first bad tensor of a state dict,
for the check before every save and after every load.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from curate.core.errors import CurateError

from .runtime import DistContext, all_reduce_min, all_reduce_sum

_NONE = 2**62  # "no bad step yet": larger than any step, so the minimum over ranks is the first bad one
_LOSS, _GRAD_NORM = 1, 2  # what went bad, packed with the step as step * 4 + kind


class NonFiniteError(CurateError):
    """A loss, a gradient norm or weights that are not finite: training stops (exit 1)."""

    def __init__(self, what: str, step: int | None = None):
        self.what, self.step = what, step
        at = f"step {step}: " if step is not None else ""
        super().__init__(
            f"{at}{what}; training stopped and nothing was saved for this step (earlier checkpoints are kept); "
            "lower optim.lr, keep optim.grad_clip on, or look for bad data",
            exit_code=1,
        )

    def at_step(self, step: int) -> NonFiniteError:
        """The same error naming ``step`` (raised where the step number is known)."""
        return NonFiniteError(self.what, step)


def check_step(loss: float, grad_norm: float) -> None:
    """NonFiniteError (without a step) unless both numbers of an optimizer step are finite."""
    if not math.isfinite(loss):
        raise NonFiniteError(f"the loss is {loss}")
    if not math.isfinite(grad_norm):
        raise NonFiniteError(f"the gradient norm is {grad_norm}")


class FiniteGuard:
    """The first step whose loss or gradient norm was not finite, kept on ``device``.

    :meth:`record` never synchronises with the device; :meth:`check` does (and, in a
    multi-process run, takes every rank's record, so it must be called on all ranks at the
    same step). ``eager`` checks at every record: free on the CPU.
    """

    def __init__(self, device: torch.device, eager: bool):
        self.eager = eager
        self.first = torch.full((), _NONE, dtype=torch.int64, device=device)
        self.values = torch.zeros(2, dtype=torch.float32, device=device)  # loss and norm of that step

    def record(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        values = torch.stack(
            [loss.detach().float().reshape(()), grad_norm.detach().float().reshape(()).to(loss.device)]
        )
        finite = torch.isfinite(values)
        kind = torch.where(finite[0], _GRAD_NORM, _LOSS)
        take = ~finite.all() & (self.first == _NONE)
        self.first = torch.where(take, step * 4 + kind, self.first)
        self.values = torch.where(take, values, self.values)
        if self.eager:
            self.check()

    def check(self, ctx: DistContext | None = None) -> None:
        """NonFiniteError naming the first bad step recorded on any rank, if there is one."""
        first = self.first
        if ctx is not None and ctx.distributed:
            first = all_reduce_min(first.clone(), ctx)
        packed = int(first.item())
        if packed == _NONE:
            return
        step, kind = divmod(packed, 4)
        index = 0 if kind == _LOSS else 1
        # The value is known where this rank saw the first bad step itself.
        value = float(self.values[index].item()) if int(self.first.item()) == packed else None
        name = "the loss" if kind == _LOSS else "the gradient norm"
        raise NonFiniteError(f"{name} is {value}" if value is not None else f"{name} is not finite", step)


def first_non_finite(state: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf, or None."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def check_weights(model: torch.nn.Module, ctx: DistContext, step: int) -> None:
    """NonFiniteError on every rank when any rank's weights (its own shards under FSDP) hold
    NaN or inf: the check before a multi-process checkpoint, which every rank joins."""
    bad = 0
    for param in model.parameters():
        local = param.to_local() if hasattr(param, "to_local") else param  # an FSDP shard
        bad += int(not bool(torch.isfinite(local.detach()).all()))
    if ctx.distributed:
        bad = int(all_reduce_sum(torch.tensor([float(bad)]), ctx).item())
    if bad:
        raise NonFiniteError("the weights hold NaN or infinite values", step)
