"""What the alignment stages (sft, reward, rlhf, dpo, sample-pairs) share when they run.

:class:`StageRun` is one run of a stage (device, seed, the checkpoint it starts from, its
output directory: the lock, overwrite, resume, metrics log, checkpoints carrying the parent's
lineage forward); :func:`run_steps` the step loop around a stage's own update (learning-rate
schedule, progress, logging, evals, checkpoints, the stop at a loss that is not finite), so
the four stages log, eval and resume alike. A stage that calls :meth:`StageRun.track` gets
``consumed.parquet`` in every checkpoint: the training examples read so far, how many times
and how many tokens (train/lineage.py), a pure function of the step like the batch order. Their shared settings live in
:mod:`train.align.config`; reading records, the held-out split and the batch order in
:mod:`train.align.data`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from curate.core.errors import CurateError
from curate.core.progress import Progress
from curate.core.tokenizer import Tokenizer

from ..checkpoint import Checkpoint, is_hf_source, load_checkpoint_tokenizer, load_lm, resolve_checkpoint
from ..finite import NonFiniteError, check_step
from ..lineage import CONSUMED_FILE, consumption_summary, examples_consumed, write_consumed
from ..metrics import MetricsLogger
from ..model import GPT
from ..optim import build_optimizer, clip_gradients, scheduled_lr, set_lr
from ..rundir import RunDir, chain_of, lineage_of
from ..runtime import resolve_dtype, rng_state, seed_everything, select_device, set_rng_state
from .config import StageConfig
from .data import Origin, Skipped, batch_counts, batch_indices, data_digest

M = TypeVar("M", bound=torch.nn.Module)


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
    """One run of an alignment stage, from its first line to its last checkpoint.

    Made before anything else a stage does: it validates the config, picks the device and
    dtype and seeds the RNGs, so the models the stage then loads (:meth:`load_parent`) start
    alike on every run. Used as a context manager it holds the output directory's lock until
    the run is done, so a second run into it stops at once with one line naming this one.
    :meth:`open` starts the output directory over (``overwrite``) or finds the checkpoint to
    resume from; :meth:`begin` builds the optimizer and restores weights,
    optimizer and RNG state from it. Checkpoints (:meth:`save`) name the parent checkpoint and
    carry its lineage and tokenizer forward (see train/rundir.py).
    """

    def __init__(
        self,
        stage: str,
        config: StageConfig,
        output: str | Path,
        *,
        overwrite: bool = False,
        data: str | Path | None = None,
        say: Callable[[str], None] | None = None,
    ):
        config.validate()
        self.device = select_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        seed_everything(config.seed)
        self.stage = stage
        self.config = config
        self.dir = RunDir(output, stage, config)
        self.dir.lineage = lineage_of(None)
        self.overwrite = overwrite
        self.data = str(data) if data is not None else None
        self.data_sha256: str | None = None
        self.say = say or (lambda msg: None)
        self.notes: list[str] = []
        self.parent: Checkpoint | None = None
        self.tokenizer: Tokenizer | None = None
        self.optimizer: torch.optim.AdamW | None = None
        self.result: StageResult | None = None
        self.logger: MetricsLogger | None = None
        self.tracked: tuple[list[Origin], list[int], Callable[[int], np.ndarray]] | None = None
        self._held = contextlib.ExitStack()

    def __enter__(self) -> StageRun:
        self._held.enter_context(self.dir.lock())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self._held.close()

    @property
    def output(self) -> Path:
        return self.dir.path

    @property
    def resume_from(self) -> Checkpoint | None:
        return self.dir.resume_from

    @property
    def start_step(self) -> int:
        return self.dir.start_step

    def note(self, msg: str) -> None:
        self.notes.append(msg)
        self.say(msg)

    def load_parent(
        self, path: str | Path, loader: Callable[[str | Path, torch.device], tuple[M, Checkpoint]] = load_lm
    ) -> tuple[M, Tokenizer]:
        """The checkpoint the run starts from, as a model on the run's device (``loader``:
        ``load_lm`` or ``load_scalar_model``), and its tokenizer."""
        model, ckpt = loader(self.resolve(path), self.device)
        for line in ckpt.meta.get("import_notes") or []:
            self.note(f"{path}: {line}")
        self.parent = ckpt
        self.dir.lineage = {
            **lineage_of(ckpt),
            "parent_chain": chain_of(ckpt),
            "consumed_cutoff": ckpt.meta.get("consumed_cutoff"),
        }
        self.tokenizer = load_checkpoint_tokenizer(ckpt.path)
        return model, self.tokenizer

    def resolve(self, path: str | Path) -> str | Path:
        """A checkpoint path as the loaders take it: ``hf:DIR`` converted once under the run's
        ``.curate/base/`` (kept across reruns and ``--overwrite``: keyed by the source's files),
        every other path unchanged."""
        if not is_hf_source(path):
            return path
        return resolve_checkpoint(path, cache=self.output / ".curate" / "base")

    def open(self) -> None:
        """Start over (``overwrite``), or find the checkpoint to resume from."""
        if self.overwrite:
            self.dir.reset()
        resuming = self.dir.open()
        if self.data is not None and Path(self.data).exists():
            self.data_sha256 = data_digest(self.data)
        if not resuming:
            return
        ckpt = self.dir.load_resume()
        if ckpt.train_state is None or ckpt.optimizer_state is None:
            raise CurateError(f"{ckpt.path}: has no optimizer/train state to resume from; use --overwrite")
        if self.data_sha256 and ckpt.meta.get("data_sha256") not in (None, self.data_sha256):
            self.note(f"the data at {self.data} changed since {ckpt.path.name}; batches will not line up")

    def begin(
        self,
        model: torch.nn.Module,
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
        config = self.config
        if max_steps is None:  # a DataStageConfig: max_steps, else epochs over the examples
            max_steps = config.max_steps or max(1, math.ceil(examples * config.epochs / config.batch_size))
        optim = config.optim
        self.optimizer = build_optimizer(
            model, lr=optim.lr, weight_decay=optim.weight_decay, betas=(optim.beta1, optim.beta2), device=self.device
        )
        ckpt, start = self.resume_from, self.start_step
        if ckpt is not None:
            (load_model or (lambda c: load_lm_weights(model, c)))(ckpt)
            self.optimizer.load_state_dict(ckpt.optimizer_state)
            set_rng_state(ckpt.train_state["rng"])
            self.note(f"resuming from {ckpt.path.name} (step {start} of {max_steps})")
        # The result's notes list is this run's, kept live.
        self.result = StageResult(
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
        return self.optimizer, self.result

    def track(
        self,
        examples: Sequence[Any],
        tokens_of: Callable[[Any], int],
        counts: Callable[[int], np.ndarray] | None = None,
    ) -> None:
        """Record with every checkpoint which of the training ``examples`` (each with an
        ``origin``) the steps so far read: ``counts(step)`` gives the passes over each
        (default: :func:`batch_counts` of the config's batch size and seed), ``tokens_of`` an
        example's tokens per pass."""
        data = self.data or "examples"
        # An example without an origin (a prompt from a .txt file) is named by its place.
        origins = [getattr(e, "origin", None) or Origin(f"{data}:{i}", data, i) for i, e in enumerate(examples)]
        tokens = [int(tokens_of(e)) for e in examples]
        config = self.config
        if counts is None:

            def counts(step: int) -> np.ndarray:
                return batch_counts(len(origins), config.batch_size, step, config.seed)

        self.tracked = (origins, tokens, counts)

    def consumed_record(self, step: int) -> tuple[dict[str, Any], dict[str, Callable[[Path], None]]]:
        """(metadata, files) of what the tracked examples' first ``step`` steps read."""
        if self.tracked is None:
            return {}, {}
        origins, tokens, counts = self.tracked
        table = examples_consumed(
            [o.id for o in origins], [o.file for o in origins], [o.row for o in origins], tokens, counts(step)
        )
        summary = consumption_summary(table)
        for key in ("by_month", "cutoff"):  # examples carry no dates; the cutoff is the parent's
            summary.pop(key)
        return {"consumed": summary}, {CONSUMED_FILE: lambda at: write_consumed(at, table)}

    def open_logger(self) -> MetricsLogger:
        self.logger = self.dir.open_metrics()
        return self.logger

    def save(
        self,
        step: int,
        *,
        model_state: dict[str, torch.Tensor],
        model_config: dict[str, Any],
        kind: str,
        extra_meta: dict[str, Any] | None = None,
        extra_state: dict[str, Any] | None = None,
    ) -> Path:
        """Checkpoint ``step``: the weights, the optimizer, the RNG state (plus ``extra_state``)
        and metadata: the data and its digest, the parent's tokenizer, ``extra_meta``."""
        train_state = {"step": step, "rng": rng_state(), **(extra_state or {})}
        fields: dict[str, Any] = {"data": self.data, "data_sha256": self.data_sha256}
        if self.parent is not None and "tokenizer" in self.parent.meta:
            fields["tokenizer"] = self.parent.meta["tokenizer"]
        consumed, files = self.consumed_record(step)
        return self.dir.save(
            step,
            fields={**fields, **consumed, **(extra_meta or {})},
            model_state=model_state,
            model_config=model_config,
            kind=kind,
            optimizer_state=self.optimizer.state_dict(),
            train_state=train_state,
            tokenizer=self.tokenizer,
            files=files,
        )

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
            self.logger = None


def run_steps(
    run: StageRun,
    *,
    step_fn: Callable[[int], dict[str, float]],
    eval_fn: Callable[[], dict[str, float] | None],
    save_fn: Callable[[int], Path],
    stop_at_step: int | None = None,
    progress: bool = True,
    label: str | None = None,
) -> StageResult:
    """The step loop of every alignment stage, from the run's start step to its ``max_steps``
    (``run.begin`` has made the optimizer and the result this fills in).

    ``step_fn(step)`` does one optimisation step (the learning rate already set) and returns
    its metrics, logged with ``step`` and ``lr`` on step 1, every ``log_every`` and on
    ``max_steps``, and kept as ``result.first``/``last``. ``eval_fn()`` gives held-out metrics
    or None: before the first step (a fresh run logs it as step 0, the untrained baseline; a
    resumed run keeps it as ``first_eval`` only, the earlier run having reached that step),
    every ``eval_every`` steps and on ``max_steps``. ``save_fn(step)`` checkpoints on
    ``max_steps``, on ``stop_at_step`` and every ``checkpoint_every``. What is logged depends
    on the step alone, so a run stopped and resumed logs what the uninterrupted run logs.
    A step whose loss or gradient norm is not finite (:func:`optimizer_step`) stops the run
    with a :class:`~train.finite.NonFiniteError` naming it, before the update is applied.
    """
    result, config, optimizer = run.result, run.config, run.optimizer
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
            lr = scheduled_lr(step, config.optim, max_steps)
            set_lr(optimizer, lr)
            done = step + 1
            try:
                metrics = step_fn(step)
            except NonFiniteError as exc:
                raise exc.at_step(done) from None
            bar.advance()
            last, stopping = done == max_steps, done == stop_at_step
            record: dict[str, Any] = {}
            if done % config.log_every == 0 or done == 1 or last or stopping:
                result.first = result.first or dict(metrics)
                result.last = dict(metrics)
            if done % config.log_every == 0 or done == 1 or last:
                record = {"step": done, **metrics, "lr": lr}
            if (config.eval_every and done % config.eval_every == 0) or last:
                val = eval_fn()
                if val is not None:
                    record.setdefault("step", done)
                    record.update(val)
                    result.eval = dict(val)
            if record:
                logger.log(record)
            if last or stopping or (config.checkpoint_every and done % config.checkpoint_every == 0):
                result.checkpoint = save_fn(done)
            result.step = done
            if stopping and not last:
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
    """Backward, clip, step, clear; the gradient norm before clipping. A loss or gradient norm
    that is not finite raises :class:`~train.finite.NonFiniteError` before the update (the
    stages read both every step anyway, so the check adds no synchronisation)."""
    loss.backward()
    grad_norm = float(clip_gradients(model, grad_clip))
    check_step(float(loss.detach()), grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def load_policy(path: str | Path, device: torch.device) -> tuple[GPT, Checkpoint, Tokenizer]:
    """A language model (any checkpoint kind's trunk + LM head), in eval mode, its checkpoint and tokenizer."""
    model, ckpt = load_lm(path, device=device)
    return model, ckpt, load_checkpoint_tokenizer(ckpt.path)


def load_lm_weights(model: torch.nn.Module, ckpt: Checkpoint) -> None:
    """A checkpoint's LM weights into ``model``; extra keys (a reward head) are ignored."""
    wanted = model.state_dict()
    model.load_state_dict({k: v for k, v in ckpt.model_state.items() if k in wanted})
