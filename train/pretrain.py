"""Pretraining: next-token prediction over a mix directory, resumable and multi-process.

``pretrain(config, data, output)`` is the whole run; ``curate train pretrain`` only parses
options into a :class:`PretrainConfig` and calls it. One run directory holds:

    step-000500/ ...   checkpoints (see train/checkpoint.py), the newest ``keep_last`` kept
    latest             the newest complete checkpoint
    metrics.jsonl      one line per logged step: loss, lr, grad norm, tokens/s, MFU, val loss
    trace/rank-N.jsonl optional (data.trace): the document ids behind every step, per rank
    (each step folder also holds consumed.parquet: per mix row, tokens read and passes;
    train/lineage.py, ``curate lineage``)
    tensorboard/       optional (tensorboard = true, when TensorBoard is installed)

Exact resume: a checkpoint stores the weights, the optimizer state, the step (hence the lr
schedule), every RNG state and each rank's data position, so continuing from it reproduces
the uninterrupted run's losses bit for bit on CPU (on GPU up to non-deterministic kernels).
Rerunning into the same output directory resumes automatically; SIGINT/SIGTERM make the run
write a checkpoint at the end of the current step and stop cleanly. A run holds the output
directory's lock, so a second one into it stops at once with one line; the first step whose
loss or gradient norm is not finite stops the run (train/pretrain_loop.py), and no checkpoint
holds weights that are not finite.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from curate.core.errors import ConfigError, CurateError
from curate.core.tokenizer import Tokenizer

from .checkpoint import Checkpoint, load_checkpoint, load_lm, model_config_of
from .data import PackedReader, validation_sequences
from .footprint import check_fits
from .fsdp import build_sharded_model, load_optimizer_state, model_weights
from .lineage import CONSUMED_FILE, shard_names
from .metrics import truncate_metrics
from .mix import MixInfo, open_mix, pretokenized_usable, resolve_tokenizer
from .model import GPT, GPTConfig
from .optim import build_optimizer
from .pretrain_config import (
    DISTRIBUTED_STRATEGIES,
    DataSettings,
    ModelSettings,
    OptimSettings,
    PretrainConfig,
    model_difference,
)
from .pretrain_eval import HeldOut
from .pretrain_loop import StepLoop
from .rundir import RunDir, chain_of
from .runtime import (
    DistContext,
    barrier,
    broadcast_object,
    resolve_dtype,
    seed_everything,
    set_rng_state,
    setup_distributed,
    teardown_distributed,
    tune_cpu_allocator,
)

__all__ = [
    "DISTRIBUTED_STRATEGIES",
    "DataSettings",
    "ModelSettings",
    "OptimSettings",
    "PretrainConfig",
    "PretrainResult",
    "pretrain",
]

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
        run = PretrainRun(config, ctx, Path(data), Path(output), say=on_message or (lambda msg: None))
        run.open_data(tokenizer)
        with run.lock():
            run.prepare_output(overwrite=overwrite, resume=resume)
            run.build_model(init_from)
            run.build_training()
            run.setup_eval()
            loop = StepLoop(run, stop_at_step=stop_at_step, show_progress=progress)
            loop.train()
            result = run.finish(loop)
        finished = True
        return result
    finally:
        teardown_distributed(synchronize=finished)


class PretrainRun:
    """One call of :func:`pretrain`, phase by phase (each sets the attributes below it uses).

    :meth:`open_data` reads the mix and settles the tokenizer, the model shape and the step
    budget; :meth:`prepare_output` starts the run directory over or finds the checkpoint to
    resume from; :meth:`build_model` makes the model (fresh, from ``init_from``, or resumed) and
    shards it under FSDP; :meth:`build_training` makes the optimizer and the data reader and
    restores their state; :meth:`setup_eval` takes this rank's share of the held-out data;
    then the steps run (train/pretrain_loop.py) and :meth:`finish` reports.
    """

    mix: MixInfo
    tokenizer: Tokenizer
    gpt_config: GPTConfig
    seq_len: int
    dtype: torch.dtype
    max_steps: int
    tokens_per_step: int
    resuming: bool
    model: GPT  # the bare model: checkpoints, evaluation, FSDP clipping
    trained: nn.Module  # what a step calls: the model, compiled and/or wrapped in DDP
    flops_per_token: float
    optimizer: torch.optim.AdamW
    reader: PackedReader
    held_out: HeldOut

    def __init__(
        self, config: PretrainConfig, ctx: DistContext, data: Path, output: Path, *, say: Callable[[str], None]
    ):
        self.config, self.ctx, self.data, self.say = config, ctx, data, say
        self.notes: list[str] = []
        self.dir = RunDir(output, "pretrain", config, extra_dirs=(TRACE_DIR, "tensorboard"))
        self.fsdp = config.distributed == "fsdp" and ctx.distributed
        if config.threads:
            torch.set_num_threads(config.threads)
        if ctx.device.type == "cpu":
            tune_cpu_allocator()
        else:
            # TF32 for the fp32 matmuls autocast leaves (optimizer math stays fp32).
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def note(self, msg: str) -> None:
        self.notes.append(msg)
        if self.ctx.is_main:
            self.say(msg)

    @property
    def start_step(self) -> int:
        return self.dir.start_step

    @property
    def trace_path(self) -> Path:
        return self.dir.path / TRACE_DIR / f"rank-{self.ctx.rank:05d}.jsonl"

    def open_data(self, tokenizer: str | None) -> None:
        config, ctx = self.config, self.ctx
        self.mix = open_mix(self.data)
        self.tokenizer = resolve_tokenizer(tokenizer, self.mix, note=self.note)
        self.gpt_config = config.model.build(self.tokenizer.vocab_size)
        self.seq_len = self.gpt_config.block_size
        self.dtype = resolve_dtype(config.dtype, ctx.device)
        # Before anything is allocated: a model that cannot fit is one line, not an OOM.
        check_fits(
            self.gpt_config,
            ctx.device,
            shards=ctx.world_size if self.fsdp else 1,
            activation_bytes=torch.finfo(self.dtype).bits // 8,
        )
        self.max_steps = config.total_steps(self.seq_len, ctx.world_size)
        self.tokens_per_step = config.tokens_per_step(self.seq_len, ctx.world_size)
        wanted, held = self.max_steps * self.tokens_per_step, self.mix.total_tokens
        if held and wanted > held:
            self.note(
                f"the run reads {wanted:,} tokens; the mix holds about {held:,}, "
                f"so it is repeated ~{wanted / held:.1f} times"
            )
        if self.mix.token_files and pretokenized_usable(self.mix, self.tokenizer):
            self.note("reading the mix's pre-tokenized token files")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run directory's lock (rank 0 takes it for all ranks): a second run into the
        same output stops with one line, on every rank, before anything is written."""
        with contextlib.ExitStack() as held:
            error = None
            if self.ctx.is_main:
                try:
                    held.enter_context(self.dir.lock())
                except CurateError as exc:
                    error = str(exc)
            error = broadcast_object(error, self.ctx)
            if error is not None:
                raise CurateError(error)
            yield

    def prepare_output(self, *, overwrite: bool, resume: bool | None) -> None:
        if overwrite and self.ctx.is_main:
            self.dir.reset()
        barrier(self.ctx)
        self.resuming = self.dir.open(resume)
        if self.config.distributed == "fsdp" and not self.ctx.distributed:
            self.note("distributed = fsdp in a single process: nothing to shard, training unsharded")

    def build_model(self, init_from: str | Path | None) -> None:
        # The same seed on every rank gives every rank the same initial weights (DDP also
        # broadcasts rank 0's); afterwards each rank gets its own RNG stream. Under FSDP the model
        # is built on the meta device and each rank allocates and fills only its shards, with
        # the values the full model would have had (train/fsdp.py): no rank, and no GPU, ever
        # holds the whole model; a resumed run (or --init-from) reads each rank's rows of the
        # checkpoint's tensors, one tensor at a time.
        seed_everything(self.config.seed)
        state = None  # full weights to start from instead of the seeded initialization
        if init_from is not None and not self.resuming:
            state = self._init_state(init_from)
        if self.resuming:
            self.dir.lineage = {"parent": None, "parent_chain": []}  # both kept from the checkpoint
            state = self._load_resume().model_state
        if self.fsdp:
            model = build_sharded_model(self.gpt_config, self.ctx, self.dtype, state)
        else:
            model = GPT(self.gpt_config).to(self.ctx.device)
            if state is not None:
                model.load_state_dict(state)
        del state
        self.flops_per_token = model.flops_per_token(self.seq_len)
        self.model = model

    def _init_state(self, init_from: str | Path) -> dict[str, Any]:
        """The weights of ``--init-from``, after checking its model is this run's: under FSDP
        read lazily (each rank then reads its own rows), else from the model ``load_lm`` builds."""
        if self.fsdp:
            source_ckpt = load_checkpoint(init_from, lazy=True)
            source_config = model_config_of(source_ckpt, shards=self.ctx.world_size)
        else:
            source, source_ckpt = load_lm(init_from)
            source_config = source.config
        if source_config != self.gpt_config:
            raise ConfigError(
                f"--init-from {init_from}: its model differs from this run's "
                f"({model_difference(source_config, self.gpt_config)})"
            )
        self.dir.lineage = {"parent": str(source_ckpt.path), "parent_chain": chain_of(source_ckpt)}
        return model_weights(source_ckpt, self.gpt_config) if self.fsdp else source.state_dict()

    def _load_resume(self) -> Checkpoint:
        """The checkpoint to resume from, after checking this run can continue it."""
        # Under FSDP each rank reads only the rows of each tensor it keeps (train/weights_file.py).
        ckpt = self.dir.load_resume("cpu" if self.fsdp else self.ctx.device, lazy=self.fsdp)
        saved = GPTConfig.from_dict(ckpt.model_config)
        if saved != self.gpt_config:
            raise ConfigError(
                f"{ckpt.path}: the checkpoint's model differs from this run's "
                f"({model_difference(saved, self.gpt_config)}); use a new output directory or --overwrite"
            )
        state = ckpt.train_state
        if state is None or ckpt.optimizer_state is None:
            raise CurateError(
                f"{ckpt.path}: has no optimizer/train state (a weights-only checkpoint); "
                "use --init-from to start from its weights"
            )
        if int(state.get("world_size", 1)) != self.ctx.world_size:
            raise CurateError(
                f"{ckpt.path} was written by {state.get('world_size')} process(es); resume with the "
                f"same number (now {self.ctx.world_size}), or --init-from it in a new run"
            )
        if ckpt.meta.get("mix_manifest_sha256") != self.mix.manifest_sha256:
            self.note(f"the mix at {self.data} changed since {ckpt.path.name}; data positions may not line up")
        return ckpt

    def build_training(self) -> None:
        config, ctx, optim = self.config, self.ctx, self.config.optim
        self.optimizer = build_optimizer(
            self.model,
            lr=optim.lr,
            weight_decay=optim.weight_decay,
            betas=(optim.beta1, optim.beta2),
            eps=optim.eps,
            device=ctx.device,
        )
        seed_everything(config.seed + ctx.rank)
        self.reader = PackedReader(
            self.mix,
            self.tokenizer,
            self.seq_len,
            rank=ctx.rank,
            world_size=ctx.world_size,
            val_fraction=config.data.val_fraction,
            seed=config.seed,
            shuffle_shards=config.data.shuffle_shards,
        )
        ckpt = self.dir.resume_from
        if ckpt is not None:
            # The optimizer file has one format for every strategy (full tensors, numbered
            # parameters), so a run may also switch between ddp and fsdp when it resumes.
            if self.fsdp:
                load_optimizer_state(self.optimizer, ckpt.optimizer_state)
            else:
                self.optimizer.load_state_dict(ckpt.optimizer_state)
            ckpt.model_state = ckpt.optimizer_state = None  # loaded: don't hold a second copy
            rank_state = ckpt.train_state["ranks"][ctx.rank]
            set_rng_state(rank_state["rng"])
            self.restore_consumption(ckpt.path, rank_state["data"])
            self.note(f"resuming from {ckpt.path.name} (step {self.start_step:,} of {self.max_steps:,})")
        if config.data.trace:
            truncate_metrics(self.trace_path, self.start_step)

    def restore_consumption(self, step_dir: Path, position: dict[str, int]) -> None:
        """The reader at ``position`` with what was consumed before it: rank 0 takes the
        checkpoint's consumed.parquet (ranks' counts add up, so one holding them all is
        enough); without that file every rank reads its share again up to its position."""
        import pyarrow.parquet as pq

        if not (step_dir / CONSUMED_FILE).exists():
            self.reader.replay(position)
            return
        self.reader.load_state_dict(position)
        if self.ctx.is_main:
            self.reader.consumption.load(pq.read_table(step_dir / CONSUMED_FILE), shard_names(self.mix))

    def setup_eval(self) -> None:
        """This rank's held-out share; then the model as the steps call it (compiled, DDP)."""
        config, ctx = self.config, self.ctx
        val = validation_sequences(
            self.mix,
            self.tokenizer,
            self.seq_len,
            val_fraction=config.data.val_fraction,
            max_sequences=config.data.val_sequences,
        )
        if val is None and config.data.val_fraction > 0:
            self.note("no held-out documents found for validation (raise data.val_fraction); eval is skipped")
        self.held_out = HeldOut.share(val, config.batch_size, ctx, fsdp=self.fsdp)
        self.trained = self.model
        if config.compile:
            self.trained = torch.compile(self.model)
        if ctx.distributed and not self.fsdp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.trained = DDP(self.trained, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)

    def evaluate(self) -> float | None:
        return self.held_out.loss(self.model, self.ctx, self.dtype)

    def finish(self, loop: StepLoop) -> PretrainResult:
        saved = loop.saved
        if saved is None and self.ctx.is_main:
            # Nothing trained in this call (already at max_steps): report the latest checkpoint.
            steps = self.dir.checkpoints()
            saved = steps[-1] if steps else None
        return PretrainResult(
            output=self.dir.path,
            checkpoint=saved,
            start_step=self.start_step,
            step=loop.step,
            max_steps=self.max_steps,
            tokens_seen=loop.step * self.tokens_per_step,
            first_loss=loop.first_loss,
            last_loss=loop.last_loss,
            val_loss=loop.val_loss,
            elapsed_s=loop.elapsed_s,
            status=loop.status,
            notes=self.notes,
        )
