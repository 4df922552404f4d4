"""Running stage work on a Ray cluster (the ``ray`` extra).

The local engine runs per-input tasks in forked worker processes; this module runs the very
same task objects and stage functions as Ray tasks instead, so outputs, manifests and resume
behave identically. Workers write shards straight into the output directory, which must be
storage every node sees (a shared filesystem; on one machine, any local path).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from curate.core.errors import CurateError


def _import_ray():
    try:
        import ray
    except ImportError:
        raise CurateError("--engine ray needs Ray: pip install -e '.[ray]'") from None
    return ray


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Connect to ``address`` (or start a local instance); shut down only what we started."""
    ray = _import_ray()
    started = False
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


def _get(ray: Any, ref: Any) -> Any:
    """A task's result; a task that died (worker lost, out of memory) is a one-line error."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise CurateError(f"a Ray task failed: {first}", exit_code=1) from None


def run_tasks(
    items: Iterable[Any],
    fn: Callable[[Any], Any],
    on_result: Callable[[Any], None],
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    max_in_flight: int | None = None,
) -> None:
    """Run ``fn(item)`` for every item as a Ray task, calling ``on_result`` as each finishes.

    At most ``max_in_flight`` tasks are submitted at once (default: twice the cluster's CPUs),
    so a listing of 90,000 WARC files does not become 90,000 pending objects.
    """
    with ray_session(address, num_cpus) as ray:
        remote_fn = ray.remote(num_cpus=1, max_retries=2)(fn)
        limit = max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        pending: list[Any] = []
        for item in items:
            if len(pending) >= limit:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    on_result(_get(ray, ref))
            pending.append(remote_fn.remote(item))
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                on_result(_get(ray, ref))
