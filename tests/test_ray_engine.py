"""The Ray engine runs the same per-input stage code and gives the local engine's output."""

import pytest
from test_pipeline import _lines_stage

from curate.core.shards import read_documents
from curate.runtime.stage import run_stage

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local():
    import os

    from curate.runtime.ray import ray_session

    # Ray workers import the stage function by module name: let them find this test package.
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))

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
