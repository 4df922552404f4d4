"""The settings of ``curate eval`` (and of a pipeline's ``[eval]`` table): one dataclass, built
with :func:`curate.core.config.from_dict`, whose numeric fields declare their allowed values in
``bounds`` (checked as it is built, before a model is loaded)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from curate.core.errors import ConfigError
from curate.core.ranges import COUNT, SIZE, Range

NO_TASKS = "none"  # ``--tasks none``: held-out bits per byte only


@dataclass
class EvalConfig:
    """What to evaluate and how. Every field has the meaning of the ``curate eval`` option of
    the same name (``batch_size`` is ``--batch-size``, ``text`` is ``--text``, repeatable)."""

    tasks: str | list[str] = "core"  # core | name,name (or a list) | task.jsonl | task.toml | none
    limit: int | None = None  # first N items of each task (None: all)
    shots: int = 0  # few-shot examples in front of each item
    seed: int = 1234  # few-shot examples are drawn from (seed, task, item)
    chat: bool = False  # question as the user turn, the choice as the assistant's reply
    batch_size: int = 16  # sequences per forward pass (results do not depend on it)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | float32 | bfloat16
    bpb: bool = True  # bits per byte on the mix's held-out documents, per source
    mix: str | None = None  # the mix folder (default: the one the checkpoint was trained on)
    val_fraction: float | None = None  # default: the pretraining run's data.val_fraction
    text: list[str] = field(default_factory=list)  # more text to score: DIR or NAME=DIR
    stride: int | None = None  # new tokens scored per window (default: the block size)
    bpb_docs: int | None = None  # at most this many documents per source (None: all)

    bounds: ClassVar[dict[str, Range]] = {
        "limit": SIZE,
        "shots": COUNT,
        "seed": COUNT,
        "batch_size": SIZE,
        "val_fraction": Range(0.0, 1.0, low_open=True),
        "stride": SIZE,
        "bpb_docs": SIZE,
    }

    def validate(self) -> None:
        """What ``bounds`` cannot say: a task list, and something to do."""
        if not self.task_list:
            raise ConfigError("eval: tasks is empty (use core, names such as arc_easy,piqa, task files, or none)")
        if self.task_spec is None and not self.bpb and not self.text:
            raise ConfigError("eval: nothing to do (tasks = none, no bits per byte and no text)")

    @property
    def task_list(self) -> list[str]:
        names = self.tasks.split(",") if isinstance(self.tasks, str) else self.tasks
        return [name.strip() for name in names if name.strip()]

    @property
    def task_spec(self) -> str | None:
        """The tasks as :func:`curate.core.tasks.resolve_tasks` takes them; None for ``none``."""
        return None if self.task_list == [NO_TASKS] else ",".join(self.task_list)
