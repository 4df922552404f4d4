"""crawl, filter and dedup (estimated and exact verification) with ``--engine ray`` on a local Ray
instance (num_cpus=2) give the local engine's kept documents, shards and manifests.

Ray is started once for the module (about 6 s); samples/warc is crawled once by the local engine.
"""

from __future__ import annotations

import glob
import json
import os
import random
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.document import Document
from curate.core.files import sha256_file
from curate.core.shards import ShardWriter, read_documents
from curate.runtime.executor import Executor
from curate.runtime.stage import StageContext
from curate.stages import crawl as crawl_stage
from curate.stages import dedup as dedup_stage
from curate.stages.crawl import CrawlConfig, load_config
from curate.stages.dedup import DEFAULT_MEMORY_GB, DedupConfig

ray = pytest.importorskip("ray")

NO_TIME_LIMIT = ["--set", "extract.time_limit=0"]
SAMPLES_WARC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "samples", "warc")
T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def ray_local():
    from curate.runtime.ray import ray_session

    with ray_session(num_cpus=2) as r:
        yield r


@pytest.fixture(scope="module")
def samples_crawl(tmp_path_factory) -> str:
    """samples/warc crawled by the local engine."""
    out = str(tmp_path_factory.mktemp("crawl") / "local")
    # No per-page time limit: under a loaded test machine a slow page must not become a
    # timeout on one side of the comparison only.
    manifest = crawl([SAMPLES_WARC], out, load_config(overrides={"extract": {"time_limit": 0}}))
    assert manifest["counts"]["kept"] > 100
    return out


def dedup(inputs, out, config, *, workers=1, memory_bytes=int(DEFAULT_MEMORY_GB * 1024**3), engine="local"):
    """The dedup stage through its entry point, quietly; returns the manifest."""
    ctx = StageContext(list(inputs), str(out), Executor(engine, workers), progress=False, memory_bytes=memory_bytes)
    return dedup_stage.run(config, ctx)


def crawl(inputs, out, cfg=None, executor=None, **options):
    """The crawl stage through its one entry point, quietly; returns the manifest."""
    ctx = StageContext(list(inputs), str(out), executor or Executor(), progress=False)
    return crawl_stage.run(cfg or CrawlConfig(), ctx, **options)


def _ids(directory: str) -> list[str]:
    return [d.id for d in read_documents([directory])]


def _digest(directory: str) -> list[tuple[str, str]]:
    files = sorted(
        glob.glob(os.path.join(directory, "*.parquet")) + glob.glob(os.path.join(directory, "removed", "*.parquet"))
    )
    return [(os.path.relpath(f, directory), sha256_file(f)) for f in files]


def _removed(directory: str) -> dict[str, tuple[str, str]]:
    rows = []
    for f in sorted(glob.glob(os.path.join(directory, "removed", "*.parquet"))):
        rows.extend(pq.read_table(f, columns=["id", "dup_of", "dup_kind"]).to_pylist())
    return {r["id"]: (r["dup_of"], r["dup_kind"]) for r in rows}


def _manifest(directory: str) -> dict:
    with open(os.path.join(directory, "manifest.json")) as fh:
        return json.load(fh)


# --------------------------------------------------------------------------- crawl


def test_crawl_on_ray_matches_local_and_resumes(tmp_path, ray_local, samples_crawl):
    out = str(tmp_path / "ray")
    result = CliRunner().invoke(
        cli, ["crawl", SAMPLES_WARC, "-o", out, "--engine", "ray", "--workers", "2", "--quiet", *NO_TIME_LIMIT]
    )
    assert result.exit_code == 0, result.output
    local, on_ray = _manifest(samples_crawl), _manifest(out)
    assert on_ray["counts"] == local["counts"]
    assert on_ray["counts"]["read"] == on_ray["counts"]["kept"] + sum(on_ray["counts"]["rejected"].values()) + sum(
        on_ray["counts"]["errors"].values()
    )
    assert _ids(out) == _ids(samples_crawl)
    assert [s["sha256"] for s in on_ray["shards"]] == [s["sha256"] for s in local["shards"]]

    # A rerun resumes: every input is already done, nothing is rewritten or duplicated.
    before = _digest(out)
    again = CliRunner().invoke(cli, ["crawl", SAMPLES_WARC, "-o", out, "--engine", "ray", "--quiet", *NO_TIME_LIMIT])
    assert again.exit_code == 0, again.output
    assert _digest(out) == before
    assert _manifest(out)["counts"] == local["counts"]


def test_crawl_on_ray_resumes_a_partial_local_run(tmp_path, ray_local, samples_crawl):
    """Half the inputs done locally, the rest on Ray: the same output as one local run."""
    out = str(tmp_path / "mixed")
    inputs = sorted(glob.glob(os.path.join(SAMPLES_WARC, "*.warc.gz")))
    crawl(inputs, out, max_files=2)
    manifest = crawl(inputs, out, executor=Executor("ray", 2))
    local = crawl(inputs, str(tmp_path / "all_local"))
    assert manifest["counts"] == local["counts"]
    assert _ids(out) == _ids(str(tmp_path / "all_local"))


# --------------------------------------------------------------------------- filter


def test_filter_on_ray_matches_local(tmp_path, ray_local, samples_crawl):
    """The sample chain (language model, heuristics, PII) run as Ray tasks keeps the same
    documents, with the same reasons for the rest, as local worker processes."""
    chain = os.path.join(os.path.dirname(SAMPLES_WARC), "filters.toml")
    outs = {}
    for engine in ("local", "ray"):
        outs[engine] = str(tmp_path / engine)
        result = CliRunner().invoke(
            cli,
            ["filter", samples_crawl, "-o", outs[engine], "--config", chain, "--engine", engine, "-j", "2", "--quiet"],
        )
        assert result.exit_code == 0, result.output
    local, on_ray = _manifest(outs["local"]), _manifest(outs["ray"])
    assert on_ray["counts"] == local["counts"] and local["counts"]["kept"] > 0
    assert sum(local["counts"]["rejected"].values()) > 0
    assert _ids(outs["ray"]) == _ids(outs["local"])
    assert _ids(os.path.join(outs["ray"], "rejected")) == _ids(os.path.join(outs["local"], "rejected"))
    assert [s["sha256"] for s in on_ray["shards"]] == [s["sha256"] for s in local["shards"]]


# --------------------------------------------------------------------------- dedup


def test_dedup_on_ray_matches_local_on_samples(tmp_path, ray_local, samples_crawl):
    local = str(tmp_path / "local")
    on_ray = str(tmp_path / "ray")
    a = CliRunner().invoke(cli, ["dedup", samples_crawl, "-o", local, "--quiet", "--workers", "1"])
    b = CliRunner().invoke(cli, ["dedup", samples_crawl, "-o", on_ray, "--quiet", "--engine", "ray"])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert _ids(on_ray) == _ids(local)
    assert _removed(on_ray) == _removed(local)
    assert len(_removed(local)) > 0  # the samples do hold duplicates
    assert _digest(on_ray) == _digest(local)
    m_local, m_ray = _manifest(local), _manifest(on_ray)
    assert m_ray["counts"] == m_local["counts"]
    assert m_ray["pairs"] == m_local["pairs"]
    assert m_ray["engine"] == "ray" and m_local["engine"] == "local"
    assert not os.path.exists(os.path.join(on_ray, ".curate", "work"))  # work files cleaned up
    # A finished run is not redone.
    again = CliRunner().invoke(cli, ["dedup", samples_crawl, "-o", on_ray, "--engine", "ray"])
    assert again.exit_code == 0 and "nothing to do" in again.output


def _planted_inputs(directory) -> tuple[list[str], dict[str, str]]:
    """Three input files (small row groups) of unrelated documents with planted duplicates:
    light edits, exact copies, URL refetches and a chain A~B~C. Returns the paths and, for each
    planted duplicate, the id of the document that must represent it."""
    rng = random.Random(7)
    vocab = sorted({"".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(3, 8))) for _ in range(5000)})
    docs: list[Document] = []
    expected: dict[str, str] = {}
    for i in range(150):
        words = [rng.choice(vocab) for _ in range(200)]
        day = T0 + timedelta(days=i % 9)
        docs.append(Document(id=f"b{i:03d}", text=" ".join(words), url=f"https://site{i}.org/a", date=day))
        # With an exact copy (same date and quality) the copy "a..." wins on its smaller id,
        # and then represents the light edit too.
        keeper = f"a{i:03d}" if i % 5 == 0 else f"b{i:03d}"
        if i % 5 == 0:
            docs.append(Document(id=f"a{i:03d}", text=" ".join(words).upper(), url=f"https://dup{i}.com/", date=day))
            expected[f"b{i:03d}"] = keeper
        if i % 3 == 0:  # a light edit published later: removed as near duplicate
            edited = list(words)
            edited[rng.randrange(len(edited))] = rng.choice(vocab)  # Jaccard about 0.95
            docs.append(
                Document(
                    id=f"n{i:03d}", text=" ".join(edited), url=f"https://copy{i}.net/x", date=day + timedelta(days=3)
                )
            )
            expected[f"n{i:03d}"] = keeper
        elif i % 7 == 0 and i % 5:  # a refetch of the same URL with new text: the newest fetch is kept
            other = [rng.choice(vocab) for _ in range(200)]
            docs.append(
                Document(
                    id=f"r{i:03d}",
                    text=" ".join(other),
                    url=f"http://www.site{i}.org/a/",
                    date=day + timedelta(days=30),
                )
            )
            expected[f"b{i:03d}"] = f"r{i:03d}"
    rng.shuffle(docs)
    paths = []
    for k in range(3):
        out = directory / f"in{k}"
        with ShardWriter(out, prefix="part-00000", row_group_bytes=8_000) as w:
            for d in docs[k::3]:
                w.write(d)
        paths.extend(sorted(glob.glob(str(out / "*.parquet"))))
    return paths, expected


def test_dedup_on_ray_matches_local_on_planted_duplicates(tmp_path, ray_local):
    paths, expected = _planted_inputs(tmp_path)
    assert sum(pq.ParquetFile(p).metadata.num_row_groups for p in paths) > 6  # many signature tasks
    config = DedupConfig(url=True)
    local = dedup(paths, str(tmp_path / "local"), config, workers=1)
    removed = _removed(str(tmp_path / "local"))
    for dup, keeper in expected.items():
        assert dup in removed and removed[dup][0] == keeper, (dup, removed.get(dup))
    assert len(removed) == len(expected)  # nothing else removed
    assert {kind for _, kind in removed.values()} == {"exact", "near", "url"}

    # Ray with a tiny memory budget (many partitions of every index) and with a large one:
    # the same documents, shards and pair counts as the local engine.
    for name, memory in (("ray_small", 2048), ("ray_large", 1 << 30)):
        out = str(tmp_path / name)
        result = dedup(paths, out, config, workers=2, memory_bytes=memory, engine="ray")
        assert _ids(out) == _ids(str(tmp_path / "local"))
        assert _removed(out) == removed
        assert _digest(out) == _digest(str(tmp_path / "local"))
        assert result["counts"] == local["counts"]
        assert result["pairs"] == local["pairs"]
        partitions = result["memory"]["partitions"]
        if name == "ray_small":
            assert partitions["band"] > 16 and partitions["exact"] > 1


def _removed_rows(directory: str) -> dict[str, tuple[str, str, float]]:
    rows = []
    for f in sorted(glob.glob(os.path.join(directory, "removed", "*.parquet"))):
        rows.extend(pq.read_table(f, columns=["id", "dup_of", "dup_kind", "dup_similarity"]).to_pylist())
    return {r["id"]: (r["dup_of"], r["dup_kind"], r["dup_similarity"]) for r in rows}


def _threshold_pairs(directory, paths: list[str]) -> list[str]:
    """One more input: 48 documents each with a variant of 3 to 6 spaced word edits (true
    Jaccard about 0.86 down to 0.73, around the 0.8 threshold, where exact and estimated
    verification disagree), so the exact mode's accept and reject paths both run."""
    rng = random.Random(11)
    vocab = sorted({"".join(rng.choice("qrstuvwxyz") for _ in range(rng.randint(4, 9))) for _ in range(5000)})
    docs = []
    for i in range(48):
        words = [rng.choice(vocab) for _ in range(200)]
        variant = list(words)
        for slot in sorted(rng.sample(range(39), 3 + i % 4)):
            variant[slot * 5 + rng.randrange(5)] = f"edit{i}x{slot}"
        docs.append(Document(id=f"t{i:03d}", text=" ".join(words), url=f"https://t{i}.org/", date=T0))
        docs.append(
            Document(id=f"u{i:03d}", text=" ".join(variant), url=f"https://u{i}.org/", date=T0 + timedelta(days=1))
        )
    out = directory / "in_threshold"
    with ShardWriter(out, prefix="part-00000", row_group_bytes=30_000) as w:
        for d in docs:
            w.write(d)
    return paths + sorted(glob.glob(str(out / "*.parquet")))


def test_dedup_exact_verify_on_ray_matches_local(tmp_path, ray_local):
    """``verify = "exact"``: candidate pairs, the shingle pass and the exact verification as
    Ray tasks give the local engine's kept documents, removed rows (with their exact
    similarities) and shards, with a tiny budget (many partitions, one set per batch) too."""
    paths, _ = _planted_inputs(tmp_path)
    paths = _threshold_pairs(tmp_path, paths)
    config = DedupConfig(url=True, verify="exact")
    local = dedup(paths, str(tmp_path / "local"), config, workers=1)
    removed = _removed_rows(str(tmp_path / "local"))
    exact = local["pairs"]["exact"]
    # The corpus exercises what makes exact mode differ: pairs the estimate would decide the
    # other way, URL and exact removals, and near removals below a similarity of 1.
    assert exact["accepted_below_estimate"] + exact["rejected_above_estimate"] > 0, exact
    assert exact["accepted"] > 0 and exact["rejected"] > 0, exact
    assert {kind for _, kind, _ in removed.values()} == {"exact", "near", "url"}
    assert any(kind == "near" and sim < 0.9 for _, kind, sim in removed.values())

    def comparable(pairs: dict) -> dict:
        # Partitions and batches follow each engine's own partitioning; the rest must agree.
        return {**pairs, "exact": {k: v for k, v in pairs["exact"].items() if k not in ("pair_partitions", "batches")}}

    for name, memory in (("ray_small", 2048), ("ray_large", 1 << 30)):
        out = str(tmp_path / name)
        m = dedup(paths, out, config, workers=2, memory_bytes=memory, engine="ray")
        assert _ids(out) == _ids(str(tmp_path / "local"))
        assert _removed_rows(out) == removed
        assert _digest(out) == _digest(str(tmp_path / "local"))
        assert m["counts"] == local["counts"] and m["engine"] == "ray"
        assert comparable(m["pairs"]) == comparable(local["pairs"])
        assert m["lsh"] == local["lsh"] and m["lsh"]["verify"] == "exact"
        assert not os.path.exists(os.path.join(out, ".curate", "work"))
        if name == "ray_small":
            assert m["memory"]["partitions"]["band"] > 16 and m["pairs"]["exact"]["pair_partitions"] > 16
            assert m["pairs"]["exact"]["batches"] > exact["batches"]


def test_failed_ray_task_is_a_one_line_error(tmp_path, ray_local):
    """A worker that cannot see the work files (output not on shared storage) fails cleanly."""
    from curate.core.errors import CurateError
    from curate.stages.dedup.ray_tasks import verify_task

    missing = str(tmp_path / "not-on-this-node.bin")
    with pytest.raises(CurateError, match="verify_task.*FileNotFoundError.*every node"):
        items = [([(missing, 0, 4)], missing, 10, 4, 0.8, str(tmp_path / "edges.bin"), 4)]
        list(Executor("ray", workers=2).map(verify_task, items, in_flight=2))


def test_dedup_on_ray_of_inputs_holding_no_documents(tmp_path, ray_local):
    import pyarrow.parquet as pq

    from curate.core.document import SCHEMA

    (tmp_path / "in").mkdir()
    pq.write_table(SCHEMA.empty_table(), tmp_path / "in" / "empty.parquet")
    for verify in ("estimate", "exact"):
        result = dedup(
            [str(tmp_path / "in")],
            str(tmp_path / verify),
            DedupConfig(verify=verify),
            workers=2,
            engine="ray",
        )
        assert result["counts"]["read"] == 0 == result["counts"]["kept"]
