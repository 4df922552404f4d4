"""Supervised fine-tuning (SFT): teach a pretrained model to answer in the chat template.

    curate train sft --base work/ckpt/base --data samples/sft/qa.jsonl -o work/ckpt/sft

Data is JSONL or Parquet (a file or a directory of them) with ``prompt``/``response`` fields
or a ``messages`` list (see :mod:`train.chat`). Every example is rendered in the chat
template; the loss counts only the assistant's tokens. Batches are right-padded with an
attention mask, so no example ever attends to another's tokens. A slice of the examples
(chosen by a hash of their content, so the split is stable) is held out for an eval loss.

How this differs from nanochat's chat_sft.py: no task mixture and no padding-masked
"packing"; examples are shuffled per epoch by a seeded permutation, which makes a resumed run
(rerun into the same output directory) take exactly the batches the uninterrupted run would.

This module also holds what the other alignment stages (reward, rlhf, dpo) share: the
alignment optimiser settings, the output-directory handling (:class:`StageRun`: overwrite,
resume, checkpoint metadata carried from the parent), deterministic batch order, padding
and per-token log-probs of a response.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from curate import __version__
from curate.config import to_dict
from curate.errors import ConfigError, CurateError, InputError
from curate.progress import Progress
from curate.tokenizer import Tokenizer

from .chat import encode_chat, normalize_messages
from .checkpoint import (
    LATEST_FILE,
    Checkpoint,
    list_step_dirs,
    load_checkpoint,
    load_checkpoint_tokenizer,
    load_lm,
    save_checkpoint,
)
from .loop import (
    MetricsLogger,
    autocast_context,
    build_optimizer,
    clip_gradients,
    lr_at,
    resolve_dtype,
    rng_state,
    seed_everything,
    select_device,
    set_lr,
    set_rng_state,
    truncate_metrics,
)
from .model import GPT

METRICS_FILE = "metrics.jsonl"

# =============================================================================== shared


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


def stable_fraction(key: str) -> float:
    """A number in [0, 1) from a hash of ``key``: held-out membership that does not depend
    on order, seed or how many examples there are."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Example indices of optimisation step ``step`` (0-based): the examples of epoch e in a
    permutation seeded by (seed, e), read in order and cut into batches. A pure function of
    its arguments, so resuming at step s needs nothing but s."""
    if n < 1:
        raise ValueError("no examples")
    out: list[int] = []
    pos = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(pos, n)
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g).tolist()
        take = min(batch_size - len(out), n - offset)
        out.extend(perm[offset : offset + take])
        pos += take
    return out


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int, masks: Sequence[Sequence[int]] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(ids, attention_mask, loss_mask or None) for sequences padded on the right."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    lm = torch.zeros((len(seqs), width), dtype=torch.long) if masks is not None else None
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attn[i, : len(s)] = 1
        if lm is not None:
            lm[i, : len(s)] = torch.tensor(masks[i], dtype=torch.long)
    return ids, attn, lm


def response_logprobs(model: GPT, ids: torch.Tensor, attn: torch.Tensor, loss_mask: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of ``ids[:, 1:]`` under ``model`` and the mask of the tokens that
    count (``loss_mask[:, 1:]``, padding excluded): both (B, T-1)."""
    logits, _ = model(ids[:, :-1], attention_mask=attn[:, :-1])
    logp = torch.log_softmax(logits.float(), dim=-1)
    token_logp = torch.gather(logp, -1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = (loss_mask[:, 1:] * attn[:, 1:]).to(token_logp.dtype)
    return token_logp * mask, mask


def read_records(path: str | Path, what: str = "examples") -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) from a ``.jsonl``/``.json`` file, a ``.parquet`` file or a directory of
    them. A line that is not valid JSON is yielded as ``(where, {"__error__": message})`` so
    the caller counts it instead of stopping."""
    import pyarrow.parquet as pq

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".json", ".parquet")
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise InputError(f"{path}: no .jsonl or .parquet {what} files")
    elif path.exists():
        files = [path]
    else:
        raise InputError(f"{path}: no such file or directory")
    for file in files:
        if file.suffix == ".parquet":
            try:
                pf = pq.ParquetFile(file)
            except Exception as exc:  # pyarrow raises several types for a bad file
                raise InputError(f"{file}: not a readable Parquet file ({exc})") from None
            row_no = 0
            for batch in pf.iter_batches(batch_size=1024):
                for row in batch.to_pylist():
                    yield f"{file} row {row_no}", row
                    row_no += 1
        else:
            with open(file, encoding="utf-8", errors="replace") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    where = f"{file}:{lineno}"
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield where, {"__error__": f"invalid JSON ({exc.msg})"}
                        continue
                    if not isinstance(row, dict):
                        yield where, {"__error__": "not a JSON object"}
                        continue
                    yield where, row


def data_digest(path: str | Path) -> str:
    """sha256 over the data file(s), recorded in checkpoint metadata."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@dataclass
class Skipped:
    """Records that could not be used, by reason, with the first place each reason occurred."""

    counts: dict[str, int] = field(default_factory=dict)
    first: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.first.setdefault(reason, where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        return [f"skipped {n} record(s): {reason} (first at {self.first[reason]})" for reason, n in self.counts.items()]

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "first": dict(self.first)}


@dataclass
class StageResult:
    """What a finished (or resumed, or already complete) alignment run reports."""

    stage: str
    output: Path
    checkpoint: Path | None
    start_step: int
    step: int
    max_steps: int
    status: str  # "done" | "up-to-date"
    elapsed_s: float = 0.0
    first: dict[str, float] = field(default_factory=dict)  # first logged metrics
    last: dict[str, float] = field(default_factory=dict)  # last logged metrics
    eval: dict[str, float] = field(default_factory=dict)  # last eval metrics
    first_eval: dict[str, float] = field(default_factory=dict)
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

    def __init__(self, stage: str, output: str | Path, *, overwrite: bool, parent: Checkpoint | None,
                 config: Any, data: str | Path | None = None, keep_last: int = 2,
                 say: Callable[[str], None] | None = None):
        self.stage = stage
        self.output = Path(output)
        self.parent = parent
        self.config = config
        self.keep_last = keep_last
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
                raise CurateError(f"{self.output} holds a {ckpt.meta.get('stage') or ckpt.kind} checkpoint, not {stage}; "
                                  "use another output directory or --overwrite")
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
        for path in self.output.glob("step-*"):
            shutil.rmtree(path, ignore_errors=True)
        for path in self.output.glob(".step-*"):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        for name in (LATEST_FILE, METRICS_FILE):
            (self.output / name).unlink(missing_ok=True)

    @property
    def start_step(self) -> int:
        return int(self.resume_from.train_state["step"]) if self.resume_from else 0

    def open_logger(self) -> MetricsLogger:
        if self.resume_from is not None:
            truncate_metrics(self.output / METRICS_FILE, self.start_step)
        self.logger = MetricsLogger(self.output / METRICS_FILE)
        return self.logger

    def meta(self, step: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        parent_meta = self.parent.meta if self.parent is not None else {}
        info = {
            "stage": self.stage, "step": step, "parent": str(self.parent.path) if self.parent is not None else None,
            "parent_stage": parent_meta.get("stage"),
            "training_cutoff": parent_meta.get("training_cutoff"),
            "mix_manifest_sha256": parent_meta.get("mix_manifest_sha256"),
            "data": self.data, "data_sha256": self.data_sha256,
            "train_config": to_dict(self.config), "tool_version": __version__,
        }
        if self.resume_from is not None:
            # Lineage of a resumed run is the lineage recorded when it started.
            for key in ("parent", "parent_stage", "training_cutoff", "mix_manifest_sha256"):
                info[key] = self.resume_from.meta.get(key)
        if "tokenizer" in parent_meta:
            info["tokenizer"] = parent_meta["tokenizer"]
        return {**info, **(extra or {})}

    def save(self, step: int, *, model_state: dict[str, torch.Tensor], model_config: dict[str, Any], kind: str,
             optimizer: torch.optim.Optimizer, tokenizer: Tokenizer, extra_meta: dict[str, Any] | None = None,
             extra_state: dict[str, Any] | None = None) -> Path:
        train_state = {"step": step, "rng": rng_state(), **(extra_state or {})}
        return save_checkpoint(
            self.output, step, model_state=model_state, model_config=model_config, meta=self.meta(step, extra_meta),
            kind=kind, optimizer_state=optimizer.state_dict(), train_state=train_state, tokenizer=tokenizer,
            keep_last=self.keep_last,
        )

    def restore_rng(self) -> None:
        if self.resume_from is not None:
            set_rng_state(self.resume_from.train_state["rng"])

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()


def make_optimizer(model: torch.nn.Module, optim: AlignOptim, device: torch.device) -> torch.optim.AdamW:
    return build_optimizer(model, lr=optim.lr, weight_decay=optim.weight_decay, betas=(optim.beta1, optim.beta2),
                           device=device)


def schedule_lr(optimizer: torch.optim.Optimizer, optim: AlignOptim, step: int, max_steps: int) -> float:
    min_lr = optim.min_lr if optim.min_lr is not None else optim.lr / 10
    lr = lr_at(step, max_lr=optim.lr, warmup_steps=optim.warmup_steps, max_steps=max_steps, min_lr=min_lr)
    set_lr(optimizer, lr)
    return lr


def steps_for(n_examples: int, batch_size: int, epochs: float, max_steps: int | None) -> int:
    if max_steps is not None:
        return max_steps
    return max(1, math.ceil(n_examples * epochs / batch_size))


def load_policy(path: str | Path, device: torch.device) -> tuple[GPT, Checkpoint, Tokenizer]:
    """A language model (any checkpoint kind's trunk + LM head), in train mode, and its tokenizer."""
    model, ckpt = load_lm(path, device=device)
    return model, ckpt, load_checkpoint_tokenizer(ckpt.path)


# =============================================================================== SFT


@dataclass
class SFTConfig:
    optim: AlignOptim = field(default_factory=AlignOptim)
    batch_size: int = 8
    epochs: float = 1.0  # passes over the training examples (ignored when max_steps is set)
    max_steps: int | None = None
    max_len: int | None = None  # tokens per example (default: the model's block_size + 1)
    val_fraction: float = 0.1  # examples held out for the eval loss (by a hash of their content)
    eval_every: int = 50  # steps between evals (0 = only at the end)
    log_every: int = 10
    checkpoint_every: int = 0  # 0 = only at the end
    keep_last: int = 2
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"

    def validate(self) -> None:
        self.optim.validate()
        check_positive(self, ["batch_size", "max_steps", "log_every", "max_len"])
        check_positive(self, ["eval_every", "checkpoint_every", "keep_last"], minimum=0)
        if self.epochs <= 0:
            raise ConfigError(f"epochs must be positive, got {self.epochs}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass
class ChatExample:
    ids: list[int]
    loss_mask: list[int]


def load_sft_examples(path: str | Path, tokenizer: Tokenizer, max_len: int, val_fraction: float
                      ) -> tuple[list[ChatExample], list[ChatExample], Skipped]:
    """Tokenised (train, held-out, skipped) examples. Held out: a hash of the conversation
    under ``val_fraction``. SFT sets are small (thousands to a few million turns), so the
    token ids are kept in memory."""
    train: list[ChatExample] = []
    held: list[ChatExample] = []
    skipped = Skipped()
    for where, row in read_records(path, "SFT"):
        if "__error__" in row:
            skipped.add(row["__error__"], where)
            continue
        try:
            messages = normalize_messages(row, where)
        except InputError:
            skipped.add("needs prompt/response or messages", where)
            continue
        if not any(m["role"] == "assistant" for m in messages):
            skipped.add("no assistant turn", where)
            continue
        ids, mask = encode_chat(messages, tokenizer, max_len=max_len)
        if sum(mask[1:]) == 0:
            skipped.add(f"no assistant tokens within max_len {max_len}", where)
            continue
        key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        (held if stable_fraction(key) < val_fraction else train).append(ChatExample(ids, mask))
    if not train and held:
        # Too few examples to hold any out: train on all of them rather than on none.
        train, held = held, []
    if not train:
        detail = f" ({'; '.join(skipped.lines())})" if skipped.total else ""
        raise InputError(f"{path}: no usable SFT examples{detail}")
    return train, held, skipped


def sft_batch(examples: Sequence[ChatExample], pad_id: int, device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, targets, attention_mask, loss_mask) for one padded batch: inputs are ids[:-1],
    targets ids[1:] with -100 wherever the loss must not look (prompt, role markers, padding)."""
    ids, attn, lm = pad_right([e.ids for e in examples], pad_id, [e.loss_mask for e in examples])
    x, y = ids[:, :-1], ids[:, 1:].clone()
    target_mask = (lm[:, 1:] * attn[:, 1:]).bool()
    y[~target_mask] = -100
    return x.to(device), y.to(device), attn[:, :-1].to(device), target_mask.to(device)


@torch.no_grad()
def sft_eval_loss(model: GPT, examples: Sequence[ChatExample], batch_size: int, pad_id: int,
                  device: torch.device, dtype: torch.dtype) -> float | None:
    """Mean cross-entropy per assistant token over ``examples``."""
    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        x, y, attn, _ = sft_batch(examples[start : start + batch_size], pad_id, device)
        with autocast_context(device, dtype):
            logits, _ = model(x, attention_mask=attn)
        total += float(F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1),
                                       ignore_index=-100, reduction="sum"))
        count += int((y != -100).sum())
    model.train(was_training)
    return total / count if count else None


def sft(config: SFTConfig, base: str | Path, data: str | Path, output: str | Path, *, overwrite: bool = False,
        stop_at_step: int | None = None, progress: bool = True,
        on_message: Callable[[str], None] | None = None) -> StageResult:
    """Fine-tune the model at ``base`` on the chat examples at ``data``; checkpoints (kind
    "policy") in ``output``. Rerunning into ``output`` resumes; ``stop_at_step`` checkpoints
    and stops early, keeping the full run's schedule."""
    config.validate()
    device = select_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    seed_everything(config.seed)
    model, base_ckpt, tokenizer = load_policy(base, device)
    max_len = config.max_len or model.config.block_size + 1
    if max_len > model.config.block_size + 1:
        raise ConfigError(f"max_len {max_len} exceeds the model's block_size + 1 ({model.config.block_size + 1})")
    run = StageRun("sft", output, overwrite=overwrite, parent=base_ckpt, config=config, data=data,
                   keep_last=config.keep_last, say=on_message)
    train_ex, held_ex, skipped = load_sft_examples(data, tokenizer, max_len, config.val_fraction)
    for line in skipped.lines():
        run.note(line)
    max_steps = steps_for(len(train_ex), config.batch_size, config.epochs, config.max_steps)
    optimizer = make_optimizer(model, config.optim, device)
    start = run.start_step
    if run.resume_from is not None:
        model.load_state_dict({k: v for k, v in run.resume_from.model_state.items() if k in model.state_dict()})
        optimizer.load_state_dict(run.resume_from.optimizer_state)
        run.restore_rng()
        run.note(f"resuming from {run.resume_from.path.name} (step {start} of {max_steps})")
    result = StageResult("sft", run.output, None, start, start, max_steps, "done", examples=len(train_ex),
                         held_out=len(held_ex), skipped=skipped, notes=run.notes)
    if start >= max_steps:
        result.status, result.checkpoint = "up-to-date", run.resume_from.path if run.resume_from else None
        return result
    logger = run.open_logger()
    bar = Progress("sft", total=max_steps, unit="steps", enabled=None if progress else False)
    bar.done = start
    started = time.monotonic()
    pad_id = tokenizer.pad_id
    model.train()
    try:
        for step in range(start, max_steps):
            lr = schedule_lr(optimizer, config.optim, step, max_steps)
            batch = [train_ex[i] for i in batch_indices(len(train_ex), config.batch_size, step, config.seed)]
            x, y, attn, _ = sft_batch(batch, pad_id, device)
            with autocast_context(device, dtype):
                _, loss = model(x, y, attention_mask=attn)
            loss.backward()
            grad_norm = clip_gradients(model, config.optim.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            bar.advance()
            last = done == max_steps or done == stop_at_step
            record: dict[str, Any] = {}
            if done % config.log_every == 0 or done == start + 1 or last:
                record = {"step": done, "loss": loss.item(), "lr": lr, "grad_norm": grad_norm,
                          "tokens": int((y != -100).sum())}
                result.first = result.first or {"loss": loss.item()}
                result.last = {"loss": loss.item()}
            if (config.eval_every and done % config.eval_every == 0) or last or done == start + 1:
                val = sft_eval_loss(model, held_ex, config.batch_size, pad_id, device, dtype)
                if val is not None:
                    record.setdefault("step", done)
                    record["val_loss"] = val
                    result.first_eval = result.first_eval or {"val_loss": val}
                    result.eval = {"val_loss": val}
            if record:
                logger.log(record)
            if last or (config.checkpoint_every and done % config.checkpoint_every == 0):
                result.checkpoint = run.save(done, model_state=model.state_dict(),
                                             model_config=model.config.to_dict(), kind="policy", optimizer=optimizer,
                                             tokenizer=tokenizer, extra_meta={"val_loss": result.eval.get("val_loss")})
            result.step = done
            if done == stop_at_step and done < max_steps:
                result.status = "stopped"
                break
    finally:
        bar.close()
        run.close()
    result.elapsed_s = time.monotonic() - started
    return result
