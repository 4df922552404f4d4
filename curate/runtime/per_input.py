"""The per-input runner: a stage whose work splits by input file (crawl, filter).

The stage gives a function that turns one input into shards (:data:`ProcessFn`, called with a
:class:`Task`); the runner does everything around it: stable input numbers, the executor's
workers or Ray tasks, per-input completion records (so a rerun resumes and never duplicates),
progress, and the manifest whose counts always satisfy ``read = kept + rejected + errors``.

Output layout of such a stage's folder::

    part-00003-000.parquet     shards of input #3 (names depend only on the input's index)
    rejected/part-...parquet   secondary outputs, one sub-folder each
    manifest.json              written last, atomically
    .curate/state.json         stage, config hash and the input list (index -> path)
    .curate/inputs/00003.json  one per completed input: its counts and shards
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.core.accounting import Stats, failed_input
from curate.core.errors import CurateError, OutputError
from curate.core.files import atomic_write_json, is_write_failure, output_error
from curate.core.manifest import build_manifest, config_hash
from curate.core.progress import Progress
from curate.core.shards import DEFAULT_SHARD_BYTES, ShardInfo, ShardWriter
from curate.runtime import executor as executor_mod
from curate.runtime.executor import Executor
from curate.runtime.output import OutputDir


@dataclass
class InputResult:
    """What processing one input produced. ``status``: ``done``, ``done_with_errors`` (some
    records could not be read) or ``failed`` (nothing could be read; counted as one record
    read and one error, nothing of it kept; retried on rerun)."""

    path: str
    index: int
    status: str
    stats: Stats
    shards: dict[str, list[ShardInfo]] = field(default_factory=dict)
    message: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "index": self.index,
            "status": self.status,
            "message": self.message,
            "seconds": round(self.seconds, 3),
            "stats": self.stats.to_json(),
            "shards": {k: [s.to_json() for s in v] for k, v in self.shards.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputResult:
        return cls(
            path=data["path"],
            index=data["index"],
            status=data["status"],
            message=data.get("message"),
            seconds=data.get("seconds", 0.0),
            stats=Stats.from_json(data["stats"]),
            shards={k: [ShardInfo(**s) for s in v] for k, v in data.get("shards", {}).items()},
        )

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "index": self.index,
            "status": self.status,
            "read": self.stats.read,
            "kept": self.stats.kept,
            "errors": sum(self.stats.errors.values()),
            **({"message": self.message} if self.message else {}),
        }


class Task:
    """One input's unit of work, handed to a stage's process function (picklable)."""

    def __init__(self, path: str, index: int, output_dir: str, config: dict[str, Any], shard_bytes: int):
        self.path = path
        self.index = index
        self.output_dir = output_dir
        self.config = config
        self.shard_bytes = shard_bytes
        self.writers: dict[str, ShardWriter] = {}
        self._pending: Counter = Counter()
        self._last_report = time.monotonic()

    @property
    def prefix(self) -> str:
        return f"part-{self.index:05d}"

    @property
    def state_dir(self) -> Path:
        """Where a stage keeps per-input side files (the runner removes them with --overwrite)."""
        return Path(self.output_dir) / ".curate"

    def writer(self, output: str = "") -> ShardWriter:
        """The shard writer of this input for ``output`` ('' = main, 'rejected', ...)."""
        if output not in self.writers:
            self.writers[output] = ShardWriter(
                Path(self.output_dir) / output, prefix=self.prefix, shard_bytes=self.shard_bytes
            )
        return self.writers[output]

    def report(self, **counts: int) -> None:
        """Progress counts (records, docs), passed on about once a second."""
        self._pending.update(counts)
        now = time.monotonic()
        if now - self._last_report >= 1.0:
            self.flush_report()
            self._last_report = now

    def flush_report(self) -> None:
        if self._pending:
            executor_mod.report(**self._pending)
        self._pending = Counter()

    def close_writers(self) -> dict[str, list[ShardInfo]]:
        return {name: w.close() for name, w in sorted(self.writers.items())}

    def abort_writers(self) -> None:
        for w in self.writers.values():
            w.abort()


ProcessFn = Callable[[Task], tuple[Stats, str, str | None]]
"""A stage's per-input function: writes through ``task.writer(...)`` and returns
``(stats, status, message)``; the runner closes the writers."""


def _done_path(output_dir: str, index: int) -> Path:
    return Path(output_dir) / ".curate" / "inputs" / f"{index:05d}.json"


def _execute(job: tuple[Task, ProcessFn]) -> InputResult:
    """Run one input (in a worker process or a Ray task) and record it as done."""
    task, process = job
    started = time.monotonic()
    try:
        stats, status, message = process(task)
        shards = task.close_writers()
    except OutputError:
        task.abort_writers()
        raise  # the output cannot be written: the whole stage stops, the input is not to blame
    except CurateError as exc:
        task.abort_writers()
        (stats, message), status, shards = failed_input(task.path, exc), "failed", {}
    except Exception as exc:  # an input must never take the whole job down
        task.abort_writers()
        if is_write_failure(exc):
            raise output_error(exc, task.output_dir) from None
        (stats, message), status, shards = failed_input(task.path, exc), "failed", {}
    task.flush_report()
    result = InputResult(task.path, task.index, status, stats, shards, message, time.monotonic() - started)
    if status != "failed":
        atomic_write_json(_done_path(task.output_dir, task.index), result.to_json())
    return result


def _assign_indices(out: OutputDir, inputs: list[str], chash: str, overwrite: bool) -> list[tuple[int, str]]:
    """Map inputs to stable indices, reusing a previous run's state in the same folder."""
    if overwrite:
        out.reset()
    state = out.check() or {}
    if state and state.get("config_hash") != chash:
        raise out.changed()
    previous: dict[str, int] = {p: i for i, p in state.get("inputs", [])}
    wanted = set(inputs)
    missing = [p for p in previous if p not in wanted]
    if missing:
        raise CurateError(
            f"{out} holds results for {len(missing)} input(s) not given now (e.g. {missing[0]}); "
            "give the same inputs to resume, or --overwrite"
        )
    next_index = max(previous.values(), default=-1) + 1
    assigned = []
    for p in inputs:
        if p not in previous:
            previous[p] = next_index
            next_index += 1
        assigned.append((previous[p], p))
    out.start({"config_hash": chash, "inputs": sorted([i, p] for p, i in previous.items())})
    return sorted(assigned)


def run_per_input(
    out: OutputDir,
    inputs: list[str],
    process: ProcessFn,
    config: dict[str, Any],
    executor: Executor,
    *,
    overwrite: bool = False,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    progress: Progress | None = None,
    input_weights: dict[str, float] | None = None,
) -> tuple[dict[str, Any], list[InputResult]]:
    """Run ``process`` over every input not yet done (resuming), then build the manifest.

    Returns the manifest (not yet written: the stage may add sections, then commits it with
    ``out.commit``) and the per-input results in input order. ``input_weights`` (bytes per
    input, for instance) drive the progress ETA.
    """
    if not inputs:
        raise CurateError("no inputs given")
    out.path.mkdir(parents=True, exist_ok=True)
    indexed = _assign_indices(out, inputs, config_hash(config), overwrite)
    out.remove_temp_files()

    results: dict[int, InputResult] = {}
    todo: list[Task] = []
    for index, path in indexed:
        done = _done_path(str(out), index)
        if done.exists():
            results[index] = InputResult.from_json(json.loads(done.read_text()))
            continue
        out.remove_shards(f"part-{index:05d}")
        todo.append(Task(path, index, str(out), config, shard_bytes))

    weight = (lambda p: input_weights.get(p, 1.0)) if input_weights else (lambda p: 1.0)
    if progress is not None and progress.total is None:
        progress.total = sum(weight(t.path) for t in todo)
    try:
        for result in executor.map(_execute, [(t, process) for t in todo], ordered=False, progress=progress):
            results[result.index] = result
            if progress is not None:
                progress.advance(weight(result.path))
    except BaseException:
        # The pool is gone by now: workers stopped mid-write left temporary files of their own.
        out.remove_temp_files()
        raise
    if progress is not None:
        progress.close()

    ordered = [results[i] for i, _ in indexed]
    total = Stats()
    shards: dict[str, list[ShardInfo]] = {o: [] for o in out.subdirs}
    for r in ordered:
        total.merge(r.stats)
        for name, infos in r.shards.items():
            shards.setdefault(name, []).extend(infos)
    failed = [r for r in ordered if r.status == "failed"]
    manifest = build_manifest(
        out.stage,
        config,
        [r.manifest_entry() for r in ordered],
        total,
        shards,
        extra={"inputs_failed": len(failed), "complete": not failed},
    )
    return manifest, ordered
