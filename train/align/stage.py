"""What the alignment stages (sft, reward, rlhf, dpo, sample-pairs) share.

:class:`StageConfig` holds the config fields every stage has; :class:`StageRun` the output
directory of a run (overwrite, resume, metrics log, checkpoints carrying the parent's lineage
forward); :func:`run_steps` the step loop around a stage's own update (learning-rate schedule,
progress, logging, evals, checkpoints), so the four stages log, eval and resume alike. Reading
records, the held-out split and the batch order live in :mod:`train.align.data`.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from curate.core.config import to_dict
from curate.core.errors import ConfigError, CurateError
from curate.core.progress import Progress
from curate.core.tokenizer import Tokenizer
from curate.core.version import __version__

from ..checkpoint import (
    LATEST_FILE,
    Checkpoint,
    list_step_dirs,
    load_checkpoint,
    load_checkpoint_tokenizer,
    load_lm,
    save_checkpoint,
)
from ..metrics import MetricsLogger, truncate_metrics
from ..model import GPT
from ..optim import build_optimizer, clip_gradients, lr_at, set_lr
from ..runtime import rng_state, set_rng_state
from .data import Skipped, batch_indices, data_digest

METRICS_FILE = "metrics.jsonl"

# =============================================================================== config


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

    def validate(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be positive, got {self.lr}")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be 0 or more, got {self.warmup_steps}")


def check_positive(config: Any, names: Sequence[str], minimum: int | float = 1) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")


@dataclass
class StageConfig:
    """Fields every alignment stage has. A stage subclasses it, redeclaring a field only to
    change its default (e.g. its own ``optim`` learning rate)."""

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

    def validate(self) -> None:
        self.optim.validate()
        check_positive(self, ["batch_size", "max_steps", "log_every"])
        check_positive(self, ["eval_every", "checkpoint_every", "keep_last"], minimum=0)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass
class DataStageConfig(StageConfig):
    """A stage that makes passes over a fixed set of examples (sft, reward, dpo)."""

    epochs: float = 1.0  # passes over the training examples (ignored when max_steps is set)
    max_len: int | None = None  # tokens per example or side (default: what the model takes)

    def validate(self) -> None:
        super().validate()
        check_positive(self, ["max_len"])
        if self.epochs <= 0:
            raise ConfigError(f"epochs must be positive, got {self.epochs}")


def check_max_len(max_len: int | None, limit: int, what: str) -> int:
    """``max_len`` (default ``limit``, what the model takes: ``what``) after checking it fits."""
    max_len = max_len or limit
    if max_len > limit:
        raise ConfigError(f"max_len {max_len} exceeds the model's {what} ({limit})")
    return max_len


# =============================================================================== runs


@dataclass
class StageResult:
    """What a finished (or resumed, or already complete) alignment run reports."""

    stage: str
    output: Path
    checkpoint: Path | None
    start_step: int
    step: int
    max_steps: int
    status: str  # "done" | "stopped" | "up-to-date"
    elapsed_s: float = 0.0
    first: dict[str, float] = field(default_factory=dict)  # first logged step metrics
    last: dict[str, float] = field(default_factory=dict)  # last logged step metrics
    eval: dict[str, float] = field(default_factory=dict)  # last eval metrics
    first_eval: dict[str, float] = field(default_factory=dict)  # eval before this run's first step
    examples: int = 0
    held_out: int = 0
    skipped: Skipped = field(default_factory=Skipped)
    notes: list[str] = field(default_factory=list)


class StageRun:
    """The output directory of an alignment run: start over, resume, log, checkpoint.

    A rerun into the same directory resumes from its newest checkpoint (weights, optimizer,
    step and RNG state); ``overwrite`` deletes what an earlier run wrote there first. Each
    checkpoint's metadata names the parent checkpoint and carries its training cutoff and
    tokenizer forward, so the lineage base -> sft -> rm/rlhf/dpo stays visible.
    """

    def __init__(
        self,
        stage: str,
        output: str | Path,
        *,
        overwrite: bool,
        parent: Checkpoint | None,
        config: StageConfig,
        data: str | Path | None = None,
        say: Callable[[str], None] | None = None,
    ):
        self.stage = stage
        self.output = Path(output)
        self.parent = parent
        self.config = config
        self.say = say or (lambda msg: None)
        self.notes: list[str] = []
        if self.output.exists() and not self.output.is_dir():
            raise ConfigError(f"{self.output}: exists and is not a directory")
        if overwrite:
            self._reset()
        self.output.mkdir(parents=True, exist_ok=True)
        self.data = str(data) if data is not None else None
        self.data_sha256 = data_digest(data) if data is not None and Path(data).exists() else None
        self.resume_from: Checkpoint | None = None
        if list_step_dirs(self.output):
            ckpt = load_checkpoint(self.output, with_optimizer=True)
            if ckpt.meta.get("stage") != stage:
                raise CurateError(
                    f"{self.output} holds a {ckpt.meta.get('stage') or ckpt.kind} checkpoint, not {stage}; "
                    "use another output directory or --overwrite"
                )
            if ckpt.train_state is None or ckpt.optimizer_state is None:
                raise CurateError(f"{ckpt.path}: has no optimizer/train state to resume from; use --overwrite")
            self.resume_from = ckpt
            if self.data_sha256 and ckpt.meta.get("data_sha256") not in (None, self.data_sha256):
                self.note(f"the data at {data} changed since {ckpt.path.name}; batches will not line up")
        self.logger: MetricsLogger | None = None

    def note(self, msg: str) -> None:
        self.notes.append(msg)
        self.say(msg)

    def _reset(self) -> None:
        if not self.output.is_dir():
            return
        for path in [*self.output.glob("step-*"), *self.output.glob(".step-*")]:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        for name in (LATEST_FILE, METRICS_FILE):
            (self.output / name).unlink(missing_ok=True)

    @property
    def start_step(self) -> int:
        return int(self.resume_from.train_state["step"]) if self.resume_from else 0

    def begin(
        self,
        model: torch.nn.Module,
        config: StageConfig,
        device: torch.device,
        *,
        examples: int,
        held_out: int,
        skipped: Skipped,
        max_steps: int | None = None,
        load_model: Callable[[Checkpoint], None] | None = None,
    ) -> tuple[torch.optim.AdamW, StageResult]:
        """Note the skipped records, build the optimizer over ``model``, resume from the newest
        checkpoint when there is one (weights via ``load_model``, default
        :func:`load_lm_weights`; optimizer; RNG) and give the result to fill. ``max_steps``
        defaults to the config's, or ``epochs`` passes over ``examples``."""
        for line in skipped.lines():
            self.note(line)
        if max_steps is None:  # a DataStageConfig: max_steps, else epochs over the examples
            max_steps = config.max_steps or max(1, math.ceil(examples * config.epochs / config.batch_size))
        optim = config.optim
        optimizer = build_optimizer(
            model, lr=optim.lr, weight_decay=optim.weight_decay, betas=(optim.beta1, optim.beta2), device=device
        )
        ckpt, start = self.resume_from, self.start_step
        if ckpt is not None:
            (load_model or (lambda c: load_lm_weights(model, c)))(ckpt)
            optimizer.load_state_dict(ckpt.optimizer_state)
            set_rng_state(ckpt.train_state["rng"])
            self.note(f"resuming from {ckpt.path.name} (step {start} of {max_steps})")
        # The result's notes list is this run's, kept live.
        return optimizer, StageResult(
            self.stage,
            self.output,
            None,
            start,
            start,
            max_steps,
            "done",
            examples=examples,
            held_out=held_out,
            skipped=skipped,
            notes=self.notes,
        )

    def open_logger(self) -> MetricsLogger:
        if self.resume_from is not None:
            truncate_metrics(self.output / METRICS_FILE, self.start_step)
        self.logger = MetricsLogger(self.output / METRICS_FILE)
        return self.logger

    def meta(self, step: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        parent_meta = self.parent.meta if self.parent is not None else {}
        info = {
            "stage": self.stage,
            "step": step,
            "parent": str(self.parent.path) if self.parent is not None else None,
            "parent_stage": parent_meta.get("stage"),
            "training_cutoff": parent_meta.get("training_cutoff"),
            "mix_manifest_sha256": parent_meta.get("mix_manifest_sha256"),
            "data": self.data,
            "data_sha256": self.data_sha256,
            "train_config": to_dict(self.config),
            "tool_version": __version__,
        }
        if self.resume_from is not None:
            # Lineage of a resumed run is the lineage recorded when it started.
            for key in ("parent", "parent_stage", "training_cutoff", "mix_manifest_sha256"):
                info[key] = self.resume_from.meta.get(key)
        if "tokenizer" in parent_meta:
            info["tokenizer"] = parent_meta["tokenizer"]
        return {**info, **(extra or {})}

    def save(
        self,
        step: int,
        *,
        model_state: dict[str, torch.Tensor],
        model_config: dict[str, Any],
        kind: str,
        optimizer: torch.optim.Optimizer,
        tokenizer: Tokenizer,
        extra_meta: dict[str, Any] | None = None,
        extra_state: dict[str, Any] | None = None,
    ) -> Path:
        train_state = {"step": step, "rng": rng_state(), **(extra_state or {})}
        return save_checkpoint(
            self.output,
            step,
            model_state=model_state,
            model_config=model_config,
            meta=self.meta(step, extra_meta),
            kind=kind,
            optimizer_state=optimizer.state_dict(),
            train_state=train_state,
            tokenizer=tokenizer,
            keep_last=self.config.keep_last,
        )

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()


def run_steps(
    run: StageRun,
    result: StageResult,
    config: StageConfig,
    optimizer: torch.optim.Optimizer,
    *,
    step_fn: Callable[[int], dict[str, float]],
    eval_fn: Callable[[], dict[str, float] | None],
    save_fn: Callable[[int], Path],
    stop_at_step: int | None = None,
    progress: bool = True,
    label: str | None = None,
) -> StageResult:
    """The step loop of every alignment stage, from ``result.start_step`` to ``result.max_steps``.

    ``step_fn(step)`` does one optimisation step (the learning rate already set) and returns
    its metrics, logged with ``step`` and ``lr`` on the run's first step, every ``log_every``
    and the last, and kept as ``result.first``/``last``. ``eval_fn()`` gives held-out metrics
    or None: before the first step (a fresh run logs it as step 0, the untrained baseline; a
    resumed run keeps it as ``first_eval`` only, the earlier run having reached that step),
    every ``eval_every`` steps and on the last step (``max_steps`` or ``stop_at_step``).
    ``save_fn(step)`` checkpoints on the last step and every ``checkpoint_every``.
    """
    start, max_steps = result.start_step, result.max_steps
    if start >= max_steps:
        result.status = "up-to-date"
        result.checkpoint = run.resume_from.path if run.resume_from else None
        return result
    logger = run.open_logger()
    bar = Progress(label or run.stage, total=max_steps, unit="steps", enabled=None if progress else False)
    bar.done = start
    started = time.monotonic()
    try:
        baseline = eval_fn()
        if baseline is not None:
            result.first_eval = dict(baseline)
            if start == 0:
                logger.log({"step": 0, **baseline})
        for step in range(start, max_steps):
            lr = lr_at(
                step,
                max_lr=config.optim.lr,
                warmup_steps=config.optim.warmup_steps,
                max_steps=max_steps,
                min_lr=config.optim.min_lr if config.optim.min_lr is not None else config.optim.lr / 10,
            )
            set_lr(optimizer, lr)
            metrics = step_fn(step)
            done = step + 1
            bar.advance()
            last = done in (max_steps, stop_at_step)
            record: dict[str, Any] = {}
            if done % config.log_every == 0 or done == start + 1 or last:
                record = {"step": done, **metrics, "lr": lr}
                result.first = result.first or dict(metrics)
                result.last = dict(metrics)
            if (config.eval_every and done % config.eval_every == 0) or last:
                val = eval_fn()
                if val is not None:
                    record.setdefault("step", done)
                    record.update(val)
                    result.eval = dict(val)
            if record:
                logger.log(record)
            if last or (config.checkpoint_every and done % config.checkpoint_every == 0):
                result.checkpoint = save_fn(done)
            result.step = done
            if done == stop_at_step and done < max_steps:
                result.status = "stopped"
                break
    finally:
        bar.close()
        run.close()
    result.elapsed_s = time.monotonic() - started
    return result


def step_batch(examples: Sequence[Any], config: StageConfig, step: int) -> list[Any]:
    """The training examples of step ``step`` (see :func:`batch_indices`)."""
    return [examples[i] for i in batch_indices(len(examples), config.batch_size, step, config.seed)]


def optimizer_step(
    loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float
) -> float:
    """Backward, clip, step, clear; the gradient norm before clipping."""
    loss.backward()
    grad_norm = clip_gradients(model, grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)


def load_policy(path: str | Path, device: torch.device) -> tuple[GPT, Checkpoint, Tokenizer]:
    """A language model (any checkpoint kind's trunk + LM head), in train mode, and its tokenizer."""
    model, ckpt = load_lm(path, device=device)
    return model, ckpt, load_checkpoint_tokenizer(ckpt.path)


def load_lm_weights(model: torch.nn.Module, ckpt: Checkpoint) -> None:
    """A checkpoint's LM weights into ``model``; extra keys (a reward head) are ignored."""
    wanted = model.state_dict()
    model.load_state_dict({k: v for k, v in ckpt.model_state.items() if k in wanted})
