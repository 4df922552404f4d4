"""Where stage work runs: forked local worker processes, or tasks on a Ray cluster.

Every parallel loop in the project goes through :class:`Executor`, which a caller builds and
passes down (never a global)::

    executor = Executor("ray", workers=8, ray_address="auto")
    with executor.session():                       # one Ray connection for the whole stage
        for result in executor.map(fn, items):     # results in item order
            ...

``map(fn, items)`` yields ``fn(item)`` for every item, in item order by default (what keeps a
stage's output independent of the number of workers and of scheduling) or as they finish with
``ordered=False``. ``fn`` and the items must be picklable: a module-level function and plain
data. Locally, one worker runs ``fn`` in this process, more run it in forked processes (started
fresh instead once this process has used Ray, whose threads make a fork unsafe); on Ray
each item is one task (1 CPU, retried twice if its worker dies), with at most ``in_flight``
tasks submitted at once so a listing of 90,000 files does not become 90,000 pending objects.
A task that fails for good is one :class:`~curate.core.errors.CurateError` line.

Workers report progress counts with :func:`report` (records read, documents written ...): in
this process they go straight to the ``progress`` given to ``map``, from forked workers through
a queue drained by a thread here. Ray tasks do not report progress.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from curate.core.errors import CurateError
from curate.core.progress import Progress

ENGINES = ("local", "ray")

# Where report() sends counts in the current process: a Progress's add (in-process map) or a
# queue's put (a forked worker). None: counts are dropped.
_SINK: Callable[[dict[str, int]], None] | None = None


def report(**counts: int) -> None:
    """Progress counts from inside a mapped function (best effort, never raises)."""
    if _SINK is not None and counts:
        try:
            _SINK(counts)
        except Exception:  # progress must never fail the work
            pass


def _worker_init(sink_queue: Any) -> None:
    global _SINK
    _SINK = sink_queue.put_nowait


@dataclass(frozen=True)
class Executor:
    """Run stage work on ``engine`` ('local' or 'ray') with ``workers`` processes (local) or,
    for a Ray instance this process starts, that many CPUs (``ray_address`` joins a cluster)."""

    engine: str = "local"
    workers: int = 1
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise CurateError(f"unknown engine {self.engine!r}; use 'local' or 'ray'")
        if self.workers < 1:
            raise CurateError(f"workers must be at least 1, got {self.workers}")
        if self.ray_address and self.engine != "ray":
            # Said, not ignored: a user who names a cluster expects the work to run there.
            raise CurateError("--ray-address is used only with --engine ray")

    @property
    def is_ray(self) -> bool:
        return self.engine == "ray"

    @contextmanager
    def session(self) -> Iterator[Executor]:
        """Keep one Ray connection open for every map inside the block (local: nothing)."""
        if not self.is_ray:
            yield self
            return
        from curate.runtime.ray import ray_session

        with ray_session(self.ray_address, self.workers):
            yield self

    def cluster_cpus(self) -> int:
        """CPUs work is spread over: the Ray cluster's, or ``workers`` locally."""
        if not self.is_ray:
            return self.workers
        from curate.runtime.ray import cluster_cpus

        return cluster_cpus(self.workers)

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any],
        *,
        ordered: bool = True,
        progress: Progress | None = None,
        in_flight: int | None = None,
    ) -> Iterator[Any]:
        """``fn(item)`` for every item (see the module docstring). Close the iterator (or run it
        to the end) to release the workers; an early close cancels work not yet started."""
        if self.is_ray:
            return self._ray_map(fn, items, ordered, in_flight)
        return self._local_map(fn, items, ordered, progress)

    # ------------------------------------------------------------------ local processes

    def _local_map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], ordered: bool, progress: Progress | None
    ) -> Iterator[Any]:
        items = list(items)
        workers = max(1, min(self.workers, len(items)))
        if workers == 1:
            yield from _in_process(fn, items, progress)
            return
        context = mp.get_context(_start_method())
        sink: Any = context.Queue()
        stop = threading.Event()
        drainer = threading.Thread(target=_drain, args=(sink, stop, progress), daemon=True)
        drainer.start()
        pool = context.Pool(workers, initializer=_worker_init, initargs=(sink,))
        try:
            mapped = pool.imap if ordered else pool.imap_unordered
            yield from mapped(fn, items, chunksize=1)
            pool.close()
        finally:
            pool.terminate()
            pool.join()
            stop.set()
            drainer.join(timeout=2)

    # ------------------------------------------------------------------ Ray tasks

    def _ray_map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], ordered: bool, in_flight: int | None
    ) -> Iterator[Any]:
        from curate.runtime.ray import ray_session, task_result

        with ray_session(self.ray_address, self.workers) as ray:
            # A task whose worker dies (killed, out of memory, its node lost) runs again: safe,
            # since a task's shards appear only by an atomic rename and a rerun writes the same
            # bytes (tests/runtime/test_cluster.py kills one mid-stage). Exceptions are not retried.
            remote_fn = ray.remote(num_cpus=1, max_retries=2)(fn)
            limit = in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
            pending: deque = deque()
            try:
                for item in items:
                    if len(pending) >= limit:
                        yield from _ray_collect(ray, pending, ordered, fn, task_result)
                    pending.append(remote_fn.remote(item))
                while pending:
                    yield from _ray_collect(ray, pending, ordered, fn, task_result)
            finally:
                for ref in pending:
                    ray.cancel(ref)


def _ray_collect(ray: Any, pending: deque, ordered: bool, fn: Callable, task_result: Callable) -> Iterator[Any]:
    """One finished task's result: the oldest (ordered) or whichever finished first."""
    if ordered:
        yield task_result(ray, pending.popleft(), fn)
        return
    done, rest = ray.wait(list(pending), num_returns=1)
    pending.clear()
    pending.extend(rest)
    for ref in done:
        yield task_result(ray, ref, fn)


def _start_method() -> str:
    """``fork`` (workers inherit what this process built: models, extractors, tables), unless
    this process has run Ray: a child forked from a process holding Ray's threads can deadlock,
    so workers are then started fresh (``spawn``: slower to start, and they see the current
    environment, which a long-lived fork server would not)."""
    from curate.runtime.ray import ray_was_started

    return "spawn" if ray_was_started() else "fork"


def _in_process(fn: Callable[[Any], Any], items: list[Any], progress: Progress | None) -> Iterator[Any]:
    global _SINK
    previous = _SINK
    _SINK = (lambda counts: progress.add(**counts)) if progress is not None else None
    try:
        for item in items:
            yield fn(item)
    finally:
        _SINK = previous


def _drain(sink: Any, stop: threading.Event, progress: Progress | None) -> None:
    """Forward forked workers' progress counts to ``progress`` until ``stop`` is set."""
    while not stop.is_set():
        try:
            counts = sink.get(timeout=0.2)
        except queue.Empty:
            continue
        except (EOFError, OSError):
            return
        if progress is not None:
            progress.add(**counts)


def default_workers() -> int:
    """The CPUs this process may use (its affinity mask, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
