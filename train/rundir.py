"""The output directory of a training run: one protocol for pretraining and every alignment stage.

    RUN_DIR/
      step-000500/ ...   checkpoints (train/checkpoint.py), the newest ``keep_last`` kept
      latest             names the newest complete checkpoint
      metrics.jsonl      one JSON object per logged step
      .curate/lock       held while a run writes here
      ...                what a stage adds (pretraining: trace/, tensorboard/)

A rerun into the same directory resumes from its newest checkpoint; ``--overwrite`` first
deletes what an earlier run wrote there, and nothing else (notes or configs kept beside the
checkpoints survive). One run at a time: a run holds ``.curate/lock`` (:meth:`RunDir.lock`),
so a second one into the same directory stops at once with one line naming the first. Every checkpoint's metadata names the stage, the step, the training
config, the tool version and the run's lineage: the checkpoint it started from (``parent``)
and, for the alignment stages, what that one carried forward (its stage, training cutoff and
mix), and the whole ``parent_chain`` (:func:`chain_of`). A resumed run keeps recording the
lineage its first run recorded.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import torch

from curate.core.config import to_dict
from curate.core.errors import ConfigError, CurateError
from curate.core.lock import LOCK_NAME, folder_lock
from curate.core.tokenizer import Tokenizer
from curate.core.version import __version__

from .checkpoint import LATEST_FILE, Checkpoint, list_step_dirs, load_checkpoint, save_checkpoint
from .metrics import MetricsLogger, truncate_metrics

METRICS_FILE = "metrics.jsonl"
STATE_DIR = ".curate"  # the run's own bookkeeping (the lock), kept by --overwrite


class RunConfig(Protocol):
    """What RunDir needs of a stage's config dataclass (recorded whole as ``train_config``)."""

    keep_last: int


def chain_of(parent: Checkpoint) -> list[dict[str, Any]]:
    """The parent chain a run started from ``parent`` records (``parent_chain``): the
    checkpoints it descends from, oldest first, ``parent`` last (base -> sft -> rm/rlhf/dpo)."""
    meta = parent.meta
    return [
        *(meta.get("parent_chain") or []),
        {"path": str(parent.path), "stage": meta.get("stage"), "step": meta.get("step")},
    ]


def lineage_of(parent: Checkpoint | None) -> dict[str, Any]:
    """The lineage a run started from ``parent`` records: the parent itself, its stage, and the
    training cutoff and mix it carries (so base -> sft -> rm/rlhf/dpo stays traceable)."""
    meta = parent.meta if parent is not None else {}
    return {
        "parent": str(parent.path) if parent is not None else None,
        "parent_stage": meta.get("stage"),
        "training_cutoff": meta.get("training_cutoff"),
        "mix_manifest_sha256": meta.get("mix_manifest_sha256"),
    }


class RunDir:
    """A run directory for ``stage``: reset, resume, checkpoint metadata, the metrics log.

    ``lineage`` holds the metadata keys a run inherits (at least ``parent``); once a run
    resumes, those keys come from the checkpoint it resumed from instead.
    """

    def __init__(self, path: str | Path, stage: str, config: RunConfig, *, extra_dirs: Sequence[str] = ()):
        self.path = Path(path)
        self.stage = stage
        self.config = config
        self.extra_dirs = tuple(extra_dirs)  # directories the stage writes besides checkpoints and metrics
        self.lineage: dict[str, Any] = {"parent": None}
        self.resume_from: Checkpoint | None = None

    def _check(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path}: exists and is not a directory")

    def lock(self) -> AbstractContextManager[None]:
        """Hold the directory's lock for the block: a second run into it gets one line naming
        this one (exit 2). ``rlhf-ppo`` and ``rlhf-rloo`` runs both name `curate train rlhf`."""
        self._check()
        command = f"`curate train {self.stage.split('-')[0]}`"
        return folder_lock(self.path / STATE_DIR / LOCK_NAME, command, self.path)

    def reset(self) -> None:
        """``--overwrite``: delete the checkpoints (and half-written ones a kill left behind),
        ``latest``, the metrics log and the stage's extra directories."""
        self._check()
        if not self.path.is_dir():
            return
        for step_dir in self.path.glob("step-*"):
            if step_dir.is_dir():
                shutil.rmtree(step_dir)
        for tmp in self.path.glob(".step-*"):
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        for name in (LATEST_FILE, METRICS_FILE):
            (self.path / name).unlink(missing_ok=True)
        for name in self.extra_dirs:
            shutil.rmtree(self.path / name, ignore_errors=True)

    def checkpoints(self) -> list[Path]:
        """Complete step directories, oldest first."""
        return list_step_dirs(self.path)

    def open(self, resume: bool | None = None) -> bool:
        """Create the directory; whether it holds a checkpoint to resume from. ``resume``: None
        resumes when there is one, True requires one, False refuses to touch one."""
        self._check()
        self.path.mkdir(parents=True, exist_ok=True)
        existing = self.checkpoints()
        if resume is True and not existing:
            raise CurateError(f"{self.path}: no checkpoint to resume from")
        if resume is False and existing:
            raise CurateError(f"{self.path} already holds checkpoints; resume, or pass --overwrite to start over")
        return bool(existing)

    def load_resume(self, map_location: str | torch.device = "cpu", lazy: bool = False) -> Checkpoint:
        """The newest checkpoint, optimizer and train state included; it must be this stage's
        (``lazy``: read as ranks that keep shards read it, see ``load_checkpoint``)."""
        ckpt = load_checkpoint(self.path, map_location=map_location, with_optimizer=True, lazy=lazy)
        if ckpt.meta.get("stage") != self.stage:
            raise CurateError(
                f"{self.path} holds a {ckpt.meta.get('stage') or ckpt.kind} checkpoint, not {self.stage}; "
                "use another output directory or --overwrite"
            )
        self.resume_from = ckpt
        return ckpt

    @property
    def start_step(self) -> int:
        """The step the run continues from: the resumed checkpoint's, else 0."""
        return int(self.resume_from.train_state["step"]) if self.resume_from is not None else 0

    def meta(self, step: int, fields: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint's metadata: what every stage records, plus the stage's own ``fields``."""
        info = {
            "stage": self.stage,
            "step": step,
            **self.lineage,
            **fields,
            "train_config": to_dict(self.config),
            "tool_version": __version__,
        }
        if self.resume_from is not None:
            for key in self.lineage:
                info[key] = self.resume_from.meta.get(key)
        return info

    def save(
        self,
        step: int,
        *,
        fields: dict[str, Any],
        model_state: dict[str, torch.Tensor],
        model_config: dict[str, Any],
        kind: str,
        optimizer_state: dict[str, Any] | None,
        train_state: dict[str, Any],
        tokenizer: Tokenizer,
        files: Mapping[str, Callable[[Path], None]] | None = None,
    ) -> Path:
        """Write checkpoint ``step`` (metadata from :meth:`meta`), keeping the newest
        ``keep_last``; ``files``: more files of the step (see :func:`save_checkpoint`)."""
        return save_checkpoint(
            self.path,
            step,
            model_state=model_state,
            model_config=model_config,
            meta=self.meta(step, fields),
            kind=kind,
            optimizer_state=optimizer_state,
            train_state=train_state,
            tokenizer=tokenizer,
            keep_last=self.config.keep_last,
            files=files,
        )

    def open_metrics(self, *, tensorboard: bool = False, enabled: bool = True) -> MetricsLogger:
        """The metrics log, appended to. A resumed run first drops the lines past its start
        step (a run killed after its last checkpoint logged steps that will be logged again);
        a run with nothing to resume starts a new log (one killed before its first checkpoint
        left lines that this run logs again from step 0)."""
        if enabled and self.resume_from is not None:
            truncate_metrics(self.path / METRICS_FILE, self.start_step)
        elif enabled:
            (self.path / METRICS_FILE).unlink(missing_ok=True)
        return MetricsLogger(
            self.path / METRICS_FILE, self.path / "tensorboard" if tensorboard else None, enabled=enabled
        )
