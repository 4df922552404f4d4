"""The Ray connection behind :class:`curate.runtime.executor.Executor` (the ``ray`` extra).

Stage work runs as the very same functions on Ray tasks as in local worker processes, so
outputs, manifests and resume behave identically. Tasks write shards straight into the output
directory, which must be storage every node sees (a shared filesystem; on one machine, any
local path).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from curate.core.errors import CurateError

# Set once this process has connected to Ray: its threads stay behind after a shutdown.
_STARTED = False


def ray_was_started() -> bool:
    """Whether this process has run Ray (here or through another library). Forking it then
    risks a child that deadlocks on a lock one of Ray's threads held at the fork."""
    if _STARTED:
        return True
    ray = sys.modules.get("ray")
    return bool(ray is not None and getattr(ray, "is_initialized", lambda: False)())


def _import_ray():
    try:
        import ray
    except ImportError:
        raise CurateError("--engine ray needs Ray: pip install -e '.[ray]'") from None
    return ray


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Connect to ``address`` (or start a local instance with ``num_cpus``); shut down only
    what this call started, so nested sessions share one connection."""
    global _STARTED
    ray = _import_ray()
    started = False
    _STARTED = True
    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
        if address:
            kwargs["address"] = address
        elif num_cpus:
            kwargs["num_cpus"] = num_cpus
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise CurateError(f"cannot reach the Ray cluster at {address}: {exc}") from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def cluster_cpus(default: int) -> int:
    """CPUs of the connected cluster (``default`` when it reports none)."""
    ray = _import_ray()
    return max(1, int(ray.cluster_resources().get("CPU", default)))


def task_result(ray: Any, ref: Any, fn: Callable) -> Any:
    """A task's result; a task that failed for good (its exception, a lost worker, out of
    memory) is a one-line error. An unreadable file usually means a node does not see the
    output directory, so an OSError says so."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        cause = getattr(exc, "cause", None) or exc
        if isinstance(cause, CurateError):
            raise cause from None  # already one line for the user (e.g. a full output disk)
        first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[-1]
        hint = (
            " (the output directory must be storage every node of the cluster sees)"
            if isinstance(cause, OSError)
            else ""
        )
        name = getattr(fn, "__name__", "task")
        raise CurateError(f"a Ray task ({name}) failed: {type(cause).__name__}: {first_line}{hint}", 1) from None
