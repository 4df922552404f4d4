"""The per-input stage runner: accounting, resume, failed inputs, workers, determinism."""

import json
import os

import pytest

from curate.core.accounting import Stats
from curate.core.document import Document
from curate.core.errors import CurateError
from curate.core.files import sha256_file
from curate.core.shards import read_documents
from curate.runtime.executor import Executor
from curate.runtime.output import OutputDir
from curate.runtime.per_input import run_per_input
from curate.runtime.stage import summarize


def run_stage(stage, inputs, out, process, config, outputs=(), workers=1, overwrite=False, engine="local"):
    """A stage made of ``process`` through the per-input runner, committed like the real ones."""
    folder = OutputDir(out, stage, outputs)
    manifest, results = run_per_input(folder, inputs, process, config, Executor(engine, workers), overwrite=overwrite)
    folder.commit(manifest)
    return manifest, results


def _lines_stage(task):
    """Keeps lines not divisible by 3; rejects the rest; 'bad' inputs fail; 'err' lines error."""
    stats = Stats()
    if "bad" in os.path.basename(task.path):
        raise ValueError("cannot read this input")
    for n, line in enumerate(open(task.path)):
        stats.read += 1
        line = line.rstrip("\n")
        doc = Document(id=f"{os.path.basename(task.path)}:{n}", text=line)
        if line.startswith("err"):
            stats.error("parse_error", file=task.path, offset=n)
        elif n % 3 == 0:
            stats.reject("every_third", len(line))
            task.writer("rejected").write(doc.replace(reject_reason="every_third"))
        else:
            stats.kept += 1
            task.writer().write(doc)
    return stats, ("done_with_errors" if stats.errors else "done"), None


@pytest.fixture
def inputs(tmp_path):
    paths = []
    for i in range(4):
        p = tmp_path / f"in{i}.txt"
        p.write_text("".join(f"{'err' if (i == 2 and j == 4) else 'line'} {i} {j}\n" for j in range(10)))
        paths.append(str(p))
    return paths


def test_counts_add_up_and_manifest_lists_everything(tmp_path, inputs):
    bad = tmp_path / "bad.txt"
    bad.write_text("x\n")
    out = tmp_path / "out"
    manifest, _results = run_stage("lines", inputs + [str(bad)], str(out), _lines_stage, {"k": 1}, outputs=["rejected"])
    c = manifest["counts"]
    # bad.txt failed: one record read and one error, named in the examples.
    assert c["read"] == 41 and c["errors"] == {"parse_error": 1, "input_failed": 1}
    assert c["error_examples"]["input_failed"][0] == {"file": str(bad), "detail": "ValueError: cannot read this input"}
    assert c["read"] == c["kept"] + sum(c["rejected"].values()) + sum(c["errors"].values())
    assert c["error_examples"]["parse_error"][0]["offset"] == 4
    assert manifest["inputs_failed"] == 1 and manifest["complete"] is False
    statuses = {os.path.basename(i["path"]): i["status"] for i in manifest["inputs"]}
    assert statuses == {
        "in0.txt": "done",
        "in1.txt": "done",
        "in2.txt": "done_with_errors",
        "in3.txt": "done",
        "bad.txt": "failed",
    }
    assert manifest["outputs"]["rejected"]["rows"] == sum(c["rejected"].values())
    assert sum(s["rows"] for s in manifest["shards"]) == c["kept"] == len(list(read_documents([str(out)])))
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert "unreadable input" in summarize(manifest)


def test_rerun_resumes_without_duplicates_and_retries_failed(tmp_path, inputs):
    out = tmp_path / "out"
    run_stage("lines", inputs[:2], str(out), _lines_stage, {})
    # Simulate a crash in the middle of input 2: a leftover shard + temp file, no done record.
    (out / "part-00002-000.parquet").write_bytes(b"half")
    (out / ".part-00002-001.parquet.x.tmp").write_bytes(b"half")
    calls = []

    def counting(task):
        calls.append(os.path.basename(task.path))
        return _lines_stage(task)

    manifest, _ = run_stage("lines", inputs, str(out), counting, {})
    assert calls == ["in2.txt", "in3.txt"]  # inputs 0 and 1 were complete
    ids = [d.id for d in read_documents([str(out)])]
    assert len(ids) == len(set(ids)) == manifest["counts"]["kept"]
    assert not list(out.glob(".*.tmp"))


def test_rerun_with_other_config_or_fewer_inputs_is_refused(tmp_path, inputs):
    out = tmp_path / "out"
    run_stage("lines", inputs, str(out), _lines_stage, {"a": 1})
    with pytest.raises(CurateError, match="different configuration"):
        run_stage("lines", inputs, str(out), _lines_stage, {"a": 2})
    with pytest.raises(CurateError, match="not given now"):
        run_stage("lines", inputs[:2], str(out), _lines_stage, {"a": 1})
    with pytest.raises(CurateError, match="stage 'lines'"):
        run_stage("other", inputs, str(out), _lines_stage, {"a": 1})
    manifest, _ = run_stage("lines", inputs[:2], str(out), _lines_stage, {"a": 2}, overwrite=True)
    assert len(manifest["inputs"]) == 2


def test_workers_give_byte_identical_output(tmp_path, inputs):
    m1, _ = run_stage("lines", inputs, str(tmp_path / "w1"), _lines_stage, {}, outputs=["rejected"], workers=1)
    m2, _ = run_stage("lines", inputs, str(tmp_path / "w2"), _lines_stage, {}, outputs=["rejected"], workers=2)
    assert m1["counts"] == m2["counts"]
    assert [s["sha256"] for s in m1["shards"]] == [s["sha256"] for s in m2["shards"]]
    for s in m1["shards"]:
        assert sha256_file(tmp_path / "w2" / s["path"]) == s["sha256"]


def test_stats_merge_and_balance():
    a, b = Stats(read=3, kept=1), Stats(read=2, kept=2)
    a.reject("x")
    a.error("y", file="f", offset=1)
    assert a.balanced and b.balanced
    a.merge(b)
    assert (a.read, a.kept, a.rejected["x"], a.errors["y"]) == (5, 3, 1, 1) and a.balanced
    assert Stats.from_json(a.to_json()).to_json() == a.to_json()
    a.read += 1
    assert not a.balanced


def test_unknown_engine_is_an_error(tmp_path, inputs):
    with pytest.raises(CurateError, match="unknown engine"):
        run_stage("lines", inputs, str(tmp_path / "o"), _lines_stage, {}, engine="spark")


# -- the Ray engine: the same per-input stage code gives the local engine's output


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    import sys

    from curate.runtime.ray import ray_session

    # Ray workers cannot import a test module by name: ship this module's functions by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with ray_session(num_cpus=2) as r:
        yield r


def test_ray_engine_matches_local(tmp_path, ray_local):
    paths = []
    for i in range(3):
        p = tmp_path / f"in{i}.txt"
        p.write_text("".join(f"line {i} {j}\n" for j in range(7)))
        paths.append(str(p))
    local, _ = run_stage("lines", paths, str(tmp_path / "local"), _lines_stage, {}, outputs=["rejected"])
    on_ray, _ = run_stage("lines", paths, str(tmp_path / "ray"), _lines_stage, {}, outputs=["rejected"], engine="ray")
    assert on_ray["counts"] == local["counts"]
    assert [s["sha256"] for s in on_ray["shards"]] == [s["sha256"] for s in local["shards"]]
    assert [d.id for d in read_documents([str(tmp_path / "ray")])] == [
        d.id for d in read_documents([str(tmp_path / "local")])
    ]
    # resumes the same way: nothing left to do, same manifest counts
    again, _ = run_stage("lines", paths, str(tmp_path / "ray"), _lines_stage, {}, outputs=["rejected"], engine="ray")
    assert again["counts"] == local["counts"]
