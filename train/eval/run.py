"""``run_eval``: a checkpoint's multiple-choice accuracies, CORE mean and held-out bits per byte,
written as ``eval.json`` in its step folder.

    from train.eval import EvalConfig, run_eval
    results = run_eval("work/ckpt/base", EvalConfig(tasks="arc_easy,piqa", limit=200))

The results (and the file) hold the settings, each task's ``n``, ``acc``, ``acc_norm``,
``acc_char``, ``centered``, the CORE mean over the tasks, bits per byte per source, what the
metrics mean, and the identity of what was evaluated: the checkpoint's step folder and
metadata, a sha256 of its weights and tokenizer, the mix and its manifest's sha256, the tool
version. Nothing in it depends on time or on the batch size, so the same checkpoint and
settings give the same file. ``eval.json`` goes in the step folder (the weights it describes);
a rerun replaces it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curate.core.config import to_dict
from curate.core.errors import ConfigError, CurateError
from curate.core.files import atomic_write_json, sha256_file
from curate.core.progress import Progress
from curate.core.ranges import check_bounds
from curate.core.tasks import Task, resolve_tasks
from curate.core.tokenizer import TOKENIZER_FILE
from curate.core.version import __version__

from ..checkpoint import WEIGHTS_FILE, Checkpoint, load_checkpoint_tokenizer, load_lm
from ..model import GPT
from ..runtime import resolve_dtype, select_device
from . import bpb as bpb_mod
from .choice import core_mean, prepare, task_metrics
from .config import EvalConfig
from .scoring import Request, loglikelihoods

EVAL_FILE = "eval.json"
FORMAT = 1

DEFINITIONS = {
    "acc": "share of items whose right choice has the highest sum of log-probabilities of its continuation tokens",
    "acc_norm": "the same with each sum divided by the continuation's length in UTF-8 bytes",
    "acc_char": "the same divided by its length in characters (lm-evaluation-harness's acc_norm)",
    "centered": "(acc - 1/k) / (1 - 1/k), k = the number of choices: chance is 0, perfect is 1",
    "core": "the mean of the tasks' centered accuracies",
    "bpb": "negative log-likelihood in bits / UTF-8 bytes, over held-out documents, each token scored once",
}


class Session:
    """A loaded model and how to run it: what every part of an evaluation needs."""

    def __init__(self, model: GPT, tokenizer, device: torch.device, dtype: torch.dtype, config: EvalConfig):
        self.model, self.tokenizer, self.device, self.dtype, self.config = model, tokenizer, device, dtype, config
        self.block_size = model.config.block_size

    def score(self, requests: list[Request], label: str = "eval") -> np.ndarray:
        progress = Progress(label, total=len(requests), unit="sequences")
        try:
            return loglikelihoods(
                self.model,
                requests,
                batch_size=self.config.batch_size,
                device=self.device,
                dtype=self.dtype,
                pad_id=self.tokenizer.pad_id,
                on_batch=progress.advance,
            )
        finally:
            progress.close()


def run_eval(
    checkpoint: str | os.PathLike,
    config: EvalConfig | None = None,
    *,
    output: str | os.PathLike | None = None,
    note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate the model at ``checkpoint`` (a run or step folder) and write the results to
    ``output`` (default: ``eval.json`` in the step folder). Returns the results; ``note`` gets
    the lines worth telling a user (a missing held-out slice, truncated prompts ...)."""
    config = config or EvalConfig()
    check_bounds(config, "eval")
    config.validate()
    notes: list[str] = []

    def say(message: str) -> None:
        notes.append(message)
        if note is not None:
            note(message)

    tasks = resolve_tasks(config.task_spec) if config.task_spec else []
    device = select_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    model, ckpt = load_lm(checkpoint, device=device)
    refuse_reward_model(ckpt)
    if config.stride is not None and config.stride > model.config.block_size:
        raise ConfigError(f"stride {config.stride} is larger than the model's block size {model.config.block_size}")
    if config.chat and ckpt.meta.get("stage") == "pretrain":
        say("--chat on a pretrained model: it never saw the chat template; expect chance-level scores")
    session = Session(model, load_checkpoint_tokenizer(ckpt.path), device, dtype, config)
    per_task = {task.name: evaluate_task(session, task) for task in tasks}
    cut = [f"{name} {m['truncated']}/{m['n']}" for name, m in per_task.items() if m["truncated"]]
    if cut:
        say(f"items longer than the model's {session.block_size} tokens, contexts cut from the left: {', '.join(cut)}")
    results = {
        "format": FORMAT,
        "tool_version": __version__,
        "checkpoint": checkpoint_identity(ckpt, model),
        "tokenizer": tokenizer_identity(session.tokenizer, ckpt.path),
        "settings": {**to_dict(config), "device": str(device), "dtype": str(dtype).removeprefix("torch.")},
        "tasks": per_task,
        "core": {"tasks": list(per_task), "centered_mean": core_mean(per_task)} if per_task else None,
        "bpb": heldout_bpb(session, ckpt, say) if config.bpb else None,
        "text_bpb": text_bpb(session) if config.text else None,
        "definitions": DEFINITIONS,
        "notes": notes,
    }
    path = Path(output) if output is not None else ckpt.path / EVAL_FILE
    results["file"] = str(path)
    atomic_write_json(path, results)
    return results


def refuse_reward_model(ckpt: Checkpoint) -> None:
    """A reward model's trunk was trained to produce one score, not the next token, and its
    tied output layer is only the input embedding: its likelihoods mean nothing."""
    if ckpt.kind == "reward":
        parent = ckpt.meta.get("parent")
        hint = f"; evaluate the model it started from ({parent})" if parent else ""
        raise CurateError(
            f"{ckpt.path} is a reward model: its trunk is trained to output a score, not to "
            f"predict text (its tied output layer is just the input embedding){hint}"
        )


def evaluate_task(session: Session, task: Task) -> dict[str, Any]:
    config = session.config
    prepared = prepare(
        task,
        session.tokenizer,
        session.block_size,
        limit=config.limit,
        shots=config.shots,
        seed=config.seed,
        chat=config.chat,
    )
    metrics = task_metrics(prepared, session.score(prepared.requests, f"eval {task.name}"))
    metrics["shots"] = config.shots
    return metrics


def heldout_bpb(session: Session, ckpt: Checkpoint, say: Callable[[str], None]) -> dict[str, Any] | None:
    """Bits per byte per source on the mix's held-out documents (None, with a note, when the
    checkpoint's mix or held-out fraction cannot be found)."""
    config = session.config
    held = bpb_mod.find_heldout(ckpt.meta, ckpt.path, config.mix, config.val_fraction)
    if held.reason is not None:
        say(f"no held-out bits per byte: {held.reason}")
        return None
    texts, sha = bpb_mod.heldout_texts(held.mix, held.val_fraction, config.bpb_docs)
    if held.manifest_sha256 and sha and held.manifest_sha256 != sha:
        say(f"the mix at {held.mix} changed since training; its held-out slice may differ from the one held out")
    if not texts:
        say(f"no held-out documents in {held.mix} at val_fraction {held.val_fraction}")
        return None
    stride = config.stride or session.block_size
    sources = {name: score_docs(session, docs, f"bpb {name}") for name, docs in texts.items()}
    return {
        "mix": str(held.mix),
        "mix_manifest_sha256": sha,
        "val_fraction": held.val_fraction,
        "window": session.block_size,
        "stride": stride,
        "sources": sources,
        "all": bpb_mod.total(sources),
    }


def text_bpb(session: Session) -> dict[str, Any]:
    out = {}
    for spec in session.config.text:
        name, docs = bpb_mod.extra_texts(spec, session.config.bpb_docs)
        out[name] = score_docs(session, docs, f"bpb {name}")
    return out


def score_docs(session: Session, docs: list[str], label: str) -> dict[str, Any]:
    stride = session.config.stride or session.block_size
    return bpb_mod.score_texts(
        docs, session.tokenizer, session.block_size, stride, lambda requests: session.score(requests, label)
    )


def checkpoint_identity(ckpt: Checkpoint, model: GPT) -> dict[str, Any]:
    meta = ckpt.meta
    weights = ckpt.path / WEIGHTS_FILE
    return {
        "path": str(ckpt.path),
        "kind": ckpt.kind,
        "stage": meta.get("stage"),
        "step": ckpt.step,
        "tokens_seen": meta.get("tokens_seen"),
        "training_cutoff": meta.get("training_cutoff"),
        "parent": meta.get("parent"),
        "mix": meta.get("mix"),
        "mix_manifest_sha256": meta.get("mix_manifest_sha256"),
        "weights_sha256": sha256_file(weights) if weights.exists() else None,
        "model": model.config.to_dict(),
        "params": model.num_params(),
    }


def tokenizer_identity(tokenizer, step_dir: Path) -> dict[str, Any]:
    info = dict(tokenizer.describe())
    file = step_dir / TOKENIZER_FILE
    info["sha256"] = sha256_file(file) if file.exists() else None
    return info
