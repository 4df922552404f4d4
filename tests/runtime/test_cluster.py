"""A real two-node Ray cluster with a fault: ``crawl → filter → dedup → mix`` through the CLI
with ``--ray-address``, once undisturbed and once with a Ray worker SIGKILLed while it executes
one of the stage's tasks, give the same shards (sha256) and manifests.

The head and the second node are separate ``ray start`` processes (one CPU each, the second with
its own ``node2`` resource) sharing a temporary directory; bench/cluster.py is the harness (it
stops them by process id). Skipped only where ``ray start`` cannot start a node here. About 45 s
on two cores: one cluster serves both runs.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "cluster.py"


def _harness():
    spec = importlib.util.spec_from_file_location("curate_bench_cluster", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


harness = _harness()


@pytest.fixture(scope="module")
def cluster():
    c = harness.LocalCluster()
    try:
        c.start()
    except harness.ClusterUnavailable as exc:
        c.stop()
        pytest.skip(f"ray start cannot start a node here: {exc}")
    try:
        yield c
    finally:
        c.stop()
    assert not c.own_processes(), "the cluster's processes outlived its stop"


def test_cluster_worker_killed_mid_stage_same_output(cluster, tmp_path):
    assert len(cluster.raylets()) == 2  # the head and the second node: two raylet processes

    # timeouts are hang guards for each command, not a speed test
    harness.run_pipeline(cluster, tmp_path / "undisturbed", kill=False, timeout=600)
    faulted = harness.run_pipeline(cluster, tmp_path / "killed", kill=True, timeout=600)

    kills = {k["stage"]: k for k in faulted["kills"]}
    # Some stage's running task was caught (crawl's, one per WARC file, nearly always; the
    # others usually): a run with no kill would prove nothing.
    assert kills, faulted
    for k in kills.values():
        # A worker executing one of our tasks (ray::<task>), killed while the stage's command ran,
        # and really gone; the stage still exited 0 (run_pipeline raises otherwise).
        assert k["task"].startswith("ray::") and "IDLE" not in k["task"], k
        assert k["stage_running"], k
        assert not os.path.exists(f"/proc/{k['pid']}/cmdline") or not harness._cmdline(k["pid"]).startswith("ray::")

    for stage in harness.STAGES:
        undisturbed = harness.stage_outputs(tmp_path / "undisturbed" / stage)
        killed = harness.stage_outputs(tmp_path / "killed" / stage)
        assert undisturbed["files"], stage
        assert killed == undisturbed, stage
        # A killed attempt left no partial file: shards appear only by an atomic rename.
        assert harness.leftovers(tmp_path / "killed" / stage) == [], stage
