"""curate.runtime.executor: ordered and unordered maps on local processes and Ray, progress
from workers, one-line errors, no global engine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from curate.core.errors import CurateError
from curate.core.progress import Progress
from curate.runtime import executor as executor_mod
from curate.runtime.executor import Executor


def square_after_a_pause(x: int) -> int:
    """Later items finish first (so an ordered map must reorder)."""
    import time

    time.sleep(0.02 * (5 - x % 5))
    executor_mod.report(items=1, units=x)
    return x * x


def env_mark(_: int) -> str | None:
    return os.environ.get("CURATE_TEST_MARK")


def whoami(_: int) -> int:
    return os.getpid()


def fails_on_three(x: int) -> int:
    if x == 3:
        raise OSError("no such file: /shared/work/x.bin")
    return x


def test_unknown_engine_and_bad_worker_count_are_one_line_errors():
    with pytest.raises(CurateError, match="unknown engine 'spark'; use 'local' or 'ray'"):
        Executor("spark")
    with pytest.raises(CurateError, match="workers must be at least 1"):
        Executor("local", 0)
    with pytest.raises(CurateError, match="--ray-address is used only with --engine ray"):
        Executor("local", 2, "auto")


@pytest.mark.parametrize(
    "args",
    [
        ["crawl", "samples/warc"],
        ["filter", "samples/train"],
        ["dedup", "samples/train"],
        ["mix", "-s", "a=samples/code:1", "--tokens", "1k"],
        ["tokenizer", "train", "samples/code"],
    ],
)
def test_a_cluster_address_without_the_ray_engine_is_refused_not_ignored(tmp_path, args):
    from click.testing import CliRunner

    from curate.cli import cli

    samples = Path(__file__).resolve().parents[2] / "samples"
    args = [str(samples / a.removeprefix("samples/")) if a.startswith("samples/") else a for a in args]
    args = [a.replace("=samples/", f"={samples}/") for a in args]
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [*args, "-o", str(out), "--ray-address", "auto", "-q"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == "error: --ray-address is used only with --engine ray"
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize("workers", [1, 3])
def test_local_map_orders_results_and_collects_progress(workers):
    ex = Executor("local", workers)
    progress = Progress("test", enabled=False)
    assert list(ex.map(square_after_a_pause, range(10), progress=progress)) == [x * x for x in range(10)]
    # Counts reported inside the workers reach the progress in this process.
    assert progress.counters["items"] == 10 and progress.counters["units"] == sum(range(10))
    unordered = list(ex.map(square_after_a_pause, range(10), ordered=False))
    assert sorted(unordered) == [x * x for x in range(10)]


def test_several_workers_are_other_processes_and_one_worker_is_this_one():
    assert set(Executor("local", 1).map(whoami, range(3))) == {os.getpid()}
    pids = set(Executor("local", 2).map(whoami, range(6)))
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_closing_a_map_early_releases_the_workers():
    mapped = Executor("local", 2).map(square_after_a_pause, range(50))
    assert next(mapped) == 0
    mapped.close()  # terminates the pool; nothing hangs


def test_an_exception_in_a_local_worker_reaches_the_caller():
    with pytest.raises(OSError, match="no such file"):
        list(Executor("local", 2).map(fails_on_three, range(6)))


@pytest.fixture(scope="module")
def ray_executor():
    ray = pytest.importorskip("ray")
    # Ray workers cannot import a test module by name: ship this module's functions by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ex = Executor("ray", 2)
    with ex.session():
        yield ex


def test_ray_map_gives_the_local_results_in_order(ray_executor):
    items = list(range(12))
    assert list(ray_executor.map(square_after_a_pause, items, in_flight=3)) == [x * x for x in items]
    assert sorted(ray_executor.map(square_after_a_pause, items, ordered=False)) == [x * x for x in items]
    assert ray_executor.cluster_cpus() >= 1


def test_a_failed_ray_task_is_one_line_naming_the_function_and_storage(ray_executor):
    with pytest.raises(CurateError) as err:
        list(ray_executor.map(fails_on_three, range(6)))
    message = str(err.value)
    assert "\n" not in message and err.value.exit_code == 1
    assert "a Ray task (fails_on_three) failed: OSError" in message
    assert "storage every node of the cluster sees" in message


def test_local_workers_after_ray_are_started_fresh(ray_executor, monkeypatch):
    """Forking a process that has run Ray can deadlock the child; workers are then spawned,
    with the same results, and see the environment as it is now."""
    from curate.runtime.executor import _start_method

    assert _start_method() == "spawn"
    monkeypatch.setenv("CURATE_TEST_MARK", "set after Ray")
    assert set(Executor("local", 2).map(env_mark, range(2))) == {"set after Ray"}
    progress = Progress("test", enabled=False)
    mapped = Executor("local", 2).map(square_after_a_pause, range(6), progress=progress)
    assert list(mapped) == [x * x for x in range(6)]
    assert progress.counters["items"] == 6
