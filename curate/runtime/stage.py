"""The per-input stage runner shared by crawl and filter (record accounting: accounting.py).

A stage is a function over an iterator of records (see ``Step``); the runner takes care of
everything around it: splitting the work by input file, worker processes, atomic shards,
per-input completion records (so a rerun resumes and never duplicates), progress, and the
``manifest.json`` whose counts always satisfy ``read = kept + rejected + errors``.

Output layout of a stage directory::

    part-00003-000.parquet     shards of input #3 (names depend only on the input's index)
    rejected/part-...parquet   secondary outputs, one sub-folder each
    manifest.json              written last, atomically
    .curate/state.json         stage, config and the input list (index -> path)
    .curate/inputs/00003.json  one per completed input: its counts and shards
"""

from __future__ import annotations

import glob
import hashlib
import json
import multiprocessing as mp
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate import __version__
from curate.core.accounting import Stats
from curate.core.document import SCHEMA_VERSION, Document
from curate.core.errors import CurateError
from curate.core.progress import Progress
from curate.core.shards import (
    DEFAULT_SHARD_BYTES,
    ShardInfo,
    ShardWriter,
    atomic_write_json,
    write_manifest,
)

# A processing step: documents in, documents out (lazily).
Step = Callable[[Iterable[Document]], Iterator[Document]]

STATE_DIR = ".curate"

# Where stage work runs when a caller does not say: set for a block of code with
# `execution(engine="ray", address=...)`, so stage functions need no engine parameters.
_EXECUTION: dict[str, Any] = {"engine": "local", "ray_address": None}


@contextmanager
def execution(engine: str = "local", ray_address: str | None = None) -> Iterator[None]:
    """Run the stages called inside this block on ``engine`` ('local' or 'ray')."""
    if engine not in ("local", "ray"):
        raise CurateError(f"unknown engine {engine!r}; use 'local' or 'ray'")
    previous = dict(_EXECUTION)
    _EXECUTION.update(engine=engine, ray_address=ray_address)
    try:
        yield
    finally:
        _EXECUTION.clear()
        _EXECUTION.update(previous)


def current_execution() -> dict[str, Any]:
    return dict(_EXECUTION)


@dataclass
class InputResult:
    """What processing one input produced. ``status``: ``done``, ``done_with_errors`` (some
    records could not be read) or ``failed`` (nothing could be read; retried on rerun)."""

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


class Task:
    """One input's unit of work, handed to a stage's process function (picklable)."""

    def __init__(self, path: str, index: int, output_dir: str, config: dict[str, Any], shard_bytes: int):
        self.path = path
        self.index = index
        self.output_dir = output_dir
        self.config = config
        self.shard_bytes = shard_bytes
        self.writers: dict[str, ShardWriter] = {}
        self._progress_queue: Any = None
        self._pending: Counter = Counter()
        self._last_report = time.monotonic()

    @property
    def prefix(self) -> str:
        return f"part-{self.index:05d}"

    def writer(self, output: str = "") -> ShardWriter:
        """The shard writer of this input for ``output`` ('' = main, 'rejected', ...)."""
        if output not in self.writers:
            self.writers[output] = ShardWriter(
                os.path.join(self.output_dir, output), prefix=self.prefix, shard_bytes=self.shard_bytes
            )
        return self.writers[output]

    def report(self, **counts: int) -> None:
        """Progress counts (records, docs); sent to the main process about once a second."""
        self._pending.update(counts)
        now = time.monotonic()
        if now - self._last_report >= 1.0:
            self.flush_report()
            self._last_report = now

    def flush_report(self) -> None:
        if self._pending and self._progress_queue is not None:
            try:
                self._progress_queue.put_nowait(("add", dict(self._pending)))
            except Exception:  # progress is best effort
                pass
        elif self._pending and callable(getattr(self, "_local_progress", None)):
            self._local_progress(**self._pending)
        self._pending = Counter()

    def close_writers(self) -> dict[str, list[ShardInfo]]:
        return {name: w.close() for name, w in sorted(self.writers.items())}

    def abort_writers(self) -> None:
        for w in self.writers.values():
            w.abort()


ProcessFn = Callable[[Task], tuple[Stats, str, str | None]]
"""A stage's per-input function: writes through ``task.writer(...)`` and returns
``(stats, status, message)``; the runner closes the writers."""


def _state_dir(output_dir: str) -> Path:
    return Path(output_dir) / STATE_DIR


def _done_path(output_dir: str, index: int) -> Path:
    return _state_dir(output_dir) / "inputs" / f"{index:05d}.json"


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _execute(task: Task, process: ProcessFn) -> InputResult:
    started = time.monotonic()
    try:
        stats, status, message = process(task)
        shards = task.close_writers()
    except CurateError as exc:
        task.abort_writers()
        stats, status, message, shards = Stats(), "failed", str(exc), {}
    except Exception as exc:  # an input must never take the whole job down
        task.abort_writers()
        stats, status, message, shards = Stats(), "failed", f"{type(exc).__name__}: {exc}", {}
    task.flush_report()
    result = InputResult(task.path, task.index, status, stats, shards, message, time.monotonic() - started)
    if status != "failed":
        atomic_write_json(_done_path(task.output_dir, task.index), result.to_json())
    return result


_WORKER_QUEUE: Any = None


def _worker_init(progress_queue: Any) -> None:
    global _WORKER_QUEUE
    _WORKER_QUEUE = progress_queue


def _worker_run(args: tuple[Task, ProcessFn]) -> InputResult:
    task, process = args
    task._progress_queue = _WORKER_QUEUE
    return _execute(task, process)


def _ray_run(args: tuple[Task, ProcessFn]) -> InputResult:
    task, process = args
    return _execute(task, process)


def _clean_partial(output_dir: str, outputs: Iterable[str], index: int) -> None:
    """Remove leftovers of an unfinished input: its shards and any temp files."""
    for out in outputs:
        d = os.path.join(output_dir, out)
        for f in glob.glob(os.path.join(d, f"part-{index:05d}-*.parquet")):
            os.unlink(f)


def _remove_temp_files(output_dir: str, outputs: Iterable[str]) -> None:
    for out in outputs:
        for f in glob.glob(os.path.join(output_dir, out, ".*.tmp")):
            os.unlink(f)


def _reset_output(output_dir: str, outputs: Iterable[str]) -> None:
    import shutil

    shutil.rmtree(_state_dir(output_dir), ignore_errors=True)
    for out in outputs:
        for f in glob.glob(os.path.join(output_dir, out, "*.parquet")):
            os.unlink(f)
    manifest = Path(output_dir) / "manifest.json"
    if manifest.exists():
        manifest.unlink()


def _assign_indices(
    output_dir: str, stage: str, inputs: list[str], chash: str, overwrite: bool, outputs: list[str]
) -> list[tuple[int, str]]:
    """Map inputs to stable indices, reusing a previous run's state in the same directory."""
    state_path = _state_dir(output_dir) / "state.json"
    if overwrite:
        _reset_output(output_dir, outputs)
    elif not state_path.exists() and glob.glob(os.path.join(output_dir, "*.parquet")):
        raise CurateError(
            f"{output_dir} already holds Parquet files not written by a resumable run; "
            "use --overwrite or another output directory"
        )
    state: dict[str, Any] = {}
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if state.get("stage") != stage:
            raise CurateError(
                f"{output_dir} holds output of stage {state.get('stage')!r}, not {stage!r}; "
                "use another output directory or --overwrite"
            )
        if state.get("config_hash") != chash:
            raise CurateError(
                f"{output_dir} was written with a different configuration; "
                "rerun with the same options to resume, or --overwrite to start over"
            )
    previous: dict[str, int] = {p: i for i, p in state.get("inputs", [])}
    wanted = set(inputs)
    missing = [p for p in previous if p not in wanted]
    if missing:
        raise CurateError(
            f"{output_dir} holds results for {len(missing)} input(s) not given now (e.g. {missing[0]}); "
            "give the same inputs to resume, or --overwrite"
        )
    next_index = max(previous.values(), default=-1) + 1
    assigned = []
    for p in inputs:
        if p not in previous:
            previous[p] = next_index
            next_index += 1
        assigned.append((previous[p], p))
    state = {"stage": stage, "config_hash": chash, "inputs": sorted(([i, p] for p, i in previous.items()))}
    atomic_write_json(state_path, state)
    return sorted(assigned)


def build_manifest(
    stage: str,
    config: dict[str, Any],
    inputs: list[dict[str, Any]],
    stats: Stats,
    outputs: dict[str, list[ShardInfo]],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest layout every stage writes (global stages call this directly)."""
    if not stats.balanced:
        raise AssertionError(f"{stage}: counts do not add up: {stats.to_json()}")
    manifest = {
        "stage": stage,
        "tool": "curate",
        "tool_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "config": config,
        "inputs": inputs,
        "counts": stats.to_json(),
        "shards": [s.to_json() for s in outputs.get("", [])],
        "outputs": {
            name or ".": {"rows": sum(s.rows for s in shards), "shards": [s.to_json() for s in shards]}
            for name, shards in sorted(outputs.items())
        },
    }
    if extra:
        manifest.update(extra)
    return manifest


def run_stage(
    stage: str,
    inputs: list[str],
    output_dir: str,
    process: ProcessFn,
    config: dict[str, Any],
    *,
    outputs: list[str] | None = None,
    workers: int = 1,
    overwrite: bool = False,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    progress: Progress | None = None,
    input_weights: dict[str, float] | None = None,
    engine: str | None = None,
    ray_address: str | None = None,
) -> tuple[dict[str, Any], list[InputResult]]:
    """Run ``process`` over every input (resuming), then write the stage's manifest.

    ``outputs`` names the sub-folders a stage writes besides the main one ('' is the main).
    ``input_weights`` (bytes per input, for instance) drive the progress ETA. ``engine``
    ``"ray"`` runs the same per-input tasks on a Ray cluster (``ray_address``, or a local
    instance with ``workers`` CPUs) instead of local worker processes; by default the engine
    set by :func:`execution` is used.
    """
    if engine is None:
        engine, ray_address = _EXECUTION["engine"], ray_address or _EXECUTION["ray_address"]
    if engine not in ("local", "ray"):
        raise CurateError(f"unknown engine {engine!r}; use 'local' or 'ray'")
    outputs = [""] + [o for o in (outputs or []) if o]
    if not inputs:
        raise CurateError("no inputs given")
    os.makedirs(output_dir, exist_ok=True)
    chash = config_hash(config)
    indexed = _assign_indices(output_dir, stage, inputs, chash, overwrite, outputs)
    _remove_temp_files(output_dir, outputs)

    results: dict[int, InputResult] = {}
    todo: list[Task] = []
    for index, path in indexed:
        done = _done_path(output_dir, index)
        if done.exists():
            results[index] = InputResult.from_json(json.loads(done.read_text()))
            continue
        _clean_partial(output_dir, outputs, index)
        todo.append(Task(path, index, output_dir, config, shard_bytes))

    weight = (lambda p: input_weights.get(p, 1.0)) if input_weights else (lambda p: 1.0)
    if progress is not None and progress.total is None:
        progress.total = sum(weight(t.path) for t in todo)

    def finished(result: InputResult) -> None:
        results[result.index] = result
        if progress is not None:
            progress.advance(weight(result.path))

    if engine == "ray" and todo:
        from curate.runtime.ray import run_tasks

        run_tasks([(t, process) for t in todo], _ray_run, finished, address=ray_address, num_cpus=workers)
        todo = []
    workers = max(1, min(workers, len(todo) or 1))
    if not todo:
        pass
    elif workers == 1:
        for task in todo:
            if progress is not None:
                task._local_progress = progress.add  # type: ignore[attr-defined]
            finished(_execute(task, process))
    else:
        ctx = mp.get_context("fork")
        progress_queue = ctx.Queue()
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set():
                try:
                    kind, counts = progress_queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                except (EOFError, OSError):
                    return
                if progress is not None and kind == "add":
                    progress.add(**counts)

        drainer = threading.Thread(target=drain, daemon=True)
        drainer.start()
        try:
            with ctx.Pool(workers, initializer=_worker_init, initargs=(progress_queue,), maxtasksperchild=None) as pool:
                for result in pool.imap_unordered(_worker_run, [(t, process) for t in todo], chunksize=1):
                    finished(result)
        finally:
            stop.set()
            drainer.join(timeout=2)
    if progress is not None:
        progress.close()

    ordered = [results[i] for i, _ in indexed]
    total = Stats()
    shards: dict[str, list[ShardInfo]] = {o: [] for o in outputs}
    for r in ordered:
        total.merge(r.stats)
        for name, infos in r.shards.items():
            shards.setdefault(name, []).extend(infos)
    input_entries = [
        {
            "path": r.path,
            "index": r.index,
            "status": r.status,
            "read": r.stats.read,
            "kept": r.stats.kept,
            "errors": sum(r.stats.errors.values()),
            **({"message": r.message} if r.message else {}),
        }
        for r in ordered
    ]
    failed = [r for r in ordered if r.status == "failed"]
    manifest = build_manifest(
        stage,
        config,
        input_entries,
        total,
        shards,
        extra={"inputs_failed": len(failed), "complete": not failed},
    )
    write_manifest(output_dir, manifest)
    return manifest, ordered


def summarize(manifest: dict[str, Any]) -> str:
    """A few human lines about a stage's manifest (printed by the CLI at the end of a run)."""
    c = manifest["counts"]
    lines = [
        f"{manifest['stage']}: read {c['read']:,}  kept {c['kept']:,}  "
        f"rejected {sum(c['rejected'].values()):,}  errors {sum(c['errors'].values()):,}"
    ]
    for title, key in (("rejected", "rejected"), ("errors", "errors")):
        items = sorted(c[key].items(), key=lambda kv: (-kv[1], kv[0]))
        if items:
            lines.append(f"  {title}: " + ", ".join(f"{k}={v:,}" for k, v in items[:12]))
    failed = [i for i in manifest.get("inputs", []) if i.get("status") == "failed"]
    for item in failed[:10]:
        lines.append(f"  unreadable input: {item['path']}: {item.get('message', '')}")
    return "\n".join(lines)
