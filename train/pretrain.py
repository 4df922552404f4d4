"""Pretraining: next-token prediction over a mix directory, resumable and multi-process.

``pretrain(config, data, output)`` is the whole run; ``curate train pretrain`` only parses
options into a :class:`PretrainConfig` and calls it. One run directory holds:

    step-000500/ ...   checkpoints (see train/checkpoint.py), the newest ``keep_last`` kept
    latest             the newest complete checkpoint
    metrics.jsonl      one line per logged step: loss, lr, grad norm, tokens/s, MFU, val loss
    trace/rank-N.jsonl optional (data.trace): the document ids behind every step, per rank
    tensorboard/       optional (tensorboard = true, when TensorBoard is installed)

Exact resume: a checkpoint stores the weights, the optimizer state, the step (hence the lr
schedule), every RNG state and each rank's data position, so continuing from it reproduces
the uninterrupted run's losses bit for bit on CPU (on GPU up to non-deterministic kernels).
Rerunning into the same output directory resumes automatically; SIGINT/SIGTERM make the run
write a checkpoint at the end of the current step and stop cleanly.

Several processes (``torchrun``, or ``curate train pretrain --nproc N``) split the data by
document. ``distributed = "ddp"`` (the default) keeps a full model per process and averages
gradients; ``distributed = "fsdp"`` shards weights, gradients and optimizer state across the
processes (train/fsdp.py). Both write the same checkpoint files. On CPU an FSDP run's losses
and weights equal the DDP run's bit for bit when ``grad_accum = 1`` and the gradient norm stays
under ``optim.grad_clip`` (FSDP sums the norm over shards in another order, and reduces each
micro-batch's gradients separately); either way an FSDP run resumed with the same number of
processes continues exactly as it would have run uninterrupted.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curate.core.config import to_dict
from curate.core.errors import ConfigError, CurateError
from curate.core.progress import Progress
from curate.core.version import __version__

from .checkpoint import LATEST_FILE, list_step_dirs, load_checkpoint, load_lm, save_checkpoint
from .data import PackedReader, validation_sequences
from .fsdp import clip_gradients as clip_sharded_gradients
from .fsdp import gather_model_state, gather_optimizer_state, load_optimizer_state, shard_model
from .metrics import MetricsLogger, device_peak_flops, truncate_metrics
from .mix import open_mix, pretokenized_usable, resolve_tokenizer
from .model import GPT, GPTConfig
from .optim import build_optimizer, clip_gradients, lr_at, set_lr
from .pretrain_config import DISTRIBUTED_STRATEGIES, DataSettings, ModelSettings, OptimSettings, PretrainConfig
from .runtime import (
    DistContext,
    StopRequest,
    all_gather_objects,
    all_reduce_sum,
    autocast_context,
    barrier,
    resolve_dtype,
    rng_state,
    seed_everything,
    set_rng_state,
    setup_distributed,
    teardown_distributed,
    tune_cpu_allocator,
    weights_digest,
)

__all__ = [
    "DISTRIBUTED_STRATEGIES",
    "DataSettings",
    "ModelSettings",
    "OptimSettings",
    "PretrainConfig",
    "PretrainResult",
    "evaluate",
    "pretrain",
]

METRICS_FILE = "metrics.jsonl"
TRACE_DIR = "trace"


@dataclass
class PretrainResult:
    output: Path
    checkpoint: Path | None
    start_step: int
    step: int
    max_steps: int
    tokens_seen: int
    first_loss: float | None
    last_loss: float | None
    val_loss: float | None
    elapsed_s: float
    status: str  # "done" | "stopped" (stop_at_step or a signal) | "up-to-date"
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- helpers


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


def _model_difference(saved: GPTConfig, current: GPTConfig) -> str:
    """The model settings that differ, as 'key: saved X, this run Y', and how to match them."""
    a, b = saved.to_dict(), current.to_dict()
    keys = [k for k in a if a[k] != b.get(k)]
    text = "; ".join(f"{k}: saved {a[k]!r}, this run {b.get(k)!r}" for k in keys)
    if keys:
        text += f"; to match, --set {' '.join(f'model.{k}={str(a[k]).lower() if isinstance(a[k], bool) else a[k]}' for k in keys)}"
    if "norm_weight" in keys and a["norm_weight"]:
        text += " (runs from before norms without gains became the default have norm_weight true)"
    return text


def _reset_run_dir(output: Path) -> None:
    """--overwrite: remove what an earlier run wrote here (and nothing else)."""
    for step_dir in output.glob("step-*"):
        if step_dir.is_dir():
            shutil.rmtree(step_dir)
    for tmp in output.glob(".step-*"):
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    for name in (LATEST_FILE, METRICS_FILE):
        (output / name).unlink(missing_ok=True)
    for name in (TRACE_DIR, "tensorboard"):
        shutil.rmtree(output / name, ignore_errors=True)


# ----------------------------------------------------------------------------- the run


def pretrain(
    config: PretrainConfig,
    data: str | Path,
    output: str | Path,
    *,
    tokenizer: str | None = None,
    resume: bool | None = None,
    overwrite: bool = False,
    init_from: str | Path | None = None,
    stop_at_step: int | None = None,
    progress: bool = True,
    on_message: Callable[[str], None] | None = None,
) -> PretrainResult:
    """Train (or continue training) a GPT on the mix at ``data``, writing to ``output``.

    ``resume``: None resumes when ``output`` holds a checkpoint, True requires one, False
    refuses to touch one (use ``overwrite`` to start over). ``init_from`` starts from another
    run's weights (continued pretraining). ``stop_at_step`` checkpoints and stops early at
    that step, keeping the schedule of the full run (for time-limited jobs).
    """
    config.validate()
    ctx = setup_distributed(config.device)
    finished = False
    try:
        result = _run(
            config,
            ctx,
            Path(data),
            Path(output),
            tokenizer,
            resume,
            overwrite,
            init_from,
            stop_at_step,
            progress,
            on_message or (lambda msg: None),
        )
        finished = True
        return result
    finally:
        teardown_distributed(synchronize=finished)


def _run(
    config,
    ctx: DistContext,
    data: Path,
    output: Path,
    tokenizer_arg,
    resume,
    overwrite,
    init_from,
    stop_at_step,
    show_progress,
    say,
) -> PretrainResult:
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        if ctx.is_main:
            say(msg)

    if config.threads:
        torch.set_num_threads(config.threads)
    if ctx.device.type == "cpu":
        tune_cpu_allocator()
    else:
        # TF32 for the fp32 matmuls autocast leaves (optimizer math stays fp32).
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    mix = open_mix(data)
    tokenizer = resolve_tokenizer(tokenizer_arg, mix, note=note)
    gpt_config = config.model.build(tokenizer.vocab_size)
    seq_len = gpt_config.block_size
    dtype = resolve_dtype(config.dtype, ctx.device)
    max_steps = config.total_steps(seq_len, ctx.world_size)
    tokens_per_step = config.tokens_per_step(seq_len, ctx.world_size)
    if mix.total_tokens and max_steps * tokens_per_step > mix.total_tokens:
        note(
            f"the run reads {max_steps * tokens_per_step:,} tokens; the mix holds about {mix.total_tokens:,}, "
            f"so it is repeated ~{max_steps * tokens_per_step / mix.total_tokens:.1f} times"
        )
    if mix.token_files and pretokenized_usable(mix, tokenizer):
        note("reading the mix's pre-tokenized token files")

    # -- the output directory: start over, resume, or refuse
    if overwrite and ctx.is_main:
        _reset_run_dir(output)
    barrier(ctx)
    output.mkdir(parents=True, exist_ok=True)
    existing = list_step_dirs(output)
    if resume is True and not existing:
        raise CurateError(f"{output}: no checkpoint to resume from")
    if resume is False and existing:
        raise CurateError(f"{output} already holds checkpoints; resume, or pass --overwrite to start over")
    resuming = bool(existing)

    fsdp = config.distributed == "fsdp" and ctx.distributed
    if config.distributed == "fsdp" and not ctx.distributed:
        note("distributed = fsdp in a single process: nothing to shard, training unsharded")

    # -- model and optimizer. The same seed on every rank gives every rank the same initial
    # weights (DDP also broadcasts rank 0's); afterwards each rank gets its own RNG stream.
    # Under FSDP the full model is built (and loaded) in host memory and reaches the device
    # one shard at a time, so it never has to fit one GPU.
    seed_everything(config.seed)
    model = GPT(gpt_config).to("cpu" if fsdp else ctx.device)
    parent = None
    if init_from is not None and not resuming:
        source, source_ckpt = load_lm(init_from)
        if source.config != gpt_config:
            raise ConfigError(
                f"--init-from {init_from}: its model differs from this run's "
                f"({_model_difference(source.config, gpt_config)})"
            )
        model.load_state_dict(source.state_dict())
        parent = str(source_ckpt.path)
    ckpt = None
    if resuming:
        ckpt = load_checkpoint(output, map_location="cpu" if fsdp else ctx.device, with_optimizer=True)
        saved = GPTConfig.from_dict(ckpt.model_config)
        if saved != gpt_config:
            raise ConfigError(
                f"{ckpt.path}: the checkpoint's model differs from this run's "
                f"({_model_difference(saved, gpt_config)}); use a new output directory or --overwrite"
            )
        state = ckpt.train_state
        if state is None or ckpt.optimizer_state is None:
            raise CurateError(
                f"{ckpt.path}: has no optimizer/train state (a weights-only checkpoint); "
                "use --init-from to start from its weights"
            )
        if int(state.get("world_size", 1)) != ctx.world_size:
            raise CurateError(
                f"{ckpt.path} was written by {state.get('world_size')} process(es); resume with the "
                f"same number (now {ctx.world_size}), or --init-from it in a new run"
            )
        if ckpt.meta.get("mix_manifest_sha256") != mix.manifest_sha256:
            note(f"the mix at {data} changed since {ckpt.path.name}; data positions may not line up")
        model.load_state_dict(ckpt.model_state)
    flops_per_token = model.flops_per_token(seq_len)
    if fsdp:
        shard_model(model, ctx, dtype)
    optimizer = build_optimizer(
        model,
        lr=config.optim.lr,
        weight_decay=config.optim.weight_decay,
        betas=(config.optim.beta1, config.optim.beta2),
        eps=config.optim.eps,
        device=ctx.device,
    )
    seed_everything(config.seed + ctx.rank)
    reader = PackedReader(
        mix,
        tokenizer,
        seq_len,
        rank=ctx.rank,
        world_size=ctx.world_size,
        val_fraction=config.data.val_fraction,
        seed=config.seed,
        shuffle_shards=config.data.shuffle_shards,
    )

    start_step = 0
    if ckpt is not None:
        state = ckpt.train_state
        # The optimizer file has one format for every strategy (full tensors, numbered
        # parameters), so a run may also switch between ddp and fsdp when it resumes.
        if fsdp:
            load_optimizer_state(optimizer, ckpt.optimizer_state)
        else:
            optimizer.load_state_dict(ckpt.optimizer_state)
        ckpt.model_state = ckpt.optimizer_state = None  # loaded: don't hold a second copy
        rank_state = state["ranks"][ctx.rank]
        set_rng_state(rank_state["rng"])
        reader.load_state_dict(rank_state["data"])
        start_step = int(state["step"])
        parent = ckpt.meta.get("parent")
        if ctx.is_main:
            truncate_metrics(output / METRICS_FILE, start_step)
        note(f"resuming from {ckpt.path.name} (step {start_step:,} of {max_steps:,})")
    if config.data.trace:
        truncate_metrics(output / TRACE_DIR / f"rank-{ctx.rank:05d}.jsonl", start_step)

    val = validation_sequences(
        mix, tokenizer, seq_len, val_fraction=config.data.val_fraction, max_sequences=config.data.val_sequences
    )
    if val is None and config.data.val_fraction > 0:
        note("no held-out documents found for validation (raise data.val_fraction); eval is skipped")
    val_rank = val[ctx.rank :: ctx.world_size] if val is not None else None
    # FSDP forward passes are collective: every rank evaluates as many batches as rank 0 (the
    # largest share) does.
    eval_lockstep = math.ceil(len(val[0 :: ctx.world_size]) / config.batch_size) if fsdp and val is not None else None
    eval_filler = val[:1] if val is not None else None

    def run_eval() -> float | None:
        return evaluate(
            raw_model, val_rank, config.batch_size, ctx, dtype, lockstep_batches=eval_lockstep, filler=eval_filler
        )

    raw_model = model
    if config.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    if ctx.distributed and not fsdp:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)  # type: ignore[assignment]

    logger = MetricsLogger(
        output / METRICS_FILE, output / "tensorboard" if config.tensorboard else None, enabled=ctx.is_main
    )
    if config.tensorboard and ctx.is_main and not logger.tensorboard:
        note("tensorboard = true but TensorBoard is not installed (pip install tensorboard); logging JSONL only")
    trace = MetricsLogger(output / TRACE_DIR / f"rank-{ctx.rank:05d}.jsonl") if config.data.trace else None
    peak = device_peak_flops(ctx.device)
    min_lr = config.optim.min_lr if config.optim.min_lr is not None else config.optim.lr / 10
    bar = (
        Progress("pretrain", total=max_steps, unit="steps", enabled=None if show_progress else False)
        if ctx.is_main
        else None
    )
    if bar is not None:
        bar.done = start_step

    def meta(step: int, loss: float | None, val_loss: float | None) -> dict[str, Any]:
        return {
            "step": step,
            "tokens_seen": step * tokens_per_step,
            "loss": loss,
            "val_loss": val_loss,
            "mix": str(data),
            "mix_manifest_sha256": mix.manifest_sha256,
            "training_cutoff": mix.training_cutoff,
            "train_config": to_dict(config),
            "parent": parent,
            "world_size": ctx.world_size,
            "distributed": (config.distributed if ctx.distributed else None),
            "stage": "pretrain",
            "tool_version": __version__,
        }

    def checkpoint(step: int, loss: float | None, val_loss: float | None) -> Path | None:
        states = all_gather_objects({"rng": rng_state(), "data": reader.state_dict()}, ctx)
        info = meta(step, loss, val_loss)
        if fsdp:
            # Gathered tensor by tensor on every rank (rank 0 keeps them): the same files as DDP.
            model_state, digest = gather_model_state(raw_model, ctx)
            optimizer_state = gather_optimizer_state(optimizer, ctx)
        else:
            model_state, optimizer_state = raw_model.state_dict(), optimizer.state_dict()
            digest = weights_digest(raw_model) if ctx.distributed else None
        if ctx.distributed:
            digests = all_gather_objects(digest, ctx)
            info["weights_sha256_by_rank"] = digests
            if len(set(digests)) != 1:
                raise CurateError(f"step {step}: model weights differ between ranks ({config.distributed} out of sync)")
        path = None
        if ctx.is_main:
            path = save_checkpoint(
                output,
                step,
                model_state=model_state,
                model_config=gpt_config.to_dict(),
                meta=info,
                kind="lm",
                optimizer_state=optimizer_state,
                train_state={"step": step, "world_size": ctx.world_size, "ranks": states},
                tokenizer=tokenizer,
                keep_last=config.keep_last,
            )
        barrier(ctx)
        return path

    first_loss = last_loss = val_loss = None
    saved: Path | None = None
    step = start_step
    status = "up-to-date" if start_step >= max_steps else "done"
    started = time.monotonic()
    window_start, window_tokens = time.perf_counter(), 0
    model.train()
    with StopRequest() as stop, contextlib.ExitStack() as closing:
        closing.callback(logger.close)
        if trace is not None:
            closing.callback(trace.close)
        if bar is not None:
            closing.callback(bar.close)
        while step < max_steps:
            lr = lr_at(
                step, max_lr=config.optim.lr, warmup_steps=config.optim.warmup_steps, max_steps=max_steps, min_lr=min_lr
            )
            set_lr(optimizer, lr)
            loss_sum = torch.zeros((), device=ctx.device)
            for micro in range(config.grad_accum):
                x, y, ids = reader.next_batch(config.batch_size)
                x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
                # Gradients are averaged across ranks only on the last micro-batch.
                # (FSDP reduce-scatters every micro-batch instead: holding unsharded gradients
                # until the last one would cost the memory sharding saves.)
                sync = contextlib.nullcontext()
                if ctx.distributed and not fsdp and micro < config.grad_accum - 1:
                    sync = model.no_sync()  # type: ignore[union-attr]
                with sync:
                    with autocast_context(ctx.device, dtype):
                        _, loss = model(x, y)
                    (loss / config.grad_accum).backward()
                loss_sum += loss.detach()
                if trace is not None:
                    trace.log({"step": step + 1, "micro": micro, "docs": ids})
            if fsdp:
                grad_norm = clip_sharded_gradients(raw_model, config.optim.grad_clip)
            else:
                grad_norm = clip_gradients(model, config.optim.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window_tokens += tokens_per_step
            if bar is not None:
                bar.add(tokens=tokens_per_step)
                bar.advance()

            is_last = step in (max_steps, stop_at_step)
            if step % config.log_every == 0 or step == start_step + 1 or is_last:
                mean_loss = float(all_reduce_sum(loss_sum / config.grad_accum, ctx)) / ctx.world_size
                if ctx.device.type == "cuda":
                    torch.cuda.synchronize(ctx.device)
                now = time.perf_counter()
                tokens_per_s = window_tokens / max(now - window_start, 1e-9)
                window_start, window_tokens = now, 0
                record: dict[str, Any] = {
                    "step": step,
                    "loss": mean_loss,
                    "lr": lr,
                    "grad_norm": float(grad_norm),
                    "tokens": step * tokens_per_step,
                    "tokens_per_s": round(tokens_per_s, 1),
                    "data_epoch": reader.epoch,
                }
                if peak:
                    record["mfu"] = round(flops_per_token * tokens_per_s / (peak * ctx.world_size), 4)
                if first_loss is None:
                    first_loss = mean_loss
                last_loss = mean_loss
                if (config.eval_every and step % config.eval_every == 0) or is_last:
                    val_loss = run_eval()
                    if val_loss is not None:
                        record["val_loss"] = val_loss
                        record["val_ppl"] = math.exp(min(val_loss, 50.0))
                    window_start = time.perf_counter()  # eval time is not training throughput
                logger.log(record)
            elif config.eval_every and step % config.eval_every == 0:
                val_loss = run_eval()
                if val_loss is not None:
                    logger.log({"step": step, "val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50.0))})
                window_start = time.perf_counter()

            # Every rank must agree to stop at the same step (they all join the checkpoint).
            stop_now = stop.requested
            if ctx.distributed:
                stop_now = bool(all_reduce_sum(torch.tensor([float(stop.requested)]), ctx).item() > 0)
            if is_last or stop_now or (config.checkpoint_every and step % config.checkpoint_every == 0):
                saved = checkpoint(step, last_loss, val_loss) or saved
                window_start = time.perf_counter()
            if stop_now or step == stop_at_step:
                status = "stopped"
                if step < max_steps:
                    note(f"stopped at step {step:,} of {max_steps:,}; rerun the same command to continue")
                break
    if saved is None and ctx.is_main:
        # Nothing trained in this call (already at max_steps): report the latest checkpoint.
        steps = list_step_dirs(output)
        saved = steps[-1] if steps else None
    return PretrainResult(
        output=output,
        checkpoint=saved,
        start_step=start_step,
        step=step,
        max_steps=max_steps,
        tokens_seen=step * tokens_per_step,
        first_loss=first_loss,
        last_loss=last_loss,
        val_loss=val_loss,
        elapsed_s=time.monotonic() - started,
        status=status,
        notes=notes,
    )
