"""The pretraining step loop, over a run train/pretrain.py has prepared.

Each step accumulates gradients over ``grad_accum`` micro-batches (synchronising DDP
gradients only on the last one), clips and steps the optimizer. The loop logs a metrics line
on step 1, every ``log_every`` steps and on the last one (loss averaged over ranks, lr,
gradient norm, tokens/s, MFU where the device's peak is known), evaluates every
``eval_every`` steps and on the last one, and checkpoints every ``checkpoint_every`` steps,
on the last one and when a stop is requested (``stop_at_step``, or SIGINT/SIGTERM on any
rank: every rank stops at the same step, since all of them take part in the checkpoint).
Each checkpoint holds what the ranks' readers have consumed (``consumed.parquet``, with its
summary and the cutoff of the documents read in config.json; train/lineage.py).
Which lines are logged depends on the step alone, never on where a run stopped or resumed,
so a resumed run's metrics.jsonl is the uninterrupted run's.

The first step whose loss or gradient norm is not finite stops the run with one line naming
it (train/finite.py): checked every step on the CPU, and on a GPU at logging steps and before
every checkpoint, where the loop synchronises anyway.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from curate.core.errors import CurateError
from curate.core.progress import Progress

from .finite import FiniteGuard, check_weights
from .fsdp import clip_gradients as clip_sharded_gradients
from .fsdp import gather_model_state, gather_optimizer_state
from .lineage import CONSUMED_FILE, Consumption, consumption_summary, mix_consumed, write_consumed
from .metrics import MetricsLogger, device_peak_flops
from .optim import clip_gradients, scheduled_lr, set_lr
from .runtime import (
    StopRequest,
    all_gather_objects,
    all_reduce_sum,
    autocast_context,
    barrier,
    rng_state,
    weights_digest,
)

if TYPE_CHECKING:  # annotations only: pretrain.py imports this module
    from .pretrain import PretrainRun


class StepLoop:
    """The steps of one pretraining run, from its start step to ``max_steps`` (or
    ``stop_at_step``, or a stop request), and what they report: the first and last logged
    loss, the last eval, the newest checkpoint, the step reached and how the loop ended."""

    def __init__(self, run: PretrainRun, *, stop_at_step: int | None, show_progress: bool):
        self.run = run
        self.stop_at_step = stop_at_step
        self.show_progress = show_progress
        self.step = run.start_step
        self.status = "up-to-date" if self.step >= run.max_steps else "done"
        self.first_loss: float | None = None
        self.last_loss: float | None = None
        self.val_loss: float | None = None
        self.saved: Path | None = None
        self.elapsed_s = 0.0

    def train(self) -> None:
        run, config, ctx = self.run, self.run.config, self.run.ctx
        logger = run.dir.open_metrics(tensorboard=config.tensorboard, enabled=ctx.is_main)
        if config.tensorboard and ctx.is_main and not logger.tensorboard:
            run.note(
                "tensorboard = true but TensorBoard is not installed (pip install tensorboard); logging JSONL only"
            )
        trace = MetricsLogger(run.trace_path) if config.data.trace else None
        bar = None
        if ctx.is_main:
            bar = Progress("pretrain", total=run.max_steps, unit="steps", enabled=None if self.show_progress else False)
            bar.done = run.start_step
        started = time.monotonic()
        self.window = _Throughput(device_peak_flops(ctx.device))
        # Reading the record every step is free on the CPU; across processes the check is a
        # collective, so it waits for the steps every rank reaches together.
        self.guard = FiniteGuard(ctx.device, eager=ctx.device.type == "cpu" and not ctx.distributed)
        run.trained.train()
        with StopRequest() as stop, contextlib.ExitStack() as closing:
            closing.callback(logger.close)
            if trace is not None:
                closing.callback(trace.close)
            if bar is not None:
                closing.callback(bar.close)
            while self.step < run.max_steps:
                lr, loss_sum, grad_norm = self.optimizer_step(trace)
                self.step += 1
                self.guard.record(self.step, loss_sum, grad_norm)
                self.window.tokens += run.tokens_per_step
                if bar is not None:
                    bar.add(tokens=run.tokens_per_step)
                    bar.advance()
                if self.after_step(logger, stop, lr, loss_sum, grad_norm):
                    break
        self.elapsed_s = time.monotonic() - started

    def after_step(
        self, logger: MetricsLogger, stop: StopRequest, lr: float, loss_sum: torch.Tensor, grad_norm: torch.Tensor
    ) -> bool:
        """Log, evaluate and checkpoint as due after ``self.step``; whether to stop here."""
        run, config, ctx, step = self.run, self.run.config, self.run.ctx, self.step
        is_last = step == run.max_steps
        # Every rank must agree to stop at the same step (they all join the checkpoint).
        stop_now = stop.requested or step == self.stop_at_step
        if ctx.distributed:
            stop_now = bool(all_reduce_sum(torch.tensor([float(stop_now)]), ctx).item() > 0)
        self.log(logger, lr, loss_sum, grad_norm, is_last=is_last, stopping=stop_now)
        if is_last or stop_now or (config.checkpoint_every and step % config.checkpoint_every == 0):
            self.saved = self.checkpoint() or self.saved
            self.window.restart()
        if stop_now:
            self.status = "stopped"
            if step < run.max_steps:
                run.note(f"stopped at step {step:,} of {run.max_steps:,}; rerun the same command to continue")
            return True
        return False

    def optimizer_step(self, trace: MetricsLogger | None) -> tuple[float, torch.Tensor, torch.Tensor]:
        """Step ``self.step`` over ``grad_accum`` micro-batches: (lr, summed loss, grad norm)."""
        run, config, ctx = self.run, self.run.config, self.run.ctx
        lr = scheduled_lr(self.step, config.optim, run.max_steps)
        set_lr(run.optimizer, lr)
        loss_sum = torch.zeros((), device=ctx.device)
        for micro in range(config.grad_accum):
            x, y, ids = run.reader.next_batch(config.batch_size)
            x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
            # Gradients are averaged across ranks only on the last micro-batch.
            # (FSDP reduce-scatters every micro-batch instead: holding unsharded gradients
            # until the last one would cost the memory sharding saves.)
            sync = contextlib.nullcontext()
            if ctx.distributed and not run.fsdp and micro < config.grad_accum - 1:
                sync = run.trained.no_sync()
            with sync:
                with autocast_context(ctx.device, run.dtype):
                    _, loss = run.trained(x, y)
                (loss / config.grad_accum).backward()
            loss_sum += loss.detach()
            if trace is not None:
                trace.log({"step": self.step + 1, "micro": micro, "docs": ids})
        if run.fsdp:
            grad_norm = clip_sharded_gradients(run.model, config.optim.grad_clip)
        else:
            grad_norm = clip_gradients(run.trained, config.optim.grad_clip)
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        return lr, loss_sum, grad_norm

    def log(
        self,
        logger: MetricsLogger,
        lr: float,
        loss_sum: torch.Tensor,
        grad_norm: torch.Tensor,
        *,
        is_last: bool,
        stopping: bool = False,
    ) -> None:
        """The metrics line of ``self.step`` when one is due, with the eval when one is due; an
        eval due on a step that is not logged gets a line of its own. A run stopping on a step
        with no line due logs nothing (the rerun will log what the full run logs) but keeps
        the step's loss for its report."""
        run, config, ctx, step = self.run, self.run.config, self.run.ctx, self.step
        eval_due = bool(config.eval_every and step % config.eval_every == 0)
        line_due = step % config.log_every == 0 or step == 1 or is_last
        if line_due or eval_due or stopping:
            self.guard.check(ctx)  # nothing non-finite is logged, and a GPU run stops here
        if not line_due:
            if eval_due:
                self.val_loss = run.evaluate()
                if self.val_loss is not None:
                    logger.log({"step": step, "val_loss": self.val_loss, "val_ppl": _perplexity(self.val_loss)})
                self.window.restart()
            if stopping:
                self.last_loss = float(all_reduce_sum(loss_sum / config.grad_accum, ctx)) / ctx.world_size
                self.first_loss = self.last_loss if self.first_loss is None else self.first_loss
            return
        mean_loss = float(all_reduce_sum(loss_sum / config.grad_accum, ctx)) / ctx.world_size
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        tokens_per_s = self.window.rate()
        record: dict[str, Any] = {
            "step": step,
            "loss": mean_loss,
            "lr": lr,
            "grad_norm": float(grad_norm),
            "tokens": step * run.tokens_per_step,
            "tokens_per_s": round(tokens_per_s, 1),
            "data_epoch": run.reader.epoch,
        }
        if self.window.peak:
            record["mfu"] = round(run.flops_per_token * tokens_per_s / (self.window.peak * ctx.world_size), 4)
        if self.first_loss is None:
            self.first_loss = mean_loss
        self.last_loss = mean_loss
        if eval_due or is_last:
            self.val_loss = run.evaluate()
            if self.val_loss is not None:
                record["val_loss"] = self.val_loss
                record["val_ppl"] = _perplexity(self.val_loss)
            self.window.restart()  # eval time is not training throughput
        logger.log(record)

    def checkpoint(self) -> Path | None:
        """Checkpoint ``self.step`` (every rank takes part; rank 0 writes); its path on rank 0.
        Weights that are not finite are never saved (every rank stops together)."""
        run, config, ctx, step = self.run, self.run.config, self.run.ctx, self.step
        self.guard.check(ctx)
        if ctx.distributed:  # a single process: save_checkpoint checks what it writes
            check_weights(run.model, ctx, step)
        states = all_gather_objects({"rng": rng_state(), "data": run.reader.state_dict()}, ctx)
        consumed_parts = all_gather_objects(run.reader.consumption.sparse(), ctx)
        fields: dict[str, Any] = {
            "tokens_seen": step * run.tokens_per_step,
            "loss": self.last_loss,
            "val_loss": self.val_loss,
            "mix": str(run.data),
            "mix_manifest_sha256": run.mix.manifest_sha256,
            "training_cutoff": run.mix.training_cutoff,
            "world_size": ctx.world_size,
            "distributed": (config.distributed if ctx.distributed else None),
        }
        if run.fsdp:
            # Gathered tensor by tensor on every rank (rank 0 keeps them): the same files as DDP.
            model_state, digest = gather_model_state(run.model, ctx)
            optimizer_state = gather_optimizer_state(run.optimizer, ctx)
        else:
            model_state, optimizer_state = run.model.state_dict(), run.optimizer.state_dict()
            digest = weights_digest(run.model) if ctx.distributed else None
        if ctx.distributed:
            digests = all_gather_objects(digest, ctx)
            fields["weights_sha256_by_rank"] = digests
            if len(set(digests)) != 1:
                raise CurateError(f"step {step}: model weights differ between ranks ({config.distributed} out of sync)")
        path = None
        if ctx.is_main:
            consumption = Consumption(run.mix.shard_rows)
            for part in consumed_parts:
                consumption.merge(part)
            consumed, dates = mix_consumed(run.mix, consumption)
            fields["consumed"] = consumption_summary(consumed, dates)
            fields["consumed_cutoff"] = fields["consumed"]["cutoff"]
            path = run.dir.save(
                step,
                fields=fields,
                model_state=model_state,
                model_config=run.gpt_config.to_dict(),
                kind="lm",
                optimizer_state=optimizer_state,
                train_state={"step": step, "world_size": ctx.world_size, "ranks": states},
                tokenizer=run.tokenizer,
                files={CONSUMED_FILE: lambda at: write_consumed(at, consumed)},
            )
        barrier(ctx)
        return path


class _Throughput:
    """Tokens per second since the last metrics line (evals and checkpoints not counted), and
    the device's peak FLOPs for MFU (None where unknown, e.g. on CPU)."""

    def __init__(self, peak: float | None):
        self.peak = peak
        self.start, self.tokens = time.perf_counter(), 0

    def restart(self) -> None:
        self.start = time.perf_counter()

    def rate(self) -> float:
        now = time.perf_counter()
        rate = self.tokens / max(now - self.start, 1e-9)
        self.start, self.tokens = now, 0
        return rate


def _perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))
